//! The two vector kernels of word2vec's inner loop, dot product and y += a·x, written so
//! that they run with AVX2 + FMA where the CPU has them (chosen at run time, so the binary
//! still runs on any x86-64) and as plain Rust elsewhere. gensim gets the same from BLAS
//! (`sdot`, `saxpy`).
//!
//! The kernels read and write through raw pointers (`dot_raw`, `axpy_raw`): word2vec's
//! threads run them on rows that other threads may be updating at the same time (Hogwild,
//! see `word2vec/sgns.rs`), where a `&mut [f32]` would be a promise of exclusive access that
//! Rust does not let them make. Everyone else goes through the slice methods `dot` and
//! `axpy`, which are the same code.

/// Dot product and scaled add on runs of `n` floats.
pub trait Kernel: Copy + Send + Sync {
    /// Σ a_i b_i over the `n` floats at `a` and at `b`.
    ///
    /// # Safety
    /// `a` and `b` are valid for reading `n` floats.
    unsafe fn dot_raw(self, a: *const f32, b: *const f32, n: usize) -> f32;

    /// y ← y + alpha · x over the `n` floats at `x` and at `y`.
    ///
    /// # Safety
    /// `x` is valid for reading `n` floats, `y` for reading and writing `n` floats, and the
    /// two runs do not overlap.
    unsafe fn axpy_raw(self, alpha: f32, x: *const f32, y: *mut f32, n: usize);

    /// Σ a_i b_i, on slices of equal length.
    #[inline(always)]
    fn dot(self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: both slices hold at least that many floats.
        unsafe { self.dot_raw(a.as_ptr(), b.as_ptr(), a.len().min(b.len())) }
    }

    /// y ← y + alpha · x, on slices of equal length.
    #[inline(always)]
    fn axpy(self, alpha: f32, x: &[f32], y: &mut [f32]) {
        debug_assert_eq!(x.len(), y.len());
        // SAFETY: both slices hold at least that many floats, and `y` is borrowed mutably, so
        // it cannot overlap `x`.
        unsafe { self.axpy_raw(alpha, x.as_ptr(), y.as_mut_ptr(), x.len().min(y.len())) }
    }

    /// Asks the CPU to start loading the `n` floats at `x` into cache (a hint: nothing is
    /// read, and it does nothing where unsupported).
    #[inline(always)]
    fn prefetch(self, _x: *const f32, _n: usize) {}
}

/// Portable kernels: eight partial sums, which the compiler turns into SSE code.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

impl Kernel for Portable {
    #[inline(always)]
    unsafe fn dot_raw(self, a: *const f32, b: *const f32, n: usize) -> f32 {
        // The tail after the last whole group of 8, then 8 partial sums over the groups, then
        // their sum: float addition does not reassociate, so this order is part of the result.
        let whole = n - n % 8;
        // SAFETY (every read below): the index is below n.
        let tail: f32 = (whole..n).map(|i| unsafe { *a.add(i) * *b.add(i) }).sum();
        let mut acc = [0f32; 8];
        for g in (0..whole).step_by(8) {
            for (k, acc_k) in acc.iter_mut().enumerate() {
                *acc_k += unsafe { *a.add(g + k) * *b.add(g + k) };
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    unsafe fn axpy_raw(self, alpha: f32, x: *const f32, y: *mut f32, n: usize) {
        for i in 0..n {
            // SAFETY: i < n.
            unsafe { *y.add(i) += alpha * *x.add(i) };
        }
    }
}

/// AVX2 + FMA kernels. Only constructed by [`Avx2::detect`], so only used where the CPU
/// has both.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The kernels, if this CPU has AVX2 and FMA.
    pub fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    unsafe fn dot_raw(self, a: *const f32, b: *const f32, n: usize) -> f32 {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA; the caller vouches
        // for the pointers.
        unsafe { avx2::dot(a, b, n) }
    }

    #[inline(always)]
    unsafe fn axpy_raw(self, alpha: f32, x: *const f32, y: *mut f32, n: usize) {
        // SAFETY: as above.
        unsafe { avx2::axpy(alpha, x, y, n) }
    }

    #[inline(always)]
    fn prefetch(self, x: *const f32, n: usize) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // One hint per 64-byte cache line.
        for line in (0..n).step_by(16) {
            // SAFETY: prefetching is a hint and never faults (nor reads the memory).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(x.wrapping_add(line).cast()) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    // Safety of both: the CPU has AVX2 and FMA, and the pointers are as `Kernel::dot_raw`
    // and `Kernel::axpy_raw` ask.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn dot(pa: *const f32, pb: *const f32, n: usize) -> f32 {
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let lo = _mm256_castps256_ps128(acc);
        let hi = _mm256_extractf128_ps(acc, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn axpy(alpha: f32, px: *const f32, py: *mut f32, n: usize) {
        let a = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            let r = _mm256_fmadd_ps(a, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
            i += 8;
        }
        while i < n {
            *py.add(i) += alpha * *px.add(i);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(k: impl Kernel) {
        for n in [0, 1, 7, 8, 9, 16, 17, 100, 301] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((k.dot(&a, &b) as f64 - want).abs() < 1e-4, "dot, n = {n}");
            let mut y = b.clone();
            k.axpy(0.5, &a, &mut y);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6, "axpy, n = {n}");
            }
        }
    }

    #[test]
    fn kernels_agree_with_plain_sums() {
        check(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = Avx2::detect() {
            check(k);
        }
    }
}
