//! The linear layer, `y = x W^T`, and the matrix products every other layer is built on.
//!
//! Weights are stored as PyTorch and Hugging Face store them, `(out, in)`: row `o` of `W`
//! is the vector that output `o` is a dot product with. The products go through
//! [`matmul`], which reads ndarray views of the slices in place with any strides, so a
//! transpose costs nothing, and hands them to the `gemm` crate's kernels. `gemm` splits
//! each product across the threads itself (rayon), by blocks of the output, so that the
//! threads share one packed copy of the right-hand matrix; each output value is summed by
//! one thread in a fixed order, so a result does not depend on the scheduling.
//!
//! ```
//! use llm_lessons::gpt::linear::linear_forward;
//! // x = [1, 2], W = [[1, 0], [0, 1], [1, 1]]: y = [1, 2, 3]
//! let mut y = [0.0; 3];
//! linear_forward(&mut y, &[1.0, 2.0], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 1, 2, 3);
//! assert_eq!(y, [1.0, 2.0, 3.0]);
//! ```

use super::lora::LoraAdapter;
use super::params::Tensor;
use super::shapes::rows_of;
use crate::Result;
use gemm::Parallelism;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

/// Whether [`matmul`] may split a product across the threads: [`Threads::One`] inside a
/// task that already runs in parallel with others (attention's sequences).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    One,
    All,
}

/// `c = alpha a b + beta c`, with `beta` 0 (overwrite `c`) or 1 (add into `c`), like
/// ndarray's `general_mat_mul`, on the `gemm` crate's kernels.
///
/// # Shapes
/// `a: (m, k)`, `b: (k, n)`, `c: (m, n)`, any strides (a transposed view is free).
///
/// # Panics
/// If the shapes do not match or `beta` is neither 0 nor 1.
pub fn matmul(
    alpha: f32,
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
    threads: Threads,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert!(
        k == k2 && c.dim() == (m, n),
        "matmul: (m, k) (k, n) -> (m, n)"
    );
    assert!(beta == 0.0 || beta == 1.0, "matmul: beta is 0 or 1");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        }
        return;
    }
    let parallelism = match threads {
        Threads::One => Parallelism::None,
        Threads::All => Parallelism::Rayon(0),
    };
    let rows_cols = |strides: &[isize]| (strides[0], strides[1]);
    let ((a_rs, a_cs), (b_rs, b_cs)) = (rows_cols(a.strides()), rows_cols(b.strides()));
    let (c_rs, c_cs) = rows_cols(c.strides());
    // SAFETY: the three views are valid for their shapes and strides, and `c`, borrowed
    // mutably, overlaps neither input. gemm's `dst = alpha dst + beta lhs rhs` names the
    // scales the other way round: its `alpha` is our `beta`, read only if `read_dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            beta == 1.0,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
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
    let (x, w) = (mat(x, n, d_in), mat(w, d_out, d_in));
    matmul(
        1.0,
        &x,
        &w.t(),
        0.0,
        &mut mat_mut(y, n, d_out),
        Threads::All,
    );
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
    let (w, x, dy) = (mat(w, d_out, d_in), mat(x, n, d_in), mat(dy, n, d_out));
    // y_no = sum_i x_ni W_oi, so dL/dx_ni = sum_o dy_no W_oi: dx += dy W ...
    matmul(1.0, &dy, &w, 1.0, &mut mat_mut(dx, n, d_in), Threads::All);
    // ... and dL/dW_oi = sum_n dy_no x_ni: dW += dy^T x
    matmul(
        1.0,
        &dy.t(),
        &x,
        1.0,
        &mut mat_mut(dw, d_out, d_in),
        Threads::All,
    );
}
// ANCHOR_END: linear

/// `dx += dy W`: the input's part of [`linear_backward`], alone, for a frozen weight
/// (fine-tuning through a frozen base still needs the gradient of its input).
pub fn linear_backward_input(
    dx: &mut [f32],
    dy: &[f32],
    w: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    let (w, dy) = (mat(w, d_out, d_in), mat(dy, n, d_out));
    matmul(1.0, &dy, &w, 1.0, &mut mat_mut(dx, n, d_in), Threads::All);
}

// ANCHOR: layer
/// How a linear layer stores its weight, `(d_out, d_in)`. Chapter 4 trains in f32; later
/// chapters add formats (an adapter, quantized blocks) in their own files.
#[derive(Clone, Debug, PartialEq)]
pub enum Weight {
    F32(Tensor),
    /// Quantized blocks (chapter 6, [`super::quant`]): inference only, never trained.
    Quant(crate::quant::matrix::QMatrix),
}

/// A linear layer, `y = x W^T`, that owns its weight and knows its dimensions; with a
/// LoRA adapter (chapter 5, [`super::lora`]), `y = x W^T + s (x A^T) B^T`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub d_in: usize,
    pub d_out: usize,
    pub weight: Weight,
    pub adapter: Option<LoraAdapter>,
}

impl Linear {
    /// A trainable `(d_out, d_in)` layer of zeros.
    pub fn zeros(d_in: usize, d_out: usize) -> Self {
        Linear {
            d_in,
            d_out,
            weight: Weight::F32(Tensor::zeros(&[d_out, d_in])),
            adapter: None,
        }
    }

