//! Scalar ops: `a * x + b` and its sugar (`add_scalar`, `mul_scalar`, `sub_scalar`,
//! `div_scalar`). The rule saves nothing: dx = a g.

use super::unary;
use crate::autograd::record;
use crate::Tensor;

struct AffineBackward {
    mul: f32,
}

backward!(AffineBackward, "affine", |saved, g, _needs| {
    let m = saved.mul;
    vec![Some(unary::map(g, |g| g * m))]
});

impl Tensor {
    /// Elementwise `mul * x + add`.
    pub fn affine(&self, mul: f32, add: f32) -> Tensor {
        let out = unary::map(self, |x| x * mul + add);
        record(out, &[self], |_| AffineBackward { mul })
    }

    /// Elementwise `x + s`.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, s)
    }

    /// Elementwise `x - s`.
    pub fn sub_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, -s)
    }

    /// Elementwise `x * s`.
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.affine(s, 0.0)
    }

    /// Elementwise `x / s`.
    pub fn div_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0 / s, 0.0)
    }
}
