//! `layer_norm_concat`: a LayerNorm (without affine) of the concatenation of several parts
//! along the last axis, without building the concatenation when nothing is tracked.

use perceiver_kernels as kernels;
use perceiver_tensor::strided::row_base;
use perceiver_tensor::{is_grad_enabled, Error, Result, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `Tensor::concat(parts, last axis).layer_norm(None, None, eps)` without building the
/// concatenation when no part is tracked: each output row is normalised from its parts'
/// rows gathered into a small buffer (a Perceiver's input array is the input channels
/// next to position features shared by every example, often a broadcast view). With a
/// tracked part it is that composition, gradients included.
///
/// ```
/// use perceiver_nn::ops::layer_norm_concat;
/// use perceiver_tensor::Tensor;
/// let (x, pos) = (Tensor::ones(&[2, 5, 3]), Tensor::zeros(&[2, 5, 4]));
/// let y = layer_norm_concat(&[&x, &pos], 1e-5)?;
/// assert_eq!(y.shape(), &[2, 5, 7]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn layer_norm_concat(parts: &[&Tensor], eps: f32) -> Result<Tensor> {
    const OP: &str = "layer_norm_concat";
    let Some(first) = parts.first() else {
        return Err(Error::invalid(OP, "needs at least one part"));
    };
    let r = first.rank();
    if r == 0
        || parts
            .iter()
            .any(|p| p.rank() != r || p.shape()[..r - 1] != first.shape()[..r - 1])
    {
        return Err(Error::invalid(
            OP,
            format!(
                "the parts must agree on every axis but the last, got {:?}",
                parts.iter().map(|p| p.shape().to_vec()).collect::<Vec<_>>()
            ),
        ));
    }
    let tracked = is_grad_enabled() && parts.iter().any(|p| p.is_tracked());
    if tracked {
        return Tensor::concat(parts, r - 1)?.layer_norm(None, None, eps);
    }
    if !(eps >= 0.0) {
        return Err(Error::invalid(OP, format!("eps must be >= 0, got {eps}")));
    }
    let widths: Vec<usize> = parts.iter().map(|p| p.shape()[r - 1]).collect();
    let d: usize = widths.iter().sum();
    let rows = first.shape()[..r - 1].iter().product::<usize>();
    let mut shape = first.shape().to_vec();
    shape[r - 1] = d;
    let mut y: Vec<f32> = Vec::with_capacity(rows * d);
    if d > 0 && rows > 0 {
        let body = |r0: usize, y: &mut [MaybeUninit<f32>]| {
            let mut row = vec![0.0f32; d];
            perceiver_kernels::simd!(for (i, yr) in y.chunks_mut(d).enumerate() {
                let mut at = 0;
                for (p, &w) in parts.iter().zip(&widths) {
                    let (data, l) = p.raw();
                    let (base, cs) = (row_base(l, r0 + i), l.strides()[r - 1]);
                    for (j, v) in row[at..at + w].iter_mut().enumerate() {
                        *v = data[base + j * cs];
                    }
                    at += w;
                }
                kernels::layer_norm_row_uninit(&row, yr, None, None, eps);
            })
        };
        let out = &mut y.spare_capacity_mut()[..rows * d];
        let rows_per = (8192 / d).max(1);
        if rows * d >= kernels::PAR_THRESHOLD {
            out.par_chunks_mut(rows_per * d)
                .enumerate()
                .for_each(|(c, chunk)| body(c * rows_per, chunk));
        } else {
            body(0, out);
        }
        // SAFETY: every row of every chunk was written above.
        unsafe { y.set_len(rows * d) };
    }
    Ok(Tensor::from_parts(y, &shape))
}
