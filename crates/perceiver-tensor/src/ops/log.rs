//! `log`: natural logarithm; the rule saves the input: dx = g / x.

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;

struct LogBackward {
    saved: Tensor,
}

impl Backward for LogBackward {
    fn name(&self) -> &'static str {
        "log"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        vec![Some(unary::zip(g, &self.saved, |g, y| g / y))]
    }
}

impl Tensor {
    /// Elementwise natural logarithm; the rule saves the input: dx = g / x.
    pub fn log(&self) -> Tensor {
        let out = unary::map(self, |x| x.ln());
        let saved = self.detach();
        record(out, &[self], |_| LogBackward { saved })
    }
}
