//! `sigmoid`: logistic function 1 / (1 + e^-x); the rule saves the output: dx = g y (1 - y).

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;

#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

struct SigmoidBackward {
    saved: Tensor,
}

impl Backward for SigmoidBackward {
    fn name(&self) -> &'static str {
        "sigmoid"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::zip(g, &self.saved, |g, y| g * y * (1.0 - y)))]
    }
}

impl Tensor {
    /// Elementwise logistic function 1 / (1 + e^-x); the rule saves the output: dx = g y (1 - y).
    pub fn sigmoid(&self) -> Tensor {
        let out = unary::map(self, sigmoid);
        let saved = out.detach();
        record(out, &[self], |_| SigmoidBackward { saved })
    }
}
