//! The chapter's SFT on a real model: SmolLM2-135M-Instruct (chapter 7) taught the toy
//! chat task through LoRA adapters (chapter 5), with its own tokenizer and chat template,
//! and scored by the same judge before and after.
//!
//! The request is written as English ("Write one sentence about the queen that uses the
//! word castle."), the demonstration as the toy world's sentence ("The queen rides to the
//! castle."); the judge reads the reply's words (lower-cased, letters only) and checks them
//! as it checks the small model's tokens. Before the fine-tune SmolLM2 writes good English
//! that the toy world's grammar cannot write; the fine-tune teaches it the toy world.

use std::time::Instant;

use super::run::{run_steps, Checkpointing, PostLog};
use super::sft::sft_step;
use super::task::{judge, ChatVocab, Conversation, Example, LossMask, Request, Verdict, IM_END};
use crate::data::grammar::{GeneratedSentence, Grammar};
use crate::gpt::generate::{generate_streaming, KvCache, Sampling, Stop};
use crate::gpt::lora::LoraConfig;
use crate::gpt::train::TrainConfig;
use crate::real_model::{Message, Pretrained};
use crate::Result;

use super::pipeline::{train_config, Progress};

/// The request in English.
pub fn request_text(r: &Request) -> String {
    match &r.with {
        Some(w) => format!(
            "Write one sentence about the {} that uses the word {w}.",
            r.subject
        ),
        None => format!("Write one sentence about the {}.", r.subject),
    }
}

/// The judge on a reply written as text: its words (runs of letters, lower-cased) in the
/// toy world's vocabulary, then [`judge`]. `ended`: the model chose its end of turn.
pub fn judge_text(
    grammar: &Grammar,
    vocab: &ChatVocab,
    request: &Request,
    text: &str,
    ended: bool,
) -> Verdict {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let Ok(mut ids) = vocab.encode(&words) else {
        return if ended {
            Verdict::Ungrammatical
        } else {
            Verdict::Unfinished
        };
    };
    if ended {
        ids.push(IM_END);
    }
    judge(grammar, vocab, request, &ids)
}

/// The settings of the demonstration.
#[derive(Clone, Debug, PartialEq)]
pub struct RealSftConfig {
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    pub lora: LoraConfig,
    /// Demonstrations to draw the batches from, and held-out requests to judge.
    pub examples: usize,
    pub eval_requests: usize,
    pub seed: u64,
}

impl RealSftConfig {
    pub fn demo() -> Self {
        RealSftConfig {
            steps: 80,
            batch: 4,
            lr: 1e-3,
            lora: LoraConfig::new(8, 16.0, &["q_proj", "v_proj"]),
            examples: 200,
            eval_requests: 24,
            seed: 1,
        }
    }
}

/// A reply: the request, the text, the judge's verdict.
#[derive(Clone, Debug)]
pub struct Reply {
    pub request: Request,
    pub text: String,
    pub verdict: Verdict,
}

/// What the demonstration measured.
#[derive(Clone, Debug)]
pub struct RealSft {
    pub before: Vec<Reply>,
    pub after: Vec<Reply>,
    pub log: PostLog,
    /// Training tokens per second (padding excluded), and the trainable values.
    pub tokens_per_s: f64,
    pub trainable: usize,
    /// Each step's batch: `batch` rows of this many positions (the longest conversation).
    pub positions: usize,
    /// Seconds of training (the steps alone).
    pub seconds: f64,
}

impl RealSft {
    pub fn accuracy(replies: &[Reply]) -> f64 {
        replies.iter().filter(|r| r.verdict.is_correct()).count() as f64
            / replies.len().max(1) as f64
    }
}

/// Greedy replies of `pre` to `requests`, judged.
pub fn replies(
    pre: &Pretrained,
    grammar: &Grammar,
    vocab: &ChatVocab,
    requests: &[Request],
) -> Result<Vec<Reply>> {
    requests
        .iter()
        .map(|r| {
            let prompt = pre.chat_prompt(&[Message::user(request_text(r))])?;
            let mut cache = KvCache::with_capacity(&pre.model.cfg, prompt.len() + 40);
            let mut out = Vec::new();
            let stop = generate_streaming(
                &pre.model,
                &mut cache,
                &prompt,
                40,
                &Sampling::greedy(),
                &pre.stop_tokens,
                |id| {
                    out.push(id);
                    Ok(())
                },
            )?;
            let text = pre.decode(&out)?;
            let verdict = judge_text(grammar, vocab, r, &text, matches!(stop, Stop::EndOfTurn(_)));
            Ok(Reply {
                request: r.clone(),
                text,
                verdict,
            })
        })
        .collect()
}

/// The demonstration: judged replies before, SFT through LoRA adapters on `examples`
/// (the loss on the assistant's tokens), judged replies after. The adapters stay on
/// `pre.model`.
pub fn lora_sft(
    pre: &mut Pretrained,
    demos: &[Example],
    held_out: &[Request],
    cfg: &RealSftConfig,
    checkpointing: Option<&Checkpointing>,
    progress: Progress,
) -> Result<RealSft> {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let before = replies(pre, &grammar, &vocab, held_out)?;
    let end = pre.end_of_turn.unwrap_or(0);
    let convs: Vec<Conversation> = demos
        .iter()
        .map(|e| {
            let prompt = pre.chat_prompt(&[Message::user(request_text(&e.request))])?;
            let answer = GeneratedSentence {
                words: e.answer.clone(),
                log_prob: 0.0,
            }
            .text();
            let mut ids = prompt.clone();
            ids.extend(pre.encode_chat(&answer)?);
            ids.push(end);
            Ok(Conversation {
                ids,
                prompt_len: prompt.len(),
            })
        })
        .collect::<Result<_>>()?;
    let trainable = pre.model.params.add_lora(&cfg.lora, cfg.seed)?;
    let t = convs.iter().map(|c| c.ids.len() - 1).max().unwrap_or(1);
    let train: TrainConfig = TrainConfig {
        adamw: crate::gpt::optim::AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
        ..train_config(cfg.batch, t, cfg.lr, cfg.steps, cfg.seed)
    };
    let start = Instant::now();
    let log = run_steps(
        &mut pre.model,
        train,
        cfg.steps,
        &["loss", "tokens"],
        checkpointing,
        |tr, m, s| sft_step(tr, m, &convs, LossMask::Assistant, s),
        |s, _| progress("SFT through LoRA", s, cfg.steps),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let tokens: f64 = log.column("tokens").unwrap_or_default().iter().sum();
    let after = replies(pre, &grammar, &vocab, held_out)?;
    Ok(RealSft {
        before,
        after,
        log,
        tokens_per_s: tokens / seconds,
        trainable,
        positions: t,
        seconds,
    })
}
