//! The chapter's rank sweep: chapter 4's toy-world model fine-tuned to the shifted grammar
//! in twelve ways, each scored against both grammars' true entropies.
//!
//! The ways ([`plans`]): every tensor (a full fine-tune); LoRA at r = 1, 2, 4, 8, 16 on
//! `q_proj` and `v_proj` (PEFT's Llama default) and on all seven projections; the output
//! head alone. All train on the same shifted-grammar ids for the same steps and batch; LoRA
//! at learning rate 1e-2 ([`FinetuneConfig::new`]), the full fine-tune and the head at the
//! base's own 3e-3, since 1e-2 on every weight is far above what the base was trained with.
//! For each: the trainable values, AdamW's state, the time per step, the test cross-entropy
//! on the target grammar (what was learnt) and on the source (what was forgotten), and,
//! when each runs in a process of its own (`llm lora sweep` does), the peak RSS.

use std::fmt::Write as _;
use std::path::Path;

use super::finetune::{finetune, FinetuneConfig, HeldOut};
use super::tour::{corpora, sizes};
use crate::data::grammar::true_cross_entropy;
use crate::gpt::checkpoint::save;
use crate::gpt::lora::{LoraConfig, TARGETS};
use crate::gpt::run::{Run, RunOptions};
use crate::gpt::tour::chapter_4_model;
use crate::gpt::tour::{sentence_cross_entropy, tour_config, WordVocab};
use crate::gpt::Gpt;
use crate::plot::ScatterChart;
use crate::report::TourSize;
use crate::{Error, Result};

/// What a fine-tune of the sweep trains.
#[derive(Clone, Debug, PartialEq)]
pub enum Trains {
    /// Every tensor.
    Full,
    /// Adapters of this config, the base frozen.
    Lora(LoraConfig),
    /// `lm_head.weight` alone.
    Head,
}

/// One fine-tune of the sweep: a short name (for the command line and the chart) and what
/// it trains.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub trains: Trains,
}

/// LoRA at rank `r` with alpha `2 r` (s = 2, as the tour's adapters).
fn lora(rank: usize, targets: &[&str]) -> LoraConfig {
    LoraConfig::new(rank, 2.0 * rank as f32, targets)
}

/// The twelve fine-tunes: `full`, `qv-r1` ... `qv-r16`, `all-r1` ... `all-r16`, `head`.
pub fn plans() -> Vec<Plan> {
    let mut plans = vec![Plan {
        name: "full".into(),
        trains: Trains::Full,
    }];
    for (prefix, targets) in [("qv", &["q_proj", "v_proj"][..]), ("all", &TARGETS[..])] {
        for r in [1, 2, 4, 8, 16] {
            plans.push(Plan {
                name: format!("{prefix}-r{r}"),
                trains: Trains::Lora(lora(r, targets)),
            });
        }
    }
    plans.push(Plan {
        name: "head".into(),
        trains: Trains::Head,
    });
    plans
}

/// The plan called `name`, or an error listing them.
pub fn plan(name: &str) -> Result<Plan> {
    plans().into_iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<String> = plans().into_iter().map(|p| p.name).collect();
        Error::InvalidArgument(format!(
            "no fine-tune called {name:?} in the sweep: {}",
            names.join(", ")
        ))
    })
}

/// The sweep's data: chapter 4's model and the tour's shifted-grammar corpora (its full
/// size), encoded with the model's word vocabulary.
pub struct SweepData {
    pub base: Gpt,
    pub vocab: WordVocab,
    pub train_ids: Vec<u32>,
    pub held_ids: Vec<u32>,
    pub target_ids: Vec<u32>,
    pub source_ids: Vec<u32>,
    /// The true cross-entropy of the target and the source test sentences, nats per word.
    pub truth: (f64, f64),
    /// Fine-tuning steps.
    pub steps: usize,
}

impl SweepData {
    /// Chapter 4's model from `dir/ch04/model` (trained, and saved there, when it is not
    /// there yet: minutes), and the corpora.
    pub fn load_or_train(dir: &Path, on_train: impl FnOnce()) -> Result<SweepData> {
        let config = tour_config(TourSize::Full);
        let model_dir = dir.join("ch04").join("model");
        let had = crate::gpt::checkpoint::load_model(&model_dir).is_ok();
        if !had {
            on_train();
        }
        let (base, vocab) = chapter_4_model(dir, &config)?;
        if !had {
            save(&model_dir, &base, None)?;
        }
        let s = sizes(TourSize::Full);
        let [train, heldout, target_test, source_test] = corpora(&s);
        let [train_ids, held_ids, target_ids, source_ids] =
            [&train, &heldout, &target_test, &source_test].map(|c| vocab.encode(c));
        Ok(SweepData {
            base,
            vocab,
            train_ids,
            held_ids,
            target_ids,
            source_ids,
            truth: (
                true_cross_entropy(&target_test),
                true_cross_entropy(&source_test),
            ),
            steps: s.steps,
        })
    }

