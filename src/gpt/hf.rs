//! Hugging Face checkpoints: a `config.json` with `LlamaConfig`'s fields and a
//! `model.safetensors` with its tensor names (`model.embed_tokens.weight`,
//! `model.layers.N.self_attn.q_proj.weight`, ..., `lm_head.weight`), as
//! `LlamaForCausalLM.save_pretrained` writes them. Linear weights are `(out, in)` there as
//! here, so they load as they are.
//!
//! Every problem is an [`Error::Checkpoint`] naming the file: a truncated file, a missing,
//! extra or mis-shaped tensor, a config that the tensors contradict.

use super::config::{GptConfig, MlaConfig, Mlp, MoeConfig, MtpConfig, Norm, Positions};
use super::model::{Gpt, Params};
use crate::{Error, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::path::Path;

/// A named tensor read from a safetensors file, converted to f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Every tensor of a safetensors file, in f32 (F32, BF16 and F16 tensors are read).
pub fn read_safetensors(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_safetensors(&bytes, path)
}

/// [`read_safetensors`] on the bytes of a file; `path` names it in errors.
pub fn parse_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<NamedTensor>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            // bf16 is the top half of an f32
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            other => {
                return Err(bad(
                    path,
                    format!("tensor {name} has dtype {other:?}; F32, BF16 and F16 are read"),
                ))
            }
        };
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            data,
        });
    }
    Ok(out)
}

/// IEEE half precision to f32.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // subnormal: frac * 2^-24
            let v = frac as f32 * f32::powi(2.0, -24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

/// The parameters `cfg` needs, taken by name from `tensors`, each checked for its shape.
/// A tied head ignores a stored `lm_head.weight`; older checkpoints' `rotary_emb.inv_freq`
/// buffers are ignored; any other unknown tensor is an error.
pub fn params_from_tensors(
    cfg: &GptConfig,
    tensors: Vec<NamedTensor>,
    path: &Path,
) -> Result<Params> {
    let specs = Params::specs(cfg);
    let mut by_name: std::collections::HashMap<String, NamedTensor> =
        tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut params = Params::zeros(cfg);
    for (spec, slot) in specs.iter().zip(params.tensors_mut()) {
        let t = by_name
            .remove(&spec.name)
            .ok_or_else(|| bad(path, format!("tensor {} is missing", spec.name)))?;
        if t.shape != spec.shape {
            return Err(bad(
                path,
                format!(
                    "tensor {} has shape {:?}, the config asks for {:?}",
                    spec.name, t.shape, spec.shape
                ),
            ));
        }
        slot.copy_from_slice(&t.data);
    }
    let mut extra: Vec<String> = by_name
        .into_keys()
        .filter(|n| {
            !(n.ends_with("rotary_emb.inv_freq")
                || (cfg.tied_head && n == "lm_head.weight")
                || is_mtp_copy(cfg, n))
        })
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(bad(
            path,
            format!(
                "tensor {name} is not part of the model the config describes ({} unknown)",
                extra.len()
            ),
        ));
    }
    Ok(params)
}

/// DeepSeek-V3's checkpoint repeats the embedding and the head inside its MTP layer
/// (`model.layers.61.embed_tokens.weight`, `...shared_head.head.weight`): copies of the
/// shared ones, not read. Without MTP in the config, the MTP layer itself is skipped, as
/// transformers skips it. (A Llama's layer past its config's count stays an error.)
fn is_mtp_copy(cfg: &GptConfig, name: &str) -> bool {
    let mtp_layer = format!("model.layers.{}.", cfg.n_layers);
    cfg.mla.is_some()
        && name.starts_with(&mtp_layer)
        && (cfg.mtp.is_none()
            || name.ends_with("embed_tokens.weight")
            || name.ends_with("shared_head.head.weight"))
}

