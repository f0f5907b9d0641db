//! `llm quant ...`: a saved model in every format of chapter 6 (f32, f16, int8 with one
//! step per tensor or per row, ggml's Q8_0, Q4_1 and Q4_0), each with its bits per weight,
//! its weights' bytes and error, and the cross-entropy it scores. The measuring is the
//! library's ([`llm_lessons::quant::report`]).

use std::path::PathBuf;

use clap::Subcommand;
use llm_lessons::gpt::checkpoint::load_model;
use llm_lessons::gpt::run::sequence_loss;
use llm_lessons::gpt::tokens::{check_ids, parse_ids, Tokens};
use llm_lessons::quant::report::{report, table, Scheme};
use llm_lessons::Error;

use crate::{say, CliResult};

#[derive(Subcommand)]
pub enum QuantReportCommand {
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

pub fn run(cmd: QuantReportCommand) -> CliResult {
    let QuantReportCommand::Report { model, ids, text } = cmd;
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
        (None, None) => return Err(Error::InvalidArgument("give --ids or --text".into()).into()),
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
