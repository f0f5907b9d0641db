//! Chapter 2: word2vec. Words become dense vectors learned by predicting a word's
//! neighbours (skip-gram).
//!
//! The chapter climbs in four steps, one file each:
//!
//! - [`one_hot`] vectors and why they fail: every two words are equally far apart.
//! - [`softmax`]: skip-gram with the full softmax, as the slides write it,
//!   P(o|c) = exp(u_o·v_c) / Σ_w exp(u_w·v_c), with a centre vector v and a context vector u
//!   for every word; gradients by hand, checked by finite differences. Every step touches the
//!   whole vocabulary, so it is trained only on the small toy world.
//! - [`sgns`]: skip-gram with negative sampling, the trainer people use, following
//!   word2vec.c and gensim (noise distribution unigram^0.75, sub-sampling of frequent words,
//!   shrunk windows, a linearly decaying learning rate), multi-threaded Hogwild-style.
//! - [`vectors`] and [`eval`]: what the vectors are good for (neighbours by cosine,
//!   analogies a − b + c, a PCA picture) and how they are scored on the standard sets
//!   (WordSim353, SimLex-999, the analogy questions); the word2vec text format that gensim
//!   reads.
//!
//! [`vocab`] holds what both trainers share: the vocabulary with its counts, min_count,
//! the sub-sampling probabilities and the noise distribution.
//!
//! Not here: hierarchical softmax and CBOW (word2vec.c has both; the course uses
//! skip-gram with negative sampling), phrases, fastText's sub-word vectors.

pub mod eval;
pub mod sgns;
pub mod softmax;
pub mod tour;
pub mod tricks;
pub mod vectors;
pub mod vocab;

pub use eval::{evaluate_analogies, evaluate_pairs, AnalogyScore, PairScore};
pub use sgns::{train_sgns, Sgns, SgnsConfig, TrainReport};
pub use softmax::{SoftmaxGrads, SoftmaxSkipGram};
pub use vectors::Embeddings;
pub use vocab::{EncodedCorpus, Vocab};

// ANCHOR: context_pairs
/// The (centre, context) pairs of skip-gram for one sentence: every word with each word at
/// most `window` positions away on either side.
///
/// ```
/// use llm_lessons::word2vec::context_pairs;
/// // "the cat sat" with window 1: each word with its direct neighbours.
/// assert_eq!(context_pairs(&[0, 1, 2], 1), vec![(0, 1), (1, 0), (1, 2), (2, 1)]);
/// ```
pub fn context_pairs(sentence: &[u32], window: usize) -> Vec<(u32, u32)> {
    let mut pairs = Vec::new();
    for (t, &centre) in sentence.iter().enumerate() {
        let lo = t.saturating_sub(window);
        let hi = (t + window).min(sentence.len() - 1);
        for (j, &context) in sentence.iter().enumerate().take(hi + 1).skip(lo) {
            if j != t {
                pairs.push((centre, context));
            }
        }
    }
    pairs
}
// ANCHOR_END: context_pairs

/// The one-hot vector of word `index` in a vocabulary of `n_vocab` words: all zeros but a 1.
///
/// Every two different one-hot vectors have cosine similarity 0 and distance √2: "cat" is
/// as far from "dog" as from "democracy". That is what dense vectors fix.
///
/// ```
/// use llm_lessons::word2vec::one_hot;
/// assert_eq!(one_hot(2, 4), vec![0.0, 0.0, 1.0, 0.0]);
/// ```
pub fn one_hot(index: usize, n_vocab: usize) -> Vec<f64> {
    let mut v = vec![0.0; n_vocab];
    v[index] = 1.0;
    v
}

/// Logistic sigmoid σ(x) = 1 / (1 + e^(−x)).
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_pairs_respect_the_window_and_sentence_edges() {
        let pairs = context_pairs(&[10, 11, 12, 13, 14], 2);
        // 2 + 3 + 4 + 3 + 2 neighbours.
        assert_eq!(pairs.len(), 14);
        assert!(pairs.contains(&(12, 10)) && pairs.contains(&(12, 14)));
        assert!(!pairs.contains(&(10, 13)));
        assert!(context_pairs(&[7], 5).is_empty());
        assert!(context_pairs(&[], 5).is_empty());
    }

    #[test]
    fn one_hot_vectors_are_all_equally_far_apart() {
        let d = |a: &[f64], b: &[f64]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let (a, b, c) = (one_hot(0, 5), one_hot(1, 5), one_hot(4, 5));
        assert!((d(&a, &b) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(d(&a, &b), d(&a, &c));
        assert_eq!(a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>(), 0.0);
    }
}
