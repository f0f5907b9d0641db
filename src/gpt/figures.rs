//! Chapter 4's figures, drawn from the crate's own functions: the learning-rate schedule
//! ([`LrSchedule::lr`]), RoPE's rotations ([`rope_forward`]), the activations of the two
//! MLPs ([`gelu_forward`], [`swiglu_forward`]), the key/value cache's size
//! ([`KvCache::bytes`]) and a trained model's attention. The tour's chapter 4 step writes
//! them (`out/ch04/`) and the book shows them; nothing in them depends on timing, so the
//! same run draws the same bytes.

use super::generate::KvCache;
use super::mlp::{gelu_forward, swiglu_forward};
use super::model::{Activations, Gpt};
use super::optim::{Decay, LrSchedule};
use super::rope::{rope_forward, RopeTable};
use super::tour::WordVocab;
use super::GptConfig;
use crate::data::grammar::GeneratedSentence;
use crate::plot::{HeatmapChart, LineChart, ScatterChart, Series};
use crate::{Error, Result};

/// The schedule the book's doctest checks: 1,000 steps, 100 of warmup to 1e-3, a cosine to
/// 1e-4, and the last 100 steps annealed linearly towards 0.
pub fn book_schedule() -> LrSchedule {
    LrSchedule {
        max_lr: 1e-3,
        min_lr: 1e-4,
        warmup: 100,
        total: 1000,
        anneal: 100,
        decay: Decay::Cosine,
    }
}

/// The learning rate of every step of `schedule`, `0..total` (the steps a run trains).
pub fn lr_schedule_chart(schedule: &LrSchedule) -> LineChart {
    let points = (0..schedule.total)
        .map(|s| (s as f64, schedule.lr(s) as f64))
        .collect();
    LineChart::new(
        format!(
            "Warmup ({} steps), cosine, linear anneal (last {} of {})",
            schedule.warmup, schedule.anneal, schedule.total
        ),
        "step",
        "learning rate",
    )
    .series(Series::new("LrSchedule::lr(step)", points))
}

/// Four pairs of one head vector (`head_dim` wide, RoPE's base `theta`) rotated to
/// positions 0 to 12: pair `i` is `(x[i], x[i + head_dim/2])`, started at `(radius, 0)`,
/// and turns by `theta^(-2i/head_dim)` radians per position.
pub fn rope_rotation_chart(theta: f32, head_dim: usize) -> Result<ScatterChart> {
    if head_dim < 18 || head_dim % 2 != 0 {
        return Err(Error::InvalidArgument(format!(
            "rope_rotation_chart draws pairs 0 to 8: head_dim must be even and at least 18, not {head_dim}"
        )));
    }
    let last = 12;
    let table = RopeTable::new(theta, head_dim, last + 1);
    let pairs = [(0usize, 1.0f32), (2, 0.8), (4, 0.6), (8, 0.4)];
    let mut x = vec![0.0f32; head_dim];
    for &(i, radius) in &pairs {
        x[i] = radius;
    }
    let mut chart = ScatterChart::new(
        format!("RoPE (base {theta}, head width {head_dim}): positions 0 to {last}"),
        "first number of the pair, x[i]",
        "second, x[i + hs/2]",
    )
    .equal_aspect();
    let mut y = vec![0.0f32; head_dim];
    for (g, &(i, _)) in pairs.iter().enumerate() {
        let speed = (theta as f64).powf(-2.0 * i as f64 / head_dim as f64);
        chart
            .groups
            .push(format!("pair {i}: {speed:.3} radians per position"));
        for pos in 0..=last {
            rope_forward(&mut y, &x, &table, pos, 1, 1);
            // every position on the two fast pairs, only the last on the slow ones
            let label = if g < 2 || pos == last {
                pos.to_string()
            } else {
                String::new()
            };
            chart = chart.point_in(g, label, y[i] as f64, y[i + head_dim / 2] as f64);
        }
    }
    Ok(chart)
}

