//! Chapter 3's hot paths: encoding with GPT-2's ranks, and training. Not a test: it prints
//! throughput, to compare with Python tiktoken (`encode_ordinary`, and
//! `encode_ordinary_batch` on the same 64 KB parts) and Hugging Face tokenizers' byte-level
//! BPE trainer run on the same machine (book chapter 3, "What the numbers say", says how).
//!
//! usage: cargo bench --bench bpe -- [MOBY_DICK] [R50K_RANKS] [SECOND_CORPUS]
//! (defaults: data/external/moby_dick.txt and data/external/r50k_base.tiktoken, fetched by
//! bash data/fetch.sh; SECOND_CORPUS, trained to 8,192 tokens, is skipped unless given: the
//! book's is 42 Shakespeare works, 5.1 MB)

use std::time::Instant;

use llm_lessons::bpe::{train, Encoding, Pattern, Split};
use llm_lessons::data;

/// Seconds of `f`: (best, median) of `n` runs.
fn time<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..n {
        let t = Instant::now();
        out = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[0], times[n / 2], out.expect("n > 0"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let moby_path = arg(0, "data/external/moby_dick.txt");
    let ranks = arg(1, "data/external/r50k_base.tiktoken");
    let second = args.get(2).cloned();
    let threads = rayon::current_num_threads();
    println!("{threads} threads (rayon); MB = 10^6 bytes of UTF-8");

    let moby = data::read_text(&moby_path)?;
    let mb = moby.len() as f64 / 1e6;
    let enc = Encoding::r50k_base(&ranks)?;
    let (best, median, ids) = time(5, || enc.encode_ordinary(&moby));
    println!(
        "encode r50k_base, {moby_path} ({} bytes -> {} tokens), 1 thread: {:.1} MB/s best of 5 (median {:.1})",
        moby.len(),
        ids.len(),
        mb / best,
        mb / median
    );
    let (best, median, par) = time(5, || enc.encode_ordinary_parallel(&moby));
    assert_eq!(par, ids, "the parallel encoding gives the same ids");
    println!(
        "encode r50k_base, {threads} threads (64 KB parts cut at newlines): {:.1} MB/s best of 5 (median {:.1})",
        mb / best,
        mb / median
    );
    let fancy = enc.clone().with_split(Split::fancy(Pattern::Gpt2.regex())?);
    let (best, median, ids_fancy) = time(3, || fancy.encode_ordinary(&moby));
    assert_eq!(ids_fancy, ids);
    println!(
        "  the same with fancy-regex running tiktoken's pattern as written, 1 thread: {:.1} MB/s best of 3 (median {:.1})",
        mb / best,
        mb / median
    );

    // Hugging Face's vocab_size counts <|endoftext|>: 1024 there is 767 merges, so 1023 here.
    for (path, vocab) in [(Some(moby_path.as_str()), 1024), (second.as_deref(), 8192)] {
        let Some(path) = path else {
            println!("train to {vocab} tokens: no SECOND_CORPUS given, skipped");
            continue;
        };
        if !std::path::Path::new(path).exists() {
            println!("train: {path} not found, skipped");
            continue;
        }
        let (best, median, trained) = time(5, || {
            let text = data::read_text(path).expect("readable");
            train::train(&text, vocab - 1, Pattern::Gpt2).expect("trains")
        });
        println!(
            "train to vocab {vocab} (256 bytes + {} merges + <|endoftext|>), GPT-2 split, {path}: \
             {median:.3} s median of 5 (best {best:.3}), reading the file included; {} distinct pieces",
            trained.table.merges.len(),
            trained.distinct_pieces
        );
    }
    Ok(())
}
