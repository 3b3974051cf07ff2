//! `gelu`: the Gaussian error linear unit, exact (erf) or tanh-approximated. The rule saves the
//! input.
//!
//! - exact: `y = x Φ(x) = 0.5 x (1 + erf(x / √2))`, `dy/dx = Φ(x) + x φ(x)`;
//! - tanh: `y = 0.5 x (1 + tanh(u))`, `u = √(2/π) (x + 0.044715 x³)`,
//!   `dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) √(2/π) (1 + 3·0.044715 x²)`.

use super::unary;
use crate::autograd::{record, Backward};
use crate::Tensor;

/// Which GELU: PyTorch's default exact form, or the tanh approximation (DeepMind's JAX code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluKind {
    /// `0.5 x (1 + erf(x / √2))`.
    #[default]
    Erf,
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    Tanh,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const INV_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + crate::kernels::fast_erf(x * INV_SQRT_2))
}

#[inline(always)]
fn gelu_erf_grad(x: f32) -> f32 {
    gelu_erf_and_grad(x).1
}

#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + crate::kernels::fast_tanh(u))
}

#[inline(always)]
fn gelu_tanh_grad(x: f32) -> f32 {
    gelu_tanh_and_grad(x).1
}

/// `(gelu(x), gelu'(x))` (exact form), sharing the erf.
#[inline(always)]
pub(crate) fn gelu_erf_and_grad(x: f32) -> (f32, f32) {
    let cdf = 0.5 * (1.0 + crate::kernels::fast_erf(x * INV_SQRT_2));
    let pdf = INV_SQRT_2PI * crate::kernels::fast_exp(-0.5 * x * x);
    (x * cdf, cdf + x * pdf)
}

/// `(gelu(x), gelu'(x))` (tanh form), sharing the tanh.
#[inline(always)]
pub(crate) fn gelu_tanh_and_grad(x: f32) -> (f32, f32) {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let t = crate::kernels::fast_tanh(u);
    let y = 0.5 * x * (1.0 + t);
    let d =
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    (y, d)
}

#[inline(always)]
fn gelu_erf_bwd(g: f32, x: f32) -> f32 {
    g * gelu_erf_grad(x)
}

#[inline(always)]
fn gelu_tanh_bwd(g: f32, x: f32) -> f32 {
    g * gelu_tanh_grad(x)
}

struct GeluBackward {
    x: Tensor,
    kind: GeluKind,
}

impl Backward for GeluBackward {
    fn name(&self) -> &'static str {
        "gelu"
    }
    fn backward(&self, g: &Tensor, _needs: &[bool]) -> Vec<Option<Tensor>> {
        let grad = match self.kind {
            GeluKind::Erf => unary::zip(g, &self.x, gelu_erf_bwd),
            GeluKind::Tanh => unary::zip(g, &self.x, gelu_tanh_bwd),
        };
        vec![Some(grad)]
    }
}

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
