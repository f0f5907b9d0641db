//! How large a quantization's error is, measured and predicted.
//!
//! Measured ([`QuantError`]): the largest `|e_i|`, the RMS error `sqrt(Σ e_i² / n)` and the
//! signal-to-noise ratio `SNR = 10 log10(Σ x_i² / Σ e_i²)` dB, with `e_i = x_i − x'_i`.
//!
//! Predicted: rounding to a grid of step `Δ` leaves an error in `[−Δ/2, Δ/2]`. When `Δ` is
//! small against the spread of the values, where `x` falls between two grid points is
//! close to uniform, so `e` is uniform on `[−Δ/2, Δ/2]`, of mean 0 and variance
//!
//! ```text
//! E[e²] = (1/Δ) ∫_{−Δ/2}^{Δ/2} e² de = Δ² / 12
//! ```
//!
//! hence [`predicted_snr_db`] `= 10 log10(mean(x²) / (Δ²/12))`. One more bit halves `Δ`,
//! divides the noise power by 4 and adds `10 log10 4 = 20 log10 2 ≈ 6.02` dB
//! ([`DB_PER_BIT`]).
//!
//! ```
//! use llm_lessons::quant::stats::{quant_error, DB_PER_BIT};
//! let e = quant_error(&[1.0, -2.0], &[1.0, -1.0]);
//! assert_eq!((e.max_abs, e.n), (1.0, 2));
//! // Σx² = 5, Σe² = 1: 10 log10 5 ≈ 6.99 dB
//! assert!((e.snr_db - 6.9897).abs() < 1e-4);
//! assert!((DB_PER_BIT - 6.0206).abs() < 1e-4);
//! ```

use crate::{Error, Result};

/// `20 log10 2`: the SNR one more bit buys, in dB.
pub const DB_PER_BIT: f64 = 6.020_599_913_279_624;

/// The error of a quantization `x → x'`, computed in f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantError {
    /// How many values.
    pub n: usize,
    /// `max_i |x_i − x'_i|`.
    pub max_abs: f32,
    /// `sqrt(Σ (x_i − x'_i)² / n)`.
    pub rms: f64,
    /// `10 log10(Σ x_i² / Σ (x_i − x'_i)²)`; `+∞` for an exact round trip.
    pub snr_db: f64,
}

// ANCHOR: quant_error
/// The error of `approx` (the dequantized values) against `x`.
///
/// # Panics
/// If the lengths differ.
pub fn quant_error(x: &[f32], approx: &[f32]) -> QuantError {
    assert_eq!(x.len(), approx.len(), "quant_error: one value each");
    let (mut signal, mut noise, mut max_abs) = (0.0f64, 0.0f64, 0.0f32);
    for (&a, &b) in x.iter().zip(approx) {
        let e = a as f64 - b as f64;
        signal += a as f64 * a as f64;
        noise += e * e;
        max_abs = max_abs.max((a - b).abs());
    }
    QuantError {
        n: x.len(),
        max_abs,
        rms: (noise / x.len().max(1) as f64).sqrt(),
        snr_db: 10.0 * (signal / noise).log10(),
    }
}
// ANCHOR_END: quant_error

// ANCHOR: predicted
/// The noise power of rounding to a grid of step `Δ`: `Δ² / 12`.
pub fn rounding_noise_variance(step: f64) -> f64 {
    step * step / 12.0
}

/// The SNR, in dB, that rounding `x` to a grid of step `Δ` should give if the error is
/// uniform on `[−Δ/2, Δ/2]`: `10 log10(mean(x²) / (Δ²/12))`.
pub fn predicted_snr_db(x: &[f32], step: f32) -> f64 {
    let mean_square = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len().max(1) as f64;
    10.0 * (mean_square / rounding_noise_variance(step as f64)).log10()
}
// ANCHOR_END: predicted

/// Rounds `x` to `bits`-bit symmetric absmax codes, `Δ = max|x| / (2^(bits−1) − 1)`,
/// `q = round(x / Δ)` (ties away from zero), and back: `(Δ q, Δ)`. At 8 bits this is
/// [`AbsmaxInt8`](super::absmax::AbsmaxInt8); fewer bits show the 6 dB per bit.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `2 ≤ bits ≤ 16`.
pub fn absmax_round_trip(x: &[f32], bits: u32) -> Result<(Vec<f32>, f32)> {
    if !(2..=16).contains(&bits) {
        return Err(Error::InvalidArgument(format!(
            "absmax quantization to {bits} bits: use 2 to 16"
        )));
    }
    let levels = ((1u32 << (bits - 1)) - 1) as f32;
    let step = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / levels;
    let y = x
        .iter()
        .map(|&v| {
            if step == 0.0 {
                0.0
            } else {
                step * (v / step).round().clamp(-levels, levels)
            }
        })
        .collect();
    Ok((y, step))
}

