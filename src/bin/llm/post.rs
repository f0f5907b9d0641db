//! `llm post ...`: chapter 8's post-training on the toy chat task, stage by stage (a base
//! model, SFT, a reward model, RLHF, DPO), scoring by the judge, the DPO loss of any model
//! folder on pairs from a file, and the chapter's whole table. The logic is the library's
//! ([`llm_lessons::post`]); SFT, RLHF and DPO keep checkpoints in their `--out` folder and
//! a run started again with the same flags continues from the last one.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use llm_lessons::data::grammar::Grammar;
use llm_lessons::data::write_atomic;
use llm_lessons::gpt::checkpoint::{load_model, save};
use llm_lessons::gpt::peft::save_adapter;
use llm_lessons::gpt::Gpt;
use llm_lessons::post::dpo::{dpo_loss_and_gradient, read_pairs, DpoConfig, Pair};
use llm_lessons::post::pipeline::{
    self, eval_requests, preference_pairs, score_method, PipelineConfig, Progress,
};
use llm_lessons::post::real::{lora_sft, RealSft, RealSftConfig};
use llm_lessons::post::report::{kl_sweep, mask_comparison, write_report};
use llm_lessons::post::reward::{train_reward_model, RewardModel};
use llm_lessons::post::run::Checkpointing;
use llm_lessons::post::sft::{conversations, positions_needed};
use llm_lessons::post::task::{examples, requests, ChatVocab, LossMask};
use llm_lessons::quant::gguf::llama::Precision;
use llm_lessons::{progress, Error};

use crate::{say, CliResult};

#[derive(Clone, Copy, ValueEnum)]
pub enum MaskArg {
    /// The assistant's tokens and its end of turn (the default)
    Assistant,
    /// Every token, the prompt's too
    All,
    /// The assistant's tokens without formatting tokens (no end of turn)
    Content,
}

