//! Finite-difference gradient checks for the tests.
//!
//! Each layer test builds a scalar `L = sum_i y_i r_i` from the layer's output `y` and a
//! fixed random `r`, so that `dL/dy = r`. It runs the backward with `dy = r` into
//! gradients that already hold random numbers (so a backward that overwrites instead of
//! accumulating fails), and compares what it added with five-point central differences
//! `(8 (L(θ + ε) - L(θ - ε)) - (L(θ + 2ε) - L(θ - 2ε))) / 12ε`, for every input number or a sample of them. `L` is summed
//! in f64, so the f32 rounding of the forward stays far below the tolerance; the check of
//! the checker ([`tests`]) shows that a gradient 0.5% off fails.

use ndarray_rand::rand::{Rng as _, SeedableRng};
use ndarray_rand::rand_distr::StandardNormal;
use rand_chacha::ChaCha8Rng;

/// A seeded random source for the tests.
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0.gen_range(0..n)
    }
    pub(crate) fn normal(&mut self) -> f32 {
        self.0.sample(StandardNormal)
    }
}

// ANCHOR: grid
/// The grid test inputs lie on, multiples of 2^-12: then `x ± k ε` with `ε = 2^-7` is
/// exact in f32 (for |x| < 2^11), and the finite differences divide by the true step.
pub(crate) fn on_grid(x: f32) -> f32 {
    (x * 4096.0).round() / 4096.0
}

/// The step of the finite differences, 2^-7.
pub(crate) const EPS: f32 = 1.0 / 128.0;
// ANCHOR_END: grid

/// `n` numbers from N(0, std^2), on the grid.
pub(crate) fn randn(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n).map(|_| on_grid(std * rng.normal())).collect()
}

/// `sum_i y_i r_i`, in f64.
pub(crate) fn dot(y: &[f32], r: &[f32]) -> f64 {
    assert_eq!(y.len(), r.len());
    y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
}

// ANCHOR: accumulated
/// What a backward added to gradients that started as `init`.
pub(crate) fn accumulated(init: &[Vec<f32>], after: &[Vec<f32>]) -> Vec<Vec<f32>> {
    init.iter()
        .zip(after)
        .map(|(a, b)| b.iter().zip(a).map(|(b, a)| b - a).collect())
        .collect()
}
// ANCHOR_END: accumulated

/// Numbers per tensor that are checked (all of them in a smaller tensor).
const SAMPLES: usize = 48;

// ANCHOR: try_check
/// Compares `analytic[j]` with central differences of `f` in `inputs[j]`, for every
/// tensor `j`: the largest difference must be below `tol` times the tensor's largest
/// analytic value. Returns the largest error found, or the first failure as a message.
pub(crate) fn try_check(
    inputs: &[Vec<f32>],
    analytic: &[Vec<f32>],
    f: impl Fn(&[Vec<f32>]) -> f64,
    eps: f32,
    tol: f64,
) -> Result<f64, String> {
    try_check_with_floor(inputs, analytic, f, eps, tol, 0.0)
}

/// [`try_check`], measuring each tensor's errors against the larger of its largest
/// analytic value and `floor`: a tensor whose gradient is small next to the f32 rounding
/// of the forward (about `1e-7 |f| / ε` in the differences) is checked against that noise
/// level rather than failing on it.
pub(crate) fn try_check_with_floor(
    inputs: &[Vec<f32>],
    analytic: &[Vec<f32>],
    f: impl Fn(&[Vec<f32>]) -> f64,
    eps: f32,
    tol: f64,
    floor: f64,
) -> Result<f64, String> {
    assert_eq!(inputs.len(), analytic.len());
    let mut rng = Rng::new(12345);
    let mut x = inputs.to_vec();
    let mut worst = 0.0f64;
    for (j, ana) in analytic.iter().enumerate() {
        assert_eq!(
            ana.len(),
            inputs[j].len(),
            "gradient {j} has the input's size"
        );
        let scale = ana.iter().fold(0.0f64, |m, &g| m.max(g.abs() as f64));
        if scale < 1e-6 {
            return Err(format!(
                "input {j}: the analytic gradient is zero, nothing is checked"
            ));
        }
        let n = ana.len();
        let idx: Vec<usize> = if n <= SAMPLES {
            (0..n).collect()
        } else {
            (0..SAMPLES).map(|_| rng.below(n)).collect()
        };
        for i in idx {
            // five-point central difference: error O(eps^4), so eps can stay large
            // enough that the f32 rounding of the forward is small next to the step
            let orig = x[j][i];
            let mut at = |k: f32| {
                x[j][i] = orig + k * eps;
                let exact = (x[j][i] - orig) == k * eps;
                let value = f(&x);
                x[j][i] = orig;
                (value, exact)
            };
            let ((f2, e2), (f1, e1), (m1, e3), (m2, e4)) = (at(2.0), at(1.0), at(-1.0), at(-2.0));
            if !(e1 && e2 && e3 && e4) {
                return Err(format!(
                    "input {j}[{i}] = {orig} is not on the grid: the steps round"
                ));
            }
            let numeric = (8.0 * (f1 - m1) - (f2 - m2)) / (12.0 * eps as f64);
            let err = (numeric - ana[i] as f64).abs() / scale.max(floor);
            worst = worst.max(err);
            if err > tol {
                return Err(format!(
                    "input {j}[{i}]: analytic {} numeric {numeric} (error {err:.2e} of max |grad| {scale:.3e})",
                    ana[i]
                ));
            }
        }
    }
    Ok(worst)
}
// ANCHOR_END: try_check

/// [`try_check`] with ε = 2^-7 and tolerance 1e-3, panicking with the failure.
pub(crate) fn check(
    name: &str,
    inputs: &[Vec<f32>],
    analytic: &[Vec<f32>],
    f: impl Fn(&[Vec<f32>]) -> f64,
) {
    match try_check(inputs, analytic, f, EPS, 1e-3) {
        Ok(worst) => eprintln!("{name}: largest error {worst:.1e} of max |grad|"),
        Err(e) => panic!("gradient check of {name} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check can fail: a gradient 0.5% off, or one number 1% off, or zero, is caught.
    #[test]
    fn the_check_catches_wrong_gradients() {
        // L = sum_i r_i x_i^3, dL/dx_i = 3 r_i x_i^2
        let mut rng = Rng::new(3);
        let x = vec![randn(&mut rng, 30, 1.0)];
        let r = randn(&mut rng, 30, 1.0);
        let f = |v: &[Vec<f32>]| {
            let y: Vec<f32> = v[0].iter().map(|a| a * a * a).collect();
            dot(&y, &r)
        };
        let right: Vec<f32> = x[0].iter().zip(&r).map(|(a, r)| 3.0 * r * a * a).collect();
        assert!(try_check(&x, std::slice::from_ref(&right), f, EPS, 1e-3).unwrap() < 1e-5);
        let scaled: Vec<f32> = right.iter().map(|g| g * 1.005).collect();
        assert!(try_check(&x, &[scaled], f, EPS, 1e-3).is_err());
        let mut one_off = right.clone();
        let big = (0..30)
            .max_by(|&a, &b| right[a].abs().total_cmp(&right[b].abs()))
            .unwrap();
        one_off[big] *= 0.99;
        assert!(try_check(&x, &[one_off], f, EPS, 1e-3).is_err());
        assert!(try_check(&x, &[vec![0.0; 30]], f, EPS, 1e-3).is_err());
    }
}