/// One row of [`snr_by_bits`]: the SNR measured and predicted at `bits` bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnrAtBits {
    pub bits: u32,
    pub step: f32,
    pub measured_db: f64,
    pub predicted_db: f64,
}

/// The measured and predicted SNR of [`absmax_round_trip`] for each of `bits`.
///
/// # Errors
/// As [`absmax_round_trip`].
pub fn snr_by_bits(x: &[f32], bits: &[u32]) -> Result<Vec<SnrAtBits>> {
    bits.iter()
        .map(|&b| {
            let (y, step) = absmax_round_trip(x, b)?;
            Ok(SnrAtBits {
                bits: b,
                step,
                measured_db: quant_error(x, &y).snr_db,
                predicted_db: predicted_snr_db(x, step),
            })
        })
        .collect()
}

/// Counts of values in `bins` equal bins over `[lo, hi]`, for a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    /// `counts[k]`: values in `[lo + k w, lo + (k + 1) w)`, `w = (hi − lo) / bins`; the
    /// last bin also holds `hi`.
    pub counts: Vec<usize>,
    /// Values outside `[lo, hi]` (and NaNs), not in any bin.
    pub outside: usize,
}

impl Histogram {
    /// # Errors
    /// [`Error::InvalidArgument`] if `bins` is 0 or `lo < hi` does not hold (finite).
    pub fn new(x: &[f32], bins: usize, lo: f32, hi: f32) -> Result<Self> {
        if bins == 0
            || lo >= hi
            || lo.is_nan()
            || hi.is_nan()
            || lo.is_infinite()
            || hi.is_infinite()
        {
            return Err(Error::InvalidArgument(format!(
                "histogram of {bins} bins over [{lo}, {hi}]: need at least one bin and lo < hi"
            )));
        }
        let mut counts = vec![0; bins];
        let mut outside = 0;
        let width = (hi as f64 - lo as f64) / bins as f64;
        for &v in x {
            if v >= lo && v <= hi {
                let k = (((v as f64 - lo as f64) / width) as usize).min(bins - 1);
                counts[k] += 1;
            } else {
                outside += 1;
            }
        }
        Ok(Histogram {
            lo,
            hi,
            counts,
            outside,
        })
    }

    /// Over `[min x, max x]` (`[−1, 1]` if all values are equal or there are none).
    ///
    /// # Errors
    /// As [`Histogram::new`].
    pub fn of(x: &[f32], bins: usize) -> Result<Self> {
        let lo = x.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        if lo < hi {
            Self::new(x, bins, lo, hi)
        } else if lo.is_finite() {
            Self::new(x, bins, lo - 1.0, lo + 1.0)
        } else {
            Self::new(x, bins, -1.0, 1.0)
        }
    }

    /// The centre of each bin.
    pub fn centers(&self) -> Vec<f32> {
        let w = (self.hi - self.lo) / self.counts.len() as f32;
        (0..self.counts.len())
            .map(|k| self.lo + (k as f32 + 0.5) * w)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::absmax::{AbsmaxInt8, PerRowInt8};
    use ndarray_rand::rand_distr::StandardNormal;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect()
    }

