//! LoRA (Hu et al. 2021): fine-tune a frozen linear layer through a low-rank update.
//!
//! ```text
//! W_ft = W + s B A          A (r, d_in), B (d_out, r), s = alpha / r   (rsLoRA: alpha / sqrt r)
//! y    = x W^T + s (x A^T) B^T
//! ```
//!
//! The base weight `W` is frozen; only `A` and `B` train, `r (d_in + d_out)` numbers
//! instead of `d_in d_out`. `A` starts as PEFT starts it (Kaiming-uniform with `a = sqrt 5`,
//! that is U(-1/sqrt d_in, 1/sqrt d_in)) and `B` at zero, so the adapted model starts
//! equal to the base. Shapes are PEFT's: `lora_A.weight` is `(r, d_in)`, `lora_B.weight`
//! `(d_out, r)`, as in the paper's `h = W x + B A x` for column vectors. The course's slide,
//! with `A in R^{d x r}` and `B in R^{r x d}`, writes the same update for row vectors,
//! `x (W + A B)`: its `A` is PEFT's `A^T` and its `B` PEFT's `B^T`.
//!
//! With PEFT's `lora_dropout` `p`, a training step drops the adapter's input (never the
//! base's), as `torch.nn.Dropout` does, keeping each value with probability `1 - p` and
//! scaling the kept ones by `1 / (1 - p)`:
//!
//! ```text
//! y = x W^T + s (D(x) A^T) B^T      D(x)_ni = m_ni x_ni / (1 - p),  m_ni in {0, 1}
//! ```
//!
//! No mask is stored: `m_ni` is a hash of (the run's seed, the step, the adapter's place in
//! the model, the element), so the backward draws the same mask again, and a resumed run
//! draws the masks the uninterrupted run would have. Outside a training step (held-out
//! evaluation, generation) `D` is the identity.

use super::linear::{mat, mat_mut, matmul, Linear, Threads, Weight};
use super::params::{Params, Tensor};
use super::shapes::rows_of;
use crate::{Error, Result};
use ndarray_rand::rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The projections an adapter can target, by their Hugging Face module names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// How to adapt a model: PEFT's `LoraConfig` fields that change the numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// `r`, at least 1.
    pub rank: usize,
    /// `lora_alpha`.
    pub alpha: f32,
    /// `use_rslora`: scale by `alpha / sqrt(r)` instead of `alpha / r`.
    pub rslora: bool,
    /// Module names from [`TARGETS`] (PEFT's Llama default: `q_proj`, `v_proj`).
    pub targets: Vec<String>,
    /// `lora_dropout`: the probability, in `[0, 1)`, that a training step drops a value of
    /// an adapter's input (PEFT's default 0).
    pub dropout: f32,
}

impl LoraConfig {
    /// Rank `rank` and `alpha` on the modules `targets`, with PEFT's other defaults (no
    /// rsLoRA, no dropout).
    pub fn new(rank: usize, alpha: f32, targets: &[&str]) -> LoraConfig {
        LoraConfig {
            rank,
            alpha,
            rslora: false,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            dropout: 0.0,
        }
    }

    /// `s`, the factor of the low-rank update.
    pub fn scale(&self) -> f32 {
        if self.rslora {
            self.alpha / (self.rank as f32).sqrt()
        } else {
            self.alpha / self.rank as f32
        }
    }

    /// Errors on rank 0, a non-finite alpha, no targets or an unknown target name.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::InvalidArgument(
                "LoRA rank 0 adapts nothing: give r >= 1".into(),
            ));
        }
        if !self.alpha.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "lora_alpha must be a finite number, got {}",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidArgument(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.targets.is_empty() {
            return Err(Error::InvalidArgument(
                "LoRA needs at least one target module".into(),
            ));
        }
        if let Some(t) = self.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
            return Err(Error::InvalidArgument(format!(
                "unknown LoRA target {t:?}: the projections are {}",
                TARGETS.join(", ")
            )));
        }
        Ok(())
    }
}

// ANCHOR: dropout
/// Dropout on an adapter's input, with its mask a function of where and when it is drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dropout {
    /// `p`, the probability that a value is dropped.
    pub p: f32,
    /// The adapter's place in the model: its index in [`Params::visit_linears_mut`]'s
    /// order, which names the layer and the module.
    pub site: u64,
    /// `(seed, step)` during a training step (set by the trainer through
    /// [`Params::set_lora_step`]); `None` outside training, where nothing is dropped.
    pub step: Option<(u64, u64)>,
}

