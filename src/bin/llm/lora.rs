//! `llm lora ...`: fine-tune a saved model through LoRA adapters (chapter 5), score the
//! adapted model, and merge the adapters into a plain model folder.
//!
//! An adapter folder is PEFT's: `adapter_config.json` and `adapter_model.safetensors`
//! (so `PeftModel.from_pretrained(base, dir)` loads it), with the run's `train_log.csv`
//! and `loss.svg`. The base model's folder gives the tokenizer, as for `llm gpt eval`.
//! The fine-tune itself is the library's ([`llm_lessons::lora::finetune`]).

use std::path::{Path, PathBuf};

use clap::Subcommand;
use llm_lessons::gpt::checkpoint::{load_model, save};
use llm_lessons::gpt::lora::LoraConfig;
use llm_lessons::gpt::peft::{load_adapter, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use llm_lessons::gpt::run::{Checkpoints, Run, RunOptions, TRAIN_LOG};
use llm_lessons::gpt::tokens::{check_ids, Tokens, TOKENIZER_META, TOKENIZER_RANKS};
use llm_lessons::gpt::Gpt;
use llm_lessons::lora::sweep::{self, run_plan, Outcome, SweepData};
use llm_lessons::lora::{finetune, run_to_end, FinetuneConfig, HeldOut};
use llm_lessons::{progress, Error};

use crate::bpe::PatternArg;
use crate::{say, CliResult};

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum LoraCommand {
    /// Fine-tune a model folder through LoRA adapters; save them in PEFT's format
    Train {
        /// The base model's folder (from `llm gpt train`, or a Hugging Face Llama)
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// Training text (UTF-8)
        #[arg(long, value_name = "FILE")]
        corpus: PathBuf,
        /// A tiktoken rank file; without it, the base folder's tokenizer (or bytes)
        #[arg(long, value_name = "FILE")]
        tokenizer: Option<PathBuf>,
        /// Split pattern of the --tokenizer
        #[arg(long, value_enum, default_value_t = PatternArg::Gpt2, requires = "tokenizer")]
        pattern: PatternArg,
        /// The adapters' rank r
        #[arg(long, default_value_t = 8, value_name = "R")]
        rank: usize,
        /// lora_alpha: the update is scaled by alpha / r (alpha / sqrt r with --rslora)
        #[arg(long, default_value_t = 16.0, value_name = "A")]
        alpha: f32,
        /// Scale by alpha / sqrt(r) (rank-stabilised LoRA)
        #[arg(long)]
        rslora: bool,
        /// lora_dropout: drop this fraction of the adapters' input during training
        /// (inverted dropout, as torch.nn.Dropout; 0: none)
        #[arg(long, default_value_t = 0.0, value_name = "P")]
        dropout: f32,
        /// Projections to adapt, comma-separated: q_proj, k_proj, v_proj, o_proj,
        /// gate_proj, up_proj, down_proj
        #[arg(
            long,
            default_value = "q_proj,v_proj",
            value_delimiter = ',',
            value_name = "NAMES"
        )]
        targets: Vec<String>,
        /// Training steps
        #[arg(long, default_value_t = 200, value_name = "N")]
        steps: usize,
        /// Windows per step
        #[arg(long, default_value_t = 16, value_name = "B")]
        batch: usize,
        /// Tokens per window (default: the model's context)
        #[arg(long, value_name = "T")]
        context: Option<usize>,
        /// Peak learning rate
        #[arg(long, default_value_t = 1e-2)]
        lr: f32,
        /// Steps of linear warmup (default: a twentieth of the run)
        #[arg(long, value_name = "N")]
        warmup: Option<usize>,
        /// AdamW's decoupled weight decay on the adapters
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f32,
        /// Clip the gradient's global norm to this (0: no clipping)
        #[arg(long, default_value_t = 1.0)]
        clip: f32,
        /// Seed of A's initial values and of the window sampler
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fraction of the tokens held out (the end of the corpus)
        #[arg(long, default_value_t = 0.1, value_name = "F")]
        held_out: f64,
        /// Print the held-out loss every N steps (0: only at the end)
        #[arg(long, default_value_t = 0, value_name = "N")]
        eval_every: usize,
        /// The adapter folder to write
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Save the run (adapters, AdamW's moments, sampler, log, and the base beside them)
        /// every N steps and at the end, in OUT/checkpoints/step-NNNNNNN (0: no checkpoints)
        #[arg(long, default_value_t = 0, value_name = "N")]
        checkpoint_every: usize,
        /// Checkpoints to keep; older ones are deleted
        #[arg(long, default_value_t = 3, value_name = "K")]
        keep_checkpoints: usize,
        /// Continue the fine-tune saved in this checkpoint folder; give the same --model,
        /// --corpus and --tokenizer: the adapters and training settings are the checkpoint's
        #[arg(long, value_name = "DIR", conflicts_with_all = [
            "rank", "alpha", "rslora", "dropout", "targets", "steps", "batch", "context", "lr",
            "warmup", "weight_decay", "clip", "seed", "held_out",
        ])]
        resume: Option<PathBuf>,
    },
    /// Mean next-token cross-entropy (nats) of a model with its adapters over a sequence
    Eval {
        /// The base model's folder
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// The adapter folder (from `llm lora train`, or saved by PEFT)
        #[arg(long, value_name = "DIR")]
        adapter: PathBuf,
        /// Token ids separated by whitespace
        #[arg(long, value_name = "FILE", required_unless_present = "text")]
        ids: Option<PathBuf>,
        /// UTF-8 text, tokenized with the base folder's tokenizer (or as bytes)
        #[arg(long, value_name = "FILE", conflicts_with = "ids")]
        text: Option<PathBuf>,
    },
    /// The chapter's sweep: chapter 4's toy-world model fine-tuned to the shifted grammar
    /// in full, through LoRA at r = 1, 2, 4, 8, 16 on q,v and on all seven projections, and
    /// by the head alone, each in a process of its own; writes the table and the chart
    Sweep {
        /// Folder for the base model (trained there first if it is not, about 400 steps)
        /// and the results (sweep.md, sweep.csv, sweep.svg)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only these fine-tunes, comma-separated (full, qv-r1 ... qv-r16, all-r1 ...
        /// all-r16, head); default: all twelve
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        only: Vec<String>,
    },
    /// One fine-tune of `llm lora sweep`, in this process: prints its figures as JSON
    #[command(hide = true)]
    SweepOne {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        plan: String,
    },
    /// Merge the adapters into the weights (W + s B A) and write a plain model folder
    Merge {
        /// The base model's folder
        #[arg(long, value_name = "DIR")]
        model: PathBuf,
        /// The adapter folder
        #[arg(long, value_name = "DIR")]
        adapter: PathBuf,
        /// The model folder to write (config.json, model.safetensors, the tokenizer)
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The base model with the adapters of `adapter` on it.
fn adapted(model: &Path, adapter: &Path) -> llm_lessons::Result<Gpt> {
    let mut base = load_model(model)?;
    load_adapter(adapter, &mut base.params)?;
    Ok(base)
}

pub fn run(cmd: LoraCommand) -> CliResult {
    match cmd {
        LoraCommand::Train {
            model,
            corpus,
            tokenizer,
            pattern,
            rank,
            alpha,
            rslora,
            dropout,
            targets,
            steps,
            batch,
            context,
            lr,
            warmup,
            weight_decay,
            clip,
            seed,
            held_out,
            eval_every,
            out,
            checkpoint_every,
            keep_checkpoints,
            resume,
        } => {
            let base_dir = model;
            let base = load_model(&base_dir)?;
            let tokens = match &tokenizer {
                None => Tokens::load(&base_dir)?,
                Some(path) => Tokens::load_tiktoken(path, pattern.into())?,
            };
            tokens.check_fits(&base.cfg)?;
            let ids = tokens.encode(&llm_lessons::data::read_text(&corpus)?);
            if ids.is_empty() {
                return Err(Error::EmptyCorpus {
                    what: corpus.display().to_string(),
                }
                .into());
            }
            check_ids(&ids, &base.cfg, "--corpus")?;
            if let Some(t) = context.filter(|&t| t > base.cfg.context) {
                return Err(Error::InvalidArgument(format!(
                    "--context {t} is longer than the model's context, {}",
                    base.cfg.context
                ))
                .into());
            }
            let checkpoints = (checkpoint_every > 0).then(|| Checkpoints {
                dir: out.join("checkpoints"),
                every: checkpoint_every,
                keep: keep_checkpoints,
                average_last: 0,
            });
            let (done, bar) = match &resume {
                Some(dir) => {
                    let run = Run::resume(dir, &ids).map_err(|e| match e {
                        Error::OtherData { trained, given, .. } => Error::InvalidArgument(format!(
                            "--corpus and --tokenizer give other token ids than the fine-tune in {} was trained on ({} ids, fingerprint {:016x}; now {} ids, fingerprint {:016x}): give the same files",
                            dir.display(), trained.0, trained.1, given.0, given.1
                        )),
                        e => e,
                    })?;
                    // the checkpoint holds its base: it must be the --model given
                    let mut saved_base = run.model.params.clone();
                    saved_base.visit_linears_mut(|_, l| l.adapter = None);
                    if saved_base.tensors() != base.params.tensors() {
                        return Err(Error::InvalidArgument(format!(
                            "the fine-tune in {} was made on another base model than {}",
                            dir.display(),
                            base_dir.display()
                        ))
                        .into());
                    }
                    let lora = run.model.params.lora_config()?.ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{} holds no LoRA adapters: resume a chapter 4 run with `llm gpt train --resume`",
                            dir.display()
                        ))
                    })?;
                    let planned = run.planned_steps();
                    say(format!(
                        "resuming {} at step {} of {planned}; LoRA r = {}, alpha {}, on {}",
                        dir.display(),
                        run.trainer.step,
                        lora.rank,
                        lora.alpha,
                        lora.targets.join(", ")
                    ))?;
                    let config = &run.trainer.config;
                    let tokens_per_step = config.batch * config.seq_len;
                    let bar = progress::bar(planned as u64, "LoRA fine-tune");
                    bar.set_position(run.trainer.step as u64);
                    let (t0, first) = (std::time::Instant::now(), run.trainer.step);
                    let show =
                        crate::gpt::show_steps(&bar, "LoRA fine-tune", t0, first, tokens_per_step);
                    let options = RunOptions {
                        eval_every,
                        eval_windows: 64,
                        checkpoints,
                        stop_at: None,
                    };
                    let done = run_to_end(run, &ids, HeldOut::Fraction(held_out), &options, show)?;
                    (done, bar)
                }
                None => {
                    let lora = LoraConfig {
                        rank,
                        alpha,
                        rslora,
                        targets: targets.iter().map(|t| t.trim().to_string()).collect(),
                        dropout,
                    };
                    let mut cfg = FinetuneConfig::new(lora, steps);
                    cfg.batch = batch;
                    cfg.seq_len = context;
                    cfg.lr = lr;
                    if let Some(w) = warmup {
                        cfg.warmup = w;
                    }
                    cfg.weight_decay = weight_decay;
                    cfg.clip = (clip > 0.0).then_some(clip);
                    cfg.seed = seed;
                    cfg.eval_every = eval_every;
                    cfg.checkpoints = checkpoints;
                    say(format!(
                        "base: {} ({} parameters, frozen); LoRA r = {rank}, alpha {alpha}, s = {} on {}, dropout {dropout}",
                        base_dir.display(),
                        base.cfg.n_params(),
                        cfg.lora.scale(),
                        cfg.lora.targets.join(", ")
                    ))?;
                    let tokens_per_step = batch * context.unwrap_or(base.cfg.context);
                    let bar = progress::bar(steps as u64, "LoRA fine-tune");
                    let t0 = std::time::Instant::now();
                    let show =
                        crate::gpt::show_steps(&bar, "LoRA fine-tune", t0, 0, tokens_per_step);
                    let done = finetune(base, &cfg, &ids, HeldOut::Fraction(held_out), show)?;
                    (done, bar)
                }
            };
            bar.finish_and_clear();
            let n = done.model.cfg.n_params();
            say(format!(
                "trainable: {} values of {n} ({:.2}%); training state {:.1} KiB",
                done.trainable,
                100.0 * done.trainable as f64 / n as f64,
                done.state_bytes as f64 / 1024.0
            ))?;
            say(format!(
                "trained {} steps in {:.2} s, {:.0} tokens/s",
                done.timing.steps,
                done.timing.seconds,
                done.timing.tokens_per_s()
            ))?;
            let tail = &done.log.rows[done.log.rows.len().saturating_sub(10)..];
            if !tail.is_empty() {
                let mean = tail.iter().map(|r| r.step.loss).sum::<f32>() / tail.len() as f32;
                say(format!(
                    "train loss {mean:.4} (mean of the last {} steps)",
                    tail.len()
                ))?;
            }
            match done.held_out {
                Some(v) => say(format!("held-out loss {v:.4}"))?,
                None => say("held-out loss: none (too few held-out tokens)")?,
            }
            done.save(&out, &base_dir.display().to_string())?;
            done.log
                .chart(format!("LoRA fine-tune {}", out.display()))
                .save_svg(out.join("loss.svg"))?;
            say(format!(
                "wrote {} ({ADAPTER_CONFIG}, {ADAPTER_WEIGHTS}, {TRAIN_LOG}, loss.svg)",
                out.display()
            ))
        }
        LoraCommand::Sweep { out, only } => sweep(&out, &only),
        LoraCommand::SweepOne { dir, plan } => {
            let data = SweepData::load_or_train(&dir, || {})?;
            let mut outcome = run_plan(&sweep::plan(&plan)?, &data)?;
            outcome.peak_rss_kib = sweep::peak_rss_kib();
            say(outcome.to_json())
        }
        LoraCommand::Eval {
            model,
            adapter,
            ids,
            text,
        } => {
            let m = adapted(&model, &adapter)?;
            crate::gpt::print_cross_entropy(&model, &m, ids, text)
        }
        LoraCommand::Merge {
            model,
            adapter,
            out,
        } => {
            let mut m = adapted(&model, &adapter)?;
            let merged = m.params.merge_lora();
            save(&out, &m, None)?;
            let mut copied = Vec::new();
            for name in [TOKENIZER_RANKS, TOKENIZER_META] {
                let from = model.join(name);
                if from.exists() {
                    let bytes = std::fs::read(&from).map_err(|source| Error::Io {
                        path: from.clone(),
                        source,
                    })?;
                    llm_lessons::data::write_atomic(&out.join(name), &bytes)?;
                    copied.push(name);
                }
            }
            let mut files = vec!["config.json", "model.safetensors"];
            files.extend(copied);
            say(format!(
                "merged {} adapters into the weights of {}; wrote {} ({})",
                merged.len(),
                model.display(),
                out.display(),
                files.join(", ")
            ))
        }
    }
}

