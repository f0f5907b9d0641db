//! Integer dot products: one weight row of blocks times one activation row quantized on
//! the fly to Q8_0 (or Q8_1), as ggml computes `ggml_vec_dot_q8_0_q8_0` and its siblings.
//!
//! Within a block both sides are small integers, so the 32 products sum exactly in an
//! `i32`; only then do the two f16 scales come in:
//!
//! - Q8_0 · Q8_0: Σ_b d_w d_x Σ_j q_w,j q_x,j
//! - Q4_0 · Q8_0: Σ_b d_w d_x Σ_j (q_w,j − 8) q_x,j
//! - Q4_1 · Q8_1: Σ_j (d_w q_w,j + m)(d_x q_x,j) = d_w d_x Σ_j q_w,j q_x,j + m s_x, with
//!   s_x = d_x Σ_j q_x,j stored in the Q8_1 block, which is why ggml pairs Q4_1 with Q8_1.
//!
//! Both kernels sum in the same order, so their results are bit-identical: each block's 32
//! products are summed as 8 lanes of 4 consecutive products (what AVX2's
//! `_mm256_madd_epi16` leaves), each lane is converted to f32 and scaled by `d_w d_x`
//! into one of 8 f32 accumulators kept across the blocks (no horizontal sum per block),
//! and the 8 accumulators are summed at the end as ggml's `hsum_float_8` does. The
//! scaling is a multiply then an add (not a fused multiply-add) so that plain Rust can
//! match it exactly.

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};

