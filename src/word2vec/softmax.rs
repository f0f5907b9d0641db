//! Skip-gram with the full softmax, exactly as the slides write it:
//!
//! P(o | c) = exp(u_o · v_c) / Σ_{w ∈ V} exp(u_w · v_c)
//!
//! with a centre vector v_w and a context vector u_w for every word w. The loss of one
//! (centre c, context o) pair is −log P(o | c); its gradients, derived in the book, are
//!
//! ∂L/∂v_c = −u_o + Σ_w P(w | c) u_w  ("expected context vector minus the observed one")
//! ∂L/∂u_w = (P(w | c) − [w = o]) v_c
//!
//! Each pair costs a pass over the whole vocabulary, which is why real trainers use negative
//! sampling ([`super::sgns`]); on the toy world (a few hundred words) it is affordable.
//! Computed in f64, batched as matrix products: scores S = V_c Uᵀ (B × |V|).

use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{context_pairs, EncodedCorpus};
use crate::{Error, Result};

/// Centre and context vectors of a full-softmax skip-gram model.
#[derive(Debug, Clone)]
pub struct SoftmaxSkipGram {
    /// Centre vectors, one row per word (|V| × d): the word vectors kept after training.
    pub v: Array2<f64>,
    /// Context vectors, one row per word (|V| × d).
    pub u: Array2<f64>,
}

/// The mean loss of a batch of pairs and its gradients.
#[derive(Debug, Clone)]
pub struct SoftmaxGrads {
    /// Mean of −log P(o | c) over the pairs, in nats.
    pub loss: f64,
    /// ∂loss/∂v (|V| × d): non-zero only in the rows of the batch's centre words.
    pub v: Array2<f64>,
    /// ∂loss/∂u (|V| × d).
    pub u: Array2<f64>,
}

impl SoftmaxSkipGram {
    /// Both tables drawn uniformly from [−0.5, 0.5) / d (word2vec.c draws v that way; u is
    /// drawn too, so that the very first gradients are not zero).
    pub fn new(n_vocab: usize, dim: usize, seed: u64) -> SoftmaxSkipGram {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut init =
            || Array2::from_shape_fn((n_vocab, dim), |_| (rng.gen::<f64>() - 0.5) / dim as f64);
        let v = init();
        let u = init();
        SoftmaxSkipGram { v, u }
    }

    /// Vocabulary size |V|.
    pub fn n_vocab(&self) -> usize {
        self.v.nrows()
    }

    // ANCHOR: softmax_probabilities
    /// P(w | c) for every word w: the softmax of the scores u_w · v_c.
    pub fn probabilities(&self, centre: u32) -> Array1<f64> {
        let scores = self.u.dot(&self.v.row(centre as usize));
        // Subtracting the largest score changes nothing mathematically and keeps exp finite.
        let max = scores.fold(f64::NEG_INFINITY, |m, &s| m.max(s));
        let exp = scores.mapv(|s| (s - max).exp());
        let z = exp.sum();
        exp / z
    }
    // ANCHOR_END: softmax_probabilities

    /// −log P(o | c) of one pair.
    pub fn pair_loss(&self, centre: u32, context: u32) -> f64 {
        -self.probabilities(centre)[context as usize].ln()
    }

    // ANCHOR: softmax_grads
    /// Mean loss of `pairs` (centre, context) and its gradients, for the whole batch at once:
    /// S = V_c Uᵀ, P = softmax(S) row by row, dS = (P − Y) / B, ∂U = dSᵀ V_c, ∂V_c = dS U.
    pub fn loss_and_grads(&self, pairs: &[(u32, u32)]) -> SoftmaxGrads {
        let b = pairs.len().max(1) as f64;
        let centres: Vec<usize> = pairs.iter().map(|&(c, _)| c as usize).collect();
        let v_c = self.v.select(Axis(0), &centres); // (B, d)
        let mut p = v_c.dot(&self.u.t()); // scores (B, |V|), softmaxed in place below
        let mut loss = 0.0;
        for (mut row, &(_, o)) in p.rows_mut().into_iter().zip(pairs) {
            let max = row.fold(f64::NEG_INFINITY, |m, &s| m.max(s));
            row.mapv_inplace(|s| (s - max).exp());
            let z = row.sum();
            row /= z;
            loss -= row[o as usize].ln();
            // dS = P − Y: the observed context word's probability minus 1.
            row[o as usize] -= 1.0;
        }
        let d_s = p / b; // (B, |V|)
        let grad_u = d_s.t().dot(&v_c); // (|V|, d)
        let d_v_c = d_s.dot(&self.u); // (B, d)
        let mut grad_v = Array2::zeros(self.v.raw_dim());
        for (row, &c) in d_v_c.rows().into_iter().zip(&centres) {
            // A word that is the centre of several pairs collects all their gradients.
            let mut g = grad_v.row_mut(c);
            g += &row;
        }
        SoftmaxGrads {
            loss: loss / b,
            v: grad_v,
            u: grad_u,
        }
    }
    // ANCHOR_END: softmax_grads

    /// One step of plain gradient descent: θ ← θ − lr · ∂L/∂θ.
    pub fn sgd_step(&mut self, grads: &SoftmaxGrads, lr: f64) {
        self.v.scaled_add(-lr, &grads.v);
        self.u.scaled_add(-lr, &grads.u);
    }

