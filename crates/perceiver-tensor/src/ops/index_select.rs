//! `index_select`: picks entries of one axis by index (embedding lookup). The rule adds each
//! gradient row back at its index (repeated indices accumulate).

use crate::autograd::record;
use crate::layout::{check_axis, Shape};
use crate::{Error, Result, Tensor};

struct IndexSelectBackward {
    shape: Shape,
    axis: usize,
    indices: Vec<usize>,
}

backward!(IndexSelectBackward, "index_select", |saved, g, _needs| {
    let outer: usize = saved.shape[..saved.axis].iter().product();
    let inner: usize = saved.shape[saved.axis + 1..].iter().product();
    let dim = saved.shape[saved.axis];
    let sel = saved.indices.len();
    let gd = g.contiguous_data();
    let mut data = vec![0.0f32; outer * dim * inner];
    for o in 0..outer {
        for (j, &ix) in saved.indices.iter().enumerate() {
            let src = &gd[(o * sel + j) * inner..(o * sel + j + 1) * inner];
            let dst = &mut data[(o * dim + ix) * inner..(o * dim + ix + 1) * inner];
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        }
    }
    vec![Some(Tensor::from_parts(data, &saved.shape))]
});

impl Tensor {
    /// Entries `indices` of `axis`, in that order (the result's `axis` has `indices.len()`).
    #[track_caller]
    pub fn index_select(&self, axis: usize, indices: &[usize]) -> Result<Tensor> {
        check_axis("index_select", axis, self.shape())?;
        let dim = self.shape()[axis];
        if let Some(&bad) = indices.iter().find(|&&i| i >= dim) {
            return Err(Error::invalid(
                "index_select",
                format!(
                    "index {bad} out of range for axis {axis} of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let x = self.contiguous_data();
        let outer: usize = self.shape()[..axis].iter().product();
        let inner: usize = self.shape()[axis + 1..].iter().product();
        let mut data = Vec::with_capacity(outer * indices.len() * inner);
        for o in 0..outer {
            for &ix in indices {
                data.extend_from_slice(&x[(o * dim + ix) * inner..(o * dim + ix + 1) * inner]);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[axis] = indices.len();
        let out = Tensor::from_parts(data, &shape);
        Ok(record(out, &[self], |_| IndexSelectBackward {
            shape: self.layout.shape.clone(),
            axis,
            indices: indices.to_vec(),
        }))
    }
}
