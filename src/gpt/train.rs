//! Training: random windows of a token sequence, a step of forward, backward, clipping and
//! AdamW, and the mean loss on held-out windows.
//!
//! A run is a function of its seed: the windows come from a seeded generator, so two runs
//! with the same model, data and [`TrainConfig`] give the same losses, step for step.
//! [`crate::gpt::checkpoint`] saves a run and [`Trainer::resume`] continues it.

use super::model::{Activations, Gpt, Params};
use super::optim::{clip_grad_norm, AdamW, AdamWConfig, LrSchedule};
use crate::{Error, Result};
use ndarray_rand::rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Windows per step, `B`.
    pub batch: usize,
    /// Tokens per window, `T` (at most the model's context).
    pub seq_len: usize,
    pub schedule: LrSchedule,
    pub adamw: AdamWConfig,
    /// Clip the gradient's global norm to this; `None` for no clipping.
    pub clip: Option<f32>,
    /// Seed of the window sampler.
    pub seed: u64,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLog {
    /// Steps before this one.
    pub step: usize,
    /// The batch's mean loss, before the update.
    pub loss: f32,
    pub lr: f32,
    /// The gradient's global norm before clipping.
    pub grad_norm: f32,
}

// ANCHOR: stages
/// A value that changes at given steps: `(from_step, value)` pairs, the first from step 0,
/// the steps increasing. Written `value:from_step,...`, as `4:0,8:100,16:200` (a batch of
/// 4 windows from step 0, 8 from step 100, 16 from step 200).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Piecewise(pub Vec<(usize, usize)>);

impl Piecewise {
    /// The value at `step`; `None` when there are no pieces.
    pub fn at(&self, step: usize) -> Option<usize> {
        self.0
            .iter()
            .take_while(|(from, _)| *from <= step)
            .last()
            .map(|&(_, v)| v)
    }

    /// The first step of the last piece whose value is the largest: where the longest
    /// windows start.
    pub fn start_of_max(&self) -> Option<usize> {
        let max = self.0.iter().map(|&(_, v)| v).max()?;
        self.0
            .iter()
            .find(|&&(_, v)| v == max)
            .map(|&(from, _)| from)
    }

    /// Reads `value:from_step,...`; `what` names the schedule in errors.
    pub fn parse(spec: &str, what: &str) -> Result<Piecewise> {
        let bad = |why: String| {
            Error::InvalidArgument(format!(
                "{what} schedule {spec:?}: {why} (write value:from_step,..., as 4:0,8:100)"
            ))
        };
        let pieces = spec
            .split(',')
            .map(|p| {
                let (v, from) = p
                    .split_once(':')
                    .ok_or_else(|| bad(format!("{p:?} has no ':'")))?;
                let num = |x: &str| {
                    x.trim()
                        .parse::<usize>()
                        .map_err(|_| bad(format!("{x:?} is not a whole number")))
                };
                Ok((num(from)?, num(v)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let s = Piecewise(pieces);
        s.validate(what)?;
        Ok(s)
    }

    fn validate(&self, what: &str) -> Result<()> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "the {what} schedule: {why}"
            )))
        };
        match self.0.first() {
            None => return Ok(()),
            Some(&(from, _)) if from != 0 => return bad("the first piece must start at step 0"),
            _ => {}
        }
        if self.0.iter().any(|&(_, v)| v == 0) {
            return bad("every value must be at least 1");
        }
        if self.0.windows(2).any(|w| w[1].0 <= w[0].0) {
            return bad("the steps must increase");
        }
        Ok(())
    }
}

/// From step `from_step` on, each window is drawn from the second corpus (the
/// high-quality data of an annealing phase) with probability `fraction`, else from the
/// training data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    pub from_step: usize,
    pub fraction: f64,
}

/// Llama 3's pre-training stages on top of a [`TrainConfig`]: the batch and the window
/// length as schedules of the step (empty: the config's throughout), RoPE's base raised
/// where the longest windows start, and a data mix for the annealing phase.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stages {
    /// Windows per step, by step.
    #[serde(default)]
    pub batch: Piecewise,
    /// Tokens per window, by step.
    #[serde(default)]
    pub seq_len: Piecewise,
    /// RoPE's θ from the first step of the longest windows on.
    #[serde(default)]
    pub long_rope_theta: Option<f32>,
    #[serde(default)]
    pub mix: Option<Mix>,
}

