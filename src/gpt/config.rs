//! One configuration for both architectures. Each switch is one idea of the chapter:
//! the normalisation ([`Norm`]), how positions enter ([`Positions`]), how many key/value
//! heads the attention shares ([`GptConfig::n_kv_heads`]), the MLP ([`Mlp`]) and whether
//! the output head reuses the token embedding ([`GptConfig::tied_head`]).
//!
//! ```
//! use llm_lessons::gpt::GptConfig;
//! let cfg = GptConfig::llama_tiny();
//! cfg.validate().unwrap();
//! assert_eq!(cfg.head_dim(), 32); // d_model / n_heads = 128 / 4
//! assert_eq!(cfg.n_rep(), 2); // each key/value head serves two query heads
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

// ANCHOR: switches
/// How each block normalises its input.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Norm {
    /// GPT-2: `y = (x - mean(x)) / sqrt(var(x) + eps) * g + b`.
    LayerNorm { eps: f32 },
    /// Llama: `y = x / sqrt(mean(x^2) + eps) * g` (no mean, no bias).
    RmsNorm { eps: f32 },
}

/// How the model knows where a token is.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Positions {
    /// GPT-2: a learned vector per position, added to the token embedding.
    Learned,
    /// Llama: queries and keys are rotated by an angle `pos * theta^(-2i/head_dim)`.
    Rope { theta: f32 },
}

/// The feed-forward half of a block.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mlp {
    /// GPT-2: `down(gelu(up(x)))`, GELU in its tanh approximation.
    Gelu,
    /// Llama: `down(silu(gate(x)) * up(x))`.
    SwiGlu,
}
// ANCHOR_END: switches

/// The shape of a GPT or Llama model. [`GptConfig::gpt2_tiny`] and
/// [`GptConfig::llama_tiny`] are the two presets; change one field to ablate one idea.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Number of token ids, `V`.
    pub vocab_size: usize,
    /// Width of the residual stream, `C`.
    pub d_model: usize,
    /// Number of transformer blocks, `L`.
    pub n_layers: usize,
    /// Number of query heads; `head_dim = d_model / n_heads`.
    pub n_heads: usize,
    /// Number of key/value heads: `n_heads` is multi-head attention, a divisor of it is
    /// grouped-query attention (GQA), 1 is multi-query attention (MQA).
    pub n_kv_heads: usize,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// Longest sequence the model reads, `T` at most.
    pub context: usize,
    pub norm: Norm,
    pub positions: Positions,
    pub mlp: Mlp,
    /// The output head is the token embedding matrix (GPT-2) rather than its own matrix.
    pub tied_head: bool,
    /// DeepSeek's multi-head latent attention instead of (grouped-query) multi-head
    /// attention; `None` for GPT-2 and Llama.
    #[serde(default)]
    pub mla: Option<MlaConfig>,
    /// DeepSeekMoE in place of the dense MLP (after the first dense layers); `None`: every
    /// block has the dense MLP.
    #[serde(default)]
    pub moe: Option<MoeConfig>,
    /// One multi-token-prediction depth that also predicts the token after next.
    #[serde(default)]
    pub mtp: Option<MtpConfig>,
}

// ANCHOR: deepseek_switches
/// Multi-head latent attention (DeepSeek-V2/V3): keys and values come from one latent
/// `c_kv = W_dkv h` of width `kv_lora_rank`, the only thing (with the shared RoPE key) a
/// cache keeps. Names are `transformers`' `DeepseekV3Config` fields.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlaConfig {
    /// Width of the query latent `c_q`; `None`: queries come straight from `h` (`q_proj`).
    pub q_lora_rank: Option<usize>,
    /// Width of the key/value latent `c_kv`, `d_c`.
    pub kv_lora_rank: usize,
    /// Per head, the part of query and key without position, `d_h`.
    pub qk_nope_head_dim: usize,
    /// Per head, the rotated part, `d_h^R`; the key's is one vector shared by all heads.
    pub qk_rope_head_dim: usize,
    /// Per head, the value width.
    pub v_head_dim: usize,
    /// RoPE in adjacent pairs `(2i, 2i+1)` (DeepSeek's weights, `rope_interleave`), or in
    /// Llama's halves.
    pub rope_interleave: bool,
}

