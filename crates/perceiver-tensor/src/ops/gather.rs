//! `gather`: `out[i][j][k] = x[i][index[i][j][k]][k]` along one axis (as `torch.gather`). The
//! rule scatters the gradient back, adding where indices repeat.

use crate::autograd::record;
use crate::layout::{check_axis, contiguous_strides, Shape};
use crate::{Error, Result, Tensor};

struct GatherBackward {
    shape: Shape,
    /// Flat input position of each output element.
    positions: Vec<usize>,
}

backward!(GatherBackward, "gather", |saved, g, _needs| {
    let gd = g.contiguous_data();
    let mut data = vec![0.0f32; crate::layout::numel(&saved.shape)];
    for (&p, &v) in saved.positions.iter().zip(gd.iter()) {
        data[p] += v;
    }
    vec![Some(Tensor::from_parts(data, &saved.shape))]
});

impl Tensor {
    /// Gathers along `axis` with an index tensor of the same rank whose values are integers
    /// (stored as f32) below the axis length; the output has the index's shape. Every other
    /// dimension of the index must not exceed the input's.
    #[track_caller]
    pub fn gather(&self, axis: usize, index: &Tensor) -> Result<Tensor> {
        check_axis("gather", axis, self.shape())?;
        if index.rank() != self.rank()
            || index
                .shape()
                .iter()
                .zip(self.shape())
                .enumerate()
                .any(|(d, (&i, &s))| d != axis && i > s)
        {
            return Err(Error::shape(
                "gather",
                "the index must have the input's rank and no larger dimensions off the axis",
                self.shape(),
                index.shape(),
            ));
        }
        let dim = self.shape()[axis];
        let idx = index.to_vec();
        let istrides = contiguous_strides(index.shape());
        let x = self.contiguous_data();
        let xstrides = contiguous_strides(self.shape());
        let mut positions = Vec::with_capacity(idx.len());
        let mut data = Vec::with_capacity(idx.len());
        for (flat, &v) in idx.iter().enumerate() {
            if v.fract() != 0.0 || v < 0.0 || v as usize >= dim {
                return Err(Error::invalid(
                    "gather",
                    format!(
                        "index value {v} is not an integer in 0..{dim} (axis {axis} of shape {:?})",
                        self.shape()
                    ),
                ));
            }
            let mut rem = flat;
            let mut pos = 0;
            for d in 0..self.rank() {
                let i = rem / istrides[d];
                rem %= istrides[d];
                let i = if d == axis { v as usize } else { i };
                pos += i * xstrides[d];
            }
            positions.push(pos);
            data.push(x[pos]);
        }
        let out = Tensor::from_parts(data, index.shape());
        Ok(record(out, &[self], |_| GatherBackward {
            shape: self.layout.shape.clone(),
            positions,
        }))
    }
}
