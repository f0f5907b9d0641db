//! # Chapter 3 exercises: byte-pair encoding
//!
//! You write eight small functions, from counting pairs to a whole training loop, GPT-2's
//! split, and tiktoken's merge by ranks. The tests at the bottom of this file check them, first against answers worked out
//! by hand (the arithmetic is in the comments), then against the crate on real-looking text.
//!
//! ## How to work
//!
//! 1. Write your code in `mod learner`, just below. Each function starts as a stub that fails
//!    with `not implemented: Exercise N (...)` and a hint. Replace the body and keep the
//!    signature. The stubs' parameters start with `_` so that they don't warn while unused:
//!    remove the `_` when you use one. Your functions may call each other.
//! 2. Run the tests against your code, all of them or one exercise at a time:
//!
//!    ```text
//!    cargo test --features learner --test 03_bpe
//!    cargo test --features learner --test 03_bpe exercise_3
//!    ```
//!
//! 3. Without `--features learner` the same tests check `mod reference`, which calls the
//!    crate (`llm_lessons::bpe`). `cargo test --test 03_bpe` always passes. Try an exercise
//!    before you read its reference; the crate's file that each hint names, in `src/bpe/`, is
//!    the full answer.
//!
//! The book's page "How to do the exercises" (`book/src/lessons.md`) describes this workflow.
//! Chapter 3 of the book explains the ideas behind each exercise.
//!
//! ## Conventions (the crate's)
//!
//! - A token id is a `u32`. Ids 0..=255 are the single bytes; merge number `i` (from 0)
//!   makes token `256 + i`.
//! - A merge table is a `Vec<Merge>` in the order the merges were learned.
//! - Text is turned into bytes with `text.as_bytes()` (UTF-8): `"é"` is the two bytes
//!   `[195, 169]`.

use std::collections::HashMap;

/// An adjacent pair of token ids `(left, right)`.
pub type Pair = (u32, u32);

/// One learned merge: `pair` is replaced by the new token `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    pub pair: Pair,
    pub id: u32,
}

// ============================================================================================
// Your code. Replace each `unimplemented!(...)` with your implementation.
// ============================================================================================

#[cfg_attr(not(feature = "learner"), allow(dead_code))] // used only with `--features learner`
mod learner {
    use super::{Merge, Pair};
    use std::collections::HashMap;

    /// Exercise 1: count every adjacent pair.
    ///
    /// `[1, 2, 3, 1, 2]` has the pairs (1, 2), (2, 3), (3, 1), (1, 2): (1, 2) twice, the
    /// others once. A sequence shorter than 2 has no pair.
    pub fn pair_counts(_ids: &[u32]) -> HashMap<Pair, usize> {
        unimplemented!(
            "Exercise 1 (pair_counts): implement `fn pair_counts` in lessons/03_bpe.rs — walk \
             over `ids.windows(2)` and count each (w[0], w[1]); the crate's version: \
             `pair_counts` in src/bpe/base.rs"
        )
    }

    /// Exercise 2: one merge. Replace every occurrence of `pair` in `ids`, scanning left to
    /// right, by `new_id`.
    ///
    /// `[1, 2, 3, 1, 2]`, pair (1, 2), new id 4 gives `[4, 3, 4]`. Occurrences overlap in
    /// `[5, 5, 5]` with pair (5, 5): the leftmost wins, giving `[6, 5]`.
    pub fn merge(_ids: &[u32], _pair: Pair, _new_id: u32) -> Vec<u32> {
        unimplemented!(
            "Exercise 2 (merge): implement `fn merge` in lessons/03_bpe.rs — walk with an index \
             i; if ids[i], ids[i+1] is the pair, push new_id and skip 2, else push ids[i] and \
             skip 1; the crate's version: `merge` in src/bpe/base.rs"
        )
    }

    /// Exercise 3: the pair to merge next, with the tie-break rule.
    ///
    /// The pair with the highest count; among pairs with the same count, the smallest pair
    /// (compare `(left, right)` as tuples: (97, 98) < (97, 99) < (98, 0)). Pairs with count
    /// 0 do not count. `None` if there is no pair.
    pub fn best_pair(_counts: &HashMap<Pair, usize>) -> Option<Pair> {
        unimplemented!(
            "Exercise 3 (best_pair): implement `fn best_pair` in lessons/03_bpe.rs — keep the \
             pair with the largest count, and on a tie the smaller pair; a HashMap's order is \
             random, so the rule must not depend on it; the crate's version: `best_pair` in \
             src/bpe/base.rs"
        )
    }

