//! The whole chapter in order: a base model pre-trained on the toy world's sentences, SFT
//! on demonstrations, preference pairs labelled by the judge, a reward model, RLHF, DPO
//! (TRL's and Llama 3's), and the average of the DPO models; each scored by the judge on
//! held-out requests.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dpo::{dpo_step, reference_logps, DpoConfig, Pair};
use super::eval::{kl_estimate, replies, score, Scores};
use super::reward::{train_reward_model, RewardModel};
use super::rlhf::{rlhf_step, RlhfConfig};
use super::run::{run_steps, Checkpointing, PostLog};
use super::sft::{conversations, positions_needed, sft_step};
use super::task::{
    examples, judge, requests, ChatVocab, Conversation, Example, LossMask, Request, END_OF_TEXT,
};
use crate::data::grammar::Grammar;
use crate::gpt::checkpoint::average;
use crate::gpt::generate::Sampling;
use crate::gpt::optim::{AdamWConfig, Decay, LrSchedule};
use crate::gpt::run::{Run, RunConfig, RunOptions};
use crate::gpt::train::TrainConfig;
use crate::gpt::{Gpt, GptConfig};
use crate::{Error, Result};

/// How long each stage trains, and on how much.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    /// The base model and its pre-training on toy-world sentences.
    pub model: GptConfig,
    pub base_sentences: usize,
    pub base_steps: usize,
    /// Demonstrations and SFT steps.
    pub sft_examples: usize,
    pub sft_steps: usize,
    /// Requests whose sampled answers become preference pairs, answers sampled per request.
    pub pair_requests: usize,
    pub pair_samples: usize,
    /// Fraction of pairs whose labels are swapped, as a noisy annotator would.
    pub label_noise: f64,
    pub rm_steps: usize,
    pub rlhf: RlhfConfig,
    pub rlhf_steps: usize,
    pub dpo_steps: usize,
    /// Peak learning rates of SFT, the reward model, RLHF and DPO.
    pub lr: [f32; 4],
    /// Held-out requests the judge scores each model on.
    pub eval_requests: usize,
}

impl PipelineConfig {
    /// The book's settings.
    pub fn full() -> Self {
        PipelineConfig {
            model: GptConfig {
                vocab_size: 0, // the chat vocabulary's, set when built
                d_model: 64,
                n_layers: 3,
                n_heads: 4,
                n_kv_heads: 2,
                d_ff: 172,
                context: 48,
                ..GptConfig::llama_tiny()
            },
            base_sentences: 20_000,
            base_steps: 1500,
            sft_examples: 2000,
            sft_steps: 600,
            pair_requests: 3000,
            pair_samples: 4,
            label_noise: 0.0,
            rm_steps: 600,
            rlhf: RlhfConfig {
                prompts: 8,
                samples: 4,
                kl_coef: 0.5,
                temperature: 1.0,
            },
            rlhf_steps: 300,
            dpo_steps: 200,
            lr: [1e-3, 3e-4, 3e-4, 3e-4],
            eval_requests: 400,
        }
    }

    /// Everything wired end to end in seconds (its figures are not the book's).
    pub fn quick() -> Self {
        PipelineConfig {
            base_sentences: 2000,
            base_steps: 200,
            sft_examples: 500,
            sft_steps: 150,
            // enough requests that some get right and wrong answers: pairs
            pair_requests: 300,
            rm_steps: 10,
            rlhf_steps: 4,
            dpo_steps: 10,
            eval_requests: 40,
            ..PipelineConfig::full()
        }
    }
}

/// Training settings shared by the stages: AdamW with GPT-3's betas, warmup then cosine to a
/// tenth, gradients clipped at 1.
pub fn train_config(batch: usize, seq_len: usize, lr: f32, steps: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        batch,
        seq_len,
        schedule: LrSchedule {
            max_lr: lr,
            min_lr: lr / 10.0,
            warmup: (steps / 20).max(1),
            total: steps,
            anneal: 0,
            decay: Decay::Cosine,
        },
        adamw: AdamWConfig::default(),
        clip: Some(1.0),
        seed,
    }
}

