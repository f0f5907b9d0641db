//! A LoRA fine-tune, start to end: a base [`Gpt`], adapters on the projections the
//! [`LoraConfig`] targets ([`Params::add_lora`](crate::gpt::Params::add_lora), which freezes
//! everything else), the same training run as chapter 4's ([`Run::from_model`]), and the
//! result saved as PEFT saves it: `adapter_config.json`, `adapter_model.safetensors`, and
//! the run's `train_log.csv`.
//!
//! Only the adapters train, so only they have gradients and AdamW moments: the training
//! state is `3 r (d_in + d_out)` floats per adapted layer instead of three copies of the
//! model.
//!
//! With `lora.dropout > 0` the trainer turns the adapters' dropout on for each step (its
//! masks a function of the seed and the step, so a resumed run draws the same ones).
//!
//! Not here: training several adapters at once.

use std::path::Path;

use crate::data::write_atomic;
use crate::gpt::lora::LoraConfig;
use crate::gpt::optim::{AdamWConfig, Decay, LrSchedule};
use crate::gpt::peft::save_adapter;
use crate::gpt::run::{Checkpoints, Run, RunOptions, Timing, TRAIN_LOG};
use crate::gpt::train::{LossLog, StepLog, TrainConfig};
use crate::gpt::Gpt;
use crate::{Error, Result};

/// The settings of a fine-tune: the adapters and the run.
#[derive(Clone, Debug, PartialEq)]
pub struct FinetuneConfig {
    pub lora: LoraConfig,
    pub steps: usize,
    /// Windows per step.
    pub batch: usize,
    /// Tokens per window; `None`: the base model's context.
    pub seq_len: Option<usize>,
    /// Peak learning rate (after a linear warmup of `warmup` steps), decayed with a
    /// cosine to `lr / 10`.
    pub lr: f32,
    pub warmup: usize,
    /// AdamW's decoupled weight decay on `A` and `B` (0: PEFT's usual choice).
    pub weight_decay: f32,
    /// Clip the gradient's global norm (of the adapters: nothing else has one).
    pub clip: Option<f32>,
    /// Seed of `A`'s initial values and of the window sampler.
    pub seed: u64,
    /// Held-out loss every this many steps (0: at the end only).
    pub eval_every: usize,
    /// Most held-out windows per evaluation.
    pub eval_windows: usize,
    /// Save the run (adapters, base, AdamW's moments, sampler, log) as chapter 4's runs are
    /// saved, to resume it ([`run_to_end`]); `None`: never.
    pub checkpoints: Option<Checkpoints>,
}

impl FinetuneConfig {
    /// `steps` steps of 16 windows at learning rate 1e-2 (LoRA takes a larger one than
    /// pretraining: B starts at zero and the update is a small matrix), a warmup of a
    /// twentieth of the run, no weight decay, clipping at 1.
    pub fn new(lora: LoraConfig, steps: usize) -> FinetuneConfig {
        FinetuneConfig {
            lora,
            steps,
            batch: 16,
            seq_len: None,
            lr: 1e-2,
            warmup: (steps / 20).max(1),
            weight_decay: 0.0,
            clip: Some(1.0),
            seed: 1,
            eval_every: 0,
            eval_windows: 64,
            checkpoints: None,
        }
    }

    /// How the run is watched and kept: its evaluations and checkpoints.
    pub fn run_options(&self) -> RunOptions {
        RunOptions {
            eval_every: self.eval_every,
            eval_windows: self.eval_windows,
            checkpoints: self.checkpoints.clone(),
            stop_at: None,
        }
    }

    /// The training settings of the run on a model of context `context`.
    pub fn train_config(&self, context: usize) -> TrainConfig {
        TrainConfig {
            batch: self.batch,
            seq_len: self.seq_len.unwrap_or(context),
            schedule: LrSchedule {
                max_lr: self.lr,
                min_lr: self.lr / 10.0,
                warmup: self.warmup.min(self.steps),
                total: self.steps,
                anneal: 0,
                decay: Decay::Cosine,
            },
            adamw: AdamWConfig {
                weight_decay: self.weight_decay,
                ..AdamWConfig::default()
            },
            clip: self.clip,
            seed: self.seed,
        }
    }
}