/// SplitMix64's finaliser: a bijection of `u64` whose outputs look independent even for
/// neighbouring inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Dropout {
    /// The mask's key for this step and site, or `None` when nothing is dropped.
    fn key(&self) -> Option<u64> {
        let (seed, step) = self.step.filter(|_| self.p > 0.0)?;
        Some(mix(mix(mix(seed) ^ step) ^ self.site))
    }

    /// `m_e / (1 - p)` for element `e` of the input under `key`: 0 with probability `p`.
    fn factor(&self, key: u64, e: usize) -> f32 {
        let u = mix(key ^ (e as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40;
        // u / 2^24 is uniform on [0, 1) in steps of 2^-24
        if (u as f32) < self.p * (1u32 << 24) as f32 {
            0.0
        } else {
            1.0 / (1.0 - self.p)
        }
    }

    /// `D(x)`, or `None` outside a training step (or with `p = 0`): use `x` itself.
    pub fn apply(&self, x: &[f32]) -> Option<Vec<f32>> {
        let key = self.key()?;
        Some(
            x.iter()
                .enumerate()
                .map(|(e, &v)| v * self.factor(key, e))
                .collect(),
        )
    }
}
// ANCHOR_END: dropout

// ANCHOR: adapter
/// A low-rank update on one linear layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraAdapter {
    /// `s`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scale: f32,
    /// `lora_alpha` and `use_rslora`, which gave `scale`: kept so that a model with
    /// adapters can say its [`LoraConfig`] ([`Params::lora_config`]) when a run saves it.
    pub alpha: f32,
    pub rslora: bool,
    /// `(r, d_in)`
    pub a: Tensor,
    /// `(d_out, r)`
    pub b: Tensor,
    /// Dropout on the input, `D` (the identity with `p = 0` and outside training).
    pub dropout: Dropout,
}

impl LoraAdapter {
    /// An adapter for a `(d_out, d_in)` layer: `A` Kaiming-uniform as PEFT draws it, `B` zero.
    pub fn new(d_in: usize, d_out: usize, cfg: &LoraConfig, rng: &mut ChaCha8Rng) -> Self {
        let bound = kaiming_bound(d_in);
        let mut a = Tensor::zeros(&[cfg.rank, d_in]);
        a.iter_mut().for_each(|x| *x = rng.gen_range(-bound..bound));
        LoraAdapter {
            scale: cfg.scale(),
            alpha: cfg.alpha,
            rslora: cfg.rslora,
            a,
            b: Tensor::zeros(&[d_out, cfg.rank]),
            dropout: Dropout {
                p: cfg.dropout,
                ..Dropout::default()
            },
        }
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape[0]
    }

    /// `y += s (D(x) A^T) B^T` for the `n` rows of `x`.
    pub fn forward_add(&self, y: &mut [f32], x: &[f32]) {
        let (r, d_in, d_out) = (self.rank(), self.a.shape[1], self.b.shape[0]);
        let n = rows_of("LoraAdapter::forward_add", "x", x.len(), d_in);
        let dropped = self.dropout.apply(x);
        let x = dropped.as_deref().unwrap_or(x);
        let mut h = vec![0.0; n * r];
        // h = x A^T, then y += s h B^T
        matmul(
            1.0,
            &mat(x, n, d_in),
            &mat(&self.a, r, d_in).t(),
            0.0,
            &mut mat_mut(&mut h, n, r),
            Threads::All,
        );
        matmul(
            self.scale,
            &mat(&h, n, r),
            &mat(&self.b, d_out, r).t(),
            1.0,
            &mut mat_mut(y, n, d_out),
            Threads::All,
        );
    }

    /// Backward of [`LoraAdapter::forward_add`], given `dy`: with `h = D(x) A^T`,
    ///
    /// ```text
    /// dB += s dy^T h        dh = s dy B        dA += dh^T D(x)        dx += D(dh A)
    /// ```
    ///
    /// into `g` for whichever of `A` and `B` is trainable, and always into `dx` (`D` is
    /// linear and diagonal, the same mask and factor as the forward's, drawn again).
    pub fn backward(&self, dx: &mut [f32], g: &mut LoraAdapter, dy: &[f32], x: &[f32]) {
        let (r, d_in, d_out) = (self.rank(), self.a.shape[1], self.b.shape[0]);
        let n = rows_of("LoraAdapter::backward", "x", x.len(), d_in);
        let dropped = self.dropout.apply(x);
        let masked = dropped.is_some();
        let x = dropped.as_deref().unwrap_or(x);
        let (x, dy) = (mat(x, n, d_in), mat(dy, n, d_out));
        let (a, b) = (mat(&self.a, r, d_in), mat(&self.b, d_out, r));
        let mut h = vec![0.0; n * r];
        matmul(
            1.0,
            &x,
            &a.t(),
            0.0,
            &mut mat_mut(&mut h, n, r),
            Threads::All,
        );
        if self.b.trainable {
            let h = mat(&h, n, r);
            matmul(
                self.scale,
                &dy.t(),
                &h,
                1.0,
                &mut mat_mut(&mut g.b, d_out, r),
                Threads::All,
            );
        }
        let mut dh = vec![0.0; n * r];
        matmul(
            self.scale,
            &dy,
            &b,
            0.0,
            &mut mat_mut(&mut dh, n, r),
            Threads::All,
        );
        let dh = mat(&dh, n, r);
        if self.a.trainable {
            matmul(
                1.0,
                &dh.t(),
                &x,
                1.0,
                &mut mat_mut(&mut g.a, r, d_in),
                Threads::All,
            );
        }
        if !masked {
            matmul(1.0, &dh, &a, 1.0, &mut mat_mut(dx, n, d_in), Threads::All);
            return;
        }
        let mut dxd = vec![0.0; n * d_in];
        matmul(
            1.0,
            &dh,
            &a,
            0.0,
            &mut mat_mut(&mut dxd, n, d_in),
            Threads::All,
        );
        let mask = self.dropout.apply(&dxd).expect("dropout is on");
        dx.iter_mut().zip(mask).for_each(|(dx, d)| *dx += d);
    }