    /// Test cross-entropy of `model` on the target and the source sentences.
    pub fn score(&self, model: &Gpt) -> Result<(f64, f64)> {
        Ok((
            sentence_cross_entropy(model, &self.target_ids)?,
            sentence_cross_entropy(model, &self.source_ids)?,
        ))
    }
}

/// What one fine-tune of the sweep measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub name: String,
    pub trainable: usize,
    /// AdamW's two moments, 8 bytes per trainable value.
    pub optimizer_bytes: usize,
    /// Milliseconds per training step (forward, backward, AdamW), the median of the run's.
    pub step_ms: f64,
    /// Test cross-entropy, nats per word, on the target and on the source grammar.
    pub target: f64,
    pub source: f64,
    /// The process's peak resident set (VmHWM), KiB, when measured.
    pub peak_rss_kib: Option<u64>,
}

/// The median of `xs` (not empty).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs `plan` on `data` and scores it (the peak RSS is left to the caller).
pub fn run_plan(plan: &Plan, data: &SweepData) -> Result<Outcome> {
    let steps = data.steps;
    let mut seconds = Vec::with_capacity(steps);
    let mut last = std::time::Instant::now();
    let mut on_step = |_: &crate::gpt::train::StepLog, _: Option<f32>| {
        seconds.push(last.elapsed().as_secs_f64());
        last = std::time::Instant::now();
    };
    let (model, trainable, state) = match &plan.trains {
        Trains::Lora(l) => {
            let cfg = FinetuneConfig::new(l.clone(), steps);
            let done = finetune(
                data.base.clone(),
                &cfg,
                &data.train_ids,
                HeldOut::Ids(&data.held_ids),
                &mut on_step,
            )?;
            (done.model, done.trainable, done.trainable)
        }
        Trains::Full | Trains::Head => {
            let mut model = data.base.clone();
            let trainable = match plan.trains {
                Trains::Head => model.params.set_trainable(|n| n == "lm_head.weight"),
                _ => model.params.set_trainable(|_| true),
            };
            let mut cfg = FinetuneConfig::new(lora(1, &["q_proj"]), steps);
            cfg.lr = 3e-3;
            let train = cfg.train_config(model.cfg.context);
            let mut run = Run::from_model(model, train, 0.0, &data.train_ids)?;
            let options = RunOptions::default();
            run.train(&data.train_ids, &data.held_ids, &options, &mut on_step)?;
            // as `finetune` does for the LoRA rows: the same final held-out evaluation, so
            // that every row's peak RSS covers the same work
            let done = run.finish(&data.held_ids, &options)?;
            (done.model, trainable, trainable)
        }
    };
    let (target, source) = data.score(&model)?;
    Ok(Outcome {
        name: plan.name.clone(),
        trainable,
        optimizer_bytes: 2 * std::mem::size_of::<f32>() * state,
        step_ms: 1e3 * median(seconds),
        target,
        source,
        peak_rss_kib: None,
    })
}

/// This process's peak resident set, KiB (`VmHWM` in `/proc/self/status`), on Linux.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Outcome {
    /// One line of JSON, as a sweep's child process prints it.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "name": self.name,
            "trainable": self.trainable,
            "optimizer_bytes": self.optimizer_bytes,
            "step_ms": self.step_ms,
            "target": self.target,
            "source": self.source,
            "peak_rss_kib": self.peak_rss_kib,
        })
        .to_string()
    }

    /// Reads [`Outcome::to_json`]'s line.
    pub fn from_json(line: &str) -> Result<Outcome> {
        let bad = |m: &str| Error::InvalidArgument(format!("a sweep result: {m}: {line}"));
        let j: serde_json::Value = serde_json::from_str(line).map_err(|_| bad("not JSON"))?;
        let num = |k: &str| j[k].as_f64().ok_or_else(|| bad(&format!("{k} is missing")));
        Ok(Outcome {
            name: j["name"]
                .as_str()
                .ok_or_else(|| bad("name is missing"))?
                .into(),
            trainable: num("trainable")? as usize,
            optimizer_bytes: num("optimizer_bytes")? as usize,
            step_ms: num("step_ms")?,
            target: num("target")?,
            source: num("source")?,
            peak_rss_kib: j["peak_rss_kib"].as_u64(),
        })
    }
}

