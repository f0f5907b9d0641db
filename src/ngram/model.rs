//! The n-gram language model: counts in, P(w | h) out, for every smoothing method.

use rand::Rng;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::counts::{continuation_counts, pad, Key, NgramCounts, Padding};
use super::smoothing::{self, Discounts, Smoothing, FALLBACK_DISCOUNTS};
use super::vocab::{Vocab, BOS, EOS, UNK};
use crate::{Error, Result};

/// Conventions for padding, the predicted vocabulary and Kneser-Ney's lowest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The textbook and KenLM conventions: one `<s>` before a sentence (contexts at its start
    /// are shorter), one `</s>` to predict after it; `<s>` is never predicted; Kneser-Ney
    /// uses raw counts for n-grams that start with `<s>` (nothing can precede them) and
    /// interpolates its unigrams with the uniform distribution, so unseen words get mass.
    Standard,
    /// NLTK's `nltk.lm` conventions: n−1 `<s>` and n−1 `</s>` around every sentence, every
    /// full n-gram of that scored, `<s>` part of |V|; Kneser-Ney's unigrams are continuation
    /// counts alone (no discount, no uniform floor) and every lower order uses continuation
    /// counts. Use it to compare with NLTK number for number.
    Nltk,
}

impl Style {
    /// The padding this style puts around a sentence for an order-`order` model.
    pub fn padding(&self, order: usize) -> Padding {
        match self {
            Style::Standard => Padding { bos: 1, eos: 1 },
            Style::Nltk => Padding {
                bos: order - 1,
                eos: order - 1,
            },
        }
    }
}

/// What to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NgramConfig {
    /// n: the model conditions on the n−1 previous words.
    pub order: usize,
    /// How counts become probabilities.
    pub smoothing: Smoothing,
    /// Padding and vocabulary conventions.
    pub style: Style,
    /// Words seen fewer times than this in training become `<unk>`.
    pub min_count: u32,
}

impl NgramConfig {
    /// An order-`order` model with the standard conventions and every training word kept.
    pub fn new(order: usize, smoothing: Smoothing) -> NgramConfig {
        NgramConfig {
            order,
            smoothing,
            style: Style::Standard,
            min_count: 1,
        }
    }
}

/// What a context h has been followed by, at one order: a(h •) and how many distinct
/// followers were seen once, twice, three times or more.
#[derive(Debug, Clone, Copy, Default)]
pub struct ContextStats {
    /// a(h •) = Σ_w a(h w).
    pub total: u64,
    /// N1(h •), N2(h •), N3+(h •).
    pub n1: u32,
    pub n2: u32,
    pub n3plus: u32,
    /// NLTK style only: followers with a raw count but no continuation count (such as
    /// `<s> <s>`), which NLTK's γ(h) still counts.
    pub nltk_extra: u32,
}

impl ContextStats {
    /// N1+(h •): distinct words seen after h.
    pub fn distinct(&self) -> u32 {
        self.n1 + self.n2 + self.n3plus
    }
}

/// One order k of the model: the counts its estimates use and the stats of its contexts.
#[derive(Debug, Clone)]
struct Level {
    /// Continuation counts (Kneser-Ney below the top order); `None`: the raw counts.
    adjusted: Option<FxHashMap<Key, u32>>,
    contexts: FxHashMap<Key, ContextStats>,
}

/// A trained n-gram language model.
#[derive(Debug, Clone)]
pub struct NgramModel {
    pub config: NgramConfig,
    pub vocab: Vocab,
    /// The raw counts of every order.
    pub counts: NgramCounts,
    levels: Vec<Level>,
    discounts: Vec<Discounts>,
    lambdas: Vec<f64>,
    /// Things the user should know about this model (e.g. a discount that fell back).
    pub warnings: Vec<String>,
}

