//! Chapter 5: LoRA, fine-tuning a frozen model through low-rank adapters.
//!
//! The adapter itself is a seam of chapter 4's model: [`crate::gpt::lora`] puts
//! `y = x W^T + s (x A^T) B^T` on any projection ([`crate::gpt::Linear`]) with its
//! hand-written backward, freezes the base, merges and unmerges, and
//! [`crate::gpt::peft`] saves and loads the adapters in Hugging Face PEFT's format. This
//! chapter uses them:
//!
//! - [`finetune`]: a fine-tune run, start to end: adapters on a base model, chapter 4's
//!   training run on them alone, the PEFT files and the loss log saved;
//! - [`tour`]: the tour's step, chapter 4's toy-world model fine-tuned to a second grammar
//!   that differs in known ways ([`crate::data::grammar::Grammar::toy_world_shifted`]),
//!   scored against both grammars' true entropies;
//! - [`sweep`]: the book's rank sweep on the same task: a full fine-tune, LoRA at five
//!   ranks on two sets of projections, and the head alone (`llm lora sweep` runs each in a
//!   process of its own, for its peak RSS).
//!
//! Not here: QLoRA's quantized base (chapter 6 brings the formats) and DoRA.

pub mod finetune;
pub mod sweep;
pub mod tour;

pub use finetune::{finetune, run_to_end, FinetuneConfig, Finetuned, HeldOut};
