//! Chapter 5's hot path: one training step (forward, backward, AdamW) of `llama-tiny` on a
//! batch of 16 x 128 random tokens, with every tensor trainable (`full`) or with LoRA
//! adapters on the targeted projections and the base frozen (`lora`). Not a test: it prints
//! tokens/s, the median step split into its parts, the peak memory, the training state
//! (gradients and AdamW's moments) and how many values train, to compare the two modes
//! and with PEFT on PyTorch (`benches/peers/peft_train_bench.py`, the same model and batch).
//!
//! usage: cargo bench --bench lora -- [full|lora] [STEPS] [--rank R] [--targets ...] [--alpha A]
//! (defaults: `lora`, 10 steps after 2 warm-up, rank 8, targets `q_proj,v_proj`, alpha 2R)

use llm_lessons::gpt::lora::LoraConfig;
use llm_lessons::gpt::optim::{AdamW, AdamWConfig};
use llm_lessons::gpt::{Activations, Gpt, GptConfig};

mod common;
use common::{summary, time_steps};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (mut positional, mut rank, mut targets, mut alpha) = (vec![], 8, None, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--rank" => rank = value()?.parse()?,
            "--targets" => targets = Some(value()?),
            "--alpha" => alpha = Some(value()?.parse::<f32>()?),
            _ => positional.push(a),
        }
    }
    let mode = positional.first().map_or("lora", |s| s.as_str());
    let steps: usize = positional.get(1).map_or(Ok(10), |s| s.parse())?;
    let cfg = GptConfig::llama_tiny();
    let (b, t) = (16, cfg.context);
    let mut model = Gpt::init(cfg.clone(), 0)?;
    let what = match mode {
        "full" => "full".to_string(),
        "lora" => {
            let lora = LoraConfig {
                rank,
                alpha: alpha.unwrap_or(2.0 * rank as f32),
                rslora: false,
                targets: targets
                    .as_deref()
                    .unwrap_or("q_proj,v_proj")
                    .split(',')
                    .map(String::from)
                    .collect(),
                dropout: 0.0,
            };
            model.params.add_lora(&lora, 0)?;
            format!(
                "lora r={rank} alpha={} {}",
                lora.alpha,
                lora.targets.join(",")
            )
        }
        _ => return Err(format!("unknown mode {mode:?} (known: full, lora)").into()),
    };
    let mut acts = Activations::new(&cfg, b, t);
    let mut grads = model.params.grads();
    let mut opt = AdamW::new(&model.params, AdamWConfig::default());
    let times = time_steps(&mut model, &mut acts, &mut grads, &mut opt, b, steps)?;
    let (trainable, all) = model.params.count_trainable();
    println!(
        "llama-tiny {what}, batch {b}x{t}, {} threads, median of {steps}: {}, trainable {trainable} of {all} values",
        rayon::current_num_threads(),
        summary(&times, b * t, &grads, &opt)
    );
    Ok(())
}
