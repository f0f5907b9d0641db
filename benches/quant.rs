//! Chapter 6's kernels at a real model's shapes: `y = x W^T` for SmolLM2-135M's MLP
//! (1536 x 576, 576 x 1536) and output head (49152 x 576), one row of `x` (generation) and
//! `--n` rows (prefill), in f32 (every f32 product we have) and Q8_0, Q4_0, Q4_1; next to
//! the memory-read bandwidth measured in the same run, and SmolLM2's bytes per token. Not a
//! test: it prints the tables and writes them as CSV files under `--out`.
//!
//! usage: cargo bench --bench quant -- [--threads 1,2] [--reps 100] [--prefill-reps 7]
//!        [--n 128] [--bandwidth-mib 512] [--residency memory|cache|both] [--out DIR]
//!        [--bandwidth-only]
//! (`--n 0`: generation only)
//!
//! The weights are timed "in memory" by default: the calls cycle through copies of each
//! weight totalling 128 MiB, as generation cycles through a model far larger than the
//! caches (one 576 x 1536 matrix in Q8_0, 0.9 MB, would otherwise sit in the L2 cache).
//! The machine may be shared, and its speed comes and goes: at each shape the methods and
//! a read of 16 MiB of memory are called in turn, round after round, so that all of them
//! see the same moments; each call is timed alone, and the figures are over the calls
//! during which no thread of this process was preempted ("clean": how many of the calls;
//! all of them if fewer than 5 were). "x f32" is the speed-up over the fastest f32 method
//! at that shape, threads and `n`; "of bw" is the weight bytes read per second over the
//! read bandwidth of the same rounds (the "read" row). The bandwidth printed first, 200
//! passes on their own, is the one the tokens/s bounds use. Next come the 8-row kernels
//! alone, their weights in the L1 cache: how fast they would read weights if memory kept
//! up (a product is limited by the lower of that and the bandwidth).

use std::fmt::Write as _;
use std::path::PathBuf;

use llm_lessons::data::write_atomic;
use llm_lessons::quant::matrix::Format;
use llm_lessons::quant::report::{bytes_per_token, kv_bytes_per_token, smollm2_135m};
use llm_lessons::quant::speed::{
    kernel_speed, quantize_activation_speed, read_bandwidth, time_products, Bandwidth, Machine,
    Method, Residency, Round, Setup, SMOLLM2_SCHEMES, SMOLLM2_SHAPES,
};

struct Options {
    threads: Vec<usize>,
    reps: usize,
    prefill_reps: usize,
    n: usize,
    bandwidth_mib: usize,
    residencies: Vec<Residency>,
    out: PathBuf,
    bandwidth_only: bool,
}