/// The base model: `cfg.model` pre-trained with chapter 4's run on the toy world's
/// sentences (`</s>` between them), one token per word. It has never seen a conversation.
pub fn pretrain_base(
    cfg: &PipelineConfig,
    vocab: &ChatVocab,
    grammar: &Grammar,
    on_step: impl FnMut(usize) + Send,
) -> Result<(Gpt, f64)> {
    let mut on_step = on_step;
    let mut ids = vec![END_OF_TEXT];
    for s in grammar.generate(cfg.base_sentences, 1) {
        ids.extend(vocab.encode(&s.words)?);
        ids.push(END_OF_TEXT);
    }
    let mut model_cfg = cfg.model.clone();
    model_cfg.vocab_size = vocab.len();
    let context = model_cfg.context;
    let run_cfg = RunConfig {
        model: model_cfg,
        train: train_config(16, context, 3e-3, cfg.base_steps, 1),
        held_out: 0.05,
    };
    let mut run = Run::start(run_cfg, &ids)?;
    let (train, held) = run.split(&ids);
    let timing = run.train(train, held, &RunOptions::default(), |s, _| on_step(s.step))?;
    Ok((run.model, timing.tokens_per_s()))
}

/// How the judge labelled the sampled answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PairStats {
    pub requests: usize,
    /// Requests whose answers were all right, or all wrong: no pair (a tie).
    pub all_correct: usize,
    pub all_wrong: usize,
    pub pairs: usize,
    /// Pairs whose labels were swapped (`label_noise`).
    pub flipped: usize,
}

// ANCHOR: preference_pairs
/// Preference pairs labelled by the judge: for each request, `samples` answers sampled
/// from `model` at temperature 1; when some are right and some wrong, the first right one
/// is chosen over the first wrong one. With probability `noise` the labels are swapped.
pub fn preference_pairs(
    model: &Gpt,
    grammar: &Grammar,
    vocab: &ChatVocab,
    requests: &[Request],
    samples: usize,
    noise: f64,
    seed: u64,
) -> Result<(Vec<Pair>, PairStats)> {
    let repeated: Vec<Request> = requests
        .iter()
        .flat_map(|r| std::iter::repeat_n(r.clone(), samples))
        .collect();
    let sampling = Sampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed,
    };
    let answers = replies(model, vocab, &repeated, &sampling)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut stats = PairStats {
        requests: requests.len(),
        ..PairStats::default()
    };
    let mut pairs = Vec::new();
    for (r, group) in requests.iter().zip(answers.chunks(samples)) {
        let verdicts: Vec<bool> = group
            .iter()
            .map(|(_, a)| judge(grammar, vocab, r, a).is_correct())
            .collect();
        let right = verdicts.iter().position(|&v| v);
        let wrong = verdicts.iter().position(|&v| !v);
        match (right, wrong) {
            (Some(c), Some(w)) => {
                let (mut chosen, mut rejected) = (group[c].1.clone(), group[w].1.clone());
                if rng.gen_bool(noise) {
                    std::mem::swap(&mut chosen, &mut rejected);
                    stats.flipped += 1;
                }
                pairs.push(Pair {
                    prompt: group[c].0.clone(),
                    chosen,
                    rejected,
                });
            }
            (Some(_), None) => stats.all_correct += 1,
            _ => stats.all_wrong += 1,
        }
    }
    stats.pairs = pairs.len();
    Ok((pairs, stats))
}
// ANCHOR_END: preference_pairs

/// A model's scores on the held-out requests.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodScore {
    pub method: String,
    /// Greedy answers: the judge's verdicts.
    pub greedy: Scores,
    /// Answers sampled at temperature 1.
    pub sampled: Scores,
    /// `KL(π ‖ π_SFT)` per answer on the sampled answers, nats (NaN for the base model,
    /// whose answers are not chat).
    pub kl_from_sft: f64,
    /// Training tokens per second of the method's own stage (NaN where none).
    pub tokens_per_s: f64,
}

