//! A byte-level BPE tokenizer that encodes exactly as Python tiktoken does: the same split
//! pattern, the same merge rule over ranks, the same special tokens, the same files.
//!
//! tiktoken keeps no merge list. It has *ranks*: every token's bytes with a number, lower
//! meaning merged earlier in training. To encode a piece it starts from the bytes and keeps
//! merging the adjacent pair whose concatenation has the lowest rank ([`byte_pair_merge`]),
//! leftmost first among equals, until no adjacent concatenation is a token. Because the
//! base vocabulary is the 256 bytes, every string encodes, and decoding is concatenation.
//!
//! A vocabulary that comes with a merge list (a GGUF file's, loaded by
//! [`tokens_from_gguf`](crate::quant::gguf::llama::tokens_from_gguf)) is encoded by replaying
//! that list instead, as Hugging Face tokenizers and llama.cpp do ([`Encoding::from_merges`],
//! [`super::replay`]).
//!
//! Files: tiktoken's rank files (`base64(token) rank` per line; [`Encoding::load_tiktoken`],
//! [`Encoding::save_tiktoken`]) and GPT-2's `encoder.json` + `vocab.bpe`
//! ([`Encoding::load_gpt2`]). Not here: tiktoken's `disallowed_special` check (here, special
//! text is ordinary text unless allowed) and its o200k pattern.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::base::{Rank, N_BYTES};
use super::replay::MergeList;
use super::split::{parallel_parts, Pattern, Split};
use crate::data::{read_text, write_atomic};
use crate::{Error, Result};

/// `<|endoftext|>`, the special token every encoding here has.
pub const ENDOFTEXT: &str = "<|endoftext|>";

/// A tokenizer: ranks, a split pattern and special tokens.
#[derive(Debug, Clone)]
pub struct Encoding {
    /// A name for messages (`r50k_base`, `cl100k_base`, or what the caller chose).
    pub name: String,
    /// Token bytes -> rank.
    ranks: FxHashMap<Vec<u8>, Rank>,
    /// Rank -> token bytes (ranks are 0..n without gaps). Empty for an id that is no
    /// ordinary token (in an encoding from merges: a special token's, or an unused one).
    tokens: Vec<Vec<u8>>,
    split: Split,
    /// Special token text -> id, and the reverse; ids are outside 0..n, or ids whose
    /// `tokens` entry is empty.
    special: FxHashMap<String, Rank>,
    special_by_id: FxHashMap<Rank, String>,
    /// The merge list pieces are encoded with, instead of tiktoken's rule over the ranks.
    merges: Option<Box<MergeList>>,
}

/// Which special tokens [`Encoding::encode`] recognises in the text.
#[derive(Debug, Clone, Copy)]
pub enum Allowed<'a> {
    /// None: special-token text is ordinary text (`encode_ordinary`).
    None,
    /// Every special token of the encoding.
    All,
    /// These; naming a token the encoding does not have is an error.
    Only(&'a [&'a str]),
}

impl Encoding {
    /// An encoding from tokens in rank order (`tokens[r]` has rank `r`), a split, and special
    /// tokens `(text, id)`. Duplicate tokens, a missing single byte (then some text could not
    /// be encoded), or a special id that is also a rank, are errors.
    pub fn new(
        name: &str,
        tokens: Vec<Vec<u8>>,
        split: Split,
        special: &[(&str, Rank)],
    ) -> Result<Encoding> {
        if let Some(rank) = tokens.iter().position(Vec::is_empty) {
            return Err(Error::InvalidArgument(format!(
                "{name}: token {rank} is empty"
            )));
        }
        let ranks = rank_map(name, &tokens)?;
        if let Some(b) = (0..=255u8).find(|&b| !ranks.contains_key(&[b][..])) {
            return Err(Error::InvalidArgument(format!(
                "{name}: byte 0x{b:02x} is not a token; a byte-level vocabulary has all 256"
            )));
        }
        Encoding::assemble(name, ranks, tokens, split, special, None)
    }

