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
}

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
        }
    }
    // ANCHOR_END: presets

    /// The preset of that name: `gpt2-tiny` or `llama-tiny`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "gpt2-tiny" => Ok(Self::gpt2_tiny()),
            "llama-tiny" => Ok(Self::llama_tiny()),
            _ => Err(Error::InvalidArgument(format!(
                "unknown preset {name:?} (known: gpt2-tiny, llama-tiny)"
            ))),
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
        if let Positions::Rope { theta } = self.positions {
            if self.head_dim() % 2 != 0 {
                return bad(format!(
                    "RoPE needs an even head_dim, not {}",
                    self.head_dim()
                ));
            }
            if !(theta.is_finite() && theta > 1.0) {
                return bad(format!("RoPE theta must be above 1, not {theta}"));
            }
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn n_params(&self) -> usize {
        let (c, f, v) = (self.d_model, self.d_ff, self.vocab_size);
        let norm = match self.norm {
            Norm::LayerNorm { .. } => 2 * c,
            Norm::RmsNorm { .. } => c,
        };
        let mlp = match self.mlp {
            Mlp::Gelu => 2 * c * f,
            Mlp::SwiGlu => 3 * c * f,
        };
        let attn = 2 * c * c + 2 * c * self.kv_dim();
        let pos = match self.positions {
            Positions::Learned => self.context * c,
            Positions::Rope { .. } => 0,
        };
        let head = if self.tied_head { 0 } else { v * c };
        v * c + pos + self.n_layers * (2 * norm + attn + mlp) + norm + head
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
