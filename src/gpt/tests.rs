//! Whole-model tests: the gradient of the loss with respect to every parameter tensor,
//! against finite differences, for both architectures and for mixes of their switches.

use super::gradcheck::{accumulated, on_grid, try_check, try_check_with_floor, Rng, EPS};
use super::{Activations, Gpt, GptConfig, Mlp, Norm, Params, Positions};

/// A model small enough to check number by number.
fn tiny(
    norm: Norm,
    positions: Positions,
    n_kv_heads: usize,
    mlp: Mlp,
    tied_head: bool,
) -> GptConfig {
    GptConfig {
        vocab_size: 11,
        d_model: 8,
        n_layers: 2,
        n_heads: 2,
        n_kv_heads,
        d_ff: 12,
        context: 8,
        norm,
        positions,
        mlp,
        tied_head,
        mla: None,
        moe: None,
        mtp: None,
    }
}

/// Weights large enough that attention is far from uniform and every layer is nonlinear:
/// N(0, 0.5^2), and norm weights 1 + N(0, 0.1^2).
fn bold_params(cfg: &GptConfig, seed: u64) -> Params {
    let mut rng = Rng::new(seed);
    let mut p = Params::zeros(cfg);
    for (spec, t) in Params::specs(cfg).iter().zip(p.tensors_mut()) {
        let (base, std) = if spec.name.ends_with("norm.weight") {
            (1.0, 0.1)
        } else {
            (0.0, 0.5)
        };
        t.iter_mut()
            .for_each(|x| *x = on_grid(base + std * rng.normal()));
    }
    p
}

// ANCHOR: model_grad_check
fn model_grad_check(cfg: GptConfig, seed: u64) {
    let (b, t) = (2, 5);
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..b * t + 1)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let (inputs, targets) = (&ids[..b * t], &ids[1..]);
    let params = bold_params(&cfg, seed);
    let flat: Vec<Vec<f32>> = params.tensors().iter().map(|t| t.to_vec()).collect();
    let loss_of = |tensors: &[Vec<f32>]| -> f64 {
        let mut p = Params::zeros(&cfg);
        for (dst, src) in p.tensors_mut().into_iter().zip(tensors) {
            dst.copy_from_slice(src);
        }
        let model = Gpt::new(cfg.clone(), p).unwrap();
        let mut acts = Activations::new(&cfg, b, t);
        model.forward_loss(&mut acts, inputs, targets).unwrap();
        acts.losses.iter().map(|&l| l as f64).sum::<f64>() / (b * t) as f64
    };
    let model = Gpt::new(cfg.clone(), params).unwrap();
    let mut acts = Activations::new(&cfg, b, t);
    model.forward_loss(&mut acts, inputs, targets).unwrap();
    // start from random gradients: the backward must add, not overwrite
    let mut grads = bold_params(&cfg, seed + 1);
    let init: Vec<Vec<f32>> = grads.tensors().iter().map(|t| t.to_vec()).collect();
    model.backward(&mut acts, &mut grads).unwrap();
    let after: Vec<Vec<f32>> = grads.tensors().iter().map(|t| t.to_vec()).collect();
    match try_check(&flat, &accumulated(&init, &after), loss_of, EPS, 3e-3) {
        Ok(worst) => eprintln!("largest error {worst:.1e} of max |grad| for {cfg:?}"),
        Err(e) => {
            let names: Vec<String> = Params::specs(&cfg).into_iter().map(|s| s.name).collect();
            panic!("{cfg:?}\n{e}\n(input j is tensor j of {names:?})");
        }
    }
}
// ANCHOR_END: model_grad_check

#[test]
fn llama_gradients() {
    let cfg = tiny(
        Norm::RmsNorm { eps: 1e-5 },
        Positions::Rope { theta: 10000.0 },
        1,
        Mlp::SwiGlu,
        false,
    );
    model_grad_check(cfg, 100);
}