/// Perplexity and cross-entropy of a model on some text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Sentences scored.
    pub sentences: usize,
    /// Predictions scored (words and end-of-sentence tokens).
    pub events: u64,
    /// Σ ln P over all events (−∞ when an event has probability 0).
    pub log_prob: f64,
    /// Events the model gave probability 0.
    pub zero_prob_events: u64,
    /// Test words not in the vocabulary (scored as `<unk>`).
    pub oov: u64,
}

impl Evaluation {
    /// The starting point of a sum: `sentences` sentences, no event scored yet.
    pub fn nothing_scored(sentences: usize) -> Evaluation {
        Evaluation {
            sentences,
            events: 0,
            log_prob: 0.0,
            zero_prob_events: 0,
            oov: 0,
        }
    }

    // ANCHOR: perplexity
    /// Cross-entropy H = −(1/N) Σ ln P(w_t | h_t), in nats per token.
    pub fn cross_entropy(&self) -> f64 {
        -self.log_prob / self.events as f64
    }

    /// Perplexity = exp(H): the number of equally likely words the model hesitates between.
    pub fn perplexity(&self) -> f64 {
        self.cross_entropy().exp()
    }
    // ANCHOR_END: perplexity

    /// Cross-entropy in bits per token.
    pub fn bits_per_token(&self) -> f64 {
        self.cross_entropy() / std::f64::consts::LN_2
    }
}

impl NgramModel {
    /// Counts the training sentences and fits the smoothing. `heldout` is used only by
    /// [`Smoothing::Interpolated`], to fit its weights.
    pub fn train(
        train: &[Vec<String>],
        heldout: &[Vec<String>],
        config: NgramConfig,
    ) -> Result<NgramModel> {
        config.smoothing.validate()?;
        if train.iter().all(|s| s.is_empty()) {
            return Err(Error::EmptyCorpus {
                what: "the training text".into(),
            });
        }
        let vocab = Vocab::build(train, config.min_count);
        if vocab.is_empty() {
            return Err(Error::TooSmall {
                what: "the training text".into(),
                why: format!("no word occurs at least {} times", config.min_count),
            });
        }
        let ids: Vec<Vec<u32>> = train.par_iter().map(|s| vocab.encode(s)).collect();
        let n = config.order;
        let counts = NgramCounts::build(&ids, &vocab, n, config.style.padding(n.max(1)))?;
        if counts.by_order[n - 1].is_empty() {
            let pad = counts.padding.bos + counts.padding.eos;
            return Err(Error::TooSmall {
                what: "the training text".into(),
                why: format!(
                    "no sentence is long enough for an order-{n} model (a sentence needs at \
                     least {} words, with padding)",
                    n.saturating_sub(pad).max(1)
                ),
            });
        }
        let mut model = NgramModel {
            config,
            vocab,
            counts,
            levels: Vec::new(),
            discounts: Vec::new(),
            lambdas: Vec::new(),
            warnings: Vec::new(),
        };
        model.levels = (1..=n)
            .into_par_iter()
            .map(|k| model.build_level(k))
            .collect();
        if config.smoothing.is_kneser_ney() {
            model.fit_discounts();
        }
        if config.smoothing == Smoothing::Interpolated {
            model.fit_lambdas(heldout)?;
        }
        Ok(model)
    }

    fn build_level(&self, k: usize) -> Level {
        let n = self.config.order;
        let packer = self.counts.packer;
        let adjusted = (self.config.smoothing.is_kneser_ney() && k < n).then(|| {
            let mut a = continuation_counts(&self.counts.by_order[k], k, packer);
            if self.config.style == Style::Standard {
                // Nothing can precede <s>: n-grams starting with it keep their raw counts.
                for (&g, &c) in &self.counts.by_order[k - 1] {
                    if packer.first(g, k) == BOS {
                        a.insert(g, c);
                    }
                }
            }
            a
        });
        let effective = adjusted.as_ref().unwrap_or(&self.counts.by_order[k - 1]);
        let mut contexts: FxHashMap<Key, ContextStats> = FxHashMap::default();
        for (&g, &a) in effective {
            if self.never_predicted(packer.last(g)) {
                continue;
            }
            let s = contexts.entry(packer.context(g)).or_default();
            s.total += a as u64;
            match a {
                1 => s.n1 += 1,
                2 => s.n2 += 1,
                _ => s.n3plus += 1,
            }
        }
        if let (Some(adjusted), Style::Nltk) = (&adjusted, self.config.style) {
            for &g in self.counts.by_order[k - 1].keys() {
                if !adjusted.contains_key(&g) {
                    if let Some(s) = contexts.get_mut(&packer.context(g)) {
                        s.nltk_extra += 1;
                    }
                }
            }
        }
        Level { adjusted, contexts }
    }

