//! `log`: natural logarithm; the rule saves the input: dx = g / x.

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct LogBackward {
    saved: Tensor,
}

backward!(LogBackward, "log", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.saved, |g, y| g / y)
)]);

impl Tensor {
    /// Elementwise natural logarithm; the rule saves the input: dx = g / x.
    pub fn log(&self) -> Tensor {
        let out = unary::map(self, |x| x.ln());
        let saved = self.detach();
        record(out, &[self], |_| LogBackward { saved })
    }
}