/// Scores `model` on `requests`, greedy and sampled, and its KL from `sft`.
pub fn score_method(
    method: &str,
    model: &Gpt,
    sft: Option<&Gpt>,
    grammar: &Grammar,
    vocab: &ChatVocab,
    requests: &[Request],
    tokens_per_s: f64,
) -> Result<MethodScore> {
    let (greedy, _) = score(model, grammar, vocab, requests, &Sampling::greedy())?;
    let sampling = Sampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 77,
    };
    let sampled_convs = replies(model, vocab, requests, &sampling)?;
    let verdicts: Vec<_> = requests
        .iter()
        .zip(&sampled_convs)
        .map(|(r, (_, a))| judge(grammar, vocab, r, a))
        .collect();
    let kl_from_sft = match sft {
        Some(s) => kl_estimate(model, s, &sampled_convs)?,
        None => f64::NAN,
    };
    Ok(MethodScore {
        method: method.into(),
        greedy,
        sampled: Scores::of(&verdicts),
        kl_from_sft,
        tokens_per_s,
    })
}

/// What one seed's pass through the pipeline produced.
#[derive(Clone, Debug)]
pub struct SeedRun {
    pub seed: u64,
    pub scores: Vec<MethodScore>,
    pub pair_stats: PairStats,
    /// The reward model's accuracy on held-out pairs (labelled by the judge, no noise), and
    /// how many there were.
    pub rm_accuracy: f64,
    pub rm_test_pairs: usize,
    pub sft_log: PostLog,
    pub rm_log: PostLog,
    pub rlhf_log: PostLog,
    pub dpo_log: PostLog,
    pub dpo_llama3_log: PostLog,
    /// The models, for whoever wants to look further.
    pub sft: Gpt,
    pub rm: RewardModel,
    pub dpo: Gpt,
}

/// Progress of a pipeline: the stage and its step.
pub type Progress<'a> = &'a mut (dyn FnMut(&str, usize, usize) + Send);

fn tokens_per_s(log: &PostLog, seconds: f64) -> f64 {
    log.column("tokens")
        .map_or(f64::NAN, |t| t.iter().sum::<f64>() / seconds)
}

/// The held-out requests every model is scored on (fixed across seeds).
pub fn eval_requests(grammar: &Grammar, n: usize) -> Vec<Request> {
    requests(grammar, n, 1000)
}

