//! ggml's blocks, byte for byte, against the `gguf` Python package.
//!
//! `tests/fixtures/ggml/` was written by `benches/peers/ggml_quant_ref.py` with gguf 0.19.0,
//! whose numpy quantizers (`gguf.quants.quantize`) its authors keep bit-exact with
//! ggml-quants.c's reference ones. It holds a 12 x 256 float32 matrix with edge-case rows
//! (zeros, exact .5 ties, Q4_0's sign rule both ways, values whose f16 scale rounds,
//! subnormal and underflowing f16 scales, constant blocks where Q4_1's d is 0; the script's
//! docstring lists them), each format's raw blocks, and the package's dequantized values.
//! `crate::quant::blocks` must give the same bytes and the same values, exactly: no
//! tolerance.

use llm_lessons::quant::blocks::{dequantize_row, quantize_row, Block, BlockQ4_0, BlockQ4_1};
use llm_lessons::quant::blocks::{BlockQ8_0, QK};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// (rows, cols) from the manifest.
fn shape() -> (usize, usize) {
    let m: serde_json::Value = serde_json::from_slice(&fixture("manifest.json")).unwrap();
    let rows = m["rows"].as_u64().unwrap() as usize;
    let cols = m["cols"].as_u64().unwrap() as usize;
    assert_eq!(m["gguf"], "0.19.0");
    (rows, cols)
}

/// Quantizes the fixture's matrix row by row into `B` blocks and checks the bytes and the
/// dequantized values against the package's, naming the first block that differs.
fn check<B: Block>(name: &str) {
    let (rows, cols) = shape();
    let x = f32s(&fixture("input.f32.bin"));
    let want = fixture(&format!("{name}.bin"));
    let want_deq = f32s(&fixture(&format!("{name}.deq.f32.bin")));
    assert_eq!(x.len(), rows * cols);
    assert_eq!(want.len(), rows * cols / QK * B::BYTES, "{name}.bin's size");

    let mut ours = Vec::with_capacity(want.len());
    let mut deq = vec![0.0f32; rows * cols];
    for (r, (row, out)) in x
        .chunks_exact(cols)
        .zip(deq.chunks_exact_mut(cols))
        .enumerate()
    {
        let blocks = quantize_row::<B>(row);
        ours.extend_from_slice(bytemuck::cast_slice::<B, u8>(&blocks));
        // our dequantization of the package's bytes, viewed in place as blocks
        let theirs = &want[r * cols / QK * B::BYTES..(r + 1) * cols / QK * B::BYTES];
        dequantize_row::<B>(bytemuck::cast_slice::<u8, B>(theirs), out);
    }
    for (i, (a, b)) in ours
        .chunks_exact(B::BYTES)
        .zip(want.chunks_exact(B::BYTES))
        .enumerate()
    {
        assert_eq!(
            a,
            b,
            "{name}: block {i} (row {}, values {}..{}) differs from ggml's",
            i / (cols / QK),
            i % (cols / QK) * QK,
            (i % (cols / QK) + 1) * QK
        );
    }
    for (i, (a, b)) in deq.iter().zip(&want_deq).enumerate() {
        // bit patterns, so that -0.0 and 0.0 count as different too
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{name}: dequantized value {i} (row {}, column {}): ours {a:e}, gguf's {b:e}",
            i / cols,
            i % cols
        );
    }
}

#[test]
fn q8_0_matches_ggml_byte_for_byte() {
    check::<BlockQ8_0>("q8_0");
}

#[test]
fn q4_0_matches_ggml_byte_for_byte() {
    check::<BlockQ4_0>("q4_0");
}

#[test]
fn q4_1_matches_ggml_byte_for_byte() {
    check::<BlockQ4_1>("q4_1");
}

/// The fixture holds the cases it claims: a test that the edge cases are really there.
#[test]
fn fixture_covers_the_edge_cases() {
    let (_, cols) = shape();
    let q8 = fixture("q8_0.bin");
    let block = |bytes: &[u8], nbytes: usize, row: usize| -> Vec<u8> {
        bytes[row * cols / QK * nbytes..][..nbytes].to_vec()
    };
    // row 1, zeros: d = 0
    assert_eq!(&block(&q8, 34, 1)[..2], &[0, 0]);
    // row 2: d = 1 (f16 0x3c00), and 0.5 → 1, −0.5 → −1 (ties away from zero)
    let b = block(&q8, 34, 2);
    assert_eq!(&b[..2], &[0x00, 0x3c]);
    let qs: Vec<i8> = b[2..].iter().map(|&v| v as i8).collect();
    // x_j = j − 31.5 for j = 1, 2, 3: −30.5, −29.5, −28.5 round away from zero (half to
    // even would give −30, −30, −28)
    assert_eq!(&qs[1..4], &[-31, -30, -29]);
    // Q4_0's sign: row 3's largest |x| is −3 (d > 0), row 4's is +3 (d < 0)
    let q40 = fixture("q4_0.bin");
    let d = |b: Vec<u8>| llm_lessons::quant::f16::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    assert!(d(block(&q40, 18, 3)) > 0.0 && d(block(&q40, 18, 4)) < 0.0);
    // row 6: subnormal f16 scales (exponent bits 0, mantissa not 0)
    let bits = u16::from_le_bytes(block(&q8, 34, 6)[..2].try_into().unwrap());
    assert!(bits & 0x7c00 == 0 && bits & 0x03ff != 0, "{bits:#06x}");
    // row 7, constant blocks: Q4_1's d = 0
    let q41 = fixture("q4_1.bin");
    assert_eq!(&block(&q41, 20, 7)[..2], &[0, 0]);
}
