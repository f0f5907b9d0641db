//! GGUF, the file format of llama.cpp and ggml: one file holding a model's settings
//! (key-value metadata) and its tensors, each in its own ggml type.
//!
//! ```text
//! "GGUF"  u32 version (3)  u64 n_tensors  u64 n_kv
//! n_kv times:      string key, u32 value type, value
//! n_tensors times: string name, u32 n_dims, u64 ne[n_dims] (innermost first),
//!                  u32 ggml type, u64 offset (from the start of the data)
//! padding to `general.alignment` (32 unless the metadata says otherwise)
//! the tensors' bytes, each at its offset, each offset a multiple of the alignment
//! ```
//!
//! Everything is little-endian; a string is a `u64` length and that many UTF-8 bytes; a
//! value is one of 13 types ([`Value`]), arrays included (of any type, arrays too). The
//! dimensions are ggml's `ne`, innermost first: a `(rows, cols)` row-major matrix has
//! `ne = [cols, rows]`.
//!
//! [`llama`] maps a chapter 4 Llama to and from this container as llama.cpp's converter
//! does.
//!
//! [`Gguf::parse`] checks everything against the file's length before it allocates or
//! slices, so a truncated or corrupted file is an [`Error::Checkpoint`] naming the
//! problem (the key or tensor, the offset), never a panic. [`Gguf::to_bytes`] writes what
//! [`Gguf::parse`] reads, byte for byte; [`Gguf::write`] does so atomically.
//!
//! [`Gguf::read`] memory-maps the file, as llama.cpp does, instead of reading it: the
//! metadata is parsed into values, and each tensor's bytes stay a view of the map
//! ([`Storage::Mapped`]), which a [`QMatrix`] shares without a copy. Loading then costs
//! the metadata and nothing per weight; the operating system reads a page of the file when
//! it is first touched (the first token), keeps it in its page cache, and shares it with
//! any other process using the file, so the weights are in memory once, not once in the
//! cache and again in our heap. Every tensor's range is checked against the file's length
//! before it is viewed, so a truncated file is an error, not a fault on a page past its
//! end. The views need no alignment: the blocks are byte structs (alignment 1), and f32
//! rows are viewed in place only where aligned (a GGUF file aligns them, to 32 bytes by
//! default, and a map starts on a page).
//!
//! ```
//! use llm_lessons::quant::gguf::{Gguf, Value};
//! use llm_lessons::quant::matrix::{Format, QMatrix};
//! let w: Vec<f32> = (0..2 * 64).map(|i| i as f32 / 100.0).collect();
//! let mut g = Gguf::new();
//! g.set("general.architecture", Value::String("llama".into()));
//! g.add_matrix("blk.0.attn_q.weight", &QMatrix::quantize(Format::Q8_0, 2, 64, &w).unwrap()).unwrap();
//! let bytes = g.to_bytes().unwrap();
//! let back = Gguf::parse(&bytes, "in memory".as_ref()).unwrap();
//! assert_eq!(back, g);
//! assert_eq!(back.tensor("blk.0.attn_q.weight").unwrap().dims, [64, 2]);
//! assert_eq!(back.get_str("general.architecture").unwrap(), "llama");
//! ```

pub mod llama;

use super::matrix::{Format, QMatrix, Storage};
use crate::{Error, Result};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// The four bytes a GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// The version this crate writes (and, with version 2, which is the same layout, reads).
pub const VERSION: u32 = 3;
/// The data alignment when `general.alignment` is not set.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's most dimensions per tensor.
pub const MAX_DIMS: usize = 4;
/// How deep arrays of arrays may nest (a bound so that a hostile file cannot exhaust the
/// stack; llama.cpp's own files nest one level).
const MAX_NESTING: usize = 8;
/// The most items reserved up front for a count read from the file.
const PREALLOCATE: usize = 1 << 16;

/// The type of a metadata value, with GGUF's type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    const ALL: [ValueType; 13] = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::Array,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ];

    /// The type of a GGUF type id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// The fewest bytes a value of this type takes (a string's or array's length field).
    fn min_bytes(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Values of one type (`ty`), which [`Gguf::to_bytes`] checks.
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// An integer of any width and sign that is not negative, as a `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A number of any type, as an `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// A string's text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// An array of strings, as `&str`s.
    pub fn as_strings(&self) -> Option<Vec<&str>> {
        match self {
            Value::Array(ValueType::String, v) => v.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }

    /// An array of strings from `items`.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }
}

/// A tensor: its name, its ggml dimensions (innermost first), its format and its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    pub name: String,
    /// ggml's `ne`: `dims[0]` is the length of a row (the innermost dimension).
    pub dims: Vec<u64>,
    pub format: Format,
    /// The tensor's bytes, rows of whole blocks, as `format` stores them: owned, or a view
    /// of the mapped file ([`Gguf::read`]).
    pub data: Storage,
}