/// GELU (GPT-2's MLP), SiLU (the gate of Llama's SwiGLU) and ReLU on [-4, 4], each computed
/// by the crate's forward: GELU by [`gelu_forward`], SiLU as [`swiglu_forward`] with the
/// up projection at 1.
pub fn activation_chart() -> LineChart {
    let xs: Vec<f32> = (0..=160).map(|i| -4.0 + i as f32 * 0.05).collect();
    let mut gelu = vec![0.0; xs.len()];
    gelu_forward(&mut gelu, &xs);
    let mut silu = vec![0.0; xs.len()];
    swiglu_forward(&mut silu, &xs, &vec![1.0; xs.len()]);
    let series = |name: &str, ys: &[f32]| {
        Series::new(
            name,
            xs.iter()
                .zip(ys)
                .map(|(&x, &y)| (x as f64, y as f64))
                .collect(),
        )
    };
    let relu: Vec<f32> = xs.iter().map(|&x| x.max(0.0)).collect();
    LineChart::new("The MLPs' activations", "x", "activation(x)")
        .series(series("GELU (GPT-2): x Φ(x), tanh form", &gelu))
        .series(series("SiLU (SwiGLU's gate): x σ(x)", &silu))
        .series(series("ReLU: max(x, 0)", &relu))
}

