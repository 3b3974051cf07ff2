//! `mlp_add`: `r + act(x·W1ᵀ + b1)·W2ᵀ + b2`, a transformer block's feed-forward with its
//! residual, as one op.
//!
//! The forward is the two fused [`linear`](super::linear) products (bias and activation in the first
//! one's GEMM epilogue, bias and residual in the second's). Recorded as one op, the backward
//! can apply the activation's derivative in the epilogue of the product that forms the hidden
//! gradient, `dpre = (g·W2) ⊙ act'(h)`, while each block is in cache; as two ops it would take a
//! separate pass over the hidden layer (reading two `rows x hidden` arrays, writing a third).
//!
//! Backward: `dW2 = gᵀ·a`, `db2 = Σ_rows g`, `dr = g` (with `a = act(h)`), then `dx = dpre·W1`,
//! `dW1 = dpreᵀ·x`, `db1 = Σ_rows dpre`.
//!
//! # Row-blocked path
//! With many rows and small weights (config A: 2048 rows, `128 -> 512 -> 128`), the whole-layer
//! products stream the `rows x hidden` layer through memory several times (`act(h)` and
//! `act'(h)` written by the forward, read back, `dpre` written and read twice). There each
//! thread takes a contiguous share of the rows and runs everything on blocks of
//! [`BLOCK_ROWS`] rows with single-threaded products ([`gemm_serial`]; each thread prepares
//! the weights once for all its blocks, [`PackedB`]: on the AMX kernel their bf16 split is
//! then done once per thread rather than once per block), so a block's hidden
//! layer stays in cache: the forward keeps only `x·W1ᵀ` (one `rows x hidden` array, nothing
//! else per hidden unit), and the backward recomputes `act` and `act'` from it per block,
//! accumulating each thread's weight and bias gradients, added at the end. This makes a training
//! step of config A 5-6% faster than the whole-layer path (`model_timing mnist-small 32 30`,
//! the two builds alternating).

use super::linear::{as_rows, linear_grads, linear_raw};
use perceiver_kernels as kernels;
use perceiver_kernels::gelu::bias_act_row;
use perceiver_kernels::gemm::{
    gemm_new, gemm_new_then, gemm_serial, gemm_serial_packed, gemm_serial_packed_into, MatRef,
    OutBlock, PackedB,
};
use perceiver_tensor::layout::{check_vector, Shape};
use perceiver_tensor::ops::sum_axes_raw;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, GeluKind, Result, Tensor};
use rayon::prelude::*;
#[cfg(test)]
use std::cell::Cell;
use std::cell::RefCell;
use std::mem::MaybeUninit;

struct MlpBackward {
    /// The input as `[rows, in]`.
    x: Option<Tensor>,
    w1: Option<Tensor>,
    w2: Tensor,
    hidden: Hidden,
    x_shape: Shape,
    has_b1: bool,
    has_b2: bool,
}

/// `act(h)` (when `W2` needs a gradient) and `act'(h)` (`[rows, hidden]`, row-major).
struct ActKept {
    a: Option<Tensor>,
    dact: Vec<f32>,
}

/// What the forward kept of the hidden layer.
enum Hidden {
    /// `act(h)` (when `W2` needs a gradient) and `act'(h)`, both `[rows, hidden]` (the
    /// whole-layer path).
    Act(Box<ActKept>),
    /// `x·W1ᵀ` before the bias, `[rows, hidden]` (the row-blocked path, which recomputes the
    /// activation and its derivative block by block).
    Pre {
        h: Vec<f32>,
        b1: Option<Vec<f32>>,
        act: GeluKind,
        block: usize,
    },
}

