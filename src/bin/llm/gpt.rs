//! `llm gpt ...`: a GPT or Llama trained with hand-written backward passes (chapter 4).
//! Train a preset on a text file (bytes, or the ids of a tiktoken rank file), score token
//! ids or text with a saved model, and generate with the key/value cache.
//!
//! A model directory is the Hugging Face layout (`config.json`, `model.safetensors`); when
//! the model was trained on a tokenizer's ids, `tokenizer.tiktoken` and `tokenizer.json`
//! (its split pattern) sit next to them, and `--text` / `--prompt` use it. Without them the
//! tokens are bytes.
//!
//! The training run itself is the library's ([`llm_lessons::gpt::run`]), and so is the
//! tokenizer of a model folder ([`llm_lessons::gpt::tokens`]): this file turns flags into
//! their settings, prints, and draws the progress bar.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use llm_lessons::gpt::checkpoint::save;
use llm_lessons::gpt::experiments::{self, Settings};
use llm_lessons::gpt::generate::{generate, KvCache, Sampling};
use llm_lessons::gpt::optim::{AdamWConfig, Decay, LrSchedule};
use llm_lessons::gpt::recipe::{
    csv_table, markdown_table, recipe, schedule_chart, variants, variants_chart, RecipeConfig,
};
use llm_lessons::gpt::run::{
    sequence_loss_cached, Checkpoints, Run, RunConfig, RunOptions, TRAIN_LOG,
};
use llm_lessons::gpt::tokens::{check_ids, parse_ids, Tokens};
use llm_lessons::gpt::tour::{ablation, ablation_configs, ToyWorldConfig};
use llm_lessons::gpt::train::{LossLog, Mix, Piecewise, Stages, TrainConfig};
use llm_lessons::gpt::GptConfig;
use llm_lessons::plot::LineChart;
use llm_lessons::{progress, Error};

use crate::bpe::PatternArg;
use crate::quant::{load_model_or_gguf, tokens_at};
use crate::{say, CliResult};

/// How large an added MoE is.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MoeSize {
    /// As many active parameters per token as the dense MLP (1 shared + 2 of 8 routed of 115)
    Active,
    /// As many parameters in all as the dense MLP (9 experts of 38)
    Total,
}