    /// Trains on every (centre, context) pair of `corpus` within `window`, `epochs` times,
    /// in shuffled mini-batches of `batch` pairs; returns the mean loss of each epoch.
    ///
    /// Errors: no pair (every sentence has one word), or a bad setting.
    pub fn train(
        &mut self,
        corpus: &EncodedCorpus,
        window: usize,
        epochs: usize,
        batch: usize,
        lr: f64,
        seed: u64,
    ) -> Result<Vec<f64>> {
        if window == 0 || batch == 0 || !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "window and batch must be at least 1 and lr positive (got window {window}, \
                 batch {batch}, lr {lr})"
            )));
        }
        let mut pairs: Vec<(u32, u32)> = (0..corpus.n_sentences())
            .flat_map(|i| context_pairs(corpus.sentence(i), window))
            .collect();
        if pairs.is_empty() {
            return Err(Error::TooSmall {
                what: "the corpus".into(),
                why: "no sentence has two words, so there is no (centre, context) pair".into(),
            });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut losses = Vec::with_capacity(epochs);
        for _ in 0..epochs {
            rand::seq::SliceRandom::shuffle(pairs.as_mut_slice(), &mut rng);
            let mut total = 0.0;
            for chunk in pairs.chunks(batch) {
                let grads = self.loss_and_grads(chunk);
                if !grads.loss.is_finite() {
                    return Err(Error::InvalidArgument(format!(
                        "the loss became {} (learning rate {lr} too high?)",
                        grads.loss
                    )));
                }
                total += grads.loss * chunk.len() as f64;
                self.sgd_step(&grads, lr);
            }
            losses.push(total / pairs.len() as f64);
        }
        Ok(losses)
    }

    /// Mean loss over every pair of `corpus` within `window` (no training).
    pub fn corpus_loss(&self, corpus: &EncodedCorpus, window: usize) -> f64 {
        let pairs: Vec<(u32, u32)> = (0..corpus.n_sentences())
            .flat_map(|i| context_pairs(corpus.sentence(i), window))
            .collect();
        let mut total = 0.0;
        for chunk in pairs.chunks(4096) {
            total += self.loss_and_grads(chunk).loss * chunk.len() as f64;
        }
        total / pairs.len().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every partial derivative against a central difference of the loss.
    #[test]
    fn gradients_match_finite_differences() {
        let mut model = SoftmaxSkipGram::new(7, 4, 3);
        // Larger weights than the initialisation, so the softmax is far from uniform.
        model.v.mapv_inplace(|x| x * 40.0);
        model.u.mapv_inplace(|x| x * 40.0);
        let pairs = [(0, 1), (2, 1), (0, 3), (6, 6), (2, 5)];
        let grads = model.loss_and_grads(&pairs);
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for which in 0..2 {
            for i in 0..7 {
                for j in 0..4 {
                    let mut plus = model.clone();
                    let mut minus = model.clone();
                    let (p, m, g) = if which == 0 {
                        (&mut plus.v, &mut minus.v, &grads.v)
                    } else {
                        (&mut plus.u, &mut minus.u, &grads.u)
                    };
                    p[[i, j]] += h;
                    m[[i, j]] -= h;
                    let numeric = (plus.loss_and_grads(&pairs).loss
                        - minus.loss_and_grads(&pairs).loss)
                        / (2.0 * h);
                    worst = worst.max((numeric - g[[i, j]]).abs());
                }
            }
        }
        assert!(worst < 1e-8, "largest gradient error {worst}");
        // Rows of centre words that are in no pair get no gradient.
        assert!(grads.v.row(1).iter().all(|&x| x == 0.0));
        assert!(grads.v.row(2).iter().any(|&x| x != 0.0));
    }

    #[test]
    fn probabilities_sum_to_one_and_the_loss_is_their_log() {
        let model = SoftmaxSkipGram::new(10, 3, 1);
        let p = model.probabilities(4);
        assert!((p.sum() - 1.0).abs() < 1e-12);
        assert!((model.pair_loss(4, 2) + p[2].ln()).abs() < 1e-12);
        // Near-zero vectors: close to uniform, loss close to ln |V|.
        assert!((model.pair_loss(4, 2) - 10f64.ln()).abs() < 0.05);
    }

    #[test]
    fn training_lowers_the_loss() {
        let corpus = EncodedCorpus {
            ids: vec![0, 1, 2, 0, 1, 3, 0, 1, 2],
            starts: vec![0, 3, 6, 9],
            raw_words: 9,
        };
        let mut model = SoftmaxSkipGram::new(4, 5, 0);
        let before = model.corpus_loss(&corpus, 1);
        let losses = model.train(&corpus, 1, 200, 4, 0.5, 0).unwrap();
        let after = model.corpus_loss(&corpus, 1);
        assert!(after < before - 0.5, "{before} -> {after}");
        assert!(losses.last().unwrap() < &losses[0]);
        let one_word = EncodedCorpus {
            ids: vec![0, 1],
            starts: vec![0, 1, 2],
            raw_words: 2,
        };
        assert!(model.train(&one_word, 2, 1, 4, 0.1, 0).is_err());
    }
}
