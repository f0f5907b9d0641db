//! The whole model: its parameters ([`Params`]), what the forward keeps for the backward
//! ([`Activations`]), and [`Gpt`], whose forward and backward chain the layers.
//!
//! ```text
//! x_0     = embed(ids) (+ positions)                     (B, T, C)
//! for each block l:
//!   x_mid = x_l   + attn(norm_1(x_l))                    rope on q and k if Llama
//!   x_l+1 = x_mid + mlp(norm_2(x_mid))                   GELU or SwiGLU
//! logits  = norm_f(x_L) W_head^T                         (B, T, V)
//! loss    = mean cross-entropy(logits, targets)
//! ```
//!
//! The backward runs the same chain in reverse. One buffer, `d_resid`, holds the gradient
//! of the residual stream: each branch reads it, and the branch's input norm adds its own
//! gradient into it, which is the residual's backward (`d x_l = d x_mid + d branch`).

use super::attention::{attention_backward, attention_forward, AttnShape};
use super::config::{GptConfig, Mlp, Norm, Positions};
use super::embedding::{
    embedding_backward, embedding_forward, position_embedding_backward, position_embedding_forward,
};
use super::linear::{linear_backward, linear_forward};
use super::loss::{cross_entropy_backward, cross_entropy_forward};
use super::mlp::{gelu_backward, gelu_forward, swiglu_backward, swiglu_forward};
use super::norm::{layer_norm_backward, layer_norm_forward, rms_norm_backward, rms_norm_forward};
use super::residual::residual_forward;
use super::rope::{rope_backward, rope_forward, RopeTable};
use crate::{Error, Result};
use ndarray_rand::rand::{Rng as _, SeedableRng};
use ndarray_rand::rand_distr::StandardNormal;
use rand_chacha::ChaCha8Rng;

/// A norm's weight, and its bias for LayerNorm.
#[derive(Clone, Debug, PartialEq)]
pub struct NormParams {
    pub weight: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// One transformer block's parameters. Linear weights are `(out, in)`.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockParams {
    pub attn_norm: NormParams,
    /// `(C, C)`
    pub wq: Vec<f32>,
    /// `(kv_dim, C)`
    pub wk: Vec<f32>,
    /// `(kv_dim, C)`
    pub wv: Vec<f32>,
    /// `(C, C)`
    pub wo: Vec<f32>,
    pub mlp_norm: NormParams,
    /// SwiGLU's gate `(d_ff, C)`; `None` for GELU.
    pub w_gate: Option<Vec<f32>>,
    /// `(d_ff, C)`
    pub w_up: Vec<f32>,
    /// `(C, d_ff)`
    pub w_down: Vec<f32>,
}

/// All the parameters (and, in the same shape, all the gradients).
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// `(V, C)`
    pub tok_emb: Vec<f32>,
    /// `(context, C)`, learned positions only.
    pub pos_emb: Option<Vec<f32>>,
    pub blocks: Vec<BlockParams>,
    pub final_norm: NormParams,
    /// `(V, C)`; `None` when the head is tied to `tok_emb`.
    pub lm_head: Option<Vec<f32>>,
}

/// A parameter tensor's name (Hugging Face Llama's), shape, and whether AdamW decays it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Weight decay applies to matrices and embeddings, not to norm weights and biases.
    pub decay: bool,
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