// parsed once at start-up: the size of a variant does not matter
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum GptCommand {
    /// Train a model on a text file and save it in the Hugging Face layout
    Train {
        /// gpt2-tiny, llama-tiny or deepseek-tiny (llama-tiny with MLA, DeepSeekMoE and MTP)
        #[arg(long, default_value = "llama-tiny", value_name = "NAME")]
        preset: String,
        /// Add DeepSeek's multi-head latent attention to the preset (every head its own
        /// key and value)
        #[arg(long)]
        mla: bool,
        /// Add DeepSeekMoE to the preset, with as many active parameters per token as its
        /// dense MLP (`active`) or as many in all (`total`)
        #[arg(long, value_enum, value_name = "EQUAL")]
        moe: Option<MoeSize>,
        /// Add one multi-token-prediction depth (λ = 0.3) to the preset
        #[arg(long)]
        mtp: bool,
        /// γ of auxiliary-loss-free expert balancing (default: the preset's, 0.001; 0: off)
        #[arg(long, value_name = "G")]
        bias_update_speed: Option<f32>,
        /// Training text (UTF-8)
        #[arg(long, value_name = "FILE")]
        corpus: PathBuf,
        /// A tiktoken rank file (e.g. from `llm bpe train`); without it the tokens are bytes
        #[arg(long, value_name = "FILE")]
        tokenizer: Option<PathBuf>,
        /// Split pattern of the --tokenizer (<|endoftext|> is the id after the last rank)
        #[arg(long, value_enum, default_value_t = PatternArg::Gpt2, requires = "tokenizer")]
        pattern: PatternArg,
        /// Training steps in the whole run (default 1000; with --resume, the run's own)
        #[arg(long, value_name = "N")]
        steps: Option<usize>,
        /// Windows per step
        #[arg(long, default_value_t = 16, value_name = "B")]
        batch: usize,
        /// Tokens per window, and the model's context (default: the preset's, 128)
        #[arg(long, value_name = "T")]
        context: Option<usize>,
        /// Width of the residual stream (default: the preset's)
        #[arg(long, value_name = "C")]
        d_model: Option<usize>,
        /// Transformer blocks (default: the preset's)
        #[arg(long, value_name = "L")]
        layers: Option<usize>,
        /// Query heads (default: the preset's)
        #[arg(long, value_name = "H")]
        heads: Option<usize>,
        /// Key/value heads (default: the preset's)
        #[arg(long, value_name = "H")]
        kv_heads: Option<usize>,
        /// Hidden width of the MLP (default: the preset's)
        #[arg(long, value_name = "F")]
        d_ff: Option<usize>,
        /// Peak learning rate
        #[arg(long, default_value_t = 3e-3)]
        lr: f32,
        /// Learning rate at the end of the cosine decay
        #[arg(long, default_value_t = 3e-4)]
        min_lr: f32,
        /// Steps of linear warmup
        #[arg(long, default_value_t = 20, value_name = "N")]
        warmup: usize,
        /// AdamW's decoupled weight decay
        #[arg(long, default_value_t = 0.1)]
        weight_decay: f32,
        /// Clip the gradient's global norm to this (0: no clipping)
        #[arg(long, default_value_t = 1.0)]
        clip: f32,
        /// Seed of the initial weights and of the window sampler
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fraction of the tokens held out (the end of the corpus)
        #[arg(long, default_value_t = 0.1, value_name = "F")]
        held_out: f64,
        /// Print the held-out loss every N steps (0: only at the end)
        #[arg(long, default_value_t = 0, value_name = "N")]
        eval_every: usize,
        /// Most held-out windows per evaluation
        #[arg(long, default_value_t = 64, value_name = "N")]
        eval_windows: usize,
        /// Folder to write the model to
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Save the run (model, optimizer, sampler, log) every N steps and at the end, in
        /// OUT/checkpoints/step-NNNNNNN (0: no checkpoints)
        #[arg(long, default_value_t = 0, value_name = "N")]
        checkpoint_every: usize,
        /// Checkpoints to keep; older ones are deleted
        #[arg(long, default_value_t = 3, value_name = "K")]
        keep_checkpoints: usize,
        /// Save the mean of the last K checkpoints' weights as the model (as Llama 3 does)
        #[arg(
            long,
            default_value_t = 0,
            value_name = "K",
            requires = "checkpoint_every"
        )]
        average_last: usize,
        /// Continue the run saved in this checkpoint folder; give the same --corpus and
        /// --tokenizer: the model and training settings are the checkpoint's
        #[arg(long, value_name = "DIR", conflicts_with_all = [
            "preset", "context", "d_model", "layers", "heads", "kv_heads", "d_ff", "lr",
            "mla", "moe", "mtp", "bias_update_speed",
            "min_lr", "warmup", "weight_decay", "clip", "seed", "held_out", "batch",
        ])]
        resume: Option<PathBuf>,
        /// Also save the initial weights in OUT/init (to start another program from them)
        #[arg(long, conflicts_with = "resume")]
        save_init: bool,
        /// Windows per step by step, as B:FROM_STEP,...: 4:0,8:100,16:200 (default: --batch
        /// throughout)
        #[arg(long, value_name = "SPEC", conflicts_with = "resume")]
        batch_schedule: Option<String>,
        /// Tokens per window by step, as T:FROM_STEP,...: 16:0,64:300 (default: the context
        /// throughout)
        #[arg(long, value_name = "SPEC", conflicts_with = "resume")]
        seq_schedule: Option<String>,
        /// RoPE's base from the first step of the longest windows of --seq-schedule on
        /// (Llama 3: 500000)
        #[arg(long, value_name = "THETA", conflicts_with = "resume")]
        long_rope_theta: Option<f32>,
        /// Take the learning rate linearly to 0 over the last N steps
        #[arg(long, default_value_t = 0, value_name = "N", conflicts_with = "resume")]
        anneal_steps: usize,
        /// During the --anneal-steps, draw each window from FILE (tokenized as --corpus)
        /// with probability FRACTION; on --resume, give the run's FILE again
        #[arg(long, value_name = "FILE:FRACTION")]
        anneal_mix: Option<String>,
    },
    /// Llama 3's pre-training recipe on the toy world: the plain run against each stage
    /// (length schedule with RoPE's base raised, batch ramp, annealing on clean data,
    /// checkpoint averaging) and the whole recipe, at equal tokens, over several seeds
    Recipe {
        /// Seeds per variant
        #[arg(long, default_value_t = 3, value_name = "N")]
        seeds: usize,
        /// Steps of the plain run (16 windows of 64 tokens); every variant trains on as
        /// many tokens
        #[arg(long, default_value_t = 120, value_name = "N")]
        steps: usize,
        /// Folder for recipe.md, recipe.csv, recipe_variants.svg and recipe_schedule.svg
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Train gpt2-tiny, llama-tiny and gpt2-tiny with each single Llama idea on the toy
    /// world (one token per word); print their test cross-entropy and draw their losses
    Ablation {
        /// Training steps of each run
        #[arg(long, default_value_t = 600, value_name = "N")]
        steps: usize,
        /// Windows per step
        #[arg(long, default_value_t = 16, value_name = "B")]
        batch: usize,
        /// Tokens per window (the models' context)
        #[arg(long, default_value_t = 64, value_name = "T")]
        context: usize,
        /// Folder for ablation.svg and each run's train_log.csv
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// One of chapter 4's measurements on the toy world, over several seeds: init (the
    /// first steps from five initialisations), warmup (with and without, at two learning
    /// rates), ablation (gpt2-tiny with one of Llama's choices at a time), averaging
    /// (independent models, checkpoints of one run, fine-tunes of one base), agreement
    /// (the right possessive or pronoun by distance to the subject, against n-grams).
    /// Prints a table and writes NAME.csv and NAME.svg in OUT
    Experiment {
        /// init, warmup, ablation, averaging or agreement
        #[arg(value_name = "NAME")]
        name: String,
        /// Seeds 1 to N, one run each
        #[arg(long, default_value_t = 3, value_name = "N")]
        seeds: usize,
        /// Training steps of each run
        #[arg(long, default_value_t = 300, value_name = "N")]
        steps: usize,
        /// Training sentences of the toy world (held-out: a tenth, test: a quarter)
        #[arg(long, default_value_t = 20_000, value_name = "N")]
        sentences: usize,
        /// Folder for NAME.csv and NAME.svg
        #[arg(long, value_name = "DIR", default_value = "experiments")]
        out: PathBuf,
    },
    /// Draw training logs (train_log.csv) on one chart
    Plot {
        /// NAME=FILE: a train_log.csv and its label; give several
        #[arg(long = "log", value_name = "NAME=FILE", required = true)]
        logs: Vec<String>,
        /// Mean of the training loss over this many steps per point
        #[arg(long, default_value_t = 10, value_name = "N")]
        smooth: usize,
        /// Chart title
        #[arg(long, default_value = "Training loss")]
        title: String,
        /// The SVG file to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Mean next-token cross-entropy (nats) of a model over a sequence
    Eval {
        /// A model folder (from `llm gpt train`, or a Hugging Face Llama), or a GGUF file
        /// (from `llm quant quantize`, or llama.cpp's, of architecture llama)
        #[arg(long, value_name = "DIR|FILE")]
        model: PathBuf,
        /// With a GGUF file: dequantize its weights to f32 (default: compute in the
        /// file's own formats, as llama.cpp does)
        #[arg(long)]
        exact: bool,
        /// Token ids separated by whitespace
        #[arg(long, value_name = "FILE", required_unless_present = "text")]
        ids: Option<PathBuf>,
        /// UTF-8 text, tokenized with the model folder's tokenizer.tiktoken, or as bytes
        /// when the folder has none (then the vocabulary must hold the 256 bytes)
        #[arg(long, value_name = "FILE", conflicts_with = "ids")]
        text: Option<PathBuf>,
    },
    /// Continue a prompt: print the text, or with --prompt-ids the new ids
    Generate {
        /// A model folder (from `llm gpt train`, or a Hugging Face Llama), or a GGUF file
        /// (from `llm quant quantize`, or llama.cpp's, of architecture llama)
        #[arg(long, value_name = "DIR|FILE")]
        model: PathBuf,
        /// With a GGUF file: dequantize its weights to f32 (default: compute in the
        /// file's own formats, as llama.cpp does)
        #[arg(long)]
        exact: bool,
        /// Prompt text, tokenized with the folder's tokenizer.tiktoken, or as bytes
        #[arg(long, required_unless_present = "prompt_ids")]
        prompt: Option<String>,
        /// Prompt as token ids ("1 2 3"); prints the new ids on one line
        #[arg(long, value_name = "IDS", conflicts_with = "prompt")]
        prompt_ids: Option<String>,
        /// Tokens to generate
        #[arg(long, default_value_t = 50, value_name = "N")]
        max_new_tokens: usize,
        #[command(flatten)]
        sampling: SamplingFlags,
    },
}

/// How the next token is chosen: `llm gpt generate` and `llm chat`.
#[derive(clap::Args, Clone, Copy)]
pub struct SamplingFlags {
    /// Always take the most likely token
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p", "seed"])]
    greedy: bool,
    /// Divide the logits by T (0: greedy)
    #[arg(long, default_value_t = 1.0, value_name = "T")]
    temperature: f32,
    /// Sample among the K most likely tokens (0: all)
    #[arg(long, default_value_t = 0, value_name = "K")]
    top_k: usize,
    /// Sample among the fewest most likely tokens whose probability reaches P
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    top_p: f32,
    /// Seed of the sampler
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingFlags {
    /// The sampler the flags describe; a temperature or top-p out of range is an error.
    pub fn sampling(&self) -> llm_lessons::Result<Sampling> {
        if self.greedy {
            return Ok(Sampling::greedy());
        }
        let SamplingFlags {
            temperature,
            top_k,
            top_p,
            seed,
            ..
        } = *self;
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "--temperature must be 0 or more, got {temperature}"
            )));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "--top-p must be in (0, 1], got {top_p}"
            )));
        }
        Ok(Sampling {
            temperature,
            top_k,
            top_p,
            seed,
        })
    }
}