#[test]
fn gpt2_gradients() {
    let cfg = tiny(
        Norm::LayerNorm { eps: 1e-5 },
        Positions::Learned,
        2,
        Mlp::Gelu,
        true,
    );
    model_grad_check(cfg, 101);
}

#[test]
fn mixed_switches_gradients() {
    let ln = Norm::LayerNorm { eps: 1e-5 };
    let rms = Norm::RmsNorm { eps: 1e-5 };
    let rope = Positions::Rope { theta: 100.0 };
    model_grad_check(tiny(ln, rope, 1, Mlp::SwiGlu, true), 102);
    model_grad_check(tiny(rms, Positions::Learned, 2, Mlp::Gelu, false), 103);
}

#[test]
fn spec_order_matches_the_tensors() {
    for cfg in [GptConfig::gpt2_tiny(), GptConfig::llama_tiny()] {
        let p = Params::zeros(&cfg);
        let specs = Params::specs(&cfg);
        assert_eq!(specs.len(), p.tensors().len());
        for (s, t) in specs.iter().zip(p.tensors()) {
            assert_eq!(s.len(), t.len(), "{}", s.name);
        }
        assert_eq!(specs.iter().map(|s| s.len()).sum::<usize>(), cfg.n_params());
        p.check(&cfg).unwrap();
    }
}

#[test]
fn bad_inputs_are_errors() {
    let cfg = tiny(
        Norm::RmsNorm { eps: 1e-5 },
        Positions::Rope { theta: 10000.0 },
        1,
        Mlp::SwiGlu,
        false,
    );
    let model = Gpt::init(cfg.clone(), 0).unwrap();
    let mut acts = Activations::new(&cfg, 1, 3);
    let err = model.forward(&mut acts, &[1, 2, 11]).unwrap_err();
    assert!(err.to_string().contains("token id 11"), "{err}");
    assert!(model.forward(&mut acts, &[1, 2]).is_err());
    assert!(model
        .forward_loss(&mut acts, &[1, 2, 3], &[1, 2, 99])
        .is_err());
    let mut long = Activations::new(&cfg, 1, 9); // context is 8
    assert!(model
        .forward(&mut long, &[0; 9])
        .unwrap_err()
        .to_string()
        .contains("context"));
    // a backward needs a forward_loss, and gradients shaped like the model
    let mut grads = Params::zeros(&cfg);
    model.forward(&mut acts, &[1, 2, 3]).unwrap();
    assert!(model
        .backward(&mut acts, &mut grads)
        .unwrap_err()
        .to_string()
        .contains("forward_loss"));
    model
        .forward_loss(&mut acts, &[1, 2, 3], &[2, 3, 4])
        .unwrap();
    let mut other = Params::zeros(&GptConfig::llama_tiny());
    assert!(model.backward(&mut acts, &mut other).is_err());
    model.backward(&mut acts, &mut grads).unwrap();
    let mut wrong = Params::zeros(&cfg);
    wrong.blocks[1]
        .attn
        .mha_mut()
        .unwrap()
        .k_proj
        .f32_mut()
        .data
        .pop();
    assert!(Gpt::new(cfg, wrong)
        .unwrap_err()
        .to_string()
        .contains("k_proj"));
}

// ANCHOR: deepseek_grad_check
/// [`model_grad_check`] for DeepSeek's parts: the objective is the main cross-entropy
/// plus the auxiliary terms (balance loss, `λ` times the MTP loss), the frozen selection
/// bias is left out, and the expert choices of the checked point are at least `0.05` from
/// a tie (a step of the finite differences moves a score by far less), so that top-K is
/// constant around it.
fn deepseek_grad_check(cfg: GptConfig, first_seed: u64, eps: f32, floor: f64) {
    let seed = (first_seed..first_seed + 100)
        .find(|&s| away_from_ties(&cfg, s))
        .expect("a point away from ties among 100 seeds");
    check_at(cfg, seed, eps, floor)
}

