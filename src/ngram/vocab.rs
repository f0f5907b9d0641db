//! Words to ids and back, with the three special tokens every n-gram model needs.

use rustc_hash::FxHashMap;

/// Id of `<unk>`: every word not in the vocabulary.
pub const UNK: u32 = 0;
/// Id of `<s>`: the start of a sentence. It is only ever a context, never predicted.
pub const BOS: u32 = 1;
/// Id of `</s>`: the end of a sentence. Predicting it is what makes the probabilities of
/// all sentences (of every length) sum to 1.
pub const EOS: u32 = 2;

/// The spelling of the special tokens, as in ARPA files and NLTK.
pub const UNK_WORD: &str = "<unk>";
pub const BOS_WORD: &str = "<s>";
pub const EOS_WORD: &str = "</s>";

/// A vocabulary: ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`; words follow, most frequent first.
#[derive(Debug, Clone)]
pub struct Vocab {
    words: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl Vocab {
    /// Every word seen at least `min_count` times in `sentences`; rarer words become `<unk>`.
    pub fn build(sentences: &[Vec<String>], min_count: u32) -> Vocab {
        let mut freq: FxHashMap<&str, u32> = FxHashMap::default();
        for s in sentences {
            for w in s {
                *freq.entry(w.as_str()).or_insert(0) += 1;
            }
        }
        let mut kept: Vec<(&str, u32)> = freq
            .into_iter()
            .filter(|&(w, c)| c >= min_count.max(1) && !is_special(w))
            .collect();
        // Most frequent first, ties alphabetical: a stable order makes runs reproducible.
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let words = [UNK_WORD, BOS_WORD, EOS_WORD]
            .into_iter()
            .chain(kept.into_iter().map(|(w, _)| w))
            .map(String::from)
            .collect();
        Vocab::from_words(words)
    }

    fn from_words(words: Vec<String>) -> Vocab {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Vocab { words, index }
    }

    /// Number of ids, the three special tokens included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when only the special tokens are there.
    pub fn is_empty(&self) -> bool {
        self.words.len() <= 3
    }

    /// The id of `word`, or [`UNK`] when it is not in the vocabulary.
    pub fn id(&self, word: &str) -> u32 {
        self.index.get(word).copied().unwrap_or(UNK)
    }

    /// The id of `word` if it is in the vocabulary.
    pub fn get(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The word with this id.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// All words, by id.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The ids of a sentence's words (unknown words become [`UNK`]).
    pub fn encode<S: AsRef<str>>(&self, sentence: &[S]) -> Vec<u32> {
        sentence.iter().map(|w| self.id(w.as_ref())).collect()
    }
}

fn is_special(w: &str) -> bool {
    matches!(w, UNK_WORD | BOS_WORD | EOS_WORD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_first_then_by_frequency() {
        let s = vec![vec!["b".to_string(), "a".into(), "b".into(), "c".into()]];
        let v = Vocab::build(&s, 1);
        assert_eq!(v.words(), ["<unk>", "<s>", "</s>", "b", "a", "c"]);
        assert_eq!(v.id("zzz"), UNK);
        let v2 = Vocab::build(&s, 2);
        assert_eq!(v2.words(), ["<unk>", "<s>", "</s>", "b"]);
    }
}
