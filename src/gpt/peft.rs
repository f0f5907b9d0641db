//! LoRA adapters in PEFT's format, both ways: `adapter_config.json` and
//! `adapter_model.safetensors`, whose tensors PEFT names
//! `base_model.model.<the projection's name>.lora_A.weight` (and `lora_B`), so that
//! `PeftModel.from_pretrained(base, dir)` loads what the crate trains and the crate loads
//! what PEFT saved.

use super::hf::{read_safetensors, tensors_to_safetensors};
use super::lora::{LoraAdapter, LoraConfig};
use super::params::{Params, Tensor};
use crate::data::{read_text, write_atomic};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

/// The config file's name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// The tensors' file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// What PEFT puts before a module's name in the saved tensors.
const PREFIX: &str = "base_model.model.";

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes the adapters of `params` (made with `cfg`) into `dir`, created if needed.
/// `base` is what `base_model_name_or_path` says (the base model's folder or hub name).
pub fn save_adapter(dir: &Path, params: &Params, cfg: &LoraConfig, base: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut tensors = Vec::new();
    params.visit(|spec, t| {
        if spec.name.contains(".lora_A.") || spec.name.contains(".lora_B.") {
            tensors.push((format!("{PREFIX}{}", spec.name), spec.shape, &t.data[..]));
        }
    });
    if tensors.is_empty() {
        return Err(Error::InvalidArgument(
            "the model has no LoRA adapters to save".into(),
        ));
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "use_rslora": cfg.rslora,
        "target_modules": cfg.targets,
        "lora_dropout": cfg.dropout,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    write_atomic(
        &dir.join(ADAPTER_WEIGHTS),
        &tensors_to_safetensors(tensors)?,
    )?;
    write_atomic(
        &dir.join(ADAPTER_CONFIG),
        serde_json::to_string_pretty(&config)
            .expect("JSON")
            .as_bytes(),
    )
}

/// Reads `adapter_config.json`: the settings the crate supports, and a clear error for any
/// it does not (biases, per-layer ranks, layer subsets, and so on).
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(ADAPTER_CONFIG);
    let j: Value = serde_json::from_str(&read_text(&path)?)
        .map_err(|e| bad(&path, format!("not JSON: {e}")))?;
    let peft_type = j.get("peft_type").and_then(Value::as_str).unwrap_or("LORA");
    if peft_type != "LORA" {
        return Err(bad(&path, format!("peft_type is {peft_type}, not LORA")));
    }
    let rank = j
        .get("r")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(&path, "r is missing or not a whole number"))? as usize;
    let alpha = j
        .get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad(&path, "lora_alpha is missing or not a number"))? as f32;
    let rslora = j
        .get("use_rslora")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let targets: Vec<String> = match j.get("target_modules") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(String::from))
            .collect::<Option<_>>()
            .ok_or_else(|| bad(&path, "target_modules holds something other than names"))?,
        Some(Value::String(s)) => {
            return Err(bad(
                &path,
                format!("target_modules is a pattern ({s:?}); give the module names as a list"),
            ))
        }
        _ => return Err(bad(&path, "target_modules is missing")),
    };
    let unsupported = |key: &str, ok: &dyn Fn(&Value) -> bool| match j.get(key) {
        Some(v) if !ok(v) => Err(bad(
            &path,
            format!("{key} = {v} is not supported (only plain LoRA on whole layers)"),
        )),
        _ => Ok(()),
    };
    let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|o| o.is_empty());
    unsupported("bias", &|v| v == "none")?;
    unsupported("fan_in_fan_out", &|v| v == false)?;
    unsupported("layers_to_transform", &|v| v.is_null())?;
    unsupported("modules_to_save", &|v| {
        v.is_null() || v.as_array().is_some_and(|a| a.is_empty())
    })?;
    unsupported("rank_pattern", &empty)?;
    unsupported("alpha_pattern", &empty)?;
    unsupported("use_dora", &|v| v == false)?;
    let dropout = match j.get("lora_dropout") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| bad(&path, format!("lora_dropout = {v} is not a number")))?
            as f32,
    };
    let cfg = LoraConfig {
        rank,
        alpha,
        rslora,
        targets,
        dropout,
    };
    cfg.validate().map_err(|e| bad(&path, e.to_string()))?;
    Ok(cfg)
}

