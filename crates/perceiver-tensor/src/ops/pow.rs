//! `powf`: elementwise `x^p` for a scalar exponent. The rule saves the input:
//! dx = g p x^(p-1).

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct PowBackward {
    x: Tensor,
    p: f32,
}

backward!(PowBackward, "powf", |saved, g, _needs| {
    let p = saved.p;
    vec![Some(unary::zip(g, &saved.x, |g, x| {
        if p == 0.0 {
            0.0
        } else {
            g * p * x.powf(p - 1.0)
        }
    }))]
});

impl Tensor {
    /// Elementwise `x^p` (`f32::powf`).
    pub fn powf(&self, p: f32) -> Tensor {
        let out = unary::map(self, |x| x.powf(p));
        let x = self.detach();
        record(out, &[self], |_| PowBackward { x, p })
    }
}