#[derive(Subcommand)]
pub enum PostCommand {
    /// Pre-train the base model on the toy world's sentences
    Base {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Training steps
        #[arg(long, default_value_t = PipelineConfig::full().base_steps)]
        steps: usize,
    },
    /// Supervised fine-tuning on the chat task's demonstrations
    Sft {
        /// The base model's folder
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = PipelineConfig::full().sft_steps)]
        steps: usize,
        /// Demonstrations to draw the batches from
        #[arg(long, default_value_t = PipelineConfig::full().sft_examples)]
        examples: usize,
        /// Which tokens the loss reads
        #[arg(long, value_enum, default_value_t = MaskArg::Assistant)]
        mask: MaskArg,
        /// Peak learning rate
        #[arg(long, default_value_t = PipelineConfig::full().lr[0])]
        lr: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Preference pairs labelled by the judge, and a reward model trained on them
    Reward {
        /// The SFT model's folder: it answers, and the reward model starts from it
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Requests whose sampled answers become pairs
        #[arg(long, default_value_t = PipelineConfig::full().pair_requests)]
        requests: usize,
        /// Answers sampled per request
        #[arg(long, default_value_t = PipelineConfig::full().pair_samples)]
        samples: usize,
        /// Fraction of pairs whose labels are swapped
        #[arg(long, default_value_t = 0.0)]
        noise: f64,
        #[arg(long, default_value_t = PipelineConfig::full().rm_steps)]
        steps: usize,
        /// Peak learning rate
        #[arg(long, default_value_t = PipelineConfig::full().lr[1])]
        lr: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// RLHF: REINFORCE with a leave-one-out baseline against a reward model, KL-penalised
    Rlhf {
        /// The SFT model's folder (the policy starts from it; the KL is measured to it)
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// The reward model's folder (from `llm post reward`)
        #[arg(long, value_name = "DIR")]
        reward: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// β_KL: the penalty on log π − log π_SFT
        #[arg(long, default_value_t = PipelineConfig::full().rlhf.kl_coef)]
        kl_coef: f64,
        #[arg(long, default_value_t = PipelineConfig::full().rlhf_steps)]
        steps: usize,
        /// Peak learning rate
        #[arg(long, default_value_t = PipelineConfig::full().lr[2])]
        lr: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// DPO from the SFT model (also the frozen reference) on preference pairs
    Dpo {
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Pairs, one JSON object a line (`llm post reward` writes `pairs.jsonl`)
        #[arg(long, value_name = "FILE")]
        pairs: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 0.1)]
        beta: f64,
        /// Llama 3's version: formatting tokens masked, an NLL term (0.2) on the chosen answers
        #[arg(long)]
        llama3: bool,
        #[arg(long, default_value_t = PipelineConfig::full().dpo_steps)]
        steps: usize,
        /// Peak learning rate
        #[arg(long, default_value_t = PipelineConfig::full().lr[3])]
        lr: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// The mean DPO loss (TRL's sigmoid form) of a model against a reference on pairs
    DpoLoss {
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        #[arg(long, value_name = "DIR")]
        reference: PathBuf,
        /// Each line `{"prompt_ids": [...], "chosen_ids": [...], "rejected_ids": [...]}`
        #[arg(long, value_name = "FILE")]
        pairs: PathBuf,
        #[arg(long, default_value_t = 0.1)]
        beta: f64,
    },
    /// The judge's verdicts on a model's answers to held-out requests
    Eval {
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Held-out requests
        #[arg(long, default_value_t = PipelineConfig::full().eval_requests)]
        requests: usize,
        /// A model to measure the KL divergence from (the SFT model)
        #[arg(long, value_name = "DIR")]
        reference: Option<PathBuf>,
    },
    /// SFT on a real model: SmolLM2-135M-Instruct (a GGUF file) taught the chat task through
    /// LoRA adapters, judged before and after
    LoraSft {
        /// The GGUF file (`bash data/fetch.sh` fetches SmolLM2-135M-Instruct's)
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// Where the adapters (PEFT's files) and the log go
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = RealSftConfig::demo().steps)]
        steps: usize,
        /// Conversations per step
        #[arg(long, default_value_t = RealSftConfig::demo().batch)]
        batch: usize,
        #[arg(long, default_value_t = RealSftConfig::demo().lr)]
        lr: f32,
        /// Held-out requests judged before and after
        #[arg(long, default_value_t = RealSftConfig::demo().eval_requests)]
        requests: usize,
    },
    /// The chapter's table: every method from the same base, over several seeds, with the
    /// loss masks compared, RLHF at several KL coefficients, and the charts
    Table {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// The small settings: everything wired in seconds (not the book's figures)
        #[arg(long)]
        quick: bool,
    },
}

