//! Why generation is memory-bound, measured: how fast this machine reads memory, how fast
//! each weight format's product runs at a real model's shapes, and how many bytes a token
//! of SmolLM2-135M reads.
//!
//! Generating one token multiplies every weight matrix by one activation row: each weight
//! is read once and used for one multiply-add. A core does many multiply-adds per
//! nanosecond but memory delivers only some bytes per nanosecond, so the time per token is
//! at least (bytes of weights) / (memory bandwidth), and fewer bytes per weight is the way
//! to go faster. Prefill (many rows of activations) reuses each weight row across the rows,
//! and there compute, not memory, is the limit.
//!
//! - [`read_bandwidth`]: GB/s of summing a buffer far larger than the last-level cache, on
//!   1 or more threads (one core alone often cannot saturate the memory, so the limit
//!   depends on the thread count: compare a product with the bandwidth at its own threads);
//! - [`time_products`]: `y = x W^T` at a shape, for `n` rows of `x` (1: generation), in
//!   each [`Method`] (the f32 products we have and the quantized formats), interleaved,
//!   with the read bandwidth over the same moments;
//! - the bytes a generated token reads, the other half of the bound, are
//!   [`crate::quant::report::bytes_per_token`]'s, from the model's [`crate::gpt::GptConfig`].

use std::hint::black_box;
use std::time::Instant;

use super::matrix::{Format, QMatrix};
use crate::gpt::linear::{linear_forward, mat, mat_mut, matmul, Threads};
use crate::{Error, Result};
use rayon::prelude::*;

/// The shapes `(rows, cols)` = `(d_out, d_in)` of SmolLM2-135M's products: the MLP's gate
/// and up projections, its down projection, and the output head (tied to the embedding).
pub const SMOLLM2_SHAPES: [(usize, usize); 3] = [(1536, 576), (576, 1536), (49152, 576)];

/// The median, smallest and largest of some timings, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seconds {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Seconds {
    /// Of `samples` (the upper middle one of an even count).
    ///
    /// # Panics
    /// If there are none.
    pub fn of(samples: &mut [f64]) -> Seconds {
        assert!(!samples.is_empty(), "no timings");
        samples.sort_by(f64::total_cmp);
        Seconds {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
        }
    }

    /// Of the samples whose `interrupted` flag is false if there are at least
    /// [`MIN_UNINTERRUPTED`] of them, else of all: `(seconds, how many were uninterrupted)`.
    pub fn of_uninterrupted(samples: &[(f64, bool)]) -> (Seconds, usize) {
        let mut clean: Vec<f64> = samples.iter().filter(|s| !s.1).map(|s| s.0).collect();
        let count = clean.len();
        if count >= MIN_UNINTERRUPTED {
            return (Seconds::of(&mut clean), count);
        }
        let mut all: Vec<f64> = samples.iter().map(|s| s.0).collect();
        (Seconds::of(&mut all), count)
    }

    /// Of timed calls (`(seconds, preempted)` each): `(over the uninterrupted ones as
    /// [`Seconds::of_uninterrupted`], over all, how many were uninterrupted)`.
    pub fn of_calls(samples: &[(f64, bool)]) -> (Seconds, Seconds, usize) {
        let (clean, uninterrupted) = Seconds::of_uninterrupted(samples);
        let mut all: Vec<f64> = samples.iter().map(|s| s.0).collect();
        (clean, Seconds::of(&mut all), uninterrupted)
    }

    /// `amount / time` at the median, the slowest and the fastest time: `(median, low, high)`.
    pub fn rate(&self, amount: f64) -> (f64, f64, f64) {
        (amount / self.median, amount / self.max, amount / self.min)
    }
}

/// The fewest calls that ran without being preempted for [`Seconds::of_uninterrupted`] to
/// keep only those.
pub const MIN_UNINTERRUPTED: usize = 5;

/// Times in which some thread of this process was made to leave its core for another
/// (`getrusage`'s `ru_nivcsw`, over all the process's threads), or 0 where that is not
/// available. On a shared machine a call during which the count moves has measured the
/// other programs too; waiting for work (a voluntary switch) is fine. One system call,
/// where reading each thread's file under `/proc` takes several and touches far more
/// memory between two timed calls.
pub fn preemptions() -> u64 {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: `usage` is a valid rusage to write; RUSAGE_SELF needs nothing else.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0 {
            // SAFETY: getrusage succeeded, so it filled `usage`.
            return unsafe { usage.assume_init() }.ru_nivcsw as u64;
        }
    }
    0
}

