//! Chapter 9's step of the tour: the cache each kind of attention keeps, then llama-tiny
//! and deepseek-tiny trained on the toy world side by side, deepseek-tiny's expert loads
//! under auxiliary-loss-free balancing, and its MTP depth drafting tokens.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::cache::{cache_table, deepseek_v3_shape, format_cache_table};
use super::experts::{balance_run, load_chart, max_violation};
use super::speculative::speculative_greedy;
use crate::gpt::tour::{toy_world_run, ToyWorldConfig, END};
use crate::gpt::GptConfig;
use crate::report::{StepReport, TourSize};
use crate::{progress, Result};

/// The runs' settings: 300 steps of chapter 4's toy-world run, or 10 steps on a tenth of
/// the sentences for [`TourSize::Quick`].
pub fn tour_config(size: TourSize) -> ToyWorldConfig {
    match size {
        TourSize::Full => ToyWorldConfig::llama_tiny(300),
        TourSize::Quick => ToyWorldConfig {
            train: (2_000, 1),
            heldout: (200, 2),
            test: (500, 3),
            ..ToyWorldConfig::llama_tiny(10)
        },
    }
}

pub fn chapter_9(out_dir: &Path, size: TourSize) -> Result<StepReport> {
    let start = Instant::now();
    let dir = out_dir.join("ch09");
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::Write {
        path: dir.clone(),
        source: e,
    })?;
    let base = tour_config(size);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Cache per token at llama-tiny's width (4 layers, f32):\n{}",
        format_cache_table(&cache_table(&base.model))
    );
    let v3 = cache_table(&deepseek_v3_shape());
    let (mha, mla) = (&v3[3], &v3[4]);
    let _ = writeln!(
        text,
        "DeepSeek-V3: {} numbers per token and layer with MLA, {} for the same heads without the latent ({:.0}x)\n",
        mla.floats,
        mha.floats,
        mha.floats as f64 / mla.floats as f64
    );
    let bar = progress::bar(base.steps as u64, "training llama-tiny");
    let llama = toy_world_run(&base, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let deepseek = GptConfig {
        context: base.model.context,
        ..GptConfig::deepseek_tiny()
    };
    let gamma = deepseek.moe.map_or(0.0, |m| m.bias_update_speed);
    let bar = progress::bar(base.steps as u64, "training deepseek-tiny");
    let ds = balance_run(&base, &deepseek, gamma, |_| bar.inc(1))?;
    bar.finish_and_clear();
    let cfg = &ds.model.cfg;
    let _ = writeln!(
        text,
        "{} steps of 16 x 64 tokens on the toy world (the grammar's true cross-entropy {:.3} nats/word):",
        base.steps, llama.true_cross_entropy
    );
    let _ = writeln!(
        text,
        "  llama-tiny     {:>9} parameters, test cross-entropy {:.3}",
        llama.model.cfg.n_params(),
        llama.test_cross_entropy
    );
    let _ = writeln!(
        text,
        "  deepseek-tiny  {:>9} parameters ({} active per token, MTP depth {}), test cross-entropy {:.3}",
        cfg.n_params(),
        cfg.n_active_params(),
        cfg.n_mtp_params(),
        ds.test_cross_entropy
    );
    let moe_blocks: Vec<usize> = (0..cfg.n_layers).filter(|&l| cfg.is_moe_layer(l)).collect();
    if let Some(last) = ds.loads.last() {
        for (b, load) in last.iter().enumerate() {
            let block = match moe_blocks.get(b) {
                Some(l) => format!("block {l}"),
                None => "the MTP depth".into(),
            };
            let _ = writeln!(
                text,
                "  last step's tokens per routed expert, {block}: {load:?} (MaxVio {:.2})",
                max_violation(load)
            );
        }
    }
    load_chart(&[("deepseek-tiny, γ = 0.001".to_string(), &ds)], 10)
        .save_svg(dir.join("load.svg"))?;
    // the MTP depth drafts the token after next; the main model checks it
    let prompts: Vec<Vec<u32>> = ds
        .test_ids
        .split(|&id| id == END)
        .filter(|s| s.len() >= 2)
        .take(size.pick(10, 2))
        .map(|s| vec![END, s[0], s[1]])
        .collect();
    let (mut drafts, mut accepted) = (0, 0);
    for p in &prompts {
        let (_, s) = speculative_greedy(&ds.model, p, 40)?;
        drafts += s.drafts;
        accepted += s.accepted;
    }
    let _ = writeln!(
        text,
        "  MTP drafts accepted by the main model in greedy decoding: {accepted}/{drafts} ({:.0}%); `llm deepseek speculate` times it",
        100.0 * accepted as f64 / drafts.max(1) as f64
    );
    Ok(StepReport {
        title: "Chapter 9: DeepSeek-V3's ideas".into(),
        text,
        files: vec![dir.join("load.svg")],
        elapsed: start.elapsed(),
    })
}
