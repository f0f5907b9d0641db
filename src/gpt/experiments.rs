//! Chapter 4's claims measured on the toy world of [`super::tour`]: what the initialisation
//! does to the first steps, what warm-up buys, the ablation over several seeds, and when
//! averaging weights works. Each experiment returns its rows and a [`Report`]: a table the
//! command line prints and writes as CSV, and a chart (`llm gpt experiment NAME`).
//!
//! Every run here is a toy-world run ([`ToyWorldConfig::llama_tiny`]): one token per word,
//! 16 windows of 64 tokens a step, AdamW with a 5% warm-up and a cosine to a tenth,
//! scored on the test sentences in nats per word ([`sentence_cross_entropy`]). Seed `s`
//! draws the initial weights and the order of the training windows.

use std::fmt::Write as _;

use super::checkpoint::average;
use super::params::{Init, Params};
use super::run::{Run, RunOptions};
use super::tour::{
    ablation_configs, sentence_cross_entropy, toy_world_data, toy_world_train_config,
    ToyWorldConfig, ToyWorldData,
};
use super::train::{LossLog, StepLog, TrainConfig};
use super::Gpt;
use crate::plot::{BarChart, LineChart, Series};
use crate::{Error, Result};

/// What every experiment is given: how many seeds, how long each run, how large the toy
/// world.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Seeds 1 to `seeds`; each draws the initial weights and the order of the windows.
    pub seeds: usize,
    /// Training steps of a run.
    pub steps: usize,
    /// Training sentences (20,000 as in chapter 1); the held-out corpus has a tenth of
    /// that, the test corpus a quarter.
    pub sentences: usize,
}

impl Settings {
    /// `seeds` seeds of `steps` steps on chapter 1's 20,000 training sentences.
    pub fn new(seeds: usize, steps: usize) -> Settings {
        Settings {
            seeds,
            steps,
            sentences: 20_000,
        }
    }

    fn check(&self) -> Result<()> {
        if self.seeds == 0 || self.steps < 2 || self.sentences < 20 {
            return Err(Error::InvalidArgument(
                "an experiment needs at least 1 seed, 2 steps and 20 sentences".into(),
            ));
        }
        Ok(())
    }

    /// The toy-world run these settings describe, `steps` long, with seed `seed`.
    pub fn world(&self, steps: usize, seed: u64) -> ToyWorldConfig {
        let n = self.sentences;
        ToyWorldConfig {
            train: (n, 1),
            heldout: ((n / 10).max(2), 2),
            test: ((n / 4).max(2), 3),
            seed,
            eval_every: (steps / 10).max(1),
            ..ToyWorldConfig::llama_tiny(steps)
        }
    }

    fn seed_list(&self) -> impl Iterator<Item = u64> {
        1..=self.seeds as u64
    }
}

