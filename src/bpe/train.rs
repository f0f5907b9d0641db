//! The trainer for real corpora. Same merges as [`basic::train_words`](super::basic::train_words)
//! (same counts, same tie-break), found without recounting:
//!
//! 1. Pre-tokenize with the split pattern, on all threads, and count each distinct piece
//!    once: a 5 MB text has about a million pieces but only tens of thousands of distinct ones.
//! 2. Count every adjacent pair once, weighted by the piece counts, and remember which
//!    pieces hold each pair.
//! 3. Keep the pairs in a priority queue (a max-heap on count, then smallest pair). After a
//!    merge, only the pieces that held the merged pair change: take their pairs out of the
//!    counts, merge, put the new pairs in, and push the pairs whose count changed. Heap
//!    entries whose count is out of date are skipped when they come up ("lazy deletion").
//!
//! Not here: a minimum frequency, and limits on token length.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::base::{merge, MergeTable, Pair, Rank, N_BYTES};
use super::encoding::{Encoding, ENDOFTEXT};
use super::split::{parallel_parts, Pattern, Split};
use crate::{Error, Result};

/// A trained tokenizer: its merges and the split it was trained with.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The merges learned and the tokens' bytes.
    pub table: MergeTable,
    /// The split the text was cut with before training.
    pub pattern: Pattern,
    /// Pieces in the corpus.
    pub pieces: usize,
    /// Distinct pieces: the "words" the merge loop works on.
    pub distinct_pieces: usize,
}

impl Trained {
    /// The tiktoken-compatible encoding: ranks = token ids, the pattern, and `<|endoftext|>`
    /// right after the last rank.
    pub fn encoding(&self, name: &str) -> Result<Encoding> {
        let n = self.table.tokens.len() as Rank;
        Encoding::new(
            name,
            self.table.tokens.clone(),
            self.pattern.split(),
            &[(ENDOFTEXT, n)],
        )
    }
}

// ANCHOR: piece_counts
/// Each distinct piece of `text` under `split`, with its count. Parts of the text go to
/// different threads, each counting into its own map; the maps are then added up.
pub fn piece_counts<'t>(text: &'t str, split: &Split) -> FxHashMap<&'t str, usize> {
    parallel_parts(text, 256 * 1024)
        .par_iter()
        .map(|part| {
            let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
            split.for_each_piece(part, |p| *counts.entry(p).or_default() += 1);
            counts
        })
        .reduce(FxHashMap::default, |a, b| {
            // Add the smaller map into the bigger one.
            let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
            for (p, c) in small {
                *big.entry(p).or_default() += c;
            }
            big
        })
}
// ANCHOR_END: piece_counts

/// Trains on `text` split by `pattern` until the vocabulary holds `vocab_size` tokens (256
/// bytes + merges; special tokens come on top), or no pair is left.
pub fn train(text: &str, vocab_size: usize, pattern: Pattern) -> Result<Trained> {
    if vocab_size < N_BYTES {
        return Err(Error::InvalidArgument(format!(
            "the vocabulary size must be at least 256 (the bytes), got {vocab_size}"
        )));
    }
    let counts = piece_counts(text, &pattern.split());
    if counts.is_empty() {
        return Err(Error::EmptyCorpus {
            what: "the training text".into(),
        });
    }
    let mut words: Vec<(&[u8], usize)> = counts.iter().map(|(p, &c)| (p.as_bytes(), c)).collect();
    words.sort_unstable(); // the same order whatever the threads did
    let table = train_piece_counts(&words, vocab_size);
    Ok(Trained {
        table,
        pattern,
        pieces: counts.values().sum(),
        distinct_pieces: counts.len(),
    })
}

// ANCHOR: train_piece_counts
/// The merge loop on distinct pieces with their counts (see the module doc).
pub fn train_piece_counts(words: &[(&[u8], usize)], vocab_size: usize) -> MergeTable {
    let mut table = MergeTable::bytes_only();
    let mut ids: Vec<Vec<Rank>> = words
        .iter()
        .map(|(w, _)| w.iter().map(|&b| b as Rank).collect())
        .collect();
    let count: Vec<i64> = words.iter().map(|&(_, c)| c as i64).collect();
    // pair -> its count in the corpus, and the pieces that hold it (maybe some that no
    // longer do: merging those is a no-op).
    let mut pair_count: FxHashMap<Pair, i64> = FxHashMap::default();
    let mut pieces_with: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
    for (w, word) in ids.iter().enumerate() {
        for p in word.windows(2) {
            *pair_count.entry((p[0], p[1])).or_default() += count[w];
            pieces_with.entry((p[0], p[1])).or_default().push(w as u32);
        }
    }
    // Max-heap on (count, smallest pair): the tie-break of `base::best_pair`.
    let mut queue: BinaryHeap<(i64, Reverse<Pair>)> =
        pair_count.iter().map(|(&p, &c)| (c, Reverse(p))).collect();
    let mut changed: Vec<Pair> = Vec::new();
    while table.vocab_size() < vocab_size {
        let Some((c, Reverse(pair))) = queue.pop() else {
            break;
        };
        if pair_count.get(&pair) != Some(&c) {
            continue; // stale: the count changed after this entry was pushed
        }
        if c <= 0 {
            break;
        }
        let id = table.push(pair, c as usize);
        let mut holders = pieces_with.remove(&pair).unwrap_or_default();
        holders.sort_unstable();
        holders.dedup();
        for w in holders {
            let w = w as usize;
            let old = &ids[w];
            if !old.windows(2).any(|p| (p[0], p[1]) == pair) {
                continue;
            }
            let new = merge(old, pair, id);
            for p in old.windows(2) {
                *pair_count.get_mut(&(p[0], p[1])).expect("counted") -= count[w];
                changed.push((p[0], p[1]));
            }
            for p in new.windows(2) {
                let p = (p[0], p[1]);
                *pair_count.entry(p).or_default() += count[w];
                changed.push(p);
                if p.0 == id || p.1 == id {
                    pieces_with.entry(p).or_default().push(w as u32);
                }
            }
            ids[w] = new;
        }
        changed.sort_unstable();
        changed.dedup();
        for p in changed.drain(..) {
            match pair_count.get(&p) {
                Some(&c) if c > 0 => queue.push((c, Reverse(p))),
                Some(_) => {
                    pair_count.remove(&p);
                }
                None => {}
            }
        }
    }
    table
}
// ANCHOR_END: train_piece_counts
