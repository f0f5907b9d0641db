//! # Chapter 6 exercises: int8 quantization
//!
//! You write the pieces of chapter 6's formats: absmax int8 and back, the zero point, one
//! step per row, a Q8_0 block's 34 bytes, Q4_1's nibble packing, the integer dot product of
//! two Q8_0 blocks with their scales, and the bound (and the average) of the rounding error,
//! which you derive. The tests at the bottom of this file check them, first against answers
//! worked out by hand (the arithmetic is in the comments), then against the crate, whose
//! Q8_0 and Q4_1 bytes are ggml's (`tests/ggml_reference.rs` checks them against the `gguf`
//! Python package).
//!
//! ## How to work
//!
//! 1. Write your code in `mod learner`, just below. Each function starts as a stub that fails
//!    with `not implemented: Exercise N (...)` and a hint. Replace the body and keep the
//!    signature. The stubs' parameters start with `_` so that they don't warn while unused:
//!    remove the `_` when you use one. Your functions may call each other, and you may add
//!    helper functions.
//! 2. Run the tests against your code, all of them or one exercise at a time:
//!
//!    ```text
//!    cargo test --features learner --test 06_quantization
//!    cargo test --features learner --test 06_quantization exercise_4
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::quant`). `cargo test --test 06_quantization` always passes and
//!    shows what "done" looks like. Try an exercise before you read its reference.
//!
//! The book's chapter 6 (`book/src/ch06_quantization.md`) derives every formula used here.
//!
//! ## Conventions (the crate's, and ggml's)
//!
//! - `round` is C's `roundf` and Rust's `f32::round`: halves go away from zero (2.5 → 3,
//!   −2.5 → −3), except where an exercise says otherwise.
//! - A `(rows, cols)` matrix is a flat `f32` slice in row-major order.
//! - An f16 is stored as its two little-endian bytes; `llm_lessons::quant::f16::f32_to_f16`
//!   gives its bits (round to nearest, ties to even) and `f16_to_f32` its value.

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    /// Exercise 1a: symmetric absmax int8 with one step for the whole tensor.
    ///
    /// Choose the step `Δ` so that the largest `|x|` maps to 127, then `q_i = round(x_i / Δ)`.
    /// Return `(q, Δ)`. A tensor of zeros has `Δ = 0`: return codes 0 (don't divide by 0).
    pub fn absmax_quantize(_x: &[f32]) -> (Vec<i8>, f32) {
        unimplemented!(
            "Exercise 1 (absmax_quantize): implement `fn absmax_quantize` in \
             lessons/06_quantization.rs — Δ = max|x| / 127, q_i = (x_i / Δ).round() as i8 (0 \
             when Δ = 0); the crate's version: `AbsmaxInt8::quantize` in src/quant/absmax.rs"
        )
    }

    /// Exercise 1b: and back: `x_i ≈ Δ q_i`.
    pub fn absmax_dequantize(_q: &[i8], _step: f32) -> Vec<f32> {
        unimplemented!(
            "Exercise 1 (absmax_dequantize): implement `fn absmax_dequantize` in \
             lessons/06_quantization.rs — step * q_i as f32 for each code; the crate's version: \
             `AbsmaxInt8::dequantize` in src/quant/absmax.rs"
        )
    }

    /// Exercise 2: asymmetric int8 with a zero point, PyTorch's `quint8` convention.
    ///
    /// Widen the range to hold 0: `lo = min(min x, 0)`, `hi = max(max x, 0)`. Map it onto the
    /// 256 codes `0..=255`: `scale = (hi − lo) / 255`. Pick the integer code `z` of 0.0 (round
    /// `−lo / scale`), then `q_i = clamp(round(x_i / scale) + z, 0, 255)`. Here `round` is
    /// half to even (`f32::round_ties_even`), as PyTorch's. Return `(q, scale, z)`; a tensor
    /// of zeros gives `scale = 0`, `z = 0` and codes 0.
    ///
    /// Then check on paper: what does `x = 0.0` come back as, `scale (q − z)`? Why does that
    /// need `z` to be an integer?
    pub fn zero_point_quantize(_x: &[f32]) -> (Vec<u8>, f32, u8) {
        unimplemented!(
            "Exercise 2 (zero_point_quantize): implement `fn zero_point_quantize` in \
             lessons/06_quantization.rs — lo = min(x ∪ {{0}}), hi = max(x ∪ {{0}}), scale = (hi \
             − lo) / 255, z = (−lo / scale).round_ties_even(), q_i = ((x_i / \
             scale).round_ties_even() + z).clamp(0, 255); the crate's version: \
             `ZeroPointInt8::quantize` in src/quant/absmax.rs"
        )
    }

    /// Exercise 3: one absmax step per row of a `(rows, cols)` matrix (per output channel of
    /// a linear layer's weight). Return the codes `(rows, cols)` and the `rows` steps.
    pub fn per_row_quantize(_x: &[f32], _rows: usize, _cols: usize) -> (Vec<i8>, Vec<f32>) {
        unimplemented!(
            "Exercise 3 (per_row_quantize): implement `fn per_row_quantize` in \
             lessons/06_quantization.rs — exercise 1 on each row x[r * cols..(r + 1) * cols], \
             collecting the codes in order and one step per row; the crate's version: \
             `PerRowInt8::quantize` in src/quant/absmax.rs"
        )
    }

    /// Exercise 4: a Q8_0 block's 34 bytes, as ggml writes them.
    ///
    /// `d = max|x| / 127` in f32; the codes are `round(x_j · (1/d))`: ggml multiplies by the
    /// f32 inverse (0 when d = 0), which can differ from `x_j / d` in the last bit. The block
    /// is `d` as an f16 (2 bytes, little-endian), then the 32 codes as signed bytes.
    pub fn q8_0_block_bytes(_x: &[f32; 32]) -> [u8; 34] {
        unimplemented!(
            "Exercise 4 (q8_0_block_bytes): implement `fn q8_0_block_bytes` in \
             lessons/06_quantization.rs — d = max|x| / 127, id = 1 / d (0 if d = 0), bytes 0..2 \
             = f32_to_f16(d).to_le_bytes(), byte 2 + j = (x_j * id).round() as i8 as u8; the \
             crate's version: `BlockQ8_0::quantize` in src/quant/blocks.rs"
        )
    }

    /// Exercise 5a: Q4_1's nibble packing. `q` holds 32 four-bit codes (each `0..=15`); pack
    /// them into 16 bytes the way ggml does: element `j < 16` is the *low* nibble of byte
    /// `j`, element `j + 16` the *high* nibble of the same byte (not `2j` and `2j + 1`).
    pub fn q4_pack(_q: &[u8; 32]) -> [u8; 16] {
        unimplemented!(
            "Exercise 5 (q4_pack): implement `fn q4_pack` in lessons/06_quantization.rs — \
             byte j = q[j] | (q[j + 16] << 4); the crate's version: `BlockQ4_1::quantize` in \
             src/quant/blocks.rs (its last loop)"
        )
    }

    /// Exercise 5b: the values of a Q4_1 block from its scale `d`, minimum `m` and packed
    /// codes: `x_j = d q_j + m`, with `q_j` unpacked as in 5a.
    pub fn q4_1_dequantize(_d: f32, _m: f32, _qs: &[u8; 16]) -> [f32; 32] {
        unimplemented!(
            "Exercise 5 (q4_1_dequantize): implement `fn q4_1_dequantize` in \
             lessons/06_quantization.rs — for j < 16: out[j] = (qs[j] & 0x0f) as f32 * d + m, \
             out[j + 16] = (qs[j] >> 4) as f32 * d + m; the crate's version: \
             `BlockQ4_1::dequantize` in src/quant/blocks.rs"
        )
    }

    /// Exercise 6: the dot product of two Q8_0 blocks (34 bytes each, as in exercise 4),
    /// `Σ_j (d_a qa_j)(d_b qb_j)`. Derive the integer form: the scales factor out of the
    /// sum, so it is one i32 sum of 32 products of i8 codes, times `d_a d_b` once. (Why is
    /// an i32 enough? How large can `Σ qa_j qb_j` be?)
    pub fn q8_0_dot(_a: &[u8; 34], _b: &[u8; 34]) -> f32 {
        unimplemented!(
            "Exercise 6 (q8_0_dot): implement `fn q8_0_dot` in lessons/06_quantization.rs — \
             d_a = f16_to_f32(u16::from_le_bytes([a[0], a[1]])), the same for b; acc = Σ_j \
             (a[2 + j] as i8 as i32) * (b[2 + j] as i8 as i32); return acc as f32 * (d_a * d_b); \
             the book: chapter 6, 'Integer dot products'"
        )
    }

    /// Exercise 7a: the largest error `|x − Δ round(x / Δ)|` of rounding to a grid of step
    /// `Δ`, for any `x` inside the grid's range. Derive it: how far can `x / Δ` be from the
    /// nearest integer?
    pub fn max_rounding_error(_step: f32) -> f32 {
        unimplemented!(
            "Exercise 7 (max_rounding_error): implement `fn max_rounding_error` in \
             lessons/06_quantization.rs — derive it: x / Δ is within 1/2 of the integer it \
             rounds to; multiply by Δ; the book: chapter 6, 'The error, predicted'"
        )
    }

    /// Exercise 7b: the mean of `e²` when the error `e` is uniform on `[−Δ/2, Δ/2]`, the
    /// rounding noise's power. Derive it: `(1/Δ) ∫ e² de` over that interval.
    pub fn rounding_noise_variance(_step: f64) -> f64 {
        unimplemented!(
            "Exercise 7 (rounding_noise_variance): implement `fn rounding_noise_variance` in \
             lessons/06_quantization.rs — derive (1/Δ) ∫_{{−Δ/2}}^{{Δ/2}} e² de = (1/Δ) [e³/3] \
             between the bounds; the crate's version: `rounding_noise_variance` in \
             src/quant/stats.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use llm_lessons::quant::absmax::{AbsmaxInt8, PerRowInt8, ZeroPointInt8};
    use llm_lessons::quant::blocks::{BlockQ4_1, BlockQ8_0, Half};
    use llm_lessons::quant::stats;

    pub fn absmax_quantize(x: &[f32]) -> (Vec<i8>, f32) {
        let t = AbsmaxInt8::quantize(x);
        (t.q, t.step)
    }

    pub fn absmax_dequantize(q: &[i8], step: f32) -> Vec<f32> {
        AbsmaxInt8 {
            q: q.to_vec(),
            step,
        }
        .dequantize()
    }

    pub fn zero_point_quantize(x: &[f32]) -> (Vec<u8>, f32, u8) {
        let t = ZeroPointInt8::quantize(x);
        (t.q, t.scale, t.zero_point)
    }

    pub fn per_row_quantize(x: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
        let t = PerRowInt8::quantize(x, rows, cols).unwrap();
        (t.q, t.steps)
    }

    pub fn q8_0_block_bytes(x: &[f32; 32]) -> [u8; 34] {
        bytemuck::bytes_of(&BlockQ8_0::quantize(x))
            .try_into()
            .unwrap()
    }

    pub fn q4_pack(q: &[u8; 32]) -> [u8; 16] {
        // The crate packs inside `BlockQ4_1::quantize` (and `BlockQ4_0::quantize`), with
        // this loop; the test checks it against the crate's bytes.
        std::array::from_fn(|j| q[j] | (q[j + 16] << 4))
    }

    pub fn q4_1_dequantize(d: f32, m: f32, qs: &[u8; 16]) -> [f32; 32] {
        let mut out = [0.0; 32];
        BlockQ4_1 {
            d: Half::from_f32(d),
            m: Half::from_f32(m),
            qs: *qs,
        }
        .dequantize(&mut out);
        out
    }

    pub fn q8_0_dot(a: &[u8; 34], b: &[u8; 34]) -> f32 {
        let (a, b): (&BlockQ8_0, &BlockQ8_0) = (bytemuck::from_bytes(a), bytemuck::from_bytes(b));
        let acc: i32 =
            a.qs.iter()
                .zip(&b.qs)
                .map(|(&x, &y)| x as i32 * y as i32)
                .sum();
        acc as f32 * (a.d.get() * b.d.get())
    }

    pub fn max_rounding_error(step: f32) -> f32 {
        step / 2.0
    }

    pub fn rounding_noise_variance(step: f64) -> f64 {
        stats::rounding_noise_variance(step)
    }
}

// The tests call `solution::...`: your code with `--features learner`, the reference without.
#[cfg(feature = "learner")]
use learner as solution;
#[cfg(not(feature = "learner"))]
use reference as solution;

// ============================================================================================
// The tests. You don't need to change anything below.
// ============================================================================================

use llm_lessons::quant::absmax::{AbsmaxInt8, PerRowInt8, ZeroPointInt8};
use llm_lessons::quant::blocks::{BlockQ4_1, BlockQ8_0};
use llm_lessons::quant::f16::round_f16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` numbers drawn uniformly from `[−scale, scale]` (the same on every machine).
fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
}

