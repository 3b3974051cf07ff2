//! `exp`: e^x; the rule saves the output: dx = g * y.

use super::unary;
use crate::autograd::record;
use crate::Tensor;
use perceiver_kernels as kernels;

struct ExpBackward {
    saved: Tensor,
}

backward!(ExpBackward, "exp", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.saved, |g, y| g * y)
)]);

impl Tensor {
    /// Elementwise e^x; the rule saves the output: dx = g * y.
    pub fn exp(&self) -> Tensor {
        let out = unary::map(self, kernels::fast_exp);
        let saved = out.detach();
        record(out, &[self], |_| ExpBackward { saved })
    }
}
