//! Chapter 2's hot path: skip-gram negative-sampling training, in words per second, with
//! the quality of the vectors it gives. Not a test: it prints figures to compare with
//! gensim run on the same machine, same input, same settings (book chapter 2, "Measured",
//! says how gensim was run):
//!
//! ```text
//! cargo bench --bench word2vec -- data/external/sotu_1790-2021.txt --threads 2 --eval data/external/eval --out /tmp/ours.txt
//! ```
//!
//! usage: cargo bench --bench word2vec -- CORPUS.txt [--lines] [--threads T] [--epochs N]
//! [--dim D] [--seed S] [--eval DIR] [--out VECTORS.txt]
//!
//! CORPUS.txt is prose, cut into sentences by `data::sentences` (gensim was given the same
//! sentences, one a line); with `--lines` it already holds one sentence a line. The settings are
//! gensim's defaults (window 5, negative 5, sample 1e-3, min_count 5, alpha 0.025).
//! `--eval DIR` scores the vectors on DIR/{wordsim353.tsv,simlex999.txt,questions-words.txt}.

use std::time::Instant;

use llm_lessons::data;
use llm_lessons::word2vec::eval::{read_analogies, read_pairs};
use llm_lessons::word2vec::{evaluate_analogies, evaluate_pairs, train_sgns, SgnsConfig};

/// Peak resident memory of this process (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let path = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or("usage: cargo bench --bench word2vec -- CORPUS.txt [--lines] [--threads T] ...")?;
    let mut config = SgnsConfig {
        threads: 2,
        ..SgnsConfig::default()
    };
    if let Some(t) = flag("--threads") {
        config.threads = t.parse()?;
    }
    if let Some(e) = flag("--epochs") {
        config.epochs = e.parse()?;
    }
    if let Some(d) = flag("--dim") {
        config.dim = d.parse()?;
    }
    if let Some(s) = flag("--seed") {
        config.seed = s.parse()?;
    }
    let t0 = Instant::now();
    let sentences = if args.iter().any(|a| a == "--lines") {
        data::read_line_sentences(path)?
    } else {
        data::read_sentences(path)?
    };
    let words: usize = sentences.iter().map(Vec::len).sum();
    println!(
        "{path}: {} sentences, {words} words (read in {:.1} s)",
        sentences.len(),
        t0.elapsed().as_secs_f64()
    );
    let t1 = Instant::now();
    let model = train_sgns(&sentences, &config, &|_| {})?;
    let wall = t1.elapsed().as_secs_f64();
    let r = &model.report;
    println!(
        "ours: vocabulary {} words; {} epochs, {} threads, dim {}: training {:.2} s = {:.0} raw words/s, \
         {:.0} effective words/s; build_vocab + train {:.2} s wall = {:.0} raw words/s",
        model.vocab.len(),
        config.epochs,
        r.threads,
        config.dim,
        r.seconds,
        r.raw_words_per_second(),
        r.effective_words_per_second(),
        wall,
        (words * config.epochs) as f64 / wall
    );
    println!("loss per pair by epoch: {:.4?}", r.epoch_losses);
    let tables = 2.0 * (model.vocab.len() * config.dim * 4) as f64 / (1024.0 * 1024.0);
    if let Some(peak) = peak_rss_mib() {
        println!("peak RSS {peak:.0} MiB (the two tables: {tables:.1} MiB; the corpus as strings is most of the rest)");
    }
    let emb = model.embeddings();
    if let Some(out) = flag("--out") {
        emb.save(&out)?;
        println!("saved {out}");
    }
    if let Some(dir) = flag("--eval") {
        let dir = std::path::Path::new(&dir);
        for name in ["wordsim353.tsv", "simlex999.txt"] {
            let s = evaluate_pairs(&emb, &read_pairs(dir.join(name))?);
            println!(
                "{name}: Spearman {:.4} (OOV pairs {:.1}%)",
                s.spearman,
                s.oov_percent()
            );
        }
        let s = evaluate_analogies(&emb, &read_analogies(dir.join("questions-words.txt"))?);
        println!(
            "questions-words: accuracy {:.4} on {} of {} questions with all words in vocabulary",
            s.accuracy(),
            s.asked,
            s.total
        );
    }
    Ok(())
}
