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
//! Every kernel computes a row's sum in the same order, so the portable and the AVX2 ones
//! agree bit for bit: for each block in turn, the exact integer sum S_b (at most
//! 32 · 128 · 127 in magnitude, below 2^24, so exact in an f32 too), then
//! `y += (d_w · d_x) · S_b` in f32, a multiply, a multiply and an add, never fused
//! (plus `m_w · s_x` added to the block's term for Q4_1). ggml keeps 8 partial sums per row
//! and adds them at the end; one sum per row, in block order, is what the formula says and
//! what lets the AVX2 kernel below work on 8 rows at once.

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK};

/// Dot products of weight rows of blocks with an activation row of blocks.
///
/// The `_x8` methods take 8 weight rows and one activation row: a vector kernel then holds
/// the 8 rows' sums in the lanes of one register, sums each block's integers for all 8 rows
/// together and scales them with one multiply. `ahead` is the bytes the caller reads next
/// (the following rows): the kernel asks the CPU to fetch them into cache a little at a
/// time, one share per block, so that they arrive while it computes. It changes no result.
///
/// # Panics
/// If a weight row and the activation row do not have the same number of blocks.
pub trait QDot: Copy + Send + Sync {
    /// Σ d_w d_x Σ q_w q_x over the blocks.
    fn q8_0_q8_0(self, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32;
    /// Σ d_w d_x Σ (q_w − 8) q_x over the blocks.
    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32;
    /// Σ (d_w d_x Σ q_w q_x + m_w s_x) over the blocks.
    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32;

    /// [`QDot::q8_0_q8_0`] of 8 weight rows with one activation row, the same bits as 8
    /// calls.
    fn q8_0_q8_0_x8(self, w: [&[BlockQ8_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8];
    /// [`QDot::q4_0_q8_0`] of 8 weight rows, as [`QDot::q8_0_q8_0_x8`].
    fn q4_0_q8_0_x8(self, w: [&[BlockQ4_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8];
    /// [`QDot::q4_1_q8_1`] of 8 weight rows, as [`QDot::q8_0_q8_0_x8`].
    fn q4_1_q8_1_x8(self, w: [&[BlockQ4_1]; 8], x: &[BlockQ8_1], ahead: &[u8]) -> [f32; 8];
}

/// Σ_j a_j b_j over a block, exactly.
#[inline(always)]
fn block_sum(a: impl Iterator<Item = i32>, b: &[i8; QK]) -> i32 {
    a.zip(b).map(|(a, &b)| a * b as i32).sum()
}

/// A 4-bit block's 32 values: element j < 16 the low nibble of `qs[j]`, j + 16 its high one.
#[inline(always)]
fn nibbles(qs: &[u8; QK / 2]) -> impl Iterator<Item = i32> + '_ {
    let low = qs.iter().map(|b| (b & 0x0f) as i32);
    low.chain(qs.iter().map(|b| (b >> 4) as i32))
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
        let mut y = 0.0f32;
        for (w, x) in w.iter().zip(x) {
            let s = block_sum(w.qs.iter().map(|&q| q as i32), &x.qs);
            y += w.d.get() * x.d.get() * s as f32;
        }
        y
    }

    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        same_len(w.len(), x.len());
        let mut y = 0.0f32;
        for (w, x) in w.iter().zip(x) {
            let s = block_sum(nibbles(&w.qs).map(|q| q - 8), &x.qs);
            y += w.d.get() * x.d.get() * s as f32;
        }
        y
    }

    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        same_len(w.len(), x.len());
        let mut y = 0.0f32;
        for (w, x) in w.iter().zip(x) {
            let s = block_sum(nibbles(&w.qs), &x.qs);
            y += w.d.get() * x.d.get() * s as f32 + w.m.get() * x.s.get();
        }
        y
    }
    // ANCHOR_END: portable

    fn q8_0_q8_0_x8(self, w: [&[BlockQ8_0]; 8], x: &[BlockQ8_0], _: &[u8]) -> [f32; 8] {
        w.map(|w| self.q8_0_q8_0(w, x))
    }

    fn q4_0_q8_0_x8(self, w: [&[BlockQ4_0]; 8], x: &[BlockQ8_0], _: &[u8]) -> [f32; 8] {
        w.map(|w| self.q4_0_q8_0(w, x))
    }

    fn q4_1_q8_1_x8(self, w: [&[BlockQ4_1]; 8], x: &[BlockQ8_1], _: &[u8]) -> [f32; 8] {
        w.map(|w| self.q4_1_q8_1(w, x))
    }
}

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

/// One row through an 8-row kernel: the row 8 times, lane 0 kept. The matrix products
/// call the 8-row kernels only; this serves the one-row API and its tests.
#[cfg(target_arch = "x86_64")]
impl QDot for Avx2 {
    fn q8_0_q8_0(self, w: &[BlockQ8_0], x: &[BlockQ8_0]) -> f32 {
        self.q8_0_q8_0_x8([w; 8], x, &[])[0]
    }

