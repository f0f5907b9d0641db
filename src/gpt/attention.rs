//! Causal self-attention with grouped-query heads (GQA).
//!
//! For each sequence `b` and query head `h`, with the key/value head `g = h / n_rep`
//! that `h` shares with `n_rep - 1` other query heads (Hugging Face's `repeat_kv`):
//!
//! ```text
//! S = q_bh k_bg^T / sqrt(hs)      (T, T) scores
//! P = softmax(S) over s <= t      causal: position t sees positions 0..=t
//! y_bh = P v_bg                   (T, hs)
//! ```
//!
//! The forward keeps `P`; the backward needs it and nothing else new. `n_kv_heads =
//! n_heads` is multi-head attention, 1 is multi-query attention. The query, key and value
//! projections and the output projection are [`crate::gpt::linear`] layers around this.
//!
//! ```
//! use llm_lessons::gpt::attention::{attention_forward, AttnShape};
//! // one head of width 1, two positions; position 0 can only attend to itself
//! let shape = AttnShape { b: 1, t: 2, n_heads: 1, n_kv_heads: 1, head_dim: 1, v_head_dim: 1 };
//! let (q, k, v) = ([1.0, 1.0], [0.0, 0.0], [3.0, 5.0]);
//! let (mut y, mut p) = ([0.0; 2], [0.0; 4]);
//! attention_forward(&mut y, &mut p, &q, &k, &v, shape);
//! assert_eq!(p, [1.0, 0.0, 0.5, 0.5]); // equal scores: position 1 averages
//! assert_eq!(y, [3.0, 4.0]);
//! ```

use super::linear::{mat, mat_mut, matmul, strided, strided_mut, Threads};
use super::math::{exp, vectorized};
use super::shapes::expect_len;
use ndarray::{s, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// The sizes of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    /// Sequences in the batch, `B`.
    pub b: usize,
    /// Positions per sequence, `T`.
    pub t: usize,
    pub n_heads: usize,
    /// Key/value heads; must divide `n_heads`.
    pub n_kv_heads: usize,
    /// `hs`, the width of a query and a key head; the scores are scaled by `1/sqrt(hs)`.
    pub head_dim: usize,
    /// The width of a value head, and so of an output head: `hs` in GPT and Llama;
    /// DeepSeek's MLA has queries and keys of `d_h + d_h^R` and values of `d_v`.
    pub v_head_dim: usize,
}

impl AttnShape {
    fn q_width(&self) -> usize {
        self.n_heads * self.head_dim
    }
    fn kv_width(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    fn v_width(&self) -> usize {
        self.n_kv_heads * self.v_head_dim
    }
    fn y_width(&self) -> usize {
        self.n_heads * self.v_head_dim
    }
    /// Panics unless the key/value heads divide the query heads.
    #[track_caller]
    fn check(&self, kernel: &str) {
        assert!(
            self.n_kv_heads > 0 && self.n_heads % self.n_kv_heads == 0,
            "{kernel}: {} key/value heads do not divide {} query heads",
            self.n_kv_heads,
            self.n_heads
        );
    }
    /// Panics unless every query-shaped, key/value-shaped and probability buffer of a
    /// batched kernel has its length, naming the one that does not.
    #[track_caller]
    fn check_buffers(
        &self,
        kernel: &str,
        queries: &[(&str, usize)],
        keys_values: &[(&str, usize)],
        att: usize,
    ) {
        self.check(kernel);
        let rows = self.b * self.t;
        for &(name, len) in queries {
            let (want, layout) = if name.contains('y') {
                (self.y_width(), "(B, T, n_heads, v_hs)")
            } else {
                (self.q_width(), "(B, T, n_heads, hs)")
            };
            expect_len(kernel, name, len, rows * want, layout);
        }
        for &(name, len) in keys_values {
            let (want, layout) = if name.contains('v') {
                (self.v_width(), "(B, T, n_kv_heads, v_hs)")
            } else {
                (self.kv_width(), "(B, T, n_kv_heads, hs)")
            };
            expect_len(kernel, name, len, rows * want, layout);
        }
        let probs = self.b * self.n_heads * self.t * self.t;
        expect_len(kernel, "att", att, probs, "(B, n_heads, T, T)");
    }
    fn n_rep(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// One head of one sequence's `(T, n * hs)` tensor: the `(T, hs)` matrix of head `h`,
/// read in place (rows `width` apart).
fn head(x: &[f32], s: AttnShape, width: usize, h: usize) -> ArrayView2<'_, f32> {
    strided(&x[h * s.head_dim..], s.t, s.head_dim, width)
}

/// The mutable form of [`head`].
fn head_mut(x: &mut [f32], s: AttnShape, width: usize, h: usize) -> ArrayViewMut2<'_, f32> {
    strided_mut(&mut x[h * s.head_dim..], s.t, s.head_dim, width)
}

/// [`head`] of a value-shaped tensor (values, outputs): heads `v_hs` wide.
fn v_head(x: &[f32], s: AttnShape, width: usize, h: usize) -> ArrayView2<'_, f32> {
    strided(&x[h * s.v_head_dim..], s.t, s.v_head_dim, width)
}