/// Runs `f` once, timed: `(seconds, whether some thread was preempted)`.
fn timed(f: impl FnOnce()) -> (f64, bool) {
    let before = preemptions();
    let t0 = Instant::now();
    f();
    (t0.elapsed().as_secs_f64(), preemptions() != before)
}

/// The sum of `x` as 64-bit words, the threads of the current pool each taking `part`
/// words: one pass of a read-bandwidth measurement.
fn parallel_sum(x: &[u64], part: usize) -> u64 {
    x.par_chunks(part)
        .map(sum_words)
        .reduce(|| 0, u64::wrapping_add)
}

/// A memory-read bandwidth measurement: `threads` threads each summing its own contiguous
/// part of a slice of `bytes_per_pass` bytes, the slices taken in turn from a buffer of
/// `buffer_bytes` (far larger than the caches, so each slice comes from memory).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bandwidth {
    pub threads: usize,
    pub buffer_bytes: usize,
    pub bytes_per_pass: usize,
    /// Per pass, over the passes no thread was preempted in (if at least
    /// [`MIN_UNINTERRUPTED`]; else over all).
    pub seconds: Seconds,
    /// Per pass, over all of them.
    pub seconds_all: Seconds,
    /// How many passes ran uninterrupted, of `reps`.
    pub uninterrupted: usize,
    pub reps: usize,
    /// Whether the sum used AVX2 loads (32 bytes each).
    pub avx2: bool,
}

impl Bandwidth {
    /// From the timed passes (`(seconds, preempted)` each) of `bytes_per_pass` bytes.
    fn of_passes(
        threads: usize,
        buffer_bytes: usize,
        bytes_per_pass: usize,
        passes: &[(f64, bool)],
    ) -> Bandwidth {
        let (seconds, seconds_all, uninterrupted) = Seconds::of_calls(passes);
        Bandwidth {
            threads,
            buffer_bytes,
            bytes_per_pass,
            seconds,
            seconds_all,
            uninterrupted,
            reps: passes.len(),
            avx2: Machine::detect().avx2,
        }
    }

    /// GB/s (10^9 bytes per second) at the median time.
    pub fn gb_per_s(&self) -> f64 {
        self.bytes_per_pass as f64 / self.seconds.median / 1e9
    }

    /// GB/s at the slowest and the fastest time.
    pub fn gb_per_s_range(&self) -> (f64, f64) {
        let (_, lo, hi) = self.seconds.rate(self.bytes_per_pass as f64 / 1e9);
        (lo, hi)
    }
}

/// Bytes per timed pass of [`read_bandwidth`]: a pass takes about a millisecond, like
/// one product at SmolLM2's shapes, so that on a shared machine most passes run
/// uninterrupted (a pass over the whole buffer would almost always share the core).
pub const BANDWIDTH_PASS: usize = 16 << 20;

/// Sums `x` as 64-bit integers. The sum is only there so that the loads cannot be left
/// out; what is measured is the time to bring the bytes in from memory.
fn sum_words(x: &[u64]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { avx2_sum(x) };
    }
    // four independent sums, so the adds are not one long chain
    let mut acc = [0u64; 4];
    let chunks = x.chunks_exact(4);
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &v| a.wrapping_add(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(v);
        }
    }
    acc.iter().fold(tail, |a, &v| a.wrapping_add(v))
}

