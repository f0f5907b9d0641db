//! What the training benchmarks share: the batch of random ids, the timed step (forward,
//! backward, AdamW) and its medians, and the peak memory.

use std::time::Instant;

use llm_lessons::gpt::optim::AdamW;
use llm_lessons::gpt::{Activations, Gpt, Params};

/// The process's peak resident memory (`VmHWM` in `/proc/self/status`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `n` ids below `vocab` from a fixed linear congruential sequence (the same batch every run).
fn random_ids(n: usize, vocab: usize) -> Vec<u32> {
    let mut state = 1u64;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % vocab as u64) as u32
        })
        .collect()
}

/// Median seconds of one training step and of its three parts.
pub struct StepTimes {
    pub forward: f64,
    pub backward: f64,
    pub adamw: f64,
    pub total: f64,
}

/// Times `steps` training steps on one batch of `b` windows, after 2 warm-up steps, and
/// returns the medians. Prints each step's loss and time to stderr. The steps run on a
/// rayon worker, as `Run::train` runs them.
pub fn time_steps(
    model: &mut Gpt,
    acts: &mut Activations,
    grads: &mut Params,
    opt: &mut AdamW,
    b: usize,
    steps: usize,
) -> Result<StepTimes, Box<dyn std::error::Error>> {
    rayon::scope(|_| time_steps_here(model, acts, grads, opt, b, steps)).map_err(|e| e.into())
}

fn time_steps_here(
    model: &mut Gpt,
    acts: &mut Activations,
    grads: &mut Params,
    opt: &mut AdamW,
    b: usize,
    steps: usize,
) -> Result<StepTimes, llm_lessons::Error> {
    let t = model.cfg.context;
    let ids = random_ids(b * t + 1, model.cfg.vocab_size);
    let (inputs, targets) = (&ids[..b * t], &ids[1..]);
    let (mut fwd, mut bwd, mut upd, mut total) = (vec![], vec![], vec![], vec![]);
    for step in 0..steps + 2 {
        let t0 = Instant::now();
        let loss = model.forward_loss(acts, inputs, targets)?;
        let t1 = Instant::now();
        grads.zero();
        model.backward(acts, grads)?;
        let t2 = Instant::now();
        opt.step(&mut model.params, grads, 1e-3);
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
    Ok(StepTimes {
        forward: median(&mut fwd),
        backward: median(&mut bwd),
        adamw: median(&mut upd),
        total: median(&mut total),
    })
}

/// The middle value (the upper one of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Bytes of the training state: the gradients and AdamW's two moments.
fn state_bytes(grads: &Params, opt: &AdamW) -> usize {
    grads.tensors().iter().map(|t| t.len()).sum::<usize>() * 4 + opt.bytes()
}

/// `tokens/s (median step: forward, backward, AdamW), peak RSS, gradients and moments`,
/// for a step of `tokens` tokens.
pub fn summary(times: &StepTimes, tokens: usize, grads: &Params, opt: &AdamW) -> String {
    format!(
        "{:.0} tokens/s (median step {:.1} ms: forward {:.1}, backward {:.1}, AdamW {:.2}), peak RSS {:.1} MiB, gradients and moments {:.2} MiB",
        tokens as f64 / times.total,
        times.total * 1e3,
        times.forward * 1e3,
        times.backward * 1e3,
        times.adamw * 1e3,
        peak_rss_mib(),
        state_bytes(grads, opt) as f64 / (1 << 20) as f64
    )
}
