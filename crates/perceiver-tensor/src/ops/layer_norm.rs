//! `layer_norm` over the last axis, fused forward and backward.
//!
//! Forward: `y = (x - μ) · rstd · w + b` with `rstd = 1 / √(var + eps)` (biased variance),
//! computed in one pass per row with a two-pass mean/variance for accuracy. The rule saves the
//! input (shared, not copied), `μ` and `rstd` per row, and the weight. Backward per row, with
//! `x̂ = (x - μ)·rstd` and `ĝ = g·w`: `dx = rstd · (ĝ - mean(ĝ) - x̂ · mean(ĝ·x̂))`,
//! `dw = Σ_rows g·x̂`, `db = Σ_rows g`.

use crate::autograd::record;
use crate::{Error, Result, Tensor};
use perceiver_kernels as kernels;
use rayon::prelude::*;
use std::mem::MaybeUninit;

struct LayerNormBackward {
    x: Tensor,
    weight: Option<Tensor>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
    has_weight: bool,
    has_bias: bool,
}

backward!(LayerNormBackward, "layer_norm", |saved, g, needs| {
    let d = *g.shape().last().expect("rank >= 1");
    let x = saved.x.contiguous_data();
    let gd = g.contiguous_data();
    let w = saved.weight.as_ref().map(|w| w.to_vec());
    let rows = saved.mean.len();
    let mut dx = vec![0.0f32; if needs[0] { x.len() } else { 0 }];
    let want_wb = (saved.has_weight && needs[1]) || (saved.has_bias && needs[2]);
    let rows_per = if x.len() >= kernels::PAR_THRESHOLD {
        (8192 / d.max(1)).max(1)
    } else {
        rows.max(1)
    };
    let process = |r0: usize, dx_chunk: &mut [f32]| -> (Vec<f32>, Vec<f32>) {
        let mut dw = vec![0.0f32; if want_wb { d } else { 0 }];
        let mut db = vec![0.0f32; if want_wb { d } else { 0 }];
        let nrows = if needs[0] {
            dx_chunk.len() / d.max(1)
        } else {
            rows_per.min(rows - r0)
        };
        let mut xhat = vec![0.0f32; d];
        let mut gh = vec![0.0f32; d];
        perceiver_kernels::simd!(for r in 0..nrows {
            let row = r0 + r;
            let xr = &x[row * d..(row + 1) * d];
            let gr = &gd[row * d..(row + 1) * d];
            let (mu, rs) = (saved.mean[row], saved.rstd[row]);
            // Iterators rather than indices, so the loops carry no bounds checks and
            // vectorise.
            for (xh, &xv) in xhat.iter_mut().zip(xr) {
                *xh = (xv - mu) * rs;
            }
            if want_wb {
                for (((dwi, dbi), &g), &xh) in
                    dw.iter_mut().zip(db.iter_mut()).zip(gr).zip(xhat.iter())
                {
                    *dwi += g * xh;
                    *dbi += g;
                }
            }
            if needs[0] {
                match &w {
                    Some(w) => {
                        for ((o, &g), &wv) in gh.iter_mut().zip(gr).zip(w) {
                            *o = g * wv;
                        }
                    }
                    None => gh.copy_from_slice(gr),
                }
                let inv_d = 1.0 / d as f32;
                let m1 = kernels::sum(&gh) * inv_d;
                let m2 = kernels::dot(&gh, &xhat) * inv_d;
                let out = &mut dx_chunk[r * d..(r + 1) * d];
                for ((o, &g), &xh) in out.iter_mut().zip(gh.iter()).zip(xhat.iter()) {
                    *o = rs * (g - m1 - xh * m2);
                }
            }
        });
        (dw, db)
    };
    let (dw, db) = if needs[0] {
        dx.par_chunks_mut(rows_per * d)
            .enumerate()
            .map(|(c, chunk)| process(c * rows_per, chunk))
            .reduce(
                || {
                    (
                        vec![0.0; if want_wb { d } else { 0 }],
                        vec![0.0; if want_wb { d } else { 0 }],
                    )
                },
                |mut a, b| {
                    kernels::add_assign(&mut a.0, &b.0);
                    kernels::add_assign(&mut a.1, &b.1);
                    a
                },
            )
    } else {
        (0..rows.div_ceil(rows_per))
            .into_par_iter()
            .map(|c| process(c * rows_per, &mut []))
            .reduce(
                || (vec![0.0; d], vec![0.0; d]),
                |mut a, b| {
                    kernels::add_assign(&mut a.0, &b.0);
                    kernels::add_assign(&mut a.1, &b.1);
                    a
                },
            )
    };
    let mut out = vec![needs[0].then(|| Tensor::from_parts(dx, g.shape()))];
    if saved.has_weight {
        out.push(needs[1].then(|| Tensor::from_parts(dw.clone(), &[d])));
    } else {
        out.push(None);
    }
    if saved.has_bias {
        out.push(needs[2].then(|| Tensor::from_parts(db, &[d])));
    } else {
        out.push(None);
    }
    out
});

