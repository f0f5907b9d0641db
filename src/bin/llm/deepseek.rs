//! `llm deepseek ...`: chapter 9's measurements on the toy world: the cache each kind of
//! attention keeps, DeepSeek-V3's ideas one at a time against llama-tiny over several
//! seeds, the experts' load with and without auxiliary-loss-free balancing and what they
//! specialise in, and MTP drafting for speculative decoding. The logic is the library's
//! ([`llm_lessons::deepseek`]); training a DeepSeek model on a corpus of your own is
//! `llm gpt train --preset deepseek-tiny`.

use std::path::PathBuf;

use clap::Subcommand;
use llm_lessons::data::write_atomic;
use llm_lessons::deepseek::ablation::{ablation, format_table, to_csv, variants};
use llm_lessons::deepseek::cache::{cache_table, deepseek_v3_shape, format_cache_table};
use llm_lessons::deepseek::experts::{
    balance_run, format_specialisation, load_chart, specialisation, specialisation_chart,
};
use llm_lessons::deepseek::speculative::{measure, step_costs};
use llm_lessons::gpt::tour::{toy_world_data, toy_world_run, ToyWorldConfig, END};
use llm_lessons::gpt::GptConfig;
use llm_lessons::{progress, Error};

use crate::{say, CliResult};

