//! Multi-head latent attention (MLA, DeepSeek-V2 and V3), forward and backward, and its
//! cached form for generation with the up-projections absorbed.
//!
//! For the normalised hidden state `h_t` of a token (DeepSeek-V3 report, eqs. 1-11; `H`
//! heads, `d_h` = `qk_nope_head_dim`, `d_h^R` = `qk_rope_head_dim`, `d_c` = `kv_lora_rank`):
//!
//! ```text
//! c_t^KV = RMSNorm(W^DKV h_t)                          (d_c)     the only key/value state
//! [k_t,1^C; v_t,1; ...; k_t,H^C; v_t,H] = W^UKV c_t^KV  per head d_h + d_v
//! k_t^R  = RoPE(W^KR h_t)                              (d_h^R)   one for all heads
//! c_t^Q  = RMSNorm(W^DQ h_t)                           (d_c')
//! [q_t,i^C; q_t,i^R] = W^UQ c_t^Q, q_t,i^R rotated     per head d_h + d_h^R
//! o_t,i  = sum_j softmax_j((q_t,i^C . k_j,i^C + q_t,i^R . k_j^R) / sqrt(d_h + d_h^R)) v_j,i
//! u_t    = W^O [o_t,1; ...; o_t,H]
//! ```
//!
//! `W^DKV` and `W^KR` are one matrix (`kv_a_proj_with_mqa`: `d_c` rows, then `d_h^R`),
//! `W^UK` and `W^UV` are one (`kv_b_proj`: per head `d_h` rows, then `d_v`). Training
//! builds each head's key `[k^C; k^R]` and value and runs chapter 4's attention with
//! query/key heads `d_h + d_h^R` wide and value heads `d_v` wide.
//!
//! Generation caches `[c^KV; k^R]`, `d_c + d_h^R` numbers per token and layer, and never
//! rebuilds the keys: since `q^C . k^C = q^C . (W^UK_i c) = (W^UK_iᵀ q^C) . c`, the query
//! is taken into the latent space once (`W^UK` absorbed into `W^UQ`), attends over the
//! cached latents directly, and the weighted sum of latents goes out through
//! `W^O_i W^UV_i` (`W^UV` absorbed into `W^O`).

use super::block::{norm_backward, norm_forward};
use super::config::{GptConfig, MlaConfig, Norm};
use super::linear::{linear_forward, mat, mat_mut, matmul, Threads};
use super::params::{MlaParams, MlaQuery, MLA_NORM_EPS};
use super::rope::RopeTable;

/// The latent norms: RMSNorm with transformers' fixed eps.
const LATENT_NORM: Norm = Norm::RmsNorm { eps: MLA_NORM_EPS };

/// What MLA's forward keeps for its backward beyond the attention's own `q`, `k`, `v`,
/// probabilities and output (in [`super::block::BlockActs`]).
#[derive(Clone, Debug, Default)]
pub struct MlaActs {
    /// `W^DQ h`, `(n, d_c')`, and `c^Q` = its RMSNorm with the row statistics (empty when
    /// queries come straight from `h`).
    pub cq_raw: Vec<f32>,
    pub cq: Vec<f32>,
    pub cq_rstd: Vec<f32>,
    /// `[W^DKV h; W^KR h]`, `(n, d_c + d_h^R)`, before the norm and the rotation.
    pub kv_a: Vec<f32>,
    /// `W^DKV h` alone, `(n, d_c)`, and `c^KV` = its RMSNorm.
    pub ckv_raw: Vec<f32>,
    pub ckv: Vec<f32>,
    pub ckv_rstd: Vec<f32>,
}

impl MlaActs {
    /// Buffers for `n` positions.
    pub fn new(m: &MlaConfig, n: usize) -> Self {
        let r = m.q_lora_rank.unwrap_or(0);
        MlaActs {
            cq_raw: vec![0.0; n * r],
            cq: vec![0.0; n * r],
            cq_rstd: vec![0.0; if r > 0 { n } else { 0 }],
            kv_a: vec![0.0; n * (m.kv_lora_rank + m.qk_rope_head_dim)],
            ckv_raw: vec![0.0; n * m.kv_lora_rank],
            ckv: vec![0.0; n * m.kv_lora_rank],
            ckv_rstd: vec![0.0; n],
        }
    }
}

/// The widths MLA's buffers have: queries and keys `H (d_h + d_h^R)`, values and the
/// attention's output `H d_v`.
pub fn widths(cfg: &GptConfig, m: &MlaConfig) -> (usize, usize) {
    let h = cfg.n_heads;
    (
        h * (m.qk_nope_head_dim + m.qk_rope_head_dim),
        h * m.v_head_dim,
    )
}

