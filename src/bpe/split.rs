//! Pre-tokenization: before any merge, the text is cut into pieces by a regex, and merges
//! never cross a piece's edge. So `" dog"`, `" dog."` and `"dog!"` all share the token for
//! `" dog"`, instead of the vocabulary filling up with `"dog."`, `"dog!"`, `"dog?"`...
//!
//! The patterns are exactly the strings of Python tiktoken's `tiktoken_ext/openai_public.py`.
//! They use a lookahead (`\s+(?!\S)`: a run of spaces leaves its last space to the word after
//! it) and possessive quantifiers, which the `regex` crate does not have: [`Split::Fancy`] runs
//! them with `fancy-regex`, as tiktoken's Rust core does. [`Split::Fast`] gives the same pieces
//! with the `regex` crate (a DFA, several times faster) plus one rule applied by hand for the
//! lookahead; tests check the two agree.
//!
//! SmolLM2 (llama.cpp's `tokenizer.ggml.pre = "smollm"`) cuts the text in two steps, as
//! Hugging Face tokenizers' `Sequence[Digits(individual_digits=True), ByteLevel]`: every
//! digit becomes a piece of its own, then GPT-2's split runs on the text between digits.
//! [`SMOLLM_PATTERN`] is one regex with the same pieces; [`Split::Fast`] does the two steps.

use crate::{Error, Result};

// ANCHOR: patterns
/// GPT-2's split (r50k_base, p50k_base): contractions, an optional space + letters, an
/// optional space + digits, an optional space + other symbols, then whitespace runs.
pub const GPT2_PATTERN: &str =
    r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s";

/// cl100k_base's split (GPT-3.5/4): case-insensitive contractions, letters with one leading
/// non-letter (so `"$hello"` or `"\thello"` stay together), digits in groups of at most 3,
/// symbols with their trailing newlines, and newlines kept apart from other whitespace.
pub const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// SmolLM2's split as one regex: each digit alone, then GPT-2's branches without its digit
/// branch. Hugging Face runs GPT-2's split on the text between two digits, where a
/// whitespace run just before a digit ends its part and so keeps all its characters:
/// that is the branch `\s+(?=\p{N})` (`"a  2"` is `"a"`, `"  "`, `"2"`).
pub const SMOLLM_PATTERN: &str =
    r"\p{N}|'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?=\p{N})|\s+(?!\S)|\s";
// ANCHOR_END: patterns

/// The same splits without lookahead or possessive quantifiers, for the `regex` crate. The
/// lookahead `\s+(?!\S)` becomes `\s+` plus the rule in [`Split::pieces`].
const GPT2_FAST: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";
const CL100K_FAST: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]|\s+";

/// A named split pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// [`GPT2_PATTERN`].
    Gpt2,
    /// [`CL100K_PATTERN`].
    Cl100k,
    /// [`SMOLLM_PATTERN`]: digits one by one, then GPT-2's split.
    Smollm,
}

impl Pattern {
    /// The regex, as tiktoken writes it.
    pub fn regex(self) -> &'static str {
        match self {
            Pattern::Gpt2 => GPT2_PATTERN,
            Pattern::Cl100k => CL100K_PATTERN,
            Pattern::Smollm => SMOLLM_PATTERN,
        }
    }

    /// The fastest splitter that gives exactly this pattern's pieces.
    pub fn split(self) -> Split {
        let fast = match self {
            Pattern::Gpt2 | Pattern::Smollm => GPT2_FAST,
            Pattern::Cl100k => CL100K_FAST,
        };
        Split::Fast(Box::new(FastSplit {
            re: regex_automata::meta::Regex::new(fast).expect("the fast patterns are valid"),
            dfa: regex_automata::hybrid::dfa::DFA::new(fast).expect("the fast patterns are valid"),
            newline_branch: self == Pattern::Cl100k,
            digits_apart: self == Pattern::Smollm,
        }))
    }
}

impl std::str::FromStr for Pattern {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gpt2" | "r50k" | "r50k_base" => Ok(Pattern::Gpt2),
            "cl100k" | "cl100k_base" => Ok(Pattern::Cl100k),
            "smollm" => Ok(Pattern::Smollm),
            _ => Err(Error::InvalidArgument(format!(
                "unknown split pattern {s:?}: use gpt2, cl100k or smollm"
            ))),
        }
    }
}

/// A compiled splitter.
#[derive(Debug, Clone)]
pub enum Split {
    /// Any pattern, with `fancy-regex` (lookaround, possessive quantifiers).
    Fancy(fancy_regex::Regex),
    /// One of the named patterns rewritten for the `regex` crate's engine.
    Fast(Box<FastSplit>),
}

/// A named pattern without lookahead, searched anchored at the end of the previous piece
/// (pieces tile the text, so no scan is needed).
#[derive(Debug, Clone)]
pub struct FastSplit {
    re: regex_automata::meta::Regex,
    /// The same pattern as a lazy DFA only: an anchored forward search finds where a piece
    /// ends in one pass, with a cache we own (no pool). `re` takes over if the DFA ever
    /// gives up.
    dfa: regex_automata::hybrid::dfa::DFA,
    /// cl100k's `\s*[\r\n]` branch: whitespace ending in a newline is a whole piece.
    newline_branch: bool,
    /// smollm: every numeric character (`char::is_numeric`, as Hugging Face's `Digits`) is
    /// a piece, and the pattern runs on the text between them.
    digits_apart: bool,
}