pub fn run(cmd: PostCommand) -> CliResult {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let cfg = PipelineConfig::full();
    let bar = progress::bar(1, "");
    let mut on_progress = |stage: &str, s: usize, n: usize| {
        bar.set_length(n as u64);
        bar.set_position(s as u64 + 1);
        bar.set_message(stage.to_string());
    };
    let progress: Progress = &mut on_progress;
    match cmd {
        PostCommand::Base { out, steps } => {
            let cfg = PipelineConfig {
                base_steps: steps,
                ..cfg
            };
            let (model, speed) = pipeline::pretrain_base(&cfg, &vocab, &grammar, |s| {
                progress("pre-training", s, steps)
            })?;
            bar.finish_and_clear();
            save(&out, &model, None)?;
            write_atomic(
                &out.join("vocab.txt"),
                (vocab.words.join("\n") + "\n").as_bytes(),
            )?;
            say(format!(
                "base model ({} parameters) pre-trained on the toy world at {speed:.0} tokens/s: {}",
                model.cfg.n_params(),
                out.display()
            ))?;
        }
        PostCommand::Sft {
            model,
            out,
            steps,
            examples: n,
            mask,
            lr,
            seed,
        } => {
            let base = load_chat_model(&model, &vocab)?;
            let mut cfg = PipelineConfig {
                sft_steps: steps,
                ..cfg
            };
            cfg.lr[0] = lr;
            let mask = match mask {
                MaskArg::Assistant => LossMask::Assistant,
                MaskArg::All => LossMask::All,
                MaskArg::Content => LossMask::AssistantContent,
            };
            let convs = conversations(&vocab, &examples(&grammar, n, 10 + seed))?;
            let t = positions_needed(&convs).max(36).min(base.cfg.context);
            let ck = Checkpointing {
                dir: out.clone(),
                every: 100,
            };
            let (m, log, speed) =
                pipeline::sft(&base, &convs, mask, &cfg, seed, t, Some(&ck), progress)?;
            bar.finish_and_clear();
            let last = log.rows.last().map_or(f64::NAN, |r| r[1]);
            say(format!(
                "SFT ({}): {steps} steps, last loss {last:.3}, {speed:.0} tokens/s: {}",
                mask.name(),
                out.display()
            ))?;
            print_scores(&m, None, &grammar, &vocab, cfg.eval_requests)?;
        }
        PostCommand::Reward {
            model,
            out,
            requests,
            samples,
            noise,
            steps,
            lr,
            seed,
        } => {
            let sft = load_chat_model(&model, &vocab)?;
            let reqs = |n: usize, s: u64| llm_lessons::post::task::requests(&grammar, n, s);
            progress("sampling answers for the pairs", 0, 1);
            let (pairs, stats) = preference_pairs(
                &sft,
                &grammar,
                &vocab,
                &reqs(requests, 20 + seed),
                samples,
                noise,
                30 + seed,
            )?;
            let (held, _) = preference_pairs(
                &sft,
                &grammar,
                &vocab,
                &reqs(requests / 4, 2000 + seed),
                samples,
                0.0,
                40 + seed,
            )?;
            std::fs::create_dir_all(&out).map_err(|e| Error::Write {
                path: out.clone(),
                source: e,
            })?;
            write_pairs(&out.join("pairs.jsonl"), &pairs)?;
            write_pairs(&out.join("held_out_pairs.jsonl"), &held)?;
            let mut rm = RewardModel::from_model(&sft);
            let t = rm.trunk.cfg.context.min(37);
            let log = train_reward_model(
                &mut rm,
                &pairs,
                pipeline::train_config(16, t, lr, steps, seed),
                steps,
                |s, _| progress("reward model", s, steps),
            )?;
            bar.finish_and_clear();
            rm.save(&out)?;
            write_atomic(&out.join("log.csv"), log.to_csv().as_bytes())?;
            say(format!(
                "{} requests, {samples} answers each: {} all right, {} all wrong (ties, no pair), {} pairs ({} labels swapped)",
                stats.requests, stats.all_correct, stats.all_wrong, stats.pairs, stats.flipped
            ))?;
            say(format!(
                "reward model: accuracy on {} held-out pairs {:.1}%: {}",
                held.len(),
                100.0 * rm.accuracy(&held)?,
                out.display()
            ))?;
        }
        PostCommand::Rlhf {
            model,
            reward,
            out,
            kl_coef,
            steps,
            lr,
            seed,
        } => {
            let sft = load_chat_model(&model, &vocab)?;
            let rm = RewardModel::load(&reward)?;
            let mut cfg = PipelineConfig {
                rlhf_steps: steps,
                ..cfg
            };
            cfg.lr[2] = lr;
            let rl = llm_lessons::post::rlhf::RlhfConfig {
                kl_coef,
                ..cfg.rlhf
            };
            let requests = requests(&grammar, cfg.pair_requests, 50 + seed);
            let ck = Checkpointing {
                dir: out.clone(),
                every: 50,
            };
            let t = sft.cfg.context.min(36);
            let (policy, log, speed) =
                pipeline::rlhf(&sft, &rm, &requests, &cfg, rl, seed, t, Some(&ck), progress)?;
            bar.finish_and_clear();
            let tail = |c: &str| {
                let v = log.column(c).unwrap_or_default();
                let k = v.len().min(10);
                v[v.len() - k..].iter().sum::<f64>() / k.max(1) as f64
            };
            say(format!(
                "RLHF, β_KL {kl_coef}: {steps} steps at {speed:.0} tokens/s; last 10 steps: reward-model score {:.3}, KL {:.3}, judge accuracy of the samples {:.1}%: {}",
                tail("reward"),
                tail("kl"),
                100.0 * tail("judge accuracy"),
                out.display()
            ))?;
            print_scores(&policy, Some(&sft), &grammar, &vocab, cfg.eval_requests)?;
        }
        PostCommand::Dpo {
            model,
            pairs,
            out,
            beta,
            llama3,
            steps,
            lr,
            seed,
        } => {
            let sft = load_chat_model(&model, &vocab)?;
            let pairs = read_pairs(&pairs)?;
            let base = if llama3 {
                DpoConfig::llama3()
            } else {
                DpoConfig::trl()
            };
            let dcfg = DpoConfig { beta, ..base };
            let mut cfg = PipelineConfig {
                dpo_steps: steps,
                ..cfg
            };
            cfg.lr[3] = lr;
            let ck = Checkpointing {
                dir: out.clone(),
                every: 100,
            };
            let t = llm_lessons::post::dpo::positions_needed(&pairs);
            let name = if llama3 { "DPO (Llama 3)" } else { "DPO" };
            let (policy, log, speed) = pipeline::dpo(
                &cfg,
                &sft,
                &pairs,
                &dcfg,
                seed,
                t,
                Some(&ck),
                name,
                progress,
            )?;
            bar.finish_and_clear();
            let last = log.rows.last().map_or(f64::NAN, |r| r[1]);
            say(format!(
                "{name}, β {beta}: {steps} steps on {} pairs, last loss {last:.4}, {speed:.0} tokens/s: {}",
                pairs.len(),
                out.display()
            ))?;
            print_scores(&policy, Some(&sft), &grammar, &vocab, cfg.eval_requests)?;
        }
        PostCommand::DpoLoss {
            model,
            reference,
            pairs,
            beta,
        } => {
            bar.finish_and_clear();
            let (policy, reference) = (load_model(&model)?, load_model(&reference)?);
            let pairs = read_pairs(&pairs)?;
            let cfg = DpoConfig {
                beta,
                ..DpoConfig::trl()
            };
            let (stats, _) = dpo_loss_and_gradient(&policy, &reference, &pairs, &cfg)?;
            say(format!(
                "mean DPO loss {:.6} over {} pairs (β {beta}); implied reward prefers the chosen answer in {:.4} of them",
                stats.loss,
                pairs.len(),
                stats.reward_accuracy
            ))?;
        }
        PostCommand::Eval {
            model,
            requests,
            reference,
        } => {
            bar.finish_and_clear();
            let m = load_chat_model(&model, &vocab)?;
            let r = match reference {
                Some(d) => Some(load_chat_model(&d, &vocab)?),
                None => None,
            };
            print_scores(&m, r.as_ref(), &grammar, &vocab, requests)?;
        }
        PostCommand::LoraSft {
            model,
            out,
            steps,
            batch,
            lr,
            requests,
        } => {
            let mut pre = llm_lessons::real_model::load(&model, Precision::Exact)?;
            let rc = RealSftConfig {
                steps,
                batch,
                lr,
                eval_requests: requests,
                ..RealSftConfig::demo()
            };
            let demos = examples(&grammar, rc.examples, 10 + rc.seed);
            let held_out = eval_requests(&grammar, requests);
            progress("replies before the fine-tune", 0, 1);
            // no checkpoints: each would write the 540 MB f32 base beside the adapters
            let done = lora_sft(&mut pre, &demos, &held_out, &rc, None, progress)?;
            bar.finish_and_clear();
            save_adapter(
                &out,
                &pre.model.params,
                &rc.lora,
                &model.display().to_string(),
            )?;
            write_atomic(&out.join("log.csv"), done.log.to_csv().as_bytes())?;
            for (name, replies) in [("before", &done.before), ("after", &done.after)] {
                say(format!(
                    "{name} the fine-tune: {:.1}% of {} held-out requests answered right",
                    100.0 * RealSft::accuracy(replies),
                    replies.len()
                ))?;
                for r in replies.iter().take(4) {
                    say(format!(
                        "  {} -> {:?} ({})",
                        llm_lessons::post::real::request_text(&r.request),
                        r.text.trim(),
                        r.verdict.name()
                    ))?;
                }
            }
            say(format!(
                "{steps} steps of {batch} conversations (rows of {} positions), {} adapter values trained, {:.2} s/step, {:.0} tokens/s, last loss {:.3}: {}",
                done.positions,
                done.trainable,
                done.seconds / steps as f64,
                done.tokens_per_s,
                done.log.rows.last().map_or(f64::NAN, |r| r[1]),
                out.display()
            ))?;
        }
        PostCommand::Table { out, seeds, quick } => {
            let cfg = if quick { PipelineConfig::quick() } else { cfg };
            let (base, base_speed) = pipeline::pretrain_base(&cfg, &vocab, &grammar, |s| {
                progress("pre-training", s, cfg.base_steps)
            })?;
            let mut runs = Vec::new();
            for seed in 1..=seeds {
                runs.push(pipeline::run_seed(&base, &cfg, seed, progress)?);
            }
            let masks = mask_comparison(&base, &cfg, 1, progress)?;
            let sweep = kl_sweep(&runs[0], &cfg, &[0.0, 0.1, 0.5], progress)?;
            bar.finish_and_clear();
            std::fs::create_dir_all(&out).map_err(|e| Error::Write {
                path: out.clone(),
                source: e,
            })?;
            let files = write_report(&out, &runs, &masks, &sweep, base_speed)?;
            let text = std::fs::read_to_string(&files[0])?;
            say(text)?;
            for f in &files {
                say(format!("wrote {}", f.display()))?;
            }
        }
    }
    Ok(())
}