/// SFT, pairs, reward model, RLHF, DPO (TRL's and Llama 3's) and their average, from
/// `base`, with `seed` for every stage's data order and sampling.
pub fn run_seed(
    base: &Gpt,
    cfg: &PipelineConfig,
    seed: u64,
    progress: Progress,
) -> Result<SeedRun> {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let held_out = eval_requests(&grammar, cfg.eval_requests);
    let mut scores = vec![score_method(
        "base",
        base,
        None,
        &grammar,
        &vocab,
        &held_out,
        f64::NAN,
    )?];

    // SFT
    let demos: Vec<Example> = examples(&grammar, cfg.sft_examples, 10 + seed);
    let convs = conversations(&vocab, &demos)?;
    let t = positions_needed(&convs).max(36).min(base.cfg.context);
    let (sft, sft_log, sft_speed) = sft(
        base,
        &convs,
        LossMask::Assistant,
        cfg,
        seed,
        t,
        None,
        progress,
    )?;
    scores.push(score_method(
        "SFT",
        &sft,
        Some(&sft),
        &grammar,
        &vocab,
        &held_out,
        sft_speed,
    )?);

    // preference pairs from the SFT model's own answers
    let pair_requests = requests(&grammar, cfg.pair_requests, 20 + seed);
    let (pairs, pair_stats) = preference_pairs(
        &sft,
        &grammar,
        &vocab,
        &pair_requests,
        cfg.pair_samples,
        cfg.label_noise,
        30 + seed,
    )?;
    if pairs.is_empty() {
        return Err(Error::TooSmall {
            what: "the preference pairs".into(),
            why: format!(
                "none of {} requests got both a right and a wrong answer from the SFT model ({} all right, {} all wrong): train SFT longer or ask more requests",
                pair_stats.requests, pair_stats.all_correct, pair_stats.all_wrong
            ),
        });
    }
    let rm_test_requests = requests(&grammar, cfg.pair_requests / 4, 2000 + seed);
    let (rm_test, _) = preference_pairs(
        &sft,
        &grammar,
        &vocab,
        &rm_test_requests,
        cfg.pair_samples,
        0.0,
        40 + seed,
    )?;

    // reward model
    let mut rm = RewardModel::from_model(&sft);
    let rm_log = train_reward_model(
        &mut rm,
        &pairs,
        train_config(16, t + 1, cfg.lr[1], cfg.rm_steps, seed),
        cfg.rm_steps,
        |s, _| progress("reward model", s, cfg.rm_steps),
    )?;
    let rm_accuracy = rm.accuracy(&rm_test)?;

    // RLHF
    let rl_requests = requests(&grammar, cfg.pair_requests, 50 + seed);
    let (policy, rlhf_log, rlhf_speed) = rlhf(
        &sft,
        &rm,
        &rl_requests,
        cfg,
        cfg.rlhf,
        seed,
        t,
        None,
        progress,
    )?;
    scores.push(score_method(
        "SFT + RLHF",
        &policy,
        Some(&sft),
        &grammar,
        &vocab,
        &held_out,
        rlhf_speed,
    )?);

    // DPO, TRL's and Llama 3's
    let mut dpo_models = Vec::new();
    let mut dpo_logs = Vec::new();
    for (name, dcfg) in [
        ("SFT + DPO", DpoConfig::trl()),
        ("SFT + DPO (Llama 3)", DpoConfig::llama3()),
    ] {
        let (m, log, speed) = dpo(cfg, &sft, &pairs, &dcfg, seed, t, None, name, progress)?;
        scores.push(score_method(
            name,
            &m,
            Some(&sft),
            &grammar,
            &vocab,
            &held_out,
            speed,
        )?);
        dpo_models.push(m);
        dpo_logs.push(log);
    }
    let averaged = average(&dpo_models)?;
    scores.push(score_method(
        "average of the two DPO models",
        &averaged,
        Some(&sft),
        &grammar,
        &vocab,
        &held_out,
        f64::NAN,
    )?);
    let dpo_llama3_log = dpo_logs.pop().expect("two DPO runs");
    let dpo_log = dpo_logs.pop().expect("two DPO runs");
    Ok(SeedRun {
        seed,
        scores,
        pair_stats,
        rm_accuracy,
        rm_test_pairs: rm_test.len(),
        sft_log,
        rm_log,
        rlhf_log,
        dpo_log,
        dpo_llama3_log,
        sft,
        rm,
        dpo: dpo_models.swap_remove(0),
    })
}

/// The SFT stage: `cfg.sft_steps` steps from `base` on `convs` with `mask`, rows of `t`
/// positions; returns the model, its log and its training tokens per second.
#[allow(clippy::too_many_arguments)]
pub fn sft(
    base: &Gpt,
    convs: &[Conversation],
    mask: LossMask,
    cfg: &PipelineConfig,
    seed: u64,
    t: usize,
    checkpointing: Option<&Checkpointing>,
    progress: Progress,
) -> Result<(Gpt, PostLog, f64)> {
    let mut model = base.clone();
    let start = Instant::now();
    let log = run_steps(
        &mut model,
        train_config(16, t, cfg.lr[0], cfg.sft_steps, seed),
        cfg.sft_steps,
        &["loss", "tokens"],
        checkpointing,
        |tr, m, s| sft_step(tr, m, convs, mask, s),
        |s, _| progress("SFT", s, cfg.sft_steps),
    )?;
    let speed = tokens_per_s(&log, start.elapsed().as_secs_f64());
    Ok((model, log, speed))
}

/// The RLHF stage: the policy from `sft`, `cfg.rlhf_steps` steps against `rm`.
#[allow(clippy::too_many_arguments)]
pub fn rlhf(
    sft: &Gpt,
    rm: &RewardModel,
    requests: &[Request],
    cfg: &PipelineConfig,
    rl: RlhfConfig,
    seed: u64,
    t: usize,
    checkpointing: Option<&Checkpointing>,
    progress: Progress,
) -> Result<(Gpt, PostLog, f64)> {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let mut policy = sft.clone();
    let start = Instant::now();
    let log = run_steps(
        &mut policy,
        train_config(rl.prompts * rl.samples, t, cfg.lr[2], cfg.rlhf_steps, seed),
        cfg.rlhf_steps,
        &["loss", "reward", "kl", "judge accuracy", "tokens"],
        checkpointing,
        |tr, m, s| rlhf_step(tr, m, sft, rm, requests, &vocab, &grammar, &rl, s),
        |s, _| progress("RLHF", s, cfg.rlhf_steps),
    )?;
    let speed = tokens_per_s(&log, start.elapsed().as_secs_f64());
    Ok((policy, log, speed))
}

