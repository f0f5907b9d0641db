//! A quantized weight matrix: a format, a shape, and the raw bytes of its rows, each row a
//! run of ggml blocks (or plain f32 / f16 values), exactly as a GGUF file stores them.
//!
//! ```
//! use llm_lessons::quant::matrix::{Format, QMatrix};
//! let w: Vec<f32> = (0..2 * 64).map(|i| (i as f32 * 0.1).sin()).collect();
//! let q = QMatrix::quantize(Format::Q8_0, 2, 64, &w).unwrap();
//! assert_eq!(q.bytes().len(), 2 * 2 * 34); // 2 rows of 2 blocks of 34 bytes
//! assert_eq!(q.bits_per_weight(), 8.5);
//! let back = q.dequantize();
//! assert!(w.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.01));
//! ```

use super::blocks::{
    dequantize_row, quantize_row, Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK,
};
use super::f16::{f16_to_f32, f32_to_f16};
use super::kernels::{Portable, QDot};
use crate::simd::{self, Kernel};
use crate::{Error, Result};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// How a tensor's values are stored: ggml's type, restricted to the ones this crate reads
/// and writes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
}

impl Format {
    /// Every format, in ggml type order.
    pub const ALL: [Format; 5] = [
        Format::F32,
        Format::F16,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q8_0,
    ];

    /// ggml's type id (`ggml_type`, the number in a GGUF tensor info).
    pub fn ggml_type(self) -> u32 {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::Q4_0 => 2,
            Format::Q4_1 => 3,
            Format::Q8_0 => 8,
        }
    }

    /// The format of a ggml type id, or an error naming the id (and the ones supported).
    pub fn from_ggml_type(id: u32) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.ggml_type() == id)
            .ok_or_else(|| {
                let known = match id {
                    6 => " (Q5_0)",
                    7 => " (Q5_1)",
                    9 => " (Q8_1, which ggml uses for activations only)",
                    10..=15 => " (a k-quant)",
                    30 => " (BF16)",
                    _ => "",
                };
                Error::InvalidArgument(format!(
                    "unsupported ggml type {id}{known}: this crate reads f32 (0), f16 (1), \
                     q4_0 (2), q4_1 (3) and q8_0 (8)"
                ))
            })
    }

    /// Values per block: 1 for f32 and f16, 32 for the block formats.
    pub fn block_values(self) -> usize {
        match self {
            Format::F32 | Format::F16 => 1,
            Format::Q8_0 | Format::Q4_0 | Format::Q4_1 => QK,
        }
    }

    /// Bytes per block: 4, 2, 34, 18, 20.
    pub fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 => 2,
            Format::Q8_0 => BlockQ8_0::BYTES,
            Format::Q4_0 => BlockQ4_0::BYTES,
            Format::Q4_1 => BlockQ4_1::BYTES,
        }
    }

    /// Bytes of a row of `cols` values, or an error if `cols` is not a whole number of
    /// blocks.
    pub fn row_bytes(self, cols: usize) -> Result<usize> {
        if cols % self.block_values() != 0 {
            return Err(Error::InvalidArgument(format!(
                "a {} row holds whole blocks of {} values, not {cols}",
                self.name(),
                self.block_values()
            )));
        }
        Ok(cols / self.block_values() * self.block_bytes())
    }

    /// Storage per weight, in bits (8.5 for Q8_0).
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / self.block_values() as f64
    }

    /// The lowercase name: "f32", "f16", "q8_0", "q4_0", "q4_1".
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::Q8_0 => "q8_0",
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = Error;

    /// One of the names of [`Format::name`], in any case ("Q8_0" or "q8_0").
    fn from_str(s: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown format {s:?}: expected one of f32, f16, q8_0, q4_0, q4_1"
                ))
            })
    }
}

/// Where a matrix's (or a GGUF tensor's) bytes live. Cheap to clone (a reference count),
/// so layers and files can share them; it derefs to the bytes, which is all the kernels
/// see.
#[derive(Clone)]
pub enum Storage {
    /// Bytes owned in memory.
    Owned(Arc<[u8]>),
    /// Bytes `range` of a memory-mapped file ([`super::gguf::Gguf::read`]): the operating
    /// system reads each page from the file when it is first touched and keeps it in its
    /// page cache, shared with every process that maps or reads the file; nothing is
    /// copied into this process's heap.
    Mapped {
        map: Arc<memmap2::Mmap>,
        range: Range<usize>,
    },
}

