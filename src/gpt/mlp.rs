//! The MLP's nonlinearities. GPT-2's MLP is `down(gelu(up(x)))`; Llama's is
//! `down(silu(gate(x)) * up(x))` (SwiGLU): a gate computed from the same input decides,
//! number by number, how much of `up(x)` passes. The three projections are
//! [`crate::gpt::linear`] layers; this module has what lies between them.
//!
//! ```
//! use llm_lessons::gpt::mlp::{gelu_forward, swiglu_forward};
//! let mut y = [0.0; 2];
//! gelu_forward(&mut y, &[0.0, 10.0]);
//! assert_eq!(y[0], 0.0);
//! assert!((y[1] - 10.0).abs() < 1e-5); // gelu(x) ~ x for large x
//! swiglu_forward(&mut y, &[0.0, 10.0], &[5.0, 2.0]); // silu(0) = 0, silu(10) ~ 10
//! assert_eq!(y[0], 0.0);
//! assert!((y[1] - 20.0).abs() < 1e-2);
//! ```

use super::math::{sigmoid, vectorized};
use super::shapes::expect_len;
use rayon::prelude::*;

/// Numbers per parallel task.
const CHUNK: usize = 1 << 13;

/// `sqrt(2 / pi)`.
const GELU_SCALE: f32 = 0.797_884_6;

// ANCHOR: gelu
/// GELU in GPT-2's tanh approximation:
/// `gelu(x) = 0.5 x (1 + tanh(u))` with `u = sqrt(2/pi) (x + 0.044715 x^3)`.
///
/// Computed as `x * sigmoid(2u)`, the same function (`0.5 (1 + tanh u) = sigmoid(2u)`)
/// with one `exp` instead of a `tanh`, which costs several times more.
///
/// # Shapes
/// `x, y`: the same length (usually `(N, d_ff)`).
pub fn gelu_forward(y: &mut [f32], x: &[f32]) {
    let k = "gelu_forward";
    expect_len(k, "x", x.len(), y.len(), "(N)");
    // blocks across the threads; within a block, a plain loop the compiler vectorizes
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            vectorized(|| {
                for (y, &x) in y.iter_mut().zip(x) {
                    let u = GELU_SCALE * (x + 0.044715 * x * x * x);
                    *y = x * sigmoid(2.0 * u);
                }
            })
        });
}

/// Backward of [`gelu_forward`]: `dx += gelu'(x) dy` with
/// `gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u'`, `u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)`;
/// with `s = sigmoid(2u)`, `0.5 (1 + tanh u) = s` and `1 - tanh^2 u = 4 s (1 - s)`, so
/// `gelu'(x) = s + 2 x s (1 - s) u'`.
pub fn gelu_backward(dx: &mut [f32], dy: &[f32], x: &[f32]) {
    let k = "gelu_backward";
    expect_len(k, "dy", dy.len(), dx.len(), "(N)");
    expect_len(k, "x", x.len(), dx.len(), "(N)");
    let blocks = dx
        .par_chunks_mut(CHUNK)
        .zip(dy.par_chunks(CHUNK))
        .zip(x.par_chunks(CHUNK));
    blocks.for_each(|((dx, dy), x)| {
        vectorized(|| {
            for ((dx, &dy), &x) in dx.iter_mut().zip(dy).zip(x) {
                let u = GELU_SCALE * (x + 0.044715 * x * x * x);
                let s = sigmoid(2.0 * u);
                let du = GELU_SCALE * (1.0 + 3.0 * 0.044715 * x * x);
                *dx += (s + 2.0 * x * s * (1.0 - s) * du) * dy;
            }
        })
    });
}
// ANCHOR_END: gelu

