//! The tokenizer that travels with a model folder: the bytes of the text, or chapter 3's
//! byte-pair encoding saved beside the weights as `tokenizer.tiktoken` (the ranks) and
//! `tokenizer.json` (its split pattern). A folder without them is a byte-level model.
//!
//! Also token ids written as text (`"1 2 3"`) and the check that ids fit a model's
//! vocabulary, for the command line and the notebooks.
//!
//! ```
//! use llm_lessons::gpt::tokens::{parse_ids, Tokens};
//! assert_eq!(Tokens::Bytes.encode("hi"), [104, 105]);
//! assert_eq!(Tokens::Bytes.decode(&[104, 105]).unwrap(), "hi");
//! assert_eq!(parse_ids("1 2\n3", "ids").unwrap(), [1, 2, 3]);
//! ```

use std::path::Path;

use super::GptConfig;
use crate::bpe::{Encoding, Pattern};
use crate::data::{read_text, write_atomic};
use crate::{Error, Result};

/// The rank file in a model folder.
pub const TOKENIZER_RANKS: &str = "tokenizer.tiktoken";
/// The split pattern of the rank file, `{"pattern": "gpt2" | "cl100k" | "smollm"}`.
pub const TOKENIZER_META: &str = "tokenizer.json";

/// How a model folder turns text into ids and back.
pub enum Tokens {
    /// One id per byte, 0 to 255.
    Bytes,
    /// A byte-pair encoding and the split pattern it was loaded with.
    Bpe {
        encoding: Box<Encoding>,
        pattern: Pattern,
    },
}

fn pattern_name(pattern: Pattern) -> &'static str {
    match pattern {
        Pattern::Gpt2 => "gpt2",
        Pattern::Cl100k => "cl100k",
        Pattern::Smollm => "smollm",
    }
}

impl Tokens {
    /// A tiktoken rank file with a named split pattern (`<|endoftext|>` is the id after the
    /// last rank).
    pub fn load_tiktoken(ranks: &Path, pattern: Pattern) -> Result<Tokens> {
        Ok(Tokens::Bpe {
            encoding: Box::new(Encoding::load_tiktoken(ranks, pattern)?),
            pattern,
        })
    }

    /// The tokenizer saved in a model folder by [`Tokens::save`]; bytes when it has none.
    pub fn load(dir: &Path) -> Result<Tokens> {
        let ranks = dir.join(TOKENIZER_RANKS);
        if !ranks.exists() {
            return Ok(Tokens::Bytes);
        }
        let meta = dir.join(TOKENIZER_META);
        let text = read_text(&meta)?;
        let pattern = match serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|j| j.get("pattern")?.as_str().map(str::to_string))
            .as_deref()
        {
            Some("gpt2") => Pattern::Gpt2,
            Some("cl100k") => Pattern::Cl100k,
            Some("smollm") => Pattern::Smollm,
            _ => {
                return Err(Error::Checkpoint {
                    path: meta,
                    message: "needs {\"pattern\": \"gpt2\" | \"cl100k\" | \"smollm\"}".into(),
                })
            }
        };
        Tokens::load_tiktoken(&ranks, pattern)
    }

    /// Writes the tokenizer into a model folder (nothing for bytes); `source` names the
    /// rank file it came from, in `tokenizer.json`.
    pub fn save(&self, dir: &Path, source: Option<&Path>) -> Result<()> {
        let Tokens::Bpe { encoding, pattern } = self else {
            return Ok(());
        };
        encoding.save_tiktoken(dir.join(TOKENIZER_RANKS))?;
        let mut meta = serde_json::json!({"pattern": pattern_name(*pattern)});
        if let Some(path) = source {
            meta["source"] = path.display().to_string().into();
        }
        let text = serde_json::to_string_pretty(&meta).expect("JSON");
        write_atomic(&dir.join(TOKENIZER_META), text.as_bytes())
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        match self {
            Tokens::Bytes => text.bytes().map(u32::from).collect(),
            Tokens::Bpe { encoding, .. } => encoding.encode_ordinary_parallel(text),
        }
    }

    /// The text of `ids`; bytes that are not UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes = match self {
            Tokens::Bytes => ids.iter().map(|&id| id as u8).collect(),
            Tokens::Bpe { encoding, .. } => encoding.decode_bytes(ids)?,
        };
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Ids the tokenizer can produce: 256 bytes, or the ranks and special tokens.
    pub fn vocab_size(&self) -> Result<usize> {
        Ok(match self {
            Tokens::Bytes => 256,
            Tokens::Bpe { encoding, .. } => {
                // an encoding from a GGUF file's merges may end in unused ids
                let mut n = (0..encoding.n_ranks() as u32)
                    .rev()
                    .find(|&id| encoding.token_bytes(id).is_ok())
                    .map_or(0, |id| id as usize + 1);
                for name in encoding.special_names() {
                    n = n.max(encoding.special_token(name)? as usize + 1);
                }
                n
            }
        })
    }

    /// Errors if the model cannot take every id the tokenizer produces.
    pub fn check_fits(&self, cfg: &GptConfig) -> Result<()> {
        let n = self.vocab_size()?;
        if cfg.vocab_size < n {
            return Err(Error::InvalidArgument(format!(
                "the model's vocabulary has {} ids, fewer than its tokenizer's {n}",
                cfg.vocab_size
            )));
        }
        Ok(())
    }
}

/// Token ids separated by white space; `what` names the text in errors.
pub fn parse_ids(text: &str, what: &str) -> Result<Vec<u32>> {
    text.split_whitespace()
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::InvalidArgument(format!("{what}: {s:?} is not a token id")))
        })
        .collect()
}

/// Errors, naming `what`, if an id is past the vocabulary of a model of `cfg`.
pub fn check_ids(ids: &[u32], cfg: &GptConfig, what: &str) -> Result<()> {
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
        return Err(Error::InvalidArgument(format!(
            "{what}: token id {id} is out of range: the model's vocabulary has {} ids",
            cfg.vocab_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_a_tokenizer_is_bytes_and_ids_are_checked() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-tokens-{}", std::process::id()));
        let tokens = Tokens::load(&dir).unwrap();
        assert!(matches!(tokens, Tokens::Bytes));
        assert_eq!(tokens.vocab_size().unwrap(), 256);
        let mut cfg = GptConfig::llama_tiny();
        cfg.vocab_size = 100;
        assert!(tokens.check_fits(&cfg).is_err());
        assert!(check_ids(&[1, 99], &cfg, "x").is_ok());
        let err = check_ids(&[1, 100], &cfg, "x").unwrap_err().to_string();
        assert!(err.contains("token id 100 is out of range"), "{err}");
        let err = parse_ids("1 two", "y").unwrap_err().to_string();
        assert!(err.contains("y: \"two\" is not a token id"), "{err}");
    }
}
