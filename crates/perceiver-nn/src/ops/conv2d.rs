//! `conv2d`: a 2-D convolution of channels-last images `[batch, H, W, Cin]` with a PyTorch
//! weight `[Cout, Cin, kh, kw]`, as im2col and one GEMM.
//!
//! Each output pixel's receptive field becomes one row of a patch matrix `cols: [pixels, K]`,
//! `K = kh·kw·Cin`, in the order `(ki, kj, c)` (the input's own order, so each kernel tap is a
//! contiguous copy of `Cin` channels; padding taps are zeros). The weight, permuted once to
//! `[Cout, kh, kw, Cin]`, is the matrix `W2: [Cout, K]`, and `y = cols·W2ᵀ + b` is the
//! output `[pixels, Cout]`, channels-last already. The patch rows are built in parallel
//! (one task per output row), the GEMM is threaded by [`perceiver_kernels::gemm`], and the
//! images go through in chunks whose patch matrix stays under 16 MiB. A 1x1 kernel with
//! stride 1 and no padding uses the input as the patch matrix.
//!
//! Backward, per chunk, with `g: [pixels, Cout]`: `dcols = g·W2` scattered back onto the input
//! pixels (col2im, in parallel over images), `dW2 = Σ gᵀ·cols` (the patches rebuilt from the
//! saved input, not kept), `db = Σ_pixels g`.

use super::window::Window;
use perceiver_kernels::gemm::{gemm, gemm_new, MatRef};
use perceiver_kernels::PAR_THRESHOLD;
use perceiver_tensor::layout::check_vector;
use perceiver_tensor::ops::sum_axes_raw;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, Result, Tensor};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// Patch-matrix elements per chunk of images (16 MiB of f32).
const COLS_LIMIT: usize = 1 << 22;

/// A 2-D convolution of `x: [batch, H, W, Cin]` (channels-last) with `weight: [Cout, Cin, kh,
/// kw]` (PyTorch's layout, as checkpoints store it) and an optional `bias: [Cout]`, with
/// `stride` and zero `padding` as `(rows, columns)`: the output is `[batch, Ho, Wo, Cout]`
/// with `Ho = (H + 2·ph - kh) / sh + 1` (PyTorch's `Conv2d`, without dilation or groups).
///
/// ```
/// use perceiver_nn::ops::conv2d;
/// use perceiver_tensor::Tensor;
/// let x = Tensor::ones(&[2, 16, 12, 3]);
/// let w = Tensor::ones(&[64, 3, 7, 7]);
/// let y = conv2d(&x, &w, None, (2, 2), (3, 3))?;
/// assert_eq!(y.shape(), &[2, 8, 6, 64]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let &[cout, cin, kh, kw] = weight.shape() else {
        return Err(Error::invalid(
            OP,
            format!(
                "the weight must be [Cout, Cin, kh, kw], got {:?}",
                weight.shape()
            ),
        ));
    };
    let win = Window::new(OP, x.shape(), (kh, kw), stride, padding)?;
    if win.c != cin {
        return Err(Error::shape(
            OP,
            "the input's channels (last axis) must equal the weight's Cin (second axis)",
            x.shape(),
            weight.shape(),
        ));
    }
    check_vector(OP, bias, cout, || "the bias must be [Cout]".into())?;
    apply_custom(Conv2dOp { win, cout }, &[Some(x), Some(weight), bias])
}

/// The op on `[x, weight, bias]`, shapes checked by [`conv2d`].
struct Conv2dOp {
    win: Window,
    cout: usize,
}

struct Conv2dBackward {
    /// The input, contiguous, when the weight needs a gradient.
    x: Option<Tensor>,
    /// `W2: [Cout, K]`, when the input needs a gradient.
    w2: Option<Tensor>,
}

impl Conv2dOp {
    /// Patch columns `K`.
    fn k(&self) -> usize {
        self.win.kh * self.win.kw * self.win.c
    }

    /// Images per chunk (at least one).
    fn chunk(&self) -> usize {
        (COLS_LIMIT / (self.win.out_pixels() * self.k()).max(1)).max(1)
    }

    /// The image ranges of the chunks.
    fn chunks(&self) -> impl Iterator<Item = Range<usize>> {
        let (b, per) = (self.win.b, self.chunk());
        (0..b).step_by(per).map(move |s| s..(s + per).min(b))
    }

    /// Whether the input is its own patch matrix (1x1 kernel, stride 1, no padding).
    fn pointwise(&self) -> bool {
        let w = &self.win;
        (w.kh, w.kw, w.sh, w.sw, w.ph, w.pw) == (1, 1, 1, 1, 0, 0)
    }