    /// `<s>` is a context only, except under NLTK's conventions, which count it in |V|.
    fn never_predicted(&self, w: u32) -> bool {
        w == BOS && self.config.style == Style::Standard
    }

    fn fit_discounts(&mut self) {
        for k in 1..=self.config.order {
            let d = match self.config.smoothing {
                Smoothing::KneserNey(Some(d)) => Some(Discounts([d; 3])),
                Smoothing::KneserNey(None) => smoothing::kn_discount(self.counts_of_counts(k)),
                _ => smoothing::modified_kn_discounts(self.counts_of_counts(k)),
            };
            let d = d.unwrap_or_else(|| {
                self.warnings.push(format!(
                    "order {k}: cannot estimate discounts from counts of counts {:?}; using \
                     KenLM's fallback {:?}",
                    self.counts_of_counts(k),
                    FALLBACK_DISCOUNTS.0
                ));
                FALLBACK_DISCOUNTS
            });
            self.discounts.push(d);
        }
    }

    /// n1, n2, n3, n4: how many k-grams have count (or continuation count) 1, 2, 3, 4.
    pub fn counts_of_counts(&self, k: usize) -> [u64; 4] {
        let mut n = [0u64; 4];
        for (&g, &a) in self.effective(k) {
            if (1..=4).contains(&a) && !self.never_predicted(self.counts.packer.last(g)) {
                n[a as usize - 1] += 1;
            }
        }
        n
    }

    /// The discounts D1, D2, D3+ of order k (Kneser-Ney models only).
    pub fn discounts(&self, k: usize) -> Option<Discounts> {
        self.discounts.get(k - 1).copied()
    }

    /// The interpolation weights λ0 (uniform), λ1 .. λn (interpolated models only).
    pub fn lambdas(&self) -> &[f64] {
        &self.lambdas
    }

    fn effective(&self, k: usize) -> &FxHashMap<Key, u32> {
        self.levels[k - 1]
            .adjusted
            .as_ref()
            .unwrap_or(&self.counts.by_order[k - 1])
    }

    /// The count the order-k estimate uses for an n-gram key (raw or continuation).
    fn count_at(&self, k: usize, key: Key) -> u32 {
        self.effective(k).get(&key).copied().unwrap_or(0)
    }

    /// The stats of a context (its key, of k−1 words) at order k.
    pub(crate) fn context_stats(&self, k: usize, context: Key) -> Option<&ContextStats> {
        self.levels[k - 1].contexts.get(&context)
    }

    /// |V|: how many outcomes a prediction ranges over (all ids, less `<s>` in the
    /// standard style).
    pub fn outcomes(&self) -> usize {
        match self.config.style {
            Style::Standard => self.vocab.len() - 1,
            Style::Nltk => self.vocab.len(),
        }
    }

