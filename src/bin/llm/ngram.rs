//! `llm ngram ...`: n-gram language models (chapter 1). Train a model on a text file (or
//! the toy world), score a test text with it or with a saved ARPA file, and sample sentences.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use llm_lessons::data::grammar::true_cross_entropy;
use llm_lessons::ngram::{
    split_heldout, ArpaModel, Evaluation, NgramConfig, NgramModel, Smoothing,
};
use llm_lessons::Error;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{load_corpus, say, CliResult, Corpus, TOY_TRAIN_SEED};

#[derive(Subcommand)]
pub enum NgramCommand {
    /// Train a model: print its statistics and its perplexity on the held-out split
    Train {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Save the model in ARPA format (kn and mkn smoothing only)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Score a test text: perplexity, cross-entropy, OOV words, zero-probability events
    Eval {
        /// Training text (a UTF-8 file, or `toy`), unless --arpa gives a saved model
        #[arg(long, value_name = "FILE|toy", required_unless_present = "arpa")]
        corpus: Option<String>,
        /// Sentences of the toy-world corpus (with `--corpus toy`)
        #[arg(long, default_value_t = 20_000, value_name = "N")]
        sentences: usize,
        #[command(flatten)]
        model: ModelArgs,
        /// A model saved by `llm ngram train --out` (or any ARPA file), instead of --corpus
        #[arg(long, alias = "model", value_name = "FILE", conflicts_with = "corpus")]
        arpa: Option<PathBuf>,
        /// Test text (a UTF-8 file, or `toy`: 5,000 toy-world sentences, seed 3)
        #[arg(long, value_name = "FILE|toy")]
        test: String,
    },
    /// Generate sentences from a model
    Sample {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[command(flatten)]
        model: ModelArgs,
        /// Temperature T: P(w | h)^(1/T), renormalised; below 1 sharpens, above 1 flattens
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Sentences to generate
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// Seed of the sampler
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Longest sentence, in words
        #[arg(long, default_value_t = 50)]
        max_words: usize,
    },
}

/// Where the training text comes from.
#[derive(Args)]
pub struct CorpusArgs {
    /// Training text: any UTF-8 file, cut into sentences; or `toy` for the toy world
    #[arg(long, value_name = "FILE|toy")]
    corpus: String,
    /// Sentences of the toy-world corpus (with `--corpus toy`; seed 1)
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    sentences: usize,
}

/// What model to train.
#[derive(Args)]
pub struct ModelArgs {
    /// Order n: the model conditions on the n-1 previous words
    #[arg(long, default_value_t = 3, value_name = "N")]
    order: usize,
    /// mle, laplace, add-k, interpolated, kn or mkn (modified Kneser-Ney)
    #[arg(long, default_value = "mkn", value_name = "NAME")]
    smoothing: String,
    /// k of add-k smoothing
    #[arg(long, default_value_t = 0.1)]
    k: f64,
    /// A fixed Kneser-Ney discount in (0, 1) (kn only; default: estimated from the counts)
    #[arg(long, value_name = "D")]
    discount: Option<f64>,
    /// Words seen fewer times than this become <unk>
    #[arg(long, default_value_t = 1, value_name = "C")]
    min_count: u32,
    /// Fraction of the corpus held out (its last sentences): interpolation fits its weights
    /// there, and `train` reports the perplexity on it
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    heldout_frac: f64,
}

/// The toy-world corpus `--test toy` stands for: a sample independent of `--corpus toy`'s.
const TOY_TEST_SEED: u64 = 3;
const TOY_TEST_SENTENCES: usize = 5_000;

pub fn run(cmd: NgramCommand) -> CliResult {
    match cmd {
        NgramCommand::Train { corpus, model, out } => {
            let smoothing = model.smoothing()?;
            if out.is_some() && !smoothing.is_kneser_ney() {
                return Err(Error::InvalidArgument(format!(
                    "--out saves the model in ARPA format, which only Kneser-Ney models have \
                     (a back-off form): use --smoothing kn or mkn, not {}",
                    model.smoothing
                ))
                .into());
            }
            let sentences =
                load_corpus(&corpus.corpus, corpus.sentences, TOY_TRAIN_SEED)?.sentences;
            let trained = train(&sentences, &model)?;
            print_training(&corpus.corpus, &sentences, &trained)?;
            if let Some(path) = out {
                trained.model.write_arpa(&path)?;
                say(format!("wrote {}", path.display()))?;
            }
            Ok(())
        }
        NgramCommand::Eval {
            corpus,
            sentences,
            model,
            arpa,
            test,
        } => {
            let Corpus {
                sentences: test_sents,
                generated,
            } = load_corpus(&test, TOY_TEST_SENTENCES, TOY_TEST_SEED)?;
            let e = match (&arpa, &corpus) {
                (Some(path), _) => {
                    let arpa = ArpaModel::read(path)?;
                    say(format!(
                        "model: {} (ARPA, order {})",
                        path.display(),
                        arpa.order
                    ))?;
                    arpa.evaluate(&test_sents)
                }
                (None, Some(corpus)) => {
                    let train_sents = load_corpus(corpus, sentences, TOY_TRAIN_SEED)?.sentences;
                    let trained = train(&train_sents, &model)?;
                    say(format!(
                        "model: order {} {}, trained on {} sentences of {}",
                        trained.model.config.order,
                        trained.model.config.smoothing,
                        trained.train_len,
                        corpus_name(corpus)
                    ))?;
                    trained.model.evaluate(&test_sents)
                }
                (None, None) => {
                    return Err(Error::InvalidArgument("give --corpus or --arpa".into()).into())
                }
            };
            say(format!(
                "test:  {} sentences of {}",
                e.sentences,
                corpus_name(&test)
            ))?;
            print_evaluation(&e)?;
            if let Some(generated) = generated {
                let h = true_cross_entropy(&generated);
                say(format!(
                    "true perplexity {:.4} (the grammar itself: {h:.4} nats/token)",
                    h.exp()
                ))?;
            }
            Ok(())
        }
        NgramCommand::Sample {
            corpus,
            model,
            temperature,
            count,
            seed,
            max_words,
        } => {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "the temperature must be a positive number, got {temperature}"
                ))
                .into());
            }
            let sentences =
                load_corpus(&corpus.corpus, corpus.sentences, TOY_TRAIN_SEED)?.sentences;
            let trained = train(&sentences, &model)?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            for _ in 0..count {
                say(trained
                    .model
                    .sample(&mut rng, temperature, max_words)
                    .join(" "))?;
            }
            Ok(())
        }
    }
}

