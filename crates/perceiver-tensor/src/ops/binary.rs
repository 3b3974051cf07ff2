//! Shared machinery of broadcasting binary ops.

use crate::kernels;
use crate::layout::broadcast_shapes;
use crate::{Result, Tensor};

/// `f(a, b)` with NumPy broadcasting, as a new contiguous untracked tensor.
#[track_caller]
pub(crate) fn broadcast_map(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Result<Tensor> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    Ok(map_to(&shape, a, b, f))
}

/// `f(a, b)` where both broadcast to `shape` (already validated).
pub(crate) fn map_to(
    shape: &[usize],
    a: &Tensor,
    b: &Tensor,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Tensor {
    if a.shape() == shape && b.shape() == shape {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            return Tensor::from_parts(kernels::zip_map(x, y, f), shape);
        }
    }
    let la = a.layout.broadcast_to(shape).expect("validated broadcast");
    let lb = b.layout.broadcast_to(shape).expect("validated broadcast");
    let data = kernels::strided_map(shape, [(&a.storage, &la), (&b.storage, &lb)], |[x, y]| {
        f(x, y)
    });
    Tensor::from_parts(data, shape)
}