#[derive(Subcommand)]
pub enum DeepseekCommand {
    /// The cache per token of MHA, GQA, MQA and MLA at llama-tiny's width and at
    /// DeepSeek-V3's
    Cache,
    /// llama-tiny, + MLA, + MoE (equal active, equal total), + MTP and all three on the
    /// toy world, once per seed: test cross-entropy, parameters, cache, speed
    Table {
        /// Training steps of each run
        #[arg(long, default_value_t = 600, value_name = "N")]
        steps: usize,
        /// Seeds (weights and batches), comma-separated
        #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Folder for table.txt and runs.csv
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// llama-tiny with DeepSeekMoE trained with and without auxiliary-loss-free
    /// balancing: the experts' load over training, and the word classes each expert gets
    Balance {
        #[arg(long, default_value_t = 600, value_name = "N")]
        steps: usize,
        /// γ of the balanced run
        #[arg(long, default_value_t = 0.001, value_name = "G")]
        gamma: f32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Folder for load.svg, loads.csv, experts.txt and experts.svg
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// deepseek-tiny trained on the toy world, then greedy decoding with and without the
    /// MTP depth drafting: acceptance rate and speed-up
    Speculate {
        #[arg(long, default_value_t = 600, value_name = "N")]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prompts (the first two words of test sentences) and new tokens for each
        #[arg(long, default_value_t = 20, value_name = "N")]
        prompts: usize,
        #[arg(long, default_value_t = 48, value_name = "N")]
        new_tokens: usize,
        /// Timing repeats (the best of each is kept)
        #[arg(long, default_value_t = 5, value_name = "N")]
        repeats: usize,
    },
}

fn toy(steps: usize, seed: u64) -> Result<ToyWorldConfig, Error> {
    if steps == 0 {
        return Err(Error::InvalidArgument("--steps must be at least 1".into()));
    }
    Ok(ToyWorldConfig {
        seed,
        ..ToyWorldConfig::llama_tiny(steps)
    })
}

pub fn run(cmd: DeepseekCommand) -> CliResult {
    match cmd {
        DeepseekCommand::Cache => {
            let mut tiny = GptConfig::llama_tiny();
            tiny.n_layers = 4;
            say(format!(
                "llama-tiny's width (d_model {}, {} heads, {} layers), f32:\n{}",
                tiny.d_model,
                tiny.n_heads,
                tiny.n_layers,
                format_cache_table(&cache_table(&tiny))
            ))?;
            let v3 = deepseek_v3_shape();
            say(format!(
                "DeepSeek-V3 (d_model {}, {} heads, {} layers), f32:\n{}",
                v3.d_model,
                v3.n_heads,
                v3.n_layers,
                format_cache_table(&cache_table(&v3))
            ))
        }
        DeepseekCommand::Table { steps, seeds, out } => {
            if seeds.is_empty() {
                return Err(Error::InvalidArgument("give at least one --seeds".into()).into());
            }
            let base = toy(steps, seeds[0])?;
            let n = variants(&base.model).len() * seeds.len();
            let bar = progress::bar((n * steps) as u64, "training");
            let rows = ablation(&base, &seeds, |v, k, s| {
                bar.set_message(format!(
                    "variant {} seed {}: loss {:.3}",
                    v + 1,
                    k + 1,
                    s.loss
                ));
                bar.inc(1);
            })?;
            bar.finish_and_clear();
            let table = format_table(&rows);
            std::fs::create_dir_all(&out).map_err(|e| Error::Write {
                path: out.clone(),
                source: e,
            })?;
            write_atomic(&out.join("table.txt"), table.as_bytes())?;
            write_atomic(&out.join("runs.csv"), to_csv(&rows).as_bytes())?;
            say(format!(
                "{steps} steps of 16 x 64 tokens on the toy world, seeds {seeds:?}\n{table}wrote {}",
                out.join("table.txt").display()
            ))
        }
        DeepseekCommand::Balance {
            steps,
            gamma,
            seed,
            out,
        } => {
            let base = toy(steps, seed)?;
            let model = GptConfig {
                moe: Some(GptConfig::moe_tiny()),
                ..base.model.clone()
            };
            std::fs::create_dir_all(&out).map_err(|e| Error::Write {
                path: out.clone(),
                source: e,
            })?;
            let mut runs = Vec::new();
            for g in [gamma, 0.0] {
                let bar = progress::bar(steps as u64, &format!("training with γ = {g}"));
                let run = balance_run(&base, &model, g, |_| bar.inc(1))?;
                bar.finish_and_clear();
                runs.push((g, run));
            }
            let named: Vec<(String, _)> =
                runs.iter().map(|(g, r)| (format!("γ = {g}"), r)).collect();
            load_chart(&named, 10).save_svg(out.join("load.svg"))?;
            let mut csv = String::from("gamma,step,block,expert,tokens\n");
            for (g, r) in &runs {
                for (step, blocks) in r.loads.iter().enumerate() {
                    for (b, load) in blocks.iter().enumerate() {
                        for (e, n) in load.iter().enumerate() {
                            csv += &format!("{g},{step},{b},{e},{n}\n");
                        }
                    }
                }
            }
            write_atomic(&out.join("loads.csv"), csv.as_bytes())?;
            let mut text = String::new();
            for (g, r) in &runs {
                text += &format!(
                    "γ = {g}: MaxVio over the last 50 steps {:.3}, test cross-entropy {:.4} nats/word; final loads {:?}\n",
                    r.final_max_violation(50),
                    r.test_cross_entropy,
                    r.loads.last().cloned().unwrap_or_default()
                );
            }
            let (_, balanced) = &runs[0];
            let table = specialisation(&balanced.model, &balanced.vocab, &balanced.test_ids, 0)?;
            text += &format!(
                "\nγ = {gamma}, the first MoE block (block 1): share of each word class's tokens each expert receives (each column sums to 200%: top-2)\n{}",
                format_specialisation(&table)
            );
            specialisation_chart(&table, "What the experts of block 1 receive")
                .save_svg(out.join("experts.svg"))?;
            write_atomic(&out.join("experts.txt"), text.as_bytes())?;
            say(format!("{text}wrote {}", out.display()))
        }
        DeepseekCommand::Speculate {
            steps,
            seed,
            prompts,
            new_tokens,
            repeats,
        } => {
            let mut base = toy(steps, seed)?;
            base.model = GptConfig {
                context: base.model.context,
                ..GptConfig::deepseek_tiny()
            };
            let bar = progress::bar(steps as u64, "training deepseek-tiny");
            let run = toy_world_run(&base, |_| bar.inc(1))?;
            bar.finish_and_clear();
            let data = toy_world_data(&base);
            let starts: Vec<Vec<u32>> = data
                .test_ids
                .split(|&id| id == END)
                .filter(|s| s.len() >= 2)
                .take(prompts)
                .map(|s| [END, s[0], s[1]].to_vec())
                .collect();
            let s = measure(&run.model, &starts, new_tokens, repeats)?;
            let costs = step_costs(&run.model, &starts[0], 200)?;
            say(format!(
                "deepseek-tiny after {steps} steps (test cross-entropy {:.4}): {} prompts x {new_tokens} greedy tokens, the same with and without drafts\n  drafts accepted {}/{} ({:.1}%), main-model calls {} for {} tokens\n  plain greedy {:.1} ms, speculative {:.1} ms (best of {repeats}): speed-up {:.2}x",
                run.test_cross_entropy,
                starts.len(),
                s.stats.accepted,
                s.stats.drafts,
                100.0 * s.stats.acceptance(),
                s.stats.main_calls,
                s.stats.tokens,
                s.plain.as_secs_f64() * 1e3,
                s.speculative.as_secs_f64() * 1e3,
                s.ratio()
            ))?;
            say(format!(
                "  one step (median of 200): main model on 1 new token {:.1} µs, on 2 {:.1} µs ({:.2}x); the MTP draft {:.1} µs ({:.2}x)",
                costs.one_token * 1e6,
                costs.two_tokens * 1e6,
                costs.two_tokens / costs.one_token,
                costs.draft * 1e6,
                costs.draft / costs.one_token
            ))
        }
    }
}
