//! The model's parameters as the model is built: a block holds its two norms, its four
//! attention projections and its MLP; every projection is a [`Linear`] that owns its
//! weight; every tensor knows its shape and whether training changes it.
//!
//! One walk over the structure, [`Params::visit`], names each tensor (Hugging Face Llama's
//! names) and gives its shape, its initialisation rule, whether AdamW decays it and whether
//! it is trainable. Everything that treats the parameters as a list derives from it: the
//! names and shapes of a checkpoint, the initialisation, averaging, clipping and AdamW.
//! A gradient is a `Params` of the same structure whose frozen tensors hold no values.

use super::config::{GptConfig, MlaConfig, Mlp, MoeConfig, Norm, Positions};
use super::linear::{Linear, Weight};
use super::lora::{kaiming_bound, LoraAdapter};
use crate::{Error, Result};
use ndarray_rand::rand::{Rng as _, SeedableRng};
use ndarray_rand::rand_distr::StandardNormal;
use rand_chacha::ChaCha8Rng;
use std::ops::{Deref, DerefMut};

/// A parameter tensor: its shape, its values (row-major), and whether training changes it.
///
/// It reads as a slice of its values (`t[i]`, `&t[..]`, `t.iter()`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    /// `false`: frozen. Its gradient holds no values and AdamW keeps no moments for it.
    pub trainable: bool,
}

impl Tensor {
    /// A trainable tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
            trainable: true,
        }
    }

    /// A trainable tensor over `data`; errors if the shape does not hold that many values.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let want: usize = shape.iter().product();
        if data.len() != want {
            return Err(Error::InvalidArgument(format!(
                "a tensor of shape {shape:?} holds {want} values, not {}",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
            trainable: true,
        })
    }

    /// The gradient buffer for this tensor: zeros of its shape if it is trainable,
    /// no values at all if it is frozen.
    pub fn grad(&self) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: if self.trainable {
                vec![0.0; self.data.len()]
            } else {
                Vec::new()
            },
            trainable: self.trainable,
        }
    }
}

impl Deref for Tensor {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.data
    }
}

impl DerefMut for Tensor {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

/// How a tensor starts: GPT-2's initialisation, which Llama keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Norm weights: 1, so that a norm starts as a pure normalisation.
    Ones,
    /// Norm biases.
    Zeros,
    /// Matrices and embeddings: N(0, std^2).
    Normal { std: f32 },
    /// LoRA's `A`: U(-bound, bound) (PEFT's Kaiming-uniform).
    Uniform { bound: f32 },
}

/// A parameter tensor's name (Hugging Face Llama's), shape, and how it is treated.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Weight decay applies to matrices and embeddings, not to norm weights and biases.
    pub decay: bool,
    pub init: Init,
    pub trainable: bool,
}

impl ParamSpec {
    /// Number of values, the product of the shape.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A norm's parameters. A LayerNorm always has its bias, an RMSNorm never has one.
#[derive(Clone, Debug, PartialEq)]
pub enum NormParams {
    LayerNorm { weight: Tensor, bias: Tensor },
    RmsNorm { weight: Tensor },
}

impl NormParams {
    /// The norm `kind` over rows of width `c`, weight 0 (and bias 0).
    pub fn zeros(kind: Norm, c: usize) -> Self {
        match kind {
            Norm::LayerNorm { .. } => NormParams::LayerNorm {
                weight: Tensor::zeros(&[c]),
                bias: Tensor::zeros(&[c]),
            },
            Norm::RmsNorm { .. } => NormParams::RmsNorm {
                weight: Tensor::zeros(&[c]),
            },
        }
    }

    /// The per-channel scale `g` that both norms have.
    pub fn weight(&self) -> &Tensor {
        match self {
            NormParams::LayerNorm { weight, .. } | NormParams::RmsNorm { weight } => weight,
        }
    }

    /// The scale, to change.
    pub fn weight_mut(&mut self) -> &mut Tensor {
        match self {
            NormParams::LayerNorm { weight, .. } | NormParams::RmsNorm { weight } => weight,
        }
    }
}

/// Attention's four projections, `(out, in)`: queries `(C, C)`, keys and values
/// `(kv_dim, C)`, output `(C, C)`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnParams {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
}

