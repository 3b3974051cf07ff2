//! `sqrt`: square root; the rule saves the output: dx = g / (2 y).

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct SqrtBackward {
    saved: Tensor,
}

backward!(SqrtBackward, "sqrt", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.saved, |g, y| g / (2.0 * y))
)]);

impl Tensor {
    /// Elementwise square root; the rule saves the output: dx = g / (2 y).
    pub fn sqrt(&self) -> Tensor {
        let out = unary::map(self, |x| x.sqrt());
        let saved = out.detach();
        record(out, &[self], |_| SqrtBackward { saved })
    }
}