impl Stages {
    /// Whether these stages change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Stages::default()
    }

    /// The windows of step `step`: `(batch, seq_len)`, the schedules' values or `base`'s.
    pub fn windows(&self, step: usize, base: &TrainConfig) -> (usize, usize) {
        (
            self.batch.at(step).unwrap_or(base.batch),
            self.seq_len.at(step).unwrap_or(base.seq_len),
        )
    }

    /// RoPE's θ at step `step`, when the stages raise it by then.
    pub fn rope_theta(&self, step: usize) -> Option<f32> {
        let theta = self.long_rope_theta?;
        let from = self.seq_len.start_of_max().unwrap_or(0);
        (step >= from).then_some(theta)
    }

    /// The probability that a window of step `step` comes from the second corpus.
    pub fn mix_fraction(&self, step: usize) -> f64 {
        match self.mix {
            Some(m) if step >= m.from_step => m.fraction,
            _ => 0.0,
        }
    }

    /// Errors if a schedule is malformed, a window is longer than `context`, θ is not
    /// above 1 or the mix's fraction is not a probability.
    pub fn validate(&self, context: usize) -> Result<()> {
        self.batch.validate("batch")?;
        self.seq_len.validate("sequence-length")?;
        if let Some(&(_, t)) = self.seq_len.0.iter().find(|&&(_, t)| t > context) {
            return Err(Error::InvalidArgument(format!(
                "the sequence-length schedule asks for windows of {t} tokens, past the model's context {context}"
            )));
        }
        if let Some(theta) = self.long_rope_theta {
            if theta.is_nan() || theta <= 1.0 {
                return Err(Error::InvalidArgument(format!(
                    "the long-context RoPE base must be above 1, not {theta}"
                )));
            }
        }
        if let Some(m) = self.mix {
            if !(0.0..=1.0).contains(&m.fraction) {
                return Err(Error::InvalidArgument(format!(
                    "the annealing mix's fraction must be in [0, 1], not {}",
                    m.fraction
                )));
            }
        }
        Ok(())
    }
}
// ANCHOR_END: stages

/// The state a run carries from step to step: buffers, gradients, optimizer moments and
/// the window sampler.
#[derive(Clone, Debug)]
pub struct Trainer {
    /// The settings; with [`Stages`], `batch` and `seq_len` are those where the stages'
    /// schedules give none.
    pub config: TrainConfig,
    /// Schedules of the windows, RoPE's base and the data mix (none by default).
    pub stages: Stages,
    pub opt: AdamW,
    /// Steps taken.
    pub step: usize,
    acts: Activations,
    grads: Params,
    rng: ChaCha8Rng,
    /// `(B, T)` of the buffers.
    shape: (usize, usize),
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

/// Splits token ids into a training part and the last `held_out` fraction.
pub fn split_held_out(ids: &[u32], held_out: f64) -> (&[u32], &[u32]) {
    let n_val = ((ids.len() as f64) * held_out.clamp(0.0, 1.0)).round() as usize;
    ids.split_at(ids.len() - n_val)
}

fn check_data(what: &str, data: &[u32], seq_len: usize) -> Result<()> {
    if data.len() < seq_len + 1 {
        return Err(Error::TooSmall {
            what: what.into(),
            why: format!("{} tokens, a window needs {}", data.len(), seq_len + 1),
        });
    }
    Ok(())
}

impl Trainer {
    /// A run of `model` with these settings.
    pub fn new(model: &Gpt, config: TrainConfig) -> Result<Self> {
        model.check_f32("training")?;
        if config.batch == 0 || config.seq_len == 0 || config.seq_len > model.cfg.context {
            return Err(Error::InvalidArgument(format!(
                "training windows of {} x {} tokens: both must be at least 1, and the length at most the context {}",
                config.batch, config.seq_len, model.cfg.context
            )));
        }
        let n = config.batch * config.seq_len;
        Ok(Trainer {
            stages: Stages::default(),
            opt: AdamW::new(&model.params, config.adamw),
            step: 0,
            acts: Activations::new(&model.cfg, config.batch, config.seq_len),
            grads: model.params.grads(),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            shape: (config.batch, config.seq_len),
            inputs: vec![0; n],
            targets: vec![0; n],
            config,
        })
    }

