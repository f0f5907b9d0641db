//! A whole training run, as the command line, the notebooks and a fine-tuning chapter use
//! it: start a model or resume a saved run, step the [`Trainer`] to the end of its
//! schedule while measuring the held-out loss, save checkpoints and delete old ones,
//! average the last checkpoints, and save the model with its loss log.
//!
//! A checkpoint folder `checkpoints/step-NNNNNNN` holds what [`checkpoint::save_checkpoint_dir`]
//! writes (model, optimizer, sampler) and two files of the run: `train_log.csv`, its
//! [`LossLog`], and `run.json`, its [`RunInfo`]: how many token ids it trained on and their
//! [`Fingerprint`], so that resuming on other data is an error, not a silently different
//! run. A killed run resumed from its last checkpoint ends as if it had never stopped, to
//! the bit.
//!
//! The run prints and draws nothing: the caller sees each step through a callback and
//! draws the [`LossLog`] (see [`super::charts`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{
    frozen_in, load_average, load_run_model, load_trainer, save, save_checkpoint_dir,
    step_dir_name, step_dirs,
};
use super::model::{Activations, Gpt};
use super::train::{eval_loss, split_held_out, LossLog, Stages, StepLog, TrainConfig, Trainer};
use super::GptConfig;
use crate::data::{read_text, write_atomic};
use crate::{Error, Result};

/// The loss log in a checkpoint and in a trained model's folder.
pub const TRAIN_LOG: &str = "train_log.csv";
/// The run's [`RunInfo`] in a checkpoint.
pub const RUN_INFO: &str = "run.json";

/// The number of token ids and their FNV-1a hash (64 bits, over each id's four bytes,
/// little-endian): cheap to compute, and any change to the ids changes it.
///
/// ```
/// use llm_lessons::gpt::run::Fingerprint;
/// // FNV-1a of nothing is its offset basis
/// assert_eq!(Fingerprint::of(&[]).fnv1a64, 0xcbf29ce484222325);
/// assert_ne!(Fingerprint::of(&[1, 2]), Fingerprint::of(&[2, 1]));
/// assert_eq!(Fingerprint::of(&[7; 3]).to_string(), format!("3 ids, fingerprint {:016x}", Fingerprint::of(&[7; 3]).fnv1a64));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub tokens: usize,
    pub fnv1a64: u64,
}

impl Fingerprint {
    pub fn of(ids: &[u32]) -> Fingerprint {
        let mut h: u64 = 0xcbf29ce484222325;
        for id in ids {
            for b in id.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100000001b3);
            }
        }
        Fingerprint {
            tokens: ids.len(),
            fnv1a64: h,
        }
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ids, fingerprint {:016x}", self.tokens, self.fnv1a64)
    }
}

/// What a checkpoint must know of its run beyond the model and optimizer: the token ids it
/// trained on, and the held-out fraction that split them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunInfo {
    pub data: Fingerprint,
    pub held_out: f64,
    /// The second corpus of an annealing mix (see [`Run::with_stages`]), if any.
    pub mix: Option<Fingerprint>,
}

impl RunInfo {
    /// `run.json`: `{"data_tokens": 400, "data_fnv1a64": "<16 hex digits>", "held_out": 0.1}`,
    /// with `mix_tokens` and `mix_fnv1a64` for a run with a second corpus.
    pub fn to_json(&self) -> String {
        let mut j = serde_json::json!({
            "data_tokens": self.data.tokens,
            "data_fnv1a64": format!("{:016x}", self.data.fnv1a64),
            "held_out": self.held_out,
        });
        if let Some(m) = self.mix {
            j["mix_tokens"] = m.tokens.into();
            j["mix_fnv1a64"] = format!("{:016x}", m.fnv1a64).into();
        }
        serde_json::to_string_pretty(&j).expect("JSON")
    }

    /// The `run.json` of the checkpoint in `dir`.
    pub fn load(dir: &Path) -> Result<RunInfo> {
        let path = dir.join(RUN_INFO);
        let text = read_text(&path)?;
        let bad = |m: &str| Error::Checkpoint {
            path: path.clone(),
            message: m.into(),
        };
        let j: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let tokens = j["data_tokens"]
            .as_u64()
            .ok_or_else(|| bad("data_tokens is missing"))? as usize;
        let fnv1a64 = j["data_fnv1a64"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad("data_fnv1a64 is missing or not hexadecimal"))?;
        let mix = match (j.get("mix_tokens"), j.get("mix_fnv1a64")) {
            (None, None) => None,
            (tokens, hash) => Some(Fingerprint {
                tokens: tokens
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| bad("mix_tokens is missing"))? as usize,
                fnv1a64: hash
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| bad("mix_fnv1a64 is missing or not hexadecimal"))?,
            }),
        };
        Ok(RunInfo {
            data: Fingerprint { tokens, fnv1a64 },
            held_out: j["held_out"]
                .as_f64()
                .ok_or_else(|| bad("held_out is missing"))?,
            mix,
        })
    }
}

