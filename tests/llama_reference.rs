//! The hand-written Llama against PyTorch and Hugging Face transformers.
//!
//! `tests/fixtures/llama-tiny/` was made by its `make_llama_reference.py` (kept beside it,
//! with a README saying how to run it) with PyTorch and transformers: a
//! random-weight `LlamaForCausalLM` (vocab 320, hidden 64, SwiGLU 176, 2 layers, 4 heads,
//! 2 key/value heads, RoPE theta 10000, untied head) in Hugging Face layout, a batch of
//! 2 x 16 tokens, and what PyTorch computed for it in float64 from the float32 weights:
//! logits, loss, every parameter's gradient, and the losses of ten AdamW steps. We load
//! the checkpoint by its Hugging Face names and match all of it, in float32, within the
//! reference's stated tolerances.
//!
//! `tests/fixtures/lora/` holds LoRA adapters that PEFT saved on that model, with the
//! logits, cross-entropy and adapter gradients PEFT computed (its README and
//! `benches/peers/peft_lora_ref.py` say how): we load PEFT's files and match them.

use llm_lessons::gpt::hf::{load_llama, read_safetensors, NamedTensor};
use llm_lessons::gpt::optim::{AdamW, AdamWConfig};
use llm_lessons::gpt::peft::load_adapter;
use llm_lessons::gpt::{Activations, Gpt, Params};
mod common;
use common::rel_max_diff;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-tiny")
}

struct Reference {
    inputs: Vec<u32>,
    targets: Vec<u32>,
    b: usize,
    t: usize,
    loss: f32,
    losses_before_each_step: Vec<f32>,
    adamw: AdamWConfig,
    lr: f32,
    tensors: HashMap<String, NamedTensor>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(j[key].clone()).unwrap() };
    let (inputs, targets) = (rows("inputs"), rows("targets"));
    let a = &j["adamw"];
    assert!(a["clip"].is_null() && a["schedule"] == "constant");
    let f = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
    let tensors = read_safetensors(&fixture().join("expected.safetensors")).unwrap();
    Reference {
        b: inputs.len(),
        t: inputs[0].len(),
        inputs: inputs.concat(),
        targets: targets.concat(),
        loss: f(&j["loss"]),
        losses_before_each_step: j["losses_before_each_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect(),
        adamw: AdamWConfig {
            beta1: f(&a["betas"][0]),
            beta2: f(&a["betas"][1]),
            eps: f(&a["eps"]),
            weight_decay: f(&a["weight_decay"]),
        },
        lr: f(&a["lr"]),
        tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
    }
}

fn model_and_batch() -> (Gpt, Reference, Activations) {
    let model = load_llama(&fixture()).unwrap();
    let r = reference();
    let acts = Activations::new(&model.cfg, r.b, r.t);
    (model, r, acts)
}

#[test]
fn config_and_weights_load_by_hugging_face_names() {
    let (model, _, _) = model_and_batch();
    let c = &model.cfg;
    assert_eq!(
        (c.vocab_size, c.d_model, c.d_ff, c.n_layers),
        (320, 64, 176, 2)
    );
    assert_eq!((c.n_heads, c.n_kv_heads, c.tied_head), (4, 2, false));
    let weights = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let q = weights
        .iter()
        .find(|t| t.name == "model.layers.1.self_attn.q_proj.weight")
        .unwrap();
    assert_eq!(q.shape, [64, 64]);
    assert_eq!(
        q.data,
        model.params.blocks[1].attn.mha().unwrap().q_proj.f32().data
    );
}

#[test]
fn logits_and_loss_match_pytorch() {
    let (model, r, mut acts) = model_and_batch();
    let loss = model
        .forward_loss(&mut acts, &r.inputs, &r.targets)
        .unwrap();
    let logits = &r.tensors["logits"];
    assert_eq!(logits.shape, [r.b, r.t, model.cfg.vocab_size]);
    let err = rel_max_diff(&acts.logits, &logits.data);
    assert!(err < 1e-4, "logits differ by {err:.2e} of their max");
    assert!(
        ((loss - r.loss) / r.loss).abs() < 1e-4,
        "loss {loss} vs {}",
        r.loss
    );
    assert!(((loss - r.tensors["loss"].data[0]) / r.loss).abs() < 1e-4);
    eprintln!(
        "logits: {err:.1e} of max; loss {loss} vs PyTorch {}",
        r.loss
    );
}

#[test]
fn every_gradient_matches_pytorch() {
    let (model, r, mut acts) = model_and_batch();
    model
        .forward_loss(&mut acts, &r.inputs, &r.targets)
        .unwrap();
    let mut grads = Params::zeros(&model.cfg);
    model.backward(&mut acts, &mut grads).unwrap();
    let specs = Params::specs(&model.cfg);
    assert_eq!(specs.len(), 2 + 2 * 9 + 1, "embed, 9 per layer, norm, head");
    let mut worst = 0.0f64;
    for (spec, g) in specs.iter().zip(grads.tensors()) {
        let theirs = &r.tensors[&format!("grad.{}", spec.name)];
        assert_eq!(theirs.shape, spec.shape, "{}", spec.name);
        let err = rel_max_diff(g, &theirs.data);
        assert!(
            err < 1e-3,
            "gradient of {} differs by {err:.2e} of its max",
            spec.name
        );
        worst = worst.max(err);
    }
    eprintln!(
        "gradients: worst {worst:.1e} of max, over {} tensors",
        specs.len()
    );
}