    /// Exercise 4: encode bytes with a merge table.
    ///
    /// Start from the bytes as ids. Then, as long as some adjacent pair is in the table,
    /// apply the merge that was learned *first* (lowest position in `merges`) among the pairs
    /// present, everywhere in the sequence (exercise 2). The order matters: it replays
    /// training.
    pub fn encode(_bytes: &[u8], _merges: &[Merge]) -> Vec<u32> {
        unimplemented!(
            "Exercise 4 (encode): implement `fn encode` in lessons/03_bpe.rs — ids = bytes as \
             u32; loop: among ids.windows(2), find the pair whose merge comes first in \
             `merges`; none: stop; else ids = merge(&ids, pair, id); the crate's version: \
             `MergeTable::encode_bytes` in src/bpe/base.rs"
        )
    }

    /// Exercise 5: decode, with byte fallback.
    ///
    /// `tokens[id]` is the bytes token `id` stands for. Any text encodes, because a character
    /// that no merge covers falls back to its UTF-8 bytes, each a token of its own. So a
    /// token can hold part of a character, and decoding must join all the bytes *first* and
    /// read UTF-8 at the end. Return `Err` (any message) for an id out of range, or for bytes
    /// that are not valid UTF-8 (a sequence cut inside a character).
    pub fn decode(_ids: &[u32], _tokens: &[Vec<u8>]) -> Result<String, String> {
        unimplemented!(
            "Exercise 5 (decode): implement `fn decode` in lessons/03_bpe.rs — concatenate \
             tokens[id] for every id (tokens.get(id) is None: Err), then String::from_utf8 \
             (Err if not UTF-8); the crate's version: `Encoding::decode` in \
             src/bpe/encoding.rs"
        )
    }

    /// Exercise 6: GPT-2's split pattern.
    ///
    /// Cut `text` into the pieces that GPT-2 merges within (merges never cross a piece):
    /// `'s 't 're 've 'm 'll 'd` contractions; an optional space and letters; an optional
    /// space and digits; an optional space and other symbols; runs of whitespace, where a
    /// run followed by a non-space gives its last character to the next piece. As a regex
    /// (with a lookahead: use the `fancy_regex` crate, which this crate depends on):
    /// `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    pub fn gpt2_pieces(_text: &str) -> Vec<String> {
        unimplemented!(
            "Exercise 6 (gpt2_pieces): implement `fn gpt2_pieces` in lessons/03_bpe.rs — \
             fancy_regex::Regex::new(pattern), then find_iter(text) and keep each match as a \
             String (each item is a Result: unwrap it); the crate's version: `GPT2_PATTERN` and \
             `Split::for_each_piece` in src/bpe/split.rs"
        )
    }

    /// Exercise 7: the training loop.
    ///
    /// `words` are distinct pieces with their counts. Start each as its bytes. Then, until
    /// there are `vocab_size` tokens (256 + merges so far) or no pair is left: count the
    /// pairs of all words, each pair counted `count` times per occurrence (exercise 1,
    /// weighted), pick the best pair (exercise 3), give it the next id, and merge it in every
    /// word (exercise 2). Return the merges in order.
    pub fn train(_words: &[(&str, usize)], _vocab_size: usize) -> Vec<Merge> {
        unimplemented!(
            "Exercise 7 (train): implement `fn train` in lessons/03_bpe.rs — words as byte ids; \
             loop while 256 + merges.len() < vocab_size: add up pair counts times the word's \
             count, best_pair, id = 256 + merges.len(), merge in every word; the crate's \
             version: `basic::train_words` in src/bpe/basic.rs"
        )
    }

    /// Exercise 8: tiktoken's merge of one piece, by ranks.
    ///
    /// tiktoken's files store no merge list, only *ranks*: `ranks[bytes]` is the rank of the
    /// token with those bytes (lower: merged earlier in training; every single byte has
    /// one). To encode a piece, start from its bytes, one part each. Then, as long as two
    /// adjacent parts join into bytes that have a rank, join the pair whose joined bytes have
    /// the *lowest* rank (the leftmost pair if the same rank occurs twice). Return the rank
    /// of every final part, in order.
    ///
    /// This is not exercise 4's replay of a merge list. With the merges `b`+`c` (rank 256),
    /// `a`+`b` (257) and `ab`+`c` (258), the piece `abc` ends as one token here, but as two
    /// when the merges are replayed: work out why before you write the code.
    pub fn tiktoken_merge(_ranks: &HashMap<Vec<u8>, u32>, _piece: &[u8]) -> Vec<u32> {
        unimplemented!(
            "Exercise 8 (tiktoken_merge): implement `fn tiktoken_merge` in lessons/03_bpe.rs — \
             keep the parts as byte ranges of `piece` (one per byte at first); loop: for every \
             adjacent pair, look up the rank of the bytes the two parts span together; none: \
             stop; else join the pair with the lowest rank (leftmost on a tie); at the end, \
             each part's rank; the crate's version: `byte_pair_merge` in src/bpe/encoding.rs"
        )
    }
}

