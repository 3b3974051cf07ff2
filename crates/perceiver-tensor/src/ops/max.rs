//! `max` over axes (with `keepdim`). The rule saves the position of the maximum of each reduced
//! group (the first one on ties) and routes the gradient there.

use super::sum::{normalize_axes, reduced_shape, rows_for_reduction};
use crate::autograd::record;
use crate::layout::Shape;
use crate::{Error, Result, Tensor};

struct MaxBackward {
    /// Shape of the input with reduced axes moved last.
    permuted: Shape,
    /// Inverse of the permutation that moved them.
    inverse: Vec<usize>,
    /// Index within each reduced row of its maximum.
    argmax: Vec<usize>,
    reduced: usize,
}

backward!(MaxBackward, "max", |saved, g, _needs| {
    let gd = g.contiguous_data();
    let mut data = vec![0.0f32; saved.argmax.len() * saved.reduced];
    for (row, (&j, &gv)) in saved.argmax.iter().zip(gd.iter()).enumerate() {
        data[row * saved.reduced + j] = gv;
    }
    let t = Tensor::from_parts(data, &saved.permuted);
    vec![Some(t.permute_raw(&saved.inverse))]
});

impl Tensor {
    /// Maximum over `axes`; reduced axes are kept with size 1 when `keepdim`. NaN propagates.
    #[track_caller]
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = normalize_axes("max", axes, self.shape())?;
        if axes.iter().any(|&a| self.shape()[a] == 0) {
            return Err(Error::invalid(
                "max",
                format!(
                    "cannot take the maximum over an empty axis of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let (data, _kept, reduced, perm) = rows_for_reduction(self, &axes);
        let mut values = Vec::with_capacity(data.len() / reduced.max(1));
        let mut argmax = Vec::with_capacity(values.capacity());
        for row in data.chunks(reduced.max(1)) {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] || (v.is_nan() && !row[best].is_nan()) {
                    best = j;
                }
            }
            values.push(row[best]);
            argmax.push(best);
        }
        let out = Tensor::from_parts(values, &reduced_shape(self.shape(), &axes, keepdim));
        Ok(record(out, &[self], |_| {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            MaxBackward {
                permuted: perm.iter().map(|&p| self.shape()[p]).collect(),
                inverse,
                argmax,
                reduced,
            }
        }))
    }
}