/// DeepSeekMoE: shared experts every token goes through, and routed experts of which each
/// token picks `top_k` by sigmoid affinity (plus a balancing bias used to choose only).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Routed experts, `N_r` (`n_routed_experts`).
    pub n_routed: usize,
    /// Shared experts, `N_s` (`n_shared_experts`): one SwiGLU `N_s` times as wide.
    pub n_shared: usize,
    /// Routed experts per token, `K_r` (`num_experts_per_tok`).
    pub top_k: usize,
    /// Hidden width of one expert (`moe_intermediate_size`).
    pub d_expert: usize,
    /// Groups of experts (`n_group`) and how many groups a token may use (`topk_group`).
    pub n_group: usize,
    pub topk_group: usize,
    /// Normalise the chosen gates to sum to 1 (`norm_topk_prob`), then scale them.
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f32,
    /// The first blocks keep the dense MLP (`first_k_dense_replace`).
    pub first_dense: usize,
    /// `γ`, the bias update speed of auxiliary-loss-free balancing (0: no balancing).
    pub bias_update_speed: f32,
    /// `α` of the sequence-wise balance loss (0: none).
    pub seq_aux_alpha: f32,
}

/// Multi-token prediction, one depth: from the main model's last hidden state and the
/// next token's embedding, predict the token after it; its loss is weighted by `lambda`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MtpConfig {
    pub lambda: f32,
}
// ANCHOR_END: deepseek_switches

impl GptConfig {
    // ANCHOR: presets
    /// GPT-2's architecture at a tiny size: LayerNorm, learned positions, multi-head
    /// attention, GELU MLP four times as wide as the model, tied head.
    pub fn gpt2_tiny() -> Self {
        GptConfig {
            vocab_size: 1024,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 4,
            d_ff: 512,
            context: 128,
            norm: Norm::LayerNorm { eps: 1e-5 },
            positions: Positions::Learned,
            mlp: Mlp::Gelu,
            tied_head: true,
            mla: None,
            moe: None,
            mtp: None,
        }
    }

    /// Llama's architecture at the same size: RMSNorm, RoPE, grouped-query attention with
    /// 2 key/value heads for 4 query heads, SwiGLU with hidden width 344 (about 8/3 of
    /// d_model, so that its three matrices cost what GPT-2's two of width 4 d_model cost),
    /// untied head.
    pub fn llama_tiny() -> Self {
        GptConfig {
            vocab_size: 1024,
            d_model: 128,
            n_layers: 4,
            n_heads: 4,
            n_kv_heads: 2,
            d_ff: 344,
            context: 128,
            norm: Norm::RmsNorm { eps: 1e-5 },
            positions: Positions::Rope { theta: 10000.0 },
            mlp: Mlp::SwiGlu,
            tied_head: false,
            mla: None,
            moe: None,
            mtp: None,
        }
    }
    // ANCHOR_END: presets

    // ANCHOR: deepseek_presets
    /// DeepSeek-V3's attention at llama-tiny's width: 4 heads with `qk_nope_head_dim` 32,
    /// a shared RoPE key of 16, values of 32, a key/value latent of 64 and a query latent
    /// of 96 (DeepSeek-V3 keeps about these ratios: 128, 64, 128, 512, 1536), interleaved
    /// RoPE. A cache keeps 64 + 16 = 80 numbers per token and layer.
    pub fn mla_tiny() -> MlaConfig {
        MlaConfig {
            q_lora_rank: Some(96),
            kv_lora_rank: 64,
            qk_nope_head_dim: 32,
            qk_rope_head_dim: 16,
            v_head_dim: 32,
            rope_interleave: true,
        }
    }

    /// DeepSeekMoE for llama-tiny with as many *active* parameters per token as its
    /// dense MLP: 1 shared and 2 of 8 routed experts of width 115 (3 × 115 = 345 against
    /// the dense 344), the first block dense as in DeepSeek-V3, γ = 0.001 and α = 0.0001
    /// as in the DeepSeek-V3 report (§2.1.2, §4.2).
    pub fn moe_tiny() -> MoeConfig {
        MoeConfig {
            n_routed: 8,
            n_shared: 1,
            top_k: 2,
            d_expert: 115,
            n_group: 1,
            topk_group: 1,
            norm_topk_prob: true,
            routed_scaling_factor: 1.0,
            first_dense: 1,
            bias_update_speed: 0.001,
            seq_aux_alpha: 0.0001,
        }
    }

    /// [`GptConfig::moe_tiny`] with as many *total* parameters as the dense MLP: 9
    /// experts of width 38 (342 against 344), so a token uses a third of them.
    pub fn moe_tiny_equal_total() -> MoeConfig {
        MoeConfig {
            d_expert: 38,
            ..Self::moe_tiny()
        }
    }

    /// One MTP depth weighted by λ = 0.3 (DeepSeek-V3's first 10T tokens).
    pub fn mtp_tiny() -> MtpConfig {
        MtpConfig { lambda: 0.3 }
    }

    /// llama-tiny with DeepSeek-V3's three ideas: MLA, DeepSeekMoE and MTP. Every head
    /// has its own key and value (MLA has no groups), so `n_kv_heads = n_heads`.
    pub fn deepseek_tiny() -> Self {
        GptConfig {
            n_kv_heads: 4,
            mla: Some(Self::mla_tiny()),
            moe: Some(Self::moe_tiny()),
            mtp: Some(Self::mtp_tiny()),
            ..Self::llama_tiny()
        }
    }
    // ANCHOR_END: deepseek_presets