    #[test]
    fn error_figures_by_hand() {
        // e = (0, 0.5, −0.5, 1): max 1, Σe² = 1.5, RMS = sqrt(1.5 / 4); Σx² = 1 + 4 + 9 + 16
        let e = quant_error(&[1.0, 2.0, 3.0, 4.0], &[1.0, 1.5, 3.5, 3.0]);
        assert_eq!(e.max_abs, 1.0);
        assert!((e.rms - (1.5f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((e.snr_db - 10.0 * (30.0f64 / 1.5).log10()).abs() < 1e-12);
        assert_eq!(quant_error(&[1.0], &[1.0]).snr_db, f64::INFINITY);
        // Δ = 1: noise Δ²/12; mean(x²) = 1 gives 10 log10 12 ≈ 10.79 dB
        assert!((predicted_snr_db(&[1.0, -1.0], 1.0) - 10.0 * 12f64.log10()).abs() < 1e-12);
    }

    /// On 2¹⁷ Gaussian values, absmax int8 (Δ = max|x|/127 ≈ 4.4σ/127) measures the SNR the
    /// uniform model predicts within 0.05 dB: the noise power's estimate from n uniform
    /// errors has a relative standard deviation sqrt(0.8 / n) ≈ 0.25 %, about 0.01 dB.
    #[test]
    fn gaussian_snr_matches_the_uniform_prediction() {
        let x = gaussian(1 << 17, 11);
        let t = AbsmaxInt8::quantize(&x);
        let measured = quant_error(&x, &t.dequantize()).snr_db;
        let predicted = predicted_snr_db(&x, t.step);
        assert!(
            (measured - predicted).abs() < 0.05,
            "measured {measured:.3} dB, predicted {predicted:.3} dB"
        );
        // the error itself: mean about 0, variance about Δ²/12
        let y = t.dequantize();
        let e: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(a, b)| *a as f64 - *b as f64)
            .collect();
        let mean = e.iter().sum::<f64>() / e.len() as f64;
        let var = e.iter().map(|v| v * v).sum::<f64>() / e.len() as f64;
        let want = rounding_noise_variance(t.step as f64);
        assert!(mean.abs() < 0.01 * t.step as f64, "mean {mean:e}");
        assert!(
            (var / want - 1.0).abs() < 0.01,
            "variance {var:e}, Δ²/12 = {want:e}"
        );
    }

    /// From 4 to 12 bits on 2¹⁶ Gaussian values: the uniform model predicts each level within
    /// 0.05 dB (measured: within 0.016 dB, even at 4 bits where Δ ≈ 0.6σ), and each added bit gains what the
    /// step's ratio predicts within 0.1 dB. That ratio is `(2^b − 1) / (2^(b−1) − 1)`,
    /// slightly over 2 (15/7 from 4 to 5 bits: 6.62 dB): 6.02 dB per bit is its limit, reached
    /// within 0.05 dB from 8 bits on (from 7 to 8 it is 20 log10(127/63) = 6.09).
    #[test]
    fn each_bit_adds_six_db() {
        let x = gaussian(1 << 16, 12);
        let rows = snr_by_bits(&x, &[4, 5, 6, 7, 8, 10, 12]).unwrap();
        for r in &rows {
            assert!(
                (r.measured_db - r.predicted_db).abs() < 0.05,
                "{} bits: measured {:.3}, predicted {:.3}",
                r.bits,
                r.measured_db,
                r.predicted_db
            );
        }
        for w in rows.windows(2) {
            let bits = (w[1].bits - w[0].bits) as f64;
            let per_bit = (w[1].measured_db - w[0].measured_db) / bits;
            let predicted = 20.0 * (w[0].step as f64 / w[1].step as f64).log10() / bits;
            assert!(
                (per_bit - predicted).abs() < 0.1,
                "{} → {} bits: {per_bit:.3} dB/bit, the steps predict {predicted:.3}",
                w[0].bits,
                w[1].bits
            );
            if w[0].bits >= 8 {
                assert!(
                    (per_bit - DB_PER_BIT).abs() < 0.05,
                    "{} bits: {per_bit:.3} dB/bit",
                    w[0].bits
                );
            }
        }
        assert!(absmax_round_trip(&x, 1).is_err());
        // at 8 bits it is AbsmaxInt8
        assert_eq!(
            absmax_round_trip(&x, 8).unwrap().0,
            AbsmaxInt8::quantize(&x).dequantize()
        );
    }

    /// One outlier in a tensor sets the step for all: per-row scales keep the other rows'.
    #[test]
    fn an_outlier_costs_a_per_tensor_step_its_snr() {
        // 32 rows of N(0, 1) and one value 100: per tensor, Δ = 100/127 for all (about 15 dB);
        // per row, only row 0's step is coarse (about 30 dB)
        let (rows, cols) = (32, 512);
        let mut x = gaussian(rows * cols, 13);
        x[3] = 100.0; // in row 0
        let tensor = quant_error(&x, &AbsmaxInt8::quantize(&x).dequantize()).snr_db;
        let per_row = quant_error(
            &x,
            &PerRowInt8::quantize(&x, rows, cols).unwrap().dequantize(),
        )
        .snr_db;
        assert!(
            per_row > tensor + 10.0,
            "per tensor {tensor:.1} dB, per row {per_row:.1} dB"
        );
    }

    #[test]
    fn histogram_counts() {
        let h = Histogram::new(&[0.0, 0.1, 0.5, 0.99, 1.0, 2.0, f32::NAN], 2, 0.0, 1.0).unwrap();
        assert_eq!((h.counts.clone(), h.outside), (vec![2, 3], 2));
        assert_eq!(h.centers(), [0.25, 0.75]);
        assert_eq!(
            Histogram::of(&[3.0, 3.0], 4)
                .unwrap()
                .counts
                .iter()
                .sum::<usize>(),
            2
        );
        assert!(Histogram::new(&[], 0, 0.0, 1.0).is_err());
        assert!(Histogram::new(&[], 3, 1.0, 1.0).is_err());
    }
}