/// A model folder whose vocabulary is the chat task's.
fn load_chat_model(dir: &Path, vocab: &ChatVocab) -> Result<Gpt, Error> {
    let m = load_model(dir)?;
    if m.cfg.vocab_size != vocab.len() {
        return Err(Error::InvalidArgument(format!(
            "{} has a vocabulary of {} tokens, the chat task's has {}: give a model from `llm post base` or a stage after it",
            dir.display(),
            m.cfg.vocab_size,
            vocab.len()
        )));
    }
    Ok(m)
}

fn write_pairs(path: &Path, pairs: &[Pair]) -> Result<(), Error> {
    let text: String = pairs.iter().map(|p| p.to_json() + "\n").collect();
    write_atomic(path, text.as_bytes())
}

fn print_scores(
    model: &Gpt,
    reference: Option<&Gpt>,
    grammar: &Grammar,
    vocab: &ChatVocab,
    n: usize,
) -> CliResult {
    let held_out = eval_requests(grammar, n);
    let s = score_method(
        "model",
        model,
        reference,
        grammar,
        vocab,
        &held_out,
        f64::NAN,
    )?;
    let mut line = format!(
        "judge on {n} held-out requests: {:.1}% correct greedy, {:.1}% sampled at T = 1",
        100.0 * s.greedy.accuracy(),
        100.0 * s.sampled.accuracy()
    );
    for (k, v) in llm_lessons::post::task::Verdict::ALL
        .iter()
        .enumerate()
        .skip(1)
    {
        line += &format!(", {} {}", s.greedy.counts[k], v.name());
    }
    if s.kl_from_sft.is_finite() {
        line += &format!("; KL from the reference {:.3} nats", s.kl_from_sft);
    }
    say(line)
}
