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
use super::params::MlpParams;
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
    /// The multi-token-prediction depth's forward (when the model has one).
    pub mtp: Option<MtpActs>,
    fwd: FwdScratch,
    bwd: BwdScratch,
    d_resid: Vec<f32>,
    d_logits: Vec<f32>,
    d_loss: Vec<f32>,
}

/// What the MTP depth's forward keeps: the next tokens' embeddings and the main model's
/// last hidden states, each normalised, their projection, the depth's block, its norm and
/// logits, and each position's loss on the token after next.
#[derive(Clone, Debug)]
pub struct MtpActs {
    pub emb: Vec<f32>,
    pub en: Vec<f32>,
    pub en_mean: Vec<f32>,
    pub en_rstd: Vec<f32>,
    pub hn: Vec<f32>,
    pub hn_mean: Vec<f32>,
    pub hn_rstd: Vec<f32>,
    /// `[enorm(Emb(t_{i+1})); hnorm(h_i)]`, `(n, 2C)`.
    pub cat: Vec<f32>,
    /// The block's input (`eh_proj`'s output) and output.
    pub x0: Vec<f32>,
    pub x1: Vec<f32>,
    pub block: BlockActs,
    pub xn: Vec<f32>,
    pub xn_mean: Vec<f32>,
    pub xn_rstd: Vec<f32>,
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    pub losses: Vec<f32>,
    /// The input tokens `t_{i+1}` (the main targets) and the targets `t_{i+2}`, `(B, T)`.
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    /// `λ / (B (T - 1))` per position, 0 at each sequence's last (no token after next).
    pub weights: Vec<f32>,
    /// The mean cross-entropy on the token after next, unweighted.
    pub loss: f32,
}

impl MtpActs {
    fn new(cfg: &GptConfig, b: usize, t: usize) -> Self {
        let n = b * t;
        let (c, v) = (cfg.d_model, cfg.vocab_size);
        let mean = if matches!(cfg.norm, Norm::LayerNorm { .. }) {
            n
        } else {
            0
        };
        MtpActs {
            emb: vec![0.0; n * c],
            en: vec![0.0; n * c],
            en_mean: vec![0.0; mean],
            en_rstd: vec![0.0; n],
            hn: vec![0.0; n * c],
            hn_mean: vec![0.0; mean],
            hn_rstd: vec![0.0; n],
            cat: vec![0.0; n * 2 * c],
            x0: vec![0.0; n * c],
            x1: vec![0.0; n * c],
            block: BlockActs::new(cfg, b, t, true),
            xn: vec![0.0; n * c],
            xn_mean: vec![0.0; mean],
            xn_rstd: vec![0.0; n],
            logits: vec![0.0; n * v],
            probs: vec![0.0; n * v],
            losses: vec![0.0; n],
            inputs: vec![0; n],
            targets: vec![0; n],
            weights: vec![0.0; n],
            loss: 0.0,
        }
    }
}

// ANCHOR: mtp_targets
/// The MTP depth's targets for a batch whose next-token targets are `targets` (`(B, T)`,
/// rows of `t`): position `i` predicts `t_{i+2}`, the target of position `i + 1` in the same
/// sequence; each sequence's last position has none.
pub fn mtp_targets(targets: &[u32], t: usize) -> Vec<Option<u32>> {
    (0..targets.len())
        .map(|i| (i % t + 1 < t).then(|| targets[i + 1]))
        .collect()
}
// ANCHOR_END: mtp_targets

impl Activations {
    /// The terms the training objective adds to the main cross-entropy that
    /// [`Gpt::forward_loss`] returns: each MoE block's sequence-wise balance loss, and
    /// `λ` times the MTP depth's loss. [`Gpt::backward`] differentiates their sum.
    pub fn auxiliary_loss(&self, cfg: &GptConfig) -> f32 {
        let balance: f32 = self.layers.iter().map(|l| l.moe.balance_loss).sum();
        let mtp = match (&self.mtp, &cfg.mtp) {
            (Some(a), Some(m)) if self.has_loss => m.lambda * a.loss,
            _ => 0.0,
        };
        let mtp_balance = self.mtp.as_ref().map_or(0.0, |a| a.block.moe.balance_loss);
        balance + mtp + if self.has_loss { mtp_balance } else { 0.0 }
    }
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
            mtp: cfg.mtp.map(|_| MtpActs::new(cfg, b, t)),
            fwd: FwdScratch::new(cfg, n),
            bwd: BwdScratch::new(cfg, b, t),
            d_resid: vec![0.0; n * c],
            d_logits: vec![0.0; n * v],
            d_loss: vec![1.0 / n as f32; n],
        }
    }
}