impl Params {
    // ANCHOR: specs
    /// Every tensor of the model `cfg` describes, in one fixed order (the order of
    /// [`Params::tensors`]).
    pub fn specs(cfg: &GptConfig) -> Vec<ParamSpec> {
        let (c, f, v, kv) = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.kv_dim());
        let mut specs = Vec::new();
        let mut push = |name: String, shape: Vec<usize>, decay: bool| {
            specs.push(ParamSpec { name, shape, decay })
        };
        let has_bias = matches!(cfg.norm, Norm::LayerNorm { .. });
        push("model.embed_tokens.weight".into(), vec![v, c], true);
        if cfg.positions == Positions::Learned {
            push(
                "model.embed_positions.weight".into(),
                vec![cfg.context, c],
                true,
            );
        }
        for l in 0..cfg.n_layers {
            let p = format!("model.layers.{l}.");
            push(format!("{p}input_layernorm.weight"), vec![c], false);
            if has_bias {
                push(format!("{p}input_layernorm.bias"), vec![c], false);
            }
            push(format!("{p}self_attn.q_proj.weight"), vec![c, c], true);
            push(format!("{p}self_attn.k_proj.weight"), vec![kv, c], true);
            push(format!("{p}self_attn.v_proj.weight"), vec![kv, c], true);
            push(format!("{p}self_attn.o_proj.weight"), vec![c, c], true);
            push(
                format!("{p}post_attention_layernorm.weight"),
                vec![c],
                false,
            );
            if has_bias {
                push(format!("{p}post_attention_layernorm.bias"), vec![c], false);
            }
            if cfg.mlp == Mlp::SwiGlu {
                push(format!("{p}mlp.gate_proj.weight"), vec![f, c], true);
            }
            push(format!("{p}mlp.up_proj.weight"), vec![f, c], true);
            push(format!("{p}mlp.down_proj.weight"), vec![c, f], true);
        }
        push("model.norm.weight".into(), vec![c], false);
        if has_bias {
            push("model.norm.bias".into(), vec![c], false);
        }
        if !cfg.tied_head {
            push("lm_head.weight".into(), vec![v, c], true);
        }
        specs
    }
    // ANCHOR_END: specs

    /// All-zero parameters (or gradients) for `cfg`.
    pub fn zeros(cfg: &GptConfig) -> Self {
        let (c, f, v, kv) = (cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.kv_dim());
        let norm = || NormParams {
            weight: vec![0.0; c],
            bias: matches!(cfg.norm, Norm::LayerNorm { .. }).then(|| vec![0.0; c]),
        };
        let block = || BlockParams {
            attn_norm: norm(),
            wq: vec![0.0; c * c],
            wk: vec![0.0; kv * c],
            wv: vec![0.0; kv * c],
            wo: vec![0.0; c * c],
            mlp_norm: norm(),
            w_gate: (cfg.mlp == Mlp::SwiGlu).then(|| vec![0.0; f * c]),
            w_up: vec![0.0; f * c],
            w_down: vec![0.0; c * f],
        };
        Params {
            tok_emb: vec![0.0; v * c],
            pos_emb: (cfg.positions == Positions::Learned).then(|| vec![0.0; cfg.context * c]),
            blocks: (0..cfg.n_layers).map(|_| block()).collect(),
            final_norm: norm(),
            lm_head: (!cfg.tied_head).then(|| vec![0.0; v * c]),
        }
    }

    /// GPT-2's initialisation, seeded: weights from N(0, 0.02^2), the two projections
    /// that write into the residual stream (`wo`, `w_down`) from N(0, (0.02 / sqrt(2 L))^2)
    /// so that the stream's variance does not grow with depth, norm weights 1, biases 0.
    pub fn init(cfg: &GptConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = Params::zeros(cfg);
        let specs = Params::specs(cfg);
        let resid_std = 0.02 / (2.0 * cfg.n_layers as f32).sqrt();
        for (spec, t) in specs.iter().zip(p.tensors_mut()) {
            if spec.name.ends_with("norm.weight") {
                t.fill(1.0);
            } else if spec.name.ends_with("norm.bias") {
                t.fill(0.0);
            } else {
                let std = if spec.name.ends_with("o_proj.weight")
                    || spec.name.ends_with("down_proj.weight")
                {
                    resid_std
                } else {
                    0.02
                };
                t.iter_mut()
                    .for_each(|x| *x = std * rng.sample::<f32, _>(StandardNormal));
            }
        }
        p
    }

    /// The tensors in the order of [`Params::specs`].
    pub fn tensors(&self) -> Vec<&[f32]> {
        let mut out: Vec<&[f32]> = vec![&self.tok_emb];
        out.extend(self.pos_emb.as_deref());
        for b in &self.blocks {
            out.push(&b.attn_norm.weight);
            out.extend(b.attn_norm.bias.as_deref());
            out.extend([&b.wq[..], &b.wk, &b.wv, &b.wo]);
            out.push(&b.mlp_norm.weight);
            out.extend(b.mlp_norm.bias.as_deref());
            out.extend(b.w_gate.as_deref());
            out.extend([&b.w_up[..], &b.w_down]);
        }
        out.push(&self.final_norm.weight);
        out.extend(self.final_norm.bias.as_deref());
        out.extend(self.lm_head.as_deref());
        out
    }

    /// The tensors in the order of [`Params::specs`], to change.
    pub fn tensors_mut(&mut self) -> Vec<&mut [f32]> {
        let mut out: Vec<&mut [f32]> = vec![&mut self.tok_emb];
        out.extend(self.pos_emb.as_deref_mut());
        for b in &mut self.blocks {
            out.push(&mut b.attn_norm.weight);
            out.extend(b.attn_norm.bias.as_deref_mut());
            out.extend([&mut b.wq[..], &mut b.wk, &mut b.wv, &mut b.wo]);
            out.push(&mut b.mlp_norm.weight);
            out.extend(b.mlp_norm.bias.as_deref_mut());
            out.extend(b.w_gate.as_deref_mut());
            out.extend([&mut b.w_up[..], &mut b.w_down]);
        }
        out.push(&mut self.final_norm.weight);
        out.extend(self.final_norm.bias.as_deref_mut());
        out.extend(self.lm_head.as_deref_mut());
        out
    }

    /// Sets every value to 0 (gradients, before a backward).
    pub fn zero(&mut self) {
        self.tensors_mut().into_iter().for_each(|t| t.fill(0.0));
    }

    /// Checks that the tensors have the sizes `cfg` asks for.
    pub fn check(&self, cfg: &GptConfig) -> Result<()> {
        let specs = Params::specs(cfg);
        let tensors = self.tensors();
        if specs.len() != tensors.len() {
            return Err(Error::InvalidArgument(format!(
                "the model config has {} parameter tensors, the parameters {}",
                specs.len(),
                tensors.len()
            )));
        }
        for (spec, t) in specs.iter().zip(tensors) {
            if spec.len() != t.len() {
                return Err(Error::InvalidArgument(format!(
                    "parameter {} has {} values, its shape {:?} needs {}",
                    spec.name,
                    t.len(),
                    spec.shape,
                    spec.len()
                )));
            }
        }
        Ok(())
    }
}

