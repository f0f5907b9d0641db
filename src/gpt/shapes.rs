//! Length checks at the top of every public kernel. The kernels walk their buffers with
//! `zip` over row chunks, which would silently stop at the shortest one: a wrong buffer
//! from a learner would give wrong numbers instead of an error. These checks turn that
//! into a panic that names the kernel, the buffer and both lengths.

/// Panics unless `buf` holds `want` values, saying which kernel and buffer disagree.
#[track_caller]
pub fn expect_len(kernel: &str, buf: &str, got: usize, want: usize, shape: &str) {
    assert!(
        got == want,
        "{kernel}: `{buf}` has {got} values, but its shape {shape} needs {want}"
    );
}

/// The number of rows of width `c` in `x`, panicking if `x` is not a whole number of rows.
#[track_caller]
pub fn rows_of(kernel: &str, buf: &str, len: usize, c: usize) -> usize {
    assert!(
        c > 0 && len % c == 0,
        "{kernel}: `{buf}` has {len} values, not a whole number of rows of width {c}"
    );
    len / c
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "layer_norm_forward: `w` has 3 values, but its shape (C) needs 4")]
    fn a_wrong_buffer_is_named() {
        let (mut y, mut mean, mut rstd) = (vec![0.0; 8], vec![0.0; 2], vec![0.0; 2]);
        let x = vec![1.0; 8];
        crate::gpt::norm::layer_norm_forward(
            &mut y, &mut mean, &mut rstd, &x, &[1.0; 3], &[0.0; 4], 4, 1e-5,
        );
    }

    #[test]
    #[should_panic(expected = "residual_forward: `b` has 5 values, but its shape (N) needs 6")]
    fn element_wise_kernels_check_too() {
        let mut out = vec![0.0; 6];
        crate::gpt::residual::residual_forward(&mut out, &[1.0; 6], &[1.0; 5]);
    }

    #[test]
    #[should_panic(expected = "cross_entropy_forward: `targets` has 3 values")]
    fn the_loss_checks_its_targets() {
        let (mut probs, mut losses) = (vec![0.0; 8], vec![0.0; 2]);
        crate::gpt::loss::cross_entropy_forward(&mut probs, &mut losses, &[0.0; 8], &[0, 1, 2], 4);
    }

    #[test]
    #[should_panic(
        expected = "attention_forward: `k` has 4 values, but its shape (B, T, n_kv_heads, hs) needs 8"
    )]
    fn attention_checks_its_keys() {
        use crate::gpt::attention::{attention_forward, AttnShape};
        let shape = AttnShape {
            b: 1,
            t: 2,
            n_heads: 2,
            n_kv_heads: 2,
            head_dim: 2,
            v_head_dim: 2,
        };
        let (mut y, mut att) = (vec![0.0; 8], vec![0.0; 8]);
        attention_forward(&mut y, &mut att, &[0.0; 8], &[0.0; 4], &[0.0; 8], shape);
    }
}
