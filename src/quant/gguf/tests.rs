use super::*;
use rand::{Rng, SeedableRng};

/// A small file with every value type (arrays of each, an array of arrays, an empty
/// array), an alignment of 64, and a tensor in each format, one of them 3-dimensional.
fn sample() -> Gguf {
    let mut g = Gguf::new();
    let scalars = [
        Value::U8(200),
        Value::I8(-100),
        Value::U16(60000),
        Value::I16(-30000),
        Value::U32(4_000_000_000),
        Value::I32(-2_000_000_000),
        Value::F32(1.5e-5),
        Value::Bool(true),
        Value::String("héllo".into()),
        Value::U64(u64::MAX - 1),
        Value::I64(i64::MIN + 1),
        Value::F64(-2.5e100),
    ];
    for (i, v) in scalars.iter().enumerate() {
        g.set(&format!("test.scalar.{i}"), v.clone());
        g.set(
            &format!("test.array.{i}"),
            Value::Array(v.value_type(), vec![v.clone(), v.clone()]),
        );
    }
    g.set(
        "test.nested",
        Value::Array(
            ValueType::Array,
            vec![
                Value::Array(ValueType::U8, vec![Value::U8(1)]),
                Value::Array(ValueType::String, vec![]),
            ],
        ),
    );
    g.set("general.alignment", Value::U32(64));
    let w: Vec<f32> = (0..3 * 64).map(|i| (i as f32 * 0.3).sin()).collect();
    for f in Format::ALL {
        let m = QMatrix::quantize(f, 3, 64, &w).unwrap();
        g.add_matrix(&format!("m.{f}"), &m).unwrap();
    }
    g.add_f32("norm", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    g.add_f32("cube", &[2, 3, 2], &[0.5; 12]).unwrap();
    g
}

fn p() -> &'static Path {
    Path::new("test.gguf")
}

#[test]
fn write_then_read_gives_the_same_file() {
    let g = sample();
    let bytes = g.to_bytes().unwrap();
    let back = Gguf::parse(&bytes, p()).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.to_bytes().unwrap(), bytes);
    assert_eq!(back.alignment(), 64);
    // the data of each tensor starts at a multiple of 64 in the file
    let at = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    assert_eq!(at(&back.tensor("norm").unwrap().data) % 64, 0);
    assert_eq!(back.get_u64("test.scalar.0").unwrap(), 200);
    assert!(back.get_u64("test.scalar.1").is_err()); // -100
    assert_eq!(back.get_f64("test.scalar.1").unwrap(), -100.0);
    assert_eq!(back.get_str("test.scalar.8").unwrap(), "héllo");
    assert!(back
        .get_str("missing")
        .unwrap_err()
        .to_string()
        .contains("missing"));
    let q = back.tensor("m.q4_1").unwrap();
    assert_eq!(
        (q.dims.as_slice(), q.matrix_shape()),
        (&[64, 3][..], (3, 64))
    );
    assert_eq!(back.tensor("cube").unwrap().matrix_shape(), (6, 2));
    // the default alignment is 32 and needs no key
    let mut g = sample();
    g.metadata.retain(|(k, _)| k != "general.alignment");
    let bytes = g.to_bytes().unwrap();
    assert_eq!(Gguf::parse(&bytes, p()).unwrap(), g);
    // a file of nothing but a header
    let empty = Gguf::new().to_bytes().unwrap();
    assert_eq!(empty.len(), 32); // a 24-byte header, padded to the alignment
    assert_eq!(Gguf::parse(&empty, p()).unwrap(), Gguf::new());
}

