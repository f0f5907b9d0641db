//! Chapter 3's step of the tour: train byte-level BPE on the toy world's text and measure
//! how much it compresses text it did not see, against plain bytes; with the corpora and
//! rank files `bash data/fetch.sh` puts in `data/external/`, the same on *Moby-Dick* beside
//! GPT-2's and GPT-4's vocabularies, and what those two do to digits, spaces, other
//! languages and a glitch token.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::encoding::Encoding;
use super::split::Pattern;
use super::{train, view};
use crate::data::grammar::Grammar;
use crate::plot::{LineChart, Series};
use crate::report::{StepReport, TourSize};
use crate::Result;

/// Vocabulary sizes the step trains on the toy world (256 bytes + merges).
pub const VOCAB_SIZES: [usize; 4] = [300, 400, 512, 1024];

/// Vocabulary sizes the step trains on the first 90% of *Moby-Dick*.
pub const MOBY_VOCAB_SIZES: [usize; 5] = [512, 1024, 2048, 4096, 8192];

/// The chart's file name under `out/ch03/` (the book shows it as
/// `img/ch03_bytes_per_token.svg`).
pub const CHART_FILE: &str = "bytes_per_token.svg";

/// One line per sentence, as `llm data toy-world` writes it.
fn toy_text(n: usize, seed: u64) -> String {
    Grammar::toy_world()
        .generate(n, seed)
        .iter()
        .map(|s| s.text() + "\n")
        .collect()
}

/// A file `bash data/fetch.sh` writes: in the folder `LLM_LESSONS_DATA` names when it is
/// set, else in `data/external/` under the current folder or under the crate's own folder.
fn external(name: &str) -> Option<PathBuf> {
    let places: Vec<PathBuf> = match std::env::var_os("LLM_LESSONS_DATA") {
        Some(dir) => vec![PathBuf::from(dir).join(name)],
        None => vec![
            Path::new("data/external").join(name),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/external")
                .join(name),
        ],
    };
    places.into_iter().find(|p| p.is_file())
}

/// The texts of [`effects_markdown`]'s table: what each shows, and the text.
pub const EFFECT_TEXTS: [(&str, &str); 10] = [
    ("a year", "2026"),
    ("a long number", "1234567"),
    ("a decimal", "3.14159"),
    ("no trailing space", "hello world"),
    ("a trailing space", "hello world "),
    ("a glitch token", " SolidGoldMagikarp"),
    ("English", "The cat sat on the mat."),
    ("Spanish", "El gato se sentó en la alfombra."),
    ("Russian", "Кошка сидела на коврике."),
    ("Greek", "Η γάτα κάθισε στο χαλί."),
];

/// How each encoding cuts [`EFFECT_TEXTS`], as a Markdown table: the number of tokens,
/// the tokens themselves when there are at most 8 (bytes that are not UTF-8 shown as
/// `\xNN`), and for the sentences the tokens per word.
pub fn effects_markdown(encodings: &[&Encoding]) -> String {
    let mut table = String::from("| what | text |");
    for enc in encodings {
        let _ = write!(table, " {} |", enc.name);
    }
    table.push_str("\n|---|---|");
    table.push_str(&"---|".repeat(encodings.len()));
    table.push('\n');
    for (what, text) in EFFECT_TEXTS {
        let _ = write!(table, "| {what} | `{}` |", text.replace(' ', "␣"));
        for enc in encodings {
            let spans = view::token_spans(enc, text);
            let words = text.split_whitespace().count();
            let cell = if words >= 4 {
                format!(
                    "{} ({:.1} per word)",
                    spans.len(),
                    spans.len() as f64 / words as f64
                )
            } else if spans.len() <= 8 {
                let pieces: Vec<String> = spans
                    .iter()
                    .map(|s| format!("`{}`", s.text.replace(' ', "␣")))
                    .collect();
                format!("{}: {}", spans.len(), pieces.join(" "))
            } else {
                spans.len().to_string()
            };
            let _ = write!(table, " {cell} |");
        }
        table.push('\n');
    }
    table
}