impl Storage {
    /// Bytes `range` of `map`; an error if the range does not lie inside it.
    pub fn mapped(map: Arc<memmap2::Mmap>, range: Range<usize>) -> Result<Storage> {
        if range.start > range.end || range.end > map.len() {
            return Err(Error::InvalidArgument(format!(
                "bytes {range:?} lie outside a mapped file of {} bytes",
                map.len()
            )));
        }
        Ok(Storage::Mapped { map, range })
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(b) => b,
            // checked in range at construction
            Storage::Mapped { map, range } => &map[range.clone()],
        }
    }

    /// Whether the bytes are a view of a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped { .. })
    }
}

impl std::ops::Deref for Storage {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for Storage {
    /// The same bytes, wherever they live.
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Owned(b) => write!(f, "Owned({} bytes)", b.len()),
            Storage::Mapped { map, range } => {
                write!(f, "Mapped(bytes {range:?} of a {}-byte file)", map.len())
            }
        }
    }
}

impl From<Arc<[u8]>> for Storage {
    fn from(bytes: Arc<[u8]>) -> Storage {
        Storage::Owned(bytes)
    }
}

impl From<Vec<u8>> for Storage {
    fn from(bytes: Vec<u8>) -> Storage {
        Storage::Owned(bytes.into())
    }
}

impl From<&[u8]> for Storage {
    /// A copy of the bytes.
    fn from(bytes: &[u8]) -> Storage {
        Storage::Owned(bytes.into())
    }
}

/// A `(rows, cols)` row-major weight in one [`Format`]: row `r` is
/// `bytes()[r * row_bytes .. (r + 1) * row_bytes]`, a run of `cols / 32` blocks (or `cols`
/// f32 / f16 values, little-endian).
#[derive(Clone, Debug)]
pub struct QMatrix {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    pub storage: Storage,
}

impl PartialEq for QMatrix {
    fn eq(&self, other: &Self) -> bool {
        (self.format, self.rows, self.cols) == (other.format, other.rows, other.cols)
            && self.bytes() == other.bytes()
    }
}

impl QMatrix {
    /// Quantizes a row-major `(rows, cols)` f32 matrix: each row into blocks with ggml's
    /// reference rounding ([`quantize_row`]), or to f16 (nearest, ties to even), or kept
    /// as f32.
    pub fn quantize(format: Format, rows: usize, cols: usize, w: &[f32]) -> Result<QMatrix> {
        check_len("quantize", format, w.len(), rows, cols, 1)?;
        let row_bytes = format.row_bytes(cols)?;
        let mut bytes = Vec::with_capacity(rows * row_bytes);
        if cols > 0 {
            for row in w.chunks_exact(cols) {
                match format {
                    Format::F32 => row.iter().for_each(|v| bytes.extend(v.to_le_bytes())),
                    Format::F16 => row
                        .iter()
                        .for_each(|&v| bytes.extend(f32_to_f16(v).to_le_bytes())),
                    Format::Q8_0 => {
                        bytes.extend(bytemuck::cast_slice(&quantize_row::<BlockQ8_0>(row)))
                    }
                    Format::Q4_0 => {
                        bytes.extend(bytemuck::cast_slice(&quantize_row::<BlockQ4_0>(row)))
                    }
                    Format::Q4_1 => {
                        bytes.extend(bytemuck::cast_slice(&quantize_row::<BlockQ4_1>(row)))
                    }
                }
            }
        }
        Ok(QMatrix {
            format,
            rows,
            cols,
            storage: Storage::Owned(bytes.into()),
        })
    }

