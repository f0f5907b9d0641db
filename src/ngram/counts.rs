//! Counting n-grams of every order 1..=n, the raw material of every smoothing method.
//!
//! An n-gram of word ids is packed into one `u128` key, the first word in the high bits, so
//! that `key >> bits` is its context (all words but the last) and `key & mask` its suffix
//! (all words but the first). Counting is one hash-map pass per order; the orders are
//! counted in parallel.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::vocab::{Vocab, BOS, EOS};
use crate::{Error, Result};

/// A packed n-gram of word ids.
pub type Key = u128;

/// How a sentence is padded before counting and scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padding {
    /// `<s>` tokens put before the words.
    pub bos: usize,
    /// `</s>` tokens put after the words.
    pub eos: usize,
}

/// Packs n-grams of ids into [`Key`]s with a fixed number of bits per id.
#[derive(Debug, Clone, Copy)]
pub struct Packer {
    /// Bits per word id.
    pub bits: u32,
}

impl Packer {
    /// A packer for ids below `vocab_size`.
    pub fn new(vocab_size: usize) -> Packer {
        let bits = (usize::BITS - (vocab_size.max(2) - 1).leading_zeros()).max(1);
        Packer { bits }
    }

    /// The longest n-gram that fits in a key.
    pub fn max_order(&self) -> usize {
        (Key::BITS / self.bits) as usize
    }

    /// The key of `ids`, first id in the high bits.
    #[inline]
    pub fn pack(&self, ids: &[u32]) -> Key {
        ids.iter().fold(0, |k, &id| (k << self.bits) | id as Key)
    }

    /// The ids of an n-gram key of `order` words.
    pub fn unpack(&self, key: Key, order: usize) -> Vec<u32> {
        let mask = (1u128 << self.bits) - 1;
        (0..order)
            .rev()
            .map(|i| ((key >> (i as u32 * self.bits)) & mask) as u32)
            .collect()
    }

    /// The context of an n-gram key: every word but the last.
    #[inline]
    pub fn context(&self, key: Key) -> Key {
        key >> self.bits
    }

    /// The last word of an n-gram key.
    #[inline]
    pub fn last(&self, key: Key) -> u32 {
        (key & ((1u128 << self.bits) - 1)) as u32
    }

    /// The suffix of an n-gram key of `order` words: every word but the first.
    #[inline]
    pub fn suffix(&self, key: Key, order: usize) -> Key {
        key & ((1u128 << (self.bits * (order as u32 - 1))) - 1)
    }

    /// The first word of an n-gram key of `order` words.
    #[inline]
    pub fn first(&self, key: Key, order: usize) -> u32 {
        (key >> (self.bits * (order as u32 - 1))) as u32
    }

    /// The key of `context` followed by `word`.
    #[inline]
    pub fn extend(&self, context: Key, word: u32) -> Key {
        (context << self.bits) | word as Key
    }
}

/// Raw counts c(w1..wk) of every k-gram, for k = 1..=order, of a padded corpus.
#[derive(Debug, Clone)]
pub struct NgramCounts {
    /// The highest order counted.
    pub order: usize,
    /// How sentences were padded.
    pub padding: Padding,
    /// Packs ids into keys.
    pub packer: Packer,
    /// `by_order[k - 1]` maps each k-gram that occurs to its count.
    pub by_order: Vec<FxHashMap<Key, u32>>,
    /// Number of tokens counted (words and padding).
    pub tokens: u64,
}

/// A sentence's ids with `padding.bos` `<s>` in front and `padding.eos` `</s>` behind.
pub fn pad(ids: &[u32], padding: Padding) -> Vec<u32> {
    let mut out = Vec::with_capacity(ids.len() + padding.bos + padding.eos);
    out.extend(std::iter::repeat_n(BOS, padding.bos));
    out.extend_from_slice(ids);
    out.extend(std::iter::repeat_n(EOS, padding.eos));
    out
}

// ANCHOR: count_order
/// c(w1..wk): how often each k-gram occurs in the padded sentences.
fn count_order(padded: &[Vec<u32>], k: usize, packer: Packer) -> FxHashMap<Key, u32> {
    let mut counts = FxHashMap::default();
    for sentence in padded {
        for ngram in sentence.windows(k) {
            *counts.entry(packer.pack(ngram)).or_insert(0) += 1;
        }
    }
    counts
}
// ANCHOR_END: count_order

