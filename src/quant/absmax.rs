//! int8 with one scale per tensor or per row: the simplest quantizers, before ggml's blocks.
//!
//! - [`AbsmaxInt8`]: symmetric, one step `Δ = max|x| / 127` for the whole tensor,
//!   `q = round(x / Δ)` in `−127..=127`, `x ≈ Δ q`.
//! - [`ZeroPointInt8`]: asymmetric, the range `[min, max]` (widened to hold 0) mapped onto
//!   `0..=255` with `scale = (max − min) / 255` and an integer zero point `z`, so that
//!   `x ≈ scale (q − z)` and `x = 0` is exact.
//! - [`PerRowInt8`]: symmetric with one step per row of a `(rows, cols)` weight, that is per
//!   output channel of a linear layer: a row of small weights keeps its own fine step.
//!
//! Every round trip stays within half a step, `|x − deq(q(x))| ≤ Δ/2`: `x / Δ` is at most
//! half an integer away from the integer it rounds to, and multiplying back by `Δ` scales
//! that distance by `Δ` (in f32 up to a few units in the last place; the tests state it).
//!
//! ```
//! use llm_lessons::quant::absmax::AbsmaxInt8;
//! // max|x| = 31.75 = 127 · 0.25, so Δ = 0.25 (exact in binary)
//! let t = AbsmaxInt8::quantize(&[-31.75, 12.5, 0.0, 0.125]);
//! assert_eq!(t.step, 0.25);
//! assert_eq!(t.q, [-127, 50, 0, 1]); // 0.125 / 0.25 = 0.5 rounds away from zero
//! assert_eq!(t.dequantize(), [-31.75, 12.5, 0.0, 0.25]);
//! ```

use crate::{Error, Result};

/// The largest |x| (0 for an empty or all-zero slice).
fn amax(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// `round(x / Δ)` clamped to `−127..=127`, ties away from zero (C's `roundf`, as ggml's
/// Q8_0); `Δ = 0` (a tensor of zeros) gives 0.
fn to_int8(x: f32, step: f32) -> i8 {
    if step == 0.0 {
        0
    } else {
        (x / step).round().clamp(-127.0, 127.0) as i8
    }
}

// ANCHOR: absmax
/// Symmetric absmax int8 with one step for the whole tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct AbsmaxInt8 {
    /// `q_i = round(x_i / Δ)`, in `−127..=127` (−128 is never used: the range is symmetric).
    pub q: Vec<i8>,
    /// `Δ = max|x| / 127`.
    pub step: f32,
}

impl AbsmaxInt8 {
    /// `Δ = max|x| / 127`, `q_i = round(x_i / Δ)` with ties away from zero.
    pub fn quantize(x: &[f32]) -> Self {
        let step = amax(x) / 127.0;
        AbsmaxInt8 {
            q: x.iter().map(|&v| to_int8(v, step)).collect(),
            step,
        }
    }

    /// `x_i ≈ Δ q_i`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q.iter().map(|&q| self.step * q as f32).collect()
    }
}
// ANCHOR_END: absmax

// ANCHOR: zero_point
/// Asymmetric int8: `u8` codes with a scale and an integer zero point.
///
/// The convention is PyTorch's `torch.quantize_per_tensor(x, scale, zero_point,
/// torch.quint8)` with the parameters its min/max observer chooses: the range is widened to
/// hold 0, `[min(x_min, 0), max(x_max, 0)]`, then
///
/// ```text
/// scale = (max − min) / 255
/// z     = clamp(round(−min / scale), 0, 255)
/// q     = clamp(round(x / scale) + z, 0, 255)
/// x'    = scale (q − z)
/// ```
///
/// with `round` half to even (PyTorch's `nearbyint`). Because `z` is an integer, `x = 0`
/// quantizes to `q = z` and comes back as exactly 0: zeros (padding, ReLU outputs) stay
/// zeros. The price against [`AbsmaxInt8`]: the codes are offset, so a dot product
/// `Σ x_i y_i` picks up cross terms in `z` (`Σ (q_i − z) r_i = Σ q_i r_i − z Σ r_i`).
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroPointInt8 {
    /// `q_i = clamp(round(x_i / scale) + z, 0, 255)`.
    pub q: Vec<u8>,
    /// `(max − min) / 255`, the step.
    pub scale: f32,
    /// The code of 0.0.
    pub zero_point: u8,
}