/// The progress bar's message after each step (loss and tokens/s since `t0`, over the
/// steps after `first`), and a line for each held-out evaluation: `llm gpt train` and
/// `llm lora train` show their runs the same way.
pub fn show_steps<'a>(
    bar: &'a indicatif::ProgressBar,
    what: &'a str,
    t0: std::time::Instant,
    first: usize,
    tokens_per_step: usize,
) -> impl FnMut(&llm_lessons::gpt::train::StepLog, Option<f32>) + 'a {
    move |step, held_out| {
        let done = step.step + 1;
        let rate = ((done - first) * tokens_per_step) as f64 / t0.elapsed().as_secs_f64();
        bar.set_message(format!("{what}, loss {:.4}, {rate:.0} tokens/s", step.loss));
        bar.inc(1);
        if let Some(v) = held_out {
            // a line that cannot be printed does not stop the run: the next one after it
            // reports the error
            let _ = bar.suspend(|| {
                say(format!(
                    "step {done}: train loss {:.4}, held-out loss {v:.4}",
                    step.loss
                ))
            });
        }
    }
}

/// Prints `model`'s mean next-token cross-entropy on token ids (`--ids`) or on text
/// (`--text`, encoded with the tokenizer of the folder `dir`): `llm gpt eval` and `llm lora
/// eval` print the same line. The model runs through its key/value cache, so a long text
/// on a real model needs memory for the cache, not for a training pass.
pub fn print_cross_entropy(
    dir: &Path,
    model: &llm_lessons::gpt::Gpt,
    ids: Option<PathBuf>,
    text: Option<PathBuf>,
) -> CliResult {
    let ids = match (ids, text) {
        (Some(path), _) => {
            let what = path.display().to_string();
            parse_ids(&llm_lessons::data::read_text(&path)?, &what)?
        }
        (None, Some(path)) => {
            let tokens = tokens_at(dir)?;
            tokens.check_fits(&model.cfg)?;
            tokens.encode(&llm_lessons::data::read_text(&path)?)
        }
        (None, None) => return Err(Error::InvalidArgument("give --ids or --text".into()).into()),
    };
    check_ids(&ids, &model.cfg, "the input")?;
    let h = sequence_loss_cached(model, &ids, 256)?;
    say(format!(
        "cross-entropy {h:.5} nats/token over {} predictions (perplexity {:.3})",
        ids.len() - 1,
        h.exp()
    ))
}