/// Dot products of a weight row of blocks with an activation row of blocks.
///
/// # Panics
/// If the two rows do not have the same number of blocks.
pub trait QDot: Copy + Send + Sync {
    /// Σ d_w d_x Σ q_w q_x over the blocks.
    fn q8_0_q8_0(self, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32;
    /// Σ d_w d_x Σ (q_w − 8) q_x over the blocks.
    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32;
    /// Σ (d_w d_x Σ q_w q_x + m_w s_x) over the blocks.
    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32;

    /// [`QDot::q8_0_q8_0`] of four weight rows with one activation row, the same bits as
    /// four calls. A kernel may interleave the rows: four independent sums keep the core
    /// busy where one waits on each add, and each activation block is loaded once.
    fn q8_0_q8_0_x4(self, w: [&[BlockQ8_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        w.map(|w| self.q8_0_q8_0(w, x))
    }

    /// [`QDot::q4_0_q8_0`] of four weight rows, as [`QDot::q8_0_q8_0_x4`].
    fn q4_0_q8_0_x4(self, w: [&[BlockQ4_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        w.map(|w| self.q4_0_q8_0(w, x))
    }

    /// [`QDot::q4_1_q8_1`] of four weight rows, as [`QDot::q8_0_q8_0_x4`].
    fn q4_1_q8_1_x4(self, w: [&[BlockQ4_1]; 4], x: &[BlockQ8_1]) -> [f32; 4] {
        w.map(|w| self.q4_1_q8_1(w, x))
    }
}

/// ggml's `hsum_float_8`: (a0 + a4) + (a2 + a6) + ((a1 + a5) + (a3 + a7)).
#[inline(always)]
fn hsum8(a: [f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The 8 lane sums of a block: lane k = Σ_{j = 4k}^{4k+3} a_j b_j, exact.
#[inline(always)]
fn lanes(a: &[i32; QK], b: &[i8; QK]) -> [i32; 8] {
    std::array::from_fn(|k| (4 * k..4 * k + 4).map(|j| a[j] * b[j] as i32).sum())
}

/// acc_k ← acc_k + d · lane_k.
#[inline(always)]
fn scale_into(acc: &mut [f32; 8], d: f32, lanes: [i32; 8]) {
    for (a, l) in acc.iter_mut().zip(lanes) {
        *a += d * l as f32;
    }
}

/// A 4-bit block's 32 values: element j < 16 the low nibble of `qs[j]`, j + 16 its high one.
#[inline(always)]
fn nibbles(qs: &[u8; QK / 2], offset: i32) -> [i32; QK] {
    std::array::from_fn(|j| {
        let b = qs[j % (QK / 2)];
        (if j < QK / 2 { b & 0x0f } else { b >> 4 }) as i32 - offset
    })
}

fn same_len(w: usize, x: usize) {
    assert_eq!(w, x, "a dot product of rows of {w} and {x} blocks");
}

/// Plain Rust, in the order described in the module documentation.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

// ANCHOR: portable
impl QDot for Portable {
    fn q8_0_q8_0(self, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        same_len(w.len(), x.len());
        let mut acc = [0.0f32; 8];
        for (w, x) in w.iter().zip(x) {
            let qw = w.qs.map(|q| q as i32);
            scale_into(&mut acc, w.d.get() * x.d.get(), lanes(&qw, &x.qs));
        }
        hsum8(acc)
    }

    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        same_len(w.len(), x.len());
        let mut acc = [0.0f32; 8];
        for (w, x) in w.iter().zip(x) {
            scale_into(
                &mut acc,
                w.d.get() * x.d.get(),
                lanes(&nibbles(&w.qs, 8), &x.qs),
            );
        }
        hsum8(acc)
    }

    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        same_len(w.len(), x.len());
        let mut acc = [0.0f32; 8];
        let mut minimums = 0.0f32;
        for (w, x) in w.iter().zip(x) {
            minimums += w.m.get() * x.s.get();
            scale_into(
                &mut acc,
                w.d.get() * x.d.get(),
                lanes(&nibbles(&w.qs, 0), &x.qs),
            );
        }
        hsum8(acc) + minimums
    }
}
// ANCHOR_END: portable

/// AVX2 kernels (with F16C for the scales). Only constructed by [`Avx2::detect`], so only
/// used where the CPU has both.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The kernels, if this CPU has AVX2 and F16C.
    pub fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c")).then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl QDot for Avx2 {
    fn q8_0_q8_0(self, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        same_len(w.len(), x.len());
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and F16C; the rows have the
        // same length.
        unsafe { avx2::q8_0_q8_0(w, x) }
    }

    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        same_len(w.len(), x.len());
        // SAFETY: as above.
        unsafe { avx2::q4_0_q8_0(w, x) }
    }

    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        same_len(w.len(), x.len());
        // SAFETY: as above.
        unsafe { avx2::q4_1_q8_1(w, x) }
    }

    fn q8_0_q8_0_x4(self, w: [&[BlockQ8_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: as above, for each of the four rows.
        unsafe { avx2::q8_0_q8_0_x4(w, x) }
    }

    fn q4_0_q8_0_x4(self, w: [&[BlockQ4_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: as above.
        unsafe { avx2::q4_0_q8_0_x4(w, x) }
    }

    fn q4_1_q8_1_x4(self, w: [&[BlockQ4_1]; 4], x: &[BlockQ8_1]) -> [f32; 4] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: as above.
        unsafe { avx2::q4_1_q8_1_x4(w, x) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, Half};
    use std::arch::x86_64::*;

    // Safety of every function here: the CPU has AVX2 and F16C, and `w` and `x` have the
    // same length.

    /// Four f16 scales, exactly, with F16C, in lanes 0..4 (the rest 0). The four are put
    /// together in a general-purpose register and moved in whole (`vmovq` clears the rest
    /// of the vector): inserting them one by one, the compiler merges into whatever
    /// register it likes (once an accumulator, which chained every row's sum onto that
    /// one's adds).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn halves(h: [Half; 4]) -> __m128 {
        let bits = h
            .iter()
            .rev()
            .fold(0u64, |acc, h| (acc << 16) | u16::from_le_bytes(h.0) as u64);
        _mm_cvtph_ps(_mm_cvtsi64_si128(bits as i64))
    }

    /// `d_w d_x` of one block, in every lane (the f32 product, rounded once, as the
    /// portable kernel's).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn scale(dw: Half, dx: Half) -> __m256 {
        let v = halves([dw, dx, dw, dx]);
        _mm256_broadcastss_ps(_mm_mul_ps(v, _mm_movehdup_ps(v)))
    }

    /// The products of four weight scales with one activation scale: lane i is `w_i x`.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn scales4(w: [Half; 4], x: Half) -> __m128 {
        _mm_mul_ps(halves(w), halves([x; 4]))
    }

    /// Lane `i` (of 4) of `v`, in every lane.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn lane(v: __m128, i: i32) -> __m256 {
        _mm256_permutevar8x32_ps(_mm256_castps128_ps256(v), _mm256_set1_epi32(i))
    }

    /// ggml's `hsum_float_8`, the same order as [`super::hsum8`].
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn hsum8(acc: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// 8 lanes of Σ of 4 consecutive products a_j b_j of signed bytes. `maddubs` wants an
    /// unsigned left side, so it gets |a| and b takes a's sign (ggml's trick). b, an
    /// activation from our quantizer, lies in −127..=127, so negating it cannot overflow;
    /// a = −128 (possible in a file's weight) gives |a| = 128 as an unsigned byte, still
    /// right. Pairs sum to at most 2 · 128 · 127 < 2^15, so the i16 step cannot saturate.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn lanes_i8(a: __m256i, b: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// The same with an unsigned left side (0..=15): pairs reach 2 · 15 · 127.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn lanes_u8(a: __m256i, b: __m256i) -> __m256 {
        let pairs = _mm256_maddubs_epi16(a, b);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    /// 16 bytes of nibbles as 32 bytes: the low nibbles (elements 0..16), then the high.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        let b = _mm_loadu_si128(qs.as_ptr().cast());
        let both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q8_0_q8_0(w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (w, x) in w.iter().zip(x) {
            let d = scale(w.d, x.d);
            let qw = _mm256_loadu_si256(w.qs.as_ptr().cast());
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, lanes_i8(qw, qx)));
        }
        hsum8(acc)
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_0_q8_0(w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let eight = _mm256_set1_epi8(8);
        for (w, x) in w.iter().zip(x) {
            let d = scale(w.d, x.d);
            let qw = _mm256_sub_epi8(nibbles(&w.qs), eight);
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, lanes_i8(qw, qx)));
        }
        hsum8(acc)
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_1_q8_1(w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut minimums = 0.0f32;
        for (w, x) in w.iter().zip(x) {
            minimums += _mm256_cvtss_f32(scale(w.m, x.s)); // the f32 product m_w s_x
            let d = scale(w.d, x.d);
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = _mm256_add_ps(acc, _mm256_mul_ps(d, lanes_u8(nibbles(&w.qs), qx)));
        }
        hsum8(acc) + minimums
    }

    // The four-row kernels: each row's sum takes the same steps in the same order as the
    // one-row kernel above (so the same bits); only the rows are interleaved, written out
    // (`four!`) so that the four accumulators stay in registers. Safety, in addition: all
    // four rows have the length of `x`.

    /// Runs `$body` for rows 0..4 with `$i` the row's index (a constant).
    macro_rules! four {
        ($i:ident => $body:expr) => {
            [
                {
                    const $i: i32 = 0;
                    $body
                },
                {
                    const $i: i32 = 1;
                    $body
                },
                {
                    const $i: i32 = 2;
                    $body
                },
                {
                    const $i: i32 = 3;
                    $body
                },
            ]
        };
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q8_0_q8_0_x4(w: [&[BlockQ8_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (b, x) in x.iter().enumerate() {
            let w = w.map(|w| w.get_unchecked(b));
            let d = scales4(w.map(|w| w.d), x.d);
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = four!(I => {
                let qw = _mm256_loadu_si256(w[I as usize].qs.as_ptr().cast());
                _mm256_add_ps(acc[I as usize], _mm256_mul_ps(lane(d, I), lanes_i8(qw, qx)))
            });
        }
        acc.map(|a| hsum8(a))
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_0_q8_0_x4(w: [&[BlockQ4_0]; 4], x: &[BlockQ8_0]) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let eight = _mm256_set1_epi8(8);
        for (b, x) in x.iter().enumerate() {
            let w = w.map(|w| w.get_unchecked(b));
            let d = scales4(w.map(|w| w.d), x.d);
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = four!(I => {
                let qw = _mm256_sub_epi8(nibbles(&w[I as usize].qs), eight);
                _mm256_add_ps(acc[I as usize], _mm256_mul_ps(lane(d, I), lanes_i8(qw, qx)))
            });
        }
        acc.map(|a| hsum8(a))
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_1_q8_1_x4(w: [&[BlockQ4_1]; 4], x: &[BlockQ8_1]) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        // lane i: row i's Σ m_w s_x, each a multiply then an add, as the one-row kernel's
        let mut minimums = _mm_setzero_ps();
        for (b, x) in x.iter().enumerate() {
            let w = w.map(|w| w.get_unchecked(b));
            let d = scales4(w.map(|w| w.d), x.d);
            minimums = _mm_add_ps(minimums, scales4(w.map(|w| w.m), x.s));
            let qx = _mm256_loadu_si256(x.qs.as_ptr().cast());
            acc = four!(I => {
                let p = lanes_u8(nibbles(&w[I as usize].qs), qx);
                _mm256_add_ps(acc[I as usize], _mm256_mul_ps(lane(d, I), p))
            });
        }
        let mut m = [0.0f32; 4];
        _mm_storeu_ps(m.as_mut_ptr(), minimums);
        let mut out = [0.0f32; 4];
        for ((o, a), m) in out.iter_mut().zip(acc).zip(m) {
            *o = hsum8(a) + m;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocks::{dequantize_row, quantize_row, Block};
    use super::*;

    fn row(n: usize, seed: f32) -> Vec<f32> {
        // uneven magnitudes across blocks, and an outlier
        (0..n)
            .map(|i| {
                let t = i as f32;
                (t * 0.37 + seed).sin() * (1.0 + (t * 0.011 + seed).cos().abs() * 3.0)
                    + if i == 40 { 9.0 } else { 0.0 }
            })
            .collect()
    }

    fn deq<B: Block>(b: &[B]) -> Vec<f32> {
        let mut out = vec![0.0; b.len() * QK];
        dequantize_row(b, &mut out);
        out
    }

    /// Each kernel against f64 sums: first of the dequantized weight times the
    /// dequantized activation (what the integers compute, up to f32 rounding), then of
    /// the dequantized weight times the activation itself (what a matmul with the
    /// dequantized weight would give).
    ///
    /// Bounds. (1) The i32 block sums are exact; each block's term d_w d_x Σ q q is
    /// rounded a few times in f32 (the scale product, the lane conversion is exact, the
    /// multiply, ~n/8 adds per lane and 3 in the final sum), so the error is below
    /// (n/8 + 6) · 2^-24 · Σ|ŵ x̂| (we allow 1e-5 relative for n ≤ 1024). For Q4_1 the
    /// minimum's term uses s_x = f16(d Σ q) where the dequantized product has
    /// f16(d) Σ q: each rounding is relative 2^-11, so add |m| · d · |Σ q| · 2^-10 per block.
    /// (2) The activation's rounding: |x − x̂| ≤ d_x/2 + 127 d_x 2^-11 per element (half
    /// a step, plus the f16 rounding of its scale), so |Σ ŵ (x − x̂)| ≤ Σ_b 0.5625 d_x,b Σ_j |ŵ_j|.
    fn check(k: impl QDot) {
        for n_blocks in [1, 2, 7, 18, 48] {
            let n = n_blocks * QK;
            let (w, x) = (row(n, 0.3), row(n, 1.7));
            let x8: Vec<BlockQ8_0> = quantize_row(&x);
            let x81: Vec<BlockQ8_1> = quantize_row(&x);
            let xq = deq(&x8);
            let w80: Vec<BlockQ8_0> = quantize_row(&w);
            let w40: Vec<BlockQ4_0> = quantize_row(&w);
            let w41: Vec<BlockQ4_1> = quantize_row(&w);
            let cases: [(&str, f32, Vec<f32>, f64); 3] = [
                ("q8_0", k.q8_0_q8_0(&w80, &x8), deq(&w80), 0.0),
                ("q4_0", k.q4_0_q8_0(&w40, &x8), deq(&w40), 0.0),
                ("q4_1", k.q4_1_q8_1(&w41, &x81), deq(&w41), {
                    w41.iter()
                        .zip(&x81)
                        .map(|(b, a)| {
                            let sum: i32 = a.qs.iter().map(|&q| q as i32).sum();
                            (b.m.get() as f64).abs() * a.d.get() as f64 * sum.abs() as f64 / 1024.0
                        })
                        .sum()
                }),
            ];
            for (name, got, wq, s_slack) in cases {
                let exact: f64 = wq.iter().zip(&xq).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mass: f64 = wq
                    .iter()
                    .zip(&xq)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let bound = 1e-5 * mass + s_slack;
                assert!(
                    (got as f64 - exact).abs() <= bound,
                    "{name}, {n}: {got} vs {exact} (bound {bound})"
                );
                let f32_dot: f64 = wq.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let act: f64 = x8
                    .iter()
                    .zip(wq.chunks_exact(QK))
                    .map(|(b, w)| {
                        0.5625 * b.d.get() as f64 * w.iter().map(|v| v.abs() as f64).sum::<f64>()
                    })
                    .sum();
                assert!(
                    (got as f64 - f32_dot).abs() <= bound + act,
                    "{name}, {n}: {got} vs f32 {f32_dot} (bound {})",
                    bound + act
                );
            }
        }
    }

    #[test]
    fn portable_kernels_match_f64_dot_products() {
        check(Portable);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_match_f64_dot_products() {
        if let Some(k) = Avx2::detect() {
            check(k);
        }
    }

    /// Same order of operations, so the same bits, on rows with extreme bytes too
    /// (a weight of −128, nibbles 0 and 15, activations ±127).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_and_portable_are_bit_identical() {
        let Some(k) = Avx2::detect() else {
            return;
        };
        for n_blocks in [1, 3, 18, 48] {
            let n = n_blocks * QK;
            let (w, x) = (row(n, 0.9), row(n, 2.1));
            let (x8, x81) = (quantize_row::<BlockQ8_0>(&x), quantize_row::<BlockQ8_1>(&x));
            let mut w80 = quantize_row::<BlockQ8_0>(&w);
            w80[0].qs[3] = -128;
            let mut w40 = quantize_row::<BlockQ4_0>(&w);
            w40[0].qs[0] = 0xf0;
            let w41 = quantize_row::<BlockQ4_1>(&w);
            let pairs = [
                (k.q8_0_q8_0(&w80, &x8), Portable.q8_0_q8_0(&w80, &x8)),
                (k.q4_0_q8_0(&w40, &x8), Portable.q4_0_q8_0(&w40, &x8)),
                (k.q4_1_q8_1(&w41, &x81), Portable.q4_1_q8_1(&w41, &x81)),
            ];
            for (a, b) in pairs {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}, {n}");
            }
            // four rows at once: each the one-row kernel's bits (the portable one's)
            let rows: Vec<Vec<f32>> = (0..4).map(|i| row(n, 0.4 + i as f32)).collect();
            let mut r80: Vec<Vec<BlockQ8_0>> = rows.iter().map(|r| quantize_row(r)).collect();
            r80[2][0].qs[0] = -128;
            let r40: Vec<Vec<BlockQ4_0>> = rows.iter().map(|r| quantize_row(r)).collect();
            let r41: Vec<Vec<BlockQ4_1>> = rows.iter().map(|r| quantize_row(r)).collect();
            let got = [
                k.q8_0_q8_0_x4(std::array::from_fn(|i| r80[i].as_slice()), &x8),
                k.q4_0_q8_0_x4(std::array::from_fn(|i| r40[i].as_slice()), &x8),
                k.q4_1_q8_1_x4(std::array::from_fn(|i| r41[i].as_slice()), &x81),
            ];
            let want: [[f32; 4]; 3] = [
                std::array::from_fn(|i| Portable.q8_0_q8_0(&r80[i], &x8)),
                std::array::from_fn(|i| Portable.q4_0_q8_0(&r40[i], &x8)),
                std::array::from_fn(|i| Portable.q4_1_q8_1(&r41[i], &x81)),
            ];
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    g.map(f32::to_bits),
                    w.map(f32::to_bits),
                    "{g:?} vs {w:?}, {n}"
                );
            }
            assert_eq!(
                Portable.q8_0_q8_0_x4(std::array::from_fn(|i| r80[i].as_slice()), &x8),
                want[0]
            );
        }
    }
}