/// A [`GptConfig`] from a Hugging Face `LlamaConfig` JSON (`config.json`). Reads
/// `rope_theta`, or the newer `rope_parameters.rope_theta`; refuses what this model does
/// not do (biases, another activation, RoPE scaling).
pub fn config_from_hf_json(text: &str, path: &Path) -> Result<GptConfig> {
    let j: Value = serde_json::from_str(text).map_err(|e| bad(path, format!("not JSON: {e}")))?;
    let usize_field = |key: &str| -> Result<usize> {
        j.get(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| bad(path, format!("{key} is missing or not a whole number")))
    };
    let f64_field = |v: Option<&Value>, key: &str| -> Result<f64> {
        v.and_then(Value::as_f64)
            .ok_or_else(|| bad(path, format!("{key} is missing or not a number")))
    };
    if let Some(model_type) = j.get("model_type").and_then(Value::as_str) {
        if model_type == "deepseek_v3" {
            return deepseek_config_from_json(&j, path);
        }
        if model_type != "llama" {
            return Err(bad(
                path,
                format!("model_type {model_type:?}: only \"llama\" and \"deepseek_v3\" are read"),
            ));
        }
    }
    let act = j
        .get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu");
    if act != "silu" {
        return Err(bad(
            path,
            format!("hidden_act {act:?}: Llama's SwiGLU needs \"silu\""),
        ));
    }
    for key in ["attention_bias", "mlp_bias"] {
        if j.get(key).and_then(Value::as_bool) == Some(true) {
            return Err(bad(
                path,
                format!("{key} is true: this model has no biases"),
            ));
        }
    }
    let rope_theta = match j.get("rope_theta") {
        Some(v) => f64_field(Some(v), "rope_theta")?,
        None => match j.get("rope_parameters") {
            Some(rp) => {
                if let Some(kind) = rp.get("rope_type").and_then(Value::as_str) {
                    if kind != "default" {
                        return Err(bad(
                            path,
                            format!("rope_type {kind:?}: only \"default\" is read"),
                        ));
                    }
                }
                f64_field(rp.get("rope_theta"), "rope_parameters.rope_theta")?
            }
            None => 10000.0,
        },
    };
    if j.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(bad(
            path,
            "rope_scaling is set: scaled RoPE is not implemented",
        ));
    }
    let n_heads = usize_field("num_attention_heads")?;
    let cfg = GptConfig {
        vocab_size: usize_field("vocab_size")?,
        d_model: usize_field("hidden_size")?,
        n_layers: usize_field("num_hidden_layers")?,
        n_heads,
        n_kv_heads: j
            .get("num_key_value_heads")
            .and_then(Value::as_u64)
            .map_or(n_heads, |v| v as usize),
        d_ff: usize_field("intermediate_size")?,
        context: usize_field("max_position_embeddings")?,
        norm: Norm::RmsNorm {
            eps: f64_field(j.get("rms_norm_eps"), "rms_norm_eps")? as f32,
        },
        positions: Positions::Rope {
            theta: rope_theta as f32,
        },
        mlp: Mlp::SwiGlu,
        tied_head: j
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mla: None,
        moe: None,
        mtp: None,
    };
    if let Some(hd) = j.get("head_dim").and_then(Value::as_u64) {
        if n_heads > 0 && hd as usize * n_heads != cfg.d_model {
            return Err(bad(
                path,
                format!("head_dim {hd} is not hidden_size / num_attention_heads"),
            ));
        }
    }
    cfg.validate().map_err(|e| bad(path, e.to_string()))?;
    Ok(cfg)
}