/// A model shaped like Llama 3 8B (32 layers, 32 query heads of 128) with `n_kv_heads`
/// key/value heads and a context of `context` tokens.
fn llama3_8b_shaped(n_kv_heads: usize, context: usize) -> Result<GptConfig> {
    let cfg = GptConfig {
        vocab_size: 128_256,
        d_model: 4096,
        n_layers: 32,
        n_heads: 32,
        n_kv_heads,
        d_ff: 14_336,
        context,
        positions: super::Positions::Rope { theta: 500_000.0 },
        ..GptConfig::llama_tiny()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The key/value cache of one sequence against its length, for a Llama-3-8B-shaped model
/// with MHA (32 key/value heads), GQA (8, Llama 3's) and MQA (1), in f32 as
/// [`KvCache::bytes`] counts it.
pub fn kv_cache_chart() -> Result<LineChart> {
    let mut chart = LineChart::new(
        "Key/value cache of one sequence, Llama-3-8B shape, f32",
        "context (tokens)",
        "cache (GiB)",
    );
    for (name, n_kv) in [
        ("MHA, 32 key/value heads", 32),
        ("GQA, 8 key/value heads (Llama 3)", 8),
        ("MQA, 1 key/value head", 1),
    ] {
        let mut points = vec![(0.0, 0.0)];
        for k in 1..=32 {
            let context = k * 256;
            let bytes = KvCache::bytes(&llama3_8b_shaped(n_kv, context)?);
            points.push((context as f64, bytes as f64 / (1u64 << 30) as f64));
        }
        chart = chart.series(Series::new(name, points));
    }
    Ok(chart)
}

/// The sentence whose attention the book draws: the subject, "queen", is five words before
/// the second "her" that agrees with it.
pub const ATTENTION_SENTENCE: &str = "the queen who feeds her hound rides her horse";

/// Every head's attention probabilities over one sentence, read in [`AttentionMaps::new`].
pub struct AttentionMaps {
    /// `</s>`, the sentence's words, `</s>`.
    pub labels: Vec<String>,
    /// `maps[layer][head][query][key]`.
    pub maps: Vec<Vec<Vec<Vec<f64>>>>,
}

impl AttentionMaps {
    /// Runs `model` on `</s> sentence </s>` (words of `vocab`, separated by spaces) and keeps
    /// the probabilities of every layer and head. A word the vocabulary lacks is an error.
    pub fn new(model: &Gpt, vocab: &WordVocab, sentence: &str) -> Result<AttentionMaps> {
        let words: Vec<String> = sentence.split_whitespace().map(String::from).collect();
        let ids = vocab.encode(&[GeneratedSentence {
            words: words.clone(),
            log_prob: 0.0,
        }]);
        if let Some(w) = words
            .iter()
            .zip(&ids[1..])
            .find(|(_, &id)| id == WordVocab::UNK)
        {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not in the model's vocabulary",
                w.0
            )));
        }
        let t = ids.len();
        if t > model.cfg.context {
            return Err(Error::InvalidArgument(format!(
                "{t} tokens do not fit the model's context of {}",
                model.cfg.context
            )));
        }
        let mut acts = Activations::new(&model.cfg, 1, t);
        model.forward(&mut acts, &ids)?;
        let maps = acts
            .layers
            .iter()
            .map(|layer| {
                layer
                    .att
                    .chunks(t * t)
                    .map(|head| {
                        head.chunks(t)
                            .map(|row| row.iter().map(|&p| p as f64).collect())
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let labels = ids.iter().map(|&id| vocab.word(id).to_string()).collect();
        Ok(AttentionMaps { labels, maps })
    }

    /// The (layer, head) that puts the most attention from position `query` on `key`, and
    /// that attention.
    pub fn most_attentive(&self, query: usize, key: usize) -> (usize, usize, f64) {
        self.best(|map| map[query][key])
    }

    fn best(&self, score: impl Fn(&Vec<Vec<f64>>) -> f64) -> (usize, usize, f64) {
        let mut best = (0, 0, f64::NEG_INFINITY);
        for (l, heads) in self.maps.iter().enumerate() {
            for (h, map) in heads.iter().enumerate() {
                let s = score(map);
                if s > best.2 {
                    best = (l, h, s);
                }
            }
        }
        best
    }

    /// The heatmap of one head, its rows and columns named by the tokens.
    pub fn chart(&self, layer: usize, head: usize, title: impl Into<String>) -> HeatmapChart {
        HeatmapChart::new(
            title,
            "key position (attended to)",
            "query position",
            self.maps[layer][head].clone(),
        )
        .row_labels(self.labels.clone())
        .col_labels(self.labels.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::grammar::Grammar;

    #[test]
    fn the_schedule_chart_has_every_trained_step() {
        let s = book_schedule();
        let chart = lr_schedule_chart(&s);
        let points = &chart.series[0].points;
        assert_eq!(points.len(), 1000);
        assert_eq!(points[99].1, s.lr(99) as f64);
        assert!(points[999].1 > 0.0);
    }

    #[test]
    fn rotations_keep_each_pair_on_its_circle() {
        let chart = rope_rotation_chart(10_000.0, 32).unwrap();
        for p in &chart.points {
            let r = [1.0, 0.8, 0.6, 0.4][p.group];
            assert!(((p.x * p.x + p.y * p.y).sqrt() - r).abs() < 1e-5);
        }
        assert!(rope_rotation_chart(10_000.0, 8).is_err());
    }

    #[test]
    fn activations_and_cache_sizes() {
        let chart = activation_chart();
        // at x = 0 all three are 0; far right they are all about x
        for s in &chart.series {
            assert!(s.points[80].1.abs() < 1e-6);
            assert!((s.points[160].1 - 4.0).abs() < 0.08, "{}", s.name);
        }
        let kv = kv_cache_chart().unwrap();
        // GQA's 8 key/value heads at 8,192 tokens: 2 * 32 * 8 * 128 * 8192 * 4 bytes = 2 GiB
        assert_eq!(kv.series[1].points[32], (8192.0, 2.0));
        assert_eq!(kv.series[0].points[32].1, 8.0);
    }

    #[test]
    fn the_attention_sentence_is_the_grammars() {
        let words: Vec<&str> = ATTENTION_SENTENCE.split(' ').collect();
        assert!(Grammar::toy_world().log_prob(&words).is_finite());
    }

    #[test]
    fn attention_maps_are_causal_distributions() {
        let train = Grammar::toy_world().generate(200, 1);
        let vocab = WordVocab::new(&train);
        let mut cfg = crate::gpt::config::shrunk(GptConfig::llama_tiny(), [0, 16, 2, 24, 16]);
        cfg.vocab_size = vocab.len();
        let model = Gpt::init(cfg, 1).unwrap();
        let maps = AttentionMaps::new(&model, &vocab, "the queen").unwrap();
        assert_eq!(maps.labels, ["</s>", "the", "queen", "</s>"]);
        assert_eq!((maps.maps.len(), maps.maps[0].len()), (2, 4));
        for row in &maps.maps[1][3] {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
        assert_eq!(maps.maps[0][0][0][1], 0.0);
        let (l, h, p) = maps.most_attentive(2, 1);
        assert_eq!(maps.maps[l][h][2][1], p);
        assert!(AttentionMaps::new(&model, &vocab, "the dragon").is_err());
    }
}
