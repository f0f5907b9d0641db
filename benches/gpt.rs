//! Chapter 4's hot path: one training step (forward, backward, AdamW) of `llama-tiny` and
//! `gpt2-tiny` on a batch of 16 x 128 random tokens. Not a test: it prints tokens/s and
//! the peak memory, to compare with PyTorch on the same machine (a compact PyTorch decoder
//! of the same config, batch 16, 2 threads; book chapter 4, "Measured", says what it ran).
//!
//! usage: cargo bench --bench gpt -- [llama-tiny|gpt2-tiny] [STEPS] [BATCH] [--head-only]
//!        cargo bench --bench gpt -- generate [llama-tiny|gpt2-tiny] [NEW_TOKENS]
//!        cargo bench --bench gpt -- fused [llama-tiny|gpt2-tiny] [REPEATS]
//!        cargo bench --bench gpt -- moe [ROUNDS] [STEPS]
//! (`moe`: llama-tiny's dense MLP against DeepSeekMoE at equal active and at equal total
//! parameters, and deepseek-tiny, batch 16 x 128; the models take turns, ROUNDS rounds of
//! STEPS steps each, and each model's median step and the spread over rounds are printed)
//! (`--head-only` freezes every tensor but the output head: no gradients or moments for
//! them; `fused` times the q, k, v projections and SwiGLU's gate and up as separate
//! products against one product with the weights stacked)
//! (generation: batch 1, greedy, one prompt token, with the key/value cache; the context
//! is widened to fit the new tokens, as RoPE allows)

use std::time::Instant;

use llm_lessons::gpt::generate::{generate, Sampling};
use llm_lessons::gpt::linear::linear_forward;
use llm_lessons::gpt::optim::{AdamW, AdamWConfig};
use llm_lessons::gpt::{Activations, Gpt, GptConfig};