impl Tensor {
    /// Layer normalisation over the last axis with optional scale `weight` and offset `bias`
    /// (each of shape `[last]`) and `eps` added to the variance.
    #[track_caller]
    pub fn layer_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Result<Tensor> {
        if self.rank() == 0 {
            return Err(Error::invalid(
                "layer_norm",
                "needs rank >= 1, got a scalar",
            ));
        }
        let d = *self.shape().last().expect("rank >= 1");
        for (name, p) in [("weight", weight), ("bias", bias)] {
            if let Some(p) = p {
                if p.shape() != [d] {
                    return Err(Error::shape(
                        "layer_norm",
                        format!("{name} must have shape [last dim of the input]"),
                        self.shape(),
                        p.shape(),
                    ));
                }
            }
        }
        if !(eps >= 0.0) {
            return Err(Error::invalid(
                "layer_norm",
                format!("eps must be >= 0, got {eps}"),
            ));
        }
        let x = self.contiguous_data();
        let rows = x.len().checked_div(d).unwrap_or(0);
        let w = weight.map(|w| w.to_vec());
        let b = bias.map(|b| b.to_vec());
        let mut mean = vec![0.0f32; rows];
        let mut rstd = vec![0.0f32; rows];
        // Written in full below (every row), so not zero-filled first: with freed memory reused
        // (mimalloc in the binaries, `memory::retain_freed_memory` elsewhere) a zeroed
        // allocation is a memset.
        let mut y: Vec<f32> = Vec::with_capacity(x.len());
        if let Some(rows_per) = 8192usize.checked_div(d) {
            let (w, b) = (w.as_deref(), b.as_deref());
            let rows_per = rows_per.max(1);
            let body =
                |y: &mut [MaybeUninit<f32>], x: &[f32], mean: &mut [f32], rstd: &mut [f32]| {
                    perceiver_kernels::simd!(for (((yr, xr), m), r) in y
                        .chunks_mut(d)
                        .zip(x.chunks(d))
                        .zip(mean.iter_mut())
                        .zip(rstd.iter_mut())
                    {
                        (*m, *r) = kernels::layer_norm_row_uninit(xr, yr, w, b, eps);
                    })
                };
            let y = &mut y.spare_capacity_mut()[..x.len()];
            if x.len() >= kernels::PAR_THRESHOLD {
                y.par_chunks_mut(rows_per * d)
                    .zip(x.par_chunks(rows_per * d))
                    .zip(
                        mean.par_chunks_mut(rows_per)
                            .zip(rstd.par_chunks_mut(rows_per)),
                    )
                    .for_each(|((y, x), (m, r))| body(y, x, m, r));
            } else {
                body(y, &x, &mut mean, &mut rstd);
            }
        }
        // SAFETY: with d > 0 every row of `y` was written above (rows = len / d); with d = 0
        // the length is 0.
        unsafe { y.set_len(x.len()) };
        let out = Tensor::from_parts(y, self.shape());
        let none = Tensor::scalar(0.0);
        let wt = weight.unwrap_or(&none);
        let bt = bias.unwrap_or(&none);
        let inputs: [&Tensor; 3] = [
            self,
            if weight.is_some() { wt } else { &none },
            if bias.is_some() { bt } else { &none },
        ];
        Ok(record(out, &inputs, |needs| LayerNormBackward {
            x: self.detach(),
            weight: if needs[0] {
                weight.map(|w| w.detach())
            } else {
                None
            },
            mean,
            rstd,
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        }))
    }
}