    /// P(w | context) for word ids; only the last n−1 ids of the context are used.
    pub fn prob(&self, context: &[u32], w: u32) -> f64 {
        if self.never_predicted(w) {
            return 0.0;
        }
        let h = &context[context.len().saturating_sub(self.config.order - 1)..];
        let v = self.outcomes() as f64;
        match self.config.smoothing {
            Smoothing::Mle => self.mle(h, w).unwrap_or(0.0),
            Smoothing::AddK(k) => {
                let (c_hw, c_h) = self.raw_counts(h, w);
                smoothing::add_k(c_hw, c_h, k, v)
            }
            Smoothing::Interpolated => {
                let p = self.components(h, w);
                p.iter().zip(&self.lambdas).map(|(p, l)| p * l).sum()
            }
            Smoothing::KneserNey(_) | Smoothing::ModifiedKneserNey => self.kneser_ney(h, w),
        }
    }

    /// (c(h w), c(h •)) at order |h| + 1.
    fn raw_counts(&self, h: &[u32], w: u32) -> (f64, f64) {
        let k = h.len() + 1;
        let packer = self.counts.packer;
        let ctx = packer.pack(h);
        let c_h = self.context_stats(k, ctx).map_or(0, |s| s.total);
        let c_hw = self.count_at(k, packer.extend(ctx, w));
        (c_hw as f64, c_h as f64)
    }

    /// The maximum-likelihood estimate, or `None` for a context never seen.
    fn mle(&self, h: &[u32], w: u32) -> Option<f64> {
        let (c_hw, c_h) = self.raw_counts(h, w);
        (c_h > 0.0).then(|| smoothing::mle(c_hw, c_h))
    }

    // ANCHOR: interpolation_components
    /// The distributions that linear interpolation mixes (the book's Q_k): Q_0 = 1/|V|,
    /// and for k = 1..n the maximum-likelihood estimate with the last k−1 words of h, or
    /// Q_(k−1) where that context was never seen (so every component sums to 1).
    fn components(&self, h: &[u32], w: u32) -> Vec<f64> {
        let mut p = Vec::with_capacity(self.config.order + 1);
        p.push(1.0 / self.outcomes() as f64);
        for k in 1..=self.config.order {
            let below = p[k - 1];
            let estimate = (k - 1 <= h.len())
                .then(|| self.mle(&h[h.len() + 1 - k..], w))
                .flatten();
            p.push(estimate.unwrap_or(below));
        }
        p
    }
    // ANCHOR_END: interpolation_components

    // ANCHOR: kneser_ney_recursion
    /// Interpolated Kneser-Ney, from the order |h| + 1 down to the uniform distribution.
    fn kneser_ney(&self, h: &[u32], w: u32) -> f64 {
        let k = h.len() + 1;
        let lower = match (k, self.config.style) {
            (1, Style::Standard) => 1.0 / self.outcomes() as f64,
            (1, Style::Nltk) => 0.0,
            _ => self.kneser_ney(&h[1..], w),
        };
        let packer = self.counts.packer;
        let ctx = packer.pack(h);
        let Some(s) = self.context_stats(k, ctx) else {
            return lower; // h never seen: all the mass goes to the lower order
        };
        let a = self.count_at(k, packer.extend(ctx, w));
        if k == 1 && self.config.style == Style::Nltk {
            return a as f64 / s.total as f64;
        }
        let d = self.discounts[k - 1];
        let freed = d.freed_mass(s.n1, s.n2, s.n3plus) + d.0[0] * s.nltk_extra as f64;
        smoothing::kneser_ney(a as f64, d.for_count(a), freed, s.total as f64, lower)
    }
    // ANCHOR_END: kneser_ney_recursion

    /// γ(h) for a context of k−1 words at order k: the weight of the lower order when h w
    /// was never seen (Kneser-Ney models), i.e. ARPA's back-off weight.
    pub(crate) fn backoff_weight(&self, k: usize, context: Key) -> Option<f64> {
        let s = self.context_stats(k, context)?;
        let d = self.discounts[k - 1];
        Some(d.freed_mass(s.n1, s.n2, s.n3plus) / s.total as f64)
    }

