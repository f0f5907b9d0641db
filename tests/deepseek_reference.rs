//! The hand-written DeepSeek-V3 (MLA and DeepSeekMoE) against PyTorch and Hugging Face
//! transformers.
//!
//! `tests/fixtures/deepseek-tiny/` was made by `make_deepseek_reference.py` (kept there)
//! with torch 2.15 and transformers 5.23.0: a random-weight `DeepseekV3ForCausalLM` (vocab
//! 320, hidden 64, 2 layers, 4 heads; MLA with `q_lora_rank` 32, `kv_lora_rank` 16,
//! `qk_nope_head_dim` 16, `qk_rope_head_dim` 8, `v_head_dim` 16, interleaved RoPE; layer 0
//! a dense SwiGLU of 128, layer 1 an MoE of 4 routed experts of 32, top-2, one shared
//! expert) whose selection bias is non-zero (it changes the chosen pair of experts for 11
//! of the 32 tokens), a batch of 2 x 16 tokens, and what PyTorch computed in float64 from
//! the float32 weights: logits, loss, every gradient, the MoE layer's choices and gates,
//! and the losses of ten AdamW steps. Tolerances as for the Llama reference
//! (`tests/llama_reference.rs`).

use llm_lessons::gpt::checkpoint::{load_model, save};
use llm_lessons::gpt::hf::{read_safetensors, NamedTensor};
use llm_lessons::gpt::optim::{AdamW, AdamWConfig};
use llm_lessons::gpt::{Activations, Gpt, MlpParams};
mod common;
use common::rel_max_diff;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deepseek-tiny")
}

struct Reference {
    j: serde_json::Value,
    inputs: Vec<u32>,
    targets: Vec<u32>,
    b: usize,
    t: usize,
    loss: f32,
    tensors: HashMap<String, NamedTensor>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| -> Vec<Vec<u32>> { serde_json::from_value(j[key].clone()).unwrap() };
    let (inputs, targets) = (rows("inputs"), rows("targets"));
    let tensors = read_safetensors(&fixture().join("expected.safetensors")).unwrap();
    Reference {
        b: inputs.len(),
        t: inputs[0].len(),
        inputs: inputs.concat(),
        targets: targets.concat(),
        loss: j["loss"].as_f64().unwrap() as f32,
        tensors: tensors.into_iter().map(|t| (t.name.clone(), t)).collect(),
        j,
    }
}

fn model_and_batch() -> (Gpt, Reference, Activations) {
    let model = load_model(&fixture()).unwrap();
    let r = reference();
    let acts = Activations::new(&model.cfg, r.b, r.t);
    (model, r, acts)
}

#[test]
fn config_and_weights_load_by_hugging_face_names() {
    let (model, _, _) = model_and_batch();
    let c = &model.cfg;
    assert_eq!(
        (c.vocab_size, c.d_model, c.n_layers, c.n_heads),
        (320, 64, 2, 4)
    );
    let m = c.mla.unwrap();
    assert_eq!(
        (
            m.q_lora_rank,
            m.kv_lora_rank,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim
        ),
        (Some(32), 16, 16, 8, 16)
    );
    assert!(m.rope_interleave);
    let e = c.moe.unwrap();
    assert_eq!(
        (e.n_routed, e.n_shared, e.top_k, e.d_expert, e.first_dense),
        (4, 1, 2, 32, 1)
    );
    assert!(c.mtp.is_none(), "num_nextn_predict_layers is 0");
    // the MLA cache: d_c + d_h^R = 16 + 8 numbers per token and layer
    assert_eq!(c.cache_floats_per_token(), 24);
    let MlpParams::Moe(moe) = &model.params.blocks[1].mlp else {
        panic!("layer 1 is the MoE")
    };
    assert!(!moe.bias.trainable, "the selection bias is a buffer");
    let weights = read_safetensors(&fixture().join("model.safetensors")).unwrap();
    let bias = weights
        .iter()
        .find(|t| t.name == "model.layers.1.mlp.gate.e_score_correction_bias")
        .unwrap();
    assert_eq!(bias.data, moe.bias.data);
}