/// What a run trains: fixed when it starts, and saved with its checkpoints (the model in
/// `config.json`, the training settings in `trainer.json`, the held-out fraction in
/// `run.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The model; its initial weights are drawn with `train.seed`, the sampler's seed.
    pub model: GptConfig,
    /// The run's length is `train.schedule.total` steps.
    pub train: TrainConfig,
    /// The fraction of the token ids held out, at their end (see [`split_held_out`]).
    pub held_out: f64,
}

/// How a run is watched and kept: the caller's choice at every start or resume, so a
/// resumed run may evaluate or save more often than it did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Measure the held-out loss every this many steps (0: never during the run).
    pub eval_every: usize,
    /// Most held-out windows per evaluation.
    pub eval_windows: usize,
    /// Save checkpoints; `None`: never.
    pub checkpoints: Option<Checkpoints>,
    /// Stop once the run has taken this many steps, before the end of its schedule (with
    /// a checkpoint there, to resume it); `None`: at the end.
    pub stop_at: Option<usize>,
}

impl Default for RunOptions {
    /// No evaluation during the run, 64 windows at its end, no checkpoints.
    fn default() -> Self {
        RunOptions {
            eval_every: 0,
            eval_windows: 64,
            checkpoints: None,
            stop_at: None,
        }
    }
}

/// Where and how often a run saves itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoints {
    /// The folder of the `step-NNNNNNN` checkpoint folders.
    pub dir: PathBuf,
    /// Save every this many steps, and after the last.
    pub every: usize,
    /// Checkpoints to keep (at least one); older ones are deleted.
    pub keep: usize,
    /// At the end, the model is the mean of the last this many checkpoints' weights (as
    /// Llama 3's final model is); 0 or 1: the last step's weights.
    pub average_last: usize,
}

impl Checkpoints {
    fn validate(&self) -> Result<()> {
        if self.every == 0 {
            return Err(Error::InvalidArgument(
                "checkpoints every 0 steps: give at least 1, or no checkpoints".into(),
            ));
        }
        if self.average_last > self.keep.max(1) {
            return Err(Error::InvalidArgument(format!(
                "averaging the last {} checkpoints needs at least {} of them kept, not {}",
                self.average_last,
                self.average_last,
                self.keep.max(1)
            )));
        }
        Ok(())
    }
}

/// A run in progress: the model, the trainer's state and the log of the steps so far.
#[derive(Clone, Debug)]
pub struct Run {
    pub model: Gpt,
    pub trainer: Trainer,
    pub log: LossLog,
    pub info: RunInfo,
    /// The second corpus of the annealing mix, when the run has one.
    pub mix: Option<Vec<u32>>,
}

/// How long [`Run::train`] took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    /// Steps taken.
    pub steps: usize,
    /// Training tokens in those steps.
    pub tokens: usize,
    /// Seconds in all, evaluations and checkpoints included.
    pub seconds: f64,
    /// Seconds of the training steps alone.
    pub train_seconds: f64,
}

impl Timing {
    /// Training tokens per second of training.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.train_seconds.max(1e-9)
    }
}

/// A run at its end: the model to keep and its scores.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The last step's weights, or the mean of the last checkpoints'.
    pub model: Gpt,
    pub log: LossLog,
    /// The held-out loss of `model`; `None` when too few ids are held out.
    pub held_out: Option<f32>,
    /// When `model` is a mean of checkpoints: which, and the held-out loss of the last
    /// step's weights, to compare.
    pub averaged: Option<Averaged>,
}

/// The checkpoints averaged into a finished run's model.
#[derive(Clone, Debug, PartialEq)]
pub struct Averaged {
    pub steps: Vec<usize>,
    pub last_step_held_out: Option<f32>,
}

impl Run {
    /// A new run of freshly initialised weights on `ids` (all of them: the run splits off
    /// its held-out part).
    pub fn start(config: RunConfig, ids: &[u32]) -> Result<Run> {
        config.model.validate()?;
        let model = Gpt::init(config.model, config.train.seed)?;
        Run::from_model(model, config.train, config.held_out, ids)
    }

