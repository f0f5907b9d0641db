//! # Chapter 1: n-gram language models
//!
//! A language model gives every sentence a probability. Counting whole sentences cannot do
//! it ([`whole_sentence_probability`] gives 0 to anything unseen), so the chain rule splits
//! a sentence into one prediction per word, and the Markov assumption keeps only the last
//! n−1 words of each history. What is left is counting n-grams ([`counts`]) and turning
//! counts into probabilities that never say 0 ([`smoothing`]): add-k, linear interpolation,
//! Kneser-Ney and modified Kneser-Ney. The model scores text ([`NgramModel::evaluate`]:
//! cross-entropy and perplexity), generates it ([`NgramModel::sample`]) and exports to the
//! ARPA format other toolkits read ([`arpa`]).
//!
//! ```
//! use llm_lessons::ngram::{NgramConfig, NgramModel, Smoothing};
//! let train: Vec<Vec<String>> = ["the cat sat", "the dog sat", "the cat ran"]
//!     .iter().map(|s| s.split(' ').map(String::from).collect()).collect();
//! let model = NgramModel::train(&train, &[], NgramConfig::new(2, Smoothing::Mle)).unwrap();
//! // P(cat | the) = c(the cat) / c(the •) = 2 / 3
//! assert!((model.prob_words(&["the"], "cat") - 2.0 / 3.0).abs() < 1e-12);
//! ```
//!
//! Not here: back-off models (Katz), pruning, and class-based models.

pub mod arpa;
pub mod counts;
mod model;
pub mod smoothing;
pub mod tour;
pub mod vocab;

pub use arpa::ArpaModel;
pub use counts::{NgramCounts, Padding};
pub use model::{fit_mixture_weights, ContextStats, Evaluation, NgramConfig, NgramModel, Style};
pub use smoothing::Smoothing;
pub use vocab::Vocab;

// ANCHOR: whole_sentence
/// The naive estimate the chapter starts from: P(sentence) = count(sentence) / N, counting
/// whole sentences of the corpus. Any sentence not in the corpus gets exactly 0.
pub fn whole_sentence_probability<S: AsRef<str>>(corpus: &[Vec<String>], sentence: &[S]) -> f64 {
    let same = |s: &Vec<String>| {
        s.len() == sentence.len() && s.iter().zip(sentence).all(|(a, b)| a == b.as_ref())
    };
    corpus.iter().filter(|s| same(s)).count() as f64 / corpus.len() as f64
}
// ANCHOR_END: whole_sentence

/// Splits sentences into the first `1 − heldout_fraction` for training and the rest held
/// out (a contiguous tail, as the Python peers do).
pub fn split_heldout(
    sentences: &[Vec<String>],
    heldout_fraction: f64,
) -> (&[Vec<String>], &[Vec<String>]) {
    let n_held = (sentences.len() as f64 * heldout_fraction) as usize;
    sentences.split_at(sentences.len() - n_held)
}