/// What the forward computes for a batch of `B` sequences of `T` tokens, kept for the
/// backward, and the backward's own buffers. Allocated once per `(B, T)` and reused, so
/// a training step allocates nothing. Per-layer buffers are indexed by layer.
#[derive(Clone, Debug)]
pub struct Activations {
    /// Sequences, `B`.
    pub b: usize,
    /// Positions per sequence, `T`.
    pub t: usize,
    /// The input ids and the targets of the last forward, `(B, T)`.
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// The residual stream entering each block, and leaving the last: `L + 1` of `(B, T, C)`.
    pub resid: Vec<Vec<f32>>,
    /// Block inputs normalised, with the norm's row statistics (`mean` is LayerNorm's only).
    pub ln1: Vec<Vec<f32>>,
    pub ln1_mean: Vec<Vec<f32>>,
    pub ln1_rstd: Vec<Vec<f32>>,
    /// Queries `(B, T, C)` and keys `(B, T, kv_dim)`, rotated when the model uses RoPE.
    pub q: Vec<Vec<f32>>,
    pub k: Vec<Vec<f32>>,
    /// Values, `(B, T, kv_dim)`.
    pub v: Vec<Vec<f32>>,
    /// Attention probabilities, `(B, n_heads, T, T)`.
    pub att: Vec<Vec<f32>>,
    /// Attention output before the output projection, `(B, T, C)`.
    pub att_y: Vec<Vec<f32>>,
    /// The residual stream between attention and MLP, `(B, T, C)`.
    pub resid_mid: Vec<Vec<f32>>,
    pub ln2: Vec<Vec<f32>>,
    pub ln2_mean: Vec<Vec<f32>>,
    pub ln2_rstd: Vec<Vec<f32>>,
    /// MLP pre-activations `(B, T, d_ff)`: GELU's input, or SwiGLU's gate.
    pub mlp_a: Vec<Vec<f32>>,
    /// SwiGLU's up projection `(B, T, d_ff)` (empty for GELU).
    pub mlp_b: Vec<Vec<f32>>,
    /// MLP hidden after the nonlinearity, `(B, T, d_ff)`.
    pub mlp_h: Vec<Vec<f32>>,
    /// The final norm's output and statistics.
    pub lnf: Vec<f32>,
    pub lnf_mean: Vec<f32>,
    pub lnf_rstd: Vec<f32>,
    /// `(B, T, V)`.
    pub logits: Vec<f32>,
    /// softmax of the logits, `(B, T, V)`, and each position's loss, `(B, T)`.
    pub probs: Vec<f32>,
    pub losses: Vec<f32>,
    /// Whether the buffers hold a [`Gpt::forward_loss`], which [`Gpt::backward`] needs.
    has_loss: bool,
    // scratch, forward and backward
    tmp_c: Vec<f32>,
    tmp_kv: Vec<f32>,
    d_resid: Vec<f32>,
    d_ln: Vec<f32>,
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
    d_logits: Vec<f32>,
    d_loss: Vec<f32>,
}

