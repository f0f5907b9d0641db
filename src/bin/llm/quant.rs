//! `llm quant ...`: quantization (chapter 6). `llm quant quantize` writes a model folder
//! as a GGUF file in one of ggml's formats, which llama.cpp loads and which `llm gpt eval`
//! and `llm gpt generate` accept in place of a folder. `llm quant report` stores a saved
//! model in every format of the chapter (f32, f16, int8 with one step per tensor or per
//! row, ggml's Q8_0, Q4_1 and Q4_0), each with its bits per weight, its weights' bytes and
//! error, and the cross-entropy it scores; the measuring is the library's
//! ([`llm_lessons::quant::report`]).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use llm_lessons::gpt::checkpoint::load_model;
use llm_lessons::gpt::run::sequence_loss;
use llm_lessons::gpt::tokens::{check_ids, parse_ids, Tokens};
use llm_lessons::gpt::Gpt;
use llm_lessons::quant::gguf::llama::{
    model_from_gguf, requantize, to_gguf, tokens_from_gguf, Precision,
};
use llm_lessons::quant::gguf::{Gguf, Value};
use llm_lessons::quant::matrix::Format;
use llm_lessons::quant::report::{report, table, Scheme};
use llm_lessons::real_model::chat::CHAT_TEMPLATE_KEY;
use llm_lessons::real_model::ChatTemplate;
use llm_lessons::Error;

use crate::{say, CliResult};

#[derive(Subcommand)]
pub enum QuantCommand {
    /// Write a model folder as a GGUF file (llama.cpp's container and tensor names)
    Quantize {
        /// A model folder (from `llm gpt train`, or a Hugging Face Llama), or a GGUF
        /// file to store again in another format (its metadata kept; the token
        /// embedding, which is the tied head, keeps at least Q8_0)
        #[arg(long, value_name = "DIR|FILE")]
        model: PathBuf,
        /// f32, f16, q8_0, q4_0 or q4_1: the format of the matrices (norms stay f32;
        /// a matrix whose rows are not whole 32-value blocks is stored as f16)
        #[arg(long, value_name = "FORMAT")]
        format: Format,
        /// The GGUF file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// general.name in the file (default: the folder's name)
        #[arg(long)]
        name: Option<String>,
        /// A Jinja chat template to store as tokenizer.chat_template (`llm chat` lays out
        /// conversations with it)
        #[arg(long, value_name = "FILE")]
        chat_template: Option<PathBuf>,
    },
    /// Store a model folder's projections in every format and print, per format: bits
    /// per weight, the weights' bytes, max and RMS weight error (with the SNR measured
    /// and predicted by Δ²/12), the held-out cross-entropy and scoring speed
    Report {
        /// A model folder (from `llm gpt train`, or a Hugging Face Llama)
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Held-out token ids separated by whitespace
        #[arg(long, value_name = "FILE", required_unless_present = "text")]
        ids: Option<PathBuf>,
        /// Held-out UTF-8 text, tokenized with the model folder's tokenizer.tiktoken, or as
        /// bytes when the folder has none
        #[arg(long, value_name = "FILE", conflicts_with = "ids")]
        text: Option<PathBuf>,
    },
}

