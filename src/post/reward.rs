//! A reward model: the SFT model with its head replaced by a scalar one, `r(x, y) = w · h`,
//! `h` the final hidden state at the conversation's last token, trained on preference
//! pairs with the Bradley-Terry loss `−log σ(r(x, y_c) − r(x, y_r))`.
//!
//! Bradley and Terry's model says the chosen answer wins with probability
//! `σ(r_c − r_r)`; the loss is that probability's negative log. Only differences of
//! rewards enter it, so the head needs no bias. The head is saved as Hugging Face's
//! `LlamaForSequenceClassification` names it, `score.weight` of shape `(1, C)`.

use std::path::Path;

use rand::seq::SliceRandom;

use super::batch::map_chunks;
use super::dpo::Pair;
use super::run::{run_steps, step_rng, Checkpointing, PostLog};
use crate::data::write_atomic;
use crate::gpt::checkpoint::{load_model, save};
use crate::gpt::hf::{read_safetensors, tensors_to_safetensors};
use crate::gpt::train::TrainConfig;
use crate::gpt::{Activations, Gpt};
use crate::{Error, Result};

// ANCHOR: bradley_terry
/// The Bradley-Terry loss of one pair, `−log σ(r_c − r_r)`, and its gradient with respect
/// to the two rewards: `∂L/∂r_c = −σ(r_r − r_c)`, `∂L/∂r_r = +σ(r_r − r_c)`.
pub fn bradley_terry(r_c: f64, r_r: f64) -> (f64, f64, f64) {
    let d = r_c - r_r;
    let loss = if d > 0.0 {
        (-d).exp().ln_1p()
    } else {
        -d + d.exp().ln_1p()
    };
    let s = 1.0 / (1.0 + d.exp()); // σ(−d)
    (loss, -s, s)
}
// ANCHOR_END: bradley_terry

/// The trunk of a language model and a scalar head on its last hidden state.
#[derive(Clone, Debug)]
pub struct RewardModel {
    pub trunk: Gpt,
    /// `w`, `(C)`.
    pub head: Vec<f32>,
}

/// Rows of whole sequences (no targets): the hidden state of a row's last token is read.
fn pack_inputs(seqs: &[Vec<u32>], b: usize, t: usize) -> (Vec<u32>, Vec<usize>) {
    let mut inputs = vec![0; b * t];
    let mut last = Vec::with_capacity(seqs.len());
    for (r, s) in seqs.iter().enumerate() {
        inputs[r * t..r * t + s.len()].copy_from_slice(s);
        last.push(r * t + s.len() - 1);
    }
    (inputs, last)
}

impl RewardModel {
    /// The SFT model's trunk with a zero head: every answer starts with reward 0.
    pub fn from_model(model: &Gpt) -> RewardModel {
        RewardModel {
            trunk: model.clone(),
            head: vec![0.0; model.cfg.d_model],
        }
    }

    /// The reward of each conversation (prompt then answer).
    pub fn score(&self, conversations: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<f64>> {
        let c = self.trunk.cfg.d_model;
        map_chunks(conversations, 16, |chunk| {
            let seqs: Vec<Vec<u32>> = chunk.iter().map(|(p, a)| [&p[..], a].concat()).collect();
            let t = seqs.iter().map(Vec::len).max().unwrap_or(1);
            if t > self.trunk.cfg.context {
                return Err(Error::InvalidArgument(format!(
                    "a conversation of {t} tokens is longer than the context {}",
                    self.trunk.cfg.context
                )));
            }
            let (inputs, last) = pack_inputs(&seqs, seqs.len(), t);
            let mut acts = Activations::new(&self.trunk.cfg, seqs.len(), t);
            self.trunk.forward(&mut acts, &inputs)?;
            Ok(last
                .iter()
                .map(|&j| dot(&acts.lnf[j * c..(j + 1) * c], &self.head))
                .collect())
        })
    }

    /// The fraction of `pairs` whose chosen answer gets the higher reward.
    pub fn accuracy(&self, pairs: &[Pair]) -> Result<f64> {
        let (c, r) = self.score_pairs(pairs)?;
        let right = c.iter().zip(&r).filter(|(a, b)| a > b).count();
        Ok(right as f64 / pairs.len().max(1) as f64)
    }

    /// Rewards of the chosen and of the rejected answers.
    pub fn score_pairs(&self, pairs: &[Pair]) -> Result<(Vec<f64>, Vec<f64>)> {
        let chosen: Vec<_> = pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.chosen.clone()))
            .collect();
        let rejected: Vec<_> = pairs
            .iter()
            .map(|p| (p.prompt.clone(), p.rejected.clone()))
            .collect();
        Ok((self.score(&chosen)?, self.score(&rejected)?))
    }

    /// The trunk as a checkpoint and the head as `reward_head.safetensors` in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        save(dir, &self.trunk, None)?;
        let bytes = tensors_to_safetensors(vec![(
            "score.weight".into(),
            vec![1, self.head.len()],
            &self.head[..],
        )])?;
        write_atomic(&dir.join("reward_head.safetensors"), &bytes)
    }

    pub fn load(dir: &Path) -> Result<RewardModel> {
        let trunk = load_model(dir)?;
        let path = dir.join("reward_head.safetensors");
        let head = read_safetensors(&path)?
            .into_iter()
            .find(|t| t.name == "score.weight")
            .ok_or_else(|| Error::Checkpoint {
                path: path.clone(),
                message: "no score.weight: not a reward model's head".into(),
            })?
            .data;
        if head.len() != trunk.cfg.d_model {
            return Err(Error::Checkpoint {
                path,
                message: format!(
                    "a head of {} values for a model of width {}",
                    head.len(),
                    trunk.cfg.d_model
                ),
            });
        }
        Ok(RewardModel { trunk, head })
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Adam for the head's few values (the trunk's AdamW lives in chapter 4's trainer).
struct HeadAdam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl HeadAdam {
    fn step(&mut self, w: &mut [f32], g: &[f32], lr: f32) {
        let (b1, b2, eps) = (0.9f32, 0.95f32, 1e-8f32);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for i in 0..w.len() {
            self.m[i] = b1 * self.m[i] + (1.0 - b1) * g[i];
            self.v[i] = b2 * self.v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= lr * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + eps);
        }
    }
}

