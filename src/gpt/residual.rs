//! The residual connection, `out = x + f(x)`. Its backward is why deep transformers train:
//! the gradient reaches `x` unchanged, whatever the branch `f` does to it.
//!
//! ```
//! use llm_lessons::gpt::residual::residual_forward;
//! let mut out = [0.0; 2];
//! residual_forward(&mut out, &[1.0, 2.0], &[0.5, -1.0]);
//! assert_eq!(out, [1.5, 1.0]);
//! ```

use super::shapes::expect_len;
use rayon::prelude::*;

// ANCHOR: residual
/// `out = a + b`.
///
/// # Shapes
/// `a`, `b`, `out`: the same length (usually `(B, T, C)`).
pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    let k = "residual_forward";
    expect_len(k, "a", a.len(), out.len(), "(N)");
    expect_len(k, "b", b.len(), out.len(), "(N)");
    let blocks = out
        .par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK));
    blocks.for_each(|((o, a), b)| {
        for ((o, x), y) in o.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    });
}

/// Backward of [`residual_forward`]: `da += dout`, `db += dout`.
pub fn residual_backward(da: &mut [f32], db: &mut [f32], dout: &[f32]) {
    let k = "residual_backward";
    expect_len(k, "da", da.len(), dout.len(), "(N)");
    expect_len(k, "db", db.len(), dout.len(), "(N)");
    add_into(da, dout);
    add_into(db, dout);
}
// ANCHOR_END: residual

/// `acc += x`, element by element.
pub fn add_into(acc: &mut [f32], x: &[f32]) {
    let k = "add_into";
    expect_len(k, "x", x.len(), acc.len(), "(N)");
    acc.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(acc, x)| {
            for (a, g) in acc.iter_mut().zip(x) {
                *a += g;
            }
        });
}

/// Numbers per parallel task in these element-by-element loops: fewer are not worth
/// another thread, and within a task the loop is vectorized.
const CHUNK: usize = 1 << 14;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn residual_gradients() {
        let mut rng = Rng::new(4);
        let inputs = vec![randn(&mut rng, 12, 1.0), randn(&mut rng, 12, 1.0)];
        let r = randn(&mut rng, 12, 1.0);
        let f = |x: &[Vec<f32>]| {
            let mut out = vec![0.0; 12];
            residual_forward(&mut out, &x[0], &x[1]);
            dot(&out, &r)
        };
        let init = vec![randn(&mut rng, 12, 1.0), randn(&mut rng, 12, 1.0)];
        let mut g = init.clone();
        let (da, db) = g.split_at_mut(1);
        residual_backward(&mut da[0], &mut db[0], &r);
        check("residual", &inputs, &accumulated(&init, &g), f);
    }
}