/// The input of the query's up-projection: `h` itself, or the query latent
/// `c^Q = RMSNorm(W^DQ h)` (kept in `a`).
fn query_input<'a>(p: &MlaParams, a: &'a mut MlaActs, h: &'a [f32]) -> &'a [f32] {
    match &p.q {
        MlaQuery::Direct { .. } => h,
        MlaQuery::Latent {
            q_a_proj,
            q_a_layernorm,
            ..
        } => {
            q_a_proj.forward(&mut a.cq_raw, h);
            let r = q_a_proj.d_out;
            norm_forward(
                LATENT_NORM,
                q_a_layernorm,
                &mut a.cq,
                &mut [],
                &mut a.cq_rstd,
                &a.cq_raw,
                r,
            );
            &a.cq
        }
    }
}

/// `W^Q` or `W^UQ`: the projection that gives the queries from [`query_input`].
fn query_proj(p: &MlaParams) -> &super::linear::Linear {
    match &p.q {
        MlaQuery::Direct { q_proj } => q_proj,
        MlaQuery::Latent { q_b_proj, .. } => q_b_proj,
    }
}

/// `[W^DKV h; W^KR h]` into `a.kv_a`, and the latent `c^KV` = RMSNorm of its first `d_c`
/// numbers into `a.ckv` (the RoPE key's part is left unrotated in `a.kv_a`).
fn kv_latent(p: &MlaParams, a: &mut MlaActs, h: &[f32], dc: usize, dr: usize) {
    p.kv_a_proj_with_mqa.forward(&mut a.kv_a, h);
    for (raw, row) in a
        .ckv_raw
        .chunks_exact_mut(dc)
        .zip(a.kv_a.chunks_exact(dc + dr))
    {
        raw.copy_from_slice(&row[..dc]);
    }
    norm_forward(
        LATENT_NORM,
        &p.kv_a_layernorm,
        &mut a.ckv,
        &mut [],
        &mut a.ckv_rstd,
        &a.ckv_raw,
        dc,
    );
}

// ANCHOR: mla_forward
/// MLA's training forward on `n = b t` normalised rows `h` (`(n, C)`): the queries `q`
/// and keys `k` (`(n, H (d_h + d_h^R))`, RoPE applied) and values `v` (`(n, H d_v)`) that
/// chapter 4's attention then reads, keeping the latents in `a`.
#[allow(clippy::too_many_arguments)]
pub fn mla_qkv_forward(
    p: &MlaParams,
    m: &MlaConfig,
    n_heads: usize,
    table: &RopeTable,
    a: &mut MlaActs,
    q: &mut [f32],
    k: &mut [f32],
    v: &mut [f32],
    h: &[f32],
    t: usize,
) {
    let (dn, dr, dv, dc) = (
        m.qk_nope_head_dim,
        m.qk_rope_head_dim,
        m.v_head_dim,
        m.kv_lora_rank,
    );
    let qk = dn + dr;
    // queries, each head's last d_h^R rotated
    query_proj(p).forward(q, query_input(p, a, h));
    for (i, row) in q.chunks_exact_mut(n_heads * qk).enumerate() {
        for head in row.chunks_exact_mut(qk) {
            table.rotate_one(&mut head[dn..], i % t, false);
        }
    }
    // the latent and the shared RoPE key
    kv_latent(p, a, h, dc, dr);
    // per head [k^C | v] from the latent, then the keys [k^C | k^R]
    let mut kv_b = vec![0.0; h.len() / p.kv_a_proj_with_mqa.d_in * n_heads * (dn + dv)];
    p.kv_b_proj.forward(&mut kv_b, &a.ckv);
    let rows = kv_b
        .chunks_exact(n_heads * (dn + dv))
        .zip(a.kv_a.chunks_exact(dc + dr))
        .zip(
            k.chunks_exact_mut(n_heads * qk)
                .zip(v.chunks_exact_mut(n_heads * dv)),
        );
    for (i, ((kvb, kva), (k_row, v_row))) in rows.enumerate() {
        let mut k_rope = kva[dc..].to_vec();
        table.rotate_one(&mut k_rope, i % t, false);
        for hd in 0..n_heads {
            let src = &kvb[hd * (dn + dv)..][..dn + dv];
            k_row[hd * qk..][..dn].copy_from_slice(&src[..dn]);
            k_row[hd * qk + dn..][..dr].copy_from_slice(&k_rope);
            v_row[hd * dv..][..dv].copy_from_slice(&src[dn..]);
        }
    }
}
// ANCHOR_END: mla_forward

