//! Chapter 4 on the toy world: `llama-tiny` trained on the grammar's sentences, one token
//! per word, so that its cross-entropy on test sentences compares directly with chapter
//! 1's n-gram models and with the grammar's true entropy (all three in nats per word,
//! end of sentence included).
//!
//! The token stream is `</s> w w w </s> w w </s> ...`: id 0 is the end of a sentence (and
//! the start of the next), then one id per word of the training sentences. A test sentence
//! is scored from its `</s>`, whole, so that every word is predicted from all the words of
//! its sentence before it, as an n-gram model's first word is predicted from `<s>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rustc_hash::FxHashMap;

use super::generate::{generate, Sampling};
use super::model::{Activations, Gpt};
use super::optim::{AdamWConfig, Decay, LrSchedule};
use super::run::{Run, RunConfig, RunOptions};
use super::train::{LossLog, StepLog, TrainConfig};
use super::GptConfig;
use crate::data::grammar::{true_cross_entropy, GeneratedSentence, Grammar};
use crate::ngram::{NgramConfig, NgramModel, Smoothing};
use crate::plot::LineChart;
use crate::report::{StepReport, TourSize};
use crate::{progress, Error, Result};

/// The end-of-sentence token.
pub const END: u32 = 0;

/// Words to ids and back: `</s>` is 0, `<unk>` 1, then the training words in order of
/// first appearance.
#[derive(Clone, Debug)]
pub struct WordVocab {
    pub words: Vec<String>,
    ids: FxHashMap<String, u32>,
}

impl WordVocab {
    pub const UNK: u32 = 1;

    pub fn new(sentences: &[GeneratedSentence]) -> WordVocab {
        let mut v = WordVocab {
            words: vec!["</s>".into(), "<unk>".into()],
            ids: FxHashMap::default(),
        };
        for w in sentences.iter().flat_map(|s| &s.words) {
            if !v.ids.contains_key(w) {
                v.ids.insert(w.clone(), v.words.len() as u32);
                v.words.push(w.clone());
            }
        }
        v
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// `</s> s1 </s> s2 ... </s>`.
    pub fn encode(&self, sentences: &[GeneratedSentence]) -> Vec<u32> {
        let mut ids = vec![END];
        for s in sentences {
            ids.extend(
                s.words
                    .iter()
                    .map(|w| self.ids.get(w).copied().unwrap_or(Self::UNK)),
            );
            ids.push(END);
        }
        ids
    }

    pub fn word(&self, id: u32) -> &str {
        self.words.get(id as usize).map_or("<?>", String::as_str)
    }
}

/// Mean cross-entropy, nats per token, of whole sentences of `ids` (a stream that starts
/// with `</s>`): windows start at a `</s>` and end at the last `</s>` that fits the
/// context, so no word is predicted without the start of its sentence.
pub fn sentence_cross_entropy(model: &Gpt, ids: &[u32]) -> Result<f64> {
    if ids.first() != Some(&END) {
        return Err(Error::InvalidArgument(
            "the token stream must start with </s>".into(),
        ));
    }
    let ctx = model.cfg.context;
    let ends: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == END).collect();
    let mut windows = Vec::new();
    let mut k = 0;
    while k + 1 < ends.len() {
        let start = ends[k];
        // the furthest end within the context; a sentence longer than the context is cut
        let mut j = k + 1;
        while j + 1 < ends.len() && ends[j + 1] - start <= ctx {
            j += 1;
        }
        let stop = ends[j].min(start + ctx);
        windows.push((start, stop));
        k = if ends[j] - start <= ctx { j } else { k + 1 };
    }
    let sums: Vec<Result<(f64, usize)>> = {
        use rayon::prelude::*;
        windows
            .par_iter()
            .map(|&(s, e)| {
                let len = e - s;
                let mut acts = Activations::new(&model.cfg, 1, len);
                let loss = model.forward_loss(&mut acts, &ids[s..e], &ids[s + 1..e + 1])?;
                Ok((loss as f64 * len as f64, len))
            })
            .collect()
    };
    let (mut nats, mut n) = (0.0, 0);
    for r in sums {
        let (a, b) = r?;
        nats += a;
        n += b;
    }
    Ok(nats / n as f64)
}