    /// Continues a saved run: its optimizer, step count and the sampler's position in its
    /// stream (from [`Trainer::sampler_position`]), so that the next steps are those the
    /// run would have taken without the interruption.
    pub fn resume(
        model: &Gpt,
        config: TrainConfig,
        opt: AdamW,
        step: usize,
        sampler_position: u128,
    ) -> Result<Self> {
        let mut t = Trainer::new(model, config)?;
        let sizes = |m: &[Vec<f32>]| m.iter().map(Vec::len).collect::<Vec<_>>();
        if sizes(&opt.m) != sizes(&t.opt.m) || sizes(&opt.v) != sizes(&t.opt.v) {
            return Err(Error::InvalidArgument(
                "the optimizer state does not fit the model".into(),
            ));
        }
        t.opt = opt;
        t.step = step;
        t.rng.set_word_pos(sampler_position);
        Ok(t)
    }

    /// Bytes of training state beyond the model: gradients and optimizer moments, which
    /// exist for trainable tensors only.
    pub fn state_bytes(&self) -> usize {
        let grads: usize = self.grads.tensors().iter().map(|t| t.len()).sum();
        grads * std::mem::size_of::<f32>() + self.opt.bytes()
    }

    /// How many tokens each routed expert of each MoE block (the MTP depth's last)
    /// received in the last step's forward: what auxiliary-loss-free balancing evens out.
    /// Empty without an MoE.
    pub fn expert_loads(&self) -> Vec<Vec<usize>> {
        let mtp = self.acts.mtp.as_ref().map(|m| &m.block);
        self.acts
            .layers
            .iter()
            .chain(mtp)
            .filter(|a| !a.moe.load.is_empty())
            .map(|a| a.moe.load.clone())
            .collect()
    }

    /// Sets the stages of the run (see [`Stages`]); errors if they do not fit `model`.
    pub fn set_stages(&mut self, model: &Gpt, stages: Stages) -> Result<()> {
        stages.validate(model.cfg.context)?;
        if stages.long_rope_theta.is_some()
            && !matches!(model.cfg.positions, super::config::Positions::Rope { .. })
        {
            return Err(Error::InvalidArgument(
                "a long-context RoPE base for a model without RoPE".into(),
            ));
        }
        self.stages = stages;
        Ok(())
    }

    /// The windows of the current step, `(batch, seq_len)`.
    pub fn windows(&self) -> (usize, usize) {
        self.stages.windows(self.step, &self.config)
    }

    // ANCHOR: resize
    /// Makes the buffers fit `batch` windows of `seq_len` tokens: the activations are
    /// allocated again (their size is `B·T`, the attention weights' `B·H·T²`); gradients
    /// and optimizer moments have the parameters' shapes, which do not change.
    pub fn resize(&mut self, model: &Gpt, batch: usize, seq_len: usize) -> Result<()> {
        if batch == 0 || seq_len == 0 || seq_len > model.cfg.context {
            return Err(Error::InvalidArgument(format!(
                "training windows of {batch} x {seq_len} tokens: both must be at least 1, and the length at most the context {}",
                model.cfg.context
            )));
        }
        if self.shape != (batch, seq_len) {
            self.acts = Activations::new(&model.cfg, batch, seq_len);
            self.inputs = vec![0; batch * seq_len];
            self.targets = vec![0; batch * seq_len];
        }
        self.shape = (batch, seq_len);
        Ok(())
    }
    // ANCHOR_END: resize

    /// How far the window sampler has read in its random stream.
    pub fn sampler_position(&self) -> u128 {
        self.rng.get_word_pos()
    }

    // ANCHOR: train_step
    /// One step on `batch` random windows of `data`: each window's targets are its inputs
    /// shifted by one token. Errors if the loss is not finite or explodes (above three
    /// times the loss of uniform guessing, `ln V`).
    pub fn step(&mut self, model: &mut Gpt, data: &[u32]) -> Result<StepLog> {
        self.step_mixed(model, data, None)
    }