    /// An encoding that replays a merge list, as Hugging Face tokenizers' BPE and llama.cpp
    /// do ([`super::replay`]): `tokens[id]` is the bytes of id `id`, `None` for an id that
    /// is no ordinary token (a special token's, or an unused one); `merges` are pairs of ids
    /// in rank order; special tokens `(text, id)` take ids past `tokens` or ids that are
    /// `None` there. Bytes without a token are dropped when encoding, as Hugging Face does.
    /// Duplicate tokens, and merges of a `None` id or whose result is not a token, are
    /// errors.
    pub fn from_merges(
        name: &str,
        tokens: Vec<Option<Vec<u8>>>,
        merges: &[(Rank, Rank)],
        split: Split,
        special: &[(&str, Rank)],
    ) -> Result<Encoding> {
        if let Some(id) = tokens
            .iter()
            .position(|t| t.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(Error::InvalidArgument(format!(
                "{name}: token {id} is empty"
            )));
        }
        let tokens: Vec<Vec<u8>> = tokens.into_iter().map(Option::unwrap_or_default).collect();
        let ranks = rank_map(name, &tokens)?;
        let list = MergeList::new(name, &tokens, &ranks, merges)?;
        Encoding::assemble(name, ranks, tokens, split, special, Some(Box::new(list)))
    }

    fn assemble(
        name: &str,
        ranks: FxHashMap<Vec<u8>, Rank>,
        tokens: Vec<Vec<u8>>,
        split: Split,
        special: &[(&str, Rank)],
        merges: Option<Box<MergeList>>,
    ) -> Result<Encoding> {
        let mut enc = Encoding {
            name: name.to_string(),
            ranks,
            tokens,
            split,
            special: FxHashMap::default(),
            special_by_id: FxHashMap::default(),
            merges,
        };
        for &(text, id) in special {
            enc.add_special(text, id)?;
        }
        Ok(enc)
    }

    /// Adds a special token (e.g. `<|im_start|>`) with an id no other token has.
    pub fn add_special(&mut self, text: &str, id: Rank) -> Result<()> {
        let ordinary = self.tokens.get(id as usize).is_some_and(|t| !t.is_empty());
        if ordinary || self.special_by_id.contains_key(&id) {
            return Err(Error::InvalidArgument(format!(
                "special token {text:?}: id {id} is already taken"
            )));
        }
        if text.is_empty() || self.special.contains_key(text) {
            return Err(Error::InvalidArgument(format!(
                "special token {text:?} is empty or already defined"
            )));
        }
        self.special.insert(text.to_string(), id);
        self.special_by_id.insert(id, text.to_string());
        Ok(())
    }

    /// GPT-2's encoding (r50k_base) from its rank file: the GPT-2 split, `<|endoftext|>` = 50256.
    pub fn r50k_base(path: impl AsRef<Path>) -> Result<Encoding> {
        let tokens = read_tiktoken_file(path.as_ref())?;
        Encoding::new(
            "r50k_base",
            tokens,
            Pattern::Gpt2.split(),
            &[(ENDOFTEXT, 50256)],
        )
    }

    /// cl100k_base from its rank file, with tiktoken's five special tokens.
    pub fn cl100k_base(path: impl AsRef<Path>) -> Result<Encoding> {
        let tokens = read_tiktoken_file(path.as_ref())?;
        Encoding::new(
            "cl100k_base",
            tokens,
            Pattern::Cl100k.split(),
            &[
                (ENDOFTEXT, 100257),
                ("<|fim_prefix|>", 100258),
                ("<|fim_middle|>", 100259),
                ("<|fim_suffix|>", 100260),
                ("<|endofprompt|>", 100276),
            ],
        )
    }

    /// Any tiktoken rank file with a named pattern; `<|endoftext|>` gets the id after the last
    /// rank (as for a tokenizer trained here).
    pub fn load_tiktoken(path: impl AsRef<Path>, pattern: Pattern) -> Result<Encoding> {
        let path = path.as_ref();
        let tokens = read_tiktoken_file(path)?;
        let eot = tokens.len() as Rank;
        let name = path
            .file_stem()
            .map_or("tokenizer".into(), |s| s.to_string_lossy());
        Encoding::new(&name, tokens, pattern.split(), &[(ENDOFTEXT, eot)])
    }

