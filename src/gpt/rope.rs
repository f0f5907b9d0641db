//! Rotary position embedding (RoPE), in Hugging Face's half-split convention.
//!
//! A head vector of width `hs` is cut into halves `x1 = x[..hs/2]`, `x2 = x[hs/2..]`, and
//! each pair `(x1[i], x2[i])` is rotated by the angle `pos * theta^(-2i/hs)`:
//!
//! ```text
//! y1[i] = x1[i] cos - x2[i] sin
//! y2[i] = x2[i] cos + x1[i] sin        (HF: y = x * cos + rotate_half(x) * sin)
//! ```
//!
//! Queries and keys are rotated, values are not, so the score `q_t . k_s` depends on the
//! positions only through `t - s`. Meta's original code and GGUF files pair neighbours
//! `(x[2i], x[2i+1])` instead (the "interleaved" convention): the same rotations on a
//! permuted head, which is why converters permute the rows of `W_q` and `W_k`.
//!
//! A rotation's inverse is the rotation by the opposite angle, and since it is linear and
//! orthogonal its backward is that inverse: `dx = R(-angle) dy`.
//!
//! ```
//! use llm_lessons::gpt::rope::{rope_forward, RopeTable};
//! let table = RopeTable::new(10000.0, 2, 4); // hs = 2: one pair, angle = pos
//! let mut y = [0.0; 2];
//! rope_forward(&mut y, &[1.0, 0.0], &table, 1, 1, 1); // position 1: rotate by 1 radian
//! assert!((y[0] - 1f32.cos()).abs() < 1e-6 && (y[1] - 1f32.sin()).abs() < 1e-6);
//! ```

use super::math::vectorized;
use super::shapes::{expect_len, rows_of};
use rayon::prelude::*;

/// `cos` and `sin` of every angle, per position and pair.
#[derive(Clone, Debug)]
pub struct RopeTable {
    /// Head width `hs`.
    pub head_dim: usize,
    /// `cos(pos * inv_freq[i])`, shape `(context, hs/2)`.
    pub cos: Vec<f32>,
    /// `sin(pos * inv_freq[i])`, shape `(context, hs/2)`.
    pub sin: Vec<f32>,
    /// Pair `i` is `(x[2i], x[2i+1])` (DeepSeek's weights, Meta's original code) instead
    /// of `(x[i], x[i + hs/2])` (Hugging Face Llama).
    pub interleaved: bool,
}

// ANCHOR: rope_table
impl RopeTable {
    /// The table for positions `0..context`. The angles are computed as Hugging Face
    /// computes them, in f32: `inv_freq[i] = 1 / theta^(2i/hs)`, `angle = pos * inv_freq[i]`.
    ///
    /// # Panics
    /// If `head_dim` is odd ([`crate::gpt::GptConfig::validate`] rules that out).
    pub fn new(theta: f32, head_dim: usize, context: usize) -> Self {
        assert!(head_dim % 2 == 0, "RoPE needs an even head_dim");
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let (mut cos, mut sin) = (
            Vec::with_capacity(context * half),
            Vec::with_capacity(context * half),
        );
        for pos in 0..context {
            for &f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push((angle as f64).cos() as f32);
                sin.push((angle as f64).sin() as f32);
            }
        }
        RopeTable {
            head_dim,
            cos,
            sin,
            interleaved: false,
        }
    }

    /// [`RopeTable::new`] with pairs of neighbours, `(x[2i], x[2i+1])`: the same angles.
    pub fn interleaved(theta: f32, head_dim: usize, context: usize) -> Self {
        RopeTable {
            interleaved: true,
            ..RopeTable::new(theta, head_dim, context)
        }
    }

    /// The two indices of pair `i` in a head of this table's width.
    #[inline]
    pub fn pair(&self, i: usize) -> (usize, usize) {
        if self.interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + self.head_dim / 2)
        }
    }

    /// Rotates one head vector `x` (`hs` wide) in place by the angles of position `pos`,
    /// or back (`inverse`, the backward: `R(-angle)`).
    pub fn rotate_one(&self, x: &mut [f32], pos: usize, inverse: bool) {
        let half = self.head_dim / 2;
        assert_eq!(
            x.len(),
            self.head_dim,
            "rotate_one: a head of {} values",
            self.head_dim
        );
        let sign = if inverse { -1.0 } else { 1.0 };
        let (cos, sin) = (
            &self.cos[pos * half..][..half],
            &self.sin[pos * half..][..half],
        );
        for i in 0..half {
            let (a, b) = self.pair(i);
            let (x1, x2, c, s) = (x[a], x[b], cos[i], sign * sin[i]);
            x[a] = x1 * c - x2 * s;
            x[b] = x2 * c + x1 * s;
        }
    }

    /// Longest sequence the table covers.
    pub fn context(&self) -> usize {
        self.cos.len() / (self.head_dim / 2)
    }
}
// ANCHOR_END: rope_table

// ANCHOR: rope
/// Rotates every head of `x` by the angles of its position, `pos0 + t`.
///
/// # Shapes
/// `x, out: (B, T, n_heads, hs)` (out overwritten); the table must reach `pos0 + T`.
pub fn rope_forward(
    out: &mut [f32],
    x: &[f32],
    table: &RopeTable,
    pos0: usize,
    t: usize,
    n_heads: usize,
) {
    rotate(out, x, table, pos0, t, n_heads, 1.0, false);
}

