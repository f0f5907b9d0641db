//! # Chapter 7: a real pretrained model
//!
//! Every model so far was trained here, and is tiny. This chapter runs a real one with the
//! crate's own code: SmolLM2-135M-Instruct, a Llama of 30 layers that Hugging Face trained
//! on trillions of tokens and then taught to chat, from the Q4_1 GGUF file llama.cpp runs.
//! Nothing in the model is new: chapter 4's blocks, chapter 6's GGUF reader and integer
//! kernels. What is new is everything around the weights that makes it a chat model:
//!
//! - [`load`]: one call from a GGUF file to a [`Pretrained`] model: the weights
//!   ([`crate::quant::gguf::llama`]), the tokenizer stored in the file, its chat template
//!   and the token that ends its turn. Later chapters (QLoRA, prompting, RAG,
//!   post-training) load SmolLM2 through it;
//! - [`chat`]: the chat template, the Jinja program in the file that lays out a
//!   conversation as the one string the model was trained on, rendered as transformers
//!   renders it;
//! - [`stream`]: text as the tokens come, holding back a character cut between tokens;
//! - [`conversation`]: a conversation with the model: the history rendered each turn, the
//!   KV cache kept for the part that did not change, the reply streamed and stopped at the
//!   end-of-turn token ([`crate::gpt::generate::generate_streaming`]);
//! - [`tour`]: the tour's step, one question to the fetched model.
//!
//! ```no_run
//! use llm_lessons::gpt::generate::Sampling;
//! use llm_lessons::quant::gguf::llama::Precision;
//! use llm_lessons::real_model;
//!
//! let smollm = real_model::load(
//!     "data/external/SmolLM2-135M-Instruct.Q4_1.gguf".as_ref(),
//!     Precision::AsStored,
//! )?;
//! let mut chat = smollm.conversation(None)?;
//! let reply = chat.reply("What is 2+2?", 100, &Sampling::greedy(), |piece| {
//!     print!("{piece}");
//!     Ok(())
//! })?;
//! println!("\n{} tokens, {:?}", reply.ids.len(), reply.stop);
//! # Ok::<(), llm_lessons::Error>(())
//! ```

pub mod chat;
pub mod conversation;
pub mod stream;
pub mod tour;

pub use chat::{ChatTemplate, Message};
pub use conversation::{Conversation, Reply};
pub use stream::{TokenStream, Utf8Stream};

use std::path::Path;

use crate::bpe::Allowed;
use crate::gpt::tokens::Tokens;
use crate::gpt::Gpt;
use crate::quant::gguf::llama::{model_from_gguf, tokens_from_gguf, Precision};
use crate::quant::gguf::Gguf;
use crate::{Error, Result};

/// A pretrained model and everything a chat with it needs, from one GGUF file.
pub struct Pretrained {
    /// `general.name`, or the file's name.
    pub name: String,
    pub model: Gpt,
    /// The tokenizer stored in the file.
    pub tokens: Tokens,
    /// The chat template (`tokenizer.chat_template`), if the file has one.
    pub chat: Option<ChatTemplate>,
    /// The token with which the model ends its turn: `tokenizer.ggml.eot_token_id`, or
    /// else `tokenizer.ggml.eos_token_id` (SmolLM2: `<|im_end|>`, 2).
    pub end_of_turn: Option<u32>,
    /// Every token that ends generation: the end of turn and the end of text.
    pub stop_tokens: Vec<u32>,
    /// `tokenizer.ggml.bos_token_id`, put before a text when `add_bos` (not before a chat
    /// prompt: the template writes what the model expects).
    pub bos: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (false when absent).
    pub add_bos: bool,
}

/// A token id from the metadata, checked against the model's vocabulary.
fn token_id(g: &Gguf, key: &str, vocab_size: usize) -> Result<Option<u32>> {
    let Some(v) = g.get(key) else {
        return Ok(None);
    };
    match v.as_u64() {
        Some(id) if (id as usize) < vocab_size => Ok(Some(id as u32)),
        _ => Err(Error::InvalidArgument(format!(
            "GGUF metadata: {key} is {v:?}, not a token id of the vocabulary of {vocab_size}"
        ))),
    }
}