pub fn run(cmd: GptCommand) -> CliResult {
    match cmd {
        GptCommand::Train {
            preset,
            mla,
            moe,
            mtp,
            bias_update_speed,
            corpus,
            tokenizer,
            pattern,
            steps,
            batch,
            context,
            d_model,
            layers,
            heads,
            kv_heads,
            d_ff,
            lr,
            min_lr,
            warmup,
            weight_decay,
            clip,
            seed,
            held_out,
            eval_every,
            eval_windows,
            out,
            checkpoint_every,
            keep_checkpoints,
            average_last,
            resume,
            save_init,
            batch_schedule,
            seq_schedule,
            long_rope_theta,
            anneal_steps,
            anneal_mix,
        } => {
            if average_last > 1 && checkpoint_every == 0 {
                return Err(Error::InvalidArgument(
                    "--average-last averages checkpoints: give --checkpoint-every N too".into(),
                )
                .into());
            }
            let tokens = match &tokenizer {
                None => Tokens::Bytes,
                Some(path) => Tokens::load_tiktoken(path, pattern.into())?,
            };
            let ids = tokens.encode(&llm_lessons::data::read_text(&corpus)?);
            if ids.is_empty() {
                return Err(Error::EmptyCorpus {
                    what: corpus.display().to_string(),
                }
                .into());
            }
            let mix = match &anneal_mix {
                None => None,
                Some(spec) => {
                    let (file, fraction) = spec
                        .rsplit_once(':')
                        .and_then(|(f, p)| Some((f, p.parse::<f64>().ok()?)))
                        .filter(|(_, p)| (0.0..=1.0).contains(p))
                        .ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "--anneal-mix {spec:?}: write FILE:FRACTION, the fraction in [0, 1]"
                            ))
                        })?;
                    let mix_ids = tokens.encode(&llm_lessons::data::read_text(Path::new(file))?);
                    Some((mix_ids, fraction))
                }
            };
            if mix.is_some() && anneal_steps == 0 && resume.is_none() {
                return Err(Error::InvalidArgument(
                    "--anneal-mix draws during the annealing: give --anneal-steps N too".into(),
                )
                .into());
            }
            let mut run = match &resume {
                Some(dir) => {
                    let mix_ids = mix.as_ref().map(|(m, _)| m.as_slice());
                    let run = Run::resume_mixed(dir, &ids, mix_ids).map_err(|e| match e {
                        Error::OtherData { trained, given, .. } => Error::InvalidArgument(format!(
                            "--corpus and --tokenizer give other token ids than the run in {} was trained on ({} ids, fingerprint {:016x}; now {} ids, fingerprint {:016x}): give the same files",
                            dir.display(), trained.0, trained.1, given.0, given.1
                        )),
                        e => e,
                    })?;
                    let planned = run.planned_steps();
                    if steps.is_some_and(|s| s != planned) {
                        return Err(Error::InvalidArgument(format!(
                            "the run in {} was planned for {planned} steps (its learning-rate schedule): resume it with --steps {planned}, or without --steps",
                            dir.display()
                        ))
                        .into());
                    }
                    say(format!(
                        "resuming {} at step {} of {planned}",
                        dir.display(),
                        run.trainer.step
                    ))?;
                    run
                }
                None => {
                    let steps = steps.unwrap_or(1000);
                    let mut cfg = GptConfig::preset(&preset)?;
                    if mla {
                        cfg.mla = Some(GptConfig::mla_tiny());
                        cfg.n_kv_heads = cfg.n_heads;
                    }
                    match moe {
                        Some(MoeSize::Active) => cfg.moe = Some(GptConfig::moe_tiny()),
                        Some(MoeSize::Total) => cfg.moe = Some(GptConfig::moe_tiny_equal_total()),
                        None => {}
                    }
                    if mtp {
                        cfg.mtp = Some(GptConfig::mtp_tiny());
                    }
                    if let (Some(g), Some(m)) = (bias_update_speed, cfg.moe.as_mut()) {
                        m.bias_update_speed = g;
                    } else if bias_update_speed.is_some() {
                        return Err(Error::InvalidArgument(
                            "--bias-update-speed balances experts: the model has no MoE (add --moe)"
                                .into(),
                        )
                        .into());
                    }
                    if let Some(h) = heads {
                        cfg.n_heads = h;
                        if kv_heads.is_none() && (cfg.n_kv_heads > h || cfg.mla.is_some()) {
                            cfg.n_kv_heads = h;
                        }
                    }
                    for (slot, value) in [
                        (&mut cfg.context, context),
                        (&mut cfg.d_model, d_model),
                        (&mut cfg.n_layers, layers),
                        (&mut cfg.n_kv_heads, kv_heads),
                        (&mut cfg.d_ff, d_ff),
                    ] {
                        if let Some(v) = value {
                            *slot = v;
                        }
                    }
                    cfg.vocab_size = tokens.vocab_size()?;
                    let train = TrainConfig {
                        batch,
                        seq_len: cfg.context,
                        schedule: LrSchedule {
                            max_lr: lr,
                            min_lr,
                            warmup: warmup.min(steps),
                            total: steps,
                            anneal: anneal_steps.min(steps),
                            decay: Decay::Cosine,
                        },
                        adamw: AdamWConfig {
                            weight_decay,
                            ..AdamWConfig::default()
                        },
                        clip: (clip > 0.0).then_some(clip),
                        seed,
                    };
                    let parse = |spec: &Option<String>, what| {
                        spec.as_deref()
                            .map_or(Ok(Piecewise::default()), |s| Piecewise::parse(s, what))
                    };
                    let stages = Stages {
                        batch: parse(&batch_schedule, "batch")?,
                        seq_len: parse(&seq_schedule, "sequence-length")?,
                        long_rope_theta,
                        mix: mix.as_ref().map(|&(_, fraction)| Mix {
                            from_step: steps - anneal_steps.min(steps),
                            fraction,
                        }),
                    };
                    let run = Run::start(
                        RunConfig {
                            model: cfg,
                            train,
                            held_out,
                        },
                        &ids,
                    )?
                    .with_stages(stages, mix.as_ref().map(|(m, _)| m.as_slice()))?;
                    if save_init {
                        save(&out.join("init"), &run.model, None)?;
                    }
                    run
                }
            };
            tokens.check_fits(&run.model.cfg)?;
            let options = RunOptions {
                eval_every,
                eval_windows,
                checkpoints: (checkpoint_every > 0).then(|| Checkpoints {
                    dir: out.join("checkpoints"),
                    every: checkpoint_every,
                    keep: keep_checkpoints,
                    average_last,
                }),
                stop_at: None,
            };
            let cfg = run.model.cfg.clone();
            let (train, val) = run.split(&ids);
            say(format!(
                "model: {} parameters (vocab {}, d_model {}, {} layers, {} heads, {} kv heads, d_ff {}, context {}, {:?} norm, {:?} positions, {:?} MLP)",
                cfg.n_params(),
                cfg.vocab_size,
                cfg.d_model,
                cfg.n_layers,
                cfg.n_heads,
                cfg.n_kv_heads,
                cfg.d_ff,
                cfg.context,
                cfg.norm,
                cfg.positions,
                cfg.mlp,
            ))?;
            if let Some(m) = &cfg.mla {
                say(format!("MLA: {m:?}"))?;
            }
            if let Some(m) = &cfg.moe {
                say(format!(
                    "DeepSeekMoE from block {}: {} shared + {} of {} routed experts of width {}, γ {}, α {}",
                    m.first_dense, m.n_shared, m.top_k, m.n_routed, m.d_expert,
                    m.bias_update_speed, m.seq_aux_alpha
                ))?;
            }
            if let Some(m) = &cfg.mtp {
                say(format!(
                    "MTP: one depth of {} parameters, loss weight λ {}",
                    cfg.n_mtp_params(),
                    m.lambda
                ))?;
            }
            if cfg.moe.is_some() || cfg.mtp.is_some() {
                say(format!(
                    "active per token at inference: {} parameters",
                    cfg.n_active_params()
                ))?;
            }
            let kv = |n_kv_heads| {
                KvCache::bytes(&GptConfig {
                    n_kv_heads,
                    mla: None,
                    ..cfg.clone()
                }) as f64
                    / 1024.0
            };
            match &cfg.mla {
                Some(m) => say(format!(
                    "cache for a full context of {}: {:.0} KiB of latents ({} + {} numbers per token and layer; MHA with {} heads: {:.0} KiB)",
                    cfg.context,
                    KvCache::bytes(&cfg) as f64 / 1024.0,
                    m.kv_lora_rank,
                    m.qk_rope_head_dim,
                    cfg.n_heads,
                    kv(cfg.n_heads),
                ))?,
                None => say(format!(
                    "KV cache for a full context of {}: {:.0} KiB with {} key/value heads (MHA, {} heads: {:.0} KiB; MQA, 1 head: {:.0} KiB)",
                    cfg.context,
                    kv(cfg.n_kv_heads),
                    cfg.n_kv_heads,
                    cfg.n_heads,
                    kv(cfg.n_heads),
                    kv(1)
                ))?,
            }
            say(format!(
                "data: {} tokens ({}), {} to train on, {} held out",
                ids.len(),
                if tokenizer.is_some() { "BPE" } else { "bytes" },
                train.len(),
                val.len()
            ))?;
            let tokens_per_step = run.trainer.config.batch * run.trainer.config.seq_len;
            let bar = progress::bar(run.planned_steps() as u64, "training");
            bar.set_position(run.trainer.step as u64);
            let (t0, first) = (std::time::Instant::now(), run.trainer.step);
            let timing = run.train(
                train,
                val,
                &options,
                show_steps(&bar, "training", t0, first, tokens_per_step),
            )?;
            bar.finish_and_clear();
            if timing.steps > 0 {
                say(format!(
                    "trained {} steps in {:.2} s, {:.0} tokens/s",
                    timing.steps,
                    timing.seconds,
                    timing.tokens_per_s()
                ))?;
            }
            let tail = &run.log.rows[run.log.rows.len().saturating_sub(10)..];
            if !tail.is_empty() {
                let mean = tail.iter().map(|r| r.step.loss).sum::<f32>() / tail.len() as f32;
                say(format!(
                    "train loss {mean:.4} (mean of the last {} steps)",
                    tail.len()
                ))?;
            }
            let done = run.finish(val, &options)?;
            if let Some(a) = &done.averaged {
                if let Some(v) = a.last_step_held_out {
                    say(format!("held-out loss {v:.4} (last step's weights)"))?;
                }
                let steps: Vec<String> = a.steps.iter().map(usize::to_string).collect();
                say(format!(
                    "averaged the checkpoints of steps {}",
                    steps.join(", ")
                ))?;
            }
            match done.held_out {
                Some(v) => say(format!("held-out loss {v:.4}"))?,
                None => say("held-out loss: none (too few held-out tokens)")?,
            }
            done.save(&out)?;
            done.log
                .chart(format!("Training {}", out.display()))
                .save_svg(out.join("loss.svg"))?;
            tokens.save(&out, tokenizer.as_deref())?;
            say(format!(
                "wrote {} (config.json, model.safetensors, {TRAIN_LOG}, loss.svg)",
                out.display()
            ))
        }
        GptCommand::Ablation {
            steps,
            batch,
            context,
            out,
        } => {
            if steps == 0 || batch == 0 || context < 2 {
                return Err(Error::InvalidArgument(
                    "--steps and --batch must be at least 1, --context at least 2".into(),
                )
                .into());
            }
            let mut base = ToyWorldConfig::llama_tiny(steps);
            base.model.context = context;
            base.batch = batch;
            let n = ablation_configs(context).len();
            let bar = progress::bar((n * steps) as u64, "ablation");
            let runs = ablation(&base, |k, s| {
                bar.set_message(format!(
                    "ablation, run {} of {n}, loss {:.3}",
                    k + 1,
                    s.loss
                ));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            let first = &runs[0].1;
            say(format!(
                "toy world, {steps} steps of {batch} x {context} tokens; test cross-entropy in nats/word (the grammar: {:.3}, best n-gram: {:.3})",
                first.true_cross_entropy, first.ngram_cross_entropy
            ))?;
            let mut chart = LineChart::new(
                "Ablation on the toy world: GPT-2, one Llama idea at a time, Llama",
                "step",
                "training loss (nats/word)",
            )
            .hline(
                format!("the grammar's true entropy {:.3}", first.true_cross_entropy),
                first.true_cross_entropy,
            );
            for (name, run) in &runs {
                say(format!(
                    "  {name:<36} {:>9} parameters   test {:.4}   final held-out {:.4}   {:.0} tokens/s",
                    run.model.cfg.n_params(),
                    run.test_cross_entropy,
                    run.log.rows.iter().rev().find_map(|r| r.held_out).unwrap_or(f32::NAN),
                    run.tokens_per_s
                ))?;
                let slug: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                llm_lessons::data::write_atomic(
                    &out.join(format!("{}.csv", slug.trim_matches('_'))),
                    run.log.to_csv().as_bytes(),
                )?;
                let smooth = (steps / 50).max(1);
                chart = chart.series(run.log.series(name, smooth).remove(0));
            }
            chart.save_svg(out.join("ablation.svg"))?;
            say(format!("wrote {}", out.join("ablation.svg").display()))
        }
        GptCommand::Recipe { seeds, steps, out } => {
            if seeds == 0 || steps < 20 {
                return Err(Error::InvalidArgument(
                    "--seeds must be at least 1 and --steps at least 20".into(),
                )
                .into());
            }
            let config = RecipeConfig::new(steps, seeds);
            let per_seed: usize = variants(&config, 1)?
                .iter()
                .map(|v| v.train.schedule.total)
                .sum();
            let bar = progress::bar((per_seed * seeds) as u64, "recipe");
            let (data, rows) = recipe(&config, |name, seed| {
                bar.set_message(format!("recipe: {name}, seed {seed}"));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            let table = markdown_table(&data, &rows, seeds);
            say(&table)?;
            let write = |name: &str, text: &str| {
                llm_lessons::data::write_atomic(&out.join(name), text.as_bytes())
            };
            write("recipe.md", &table)?;
            write("recipe.csv", &csv_table(&data, &rows))?;
            variants_chart(&data, &rows).save_svg(out.join("recipe_variants.svg"))?;
            let whole = variants(&config, 1)?
                .into_iter()
                .find(|v| v.name == "whole recipe")
                .expect("the whole recipe is a variant");
            schedule_chart(&whole).save_svg(out.join("recipe_schedule.svg"))?;
            say(format!(
                "wrote recipe.md, recipe.csv, recipe_variants.svg and recipe_schedule.svg in {}",
                out.display()
            ))
        }
        GptCommand::Experiment {
            name,
            seeds,
            steps,
            sentences,
            out,
        } => {
            let settings = Settings {
                seeds,
                steps,
                sentences,
            };
            let total = experiments::planned_steps(&name, &settings);
            let bar = progress::bar(total as u64, &name);
            let report = experiments::run_experiment(&name, &settings, &mut |s| {
                bar.set_message(format!("{name}, loss {:.3}", s.loss));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            say(&report.title)?;
            say(report.table.to_text().trim_end())?;
            let (csv, svg) = (
                out.join(format!("{name}.csv")),
                out.join(format!("{name}.svg")),
            );
            llm_lessons::data::write_atomic(&csv, report.table.to_csv().as_bytes())?;
            report.chart.save_svg(&svg)?;
            say(format!("wrote {} and {}", csv.display(), svg.display()))
        }
        GptCommand::Plot {
            logs,
            smooth,
            title,
            out,
        } => {
            let mut chart = LineChart::new(title, "step", "cross-entropy (nats/token)");
            for spec in &logs {
                let (name, file) = spec.split_once('=').ok_or_else(|| {
                    Error::InvalidArgument(format!("--log {spec:?}: write NAME=FILE"))
                })?;
                let path = Path::new(file);
                let log = LossLog::from_csv(&llm_lessons::data::read_text(path)?, path)?;
                for series in log.series(name, smooth) {
                    chart = chart.series(series);
                }
            }
            chart.save_svg(&out)?;
            say(format!("wrote {}", out.display()))
        }
        GptCommand::Eval {
            model,
            exact,
            ids,
            text,
        } => {
            let loaded = load_model_or_gguf(&model, exact)?;
            print_cross_entropy(&model, &loaded, ids, text)
        }
        GptCommand::Generate {
            model,
            prompt,
            exact,
            prompt_ids,
            max_new_tokens,
            sampling,
        } => {
            let dir = model;
            let t0 = std::time::Instant::now();
            let model = load_model_or_gguf(&dir, exact)?;
            let loaded = t0.elapsed();
            let sampling = sampling.sampling()?;
            let out = match (prompt, prompt_ids) {
                (_, Some(line)) => {
                    let ids = parse_ids(&line, "--prompt-ids")?;
                    check_ids(&ids, &model.cfg, "--prompt-ids")?;
                    let new = generate(&model, &ids, max_new_tokens, &sampling)?;
                    let line: Vec<String> = new.iter().map(u32::to_string).collect();
                    say(line.join(" "))
                }
                (Some(text), None) => {
                    let tokens = tokens_at(&dir)?;
                    let ids = tokens.encode(&text);
                    check_ids(&ids, &model.cfg, "--prompt")?;
                    let new = generate(&model, &ids, max_new_tokens, &sampling)?;
                    let mut all = ids;
                    all.extend(new);
                    say(tokens.decode(&all)?)
                }
                (None, None) => {
                    Err(Error::InvalidArgument("give --prompt or --prompt-ids".into()).into())
                }
            };
            // after the output, so that an error is still the first line on stderr
            if out.is_ok() {
                eprintln!("loaded in {} ms", loaded.as_millis());
            }
            out
        }
    }
}