/// 128 bytes per step into four 256-bit accumulators: one add per 32 bytes loaded, far
/// below what a core can do, so the loads are what takes the time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2_sum(x: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 4];
    let steps = x.len() / 16;
    let p = x.as_ptr();
    for i in 0..steps {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: words 16 i + 4 k .. + 4 lie below 16 steps <= x.len().
            let v = unsafe { _mm256_loadu_si256(p.add(16 * i + 4 * k).cast()) };
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let s = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` holds 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), s) };
    x[16 * steps..]
        .iter()
        .chain(&lanes)
        .fold(0, |a, &v| a.wrapping_add(v))
}

/// Read bandwidth: on a rayon pool of `threads` threads, `reps` timed passes, each over
/// the next [`BANDWIDTH_PASS`] bytes of a buffer of `bytes` (make it many times the
/// last-level cache, e.g. 512 MiB), after one untimed pass over the whole buffer. The
/// threads split each pass into contiguous parts, as the products split a weight's rows.
pub fn read_bandwidth(bytes: usize, threads: usize, reps: usize) -> Result<Bandwidth> {
    if threads == 0 || reps == 0 || bytes < 64 * threads {
        return Err(Error::InvalidArgument(format!(
            "read_bandwidth: {bytes} bytes, {threads} threads, {reps} repetitions: need at \
             least one thread and repetition and 64 bytes per thread"
        )));
    }
    let words = bytes / 8;
    // written with distinct values, so that every page is really there
    let buf: Vec<u64> = (0..words as u64).collect();
    let pass_words = (BANDWIDTH_PASS / 8).min(words);
    let passes = words / pass_words;
    let part = pass_words.div_ceil(threads);
    let pool = pool(threads)?;
    let times: Vec<(f64, bool)> = pool.install(|| {
        black_box(parallel_sum(&buf, part));
        (0..reps)
            .map(|i| {
                let start = (i % passes) * pass_words;
                timed(|| {
                    black_box(parallel_sum(&buf[start..start + pass_words], part));
                })
            })
            .collect()
    });
    Ok(Bandwidth::of_passes(
        threads,
        words * 8,
        pass_words * 8,
        &times,
    ))
}

/// A rayon pool of `threads` threads.
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("a pool of {threads} threads: {e}")))
}

/// What the measurements ran on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`), or "unknown".
    pub cpu: String,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    /// Threads this process may run at once.
    pub threads: usize,
    /// The last-level cache, as the kernel reports it (`/sys/.../cache/index3/size`).
    pub l3: Option<String>,
}

impl Machine {
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_string(), |(_, v)| v.trim().to_string());
        let l3 = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size")
            .ok()
            .map(|s| s.trim().to_string());
        #[cfg(target_arch = "x86_64")]
        let (avx2, fma, f16c, avx512f) = (
            is_x86_feature_detected!("avx2"),
            is_x86_feature_detected!("fma"),
            is_x86_feature_detected!("f16c"),
            is_x86_feature_detected!("avx512f"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2, fma, f16c, avx512f) = (false, false, false, false);
        Machine {
            cpu,
            avx2,
            fma,
            f16c,
            avx512f,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            l3,
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "{}, {} threads, AVX2 {}, FMA {}, F16C {}, AVX-512 {}, last-level cache {}",
            self.cpu,
            self.threads,
            yes(self.avx2),
            yes(self.fma),
            yes(self.f16c),
            yes(self.avx512f),
            self.l3.as_deref().unwrap_or("unknown")
        )
    }
}

/// One way of computing `y = x W^T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// The model's f32 path today, [`linear_forward`]: one thread of dot products for up to
    /// 4 rows of `x`, the `gemm` crate (all threads) above.
    F32Linear,
    /// The `gemm` crate on all threads ([`matmul`]); for one row of `x` gemm switches to its
    /// own matrix-vector kernel, which runs on one thread.
    F32Gemm,
    /// A [`QMatrix`] of f32: the threads split the weight's rows, each output one AVX2 + FMA
    /// dot product (the same loop as the quantized formats, minus the integers).
    F32Rows,
    /// A quantized [`QMatrix`] (Q8_0, Q4_0, Q4_1, or F16), [`QMatrix::matmul`].
    Quant(Format),
}

impl Method {
    /// The f32 methods, then Q8_0, Q4_0, Q4_1.
    pub const ALL: [Method; 6] = [
        Method::F32Linear,
        Method::F32Gemm,
        Method::F32Rows,
        Method::Quant(Format::Q8_0),
        Method::Quant(Format::Q4_0),
        Method::Quant(Format::Q4_1),
    ];

    /// "f32 linear", "f32 gemm", "f32 rows", or the format's name ("q8_0").
    pub fn name(self) -> String {
        match self {
            Method::F32Linear => "f32 linear".into(),
            Method::F32Gemm => "f32 gemm".into(),
            Method::F32Rows => "f32 rows".into(),
            Method::Quant(f) => f.name().into(),
        }
    }

    /// How the weight is stored.
    pub fn format(self) -> Format {
        match self {
            Method::Quant(f) => f,
            _ => Format::F32,
        }
    }

