//! # Chapter 5 exercises: LoRA
//!
//! You write seven small functions, the pieces of a low-rank adapter: its forward, its
//! backward (the gradients of `A` and `B`, which you derive), the scale `s` with and without
//! rsLoRA, merging the adapter into the base weight and taking it out again, how many numbers
//! an adapter config trains, the names PEFT gives the adapter's tensors, and the bound of
//! the uniform distribution `A` starts from. The tests at the bottom of this file check them,
//! first against answers worked out by hand (the arithmetic is in the comments), then against
//! finite differences, against the crate and against files that Hugging Face PEFT wrote.
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
//!    cargo test --features learner --test 05_lora
//!    cargo test --features learner --test 05_lora exercise_2
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::gpt::lora` and `llm_lessons::gpt::peft`). `cargo test --test
//!    05_lora` always passes and shows what "done" looks like. Try an exercise before you
//!    read its reference. The crate's file that each hint names, in `src/gpt/`, is the full
//!    answer, with the formula in its doc comment.
//!
//! The book's chapter 5 (`book/src/ch05_lora.md`) derives every formula used here, and its
//! page "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//!
//! ## Conventions (the crate's, and PEFT's)
//!
//! - Tensors are flat `f32` slices in row-major order: a `(T, C)` tensor is `T` rows of `C`
//!   numbers, and row `t` is `x[t * c..(t + 1) * c]`.
//! - A linear layer maps `n` rows `x (n, d_in)` to `y = x Wᵀ (n, d_out)` with its weight
//!   `W (d_out, d_in)`. Its adapter is `A (r, d_in)` and `B (d_out, r)` (PEFT's
//!   `lora_A.weight` and `lora_B.weight`), and adds `s (x Aᵀ) Bᵀ` to `y`.
//! - A backward *adds* its gradients into the buffers it is given (`+=`), as the crate's do.
//!   The tests start the buffers at non-zero numbers, so an answer that overwrites them
//!   fails.
//! - The gradients are checked against central finite differences of a forward written in
//!   f64 in this file, `(L(x + h) - L(x - h)) / 2h`, with `L = Σ y · r` for a fixed random
//!   `r`, so that `dL/dy = r`.

use llm_lessons::gpt::GptConfig;

