//! Chapter 1's tour step: every order and smoothing on the toy world's corpora, against
//! the grammar's true perplexity.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::grammar::{true_cross_entropy, GeneratedSentence, Grammar};
use crate::ngram::{Evaluation, NgramConfig, NgramModel, Smoothing};
use crate::plot::{LineChart, Series};
use crate::progress;
use crate::report::{StepReport, TourSize};
use crate::Result;

/// The settings of chapter 1's step.
#[derive(Debug, Clone)]
pub struct NgramTourConfig {
    /// Sentences of the training, held-out and test corpora, and the seed of each (distinct
    /// seeds: three independent samples of the same language).
    pub train: (usize, u64),
    pub heldout: (usize, u64),
    pub test: (usize, u64),
    /// Orders 1..=max_order are trained with every smoothing of [`Smoothing::all`].
    pub max_order: usize,
    /// Seed of the sampled sentences.
    pub sample_seed: u64,
}

impl Default for NgramTourConfig {
    fn default() -> Self {
        NgramTourConfig {
            train: (20_000, 1),
            heldout: (2_000, 2),
            test: (5_000, 3),
            max_order: 5,
            sample_seed: 7,
        }
    }
}

/// A sentence drawn from a model, and whether the grammar could have written it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub temperature: f64,
    pub words: Vec<String>,
    pub grammatical: bool,
}

/// The share of grammatical and of copied sentences among [`TemperatureRow::samples`]
/// sentences drawn at one temperature.
#[derive(Debug, Clone, Copy)]
pub struct TemperatureRow {
    pub temperature: f64,
    pub samples: usize,
    pub grammatical: usize,
    pub in_training: usize,
}

/// A history that needs a verb (the king has none yet) but whose last words, "is cold",
/// usually end a sentence: the n-gram model's view is too short to see that.
pub const STOP_HISTORY: [&str; 5] = ["the", "king", "who", "is", "cold"];

/// A grammatical sentence that the training corpus (20,000 sentences, seed 1) does not hold.
pub const UNSEEN_SENTENCE: [&str; 8] = [
    "the", "old", "duchess", "who", "sings", "rides", "her", "horse",
];
/// The same words, scrambled.
pub const SCRAMBLED_SENTENCE: [&str; 8] = [
    "horse", "her", "rides", "sings", "who", "duchess", "old", "the",
];

/// What chapter 1's step measured.
#[derive(Debug, Clone)]
pub struct NgramTour {
    pub config: NgramTourConfig,
    /// Word tokens (no sentence ends) and distinct words of the training corpus.
    pub train_tokens: usize,
    pub train_types: usize,
    pub smoothings: Vec<Smoothing>,
    /// `evaluations[n - 1][j]`: the order-n model with `smoothings[j]`, on the test set.
    pub evaluations: Vec<Vec<Evaluation>>,
    /// The grammar's own cross-entropy on the test set, nats per token.
    pub true_cross_entropy: f64,
    /// The model with the lowest test perplexity: (order, smoothing).
    pub best: (usize, Smoothing),
    pub samples: Vec<Sample>,
    /// The interpolation weights λ0 (uniform) .. λn that EM fitted on the held-out set, for
    /// the interpolated model of each order n = 1..=max_order.
    pub lambdas: Vec<Vec<f64>>,
    /// Many samples from the best model at each temperature: how many the grammar could
    /// have written, and how many copy a training sentence.
    pub temperatures: Vec<TemperatureRow>,
    /// P(`</s>` | [`STOP_HISTORY`]) under the best model, at T = 1 and T = 0.5.
    pub stop_probability: (f64, f64),
    /// ln P under the best model of [`UNSEEN_SENTENCE`] (grammatical, not in the training
    /// corpus) and of its scramble [`SCRAMBLED_SENTENCE`].
    pub unseen_vs_scrambled: (f64, f64),
    /// Size of the ARPA file's model: n-grams listed at each order.
    pub arpa_ngrams: Vec<usize>,
    pub files: Vec<PathBuf>,
    pub elapsed: Duration,
}

impl NgramTour {
    /// The evaluation of the order-`order` model with `smoothing`, if the tour trained it.
    pub fn evaluation(&self, order: usize, smoothing: Smoothing) -> Option<Evaluation> {
        let j = self.smoothings.iter().position(|&s| s == smoothing)?;
        self.evaluations.get(order.checked_sub(1)?)?.get(j).copied()
    }

    pub fn true_perplexity(&self) -> f64 {
        self.true_cross_entropy.exp()
    }

    fn test_corpus_path(&self) -> &Path {
        self.files
            .iter()
            .find(|f| f.ends_with("toy_world_test.txt"))
            .map_or(Path::new("toy_world_test.txt"), PathBuf::as_path)
    }
}

/// Sentences sampled at each temperature for the grammaticality table.
const TEMPERATURE_SAMPLES: usize = 500;