    fn q4_0_q8_0(self, w: &[BlockQ4_0], x: &[BlockQ8_0]) -> f32 {
        self.q4_0_q8_0_x8([w; 8], x, &[])[0]
    }

    fn q4_1_q8_1(self, w: &[BlockQ4_1], x: &[BlockQ8_1]) -> f32 {
        self.q4_1_q8_1_x8([w; 8], x, &[])[0]
    }

    fn q8_0_q8_0_x8(self, w: [&[BlockQ8_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and F16C; every row has the
        // length of `x`.
        unsafe { avx2::q8_0_q8_0_x8(w, x, ahead) }
    }

    fn q4_0_q8_0_x8(self, w: [&[BlockQ4_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: as above.
        unsafe { avx2::q4_0_q8_0_x8(w, x, ahead) }
    }

    fn q4_1_q8_1_x8(self, w: [&[BlockQ4_1]; 8], x: &[BlockQ8_1], ahead: &[u8]) -> [f32; 8] {
        w.iter().for_each(|w| same_len(w.len(), x.len()));
        // SAFETY: as above.
        unsafe { avx2::q4_1_q8_1_x8(w, x, ahead) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, Half};
    use std::arch::x86_64::*;

    // Safety of every function here: the CPU has AVX2 and F16C, and every weight row has
    // the length of `x`.

    /// The 8 rows' f16 values (scales or minimums) of block `b`, exactly, as 8 f32 lanes.
    /// Assembled in general-purpose registers and moved over in two 8-byte pieces: the
    /// compiler makes 8 vector lane inserts (`vpinsrw`) of an array of 8 `Half`s, which
    /// took about a third of the Q8_0 kernel's time (the book's Speed section).
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn halves8(h: impl Fn(usize) -> Half) -> __m256 {
        let bits = |r: usize| u16::from_le_bytes(h(r).0) as i64;
        let low = bits(0) | bits(1) << 16 | bits(2) << 32 | bits(3) << 48;
        let high = bits(4) | bits(5) << 16 | bits(6) << 32 | bits(7) << 48;
        _mm256_cvtph_ps(_mm_set_epi64x(high, low))
    }

    /// The 8 rows' (d, m) pairs of block `b` (Q4_1's first 4 bytes), exactly, as 8 lanes
    /// of d and 8 of m: one 4-byte load per row instead of two 2-byte ones (see
    /// [`halves8`]), then the pairs parted with a byte shuffle.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn pairs8(h: impl Fn(usize) -> [u8; 4]) -> (__m256, __m256) {
        let bits = |r: usize| u32::from_le_bytes(h(r)) as i64;
        // 16-bit lanes d0 m0 d1 m1 d2 m2 d3 m3, and the same for rows 4..8
        let low = _mm_set_epi64x(bits(2) | bits(3) << 32, bits(0) | bits(1) << 32);
        let high = _mm_set_epi64x(bits(6) | bits(7) << 32, bits(4) | bits(5) << 32);
        // to d0 d1 d2 d3 m0 m1 m2 m3
        let part = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
        let (low, high) = (_mm_shuffle_epi8(low, part), _mm_shuffle_epi8(high, part));
        (
            _mm256_cvtph_ps(_mm_unpacklo_epi64(low, high)),
            _mm256_cvtph_ps(_mm_unpackhi_epi64(low, high)),
        )
    }

    /// One f16, exactly, in every lane.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn half_all(h: Half) -> __m256 {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes(h.0) as i32));
        _mm256_broadcastss_ps(v)
    }

    /// 8 lanes of Σ of 4 consecutive products a_j b_j of signed bytes. `maddubs` wants an
    /// unsigned left side, so it gets |a| and b takes a's sign (ggml's trick). b, an
    /// activation from our quantizer, lies in −127..=127, so negating it cannot overflow;
    /// a = −128 (possible in a file's weight) gives |a| = 128 as an unsigned byte, still
    /// right. Pairs sum to at most 2 · 128 · 127 < 2^15, so the i16 step cannot saturate.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn quads_i8(a: __m256i, b: __m256i) -> __m256i {
        let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
        _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
    }

    /// The same with an unsigned left side (0..=15): pairs reach 2 · 15 · 127.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn quads_u8(a: __m256i, b: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
    }

    /// 16 bytes of nibbles as 32 bytes: the low nibbles (elements 0..16), then the high.
    /// The 16 bytes are loaded into both halves at once and only the high half shifted,
    /// one vector operation fewer than shifting a copy and inserting it.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
        let both = _mm256_broadcastsi128_si256(_mm_loadu_si128(qs.as_ptr().cast()));
        let both = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
    }

