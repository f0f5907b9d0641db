//! # Chapter 8 exercises: post-training
//!
//! You write the formulas that turn a pre-trained model into an assistant, on the chapter's
//! chat task ("write about the queen with castle"): the loss masks of supervised fine-tuning
//! (SFT), the Bradley-Terry loss of a reward model and its gradient, the policy gradient of
//! RLHF with its leave-one-out baseline, the KL penalty that keeps the policy near the SFT
//! model, the DPO loss and its gradient, the log-probability of an answer read off a batch's
//! losses, and the weight DPO (Llama 3's version) puts on each position's loss. Each
//! gradient you derive by hand first: the doc comment of each exercise says what to show.
//! The tests at the bottom of this file check them, first against answers worked out by hand
//! (the arithmetic is in the comments), then against finite differences, exact expectations,
//! the crate, and what PyTorch and TRL compute for DPO on a small Llama
//! (`tests/fixtures/dpo/`).
//!
//! ## How to work
//!
//! 1. Write your code in `mod learner`, just below. Each function starts as a stub that fails
//!    with `not implemented: Exercise N (...)` and a hint. Replace the body and keep the
//!    signature. The stubs' parameters start with `_` so that they don't warn while unused:
//!    remove the `_` when you use one. Your functions may call each other, and you may add
//!    helper functions.
//! 2. Run the tests against your code, all of them or one exercise at a time:
//!
//!    ```text
//!    cargo test --features learner --test 08_post_training
//!    cargo test --features learner --test 08_post_training exercise_5
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::post`). `cargo test --test 08_post_training` always passes and
//!    shows what "done" looks like. Try an exercise before you read its reference.
//!
//! The book's chapter 8 (`book/src/ch08_post_training.md`) derives the formulas, and the
//! chapter's code, `src/post/`, states each in its doc comments (`task.rs` the masks,
//! `reward.rs` Bradley-Terry, `rlhf.rs` the policy gradient and the KL penalty, `dpo.rs`
//! DPO, `batch.rs` the summed log-probabilities); the page "How to do the exercises"
//! (`book/src/lessons.md`) describes this workflow.
//!
//! ## Conventions (the crate's, and TRL's)
//!
//! - A conversation is token ids written as ChatML writes it, one token per word:
//!   `<|im_start|> user write about the dog <|im_end|> <|im_start|> assistant the dog sleeps
//!   <|im_end|>`. Its first `prompt_len` tokens are the prompt (up to and including
//!   `assistant`); the answer follows, ended by `<|im_end|>`. The ids: `</s>` 0,
//!   `<|im_start|>` 1, `<|im_end|>` 2, `user` 3, `assistant` 4 (1 to 4 are the *formatting*
//!   tokens), then `write` 5, `about` 6, `with` 7, and the toy world's words from 8.
//! - A model reads a sequence of `n` tokens at `n − 1` positions: position `j` predicts token
//!   `j + 1`, and its loss is `loss_j = −ln p(ids[j + 1] | ids[..=j])`. A batch of sequences
//!   is a flat `(B, T)` array, row `r` at `r * T..(r + 1) * T`, padded on the right.
//! - Log-probabilities are natural (`ln`), in f64. `log π(y)` is an answer's log-probability
//!   summed over its tokens: `log π(y | x) = Σ_i ln p(y_i | x, y_<i) = −Σ loss_j` over the
//!   answer's positions. `σ(x) = 1 / (1 + e^{−x})`, and `1 − σ(x) = σ(−x)`.
//! - A weight `w_j` is `∂L/∂loss_j`: the model's backward multiplies each position's
//!   cross-entropy gradient by it (`Gpt::backward_weighted`), so a loss `L` that depends on
//!   the losses only through `w` trains the model.

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use llm_lessons::post::batch::Packed;
    use llm_lessons::post::dpo::{DpoConfig, Pair};
    use llm_lessons::post::task::{Conversation, LossMask};

    /// Exercise 1a: which positions the SFT loss reads.
    ///
    /// `ids` is a conversation whose first `prompt_len` tokens are the prompt. Return one
    /// weight per position `j` in `0..ids.len() − 1`, 1.0 if the loss reads it and 0.0 if
    /// not. A position is judged by its *target* `ids[j + 1]`, the token it predicts:
    ///
    /// - `LossMask::All`: every position (plain language modelling on the conversation);
    /// - `LossMask::Assistant`: the positions whose target is a token of the answer
    ///   (`j + 1 >= prompt_len`), its final `<|im_end|>` included, so that the model learns
    ///   to stop. The first is `j = prompt_len − 1`: the answer's first token is predicted
    ///   from the prompt's last, `assistant`;
    /// - `LossMask::AssistantContent`: those of `Assistant` whose target is not a formatting
    ///   token (ids 1 to 4), as Llama 3 masks formatting out of DPO. Decide by the target's
    ///   id, not by where it sits: an answer may hold a formatting token before its end.
    pub fn target_mask(_ids: &[u32], _prompt_len: usize, _mask: LossMask) -> Vec<f32> {
        unimplemented!(
            "Exercise 1 (target_mask): implement `fn target_mask` in \
             lessons/08_post_training.rs — for i in 1..ids.len() (position i − 1 predicts \
             ids[i]): 1.0 for All; for Assistant when i >= prompt_len; for AssistantContent \
             when also ids[i] is not 1, 2, 3 or 4; the crate's version: `target_mask` in \
             src/post/task.rs"
        )
    }

    /// Exercise 1b: the weight of each position in SFT's masked loss.
    ///
    /// A batch of `b` rows of `t` positions holds `conversations[r]` in row `r` (its
    /// `ids.len() − 1` positions first; the rest of the row, and the rows past the last
    /// conversation, are padding). SFT's loss is the mean of the kept positions' losses over
    /// the whole batch, `L = Σ_j m_j loss_j / Σ_j m_j`, with `m_j` the mask of exercise 1a
    /// (0 on padding). Return `w_j = ∂L/∂loss_j`, `(b, t)` flat. A mean over the batch's
    /// tokens, not a mean of each conversation's mean: a longer answer weighs more.
    pub fn sft_weights(
        _conversations: &[Conversation],
        _mask: LossMask,
        _b: usize,
        _t: usize,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 1 (sft_weights): implement `fn sft_weights` in \
             lessons/08_post_training.rs — put target_mask(&c.ids, c.prompt_len, mask) at \
             w[r * t..], then divide every weight by their sum (if it is not 0): w_j = m_j / \
             Σ m; the crate's version: `sft_weights` in src/post/sft.rs"
        )
    }

    /// Exercise 2: the Bradley-Terry loss of one preference pair, and its gradient. Derive
    /// it.
    ///
    /// A reward model gives the chosen answer `r_c` and the rejected one `r_r`; Bradley and
    /// Terry's model says the chosen wins with probability `σ(r_c − r_r)`, and the loss is
    /// `L = −ln σ(r_c − r_r)`. Return `(L, ∂L/∂r_c, ∂L/∂r_r)`. With `d = r_c − r_r`:
    ///
    /// - show that `L = ln(1 + e^{−d})` and `dL/dd = −σ(−d)`, so `∂L/∂r_c = −σ(r_r − r_c)`
    ///   and `∂L/∂r_r = +σ(r_r − r_c)` (only the difference of the rewards enters);
    /// - make it stable for rewards up to ±1000: `e^{−d}` overflows an f64 to `inf` for
    ///   `d < −709`, and then `ln(1 + inf) = inf` and `σ` may become `inf / inf = NaN`. Show
    ///   that `ln(1 + e^{−d}) = −d + ln(1 + e^{d})`, and use the form whose exponent is at
    ///   most 0 (`f64::ln_1p(x)` is `ln(1 + x)`, exact for small `x`).
    pub fn bradley_terry(_r_c: f64, _r_r: f64) -> (f64, f64, f64) {
        unimplemented!(
            "Exercise 2 (bradley_terry): implement `fn bradley_terry` in \
             lessons/08_post_training.rs — derive it: d = r_c − r_r, L = (−d).exp().ln_1p() \
             for d > 0 and −d + d.exp().ln_1p() otherwise; s = σ(−d) = 1 / (1 + d.exp()); \
             return (L, −s, s); the crate's version: `bradley_terry` in src/post/reward.rs"
        )
    }

    /// Exercise 3a: REINFORCE's baseline, leave-one-out. Derive why it is allowed.
    ///
    /// `returns` holds groups of `k` answers sampled for the same prompt, one group after
    /// another. Return each answer's advantage `A_i = R_i − b_i`, where the baseline `b_i` is
    /// the mean of the *other* `k − 1` returns of its group. Show that
    ///
    /// - the advantages of a group sum to 0, and `A_i = k / (k − 1) · (R_i − R̄)` with `R̄`
    ///   the group's mean;
    /// - the baseline does not bias the gradient: `E_y[∇ ln π(y)] = Σ_y ∇π(y) = ∇ 1 = 0`, and
    ///   `b_i` depends only on the other samples, independent of `y_i`, so
    ///   `E[b_i ∇ ln π(y_i)] = E[b_i] · 0`. (The group's mean `R̄` as a baseline contains
    ///   `R_i`: it would shrink the expected gradient by `(k − 1) / k`.)
    pub fn rloo_advantages(_returns: &[f64], _k: usize) -> Vec<f64> {
        unimplemented!(
            "Exercise 3 (rloo_advantages): implement `fn rloo_advantages` in \
             lessons/08_post_training.rs — for each chunk of k returns with sum S: A_i = R_i − \
             (S − R_i) / (k − 1); the crate's version: `rloo_advantages` in src/post/rlhf.rs"
        )
    }

    /// Exercise 3b: the policy gradient as weights on the positions' losses. Derive them.
    ///
    /// REINFORCE's surrogate for `n = advantages.len()` sampled answers is
    /// `L = −(1/n) Σ_i A_i ln π(y_i)`, the advantages held constant: its gradient is the
    /// policy-gradient estimate `−(1/n) Σ_i A_i ∇ ln π(y_i)`. Answer `i`'s tokens are
    /// predicted at the positions `answer_positions[i]` (flat indices into a batch of
    /// `n_positions` positions), and `ln π(y_i) = −Σ_{j ∈ positions_i} loss_j`. Derive
    /// `∂L/∂loss_j` and return it for every position (0 where no answer is predicted: the
    /// prompts, the padding). An answer better than its baseline (`A_i > 0`) gets a positive
    /// weight: descending pushes its losses down, its probability up.
    pub fn reinforce_weights(
        _advantages: &[f64],
        _answer_positions: &[Vec<usize>],
        _n_positions: usize,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 3 (reinforce_weights): implement `fn reinforce_weights` in \
             lessons/08_post_training.rs — derive it: ∂L/∂loss_j = A_i / n at each position j \
             of answer i, 0 elsewhere; the crate's version: the weights in `rlhf_step`, \
             src/post/rlhf.rs"
        )
    }

    /// Exercise 4a: the reward with the KL penalty, per sampled answer.
    ///
    /// RLHF maximises `E[r] − β_KL · KL(π ‖ π_ref)`; each sampled answer carries its share,
    /// `R = r − β_KL (ln π(y) − ln π_ref(y))`, given its reward `r`, its log-probability
    /// `logp` under the policy and `logp_ref` under the reference (the SFT model). Derive
    /// from exercise 4b why `E_{y∼π}[R] = E_{y∼π}[r] − β_KL KL(π ‖ π_ref)`.
    pub fn penalised_return(_reward: f64, _logp: f64, _logp_ref: f64, _kl_coef: f64) -> f64 {
        unimplemented!(
            "Exercise 4 (penalised_return): implement `fn penalised_return` in \
             lessons/08_post_training.rs — reward − kl_coef * (logp − logp_ref); the crate's \
             version: `penalised_return` in src/post/rlhf.rs"
        )
    }

    /// Exercise 4b: KL(π ‖ π_ref) estimated from answers sampled from π. Derive it.
    ///
    /// Given `logp[i] = ln π(y_i)` and `logp_ref[i] = ln π_ref(y_i)` for answers `y_i` drawn
    /// from `π`, return the mean of `ln π(y_i) − ln π_ref(y_i)`. Show that it estimates the
    /// KL divergence: `E_{y∼π}[ln π(y) − ln π_ref(y)] = Σ_y π(y) ln(π(y) / π_ref(y))`, which
    /// is `KL(π ‖ π_ref) ≥ 0`; and that one sample's term is negative whenever
    /// `π_ref(y) > π(y)` (the KL is non-negative only on average). Why must the answers come
    /// from `π`, not from `π_ref`?
    pub fn kl_estimate(_logp: &[f64], _logp_ref: &[f64]) -> f64 {
        unimplemented!(
            "Exercise 4 (kl_estimate): implement `fn kl_estimate` in \
             lessons/08_post_training.rs — Σ_i (logp[i] − logp_ref[i]) / n; the crate's \
             version: `kl_estimate` in src/post/eval.rs (on two models' answer_logps)"
        )
    }

    /// Exercise 5: the DPO loss of one pair and its gradient. Derive it.
    ///
    /// With the answers' summed log-probabilities under the policy, `π_c = ln π(y_c)` and
    /// `π_r = ln π(y_r)`, and under the frozen reference, `ref_c` and `ref_r`:
    ///
    /// ```text
    /// z = β [(π_c − ref_c) − (π_r − ref_r)]         L = −ln σ(z)
    /// ```
    ///
    /// Return `(L, ∂L/∂π_c, ∂L/∂π_r)`. Show that `∂L/∂π_c = −β σ(−z)` and `∂L/∂π_r =
    /// +β σ(−z)` (exercise 2's derivative, with `∂z/∂π_c = β`): the gradient is largest when
    /// the policy ranks the pair the wrong way (`z < 0`) and vanishes as `z` grows. Keep it
    /// finite for `|z|` up to 2000, as in exercise 2.
    pub fn dpo_pair_loss(
        _pi_c: f64,
        _pi_r: f64,
        _ref_c: f64,
        _ref_r: f64,
        _beta: f64,
    ) -> (f64, f64, f64) {
        unimplemented!(
            "Exercise 5 (dpo_pair_loss): implement `fn dpo_pair_loss` in \
             lessons/08_post_training.rs — derive it: z = β ((π_c − ref_c) − (π_r − ref_r)); \
             exercise 2's stable −ln σ(z) and s = σ(−z); return (L, −β s, β s); the crate's \
             version: `dpo_pair_loss` in src/post/dpo.rs"
        )
    }

    /// Exercise 6a: an answer's log-probability from a batch's losses.
    ///
    /// `losses` is a flat `(B, T)` array of per-position losses, `T = t`. Row `row` holds a
    /// sequence of `len` tokens (`2 ≤ len ≤ t + 1`): a prompt of `prompt_len ≥ 1` tokens then
    /// the answer. Return `ln π(answer | prompt) = Σ_i ln p(answer_i | ...)`: which positions
    /// of the row predict the answer's tokens `prompt_len..len`? (Position `j` predicts token
    /// `j + 1`: the positions `prompt_len − 1 ..= len − 2`.) Mind the sign: a loss is `−ln p`.
    pub fn completion_logp(
        _losses: &[f32],
        _t: usize,
        _row: usize,
        _len: usize,
        _prompt_len: usize,
    ) -> f64 {
        unimplemented!(
            "Exercise 6 (completion_logp): implement `fn completion_logp` in \
             lessons/08_post_training.rs — −Σ losses[row * t + j] as f64 for j in \
             prompt_len − 1..len − 1; the crate's version: `Packed::positions` and `sum_logp` \
             in src/post/batch.rs"
        )
    }

    /// Exercise 6b: the same, summed only over the tokens that `keep`.
    ///
    /// `targets` is the batch's `(B, T)` targets, `targets[row * t + j]` the token position
    /// `j` predicts. Leave out the positions whose target `keep` rejects: Llama 3's DPO sums
    /// `ln π` without the formatting tokens (`keep = |id| !is_formatting(id)`), since the
    /// chosen and rejected answers share them.
    pub fn completion_logp_kept(
        _losses: &[f32],
        _targets: &[u32],
        _t: usize,
        _row: usize,
        _len: usize,
        _prompt_len: usize,
        _keep: impl Fn(u32) -> bool,
    ) -> f64 {
        unimplemented!(
            "Exercise 6 (completion_logp_kept): implement `fn completion_logp_kept` in \
             lessons/08_post_training.rs — as completion_logp, over the positions j whose \
             keep(targets[row * t + j]) is true; the crate's version: `Packed::positions` in \
             src/post/batch.rs"
        )
    }

    /// Exercise 7: the weight of each position's loss in DPO's objective, Llama 3's version
    /// included. Derive them.
    ///
    /// `packed` holds pair `k` in rows `2k` (prompt + chosen) and `2k + 1` (prompt +
    /// rejected): row `r`'s length is `packed.lens[r]`, its targets `packed.targets`, its
    /// answer starts after `pairs[k].prompt.len()` tokens (exercise 6 finds its positions);
    /// `reference[k]` is the reference's `(ref_c, ref_r)`. With `P` pairs, the objective is
    ///
    /// ```text
    /// L = (1/P) Σ_k ℓ_k(π_c,k, π_r,k)  +  α · (Σ_{chosen positions j} loss_j) / N_c
    /// ```
    ///
    /// with `ℓ_k` exercise 5's loss at `β = cfg.beta`, `α = cfg.nll_alpha` (an NLL term on
    /// the chosen answers: the mean loss over all `N_c` chosen positions of the batch), and
    /// the positions whose target is one of `cfg.masked` left out of every sum (and of
    /// `N_c`): none for TRL, the formatting tokens 1 to 4 for Llama 3. Since `π_c,k = −Σ loss_j` over pair `k`'s chosen positions, derive
    /// `∂L/∂loss_j`: `β σ(−z_k) / P + α / N_c` at a chosen position, `−β σ(−z_k) / P` at a
    /// rejected one, 0 elsewhere. Return them, `(B, T)` flat.
    pub fn dpo_weights(
        _losses: &[f32],
        _packed: &Packed,
        _pairs: &[Pair],
        _reference: &[(f64, f64)],
        _cfg: &DpoConfig,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 7 (dpo_weights): implement `fn dpo_weights` in \
             lessons/08_post_training.rs — derive it: for each pair k the kept positions of \
             rows 2k and 2k + 1 from pairs[k].prompt.len(), π_c and π_r as in exercise 6, \
             (_, d_c, d_r) = dpo_pair_loss(...); w_j += −d_c / P (chosen), −d_r / P \
             (rejected); then α / N_c on every chosen position; the crate's version: \
             `dpo_objective` in src/post/dpo.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use llm_lessons::post::batch::{sum_logp, Packed};
    use llm_lessons::post::dpo::{self, DpoConfig, Pair};
    use llm_lessons::post::task::{self, Conversation, LossMask};
    use llm_lessons::post::{reward, rlhf, sft};

    pub fn target_mask(ids: &[u32], prompt_len: usize, mask: LossMask) -> Vec<f32> {
        let conversation = Conversation {
            ids: ids.to_vec(),
            prompt_len,
        };
        task::target_mask(&conversation, mask)
    }

    pub fn sft_weights(
        conversations: &[Conversation],
        mask: LossMask,
        b: usize,
        t: usize,
    ) -> Vec<f32> {
        let refs: Vec<&Conversation> = conversations.iter().collect();
        sft::sft_weights(&refs, mask, b, t)
    }

    pub fn bradley_terry(r_c: f64, r_r: f64) -> (f64, f64, f64) {
        reward::bradley_terry(r_c, r_r)
    }

    pub fn rloo_advantages(returns: &[f64], k: usize) -> Vec<f64> {
        rlhf::rloo_advantages(returns, k)
    }

    pub fn reinforce_weights(
        advantages: &[f64],
        answer_positions: &[Vec<usize>],
        n_positions: usize,
    ) -> Vec<f32> {
        // as `rlhf_step` (src/post/rlhf.rs) weighs its batch: A_i / n at answer i's positions
        let n = advantages.len() as f64;
        let mut weights = vec![0.0f32; n_positions];
        for (a, positions) in advantages.iter().zip(answer_positions) {
            for &j in positions {
                weights[j] = (a / n) as f32;
            }
        }
        weights
    }

    pub fn penalised_return(reward: f64, logp: f64, logp_ref: f64, kl_coef: f64) -> f64 {
        rlhf::penalised_return(reward, logp, logp_ref, kl_coef)
    }

    pub fn kl_estimate(logp: &[f64], logp_ref: &[f64]) -> f64 {
        // what `eval::kl_estimate` averages, once both models have scored the answers
        let n = logp.len().max(1) as f64;
        logp.iter().zip(logp_ref).map(|(a, b)| a - b).sum::<f64>() / n
    }

    pub fn dpo_pair_loss(
        pi_c: f64,
        pi_r: f64,
        ref_c: f64,
        ref_r: f64,
        beta: f64,
    ) -> (f64, f64, f64) {
        dpo::dpo_pair_loss(pi_c, pi_r, ref_c, ref_r, beta)
    }

    /// The row as a `Packed` of its own, to ask the crate for its positions.
    fn one_row(losses: &[f32], targets: Vec<u32>, t: usize, row: usize, len: usize) -> Packed {
        let b = losses.len() / t;
        let mut lens = vec![0; b];
        lens[row] = len;
        Packed {
            b,
            t,
            inputs: vec![0; b * t],
            targets,
            lens,
        }
    }

    pub fn completion_logp(
        losses: &[f32],
        t: usize,
        row: usize,
        len: usize,
        prompt_len: usize,
    ) -> f64 {
        let packed = one_row(losses, vec![0; losses.len()], t, row, len);
        sum_logp(losses, &packed.positions(row, prompt_len, |_| true))
    }

    pub fn completion_logp_kept(
        losses: &[f32],
        targets: &[u32],
        t: usize,
        row: usize,
        len: usize,
        prompt_len: usize,
        keep: impl Fn(u32) -> bool,
    ) -> f64 {
        let packed = one_row(losses, targets.to_vec(), t, row, len);
        sum_logp(losses, &packed.positions(row, prompt_len, keep))
    }

    pub fn dpo_weights(
        losses: &[f32],
        packed: &Packed,
        pairs: &[Pair],
        reference: &[(f64, f64)],
        cfg: &DpoConfig,
    ) -> Vec<f32> {
        dpo::dpo_objective(losses, packed, pairs, reference, cfg).1
    }
}

