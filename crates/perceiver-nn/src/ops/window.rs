//! The sliding-window geometry shared by [`conv2d`](super::conv2d) and
//! [`max_pool2d`](super::max_pool2d) on channels-last images `[batch, H, W, C]`.

use perceiver_tensor::{Error, Result};

/// Sizes of a window sliding over `[b, h, w, c]` images: kernel `kh x kw`, strides `sh, sw`,
/// padding `ph, pw` on both sides, and the output's `ho x wo` (PyTorch's floor rule:
/// `ho = (h + 2·ph - kh) / sh + 1`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Window {
    /// The geometry of a `kernel` window with `stride` and `padding` over images of `shape`
    /// (`[b, h, w, c]`); an error unless the shape has rank 4, the kernel and strides are
    /// positive and the padded image holds at least one window.
    #[track_caller]
    pub fn new(
        op: &'static str,
        shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Window> {
        let &[b, h, w, c] = shape else {
            return Err(Error::invalid(
                op,
                format!("the input must be [batch, H, W, C], got {shape:?}"),
            ));
        };
        let ((kh, kw), (sh, sw), (ph, pw)) = (kernel, stride, padding);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "kernel and stride must be positive, got kernel {kernel:?}, stride {stride:?}"
                ),
            ));
        }
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        if hp < kh || wp < kw {
            return Err(Error::invalid(
                op,
                format!(
                    "the padded input {hp}x{wp} is smaller than the kernel {kh}x{kw} (input {shape:?}, padding {padding:?})"
                ),
            ));
        }
        Ok(Window {
            b,
            h,
            w,
            c,
            kh,
            kw,
            sh,
            sw,
            ph,
            pw,
            ho: (hp - kh) / sh + 1,
            wo: (wp - kw) / sw + 1,
        })
    }

    /// The input row under kernel row `ki` of output row `oy` (`None` in the padding).
    #[inline]
    pub fn in_y(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.sh + ki)
            .checked_sub(self.ph)
            .filter(|&y| y < self.h)
    }

    /// The input column under kernel column `kj` of output column `ox` (`None` in the padding).
    #[inline]
    pub fn in_x(&self, ox: usize, kj: usize) -> Option<usize> {
        (ox * self.sw + kj)
            .checked_sub(self.pw)
            .filter(|&x| x < self.w)
    }

    /// Elements of one input image, `h·w·c`.
    pub fn image_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Output pixels per image, `ho·wo`.
    pub fn out_pixels(&self) -> usize {
        self.ho * self.wo
    }
}
