//! The vocabulary both trainers share: words with their counts, `min_count`, the
//! sub-sampling of frequent words and the noise distribution of negative sampling.

use rand::Rng;
use rustc_hash::FxHashMap;

use crate::{Error, Result};

/// Words kept for training, most frequent first, with their counts.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Words by id: id 0 is the most frequent (ties in byte order of the word).
    pub words: Vec<String>,
    /// `counts[id]`: occurrences of `words[id]` in the corpus.
    pub counts: Vec<u64>,
    index: FxHashMap<String, u32>,
}

/// A corpus as word ids: sentences laid end to end, words outside the vocabulary dropped.
#[derive(Debug, Clone, Default)]
pub struct EncodedCorpus {
    /// Every kept word's id, sentence after sentence.
    pub ids: Vec<u32>,
    /// `ids[starts[i]..starts[i + 1]]` is sentence i (so `starts` ends with `ids.len()`).
    pub starts: Vec<usize>,
    /// Words read, the dropped ones included (word2vec's "raw words").
    pub raw_words: u64,
}

impl EncodedCorpus {
    /// Sentence `i` as ids.
    pub fn sentence(&self, i: usize) -> &[u32] {
        &self.ids[self.starts[i]..self.starts[i + 1]]
    }

    /// Number of sentences.
    pub fn n_sentences(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }
}

impl Vocab {
    /// Counts the words of `sentences` and keeps those seen at least `min_count` times.
    ///
    /// Errors: the corpus has no word, or no word is frequent enough.
    pub fn build<S: AsRef<str>>(sentences: &[Vec<S>], min_count: u64) -> Result<Vocab> {
        let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
        for s in sentences {
            for w in s {
                *counts.entry(w.as_ref()).or_default() += 1;
            }
        }
        if counts.is_empty() {
            return Err(Error::EmptyCorpus {
                what: "the word2vec training corpus".into(),
            });
        }
        let n_distinct = counts.len();
        let max_count = counts.values().copied().max().unwrap_or(0);
        let mut kept: Vec<(&str, u64)> = counts
            .into_iter()
            .filter(|&(_, c)| c >= min_count)
            .collect();
        if kept.is_empty() {
            return Err(Error::TooSmall {
                what: "the word2vec vocabulary".into(),
                why: format!(
                    "none of the {n_distinct} distinct words occurs min_count = {min_count} times \
                     (the most frequent occurs {max_count} times): lower --min-count"
                ),
            });
        }
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Ok(Vocab::from_counts(
            kept.into_iter().map(|(w, c)| (w.to_string(), c)).collect(),
        ))
    }

