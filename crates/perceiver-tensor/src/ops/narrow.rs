//! `narrow` (and `split`, `chunk`): a slice of one axis as a view. The rule writes the gradient
//! into a zero tensor of the input's shape.

use crate::autograd::record;
use crate::layout::{check_axis, Layout, Shape};
use crate::{Error, Result, Tensor};

struct NarrowBackward {
    shape: Shape,
    axis: usize,
    start: usize,
}

backward!(NarrowBackward, "narrow", |saved, g, _needs| {
    let mut data = vec![0.0f32; crate::layout::numel(&saved.shape)];
    let region =
        Layout::contiguous(&saved.shape).narrow(saved.axis, saved.start, g.shape()[saved.axis]);
    crate::strided::copy_into(&mut data, &region, g);
    vec![Some(Tensor::from_parts(data, &saved.shape))]
});

impl Tensor {
    /// Elements `start..start + len` of `axis`, as a view.
    #[track_caller]
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        check_axis("narrow", axis, self.shape())?;
        let dim = self.shape()[axis];
        if start.checked_add(len).is_none_or(|end| end > dim) {
            return Err(Error::invalid(
                "narrow",
                format!(
                    "range {start}..{} exceeds axis {axis} of shape {:?}",
                    start.saturating_add(len),
                    self.shape()
                ),
            ));
        }
        let out = Tensor {
            storage: self.storage.clone(),
            layout: self.layout.narrow(axis, start, len),
            node: None,
        };
        Ok(record(out, &[self], |_| NarrowBackward {
            shape: self.layout.shape.clone(),
            axis,
            start,
        }))
    }

    /// Splits `axis` into consecutive pieces of the given sizes (which must add up to it).
    #[track_caller]
    pub fn split(&self, sizes: &[usize], axis: usize) -> Result<Vec<Tensor>> {
        check_axis("split", axis, self.shape())?;
        let total: usize = sizes.iter().sum();
        if total != self.shape()[axis] {
            return Err(Error::invalid(
                "split",
                format!(
                    "sizes {sizes:?} add up to {total}, but axis {axis} of shape {:?} has {}",
                    self.shape(),
                    self.shape()[axis]
                ),
            ));
        }
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.narrow(axis, start, s)?);
            start += s;
        }
        Ok(out)
    }

    /// Splits `axis` into `n` pieces of equal size (the last one smaller when it does not divide).
    #[track_caller]
    pub fn chunk(&self, n: usize, axis: usize) -> Result<Vec<Tensor>> {
        check_axis("chunk", axis, self.shape())?;
        if n == 0 {
            return Err(Error::invalid("chunk", "cannot split into 0 chunks"));
        }
        let dim = self.shape()[axis];
        let size = dim.div_ceil(n).max(1);
        let mut sizes = Vec::new();
        let mut left = dim;
        while left > 0 {
            let s = size.min(left);
            sizes.push(s);
            left -= s;
        }
        self.split(&sizes, axis)
    }
}