/// Multi-head latent attention's projections, `(out, in)` (Hugging Face DeepSeek-V3's
/// names): the query path, `W^DKV` and `W^KR` as one matrix, the latent's norm, `W^UK`
/// and `W^UV` as one matrix, and the output.
#[derive(Clone, Debug, PartialEq)]
pub struct MlaParams {
    pub q: MlaQuery,
    /// `(d_c + d_h^R, C)`: the latent `c_kv` (first `d_c` rows) and the shared RoPE key.
    pub kv_a_proj_with_mqa: Linear,
    /// RMSNorm over `c_kv` (eps fixed at 1e-6, as in transformers).
    pub kv_a_layernorm: NormParams,
    /// `(H (d_h + d_v), d_c)`: per head, the key's `k^C` rows (`W^UK`), then the value's (`W^UV`).
    pub kv_b_proj: Linear,
    /// `(C, H d_v)`.
    pub o_proj: Linear,
}

/// Where MLA's queries come from.
// one per block, inside an already boxed MlaParams: boxing the larger variant would buy
// only an indirection
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum MlaQuery {
    /// `q = W^Q h`, `(H (d_h + d_h^R), C)` (`q_lora_rank` null).
    Direct { q_proj: Linear },
    /// `c_q = RMSNorm(W^DQ h)`, `q = W^UQ c_q` (with `W^QR` in the same rows).
    Latent {
        /// `(d_c', C)`
        q_a_proj: Linear,
        q_a_layernorm: NormParams,
        /// `(H (d_h + d_h^R), d_c')`
        q_b_proj: Linear,
    },
}

/// A block's attention: multi-head (grouped-query) or latent.
// the latent variant is boxed (it is the larger); the multi-head one, which every chapter
// before 9 reads, is not, so that its fields stay one step away
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Attention {
    Mha(AttnParams),
    Mla(Box<MlaParams>),
}

impl Attention {
    /// The multi-head projections, if this is multi-head attention.
    pub fn mha(&self) -> Option<&AttnParams> {
        match self {
            Attention::Mha(a) => Some(a),
            Attention::Mla(_) => None,
        }
    }
    /// [`Attention::mha`], to change.
    pub fn mha_mut(&mut self) -> Option<&mut AttnParams> {
        match self {
            Attention::Mha(a) => Some(a),
            Attention::Mla(_) => None,
        }
    }
    /// The projection back to the residual stream, which both kinds end with.
    pub fn o_proj(&self) -> &Linear {
        match self {
            Attention::Mha(a) => &a.o_proj,
            Attention::Mla(m) => &m.o_proj,
        }
    }
    /// [`Attention::o_proj`], to change.
    pub fn o_proj_mut(&mut self) -> &mut Linear {
        match self {
            Attention::Mha(a) => &mut a.o_proj,
            Attention::Mla(m) => &mut m.o_proj,
        }
    }
}

/// One SwiGLU expert, `down(silu(gate x) * up x)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Expert {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Expert {
    fn zeros(c: usize, f: usize) -> Self {
        Expert {
            gate_proj: Linear::zeros(c, f),
            up_proj: Linear::zeros(c, f),
            down_proj: Linear::zeros(f, c),
        }
    }
}

/// DeepSeekMoE's parameters: the router and its balancing bias, the routed experts and
/// the shared one.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeParams {
    /// `e_i`, one row per routed expert, `(N_r, C)` (`mlp.gate.weight`).
    pub router: Tensor,
    /// `b_i`, `(N_r,)` (`mlp.gate.e_score_correction_bias`): moved by the balancing rule,
    /// never by a gradient, so always frozen.
    pub bias: Tensor,
    pub experts: Vec<Expert>,
    /// The `N_s` shared experts as one SwiGLU of width `N_s d_expert`.
    pub shared: Option<Expert>,
}

impl MoeParams {
    /// All zeros for `m` over rows of width `c`; the bias frozen.
    pub fn zeros(m: &MoeConfig, c: usize) -> Self {
        let mut bias = Tensor::zeros(&[m.n_routed]);
        bias.trainable = false;
        MoeParams {
            router: Tensor::zeros(&[m.n_routed, c]),
            bias,
            experts: (0..m.n_routed)
                .map(|_| Expert::zeros(c, m.d_expert))
                .collect(),
            shared: (m.n_shared > 0).then(|| Expert::zeros(c, m.n_shared * m.d_expert)),
        }
    }
}

