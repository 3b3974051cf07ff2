//! `where_cond` and `masked_fill`: elementwise selection by a condition tensor (non-zero =
//! true). The condition is data, not differentiated. The rule routes the gradient to the side
//! that was selected: `da = sum_to_shape(g·c)`, `db = sum_to_shape(g·(1-c))`.

use super::binary;
use crate::autograd::record;
use crate::layout::{broadcast_shapes, Shape};
use crate::{Result, Tensor};

struct WhereBackward {
    cond: Tensor,
    a_shape: Shape,
    b_shape: Shape,
}

backward!(WhereBackward, "where_cond", |saved, g, needs| {
    let shape = g.shape();
    let da = needs[0].then(|| {
        binary::map_to(shape, g, &saved.cond, |g, c| if c != 0.0 { g } else { 0.0 })
            .sum_to_shape_raw(&saved.a_shape)
    });
    let db = needs[1].then(|| {
        binary::map_to(shape, g, &saved.cond, |g, c| if c != 0.0 { 0.0 } else { g })
            .sum_to_shape_raw(&saved.b_shape)
    });
    vec![da, db]
});

impl Tensor {
    /// `cond ? a : b` elementwise, where `cond` is non-zero; all three broadcast together.
    #[track_caller]
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let s = broadcast_shapes("where_cond", a.shape(), b.shape())?;
        let shape = broadcast_shapes("where_cond", cond.shape(), &s)?;
        let lc = cond.layout.broadcast_to(&shape).expect("validated");
        let la = a.layout.broadcast_to(&shape).expect("validated");
        let lb = b.layout.broadcast_to(&shape).expect("validated");
        let data = crate::strided::strided_map(
            &shape,
            [(&cond.storage, &lc), (&a.storage, &la), (&b.storage, &lb)],
            |[c, a, b]| if c != 0.0 { a } else { b },
        );
        let out = Tensor::from_parts(data, &shape);
        Ok(record(out, &[a, b], |_| WhereBackward {
            cond: cond.detach(),
            a_shape: a.layout.shape.clone(),
            b_shape: b.layout.shape.clone(),
        }))
    }

    /// This tensor with `value` where `mask` (broadcast to this shape) is non-zero.
    #[track_caller]
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let shape = broadcast_shapes("masked_fill", mask.shape(), self.shape())?;
        if &shape[..] != self.shape() {
            return Err(crate::Error::shape(
                "masked_fill",
                "the mask must broadcast to the tensor's shape",
                mask.shape(),
                self.shape(),
            ));
        }
        Tensor::where_cond(mask, &Tensor::scalar(value), self)
    }
}
