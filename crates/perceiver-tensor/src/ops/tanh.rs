//! `tanh`: hyperbolic tangent; the rule saves the output: dx = g (1 - y^2).

use super::unary;
use crate::autograd::record;
use crate::Tensor;
use perceiver_kernels as kernels;

struct TanhBackward {
    saved: Tensor,
}

backward!(TanhBackward, "tanh", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.saved, |g, y| g * (1.0 - y * y))
)]);

impl Tensor {
    /// Elementwise hyperbolic tangent; the rule saves the output: dx = g (1 - y^2).
    pub fn tanh(&self) -> Tensor {
        let out = unary::map(self, kernels::fast_tanh);
        let saved = out.detach();
        record(out, &[self], |_| TanhBackward { saved })
    }
}