    /// A matrix over bytes already in `format` (a GGUF tensor's data: owned, or a view of
    /// the mapped file, shared and not copied), after checking that they are exactly
    /// `rows` rows of `cols` values. Any byte address will do: the blocks have alignment 1
    /// (their f16 scales are byte pairs, [`super::blocks::Half`]), f16 values are read
    /// byte-wise, and f32 rows are viewed in place only where they are 4-byte aligned.
    pub fn from_bytes(
        format: Format,
        rows: usize,
        cols: usize,
        bytes: impl Into<Storage>,
    ) -> Result<QMatrix> {
        let bytes: Storage = bytes.into();
        let row_bytes = format.row_bytes(cols)?;
        let want = rows.checked_mul(row_bytes).ok_or_else(|| {
            Error::InvalidArgument(format!("a {format} matrix of {rows} x {cols} is too large"))
        })?;
        if bytes.len() != want {
            return Err(Error::InvalidArgument(format!(
                "a {format} matrix of {rows} x {cols} takes {want} bytes ({rows} rows of \
                 {row_bytes}), not {}",
                bytes.len()
            )));
        }
        Ok(QMatrix {
            format,
            rows,
            cols,
            storage: bytes,
        })
    }

    /// The raw bytes, row after row.
    pub fn bytes(&self) -> &[u8] {
        self.storage.as_bytes()
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        // checked at construction
        self.format.row_bytes(self.cols).expect("whole blocks")
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        let rb = self.row_bytes();
        &self.bytes()[r * rb..(r + 1) * rb]
    }

    /// The values of row `r` into `out` (`cols` values): one embedding row looked up in a
    /// quantized table, without dequantizing the rest.
    ///
    /// # Panics
    /// If `r` is not a row or `out` not `cols` long.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.cols,
            "QMatrix::dequantize_row: out is (cols,)"
        );
        dequantize_row_bytes(self.format, self.row(r), out);
    }

    /// Storage per weight, in bits: 32, 16, 8.5, 4.5, 5 (the scales included).
    pub fn bits_per_weight(&self) -> f64 {
        self.format.bits_per_weight()
    }

    /// The values, as the row-major f32 matrix `(rows, cols)`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        if self.cols == 0 {
            return out;
        }
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            dequantize_row_bytes(self.format, self.row(r), o);
        }
        out
    }
}

/// One activation row, prepared for a weight's format: quantized to Q8_0 (Q8_0 and Q4_0
/// weights) or Q8_1 (Q4_1), or kept as f32 (f32 and f16 weights).
enum Activation {
    F32(Vec<f32>),
    Q8_0(Vec<BlockQ8_0>),
    Q8_1(Vec<BlockQ8_1>),
}

impl Activation {
    fn new(format: Format, x: &[f32]) -> Activation {
        match format {
            Format::F32 | Format::F16 => Activation::F32(x.to_vec()),
            Format::Q8_0 | Format::Q4_0 => Activation::Q8_0(quantize_row(x)),
            Format::Q4_1 => Activation::Q8_1(quantize_row(x)),
        }
    }
}

/// Output rows per task of [`QMatrix::matmul`]: enough that a task's work (≥ 16 rows of
/// at least one block) outweighs rayon's cost of handing it out, few enough that both
/// threads get several tasks to balance.
fn rows_per_task(rows: usize) -> usize {
    let tasks = 8 * rayon::current_num_threads();
    // a multiple of 8, the rows a kernel call takes
    rows.div_ceil(tasks).clamp(16, 256).next_multiple_of(8)
}

// ANCHOR: matmul
impl QMatrix {
    /// `y = x W^T` for one activation row (generation: one token).
    ///
    /// # Shapes
    /// `x: (cols,)`, `y: (rows,)` (overwritten).
    ///
    /// # Panics
    /// If the lengths do not match the matrix.
    pub fn matvec(&self, y: &mut [f32], x: &[f32]) {
        self.matmul(y, x, 1);
    }

    /// `y = x W^T` for `n` activation rows (prefill: a prompt's tokens). Each row of `x`
    /// is quantized once (to Q8_0, or Q8_1 for a Q4_1 weight), then every output is one
    /// integer dot product ([`super::kernels`]). The threads split the weight's rows; each
    /// takes four weight rows at a time once from memory and multiplies them with all `n`
    /// activation rows while they sit in the L1 cache (the activations, `n` quantized rows,
    /// stay in L2); the four sums run interleaved, each in the order of the one-row kernel.
    ///
    /// # Shapes
    /// `x: (n, cols)`, `y: (n, rows)` (overwritten).
    ///
    /// # Panics
    /// If the lengths do not match the matrix.
    pub fn matmul(&self, y: &mut [f32], x: &[f32], n: usize) {
        assert_eq!(
            (x.len(), y.len()),
            (n * self.cols, n * self.rows),
            "QMatrix::matmul: x is (n, {}), y (n, {})",
            self.cols,
            self.rows
        );
        #[cfg(target_arch = "x86_64")]
        if let (Some(q), Some(f)) = (super::kernels::Avx2::detect(), simd::Avx2::detect()) {
            return self.matmul_with(q, f, y, x, n);
        }
        self.matmul_with(Portable, simd::Portable, y, x, n)
    }

