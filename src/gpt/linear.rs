//! The linear layer, `y = x W^T`, and the matrix products every other layer is built on.
//!
//! Weights are stored as PyTorch and Hugging Face store them, `(out, in)`: row `o` of `W`
//! is the vector that output `o` is a dot product with. The products go through ndarray's
//! `general_mat_mul` (the `matrixmultiply` kernels), which reads the slices in place with
//! any strides, so a transpose costs nothing. The products are split across threads
//! (rayon) by rows of the output, so each thread writes its own rows: `y` and `dx` by
//! rows of the batch, `dW` by output features.
//!
//! ```
//! use llm_lessons::gpt::linear::linear_forward;
//! // x = [1, 2], W = [[1, 0], [0, 1], [1, 1]]: y = [1, 2, 3]
//! let mut y = [0.0; 3];
//! linear_forward(&mut y, &[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 1, 2, 3);
//! assert_eq!(y, [1.0, 2.0, 3.0]);
//! ```

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;

/// Rows per parallel task when `rows` rows are split across the threads: one block per
/// thread, and none smaller than 16 rows (below that, splitting costs more than it saves).
pub fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads()).max(16)
}

/// A `(rows, cols)` row-major matrix over a slice.
///
/// # Panics
/// If the slice does not hold `rows * cols` numbers.
pub fn mat(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    assert_eq!(data.len(), rows * cols, "matrix of {rows} x {cols}");
    ArrayView2::from_shape((rows, cols), data).expect("length checked")
}

/// A mutable `(rows, cols)` row-major matrix over a slice.
///
/// # Panics
/// If the slice does not hold `rows * cols` numbers.
pub fn mat_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    assert_eq!(data.len(), rows * cols, "matrix of {rows} x {cols}");
    ArrayViewMut2::from_shape((rows, cols), data).expect("length checked")
}

/// A `(rows, cols)` matrix whose rows are `row_stride` apart, starting at `data[0]`: one
/// head's slice `(T, hs)` of a `(T, n_heads * hs)` tensor, with no copy.
///
/// # Panics
/// If the slice is too short for the last row.
pub fn strided(data: &[f32], rows: usize, cols: usize, row_stride: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols).strides((row_stride, 1)), data)
        .expect("slice long enough for the strided matrix")
}

/// The mutable form of [`strided`].
pub fn strided_mut(
    data: &mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols).strides((row_stride, 1)), data)
        .expect("slice long enough for the strided matrix")
}

/// Up to this many rows, [`linear_forward`] computes dot products instead of calling the
/// matrix kernels.
const GEMV_ROWS: usize = 4;

/// `sum_i a_i b_i` (the crate's portable kernel: eight independent sums that the compiler
/// turns into SIMD lanes).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    use crate::simd::{Kernel, Portable};
    Portable.dot(a, b)
}

// ANCHOR: linear
/// `y = x W^T`: each of the `n` rows of `x` times the transpose of `W`.
///
/// # Shapes
/// `x: (n, d_in)`, `w: (d_out, d_in)`, `y: (n, d_out)` (overwritten).
pub fn linear_forward(y: &mut [f32], x: &[f32], w: &[f32], n: usize, d_in: usize, d_out: usize) {
    assert_eq!(
        (y.len(), x.len()),
        (n * d_out, n * d_in),
        "linear: y is (n, d_out), x (n, d_in)"
    );
    if n <= GEMV_ROWS {
        // a token or a few (generation): dot products straight from W's rows, since the
        // matrix kernels would first copy ("pack") all of W for so little work
        for (y, x) in y.chunks_exact_mut(d_out).zip(x.chunks_exact(d_in)) {
            for (y, w_o) in y.iter_mut().zip(w.chunks_exact(d_in)) {
                *y = dot(x, w_o);
            }
        }
        return;
    }
    let w = mat(w, d_out, d_in);
    let rows = rows_per_task(n);
    y.par_chunks_mut(rows * d_out)
        .zip(x.par_chunks(rows * d_in))
        .for_each(|(y, x)| {
            let m = x.len() / d_in; // this task's rows
            general_mat_mul(
                1.0,
                &mat(x, m, d_in),
                &w.t(),
                0.0,
                &mut mat_mut(y, m, d_out),
            );
        });
}

