//! LayerNorm (GPT-2) and RMSNorm (Llama), each over the last axis of `(N, C)` rows.
//!
//! The forward keeps what the backward needs per row: the mean and the reciprocal
//! standard deviation `rstd` (LayerNorm), or the reciprocal root mean square `rrms`
//! (RMSNorm). The backward then recomputes the normalised row from them.
//!
//! ```
//! use llm_lessons::gpt::norm::rms_norm_forward;
//! // x = [3, 4]: mean(x^2) = 12.5, so y = x / sqrt(12.5) (eps = 0)
//! let (mut y, mut rrms) = ([0.0; 2], [0.0]);
//! rms_norm_forward(&mut y, &mut rrms, &[3.0, 4.0], &[1.0, 1.0], 2, 0.0);
//! assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6 && (y[1] - 4.0 / 12.5f32.sqrt()).abs() < 1e-6);
//! ```

use super::math::vectorized;
use super::residual::add_into;
use super::shapes::{expect_len, rows_of};
use rayon::prelude::*;

/// Rows per parallel block in the backward passes. Fixed, not per thread, so that the
/// parameter gradients are summed in the same order whatever the number of threads.
const BLOCK: usize = 64;

// ANCHOR: layer_norm
// ANCHOR: layer_norm_forward
/// `y = (x - mean(x)) * rstd * w + b` with `rstd = 1 / sqrt(var(x) + eps)` (the biased
/// variance, as PyTorch), per row.
///
/// # Shapes
/// `x, y: (N, C)`, `w, b: (C)`, `mean, rstd: (N)` (written for the backward).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    w: &[f32],
    b: &[f32],
    c: usize,
    eps: f32,
) {
    let k = "layer_norm_forward";
    let n = rows_of(k, "x", x.len(), c);
    expect_len(k, "y", y.len(), n * c, "(N, C)");
    expect_len(k, "w", w.len(), c, "(C)");
    expect_len(k, "b", b.len(), c, "(C)");
    expect_len(k, "mean", mean.len(), n, "(N)");
    expect_len(k, "rstd", rstd.len(), n, "(N)");
    let rows = y.par_chunks_exact_mut(c).zip(x.par_chunks_exact(c));
    rows.zip(mean.par_iter_mut())
        .zip(rstd.par_iter_mut())
        .for_each(|(((y, x), m), s)| {
            let mu = x.iter().sum::<f32>() / c as f32;
            let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
            let r = 1.0 / (var + eps).sqrt();
            for i in 0..c {
                y[i] = (x[i] - mu) * r * w[i] + b[i];
            }
            (*m, *s) = (mu, r);
        });
}
// ANCHOR_END: layer_norm_forward

/// Backward of [`layer_norm_forward`]. With `n = (x - mean) * rstd` and `g = w * dy`:
/// `dx += rstd * (g - mean(g) - n * mean(g * n))`, `dw += n * dy`, `db += dy`.
///
/// # Shapes
/// `dy, x, dx: (N, C)`, `w, dw, db: (C)`, `mean, rstd: (N)` from the forward.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) {
    let k = "layer_norm_backward";
    let n = rows_of(k, "x", x.len(), c);
    for (name, len) in [("dx", dx.len()), ("dy", dy.len())] {
        expect_len(k, name, len, n * c, "(N, C)");
    }
    for (name, len) in [("w", w.len()), ("dw", dw.len()), ("db", db.len())] {
        expect_len(k, name, len, c, "(C)");
    }
    expect_len(k, "mean", mean.len(), n, "(N)");
    expect_len(k, "rstd", rstd.len(), n, "(N)");
    // blocks of rows in parallel, each with its own dw and db, added up in order
    let n = BLOCK * c;
    let blocks = dx
        .par_chunks_mut(n)
        .zip(dy.par_chunks(n))
        .zip(x.par_chunks(n));
    let stats = mean.par_chunks(BLOCK).zip(rstd.par_chunks(BLOCK));
    let parts: Vec<(Vec<f32>, Vec<f32>)> = blocks
        .zip(stats)
        .map(|(((dx, dy), x), (mean, rstd))| {
            let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
            layer_norm_backward_rows(dx, &mut dw, &mut db, dy, x, w, mean, rstd, c);
            (dw, db)
        })
        .collect();
    for (pw, pb) in parts {
        add_into(dw, &pw);
        add_into(db, &pb);
    }
}

