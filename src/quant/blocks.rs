//! ggml's blocks of 32 weights, byte for byte: each block is a scale (and for Q4_1 a
//! minimum) in f16, then the 32 quantized values. A row of a weight matrix is a run of
//! such blocks, and a GGUF file stores exactly these bytes.
//!
//! | format | bytes | layout | value j |
//! |---|---|---|---|
//! | Q8_0 | 34 | `d: f16, qs: [i8; 32]` | `d · qs[j]` |
//! | Q8_1 | 36 | `d: f16, s: f16, qs: [i8; 32]` | `d · qs[j]` (`s = d · Σ qs`, for Q4_1's dot) |
//! | Q4_0 | 18 | `d: f16, qs: [u8; 16]` | `d · (q_j − 8)` |
//! | Q4_1 | 20 | `d: f16, m: f16, qs: [u8; 16]` | `d · q_j + m` |
//!
//! In the 4-bit formats, element `j < 16` is the low nibble of `qs[j]` and element
//! `j + 16` its high nibble. The quantizers follow ggml-quants.c's reference ones
//! (`quantize_row_q8_0_ref` and its siblings) operation for operation, f32 arithmetic
//! included, so that the bytes are ggml's.
//!
//! ```
//! use llm_lessons::quant::blocks::{BlockQ8_0, QK};
//! let x: Vec<f32> = (0..QK).map(|j| j as f32 - 16.0).collect(); // -16 ..= 15
//! let b = BlockQ8_0::quantize(x.as_slice().try_into().unwrap());
//! // d = max|x| / 127, stored as f16; x_0 = -16 = -127 d
//! assert_eq!(b.d.get(), llm_lessons::quant::f16::round_f16(16.0 / 127.0));
//! assert_eq!((b.qs[0], b.qs[16], b.qs[31]), (-127, 0, 119));
//! ```

use super::f16::{f16_to_f32, f32_to_f16};
use bytemuck::{Pod, Zeroable};

/// Values per block, in every ggml format here.
pub const QK: usize = 32;

/// An f16 as its two little-endian bytes: a block's scale. Bytes, not a `u16`, so a
/// block has alignment 1 and any byte slice of a file (memory-mapped or not) can be
/// viewed as blocks in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
#[repr(transparent)]
pub struct Half(pub [u8; 2]);

impl Half {
    /// The f16 nearest `x` (ties to even).
    pub fn from_f32(x: f32) -> Self {
        Half(f32_to_f16(x).to_le_bytes())
    }

    /// Its value, exactly, as an f32.
    pub fn get(self) -> f32 {
        f16_to_f32(u16::from_le_bytes(self.0))
    }
}

/// Q8_0: 32 signed bytes and one scale, 8.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: Half,
    pub qs: [i8; QK],
}

/// Q8_1: Q8_0 plus `s = d Σ qs`, what a Q4_1 weight's minimum multiplies in a dot
/// product. ggml uses it only for activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    pub d: Half,
    pub s: Half,
    pub qs: [i8; QK],
}

/// Q4_0: 32 four-bit values around 8 and one scale, 4.5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: Half,
    pub qs: [u8; QK / 2],
}

/// Q4_1: 32 four-bit values, a scale and a minimum, 5 bits per weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: Half,
    pub m: Half,
    pub qs: [u8; QK / 2],
}