#[test]
fn logits_loss_and_expert_choices_match_pytorch() {
    let (model, r, mut acts) = model_and_batch();
    let loss = model
        .forward_loss(&mut acts, &r.inputs, &r.targets)
        .unwrap();
    // the experts first: a wrong choice would explain any difference below
    let moe = &r.j["moe"]["model.layers.1"];
    let want_ids: Vec<Vec<Vec<usize>>> = serde_json::from_value(moe["topk_ids"].clone()).unwrap();
    let k = model.cfg.moe.unwrap().top_k;
    let ours = &acts.layers[1].moe;
    let mut weights = Vec::new();
    for (i, want) in want_ids.concat().iter().enumerate() {
        let mut pairs: Vec<(usize, f32)> = ours.ids[i * k..][..k]
            .iter()
            .copied()
            .zip(ours.gates[i * k..][..k].iter().copied())
            .collect();
        pairs.sort_by_key(|p| p.0);
        let ids: Vec<usize> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(&ids, want, "token {i}: experts {ids:?}, PyTorch {want:?}");
        weights.extend(pairs.iter().map(|p| p.1));
    }
    let gate_err = rel_max_diff(&weights, &r.tensors["topk_weights.model.layers.1"].data);
    assert!(gate_err < 1e-5, "gates differ by {gate_err:.1e}");
    let scores: Vec<f32> = r.tensors["router_logits.model.layers.1"]
        .data
        .iter()
        .map(|u| 1.0 / (1.0 + (-u).exp()))
        .collect();
    let score_err = rel_max_diff(&ours.scores, &scores);
    assert!(score_err < 1e-5, "sigmoid scores differ by {score_err:.1e}");
    let err = rel_max_diff(&acts.logits, &r.tensors["logits"].data);
    assert!(err < 1e-4, "logits differ by {err:.2e} of their max");
    assert!(
        ((loss - r.loss) / r.loss).abs() < 1e-4,
        "loss {loss} vs {}",
        r.loss
    );
    eprintln!(
        "experts: all 32 tokens' choices equal; gates {gate_err:.1e}; logits {err:.1e} of max; \
         loss {loss} vs PyTorch {}",
        r.loss
    );
}

#[test]
fn every_gradient_matches_pytorch() {
    let (model, r, mut acts) = model_and_batch();
    model
        .forward_loss(&mut acts, &r.inputs, &r.targets)
        .unwrap();
    let mut grads = model.params.grads();
    model.backward(&mut acts, &mut grads).unwrap();
    let mut worst = 0.0f64;
    let mut checked = 0;
    grads.visit(|spec, g| {
        if !spec.trainable {
            assert!(
                spec.name.ends_with("e_score_correction_bias"),
                "{}",
                spec.name
            );
            return;
        }
        let theirs = &r.tensors[&format!("grad.{}", spec.name)];
        assert_eq!(theirs.shape, spec.shape, "{}", spec.name);
        let err = rel_max_diff(g, &theirs.data);
        assert!(
            err < 1e-3,
            "gradient of {} differs by {err:.2e} of its max",
            spec.name
        );
        worst = worst.max(err);
        checked += 1;
    });
    let expected = r.tensors.keys().filter(|k| k.starts_with("grad.")).count();
    assert_eq!(checked, expected, "every tensor PyTorch has a gradient for");
    eprintln!("gradients: worst {worst:.1e} of max, over {checked} tensors");
}

#[test]
fn ten_adamw_steps_match_pytorch() {
    let (mut model, r, mut acts) = model_and_batch();
    let a = &r.j["adamw"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
    let cfg = AdamWConfig {
        beta1: f(&a["betas"][0]),
        beta2: f(&a["betas"][1]),
        eps: f(&a["eps"]),
        weight_decay: f(&a["weight_decay"]),
    };
    let mut opt = AdamW::new(&model.params, cfg);
    let mut grads = model.params.grads();
    let want: Vec<f32> = r.j["losses_before_each_step"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    // transformers keeps the bias fixed (it implements no balancing): so does this loop,
    // which calls no Gpt::balance_experts
    for (step, &expected) in want.iter().enumerate() {
        let loss = model
            .forward_loss(&mut acts, &r.inputs, &r.targets)
            .unwrap();
        let err = ((loss - expected) / expected).abs();
        eprintln!("step {step}: loss {loss:.6} PyTorch {expected:.6} ({err:.1e})");
        assert!(err < 1e-3, "step {step}: loss {loss} vs {expected}");
        grads.zero();
        model.backward(&mut acts, &mut grads).unwrap();
        opt.step(&mut model.params, &grads, f(&a["lr"]));
    }
}

#[test]
fn saved_as_hugging_face_and_read_back() {
    let (model, r, mut acts) = model_and_batch();
    let dir = std::env::temp_dir().join(format!("llm-lessons-deepseek-{}", std::process::id()));
    save(&dir, &model, None).unwrap();
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap())
            .unwrap();
    for key in [
        "model_type",
        "hidden_size",
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
        "qk_head_dim",
        "head_dim",
        "n_routed_experts",
        "n_shared_experts",
        "num_experts_per_tok",
        "moe_intermediate_size",
        "first_k_dense_replace",
        "rope_interleave",
        "num_nextn_predict_layers",
    ] {
        assert_eq!(j[key], theirs[key], "config.json field {key}");
    }
    let back = load_model(&dir).unwrap();
    assert_eq!(back.params, model.params);
    let loss = back.forward_loss(&mut acts, &r.inputs, &r.targets).unwrap();
    assert!(((loss - r.loss) / r.loss).abs() < 1e-4);
    std::fs::remove_dir_all(&dir).unwrap();
}