// The tests call `solution::...`: your code with `--features learner`, the reference without.
#[cfg(feature = "learner")]
use learner as solution;
#[cfg(not(feature = "learner"))]
use reference as solution;

// ============================================================================================
// The tests. You don't need to change anything below.
// ============================================================================================

use llm_lessons::data::grammar::Grammar;
use llm_lessons::gpt::hf::{
    config_from_hf_json, load_llama, params_from_tensors, read_safetensors,
};
use llm_lessons::gpt::{Activations, Gpt};
use llm_lessons::post::batch::{pack, sum_logp, Packed};
use llm_lessons::post::dpo::{
    dpo_objective, dpo_pair_loss, pack_pairs, positions_needed, read_pairs, reference_logps,
    DpoConfig, Pair,
};
use llm_lessons::post::reward::{bradley_terry, bt_objective};
use llm_lessons::post::rlhf::{penalised_return, rloo_advantages};
use llm_lessons::post::sft::{self, conversations};
use llm_lessons::post::task::{
    self, answer_ids, examples, is_formatting, prompt_ids, ChatVocab, Conversation, LossMask,
    Request,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

const MASKS: [LossMask; 3] = [
    LossMask::All,
    LossMask::Assistant,
    LossMask::AssistantContent,
];

/// `actual` is `expected` within `tol` (relative above 1).
#[track_caller]
fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol * expected.abs().max(1.0),
        "{what}: got {actual}, expected {expected}"
    );
}

