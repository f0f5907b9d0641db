//! One transformer block, forward and backward, shared by training and by generation.
//!
//! ```text
//! x_mid = x     + o_proj(attn(rope(q_proj n1), rope(k_proj n1), v_proj n1))   n1 = norm_1(x)
//! x_out = x_mid + down_proj(act(n2))                                          n2 = norm_2(x_mid)
//! ```
//!
//! Training and generation differ only in where the keys and values go ([`KvSink`]):
//! training keeps them with the block's activations and attends within the batch's own
//! positions; generation writes them into the cache's next rows and attends over every
//! cached position.

use super::attention::{
    attention_backward, attention_forward, attention_forward_cached, AttnShape,
};
use super::config::{GptConfig, Mlp, Norm};
use super::mla::{mla_forward_cached, mla_qkv_backward, mla_qkv_forward, MlaAbsorbed, MlaActs};
use super::mlp::{gelu_backward, gelu_forward, swiglu_backward, swiglu_forward};
use super::model::Gpt;
use super::moe::{moe_backward, moe_forward, MoeActs};
use super::norm::{layer_norm_backward, layer_norm_forward, rms_norm_backward, rms_norm_forward};
use super::params::{Attention, BlockParams, MlpParams, NormParams};
use super::residual::residual_forward;
use super::rope::{rope_backward, rope_forward};

/// What one block's forward keeps for its backward, for `n = B T` positions.
#[derive(Clone, Debug)]
pub struct BlockActs {
    /// The block's input normalised, `(n, C)`, with the row statistics (`mean` is
    /// LayerNorm's only).
    pub ln1: Vec<f32>,
    pub ln1_mean: Vec<f32>,
    pub ln1_rstd: Vec<f32>,
    /// Queries `(n, C)` and keys `(n, kv_dim)`, rotated when the model uses RoPE.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    /// Values, `(n, kv_dim)`.
    pub v: Vec<f32>,
    /// Attention probabilities, `(B, n_heads, T, T)`.
    pub att: Vec<f32>,
    /// Attention output before the output projection, `(n, C)`.
    pub att_y: Vec<f32>,
    /// The residual stream between attention and MLP, `(n, C)`.
    pub resid_mid: Vec<f32>,
    pub ln2: Vec<f32>,
    pub ln2_mean: Vec<f32>,
    pub ln2_rstd: Vec<f32>,
    /// MLP pre-activations `(n, d_ff)`: GELU's input, or SwiGLU's gate.
    pub mlp_a: Vec<f32>,
    /// SwiGLU's up projection `(n, d_ff)` (empty for GELU).
    pub mlp_b: Vec<f32>,
    /// MLP hidden after the nonlinearity, `(n, d_ff)`.
    pub mlp_h: Vec<f32>,
    /// MLA's latents (empty without MLA).
    pub mla: MlaActs,
    /// The MoE's routing and experts (empty in a dense block).
    pub moe: MoeActs,
}

impl BlockActs {
    /// Buffers for `b` sequences of `t` positions; `keep_kv`: room for the keys, values
    /// and probabilities (training), or not (generation writes keys and values into its
    /// cache and keeps no probabilities).
    pub fn new(cfg: &GptConfig, b: usize, t: usize, keep_kv: bool) -> Self {
        let n = b * t;
        let (c, f) = (cfg.d_model, cfg.d_ff);
        let (qw, kw, vw, yw) = cfg.attn_widths();
        let mean = if matches!(cfg.norm, Norm::LayerNorm { .. }) {
            n
        } else {
            0
        };
        let kept = |size: usize| vec![0.0; if keep_kv { size } else { 0 }];
        BlockActs {
            ln1: vec![0.0; n * c],
            ln1_mean: vec![0.0; mean],
            ln1_rstd: vec![0.0; n],
            q: vec![0.0; n * qw],
            k: kept(n * kw),
            v: kept(n * vw),
            att: kept(b * cfg.n_heads * t * t),
            att_y: vec![0.0; n * yw],
            resid_mid: vec![0.0; n * c],
            ln2: vec![0.0; n * c],
            ln2_mean: vec![0.0; mean],
            ln2_rstd: vec![0.0; n],
            mlp_a: vec![0.0; n * f],
            mlp_b: vec![0.0; if cfg.mlp == Mlp::SwiGlu { n * f } else { 0 }],
            mlp_h: vec![0.0; n * f],
            mla: cfg
                .mla
                .map_or_else(MlaActs::default, |m| MlaActs::new(&m, n)),
            moe: MoeActs::default(),
        }
    }
}