pub fn run(cmd: QuantCommand) -> CliResult {
    match cmd {
        QuantCommand::Quantize {
            model,
            format,
            out,
            name,
            chat_template,
        } => {
            let dir = model;
            let mut g = if dir.is_file() {
                // a GGUF file: stored again in `format`, its metadata kept
                let source = Gguf::read(&dir)?;
                if out.exists() && same_file(&dir, &out) {
                    return Err(Error::InvalidArgument(format!(
                        "--out {} is the input file: write to another path",
                        out.display()
                    ))
                    .into());
                }
                let mut g = requantize(&source, format).map_err(|e| named(&dir, e))?;
                if let Some(name) = name {
                    g.set("general.name", Value::String(name));
                }
                g
            } else {
                let model = load_model(&dir)?;
                let tokens = Tokens::load(&dir)?;
                let name = name.unwrap_or_else(|| {
                    dir.file_name()
                        .map_or("model".into(), |n| n.to_string_lossy().into_owned())
                });
                to_gguf(&model, &tokens, &name, format)?
            };
            if let Some(path) = chat_template {
                let source = llm_lessons::data::read_text(&path)?;
                // a template that does not parse is refused before the file is written
                ChatTemplate::new(&source, &[]).map_err(|e| named(&path, e))?;
                g.set(CHAT_TEMPLATE_KEY, Value::String(source));
            }
            g.write(&out)?;
            let mut by_format: Vec<(Format, usize, u64)> = Vec::new();
            for t in &g.tensors {
                let n = t.dims.iter().product::<u64>();
                match by_format.iter_mut().find(|(f, ..)| *f == t.format) {
                    Some((_, count, values)) => {
                        *count += 1;
                        *values += n;
                    }
                    None => by_format.push((t.format, 1, n)),
                }
            }
            let parts: Vec<String> = by_format
                .iter()
                .map(|(f, count, values)| format!("{count} {f} ({values} values)"))
                .collect();
            let size = std::fs::metadata(&out).map_err(|e| Error::Io {
                path: out.clone(),
                source: e,
            })?;
            let weights = g
                .tensors
                .iter()
                .map(|t| t.dims.iter().product::<u64>())
                .sum::<u64>();
            say(format!(
                "wrote {}: {} tensors ({}), {} bytes, {:.2} bits per weight",
                out.display(),
                g.tensors.len(),
                parts.join(", "),
                size.len(),
                8.0 * g.tensors.iter().map(|t| t.data.len() as u64).sum::<u64>() as f64
                    / weights as f64
            ))
        }
        QuantCommand::Report { model, ids, text } => {
            let loaded = load_model(&model)?;
            let ids = match (ids, text) {
                (Some(path), _) => {
                    let what = path.display().to_string();
                    parse_ids(&llm_lessons::data::read_text(&path)?, &what)?
                }
                (None, Some(path)) => {
                    let tokens = Tokens::load(&model)?;
                    tokens.check_fits(&loaded.cfg)?;
                    tokens.encode(&llm_lessons::data::read_text(&path)?)
                }
                (None, None) => {
                    return Err(Error::InvalidArgument("give --ids or --text".into()).into())
                }
            };
            check_ids(&ids, &loaded.cfg, "the input")?;
            if ids.len() < 2 {
                return Err(Error::InvalidArgument(format!(
                    "{} held-out tokens: the cross-entropy needs at least 2",
                    ids.len()
                ))
                .into());
            }
            let rows = report(&loaded, &Scheme::REPORT, |m| {
                Ok((sequence_loss(m, &ids)?, ids.len() - 1))
            })?;
            say(format!(
            "{}: {} parameters; the projections in each format (norms and embeddings stay f32), \
             scored on {} held-out tokens",
            model.display(),
            loaded.cfg.n_params(),
            ids.len() - 1
        ))?;
            print!("{}", table(&rows, "nats/token"));
            for r in &rows {
                if !r.kept_f32.is_empty() {
                    say(format!(
                        "{} keeps {} projection(s) in f32, rows not whole blocks: {}",
                        r.scheme,
                        r.kept_f32.len(),
                        r.kept_f32.join(", ")
                    ))?;
                }
            }
            say(
            "weight bytes: the tensors' bytes in each format (int8/tensor and int8/row: what int8 \
             storage would take; they are scored by rounding the weights and multiplying in f32)",
        )
        }
    }
}

/// A model from a folder, or from a GGUF file (a path that is a file): in the file's own
/// formats, or dequantized to f32 with `exact`.
pub fn load_model_or_gguf(path: &Path, exact: bool) -> llm_lessons::Result<Gpt> {
    if !path.is_file() {
        return load_model(path);
    }
    let g = Gguf::read(path)?;
    let precision = if exact {
        Precision::Exact
    } else {
        Precision::AsStored
    };
    model_from_gguf(&g, precision).map_err(|e| named(path, e))
}

/// The tokenizer of a model folder, or of a GGUF file.
pub fn tokens_at(path: &Path) -> llm_lessons::Result<Tokens> {
    if !path.is_file() {
        return Tokens::load(path);
    }
    tokens_from_gguf(&Gguf::read(path)?).map_err(|e| named(path, e))
}

/// An error about a file's content, with the file's name in front.
pub fn named(path: &Path, e: Error) -> Error {
    match e {
        Error::InvalidArgument(message) => Error::Checkpoint {
            path: path.to_path_buf(),
            message,
        },
        e => e,
    }
}

/// Whether two paths name the same file (so that writing one would replace the other).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
