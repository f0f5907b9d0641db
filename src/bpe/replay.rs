//! Encoding by replaying a merge list, as Hugging Face tokenizers' BPE and llama.cpp do with
//! the vocabulary of a `tokenizer.json` or a GGUF file (`tokenizer.ggml.merges`).
//!
//! A piece starts as its bytes' ids. Among adjacent pairs, the one that is the *earliest
//! merge of the list* is merged (the leftmost if the same pair occurs twice), until no
//! adjacent pair is a merge. tiktoken's rule ([`byte_pair_merge`](super::encoding::byte_pair_merge))
//! merges any pair whose concatenation is a token instead, which can differ (the chapter's
//! `abc` example): a file's list is the rule its model was trained with.
//!
//! Two things a merge-list vocabulary may do that a tiktoken one cannot: its ids need not
//! start with the bytes (SmolLM2's special tokens are ids 0 to 16, its bytes 17 onwards), and
//! it may lack some bytes (SmolLM2 has 235 of the 256). A byte without a token is dropped
//! before merging, as Hugging Face's BPE does without an unknown token, so its neighbours
//! can merge across it.

use rustc_hash::FxHashMap;

use super::base::{show_bytes, Rank};
use crate::{Error, Result};

/// A vocabulary's merges, ready to replay.
#[derive(Debug, Clone)]
pub struct MergeList {
    /// The merges in rank order, as pairs of ids.
    list: Vec<(Rank, Rank)>,
    /// `(left, right)` -> `(rank of the merge, id of the token it makes)`.
    pairs: FxHashMap<(Rank, Rank), (Rank, Rank)>,
    /// Each byte's id; `Rank::MAX` for a byte the vocabulary has no token for.
    byte_ids: [Rank; 256],
    /// `whole[id]`: replaying the merges on the token's own bytes gives the token back, so a
    /// piece with exactly these bytes is this one id without merging.
    whole: Vec<bool>,
}

impl MergeList {
    /// The merge list `merges` (pairs of ids, in rank order) over `tokens` (each id's bytes,
    /// empty for an id that is no ordinary token) with `ids` (bytes -> id). A merge of an id
    /// without bytes, or whose result is not a token, is an error naming the vocabulary
    /// `name`. A pair listed twice keeps its first rank, as llama.cpp does.
    pub fn new(
        name: &str,
        tokens: &[Vec<u8>],
        ids: &FxHashMap<Vec<u8>, Rank>,
        merges: &[(Rank, Rank)],
    ) -> Result<MergeList> {
        let mut byte_ids = [Rank::MAX; 256];
        for (id, t) in tokens.iter().enumerate() {
            if let [b] = t[..] {
                if byte_ids[b as usize] == Rank::MAX {
                    byte_ids[b as usize] = id as Rank;
                }
            }
        }
        let mut pairs = FxHashMap::default();
        pairs.reserve(merges.len());
        let bytes_of = |id: Rank, rank: usize| {
            tokens
                .get(id as usize)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{name}: merge {rank} joins id {id}, which is not an ordinary token"
                    ))
                })
        };
        for (rank, &(a, b)) in merges.iter().enumerate() {
            let joined = [bytes_of(a, rank)?.as_slice(), bytes_of(b, rank)?].concat();
            let id = *ids.get(&joined).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{name}: merge {rank} makes {:?}, which is not a token",
                    show_bytes(&joined)
                ))
            })?;
            pairs.entry((a, b)).or_insert((rank as Rank, id));
        }
        let mut list = MergeList {
            list: merges.to_vec(),
            pairs,
            byte_ids,
            whole: Vec::new(),
        };
        let (mut symbols, mut out) = (Vec::new(), Vec::new());
        list.whole = (0..tokens.len())
            .map(|id| {
                out.clear();
                list.merge_piece(&tokens[id], &mut symbols, &mut out);
                !tokens[id].is_empty() && out == [id as Rank]
            })
            .collect();
        Ok(list)
    }

    /// The merges in rank order, as pairs of ids.
    pub fn merges(&self) -> &[(Rank, Rank)] {
        &self.list
    }

    /// Whether a piece equal to token `id`'s bytes encodes as `id` alone.
    pub fn is_whole(&self, id: Rank) -> bool {
        self.whole.get(id as usize).copied().unwrap_or(false)
    }

    // ANCHOR: merge_piece
    /// Appends the ids of one piece to `out`. `symbols` is scratch space: the current ids,
    /// each with the rank of the merge it makes with the next one (`Rank::MAX` if none).
    ///
    /// As in [`byte_pair_merge`](super::encoding::byte_pair_merge), a piece is short, so a
    /// scan for the lowest rank costs less than Hugging Face's heap.
    pub fn merge_piece(&self, bytes: &[u8], symbols: &mut Vec<(Rank, Rank)>, out: &mut Vec<Rank>) {
        let rank_of = |a: Rank, b: Rank| self.pairs.get(&(a, b)).map_or(Rank::MAX, |m| m.0);
        symbols.clear();
        // bytes the vocabulary lacks are dropped, as Hugging Face does
        symbols.extend(
            bytes
                .iter()
                .map(|&b| self.byte_ids[b as usize])
                .filter(|&id| id != Rank::MAX)
                .map(|id| (id, Rank::MAX)),
        );
        for i in 1..symbols.len() {
            symbols[i - 1].1 = rank_of(symbols[i - 1].0, symbols[i].0);
        }
        // the lowest rank, the leftmost among equals (min_by_key keeps the first)
        let lowest = |symbols: &[(Rank, Rank)]| {
            let (i, &(_, rank)) = symbols.iter().enumerate().min_by_key(|(_, s)| s.1)?;
            (rank != Rank::MAX).then_some(i)
        };
        while let Some(i) = lowest(symbols) {
            // symbols i and i+1 become the merged token; its pairs with both neighbours are new
            let (left, right) = (symbols[i].0, symbols[i + 1].0);
            symbols[i].0 = self.pairs[&(left, right)].1;
            symbols.remove(i + 1);
            symbols[i].1 = match symbols.get(i + 1) {
                Some(next) => rank_of(symbols[i].0, next.0),
                None => Rank::MAX,
            };
            if i > 0 {
                symbols[i - 1].1 = rank_of(symbols[i - 1].0, symbols[i].0);
            }
        }
        out.extend(symbols.iter().map(|s| s.0));
    }
    // ANCHOR_END: merge_piece
}