/// Trains on 20,000 toy-world sentences (seed 1), encodes 5,000 others (seed 3), and
/// writes the 1,024-token tokenizer to `out_dir/ch03/toy_world_1024.tiktoken`. At
/// [`TourSize::Full`], with `data/external/moby_dick.txt`, also trains on the first 90% of
/// the book's lines and encodes the rest, with GPT-2's and GPT-4's rank files as well
/// when they are there, and prints [`effects_markdown`]'s table. Draws bytes per token
/// against the vocabulary size to `out_dir/ch03/bytes_per_token.svg`.
pub fn chapter_3(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch03");
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::Write {
        path: dir.clone(),
        source: e,
    })?;
    let (train_text, test_text) = (
        toy_text(size.pick(20_000, 8_000), 1),
        toy_text(size.pick(5_000, 500), 3),
    );
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Byte-level BPE, GPT-2 split, trained on {} bytes of toy-world text; encoding {} other bytes:",
        train_text.len(),
        test_text.len()
    );
    let _ = writeln!(text, "  vocabulary   tokens   bytes/token   training");
    let _ = writeln!(
        text,
        "  {:>10}   {:>6}   {:>11.2}   (the bytes themselves)",
        256,
        test_text.len(),
        1.0
    );
    let mut files = Vec::new();
    let mut shown = None;
    let mut toy_points = vec![(8.0, 1.0)];
    for vocab in VOCAB_SIZES {
        let t0 = Instant::now();
        let trained = train::train(&train_text, vocab, Pattern::Gpt2)?;
        let seconds = t0.elapsed().as_secs_f64();
        let enc = trained.encoding(&format!("toy_world_{vocab}"))?;
        let ids = enc.encode_ordinary(&test_text);
        assert_eq!(enc.decode(&ids)?, test_text, "decode(encode(s)) == s");
        let bytes_per_token = test_text.len() as f64 / ids.len() as f64;
        let real_vocab = trained.table.vocab_size();
        // A vocabulary that stops early is drawn at the size it reached.
        toy_points.push(((real_vocab as f64).log2(), bytes_per_token));
        let _ = writeln!(
            text,
            "  {:>10}   {:>6}   {:>11.2}   {:.3} s, {} merges{}",
            vocab,
            ids.len(),
            bytes_per_token,
            seconds,
            trained.table.merges.len(),
            if real_vocab < vocab {
                format!(": stops at {real_vocab} tokens, every piece is one token")
            } else {
                String::new()
            }
        );
        if vocab == 1024 {
            let path = dir.join("toy_world_1024.tiktoken");
            enc.save_tiktoken(&path)?;
            files.push(path);
            shown = Some((trained, enc));
        }
    }
    if let Some((trained, enc)) = shown {
        let first: Vec<String> = trained.table.merges[..8]
            .iter()
            .map(|m| format!("{:?}", trained.table.token_text(m.id)))
            .collect();
        let _ = writeln!(
            text,
            "first merges (vocabulary 1,024): {}",
            first.join(", ")
        );
        let sentence = test_text.lines().next().unwrap_or_default();
        let _ = writeln!(
            text,
            "a test sentence in tokens: {}",
            view::show_tokens(&enc, sentence)
        );
        let _ = writeln!(
            text,
            "wrote {} (a tiktoken rank file: Python tiktoken loads it)",
            files[0].display()
        );
    }
    toy_points.dedup_by(|a, b| a.0 == b.0);

    let mut chart = LineChart::new(
        "Bytes per token against vocabulary size (text not trained on)",
        "log2 of the vocabulary size (8 = the 256 bytes)",
        "bytes per token",
    )
    .series(Series::new("toy world (trained here)", toy_points));
    let moby = match size {
        TourSize::Full => external("moby_dick.txt"),
        TourSize::Quick => None,
    };
    let (r50k, cl100k) = match size {
        TourSize::Full => (
            external("r50k_base.tiktoken")
                .map(Encoding::r50k_base)
                .transpose()?,
            external("cl100k_base.tiktoken")
                .map(Encoding::cl100k_base)
                .transpose()?,
        ),
        TourSize::Quick => (None, None),
    };
    if let Some(path) = &moby {
        let book = crate::data::read_text(path)?;
        // The first 90% of the lines to train on, the rest to measure on.
        let cut = book
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| i >= book.len() * 9 / 10)
            .unwrap_or(book.len());
        let (train_part, test_part) = book.split_at(cut);
        let _ = writeln!(
            text,
            "\nMoby-Dick: trained on its first {} bytes, encoding its last {}:",
            train_part.len(),
            test_part.len()
        );
        let _ = writeln!(text, "  vocabulary   tokens   bytes/token");
        let _ = writeln!(
            text,
            "  {:>10}   {:>6}   {:>11.2}   (the bytes themselves)",
            256,
            test_part.len(),
            1.0
        );
        let mut points = vec![(8.0, 1.0)];
        for vocab in MOBY_VOCAB_SIZES {
            let trained = train::train(train_part, vocab, Pattern::Gpt2)?;
            let enc = trained.encoding(&format!("moby_{vocab}"))?;
            let n = enc.encode_ordinary(test_part).len();
            let bytes_per_token = test_part.len() as f64 / n as f64;
            points.push(((vocab as f64).log2(), bytes_per_token));
            let _ = writeln!(text, "  {vocab:>10}   {n:>6}   {bytes_per_token:>11.2}");
        }
        chart = chart.series(Series::new("Moby-Dick (trained on its first 90%)", points));
        let mut openai = Vec::new();
        for enc in [&r50k, &cl100k].into_iter().flatten() {
            let n = enc.encode_ordinary(test_part).len();
            let bytes_per_token = test_part.len() as f64 / n as f64;
            let vocab = enc.n_ranks() + enc.special_names().len();
            openai.push(((vocab as f64).log2(), bytes_per_token));
            let _ = writeln!(
                text,
                "  {vocab:>10}   {n:>6}   {bytes_per_token:>11.2}   {}",
                enc.name
            );
        }
        if !openai.is_empty() {
            chart = chart.series(Series::new("GPT-2, GPT-4 (Moby-Dick's last 10%)", openai));
        }
    } else if size == TourSize::Full {
        let _ = writeln!(
            text,
            "(no data/external/moby_dick.txt: `bash data/fetch.sh` fetches it, and this step then measures it too)"
        );
    }
    let svg = dir.join(CHART_FILE);
    chart.save_svg(&svg)?;
    files.push(svg);
    let _ = writeln!(
        text,
        "wrote {} (the table above as a chart)",
        files[1].display()
    );
    if let (Some(r50k), Some(cl100k)) = (&r50k, &cl100k) {
        let _ = writeln!(
            text,
            "\nWhat GPT-2's and GPT-4's tokenizers do to some texts (␣ is a space):\n{}",
            effects_markdown(&[r50k, cl100k])
        );
    }
    Ok(StepReport {
        title: "Chapter 3: byte-pair encoding".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}
