//! `exp`: e^x; the rule saves the output: dx = g * y.

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;
use perceiver_kernels as kernels;

struct ExpBackward {
    saved: Tensor,
}

impl Backward for ExpBackward {
    fn name(&self) -> &'static str {
        "exp"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::zip(g, &self.saved, |g, y| g * y))]
    }
}

impl Tensor {
    /// Elementwise e^x; the rule saves the output: dx = g * y.
    pub fn exp(&self) -> Tensor {
        let out = unary::map(self, kernels::fast_exp);
        let saved = out.detach();
        record(out, &[self], |_| ExpBackward { saved })
    }
}
