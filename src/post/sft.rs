//! Supervised fine-tuning: the base model trained on conversations whose answers are
//! demonstrations, with the loss on the assistant's tokens only.
//!
//! The loss of a batch is the mean of the kept positions' losses,
//! `L = Σ_j m_j loss_j / Σ_j m_j` with `m_j ∈ {0, 1}` from [`target_mask`]: the prompt is
//! context the model reads, not text it must learn to write.

use rand::Rng;

use super::batch::pack;
use super::run::step_rng;
use super::task::{
    answer_ids, prompt_ids, target_mask, ChatVocab, Conversation, Example, LossMask,
};
use crate::gpt::train::Trainer;
use crate::gpt::Gpt;
use crate::Result;

/// The conversations of `examples`: each prompt and its demonstration.
pub fn conversations(vocab: &ChatVocab, examples: &[Example]) -> Result<Vec<Conversation>> {
    examples
        .iter()
        .map(|e| {
            let prompt = prompt_ids(vocab, &e.request)?;
            let prompt_len = prompt.len();
            let ids = [prompt, answer_ids(vocab, &e.answer)?].concat();
            Ok(Conversation { ids, prompt_len })
        })
        .collect()
}

/// The longest conversation's positions.
pub fn positions_needed(convs: &[Conversation]) -> usize {
    convs.iter().map(|c| c.ids.len() - 1).max().unwrap_or(1)
}

// ANCHOR: sft_weights
/// Each position's weight in the masked mean: `m_j / Σ m`, 0 on padding.
pub fn sft_weights(convs: &[&Conversation], mask: LossMask, b: usize, t: usize) -> Vec<f32> {
    let mut w = vec![0.0f32; b * t];
    for (r, c) in convs.iter().enumerate() {
        for (j, m) in target_mask(c, mask).into_iter().enumerate() {
            w[r * t + j] = m;
        }
    }
    let kept: f32 = w.iter().sum();
    if kept > 0.0 {
        w.iter_mut().for_each(|x| *x /= kept);
    }
    w
}
// ANCHOR_END: sft_weights

/// One SFT step on `trainer.config.batch` conversations drawn by the step's generator:
/// returns the masked loss and the tokens it read (the batch's rows, padding excluded).
pub fn sft_step(
    trainer: &mut Trainer,
    model: &mut Gpt,
    convs: &[Conversation],
    mask: LossMask,
    step: usize,
) -> Result<Vec<f64>> {
    let (b, t) = (trainer.config.batch, trainer.config.seq_len);
    let mut rng = step_rng(trainer.config.seed, step);
    let batch: Vec<&Conversation> = (0..b)
        .map(|_| &convs[rng.gen_range(0..convs.len())])
        .collect();
    let seqs: Vec<&[u32]> = batch.iter().map(|c| c.ids.as_slice()).collect();
    let packed = pack(&seqs, b, t)?;
    let weights = sft_weights(&batch, mask, b, t);
    let tokens: usize = batch.iter().map(|c| c.ids.len() - 1).sum();
    let log = trainer.step_on(model, &packed.inputs, &packed.targets, |losses| {
        let loss: f64 = losses
            .iter()
            .zip(&weights)
            .map(|(&l, &w)| l as f64 * w as f64)
            .sum();
        Ok((loss as f32, weights.clone()))
    })?;
    Ok(vec![log.loss as f64, tokens as f64])
}
