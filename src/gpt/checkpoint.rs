//! Checkpoints: a model, and optionally the state of its training run, in a directory.
//!
//! - `model.safetensors`: the parameters with Hugging Face Llama names ([`Params::specs`]);
//! - `config.json`: Hugging Face's `LlamaConfig` for a Llama-architecture model, so that
//!   `transformers.LlamaForCausalLM.from_pretrained(dir)` loads it; for any other mix of
//!   switches (GPT-2), `{"model_type": "llm-lessons-gpt", "config": {...}}`;
//! - `trainer.safetensors` and `trainer.json`, when a run is saved: AdamW's moments
//!   (`m.<name>`, `v.<name>`), its step count, the run's settings and the window sampler's
//!   position, which is all [`Trainer::resume`] needs to go on as if never stopped.
//!
//! Every file is written atomically (a temporary file, then a rename).

use super::config::GptConfig;
use super::hf::{
    config_from_hf_json, config_to_hf_json, params_from_tensors, read_safetensors,
    tensors_to_safetensors,
};
use super::model::{Gpt, Params};
use super::optim::AdamW;
use super::train::{TrainConfig, Trainer};
use crate::data::write_atomic;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

const OWN_MODEL_TYPE: &str = "llm-lessons-gpt";

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes the model (and the run, with `trainer`) into `dir`, created if needed.
pub fn save(dir: &Path, model: &Gpt, trainer: Option<&Trainer>) -> Result<()> {
    // safetensors holds f32 tensors here: a quantized weight would be missing
    model.params.check_f32("saving a safetensors checkpoint")?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Write {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let config = match config_to_hf_json(&model.cfg) {
        Ok(hf) => hf,
        Err(_) => serde_json::to_string_pretty(
            &json!({"model_type": OWN_MODEL_TYPE, "config": model.cfg}),
        )
        .expect("a config serialises"),
    };
    // with LoRA adapters (chapter 5): the base as the model, the adapters as PEFT saves
    // them beside it, so that the folder is both a model and an adapter on that model
    let lora = model.params.lora_config()?;
    let weights = match &lora {
        None => super::hf::params_to_safetensors(&model.cfg, &model.params)?,
        Some(_) => {
            let mut base = Vec::new();
            model.params.visit(|s, t| {
                if !is_adapter_tensor(&s.name) {
                    base.push((s.name, s.shape, &t.data[..]));
                }
            });
            tensors_to_safetensors(base)?
        }
    };
    write_atomic(&dir.join("model.safetensors"), &weights)?;
    write_atomic(&dir.join("config.json"), config.as_bytes())?;
    if let Some(lora) = &lora {
        super::peft::save_adapter(dir, &model.params, lora, ".")?;
    }
    if let Some(t) = trainer {
        let specs = model.params.param_specs();
        let mut moments = Vec::with_capacity(2 * specs.len());
        for (s, (m, v)) in specs.iter().zip(t.opt.m.iter().zip(&t.opt.v)) {
            if s.trainable {
                moments.push((format!("m.{}", s.name), s.shape.clone(), &m[..]));
                moments.push((format!("v.{}", s.name), s.shape.clone(), &v[..]));
            }
        }
        write_atomic(
            &dir.join("trainer.safetensors"),
            &tensors_to_safetensors(moments)?,
        )?;
        let state = json!({
            "step": t.step,
            "adamw_steps": t.opt.t,
            "sampler_position": t.sampler_position().to_string(),
            "train_config": t.config,
            "frozen": frozen_names(&model.params),
            "stages": t.stages,
        });
        write_atomic(
            &dir.join("trainer.json"),
            serde_json::to_string_pretty(&state)
                .expect("JSON")
                .as_bytes(),
        )?;
    }
    Ok(())
}

/// The model saved in `dir` (by [`save`], or by Hugging Face for a Llama).
pub fn load_model(dir: &Path) -> Result<Gpt> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let j: Value =
        serde_json::from_str(&text).map_err(|e| bad(&config_path, format!("not JSON: {e}")))?;
    let cfg: GptConfig = if j.get("model_type").and_then(Value::as_str) == Some(OWN_MODEL_TYPE) {
        serde_json::from_value(j["config"].clone())
            .map_err(|e| bad(&config_path, format!("config: {e}")))?
    } else {
        config_from_hf_json(&text, &config_path)?
    };
    cfg.validate()
        .map_err(|e| bad(&config_path, e.to_string()))?;
    let weights = dir.join("model.safetensors");
    let params = params_from_tensors(&cfg, read_safetensors(&weights)?, &weights)?;
    Gpt::new(cfg, params)
}