impl Split {
    /// A splitter for any pattern `fancy-regex` accepts.
    pub fn fancy(pattern: &str) -> Result<Split> {
        fancy_regex::Regex::new(pattern)
            .map(Split::Fancy)
            .map_err(|e| Error::InvalidArgument(format!("bad split pattern: {e}")))
    }

    // ANCHOR: pieces
    /// Calls `f` with each piece of `text`, in order; the pieces concatenate to `text`.
    pub fn for_each_piece<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) {
        match self {
            Split::Fancy(re) => {
                let mut start = 0;
                while start < text.len() {
                    // fancy-regex fails only on backtracking limits, which these patterns
                    // do not reach; if it ever did, keep the rest as one piece.
                    match re.find_from_pos(text, start) {
                        Ok(Some(m)) if m.end() > m.start() => {
                            f(m.as_str());
                            start = m.end();
                        }
                        _ => {
                            f(&text[start..]);
                            break;
                        }
                    }
                }
            }
            Split::Fast(fast) => {
                let mut cache = fast.dfa.create_cache();
                if !fast.digits_apart {
                    fast.split_part(&mut cache, text, &mut f);
                    return;
                }
                // smollm: each digit is a piece, the text between two digits a part of its own.
                let mut rest = text;
                while let Some((at, digit)) = rest.char_indices().find(|&(_, c)| c.is_numeric()) {
                    let end = at + digit.len_utf8();
                    fast.split_part(&mut cache, &rest[..at], &mut f);
                    f(&rest[at..end]);
                    rest = &rest[end..];
                }
                fast.split_part(&mut cache, rest, &mut f);
            }
        }
    }
    // ANCHOR_END: pieces

    /// The pieces of `text`.
    ///
    /// ```
    /// # use llm_lessons::bpe::split::Pattern;
    /// let pieces = Pattern::Gpt2.split().pieces("Hello world, it's  2026!\n");
    /// assert_eq!(pieces, ["Hello", " world", ",", " it", "'s", " ", " 2026", "!", "\n"]);
    /// ```
    pub fn pieces<'t>(&self, text: &'t str) -> Vec<&'t str> {
        let mut out = Vec::new();
        self.for_each_piece(text, |p| out.push(p));
        out
    }
}

// ANCHOR: split_part
impl FastSplit {
    /// The pieces of `text` (a whole text, or smollm's text between digits).
    fn split_part<'t>(
        &self,
        cache: &mut regex_automata::hybrid::dfa::Cache,
        text: &'t str,
        f: &mut impl FnMut(&'t str),
    ) {
        let mut start = 0;
        while start < text.len() {
            let input = regex_automata::Input::new(text)
                .range(start..)
                .anchored(regex_automata::Anchored::Yes);
            let found = match self.dfa.try_search_fwd(cache, &input) {
                Ok(half) => half.map(|h| h.offset()),
                Err(_) => self.re.search(&input).map(|m| m.end()),
            };
            let Some(found) = found else {
                // Every character starts some branch; kept for safety.
                f(&text[start..]);
                break;
            };
            let mut end = found;
            // `\s+(?!\S)`: a whitespace run followed by more text gives its last
            // character to the next piece (" dog" keeps its space). A run at the
            // end of the text keeps it (`\s++$`), and so does cl100k's run that
            // ends in a newline (its `\s*[\r\n]` branch came first).
            let piece = &text[start..end];
            if end < text.len()
                && !(self.newline_branch && piece.ends_with(['\r', '\n']))
                && piece.chars().all(char::is_whitespace)
            {
                let last = piece.chars().next_back().map_or(0, char::len_utf8);
                if piece.len() > last {
                    end -= last;
                }
            }
            f(&text[start..end]);
            start = end;
        }
    }
}
// ANCHOR_END: split_part

/// Cuts `text` into parts of about `target` bytes at places where every split pattern here
/// has a piece boundary anyway: right after a lone newline, between two non-whitespace
/// characters (no piece of either pattern holds a newline followed by a non-space, and a
/// lone newline is a piece of its own or ends a run of symbols, at the end of a text or
/// not; a longer whitespace run would keep its last character at the end of a text). So
/// splitting each part gives the same pieces as splitting the whole: parts can go to
/// different threads.
pub fn parallel_parts(text: &str, target: usize) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + target).min(text.len());
        loop {
            if end >= text.len() {
                end = text.len();
                break;
            }
            if bytes[end - 1] == b'\n' && text.is_char_boundary(end) {
                let next = text[end..].chars().next().expect("not at the end");
                let before = text[start..end - 1].chars().next_back();
                if !next.is_whitespace() && before.is_some_and(|c| !c.is_whitespace()) {
                    break;
                }
            }
            end += 1;
        }
        parts.push(&text[start..end]);
        start = end;
    }
    parts
}
