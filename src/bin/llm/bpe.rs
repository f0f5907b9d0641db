//! `llm bpe ...`: byte-pair encoding (chapter 3). Train a tokenizer on a text file, encode
//! and decode with tiktoken's rank files (the same ids as Python tiktoken) or with a
//! model's tokenizer (a GGUF file's: the same ids as Hugging Face tokenizers and
//! llama.cpp), and show how a text splits into tokens.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use llm_lessons::bpe::{train, view, Allowed, Encoding, Pattern};
use llm_lessons::gpt::tokens::Tokens;
use llm_lessons::Error;

use crate::{say, CliResult};

#[derive(Subcommand)]
pub enum BpeCommand {
    /// Train a byte-level BPE tokenizer and save it as a tiktoken rank file
    Train {
        /// Training text (UTF-8)
        #[arg(long, value_name = "FILE")]
        corpus: PathBuf,
        /// Tokens in the vocabulary: the 256 bytes + the merges (<|endoftext|> comes on top)
        #[arg(long, value_name = "N")]
        vocab_size: usize,
        /// Split pattern (pre-tokenization)
        #[arg(long, value_enum, default_value_t = PatternArg::Gpt2)]
        pattern: PatternArg,
        /// Rank file to write (`base64(token) rank` per line; Python tiktoken reads it)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print the first merges
        #[arg(long, default_value_t = 10, value_name = "N")]
        show: usize,
    },
    /// Read UTF-8 text on stdin; print its token ids on one line, separated by spaces
    Encode {
        #[command(flatten)]
        tokenizer: TokenizerArgs,
        /// Turn special-token text such as <|endoftext|> into its id (otherwise: ordinary text;
        /// with --model, every special token is matched, as Hugging Face tokenizers does,
        /// unless --special names some)
        #[arg(long)]
        allow_special: bool,
        /// Allow only this special token (repeat for several); an unknown one is an error
        #[arg(long, value_name = "TOKEN", conflicts_with = "allow_special")]
        special: Vec<String>,
    },
    /// Read token ids (separated by whitespace) on stdin; print the text they stand for
    Decode {
        #[command(flatten)]
        tokenizer: TokenizerArgs,
    },
    /// Show how the text on stdin splits into tokens, and how many there are
    Show {
        #[command(flatten)]
        tokenizer: TokenizerArgs,
    },
}

/// Which tokenizer: a rank file and the encoding (pattern + special tokens) it belongs to,
/// or a model's.
#[derive(Args)]
pub struct TokenizerArgs {
    /// r50k_base (GPT-2) or cl100k_base: their split patterns and special tokens
    #[arg(
        long,
        value_enum,
        value_name = "NAME",
        required_unless_present_any = ["pattern", "model"]
    )]
    encoding: Option<EncodingArg>,
    /// For a rank file trained with `llm bpe train`: its split pattern (<|endoftext|> is the
    /// id after the last rank)
    #[arg(long, value_enum, conflicts_with = "encoding")]
    pattern: Option<PatternArg>,
    /// The rank file (.tiktoken)
    #[arg(long, value_name = "FILE", required_unless_present = "model")]
    ranks: Option<PathBuf>,
    /// A model's tokenizer instead: a GGUF file's (its vocabulary, merges, split and special
    /// tokens), or a model folder's
    #[arg(long, value_name = "FILE|DIR", conflicts_with_all = ["encoding", "pattern", "ranks"])]
    model: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EncodingArg {
    #[value(name = "r50k_base", alias = "gpt2")]
    R50kBase,
    #[value(name = "cl100k_base")]
    Cl100kBase,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PatternArg {
    Gpt2,
    Cl100k,
    Smollm,
}

impl From<PatternArg> for Pattern {
    fn from(p: PatternArg) -> Pattern {
        match p {
            PatternArg::Gpt2 => Pattern::Gpt2,
            PatternArg::Cl100k => Pattern::Cl100k,
            PatternArg::Smollm => Pattern::Smollm,
        }
    }
}

impl TokenizerArgs {
    fn load(&self) -> llm_lessons::Result<Encoding> {
        if let Some(model) = &self.model {
            return match crate::quant::tokens_at(model)? {
                Tokens::Bpe { encoding, .. } => Ok(*encoding),
                // a byte-level model: every byte is its own token, whatever the split
                Tokens::Bytes => Encoding::new(
                    "bytes",
                    (0..=255u8).map(|b| vec![b]).collect(),
                    Pattern::Gpt2.split(),
                    &[],
                ),
            };
        }
        let Some(ranks) = &self.ranks else {
            return Err(Error::InvalidArgument("give --ranks or --model".into()));
        };
        match (self.encoding, self.pattern) {
            (Some(EncodingArg::R50kBase), _) => Encoding::r50k_base(ranks),
            (Some(EncodingArg::Cl100kBase), _) => Encoding::cl100k_base(ranks),
            (None, Some(p)) => Encoding::load_tiktoken(ranks, p.into()),
            (None, None) => Err(Error::InvalidArgument(
                "give --encoding or --pattern".into(),
            )),
        }
    }
}

fn read_stdin() -> CliResult<String> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::InvalidArgument(format!(
            "standard input is not UTF-8 text: invalid byte at offset {}",
            e.utf8_error().valid_up_to()
        ))
        .into()
    })
}

