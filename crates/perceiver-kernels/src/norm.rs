//! LayerNorm rows.

use crate::elementwise::as_uninit;
use crate::reduce::{sum16, sum_sq_dev16};
use std::mem::MaybeUninit;

/// LayerNorm of one row into `y` (`(x - mean) · rstd`, then the optional scale `w` and offset
/// `b`); returns the mean and the reciprocal standard deviation. Shared by `Tensor::layer_norm`
/// and the fused cross-attention.
#[inline(always)]
pub fn layer_norm_row(
    x: &[f32],
    y: &mut [f32],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    layer_norm_row_uninit(x, as_uninit(y), w, b, eps)
}

/// [`layer_norm_row`] into a row that need not be initialised (every element is written), so
/// an output buffer needs no zero-filling first. With AVX-512, module `avx512`.
#[inline(always)]
pub fn layer_norm_row_uninit(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    assert!(
        y.len() == x.len()
            && w.is_none_or(|w| w.len() == x.len())
            && b.is_none_or(|b| b.len() == x.len()),
        "layer_norm_row: the row, its output, scale and offset must have one length"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::avx512::available() {
        // SAFETY: the CPU has AVX-512F; the lengths were checked above.
        return unsafe { crate::avx512::layer_norm_row(x, y, w, b, eps) };
    }
    layer_norm_row_portable(x, y, w, b, eps)
}

/// [`layer_norm_row_uninit`] in portable code (vectorised by the compiler inside `simd!`).
#[inline(always)]
pub(crate) fn layer_norm_row_portable(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    let inv_d = 1.0 / x.len() as f32;
    let mu = sum16(x) * inv_d;
    let rs = 1.0 / (sum_sq_dev16(x, mu) * inv_d + eps).sqrt();
    match (w, b) {
        (Some(w), Some(b)) => {
            for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                y.write((x - mu) * rs * w + b);
            }
        }
        (Some(w), None) => {
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                y.write((x - mu) * rs * w);
            }
        }
        (None, Some(b)) => {
            for ((y, &x), &b) in y.iter_mut().zip(x).zip(b) {
                y.write((x - mu) * rs + b);
            }
        }
        (None, None) => {
            for (y, &x) in y.iter_mut().zip(x) {
                y.write((x - mu) * rs);
            }
        }
    }
    (mu, rs)
}