    /// The preset of that name: `gpt2-tiny`, `llama-tiny` or `deepseek-tiny`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "gpt2-tiny" => Ok(Self::gpt2_tiny()),
            "llama-tiny" => Ok(Self::llama_tiny()),
            "deepseek-tiny" => Ok(Self::deepseek_tiny()),
            _ => Err(Error::InvalidArgument(format!(
                "unknown preset {name:?} (known: gpt2-tiny, llama-tiny, deepseek-tiny)"
            ))),
        }
    }

    /// Widths of attention's buffers per position: queries, keys, values and the output
    /// before `o_proj`. `(C, kv_dim, kv_dim, C)`, or MLA's `(H (d_h + d_h^R), same,
    /// H d_v, H d_v)`.
    pub fn attn_widths(&self) -> (usize, usize, usize, usize) {
        match &self.mla {
            None => (self.d_model, self.kv_dim(), self.kv_dim(), self.d_model),
            Some(m) => {
                let qk = self.n_heads * (m.qk_nope_head_dim + m.qk_rope_head_dim);
                let v = self.n_heads * m.v_head_dim;
                (qk, qk, v, v)
            }
        }
    }

    /// Whether block `l` has the MoE (DeepSeek keeps the first blocks dense).
    pub fn is_moe_layer(&self, l: usize) -> bool {
        self.moe.is_some_and(|m| l >= m.first_dense)
    }

    /// Numbers per token and layer that a generation cache keeps: keys and values,
    /// `2 n_kv_heads hs`, or MLA's latent and shared RoPE key, `d_c + d_h^R`.
    pub fn cache_floats_per_token(&self) -> usize {
        match &self.mla {
            Some(m) => m.kv_lora_rank + m.qk_rope_head_dim,
            None => 2 * self.kv_dim(),
        }
    }

    /// Width of one head, `hs = d_model / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// How many query heads share one key/value head, `n_heads / n_kv_heads`.
    pub fn n_rep(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Width of the key (and value) projection, `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Checks that the sizes fit together; every model constructor calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidArgument(format!("model config: {why}")));
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
            ("context", self.context),
        ];
        for (name, value) in positive {
            if value == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.d_model % self.n_heads != 0 {
            return bad(format!(
                "d_model {} is not a multiple of n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if self.n_kv_heads > self.n_heads || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!(
                "n_kv_heads {} must divide n_heads {}",
                self.n_kv_heads, self.n_heads
            ));
        }
        let eps = match self.norm {
            Norm::LayerNorm { eps } | Norm::RmsNorm { eps } => eps,
        };
        if !(eps.is_finite() && eps > 0.0) {
            return bad(format!("norm eps must be positive, not {eps}"));
        }
        if let Some(m) = &self.mla {
            let Positions::Rope { .. } = self.positions else {
                return bad("MLA needs RoPE positions".into());
            };
            if self.n_kv_heads != self.n_heads {
                return bad(format!(
                    "MLA gives every head its own key and value: n_kv_heads {} must be n_heads {}",
                    self.n_kv_heads, self.n_heads
                ));
            }
            let dims = [
                ("kv_lora_rank", m.kv_lora_rank),
                ("qk_nope_head_dim", m.qk_nope_head_dim),
                ("qk_rope_head_dim", m.qk_rope_head_dim),
                ("v_head_dim", m.v_head_dim),
                ("q_lora_rank", m.q_lora_rank.unwrap_or(1)),
            ];
            for (name, value) in dims {
                if value == 0 {
                    return bad(format!("MLA's {name} must be at least 1"));
                }
            }
            if m.qk_rope_head_dim % 2 != 0 {
                return bad(format!(
                    "RoPE needs an even qk_rope_head_dim, not {}",
                    m.qk_rope_head_dim
                ));
            }
        }
        if let Some(m) = &self.moe {
            if m.n_routed == 0 || m.d_expert == 0 || m.top_k == 0 || m.top_k > m.n_routed {
                return bad(format!(
                    "MoE needs 1 <= top_k ({}) <= n_routed ({}) and d_expert >= 1",
                    m.top_k, m.n_routed
                ));
            }
            if m.n_group == 0 || m.n_routed % m.n_group != 0 {
                return bad(format!(
                    "n_group {} must divide n_routed {}",
                    m.n_group, m.n_routed
                ));
            }
            let per_group = m.n_routed / m.n_group;
            if m.topk_group == 0 || m.topk_group > m.n_group || m.topk_group * per_group < m.top_k {
                return bad(format!(
                    "topk_group {} of {} groups of {} experts cannot hold top_k {}",
                    m.topk_group, m.n_group, per_group, m.top_k
                ));
            }
            if m.n_group > 1 && per_group < 2 {
                return bad(
                    "a group's score is its two best experts: groups need 2 or more".into(),
                );
            }
            let finite = [
                m.routed_scaling_factor,
                m.bias_update_speed,
                m.seq_aux_alpha,
            ];
            if finite.iter().any(|x| !x.is_finite() || *x < 0.0) {
                return bad(
                    "MoE's scaling, bias update speed and alpha must be finite and >= 0".into(),
                );
            }
        }
        if let Some(m) = &self.mtp {
            if !(m.lambda.is_finite() && m.lambda >= 0.0) {
                return bad(format!(
                    "MTP's lambda must be finite and >= 0, not {}",
                    m.lambda
                ));
            }
        }
        if let (Positions::Rope { .. }, None) = (self.positions, &self.mla) {
            if self.head_dim() % 2 != 0 {
                return bad(format!(
                    "RoPE needs an even head_dim, not {}",
                    self.head_dim()
                ));
            }
        }
        if let Positions::Rope { theta } = self.positions {
            if !(theta.is_finite() && theta > 1.0) {
                return bad(format!("RoPE theta must be above 1, not {theta}"));
            }
        }
        Ok(())
    }

    /// Number of trained parameters (the MTP depth's included; MoE's balancing bias,
    /// which no gradient moves, not).
    pub fn n_params(&self) -> usize {
        let mut n = 0;
        super::params::Params::zeros(self).visit(|spec, _| {
            if !super::params::is_buffer(&spec.name) {
                n += spec.len();
            }
        });
        n
    }

    /// Parameters one token's next-token prediction uses: [`GptConfig::n_params`] without
    /// the MTP depth (dropped at inference) and, in each MoE block, without the
    /// `N_r - K_r` routed experts a token does not go through.
    pub fn n_active_params(&self) -> usize {
        let c = self.d_model;
        let mut n = self.n_params() - self.n_mtp_params();
        if let Some(m) = &self.moe {
            let moe_layers = (0..self.n_layers).filter(|&l| self.is_moe_layer(l)).count();
            n -= moe_layers * (m.n_routed - m.top_k) * 3 * c * m.d_expert;
        }
        n
    }

    /// Parameters of the MTP depth alone.
    pub fn n_mtp_params(&self) -> usize {
        if self.mtp.is_none() {
            return 0;
        }
        let mut n = 0;
        let prefix = format!("model.layers.{}.", self.n_layers);
        super::params::Params::zeros(self).visit(|spec, _| {
            if spec.name.starts_with(&prefix) && !super::params::is_buffer(&spec.name) {
                n += spec.len();
            }
        });
        n
    }
}

/// `cfg` with `[vocab_size, d_model, n_layers, d_ff, context]` small enough for a test.
#[cfg(test)]
pub(crate) fn shrunk(mut cfg: GptConfig, [v, c, l, f, t]: [usize; 5]) -> GptConfig {
    (
        cfg.vocab_size,
        cfg.d_model,
        cfg.n_layers,
        cfg.d_ff,
        cfg.context,
    ) = (v, c, l, f, t);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ["gpt2-tiny", "llama-tiny"] {
            GptConfig::preset(name).unwrap().validate().unwrap();
        }
        assert!(GptConfig::preset("gpt5").is_err());
    }

    #[test]
    fn llama_tiny_sizes() {
        let c = GptConfig::llama_tiny();
        assert_eq!((c.vocab_size, c.d_model, c.n_layers), (1024, 128, 4));
        assert_eq!(
            (c.n_heads, c.n_kv_heads, c.d_ff, c.context),
            (4, 2, 344, 128)
        );
        // embed 131072 + head 131072 + 4 * (2*128 + 2*16384 + 2*8192 + 3*44032) + 128
        assert_eq!(
            c.n_params(),
            131072 * 2 + 4 * (256 + 32768 + 16384 + 132096) + 128
        );
    }

    #[test]
    fn bad_configs_are_errors() {
        let mut c = GptConfig::llama_tiny();
        c.n_kv_heads = 3;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("n_kv_heads 3"));
        let mut c = GptConfig::llama_tiny();
        c.n_heads = 5;
        assert!(c.validate().is_err());
        let mut c = GptConfig::llama_tiny();
        c.n_heads = 128; // head_dim 1: odd, no RoPE pairs
        c.n_kv_heads = 1;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("even head_dim"));
        let mut c = GptConfig::gpt2_tiny();
        c.context = 0;
        assert!(c.validate().is_err());
        let mut c = GptConfig::gpt2_tiny();
        c.norm = Norm::LayerNorm { eps: f32::NAN };
        assert!(c.validate().is_err());
    }
}
