//! Llama 3's pre-training recipe, measured on the toy world: short windows and small
//! batches first, the batch grown, a long-context stage with RoPE's base raised, an
//! annealing phase that takes the learning rate linearly to zero while upsampling clean
//! data, and the mean of the annealing checkpoints. Each step of the recipe is a run at
//! the same number of training tokens as the plain run (fixed batch and length, cosine
//! schedule), for several seeds, scored on clean test sentences against the grammar's
//! true entropy.
//!
//! The training text plays the web: the toy world's sentences with a share of them
//! damaged (words shuffled, or two words swapped), as crawled text holds boilerplate and
//! garbled lines. The high-quality source is the undamaged sentences of the same corpus:
//! the annealing phase draws its windows from them with a given probability.

use std::fmt::Write as _;

use ndarray_rand::rand::{seq::SliceRandom, Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::checkpoint::average;
use super::model::Gpt;
use super::optim::{Decay, LrSchedule};
use super::run::{Run, RunConfig, RunOptions};
use super::tour::{sentence_cross_entropy, toy_world_data, ToyWorldConfig, WordVocab};
use super::train::{Mix, Piecewise, Stages, TrainConfig};
use crate::data::grammar::{true_cross_entropy, GeneratedSentence, Grammar};
use crate::plot::{BarChart, LineChart, Series};
use crate::{Error, Result};

/// The settings of the measurement.
#[derive(Clone, Debug)]
pub struct RecipeConfig {
    /// The plain run: `llama-tiny`, context 64, its batch and steps; every variant trains
    /// on `steps × batch × context` tokens.
    pub base: ToyWorldConfig,
    /// Seeds of the model's initialisation and of the window sampler, one run each.
    pub seeds: Vec<u64>,
    /// The share of training sentences damaged, and the seed that picks and damages them.
    pub noisy: (f64, u64),
    /// The short windows of the first stage.
    pub short_len: usize,
    /// Long test sentences: at least this many words, so that with its end a sentence
    /// needs more positions than a first-stage window has.
    pub long_words: usize,
    /// Sentences and seed of the corpus the long test sentences are picked from.
    pub long_corpus: (usize, u64),
    /// RoPE's base in the long-context stage.
    pub long_theta: f32,
    /// The share of the training tokens in the annealing phase.
    pub anneal_share: f64,
    /// The probability that an annealing window comes from the clean sentences.
    pub clean_fraction: f64,
    /// Checkpoints of the annealing phase averaged (evenly spaced, the last included).
    pub averaged: usize,
}

impl RecipeConfig {
    /// The book's measurement: `llama-tiny` at context 64, `steps` steps of 16 windows,
    /// 30% of the sentences damaged, a first stage of 16-token windows, the sentences of
    /// 16 words or more of 50,000 others as the long ones, θ = 500,000, the last 20% of the tokens annealed
    /// with half the windows clean, 4 annealing checkpoints averaged.
    pub fn new(steps: usize, seeds: usize) -> RecipeConfig {
        RecipeConfig {
            base: ToyWorldConfig::llama_tiny(steps),
            seeds: (1..=seeds as u64).collect(),
            noisy: (0.3, 7),
            short_len: 16,
            long_words: 16,
            long_corpus: (50_000, 4),
            long_theta: 500_000.0,
            anneal_share: 0.2,
            clean_fraction: 0.5,
            averaged: 4,
        }
    }
}

// ANCHOR: noisy
/// Damages a `share` of the sentences, picked with `seed`: half of those picked have their
/// words shuffled, the others two of their words swapped. Returns the sentences and which
/// were damaged. The words stay the grammar's, so the vocabulary does not change.
pub fn damage(
    sentences: &[GeneratedSentence],
    share: f64,
    seed: u64,
) -> (Vec<GeneratedSentence>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut damaged = Vec::with_capacity(sentences.len());
    let out = sentences
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let hit = s.words.len() >= 2 && rng.gen_bool(share);
            if hit {
                if rng.gen_bool(0.5) {
                    s.words.shuffle(&mut rng);
                } else {
                    let i = rng.gen_range(0..s.words.len());
                    let j = (i + rng.gen_range(1..s.words.len())) % s.words.len();
                    s.words.swap(i, j);
                }
            }
            damaged.push(hit);
            s
        })
        .collect();
    (out, damaged)
}
// ANCHOR_END: noisy