/// The Bradley-Terry objective of a batch whose rows `2k` and `2k + 1` hold pair `k`'s
/// chosen and rejected conversations, from the final hidden states `lnf` `(B, T, C)` and
/// the flat index of each row's last token.
pub struct BtObjective {
    pub loss: f64,
    pub accuracy: f64,
    /// `∂L/∂h` for every position (non-zero at the rows' last tokens).
    pub d_hidden: Vec<f32>,
    /// `∂L/∂w`.
    pub d_head: Vec<f32>,
}

// ANCHOR: bt_objective
pub fn bt_objective(lnf: &[f32], last: &[usize], head: &[f32], c: usize) -> BtObjective {
    let n_pairs = last.len() / 2;
    let p = n_pairs as f64;
    let mut o = BtObjective {
        loss: 0.0,
        accuracy: 0.0,
        d_hidden: vec![0.0; lnf.len()],
        d_head: vec![0.0; c],
    };
    for k in 0..n_pairs {
        let (jc, jr) = (last[2 * k], last[2 * k + 1]);
        let (hc, hr) = (&lnf[jc * c..(jc + 1) * c], &lnf[jr * c..(jr + 1) * c]);
        let (rc, rr) = (dot(hc, head), dot(hr, head));
        let (l, d_rc, d_rr) = bradley_terry(rc, rr);
        o.loss += l / p;
        if rc > rr {
            o.accuracy += 1.0 / p;
        }
        // r = w · h: ∂r/∂h = w, ∂r/∂w = h
        for i in 0..c {
            o.d_hidden[jc * c + i] += (d_rc / p) as f32 * head[i];
            o.d_hidden[jr * c + i] += (d_rr / p) as f32 * head[i];
            o.d_head[i] += ((d_rc * hc[i] as f64 + d_rr * hr[i] as f64) / p) as f32;
        }
    }
    o
}
// ANCHOR_END: bt_objective