    /// Whether the weight is f32.
    pub fn is_f32(self) -> bool {
        self.format() == Format::F32
    }
}

/// Where the weight is when a product starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residency {
    /// In memory: the timed calls cycle through copies of the weight that together exceed
    /// the caches many times over, as generation cycles through a model's layers.
    Memory,
    /// In cache (as far as it fits): every call uses the same copy.
    Cache,
}

impl Residency {
    pub fn name(self) -> &'static str {
        match self {
            Residency::Memory => "memory",
            Residency::Cache => "cache",
        }
    }
}

/// One 8-row kernel of [`super::kernels`] alone: 8 weight rows of `cols` columns and one
/// quantized activation row, a few KiB that stay in the L1 cache, called over and over. It
/// is the speed the kernel would have if memory were free: a matrix-vector product cannot
/// read weights faster than this, nor faster than the read bandwidth, and whichever is
/// lower is its limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelSpeed {
    pub format: Format,
    /// "avx2" or "portable".
    pub kernels: &'static str,
    pub cols: usize,
    /// Per call (8 rows), over the samples during which the process was not preempted.
    pub seconds: Seconds,
}

impl KernelSpeed {
    /// Nanoseconds per block of one row (the median).
    pub fn ns_per_block_row(&self) -> f64 {
        self.seconds.median / (8 * self.cols / 32) as f64 * 1e9
    }

    /// Weight bytes per second (the median), in GB/s.
    pub fn gb_per_s(&self) -> f64 {
        let bytes = 8 * self.format.row_bytes(self.cols).unwrap_or(0);
        bytes as f64 / self.seconds.median / 1e9
    }
}

/// Times the 8-row kernel of `format` (Q8_0, Q4_0 or Q4_1) on the AVX2 kernels if `avx2`
/// (`None` where this CPU has not got them) or the portable ones: `samples` timings of 1000
/// calls each, on pseudo-random rows of `cols` columns.
pub fn kernel_speed(
    format: Format,
    cols: usize,
    avx2: bool,
    samples: usize,
) -> Result<Option<KernelSpeed>> {
    use super::kernels::{Portable, QDot};
    if samples == 0 || cols == 0 || cols % 32 != 0 {
        return Err(Error::InvalidArgument(format!(
            "kernel_speed: {samples} samples of {cols} columns (want ≥ 1, a multiple of 32)"
        )));
    }
    if !matches!(format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1) {
        return Err(Error::InvalidArgument(format!(
            "kernel_speed: no 8-row kernel for {format}"
        )));
    }
    fn time(format: Format, cols: usize, q: impl QDot, samples: usize) -> Seconds {
        // values of both signs and many sizes, as a trained weight has
        let value =
            |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 1999) as f32 / 999.0 - 1.0;
        let rows: Vec<QMatrix> = (0..8)
            .map(|r| {
                let w: Vec<f32> = (0..cols).map(|i| value(i, r + 1)).collect();
                QMatrix::quantize(format, 1, cols, &w).expect("whole blocks")
            })
            .collect();
        let x: Vec<f32> = (0..cols).map(|i| value(i, 0)).collect();
        let w: [&[u8]; 8] = std::array::from_fn(|r| rows[r].row(0));
        let (x8, x81) = (
            super::blocks::quantize_row::<super::blocks::BlockQ8_0>(&x),
            super::blocks::quantize_row::<super::blocks::BlockQ8_1>(&x),
        );
        let call = || match format {
            Format::Q8_0 => q.q8_0_q8_0_x8(w.map(bytemuck::cast_slice), &x8, &[]),
            Format::Q4_0 => q.q4_0_q8_0_x8(w.map(bytemuck::cast_slice), &x8, &[]),
            _ => q.q4_1_q8_1_x8(w.map(bytemuck::cast_slice), &x81, &[]),
        };
        const CALLS: usize = 1000;
        black_box(call());
        let timed: Vec<(f64, bool)> = (0..samples)
            .map(|_| {
                let before = preemptions();
                let start = Instant::now();
                for _ in 0..CALLS {
                    black_box(call());
                }
                let t = start.elapsed().as_secs_f64() / CALLS as f64;
                (t, preemptions() != before)
            })
            .collect();
        Seconds::of_uninterrupted(&timed).0
    }
    let (kernels, seconds) = if avx2 {
        #[cfg(target_arch = "x86_64")]
        match super::kernels::Avx2::detect() {
            Some(k) => ("avx2", time(format, cols, k, samples)),
            None => return Ok(None),
        }
        #[cfg(not(target_arch = "x86_64"))]
        return Ok(None);
    } else {
        ("portable", time(format, cols, Portable, samples))
    };
    Ok(Some(KernelSpeed {
        format,
        kernels,
        cols,
        seconds,
    }))
}