    /// Row r's 8 partial sums in `s[r]`, out: lane r = row r's whole sum (exact: integers).
    /// Three rounds of pairwise adds within 128-bit halves, then the halves added.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn row_sums(s: [__m256i; 8]) -> __m256 {
        _mm256_cvtepi32_ps(row_sums_i32(s))
    }

    /// [`row_sums`] as integers.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn row_sums_i32(s: [__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(s[0], s[1]);
        let h23 = _mm256_hadd_epi32(s[2], s[3]);
        let h45 = _mm256_hadd_epi32(s[4], s[5]);
        let h67 = _mm256_hadd_epi32(s[6], s[7]);
        // lanes 0..4: rows 0..4's sums over their low halves, lanes 4..8 over their high
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        let low = _mm256_permute2x128_si256(h0123, h4567, 0x20);
        let high = _mm256_permute2x128_si256(h0123, h4567, 0x31);
        _mm256_add_epi32(low, high)
    }

    /// Asks for share `b` of `blocks` of `ahead` to be fetched into the L1 cache.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn fetch_share(ahead: &[u8], b: usize, blocks: usize) {
        let share = ahead.len().div_ceil(blocks);
        let end = ((b + 1) * share).min(ahead.len());
        let mut i = b * share;
        while i < end {
            _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(i).cast());
            i += 64;
        }
    }

    /// The 8 lanes as an array.
    #[target_feature(enable = "avx2,f16c")]
    #[inline]
    unsafe fn lanes(v: __m256) -> [f32; 8] {
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), v);
        out
    }

    /// The loop all three share: for block b, y += (d_w d_x) · S_b (+ m_w s_x). `$block`
    /// gives, from `$qx` (the activation block's 32 bytes), the 8 rows' d_w as f32 lanes,
    /// their S_b as f32 lanes, and the minimums' term m_w s_x or `None`.
    macro_rules! eight_rows {
        ($w:ident, $x:ident, $ahead:ident, |$b:ident, $xb:ident, $qx:ident| $block:expr) => {{
            let mut y = _mm256_setzero_ps();
            let blocks = $x.len();
            for ($b, $xb) in $x.iter().enumerate() {
                fetch_share($ahead, $b, blocks);
                let $qx = _mm256_loadu_si256($xb.qs.as_ptr().cast());
                let (d_w, sums, min): (__m256, __m256, Option<__m256>) = $block;
                let term = _mm256_mul_ps(_mm256_mul_ps(d_w, half_all($xb.d)), sums);
                let term = match min {
                    Some(m) => _mm256_add_ps(term, m),
                    None => term,
                };
                y = _mm256_add_ps(y, term);
            }
            lanes(y)
        }};
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q8_0_q8_0_x8(w: [&[BlockQ8_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8] {
        eight_rows!(w, x, ahead, |b, _xb, qx| {
            let sums = row_sums(std::array::from_fn(|r| {
                quads_i8(
                    _mm256_loadu_si256(w[r].get_unchecked(b).qs.as_ptr().cast()),
                    qx,
                )
            }));
            (halves8(|r| w[r].get_unchecked(b).d), sums, None)
        })
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_0_q8_0_x8(w: [&[BlockQ4_0]; 8], x: &[BlockQ8_0], ahead: &[u8]) -> [f32; 8] {
        eight_rows!(w, x, ahead, |b, _xb, qx| {
            // Σ (q − 8) x = Σ q x − 8 Σ x: the nibbles stay unsigned (one `maddubs` each,
            // no signs), and Σ x, one per activation block, serves all 8 rows
            let x_sum = quads_i8(_mm256_set1_epi8(1), qx);
            let x_sum = _mm256_hadd_epi32(x_sum, x_sum);
            let x_sum = _mm256_hadd_epi32(x_sum, x_sum);
            let x_sum = _mm256_add_epi32(x_sum, _mm256_permute2x128_si256(x_sum, x_sum, 0x01));
            let qx_sums = row_sums_i32(std::array::from_fn(|r| {
                quads_u8(nibbles(&w[r].get_unchecked(b).qs), qx)
            }));
            let sums = _mm256_cvtepi32_ps(_mm256_sub_epi32(qx_sums, _mm256_slli_epi32(x_sum, 3)));
            (halves8(|r| w[r].get_unchecked(b).d), sums, None)
        })
    }

    #[target_feature(enable = "avx2,f16c")]
    pub unsafe fn q4_1_q8_1_x8(w: [&[BlockQ4_1]; 8], x: &[BlockQ8_1], ahead: &[u8]) -> [f32; 8] {
        eight_rows!(w, x, ahead, |b, xb, qx| {
            let sums = row_sums(std::array::from_fn(|r| {
                quads_u8(nibbles(&w[r].get_unchecked(b).qs), qx)
            }));
            let (d_w, m_w) = pairs8(|r| {
                let block = w[r].get_unchecked(b);
                [block.d.0[0], block.d.0[1], block.m.0[0], block.m.0[1]]
            });
            (d_w, sums, Some(_mm256_mul_ps(m_w, half_all(xb.s))))
        })
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
    /// Bounds. (1) The i32 block sums are exact, and exact as f32; each block's term
    /// d_w d_x S_b is rounded twice in f32 (the scale product, the multiply) and the sum
    /// over B = n/32 blocks adds B − 1 roundings, so the error is below
    /// (B + 2) · 2^-24 · Σ|ŵ x̂| (we allow 1e-5 relative for n ≤ 1024). For Q4_1 the
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
            // 8 rows at once (and a group of 3, padded as `QMatrix` pads it): each the
            // portable one-row kernel's bits
            let rows: Vec<Vec<f32>> = (0..8).map(|i| row(n, 0.4 + i as f32)).collect();
            let mut r80: Vec<Vec<BlockQ8_0>> = rows.iter().map(|r| quantize_row(r)).collect();
            r80[2][0].qs[0] = -128;
            let r40: Vec<Vec<BlockQ4_0>> = rows.iter().map(|r| quantize_row(r)).collect();
            let r41: Vec<Vec<BlockQ4_1>> = rows.iter().map(|r| quantize_row(r)).collect();
            let ahead = vec![7u8; 1000];
            for pick in [
                std::array::from_fn(|i| i),
                std::array::from_fn(|i| i.min(2)),
            ] {
                let got = [
                    k.q8_0_q8_0_x8(pick.map(|i| r80[i].as_slice()), &x8, &ahead),
                    k.q4_0_q8_0_x8(pick.map(|i| r40[i].as_slice()), &x8, &ahead),
                    k.q4_1_q8_1_x8(pick.map(|i| r41[i].as_slice()), &x81, &[]),
                ];
                let want: [[f32; 8]; 3] = [
                    pick.map(|i| Portable.q8_0_q8_0(&r80[i], &x8)),
                    pick.map(|i| Portable.q4_0_q8_0(&r40[i], &x8)),
                    pick.map(|i| Portable.q4_1_q8_1(&r41[i], &x81)),
                ];
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(
                        g.map(f32::to_bits),
                        w.map(f32::to_bits),
                        "{g:?} vs {w:?}, {n}"
                    );
                }
                assert_eq!(
                    Portable.q8_0_q8_0_x8(pick.map(|i| r80[i].as_slice()), &x8, &ahead),
                    want[0]
                );
            }
        }
    }
}