/// Trains `rm` on `pairs`: each step `train.batch / 2` pairs drawn by the step's generator
/// (each pair fills two rows), the Bradley-Terry loss, the trunk by AdamW and the head by
/// Adam. Logs the loss and the batch's accuracy. The head lives outside the trunk's
/// checkpoints, so a killed run starts again; the steps are seeded, so it ends the same.
pub fn train_reward_model(
    rm: &mut RewardModel,
    pairs: &[Pair],
    train: TrainConfig,
    steps: usize,
    on_step: impl FnMut(usize, &[f64]),
) -> Result<PostLog> {
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(
            "no preference pair to train on".into(),
        ));
    }
    let c = rm.trunk.cfg.d_model;
    let n_pairs = (train.batch / 2).max(1);
    let t = train.seq_len;
    let lr_head = train.schedule.max_lr;
    let mut adam = HeadAdam {
        m: vec![0.0; c],
        v: vec![0.0; c],
        t: 0,
    };
    let head = &mut rm.head;
    run_steps(
        &mut rm.trunk,
        train,
        steps,
        &["loss", "batch accuracy"],
        None::<&Checkpointing>,
        |trainer, model, step| {
            let mut rng = step_rng(trainer.config.seed, step);
            let batch: Vec<&Pair> = (0..n_pairs)
                .map(|_| pairs.choose(&mut rng).expect("pairs"))
                .collect();
            let seqs: Vec<Vec<u32>> = batch
                .iter()
                .flat_map(|p| {
                    [
                        [&p.prompt[..], &p.chosen].concat(),
                        [&p.prompt[..], &p.rejected].concat(),
                    ]
                })
                .collect();
            if let Some(s) = seqs.iter().find(|s| s.len() > t) {
                return Err(Error::InvalidArgument(format!(
                    "a conversation of {} tokens is longer than the rows of {t}",
                    s.len()
                )));
            }
            let (inputs, last) = pack_inputs(&seqs, trainer.config.batch, t);
            let mut accuracy = 0.0;
            let log = trainer.step_on_hidden(model, &inputs, |lnf| {
                let o = bt_objective(lnf, &last, head, c);
                accuracy = o.accuracy;
                adam.step(head, &o.d_head, lr_head);
                Ok((o.loss as f32, o.d_hidden))
            })?;
            Ok(vec![log.loss as f64, accuracy])
        },
        on_step,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bradley_terry_gradient_is_finite_differences() {
        let h = 1e-6;
        for (a, b) in [(0.3, -0.2), (-2.0, 5.0), (40.0, -40.0), (-40.0, 40.0)] {
            let (l, da, db) = bradley_terry(a, b);
            assert!(l.is_finite() && l >= 0.0);
            let na = (bradley_terry(a + h, b).0 - bradley_terry(a - h, b).0) / (2.0 * h);
            let nb = (bradley_terry(a, b + h).0 - bradley_terry(a, b - h).0) / (2.0 * h);
            assert!((na - da).abs() < 1e-7 && (nb - db).abs() < 1e-7, "{a} {b}");
        }
        assert!((bradley_terry(1.0, 1.0).0 - 2f64.ln()).abs() < 1e-15);
    }

    /// The reward model's gradient, through the head and the whole trunk
    /// ([`Gpt::backward_from_hidden`]), against finite differences.
    #[test]
    fn the_reward_model_gradient_matches_finite_differences() {
        use crate::gpt::config::shrunk;
        use crate::gpt::GptConfig;
        let cfg = shrunk(GptConfig::llama_tiny(), [20, 16, 2, 32, 12]);
        let trunk = Gpt::init(cfg.clone(), 5).unwrap();
        let c = cfg.d_model;
        let head: Vec<f32> = (0..c).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.2).collect();
        let seqs = vec![
            vec![3, 4, 5, 6],
            vec![3, 4, 7],
            vec![8, 9, 10, 11, 12],
            vec![8, 9, 13],
        ];
        let t = 5;
        let (inputs, last) = pack_inputs(&seqs, 4, t);
        let loss_of = |m: &Gpt, w: &[f32]| {
            let mut acts = Activations::new(&cfg, 4, t);
            m.forward(&mut acts, &inputs).unwrap();
            (bt_objective(&acts.lnf, &last, w, c), acts)
        };
        let (o, mut acts) = loss_of(&trunk, &head);
        let mut grads = trunk.params.grads();
        trunk
            .backward_from_hidden(&mut acts, &mut grads, &o.d_hidden)
            .unwrap();
        let h = 1e-3f32;
        let close = |num: f64, ana: f64, what: &str| {
            assert!(
                (num - ana).abs() <= 1e-2 * ana.abs() + 3e-4,
                "{what}: {num} vs {ana}"
            );
        };
        for i in [0, 5, c - 1] {
            let mut w = head.clone();
            w[i] += h;
            let up = loss_of(&trunk, &w).0.loss;
            w[i] -= 2.0 * h;
            let down = loss_of(&trunk, &w).0.loss;
            close((up - down) / (2.0 * h as f64), o.d_head[i] as f64, "head");
        }
        let specs = trunk.params.param_specs();
        for (ti, spec) in specs.iter().enumerate() {
            let g = grads.tensors()[ti].to_vec();
            let best = (0..g.len())
                .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
                .unwrap();
            let mut m = trunk.clone();
            let orig = m.params.tensors()[ti][best];
            m.params.tensors_mut()[ti][best] = orig + h;
            let up = loss_of(&m, &head).0.loss;
            m.params.tensors_mut()[ti][best] = orig - h;
            let down = loss_of(&m, &head).0.loss;
            close((up - down) / (2.0 * h as f64), g[best] as f64, &spec.name);
        }
    }
}
