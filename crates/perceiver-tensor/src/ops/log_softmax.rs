//! `log_softmax` along an axis, fused: `x - max - log Σ exp(x - max)`. The rule saves the
//! output: `dx = g - exp(y) · Σ g`.

use super::softmax::{exp_shifted, rows_grad, rowwise};
use crate::{Result, Tensor};
use perceiver_kernels as kernels;

#[inline(always)]
pub(crate) fn log_softmax_row(x: &[f32], y: &mut [f32]) {
    let (m, s) = exp_shifted(x, y);
    let lse = m + s.ln();
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x - lse;
    }
}

struct LogSoftmaxBackward {
    y: Tensor,
}

backward!(LogSoftmaxBackward, "log_softmax", |saved, g, _needs| {
    let dx = rows_grad(g, &saved.y, |g, y, dx| {
        let s = kernels::sum(g);
        for i in 0..dx.len() {
            dx[i] = g[i] - kernels::fast_exp(y[i]) * s;
        }
    });
    vec![Some(dx)]
});

impl Tensor {
    /// Log-softmax along `axis`.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        rowwise("log_softmax", self, axis, log_softmax_row, |y| {
            LogSoftmaxBackward { y }
        })
    }
}