// ANCHOR: mla_backward
/// Backward of [`mla_qkv_forward`]: given the gradients of the (rotated) queries, keys and
/// values, adds the input's gradient into `d_h` and the parameters' into `g`. The shared
/// RoPE key collects the gradients of all `H` heads' keys.
#[allow(clippy::too_many_arguments)]
pub fn mla_qkv_backward(
    p: &MlaParams,
    g: &mut MlaParams,
    m: &MlaConfig,
    n_heads: usize,
    table: &RopeTable,
    a: &MlaActs,
    d_h: &mut [f32],
    d_q: &[f32],
    d_k: &[f32],
    d_v: &[f32],
    h: &[f32],
    t: usize,
) {
    let (dn, dr, dv, dc) = (
        m.qk_nope_head_dim,
        m.qk_rope_head_dim,
        m.v_head_dim,
        m.kv_lora_rank,
    );
    let (qk, n) = (dn + dr, a.ckv_rstd.len());
    // keys and values back to kv_b_proj's output; the RoPE key's gradient summed over heads
    let mut d_kv_b = vec![0.0; n * n_heads * (dn + dv)];
    let mut d_kv_a = vec![0.0; n * (dc + dr)];
    let rows = d_kv_b
        .chunks_exact_mut(n_heads * (dn + dv))
        .zip(d_kv_a.chunks_exact_mut(dc + dr))
        .zip(
            d_k.chunks_exact(n_heads * qk)
                .zip(d_v.chunks_exact(n_heads * dv)),
        );
    for (i, ((dkvb, dkva), (dk, dvv))) in rows.enumerate() {
        let d_rope = &mut dkva[dc..];
        for hd in 0..n_heads {
            let dst = &mut dkvb[hd * (dn + dv)..][..dn + dv];
            dst[..dn].copy_from_slice(&dk[hd * qk..][..dn]);
            dst[dn..].copy_from_slice(&dvv[hd * dv..][..dv]);
            for (d, x) in d_rope.iter_mut().zip(&dk[hd * qk + dn..][..dr]) {
                *d += x;
            }
        }
        table.rotate_one(d_rope, i % t, true);
    }
    let mut d_ckv = vec![0.0; n * dc];
    p.kv_b_proj
        .backward(&mut d_ckv, &mut g.kv_b_proj, &d_kv_b, &a.ckv);
    let mut d_ckv_raw = vec![0.0; n * dc];
    let mut discard = (vec![0.0; dc], Vec::new());
    norm_backward(
        &p.kv_a_layernorm,
        &mut g.kv_a_layernorm,
        &mut d_ckv_raw,
        &d_ckv,
        &a.ckv_raw,
        &[],
        &a.ckv_rstd,
        dc,
        &mut discard,
    );
    for (dst, src) in d_kv_a
        .chunks_exact_mut(dc + dr)
        .zip(d_ckv_raw.chunks_exact(dc))
    {
        dst[..dc].copy_from_slice(src);
    }
    p.kv_a_proj_with_mqa
        .backward(d_h, &mut g.kv_a_proj_with_mqa, &d_kv_a, h);
    // the queries: rotate each head's tail back, then down the query path
    let mut d_q_raw = d_q.to_vec();
    for (i, row) in d_q_raw.chunks_exact_mut(n_heads * qk).enumerate() {
        for head in row.chunks_exact_mut(qk) {
            table.rotate_one(&mut head[dn..], i % t, true);
        }
    }
    match (&p.q, &mut g.q) {
        (MlaQuery::Direct { q_proj }, MlaQuery::Direct { q_proj: dq }) => {
            q_proj.backward(d_h, dq, &d_q_raw, h)
        }
        (
            MlaQuery::Latent {
                q_a_proj,
                q_a_layernorm,
                q_b_proj,
            },
            MlaQuery::Latent {
                q_a_proj: d_qa,
                q_a_layernorm: d_qnorm,
                q_b_proj: d_qb,
            },
        ) => {
            let r = q_a_proj.d_out;
            let mut d_cq = vec![0.0; n * r];
            q_b_proj.backward(&mut d_cq, d_qb, &d_q_raw, &a.cq);
            let mut d_cq_raw = vec![0.0; n * r];
            let mut discard = (vec![0.0; r], Vec::new());
            norm_backward(
                q_a_layernorm,
                d_qnorm,
                &mut d_cq_raw,
                &d_cq,
                &a.cq_raw,
                &[],
                &a.cq_rstd,
                r,
                &mut discard,
            );
            q_a_proj.backward(d_h, d_qa, &d_cq_raw, h);
        }
        _ => unreachable!("the gradients have the parameters' structure"),
    }
}
// ANCHOR_END: mla_backward