    /// [`Trainer::step`] with the run's [`Stages`]: the windows this step's schedules
    /// give, RoPE's base raised where they say, and each window drawn from `high_quality`
    /// with the mix's probability (an error if the mix is on and it is `None`).
    pub fn step_mixed(
        &mut self,
        model: &mut Gpt,
        data: &[u32],
        high_quality: Option<&[u32]>,
    ) -> Result<StepLog> {
        let (b, t) = self.windows();
        self.resize(model, b, t)?;
        if let Some(theta) = self.stages.rope_theta(self.step) {
            if model.cfg.positions != (super::config::Positions::Rope { theta }) {
                model.set_rope_theta(theta)?;
            }
        }
        check_data("the training data", data, t)?;
        let p = self.stages.mix_fraction(self.step);
        let second = match (p > 0.0, high_quality) {
            (false, _) => None,
            (true, Some(d)) => {
                check_data("the annealing data", d, t)?;
                Some(d)
            }
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "the run's annealing mix draws from a second corpus: give its ids".into(),
                ))
            }
        };
        for (x, y) in self
            .inputs
            .chunks_exact_mut(t)
            .zip(self.targets.chunks_exact_mut(t))
        {
            // the coin is tossed only while mixing, so runs without a mix draw as before
            let source = match second {
                Some(d) if self.rng.gen_bool(p) => d,
                _ => data,
            };
            let start = self.rng.gen_range(0..source.len() - t);
            x.copy_from_slice(&source[start..start + t]);
            y.copy_from_slice(&source[start + 1..start + t + 1]);
        }
        // LoRA's dropout draws this step's masks, in the forward and again in the backward
        model
            .params
            .set_lora_step(Some((self.config.seed, self.step as u64)));
        let loss = model.forward_loss(&mut self.acts, &self.inputs, &self.targets);
        let uniform = (model.cfg.vocab_size as f32).ln();
        let loss = match loss {
            Ok(l) if l.is_finite() && l <= 3.0 * uniform => l,
            Ok(loss) => {
                model.params.set_lora_step(None);
                return Err(Error::Diverged {
                    step: self.step,
                    loss,
                    uniform,
                });
            }
            Err(e) => {
                model.params.set_lora_step(None);
                return Err(e);
            }
        };
        self.grads.zero();
        let backward = model.backward(&mut self.acts, &mut self.grads);
        model.params.set_lora_step(None);
        backward?;
        let grad_norm = match self.config.clip {
            Some(max) => clip_grad_norm(&mut self.grads, max),
            None => clip_grad_norm(&mut self.grads, f32::INFINITY),
        };
        let lr = self.config.schedule.lr(self.step);
        self.opt.step(&mut model.params, &self.grads, lr);
        model.balance_experts(&self.acts);
        self.step += 1;
        Ok(StepLog {
            step: self.step - 1,
            loss,
            lr,
            grad_norm,
        })
    }
    // ANCHOR_END: train_step

    /// One step on a batch the caller built (`inputs` and `targets`, `(B, T)` as this
    /// trainer's config says) with an objective of the positions' losses: `objective`
    /// receives `loss_i = -log p(target_i)` for every position and returns the objective's
    /// value and its gradient with respect to each `loss_i`; the step then runs
    /// [`Gpt::backward_weighted`] with those weights, clips and updates as [`Trainer::step`]
    /// does. Post-training's losses (a masked mean, DPO, a policy gradient) are such
    /// objectives. Errors if the value is not finite.
    pub fn step_on(
        &mut self,
        model: &mut Gpt,
        inputs: &[u32],
        targets: &[u32],
        objective: impl FnOnce(&[f32]) -> Result<(f32, Vec<f32>)>,
    ) -> Result<StepLog> {
        if targets.len() != inputs.len() {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} inputs and {} targets",
                inputs.len(),
                targets.len()
            )));
        }
        self.step_through(model, inputs, |model, acts| {
            model.forward_loss(acts, inputs, targets)?;
            let (loss, weights) = objective(&acts.losses)?;
            Ok((loss, Gradient::PerPosition(weights)))
        })
    }

    /// [`Trainer::step_on`] for an objective of the final hidden states instead of the
    /// tokens' losses (a reward model's head reads them): `objective` receives the final
    /// norm's output `(B, T, C)` and returns the value and its gradient with respect to it,
    /// which [`Gpt::backward_from_hidden`] takes down the model.
    pub fn step_on_hidden(
        &mut self,
        model: &mut Gpt,
        inputs: &[u32],
        objective: impl FnOnce(&[f32]) -> Result<(f32, Vec<f32>)>,
    ) -> Result<StepLog> {
        self.step_through(model, inputs, |model, acts| {
            model.forward(acts, inputs)?;
            let (loss, d_hidden) = objective(&acts.lnf)?;
            Ok((loss, Gradient::Hidden(d_hidden)))
        })
    }

    /// What [`Trainer::step_on`] and [`Trainer::step_on_hidden`] share: the batch's size
    /// checked, LoRA's dropout step set, `forward` run (it returns the objective and where
    /// its gradient enters the model), the backward, clipping and the AdamW update.
    fn step_through(
        &mut self,
        model: &mut Gpt,
        inputs: &[u32],
        forward: impl FnOnce(&Gpt, &mut Activations) -> Result<(f32, Gradient)>,
    ) -> Result<StepLog> {
        let (b, t) = self.windows();
        if inputs.len() != b * t {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} inputs for {b} x {t} positions",
                inputs.len(),
            )));
        }
        self.resize(model, b, t)?;
        model
            .params
            .set_lora_step(Some((self.config.seed, self.step as u64)));
        let result = (|| {
            let (loss, gradient) = forward(model, &mut self.acts)?;
            if !loss.is_finite() {
                return Err(Error::Diverged {
                    step: self.step,
                    loss,
                    uniform: (model.cfg.vocab_size as f32).ln(),
                });
            }
            self.grads.zero();
            match gradient {
                Gradient::PerPosition(w) => {
                    model.backward_weighted(&mut self.acts, &mut self.grads, &w)?
                }
                Gradient::Hidden(d) => {
                    model.backward_from_hidden(&mut self.acts, &mut self.grads, &d)?
                }
            }
            Ok(loss)
        })();
        model.params.set_lora_step(None);
        let loss = result?;
        let grad_norm = clip_grad_norm(&mut self.grads, self.config.clip.unwrap_or(f32::INFINITY));
        let lr = self.config.schedule.lr(self.step);
        self.opt.step(&mut model.params, &self.grads, lr);
        model.balance_experts(&self.acts);
        self.step += 1;
        Ok(StepLog {
            step: self.step - 1,
            loss,
            lr,
            grad_norm,
        })
    }
}