#[test]
fn the_writer_refuses_what_it_cannot_write() {
    let mut g = Gguf::new();
    let e = g.add_f32("x", &[3, 2], &[0.0; 5]).unwrap_err().to_string();
    assert!(e.contains("tensor x") && e.contains("24"), "{e}");
    g.add_f32("x", &[2], &[0.0; 2]).unwrap();
    assert!(g.add_f32("x", &[2], &[0.0; 2]).is_err());
    let bad_block = GgufTensor {
        name: "q".into(),
        dims: vec![48, 1],
        format: Format::Q8_0,
        data: vec![0u8; 51].into(),
    };
    let e = g.add_tensor(bad_block).unwrap_err().to_string();
    assert!(e.contains("whole blocks"), "{e}");
    g.set("bad", Value::Array(ValueType::U8, vec![Value::I8(1)]));
    assert!(g.to_bytes().is_err());
    g.set("bad", Value::U8(0));
    g.set("general.alignment", Value::U32(48));
    assert!(g
        .to_bytes()
        .unwrap_err()
        .to_string()
        .contains("power of two"));
}

/// A file with one tensor info whose fields are given, and `data` bytes of data.
fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(MAGIC);
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    put_string(&mut b, "blk.0.attn_q.weight");
    b.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        b.extend(d.to_le_bytes());
    }
    b.extend(ty.to_le_bytes());
    b.extend(offset.to_le_bytes());
    b.resize(b.len().div_ceil(32) * 32 + data, 0);
    b
}

#[test]
fn bad_files_are_errors_that_say_what_is_wrong() {
    let err = |b: &[u8]| Gguf::parse(b, p()).unwrap_err().to_string();
    Gguf::parse(&one_tensor(&[32, 2], 8, 0, 68), p()).unwrap();
    let e = err(b"GGML\x03\0\0\0");
    assert!(
        e.contains("test.gguf") && e.contains("not a GGUF file"),
        "{e}"
    );
    let mut v1 = one_tensor(&[32, 2], 8, 0, 68);
    v1[4] = 1;
    assert!(err(&v1).contains("version 1"));
    let e = err(&one_tensor(&[32, 2], 8, 0, 67));
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("past the end"),
        "{e}"
    );
    let e = err(&one_tensor(&[32, 2], 8, 32, 68));
    assert!(e.contains("past the end"), "{e}");
    let e = err(&one_tensor(&[32, 2], 8, 16, 200));
    assert!(e.contains("alignment"), "{e}");
    let e = err(&one_tensor(&[32, 2], 12, 0, 68));
    assert!(
        e.contains("blk.0.attn_q.weight") && e.contains("12") && e.contains("k-quant"),
        "{e}"
    );
    let e = err(&one_tensor(&[48, 2], 8, 0, 200));
    assert!(e.contains("whole blocks"), "{e}");
    let e = err(&one_tensor(&[1 << 40, 1 << 40], 0, 0, 64));
    assert!(e.contains("more values than ggml can count"), "{e}");
    let e = err(&one_tensor(&[u64::MAX / 2, 1], 0, 0, 64));
    assert!(e.contains("too large") || e.contains("past the end"), "{e}");
    let e = err(&one_tensor(&[1, 1, 1, 1, 1], 0, 0, 64));
    assert!(e.contains("5 dimensions"), "{e}");
    let e = err(&one_tensor(&[], 0, 0, 64));
    assert!(e.contains("0 dimensions"), "{e}");
    let e = err(&one_tensor(&[32, 2], 8, u64::MAX - 31, 68));
    assert!(e.contains("past the end"), "{e}");
    // a huge tensor count, a huge string length
    let mut b = one_tensor(&[32, 2], 8, 0, 68);
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&b).contains("tensor count"));
    let mut b = one_tensor(&[32, 2], 8, 0, 68);
    b[24..32].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(err(&b).contains("truncated"));
    // two tensors of one name, two values of one key, a bad alignment
    let mut g = Gguf::new();
    g.add_f32("a", &[1], &[1.0]).unwrap();
    g.add_f32("b", &[1], &[1.0]).unwrap();
    g.tensors[1].name = "a".into();
    assert!(err(&g.to_bytes().unwrap()).contains("tensor a appears twice"));
    let mut g = Gguf::new();
    g.metadata.push(("k".into(), Value::U8(1)));
    g.metadata.push(("k".into(), Value::U8(2)));
    assert!(err(&g.to_bytes().unwrap()).contains("k appears twice"));
    let mut g = Gguf::new();
    g.set("general.alignment", Value::U32(64));
    let mut b = g.to_bytes().unwrap();
    let at = 24 + 8 + "general.alignment".len() + 4; // header, key, type: the value
    b[at] = 48;
    assert!(err(&b).contains("general.alignment is U32(48)"));
    // a bool that is 2, an unknown value type, arrays nested too deep
    let mut g = Gguf::new();
    g.set("flag", Value::Bool(true));
    let mut b = g.to_bytes().unwrap();
    let at = 24 + 8 + 4 + 4; // header, key, type: the bool
    b[at] = 2;
    assert!(err(&b).contains("flag: a bool is 0 or 1"));
    b[at - 4] = 13;
    assert!(err(&b).contains("unknown value type 13"));
    let mut v = Value::U8(0);
    for _ in 0..10 {
        v = Value::Array(v.value_type(), vec![v]);
    }
    let mut g = Gguf::new();
    g.set("deep", v);
    assert!(err(&g.to_bytes().unwrap()).contains("nested"));
    let e = Gguf::read(Path::new("/nonexistent/x.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
}

/// The reader on corrupted files: cut at every length, and with bytes changed at random
/// (seeded), it returns an error or a file, and never panics. A cut file is an error unless
/// only the zero padding after the last tensor went.
#[test]
fn corrupted_files_are_errors_never_panics() {
    let bytes = sample().to_bytes().unwrap();
    for cut in 0..bytes.len() {
        let r = std::panic::catch_unwind(|| Gguf::parse(&bytes[..cut], p()));
        match r {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => {
                // only the padding after the last tensor can go
                let g = Gguf::parse(&bytes[..cut], p()).unwrap();
                assert_eq!(
                    g,
                    sample(),
                    "cut at {cut} of {} parses differently",
                    bytes.len()
                );
            }
            Err(_) => panic!("the reader panicked on the file cut at {cut}"),
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    let (mut errors, mut parsed) = (0, 0);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..b.len());
            b[i] = match rng.gen_range(0..3) {
                0 => rng.gen(),
                1 => b[i] ^ (1 << rng.gen_range(0..8)),
                _ => 0xff,
            };
        }
        match std::panic::catch_unwind(|| Gguf::parse(&b, p())) {
            Ok(Ok(_)) => parsed += 1,
            Ok(Err(_)) => errors += 1,
            Err(_) => panic!("the reader panicked on a corrupted file"),
        }
    }
    // most changes land in tensor data or metadata values, which stay readable
    assert!(
        errors > 100 && parsed > 100,
        "{errors} errors, {parsed} parsed"
    );
}