    /// `s B A`, `(d_out, d_in)`: the update merging adds to the base weight.
    pub fn delta(&self) -> Vec<f32> {
        let (r, d_in, d_out) = (self.rank(), self.a.shape[1], self.b.shape[0]);
        let mut d = vec![0.0; d_out * d_in];
        let (a, b) = (mat(&self.a, r, d_in), mat(&self.b, d_out, r));
        matmul(
            self.scale,
            &b,
            &a,
            0.0,
            &mut mat_mut(&mut d, d_out, d_in),
            Threads::All,
        );
        d
    }
}
// ANCHOR_END: adapter

/// PEFT's bound for `A`: `kaiming_uniform_(A, a = sqrt 5)` draws from U(-b, b) with
/// `b = gain sqrt(3 / fan_in)`, `gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)`: `b = 1 / sqrt(d_in)`.
pub fn kaiming_bound(d_in: usize) -> f32 {
    let gain = (2.0f32 / (1.0 + 5.0)).sqrt();
    gain * (3.0 / d_in as f32).sqrt()
}

// ANCHOR: merge
impl Linear {
    /// `W <- W + s B A`, and the adapter leaves the layer (returned, to unmerge later).
    /// Errors if the layer has no adapter.
    pub fn merge_adapter(&mut self) -> Result<LoraAdapter> {
        let adapter = self
            .adapter
            .take()
            .ok_or_else(|| Error::InvalidArgument("this layer has no adapter to merge".into()))?;
        let Weight::F32(w) = &mut self.weight else {
            self.adapter = Some(adapter);
            return Err(Error::InvalidArgument(
                "cannot merge an adapter into a quantized weight".into(),
            ));
        };
        for (w, d) in w.iter_mut().zip(adapter.delta()) {
            *w += d;
        }
        Ok(adapter)
    }

    /// The inverse of [`Linear::merge_adapter`]: `W <- W - s B A`, the adapter back on.
    pub fn unmerge_adapter(&mut self, adapter: LoraAdapter) {
        // merge_adapter only succeeds on an f32 weight
        if let Weight::F32(w) = &mut self.weight {
            for (w, d) in w.iter_mut().zip(adapter.delta()) {
                *w -= d;
            }
        }
        self.adapter = Some(adapter);
    }
}
// ANCHOR_END: merge

/// The module name of a tensor name: `q_proj` in `model.layers.0.self_attn.q_proj.weight`.
fn module_of(linear_name: &str) -> &str {
    linear_name.rsplit('.').next().unwrap_or(linear_name)
}