impl MlpBackward {
    /// The gradients of `[x, W1, b1, W2, b2, residual]` (as `needs` asks) from the output's `g`.
    fn grads(&self, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let out = self.w2.shape()[0];
        let rows = g.numel() / out.max(1);
        let g2 = g.reshape_raw(&[rows, out]);
        let (dx, dw1, db1, dw2, db2) = match &self.hidden {
            Hidden::Act(kept) => self.backward_whole(&g2, needs, kept),
            Hidden::Pre { h, b1, act, block } => {
                self.backward_blocked(&g2, needs, h, b1.as_deref(), *act, *block)
            }
        };
        vec![
            dx,
            dw1,
            if self.has_b1 { db1 } else { None },
            dw2,
            if self.has_b2 { db2 } else { None },
            needs[5].then(|| g.clone()),
        ]
    }
}

impl MlpBackward {
    /// The whole-layer backward (see the module docs): `(dx, dW1, db1, dW2, db2)` where
    /// `needs` asks for them.
    fn backward_whole(&self, g2: &Tensor, needs: &[bool], kept: &ActKept) -> Grads {
        let (out, hidden) = (self.w2.shape()[0], self.w2.shape()[1]);
        let rows = g2.shape()[0];
        let need_pre = needs[0] || needs[1] || (self.has_b1 && needs[2]);
        let dact = &kept.dact;
        // dpre = (g·W2) ⊙ act'(h), the derivative applied to each block in the epilogue.
        let dpre = || {
            need_pre.then(|| {
                let epilogue = |blk: &mut OutBlock<'_>| {
                    let cols = blk.cols();
                    for i in blk.rows() {
                        let d = &dact[i * hidden + cols.start..i * hidden + cols.end];
                        let row = blk.row_mut(i);
                        perceiver_kernels::simd!(row.iter_mut().zip(d).for_each(|(v, d)| *v *= d));
                    }
                };
                let data = gemm_new_then(1.0, g2.mat(), self.w2.mat(), &epilogue);
                Tensor::from_parts(data, &[rows, hidden])
            })
        };
        let dw2_db2 = || {
            rayon::join(
                || {
                    needs[3].then(|| {
                        let a = kept.a.as_ref().expect("saved activations");
                        let data = gemm_new(1.0, g2.mat().t(), a.mat());
                        Tensor::from_parts(data, &[out, hidden])
                    })
                },
                || (self.has_b2 && needs[4]).then(|| sum_axes_raw(g2, &[0])),
            )
        };
        let (dpre, (dw2, db2)) = rayon::join(dpre, dw2_db2);
        let (dx, dw1, db1) = match &dpre {
            Some(dpre) => {
                let saved = (self.x.as_ref(), self.w1.as_ref());
                let want = [needs[0], needs[1], self.has_b1 && needs[2]];
                linear_grads(dpre, saved, want, &self.x_shape)
            }
            None => (None, None, None),
        };
        (dx, dw1, db1, dw2, db2)
    }
}

/// Rows per block of the row-blocked path: a block's hidden layer (`256 x 512` floats for
/// config A) and its gradient stay in L2.
const BLOCK_ROWS: usize = 256;

#[cfg(test)]
thread_local! {
    /// Rows per block forced on this thread (tests of the row-blocked path on small shapes).
    static FORCE_BLOCK: Cell<Option<usize>> = const { Cell::new(None) };
}