/// The largest |x| of a block (0 for a block of zeros; NaNs are passed over). In 8
/// running maxima, not one: the same value (the largest is the largest in any order), but
/// 8 independent chains that the compiler turns into vector instructions, where one chain
/// waits on each comparison in turn.
#[inline(always)]
fn amax(x: &[f32; QK]) -> f32 {
    let mut m = [0.0f32; 8];
    for c in x.chunks_exact(8) {
        for (m, v) in m.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    m.into_iter().fold(0.0, f32::max)
}

/// `1/d`, or 0 when `d` is 0 (a block of zeros quantizes to zeros).
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// `v.round() as i8`: round half away from zero (C's `roundf`), saturating, NaN to 0. Not
/// written with `f32::round` because x86-64's baseline has no rounding instruction
/// (`roundss` needs SSE4.1), so `round` is a call into the C library for every value.
/// Here: truncate through an integer, then step away from zero when the dropped part is at
/// least a half (`v − trunc(v)` is exact for |v| ≤ 128), a few vector instructions per 8
/// values. With the changes around it, quantizing an activation row of 1536 values went
/// from 4.4 µs to 1.4 µs (the "quantizing" line of `cargo bench --bench quant`), time
/// that the second thread of a 2-thread product spends waiting.
#[inline(always)]
fn round_to_i8(v: f32) -> i8 {
    let v = if v.is_nan() {
        0.0
    } else {
        v.clamp(-128.0, 127.0)
    };
    // SAFETY: v is a number in −128..=127. (`as` would also check for NaN and overflow,
    // value by value, which keeps the loop from running 8 values at a time.)
    let t: i32 = unsafe { v.to_int_unchecked() };
    let dropped = v - t as f32;
    (t + (dropped >= 0.5) as i32 - (dropped <= -0.5) as i32) as i8
}

/// q_j = round(x_j · id) for the 32 values, in a loop: `[f32; 32]::map` is compiled to a
/// call per block that the compiler does not turn into vector instructions.
#[inline(always)]
fn round_all(x: &[f32; QK], id: f32) -> [i8; QK] {
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = round_to_i8(v * id);
    }
    qs
}

// ANCHOR: q8_0
impl BlockQ8_0 {
    /// d = max|x| / 127, q_j = round(x_j / d) with ties away from zero (C's `roundf`,
    /// Rust's `f32::round`), computed as `x_j * (1/d)` in f32 as ggml does.
    #[inline(always)]
    pub fn quantize(x: &[f32; QK]) -> Self {
        let d = amax(x) / 127.0;
        let id = inverse(d);
        BlockQ8_0 {
            d: Half::from_f32(d),
            qs: round_all(x, id),
        }
    }

    /// x_j = d · q_j, with d as stored (rounded to f16).
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.get();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = d * q as f32;
        }
    }
}
// ANCHOR_END: q8_0

impl BlockQ8_1 {
    /// As [`BlockQ8_0::quantize`], plus `s = d Σ q_j` (with d before its f16 rounding,
    /// as ggml computes it).
    #[inline(always)]
    pub fn quantize(x: &[f32; QK]) -> Self {
        let d = amax(x) / 127.0;
        let id = inverse(d);
        let qs = round_all(x, id);
        let sum: i32 = qs.iter().map(|&q| q as i32).sum();
        BlockQ8_1 {
            d: Half::from_f32(d),
            s: Half::from_f32(sum as f32 * d),
            qs,
        }
    }

    /// x_j = d · q_j.
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.get();
        for (o, &q) in out.iter_mut().zip(&self.qs) {
            *o = d * q as f32;
        }
    }
}

// ANCHOR: q4_0
impl BlockQ4_0 {
    /// ggml's rounding: the value of largest magnitude, `max` (sign kept), maps to −8, so
    /// d = max / −8; q_j = min(15, trunc(x_j/d + 8.5)), i.e. x_j/d rounded half up, then
    /// shifted by 8 into 0..=15.
    pub fn quantize(x: &[f32; QK]) -> Self {
        let mut max = 0.0f32;
        let mut abs_max = 0.0f32;
        for &v in x {
            if abs_max < v.abs() {
                abs_max = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = inverse(d);
        let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
        let mut qs = [0u8; QK / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK / 2]) << 4);
        }
        BlockQ4_0 {
            d: Half::from_f32(d),
            qs,
        }
    }

    /// x_j = d · (q_j − 8).
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let d = self.d.get();
        for (j, &b) in self.qs.iter().enumerate() {
            out[j] = ((b & 0x0f) as i32 - 8) as f32 * d;
            out[j + QK / 2] = ((b >> 4) as i32 - 8) as f32 * d;
        }
    }
}
// ANCHOR_END: q4_0