fn is_adapter_tensor(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// The model of a run's checkpoint in `dir`: [`load_model`], with the LoRA adapters saved
/// beside it (`adapter_config.json`, `adapter_model.safetensors`) put back on when there
/// are, and the base frozen as their run froze it.
pub fn load_run_model(dir: &Path) -> Result<Gpt> {
    let mut model = load_model(dir)?;
    if dir.join(super::peft::ADAPTER_CONFIG).exists() {
        super::peft::load_adapter(dir, &mut model.params)?;
    }
    Ok(model)
}

/// The training run saved in `dir` with `model`, ready to continue.
pub fn load_trainer(dir: &Path, model: &Gpt) -> Result<Trainer> {
    let path = dir.join("trainer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let j: Value = serde_json::from_str(&text).map_err(|e| bad(&path, format!("not JSON: {e}")))?;
    let field = |key: &str| {
        j.get(key)
            .ok_or_else(|| bad(&path, format!("{key} is missing")))
    };
    let step = field("step")?
        .as_u64()
        .ok_or_else(|| bad(&path, "step is not a whole number"))? as usize;
    let adamw_steps = field("adamw_steps")?
        .as_u64()
        .ok_or_else(|| bad(&path, "adamw_steps is not a whole number"))?;
    let position: u128 = field("sampler_position")?
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&path, "sampler_position is not a whole number in a string"))?;
    let config: TrainConfig = serde_json::from_value(field("train_config")?.clone())
        .map_err(|e| bad(&path, format!("train_config: {e}")))?;
    // a run that froze tensors resumes with the same ones frozen (older runs froze none)
    let frozen = frozen_field(&j, &path)?;
    if frozen != frozen_names(&model.params) {
        return Err(bad(
            &path,
            format!(
                "the run froze {frozen:?}, the model freezes {:?}: freeze the same tensors \
                 (Params::set_trainable) before resuming",
                frozen_names(&model.params)
            ),
        ));
    }
    let mut opt = AdamW::new(&model.params, config.adamw);
    opt.t = adamw_steps as u32;
    let moments_path = dir.join("trainer.safetensors");
    let mut by_name: std::collections::HashMap<String, Vec<f32>> = read_safetensors(&moments_path)?
        .into_iter()
        .map(|t| (t.name, t.data))
        .collect();
    for (s, (m, v)) in model
        .params
        .param_specs()
        .iter()
        .zip(opt.m.iter_mut().zip(opt.v.iter_mut()))
        .filter(|(s, _)| s.trainable)
    {
        for (prefix, slot) in [("m", m), ("v", v)] {
            let name = format!("{prefix}.{}", s.name);
            let data = by_name
                .remove(&name)
                .ok_or_else(|| bad(&moments_path, format!("{name} is missing")))?;
            if data.len() != slot.len() {
                return Err(bad(
                    &moments_path,
                    format!("{name} has {} values, not {}", data.len(), slot.len()),
                ));
            }
            slot.copy_from_slice(&data);
        }
    }
    let mut trainer = Trainer::resume(model, config, opt, step, position)?;
    // runs saved before stages existed had none
    if let Some(stages) = j.get("stages") {
        trainer.stages = serde_json::from_value(stages.clone())
            .map_err(|e| bad(&path, format!("stages: {e}")))?;
    }
    Ok(trainer)
}