// ANCHOR: layer_norm_backward_rows
/// [`layer_norm_backward`] on a block of rows, one row after the other.
#[allow(clippy::too_many_arguments)]
fn layer_norm_backward_rows(
    dx: &mut [f32],
    dw: &mut [f32],
    db: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
) {
    let rows = dx
        .chunks_exact_mut(c)
        .zip(dy.chunks_exact(c))
        .zip(x.chunks_exact(c));
    for (((dx, dy), x), (&mu, &r)) in rows.zip(mean.iter().zip(rstd)) {
        // the two means the normalisation couples every x_i through
        let (mut g_mean, mut gn_mean) = (0.0f32, 0.0f32);
        for i in 0..c {
            let n = (x[i] - mu) * r;
            let g = w[i] * dy[i];
            g_mean += g;
            gn_mean += g * n;
        }
        g_mean /= c as f32;
        gn_mean /= c as f32;
        for i in 0..c {
            let n = (x[i] - mu) * r;
            let g = w[i] * dy[i];
            dx[i] += r * (g - g_mean - n * gn_mean); // through x - mean, and through rstd
            dw[i] += n * dy[i];
            db[i] += dy[i];
        }
    }
}
// ANCHOR_END: layer_norm_backward_rows
// ANCHOR_END: layer_norm

// ANCHOR: rms_norm
/// `y = x * rrms * w` with `rrms = 1 / sqrt(mean(x^2) + eps)`, per row: LayerNorm without
/// the mean and without the bias.
///
/// # Shapes
/// `x, y: (N, C)`, `w: (C)`, `rrms: (N)` (written for the backward).
pub fn rms_norm_forward(y: &mut [f32], rrms: &mut [f32], x: &[f32], w: &[f32], c: usize, eps: f32) {
    let k = "rms_norm_forward";
    let n = rows_of(k, "x", x.len(), c);
    expect_len(k, "y", y.len(), n * c, "(N, C)");
    expect_len(k, "w", w.len(), c, "(C)");
    expect_len(k, "rrms", rrms.len(), n, "(N)");
    let rows = y.par_chunks_exact_mut(c).zip(x.par_chunks_exact(c));
    rows.zip(rrms.par_iter_mut()).for_each(|((y, x), s)| {
        vectorized(|| {
            let ms = x.iter().map(|v| v * v).sum::<f32>() / c as f32;
            let r = 1.0 / (ms + eps).sqrt();
            for i in 0..c {
                y[i] = x[i] * r * w[i];
            }
            *s = r;
        })
    });
}

/// Backward of [`rms_norm_forward`]. With `n = x * rrms` and `g = w * dy`:
/// `dx += rrms * (g - n * mean(g * n))`, `dw += n * dy`.
///
/// # Shapes
/// `dy, x, dx: (N, C)`, `w, dw: (C)`, `rrms: (N)` from the forward.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    rrms: &[f32],
    c: usize,
) {
    let k = "rms_norm_backward";
    let n = rows_of(k, "x", x.len(), c);
    for (name, len) in [("dx", dx.len()), ("dy", dy.len())] {
        expect_len(k, name, len, n * c, "(N, C)");
    }
    expect_len(k, "w", w.len(), c, "(C)");
    expect_len(k, "dw", dw.len(), c, "(C)");
    expect_len(k, "rrms", rrms.len(), n, "(N)");
    // blocks of rows in parallel, each with its own dw, added up in order
    let n = BLOCK * c;
    let blocks = dx
        .par_chunks_mut(n)
        .zip(dy.par_chunks(n))
        .zip(x.par_chunks(n));
    let parts: Vec<Vec<f32>> = blocks
        .zip(rrms.par_chunks(BLOCK))
        .map(|(((dx, dy), x), rrms)| {
            let mut dw = vec![0.0; c];
            vectorized(|| rms_norm_backward_rows(dx, &mut dw, dy, x, w, rrms, c));
            dw
        })
        .collect();
    parts.iter().for_each(|pw| add_into(dw, pw));
}