    /// A new run that trains `model` as it is (a loaded checkpoint, to fine-tune it).
    pub fn from_model(model: Gpt, train: TrainConfig, held_out: f64, ids: &[u32]) -> Result<Run> {
        if !(0.0..1.0).contains(&held_out) {
            return Err(Error::InvalidArgument(format!(
                "the held-out fraction must be in [0, 1), got {held_out}"
            )));
        }
        if train.schedule.total == 0 {
            return Err(Error::InvalidArgument("a run needs at least 1 step".into()));
        }
        let trainer = Trainer::new(&model, train)?;
        Ok(Run {
            model,
            trainer,
            log: LossLog::default(),
            info: RunInfo {
                data: Fingerprint::of(ids),
                held_out,
                mix: None,
            },
            mix: None,
        })
    }

    /// The run with Llama 3's pre-training [`Stages`]: schedules of the batch and the
    /// window length, RoPE's base raised for the longest windows, and, with a mix, the
    /// second corpus `high_quality` that the annealing phase draws from. Saved with the
    /// run's checkpoints, so that a resumed run keeps them.
    pub fn with_stages(mut self, stages: Stages, high_quality: Option<&[u32]>) -> Result<Run> {
        if stages.mix.is_some() != high_quality.is_some() {
            return Err(Error::InvalidArgument(
                "an annealing mix needs its second corpus, and a second corpus a mix".into(),
            ));
        }
        self.trainer.set_stages(&self.model, stages)?;
        self.info.mix = high_quality.map(Fingerprint::of);
        self.mix = high_quality.map(<[u32]>::to_vec);
        Ok(self)
    }

    /// The run saved in the checkpoint folder `dir`, to continue on `ids`: the same token
    /// ids it was started on, or [`Error::OtherData`]. The tensors it froze stay frozen.
    pub fn resume(dir: &Path, ids: &[u32]) -> Result<Run> {
        Run::resume_mixed(dir, ids, None)
    }

    /// [`Run::resume`] for a run with an annealing mix: `high_quality` must be the second
    /// corpus it started with (an error if it is not, or if the run had none).
    pub fn resume_mixed(dir: &Path, ids: &[u32], high_quality: Option<&[u32]>) -> Result<Run> {
        let mut model = load_run_model(dir)?;
        let frozen = frozen_in(dir)?;
        model
            .params
            .set_trainable(|name| !frozen.iter().any(|f| f == name));
        let trainer = load_trainer(dir, &model)?;
        let info = RunInfo::load(dir)?;
        let given = Fingerprint::of(ids);
        if info.data != given {
            return Err(Error::OtherData {
                dir: dir.to_path_buf(),
                trained: (info.data.tokens, info.data.fnv1a64),
                given: (given.tokens, given.fnv1a64),
            });
        }
        let log_path = dir.join(TRAIN_LOG);
        let log = LossLog::from_csv(&read_text(&log_path)?, &log_path)?;
        if log.rows.len() != trainer.step {
            return Err(Error::Checkpoint {
                path: log_path,
                message: format!(
                    "{} steps logged, but the trainer took {}",
                    log.rows.len(),
                    trainer.step
                ),
            });
        }
        let given_mix = high_quality.map(Fingerprint::of);
        if info.mix != given_mix {
            let say = |f: Option<Fingerprint>| f.map_or("none".to_string(), |f| f.to_string());
            return Err(Error::Checkpoint {
                path: dir.join(RUN_INFO),
                message: format!(
                    "the run's second corpus was {}, given {}",
                    say(info.mix),
                    say(given_mix)
                ),
            });
        }
        Ok(Run {
            model,
            trainer,
            log,
            info,
            mix: high_quality.map(<[u32]>::to_vec),
        })
    }

    /// The steps the run was planned for: its learning-rate schedule's length.
    pub fn planned_steps(&self) -> usize {
        self.trainer.config.schedule.total
    }