impl MlaParams {
    /// All zeros for `m` in a model of width `c` with `h` heads.
    pub fn zeros(m: &MlaConfig, c: usize, h: usize) -> Self {
        let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
        let rms = |w| NormParams::zeros(Norm::RmsNorm { eps: MLA_NORM_EPS }, w);
        MlaParams {
            q: match m.q_lora_rank {
                None => MlaQuery::Direct {
                    q_proj: Linear::zeros(c, h * qk),
                },
                Some(r) => MlaQuery::Latent {
                    q_a_proj: Linear::zeros(c, r),
                    q_a_layernorm: rms(r),
                    q_b_proj: Linear::zeros(r, h * qk),
                },
            },
            kv_a_proj_with_mqa: Linear::zeros(c, m.kv_lora_rank + m.qk_rope_head_dim),
            kv_a_layernorm: rms(m.kv_lora_rank),
            kv_b_proj: Linear::zeros(m.kv_lora_rank, h * (m.qk_nope_head_dim + m.v_head_dim)),
            o_proj: Linear::zeros(h * m.v_head_dim, c),
        }
    }
}

/// Whether the tensor of that name is a buffer that no gradient moves: DeepSeekMoE's
/// balancing bias. It stays frozen whatever [`Params::set_trainable`] is asked.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("mlp.gate.e_score_correction_bias")
}

/// The eps of MLA's two latent norms: transformers gives them the class default 1e-6,
/// whatever `rms_norm_eps` says.
pub const MLA_NORM_EPS: f32 = 1e-6;

/// The MLP: GPT-2's `down(gelu(up x))` or Llama's `down(silu(gate x) * up x)`, or
/// DeepSeekMoE.
// SwiGLU's third projection makes its variant larger; one MLP per block, so boxing
// would buy nothing but an indirection in every block's code.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum MlpParams {
    /// `up (d_ff, C)`, `down (C, d_ff)`.
    Gelu {
        up_proj: Linear,
        down_proj: Linear,
    },
    /// `gate (d_ff, C)`, `up (d_ff, C)`, `down (C, d_ff)`.
    SwiGlu {
        gate_proj: Linear,
        up_proj: Linear,
        down_proj: Linear,
    },
    Moe(Box<MoeParams>),
}

impl MlpParams {
    /// The projection back to the residual stream of a dense MLP (an MoE has one per
    /// expert: `None`).
    pub fn down_proj(&self) -> Option<&Linear> {
        match self {
            MlpParams::Gelu { down_proj, .. } | MlpParams::SwiGlu { down_proj, .. } => {
                Some(down_proj)
            }
            MlpParams::Moe(_) => None,
        }
    }

    /// The down projection, to change.
    pub fn down_proj_mut(&mut self) -> Option<&mut Linear> {
        match self {
            MlpParams::Gelu { down_proj, .. } | MlpParams::SwiGlu { down_proj, .. } => {
                Some(down_proj)
            }
            MlpParams::Moe(_) => None,
        }
    }
}

/// The multi-token-prediction depth: `h' = eh_proj [enorm(Emb(t_{i+1})); hnorm(h_i)]`,
/// one block, a norm, and the main model's head (Hugging Face names, at layer index `L`
/// as in DeepSeek-V3's checkpoint).
#[derive(Clone, Debug, PartialEq)]
pub struct MtpParams {
    pub enorm: NormParams,
    pub hnorm: NormParams,
    /// `(C, 2C)`
    pub eh_proj: Linear,
    pub block: BlockParams,
    /// `shared_head.norm`, before the shared head.
    pub norm: NormParams,
}

/// One transformer block's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockParams {
    pub attn_norm: NormParams,
    pub attn: Attention,
    pub mlp_norm: NormParams,
    pub mlp: MlpParams,
}