fn block(v: &[f32]) -> [f32; 32] {
    v.try_into().unwrap()
}

// --- Exercise 1 ---------------------------------------------------------------------------

#[test]
fn exercise_1_absmax() {
    // max|x| = 31.75 = 127 · 0.25, so Δ = 0.25. 12.5 / 0.25 = 50; −0.375 / 0.25 = −1.5 → −2
    // (away from zero); 0.125 / 0.25 = 0.5 → 1.
    let (q, step) = solution::absmax_quantize(&[-31.75, 12.5, -0.375, 0.125, 0.0]);
    assert_eq!(step, 0.25, "Δ = max|x| / 127");
    assert_eq!(
        q,
        [-127, 50, -2, 1, 0],
        "q = round(x / Δ), halves away from zero"
    );
    assert_eq!(
        solution::absmax_dequantize(&q, step),
        [-31.75, 12.5, -0.5, 0.25, 0.0],
        "x ≈ Δ q"
    );
    // zeros: Δ = 0, codes 0, and back to zeros
    let (q, step) = solution::absmax_quantize(&[0.0; 4]);
    assert_eq!((q, step), (vec![0; 4], 0.0), "a tensor of zeros");
    // random numbers, against the crate
    let x = random(&mut ChaCha8Rng::seed_from_u64(1), 500, 3.0);
    let (q, step) = solution::absmax_quantize(&x);
    let want = AbsmaxInt8::quantize(&x);
    assert_eq!(
        (q.clone(), step),
        (want.q.clone(), want.step),
        "against the crate"
    );
    assert_eq!(solution::absmax_dequantize(&q, step), want.dequantize());
}