/// The settings of the toy-world run.
#[derive(Clone, Debug)]
pub struct ToyWorldConfig {
    /// Sentences and seed of the training, held-out and test corpora: chapter 1's.
    pub train: (usize, u64),
    pub heldout: (usize, u64),
    pub test: (usize, u64),
    pub model: GptConfig,
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// Held-out loss every this many steps.
    pub eval_every: usize,
}

impl ToyWorldConfig {
    /// `llama-tiny` with a word vocabulary and 64 tokens of context (six sentences or so).
    pub fn llama_tiny(steps: usize) -> ToyWorldConfig {
        let mut model = GptConfig::llama_tiny();
        model.context = 64;
        ToyWorldConfig {
            train: (20_000, 1),
            heldout: (2_000, 2),
            test: (5_000, 3),
            model,
            steps,
            batch: 16,
            lr: 3e-3,
            seed: 1,
            eval_every: (steps / 10).max(1),
        }
    }
}

/// What the toy-world run measured.
pub struct ToyWorldRun {
    pub vocab: WordVocab,
    pub model: Gpt,
    pub log: LossLog,
    /// nats per word (end of sentence included) on the test sentences.
    pub test_cross_entropy: f64,
    pub ngram_cross_entropy: f64,
    /// The best n-gram model: (order, smoothing).
    pub ngram_best: (usize, Smoothing),
    pub true_cross_entropy: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
}

/// The toy world's corpora for a run: the sentences, the word vocabulary of the training
/// sentences, and each corpus as ids.
pub struct ToyWorldData {
    pub train: Vec<GeneratedSentence>,
    pub heldout: Vec<GeneratedSentence>,
    pub test: Vec<GeneratedSentence>,
    pub vocab: WordVocab,
    pub train_ids: Vec<u32>,
    pub held_ids: Vec<u32>,
    pub test_ids: Vec<u32>,
}

/// The corpora `config` names.
pub fn toy_world_data(config: &ToyWorldConfig) -> ToyWorldData {
    let grammar = Grammar::toy_world();
    let [train, heldout, test] =
        [config.train, config.heldout, config.test].map(|(n, seed)| grammar.generate(n, seed));
    let vocab = WordVocab::new(&train);
    ToyWorldData {
        train_ids: vocab.encode(&train),
        held_ids: vocab.encode(&heldout),
        test_ids: vocab.encode(&test),
        train,
        heldout,
        test,
        vocab,
    }
}

/// The run's training settings: AdamW at `config.lr` with a 5% warmup and a cosine decay
/// to a tenth, gradients clipped at 1.
pub fn toy_world_train_config(config: &ToyWorldConfig) -> TrainConfig {
    TrainConfig {
        batch: config.batch,
        seq_len: config.model.context,
        schedule: LrSchedule {
            max_lr: config.lr,
            min_lr: config.lr / 10.0,
            warmup: (config.steps / 20).max(1),
            total: config.steps,
            anneal: 0,
            decay: Decay::Cosine,
        },
        adamw: AdamWConfig::default(),
        clip: Some(1.0),
        seed: config.seed,
    }
}

/// Trains `config.model` on the toy world and scores it, the best modified Kneser-Ney
/// n-gram model (orders 2 to 5) and the grammar on the same test sentences. `on_step` sees
/// every step (for a progress bar).
pub fn toy_world_run(
    config: &ToyWorldConfig,
    mut on_step: impl FnMut(&StepLog) + Send,
) -> Result<ToyWorldRun> {
    let ToyWorldData {
        train,
        heldout,
        test,
        vocab,
        train_ids,
        held_ids,
        test_ids,
    } = toy_world_data(config);
    let mut cfg = config.model.clone();
    cfg.vocab_size = vocab.len();
    let train_config = toy_world_train_config(config);
    // the held-out sentences are a corpus of their own, not the end of the training ids
    let run_config = RunConfig {
        model: cfg,
        train: train_config,
        held_out: 0.0,
    };
    let mut run = Run::start(run_config, &train_ids)?;
    let options = RunOptions {
        eval_every: config.eval_every,
        ..RunOptions::default()
    };
    let timing = run.train(&train_ids, &held_ids, &options, |s, _| on_step(s))?;
    let (model, log) = (run.model, run.log);
    let test_cross_entropy = sentence_cross_entropy(&model, &test_ids)?;

    let words = |c: &[GeneratedSentence]| c.iter().map(|s| s.words.clone()).collect::<Vec<_>>();
    let (train_w, held_w, test_w) = (words(&train), words(&heldout), words(&test));
    let mut best: Option<(f64, usize)> = None;
    for order in 2..=5 {
        let m = NgramModel::train(
            &train_w,
            &held_w,
            NgramConfig::new(order, Smoothing::ModifiedKneserNey),
        )?;
        let h = m.evaluate(&test_w).cross_entropy();
        if best.is_none_or(|(b, _)| h < b) {
            best = Some((h, order));
        }
    }
    let (ngram_cross_entropy, order) = best.expect("four orders were scored");
    Ok(ToyWorldRun {
        vocab,
        model,
        log,
        test_cross_entropy,
        ngram_cross_entropy,
        ngram_best: (order, Smoothing::ModifiedKneserNey),
        true_cross_entropy: true_cross_entropy(&test),
        tokens_per_s: timing.tokens_per_s(),
    })
}

