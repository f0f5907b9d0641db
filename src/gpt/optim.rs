//! Training the parameters: AdamW, clipping the gradient by its global norm, and the
//! learning-rate schedule (linear warmup, then cosine or linear decay, then an optional
//! linear annealing to zero as in Llama 3's last phase).
//!
//! ```
//! use llm_lessons::gpt::optim::{Decay, LrSchedule};
//! let s = LrSchedule { max_lr: 1e-3, min_lr: 0.0, warmup: 10, total: 110, anneal: 0, decay: Decay::Cosine };
//! assert!((s.lr(0) - 1e-4).abs() < 1e-9); // warmup: (step + 1) / warmup of the peak
//! assert_eq!(s.lr(9), 1e-3);
//! assert!((s.lr(60) - 5e-4).abs() < 1e-9); // halfway through the cosine
//! assert_eq!(s.lr(110), 0.0);
//! ```

use super::model::Params;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Numbers per parallel task in the update.
const CHUNK: usize = 1 << 13;

/// AdamW's settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay, applied as `w -= lr * weight_decay * w`.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    /// GPT-3's settings: betas 0.9 and 0.95, eps 1e-8, weight decay 0.1 (Llama 2: the same
    /// with eps 1e-5).
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

/// AdamW (Loshchilov and Hutter), as PyTorch's `torch.optim.AdamW` computes it: moving
/// averages of the gradient `m` and of its square `v`, corrected for their start at zero,
/// and a weight decay that is not part of the gradient. Frozen tensors have no moments
/// and are not touched.
#[derive(Clone, Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Steps taken.
    pub t: u32,
    /// First and second moments, one per parameter tensor (in [`Params::visit`] order),
    /// empty for a frozen tensor.
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// Zero moments for the trainable tensors of `params`.
    pub fn new(params: &Params, config: AdamWConfig) -> Self {
        let mut sizes = Vec::new();
        params.visit(|_, t| sizes.push(if t.trainable { t.len() } else { 0 }));
        AdamW {
            config,
            t: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Bytes held by the moments.
    pub fn bytes(&self) -> usize {
        let n: usize = self.m.iter().chain(&self.v).map(Vec::len).sum();
        n * std::mem::size_of::<f32>()
    }

    // ANCHOR: adamw
    /// One step with learning rate `lr` on every trainable tensor:
    ///
    /// ```text
    /// w -= lr * wd * w                          (decay: not for norms)
    /// m  = b1 m + (1 - b1) g                    v = b2 v + (1 - b2) g^2
    /// w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    /// ```
    ///
    /// # Panics
    /// If `grads` is not the gradient of `params` (from [`Params::grads`]).
    pub fn step(&mut self, params: &mut Params, grads: &Params, lr: f32) {
        self.t += 1;
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bc1 = 1.0 - beta1.powi(self.t as i32);
        let bc2 = 1.0 - beta2.powi(self.t as i32);
        let mut tensors = Vec::new();
        params.visit_mut(|spec, w| tensors.push((spec, w)));
        let grads = grads.tensors();
        assert_eq!(grads.len(), tensors.len(), "AdamW: one gradient per tensor");
        // a tensor made trainable after the optimizer: its moments start now, at zero
        self.m.resize(tensors.len(), Vec::new());
        self.v.resize(tensors.len(), Vec::new());
        let state = self.m.iter_mut().zip(self.v.iter_mut());
        for (((spec, w), g), (m, v)) in tensors.into_iter().zip(grads).zip(state) {
            if !w.trainable {
                continue;
            }
            assert_eq!(g.len(), w.len(), "AdamW: the gradient of {}", spec.name);
            if m.len() != w.len() {
                (*m, *v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
            }
            let wd = if spec.decay { weight_decay } else { 0.0 };
            // blocks across the threads, a vectorized loop within each
            let blocks = w.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK));
            let state = m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK));
            blocks.zip(state).for_each(|((w, g), (m, v))| {
                for i in 0..w.len() {
                    w[i] -= lr * wd * w[i];
                    m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
                    v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
                    let m_hat = m[i] / bc1;
                    let v_hat = v[i] / bc2;
                    w[i] -= lr * m_hat / (v_hat.sqrt() + eps);
                }
            });
        }
    }
    // ANCHOR_END: adamw
}

// ANCHOR: clip
/// Scales the whole gradient down so that its norm (over all tensors together) is at most
/// `max_norm`, and returns the norm it had. A large step on one bad batch is the usual
/// cause of a loss spike; clipping bounds it.
pub fn clip_grad_norm(grads: &mut Params, max_norm: f32) -> f32 {
    let sum_sq: f64 = grads
        .tensors()
        .iter()
        .map(|t| t.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>())
        .sum();
    let norm = sum_sq.sqrt() as f32;
    // as PyTorch's clip_grad_norm_: the 1e-6 keeps a zero gradient from dividing by 0
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        grads
            .tensors_mut()
            .into_iter()
            .for_each(|t| t.iter_mut().for_each(|g| *g *= scale));
    }
    norm
}
// ANCHOR_END: clip

/// How the learning rate falls after the warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decay {
    /// Half a cosine from `max_lr` down to `min_lr` (GPT-3, Llama).
    Cosine,
    /// A straight line from `max_lr` down to `min_lr`.
    Linear,
    /// Stays at `max_lr`.
    Constant,
}