impl Pretrained {
    /// The model of a parsed GGUF file ([`model_from_gguf`]: architecture `llama`, every
    /// tensor checked, the projections as `precision` says), its tokenizer
    /// ([`tokens_from_gguf`]), chat template and end-of-turn token. A file without a
    /// tokenizer, or with one that does not fit the model, is an error that says so.
    pub fn from_gguf(g: &Gguf, precision: Precision) -> Result<Pretrained> {
        let model = model_from_gguf(g, precision)?;
        if g.get("tokenizer.ggml.model").is_none() {
            return Err(Error::InvalidArgument(
                "the file has no tokenizer (tokenizer.ggml.model is missing): a chat needs one"
                    .into(),
            ));
        }
        let tokens = tokens_from_gguf(g)?;
        tokens.check_fits(&model.cfg)?;
        let v = model.cfg.vocab_size;
        let eos = token_id(g, "tokenizer.ggml.eos_token_id", v)?;
        let end_of_turn = token_id(g, "tokenizer.ggml.eot_token_id", v)?.or(eos);
        let mut stop_tokens: Vec<u32> = end_of_turn.into_iter().chain(eos).collect();
        stop_tokens.dedup();
        let add_bos = matches!(
            g.get("tokenizer.ggml.add_bos_token"),
            Some(crate::quant::gguf::Value::Bool(true))
        );
        Ok(Pretrained {
            name: g
                .get("general.name")
                .and_then(|v| v.as_str())
                .unwrap_or("model")
                .to_string(),
            model,
            tokens,
            chat: ChatTemplate::from_gguf(g)?,
            end_of_turn,
            stop_tokens,
            bos: token_id(g, "tokenizer.ggml.bos_token_id", v)?,
            add_bos,
        })
    }

    /// The chat template, or an error saying the model has none.
    pub fn template(&self) -> Result<&ChatTemplate> {
        self.chat.as_ref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} has no chat template (tokenizer.chat_template): it is not a chat model",
                self.name
            ))
        })
    }

    /// A text's ids, the tokenizer's special tokens' text being ordinary text, after the
    /// BOS token if the file asks for one.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let bos = self.bos.filter(|_| self.add_bos);
        bos.into_iter().chain(self.tokens.encode(text)).collect()
    }

    /// The ids of a rendered chat prompt: the special tokens' text in it (`<|im_start|>`)
    /// are those tokens, and no BOS is added, as transformers' `apply_chat_template`
    /// tokenizes by default. (So special-token text typed inside a message is that token
    /// too, as there.)
    pub fn encode_chat(&self, prompt: &str) -> Result<Vec<u32>> {
        match &self.tokens {
            Tokens::Bytes => Ok(self.tokens.encode(prompt)),
            Tokens::Bpe { encoding, .. } => encoding.encode(prompt, Allowed::All),
        }
    }

    /// The ids of a conversation laid out by the chat template, ending with the opening of
    /// the assistant's turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode_chat(&self.template()?.render(messages, true)?)
    }

    /// The text of `ids` (bytes that are not UTF-8 become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokens.decode(ids)
    }

    /// A new conversation, with a system message if given (without, the template may put
    /// its own: SmolLM2's does). Errors if the model has no chat template.
    pub fn conversation(&self, system: Option<&str>) -> Result<Conversation<'_>> {
        Conversation::new(self, system)
    }
}

// ANCHOR: load
/// Reads a GGUF file into a [`Pretrained`] model ([`Pretrained::from_gguf`]); errors name
/// the file. The file is only read.
pub fn load(path: &Path, precision: Precision) -> Result<Pretrained> {
    let g = Gguf::read(path)?;
    let mut loaded = Pretrained::from_gguf(&g, precision).map_err(|e| match e {
        Error::InvalidArgument(message) => Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        },
        e => e,
    })?;
    if g.get("general.name").is_none() {
        if let Some(stem) = path.file_stem() {
            loaded.name = stem.to_string_lossy().into_owned();
        }
    }
    Ok(loaded)
}
// ANCHOR_END: load

#[cfg(test)]
mod tests;