impl ToyWorldRun {
    /// A sentence sampled from the model after `</s>`, and whether the grammar could have
    /// written it.
    pub fn sample(&self, sampling: &Sampling) -> Result<(String, bool)> {
        let max = 40.min(self.model.cfg.context - 1);
        let ids = generate(&self.model, &[END], max, sampling)?;
        let words: Vec<&str> = ids
            .iter()
            .take_while(|&&id| id != END)
            .map(|&id| self.vocab.word(id))
            .collect();
        let complete = ids.contains(&END);
        let grammatical = complete && Grammar::toy_world().log_prob(&words).is_finite();
        Ok((words.join(" "), grammatical))
    }
}

// ANCHOR: ablation
/// The ablation: GPT-2's architecture, GPT-2 with one of Llama's ideas, and Llama. Sizes
/// match (`d_ff` 344 for SwiGLU's three matrices, 512 for GELU's two), so each row
/// measures one idea.
pub fn ablation_configs(context: usize) -> Vec<(&'static str, GptConfig)> {
    let gpt2 = GptConfig {
        context,
        ..GptConfig::gpt2_tiny()
    };
    let llama = GptConfig {
        context,
        ..GptConfig::llama_tiny()
    };
    vec![
        ("gpt2-tiny", gpt2.clone()),
        (
            "gpt2-tiny with only RMSNorm",
            GptConfig {
                norm: llama.norm,
                ..gpt2.clone()
            },
        ),
        (
            "gpt2-tiny with only RoPE",
            GptConfig {
                positions: llama.positions,
                ..gpt2.clone()
            },
        ),
        (
            "gpt2-tiny with only GQA (2 kv heads)",
            GptConfig {
                n_kv_heads: llama.n_kv_heads,
                ..gpt2.clone()
            },
        ),
        (
            "gpt2-tiny with only SwiGLU",
            GptConfig {
                mlp: llama.mlp,
                d_ff: llama.d_ff,
                ..gpt2.clone()
            },
        ),
        (
            "gpt2-tiny with only an untied head",
            GptConfig {
                tied_head: false,
                ..gpt2
            },
        ),
        ("llama-tiny", llama),
    ]
}
// ANCHOR_END: ablation

/// One toy-world run per configuration of [`ablation_configs`], each `steps` long, with
/// the same data, seed and hyperparameters. `on_step(k, step)` sees every step of run `k`.
pub fn ablation(
    base: &ToyWorldConfig,
    mut on_step: impl FnMut(usize, &StepLog) + Send,
) -> Result<Vec<(&'static str, ToyWorldRun)>> {
    ablation_configs(base.model.context)
        .into_iter()
        .enumerate()
        .map(|(k, (name, model))| {
            let config = ToyWorldConfig {
                model,
                ..base.clone()
            };
            Ok((name, toy_world_run(&config, |s| on_step(k, s))?))
        })
        .collect()
}

/// Training steps of the tour's run.
pub const TOUR_STEPS: usize = 400;

/// The tour's toy-world run: [`TOUR_STEPS`] steps of `llama-tiny`, or 20 steps on a tenth
/// of the sentences for [`TourSize::Quick`]. Chapter 5 fine-tunes the model it trains.
pub fn tour_config(size: TourSize) -> ToyWorldConfig {
    match size {
        TourSize::Full => ToyWorldConfig::llama_tiny(TOUR_STEPS),
        TourSize::Quick => ToyWorldConfig {
            train: (2_000, 1),
            heldout: (200, 2),
            test: (500, 3),
            ..ToyWorldConfig::llama_tiny(20)
        },
    }
}