fn check_at(cfg: GptConfig, seed: u64, eps: f32, floor: f64) {
    let (b, t) = (2, 5);
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..b * t + 1)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let (inputs, targets) = (&ids[..b * t], &ids[1..]);
    let mut params = bold_params(&cfg, seed);
    // a bias of the scores' size (0.1), so that it changes some choices and not all
    params.visit_mut(|spec, t| {
        if super::params::is_buffer(&spec.name) {
            t.iter_mut().for_each(|x| *x *= 0.2);
        }
    });
    let trainable: Vec<bool> = params.param_specs().iter().map(|s| s.trainable).collect();
    let all: Vec<Vec<f32>> = params.tensors().iter().map(|t| t.to_vec()).collect();
    let pick = |v: &[Vec<f32>]| -> Vec<Vec<f32>> {
        v.iter()
            .zip(&trainable)
            .filter(|(_, &tr)| tr)
            .map(|(x, _)| x.clone())
            .collect()
    };
    let objective = |model: &Gpt, acts: &mut Activations| -> f64 {
        model.forward_loss(acts, inputs, targets).unwrap();
        acts.losses.iter().map(|&l| l as f64).sum::<f64>() / (b * t) as f64
            + acts.auxiliary_loss(&model.cfg) as f64
    };
    let loss_of = |tensors: &[Vec<f32>]| -> f64 {
        let mut p = params.clone();
        let mut given = tensors.iter();
        for (dst, &tr) in p.tensors_mut().into_iter().zip(&trainable) {
            if tr {
                dst.copy_from_slice(given.next().unwrap());
            }
        }
        let model = Gpt::new(cfg.clone(), p).unwrap();
        objective(&model, &mut Activations::new(&cfg, b, t))
    };
    let model = Gpt::new(cfg.clone(), params.clone()).unwrap();
    let mut acts = Activations::new(&cfg, b, t);
    objective(&model, &mut acts);
    let mut grads = bold_params(&cfg, seed + 1);
    let init = pick(
        &grads
            .tensors()
            .iter()
            .map(|t| t.to_vec())
            .collect::<Vec<_>>(),
    );
    model.backward(&mut acts, &mut grads).unwrap();
    let after = pick(
        &grads
            .tensors()
            .iter()
            .map(|t| t.to_vec())
            .collect::<Vec<_>>(),
    );
    let (inputs, analytic) = (pick(&all), accumulated(&init, &after));
    match try_check_with_floor(&inputs, &analytic, loss_of, eps, 3e-3, floor) {
        Ok(worst) => eprintln!("largest error {worst:.1e} of max |grad| for {cfg:?}"),
        Err(e) => {
            let names: Vec<String> = params
                .param_specs()
                .into_iter()
                .filter(|s| s.trainable)
                .map(|s| s.name)
                .collect();
            panic!("{cfg:?}\n{e}\n(input j is tensor j of {names:?})");
        }
    }
}

/// The batch and weights of `seed` (as [`check_at`] makes them): is every expert choice at
/// least 0.05 from a tie, and does every routed expert get a token (else its gradient is
/// zero and nothing of it is checked)?
fn away_from_ties(cfg: &GptConfig, seed: u64) -> bool {
    use super::moe::selection_margin;
    use super::MlpParams;
    let Some(m) = &cfg.moe else {
        return true;
    };
    let (b, t) = (2, 5);
    let mut rng = Rng::new(seed);
    let ids: Vec<u32> = (0..b * t + 1)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let mut params = bold_params(cfg, seed);
    params.visit_mut(|spec, t| {
        if super::params::is_buffer(&spec.name) {
            t.iter_mut().for_each(|x| *x *= 0.2);
        }
    });
    let model = Gpt::new(cfg.clone(), params).unwrap();
    let mut acts = Activations::new(cfg, b, t);
    model
        .forward_loss(&mut acts, &ids[..b * t], &ids[1..])
        .unwrap();
    let blocks = model.params.blocks.iter().zip(&acts.layers);
    let mtp = model.params.mtp.as_ref().zip(acts.mtp.as_ref());
    let mtp = mtp.map(|(p, a)| (&p.block, &a.block));
    blocks.chain(mtp).all(|(blk, a)| match &blk.mlp {
        MlpParams::Moe(p) => {
            selection_margin(&a.moe.scores, &p.bias, m) > 0.05 && a.moe.load.iter().all(|&l| l > 0)
        }
        _ => true,
    })
}
// ANCHOR_END: deepseek_grad_check

