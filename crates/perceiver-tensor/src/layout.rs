//! Shapes, strides and the strided iteration every kernel builds on.
//!
//! A [`Layout`] maps a multi-index to an offset into the storage:
//! `offset + sum(index[i] * strides[i])`. Views (permute, narrow, broadcast) only change the
//! layout. A stride of 0 repeats an element (broadcasting). Kernels never iterate a dynamic
//! multi-index per element: `for_each_row` walks the outer dimensions once per row and hands the
//! kernel a row base offset and a stride for the innermost dimension, so inner loops are plain
//! strided (usually unit-stride) loops that the compiler vectorises.

use crate::{Error, Result};
use smallvec::SmallVec;

/// Dimensions of a tensor, stored inline for ranks up to 6.
pub type Shape = SmallVec<[usize; 6]>;

/// Shape, strides (in elements) and offset of a tensor view into its storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub(crate) shape: Shape,
    pub(crate) strides: Shape,
    pub(crate) offset: usize,
}

/// Number of elements of a shape (1 for a scalar of rank 0).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous tensor of this shape.
pub fn contiguous_strides(shape: &[usize]) -> Shape {
    let mut strides: Shape = SmallVec::from_elem(0, shape.len());
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

impl Layout {
    /// A row-major layout of `shape` starting at offset 0.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout {
            shape: SmallVec::from_slice(shape),
            strides: contiguous_strides(shape),
            offset: 0,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The strides, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Offset of the first element in the storage.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the elements are stored row-major without gaps (from `offset`).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != expected {
                return false;
            }
            expected *= self.shape[i];
        }
        true
    }

    /// Largest storage index touched plus one (0 for an empty tensor).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset
            + self
                .shape
                .iter()
                .zip(&self.strides)
                .map(|(&d, &s)| (d - 1) * s)
                .sum::<usize>()
            + 1
    }

    /// Layout with the axes reordered: axis `i` of the result is axis `perm[i]` of `self`.
    pub(crate) fn permute(&self, perm: &[usize]) -> Layout {
        Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        }
    }

    /// Layout of `len` elements of `axis` starting at `start`.
    pub(crate) fn narrow(&self, axis: usize, start: usize, len: usize) -> Layout {
        let mut l = self.clone();
        l.offset += start * self.strides[axis];
        l.shape[axis] = len;
        l
    }

    /// Layout broadcast (NumPy rules) to `shape`, or `None` when it cannot be.
    pub(crate) fn broadcast_to(&self, shape: &[usize]) -> Option<Layout> {
        if shape.len() < self.shape.len() {
            return None;
        }
        let pad = shape.len() - self.shape.len();
        let mut strides: Shape = SmallVec::from_elem(0, shape.len());
        for i in 0..shape.len() {
            if i < pad {
                strides[i] = 0;
                continue;
            }
            let d = self.shape[i - pad];
            if d == shape[i] {
                strides[i] = if d == 1 { 0 } else { self.strides[i - pad] };
            } else if d == 1 {
                strides[i] = 0;
            } else {
                return None;
            }
        }
        Some(Layout {
            shape: SmallVec::from_slice(shape),
            strides,
            offset: self.offset,
        })
    }

    /// A view with a new shape over the same elements, when the strides allow it without a copy.
    pub(crate) fn reshape(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() {
            return Some(Layout {
                shape: SmallVec::from_slice(shape),
                strides: contiguous_strides(shape),
                offset: self.offset,
            });
        }
        // General case (the rule PyTorch's `view` uses): walk the old dimensions from the
        // innermost, grouping those that are contiguous with each other into chunks, and split
        // each chunk into new dimensions.
        let old_shape = &self.shape;
        let old_strides = &self.strides;
        let mut new_strides: Shape = SmallVec::from_elem(0, shape.len());
        let mut view_d = shape.len() as isize - 1;
        let mut chunk_base_stride = *old_strides.last()?;
        let mut tensor_numel = 1usize;
        let mut view_numel = 1usize;
        for tensor_d in (0..old_shape.len()).rev() {
            tensor_numel *= old_shape[tensor_d];
            let chunk_ends = tensor_d == 0
                || (old_shape[tensor_d - 1] != 1
                    && old_strides[tensor_d - 1] != tensor_numel * chunk_base_stride);
            if chunk_ends {
                while view_d >= 0 && (view_numel < tensor_numel || shape[view_d as usize] == 1) {
                    new_strides[view_d as usize] = view_numel * chunk_base_stride;
                    view_numel *= shape[view_d as usize];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if tensor_d > 0 {
                    chunk_base_stride = old_strides[tensor_d - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        if view_d != -1 {
            return None;
        }
        Some(Layout {
            shape: SmallVec::from_slice(shape),
            strides: new_strides,
            offset: self.offset,
        })
    }
}

/// NumPy broadcasting of two shapes, or a shape error naming `op`.
#[track_caller]
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Shape> {
    let n = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return Err(Error::shape(
                op,
                "shapes cannot be broadcast together",
                a,
                b,
            ));
        };
    }
    Ok(out)
}

/// Calls `f(bases, len)` once per innermost row of `shape`, where `bases[j]` is the offset of the
/// row's first element under `layouts[j]` (all of which have this shape), and `len` is the
/// innermost dimension. Rows are visited in row-major order. For a rank-0 shape, `f` is called
/// once with `len == 1`.
pub(crate) fn for_each_row<const K: usize>(
    shape: &[usize],
    strides: [&[usize]; K],
    offsets: [usize; K],
    mut f: impl FnMut([usize; K], usize),
) {
    let rank = shape.len();
    if numel(shape) == 0 {
        return;
    }
    if rank == 0 {
        f(offsets, 1);
        return;
    }
    let inner = shape[rank - 1];
    let outer_rank = rank - 1;
    let mut idx: SmallVec<[usize; 6]> = SmallVec::from_elem(0, outer_rank);
    let mut bases = offsets;
    loop {
        f(bases, inner);
        // increment the outer multi-index
        let mut d = outer_rank;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for j in 0..K {
                bases[j] += strides[j][d];
            }
            if idx[d] < shape[d] {
                break;
            }
            for j in 0..K {
                bases[j] -= strides[j][d] * shape[d];
            }
            idx[d] = 0;
        }
    }
}

/// Checks an optional vector argument of `op`: `t`, when given, must have shape `[len]`;
/// otherwise a shape error stating `rule`.
#[track_caller]
pub fn check_vector(
    op: &'static str,
    t: Option<&crate::Tensor>,
    len: usize,
    rule: impl FnOnce() -> String,
) -> Result<()> {
    match t {
        Some(t) if t.shape() != [len] => Err(Error::shape(op, rule(), t.shape(), &[len])),
        _ => Ok(()),
    }
}

/// Validates an axis against a rank.
#[track_caller]
pub(crate) fn check_axis(op: &'static str, axis: usize, shape: &[usize]) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::axis(op, axis, shape));
    }
    Ok(())
}
