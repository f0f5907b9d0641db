//! The whole model: what the forward keeps for the backward ([`Activations`]), and
//! [`Gpt`], whose forward and backward chain the embedding, the blocks
//! ([`super::block`]) and the head. The parameters are in [`super::params`].
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

use super::attention::AttnShape;
use super::block::{norm_backward, norm_forward, BlockActs, BwdScratch, FwdScratch, KvSink};
use super::config::{GptConfig, Norm, Positions};
use super::embedding::{
    embedding_backward, embedding_forward, position_embedding_backward, position_embedding_forward,
};
use super::linear::{linear_backward, linear_backward_input, linear_forward};
use super::loss::{cross_entropy_backward, cross_entropy_forward};
pub use super::params::Params;
use super::rope::RopeTable;
use crate::quant::matrix::QMatrix;
use crate::{Error, Result};

/// What the forward computes for a batch of `B` sequences of `T` tokens, kept for the
/// backward, and the backward's own buffers. Allocated once per `(B, T)` and reused, so
/// a training step allocates nothing.
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
    /// What each block keeps, by layer.
    pub layers: Vec<BlockActs>,
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
    /// Whether they hold a forward, which [`Gpt::backward_from_hidden`] needs.
    has_forward: bool,
    fwd: FwdScratch,
    bwd: BwdScratch,
    d_resid: Vec<f32>,
    d_logits: Vec<f32>,
    d_loss: Vec<f32>,
}

