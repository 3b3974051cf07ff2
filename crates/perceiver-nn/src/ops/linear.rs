//! `linear`: `act(x·Wᵀ + b)` over the last axis, fused.
//!
//! One GEMM over all rows (threaded by [`perceiver_kernels::gemm::gemm`]; the transposed weight is a strided
//! view) whose epilogue ([`perceiver_kernels::gemm::gemm_new_then`]) adds the bias and applies the
//! activation to each block of the output as soon as the GEMM finishes it, while it is in cache:
//! no separate pass over the output, no tensor per step. (A parallel pass after the GEMM is
//! slower, and per-panel GEMMs with the epilogue slower still, as each panel repacks the whole
//! weight.) With an activation and a graph being recorded, the epilogue also computes
//! the activation's derivative `act'(h)` (sharing its erf or tanh) and keeps it for the
//! backward, which then needs one multiplication instead of an erf and an exp.
//!
//! A residual can be added in the same epilogue ([`linear_add`]: `x·Wᵀ + b + r`, the
//! output projections of a pre-LayerNorm block), which saves a separate pass over the output.
//!
//! Backward, with `dh = g ⊙ act'(h)` (or `g` without an activation):
//! `dx = dh·W`, `dW = dhᵀ·x`, `db = Σ_rows dh`, and `dr = g` for a residual.

use perceiver_kernels as kernels;
use perceiver_kernels::gelu::bias_act_row;
use perceiver_kernels::gemm::{gemm_new, gemm_new_then, OutBlock};
use perceiver_tensor::layout::{check_vector, Shape};
use perceiver_tensor::ops::sum_axes_raw;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, GeluKind, Result, Tensor};
use std::mem::MaybeUninit;

/// A raw output pointer shared by the epilogue calls, which write disjoint blocks.
#[derive(Clone, Copy)]
struct SendPtr(*mut MaybeUninit<f32>);
// SAFETY: only used to write disjoint blocks of one buffer from the GEMM's threads.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut MaybeUninit<f32> {
        self.0
    }
}

struct LinearBackward {
    x: Option<Tensor>,
    w: Option<Tensor>,
    /// `act'(h)` per output element, with an activation.
    dact: Option<Tensor>,
    x_shape: Shape,
}

impl LinearBackward {
    /// The gradients of `[x, W, b, residual]` (as `needs` asks) from the output's `g`.
    fn grads(&self, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let out = *g.shape().last().expect("rank >= 1");
        let rows = g.numel() / out.max(1);
        let g2 = g.reshape_raw(&[rows, out]);
        let dh = match &self.dact {
            Some(d) => {
                let (gd, dd) = (g2.contiguous_data(), d.contiguous_data());
                Tensor::from_parts(kernels::zip_map(&gd, &dd, |g, d| g * d), &[rows, out])
            }
            None => g2.contiguous(),
        };
        let saved = (self.x.as_ref(), self.w.as_ref());
        let (dx, dw, db) = linear_grads(&dh, saved, [needs[0], needs[1], needs[2]], &self.x_shape);
        vec![dx, dw, db, needs[3].then(|| g.clone())]
    }
}

/// `dx = dh·W` (in the shape `x_shape`), `dW = dhᵀ·x` and `db = Σ_rows dh` for `dh: [rows,
/// out]`, each where `needs` asks for it (`x`, `W` saved for them), as fork-join jobs: on small
/// layers, where one GEMM barely gains from a second thread, each thread takes its own.
pub(crate) fn linear_grads(
    dh: &Tensor,
    (x, w): (Option<&Tensor>, Option<&Tensor>),
    needs: [bool; 3],
    x_shape: &[usize],
) -> (Option<Tensor>, Option<Tensor>, Option<Tensor>) {
    let (rows, out) = (dh.shape()[0], dh.shape()[1]);
    let dx = || {
        needs[0].then(|| {
            let w = w.expect("saved w");
            let data = gemm_new(1.0, dh.mat(), w.mat());
            Tensor::from_parts(data, &[rows, w.shape()[1]]).reshape_raw(x_shape)
        })
    };
    let dw_db = || {
        rayon::join(
            || {
                needs[1].then(|| {
                    let x = x.expect("saved x");
                    let data = gemm_new(1.0, dh.mat().t(), x.mat());
                    Tensor::from_parts(data, &[out, x.shape()[1]])
                })
            },
            || needs[2].then(|| sum_axes_raw(dh, &[0])),
        )
    };
    let (dx, (dw, db)) = rayon::join(dx, dw_db);
    (dx, dw, db)
}

/// `x` as `[rows, in]` rows with unit column stride (a copy only when they are strided).
pub(crate) fn as_rows(x: &Tensor, inp: usize) -> Tensor {
    let rows = x.numel() / inp.max(1);
    let x2 = x.detach().reshape_raw(&[rows, inp]);
    if x2.layout().strides()[1] == 1 || inp <= 1 {
        x2
    } else {
        x2.contiguous()
    }
}

