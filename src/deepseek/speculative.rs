//! Multi-token prediction at inference: the MTP depth drafts the token after next, and
//! the main model checks it in the same forward that computes the next step (speculative
//! decoding with a draft that costs one block). Greedy decoding gives exactly the tokens
//! plain greedy decoding gives; only the number of main-model calls changes.
//!
//! At each step the main model's greedy token `t` is known; the MTP depth, reading the
//! last hidden state and `t`, guesses `d` for the position after. The main model then runs
//! on `[t, d]`: if its prediction after `t` is `d`, both are kept and the prediction after
//! `d` is the next `t` (two tokens from one call); else `d`'s cache row is dropped and the
//! prediction after `t` is the next `t` (one token, as without a draft).

use crate::gpt::generate::{generate, KvCache, Sampling};
use crate::gpt::Gpt;
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// What a speculative generation did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SpecStats {
    /// New tokens.
    pub tokens: usize,
    /// Drafts checked, and how many the main model agreed with.
    pub drafts: usize,
    pub accepted: usize,
    /// Main-model forward calls (the prompt's included).
    pub main_calls: usize,
}

impl SpecStats {
    pub fn acceptance(&self) -> f64 {
        self.accepted as f64 / self.drafts.max(1) as f64
    }
}

fn argmax(row: &[f32]) -> u32 {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap_or(0) as u32
}

// ANCHOR: speculative
/// `max_new` tokens after `prompt`, greedy, drafted by the MTP depth and checked by the
/// main model: the same tokens as [`generate`] with [`Sampling::greedy`]. Errors without
/// an MTP depth, or if the tokens do not fit the context.
pub fn speculative_greedy(
    model: &Gpt,
    prompt: &[u32],
    max_new: usize,
) -> Result<(Vec<u32>, SpecStats)> {
    let cfg = &model.cfg;
    if model.params.mtp.is_none() {
        return Err(Error::InvalidArgument(
            "speculative decoding drafts with the MTP depth: the model has none".into(),
        ));
    }
    if prompt.is_empty() || prompt.len() + max_new > cfg.context {
        return Err(Error::InvalidArgument(format!(
            "{} prompt tokens and {max_new} new ones: give a prompt, within the context of {}",
            prompt.len(),
            cfg.context
        )));
    }
    let (v, c) = (cfg.vocab_size, cfg.d_model);
    rayon::scope(|_| {
        let mut stats = SpecStats::default();
        let mut cache = KvCache::with_capacity(cfg, prompt.len() + max_new + 1);
        let mut mtp_cache = KvCache::for_mtp(cfg);
        let (logits, hidden) = model.forward_cached_with_hidden(&mut cache, prompt)?;
        stats.main_calls += 1;
        let mut next = argmax(&logits[logits.len() - v..]);
        // the depth reads each position's hidden state and the token after it
        let mut after: Vec<u32> = prompt[1..].to_vec();
        after.push(next);
        let drafts = model.mtp_forward_cached(&mut mtp_cache, &hidden, &after)?;
        let mut draft = argmax(&drafts[drafts.len() - v..]);
        let mut out = Vec::with_capacity(max_new);
        while out.len() < max_new {
            out.push(next);
            if out.len() == max_new {
                break;
            }
            if cache.len + 2 > cfg.context {
                // no room for a draft: one plain step
                let (lg, h) = model.forward_cached_with_hidden(&mut cache, &[next])?;
                stats.main_calls += 1;
                let t = argmax(&lg);
                mtp_cache.len = cache.len - 1;
                model.mtp_forward_cached(&mut mtp_cache, &h, &[t])?;
                next = t;
                continue;
            }
            let (lg, h) = model.forward_cached_with_hidden(&mut cache, &[next, draft])?;
            stats.main_calls += 1;
            stats.drafts += 1;
            let checked = argmax(&lg[..v]);
            if checked == draft {
                stats.accepted += 1;
                out.push(draft);
                let t = argmax(&lg[v..]);
                let d = model.mtp_forward_cached(&mut mtp_cache, &h, &[draft, t])?;
                (next, draft) = (t, argmax(&d[v..]));
            } else {
                cache.truncate(cache.len - 1);
                let d = model.mtp_forward_cached(&mut mtp_cache, &h[..c], &[checked])?;
                (next, draft) = (checked, argmax(&d));
            }
        }
        out.truncate(max_new);
        stats.tokens = out.len();
        Ok((out, stats))
    })
}
// ANCHOR_END: speculative

/// Plain greedy against speculative greedy on each prompt, `max_new` tokens each, the two
/// interleaved `repeats` times: the tokens (checked equal), the acceptance rate, and each
/// way's best wall-clock time over the repeats.
#[derive(Clone, Debug)]
pub struct SpeedUp {
    pub stats: SpecStats,
    pub plain: Duration,
    pub speculative: Duration,
}

impl SpeedUp {
    pub fn ratio(&self) -> f64 {
        self.plain.as_secs_f64() / self.speculative.as_secs_f64()
    }
}