// ANCHOR: deepseek_config
/// A [`GptConfig`] from a Hugging Face `DeepseekV3Config` JSON: MLA always, DeepSeekMoE
/// from layer `first_k_dense_replace` on (none when that is every layer), one MTP depth
/// when `num_nextn_predict_layers` is 1. The training settings transformers does not
/// keep are read from `bias_update_speed` (γ), `aux_loss_alpha` (α) and `mtp_lambda` (λ)
/// when present (this crate writes them); without them γ = α = 0, so that the objective
/// is transformers' (plain cross-entropy, a fixed bias), and λ is DeepSeek-V3's 0.3.
fn deepseek_config_from_json(j: &Value, path: &Path) -> Result<GptConfig> {
    let opt_usize = |key: &str| j.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let usize_field = |key: &str| -> Result<usize> {
        opt_usize(key).ok_or_else(|| bad(path, format!("{key} is missing or not a whole number")))
    };
    let f64_or = |key: &str, default: f64| j.get(key).and_then(Value::as_f64).unwrap_or(default);
    let bool_or = |key: &str, default: bool| j.get(key).and_then(Value::as_bool).unwrap_or(default);
    if j.get("hidden_act")
        .and_then(Value::as_str)
        .unwrap_or("silu")
        != "silu"
    {
        return Err(bad(
            path,
            "hidden_act: DeepSeek-V3's experts are SwiGLU, \"silu\"",
        ));
    }
    if bool_or("attention_bias", false) {
        return Err(bad(
            path,
            "attention_bias is true: this model has no biases",
        ));
    }
    let rope = j.get("rope_parameters").or(j.get("rope_scaling"));
    if let Some(kind) = rope
        .and_then(|r| r.get("rope_type").or(r.get("type")))
        .and_then(Value::as_str)
    {
        if kind != "default" {
            return Err(bad(
                path,
                format!("rope_type {kind:?}: scaled RoPE (DeepSeek-V3's yarn) is not implemented"),
            ));
        }
    }
    let theta = j
        .get("rope_theta")
        .or(j.get("rope_parameters").and_then(|r| r.get("rope_theta")))
        .and_then(Value::as_f64)
        .unwrap_or(10000.0);
    let n_heads = usize_field("num_attention_heads")?;
    let n_layers = usize_field("num_hidden_layers")?;
    let first_dense = opt_usize("first_k_dense_replace").unwrap_or(0);
    let moe = match opt_usize("n_routed_experts") {
        Some(n_routed) if first_dense < n_layers => Some(MoeConfig {
            n_routed,
            n_shared: opt_usize("n_shared_experts").unwrap_or(0),
            top_k: usize_field("num_experts_per_tok")?,
            d_expert: usize_field("moe_intermediate_size")?,
            n_group: opt_usize("n_group").unwrap_or(1),
            topk_group: opt_usize("topk_group").unwrap_or(1),
            norm_topk_prob: bool_or("norm_topk_prob", true),
            routed_scaling_factor: f64_or("routed_scaling_factor", 1.0) as f32,
            first_dense,
            bias_update_speed: f64_or("bias_update_speed", 0.0) as f32,
            seq_aux_alpha: f64_or("aux_loss_alpha", 0.0) as f32,
        }),
        _ => None,
    };
    let mtp = match opt_usize("num_nextn_predict_layers").unwrap_or(0) {
        0 => None,
        1 => Some(MtpConfig {
            lambda: f64_or("mtp_lambda", GptConfig::mtp_tiny().lambda as f64) as f32,
        }),
        k => {
            return Err(bad(
                path,
                format!("num_nextn_predict_layers {k}: one MTP depth is implemented"),
            ))
        }
    };
    let cfg = GptConfig {
        vocab_size: usize_field("vocab_size")?,
        d_model: usize_field("hidden_size")?,
        n_layers,
        n_heads,
        // MLA: a key and a value per head (transformers' class default, 128, is not read)
        n_kv_heads: n_heads,
        d_ff: usize_field("intermediate_size")?,
        context: usize_field("max_position_embeddings")?,
        norm: Norm::RmsNorm {
            eps: f64_or("rms_norm_eps", 1e-6) as f32,
        },
        positions: Positions::Rope {
            theta: theta as f32,
        },
        mlp: Mlp::SwiGlu,
        tied_head: bool_or("tie_word_embeddings", false),
        mla: Some(MlaConfig {
            q_lora_rank: opt_usize("q_lora_rank"),
            kv_lora_rank: usize_field("kv_lora_rank")?,
            qk_nope_head_dim: usize_field("qk_nope_head_dim")?,
            qk_rope_head_dim: usize_field("qk_rope_head_dim")?,
            v_head_dim: usize_field("v_head_dim")?,
            rope_interleave: bool_or("rope_interleave", true),
        }),
        moe,
        mtp,
    };
    cfg.validate().map_err(|e| bad(path, e.to_string()))?;
    Ok(cfg)
}

