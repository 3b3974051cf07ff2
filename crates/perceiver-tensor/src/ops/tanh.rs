//! `tanh`: hyperbolic tangent; the rule saves the output: dx = g (1 - y^2).

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;
use perceiver_kernels as kernels;

struct TanhBackward {
    saved: Tensor,
}

impl Backward for TanhBackward {
    fn name(&self) -> &'static str {
        "tanh"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::zip(g, &self.saved, |g, y| g * (1.0 - y * y)))]
    }
}

impl Tensor {
    /// Elementwise hyperbolic tangent; the rule saves the output: dx = g (1 - y^2).
    pub fn tanh(&self) -> Tensor {
        let out = unary::map(self, kernels::fast_tanh);
        let saved = out.detach();
        record(out, &[self], |_| TanhBackward { saved })
    }
}
