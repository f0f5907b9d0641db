//! # llm-lessons
//!
//! How large language models work, built piece by piece in plain Rust. Each chapter of
//! the course is a module here; the notebooks, the lessons, the book and the `llm`
//! command line all call into this library.
//!
//! | chapter | module |
//! |---|---|
//! | 1. n-gram language models | [`ngram`] |
//! | 2. word2vec | [`word2vec`] |
//! | 3. Byte-pair encoding | [`bpe`] |
//! | 4. From GPT to Llama | [`gpt`] |
//! | 5. LoRA | [`lora`] (the adapter itself: [`gpt::lora`]) |
//! | 6. Quantization | [`quant`] (GGUF files: [`quant::gguf`]) |
//! | 7. A real pretrained model | [`real_model`] (one call: [`real_model::load`]) |
//! | 8. Post-training | [`post`] |
//! | 9. DeepSeek-V3's ideas | [`deepseek`] (the layers: [`gpt::mla`], [`gpt::moe`]) |
//!
//! Shared helpers: [`data`] (corpora, the toy-world grammar), [`plot`], [`progress`],
//! [`error`].

pub mod bpe;
pub mod data;
pub mod deepseek;
pub mod error;
pub mod gpt;
pub mod lora;
pub mod ngram;
pub mod plot;
pub mod post;
pub mod progress;
pub mod quant;
pub mod real_model;
pub mod report;
pub mod simd;
pub mod tour;
pub mod word2vec;

pub use error::{Error, Result};

/// The book's Rust snippets compile and run as doctests, so the book cannot drift from
/// the crate. (Code shown with `{{#include}}` is the crate's own source.)
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch01_ngram.md")]
pub struct BookChapter01;

/// Chapter 2's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch02_word2vec.md")]
pub struct BookChapter02;

/// Chapter 3's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch03_bpe.md")]
pub struct BookChapter03;

/// Chapter 4's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch04_gpt.md")]
pub struct BookChapter04;

/// Chapter 5's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch05_lora.md")]
pub struct BookChapter05;

/// Chapter 6's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch06_quantization.md")]
pub struct BookChapter06;

/// Chapter 7's Rust snippets, compiled as doctests (`no_run`: they need the fetched model).
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch07_real_model.md")]
pub struct BookChapter07;

/// Chapter 8's Rust snippets, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../book/src/ch08_post_training.md")]
pub struct BookChapter08;

#[cfg(doctest)]
#[doc = include_str!("../book/src/ch09_deepseek.md")]
pub struct BookChapter09;