// ============================================================================================
// The reference answers: the same functions, computed by the crate. Try first, then peek.
// ============================================================================================

#[cfg_attr(feature = "learner", allow(dead_code))] // used only without `--features learner`
mod reference {
    use super::{Merge, Pair};
    use llm_lessons::bpe::{base, basic, encoding, split::Pattern, Encoding, MergeTable};
    use rustc_hash::FxHashMap;
    use std::collections::HashMap;

    pub fn pair_counts(ids: &[u32]) -> HashMap<Pair, usize> {
        base::pair_counts(ids).into_iter().collect()
    }

    pub fn merge(ids: &[u32], pair: Pair, new_id: u32) -> Vec<u32> {
        base::merge(ids, pair, new_id)
    }

    pub fn best_pair(counts: &HashMap<Pair, usize>) -> Option<Pair> {
        let counts: FxHashMap<Pair, usize> = counts.iter().map(|(&p, &c)| (p, c)).collect();
        base::best_pair(&counts).map(|(p, _)| p)
    }

    /// A crate merge table from the learner's form (ids in order, 256 + i).
    fn table(merges: &[Merge]) -> MergeTable {
        let mut table = MergeTable::bytes_only();
        for m in merges {
            let id = table.push(m.pair, 0);
            assert_eq!(id, m.id, "merge ids are 256, 257, ... in order");
        }
        table
    }

    pub fn encode(bytes: &[u8], merges: &[Merge]) -> Vec<u32> {
        table(merges).encode_bytes(bytes)
    }

    pub fn decode(ids: &[u32], tokens: &[Vec<u8>]) -> Result<String, String> {
        // An Encoding needs the 256 bytes as tokens: the tests' vocabularies have them.
        let enc = Encoding::new("lesson", tokens.to_vec(), Pattern::Gpt2.split(), &[])
            .map_err(|e| e.to_string())?;
        enc.decode(ids).map_err(|e| e.to_string())
    }

    pub fn gpt2_pieces(text: &str) -> Vec<String> {
        Pattern::Gpt2
            .split()
            .pieces(text)
            .into_iter()
            .map(String::from)
            .collect()
    }

    pub fn train(words: &[(&str, usize)], vocab_size: usize) -> Vec<Merge> {
        let words: Vec<(&[u8], usize)> = words.iter().map(|&(w, c)| (w.as_bytes(), c)).collect();
        basic::train_words(&words, vocab_size)
            .table
            .merges
            .iter()
            .map(|m| Merge {
                pair: m.pair,
                id: m.id,
            })
            .collect()
    }

    pub fn tiktoken_merge(ranks: &HashMap<Vec<u8>, u32>, piece: &[u8]) -> Vec<u32> {
        let ranks: FxHashMap<Vec<u8>, u32> = ranks.iter().map(|(b, &r)| (b.clone(), r)).collect();
        let mut parts = Vec::new();
        encoding::byte_pair_merge(&ranks, piece, &mut parts);
        // parts[i].0 is where part i starts; the last entry is the end of the piece
        parts
            .windows(2)
            .map(|w| ranks[&piece[w[0].0..w[1].0]])
            .collect()
    }
}

// The tests call `solution::...`: your code with `--features learner`, the reference without.
#[cfg(feature = "learner")]
use learner as solution;
#[cfg(not(feature = "learner"))]
use reference as solution;

// ============================================================================================
// The tests. You don't need to change anything below.
// ============================================================================================

