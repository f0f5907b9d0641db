//! The model's parameters as the model is built: a block holds its two norms, its four
//! attention projections and its MLP; every projection is a [`Linear`] that owns its
//! weight; every tensor knows its shape and whether training changes it.
//!
//! One walk over the structure, [`Params::visit`], names each tensor (Hugging Face Llama's
//! names) and gives its shape, its initialisation rule, whether AdamW decays it and whether
//! it is trainable. Everything that treats the parameters as a list derives from it: the
//! names and shapes of a checkpoint, the initialisation, averaging, clipping and AdamW.
//! A gradient is a `Params` of the same structure whose frozen tensors hold no values.

use super::config::{GptConfig, Mlp, Norm, Positions};
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

/// The MLP: GPT-2's `down(gelu(up x))` or Llama's `down(silu(gate x) * up x)`.
// SwiGLU's third projection makes its variant larger; one MLP per block, so boxing
// would buy nothing but an indirection in every block's code.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum MlpParams {
    /// `up (d_ff, C)`, `down (C, d_ff)`.
    Gelu { up_proj: Linear, down_proj: Linear },
    /// `gate (d_ff, C)`, `up (d_ff, C)`, `down (C, d_ff)`.
    SwiGlu {
        gate_proj: Linear,
        up_proj: Linear,
        down_proj: Linear,
    },
}

impl MlpParams {
    /// The projection back to the residual stream, which both kinds end with.
    pub fn down_proj(&self) -> &Linear {
        match self {
            MlpParams::Gelu { down_proj, .. } | MlpParams::SwiGlu { down_proj, .. } => down_proj,
        }
    }

    /// The down projection, to change.
    pub fn down_proj_mut(&mut self) -> &mut Linear {
        match self {
            MlpParams::Gelu { down_proj, .. } | MlpParams::SwiGlu { down_proj, .. } => down_proj,
        }
    }
}

/// One transformer block's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockParams {
    pub attn_norm: NormParams,
    pub attn: AttnParams,
    pub mlp_norm: NormParams,
    pub mlp: MlpParams,
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
        for (l, b) in (& $($m)? p.blocks).into_iter().enumerate() {
            let at = |s: &str| format!("model.layers.{l}.{s}");
            norm!(at("input_layernorm"), & $($m)? b.attn_norm);
            linear!(at("self_attn.q_proj"), b.attn.q_proj, normal);
            linear!(at("self_attn.k_proj"), b.attn.k_proj, normal);
            linear!(at("self_attn.v_proj"), b.attn.v_proj, normal);
            // the two projections that write into the residual stream start smaller
            linear!(at("self_attn.o_proj"), b.attn.o_proj, Init::Normal { std: resid_std });
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
            }
        }
        norm!("model.norm", & $($m)? p.final_norm);
        if let Some(head) = & $($m)? p.lm_head {
            linear!("lm_head", *head, normal);
        }
        // ANCHOR_END: names
    }};
}

/// The projections in order, with their names: written once for [`Params::visit_linears`]
/// and [`Params::visit_linears_mut`] (`mut` or not, as `walk!` does for tensors).
macro_rules! walk_linears {
    ($params:expr, $f:ident $(, $m:tt)?) => {
        for (l, b) in (& $($m)? $params.blocks).into_iter().enumerate() {
            let at = |s: &str| format!("model.layers.{l}.{s}");
            $f(&at("self_attn.q_proj"), & $($m)? b.attn.q_proj);
            $f(&at("self_attn.k_proj"), & $($m)? b.attn.k_proj);
            $f(&at("self_attn.v_proj"), & $($m)? b.attn.v_proj);
            $f(&at("self_attn.o_proj"), & $($m)? b.attn.o_proj);
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
            }
        }
        if let Some(head) = & $($m)? $params.lm_head {
            $f("lm_head", head);
        }
    };
}

impl Params {
    /// All-zero parameters (or gradients) for `cfg`, every tensor trainable.
    pub fn zeros(cfg: &GptConfig) -> Self {
        let (c, f, v, kv) = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.kv_dim());
        let block = || BlockParams {
            attn_norm: NormParams::zeros(cfg.norm, c),
            attn: AttnParams {
                q_proj: Linear::zeros(c, c),
                k_proj: Linear::zeros(c, kv),
                v_proj: Linear::zeros(c, kv),
                o_proj: Linear::zeros(c, c),
            },
            mlp_norm: NormParams::zeros(cfg.norm, c),
            mlp: match cfg.mlp {
                Mlp::Gelu => MlpParams::Gelu {
                    up_proj: Linear::zeros(c, f),
                    down_proj: Linear::zeros(f, c),
                },
                Mlp::SwiGlu => MlpParams::SwiGlu {
                    gate_proj: Linear::zeros(c, f),
                    up_proj: Linear::zeros(c, f),
                    down_proj: Linear::zeros(f, c),
                },
            },
        };
        Params {
            tok_emb: Tensor::zeros(&[v, c]),
            pos_emb: (cfg.positions == Positions::Learned)
                .then(|| Tensor::zeros(&[cfg.context, c])),
            blocks: (0..cfg.n_layers).map(|_| block()).collect(),
            final_norm: NormParams::zeros(cfg.norm, c),
            lm_head: (!cfg.tied_head).then(|| Linear::zeros(c, v)),
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
            t.trainable = keep(&spec.name);
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