/// The mean, smallest and largest of a few numbers (one per seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; NaN everywhere if there are none.
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread {
                mean: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        Spread {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    /// `1.7812 (1.7790-1.7843)`, or the mean alone for one value.
    pub fn show(&self) -> String {
        if self.min == self.max || self.mean.is_nan() {
            format!("{:.4}", self.mean)
        } else {
            format!("{:.4} ({:.4}-{:.4})", self.mean, self.min, self.max)
        }
    }
}

/// A table of strings: what the command line prints and writes as CSV.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The table as CSV, fields with a comma or a quote quoted.
    pub fn to_csv(&self) -> String {
        let field = |f: &String| {
            if f.contains([',', '"']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.columns).chain(&self.rows) {
            let line: Vec<String> = row.iter().map(field).collect();
            let _ = writeln!(out, "{}", line.join(","));
        }
        out
    }

    /// The table as aligned text.
    pub fn to_text(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (w, f) in widths.iter_mut().zip(row) {
                *w = (*w).max(f.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.columns).chain(&self.rows) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(f, w)| format!("{f:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        out
    }
}

/// A chart of an experiment.
#[derive(Clone, Debug, PartialEq)]
pub enum Chart {
    Line(LineChart),
    Bar(BarChart),
}

impl Chart {
    /// Writes the chart as SVG, atomically.
    pub fn save_svg(&self, path: &std::path::Path) -> Result<()> {
        match self {
            Chart::Line(c) => c.save_svg(path),
            Chart::Bar(c) => c.save_svg(path),
        }
    }
}

/// What an experiment shows: a title, a table, a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub title: String,
    pub table: Table,
    pub chart: Chart,
}

/// The names `llm gpt experiment` takes, in the book's order.
pub const EXPERIMENTS: [&str; 5] = ["init", "warmup", "ablation", "averaging", "agreement"];

/// Runs the experiment `name` (one of [`EXPERIMENTS`]); `on_step` sees every training
/// step of every run.
pub fn run_experiment(
    name: &str,
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Report> {
    settings.check()?;
    match name {
        "init" => Ok(init_report(settings, &init(settings, on_step)?)),
        "warmup" => Ok(warmup_report(settings, &warmup(settings, on_step)?)),
        "ablation" => Ok(ablation_report(settings, &ablation(settings, on_step)?)),
        "averaging" => Ok(averaging_report(settings, &averaging(settings, on_step)?)),
        "agreement" => Ok(agreement_report(settings, &agreement(settings, on_step)?)),
        other => Err(Error::InvalidArgument(format!(
            "no experiment {other:?}: choose one of {}",
            EXPERIMENTS.join(", ")
        ))),
    }
}

/// How many training steps [`run_experiment`] takes for `name`, for a progress bar.
pub fn planned_steps(name: &str, settings: &Settings) -> usize {
    let (s, n) = (settings.steps, settings.seeds);
    match name {
        "init" => INIT_RULES.len() * n * s,
        "warmup" => WARMUP_LRS.len() * 2 * n * s,
        "ablation" => ablation_configs(64).len() * n * s,
        "averaging" => n * (3 * s + 2 * (s / 2).max(1)),
        "agreement" => n * s,
        _ => 0,
    }
}

/// Trains `model` on the toy world's training ids with `train`, measuring the held-out
/// loss every `eval_every` steps. Returns the model after each step of `keep` (a step
/// count, in increasing order) and the log.
fn train_keeping(
    model: Gpt,
    data: &ToyWorldData,
    train: TrainConfig,
    eval_every: usize,
    keep: &[usize],
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<(Vec<Gpt>, LossLog)> {
    let total = train.schedule.total;
    let mut run = Run::from_model(model, train, 0.0, &data.train_ids)?;
    let mut kept = Vec::new();
    let mut stops: Vec<usize> = keep
        .iter()
        .copied()
        .filter(|&s| s <= total)
        .chain(std::iter::once(total))
        .collect();
    stops.sort_unstable();
    stops.dedup();
    for stop in stops {
        let options = RunOptions {
            eval_every,
            stop_at: Some(stop),
            ..RunOptions::default()
        };
        run.train(&data.train_ids, &data.held_ids, &options, |s, _| on_step(s))?;
        if keep.contains(&stop) {
            kept.push(run.model.clone());
        }
    }
    Ok((kept, run.log))
}

/// The model `config` describes, for the toy world's vocabulary, initialised with its
/// seed.
fn new_model(config: &ToyWorldConfig, data: &ToyWorldData) -> Result<Gpt> {
    let mut cfg = config.model.clone();
    cfg.vocab_size = data.vocab.len();
    Gpt::init(cfg, config.seed)
}

/// Trains `config`'s model from its initial weights; returns it and its log.
fn train_world(
    config: &ToyWorldConfig,
    data: &ToyWorldData,
    train: TrainConfig,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<(Gpt, LossLog)> {
    let model = new_model(config, data)?;
    let steps = train.schedule.total;
    let (mut kept, log) = train_keeping(model, data, train, config.eval_every, &[steps], on_step)?;
    Ok((kept.remove(0), log))
}

/// The mean over runs of the training loss, step by step (the shortest run's length),
/// then the mean over windows of `smooth` steps, as chart points (step, nats).
fn mean_curve(logs: &[&LossLog], smooth: usize) -> Vec<(f64, f64)> {
    let n = logs.iter().map(|l| l.rows.len()).min().unwrap_or(0);
    let per_step: Vec<f64> = (0..n)
        .map(|i| logs.iter().map(|l| l.rows[i].step.loss as f64).sum::<f64>() / logs.len() as f64)
        .collect();
    per_step
        .chunks(smooth.max(1))
        .enumerate()
        .map(|(k, c)| {
            let end = k * smooth.max(1) + c.len();
            (end as f64, c.iter().sum::<f64>() / c.len() as f64)
        })
        .collect()
}

/// The mean training loss of steps `from..to` (counted from 0) of a log.
fn mean_loss(log: &LossLog, from: usize, to: usize) -> f64 {
    let rows = &log.rows[from.min(log.rows.len())..to.min(log.rows.len())];
    rows.iter().map(|r| r.step.loss as f64).sum::<f64>() / rows.len().max(1) as f64
}

/// A row's cells after its label: the training loss over the 10 steps before each step of
/// `at` and the test cross-entropy, as spreads over the seeds, then which seeds diverged.
fn run_cells(
    logs: &[LossLog],
    at: &[usize],
    test: &[f64],
    diverged: &[(u64, usize)],
) -> Vec<String> {
    let mut cells: Vec<String> = at
        .iter()
        .map(|&s| {
            let v: Vec<f64> = logs
                .iter()
                .map(|l| mean_loss(l, s.saturating_sub(10), s))
                .collect();
            Spread::of(&v).show()
        })
        .collect();
    cells.push(Spread::of(test).show());
    cells.push(if diverged.is_empty() {
        "no".into()
    } else {
        diverged
            .iter()
            .map(|(seed, step)| format!("seed {seed} at step {step}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    cells
}

// ANCHOR: init_rules
/// How the initial weights are drawn, for the initialisation experiment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitRule {
    /// GPT-2's rule, the crate's: N(0, 0.02²), the two residual projections (`o_proj`,
    /// `down_proj`) N(0, (0.02/√(2L))²).
    Gpt2,
    /// N(0, 0.02²) for every matrix, the residual projections included.
    NoDepthScaling,
    /// N(0, σ²) for every matrix and embedding.
    Normal(f32),
}

impl InitRule {
    /// Parameters for `model_cfg` drawn with `seed` by this rule: GPT-2's draw, each
    /// normally drawn tensor then rescaled to this rule's standard deviation (norm weights
    /// stay 1, biases 0).
    pub fn params(self, cfg: &super::GptConfig, seed: u64) -> Params {
        let mut p = Params::init(cfg, seed);
        p.visit_mut(|spec, t| {
            if let Init::Normal { std } = spec.init {
                let want = match self {
                    InitRule::Gpt2 => std,
                    InitRule::NoDepthScaling => 0.02,
                    InitRule::Normal(s) => s,
                };
                t.iter_mut().for_each(|x| *x *= want / std);
            }
        });
        p
    }

    /// The rule as the table and the chart name it.
    pub fn label(self) -> String {
        match self {
            InitRule::Gpt2 => "GPT-2: N(0, 0.02²), residual projections / √(2L)".into(),
            InitRule::NoDepthScaling => "N(0, 0.02²) everywhere (no √(2L))".into(),
            InitRule::Normal(s) => format!("N(0, {s}²) everywhere"),
        }
    }
}
// ANCHOR_END: init_rules

/// The rules the initialisation experiment compares.
pub const INIT_RULES: [InitRule; 5] = [
    InitRule::Gpt2,
    InitRule::NoDepthScaling,
    InitRule::Normal(0.1),
    InitRule::Normal(0.3),
    InitRule::Normal(1.0),
];

/// One initialisation rule over the seeds.
#[derive(Clone, Debug)]
pub struct InitRow {
    pub rule: InitRule,
    /// ln V, the loss of uniform guessing over the vocabulary.
    pub ln_v: f64,
    /// Held-out cross-entropy (nats/word) of the untrained model, one per seed.
    pub first_loss: Vec<f64>,
    /// The runs' logs (one per seed that did not stop).
    pub logs: Vec<LossLog>,
    /// Seeds whose run stopped because the loss passed 3 ln V, and the step.
    pub diverged: Vec<(u64, usize)>,
    /// Test cross-entropy after the run, one per seed that finished.
    pub test: Vec<f64>,
}

/// The initialisation experiment: for each of [`INIT_RULES`] and each seed, the held-out
/// loss of the untrained model and a run of `settings.steps` steps from it.
pub fn init(
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Vec<InitRow>> {
    let data = toy_world_data(&settings.world(settings.steps, 1));
    let mut rows = Vec::new();
    for rule in INIT_RULES {
        let mut row = InitRow {
            rule,
            ln_v: (data.vocab.len() as f64).ln(),
            first_loss: Vec::new(),
            logs: Vec::new(),
            diverged: Vec::new(),
            test: Vec::new(),
        };
        for seed in settings.seed_list() {
            let config = settings.world(settings.steps, seed);
            let mut cfg = config.model.clone();
            cfg.vocab_size = data.vocab.len();
            let model = Gpt::new(cfg.clone(), rule.params(&cfg, seed))?;
            row.first_loss
                .push(sentence_cross_entropy(&model, &data.held_ids)?);
            let train = toy_world_train_config(&config);
            let mut run = Run::from_model(model, train, 0.0, &data.train_ids)?;
            let options = RunOptions {
                eval_every: config.eval_every,
                ..RunOptions::default()
            };
            match run.train(&data.train_ids, &data.held_ids, &options, |s, _| on_step(s)) {
                Ok(_) => {
                    row.test
                        .push(sentence_cross_entropy(&run.model, &data.test_ids)?);
                    row.logs.push(run.log);
                }
                Err(Error::Diverged { step, .. }) => row.diverged.push((seed, step)),
                Err(e) => return Err(e),
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Steps at which the tables give the training loss (the mean over the 10 steps before).
fn checkpoints_of(steps: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [10, 50, 100, 200, 400, 800]
        .into_iter()
        .filter(|&s| s < steps)
        .collect();
    v.push(steps);
    v
}

fn init_report(settings: &Settings, rows: &[InitRow]) -> Report {
    let at = checkpoints_of(settings.steps);
    let mut columns = vec![
        "initialisation".to_string(),
        "untrained held-out (nats/word)".to_string(),
    ];
    columns.extend(at.iter().map(|s| format!("train loss at step {s}")));
    columns.push("test after the run".into());
    columns.push("stopped (loss > 3 ln V)".into());
    let mut table = Table {
        columns,
        rows: Vec::new(),
    };
    let mut chart = LineChart::new(
        format!(
            "llama-tiny's first {} steps from five initialisations",
            settings.steps
        ),
        "step",
        "training loss (nats/word, mean over seeds)",
    )
    .log_y();
    for row in rows {
        let mut cells = vec![row.rule.label(), Spread::of(&row.first_loss).show()];
        cells.extend(run_cells(&row.logs, &at, &row.test, &row.diverged));
        table.rows.push(cells);
        if !row.logs.is_empty() {
            let logs: Vec<&LossLog> = row.logs.iter().collect();
            let smooth = (settings.steps / 100).max(1);
            chart = chart.series(Series::new(row.rule.label(), mean_curve(&logs, smooth)));
        }
    }
    Report {
        title: format!(
            "Initialisation: llama-tiny on the toy world, {} steps, {} seed(s)",
            settings.steps, settings.seeds
        ),
        table,
        chart: Chart::Line(chart),
    }
}

/// The peak learning rates of the warm-up experiment: the toy world's and ten times it.
pub const WARMUP_LRS: [f32; 2] = [3e-3, 3e-2];

/// One learning rate, with or without warm-up, over the seeds.
#[derive(Clone, Debug)]
pub struct WarmupRow {
    pub lr: f32,
    /// Warm-up steps (0: none).
    pub warmup: usize,
    pub logs: Vec<LossLog>,
    /// Test cross-entropy (nats/word), one per seed that finished.
    pub test: Vec<f64>,
    /// Seeds whose run stopped (loss above 3 ln V), and the step.
    pub diverged: Vec<(u64, usize)>,
}

/// The warm-up experiment: the toy-world run at each of [`WARMUP_LRS`], with its 5%
/// warm-up and with none (the cosine from the first step), over the seeds.
pub fn warmup(
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Vec<WarmupRow>> {
    let data = toy_world_data(&settings.world(settings.steps, 1));
    let mut rows = Vec::new();
    for lr in WARMUP_LRS {
        for with in [true, false] {
            let mut row = WarmupRow {
                lr,
                warmup: 0,
                logs: Vec::new(),
                test: Vec::new(),
                diverged: Vec::new(),
            };
            for seed in settings.seed_list() {
                let mut config = settings.world(settings.steps, seed);
                config.lr = lr;
                let mut train = toy_world_train_config(&config);
                if !with {
                    train.schedule.warmup = 0;
                }
                row.warmup = train.schedule.warmup;
                match train_world(&config, &data, train, on_step) {
                    Ok((model, log)) => {
                        row.test
                            .push(sentence_cross_entropy(&model, &data.test_ids)?);
                        row.logs.push(log);
                    }
                    Err(Error::Diverged { step, .. }) => row.diverged.push((seed, step)),
                    Err(e) => return Err(e),
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn warmup_report(settings: &Settings, rows: &[WarmupRow]) -> Report {
    let at = checkpoints_of(settings.steps);
    let mut columns = vec!["peak lr".to_string(), "warm-up steps".to_string()];
    columns.extend(at.iter().map(|s| format!("train loss at step {s}")));
    columns.push("test cross-entropy (nats/word)".into());
    columns.push("stopped (loss > 3 ln V)".into());
    let mut table = Table {
        columns,
        rows: Vec::new(),
    };
    let early = (settings.steps / 4).max(2);
    let mut chart = LineChart::new(
        format!("The first {early} steps with and without warm-up"),
        "step",
        "training loss (nats/word, mean over seeds)",
    );
    for row in rows {
        let mut cells = vec![format!("{:e}", row.lr), row.warmup.to_string()];
        cells.extend(run_cells(&row.logs, &at, &row.test, &row.diverged));
        table.rows.push(cells);
        if !row.logs.is_empty() {
            let logs: Vec<&LossLog> = row.logs.iter().collect();
            let mut curve = mean_curve(&logs, 2);
            curve.retain(|&(s, _)| s <= early as f64);
            let name = if row.warmup > 0 {
                format!("lr {:e}, {} warm-up steps", row.lr, row.warmup)
            } else {
                format!("lr {:e}, no warm-up", row.lr)
            };
            chart = chart.series(Series::new(name, curve));
        }
    }
    Report {
        title: format!(
            "Warm-up: llama-tiny on the toy world, {} steps, {} seed(s)",
            settings.steps, settings.seeds
        ),
        table,
        chart: Chart::Line(chart),
    }
}

/// One model of the ablation over the seeds.
#[derive(Clone, Debug)]
pub struct AblationRow {
    pub name: &'static str,
    pub params: usize,
    /// Test cross-entropy (nats/word), one per seed.
    pub test: Vec<f64>,
    /// The last held-out loss of each run.
    pub held_out: Vec<f64>,
}

/// Chapter 4's ablation ([`ablation_configs`]) over the seeds: each model trained
/// `settings.steps` steps per seed, on the same data.
pub fn ablation(
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Vec<AblationRow>> {
    let base = settings.world(settings.steps, 1);
    let data = toy_world_data(&base);
    let mut rows = Vec::new();
    for (name, model) in ablation_configs(base.model.context) {
        let mut row = AblationRow {
            name,
            params: 0,
            test: Vec::new(),
            held_out: Vec::new(),
        };
        for seed in settings.seed_list() {
            let config = ToyWorldConfig {
                model: model.clone(),
                ..settings.world(settings.steps, seed)
            };
            let train = toy_world_train_config(&config);
            let (m, log) = train_world(&config, &data, train, on_step)?;
            row.params = m.cfg.n_params();
            row.test.push(sentence_cross_entropy(&m, &data.test_ids)?);
            row.held_out.push(
                log.rows
                    .iter()
                    .rev()
                    .find_map(|r| r.held_out)
                    .map_or(f64::NAN, f64::from),
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Each seed's figure, in seed order.
fn per_seed(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ablation_report(settings: &Settings, rows: &[AblationRow]) -> Report {
    let mut table = Table::new(&[
        "model",
        "parameters",
        "test cross-entropy (nats/word): mean (min-max)",
        "per seed",
        "last held-out",
    ]);
    for r in rows {
        table.rows.push(vec![
            r.name.to_string(),
            r.params.to_string(),
            Spread::of(&r.test).show(),
            per_seed(&r.test),
            Spread::of(&r.held_out).show(),
        ]);
    }
    let lowest = rows
        .iter()
        .flat_map(|r| r.test.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let origin = ((lowest - 0.1) * 10.0).floor() / 10.0;
    let chart = BarChart::new(
        format!(
            "Ablation: test cross-entropy after {} steps, {} seed(s) (bar: mean, line: min to max)",
            settings.steps, settings.seeds
        ),
        "test cross-entropy (nats/word)",
    )
    .starting_at(origin.max(0.0))
    .ranges(rows.iter().map(|r| {
        let s = Spread::of(&r.test);
        (r.name, s.mean, s.min, s.max)
    }));
    Report {
        title: format!(
            "Ablation: gpt2-tiny, gpt2-tiny with one of Llama's choices, llama-tiny; {} steps, {} seed(s)",
            settings.steps, settings.seeds
        ),
        table,
        chart: Chart::Bar(chart),
    }
}

/// One model or mean of the averaging experiment, over the seeds.
#[derive(Clone, Debug)]
pub struct AveragingRow {
    pub what: String,
    /// Test cross-entropy (nats/word), one per seed.
    pub test: Vec<f64>,
}

/// How many checkpoints the averaging experiment averages.
pub const AVERAGE_LAST: usize = 5;

/// The averaging experiment, per seed `s`:
/// (a) two models trained independently (seeds `s` and `s + 100`) and their mean;
/// (b) the mean of the last [`AVERAGE_LAST`] checkpoints (every `steps / 20` steps) of one
/// run, with the cosine to a tenth and with the last 20% of the steps annealed linearly
/// to 0;
/// (c) two continuations of one base (the run of (a)) for `steps / 2` more steps, with
/// different window orders, and their mean.
pub fn averaging(
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Vec<AveragingRow>> {
    let steps = settings.steps;
    let data = toy_world_data(&settings.world(steps, 1));
    let every = (steps / 20).max(1);
    let keep: Vec<usize> = (0..AVERAGE_LAST)
        .rev()
        .map(|k| steps.saturating_sub(k * every))
        .filter(|&s| s > 0)
        .collect();
    let names = [
        "run A (seed s), last step",
        "run B (seed s + 100), last step",
        "(a) mean of A and B",
        "run A: mean of its last 5 checkpoints",
        "run A': the same with the last 20% annealed to 0, last step",
        "run A': mean of its last 5 checkpoints",
        "fine-tune 1 of A (window order s + 200), last step",
        "fine-tune 2 of A (window order s + 300), last step",
        "(c) mean of the two fine-tunes",
    ];
    let mut rows: Vec<AveragingRow> = names
        .iter()
        .map(|n| AveragingRow {
            what: n.to_string(),
            test: Vec::new(),
        })
        .collect();
    let score = |m: &Gpt| sentence_cross_entropy(m, &data.test_ids);
    for seed in settings.seed_list() {
        let config_a = settings.world(steps, seed);
        let train_a = toy_world_train_config(&config_a);
        let (kept_a, _) = train_keeping(
            new_model(&config_a, &data)?,
            &data,
            train_a.clone(),
            0,
            &keep,
            on_step,
        )?;
        let a = kept_a.last().expect("the last step is kept").clone();
        let config_b = settings.world(steps, seed + 100);
        let (b, _) = train_world(&config_b, &data, toy_world_train_config(&config_b), on_step)?;
        let mut train_annealed = train_a.clone();
        train_annealed.schedule.anneal = (steps / 5).max(1);
        let (kept_annealed, _) = train_keeping(
            new_model(&config_a, &data)?,
            &data,
            train_annealed,
            0,
            &keep,
            on_step,
        )?;
        let mut tunes = Vec::new();
        for order in [200, 300] {
            let mut train = toy_world_train_config(&config_a);
            let more = (steps / 2).max(1);
            train.seed = seed + order;
            train.schedule.total = more;
            train.schedule.warmup = (more / 20).max(1);
            train.schedule.max_lr = config_a.lr / 3.0;
            train.schedule.min_lr = config_a.lr / 30.0;
            let (mut kept, _) = train_keeping(a.clone(), &data, train, 0, &[more], on_step)?;
            tunes.push(kept.remove(0));
        }
        let models = [
            score(&a)?,
            score(&b)?,
            score(&average(&[a.clone(), b])?)?,
            score(&average(&kept_a)?)?,
            score(kept_annealed.last().expect("the last step is kept"))?,
            score(&average(&kept_annealed)?)?,
            score(&tunes[0])?,
            score(&tunes[1])?,
            score(&average(&tunes)?)?,
        ];
        for (row, h) in rows.iter_mut().zip(models) {
            row.test.push(h);
        }
    }
    Ok(rows)
}

fn averaging_report(settings: &Settings, rows: &[AveragingRow]) -> Report {
    let mut table = Table::new(&[
        "model",
        "test cross-entropy (nats/word): mean (min-max)",
        "per seed",
    ]);
    for r in rows {
        table.rows.push(vec![
            r.what.clone(),
            Spread::of(&r.test).show(),
            per_seed(&r.test),
        ]);
    }
    let chart = BarChart::new(
        format!(
            "Averaging weights: test cross-entropy, {} steps, {} seed(s) (bar: mean, line: min to max)",
            settings.steps, settings.seeds
        ),
        "test cross-entropy (nats/word)",
    )
    .ranges(rows.iter().map(|r| {
        let s = Spread::of(&r.test);
        (r.what.clone(), s.mean, s.min, s.max)
    }));
    Report {
        title: format!(
            "Checkpoint averaging on the toy world: {} steps, {} seed(s)",
            settings.steps, settings.seeds
        ),
        table,
        chart: Chart::Bar(chart),
    }
}

/// The words that agree with the subject, by kind: at a position where the test sentence
/// has one of a group, the right form is that word and the wrong ones are the others.
pub const AGREEMENT_GROUPS: [(&str, [&str; 4]); 2] = [
    ("possessive", ["his", "her", "its", "their"]),
    ("pronoun", ["he", "she", "it", "they"]),
];

/// Distances at and above this are counted together.
const FAR: usize = 10;

/// One distance of the agreement experiment: how far the agreeing word is from the
/// subject, and how often each model puts the right form first among its group.
#[derive(Clone, Debug)]
pub struct AgreementRow {
    /// Words from the subject's first word (the word after the sentence's opening "the")
    /// to the agreeing word; [`FAR`] stands for that many or more.
    pub distance: usize,
    /// Agreeing positions at this distance in the test sentences.
    pub positions: usize,
    /// The transformer's accuracy, one per seed.
    pub model: Vec<f64>,
    /// Each n-gram model's name and accuracy.
    pub ngrams: Vec<(String, f64)>,
}

/// The agreeing positions of a sentence: (word index, group, index of the right word in
/// its group).
fn agreeing_positions(words: &[String]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        for (g, (_, group)) in AGREEMENT_GROUPS.iter().enumerate() {
            if let Some(k) = group.iter().position(|x| x == w) {
                out.push((i, g, k));
            }
        }
    }
    out
}

/// The index of the largest of `scores`.
fn argmax(scores: &[f64]) -> usize {
    (0..scores.len()).fold(0, |best, k| if scores[k] > scores[best] { k } else { best })
}

/// "The agreements that reach six words back", measured: on the test sentences, at each
/// possessive or subject pronoun, whether the model gives the right form (the one the
/// grammar wrote, which agrees with the subject) more probability than the other three
/// of its group; `llama-tiny` (one run per seed, `settings.steps` steps, each sentence
/// read after the test sentences before it, as in training) against chapter 1's modified Kneser-Ney 3-gram and 5-gram, by
/// distance to the subject.
pub fn agreement(
    settings: &Settings,
    on_step: &mut (dyn FnMut(&StepLog) + Send),
) -> Result<Vec<AgreementRow>> {
    use crate::ngram::{NgramConfig, NgramModel, Smoothing};
    use rayon::prelude::*;

    let data = toy_world_data(&settings.world(settings.steps, 1));
    let bucket = |i: usize| i.saturating_sub(1).clamp(1, FAR);
    let mut rows: Vec<AgreementRow> = (1..=FAR)
        .map(|distance| AgreementRow {
            distance,
            positions: 0,
            model: Vec::new(),
            ngrams: Vec::new(),
        })
        .collect();
    for s in &data.test {
        for (i, _, _) in agreeing_positions(&s.words) {
            rows[bucket(i) - 1].positions += 1;
        }
    }
    let word_id = |w: &str| {
        data.vocab
            .words
            .iter()
            .position(|x| x == w)
            .map_or(super::tour::WordVocab::UNK, |k| k as u32)
    };
    let group_ids: Vec<Vec<u32>> = AGREEMENT_GROUPS
        .iter()
        .map(|(_, g)| g.iter().map(|w| word_id(w)).collect())
        .collect();
    for seed in settings.seed_list() {
        let config = settings.world(settings.steps, seed);
        let (model, _) = train_world(&config, &data, toy_world_train_config(&config), on_step)?;
        // Each sentence is read as in training, after the test sentences before it that
        // fit the context (they say nothing about it: the grammar draws each sentence
        // alone), from a `</s>`.
        let ends: Vec<usize> = (0..data.test_ids.len())
            .filter(|&i| data.test_ids[i] == super::tour::END)
            .collect();
        let ctx = model.cfg.context;
        let hits: Vec<Result<Vec<(usize, bool)>>> = data
            .test
            .par_iter()
            .enumerate()
            .map(|(k, s)| {
                let (own, stop) = (ends[k], ends[k + 1]);
                let start = ends[..=k]
                    .iter()
                    .copied()
                    .find(|&e| stop - e <= ctx)
                    .unwrap_or(own);
                let ids = &data.test_ids[start..stop.min(start + ctx)];
                let mut acts = super::Activations::new(&model.cfg, 1, ids.len());
                model.forward(&mut acts, ids)?;
                let v = model.cfg.vocab_size;
                Ok(agreeing_positions(&s.words)
                    .into_iter()
                    .filter(|&(i, _, _)| own - start + i < ids.len())
                    .map(|(i, g, k)| {
                        // the logits at the input before word i predict it
                        let row = own - start + i;
                        let logits = &acts.logits[row * v..(row + 1) * v];
                        let scores: Vec<f64> = group_ids[g]
                            .iter()
                            .map(|&id| logits[id as usize] as f64)
                            .collect();
                        (bucket(i), argmax(&scores) == k)
                    })
                    .collect())
            })
            .collect();
        let mut right = [0usize; FAR];
        for h in hits {
            for (b, ok) in h? {
                right[b - 1] += ok as usize;
            }
        }
        for row in &mut rows {
            row.model
                .push(right[row.distance - 1] as f64 / row.positions.max(1) as f64);
        }
    }
    let words = |c: &[super::super::data::grammar::GeneratedSentence]| {
        c.iter().map(|s| s.words.clone()).collect::<Vec<_>>()
    };
    let (train_w, held_w) = (words(&data.train), words(&data.heldout));
    for order in [3, 5] {
        let m = NgramModel::train(
            &train_w,
            &held_w,
            NgramConfig::new(order, Smoothing::ModifiedKneserNey),
        )?;
        let ids: Vec<Vec<u32>> = AGREEMENT_GROUPS
            .iter()
            .map(|(_, g)| {
                g.iter()
                    .map(|w| m.vocab.get(w).unwrap_or(crate::ngram::vocab::UNK))
                    .collect()
            })
            .collect();
        let mut right = [0usize; FAR];
        for s in &data.test {
            let at = agreeing_positions(&s.words);
            let mut i = 0;
            m.for_each_event(&m.vocab.encode(&s.words), |h, _| {
                for &(pos, g, k) in at.iter().filter(|a| a.0 == i) {
                    let scores: Vec<f64> = ids[g].iter().map(|&w| m.prob(h, w)).collect();
                    right[bucket(pos) - 1] += (argmax(&scores) == k) as usize;
                }
                i += 1;
            });
        }
        for row in &mut rows {
            row.ngrams.push((
                format!("{order}-gram (modified Kneser-Ney)"),
                right[row.distance - 1] as f64 / row.positions.max(1) as f64,
            ));
        }
    }
    rows.retain(|r| r.positions > 0);
    Ok(rows)
}

fn agreement_report(settings: &Settings, rows: &[AgreementRow]) -> Report {
    let mut columns = vec![
        "words from the subject".to_string(),
        "agreeing positions".to_string(),
        "llama-tiny: right form first".to_string(),
    ];
    if let Some(r) = rows.first() {
        columns.extend(r.ngrams.iter().map(|(n, _)| n.clone()));
    }
    let mut table = Table {
        columns,
        rows: Vec::new(),
    };
    let show = |d: usize| {
        if d == FAR {
            format!("{FAR}+")
        } else {
            d.to_string()
        }
    };
    for r in rows {
        let mut cells = vec![
            show(r.distance),
            r.positions.to_string(),
            Spread::of(&r.model).show(),
        ];
        cells.extend(r.ngrams.iter().map(|(_, a)| format!("{a:.4}")));
        table.rows.push(cells);
    }
    let mut chart = LineChart::new(
        "Possessives and pronouns: the right form first, by distance to the subject",
        "words from the subject's first word",
        "accuracy",
    )
    .series(Series::new(
        format!("llama-tiny, {} steps", settings.steps),
        rows.iter()
            .map(|r| (r.distance as f64, Spread::of(&r.model).mean))
            .collect(),
    ));
    for k in 0..rows.first().map_or(0, |r| r.ngrams.len()) {
        chart = chart.series(Series::new(
            rows[0].ngrams[k].0.clone(),
            rows.iter()
                .map(|r| (r.distance as f64, r.ngrams[k].1))
                .collect(),
        ));
    }
    Report {
        title: format!(
            "Agreement on the toy world's test sentences: llama-tiny ({} steps, {} seed(s)) against n-grams",
            settings.steps, settings.seeds
        ),
        table,
        chart: Chart::Line(chart),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;

    #[test]
    fn a_spread_is_mean_min_and_max() {
        let s = Spread::of(&[1.0, 2.0, 6.0]);
        assert_eq!((s.mean, s.min, s.max), (3.0, 1.0, 6.0));
        assert_eq!(s.show(), "3.0000 (1.0000-6.0000)");
        assert_eq!(Spread::of(&[1.5]).show(), "1.5000");
        assert!(Spread::of(&[]).mean.is_nan());
    }

    #[test]
    fn tables_quote_commas_in_csv_and_align_in_text() {
        let mut t = Table::new(&["model", "h"]);
        t.rows.push(vec!["a, b".into(), "1.5".into()]);
        assert_eq!(t.to_csv(), "model,h\n\"a, b\",1.5\n");
        assert_eq!(t.to_text(), "model  h\na, b   1.5\n");
    }

    /// GPT-2's rule is the crate's initialisation; the others rescale each normally drawn
    /// tensor: without √(2L), `o_proj` is √(2L) times larger; N(0, 1) makes the embedding
    /// 50 times larger; norm weights stay 1.
    #[test]
    fn init_rules_rescale_gpt2s_draw() {
        let cfg = GptConfig::llama_tiny();
        let gpt2 = Params::init(&cfg, 3);
        assert_eq!(InitRule::Gpt2.params(&cfg, 3), gpt2);
        let flat = InitRule::NoDepthScaling.params(&cfg, 3);
        let root = ((2 * cfg.n_layers) as f32).sqrt();
        let (mut o_gpt2, mut o_flat) = (Vec::new(), Vec::new());
        gpt2.visit_linears(|name, l| {
            if let (true, crate::gpt::Weight::F32(w)) = (name.ends_with("o_proj"), &l.weight) {
                o_gpt2.extend_from_slice(w)
            }
        });
        flat.visit_linears(|name, l| {
            if let (true, crate::gpt::Weight::F32(w)) = (name.ends_with("o_proj"), &l.weight) {
                o_flat.extend_from_slice(w)
            }
        });
        assert!(!o_gpt2.is_empty());
        for (a, b) in o_gpt2.iter().zip(&o_flat) {
            assert!((a * root - b).abs() <= 1e-6 * b.abs().max(1e-3), "{a} {b}");
        }
        let wide = InitRule::Normal(1.0).params(&cfg, 3);
        assert!((wide.tok_emb[5] - 50.0 * gpt2.tok_emb[5]).abs() < 1e-4);
        assert!(wide.final_norm.weight().data.iter().all(|&w| w == 1.0));
    }

    #[test]
    fn agreeing_positions_name_the_group_and_the_right_word() {
        let words: Vec<String> = "the queen who feeds her hound rides her horse and she sleeps"
            .split(' ')
            .map(String::from)
            .collect();
        assert_eq!(
            agreeing_positions(&words),
            [(4, 0, 1), (7, 0, 1), (10, 1, 1)]
        );
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }

    #[test]
    fn unknown_experiments_and_empty_settings_are_errors() {
        let mut quiet = |_: &StepLog| {};
        assert!(run_experiment("nothing", &Settings::new(1, 2), &mut quiet).is_err());
        assert!(run_experiment("init", &Settings::new(0, 2), &mut quiet).is_err());
    }
}
