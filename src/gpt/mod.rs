//! # Chapter 4: from GPT to Llama
//!
//! A transformer language model in plain Rust, with no automatic differentiation: every
//! layer is a pair of functions, `*_forward` and `*_backward`, side by side in its module,
//! as in llm.c. The forward writes its output and keeps what the backward will need (a
//! norm's row statistics, attention's probabilities); the backward takes the gradient of
//! the output and *adds* the gradients of the inputs and parameters into their buffers.
//! Every backward is checked against finite differences in the tests, and the whole model
//! against PyTorch and Hugging Face transformers (`tests/llama_reference.rs`).
//!
//! One [`GptConfig`] describes both architectures; each switch is one idea:
//!
//! | | GPT-2 | Llama |
//! |---|---|---|
//! | norm | [`norm::layer_norm_forward`] | [`norm::rms_norm_forward`] |
//! | positions | [`embedding::position_embedding_forward`] | [`rope::rope_forward`] |
//! | key/value heads | one per query head | shared by groups ([`attention`]) |
//! | MLP | [`mlp::gelu_forward`] | [`mlp::swiglu_forward`] |
//! | output head | tied to the embedding | its own matrix |
//!
//! Layout: activations are flat `f32` slices in row-major order, `(B, T, C)` for `B`
//! sequences of `T` positions of width `C`; linear weights are `(out, in)` as in PyTorch.
//!
//! ```
//! use llm_lessons::gpt::{Activations, Gpt, GptConfig};
//! let mut cfg = GptConfig::llama_tiny();
//! (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.d_ff) = (50, 16, 1, 24);
//! let model = Gpt::init(cfg, 0).unwrap();
//! let mut acts = Activations::new(&model.cfg, 1, 4);
//! let loss = model.forward_loss(&mut acts, &[1, 2, 3, 4], &[2, 3, 4, 5]).unwrap();
//! // small random weights give nearly uniform predictions: loss about ln 50
//! assert!((loss - 50f32.ln()).abs() < 0.1);
//! ```
//!
//! The model is assembled from those kernels in three layers: [`linear::Linear`], a
//! projection that owns its weight; [`params`], the parameters as the model is built (a
//! block's norms, attention projections and MLP), walked by one visitor that names every
//! tensor and says whether it is trainable; and [`block`], one transformer block's forward
//! (shared by training and cached generation) and backward.
//!
//! Training is in [`train`]; loading and saving Hugging Face checkpoints in [`hf`].
//!
//! Generation with a key/value cache and sampling is in [`generate`].
//!
//! Checkpoints, with the state of a training run to resume it, are in [`checkpoint`]; a
//! whole run (held-out loss, checkpoints kept and averaged, resuming on the same data) in
//! [`run`], and the tokenizer a model folder carries in [`tokens`].

pub mod attention;
pub mod block;
pub mod charts;
pub mod checkpoint;
pub mod config;
pub mod embedding;
pub mod experiments;
pub mod figures;
pub mod generate;
pub mod hf;
pub mod linear;
pub mod lora;
pub mod loss;
pub mod math;
pub mod mla;
pub mod mlp;
mod model;
pub mod moe;
pub mod norm;
pub mod optim;
pub mod params;
pub mod peft;
pub mod quant;
pub mod recipe;
pub mod residual;
pub mod rope;
pub mod run;
pub mod shapes;
pub mod tokens;
pub mod tour;
pub mod train;

#[cfg(test)]
pub(crate) mod gradcheck;
#[cfg(test)]
mod tests;

pub use config::{GptConfig, MlaConfig, Mlp, MoeConfig, MtpConfig, Norm, Positions};
pub use linear::{Linear, Weight};
pub use model::{mtp_targets, Activations, Gpt, MtpActs};
pub use params::{
    Attention, AttnParams, BlockParams, Expert, Init, MlaParams, MlaQuery, MlpParams, MoeParams,
    MtpParams, NormParams, ParamSpec, Params, Tensor,
};