/// A readable name: "LoRA r = 4, q v", "full fine-tune", "head only".
pub fn label(name: &str) -> String {
    match name {
        "full" => "full fine-tune".into(),
        "head" => "head only".into(),
        _ => match plan(name).map(|p| p.trains) {
            Ok(Trains::Lora(l)) if l.targets.len() == 2 => format!("LoRA r = {}, q v", l.rank),
            Ok(Trains::Lora(l)) => format!("LoRA r = {}, all seven", l.rank),
            _ => name.into(),
        },
    }
}

/// `1234567` as `1,234,567`.
fn commas(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The sweep as a Markdown table: the base first, then each fine-tune, then the truth.
pub fn table(before: (f64, f64), truth: (f64, f64), outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "| fine-tune | trainable values | AdamW state | peak RSS | ms per step | target (shifted) | source (toy world) |\n|---|---|---|---|---|---|---|\n",
    );
    let _ = writeln!(
        t,
        "| none (chapter 4's model) | 0 | | | | {:.3} | {:.3} |",
        before.0, before.1
    );
    for o in outcomes {
        let rss = o
            .peak_rss_kib
            .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let _ = writeln!(
            t,
            "| {} | {} | {:.1} KiB | {rss} | {:.1} | {:.3} | {:.3} |",
            label(&o.name),
            commas(o.trainable),
            o.optimizer_bytes as f64 / 1024.0,
            o.step_ms,
            o.target,
            o.source
        );
    }
    let _ = writeln!(
        t,
        "| the true entropy | | | | | {:.3} | {:.3} |",
        truth.0, truth.1
    );
    t
}

/// Test cross-entropy against the number of trainable values (log scale), the target's
/// and the source's, with the base and the truth named in the title.
pub fn chart(before: (f64, f64), truth: (f64, f64), outcomes: &[Outcome]) -> ScatterChart {
    let short = |name: &str| match name {
        "full" | "head" => name.to_string(),
        n => n.replace("-r", " r"),
    };
    let point = |o: &Outcome, y: f64| ((o.trainable as f64).log10(), y);
    ScatterChart::new(
        format!(
            "Fine-tunes to the shifted toy world (before: {:.3} / {:.3}; true: {:.3} / {:.3})",
            before.0, before.1, truth.0, truth.1
        ),
        "log10 of the trainable values",
        "test cross-entropy (nats/word)",
    )
    .group(
        "target (shifted grammar): learnt",
        outcomes
            .iter()
            .map(|o| (short(&o.name), point(o, o.target))),
    )
    .group(
        "source (toy world): forgotten",
        outcomes.iter().map(|o| (String::new(), point(o, o.source))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plans_are_the_issues_twelve() {
        let names: Vec<String> = plans().into_iter().map(|p| p.name).collect();
        assert_eq!(names.len(), 12);
        assert_eq!(names[0], "full");
        assert_eq!(names[11], "head");
        assert!(plan("qv-r8").is_ok() && plan("all-r16").is_ok());
        assert!(plan("qv-r3").unwrap_err().to_string().contains("qv-r1"));
        assert_eq!(label("qv-r4"), "LoRA r = 4, q v");
        assert_eq!(label("all-r2"), "LoRA r = 2, all seven");
    }

    #[test]
    fn outcomes_read_back_and_tabulate() {
        let o = Outcome {
            name: "all-r2".into(),
            trainable: 18_496,
            optimizer_bytes: 8 * 18_496,
            step_ms: 12.5,
            target: 1.75,
            source: 1.8,
            peak_rss_kib: Some(40_960),
        };
        assert_eq!(Outcome::from_json(&o.to_json()).unwrap(), o);
        assert!(Outcome::from_json("{}").is_err());
        let t = table((2.0, 1.9), (1.6, 1.7), std::slice::from_ref(&o));
        assert!(
            t.contains(
                "| LoRA r = 2, all seven | 18,496 | 144.5 KiB | 40.0 MiB | 12.5 | 1.750 | 1.800 |"
            ),
            "{t}"
        );
        assert!(chart((2.0, 1.9), (1.6, 1.7), &[o]).to_svg_string().is_ok());
    }
}