use llm_lessons::bpe::basic::{word_counts, COURSE_TEXT};
use llm_lessons::bpe::{Encoding, Pattern};

fn ids(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// The 256 byte tokens followed by the tokens `merges` make.
fn tokens_of(merges: &[Merge]) -> Vec<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for m in merges {
        let mut t = tokens[m.pair.0 as usize].clone();
        t.extend_from_slice(&tokens[m.pair.1 as usize]);
        tokens.push(t);
    }
    tokens
}

fn m(a: u32, b: u32, id: u32) -> Merge {
    Merge { pair: (a, b), id }
}

#[test]
fn exercise_1_pair_counts() {
    let counts = solution::pair_counts(&[1, 2, 3, 1, 2]);
    let expected: HashMap<Pair, usize> = [((1, 2), 2), ((2, 3), 1), ((3, 1), 1)].into();
    assert_eq!(counts, expected, "pairs of [1, 2, 3, 1, 2]");
    assert!(solution::pair_counts(&[7]).is_empty(), "one id has no pair");
    assert!(solution::pair_counts(&[]).is_empty(), "no ids, no pair");
    // "aaab": (a, a) twice (overlapping windows both count), (a, b) once.
    let counts = solution::pair_counts(&ids("aaab"));
    assert_eq!(counts[&(97, 97)], 2, "(a, a) in aaab");
    assert_eq!(counts[&(97, 98)], 1, "(a, b) in aaab");
}

#[test]
fn exercise_2_merge() {
    assert_eq!(solution::merge(&[1, 2, 3, 1, 2], (1, 2), 4), [4, 3, 4]);
    assert_eq!(
        solution::merge(&[5, 5, 5], (5, 5), 6),
        [6, 5],
        "leftmost first"
    );
    assert_eq!(solution::merge(&[5, 5, 5, 5], (5, 5), 6), [6, 6]);
    assert_eq!(solution::merge(&[1, 2], (2, 1), 9), [1, 2], "order matters");
    assert_eq!(solution::merge(&[], (1, 2), 3), Vec::<u32>::new());
    // "hugging": (g, g) -> 256 gives h u 256 i n g.
    assert_eq!(
        solution::merge(&ids("hugging"), (103, 103), 256),
        [104, 117, 256, 105, 110, 103]
    );
}

#[test]
fn exercise_3_best_pair_and_the_tie_break() {
    let counts: HashMap<Pair, usize> = [((116, 104), 4), ((105, 115), 5), ((104, 105), 3)].into();
    assert_eq!(
        solution::best_pair(&counts),
        Some((105, 115)),
        "the highest count"
    );
    // A three-way tie at 3: (97, 99) is the smallest.
    let counts: HashMap<Pair, usize> =
        [((98, 0), 3), ((97, 99), 3), ((97, 100), 3), ((1, 1), 2)].into();
    for _ in 0..20 {
        // A HashMap's iteration order changes between maps: the answer must not.
        let shuffled: HashMap<Pair, usize> = counts.clone().into_iter().collect();
        assert_eq!(
            solution::best_pair(&shuffled),
            Some((97, 99)),
            "ties go to the smallest pair"
        );
    }
    assert_eq!(solution::best_pair(&HashMap::new()), None);
    assert_eq!(
        solution::best_pair(&[((1, 2), 0)].into()),
        None,
        "a count of 0 is no pair"
    );
}

#[test]
fn exercise_4_encode_with_a_merge_table() {
    // Merges: (a, b) -> 256, (256, c) -> 257, (c, c) -> 258.
    let merges = [m(97, 98, 256), m(256, 99, 257), m(99, 99, 258)];
    assert_eq!(solution::encode(b"abc", &merges), [257]);
    // "abcc": (a, b) first -> 256 c c; then (256, c) was learned before (c, c): 257 c.
    assert_eq!(solution::encode(b"abcc", &merges), [257, 99]);
    // "ccab": 258 then 256 (order of learning, not of position).
    assert_eq!(solution::encode(b"ccab", &merges), [258, 256]);
    assert_eq!(
        solution::encode(b"xyz", &merges),
        [120, 121, 122],
        "no merge applies"
    );
    assert_eq!(solution::encode(b"", &merges), Vec::<u32>::new());
    // Against the crate, with merges trained on the course's example.
    let counts = word_counts(COURSE_TEXT);
    let trained = reference::train(&as_words(&counts), 256 + 40);
    for text in [
        "this is the course",
        "tokenization",
        "the hugging face",
        "zzz",
    ] {
        assert_eq!(
            solution::encode(text.as_bytes(), &trained),
            reference::encode(text.as_bytes(), &trained),
            "encoding {text:?} with the course's 40 merges"
        );
    }
}