/// The DPO stage: the policy from `sft` (also the frozen reference), `cfg.dpo_steps` steps
/// on `pairs`.
#[allow(clippy::too_many_arguments)]
pub fn dpo(
    cfg: &PipelineConfig,
    sft: &Gpt,
    pairs: &[Pair],
    dcfg: &DpoConfig,
    seed: u64,
    t: usize,
    checkpointing: Option<&Checkpointing>,
    name: &str,
    progress: Progress,
) -> Result<(Gpt, PostLog, f64)> {
    let (lr, steps) = (cfg.lr[3], cfg.dpo_steps);
    let reference = reference_logps(sft, pairs, dcfg)?;
    let mut policy = sft.clone();
    let start = Instant::now();
    let log = run_steps(
        &mut policy,
        train_config(16, t, lr, steps, seed),
        steps,
        &[
            "loss",
            "reward accuracy",
            "chosen reward",
            "rejected reward",
            "nll",
            "tokens",
        ],
        checkpointing,
        |tr, m, s| dpo_step(tr, m, pairs, &reference, dcfg, s),
        |s, _| progress(name, s, steps),
    )?;
    let speed = tokens_per_s(&log, start.elapsed().as_secs_f64());
    Ok((policy, log, speed))
}

/// The methods' scores as a Markdown table: the mean over the runs, and the range
/// (min-max) when there are several.
pub fn table(runs: &[SeedRun]) -> String {
    let scores: Vec<Vec<MethodScore>> = runs.iter().map(|r| r.scores.clone()).collect();
    score_table(&scores)
}

/// [`table`] of the scores of each run (`runs[k][i]`: run `k`'s method `i`).
pub fn score_table(runs: &[Vec<MethodScore>]) -> String {
    let mut out = String::from(
        "| model | judge accuracy, greedy | sampled (T = 1) | unfinished or not words | ungrammatical | wrong subject | missing word | KL from SFT, nats | training tokens/s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let Some(first) = runs.first() else {
        return out;
    };
    let cell = |vals: Vec<f64>, pct: bool, digits: usize| -> String {
        let vals: Vec<f64> = vals.into_iter().filter(|v| v.is_finite()).collect();
        if vals.is_empty() {
            return "–".into();
        }
        let k = if pct { 100.0 } else { 1.0 };
        let mean = vals.iter().sum::<f64>() / vals.len() as f64 * k;
        let (lo, hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v * k), b.max(v * k))
            });
        let unit = if pct { "%" } else { "" };
        if vals.len() > 1 {
            format!("{mean:.digits$}{unit} ({lo:.digits$}–{hi:.digits$})")
        } else {
            format!("{mean:.digits$}{unit}")
        }
    };
    use super::task::Verdict;
    for (i, m) in first.iter().enumerate() {
        let col =
            |f: &dyn Fn(&MethodScore) -> f64| runs.iter().map(|r| f(&r[i])).collect::<Vec<_>>();
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.method,
                cell(col(&|s| s.greedy.accuracy()), true, 1),
                cell(col(&|s| s.sampled.accuracy()), true, 1),
                cell(
                    col(&|s| s.greedy.rate(Verdict::Unfinished) + s.greedy.rate(Verdict::NotWords)),
                    true,
                    1
                ),
                cell(col(&|s| s.greedy.rate(Verdict::Ungrammatical)), true, 1),
                cell(col(&|s| s.greedy.rate(Verdict::WrongSubject)), true, 1),
                cell(col(&|s| s.greedy.rate(Verdict::MissingWord)), true, 1),
                cell(col(&|s| s.kl_from_sft), false, 2),
                cell(col(&|s| s.tokens_per_s), false, 0),
            ),
        );
    }
    out
}