/// The corpora of the measurement, as ids of the training sentences' vocabulary.
pub struct RecipeData {
    pub vocab: WordVocab,
    /// The "web": every training sentence, a share of them damaged.
    pub web: Vec<u32>,
    /// The high-quality source: the training sentences left undamaged.
    pub clean: Vec<u32>,
    /// The held-out sentences (clean), for the loss curves.
    pub held_out: Vec<u32>,
    /// The clean test sentences, and the grammar's true cross-entropy on them.
    pub test: Vec<u32>,
    pub test_floor: f64,
    /// Test sentences of at least `long_words` words, and their true cross-entropy.
    pub long: Vec<u32>,
    pub long_floor: f64,
    /// How many long test sentences there are, and their least number of words.
    pub long_sentences: usize,
    pub long_words: usize,
}

/// The corpora `config` describes.
pub fn recipe_data(config: &RecipeConfig) -> RecipeData {
    let data = toy_world_data(&config.base);
    let (web, damaged) = damage(&data.train, config.noisy.0, config.noisy.1);
    let clean: Vec<GeneratedSentence> = data
        .train
        .iter()
        .zip(&damaged)
        .filter(|(_, d)| !**d)
        .map(|(s, _)| s.clone())
        .collect();
    // long sentences are rare (about 1 in 90 has 16 words or more): drawn from a corpus
    // of their own, independent of the others
    let (n, seed) = config.long_corpus;
    let long: Vec<GeneratedSentence> = Grammar::toy_world()
        .generate(n, seed)
        .into_iter()
        .filter(|s| s.words.len() >= config.long_words)
        .collect();
    RecipeData {
        web: data.vocab.encode(&web),
        clean: data.vocab.encode(&clean),
        held_out: data.held_ids,
        test: data.test_ids,
        test_floor: true_cross_entropy(&data.test),
        long: data.vocab.encode(&long),
        long_floor: if long.is_empty() {
            f64::NAN
        } else {
            true_cross_entropy(&long)
        },
        long_sentences: long.len(),
        long_words: config.long_words,
        vocab: data.vocab,
    }
}

/// One way to train, at the plain run's number of tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: &'static str,
    /// The run's settings: its steps are `train.schedule.total`.
    pub train: TrainConfig,
    pub stages: Stages,
    /// Also score the mean of this many checkpoints of the annealing phase (0 or 1: only
    /// the last step's weights).
    pub average: usize,
}

// ANCHOR: plan
/// Converts a plan in shares of the training tokens into steps: `tokens_per_step` and
/// `seq_len` are `(from_share, value)` pieces, the first from 0; a piece of `tokens` tokens
/// at `k` tokens per step lasts `tokens / k` steps. Returns the batch and length schedules
/// and the number of steps.
pub fn plan_by_tokens(
    tokens: usize,
    tokens_per_step: &[(f64, usize)],
    seq_len: &[(f64, usize)],
) -> Result<(Piecewise, Piecewise, usize)> {
    let value_at = |pieces: &[(f64, usize)], share: f64| {
        pieces
            .iter()
            .take_while(|(from, _)| *from <= share + 1e-12)
            .last()
            .map(|&(_, v)| v)
    };
    let mut bounds: Vec<f64> = tokens_per_step
        .iter()
        .chain(seq_len)
        .map(|&(f, _)| f)
        .chain([1.0])
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let (mut batch, mut len, mut step) = (Vec::new(), Vec::new(), 0usize);
    for w in bounds.windows(2) {
        let (Some(k), Some(t)) = (value_at(tokens_per_step, w[0]), value_at(seq_len, w[0])) else {
            return Err(Error::InvalidArgument(
                "a plan by tokens must start at share 0".into(),
            ));
        };
        if t == 0 || k % t != 0 {
            return Err(Error::InvalidArgument(format!(
                "{k} tokens per step are not whole windows of {t} tokens"
            )));
        }
        if batch.last().map(|&(_, b)| b) != Some(k / t) {
            batch.push((step, k / t));
        }
        if len.last().map(|&(_, l)| l) != Some(t) {
            len.push((step, t));
        }
        step += (((w[1] - w[0]) * tokens as f64) / k as f64).round() as usize;
    }
    Ok((Piecewise(batch), Piecewise(len), step))
}
// ANCHOR_END: plan