#[test]
fn exercise_5_decode_with_byte_fallback() {
    let merges = [m(104, 105, 256)]; // "hi"
    let tokens = tokens_of(&merges);
    assert_eq!(solution::decode(&[256, 33], &tokens).unwrap(), "hi!");
    // "日" is 3 bytes that no merge covers: three byte tokens, joined before reading UTF-8.
    let ids: Vec<u32> = "日本😀".bytes().map(u32::from).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(solution::decode(&ids, &tokens).unwrap(), "日本😀");
    assert!(
        solution::decode(&ids[..2], &tokens).is_err(),
        "cut inside 日: not UTF-8"
    );
    assert!(
        solution::decode(&ids[1..], &tokens).is_err(),
        "starts inside 日: not UTF-8"
    );
    assert!(
        solution::decode(&[257], &tokens).is_err(),
        "257 is not a token"
    );
    assert_eq!(solution::decode(&[], &tokens).unwrap(), "");
}

#[test]
fn exercise_6_the_gpt2_split_pattern() {
    let pieces = solution::gpt2_pieces("Hello world, it's  2026!\n");
    assert_eq!(
        pieces,
        ["Hello", " world", ",", " it", "'s", " ", " 2026", "!", "\n"],
        "a run of two spaces before 2026 gives its last space to the number"
    );
    assert_eq!(solution::gpt2_pieces("a   b"), ["a", "  ", " b"]);
    assert_eq!(
        solution::gpt2_pieces("end   "),
        ["end", "   "],
        "a run at the end stays whole"
    );
    assert_eq!(solution::gpt2_pieces("I'll go"), ["I", "'ll", " go"]);
    for text in [
        "The café's 3 cats—and 12,000 dogs!",
        "fn main() {\n    println!(\"hi\");\n}\n",
        "日本語 テキスト\t\tend",
        "emoji 👍🏽 and e\u{301} combining",
    ] {
        assert_eq!(
            solution::gpt2_pieces(text),
            reference::gpt2_pieces(text),
            "pieces of {text:?}"
        );
    }
}

/// The course example's words and counts, borrowed from `counts`.
fn as_words(counts: &[(String, usize)]) -> Vec<(&str, usize)> {
    counts.iter().map(|(w, c)| (w.as_str(), *c)).collect()
}

#[test]
fn exercise_7_train_on_the_course_example() {
    let counts = word_counts(COURSE_TEXT);
    let words = as_words(&counts);
    let merges = solution::train(&words, 256 + 5);
    // Counted over the words (this x3, is x2, ...): "is" occurs 3 (this) + 2 (is) = 5
    // times, and so does "th" (3 in this, 1 in the, 1 in algorithms): a tie at 5, the
    // highest count. The tie-break (the smaller pair by id) picks (i, s) = (105, 115)
    // over (t, h) = (116, 104), so "is" is merged first and "th" second.
    assert_eq!(merges[0], m(105, 115, 256), "first merge: (i, s) -> 256");
    assert_eq!(
        merges[1],
        m(116, 104, 257),
        "second merge: (t, h) -> 257, the pair that tied"
    );
    assert_eq!(merges.len(), 5);
    let tokens = tokens_of(&merges);
    assert_eq!(tokens[256], b"is");
    // The whole run against the crate, merge by merge.
    let expected = reference::train(&words, 256 + 40);
    let got = solution::train(&words, 256 + 40);
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(
            g,
            e,
            "merge {i}: {:?}",
            String::from_utf8_lossy(&tokens_of(&expected)[e.id as usize])
        );
    }
    assert_eq!(got.len(), expected.len());
    // Every word is one token once the vocabulary is big enough: training stops.
    let all = solution::train(&[("ab", 1), ("cd", 1)], 1000);
    assert_eq!(
        all,
        [m(97, 98, 256), m(99, 100, 257)],
        "stops when no pair is left"
    );
}