impl GgufTensor {
    /// `(rows, cols)` of the tensor seen as a row-major matrix: `cols = dims[0]`, `rows` the
    /// product of the others.
    pub fn matrix_shape(&self) -> (usize, usize) {
        let cols = self.dims.first().copied().unwrap_or(1) as usize;
        let rows = self.dims.iter().skip(1).product::<u64>() as usize;
        (rows, cols)
    }

    /// The tensor as a [`QMatrix`] over its bytes (no copy).
    pub fn to_qmatrix(&self) -> Result<QMatrix> {
        let (rows, cols) = self.matrix_shape();
        QMatrix::from_bytes(self.format, rows, cols, self.data.clone())
    }

    /// The values as f32, in ggml's order (row after row).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(self.to_qmatrix()?.dequantize())
    }
}

/// A GGUF file: version, metadata in file order, tensors in file order (their bytes owned,
/// or views of the mapped file).
#[derive(Clone, Debug, PartialEq)]
pub struct Gguf {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<GgufTensor>,
}

impl Default for Gguf {
    fn default() -> Self {
        Gguf::new()
    }
}

/// An error about the file at `path`.
fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads the file's fields in order, checking each against the bytes left.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(bad(
                self.path,
                format!(
                    "truncated: {} needs {n} bytes at offset {}, the file has {} left",
                    what(),
                    self.pos,
                    self.left()
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("the length of {}", what()))?;
        let at = self.pos;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|e| {
            bad(
                self.path,
                format!(
                    "{} is not UTF-8 (invalid byte at offset {})",
                    what(),
                    at + e.utf8_error().valid_up_to()
                ),
            )
        })
    }

    /// A count of items of at least `min` bytes each, checked against the bytes left, so
    /// that a huge count is an error before anything is allocated.
    fn count(&mut self, min: u64, what: &dyn Fn() -> String) -> Result<usize> {
        let n = self.u64(what)?;
        if n.saturating_mul(min) > self.left() {
            return Err(bad(
                self.path,
                format!(
                    "{} is {n}, more than the {} bytes left at offset {} can hold",
                    what(),
                    self.left(),
                    self.pos
                ),
            ));
        }
        Ok(n as usize)
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value> {
        let what = || format!("the value of {key}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&what)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&what)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => match self.array::<1>(&what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(bad(
                        self.path,
                        format!("{key}: a bool is 0 or 1, not {b} (offset {})", self.pos - 1),
                    ))
                }
            },
            ValueType::String => Value::String(self.string(&what)?),
            ValueType::Array => {
                if depth >= MAX_NESTING {
                    return Err(bad(
                        self.path,
                        format!("{key}: arrays nested more than {MAX_NESTING} deep"),
                    ));
                }
                let id = self.u32(&|| format!("the element type of {key}"))?;
                let elem = ValueType::from_id(id).ok_or_else(|| {
                    bad(
                        self.path,
                        format!("{key}: unknown array element type {id} (GGUF has 0 to 12)"),
                    )
                })?;
                let n = self.count(elem.min_bytes(), &|| {
                    format!("the length of the array {key}")
                })?;
                // grown as the items are read: a count is only checked against the
                // bytes left, and a value in memory is larger than its smallest encoding
                let mut items = Vec::with_capacity(n.min(PREALLOCATE));
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }
}

/// `x` rounded up to a multiple of `align`, or `None` on overflow.
fn align_up(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v / align * align)
}

impl Gguf {
    /// An empty version-3 file.
    pub fn new() -> Gguf {
        Gguf {
            version: VERSION,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Memory-maps the file at `path` (read-only) and parses it as [`Gguf::parse`] does;
    /// the tensors' bytes are views of the map ([`Storage::Mapped`]), not copies.
    ///
    /// The map stays valid while any tensor or matrix made from it lives, even if the file
    /// is replaced (this crate's writers rename a new file over the old one, which leaves
    /// the mapped one intact). A program that truncates or rewrites the file in place
    /// while it is mapped changes the weights under the model or makes a read past the new
    /// end fault (SIGBUS), as with llama.cpp's maps.
    pub fn read(path: &Path) -> Result<Gguf> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the map is read-only and every view is checked against its length (the
        // file's, when mapped); see above for a file changed by another program meanwhile
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| {
            bad(
                path,
                format!("cannot memory-map the file ({e}): is it a regular file?"),
            )
        })?;
        let map = Arc::new(map);
        Gguf::parse_with(&map, path, |range| {
            Storage::mapped(map.clone(), range).expect("checked against the file's length")
        })
    }

    /// Parses a GGUF file's bytes; `path` names it in errors. Checks the magic, the version,
    /// every length and count against the bytes left, value and tensor types, unique keys
    /// and tensor names, the alignment, each tensor's shape (at most 4 dimensions, rows of
    /// whole blocks, no overflow) and that its bytes lie inside the file at an aligned
    /// offset. The tensors' bytes are copied out of `bytes` ([`Gguf::read`] maps a file
    /// instead).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Gguf> {
        Gguf::parse_with(bytes, path, |range| Storage::from(&bytes[range]))
    }

