//! The chapter's measurements beyond the main table: SFT with each loss mask, RLHF at
//! several KL coefficients (where the reward model and the judge part ways), and the
//! charts the book shows. `llm post table` writes them all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::pipeline::{
    eval_requests, rlhf, score_method, sft, table, MethodScore, PipelineConfig, Progress, SeedRun,
};
use super::sft::{conversations, positions_needed};
use super::task::{examples, requests, ChatVocab, LossMask};
use crate::data::grammar::Grammar;
use crate::gpt::Gpt;
use crate::plot::{LineChart, Series};
use crate::Result;

use super::run::PostLog;

/// SFT from `base` with each of the three loss masks, scored by the judge.
pub fn mask_comparison(
    base: &Gpt,
    cfg: &PipelineConfig,
    seed: u64,
    progress: Progress,
) -> Result<Vec<MethodScore>> {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let held_out = eval_requests(&grammar, cfg.eval_requests);
    let convs = conversations(&vocab, &examples(&grammar, cfg.sft_examples, 10 + seed))?;
    let t = positions_needed(&convs).max(36).min(base.cfg.context);
    let mut out = Vec::new();
    for mask in [
        LossMask::Assistant,
        LossMask::All,
        LossMask::AssistantContent,
    ] {
        let (m, _, speed) = sft(base, &convs, mask, cfg, seed, t, None, progress)?;
        out.push(score_method(
            &format!("SFT, loss on {}", mask.name()),
            &m,
            None,
            &grammar,
            &vocab,
            &held_out,
            speed,
        )?);
    }
    Ok(out)
}

/// One RLHF run per KL coefficient from the same SFT model and reward model: each run's log
/// (reward-model score and judge accuracy of its samples by step) and final scores.
pub fn kl_sweep(
    run: &SeedRun,
    cfg: &PipelineConfig,
    coefs: &[f64],
    progress: Progress,
) -> Result<Vec<(f64, PostLog, MethodScore)>> {
    let grammar = Grammar::toy_world();
    let vocab = ChatVocab::new(&grammar);
    let held_out = eval_requests(&grammar, cfg.eval_requests);
    let requests = requests(&grammar, cfg.pair_requests, 50 + run.seed);
    let t = run.sft.cfg.context.min(36);
    let mut out = Vec::new();
    for &kl_coef in coefs {
        let rl = super::rlhf::RlhfConfig {
            kl_coef,
            ..cfg.rlhf
        };
        let (policy, log, speed) = rlhf(
            &run.sft, &run.rm, &requests, cfg, rl, run.seed, t, None, progress,
        )?;
        let score = score_method(
            &format!("RLHF, β_KL = {kl_coef}"),
            &policy,
            Some(&run.sft),
            &grammar,
            &vocab,
            &held_out,
            speed,
        )?;
        out.push((kl_coef, log, score));
    }
    Ok(out)
}

/// A column of a log as chart points, by step, smoothed over `window` steps.
fn smoothed(log: &PostLog, column: &str, window: usize) -> Vec<(f64, f64)> {
    let steps = log.column("step").unwrap_or_default();
    let values = log.column(column).unwrap_or_default();
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(window - 1);
            let w = &values[lo..=i];
            (steps[i], w.iter().sum::<f64>() / w.len() as f64)
        })
        .collect()
}

/// The KL sweep's chart: reward-model score and judge accuracy of the samples, by step.
pub fn kl_chart(sweep: &[(f64, PostLog, MethodScore)]) -> LineChart {
    let mut chart = LineChart::new(
        "RLHF: what the reward model says and what the judge says",
        "step",
        "mean over the last 10 steps",
    );
    for (coef, log, _) in sweep {
        chart = chart
            .series(Series::new(
                format!("reward-model score, β_KL {coef}"),
                smoothed(log, "reward", 10),
            ))
            .series(Series::new(
                format!("judge accuracy, β_KL {coef}"),
                smoothed(log, "judge accuracy", 10),
            ));
    }
    chart
}