thread_local! {
    /// This thread's scratch for the hidden layer of a block (reused between calls).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `mlp_add` row-blocked in blocks of `block` rows on this thread, whatever the
/// shapes (for tests of that path on small layers).
#[cfg(test)]
fn with_block_rows<R>(block: usize, f: impl FnOnce() -> R) -> R {
    let old = FORCE_BLOCK.with(|c| c.replace(Some(block.max(1))));
    let r = f();
    FORCE_BLOCK.with(|c| c.set(old));
    r
}

/// The row-blocked path's block size, when it applies: several blocks per thread and small
/// weights (each thread splits them for the products once; config B's 4 M-value layers run as
/// whole products), no empty dimension.
fn block_rows(rows: usize, inp: usize, hidden: usize, out: usize) -> Option<usize> {
    if rows == 0 || inp == 0 || hidden == 0 || out == 0 {
        return None;
    }
    #[cfg(test)]
    if let Some(b) = FORCE_BLOCK.with(Cell::get) {
        return Some(b);
    }
    let threads = rayon::current_num_threads();
    (threads > 1 && rows >= 2 * threads * BLOCK_ROWS && hidden * (inp + out) <= 1 << 18)
        .then_some(BLOCK_ROWS)
}

/// Each thread's contiguous share of `rows` rows.
fn shares(rows: usize) -> usize {
    rows.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// The spare capacity of `buf` (at least `rows x width` floats) cut into each thread's share of
/// `share` rows, when `on`; else as many `None`s.
fn spare_shares(
    buf: &mut Vec<f32>,
    on: bool,
    (rows, width): (usize, usize),
    share: usize,
) -> Vec<Option<&mut [MaybeUninit<f32>]>> {
    if !on {
        return (0..rows.div_ceil(share)).map(|_| None).collect();
    }
    buf.spare_capacity_mut()[..rows * width]
        .chunks_mut(share * width)
        .map(Some)
        .collect()
}

/// Rows `r` of a matrix view.
fn row_range(m: MatRef<'_>, r: std::ops::Range<usize>) -> MatRef<'_> {
    MatRef {
        offset: m.offset + r.start * m.row_stride,
        rows: r.len(),
        ..m
    }
}

/// `acc[j] += Σ_i block[i, j]` for a row-major block of width `acc.len()`.
fn add_column_sums(acc: &mut [f32], block: &[f32]) {
    perceiver_kernels::simd!(for row in block.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    });
}

/// The row-blocked forward: each thread takes a contiguous share of the rows and runs both
/// layers on blocks of `block` rows, `h = x·W1ᵀ`, `a = act(h + b1)` (in this thread's
/// scratch, in cache), `y = a·W2ᵀ + b2 + r`. Returns `y` and, when `keep`, `h` (the only
/// per-row state the backward needs).
fn forward_blocked(
    x: MatRef<'_>,
    (w1, b1): (&[f32], Option<&[f32]>),
    (w2, b2): (&[f32], Option<&[f32]>),
    (act, hidden): (GeluKind, usize),
    r: &[f32],
    keep: bool,
    block: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (rows, inp) = (x.rows, x.cols);
    let out = w2.len() / hidden.max(1);
    let mut y: Vec<f32> = Vec::with_capacity(rows * out);
    let mut h: Vec<f32> = Vec::with_capacity(if keep { rows * hidden } else { 0 });
    let share = shares(rows);
    let rows_per_block = block.min(share);
    let ys = y.spare_capacity_mut()[..rows * out].par_chunks_mut(share * out);
    let hs = spare_shares(&mut h, keep, (rows, hidden), share);
    ys.zip(hs.into_par_iter())
        .enumerate()
        .for_each(|(t, (y_share, mut h_share))| {
            // Each thread prepares the weights once for all its blocks (its own copy, in its
            // own cache).
            let w1t = PackedB::new(MatRef::row_major(w1, hidden, inp).t(), rows_per_block);
            let w2t = PackedB::new(MatRef::row_major(w2, out, hidden).t(), rows_per_block);
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < block * hidden {
                    s.resize(block * hidden, 0.0);
                }
                let r0 = t * share;
                let n = y_share.len() / out.max(1);
                for b0 in (0..n).step_by(block) {
                    let len = block.min(n - b0);
                    let a = &mut s[..len * hidden];
                    let xb = row_range(x, r0 + b0..r0 + b0 + len);
                    gemm_serial_packed(1.0, xb, &w1t, 0.0, a, hidden);
                    if let Some(hk) = h_share.as_deref_mut() {
                        let dst = &mut hk[b0 * hidden..(b0 + len) * hidden];
                        dst.iter_mut().zip(a.iter()).for_each(|(d, v)| {
                            d.write(*v);
                        });
                    }
                    for row in a.chunks_mut(hidden) {
                        perceiver_kernels::simd!(bias_act_row(
                            row,
                            &mut [],
                            b1,
                            Some((act, false))
                        ));
                    }
                    let yb = &mut y_share[b0 * out..(b0 + len) * out];
                    let am = MatRef::row_major(a, len, hidden);
                    gemm_serial_packed_into(1.0, am, &w2t, yb, out);
                    // SAFETY: the product wrote every element of the block.
                    let yb = unsafe { &mut *(yb as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    for (i, row) in yb.chunks_mut(out).enumerate() {
                        if let Some(b) = b2 {
                            kernels::add_assign(row, b);
                        }
                        let ri = (r0 + b0 + i) * out;
                        kernels::add_assign(row, &r[ri..ri + out]);
                    }
                }
            })
        });
    // SAFETY: the shares tile the rows and each block of every share was written above.
    unsafe {
        y.set_len(rows * out);
        if keep {
            h.set_len(rows * hidden);
        }
    }
    (y, h)
}

/// Per-thread sums of the weight and bias gradients of the row-blocked backward.
struct Partial {
    dw1: Vec<f32>,
    db1: Vec<f32>,
    dw2: Vec<f32>,
    db2: Vec<f32>,
}

type Grads = (
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
    Option<Tensor>,
);

impl MlpBackward {
    /// The row-blocked backward: per thread and block of rows, `dpre = (g·W2) ⊙ act'(h + b1)`
    /// and `a = act(h + b1)` recomputed from the kept `h` (in cache), then `dW2 += gᵀ·a`,
    /// `dx = dpre·W1`, `dW1 += dpreᵀ·x` and the bias sums; the threads' weight gradients are
    /// added at the end. Returns `(dx, dW1, db1, dW2, db2)` where `needs` asks for them.
    fn backward_blocked(
        &self,
        g2: &Tensor,
        needs: &[bool],
        h: &[f32],
        b1: Option<&[f32]>,
        act: GeluKind,
        block: usize,
    ) -> Grads {
        let (out, hidden) = (self.w2.shape()[0], self.w2.shape()[1]);
        let rows = g2.shape()[0];
        let inp = self.x_shape.last().copied().unwrap_or(0);
        let want = [
            needs[0],
            needs[1],
            self.has_b1 && needs[2],
            needs[3],
            self.has_b2 && needs[4],
        ];
        let need_pre = want[0] || want[1] || want[2];
        let gd = g2.contiguous_data();
        let w2 = self.w2.contiguous_data();
        let w1 = self.w1.as_ref().map(|w| w.contiguous_data());
        let x = self.x.as_ref().map(Tensor::mat);
        let share = shares(rows);
        let rows_per_block = block.min(share);
        let mut dx: Vec<f32> = Vec::with_capacity(if want[0] { rows * inp } else { 0 });
        let dx_shares = spare_shares(&mut dx, want[0], (rows, inp), share);
        let sized = |on: bool, len: usize| if on { vec![0.0f32; len] } else { Vec::new() };
        let partials: Vec<Partial> = dx_shares
            .into_par_iter()
            .enumerate()
            .map(|(t, mut dx_share)| {
                // Each thread prepares the weights once for all its blocks.
                let w2p = need_pre
                    .then(|| PackedB::new(MatRef::row_major(&w2, out, hidden), rows_per_block));
                let w1p = want[0].then(|| {
                    let w1 = w1.as_ref().expect("w1 is saved when x needs a gradient");
                    PackedB::new(MatRef::row_major(w1, hidden, inp), rows_per_block)
                });
                let mut p = Partial {
                    dw1: sized(want[1], hidden * inp),
                    db1: sized(want[2], hidden),
                    dw2: sized(want[3], out * hidden),
                    db2: sized(want[4], out),
                };
                let r0 = t * share;
                let n = (rows - r0).min(share);
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < 2 * block * hidden + hidden {
                        s.resize(2 * block * hidden + hidden, 0.0);
                    }
                    let (a_buf, rest) = s.split_at_mut(block * hidden);
                    let (dpre_buf, d_row) = rest.split_at_mut(block * hidden);
                    let d_row = &mut d_row[..hidden];
                    for b0 in (0..n).step_by(block) {
                        let len = block.min(n - b0);
                        let rr = r0 + b0..r0 + b0 + len;
                        let g_blk = &gd[rr.start * out..rr.end * out];
                        let gm = MatRef::row_major(g_blk, len, out);
                        let (a, dpre) = (&mut a_buf[..len * hidden], &mut dpre_buf[..len * hidden]);
                        if let Some(w2p) = &w2p {
                            gemm_serial_packed(1.0, gm, w2p, 0.0, dpre, hidden);
                        }
                        let h_blk = &h[rr.start * hidden..rr.end * hidden];
                        let recompute = need_pre || want[3];
                        for ((a_row, h_row), dp_row) in a
                            .chunks_mut(hidden)
                            .zip(h_blk.chunks(hidden))
                            .zip(dpre.chunks_mut(hidden))
                            .filter(|_| recompute)
                        {
                            a_row.copy_from_slice(h_row);
                            // SAFETY: f32 slices are valid MaybeUninit<f32> slices.
                            let d =
                                unsafe { &mut *(d_row as *mut [f32] as *mut [MaybeUninit<f32>]) };
                            perceiver_kernels::simd!(bias_act_row(a_row, d, b1, Some((act, true))));
                            if need_pre {
                                perceiver_kernels::simd!(dp_row
                                    .iter_mut()
                                    .zip(d_row.iter())
                                    .for_each(|(v, d)| *v *= d));
                            }
                        }
                        if want[4] {
                            add_column_sums(&mut p.db2, g_blk);
                        }
                        if want[2] {
                            add_column_sums(&mut p.db1, dpre);
                        }
                        if want[3] {
                            let am = MatRef::row_major(a, len, hidden);
                            gemm_serial(1.0, gm.t(), am, 1.0, &mut p.dw2, hidden);
                        }
                        let pm = MatRef::row_major(dpre, len, hidden);
                        if let Some(dxs) = dx_share.as_deref_mut() {
                            let w1 = w1p.as_ref().expect("prepared when x needs a gradient");
                            let dst = &mut dxs[b0 * inp..(b0 + len) * inp];
                            gemm_serial_packed_into(1.0, pm, w1, dst, inp);
                        }
                        if want[1] {
                            let x = x.expect("x is saved when w1 needs a gradient");
                            let xm = row_range(x, rr.clone());
                            gemm_serial(1.0, pm.t(), xm, 1.0, &mut p.dw1, inp);
                        }
                    }
                });
                p
            })
            .collect();
        let mut it = partials.into_iter();
        // (`block_rows` sends no empty input here: there is at least one share.)
        let mut sum = it.next().expect("at least one share");
        for p in it {
            for (acc, v) in [
                (&mut sum.dw1, &p.dw1),
                (&mut sum.db1, &p.db1),
                (&mut sum.dw2, &p.dw2),
                (&mut sum.db2, &p.db2),
            ] {
                kernels::add_assign(acc, v);
            }
        }
        if want[0] {
            // SAFETY: the shares tile the rows and every block of each was written.
            unsafe { dx.set_len(rows * inp) };
        }
        let take =
            |on: bool, v: Vec<f32>, shape: &[usize]| on.then(|| Tensor::from_parts(v, shape));
        (
            take(want[0], dx, &[rows, inp]).map(|t| t.reshape_raw(&self.x_shape)),
            take(want[1], sum.dw1, &[hidden, inp]),
            take(want[2], sum.db1, &[hidden]),
            take(want[3], sum.dw2, &[out, hidden]),
            take(want[4], sum.db2, &[out]),
        )
    }
}