// ANCHOR: swiglu
/// SwiGLU's middle: `y = silu(g) * u` with `silu(g) = g * sigmoid(g)`, where `g` and `u`
/// are the gate and up projections of the same input.
///
/// # Shapes
/// `g, u, y`: the same length (usually `(N, d_ff)`).
pub fn swiglu_forward(y: &mut [f32], g: &[f32], u: &[f32]) {
    let k = "swiglu_forward";
    expect_len(k, "g", g.len(), y.len(), "(N)");
    expect_len(k, "u", u.len(), y.len(), "(N)");
    let blocks = y
        .par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(u.par_chunks(CHUNK));
    blocks.for_each(|((y, g), u)| {
        vectorized(|| {
            for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                *y = g * sigmoid(g) * u;
            }
        })
    });
}

/// Backward of [`swiglu_forward`]: `du += silu(g) dy` and `dg += silu'(g) u dy`, with
/// `silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g)))`.
pub fn swiglu_backward(dg: &mut [f32], du: &mut [f32], dy: &[f32], g: &[f32], u: &[f32]) {
    let k = "swiglu_backward";
    expect_len(k, "du", du.len(), dg.len(), "(N)");
    expect_len(k, "dy", dy.len(), dg.len(), "(N)");
    expect_len(k, "g", g.len(), dg.len(), "(N)");
    expect_len(k, "u", u.len(), dg.len(), "(N)");
    let grads = dg.par_chunks_mut(CHUNK).zip(du.par_chunks_mut(CHUNK));
    let inputs = dy
        .par_chunks(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)));
    grads.zip(inputs).for_each(|((dg, du), (dy, (g, u)))| {
        vectorized(|| {
            for i in 0..dg.len() {
                let s = sigmoid(g[i]);
                du[i] += g[i] * s * dy[i];
                dg[i] += s * (1.0 + g[i] * (1.0 - s)) * u[i] * dy[i];
            }
        })
    });
}
// ANCHOR_END: swiglu

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn gelu_gradients() {
        let mut rng = Rng::new(16);
        let inputs = vec![randn(&mut rng, 40, 2.0)];
        let r = randn(&mut rng, 40, 1.0);
        let f = |v: &[Vec<f32>]| {
            let mut y = vec![0.0; 40];
            gelu_forward(&mut y, &v[0]);
            dot(&y, &r)
        };
        let init = vec![randn(&mut rng, 40, 1.0)];
        let mut g = init.clone();
        gelu_backward(&mut g[0], &r, &inputs[0]);
        check("gelu", &inputs, &accumulated(&init, &g), f);
    }

    #[test]
    fn gelu_far_from_zero() {
        let mut y = [0.0; 2];
        gelu_forward(&mut y, &[-100.0, 100.0]);
        assert!(y[0].abs() < 1e-30 && y[1] == 100.0, "{y:?}");
        let mut dx = [0.0; 2];
        gelu_backward(&mut dx, &[1.0, 1.0], &[-100.0, 100.0]);
        assert!(dx[0].abs() < 1e-30 && dx[1] == 1.0, "{dx:?}");
    }

    #[test]
    fn gelu_known_values() {
        // PyTorch: F.gelu(torch.tensor([-1., 0.5, 2.]), approximate="tanh")
        let mut y = [0.0; 3];
        gelu_forward(&mut y, &[-1.0, 0.5, 2.0]);
        for (a, b) in y.iter().zip([-0.158_808, 0.345_714, 1.954_598]) {
            assert!((a - b).abs() < 1e-5, "{a} {b}");
        }
    }

    #[test]
    fn swiglu_gradients() {
        let mut rng = Rng::new(17);
        let inputs = vec![randn(&mut rng, 40, 2.0), randn(&mut rng, 40, 1.0)];
        let r = randn(&mut rng, 40, 1.0);
        let f = |v: &[Vec<f32>]| {
            let mut y = vec![0.0; 40];
            swiglu_forward(&mut y, &v[0], &v[1]);
            dot(&y, &r)
        };
        let init = vec![randn(&mut rng, 40, 1.0), randn(&mut rng, 40, 1.0)];
        let mut g = init.clone();
        let [dg, du] = &mut g[..] else { unreachable!() };
        swiglu_backward(dg, du, &r, &inputs[0], &inputs[1]);
        check("swiglu", &inputs, &accumulated(&init, &g), f);
    }
}
