//! `sub`: elementwise `a - b` with broadcasting. The rule saves only the input shapes:
//! da = sum_to_shape(g), db = -sum_to_shape(g).

use super::binary::{self, InputShapes};
use crate::autograd::record;
use crate::{Result, Tensor};

struct SubBackward(InputShapes);

backward!(SubBackward, "sub", |rule, g, needs| {
    let shapes = &rule.0;
    vec![
        needs[0].then(|| g.sum_to_shape_raw(&shapes.a)),
        needs[1].then(|| super::unary::map(&g.sum_to_shape_raw(&shapes.b), |v| -v)),
    ]
});

impl Tensor {
    /// Elementwise difference with NumPy broadcasting.
    #[track_caller]
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let out = binary::broadcast_map("sub", self, other, |a, b| a - b)?;
        Ok(record(out, &[self, other], |_| {
            SubBackward(InputShapes::of(self, other))
        }))
    }
}