/// The fused product, untracked: `act(x2·Wᵀ + b) [+ r]` for `x2: [rows, in]` and `W: [out,
/// in]`, and with `keep_dact` also `act'(x2·Wᵀ + b)` (else an empty vector). The bias,
/// activation and residual run on each block of the output as the GEMM finishes it (still in
/// cache), writing `act'(h)` at the same positions of `dact`; neither buffer is zero-filled.
pub(crate) fn linear_raw(
    x2: &Tensor,
    weight: &Tensor,
    bvec: Option<&[f32]>,
    act: Option<GeluKind>,
    keep_dact: bool,
    rvec: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (rows, out) = (x2.shape()[0], weight.shape()[0]);
    let keep_dact = keep_dact && act.is_some();
    let mut y = Vec::new();
    let mut dact: Vec<f32> = Vec::with_capacity(if keep_dact { rows * out } else { 0 });
    if out == 0 || rows == 0 {
        return (y, dact);
    }
    let dact_out = SendPtr(dact.spare_capacity_mut().as_mut_ptr());
    let dact_row = |i: usize, cols: &std::ops::Range<usize>| -> &mut [MaybeUninit<f32>] {
        // SAFETY: `dact` has capacity rows x out; the GEMM hands each output block to one
        // epilogue call, so these elements are written by that call alone.
        unsafe {
            std::slice::from_raw_parts_mut(dact_out.get().add(i * out + cols.start), cols.len())
        }
    };
    let kind = act.map(|a| (a, keep_dact));
    let epilogue = |blk: &mut OutBlock<'_>| {
        let cols = blk.cols();
        let bias = bvec.map(|b| &b[cols.clone()]);
        for i in blk.rows() {
            let dr = if keep_dact {
                dact_row(i, &cols)
            } else {
                &mut [][..]
            };
            // One call per row keeps the vectorised body inlined into the AVX-512 copy.
            perceiver_kernels::simd!(bias_act_row(blk.row_mut(i), dr, bias, kind));
            if let Some(r) = rvec {
                kernels::add_assign(blk.row_mut(i), &r[i * out + cols.start..i * out + cols.end]);
            }
        }
    };
    let (xm, wt) = (x2.mat(), weight.mat().t());
    y = if bvec.is_some() || act.is_some() || rvec.is_some() {
        gemm_new_then(1.0, xm, wt, &epilogue)
    } else {
        gemm_new(1.0, xm, wt)
    };
    if keep_dact {
        // SAFETY: the epilogue wrote every element of `dact` (each output block once).
        unsafe { dact.set_len(rows * out) };
    }
    (y, dact)
}

/// `act(x·Wᵀ + b)` for `x: [..., in]`, `weight: [out, in]` (PyTorch's layout), `bias: [out]`,
/// and an optional GELU, as one fused op (see the module docs).
///
/// ```
/// use perceiver_nn::ops::linear;
/// use perceiver_tensor::{GeluKind, Tensor};
/// let x = Tensor::ones(&[2, 3]);
/// let w = Tensor::ones(&[4, 3]);
/// let y = linear(&x, &w, None, Some(GeluKind::Erf))?;
/// assert_eq!(y.shape(), &[2, 4]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Option<GeluKind>,
) -> Result<Tensor> {
    linear_impl(x, weight, bias, act, None)
}

/// `x·Wᵀ + b + residual` as one op: the residual (the output's shape) is added in the GEMM's
/// epilogue with the bias, while each block of the output is in cache (a pre-LayerNorm
/// block's `z + W_o·a`). Same layouts as [`linear`].
#[track_caller]
pub fn linear_add(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: &Tensor,
) -> Result<Tensor> {
    linear_impl(x, weight, bias, None, Some(residual))
}

/// Checks the shapes (errors at the caller's location), then runs [`LinearOp`].
#[track_caller]
fn linear_impl(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Option<GeluKind>,
    residual: Option<&Tensor>,
) -> Result<Tensor> {
    if weight.rank() != 2 || x.rank() == 0 || x.shape().last() != Some(&weight.shape()[1]) {
        return Err(Error::shape(
            "linear",
            "the input's last dimension must equal the weight's second ([out, in])",
            x.shape(),
            weight.shape(),
        ));
    }
    let out = weight.shape()[0];
    check_vector("linear", bias, out, || "the bias must be [out]".into())?;
    let mut out_shape: Shape = x.shape()[..x.rank() - 1].into();
    out_shape.push(out);
    if let Some(r) = residual {
        if r.shape() != &out_shape[..] {
            return Err(Error::shape(
                "linear_add",
                "the residual must have the output's shape",
                r.shape(),
                &out_shape,
            ));
        }
    }
    apply_custom(LinearOp { act }, &[Some(x), Some(weight), bias, residual])
}

/// The fused op on `[x, W, b, residual]` (the last two optional), shapes already checked.
struct LinearOp {
    act: Option<GeluKind>,
}

impl CustomOp for LinearOp {
    type Saved = LinearBackward;
    const NAME: &'static str = "linear";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<LinearBackward> {
        let (Some(x), Some(weight)) = (inputs[0], inputs[1]) else {
            return Err(Error::invalid("linear", "needs x and a weight"));
        };
        let (bias, residual, act) = (inputs[2], inputs[3], self.act);
        let (out, inp) = (weight.shape()[0], weight.shape()[1]);
        let mut out_shape: Shape = x.shape()[..x.rank() - 1].into();
        out_shape.push(out);
        // (contiguous, so that each output row's residual is one slice)
        let rvec = residual.map(|r| r.contiguous_data());
        let rows = x.numel() / inp.max(1);
        let x2 = as_rows(x, inp);
        let bvec = bias.map(|b| b.to_vec());
        // The derivative of the activation is kept only when the op will be recorded.
        let track = needs.iter().any(|&n| n);
        let keep_dact = act.is_some() && track;
        let (y, dact) = linear_raw(
            &x2,
            weight,
            bvec.as_deref(),
            act,
            keep_dact,
            rvec.as_deref(),
        );
        let yt = Tensor::from_parts(y, &out_shape);
        let dact = keep_dact.then(|| Tensor::from_parts(dact, &[rows, out]));
        let saved = track.then(|| LinearBackward {
            x: needs[1].then(|| x2.clone()),
            w: needs[0].then(|| weight.clone()),
            dact,
            x_shape: x.shape().into(),
        });
        Ok((yt, saved))
    }

    fn backward(&self, saved: &LinearBackward, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        saved.grads(g, needs)
    }
}
