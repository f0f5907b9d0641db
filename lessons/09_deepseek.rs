//! # Chapter 9 exercises: DeepSeek-V3
//!
//! You write the formulas of DeepSeek-V3's three ideas, one token at a time: how many numbers
//! a generation cache keeps per token with each kind of attention (multi-head, grouped-query,
//! multi-query, and multi-head latent attention, MLA); MLA's decoupled RoPE key, one vector
//! shared by every head; the weight absorption that lets generation attend over the cached
//! latents without rebuilding the keys; DeepSeekMoE's sigmoid routing, whose bias chooses the
//! experts but does not weigh them; the gradient of the gates through their normalisation;
//! the bias update of auxiliary-loss-free balancing; the targets of multi-token prediction
//! (MTP); and the sequence-wise balance loss with its gradient. Each formula you derive by
//! hand first: the doc comment of each exercise says what to show. The tests at the bottom of
//! this file check them, first against answers worked out by hand (the arithmetic is in the
//! comments), then against finite differences (for the gradients), against independent
//! computations (the keys of the crate's MLA forward, the cache a model really fills, the
//! experts PyTorch chose in `tests/fixtures/deepseek-tiny/`), and against the crate.
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
//!    cargo test --features learner --test 09_deepseek
//!    cargo test --features learner --test 09_deepseek exercise_5
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::gpt`). `cargo test --test 09_deepseek` always passes and shows what
//!    "done" looks like. Try an exercise before you read its reference.
//!
//! The book's chapter 9 (`book/src/ch09_deepseek.md`) derives the formulas, and the chapter's
//! code states each in its doc comments: `src/gpt/mla.rs` multi-head latent attention and its
//! absorbed form, `src/gpt/moe.rs` DeepSeekMoE's routing, gates, balancing bias and balance
//! loss, `src/gpt/model.rs` the MTP depth, `src/gpt/config.rs` the cache's width. The page
//! "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//!
//! ## Conventions (the crate's, and Hugging Face's `DeepseekV3`)
//!
//! - Matrices are flat `f32` slices in row-major order, as PyTorch stores a `Linear`'s
//!   weight `(d_out, d_in)`: element `(i, j)` of an `(m, n)` matrix is `w[i * n + j]`, and
//!   `y = W x` is `y_i = Σ_j w[i * n + j] x_j`.
//! - MLA's widths (the DeepSeek-V3 report's names, then `MlaConfig`'s): `H` heads; `d_c`
//!   (`kv_lora_rank`) the key/value latent; `d_h` (`qk_nope_head_dim`) a head's query and key
//!   part without position; `d_h^R` (`qk_rope_head_dim`) the rotated part; `d_v`
//!   (`v_head_dim`) a head's value; `q_in` the query's input (`q_lora_rank`, or the model's
//!   width `C` without a query latent). DeepSeek-V3 itself: `H = 128`, `d_c = 512`,
//!   `d_h = 128`, `d_h^R = 64`, `d_v = 128`, `q_lora_rank = 1536`, `C = 7168`.
//! - `kv_a_proj_with_mqa` gives one row per token, `[W^DKV h; W^KR h]`: the latent's `d_c`
//!   numbers (normalised afterwards into `c^KV`), then the `d_h^R` numbers of the shared RoPE
//!   key before its rotation. `kv_b_proj` holds per head `d_h` rows of `W^UK_h` then `d_v`
//!   rows of `W^UV_h` (each row `d_c` wide); the query's matrix per head `d_h` rows of
//!   `W^UQ_h^C` then `d_h^R` rows of `W^QR_h`.
//! - DeepSeek's RoPE pairs neighbours, `(x[2i], x[2i + 1])` (`rope_interleave`), rotated by
//!   the angle `pos · θ^(−2i/d_h^R)`; chapter 4's pairs were the halves `(x[i], x[i + d/2])`.
//! - Routing: the affinity of routed expert `i` is `s_i = σ(u_i) = 1 / (1 + e^{−u_i})` of the
//!   router's logit `u_i`. The chosen experts are listed best first; equal scores go to the
//!   lower index first.
//! - Gradients are checked against central finite differences of a forward written in f64
//!   in this file, `(L(x + h) − L(x − h)) / 2h`, with `L = Σ y · r` for a fixed random `r`.

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use llm_lessons::gpt::{GptConfig, MlaConfig};

    /// Exercise 1a: the numbers a generation cache keeps per token and layer.
    ///
    /// Chapter 4's cache keeps every position's keys and values: `n_kv_heads` key/value heads
    /// of `head_dim = d_model / n_heads` numbers each, for the keys and again for the values.
    /// The same formula covers multi-head attention (`n_kv_heads = n_heads`), grouped-query
    /// (a divisor of `n_heads`) and multi-query attention (`n_kv_heads = 1`). With MLA
    /// (`cfg.mla` is `Some`) the cache keeps only the latent `c^KV` (`d_c` numbers) and the
    /// rotated RoPE key shared by all heads (`d_h^R`), whatever `n_kv_heads` says: derive why
    /// nothing else is needed (the keys' `k^C` and the values are `W^UK_h c^KV` and
    /// `W^UV_h c^KV`, exercise 3). Return the number.
    pub fn cache_floats_per_token(_cfg: &GptConfig) -> usize {
        unimplemented!(
            "Exercise 1 (cache_floats_per_token): implement `fn cache_floats_per_token` in \
             lessons/09_deepseek.rs — without MLA: 2 * n_kv_heads * (d_model / n_heads); with \
             MLA: kv_lora_rank + qk_rope_head_dim; the crate's version: \
             `GptConfig::cache_floats_per_token` in src/gpt/config.rs"
        )
    }

    /// Exercise 1b: what the same heads would cache without the latent.
    ///
    /// MLA's `n_heads` heads each have a key of `d_h + d_h^R` numbers and a value of `d_v`.
    /// Multi-head attention with those heads would cache them all: return that number per
    /// token and layer, to compare with exercise 1a's (DeepSeek-V3: 40,960 against 576).
    pub fn mha_cache_floats(_m: &MlaConfig, _n_heads: usize) -> usize {
        unimplemented!(
            "Exercise 1 (mha_cache_floats): implement `fn mha_cache_floats` in \
             lessons/09_deepseek.rs — n_heads * (qk_nope_head_dim + qk_rope_head_dim) for the \
             keys plus n_heads * v_head_dim for the values; the crate's version: \
             `GptConfig::attn_widths` in src/gpt/config.rs (the keys' and values' widths)"
        )
    }

    /// Exercise 2: MLA's keys of one token, with the decoupled RoPE key. Derive why it is
    /// decoupled.
    ///
    /// `kv_a` is the token's row of `kv_a_proj_with_mqa`, `d_c + d_h^R` numbers: the latent
    /// (`d_c`, not needed here) then the RoPE part `W^KR h`. `k_nope` holds the `n_heads`
    /// heads' `k_h^C = W^UK_h c^KV`, `d_h` numbers each. Return the `n_heads` keys side by
    /// side, `n_heads (d_h + d_h^R)` numbers: head `h`'s key is `[k_h^C; k^R]`, where
    /// `k^R = RoPE(W^KR h, pos)` is the *same* vector for every head, rotated in interleaved
    /// pairs `(2i, 2i + 1)` by the angle `pos · theta^(−2i/d_h^R)`.
    ///
    /// Show why the RoPE part cannot stay inside `k^C`: RoPE is a position-dependent rotation
    /// `R_pos`, so `q^C · R_pos W^UK c` cannot be folded into a fixed matrix applied to the
    /// cached `c` (exercise 3's absorption needs the matrix between `q` and `c` to be the same
    /// at every position). One small extra key, shared by the heads, carries the position and
    /// adds only `d_h^R` numbers to the cache.
    pub fn decoupled_keys(
        _kv_a: &[f32],
        _d_c: usize,
        _k_nope: &[f32],
        _n_heads: usize,
        _pos: usize,
        _theta: f32,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 2 (decoupled_keys): implement `fn decoupled_keys` in \
             lessons/09_deepseek.rs — d_r = kv_a.len() − d_c, d_n = k_nope.len() / n_heads; \
             rotate k_r = kv_a[d_c..]: for each pair i, angle = pos * theta^(−2i / d_r), \
             (k[2i], k[2i+1]) <- (a cos − b sin, b cos + a sin); then per head push \
             k_nope[h * d_n..][..d_n] and k_r; the crate's version: `mla_qkv_forward` in \
             src/gpt/mla.rs (and `RopeTable::rotate_one` in src/gpt/rope.rs)"
        )
    }

    /// Exercise 3a: absorbing `W^UK` into the query. Derive it.
    ///
    /// Head `h`'s score reads `q^C · k^C` with `q^C = W^UQ_h^C c^Q` and `k^C = W^UK_h c^KV`.
    /// Show that `q^C · k^C = (W^UK_hᵀ W^UQ_h^C c^Q) · c^KV`: the product `W^UK_hᵀ W^UQ_h^C`
    /// takes the query straight into the latent space, and generation attends over the cached
    /// `c^KV` without ever building a key. Given `w_uk`, `(d_h, d_c)`, and `w_uq`,
    /// `(d_h, q_in)`, return `W^UK_hᵀ W^UQ_h^C`, `(d_c, q_in)`.
    pub fn absorb_query(
        _w_uk: &[f32],
        _w_uq: &[f32],
        _d_h: usize,
        _d_c: usize,
        _q_in: usize,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 3 (absorb_query): implement `fn absorb_query` in lessons/09_deepseek.rs \
             — out[a * q_in + j] = Σ_i w_uk[i * d_c + a] * w_uq[i * q_in + j] for i in 0..d_h; \
             the crate's version: `MlaAbsorbed::new` in src/gpt/mla.rs (its `q_abs`)"
        )
    }

    /// Exercise 3b: absorbing `W^UV` into the output.
    ///
    /// Head `h`'s output is `o_h = Σ_j p_j v_j,h = W^UV_h (Σ_j p_j c_j^KV)`, and the layer's
    /// is `u = W^O [o_1; ...; o_H] = Σ_h W^O_h o_h`, with `W^O_h` the `d_v` columns of `W^O`
    /// that read head `h`. So `u = Σ_h (W^O_h W^UV_h) (Σ_j p_j c_j^KV)`: the weighted sum of
    /// latents goes straight to the output. Given `w_o_h`, `(c, d_v)` (those columns), and
    /// `w_uv`, `(d_v, d_c)`, return `W^O_h W^UV_h`, `(c, d_c)`.
    pub fn absorb_output(
        _w_o_h: &[f32],
        _w_uv: &[f32],
        _c: usize,
        _d_v: usize,
        _d_c: usize,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 3 (absorb_output): implement `fn absorb_output` in \
             lessons/09_deepseek.rs — out[r * d_c + a] = Σ_i w_o_h[r * d_v + i] * w_uv[i * d_c + \
             a] for i in 0..d_v; the crate's version: `MlaAbsorbed::new` in src/gpt/mla.rs \
             (its `o_abs`)"
        )
    }

    /// Exercise 4: DeepSeek-V3's routing of one token (one group of experts).
    ///
    /// `logits` are the router's `u_i`, one per routed expert, and `bias` the balancing bias
    /// `b_i`. With the affinities `s_i = σ(u_i)`:
    ///
    /// ```text
    /// chosen = the k experts with the largest s_i + b_i        (best first; ties: lower i)
    /// g_i    = s_i / Σ_{j chosen} s_j      (normalise)   or   s_i      (not)
    /// gate_i = scale · g_i
    /// ```
    ///
    /// Return the chosen experts, best first, and their gates in the same order. The bias
    /// only *chooses*: the gates come from the plain `s`, so moving `b` never changes the
    /// weight of an expert that stays chosen. (DeepSeek-V2 used a softmax over all experts;
    /// V3's sigmoid scores each expert on its own, so normalising over the chosen ones keeps
    /// the gates summing to `scale`.)
    pub fn route(
        _logits: &[f32],
        _bias: &[f32],
        _k: usize,
        _normalise: bool,
        _scale: f32,
    ) -> (Vec<usize>, Vec<f32>) {
        unimplemented!(
            "Exercise 4 (route): implement `fn route` in lessons/09_deepseek.rs — s_i = 1 / \
             (1 + exp(−u_i)); sort the indices by s_i + b_i, largest first (ties: lower index \
             first), keep k; gates s_i of the chosen, divided by their sum when normalise, \
             times scale; the crate's version: `route` in src/gpt/moe.rs"
        )
    }

    /// Exercise 5: the gradient of the chosen scores from their gates' gradient. Derive it.
    ///
    /// `chosen` holds the chosen experts' scores `s_j`, and `d_gates` the loss's gradient
    /// with respect to their gates, `dg_j = ∂L/∂gate_j`. With normalisation,
    /// `gate_j = c s_j / S` with `S = Σ_j s_j` over the chosen and `c = scale`. Show that
    ///
    /// ```text
    /// ∂gate_j/∂s_l = (c δ_jl − gate_j) / S
    /// ∂L/∂s_l      = Σ_j dg_j ∂gate_j/∂s_l = (c dg_l − Σ_j dg_j gate_j) / S
    /// ```
    ///
    /// and, without normalisation (`gate_j = c s_j`), `∂L/∂s_l = c dg_l`. Return `∂L/∂s_l`
    /// for the chosen experts, in their order. Show also that with normalisation
    /// `Σ_l s_l ∂L/∂s_l = 0` (scaling every chosen score by the same factor changes no gate),
    /// and that an equal `dg` on every chosen expert gives no gradient at all (the gates
    /// always sum to `c`). The unchosen experts get no gradient through the gates: top-K is
    /// piecewise constant.
    pub fn gates_backward(
        _chosen: &[f32],
        _d_gates: &[f32],
        _normalise: bool,
        _scale: f32,
    ) -> Vec<f32> {
        unimplemented!(
            "Exercise 5 (gates_backward): implement `fn gates_backward` in \
             lessons/09_deepseek.rs — derive it: without normalise, scale * dg_l; with it, S = \
             Σ s, gate_j = scale * s_j / S, dot = Σ_j dg_j gate_j, then (scale * dg_l − dot) / \
             S; the crate's version: `gates_backward` in src/gpt/moe.rs"
        )
    }

    /// Exercise 6: auxiliary-loss-free balancing, the bias update after a step.
    ///
    /// `load[i]` is how many tokens routed expert `i` received in the step. Each bias moves by
    /// `gamma` towards balance:
    ///
    /// ```text
    /// b_i ← b_i + γ · sign(mean(load) − load_i)        (no change when load_i is the mean)
    /// ```
    ///
    /// An overloaded expert's bias falls, so fewer tokens choose it next time; its gate is
    /// untouched (exercise 4), so balancing never distorts the model's output the way an
    /// auxiliary loss's gradient would. Update `bias` in place. The mean need not be a whole
    /// number.
    pub fn update_bias(_bias: &mut [f32], _load: &[usize], _gamma: f32) {
        unimplemented!(
            "Exercise 6 (update_bias): implement `fn update_bias` in lessons/09_deepseek.rs — \
             mean = Σ load / N_r as f32; for each i: diff = mean − load_i, and if diff != 0, \
             b_i += gamma * diff.signum(); the crate's version: `MoeParams::update_bias` in \
             src/gpt/moe.rs"
        )
    }

    /// Exercise 7: the targets of DeepSeek-V3's MTP depth, one token further.
    ///
    /// `targets` are a batch's next-token targets, `(B, T)` flat in rows of `t`: position `i`
    /// of a sequence reads token `x_i` and its target is `x_{i+1}`. The MTP depth at position
    /// `i` predicts the token after that, `x_{i+2}`: the target of position `i + 1` *of the
    /// same sequence*. Return one `Option` per position: `Some(x_{i+2})`, or `None` at each
    /// sequence's last position, whose token after next is not in the batch (never the next
    /// sequence's first target).
    pub fn mtp_targets(_targets: &[u32], _t: usize) -> Vec<Option<u32>> {
        unimplemented!(
            "Exercise 7 (mtp_targets): implement `fn mtp_targets` in lessons/09_deepseek.rs — \
             for each i in 0..targets.len(): Some(targets[i + 1]) when i % t + 1 < t, else \
             None; the crate's version: `mtp_targets` in src/gpt/model.rs"
        )
    }

    /// Exercise 8: the sequence-wise balance loss and its gradient. Derive it.
    ///
    /// `scores` are the affinities `s_{i,t}`, `(n, N_r)` with `N_r = n_routed`, and `ids` the
    /// experts each token chose, `(n, k)`. The `n` tokens are `n / t` sequences of `t`. For
    /// one sequence of `T = t` tokens, with `S_t = Σ_j s_{j,t}`:
    ///
    /// ```text
    /// f_i = N_r / (k T) · Σ_t 1(i chosen at t)      P_i = (1/T) Σ_t s_{i,t} / S_t
    /// L_seq = α Σ_i f_i P_i
    /// ```
    ///
    /// and `L` is the mean of `L_seq` over the sequences. Return `(L, ∂L/∂s)`, the gradient
    /// `(n, N_r)`. `f` counts choices: it is constant (no gradient). Show that for a token `t`
    /// of a sequence, with `w_t = Σ_i f_i s_{i,t} / S_t`,
    ///
    /// ```text
    /// ∂L/∂s_{j,t} = α / (T · n_seq) · (f_j − w_t) / S_t
    /// ```
    ///
    /// and that a perfectly balanced sequence (every `f_i = 1`) has `L = α` whatever the
    /// scores.
    pub fn seq_balance_loss(
        _scores: &[f32],
        _ids: &[usize],
        _n_routed: usize,
        _k: usize,
        _t: usize,
        _alpha: f32,
    ) -> (f32, Vec<f32>) {
        unimplemented!(
            "Exercise 8 (seq_balance_loss): implement `fn seq_balance_loss` in \
             lessons/09_deepseek.rs — derive it: per sequence, f_i += N_r / (k T) for each \
             chosen id; per token S = Σ s, w = Σ_i f_i s_i / S, L += α w / (T n_seq), and \
             ds_j = α (f_j − w) / (T n_seq S); the crate's version: `seq_balance_loss` in \
             src/gpt/moe.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use llm_lessons::gpt::mla::MlaAbsorbed;
    use llm_lessons::gpt::moe;
    use llm_lessons::gpt::rope::RopeTable;
    use llm_lessons::gpt::{GptConfig, MlaConfig, MlaParams, MlaQuery, MoeConfig, MoeParams};

    pub fn cache_floats_per_token(cfg: &GptConfig) -> usize {
        cfg.cache_floats_per_token()
    }

    pub fn mha_cache_floats(m: &MlaConfig, n_heads: usize) -> usize {
        // the widths of MLA's keys and values before attention, the same heads' cache
        let cfg = GptConfig {
            n_heads,
            n_kv_heads: n_heads,
            mla: Some(*m),
            ..GptConfig::deepseek_tiny()
        };
        let (_, k, v, _) = cfg.attn_widths();
        k + v
    }

    pub fn decoupled_keys(
        kv_a: &[f32],
        d_c: usize,
        k_nope: &[f32],
        n_heads: usize,
        pos: usize,
        theta: f32,
    ) -> Vec<f32> {
        // as `mla_qkv_forward` builds each head's key
        let d_r = kv_a.len() - d_c;
        let d_n = k_nope.len() / n_heads;
        let table = RopeTable::interleaved(theta, d_r, pos + 1);
        let mut k_rope = kv_a[d_c..].to_vec();
        table.rotate_one(&mut k_rope, pos, false);
        let mut keys = Vec::with_capacity(n_heads * (d_n + d_r));
        for h in 0..n_heads {
            keys.extend_from_slice(&k_nope[h * d_n..][..d_n]);
            keys.extend_from_slice(&k_rope);
        }
        keys
    }

    /// MLA parameters of one head for the crate to absorb: queries straight from an input of
    /// width `c` (`q_proj`), a RoPE part of 2 (zeros), a value of `d_v`.
    fn one_head(d_n: usize, d_c: usize, d_v: usize, c: usize) -> (MlaParams, MlaConfig) {
        let m = MlaConfig {
            q_lora_rank: None,
            kv_lora_rank: d_c,
            qk_nope_head_dim: d_n,
            qk_rope_head_dim: 2,
            v_head_dim: d_v,
            rope_interleave: true,
        };
        (MlaParams::zeros(&m, c, 1), m)
    }

    pub fn absorb_query(
        w_uk: &[f32],
        w_uq: &[f32],
        d_h: usize,
        d_c: usize,
        q_in: usize,
    ) -> Vec<f32> {
        let (mut p, m) = one_head(d_h, d_c, 1, q_in);
        // the query's first d_h rows are W^UQ^C, kv_b_proj's first d_h rows W^UK
        let MlaQuery::Direct { q_proj } = &mut p.q else {
            unreachable!("no query latent")
        };
        q_proj.f32_mut().data[..d_h * q_in].copy_from_slice(w_uq);
        p.kv_b_proj.f32_mut().data[..d_h * d_c].copy_from_slice(w_uk);
        MlaAbsorbed::new(&p, &m, 1).q_abs[..d_c * q_in].to_vec()
    }

    pub fn absorb_output(
        w_o_h: &[f32],
        w_uv: &[f32],
        c: usize,
        d_v: usize,
        d_c: usize,
    ) -> Vec<f32> {
        let (mut p, m) = one_head(1, d_c, d_v, c);
        // kv_b_proj: 1 row of W^UK, then the d_v rows of W^UV; o_proj (c, d_v) is W^O_h
        p.kv_b_proj.f32_mut().data[d_c..].copy_from_slice(w_uv);
        p.o_proj.f32_mut().data.copy_from_slice(w_o_h);
        MlaAbsorbed::new(&p, &m, 1).o_abs
    }

    /// A one-group router for `n` experts, `k` per token.
    fn router(n: usize, k: usize, normalise: bool, scale: f32) -> MoeConfig {
        MoeConfig {
            n_routed: n,
            top_k: k,
            n_group: 1,
            topk_group: 1,
            norm_topk_prob: normalise,
            routed_scaling_factor: scale,
            ..GptConfig::moe_tiny()
        }
    }

    pub fn route(
        logits: &[f32],
        bias: &[f32],
        k: usize,
        normalise: bool,
        scale: f32,
    ) -> (Vec<usize>, Vec<f32>) {
        let s: Vec<f32> = logits.iter().map(|u| 1.0 / (1.0 + (-u).exp())).collect();
        moe::route(&s, bias, &router(logits.len(), k, normalise, scale))
    }

    pub fn gates_backward(
        chosen: &[f32],
        d_gates: &[f32],
        normalise: bool,
        scale: f32,
    ) -> Vec<f32> {
        let m = router(chosen.len(), chosen.len(), normalise, scale);
        // the crate's takes the gates the forward computed
        let sum: f32 = chosen.iter().sum::<f32>() + 1e-20;
        let gates: Vec<f32> = chosen
            .iter()
            .map(|s| {
                if normalise {
                    scale * s / sum
                } else {
                    scale * s
                }
            })
            .collect();
        moe::gates_backward(chosen, &gates, d_gates, &m)
    }

    pub fn update_bias(bias: &mut [f32], load: &[usize], gamma: f32) {
        let mut p = MoeParams::zeros(&router(bias.len(), 1, true, 1.0), 1);
        p.bias.data.copy_from_slice(bias);
        p.update_bias(load, gamma);
        bias.copy_from_slice(&p.bias.data);
    }

    pub fn mtp_targets(targets: &[u32], t: usize) -> Vec<Option<u32>> {
        llm_lessons::gpt::mtp_targets(targets, t)
    }

    pub fn seq_balance_loss(
        scores: &[f32],
        ids: &[usize],
        n_routed: usize,
        k: usize,
        t: usize,
        alpha: f32,
    ) -> (f32, Vec<f32>) {
        let m = MoeConfig {
            seq_aux_alpha: alpha,
            ..router(n_routed, k, true, 1.0)
        };
        moe::seq_balance_loss(scores, ids, &m, t)
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

use llm_lessons::gpt::generate::KvCache;
use llm_lessons::gpt::hf::{config_from_hf_json, read_safetensors};
use llm_lessons::gpt::mla::{mla_qkv_forward, MlaAbsorbed, MlaActs};
use llm_lessons::gpt::moe::{self, gates_backward, seq_balance_loss};
use llm_lessons::gpt::rope::RopeTable;
use llm_lessons::gpt::{
    mtp_targets, Gpt, GptConfig, Linear, MlaConfig, MlaParams, MlaQuery, Mlp, MoeConfig, MoeParams,
    MtpConfig, Norm, Positions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// `n` numbers drawn uniformly from `[−scale, scale]` (the same on every machine).
fn random(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// `actual` is `expected` within `tol` (relative above 1).
#[track_caller]
fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol * expected.abs().max(1.0),
        "{what}: got {actual}, expected {expected}"
    );
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

/// A gradient computed in f32 agrees with the finite differences: within 1e-4 of the
/// largest component (f32 arithmetic rounds at about 1e-7 per operation).
#[track_caller]
fn assert_gradient(actual: &[f32], numeric: &[f64], what: &str) {
    let scale = numeric.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
    assert_eq!(actual.len(), numeric.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(numeric).enumerate() {
        assert!(
            (a as f64 - e).abs() <= 1e-4 * scale,
            "{what}[{i}]: got {a}, finite differences give {e:.7}\n  all: {actual:?}"
        );
    }
}

/// `(m, n) · (n, p)` in f64, row-major.
fn matmul64(a: &[f64], b: &[f64], m: usize, n: usize, p: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * p];
    for i in 0..m {
        for j in 0..n {
            for l in 0..p {
                out[i * p + l] += a[i * n + j] * b[j * p + l];
            }
        }
    }
    out
}

fn dot64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Rows `rows` of an `(_, cols)` matrix.
fn rows_of(w: &[f32], rows: std::ops::Range<usize>, cols: usize) -> Vec<f32> {
    w[rows.start * cols..rows.end * cols].to_vec()
}

/// Columns `c0..c0 + width` of an `(r, cols)` matrix, `(r, width)`.
fn columns(w: &[f32], r: usize, cols: usize, c0: usize, width: usize) -> Vec<f32> {
    (0..r)
        .flat_map(|i| w[i * cols + c0..][..width].iter().copied())
        .collect()
}

fn fill(l: &mut Linear, rng: &mut ChaCha8Rng) {
    let w = &mut l.f32_mut().data;
    let n = w.len();
    *w = random(rng, n, 0.5);
}

/// MLA's projections with random weights and norm scales near 1.
fn random_mla(m: &MlaConfig, c: usize, n_heads: usize, rng: &mut ChaCha8Rng) -> MlaParams {
    let mut p = MlaParams::zeros(m, c, n_heads);
    let scales = |n: usize, rng: &mut ChaCha8Rng| -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(0.8..1.2)).collect()
    };
    match &mut p.q {
        MlaQuery::Direct { q_proj } => fill(q_proj, rng),
        MlaQuery::Latent {
            q_a_proj,
            q_a_layernorm,
            q_b_proj,
        } => {
            fill(q_a_proj, rng);
            fill(q_b_proj, rng);
            let w = &mut q_a_layernorm.weight_mut().data;
            *w = scales(w.len(), rng);
        }
    }
    fill(&mut p.kv_a_proj_with_mqa, rng);
    fill(&mut p.kv_b_proj, rng);
    fill(&mut p.o_proj, rng);
    let w = &mut p.kv_a_layernorm.weight_mut().data;
    *w = scales(w.len(), rng);
    p
}

fn sigmoid64(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

/// The logit whose sigmoid is `p`, `ln(p / (1 − p))`.
fn logit(p: f64) -> f32 {
    (p / (1.0 - p)).ln() as f32
}

/// A one-group router for the crate's functions.
fn router(n: usize, k: usize, normalise: bool, scale: f32) -> MoeConfig {
    MoeConfig {
        n_routed: n,
        top_k: k,
        n_group: 1,
        topk_group: 1,
        norm_topk_prob: normalise,
        routed_scaling_factor: scale,
        ..GptConfig::moe_tiny()
    }
}

/// DeepSeek-V3 (671B) as its `config.json` gives it.
fn deepseek_v3() -> GptConfig {
    GptConfig {
        vocab_size: 129_280,
        d_model: 7168,
        n_layers: 61,
        n_heads: 128,
        n_kv_heads: 128,
        d_ff: 18_432,
        context: 4096,
        norm: Norm::RmsNorm { eps: 1e-6 },
        positions: Positions::Rope { theta: 10_000.0 },
        mlp: Mlp::SwiGlu,
        tied_head: false,
        mla: Some(MlaConfig {
            q_lora_rank: Some(1536),
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
            rope_interleave: true,
        }),
        moe: Some(MoeConfig {
            n_routed: 256,
            n_shared: 1,
            top_k: 8,
            d_expert: 2048,
            n_group: 8,
            topk_group: 4,
            norm_topk_prob: true,
            routed_scaling_factor: 2.5,
            first_dense: 3,
            bias_update_speed: 0.001,
            seq_aux_alpha: 0.0001,
        }),
        mtp: Some(MtpConfig { lambda: 0.3 }),
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-tiny")
}

// --- Exercise 1 ---------------------------------------------------------------------------

#[test]
fn exercise_1_cache_floats_per_token() {
    // llama-tiny: d_model 128, 4 query heads of 32, 2 key/value heads:
    // keys 2 · 32 = 64 and values 64, 128 numbers per token and layer
    let llama = GptConfig::llama_tiny();
    assert_eq!(
        solution::cache_floats_per_token(&llama),
        128,
        "llama-tiny (GQA)"
    );
    // multi-head: 4 key/value heads, 2 · 4 · 32 = 256; multi-query: 1, 2 · 32 = 64
    let mha = GptConfig {
        n_kv_heads: 4,
        ..GptConfig::llama_tiny()
    };
    assert_eq!(solution::cache_floats_per_token(&mha), 256, "MHA");
    let mqa = GptConfig {
        n_kv_heads: 1,
        ..GptConfig::llama_tiny()
    };
    assert_eq!(solution::cache_floats_per_token(&mqa), 64, "MQA");
    // GPT-2 tiny is multi-head too: 256
    assert_eq!(
        solution::cache_floats_per_token(&GptConfig::gpt2_tiny()),
        256,
        "gpt2-tiny"
    );
    // Llama 3 70B's shape: d_model 8192, 64 heads of 128, 8 key/value heads: 2 · 8 · 128
    let llama3_70b = GptConfig {
        d_model: 8192,
        n_heads: 64,
        n_kv_heads: 8,
        ..GptConfig::llama_tiny()
    };
    assert_eq!(
        solution::cache_floats_per_token(&llama3_70b),
        2048,
        "Llama 3 70B"
    );
    // deepseek-tiny: the latent 64 and the RoPE key 16, 80, although n_kv_heads says 4
    // (4 heads of 32 would be 256)
    let deepseek = GptConfig::deepseek_tiny();
    assert_eq!(
        solution::cache_floats_per_token(&deepseek),
        80,
        "deepseek-tiny (MLA): d_c + d_h^R, not 2 n_kv_heads head_dim"
    );
    // DeepSeek-V3: 512 + 64 = 576 numbers per token and layer
    let v3 = deepseek_v3();
    v3.validate().unwrap();
    assert_eq!(solution::cache_floats_per_token(&v3), 576, "DeepSeek-V3");
    // the fixture's model (tests/fixtures/deepseek-tiny): 16 + 8 = 24
    let path = fixture().join("config.json");
    let tiny = config_from_hf_json(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    assert_eq!(solution::cache_floats_per_token(&tiny), 24, "the fixture");

    // what a model's cache really holds after 3 tokens (small vocabularies and depths: the
    // widths are the presets')
    for cfg in [llama, mha, mqa, deepseek] {
        let cfg = GptConfig {
            vocab_size: 40,
            n_layers: 2,
            ..cfg
        };
        let model = Gpt::init(cfg.clone(), 3).unwrap();
        let mut cache = KvCache::new(&cfg);
        model.forward_cached(&mut cache, &[1, 2, 3]).unwrap();
        for l in 0..cfg.n_layers {
            let held = cache.k[l].len() + cache.v[l].len();
            assert_eq!(
                solution::cache_floats_per_token(&cfg) * 3,
                held,
                "{cfg:?}: layer {l}'s cache holds {held} numbers for 3 tokens"
            );
        }
    }
    // against the crate
    for cfg in [GptConfig::gpt2_tiny(), llama3_70b, v3, tiny] {
        assert_eq!(
            solution::cache_floats_per_token(&cfg),
            cfg.cache_floats_per_token()
        );
    }
}

#[test]
fn exercise_1_mha_cache_floats() {
    // DeepSeek-V3's heads without the latent: 128 keys of 128 + 64 = 24,576 and 128 values
    // of 128 = 16,384: 40,960, 71 times MLA's 576
    let v3 = deepseek_v3();
    let m = v3.mla.unwrap();
    let mha = solution::mha_cache_floats(&m, 128);
    assert_eq!(mha, 128 * (128 + 64) + 128 * 128, "DeepSeek-V3's heads");
    assert_eq!(mha, 40_960);
    assert_eq!(mha / solution::cache_floats_per_token(&v3), 71);
    // deepseek-tiny: 4 · (32 + 16) + 4 · 32 = 320, four times its 80
    let tiny = GptConfig::mla_tiny();
    assert_eq!(solution::mha_cache_floats(&tiny, 4), 320, "deepseek-tiny");
    // unequal widths, so that each enters where it should: 3 · (5 + 2) + 3 · 7 = 42
    let odd = MlaConfig {
        q_lora_rank: None,
        kv_lora_rank: 11,
        qk_nope_head_dim: 5,
        qk_rope_head_dim: 2,
        v_head_dim: 7,
        rope_interleave: true,
    };
    assert_eq!(
        solution::mha_cache_floats(&odd, 3),
        42,
        "3 heads of (5 + 2, 7)"
    );
    // the widths of the keys and values the crate's MLA builds for attention
    for (m, h) in [(m, 128), (tiny, 4), (odd, 3)] {
        let cfg = GptConfig {
            n_heads: h,
            n_kv_heads: h,
            mla: Some(m),
            ..GptConfig::deepseek_tiny()
        };
        let (_, k, v, _) = cfg.attn_widths();
        assert_eq!(solution::mha_cache_floats(&m, h), k + v, "{m:?}");
    }
}

// --- Exercise 2 ---------------------------------------------------------------------------

#[test]
fn exercise_2_decoupled_keys() {
    let (c1, s1) = (1f64.cos(), 1f64.sin());
    // d_c = 2 (the latent 7, 8 is not read), d_h^R = 2, 2 heads with d_h = 1: k^C = 5 and 6.
    // At position 1 the one pair turns by 1 · θ^0 = 1 radian: (1, 0) -> (cos 1, sin 1),
    // the same for both heads.
    let keys = solution::decoupled_keys(&[7.0, 8.0, 1.0, 0.0], 2, &[5.0, 6.0], 2, 1, 10_000.0);
    assert_all_close(&keys, &[5.0, c1, s1, 6.0, c1, s1], 1e-6, "pos 1, one pair");
    // position 0 does not rotate
    let keys = solution::decoupled_keys(&[7.0, 8.0, 1.0, 0.0], 2, &[5.0, 6.0], 2, 0, 10_000.0);
    assert_all_close(&keys, &[5.0, 1.0, 0.0, 6.0, 1.0, 0.0], 1e-6, "pos 0");
    // position 2 turns by 2 radians: (0, 1) -> (−sin 2, cos 2); another latent changes nothing
    let keys = solution::decoupled_keys(&[-1.0, 100.0, 0.0, 1.0], 2, &[5.0, 6.0], 2, 2, 10_000.0);
    let (c2, s2) = (2f64.cos(), 2f64.sin());
    assert_all_close(&keys, &[5.0, -s2, c2, 6.0, -s2, c2], 1e-6, "pos 2");
    // d_h^R = 4, θ = 100, position 1: pair 0 = (x0, x1) turns by 1, pair 1 = (x2, x3) by
    // 100^(−2/4) = 0.1. (1, 0, 0, 2) -> (cos 1, sin 1, −2 sin 0.1, 2 cos 0.1). The halves
    // (x0, x2), (x1, x3) of chapter 4 would give (cos 1, −2 sin 0.1, sin 1, 2 cos 0.1).
    // One head of d_h = 2, k^C = (3, 4); d_c = 1.
    let keys = solution::decoupled_keys(&[9.0, 1.0, 0.0, 0.0, 2.0], 1, &[3.0, 4.0], 1, 1, 100.0);
    let (c01, s01) = (0.1f64.cos(), 0.1f64.sin());
    assert_all_close(
        &keys,
        &[3.0, 4.0, c1, s1, -2.0 * s01, 2.0 * c01],
        1e-6,
        "interleaved pairs, d_h^R = 4",
    );

    // The keys the crate's MLA forward gives attention, for 2 sequences of 5 tokens: each
    // token's kv_a row and k^C = W^UK_h c^KV (kv_b_proj's rows on the normalised latent),
    // at its position in its sequence.
    let m = MlaConfig {
        q_lora_rank: Some(6),
        kv_lora_rank: 5,
        qk_nope_head_dim: 3,
        qk_rope_head_dim: 4,
        v_head_dim: 2,
        rope_interleave: true,
    };
    let (c, n_heads, b, t, theta) = (8, 3, 2, 5, 50.0);
    let (dc, dn, dr, dv) = (5, 3, 4, 2);
    let n = b * t;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let p = random_mla(&m, c, n_heads, &mut rng);
    let h = random(&mut rng, n * c, 1.0);
    let table = RopeTable::interleaved(theta, dr, t);
    let mut a = MlaActs::new(&m, n);
    let mut q = vec![0.0; n * n_heads * (dn + dr)];
    let mut k = vec![0.0; n * n_heads * (dn + dr)];
    let mut v = vec![0.0; n * n_heads * dv];
    mla_qkv_forward(
        &p, &m, n_heads, &table, &mut a, &mut q, &mut k, &mut v, &h, t,
    );
    let mut kv_b = vec![0.0; n * n_heads * (dn + dv)];
    p.kv_b_proj.forward(&mut kv_b, &a.ckv);
    for i in 0..n {
        let kv_a = &a.kv_a[i * (dc + dr)..][..dc + dr];
        let k_nope: Vec<f32> = (0..n_heads)
            .flat_map(|hd| kv_b[(i * n_heads + hd) * (dn + dv)..][..dn].iter().copied())
            .collect();
        let keys = solution::decoupled_keys(kv_a, dc, &k_nope, n_heads, i % t, theta);
        let want = to_f64(&k[i * n_heads * (dn + dr)..][..n_heads * (dn + dr)]);
        assert_all_close(
            &keys,
            &want,
            1e-5,
            &format!("token {i} (position {}): the crate's keys", i % t),
        );
    }
}

// --- Exercise 3 ---------------------------------------------------------------------------

#[test]
fn exercise_3_absorb_query() {
    // d_h = 1: W^UK = (1 2), W^UQ = (3 4 5): W^UKᵀ W^UQ is their outer product, (2, 3)
    let a = solution::absorb_query(&[1.0, 2.0], &[3.0, 4.0, 5.0], 1, 2, 3);
    assert_all_close(&a, &[3.0, 4.0, 5.0, 6.0, 8.0, 10.0], 1e-6, "d_h = 1");
    // d_h = 2: W^UK = [[1, 2], [3, 4]], W^UQ = [[1, 0, 1], [0, 1, 1]]:
    // W^UKᵀ = [[1, 3], [2, 4]], times W^UQ = [[1, 3, 1 + 3], [2, 4, 2 + 4]]
    let w_uk = [1.0, 2.0, 3.0, 4.0];
    let w_uq = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
    let a = solution::absorb_query(&w_uk, &w_uq, 2, 2, 3);
    assert_all_close(&a, &[1.0, 3.0, 4.0, 2.0, 4.0, 6.0], 1e-6, "d_h = 2");
    // check: c^Q = (1, 1, 1), c^KV = (1, 0): q^C = W^UQ c^Q = (2, 2), k^C = W^UK c^KV =
    // (1, 3), q^C · k^C = 8; the absorbed query (1 + 3 + 4, 2 + 4 + 6) = (8, 12), · (1, 0) = 8

    // q^C · k^C = (absorbed c^Q) · c^KV, for random matrices and vectors (in f64)
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (d_h, d_c, q_in) in [(4, 3, 5), (6, 8, 2), (5, 5, 7)] {
        let w_uk = random(&mut rng, d_h * d_c, 1.0);
        let w_uq = random(&mut rng, d_h * q_in, 1.0);
        let a = solution::absorb_query(&w_uk, &w_uq, d_h, d_c, q_in);
        assert_eq!(a.len(), d_c * q_in, "(d_c, q_in)");
        for _ in 0..5 {
            let (c_q, c_kv) = (
                to_f64(&random(&mut rng, q_in, 1.0)),
                to_f64(&random(&mut rng, d_c, 1.0)),
            );
            let q_c = matmul64(&to_f64(&w_uq), &c_q, d_h, q_in, 1);
            let k_c = matmul64(&to_f64(&w_uk), &c_kv, d_h, d_c, 1);
            let absorbed = matmul64(&to_f64(&a), &c_q, d_c, q_in, 1);
            assert_close(
                dot64(&absorbed, &c_kv),
                dot64(&q_c, &k_c),
                1e-5,
                "(W^UKᵀ W^UQ c^Q) · c^KV = q^C · k^C",
            );
        }
    }

    // each head's first d_c rows of the crate's absorbed query matrix
    let m = GptConfig::mla_tiny();
    let (c, n_heads) = (24, 3);
    let (dc, dn, dr, dv, q_in) = (64, 32, 16, 32, 96);
    let p = random_mla(&m, c, n_heads, &mut rng);
    let MlaQuery::Latent { q_b_proj, .. } = &p.q else {
        unreachable!("mla-tiny has a query latent")
    };
    let (w_q, w_kv) = (&q_b_proj.f32().data, &p.kv_b_proj.f32().data);
    let ab = MlaAbsorbed::new(&p, &m, n_heads);
    for hd in 0..n_heads {
        let w_uk = rows_of(w_kv, hd * (dn + dv)..hd * (dn + dv) + dn, dc);
        let w_uq = rows_of(w_q, hd * (dn + dr)..hd * (dn + dr) + dn, q_in);
        let a = solution::absorb_query(&w_uk, &w_uq, dn, dc, q_in);
        let want = to_f64(&ab.q_abs[hd * (dc + dr) * q_in..][..dc * q_in]);
        assert_all_close(&a, &want, 1e-5, &format!("head {hd}: MlaAbsorbed's q_abs"));
    }
}

#[test]
fn exercise_3_absorb_output() {
    // W^O_h = [[1, 2], [3, 4]] (c = 2, d_v = 2), W^UV = [[1, 0, 1], [0, 1, 1]] (d_c = 3):
    // [[1, 2, 1 + 2], [3, 4, 3 + 4]]
    let a = solution::absorb_output(
        &[1.0, 2.0, 3.0, 4.0],
        &[1.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        2,
        2,
        3,
    );
    assert_all_close(
        &a,
        &[1.0, 2.0, 3.0, 3.0, 4.0, 7.0],
        1e-6,
        "2 x 2 times 2 x 3",
    );
    // c = 3, d_v = 1: a column times a row, (3, 2)
    let a = solution::absorb_output(&[1.0, -1.0, 2.0], &[5.0, 6.0], 3, 1, 2);
    assert_all_close(&a, &[5.0, 6.0, -5.0, -6.0, 10.0, 12.0], 1e-6, "d_v = 1");

    // u = W^O [W^UV_1 x_1; ...; W^UV_H x_H] = Σ_h (W^O_h W^UV_h) x_h, for random weighted
    // latents x_h (in f64)
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let (c, n_heads, dv, dc) = (6, 3, 4, 5);
    let w_o = random(&mut rng, c * n_heads * dv, 1.0);
    let w_uv: Vec<Vec<f32>> = (0..n_heads)
        .map(|_| random(&mut rng, dv * dc, 1.0))
        .collect();
    let x: Vec<Vec<f64>> = (0..n_heads)
        .map(|_| to_f64(&random(&mut rng, dc, 1.0)))
        .collect();
    let o: Vec<f64> = (0..n_heads)
        .flat_map(|hd| matmul64(&to_f64(&w_uv[hd]), &x[hd], dv, dc, 1))
        .collect();
    let want = matmul64(&to_f64(&w_o), &o, c, n_heads * dv, 1);
    let mut got = vec![0.0; c];
    for hd in 0..n_heads {
        let w_o_h = columns(&w_o, c, n_heads * dv, hd * dv, dv);
        let a = solution::absorb_output(&w_o_h, &w_uv[hd], c, dv, dc);
        assert_eq!(a.len(), c * dc, "(c, d_c)");
        for (g, y) in got.iter_mut().zip(matmul64(&to_f64(&a), &x[hd], c, dc, 1)) {
            *g += y;
        }
    }
    for (r, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(
            *g,
            *w,
            1e-5,
            &format!("output {r}: absorbed against expanded"),
        );
    }

    // each head's d_c columns of the crate's absorbed output matrix
    let m = GptConfig::mla_tiny();
    let (c, n_heads) = (24, 3);
    let (dc, dn, dv) = (64, 32, 32);
    let p = random_mla(&m, c, n_heads, &mut rng);
    let (w_kv, w_o) = (&p.kv_b_proj.f32().data, &p.o_proj.f32().data);
    let ab = MlaAbsorbed::new(&p, &m, n_heads);
    for hd in 0..n_heads {
        let w_uv = rows_of(w_kv, hd * (dn + dv) + dn..(hd + 1) * (dn + dv), dc);
        let w_o_h = columns(w_o, c, n_heads * dv, hd * dv, dv);
        let a = solution::absorb_output(&w_o_h, &w_uv, c, dv, dc);
        let want = to_f64(&columns(&ab.o_abs, c, n_heads * dc, hd * dc, dc));
        assert_all_close(&a, &want, 1e-5, &format!("head {hd}: MlaAbsorbed's o_abs"));
    }
}

// --- Exercise 4 ---------------------------------------------------------------------------

#[test]
fn exercise_4_route() {
    // scores s = (0.9, 0.8, 0.3, 0.2) given as their logits ln(s / (1 − s))
    let u: Vec<f32> = [0.9, 0.8, 0.3, 0.2].into_iter().map(logit).collect();
    // no bias, k = 2: experts 0 and 1, gates 0.9 / 1.7 and 0.8 / 1.7
    let (ids, gates) = solution::route(&u, &[0.0; 4], 2, true, 1.0);
    assert_eq!(ids, [0, 1], "no bias");
    assert_all_close(&gates, &[0.9 / 1.7, 0.8 / 1.7], 1e-6, "gates, no bias");
    // bias 0.75 on expert 3: s + b = (0.9, 0.8, 0.3, 0.95), experts 3 then 0; the gates from
    // the plain scores, 0.2 / 1.1 = 2/11 and 0.9 / 1.1 = 9/11
    let bias = [0.0, 0.0, 0.0, 0.75];
    let (ids, gates) = solution::route(&u, &bias, 2, true, 1.0);
    assert_eq!(ids, [3, 0], "the bias chooses expert 3, best first");
    assert_all_close(
        &gates,
        &[2.0 / 11.0, 9.0 / 11.0],
        1e-6,
        "gates from s, not s + b",
    );
    // without normalising, scaled by 2.5: 2.5 · 0.2 = 0.5 and 2.5 · 0.9 = 2.25 (not 2.5 · 0.95)
    let (ids, gates) = solution::route(&u, &bias, 2, false, 2.5);
    assert_eq!(ids, [3, 0]);
    assert_all_close(&gates, &[0.5, 2.25], 1e-6, "not normalised, scale 2.5");
    // normalised and scaled by 2.5: they sum to 2.5, (2/11, 9/11) · 2.5
    let (_, gates) = solution::route(&u, &bias, 2, true, 2.5);
    assert_all_close(
        &gates,
        &[5.0 / 11.0, 22.5 / 11.0],
        1e-6,
        "normalised, scale 2.5",
    );
    // k = 3, no bias: 0, 1, 2 with 0.9, 0.8, 0.3 over 2.0
    let (ids, gates) = solution::route(&u, &[0.0; 4], 3, true, 1.0);
    assert_eq!(ids, [0, 1, 2], "k = 3");
    assert_all_close(&gates, &[0.45, 0.4, 0.15], 1e-6, "k = 3");
    // equal logits: s = 1/2 each, the lower indices first; a bias of −0.1 on expert 0 drops it
    let (ids, gates) = solution::route(&[0.0; 4], &[0.0; 4], 2, true, 1.0);
    assert_eq!(ids, [0, 1], "ties go to the lower index");
    assert_all_close(&gates, &[0.5, 0.5], 1e-6, "equal scores");
    let (ids, _) = solution::route(&[0.0; 4], &[-0.1, 0.0, 0.0, 0.0], 2, true, 1.0);
    assert_eq!(ids, [1, 2], "a negative bias");
    // logits −1 and 1: s = σ(−1) = 0.2689, σ(1) = 0.7311; k = 1 without normalising: the
    // gate is the sigmoid itself (normalised, it would be 1)
    let (ids, gates) = solution::route(&[-1.0, 1.0], &[0.0, 0.0], 1, false, 1.0);
    assert_eq!(ids, [1]);
    assert_all_close(&gates, &[sigmoid64(1.0)], 1e-6, "σ(1)");
    let (_, gates) = solution::route(&[-1.0, 1.0], &[0.0, 0.0], 1, true, 1.0);
    assert_all_close(&gates, &[1.0], 1e-6, "one expert normalised");

    // PyTorch's choices in transformers' DeepseekV3 (tests/fixtures/deepseek-tiny): layer 1's
    // router logits for 32 tokens, 4 experts, top-2, with the checkpoint's bias (and
    // without it, where 11 tokens choose another pair). PyTorch lists the pairs by id.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let tensors = read_safetensors(&fixture().join("expected.safetensors")).unwrap();
    let weights = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let find = |ts: &[llm_lessons::gpt::hf::NamedTensor], name: &str| {
        ts.iter().find(|t| t.name == name).unwrap().data.clone()
    };
    let logits = find(&tensors, "router_logits.model.layers.1");
    let want_gates = find(&tensors, "topk_weights.model.layers.1");
    let bias = find(&weights, "model.layers.1.mlp.gate.e_score_correction_bias");
    let moe_j = &expected["moe"]["model.layers.1"];
    let ids_of = |key: &str| -> Vec<Vec<usize>> {
        serde_json::from_value::<Vec<Vec<Vec<usize>>>>(moe_j[key].clone())
            .unwrap()
            .concat()
    };
    let (want_ids, want_unbiased) = (ids_of("topk_ids"), ids_of("topk_ids_without_bias"));
    assert_eq!(want_ids.len(), 32);
    let mut changed = 0;
    for (i, u) in logits.chunks_exact(4).enumerate() {
        let (ids, gates) = solution::route(u, &bias, 2, true, 1.0);
        let mut pairs: Vec<(usize, f32)> = ids.into_iter().zip(gates).collect();
        pairs.sort_by_key(|p| p.0);
        let ids: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(ids, want_ids[i], "token {i}: PyTorch's experts");
        let gates: Vec<f32> = pairs.iter().map(|p| p.1).collect();
        assert_all_close(
            &gates,
            &to_f64(&want_gates[2 * i..][..2]),
            1e-5,
            &format!("token {i}: PyTorch's gates"),
        );
        let (mut plain, _) = solution::route(u, &[0.0; 4], 2, true, 1.0);
        plain.sort();
        assert_eq!(plain, want_unbiased[i], "token {i} without the bias");
        changed += usize::from(plain != want_ids[i]);
    }
    assert_eq!(changed, 11, "the bias changes 11 tokens' choices");

    // random routers, against the crate
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for trial in 0..40 {
        let (n, k) = (8, 1 + trial % 4);
        let (normalise, scale) = (trial % 3 != 0, if trial % 2 == 0 { 1.0 } else { 2.5 });
        let u = random(&mut rng, n, 3.0);
        let bias = random(&mut rng, n, 0.2);
        let (ids, gates) = solution::route(&u, &bias, k, normalise, scale);
        let s: Vec<f32> = u.iter().map(|&x| sigmoid64(x as f64) as f32).collect();
        let (want_ids, want_gates) = moe::route(&s, &bias, &router(n, k, normalise, scale));
        assert_eq!(ids, want_ids, "trial {trial}: the crate's experts");
        assert_all_close(
            &gates,
            &to_f64(&want_gates),
            1e-6,
            &format!("trial {trial}: the crate's gates"),
        );
    }
}

// --- Exercise 5 ---------------------------------------------------------------------------

/// `Σ_j r_j gate_j(s)` in f64: the scalar whose gradient exercise 5 asks for.
fn gated64(s: &[f64], r: &[f64], normalise: bool, scale: f64) -> f64 {
    let sum: f64 = s.iter().sum();
    s.iter()
        .zip(r)
        .map(|(s, r)| r * scale * if normalise { s / sum } else { *s })
        .sum()
}

#[test]
fn exercise_5_gates_backward() {
    // s = (0.9, 0.2), S = 1.1, c = 1: gate = (9/11, 2/11).
    // dg = (1, 0): ∂gate_0/∂s = ((1 − 9/11) / 1.1, −(9/11) / 1.1) = (20/121, −90/121),
    // that is (s_1 / S², −s_0 / S²) from the quotient rule.
    let ds = solution::gates_backward(&[0.9, 0.2], &[1.0, 0.0], true, 1.0);
    assert_all_close(&ds, &[20.0 / 121.0, -90.0 / 121.0], 1e-6, "∂gate_0/∂s");
    // dg = (0, 1): ∂gate_1/∂s = (−s_1 / S², s_0 / S²) = (−20/121, 90/121)
    let ds = solution::gates_backward(&[0.9, 0.2], &[0.0, 1.0], true, 1.0);
    assert_all_close(&ds, &[-20.0 / 121.0, 90.0 / 121.0], 1e-6, "∂gate_1/∂s");
    // dg = (1, 1), c = 2.5: the gates always sum to 2.5, so no gradient
    let ds = solution::gates_backward(&[0.9, 0.2], &[1.0, 1.0], true, 2.5);
    assert_all_close(&ds, &[0.0, 0.0], 1e-6, "an equal dg on every gate");
    // c = 2.5, dg = (2, 0): 2.5 · 2 · (20/121, −90/121) = (100/121, −450/121)
    let ds = solution::gates_backward(&[0.9, 0.2], &[2.0, 0.0], true, 2.5);
    assert_all_close(&ds, &[100.0 / 121.0, -450.0 / 121.0], 1e-6, "c = 2.5");
    // three experts s = (0.5, 0.3, 0.2), S = 1, gate = s; dg = (1, 2, 3):
    // Σ dg gate = 0.5 + 0.6 + 0.6 = 1.7; ds = dg − 1.7 = (−0.7, 0.3, 1.3)
    let ds = solution::gates_backward(&[0.5, 0.3, 0.2], &[1.0, 2.0, 3.0], true, 1.0);
    assert_all_close(&ds, &[-0.7, 0.3, 1.3], 1e-6, "three experts");
    // without normalisation, gate = 2.5 s: ds = 2.5 dg
    let ds = solution::gates_backward(&[0.9, 0.2], &[1.0, -2.0], false, 2.5);
    assert_all_close(&ds, &[2.5, -5.0], 1e-6, "not normalised");

    // finite differences, the scale invariance, and the crate
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for trial in 0..30 {
        let k = 1 + trial % 6;
        let (normalise, scale) = (trial % 4 != 3, if trial % 2 == 0 { 1.0 } else { 2.5 });
        let s: Vec<f32> = (0..k).map(|_| rng.gen_range(0.05..1.0)).collect();
        let dg = random(&mut rng, k, 1.0);
        let ds = solution::gates_backward(&s, &dg, normalise, scale);
        let numeric = numeric_gradient(&to_f64(&s), |x| {
            gated64(x, &to_f64(&dg), normalise, scale as f64)
        });
        assert_gradient(&ds, &numeric, &format!("trial {trial}: finite differences"));
        if normalise {
            let radial: f64 = s.iter().zip(&ds).map(|(&s, &d)| s as f64 * d as f64).sum();
            assert!(
                radial.abs() < 1e-5,
                "trial {trial}: Σ s_l ∂L/∂s_l = {radial}, not 0"
            );
        }
        let m = router(k, k, normalise, scale);
        // all k chosen, in the crate's order (best first): the same scores reordered
        let (order, gates) = moe::route(&s, &vec![0.0; k], &m);
        let chosen: Vec<f32> = order.iter().map(|&i| s[i]).collect();
        let d_chosen: Vec<f32> = order.iter().map(|&i| dg[i]).collect();
        let want = gates_backward(&chosen, &gates, &d_chosen, &m);
        let mine: Vec<f32> = order.iter().map(|&i| ds[i]).collect();
        assert_all_close(
            &mine,
            &to_f64(&want),
            1e-5,
            &format!("trial {trial}: the crate's gates_backward"),
        );
    }
}

// --- Exercise 6 ---------------------------------------------------------------------------

#[test]
fn exercise_6_update_bias() {
    // loads (5, 1, 3, 3), mean 3: expert 0 overloaded (−γ), expert 1 underloaded (+γ), the
    // others at the mean (unchanged). γ = 0.01 from (0.1, 0, 0, −0.2).
    let mut bias = [0.1, 0.0, 0.0, -0.2];
    solution::update_bias(&mut bias, &[5, 1, 3, 3], 0.01);
    assert_all_close(&bias, &[0.09, 0.01, 0.0, -0.2], 1e-7, "loads (5, 1, 3, 3)");
    // loads (1, 2), mean 1.5: +γ and −γ, whatever the size of the gap
    let mut bias = [0.0, 0.0];
    solution::update_bias(&mut bias, &[1, 2], 0.5);
    assert_all_close(&bias, &[0.5, -0.5], 1e-7, "mean 1.5");
    let mut bias = [0.0, 0.0, 0.0];
    solution::update_bias(&mut bias, &[100, 0, 50], 0.001);
    assert_all_close(&bias, &[-0.001, 0.001, 0.0], 1e-7, "the sign, not the gap");
    // every load equal: nothing moves
    let mut bias = [0.3, -0.3, 0.0, 0.7];
    solution::update_bias(&mut bias, &[4, 4, 4, 4], 0.1);
    assert_all_close(&bias, &[0.3, -0.3, 0.0, 0.7], 1e-7, "balanced");

    // against the crate
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for trial in 0..20 {
        let n = 2 + trial % 7;
        let load: Vec<usize> = (0..n).map(|_| rng.gen_range(0..6)).collect();
        let start = random(&mut rng, n, 0.5);
        let gamma = rng.gen_range(0.0001..0.1);
        let mut bias = start.clone();
        solution::update_bias(&mut bias, &load, gamma);
        let mut p = MoeParams::zeros(&router(n, 1, true, 1.0), 1);
        p.bias.data.copy_from_slice(&start);
        p.update_bias(&load, gamma);
        assert_all_close(
            &bias,
            &to_f64(&p.bias.data),
            1e-7,
            &format!("loads {load:?}: the crate's update"),
        );
    }

    // Balancing at work: 256 tokens, 4 experts, k = 1, a router that prefers expert 0 by
    // far (logits offset by 2, 0.5, 0, −0.5). Routed by the crate with the bias your update
    // moves, step after step, the loads even out.
    let (n_tok, n_r) = (256, 4);
    let offsets = [2.0f32, 0.5, 0.0, -0.5];
    let scores: Vec<f32> = (0..n_tok * n_r)
        .map(|i| sigmoid64((rng.gen_range(-1.0f32..1.0) + offsets[i % n_r]) as f64) as f32)
        .collect();
    let m = router(n_r, 1, true, 1.0);
    let loads = |bias: &[f32]| {
        let mut load = vec![0usize; n_r];
        for s in scores.chunks_exact(n_r) {
            load[moe::route(s, bias, &m).0[0]] += 1;
        }
        load
    };
    let imbalance = |load: &[usize]| *load.iter().max().unwrap() as f64 / (n_tok / n_r) as f64;
    let mut bias = vec![0.0f32; n_r];
    let first = loads(&bias);
    let before = imbalance(&first);
    assert!(before > 2.0, "the router prefers expert 0: loads {first:?}");
    let mut late = 0.0;
    for step in 0..400 {
        let load = loads(&bias);
        if step >= 300 {
            late += imbalance(&load) / 100.0;
        }
        solution::update_bias(&mut bias, &load, 0.002);
    }
    eprintln!(
        "the most loaded expert: {before:.2} times the mean at first, {late:.2} on average \
         over steps 300..400; bias {bias:?}"
    );
    assert!(
        late < 1.25,
        "after 300 steps the loads are about even ({late:.2})"
    );
    assert!(
        bias[0] < bias[1] && bias[1] < bias[3],
        "the favoured expert's bias fell the most: {bias:?}"
    );
}

// --- Exercise 7 ---------------------------------------------------------------------------

#[test]
fn exercise_7_mtp_targets() {
    // One sequence x_0 .. x_4 = 10 11 12 13 14: inputs 10 11 12 13, next-token targets
    // 11 12 13 14; the MTP depth at position i predicts x_{i+2}: 12 13 14, and none at the
    // last position (x_5 is not in the batch).
    assert_eq!(
        solution::mtp_targets(&[11, 12, 13, 14], 4),
        [Some(12), Some(13), Some(14), None]
    );
    // two sequences of 3: the first's last position does not reach into the second
    assert_eq!(
        solution::mtp_targets(&[1, 2, 3, 7, 8, 9], 3),
        [Some(2), Some(3), None, Some(8), Some(9), None],
        "two sequences"
    );
    // sequences of 1 token predict nothing after next
    assert_eq!(
        solution::mtp_targets(&[5, 6, 7], 1),
        [None, None, None],
        "t = 1"
    );
    // t = 2
    assert_eq!(
        solution::mtp_targets(&[4, 3, 2, 1], 2),
        [Some(3), None, Some(1), None],
        "t = 2"
    );

    // from the token streams: B rows of T + 1 tokens give inputs x[..T], targets x[1..], and
    // MTP targets x[i + 2] for i + 2 <= T; and against the crate
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (b, t) in [(1, 5), (3, 4), (4, 7), (2, 1)] {
        let rows: Vec<Vec<u32>> = (0..b)
            .map(|_| (0..=t).map(|_| rng.gen_range(0..50)).collect())
            .collect();
        let targets: Vec<u32> = rows.iter().flat_map(|x| x[1..].to_vec()).collect();
        let want: Vec<Option<u32>> = rows
            .iter()
            .flat_map(|x| (0..t).map(|i| x.get(i + 2).copied()).collect::<Vec<_>>())
            .collect();
        let got = solution::mtp_targets(&targets, t);
        assert_eq!(got, want, "B = {b}, T = {t}: from the token streams");
        assert_eq!(got, mtp_targets(&targets, t), "B = {b}, T = {t}: the crate");
    }
}

// --- Exercise 8 ---------------------------------------------------------------------------

/// The sequence-wise balance loss in f64, written from its definition.
fn balance64(s: &[f64], ids: &[usize], n_r: usize, k: usize, t: usize, alpha: f64) -> f64 {
    let seqs = s.len() / n_r / t;
    let mut total = 0.0;
    for b in 0..seqs {
        let mut f = vec![0.0; n_r];
        for &e in &ids[b * t * k..(b + 1) * t * k] {
            f[e] += n_r as f64 / (k * t) as f64;
        }
        let mut p = vec![0.0; n_r];
        for row in s[b * t * n_r..(b + 1) * t * n_r].chunks_exact(n_r) {
            let sum: f64 = row.iter().sum();
            for (p, x) in p.iter_mut().zip(row) {
                *p += x / sum / t as f64;
            }
        }
        total += alpha * dot64(&f, &p);
    }
    total / seqs as f64
}

#[test]
fn exercise_8_seq_balance_loss() {
    // One sequence, T = 2, N_r = 2, k = 1, α = 0.1. Scores (0.75, 0.25) and (0.5, 0.5)
    // (S = 1 for both), both tokens choose expert 0: f = (2/(1·2) · 2, 0) = (2, 0),
    // P = ((0.75 + 0.5)/2, (0.25 + 0.5)/2) = (0.625, 0.375), L = 0.1 · 2 · 0.625 = 0.125.
    // Gradient, α/T = 0.05: token 0, w = 2 · 0.75 = 1.5: 0.05 · (2 − 1.5, 0 − 1.5) =
    // (0.025, −0.075); token 1, w = 1: 0.05 · (1, −1) = (0.05, −0.05).
    let s1 = [0.75, 0.25, 0.5, 0.5];
    let (l, ds) = solution::seq_balance_loss(&s1, &[0, 0], 2, 1, 2, 0.1);
    assert_close(l as f64, 0.125, 1e-6, "one sequence");
    assert_all_close(
        &ds,
        &[0.025, -0.075, 0.05, -0.05],
        1e-6,
        "one sequence's gradient",
    );
    // A second sequence, scores (0.5, 0.5) twice, both choosing expert 1: f = (0, 2),
    // P = (0.5, 0.5), L = 0.1. The mean over the two: 0.1125; each gradient halved, the
    // second's 0.025 · (f − w) with w = 1: (−0.025, 0.025).
    let s2 = [0.75, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5];
    let (l, ds) = solution::seq_balance_loss(&s2, &[0, 0, 1, 1], 2, 1, 2, 0.1);
    assert_close(l as f64, 0.1125, 1e-6, "the mean over two sequences");
    assert_all_close(
        &ds,
        &[0.0125, -0.0375, 0.025, -0.025, -0.025, 0.025, -0.025, 0.025],
        1e-6,
        "two sequences' gradient",
    );
    // The same 8 scores as ONE sequence of T = 4: f = (1, 1) (balanced), so L = α = 0.1
    // whatever the scores, and w = Σ s / S = 1 at each token: ds = (α/4)(1 − 1) = 0.
    let (l, ds) = solution::seq_balance_loss(&s2, &[0, 0, 1, 1], 2, 1, 4, 0.1);
    assert_close(l as f64, 0.1, 1e-6, "a balanced sequence: L = α");
    assert_all_close(&ds, &[0.0; 8], 1e-6, "a balanced sequence: no gradient");
    // k = 2 of 3 experts, T = 1: scores (1, 2, 1) (S = 4), chosen 1 and 0:
    // f = 3/(2·1) · (1, 1, 0) = (1.5, 1.5, 0), P = (0.25, 0.5, 0.25),
    // L = α (0.375 + 0.75) = 1.125 α, α = 1; w = 1.125,
    // ds = (1.5 − 1.125, 1.5 − 1.125, −1.125) / 4 = (0.09375, 0.09375, −0.28125)
    let (l, ds) = solution::seq_balance_loss(&[1.0, 2.0, 1.0], &[1, 0], 3, 2, 1, 1.0);
    assert_close(l as f64, 1.125, 1e-6, "k = 2");
    assert_all_close(&ds, &[0.09375, 0.09375, -0.28125], 1e-6, "k = 2's gradient");

    // finite differences of the f64 definition, the scale invariance of each token's scores,
    // and the crate
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (n_r, k, t, seqs) in [(4, 2, 3, 2), (8, 2, 5, 1), (6, 3, 2, 3), (5, 1, 4, 2)] {
        let n = t * seqs;
        let scores: Vec<f32> = (0..n * n_r).map(|_| rng.gen_range(0.05..1.0)).collect();
        let ids: Vec<usize> = (0..n)
            .flat_map(|i| {
                moe::route(
                    &scores[i * n_r..][..n_r],
                    &vec![0.0; n_r],
                    &router(n_r, k, true, 1.0),
                )
                .0
            })
            .collect();
        let alpha = 0.3;
        let (l, ds) = solution::seq_balance_loss(&scores, &ids, n_r, k, t, alpha);
        let what = format!("N_r {n_r}, k {k}, T {t}, {seqs} sequences");
        let s64 = to_f64(&scores);
        assert_close(
            l as f64,
            balance64(&s64, &ids, n_r, k, t, alpha as f64),
            1e-5,
            &format!("{what}: the loss"),
        );
        let numeric = numeric_gradient(&s64, |x| balance64(x, &ids, n_r, k, t, alpha as f64));
        assert_gradient(&ds, &numeric, &format!("{what}: finite differences"));
        for (i, (s, d)) in scores
            .chunks_exact(n_r)
            .zip(ds.chunks_exact(n_r))
            .enumerate()
        {
            let radial: f64 = s.iter().zip(d).map(|(&s, &d)| s as f64 * d as f64).sum();
            assert!(
                radial.abs() < 1e-6,
                "{what}, token {i}: Σ_j s_j ∂L/∂s_j = {radial}"
            );
        }
        let m = MoeConfig {
            seq_aux_alpha: alpha,
            ..router(n_r, k, true, 1.0)
        };
        let (want_l, want_ds) = seq_balance_loss(&scores, &ids, &m, t);
        assert_close(
            l as f64,
            want_l as f64,
            1e-5,
            &format!("{what}: the crate's loss"),
        );
        assert_all_close(
            &ds,
            &to_f64(&want_ds),
            1e-5,
            &format!("{what}: the crate's gradient"),
        );
    }
}
