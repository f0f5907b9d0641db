//! Direct Preference Optimization: the policy trained on preference pairs directly, with
//! no reward model and no sampling, as TRL computes it; and Llama 3's version of it.
//!
//! For a prompt `x`, a chosen answer `y_c` and a rejected one `y_r`, with `log π(y|x)` the
//! answer's log-probability summed over its tokens, the policy's implied reward is
//! `r(y) = β (log π(y|x) − log π_ref(y|x))`, and the loss of a pair is
//!
//! ```text
//! z = r(y_c) − r(y_r) = β [(log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))]
//! L = −log σ(z)                                 TRL's loss_type "sigmoid", β = 0.1
//! ```
//!
//! averaged over the pairs. The reference `π_ref` (the SFT model) is frozen: its
//! log-probabilities are computed once.
//!
//! Llama 3 (Dubey et al. 2024, "The Llama 3 Herd of Models", §4.1.4) changes two things:
//! the formatting tokens (headers, end of turn) are masked out of the sums, since chosen
//! and rejected answers share them and their gradients would cancel into noise; and a
//! negative log-likelihood term on the chosen answers, scaled by 0.2, keeps their
//! probability from falling while the margin grows. [`DpoConfig::llama3`].

use std::path::Path;

use serde::Deserialize;

use rand::Rng;

use super::batch::{pack, sum_logp, Packed};
use super::run::step_rng;
use super::task::FORMATTING;
use crate::gpt::train::Trainer;
use crate::gpt::{Activations, Gpt, Params};
use crate::{Error, Result};

/// One preference: the same prompt, the answer preferred and the one rejected (token ids;
/// the answers are what follows the prompt).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Pair {
    #[serde(rename = "prompt_ids")]
    pub prompt: Vec<u32>,
    #[serde(rename = "chosen_ids")]
    pub chosen: Vec<u32>,
    #[serde(rename = "rejected_ids")]
    pub rejected: Vec<u32>,
}

impl Pair {
    fn chosen_seq(&self) -> Vec<u32> {
        [&self.prompt[..], &self.chosen].concat()
    }

    fn rejected_seq(&self) -> Vec<u32> {
        [&self.prompt[..], &self.rejected].concat()
    }

    /// `{"prompt_ids": [...], "chosen_ids": [...], "rejected_ids": [...]}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "prompt_ids": self.prompt,
            "chosen_ids": self.chosen,
            "rejected_ids": self.rejected,
        })
        .to_string()
    }
}

/// Pairs from a JSON-lines file, one pair per line; an error names the line that is not
/// one, or a pair with an empty prompt or answer.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut pairs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| Error::Format {
            path: path.to_path_buf(),
            line: i + 1,
            message: why,
        };
        let pair: Pair = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "{e} (each line: {{\"prompt_ids\": [...], \"chosen_ids\": [...], \"rejected_ids\": [...]}})"
            ))
        })?;
        if pair.prompt.is_empty() || pair.chosen.is_empty() || pair.rejected.is_empty() {
            return Err(bad(
                "a prompt and both answers need at least one token".into()
            ));
        }
        pairs.push(pair);
    }
    if pairs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} holds no pair",
            path.display()
        )));
    }
    Ok(pairs)
}

/// The loss's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpoConfig {
    /// How far the policy may move from the reference: the implied reward's scale.
    pub beta: f64,
    /// The NLL term's weight on the chosen answers (0: none).
    pub nll_alpha: f64,
    /// Token ids left out of the log-probability sums (and of the NLL term): Llama 3's
    /// formatting tokens; empty for TRL's form.
    pub masked: &'static [u32],
}

impl DpoConfig {
    /// TRL's `DPOTrainer` defaults: the sigmoid loss, β = 0.1, every answer token summed.
    pub fn trl() -> Self {
        DpoConfig {
            beta: 0.1,
            nll_alpha: 0.0,
            masked: &[],
        }
    }

    /// Llama 3's: β = 0.1, formatting tokens masked, an NLL term on the chosen answers
    /// with coefficient 0.2 (§4.1.4 of the Llama 3 paper).
    pub fn llama3() -> Self {
        DpoConfig {
            beta: 0.1,
            nll_alpha: 0.2,
            masked: &FORMATTING,
        }
    }

    fn keep(&self, id: u32) -> bool {
        !self.masked.contains(&id)
    }
}