/// Order of the tour's ARPA file (modified Kneser-Ney).
const ARPA_ORDER: usize = 3;

/// Chapter 1: the toy world's corpora, every order × smoothing, perplexity against the
/// grammar's true perplexity, samples, a plot and an ARPA file, in `out_dir/ch01/`.
pub fn ngram_tour(out_dir: &Path, config: &NgramTourConfig) -> Result<NgramTour> {
    let start = Instant::now();
    if config.max_order == 0 {
        return Err(crate::Error::InvalidArgument(
            "the tour needs at least order 1".into(),
        ));
    }
    let dir = out_dir.join("ch01");
    let grammar = Grammar::toy_world();

    let spinner = progress::spinner("generating the toy-world corpora");
    let [train, heldout, test] =
        [config.train, config.heldout, config.test].map(|(n, seed)| grammar.generate(n, seed));
    let mut files = Vec::new();
    for (name, corpus) in [("train", &train), ("heldout", &heldout), ("test", &test)] {
        let path = dir.join(format!("toy_world_{name}.txt"));
        Grammar::write_corpus(corpus, &path)?;
        files.push(path);
    }
    spinner.finish_and_clear();
    let words = |c: &[GeneratedSentence]| c.iter().map(|s| s.words.clone()).collect::<Vec<_>>();
    let (train_w, heldout_w, test_w) = (words(&train), words(&heldout), words(&test));

    // Every order × smoothing, trained and scored in parallel; models are dropped as soon as
    // they are scored, and the two needed later are trained again (training is
    // deterministic: the same data gives the same model).
    let smoothings = Smoothing::all().to_vec();
    let grid: Vec<(usize, Smoothing)> = (1..=config.max_order)
        .flat_map(|n| smoothings.iter().map(move |&s| (n, s)))
        .collect();
    let bar = progress::bar(grid.len() as u64, "training n-gram models");
    let scored_lambdas: Vec<(Evaluation, Vec<f64>)> = grid
        .par_iter()
        .map(|&(n, s)| {
            let model = NgramModel::train(&train_w, &heldout_w, NgramConfig::new(n, s))?;
            let e = model.evaluate(&test_w);
            bar.inc(1);
            Ok((e, model.lambdas().to_vec()))
        })
        .collect::<Result<_>>()?;
    let (scored, all_lambdas): (Vec<Evaluation>, Vec<Vec<f64>>) =
        scored_lambdas.into_iter().unzip();
    let lambdas = grid
        .iter()
        .zip(all_lambdas)
        .filter(|((_, s), _)| *s == Smoothing::Interpolated)
        .map(|(_, l)| l)
        .collect();
    bar.finish_and_clear();
    let evaluations: Vec<Vec<Evaluation>> =
        scored.chunks(smoothings.len()).map(<[_]>::to_vec).collect();

    let best = grid
        .iter()
        .zip(&scored)
        .min_by(|a, b| a.1.perplexity().total_cmp(&b.1.perplexity()))
        .map(|(&g, _)| g)
        .expect("the grid is not empty");
    let h_true = true_cross_entropy(&test);

    // Samples from the best model, checked against the grammar.
    let model = NgramModel::train(&train_w, &heldout_w, NgramConfig::new(best.0, best.1))?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.sample_seed);
    let samples = [(1.0, 5), (0.5, 3)]
        .into_iter()
        .flat_map(|(t, count)| std::iter::repeat_n(t, count))
        .map(|temperature| {
            let words = model.sample(&mut rng, temperature, 40);
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            let grammatical = grammar.log_prob(&refs).is_finite();
            Sample {
                temperature,
                words,
                grammatical,
            }
        })
        .collect();

    // Many more samples, only counted: 500 at each temperature, on the same generator.
    let seen: rustc_hash::FxHashSet<&[String]> = train_w.iter().map(Vec::as_slice).collect();
    let temperatures = [0.5, 1.0, 1.5]
        .into_iter()
        .map(|temperature| {
            let mut row = TemperatureRow {
                temperature,
                samples: TEMPERATURE_SAMPLES,
                grammatical: 0,
                in_training: 0,
            };
            for _ in 0..TEMPERATURE_SAMPLES {
                let words = model.sample(&mut rng, temperature, 40);
                let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                row.grammatical += usize::from(grammar.log_prob(&refs).is_finite());
                row.in_training += usize::from(seen.contains(words.as_slice()));
            }
            row
        })
        .collect();
    let stop_probability = {
        let p_end = |t: f64| {
            let z: f64 = model
                .vocab
                .words()
                .iter()
                .map(|w| model.prob_words(&STOP_HISTORY, w).powf(1.0 / t))
                .sum();
            model.prob_words(&STOP_HISTORY, "</s>").powf(1.0 / t) / z
        };
        (p_end(1.0), p_end(0.5))
    };
    let unseen_vs_scrambled = (
        model.sentence_log_prob(&UNSEEN_SENTENCE),
        model.sentence_log_prob(&SCRAMBLED_SENTENCE),
    );

    let mut chart = LineChart::new(
        "Test perplexity of n-gram models on the toy world",
        "order n",
        "perplexity (log scale)",
    )
    .log_y()
    .hline(
        format!("true perplexity {:.2} (the grammar)", h_true.exp()),
        h_true.exp(),
    );
    for (j, s) in smoothings.iter().enumerate() {
        let points = (1..=config.max_order)
            .map(|n| (n as f64, evaluations[n - 1][j].perplexity()))
            .collect();
        chart = chart.series(Series::new(s.to_string(), points));
    }
    let svg = dir.join("perplexity_by_order.svg");
    chart.save_svg(&svg)?;
    files.push(svg);

    let arpa_model = NgramModel::train(
        &train_w,
        &heldout_w,
        NgramConfig::new(ARPA_ORDER, Smoothing::ModifiedKneserNey),
    )?;
    let arpa = dir.join("model.arpa");
    arpa_model.write_arpa(&arpa)?;
    files.push(arpa);
    // The ARPA file lists every vocabulary word at order 1 and every seen k-gram above.
    let arpa_ngrams = (1..=ARPA_ORDER)
        .map(|k| match k {
            1 => arpa_model.vocab.len(),
            _ => arpa_model.counts.by_order[k - 1].len(),
        })
        .collect();

    Ok(NgramTour {
        config: config.clone(),
        train_tokens: train_w.iter().map(Vec::len).sum(),
        train_types: distinct_words(&train_w),
        smoothings,
        evaluations,
        true_cross_entropy: h_true,
        best,
        samples,
        lambdas,
        temperatures,
        stop_probability,
        unseen_vs_scrambled,
        arpa_ngrams,
        files,
        elapsed: start.elapsed(),
    })
}