/// The mutable form of [`v_head`].
fn v_head_mut(x: &mut [f32], s: AttnShape, width: usize, h: usize) -> ArrayViewMut2<'_, f32> {
    strided_mut(&mut x[h * s.v_head_dim..], s.t, s.v_head_dim, width)
}

// ANCHOR: attention_plain
/// Causal attention for one sequence and one head, written as the formulas read: for
/// each query `i`, the scores against keys `0..=i`, their softmax (row `i` of `P`), and
/// `y_i = sum_j P_ij v_j`. [`attention_forward`] computes the same with blocks of
/// matrix products, every head and sequence at once, across threads; a test checks that
/// the two agree.
///
/// # Shapes
/// `q, k, v, y: (T, hs)`, `p: (T, T)` (zero above the diagonal). `y` and `p` are
/// overwritten.
#[allow(clippy::needless_range_loop)]
pub fn attention_forward_plain(
    y: &mut [f32],
    p: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    hs: usize,
) {
    let scale = 1.0 / (hs as f32).sqrt();
    for i in 0..t {
        let row = &mut p[i * t..(i + 1) * t];
        // S_ij = q_i . k_j / sqrt(hs), for the keys query i may see
        for j in 0..=i {
            row[j] = (0..hs).map(|d| q[i * hs + d] * k[j * hs + d]).sum::<f32>() * scale;
        }
        // softmax over 0..=i (minus the largest score: the same P, and no overflow)
        let max = row[..=i].iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0.0;
        for j in 0..=i {
            row[j] = (row[j] - max).exp();
            sum += row[j];
        }
        for j in 0..t {
            row[j] = if j <= i { row[j] / sum } else { 0.0 }; // the mask: no future
        }
        // y_i = sum_j P_ij v_j
        for d in 0..hs {
            y[i * hs + d] = (0..=i).map(|j| row[j] * v[j * hs + d]).sum();
        }
    }
}
// ANCHOR_END: attention_plain

// ANCHOR: attention_backward_plain
/// Backward of [`attention_forward_plain`], given `dy`, adding into `dq`, `dk` and `dv`:
/// for each query `i`, `dP_ij = dy_i . v_j` and `dv_j += P_ij dy_i`, then the softmax's
/// `dS_ij = P_ij (dP_ij - sum_l P_il dP_il)`, then `dq_i += dS_ij k_j / sqrt(hs)` and
/// `dk_j += dS_ij q_i / sqrt(hs)`. [`attention_backward`] computes the same with matrix
/// products; a test checks that the two agree.
///
/// # Shapes
/// as [`attention_forward_plain`]; `dq, dk, dv, dy: (T, hs)`.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub fn attention_backward_plain(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    dy: &[f32],
    p: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    t: usize,
    hs: usize,
) {
    let scale = 1.0 / (hs as f32).sqrt();
    let mut dp = vec![0.0f32; t];
    for i in 0..t {
        let row = &p[i * t..(i + 1) * t];
        // through y_i = sum_j P_ij v_j
        for j in 0..=i {
            dp[j] = (0..hs).map(|d| dy[i * hs + d] * v[j * hs + d]).sum();
            for d in 0..hs {
                dv[j * hs + d] += row[j] * dy[i * hs + d];
            }
        }
        // through the softmax: one dot product per row, no T x T Jacobian
        let dot: f32 = (0..=i).map(|j| row[j] * dp[j]).sum();
        for j in 0..=i {
            let ds = row[j] * (dp[j] - dot);
            // through S_ij = q_i . k_j / sqrt(hs)
            for d in 0..hs {
                dq[i * hs + d] += ds * k[j * hs + d] * scale;
                dk[j * hs + d] += ds * q[i * hs + d] * scale;
            }
        }
    }
}
// ANCHOR_END: attention_backward_plain