// ANCHOR: q4_1
impl BlockQ4_1 {
    /// d = (max − min) / 15, m = min; q_j = min(15, trunc((x_j − min)/d + 0.5)).
    pub fn quantize(x: &[f32; QK]) -> Self {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = min.min(v);
            max = max.max(v);
        }
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
        let mut qs = [0u8; QK / 2];
        for (j, b) in qs.iter_mut().enumerate() {
            *b = q(x[j]) | (q(x[j + QK / 2]) << 4);
        }
        BlockQ4_1 {
            d: Half::from_f32(d),
            m: Half::from_f32(min),
            qs,
        }
    }

    /// x_j = d · q_j + m.
    pub fn dequantize(&self, out: &mut [f32; QK]) {
        let (d, m) = (self.d.get(), self.m.get());
        for (j, &b) in self.qs.iter().enumerate() {
            out[j] = (b & 0x0f) as f32 * d + m;
            out[j + QK / 2] = (b >> 4) as f32 * d + m;
        }
    }
}
// ANCHOR_END: q4_1

/// A ggml block format: what a row of blocks needs from its element type.
pub trait Block: Pod + std::fmt::Debug {
    /// ggml's name for the format (`"Q8_0"`).
    const NAME: &'static str;
    /// Bytes per block (34 for Q8_0).
    const BYTES: usize = std::mem::size_of::<Self>();
    fn quantize(x: &[f32; QK]) -> Self;
    fn dequantize(&self, out: &mut [f32; QK]);
}

macro_rules! block {
    ($t:ty, $name:literal) => {
        impl Block for $t {
            const NAME: &'static str = $name;
            #[inline(always)]
            fn quantize(x: &[f32; QK]) -> Self {
                <$t>::quantize(x)
            }
            fn dequantize(&self, out: &mut [f32; QK]) {
                <$t>::dequantize(self, out)
            }
        }
    };
}
block!(BlockQ8_0, "Q8_0");
block!(BlockQ8_1, "Q8_1");
block!(BlockQ4_0, "Q4_0");
block!(BlockQ4_1, "Q4_1");

/// Quantizes a row whose length is a multiple of 32 into its blocks.
///
/// # Panics
/// If `x.len()` is not a multiple of [`QK`] (callers check shapes first and return an
/// error naming the tensor).
pub fn quantize_row<B: Block>(x: &[f32]) -> Vec<B> {
    assert_eq!(x.len() % QK, 0, "a row of {} blocks", B::NAME);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { quantize_blocks_avx2(x) };
    }
    quantize_blocks(x)
}

/// [`quantize_blocks`] compiled for AVX2: the same operations in the same order, so the
/// same bytes, in 8-wide instructions. It matters for activations, quantized on every
/// product: x86-64's baseline (SSE2) has 4-wide vectors and no float-to-integer rounding.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_blocks_avx2<B: Block>(x: &[f32]) -> Vec<B> {
    quantize_blocks(x)
}

#[inline(always)]
fn quantize_blocks<B: Block>(x: &[f32]) -> Vec<B> {
    // a loop, not `collect`: the iterator's code would be a function of its own, compiled
    // without AVX2 even when called from `quantize_blocks_avx2`
    let mut blocks = Vec::with_capacity(x.len() / QK);
    for c in x.chunks_exact(QK) {
        blocks.push(B::quantize(c.try_into().expect("chunks of QK")));
    }
    blocks
}