/// One layer's low-rank adapter: `A (r, d_in)`, `B (d_out, r)` and the scale `s`, for a
/// base weight `W (d_out, d_in)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub d_in: usize,
    pub d_out: usize,
    /// The rank `r`.
    pub r: usize,
    /// `s`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA (exercise 3).
    pub s: f32,
    /// `(r, d_in)`, row-major.
    pub a: Vec<f32>,
    /// `(d_out, r)`, row-major.
    pub b: Vec<f32>,
}

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use super::{Adapter, GptConfig};

    /// Exercise 1: the forward of a linear layer with a LoRA adapter.
    ///
    /// `x` holds `n = x.len() / d_in` rows, `w` is the frozen base weight `(d_out, d_in)`.
    /// Return the `(n, d_out)` output
    ///
    /// ```text
    /// y = x Wᵀ + s (x Aᵀ) Bᵀ
    /// ```
    ///
    /// Compute it in that order: first `h = x Aᵀ`, `(n, r)`, then `s h Bᵀ`. That costs
    /// `n r (d_in + d_out)` multiplications; forming `B A` first would cost `d_out r d_in`
    /// more, and the adapter's whole point is that `r` is small.
    pub fn lora_forward(_x: &[f32], _w: &[f32], _adapter: &Adapter) -> Vec<f32> {
        unimplemented!(
            "Exercise 1 (lora_forward): implement `fn lora_forward` in lessons/05_lora.rs — \
             n = x.len() / d_in; for each row: base_o = Σ_i x_i W[o][i], h_k = Σ_i x_i A[k][i] \
             (r numbers), then y_o = base_o + s Σ_k h_k B[o][k]; the crate's version: \
             `Linear::forward` in src/gpt/linear.rs and `LoraAdapter::forward_add` in \
             src/gpt/lora.rs"
        )
    }

    /// Exercise 2: the adapter's backward. Derive it.
    ///
    /// The adapter's forward is `h = x Aᵀ` `(n, r)`, then `y += s h Bᵀ` `(n, d_out)`. Given
    /// `dy = dL/dy` `(n, d_out)`, add into
    ///
    /// - `db`, `(d_out, r)`: `dL/dB`;
    /// - `da`, `(r, d_in)`: `dL/dA`;
    /// - `dx`, `(n, d_in)`: the adapter's part of `dL/dx` (the base's part, `dy W`, is the
    ///   linear layer's backward of chapter 4; leave it out).
    ///
    /// Chapter 4's rule for a linear layer, `Y = X Wᵀ` gives `dX = dY W` and `dW = dYᵀ X`,
    /// is all you need, used twice: once for `y = (s h) Bᵀ`, with `h` as its input and `B` as
    /// its weight, and once for `h = x Aᵀ`. Check the shapes of what you get against the
    /// shapes above.
    pub fn lora_backward(
        _dx: &mut [f32],
        _da: &mut [f32],
        _db: &mut [f32],
        _dy: &[f32],
        _x: &[f32],
        _adapter: &Adapter,
    ) {
        unimplemented!(
            "Exercise 2 (lora_backward): implement `fn lora_backward` in lessons/05_lora.rs — \
             derive it: recompute h = x Aᵀ (n, r), then apply chapter 4's rule for Y = X Wᵀ \
             (dX = dY W, dW = dYᵀ X) to y = (s h) Bᵀ and then to h = x Aᵀ, and add dB (d_out, \
             r), dA (r, d_in) and the adapter's dx (n, d_in) into the buffers; the derivation: \
             book chapter 5, 'The backward, derived'; the crate's version: \
             `LoraAdapter::backward` in src/gpt/lora.rs"
        )
    }

    /// Exercise 3: the scale `s` of the low-rank update.
    ///
    /// LoRA multiplies its update by `s = alpha / r`. rsLoRA (rank-stabilised LoRA) uses
    /// `s = alpha / sqrt(r)` instead: with `A` and `B` of fixed-size entries, `h Bᵀ` sums `r`
    /// terms and grows like `sqrt(r)` (for random directions), so dividing by `sqrt(r)`
    /// keeps the update's size the same whatever the rank; dividing by `r` shrinks it.
    pub fn lora_scale(_alpha: f32, _r: usize, _rslora: bool) -> f32 {
        unimplemented!(
            "Exercise 3 (lora_scale): implement `fn lora_scale` in lessons/05_lora.rs — \
             alpha / r, or alpha / sqrt(r) when rslora is true (compute in f32: r as f32); \
             the crate's version: `LoraConfig::scale` in src/gpt/lora.rs"
        )
    }

    /// Exercise 4a: merge the adapter into the base weight, `W ← W + s B A`.
    ///
    /// `w` is `(d_out, d_in)`; `B A` is `(d_out, r) (r, d_in)`, the same shape. Afterwards
    /// `x Wᵀ` alone gives what the adapted layer gave, at no extra cost per token.
    pub fn merge(_w: &mut [f32], _adapter: &Adapter) {
        unimplemented!(
            "Exercise 4 (merge): implement `fn merge` in lessons/05_lora.rs — for every o < \
             d_out and i < d_in: w[o * d_in + i] += s Σ_k B[o][k] A[k][i]; the crate's \
             version: `Linear::merge_adapter` and `LoraAdapter::delta` in src/gpt/lora.rs"
        )
    }

    /// Exercise 4b: take the adapter out again, `W ← W - s B A`: the base weight back, up to
    /// float rounding (`(w + d) - d` need not be `w` exactly in f32).
    pub fn unmerge(_w: &mut [f32], _adapter: &Adapter) {
        unimplemented!(
            "Exercise 4 (unmerge): implement `fn unmerge` in lessons/05_lora.rs — the same as \
             merge with the sign flipped: w[o * d_in + i] -= s Σ_k B[o][k] A[k][i]; the crate's \
             version: `Linear::unmerge_adapter` in src/gpt/lora.rs"
        )
    }

    /// Exercise 5: how many numbers train when every block's `targets` get a rank-`r` adapter.
    ///
    /// An adapter on a `(d_out, d_in)` projection trains `r (d_in + d_out)` numbers (`A` and
    /// `B`), and the base trains none. The projections of a block, as `(d_in, d_out)`, with
    /// `C = d_model` and `kv = n_kv_heads * head_dim` (`cfg.kv_dim()`):
    ///
    /// ```text
    /// q_proj (C, C)     k_proj (C, kv)    v_proj (C, kv)    o_proj (C, C)
    /// gate_proj (C, d_ff)     up_proj (C, d_ff)     down_proj (d_ff, C)
    /// ```
    ///
    /// A GELU MLP (`cfg.mlp == Mlp::Gelu`, GPT-2's) has `up_proj` and `down_proj` and no
    /// `gate_proj`: targeting `gate_proj` there adds nothing. Every one of the
    /// `cfg.n_layers` blocks gets the same adapters.
    pub fn trainable_params(_cfg: &GptConfig, _r: usize, _targets: &[&str]) -> usize {
        unimplemented!(
            "Exercise 5 (trainable_params): implement `fn trainable_params` in \
             lessons/05_lora.rs — for each target, its (d_in, d_out) from the table in the doc \
             comment (0 for gate_proj when cfg.mlp is Mlp::Gelu), add r * (d_in + d_out); then \
             multiply by cfg.n_layers; the crate's version: `Params::add_lora` in \
             src/gpt/lora.rs (it returns the count)"
        )
    }

    /// Exercise 6: the name PEFT gives an adapter tensor in `adapter_model.safetensors`.
    ///
    /// PEFT names a tensor by where it sits in the Python model: `base_model.model.` (PEFT's
    /// wrapper around `LlamaForCausalLM`), then the Hugging Face name of the projection
    /// (`model.layers.{layer}.self_attn.q_proj`; the MLP's projections are under
    /// `model.layers.{layer}.mlp.`), then `.lora_A.weight` or `.lora_B.weight`. `matrix` is
    /// `'A'` or `'B'`. For example, layer 0's `q_proj`, matrix `'A'`:
    ///
    /// ```text
    /// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight
    /// ```
    pub fn peft_tensor_name(_layer: usize, _module: &str, _matrix: char) -> String {
        unimplemented!(
            "Exercise 6 (peft_tensor_name): implement `fn peft_tensor_name` in \
             lessons/05_lora.rs — the group is self_attn for q_proj, k_proj, v_proj, o_proj and \
             mlp for gate_proj, up_proj, down_proj; format!(\"base_model.model.model.layers.\
             {{layer}}.{{group}}.{{module}}.lora_{{matrix}}.weight\"); the crate's version: \
             `Params::visit` (the names) in src/gpt/params.rs and `save_adapter` in \
             src/gpt/peft.rs"
        )
    }

    /// Exercise 7: the bound `b` of the uniform distribution U(-b, b) that PEFT draws `A`
    /// from, for a layer with `d_in` inputs.
    ///
    /// PEFT calls PyTorch's `kaiming_uniform_(A, a = sqrt(5))`, whose bound is
    /// `gain * sqrt(3 / fan_in)` with `gain = sqrt(2 / (1 + a²))` and `fan_in = d_in` (the
    /// number of columns of `A`). Simplify it by hand and check your simplification here.
    pub fn kaiming_bound(_d_in: usize) -> f32 {
        unimplemented!(
            "Exercise 7 (kaiming_bound): implement `fn kaiming_bound` in lessons/05_lora.rs — \
             gain = sqrt(2 / (1 + 5)), bound = gain * sqrt(3 / d_in) (it simplifies to \
             1 / sqrt(d_in)); the crate's version: `kaiming_bound` in src/gpt/lora.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use super::{Adapter, GptConfig};
    use llm_lessons::gpt::lora::{self, LoraAdapter, LoraConfig};
    use llm_lessons::gpt::{Linear, Params, Tensor};

    /// The crate's adapter with the same numbers.
    pub fn crate_adapter(ad: &Adapter) -> LoraAdapter {
        LoraAdapter {
            scale: ad.s,
            // the alpha whose alpha / r is s: only `scale` enters the numbers
            alpha: ad.s * ad.r as f32,
            rslora: false,
            a: Tensor::from_vec(&[ad.r, ad.d_in], ad.a.clone()).unwrap(),
            b: Tensor::from_vec(&[ad.d_out, ad.r], ad.b.clone()).unwrap(),
            dropout: Default::default(),
        }
    }

    /// A LoRA config with these settings.
    pub fn config(alpha: f32, r: usize, rslora: bool, targets: &[&str]) -> LoraConfig {
        LoraConfig {
            rank: r,
            alpha,
            rslora,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            dropout: 0.0,
        }
    }

    /// A `Linear` with the frozen base `w` and the adapter on it.
    fn adapted_linear(w: &[f32], ad: &Adapter) -> Linear {
        let mut linear = Linear::from_f32(ad.d_in, ad.d_out, w.to_vec()).unwrap();
        linear.f32_mut().trainable = false;
        linear.adapter = Some(crate_adapter(ad));
        linear
    }

    pub fn lora_forward(x: &[f32], w: &[f32], adapter: &Adapter) -> Vec<f32> {
        let mut y = vec![0.0; x.len() / adapter.d_in * adapter.d_out];
        adapted_linear(w, adapter).forward(&mut y, x);
        y
    }

    pub fn lora_backward(
        dx: &mut [f32],
        da: &mut [f32],
        db: &mut [f32],
        dy: &[f32],
        x: &[f32],
        adapter: &Adapter,
    ) {
        // the gradient buffers are an adapter of the same shape, holding da and db
        let mut g = crate_adapter(&Adapter {
            a: da.to_vec(),
            b: db.to_vec(),
            ..adapter.clone()
        });
        crate_adapter(adapter).backward(dx, &mut g, dy, x);
        da.copy_from_slice(&g.a);
        db.copy_from_slice(&g.b);
    }

    pub fn lora_scale(alpha: f32, r: usize, rslora: bool) -> f32 {
        config(alpha, r, rslora, &["q_proj"]).scale()
    }

    pub fn merge(w: &mut [f32], adapter: &Adapter) {
        let mut linear = adapted_linear(w, adapter);
        linear.merge_adapter().unwrap();
        w.copy_from_slice(linear.f32());
    }

    pub fn unmerge(w: &mut [f32], adapter: &Adapter) {
        let mut linear = Linear::from_f32(adapter.d_in, adapter.d_out, w.to_vec()).unwrap();
        linear.unmerge_adapter(crate_adapter(adapter));
        w.copy_from_slice(linear.f32());
    }

    pub fn trainable_params(cfg: &GptConfig, r: usize, targets: &[&str]) -> usize {
        Params::zeros(cfg)
            .add_lora(&config(2.0 * r as f32, r, false, targets), 0)
            .unwrap()
    }

    pub fn peft_tensor_name(layer: usize, module: &str, matrix: char) -> String {
        // The crate's names: adapt `module` in a small Llama with layer + 1 blocks, and take
        // the name `Params::visit` gives its adapter in the last block. PEFT puts its wrapper
        // in front (src/gpt/peft.rs writes these names; the tests check its file).
        let mut cfg = GptConfig::llama_tiny();
        (cfg.vocab_size, cfg.d_model, cfg.d_ff, cfg.n_layers) = (4, 8, 8, layer + 1);
        let mut params = Params::zeros(&cfg);
        params
            .add_lora(&config(1.0, 1, false, &[module]), 0)
            .unwrap();
        let (block, suffix) = (
            format!(".layers.{layer}."),
            format!(".lora_{matrix}.weight"),
        );
        let name = params
            .param_specs()
            .into_iter()
            .map(|s| s.name)
            .find(|n| n.contains(&block) && n.ends_with(&suffix))
            .unwrap();
        format!("base_model.model.{name}")
    }

    pub fn kaiming_bound(d_in: usize) -> f32 {
        lora::kaiming_bound(d_in)
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

use llm_lessons::gpt::hf::{config_from_hf_json, read_safetensors};
use llm_lessons::gpt::linear::linear_forward;
use llm_lessons::gpt::lora::TARGETS;
use llm_lessons::gpt::peft::save_adapter;
use llm_lessons::gpt::{Activations, Gpt, Mlp, Params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// `n` numbers drawn uniformly from `[−scale, scale]` (the same on every machine).
fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
}

/// A random adapter for a `(d_out, d_in)` layer, `A` and `B` both non-zero.
fn random_adapter(rng: &mut ChaCha8Rng, d_in: usize, d_out: usize, r: usize, s: f32) -> Adapter {
    Adapter {
        d_in,
        d_out,
        r,
        s,
        a: random(rng, r * d_in, 1.0),
        b: random(rng, d_out * r, 1.0),
    }
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `Σ_i y_i r_i`, the scalar whose gradient the finite differences take.
fn dot64(y: &[f64], r: &[f64]) -> f64 {
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

/// What a backward added to buffers that held `before`.
fn added(after: &[f32], before: &[f32]) -> Vec<f32> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// The largest `|a_i - b_i|`.
fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Central differences of `f` at `x`: `(f(x + h e_i) − f(x − h e_i)) / 2h` for every `i`.
/// In f64 with h = 1e-6 they are within about 1e-9 of the true gradient.
fn numeric_gradient(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let up = f(&x);
            x[i] = x0 - h;
            let down = f(&x);
            x[i] = x0;
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// `actual` equals `expected`, element by element, within `tol` (relative above 1).
#[track_caller]
fn assert_all_close(actual: &[f32], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: got {} numbers, expected {}",
        actual.len(),
        expected.len()
    );
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a as f64 - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: got {a}, expected {e}\n  all: got {actual:?}\n  expected {expected:?}"
        );
    }
}

/// A gradient computed in f32 agrees with the finite differences: within 1e-4 of the
/// largest component (f32 arithmetic rounds at about 1e-7 per operation).
#[track_caller]
fn assert_gradient(actual: &[f32], numeric: &[f64], what: &str) {
    let scale = numeric.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
    assert_eq!(actual.len(), numeric.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(numeric).enumerate() {
        assert!(
            (a as f64 - e).abs() <= 1e-4 * scale,
            "{what}[{i}]: got {a}, finite differences give {e:.7}"
        );
    }
}

/// The adapter's part of the forward, `s (x Aᵀ) Bᵀ`, written out in f64.
fn adapter64(x: &[f64], a: &[f64], b: &[f64], s: f64, d_in: usize, d_out: usize) -> Vec<f64> {
    let r = a.len() / d_in;
    x.chunks_exact(d_in)
        .flat_map(|row| {
            let h: Vec<f64> = a.chunks_exact(d_in).map(|ak| dot64(row, ak)).collect();
            (0..d_out)
                .map(|o| s * dot64(&h, &b[o * r..(o + 1) * r]))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The repository's folder of PEFT fixtures, `tests/fixtures/lora`.
fn peft_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

/// A fixture's `reference.json`, what PEFT measured.
fn peft_reference(case: &str) -> serde_json::Value {
    let path = peft_fixtures().join(case).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The config of `tests/fixtures/llama-tiny`, the base model PEFT adapted.
fn fixture_config() -> GptConfig {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-tiny/config.json");
    config_from_hf_json(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
}

/// A small Llama: vocabulary 40, width 32, 2 blocks, SwiGLU of 48.
fn small_llama() -> GptConfig {
    let mut cfg = GptConfig::llama_tiny();
    (
        cfg.vocab_size,
        cfg.d_model,
        cfg.n_layers,
        cfg.d_ff,
        cfg.context,
    ) = (40, 32, 2, 48, 16);
    cfg
}

// --- Exercise 1 ---------------------------------------------------------------------------

#[test]
fn exercise_1_lora_forward() {
    // One row, d_in = 2, d_out = 1, r = 1. x = (1, 2), W = (0.5, −1): x Wᵀ = 0.5 − 2 = −1.5.
    // A = (3, 4): h = x Aᵀ = 3 + 8 = 11. B = (5), s = 2: s h Bᵀ = 2 · 11 · 5 = 110.
    // y = −1.5 + 110 = 108.5.
    let ad = Adapter {
        d_in: 2,
        d_out: 1,
        r: 1,
        s: 2.0,
        a: vec![3.0, 4.0],
        b: vec![5.0],
    };
    let y = solution::lora_forward(&[1.0, 2.0], &[0.5, -1.0], &ad);
    assert_all_close(
        &y,
        &[108.5],
        1e-6,
        "x = (1, 2), W = (0.5, −1), A = (3, 4), B = 5, s = 2",
    );

    // Two rows, rank 2, d_out = 2, W = 0. x = [(1, 0), (0, 1)] picks the columns of A:
    // h = Aᵀ's rows, A = [(1, 2), (3, 4)] gives h = [(1, 3), (2, 4)]. B = [(1, 0), (0, 1)]
    // (the identity), s = 0.5: y = 0.5 h = [(0.5, 1.5), (1, 2)].
    let ad = Adapter {
        d_in: 2,
        d_out: 2,
        r: 2,
        s: 0.5,
        a: vec![1.0, 2.0, 3.0, 4.0],
        b: vec![1.0, 0.0, 0.0, 1.0],
    };
    let y = solution::lora_forward(&[1.0, 0.0, 0.0, 1.0], &[0.0; 4], &ad);
    assert_all_close(
        &y,
        &[0.5, 1.5, 1.0, 2.0],
        1e-6,
        "x = I, W = 0, B = I, s = 0.5",
    );

    // A fresh adapter has B = 0: the layer gives exactly what the base gives, whatever A is.
    let (n, d_in, d_out, r) = (5, 12, 7, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (x, w) = (
        random(&mut rng, n * d_in, 1.0),
        random(&mut rng, d_out * d_in, 1.0),
    );
    let mut fresh = random_adapter(&mut rng, d_in, d_out, r, 2.0);
    fresh.b = vec![0.0; d_out * r];
    let mut base = vec![0.0; n * d_out];
    linear_forward(&mut base, &x, &w, n, d_in, d_out);
    let y = solution::lora_forward(&x, &w, &fresh);
    assert_all_close(&y, &to_f64(&base), 1e-6, "B = 0: the base layer's output");

    // Random numbers, against the crate's Linear with its adapter.
    let ad = random_adapter(&mut rng, d_in, d_out, r, 1.5);
    let y = solution::lora_forward(&x, &w, &ad);
    let want = reference::lora_forward(&x, &w, &ad);
    assert_all_close(&y, &to_f64(&want), 1e-5, "y against the crate");
}

// --- Exercise 2 ---------------------------------------------------------------------------

#[test]
fn exercise_2_lora_backward() {
    // The forward of exercise 1: x = (1, 2), A = (3, 4), B = (5), s = 2, so h = 11.
    // With dy = (1): dB = s dyᵀ h = 2 · 1 · 11 = 22. dh = s dy B = 2 · 5 = 10.
    // dA = dhᵀ x = 10 · (1, 2) = (10, 20). dx = dh A = 10 · (3, 4) = (30, 40).
    let ad = Adapter {
        d_in: 2,
        d_out: 1,
        r: 1,
        s: 2.0,
        a: vec![3.0, 4.0],
        b: vec![5.0],
    };
    let (mut dx, mut da, mut db) = (vec![0.0; 2], vec![0.0; 2], vec![0.0]);
    solution::lora_backward(&mut dx, &mut da, &mut db, &[1.0], &[1.0, 2.0], &ad);
    assert_all_close(&db, &[22.0], 1e-6, "dB = s dyᵀ h");
    assert_all_close(&da, &[10.0, 20.0], 1e-6, "dA = dhᵀ x with dh = s dy B");
    assert_all_close(&dx, &[30.0, 40.0], 1e-6, "the adapter's dx = dh A");

    // B = 0, as at the start of training: dh = s dy B = 0, so A gets no gradient (and x
    // none through the adapter), but B does: dB = s dyᵀ h with h = x Aᵀ ≠ 0. The first step
    // moves B, and from then on A trains too.
    let fresh = Adapter {
        b: vec![0.0],
        ..ad.clone()
    };
    let (mut dx, mut da, mut db) = (vec![0.0; 2], vec![0.0; 2], vec![0.0]);
    solution::lora_backward(&mut dx, &mut da, &mut db, &[1.0], &[1.0, 2.0], &fresh);
    assert_all_close(&da, &[0.0, 0.0], 1e-6, "B = 0: dA = 0");
    assert_all_close(&dx, &[0.0, 0.0], 1e-6, "B = 0: no dx through the adapter");
    assert_all_close(&db, &[22.0], 1e-6, "B = 0: dB = s dyᵀ h is not 0");

    // A = 0 and B = 0 both: h = 0 so dB = 0, and B = 0 so dA = 0. Neither would ever move:
    // that is why A starts random.
    let zero = Adapter {
        a: vec![0.0; 2],
        b: vec![0.0],
        ..ad.clone()
    };
    let (mut dx, mut da, mut db) = (vec![0.0; 2], vec![0.0; 2], vec![0.0]);
    solution::lora_backward(&mut dx, &mut da, &mut db, &[1.0], &[1.0, 2.0], &zero);
    assert_all_close(
        &[da, db].concat(),
        &[0.0; 3],
        1e-6,
        "A = B = 0: no gradient at all",
    );

    // Finite differences in f64 on n = 5 rows, 6 -> 4, rank 3, into buffers that held
    // random numbers.
    let (n, d_in, d_out, r) = (5, 6, 4, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let ad = random_adapter(&mut rng, d_in, d_out, r, 1.5);
    let x = random(&mut rng, n * d_in, 1.0);
    let dy = random(&mut rng, n * d_out, 1.0);
    let init = [
        random(&mut rng, n * d_in, 1.0),
        random(&mut rng, r * d_in, 1.0),
        random(&mut rng, d_out * r, 1.0),
    ];
    let [mut dx, mut da, mut db] = init.clone();
    solution::lora_backward(&mut dx, &mut da, &mut db, &dy, &x, &ad);
    let (x64, a64, b64, r64, s) = (to_f64(&x), to_f64(&ad.a), to_f64(&ad.b), to_f64(&dy), 1.5);
    let loss = |x: &[f64], a: &[f64], b: &[f64]| dot64(&adapter64(x, a, b, s, d_in, d_out), &r64);
    assert_gradient(
        &added(&da, &init[1]),
        &numeric_gradient(&a64, |a| loss(&x64, a, &b64)),
        "dA",
    );
    assert_gradient(
        &added(&db, &init[2]),
        &numeric_gradient(&b64, |b| loss(&x64, &a64, b)),
        "dB",
    );
    assert_gradient(
        &added(&dx, &init[0]),
        &numeric_gradient(&x64, |x| loss(x, &a64, &b64)),
        "dx (the adapter's part)",
    );
    let [mut cx, mut ca, mut cb] = init.clone();
    reference::lora_backward(&mut cx, &mut ca, &mut cb, &dy, &x, &ad);
    assert_all_close(&da, &to_f64(&ca), 1e-5, "dA against the crate");
    assert_all_close(&db, &to_f64(&cb), 1e-5, "dB against the crate");
    assert_all_close(&dx, &to_f64(&cx), 1e-5, "dx against the crate");
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_lora_scale() {
    // alpha = 8, r = 4: s = 2 (PEFT's fixture `qv`). With rsLoRA, 8 / sqrt 4 = 4.
    assert_all_close(
        &[solution::lora_scale(8.0, 4, false)],
        &[2.0],
        1e-6,
        "alpha 8, r 4",
    );
    assert_all_close(
        &[solution::lora_scale(8.0, 4, true)],
        &[4.0],
        1e-6,
        "alpha 8, r 4, rsLoRA",
    );
    // r = 1: both are alpha.
    for rslora in [false, true] {
        let s = solution::lora_scale(3.0, 1, rslora);
        assert_all_close(&[s], &[3.0], 1e-6, &format!("r = 1, rslora = {rslora}"));
    }
    // alpha = 2r, a common choice, keeps s = 2 at every rank; with rsLoRA s = 2 sqrt r grows.
    for r in [1, 2, 4, 8, 16, 64] {
        let alpha = 2.0 * r as f32;
        assert_all_close(
            &[solution::lora_scale(alpha, r, false)],
            &[2.0],
            1e-6,
            "alpha = 2r",
        );
        let want = 2.0 * (r as f64).sqrt();
        let s = solution::lora_scale(alpha, r, true);
        assert_all_close(&[s], &[want], 1e-6, "alpha = 2r, rsLoRA: 2 sqrt r");
    }
    // rsLoRA: s² r = alpha² at every rank (the sum of r terms grows like sqrt r; s undoes it).
    for r in [1, 3, 8, 100] {
        let s = solution::lora_scale(5.0, r, true) as f64;
        assert_all_close(&[(s * s * r as f64) as f32], &[25.0], 1e-5, "s² r = alpha²");
    }
    // PEFT's own scaling, read from its model when it made the fixtures.
    for (case, rslora) in [("qv", false), ("rslora_all", true)] {
        let r = peft_reference(case);
        let (alpha, rank) = (r["lora_alpha"].as_f64().unwrap(), r["r"].as_u64().unwrap());
        let s = solution::lora_scale(alpha as f32, rank as usize, rslora);
        let want = r["scaling"].as_f64().unwrap();
        assert_all_close(
            &[s],
            &[want],
            1e-6,
            &format!("PEFT's scaling in fixture {case}"),
        );
    }
    // Against the crate.
    for (alpha, r, rslora) in [
        (16.0, 8, false),
        (16.0, 8, true),
        (1.0, 3, true),
        (32.0, 7, false),
    ] {
        let s = solution::lora_scale(alpha, r, rslora);
        let want = reference::lora_scale(alpha, r, rslora);
        assert_all_close(&[s], &[want as f64], 1e-6, "s against the crate");
    }
}

// --- Exercise 4 ---------------------------------------------------------------------------

#[test]
fn exercise_4_merge_and_unmerge() {
    // A = (1, 2) (r = 1, d_in = 2), B = (3, 4)ᵀ (d_out = 2), s = 0.5:
    // s B A = 0.5 [[3, 6], [4, 8]] = [[1.5, 3], [2, 4]]. W = I: W + s B A = [[2.5, 3], [2, 5]].
    let ad = Adapter {
        d_in: 2,
        d_out: 2,
        r: 1,
        s: 0.5,
        a: vec![1.0, 2.0],
        b: vec![3.0, 4.0],
    };
    let mut w = vec![1.0, 0.0, 0.0, 1.0];
    solution::merge(&mut w, &ad);
    assert_all_close(&w, &[2.5, 3.0, 2.0, 5.0], 1e-6, "I + s B A");
    solution::unmerge(&mut w, &ad);
    assert_all_close(&w, &[1.0, 0.0, 0.0, 1.0], 1e-6, "unmerged: I again");

    // One layer: the merged weight alone gives the adapted layer's output (the crate's).
    let (n, d_in, d_out, r) = (6, 16, 12, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (x, w0) = (
        random(&mut rng, n * d_in, 1.0),
        random(&mut rng, d_out * d_in, 1.0),
    );
    let ad = random_adapter(&mut rng, d_in, d_out, r, 0.75);
    let mut w = w0.clone();
    solution::merge(&mut w, &ad);
    let mut y = vec![0.0; n * d_out];
    linear_forward(&mut y, &x, &w, n, d_in, d_out);
    let adapted = reference::lora_forward(&x, &w0, &ad);
    assert_all_close(
        &y,
        &to_f64(&adapted),
        1e-5,
        "x (W + s B A)ᵀ against x Wᵀ + s (x Aᵀ) Bᵀ",
    );
    let mut crate_w = w0.clone();
    reference::merge(&mut crate_w, &ad);
    assert_all_close(
        &w,
        &to_f64(&crate_w),
        1e-6,
        "merged weight against the crate",
    );
    solution::unmerge(&mut w, &ad);
    let gap = max_gap(&w, &w0);
    assert!(
        gap < 1e-6,
        "unmerge gives the base back within float rounding, off by {gap}"
    );

    // A whole small Llama with adapters on all seven projections (random B, so that they
    // change something): merge every one with your `merge`, and the logits of the merged
    // model, which has no adapters left, equal the adapted model's; unmerge them all and
    // every base weight is back.
    let cfg = small_llama();
    let mut model = Gpt::init(cfg.clone(), 5).unwrap();
    let base = model.params.clone();
    model
        .params
        .add_lora(&reference::config(8.0, 4, false, &TARGETS), 6)
        .unwrap();
    model.params.visit_mut(|spec, t| {
        if spec.name.contains("lora_B") {
            t.iter_mut().for_each(|x| *x = rng.gen_range(-0.05..=0.05));
        }
    });
    let ids: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 40).collect();
    let logits = |m: &Gpt| {
        let mut acts = Activations::new(&cfg, 1, ids.len());
        m.forward(&mut acts, &ids).unwrap();
        acts.logits
    };
    let (adapted, base_logits) = (
        logits(&model),
        logits(&Gpt::new(cfg.clone(), base.clone()).unwrap()),
    );
    assert!(
        max_gap(&adapted, &base_logits) > 1e-3,
        "the adapters change the logits"
    );
    let mut merged = model.clone();
    let mut taken = Vec::new();
    merged.params.visit_linears_mut(|name, linear| {
        if let Some(a) = linear.adapter.take() {
            let ad = Adapter {
                d_in: linear.d_in,
                d_out: linear.d_out,
                r: a.rank(),
                s: a.scale,
                a: a.a.data.clone(),
                b: a.b.data.clone(),
            };
            solution::merge(&mut linear.f32_mut()[..], &ad);
            taken.push((name.to_string(), ad));
        }
    });
    assert_eq!(taken.len(), 7 * 2, "seven projections in each of 2 blocks");
    let gap = max_gap(&logits(&merged), &adapted);
    assert!(
        gap < 1e-5,
        "merged logits differ from the adapted model's by {gap}"
    );
    merged.params.visit_linears_mut(|name, linear| {
        if let Some((_, ad)) = taken.iter().find(|(n, _)| n == name) {
            solution::unmerge(&mut linear.f32_mut()[..], ad);
        }
    });
    let worst = base
        .tensors()
        .iter()
        .zip(merged.params.tensors())
        .map(|(b, m)| max_gap(b, m))
        .fold(0.0, f32::max);
    assert!(
        worst < 1e-6,
        "unmerged weights differ from the base by {worst}"
    );
}

// --- Exercise 5 ---------------------------------------------------------------------------

#[test]
fn exercise_5_trainable_params() {
    // llama-tiny: C = 128, kv = 2 heads · 32 = 64, d_ff = 344, 4 blocks.
    // q and v at r = 8: q 8 (128 + 128) = 2,048, v 8 (128 + 64) = 1,536; 4 blocks: 14,336,
    // 1.45% of the model's 988,288.
    let tiny = GptConfig::llama_tiny();
    assert_eq!(
        solution::trainable_params(&tiny, 8, &["q_proj", "v_proj"]),
        14_336,
        "llama-tiny, q and v, r = 8"
    );
    // All seven at r = 8: q 2,048 + k 1,536 + v 1,536 + o 2,048 + gate, up, down 8 (128 + 344)
    // = 3,776 each: 18,496 per block, 73,984 in all.
    assert_eq!(
        solution::trainable_params(&tiny, 8, &TARGETS),
        73_984,
        "llama-tiny, all seven, r = 8"
    );
    // Twice the rank, twice the count.
    assert_eq!(
        solution::trainable_params(&tiny, 16, &TARGETS),
        2 * 73_984,
        "r = 16"
    );

    // Against Params::add_lora's count on llama-tiny, for several ranks and targets.
    let target_sets: [&[&str]; 5] = [
        &["q_proj", "v_proj"],
        &["k_proj"],
        &["o_proj", "down_proj"],
        &["gate_proj", "up_proj"],
        &TARGETS,
    ];
    for targets in target_sets {
        for r in [1, 4, 8, 16] {
            assert_eq!(
                solution::trainable_params(&tiny, r, targets),
                reference::trainable_params(&tiny, r, targets),
                "llama-tiny, r = {r}, targets {targets:?}, against Params::add_lora"
            );
        }
    }

    // gpt2-tiny's GELU MLP has no gate_proj: up and down are there, gate adds nothing.
    let gpt2 = GptConfig::gpt2_tiny();
    assert_eq!(gpt2.mlp, Mlp::Gelu);
    for targets in [&["gate_proj"][..], &["up_proj", "gate_proj"], &TARGETS] {
        assert_eq!(
            solution::trainable_params(&gpt2, 4, targets),
            reference::trainable_params(&gpt2, 4, targets),
            "gpt2-tiny, r = 4, targets {targets:?}, against Params::add_lora"
        );
    }

    // PEFT's count (`n_adapter_params`) for the fixtures' base model (width 64, kv 32,
    // d_ff 176, 2 blocks): q, v at r = 4 is 1,792; all seven at r = 8 is 18,688.
    let base = fixture_config();
    for (case, targets) in [("qv", &["q_proj", "v_proj"][..]), ("rslora_all", &TARGETS)] {
        let r = peft_reference(case);
        let rank = r["r"].as_u64().unwrap() as usize;
        let want = r["n_adapter_params"].as_u64().unwrap() as usize;
        assert_eq!(
            solution::trainable_params(&base, rank, targets),
            want,
            "PEFT's count in fixture {case}"
        );
    }
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_peft_tensor_names() {
    assert_eq!(
        solution::peft_tensor_name(0, "q_proj", 'A'),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    assert_eq!(
        solution::peft_tensor_name(3, "v_proj", 'B'),
        "base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"
    );
    assert_eq!(
        solution::peft_tensor_name(11, "down_proj", 'A'),
        "base_model.model.model.layers.11.mlp.down_proj.lora_A.weight"
    );

    // The names in files PEFT itself saved: q and v (fixture `qv`), and all seven
    // projections (fixture `rslora_all`), in both blocks of the base model.
    for (case, targets) in [("qv", &["q_proj", "v_proj"][..]), ("rslora_all", &TARGETS)] {
        let file = peft_fixtures().join(case).join("adapter_model.safetensors");
        let peft: BTreeSet<String> = read_safetensors(&file)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mine: BTreeSet<String> = (0..2)
            .flat_map(|l| {
                targets
                    .iter()
                    .flat_map(move |m| ['A', 'B'].map(|ab| solution::peft_tensor_name(l, m, ab)))
            })
            .collect();
        assert_eq!(
            mine,
            peft,
            "your names against PEFT's file {}",
            file.display()
        );
    }

    // And in the file the crate's `save_adapter` writes, for a small Llama with all seven.
    let cfg = small_llama();
    let mut params = Params::init(&cfg, 1);
    let lora = reference::config(4.0, 2, false, &TARGETS);
    params.add_lora(&lora, 2).unwrap();
    let dir = std::env::temp_dir().join(format!("llm-lessons-05-lora-{}", std::process::id()));
    save_adapter(&dir, &params, &lora, "small-llama").unwrap();
    let saved: BTreeSet<String> = read_safetensors(&dir.join("adapter_model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    let mine: BTreeSet<String> = (0..cfg.n_layers)
        .flat_map(|l| {
            TARGETS
                .iter()
                .flat_map(move |m| ['A', 'B'].map(|ab| solution::peft_tensor_name(l, m, ab)))
        })
        .collect();
    assert_eq!(mine, saved, "your names against the crate's save_adapter");
}

// --- Exercise 7 ---------------------------------------------------------------------------

#[test]
fn exercise_7_kaiming_bound() {
    // gain = sqrt(2 / (1 + 5)) = sqrt(1/3); bound = sqrt(1/3) sqrt(3 / d_in) = 1 / sqrt(d_in).
    // d_in = 64: 1/8. d_in = 128 (llama-tiny's q_proj): 0.0884. d_in = 4: 1/2.
    for (d_in, want) in [(64, 0.125), (4, 0.5), (1, 1.0), (128, 1.0 / 128f64.sqrt())] {
        let b = solution::kaiming_bound(d_in);
        assert_all_close(&[b], &[want], 1e-6, &format!("d_in = {d_in}"));
    }
    // PEFT's fixture `init` recorded, for each A it drew, the layer's inputs, the bound and
    // the largest |value| it drew (within the bound, and close to it: 256 draws).
    let stats = peft_reference("init")["init_stats"].clone();
    let mut checked = 0;
    for (name, s) in stats.as_object().unwrap() {
        if let Some(d_in) = s["in_features"].as_u64() {
            let b = solution::kaiming_bound(d_in as usize);
            let want = s["kaiming_bound"].as_f64().unwrap();
            assert_all_close(&[b], &[want], 1e-6, &format!("PEFT's bound for {name}"));
            assert!(
                s["max_abs"].as_f64().unwrap() <= b as f64,
                "{name}: PEFT drew past your bound"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "q and v's A in both blocks of fixture init");
    // Against the crate, and the crate's fresh adapters lie within it.
    for d_in in [3, 64, 128, 344, 4096] {
        let b = solution::kaiming_bound(d_in);
        assert_all_close(
            &[b],
            &[reference::kaiming_bound(d_in) as f64],
            1e-6,
            "against the crate",
        );
    }
    let mut params = Params::zeros(&GptConfig::llama_tiny());
    params
        .add_lora(
            &reference::config(8.0, 8, false, &["q_proj", "down_proj"]),
            3,
        )
        .unwrap();
    params.visit(|spec, t| {
        if spec.name.contains("lora_A") {
            let bound = solution::kaiming_bound(spec.shape[1]);
            let max = t.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!(
                max <= bound && max > 0.9 * bound,
                "{}: largest |A| {max}, your bound {bound}",
                spec.name
            );
        }
    });
}