/// The RoPE table `cfg` asks for, `None` with learned positions.
fn rope_table(cfg: &GptConfig) -> Option<RopeTable> {
    match cfg.positions {
        Positions::Rope { theta } => Some(match &cfg.mla {
            // MLA rotates only each head's last d_h^R numbers
            Some(m) if m.rope_interleave => {
                RopeTable::interleaved(theta, m.qk_rope_head_dim, cfg.context)
            }
            Some(m) => RopeTable::new(theta, m.qk_rope_head_dim, cfg.context),
            None => RopeTable::new(theta, cfg.head_dim(), cfg.context),
        }),
        Positions::Learned => None,
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
        let rope = rope_table(&cfg);
        Ok(Gpt {
            cfg,
            params,
            rope,
            quant_emb: None,
        })
    }

    /// Sets RoPE's base θ and rebuilds the rotation tables, as a long-context stage of
    /// pre-training may (Llama 3's θ is 500,000, Llama 2's 10,000). The weights stay as they are.
    /// Errors if the model does not use RoPE or θ is not above 1.
    pub fn set_rope_theta(&mut self, theta: f32) -> Result<()> {
        let rope = matches!(self.cfg.positions, Positions::Rope { .. });
        if !rope || theta.is_nan() || theta <= 1.0 {
            return Err(Error::InvalidArgument(format!(
                "RoPE's base θ = {theta}: the model must use RoPE and θ must be above 1"
            )));
        }
        self.cfg.positions = Positions::Rope { theta };
        self.rope = rope_table(&self.cfg);
        Ok(())
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
        let (head_dim, v_head_dim) = match &self.cfg.mla {
            Some(m) => (m.qk_nope_head_dim + m.qk_rope_head_dim, m.v_head_dim),
            None => (self.cfg.head_dim(), self.cfg.head_dim()),
        };
        AttnShape {
            b,
            t,
            n_heads: self.cfg.n_heads,
            n_kv_heads: self.cfg.n_kv_heads,
            head_dim,
            v_head_dim,
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
                &p.blocks[l],
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
        if self.params.mtp.is_some() {
            self.mtp_forward(acts);
        }
        acts.has_loss = true;
        Ok(loss)
    }

    // ANCHOR: mtp_forward
    /// The MTP depth on the last forward (DeepSeek-V3 report, eqs. 21-25): at position `i`,
    /// `h' = W_eh [enorm(Emb(t_{i+1})); hnorm(h_i)]` (`h_i` the main model's last hidden
    /// state, `t_{i+1}` the main target), one block, a norm and the shared head predict
    /// `t_{i+2}`, the next position's target. Each sequence's last position has no such
    /// token: weight 0.
    fn mtp_forward(&self, acts: &mut Activations) {
        let (cfg, p) = (&self.cfg, &self.params);
        let (Some(mp), Some(m)) = (&p.mtp, &cfg.mtp) else {
            return;
        };
        let (b, t, c, v) = (acts.b, acts.t, cfg.d_model, cfg.vocab_size);
        let shape = self.attn_shape_of(b, t);
        let a = acts
            .mtp
            .as_mut()
            .expect("Activations::new makes the MTP buffers");
        a.inputs.copy_from_slice(&acts.targets);
        let weight = if t > 1 {
            m.lambda / (b * (t - 1)) as f32
        } else {
            0.0
        };
        for ((tgt, w), want) in a
            .targets
            .iter_mut()
            .zip(&mut a.weights)
            .zip(mtp_targets(&acts.targets, t))
        {
            (*tgt, *w) = match want {
                Some(id) => (id, weight),
                None => (0, 0.0),
            };
        }
        self.embed(&mut a.emb, &a.inputs);
        norm_forward(
            cfg.norm,
            &mp.enorm,
            &mut a.en,
            &mut a.en_mean,
            &mut a.en_rstd,
            &a.emb,
            c,
        );
        let h = &acts.resid[cfg.n_layers];
        norm_forward(
            cfg.norm,
            &mp.hnorm,
            &mut a.hn,
            &mut a.hn_mean,
            &mut a.hn_rstd,
            h,
            c,
        );
        for ((row, e), hh) in a
            .cat
            .chunks_exact_mut(2 * c)
            .zip(a.en.chunks_exact(c))
            .zip(a.hn.chunks_exact(c))
        {
            row[..c].copy_from_slice(e);
            row[c..].copy_from_slice(hh);
        }
        mp.eh_proj.forward(&mut a.x0, &a.cat);
        self.block_forward(
            &mp.block,
            &a.x0,
            &mut a.x1,
            &mut a.block,
            &mut acts.fwd,
            KvSink::Keep,
            shape,
        );
        norm_forward(
            cfg.norm,
            &mp.norm,
            &mut a.xn,
            &mut a.xn_mean,
            &mut a.xn_rstd,
            &a.x1,
            c,
        );
        self.head_forward(&mut a.logits, &a.xn);
        cross_entropy_forward(&mut a.probs, &mut a.losses, &a.logits, &a.targets, v);
        let valid = b * t.saturating_sub(1);
        a.loss = a
            .losses
            .iter()
            .zip(&a.weights)
            .filter(|(_, w)| **w > 0.0)
            .map(|(l, _)| l)
            .sum::<f32>()
            / valid.max(1) as f32;
    }
    // ANCHOR_END: mtp_forward

    /// Backward of [`Gpt::mtp_forward`]: `λ` times the mean loss on the token after next,
    /// into the shared head, the MTP depth, the embedding rows of its inputs, and (through
    /// `hnorm`) `acts.d_resid`, the gradient of the main model's last hidden state.
    fn mtp_backward(&self, a: &mut Activations, grads: &mut Params) {
        let (cfg, p) = (&self.cfg, &self.params);
        let (Some(mp), Some(gm), Some(m)) = (&p.mtp, &mut grads.mtp, &mut a.mtp) else {
            return;
        };
        let (n, c, v) = (a.b * a.t, cfg.d_model, cfg.vocab_size);
        let shape = self.attn_shape_of(a.b, a.t);
        let mut d_logits = vec![0.0; n * v];
        cross_entropy_backward(&mut d_logits, &m.probs, &m.targets, &m.weights, v);
        let mut d_xn = vec![0.0; n * c];
        match (&p.lm_head, &mut grads.lm_head) {
            (Some(head), Some(d_head)) => head.backward(&mut d_xn, d_head, &d_logits, &m.xn),
            (None, None) if p.tok_emb.trainable => linear_backward(
                &mut d_xn,
                &mut grads.tok_emb,
                &d_logits,
                &m.xn,
                &p.tok_emb,
                n,
                c,
                v,
            ),
            (None, None) => linear_backward_input(&mut d_xn, &d_logits, &p.tok_emb, n, c, v),
            _ => unreachable!("check_grads compared the tensors"),
        }
        let mut d_x = vec![0.0; n * c];
        norm_backward(
            &mp.norm,
            &mut gm.norm,
            &mut d_x,
            &d_xn,
            &m.x1,
            &m.xn_mean,
            &m.xn_rstd,
            c,
            &mut a.bwd.discard,
        );
        // through the depth's block: d_x becomes the gradient of its input
        self.block_backward(
            &mp.block,
            &m.x0,
            &m.block,
            &mut gm.block,
            &mut d_x,
            &mut a.bwd,
            shape,
        );
        let mut d_cat = vec![0.0; n * 2 * c];
        mp.eh_proj
            .backward(&mut d_cat, &mut gm.eh_proj, &d_x, &m.cat);
        let (mut d_en, mut d_hn) = (vec![0.0; n * c], vec![0.0; n * c]);
        for ((row, de), dh) in d_cat
            .chunks_exact(2 * c)
            .zip(d_en.chunks_exact_mut(c))
            .zip(d_hn.chunks_exact_mut(c))
        {
            de.copy_from_slice(&row[..c]);
            dh.copy_from_slice(&row[c..]);
        }
        let mut d_emb = vec![0.0; n * c];
        norm_backward(
            &mp.enorm,
            &mut gm.enorm,
            &mut d_emb,
            &d_en,
            &m.emb,
            &m.en_mean,
            &m.en_rstd,
            c,
            &mut a.bwd.discard,
        );
        if p.tok_emb.trainable {
            embedding_backward(&mut grads.tok_emb, &d_emb, &m.inputs, c);
        }
        let h = &a.resid[cfg.n_layers];
        norm_backward(
            &mp.hnorm,
            &mut gm.hnorm,
            &mut a.d_resid,
            &d_hn,
            h,
            &m.hn_mean,
            &m.hn_rstd,
            c,
            &mut a.bwd.discard,
        );
    }

    /// Auxiliary-loss-free balancing after a training step: each MoE block's bias moves by
    /// `γ sign(mean load - load_i)` for the loads of the forward in `acts`
    /// ([`super::params::MoeParams::update_bias`]). Nothing without an MoE or with `γ = 0`.
    pub fn balance_experts(&mut self, acts: &Activations) {
        let Some(m) = self.cfg.moe else {
            return;
        };
        if m.bias_update_speed == 0.0 {
            return;
        }
        let blocks = self.params.blocks.iter_mut().zip(&acts.layers);
        let mtp = self
            .params
            .mtp
            .as_deref_mut()
            .zip(acts.mtp.as_ref())
            .map(|(p, a)| (&mut p.block, &a.block));
        for (blk, a) in blocks.chain(mtp) {
            if let MlpParams::Moe(p) = &mut blk.mlp {
                if a.moe.load.len() == m.n_routed {
                    p.update_bias(&a.moe.load, m.bias_update_speed);
                }
            }
        }
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
        // after the final norm, which read the head's gradient from the scratch the MTP
        // depth's backward reuses
        if a.has_loss {
            self.mtp_backward(a, grads);
        }
        for l in (0..cfg.n_layers).rev() {
            self.block_backward(
                &p.blocks[l],
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