/// Element by element, within `tol` (relative above 1).
#[track_caller]
fn assert_all_close(actual: &[f32], expected: &[f32], tol: f64, what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: the number of weights"
    );
    for (j, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a as f64 - e as f64).abs() <= tol * (e as f64).abs().max(1.0),
            "{what}: position {j}, got {a}, expected {e}"
        );
    }
}

/// Central differences of `f` at `x` in f64, `(f(x + h) − f(x − h)) / 2h`.
fn derivative(f: impl Fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-6;
    (f(x + h) - f(x - h)) / (2.0 * h)
}

fn dpo_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dpo")
        .join(name)
}

/// What PyTorch and TRL computed (`tests/fixtures/dpo/README.md`).
fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dpo_fixture("expected.json")).unwrap()).unwrap()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The fixture's six preference pairs.
fn fixture_pairs() -> Vec<Pair> {
    read_pairs(&dpo_fixture("pairs.jsonl")).unwrap()
}

/// The fixture's policy (`tests/fixtures/llama-tiny`) and its reference (the same plus
/// noise).
fn fixture_models() -> (Gpt, Gpt) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let policy = load_llama(&root.join("tests/fixtures/llama-tiny")).unwrap();
    let config = dpo_fixture("config.json");
    let cfg = config_from_hf_json(&std::fs::read_to_string(&config).unwrap(), &config).unwrap();
    let weights = dpo_fixture("reference.safetensors");
    let params = params_from_tensors(&cfg, read_safetensors(&weights).unwrap(), &weights).unwrap();
    (policy, Gpt::new(cfg, params).unwrap())
}

