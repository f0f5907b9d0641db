//! `llm word2vec ...`: word vectors (chapter 2). Train skip-gram with negative sampling on
//! a text file (or the toy world), ask the vectors for neighbours and analogies, and score
//! them on the standard similarity and analogy sets.

use std::path::PathBuf;

use clap::Subcommand;
use llm_lessons::word2vec::eval::{read_analogies, read_pairs};
use llm_lessons::word2vec::tricks;
use llm_lessons::word2vec::{
    evaluate_analogies, evaluate_pairs, train_sgns, Embeddings, SgnsConfig,
};
use llm_lessons::{progress, Error};

use crate::{load_corpus, say, CliResult, TOY_TRAIN_SEED};

#[derive(Subcommand)]
pub enum Word2vecCommand {
    /// Train skip-gram with negative sampling; save the vectors in word2vec text format
    Train {
        /// Training text: any UTF-8 file (cut into sentences; --lines: one a line), or `toy`
        #[arg(long, value_name = "FILE|toy")]
        corpus: String,
        /// Sentences of the toy-world corpus (with `--corpus toy`)
        #[arg(long, default_value_t = 20_000, value_name = "N")]
        sentences: usize,
        /// Vector size d
        #[arg(long, default_value_t = 100)]
        dim: usize,
        /// Largest window (each position draws its own from 1..=window)
        #[arg(long, default_value_t = 5)]
        window: usize,
        /// Noise words per (centre, context) pair
        #[arg(long, default_value_t = 5)]
        negative: usize,
        /// Passes over the corpus
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Worker threads (0: one per core)
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Words seen fewer times are dropped
        #[arg(long, default_value_t = 5)]
        min_count: u64,
        /// Sub-sampling threshold t (0: keep every word)
        #[arg(long, default_value_t = 1e-3)]
        sample: f64,
        /// Learning rate at the start; it falls linearly to --min-alpha
        #[arg(long, default_value_t = 0.025)]
        alpha: f64,
        /// Learning rate at the end
        #[arg(long, default_value_t = 1e-4)]
        min_alpha: f64,
        /// Seed (with --threads 1 the same seed gives the same vectors)
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Vectors file to write (word2vec text format; gensim's load_word2vec_format reads it)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The words nearest to each WORD, by cosine similarity
    Neighbors {
        /// A word2vec text file
        #[arg(long, value_name = "FILE")]
        vectors: PathBuf,
        /// How many neighbours
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(required = true, value_name = "WORD")]
        words: Vec<String>,
    },
    /// The words nearest to A − B + C ("king man woman": king − man + woman)
    Analogy {
        /// A word2vec text file
        #[arg(long, value_name = "FILE")]
        vectors: PathBuf,
        /// How many answers
        #[arg(long, default_value_t = 5)]
        k: usize,
        a: String,
        b: String,
        c: String,
    },
    /// What each training trick buys, on the toy world: sub-sampling, shrunk windows and the
    /// decaying learning rate each switched off, and two threads, over several seeds (the
    /// variants timed in turns)
    Tricks {
        /// Toy-world sentences to train on (seed 1)
        #[arg(long, default_value_t = 20_000)]
        sentences: usize,
        /// Passes over the corpus
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Training seeds, one run of every variant each
        #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
        seeds: Vec<u64>,
    },
    /// Score vectors: Spearman correlation on word-pair sets, accuracy on analogy questions
    Eval {
        /// A word2vec text file
        #[arg(long, value_name = "FILE")]
        vectors: PathBuf,
        /// A word-pair similarity set (`w1<TAB>w2<TAB>score`, e.g. wordsim353.tsv); repeatable
        #[arg(long, value_name = "FILE")]
        similarity: Vec<PathBuf>,
        /// Analogy questions (questions-words.txt format)
        #[arg(long, value_name = "FILE")]
        analogies: Option<PathBuf>,
    },
}

pub fn run(cmd: Word2vecCommand) -> CliResult {
    match cmd {
        Word2vecCommand::Train {
            corpus,
            sentences,
            dim,
            window,
            negative,
            epochs,
            threads,
            min_count,
            sample,
            alpha,
            min_alpha,
            seed,
            out,
        } => {
            let text = load_corpus(&corpus, sentences, TOY_TRAIN_SEED)?.sentences;
            let config = SgnsConfig {
                dim,
                window,
                negative,
                epochs,
                threads,
                min_count,
                sample,
                alpha,
                min_alpha,
                seed,
                ..SgnsConfig::default()
            };
            let words: u64 = text.iter().map(|s| s.len() as u64).sum();
            let bar = progress::bar(words * epochs as u64, "training word2vec");
            let model = train_sgns(&text, &config, &|n| bar.inc(n))?;
            bar.finish_and_clear();
            let r = &model.report;
            say(format!(
                "corpus: {} sentences, {} words; vocabulary {} words (min_count {min_count})",
                text.len(),
                words,
                model.vocab.len()
            ))?;
            for (i, loss) in r.epoch_losses.iter().enumerate() {
                say(format!("epoch {}: mean loss per pair {loss:.4}", i + 1))?;
            }
            say(format!(
                "trained in {:.2} s on {} threads: {:.0} raw words/s, {:.0} effective words/s \
                 ({} effective words, {} pairs)",
                r.seconds,
                r.threads,
                r.raw_words_per_second(),
                r.effective_words_per_second(),
                r.effective_words,
                r.pairs
            ))?;
            model.embeddings().save(&out)?;
            say(format!(
                "wrote {} ({} x {})",
                out.display(),
                model.vocab.len(),
                dim
            ))
        }
        Word2vecCommand::Neighbors { vectors, k, words } => {
            let emb = Embeddings::load(&vectors)?;
            for word in words {
                let list: Vec<String> = emb
                    .most_similar(&word, k)?
                    .iter()
                    .map(|n| format!("{} {:.3}", n.word, n.similarity))
                    .collect();
                say(format!("{word}: {}", list.join(", ")))?;
            }
            Ok(())
        }
        Word2vecCommand::Analogy {
            vectors,
            k,
            a,
            b,
            c,
        } => {
            let emb = Embeddings::load(&vectors)?;
            say(format!("{a} - {b} + {c}:"))?;
            for n in emb.analogy(&a, &b, &c, k)? {
                say(format!("  {:<20} {:.3}", n.word, n.similarity))?;
            }
            Ok(())
        }
        Word2vecCommand::Tricks {
            sentences,
            epochs,
            seeds,
        } => {
            let corpus = llm_lessons::data::grammar::Grammar::toy_world().corpus(sentences, 1);
            let base = tricks::toy_base(epochs);
            let runs = seeds.len() * tricks::variants(&base).len();
            let bar = progress::bar(runs as u64, "training the variants");
            let rows = tricks::measure_tricks(&corpus, &base, &seeds, &mut |_, _| bar.inc(1))?;
            bar.finish_and_clear();
            say(format!(
                "{sentences} toy-world sentences (seed 1), d = {}, window {}, k = {}, {epochs} \
                 epochs; seeds {:?}; mean (min-max) over the seeds. Analogies: the {} gender \
                 questions of the people words (man is to woman as king is to ?).",
                base.dim,
                base.window,
                base.negative,
                seeds,
                tricks::gender_analogies().len()
            ))?;
            say(tricks::tricks_table(&rows))?;
            say(
                "Speeds are raw words per second of the training loop, the variants run in turns \
                 seed by seed; they are only as steady as the machine was quiet.",
            )
        }
        Word2vecCommand::Eval {
            vectors,
            similarity,
            analogies,
        } => {
            if similarity.is_empty() && analogies.is_none() {
                return Err(Error::InvalidArgument(
                    "give --similarity FILE and/or --analogies FILE".into(),
                )
                .into());
            }
            let emb = Embeddings::load(&vectors)?;
            say(format!("vectors: {} words x {}", emb.len(), emb.dim()))?;
            for path in similarity {
                let s = evaluate_pairs(&emb, &read_pairs(&path)?);
                say(format!(
                    "{}: Spearman {:.4}, Pearson {:.4} on {} pairs (OOV pairs {:.1}%)",
                    path.display(),
                    s.spearman,
                    s.pearson,
                    s.pairs,
                    s.oov_percent()
                ))?;
            }
            if let Some(path) = analogies {
                let s = evaluate_analogies(&emb, &read_analogies(&path)?);
                say(format!(
                    "{}: accuracy {:.4} on {} of {} questions with all words in vocabulary",
                    path.display(),
                    s.accuracy(),
                    s.asked,
                    s.total
                ))?;
                for (name, correct, asked) in &s.sections {
                    if *asked > 0 {
                        say(format!(
                            "  {name:<28} {:.3} of {asked}",
                            *correct as f64 / *asked as f64
                        ))?;
                    }
                }
            }
            Ok(())
        }
    }
}
