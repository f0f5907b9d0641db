//! The experts during and after training: how evenly the router spreads the tokens, with
//! and without auxiliary-loss-free balancing, and what each expert ends up handling.
//!
//! Load balance is measured as DeepSeek's auxiliary-loss-free paper measures it (Wang et
//! al. 2024, "Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts", §4.1):
//! `MaxVio = (max_i load_i - mean load) / mean load` for a batch, 0 when perfectly even.

use crate::data::grammar::GeneratedSentence;
use crate::gpt::tour::{
    sentence_cross_entropy, toy_world_data, toy_world_train_config, ToyWorldConfig, WordVocab, END,
};
use crate::gpt::train::{StepLog, Trainer};
use crate::gpt::{Activations, Gpt, GptConfig};
use crate::plot::{HeatmapChart, LineChart, Series};
use crate::Result;
use rustc_hash::FxHashMap;

/// `(max load - mean load) / mean load` of one block's expert loads.
pub fn max_violation(load: &[usize]) -> f64 {
    let mean = load.iter().sum::<usize>() as f64 / load.len().max(1) as f64;
    let max = load.iter().copied().max().unwrap_or(0) as f64;
    if mean == 0.0 {
        0.0
    } else {
        (max - mean) / mean
    }
}

/// A training run whose expert loads were recorded at every step.
pub struct BalanceRun {
    pub model: Gpt,
    pub vocab: WordVocab,
    /// Per step, per MoE block, the tokens each routed expert received.
    pub loads: Vec<Vec<Vec<usize>>>,
    pub test_cross_entropy: f64,
    pub test: Vec<GeneratedSentence>,
    pub test_ids: Vec<u32>,
}

impl BalanceRun {
    /// MaxVio per step, averaged over the MoE blocks.
    pub fn max_violation_per_step(&self) -> Vec<f64> {
        self.loads
            .iter()
            .map(|blocks| {
                blocks.iter().map(|l| max_violation(l)).sum::<f64>() / blocks.len().max(1) as f64
            })
            .collect()
    }

    /// Mean MaxVio over the last `k` steps.
    pub fn final_max_violation(&self, k: usize) -> f64 {
        let v = self.max_violation_per_step();
        let tail = &v[v.len().saturating_sub(k)..];
        tail.iter().sum::<f64>() / tail.len().max(1) as f64
    }
}

// ANCHOR: balance_run
/// Trains `model` (with an MoE) on the toy world as [`toy_world_data`] and
/// [`toy_world_train_config`] set it up, with the balancing bias moving at `gamma` per step
/// (0: the bias stays 0, routing by affinity alone), recording every step's loads.
pub fn balance_run(
    base: &ToyWorldConfig,
    model: &GptConfig,
    gamma: f32,
    mut on_step: impl FnMut(&StepLog),
) -> Result<BalanceRun> {
    let data = toy_world_data(base);
    let mut cfg = model.clone();
    cfg.vocab_size = data.vocab.len();
    if let Some(m) = cfg.moe.as_mut() {
        m.bias_update_speed = gamma;
    }
    let mut gpt = Gpt::init(cfg, base.seed)?;
    let train = toy_world_train_config(&ToyWorldConfig {
        model: gpt.cfg.clone(),
        ..base.clone()
    });
    let mut trainer = Trainer::new(&gpt, train)?;
    let mut loads = Vec::with_capacity(base.steps);
    for _ in 0..base.steps {
        let log = trainer.step(&mut gpt, &data.train_ids)?;
        loads.push(trainer.expert_loads());
        on_step(&log);
    }
    let test_cross_entropy = sentence_cross_entropy(&gpt, &data.test_ids)?;
    Ok(BalanceRun {
        model: gpt,
        vocab: data.vocab,
        loads,
        test_cross_entropy,
        test: data.test,
        test_ids: data.test_ids,
    })
}
// ANCHOR_END: balance_run

/// The grammar's rules of single words that write nouns: people, animals, things, places.
const NOUNS: [&str; 9] = [
    "ELDER_", "YOUNG_", "ANIMAL", "PET", "ITEM", "KIN", "PLACE_", "FOOD", "PART",
];

/// The toy world's word classes, read from the grammar's rules: a word that a rule of
/// single words writes is a verb (`*_SG`, `*_PL` rules), an adjective (`ADJ_*`, `PRED`) or
/// a noun ([`NOUNS`]); any other word (articles, pronouns, conjunctions, relative
/// pronouns, prepositions) is a function word; `</s>` is its own class.
pub fn word_classes() -> FxHashMap<String, &'static str> {
    let text = include_str!("../../data/toy_world.en.pcfg");
    let mut class: FxHashMap<String, &'static str> = FxHashMap::default();
    let mut lhs = String::new();
    let mut function_words = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let rhs = match line.split_once("->") {
            Some((l, r)) => {
                lhs = l.trim().to_string();
                r
            }
            None => line.strip_prefix('|').unwrap_or(line),
        };
        let alternatives: Vec<Vec<&str>> = rhs
            .split('|')
            .map(|alt| {
                alt.split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect()
            })
            .collect();
        for alt in alternatives {
            let words: Vec<&str> = alt
                .iter()
                .copied()
                .filter(|w| w.chars().all(|c| c.is_lowercase()))
                .collect();
            if alt.len() == 1 && words.len() == 1 {
                let kind = if lhs.starts_with("ADJ_") || lhs == "PRED" {
                    "adjective"
                } else if lhs.ends_with("_SG") || lhs.ends_with("_PL") {
                    "verb"
                } else if NOUNS.iter().any(|n| lhs.starts_with(n)) {
                    "noun"
                } else {
                    "function word"
                };
                class.entry(words[0].to_string()).or_insert(kind);
            } else {
                function_words.extend(words.iter().map(|w| w.to_string()));
            }
        }
    }
    for w in function_words {
        class.entry(w).or_insert("function word");
    }
    class.insert("</s>".into(), "</s>");
    class
}