    /// [`QMatrix::matmul`] on the given kernels (to compare them).
    pub fn matmul_with(&self, q: impl QDot, f: impl Kernel, y: &mut [f32], x: &[f32], n: usize) {
        assert_eq!((x.len(), y.len()), (n * self.cols, n * self.rows));
        if n == 0 || self.rows == 0 {
            return;
        }
        if self.cols == 0 {
            y.fill(0.0);
            return;
        }
        // one row (a token) is quantized here: handing it to the pool costs more
        let acts: Vec<Activation> = if n == 1 {
            vec![Activation::new(self.format, x)]
        } else {
            x.par_chunks_exact(self.cols)
                .map(|x| Activation::new(self.format, x))
                .collect()
        };
        let per = rows_per_task(self.rows);
        let (rows, format) = (self.rows, self.format);
        // the task computing rows r0..r1 writes y[t][r0..r1] for every t: into its own
        // buffer (r1 - r0, n), copied into y after
        let task = |r0: usize, out: &mut [f32]| {
            let r1 = (r0 + per).min(rows);
            match format {
                Format::F32 | Format::F16 => {
                    let mut w_f32 = Vec::new();
                    for r in r0..r1 {
                        let w = f32_row(format, self.row(r), &mut w_f32);
                        let o = &mut out[(r - r0) * n..(r - r0 + 1) * n];
                        for (o, a) in o.iter_mut().zip(&acts) {
                            let Activation::F32(a) = a else {
                                unreachable!()
                            };
                            *o = f.dot(w, a);
                        }
                    }
                }
                Format::Q8_0 => self.rows_by_eight(r0, r1, n, out, &acts, |w, a, ahead| match a {
                    Activation::Q8_0(a) => q.q8_0_q8_0_x8(w.map(bytemuck::cast_slice), a, ahead),
                    _ => unreachable!(),
                }),
                Format::Q4_0 => self.rows_by_eight(r0, r1, n, out, &acts, |w, a, ahead| match a {
                    Activation::Q8_0(a) => q.q4_0_q8_0_x8(w.map(bytemuck::cast_slice), a, ahead),
                    _ => unreachable!(),
                }),
                Format::Q4_1 => self.rows_by_eight(r0, r1, n, out, &acts, |w, a, ahead| match a {
                    Activation::Q8_1(a) => q.q4_1_q8_1_x8(w.map(bytemuck::cast_slice), a, ahead),
                    _ => unreachable!(),
                }),
            }
        };
        if n == 1 {
            // one token: the buffer is y itself
            y.par_chunks_mut(per)
                .enumerate()
                .for_each(|(i, out)| task(i * per, out));
            return;
        }
        let mut yt = vec![0.0f32; rows * n];
        yt.par_chunks_mut(per * n)
            .enumerate()
            .for_each(|(i, out)| task(i * per, out));
        for (r, col) in yt.chunks_exact(n).enumerate() {
            for (t, v) in col.iter().enumerate() {
                y[t * rows + r] = *v;
            }
        }
    }
}
// ANCHOR_END: matmul

impl QMatrix {
    /// Weight rows `r0..r1` times every activation row into `out`, `(r1 - r0, n)`, 8 weight
    /// rows at a time (`eight`): they stay in the L1 cache while each activation row passes
    /// by. A last group of fewer than 8 repeats its last row (the extra sums are dropped).
    /// While the first activation row passes, the kernel is handed the next 8 rows to fetch
    /// (`ahead`): 8 short rows taken together are 8 short streams, which the CPU's own
    /// prefetcher does not follow well. On the 2-core EPYC of `benches/quant.rs`, a
    /// stand-alone copy of the Q8_0 kernel (not in the repository) on 49152 x 576 read
    /// 16 GB/s with the fetches spread over the blocks, 10 GB/s with them asked all at once
    /// before each group, and 8 GB/s without.
    #[inline(always)]
    fn rows_by_eight(
        &self,
        r0: usize,
        r1: usize,
        n: usize,
        out: &mut [f32],
        acts: &[Activation],
        eight: impl Fn([&[u8]; 8], &Activation, &[u8]) -> [f32; 8],
    ) {
        let row_bytes = self.row_bytes();
        for g in (r0..r1).step_by(8) {
            let count = (r1 - g).min(8);
            let w: [&[u8]; 8] = std::array::from_fn(|i| self.row(g + i.min(count - 1)));
            let next = ((g + 8) * row_bytes).min(self.bytes().len());
            let ahead = &self.bytes()[next..((g + 16) * row_bytes).min(self.bytes().len())];
            for (t, a) in acts.iter().enumerate() {
                let sums = eight(w, a, if t == 0 { ahead } else { &[] });
                for (i, y) in sums.into_iter().take(count).enumerate() {
                    out[(g + i - r0) * n + t] = y;
                }
            }
        }
    }
}