// ANCHOR: attention_forward
/// Causal attention: `y = softmax(q k^T / sqrt(hs) + mask) v`, per sequence and head.
///
/// # Shapes
/// `q, y: (B, T, n_heads, hs)`, `k, v: (B, T, n_kv_heads, hs)`,
/// `att: (B, n_heads, T, T)` (the probabilities `P`, zero above the diagonal).
/// `y` and `att` are overwritten.
pub fn attention_forward(
    y: &mut [f32],
    att: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
) {
    // the sequences are independent: one task each, across the threads
    let (t, qw, kw, vw, yw) = (s.t, s.q_width(), s.kv_width(), s.v_width(), s.y_width());
    let k_ = "attention_forward";
    s.check_buffers(
        k_,
        &[("q", q.len()), ("y", y.len())],
        &[("k", k.len()), ("v", v.len())],
        att.len(),
    );
    let seq = AttnShape { b: 1, ..s };
    y.par_chunks_mut(t * yw)
        .zip(att.par_chunks_mut(s.n_heads * t * t))
        .zip(
            q.par_chunks(t * qw)
                .zip(k.par_chunks(t * kw).zip(v.par_chunks(t * vw))),
        )
        .for_each(|((y, att), (q, (k, v)))| attention_forward_one(y, att, q, k, v, seq));
}

/// [`attention_forward`] for one sequence.
fn attention_forward_one(
    y: &mut [f32],
    att: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
) {
    let (t, scale) = (s.t, 1.0 / (s.head_dim as f32).sqrt());
    for h in 0..s.n_heads {
        let g = h / s.n_rep(); // the key/value head this query head reads
        let (qh, kh, vh) = (
            head(q, s, s.q_width(), h),
            head(k, s, s.kv_width(), g),
            v_head(v, s, s.v_width(), g),
        );
        let p = &mut att[h * t * t..][..t * t];
        // S = q k^T / sqrt(hs), by blocks of queries: queries r0..r1 see keys ..r1 at most,
        // so the keys past r1 (the masked future) are not multiplied at all
        let mut pm = mat_mut(p, t, t);
        for (r0, r1) in causal_blocks(t) {
            let (q_blk, k_seen) = (qh.slice(s![r0..r1, ..]), kh.slice(s![..r1, ..]));
            matmul(
                scale,
                &q_blk,
                &k_seen.t(),
                0.0,
                &mut pm.slice_mut(s![r0..r1, ..r1]),
                Threads::One,
            );
        }
        vectorized(|| {
            for (i, row) in p.chunks_exact_mut(t).enumerate() {
                causal_softmax(row, i + 1);
            }
        });
        // y = P v, by the same blocks
        let (pm, mut yh) = (mat(p, t, t), v_head_mut(y, s, s.y_width(), h));
        for (r0, r1) in causal_blocks(t) {
            let (p_blk, v_seen) = (pm.slice(s![r0..r1, ..r1]), vh.slice(s![..r1, ..]));
            matmul(
                1.0,
                &p_blk,
                &v_seen,
                0.0,
                &mut yh.slice_mut(s![r0..r1, ..]),
                Threads::One,
            );
        }
    }
}

/// Query rows per block in the causal products: rows `r0..r1` need keys `..r1` only.
const CAUSAL_BLOCK: usize = 32;

/// The blocks `(r0, r1)` of `0..t`.
fn causal_blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(CAUSAL_BLOCK)
        .map(move |r0| (r0, (r0 + CAUSAL_BLOCK).min(t)))
}

