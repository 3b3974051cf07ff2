//! `relu`: max(x, 0); the rule saves the output: dx = g where y > 0.

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct ReluBackward {
    saved: Tensor,
}

backward!(ReluBackward, "relu", |saved, g, _needs| {
    vec![Some(unary::zip(g, &saved.saved, |g, y| {
        if y > 0.0 {
            g
        } else {
            0.0
        }
    }))]
});

impl Tensor {
    /// Elementwise max(x, 0); the rule saves the output: dx = g where y > 0.
    pub fn relu(&self) -> Tensor {
        let out = unary::map(self, |x| x.max(0.0));
        let saved = out.detach();
        record(out, &[self], |_| ReluBackward { saved })
    }
}