/// Where a block's keys and values go.
pub enum KvSink<'a> {
    /// Training: into the block's own activations; queries attend within their sequence.
    Keep,
    /// Generation: into rows `pos0..pos0 + n` of one layer's cache, `(pos0 + n, kv_dim)`
    /// or more; queries attend to every cached row up to their own.
    Cache {
        k: &'a mut [f32],
        v: &'a mut [f32],
        pos0: usize,
    },
    /// Generation with MLA: the latents `[c^KV; k^R]` into rows `pos0..pos0 + n` of `k`
    /// (`(pos0 + n, d_c + d_h^R)`), attended through the absorbed matrices.
    Latent {
        k: &'a mut [f32],
        absorbed: &'a MlaAbsorbed,
        pos0: usize,
    },
}

/// The forward's scratch: projection outputs before RoPE or the residual sum.
#[derive(Clone, Debug)]
pub struct FwdScratch {
    tmp_c: Vec<f32>,
    tmp_kv: Vec<f32>,
}

impl FwdScratch {
    pub fn new(cfg: &GptConfig, n: usize) -> Self {
        FwdScratch {
            tmp_c: vec![0.0; n * cfg.d_model],
            tmp_kv: vec![0.0; n * cfg.kv_dim()],
        }
    }
}

/// The backward's scratch, reused by every block.
#[derive(Clone, Debug)]
pub struct BwdScratch {
    pub(crate) d_ln: Vec<f32>,
    d_att_y: Vec<f32>,
    d_q: Vec<f32>,
    d_k: Vec<f32>,
    d_v: Vec<f32>,
    d_q_rot: Vec<f32>,
    d_k_rot: Vec<f32>,
    d_att: Vec<f32>,
    d_h: Vec<f32>,
    d_a: Vec<f32>,
    d_b: Vec<f32>,
    /// Where a frozen norm's weight and bias gradients go, never read.
    pub(crate) discard: (Vec<f32>, Vec<f32>),
}

impl BwdScratch {
    pub fn new(cfg: &GptConfig, b: usize, t: usize) -> Self {
        let n = b * t;
        let (c, f) = (cfg.d_model, cfg.d_ff);
        let (qw, kw, vw, yw) = cfg.attn_widths();
        BwdScratch {
            d_ln: vec![0.0; n * c],
            d_att_y: vec![0.0; n * yw],
            d_q: vec![0.0; n * qw],
            d_k: vec![0.0; n * kw],
            d_v: vec![0.0; n * vw],
            d_q_rot: vec![0.0; n * qw],
            d_k_rot: vec![0.0; n * kw],
            d_att: vec![0.0; b * t * t],
            d_h: vec![0.0; n * f],
            d_a: vec![0.0; n * f],
            d_b: vec![0.0; if cfg.mlp == Mlp::SwiGlu { n * f } else { 0 }],
            discard: (vec![0.0; c], vec![0.0; c]),
        }
    }
}

const CHECKED: &str = "Gpt::new and the backward check the parameters against the config";

/// `y = norm(x)` over rows of width `c`, keeping the row statistics.
pub(crate) fn norm_forward(
    kind: Norm,
    p: &NormParams,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    c: usize,
) {
    match (p, kind) {
        (NormParams::LayerNorm { weight, bias }, Norm::LayerNorm { eps }) => {
            layer_norm_forward(y, mean, rstd, x, weight, bias, c, eps)
        }
        (NormParams::RmsNorm { weight }, Norm::RmsNorm { eps }) => {
            rms_norm_forward(y, rstd, x, weight, c, eps)
        }
        _ => unreachable!("{CHECKED}"),
    }
}