// ANCHOR: absorb
/// MLA's projections with the up-projections folded in, for generation over the cached
/// latents: per head, `[W^UK_iᵀ W^UQ_i^C; W^QR_i]` (the query taken into the latent space,
/// and its RoPE part), and `W^O_i W^UV_i` (a head's weighted latent straight to the
/// output).
#[derive(Clone, Debug)]
pub struct MlaAbsorbed {
    /// `(H (d_c + d_h^R), q_in)`, `q_in` = `d_c'` or `C`.
    pub q_abs: Vec<f32>,
    /// `(C, H d_c)`.
    pub o_abs: Vec<f32>,
}

impl MlaAbsorbed {
    /// The absorbed matrices of `p`.
    pub fn new(p: &MlaParams, m: &MlaConfig, n_heads: usize) -> Self {
        let (dn, dr, dv, dc) = (
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
            m.kv_lora_rank,
        );
        let qk = dn + dr;
        let w_q = query_proj(p);
        let q_in = w_q.d_in;
        let (wq, wkv, wo) = (
            &w_q.f32().data,
            &p.kv_b_proj.f32().data,
            &p.o_proj.f32().data,
        );
        let c = p.o_proj.d_out;
        let mut q_abs = vec![0.0; n_heads * (dc + dr) * q_in];
        let mut o_abs = vec![0.0; c * n_heads * dc];
        for hd in 0..n_heads {
            // W^UK_i: rows of kv_b_proj, (d_h, d_c); W^UQ_i^C: rows of the query, (d_h, q_in)
            let w_uk = mat(&wkv[hd * (dn + dv) * dc..][..dn * dc], dn, dc);
            let w_uq = mat(&wq[hd * qk * q_in..][..dn * q_in], dn, q_in);
            let block = &mut q_abs[hd * (dc + dr) * q_in..][..(dc + dr) * q_in];
            let (absorbed, rope) = block.split_at_mut(dc * q_in);
            matmul(
                1.0,
                &w_uk.t(),
                &w_uq,
                0.0,
                &mut mat_mut(absorbed, dc, q_in),
                Threads::One,
            );
            rope.copy_from_slice(&wq[(hd * qk + dn) * q_in..][..dr * q_in]);
            // W^O_i W^UV_i: columns hd*d_v.. of W^O times the value rows, into columns hd*d_c..
            let w_uv = mat(&wkv[(hd * (dn + dv) + dn) * dc..][..dv * dc], dv, dc);
            let w_o = super::linear::strided(&wo[hd * dv..], c, dv, n_heads * dv);
            let mut out = super::linear::strided_mut(&mut o_abs[hd * dc..], c, dc, n_heads * dc);
            matmul(1.0, &w_o, &w_uv, 0.0, &mut out, Threads::One);
        }
        MlaAbsorbed { q_abs, o_abs }
    }
}
// ANCHOR_END: absorb