/// The time to quantize one activation row of `cols` values to Q8_0 blocks, as every
/// quantized product does before its first dot product (on one thread, so at 2 threads it
/// is time the second thread waits): `samples` timings of 100 calls each, per call.
pub fn quantize_activation_speed(cols: usize, samples: usize) -> Result<Seconds> {
    if samples == 0 || cols == 0 || cols % 32 != 0 {
        return Err(Error::InvalidArgument(format!(
            "quantize_activation_speed: {samples} samples of {cols} values (want ≥ 1, a multiple of 32)"
        )));
    }
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919) % 1999) as f32 / 999.0 - 1.0)
        .collect();
    const CALLS: usize = 100;
    let timed: Vec<(f64, bool)> = (0..samples)
        .map(|_| {
            let before = preemptions();
            let start = Instant::now();
            for _ in 0..CALLS {
                black_box(super::blocks::quantize_row::<super::blocks::BlockQ8_0>(
                    black_box(&x),
                ));
            }
            (
                start.elapsed().as_secs_f64() / CALLS as f64,
                preemptions() != before,
            )
        })
        .collect();
    Ok(Seconds::of_uninterrupted(&timed).0)
}

/// The least total size of the copies of a weight timed at [`Residency::Memory`]: four
/// times a 32 MiB last-level cache (and the other methods' copies pass through the cache
/// between two calls of one method too).
pub const COLD_BYTES: usize = 128 << 20;

/// The timing of `y = x W^T` for one method at one shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub method: Method,
    /// `W`: `(rows, cols)`.
    pub rows: usize,
    pub cols: usize,
    /// Rows of `x` (1: one token of generation).
    pub n: usize,
    pub threads: usize,
    pub residency: Residency,
    /// Bytes of `W`, read once per call.
    pub weight_bytes: usize,
    /// How many copies of `W` the calls cycled through.
    pub copies: usize,
    /// Per call, over the calls no thread was preempted in (if at least
    /// [`MIN_UNINTERRUPTED`]; else over all).
    pub seconds: Seconds,
    /// Per call, over all of them.
    pub seconds_all: Seconds,
    /// How many calls ran uninterrupted, of `reps`.
    pub uninterrupted: usize,
    /// Calls timed.
    pub reps: usize,
}

impl Timing {
    /// GB/s of weight bytes read, at the median time.
    pub fn gb_per_s(&self) -> f64 {
        self.weight_bytes as f64 / self.seconds.median / 1e9
    }

    /// GFLOP/s at the median time, counting 2 rows cols flops (a multiply and an add) per
    /// row of `x`.
    pub fn gflop_per_s(&self) -> f64 {
        self.flops() / self.seconds.median / 1e9
    }

    /// 2 n rows cols.
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.rows * self.cols) as f64
    }
}

/// A weight in one method's storage.
enum Stored {
    F32(Vec<f32>),
    Q(QMatrix),
}

/// How [`time_products`] times: on a rayon pool of `threads` threads, `reps` rounds, the
/// weights in memory or in cache; with `read_bandwidth`, each round also reads a buffer of
/// [`READ_BUFFER`] bytes, [`BANDWIDTH_PASS`] bytes per timed pass: the memory's speed at
/// the same moments as the products'.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Setup {
    pub threads: usize,
    pub reps: usize,
    pub residency: Residency,
    pub read_bandwidth: bool,
}

/// What [`time_products`] measured: a timing per method, in the order asked, and the
/// read bandwidth over the same rounds (if asked for).
#[derive(Clone, Debug, PartialEq)]
pub struct Round {
    pub timings: Vec<Timing>,
    pub bandwidth: Option<Bandwidth>,
}