impl BlockParams {
    /// All-zero parameters of block `l` of `cfg` (its kind of attention and MLP).
    pub fn zeros(cfg: &GptConfig, l: usize) -> Self {
        let (c, f, kv) = (cfg.d_model, cfg.d_ff, cfg.kv_dim());
        BlockParams {
            attn_norm: NormParams::zeros(cfg.norm, c),
            attn: match &cfg.mla {
                None => Attention::Mha(AttnParams {
                    q_proj: Linear::zeros(c, c),
                    k_proj: Linear::zeros(c, kv),
                    v_proj: Linear::zeros(c, kv),
                    o_proj: Linear::zeros(c, c),
                }),
                Some(m) => Attention::Mla(Box::new(MlaParams::zeros(m, c, cfg.n_heads))),
            },
            mlp_norm: NormParams::zeros(cfg.norm, c),
            mlp: match (cfg.mlp, &cfg.moe) {
                (_, Some(m)) if cfg.is_moe_layer(l) => {
                    MlpParams::Moe(Box::new(MoeParams::zeros(m, c)))
                }
                (Mlp::Gelu, _) => MlpParams::Gelu {
                    up_proj: Linear::zeros(c, f),
                    down_proj: Linear::zeros(f, c),
                },
                (Mlp::SwiGlu, _) => MlpParams::SwiGlu {
                    gate_proj: Linear::zeros(c, f),
                    up_proj: Linear::zeros(c, f),
                    down_proj: Linear::zeros(f, c),
                },
            },
        }
    }
}

/// All the parameters (and, in the same structure, all the gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `(V, C)`
    pub tok_emb: Tensor,
    /// `(context, C)`, learned positions only.
    pub pos_emb: Option<Tensor>,
    pub blocks: Vec<BlockParams>,
    pub final_norm: NormParams,
    /// `(V, C)`; `None` when the head is tied to `tok_emb`.
    pub lm_head: Option<Linear>,
    /// The multi-token-prediction depth, when the config has one.
    pub mtp: Option<Box<MtpParams>>,
}