/// Softmax of `row[..len]` in place, and zeros after it (the masked future): row `t` of
/// the scores becomes row `t` of `P` with `len = t + 1`. The largest visible score is
/// subtracted before `exp`, so large scores do not overflow.
///
/// ```
/// use llm_lessons::gpt::attention::causal_softmax;
/// // position 1 of 3: sees scores (ln 3, 0); the future's 100 is masked
/// let mut row = [3f32.ln(), 0.0, 100.0];
/// causal_softmax(&mut row, 2);
/// assert!((row[0] - 0.75).abs() < 1e-6 && (row[1] - 0.25).abs() < 1e-6 && row[2] == 0.0);
/// ```
pub fn causal_softmax(row: &mut [f32], len: usize) {
    let (seen, future) = row.split_at_mut(len);
    let max = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    seen.iter_mut().for_each(|x| *x = exp(*x - max)); // a loop the compiler vectorizes
    let sum: f32 = seen.iter().sum();
    seen.iter_mut().for_each(|x| *x /= sum);
    future.fill(0.0);
}
// ANCHOR_END: attention_forward

// ANCHOR: attention_cached
/// Attention for generation with a key/value cache, one sequence: `n` new queries at
/// positions `pos0..pos0 + n` attend to the keys and values of positions `0..pos0 + n`,
/// the cached ones and their own. Query `i` sees positions `0..=pos0 + i`.
///
/// # Shapes
/// `q, y: (n, n_heads, hs)`, `k, v: (pos0 + n, n_kv_heads, hs)`; `y` is overwritten.
pub fn attention_forward_cached(
    y: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos0: usize,
    s: AttnShape,
) {
    let (n, total) = (s.t, pos0 + s.t);
    let k_ = "attention_forward_cached";
    s.check(k_);
    expect_len(k_, "q", q.len(), n * s.q_width(), "(n, n_heads, hs)");
    expect_len(k_, "y", y.len(), n * s.y_width(), "(n, n_heads, v_hs)");
    expect_len(
        k_,
        "k",
        k.len(),
        total * s.kv_width(),
        "(pos0 + n, n_kv_heads, hs)",
    );
    expect_len(
        k_,
        "v",
        v.len(),
        total * s.v_width(),
        "(pos0 + n, n_kv_heads, hs)",
    );
    let scale = 1.0 / (s.head_dim as f32).sqrt();
    let (qs, kvs) = (
        AttnShape { b: 1, ..s },
        AttnShape {
            b: 1,
            t: total,
            ..s
        },
    );
    let mut p = vec![0.0f32; n * total];
    for h in 0..s.n_heads {
        let g = h / s.n_rep();
        let (qh, kh) = (head(q, qs, s.q_width(), h), head(k, kvs, s.kv_width(), g));
        matmul(
            scale,
            &qh,
            &kh.t(),
            0.0,
            &mut mat_mut(&mut p, n, total),
            Threads::One,
        );
        for (i, row) in p.chunks_exact_mut(total).enumerate() {
            causal_softmax(row, pos0 + i + 1);
        }
        let vh = v_head(v, kvs, s.v_width(), g);
        matmul(
            1.0,
            &mat(&p, n, total),
            &vh,
            0.0,
            &mut v_head_mut(y, qs, s.y_width(), h),
            Threads::One,
        );
    }
}
// ANCHOR_END: attention_cached

// ANCHOR: attention_backward
/// Backward of [`attention_forward`], given `dy`:
///
/// ```text
/// dP  = dy v^T                      dv += P^T dy
/// dS  = P * (dP - rowsum(P * dP))   (softmax backward, per row)
/// dq += dS k / sqrt(hs)             dk += dS^T q / sqrt(hs)
/// ```
///
/// A key/value head collects the gradients of all the query heads that read it.
/// `scratch` holds one `(T, T)` matrix per sequence. The sequences run in parallel.
///
/// # Shapes
/// as [`attention_forward`]; `dq` like `q`, `dk, dv` like `k, v`, `scratch: (B, T, T)`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    scratch: &mut [f32],
    dy: &[f32],
    att: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
) {
    let (t, qw, kw, vw, yw) = (s.t, s.q_width(), s.kv_width(), s.v_width(), s.y_width());
    let k_ = "attention_backward";
    s.check_buffers(
        k_,
        &[("q", q.len()), ("dq", dq.len()), ("dy", dy.len())],
        &[
            ("k", k.len()),
            ("v", v.len()),
            ("dk", dk.len()),
            ("dv", dv.len()),
        ],
        att.len(),
    );
    expect_len(k_, "scratch", scratch.len(), s.b * t * t, "(B, T, T)");
    let seq = AttnShape { b: 1, ..s };
    let grads = dq
        .par_chunks_mut(t * qw)
        .zip(dk.par_chunks_mut(t * kw).zip(dv.par_chunks_mut(t * vw)));
    let inputs = q
        .par_chunks(t * qw)
        .zip(k.par_chunks(t * kw).zip(v.par_chunks(t * vw)));
    let per_seq = dy
        .par_chunks(t * yw)
        .zip(att.par_chunks(s.n_heads * t * t))
        .zip(scratch.par_chunks_mut(t * t));
    grads.zip(inputs).zip(per_seq).for_each(
        |(((dq, (dk, dv)), (q, (k, v))), ((dy, att), scratch))| {
            attention_backward_one(dq, dk, dv, scratch, dy, att, q, k, v, seq)
        },
    );
}