/// The variants the book's table compares, for a run of `seed`. All train on
/// `steps × batch × context` tokens of the web text.
pub fn variants(config: &RecipeConfig, seed: u64) -> Result<Vec<Variant>> {
    let b = &config.base;
    let (context, batch) = (b.model.context, b.batch);
    let per_step = batch * context;
    let tokens = b.steps * per_step;
    let short = config.short_len;
    let schedule = |total: usize, anneal: usize| LrSchedule {
        max_lr: b.lr,
        min_lr: b.lr / 10.0,
        warmup: (b.steps / 20).max(1),
        total,
        anneal,
        decay: Decay::Cosine,
    };
    let train = |total: usize, anneal: usize| TrainConfig {
        batch,
        seq_len: context,
        schedule: schedule(total, anneal),
        adamw: Default::default(),
        clip: Some(1.0),
        seed,
    };
    let variant = |name, (bs, ls, total): (Piecewise, Piecewise, usize), anneal: usize| Variant {
        name,
        train: train(total, anneal),
        stages: Stages {
            batch: bs,
            seq_len: ls,
            ..Stages::default()
        },
        average: 0,
    };
    // the annealing phase: the last `anneal_share` of the tokens, at full-size steps
    let anneal = ((config.anneal_share * tokens as f64) / per_step as f64).round() as usize;
    let mix = |total: usize| Mix {
        from_step: total - anneal,
        fraction: config.clean_fraction,
    };
    let fixed = || plan_by_tokens(tokens, &[(0.0, per_step)], &[(0.0, context)]);
    // short windows for the first 3/4 of the tokens, the same tokens per step
    let lengths = || plan_by_tokens(tokens, &[(0.0, per_step)], &[(0.0, short), (0.75, context)]);
    // Llama 3 doubled its batch twice; here a quarter, a half, then the whole batch
    let ramp = [(0.0, per_step / 4), (0.1, per_step / 2), (0.3, per_step)];
    let mut out = vec![
        variant("plain", fixed()?, 0),
        variant(
            "short windows only",
            plan_by_tokens(tokens, &[(0.0, per_step)], &[(0.0, short)])?,
            0,
        ),
        variant("+ length schedule, θ 10,000", lengths()?, 0),
        variant("+ length schedule, θ 500,000", lengths()?, 0),
        variant(
            "+ batch ramp",
            plan_by_tokens(tokens, &ramp, &[(0.0, context)])?,
            0,
        ),
        variant("+ anneal to 0, web data", fixed()?, anneal),
        variant("+ anneal to 0, clean upsampled", fixed()?, anneal),
        variant(
            "whole recipe",
            plan_by_tokens(tokens, &ramp, &[(0.0, short), (0.75, context)])?,
            anneal,
        ),
    ];
    for v in &mut out {
        let total = v.train.schedule.total;
        if v.name.contains("500,000") || v.name.starts_with("whole") {
            v.stages.long_rope_theta = Some(config.long_theta);
        }
        if v.name.contains("clean") || v.name.starts_with("whole") {
            v.stages.mix = Some(mix(total));
            v.average = config.averaged;
        }
    }
    Ok(out)
}

/// What one run of a variant measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub steps: usize,
    pub tokens: usize,
    /// nats per word on the clean test sentences, and on the long ones.
    pub test: f64,
    pub long: f64,
}

/// Steps of the annealing phase whose checkpoints are averaged: `k` evenly spaced, the
/// last step included.
pub fn averaged_steps(total: usize, anneal: usize, k: usize) -> Vec<usize> {
    let k = k.max(1);
    (0..k).map(|i| total - (k - 1 - i) * anneal / k).collect()
}

/// What a run of a variant gives: the scores of its last step's weights and, when the
/// variant averages, of the mean of its annealing checkpoints; the model and its log.
pub struct Trained {
    pub last: Measured,
    pub averaged: Option<Measured>,
    pub model: Gpt,
    pub log: super::train::LossLog,
}

