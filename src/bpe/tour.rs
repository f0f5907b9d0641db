//! Chapter 3's step of the tour: train byte-level BPE on the toy world's text and measure
//! how much it compresses text it did not see, against plain bytes.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::split::Pattern;
use super::{train, view};
use crate::data::grammar::Grammar;
use crate::report::{StepReport, TourSize};
use crate::Result;

/// Vocabulary sizes the step trains (256 bytes + merges).
pub const VOCAB_SIZES: [usize; 4] = [300, 400, 512, 1024];

/// One line per sentence, as `llm data toy-world` writes it.
fn toy_text(n: usize, seed: u64) -> String {
    Grammar::toy_world()
        .generate(n, seed)
        .iter()
        .map(|s| s.text() + "\n")
        .collect()
}

/// Trains on 20,000 toy-world sentences (seed 1), encodes 5,000 others (seed 3), and
/// writes the 1,024-token tokenizer to `out_dir/ch03/toy_world_1024.tiktoken`.
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
    for vocab in VOCAB_SIZES {
        let t0 = Instant::now();
        let trained = train::train(&train_text, vocab, Pattern::Gpt2)?;
        let seconds = t0.elapsed().as_secs_f64();
        let enc = trained.encoding(&format!("toy_world_{vocab}"))?;
        let ids = enc.encode_ordinary(&test_text);
        assert_eq!(enc.decode(&ids)?, test_text, "decode(encode(s)) == s");
        let _ = writeln!(
            text,
            "  {:>10}   {:>6}   {:>11.2}   {:.3} s, {} merges{}",
            vocab,
            ids.len(),
            test_text.len() as f64 / ids.len() as f64,
            seconds,
            trained.table.merges.len(),
            if trained.table.vocab_size() < vocab {
                format!(
                    ": stops at {} tokens, every piece is one token",
                    trained.table.vocab_size()
                )
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
    Ok(StepReport {
        title: "Chapter 3: byte-pair encoding".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}