/// Backward of [`rope_forward`]: rotates `dout` back by the opposite angles,
/// `dx += R(-angle) dout`.
///
/// # Shapes
/// `dout, dx: (B, T, n_heads, hs)`.
pub fn rope_backward(
    dx: &mut [f32],
    dout: &[f32],
    table: &RopeTable,
    pos0: usize,
    t: usize,
    n_heads: usize,
) {
    rotate(dx, dout, table, pos0, t, n_heads, -1.0, true);
}

/// `out (=|+=) R(sign * angle) x` for every head of every position.
#[allow(clippy::too_many_arguments)]
fn rotate(
    out: &mut [f32],
    x: &[f32],
    table: &RopeTable,
    pos0: usize,
    t: usize,
    n_heads: usize,
    sign: f32,
    accumulate: bool,
) {
    let hs = table.head_dim;
    let half = hs / 2;
    let row = n_heads * hs; // one position of one sequence
    let k = if accumulate {
        "rope_backward"
    } else {
        "rope_forward"
    };
    let n = rows_of(k, "x", x.len(), row * t.max(1)) * t;
    expect_len(k, "out", out.len(), x.len(), "(B, T, n_heads, hs)");
    assert!(
        n == 0 || pos0 + t <= table.context(),
        "{k}: positions {pos0}..{} are past the table's context {}",
        pos0 + t,
        table.context()
    );
    let rows = out.par_chunks_exact_mut(row).zip(x.par_chunks_exact(row));
    rows.enumerate().for_each(|(n, (o_row, x_row))| {
        let pos = pos0 + n % t;
        let cos = &table.cos[pos * half..(pos + 1) * half];
        let sin = &table.sin[pos * half..(pos + 1) * half];
        vectorized(|| {
            for (o, x) in o_row.chunks_exact_mut(hs).zip(x_row.chunks_exact(hs)) {
                for i in 0..half {
                    let (a, b) = table.pair(i);
                    let (x1, x2) = (x[a], x[b]);
                    let (c, s) = (cos[i], sign * sin[i]);
                    let (y1, y2) = (x1 * c - x2 * s, x2 * c + x1 * s);
                    if accumulate {
                        o[a] += y1;
                        o[b] += y2;
                    } else {
                        o[a] = y1;
                        o[b] = y2;
                    }
                }
            }
        })
    });
}
// ANCHOR_END: rope

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn rope_gradients() {
        let (b, t, nh, hs) = (2, 5, 3, 8);
        let table = RopeTable::new(100.0, hs, 16);
        let n = b * t * nh * hs;
        let mut rng = Rng::new(8);
        let inputs = vec![randn(&mut rng, n, 1.0)];
        let r = randn(&mut rng, n, 1.0);
        let f = |v: &[Vec<f32>]| {
            let mut y = vec![0.0; n];
            rope_forward(&mut y, &v[0], &table, 3, t, nh);
            dot(&y, &r)
        };
        let init = vec![randn(&mut rng, n, 1.0)];
        let mut g = init.clone();
        rope_backward(&mut g[0], &r, &table, 3, t, nh);
        check("rope", &inputs, &accumulated(&init, &g), f);
    }

    #[test]
    fn rope_keeps_lengths_and_its_inverse_undoes_it() {
        let (t, nh, hs) = (6, 2, 4);
        let table = RopeTable::new(10000.0, hs, t);
        let mut rng = Rng::new(9);
        let x = randn(&mut rng, t * nh * hs, 1.0);
        let mut y = vec![0.0; x.len()];
        rope_forward(&mut y, &x, &table, 0, t, nh);
        let mut back = vec![0.0; x.len()];
        rope_backward(&mut back, &y, &table, 0, t, nh);
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() < 1e-5);
        }
        for (xh, yh) in x.chunks(hs).zip(y.chunks(hs)) {
            let (nx, ny) = (dot(xh, xh), dot(yh, yh));
            assert!(
                (nx - ny).abs() < 1e-5 * nx.max(1.0),
                "a rotation keeps the length"
            );
        }
        // position 0 is not rotated
        assert_eq!(&y[..nh * hs], &x[..nh * hs]);
    }

    #[test]
    fn scores_depend_only_on_the_distance() {
        let hs = 8;
        let table = RopeTable::new(10000.0, hs, 32);
        let mut rng = Rng::new(10);
        let (q, k) = (randn(&mut rng, hs, 1.0), randn(&mut rng, hs, 1.0));
        let score = |tq: usize, tk: usize| {
            let (mut rq, mut rk) = (vec![0.0; hs], vec![0.0; hs]);
            rope_forward(&mut rq, &q, &table, tq, 1, 1);
            rope_forward(&mut rk, &k, &table, tk, 1, 1);
            dot(&rq, &rk)
        };
        assert!((score(5, 2) - score(20, 17)).abs() < 1e-4);
        assert!((score(5, 2) - score(5, 3)).abs() > 1e-3);
    }
}