/// Trains `variant` on `data` and scores it. `on_step` sees every step.
pub fn measure(
    config: &RecipeConfig,
    data: &RecipeData,
    variant: &Variant,
    mut on_step: impl FnMut() + Send,
) -> Result<Trained> {
    let mut model = config.base.model.clone();
    model.vocab_size = data.vocab.len();
    let run_config = RunConfig {
        model,
        train: variant.train.clone(),
        held_out: 0.0,
    };
    let mix = variant.stages.mix.map(|_| data.clean.as_slice());
    let mut run = Run::start(run_config, &data.web)?.with_stages(variant.stages.clone(), mix)?;
    let total = variant.train.schedule.total;
    let stops = if variant.average > 1 {
        averaged_steps(total, variant.train.schedule.anneal, variant.average)
    } else {
        vec![total]
    };
    let (mut tokens, mut kept) = (0, Vec::new());
    for stop in stops {
        let options = RunOptions {
            stop_at: Some(stop),
            ..RunOptions::default()
        };
        let timing = run.train(&data.web, &data.held_out, &options, |_, _| on_step())?;
        tokens += timing.tokens;
        kept.push(run.model.clone());
    }
    let score = |model: &Gpt| -> Result<Measured> {
        let long = if data.long.len() > 1 {
            sentence_cross_entropy(model, &data.long)?
        } else {
            f64::NAN
        };
        Ok(Measured {
            steps: total,
            tokens,
            test: sentence_cross_entropy(model, &data.test)?,
            long,
        })
    };
    let averaged = if kept.len() > 1 {
        Some(score(&average(&kept)?)?)
    } else {
        None
    };
    Ok(Trained {
        last: score(&run.model)?,
        averaged,
        model: run.model,
        log: run.log,
    })
}

/// A variant's runs over the seeds.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: &'static str,
    pub runs: Vec<Measured>,
}

/// Mean, least and largest of `xs`.
pub fn spread(xs: impl IntoIterator<Item = f64>) -> (f64, f64, f64) {
    let xs: Vec<f64> = xs.into_iter().collect();
    let mean = xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (mean, lo, hi)
}

/// The whole measurement: every variant of [`variants`] for every seed.
/// `on_step(variant, seed)` sees every step.
pub fn recipe(
    config: &RecipeConfig,
    mut on_step: impl FnMut(&str, u64) + Send,
) -> Result<(RecipeData, Vec<Row>)> {
    let data = recipe_data(config);
    let mut rows: Vec<Row> = Vec::new();
    for &seed in &config.seeds {
        let mut k = 0;
        for v in variants(config, seed)? {
            let t = measure(config, &data, &v, || on_step(v.name, seed))?;
            let averaged = t.averaged.map(|m| (average_name(v.name), m));
            for (name, m) in std::iter::once((v.name, t.last)).chain(averaged) {
                if rows.len() <= k {
                    rows.push(Row {
                        name,
                        runs: Vec::new(),
                    });
                }
                rows[k].runs.push(m);
                k += 1;
            }
        }
    }
    Ok((data, rows))
}

/// The row name of a variant's averaged checkpoints.
fn average_name(name: &str) -> &'static str {
    if name.starts_with("whole") {
        "whole recipe + average of annealing checkpoints"
    } else {
        "+ average of annealing checkpoints"
    }
}

/// The table as markdown: per variant, steps, tokens, and the cross-entropy above the
/// grammar's floor on all clean test sentences and on the long ones, mean (min–max).
pub fn markdown_table(data: &RecipeData, rows: &[Row], seeds: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| variant | steps | tokens | test − floor, nats/word | long sentences − floor |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for r in rows {
        let (m, lo, hi) = spread(r.runs.iter().map(|m| m.test - data.test_floor));
        let (lm, llo, lhi) = spread(r.runs.iter().map(|m| m.long - data.long_floor));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {m:.3} ({lo:.3}–{hi:.3}) | {lm:.3} ({llo:.3}–{lhi:.3}) |",
            r.name, r.runs[0].steps, r.runs[0].tokens
        );
    }
    let _ = writeln!(
        s,
        "\nFloors (the grammar's true cross-entropy): {:.3} nats/word on the test sentences, {:.3} on {} long test sentences ({} words or more). Mean (min–max) over {seeds} seeds.",
        data.test_floor, data.long_floor, data.long_sentences, data.long_words
    );
    s
}

/// The table as CSV, one line per variant and seed (the names quoted: they hold commas).
pub fn csv_table(data: &RecipeData, rows: &[Row]) -> String {
    let mut s = String::from(
        "variant,run,steps,tokens,test_nats_per_word,test_floor,long_nats_per_word,long_floor\n",
    );
    for r in rows {
        for (i, m) in r.runs.iter().enumerate() {
            let _ = writeln!(
                s,
                "\"{}\",{i},{},{},{},{},{},{}",
                r.name, m.steps, m.tokens, m.test, data.test_floor, m.long, data.long_floor
            );
        }
    }
    s
}