impl NgramCounts {
    /// Counts every k-gram, k = 1..=order, of the sentences (already mapped to ids).
    pub fn build(
        sentences: &[Vec<u32>],
        vocab: &Vocab,
        order: usize,
        padding: Padding,
    ) -> Result<NgramCounts> {
        let packer = Packer::new(vocab.len());
        if order == 0 {
            return Err(Error::InvalidArgument(
                "the order must be at least 1".into(),
            ));
        }
        if order > packer.max_order() {
            return Err(Error::InvalidArgument(format!(
                "order {order} is too high for a vocabulary of {} words: at most {}",
                vocab.len(),
                packer.max_order()
            )));
        }
        let padded: Vec<Vec<u32>> = sentences.par_iter().map(|s| pad(s, padding)).collect();
        let tokens = padded.iter().map(|s| s.len() as u64).sum();
        // The orders are independent: count them in parallel.
        let by_order: Vec<_> = (1..=order)
            .into_par_iter()
            .map(|k| count_order(&padded, k, packer))
            .collect();
        Ok(NgramCounts {
            order,
            padding,
            packer,
            by_order,
            tokens,
        })
    }

    /// c(ngram) for an n-gram of ids (0 when unseen or longer than the order).
    pub fn count(&self, ngram: &[u32]) -> u32 {
        if ngram.is_empty() || ngram.len() > self.order {
            return 0;
        }
        self.by_order[ngram.len() - 1]
            .get(&self.packer.pack(ngram))
            .copied()
            .unwrap_or(0)
    }

    /// The `top` most frequent k-grams, most frequent first (ties by key, for stable output).
    pub fn most_frequent(&self, k: usize, top: usize) -> Vec<(Vec<u32>, u32)> {
        let mut all: Vec<(Key, u32)> = self.by_order[k - 1].iter().map(|(&g, &c)| (g, c)).collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(top);
        all.into_iter()
            .map(|(g, c)| (self.packer.unpack(g, k), c))
            .collect()
    }
}

// ANCHOR: continuation_counts
/// N1+(• w2..wk): for each k-gram, the number of distinct words seen just before it,
/// read off the (k+1)-grams. Kneser-Ney's lower orders use these instead of raw counts.
pub fn continuation_counts(
    higher: &FxHashMap<Key, u32>,
    k: usize,
    packer: Packer,
) -> FxHashMap<Key, u32> {
    let mut n1plus = FxHashMap::default();
    for &ngram in higher.keys() {
        *n1plus.entry(packer.suffix(ngram, k + 1)).or_insert(0) += 1;
    }
    n1plus
}
// ANCHOR_END: continuation_counts

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_and_unpack_round_trip() {
        let p = Packer::new(1000);
        assert_eq!(p.bits, 10);
        let k = p.pack(&[3, 999, 7]);
        assert_eq!(p.unpack(k, 3), vec![3, 999, 7]);
        assert_eq!(p.context(k), p.pack(&[3, 999]));
        assert_eq!(p.suffix(k, 3), p.pack(&[999, 7]));
        assert_eq!(p.first(k, 3), 3);
        assert_eq!(p.last(k), 7);
        assert_eq!(p.extend(p.pack(&[3, 999]), 7), k);
        assert_eq!(p.max_order(), 12);
    }

    #[test]
    fn counts_of_a_tiny_corpus() {
        let sents = vec![vec!["a".to_string(), "b".into()], vec!["a".into()]];
        let vocab = Vocab::build(&sents, 1);
        let ids: Vec<Vec<u32>> = sents.iter().map(|s| vocab.encode(s)).collect();
        let c = NgramCounts::build(&ids, &vocab, 2, Padding { bos: 1, eos: 1 }).unwrap();
        let (a, b) = (vocab.id("a"), vocab.id("b"));
        assert_eq!(c.count(&[a]), 2);
        assert_eq!(c.count(&[BOS, a]), 2);
        assert_eq!(c.count(&[a, b]), 1);
        assert_eq!(c.count(&[a, EOS]), 1);
        assert_eq!(c.count(&[b, a]), 0);
        assert_eq!(c.tokens, 7);
        // "a" follows only <s>; "</s>" follows "a" and "b".
        let cont = continuation_counts(&c.by_order[1], 1, c.packer);
        assert_eq!(cont[&c.packer.pack(&[a])], 1);
        assert_eq!(cont[&c.packer.pack(&[EOS])], 2);
    }
}
