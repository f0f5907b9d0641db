//! Chapter 5 on the toy world: the tour's chapter 4 model, pretrained on the first
//! grammar, fine-tuned through rank-4 adapters on `q_proj` and `v_proj` to the shifted
//! grammar ([`Grammar::toy_world_shifted`]), whose changes are known. Both grammars'
//! entropies are known too, so the held-out cross-entropy before and after is read against
//! a floor on the target (what was learned) and on the source (what was forgotten).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::finetune::{finetune, FinetuneConfig, HeldOut};
use crate::data::grammar::{true_cross_entropy, GeneratedSentence, Grammar};
use crate::data::write_atomic;
use crate::gpt::lora::LoraConfig;
use crate::gpt::tour::{chapter_4_model, sentence_cross_entropy, tour_config};
use crate::gpt::Gpt;
use crate::plot::LineChart;
use crate::report::{StepReport, TourSize};
use crate::{progress, Result};

/// The tour's adapters: PEFT's Llama default targets, rank 4, alpha 8 (s = 2).
pub fn tour_lora() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        rslora: false,
        targets: vec!["q_proj".into(), "v_proj".into()],
        dropout: 0.0,
    }
}

/// Sentences and seeds of the shifted grammar's training, held-out and test corpora, and
/// of the first grammar's test corpus (the forgetting), with the fine-tune's steps.
pub(crate) struct Sizes {
    pub(crate) train: (usize, u64),
    pub(crate) heldout: (usize, u64),
    pub(crate) target_test: (usize, u64),
    pub(crate) source_test: (usize, u64),
    pub(crate) steps: usize,
}

pub(crate) fn sizes(size: TourSize) -> Sizes {
    size.pick(
        Sizes {
            train: (5_000, 11),
            heldout: (500, 12),
            target_test: (1_500, 13),
            source_test: (1_500, 3),
            steps: 150,
        },
        Sizes {
            train: (500, 11),
            heldout: (100, 12),
            target_test: (200, 13),
            source_test: (200, 3),
            steps: 10,
        },
    )
}

/// The fine-tune's sentences at `s`: the shifted grammar's training, held-out and test
/// corpora, and the first grammar's test corpus (what is forgotten), in that order.
pub(crate) fn corpora(s: &Sizes) -> [Vec<GeneratedSentence>; 4] {
    let (first, shifted) = (Grammar::toy_world(), Grammar::toy_world_shifted());
    let [train, heldout, target_test] =
        [s.train, s.heldout, s.target_test].map(|(n, seed)| shifted.generate(n, seed));
    let source_test = first.generate(s.source_test.0, s.source_test.1);
    [train, heldout, target_test, source_test]
}

/// Chapter 5's step of the tour: the fine-tune, its cross-entropies against both
/// grammars' true entropies, and `out/ch05/{loss.svg,cross_entropy.csv,adapter/}`.
pub fn chapter_5(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch05");
    let (base, vocab) = chapter_4_model(out_dir, &tour_config(size))?;
    let s = sizes(size);
    let [train, heldout, target_test, source_test] = corpora(&s);
    let [train_ids, held_ids, target_ids, source_ids] =
        [&train, &heldout, &target_test, &source_test].map(|c| vocab.encode(c));
    let score = |model: &Gpt| -> Result<(f64, f64)> {
        Ok((
            sentence_cross_entropy(model, &target_ids)?,
            sentence_cross_entropy(model, &source_ids)?,
        ))
    };
    let before = score(&base)?;

    let lora = tour_lora();
    let mut cfg = FinetuneConfig::new(lora.clone(), s.steps);
    cfg.eval_every = (s.steps / 10).max(1);
    let bar = progress::bar(s.steps as u64, "LoRA fine-tune");
    let done = finetune(
        base.clone(),
        &cfg,
        &train_ids,
        HeldOut::Ids(&held_ids),
        |step, _| {
            bar.set_message(format!("LoRA fine-tune, loss {:.3}", step.loss));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let after = score(&done.model)?;
    let truth = (
        true_cross_entropy(&target_test),
        true_cross_entropy(&source_test),
    );

    let n_params = base.cfg.n_params();
    let full_state = 3 * std::mem::size_of::<f32>() * n_params;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "LoRA r = {} (alpha {}, s = {}) on {}: {} trainable values of {} ({:.2}%), training state {:.0} KiB (a full fine-tune: {:.0} KiB); {} steps of {} x {} tokens on the shifted grammar: {:.0} tokens/s",
        lora.rank,
        lora.alpha,
        lora.scale(),
        lora.targets.join(", "),
        done.trainable,
        n_params,
        100.0 * done.trainable as f64 / n_params as f64,
        done.state_bytes as f64 / 1024.0,
        full_state as f64 / 1024.0,
        s.steps,
        cfg.batch,
        base.cfg.context,
        done.timing.tokens_per_s(),
    );
    let rows = [
        ("the grammars' true entropy", truth),
        ("chapter 4's model (before)", before),
        ("after the LoRA fine-tune", after),
    ];
    let _ = writeln!(
        text,
        "  test cross-entropy, nats/word      shifted (target)   toy world (source, forgetting)"
    );
    for (name, (t, src)) in rows {
        let _ = writeln!(text, "    {name:<30} {t:>8.3}           {src:>8.3}");
    }
    let _ = writeln!(
        text,
        "  gap to the truth: target {:.3} -> {:.3}, source {:.3} -> {:.3} (the grammars' exact entropies: shifted {:.3}, toy world {:.3})",
        before.0 - truth.0,
        after.0 - truth.0,
        before.1 - truth.1,
        after.1 - truth.1,
        Grammar::toy_world_shifted().entropy_per_token(),
        Grammar::toy_world().entropy_per_token(),
    );
    let _ = writeln!(
        text,
        "  chapter 5 took {:.1} s ({:.1} s of fine-tuning)",
        start.elapsed().as_secs_f64(),
        done.timing.seconds
    );

    let mut files: Vec<PathBuf> = Vec::new();
    let mut csv = String::from("model,target_nats_per_word,source_nats_per_word\n");
    for (name, (t, src)) in rows {
        let _ = writeln!(csv, "{name},{t:.6},{src:.6}");
    }
    let table = dir.join("cross_entropy.csv");
    write_atomic(&table, csv.as_bytes())?;
    files.push(table);
    let mut chart = LineChart::new(
        "LoRA fine-tune of llama-tiny to the shifted toy world",
        "step",
        "cross-entropy (nats/word)",
    )
    .hline(
        format!("the shifted grammar's true entropy {:.3}", truth.0),
        truth.0,
    )
    .hline(format!("before the fine-tune {:.3}", before.0), before.0);
    for series in done.log.series("LoRA r = 4", (s.steps / 50).max(1)) {
        chart = chart.series(series);
    }
    let svg = dir.join("loss.svg");
    chart.save_svg(&svg)?;
    files.push(svg);
    let adapter = dir.join("adapter");
    // PEFT reads base_model_name_or_path from where it runs: the tour's own path
    let base_dir = out_dir.join("ch04").join("model");
    done.save(&adapter, &base_dir.display().to_string())?;
    files.push(adapter);
    Ok(StepReport {
        title: "Chapter 5: LoRA".into(),
        text,
        files,
        elapsed: start.elapsed(),
    })
}