/// Times `y = x W^T` with `W` of `(rows, cols)` and `n` rows of `x`, in each of `methods`.
/// `W` and `x` hold fixed pseudo-random values in [-1, 1); quantized formats quantize `W`
/// once, before any timing. After one untimed call per copy of each weight (which also
/// wakes the threads), each of `setup.reps` rounds runs every method in turn, one call per
/// copy of its weight, one after the other as a model's products follow each other (then
/// the read passes). Each call is timed alone. On a shared machine whose speed comes and
/// goes, every method (and the read) sees the same stretches of time, so their ratios hold
/// even when the figures move. Calls during which a thread of the process was preempted
/// are dropped (see [`preemptions`]).
pub fn time_products(
    methods: &[Method],
    (rows, cols): (usize, usize),
    n: usize,
    setup: Setup,
) -> Result<Round> {
    let Setup {
        threads,
        reps,
        residency,
        read_bandwidth,
    } = setup;
    if rows == 0 || cols == 0 || n == 0 || threads == 0 || reps == 0 || methods.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "time_products: {rows} x {cols}, n {n}, {threads} threads, {reps} repetitions, \
             {} methods: all must be positive",
            methods.len()
        )));
    }
    let w = pseudo_random(rows * cols, 1);
    let x = pseudo_random(n * cols, 2);
    // every method's copies of its weight
    let mut stored: Vec<Vec<Stored>> = Vec::with_capacity(methods.len());
    for &method in methods {
        let format = method.format();
        format.row_bytes(cols)?;
        let first = match method {
            Method::F32Linear | Method::F32Gemm => Stored::F32(w.clone()),
            Method::F32Rows | Method::Quant(_) => {
                Stored::Q(QMatrix::quantize(format, rows, cols, &w)?)
            }
        };
        let weight_bytes = stored_bytes(&first);
        let copies = match residency {
            Residency::Cache => 1,
            Residency::Memory => COLD_BYTES.div_ceil(weight_bytes).max(2),
        };
        let mut weights = Vec::with_capacity(copies);
        for _ in 1..copies {
            weights.push(match &first {
                Stored::F32(w) => Stored::F32(w.clone()),
                Stored::Q(q) => Stored::Q(QMatrix::from_bytes(
                    q.format,
                    rows,
                    cols,
                    q.bytes().to_vec(),
                )?),
            });
        }
        weights.push(first);
        stored.push(weights);
    }
    let read_words = if read_bandwidth { READ_BUFFER / 8 } else { 0 };
    // written with distinct values, so that every page is really there
    let buf: Vec<u64> = (0..read_words as u64).collect();
    let pass_words = BANDWIDTH_PASS / 8;
    let pool = pool(threads)?;
    let mut y = vec![0.0f32; n * rows];
    let call = |method: Method, w: &Stored, y: &mut [f32]| match (method, w) {
        (Method::F32Linear, Stored::F32(w)) => linear_forward(y, &x, w, n, cols, rows),
        (Method::F32Gemm, Stored::F32(w)) => matmul(
            1.0,
            &mat(&x, n, cols),
            &mat(w, rows, cols).t(),
            0.0,
            &mut mat_mut(y, n, rows),
            Threads::All,
        ),
        (_, Stored::Q(q)) => q.matmul(y, &x, n),
        (_, Stored::F32(_)) => unreachable!("f32 storage is for the f32 methods"),
    };
    let part = pass_words.div_ceil(threads);
    let read = |start: usize| parallel_sum(&buf[start..start + pass_words], part);
    // samples[k][rep]: method k, or the read (last)
    let jobs = methods.len() + usize::from(read_bandwidth);
    let mut samples = vec![Vec::new(); jobs];
    pool.install(|| {
        for (&m, weights) in methods.iter().zip(&stored) {
            for w in weights {
                call(m, w, &mut y);
            }
        }
        if read_bandwidth {
            black_box(read(0));
        }
        for _ in 0..reps {
            // a burst per method: one call per copy, one after the other, as a model's
            // products follow each other
            for ((&m, weights), s) in methods.iter().zip(&stored).zip(&mut samples) {
                for w in weights {
                    s.push(timed(|| {
                        call(m, w, &mut y);
                        black_box(&y);
                    }));
                }
            }
            if read_bandwidth {
                for start in (0..read_words).step_by(pass_words) {
                    samples[methods.len()].push(timed(|| {
                        black_box(read(start));
                    }));
                }
            }
        }
    });
    let timings = methods
        .iter()
        .zip(&stored)
        .zip(&samples)
        .map(|((&method, weights), times)| {
            let (seconds, seconds_all, uninterrupted) = Seconds::of_calls(times);
            Timing {
                method,
                rows,
                cols,
                n,
                threads,
                residency,
                weight_bytes: stored_bytes(&weights[0]),
                copies: weights.len(),
                seconds,
                seconds_all,
                uninterrupted,
                reps: times.len(),
            }
        })
        .collect();
    let bandwidth = read_bandwidth.then(|| {
        Bandwidth::of_passes(
            threads,
            read_words * 8,
            pass_words * 8,
            &samples[methods.len()],
        )
    });
    Ok(Round { timings, bandwidth })
}

