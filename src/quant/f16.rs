//! IEEE 754 half precision (binary16), the format of every ggml block's scale: 1 sign bit,
//! 5 exponent bits (bias 15), 10 mantissa bits. Written out by hand because a block's bytes
//! depend on how f32 rounds to it: to the nearest f16, ties to the even mantissa, as the
//! x86 instruction `vcvtps2ph` (what ggml uses where the CPU has F16C) and ggml's portable
//! `ggml_compute_fp32_to_fp16` both do.
//!
//! ```
//! use llm_lessons::quant::f16::{f16_to_f32, f32_to_f16};
//! assert_eq!(f32_to_f16(1.0), 0x3c00);
//! assert_eq!(f16_to_f32(0x3c00), 1.0);
//! // 1 + 2^-11 lies halfway between 1 and the next f16, 1 + 2^-10: the tie goes to even, 1.
//! assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
//! assert_eq!(f32_to_f16(65520.0), 0x7c00); // past the largest f16 (65504): infinity
//! ```

/// The f16 nearest `x` (ties to even), as its 16 bits. Overflow gives ±infinity, values
/// below the smallest subnormal (2^-24) round to ±0, NaN stays NaN (quiet).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // infinity, or NaN: kept a (quiet) NaN, with the top of its payload
        return sign
            | 0x7c00
            | if man != 0 {
                0x0200 | (man >> 13) as u16
            } else {
                0
            };
    }
    // the value is 1.man * 2^(exp - 127); in f16 the exponent field is e = exp - 127 + 15
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00; // too large: infinity
    }
    if e <= 0 {
        // a subnormal f16 (or zero): the value in units of 2^-24 is 1.man * 2^(exp - 103)
        if e < -10 {
            return sign; // below half the smallest subnormal: zero
        }
        let m = man | 0x0080_0000; // the implicit leading 1
        let shift = (14 - e) as u32; // 24 bits of 1.man down to the subnormal's 10
        return sign | round_shift(m, shift) as u16;
    }
    // a normal f16: 13 mantissa bits go; a carry out of the mantissa bumps the exponent,
    // which is what the plain addition below does (and 0x7bff rounds up to infinity)
    let h = ((e as u32) << 10) | (man >> 13);
    sign | (h + round_bit(man, 13)) as u16
}

/// `m >> shift`, rounded to nearest, ties to even.
fn round_shift(m: u32, shift: u32) -> u32 {
    (m >> shift) + round_bit(m, shift)
}

/// 1 if dropping the low `shift` bits of `m` must round up: more than half, or exactly
/// half with an odd result.
fn round_bit(m: u32, shift: u32) -> u32 {
    let half = 1u32 << (shift - 1);
    let rest = m & ((1u32 << shift) - 1);
    let odd = (m >> shift) & 1;
    u32::from(rest > half || (rest == half && odd == 1))
}

/// The f32 equal to the f16 `h` (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x03ff);
    let bits = match exp {
        0 if man == 0 => sign,
        // subnormal: man * 2^-24, a normal f32 (exact: man has at most 10 bits)
        0 => return sign_of(h) * (man as f32) * 2f32.powi(-24),
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

fn sign_of(h: u16) -> f32 {
    if h & 0x8000 != 0 {
        -1.0
    } else {
        1.0
    }
}

/// `x` rounded through f16 and back: what storing a scale in a block does to it.
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 65,536 f16 values converts to the f32 the `half` crate gives, and
    /// back to itself.
    #[test]
    fn every_f16_round_trips() {
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            let want = half::f16::from_bits(h).to_f32();
            if want.is_nan() {
                assert!(x.is_nan(), "{h:#06x}");
                assert!(f16_to_f32(f32_to_f16(x)).is_nan());
                continue;
            }
            assert_eq!(x.to_bits(), want.to_bits(), "{h:#06x}");
            assert_eq!(f32_to_f16(x), h, "{h:#06x}");
        }
    }

    /// f32 values around every f16: just below, at and just above each midpoint between
    /// neighbours (where the tie rule decides), and a sweep of the whole f32 range.
    #[test]
    fn rounding_matches_half_everywhere() {
        let check = |x: f32| {
            let want = half::f16::from_f32(x).to_bits();
            assert_eq!(f32_to_f16(x), want, "{x:e} ({:#010x})", x.to_bits());
        };
        for h in 0..0x7c00u16 {
            let (lo, hi) = (f16_to_f32(h) as f64, f16_to_f32(h + 1) as f64);
            let mid = ((lo + hi) / 2.0) as f32; // exact in f32: f16 has 13 bits fewer
            for x in [
                mid,
                f32::from_bits(mid.to_bits() - 1),
                f32::from_bits(mid.to_bits() + 1),
            ] {
                check(x);
                check(-x);
            }
        }
        for bits in (0..=u32::MAX).step_by(4_099) {
            check(f32::from_bits(bits));
        }
    }
}