/// Visits every tensor of a `Params`, by shared or by mutable reference: the one walk that
/// names, shapes and classifies the tensors. A macro so that the two walks are one text.
macro_rules! walk {
    ($params:expr, $f:expr, $lt:lifetime, $($m:tt)?) => {{
        let p = $params;
        let f = $f;
        let resid_std = 0.02 / (2.0 * p.blocks.len().max(1) as f32).sqrt();
        let normal = Init::Normal { std: 0.02 };
        let mut tensor = |name: String, decay: bool, init: Init, t: & $lt $($m)? Tensor| {
            let spec = ParamSpec {
                name,
                shape: t.shape.clone(),
                decay,
                init,
                trainable: t.trainable,
            };
            f(spec, t)
        };
        macro_rules! norm {
            ($name:expr, $norm:expr) => {
                match $norm {
                    NormParams::LayerNorm { weight, bias } => {
                        tensor(format!("{}.weight", $name), false, Init::Ones, weight);
                        tensor(format!("{}.bias", $name), false, Init::Zeros, bias);
                    }
                    NormParams::RmsNorm { weight } => {
                        tensor(format!("{}.weight", $name), false, Init::Ones, weight)
                    }
                }
            };
        }
        macro_rules! linear {
            ($name:expr, $linear:expr, $init:expr) => {{
                let Linear { weight, adapter, .. } = & $($m)? $linear;
                match weight {
                    Weight::F32(w) => tensor(format!("{}.weight", $name), true, $init, w),
                    // not an f32 tensor: skipped (see Params::visit)
                    Weight::Quant(_) => {}
                }
                if let Some(LoraAdapter { a, b, .. }) = adapter {
                    let bound = kaiming_bound(a.shape[1]);
                    tensor(format!("{}.lora_A.weight", $name), true, Init::Uniform { bound }, a);
                    tensor(format!("{}.lora_B.weight", $name), true, Init::Zeros, b);
                }
            }};
        }
        // ANCHOR: names
        tensor("model.embed_tokens.weight".into(), true, normal, & $($m)? p.tok_emb);
        if let Some(wpe) = & $($m)? p.pos_emb {
            tensor("model.embed_positions.weight".into(), true, normal, wpe);
        }
        macro_rules! block {
            ($at:expr, $b:expr) => {{
                let at = $at;
                let b = $b;
                norm!(at("input_layernorm"), & $($m)? b.attn_norm);
                match & $($m)? b.attn {
                    Attention::Mha(a) => {
                        linear!(at("self_attn.q_proj"), a.q_proj, normal);
                        linear!(at("self_attn.k_proj"), a.k_proj, normal);
                        linear!(at("self_attn.v_proj"), a.v_proj, normal);
                        // the two projections that write into the residual stream start smaller
                        linear!(at("self_attn.o_proj"), a.o_proj, Init::Normal { std: resid_std });
                    }
                    Attention::Mla(a) => {
                        match & $($m)? a.q {
                            MlaQuery::Direct { q_proj } => linear!(at("self_attn.q_proj"), *q_proj, normal),
                            MlaQuery::Latent { q_a_proj, q_a_layernorm, q_b_proj } => {
                                linear!(at("self_attn.q_a_proj"), *q_a_proj, normal);
                                norm!(at("self_attn.q_a_layernorm"), q_a_layernorm);
                                linear!(at("self_attn.q_b_proj"), *q_b_proj, normal);
                            }
                        }
                        linear!(at("self_attn.kv_a_proj_with_mqa"), a.kv_a_proj_with_mqa, normal);
                        norm!(at("self_attn.kv_a_layernorm"), & $($m)? a.kv_a_layernorm);
                        linear!(at("self_attn.kv_b_proj"), a.kv_b_proj, normal);
                        linear!(at("self_attn.o_proj"), a.o_proj, Init::Normal { std: resid_std });
                    }
                }
                norm!(at("post_attention_layernorm"), & $($m)? b.mlp_norm);
                match & $($m)? b.mlp {
                    MlpParams::Gelu { up_proj, down_proj } => {
                        linear!(at("mlp.up_proj"), *up_proj, normal);
                        linear!(at("mlp.down_proj"), *down_proj, Init::Normal { std: resid_std });
                    }
                    MlpParams::SwiGlu { gate_proj, up_proj, down_proj } => {
                        linear!(at("mlp.gate_proj"), *gate_proj, normal);
                        linear!(at("mlp.up_proj"), *up_proj, normal);
                        linear!(at("mlp.down_proj"), *down_proj, Init::Normal { std: resid_std });
                    }
                    MlpParams::Moe(moe) => {
                        tensor(at("mlp.gate.weight"), true, normal, & $($m)? moe.router);
                        tensor(at("mlp.gate.e_score_correction_bias"), false, Init::Zeros, & $($m)? moe.bias);
                        for (e, x) in (& $($m)? moe.experts).into_iter().enumerate() {
                            linear!(at(&format!("mlp.experts.{e}.gate_proj")), x.gate_proj, normal);
                            linear!(at(&format!("mlp.experts.{e}.up_proj")), x.up_proj, normal);
                            linear!(at(&format!("mlp.experts.{e}.down_proj")), x.down_proj, Init::Normal { std: resid_std });
                        }
                        if let Some(x) = & $($m)? moe.shared {
                            linear!(at("mlp.shared_experts.gate_proj"), x.gate_proj, normal);
                            linear!(at("mlp.shared_experts.up_proj"), x.up_proj, normal);
                            linear!(at("mlp.shared_experts.down_proj"), x.down_proj, Init::Normal { std: resid_std });
                        }
                    }
                }
            }};
        }
        let n_layers = p.blocks.len();
        for (l, b) in (& $($m)? p.blocks).into_iter().enumerate() {
            block!(|s: &str| format!("model.layers.{l}.{s}"), b);
        }
        norm!("model.norm", & $($m)? p.final_norm);
        if let Some(head) = & $($m)? p.lm_head {
            linear!("lm_head", *head, normal);
        }
        // DeepSeek-V3 stores its MTP depth as the layer after the last
        if let Some(mtp) = & $($m)? p.mtp {
            let at = |s: &str| format!("model.layers.{n_layers}.{s}");
            norm!(at("enorm"), & $($m)? mtp.enorm);
            norm!(at("hnorm"), & $($m)? mtp.hnorm);
            linear!(at("eh_proj"), mtp.eh_proj, normal);
            block!(at, & $($m)? mtp.block);
            norm!(at("shared_head.norm"), & $($m)? mtp.norm);
        }
        // ANCHOR_END: names
    }};
}