/// The learning rate at each step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of the warmup.
    pub max_lr: f32,
    /// Where the decay ends (before any annealing).
    pub min_lr: f32,
    /// Steps of linear warmup from `max_lr / warmup` to `max_lr`.
    pub warmup: usize,
    /// Steps of the whole run.
    pub total: usize,
    /// The last `anneal` steps take the learning rate linearly from where the decay is to
    /// zero (Llama 3 anneals its final tokens this way). 0 for none.
    pub anneal: usize,
    pub decay: Decay,
}

// ANCHOR: schedule
impl LrSchedule {
    /// The same learning rate at every step.
    pub fn constant(lr: f32) -> Self {
        LrSchedule {
            max_lr: lr,
            min_lr: lr,
            warmup: 0,
            total: usize::MAX,
            anneal: 0,
            decay: Decay::Constant,
        }
    }

    /// The learning rate of step `step` (counted from 0).
    pub fn lr(&self, step: usize) -> f32 {
        if step < self.warmup {
            return self.max_lr * (step + 1) as f32 / self.warmup as f32;
        }
        let decay_end = self.total.saturating_sub(self.anneal).max(self.warmup);
        let decayed = |s: usize| -> f32 {
            let span = (decay_end - self.warmup).max(1) as f32;
            let progress = ((s.saturating_sub(self.warmup)) as f32 / span).min(1.0);
            let fraction = match self.decay {
                Decay::Cosine => 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()),
                Decay::Linear => 1.0 - progress,
                Decay::Constant => 1.0,
            };
            self.min_lr + (self.max_lr - self.min_lr) * fraction
        };
        if step < decay_end || self.anneal == 0 {
            return decayed(step.min(decay_end));
        }
        // annealing: from the decay's last value down to 0 at `total`
        let left = self.total.saturating_sub(step) as f32 / self.anneal as f32;
        decayed(decay_end) * left.clamp(0.0, 1.0)
    }
}
// ANCHOR_END: schedule

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::GptConfig;

    #[test]
    fn schedule_shapes() {
        let s = LrSchedule {
            max_lr: 1.0,
            min_lr: 0.1,
            warmup: 4,
            total: 24,
            anneal: 10,
            decay: Decay::Linear,
        };
        assert_eq!(s.lr(0), 0.25);
        assert_eq!(s.lr(3), 1.0);
        assert_eq!(s.lr(4), 1.0);
        assert!((s.lr(9) - 0.55).abs() < 1e-6); // halfway down the linear decay, 4..14
        assert!((s.lr(14) - 0.1).abs() < 1e-6); // min_lr, annealing starts
        assert!((s.lr(19) - 0.05).abs() < 1e-6);
        assert_eq!(s.lr(24), 0.0);
        assert_eq!(s.lr(1000), 0.0);
        let c = LrSchedule {
            max_lr: 2.0,
            min_lr: 0.0,
            warmup: 0,
            total: 100,
            anneal: 0,
            decay: Decay::Cosine,
        };
        assert_eq!(c.lr(0), 2.0);
        assert!((c.lr(50) - 1.0).abs() < 1e-6);
        assert!(c.lr(99) > 0.0 && c.lr(100) == 0.0);
        assert_eq!(LrSchedule::constant(0.3).lr(123_456), 0.3);
    }

    #[test]
    fn clip_scales_to_the_max_norm() {
        let mut cfg = GptConfig::llama_tiny();
        (
            cfg.vocab_size,
            cfg.d_model,
            cfg.n_layers,
            cfg.d_ff,
            cfg.n_heads,
            cfg.n_kv_heads,
        ) = (4, 2, 1, 2, 1, 1);
        let mut g = Params::zeros(&cfg);
        g.tok_emb[0] = 3.0;
        g.blocks[0].mlp.down_proj_mut().unwrap().f32_mut()[1] = 4.0;
        assert_eq!(clip_grad_norm(&mut g, 10.0), 5.0);
        assert_eq!(g.tok_emb[0], 3.0); // under the max: unchanged
        assert!((clip_grad_norm(&mut g, 1.0) - 5.0).abs() < 1e-6);
        assert!(
            (g.tok_emb[0] - 0.6).abs() < 1e-6
                && (g.blocks[0].mlp.down_proj().unwrap().f32()[1] - 0.8).abs() < 1e-6
        );
    }

    /// One step by hand: t = 1, so m_hat = g and v_hat = g^2, and the step is lr * g / (|g| + eps).
    #[test]
    fn adamw_first_step_by_hand() {
        let mut cfg = GptConfig::llama_tiny();
        (
            cfg.vocab_size,
            cfg.d_model,
            cfg.n_layers,
            cfg.d_ff,
            cfg.n_heads,
            cfg.n_kv_heads,
        ) = (4, 2, 1, 2, 1, 1);
        let mut p = Params::zeros(&cfg);
        p.tok_emb[0] = 1.0;
        p.final_norm.weight_mut()[0] = 1.0;
        let mut g = Params::zeros(&cfg);
        g.tok_emb[0] = 0.5;
        g.final_norm.weight_mut()[0] = -2.0;
        let mut opt = AdamW::new(&p, AdamWConfig::default());
        opt.step(&mut p, &g, 0.1);
        // decayed: 1 - 0.1 * 0.1 * 1 = 0.99, then - 0.1 * sign(g)
        assert!((p.tok_emb[0] - 0.89).abs() < 1e-6, "{}", p.tok_emb[0]);
        // a norm weight: no decay
        assert!((p.final_norm.weight()[0] - 1.1).abs() < 1e-6);
        assert_eq!(p.tok_emb[1], 0.0); // zero gradient, zero weight: no move
        assert_eq!(opt.t, 1);
    }
}