/// Where an objective's gradient enters the model.
enum Gradient {
    /// `∂L/∂loss_i` for every position: [`Gpt::backward_weighted`].
    PerPosition(Vec<f32>),
    /// `∂L/∂h` at the final hidden states: [`Gpt::backward_from_hidden`].
    Hidden(Vec<f32>),
}

/// The mean loss over up to `max_windows` windows of `seq_len` tokens that tile `data`
/// from its start (the same windows every time, so evaluations compare), `batch` windows
/// per forward.
pub fn eval_loss(
    model: &Gpt,
    data: &[u32],
    seq_len: usize,
    batch: usize,
    max_windows: usize,
) -> Result<f32> {
    check_data("the held-out data", data, seq_len)?;
    let windows = ((data.len() - 1) / seq_len).min(max_windows).max(1);
    let starts: Vec<usize> = (0..windows).map(|w| w * seq_len).collect();
    let mut total = 0.0f64;
    for group in starts.chunks(batch.max(1)) {
        let inputs: Vec<u32> = group
            .iter()
            .flat_map(|&s| data[s..s + seq_len].iter().copied())
            .collect();
        let targets: Vec<u32> = group
            .iter()
            .flat_map(|&s| data[s + 1..s + seq_len + 1].iter().copied())
            .collect();
        let mut acts = Activations::new(&model.cfg, group.len(), seq_len);
        total += model.forward_loss(&mut acts, &inputs, &targets)? as f64 * group.len() as f64;
    }
    Ok((total / windows as f64) as f32)
}

/// A run's history: one row per step, with the held-out loss where it was measured. Saved
/// as CSV next to the model (`train_log.csv`) and drawn as the loss curve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LossLog {
    pub rows: Vec<LogRow>,
}

/// One step of a [`LossLog`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogRow {
    pub step: StepLog,
    /// The held-out loss after this step, if it was measured then.
    pub held_out: Option<f32>,
}

const LOG_HEADER: &str = "step,train_loss,lr,grad_norm,held_out_loss";

impl LossLog {
    pub fn push(&mut self, step: StepLog, held_out: Option<f32>) {
        self.rows.push(LogRow { step, held_out });
    }