    // ANCHOR: events
    /// Calls `f(h, w)` for every prediction a sentence of ids is scored on: each word and
    /// the end-of-sentence token, h being the (up to) n−1 tokens before it, padding included.
    pub fn for_each_event(&self, ids: &[u32], mut f: impl FnMut(&[u32], u32)) {
        let padded = pad(ids, self.counts.padding);
        let n = self.config.order;
        for t in self.counts.padding.bos..padded.len() {
            f(&padded[t.saturating_sub(n - 1)..t], padded[t]);
        }
    }
    // ANCHOR_END: events

    /// Fits the weights of linear interpolation on held-out sentences.
    fn fit_lambdas(&mut self, heldout: &[Vec<String>]) -> Result<()> {
        let events: Vec<Vec<f64>> = heldout
            .par_iter()
            .flat_map_iter(|s| {
                let mut out = Vec::new();
                self.for_each_event(&self.vocab.encode(s), |h, w| {
                    out.push(self.components(h, w))
                });
                out
            })
            .collect();
        if events.is_empty() {
            return Err(Error::EmptyCorpus {
                what: "the held-out text (interpolation fits its weights there)".into(),
            });
        }
        self.lambdas = fit_mixture_weights(&events, 500, 1e-9);
        Ok(())
    }

    // ANCHOR: sentence_log_prob
    /// ln P(sentence) = Σ_t ln P(w_t | h_t), the end-of-sentence token included:
    /// the chain rule, with each history cut to the last n−1 tokens (the Markov assumption).
    pub fn sentence_log_prob<S: AsRef<str>>(&self, sentence: &[S]) -> f64 {
        let mut log_prob = 0.0;
        self.for_each_event(&self.vocab.encode(sentence), |h, w| {
            log_prob += self.prob(h, w).ln()
        });
        log_prob
    }
    // ANCHOR_END: sentence_log_prob

    /// Perplexity and cross-entropy on test sentences (words outside the vocabulary are
    /// scored as `<unk>`).
    pub fn evaluate(&self, sentences: &[Vec<String>]) -> Evaluation {
        let per_sentence: Vec<(f64, u64, u64, u64)> = sentences
            .par_iter()
            .map(|s| {
                let ids = self.vocab.encode(s);
                let oov = s.iter().filter(|w| self.vocab.get(w).is_none()).count() as u64;
                let (mut lp, mut events, mut zeros) = (0.0, 0u64, 0u64);
                self.for_each_event(&ids, |h, w| {
                    let p = self.prob(h, w);
                    lp += p.ln();
                    events += 1;
                    zeros += (p == 0.0) as u64;
                });
                (lp, events, zeros, oov)
            })
            .collect();
        // Summed in order, so the result does not depend on the thread count.
        let mut e = Evaluation::nothing_scored(sentences.len());
        for (lp, events, zeros, oov) in per_sentence {
            e.log_prob += lp;
            e.events += events;
            e.zero_prob_events += zeros;
            e.oov += oov;
        }
        e
    }

    /// P(w | context) for every id w: the model's whole next-word distribution.
    pub fn distribution(&self, context: &[u32]) -> Vec<f64> {
        (0..self.vocab.len() as u32)
            .map(|w| self.prob(context, w))
            .collect()
    }