#[test]
fn ten_adamw_steps_match_pytorch() {
    let (mut model, r, mut acts) = model_and_batch();
    let mut opt = AdamW::new(&model.params, r.adamw);
    let mut grads = Params::zeros(&model.cfg);
    for (step, &expected) in r.losses_before_each_step.iter().enumerate() {
        let loss = model
            .forward_loss(&mut acts, &r.inputs, &r.targets)
            .unwrap();
        let err = ((loss - expected) / expected).abs();
        eprintln!("step {step}: loss {loss:.6} PyTorch {expected:.6} ({err:.1e})");
        assert!(err < 1e-3, "step {step}: loss {loss} vs {expected}");
        grads.zero();
        model.backward(&mut acts, &mut grads).unwrap();
        opt.step(&mut model.params, &grads, r.lr);
    }
}

fn lora_case(case: &str) -> (PathBuf, serde_json::Value) {
    let dir = fixture().join("../lora").join(case);
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    (dir, serde_json::from_str(&text).unwrap())
}

fn largest(t: &[f32]) -> f32 {
    t.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// PEFT's adapters, loaded from PEFT's own files: the adapted logits within 1e-5 of the
/// largest logit, the mean cross-entropy within 1e-5 relative, PEFT's scaling (alpha / r,
/// and alpha / sqrt r with rsLoRA on all seven projections), and for `qv` the gradient of
/// every `A` and `B` within 1e-4 of each tensor's largest value.
#[test]
fn lora_adapters_equal_peft() {
    for case in ["qv", "rslora_all", "init"] {
        let (dir, r) = lora_case(case);
        let mut model = load_llama(&fixture()).unwrap();
        let cfg = load_adapter(&dir, &mut model.params).unwrap();
        assert!(
            (cfg.scale() as f64 - r["scaling"].as_f64().unwrap()).abs() < 1e-6,
            "{case}"
        );
        let ids: Vec<u32> = serde_json::from_value(r["token_ids"].clone()).unwrap();
        let t = ids.len();
        let expected = read_safetensors(&dir.join("logits.safetensors")).unwrap();
        let want = &expected.iter().find(|x| x.name == "logits").unwrap().data;
        let mut acts = Activations::new(&model.cfg, 1, t);
        model.forward(&mut acts, &ids).unwrap();
        let worst = acts
            .logits
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5 * largest(want),
            "{case}: logits off by {worst}"
        );
        let mut acts = Activations::new(&model.cfg, 1, t - 1);
        let ce = model
            .forward_loss(&mut acts, &ids[..t - 1], &ids[1..])
            .unwrap() as f64;
        let want_ce = r["mean_ce"].as_f64().unwrap();
        assert!(
            (ce - want_ce).abs() <= 1e-5 * want_ce,
            "{case}: CE {ce} vs PEFT's {want_ce}"
        );
        eprintln!("{case}: logits within {worst:.1e}, CE {ce:.7} vs PEFT's {want_ce:.7}");
        if case == "qv" {
            let mut grads = model.params.grads();
            model.backward(&mut acts, &mut grads).unwrap();
            let want: HashMap<String, NamedTensor> =
                read_safetensors(&dir.join("adapter_grads.safetensors"))
                    .unwrap()
                    .into_iter()
                    .map(|t| (t.name.clone(), t))
                    .collect();
            let mut checked = 0;
            let specs = grads.param_specs();
            for (spec, g) in specs.iter().zip(grads.tensors()) {
                if let Some(w) = want.get(&format!("base_model.model.{}", spec.name)) {
                    let worst = g
                        .iter()
                        .zip(&w.data)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst <= 1e-4 * largest(&w.data),
                        "{}: off by {worst}",
                        spec.name
                    );
                    let rel = worst / largest(&w.data);
                    eprintln!("{}: gradient within {rel:.1e} of its largest", spec.name);
                    checked += 1;
                }
            }
            assert_eq!(checked, want.len(), "every adapter gradient PEFT gave");
        }
        if case == "init" {
            // PEFT's own start: B zero, and A within the Kaiming-uniform bound 1 / sqrt(d_in)
            let bound = llm_lessons::gpt::lora::kaiming_bound(64);
            model.params.visit(|spec, t| {
                if spec.name.contains("lora_B") {
                    assert!(t.iter().all(|&x| x == 0.0), "{}", spec.name);
                } else if spec.name.contains("lora_A") {
                    let max = largest(t);
                    assert!(
                        max <= bound && max > 0.98 * bound,
                        "{}: {max} vs {bound}",
                        spec.name
                    );
                }
            });
        }
    }
}