/// `residual + act(x·W1ᵀ + b1)·W2ᵀ + b2` for `x: [..., in]`, `w1: [hidden, in]`, `w2:
/// [out, hidden]` (PyTorch's layouts) and `residual` of the output's shape, as one op (see
/// the module docs): the same values as [`linear`](super::linear) twice and an add, with a
/// cheaper backward.
///
/// ```
/// use perceiver_nn::ops::mlp_add;
/// use perceiver_tensor::{GeluKind, Tensor};
/// let x = Tensor::ones(&[2, 3]);
/// let (w1, w2) = (Tensor::ones(&[8, 3]), Tensor::ones(&[3, 8]));
/// let y = mlp_add(&x, &w1, None, GeluKind::Erf, &w2, None, &x)?;
/// assert_eq!(y.shape(), &[2, 3]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
#[allow(clippy::too_many_arguments)] // two layers' weights and biases, the activation, r
pub fn mlp_add(
    x: &Tensor,
    w1: &Tensor,
    b1: Option<&Tensor>,
    act: GeluKind,
    w2: &Tensor,
    b2: Option<&Tensor>,
    residual: &Tensor,
) -> Result<Tensor> {
    const OP: &str = "mlp_add";
    let ok_w = |w: &Tensor, inp: usize| w.rank() == 2 && w.shape()[1] == inp;
    let inp = x.shape().last().copied().unwrap_or(0);
    if x.rank() == 0 || !ok_w(w1, inp) || !ok_w(w2, w1.shape()[0]) {
        return Err(Error::shape(
            OP,
            "needs x: [..., in], w1: [hidden, in], w2: [out, hidden]",
            x.shape(),
            &[w1.shape(), w2.shape()].concat(),
        ));
    }
    let (hidden, out) = (w1.shape()[0], w2.shape()[0]);
    for (name, b, len) in [("b1", b1, hidden), ("b2", b2, out)] {
        check_vector(OP, b, len, || {
            format!("{name} must match its layer's outputs")
        })?;
    }
    let mut out_shape: Shape = x.shape()[..x.rank() - 1].into();
    out_shape.push(out);
    if residual.shape() != &out_shape[..] {
        return Err(Error::shape(
            OP,
            "the residual must have the output's shape",
            residual.shape(),
            &out_shape,
        ));
    }
    let inputs = [Some(x), Some(w1), b1, Some(w2), b2, Some(residual)];
    apply_custom(MlpOp { act }, &inputs)
}