/// The projections in order, with their names: written once for [`Params::visit_linears`]
/// and [`Params::visit_linears_mut`] (`mut` or not, as `walk!` does for tensors).
macro_rules! walk_linears {
    ($params:expr, $f:ident $(, $m:tt)?) => {
        macro_rules! block_linears {
            ($at:expr, $b:expr) => {{
                let at = $at;
                let b = $b;
                match & $($m)? b.attn {
                    Attention::Mha(a) => {
                        $f(&at("self_attn.q_proj"), & $($m)? a.q_proj);
                        $f(&at("self_attn.k_proj"), & $($m)? a.k_proj);
                        $f(&at("self_attn.v_proj"), & $($m)? a.v_proj);
                        $f(&at("self_attn.o_proj"), & $($m)? a.o_proj);
                    }
                    Attention::Mla(a) => {
                        match & $($m)? a.q {
                            MlaQuery::Direct { q_proj } => $f(&at("self_attn.q_proj"), q_proj),
                            MlaQuery::Latent { q_a_proj, q_b_proj, .. } => {
                                $f(&at("self_attn.q_a_proj"), q_a_proj);
                                $f(&at("self_attn.q_b_proj"), q_b_proj);
                            }
                        }
                        $f(&at("self_attn.kv_a_proj_with_mqa"), & $($m)? a.kv_a_proj_with_mqa);
                        $f(&at("self_attn.kv_b_proj"), & $($m)? a.kv_b_proj);
                        $f(&at("self_attn.o_proj"), & $($m)? a.o_proj);
                    }
                }
                match & $($m)? b.mlp {
                    MlpParams::Gelu { up_proj, down_proj } => {
                        $f(&at("mlp.up_proj"), up_proj);
                        $f(&at("mlp.down_proj"), down_proj);
                    }
                    MlpParams::SwiGlu {
                        gate_proj,
                        up_proj,
                        down_proj,
                    } => {
                        $f(&at("mlp.gate_proj"), gate_proj);
                        $f(&at("mlp.up_proj"), up_proj);
                        $f(&at("mlp.down_proj"), down_proj);
                    }
                    MlpParams::Moe(moe) => {
                        for (e, x) in (& $($m)? moe.experts).into_iter().enumerate() {
                            $f(&at(&format!("mlp.experts.{e}.gate_proj")), & $($m)? x.gate_proj);
                            $f(&at(&format!("mlp.experts.{e}.up_proj")), & $($m)? x.up_proj);
                            $f(&at(&format!("mlp.experts.{e}.down_proj")), & $($m)? x.down_proj);
                        }
                        if let Some(x) = & $($m)? moe.shared {
                            $f(&at("mlp.shared_experts.gate_proj"), & $($m)? x.gate_proj);
                            $f(&at("mlp.shared_experts.up_proj"), & $($m)? x.up_proj);
                            $f(&at("mlp.shared_experts.down_proj"), & $($m)? x.down_proj);
                        }
                    }
                }
            }};
        }
        let n_layers = $params.blocks.len();
        for (l, b) in (& $($m)? $params.blocks).into_iter().enumerate() {
            block_linears!(|s: &str| format!("model.layers.{l}.{s}"), b);
        }
        if let Some(head) = & $($m)? $params.lm_head {
            $f("lm_head", head);
        }
        if let Some(mtp) = & $($m)? $params.mtp {
            let at = |s: &str| format!("model.layers.{n_layers}.{s}");
            $f(&at("eh_proj"), & $($m)? mtp.eh_proj);
            block_linears!(at, & $($m)? mtp.block);
        }
    };
}