    /// The ids to train on and the held-out ids, of all the run's `ids`.
    pub fn split<'a>(&self, ids: &'a [u32]) -> (&'a [u32], &'a [u32]) {
        split_held_out(ids, self.info.held_out)
    }

    /// The held-out loss of `model` on windows of the run's length, shorter if the
    /// held-out ids are fewer; `None` with fewer than two held-out ids.
    pub fn held_out_loss(
        &self,
        model: &Gpt,
        held_out: &[u32],
        windows: usize,
    ) -> Result<Option<f32>> {
        let config = &self.trainer.config;
        let len = config.seq_len.min(held_out.len().saturating_sub(1));
        if len == 0 {
            return Ok(None);
        }
        eval_loss(model, held_out, len, config.batch, windows).map(Some)
    }

    // ANCHOR: train_run
    /// Steps the run on `train` (usually [`Run::split`] of its ids) to the end of its
    /// schedule or to `options.stop_at`, logging each step with the held-out loss where it
    /// is due and saving the checkpoints `options` asks for, the last at the stop. `on_step`
    /// sees each step as it is logged.
    pub fn train(
        &mut self,
        train: &[u32],
        held_out: &[u32],
        options: &RunOptions,
        on_step: impl FnMut(&StepLog, Option<f32>) + Send,
    ) -> Result<Timing> {
        // on a rayon worker: the layers' parallel loops then run in the pool from here,
        // where called from outside it each would hand its work to the pool and wait
        // (on 1 thread, 10% to 20% of a step on llama-tiny)
        rayon::scope(|_| self.train_here(train, held_out, options, on_step))
    }

    fn train_here(
        &mut self,
        train: &[u32],
        held_out: &[u32],
        options: &RunOptions,
        mut on_step: impl FnMut(&StepLog, Option<f32>),
    ) -> Result<Timing> {
        if let Some(c) = &options.checkpoints {
            c.validate()?;
        }
        let first = self.trainer.step;
        let end = options
            .stop_at
            .map_or(self.planned_steps(), |s| s.min(self.planned_steps()));
        let t0 = Instant::now();
        let (mut train_seconds, mut tokens) = (0.0, 0);
        while self.trainer.step < end {
            let t = Instant::now();
            let (b, len) = self.trainer.windows();
            let step = self
                .trainer
                .step_mixed(&mut self.model, train, self.mix.as_deref())?;
            train_seconds += t.elapsed().as_secs_f64();
            tokens += b * len;
            let done = self.trainer.step;
            let measured = if options.eval_every > 0 && done % options.eval_every == 0 {
                self.held_out_loss(&self.model, held_out, options.eval_windows)?
            } else {
                None
            };
            self.log.push(step, measured);
            on_step(&step, measured);
            if let Some(c) = &options.checkpoints {
                if done % c.every == 0 || done == end {
                    self.save_checkpoint(c)?;
                }
            }
        }
        let steps = self.trainer.step - first;
        Ok(Timing {
            steps,
            tokens,
            seconds: t0.elapsed().as_secs_f64(),
            train_seconds,
        })
    }
    // ANCHOR_END: train_run

    /// Saves the run as `step-NNNNNNN` in `c.dir` (whole or not at all), then deletes all
    /// but the last `c.keep` checkpoints there. Returns the new folder.
    pub fn save_checkpoint(&self, c: &Checkpoints) -> Result<PathBuf> {
        let dir = c.dir.join(step_dir_name(self.trainer.step));
        let csv = self.log.to_csv();
        let info = self.info.to_json();
        save_checkpoint_dir(
            &dir,
            &self.model,
            &self.trainer,
            &[(TRAIN_LOG, csv.as_bytes()), (RUN_INFO, info.as_bytes())],
        )?;
        let all = step_dirs(&c.dir)?;
        for (_, old) in &all[..all.len().saturating_sub(c.keep.max(1))] {
            std::fs::remove_dir_all(old).map_err(|e| Error::Write {
                path: old.clone(),
                source: e,
            })?;
        }
        Ok(dir)
    }

    /// The run's end: the model to keep (averaged if `options` asks) and its held-out loss.
    pub fn finish(self, held_out: &[u32], options: &RunOptions) -> Result<Finished> {
        let last = self.held_out_loss(&self.model, held_out, options.eval_windows)?;
        let k = options.checkpoints.as_ref().map_or(0, |c| c.average_last);
        let Some(c) = options.checkpoints.as_ref().filter(|_| k > 1) else {
            return Ok(Finished {
                model: self.model,
                log: self.log,
                held_out: last,
                averaged: None,
            });
        };
        let (steps, mean) = average_last(&c.dir, k)?;
        Ok(Finished {
            held_out: self.held_out_loss(&mean, held_out, options.eval_windows)?,
            model: mean,
            log: self.log,
            averaged: Some(Averaged {
                steps,
                last_step_held_out: last,
            }),
        })
    }
}