    // ANCHOR: sample
    /// Samples a sentence word by word from P(w | h)^(1/T), renormalised, until `</s>` or
    /// `max_words`. T < 1 sharpens the distribution, T > 1 flattens it. `<unk>` is never
    /// drawn.
    pub fn sample(&self, rng: &mut impl Rng, temperature: f64, max_words: usize) -> Vec<String> {
        let mut history = vec![BOS; self.counts.padding.bos];
        let mut words = Vec::new();
        while words.len() < max_words {
            let weights: Vec<f64> = self
                .distribution(&history)
                .iter()
                .enumerate()
                .map(|(w, &p)| {
                    if w as u32 == UNK {
                        0.0
                    } else {
                        p.powf(1.0 / temperature)
                    }
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total.is_nan() || total <= 0.0 {
                break;
            }
            let mut r = rng.gen::<f64>() * total;
            let mut next = EOS;
            for (w, &p) in weights.iter().enumerate() {
                if p > 0.0 {
                    next = w as u32;
                    r -= p;
                    if r <= 0.0 {
                        break;
                    }
                }
            }
            if next == EOS {
                break;
            }
            words.push(self.vocab.word(next).to_string());
            history.push(next);
        }
        words
    }
    // ANCHOR_END: sample

    /// The `top` most likely next tokens after a history given as text, most likely first.
    /// The history is read as the middle of a sentence: start it with `<s>` to mean the
    /// start (unlike [`NgramModel::prob_words`], which always does).
    pub fn next_words<S: AsRef<str>>(&self, history: &[S], top: usize) -> Vec<(String, f64)> {
        let h = self.vocab.encode(history);
        let mut dist: Vec<(u32, f64)> = self
            .distribution(&h)
            .into_iter()
            .enumerate()
            .map(|(w, p)| (w as u32, p))
            .filter(|&(_, p)| p > 0.0)
            .collect();
        dist.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        dist.truncate(top);
        dist.into_iter()
            .map(|(w, p)| (self.vocab.word(w).to_string(), p))
            .collect()
    }

    /// P(word | context) for words given as text, the context being the start of a sentence
    /// (`<s>` is put in front of it).
    pub fn prob_words<S: AsRef<str>>(&self, context: &[S], word: &str) -> f64 {
        let mut h = vec![BOS; self.counts.padding.bos];
        h.extend(self.vocab.encode(context));
        self.prob(&h, self.vocab.id(word))
    }

    /// c(w1..wk) for words given as text (`<s>` and `</s>` may be used).
    pub fn count_words<S: AsRef<str>>(&self, ngram: &[S]) -> u32 {
        self.counts.count(&self.vocab.encode(ngram))
    }

    /// The `top` most frequent k-grams as words, most frequent first.
    pub fn most_frequent(&self, k: usize, top: usize) -> Vec<(Vec<String>, u32)> {
        self.counts
            .most_frequent(k, top)
            .into_iter()
            .map(|(ids, c)| {
                (
                    ids.iter()
                        .map(|&i| self.vocab.word(i).to_string())
                        .collect(),
                    c,
                )
            })
            .collect()
    }

    /// N1+(• w1..wk): how many distinct words precede this k-gram in training (k < n).
    pub fn continuation_count<S: AsRef<str>>(&self, ngram: &[S]) -> u32 {
        let k = ngram.len();
        if k == 0 || k >= self.config.order {
            return 0;
        }
        let key = self.counts.packer.pack(&self.vocab.encode(ngram));
        let packer = self.counts.packer;
        self.counts.by_order[k]
            .keys()
            .filter(|&&g| packer.suffix(g, k + 1) == key)
            .count() as u32
    }
}

// ANCHOR: em
/// EM for the weights of a mixture Σ_k λ_k P_k, given each held-out event's component
/// probabilities: λ_k ← (1/N) Σ_t λ_k P_k(t) / Σ_j λ_j P_j(t), until the log-likelihood
/// gains less than `tol` per event.
pub fn fit_mixture_weights(events: &[Vec<f64>], max_iters: usize, tol: f64) -> Vec<f64> {
    let m = events[0].len();
    let mut lambdas = vec![1.0 / m as f64; m];
    let mut last = f64::NEG_INFINITY;
    for _ in 0..max_iters {
        let mut expected = vec![0.0; m];
        let mut loglik = 0.0;
        for p in events {
            let mix: f64 = p.iter().zip(&lambdas).map(|(p, l)| p * l).sum();
            loglik += mix.ln();
            for k in 0..m {
                expected[k] += lambdas[k] * p[k] / mix;
            }
        }
        lambdas = expected.iter().map(|e| e / events.len() as f64).collect();
        let per_event = loglik / events.len() as f64;
        if per_event - last < tol {
            break;
        }
        last = per_event;
    }
    lambdas
}
// ANCHOR_END: em

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
