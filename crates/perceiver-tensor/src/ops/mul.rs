//! `mul`: elementwise `a * b` with broadcasting. The rule keeps a side only when the other side
//! needs a gradient: da = sum_to_shape(g b), db = sum_to_shape(g a).

use super::binary::{self, Operands};
use crate::autograd::record;
use crate::{Result, Tensor};

struct MulBackward(Operands);

backward!(MulBackward, "mul", |rule, g, needs| {
    let saved = &rule.0;
    let da = needs[0].then(|| {
        let b = saved.b.as_ref().expect("saved b");
        binary::map_to(g.shape(), g, b, |g, b| g * b).sum_to_shape_raw(&saved.a_shape)
    });
    let db = needs[1].then(|| {
        let a = saved.a.as_ref().expect("saved a");
        binary::map_to(g.shape(), g, a, |g, a| g * a).sum_to_shape_raw(&saved.b_shape)
    });
    vec![da, db]
});

impl Tensor {
    /// Elementwise product with NumPy broadcasting.
    #[track_caller]
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let out = binary::broadcast_map("mul", self, other, |a, b| a * b)?;
        Ok(record(out, &[self, other], |needs| {
            MulBackward(Operands::save(self, other, needs))
        }))
    }
}
