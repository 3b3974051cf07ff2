//! `max_pool2d`: the maximum over sliding windows of channels-last images `[batch, H, W, C]`,
//! per channel, with PyTorch's semantics: padding counts as `-∞` (never selected), the
//! output size rounds down, the first maximum in the window's row-major order wins ties,
//! and a NaN in a window is its maximum (the last NaN, as PyTorch's CPU kernel).
//!
//! The forward runs in parallel over output rows and keeps, when a gradient is needed, the
//! input pixel each output element came from; the backward adds each output gradient onto
//! that pixel (in parallel over images).

use super::window::Window;
use perceiver_kernels::PAR_THRESHOLD;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, Result, Tensor};
use rayon::prelude::*;

/// Max pooling of `x: [batch, H, W, C]` with a `kernel` window moved by `stride`, over the
/// input padded by `padding` (`(rows, columns)` each; `-∞` padding, at most half the kernel
/// as PyTorch requires): the output is `[batch, Ho, Wo, C]` with
/// `Ho = (H + 2·ph - kh) / sh + 1` (PyTorch's `MaxPool2d`, without dilation or ceil mode).
///
/// ```
/// use perceiver_nn::ops::max_pool2d;
/// use perceiver_tensor::Tensor;
/// let x = Tensor::arange(0.0, 16.0, 1.0)?.reshape(&[1, 4, 4, 1])?;
/// let y = max_pool2d(&x, (3, 3), (2, 2), (1, 1))?;
/// assert_eq!(y.to_vec(), vec![5.0, 7.0, 13.0, 15.0]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn max_pool2d(
    x: &Tensor,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    const OP: &str = "max_pool2d";
    let win = Window::new(OP, x.shape(), kernel, stride, padding)?;
    if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
        return Err(Error::invalid(
            OP,
            format!("the padding {padding:?} must be at most half the kernel {kernel:?}"),
        ));
    }
    apply_custom(MaxPoolOp { win }, &[Some(x)])
}

/// The op on `[x]`, arguments checked by [`max_pool2d`].
struct MaxPoolOp {
    win: Window,
}

struct MaxPoolBackward {
    /// Per output element, the pixel `iy·W + ix` of its image that holds the maximum.
    argmax: Vec<usize>,
}

impl CustomOp for MaxPoolOp {
    type Saved = MaxPoolBackward;
    const NAME: &'static str = "max_pool2d";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<MaxPoolBackward> {
        let Some(x) = inputs[0] else {
            return Err(Error::invalid("max_pool2d", "needs x"));
        };
        let w = self.win;
        let xd = x.contiguous_data();
        let keep = needs[0];
        let len = w.b * w.out_pixels() * w.c;
        let mut y = vec![0.0f32; len];
        let mut argmax = vec![0usize; if keep { len } else { 0 }];
        // one output row (b, oy): `wo·c` values and, when kept, their pixels
        let body = |r: usize, yr: &mut [f32], ar: Option<&mut [usize]>| {
            let (b, oy) = (r / w.ho, r % w.ho);
            let img = &xd[b * w.image_len()..(b + 1) * w.image_len()];
            let mut arg = vec![0usize; w.c];
            let mut ar = ar;
            for (ox, out) in yr.chunks_mut(w.c).enumerate() {
                let mut first = true;
                for ki in 0..w.kh {
                    let Some(iy) = w.in_y(oy, ki) else { continue };
                    for kj in 0..w.kw {
                        let Some(ix) = w.in_x(ox, kj) else { continue };
                        let p = iy * w.w + ix;
                        let vals = &img[p * w.c..(p + 1) * w.c];
                        if first {
                            out.copy_from_slice(vals);
                            arg.fill(p);
                            first = false;
                            continue;
                        }
                        for ((o, a), &v) in out.iter_mut().zip(&mut arg).zip(vals) {
                            if v > *o || v.is_nan() {
                                (*o, *a) = (v, p);
                            }
                        }
                    }
                }
                if let Some(ar) = ar.as_deref_mut() {
                    ar[ox * w.c..(ox + 1) * w.c].copy_from_slice(&arg);
                }
            }
        };
        let row = w.wo * w.c;
        if row > 0 {
            if keep {
                if len >= PAR_THRESHOLD {
                    y.par_chunks_mut(row)
                        .zip(argmax.par_chunks_mut(row))
                        .enumerate()
                        .for_each(|(r, (yr, ar))| body(r, yr, Some(ar)));
                } else {
                    y.chunks_mut(row)
                        .zip(argmax.chunks_mut(row))
                        .enumerate()
                        .for_each(|(r, (yr, ar))| body(r, yr, Some(ar)));
                }
            } else if len >= PAR_THRESHOLD {
                y.par_chunks_mut(row)
                    .enumerate()
                    .for_each(|(r, yr)| body(r, yr, None));
            } else {
                y.chunks_mut(row)
                    .enumerate()
                    .for_each(|(r, yr)| body(r, yr, None));
            }
        }
        let y = Tensor::from_parts(y, &[w.b, w.ho, w.wo, w.c]);
        Ok((y, keep.then_some(MaxPoolBackward { argmax })))
    }

    fn backward(&self, saved: &MaxPoolBackward, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let w = self.win;
        let gd = g.contiguous_data();
        let mut dx = vec![0.0f32; w.b * w.image_len()];
        let per_out = w.out_pixels() * w.c;
        let body = |(b, d): (usize, &mut [f32])| {
            let (gs, am) = (
                &gd[b * per_out..(b + 1) * per_out],
                &saved.argmax[b * per_out..(b + 1) * per_out],
            );
            for (i, (&gv, &p)) in gs.iter().zip(am).enumerate() {
                d[p * w.c + i % w.c] += gv;
            }
        };
        if w.image_len() > 0 {
            if dx.len() + gd.len() >= PAR_THRESHOLD {
                dx.par_chunks_mut(w.image_len()).enumerate().for_each(body);
            } else {
                dx.chunks_mut(w.image_len()).enumerate().for_each(body);
            }
        }
        vec![needs[0].then(|| Tensor::from_parts(dx, &[w.b, w.h, w.w, w.c]))]
    }
}