/// The fused op on `[x, W1, b1, W2, b2, residual]` (the biases optional), shapes already
/// checked.
struct MlpOp {
    act: GeluKind,
}

impl CustomOp for MlpOp {
    type Saved = MlpBackward;
    const NAME: &'static str = "mlp";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<MlpBackward> {
        let (Some(x), Some(w1), Some(w2), Some(residual)) =
            (inputs[0], inputs[1], inputs[3], inputs[5])
        else {
            return Err(Error::invalid(
                "mlp_add",
                "needs x, both weights and the residual",
            ));
        };
        let (b1, b2, act) = (inputs[2], inputs[4], self.act);
        let inp = x.shape().last().copied().unwrap_or(0);
        let (hidden, out) = (w1.shape()[0], w2.shape()[0]);
        let mut out_shape: Shape = x.shape()[..x.rank() - 1].into();
        out_shape.push(out);
        let rows = x.numel() / inp.max(1);
        let x2 = as_rows(x, inp);
        let (b1v, b2v) = (b1.map(|b| b.to_vec()), b2.map(|b| b.to_vec()));
        let rvec = residual.contiguous_data();
        let track = needs.iter().any(|&n| n);
        let (y, hidden_kept) = match block_rows(rows, inp, hidden, out) {
            Some(block) => {
                let w = (w1.contiguous_data(), w2.contiguous_data());
                let (y, h) = forward_blocked(
                    x2.mat(),
                    (&w.0, b1v.as_deref()),
                    (&w.1, b2v.as_deref()),
                    (act, hidden),
                    &rvec,
                    track,
                    block,
                );
                let kept = Hidden::Pre {
                    h,
                    b1: b1v,
                    act,
                    block,
                };
                (y, kept)
            }
            None => {
                let (a, dact) = linear_raw(&x2, w1, b1v.as_deref(), Some(act), track, None);
                let a = Tensor::from_parts(a, &[rows, hidden]);
                let (y, _) = linear_raw(&a, w2, b2v.as_deref(), None, false, Some(&rvec));
                let kept = Hidden::Act(Box::new(ActKept { a: Some(a), dact }));
                (y, kept)
            }
        };
        let yt = Tensor::from_parts(y, &out_shape);
        let saved = track.then(|| MlpBackward {
            x: needs[1].then(|| x2.clone()),
            w1: needs[0].then(|| w1.clone()),
            w2: w2.clone(),
            hidden: match hidden_kept {
                Hidden::Act(kept) => Hidden::Act(Box::new(ActKept {
                    a: kept.a.filter(|_| needs[3]),
                    dact: kept.dact,
                })),
                pre => pre,
            },
            x_shape: x.shape().into(),
            has_b1: b1.is_some(),
            has_b2: b2.is_some(),
        });
        Ok((yt, saved))
    }

    fn backward(&self, saved: &MlpBackward, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        saved.grads(g, needs)
    }
}