/// The `config.json` of a model with MLA (and DeepSeekMoE, MTP), with `DeepseekV3Config`'s
/// field names, so that `transformers.DeepseekV3ForCausalLM.from_pretrained` reads it.
fn deepseek_config_to_json(cfg: &GptConfig, m: &MlaConfig) -> Result<String> {
    let (Norm::RmsNorm { eps }, Positions::Rope { theta }, Mlp::SwiGlu) =
        (cfg.norm, cfg.positions, cfg.mlp)
    else {
        return Err(Error::InvalidArgument(
            "a DeepSeek-V3 config needs RMSNorm, RoPE and SwiGLU".into(),
        ));
    };
    // without an MoE every layer is dense: first_k_dense_replace = L
    let moe = cfg.moe.unwrap_or(MoeConfig {
        first_dense: cfg.n_layers,
        ..GptConfig::moe_tiny()
    });
    let j = serde_json::json!({
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_heads,
        "max_position_embeddings": cfg.context,
        "rms_norm_eps": eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "rope_interleave": m.rope_interleave,
        "q_lora_rank": m.q_lora_rank,
        "kv_lora_rank": m.kv_lora_rank,
        "qk_nope_head_dim": m.qk_nope_head_dim,
        "qk_rope_head_dim": m.qk_rope_head_dim,
        "qk_head_dim": m.qk_nope_head_dim + m.qk_rope_head_dim,
        "head_dim": m.qk_rope_head_dim,
        "v_head_dim": m.v_head_dim,
        "n_routed_experts": moe.n_routed,
        "n_shared_experts": moe.n_shared,
        "num_experts_per_tok": moe.top_k,
        "moe_intermediate_size": moe.d_expert,
        "n_group": moe.n_group,
        "topk_group": moe.topk_group,
        "norm_topk_prob": moe.norm_topk_prob,
        "routed_scaling_factor": moe.routed_scaling_factor,
        "first_k_dense_replace": moe.first_dense,
        "bias_update_speed": moe.bias_update_speed,
        "aux_loss_alpha": moe.seq_aux_alpha,
        "num_nextn_predict_layers": usize::from(cfg.mtp.is_some()),
        "mtp_lambda": cfg.mtp.map(|m| m.lambda),
        "hidden_act": "silu",
        "attention_bias": false,
        "tie_word_embeddings": cfg.tied_head,
        "torch_dtype": "float32",
    });
    Ok(serde_json::to_string_pretty(&j).expect("a JSON value serialises"))
}
// ANCHOR_END: deepseek_config

/// Loads a Hugging Face Llama directory: `config.json` and `model.safetensors`.
pub fn load_llama(dir: &Path) -> Result<Gpt> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let cfg = config_from_hf_json(&text, &config_path)?;
    let weights = dir.join("model.safetensors");
    let params = params_from_tensors(&cfg, read_safetensors(&weights)?, &weights)?;
    Gpt::new(cfg, params)
}

// ANCHOR: config_json
/// The `config.json` of a Llama-architecture model, with `LlamaConfig`'s field names, so
/// that `transformers.LlamaForCausalLM.from_pretrained` reads it. Only Llama's switches
/// (RMSNorm, RoPE, SwiGLU) have a Hugging Face Llama form; another mix is an error.
pub fn config_to_hf_json(cfg: &GptConfig) -> Result<String> {
    if let Some(m) = &cfg.mla {
        return deepseek_config_to_json(cfg, m);
    }
    if cfg.moe.is_some() || cfg.mtp.is_some() {
        return Err(Error::InvalidArgument(
            "DeepSeekMoE or MTP without MLA has no Hugging Face config (DeepSeek-V3 always has MLA)"
                .into(),
        ));
    }
    let (Norm::RmsNorm { eps }, Positions::Rope { theta }, Mlp::SwiGlu) =
        (cfg.norm, cfg.positions, cfg.mlp)
    else {
        return Err(Error::InvalidArgument(
            "only a Llama-architecture config (RMSNorm, RoPE, SwiGLU) has a Hugging Face LlamaConfig".into(),
        ));
    };
    let j = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "max_position_embeddings": cfg.context,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": cfg.tied_head,
        "torch_dtype": "float32",
    });
    Ok(serde_json::to_string_pretty(&j).expect("a JSON value serialises"))
}
// ANCHOR_END: config_json

/// The parameters as a safetensors file (f32, little-endian), with Hugging Face names.
pub fn params_to_safetensors(cfg: &GptConfig, params: &Params) -> Result<Vec<u8>> {
    let specs = params.param_specs();
    if let Some(s) = specs.iter().find(|s| s.name.contains(".lora_")) {
        return Err(Error::InvalidArgument(format!(
            "{} is a LoRA adapter's: merge the adapters into the weights (Params::merge_lora) \
             or save them in PEFT's format, not as a model",
            s.name
        )));
    }
    debug_assert_eq!(specs.len(), Params::specs(cfg).len());
    let named = specs
        .iter()
        .zip(params.tensors())
        .map(|(s, t)| (s.name.clone(), s.shape.clone(), t));
    tensors_to_safetensors(named.collect())
}

