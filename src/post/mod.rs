//! Chapter 8: post-training as Llama 3 does it, on a chat task whose right answers the
//! code knows.
//!
//! - [`task`]: the task ("write about the queen with castle"), its chat format, the judge
//!   that checks an answer exactly, and the loss masks;
//! - [`sft`]: supervised fine-tuning on demonstrations, the loss on the assistant's tokens;
//! - [`reward`]: a reward model (a scalar head on the last hidden state) trained on
//!   preference pairs with the Bradley-Terry loss;
//! - [`rlhf`]: a policy gradient (REINFORCE with a leave-one-out baseline) against the
//!   reward model, with a KL penalty to the SFT model;
//! - [`dpo`]: Direct Preference Optimization as TRL computes it, and Llama 3's version
//!   (formatting tokens masked, an NLL term on the chosen answers);
//! - [`eval`]: a model's answers scored by the judge, and its KL from another model;
//! - [`batch`], [`run`]: conversations packed into batches, and the loop every method runs
//!   on chapter 4's trainer (logs, checkpoints, resuming);
//! - [`pipeline`]: the whole chapter, from pre-training a base model to the table of every
//!   method scored by the judge, and the preference pairs the judge labels; [`report`]:
//!   the loss masks compared, RLHF at several KL coefficients, and the charts;
//! - [`real`]: the same SFT on a real model, SmolLM2-135M-Instruct through LoRA adapters,
//!   judged before and after.
//!
//! Not here: PPO's value network and clipping (see [`rlhf`] for why), rejection sampling
//! (Llama 3's other tool), and human preferences.

pub mod batch;
pub mod dpo;
pub mod eval;
pub mod pipeline;
pub mod real;
pub mod report;
pub mod reward;
pub mod rlhf;
pub mod run;
pub mod sft;
pub mod task;
pub mod tour;
