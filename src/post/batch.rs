//! Conversations of different lengths in one `(B, T)` batch, and the log-probability of
//! each one's answer from the positions' losses.
//!
//! A row is the conversation's tokens as inputs and the same shifted by one as targets,
//! padded on the right: under causal attention the padding never reaches an earlier
//! position, so a padded row computes what the conversation alone would, and its padded
//! positions get weight 0. Unused rows are all padding.

use crate::{Error, Result};

use super::task::END_OF_TEXT;

/// A batch of `b` rows of `t` positions.
#[derive(Clone, Debug)]
pub struct Packed {
    pub b: usize,
    pub t: usize,
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// Per row: the conversation's length in tokens (0 for an unused row).
    pub lens: Vec<usize>,
}

/// Packs `seqs` (at most `b`, each at most `t + 1` tokens) into rows of `t` positions.
pub fn pack(seqs: &[&[u32]], b: usize, t: usize) -> Result<Packed> {
    if seqs.len() > b {
        return Err(Error::InvalidArgument(format!(
            "{} sequences for a batch of {b} rows",
            seqs.len()
        )));
    }
    let mut p = Packed {
        b,
        t,
        inputs: vec![END_OF_TEXT; b * t],
        targets: vec![END_OF_TEXT; b * t],
        lens: vec![0; b],
    };
    for (r, s) in seqs.iter().enumerate() {
        if s.len() < 2 || s.len() > t + 1 {
            return Err(Error::InvalidArgument(format!(
                "a sequence of {} tokens: a row of {t} positions takes 2 to {}",
                s.len(),
                t + 1
            )));
        }
        let n = s.len() - 1;
        p.inputs[r * t..r * t + n].copy_from_slice(&s[..n]);
        p.targets[r * t..r * t + n].copy_from_slice(&s[1..]);
        p.lens[r] = s.len();
    }
    Ok(p)
}

impl Packed {
    /// The flat index of the position of row `r` that predicts the row's token `i` (`i ≥ 1`).
    pub fn at(&self, r: usize, i: usize) -> usize {
        r * self.t + i - 1
    }

    /// The positions of row `r` whose targets are its tokens `from..` (the answer when
    /// `from` is the prompt's length), with `keep(token)` deciding each.
    pub fn positions(&self, r: usize, from: usize, keep: impl Fn(u32) -> bool) -> Vec<usize> {
        (from.max(1)..self.lens[r])
            .map(|i| self.at(r, i))
            .filter(|&j| keep(self.targets[j]))
            .collect()
    }
}

/// `f` on each chunk of `items` (at most `size` each), the chunks in parallel, its results
/// concatenated in order: a model's forward on many conversations, a batch at a time.
pub fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    size: usize,
    f: impl Fn(&[T]) -> Result<Vec<R>> + Sync,
) -> Result<Vec<R>> {
    use rayon::prelude::*;
    let parts: Vec<Result<Vec<R>>> = items.par_chunks(size.max(1)).map(&f).collect();
    let mut out = Vec::with_capacity(items.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

// ANCHOR: completion_logp
/// `log π(answer | prompt) = Σ_i log p(answer_i | prompt, answer_<i)`: the sum, over the
/// answer's positions, of minus their losses (`loss_j = -log p(target_j)`).
pub fn sum_logp(losses: &[f32], positions: &[usize]) -> f64 {
    positions.iter().map(|&j| -(losses[j] as f64)).sum()
}
// ANCHOR_END: completion_logp