// ANCHOR: mla_cached
/// MLA for generation: `n` new normalised rows `h` at positions `pos0..pos0 + n` append
/// their `[c^KV; k^R]` to the layer's latent cache (rows of `d_c + d_h^R`) and attend over
/// every cached latent with the absorbed matrices; the attention's output, after `W^O`,
/// goes into `out` (`(n, C)`). Equal to [`mla_qkv_forward`] with chapter 4's attention and
/// `o_proj`, up to rounding.
#[allow(clippy::too_many_arguments)]
pub fn mla_forward_cached(
    p: &MlaParams,
    ab: &MlaAbsorbed,
    m: &MlaConfig,
    n_heads: usize,
    table: &RopeTable,
    a: &mut MlaActs,
    cache: &mut [f32],
    pos0: usize,
    h: &[f32],
    out: &mut [f32],
) {
    let (dn, dr, dc) = (m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank);
    let w = dc + dr;
    let n = a.ckv_rstd.len();
    // the latent and the rotated RoPE key of each new position, into the cache
    kv_latent(p, a, h, dc, dr);
    for i in 0..n {
        let row = &mut cache[(pos0 + i) * w..][..w];
        row[..dc].copy_from_slice(&a.ckv[i * dc..][..dc]);
        row[dc..].copy_from_slice(&a.kv_a[i * w + dc..][..dr]);
        table.rotate_one(&mut row[dc..], pos0 + i, false);
    }
    // the queries in the latent space: [W^UK_iᵀ q_i^C; q_i^R], the RoPE part rotated
    let q_in = query_input(p, a, h);
    let d_in = q_in.len() / n;
    let mut q = vec![0.0; n * n_heads * w];
    linear_forward(&mut q, q_in, &ab.q_abs, n, d_in, n_heads * w);
    for (i, row) in q.chunks_exact_mut(n_heads * w).enumerate() {
        for head in row.chunks_exact_mut(w) {
            table.rotate_one(&mut head[dc..], pos0 + i, false);
        }
    }
    // attention over the latents: scores q_i . [c; k^R] / sqrt(d_h + d_h^R), output the
    // weighted sum of the latents c (the values, before W^UV)
    let scale = 1.0 / ((dn + dr) as f32).sqrt();
    let mut ctx = vec![0.0; n * n_heads * dc];
    let mut scores = vec![0.0; pos0 + n];
    for i in 0..n {
        let seen = pos0 + i + 1;
        for hd in 0..n_heads {
            let qh = &q[(i * n_heads + hd) * w..][..w];
            for (j, s) in scores[..seen].iter_mut().enumerate() {
                *s = scale * super::linear::dot(qh, &cache[j * w..][..w]);
            }
            super::attention::causal_softmax(&mut scores[..seen], seen);
            let o = &mut ctx[(i * n_heads + hd) * dc..][..dc];
            for (j, &pj) in scores[..seen].iter().enumerate() {
                for (o, c) in o.iter_mut().zip(&cache[j * w..][..dc]) {
                    *o += pj * c;
                }
            }
        }
    }
    linear_forward(out, &ctx, &ab.o_abs, n, n_heads * dc, p.o_proj.d_out);
}
// ANCHOR_END: mla_cached

#[cfg(test)]
mod tests {
    use crate::gpt::generate::KvCache;
    use crate::gpt::{Activations, Gpt, GptConfig, Params};

    fn small(q_lora_rank: Option<usize>) -> GptConfig {
        let mut cfg = GptConfig::deepseek_tiny();
        (
            cfg.vocab_size,
            cfg.d_model,
            cfg.n_layers,
            cfg.d_ff,
            cfg.context,
        ) = (40, 32, 2, 48, 16);
        let m = cfg.mla.as_mut().unwrap();
        (
            m.q_lora_rank,
            m.kv_lora_rank,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
        ) = (q_lora_rank, 12, 8, 4, 6);
        cfg.moe.as_mut().unwrap().d_expert = 10;
        cfg
    }

    /// Weights large enough that attention is far from uniform: N(0, 0.3^2).
    fn model(cfg: &GptConfig) -> Gpt {
        let mut p = Params::init(cfg, 5);
        p.visit_mut(|spec, t| {
            if !spec.name.ends_with("norm.weight") {
                t.iter_mut().for_each(|x| *x *= 15.0);
            }
        });
        Gpt::new(cfg.clone(), p).unwrap()
    }

    // ANCHOR: absorbed_equals_expanded
    #[test]
    fn the_latent_cache_gives_the_uncached_logits() {
        for q in [Some(10), None] {
            let cfg = small(q);
            let m = model(&cfg);
            let ids: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 40).collect();
            let mut acts = Activations::new(&cfg, 1, ids.len());
            m.forward(&mut acts, &ids).unwrap();
            // a prompt of 5, then one token at a time, through the absorbed matrices
            let mut cache = KvCache::new(&cfg);
            let mut cached = m.forward_cached(&mut cache, &ids[..5]).unwrap();
            for &id in &ids[5..] {
                cached.extend(m.forward_cached(&mut cache, &[id]).unwrap());
            }
            let scale = acts.logits.iter().fold(0f32, |a, x| a.max(x.abs()));
            let diff = acts
                .logits
                .iter()
                .zip(&cached)
                .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
            assert!(diff < 1e-5 * scale.max(1.0), "{diff} of {scale}");
            // the cache holds d_c + d_h^R numbers per token and layer, no values
            let w = cfg.cache_floats_per_token();
            assert_eq!(w, 12 + 4);
            assert!(cache.k.iter().all(|k| k.len() == ids.len() * w));
            assert!(cache.v.iter().all(|v| v.is_empty()));
        }
    }
    // ANCHOR_END: absorbed_equals_expanded
}
