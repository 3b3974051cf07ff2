//! `sigmoid`: logistic function 1 / (1 + e^-x); the rule saves the output: dx = g y (1 - y).

use super::unary;
use crate::autograd::record;
use crate::Tensor;
use perceiver_kernels as kernels;

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    // e^-|x| never overflows; the two branches are selects, so the loop vectorises.
    let e = kernels::fast_exp(-x.abs());
    let r = 1.0 / (1.0 + e);
    if x >= 0.0 {
        r
    } else {
        1.0 - r
    }
}

struct SigmoidBackward {
    saved: Tensor,
}

backward!(SigmoidBackward, "sigmoid", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.saved, |g, y| g * y * (1.0 - y))
)]);

impl Tensor {
    /// Elementwise logistic function 1 / (1 + e^-x); the rule saves the output: dx = g y (1 - y).
    pub fn sigmoid(&self) -> Tensor {
        let out = unary::map(self, sigmoid);
        let saved = out.detach();
        record(out, &[self], |_| SigmoidBackward { saved })
    }
}
