//! `broadcast_to`: a view repeating size-1 (or missing leading) dimensions with stride 0. The
//! rule sums the gradient back to the input shape with [`Tensor::sum_to_shape_raw`], the one
//! place where broadcast gradients are reduced.

use crate::autograd::record;
use crate::layout::Shape;
use crate::{Error, Result, Tensor};

struct BroadcastBackward {
    shape: Shape,
}

backward!(BroadcastBackward, "broadcast_to", |saved, g, _needs| vec![
    Some(g.sum_to_shape_raw(&saved.shape))
]);

impl Tensor {
    /// A view of this tensor broadcast (NumPy rules) to `shape`, without copying.
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        // (a `match`, not a closure, so that the error names the caller's line)
        let layout = match self.layout.broadcast_to(shape) {
            Some(l) => l,
            None => {
                return Err(Error::shape(
                    "broadcast_to",
                    "cannot broadcast",
                    self.shape(),
                    shape,
                ))
            }
        };
        let out = Tensor {
            storage: self.storage.clone(),
            layout,
            node: None,
        };
        Ok(record(out, &[self], |_| BroadcastBackward {
            shape: self.layout.shape.clone(),
        }))
    }

    /// Sums this (untracked) tensor over the dimensions that broadcasting added or expanded,
    /// so the result has `shape`. `shape` must broadcast to `self.shape()`.
    pub fn sum_to_shape_raw(&self, shape: &[usize]) -> Tensor {
        if self.shape() == shape {
            return self.detach();
        }
        let rank = self.rank();
        let lead = rank - shape.len();
        let axes: Vec<usize> = (0..rank)
            .filter(|&i| i < lead || (shape[i - lead] == 1 && self.shape()[i] != 1))
            .collect();
        let reduced = super::sum::sum_axes_raw(self, &axes);
        reduced.reshape_raw(shape)
    }
}