/// Named f32 tensors `(name, shape, values)` as a safetensors file.
pub fn tensors_to_safetensors(tensors: Vec<(String, Vec<usize>, &[f32])>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, t)| t.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::InvalidArgument(format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::InvalidArgument(format!("safetensors: {e}")))
}

/// Saves a Llama-architecture model as Hugging Face does: `config.json` and
/// `model.safetensors` in `dir` (created if needed), each written atomically.
pub fn save_llama(model: &Gpt, dir: &Path) -> Result<()> {
    model
        .params
        .check_f32("saving as Hugging Face safetensors")?;
    let config = config_to_hf_json(&model.cfg)?;
    let weights = params_to_safetensors(&model.cfg, &model.params)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    crate::data::write_atomic(&dir.join("model.safetensors"), &weights)?;
    crate::data::write_atomic(&dir.join("config.json"), config.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::GptConfig;

    fn small() -> GptConfig {
        shrunk(GptConfig::llama_tiny(), [20, 8, 2, 12, 16])
    }

    #[test]
    fn save_and_load_give_the_same_model() {
        let model = Gpt::init(small(), 7).unwrap();
        let dir = std::env::temp_dir().join(format!("llm-lessons-hf-{}", std::process::id()));
        save_llama(&model, &dir).unwrap();
        let back = load_llama(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.cfg, model.cfg);
        assert_eq!(back.params, model.params);
        let gpt2 = Gpt::init(GptConfig::gpt2_tiny(), 0).unwrap();
        assert!(save_llama(&gpt2, Path::new("unused")).is_err());
    }

    #[test]
    fn bad_checkpoints_are_errors_that_name_the_problem() {
        let cfg = small();
        let model = Gpt::init(cfg.clone(), 7).unwrap();
        let bytes = params_to_safetensors(&cfg, &model.params).unwrap();
        let p = Path::new("model.safetensors");
        let msg = |r: Result<Params>| r.unwrap_err().to_string();
        // truncated
        let err = parse_safetensors(&bytes[..bytes.len() - 10], p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("not a safetensors file"),
            "{err}"
        );
        assert!(parse_safetensors(&bytes[..5], p).is_err());
        let tensors = parse_safetensors(&bytes, p).unwrap();
        // missing
        let mut fewer = tensors.clone();
        fewer.retain(|t| t.name != "model.layers.1.mlp.up_proj.weight");
        assert!(msg(params_from_tensors(&cfg, fewer, p))
            .contains("model.layers.1.mlp.up_proj.weight is missing"));
        // mis-shaped: a config with 3 layers, or another width, contradicts the tensors
        let mut deeper = cfg.clone();
        deeper.n_layers = 3;
        assert!(msg(params_from_tensors(&deeper, tensors.clone(), p)).contains("model.layers.2"));
        let mut wider = cfg.clone();
        wider.d_ff = 16;
        assert!(msg(params_from_tensors(&wider, tensors.clone(), p)).contains("has shape [12, 8]"));
        let mut shallower = cfg.clone();
        shallower.n_layers = 1;
        assert!(msg(params_from_tensors(&shallower, tensors.clone(), p))
            .contains("not part of the model"));
        // a whole directory that is not there
        assert!(load_llama(Path::new("/nonexistent/llama"))
            .unwrap_err()
            .to_string()
            .contains("cannot read"));
    }

    #[test]
    fn f16_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), f32::powi(2.0, -24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn rope_parameters_form_and_bad_configs() {
        let p = Path::new("config.json");
        let base = r#""vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 12, "max_position_embeddings": 16, "rms_norm_eps": 1e-6"#;
        let cfg = config_from_hf_json(&format!(r#"{{{base}, "rope_parameters": {{"rope_theta": 500000.0, "rope_type": "default"}}}}"#), p).unwrap();
        assert_eq!(cfg.positions, Positions::Rope { theta: 500000.0 });
        assert_eq!(cfg.n_kv_heads, 2);
        let err = config_from_hf_json(&format!(r#"{{{base}, "num_key_value_heads": 3}}"#), p)
            .unwrap_err();
        assert!(err.to_string().contains("n_kv_heads 3"), "{err}");
        let err =
            config_from_hf_json(&format!(r#"{{{base}, "hidden_act": "gelu"}}"#), p).unwrap_err();
        assert!(err.to_string().contains("hidden_act"), "{err}");
        let err = config_from_hf_json(r#"{"hidden_size": 8}"#, p).unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        assert!(config_from_hf_json("{", p).is_err());
    }
}