fn llama_like() -> GptConfig {
    tiny(
        Norm::RmsNorm { eps: 1e-5 },
        Positions::Rope { theta: 100.0 },
        2,
        Mlp::SwiGlu,
        false,
    )
}

fn mla_tiny(q_lora_rank: Option<usize>, rope_interleave: bool) -> super::MlaConfig {
    super::MlaConfig {
        q_lora_rank,
        kv_lora_rank: 4,
        qk_nope_head_dim: 4,
        qk_rope_head_dim: 2,
        v_head_dim: 3,
        rope_interleave,
    }
}

fn moe_tiny(seq_aux_alpha: f32) -> super::MoeConfig {
    super::MoeConfig {
        n_routed: 4,
        n_shared: 1,
        top_k: 2,
        d_expert: 3,
        n_group: 1,
        topk_group: 1,
        norm_topk_prob: true,
        routed_scaling_factor: 1.0,
        first_dense: 1,
        bias_update_speed: 0.001,
        seq_aux_alpha,
    }
}

#[test]
fn mla_gradients() {
    for (q, interleave, seed) in [(Some(6), true, 110), (None, false, 111)] {
        let cfg = GptConfig {
            n_kv_heads: 2,
            mla: Some(mla_tiny(q, interleave)),
            ..llama_like()
        };
        deepseek_grad_check(cfg, seed, EPS, 0.0);
    }
}

#[test]
fn moe_gradients() {
    // normalised gates with the balance loss; then unnormalised, scaled, group-limited
    let plain = GptConfig {
        moe: Some(moe_tiny(0.05)),
        ..llama_like()
    };
    deepseek_grad_check(plain, 121, EPS, 0.0);
    let grouped = GptConfig {
        moe: Some(super::MoeConfig {
            n_group: 2,
            topk_group: 1,
            norm_topk_prob: false,
            routed_scaling_factor: 2.5,
            first_dense: 0,
            n_shared: 0,
            ..moe_tiny(0.0)
        }),
        ..llama_like()
    };
    deepseek_grad_check(grouped, 122, EPS, 0.0);
}

#[test]
fn mtp_gradients() {
    // a tied head: the MTP loss reaches the embedding through both the head and enorm
    let cfg = GptConfig {
        tied_head: true,
        mtp: Some(super::MtpConfig { lambda: 0.7 }),
        ..llama_like()
    };
    // half chapter 4's step: a depth on top of the model curves the objective more at these
    // bold weights, and the differences' O(ε⁴) error reached the tolerance at 2^-7
    deepseek_grad_check(cfg.clone(), 131, EPS / 2.0, 0.0);
    deepseek_grad_check(
        GptConfig {
            tied_head: false,
            ..cfg
        },
        132,
        EPS / 2.0,
        0.0,
    );
}

#[test]
fn deepseek_gradients() {
    let cfg = GptConfig {
        n_kv_heads: 2,
        mla: Some(mla_tiny(Some(6), true)),
        moe: Some(moe_tiny(0.05)),
        mtp: Some(super::MtpConfig { lambda: 0.3 }),
        ..llama_like()
    };
    // every part at once: the MTP depth's MoE experts see few tokens and get gradients
    // of about 5e-3, where the differences' f32 noise is about 5e-5; they are measured
    // against 0.05 (a gradient 5% off would still show as 5e-3)
    deepseek_grad_check(cfg, 141, EPS, 0.05);
}