/// The bar chart: each variant's mean distance to the floor on the test sentences, its
/// min–max over the seeds in the label.
pub fn variants_chart(data: &RecipeData, rows: &[Row]) -> BarChart {
    BarChart::new(
        "Llama 3's recipe on the toy world, equal tokens",
        "test nats/word above the floor (mean; min–max in brackets)",
    )
    .bars(rows.iter().map(|r| {
        let (m, lo, hi) = spread(r.runs.iter().map(|m| m.test - data.test_floor));
        (format!("{} [{lo:.3}–{hi:.3}]", r.name), m.max(0.0))
    }))
}

/// The whole recipe's schedules, each as a share of its largest value: learning rate,
/// tokens per step, window length and the share of clean windows, against the step.
pub fn schedule_chart(variant: &Variant) -> LineChart {
    let total = variant.train.schedule.total;
    let at = |f: &dyn Fn(usize) -> f64| (0..total).map(|s| (s as f64, f(s))).collect::<Vec<_>>();
    let s = &variant.stages;
    let cfg = &variant.train;
    let max_tokens = (0..total)
        .map(|k| {
            let (b, t) = s.windows(k, cfg);
            b * t
        })
        .max()
        .unwrap_or(1) as f64;
    let max_len = (0..total).map(|k| s.windows(k, cfg).1).max().unwrap_or(1) as f64;
    LineChart::new(
        "The whole recipe's schedules",
        "step",
        "share of its largest value",
    )
    .series(Series::new(
        "learning rate",
        at(&|k| (cfg.schedule.lr(k) / cfg.schedule.max_lr) as f64),
    ))
    .series(Series::new(
        "tokens per step",
        at(&|k| {
            let (b, t) = s.windows(k, cfg);
            (b * t) as f64 / max_tokens
        }),
    ))
    .series(Series::new(
        "window length (θ raised with the longest)",
        at(&|k| s.windows(k, cfg).1 as f64 / max_len),
    ))
    .series(Series::new(
        "share of clean windows",
        at(&|k| s.mix_fraction(k)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_is_deterministic_and_keeps_the_words() {
        let sentences = crate::data::grammar::Grammar::toy_world().generate(2_000, 1);
        let (a, hit) = damage(&sentences, 0.3, 7);
        let (b, _) = damage(&sentences, 0.3, 7);
        assert_eq!(a, b);
        let share = hit.iter().filter(|&&h| h).count() as f64 / hit.len() as f64;
        assert!((share - 0.3).abs() < 0.04, "{share}");
        for ((s, d), h) in sentences.iter().zip(&a).zip(&hit) {
            let (mut x, mut y) = (s.words.clone(), d.words.clone());
            x.sort();
            y.sort();
            assert_eq!(x, y, "the same words");
            if !h {
                assert_eq!(s.words, d.words);
            }
        }
    }

    /// 10% of the tokens at 256 per step, 20% at 512, the rest at 1024, windows of 16 for
    /// the first 3/4: 40 + 40 + 45 + 25 steps for the tokens of 100 full steps.
    #[test]
    fn a_plan_by_tokens_gives_the_steps_it_says() {
        let tokens = 100 * 1024;
        let (b, l, steps) = plan_by_tokens(
            tokens,
            &[(0.0, 256), (0.1, 512), (0.3, 1024)],
            &[(0.0, 16), (0.75, 64)],
        )
        .unwrap();
        assert_eq!(steps, 150);
        assert_eq!(b.0, [(0, 16), (40, 32), (80, 64), (125, 16)]);
        assert_eq!(l.0, [(0, 16), (125, 64)]);
        let tokens_seen: usize = (0..steps)
            .map(|s| b.at(s).unwrap() * l.at(s).unwrap())
            .sum();
        assert_eq!(tokens_seen, tokens);
        assert!(plan_by_tokens(tokens, &[(0.0, 100)], &[(0.0, 16)]).is_err());
        assert_eq!(averaged_steps(150, 20, 4), [135, 140, 145, 150]);
    }

    #[test]
    fn every_variant_trains_on_the_same_tokens() {
        let config = RecipeConfig::new(100, 1);
        for v in variants(&config, 1).unwrap() {
            let t: usize = (0..v.train.schedule.total)
                .map(|s| {
                    let (b, l) = v.stages.windows(s, &v.train);
                    b * l
                })
                .sum();
            assert_eq!(t, 100 * 16 * 64, "{}", v.name);
            v.stages.validate(64).unwrap();
        }
    }
}