/// Puts the adapters saved in `dir` on `params` and freezes the base; returns their config.
/// Errors, naming the tensor, if one is missing, has the wrong shape, or names a module
/// the base does not have or the config does not target.
pub fn load_adapter(dir: &Path, params: &mut Params) -> Result<LoraConfig> {
    let cfg = read_adapter_config(dir)?;
    let path = dir.join(ADAPTER_WEIGHTS);
    let mut by_name: std::collections::HashMap<String, Vec<usize>> = Default::default();
    let mut data: std::collections::HashMap<String, Vec<f32>> = Default::default();
    for t in read_safetensors(&path)? {
        by_name.insert(t.name.clone(), t.shape);
        data.insert(t.name, t.data);
    }
    // on a copy, so that a bad file leaves the caller's parameters as they were
    let mut adapted = params.clone();
    adapted
        .add_lora(&cfg, 0)
        .map_err(|e| bad(&path, e.to_string()))?;
    let mut failure = None;
    let mut take = |name: String, slot: &mut Tensor| {
        if failure.is_some() {
            return;
        }
        let key = format!("{PREFIX}{name}");
        match (by_name.remove(&key), data.remove(&key)) {
            (Some(shape), Some(values)) if shape == slot.shape => slot.data = values,
            (Some(shape), _) => {
                failure = Some(format!(
                    "{key} has shape {shape:?}; the base model's layer needs {:?}",
                    slot.shape
                ))
            }
            _ => failure = Some(format!("{key} is missing")),
        }
    };
    adapted.visit_linears_mut(|name, linear| {
        if let Some(LoraAdapter { a, b, .. }) = &mut linear.adapter {
            take(format!("{name}.lora_A.weight"), a);
            take(format!("{name}.lora_B.weight"), b);
        }
    });
    if let Some(m) = failure {
        return Err(bad(&path, m));
    }
    let mut extra: Vec<String> = by_name.into_keys().collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(bad(
            &path,
            format!(
                "{name} does not match a targeted layer of the base model (targets {:?}, {} tensors left over)",
                cfg.targets,
                extra.len()
            ),
        ));
    }
    *params = adapted;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::{Gpt, GptConfig};

    fn small(d_model: usize) -> GptConfig {
        shrunk(GptConfig::llama_tiny(), [11, d_model, 2, 12, 8])
    }

    fn lora(rank: usize, targets: &[&str]) -> LoraConfig {
        LoraConfig {
            rank,
            alpha: 8.0,
            rslora: true,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            dropout: 0.0,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("llm-lessons-peft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn adapted(cfg: &GptConfig, l: &LoraConfig) -> Params {
        let mut p = Gpt::init(cfg.clone(), 1).unwrap().params;
        p.add_lora(l, 2).unwrap();
        let mut k = 0.0;
        p.visit_mut(|s, t| {
            if s.name.contains("lora_B") {
                t.iter_mut().for_each(|x| {
                    k += 1.0;
                    *x = (k * 0.37f32).sin() * 0.1
                });
            }
        });
        p
    }

    #[test]
    fn an_adapter_reads_back_as_it_was_saved() {
        let cfg = small(8);
        let l = lora(2, &["q_proj", "v_proj", "down_proj"]);
        let p = adapted(&cfg, &l);
        let dir = temp_dir("roundtrip");
        save_adapter(&dir, &p, &l, "llama-tiny").unwrap();
        let names: Vec<String> = read_safetensors(&dir.join(ADAPTER_WEIGHTS))
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(names
            .contains(&"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight".into()));
        assert_eq!(names.len(), 2 * 3 * 2);
        let mut fresh = Gpt::init(cfg, 1).unwrap().params;
        let back = load_adapter(&dir, &mut fresh).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back, l);
        assert_eq!(fresh, p);
    }

    #[test]
    fn adapters_that_do_not_fit_are_errors_naming_the_tensor() {
        let l = lora(2, &["q_proj", "v_proj"]);
        let p = adapted(&small(8), &l);
        let dir = temp_dir("misfit");
        save_adapter(&dir, &p, &l, "llama-tiny").unwrap();
        // a base of another width
        let mut other = Gpt::init(small(16), 1).unwrap().params;
        let before = other.clone();
        let err = load_adapter(&dir, &mut other).unwrap_err().to_string();
        assert!(
            err.contains("self_attn.q_proj.lora_A.weight has shape [2, 8]"),
            "{err}"
        );
        assert_eq!(other, before, "a failed load changes nothing");
        // a config that contradicts the tensors: rank 4 for tensors of rank 2
        let config = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace("\"r\": 2", "\"r\": 4")).unwrap();
        let mut base = Gpt::init(small(8), 1).unwrap().params;
        let err = load_adapter(&dir, &mut base).unwrap_err().to_string();
        assert!(
            err.contains("has shape [2, 8]") && err.contains("[4, 8]"),
            "{err}"
        );
        // a target the tensors do not cover, and tensors the targets do not cover
        std::fs::write(&config, text.replace("\"v_proj\"", "\"k_proj\"")).unwrap();
        let err = load_adapter(&dir, &mut base).unwrap_err().to_string();
        assert!(err.contains("k_proj.lora_A.weight is missing"), "{err}");
        std::fs::write(&config, text.replace("\"v_proj\"", "\"q_proj\"")).unwrap();
        let err = load_adapter(&dir, &mut base).unwrap_err().to_string();
        assert!(
            err.contains("v_proj.lora_A.weight does not match a targeted layer"),
            "{err}"
        );
        for (from, to, says) in [
            ("\"r\": 2", "\"r\": 0", "rank 0"),
            ("\"v_proj\"", "\"qkv\"", "unknown LoRA target"),
            ("\"bias\": \"none\"", "\"bias\": \"all\"", "bias"),
        ] {
            std::fs::write(&config, text.replace(from, to)).unwrap();
            let err = load_adapter(&dir, &mut base).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(ADAPTER_CONFIG), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
