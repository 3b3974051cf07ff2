//! `softmax` along an axis, fused and numerically stable (the row maximum is subtracted before
//! `exp`). The rule saves the output: `dx = y · (g - Σ g·y)`.

use crate::autograd::{record, Backward};
use crate::layout::check_axis;
use crate::{Result, Tensor};
use perceiver_kernels as kernels;
use rayon::prelude::*;

/// Applies `f(input_row, output_row)` to every row of length `len`, in parallel when large.
pub(crate) fn rows_map(
    x: &[f32],
    len: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if len == 0 {
        return out;
    }
    if x.len() >= kernels::PAR_THRESHOLD {
        let rows = (8192 / len).max(1);
        out.par_chunks_mut(rows * len)
            .zip(x.par_chunks(rows * len))
            .for_each(|(o, x)| {
                perceiver_kernels::simd!({
                    for (o, x) in o.chunks_mut(len).zip(x.chunks(len)) {
                        f(x, o)
                    }
                })
            });
    } else {
        perceiver_kernels::simd!({
            for (o, x) in out.chunks_mut(len).zip(x.chunks(len)) {
                f(x, o)
            }
        });
    }
    out
}

/// Two-input variant of [`rows_map`].
pub(crate) fn rows_zip(
    a: &[f32],
    b: &[f32],
    len: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    if len == 0 {
        return out;
    }
    if a.len() >= kernels::PAR_THRESHOLD {
        let rows = (8192 / len).max(1);
        out.par_chunks_mut(rows * len)
            .zip(a.par_chunks(rows * len).zip(b.par_chunks(rows * len)))
            .for_each(|(o, (a, b))| {
                perceiver_kernels::simd!({
                    for ((o, a), b) in o.chunks_mut(len).zip(a.chunks(len)).zip(b.chunks(len)) {
                        f(a, b, o)
                    }
                })
            });
    } else {
        perceiver_kernels::simd!({
            for ((o, a), b) in out.chunks_mut(len).zip(a.chunks(len)).zip(b.chunks(len)) {
                f(a, b, o)
            }
        });
    }
    out
}

/// The row op `row` applied to every lane of `x` along `axis` (moved last and back when it is
/// not the last), recorded with the rule `rule(y)` built from the detached output `y`.
#[track_caller]
pub(crate) fn rowwise<B: Backward + 'static>(
    op: &'static str,
    x: &Tensor,
    axis: usize,
    row: impl Fn(&[f32], &mut [f32]) + Sync + Send + Copy,
    rule: impl FnOnce(Tensor) -> B,
) -> Result<Tensor> {
    check_axis(op, axis, x.shape())?;
    let last = x.rank() - 1;
    if axis != last {
        return rowwise(op, &x.transpose(axis, last)?, last, row, rule)?.transpose(axis, last);
    }
    let len = x.shape()[last];
    let data = x.contiguous_data();
    let out = Tensor::from_parts(rows_map(&data, len, row), x.shape());
    let y = out.detach();
    Ok(record(out, &[x], |_| rule(y)))
}

/// The input gradient of a row op along the last axis whose rule reads the saved output `y`:
/// `row(g, y, dx)` fills one row `dx` from the rows of the output gradient `g` and of `y`.
pub(crate) fn rows_grad(
    g: &Tensor,
    y: &Tensor,
    row: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) -> Tensor {
    let len = *g.shape().last().unwrap_or(&1);
    let y = y.contiguous_data();
    let gd = g.contiguous_data();
    Tensor::from_parts(rows_zip(&gd, &y, len, row), g.shape())
}

/// Writes `exp(x - m)` into `y` and returns `(m, Σ exp(x - m))`, with `m` the row maximum (0
/// for a row of `-inf`, so it stays finite).
#[inline(always)]
pub(crate) fn exp_shifted(x: &[f32], y: &mut [f32]) -> (f32, f32) {
    let m = kernels::max(x);
    let m = if m == f32::NEG_INFINITY { 0.0 } else { m };
    y.copy_from_slice(x);
    (m, kernels::exp_shift_sum(y, m))
}

#[inline(always)]
pub(crate) fn softmax_row(x: &[f32], y: &mut [f32]) {
    let (_, s) = exp_shifted(x, y);
    let inv = 1.0 / s;
    y.iter_mut().for_each(|y| *y *= inv);
}

struct SoftmaxBackward {
    y: Tensor,
}

backward!(SoftmaxBackward, "softmax", |saved, g, _needs| {
    let dx = rows_grad(g, &saved.y, |g, y, dx| {
        let d = kernels::dot(g, y);
        for i in 0..dx.len() {
            dx[i] = y[i] * (g[i] - d);
        }
    });
    vec![Some(dx)]
});

impl Tensor {
    /// Softmax along `axis`.
    #[track_caller]
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        rowwise("softmax", self, axis, softmax_row, |y| SoftmaxBackward {
            y,
        })
    }
}
