//! Softmax cross-entropy: the loss of a language model. For logits `z` over the `V` token
//! ids and a target id `y`, `p = softmax(z)` and the loss is `-log p[y]`; the model's loss
//! is the mean over the `N = B * T` positions. Its gradient is the reason the pair is
//! computed together: `dL/dz = (p - onehot(y)) / N`. The rows run in parallel.
//!
//! ```
//! use llm_lessons::gpt::loss::cross_entropy_forward;
//! // uniform logits over 4 ids: loss ln 4 whatever the target
//! let (mut probs, mut losses) = ([0.0; 4], [0.0]);
//! let loss = cross_entropy_forward(&mut probs, &mut losses, &[0.0; 4], &[2], 4);
//! assert!((loss - 4f32.ln()).abs() < 1e-6);
//! assert_eq!(probs, [0.25; 4]);
//! ```

use super::math::{exp, vectorized};
use super::shapes::{expect_len, rows_of};
use rayon::prelude::*;

// ANCHOR: cross_entropy
/// Writes `probs = softmax(logits)` and each position's loss `-log probs[target]`, and
/// returns their mean.
///
/// # Shapes
/// `logits, probs: (N, V)`, `targets, losses: (N)`.
///
/// # Panics
/// If a target is `V` or more; [`crate::gpt::Gpt`] checks targets before it gets here.
pub fn cross_entropy_forward(
    probs: &mut [f32],
    losses: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    v: usize,
) -> f32 {
    let k = "cross_entropy_forward";
    let n = rows_of(k, "logits", logits.len(), v);
    expect_len(k, "probs", probs.len(), n * v, "(N, V)");
    expect_len(k, "targets", targets.len(), n, "(N)");
    expect_len(k, "losses", losses.len(), n, "(N)");
    let rows = probs
        .par_chunks_exact_mut(v)
        .zip(logits.par_chunks_exact(v));
    rows.zip(losses.par_iter_mut().zip(targets))
        .for_each(|((p, z), (loss, &y))| {
            vectorized(|| {
                // subtract the max so that exp never overflows; softmax does not change
                let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                p.iter_mut().zip(z).for_each(|(p, &z)| *p = exp(z - max));
                let sum: f32 = p.iter().sum();
                // -log p[y] = log sum - (z[y] - max), without rounding p[y] first
                *loss = sum.ln() - (z[y as usize] - max);
                p.iter_mut().for_each(|p| *p /= sum);
            })
        });
    // summed in order, so that the mean does not depend on how the rows were split
    let total: f64 = losses.iter().map(|&l| l as f64).sum();
    (total / targets.len() as f64) as f32
}

/// Backward of [`cross_entropy_forward`] for the loss `sum_n dloss[n] * losses[n]`:
/// `dlogits[n] += (probs[n] - onehot(targets[n])) * dloss[n]`. For the mean loss,
/// `dloss[n] = 1 / N`.
///
/// # Shapes
/// `dlogits, probs: (N, V)`, `targets, dloss: (N)`.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    probs: &[f32],
    targets: &[u32],
    dloss: &[f32],
    v: usize,
) {
    let k = "cross_entropy_backward";
    let n = rows_of(k, "probs", probs.len(), v);
    expect_len(k, "dlogits", dlogits.len(), n * v, "(N, V)");
    expect_len(k, "targets", targets.len(), n, "(N)");
    expect_len(k, "dloss", dloss.len(), n, "(N)");
    let rows = dlogits
        .par_chunks_exact_mut(v)
        .zip(probs.par_chunks_exact(v));
    rows.zip(targets.par_iter().zip(dloss))
        .for_each(|((dz, p), (&y, &dl))| {
            vectorized(|| {
                for (i, (dz, &p)) in dz.iter_mut().zip(p).enumerate() {
                    let indicator = if i == y as usize { 1.0 } else { 0.0 };
                    *dz += (p - indicator) * dl;
                }
            })
        });
}
// ANCHOR_END: cross_entropy

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn cross_entropy_gradients() {
        let (n, v) = (4, 7);
        let targets = [3u32, 0, 6, 3];
        let mut rng = Rng::new(18);
        let inputs = vec![randn(&mut rng, n * v, 2.0)];
        let dloss = randn(&mut rng, n, 1.0); // a weighted sum of the losses
        let f = |x: &[Vec<f32>]| {
            let (mut p, mut l) = (vec![0.0; n * v], vec![0.0; n]);
            cross_entropy_forward(&mut p, &mut l, &x[0], &targets, v);
            dot(&l, &dloss)
        };
        let (mut p, mut l) = (vec![0.0; n * v], vec![0.0; n]);
        cross_entropy_forward(&mut p, &mut l, &inputs[0], &targets, v);
        let init = vec![randn(&mut rng, n * v, 1.0)];
        let mut g = init.clone();
        cross_entropy_backward(&mut g[0], &p, &targets, &dloss, v);
        check("cross-entropy", &inputs, &accumulated(&init, &g), f);
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let (mut p, mut l) = ([0.0; 3], [0.0]);
        let loss = cross_entropy_forward(&mut p, &mut l, &[1000.0, 0.0, -1000.0], &[1], 3);
        assert!((loss - 1000.0).abs() < 1e-3, "{loss}");
        assert!(p.iter().all(|x| x.is_finite()));
    }
}