/// A scratch folder for files this test writes, removed and made anew.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-lessons-gguf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `read` maps the file: the same file as `parse` gives, each tensor a view of the map,
/// and a matrix made from a tensor is a view of the same bytes (no copy).
#[test]
fn read_maps_the_file_and_matrices_share_its_bytes() {
    let dir = scratch("map");
    let path = dir.join("sample.gguf");
    let g = sample();
    g.write(&path).unwrap();
    let back = Gguf::read(&path).unwrap();
    assert_eq!(back, g);
    assert_eq!(back.to_bytes().unwrap(), std::fs::read(&path).unwrap());
    for t in &back.tensors {
        assert!(t.data.is_mapped(), "{}", t.name);
        if t.dims.len() == 2 {
            let m = t.to_qmatrix().unwrap();
            assert!(m.storage.is_mapped());
            assert_eq!(m.bytes().as_ptr(), t.data.as_ptr(), "{}", t.name);
        }
    }
    // in-memory bytes are copied into owned storage; writing a mapped matrix shares it
    let parsed = Gguf::parse(&std::fs::read(&path).unwrap(), &path).unwrap();
    assert!(parsed.tensors.iter().all(|t| !t.data.is_mapped()));
    let m = back.tensor("m.q4_1").unwrap().to_qmatrix().unwrap();
    let mut again = Gguf::new();
    again.add_matrix("m", &m).unwrap();
    assert_eq!(again.tensors[0].data.as_ptr(), m.bytes().as_ptr());
    // the map outlives the file's replacement (writers rename a new file over it)
    Gguf::new().write(&path).unwrap();
    assert_eq!(m, back.tensor("m.q4_1").unwrap().to_qmatrix().unwrap());
    assert_eq!(m.dequantize().len(), 3 * 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file cut anywhere in its tensors' bytes (well formed up to there) is an error from
/// `read` that says it is truncated: the ranges are checked against the file's length
/// before anything is viewed, so no read faults on a page past the end. An empty file and
/// a folder are errors too.
#[test]
fn truncated_mapped_files_are_errors() {
    let dir = scratch("cut");
    let path = dir.join("cut.gguf");
    let bytes = sample().to_bytes().unwrap();
    let data: usize = sample().tensors.iter().map(|t| t.data.len()).sum();
    let first_data = bytes.len() - data - 64; // within the header or the first tensor
    for cut in [0, 3, 100, first_data, bytes.len() - 200, bytes.len() - 30] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = Gguf::read(&path).unwrap_err().to_string();
        assert!(e.contains("cut.gguf"), "cut at {cut}: {e}");
        if cut >= first_data {
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
    }
    let e = Gguf::read(&dir).unwrap_err().to_string();
    assert!(e.contains("memory-map") || e.contains("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// ggml's blocks are byte structs (alignment 1), so a mapped tensor at any address is
/// viewed in place; f32 rows not at a multiple of 4 are converted, not viewed. A file
/// with `general.alignment` 1 puts tensors at every address mod 4: each matrix read from
/// the map is the one written, and multiplies to the same bits as its owned copy.
#[test]
fn mapped_tensors_at_any_address_multiply_as_owned_ones() {
    assert_eq!(
        [
            std::mem::align_of::<crate::quant::blocks::BlockQ8_0>(),
            std::mem::align_of::<crate::quant::blocks::BlockQ4_0>(),
            std::mem::align_of::<crate::quant::blocks::BlockQ4_1>(),
        ],
        [1, 1, 1]
    );
    let dir = scratch("align");
    let path = dir.join("a.gguf");
    let w: Vec<f32> = (0..5 * 64).map(|i| (i as f32 * 0.7).cos()).collect();
    let x: Vec<f32> = (0..2 * 64).map(|i| (i as f32 * 0.3).sin()).collect();
    let mut residues = std::collections::HashSet::new();
    for pad in 0..4 {
        let mut g = Gguf::new();
        g.set("general.alignment", Value::U32(1));
        g.set("pad", Value::String("x".repeat(pad)));
        g.add_f32("odd", &[3], &[1.0, 2.0, 3.0]).unwrap(); // 12 bytes
        for f in Format::ALL {
            g.add_matrix(&format!("m.{f}"), &QMatrix::quantize(f, 5, 64, &w).unwrap())
                .unwrap();
        }
        g.write(&path).unwrap();
        let back = Gguf::read(&path).unwrap();
        for (t, want) in back.tensors.iter().zip(&g.tensors) {
            assert!(t.data.is_mapped());
            residues.insert((t.format, t.data.as_ptr() as usize % 4));
            if t.dims.len() < 2 {
                continue;
            }
            let (m, owned) = (t.to_qmatrix().unwrap(), want.to_qmatrix().unwrap());
            assert_eq!(m, owned);
            let (mut y, mut y_owned) = (vec![0.0; 2 * 5], vec![0.0; 2 * 5]);
            m.matmul(&mut y, &x, 2);
            owned.matmul(&mut y_owned, &x, 2);
            assert_eq!(y, y_owned, "{}", t.name);
        }
    }
    // the f32 matrix sat at every residue mod 4, unaligned ones included
    assert!(
        (0..4).all(|r| residues.contains(&(Format::F32, r))),
        "{residues:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