impl ZeroPointInt8 {
    /// See the type's documentation for the formulas. A tensor of zeros gets `scale = 0`,
    /// `z = 0` and codes 0.
    pub fn quantize(x: &[f32]) -> Self {
        let min = x.iter().fold(0.0f32, |m, &v| m.min(v));
        let max = x.iter().fold(0.0f32, |m, &v| m.max(v));
        let scale = (max - min) / 255.0;
        if scale == 0.0 {
            return ZeroPointInt8 {
                q: vec![0; x.len()],
                scale,
                zero_point: 0,
            };
        }
        let zero_point = (-min / scale).round_ties_even().clamp(0.0, 255.0);
        let q = x
            .iter()
            .map(|&v| ((v / scale).round_ties_even() + zero_point).clamp(0.0, 255.0) as u8)
            .collect();
        ZeroPointInt8 {
            q,
            scale,
            zero_point: zero_point as u8,
        }
    }

    /// `x_i ≈ scale (q_i − z)`.
    pub fn dequantize(&self) -> Vec<f32> {
        let z = self.zero_point as i32;
        self.q
            .iter()
            .map(|&q| self.scale * (q as i32 - z) as f32)
            .collect()
    }
}
// ANCHOR_END: zero_point

// ANCHOR: per_row
/// Symmetric int8 with one step per row of a `(rows, cols)` matrix (per output channel of a
/// linear layer's `(d_out, d_in)` weight).
///
/// # Shapes
/// `q: (rows, cols)` row-major, `steps: (rows)`.
#[derive(Clone, Debug, PartialEq)]
pub struct PerRowInt8 {
    pub rows: usize,
    pub cols: usize,
    /// `q[r][c] = round(x[r][c] / Δ_r)`.
    pub q: Vec<i8>,
    /// `Δ_r = max_c |x[r][c]| / 127`.
    pub steps: Vec<f32>,
}

impl PerRowInt8 {
    /// Quantizes each row with its own absmax step.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `x.len() != rows * cols`.
    pub fn quantize(x: &[f32], rows: usize, cols: usize) -> Result<Self> {
        if x.len() != rows * cols {
            return Err(Error::InvalidArgument(format!(
                "per-row int8: {} values are not a ({rows}, {cols}) matrix",
                x.len()
            )));
        }
        let mut q = Vec::with_capacity(x.len());
        let mut steps = Vec::with_capacity(rows);
        for row in x.chunks(cols.max(1)).take(rows) {
            let step = amax(row) / 127.0;
            q.extend(row.iter().map(|&v| to_int8(v, step)));
            steps.push(step);
        }
        // rows of zero columns: no values, but still one (zero) step per row
        steps.resize(rows, 0.0);
        Ok(PerRowInt8 {
            rows,
            cols,
            q,
            steps,
        })
    }

