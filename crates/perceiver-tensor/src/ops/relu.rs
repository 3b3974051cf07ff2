//! `relu`: max(x, 0); the rule saves the output: dx = g where y > 0.

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;

struct ReluBackward {
    saved: Tensor,
}

impl Backward for ReluBackward {
    fn name(&self) -> &'static str {
        "relu"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::zip(g, &self.saved, |g, y| {
            if y > 0.0 {
                g
            } else {
                0.0
            }
        }))]
    }
}

impl Tensor {
    /// Elementwise max(x, 0); the rule saves the output: dx = g where y > 0.
    pub fn relu(&self) -> Tensor {
        let out = unary::map(self, |x| x.max(0.0));
        let saved = out.detach();
        record(out, &[self], |_| ReluBackward { saved })
    }
}