    /// The patch matrix of the images `imgs` of the contiguous input `x`.
    fn patches<'a>(&self, x: &'a [f32], imgs: Range<usize>) -> Cow<'a, [f32]> {
        let w = &self.win;
        if self.pointwise() {
            return Cow::Borrowed(&x[imgs.start * w.image_len()..imgs.end * w.image_len()]);
        }
        let k = self.k();
        let mut cols = vec![0.0f32; imgs.len() * w.out_pixels() * k];
        let body = |(r, out): (usize, &mut [f32])| {
            let (b, oy) = (imgs.start + r / w.ho, r % w.ho);
            for (ox, patch) in out.chunks_mut(k).enumerate() {
                for ki in 0..w.kh {
                    let Some(iy) = w.in_y(oy, ki) else { continue };
                    let row = (b * w.h + iy) * w.w;
                    for kj in 0..w.kw {
                        let Some(ix) = w.in_x(ox, kj) else { continue };
                        let src = &x[(row + ix) * w.c..][..w.c];
                        patch[(ki * w.kw + kj) * w.c..][..w.c].copy_from_slice(src);
                    }
                }
            }
        };
        let row_len = (w.wo * k).max(1);
        if cols.len() >= PAR_THRESHOLD {
            cols.par_chunks_mut(row_len).enumerate().for_each(body);
        } else {
            cols.chunks_mut(row_len).enumerate().for_each(body);
        }
        Cow::Owned(cols)
    }

    /// Adds the patch gradients `dcols` of the images `imgs` onto their pixels in `dx` (the
    /// whole input's gradient), in parallel over images.
    fn scatter(&self, dcols: &[f32], imgs: Range<usize>, dx: &mut [f32]) {
        let (w, k) = (&self.win, self.k());
        let img = w.image_len();
        let body = |(d, cols): (&mut [f32], &[f32])| {
            for (p, patch) in cols.chunks(k).enumerate() {
                let (oy, ox) = (p / w.wo, p % w.wo);
                for ki in 0..w.kh {
                    let Some(iy) = w.in_y(oy, ki) else { continue };
                    for kj in 0..w.kw {
                        let Some(ix) = w.in_x(ox, kj) else { continue };
                        let dst = &mut d[(iy * w.w + ix) * w.c..][..w.c];
                        let src = &patch[(ki * w.kw + kj) * w.c..][..w.c];
                        dst.iter_mut().zip(src).for_each(|(a, b)| *a += b);
                    }
                }
            }
        };
        let dx = &mut dx[imgs.start * img..imgs.end * img];
        let per_img = (w.out_pixels() * k).max(1);
        if img == 0 {
            return;
        }
        if dcols.len() >= PAR_THRESHOLD {
            dx.par_chunks_mut(img)
                .zip(dcols.par_chunks(per_img))
                .for_each(body);
        } else {
            dx.chunks_mut(img).zip(dcols.chunks(per_img)).for_each(body);
        }
    }
}

impl CustomOp for Conv2dOp {
    type Saved = Conv2dBackward;
    const NAME: &'static str = "conv2d";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<Conv2dBackward> {
        let (Some(x), Some(weight)) = (inputs[0], inputs[1]) else {
            return Err(Error::invalid("conv2d", "needs x and a weight"));
        };
        let (win, cout, k) = (&self.win, self.cout, self.k());
        let x = x.contiguous();
        let w2 = weight
            .permute(&[0, 2, 3, 1])?
            .contiguous()
            .reshape_raw(&[cout, k]);
        let xd = x.contiguous_data();
        let mut y = vec![0.0f32; win.b * win.out_pixels() * cout];
        if k > 0 && cout > 0 {
            for imgs in self.chunks() {
                let rows = imgs.len() * win.out_pixels();
                let cols = self.patches(&xd, imgs.clone());
                let out = &mut y[imgs.start * win.out_pixels() * cout..][..rows * cout];
                gemm(
                    1.0,
                    MatRef::row_major(&cols, rows, k),
                    w2.mat().t(),
                    0.0,
                    out,
                );
            }
        }
        if let Some(b) = inputs[2] {
            let b = b.contiguous_data();
            let add = |row: &mut [f32]| row.iter_mut().zip(b.iter()).for_each(|(v, b)| *v += b);
            if y.len() >= PAR_THRESHOLD {
                y.par_chunks_mut(cout.max(1)).for_each(add);
            } else {
                y.chunks_mut(cout.max(1)).for_each(add);
            }
        }
        let y = Tensor::from_parts(y, &[win.b, win.ho, win.wo, cout]);
        let saved = needs.iter().any(|&n| n).then(|| Conv2dBackward {
            x: needs[1].then(|| x.clone()),
            w2: needs[0].then(|| w2.clone()),
        });
        Ok((y, saved))
    }

    fn backward(&self, saved: &Conv2dBackward, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (win, cout, k) = (&self.win, self.cout, self.k());
        let gd = g.contiguous_data();
        let mut dx = needs[0].then(|| vec![0.0f32; win.b * win.image_len()]);
        let mut dw2 = needs[1].then(|| vec![0.0f32; cout * k]);
        let xd = saved.x.as_ref().map(|x| x.contiguous_data());
        if k > 0 && cout > 0 {
            for imgs in self.chunks() {
                let rows = imgs.len() * win.out_pixels();
                let gm = MatRef::row_major(&gd[imgs.start * win.out_pixels() * cout..], rows, cout);
                if let (Some(dx), Some(w2)) = (dx.as_mut(), saved.w2.as_ref()) {
                    let dcols = gemm_new(1.0, gm, w2.mat());
                    self.scatter(&dcols, imgs.clone(), dx);
                }
                if let (Some(dw2), Some(xd)) = (dw2.as_mut(), xd.as_ref()) {
                    let cols = self.patches(xd, imgs.clone());
                    gemm(1.0, gm.t(), MatRef::row_major(&cols, rows, k), 1.0, dw2);
                }
            }
        }
        let dx = dx.map(|d| Tensor::from_parts(d, &[win.b, win.h, win.w, win.c]));
        let dw = dw2.map(|d| {
            Tensor::from_parts(d, &[cout, win.kh, win.kw, win.c])
                .permute(&[0, 3, 1, 2])
                .expect("a permutation of 4 axes")
        });
        let db = needs[2].then(|| {
            let rows = win.b * win.out_pixels();
            sum_axes_raw(&g.reshape_raw(&[rows, cout]), &[0])
        });
        vec![dx, dw, db]
    }
}
