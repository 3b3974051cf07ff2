//! `gelu`: the Gaussian error linear unit, exact (erf) or tanh-approximated. The rule saves the
//! input.
//!
//! - exact: `y = x Φ(x) = 0.5 x (1 + erf(x / √2))`, `dy/dx = Φ(x) + x φ(x)`;
//! - tanh: `y = 0.5 x (1 + tanh(u))`, `u = √(2/π) (x + 0.044715 x³)`,
//!   `dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) √(2/π) (1 + 3·0.044715 x²)`.

use super::unary;
use crate::autograd::record;
use crate::Tensor;
use perceiver_kernels::gelu::{gelu_erf, gelu_erf_bwd, gelu_tanh, gelu_tanh_bwd};
use perceiver_kernels::GeluKind;

struct GeluBackward {
    x: Tensor,
    kind: GeluKind,
}

backward!(GeluBackward, "gelu", |saved, g, _needs| {
    let grad = match saved.kind {
        GeluKind::Erf => unary::zip(g, &saved.x, gelu_erf_bwd),
        GeluKind::Tanh => unary::zip(g, &saved.x, gelu_tanh_bwd),
    };
    vec![Some(grad)]
});

impl Tensor {
    /// Elementwise GELU of the given kind.
    pub fn gelu(&self, kind: GeluKind) -> Tensor {
        let out = match kind {
            GeluKind::Erf => unary::map(self, gelu_erf),
            GeluKind::Tanh => unary::map(self, gelu_tanh),
        };
        let x = self.detach();
        record(out, &[self], |_| GeluBackward { x, kind })
    }
}
