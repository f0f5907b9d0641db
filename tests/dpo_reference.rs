//! The DPO loss against PyTorch's autograd and TRL's own code.
//!
//! `tests/fixtures/dpo/` (its README and `make_dpo_ref.py` say how it was made) holds a
//! reference model (the `llama-tiny` fixture's weights plus seeded noise), six preference
//! pairs, and what PyTorch computed in float64 with the `llama-tiny` fixture as the policy:
//! each pair's summed answer log-probabilities, the mean loss in TRL's form (sigmoid,
//! β = 0.1) and in Llama 3's (ids 1 and 2 masked out, plus 0.2 times the chosen answers'
//! token-mean NLL), the reward accuracy, and the gradient of both losses with respect to
//! every policy parameter. The script also checked its loss against TRL's
//! `DPOTrainer._compute_loss`. We compute all of it in float32 and match it.

use std::path::{Path, PathBuf};

use llm_lessons::gpt::hf::{
    config_from_hf_json, load_llama, params_from_tensors, read_safetensors,
};
use llm_lessons::gpt::{Gpt, Params};
use llm_lessons::post::dpo::{dpo_loss_and_gradient, read_pairs, DpoConfig, DpoStats};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn models() -> (Gpt, Gpt) {
    let policy = load_llama(&dir().join("llama-tiny")).unwrap();
    let d = dir().join("dpo");
    let config_path = d.join("config.json");
    let cfg = config_from_hf_json(
        &std::fs::read_to_string(&config_path).unwrap(),
        &config_path,
    )
    .unwrap();
    let weights = d.join("reference.safetensors");
    let params = params_from_tensors(&cfg, read_safetensors(&weights).unwrap(), &weights).unwrap();
    (policy, Gpt::new(cfg, params).unwrap())
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("dpo/expected.json")).unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `grads` against `{prefix}.<name>` of the fixture, each within 1e-3 of its tensor's
/// largest value; returns the worst such ratio.
fn compare_grads(grads: &Params, prefix: &str) -> f64 {
    let want = read_safetensors(&dir().join("dpo/expected.safetensors")).unwrap();
    let mut worst = 0f64;
    let mut seen = 0;
    grads.visit(|spec, t| {
        let w = want
            .iter()
            .find(|x| x.name == format!("{prefix}.{}", spec.name))
            .unwrap_or_else(|| panic!("{prefix}.{} is not in the fixture", spec.name));
        let scale = w.data.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        assert!(scale > 0.0);
        let err = t
            .data
            .iter()
            .zip(&w.data)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        assert!(
            err <= 1e-3 * scale,
            "{}: off by {err:e}, largest {scale:e}",
            spec.name
        );
        worst = worst.max(err / scale);
        seen += 1;
    });
    assert_eq!(seen, 21);
    worst
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

fn check_logps(stats: &DpoStats, j: &Value, chosen: &str, rejected: &str) {
    let (c, r) = (floats(&j[chosen]), floats(&j[rejected]));
    for (k, &(pc, pr)) in stats.policy_logps.iter().enumerate() {
        assert!(
            (pc - c[k]).abs() < 1e-4 && (pr - r[k]).abs() < 1e-4,
            "pair {k}: {pc} {pr} vs {} {}",
            c[k],
            r[k]
        );
    }
}

#[test]
fn dpo_loss_and_gradient_equal_pytorch_in_trl_form() {
    let (policy, reference) = models();
    let pairs = read_pairs(&dir().join("dpo/pairs.jsonl")).unwrap();
    let j = expected();
    let cfg = DpoConfig {
        beta: j["beta"].as_f64().unwrap(),
        ..DpoConfig::trl()
    };
    let (stats, grads) = dpo_loss_and_gradient(&policy, &reference, &pairs, &cfg).unwrap();
    check_logps(&stats, &j, "policy_chosen_logps", "policy_rejected_logps");
    let want = j["loss"].as_f64().unwrap();
    assert!(
        rel(stats.loss, want) < 1e-5,
        "loss {} vs {want}",
        stats.loss
    );
    assert_eq!(
        stats.reward_accuracy,
        j["reward_accuracy"].as_f64().unwrap()
    );
    let worst = compare_grads(&grads, "grad");
    println!("TRL form: loss {} vs {want} (relative {:.1e}); gradients within {worst:.1e} of each tensor's largest", stats.loss, rel(stats.loss, want));
}

#[test]
fn dpo_loss_and_gradient_equal_pytorch_in_llama3_form() {
    let (policy, reference) = models();
    let pairs = read_pairs(&dir().join("dpo/pairs.jsonl")).unwrap();
    let j = expected();
    assert_eq!(j["formatting_ids"], serde_json::json!([1, 2]));
    let cfg = DpoConfig {
        beta: j["beta"].as_f64().unwrap(),
        nll_alpha: j["alpha"].as_f64().unwrap(),
        masked: &[1, 2],
    };
    let (stats, grads) = dpo_loss_and_gradient(&policy, &reference, &pairs, &cfg).unwrap();
    check_logps(
        &stats,
        &j,
        "policy_chosen_logps_masked",
        "policy_rejected_logps_masked",
    );
    for (ours, key) in [
        (stats.loss, "loss_llama3"),
        (stats.dpo, "dpo_loss_llama3"),
        (stats.nll, "nll_llama3"),
    ] {
        let want = j[key].as_f64().unwrap();
        assert!(rel(ours, want) < 1e-5, "{key}: {ours} vs {want}");
    }
    assert_eq!(
        stats.reward_accuracy,
        j["reward_accuracy_llama3"].as_f64().unwrap()
    );
    let worst = compare_grads(&grads, "grad_llama3");
    println!(
        "Llama 3 form: loss {} vs {} ; gradients within {worst:.1e}",
        stats.loss, j["loss_llama3"]
    );
}