    /// GPT-2 from its original files: `encoder.json` (token text -> id, bytes written with
    /// GPT-2's byte-to-character table) and `vocab.bpe` (the merges, in order). The merges must
    /// agree with the ids (merge `i` makes token `256 + i`), as tiktoken checks too.
    pub fn load_gpt2(
        encoder_json: impl AsRef<Path>,
        vocab_bpe: impl AsRef<Path>,
    ) -> Result<Encoding> {
        let (json_path, bpe_path) = (encoder_json.as_ref(), vocab_bpe.as_ref());
        let text = read_text(json_path)?;
        let encoder: FxHashMap<String, Rank> =
            serde_json::from_str(&text).map_err(|e| Error::Format {
                path: json_path.into(),
                line: e.line(),
                message: format!("not a JSON object of token -> id: {e}"),
            })?;
        let byte_of = gpt2_char_to_byte();
        let mut tokens = vec![None; encoder.len()];
        let mut eot = None;
        for (text, &id) in &encoder {
            if text == ENDOFTEXT {
                eot = Some(id);
                continue;
            }
            let bytes: Option<Vec<u8>> = text.chars().map(|c| byte_of.get(&c).copied()).collect();
            let bytes = bytes.ok_or_else(|| Error::Format {
                path: json_path.into(),
                line: 1,
                message: format!("token {text:?} has a character outside GPT-2's byte table"),
            })?;
            match tokens.get_mut(id as usize) {
                Some(slot @ None) => *slot = Some(bytes),
                _ => {
                    return Err(Error::Format {
                        path: json_path.into(),
                        line: 1,
                        message: format!("id {id} of {text:?} is repeated or out of range"),
                    })
                }
            }
        }
        let eot = eot.ok_or_else(|| Error::Format {
            path: json_path.into(),
            line: 1,
            message: format!("no {ENDOFTEXT} token"),
        })?;
        tokens.truncate(eot as usize);
        let tokens: Vec<Vec<u8>> = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| {
                t.ok_or_else(|| Error::Format {
                    path: json_path.into(),
                    line: 1,
                    message: format!("no token has id {id}"),
                })
            })
            .collect::<Result<_>>()?;
        // vocab.bpe: a "#version" line, then "left right" per merge, in rank order.
        let merges = read_text(bpe_path)?;
        let mut n = 0;
        for (i, line) in merges.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::Format {
                path: bpe_path.into(),
                line: i + 1,
                message,
            };
            let (left, right) = line
                .split_once(' ')
                .ok_or_else(|| bad(format!("expected two tokens, got {line:?}")))?;
            let rank = N_BYTES + n;
            let merged = format!("{left}{right}");
            if encoder.get(&merged) != Some(&(rank as Rank)) {
                return Err(bad(format!(
                    "merge {n} makes {merged:?}, but encoder.json gives it {:?}, not {rank}",
                    encoder.get(&merged)
                )));
            }
            n += 1;
        }
        if N_BYTES + n != tokens.len() {
            return Err(Error::Format {
                path: bpe_path.into(),
                line: merges.lines().count(),
                message: format!(
                    "{n} merges, but encoder.json has {} tokens besides the 256 bytes",
                    tokens.len() - N_BYTES
                ),
            });
        }
        Encoding::new("gpt2", tokens, Pattern::Gpt2.split(), &[(ENDOFTEXT, eot)])
    }

    /// Writes the ranks as a tiktoken file: `base64(token) rank` per line, in rank order.
    /// Python reads it with `tiktoken.load.load_tiktoken_bpe(path)`.
    /// An encoding from merges cannot be saved this way (its ids are not ranks and its
    /// merge list would be lost): that is an error.
    pub fn save_tiktoken(&self, path: impl AsRef<Path>) -> Result<()> {
        if self.merges.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} replays a merge list: a tiktoken rank file cannot hold it",
                self.name
            )));
        }
        save_tiktoken_tokens(&self.tokens, path.as_ref())
    }

    /// The number of ordinary tokens (ranks); special tokens come on top. In an encoding
    /// from merges, the size of the vocabulary's id range, special and unused ids included.
    pub fn n_ranks(&self) -> usize {
        self.tokens.len()
    }

    /// The merge list of an encoding [`from_merges`](Self::from_merges) (pairs of ids, in
    /// rank order); `None` for tiktoken's rule.
    pub fn merges(&self) -> Option<&[(Rank, Rank)]> {
        self.merges.as_deref().map(MergeList::merges)
    }

    /// The bytes of token `id` (ordinary or special).
    pub fn token_bytes(&self, id: Rank) -> Result<&[u8]> {
        if let Some(t) = self.tokens.get(id as usize).filter(|t| !t.is_empty()) {
            return Ok(t);
        }
        self.special_by_id
            .get(&id)
            .map(|s| s.as_bytes())
            .ok_or_else(|| self.unknown_id(id))
    }

    /// The id of a special token.
    pub fn special_token(&self, text: &str) -> Result<Rank> {
        self.special
            .get(text)
            .copied()
            .ok_or_else(|| Error::UnknownSpecialToken {
                name: text.to_string(),
                known: self.special_names().join(", "),
            })
    }

    /// The special tokens' texts, by id.
    pub fn special_names(&self) -> Vec<&str> {
        let mut s: Vec<(&Rank, &String)> = self.special_by_id.iter().collect();
        s.sort();
        s.into_iter().map(|(_, t)| t.as_str()).collect()
    }

    /// The rank of `bytes` if they are one token.
    pub fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        self.ranks.get(bytes).copied()
    }

    /// The split this encoding cuts text with.
    pub fn split(&self) -> &Split {
        &self.split
    }

    /// The same encoding with another splitter, e.g. [`Split::fancy`] with the pattern as
    /// tiktoken writes it (to check, or to time, the fast split).
    pub fn with_split(mut self, split: Split) -> Encoding {
        self.split = split;
        self
    }

    // ANCHOR: encode_ordinary
    /// Encodes text as tiktoken's `encode_ordinary`: split into pieces, each piece either one
    /// token as a whole or its [`byte_pair_merge`] (for an encoding from merges: its
    /// [`MergeList::merge_piece`]). Special-token text is ordinary text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<Rank> {
        let mut ids = Vec::with_capacity(text.len() / 3);
        // Text repeats its words: a piece seen before reuses the ids it got then, which
        // sit in `ids` already (no allocation per piece).
        let mut seen: FxHashMap<&str, (u32, u32)> = FxHashMap::default();
        let mut parts = Vec::new();
        let mut symbols = Vec::new();
        // a merge list can leave a token's own bytes in several tokens
        let whole = |rank| self.merges.as_ref().is_none_or(|m| m.is_whole(rank));
        self.split.for_each_piece(text, |piece| {
            if let Some(&rank) = self.ranks.get(piece.as_bytes()).filter(|&&r| whole(r)) {
                ids.push(rank);
            } else if let Some(&(start, len)) = seen.get(piece) {
                let start = start as usize;
                ids.extend_from_within(start..start + len as usize);
            } else {
                let start = ids.len();
                let bytes = piece.as_bytes();
                match &self.merges {
                    Some(list) => list.merge_piece(bytes, &mut symbols, &mut ids),
                    None => {
                        byte_pair_merge(&self.ranks, bytes, &mut parts);
                        ids.extend(parts.windows(2).map(|w| self.ranks[&bytes[w[0].0..w[1].0]]));
                    }
                }
                seen.insert(piece, (start as u32, (ids.len() - start) as u32));
            }
        });
        ids
    }
    // ANCHOR_END: encode_ordinary

    /// [`encode_ordinary`](Self::encode_ordinary) on all threads: the text is cut at places
    /// where the split has a boundary anyway ([`parallel_parts`]), so the ids are the same.
    pub fn encode_ordinary_parallel(&self, text: &str) -> Vec<Rank> {
        const PART: usize = 64 * 1024;
        if text.len() < 2 * PART {
            return self.encode_ordinary(text);
        }
        let parts: Vec<Vec<Rank>> = parallel_parts(text, PART)
            .par_iter()
            .map(|p| self.encode_ordinary(p))
            .collect();
        parts.concat()
    }

    /// Encodes text, turning the allowed special tokens' text into their ids; everything
    /// between them is encoded as ordinary text (so a piece never spans a special token).
    ///
    /// ```no_run
    /// # use llm_lessons::bpe::{Allowed, Encoding};
    /// let gpt2 = Encoding::r50k_base("data/external/r50k_base.tiktoken")?;
    /// assert_eq!(gpt2.encode("hi<|endoftext|>", Allowed::All)?, [5303, 50256]);
    /// # Ok::<(), llm_lessons::Error>(())
    /// ```
    pub fn encode(&self, text: &str, allowed: Allowed) -> Result<Vec<Rank>> {
        let names: Vec<&str> = match allowed {
            Allowed::None => return Ok(self.encode_ordinary(text)),
            Allowed::All => self.special.keys().map(String::as_str).collect(),
            Allowed::Only(names) => {
                for name in names {
                    self.special_token(name)?;
                }
                names.to_vec()
            }
        };
        let mut ids = Vec::new();
        // Where each name next occurs at or after `start`: found again only once passed, so
        // a long text with many special tokens (a chat history) is scanned once per name.
        let mut next_at: Vec<Option<usize>> = names.iter().map(|n| text.find(n)).collect();
        let mut start = 0;
        loop {
            for (name, at) in names.iter().zip(&mut next_at) {
                if at.is_some_and(|at| at < start) {
                    *at = text[start..].find(name).map(|i| start + i);
                }
            }
            // The earliest allowed special token; the longest if two start at the same place.
            let next = names
                .iter()
                .zip(&next_at)
                .filter_map(|(n, at)| at.map(|at| (at, std::cmp::Reverse(n.len()), *n)))
                .min();
            match next {
                Some((at, _, name)) => {
                    ids.extend(self.encode_ordinary(&text[start..at]));
                    ids.push(self.special[name]);
                    start = at + name.len();
                }
                None => {
                    ids.extend(self.encode_ordinary(&text[start..]));
                    return Ok(ids);
                }
            }
        }
    }

    /// The bytes that `ids` stand for. An id that is neither a rank nor a special token is
    /// an error.
    pub fn decode_bytes(&self, ids: &[Rank]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id)?);
        }
        Ok(out)
    }

    /// The text that `ids` stand for. Tokens are bytes, so a cut sequence can end (or start)
    /// inside a character: that is an [`Error::InvalidUtf8`] naming the token, never a
    /// replacement character. Use [`decode_bytes`](Self::decode_bytes) for the raw bytes.
    pub fn decode(&self, ids: &[Rank]) -> Result<String> {
        let bytes = self.decode_bytes(ids)?;
        String::from_utf8(bytes).map_err(|e| {
            let offset = e.utf8_error().valid_up_to();
            // The token holding the first bad byte.
            let mut end = 0;
            let mut token_index = 0;
            for (i, &id) in ids.iter().enumerate() {
                end += self.token_bytes(id).map_or(0, <[u8]>::len);
                if end > offset {
                    token_index = i;
                    break;
                }
            }
            Error::InvalidUtf8 {
                offset,
                token_index,
                id: ids[token_index],
            }
        })
    }

    fn unknown_id(&self, id: Rank) -> Error {
        let mut ids: Vec<String> = self.special_by_id.keys().map(|i| i.to_string()).collect();
        ids.sort();
        Error::UnknownTokenId {
            id,
            n_vocab: self.tokens.len(),
            specials: if ids.is_empty() {
                String::new()
            } else {
                format!(", special: {}", ids.join(", "))
            },
        }
    }
}