impl ModelArgs {
    fn smoothing(&self) -> llm_lessons::Result<Smoothing> {
        if self.discount.is_some() && self.smoothing != "kn" && self.smoothing != "kneser-ney" {
            return Err(Error::InvalidArgument(format!(
                "--discount sets the discount of kn smoothing, not of {}",
                self.smoothing
            )));
        }
        Smoothing::parse(&self.smoothing, self.k, self.discount)
    }

    fn config(&self) -> llm_lessons::Result<NgramConfig> {
        if !(0.0..1.0).contains(&self.heldout_frac) {
            return Err(Error::InvalidArgument(format!(
                "--heldout-frac must be in [0, 1), got {}",
                self.heldout_frac
            )));
        }
        Ok(NgramConfig {
            min_count: self.min_count,
            ..NgramConfig::new(self.order, self.smoothing()?)
        })
    }
}

/// `toy` -> the toy world, anything else a path.
fn corpus_name(spec: &str) -> String {
    match spec {
        "toy" => "the toy world".into(),
        path => path.into(),
    }
}

/// A model trained on the first part of a corpus, with the part held out.
struct Trained {
    model: NgramModel,
    train_len: usize,
    heldout: Vec<Vec<String>>,
}

/// Trains on the corpus less its held-out tail: the same split for `train`, `eval` and
/// `sample`, so the same arguments give the same model.
fn train(sentences: &[Vec<String>], args: &ModelArgs) -> llm_lessons::Result<Trained> {
    let config = args.config()?;
    let (train, heldout) = split_heldout(sentences, args.heldout_frac);
    let model = NgramModel::train(train, heldout, config)?;
    Ok(Trained {
        model,
        train_len: train.len(),
        heldout: heldout.to_vec(),
    })
}

fn print_training(corpus: &str, sentences: &[Vec<String>], t: &Trained) -> CliResult {
    let m = &t.model;
    let words: usize = sentences.iter().map(Vec::len).sum();
    say(format!(
        "corpus:     {}: {} sentences, {} words; training on the first {}, {} held out",
        corpus_name(corpus),
        sentences.len(),
        words,
        t.train_len,
        t.heldout.len()
    ))?;
    say(format!(
        "model:      order {}, {}; vocabulary {} words + <unk> <s> </s> (min count {})",
        m.config.order,
        m.config.smoothing,
        m.vocab.len() - 3,
        m.config.min_count
    ))?;
    let ngrams: Vec<String> = (1..=m.config.order)
        .map(|k| format!("{k}-grams {}", m.counts.by_order[k - 1].len()))
        .collect();
    say(format!("counted:    {}", ngrams.join(", ")))?;
    if m.config.smoothing.is_kneser_ney() {
        for k in 1..=m.config.order {
            if let Some(d) = m.discounts(k) {
                let [d1, d2, d3] = d.0;
                say(format!(
                    "discounts:  order {k}: D1 {d1:.4}, D2 {d2:.4}, D3+ {d3:.4}"
                ))?;
            }
        }
    }
    if !m.lambdas().is_empty() {
        let l: Vec<String> = m.lambdas().iter().map(|l| format!("{l:.4}")).collect();
        say(format!(
            "weights:    λ0 (uniform) .. λ{}: {}",
            m.config.order,
            l.join(", ")
        ))?;
    }
    for w in &m.warnings {
        say(format!("warning:    {w}"))?;
    }
    if t.heldout.is_empty() {
        return say(
            "held out:   nothing (--heldout-frac 0 or a tiny corpus): no perplexity to report",
        );
    }
    let e = m.evaluate(&t.heldout);
    let note = if m.config.smoothing == Smoothing::Interpolated {
        " (the weights were fit on these sentences: an optimistic figure)"
    } else {
        ""
    };
    say(format!("held out:   {} sentences{note}", e.sentences))?;
    print_evaluation(&e)
}

fn print_evaluation(e: &Evaluation) -> CliResult {
    say(format!("perplexity      {:.4}", e.perplexity()))?;
    say(format!(
        "cross-entropy   {:.4} nats/token, {:.4} bits/token",
        e.cross_entropy(),
        e.bits_per_token()
    ))?;
    say(format!(
        "events          {} (words and end-of-sentence tokens)",
        e.events
    ))?;
    say(format!("OOV words       {} (scored as <unk>)", e.oov))?;
    say(format!(
        "zero-prob       {} events with P = 0",
        e.zero_prob_events
    ))?;
    if e.zero_prob_events > 0 {
        say(
            "                (so the perplexity is infinite: try smoothing, e.g. --smoothing mkn)",
        )?;
    }
    Ok(())
}