pub fn run(cmd: BpeCommand) -> CliResult {
    match cmd {
        BpeCommand::Train {
            corpus,
            vocab_size,
            pattern,
            out,
            show,
        } => train_command(&corpus, vocab_size, pattern.into(), &out, show),
        BpeCommand::Encode {
            tokenizer,
            allow_special,
            special,
        } => {
            let enc = tokenizer.load()?;
            let text = read_stdin()?;
            let names: Vec<&str> = special.iter().map(String::as_str).collect();
            let allowed = if allow_special || (tokenizer.model.is_some() && names.is_empty()) {
                Allowed::All
            } else if !names.is_empty() {
                Allowed::Only(&names)
            } else {
                Allowed::None
            };
            let ids = enc.encode(&text, allowed)?;
            let line: Vec<String> = ids.iter().map(u32::to_string).collect();
            say(line.join(" "))
        }
        BpeCommand::Decode { tokenizer } => {
            let enc = tokenizer.load()?;
            let ids = read_stdin()?
                .split_whitespace()
                .map(|s| {
                    s.parse::<u32>()
                        .map_err(|_| Error::InvalidArgument(format!("{s:?} is not a token id")))
                })
                .collect::<Result<Vec<u32>, Error>>()?;
            let text = enc.decode(&ids)?;
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            Ok(out.flush()?)
        }
        BpeCommand::Show { tokenizer } => {
            let enc = tokenizer.load()?;
            let text = read_stdin()?;
            let n = enc.encode_ordinary(&text).len();
            say(view::show_tokens(&enc, &text))?;
            say(format!(
                "{}: {n} tokens for {} bytes ({:.2} bytes/token)",
                enc.name,
                text.len(),
                text.len() as f64 / n.max(1) as f64
            ))
        }
    }
}

fn train_command(
    corpus: &Path,
    vocab_size: usize,
    pattern: Pattern,
    out: &Path,
    show: usize,
) -> CliResult {
    let text = llm_lessons::data::read_text(corpus)?;
    let t0 = std::time::Instant::now();
    let trained = train::train(&text, vocab_size, pattern)?;
    let seconds = t0.elapsed().as_secs_f64();
    let table = &trained.table;
    say(format!(
        "corpus:  {}: {} bytes, {} pieces ({} distinct) with the {pattern:?} split",
        corpus.display(),
        text.len(),
        trained.pieces,
        trained.distinct_pieces
    ))?;
    say(format!(
        "trained: {} merges, vocabulary {} (+ <|endoftext|> = {}) in {seconds:.2} s",
        table.merges.len(),
        table.vocab_size(),
        table.vocab_size() + 1
    ))?;
    for m in table.merges.iter().take(show) {
        say(format!(
            "merge {:>4}: {:?} + {:?} -> {:?} (count {})",
            m.id,
            table.token_text(m.pair.0),
            table.token_text(m.pair.1),
            table.token_text(m.id),
            m.count
        ))?;
    }
    let enc = trained.encoding("trained")?;
    let n = enc.encode_ordinary_parallel(&text).len();
    say(format!(
        "encodes: the corpus in {n} tokens, {:.2} bytes/token",
        text.len() as f64 / n.max(1) as f64
    ))?;
    enc.save_tiktoken(out)?;
    say(format!("wrote {}", out.display()))
}