/// Backward of [`norm_forward`]: adds the input gradient into `dx`, and the weight's
/// (and bias') into `g` where they are trainable.
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_backward(
    p: &NormParams,
    g: &mut NormParams,
    dx: &mut [f32],
    dy: &[f32],
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    c: usize,
    discard: &mut (Vec<f32>, Vec<f32>),
) {
    match (p, g) {
        (
            NormParams::LayerNorm { weight, bias },
            NormParams::LayerNorm {
                weight: dw,
                bias: db,
            },
        ) => {
            let dw = if weight.trainable {
                &mut dw.data
            } else {
                &mut discard.0
            };
            let db = if bias.trainable {
                &mut db.data
            } else {
                &mut discard.1
            };
            layer_norm_backward(dx, dw, db, dy, x, weight, mean, rstd, c)
        }
        (NormParams::RmsNorm { weight }, NormParams::RmsNorm { weight: dw }) => {
            let dw = if weight.trainable {
                &mut dw.data
            } else {
                &mut discard.0
            };
            rms_norm_backward(dx, dw, dy, x, weight, rstd, c)
        }
        _ => unreachable!("{CHECKED}"),
    }
}

impl Gpt {
    // ANCHOR: block_forward
    /// Block `blk` on the rows of `x` (`shape.b` sequences of `shape.t` positions), into
    /// `x_out`, keeping what the backward needs in `a`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_forward(
        &self,
        blk: &BlockParams,
        x: &[f32],
        x_out: &mut [f32],
        a: &mut BlockActs,
        s: &mut FwdScratch,
        kv: KvSink<'_>,
        shape: AttnShape,
    ) {
        let cfg = &self.cfg;
        let c = cfg.d_model;
        norm_forward(
            cfg.norm,
            &blk.attn_norm,
            &mut a.ln1,
            &mut a.ln1_mean,
            &mut a.ln1_rstd,
            x,
            c,
        );
        match &blk.attn {
            Attention::Mha(_) => self.mha_forward(blk, a, s, kv, shape),
            Attention::Mla(p) => {
                let m = cfg.mla.as_ref().expect(CHECKED);
                let table = self.rope.as_ref().expect(CHECKED);
                match kv {
                    KvSink::Keep => {
                        mla_qkv_forward(
                            p,
                            m,
                            cfg.n_heads,
                            table,
                            &mut a.mla,
                            &mut a.q,
                            &mut a.k,
                            &mut a.v,
                            &a.ln1,
                            shape.t,
                        );
                        attention_forward(&mut a.att_y, &mut a.att, &a.q, &a.k, &a.v, shape);
                        p.o_proj.forward(&mut s.tmp_c, &a.att_y);
                    }
                    KvSink::Latent { k, absorbed, pos0 } => mla_forward_cached(
                        p,
                        absorbed,
                        m,
                        cfg.n_heads,
                        table,
                        &mut a.mla,
                        k,
                        pos0,
                        &a.ln1,
                        &mut s.tmp_c,
                    ),
                    KvSink::Cache { .. } => unreachable!("an MLA model caches latents"),
                }
            }
        }
        residual_forward(&mut a.resid_mid, x, &s.tmp_c);
        // MLP half
        norm_forward(
            cfg.norm,
            &blk.mlp_norm,
            &mut a.ln2,
            &mut a.ln2_mean,
            &mut a.ln2_rstd,
            &a.resid_mid,
            c,
        );
        let down_proj = match &blk.mlp {
            MlpParams::Gelu { up_proj, down_proj } => {
                up_proj.forward(&mut a.mlp_a, &a.ln2);
                gelu_forward(&mut a.mlp_h, &a.mlp_a);
                down_proj
            }
            MlpParams::SwiGlu {
                gate_proj,
                up_proj,
                down_proj,
            } => {
                gate_proj.forward(&mut a.mlp_a, &a.ln2);
                up_proj.forward(&mut a.mlp_b, &a.ln2);
                swiglu_forward(&mut a.mlp_h, &a.mlp_a, &a.mlp_b);
                down_proj
            }
            MlpParams::Moe(p) => {
                let m = cfg.moe.as_ref().expect(CHECKED);
                moe_forward(p, m, &mut a.moe, &mut s.tmp_c, &a.ln2, shape.t);
                residual_forward(x_out, &a.resid_mid, &s.tmp_c);
                return;
            }
        };
        down_proj.forward(&mut s.tmp_c, &a.mlp_h);
        residual_forward(x_out, &a.resid_mid, &s.tmp_c);
    }
    // ANCHOR_END: block_forward

    /// Multi-head (grouped-query) attention's half of [`Gpt::block_forward`]: from the
    /// normalised input `a.ln1` to `o_proj`'s output in `s.tmp_c`.
    fn mha_forward(
        &self,
        blk: &BlockParams,
        a: &mut BlockActs,
        s: &mut FwdScratch,
        mut kv: KvSink<'_>,
        shape: AttnShape,
    ) {
        let cfg = &self.cfg;
        let Attention::Mha(attn) = &blk.attn else {
            unreachable!("{CHECKED}")
        };
        let (kvd, n) = (cfg.kv_dim(), shape.b * shape.t);
        let ln1 = &a.ln1;
        // this step's keys and values: the block's own buffers, or the cache's next rows
        let (k_new, v_new, pos0) = match &mut kv {
            KvSink::Keep => (&mut a.k[..], &mut a.v[..], 0),
            KvSink::Cache { k, v, pos0 } => {
                let rows = *pos0 * kvd..(*pos0 + n) * kvd;
                (&mut k[rows.clone()], &mut v[rows], *pos0)
            }
            KvSink::Latent { .. } => unreachable!("only MLA caches latents"),
        };
        match &self.rope {
            Some(table) => {
                attn.q_proj.forward(&mut s.tmp_c, ln1);
                rope_forward(&mut a.q, &s.tmp_c, table, pos0, shape.t, cfg.n_heads);
                attn.k_proj.forward(&mut s.tmp_kv, ln1);
                rope_forward(k_new, &s.tmp_kv, table, pos0, shape.t, cfg.n_kv_heads);
            }
            None => {
                attn.q_proj.forward(&mut a.q, ln1);
                attn.k_proj.forward(k_new, ln1);
            }
        }
        attn.v_proj.forward(v_new, ln1);
        match kv {
            KvSink::Keep => attention_forward(&mut a.att_y, &mut a.att, &a.q, &a.k, &a.v, shape),
            KvSink::Cache { k, v, pos0 } => {
                let seen = (pos0 + n) * kvd;
                attention_forward_cached(&mut a.att_y, &a.q, &k[..seen], &v[..seen], pos0, shape)
            }
            KvSink::Latent { .. } => unreachable!("only MLA caches latents"),
        }
        attn.o_proj.forward(&mut s.tmp_c, &a.att_y);
    }

    // ANCHOR: block_backward
    /// Backward of block `blk`, whose input was `x`: `d_resid` holds the gradient of the
    /// block's output and leaves holding the gradient of its input; the parameters'
    /// gradients are added into `g`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn block_backward(
        &self,
        blk: &BlockParams,
        x: &[f32],
        a: &BlockActs,
        g: &mut BlockParams,
        d_resid: &mut [f32],
        s: &mut BwdScratch,
        shape: AttnShape,
    ) {
        let cfg = &self.cfg;
        let c = cfg.d_model;
        let BwdScratch {
            d_ln,
            d_att_y,
            d_q,
            d_k,
            d_v,
            d_q_rot,
            d_k_rot,
            d_att,
            d_h,
            d_a,
            d_b,
            discard,
        } = s;

        // MLP half. d_resid is d x_out: it is the gradient of the MLP's output too.
        d_ln.fill(0.0);
        match (&blk.mlp, &mut g.mlp) {
            (
                MlpParams::Gelu { up_proj, down_proj },
                MlpParams::Gelu {
                    up_proj: d_up,
                    down_proj: d_down,
                },
            ) => {
                d_h.fill(0.0);
                d_a.fill(0.0);
                down_proj.backward(d_h, d_down, d_resid, &a.mlp_h);
                gelu_backward(d_a, d_h, &a.mlp_a);
                up_proj.backward(d_ln, d_up, d_a, &a.ln2);
            }
            (
                MlpParams::SwiGlu {
                    gate_proj,
                    up_proj,
                    down_proj,
                },
                MlpParams::SwiGlu {
                    gate_proj: d_gate,
                    up_proj: d_up,
                    down_proj: d_down,
                },
            ) => {
                d_h.fill(0.0);
                d_a.fill(0.0);
                down_proj.backward(d_h, d_down, d_resid, &a.mlp_h);
                d_b.fill(0.0);
                swiglu_backward(d_a, d_b, d_h, &a.mlp_a, &a.mlp_b);
                gate_proj.backward(d_ln, d_gate, d_a, &a.ln2);
                up_proj.backward(d_ln, d_up, d_b, &a.ln2);
            }
            (MlpParams::Moe(p), MlpParams::Moe(dp)) => {
                let m = cfg.moe.as_ref().expect(CHECKED);
                moe_backward(p, dp, m, &a.moe, d_ln, d_resid, &a.ln2, shape.t);
            }
            _ => unreachable!("{CHECKED}"),
        }
        // the norm adds its input gradient: d_resid becomes d x_mid
        norm_backward(
            &blk.mlp_norm,
            &mut g.mlp_norm,
            d_resid,
            d_ln,
            &a.resid_mid,
            &a.ln2_mean,
            &a.ln2_rstd,
            c,
            discard,
        );

        // attention half, the same way: d_resid is d x_mid, the gradient of o_proj's output
        d_att_y.fill(0.0);
        blk.attn
            .o_proj()
            .backward(d_att_y, g.attn.o_proj_mut(), d_resid, &a.att_y);
        d_q_rot.fill(0.0);
        d_k_rot.fill(0.0);
        d_v.fill(0.0);
        attention_backward(
            d_q_rot, d_k_rot, d_v, d_att, d_att_y, &a.att, &a.q, &a.k, &a.v, shape,
        );
        d_ln.fill(0.0);
        match (&blk.attn, &mut g.attn) {
            (Attention::Mha(attn), Attention::Mha(d_attn)) => {
                let (d_q, d_k) = match &self.rope {
                    Some(table) => {
                        d_q.fill(0.0);
                        d_k.fill(0.0);
                        rope_backward(d_q, d_q_rot, table, 0, shape.t, cfg.n_heads);
                        rope_backward(d_k, d_k_rot, table, 0, shape.t, cfg.n_kv_heads);
                        (&d_q[..], &d_k[..])
                    }
                    None => (&d_q_rot[..], &d_k_rot[..]),
                };
                attn.q_proj.backward(d_ln, &mut d_attn.q_proj, d_q, &a.ln1);
                attn.k_proj.backward(d_ln, &mut d_attn.k_proj, d_k, &a.ln1);
                attn.v_proj.backward(d_ln, &mut d_attn.v_proj, d_v, &a.ln1);
            }
            (Attention::Mla(p), Attention::Mla(dp)) => {
                let m = cfg.mla.as_ref().expect(CHECKED);
                let table = self.rope.as_ref().expect(CHECKED);
                mla_qkv_backward(
                    p,
                    dp,
                    m,
                    cfg.n_heads,
                    table,
                    &a.mla,
                    d_ln,
                    d_q_rot,
                    d_k_rot,
                    d_v,
                    &a.ln1,
                    shape.t,
                );
            }
            _ => unreachable!("{CHECKED}"),
        }
        norm_backward(
            &blk.attn_norm,
            &mut g.attn_norm,
            d_resid,
            d_ln,
            x,
            &a.ln1_mean,
            &a.ln1_rstd,
            c,
            discard,
        );
    }
    // ANCHOR_END: block_backward
}