impl Params {
    // ANCHOR: add_lora
    /// Puts an adapter on every projection `cfg` targets, in every block, and freezes
    /// everything else. Returns how many values train. Errors on a bad config or if the
    /// model already has adapters.
    pub fn add_lora(&mut self, cfg: &LoraConfig, seed: u64) -> Result<usize> {
        cfg.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut already, mut site) = (false, 0);
        self.visit_linears_mut(|name, linear| {
            already |= linear.adapter.is_some();
            if !already && cfg.targets.iter().any(|t| t == module_of(name)) {
                let mut adapter = LoraAdapter::new(linear.d_in, linear.d_out, cfg, &mut rng);
                adapter.dropout.site = site;
                linear.adapter = Some(adapter);
            }
            site += 1;
        });
        if already {
            return Err(Error::InvalidArgument(
                "the model already has LoRA adapters".into(),
            ));
        }
        Ok(self.set_trainable(|name| name.contains(".lora_A.") || name.contains(".lora_B.")))
    }
    // ANCHOR_END: add_lora

    /// The [`LoraConfig`] of the adapters on the model, `None` without adapters: their rank,
    /// alpha, rsLoRA switch and dropout, and the modules that carry one (in [`TARGETS`]'
    /// order). Errors if the adapters differ in any of these (one config cannot say them).
    pub fn lora_config(&self) -> Result<Option<LoraConfig>> {
        let mut found: Option<LoraConfig> = None;
        let mut clash = None;
        self.visit_linears(|name, linear| {
            let Some(ad) = &linear.adapter else { return };
            let module = module_of(name).to_string();
            match &mut found {
                None => {
                    found = Some(LoraConfig {
                        rank: ad.rank(),
                        alpha: ad.alpha,
                        rslora: ad.rslora,
                        targets: vec![module],
                        dropout: ad.dropout.p,
                    })
                }
                Some(cfg) => {
                    let same = (cfg.rank, cfg.alpha, cfg.rslora, cfg.dropout)
                        == (ad.rank(), ad.alpha, ad.rslora, ad.dropout.p);
                    if !same && clash.is_none() {
                        clash = Some(name.to_string());
                    }
                    if !cfg.targets.contains(&module) {
                        cfg.targets.push(module);
                    }
                }
            }
        });
        if let Some(name) = clash {
            return Err(Error::InvalidArgument(format!(
                "the adapter on {name} has another rank, alpha or dropout than the first: \
                 one LoRA config cannot describe these adapters"
            )));
        }
        if let Some(cfg) = &mut found {
            cfg.targets
                .sort_by_key(|t| TARGETS.iter().position(|k| k == t).unwrap_or(TARGETS.len()));
        }
        Ok(found)
    }

    /// Tells every adapter whether a training step is running: `Some((seed, step))` turns
    /// their dropout on with that step's masks, `None` turns it off (evaluation,
    /// generation). [`crate::gpt::train::Trainer::step`] calls it around each step.
    pub fn set_lora_step(&mut self, step: Option<(u64, u64)>) {
        self.visit_linears_mut(|_, linear| {
            if let Some(adapter) = &mut linear.adapter {
                adapter.dropout.step = step;
            }
        });
    }

    /// Merges every adapter into its base weight (PEFT's `merge_and_unload`).
    pub fn merge_lora(&mut self) -> Vec<(String, LoraAdapter)> {
        let mut merged = Vec::new();
        self.visit_linears_mut(|name, linear| {
            if linear.adapter.is_some() {
                let adapter = linear.merge_adapter().expect("the layer has an adapter");
                merged.push((name.to_string(), adapter));
            }
        });
        merged
    }

    /// Undoes [`Params::merge_lora`] with the adapters it returned.
    pub fn unmerge_lora(&mut self, mut adapters: Vec<(String, LoraAdapter)>) {
        self.visit_linears_mut(|name, linear| {
            if let Some(i) = adapters.iter().position(|(n, _)| n == name) {
                linear.unmerge_adapter(adapters.swap_remove(i).1);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::config::shrunk;
    use crate::gpt::gradcheck::{accumulated, check, dot, on_grid, randn, try_check, Rng, EPS};
    use crate::gpt::train::{TrainConfig, Trainer};
    use crate::gpt::{Activations, Gpt, GptConfig};

    fn config(rank: usize, targets: &[&str]) -> LoraConfig {
        LoraConfig::new(rank, 2.0 * rank as f32, targets)
    }

    fn small() -> GptConfig {
        shrunk(GptConfig::llama_tiny(), [11, 8, 2, 12, 8])
    }

    /// `A` and `B` (and the input) against finite differences, through one adapter:
    /// without dropout, and with dropout during a training step (its mask is fixed by the
    /// seed, step and site, so the finite differences see the same mask).
    #[test]
    fn adapter_gradients() {
        let off = Dropout::default();
        let on = Dropout {
            p: 0.4,
            site: 3,
            step: Some((7, 2)),
        };
        for dropout in [off, on] {
            adapter_gradients_with(dropout);
        }
    }

    fn adapter_gradients_with(dropout: Dropout) {
        let (n, d_in, d_out, r) = (5, 6, 4, 3);
        let mut rng = Rng::new(3);
        let make = |a: Vec<f32>, b: Vec<f32>| LoraAdapter {
            scale: 1.5,
            alpha: 4.5,
            rslora: false,
            a: Tensor::from_vec(&[r, d_in], a).unwrap(),
            b: Tensor::from_vec(&[d_out, r], b).unwrap(),
            dropout,
        };
        let inputs = vec![
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, r * d_in, 1.0),
            randn(&mut rng, d_out * r, 1.0),
        ];
        let weight = randn(&mut rng, n * d_out, 1.0);
        let f = |v: &[Vec<f32>]| {
            let mut y = vec![0.0; n * d_out];
            make(v[1].clone(), v[2].clone()).forward_add(&mut y, &v[0]);
            dot(&y, &weight)
        };
        let init = vec![
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, r * d_in, 1.0),
            randn(&mut rng, d_out * r, 1.0),
        ];
        let adapter = make(inputs[1].clone(), inputs[2].clone());
        let mut g = make(init[1].clone(), init[2].clone());
        let mut dx = init[0].clone();
        adapter.backward(&mut dx, &mut g, &weight, &inputs[0]);
        let after = vec![dx, g.a.data, g.b.data];
        check("lora", &inputs, &accumulated(&init, &after), f);
    }

    /// A Llama with adapters on every projection: the loss's gradient with respect to
    /// every `A` and `B` against finite differences, and none for the frozen base; without
    /// dropout, with dropout set outside a training step (nothing dropped), and with
    /// dropout on in a step at p = 0.15, 0.3 and 0.5 (the same masks in every evaluation).
    #[test]
    fn model_gradients_reach_the_adapters_only() {
        model_gradients_with(0.0, None);
        model_gradients_with(0.3, None);
        for p in [0.15, 0.3, 0.5] {
            model_gradients_with(p, Some((4, 1)));
        }
    }

    /// The model of the gradient checks: `small()` with bold weights (so that attention is
    /// not uniform; the norms stay at 1), adapters of rank 2 (s = 2) on every projection
    /// whose `A` and `B` are drawn from N(0, 0.5^2) (B at zero would hide A's gradient),
    /// dropout `p` and the trainer's `step`; and 10 (input, target) pairs.
    fn bold_adapted(dropout: f32, step: Option<(u64, u64)>) -> (Gpt, usize, Vec<u32>) {
        scaled_adapted(dropout, step, 20.0, 0.5)
    }

    /// [`bold_adapted`] with the base weights scaled by `bold` and `A`, `B` of deviation `ab`.
    fn scaled_adapted(
        dropout: f32,
        step: Option<(u64, u64)>,
        bold: f32,
        ab: f32,
    ) -> (Gpt, usize, Vec<u32>) {
        let mut rng = Rng::new(8);
        let mut model = Gpt::init(small(), 2).unwrap();
        model.params.visit_mut(|s, t| {
            if s.decay {
                t.iter_mut().for_each(|x| *x = on_grid(*x * bold))
            }
        });
        let lora = LoraConfig {
            dropout,
            ..config(2, &TARGETS)
        };
        let n = model.params.add_lora(&lora, 5).unwrap();
        model.params.set_lora_step(step);
        model.params.visit_mut(|s, t| {
            if s.trainable {
                t.iter_mut().for_each(|x| *x = on_grid(ab * rng.normal()));
            }
        });
        let ids: Vec<u32> = (0..11).map(|_| rng.below(11) as u32).collect();
        (model, n, ids)
    }

    /// The mean loss of `model` on `ids` (10 predictions, 2 x 5) with its trainable tensors
    /// replaced by `tensors`, in [`Params::visit`] order.
    fn loss_with(model: &Gpt, ids: &[u32], tensors: &[Vec<f32>]) -> f64 {
        let mut m = model.clone();
        let mut i = 0;
        m.params.visit_mut(|s, t| {
            if s.trainable {
                t.copy_from_slice(&tensors[i]);
                i += 1;
            }
        });
        let mut acts = Activations::new(&m.cfg, 2, 5);
        m.forward_loss(&mut acts, &ids[..10], &ids[1..]).unwrap();
        acts.losses.iter().map(|&l| l as f64).sum::<f64>() / 10.0
    }

    fn trainable_of(p: &Params) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        p.visit(|s, t| {
            if s.trainable {
                out.push(t.to_vec())
            }
        });
        out
    }

    /// The analytic gradient of the trainable tensors, after checking that the frozen base
    /// received no gradient values.
    fn adapter_gradients_of(model: &Gpt, n: usize, ids: &[u32]) -> Vec<Vec<f32>> {
        let mut acts = Activations::new(&model.cfg, 2, 5);
        model
            .forward_loss(&mut acts, &ids[..10], &ids[1..])
            .unwrap();
        let mut grads = model.params.grads();
        model.backward(&mut acts, &mut grads).unwrap();
        let (trainable, all) = grads.count_trainable();
        assert_eq!(trainable, n);
        let held: usize = grads.tensors().iter().map(|t| t.len()).sum();
        assert_eq!(
            held, n,
            "no gradient values for the frozen base ({all} in all)"
        );
        trainable_of(&grads)
    }

    /// The five-point difference of `loss_with` in coordinate `(j, i)` with step `eps`.
    fn five_point(model: &Gpt, ids: &[u32], x: &[Vec<f32>], j: usize, i: usize, eps: f32) -> f64 {
        let at = |k: f32| {
            let mut y = x.to_vec();
            y[j][i] += k * eps;
            assert_eq!(y[j][i] - x[j][i], k * eps, "the step is exact on the grid");
            loss_with(model, ids, &y)
        };
        (8.0 * (at(1.0) - at(-1.0)) - (at(2.0) - at(-2.0))) / (12.0 * eps as f64)
    }

    /// Every trainable tensor against five-point differences at the usual step and
    /// tolerance (2^-7, 1e-3 of the tensor's largest gradient). `A` and `B` are drawn from
    /// N(0, 0.1^2) here, so that the update `s B A` is smaller than the base weights: with
    /// [`bold_adapted`]'s 0.5 the update outweighs the base, and along some adapter
    /// coordinates the loss turns within less than the differences' span
    /// ([`finite_differences_converge_where_they_failed`]).
    fn model_gradients_with(dropout: f32, step: Option<(u64, u64)>) {
        let (model, n, ids) = scaled_adapted(dropout, step, 20.0, 0.1);
        let x = trainable_of(&model.params);
        let grads = adapter_gradients_of(&model, n, &ids);
        if let Err(e) = try_check(&x, &grads, |t| loss_with(&model, &ids, t), EPS, 1e-3) {
            panic!("dropout {dropout}, step {step:?}: {e}");
        }
    }

    /// Why the check above draws small adapters. With [`bold_adapted`]'s (0.5), the
    /// whole-model check at 2^-7 failed at p = 0.15 and 0.3 (errors 4e-3 to 2e-2, and up to
    /// 6x the largest gradient at some coordinates). Not the masks, nor dropout's backward:
    /// along the worst coordinate (layer 0's `q_proj.lora_A[10]`, p = 0.3 in a step) the
    /// differences go to the analytic value as the step shrinks: -17.4 at 2^-7, -22.1 at
    /// 2^-8, then 3.11, 2.70, 2.327 and 2.3071 at 2^-12, against 2.3058. (Sampled every
    /// 2^-12, the loss along its neighbour `lora_A[15]` is smooth but falls by 0.23 within
    /// about 2^-9: a softmax near the point where it switches, as bold weights make it.) A mask that
    /// differed between the forward and the backward, or a wrong backward, would leave an
    /// error that no step removes; the same model without dropout has such coordinates too
    /// (other ones: the masks move the inputs).
    #[test]
    fn finite_differences_converge_where_they_failed() {
        let (model, n, ids) = bold_adapted(0.3, Some((4, 1)));
        let x = trainable_of(&model.params);
        let g = adapter_gradients_of(&model, n, &ids)[0][10] as f64;
        let err = |k: i32| (five_point(&model, &ids, &x, 0, 10, (-(k as f32)).exp2()) - g).abs();
        let errors: Vec<f64> = (7..=12).map(err).collect();
        assert!(errors[0] > 1.0, "far off at 2^-7: {errors:?}");
        assert!(
            errors[5] < 1e-3 * g.abs(),
            "within 1e-3 at 2^-12: {errors:?}"
        );
        assert!(
            errors[2..].windows(2).all(|w| w[1] < w[0]),
            "falling from 2^-9 on: {errors:?}"
        );
    }

    /// Training moves `A` and `B` and leaves every base tensor as it was, bit for bit.
    #[test]
    fn training_leaves_the_base_untouched() {
        let mut model = Gpt::init(small(), 1).unwrap();
        let base = model.params.clone();
        model
            .params
            .add_lora(&config(2, &["q_proj", "v_proj"]), 0)
            .unwrap();
        let data: Vec<u32> = (0..200).map(|i| (i * 5 % 11) as u32).collect();
        let train = TrainConfig {
            batch: 2,
            seq_len: 8,
            schedule: crate::gpt::optim::LrSchedule::constant(1e-2),
            adamw: Default::default(),
            clip: Some(1.0),
            seed: 1,
        };
        let mut trainer = Trainer::new(&model, train).unwrap();
        let first = trainer.step(&mut model, &data).unwrap().loss;
        for _ in 0..20 {
            trainer.step(&mut model, &data).unwrap();
        }
        let last = trainer.step(&mut model, &data).unwrap().loss;
        assert!(last < first, "{first} -> {last}");
        let mut adapters = model.params.clone();
        let taken = adapters.merge_lora().len();
        assert_eq!(taken, 2 * 2, "q and v in 2 layers");
        let mut stripped = model.params.clone();
        stripped.visit_linears_mut(|_, l| l.adapter = None);
        stripped.set_trainable(|_| true);
        assert_eq!(stripped, base, "the base did not move");
    }

    /// A fresh adapter (B = 0) changes nothing; merged logits equal adapted logits; and
    /// unmerging gives back the base weights to within float rounding.
    #[test]
    fn merge_and_unmerge() {
        let cfg = small();
        let mut model = Gpt::init(cfg.clone(), 3).unwrap();
        let base = model.clone();
        model.params.add_lora(&config(4, &TARGETS), 1).unwrap();
        let ids = [1, 5, 2, 7, 3, 3, 9, 0];
        let logits = |m: &Gpt| {
            let mut acts = Activations::new(&cfg, 1, 8);
            m.forward(&mut acts, &ids).unwrap();
            acts.logits
        };
        assert_eq!(
            logits(&model),
            logits(&base),
            "B = 0: the adapted model is the base"
        );
        let mut rng = Rng::new(4);
        model.params.visit_mut(|s, t| {
            if s.name.contains("lora_B") {
                t.iter_mut().for_each(|x| *x = 0.05 * rng.normal());
            }
        });
        let adapted = logits(&model);
        assert!(adapted != logits(&base));
        let mut merged = model.clone();
        let adapters = merged.params.merge_lora();
        let merged_logits = logits(&merged);
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        assert!(
            worst(&merged_logits, &adapted) < 1e-5,
            "{}",
            worst(&merged_logits, &adapted)
        );
        merged.params.unmerge_lora(adapters);
        let (a, b) = (merged.params.tensors(), model.params.tensors());
        let gap = a
            .iter()
            .zip(&b)
            .map(|(x, y)| worst(x, y))
            .fold(0.0, f32::max);
        assert!(gap < 1e-6, "unmerge is W + d - d, within rounding: {gap}");
    }

    #[test]
    fn bad_configs_are_clear_errors() {
        let mut p = Params::zeros(&small());
        let err = |c: LoraConfig, p: &mut Params| p.add_lora(&c, 0).unwrap_err().to_string();
        assert!(err(config(0, &["q_proj"]), &mut p).contains("rank 0"));
        assert!(err(config(2, &["qkv"]), &mut p).contains("unknown LoRA target \"qkv\""));
        assert!(err(config(2, &[]), &mut p).contains("at least one target"));
        p.add_lora(&config(2, &["q_proj"]), 0).unwrap();
        assert!(err(config(2, &["v_proj"]), &mut p).contains("already has LoRA"));
    }

    /// The mask: about a fraction `p` dropped, the kept values scaled by `1 / (1 - p)`, the
    /// same mask for the same (seed, step, site), others elsewhere, and none outside a step.
    #[test]
    fn dropout_drops_p_and_scales_the_rest() {
        let p = 0.25;
        let d = |step: Option<(u64, u64)>, site| Dropout { p, site, step };
        let x = vec![1.0f32; 40_000];
        let y = d(Some((1, 5)), 2).apply(&x).unwrap();
        let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / x.len() as f64;
        // 4 standard deviations of a binomial fraction: sqrt(p (1 - p) / n) = 0.0022
        assert!((dropped - 0.25).abs() < 0.009, "{dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
        assert_eq!(d(Some((1, 5)), 2).apply(&x).unwrap(), y, "drawn again");
        for other in [d(Some((1, 6)), 2), d(Some((1, 5)), 3), d(Some((2, 5)), 2)] {
            let z = other.apply(&x).unwrap();
            let same = y.iter().zip(&z).filter(|(a, b)| a == b).count() as f64;
            // two independent masks agree on p^2 + (1 - p)^2 = 0.625 of the values
            assert!((same / x.len() as f64 - 0.625).abs() < 0.02, "{same}");
        }
        assert!(
            d(None, 2).apply(&x).is_none(),
            "no dropout outside training"
        );
        assert!(Dropout {
            p: 0.0,
            ..d(Some((1, 5)), 2)
        }
        .apply(&x)
        .is_none());
        let bad = LoraConfig {
            dropout: 1.0,
            ..config(2, &["q_proj"])
        };
        let err = Params::zeros(&small()).add_lora(&bad, 0).unwrap_err();
        assert!(err.to_string().contains("lora_dropout"), "{err}");
    }

    /// With dropout, training gives other losses than without; evaluation between steps
    /// sees no dropout (the adapted model's loss is the same before and after the trainer
    /// has switched it on and off); and a run stopped after 4 steps, its adapters saved in
    /// PEFT's format, loaded onto a fresh base and resumed with its optimizer and sampler,
    /// ends bit for bit where the run without the stop ends.
    #[test]
    fn a_resumed_run_with_dropout_is_the_run_without_the_stop() {
        let base = Gpt::init(small(), 1).unwrap();
        let data: Vec<u32> = (0..300).map(|i| ((i * 7 + i / 5) % 11) as u32).collect();
        let train = TrainConfig {
            batch: 2,
            seq_len: 8,
            schedule: crate::gpt::optim::LrSchedule::constant(1e-2),
            adamw: Default::default(),
            clip: Some(1.0),
            seed: 3,
        };
        let lora = |dropout| LoraConfig {
            dropout,
            ..config(2, &["q_proj", "v_proj", "down_proj"])
        };
        let adapted = |dropout| {
            let mut m = base.clone();
            m.params.add_lora(&lora(dropout), 5).unwrap();
            m
        };
        let run = |model: &mut Gpt, trainer: &mut Trainer, steps: usize| -> Vec<f32> {
            (0..steps)
                .map(|_| trainer.step(model, &data).unwrap().loss)
                .collect()
        };
        let eval = |m: &Gpt| crate::gpt::run::sequence_loss(m, &data[..64]).unwrap();

        let mut plain = adapted(0.0);
        let mut t = Trainer::new(&plain, train.clone()).unwrap();
        let plain_losses = run(&mut plain, &mut t, 8);
        let mut straight = adapted(0.2);
        let mut t = Trainer::new(&straight, train.clone()).unwrap();
        let straight_losses = run(&mut straight, &mut t, 8);
        assert_ne!(
            straight_losses[1..],
            plain_losses[1..],
            "dropout changes the steps"
        );
        let mut by_hand = straight.clone();
        by_hand.params.set_lora_step(None);
        assert!(
            by_hand.params == straight.params,
            "the trainer turned dropout off after its step"
        );

        let mut first = adapted(0.2);
        let mut t = Trainer::new(&first, train.clone()).unwrap();
        let mut losses = run(&mut first, &mut t, 4);
        let dir =
            std::env::temp_dir().join(format!("llm-lessons-lora-resume-{}", std::process::id()));
        crate::gpt::peft::save_adapter(&dir, &first.params, &lora(0.2), "base").unwrap();
        let (opt, step, position) = (t.opt.clone(), t.step, t.sampler_position());
        drop((first, t));
        let mut resumed = base.clone();
        let read = crate::gpt::peft::load_adapter(&dir, &mut resumed.params).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read.dropout, 0.2, "lora_dropout read back");
        let mut t = Trainer::resume(&resumed, train, opt, step, position).unwrap();
        losses.extend(run(&mut resumed, &mut t, 4));
        assert_eq!(losses, straight_losses);
        assert!(
            resumed.params == straight.params,
            "the adapters, bit for bit"
        );
        assert_eq!(eval(&resumed), eval(&straight));
    }

    /// Chapter 4's `Run` on adapters with dropout: checkpointed (the base as the model, the
    /// adapters in PEFT's files beside it, AdamW's moments for the adapters alone), stopped
    /// at step 4 and resumed from that folder alone, it ends with the log and the weights of
    /// the run that never stopped, to the bit.
    #[test]
    fn a_lora_run_checkpoints_and_resumes_through_run() {
        use crate::gpt::checkpoint::step_dir_name;
        use crate::gpt::run::{Checkpoints, Run, RunOptions};
        let mut model = Gpt::init(small(), 1).unwrap();
        let lora = LoraConfig {
            dropout: 0.2,
            ..config(2, &["q_proj", "v_proj", "down_proj"])
        };
        model.params.add_lora(&lora, 5).unwrap();
        let ids: Vec<u32> = (0..400).map(|i| ((i * 7 + i / 5) % 11) as u32).collect();
        let train = TrainConfig {
            batch: 2,
            seq_len: 8,
            // 9 steps at a constant rate
            schedule: crate::gpt::optim::LrSchedule {
                total: 9,
                ..crate::gpt::optim::LrSchedule::constant(1e-2)
            },
            adamw: Default::default(),
            clip: Some(1.0),
            seed: 3,
        };
        let root =
            std::env::temp_dir().join(format!("llm-lessons-lora-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let options = |name: &str| RunOptions {
            eval_every: 3,
            eval_windows: 4,
            checkpoints: Some(Checkpoints {
                dir: root.join(name),
                every: 100,
                keep: 2,
                average_last: 0,
            }),
            stop_at: None,
        };
        let mut straight = Run::from_model(model.clone(), train.clone(), 0.2, &ids).unwrap();
        let (tr, held) = straight.split(&ids);
        straight
            .train(tr, held, &options("straight"), |_, _| {})
            .unwrap();

        let mut first = Run::from_model(model, train, 0.2, &ids).unwrap();
        let stop = RunOptions {
            stop_at: Some(4),
            ..options("halves")
        };
        first.train(tr, held, &stop, |_, _| {}).unwrap();
        let dir = root.join("halves").join(step_dir_name(4));
        for f in [
            "model.safetensors",
            crate::gpt::peft::ADAPTER_CONFIG,
            crate::gpt::peft::ADAPTER_WEIGHTS,
        ] {
            assert!(dir.join(f).exists(), "{f}");
        }
        let moments = crate::gpt::hf::read_safetensors(&dir.join("trainer.safetensors")).unwrap();
        assert_eq!(
            moments.len(),
            2 * 2 * 3 * 2,
            "m and v of A and B, 3 modules, 2 layers"
        );
        assert!(moments.iter().all(|t| t.name.contains(".lora_")));
        drop(first);
        let mut second = Run::resume(&dir, &ids).unwrap();
        assert_eq!(second.model.params.lora_config().unwrap(), Some(lora));
        second
            .train(tr, held, &options("halves"), |_, _| {})
            .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(second.log, straight.log);
        assert!(second.model.params == straight.model.params, "to the bit");
    }

    /// The config read back from a model's adapters, and an error when they disagree.
    #[test]
    fn lora_config_reads_the_adapters() {
        let mut p = Params::zeros(&small());
        assert_eq!(p.lora_config().unwrap(), None);
        let cfg = LoraConfig {
            rslora: true,
            dropout: 0.1,
            ..config(3, &["v_proj", "q_proj"])
        };
        p.add_lora(&cfg, 0).unwrap();
        let back = p.lora_config().unwrap().unwrap();
        assert_eq!(back.targets, ["q_proj", "v_proj"], "in TARGETS' order");
        assert_eq!(
            (back.rank, back.alpha, back.rslora, back.dropout),
            (3, 6.0, true, 0.1)
        );
        p.blocks[1]
            .attn
            .mha_mut()
            .unwrap()
            .v_proj
            .adapter
            .as_mut()
            .unwrap()
            .alpha = 1.0;
        let err = p.lora_config().unwrap_err().to_string();
        assert!(err.contains("model.layers.1.self_attn.v_proj"), "{err}");
    }

    #[test]
    fn a_is_drawn_within_pefts_kaiming_bound() {
        let mut p = Params::zeros(&small());
        p.add_lora(&config(4, &["q_proj"]), 9).unwrap();
        let a = &p.blocks[0]
            .attn
            .mha()
            .unwrap()
            .q_proj
            .adapter
            .as_ref()
            .unwrap()
            .a;
        let bound = 1.0 / 8f32.sqrt();
        assert!((kaiming_bound(8) - bound).abs() < 1e-7);
        let max = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(max < bound && max > 0.8 * bound, "{max} vs {bound}");
        let b = &p.blocks[0]
            .attn
            .mha()
            .unwrap()
            .q_proj
            .adapter
            .as_ref()
            .unwrap()
            .b;
        assert!(b.iter().all(|&x| x == 0.0));
    }
}