    /// A trainable layer over an f32 weight `(d_out, d_in)`, row-major.
    pub fn from_f32(d_in: usize, d_out: usize, w: Vec<f32>) -> Result<Self> {
        Ok(Linear {
            d_in,
            d_out,
            weight: Weight::F32(Tensor::from_vec(&[d_out, d_in], w)?),
            adapter: None,
        })
    }

    /// The f32 weight.
    ///
    /// # Panics
    /// If the weight is quantized; [`Linear::as_f32`] asks instead.
    pub fn f32(&self) -> &Tensor {
        self.as_f32()
            .expect("Linear::f32 on a quantized weight (use as_f32, or dequantize it)")
    }

    /// The f32 weight, to change.
    ///
    /// # Panics
    /// If the weight is quantized; [`Linear::as_f32_mut`] asks instead.
    pub fn f32_mut(&mut self) -> &mut Tensor {
        self.as_f32_mut()
            .expect("Linear::f32_mut on a quantized weight (use as_f32_mut)")
    }

    /// The f32 weight, or `None` if it is quantized.
    pub fn as_f32(&self) -> Option<&Tensor> {
        match &self.weight {
            Weight::F32(w) => Some(w),
            Weight::Quant(_) => None,
        }
    }

    /// The f32 weight to change, or `None` if it is quantized.
    pub fn as_f32_mut(&mut self) -> Option<&mut Tensor> {
        match &mut self.weight {
            Weight::F32(w) => Some(w),
            Weight::Quant(_) => None,
        }
    }

    /// `y = x W^T` for the rows of `x`, `(n, d_in)`; `y` is `(n, d_out)`.
    pub fn forward(&self, y: &mut [f32], x: &[f32]) {
        let n = rows_of("Linear::forward", "x", x.len(), self.d_in);
        match &self.weight {
            Weight::F32(w) => linear_forward(y, x, w, n, self.d_in, self.d_out),
            Weight::Quant(q) => q.matmul(y, x, n),
        }
        if let Some(adapter) = &self.adapter {
            adapter.forward_add(y, x);
        }
    }

    /// Backward of [`Linear::forward`]: `dx += dy W`, and `dW += dy^T x` into `grad` if the
    /// weight is trainable (a frozen weight's gradient holds no values).
    ///
    /// # Panics
    /// If the weight is quantized: [`super::Gpt::backward`] and the trainer refuse such a
    /// model first, with an error naming the layer ([`super::Params::check_f32`]).
    pub fn backward(&self, dx: &mut [f32], grad: &mut Linear, dy: &[f32], x: &[f32]) {
        let (d_in, d_out) = (self.d_in, self.d_out);
        let n = rows_of("Linear::backward", "x", x.len(), d_in);
        match (&self.weight, &mut grad.weight) {
            (Weight::F32(w), Weight::F32(dw)) if w.trainable => {
                linear_backward(dx, dw, dy, x, w, n, d_in, d_out)
            }
            (Weight::F32(w), _) => linear_backward_input(dx, dy, w, n, d_in, d_out),
            (Weight::Quant(_), _) => {
                panic!("backward through a quantized weight: quantized weights are for inference")
            }
        }
        if let (Some(adapter), Some(g)) = (&self.adapter, &mut grad.adapter) {
            adapter.backward(dx, g, dy, x);
        }
    }
}
// ANCHOR_END: layer

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

    /// Uneven sizes, which leave partial blocks in the kernels; a product large enough
    /// for `gemm` to split across the threads; and 3 rows, which take the dot-product path.
    #[test]
    fn linear_matches_loops_on_uneven_blocks() {
        for (n, d_in, d_out) in [(67, 19, 37), (301, 70, 93), (3, 19, 37)] {
            linear_matches_loops(n, d_in, d_out);
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

    /// A frozen layer passes the gradient to its input and leaves its own untouched.
    #[test]
    fn a_frozen_linear_gives_only_the_input_gradient() {
        let mut rng = Rng::new(4);
        let (n, d_in, d_out) = (6, 5, 3);
        let mut layer = Linear::from_f32(d_in, d_out, randn(&mut rng, d_out * d_in, 1.0)).unwrap();
        let (x, dy) = (
            randn(&mut rng, n * d_in, 1.0),
            randn(&mut rng, n * d_out, 1.0),
        );
        let mut grad = Linear::zeros(d_in, d_out);
        let mut dx = vec![0.0; n * d_in];
        layer.backward(&mut dx, &mut grad, &dy, &x);
        assert!(grad.f32().iter().any(|&g| g != 0.0));
        let w = layer.f32_mut();
        w.trainable = false;
        let mut frozen_grad = Linear::zeros(d_in, d_out);
        let g = frozen_grad.f32_mut();
        g.data = Vec::new(); // what Params::grads gives a frozen tensor
        let mut dx_frozen = vec![0.0; n * d_in];
        layer.backward(&mut dx_frozen, &mut frozen_grad, &dy, &x);
        assert_eq!(dx, dx_frozen);
        assert!(frozen_grad.f32().is_empty());
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