/// The mean of the last `k` checkpoints in `dir` (see [`super::checkpoint::average`]),
/// and their steps.
pub fn average_last(dir: &Path, k: usize) -> Result<(Vec<usize>, Gpt)> {
    let all = step_dirs(dir)?;
    if all.len() < k {
        return Err(Error::InvalidArgument(format!(
            "averaging the last {k} checkpoints: only {} in {}",
            all.len(),
            dir.display()
        )));
    }
    let last = &all[all.len() - k..];
    let dirs: Vec<PathBuf> = last.iter().map(|(_, d)| d.clone()).collect();
    Ok((last.iter().map(|(s, _)| *s).collect(), load_average(&dirs)?))
}

impl Finished {
    /// Writes the model (`config.json`, `model.safetensors`) and `train_log.csv` into `out`.
    pub fn save(&self, out: &Path) -> Result<()> {
        save(out, &self.model, None)?;
        write_atomic(&out.join(TRAIN_LOG), self.log.to_csv().as_bytes())
    }
}

/// The mean next-token cross-entropy over `ids`: windows of the model's context that tile
/// the sequence, each target predicted from the window's earlier tokens.
pub fn sequence_loss(model: &Gpt, ids: &[u32]) -> Result<f64> {
    if ids.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{} tokens: the cross-entropy needs at least 2",
            ids.len()
        )));
    }
    let n = ids.len() - 1;
    let ctx = model.cfg.context;
    let mut total = 0.0f64;
    let mut start = 0;
    while start < n {
        let len = ctx.min(n - start);
        let mut acts = Activations::new(&model.cfg, 1, len);
        let loss = model.forward_loss(
            &mut acts,
            &ids[start..start + len],
            &ids[start + 1..start + len + 1],
        )?;
        total += loss as f64 * len as f64;
        start += len;
    }
    Ok(total / n as f64)
}

/// `-log softmax(logits)[target]`, the log-sum-exp taken in f64 (in f32, the sum over a
/// vocabulary of 49,152 loses about 1e-4 of the loss).
pub fn next_token_nll(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    max + sum.ln() - logits[target] as f64
}

