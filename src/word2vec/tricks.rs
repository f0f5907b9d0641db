//! What each of word2vec's training tricks buys, measured on the toy world: one variant
//! per trick switched off (sub-sampling, shrunk windows, the decaying learning rate) and
//! one with two Hogwild threads, each trained with several seeds, scored on the gender
//! analogies of the people words. `llm word2vec tricks` prints the table the book shows.
//!
//! The variants run interleaved (seed by seed, every variant once per seed), so that a
//! machine busy with other work slows them all alike; the speeds are still only as good as
//! the machine was quiet.

use super::tour::{toy_config, PAIRS};
use super::{train_sgns, Embeddings, SgnsConfig};
use crate::{Error, Result};

/// One way to train: a name and the settings.
#[derive(Debug, Clone)]
pub struct TrickVariant {
    pub name: &'static str,
    pub config: SgnsConfig,
}

/// The variants of the table: the crate's settings, then each trick switched off, then two
/// threads. All start from `base` (one thread).
pub fn variants(base: &SgnsConfig) -> Vec<TrickVariant> {
    let base = SgnsConfig {
        threads: 1,
        ..base.clone()
    };
    vec![
        TrickVariant {
            name: "all tricks (t = 1e-3, shrunk windows, decaying α, 1 thread)",
            config: base.clone(),
        },
        TrickVariant {
            name: "no sub-sampling (t = 0)",
            config: SgnsConfig {
                sample: 0.0,
                ..base.clone()
            },
        },
        TrickVariant {
            name: "fixed windows (always 5 words each side)",
            config: SgnsConfig {
                shrink_window: false,
                ..base.clone()
            },
        },
        TrickVariant {
            name: "constant learning rate (α = 0.025 throughout)",
            config: SgnsConfig {
                min_alpha: base.alpha,
                ..base.clone()
            },
        },
        TrickVariant {
            name: "2 threads (Hogwild)",
            config: SgnsConfig {
                threads: 2,
                ..base.clone()
            },
        },
    ]
}

/// One training run's scores.
#[derive(Debug, Clone, Copy)]
pub struct TrickScore {
    pub seed: u64,
    /// Share of the gender analogies ("man is to woman as king is to ?") answered right at
    /// the first guess.
    pub analogy_accuracy: f64,
    /// Mean cosine between the male → female offsets of the people words: 1 when every
    /// pair differs by the same direction.
    pub offset_cosine: f64,
    /// Raw words per second of the training loop (words read, before sub-sampling).
    pub words_per_second: f64,
}

/// A variant and its scores, one per seed.
#[derive(Debug, Clone)]
pub struct TrickRow {
    pub variant: TrickVariant,
    pub scores: Vec<TrickScore>,
}

/// The gender analogies of [`PAIRS`], every ordered pair of pairs, in the book's form
/// "b is to a as c is to ?": "m1 is to f1 as m2 is to ?" (f2) and "f1 is to m1 as f2 is to
/// ?" (m2), as `[a, b, c, expected]` for [`Embeddings::analogy`]`(a, b, c)`, a − b + c.
pub fn gender_analogies() -> Vec<[&'static str; 4]> {
    let mut qs = Vec::new();
    for (i, &(m1, f1)) in PAIRS.iter().enumerate() {
        for (j, &(m2, f2)) in PAIRS.iter().enumerate() {
            if i != j {
                qs.push([f1, m1, m2, f2]);
                qs.push([m1, f1, f2, m2]);
            }
        }
    }
    qs
}

