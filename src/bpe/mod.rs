//! # Chapter 3: Byte-Pair Encoding
//!
//! A language model reads tokens, not characters or words: pieces of text from a fixed
//! vocabulary, frequent words whole and rare words in parts. Byte-pair encoding learns that
//! vocabulary from text by starting with the 256 bytes and repeatedly merging the most
//! frequent adjacent pair into a new token. Each file adds one idea (as in Karpathy's minbpe):
//!
//! - [`base`]: pair counts, one merge, the tie-break rule, encoding with a merge table;
//! - [`basic`]: the training loop in its plainest form, on the course's example;
//! - [`split`]: the regex pre-tokenization of GPT-2, cl100k and SmolLM2 (merges never cross a
//!   piece);
//! - [`encoding`]: byte-level BPE with special tokens that gives exactly tiktoken's ids, and
//!   reads and writes tiktoken's and GPT-2's files;
//! - [`replay`]: encoding by replaying a merge list, as Hugging Face tokenizers and llama.cpp
//!   do (a GGUF file's tokenizer);
//! - [`train`]: a trainer fast enough for real corpora (a priority queue, incremental counts,
//!   parallel pre-tokenization);
//! - [`view`]: how a text splits into tokens;
//! - [`tour`]: the chapter's step of `llm tour`.
//!
//! ```
//! use llm_lessons::bpe::{train, Pattern};
//! let text = "low lower lowest low low newer newest";
//! let trained = train::train(text, 256 + 5, Pattern::Gpt2).unwrap();
//! let first = &trained.table.merges[0];
//! // The pieces are "low", " lower", " lowest", " low", " low", " newer", " newest":
//! // ('l', 'o') and ('o', 'w') both occur 5 times, the most; the smaller pair wins the tie.
//! assert_eq!(trained.table.token_text(first.id), "lo");
//! let enc = trained.encoding("tiny").unwrap();
//! let ids = enc.encode_ordinary("lowest newest");
//! assert_eq!(enc.decode(&ids).unwrap(), "lowest newest");
//! ```
//!
//! Not here: unigram and WordPiece tokenizers, normalization (NFC, lowercasing), and
//! sampling several segmentations (BPE-dropout).

pub mod base;
pub mod basic;
pub mod encoding;
pub mod replay;
pub mod split;
pub mod tour;
pub mod train;
pub mod view;

pub use base::{Merge, MergeTable, Pair, Rank};
pub use encoding::{Allowed, Encoding, ENDOFTEXT};
pub use split::{Pattern, Split};
pub use train::Trained;

#[cfg(test)]
mod tests;