impl Activations {
    /// Buffers for batches of `b` sequences of `t` tokens.
    pub fn new(cfg: &GptConfig, b: usize, t: usize) -> Self {
        let n = b * t;
        let (c, f, v, kv, l) = (
            cfg.d_model,
            cfg.d_ff,
            cfg.vocab_size,
            cfg.kv_dim(),
            cfg.n_layers,
        );
        let per_layer = |size: usize| vec![vec![0.0f32; size]; l];
        let layer_norm = matches!(cfg.norm, Norm::LayerNorm { .. });
        let mean_size = if layer_norm { n } else { 0 };
        let swiglu = cfg.mlp == Mlp::SwiGlu;
        Activations {
            b,
            t,
            inputs: vec![0; n],
            targets: vec![0; n],
            resid: vec![vec![0.0; n * c]; l + 1],
            ln1: per_layer(n * c),
            ln1_mean: per_layer(mean_size),
            ln1_rstd: per_layer(n),
            q: per_layer(n * c),
            k: per_layer(n * kv),
            v: per_layer(n * kv),
            att: per_layer(b * cfg.n_heads * t * t),
            att_y: per_layer(n * c),
            resid_mid: per_layer(n * c),
            ln2: per_layer(n * c),
            ln2_mean: per_layer(mean_size),
            ln2_rstd: per_layer(n),
            mlp_a: per_layer(n * f),
            mlp_b: per_layer(if swiglu { n * f } else { 0 }),
            mlp_h: per_layer(n * f),
            lnf: vec![0.0; n * c],
            lnf_mean: vec![0.0; mean_size],
            lnf_rstd: vec![0.0; n],
            logits: vec![0.0; n * v],
            probs: vec![0.0; n * v],
            losses: vec![0.0; n],
            has_loss: false,
            tmp_c: vec![0.0; n * c],
            tmp_kv: vec![0.0; n * kv],
            d_resid: vec![0.0; n * c],
            d_ln: vec![0.0; n * c],
            d_att_y: vec![0.0; n * c],
            d_q: vec![0.0; n * c],
            d_k: vec![0.0; n * kv],
            d_v: vec![0.0; n * kv],
            d_q_rot: vec![0.0; n * c],
            d_k_rot: vec![0.0; n * kv],
            d_att: vec![0.0; b * t * t],
            d_h: vec![0.0; n * f],
            d_a: vec![0.0; n * f],
            d_b: vec![0.0; if swiglu { n * f } else { 0 }],
            d_logits: vec![0.0; n * v],
            d_loss: vec![1.0 / n as f32; n],
        }
    }
}

/// A GPT or Llama: a config, its parameters, and the RoPE table when it uses RoPE.
#[derive(Clone, Debug)]
pub struct Gpt {
    pub cfg: GptConfig,
    pub params: Params,
    pub(crate) rope: Option<RopeTable>,
}

impl Gpt {
    /// The model `cfg` describes with these parameters; errors if they do not fit.
    pub fn new(cfg: GptConfig, params: Params) -> Result<Self> {
        cfg.validate()?;
        params.check(&cfg)?;
        let rope = match cfg.positions {
            Positions::Rope { theta } => Some(RopeTable::new(theta, cfg.head_dim(), cfg.context)),
            Positions::Learned => None,
        };
        Ok(Gpt { cfg, params, rope })
    }

    /// A new model with [`Params::init`]'s seeded random weights.
    pub fn init(cfg: GptConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let params = Params::init(&cfg, seed);
        Gpt::new(cfg, params)
    }