// --- Exercise 2 ---------------------------------------------------------------------------

#[test]
fn exercise_2_zero_point() {
    // x in [−5, 250]: scale = 255 / 255 = 1, z = round(5) = 5. −5 → 0, 250 → 255, 0 → 5;
    // ties go to even: 0.5 → 0 → 5, 1.5 → 2 → 7, 2.5 → 2 → 7.
    let (q, scale, z) = solution::zero_point_quantize(&[-5.0, 250.0, 0.0, 0.5, 1.5, 2.5]);
    assert_eq!(
        (scale, z),
        (1.0, 5),
        "scale = (hi − lo) / 255, z = round(−lo / scale)"
    );
    assert_eq!(
        q,
        [0, 255, 5, 5, 7, 7],
        "q = clamp(round(x / scale) + z, 0, 255), ties to even"
    );
    // all positive: the range is widened to [0, 510], scale 2, z = 0
    let (q, scale, z) = solution::zero_point_quantize(&[102.0, 510.0]);
    assert_eq!((q, scale, z), (vec![51, 255], 2.0, 0), "the range holds 0");
    // zeros
    assert_eq!(
        solution::zero_point_quantize(&[0.0; 3]),
        (vec![0; 3], 0.0, 0)
    );
    // random numbers, against the crate; 0.0 comes back exactly
    let mut x = random(&mut ChaCha8Rng::seed_from_u64(2), 500, 3.0);
    x.iter_mut().for_each(|v| *v += 1.0);
    x.push(0.0);
    let (q, scale, z) = solution::zero_point_quantize(&x);
    let want = ZeroPointInt8::quantize(&x);
    assert_eq!(
        (q.clone(), scale, z),
        (want.q.clone(), want.scale, want.zero_point)
    );
    assert_eq!(
        scale * (q[500] as i32 - z as i32) as f32,
        0.0,
        "0.0 is exact"
    );
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_per_row() {
    // rows (1, −4) and (0.5, 0.3): Δ = 4/127 and 0.5/127; 1 / (4/127) = 31.75 → 32,
    // 0.3 / (0.5/127) = 76.2 → 76
    let (q, steps) = solution::per_row_quantize(&[1.0, -4.0, 0.5, 0.3], 2, 2);
    assert_eq!(
        steps,
        [4.0 / 127.0, 0.5 / 127.0],
        "one step per row, max|row| / 127"
    );
    assert_eq!(q, [32, -127, 127, 76]);
    // rows 1000 times apart: each keeps its own step, against the crate
    let (rows, cols) = (3, 64);
    let mut x = random(&mut ChaCha8Rng::seed_from_u64(3), rows * cols, 1.0);
    x[cols..2 * cols].iter_mut().for_each(|v| *v *= 1000.0);
    let (q, steps) = solution::per_row_quantize(&x, rows, cols);
    let want = PerRowInt8::quantize(&x, rows, cols).unwrap();
    assert_eq!((q, steps), (want.q, want.steps), "against the crate");
}

// --- Exercise 4 ---------------------------------------------------------------------------

#[test]
fn exercise_4_q8_0_bytes() {
    // x_j = j − 16: max|x| = 16, d = 16/127 ≈ 0.126, stored as the f16 0x3008 (0.12597656),
    // bytes 08 30. x_0 = −16 → −127 (0x81); x_16 = 0 → 0; x_31 = 15 → round(119.06) = 119.
    let x = block(&(0..32).map(|j| j as f32 - 16.0).collect::<Vec<_>>());
    let b = solution::q8_0_block_bytes(&x);
    assert_eq!(round_f16(16.0 / 127.0), 0.125_976_56);
    assert_eq!(&b[..2], &[0x08, 0x30], "d as an f16, little-endian");
    assert_eq!(
        (b[2], b[2 + 16], b[2 + 31]),
        (0x81, 0, 119),
        "the codes, as signed bytes"
    );
    // ties at d = 1: x_j = j + 0.5 with x_0 = 127; 0.5 → 1, 1.5 → 2 (away from zero)
    let mut x = block(&(0..32).map(|j| j as f32 - 15.5).collect::<Vec<_>>());
    x[0] = 127.0;
    let b = solution::q8_0_block_bytes(&x);
    assert_eq!(&b[..2], &[0x00, 0x3c], "d = 1");
    assert_eq!((b[2 + 16] as i8, b[2 + 15] as i8), (1, -1), "±0.5 → ±1");
    // zeros, and random blocks of every size, against the crate (whose bytes are ggml's)
    assert_eq!(solution::q8_0_block_bytes(&[0.0; 32]), [0; 34]);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for scale in [1e-3, 1.0, 7.0, 3e3] {
        let x = block(&random(&mut rng, 32, scale));
        let want: [u8; 34] = bytemuck::bytes_of(&BlockQ8_0::quantize(&x))
            .try_into()
            .unwrap();
        assert_eq!(
            solution::q8_0_block_bytes(&x),
            want,
            "values of size {scale}"
        );
    }
}

// --- Exercise 5 ---------------------------------------------------------------------------

#[test]
fn exercise_5_q4_1_nibbles() {
    // element 0 = 1 and element 16 = 2 share byte 0: 1 | 2 << 4 = 0x21
    let mut q = [0u8; 32];
    (q[0], q[16], q[15], q[31]) = (1, 2, 15, 9);
    let packed = solution::q4_pack(&q);
    assert_eq!(packed[0], 0x21, "element j low, element j + 16 high");
    assert_eq!(packed[15], 0x9f, "elements 15 and 31");
    assert!(packed[1..15].iter().all(|&b| b == 0));
    // d = 0.5, m = −1: codes 1 and 2 are −0.5 and 0, code 0 is −1
    let x = solution::q4_1_dequantize(0.5, -1.0, &packed);
    assert_eq!(
        (x[0], x[16], x[1], x[15], x[31]),
        (-0.5, 0.0, -1.0, 6.5, 3.5)
    );
    // random blocks, against the crate's Q4_1
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..5 {
        let x = block(&random(&mut rng, 32, 2.0));
        let b = BlockQ4_1::quantize(&x);
        let codes: [u8; 32] = std::array::from_fn(|j| {
            if j < 16 {
                b.qs[j] & 0x0f
            } else {
                b.qs[j - 16] >> 4
            }
        });
        assert_eq!(solution::q4_pack(&codes), b.qs, "packing the crate's codes");
        let mut want = [0.0; 32];
        b.dequantize(&mut want);
        assert_eq!(solution::q4_1_dequantize(b.d.get(), b.m.get(), &b.qs), want);
    }
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_q8_0_dot() {
    // two blocks with d = 1 (f16 0x3c00) and d = 0.5 (0x3800): codes 2 and 3 at j = 0,
    // −1 and 4 at j = 1: Σ qa qb = 6 − 4 = 2, times 1 · 0.5 = 1
    let (mut a, mut b) = ([0u8; 34], [0u8; 34]);
    (a[1], b[1]) = (0x3c, 0x38);
    (a[2], a[3], b[2], b[3]) = (2, (-1i8) as u8, 3, 4);
    assert_eq!(solution::q8_0_dot(&a, &b), 1.0, "d_a d_b Σ qa qb");
    // the largest sum: 32 · 127 · 127 = 516,128, far inside an i32
    a[2..].fill(127);
    b[2..].fill(0x81); // −127
    assert_eq!(solution::q8_0_dot(&a, &b), -516_128.0 * 0.5);
    // random blocks: equal to the dot product of the dequantized values, up to f32 rounding
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..5 {
        let (x, y) = (
            block(&random(&mut rng, 32, 3.0)),
            block(&random(&mut rng, 32, 0.1)),
        );
        let (bx, by) = (BlockQ8_0::quantize(&x), BlockQ8_0::quantize(&y));
        let (mut dx, mut dy) = ([0.0; 32], [0.0; 32]);
        bx.dequantize(&mut dx);
        by.dequantize(&mut dy);
        let want: f64 = dx.iter().zip(&dy).map(|(p, q)| *p as f64 * *q as f64).sum();
        let bytes = |b: &BlockQ8_0| -> [u8; 34] { bytemuck::bytes_of(b).try_into().unwrap() };
        let got = solution::q8_0_dot(&bytes(&bx), &bytes(&by));
        assert!(
            (got as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }
}

// --- Exercise 7 ---------------------------------------------------------------------------

#[test]
fn exercise_7_error_bound() {
    // the bound holds for every value, and is tight: values just off a half-step come close
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = random(&mut rng, 20_000, 2.0);
    let t = AbsmaxInt8::quantize(&x);
    let bound = solution::max_rounding_error(t.step) as f64;
    let worst = x
        .iter()
        .zip(t.dequantize())
        .map(|(a, b)| (*a as f64 - b as f64).abs())
        .fold(0.0, f64::max);
    // f32 slack: x / Δ and Δ q are each rounded once (2⁻¹⁶ Δ covers both)
    assert!(
        worst <= bound + t.step as f64 / 65536.0,
        "worst {worst:e} > bound {bound:e}"
    );
    assert!(
        worst > 0.99 * bound,
        "the bound is tight: worst {worst:e}, bound {bound:e}"
    );
    assert_eq!(solution::max_rounding_error(0.25), 0.125);
    // the mean square error of those 20,000 values is close to the uniform noise power
    let var = x
        .iter()
        .zip(t.dequantize())
        .map(|(a, b)| (*a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / x.len() as f64;
    let predicted = solution::rounding_noise_variance(t.step as f64);
    assert!(
        (var / predicted - 1.0).abs() < 0.05,
        "measured {var:e}, predicted {predicted:e}"
    );
    assert!((solution::rounding_noise_variance(1.0) - 1.0 / 12.0).abs() < 1e-15);
}
