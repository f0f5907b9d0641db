//! Chapter 7's speed: a real model (a GGUF file) generating on this machine, measured the
//! way `benches/peers/llamacpp/run.mjs` measures llama.cpp, so the two print the same
//! figures: the load time (file to a model that can run, tokenizer included), greedy decode
//! tokens/s (batch 1, key/value cache, timed from the first generated token to the last, so
//! the prompt is not counted), and prefill tokens/s (one prompt of `--prefill` tokens in one
//! pass), `--reps` times each, every rep and the median.
//!
//! ```text
//! cargo bench --bench real_model -- MODEL.gguf [THREADS=2] [--new 64] [--prefill 256] [--reps 3] [--prompt TEXT]
//! cargo bench --bench real_model -- --bandwidth [THREADS=2]
//! ```
//!
//! The second form measures the machine's read bandwidth (chapter 6's
//! `quant::speed::read_bandwidth`, 256 MiB) in a process of its own, so that its buffer does
//! not count in the model's peak memory. `benches/peers/smollm2_vs_llamacpp.sh` runs both
//! sides alternately and measures each whole process's peak RSS.

use std::path::Path;
use std::time::Instant;

use llm_lessons::gpt::generate::KvCache;
use llm_lessons::gpt::Gpt;
use llm_lessons::quant::gguf::llama::{model_from_gguf, tokens_from_gguf, Precision};
use llm_lessons::quant::gguf::Gguf;
use llm_lessons::quant::speed::{read_bandwidth, READ_BUFFER};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "usage: cargo bench --bench real_model -- MODEL.gguf [THREADS=2] [--new 64] \
                     [--prefill 256] [--reps 3] [--prompt TEXT] | --bandwidth [THREADS=2]";

fn argmax(logits: &[f32]) -> u32 {
    (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(0) as u32
}

fn median(xs: &[f64]) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Greedy decoding after `prompt`: the seconds from the prompt to the first generated
/// token, and from it to the `new`-th token after it.
fn decode(model: &Gpt, prompt: &[u32], new: usize) -> Result<(f64, f64, Vec<u32>)> {
    let t0 = Instant::now();
    let mut cache = KvCache::with_capacity(&model.cfg, prompt.len() + new + 1);
    let logits = model.forward_cached_last(&mut cache, prompt)?;
    let mut next = argmax(&logits);
    let t_first = Instant::now();
    let mut out = vec![next];
    for _ in 0..new {
        let logits = model.forward_cached(&mut cache, &[next])?;
        next = argmax(&logits);
        out.push(next);
    }
    let t_end = Instant::now();
    Ok((
        (t_first - t0).as_secs_f64(),
        (t_end - t_first).as_secs_f64(),
        out,
    ))
}

fn run(
    path: &Path,
    threads: usize,
    new: usize,
    prefill: usize,
    reps: usize,
    prompt: &str,
) -> Result<()> {
    let t0 = Instant::now();
    let g = Gguf::read(path)?;
    let model = model_from_gguf(&g, Precision::AsStored)?;
    let tokens = tokens_from_gguf(&g)?;
    let load = t0.elapsed().as_secs_f64();
    let weight_bytes: usize = g.tensors.iter().map(|t| t.data.len()).sum();
    drop(g);
    println!(
        "ours: {} ({:.1} MB of weights, each read once per token); {threads} thread(s); load {:.1} ms",
        path.file_name().unwrap_or_default().to_string_lossy(),
        weight_bytes as f64 / 1e6,
        load * 1e3
    );
    let ids = tokens.encode(prompt);
    let filler: Vec<u32> = tokens
        .encode(&"The quick brown fox jumps over the lazy dog. ".repeat(prefill / 9 + 2))
        .into_iter()
        .take(prefill)
        .collect();
    let (mut dec, mut pre) = (Vec::new(), Vec::new());
    let mut text = String::new();
    for r in 0..reps {
        let (first, rest, out) = decode(&model, &ids, new)?;
        dec.push(new as f64 / rest);
        text = tokens.decode(&out[..out.len().min(16)])?;
        let t = Instant::now();
        let mut cache = KvCache::with_capacity(&model.cfg, filler.len());
        // as llama.cpp's prefill: the prompt's keys and values, the last position's logits
        model.forward_cached_last(&mut cache, &filler)?;
        pre.push(filler.len() as f64 / t.elapsed().as_secs_f64());
        println!(
            "rep {}: decode {:.1} tok/s ({new} tokens), prefill {:.1} tok/s ({} tokens), prompt + first token {:.1} ms",
            r + 1,
            dec[r],
            pre[r],
            filler.len(),
            first * 1e3
        );
    }
    println!("greedy after {prompt:?}: {text:?}");
    println!(
        "median: decode {:.1} tok/s, prefill {:.1} tok/s (threads {threads})",
        median(&dec),
        median(&pre)
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mut positional, mut new, mut prefill, mut reps) = (Vec::new(), 64, 256, 3);
    let mut prompt = "The capital of France is".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value; {USAGE}"))
        };
        match a.as_str() {
            "--new" => new = value("--new")?.parse()?,
            "--prefill" => prefill = value("--prefill")?.parse()?,
            "--reps" => reps = value("--reps")?.parse()?,
            "--prompt" => prompt = value("--prompt")?,
            _ if a.starts_with("--") && a != "--bandwidth" => {
                return Err(format!("unknown flag {a}; {USAGE}").into())
            }
            _ => positional.push(a.clone()),
        }
    }
    let (Some(first), threads) = (positional.first(), positional.get(1)) else {
        return Err(USAGE.into());
    };
    let threads: usize = threads.map_or(Ok(2), |t| t.parse())?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    if first == "--bandwidth" {
        let bw = read_bandwidth(READ_BUFFER, threads, 30)?;
        println!(
            "read bandwidth: {:.1} GB/s ({threads} thread(s), {} MiB buffer)",
            bw.gb_per_s(),
            READ_BUFFER >> 20
        );
        return Ok(());
    }
    // the model runs on a pool worker, as `generate` runs it
    pool.install(|| run(Path::new(first), threads, new, prefill, reps, &prompt))
}