/// Backward of [`linear_forward`], given `dy = dL/dy`:
/// `dx += dy W` and `dW += dy^T x` (accumulated).
///
/// # Shapes
/// `dy: (n, d_out)`, `x: (n, d_in)`, `w: (d_out, d_in)`; `dx` like `x`, `dw` like `w`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    dx: &mut [f32],
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    assert_eq!(
        (dy.len(), x.len()),
        (n * d_out, n * d_in),
        "linear: dy is (n, d_out), x (n, d_in)"
    );
    let (w, x, dy_all) = (mat(w, d_out, d_in), mat(x, n, d_in), mat(dy, n, d_out));
    // y_no = sum_i x_ni W_oi, so dL/dx_ni = sum_o dy_no W_oi: dx += dy W, by rows of dx ...
    let rows = rows_per_task(n);
    dx.par_chunks_mut(rows * d_in)
        .zip(dy.par_chunks(rows * d_out))
        .for_each(|(dx, dy)| {
            let m = dy.len() / d_out;
            general_mat_mul(1.0, &mat(dy, m, d_out), &w, 1.0, &mut mat_mut(dx, m, d_in));
        });
    // ... and dL/dW_oi = sum_n dy_no x_ni: dW += dy^T x, by rows (output features) of dW
    let outs = rows_per_task(d_out);
    dw.par_chunks_mut(outs * d_in)
        .enumerate()
        .for_each(|(i, dw)| {
            let (o0, m) = (i * outs, dw.len() / d_in);
            let dy_cols = dy_all.slice(s![.., o0..o0 + m]);
            general_mat_mul(1.0, &dy_cols.t(), &x, 1.0, &mut mat_mut(dw, m, d_in));
        });
}
// ANCHOR_END: linear

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpt::gradcheck::{accumulated, check, dot, randn, Rng};

    #[test]
    fn linear_matches_a_hand_product() {
        // x = [[1, 2], [3, 4]], W = [[1, 1], [0, 2], [-1, 0]]
        let mut y = [0.0; 6];
        linear_forward(
            &mut y,
            &[1., 2., 3., 4.],
            &[1., 1., 0., 2., -1., 0.],
            2,
            2,
            3,
        );
        assert_eq!(y, [3., 4., -1., 7., 8., -3.]);
    }

    /// Uneven sizes, so that the rows split into unequal blocks across the threads; and 3
    /// rows, which take the dot-product path.
    #[test]
    fn linear_matches_loops_on_uneven_blocks() {
        for n in [67, 3] {
            linear_matches_loops(n, 19, 37);
        }
    }

    fn linear_matches_loops(n: usize, d_in: usize, d_out: usize) {
        let mut rng = Rng::new(19);
        let (x, w, dy) = (
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, d_out * d_in, 1.0),
            randn(&mut rng, n * d_out, 1.0),
        );
        let mut y = vec![0.0; n * d_out];
        linear_forward(&mut y, &x, &w, n, d_in, d_out);
        let (mut dx, mut dw) = (vec![1.0; n * d_in], vec![1.0; d_out * d_in]);
        linear_backward(&mut dx, &mut dw, &dy, &x, &w, n, d_in, d_out);
        let close = |a: f32, b: f64| assert!((a as f64 - b).abs() < 1e-4, "{a} {b}");
        for r in 0..n {
            for o in 0..d_out {
                close(
                    y[r * d_out + o],
                    (0..d_in)
                        .map(|i| (x[r * d_in + i] * w[o * d_in + i]) as f64)
                        .sum(),
                );
            }
            for i in 0..d_in {
                close(
                    dx[r * d_in + i],
                    1.0 + (0..d_out)
                        .map(|o| (dy[r * d_out + o] * w[o * d_in + i]) as f64)
                        .sum::<f64>(),
                );
            }
        }
        for o in 0..d_out {
            for i in 0..d_in {
                close(
                    dw[o * d_in + i],
                    1.0 + (0..n)
                        .map(|r| (dy[r * d_out + o] * x[r * d_in + i]) as f64)
                        .sum::<f64>(),
                );
            }
        }
    }

    #[test]
    fn linear_gradients() {
        let (n, d_in, d_out) = (5, 4, 3);
        let mut rng = Rng::new(1);
        let inputs = vec![
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, d_out * d_in, 1.0),
        ];
        let r = randn(&mut rng, n * d_out, 1.0);
        let f = |v: &[Vec<f32>]| {
            let mut y = vec![0.0; n * d_out];
            linear_forward(&mut y, &v[0], &v[1], n, d_in, d_out);
            dot(&y, &r)
        };
        let init = vec![
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, d_out * d_in, 1.0),
        ];
        let mut g = init.clone();
        let (dx, dw) = g.split_at_mut(1);
        linear_backward(
            &mut dx[0], &mut dw[0], &r, &inputs[0], &inputs[1], n, d_in, d_out,
        );
        check("linear", &inputs, &accumulated(&init, &g), f);
    }
}