/// An f32 or f16 row's bytes as f32 values: in place when they are aligned f32, else
/// converted into `buf`.
fn f32_row<'a>(format: Format, bytes: &'a [u8], buf: &'a mut Vec<f32>) -> &'a [f32] {
    if format == Format::F32 && cfg!(target_endian = "little") {
        if let Ok(w) = bytemuck::try_cast_slice(bytes) {
            return w;
        }
    }
    buf.resize(bytes.len() / format.block_bytes(), 0.0);
    dequantize_row_bytes(format, bytes, buf);
    buf
}

/// The values of one row's bytes in `format`, into `out`.
///
/// # Panics
/// If `bytes` is not the row of `out.len()` values.
pub fn dequantize_row_bytes(format: Format, bytes: &[u8], out: &mut [f32]) {
    match format {
        Format::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        Format::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        Format::Q8_0 => dequantize_row::<BlockQ8_0>(bytemuck::cast_slice(bytes), out),
        Format::Q4_0 => dequantize_row::<BlockQ4_0>(bytemuck::cast_slice(bytes), out),
        Format::Q4_1 => dequantize_row::<BlockQ4_1>(bytemuck::cast_slice(bytes), out),
    }
}

/// Checks that `len` is `rows * cols * per` values.
fn check_len(
    what: &str,
    format: Format,
    len: usize,
    rows: usize,
    cols: usize,
    per: usize,
) -> Result<()> {
    if Some(len) != rows.checked_mul(cols).and_then(|rc| rc.checked_mul(per)) {
        return Err(Error::InvalidArgument(format!(
            "{what}: a {format} matrix of {rows} x {cols} needs {} values, got {len}",
            rows.saturating_mul(cols).saturating_mul(per)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_have_ggml_ids_sizes_and_names() {
        for f in Format::ALL {
            assert_eq!(Format::from_ggml_type(f.ggml_type()).unwrap(), f);
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            assert_eq!(f.name().to_uppercase().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        let sizes: Vec<_> = [
            Format::F32,
            Format::F16,
            Format::Q8_0,
            Format::Q4_0,
            Format::Q4_1,
        ]
        .map(|f| (f.ggml_type(), f.block_values(), f.block_bytes()))
        .into();
        assert_eq!(
            sizes,
            [(0, 1, 4), (1, 1, 2), (8, 32, 34), (2, 32, 18), (3, 32, 20)]
        );
        assert_eq!(Format::Q4_1.row_bytes(576).unwrap(), 18 * 20);
        let e = Format::Q8_0.row_bytes(100).unwrap_err().to_string();
        assert!(e.contains("q8_0") && e.contains("100"), "{e}");
        let e = Format::from_ggml_type(12).unwrap_err().to_string();
        assert!(e.contains("12"), "{e}");
        assert!("q5_0".parse::<Format>().is_err());
    }

    #[test]
    fn quantize_then_dequantize_is_each_rows_blocks() {
        let (rows, cols) = (3, 64);
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        for f in Format::ALL {
            let q = QMatrix::quantize(f, rows, cols, &w).unwrap();
            assert_eq!(q.bytes().len(), rows * f.row_bytes(cols).unwrap());
            let back = q.dequantize();
            // each row is its own blocks: row 1 alone gives the same values
            let one = QMatrix::quantize(f, 1, cols, &w[cols..2 * cols]).unwrap();
            assert_eq!(&back[cols..2 * cols], one.dequantize().as_slice());
            let worst = w
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            let step = match f {
                Format::F32 => 0.0,
                Format::F16 => 1e-3,
                Format::Q8_0 => 1.0 / 127.0,
                // the value opposite the largest maps to +8 and is clamped to +7: a whole step
                Format::Q4_0 => 2.0 / 8.0,
                Format::Q4_1 => 2.0 / 15.0,
            };
            // half a step of a block whose values lie in [-1, 1], plus the f16 rounding of
            // the scale, which moves q·d by at most |q| d 2^-11 ≤ 127 d / 2048 < step / 16
            assert!(worst <= step * (0.5 + 1.0 / 16.0) + 1e-6, "{f}: {worst}");
            let again = QMatrix::from_bytes(f, rows, cols, q.bytes().to_vec()).unwrap();
            assert_eq!(again, q);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let e = QMatrix::from_bytes(Format::Q4_0, 2, 32, vec![0u8; 35])
            .unwrap_err()
            .to_string();
        assert!(e.contains("36") && e.contains("35"), "{e}");
        assert!(QMatrix::quantize(Format::Q8_0, 2, 32, &[0.0; 63]).is_err());
        assert!(QMatrix::quantize(Format::Q8_0, 1, 48, &[0.0; 48]).is_err());
        assert!(QMatrix::quantize(Format::F16, 1, 48, &[0.0; 48]).is_ok());
    }

    /// `matmul` against f64 sums over the dequantized weight, on uneven shapes and n = 1, 3,
    /// 17. The bound per output is the kernels' (see `kernels::tests`): the activation's
    /// rounding, Σ_b 0.5625 d_x,b Σ_j |ŵ_j| (0 for f32 and f16 weights, whose activations
    /// stay f32), plus 1e-5 · Σ |ŵ x| for f32 rounding (and Q4_1's s_x term, ≤ 2^-10
    /// relative, inside that for these data). Each row of the product is also the matvec
    /// of that row, bit for bit, and the portable kernels give the same bits.
    #[test]
    fn matmul_matches_the_dequantized_product() {
        for (rows, cols) in [(37, 96), (5, 32), (130, 320)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1 + (i as f32 * 0.37).sin())
                .collect();
            for f in Format::ALL {
                let q = QMatrix::quantize(f, rows, cols, &w).unwrap();
                let wq = q.dequantize();
                for n in [1, 3, 17] {
                    let x: Vec<f32> = (0..n * cols)
                        .map(|i| (i as f32 * 0.71).cos() * 2.0)
                        .collect();
                    let mut y = vec![f32::NAN; n * rows];
                    q.matmul(&mut y, &x, n);
                    let mut yp = vec![f32::NAN; n * rows];
                    q.matmul_with(Portable, simd::Portable, &mut yp, &x, n);
                    for t in 0..n {
                        let xt = &x[t * cols..(t + 1) * cols];
                        let xb: Vec<BlockQ8_0> = quantize_row(xt);
                        let mut y1 = vec![0.0; rows];
                        q.matvec(&mut y1, xt);
                        assert_eq!(&y[t * rows..(t + 1) * rows], y1.as_slice(), "{f} row {t}");
                        for r in 0..rows {
                            let wr = &wq[r * cols..(r + 1) * cols];
                            let exact: f64 =
                                wr.iter().zip(xt).map(|(a, b)| *a as f64 * *b as f64).sum();
                            let mass: f64 = wr
                                .iter()
                                .zip(xt)
                                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                                .sum();
                            let act: f64 = if matches!(f, Format::F32 | Format::F16) {
                                0.0
                            } else {
                                xb.iter()
                                    .zip(wr.chunks_exact(QK))
                                    .map(|(b, w)| {
                                        0.5625
                                            * b.d.get() as f64
                                            * w.iter().map(|v| v.abs() as f64).sum::<f64>()
                                    })
                                    .sum()
                            };
                            let got = y[t * rows + r] as f64;
                            assert!(
                                (got - exact).abs() <= act + 1e-5 * mass,
                                "{f} {rows}x{cols} n={n} ({t}, {r}): {got} vs {exact}"
                            );
                            if !matches!(f, Format::F32 | Format::F16) {
                                assert_eq!(
                                    got.to_bits(),
                                    (yp[t * rows + r] as f64).to_bits(),
                                    "{f}: portable"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