#[cfg(test)]
mod tests {
    use super::with_block_rows;
    use crate::ops::FusedOps;
    use perceiver_tensor::testing::check_gradients;
    use perceiver_tensor::{GeluKind, Rng, Tensor};

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        Tensor::randn(shape, &mut Rng::new(seed))
    }

    /// `[x, w1, b1, w2, b2, residual]` of a layer `inp -> hidden -> out` over rows `lead`, the
    /// weights scaled by `w_scale` (seeds 1 to 6).
    fn layer(
        lead: &[usize],
        (inp, hidden, out): (usize, usize, usize),
        w_scale: f32,
    ) -> [Tensor; 6] {
        let with = |last: usize| [lead, &[last]].concat();
        [
            randn(&with(inp), 1),
            randn(&[hidden, inp], 2).mul_scalar(w_scale),
            randn(&[hidden], 3),
            randn(&[out, hidden], 4).mul_scalar(w_scale),
            randn(&[out], 5),
            randn(&with(out), 6),
        ]
    }

    /// The output of `mlp_add` on `p` and the gradient of `Σ output ⊙ g` for each of the six
    /// inputs that `tracked` marks (`None` for the others).
    fn run(
        p: &[Tensor; 6],
        act: GeluKind,
        biases: bool,
        tracked: [bool; 6],
        g: &Tensor,
    ) -> (Vec<f32>, Vec<Option<Vec<f32>>>) {
        let leaves: Vec<Tensor> = p
            .iter()
            .zip(tracked)
            .map(|(t, on)| if on { t.requires_grad() } else { t.clone() })
            .collect();
        let (b1, b2) = (biases.then_some(&leaves[2]), biases.then_some(&leaves[4]));
        let y = leaves[0]
            .mlp_add(&leaves[1], b1, act, &leaves[3], b2, &leaves[5])
            .unwrap();
        let grads = y.mul(g).unwrap().sum_all().backward().unwrap();
        let gs = leaves
            .iter()
            .map(|t| grads.get(t).map(Tensor::to_vec))
            .collect();
        (y.to_vec(), gs)
    }

    /// `a` equals `b` up to `1e-5` of `b`'s largest magnitude.
    fn close(a: &[f32], b: &[f32]) -> bool {
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5 * scale)
    }

    /// The row-blocked path (blocks of 8 rows, rows not a multiple of the blocks or the
    /// threads) gives the whole-layer path's outputs and gradients, with and without biases
    /// and with only some inputs tracked.
    #[test]
    fn row_blocked_path_matches_the_whole_layer() {
        let p = layer(&[3, 13], (12, 20, 9), 0.3);
        let g = randn(&[3, 13, 9], 7);
        for (act, biases, tracked) in [
            (GeluKind::Erf, true, [true; 6]),
            (GeluKind::Tanh, true, [true; 6]),
            (GeluKind::Erf, false, [true; 6]),
            (GeluKind::Erf, true, [false, true, false, true, true, false]),
            (GeluKind::Erf, true, [false, false, false, true, true, true]),
            (
                GeluKind::Erf,
                true,
                [true, false, false, false, false, false],
            ),
        ] {
            let (y_whole, g_whole) = run(&p, act, biases, tracked, &g);
            let (y_blk, g_blk) = with_block_rows(8, || run(&p, act, biases, tracked, &g));
            assert!(
                close(&y_blk, &y_whole),
                "outputs ({act:?}, biases {biases})"
            );
            for (i, (a, b)) in g_blk.iter().zip(&g_whole).enumerate() {
                match (a, b) {
                    (Some(a), Some(b)) => assert!(close(a, b), "gradient {i} ({act:?})"),
                    (None, None) => {}
                    _ => panic!("gradient {i} present on one path only"),
                }
            }
        }
    }

    /// Without gradients (inference) both paths give the outputs they give with gradients.
    #[test]
    fn untracked_forward_matches_tracked_on_both_paths() {
        let [x, w1, b1, w2, b2, r] = layer(&[40], (12, 20, 9), 0.3);
        let forward = |track: bool| {
            let w1 = if track {
                w1.requires_grad()
            } else {
                w1.clone()
            };
            let y = x.mlp_add(&w1, Some(&b1), GeluKind::Erf, &w2, Some(&b2), &r);
            y.unwrap().to_vec()
        };
        let tracked = forward(true);
        assert_eq!(
            perceiver_tensor::no_grad(|| forward(true)),
            tracked,
            "whole-layer path"
        );
        assert_eq!(forward(false), tracked, "whole-layer path, nothing tracked");
        let blocked = with_block_rows(8, || {
            (forward(true), perceiver_tensor::no_grad(|| forward(true)))
        });
        assert_eq!(blocked.0, blocked.1, "row-blocked path");
        assert!(close(&blocked.0, &tracked));
    }

    /// Config A's widths, where the blocks' products run on the tile kernel with the weights
    /// prepared once per thread (and a last block under 64 rows on the plain path): the same
    /// outputs and gradients as the whole-layer path.
    #[test]
    fn row_blocked_path_at_config_a_widths() {
        let p = layer(&[600], (128, 256, 128), 0.1);
        let g = randn(&[600, 128], 7);
        let all = [true; 6];
        let (y_whole, g_whole) = run(&p, GeluKind::Erf, true, all, &g);
        let (y_blk, g_blk) = with_block_rows(256, || run(&p, GeluKind::Erf, true, all, &g));
        assert!(close(&y_blk, &y_whole), "outputs");
        for (i, (a, b)) in g_blk.iter().zip(&g_whole).enumerate() {
            let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
            assert!(close(a, b), "gradient {i}");
        }
    }

    /// Gradient check of the row-blocked path itself (blocks of 2 rows).
    #[test]
    fn grad_row_blocked_mlp_add() {
        let p = layer(&[2, 3], (5, 7, 4), 1.0);
        with_block_rows(2, || {
            let checked = check_gradients(&p, |p| {
                p[0].mlp_add(&p[1], Some(&p[2]), GeluKind::Erf, &p[3], Some(&p[4]), &p[5])
            });
            assert!(checked.is_ok(), "{checked:?}");
        });
    }
}