    fn check_ids(&self, what: &str, ids: &[u32], acts: &Activations) -> Result<()> {
        let (b, t) = (acts.b, acts.t);
        if ids.len() != b * t {
            return Err(Error::InvalidArgument(format!(
                "{what}: {} ids for a batch of {b} x {t}",
                ids.len()
            )));
        }
        if t > self.cfg.context {
            return Err(Error::InvalidArgument(format!(
                "sequences of {t} tokens are longer than the model's context {}",
                self.cfg.context
            )));
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.cfg.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "{what}: token id {id} is out of range for vocab_size {}",
                self.cfg.vocab_size
            )));
        }
        Ok(())
    }

    pub(crate) fn attn_shape_of(&self, b: usize, t: usize) -> AttnShape {
        AttnShape {
            b,
            t,
            n_heads: self.cfg.n_heads,
            n_kv_heads: self.cfg.n_kv_heads,
            head_dim: self.cfg.head_dim(),
        }
    }

    fn attn_shape(&self, acts: &Activations) -> AttnShape {
        AttnShape {
            b: acts.b,
            t: acts.t,
            n_heads: self.cfg.n_heads,
            n_kv_heads: self.cfg.n_kv_heads,
            head_dim: self.cfg.head_dim(),
        }
    }

    /// `y = norm(x)`, keeping the row statistics.
    pub(crate) fn norm_forward(
        &self,
        y: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        x: &[f32],
        p: &NormParams,
    ) {
        let c = self.cfg.d_model;
        match self.cfg.norm {
            Norm::LayerNorm { eps } => {
                let bias = p.bias.as_deref().expect("LayerNorm parameters have a bias");
                layer_norm_forward(y, mean, rstd, x, &p.weight, bias, c, eps)
            }
            Norm::RmsNorm { eps } => rms_norm_forward(y, rstd, x, &p.weight, c, eps),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_backward(
        &self,
        dx: &mut [f32],
        g: &mut NormParams,
        dy: &[f32],
        x: &[f32],
        p: &NormParams,
        mean: &[f32],
        rstd: &[f32],
    ) {
        let c = self.cfg.d_model;
        match self.cfg.norm {
            Norm::LayerNorm { .. } => {
                let db = g
                    .bias
                    .as_deref_mut()
                    .expect("LayerNorm gradients have a bias");
                layer_norm_backward(dx, &mut g.weight, db, dy, x, &p.weight, mean, rstd, c)
            }
            Norm::RmsNorm { .. } => rms_norm_backward(dx, &mut g.weight, dy, x, &p.weight, rstd, c),
        }
    }

    // ANCHOR: forward
    /// Runs the model on `inputs` (`(B, T)` token ids, `B` and `T` those of `acts`) and
    /// leaves the logits in `acts.logits`.
    pub fn forward(&self, acts: &mut Activations, inputs: &[u32]) -> Result<()> {
        self.check_ids("inputs", inputs, acts)?;
        let cfg = &self.cfg;
        let p = &self.params;
        let (t, n) = (acts.t, acts.b * acts.t);
        let (c, f, v, kv, nh, nkv) = (
            cfg.d_model,
            cfg.d_ff,
            cfg.vocab_size,
            cfg.kv_dim(),
            cfg.n_heads,
            cfg.n_kv_heads,
        );
        let shape = self.attn_shape(acts);
        let a = acts;
        a.inputs.copy_from_slice(inputs);
        a.has_loss = false;

        embedding_forward(&mut a.resid[0], inputs, &p.tok_emb, c);
        if let Some(wpe) = &p.pos_emb {
            position_embedding_forward(&mut a.resid[0], wpe, t, c);
        }
        for (l, blk) in p.blocks.iter().enumerate() {
            let (before, after) = a.resid.split_at_mut(l + 1);
            let (x, x_next) = (&before[l], &mut after[0]);
            // attention half: x_mid = x + o_proj(attn(rope(q), rope(k), v))
            self.norm_forward(
                &mut a.ln1[l],
                &mut a.ln1_mean[l],
                &mut a.ln1_rstd[l],
                x,
                &blk.attn_norm,
            );
            let ln1 = &a.ln1[l];
            if let Some(table) = &self.rope {
                linear_forward(&mut a.tmp_c, ln1, &blk.wq, n, c, c);
                rope_forward(&mut a.q[l], &a.tmp_c, table, 0, t, nh);
                linear_forward(&mut a.tmp_kv, ln1, &blk.wk, n, c, kv);
                rope_forward(&mut a.k[l], &a.tmp_kv, table, 0, t, nkv);
            } else {
                linear_forward(&mut a.q[l], ln1, &blk.wq, n, c, c);
                linear_forward(&mut a.k[l], ln1, &blk.wk, n, c, kv);
            }
            linear_forward(&mut a.v[l], ln1, &blk.wv, n, c, kv);
            attention_forward(
                &mut a.att_y[l],
                &mut a.att[l],
                &a.q[l],
                &a.k[l],
                &a.v[l],
                shape,
            );
            linear_forward(&mut a.tmp_c, &a.att_y[l], &blk.wo, n, c, c);
            residual_forward(&mut a.resid_mid[l], x, &a.tmp_c);
            // MLP half: x_next = x_mid + down(act(...))
            self.norm_forward(
                &mut a.ln2[l],
                &mut a.ln2_mean[l],
                &mut a.ln2_rstd[l],
                &a.resid_mid[l],
                &blk.mlp_norm,
            );
            let ln2 = &a.ln2[l];
            match &blk.w_gate {
                None => {
                    linear_forward(&mut a.mlp_a[l], ln2, &blk.w_up, n, c, f);
                    gelu_forward(&mut a.mlp_h[l], &a.mlp_a[l]);
                }
                Some(w_gate) => {
                    linear_forward(&mut a.mlp_a[l], ln2, w_gate, n, c, f);
                    linear_forward(&mut a.mlp_b[l], ln2, &blk.w_up, n, c, f);
                    swiglu_forward(&mut a.mlp_h[l], &a.mlp_a[l], &a.mlp_b[l]);
                }
            }
            linear_forward(&mut a.tmp_c, &a.mlp_h[l], &blk.w_down, n, f, c);
            residual_forward(x_next, &a.resid_mid[l], &a.tmp_c);
        }
        let x_last = &a.resid[cfg.n_layers];
        self.norm_forward(
            &mut a.lnf,
            &mut a.lnf_mean,
            &mut a.lnf_rstd,
            x_last,
            &p.final_norm,
        );
        let w_head = p.lm_head.as_deref().unwrap_or(&p.tok_emb);
        linear_forward(&mut a.logits, &a.lnf, w_head, n, c, v);
        Ok(())
    }
    // ANCHOR_END: forward

    /// [`Gpt::forward`], then the mean cross-entropy against `targets` `(B, T)`.
    pub fn forward_loss(
        &self,
        acts: &mut Activations,
        inputs: &[u32],
        targets: &[u32],
    ) -> Result<f32> {
        self.check_ids("targets", targets, acts)?;
        self.forward(acts, inputs)?;
        acts.targets.copy_from_slice(targets);
        let v = self.cfg.vocab_size;
        let loss =
            cross_entropy_forward(&mut acts.probs, &mut acts.losses, &acts.logits, targets, v);
        acts.has_loss = true;
        Ok(loss)
    }

    // ANCHOR: backward
    /// The gradient of the mean loss of the last [`Gpt::forward_loss`] with respect to
    /// every parameter, added into `grads` (zero them first for a fresh gradient).
    /// Errors if `acts` holds no such forward, or `grads` is not shaped like the model.
    pub fn backward(&self, acts: &mut Activations, grads: &mut Params) -> Result<()> {
        if !acts.has_loss {
            return Err(Error::InvalidArgument(
                "backward needs the activations of a forward_loss (a forward alone has no loss)"
                    .into(),
            ));
        }
        grads.check(&self.cfg)?;
        let cfg = &self.cfg;
        let p = &self.params;
        let (t, n) = (acts.t, acts.b * acts.t);
        let (c, f, v, kv, nh, nkv) = (
            cfg.d_model,
            cfg.d_ff,
            cfg.vocab_size,
            cfg.kv_dim(),
            cfg.n_heads,
            cfg.n_kv_heads,
        );
        let shape = self.attn_shape(acts);
        let a = acts;

        // loss and head: dlogits = (probs - onehot) / N
        a.d_logits.fill(0.0);
        cross_entropy_backward(&mut a.d_logits, &a.probs, &a.targets, &a.d_loss, v);
        a.d_ln.fill(0.0);
        let w_head = p.lm_head.as_deref().unwrap_or(&p.tok_emb);
        let dw_head = match grads.lm_head.as_deref_mut() {
            Some(g) => g,
            None => &mut grads.tok_emb, // tied: the head's gradient joins the embedding's
        };
        linear_backward(&mut a.d_ln, dw_head, &a.d_logits, &a.lnf, w_head, n, c, v);
        a.d_resid.fill(0.0);
        let x_last = &a.resid[cfg.n_layers];
        self.norm_backward(
            &mut a.d_resid,
            &mut grads.final_norm,
            &a.d_ln,
            x_last,
            &p.final_norm,
            &a.lnf_mean,
            &a.lnf_rstd,
        );

        for l in (0..cfg.n_layers).rev() {
            let (blk, g) = (&p.blocks[l], &mut grads.blocks[l]);
            // MLP half. d_resid is d x_next: it is the gradient of the MLP's output too.
            a.d_h.fill(0.0);
            linear_backward(
                &mut a.d_h,
                &mut g.w_down,
                &a.d_resid,
                &a.mlp_h[l],
                &blk.w_down,
                n,
                f,
                c,
            );
            a.d_ln.fill(0.0);
            a.d_a.fill(0.0);
            match (&blk.w_gate, &mut g.w_gate) {
                (Some(w_gate), Some(dw_gate)) => {
                    a.d_b.fill(0.0);
                    swiglu_backward(&mut a.d_a, &mut a.d_b, &a.d_h, &a.mlp_a[l], &a.mlp_b[l]);
                    linear_backward(&mut a.d_ln, dw_gate, &a.d_a, &a.ln2[l], w_gate, n, c, f);
                    linear_backward(
                        &mut a.d_ln,
                        &mut g.w_up,
                        &a.d_b,
                        &a.ln2[l],
                        &blk.w_up,
                        n,
                        c,
                        f,
                    );
                }
                _ => {
                    gelu_backward(&mut a.d_a, &a.d_h, &a.mlp_a[l]);
                    linear_backward(
                        &mut a.d_ln,
                        &mut g.w_up,
                        &a.d_a,
                        &a.ln2[l],
                        &blk.w_up,
                        n,
                        c,
                        f,
                    );
                }
            }
            // the norm adds its input gradient: d_resid becomes d x_mid
            let (mean, rstd) = (&a.ln2_mean[l], &a.ln2_rstd[l]);
            self.norm_backward(
                &mut a.d_resid,
                &mut g.mlp_norm,
                &a.d_ln,
                &a.resid_mid[l],
                &blk.mlp_norm,
                mean,
                rstd,
            );

            // attention half, the same way: d_resid is d x_mid, the gradient of o_proj's output
            a.d_att_y.fill(0.0);
            linear_backward(
                &mut a.d_att_y,
                &mut g.wo,
                &a.d_resid,
                &a.att_y[l],
                &blk.wo,
                n,
                c,
                c,
            );
            a.d_q_rot.fill(0.0);
            a.d_k_rot.fill(0.0);
            a.d_v.fill(0.0);
            let (q, k, vv) = (&a.q[l], &a.k[l], &a.v[l]);
            attention_backward(
                &mut a.d_q_rot,
                &mut a.d_k_rot,
                &mut a.d_v,
                &mut a.d_att,
                &a.d_att_y,
                &a.att[l],
                q,
                k,
                vv,
                shape,
            );
            let (d_q, d_k) = match &self.rope {
                Some(table) => {
                    a.d_q.fill(0.0);
                    a.d_k.fill(0.0);
                    rope_backward(&mut a.d_q, &a.d_q_rot, table, 0, t, nh);
                    rope_backward(&mut a.d_k, &a.d_k_rot, table, 0, t, nkv);
                    (&a.d_q, &a.d_k)
                }
                None => (&a.d_q_rot, &a.d_k_rot),
            };
            a.d_ln.fill(0.0);
            linear_backward(&mut a.d_ln, &mut g.wq, d_q, &a.ln1[l], &blk.wq, n, c, c);
            linear_backward(&mut a.d_ln, &mut g.wk, d_k, &a.ln1[l], &blk.wk, n, c, kv);
            linear_backward(&mut a.d_ln, &mut g.wv, &a.d_v, &a.ln1[l], &blk.wv, n, c, kv);
            let (mean, rstd) = (&a.ln1_mean[l], &a.ln1_rstd[l]);
            self.norm_backward(
                &mut a.d_resid,
                &mut g.attn_norm,
                &a.d_ln,
                &a.resid[l],
                &blk.attn_norm,
                mean,
                rstd,
            );
        }
        // d_resid is now d x_0, the gradient of the embeddings' sum
        embedding_backward(&mut grads.tok_emb, &a.d_resid, &a.inputs, c);
        if let Some(dwpe) = grads.pos_emb.as_deref_mut() {
            position_embedding_backward(dwpe, &a.d_resid, t, c);
        }
        Ok(())
    }
    // ANCHOR_END: backward
}
