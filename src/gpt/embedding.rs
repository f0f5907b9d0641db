//! Token and position embeddings: a lookup of one row per token id, and (GPT-2) a learned
//! row per position added to it. The backward of a lookup adds each row's gradient back
//! into the row it was read from; a token seen twice collects both.
//!
//! ```
//! use llm_lessons::gpt::embedding::embedding_forward;
//! let wte = [0.0, 0.0, 1.0, 2.0, 3.0, 4.0]; // 3 tokens, C = 2
//! let mut out = [0.0; 4];
//! embedding_forward(&mut out, &[2, 1], &wte, 2);
//! assert_eq!(out, [3.0, 4.0, 1.0, 2.0]);
//! ```

use super::shapes::{expect_len, rows_of};

/// Panics unless the activations are whole sequences of `t` rows of width `c` and the
/// position table has at least `t` rows.
#[track_caller]
fn check_positions(kernel: &str, acts: (&str, usize), table: (&str, usize), t: usize, c: usize) {
    rows_of(kernel, acts.0, acts.1, t * c);
    assert!(
        table.1 >= t * c,
        "{kernel}: `{}` has {} values, fewer than T × C = {}",
        table.0,
        table.1,
        t * c
    );
}

/// Panics naming the first id that is not a row of the table.
#[track_caller]
fn check_ids(kernel: &str, ids: &[u32], rows: usize) {
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= rows) {
        panic!("{kernel}: token id {id} is not below the vocabulary size {rows}");
    }
}

// ANCHOR: embedding
/// `out[n] = wte[ids[n]]`.
///
/// # Shapes
/// `ids: (N)`, `wte: (V, C)`, `out: (N, C)` (overwritten).
///
/// # Panics
/// If an id is `V` or more; [`crate::gpt::Gpt`] checks ids before it gets here.
pub fn embedding_forward(out: &mut [f32], ids: &[u32], wte: &[f32], c: usize) {
    let k = "embedding_forward";
    expect_len(k, "out", out.len(), ids.len() * c, "(N, C)");
    check_ids(k, ids, rows_of(k, "wte", wte.len(), c));
    for (row, &id) in out.chunks_exact_mut(c).zip(ids) {
        let id = id as usize;
        row.copy_from_slice(&wte[id * c..(id + 1) * c]);
    }
}

/// Backward of [`embedding_forward`]: `dwte[ids[n]] += dout[n]`.
///
/// # Shapes
/// `dout: (N, C)`, `ids: (N)`, `dwte: (V, C)`.
pub fn embedding_backward(dwte: &mut [f32], dout: &[f32], ids: &[u32], c: usize) {
    let k = "embedding_backward";
    expect_len(k, "dout", dout.len(), ids.len() * c, "(N, C)");
    check_ids(k, ids, rows_of(k, "dwte", dwte.len(), c));
    for (row, &id) in dout.chunks_exact(c).zip(ids) {
        let id = id as usize;
        for (d, g) in dwte[id * c..(id + 1) * c].iter_mut().zip(row) {
            *d += g;
        }
    }
}
// ANCHOR_END: embedding

// ANCHOR: position
/// Adds the learned position vectors: `out[b, t] += wpe[t]`.
///
/// # Shapes
/// `out: (B, T, C)`, `wpe: (context, C)` with `T <= context`.
pub fn position_embedding_forward(out: &mut [f32], wpe: &[f32], t: usize, c: usize) {
    check_positions(
        "position_embedding_forward",
        ("out", out.len()),
        ("wpe", wpe.len()),
        t,
        c,
    );
    for seq in out.chunks_exact_mut(t * c) {
        for (o, p) in seq.iter_mut().zip(&wpe[..t * c]) {
            *o += p;
        }
    }
}

/// Backward of [`position_embedding_forward`]: `dwpe[t] += sum_b dout[b, t]`.
///
/// # Shapes
/// `dout: (B, T, C)`, `dwpe: (context, C)`.
pub fn position_embedding_backward(dwpe: &mut [f32], dout: &[f32], t: usize, c: usize) {
    check_positions(
        "position_embedding_backward",
        ("dout", dout.len()),
        ("dwpe", dwpe.len()),
        t,
        c,
    );
    for seq in dout.chunks_exact(t * c) {
        for (d, g) in dwpe[..t * c].iter_mut().zip(seq) {
            *d += g;
        }
    }
}
// ANCHOR_END: position

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn embedding_gradients() {
        let (v, c) = (5, 3);
        let ids = [4u32, 1, 4, 0, 2, 4]; // 4 three times, 3 never
        let mut rng = Rng::new(2);
        let inputs = vec![randn(&mut rng, v * c, 1.0)];
        let r = randn(&mut rng, ids.len() * c, 1.0);
        let f = |x: &[Vec<f32>]| {
            let mut out = vec![0.0; ids.len() * c];
            embedding_forward(&mut out, &ids, &x[0], c);
            dot(&out, &r)
        };
        let init = vec![randn(&mut rng, v * c, 1.0)];
        let mut g = init.clone();
        embedding_backward(&mut g[0], &r, &ids, c);
        let added = accumulated(&init, &g);
        assert!(
            added[0][3 * c..4 * c].iter().all(|&d| d.abs() < 1e-6),
            "unseen id: no gradient"
        );
        check("embedding", &inputs, &added, f);
    }

    #[test]
    fn position_embedding_gradients() {
        let (b, t, ctx, c) = (3, 4, 6, 2);
        let mut rng = Rng::new(3);
        let inputs = vec![
            randn(&mut rng, b * t * c, 1.0),
            randn(&mut rng, ctx * c, 1.0),
        ];
        let r = randn(&mut rng, b * t * c, 1.0);
        let f = |x: &[Vec<f32>]| {
            let mut out = x[0].clone();
            position_embedding_forward(&mut out, &x[1], t, c);
            dot(&out, &r)
        };
        let init = vec![
            randn(&mut rng, b * t * c, 1.0),
            randn(&mut rng, ctx * c, 1.0),
        ];
        let mut g = init.clone();
        // out = x + wpe: dx += dout (the residual rule), dwpe += sum over the batch
        crate::gpt::residual::add_into(&mut g[0], &r);
        position_embedding_backward(&mut g[1], &r, t, c);
        let added = accumulated(&init, &g);
        assert!(
            added[1][t * c..].iter().all(|&d| d.abs() < 1e-6),
            "positions past T: none"
        );
        check("position embedding", &inputs, &added, f);
    }
}
