//! What every BPE variant shares: token ids, counting adjacent pairs, replacing a pair by a
//! new token, the tie-break rule, and encoding with a merge table. No training loop and no
//! text splitting here: [`basic`](super::basic) and [`train`](super::train) add those.

use rustc_hash::FxHashMap;

/// A token id. In a tiktoken rank file the id *is* the rank: the lower, the earlier the
/// token was merged. Ids 0..=255 are the single bytes.
pub type Rank = u32;

/// Two adjacent tokens `(left, right)`.
pub type Pair = (Rank, Rank);

/// The number of base tokens: one per byte value.
pub const N_BYTES: usize = 256;

// ANCHOR: pair_counts
/// How often each adjacent pair occurs in `ids`.
///
/// ```
/// # use llm_lessons::bpe::base::pair_counts;
/// // ids=[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}
/// let counts = pair_counts(&[1, 2, 3, 1, 2]);
/// assert_eq!(counts[&(1, 2)], 2);
/// assert_eq!(counts[&(2, 3)], 1);
/// assert_eq!(counts.len(), 3);
/// ```
pub fn pair_counts(ids: &[Rank]) -> FxHashMap<Pair, usize> {
    let mut counts = FxHashMap::default();
    add_pair_counts(ids, 1, &mut counts);
    counts
}

/// Adds `weight` to the count of each adjacent pair of `ids` (a word seen `weight` times).
pub fn add_pair_counts(ids: &[Rank], weight: usize, counts: &mut FxHashMap<Pair, usize>) {
    for w in ids.windows(2) {
        *counts.entry((w[0], w[1])).or_default() += weight;
    }
}
// ANCHOR_END: pair_counts

// ANCHOR: merge
/// Replaces every occurrence of `pair` in `ids`, left to right, by `new_id`.
///
/// ```
/// # use llm_lessons::bpe::base::merge;
/// // ids=[1, 2, 3, 1, 2], pair=(1, 2), idx=4 -> [4, 3, 4]
/// assert_eq!(merge(&[1, 2, 3, 1, 2], (1, 2), 4), vec![4, 3, 4]);
/// // Overlaps resolve left to right: (5, 5) in [5, 5, 5] -> [6, 5]
/// assert_eq!(merge(&[5, 5, 5], (5, 5), 6), vec![6, 5]);
/// ```
pub fn merge(ids: &[Rank], pair: Pair, new_id: Rank) -> Vec<Rank> {
    let mut out = Vec::with_capacity(ids.len());
    let mut i = 0;
    while i < ids.len() {
        if i + 1 < ids.len() && (ids[i], ids[i + 1]) == pair {
            out.push(new_id);
            i += 2;
        } else {
            out.push(ids[i]);
            i += 1;
        }
    }
    out
}
// ANCHOR_END: merge

// ANCHOR: best_pair
/// The pair to merge next: the most frequent one; among pairs with the same count, the
/// smallest `(left, right)` by id. Ids of the first merges are byte values, so early ties go
/// to the pair whose bytes sort first (`(b'e', b' ')` before `(b't', b'h')`). Any fixed rule
/// would do; this one does not depend on the order in which pairs were counted, so every
/// trainer here (and any re-implementation) gives the same merges.
///
/// ```
/// # use llm_lessons::bpe::base::best_pair;
/// # use rustc_hash::FxHashMap;
/// let counts: FxHashMap<(u32, u32), usize> =
///     [((116, 104), 3), ((104, 105), 3), ((105, 115), 2)].into_iter().collect();
/// assert_eq!(best_pair(&counts), Some(((104, 105), 3))); // a tie at 3: (104, 105) < (116, 104)
/// ```
pub fn best_pair(counts: &FxHashMap<Pair, usize>) -> Option<(Pair, usize)> {
    counts
        .iter()
        .filter(|(_, &c)| c > 0)
        .max_by(|(p, c), (q, d)| c.cmp(d).then(q.cmp(p)))
        .map(|(&p, &c)| (p, c))
}
// ANCHOR_END: best_pair

/// One step of training: `pair` became token `id`, having been seen `count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// The two tokens merged.
    pub pair: Pair,
    /// The token they make.
    pub id: Rank,
    /// How often the pair occurred when it was merged.
    pub count: usize,
}

/// A trained merge table and the bytes of every token: ids 0..=255 are the bytes, then each
/// merge's new token in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeTable {
    /// The merges in the order they were learned.
    pub merges: Vec<Merge>,
    /// `tokens[id]`: the bytes token `id` stands for.
    pub tokens: Vec<Vec<u8>>,
    /// Bytes -> id, to spot a merge that makes bytes another merge already made.
    index: FxHashMap<Vec<u8>, Rank>,
}

impl MergeTable {
    /// The table with no merges: 256 tokens, one per byte.
    pub fn bytes_only() -> Self {
        let tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let index = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as Rank))
            .collect();
        MergeTable {
            merges: Vec::new(),
            tokens,
            index,
        }
    }

    /// Records a merge of `pair` (seen `count` times); returns the id of what it makes.
    /// Usually a new token; but `("ab", "c")` and later `("a", "bc")` make the same bytes, and
    /// then the second merge reuses the first one's id (a rank file holds each token once).
    pub fn push(&mut self, pair: Pair, count: usize) -> Rank {
        let mut bytes = self.tokens[pair.0 as usize].clone();
        bytes.extend_from_slice(&self.tokens[pair.1 as usize]);
        let next = self.tokens.len() as Rank;
        let id = *self.index.entry(bytes.clone()).or_insert(next);
        if id == next {
            self.tokens.push(bytes);
        }
        self.merges.push(Merge { pair, id, count });
        id
    }

    /// The number of tokens: 256 + the number of merges.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token's text, bytes that are not UTF-8 shown as `\xNN`.
    pub fn token_text(&self, id: Rank) -> String {
        show_bytes(&self.tokens[id as usize])
    }

    // ANCHOR: encode_with_merges
    /// Encodes bytes with the merge table, as training would have: start from the bytes,
    /// then repeatedly apply the earliest-learned merge present anywhere, until none is.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Vec<Rank> {
        // pair -> (when it was learned, the token it makes)
        let learned: FxHashMap<Pair, (usize, Rank)> = self
            .merges
            .iter()
            .enumerate()
            .map(|(step, m)| (m.pair, (step, m.id)))
            .collect();
        let mut ids: Vec<Rank> = bytes.iter().map(|&b| b as Rank).collect();
        while ids.len() >= 2 {
            // The pair present that training merged first.
            let next = ids
                .windows(2)
                .filter_map(|w| learned.get(&(w[0], w[1])).map(|&l| (l, (w[0], w[1]))))
                .min();
            match next {
                Some(((_, id), pair)) => ids = merge(&ids, pair, id),
                None => break,
            }
        }
        ids
    }
    // ANCHOR_END: encode_with_merges

    /// The bytes of a sequence of ids (ids out of range are an error).
    pub fn decode_bytes(&self, ids: &[Rank]) -> crate::Result<Vec<u8>> {
        let mut out = Vec::new();
        for &id in ids {
            let token =
                self.tokens
                    .get(id as usize)
                    .ok_or_else(|| crate::Error::UnknownTokenId {
                        id,
                        n_vocab: self.tokens.len(),
                        specials: String::new(),
                    })?;
            out.extend_from_slice(token);
        }
        Ok(out)
    }
}

/// Bytes as text for display: UTF-8 where valid, `\xNN` for the rest, whitespace escaped
/// (`"\n"` shows as `\n`, a space as itself).
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
