//! The merge algorithm in its plainest form, as the chapter first shows it: count the words,
//! start every word as its bytes, then again and again count every adjacent pair over all
//! words and merge the most frequent one. Every step recounts everything, which is clear and
//! slow: [`train`](super::train) gets the same merges fast. No regex split here (words are
//! cut at whitespace, which is dropped) and no special tokens.

use rustc_hash::FxHashMap;

use super::base::{add_pair_counts, best_pair, merge, MergeTable, Rank, N_BYTES};

/// The course's example text (from the Hugging Face course's tokenizer chapter, lowercased,
/// punctuation spaced out).
pub const COURSE_TEXT: &str = "this is the hugging face course . this chapter is about \
tokenization . this section shows several tokenizer algorithms .";

/// Each distinct whitespace-separated word with its count, in order of first appearance.
///
/// ```
/// # use llm_lessons::bpe::basic::word_counts;
/// assert_eq!(word_counts("a b a"), vec![("a".to_string(), 2), ("b".to_string(), 1)]);
/// ```
pub fn word_counts(text: &str) -> Vec<(String, usize)> {
    let mut index: FxHashMap<&str, usize> = FxHashMap::default();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for word in text.split_whitespace() {
        let i = *index.entry(word).or_insert_with(|| {
            counts.push((word.to_string(), 0));
            counts.len() - 1
        });
        counts[i].1 += 1;
    }
    counts
}

/// One word of the training set as tokens, with how often it occurs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word's tokens.
    pub ids: Vec<Rank>,
    /// How often the word occurs.
    pub count: usize,
}

/// What [`train_words`] did, step by step: the table, and each word's tokens after every merge
/// (`splits[k]`: after `k` merges), for showing the algorithm at work.
#[derive(Debug, Clone)]
pub struct BasicTraining {
    /// The merges learned and the tokens' bytes.
    pub table: MergeTable,
    /// `splits[k][i]`: word `i` after `k` merges.
    pub splits: Vec<Vec<Word>>,
}

// ANCHOR: train_words
/// Learns merges until the vocabulary has `vocab_size` tokens (256 bytes + merges) or no pair
/// occurs any more. Each step recounts every pair of every word (weighted by the word's
/// count) and merges the best pair ([`best_pair`]: highest count, ties to the smallest pair).
pub fn train_words<S: AsRef<[u8]>>(words: &[(S, usize)], vocab_size: usize) -> BasicTraining {
    let mut table = MergeTable::bytes_only();
    let mut current: Vec<Word> = words
        .iter()
        .map(|(w, count)| Word {
            ids: w.as_ref().iter().map(|&b| b as Rank).collect(),
            count: *count,
        })
        .collect();
    let mut splits = vec![current.clone()];
    while table.vocab_size() < vocab_size.max(N_BYTES) {
        let mut counts = FxHashMap::default();
        for word in &current {
            add_pair_counts(&word.ids, word.count, &mut counts);
        }
        let Some((pair, count)) = best_pair(&counts) else {
            break; // every word is a single token
        };
        let id = table.push(pair, count);
        for word in &mut current {
            word.ids = merge(&word.ids, pair, id);
        }
        splits.push(current.clone());
    }
    BasicTraining { table, splits }
}
// ANCHOR_END: train_words

/// Trains on the whole of `text` as one byte sequence (minbpe's "basic" tokenizer): merges
/// may then cross spaces and punctuation, which is why real tokenizers split first.
pub fn train_bytes(text: &str, vocab_size: usize) -> MergeTable {
    train_words(&[(text.as_bytes(), 1)], vocab_size).table
}

/// The first `n` merges of a training as a Markdown table: the pair, its count, the new
/// token and how the words in `show` split after the merge (the book's table is made by
/// this function, and a test checks that the book has its current output).
pub fn merges_markdown(
    training: &BasicTraining,
    words: &[(String, usize)],
    show: &[&str],
    n: usize,
) -> String {
    let table = &training.table;
    let split = |step: usize, word: &str| -> String {
        let i = words
            .iter()
            .position(|(w, _)| w == word)
            .expect("a training word");
        let ids = &training.splits[step][i].ids;
        let parts: Vec<String> = ids.iter().map(|&id| table.token_text(id)).collect();
        parts.join(" ")
    };
    let mut out = String::from("| step | pair | count | new token |");
    for w in show {
        out.push_str(&format!(" `{w}` |"));
    }
    out.push_str("\n|---|---|---|---|");
    out.push_str(&"---|".repeat(show.len()));
    out.push('\n');
    out.push_str("| 0 | | | (the bytes) |");
    for w in show {
        out.push_str(&format!(" {} |", split(0, w)));
    }
    out.push('\n');
    for (k, m) in table.merges.iter().take(n).enumerate() {
        out.push_str(&format!(
            "| {} | `{}` + `{}` | {} | `{}` = {} |",
            k + 1,
            table.token_text(m.pair.0),
            table.token_text(m.pair.1),
            m.count,
            table.token_text(m.id),
            m.id
        ));
        for w in show {
            out.push_str(&format!(" {} |", split(k + 1, w)));
        }
        out.push('\n');
    }
    out
}