/// The names of the tensors that the run saved in `dir` froze (none for a run that
/// trained them all, or one saved before tensors could be frozen).
pub fn frozen_in(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("trainer.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let j: Value = serde_json::from_str(&text).map_err(|e| bad(&path, format!("not JSON: {e}")))?;
    frozen_field(&j, &path)
}

fn frozen_field(j: &Value, path: &Path) -> Result<Vec<String>> {
    match j.get("frozen") {
        None => Ok(Vec::new()),
        Some(f) => serde_json::from_value(f.clone())
            .map_err(|e| bad(path, format!("frozen is not a list of names: {e}"))),
    }
}

/// The names of the frozen tensors, in [`Params::visit`] order.
fn frozen_names(params: &Params) -> Vec<String> {
    let mut names = Vec::new();
    params.visit(|s, _| {
        if !s.trainable {
            names.push(s.name)
        }
    });
    names
}

// ANCHOR: average
/// Checkpoint averaging: the element-wise mean of the weights of several checkpoints of
/// one run. Llama 3 averages the checkpoints of its last steps; the mean of nearby points
/// on the loss surface usually sits lower than each of them (the weights of the last steps
/// wander around a minimum, and their mean is nearer its centre).
pub fn average(models: &[Gpt]) -> Result<Gpt> {
    let first = models
        .first()
        .ok_or_else(|| Error::InvalidArgument("no checkpoint to average".into()))?;
    if let Some(other) = models.iter().find(|m| m.cfg != first.cfg) {
        return Err(Error::InvalidArgument(format!(
            "checkpoints of different models cannot be averaged: {:?} vs {:?}",
            first.cfg, other.cfg
        )));
    }
    let names =
        |m: &Gpt| -> Vec<String> { m.params.param_specs().into_iter().map(|s| s.name).collect() };
    if let Some(other) = models.iter().find(|m| names(m) != names(first)) {
        return Err(Error::InvalidArgument(format!(
            "checkpoints with other tensors (adapters) cannot be averaged: {} vs {} tensors",
            names(first).len(),
            names(other).len()
        )));
    }
    // the first model's structure (adapters included), every value then replaced
    let mut mean = first.params.clone();
    let k = models.len() as f64;
    let sources: Vec<Vec<&[f32]>> = models.iter().map(|m| m.params.tensors()).collect();
    for (i, acc) in mean.tensors_mut().into_iter().enumerate() {
        for (j, a) in acc.iter_mut().enumerate() {
            // f64 sum: the mean of k equal values is that value exactly
            let sum: f64 = sources.iter().map(|t| t[i][j] as f64).sum();
            *a = (sum / k) as f32;
        }
    }
    Gpt::new(first.cfg.clone(), mean)
}
// ANCHOR_END: average

/// The mean of the checkpoints saved in `dirs` (see [`average`]).
pub fn load_average(dirs: &[std::path::PathBuf]) -> Result<Gpt> {
    let models = dirs
        .iter()
        .map(|d| load_run_model(d))
        .collect::<Result<Vec<_>>>()?;
    average(&models)
}

/// Name of the checkpoint folder of step `step` under a run's `checkpoints/` folder.
pub fn step_dir_name(step: usize) -> String {
    format!("step-{step:07}")
}

/// Saves a run's checkpoint as the folder `dir`, whole or not at all: the files go to a
/// temporary sibling folder that is renamed to `dir` once complete, so that a crash never
/// leaves a folder with new weights and an old optimizer. `extra` files (a run's log, its
/// data fingerprint) are written with it.
pub fn save_checkpoint_dir(
    dir: &Path,
    model: &Gpt,
    trainer: &Trainer,
    extra: &[(&str, &[u8])],
) -> Result<()> {
    let name = dir
        .file_name()
        .ok_or_else(|| bad(dir, "a checkpoint folder needs a name"))?
        .to_string_lossy();
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let io = |p: &Path, e| Error::Write {
        path: p.to_path_buf(),
        source: e,
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    save(&tmp, model, Some(trainer))?;
    for (file, bytes) in extra {
        write_atomic(&tmp.join(file), bytes)?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| io(dir, e))
}

/// The checkpoint folders `step-NNNNNNN` under `root`, by step.
pub fn step_dirs(root: &Path) -> Result<Vec<(usize, std::path::PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse().ok()) {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::optim::{AdamWConfig, Decay, LrSchedule};

    fn run_config() -> TrainConfig {
        TrainConfig {
            batch: 2,
            seq_len: 8,
            schedule: LrSchedule {
                max_lr: 3e-3,
                min_lr: 0.0,
                warmup: 2,
                total: 10,
                anneal: 3,
                decay: Decay::Cosine,
            },
            adamw: AdamWConfig::default(),
            clip: Some(1.0),
            seed: 9,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("llm-lessons-{name}-{}", std::process::id()))
    }

    /// Ten steps in one go, or five, a checkpoint, a fresh process's load, and five more:
    /// the same losses and the same final weights, to the bit.
    #[test]
    fn resuming_gives_the_run_without_the_interruption() {
        for cfg in [GptConfig::gpt2_tiny(), GptConfig::llama_tiny()] {
            let cfg = shrunk(cfg, [30, 16, 2, 24, 8]);
            let data: Vec<u32> = (0..200).map(|i| (i * 11 % 30) as u32).collect();
            let mut model = Gpt::init(cfg.clone(), 1).unwrap();
            let mut trainer = Trainer::new(&model, run_config()).unwrap();
            let straight: Vec<f32> = (0..10)
                .map(|_| trainer.step(&mut model, &data).unwrap().loss)
                .collect();

            let mut model2 = Gpt::init(cfg.clone(), 1).unwrap();
            let mut trainer2 = Trainer::new(&model2, run_config()).unwrap();
            let mut resumed: Vec<f32> = (0..5)
                .map(|_| trainer2.step(&mut model2, &data).unwrap().loss)
                .collect();
            let dir = temp_dir("resume");
            save(&dir, &model2, Some(&trainer2)).unwrap();
            drop((model2, trainer2));
            let mut model3 = load_model(&dir).unwrap();
            let mut trainer3 = load_trainer(&dir, &model3).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            resumed.extend((0..5).map(|_| trainer3.step(&mut model3, &data).unwrap().loss));
            assert_eq!(straight, resumed, "{cfg:?}");
            assert_eq!(model.params, model3.params);
            assert_eq!(model3.cfg, cfg);
        }
    }

    /// A run that trains only the head saves moments for the head only, and resumes bit
    /// for bit once the loaded model freezes the same tensors; without them, a clear error.
    #[test]
    fn a_frozen_run_resumes_with_the_same_tensors_frozen() {
        let cfg = shrunk(GptConfig::llama_tiny(), [30, 16, 2, 24, 8]);
        let data: Vec<u32> = (0..200).map(|i| (i * 11 % 30) as u32).collect();
        let head_only = |p: &mut Params| p.set_trainable(|name| name == "lm_head.weight");
        let mut model = Gpt::init(cfg.clone(), 1).unwrap();
        head_only(&mut model.params);
        let mut trainer = Trainer::new(&model, run_config()).unwrap();
        let straight: Vec<f32> = (0..6)
            .map(|_| trainer.step(&mut model, &data).unwrap().loss)
            .collect();

        let mut model2 = Gpt::init(cfg, 1).unwrap();
        head_only(&mut model2.params);
        let mut trainer2 = Trainer::new(&model2, run_config()).unwrap();
        let mut resumed: Vec<f32> = (0..3)
            .map(|_| trainer2.step(&mut model2, &data).unwrap().loss)
            .collect();
        let dir = temp_dir("frozen");
        save(&dir, &model2, Some(&trainer2)).unwrap();
        let moments = read_safetensors(&dir.join("trainer.safetensors")).unwrap();
        let names: Vec<&str> = moments.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"m.lm_head.weight") && names.contains(&"v.lm_head.weight"));
        let mut model3 = load_model(&dir).unwrap();
        let err = load_trainer(&dir, &model3).unwrap_err().to_string();
        assert!(err.contains("freeze the same tensors"), "{err}");
        head_only(&mut model3.params);
        let mut trainer3 = load_trainer(&dir, &model3).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        resumed.extend((0..3).map(|_| trainer3.step(&mut model3, &data).unwrap().loss));
        assert_eq!(straight, resumed);
        assert_eq!(model.params, model3.params);
    }

    #[test]
    fn a_missing_or_damaged_run_is_an_error() {
        let cfg = shrunk(GptConfig::llama_tiny(), [30, 16, 1, 24, 8]);
        let model = Gpt::init(cfg, 1).unwrap();
        let dir = temp_dir("damaged");
        save(&dir, &model, None).unwrap();
        assert!(load_trainer(&dir, &model)
            .unwrap_err()
            .to_string()
            .contains("trainer.json"));
        let trainer = Trainer::new(&model, run_config()).unwrap();
        save(&dir, &model, Some(&trainer)).unwrap();
        let moments = std::fs::read(dir.join("trainer.safetensors")).unwrap();
        std::fs::write(
            dir.join("trainer.safetensors"),
            &moments[..moments.len() / 2],
        )
        .unwrap();
        let err = load_trainer(&dir, &model).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("trainer.safetensors"), "{err}");
    }

    #[test]
    fn averaging_takes_the_mean_of_each_weight() {
        let cfg = shrunk(GptConfig::gpt2_tiny(), [20, 8, 1, 16, 8]);
        let a = Gpt::init(cfg.clone(), 1).unwrap();
        let b = Gpt::init(cfg.clone(), 2).unwrap();
        let mean = average(&[a.clone(), b.clone()]).unwrap();
        for ((m, x), y) in mean
            .params
            .tensors()
            .iter()
            .zip(a.params.tensors())
            .zip(b.params.tensors())
        {
            for ((&m, &x), &y) in m.iter().zip(x).zip(y) {
                assert!(
                    (m - (x + y) / 2.0).abs() <= 1e-7 * (1.0 + m.abs()),
                    "{m} {x} {y}"
                );
            }
        }
        assert_eq!(
            average(&[a.clone(), a.clone(), a.clone()]).unwrap().params,
            a.params
        );
        assert!(average(&[]).is_err());
        let mut other = cfg;
        other.d_ff = 24;
        let c = Gpt::init(other, 1).unwrap();
        assert!(average(&[a, c])
            .unwrap_err()
            .to_string()
            .contains("different models"));
    }

    #[test]
    fn checkpoint_folders_are_written_whole_and_listed_by_step() {
        let cfg = shrunk(GptConfig::llama_tiny(), [30, 16, 1, 24, 8]);
        let model = Gpt::init(cfg, 1).unwrap();
        let trainer = Trainer::new(&model, run_config()).unwrap();
        let root = temp_dir("stepdirs");
        for step in [20, 3, 100] {
            let dir = root.join(step_dir_name(step));
            save_checkpoint_dir(&dir, &model, &trainer, &[("note.txt", b"hi")]).unwrap();
        }
        // written again over an existing folder
        save_checkpoint_dir(&root.join(step_dir_name(3)), &model, &trainer, &[]).unwrap();
        let steps: Vec<usize> = step_dirs(&root).unwrap().iter().map(|s| s.0).collect();
        assert_eq!(steps, [3, 20, 100]);
        assert!(root.join("step-0000020/note.txt").exists());
        assert!(!root.join("step-0000003/note.txt").exists());
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
        let back = load_model(&root.join(step_dir_name(100))).unwrap();
        assert_eq!(back.params, model.params);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(step_dirs(&root).unwrap().is_empty());
    }
}
