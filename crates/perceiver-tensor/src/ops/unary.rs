//! Shared machinery of elementwise unary ops.

use crate::Tensor;
use perceiver_kernels as kernels;

/// `f` applied to every element, as a new contiguous untracked tensor.
#[inline(always)]
pub(crate) fn map(x: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send) -> Tensor {
    let data = x.contiguous_data();
    Tensor::from_parts(kernels::map(&data, f), x.shape())
}

/// `f(g, s)` over a gradient and a saved tensor of the same shape.
#[inline(always)]
pub(crate) fn zip(g: &Tensor, s: &Tensor, f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Tensor {
    let gd = g.contiguous_data();
    let sd = s.contiguous_data();
    Tensor::from_parts(kernels::zip_map(&gd, &sd, f), g.shape())
}