/// [`sequence_loss`] for evaluation only: the same windows, each run through the key/value
/// cache `chunk` positions at a time, so memory is the cache and one chunk's logits instead
/// of every activation a backward pass would need (for SmolLM2 at 2,048 positions, the
/// attention weights alone would be 4.5 GB). The figure equals [`sequence_loss`]'s up to f32
/// summation order; the log-softmax is summed in f64.
pub fn sequence_loss_cached(model: &Gpt, ids: &[u32], chunk: usize) -> Result<f64> {
    if ids.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{} tokens: the cross-entropy needs at least 2",
            ids.len()
        )));
    }
    let (n, vocab) = (ids.len() - 1, model.cfg.vocab_size);
    let chunk = chunk.max(1);
    let mut total = 0.0f64;
    let mut start = 0;
    while start < n {
        let len = model.cfg.context.min(n - start);
        let mut cache = super::generate::KvCache::with_capacity(&model.cfg, len);
        for at in (start..start + len).step_by(chunk) {
            let end = (at + chunk).min(start + len);
            let logits = model.forward_cached(&mut cache, &ids[at..end])?;
            for (row, &target) in logits.chunks_exact(vocab).zip(&ids[at + 1..end + 1]) {
                total += next_token_nll(row, target as usize);
            }
        }
        start += len;
    }
    Ok(total / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cached_loss_is_the_windowed_one() {
        let cfg = crate::gpt::config::shrunk(GptConfig::llama_tiny(), [30, 16, 2, 24, 8]);
        let model = Gpt::new(cfg.clone(), crate::gpt::Params::init(&cfg, 3)).unwrap();
        let ids: Vec<u32> = (0..2 * cfg.context as u32 + 5)
            .map(|i| (i * 7 + 3) % 30)
            .collect();
        let plain = sequence_loss(&model, &ids).unwrap();
        for chunk in [1, 5, cfg.context] {
            let cached = sequence_loss_cached(&model, &ids, chunk).unwrap();
            assert!(
                (plain - cached).abs() < 1e-5 * plain,
                "chunk {chunk}: {cached} vs {plain}"
            );
        }
        assert!(sequence_loss_cached(&model, &ids[..1], 4).is_err());
    }
    use crate::gpt::checkpoint::{average, load_model};
    use crate::gpt::config::shrunk;
    use crate::gpt::optim::{AdamWConfig, Decay, LrSchedule};

    fn config(steps: usize) -> RunConfig {
        let model = shrunk(GptConfig::gpt2_tiny(), [16, 16, 1, 24, 8]);
        RunConfig {
            model,
            train: TrainConfig {
                batch: 2,
                seq_len: 8,
                schedule: LrSchedule {
                    max_lr: 1e-2,
                    min_lr: 1e-3,
                    warmup: 2,
                    total: steps,
                    anneal: 0,
                    decay: Decay::Cosine,
                },
                adamw: AdamWConfig::default(),
                clip: Some(1.0),
                seed: 3,
            },
            held_out: 0.2,
        }
    }

    fn corpus(seed: u32) -> Vec<u32> {
        (0..300u32).map(|i| (i * i + seed) % 13).collect()
    }

    /// A fresh folder under the system's temporary folder, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("llm-lessons-run-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn options(dir: &Path, every: usize, keep: usize, average_last: usize) -> RunOptions {
        RunOptions {
            eval_every: 3,
            eval_windows: 4,
            checkpoints: Some(Checkpoints {
                dir: dir.to_path_buf(),
                every,
                keep,
                average_last,
            }),
            stop_at: None,
        }
    }

    /// A run of `steps` on `ids`, trained to its end.
    fn trained(ids: &[u32], steps: usize, opts: &RunOptions) -> Run {
        let mut run = Run::start(config(steps), ids).unwrap();
        let (train, held_out) = run.split(ids);
        run.train(train, held_out, opts, |_, _| {}).unwrap();
        run
    }

    fn steps_in(dir: &Path) -> Vec<usize> {
        step_dirs(dir).unwrap().iter().map(|(s, _)| *s).collect()
    }

    /// Ten steps in one go, or five, a checkpoint, a load and five more: the same log
    /// (losses, learning rates, gradient norms, held-out losses) and weights, to the bit.
    #[test]
    fn a_run_stopped_and_resumed_is_the_run_without_the_stop() {
        let ids = corpus(0);
        let tmp = TempDir::new("resume");
        let straight = trained(&ids, 10, &options(&tmp.0.join("straight"), 100, 3, 0));

        let halves = options(&tmp.0.join("halves"), 100, 3, 0);
        let mut first = Run::start(config(10), &ids).unwrap();
        let (train, held_out) = first.split(&ids);
        let mut seen = Vec::new();
        let stop = RunOptions {
            stop_at: Some(5),
            ..halves.clone()
        };
        let timing = first
            .train(train, held_out, &stop, |s, _| seen.push(s.step))
            .unwrap();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        assert_eq!((timing.steps, timing.tokens), (5, 5 * 2 * 8));
        assert_eq!(
            steps_in(&tmp.0.join("halves")),
            [5],
            "a checkpoint at the stop"
        );
        let mut second = Run::resume(&tmp.0.join("halves/step-0000005"), &ids).unwrap();
        assert_eq!(second.log, first.log);
        assert_eq!(second.info, first.info);
        second.train(train, held_out, &halves, |_, _| {}).unwrap();
        assert_eq!(second.log, straight.log);
        assert_eq!(second.log.rows.len(), 10);
        assert!(second.log.rows[8].held_out.is_some(), "step 9 is evaluated");
        assert!(second.model.params == straight.model.params);
        assert_eq!(steps_in(&tmp.0.join("halves")), [5, 10]);
    }

    /// A run with every stage (batch ramp, length schedule, RoPE's base raised for the long
    /// windows, annealing with a second corpus) stopped at step 7, in its short-window
    /// phase, and resumed: the same log and weights as the straight run, and the raised θ.
    #[test]
    fn a_staged_run_stopped_and_resumed_is_the_run_without_the_stop() {
        use crate::gpt::train::{Mix, Piecewise};
        let ids = corpus(0);
        let clean: Vec<u32> = (0..200u32).map(|i| (i * 5 + 1) % 13).collect();
        let tmp = TempDir::new("staged");
        let mut cfg = config(14);
        cfg.model = shrunk(GptConfig::llama_tiny(), [16, 16, 1, 24, 8]);
        cfg.train.schedule.anneal = 4;
        let stages = Stages {
            batch: Piecewise(vec![(0, 1), (4, 2), (9, 3)]),
            seq_len: Piecewise(vec![(0, 4), (8, 8)]),
            long_rope_theta: Some(5e5),
            mix: Some(Mix {
                from_step: 10,
                fraction: 0.5,
            }),
        };
        let start = || {
            Run::start(cfg.clone(), &ids)
                .unwrap()
                .with_stages(stages.clone(), Some(&clean))
                .unwrap()
        };
        let mut straight = start();
        let (train, held_out) = straight.split(&ids);
        let opts = options(&tmp.0.join("straight"), 100, 2, 0);
        let timing = straight.train(train, held_out, &opts, |_, _| {}).unwrap();
        assert_eq!(timing.tokens, 4 * 4 + 4 * 2 * 4 + 2 * 8 + 5 * 3 * 8);
        assert_eq!(
            straight.model.cfg.positions,
            crate::gpt::Positions::Rope { theta: 5e5 }
        );
        let mut first = start();
        let halves = options(&tmp.0.join("halves"), 100, 2, 0);
        let stop = RunOptions {
            stop_at: Some(7),
            ..halves.clone()
        };
        first.train(train, held_out, &stop, |_, _| {}).unwrap();
        let dir = tmp.0.join("halves").join(step_dir_name(7));
        assert!(
            Run::resume(&dir, &ids).is_err(),
            "the second corpus is missing"
        );
        let mut second = Run::resume_mixed(&dir, &ids, Some(&clean)).unwrap();
        assert_eq!(second.trainer.stages, stages);
        second.train(train, held_out, &halves, |_, _| {}).unwrap();
        assert_eq!(second.log, straight.log);
        assert!(second.model.params == straight.model.params);
        assert_eq!(second.model.cfg, straight.model.cfg);
    }

    /// A fine-tuning run on loaded weights with all but the final norm frozen: stopped,
    /// resumed from its checkpoint with the same tensors frozen, equal to the straight run.
    #[test]
    fn a_frozen_run_resumes_frozen() {
        let ids = corpus(2);
        let tmp = TempDir::new("frozen");
        let cfg = config(8);
        let start = |cfg: &RunConfig| {
            let mut model = Gpt::init(cfg.model.clone(), 7).unwrap();
            model
                .params
                .set_trainable(|name| name == "model.norm.weight");
            Run::from_model(model, cfg.train.clone(), cfg.held_out, &ids).unwrap()
        };
        let mut straight = start(&cfg);
        let (train, held_out) = straight.split(&ids);
        let opts = options(&tmp.0.join("straight"), 100, 2, 0);
        straight.train(train, held_out, &opts, |_, _| {}).unwrap();
        let mut first = start(&cfg);
        let halves = options(&tmp.0.join("halves"), 100, 2, 0);
        let stop = RunOptions {
            stop_at: Some(4),
            ..halves.clone()
        };
        first.train(train, held_out, &stop, |_, _| {}).unwrap();
        let mut second = Run::resume(&tmp.0.join("halves").join(step_dir_name(4)), &ids).unwrap();
        assert_eq!(second.model.params.count_trainable().0, cfg.model.d_model);
        second.train(train, held_out, &halves, |_, _| {}).unwrap();
        assert_eq!(second.log, straight.log);
        assert!(second.model.params == straight.model.params);
    }

    #[test]
    fn resuming_on_other_data_is_an_error_naming_both_fingerprints() {
        let ids = corpus(0);
        let tmp = TempDir::new("other-data");
        trained(&ids, 4, &options(&tmp.0, 2, 1, 0));
        let dir = tmp.0.join(step_dir_name(4));
        let other = corpus(1);
        let err = Run::resume(&dir, &other).unwrap_err();
        assert!(matches!(err, Error::OtherData { .. }), "{err}");
        let msg = err.to_string();
        for f in [Fingerprint::of(&ids), Fingerprint::of(&other)] {
            assert!(msg.contains(&format!("{:016x}", f.fnv1a64)), "{msg}");
        }
        assert!(Run::resume(&dir, &ids[1..]).is_err(), "one id fewer");
        assert_eq!(Run::resume(&dir, &ids).unwrap().trainer.step, 4);
    }

    /// Every 3 steps of 10 saves steps 3, 6, 9 and the last, 10; keeping 2 leaves 9 and 10.
    #[test]
    fn old_checkpoints_are_deleted_and_the_last_kept() {
        let ids = corpus(0);
        let tmp = TempDir::new("keep");
        let mut run = Run::start(config(10), &ids).unwrap();
        let (train, held_out) = run.split(&ids);
        let mut kept = Vec::new();
        let opts = options(&tmp.0, 3, 2, 0);
        run.train(train, held_out, &opts, |s, _| {
            if (s.step + 1) % 3 == 0 {
                kept.push(steps_in(&tmp.0));
            }
        })
        .unwrap();
        // seen before each save: nothing, [3], [3, 6]
        assert_eq!(kept, [vec![], vec![3], vec![3, 6]]);
        assert_eq!(steps_in(&tmp.0), [9, 10]);
        let bad = options(&tmp.0, 3, 2, 3);
        let err = Run::start(config(10), &ids)
            .unwrap()
            .train(train, held_out, &bad, |_, _| {})
            .unwrap_err();
        assert!(err.to_string().contains("at least 3 of them kept"), "{err}");
    }

    #[test]
    fn average_last_is_the_mean_of_the_last_checkpoints() {
        let ids = corpus(0);
        let tmp = TempDir::new("average");
        let opts = options(&tmp.0, 4, 3, 2); // saves 4, 8, 10
        let run = trained(&ids, 10, &opts);
        let (_, held_out) = run.split(&ids);
        let last = run.model.clone();
        let done = run.finish(held_out, &opts).unwrap();
        let averaged = done.averaged.as_ref().expect("averaged");
        assert_eq!(averaged.steps, [8, 10]);
        let m8 = load_model(&tmp.0.join(step_dir_name(8))).unwrap();
        let m10 = load_model(&tmp.0.join(step_dir_name(10))).unwrap();
        assert!(m10.params == last.params);
        assert!(done.model.params == average(&[m8.clone(), m10.clone()]).unwrap().params);
        assert!(done.model.params != last.params);
        let (a, b, mean) = (
            m8.params.tensors(),
            m10.params.tensors(),
            done.model.params.tensors(),
        );
        for ((x, y), z) in a.iter().zip(&b).zip(&mean) {
            for ((x, y), z) in x.iter().zip(y.iter()).zip(z.iter()) {
                assert!((z - (x + y) / 2.0).abs() <= 1e-6 * (1.0 + z.abs()));
            }
        }
        let expected = run_held_out(&done.model, held_out);
        assert_eq!(done.held_out, Some(expected));
        assert_eq!(
            averaged.last_step_held_out,
            Some(run_held_out(&last, held_out))
        );
        let out = tmp.0.join("model");
        done.save(&out).unwrap();
        assert!(load_model(&out).unwrap().params == done.model.params);
        let log = LossLog::from_csv(&read_text(out.join(TRAIN_LOG)).unwrap(), &out).unwrap();
        assert_eq!(log, done.log);
        assert!(average_last(&tmp.0, 4).is_err(), "only 3 checkpoints kept");
    }

    fn run_held_out(model: &Gpt, held_out: &[u32]) -> f32 {
        eval_loss(model, held_out, 8, 2, 4).unwrap()
    }

    #[test]
    fn from_model_trains_the_weights_it_is_given() {
        let ids = corpus(0);
        let c = config(3);
        let model = Gpt::init(c.model.clone(), c.train.seed).unwrap();
        let mut run = Run::from_model(model, c.train.clone(), c.held_out, &ids).unwrap();
        let (train, held_out) = run.split(&ids);
        run.train(train, held_out, &RunOptions::default(), |_, _| {})
            .unwrap();
        assert_eq!(run.log, trained(&ids, 3, &RunOptions::default()).log);
        let err = Run::from_model(run.model, c.train, 1.0, &ids).unwrap_err();
        assert!(err.to_string().contains("held-out fraction"), "{err}");
    }

    /// One window holds the whole sequence: the plain mean; a context of 3 over 7
    /// predictions: windows of 3, 3 and 1 predictions, weighted by their lengths.
    #[test]
    fn sequence_loss_tiles_the_sequence() {
        let model = Gpt::init(config(1).model, 2).unwrap();
        let ids: Vec<u32> = vec![1, 5, 2, 7, 3, 3, 9, 4];
        let mut acts = Activations::new(&model.cfg, 1, 7);
        let whole = model.forward_loss(&mut acts, &ids[..7], &ids[1..]).unwrap() as f64;
        assert!((sequence_loss(&model, &ids).unwrap() - whole).abs() < 1e-6);
        let mut small = model.clone();
        small.cfg.context = 3;
        let mut sum = 0.0;
        for (s, e) in [(0, 3), (3, 6), (6, 7)] {
            let mut acts = Activations::new(&small.cfg, 1, e - s);
            let loss = small
                .forward_loss(&mut acts, &ids[s..e], &ids[s + 1..e + 1])
                .unwrap();
            sum += loss as f64 * (e - s) as f64;
        }
        assert!((sequence_loss(&small, &ids).unwrap() - sum / 7.0).abs() < 1e-6);
        assert!(sequence_loss(&model, &ids[..1]).is_err());
    }
}
