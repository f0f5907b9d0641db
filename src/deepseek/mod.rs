//! # Chapter 9: DeepSeek-V3's ideas by hand
//!
//! The three ideas are variants of chapter 4's model, switched on in its
//! [`crate::gpt::GptConfig`] (`mla`, `moe`, `mtp`), each a forward/backward pair by hand:
//! multi-head latent attention ([`crate::gpt::mla`]: keys and values from a small latent,
//! a RoPE key shared by the heads, a cache of the latent alone with the up-projections
//! absorbed), DeepSeekMoE ([`crate::gpt::moe`]: shared and routed experts, sigmoid
//! affinities, top-K chosen with a bias that only chooses, auxiliary-loss-free balancing
//! and the sequence-wise balance loss), and multi-token prediction (the `mtp` depth of
//! [`crate::gpt::Gpt`]). `tests/deepseek_reference.rs` matches transformers'
//! `DeepseekV3ForCausalLM`.
//!
//! This module is the chapter around them: the cache each attention keeps ([`cache`]),
//! the ideas one at a time on the toy world ([`ablation`]), the experts' load with and
//! without balancing and what they specialise in ([`experts`]), MTP drafting a second
//! token for speculative decoding ([`speculative`]), and the tour step ([`tour`]).

pub mod ablation;
pub mod cache;
pub mod experts;
pub mod speculative;
pub mod tour;