/// [`attention_backward`] for one sequence.
#[allow(clippy::too_many_arguments)]
fn attention_backward_one(
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    ds: &mut [f32],
    dy: &[f32],
    att: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
) {
    let (t, scale) = (s.t, 1.0 / (s.head_dim as f32).sqrt());
    let (qw, kw, vw, yw) = (s.q_width(), s.kv_width(), s.v_width(), s.y_width());
    for h in 0..s.n_heads {
        let g = h / s.n_rep();
        let (qh, kh, vh) = (head(q, s, qw, h), head(k, s, kw, g), v_head(v, s, vw, g));
        let p = &att[h * t * t..][..t * t];
        let (pm, dyh) = (mat(p, t, t), v_head(dy, s, yw, h));
        // dv += P^T dy and dP = dy v^T (into the scratch), by blocks of queries
        let (mut dvh, mut dsm) = (v_head_mut(dv, s, vw, g), mat_mut(ds, t, t));
        for (r0, r1) in causal_blocks(t) {
            let (p_blk, dy_blk) = (pm.slice(s![r0..r1, ..r1]), dyh.slice(s![r0..r1, ..]));
            matmul(
                1.0,
                &p_blk.t(),
                &dy_blk,
                1.0,
                &mut dvh.slice_mut(s![..r1, ..]),
                Threads::One,
            );
            let v_seen = vh.slice(s![..r1, ..]);
            matmul(
                1.0,
                &dy_blk,
                &v_seen.t(),
                0.0,
                &mut dsm.slice_mut(s![r0..r1, ..r1]),
                Threads::One,
            );
        }
        // dS = P * (dP - rowsum(P * dP)), in place
        vectorized(|| {
            for (i, (drow, prow)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
                let seen = i + 1;
                let pdp: f32 = drow[..seen]
                    .iter()
                    .zip(&prow[..seen])
                    .map(|(d, p)| d * p)
                    .sum();
                for j in 0..seen {
                    drow[j] = prow[j] * (drow[j] - pdp);
                }
                drow[seen..].fill(0.0); // the masked scores get no gradient
            }
        });
        // dq += dS k / sqrt(hs), dk += dS^T q / sqrt(hs)
        let dsm = mat(ds, t, t);
        let (mut dqh, mut dkh) = (head_mut(dq, s, qw, h), head_mut(dk, s, kw, g));
        for (r0, r1) in causal_blocks(t) {
            let ds_blk = dsm.slice(s![r0..r1, ..r1]);
            let (k_seen, q_blk) = (kh.slice(s![..r1, ..]), qh.slice(s![r0..r1, ..]));
            matmul(
                scale,
                &ds_blk,
                &k_seen,
                1.0,
                &mut dqh.slice_mut(s![r0..r1, ..]),
                Threads::One,
            );
            matmul(
                scale,
                &ds_blk.t(),
                &q_blk,
                1.0,
                &mut dkh.slice_mut(s![..r1, ..]),
                Threads::One,
            );
        }
    }
}
// ANCHOR_END: attention_backward

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    fn grad_check(s: AttnShape, seed: u64) {
        let (nq, nkv) = (s.b * s.t * s.q_width(), s.b * s.t * s.kv_width());
        let natt = s.b * s.n_heads * s.t * s.t;
        let mut rng = Rng::new(seed);
        let sizes = [nq, nkv, nkv];
        let inputs: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        let r = randn(&mut rng, nq, 1.0);
        let f = |x: &[Vec<f32>]| {
            let (mut y, mut att) = (vec![0.0; nq], vec![0.0; natt]);
            attention_forward(&mut y, &mut att, &x[0], &x[1], &x[2], s);
            dot(&y, &r)
        };
        let (mut y, mut att) = (vec![0.0; nq], vec![0.0; natt]);
        attention_forward(&mut y, &mut att, &inputs[0], &inputs[1], &inputs[2], s);
        let init: Vec<Vec<f32>> = sizes.iter().map(|&n| randn(&mut rng, n, 1.0)).collect();
        let mut g = init.clone();
        let mut scratch = vec![f32::NAN; s.b * s.t * s.t]; // the backward must not read stale scratch
        let [dq, dk, dv] = &mut g[..] else {
            unreachable!()
        };
        attention_backward(
            dq,
            dk,
            dv,
            &mut scratch,
            &r,
            &att,
            &inputs[0],
            &inputs[1],
            &inputs[2],
            s,
        );
        check(
            &format!("attention {s:?}"),
            &inputs,
            &accumulated(&init, &g),
            f,
        );
    }

    /// The plain loops (the book's first listing) and the fast kernels agree, forward and
    /// backward, on one head of 70 positions (three causal blocks).
    #[test]
    fn plain_attention_equals_the_fast_one() {
        let (t, hs) = (70, 5);
        let s = AttnShape {
            b: 1,
            t,
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: hs,
            v_head_dim: hs,
        };
        let mut rng = Rng::new(7);
        let [q, k, v, dy] = [0, 1, 2, 3].map(|_| randn(&mut rng, t * hs, 1.0));
        let (mut y, mut p) = (vec![0.0; t * hs], vec![0.0; t * t]);
        let (mut y_plain, mut p_plain) = (vec![1.0; t * hs], vec![1.0; t * t]);
        attention_forward(&mut y, &mut p, &q, &k, &v, s);
        attention_forward_plain(&mut y_plain, &mut p_plain, &q, &k, &v, t, hs);
        let close = |a: &[f32], b: &[f32], what: &str| {
            for (i, (x, z)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - z).abs() < 1e-5 * (1.0 + z.abs()),
                    "{what}[{i}]: {x} vs {z}"
                );
            }
        };
        close(&y_plain, &y, "y");
        close(&p_plain, &p, "P");
        let mut fast = [0, 1, 2].map(|_| randn(&mut rng, t * hs, 1.0)); // += into these
        let mut plain = fast.clone();
        let mut scratch = vec![0.0; t * t];
        let [dq, dk, dv] = &mut fast;
        attention_backward(dq, dk, dv, &mut scratch, &dy, &p, &q, &k, &v, s);
        let [dq_p, dk_p, dv_p] = &mut plain;
        attention_backward_plain(dq_p, dk_p, dv_p, &dy, &p, &q, &k, &v, t, hs);
        for (name, a, b) in [
            ("dq", &plain[0], &fast[0]),
            ("dk", &plain[1], &fast[1]),
            ("dv", &plain[2], &fast[2]),
        ] {
            close(a, b, name);
        }
    }

    /// The blocked products give what one softmax per query, written out, gives.
    #[test]
    fn attention_matches_a_loop_per_query() {
        let s = AttnShape {
            b: 2,
            t: 70,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 3,
            v_head_dim: 3,
        };
        let mut rng = Rng::new(22);
        let (q, k, v) = (
            randn(&mut rng, 2 * 70 * 12, 1.0),
            randn(&mut rng, 2 * 70 * 6, 1.0),
            randn(&mut rng, 2 * 70 * 6, 1.0),
        );
        let (mut y, mut att) = (vec![0.0; 2 * 70 * 12], vec![0.0; 2 * 4 * 70 * 70]);
        attention_forward(&mut y, &mut att, &q, &k, &v, s);
        for b in 0..2 {
            for h in 0..4 {
                let g = h / 2;
                for i in 0..70 {
                    let qi = &q[(b * 70 + i) * 12 + h * 3..][..3];
                    let key = |j: usize| &k[(b * 70 + j) * 6 + g * 3..][..3];
                    let scores: Vec<f64> = (0..=i).map(|j| dot(qi, key(j)) / 3f64.sqrt()).collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..3 {
                        let want: f64 = (0..=i)
                            .map(|j| e[j] / z * v[(b * 70 + j) * 6 + g * 3 + d] as f64)
                            .sum();
                        let got = y[(b * 70 + i) * 12 + h * 3 + d] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "b {b} h {h} i {i}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// 70 positions: three blocks of queries in the causal products, the last partial.
    #[test]
    fn attention_gradients_over_several_causal_blocks() {
        grad_check(
            AttnShape {
                b: 1,
                t: 70,
                n_heads: 2,
                n_kv_heads: 1,
                head_dim: 4,
                v_head_dim: 4,
            },
            21,
        );
    }

    #[test]
    fn attention_gradients_mha_gqa_mqa() {
        for (n_kv_heads, seed) in [(4, 11), (2, 12), (1, 13)] {
            grad_check(
                AttnShape {
                    b: 2,
                    t: 5,
                    n_heads: 4,
                    n_kv_heads,
                    head_dim: 3,
                    v_head_dim: 3,
                },
                seed,
            );
        }
    }

    #[test]
    fn the_future_does_not_change_the_past() {
        let s = AttnShape {
            b: 1,
            t: 6,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 4,
            v_head_dim: 4,
        };
        let mut rng = Rng::new(14);
        let (q, mut k, mut v) = (
            randn(&mut rng, 6 * 8, 1.0),
            randn(&mut rng, 6 * 4, 1.0),
            randn(&mut rng, 6 * 4, 1.0),
        );
        let (mut y1, mut y2, mut att) = (vec![0.0; 48], vec![0.0; 48], vec![0.0; 72]);
        attention_forward(&mut y1, &mut att, &q, &k, &v, s);
        for x in k[5 * 4..].iter_mut().chain(v[5 * 4..].iter_mut()) {
            *x += 10.0; // change the last position's key and value
        }
        attention_forward(&mut y2, &mut att, &q, &k, &v, s);
        assert_eq!(&y1[..5 * 8], &y2[..5 * 8]);
        assert_ne!(&y1[5 * 8..], &y2[5 * 8..]);
        for row in att.chunks(6) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    /// Rows sum to 1 over the visible scores, the future is exactly 0, and scores of 1000
    /// do not overflow.
    #[test]
    fn causal_softmax_masks_and_normalises() {
        let mut row = [1000.0, 1000.0, f32::NAN, 5.0];
        causal_softmax(&mut row, 2);
        assert_eq!(row, [0.5, 0.5, 0.0, 0.0]);
        let mut row = [0.0, 2f32.ln(), 0.0];
        causal_softmax(&mut row, 3);
        assert!((row[1] - 0.5).abs() < 1e-6 && (row[0] - 0.25).abs() < 1e-6);
        let mut one = [-7.0, 3.0];
        causal_softmax(&mut one, 1);
        assert_eq!(one, [1.0, 0.0]);
    }

    /// GQA equals multi-head attention with each key/value head repeated n_rep times.
    #[test]
    fn gqa_is_mha_with_repeated_kv_heads() {
        let g = AttnShape {
            b: 2,
            t: 4,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 3,
            v_head_dim: 3,
        };
        let m = AttnShape { n_kv_heads: 4, ..g };
        let mut rng = Rng::new(15);
        let (q, k, v) = (
            randn(&mut rng, 2 * 4 * 12, 1.0),
            randn(&mut rng, 2 * 4 * 6, 1.0),
            randn(&mut rng, 2 * 4 * 6, 1.0),
        );
        // repeat_kv: heads [a, b] -> [a, a, b, b]
        let repeat = |x: &[f32]| -> Vec<f32> {
            x.chunks(6)
                .flat_map(|pos| [&pos[..3], &pos[..3], &pos[3..], &pos[3..]].concat())
                .collect()
        };
        let (mut yg, mut ym, mut att) = (vec![0.0; 96], vec![0.0; 96], vec![0.0; 2 * 4 * 16]);
        attention_forward(&mut yg, &mut att, &q, &k, &v, g);
        attention_forward(&mut ym, &mut att, &q, &repeat(&k), &repeat(&v), m);
        for (a, b) in yg.iter().zip(&ym) {
            assert!((a - b).abs() < 1e-6);
        }
    }
}