/// [`rms_norm_backward`] on a block of rows, one row after the other.
#[allow(clippy::too_many_arguments)]
#[inline(always)] // into `vectorized`, to be compiled with its wider instructions
fn rms_norm_backward_rows(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    rrms: &[f32],
    c: usize,
) {
    let rows = dx
        .chunks_exact_mut(c)
        .zip(dy.chunks_exact(c))
        .zip(x.chunks_exact(c));
    for (((dx, dy), x), &r) in rows.zip(rrms) {
        let mut gn_mean = 0.0f32;
        for i in 0..c {
            gn_mean += w[i] * dy[i] * x[i] * r;
        }
        gn_mean /= c as f32;
        for i in 0..c {
            let n = x[i] * r;
            dx[i] += r * (w[i] * dy[i] - n * gn_mean); // directly, and through rrms
            dw[i] += n * dy[i];
        }
    }
}
// ANCHOR_END: rms_norm

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    const N: usize = 4;
    const C: usize = 6;

    #[test]
    fn layer_norm_rows_have_mean_0_and_variance_1() {
        let mut rng = Rng::new(5);
        let x: Vec<f32> = randn(&mut rng, N * C, 3.0)
            .iter()
            .map(|v| v + 2.0)
            .collect();
        let (mut y, mut mean, mut rstd) = (vec![0.0; N * C], [0.0; N], [0.0; N]);
        layer_norm_forward(
            &mut y, &mut mean, &mut rstd, &x, &[1.0; C], &[0.0; C], C, 0.0,
        );
        for row in y.chunks(C) {
            let mu = row.iter().sum::<f32>() / C as f32;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / C as f32;
            assert!(mu.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{mu} {var}");
        }
    }

    #[test]
    fn layer_norm_gradients() {
        let mut rng = Rng::new(6);
        let sizes = [N * C, C, C];
        let mut inputs: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        inputs[1].iter_mut().for_each(|w| *w += 1.0);
        let r = randn(&mut rng, N * C, 1.0);
        let f = |v: &[Vec<f32>]| {
            let (mut y, mut mean, mut rstd) = (vec![0.0; N * C], [0.0; N], [0.0; N]);
            layer_norm_forward(&mut y, &mut mean, &mut rstd, &v[0], &v[1], &v[2], C, 1e-5);
            dot(&y, &r)
        };
        let (mut y, mut mean, mut rstd) = (vec![0.0; N * C], [0.0; N], [0.0; N]);
        layer_norm_forward(
            &mut y, &mut mean, &mut rstd, &inputs[0], &inputs[1], &inputs[2], C, 1e-5,
        );
        let init: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        let mut g = init.clone();
        let [dx, dw, db] = &mut g[..] else {
            unreachable!()
        };
        layer_norm_backward(dx, dw, db, &r, &inputs[0], &inputs[1], &mean, &rstd, C);
        check("layer_norm", &inputs, &accumulated(&init, &g), f);
    }

    /// 150 rows: three blocks, the last one partial, give what one pass over the rows gives.
    #[test]
    fn backward_in_blocks_equals_one_pass() {
        let (n, c) = (150, 5);
        let mut rng = Rng::new(20);
        let (x, dy, w) = (
            randn(&mut rng, n * c, 1.0),
            randn(&mut rng, n * c, 1.0),
            randn(&mut rng, c, 1.0),
        );
        let (mut y, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        layer_norm_forward(&mut y, &mut mean, &mut rstd, &x, &w, &vec![0.0; c], c, 1e-5);
        let run = |blocks: bool| {
            let (mut dx, mut dw, mut db) = (vec![0.5; n * c], vec![0.5; c], vec![0.5; c]);
            if blocks {
                layer_norm_backward(&mut dx, &mut dw, &mut db, &dy, &x, &w, &mean, &rstd, c);
                rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &rstd, c);
            } else {
                layer_norm_backward_rows(&mut dx, &mut dw, &mut db, &dy, &x, &w, &mean, &rstd, c);
                rms_norm_backward_rows(&mut dx, &mut dw, &dy, &x, &w, &rstd, c);
            }
            [dx, dw, db].concat()
        };
        for (a, b) in run(true).iter().zip(run(false)) {
            assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} {b}");
        }
    }

    #[test]
    fn rms_norm_gradients() {
        let mut rng = Rng::new(7);
        let sizes = [N * C, C];
        let mut inputs: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        inputs[1].iter_mut().for_each(|w| *w += 1.0);
        let r = randn(&mut rng, N * C, 1.0);
        let f = |v: &[Vec<f32>]| {
            let (mut y, mut rrms) = (vec![0.0; N * C], [0.0; N]);
            rms_norm_forward(&mut y, &mut rrms, &v[0], &v[1], C, 1e-5);
            dot(&y, &r)
        };
        let (mut y, mut rrms) = (vec![0.0; N * C], [0.0; N]);
        rms_norm_forward(&mut y, &mut rrms, &inputs[0], &inputs[1], C, 1e-5);
        let init: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        let mut g = init.clone();
        let [dx, dw] = &mut g[..] else { unreachable!() };
        rms_norm_backward(dx, dw, &r, &inputs[0], &inputs[1], &rrms, C);
        check("rms_norm", &inputs, &accumulated(&init, &g), f);
    }
}