fn distinct_words(sentences: &[Vec<String>]) -> usize {
    let mut seen = rustc_hash::FxHashSet::default();
    for w in sentences.iter().flatten() {
        seen.insert(w.as_str());
    }
    seen.len()
}

/// Chapter 1's tour step.
pub fn chapter_1(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let config = match size {
        TourSize::Full => NgramTourConfig::default(),
        TourSize::Quick => NgramTourConfig {
            train: (2_000, 1),
            heldout: (200, 2),
            test: (500, 3),
            max_order: 3,
            ..NgramTourConfig::default()
        },
    };
    let tour = ngram_tour(out_dir, &config)?;
    Ok(StepReport {
        title: "Chapter 1: n-gram language models".into(),
        text: ngram_report(&tour),
        files: tour.files.clone(),
        elapsed: tour.elapsed,
    })
}

/// Chapter 1's findings as text: the perplexity table, the best model against the truth,
/// the samples and the files written.
pub fn ngram_report(t: &NgramTour) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let c = &t.config;
    let _ = writeln!(s, "== Chapter 1: n-gram language models ==\n");
    let _ = writeln!(
        s,
        "Corpora from the toy-world grammar (data/toy_world.en.pcfg): {} training sentences \
         (seed {}; {} words, {} distinct), {} held-out (seed {}), {} test (seed {}).",
        thousands(c.train.0),
        c.train.1,
        thousands(t.train_tokens),
        t.train_types,
        thousands(c.heldout.0),
        c.heldout.1,
        thousands(c.test.0),
        c.test.1,
    );
    let _ = writeln!(
        s,
        "Every model counts the training set; interpolated fits its weights on the held-out set.\n"
    );

    // The table: orders down, smoothings across.
    let true_ppl = t.true_perplexity();
    let _ = writeln!(
        s,
        "Test perplexity (lower is better; the grammar itself scores {true_ppl:.2}, \
         the floor no model can beat on average):\n"
    );
    let names: Vec<String> = t.smoothings.iter().map(|m| m.to_string()).collect();
    let widths: Vec<usize> = names.iter().map(|n| n.len().max(9)).collect();
    let mut header = format!("{:>7}", "order");
    for (n, w) in names.iter().zip(&widths) {
        let _ = write!(header, "  {n:>w$} ");
    }
    let _ = writeln!(s, "{}", header.trim_end());
    for (i, row) in t.evaluations.iter().enumerate() {
        let mut line = format!("{:>7}", i + 1);
        for (j, (e, w)) in row.iter().zip(&widths).enumerate() {
            let mark = if (i + 1, t.smoothings[j]) == t.best {
                "*"
            } else {
                " "
            };
            let _ = write!(line, "  {:>w$}{mark}", ppl(e.perplexity()));
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    // Why MLE is infinite: the share of test events it gives probability 0.
    if let Some(j) = t.smoothings.iter().position(|&m| m == Smoothing::Mle) {
        let zeros: Vec<String> = t
            .evaluations
            .iter()
            .enumerate()
            .filter(|(_, row)| row[j].zero_prob_events > 0)
            .map(|(i, row)| {
                let e = row[j];
                format!(
                    "order {} {:.1}%",
                    i + 1,
                    100.0 * e.zero_prob_events as f64 / e.events as f64
                )
            })
            .collect();
        if !zeros.is_empty() {
            let _ = writeln!(
                s,
                "\ninf: MLE gives probability 0 to any n-gram it never counted, and one zero makes \
                 the whole test set impossible. Test events with P = 0: {}.",
                zeros.join(", ")
            );
        }
    }

    let (n, m) = t.best;
    let Some(e) = t.evaluation(n, m) else {
        return s;
    };
    let _ = writeln!(
        s,
        "\nBest (*): {m} order {n}: {:.2} vs true {true_ppl:.2}, {:+.1}% \
         (cross-entropy {:.3} vs {:.3} nats/token, {:.3} vs {:.3} bits).",
        e.perplexity(),
        100.0 * (e.perplexity() / true_ppl - 1.0),
        e.cross_entropy(),
        t.true_cross_entropy,
        e.bits_per_token(),
        t.true_cross_entropy / std::f64::consts::LN_2,
    );

    let _ = writeln!(
        s,
        "\nSampled from the best model (seed {}); ✓ = the grammar can write it, \
         ✗ = it cannot (the model sees {} words back: agreement and structure further away \
         are lost):",
        c.sample_seed,
        n - 1
    );
    for x in &t.samples {
        let mark = if x.grammatical { "✓" } else { "✗" };
        let _ = writeln!(s, "  T={:.1} {mark} {}", x.temperature, x.words.join(" "));
    }

    let _ = writeln!(
        s,
        "\nOver {} samples at each temperature (the same generator, continued):",
        TEMPERATURE_SAMPLES
    );
    let _ = writeln!(
        s,
        "{:>6}  {:>11}  {:>11}",
        "T", "grammatical", "in training"
    );
    for r in &t.temperatures {
        let pct = |k: usize| 100.0 * k as f64 / r.samples as f64;
        let _ = writeln!(
            s,
            "{:>6.1}  {:>10.0}%  {:>10.0}%",
            r.temperature,
            pct(r.grammatical),
            pct(r.in_training)
        );
    }
    let _ = writeln!(
        s,
        "P(</s> | {}) under the best model: {:.2} at T = 1, {:.2} at T = 0.5 \
         (the king still needs his verb; \"is cold\" usually ends a sentence).",
        STOP_HISTORY.join(" "),
        t.stop_probability.0,
        t.stop_probability.1
    );

    let _ = writeln!(
        s,
        "\nln P under the best model: {:.2} for \"{}\" (not in the training corpus), \
         {:.2} for its scramble \"{}\".",
        t.unseen_vs_scrambled.0,
        UNSEEN_SENTENCE.join(" "),
        t.unseen_vs_scrambled.1,
        SCRAMBLED_SENTENCE.join(" ")
    );

    if !t.lambdas.is_empty() {
        let _ = writeln!(
            s,
            "\nInterpolation weights fitted by EM on the held-out set (λ0 uniform, λk order k):"
        );
        for (i, l) in t.lambdas.iter().enumerate() {
            let list: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(k, x)| format!("λ{k} {x:.3}"))
                .collect();
            let _ = writeln!(s, "  order {}: {}", i + 1, list.join(", "));
        }
    }

    let _ = writeln!(s, "\nWrote:");
    for f in &t.files {
        let what = match f.file_name().and_then(|n| n.to_str()) {
            Some("perplexity_by_order.svg") => "the table above as a chart".to_string(),
            Some("model.arpa") => format!(
                "order-{ARPA_ORDER} modified Kneser-Ney in ARPA format ({} n-grams); \
                 try `llm ngram eval --arpa {} --test {}`",
                t.arpa_ngrams
                    .iter()
                    .map(|&k| thousands(k))
                    .collect::<Vec<_>>()
                    .join(" + "),
                f.display(),
                t.test_corpus_path().display()
            ),
            _ => "one sentence per line".to_string(),
        };
        let _ = writeln!(s, "  {}  {what}", f.display());
    }
    let _ = writeln!(
        s,
        "\n{} models trained and scored; chapter 1 took {:.1} s.",
        t.evaluations.len() * t.smoothings.len(),
        t.elapsed.as_secs_f64()
    );
    s
}

/// A perplexity for the table: `inf`, or two decimals.
fn ppl(p: f64) -> String {
    if p.is_finite() {
        format!("{p:.2}")
    } else {
        "inf".into()
    }
}

/// `12345` -> `"12,345"`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
