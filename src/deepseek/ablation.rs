//! DeepSeek-V3's three ideas on the toy world, one at a time and together, against
//! llama-tiny: the same data, steps and learning rate, several seeds.

use crate::gpt::tour::{toy_world_run, ToyWorldConfig};
use crate::gpt::train::StepLog;
use crate::gpt::GptConfig;
use crate::Result;

// ANCHOR: variants
/// llama-tiny; with MLA; with DeepSeekMoE at equal active and at equal total parameters;
/// with MTP; with all three (`deepseek-tiny`). `base` is llama-tiny at the run's context.
pub fn variants(base: &GptConfig) -> Vec<(&'static str, GptConfig)> {
    let mla = GptConfig {
        mla: Some(GptConfig::mla_tiny()),
        n_kv_heads: base.n_heads,
        ..base.clone()
    };
    vec![
        ("llama-tiny", base.clone()),
        ("+ MLA", mla.clone()),
        (
            "+ MoE, equal active",
            GptConfig {
                moe: Some(GptConfig::moe_tiny()),
                ..base.clone()
            },
        ),
        (
            "+ MoE, equal total",
            GptConfig {
                moe: Some(GptConfig::moe_tiny_equal_total()),
                ..base.clone()
            },
        ),
        (
            "+ MTP",
            GptConfig {
                mtp: Some(GptConfig::mtp_tiny()),
                ..base.clone()
            },
        ),
        (
            "DeepSeek (all three)",
            GptConfig {
                moe: Some(GptConfig::moe_tiny()),
                mtp: Some(GptConfig::mtp_tiny()),
                ..mla
            },
        ),
    ]
}
// ANCHOR_END: variants

/// One variant's runs.
#[derive(Clone, Debug)]
pub struct AblationRow {
    pub name: String,
    /// Test cross-entropy (nats per word) of each seed's run.
    pub cross_entropy: Vec<f64>,
    /// The grammar's true cross-entropy on the same test sentences.
    pub true_cross_entropy: f64,
    /// Parameters trained (MTP's included), and used per token at inference.
    pub params: usize,
    pub active_params: usize,
    /// Cache numbers per token and layer, and the layers.
    pub cache_floats: usize,
    pub layers: usize,
    /// Training tokens per second of each run.
    pub tokens_per_s: Vec<f64>,
}

impl AblationRow {
    pub fn mean(&self) -> f64 {
        self.cross_entropy.iter().sum::<f64>() / self.cross_entropy.len() as f64
    }
    pub fn range(&self) -> (f64, f64) {
        let min = self
            .cross_entropy
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let max = self
            .cross_entropy
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }
    pub fn mean_tokens_per_s(&self) -> f64 {
        self.tokens_per_s.iter().sum::<f64>() / self.tokens_per_s.len() as f64
    }
}

// ANCHOR: ablation
/// Every variant of [`variants`] trained with `base`'s data and settings, once per seed
/// (the seed of the weights and of the batches). `on_step(variant, seed index, step)`.
pub fn ablation(
    base: &ToyWorldConfig,
    seeds: &[u64],
    mut on_step: impl FnMut(usize, usize, &StepLog) + Send,
) -> Result<Vec<AblationRow>> {
    let mut rows = Vec::new();
    for (v, (name, model)) in variants(&base.model).into_iter().enumerate() {
        let mut row: Option<AblationRow> = None;
        for (k, &seed) in seeds.iter().enumerate() {
            let config = ToyWorldConfig {
                model: model.clone(),
                seed,
                ..base.clone()
            };
            let run = toy_world_run(&config, |s| on_step(v, k, s))?;
            let cfg = &run.model.cfg;
            let r = row.get_or_insert_with(|| AblationRow {
                name: name.to_string(),
                cross_entropy: Vec::new(),
                true_cross_entropy: run.true_cross_entropy,
                params: cfg.n_params(),
                active_params: cfg.n_active_params(),
                cache_floats: cfg.cache_floats_per_token(),
                layers: cfg.n_layers,
                tokens_per_s: Vec::new(),
            });
            r.cross_entropy.push(run.test_cross_entropy);
            r.tokens_per_s.push(run.tokens_per_s);
        }
        rows.extend(row);
    }
    Ok(rows)
}
// ANCHOR_END: ablation

/// The table as aligned text: mean test cross-entropy with the seeds' range, its excess
/// over the grammar's, parameters, cache and speed.
pub fn format_table(rows: &[AblationRow]) -> String {
    let mut out = format!(
        "{:<22} {:>8} {:>17} {:>7} {:>9} {:>9} {:>6} {:>9}\n",
        "model", "CE", "seeds (min-max)", "excess", "params", "active", "cache", "tokens/s"
    );
    for r in rows {
        let (lo, hi) = r.range();
        out += &format!(
            "{:<22} {:>8.4} {:>8.4}-{:<8.4} {:>7.4} {:>9} {:>9} {:>6} {:>9.0}\n",
            r.name,
            r.mean(),
            lo,
            hi,
            r.mean() - r.true_cross_entropy,
            r.params,
            r.active_params,
            r.cache_floats,
            r.mean_tokens_per_s()
        );
    }
    if let Some(r) = rows.first() {
        out += &format!(
            "(the grammar's true cross-entropy: {:.4} nats/word; {} seed(s) per row; cache: f32 numbers per token and layer, x {} for bytes per token)\n",
            r.true_cross_entropy,
            r.cross_entropy.len(),
            4 * r.layers
        );
    }
    out
}

/// The rows as CSV (one line per run).
pub fn to_csv(rows: &[AblationRow]) -> String {
    let mut out = String::from(
        "model,seed_index,cross_entropy,true_cross_entropy,params,active_params,cache_floats,tokens_per_s\n",
    );
    for r in rows {
        for (k, (h, tps)) in r.cross_entropy.iter().zip(&r.tokens_per_s).enumerate() {
            out += &format!(
                "{},{k},{h},{},{},{},{},{tps}\n",
                r.name, r.true_cross_entropy, r.params, r.active_params, r.cache_floats
            );
        }
    }
    out
}