// ANCHOR: dpo_pair
/// One pair's loss `−log σ(z)`, `z = β [(π_c − ref_c) − (π_r − ref_r)]` (log-probabilities
/// summed over each answer), and its gradient with respect to the policy's two
/// log-probabilities: `∂L/∂π_c = −β σ(−z)`, `∂L/∂π_r = +β σ(−z)`. The gradient is largest
/// when the policy ranks the pair wrongly (`z < 0`) and vanishes as `z` grows.
pub fn dpo_pair_loss(pi_c: f64, pi_r: f64, ref_c: f64, ref_r: f64, beta: f64) -> (f64, f64, f64) {
    let z = beta * ((pi_c - ref_c) - (pi_r - ref_r));
    // −log σ(z) = log(1 + e^{−z}), written to stay finite for large |z|
    let loss = if z > 0.0 {
        (-z).exp().ln_1p()
    } else {
        -z + z.exp().ln_1p()
    };
    let sigma_neg_z = 1.0 / (1.0 + z.exp());
    (loss, -beta * sigma_neg_z, beta * sigma_neg_z)
}
// ANCHOR_END: dpo_pair

/// What the loss measured on a batch of pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DpoStats {
    /// The mean loss (with the NLL term when the config has one).
    pub loss: f64,
    /// The mean DPO term alone.
    pub dpo: f64,
    /// The NLL term before its coefficient: mean −log p per chosen token.
    pub nll: f64,
    /// Fraction of pairs whose implied reward prefers the chosen answer.
    pub reward_accuracy: f64,
    /// Mean implied rewards `β (log π − log π_ref)` of the chosen and rejected answers.
    pub chosen_reward: f64,
    pub rejected_reward: f64,
    /// Per pair: the policy's summed log-probabilities of the chosen and rejected answers.
    pub policy_logps: Vec<(f64, f64)>,
}

/// Pair `k` sits in rows `2k` (chosen) and `2k + 1` (rejected) of the batch.
pub fn pack_pairs(pairs: &[Pair], t: usize) -> Result<Packed> {
    let seqs: Vec<Vec<u32>> = pairs
        .iter()
        .flat_map(|p| [p.chosen_seq(), p.rejected_seq()])
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    pack(&refs, 2 * pairs.len(), t)
}

/// The longest pair's sequence, less one: the positions a batch of them needs.
pub fn positions_needed(pairs: &[Pair]) -> usize {
    pairs
        .iter()
        .map(|p| p.prompt.len() + p.chosen.len().max(p.rejected.len()) - 1)
        .max()
        .unwrap_or(1)
}

/// Summed answer log-probabilities of each pair, (chosen, rejected), from the positions'
/// losses of a batch packed by [`pack_pairs`].
pub fn pair_logps(
    losses: &[f32],
    packed: &Packed,
    pairs: &[Pair],
    cfg: &DpoConfig,
) -> Vec<(f64, f64)> {
    pairs
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let from = p.prompt.len();
            let c = packed.positions(2 * k, from, |id| cfg.keep(id));
            let r = packed.positions(2 * k + 1, from, |id| cfg.keep(id));
            (sum_logp(losses, &c), sum_logp(losses, &r))
        })
        .collect()
}

// ANCHOR: dpo_objective
/// The DPO objective of a packed batch of pairs given the positions' losses and the
/// reference's log-probabilities: its statistics, and the weight of each position's loss
/// in its gradient, for [`Gpt::backward_weighted`]. Since `log π = −Σ loss_j`, a position
/// of a chosen answer gets `−∂L/∂π_c / P = β σ(−z) / P` (its loss is pushed down, its
/// probability up) and one of a rejected answer `−β σ(−z) / P`; the NLL term adds
/// `α / (chosen tokens)` to every chosen position.
pub fn dpo_objective(
    losses: &[f32],
    packed: &Packed,
    pairs: &[Pair],
    reference: &[(f64, f64)],
    cfg: &DpoConfig,
) -> (DpoStats, Vec<f32>) {
    let n_pairs = pairs.len() as f64;
    let mut weights = vec![0.0f32; losses.len()];
    let mut stats = DpoStats::default();
    let mut chosen_positions = Vec::new();
    for (k, p) in pairs.iter().enumerate() {
        let from = p.prompt.len();
        let c = packed.positions(2 * k, from, |id| cfg.keep(id));
        let r = packed.positions(2 * k + 1, from, |id| cfg.keep(id));
        let (pi_c, pi_r) = (sum_logp(losses, &c), sum_logp(losses, &r));
        let (ref_c, ref_r) = reference[k];
        let (loss, d_pi_c, d_pi_r) = dpo_pair_loss(pi_c, pi_r, ref_c, ref_r, cfg.beta);
        stats.dpo += loss / n_pairs;
        let (rc, rr) = (cfg.beta * (pi_c - ref_c), cfg.beta * (pi_r - ref_r));
        stats.chosen_reward += rc / n_pairs;
        stats.rejected_reward += rr / n_pairs;
        if rc > rr {
            stats.reward_accuracy += 1.0 / n_pairs;
        }
        stats.policy_logps.push((pi_c, pi_r));
        // ∂L/∂loss_j = ∂L/∂π · ∂π/∂loss_j = ∂L/∂π · (−1)
        for &j in &c {
            weights[j] += (-d_pi_c / n_pairs) as f32;
        }
        for &j in &r {
            weights[j] += (-d_pi_r / n_pairs) as f32;
        }
        // the NLL term reads the same tokens, as TRL's "sft" loss reads the completion mask
        chosen_positions.extend(c);
    }
    if cfg.nll_alpha > 0.0 && !chosen_positions.is_empty() {
        let n = chosen_positions.len() as f64;
        stats.nll = -sum_logp(losses, &chosen_positions) / n;
        for &j in &chosen_positions {
            weights[j] += (cfg.nll_alpha / n) as f32;
        }
    }
    stats.loss = stats.dpo + cfg.nll_alpha * stats.nll;
    (stats, weights)
}
// ANCHOR_END: dpo_objective