impl Activations {
    /// Buffers for batches of `b` sequences of `t` tokens.
    pub fn new(cfg: &GptConfig, b: usize, t: usize) -> Self {
        let n = b * t;
        let (c, v) = (cfg.d_model, cfg.vocab_size);
        let mean_size = if matches!(cfg.norm, Norm::LayerNorm { .. }) {
            n
        } else {
            0
        };
        Activations {
            b,
            t,
            inputs: vec![0; n],
            targets: vec![0; n],
            resid: vec![vec![0.0; n * c]; cfg.n_layers + 1],
            layers: (0..cfg.n_layers)
                .map(|_| BlockActs::new(cfg, b, t, true))
                .collect(),
            lnf: vec![0.0; n * c],
            lnf_mean: vec![0.0; mean_size],
            lnf_rstd: vec![0.0; n],
            logits: vec![0.0; n * v],
            probs: vec![0.0; n * v],
            losses: vec![0.0; n],
            has_loss: false,
            has_forward: false,
            fwd: FwdScratch::new(cfg, n),
            bwd: BwdScratch::new(cfg, b, t),
            d_resid: vec![0.0; n * c],
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
    /// The token embedding `(V, C)` in a quantized format, for inference: a GGUF file
    /// stores it quantized (`token_embd.weight`), and llama.cpp both looks rows up in it
    /// and, when the head is tied, multiplies the logits by it. A tied head multiplies
    /// through it when set; the lookup reads it only when `params.tok_emb` holds no values
    /// ([`Gpt::new_with_quantized_embedding`]), else the f32 rows
    /// ([`Gpt::with_quantized_tied_head`]).
    pub(crate) quant_emb: Option<QMatrix>,
}

impl Gpt {
    /// The model `cfg` describes with these parameters; errors if they do not fit.
    pub fn new(cfg: GptConfig, params: Params) -> Result<Self> {
        Gpt::checked(cfg, params, false)
    }

    /// [`Gpt::new`]; with `embedding_elsewhere`, `params.tok_emb` may hold no values.
    fn checked(cfg: GptConfig, params: Params, embedding_elsewhere: bool) -> Result<Self> {
        cfg.validate()?;
        params.check_shapes(&cfg, embedding_elsewhere)?;
        let rope = match cfg.positions {
            Positions::Rope { theta } => Some(RopeTable::new(theta, cfg.head_dim(), cfg.context)),
            Positions::Learned => None,
        };
        Ok(Gpt {
            cfg,
            params,
            rope,
            quant_emb: None,
        })
    }

    /// The model `cfg` describes, whose token embedding is the quantized `(V, C)` table
    /// `emb`, for inference: `params.tok_emb` keeps its shape, `[V, C]`, and no values (any
    /// it holds are dropped), the lookup dequantizes the rows of the tokens it embeds, and a tied head multiplies
    /// through the table's blocks. This is how llama.cpp uses a GGUF file's
    /// `token_embd.weight`; an f32 copy of SmolLM2's 49152 x 576 table would be 113 MB,
    /// more than the whole Q4_1 file. Errors if the parameters or `emb` do not fit `cfg`.
    pub fn new_with_quantized_embedding(
        cfg: GptConfig,
        mut params: Params,
        emb: QMatrix,
    ) -> Result<Self> {
        let (v, c) = (cfg.vocab_size, cfg.d_model);
        if (emb.rows, emb.cols) != (v, c) {
            return Err(Error::InvalidArgument(format!(
                "a quantized token embedding of ({}, {}) does not fit a model of ({v}, {c})",
                emb.rows, emb.cols
            )));
        }
        params.tok_emb.data = Vec::new();
        let mut model = Gpt::checked(cfg, params, true)?;
        model.quant_emb = Some(emb);
        Ok(model)
    }

    /// [`Params::check_f32`], and no quantized embedding: an error saying `what` needs f32
    /// weights (a backward, training).
    pub fn check_f32(&self, what: &str) -> Result<()> {
        self.params.check_f32(what)?;
        if self.quant_emb.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{what} needs f32 weights, and the token embedding (the tied head) is \
                 quantized (load with --exact)"
            )));
        }
        Ok(())
    }

    /// The quantized token embedding, when the model has one
    /// ([`Gpt::new_with_quantized_embedding`], [`Gpt::with_quantized_tied_head`]).
    pub fn quantized_embedding(&self) -> Option<&QMatrix> {
        self.quant_emb.as_ref()
    }

    /// The token embedding's rows of `ids` into `x`, `(n, C)`: copied from the f32 table,
    /// or dequantized from the quantized one when the model keeps no f32 table.
    pub(crate) fn embed(&self, x: &mut [f32], ids: &[u32]) {
        let c = self.cfg.d_model;
        match &self.quant_emb {
            Some(q) if self.params.tok_emb.is_empty() => {
                assert_eq!(x.len(), ids.len() * c, "embed: x is (n, C)");
                for (row, &id) in x.chunks_exact_mut(c).zip(ids) {
                    q.dequantize_row(id as usize, row);
                }
            }
            _ => embedding_forward(x, ids, &self.params.tok_emb, c),
        }
    }

    /// The model with its tied head multiplied through `head` (a quantized copy of the
    /// embedding, `(vocab_size, d_model)`), as llama.cpp does with a GGUF file's quantized
    /// `token_embd.weight`. Errors if the head is not tied or `head` has another shape.
    pub fn with_quantized_tied_head(mut self, head: QMatrix) -> Result<Self> {
        let (v, c) = (self.cfg.vocab_size, self.cfg.d_model);
        if !self.cfg.tied_head || (head.rows, head.cols) != (v, c) {
            return Err(Error::InvalidArgument(format!(
                "a quantized tied head needs a tied head of ({v}, {c}); the model's head is {} \
                 and the matrix ({}, {})",
                if self.cfg.tied_head {
                    "tied"
                } else {
                    "its own"
                },
                head.rows,
                head.cols
            )));
        }
        self.quant_emb = Some(head);
        Ok(self)
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

    /// `logits = x W_head^T`, with the embedding's matrix when the head is tied.
    pub(crate) fn head_forward(&self, logits: &mut [f32], x: &[f32]) {
        let (c, v) = (self.cfg.d_model, self.cfg.vocab_size);
        match (&self.params.lm_head, &self.quant_emb) {
            (Some(head), _) => head.forward(logits, x),
            (None, Some(q)) => q.matmul(logits, x, x.len() / c),
            (None, None) => linear_forward(logits, x, &self.params.tok_emb, x.len() / c, c, v),
        }
    }

    // ANCHOR: forward
    /// Runs the model on `inputs` (`(B, T)` token ids, `B` and `T` those of `acts`) and
    /// leaves the logits in `acts.logits`.
    pub fn forward(&self, acts: &mut Activations, inputs: &[u32]) -> Result<()> {
        self.check_ids("inputs", inputs, acts)?;
        let (cfg, p) = (&self.cfg, &self.params);
        let (t, c) = (acts.t, cfg.d_model);
        let shape = self.attn_shape_of(acts.b, t);
        let a = acts;
        a.inputs.copy_from_slice(inputs);
        a.has_loss = false;
        a.has_forward = false;

        self.embed(&mut a.resid[0], inputs);
        if let Some(wpe) = &p.pos_emb {
            position_embedding_forward(&mut a.resid[0], wpe, t, c);
        }
        for l in 0..cfg.n_layers {
            let (before, after) = a.resid.split_at_mut(l + 1);
            let (x, x_out) = (&before[l], &mut after[0]);
            self.block_forward(
                l,
                x,
                x_out,
                &mut a.layers[l],
                &mut a.fwd,
                KvSink::Keep,
                shape,
            );
        }
        let x_last = &a.resid[cfg.n_layers];
        norm_forward(
            cfg.norm,
            &p.final_norm,
            &mut a.lnf,
            &mut a.lnf_mean,
            &mut a.lnf_rstd,
            x_last,
            c,
        );
        self.head_forward(&mut a.logits, &a.lnf);
        a.has_forward = true;
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
    /// every trainable parameter, added into `grads` (from [`Params::grads`], or
    /// [`Params::zeros`] when all are trainable; zero them first for a fresh gradient).
    /// Errors if `acts` holds no such forward, or `grads` does not fit the model.
    pub fn backward(&self, acts: &mut Activations, grads: &mut Params) -> Result<()> {
        self.backward_of(acts, grads, None)
    }

    fn backward_of(
        &self,
        acts: &mut Activations,
        grads: &mut Params,
        weights: Option<&[f32]>,
    ) -> Result<()> {
        self.check_f32("a backward")?;
        if !acts.has_loss {
            return Err(Error::InvalidArgument(
                "backward needs the activations of a forward_loss (a forward alone has no loss)"
                    .into(),
            ));
        }
        self.params.check_grads(grads)?;
        let p = &self.params;
        let (n, c, v) = (acts.b * acts.t, self.cfg.d_model, self.cfg.vocab_size);
        let a = acts;

        // loss and head: dlogits = (probs - onehot) * weight, the weight 1/N for the mean
        a.d_logits.fill(0.0);
        let d_loss = weights.unwrap_or(&a.d_loss);
        cross_entropy_backward(&mut a.d_logits, &a.probs, &a.targets, d_loss, v);
        let d_ln = &mut a.bwd.d_ln;
        d_ln.fill(0.0);
        match (&p.lm_head, &mut grads.lm_head) {
            (Some(head), Some(d_head)) => head.backward(d_ln, d_head, &a.d_logits, &a.lnf),
            // tied: the head's gradient joins the embedding's
            (None, None) if p.tok_emb.trainable => {
                let (w, dw) = (&p.tok_emb, &mut grads.tok_emb);
                linear_backward(d_ln, dw, &a.d_logits, &a.lnf, w, n, c, v)
            }
            (None, None) => linear_backward_input(d_ln, &a.d_logits, &p.tok_emb, n, c, v),
            _ => unreachable!("check_grads compared the tensors"),
        }
        self.trunk_backward(a, grads);
        Ok(())
    }

    /// From the gradient of the final norm's output (`acts.bwd.d_ln`) down to the
    /// embeddings: the final norm, the blocks in reverse, the embedding tables.
    fn trunk_backward(&self, a: &mut Activations, grads: &mut Params) {
        let (cfg, p) = (&self.cfg, &self.params);
        let (t, c) = (a.t, cfg.d_model);
        let shape = self.attn_shape_of(a.b, t);
        a.d_resid.fill(0.0);
        let x_last = &a.resid[cfg.n_layers];
        norm_backward(
            &p.final_norm,
            &mut grads.final_norm,
            &mut a.d_resid,
            &a.bwd.d_ln,
            x_last,
            &a.lnf_mean,
            &a.lnf_rstd,
            c,
            &mut a.bwd.discard,
        );
        for l in (0..cfg.n_layers).rev() {
            self.block_backward(
                l,
                &a.resid[l],
                &a.layers[l],
                &mut grads.blocks[l],
                &mut a.d_resid,
                &mut a.bwd,
                shape,
            );
        }
        // d_resid is now d x_0, the gradient of the embeddings' sum
        if p.tok_emb.trainable {
            embedding_backward(&mut grads.tok_emb, &a.d_resid, &a.inputs, c);
        }
        if let (Some(wpe), Some(dwpe)) = (&p.pos_emb, &mut grads.pos_emb) {
            if wpe.trainable {
                position_embedding_backward(dwpe, &a.d_resid, t, c);
            }
        }
    }
    // ANCHOR_END: backward

    /// The gradient of `Σ_i weights[i] · loss_i`, a weighted sum of the positions' losses
    /// of the last [`Gpt::forward_loss`] (`weights` is `(B, T)`), added into `grads`.
    /// [`Gpt::backward`] is the case `weights[i] = 1 / (B T)`. A weight of 0 leaves a
    /// position out (padding, a prompt's tokens); a negative one pushes its target's
    /// probability down instead of up (descending on `w loss` with `w > 0` raises it): post-training's losses are such sums, since
    /// `loss_i = -log p(target_i)`.
    pub fn backward_weighted(
        &self,
        acts: &mut Activations,
        grads: &mut Params,
        weights: &[f32],
    ) -> Result<()> {
        if weights.len() != acts.b * acts.t {
            return Err(Error::InvalidArgument(format!(
                "{} loss weights for a batch of {} x {} positions",
                weights.len(),
                acts.b,
                acts.t
            )));
        }
        self.backward_of(acts, grads, Some(weights))
    }

    /// The gradient of a loss that reads the final hidden states (the final norm's output,
    /// `(B, T, C)`, in `acts.lnf`) instead of the logits, given `d_hidden`, its gradient
    /// with respect to them: a reward model's scalar head sits there. Needs a
    /// [`Gpt::forward`] in `acts`; adds into `grads`.
    pub fn backward_from_hidden(
        &self,
        acts: &mut Activations,
        grads: &mut Params,
        d_hidden: &[f32],
    ) -> Result<()> {
        self.check_f32("a backward")?;
        if !acts.has_forward {
            return Err(Error::InvalidArgument(
                "backward_from_hidden needs the activations of a forward".into(),
            ));
        }
        if d_hidden.len() != acts.lnf.len() {
            return Err(Error::InvalidArgument(format!(
                "a hidden-state gradient of {} values for {} x {} positions of {}",
                d_hidden.len(),
                acts.b,
                acts.t,
                self.cfg.d_model
            )));
        }
        self.params.check_grads(grads)?;
        acts.bwd.d_ln.copy_from_slice(d_hidden);
        self.trunk_backward(acts, grads);
        Ok(())
    }
}