/// The fixture's pairs packed as DPO packs them (pair `k` in rows `2k`, `2k + 1`), and
/// `model`'s loss at every position.
fn fixture_losses(model: &Gpt, pairs: &[Pair]) -> (Packed, Vec<f32>) {
    let t = positions_needed(pairs);
    let packed = pack_pairs(pairs, t).unwrap();
    let mut acts = Activations::new(&model.cfg, packed.b, t);
    model
        .forward_loss(&mut acts, &packed.inputs, &packed.targets)
        .unwrap();
    (packed, acts.losses)
}

/// The fixture is what the crate computes: its z, loss and derivatives follow from its
/// log-probabilities by the README's formulas, and the crate's models give those
/// log-probabilities within the README's 1e-4.
#[test]
fn dpo_fixture_is_what_the_crate_computes() {
    let e = expected();
    let beta = e["beta"].as_f64().unwrap();
    let (pc, pr, rc, rr, z) = (
        f64s(&e["policy_chosen_logps"]),
        f64s(&e["policy_rejected_logps"]),
        f64s(&e["reference_chosen_logps"]),
        f64s(&e["reference_rejected_logps"]),
        f64s(&e["z"]),
    );
    assert_eq!(z.len(), 6);
    for k in 0..6 {
        let zk = beta * ((pc[k] - rc[k]) - (pr[k] - rr[k]));
        assert_close(zk, z[k], 1e-12, &format!("pair {k}: z"));
    }
    let pairs = fixture_pairs();
    assert_eq!(pairs.len(), 6);
    let (policy, reference) = fixture_models();
    let mut worst = 0f64;
    for (model, chosen, rejected) in [(&policy, &pc, &pr), (&reference, &rc, &rr)] {
        let logps = reference_logps(model, &pairs, &DpoConfig::trl()).unwrap();
        for (k, &(c, r)) in logps.iter().enumerate() {
            worst = worst
                .max((c - chosen[k]).abs())
                .max((r - rejected[k]).abs());
        }
    }
    eprintln!("the crate's summed log-probabilities are within {worst:.1e} of PyTorch's");
    assert!(worst < 1e-4, "a summed log-probability off by {worst}");
}

// --- Exercise 1 ---------------------------------------------------------------------------

#[test]
fn exercise_1_assistant_token_masks() {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    // "write about the dog", answered "the dog sleeps":
    //   prompt  <|im_start|> user write about the dog <|im_end|> <|im_start|> assistant  (9)
    //   answer  the dog sleeps <|im_end|>                                                (4)
    // 13 tokens, 12 positions. Position 8 reads `assistant` and predicts "the": the answer's
    // four targets are at positions 8, 9, 10, 11.
    let request = Request {
        subject: "dog".into(),
        with: None,
    };
    let prompt = prompt_ids(&vocab, &request).unwrap();
    assert_eq!(prompt.len(), 9);
    assert_eq!((prompt[0], prompt[1], prompt[2], prompt[8]), (1, 3, 5, 4));
    let ids = [
        prompt,
        answer_ids(&vocab, &["the", "dog", "sleeps"]).unwrap(),
    ]
    .concat();
    assert_eq!(ids.len(), 13);
    assert_eq!(
        solution::target_mask(&ids, 9, LossMask::All),
        vec![1.0; 12],
        "all tokens"
    );
    let assistant = [&[0.0; 8][..], &[1.0; 4]].concat();
    assert_eq!(
        solution::target_mask(&ids, 9, LossMask::Assistant),
        assistant,
        "the answer's targets, its <|im_end|> included"
    );
    let content = [&[0.0; 8][..], &[1.0, 1.0, 1.0, 0.0]].concat();
    assert_eq!(
        solution::target_mask(&ids, 9, LossMask::AssistantContent),
        content,
        "the answer's targets without <|im_end|>"
    );
    // formatting inside the answer (a turn boundary <|im_end|> <|im_start|>, as one of the
    // DPO fixture's rejected answers has): 11 tokens, a prompt of 6, positions 5..9 predict
    // the answer 30, 2, 1, 31, 2, of which 30 and 31 are content
    let ids = [1, 3, 20, 2, 1, 4, 30, 2, 1, 31, 2];
    let zeros = [0.0; 5];
    assert_eq!(
        solution::target_mask(&ids, 6, LossMask::Assistant),
        [&zeros[..], &[1.0; 5]].concat()
    );
    assert_eq!(
        solution::target_mask(&ids, 6, LossMask::AssistantContent),
        [&zeros[..], &[1.0, 0.0, 0.0, 1.0, 0.0]].concat(),
        "masked by id, not by position"
    );
    // the role names are formatting too: an answer 30 assistant user <|im_end|> keeps 30 only
    let ids = [1, 3, 20, 2, 1, 4, 30, 4, 3, 2];
    assert_eq!(
        solution::target_mask(&ids, 6, LossMask::AssistantContent),
        [&zeros[..], &[1.0, 0.0, 0.0, 0.0]].concat(),
        "`user` (3) and `assistant` (4) are formatting tokens"
    );
    // a prompt of one token: every position predicts the answer
    assert_eq!(
        solution::target_mask(&[1, 8, 2], 1, LossMask::AssistantContent),
        [1.0, 0.0]
    );

    // the task's conversations, against the crate's masks
    let convs = conversations(&vocab, &examples(&grammar, 40, 8)).unwrap();
    for c in &convs {
        for mask in MASKS {
            assert_eq!(
                solution::target_mask(&c.ids, c.prompt_len, mask),
                task::target_mask(c, mask),
                "{} of {}",
                mask.name(),
                vocab.decode(&c.ids)
            );
        }
    }
}

#[test]
fn exercise_1_sft_weights() {
    // Two conversations of exercise 1's by-hand test in a batch of 3 rows of 12 positions:
    // the first keeps 4 answer positions (8..11), the second 5 (5..9): 9 in all, so each
    // kept position weighs 1/9 (a mean of the two means would give 1/8 and 1/10).
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let prompt = prompt_ids(
        &vocab,
        &Request {
            subject: "dog".into(),
            with: None,
        },
    )
    .unwrap();
    let dog = Conversation {
        ids: [
            prompt,
            answer_ids(&vocab, &["the", "dog", "sleeps"]).unwrap(),
        ]
        .concat(),
        prompt_len: 9,
    };
    let turn = Conversation {
        ids: vec![1, 3, 20, 2, 1, 4, 30, 2, 1, 31, 2],
        prompt_len: 6,
    };
    let (b, t) = (3, 12);
    let w = solution::sft_weights(&[dog.clone(), turn.clone()], LossMask::Assistant, b, t);
    let mut want = vec![0.0f32; b * t];
    want[8..12].fill(1.0 / 9.0);
    want[t + 5..t + 10].fill(1.0 / 9.0);
    assert_all_close(&w, &want, 1e-6, "assistant tokens, 9 kept");
    // without the formatting tokens: 3 + 2 kept, each 1/5
    let w = solution::sft_weights(&[dog, turn], LossMask::AssistantContent, b, t);
    let mut want = vec![0.0f32; b * t];
    for j in [8, 9, 10, t + 5, t + 8] {
        want[j] = 0.2;
    }
    assert_all_close(&w, &want, 1e-6, "content tokens, 5 kept");

    // batches of the task's conversations, against the crate, for the three masks
    let convs = conversations(&vocab, &examples(&grammar, 24, 9)).unwrap();
    let t = sft::positions_needed(&convs) + 2;
    for (chunk, mask) in convs.chunks(8).zip(MASKS) {
        let b = chunk.len() + 1; // a row of padding
        let w = solution::sft_weights(chunk, mask, b, t);
        let total: f64 = w.iter().map(|&x| x as f64).sum();
        assert_close(total, 1.0, 1e-5, "the weights of a mean sum to 1");
        let refs: Vec<&Conversation> = chunk.iter().collect();
        assert_all_close(
            &w,
            &sft::sft_weights(&refs, mask, b, t),
            1e-6,
            &format!("{} against the crate", mask.name()),
        );
    }
}

