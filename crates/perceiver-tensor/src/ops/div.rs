//! `div`: elementwise `a / b` with broadcasting. The rule saves `b`, and `a` when `b` needs a
//! gradient: da = sum_to_shape(g / b), db = -sum_to_shape(g a / b²).

use super::binary;
use crate::autograd::record;
use crate::layout::Shape;
use crate::{Result, Tensor};

struct DivBackward {
    a: Option<Tensor>,
    b: Tensor,
    a_shape: Shape,
    b_shape: Shape,
}

backward!(DivBackward, "div", |saved, g, needs| {
    let shape = g.shape();
    let da = needs[0]
        .then(|| binary::map_to(shape, g, &saved.b, |g, b| g / b).sum_to_shape_raw(&saved.a_shape));
    let db = needs[1].then(|| {
        let a = saved.a.as_ref().expect("saved a");
        let ga = binary::map_to(shape, g, a, |g, a| g * a);
        binary::map_to(shape, &ga, &saved.b, |ga, b| -ga / (b * b)).sum_to_shape_raw(&saved.b_shape)
    });
    vec![da, db]
});

impl Tensor {
    /// Elementwise quotient with NumPy broadcasting.
    #[track_caller]
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let out = binary::broadcast_map("div", self, other, |a, b| a / b)?;
        Ok(record(out, &[self, other], |needs| DivBackward {
            a: needs[1].then(|| self.detach()),
            b: other.detach(),
            a_shape: self.layout.shape.clone(),
            b_shape: other.layout.shape.clone(),
        }))
    }
}
