//! Shared machinery of broadcasting binary ops.

use crate::layout::{broadcast_shapes, Shape};
use crate::{Result, Tensor};
use perceiver_kernels as kernels;

/// The input shapes a broadcasting op's rule keeps to sum its gradient back to each input
/// (`add`, `sub`).
pub(super) struct InputShapes {
    pub a: Shape,
    pub b: Shape,
}

impl InputShapes {
    /// The shapes of the inputs `a` and `b`.
    pub(super) fn of(a: &Tensor, b: &Tensor) -> InputShapes {
        InputShapes {
            a: a.layout.shape.clone(),
            b: b.layout.shape.clone(),
        }
    }
}

/// What the rule of a product `a·b` (`mul`, `matmul`) saves: each operand only when the other
/// one needs a gradient (the gradient of one side reads the other), and both shapes.
pub(super) struct Operands {
    pub a: Option<Tensor>,
    pub b: Option<Tensor>,
    pub a_shape: Shape,
    pub b_shape: Shape,
}

impl Operands {
    /// Saves the operands `a` and `b` of a product whose inputs need gradients as `needs` says.
    pub(super) fn save(a: &Tensor, b: &Tensor, needs: &[bool]) -> Operands {
        Operands {
            a: needs[1].then(|| a.detach()),
            b: needs[0].then(|| b.detach()),
            a_shape: a.layout.shape.clone(),
            b_shape: b.layout.shape.clone(),
        }
    }
}

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
    // A row vector broadcast over the rows of a full operand (a bias add): one pass over rows.
    if let Some(out) = row_broadcast(shape, a, b, &f) {
        return out;
    }
    if let Some(out) = row_broadcast(shape, b, a, &|y: f32, x: f32| f(x, y)) {
        return out;
    }
    let la = a.layout.broadcast_to(shape).expect("validated broadcast");
    let lb = b.layout.broadcast_to(shape).expect("validated broadcast");
    let data =
        crate::strided::strided_map(shape, [(&a.storage, &la), (&b.storage, &lb)], |[x, y]| {
            f(x, y)
        });
    Tensor::from_parts(data, shape)
}

/// `f(full, row)` when `full` is contiguous with the output's shape and `row`, contiguous, has
/// the output's trailing dimensions (leading dimensions of size 1 or absent).
fn row_broadcast(
    shape: &[usize],
    full: &Tensor,
    row: &Tensor,
    f: &(impl Fn(f32, f32) -> f32 + Sync + Send),
) -> Option<Tensor> {
    if full.shape() != shape {
        return None;
    }
    let x = full.as_slice()?;
    let r = row.as_slice()?;
    let dims: Vec<usize> = row
        .shape()
        .iter()
        .copied()
        .skip_while(|&d| d == 1)
        .collect();
    if dims.is_empty() || dims.len() > shape.len() || shape[shape.len() - dims.len()..] != dims[..]
    {
        return None;
    }
    let n = r.len();
    let data = kernels::row_map(x, r, n, f);
    Some(Tensor::from_parts(data, shape))
}