/// `llm lora sweep`: the base once, then each fine-tune in a child process (this program's
/// hidden `lora sweep-one`), so that each peak RSS is that fine-tune's alone.
fn sweep(out: &Path, only: &[String]) -> CliResult {
    let plans = match only {
        [] => sweep::plans(),
        names => names
            .iter()
            .map(|n| sweep::plan(n.trim()))
            .collect::<llm_lessons::Result<_>>()?,
    };
    let data = SweepData::load_or_train(out, || {
        let _ =
            say("training chapter 4's llama-tiny on the toy world first (the tour's 400 steps)");
    })?;
    let before = data.score(&data.base)?;
    say(format!(
        "base {}: test cross-entropy {:.3} on the shifted grammar, {:.3} on the toy world (true: {:.3}, {:.3}); {} steps per fine-tune",
        out.join("ch04/model").display(),
        before.0,
        before.1,
        data.truth.0,
        data.truth.1,
        data.steps
    ))?;
    let exe = std::env::current_exe().map_err(|e| Error::Io {
        path: PathBuf::from("the llm program"),
        source: e,
    })?;
    let mut outcomes = Vec::new();
    for plan in &plans {
        let dir = out
            .to_str()
            .ok_or_else(|| Error::InvalidArgument(format!("{} is not UTF-8", out.display())))?;
        let child = std::process::Command::new(&exe)
            .args(["lora", "sweep-one", "--dir", dir, "--plan", &plan.name])
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::Io {
                path: exe.clone(),
                source: e,
            })?;
        let stdout = String::from_utf8_lossy(&child.stdout);
        if !child.status.success() {
            return Err(Error::InvalidArgument(format!(
                "the fine-tune {} failed ({}): {stdout}",
                plan.name, child.status
            ))
            .into());
        }
        let line = stdout.lines().last().unwrap_or("");
        let o = Outcome::from_json(line)?;
        say(format!(
            "{:<24} {:>9} trainable  {:>7.1} ms/step  peak RSS {:>6.1} MiB  target {:.3}  source {:.3}",
            sweep::label(&o.name),
            o.trainable,
            o.step_ms,
            o.peak_rss_kib.unwrap_or(0) as f64 / 1024.0,
            o.target,
            o.source
        ))?;
        outcomes.push(o);
    }
    let table = sweep::table(before, data.truth, &outcomes);
    llm_lessons::data::write_atomic(&out.join("sweep.md"), table.as_bytes())?;
    let mut csv =
        String::from("name,trainable,optimizer_bytes,peak_rss_kib,step_ms,target,source\n");
    for o in &outcomes {
        csv.push_str(&format!(
            "{},{},{},{},{:.3},{:.6},{:.6}\n",
            o.name,
            o.trainable,
            o.optimizer_bytes,
            o.peak_rss_kib.map_or(String::new(), |k| k.to_string()),
            o.step_ms,
            o.target,
            o.source
        ));
    }
    llm_lessons::data::write_atomic(&out.join("sweep.csv"), csv.as_bytes())?;
    sweep::chart(before, data.truth, &outcomes).save_svg(out.join("sweep.svg"))?;
    say(table)?;
    say(format!(
        "wrote {} (sweep.md, sweep.csv, sweep.svg)",
        out.display()
    ))
}
