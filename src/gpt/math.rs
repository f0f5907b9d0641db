//! `exp` for the hot loops (softmax, cross-entropy, SiLU): the same answer as the
//! standard library's to about 1e-7 relative, in straight-line arithmetic that the
//! compiler can run on 8 numbers at once, where `f32::exp` is a call per number.
//!
//! Cephes' `expf`: write `x = n ln 2 + r` with `|r| <= ln 2 / 2`, approximate `e^r` by a
//! polynomial, and multiply by `2^n` by writing `n` into the float's exponent bits.
//!
//! ```
//! use llm_lessons::gpt::math::exp;
//! assert!((exp(1.0) - std::f32::consts::E).abs() < 1e-6);
//! assert_eq!(exp(0.0), 1.0);
//! assert!(exp(f32::NAN).is_nan());
//! ```

/// `e^x`. Below -87.3 it gives about 1e-38 rather than 0; above 88.37, about 2.5e38 rather
/// than infinity; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LO: f32 = -87.3;
    const HI: f32 = 88.37; // n at most 127, the largest finite exponent
                           // clamp keeps a NaN (f32::max and min would drop it)
    let x = x.clamp(LO, HI);
    // n = round(x / ln 2): adding and subtracting 1.5 * 2^23 rounds to an integer in
    // plain float arithmetic (f32::round and floor are library calls without SSE4.1)
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    // r = x - n ln 2, with ln 2 split in two so that the product is exact enough
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n: n + 127 in the exponent bits (n is between -126 and 127 after the clamp)
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    er * two_n
}

/// Runs `f` compiled for AVX2 and FMA when the CPU has them, so that the loops inside work
/// on 8 numbers at a time rather than the 4 of the baseline x86-64 (SSE2); elsewhere, runs
/// `f` as it is. The operations are the same, only wider (Rust never fuses a multiply and
/// an add on its own), so the results are the same bit for bit.
///
/// ```
/// use llm_lessons::gpt::math::{exp, vectorized};
/// let mut x = [0.0f32, 1.0, 2.0];
/// vectorized(|| x.iter_mut().for_each(|v| *v = exp(*v)));
/// assert_eq!(x[0], 1.0);
/// ```
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f() // inlined here, and compiled with the wider instructions
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `avx2` is compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// `sigmoid(x) = 1 / (1 + e^-x)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_exp() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0 + 0.000_37;
            let want = (x as f64).exp();
            let err = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(err);
        }
        assert!(worst < 3e-7, "largest relative error {worst:e}");
        assert!(exp(-200.0) < 1e-37 && exp(-200.0) >= 0.0);
        assert!(exp(200.0) > 1e38 && exp(200.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
    }
}