/// The values of a run of blocks, into `out` (32 per block).
///
/// # Panics
/// If `out` does not hold 32 values per block.
pub fn dequantize_row<B: Block>(blocks: &[B], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "32 values per {} block",
        B::NAME
    );
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        b.dequantize(o.try_into().expect("chunks of QK"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_to_i8_is_round_then_a_saturating_cast() {
        let mut values = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            0.0,
            -0.0,
        ];
        // every 1/256 over [-300, 300], and the floats on both sides of every half
        for k in -300 * 256..=300 * 256 {
            values.push(k as f32 / 256.0);
        }
        for k in (-600..=600).filter(|&k| k != 0) {
            let half = k as f32 / 2.0;
            let (up, down) = (
                f32::from_bits(half.to_bits() + 1),
                f32::from_bits(half.to_bits() - 1),
            );
            values.extend([half, up, down]);
        }
        for v in values {
            assert_eq!(round_to_i8(v), v.round() as i8, "{v:e}");
        }
    }

    #[test]
    fn blocks_have_ggml_sizes() {
        assert_eq!(
            [
                BlockQ8_0::BYTES,
                BlockQ8_1::BYTES,
                BlockQ4_0::BYTES,
                BlockQ4_1::BYTES
            ],
            [34, 36, 18, 20]
        );
        assert_eq!(std::mem::align_of::<BlockQ4_1>(), 1);
    }

    fn ramp(scale: f32, shift: f32) -> [f32; QK] {
        std::array::from_fn(|j| (j as f32 - 15.5) * scale + shift)
    }

    /// Round trips stay within half a step: |x − deq(q(x))| ≤ Δ/2 (plus the f16 rounding
    /// of the scale, which moves every value by at most |q| · |d − f16(d)|).
    #[test]
    fn errors_stay_within_half_a_step() {
        for x in [ramp(0.37, 0.0), ramp(1.3, 4.0), ramp(-2.0e-3, 1e-3)] {
            let mut y = [0.0; QK];
            let b = BlockQ8_0::quantize(&x);
            b.dequantize(&mut y);
            let d = b.d.get();
            let bound = d / 2.0 + 127.0 * (d - amax(&x) / 127.0).abs() + 1e-7;
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= bound, "Q8_0: {a} vs {b}, bound {bound}");
            }
            let b = BlockQ4_1::quantize(&x);
            b.dequantize(&mut y);
            let (d, m) = (b.d.get(), b.m.get());
            let min = x.iter().cloned().fold(f32::MAX, f32::min);
            let max = x.iter().cloned().fold(f32::MIN, f32::max);
            let bound = d / 2.0 + 15.0 * (d - (max - min) / 15.0).abs() + (m - min).abs() + 1e-6;
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() <= bound, "Q4_1: {a} vs {b}, bound {bound}");
            }
        }
    }

    /// Worked by hand: the ramp −16..=15 has max |x| 16 at x_0 = −16, so Q4_0's
    /// d = −16 / −8 = 2 and q_j = trunc(x_j/2 + 8.5): x_0 → 0, x_31 = 15 → 16 → clamped 15.
    #[test]
    fn q4_0_by_hand() {
        let x: [f32; QK] = std::array::from_fn(|j| j as f32 - 16.0);
        let b = BlockQ4_0::quantize(&x);
        assert_eq!(b.d.get(), 2.0);
        assert_eq!(b.qs[0] & 0x0f, 0); // x_0 = -16
        assert_eq!(b.qs[15] >> 4, 15); // x_31 = 15: 15/2 + 8.5 = 16, clamped
        assert_eq!(b.qs[1] & 0x0f, 1); // x_1 = -15: -7.5 + 8.5 = 1
    }

    #[test]
    fn zeros_quantize_to_zeros() {
        let x = [0.0; QK];
        assert_eq!(BlockQ8_0::quantize(&x).qs, [0; QK]);
        let mut y = [1.0; QK];
        BlockQ4_1::quantize(&x).dequantize(&mut y);
        assert_eq!(y, [0.0; QK]);
    }
}