    /// [`Gguf::parse`], each tensor's bytes made by `data` from their range in `bytes`
    /// (checked to lie inside it first).
    fn parse_with(
        bytes: &[u8],
        path: &Path,
        data: impl Fn(Range<usize>) -> Storage,
    ) -> Result<Gguf> {
        let mut r = Reader {
            bytes,
            pos: 0,
            path,
        };
        let magic = r.array::<4>(&|| "the magic number".into())?;
        if &magic != MAGIC {
            return Err(bad(
                path,
                format!("not a GGUF file: it starts with {magic:02x?}, not \"GGUF\""),
            ));
        }
        let version = r.u32(&|| "the version".into())?;
        if !(version == 2 || version == 3) {
            return Err(bad(
                path,
                format!("GGUF version {version}: this reader reads versions 2 and 3"),
            ));
        }
        // a tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes, a key-value 8 + 4 + 1
        let n_tensors = r.count(32, &|| "the tensor count".into())?;
        let n_kv = r.count(13, &|| "the metadata count".into())?;
        let mut g = Gguf {
            version,
            metadata: Vec::with_capacity(n_kv.min(PREALLOCATE)),
            tensors: Vec::with_capacity(n_tensors.min(PREALLOCATE)),
        };
        let mut keys = std::collections::HashSet::new();
        for i in 0..n_kv {
            let key = r.string(&|| format!("metadata key #{i}"))?;
            let id = r.u32(&|| format!("the type of {key}"))?;
            let ty = ValueType::from_id(id).ok_or_else(|| {
                bad(
                    path,
                    format!("{key}: unknown value type {id} (GGUF has 0 to 12)"),
                )
            })?;
            let value = r.value(ty, &key, 0)?;
            if !keys.insert(key.clone()) {
                return Err(bad(path, format!("metadata key {key} appears twice")));
            }
            g.metadata.push((key, value));
        }
        let alignment = match g.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(bad(
                    path,
                    format!("general.alignment is {v:?}: it must be a u32 power of two"),
                ))
            }
        };
        let mut infos = Vec::with_capacity(n_tensors.min(PREALLOCATE));
        let mut names = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let name = r.string(&|| format!("the name of tensor #{i}"))?;
            let n_dims = r.u32(&|| format!("the dimension count of {name}"))? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(bad(
                    path,
                    format!("tensor {name} has {n_dims} dimensions: ggml allows 1 to {MAX_DIMS}"),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("dimension {d} of {name}"))?);
            }
            let type_id = r.u32(&|| format!("the type of {name}"))?;
            let format = Format::from_ggml_type(type_id)
                .map_err(|e| bad(path, format!("tensor {name}: {e}")))?;
            let offset = r.u64(&|| format!("the offset of {name}"))?;
            if !names.insert(name.clone()) {
                return Err(bad(path, format!("tensor {name} appears twice")));
            }
            let size = tensor_bytes(&name, &dims, format).map_err(|e| bad(path, e))?;
            if offset % alignment != 0 {
                return Err(bad(
                    path,
                    format!("tensor {name}: offset {offset} is not a multiple of the alignment {alignment}"),
                ));
            }
            infos.push((name, dims, format, offset, size));
        }
        let data_start = align_up(r.pos as u64, alignment).expect("a file position");
        let data_len = (bytes.len() as u64).saturating_sub(data_start);
        for (name, dims, format, offset, size) in infos {
            match offset.checked_add(size) {
                Some(end) if end <= data_len => {}
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "tensor {name}: its {size} bytes at offset {offset} go past the end \
                             of the data ({data_len} bytes from offset {data_start}): the file \
                             is truncated or the offset is wrong"
                        ),
                    ))
                }
            }
            let at = (data_start + offset) as usize;
            g.tensors.push(GgufTensor {
                name,
                dims,
                format,
                data: data(at..at + size as usize),
            });
        }
        Ok(g)
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` (in place if present, else at the end).
    pub fn set(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_string(), value)),
        }
    }

    /// The value of `key`, or an error naming the missing key.
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| Error::InvalidArgument(format!("GGUF metadata: {key} is missing")))
    }

    /// `key` as a whole number (of any integer type), or an error naming the key.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| {
            Error::InvalidArgument(format!("GGUF metadata: {key} is {v:?}, not a whole number"))
        })
    }

    /// `key` as a number, or an error naming the key.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| {
            Error::InvalidArgument(format!("GGUF metadata: {key} is {v:?}, not a number"))
        })
    }

    /// `key` as a string, or an error naming the key.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| {
            Error::InvalidArgument(format!("GGUF metadata: {key} is {v:?}, not a string"))
        })
    }

    /// The data alignment: `general.alignment`, or 32.
    pub fn alignment(&self) -> u64 {
        match self.get("general.alignment") {
            Some(Value::U32(a)) => u64::from(*a),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Adds a tensor, checking that its bytes fit its dimensions and format.
    pub fn add_tensor(&mut self, tensor: GgufTensor) -> Result<()> {
        let size = tensor_bytes(&tensor.name, &tensor.dims, tensor.format)
            .map_err(Error::InvalidArgument)?;
        if size != tensor.data.len() as u64 {
            return Err(Error::InvalidArgument(format!(
                "tensor {}: {} {} values of dims {:?} take {size} bytes, not {}",
                tensor.name,
                tensor.format,
                tensor.dims.iter().product::<u64>(),
                tensor.dims,
                tensor.data.len()
            )));
        }
        if self.tensor(&tensor.name).is_some() {
            return Err(Error::InvalidArgument(format!(
                "tensor {} is already in the file",
                tensor.name
            )));
        }
        self.tensors.push(tensor);
        Ok(())
    }

    /// Adds a matrix as a 2-dimensional tensor (`dims = [cols, rows]`).
    pub fn add_matrix(&mut self, name: &str, m: &QMatrix) -> Result<()> {
        self.add_tensor(GgufTensor {
            name: name.to_string(),
            dims: vec![m.cols as u64, m.rows as u64],
            format: m.format,
            // shared, not copied
            data: m.storage.clone(),
        })
    }

    /// Adds f32 values as a tensor of `dims` (innermost first).
    pub fn add_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> Result<()> {
        self.add_tensor(GgufTensor {
            name: name.to_string(),
            dims: dims.to_vec(),
            format: Format::F32,
            data: values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        })
    }

    /// The file's bytes: header, metadata, tensor infos, padding, then each tensor at the
    /// next multiple of the alignment (zero padding), as gguf-py writes them.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let align = match self.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(Error::InvalidArgument(format!(
                    "general.alignment is {v:?}: it must be a u32 power of two"
                )))
            }
        };
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend((value.value_type() as u32).to_le_bytes());
            put_value(&mut out, key, value)?;
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.format.ggml_type().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = align_up(offset + t.data.len() as u64, align).expect("in memory");
        }
        let pad = |out: &mut Vec<u8>| {
            let to = align_up(out.len() as u64, align).expect("in memory") as usize;
            out.resize(to, 0);
        };
        pad(&mut out);
        let data_start = out.len();
        for (t, offset) in self.tensors.iter().zip(offsets) {
            debug_assert_eq!(out.len() - data_start, offset as usize);
            out.extend_from_slice(&t.data);
            pad(&mut out);
        }
        Ok(out)
    }

    /// Writes the file atomically (a temporary file renamed over `path`).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::data::write_atomic(path, &self.to_bytes()?)
    }
}

// ANCHOR: tensor_bytes
/// The bytes of a tensor of `dims` in `format`, or why the shape is impossible.
fn tensor_bytes(name: &str, dims: &[u64], format: Format) -> std::result::Result<u64, String> {
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(format!(
            "tensor {name} has {} dimensions: ggml allows 1 to {MAX_DIMS}",
            dims.len()
        ));
    }
    let values = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| {
            format!("tensor {name}: dims {dims:?} hold more values than ggml can count")
        })?;
    let per = format.block_values() as u64;
    if dims[0] % per != 0 {
        return Err(format!(
            "tensor {name}: rows of {} {format} values are not whole blocks of {per}",
            dims[0]
        ));
    }
    (values / per)
        .checked_mul(format.block_bytes() as u64)
        .ok_or_else(|| format!("tensor {name}: dims {dims:?} are too large"))
}
// ANCHOR_END: tensor_bytes

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, key: &str, value: &Value) -> Result<()> {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.push(*v as u8),
        Value::U16(v) => out.extend(v.to_le_bytes()),
        Value::I16(v) => out.extend(v.to_le_bytes()),
        Value::U32(v) => out.extend(v.to_le_bytes()),
        Value::I32(v) => out.extend(v.to_le_bytes()),
        Value::F32(v) => out.extend(v.to_le_bytes()),
        Value::U64(v) => out.extend(v.to_le_bytes()),
        Value::I64(v) => out.extend(v.to_le_bytes()),
        Value::F64(v) => out.extend(v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array(ty, items) => {
            out.extend((*ty as u32).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *ty {
                    return Err(Error::InvalidArgument(format!(
                        "GGUF metadata {key}: an array of {ty:?} holds a {:?}",
                        item.value_type()
                    )));
                }
                put_value(out, key, item)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