pub fn measure(
    model: &Gpt,
    prompts: &[Vec<u32>],
    max_new: usize,
    repeats: usize,
) -> Result<SpeedUp> {
    let mut best = (Duration::MAX, Duration::MAX);
    let mut total = SpecStats::default();
    for r in 0..repeats.max(1) {
        let t0 = Instant::now();
        let mut plain = Vec::new();
        for p in prompts {
            plain.push(generate(model, p, max_new, &Sampling::greedy())?);
        }
        let t_plain = t0.elapsed();
        let t0 = Instant::now();
        let mut stats = SpecStats::default();
        for (p, want) in prompts.iter().zip(&plain) {
            let (ids, s) = speculative_greedy(model, p, max_new)?;
            if &ids != want {
                return Err(Error::InvalidArgument(format!(
                    "speculative decoding gave {ids:?}, greedy {want:?}"
                )));
            }
            stats.tokens += s.tokens;
            stats.drafts += s.drafts;
            stats.accepted += s.accepted;
            stats.main_calls += s.main_calls;
        }
        let t_spec = t0.elapsed();
        best = (best.0.min(t_plain), best.1.min(t_spec));
        if r == 0 {
            total = stats;
        }
    }
    Ok(SpeedUp {
        stats: total,
        plain: best.0,
        speculative: best.1,
    })
}

/// What one step of each kind costs, median seconds over `repeats` after a prompt: the main
/// model on one new token (plain greedy's step), on two (a speculative step's check), and
/// the MTP depth on one (a draft). Speculative decoding pays when checking two tokens
/// costs about what one does: when a step is bound by reading the weights, not by
/// computing with them.
#[derive(Clone, Copy, Debug)]
pub struct StepCosts {
    pub one_token: f64,
    pub two_tokens: f64,
    pub draft: f64,
}

pub fn step_costs(model: &Gpt, prompt: &[u32], repeats: usize) -> Result<StepCosts> {
    let cfg = &model.cfg;
    if model.params.mtp.is_none() || prompt.len() + 2 > cfg.context || prompt.is_empty() {
        return Err(Error::InvalidArgument(
            "step costs need an MTP depth and room for two tokens after the prompt".into(),
        ));
    }
    rayon::scope(|_| {
        let mut cache = KvCache::with_capacity(cfg, prompt.len() + 2);
        let (_, hidden) = model.forward_cached_with_hidden(&mut cache, prompt)?;
        let mut mtp = KvCache::for_mtp(cfg);
        let c = cfg.d_model;
        let mut next = prompt[1..].to_vec();
        next.push(1);
        model.mtp_forward_cached(&mut mtp, &hidden, &next)?;
        let (len, mtp_len) = (cache.len, mtp.len);
        let last = &hidden[hidden.len() - c..];
        let (mut one, mut two, mut draft) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats.max(1) {
            let t0 = Instant::now();
            model.forward_cached_with_hidden(&mut cache, &[1])?;
            one.push(t0.elapsed().as_secs_f64());
            cache.truncate(len);
            let t0 = Instant::now();
            model.forward_cached_with_hidden(&mut cache, &[1, 2])?;
            two.push(t0.elapsed().as_secs_f64());
            cache.truncate(len);
            let t0 = Instant::now();
            model.mtp_forward_cached(&mut mtp, last, &[1])?;
            draft.push(t0.elapsed().as_secs_f64());
            mtp.truncate(mtp_len);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Ok(StepCosts {
            one_token: median(one),
            two_tokens: median(two),
            draft: median(draft),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::{GptConfig, Params};

    #[test]
    fn speculative_greedy_is_greedy() {
        // random weights, so drafts are mostly wrong: both branches are taken
        for base in [
            GptConfig::deepseek_tiny(),
            GptConfig {
                mtp: Some(GptConfig::mtp_tiny()),
                ..GptConfig::llama_tiny()
            },
        ] {
            let mut cfg = base;
            (cfg.vocab_size, cfg.context) = (50, 32);
            let mut p = Params::init(&cfg, 3);
            p.visit_mut(|s, t| {
                if !s.name.ends_with("norm.weight") {
                    t.iter_mut().for_each(|x| *x *= 20.0);
                }
            });
            let model = Gpt::new(cfg, p).unwrap();
            let prompt = [3, 9, 4];
            let want = generate(&model, &prompt, 25, &Sampling::greedy()).unwrap();
            let (got, stats) = speculative_greedy(&model, &prompt, 25).unwrap();
            assert_eq!(got, want);
            assert_eq!(stats.tokens, 25);
            assert!(stats.drafts > 0);
            // context 32: 3 + 25 fit, and the last steps run without drafts when full
            let (got, _) = speculative_greedy(&model, &prompt, 29).unwrap();
            assert_eq!(
                got,
                generate(&model, &prompt, 29, &Sampling::greedy()).unwrap()
            );
        }
    }
}