fn options() -> Result<Options, Box<dyn std::error::Error>> {
    let mut o = Options {
        threads: vec![1, 2],
        reps: 100,
        prefill_reps: 7,
        n: 128,
        bandwidth_mib: 512,
        residencies: vec![Residency::Memory],
        out: PathBuf::from("target/bench-quant"),
        bandwidth_only: false,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--threads" => {
                o.threads = value()?
                    .split(',')
                    .map(|t| t.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            "--reps" => o.reps = value()?.parse()?,
            "--prefill-reps" => o.prefill_reps = value()?.parse()?,
            "--n" => o.n = value()?.parse()?,
            "--bandwidth-mib" => o.bandwidth_mib = value()?.parse()?,
            "--residency" => {
                o.residencies = match value()?.as_str() {
                    "memory" => vec![Residency::Memory],
                    "cache" => vec![Residency::Cache],
                    "both" => vec![Residency::Memory, Residency::Cache],
                    r => return Err(format!("--residency memory|cache|both, not {r}").into()),
                }
            }
            "--out" => o.out = PathBuf::from(value()?),
            "--bandwidth-only" => o.bandwidth_only = true,
            _ => {
                return Err(format!("unknown option {a} (see the top of benches/quant.rs)").into())
            }
        }
    }
    Ok(o)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let machine = Machine::detect();
    println!("machine: {machine}");
    let load_before = load();
    println!("load average before: {load_before}");

    let mut bandwidth: Vec<Bandwidth> = Vec::new();
    let mut bw_csv =
        String::from("threads,buffer_bytes,bytes_per_pass,median_gb_s,low_gb_s,high_gb_s,avx2,uninterrupted,reps,median_all_gb_s\n");
    for &t in &o.threads {
        let b = read_bandwidth(o.bandwidth_mib << 20, t, 200)?;
        let (lo, hi) = b.gb_per_s_range();
        println!(
            "read bandwidth, {t} thread{}: {:.1} GB/s ({lo:.1} to {hi:.1}; sums of {} MiB in turn from {} MiB, {} loads, median of the {} of 200 passes not preempted)",
            if t == 1 { "" } else { "s" },
            b.gb_per_s(),
            b.bytes_per_pass >> 20,
            b.buffer_bytes >> 20,
            if b.avx2 { "AVX2" } else { "portable" },
            b.uninterrupted
        );
        writeln!(
            bw_csv,
            "{t},{},{},{:.3},{lo:.3},{hi:.3},{},{},{},{:.3}",
            b.buffer_bytes,
            b.bytes_per_pass,
            b.gb_per_s(),
            b.avx2,
            b.uninterrupted,
            b.reps,
            b.bytes_per_pass as f64 / b.seconds_all.median / 1e9
        )?;
        bandwidth.push(b);
    }
    if o.bandwidth_only {
        return Ok(());
    }

    let mut kernel_csv = String::from(
        "format,kernels,cols,ns_per_block_row,gb_s,low_gb_s,high_gb_s,seconds_per_row\n",
    );
    // the activation row's quantization, one thread's work before every product
    for cols in [576, 1536] {
        let q = quantize_activation_speed(cols, 200)?;
        println!(
            "quantizing an activation row of {cols} values to Q8_0: {} (median of 200 x 100 calls, {} to {})",
            micros(q.median),
            micros(q.min),
            micros(q.max)
        );
        writeln!(
            kernel_csv,
            "quantize activation,q8_0,{cols},,,,,{:.9}",
            q.median
        )?;
    }

    // the kernels alone, their weights in the L1 cache: the limit when memory is not one
    println!("\nthe 8-row kernels alone, 8 rows of 576 columns in the L1 cache, 1 thread (median of 200 x 1000 calls):");
    for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
        for avx2 in [true, false] {
            let Some(k) = kernel_speed(format, 576, avx2, 200)? else {
                continue;
            };
            let bytes = (8 * format.row_bytes(576)?) as f64;
            let (_, low, high) = k.seconds.rate(bytes / 1e9);
            println!(
                "  {:5} {:8} {:6.2} ns per block and row, {:5.1} GB/s of weights ({low:.1} to {high:.1})",
                format.name(),
                k.kernels,
                k.ns_per_block_row(),
                k.gb_per_s()
            );
            writeln!(
                kernel_csv,
                "{},{},576,{:.4},{:.3},{low:.3},{high:.3},",
                format.name(),
                k.kernels,
                k.ns_per_block_row(),
                k.gb_per_s()
            )?;
        }
    }

    // one round per (residency, threads, shape, n): every method and a read of memory,
    // interleaved, so that the ratios compare like moments of a shared machine
    let mut rounds: Vec<(Residency, usize, usize, Round)> = Vec::new();
    for &residency in &o.residencies {
        for &t in &o.threads {
            for &shape in &SMOLLM2_SHAPES {
                for (n, reps) in [(1, o.reps), (o.n, o.prefill_reps)] {
                    if n == 0 {
                        continue;
                    }
                    let setup = Setup {
                        threads: t,
                        reps,
                        residency,
                        read_bandwidth: true,
                    };
                    rounds.push((
                        residency,
                        t,
                        n,
                        time_products(&Method::ALL, shape, n, setup)?,
                    ));
                }
            }
        }
    }

    let mut csv = String::from(
        "residency,threads,rows,cols,n,method,weight_bytes,copies,median_s,min_s,max_s,\
         gb_s,gflop_s,speedup_vs_fastest_f32,fastest_f32,fraction_of_bandwidth,bandwidth_gb_s,\
         uninterrupted,reps,median_all_s,min_all_s,max_all_s\n",
    );
    for &residency in &o.residencies {
        for &t in &o.threads {
            println!(
                "\n{t} thread{}, weights in {}:",
                if t == 1 { "" } else { "s" },
                residency.name(),
            );
            println!(
                "{:>11} {:>4} {:<10} {:>10} {:>21} {:>7} {:>7} {:>8} {:>6} {:>6}",
                "W",
                "n",
                "method",
                "median",
                "min..max",
                "clean",
                "GB/s",
                "GFLOP/s",
                "x f32",
                "of bw"
            );
            for (_, _, n, round) in rounds
                .iter()
                .filter(|(r, threads, _, _)| (*r, *threads) == (residency, t))
            {
                let bw = round
                    .bandwidth
                    .as_ref()
                    .expect("rounds read the memory too");
                let fastest_f32 = round
                    .timings
                    .iter()
                    .filter(|x| x.method.is_f32())
                    .min_by(|a, b| a.seconds.median.total_cmp(&b.seconds.median))
                    .expect("f32 timings");
                let (rows, cols) = (fastest_f32.rows, fastest_f32.cols);
                let (lo, hi) = bw.gb_per_s_range();
                println!(
                    "{:>11} {n:>4} read       {:>10} {:>21} {:>7} {:>7.1}   (bandwidth over the same rounds, {lo:.1} to {hi:.1})",
                    format!("{rows}x{cols}"),
                    micros(bw.seconds.median),
                    format!("{}..{}", micros(bw.seconds.min), micros(bw.seconds.max)),
                    format!("{}/{}", bw.uninterrupted, bw.reps),
                    bw.gb_per_s(),
                );
                for x in &round.timings {
                    let speedup = fastest_f32.seconds.median / x.seconds.median;
                    let of_bw = x.gb_per_s() / bw.gb_per_s();
                    println!(
                        "{:>11} {:>4} {:<10} {:>10} {:>21} {:>7} {:>7.1} {:>8.1} {:>6.2} {:>5.0}%",
                        format!("{rows}x{cols}"),
                        n,
                        x.method.name(),
                        micros(x.seconds.median),
                        format!("{}..{}", micros(x.seconds.min), micros(x.seconds.max)),
                        format!("{}/{}", x.uninterrupted, x.reps),
                        x.gb_per_s(),
                        x.gflop_per_s(),
                        speedup,
                        100.0 * of_bw
                    );
                    writeln!(
                        csv,
                        "{},{t},{rows},{cols},{n},{},{},{},{:.9},{:.9},{:.9},{:.3},{:.3},{:.3},{},{:.4},{:.3},{},{},{:.9},{:.9},{:.9}",
                        residency.name(),
                        x.method.name(),
                        x.weight_bytes,
                        x.copies,
                        x.seconds.median,
                        x.seconds.min,
                        x.seconds.max,
                        x.gb_per_s(),
                        x.gflop_per_s(),
                        speedup,
                        fastest_f32.method.name(),
                        of_bw,
                        bw.gb_per_s(),
                        x.uninterrupted,
                        x.reps,
                        x.seconds_all.median,
                        x.seconds_all.min,
                        x.seconds_all.max
                    )?;
                }
            }
        }
    }

    let model = smollm2_135m();
    println!("\nSmolLM2-135M, bytes read per generated token (first position, weights only) and the tokens/s the measured bandwidth allows:");
    let mut tok_csv = String::from("scheme,weights_bytes");
    for b in &bandwidth {
        write!(tok_csv, ",tokens_per_s_limit_{}_threads", b.threads)?;
    }
    tok_csv.push('\n');
    for (name, layers, head) in SMOLLM2_SCHEMES {
        let bytes = bytes_per_token(&model, layers, head);
        let limit = |b: &Bandwidth| b.gb_per_s() * 1e9 / bytes as f64;
        let limits: Vec<String> = bandwidth
            .iter()
            .map(|b| {
                format!(
                    "{:.1} tokens/s at {} thread{}",
                    limit(b),
                    b.threads,
                    if b.threads == 1 { "" } else { "s" }
                )
            })
            .collect();
        println!(
            "  {name:<22} {:>7.1} MB: {}",
            bytes as f64 / 1e6,
            limits.join(", ")
        );
        write!(tok_csv, "{name},{bytes}")?;
        for b in &bandwidth {
            write!(tok_csv, ",{:.2}", limit(b))?;
        }
        tok_csv.push('\n');
    }
    println!(
        "  (the f32 key/value cache adds {:.1} MB per token at position 1024)",
        kv_bytes_per_token(&model, 1024) as f64 / 1e6
    );

    let load_after = load();
    println!("load average after: {load_after}");
    std::fs::create_dir_all(&o.out)?;
    let machine_txt = format!(
        "{machine}\nload average before: {load_before}\nload average after: {load_after}\n"
    );
    for (name, text) in [
        ("machine.txt", &machine_txt),
        ("bandwidth.csv", &bw_csv),
        ("kernels.csv", &kernel_csv),
        ("products.csv", &csv),
        ("tokens.csv", &tok_csv),
    ] {
        write_atomic(&o.out.join(name), text.as_bytes())?;
    }
    println!(
        "wrote {}/{{machine.txt,bandwidth.csv,kernels.csv,products.csv,tokens.csv}}",
        o.out.display()
    );
    Ok(())
}

/// A time in µs or ms, 4 significant figures or so.
fn micros(s: f64) -> String {
    if s >= 1e-2 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}