/// The two quality scores of a set of vectors: analogy accuracy and mean offset cosine.
pub fn score(emb: &Embeddings) -> Result<(f64, f64)> {
    let questions = gender_analogies();
    let mut right = 0;
    for [a, b, c, d] in &questions {
        if emb
            .analogy(a, b, c, 1)?
            .first()
            .is_some_and(|n| n.word == *d)
        {
            right += 1;
        }
    }
    let offsets: Vec<Vec<f32>> = PAIRS
        .iter()
        .map(|&(m, f)| {
            let (vm, vf) = (emb.vector(m)?, emb.vector(f)?);
            Ok(vf.iter().zip(vm).map(|(x, y)| x - y).collect())
        })
        .collect::<Result<_>>()?;
    let (mut sum, mut count) = (0.0, 0);
    for i in 0..offsets.len() {
        for j in i + 1..offsets.len() {
            sum += f64::from(super::vectors::cosine_similarity(&offsets[i], &offsets[j]));
            count += 1;
        }
    }
    Ok((right as f64 / questions.len() as f64, sum / count as f64))
}

/// Trains every variant once per seed on `sentences`, seeds outside, variants inside (so
/// the variants are timed in turns), and scores each run.
pub fn measure_tricks<S: AsRef<str> + Sync>(
    sentences: &[Vec<S>],
    base: &SgnsConfig,
    seeds: &[u64],
    on_run: &mut dyn FnMut(&str, u64),
) -> Result<Vec<TrickRow>> {
    if seeds.is_empty() {
        return Err(Error::InvalidArgument("give at least one seed".into()));
    }
    let mut rows: Vec<TrickRow> = variants(base)
        .into_iter()
        .map(|variant| TrickRow {
            variant,
            scores: Vec::new(),
        })
        .collect();
    for &seed in seeds {
        for row in &mut rows {
            on_run(row.variant.name, seed);
            let config = SgnsConfig {
                seed,
                ..row.variant.config.clone()
            };
            let model = train_sgns(sentences, &config, &|_| {})?;
            let (analogy_accuracy, offset_cosine) = score(&model.embeddings())?;
            row.scores.push(TrickScore {
                seed,
                analogy_accuracy,
                offset_cosine,
                words_per_second: model.report.raw_words_per_second(),
            });
        }
    }
    Ok(rows)
}

/// The table as text: per variant, the mean and range over seeds of each score.
pub fn tricks_table(rows: &[TrickRow]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let range = |xs: &[f64], digits: usize| -> String {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        format!("{mean:.digits$} ({lo:.digits$}-{hi:.digits$})")
    };
    let _ = writeln!(
        s,
        "{:<60}  {:>22}  {:>22}  {:>22}",
        "variant", "analogies right", "offset cosine", "k words/s"
    );
    for row in rows {
        let pick = |f: fn(&TrickScore) -> f64| row.scores.iter().map(f).collect::<Vec<_>>();
        let _ = writeln!(
            s,
            "{:<60}  {:>22}  {:>22}  {:>22}",
            row.variant.name,
            range(&pick(|x| x.analogy_accuracy), 3),
            range(&pick(|x| x.offset_cosine), 3),
            range(&pick(|x| x.words_per_second / 1e3), 0),
        );
    }
    s
}

/// The crate's toy-world settings with `epochs` passes: the base of the book's table.
pub fn toy_base(epochs: usize) -> SgnsConfig {
    SgnsConfig {
        epochs,
        ..toy_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::grammar::Grammar;

    #[test]
    fn every_variant_trains_and_scores_in_range() {
        let sentences = Grammar::toy_world().corpus(300, 1);
        let rows = measure_tricks(&sentences, &toy_base(1), &[1], &mut |_, _| {}).unwrap();
        assert_eq!(rows.len(), 5);
        for row in &rows {
            let x = row.scores[0];
            assert!((0.0..=1.0).contains(&x.analogy_accuracy), "{x:?}");
            assert!((-1.0..=1.0).contains(&x.offset_cosine), "{x:?}");
            assert!(x.words_per_second > 0.0);
        }
        assert_eq!(gender_analogies().len(), 60);
        assert!(tricks_table(&rows).contains("no sub-sampling"));
    }

    #[test]
    fn no_seed_is_an_error() {
        let sentences = Grammar::toy_world().corpus(10, 1);
        assert!(measure_tricks(&sentences, &toy_base(1), &[], &mut |_, _| {}).is_err());
    }
}
