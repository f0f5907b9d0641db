//! Chapter 2's step of the tour: word vectors on the toy world. The full-softmax skip-gram
//! trains on a small sample to show its loss falling; negative sampling trains on the whole
//! corpus; then neighbours, king − man + woman, and a PCA picture of the people words,
//! where the grammar plants two directions (gender, and royal vs common).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::{train_sgns, Embeddings, SgnsConfig, SoftmaxSkipGram, Vocab};
use crate::data::grammar::Grammar;
use crate::plot::{LineChart, ScatterChart, Series};
use crate::report::{StepReport, TourSize};
use crate::{Error, Result};

/// The people words of the PCA picture, as (male, female) pairs: royal, then common.
pub const PAIRS: [(&str, &str); 6] = [
    ("king", "queen"),
    ("prince", "princess"),
    ("lord", "lady"),
    ("man", "woman"),
    ("boy", "girl"),
    ("shepherd", "shepherdess"),
];

/// The settings of the step's negative-sampling run (the toy world has ~150 words, so
/// small vectors do).
pub fn toy_config() -> SgnsConfig {
    SgnsConfig {
        dim: 50,
        window: 5,
        negative: 5,
        min_count: 1,
        epochs: 5,
        // One thread: the same vectors, neighbours and picture on every run.
        threads: 1,
        seed: 1,
        ..SgnsConfig::default()
    }
}

/// The PCA picture of the [`PAIRS`] words: royal and common groups, an arrow from each
/// male word to its female twin (parallel arrows: one "gender" direction).
pub fn people_chart(emb: &Embeddings) -> Result<ScatterChart> {
    let words: Vec<&str> = PAIRS.iter().flat_map(|&(m, f)| [m, f]).collect();
    let xy = emb.pca_2d(&words)?;
    let at = |w: &str| xy[words.iter().position(|&x| x == w).expect("a listed word")];
    let group = |range: std::ops::Range<usize>| -> Vec<(String, (f64, f64))> {
        PAIRS[range]
            .iter()
            .flat_map(|&(m, f)| [(m.to_string(), at(m)), (f.to_string(), at(f))])
            .collect()
    };
    let mut chart = ScatterChart::new(
        "Toy-world word vectors: first two principal components",
        "PC 1",
        "PC 2",
    )
    .equal_aspect()
    .group("royal", group(0..3))
    .group("common", group(3..6));
    for (m, f) in PAIRS {
        chart = chart.arrow(m, f);
    }
    Ok(chart)
}

/// Runs the step, writing `ch02/softmax_loss.svg`, `ch02/people_pca.svg` and
/// `ch02/toy_world_vectors.txt` under `out_dir`.
pub fn chapter_2(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch02");
    std::fs::create_dir_all(&dir).map_err(|e| Error::Write {
        path: dir.clone(),
        source: e,
    })?;
    let grammar = Grammar::toy_world();
    let sentences = grammar.corpus(size.pick(20_000, 3_000), 1);
    let mut text = String::new();
    let mut files = Vec::new();

    // 1. The full softmax, on 2,000 sentences: every pair costs a pass over the vocabulary.
    let small = &sentences[..2_000];
    let vocab = Vocab::build(small, 1)?;
    let corpus = vocab.encode(small);
    let mut softmax = SoftmaxSkipGram::new(vocab.len(), 20, 1);
    let before = softmax.corpus_loss(&corpus, 2);
    let losses = softmax.train(&corpus, 2, 8, 64, 0.5, 1)?;
    let _ = writeln!(
        text,
        "Skip-gram, full softmax, d = 20, window 2, on 2,000 sentences ({} words): loss per \
         pair {before:.3} nats before (ln |V| = {:.3}), {:.3} after {} epochs",
        vocab.len(),
        (vocab.len() as f64).ln(),
        losses.last().copied().unwrap_or(before),
        losses.len()
    );
    let curve: Vec<(f64, f64)> = std::iter::once(before)
        .chain(losses.iter().copied())
        .enumerate()
        .map(|(i, l)| (i as f64, l))
        .collect();
    let path = dir.join("softmax_loss.svg");
    LineChart::new(
        "Full-softmax skip-gram on the toy world",
        "epoch",
        "loss per pair (nats)",
    )
    .series(Series::new("training loss", curve))
    .save_svg(&path)?;
    files.push(path);

    // 2. Negative sampling on the whole corpus.
    let config = toy_config();
    let model = train_sgns(&sentences, &config, &|_| {})?;
    let r = &model.report;
    let _ = writeln!(
        text,
        "Skip-gram, negative sampling (k = {}), d = {}, on 20,000 sentences: loss per pair {:.3} \
         in epoch 1, {:.3} in epoch {} ({:.0} effective words/s)",
        config.negative,
        config.dim,
        r.epoch_losses[0],
        r.epoch_losses.last().copied().unwrap_or(f64::NAN),
        r.epoch_losses.len(),
        r.effective_words_per_second()
    );
    let emb = model.embeddings();
    for word in ["king", "woman", "dog", "castle"] {
        let list: Vec<String> = emb
            .most_similar(word, 4)?
            .iter()
            .map(|n| format!("{} {:.2}", n.word, n.similarity))
            .collect();
        let _ = writeln!(text, "  nearest to {word:<8} {}", list.join(", "));
    }
    for (a, b, c) in [("king", "man", "woman"), ("prince", "boy", "girl")] {
        let answers: Vec<String> = emb
            .analogy(a, b, c, 3)?
            .iter()
            .map(|n| n.word.clone())
            .collect();
        let _ = writeln!(text, "  {a} - {b} + {c} = {}", answers.join(", "));
    }

    // 3. The people words in two dimensions.
    let chart = people_chart(&emb)?;
    let path = dir.join("people_pca.svg");
    chart.save_svg(&path)?;
    files.push(path);
    let path = dir.join("toy_world_vectors.txt");
    emb.save(&path)?;
    files.push(path);
    let _ = writeln!(
        text,
        "wrote {} (arrows male -> female), {} and {} (word2vec text format)",
        files[1].display(),
        files[0].display(),
        files[2].display()
    );
    Ok(StepReport {
        title: "Chapter 2: word2vec".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}
