//! `neg`: elementwise `-x`. The rule saves nothing: dx = -g.

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;

struct NegBackward;

impl Backward for NegBackward {
    fn name(&self) -> &'static str {
        "neg"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::map(g, |g| -g))]
    }
}

impl Tensor {
    /// Elementwise negation.
    pub fn neg(&self) -> Tensor {
        let out = unary::map(self, |x| -x);
        record(out, &[self], |_| NegBackward)
    }
}
