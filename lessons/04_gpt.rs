//! # Chapter 4 exercises: from GPT to Llama
//!
//! You write eleven small functions, the pieces of a transformer that are easiest to get
//! subtly wrong: the gradient of the loss, the backward passes of LayerNorm and RMSNorm,
//! rotary position embeddings, the causal mask, which key/value head a query head reads,
//! attention's backward, one AdamW step, attention over a key/value cache, SwiGLU's
//! backward and the learning-rate schedule. The backward passes are yours to derive: the
//! doc comments give the forward and hints, the book the derivation. The tests at
//! the bottom of this file check them, first against answers worked out by hand (the
//! arithmetic is in the comments), then against finite differences and against the crate.
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
//!    cargo test --features learner --test 04_gpt
//!    cargo test --features learner --test 04_gpt exercise_3
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::gpt`). `cargo test --test 04_gpt` always passes and shows what
//!    "done" looks like. Try an exercise before you read its reference. The crate's file that
//!    each hint names, in `src/gpt/`, is the full answer, with the formula in its doc comment.
//!
//! The book's page "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//!
//! ## Conventions (the crate's)
//!
//! - Tensors are flat `f32` slices in row-major order: a `(T, C)` tensor is `T` rows of `C`
//!   numbers, and row `t` is `x[t * c..(t + 1) * c]`. Several heads side by side, `(T,
//!   n_heads, hs)`, put head `h` of position `t` at `x[(t * n_heads + h) * hs..][..hs]`.
//! - A backward *adds* its gradients into the buffers it is given (`+=`), as llm.c's and
//!   the crate's do: a tensor used twice (a key/value head shared by several query heads, an
//!   embedding tied to the output head) then collects both gradients, and one place zeroes
//!   the buffers before a backward. The tests start the buffers at non-zero numbers, so an
//!   answer that overwrites them fails.
//! - The gradients are checked against central finite differences of a forward written in
//!   f64 in this file, `(L(x + h) - L(x - h)) / 2h`, with `L = Σ y · r` for a fixed random
//!   `r`, so that `dL/dy = r`.

use llm_lessons::gpt::optim::{AdamWConfig, LrSchedule};

/// The heads of one attention layer: `n_heads` query heads of width `head_dim`, sharing
/// `n_kv_heads` key/value heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    /// Width of one position's keys (or values), `n_kv_heads * head_dim`.
    pub fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One layer's key/value cache: the keys and the values of every position so far, each a
/// `(len, n_kv_heads * head_dim)` tensor that grows by one row per token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerCache {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use super::{AdamWConfig, Heads, LayerCache, LrSchedule};

    /// Exercise 1: the gradient of the mean softmax cross-entropy with respect to the logits.
    ///
    /// `logits` holds `N` rows of `V` numbers, one row per position, and `targets` the `N`
    /// correct ids. The loss is `L = (1/N) Σ_n −ln softmax(z_n)[y_n]`. Add `dL/dz` into
    /// `dlogits`. Compute the softmax stably: subtract the row's largest logit before `exp`
    /// (it changes no probability), or a logit of 1000 gives `inf / inf`.
    ///
    /// - Hint 1: write one row's loss as `−z_y + ln Σ_j e^(z_j)` and differentiate it with
    ///   respect to one logit `z_i`: the first term matters only when `i = y`, the second
    ///   gives a familiar fraction. Then the mean's `1/N`.
    /// - Hint 2: the book's chapter 4, section "Softmax cross-entropy", derives it.
    pub fn cross_entropy_backward(
        _dlogits: &mut [f32],
        _logits: &[f32],
        _targets: &[u32],
        _v: usize,
    ) {
        unimplemented!(
            "Exercise 1 (cross_entropy_backward): implement `fn cross_entropy_backward` in \
             lessons/04_gpt.rs — for each row n: p = softmax(row) (subtract the row's max \
             first), then add ∂L/∂z_(n,i), which you derive from −z_y + ln Σ_j e^(z_j) and \
             the mean's 1/N; the crate's version: `cross_entropy_forward` and \
             `cross_entropy_backward` in src/gpt/loss.rs"
        )
    }

    /// Exercise 2: LayerNorm's backward.
    ///
    /// The forward (GPT-2's), per row of `C` numbers: `mean = (1/C) Σ x_i`,
    /// `var = (1/C) Σ (x_i − mean)²`, `rstd = 1 / sqrt(var + eps)`, `n_i = (x_i − mean) rstd`,
    /// then `y_i = w_i n_i + b_i`. It kept `mean` and `rstd` per row. Given `dy`, add
    /// `dL/dx`, `dL/dw` and `dL/db` into `dx`, `dw` and `db` (the last two summed over the
    /// rows). Derive them on paper first; the finite-difference test tells you if you did.
    ///
    /// - Hint 1: `dw` and `db` are one line each. For `dx`, call `g_i = w_i dy_i` the
    ///   gradient of `n_i`; every `n_i` depends on every `x_j`, directly, through `mean`,
    ///   and through `rstd` (which depends on `x_j` through `var`). Write `∂n_i/∂x_j` with
    ///   `x_i − mean = n_i / rstd`, then sum `g_i ∂n_i/∂x_j` over `i`: two per-row means appear.
    /// - Hint 2: the book derives it step by step in chapter 4, section "LayerNorm".
    ///
    /// Shapes: `dx, dy, x: (N, C)`, `dw, db, w: (C)`, `mean, rstd: (N)`.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward(
        _dx: &mut [f32],
        _dw: &mut [f32],
        _db: &mut [f32],
        _dy: &[f32],
        _x: &[f32],
        _w: &[f32],
        _mean: &[f32],
        _rstd: &[f32],
        _c: usize,
    ) {
        unimplemented!(
            "Exercise 2 (layer_norm_backward): implement `fn layer_norm_backward` in \
             lessons/04_gpt.rs — derive dL/dx_j = Σ_i w_i dy_i ∂n_i/∂x_j on paper (n_i \
             depends on x_j directly, through the mean and through rstd), then add it and \
             dw, db into the buffers; the hints are in the doc comment, the derivation in \
             the book's \"LayerNorm\" section; the crate's version: `layer_norm_backward` \
             in src/gpt/norm.rs"
        )
    }

    /// Exercise 3: RMSNorm's backward.
    ///
    /// The forward (Llama's), per row: `rrms = 1 / sqrt((1/C) Σ x_i² + eps)`,
    /// `n_i = x_i rrms`, then `y_i = w_i n_i`: LayerNorm without the mean and without the
    /// bias. Given `dy`, add `dL/dx` and `dL/dw` (summed over the rows) into `dx` and `dw`.
    ///
    /// - Hint 1: as in exercise 2 with `g_i = w_i dy_i`, but `n_i` depends on `x_j` only
    ///   directly and through `rrms`; find `∂rrms/∂x_j` and write it with `n_j`.
    /// - Hint 2: the book's chapter 4, section "RMSNorm", derives it from LayerNorm's.
    ///
    /// Shapes: `dx, dy, x: (N, C)`, `dw, w: (C)`, `rrms: (N)`.
    pub fn rms_norm_backward(
        _dx: &mut [f32],
        _dw: &mut [f32],
        _dy: &[f32],
        _x: &[f32],
        _w: &[f32],
        _rrms: &[f32],
        _c: usize,
    ) {
        unimplemented!(
            "Exercise 3 (rms_norm_backward): implement `fn rms_norm_backward` in \
             lessons/04_gpt.rs — derive dL/dx_j = Σ_i w_i dy_i ∂n_i/∂x_j (n_i depends on x_j \
             directly and through rrms), then add it and dw into the buffers; the hints are \
             in the doc comment, the derivation in the book's \"RMSNorm\" section; the \
             crate's version: `rms_norm_backward` in src/gpt/norm.rs"
        )
    }

    /// Exercise 4: rotary position embedding (RoPE) of one head vector at position `pos`,
    /// in Hugging Face's half-split convention.
    ///
    /// `x` has an even width `hs`. Pair `i` (for `i < hs/2`) is `(x[i], x[i + hs/2])`, the
    /// first half with the second, and it is rotated by the angle
    /// `pos * theta^(−2i/hs)`:
    ///
    /// ```text
    /// y[i]        = x[i] cos − x[i + hs/2] sin
    /// y[i + hs/2] = x[i + hs/2] cos + x[i] sin
    /// ```
    ///
    /// A negative `pos` rotates the other way: `rope(rope(x, m), −m)` is `x` again. (Meta's
    /// original code pairs neighbours `(x[2i], x[2i + 1])` instead; the tests check the
    /// half-split pairs.)
    pub fn rope(_x: &[f32], _pos: i64, _theta: f32) -> Vec<f32> {
        unimplemented!(
            "Exercise 4 (rope): implement `fn rope` in lessons/04_gpt.rs — half = x.len() / 2; \
             for i in 0..half: angle = pos * theta^(−2i / hs), then rotate the pair (x[i], \
             x[i + half]) by it; the crate's version: `RopeTable::new` and `rope_forward` in \
             src/gpt/rope.rs"
        )
    }

    /// Exercise 5: the causal mask and the softmax of attention.
    ///
    /// `scores` is a `(T, T)` matrix of attention scores, row `t` for the query at position
    /// `t`. Position `t` may only look at positions `0..=t`: set the scores above the
    /// diagonal (column `s > t`) to −∞, then take the softmax of each row. Return the
    /// `(T, T)` probabilities: each row sums to 1, and is exactly 0 above the diagonal,
    /// whatever the scores there were. Subtract each row's largest visible score before
    /// `exp`.
    pub fn causal_softmax(_scores: &[f32], _t: usize) -> Vec<f32> {
        unimplemented!(
            "Exercise 5 (causal_softmax): implement `fn causal_softmax` in lessons/04_gpt.rs — \
             for row i, keep scores[i][..=i] (the rest is −∞: probability 0), m = their max, \
             e_j = exp(s_j − m), p_j = e_j / Σ e; the crate's version: `causal_softmax` in \
             src/gpt/attention.rs"
        )
    }

    /// Exercise 6: grouped-query attention (GQA): which key/value head query head `h` reads.
    ///
    /// `n_kv_heads` divides `n_heads`, and each key/value head serves a *block* of
    /// `n_heads / n_kv_heads` consecutive query heads (Hugging Face's `repeat_kv`): with 8
    /// query heads and 2 key/value heads, heads 0..=3 read key/value head 0, and heads 4..=7
    /// key/value head 1. `n_kv_heads == n_heads` is multi-head attention (head h reads head
    /// h); `n_kv_heads == 1` is multi-query attention (every head reads head 0).
    pub fn kv_head(_h: usize, _n_heads: usize, _n_kv_heads: usize) -> usize {
        unimplemented!(
            "Exercise 6 (kv_head): implement `fn kv_head` in lessons/04_gpt.rs — the group size \
             is n_rep = n_heads / n_kv_heads, and query head h belongs to group h / n_rep (not \
             h % n_kv_heads); the crate's version: `attention_forward_one` in \
             src/gpt/attention.rs (`let g = h / s.n_rep()`)"
        )
    }

    /// Exercise 7: the backward of one head of causal attention.
    ///
    /// The forward, with `q, k, v, y: (T, hs)` and `att: (T, T)`:
    /// `S = q kᵀ / sqrt(hs)`, `P = causal_softmax(S)` (kept as `att`), `y = P v`.
    /// Given `dy`, add `dL/dq`, `dL/dk` and `dL/dv` into `dq`, `dk` and `dv`.
    ///
    /// - Hint 1: go backwards through the three steps. `y = P v` and `S = q kᵀ / sqrt(hs)`
    ///   are matrix products, whose backward is a linear layer's (for `y = A B`, what are
    ///   `dA` and `dB`?). Between them is the softmax of each row: differentiate
    ///   `p_j = e^(s_j) / Σ_k e^(s_k)` with respect to `s_i` (the top and the bottom both
    ///   depend on it) and contract the Jacobian with the row's `dP`.
    /// - Hint 2: the book's chapter 4, section "Attention's backward", derives every step.
    ///   The masked scores (above the diagonal) have `P = 0`: what gradient do they get?
    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        _dq: &mut [f32],
        _dk: &mut [f32],
        _dv: &mut [f32],
        _dy: &[f32],
        _att: &[f32],
        _q: &[f32],
        _k: &[f32],
        _v: &[f32],
        _t: usize,
        _hs: usize,
    ) {
        unimplemented!(
            "Exercise 7 (attention_backward): implement `fn attention_backward` in \
             lessons/04_gpt.rs — go back through y = P v (dv, then dP), the row softmax (dS \
             from dP: derive the softmax's Jacobian), and S = q kᵀ / sqrt(hs) (dq, dk), only \
             over keys j <= i; the hints are in the doc comment, the derivation in the book's \
             \"Attention's backward\" section; the crate's version: `attention_backward` in \
             src/gpt/attention.rs"
        )
    }

    /// Exercise 8: one AdamW step on one tensor.
    ///
    /// `step` is the number of this step, counted from 1. `m` and `v` are the moving
    /// averages of the gradient and of its square, updated in place; `config` holds
    /// `beta1`, `beta2`, `eps` and `weight_decay`. Do what PyTorch's `torch.optim.AdamW`
    /// does, element by element, in its order.
    ///
    /// - Hint 1: four parts. The weight decay is *decoupled*: it shrinks `w` by
    ///   `lr * weight_decay * w` before, and apart from, the gradient step. Then the two
    ///   exponential moving averages (of `g` and of `g²`). They start at 0, so early on they
    ///   are too small: divide each by what its weights sum to after `step` steps
    ///   (a geometric series in `beta`). Last, a step of size `lr` along the corrected mean
    ///   over the square root of the corrected second moment, with `eps` added to the root.
    /// - Hint 2: the book's chapter 4, section "AdamW", writes the update out and says why
    ///   the decay is decoupled.
    pub fn adamw_step(
        _w: &mut [f32],
        _g: &[f32],
        _m: &mut [f32],
        _v: &mut [f32],
        _step: u32,
        _lr: f32,
        _config: AdamWConfig,
    ) {
        unimplemented!(
            "Exercise 8 (adamw_step): implement `fn adamw_step` in lessons/04_gpt.rs — for \
             each i: decoupled weight decay, the moving averages m[i] and v[i], their bias \
             corrections for `step`, then the step; the hints are in the doc comment, the \
             update in the book's \"AdamW\" section; the crate's version: `AdamW::step` in \
             src/gpt/optim.rs"
        )
    }

    /// Exercise 9: attention for one new token with a key/value cache.
    ///
    /// When a model generates text, the keys and values of the positions already done do
    /// not change: a layer keeps them in `cache` and computes only the new token's. Append
    /// the new token's keys `k` and values `v` (`n_kv_heads * head_dim` numbers each) to
    /// `cache.k` and `cache.v`, then return the new token's attention output,
    /// `n_heads * head_dim` numbers: for each query head `h` (its part of `q`), the
    /// softmax over every cached position `s` of `q_h · k_{s,g} / sqrt(head_dim)`, with `g`
    /// the key/value head that `h` reads, weighting the values `v_{s,g}`. No mask is
    /// needed: the newest token may see every position before it, and itself.
    pub fn attend_with_cache(
        _cache: &mut LayerCache,
        _q: &[f32],
        _k: &[f32],
        _v: &[f32],
        _heads: Heads,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 9 (attend_with_cache): implement `fn attend_with_cache` in \
             lessons/04_gpt.rs — cache.k.extend(k), cache.v.extend(v); len = cache.k.len() / \
             kv_width; per head h with g = h / (n_heads / n_kv_heads): scores against the len \
             cached keys of head g, softmax, weighted sum of their values; the crate's version: \
             `attention_forward_cached` in src/gpt/attention.rs and `Gpt::forward_cached` in \
             src/gpt/generate.rs"
        )
    }

    /// Exercise 10: the backward of Llama's MLP, SwiGLU.
    ///
    /// The forward, for `n` rows `x` of width `c`, with the weights in PyTorch's layout
    /// (`out × in`, so that a projection is `x Wᵀ`): `w_gate, w_up: (d_ff, c)`,
    /// `w_down: (c, d_ff)`, and
    ///
    /// ```text
    /// a = x w_gateᵀ,   b = x w_upᵀ          (n, d_ff)
    /// h = silu(a) ⊙ b                        silu(z) = z σ(z),  σ(z) = 1 / (1 + e^(−z))
    /// y = h w_downᵀ                          (n, c)
    /// ```
    ///
    /// Given `dy`, add `dL/dx`, `dL/dw_gate`, `dL/dw_up` and `dL/dw_down` into `dx`,
    /// `dw_gate`, `dw_up` and `dw_down`. Recompute `a`, `b` and `h` from the inputs.
    ///
    /// - Hint 1: three linear layers and one product. For `y = x Wᵀ`, write `y_no` as a sum
    ///   and differentiate it for `dx` and for `dW`; the same rule serves all three
    ///   projections. Through `h = silu(a) ⊙ b`, each `h` depends on one `a` and one `b`.
    ///   `x` feeds two projections: its gradient is the sum of both.
    /// - Hint 2: you need `silu'(z)`. Differentiate `z σ(z)` with the product rule, and show
    ///   that `σ'(z) = σ(z) (1 − σ(z))`; then write `silu'` with `σ(z)` only. The book's
    ///   chapter 4, sections "Linear layers" and "The MLP: GELU and SwiGLU", has both.
    #[allow(clippy::too_many_arguments)]
    pub fn swiglu_mlp_backward(
        _dx: &mut [f32],
        _dw_gate: &mut [f32],
        _dw_up: &mut [f32],
        _dw_down: &mut [f32],
        _dy: &[f32],
        _x: &[f32],
        _w_gate: &[f32],
        _w_up: &[f32],
        _w_down: &[f32],
        _n: usize,
        _c: usize,
        _d_ff: usize,
    ) {
        unimplemented!(
            "Exercise 10 (swiglu_mlp_backward): implement `fn swiglu_mlp_backward` in \
             lessons/04_gpt.rs — recompute a = x w_gateᵀ, b = x w_upᵀ, h = silu(a) ⊙ b; then \
             go back through y = h w_downᵀ, the product h = silu(a) ⊙ b (derive silu'(z) from \
             silu(z) = z σ(z)) and the two projections of x, adding every gradient; the \
             hints are in the doc comment; the crate's version: `swiglu_backward` in \
             src/gpt/mlp.rs and `linear_backward` in src/gpt/linear.rs"
        )
    }

    /// Exercise 11: the learning rate of step `step` (counted from 0) under Llama 3's
    /// schedule: linear warm-up, cosine decay, and a linear anneal to 0 at the end.
    ///
    /// With `W = schedule.warmup`, `T = schedule.total`, `A = schedule.anneal` (0: no
    /// anneal) and the peak and floor `schedule.max_lr`, `schedule.min_lr`:
    ///
    /// - warm-up, steps `0..W`: a straight line that reaches `max_lr` at step `W − 1`
    ///   (so step 0 already gets `max_lr / W`, not 0);
    /// - decay, steps `W..T − A`: half a cosine from `max_lr` at step `W` down towards
    ///   `min_lr`, which it reaches at step `T − A` (where the decay ends);
    /// - anneal, steps `T − A..T`: from the decay's last value, `min_lr`, linearly down to
    ///   0 at step `T`, so step `T − A` gets `min_lr` and step `T − 1` gets `min_lr / A`.
    ///   Past `T` the rate stays at 0. Without an anneal, past `T` it stays at `min_lr`.
    ///
    /// Only `schedule.decay == Decay::Cosine` is tested; `W < T − A` in every test.
    ///
    /// - Hint 1: compute the progress `p` of the decay, from 0 at step `W` to 1 at step
    ///   `T − A`; which factor goes from 1 at `p = 0` to 0 at `p = 1` along half a cosine?
    /// - Hint 2: the book's chapter 4, section "Warmup, cosine decay and the final
    ///   annealing", has the formula and the reasons.
    pub fn learning_rate(_schedule: &LrSchedule, _step: usize) -> f32 {
        unimplemented!(
            "Exercise 11 (learning_rate): implement `fn learning_rate` in lessons/04_gpt.rs — \
             three pieces: warm-up (step 0 is max_lr / W, step W − 1 is max_lr), half a cosine \
             from max_lr at step W to min_lr at step total − anneal, then a straight line \
             from min_lr to 0 at step total; the crate's version: `LrSchedule::lr` in \
             src/gpt/optim.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use super::{AdamWConfig, Heads, LayerCache, LrSchedule};
    use llm_lessons::gpt::attention::{
        self, attention_forward, attention_forward_cached, AttnShape,
    };
    use llm_lessons::gpt::linear::{linear_backward, linear_forward};
    use llm_lessons::gpt::loss::{cross_entropy_backward as ce_backward, cross_entropy_forward};
    use llm_lessons::gpt::mlp::{swiglu_backward, swiglu_forward};
    use llm_lessons::gpt::norm;
    use llm_lessons::gpt::optim::AdamW;
    use llm_lessons::gpt::rope::{rope_backward, rope_forward, RopeTable};
    use llm_lessons::gpt::{GptConfig, Mlp, Norm, Params, Positions};

    pub fn cross_entropy_backward(dlogits: &mut [f32], logits: &[f32], targets: &[u32], v: usize) {
        let n = targets.len();
        let (mut probs, mut losses) = (vec![0.0; n * v], vec![0.0; n]);
        cross_entropy_forward(&mut probs, &mut losses, logits, targets, v);
        // the crate's backward weighs each row's loss by dloss[n]: 1/N for the mean
        ce_backward(dlogits, &probs, targets, &vec![1.0 / n as f32; n], v);
    }

    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm_backward(
        dx: &mut [f32],
        dw: &mut [f32],
        db: &mut [f32],
        dy: &[f32],
        x: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) {
        norm::layer_norm_backward(dx, dw, db, dy, x, w, mean, rstd, c);
    }

    pub fn rms_norm_backward(
        dx: &mut [f32],
        dw: &mut [f32],
        dy: &[f32],
        x: &[f32],
        w: &[f32],
        rrms: &[f32],
        c: usize,
    ) {
        norm::rms_norm_backward(dx, dw, dy, x, w, rrms, c);
    }

    pub fn rope(x: &[f32], pos: i64, theta: f32) -> Vec<f32> {
        let p = pos.unsigned_abs() as usize;
        let table = RopeTable::new(theta, x.len(), p + 1);
        let mut y = vec![0.0; x.len()];
        // one position, one head; the backward rotates by the opposite angle (into zeros)
        if pos >= 0 {
            rope_forward(&mut y, x, &table, p, 1, 1);
        } else {
            rope_backward(&mut y, x, &table, p, 1, 1);
        }
        y
    }

    pub fn causal_softmax(scores: &[f32], t: usize) -> Vec<f32> {
        let mut p = scores.to_vec();
        for (i, row) in p.chunks_exact_mut(t).enumerate() {
            attention::causal_softmax(row, i + 1);
        }
        p
    }

    pub fn kv_head(h: usize, n_heads: usize, n_kv_heads: usize) -> usize {
        // Ask the crate's attention: with one position, a head's output is the value of the
        // key/value head it reads, so give key/value head g the value g.
        let s = AttnShape {
            b: 1,
            t: 1,
            n_heads,
            n_kv_heads,
            head_dim: 1,
            v_head_dim: 1,
        };
        let v: Vec<f32> = (0..n_kv_heads).map(|g| g as f32).collect();
        let (mut y, mut att) = (vec![0.0; n_heads], vec![0.0; n_heads]);
        let (q, k) = (vec![0.0; n_heads], vec![0.0; n_kv_heads]);
        attention_forward(&mut y, &mut att, &q, &k, &v, s);
        y[h] as usize
    }

    #[allow(clippy::too_many_arguments)]
    pub fn attention_backward(
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
        dy: &[f32],
        att: &[f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        hs: usize,
    ) {
        let s = AttnShape {
            b: 1,
            t,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: hs,
            v_head_dim: hs,
        };
        let mut scratch = vec![0.0; t * t];
        attention::attention_backward(dq, dk, dv, &mut scratch, dy, att, q, k, v, s);
    }

    /// A model whose parameters are one `(n, 1)` embedding (decayed) and a few tensors of
    /// zeros: the crate's AdamW updates a whole model, and leaves zeros with zero gradients
    /// at zero.
    fn one_tensor_model(n: usize) -> GptConfig {
        GptConfig {
            vocab_size: n,
            d_model: 1,
            n_layers: 1,
            n_heads: 1,
            n_kv_heads: 1,
            d_ff: 1,
            context: 1,
            norm: Norm::LayerNorm { eps: 1e-5 },
            positions: Positions::Learned,
            mlp: Mlp::Gelu,
            tied_head: true,
            mla: None,
            moe: None,
            mtp: None,
        }
    }

    pub fn adamw_step(
        w: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        step: u32,
        lr: f32,
        config: AdamWConfig,
    ) {
        let cfg = one_tensor_model(w.len());
        let (mut params, mut grads) = (Params::zeros(&cfg), Params::zeros(&cfg));
        params.tok_emb.copy_from_slice(w);
        grads.tok_emb.copy_from_slice(g);
        let mut opt = AdamW::new(&params, config);
        // the embedding is the first tensor; `step` counts the steps before this one
        opt.m[0].copy_from_slice(m);
        opt.v[0].copy_from_slice(v);
        opt.t = step - 1;
        opt.step(&mut params, &grads, lr);
        w.copy_from_slice(&params.tok_emb);
        m.copy_from_slice(&opt.m[0]);
        v.copy_from_slice(&opt.v[0]);
    }

    pub fn attend_with_cache(
        cache: &mut LayerCache,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        heads: Heads,
    ) -> Vec<f32> {
        cache.k.extend_from_slice(k);
        cache.v.extend_from_slice(v);
        let len = cache.k.len() / heads.kv_width();
        let s = AttnShape {
            b: 1,
            t: 1,
            n_heads: heads.n_heads,
            n_kv_heads: heads.n_kv_heads,
            head_dim: heads.head_dim,
            v_head_dim: heads.head_dim,
        };
        let mut y = vec![0.0; heads.n_heads * heads.head_dim];
        // one new query at position len - 1, after len - 1 cached positions
        attention_forward_cached(&mut y, q, &cache.k, &cache.v, len - 1, s);
        y
    }

    /// The crate's pieces in the order `block_backward` (src/gpt/block.rs) calls them.
    #[allow(clippy::too_many_arguments)]
    pub fn swiglu_mlp_backward(
        dx: &mut [f32],
        dw_gate: &mut [f32],
        dw_up: &mut [f32],
        dw_down: &mut [f32],
        dy: &[f32],
        x: &[f32],
        w_gate: &[f32],
        w_up: &[f32],
        w_down: &[f32],
        n: usize,
        c: usize,
        d_ff: usize,
    ) {
        let (mut a, mut b, mut h) = (
            vec![0.0; n * d_ff],
            vec![0.0; n * d_ff],
            vec![0.0; n * d_ff],
        );
        linear_forward(&mut a, x, w_gate, n, c, d_ff);
        linear_forward(&mut b, x, w_up, n, c, d_ff);
        swiglu_forward(&mut h, &a, &b);
        let (mut dh, mut da, mut db) = (
            vec![0.0; n * d_ff],
            vec![0.0; n * d_ff],
            vec![0.0; n * d_ff],
        );
        linear_backward(&mut dh, dw_down, dy, &h, w_down, n, d_ff, c);
        swiglu_backward(&mut da, &mut db, &dh, &a, &b);
        linear_backward(dx, dw_gate, &da, x, w_gate, n, c, d_ff);
        linear_backward(dx, dw_up, &db, x, w_up, n, c, d_ff);
    }

    pub fn learning_rate(schedule: &LrSchedule, step: usize) -> f32 {
        schedule.lr(step)
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

use llm_lessons::gpt::attention::{attention_forward, AttnShape};
use llm_lessons::gpt::generate::KvCache;
use llm_lessons::gpt::linear::linear_forward;
use llm_lessons::gpt::mlp::swiglu_forward;
use llm_lessons::gpt::norm::{layer_norm_forward, rms_norm_forward};
use llm_lessons::gpt::residual::add_into;
use llm_lessons::gpt::rope::{rope_forward, RopeTable};
use llm_lessons::gpt::{Activations, Gpt, GptConfig, Mlp, MlpParams, Norm, Positions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` numbers drawn uniformly from `[−scale, scale]` (the same on every machine).
fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
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

// --- f64 forwards for the finite differences --------------------------------------------

/// Mean softmax cross-entropy of `(N, V)` logits, in f64.
fn cross_entropy64(logits: &[f64], targets: &[u32], v: usize) -> f64 {
    let total: f64 = logits
        .chunks_exact(v)
        .zip(targets)
        .map(|(z, &y)| {
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + z.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            log_sum - z[y as usize]
        })
        .sum();
    total / targets.len() as f64
}

/// LayerNorm of every row, in f64.
fn layer_norm64(x: &[f64], w: &[f64], b: &[f64], c: usize, eps: f64) -> Vec<f64> {
    x.chunks_exact(c)
        .flat_map(|row| {
            let mean = row.iter().sum::<f64>() / c as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            (0..c)
                .map(move |i| (row[i] - mean) * rstd * w[i] + b[i])
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RMSNorm of every row, in f64.
fn rms_norm64(x: &[f64], w: &[f64], c: usize, eps: f64) -> Vec<f64> {
    x.chunks_exact(c)
        .flat_map(|row| {
            let rrms = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / c as f64 + eps).sqrt();
            (0..c)
                .map(move |i| row[i] * rrms * w[i])
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One head of causal attention, `(T, hs)` in and out, written out query by query in f64.
fn causal_attention64(q: &[f64], k: &[f64], v: &[f64], t: usize, hs: usize) -> Vec<f64> {
    let mut y = vec![0.0; t * hs];
    for i in 0..t {
        let scores: Vec<f64> = (0..=i)
            .map(|j| dot64(&q[i * hs..][..hs], &k[j * hs..][..hs]) / (hs as f64).sqrt())
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let z: f64 = e.iter().sum();
        for j in 0..=i {
            for d in 0..hs {
                y[i * hs + d] += e[j] / z * v[j * hs + d];
            }
        }
    }
    y
}

// --- Exercise 1 ---------------------------------------------------------------------------

#[test]
fn exercise_1_cross_entropy_backward() {
    // Equal logits over 4 ids: softmax is 1/4 each. Target 2, N = 1:
    // (1/4, 1/4, 1/4 − 1, 1/4) = (0.25, 0.25, −0.75, 0.25).
    let mut d = vec![0.0; 4];
    solution::cross_entropy_backward(&mut d, &[0.0; 4], &[2], 4);
    assert_all_close(
        &d,
        &[0.25, 0.25, -0.75, 0.25],
        1e-6,
        "uniform logits, target 2",
    );

    // Two rows, so each is divided by N = 2. Row 0: logits (ln 1, ln 3) give softmax
    // (1/4, 3/4); target 0: (−3/4, 3/4) / 2. Row 1: (0, 0) gives (1/2, 1/2); target 1:
    // (1/2, −1/2) / 2. The buffer held 1s: the gradient is added to them.
    let mut d = vec![1.0; 4];
    solution::cross_entropy_backward(&mut d, &[0.0, 3f32.ln(), 0.0, 0.0], &[0, 1], 2);
    assert_all_close(
        &d,
        &[1.0 - 0.375, 1.0 + 0.375, 1.0 + 0.25, 1.0 - 0.25],
        1e-6,
        "two rows, the mean over N = 2, added to 1s",
    );

    // Logits (1000, 0, −1000), target 1: softmax is (1, e^−1000, e^−2000) ≈ (1, 0, 0), so
    // the gradient is (1, −1, 0). exp(1000) overflows: subtract the row's max first.
    let mut d = vec![0.0; 3];
    solution::cross_entropy_backward(&mut d, &[1000.0, 0.0, -1000.0], &[1], 3);
    assert_all_close(&d, &[1.0, -1.0, 0.0], 1e-6, "logits (1000, 0, −1000)");

    // Finite differences of the mean loss, in f64, on random logits.
    let (n, v) = (5, 7);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let logits = random(&mut rng, n * v, 3.0);
    let targets: Vec<u32> = (0..n).map(|_| rng.gen_range(0..v as u32)).collect();
    let init = random(&mut rng, n * v, 1.0);
    let mut d = init.clone();
    solution::cross_entropy_backward(&mut d, &logits, &targets, v);
    let mine = added(&d, &init);
    let numeric = numeric_gradient(&to_f64(&logits), |z| cross_entropy64(z, &targets, v));
    assert_gradient(&mine, &numeric, "dL/dlogits against finite differences");
    // Each row sums to 0: Σ_i p_i − 1 = 0 (adding a constant to a row changes no probability).
    for (row, chunk) in mine.chunks(v).enumerate() {
        let sum: f32 = chunk.iter().sum();
        assert!(
            sum.abs() < 1e-6,
            "row {row} of dlogits sums to {sum}, not 0"
        );
    }
    let mut crate_d = init.clone();
    reference::cross_entropy_backward(&mut crate_d, &logits, &targets, v);
    assert_all_close(&d, &to_f64(&crate_d), 1e-5, "dlogits against the crate");
}

// --- Exercise 2 ---------------------------------------------------------------------------

#[test]
fn exercise_2_layer_norm_backward() {
    // Two numbers: LayerNorm maps (1, 3) to (−1, 1) (mean 2, variance 1, rstd 1), and any
    // pair with x0 < x1 to (−1, 1) too, so y does not change with x: dx = 0. With dy = (1, 0):
    // dw = n * dy = (−1, 0) and db = dy = (1, 0).
    let (mut dx, mut dw, mut db) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2]);
    let (x, w) = ([1.0, 3.0], [1.0, 1.0]);
    solution::layer_norm_backward(
        &mut dx,
        &mut dw,
        &mut db,
        &[1.0, 0.0],
        &x,
        &w,
        &[2.0],
        &[1.0],
        2,
    );
    assert_all_close(&dx, &[0.0, 0.0], 1e-6, "dx for x = (1, 3)");
    assert_all_close(&dw, &[-1.0, 0.0], 1e-6, "dw for x = (1, 3), dy = (1, 0)");
    assert_all_close(&db, &[1.0, 0.0], 1e-6, "db for dy = (1, 0)");

    // x = (0, 1, 2): mean 1, variance 2/3, rstd = sqrt(3/2) ≈ 1.2247, n = (−r, 0, r).
    // dy = (1, 0, 0), w = 1: g = (1, 0, 0), mean(g) = 1/3, mean(g n) = −r/3, so
    // n mean(g n) = (1/2, 0, −1/2) and dx = r ((1, 0, 0) − 1/3 − (1/2, 0, −1/2))
    // = r (1/6, −1/3, 1/6) ≈ (0.2041, −0.4082, 0.2041).
    let r = 1.5f64.sqrt();
    let (mut dx, mut dw, mut db) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]);
    solution::layer_norm_backward(
        &mut dx,
        &mut dw,
        &mut db,
        &[1.0, 0.0, 0.0],
        &[0.0, 1.0, 2.0],
        &[1.0; 3],
        &[1.0],
        &[r as f32],
        3,
    );
    assert_all_close(
        &dx,
        &[r / 6.0, -r / 3.0, r / 6.0],
        1e-6,
        "dx for x = (0, 1, 2)",
    );
    assert_all_close(&dw, &[-r, 0.0, 0.0], 1e-6, "dw for x = (0, 1, 2)");

    // Finite differences on 4 rows of 8, in f64, into buffers that held random numbers.
    let (n, c, eps) = (4, 8, 1e-5);
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = random(&mut rng, n * c, 2.0)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let w: Vec<f32> = random(&mut rng, c, 0.5).iter().map(|v| v + 1.0).collect();
    let b = random(&mut rng, c, 0.5);
    let dy = random(&mut rng, n * c, 1.0);
    let (mut y, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
    layer_norm_forward(&mut y, &mut mean, &mut rstd, &x, &w, &b, c, eps as f32);
    let init = [
        random(&mut rng, n * c, 1.0),
        random(&mut rng, c, 1.0),
        random(&mut rng, c, 1.0),
    ];
    let [mut dx, mut dw, mut db] = init.clone();
    solution::layer_norm_backward(&mut dx, &mut dw, &mut db, &dy, &x, &w, &mean, &rstd, c);
    let (x64, w64, b64, r64) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&dy));
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot64(&layer_norm64(x, w, b, c, eps), &r64);
    let dx_mine = added(&dx, &init[0]);
    assert_gradient(
        &dx_mine,
        &numeric_gradient(&x64, |x| loss(x, &w64, &b64)),
        "dx",
    );
    assert_gradient(
        &added(&dw, &init[1]),
        &numeric_gradient(&w64, |w| loss(&x64, w, &b64)),
        "dw (summed over the rows)",
    );
    assert_gradient(
        &added(&db, &init[2]),
        &numeric_gradient(&b64, |b| loss(&x64, &w64, b)),
        "db (summed over the rows)",
    );
    // Adding a constant to a row changes no output, so each row of dx sums to 0.
    for (row, chunk) in dx_mine.chunks(c).enumerate() {
        let sum: f32 = chunk.iter().sum();
        assert!(sum.abs() < 1e-5, "row {row} of dx sums to {sum}, not 0");
    }
    let [mut cx, mut cw, mut cb] = init.clone();
    reference::layer_norm_backward(&mut cx, &mut cw, &mut cb, &dy, &x, &w, &mean, &rstd, c);
    assert_all_close(&dx, &to_f64(&cx), 1e-5, "dx against the crate");
    assert_all_close(&dw, &to_f64(&cw), 1e-5, "dw against the crate");
    assert_all_close(&db, &to_f64(&cb), 1e-5, "db against the crate");
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_rms_norm_backward() {
    // x = (3, 4), eps = 0: mean(x²) = 12.5, rrms = 1/sqrt(12.5), n = x rrms. dy = (1, 0),
    // w = 1: mean(g n) = 3 rrms / 2, so n mean(g n) = (9, 12) / 25 = (0.36, 0.48) and
    // dx = rrms ((1, 0) − (0.36, 0.48)) = (0.64, −0.48) / sqrt(12.5) ≈ (0.1810, −0.1358).
    // dw = n dy = (3 / sqrt(12.5), 0).
    let rrms = 1.0 / 12.5f64.sqrt();
    let (mut dx, mut dw) = (vec![0.0; 2], vec![0.0; 2]);
    solution::rms_norm_backward(
        &mut dx,
        &mut dw,
        &[1.0, 0.0],
        &[3.0, 4.0],
        &[1.0, 1.0],
        &[rrms as f32],
        2,
    );
    assert_all_close(&dx, &[0.64 * rrms, -0.48 * rrms], 1e-6, "dx for x = (3, 4)");
    assert_all_close(&dw, &[3.0 * rrms, 0.0], 1e-6, "dw for x = (3, 4)");

    // Finite differences on 4 rows of 8, into buffers that held random numbers.
    let (n, c, eps) = (4, 8, 1e-5);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x = random(&mut rng, n * c, 2.0);
    let w: Vec<f32> = random(&mut rng, c, 0.5).iter().map(|v| v + 1.0).collect();
    let dy = random(&mut rng, n * c, 1.0);
    let (mut y, mut rrms) = (vec![0.0; n * c], vec![0.0; n]);
    rms_norm_forward(&mut y, &mut rrms, &x, &w, c, eps as f32);
    let init = [random(&mut rng, n * c, 1.0), random(&mut rng, c, 1.0)];
    let [mut dx, mut dw] = init.clone();
    solution::rms_norm_backward(&mut dx, &mut dw, &dy, &x, &w, &rrms, c);
    let (x64, w64, r64) = (to_f64(&x), to_f64(&w), to_f64(&dy));
    let loss = |x: &[f64], w: &[f64]| dot64(&rms_norm64(x, w, c, eps), &r64);
    assert_gradient(
        &added(&dx, &init[0]),
        &numeric_gradient(&x64, |x| loss(x, &w64)),
        "dx",
    );
    assert_gradient(
        &added(&dw, &init[1]),
        &numeric_gradient(&w64, |w| loss(&x64, w)),
        "dw (summed over the rows)",
    );
    let [mut cx, mut cw] = init.clone();
    reference::rms_norm_backward(&mut cx, &mut cw, &dy, &x, &w, &rrms, c);
    assert_all_close(&dx, &to_f64(&cx), 1e-5, "dx against the crate");
    assert_all_close(&dw, &to_f64(&cw), 1e-5, "dw against the crate");

    // With eps = 0, scaling a row changes no output, so dx is perpendicular to x: Σ dx_i x_i = 0.
    rms_norm_forward(&mut y, &mut rrms, &x, &w, c, 0.0);
    let mut dx = vec![0.0; n * c];
    solution::rms_norm_backward(&mut dx, &mut vec![0.0; c], &dy, &x, &w, &rrms, c);
    for (row, (d, x)) in dx.chunks(c).zip(x.chunks(c)).enumerate() {
        let along: f32 = d.iter().zip(x).map(|(a, b)| a * b).sum();
        assert!(along.abs() < 1e-5, "row {row}: dx · x = {along}, not 0");
    }
}

// --- Exercise 4 ---------------------------------------------------------------------------

#[test]
fn exercise_4_rope() {
    let (c1, s1) = (1f64.cos(), 1f64.sin());
    // One pair (hs = 2): its angle is pos * theta^0 = pos. (1, 0) at position 1 turns by
    // 1 radian to (cos 1, sin 1); at position −1, back by 1 radian; position 0 does nothing.
    assert_all_close(
        &solution::rope(&[1.0, 0.0], 1, 10000.0),
        &[c1, s1],
        1e-6,
        "(1, 0) at 1",
    );
    assert_all_close(
        &solution::rope(&[1.0, 0.0], -1, 10000.0),
        &[c1, -s1],
        1e-6,
        "(1, 0) at −1",
    );
    assert_all_close(
        &solution::rope(&[0.3, -2.0], 0, 10000.0),
        &[0.3, -2.0],
        1e-7,
        "position 0",
    );
    // hs = 4, theta = 10000: pair 0 is (x[0], x[2]) at angle pos, pair 1 is (x[1], x[3]) at
    // angle pos * 10000^(−2/4) = pos / 100. (1, 0, 0, 0) at position 1 becomes
    // (cos 1, 0, sin 1, 0): the sine lands in x[2], the other half. (Pairing neighbours
    // (x[0], x[1]), as Meta's original code does, would give (cos 1, sin 1, 0, 0).)
    assert_all_close(
        &solution::rope(&[1.0, 0.0, 0.0, 0.0], 1, 10000.0),
        &[c1, 0.0, s1, 0.0],
        1e-6,
        "(1, 0, 0, 0) at 1: half-split pairs",
    );
    assert_all_close(
        &solution::rope(&[0.0, 1.0, 0.0, 0.0], 1, 10000.0),
        &[0.0, 0.01f64.cos(), 0.0, 0.01f64.sin()],
        1e-6,
        "(0, 1, 0, 0) at 1: pair 1 turns by 1/100",
    );
    // hs = 4, theta = 100, x = (1, 2, 3, 4), position 2. Pair 0, (1, 3), turns by 2:
    // (cos 2 − 3 sin 2, 3 cos 2 + sin 2). Pair 1, (2, 4), turns by 2 * 100^(−1/2) = 0.2:
    // (2 cos 0.2 − 4 sin 0.2, 4 cos 0.2 + 2 sin 0.2).
    let (c2, s2, c02, s02) = (2f64.cos(), 2f64.sin(), 0.2f64.cos(), 0.2f64.sin());
    assert_all_close(
        &solution::rope(&[1.0, 2.0, 3.0, 4.0], 2, 100.0),
        &[
            c2 - 3.0 * s2,
            2.0 * c02 - 4.0 * s02,
            3.0 * c2 + s2,
            4.0 * c02 + 2.0 * s02,
        ],
        1e-5,
        "(1, 2, 3, 4) at 2, theta 100",
    );

    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let hs = 16;
    let norm = |x: &[f32]| x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    for pos in [1, 5, 50, 127] {
        let x = random(&mut rng, hs, 1.0);
        let y = solution::rope(&x, pos, 10000.0);
        // A rotation keeps lengths, and the rotation by −pos undoes it.
        assert!(
            (norm(&y) - norm(&x)).abs() < 1e-5,
            "position {pos}: |rope(x)| = {} but |x| = {}",
            norm(&y),
            norm(&x)
        );
        let back = solution::rope(&y, -pos, 10000.0);
        assert_all_close(
            &back,
            &to_f64(&x),
            1e-5,
            &format!("rope(rope(x, {pos}), −{pos})"),
        );
        assert_all_close(
            &y,
            &to_f64(&reference::rope(&x, pos, 10000.0)),
            1e-5,
            &format!("rope(x, {pos}) against the crate"),
        );
    }

    // Rotating the query by m and the key by n multiplies them as if only the query had
    // turned, by m − n: the score depends on the distance, not on where the pair is.
    let (q, k) = (random(&mut rng, hs, 1.0), random(&mut rng, hs, 1.0));
    let dot = |a: &[f32], b: &[f32]| dot64(&to_f64(a), &to_f64(b));
    let score = |m: i64, n: i64| {
        dot(
            &solution::rope(&q, m, 10000.0),
            &solution::rope(&k, n, 10000.0),
        )
    };
    for (m, n) in [(5, 2), (20, 17), (103, 100), (3, 0)] {
        let relative = dot(&solution::rope(&q, m - n, 10000.0), &k);
        assert!(
            (score(m, n) - relative).abs() < 1e-4,
            "q at {m} · k at {n} = {}, but q at {} · k = {relative}: the score should depend \
             only on m − n",
            score(m, n),
            m - n
        );
    }
    assert!(
        (score(5, 2) - score(5, 4)).abs() > 1e-3,
        "a different distance gives a different score"
    );
}

// --- Exercise 5 ---------------------------------------------------------------------------

#[test]
fn exercise_5_causal_softmax() {
    // Equal scores: position t spreads its attention evenly over positions 0..=t.
    let third = 1.0 / 3.0;
    assert_all_close(
        &solution::causal_softmax(&[0.0; 9], 3),
        &[1.0, 0.0, 0.0, 0.5, 0.5, 0.0, third, third, third],
        1e-6,
        "scores all 0, T = 3",
    );
    // Row 0 sees only itself, whatever its future scores (100). Row 1: exp(ln 3) = 3 and
    // exp(0) = 1, so (3/4, 1/4). Row 2: (1000, 1000, −1000): (1/2, 1/2, e^−2000 ≈ 0), which
    // needs the max subtracted before exp.
    let scores = [
        7.0,
        100.0,
        100.0,
        3f32.ln(),
        0.0,
        100.0,
        1000.0,
        1000.0,
        -1000.0,
    ];
    assert_all_close(
        &solution::causal_softmax(&scores, 3),
        &[1.0, 0.0, 0.0, 0.75, 0.25, 0.0, 0.5, 0.5, 0.0],
        1e-6,
        "the future is masked whatever its scores",
    );

    // Random scores: rows sum to 1, exactly 0 above the diagonal, and equal to the crate's.
    let t = 7;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let scores = random(&mut rng, t * t, 4.0);
    let p = solution::causal_softmax(&scores, t);
    for (i, row) in p.chunks(t).enumerate() {
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
        assert!(
            row[i + 1..].iter().all(|&x| x == 0.0),
            "row {i} above the diagonal: {row:?}"
        );
    }
    assert_all_close(
        &p,
        &to_f64(&reference::causal_softmax(&scores, t)),
        1e-6,
        "against the crate",
    );

    // The probabilities the crate's attention keeps are the causal softmax of q kᵀ / sqrt(hs).
    let hs = 4;
    let (q, k, v) = (
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
    );
    let mut scaled = vec![0.0f32; t * t];
    for i in 0..t {
        for j in 0..t {
            let s: f32 = (0..hs).map(|d| q[i * hs + d] * k[j * hs + d]).sum();
            scaled[i * t + j] = s / (hs as f32).sqrt();
        }
    }
    let shape = AttnShape {
        b: 1,
        t,
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: hs,
        v_head_dim: hs,
    };
    let (mut y, mut att) = (vec![0.0; t * hs], vec![0.0; t * t]);
    attention_forward(&mut y, &mut att, &q, &k, &v, shape);
    assert_all_close(
        &solution::causal_softmax(&scaled, t),
        &to_f64(&att),
        1e-5,
        "causal softmax of q kᵀ / sqrt(hs) against the crate's attention probabilities",
    );
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_gqa_head_grouping() {
    let groups = |n_heads: usize, n_kv_heads: usize| -> Vec<usize> {
        (0..n_heads)
            .map(|h| solution::kv_head(h, n_heads, n_kv_heads))
            .collect()
    };
    // 8 query heads, 2 key/value heads: groups of 8 / 2 = 4 consecutive heads.
    assert_eq!(
        groups(8, 2),
        [0, 0, 0, 0, 1, 1, 1, 1],
        "8 query heads, 2 kv heads"
    );
    // 6 and 3: groups of 2 (6 % 3 would give 0, 1, 2, 0, 1, 2: the wrong heads).
    assert_eq!(
        groups(6, 3),
        [0, 0, 1, 1, 2, 2],
        "6 query heads, 3 kv heads"
    );
    assert_eq!(
        groups(4, 4),
        [0, 1, 2, 3],
        "multi-head attention: head h reads h"
    );
    assert_eq!(
        groups(4, 1),
        [0, 0, 0, 0],
        "multi-query attention: every head reads 0"
    );
    assert_eq!(
        groups(4, 2),
        [0, 0, 1, 1],
        "llama-tiny: 4 query heads, 2 kv heads"
    );

    // GQA is multi-head attention with each key/value head repeated for the query heads
    // that read it. Built with your kv_head, that repetition must give the crate's GQA.
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for (n_heads, n_kv_heads) in [(4, 2), (6, 3), (8, 2), (4, 1)] {
        let (t, hs) = (5, 3);
        let gqa = AttnShape {
            b: 1,
            t,
            n_heads,
            n_kv_heads,
            head_dim: hs,
            v_head_dim: hs,
        };
        let mha = AttnShape {
            n_kv_heads: n_heads,
            ..gqa
        };
        let q = random(&mut rng, t * n_heads * hs, 1.0);
        let (k, v) = (
            random(&mut rng, t * n_kv_heads * hs, 1.0),
            random(&mut rng, t * n_kv_heads * hs, 1.0),
        );
        let repeat = |x: &[f32]| -> Vec<f32> {
            x.chunks(n_kv_heads * hs)
                .flat_map(|pos| {
                    (0..n_heads).flat_map(move |h| {
                        let g = solution::kv_head(h, n_heads, n_kv_heads);
                        pos[g * hs..(g + 1) * hs].iter().copied()
                    })
                })
                .collect()
        };
        let (mut y_gqa, mut y_mha) = (vec![0.0; t * n_heads * hs], vec![0.0; t * n_heads * hs]);
        let mut att = vec![0.0; n_heads * t * t];
        attention_forward(&mut y_gqa, &mut att, &q, &k, &v, gqa);
        attention_forward(&mut y_mha, &mut att, &q, &repeat(&k), &repeat(&v), mha);
        assert_all_close(
            &y_mha,
            &to_f64(&y_gqa),
            1e-6,
            &format!("{n_heads} query heads, {n_kv_heads} kv heads repeated with your kv_head"),
        );
    }
}

// --- Exercise 7 ---------------------------------------------------------------------------

#[test]
fn exercise_7_attention_backward() {
    // T = 2, hs = 1, q = (1, 1), k = (0, 0), v = (3, 5): the scores are all 0, so
    // P = [[1, 0], [1/2, 1/2]] and y = (3, 4). With dy = (0, 1):
    // dv = Pᵀ dy = (1/2, 1/2). dP row 1 = dy_1 v = (3, 5); Σ P dP = 4, so
    // dS row 1 = (1/2)(3 − 4, 5 − 4) = (−1/2, 1/2) (row 0 is 0).
    // dq_1 = dS row 1 · k = 0 (k = 0), dk = dSᵀ q = (−1/2 · 1, 1/2 · 1) = (−1/2, 1/2).
    let (mut dq, mut dk, mut dv) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2]);
    let att = [1.0, 0.0, 0.5, 0.5];
    solution::attention_backward(
        &mut dq,
        &mut dk,
        &mut dv,
        &[0.0, 1.0],
        &att,
        &[1.0, 1.0],
        &[0.0, 0.0],
        &[3.0, 5.0],
        2,
        1,
    );
    assert_all_close(&dv, &[0.5, 0.5], 1e-6, "dv");
    assert_all_close(&dk, &[-0.5, 0.5], 1e-6, "dk");
    assert_all_close(&dq, &[0.0, 0.0], 1e-6, "dq");

    // One position attends only to itself: y = v whatever q and k, so dv = dy and dq = dk = 0.
    let (mut dq, mut dk, mut dv) = (vec![0.0; 2], vec![0.0; 2], vec![0.0; 2]);
    solution::attention_backward(
        &mut dq,
        &mut dk,
        &mut dv,
        &[0.7, -0.2],
        &[1.0],
        &[1.0, 2.0],
        &[3.0, -1.0],
        &[0.5, 0.5],
        1,
        2,
    );
    assert_all_close(&dv, &[0.7, -0.2], 1e-6, "one position: dv = dy");
    assert_all_close(
        &[dq, dk].concat(),
        &[0.0; 4],
        1e-6,
        "one position: dq = dk = 0",
    );

    // Finite differences in f64 on T = 6, hs = 4, into buffers that held random numbers.
    let (t, hs) = (6, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (q, k, v) = (
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
    );
    let dy = random(&mut rng, t * hs, 1.0);
    let shape = AttnShape {
        b: 1,
        t,
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: hs,
        v_head_dim: hs,
    };
    let (mut y, mut att) = (vec![0.0; t * hs], vec![0.0; t * t]);
    attention_forward(&mut y, &mut att, &q, &k, &v, shape);
    let init = [
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
        random(&mut rng, t * hs, 1.0),
    ];
    let [mut dq, mut dk, mut dv] = init.clone();
    solution::attention_backward(&mut dq, &mut dk, &mut dv, &dy, &att, &q, &k, &v, t, hs);
    let (q64, k64, v64, r64) = (to_f64(&q), to_f64(&k), to_f64(&v), to_f64(&dy));
    let loss = |q: &[f64], k: &[f64], v: &[f64]| dot64(&causal_attention64(q, k, v, t, hs), &r64);
    assert_gradient(
        &added(&dq, &init[0]),
        &numeric_gradient(&q64, |q| loss(q, &k64, &v64)),
        "dq",
    );
    assert_gradient(
        &added(&dk, &init[1]),
        &numeric_gradient(&k64, |k| loss(&q64, k, &v64)),
        "dk",
    );
    assert_gradient(
        &added(&dv, &init[2]),
        &numeric_gradient(&v64, |v| loss(&q64, &k64, v)),
        "dv",
    );
    let [mut cq, mut ck, mut cv] = init.clone();
    reference::attention_backward(&mut cq, &mut ck, &mut cv, &dy, &att, &q, &k, &v, t, hs);
    assert_all_close(&dq, &to_f64(&cq), 1e-5, "dq against the crate");
    assert_all_close(&dk, &to_f64(&ck), 1e-5, "dk against the crate");
    assert_all_close(&dv, &to_f64(&cv), 1e-5, "dv against the crate");
}

// --- Exercise 8 ---------------------------------------------------------------------------

#[test]
fn exercise_8_adamw_step() {
    let config = AdamWConfig {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    // Step 1 from w = 1 with g = 0.5, lr = 0.1. Decay: w = 1 − 0.1 · 0.1 · 1 = 0.99.
    // m = 0.1 · 0.5 = 0.05, v = 0.05 · 0.25 = 0.0125; corrected, m̂ = 0.05 / 0.1 = 0.5 = g
    // and v̂ = 0.0125 / 0.05 = 0.25 = g², so the step is lr · g / |g| = 0.1: w = 0.89.
    let (mut w, mut m, mut v) = (vec![1.0f32], vec![0.0f32], vec![0.0f32]);
    solution::adamw_step(&mut w, &[0.5], &mut m, &mut v, 1, 0.1, config);
    assert_all_close(&w, &[0.89], 1e-6, "w after step 1");
    assert_all_close(&m, &[0.05], 1e-6, "m after step 1");
    assert_all_close(&v, &[0.0125], 1e-6, "v after step 1");
    // Step 2 with g = −0.5. Decay: w = 0.89 · 0.99 = 0.8811. m = 0.9 · 0.05 + 0.1 · (−0.5)
    // = −0.005, v = 0.95 · 0.0125 + 0.05 · 0.25 = 0.024375. m̂ = −0.005 / (1 − 0.81)
    // = −0.0263158, v̂ = 0.024375 / (1 − 0.9025) = 0.25, so w −= 0.1 · (−0.0263158) / 0.5:
    // w = 0.8811 + 0.0052632 = 0.8863632. The gradient flipped, but the momentum keeps the
    // step small.
    solution::adamw_step(&mut w, &[-0.5], &mut m, &mut v, 2, 0.1, config);
    assert_all_close(
        &w,
        &[0.8811 + 0.1 * 0.005 / 0.19 / 0.5],
        1e-6,
        "w after step 2",
    );
    assert_all_close(&m, &[-0.005], 1e-6, "m after step 2");
    assert_all_close(&v, &[0.024375], 1e-6, "v after step 2");

    // Decoupled weight decay: with a zero gradient, w only shrinks by 1 − lr · wd = 0.99
    // (Adam with the decay added to the gradient, g = wd · w, would move each w by about lr).
    let (mut w, mut m, mut v) = (vec![2.0f32, -4.0], vec![0.0; 2], vec![0.0; 2]);
    solution::adamw_step(&mut w, &[0.0, 0.0], &mut m, &mut v, 1, 0.1, config);
    assert_all_close(&w, &[1.98, -3.96], 1e-6, "zero gradient: decay only");

    // Bias correction makes the first step lr · sign(g), whatever the gradient's size.
    let plain = AdamWConfig {
        weight_decay: 0.0,
        ..config
    };
    let (mut w, mut m, mut v) = (vec![0.0f32; 3], vec![0.0; 3], vec![0.0; 3]);
    solution::adamw_step(
        &mut w,
        &[1e-3, 10.0, -300.0],
        &mut m,
        &mut v,
        1,
        0.01,
        plain,
    );
    assert_all_close(&w, &[-0.01, -0.01, 0.01], 1e-5, "first step: lr · sign(g)");

    // Ten steps of random gradients on 37 numbers, against the crate.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let n = 37;
    let w0 = random(&mut rng, n, 1.0);
    let (mut w, mut m, mut v) = (w0.clone(), vec![0.0; n], vec![0.0; n]);
    let (mut cw, mut cm, mut cv) = (w0, vec![0.0; n], vec![0.0; n]);
    for step in 1..=10 {
        let g = random(&mut rng, n, 2.0);
        let lr = 0.01 * step as f32;
        solution::adamw_step(&mut w, &g, &mut m, &mut v, step, lr, config);
        reference::adamw_step(&mut cw, &g, &mut cm, &mut cv, step, lr, config);
        assert_all_close(&m, &to_f64(&cm), 1e-5, &format!("m after step {step}"));
        assert_all_close(&v, &to_f64(&cv), 1e-5, &format!("v after step {step}"));
        assert_all_close(&w, &to_f64(&cw), 1e-5, &format!("w after step {step}"));
    }
}

// --- Exercise 9 ---------------------------------------------------------------------------

/// Runs `model` (a Llama: RMSNorm, RoPE, SwiGLU) one token at a time, with your
/// `attend_with_cache` as the attention of every layer, and returns each position's logits,
/// `(T, V)`: generation's loop, written out with the crate's layers.
fn decode_with_your_cache(model: &Gpt, ids: &[u32]) -> Vec<f32> {
    let (cfg, p) = (&model.cfg, &model.params);
    let (Norm::RmsNorm { eps }, Positions::Rope { theta }, Mlp::SwiGlu) =
        (cfg.norm, cfg.positions, cfg.mlp)
    else {
        panic!("decode_with_your_cache runs Llama configs only")
    };
    let (c, f, kv, v) = (cfg.d_model, cfg.d_ff, cfg.kv_dim(), cfg.vocab_size);
    let heads = Heads {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim(),
    };
    let table = RopeTable::new(theta, cfg.head_dim(), cfg.context);
    let mut caches = vec![LayerCache::default(); cfg.n_layers];
    let mut logits = Vec::with_capacity(ids.len() * v);
    let (mut ln, mut rrms, mut out) = (vec![0.0; c], [0.0], vec![0.0; c]);
    for (pos, &id) in ids.iter().enumerate() {
        let mut x = p.tok_emb[id as usize * c..][..c].to_vec();
        for (blk, cache) in p.blocks.iter().zip(&mut caches) {
            rms_norm_forward(&mut ln, &mut rrms, &x, blk.attn_norm.weight(), c, eps);
            let (mut q0, mut k0, mut v_new) = (vec![0.0; c], vec![0.0; kv], vec![0.0; kv]);
            let attn = blk.attn.mha().expect("a Llama block");
            attn.q_proj.forward(&mut q0, &ln);
            attn.k_proj.forward(&mut k0, &ln);
            attn.v_proj.forward(&mut v_new, &ln);
            let (mut q, mut k) = (vec![0.0; c], vec![0.0; kv]);
            rope_forward(&mut q, &q0, &table, pos, 1, cfg.n_heads);
            rope_forward(&mut k, &k0, &table, pos, 1, cfg.n_kv_heads);
            let y = solution::attend_with_cache(cache, &q, &k, &v_new, heads);
            attn.o_proj.forward(&mut out, &y);
            add_into(&mut x, &out);
            rms_norm_forward(&mut ln, &mut rrms, &x, blk.mlp_norm.weight(), c, eps);
            let (mut a, mut b, mut h) = (vec![0.0; f], vec![0.0; f], vec![0.0; f]);
            let MlpParams::SwiGlu {
                gate_proj,
                up_proj,
                down_proj,
            } = &blk.mlp
            else {
                panic!("a Llama's MLP is SwiGLU")
            };
            gate_proj.forward(&mut a, &ln);
            up_proj.forward(&mut b, &ln);
            swiglu_forward(&mut h, &a, &b);
            down_proj.forward(&mut out, &h);
            add_into(&mut x, &out);
        }
        rms_norm_forward(&mut ln, &mut rrms, &x, p.final_norm.weight(), c, eps);
        let mut row = vec![0.0; v];
        match &p.lm_head {
            Some(head) => head.forward(&mut row, &ln),
            None => linear_forward(&mut row, &ln, &p.tok_emb, 1, c, v),
        }
        logits.extend(row);
    }
    logits
}

#[test]
fn exercise_9_attention_with_a_kv_cache() {
    // One head of width 1. Token 0: q = 1, k = 0, v = 3; it sees only itself: y = 3.
    // Token 1: k = 0, v = 5; scores (0, 0), so it averages: y = 4. Token 2: q = ln 2, k = 1,
    // v = 7; scores (0, 0, ln 2), exp (1, 1, 2) / 4: y = (3 + 5 + 2 · 7) / 4 = 5.5.
    let heads = Heads {
        n_heads: 1,
        n_kv_heads: 1,
        head_dim: 1,
    };
    let mut cache = LayerCache::default();
    let y0 = solution::attend_with_cache(&mut cache, &[1.0], &[0.0], &[3.0], heads);
    assert_all_close(&y0, &[3.0], 1e-6, "token 0");
    let y1 = solution::attend_with_cache(&mut cache, &[1.0], &[0.0], &[5.0], heads);
    assert_all_close(&y1, &[4.0], 1e-6, "token 1");
    let y2 = solution::attend_with_cache(&mut cache, &[2f32.ln()], &[1.0], &[7.0], heads);
    assert_all_close(&y2, &[5.5], 1e-6, "token 2");
    assert_eq!(
        cache,
        LayerCache {
            k: vec![0.0, 0.0, 1.0],
            v: vec![3.0, 5.0, 7.0]
        },
        "the cache after 3 tokens"
    );

    // Token by token, with 4 query heads sharing 2 key/value heads, the outputs are the rows
    // of one causal attention over the whole sequence (the crate's).
    let (t, heads) = (
        9,
        Heads {
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 3,
        },
    );
    let (qw, kw) = (heads.n_heads * heads.head_dim, heads.kv_width());
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let (q, k, v) = (
        random(&mut rng, t * qw, 2.0),
        random(&mut rng, t * kw, 2.0),
        random(&mut rng, t * kw, 2.0),
    );
    let shape = AttnShape {
        b: 1,
        t,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 3,
        v_head_dim: 3,
    };
    let (mut full, mut att) = (vec![0.0; t * qw], vec![0.0; 4 * t * t]);
    attention_forward(&mut full, &mut att, &q, &k, &v, shape);
    let mut cache = LayerCache::default();
    for i in 0..t {
        let y = solution::attend_with_cache(
            &mut cache,
            &q[i * qw..][..qw],
            &k[i * kw..][..kw],
            &v[i * kw..][..kw],
            heads,
        );
        assert_all_close(
            &y,
            &to_f64(&full[i * qw..][..qw]),
            1e-5,
            &format!("position {i} with the cache"),
        );
    }
    assert_eq!(
        (cache.k.as_slice(), cache.v.as_slice()),
        (&k[..], &v[..]),
        "the cache holds every key and value"
    );

    // A whole model: a small Llama decoded one token at a time with your cache gives the
    // logits of one forward over the sequence, and of the crate's KvCache.
    let mut cfg = GptConfig::llama_tiny();
    (
        cfg.vocab_size,
        cfg.d_model,
        cfg.n_layers,
        cfg.d_ff,
        cfg.context,
    ) = (40, 32, 2, 48, 16);
    let mut model = Gpt::init(cfg.clone(), 4).unwrap();
    // larger weights than the initialisation's, so that attention is far from uniform
    for tensor in model.params.tensors_mut() {
        tensor.iter_mut().for_each(|x| *x *= 10.0);
    }
    let ids: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 40).collect();
    let mut acts = Activations::new(&cfg, 1, ids.len());
    model.forward(&mut acts, &ids).unwrap();
    let full = to_f64(&acts.logits);
    let mut kv_cache = KvCache::new(&cfg);
    let cached: Vec<f32> = ids
        .iter()
        .flat_map(|&id| model.forward_cached(&mut kv_cache, &[id]).unwrap())
        .collect();
    let scale = full.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let mine = decode_with_your_cache(&model, &ids);
    for (what, logits) in [("the crate's KvCache", &cached), ("your cache", &mine)] {
        assert_eq!(
            logits.len(),
            full.len(),
            "{what}: one row of logits per token"
        );
        for (i, (&a, &e)) in logits.iter().zip(&full).enumerate() {
            assert!(
                (a as f64 - e).abs() < 1e-4 * scale,
                "{what}: logit {} of position {}: {a}, the full forward gives {e}",
                i % 40,
                i / 40
            );
        }
    }
}

// --- Exercise 10 --------------------------------------------------------------------------

/// Llama's MLP, `(silu(x w_gateᵀ) ⊙ x w_upᵀ) w_downᵀ`, written out in f64.
fn swiglu_mlp64(x: &[f64], w_gate: &[f64], w_up: &[f64], w_down: &[f64], c: usize) -> Vec<f64> {
    let d_ff = w_gate.len() / c;
    x.chunks_exact(c)
        .flat_map(|row| {
            let h: Vec<f64> = (0..d_ff)
                .map(|j| {
                    let a = dot64(row, &w_gate[j * c..][..c]);
                    let b = dot64(row, &w_up[j * c..][..c]);
                    a / (1.0 + (-a).exp()) * b
                })
                .collect();
            (0..c)
                .map(|o| dot64(&h, &w_down[o * d_ff..][..d_ff]))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn exercise_10_swiglu_backward() {
    // One number everywhere: x = 1, w_gate = 1, w_up = 2, w_down = 3, dy = 1. Forward:
    // a = 1, b = 2, h = silu(1) · 2 = 2σ(1), y = 6σ(1), with σ(1) = 1 / (1 + e^−1) ≈ 0.7311.
    // Backward: dw_down = h dy = 2σ(1) ≈ 1.4621, dh = w_down dy = 3. db = silu(1) dh
    // = 3σ(1) ≈ 2.1932, so dw_up = db x = 3σ(1). da = silu'(1) b dh = 6 silu'(1), with
    // silu'(1) = σ(1) (1 + 1 · (1 − σ(1))) ≈ 0.9277: da ≈ 5.5660 = dw_gate.
    // dx = da w_gate + db w_up ≈ 5.5660 + 4.3864 = 9.9524. (Taking silu'(z) = σ(z), a
    // common slip, gives da ≈ 4.3864 instead.)
    let s = 1.0 / (1.0 + (-1f64).exp());
    let silu_prime = s * (1.0 + (1.0 - s));
    let [mut dx, mut dwg, mut dwu, mut dwd] = [[0.0f32]; 4];
    solution::swiglu_mlp_backward(
        &mut dx,
        &mut dwg,
        &mut dwu,
        &mut dwd,
        &[1.0],
        &[1.0],
        &[1.0],
        &[2.0],
        &[3.0],
        1,
        1,
        1,
    );
    assert_all_close(&dwd, &[2.0 * s], 1e-6, "dw_down = silu(1) · 2");
    assert_all_close(&dwu, &[3.0 * s], 1e-6, "dw_up = silu(1) · 3");
    assert_all_close(
        &dwg,
        &[6.0 * silu_prime],
        1e-6,
        "dw_gate = silu'(1) · 2 · 3",
    );
    assert_all_close(&dx, &[6.0 * silu_prime + 6.0 * s], 1e-6, "dx");

    // A negative gate: x = 1, w_gate = −2, w_up = 1, w_down = 1, dy = 1. a = −2, b = 1,
    // σ(−2) ≈ 0.1192, silu'(−2) = σ(−2) (1 − 2 (1 − σ(−2))) ≈ −0.0908: negative, because
    // silu has its minimum near −1.28 and falls before it.
    let s = 1.0 / (1.0 + 2f64.exp());
    let silu_prime = s * (1.0 - 2.0 * (1.0 - s));
    let [mut dx, mut dwg, mut dwu, mut dwd] = [[0.0f32]; 4];
    solution::swiglu_mlp_backward(
        &mut dx,
        &mut dwg,
        &mut dwu,
        &mut dwd,
        &[1.0],
        &[1.0],
        &[-2.0],
        &[1.0],
        &[1.0],
        1,
        1,
        1,
    );
    assert_all_close(&dwg, &[silu_prime], 1e-6, "dw_gate = silu'(−2)");
    assert_all_close(&dwu, &[-2.0 * s], 1e-6, "dw_up = silu(−2)");
    assert_all_close(&dwd, &[-2.0 * s], 1e-6, "dw_down = h = silu(−2)");
    assert_all_close(&dx, &[-2.0 * silu_prime - 2.0 * s], 1e-6, "dx");

    // Finite differences on 3 rows of 4, d_ff = 6, in f64, into buffers that held random
    // numbers (a backward adds).
    let (n, c, d_ff) = (3, 4, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    let x = random(&mut rng, n * c, 1.5);
    let w_gate = random(&mut rng, d_ff * c, 1.0);
    let w_up = random(&mut rng, d_ff * c, 1.0);
    let w_down = random(&mut rng, c * d_ff, 1.0);
    let dy = random(&mut rng, n * c, 1.0);
    let init = [
        random(&mut rng, n * c, 1.0),
        random(&mut rng, d_ff * c, 1.0),
        random(&mut rng, d_ff * c, 1.0),
        random(&mut rng, c * d_ff, 1.0),
    ];
    let [mut dx, mut dwg, mut dwu, mut dwd] = init.clone();
    solution::swiglu_mlp_backward(
        &mut dx, &mut dwg, &mut dwu, &mut dwd, &dy, &x, &w_gate, &w_up, &w_down, n, c, d_ff,
    );
    let (x64, g64, u64_, d64, r64) = (
        to_f64(&x),
        to_f64(&w_gate),
        to_f64(&w_up),
        to_f64(&w_down),
        to_f64(&dy),
    );
    let loss =
        |x: &[f64], g: &[f64], u: &[f64], d: &[f64]| dot64(&swiglu_mlp64(x, g, u, d, c), &r64);
    assert_gradient(
        &added(&dx, &init[0]),
        &numeric_gradient(&x64, |x| loss(x, &g64, &u64_, &d64)),
        "dx (through the gate and the up projection)",
    );
    assert_gradient(
        &added(&dwg, &init[1]),
        &numeric_gradient(&g64, |g| loss(&x64, g, &u64_, &d64)),
        "dw_gate",
    );
    assert_gradient(
        &added(&dwu, &init[2]),
        &numeric_gradient(&u64_, |u| loss(&x64, &g64, u, &d64)),
        "dw_up",
    );
    assert_gradient(
        &added(&dwd, &init[3]),
        &numeric_gradient(&d64, |d| loss(&x64, &g64, &u64_, d)),
        "dw_down",
    );

    // Against the crate: `linear_backward` and `swiglu_backward`, chained as a block's
    // backward chains them.
    let [mut cx, mut cg, mut cu, mut cd] = init.clone();
    reference::swiglu_mlp_backward(
        &mut cx, &mut cg, &mut cu, &mut cd, &dy, &x, &w_gate, &w_up, &w_down, n, c, d_ff,
    );
    assert_all_close(&dx, &to_f64(&cx), 1e-5, "dx against the crate");
    assert_all_close(&dwg, &to_f64(&cg), 1e-5, "dw_gate against the crate");
    assert_all_close(&dwu, &to_f64(&cu), 1e-5, "dw_up against the crate");
    assert_all_close(&dwd, &to_f64(&cd), 1e-5, "dw_down against the crate");
}

// --- Exercise 11 --------------------------------------------------------------------------

#[test]
fn exercise_11_learning_rate_schedule() {
    use llm_lessons::gpt::optim::Decay;
    // Warm-up W = 4, total T = 24, anneal A = 10: the decay runs over steps 4..14.
    let schedule = LrSchedule {
        max_lr: 1.0,
        min_lr: 0.1,
        warmup: 4,
        total: 24,
        anneal: 10,
        decay: Decay::Cosine,
    };
    let cos = |p: f64| 0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
    for (step, expected, why) in [
        (0, 0.25, "step 0: max_lr (0 + 1) / W, not 0"),
        (1, 0.5, "step 1: max_lr · 2 / 4"),
        (3, 1.0, "step W − 1: the warm-up reaches max_lr"),
        (4, 1.0, "step W: the cosine starts at max_lr (progress 0)"),
        (
            9,
            0.55,
            "step 9: halfway through the decay, (1 + cos(π/2)) / 2 = 1/2",
        ),
        (
            13,
            cos(0.9),
            "step T − A − 1: progress 9/10, not yet min_lr",
        ),
        (
            14,
            0.1,
            "step T − A: the decay has reached min_lr, the anneal starts there",
        ),
        (19, 0.05, "step 19: the anneal is half done, min_lr · 5/10"),
        (23, 0.01, "step T − 1: min_lr · 1/10, one step before 0"),
        (24, 0.0, "step T: 0"),
        (30, 0.0, "past T: 0"),
    ] {
        let lr = solution::learning_rate(&schedule, step);
        assert!(
            (lr as f64 - expected).abs() < 1e-6,
            "{why}: got {lr}, expected {expected}"
        );
    }
    // Without an anneal, the cosine runs to the end: over steps 4..24, its midpoint is 14,
    // and from T on the rate stays at min_lr.
    let no_anneal = LrSchedule {
        anneal: 0,
        ..schedule
    };
    for (step, expected, why) in [
        (14, 0.55, "no anneal, step 14: halfway through 4..24"),
        (
            23,
            cos(19.0 / 20.0),
            "no anneal, step T − 1: progress 19/20",
        ),
        (24, 0.1, "no anneal, step T: min_lr"),
        (100, 0.1, "no anneal, past T: min_lr"),
    ] {
        let lr = solution::learning_rate(&no_anneal, step);
        assert!(
            (lr as f64 - expected).abs() < 1e-6,
            "{why}: got {lr}, expected {expected}"
        );
    }

    // Against the crate's `LrSchedule::lr` at every step of a few schedules, warm-up 0 and 1
    // included.
    for (warmup, total, anneal) in [(4, 24, 10), (0, 30, 6), (1, 17, 5), (10, 200, 40)] {
        let s = LrSchedule {
            max_lr: 3e-3,
            min_lr: 3e-4,
            warmup,
            total,
            anneal,
            decay: Decay::Cosine,
        };
        for step in 0..total + 3 {
            let (mine, crate_lr) = (solution::learning_rate(&s, step), s.lr(step));
            assert!(
                (mine - crate_lr).abs() <= 1e-5 * 3e-3,
                "W = {warmup}, T = {total}, A = {anneal}, step {step}: got {mine}, the crate \
                 gives {crate_lr}"
            );
        }
    }
}