impl Params {
    /// All-zero parameters (or gradients) for `cfg`, every tensor trainable.
    pub fn zeros(cfg: &GptConfig) -> Self {
        let (c, v) = (cfg.d_model, cfg.vocab_size);
        Params {
            tok_emb: Tensor::zeros(&[v, c]),
            pos_emb: (cfg.positions == Positions::Learned)
                .then(|| Tensor::zeros(&[cfg.context, c])),
            blocks: (0..cfg.n_layers)
                .map(|l| BlockParams::zeros(cfg, l))
                .collect(),
            final_norm: NormParams::zeros(cfg.norm, c),
            lm_head: (!cfg.tied_head).then(|| Linear::zeros(c, v)),
            mtp: cfg.mtp.map(|_| {
                Box::new(MtpParams {
                    enorm: NormParams::zeros(cfg.norm, c),
                    hnorm: NormParams::zeros(cfg.norm, c),
                    eh_proj: Linear::zeros(2 * c, c),
                    // the depth's block is built like the last block of the model
                    block: BlockParams::zeros(cfg, cfg.n_layers.saturating_sub(1)),
                    norm: NormParams::zeros(cfg.norm, c),
                })
            }),
        }
    }

    // ANCHOR: visit
    /// Calls `f` on every tensor, in one fixed order, with its [`ParamSpec`].
    ///
    /// f32 tensors only: a quantized weight ([`Weight::Quant`], chapter 6) is skipped, so a
    /// quantized model cannot be trained or saved as f32 ([`Params::check_f32`] says so
    /// where that is attempted).
    pub fn visit<'a>(&'a self, mut f: impl FnMut(ParamSpec, &'a Tensor)) {
        walk!(self, &mut f, 'a,)
    }

    /// [`Params::visit`], with each tensor to change.
    pub fn visit_mut<'a>(&'a mut self, mut f: impl FnMut(ParamSpec, &'a mut Tensor)) {
        walk!(self, &mut f, 'a, mut)
    }
    // ANCHOR_END: visit

    /// The specs of this model's tensors, in [`Params::visit`] order.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        self.visit(|s, _| out.push(s));
        out
    }

    /// The specs of every tensor of a new model `cfg` describes (all trainable).
    pub fn specs(cfg: &GptConfig) -> Vec<ParamSpec> {
        Params::zeros(cfg).param_specs()
    }

    /// The tensors' values in [`Params::visit`] order.
    pub fn tensors(&self) -> Vec<&[f32]> {
        let mut out = Vec::new();
        self.visit(|_, t| out.push(&t.data[..]));
        out
    }

    /// The tensors' values in [`Params::visit`] order, to change.
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out = Vec::new();
        self.visit_mut(|_, t| out.push(&mut t.data[..]));
        out
    }

    // ANCHOR: init
    /// GPT-2's initialisation, seeded, by each tensor's [`Init`] rule: weights from
    /// N(0, 0.02^2), the two projections that write into the residual stream (`o_proj`,
    /// `down_proj`) from N(0, (0.02 / sqrt(2 L))^2) so that the stream's variance does not
    /// grow with depth, norm weights 1, biases 0.
    pub fn init(cfg: &GptConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Params::zeros(cfg);
        p.visit_mut(|spec, t| match spec.init {
            Init::Ones => t.fill(1.0),
            Init::Zeros => t.fill(0.0),
            Init::Normal { std } => t
                .iter_mut()
                .for_each(|x| *x = std * rng.sample::<f32, _>(StandardNormal)),
            Init::Uniform { bound } => t.iter_mut().for_each(|x| *x = rng.gen_range(-bound..bound)),
        });
        p
    }
    // ANCHOR_END: init

    /// Calls `f` on every projection with its name (`model.layers.0.self_attn.q_proj`).
    pub fn visit_linears(&self, mut f: impl FnMut(&str, &Linear)) {
        walk_linears!(self, f);
    }

    /// [`Params::visit_linears`], each projection given to change.
    pub fn visit_linears_mut(&mut self, mut f: impl FnMut(&str, &mut Linear)) {
        walk_linears!(self, f, mut);
    }

    /// Sets every value to 0 (gradients, before a backward).
    pub fn zero(&mut self) {
        self.visit_mut(|_, t| t.fill(0.0));
    }

    // ANCHOR: trainable
    /// Freezes every tensor whose name `keep` rejects, and makes the others trainable.
    /// Returns how many values stay trainable.
    pub fn set_trainable(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let mut n = 0;
        self.visit_mut(|spec, t| {
            t.trainable = keep(&spec.name) && !is_buffer(&spec.name);
            n += if t.trainable { t.len() } else { 0 };
        });
        n
    }