mod common;
use common::{summary, time_steps};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().is_some_and(|a| a == "generate") {
        return bench_generate(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "fused") {
        return bench_fused(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "moe") {
        return bench_moe(&args[1..]);
    }
    let head_only = args.iter().any(|a| a == "--head-only");
    let args: Vec<String> = args.into_iter().filter(|a| a != "--head-only").collect();
    let preset = args.first().map_or("llama-tiny", |s| s.as_str());
    let steps: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let b: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let cfg = GptConfig::preset(preset)?;
    let t = cfg.context;
    let mut model = Gpt::init(cfg.clone(), 0)?;
    let mut acts = Activations::new(&cfg, b, t);
    if head_only {
        model.params.set_trainable(|name| name == "lm_head.weight");
    }
    let mut grads = model.params.grads();
    let mut opt = AdamW::new(&model.params, AdamWConfig::default());
    let times = time_steps(&mut model, &mut acts, &mut grads, &mut opt, b, steps)?;
    println!(
        "{preset}{} batch {b}x{t}, {} threads: {}",
        if head_only { " (head only)" } else { "" },
        rayon::current_num_threads(),
        summary(&times, b * t, &grads, &opt)
    );
    Ok(())
}

fn bench_moe(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = args.first().map_or(Ok(5), |s| s.parse())?;
    let steps: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let dense = GptConfig::llama_tiny();
    let configs = [
        ("llama-tiny (dense SwiGLU 344)", dense.clone()),
        (
            "+ MoE, equal active (1 + 2 of 8 experts of 115)",
            GptConfig {
                moe: Some(GptConfig::moe_tiny()),
                ..dense.clone()
            },
        ),
        (
            "+ MoE, equal total (1 + 2 of 8 experts of 38)",
            GptConfig {
                moe: Some(GptConfig::moe_tiny_equal_total()),
                ..dense.clone()
            },
        ),
        ("deepseek-tiny (MLA, MoE, MTP)", GptConfig::deepseek_tiny()),
    ];
    let b = 16;
    let mut state: Vec<_> = configs
        .iter()
        .map(|(_, cfg)| {
            let model = Gpt::init(cfg.clone(), 0)?;
            let acts = Activations::new(cfg, b, cfg.context);
            let grads = model.params.grads();
            let opt = AdamW::new(&model.params, AdamWConfig::default());
            Ok((model, acts, grads, opt))
        })
        .collect::<Result<_, llm_lessons::Error>>()?;
    let mut medians = vec![Vec::new(); configs.len()];
    for _ in 0..rounds {
        for (k, (model, acts, grads, opt)) in state.iter_mut().enumerate() {
            let times = time_steps(model, acts, grads, opt, b, steps)?;
            medians[k].push(times.total);
        }
    }
    println!(
        "training step, batch {b}x{}, {} threads, {rounds} rounds of {steps} steps (models in turn):",
        dense.context,
        rayon::current_num_threads()
    );
    let base = {
        let mut m = medians[0].clone();
        m.sort_by(f64::total_cmp);
        m[m.len() / 2]
    };
    for ((name, cfg), m) in configs.iter().zip(&mut medians) {
        m.sort_by(f64::total_cmp);
        let med = m[m.len() / 2];
        println!(
            "  {name:<48} {:>7.1} ms/step (rounds {:.1}-{:.1}), {:>6.0} tokens/s, {:.2}x the dense step; {} parameters, {} active",
            med * 1e3,
            m[0] * 1e3,
            m[m.len() - 1] * 1e3,
            (b * cfg.context) as f64 / med,
            med / base,
            cfg.n_params(),
            cfg.n_active_params()
        );
    }
    Ok(())
}

fn bench_generate(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let preset = args.first().map_or("llama-tiny", |s| s.as_str());
    let new: usize = args.get(1).map_or(Ok(256), |s| s.parse())?;
    let mut cfg = GptConfig::preset(preset)?;
    cfg.context = cfg.context.max(new + 1);
    let model = Gpt::init(cfg, 0)?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let out = generate(&model, &[1], new, &Sampling::greedy())?;
        times.push(t0.elapsed().as_secs_f64());
        assert_eq!(out.len(), new);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{preset} generation, batch 1, {new} new tokens, greedy, KV cache: {:.0} tokens/s (median of 5, {:.1} ms)",
        new as f64 / times[2],
        times[2] * 1e3
    );
    Ok(())
}

/// Separate products against one product over stacked weights, at a training step's
/// shapes (16 x 128 rows): q, k, v `(C + 2 kv_dim, C)` and SwiGLU's gate and up `(2 d_ff, C)`.
fn bench_fused(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let preset = args.first().map_or("llama-tiny", |s| s.as_str());
    let repeats: usize = args.get(1).map_or(Ok(200), |s| s.parse())?;
    let cfg = GptConfig::preset(preset)?;
    let n = 16 * cfg.context;
    let (c, kv, f) = (cfg.d_model, cfg.kv_dim(), cfg.d_ff);
    let x: Vec<f32> = (0..n * c)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let time = |outs: &[usize]| -> f64 {
        let ws: Vec<Vec<f32>> = outs.iter().map(|&o| vec![0.01; o * c]).collect();
        let mut ys: Vec<Vec<f32>> = outs.iter().map(|&o| vec![0.0; n * o]).collect();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t0 = Instant::now();
            for ((y, w), &o) in ys.iter_mut().zip(&ws).zip(outs) {
                linear_forward(y, &x, w, n, c, o);
            }
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let row = |what: &str, separate: &[usize]| {
        let fused = [separate.iter().sum::<usize>()];
        let (a, b) = (time(separate), time(&fused));
        println!(
            "{preset} {what}, {n} rows: separate {:.3} ms, fused {:.3} ms (x{:.2}), median of {repeats}",
            a * 1e3,
            b * 1e3,
            a / b
        );
    };
    row("q k v", &[c, kv, kv]);
    row("gate up", &[f, f]);
    Ok(())
}
