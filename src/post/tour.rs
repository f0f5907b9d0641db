//! Chapter 8's step of the tour: a base model pre-trained on the toy world, SFT on the chat
//! task, then DPO on pairs the judge labelled; the judge's accuracy after each.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::pipeline::{self, PipelineConfig};
use super::report::write_report;
use super::task::ChatVocab;
use crate::data::grammar::Grammar;
use crate::report::{StepReport, TourSize};
use crate::{progress, Result};

pub fn chapter_8(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch08");
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::Write {
        path: dir.clone(),
        source: e,
    })?;
    let cfg = size.pick(PipelineConfig::full(), PipelineConfig::quick());
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let bar = progress::bar(cfg.base_steps as u64, "pre-training the base model");
    let (base, base_speed) = pipeline::pretrain_base(&cfg, &vocab, &grammar, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let bar = progress::bar(1, "post-training");
    let run = pipeline::run_seed(&base, &cfg, 1, &mut |stage, s, n| {
        bar.set_length(n as u64);
        bar.set_position(s as u64 + 1);
        bar.set_message(stage.to_string());
    })?;
    bar.finish_and_clear();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "A base model ({} parameters) pre-trained on toy-world sentences, then taught the chat task \"write about the queen with castle\"; every model scored by the judge on {} held-out requests (seed 1; `llm post table` runs three seeds):",
        base.cfg.n_params(),
        cfg.eval_requests
    );
    text += &pipeline::table(std::slice::from_ref(&run));
    let p = &run.pair_stats;
    let _ = writeln!(
        text,
        "preference pairs: {} of {} requests had right and wrong answers among {} samples; the reward model ranks {:.1}% of {} held-out pairs as the judge does",
        p.pairs,
        p.requests,
        cfg.pair_samples,
        100.0 * run.rm_accuracy,
        run.rm_test_pairs
    );
    let files = write_report(&dir, &[run], &[], &[], base_speed)?;
    Ok(StepReport {
        title: "Chapter 8: post-training".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}