/// The reference's summed answer log-probabilities of each pair, computed once.
pub fn reference_logps(
    reference: &Gpt,
    pairs: &[Pair],
    cfg: &DpoConfig,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(16) {
        let t = positions_needed(chunk);
        let packed = pack_pairs(chunk, t)?;
        let mut acts = Activations::new(&reference.cfg, packed.b, t);
        reference.forward_loss(&mut acts, &packed.inputs, &packed.targets)?;
        out.extend(pair_logps(&acts.losses, &packed, chunk, cfg));
    }
    Ok(out)
}

fn check_fits(model: &Gpt, pairs: &[Pair]) -> Result<usize> {
    let t = positions_needed(pairs);
    if t > model.cfg.context {
        return Err(Error::InvalidArgument(format!(
            "a pair of {} tokens does not fit the model's context of {}",
            t + 1,
            model.cfg.context
        )));
    }
    let v = model.cfg.vocab_size as u32;
    if let Some(bad) = pairs
        .iter()
        .flat_map(|p| p.prompt.iter().chain(&p.chosen).chain(&p.rejected))
        .find(|&&id| id >= v)
    {
        return Err(Error::InvalidArgument(format!(
            "token id {bad} is outside the model's vocabulary of {v}"
        )));
    }
    Ok(t)
}

/// The loss of `policy` on `pairs` against `reference`, and its gradient with respect to
/// the policy's trainable parameters (`llm post dpo-loss` prints the loss; the tests
/// compare both with PyTorch's autograd).
pub fn dpo_loss_and_gradient(
    policy: &Gpt,
    reference: &Gpt,
    pairs: &[Pair],
    cfg: &DpoConfig,
) -> Result<(DpoStats, Params)> {
    if policy.cfg != reference.cfg {
        return Err(Error::InvalidArgument(
            "the policy and the reference must be the same architecture".into(),
        ));
    }
    let t = check_fits(policy, pairs)?;
    let ref_logps = reference_logps(reference, pairs, cfg)?;
    let packed = pack_pairs(pairs, t)?;
    let mut acts = Activations::new(&policy.cfg, packed.b, t);
    policy.forward_loss(&mut acts, &packed.inputs, &packed.targets)?;
    let (stats, weights) = dpo_objective(&acts.losses, &packed, pairs, &ref_logps, cfg);
    let mut grads = policy.params.grads();
    policy.backward_weighted(&mut acts, &mut grads, &weights)?;
    Ok((stats, grads))
}