    /// The log as CSV, one line per step; floats are printed so that they read back bit
    /// for bit.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(LOG_HEADER);
        out.push('\n');
        for r in &self.rows {
            let h = r.held_out.map(|v| v.to_string()).unwrap_or_default();
            let s = &r.step;
            out.push_str(&format!(
                "{},{},{},{},{h}\n",
                s.step, s.loss, s.lr, s.grad_norm
            ));
        }
        out
    }

    /// Reads what [`LossLog::to_csv`] wrote; `path` names the file in errors.
    pub fn from_csv(text: &str, path: &std::path::Path) -> Result<LossLog> {
        let bad = |line: usize, why: &str| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("line {line}: {why}"),
        };
        let mut lines = text.lines();
        if lines.next() != Some(LOG_HEADER) {
            return Err(bad(1, &format!("the header must be {LOG_HEADER}")));
        }
        let mut log = LossLog::default();
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 5 {
                return Err(bad(i + 2, "needs 5 fields"));
            }
            let num = |k: usize| f[k].parse::<f32>().map_err(|_| bad(i + 2, "not a number"));
            log.push(
                StepLog {
                    step: f[0].parse().map_err(|_| bad(i + 2, "bad step"))?,
                    loss: num(1)?,
                    lr: num(2)?,
                    grad_norm: num(3)?,
                },
                if f[4].is_empty() { None } else { Some(num(4)?) },
            );
        }
        Ok(log)
    }

    /// The training loss (mean over `smooth` steps, so that the curve reads through the
    /// noise of single batches) and the held-out points, as (step, nats) pairs. Plotting
    /// them is [`crate::gpt::charts`]'s job: the training core draws nothing.
    pub fn curves(&self, smooth: usize) -> LossCurves {
        let smooth = smooth.max(1);
        let train = self
            .rows
            .chunks(smooth)
            .map(|c| {
                let mean = c.iter().map(|r| r.step.loss as f64).sum::<f64>() / c.len() as f64;
                (c[c.len() - 1].step.step as f64 + 1.0, mean)
            })
            .collect();
        let held_out = self
            .rows
            .iter()
            .filter_map(|r| r.held_out.map(|h| (r.step.step as f64 + 1.0, h as f64)))
            .collect();
        LossCurves { train, held_out }
    }
}

