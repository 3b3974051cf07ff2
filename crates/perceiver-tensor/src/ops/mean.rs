//! `mean` over axes (with `keepdim`) and `mean_all`. The rule broadcasts `g / count` back to the
//! input shape.

use super::sum::{normalize_axes, reduced_shape, spread_back, sum_axes_raw};
use super::unary;
use crate::autograd::record;
use crate::layout::Shape;
use crate::{Result, Tensor};

struct MeanBackward {
    input: Shape,
    keep: Shape,
    scale: f32,
}

backward!(MeanBackward, "mean", |saved, g, _needs| {
    let s = saved.scale;
    let g = unary::map(g, |v| v * s);
    vec![Some(spread_back(&g, &saved.keep, &saved.input))]
});

impl Tensor {
    /// Mean over `axes`; reduced axes are kept with size 1 when `keepdim`.
    #[track_caller]
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = normalize_axes("mean", axes, self.shape())?;
        let count: usize = axes.iter().map(|&a| self.shape()[a]).product();
        let scale = 1.0 / count.max(1) as f32;
        let out = unary::map(&sum_axes_raw(self, &axes), |v| v * scale);
        let out = out.reshape_raw(&reduced_shape(self.shape(), &axes, keepdim));
        Ok(record(out, &[self], |_| MeanBackward {
            input: self.layout.shape.clone(),
            keep: reduced_shape(self.shape(), &axes, true),
            scale,
        }))
    }

    /// Mean of all elements, as a rank-0 tensor.
    pub fn mean_all(&self) -> Tensor {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.mean(&axes, false).expect("all axes are valid")
    }
}