/// Where the held-out tokens come from.
#[derive(Clone, Copy, Debug)]
pub enum HeldOut<'a> {
    /// This fraction of the training ids, at their end (as `llm gpt train` holds out).
    Fraction(f64),
    /// A corpus of its own.
    Ids(&'a [u32]),
}

/// A fine-tune at its end.
#[derive(Clone, Debug)]
pub struct Finetuned {
    /// The base with its trained adapters (not merged).
    pub model: Gpt,
    pub lora: LoraConfig,
    pub log: LossLog,
    /// Values that trained (the adapters'), against `model.cfg.n_params()` of the base.
    pub trainable: usize,
    /// Training state beyond the model, in bytes: a gradient and AdamW's two moments, three
    /// floats per trainable value ([`crate::gpt::train::Trainer::state_bytes`]).
    pub state_bytes: usize,
    /// The held-out loss at the end; `None` when too few ids are held out.
    pub held_out: Option<f32>,
    pub timing: Timing,
}

// ANCHOR: finetune
/// Fine-tunes `base` through LoRA adapters on `ids` (with the held-out part `held_out`
/// says), calling `on_step` after each step with its log and the held-out loss when one
/// was measured. Errors on a bad LoRA config, on ids the model cannot read and on a run
/// of 0 steps.
pub fn finetune(
    base: Gpt,
    cfg: &FinetuneConfig,
    ids: &[u32],
    held_out: HeldOut,
    on_step: impl FnMut(&StepLog, Option<f32>) + Send,
) -> Result<Finetuned> {
    let mut model = base;
    model.params.add_lora(&cfg.lora, cfg.seed)?;
    let fraction = match held_out {
        HeldOut::Fraction(f) => f,
        HeldOut::Ids(_) => 0.0,
    };
    let train = cfg.train_config(model.cfg.context);
    let run = Run::from_model(model, train, fraction, ids)?;
    run_to_end(run, ids, held_out, &cfg.run_options(), on_step)
}

/// Trains `run`, a model with adapters, to the end of its schedule and scores it: the
/// second half of [`finetune`], and how a fine-tune saved with `checkpoints` continues,
/// from `Run::resume(dir, ids)` on the same `ids` (and the same `held_out`). The adapters,
/// the frozen base, AdamW's moments and the sampler are the checkpoint's, so the run ends
/// as the run that never stopped ends, to the bit. Errors if the model has no adapters.
pub fn run_to_end(
    mut run: Run,
    ids: &[u32],
    held_out: HeldOut,
    options: &RunOptions,
    on_step: impl FnMut(&StepLog, Option<f32>) + Send,
) -> Result<Finetuned> {
    let lora = run.model.params.lora_config()?.ok_or_else(|| {
        Error::InvalidArgument("the run's model has no LoRA adapters to fine-tune".into())
    })?;
    let (train_ids, held_ids) = match held_out {
        HeldOut::Fraction(_) => run.split(ids),
        HeldOut::Ids(h) => (ids, h),
    };
    if train_ids.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{} tokens to train on: a fine-tune needs at least 2",
            train_ids.len()
        )));
    }
    let trainable = run.model.params.count_trainable().0;
    let state_bytes = run.trainer.state_bytes();
    let timing = run.train(train_ids, held_ids, options, on_step)?;
    let done = run.finish(held_ids, options)?;
    Ok(Finetuned {
        model: done.model,
        lora,
        log: done.log,
        trainable,
        state_bytes,
        held_out: done.held_out,
        timing,
    })
}
// ANCHOR_END: finetune

