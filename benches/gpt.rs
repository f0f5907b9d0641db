//! Chapter 4's hot path: one training step (forward, backward, AdamW) of `llama-tiny` and
//! `gpt2-tiny` on a batch of 16 x 128 random tokens. Not a test: it prints tokens/s and
//! the peak memory, to compare with PyTorch on the same machine:
//!
//! ```text
//! bash ../shared/peers/setup.sh
//! python ../shared/peers/gpt_torch.py --help        # the same config, batch 16, 2 threads
//! ```
//!
//! usage: cargo bench --bench gpt -- [llama-tiny|gpt2-tiny] [STEPS] [BATCH]
//!        cargo bench --bench gpt -- generate [llama-tiny|gpt2-tiny] [NEW_TOKENS]
//! (generation: batch 1, greedy, one prompt token, with the key/value cache; the context
//! is widened to fit the new tokens, as RoPE allows)

use std::time::Instant;

use llm_lessons::gpt::generate::{generate, Sampling};
use llm_lessons::gpt::optim::{AdamW, AdamWConfig};
use llm_lessons::gpt::{Activations, Gpt, GptConfig, Params};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().is_some_and(|a| a == "generate") {
        return bench_generate(&args[1..]);
    }
    let preset = args.first().map_or("llama-tiny", |s| s.as_str());
    let steps: usize = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let b: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let cfg = GptConfig::preset(preset)?;
    let t = cfg.context;
    let mut model = Gpt::init(cfg.clone(), 0)?;
    let mut acts = Activations::new(&cfg, b, t);
    let mut grads = Params::zeros(&cfg);
    let mut opt = AdamW::new(&cfg, AdamWConfig::default());
    let mut state = 1u64;
    let ids: Vec<u32> = (0..b * t + 1)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % cfg.vocab_size as u64) as u32
        })
        .collect();
    let (inputs, targets) = (&ids[..b * t], &ids[1..]);
    let (mut fwd, mut bwd, mut upd, mut total) = (vec![], vec![], vec![], vec![]);
    for step in 0..steps + 2 {
        let t0 = Instant::now();
        let loss = model.forward_loss(&mut acts, inputs, targets)?;
        let t1 = Instant::now();
        grads.zero();
        model.backward(&mut acts, &mut grads)?;
        let t2 = Instant::now();
        opt.step(&mut model.params, &grads, 1e-3);
        let t3 = Instant::now();
        if step >= 2 {
            fwd.push((t1 - t0).as_secs_f64());
            bwd.push((t2 - t1).as_secs_f64());
            upd.push((t3 - t2).as_secs_f64());
            total.push((t3 - t0).as_secs_f64());
        }
        eprintln!(
            "step {step}: loss {loss:.4} {:.1} ms",
            (t3 - t0).as_secs_f64() * 1e3
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (f, bw, u, tot) = (
        median(&mut fwd),
        median(&mut bwd),
        median(&mut upd),
        median(&mut total),
    );
    println!(
        "{preset} batch {b}x{t}, {} threads: {:.0} tokens/s (median step {:.1} ms: forward {:.1}, backward {:.1}, AdamW {:.1}), peak RSS {:.0} MiB",
        rayon::current_num_threads(),
        (b * t) as f64 / tot,
        tot * 1e3,
        f * 1e3,
        bw * 1e3,
        u * 1e3,
        peak_rss_mib()
    );
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