    /// `x[r][c] ≈ Δ_r q[r][c]`.
    pub fn dequantize(&self) -> Vec<f32> {
        self.q
            .chunks(self.cols.max(1))
            .zip(&self.steps)
            .flat_map(|(row, &step)| row.iter().map(move |&q| step * q as f32))
            .collect()
    }
}
// ANCHOR_END: per_row

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_rand::rand_distr::StandardNormal;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The f32 slack of `|x − Δ q| ≤ Δ/2`: `x / Δ` (one rounding, |x/Δ| ≤ 255, so off by at
    /// most 255 · 2⁻²⁴ of a step) and `Δ q` (one rounding, off by at most 255 Δ 2⁻²⁴):
    /// together under `2⁻¹⁵ Δ`. The error itself is measured in f64.
    const SLACK: f64 = 1.0 / 32768.0;

    fn gaussian(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| scale * rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    /// Tensors with awkward values: ties, a negative maximum, tiny and huge magnitudes.
    fn cases() -> Vec<Vec<f32>> {
        let mut cases = vec![
            gaussian(1000, 1, 1.0),
            gaussian(1000, 2, 1e-5),
            gaussian(1000, 3, 3e4),
            (0..255).map(|i| i as f32 - 127.0 + 0.5).collect(), // ties at Δ = 1
            vec![-7.0, 1.0, 2.0, 0.0],
            vec![3.0, 5.0, 9.0], // all positive
            vec![-3.0, -5.0],    // all negative
        ];
        cases.push(cases[0].iter().map(|v| v + 2.0).collect());
        cases
    }

    #[track_caller]
    fn assert_within_half_a_step(x: &[f32], y: &[f32], step: f32, what: &str) {
        assert_eq!(x.len(), y.len());
        let bound = step as f64 * (0.5 + SLACK);
        for (i, (&a, &b)) in x.iter().zip(y).enumerate() {
            let e = (a as f64 - b as f64).abs();
            assert!(
                e <= bound,
                "{what}: x[{i}] = {a}, back {b}: error {e:e} > Δ/2 = {bound:e}"
            );
        }
    }

    #[test]
    fn absmax_error_is_at_most_half_a_step() {
        for x in cases() {
            let t = AbsmaxInt8::quantize(&x);
            assert_eq!(t.step, amax(&x) / 127.0);
            assert_within_half_a_step(&x, &t.dequantize(), t.step, "absmax");
        }
    }

    #[test]
    fn zero_point_error_is_at_most_half_a_step_and_zero_is_exact() {
        for mut x in cases() {
            x.push(0.0);
            let t = ZeroPointInt8::quantize(&x);
            let y = t.dequantize();
            assert_within_half_a_step(&x, &y, t.scale, "zero point");
            assert_eq!(*y.last().unwrap(), 0.0, "0.0 comes back exactly");
            assert_eq!(*t.q.last().unwrap(), t.zero_point);
        }
    }

    #[test]
    fn per_row_error_is_at_most_half_its_rows_step() {
        // rows of very different sizes: each keeps its own step
        let (rows, cols) = (4, 300);
        let mut x = gaussian(rows * cols, 7, 1.0);
        for (r, row) in x.chunks_mut(cols).enumerate() {
            row.iter_mut().for_each(|v| *v *= 10f32.powi(r as i32 - 2));
        }
        let t = PerRowInt8::quantize(&x, rows, cols).unwrap();
        let y = t.dequantize();
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            assert_eq!(t.steps[r], amax(row) / 127.0);
            assert_within_half_a_step(row, &y[r * cols..(r + 1) * cols], t.steps[r], "per row");
        }
        // one step for the whole matrix is 1000 times coarser than row 0's
        assert!(AbsmaxInt8::quantize(&x).step > 999.0 * t.steps[0]);
        assert!(PerRowInt8::quantize(&x, rows, cols + 1).is_err());
    }

    /// Worked by hand.
    #[test]
    fn small_cases_by_hand() {
        // absmax: max|x| = 31.75, Δ = 0.25; 12.5 / 0.25 = 50, −0.375 / 0.25 = −1.5 → −2
        // (away from zero), ±31.75 → ±127
        let t = AbsmaxInt8::quantize(&[12.5, -0.375, 31.75, -31.75]);
        assert_eq!((t.step, t.q.clone()), (0.25, vec![50, -2, 127, -127]));

        // zero point: x in [−1, 1.55]: scale = 2.55 / 255 = 0.01, z = round(1 / 0.01) = 100;
        // 1.55 → 155 + 100 = 255, −1 → −100 + 100 = 0, 0 → z = 100
        let t = ZeroPointInt8::quantize(&[-1.0, 1.55, 0.0]);
        assert!((t.scale - 0.01).abs() < 1e-9, "{}", t.scale);
        assert_eq!(t.zero_point, 100);
        assert_eq!(t.q[..3], [0, 255, 100]);
        // the rounding rule on exact ties, with scale = 1 (x in [−5, 250], z = 5)
        let t = ZeroPointInt8::quantize(&[-5.0, 250.0, 0.5, 1.5, 2.5]);
        assert_eq!((t.scale, t.zero_point), (1.0, 5));
        assert_eq!(t.q, [0, 255, 5, 7, 7]); // 0.5 → 0, 1.5 → 2, 2.5 → 2

        // all positive: the range is widened to [0, 255] so that 0 keeps code 0
        let t = ZeroPointInt8::quantize(&[51.0, 255.0]);
        assert_eq!(
            (t.scale, t.zero_point, t.q.clone()),
            (1.0, 0, vec![51, 255])
        );

        // per row: rows (1, −4) and (0.5, 0.3): Δ = 4/127 and 0.5/127
        let t = PerRowInt8::quantize(&[1.0, -4.0, 0.5, 0.3], 2, 2).unwrap();
        assert_eq!(t.q, [32, -127, 127, 76]); // 31.75 → 32, 76.2 → 76

        // zeros
        assert_eq!(AbsmaxInt8::quantize(&[0.0; 3]).dequantize(), [0.0; 3]);
        assert_eq!(ZeroPointInt8::quantize(&[0.0; 3]).dequantize(), [0.0; 3]);
    }
}
