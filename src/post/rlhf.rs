//! RLHF: the SFT model, now a policy, samples answers; the reward model scores them; a
//! policy gradient moves the policy toward answers scored high, with a KL penalty that
//! keeps it near the SFT model.
//!
//! The objective, for prompts `x` and answers `y ∼ π(·|x)`:
//!
//! ```text
//! J(π) = E[ r(x, y) ] − β_KL · KL(π ‖ π_SFT),   estimated per answer as
//! R(x, y) = r(x, y) − β_KL [log π(y|x) − log π_SFT(y|x)]
//! ```
//!
//! Its gradient is REINFORCE's `E[(R − b) ∇ log π(y|x)]` (the penalty's own gradient,
//! `E[∇ log π]`-weighted by the same difference, enters through `R`; its remaining term has
//! zero mean). The baseline `b` changes no expectation but the variance: each prompt gets
//! `K` answers, and each answer's baseline is the mean `R` of the other `K − 1`
//! (REINFORCE leave-one-out, Ahmadian et al. 2024).
//!
//! Why not PPO: PPO's clipped ratio exists to take several gradient steps on one batch of
//! samples without leaving the region where they were drawn; here each batch is used for
//! one step, where PPO's objective has the same gradient as this one, and the value
//! network PPO would train as its baseline is replaced by the other answers' rewards.

use rand::seq::SliceRandom;
use rand::Rng;

use super::batch::{pack, sum_logp};
use super::eval::{answer_logps, replies};
use super::reward::RewardModel;
use super::run::step_rng;
use super::task::{judge, ChatVocab, Request, Verdict};
use crate::data::grammar::Grammar;
use crate::gpt::generate::Sampling;
use crate::gpt::train::Trainer;
use crate::gpt::Gpt;
use crate::{Error, Result};

/// A policy-gradient run's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RlhfConfig {
    /// Prompts per step, `P`.
    pub prompts: usize,
    /// Answers sampled per prompt, `K` (at least 2, for the leave-one-out baseline).
    pub samples: usize,
    /// `β_KL`, the penalty on drifting from the SFT model.
    pub kl_coef: f64,
    /// Sampling temperature of the answers.
    pub temperature: f32,
}

// ANCHOR: advantages
/// Each answer's advantage `A_i = R_i − b_i` with the leave-one-out baseline: answers
/// come in groups of `k` per prompt, and `b_i` is the mean of the others' `R` in the group.
pub fn rloo_advantages(returns: &[f64], k: usize) -> Vec<f64> {
    returns
        .chunks(k)
        .flat_map(|g| {
            let sum: f64 = g.iter().sum();
            g.iter().map(move |&r| r - (sum - r) / (g.len() - 1) as f64)
        })
        .collect()
}
// ANCHOR_END: advantages

// ANCHOR: kl_penalised
/// `R = r − β_KL (log π − log π_ref)`: the reward with the per-answer KL penalty.
pub fn penalised_return(reward: f64, logp: f64, logp_ref: f64, kl_coef: f64) -> f64 {
    reward - kl_coef * (logp - logp_ref)
}
// ANCHOR_END: kl_penalised

/// One policy-gradient step: `P` requests drawn by the step's generator, `K` answers each
/// sampled from the policy, scored by `rm` and (for the log only) by the judge. Returns
/// the surrogate loss, the mean reward-model score, the mean KL estimate
/// `log π − log π_SFT`, the fraction of answers the judge accepts, and the tokens trained on.
#[allow(clippy::too_many_arguments)]
pub fn rlhf_step(
    trainer: &mut Trainer,
    model: &mut Gpt,
    reference: &Gpt,
    rm: &RewardModel,
    requests: &[Request],
    vocab: &ChatVocab,
    grammar: &Grammar,
    cfg: &RlhfConfig,
    step: usize,
) -> Result<Vec<f64>> {
    let (p, k) = (cfg.prompts, cfg.samples);
    if k < 2 || p * k != trainer.config.batch {
        return Err(Error::InvalidArgument(format!(
            "{p} prompts x {k} answers (at least 2 each) must fill the batch of {} rows",
            trainer.config.batch
        )));
    }
    let mut rng = step_rng(trainer.config.seed, step);
    let chosen: Vec<Request> = (0..p)
        .flat_map(|_| {
            let r = requests.choose(&mut rng).expect("requests").clone();
            std::iter::repeat_n(r, k)
        })
        .collect();
    let sampling = Sampling {
        temperature: cfg.temperature,
        top_k: 0,
        top_p: 1.0,
        seed: rng.gen(),
    };
    let convs = replies(model, vocab, &chosen, &sampling)?;
    let rewards = rm.score(&convs)?;
    let ref_logps = answer_logps(reference, &convs)?;
    let judged = chosen
        .iter()
        .zip(&convs)
        .filter(|(r, (_, a))| judge(grammar, vocab, r, a) == Verdict::Correct)
        .count() as f64
        / (p * k) as f64;

    let t = trainer.config.seq_len;
    let seqs: Vec<Vec<u32>> = convs.iter().map(|(q, a)| [&q[..], a].concat()).collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let packed = pack(&refs, p * k, t)?;
    let answer_positions: Vec<Vec<usize>> = convs
        .iter()
        .enumerate()
        .map(|(r, (q, _))| packed.positions(r, q.len(), |_| true))
        .collect();
    let tokens: usize = seqs.iter().map(|s| s.len() - 1).sum();
    let (mut mean_kl, mut mean_reward) = (0.0, 0.0);
    let log = trainer.step_on(model, &packed.inputs, &packed.targets, |losses| {
        let logps: Vec<f64> = answer_positions
            .iter()
            .map(|pos| sum_logp(losses, pos))
            .collect();
        let returns: Vec<f64> = (0..p * k)
            .map(|i| penalised_return(rewards[i], logps[i], ref_logps[i], cfg.kl_coef))
            .collect();
        let adv = rloo_advantages(&returns, k);
        let n = (p * k) as f64;
        mean_kl = logps
            .iter()
            .zip(&ref_logps)
            .map(|(a, b)| a - b)
            .sum::<f64>()
            / n;
        mean_reward = rewards.iter().sum::<f64>() / n;
        // surrogate −(1/n) Σ A_i log π_i: its gradient is REINFORCE's; ∂/∂loss_j = A_i / n
        let mut weights = vec![0.0f32; losses.len()];
        let mut surrogate = 0.0;
        for (i, pos) in answer_positions.iter().enumerate() {
            surrogate -= adv[i] * logps[i] / n;
            for &j in pos {
                weights[j] = (adv[i] / n) as f32;
            }
        }
        Ok((surrogate as f32, weights))
    })?;
    Ok(vec![
        log.loss as f64,
        mean_reward,
        mean_kl,
        judged,
        tokens as f64,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_one_out_advantages_sum_to_zero_per_prompt() {
        let r = [1.0, 2.0, 3.0, 10.0, 10.0, 10.0];
        let a = rloo_advantages(&r, 3);
        // 1 − (2+3)/2 = −1.5, 2 − 2 = 0, 3 − 1.5 = 1.5; equal rewards: no signal
        assert_eq!(a, vec![-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]);
        assert_eq!(penalised_return(1.0, -3.0, -5.0, 0.1), 1.0 - 0.2);
    }
}