/// Ranks in tiktoken's form: the 256 bytes (rank = byte value), then `merged` in order,
/// ranks 256, 257, ...
fn ranks_of(merged: &[&[u8]]) -> HashMap<Vec<u8>, u32> {
    let mut ranks: HashMap<Vec<u8>, u32> = (0..=255u8).map(|b| (vec![b], b as u32)).collect();
    for (i, &token) in merged.iter().enumerate() {
        ranks.insert(token.to_vec(), 256 + i as u32);
    }
    ranks
}

#[test]
fn exercise_8_tiktoken_merge_by_ranks() {
    // The book's example: bc = 256, ab = 257, abc = 258 (learned as ab + c).
    let ranks = ranks_of(&[b"bc", b"ab", b"abc"]);
    // "abc": the pairs are "ab" (257) and "bc" (256): join bc, the lowest. Then the pair
    // (a, bc) joins into "abc", which has rank 258: join it. One token.
    assert_eq!(
        solution::tiktoken_merge(&ranks, b"abc"),
        [258],
        "abc with ranks bc = 256, ab = 257, abc = 258"
    );
    // Replaying the merges (exercise 4) stops at two tokens, (a, bc): the learned merge was
    // (ab, c), and "ab" never forms once "bc" has taken the b.
    let merges = [m(98, 99, 256), m(97, 98, 257), m(257, 99, 258)];
    assert_eq!(
        reference::encode(b"abc", &merges),
        [97, 256],
        "the replay of the same merges"
    );
    // "abcbc": bc (256) is the lowest rank, at two places; the leftmost goes first, then the
    // other: (a, bc, bc). Then a + bc = abc (258); "bcbc" has no rank: (abc, bc).
    assert_eq!(
        solution::tiktoken_merge(&ranks, b"abcbc"),
        [258, 256],
        "abcbc"
    );
    // "xab": only "ab" has a rank: (x, ab). One byte: itself. No byte pair with a rank: the
    // bytes.
    assert_eq!(solution::tiktoken_merge(&ranks, b"xab"), [120, 257], "xab");
    assert_eq!(solution::tiktoken_merge(&ranks, b"c"), [99], "one byte");
    assert_eq!(
        solution::tiktoken_merge(&ranks, b"cba"),
        [99, 98, 97],
        "cba"
    );
    // The lowest rank, not the leftmost pair: with ab = 256 and aa = 257, "aab" joins "ab"
    // first, although (a, a) is further left; then "aab" has no rank: (a, ab).
    let ranks2 = ranks_of(&[b"ab", b"aa"]);
    assert_eq!(
        solution::tiktoken_merge(&ranks2, b"aab"),
        [97, 256],
        "aab with ab = 256, aa = 257"
    );
    // On a tie (the same bytes twice), the leftmost: "aaa" with aa = 256 gives (aa, a).
    let ranks3 = ranks_of(&[b"aa"]);
    assert_eq!(
        solution::tiktoken_merge(&ranks3, b"aaa"),
        [256, 97],
        "aaa with aa = 256"
    );

    // Against the crate's encoder, on ranks trained on the course text (GPT-2 style: every
    // token's rank is the merge that made it), and on the same tokens with the merged
    // tokens' ranks reversed (a rank file no merge list could have made). The crate's
    // `Encoding::encode_ordinary` splits the text into pieces and merges each by its ranks.
    let words = word_counts(COURSE_TEXT);
    // Exercise 7's training, done by the crate, so that this exercise does not depend on it.
    let trained = tokens_of(&reference::train(&as_words(&words), 256 + 60));
    let mut reversed = trained.clone();
    reversed[256..].reverse();
    let text = "this is the algorithm; these are the tokens: 123, 4567 — and thistle, therein.";
    for (tokens, what) in [(trained, "trained ranks"), (reversed, "reversed ranks")] {
        let ranks: HashMap<Vec<u8>, u32> = tokens
            .iter()
            .enumerate()
            .map(|(r, t)| (t.clone(), r as u32))
            .collect();
        let enc = Encoding::new("lesson", tokens, Pattern::Gpt2.split(), &[]).unwrap();
        let mut mine = Vec::new();
        for piece in Pattern::Gpt2.split().pieces(text) {
            mine.extend(solution::tiktoken_merge(&ranks, piece.as_bytes()));
        }
        assert_eq!(mine, enc.encode_ordinary(text), "{what}: {text:?}");
    }
}