/// DPO's implied rewards of the chosen and rejected answers, by step, TRL's and Llama 3's.
pub fn dpo_chart(run: &SeedRun) -> LineChart {
    let mut chart = LineChart::new(
        "DPO: implied rewards β (log π − log π_ref) of the training pairs",
        "step",
        "mean over the last 10 steps",
    );
    for (name, log) in [("TRL", &run.dpo_log), ("Llama 3", &run.dpo_llama3_log)] {
        chart = chart
            .series(Series::new(
                format!("{name}: chosen"),
                smoothed(log, "chosen reward", 10),
            ))
            .series(Series::new(
                format!("{name}: rejected"),
                smoothed(log, "rejected reward", 10),
            ));
    }
    chart
}

/// Rows of [`MethodScore`]s as a table (one run each).
pub fn score_rows(title: &str, scores: &[MethodScore]) -> String {
    let mut out = format!("{title}\n\n");
    out += &super::pipeline::score_table(&[scores.to_vec()]);
    out
}

/// Everything `llm post table` writes into `dir`: `table.md` and the charts.
pub fn write_report(
    dir: &Path,
    runs: &[SeedRun],
    masks: &[MethodScore],
    sweep: &[(f64, PostLog, MethodScore)],
    base_tokens_per_s: f64,
) -> Result<Vec<PathBuf>> {
    let mut md = String::new();
    let _ = writeln!(md, "# Chapter 8, measured\n");
    let seeds: Vec<String> = runs.iter().map(|r| r.seed.to_string()).collect();
    let _ = writeln!(
        md,
        "Every model scored by the judge on the same held-out requests; mean over seeds {} (range in brackets). The base model pre-trained at {base_tokens_per_s:.0} tokens/s.\n",
        seeds.join(", ")
    );
    md += &table(runs);
    let _ = writeln!(md, "\n| seed | requests | all answers right | all wrong | pairs | reward model accuracy, held-out pairs |\n|---|---|---|---|---|---|");
    for r in runs {
        let p = &r.pair_stats;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1}% of {} |",
            r.seed,
            p.requests,
            p.all_correct,
            p.all_wrong,
            p.pairs,
            100.0 * r.rm_accuracy,
            r.rm_test_pairs
        );
    }
    if !masks.is_empty() {
        md += "\n";
        md += &score_rows("SFT's loss masks (seed of the first run):", masks);
    }
    if !sweep.is_empty() {
        md += "\n";
        let kl_scores: Vec<MethodScore> = sweep.iter().map(|(_, _, s)| s.clone()).collect();
        md += &score_rows(
            "RLHF at several KL coefficients (seed of the first run):",
            &kl_scores,
        );
    }
    let mut files = Vec::new();
    let table_path = dir.join("table.md");
    crate::data::write_atomic(&table_path, md.as_bytes())?;
    files.push(table_path);
    let mut save_log = |name: String, log: &PostLog| -> Result<()> {
        let p = dir.join(name);
        crate::data::write_atomic(&p, log.to_csv().as_bytes())?;
        files.push(p);
        Ok(())
    };
    if let Some(first) = runs.first() {
        let s = first.seed;
        save_log(format!("seed{s}_sft_log.csv"), &first.sft_log)?;
        save_log(format!("seed{s}_reward_model_log.csv"), &first.rm_log)?;
        save_log(format!("seed{s}_rlhf_log.csv"), &first.rlhf_log)?;
        save_log(format!("seed{s}_dpo_log.csv"), &first.dpo_log)?;
        save_log(format!("seed{s}_dpo_llama3_log.csv"), &first.dpo_llama3_log)?;
    }
    for (coef, log, _) in sweep {
        save_log(format!("rlhf_kl_{coef}_log.csv"), log)?;
    }
    if let Some(first) = runs.first() {
        let p = dir.join("dpo_rewards.svg");
        dpo_chart(first).save_svg(&p)?;
        files.push(p);
    }
    if !sweep.is_empty() {
        let p = dir.join("rlhf_kl.svg");
        kl_chart(sweep).save_svg(&p)?;
        files.push(p);
    }
    Ok(files)
}