/// A loss log as points: what a chart of it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct LossCurves {
    /// (step, mean training loss over the smoothing window).
    pub train: Vec<(f64, f64)>,
    /// (step, held-out loss), where it was measured.
    pub held_out: Vec<(f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::optim::Decay;
    use crate::gpt::GptConfig;

    fn small() -> GptConfig {
        shrunk(GptConfig::llama_tiny(), [16, 32, 2, 64, 32])
    }

    fn config(steps: usize) -> TrainConfig {
        TrainConfig {
            batch: 4,
            seq_len: 16,
            schedule: LrSchedule {
                max_lr: 1e-2,
                min_lr: 0.0,
                warmup: 5,
                total: steps,
                anneal: 0,
                decay: Decay::Cosine,
            },
            adamw: AdamWConfig::default(),
            clip: Some(1.0),
            seed: 5,
        }
    }

    /// A sequence that repeats every 7 tokens: after the first few tokens of a window the
    /// next token is certain, so the loss must fall far below ln 16.
    #[test]
    fn learns_a_repeating_sequence_and_runs_repeat() {
        let data: Vec<u32> = (0..700).map(|i| [3, 1, 4, 1, 5, 9, 2][i % 7]).collect();
        let (train, val) = split_held_out(&data, 0.2);
        assert_eq!((train.len(), val.len()), (560, 140));
        let run = || {
            let mut model = Gpt::init(small(), 1).unwrap();
            let mut trainer = Trainer::new(&model, config(80)).unwrap();
            let losses: Vec<f32> = (0..80)
                .map(|_| trainer.step(&mut model, train).unwrap().loss)
                .collect();
            (losses, eval_loss(&model, val, 16, 4, 8).unwrap())
        };
        let (losses, val_loss) = run();
        assert!(losses[0] > 2.5, "starts near ln 16 = 2.77: {}", losses[0]);
        assert!(val_loss < 0.3, "held-out loss {val_loss} after {losses:?}");
        assert_eq!(run().0, losses, "same seed, same run");
    }

    /// Freezing every tensor but the head trains the head alone, exactly as a run that
    /// computes every gradient but puts every other tensor back after each step; and the
    /// frozen run holds gradients and moments for the head only.
    #[test]
    fn a_frozen_base_trains_only_the_head() {
        let data: Vec<u32> = (0..400).map(|i| (i * 7 % 13 + i % 3) as u32).collect();
        let mut cfg = config(12);
        // clipping by the global norm would mix the other tensors' gradients into the head's
        cfg.clip = None;
        let mut frozen = Gpt::init(small(), 2).unwrap();
        let start = frozen.params.clone();
        let head_values = frozen.params.set_trainable(|name| name == "lm_head.weight");
        assert_eq!(head_values, 16 * 32);
        let mut full = Gpt::init(small(), 2).unwrap();
        let (mut t_frozen, mut t_full) = (
            Trainer::new(&frozen, cfg.clone()).unwrap(),
            Trainer::new(&full, cfg).unwrap(),
        );
        for _ in 0..12 {
            let a = t_frozen.step(&mut frozen, &data).unwrap();
            let b = t_full.step(&mut full, &data).unwrap();
            assert_eq!(a.loss, b.loss);
            let head = full.params.lm_head.take();
            full.params = Params {
                lm_head: head,
                ..start.clone()
            };
        }
        let head = |p: &Params| p.lm_head.as_ref().unwrap().f32().data.clone();
        assert_eq!(head(&frozen.params), head(&full.params));
        assert_ne!(head(&frozen.params), head(&start));
        let (n, all) = frozen.params.count_trainable();
        assert_eq!(n, 16 * 32);
        let rest = |p: &Params| p.tensors()[..p.tensors().len() - 1].concat();
        assert_eq!(
            rest(&frozen.params),
            rest(&start),
            "the frozen tensors did not move"
        );
        // gradient, m and v: 3 copies of the trainable values
        assert_eq!(t_frozen.state_bytes(), 3 * n * 4);
        assert_eq!(t_full.state_bytes(), 3 * all * 4);
    }

    #[test]
    fn eval_batches_do_not_change_the_loss() {
        let data: Vec<u32> = (0..300).map(|i| (i * i % 16) as u32).collect();
        let model = Gpt::init(small(), 3).unwrap();
        let one = eval_loss(&model, &data, 16, 1, 10).unwrap();
        let three = eval_loss(&model, &data, 16, 3, 10).unwrap(); // 3 + 3 + 3 + 1 windows
        assert!((one - three).abs() < 1e-5, "{one} {three}");
    }

    #[test]
    fn bad_settings_and_data_are_errors() {
        let mut model = Gpt::init(small(), 1).unwrap();
        let mut c = config(10);
        c.seq_len = 33; // context 32
        assert!(Trainer::new(&model, c).is_err());
        let mut trainer = Trainer::new(&model, config(10)).unwrap();
        let err = trainer.step(&mut model, &[1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("3 tokens"), "{err}");
        assert!(eval_loss(&model, &[1; 5], 16, 1, 4).is_err());
        assert!(
            trainer.step(&mut model, &[99; 40]).is_err(),
            "token ids past the vocabulary"
        );
    }

    #[test]
    fn a_huge_learning_rate_stops_with_a_clear_error() {
        let data: Vec<u32> = (0..400).map(|i| (i * 7 % 16) as u32).collect();
        let mut model = Gpt::init(small(), 2).unwrap();
        let mut c = config(50);
        c.schedule = LrSchedule::constant(1e4);
        c.clip = None;
        let mut trainer = Trainer::new(&model, c).unwrap();
        let err = (0..50)
            .find_map(|_| trainer.step(&mut model, &data).err())
            .expect("diverges");
        assert!(err.to_string().contains("diverged"), "{err}");
    }

    #[test]
    fn the_schedules_give_the_phases_they_say() {
        let b = Piecewise::parse("4:0,8:100,16:200", "batch").unwrap();
        assert_eq!(b.0, [(0, 4), (100, 8), (200, 16)]);
        let got: Vec<usize> = [0, 99, 100, 199, 200, 10_000]
            .iter()
            .map(|&s| b.at(s).unwrap())
            .collect();
        assert_eq!(got, [4, 4, 8, 8, 16, 16]);
        let stages = Stages {
            batch: b,
            seq_len: Piecewise::parse("16:0,64:300", "sequence-length").unwrap(),
            long_rope_theta: Some(5e5),
            mix: Some(Mix {
                from_step: 350,
                fraction: 0.5,
            }),
        };
        let base = config(400);
        assert_eq!(stages.windows(150, &base), (8, 16));
        assert_eq!(stages.windows(300, &base), (16, 64));
        assert_eq!(Stages::default().windows(7, &base), (4, 16));
        assert_eq!(
            (stages.rope_theta(299), stages.rope_theta(300)),
            (None, Some(5e5))
        );
        assert_eq!(
            (stages.mix_fraction(349), stages.mix_fraction(350)),
            (0.0, 0.5)
        );
        assert!(stages.validate(64).is_ok());
        assert!(
            stages.validate(32).is_err(),
            "windows of 64 past a context of 32"
        );
    }

    #[test]
    fn bad_schedule_specs_are_errors() {
        for spec in [
            "",
            "4",
            "4:1",
            "4:0,8:0",
            "4:0,8:x",
            "0:0",
            "4:0,8:200,16:100",
        ] {
            assert!(Piecewise::parse(spec, "batch").is_err(), "{spec:?}");
        }
        let err = Piecewise::parse("4:5", "batch").unwrap_err();
        assert!(err.to_string().contains("step 0"), "{err}");
        let mix = Stages {
            mix: Some(Mix {
                from_step: 0,
                fraction: 1.5,
            }),
            ..Stages::default()
        };
        assert!(mix.validate(64).is_err());
    }

    /// A trainer that ran at 4 x 16 and was resized to 2 x 8 takes the same step as a
    /// fresh trainer built at 2 x 8 with the same optimizer state: no stale buffer leaks.
    #[test]
    fn a_resized_trainer_matches_a_fresh_one_at_the_new_size() {
        let data: Vec<u32> = (0..400).map(|i| (i * 7 % 13 + i % 3) as u32).collect();
        let mut model = Gpt::init(small(), 4).unwrap();
        let mut trainer = Trainer::new(&model, config(10)).unwrap();
        for _ in 0..3 {
            trainer.step(&mut model, &data).unwrap();
        }
        let mut fresh_model = model.clone();
        let mut small_config = config(10);
        (small_config.batch, small_config.seq_len) = (2, 8);
        let mut fresh = Trainer::new(&fresh_model, small_config).unwrap();
        (fresh.opt, fresh.step) = (trainer.opt.clone(), trainer.step);
        trainer.stages.batch = Piecewise(vec![(0, 2)]);
        trainer.stages.seq_len = Piecewise(vec![(0, 8)]);
        let inputs: Vec<u32> = data[..16].to_vec();
        let targets: Vec<u32> = data[1..17].to_vec();
        let mean = |l: &[f32]| {
            let w = 1.0 / l.len() as f32;
            Ok((l.iter().sum::<f32>() * w, vec![w; l.len()]))
        };
        let a = trainer
            .step_on(&mut model, &inputs, &targets, mean)
            .unwrap();
        let b = fresh
            .step_on(&mut fresh_model, &inputs, &targets, mean)
            .unwrap();
        assert_eq!(a, b);
        assert!(model.params == fresh_model.params);
        assert!(trainer
            .step_on(&mut model, &data[..64], &data[1..65], mean)
            .is_err());
    }

    /// From the mix's first step, a window comes from the second corpus with the stated
    /// probability: over 60 steps of 4 windows, 30% within a loose band.
    #[test]
    fn the_mix_draws_the_second_corpus_at_its_rate() {
        let web: Vec<u32> = (0..300).map(|i| (i % 7) as u32).collect();
        let clean: Vec<u32> = (0..300).map(|i| 8 + (i % 7) as u32).collect();
        let mut model = Gpt::init(small(), 5).unwrap();
        let mut trainer = Trainer::new(&model, config(80)).unwrap();
        trainer
            .set_stages(
                &model,
                Stages {
                    mix: Some(Mix {
                        from_step: 20,
                        fraction: 0.3,
                    }),
                    ..Stages::default()
                },
            )
            .unwrap();
        let (mut clean_windows, mut windows) = (0, 0);
        for step in 0..80 {
            trainer.step_mixed(&mut model, &web, Some(&clean)).unwrap();
            for w in trainer.inputs.chunks_exact(16) {
                let from_clean = w[0] >= 8;
                assert!(
                    w.iter().all(|&x| (x >= 8) == from_clean),
                    "one corpus a window"
                );
                if step < 20 {
                    assert!(!from_clean, "no mix before step 20");
                } else {
                    clean_windows += from_clean as usize;
                    windows += 1;
                }
            }
        }
        let rate = clean_windows as f64 / windows as f64;
        // 240 windows: the standard deviation of the rate is 0.03
        assert!((rate - 0.3).abs() < 0.12, "{rate}");
        let err = trainer.step(&mut model, &web).unwrap_err();
        assert!(err.to_string().contains("second corpus"), "{err}");
    }

    #[test]
    fn the_loss_log_reads_back_bit_for_bit() {
        let mut log = LossLog::default();
        for i in 0..5 {
            let step = StepLog {
                step: i,
                loss: 1.0 / (i as f32 + 3.0),
                lr: 1e-3 * i as f32 / 7.0,
                grad_norm: 0.1 + i as f32,
            };
            log.push(step, (i % 2 == 0).then_some(2.0 / 3.0 + i as f32));
        }
        let path = std::path::Path::new("train_log.csv");
        let csv = log.to_csv();
        assert_eq!(LossLog::from_csv(&csv, path).unwrap(), log);
        let err = LossLog::from_csv(&csv.replace("0.25", "x"), path).unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
        assert!(LossLog::from_csv("a,b\n", path).is_err());
        let curves = log.curves(2);
        assert_eq!(curves.train.len(), 3);
        assert_eq!(curves.held_out.len(), 3);
    }
}
