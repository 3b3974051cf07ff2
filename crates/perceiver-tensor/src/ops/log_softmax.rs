//! `log_softmax` along an axis, fused: `x - max - log Σ exp(x - max)`. The rule saves the
//! output: `dx = g - exp(y) · Σ g`.

use super::softmax::{rows_map, rows_zip};
use crate::autograd::{record, Backward};
use crate::layout::check_axis;
use crate::{Result, Tensor};
use perceiver_kernels as kernels;

#[inline(always)]
pub(crate) fn log_softmax_row(x: &[f32], y: &mut [f32]) {
    let m = kernels::max(x);
    let m = if m == f32::NEG_INFINITY { 0.0 } else { m };
    y.copy_from_slice(x);
    let s = kernels::exp_shift_sum(y, m);
    let lse = m + s.ln();
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x - lse;
    }
}

struct LogSoftmaxBackward {
    y: Tensor,
}

impl Backward for LogSoftmaxBackward {
    fn name(&self) -> &'static str {
        "log_softmax"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let len = *g.shape().last().unwrap_or(&1);
        let y = self.y.contiguous_data();
        let gd = g.contiguous_data();
        let dx = rows_zip(&gd, &y, len, |g, y, dx| {
            let s = kernels::sum(g);
            for i in 0..dx.len() {
                dx[i] = g[i] - kernels::fast_exp(y[i]) * s;
            }
        });
        vec![Some(Tensor::from_parts(dx, g.shape()))]
    }
}

impl Tensor {
    /// Log-softmax along `axis`.
    #[track_caller]
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        check_axis("log_softmax", axis, self.shape())?;
        let last = self.rank() - 1;
        if axis != last {
            return self
                .transpose(axis, last)?
                .log_softmax(last)?
                .transpose(axis, last);
        }
        let len = self.shape()[last];
        let x = self.contiguous_data();
        let out = Tensor::from_parts(rows_map(&x, len, log_softmax_row), self.shape());
        let y = out.detach();
        Ok(record(out, &[self], |_| LogSoftmaxBackward { y }))
    }
}
