//! Whole-model tests: the gradient of the loss with respect to every parameter tensor,
//! against finite differences, for both architectures and for mixes of their switches.

use super::gradcheck::{accumulated, on_grid, try_check, Rng, EPS};
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
    wrong.blocks[1].attn.k_proj.f32_mut().data.pop();
    assert!(Gpt::new(cfg, wrong)
        .unwrap_err()
        .to_string()
        .contains("k_proj"));
}