    /// The gradient buffers for these parameters: zeros for each trainable tensor, no
    /// values for a frozen one.
    pub fn grads(&self) -> Params {
        let mut g = self.clone_structure();
        let mut src = Vec::new();
        self.visit(|_, t| src.push(t));
        let mut i = 0;
        g.visit_mut(|_, t| {
            *t = src[i].grad();
            i += 1;
        });
        g
    }
    // ANCHOR_END: trainable

    /// A copy of the structure with empty tensors (the values are filled by the caller).
    fn clone_structure(&self) -> Params {
        let mut p = self.clone();
        p.visit_mut(|_, t| t.data = Vec::new());
        p
    }

    /// Checks that the tensors have the names and sizes `cfg` asks for.
    pub fn check(&self, cfg: &GptConfig) -> Result<()> {
        self.check_shapes(cfg, false)
    }

    /// [`Params::check`]; with `embedding_elsewhere`, `tok_emb` may hold no values (its
    /// shape still checked): the model looks its rows up in a quantized table
    /// ([`super::Gpt::new_with_quantized_embedding`]).
    pub(crate) fn check_shapes(&self, cfg: &GptConfig, embedding_elsewhere: bool) -> Result<()> {
        let mut want = Params::specs(cfg);
        // quantized weights are not f32 tensors: check their shapes apart
        let quantized = self.quantized_shapes();
        for (name, shape) in &quantized {
            match want.iter().find(|w| &w.name == name) {
                Some(w) if &w.shape == shape => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                    "the quantized weight {name} of shape {shape:?} does not fit the model config"
                )))
                }
            }
        }
        want.retain(|w| !quantized.iter().any(|(n, _)| n == &w.name));
        let have = self.param_specs();
        let names = |s: &[ParamSpec]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if names(&want) != names(&have) {
            let missing = want.iter().find(|w| !have.iter().any(|h| h.name == w.name));
            let extra = have.iter().find(|h| !want.iter().any(|w| w.name == h.name));
            return Err(Error::InvalidArgument(format!(
                "the parameters do not fit the model config: {}",
                match (missing, extra) {
                    (Some(m), _) => format!("{} is missing", m.name),
                    (None, Some(e)) => format!("{} is not part of the model", e.name),
                    (None, None) => "the tensors are in another order".into(),
                }
            )));
        }
        let mut bad = None;
        self.visit(|spec, t| {
            let expect = want
                .iter()
                .find(|s| s.name == spec.name)
                .expect("names match");
            let no_values = embedding_elsewhere && std::ptr::eq(t, &self.tok_emb) && t.is_empty();
            if bad.is_none()
                && (spec.shape != expect.shape || (t.len() != expect.len() && !no_values))
            {
                bad = Some(format!(
                    "parameter {} has shape {:?} and {} values, the config asks for {:?}",
                    spec.name,
                    spec.shape,
                    t.len(),
                    expect.shape
                ));
            }
        });
        bad.map_or(Ok(()), |m| Err(Error::InvalidArgument(m)))
    }

    /// Checks that `grads` can hold the gradient of these parameters: the same tensors,
    /// each trainable one with all its values.
    pub fn check_grads(&self, grads: &Params) -> Result<()> {
        let (mut ps, mut gs) = (Vec::new(), Vec::new());
        self.visit(|s, t| ps.push((s.name, t.trainable, t.len())));
        grads.visit(|s, t| gs.push((s.name, t.len())));
        if ps.len() != gs.len() {
            return Err(Error::InvalidArgument(format!(
                "the gradients have {} tensors, the model {}",
                gs.len(),
                ps.len()
            )));
        }
        for ((name, trainable, len), (g_name, g_len)) in ps.into_iter().zip(gs) {
            if name != g_name || (trainable && len != g_len) {
                return Err(Error::InvalidArgument(format!(
                    "gradient {g_name} has {g_len} values, parameter {name} needs {len}"
                )));
            }
        }
        Ok(())
    }

    /// Values in trainable tensors, and in all tensors.
    pub fn count_trainable(&self) -> (usize, usize) {
        let (mut trainable, mut all) = (0, 0);
        self.visit(|_, t| {
            all += t.len();
            trainable += if t.trainable { t.len() } else { 0 };
        });
        (trainable, all)
    }
}