/// One DPO step on `trainer.config.batch / 2` pairs drawn by the step's generator
/// (`reference[k]`: the reference's log-probabilities of `pairs[k]`, from
/// [`reference_logps`]). Returns the loss, the batch's reward accuracy, the mean implied
/// rewards of the chosen and rejected answers, the NLL term and the tokens trained on.
pub fn dpo_step(
    trainer: &mut Trainer,
    model: &mut Gpt,
    pairs: &[Pair],
    reference: &[(f64, f64)],
    cfg: &DpoConfig,
    step: usize,
) -> Result<Vec<f64>> {
    let n = trainer.config.batch / 2;
    let mut rng = step_rng(trainer.config.seed, step);
    let picked: Vec<usize> = (0..n).map(|_| rng.gen_range(0..pairs.len())).collect();
    let batch: Vec<Pair> = picked.iter().map(|&i| pairs[i].clone()).collect();
    let refs: Vec<(f64, f64)> = picked.iter().map(|&i| reference[i]).collect();
    let mut packed = pack_pairs(&batch, trainer.config.seq_len)?;
    // an odd batch leaves a row of padding: pack_pairs sized it for the pairs only
    if packed.b != trainer.config.batch {
        let t = packed.t;
        packed.inputs.resize(trainer.config.batch * t, 0);
        packed.targets.resize(trainer.config.batch * t, 0);
        packed.lens.resize(trainer.config.batch, 0);
        packed.b = trainer.config.batch;
    }
    let tokens: usize = packed.lens.iter().map(|l| l.saturating_sub(1)).sum();
    let mut stats = DpoStats::default();
    let log = trainer.step_on(model, &packed.inputs, &packed.targets, |losses| {
        let (s, w) = dpo_objective(losses, &packed, &batch, &refs, cfg);
        stats = s;
        Ok((stats.loss as f32, w))
    })?;
    Ok(vec![
        log.loss as f64,
        stats.reward_accuracy,
        stats.chosen_reward,
        stats.rejected_reward,
        stats.nll,
        tokens as f64,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::GptConfig;

    #[test]
    fn the_pair_loss_is_log2_at_the_reference_and_its_gradient_is_finite_differences() {
        let (l, dc, dr) = dpo_pair_loss(-3.0, -5.0, -3.0, -5.0, 0.1);
        assert!((l - 2f64.ln()).abs() < 1e-15);
        assert!((dc + 0.05).abs() < 1e-15 && (dr - 0.05).abs() < 1e-15);
        let h = 1e-6;
        for (pc, pr) in [(-2.0, -7.0), (-9.0, -1.0), (-400.0, -1.0), (-1.0, -400.0)] {
            let (_, dc, dr) = dpo_pair_loss(pc, pr, -4.0, -4.5, 0.1);
            let f = |a: f64, b: f64| dpo_pair_loss(a, b, -4.0, -4.5, 0.1).0;
            let nc = (f(pc + h, pr) - f(pc - h, pr)) / (2.0 * h);
            let nr = (f(pc, pr + h) - f(pc, pr - h)) / (2.0 * h);
            assert!((nc - dc).abs() < 1e-8, "{pc} {pr}: {nc} vs {dc}");
            assert!((nr - dr).abs() < 1e-8);
            assert!(f(pc, pr).is_finite());
        }
    }

    /// The model's gradient of the whole loss (DPO, NLL, masking) against finite
    /// differences of the loss in f64 sums over f32 forwards.
    #[test]
    fn the_model_gradient_matches_finite_differences() {
        let cfg = shrunk(GptConfig::llama_tiny(), [24, 16, 2, 32, 16]);
        let policy = Gpt::init(cfg.clone(), 3).unwrap();
        let reference = Gpt::init(cfg, 4).unwrap();
        let pairs = vec![
            Pair {
                prompt: vec![5, 6, 7],
                chosen: vec![8, 9, 2],
                rejected: vec![10, 1, 11, 2],
            },
            Pair {
                prompt: vec![12, 13],
                chosen: vec![14, 2],
                rejected: vec![15, 16, 17],
            },
        ];
        for cfg in [DpoConfig::trl(), DpoConfig::llama3()] {
            // a large β so that the loss moves enough for f32 differences
            let cfg = DpoConfig { beta: 2.0, ..cfg };
            let (_, grads) = dpo_loss_and_gradient(&policy, &reference, &pairs, &cfg).unwrap();
            let mut p = policy.clone();
            let mut checked = 0;
            let specs = p.params.param_specs();
            for (ti, spec) in specs.iter().enumerate() {
                let g = grads.tensors()[ti].to_vec();
                let (mut best, _) = g.iter().enumerate().fold((0, 0f32), |(bi, bv), (i, v)| {
                    if v.abs() > bv {
                        (i, v.abs())
                    } else {
                        (bi, bv)
                    }
                });
                if g[best] == 0.0 {
                    best = 0;
                }
                let h = 1e-3f32;
                let orig = p.params.tensors()[ti][best];
                let at = |x: f32, p: &mut Gpt| {
                    p.params.tensors_mut()[ti][best] = x;
                    dpo_loss_and_gradient(p, &reference, &pairs, &cfg)
                        .unwrap()
                        .0
                        .loss
                };
                let num = (at(orig + h, &mut p) - at(orig - h, &mut p)) / (2.0 * h as f64);
                at(orig, &mut p);
                let ana = g[best] as f64;
                assert!(
                    (num - ana).abs() <= 1e-2 * ana.abs() + 3e-4,
                    "{}: numeric {num} vs analytic {ana}",
                    spec.name
                );
                checked += 1;
            }
            assert_eq!(checked, specs.len());
        }
    }
}
