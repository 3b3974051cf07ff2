//! `neg`: elementwise `-x`. The rule saves nothing: dx = -g.

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct NegBackward;

backward!(NegBackward, "neg", |_saved, g, _needs| vec![Some(
    unary::map(g, |g| -g)
)]);

impl Tensor {
    /// Elementwise negation.
    pub fn neg(&self) -> Tensor {
        let out = unary::map(self, |x| -x);
        record(out, &[self], |_| NegBackward)
    }
}