/// Token bytes -> rank for the non-empty tokens; a token listed twice is an error.
fn rank_map(name: &str, tokens: &[Vec<u8>]) -> Result<FxHashMap<Vec<u8>, Rank>> {
    let mut ranks = FxHashMap::default();
    ranks.reserve(tokens.len());
    for (rank, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            continue;
        }
        if let Some(first) = ranks.insert(token.clone(), rank as Rank) {
            return Err(Error::InvalidArgument(format!(
                "{name}: token {:?} has two ranks, {first} and {rank}",
                super::base::show_bytes(token)
            )));
        }
    }
    Ok(ranks)
}

// ANCHOR: byte_pair_merge
/// tiktoken's merge of one piece. `parts` gets the start of every token, plus `bytes.len()`
/// at the end: token `i` is `bytes[parts[i].0..parts[i + 1].0]`. `parts[i].1` is the rank
/// of the pair starting at token `i` (token `i` and `i + 1` joined), `Rank::MAX` if none.
///
/// Repeatedly merge the pair with the lowest rank (the leftmost if the same bytes occur twice),
/// then look up the two pairs that changed. A piece is short (a word), so scanning it is
/// cheaper than a heap.
pub fn byte_pair_merge(
    ranks: &FxHashMap<Vec<u8>, Rank>,
    bytes: &[u8],
    parts: &mut Vec<(usize, Rank)>,
) {
    parts.clear();
    if bytes.is_empty() {
        parts.push((0, Rank::MAX));
        return;
    }
    let rank_of = |a: usize, b: usize| ranks.get(&bytes[a..b]).copied().unwrap_or(Rank::MAX);
    let mut min = (Rank::MAX, usize::MAX);
    for i in 0..bytes.len().saturating_sub(1) {
        let rank = rank_of(i, i + 2);
        if rank < min.0 {
            min = (rank, i);
        }
        parts.push((i, rank));
    }
    parts.push((bytes.len() - 1, Rank::MAX));
    parts.push((bytes.len(), Rank::MAX));
    while min.0 != Rank::MAX {
        let i = min.1;
        // Tokens i and i+1 become one: the pairs (i-1, i) and (i, i+2) are new.
        let pair_rank = |parts: &[(usize, Rank)], i: usize| {
            if i + 3 < parts.len() {
                rank_of(parts[i].0, parts[i + 3].0)
            } else {
                Rank::MAX
            }
        };
        if i > 0 {
            parts[i - 1].1 = pair_rank(parts, i - 1);
        }
        parts[i].1 = pair_rank(parts, i);
        parts.remove(i + 1);
        min = (Rank::MAX, usize::MAX);
        for (j, &(_, rank)) in parts[..parts.len() - 1].iter().enumerate() {
            if rank < min.0 {
                min = (rank, j);
            }
        }
    }
}
// ANCHOR_END: byte_pair_merge

