//! Text as the tokens come: a token is bytes, and a character can be cut between two
//! tokens (byte-level BPE has tokens for lone bytes of `é`, CJK and emoji). Printing each
//! token's bytes alone would show a replacement character for each half; the decoder
//! holds back the start of a character until its last byte comes.
//!
//! ```
//! use llm_lessons::real_model::Utf8Stream;
//! let mut s = Utf8Stream::default();
//! let e_acute = "é".as_bytes(); // [0xC3, 0xA9]
//! assert_eq!(s.push(&[b'c', b'a', b'f', e_acute[0]]), "caf");
//! assert_eq!(s.push(&e_acute[1..]), "é");
//! assert_eq!(s.finish(), "");
//! ```

use crate::gpt::tokens::Tokens;
use crate::Result;

/// Bytes in, UTF-8 text out, holding back an incomplete character at the end.
/// What comes out, pieces and `finish` together, is `String::from_utf8_lossy` of all the
/// bytes: a byte that can start no character becomes U+FFFD at once.
#[derive(Clone, Debug, Default)]
pub struct Utf8Stream {
    /// The start of a character whose remaining bytes have not come yet (at most 3 bytes).
    pending: Vec<u8>,
}

// ANCHOR: utf8_stream
impl Utf8Stream {
    /// The text that `bytes` complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // checked by from_utf8 just now
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        // not UTF-8 whatever follows
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        // a character cut short: wait for the rest
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// The end of the stream: a character still incomplete becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

// ANCHOR_END: utf8_stream

/// Token ids in, text out: each token's bytes through a [`Utf8Stream`]. The pieces
/// together are what [`Tokens::decode`] gives for all the ids.
pub struct TokenStream<'a> {
    tokens: &'a Tokens,
    utf8: Utf8Stream,
}

impl<'a> TokenStream<'a> {
    pub fn new(tokens: &'a Tokens) -> TokenStream<'a> {
        TokenStream {
            tokens,
            utf8: Utf8Stream::default(),
        }
    }

    /// The text that token `id` completes (often all of its own; empty while a character
    /// is cut). An id the tokenizer does not have is an error.
    pub fn push(&mut self, id: u32) -> Result<String> {
        Ok(match self.tokens {
            // as Tokens::decode reads an id of a byte-level model
            Tokens::Bytes => self.utf8.push(&[id as u8]),
            Tokens::Bpe { encoding, .. } => self.utf8.push(encoding.token_bytes(id)?),
        })
    }

    /// The text still held back, at the end.
    pub fn finish(&mut self) -> String {
        self.utf8.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Any bytes, cut anywhere: the pieces add up to `from_utf8_lossy` of the whole, and
    /// no piece ends inside a character it could still complete.
    #[test]
    fn pieces_add_up_to_the_lossy_decoding() {
        let text = "naïve café, 日本語, 🙂🙃 and ASCII";
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for round in 0..300 {
            let mut bytes = text.as_bytes().to_vec();
            if round % 2 == 1 {
                // bytes that are not UTF-8: stray continuation bytes, 0xFF, cut characters
                for _ in 0..4 {
                    let at = rng.gen_range(0..=bytes.len());
                    let b = [0x80, 0xFF, 0xE6, 0xF0, 0xC3][rng.gen_range(0..5)];
                    bytes.insert(at, b);
                }
            }
            let mut s = Utf8Stream::default();
            let mut out = String::new();
            let mut at = 0;
            while at < bytes.len() {
                let n = rng.gen_range(1..=4).min(bytes.len() - at);
                let piece = s.push(&bytes[at..at + n]);
                assert!(!piece.contains('\u{FFFD}') || round % 2 == 1, "{piece:?}");
                out.push_str(&piece);
                at += n;
            }
            out.push_str(&s.finish());
            assert_eq!(out, String::from_utf8_lossy(&bytes), "round {round}");
        }
    }

    #[test]
    fn a_byte_level_tokenizer_streams_what_decode_gives() {
        let tokens = Tokens::Bytes;
        let ids: Vec<u32> = "日本 ok".bytes().map(u32::from).chain([0xE6]).collect();
        let mut s = TokenStream::new(&tokens);
        let pieces: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
        assert_eq!(pieces[..3], ["", "", "日"]);
        let all = pieces.concat() + &s.finish();
        assert_eq!(all, tokens.decode(&ids).unwrap());
        assert!(all.ends_with("ok\u{FFFD}"));
    }
}
