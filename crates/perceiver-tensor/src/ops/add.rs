//! `add`: elementwise `a + b` with broadcasting. The rule saves only the input shapes:
//! da = sum_to_shape(g), db = sum_to_shape(g).

use super::binary;
use crate::autograd::record;
use crate::layout::Shape;
use crate::{Result, Tensor};

struct AddBackward {
    a: Shape,
    b: Shape,
}

backward!(AddBackward, "add", |saved, g, needs| {
    vec![
        needs[0].then(|| g.sum_to_shape_raw(&saved.a)),
        needs[1].then(|| g.sum_to_shape_raw(&saved.b)),
    ]
});

impl Tensor {
    /// Elementwise sum with NumPy broadcasting.
    #[track_caller]
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let out = binary::broadcast_map("add", self, other, |a, b| a + b)?;
        Ok(record(out, &[self, other], |_| AddBackward {
            a: self.layout.shape.clone(),
            b: other.layout.shape.clone(),
        }))
    }
}