impl Finetuned {
    /// Writes the adapters in PEFT's format and the loss log into `dir`:
    /// `adapter_config.json` (whose `base_model_name_or_path` is `base`),
    /// `adapter_model.safetensors` and `train_log.csv`.
    pub fn save(&self, dir: &Path, base: &str) -> Result<()> {
        save_adapter(dir, &self.model.params, &self.lora, base)?;
        write_atomic(&dir.join(TRAIN_LOG), self.log.to_csv().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::peft::{load_adapter, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
    use crate::gpt::run::sequence_loss;
    use crate::gpt::GptConfig;

    fn small() -> Gpt {
        let cfg = shrunk(GptConfig::llama_tiny(), [13, 16, 2, 24, 16]);
        Gpt::init(cfg, 5).unwrap()
    }

    fn lora(rank: usize) -> LoraConfig {
        LoraConfig {
            rank,
            alpha: 2.0 * rank as f32,
            rslora: false,
            targets: vec!["q_proj".into(), "v_proj".into()],
            dropout: 0.0,
        }
    }

    /// The adapters learn a pattern the base has not seen, the base stays as it was, and
    /// the saved adapter loads back onto the base to the same loss.
    #[test]
    fn a_finetune_trains_only_the_adapters_and_saves_them() {
        let base = small();
        let ids: Vec<u32> = (0..600).map(|i| [1, 2, 3, 4, 5][i % 5]).collect();
        let before = sequence_loss(&base, &ids[..200]).unwrap();
        let mut cfg = FinetuneConfig::new(lora(2), 60);
        cfg.batch = 4;
        let done = finetune(base.clone(), &cfg, &ids, HeldOut::Fraction(0.2), |_, _| {}).unwrap();
        // 2 layers x (q: 2 (16 + 16), v: 2 (16 + 8)) with 2 kv heads of 4
        let kv = base.cfg.d_model / base.cfg.n_heads * base.cfg.n_kv_heads;
        let want = 2 * (2 * (16 + 16) + 2 * (16 + kv));
        assert_eq!(done.trainable, want);
        assert_eq!(done.state_bytes, 3 * 4 * want);
        assert_eq!(done.log.rows.len(), 60);
        let after = sequence_loss(&done.model, &ids[..200]).unwrap();
        assert!(after < before - 0.05, "{before} -> {after}");
        assert!(done.held_out.is_some());
        // the base weights did not move
        let (mut frozen, mut same) = (0, 0);
        done.model.params.visit(|spec, t| {
            if !spec.name.contains("lora_") {
                frozen += 1;
                base.params.visit(|s, b| {
                    if s.name == spec.name && b.data == t.data {
                        same += 1;
                    }
                });
            }
        });
        assert_eq!(frozen, same);

        let dir = std::env::temp_dir().join(format!("llm-lessons-finetune-{}", std::process::id()));
        done.save(&dir, "base").unwrap();
        for f in [ADAPTER_CONFIG, ADAPTER_WEIGHTS, TRAIN_LOG] {
            assert!(dir.join(f).exists(), "{f}");
        }
        let mut loaded = base.clone();
        assert_eq!(load_adapter(&dir, &mut loaded.params).unwrap(), lora(2));
        assert_eq!(sequence_loss(&loaded, &ids[..200]).unwrap(), after);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_settings_are_errors() {
        let ids = [1u32, 2, 3, 4, 5, 6, 7, 8];
        let run = |cfg: &FinetuneConfig, held: HeldOut| {
            finetune(small(), cfg, &ids, held, |_, _| {}).map(|_| ())
        };
        let zero = FinetuneConfig::new(lora(0), 5);
        assert!(run(&zero, HeldOut::Ids(&ids))
            .unwrap_err()
            .to_string()
            .contains("rank"));
        let none = FinetuneConfig::new(lora(2), 0);
        assert!(run(&none, HeldOut::Ids(&ids)).is_err());
        let ok = FinetuneConfig::new(lora(2), 2);
        assert!(run(&ok, HeldOut::Fraction(1.5)).is_err());
    }
}