/// Reads a tiktoken rank file: one `base64(token) rank` a line (blank lines skipped), ranks
/// exactly 0..n in any order. Every problem names its line.
pub fn read_tiktoken_file(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(text).map_err(|e| Error::NotUtf8 {
        path: path.into(),
        offset: e.utf8_error().valid_up_to(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })?;
    parse_tiktoken(&text, path)
}

/// Parses the text of a rank file; `path` is only for messages.
pub fn parse_tiktoken(text: &str, path: &Path) -> Result<Vec<Vec<u8>>> {
    let bad = |line: usize, message: String| Error::Format {
        path: path.into(),
        line,
        message,
    };
    // (rank, token, line), sorted by rank at the end: a huge rank in a bad file costs
    // nothing before it is reported.
    let mut entries: Vec<(usize, Vec<u8>, usize)> = Vec::new();
    let mut seen: FxHashMap<Vec<u8>, usize> = FxHashMap::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(b64), Some(rank), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad(
                line_no,
                format!("expected `base64(token) rank`, got {line:?}"),
            ));
        };
        let token = BASE64
            .decode(b64)
            .map_err(|e| bad(line_no, format!("bad base64 {b64:?}: {e}")))?;
        let rank: usize = rank
            .parse()
            .ok()
            .filter(|&r| r < Rank::MAX as usize)
            .ok_or_else(|| {
                bad(
                    line_no,
                    format!("rank {rank:?} is not a number below 2^32 - 1"),
                )
            })?;
        if let Some(first) = seen.insert(token.clone(), line_no) {
            return Err(bad(
                line_no,
                format!("token {b64} is already on line {first}"),
            ));
        }
        entries.push((rank, token, line_no));
    }
    entries.sort_unstable_by_key(|&(rank, _, line)| (rank, line));
    let n = entries.len();
    let mut tokens = Vec::with_capacity(n);
    for (expected, (rank, token, line)) in entries.into_iter().enumerate() {
        if rank < expected {
            return Err(bad(
                line,
                format!("rank {rank} is already on an earlier line"),
            ));
        }
        if rank > expected {
            return Err(bad(
                line,
                format!("no token has rank {expected}: ranks must be 0..{n} without gaps"),
            ));
        }
        tokens.push(token);
    }
    Ok(tokens)
}

/// Writes tokens (in rank order) as a tiktoken rank file.
pub fn save_tiktoken_tokens(tokens: &[Vec<u8>], path: &Path) -> Result<()> {
    let mut out = String::with_capacity(tokens.len() * 12);
    for (rank, token) in tokens.iter().enumerate() {
        out.push_str(&BASE64.encode(token));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    // Atomically (temp file, then rename): an interrupted save never leaves half a file.
    write_atomic(path, out.as_bytes())
}

/// GPT-2's table from characters back to bytes. GPT-2 wrote each byte as a printable
/// character so that its files are text: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes (controls, space, ...) for the characters U+0100, U+0101, ... in byte
/// order. So a space is `Ġ` (U+0120) in `vocab.bpe`.
pub fn gpt2_char_to_byte() -> FxHashMap<char, u8> {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut n = 0;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                n += 1;
                (char::from_u32(255 + n).expect("a valid char"), b)
            }
        })
        .collect()
}