    /// A vocabulary from (word, count) pairs, in the order given.
    pub fn from_counts(words_counts: Vec<(String, u64)>) -> Vocab {
        let (words, counts): (Vec<String>, Vec<u64>) = words_counts.into_iter().unzip();
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Vocab {
            words,
            counts,
            index,
        }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when the vocabulary has no word (never, for one [`Vocab::build`] returns).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// Total count of the vocabulary's words (word2vec's `train_words`).
    pub fn total_count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The corpus as ids; words not in the vocabulary are dropped, as word2vec.c and gensim
    /// do (so windows reach across them).
    pub fn encode<S: AsRef<str>>(&self, sentences: &[Vec<S>]) -> EncodedCorpus {
        let mut out = EncodedCorpus {
            starts: vec![0],
            ..Default::default()
        };
        for s in sentences {
            out.raw_words += s.len() as u64;
            out.ids.extend(s.iter().filter_map(|w| self.id(w.as_ref())));
            if out.ids.len() > *out.starts.last().unwrap_or(&0) {
                out.starts.push(out.ids.len());
            }
        }
        out
    }

    /// For every word, the probability of keeping an occurrence of it (sub-sampling, see
    /// [`keep_probability`]).
    pub fn keep_probabilities(&self, sample: f64) -> Vec<f64> {
        let total = self.total_count();
        self.counts
            .iter()
            .map(|&c| keep_probability(c, total, sample))
            .collect()
    }

    /// The noise distribution of negative sampling, as an alias table (see
    /// [`noise_distribution`]).
    pub fn noise_table(&self, exponent: f64) -> AliasTable {
        AliasTable::new(&noise_distribution(&self.counts, exponent))
    }
}

// ANCHOR: keep_probability
/// Probability of keeping one occurrence of a word seen `count` times among `total`
/// (sub-sampling of frequent words), with threshold `sample` (t, 1e-3 by default).
///
/// word2vec.c and gensim use `(sqrt(f / t) + 1) · t / f` with f = count / total, capped at
/// 1; the paper's formula is `sqrt(t / f)`. Both keep rare words and thin out "the" and
/// "of"; the code's keeps a little more. `sample = 0` keeps everything.
///
/// ```
/// use llm_lessons::word2vec::vocab::keep_probability;
/// // A word that is 1% of the corpus, t = 1e-3: (sqrt(10) + 1) / 10.
/// let p = keep_probability(10_000, 1_000_000, 1e-3);
/// assert!((p - (10f64.sqrt() + 1.0) / 10.0).abs() < 1e-12);
/// assert_eq!(keep_probability(5, 1_000_000, 1e-3), 1.0);
/// ```
pub fn keep_probability(count: u64, total: u64, sample: f64) -> f64 {
    if sample <= 0.0 || count == 0 {
        return 1.0;
    }
    let f = count as f64 / total as f64;
    (((f / sample).sqrt() + 1.0) * sample / f).min(1.0)
}
// ANCHOR_END: keep_probability

// ANCHOR: noise_distribution
/// The noise distribution of negative sampling: P_n(w) ∝ count(w)^exponent, with exponent
/// 0.75 (word2vec's choice: rare words drawn more often than their frequency, frequent ones
/// less).
///
/// ```
/// use llm_lessons::word2vec::vocab::noise_distribution;
/// let p = noise_distribution(&[16, 1], 0.75);
/// // 16^0.75 = 8, 1^0.75 = 1.
/// assert!((p[0] - 8.0 / 9.0).abs() < 1e-12 && (p[1] - 1.0 / 9.0).abs() < 1e-12);
/// ```
pub fn noise_distribution(counts: &[u64], exponent: f64) -> Vec<f64> {
    let weights: Vec<f64> = counts.iter().map(|&c| (c as f64).powf(exponent)).collect();
    let z: f64 = weights.iter().sum();
    weights.into_iter().map(|w| w / z).collect()
}
// ANCHOR_END: noise_distribution

/// Draws from a discrete distribution in O(1) (Walker's alias method): one uniform index,
/// one coin. word2vec.c uses a table of 10^8 slots and gensim a binary search over the
/// cumulative table; all three draw from the same distribution.
#[derive(Debug, Clone)]
pub struct AliasTable {
    /// Probability of keeping slot i (scaled to u32 range for an integer comparison).
    threshold: Vec<u32>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// The table for probabilities `p` (non-negative, summing to 1, not empty).
    pub fn new(p: &[f64]) -> AliasTable {
        let n = p.len();
        let mut scaled: Vec<f64> = p.iter().map(|&x| x * n as f64).collect();
        let mut threshold = vec![u32::MAX; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            threshold[s] = (scaled[s] * u32::MAX as f64) as u32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        AliasTable { threshold, alias }
    }

    /// One draw.
    #[inline]
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        let r: u64 = rng.gen();
        let i = ((r >> 32) * self.threshold.len() as u64) >> 32;
        if (r as u32) < self.threshold[i as usize] {
            i as u32
        } else {
            self.alias[i as usize]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn corpus(text: &str) -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    #[test]
    fn build_sorts_by_count_and_applies_min_count() {
        let c = corpus("the cat sat\nthe dog sat\nthe end");
        let v = Vocab::build(&c, 2).unwrap();
        assert_eq!(v.words, ["the", "sat"]);
        assert_eq!(v.counts, [3, 2]);
        let e = v.encode(&c);
        assert_eq!(e.ids, [0, 1, 0, 1, 0]);
        assert_eq!(e.n_sentences(), 3);
        assert_eq!(e.sentence(2), [0]);
        assert_eq!(e.raw_words, 8);
    }

    #[test]
    fn empty_corpus_and_empty_vocabulary_are_errors() {
        let err = Vocab::build::<String>(&[], 1).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Vocab::build(&corpus("a b c"), 5).unwrap_err().to_string();
        assert!(
            err.contains("min_count = 5") && err.contains("--min-count"),
            "{err}"
        );
    }

    #[test]
    fn alias_table_draws_the_distribution() {
        let p = noise_distribution(&[100, 10, 1, 50, 7], 0.75);
        let table = AliasTable::new(&p);
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 1_000_000;
        let mut seen = [0usize; 5];
        for _ in 0..n {
            seen[table.sample(&mut rng) as usize] += 1;
        }
        for (i, &s) in seen.iter().enumerate() {
            let f = s as f64 / n as f64;
            // 5 standard deviations of a binomial frequency.
            let sd = (p[i] * (1.0 - p[i]) / n as f64).sqrt();
            assert!(
                (f - p[i]).abs() < 5.0 * sd + 1e-9,
                "word {i}: {f} vs {}",
                p[i]
            );
        }
    }

    #[test]
    fn sub_sampling_keeps_rare_words_and_thins_frequent_ones() {
        let total = 1_000_000;
        assert_eq!(keep_probability(1, total, 1e-3), 1.0);
        let frequent = keep_probability(50_000, total, 1e-3);
        assert!(frequent < 0.2, "{frequent}");
        // Always at least the paper's sqrt(t / f).
        assert!(frequent >= (1e-3f64 / 0.05).sqrt());
        assert_eq!(keep_probability(50_000, total, 0.0), 1.0);
    }
}