fn stored_bytes(w: &Stored) -> usize {
    match w {
        Stored::F32(w) => w.len() * 4,
        Stored::Q(q) => q.bytes().len(),
    }
}

/// The buffer [`time_products`] reads its bandwidth passes from: 8 times a 32 MiB
/// last-level cache.
pub const READ_BUFFER: usize = 256 << 20;

/// `len` values in [-1, 1) from a fixed sequence (a linear congruential generator).
fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The three ways SmolLM2 is stored in the book: `(name, layers' format, head's format)`.
pub const SMOLLM2_SCHEMES: [(&str, Format, Format); 3] = [
    ("f32", Format::F32, Format::F32),
    ("q8_0", Format::Q8_0, Format::Q8_0),
    ("q4_1 (embedding q8_0)", Format::Q4_1, Format::Q8_0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_and_products_run_and_refuse_nonsense() {
        let b = read_bandwidth(1 << 20, 2, 2).unwrap();
        assert!(b.gb_per_s() > 0.0 && b.buffer_bytes == 1 << 20);
        assert!(read_bandwidth(1 << 20, 0, 1).is_err());
        // the sums are exact: every path gives n (n - 1) / 2 for 0..n
        let words: Vec<u64> = (0..1001).collect();
        assert_eq!(sum_words(&words), 1000 * 1001 / 2);
        let setup = Setup {
            threads: 2,
            reps: 3,
            residency: Residency::Cache,
            read_bandwidth: false,
        };
        let round = time_products(&Method::ALL, (64, 64), 2, setup).unwrap();
        for (m, t) in Method::ALL.iter().zip(&round.timings) {
            assert_eq!(t.method, *m);
            assert_eq!(t.weight_bytes, m.format().row_bytes(64).unwrap() * 64);
            assert!(t.gflop_per_s() > 0.0 && t.reps == 3);
        }
        assert!(round.bandwidth.is_none());
        assert!(time_products(&[Method::F32Rows], (0, 64), 1, setup).is_err());
        assert!(time_products(&[], (64, 64), 1, setup).is_err());
        // 48 columns are not whole blocks of 32
        assert!(time_products(&[Method::Quant(Format::Q8_0)], (4, 48), 1, setup).is_err());
        // with the read: a bandwidth from as many passes as rounds
        let read = Setup {
            read_bandwidth: true,
            ..setup
        };
        let round = time_products(&[Method::F32Rows], (64, 64), 1, read).unwrap();
        let b = round.bandwidth.unwrap();
        let passes = READ_BUFFER / BANDWIDTH_PASS;
        assert!(b.gb_per_s() > 0.0 && b.reps == 3 * passes && b.bytes_per_pass == BANDWIDTH_PASS);
    }

    #[test]
    fn kernel_speed_times_each_format_and_refuses_the_rest() {
        for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
            for avx2 in [false, true] {
                let Some(k) = kernel_speed(format, 64, avx2, 2).unwrap() else {
                    continue;
                };
                assert_eq!((k.format, k.cols), (format, 64));
                assert_eq!(k.kernels, if avx2 { "avx2" } else { "portable" });
                assert!(k.ns_per_block_row() > 0.0 && k.gb_per_s() > 0.0);
            }
        }
        assert!(kernel_speed(Format::F32, 64, false, 2).is_err());
        assert!(kernel_speed(Format::Q8_0, 48, false, 2).is_err());
        assert!(kernel_speed(Format::Q8_0, 64, false, 0).is_err());
        assert!(quantize_activation_speed(64, 2).unwrap().median > 0.0);
        assert!(quantize_activation_speed(48, 2).is_err());
    }
}