/// The word classes in the order tables show them.
pub const CLASSES: [&str; 5] = ["noun", "verb", "adjective", "function word", "</s>"];

// ANCHOR: specialisation
/// For MoE block `block` (index among the MoE blocks), the share of each word class's
/// tokens that each routed expert receives on `ids` (a `</s>`-separated stream), the word
/// being the token the position reads: `table[e][c]`, each class's column summing to
/// `K_r` (every token goes to `K_r` experts).
pub fn specialisation(
    model: &Gpt,
    vocab: &WordVocab,
    ids: &[u32],
    block: usize,
) -> Result<Vec<[f64; CLASSES.len()]>> {
    let classes = word_classes();
    let m = model.cfg.moe.expect("specialisation needs an MoE");
    let t = model.cfg.context;
    let mut counts = vec![[0f64; CLASSES.len()]; m.n_routed];
    let mut totals = [0f64; CLASSES.len()];
    let layer = (0..model.cfg.n_layers)
        .filter(|&l| model.cfg.is_moe_layer(l))
        .nth(block)
        .expect("an MoE block of that index");
    for window in ids.chunks(t) {
        let mut acts = Activations::new(&model.cfg, 1, window.len());
        model.forward(&mut acts, window)?;
        let moe = &acts.layers[layer].moe;
        for (i, &id) in window.iter().enumerate() {
            let word = if id == END { "</s>" } else { vocab.word(id) };
            let Some(c) = classes
                .get(word)
                .and_then(|k| CLASSES.iter().position(|x| x == k))
            else {
                continue;
            };
            totals[c] += 1.0;
            for &e in &moe.ids[i * m.top_k..][..m.top_k] {
                counts[e][c] += 1.0;
            }
        }
    }
    for row in &mut counts {
        for (x, n) in row.iter_mut().zip(&totals) {
            *x /= n.max(1.0);
        }
    }
    Ok(counts)
}
// ANCHOR_END: specialisation

/// MaxVio over training, one line per run (`(label, run)`), each point the mean of
/// `smooth` steps.
pub fn load_chart(runs: &[(String, &BalanceRun)], smooth: usize) -> LineChart {
    let mut chart = LineChart::new(
        "Expert load balance during training",
        "step",
        "MaxVio = (max load - mean) / mean",
    );
    for (name, run) in runs {
        let v = run.max_violation_per_step();
        let points = v
            .chunks(smooth.max(1))
            .enumerate()
            .map(|(i, c)| {
                let step = (i * smooth.max(1) + c.len() / 2) as f64;
                (step, c.iter().sum::<f64>() / c.len() as f64)
            })
            .collect();
        chart = chart.series(Series::new(name.clone(), points));
    }
    chart
}

/// The specialisation table as a heatmap: experts by word class, the share of the class's
/// tokens each expert receives.
pub fn specialisation_chart(table: &[[f64; CLASSES.len()]], title: &str) -> HeatmapChart {
    HeatmapChart::new(
        title,
        "word class of the token",
        "routed expert",
        table.iter().map(|r| r.to_vec()).collect(),
    )
    .row_labels((0..table.len()).map(|e| format!("expert {e}")))
    .col_labels(CLASSES)
}

/// The specialisation table as aligned text, with each class's token count.
pub fn format_specialisation(table: &[[f64; CLASSES.len()]]) -> String {
    let mut out = format!("{:<8}", "expert");
    for c in CLASSES {
        out += &format!(" {c:>13}");
    }
    out += "\n";
    for (e, row) in table.iter().enumerate() {
        out += &format!("{e:<8}");
        for x in row {
            out += &format!(" {:>12.1}%", 100.0 * x);
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_says_each_words_class() {
        let c = word_classes();
        for (w, k) in [
            ("king", "noun"),
            ("horse", "noun"),
            ("runs", "verb"),
            ("sleeps", "verb"),
            ("old", "adjective"),
            ("hungry", "adjective"),
            ("the", "function word"),
            ("who", "function word"),
            ("and", "function word"),
        ] {
            assert_eq!(c.get(w).copied(), Some(k), "{w}");
        }
        // every word the grammar writes has a class
        for w in crate::data::grammar::Grammar::toy_world().vocabulary() {
            assert!(c.contains_key(&w), "{w}");
        }
    }

    #[test]
    fn max_violation_is_zero_when_even() {
        assert_eq!(max_violation(&[4, 4, 4, 4]), 0.0);
        assert_eq!(max_violation(&[8, 4, 2, 2]), 1.0);
    }
}
