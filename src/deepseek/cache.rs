//! What a generation cache keeps per token, for each kind of attention at one model width.
//!
//! Multi-head attention caches every head's key and value, `2 H d_h` numbers per token and
//! layer; grouped-query attention `2 G d_h` for `G` key/value groups, multi-query `2 d_h`.
//! MLA caches the latent `c^KV` and the shared RoPE key, `d_c + d_h^R`, and rebuilds
//! nothing at generation: the up-projections are absorbed ([`crate::gpt::mla`]).

use crate::gpt::GptConfig;

/// One row of the cache table.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheRow {
    pub attention: String,
    /// f32 numbers per token and layer.
    pub floats: usize,
    /// Bytes per token for the whole model (all layers, f32).
    pub bytes_per_token: usize,
    /// `floats` over multi-head attention's.
    pub vs_mha: f64,
}

// ANCHOR: cache_table
/// The cache per token of MHA, GQA (the config's key/value heads, when it groups them),
/// MQA and MLA (the config's, or [`GptConfig::mla_tiny`]) at the config's width, heads and
/// depth; and MHA with MLA's own head sizes (what the same attention would cache without
/// the latent: `H (d_h + d_h^R) + H d_v`).
pub fn cache_table(cfg: &GptConfig) -> Vec<CacheRow> {
    let (h, hs) = (cfg.n_heads, cfg.d_model / cfg.n_heads);
    let mla = cfg.mla.unwrap_or_else(GptConfig::mla_tiny);
    let mha = 2 * h * hs;
    let mut rows = vec![(format!("MHA ({h} heads of {hs})"), mha)];
    let groups = if cfg.mla.is_none() && cfg.n_kv_heads > 1 && cfg.n_kv_heads < h {
        cfg.n_kv_heads
    } else {
        (h / 2).max(1)
    };
    if groups > 1 && groups < h {
        rows.push((format!("GQA ({groups} key/value heads)"), 2 * groups * hs));
    }
    rows.push(("MQA (1 key/value head)".into(), 2 * hs));
    rows.push((
        format!(
            "MHA with MLA's heads ({h} x ({} + {}) keys, {h} x {} values)",
            mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim
        ),
        h * (mla.qk_nope_head_dim + mla.qk_rope_head_dim) + h * mla.v_head_dim,
    ));
    rows.push((
        format!(
            "MLA (latent {} + RoPE key {})",
            mla.kv_lora_rank, mla.qk_rope_head_dim
        ),
        mla.kv_lora_rank + mla.qk_rope_head_dim,
    ));
    rows.into_iter()
        .map(|(attention, floats)| CacheRow {
            attention,
            floats,
            bytes_per_token: floats * cfg.n_layers * std::mem::size_of::<f32>(),
            vs_mha: floats as f64 / mha as f64,
        })
        .collect()
}
// ANCHOR_END: cache_table

/// DeepSeek-V3's own sizes (its `config.json`): width 7168, 61 layers, 128 heads,
/// `qk_nope_head_dim` 128, `qk_rope_head_dim` 64, `v_head_dim` 128, `kv_lora_rank` 512,
/// `q_lora_rank` 1536. Only the shapes the cache table reads; no weights.
pub fn deepseek_v3_shape() -> GptConfig {
    GptConfig {
        vocab_size: 129_280,
        d_model: 7168,
        n_layers: 61,
        n_heads: 128,
        n_kv_heads: 128,
        context: 4096,
        mla: Some(crate::gpt::MlaConfig {
            q_lora_rank: Some(1536),
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
            rope_interleave: true,
        }),
        ..GptConfig::llama_tiny()
    }
}

/// The table as aligned text.
pub fn format_cache_table(rows: &[CacheRow]) -> String {
    let w = rows.iter().map(|r| r.attention.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<w$}  {:>9}  {:>14}  {:>7}\n",
        "attention", "per layer", "bytes/token", "vs MHA"
    );
    for r in rows {
        out += &format!(
            "{:<w$}  {:>9}  {:>14}  {:>6.3}x\n",
            r.attention, r.floats, r.bytes_per_token, r.vs_mha
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deepseek_v3_caches_71_times_less_than_its_mha() {
        let rows = cache_table(&deepseek_v3_shape());
        let get = |prefix: &str| {
            rows.iter()
                .find(|r| r.attention.starts_with(prefix))
                .unwrap()
        };
        assert_eq!(get("MLA").floats, 576);
        assert_eq!(get("MHA with").floats, 128 * 192 + 128 * 128);
        let ratio = get("MHA with").floats as f64 / get("MLA").floats as f64;
        assert!((ratio - 71.1).abs() < 0.1, "{ratio}");
        // llama-tiny's width: MHA 256, its GQA 128, MQA 64, MLA 64 + 16
        let tiny = cache_table(&GptConfig::llama_tiny());
        let floats: Vec<usize> = tiny.iter().map(|r| r.floats).collect();
        assert_eq!(floats, [256, 128, 64, 4 * 48 + 4 * 32, 80]);
        assert_eq!(tiny[4].bytes_per_token, 80 * 4 * 4);
    }
}