// --- Exercise 2 ---------------------------------------------------------------------------

#[test]
fn exercise_2_bradley_terry() {
    // equal rewards: σ(0) = 1/2, L = ln 2, ∂L/∂r_c = −1/2, ∂L/∂r_r = +1/2
    let (l, dc, dr) = solution::bradley_terry(0.7, 0.7);
    assert_close(l, 2f64.ln(), 1e-12, "L at r_c = r_r");
    assert_close(dc, -0.5, 1e-12, "∂L/∂r_c at r_c = r_r");
    assert_close(dr, 0.5, 1e-12, "∂L/∂r_r at r_c = r_r");
    // d = r_c − r_r = ln 3: σ(d) = 3/4, L = ln(4/3) = 0.2877, σ(−d) = 1/4
    let (l, dc, dr) = solution::bradley_terry(3f64.ln() - 2.0, -2.0);
    assert_close(l, (4.0f64 / 3.0).ln(), 1e-12, "L at d = ln 3");
    assert_close(dc, -0.25, 1e-12, "∂L/∂r_c = −σ(−d) at d = ln 3");
    assert_close(dr, 0.25, 1e-12, "∂L/∂r_r = +σ(−d) at d = ln 3");
    // the wrong order, d = −ln 3: L = ln 4 = 1.386, σ(−d) = 3/4
    let (l, dc, _) = solution::bradley_terry(-2.0, 3f64.ln() - 2.0);
    assert_close(l, 4f64.ln(), 1e-12, "L at d = −ln 3");
    assert_close(dc, -0.75, 1e-12, "∂L/∂r_c at d = −ln 3");

    // rewards up to ±1000: d = ±2000 overflows e^{−d} or e^{d} written naively
    // d = 2000: L = ln(1 + e^{−2000}) = 0 in f64, the gradient 0;
    // d = −2000: L = 2000 + ln(1 + e^{−2000}) = 2000, ∂L/∂r_c = −σ(2000) = −1
    let (l, dc, dr) = solution::bradley_terry(1000.0, -1000.0);
    assert!(
        l.is_finite() && dc.is_finite() && dr.is_finite(),
        "d = 2000: {l} {dc} {dr}"
    );
    assert!(l.abs() < 1e-300 && dc.abs() < 1e-300 && dr.abs() < 1e-300);
    let (l, dc, dr) = solution::bradley_terry(-1000.0, 1000.0);
    assert_close(l, 2000.0, 1e-12, "L at d = −2000");
    assert_close(dc, -1.0, 1e-12, "∂L/∂r_c at d = −2000");
    assert_close(dr, 1.0, 1e-12, "∂L/∂r_r at d = −2000");
    // only the difference counts: 1000 against 999 is d = 1, L = ln(1 + 1/e) = 0.3133
    let (l, dc, _) = solution::bradley_terry(1000.0, 999.0);
    assert_close(
        l,
        (-1f64).exp().ln_1p(),
        1e-12,
        "d = 1 at rewards near 1000",
    );
    assert_close(dc, -1.0 / (1.0 + 1f64.exp()), 1e-12, "∂L/∂r_c at d = 1");
    for (a, b) in [
        (-1000.0, -999.0),
        (750.0, -740.0),
        (-800.0, 0.0),
        (0.0, 800.0),
    ] {
        let (l, dc, dr) = solution::bradley_terry(a, b);
        assert!(
            l.is_finite() && l >= 0.0 && dc.is_finite() && dr.is_finite(),
            "rewards {a}, {b}: ({l}, {dc}, {dr})"
        );
        let (want, wc, wr) = bradley_terry(a, b);
        assert_close(l, want, 1e-12, &format!("L at {a}, {b} against the crate"));
        assert_close(dc, wc, 1e-12, "∂L/∂r_c against the crate");
        assert_close(dr, wr, 1e-12, "∂L/∂r_r against the crate");
    }

    // finite differences and the crate on random rewards
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for _ in 0..50 {
        let (a, b): (f64, f64) = (rng.gen_range(-30.0..30.0), rng.gen_range(-30.0..30.0));
        let (l, dc, dr) = solution::bradley_terry(a, b);
        let numeric_c = derivative(|x| solution::bradley_terry(x, b).0, a);
        let numeric_r = derivative(|x| solution::bradley_terry(a, x).0, b);
        assert_close(
            dc,
            numeric_c,
            1e-7,
            &format!("∂L/∂r_c at {a}, {b}: finite differences"),
        );
        assert_close(
            dr,
            numeric_r,
            1e-7,
            &format!("∂L/∂r_r at {a}, {b}: finite differences"),
        );
        let (want, wc, wr) = bradley_terry(a, b);
        assert_close(l, want, 1e-12, "L against the crate");
        assert_close(dc, wc, 1e-12, "∂L/∂r_c against the crate");
        assert_close(dr, wr, 1e-12, "∂L/∂r_r against the crate");
    }

    // In the reward model: r = w · h, the head on the last token's hidden state. Three pairs
    // of hidden states of width 4; your loss's mean and its chain rule, ∂L/∂w = Σ_k
    // (∂ℓ/∂r_c h_c + ∂ℓ/∂r_r h_r) / P, against the crate's objective.
    let c = 4;
    let hidden: Vec<f32> = (0..8 * c).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let head: Vec<f32> = (0..c).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let last = [1, 0, 3, 5, 7, 6]; // the rows' last tokens, (chosen, rejected) per pair
    let reward = |j: usize| -> f64 {
        (0..c)
            .map(|i| hidden[j * c + i] as f64 * head[i] as f64)
            .sum()
    };
    let (mut loss, mut d_head) = (0.0, vec![0.0f64; c]);
    for pair in last.chunks(2) {
        let (l, dc, dr) = solution::bradley_terry(reward(pair[0]), reward(pair[1]));
        loss += l / 3.0;
        for (i, g) in d_head.iter_mut().enumerate() {
            *g += (dc * hidden[pair[0] * c + i] as f64 + dr * hidden[pair[1] * c + i] as f64) / 3.0;
        }
    }
    let o = bt_objective(&hidden, &last, &head, c);
    assert_close(
        loss,
        o.loss,
        1e-12,
        "the reward model's loss against bt_objective",
    );
    let d_head: Vec<f32> = d_head.iter().map(|&g| g as f32).collect();
    assert_all_close(&d_head, &o.d_head, 1e-6, "∂L/∂w against bt_objective");
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_leave_one_out_advantages() {
    // k = 3: 1 − (2 + 3)/2 = −1.5, 2 − (1 + 3)/2 = 0, 3 − (1 + 2)/2 = 1.5; a group of equal
    // returns gives no signal at all
    let a = solution::rloo_advantages(&[1.0, 2.0, 3.0, 10.0, 10.0, 10.0], 3);
    assert_eq!(a, [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]);
    // k = 2: each answer against the other, 1 − 4 = −3 and 4 − 1 = 3
    let a = solution::rloo_advantages(&[1.0, 4.0, -2.0, -2.5], 2);
    assert_eq!(a, [-3.0, 3.0, 0.5, -0.5]);
    // random returns: the groups' advantages sum to 0, equal k/(k − 1) (R_i − R̄), and the
    // crate's
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for k in [2, 4, 8] {
        let returns: Vec<f64> = (0..5 * k).map(|_| rng.gen_range(-3.0..5.0)).collect();
        let a = solution::rloo_advantages(&returns, k);
        assert_eq!(a.len(), returns.len());
        let want = rloo_advantages(&returns, k);
        for (g, (group, returns)) in a.chunks(k).zip(returns.chunks(k)).enumerate() {
            let sum: f64 = group.iter().sum();
            assert!(
                sum.abs() < 1e-12,
                "k = {k}, group {g}: the advantages sum to {sum}"
            );
            let mean = returns.iter().sum::<f64>() / k as f64;
            for (i, (&ai, &ri)) in group.iter().zip(returns).enumerate() {
                let scaled = k as f64 / (k - 1) as f64 * (ri - mean);
                assert_close(
                    ai,
                    scaled,
                    1e-12,
                    &format!("k = {k}: A_{i} = k/(k−1) (R_i − R̄)"),
                );
                assert_close(ai, want[g * k + i], 1e-12, "against the crate");
            }
        }
    }

    // The estimator is unbiased, exactly. A policy over three answers, π = softmax(θ), with
    // rewards r = (11, 13, 12) (a large common part, as real rewards have). The gradient of
    // J = E_π[r] is ∂J/∂θ_a = π_a (r_a − J). REINFORCE with groups of k = 3 estimates it
    // as g = (1/k) Σ_i A_i ∇ ln π(y_i), with ∇_θ ln π(y) = e_y − π. Its expectation over
    // all 27 groups (y_1, y_2, y_3), each of probability π(y_1) π(y_2) π(y_3), is ∇J. The
    // baseline's point is the variance: E|g − ∇J|² is far smaller than with A_i = R_i.
    let theta = [0.2f64, -0.5, 1.0];
    let r = [11.0, 13.0, 12.0];
    let z: f64 = theta.iter().map(|t| t.exp()).sum();
    let pi: Vec<f64> = theta.iter().map(|t| t.exp() / z).collect();
    let j: f64 = (0..3).map(|a| pi[a] * r[a]).sum();
    let grad_j: Vec<f64> = (0..3).map(|a| pi[a] * (r[a] - j)).collect();
    let k = 3;
    let estimate = |ys: &[usize], adv: &[f64]| -> Vec<f64> {
        let mut g = vec![0.0; 3];
        for (&y, &a) in ys.iter().zip(adv) {
            for (b, gb) in g.iter_mut().enumerate() {
                *gb += a * (f64::from(u8::from(b == y)) - pi[b]) / k as f64;
            }
        }
        g
    };
    let (mut mean_rloo, mut mean_plain) = (vec![0.0; 3], vec![0.0; 3]);
    let (mut var_rloo, mut var_plain) = (0.0, 0.0);
    for code in 0..27 {
        let ys = [code % 3, code / 3 % 3, code / 9];
        let p: f64 = ys.iter().map(|&y| pi[y]).product();
        let returns: Vec<f64> = ys.iter().map(|&y| r[y]).collect();
        let g_rloo = estimate(&ys, &solution::rloo_advantages(&returns, k));
        let g_plain = estimate(&ys, &returns);
        for b in 0..3 {
            mean_rloo[b] += p * g_rloo[b];
            mean_plain[b] += p * g_plain[b];
            var_rloo += p * (g_rloo[b] - grad_j[b]).powi(2);
            var_plain += p * (g_plain[b] - grad_j[b]).powi(2);
        }
    }
    for b in 0..3 {
        assert_close(mean_plain[b], grad_j[b], 1e-12, "E[g] without a baseline");
        assert_close(
            mean_rloo[b],
            grad_j[b],
            1e-12,
            &format!("E[g]_{b} with your baseline"),
        );
    }
    eprintln!("E|g − ∇J|²: {var_rloo:.4} with the leave-one-out baseline, {var_plain:.4} without");
    assert!(
        var_rloo < var_plain / 10.0,
        "the baseline should cut the variance: {var_rloo} against {var_plain}"
    );
}

#[test]
fn exercise_3_policy_gradient_weights() {
    // n = 2 answers with A = (2, −2): each position of answer 0 (3 and 4) weighs 2/2 = 1,
    // each of answer 1 (9, 10, 11) −1; the prompts' positions 0 to 2 and 5 to 8 weigh 0
    let positions = vec![vec![3, 4], vec![9, 10, 11]];
    let w = solution::reinforce_weights(&[2.0, -2.0], &positions, 12);
    let want = [
        0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0,
    ];
    assert_all_close(&w, &want, 1e-7, "A = (2, −2)");

    // a batch of 2 prompts x 3 answers of different lengths, packed as rlhf_step packs it;
    // the surrogate −(1/n) Σ_i A_i ln π(y_i) is linear in the losses, so Σ_j w_j loss_j must
    // equal it for any losses (and each w_j is its derivative)
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let prompt_lens = [4, 4, 4, 6, 6, 6];
    let seqs: Vec<Vec<u32>> = prompt_lens
        .iter()
        .map(|&p| {
            (0..p + rng.gen_range(1..6))
                .map(|_| rng.gen_range(8..60))
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let packed = pack(&refs, 7, 12).unwrap(); // the last row is padding
    let positions: Vec<Vec<usize>> = prompt_lens
        .iter()
        .enumerate()
        .map(|(r, &p)| packed.positions(r, p, |_| true))
        .collect();
    let returns: Vec<f64> = (0..6).map(|_| rng.gen_range(-1.0..2.0)).collect();
    let adv = rloo_advantages(&returns, 3);
    let w = solution::reinforce_weights(&adv, &positions, packed.b * packed.t);
    assert_eq!(w.len(), 7 * 12);
    for _ in 0..5 {
        let losses: Vec<f32> = (0..w.len()).map(|_| rng.gen_range(0.0..6.0)).collect();
        let surrogate: f64 = -adv
            .iter()
            .zip(&positions)
            .map(|(a, pos)| a * sum_logp(&losses, pos))
            .sum::<f64>()
            / 6.0;
        let linear: f64 = w
            .iter()
            .zip(&losses)
            .map(|(&w, &l)| w as f64 * l as f64)
            .sum();
        assert_close(
            linear,
            surrogate,
            1e-5,
            "Σ_j w_j loss_j against the surrogate",
        );
    }
    let outside = (0..w.len()).filter(|j| !positions.iter().any(|p| p.contains(j)));
    for j in outside {
        assert_eq!(w[j], 0.0, "position {j} predicts no answer token");
    }
}

// --- Exercise 4 ---------------------------------------------------------------------------

#[test]
fn exercise_4_kl_penalty() {
    // r = 1, ln π = −3, ln π_ref = −5, β = 0.1: R = 1 − 0.1 (−3 + 5) = 0.8
    assert_close(
        solution::penalised_return(1.0, -3.0, -5.0, 0.1),
        0.8,
        1e-12,
        "R",
    );
    // an answer the policy finds less likely than the reference: the penalty is a bonus,
    // R = 1 − 0.1 (−5 + 3) = 1.2
    assert_close(
        solution::penalised_return(1.0, -5.0, -3.0, 0.1),
        1.2,
        1e-12,
        "R",
    );
    assert_close(
        solution::penalised_return(0.3, -2.0, -9.0, 0.0),
        0.3,
        1e-12,
        "β_KL = 0",
    );

    // π = (0.5, 0.3, 0.2), π_ref = (0.2, 0.3, 0.5) over three answers:
    // KL(π ‖ π_ref) = 0.5 ln 2.5 + 0.3 ln 1 + 0.2 ln 0.4 = 0.458145 − 0.183258 = 0.274887
    let pi = [0.5f64, 0.3, 0.2];
    let pi_ref = [0.2f64, 0.3, 0.5];
    let kl: f64 = (0..3).map(|y| pi[y] * (pi[y] / pi_ref[y]).ln()).sum();
    assert_close(kl, 0.274_887, 1e-6, "KL by hand");
    let logs = |ys: &[usize]| -> (Vec<f64>, Vec<f64>) {
        (
            ys.iter().map(|&y| pi[y].ln()).collect(),
            ys.iter().map(|&y| pi_ref[y].ln()).collect(),
        )
    };
    // ten answers in π's exact proportions (5, 3, 2): the mean is the expectation, the KL
    let ys = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
    let (lp, lr) = logs(&ys);
    assert_close(
        solution::kl_estimate(&lp, &lr),
        kl,
        1e-12,
        "E_π[ln π − ln π_ref]",
    );
    // one answer's term: ln(0.2 / 0.5) = −0.916 for answer 2, which π_ref prefers
    let (lp, lr) = logs(&[2]);
    assert_close(
        solution::kl_estimate(&lp, &lr),
        0.4f64.ln(),
        1e-12,
        "one sample of answer 2",
    );
    assert!(
        solution::kl_estimate(&lp, &lr) < 0.0,
        "a single sample's estimate can be < 0"
    );
    // answers drawn from π_ref instead (2, 3, 5): the mean is −KL(π_ref ‖ π) = −0.274887,
    // below 0: the samples must come from the policy
    let (lp, lr) = logs(&[0, 0, 1, 1, 1, 2, 2, 2, 2, 2]);
    let kl_rev: f64 = (0..3).map(|y| pi_ref[y] * (pi_ref[y] / pi[y]).ln()).sum();
    assert_close(
        solution::kl_estimate(&lp, &lr),
        -kl_rev,
        1e-12,
        "answers from π_ref",
    );
    // 20,000 answers sampled from π: within 0.02 (four standard errors, 0.005 each)
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let sampled: Vec<usize> = (0..20_000)
        .map(|_| {
            let u: f64 = rng.gen();
            if u < 0.5 {
                0
            } else if u < 0.8 {
                1
            } else {
                2
            }
        })
        .collect();
    let (lp, lr) = logs(&sampled);
    let estimate = solution::kl_estimate(&lp, &lr);
    eprintln!("KL estimated from 20,000 samples: {estimate:.4} (exactly {kl:.4})");
    assert!((estimate - kl).abs() < 0.02, "{estimate} for {kl}");

    // E_π[R] = E_π[r] − β_KL KL(π ‖ π_ref), rewards r = (1, 0, 2), β = 0.5
    let (r, beta) = ([1.0, 0.0, 2.0], 0.5);
    let expected_return: f64 = (0..3)
        .map(|y| pi[y] * solution::penalised_return(r[y], pi[y].ln(), pi_ref[y].ln(), beta))
        .sum();
    let expected_reward: f64 = (0..3).map(|y| pi[y] * r[y]).sum();
    assert_close(
        expected_return,
        expected_reward - beta * kl,
        1e-12,
        "E_π[R]",
    );
    // against the crate
    for _ in 0..20 {
        let (a, b, c, d): (f64, f64, f64, f64) = (
            rng.gen_range(-3.0..3.0),
            rng.gen_range(-40.0..0.0),
            rng.gen_range(-40.0..0.0),
            rng.gen_range(0.0..1.0),
        );
        let want = penalised_return(a, b, c, d);
        assert_close(
            solution::penalised_return(a, b, c, d),
            want,
            1e-12,
            "against the crate",
        );
    }
}

// --- Exercise 5 ---------------------------------------------------------------------------

#[test]
fn exercise_5_dpo_loss() {
    // the policy equals the reference: z = 0, L = ln 2, ∂L/∂π_c = −β σ(0) = −0.05 at β = 0.1
    let (l, dc, dr) = solution::dpo_pair_loss(-3.0, -5.0, -3.0, -5.0, 0.1);
    assert_close(l, 2f64.ln(), 1e-12, "L at the reference");
    assert_close(dc, -0.05, 1e-12, "∂L/∂π_c at the reference");
    assert_close(dr, 0.05, 1e-12, "∂L/∂π_r at the reference");
    // β = 0.5, (π_c − ref_c) − (π_r − ref_r) = 2 ln 3: z = ln 3, σ(−z) = 1/4,
    // L = ln(4/3), ∂L/∂π_c = −0.5 · 1/4 = −0.125
    let (l, dc, dr) =
        solution::dpo_pair_loss(-10.0 + 3f64.ln(), -7.0 - 3f64.ln(), -10.0, -7.0, 0.5);
    assert_close(l, (4.0f64 / 3.0).ln(), 1e-12, "L at z = ln 3");
    assert_close(dc, -0.125, 1e-12, "∂L/∂π_c at z = ln 3");
    assert_close(dr, 0.125, 1e-12, "∂L/∂π_r at z = ln 3");
    // the wrong order by 2000 nats of β-scaled margin: L = 2000, ∂L/∂π_c = −β
    let (l, dc, dr) = solution::dpo_pair_loss(-2e4, 0.0, 0.0, 0.0, 0.1);
    assert_close(l, 2000.0, 1e-12, "L at z = −2000");
    assert_close(dc, -0.1, 1e-12, "∂L/∂π_c at z = −2000");
    assert_close(dr, 0.1, 1e-12, "∂L/∂π_r at z = −2000");
    let (l, dc, dr) = solution::dpo_pair_loss(0.0, -2e4, 0.0, 0.0, 0.1);
    assert!(
        l.is_finite() && l.abs() < 1e-300 && dc.abs() < 1e-300 && dr.abs() < 1e-300,
        "z = 2000: ({l}, {dc}, {dr})"
    );

    // finite differences and the crate
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..50 {
        let lp = |rng: &mut ChaCha8Rng| rng.gen_range(-60.0..-1.0);
        let (pc, pr, rc, rr) = (lp(&mut rng), lp(&mut rng), lp(&mut rng), lp(&mut rng));
        let beta = rng.gen_range(0.05..1.0);
        let (l, dc, dr) = solution::dpo_pair_loss(pc, pr, rc, rr, beta);
        let numeric_c = derivative(|x| solution::dpo_pair_loss(x, pr, rc, rr, beta).0, pc);
        let numeric_r = derivative(|x| solution::dpo_pair_loss(pc, x, rc, rr, beta).0, pr);
        assert_close(dc, numeric_c, 1e-7, "∂L/∂π_c: finite differences");
        assert_close(dr, numeric_r, 1e-7, "∂L/∂π_r: finite differences");
        let (want, wc, wr) = dpo_pair_loss(pc, pr, rc, rr, beta);
        assert_close(l, want, 1e-12, "L against the crate");
        assert_close(dc, wc, 1e-12, "∂L/∂π_c against the crate");
        assert_close(dr, wr, 1e-12, "∂L/∂π_r against the crate");
    }

    // PyTorch and TRL on six pairs (tests/fixtures/dpo): the loss is the mean over the pairs,
    // so its derivative with respect to pair k's log-probabilities is yours divided by 6
    let e = expected();
    let beta = e["beta"].as_f64().unwrap();
    let n = e["n_pairs"].as_f64().unwrap();
    for (suffix, loss_key, d_chosen, d_rejected) in [
        (
            "",
            "loss",
            Some("dloss_dpolicy_chosen_logps"),
            "dloss_dpolicy_rejected_logps",
        ),
        // Llama 3's DPO term on the masked sums (its chosen derivative also holds the NLL
        // term's, exercise 7)
        (
            "_masked",
            "dpo_loss_llama3",
            None,
            "dloss_llama3_dpolicy_rejected_logps_masked",
        ),
    ] {
        let get = |key: &str| f64s(&e[format!("{key}{suffix}")]);
        let (pc, pr, rc, rr) = (
            get("policy_chosen_logps"),
            get("policy_rejected_logps"),
            get("reference_chosen_logps"),
            get("reference_rejected_logps"),
        );
        let mut loss = 0.0;
        for k in 0..6 {
            let (l, dc, dr) = solution::dpo_pair_loss(pc[k], pr[k], rc[k], rr[k], beta);
            loss += l / n;
            if let Some(key) = d_chosen {
                assert_close(dc / n, f64s(&e[key])[k], 1e-12, &format!("{key}[{k}]"));
            }
            assert_close(
                dr / n,
                f64s(&e[d_rejected])[k],
                1e-12,
                &format!("{d_rejected}[{k}]"),
            );
        }
        let want = e[loss_key].as_f64().unwrap();
        assert_close(loss, want, 1e-12, &format!("TRL's {loss_key}"));
    }
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_completion_logp() {
    // B = 2 rows of T = 4 positions. Row 0: the sequence 1 4 7 9 2 (5 tokens, 4 positions,
    // targets 4 7 9 2). Row 1: 3 tokens of 4 (positions 0 and 1 used, 2 and 3 padding).
    let losses = [0.5f32, 1.0, 2.0, 0.25, 0.1, 0.2, 0.3, 0.4];
    let targets = [4u32, 7, 9, 2, 20, 21, 0, 0];
    // row 0, prompt 1 4 (2 tokens): the answer 7 9 2 at positions 1, 2, 3:
    // −(1 + 2 + 0.25) = −3.25
    assert_close(
        solution::completion_logp(&losses, 4, 0, 5, 2),
        -3.25,
        1e-12,
        "row 0, prompt 2",
    );
    // prompt of 1 token: every position, −3.75; of 4 tokens: the last position only, −0.25
    assert_close(
        solution::completion_logp(&losses, 4, 0, 5, 1),
        -3.75,
        1e-12,
        "row 0, prompt 1",
    );
    assert_close(
        solution::completion_logp(&losses, 4, 0, 5, 4),
        -0.25,
        1e-12,
        "row 0, prompt 4",
    );
    // row 1 (flat positions 4, 5), prompt of 1: −(0.1 + 0.2), the padding not counted
    let lp = solution::completion_logp(&losses, 4, 1, 3, 1);
    assert_close(lp, -(0.1f32 as f64 + 0.2f32 as f64), 1e-12, "row 1");
    // without the formatting <|im_end|> (2) of row 0: −(1 + 2) = −3
    let keep = |id: u32| !is_formatting(id);
    let lp = solution::completion_logp_kept(&losses, &targets, 4, 0, 5, 2, keep);
    assert_close(lp, -3.0, 1e-12, "row 0 without <|im_end|>");
    let lp = solution::completion_logp_kept(&losses, &targets, 4, 0, 5, 2, |_| true);
    assert_close(lp, -3.25, 1e-12, "row 0, everything kept");

    // random batches, against the crate's packing, positions and sums
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..10 {
        let (b, t) = (5, 16);
        let seqs: Vec<Vec<u32>> = (0..4)
            .map(|_| {
                (0..rng.gen_range(2..=t + 1))
                    .map(|_| rng.gen_range(0..12))
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let packed = pack(&refs, b, t).unwrap();
        let losses: Vec<f32> = (0..b * t).map(|_| rng.gen_range(0.0..9.0)).collect();
        for (r, s) in seqs.iter().enumerate() {
            let prompt_len = rng.gen_range(1..s.len());
            let want = sum_logp(&losses, &packed.positions(r, prompt_len, |_| true));
            let got = solution::completion_logp(&losses, t, r, s.len(), prompt_len);
            assert_close(
                got,
                want,
                1e-12,
                &format!("row {r}: {s:?} after {prompt_len}"),
            );
            let want = sum_logp(&losses, &packed.positions(r, prompt_len, keep));
            let got = solution::completion_logp_kept(
                &losses,
                &packed.targets,
                t,
                r,
                s.len(),
                prompt_len,
                keep,
            );
            assert_close(got, want, 1e-12, &format!("row {r} without formatting"));
        }
    }

    // The real thing: a small Llama's losses on the DPO fixture's six pairs, and your sums
    // against PyTorch's, every answer token and without the formatting tokens (1e-4: sums of
    // up to 9 f32 losses of about 6). The fixture's ids are random, not the task's: only 1
    // (<|im_start|>) and 2 (<|im_end|>) are formatting there, 3 and 4 are words.
    let e = expected();
    let pairs = fixture_pairs();
    let (policy, reference) = fixture_models();
    let mut worst = 0f64;
    for (model, name) in [(&policy, "policy"), (&reference, "reference")] {
        let (packed, losses) = fixture_losses(model, &pairs);
        for (suffix, masked) in [("", false), ("_masked", true)] {
            let keep = |id: u32| !(masked && [1, 2].contains(&id));
            for (side, offset) in [("chosen", 0), ("rejected", 1)] {
                let want = f64s(&e[format!("{name}_{side}_logps{suffix}")]);
                for (k, p) in pairs.iter().enumerate() {
                    let r = 2 * k + offset;
                    let got = solution::completion_logp_kept(
                        &losses,
                        &packed.targets,
                        packed.t,
                        r,
                        packed.lens[r],
                        p.prompt.len(),
                        keep,
                    );
                    if !masked {
                        let plain = solution::completion_logp(
                            &losses,
                            packed.t,
                            r,
                            packed.lens[r],
                            p.prompt.len(),
                        );
                        assert_close(plain, got, 1e-12, "everything kept is completion_logp");
                    }
                    worst = worst.max((got - want[k]).abs());
                    assert!(
                        (got - want[k]).abs() < 1e-4,
                        "{name} {side}{suffix}, pair {k}: {got}, PyTorch {}",
                        want[k]
                    );
                }
            }
        }
    }
    eprintln!("summed log-probabilities within {worst:.1e} of PyTorch's");
}

// --- Exercise 7 ---------------------------------------------------------------------------

#[test]
fn exercise_7_dpo_weights() {
    // One pair: prompt 1 3 9, chosen 20 2, rejected 21 22 2, in rows of T = 5.
    //   row 0: 1 3 9 20 2, the answer's targets 20, 2 at positions 2, 3
    //   row 1: 1 3 9 21 22 2, targets 21, 22, 2 at positions 2, 3, 4: flat 7, 8, 9
    // Losses 1 + 2 (π_c = −3) and 0.5 + 0.25 + 0.25 (π_r = −1), the reference the same:
    // z = 0, σ(−z) = 1/2. TRL (β = 0.1, no NLL): chosen positions β/2 = 0.05, rejected
    // −0.05.
    let pairs = [Pair {
        prompt: vec![1, 3, 9],
        chosen: vec![20, 2],
        rejected: vec![21, 22, 2],
    }];
    let packed = pack_pairs(&pairs, 5).unwrap();
    let losses = [9.0f32, 9.0, 1.0, 2.0, 9.0, 9.0, 9.0, 0.5, 0.25, 0.25];
    let w = solution::dpo_weights(&losses, &packed, &pairs, &[(-3.0, -1.0)], &DpoConfig::trl());
    let want = [0.0, 0.0, 0.05, 0.05, 0.0, 0.0, 0.0, -0.05, -0.05, -0.05];
    assert_all_close(&w, &want, 1e-7, "TRL's weights at z = 0");
    // Llama 3 (β = 0.1, α = 0.2, formatting masked): the <|im_end|> targets (positions 3
    // and 9) leave; π_c = −1, π_r = −0.75, the reference's masked sums the same: z = 0. The
    // one chosen token kept gets 0.05 + α / 1 = 0.25.
    let w = solution::dpo_weights(
        &losses,
        &packed,
        &pairs,
        &[(-1.0, -0.75)],
        &DpoConfig::llama3(),
    );
    let want = [0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0, -0.05, -0.05, 0.0];
    assert_all_close(&w, &want, 1e-7, "Llama 3's weights at z = 0");

    // the fixture's pairs with random losses and references, against dpo_objective
    let pairs = fixture_pairs();
    let t = positions_needed(&pairs);
    let packed = pack_pairs(&pairs, t).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for cfg in [
        DpoConfig::trl(),
        DpoConfig::llama3(),
        DpoConfig {
            beta: 1.5,
            ..DpoConfig::llama3()
        },
    ] {
        let losses: Vec<f32> = (0..packed.b * t).map(|_| rng.gen_range(0.5..8.0)).collect();
        let reference: Vec<(f64, f64)> = (0..pairs.len())
            .map(|_| (rng.gen_range(-50.0..-10.0), rng.gen_range(-50.0..-10.0)))
            .collect();
        let w = solution::dpo_weights(&losses, &packed, &pairs, &reference, &cfg);
        let (_, want) = dpo_objective(&losses, &packed, &pairs, &reference, &cfg);
        assert_all_close(&w, &want, 1e-6, &format!("{cfg:?} against dpo_objective"));
    }

    // PyTorch's derivatives through the real model's losses: each position of pair k's
    // chosen answer weighs −∂L/∂π_c,k, each of its rejected answer −∂L/∂π_r,k (Llama 3's
    // include the NLL term's α / 35 on the chosen; the fixture masks ids 1 and 2, its only
    // formatting tokens)
    let e = expected();
    let (policy, _) = fixture_models();
    let (packed, losses) = fixture_losses(&policy, &pairs);
    for (cfg, suffix, d_key) in [
        (DpoConfig::trl(), "", "dloss_dpolicy"),
        (
            DpoConfig {
                masked: &[1, 2],
                ..DpoConfig::llama3()
            },
            "_masked",
            "dloss_llama3_dpolicy",
        ),
    ] {
        let reference: Vec<(f64, f64)> = f64s(&e[format!("reference_chosen_logps{suffix}")])
            .into_iter()
            .zip(f64s(&e[format!("reference_rejected_logps{suffix}")]))
            .collect();
        let w = solution::dpo_weights(&losses, &packed, &pairs, &reference, &cfg);
        let keep = |id: u32| !cfg.masked.contains(&id);
        let mut seen = 0;
        for (side, offset) in [("chosen", 0), ("rejected", 1)] {
            let d = f64s(&e[format!("{d_key}_{side}_logps{suffix}")]);
            for (k, p) in pairs.iter().enumerate() {
                for j in packed.positions(2 * k + offset, p.prompt.len(), keep) {
                    let what = format!("{d_key}_{side}{suffix}, pair {k}, position {j}");
                    assert_close(w[j] as f64, -d[k], 1e-6, &what);
                    seen += 1;
                }
            }
        }
        let nonzero = w.iter().filter(|&&x| x != 0.0).count();
        assert_eq!(
            nonzero, seen,
            "{d_key}: only the answers' kept positions have weights"
        );
    }
}