/// Chapter 4's model and its word vocabulary, for the chapters after it: the one the tour
/// saved in `out_dir/ch04/model` when it is there and has the run's shape, else trained
/// again with the same settings (the run is deterministic, so both are the same model).
pub fn chapter_4_model(out_dir: &Path, config: &ToyWorldConfig) -> Result<(Gpt, WordVocab)> {
    let train = Grammar::toy_world().generate(config.train.0, config.train.1);
    let vocab = WordVocab::new(&train);
    let mut want = config.model.clone();
    want.vocab_size = vocab.len();
    if let Ok(model) = super::checkpoint::load_model(&out_dir.join("ch04").join("model")) {
        if model.cfg == want {
            return Ok((model, vocab));
        }
    }
    let bar = progress::bar(config.steps as u64, "training chapter 4's llama-tiny");
    let run = toy_world_run(config, |_| bar.inc(1))?;
    bar.finish_and_clear();
    Ok((run.model, run.vocab))
}

/// Chapter 4's step of the tour: `llama-tiny` on the toy world, its loss against the
/// n-gram models and the grammar, samples, and `out/ch04/{loss.svg,model/}`.
pub fn chapter_4(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch04");
    let config = tour_config(size);
    let bar = progress::bar(config.steps as u64, "training llama-tiny");
    let run = toy_world_run(&config, |s| {
        bar.set_message(format!("training llama-tiny, loss {:.3}", s.loss));
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    let cfg = &run.model.cfg;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "llama-tiny ({} parameters: d_model {}, {} layers, {} heads sharing {} key/value heads, SwiGLU {}, RoPE), one token per word ({} words), {} steps of {} x {} tokens: {:.0} tokens/s",
        cfg.n_params(),
        cfg.d_model,
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.d_ff,
        run.vocab.len(),
        config.steps,
        config.batch,
        cfg.context,
        run.tokens_per_s
    );
    let _ = writeln!(
        text,
        "  test cross-entropy, nats/word:   llama-tiny {:.3}   best n-gram ({}-gram, {}) {:.3}   the grammar (true) {:.3}",
        run.test_cross_entropy,
        run.ngram_best.0,
        run.ngram_best.1,
        run.ngram_cross_entropy,
        run.true_cross_entropy
    );
    let _ = writeln!(
        text,
        "  perplexity:                      llama-tiny {:.2}   best n-gram {:.2}   the grammar {:.2}",
        run.test_cross_entropy.exp(),
        run.ngram_cross_entropy.exp(),
        run.true_cross_entropy.exp()
    );
    let _ = writeln!(text, "  samples (T = 1; ✓ = the grammar can write it):");
    for seed in 0..4 {
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed,
        };
        let (sentence, ok) = run.sample(&s)?;
        let _ = writeln!(text, "    {} {sentence}", if ok { "✓" } else { "✗" });
    }
    let mut chart = LineChart::new(
        "llama-tiny on the toy world",
        "step",
        "cross-entropy (nats/word)",
    )
    .hline(
        format!("the grammar's true entropy {:.3}", run.true_cross_entropy),
        run.true_cross_entropy,
    );
    for s in run.log.series("llama-tiny", 10) {
        chart = chart.series(s);
    }
    let mut files: Vec<PathBuf> = Vec::new();
    let svg = dir.join("loss.svg");
    chart.save_svg(&svg)?;
    files.push(svg);
    chapter_4_figures(&dir, &run.model, &run.vocab, &mut files, &mut text)?;
    let model_dir = dir.join("model");
    super::checkpoint::save(&model_dir, &run.model, None)?;
    files.push(model_dir);
    Ok(StepReport {
        title: "Chapter 4: from GPT to Llama".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}

/// The chapter's figures, into `dir` (added to `files`), with a reading of the two
/// attention maps (added to `text`): the schedule, RoPE's rotations, the activations, the
/// key/value cache's size, and `model`'s attention over
/// [`figures::ATTENTION_SENTENCE`](super::figures::ATTENTION_SENTENCE) in the head that
/// looks most from "rides" to its subject "queen". A few milliseconds: nothing is
/// trained.
fn chapter_4_figures(
    dir: &Path,
    model: &Gpt,
    vocab: &WordVocab,
    files: &mut Vec<PathBuf>,
    text: &mut String,
) -> Result<()> {
    use super::figures::{self, AttentionMaps};
    let mut out = |name: &str| {
        files.push(dir.join(name));
        dir.join(name)
    };
    figures::lr_schedule_chart(&figures::book_schedule()).save_svg(out("lr_schedule.svg"))?;
    let theta = match model.cfg.positions {
        super::Positions::Rope { theta } => theta,
        _ => 10_000.0,
    };
    figures::rope_rotation_chart(theta, model.cfg.head_dim())?
        .save_svg(out("rope_rotations.svg"))?;
    figures::activation_chart().save_svg(out("activations.svg"))?;
    figures::kv_cache_chart()?.save_svg(out("kv_cache.svg"))?;
    let maps = AttentionMaps::new(model, vocab, figures::ATTENTION_SENTENCE)?;
    // positions: 0 </s>, 1 the, 2 queen, 3 who, 4 feeds, 5 her, 6 hound, 7 rides, 8 her
    let (queen, feeds, her, hound, rides, her2) = (2, 4, 5, 6, 7, 8);
    let (l, h, _) = maps.most_attentive(rides, queen);
    maps.chart(l, h, format!("Attention, layer {l}, head {h}"))
        .save_svg(out("attention_subject.svg"))?;
    let p = &maps.maps[l][h];
    let _ = writeln!(
        text,
        "  attention over \"{}\", layer {l} head {h} (the head that looks most from \"rides\" to \"queen\"):",
        figures::ATTENTION_SENTENCE
    );
    let _ = writeln!(
        text,
        "    on \"queen\" from \"feeds\" {:.2}, \"hound\" {:.2}, \"rides\" {:.2} (the next word agrees with the subject); on the word before from \"her\" {:.2} and {:.2}",
        p[feeds][queen], p[hound][queen], p[rides][queen], p[her][her - 1], p[her2][her2 - 1]
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;

    #[test]
    fn words_round_trip_and_unknown_words_are_unk() {
        let s = |w: &[&str]| GeneratedSentence {
            words: w.iter().map(|x| x.to_string()).collect(),
            log_prob: 0.0,
        };
        let v = WordVocab::new(&[s(&["the", "king"]), s(&["the", "queen"])]);
        assert_eq!(v.len(), 5);
        assert_eq!(
            v.encode(&[s(&["the", "dog"])]),
            [END, 2, WordVocab::UNK, END]
        );
        assert_eq!(v.word(4), "queen");
    }

    /// Windows start at a sentence end and cover every prediction once: the sentence
    /// cross-entropy of a stream equals the plain mean when one window holds it all.
    #[test]
    fn sentence_windows_cover_every_token_once() {
        let cfg = shrunk(GptConfig::llama_tiny(), [12, 16, 1, 24, 16]);
        let model = Gpt::init(cfg, 4).unwrap();
        let ids: Vec<u32> = vec![0, 3, 4, 5, 0, 6, 7, 0, 8, 0];
        let whole = {
            let n = ids.len() - 1;
            let mut acts = Activations::new(&model.cfg, 1, n);
            model.forward_loss(&mut acts, &ids[..n], &ids[1..]).unwrap() as f64
        };
        let h = sentence_cross_entropy(&model, &ids).unwrap();
        assert!((h - whole).abs() < 1e-6, "{h} {whole}");
        // a context of 5 tokens: windows [0, 4) and [4, 9), each from a </s>
        let mut small = model.clone();
        small.cfg.context = 5;
        let mut sum = 0.0;
        for (s, e) in [(0, 4), (4, 9)] {
            let mut acts = Activations::new(&small.cfg, 1, e - s);
            sum += small
                .forward_loss(&mut acts, &ids[s..e], &ids[s + 1..e + 1])
                .unwrap() as f64
                * (e - s) as f64;
        }
        let h5 = sentence_cross_entropy(&small, &ids).unwrap();
        assert!((h5 - sum / 9.0).abs() < 1e-6, "{h5} {}", sum / 9.0);
        assert!(sentence_cross_entropy(&model, &ids[1..]).is_err());
    }
}
