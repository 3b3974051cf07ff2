//! GELU, exact (erf) or tanh-approximated, as scalar functions with their derivatives, and the
//! bias + GELU epilogue of a Linear layer's rows.
//!
//! - exact: `y = x Φ(x) = 0.5 x (1 + erf(x / √2))`, `dy/dx = Φ(x) + x φ(x)`;
//! - tanh: `y = 0.5 x (1 + tanh(u))`, `u = √(2/π) (x + 0.044715 x³)`,
//!   `dy/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh² u) √(2/π) (1 + 3·0.044715 x²)`.

use std::mem::MaybeUninit;

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

/// Exact GELU `x·Φ(x)`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + crate::math::fast_erf(x * INV_SQRT_2))
}

#[inline(always)]
fn gelu_erf_grad(x: f32) -> f32 {
    gelu_erf_and_grad(x).1
}

/// Tanh-approximated GELU.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + crate::math::fast_tanh(u))
}

#[inline(always)]
fn gelu_tanh_grad(x: f32) -> f32 {
    gelu_tanh_and_grad(x).1
}

/// `(gelu(x), gelu'(x))` (exact form), sharing the erf.
#[inline(always)]
pub fn gelu_erf_and_grad(x: f32) -> (f32, f32) {
    let cdf = 0.5 * (1.0 + crate::math::fast_erf(x * INV_SQRT_2));
    let pdf = INV_SQRT_2PI * crate::math::fast_exp(-0.5 * x * x);
    (x * cdf, cdf + x * pdf)
}

/// `(gelu(x), gelu'(x))` (tanh form), sharing the tanh.
#[inline(always)]
pub fn gelu_tanh_and_grad(x: f32) -> (f32, f32) {
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let t = crate::math::fast_tanh(u);
    let y = 0.5 * x * (1.0 + t);
    let d =
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
    (y, d)
}

/// `g · gelu'(x)` (exact form).
#[inline(always)]
pub fn gelu_erf_bwd(g: f32, x: f32) -> f32 {
    g * gelu_erf_grad(x)
}

/// `g · gelu'(x)` (tanh form).
#[inline(always)]
pub fn gelu_tanh_bwd(g: f32, x: f32) -> f32 {
    g * gelu_tanh_grad(x)
}

/// `y = act(y + b)` on one row segment; with `(kind, true)` also `d = act'(y + b)`.
#[inline(always)]
pub fn bias_act_row(
    y: &mut [f32],
    d: &mut [MaybeUninit<f32>],
    bias: Option<&[f32]>,
    act: Option<(GeluKind, bool)>,
) {
    #[cfg(target_arch = "x86_64")]
    if matches!(act, Some((GeluKind::Erf, _))) && crate::avx512::available() {
        let d = matches!(act, Some((_, true))).then_some(d);
        // SAFETY: the CPU has AVX-512F (the lengths are checked inside; the epilogue slices
        // the bias and `d` to the block's columns).
        unsafe { crate::avx512::bias_gelu_erf(y, d, bias) };
        return;
    }
    if let Some(b) = bias {
        y.iter_mut().zip(b).for_each(|(v, bb)| *v += bb);
    }
    match act {
        Some((GeluKind::Erf, true)) => {
            for (y, d) in y.iter_mut().zip(d) {
                let (v, dv) = gelu_erf_and_grad(*y);
                *y = v;
                d.write(dv);
            }
        }
        Some((GeluKind::Tanh, true)) => {
            for (y, d) in y.iter_mut().zip(d) {
                let (v, dv) = gelu_tanh_and_grad(*y);
                *y = v;
                d.write(dv);
            }
        }
        Some((GeluKind::Erf, false)) => y.iter_mut().for_each(|y| *y = gelu_erf(*y)),
        Some((GeluKind::Tanh, false)) => y.iter_mut().for_each(|y| *y = gelu_tanh(*y)),
        None => {}
    }
}
