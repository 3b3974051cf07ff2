//! Fused cross-attention from the raw inputs: LayerNorm, K/V projections and attention,
//! computed block by block over the inputs, so neither the normalised inputs nor the keys and
//! values of the whole input are ever stored. ([`cross_attention_kv`], forward only, runs the
//! same attention on keys and values a caller projected and keeps, for reuse at inference.)
//!
//! # Why
//! In a Perceiver cross-attend, `K = LN(x)·W_kᵀ` and `V = LN(x)·W_vᵀ` for an input `x` of
//! `M` tokens (up to hundreds of thousands). Even with a fused attention kernel, storing
//! `LN(x)`, `K` and `V` costs three floats per channel per token, kept until the backward. Here
//! each block of tokens (see [`block_tokens`]) is normalised and projected on the fly and thrown away; the
//! backward recomputes it. Memory is `O(threads · block)` beyond the inputs and outputs.
//!
//! # Two kernels
//! The *projected* kernel (described below) forms `K` and `V` for each block of tokens. The
//! *folded* kernel (module `folded`) never does: it folds `W_k` into the queries and `W_v` into
//! the output, which costs fewer multiply-adds per token when the queries and channels are few
//! next to the projection widths (config A). [`CrossKernel::Auto`] picks the cheaper by count
//! ([`folded_is_cheaper`]); both keep nothing per token.
//!
//! # Forward
//! Tasks own (example, range of input blocks) pairs, so each token is projected once. Each task
//! runs the online softmax of the flash kernel over its blocks for all queries and heads and
//! returns unnormalised partial outputs with their row maxima and sums; partials of one example
//! are merged with the usual rescaling `O = Σ_t O_t·e^(m_t - m)`, `l = Σ_t l_t·e^(m_t - m)`.
//! The output `O / l` and the log-sum-exp per query row are kept.
//!
//! # Backward
//! Per block: recompute `x̂`, `LN(x)`, `K`, `V`; per head recompute `P = exp(s·Q·Kᵀ - L)` and
//! form `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ - D)`, `dK = s·dSᵀ·Q`, `dQ += s·dS·K`; then the
//! projections `dW_k += dKᵀ·LN(x)`, `db_k += Σ dK` (same for V), `dLN(x) = dK·W_k + dV·W_v`,
//! and the LayerNorm backward for the block (`dγ`, `dβ`, `dx`). Per-task accumulators are
//! summed at the end.

mod backward;
mod folded;
mod inputs;

use inputs::{CrossInputs, ParamVecs};

use crate::check::scale_of;
use crate::flash::{online_softmax, probs_from_lse, row_dots, softmax_grad};
use perceiver_kernels::gemm::{gemm, gemm_ldc, MatRef};
use perceiver_kernels::{add_assign, dot, fast_exp, layer_norm_row, sum};
use perceiver_tensor::layout::check_vector;
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, Result, Tensor};
use rayon::prelude::*;

/// Input tokens per block for `queries` query rows: the score buffer (`queries x block`) stays
/// near 2 MiB (the L2 of one core; config B's forward takes 3.7 s with 2 MiB blocks, 4.1 s
/// with 256 KiB), and blocks hold 128 to 1024 tokens (larger blocks mean fewer, larger GEMMs,
/// which matters when the channels are few).
pub fn block_tokens(queries: usize) -> usize {
    (524_288 / queries.max(1)).clamp(128, 1024) / 16 * 16
}

/// The LayerNorm and projections applied to the raw inputs to form keys and values.
#[derive(Clone, Copy, Debug)]
pub struct KvProjection<'a> {
    /// LayerNorm over the input channels: `(scale, offset, eps)`; `None` for no normalisation.
    pub norm: Option<(Option<&'a Tensor>, Option<&'a Tensor>, f32)>,
    /// The input already holds the LayerNorm's normalised rows before its affine (as from
    /// `x.layer_norm(None, None, eps)`): only `norm`'s scale and offset are applied, and the
    /// input gradient is the gradient of those rows. Lets several cross-attends to one input
    /// normalise it once (their LayerNorms differ only in the affine).
    pub normalized: bool,
    /// Key projection weight `[heads · qk head width, channels]`.
    pub wk: &'a Tensor,
    /// Key projection bias.
    pub bk: Option<&'a Tensor>,
    /// Value projection weight `[heads · v head width, channels]`.
    pub wv: &'a Tensor,
    /// Value projection bias.
    pub bv: Option<&'a Tensor>,
}

#[derive(Clone, Debug)]
struct FusedCross {
    heads: usize,
    dh: usize,
    dv: usize,
    channels: usize,
    scale: f32,
    /// Tokens per block.
    bk: usize,
    eps: Option<f32>,
    /// The input holds normalised rows ([`KvProjection::normalized`]; only with `eps`).
    normalized: bool,
    mask: Option<Vec<f32>>,
    /// The projections folded into the queries and the output ([`CrossKernel::Folded`]).
    folded: bool,
}

/// Where the projected forward's keys and values come from.
#[derive(Clone, Copy)]
enum KvSource<'a> {
    /// Projected block by block from the op's inputs (with their parameter vectors).
    Project(&'a CrossInputs, &'a ParamVecs),
    /// Given whole, as the rows `[b, m, hk]` and `[b, m, hv]` ([`cross_attention_kv`]).
    Given(&'a [f32], &'a [f32]),
}

/// Saved for the backward: the inputs (shared), the output and the log-sum-exp rows.
struct CrossSaved {
    inputs: CrossInputs,
    out: Vec<f32>,
    lse: Vec<f32>,
    /// Folded kernel: the attention-weighted rows before the affine `Ū = P·x̄`, `[b, heads, n, c]`.
    u: Vec<f32>,
}

/// Per-block work buffers.
struct Block {
    /// The normalised rows before the affine; empty in a forward (only the backward needs it).
    xhat: Vec<f32>,
    /// One gathered input row (inputs whose channels are not contiguous).
    row: Vec<f32>,
    xn: Vec<f32>,
    rstd: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl FusedCross {
    fn hk(&self) -> usize {
        self.heads * self.dh
    }
    fn hv(&self) -> usize {
        self.heads * self.dv
    }

    /// Normalises and projects tokens `j0..j0+bc` of example `b` into `blk`.
    fn project(
        &self,
        inputs: &CrossInputs,
        p: &ParamVecs,
        b: usize,
        j0: usize,
        bc: usize,
        blk: &mut Block,
    ) {
        self.normalize(
            inputs,
            (p.ln_w.as_deref(), p.ln_b.as_deref()),
            b,
            j0,
            bc,
            blk,
        );
        self.project_kv(inputs, p, bc, blk);
    }

    /// Normalises tokens `j0..j0+bc` of example `b` into `blk`: `xn` (with the affine `(w, b)`
    /// of `affine`; the folded kernel passes none and works on the rows before it) and `rstd`,
    /// and `xhat` (the rows before the affine, for the LayerNorm backward) when the block has
    /// room for it ([`FusedCross::block`] with `keep_xhat`). Contiguous rows are read in place;
    /// one vectorised function covers the whole block (per-row dispatch and a copy into
    /// `xhat` make this 6% of config A's forward).
    fn normalize(
        &self,
        inputs: &CrossInputs,
        (w, bb): (Option<&[f32]>, Option<&[f32]>),
        b: usize,
        j0: usize,
        bc: usize,
        blk: &mut Block,
    ) {
        let c = self.channels;
        let (xd, xl) = inputs.x.raw();
        let (sb, sm, sc) = (xl.strides()[0], xl.strides()[1], xl.strides()[2]);
        let keep = !blk.xhat.is_empty();
        let Block {
            xhat,
            xn,
            rstd,
            row: tmp,
            ..
        } = blk;
        perceiver_kernels::simd!({
            for r in 0..bc {
                let base = xl.offset() + b * sb + (j0 + r) * sm;
                let src: &[f32] = if sc == 1 {
                    &xd[base..base + c]
                } else {
                    for (i, v) in tmp.iter_mut().enumerate() {
                        *v = xd[base + i * sc];
                    }
                    tmp
                };
                let xn = &mut xn[r * c..(r + 1) * c];
                let (mu, rs) = match self.eps {
                    Some(_) if self.normalized => {
                        affine_row(src, xn, w, bb);
                        (0.0, 1.0)
                    }
                    Some(eps) => layer_norm_row(src, xn, w, bb, eps),
                    None => {
                        xn.copy_from_slice(src);
                        (0.0, 1.0)
                    }
                };
                rstd[r] = rs;
                if keep {
                    let xh = &mut xhat[r * c..(r + 1) * c];
                    xh.iter_mut()
                        .zip(src)
                        .for_each(|(h, &v)| *h = (v - mu) * rs);
                }
            }
        })
    }

    /// The key and value projections of the normalised block.
    fn project_kv(&self, inputs: &CrossInputs, p: &ParamVecs, bc: usize, blk: &mut Block) {
        let c = self.channels;
        let xn = MatRef::row_major(&blk.xn[..bc * c], bc, c);
        gemm(
            1.0,
            xn,
            inputs.wk.mat().t(),
            0.0,
            &mut blk.k[..bc * self.hk()],
        );
        gemm(
            1.0,
            xn,
            inputs.wv.mat().t(),
            0.0,
            &mut blk.v[..bc * self.hv()],
        );
        for (bias, buf, w) in [
            (&p.bk, &mut blk.k, self.hk()),
            (&p.bv, &mut blk.v, self.hv()),
        ] {
            if let Some(bias) = bias {
                for row in buf[..bc * w].chunks_mut(w) {
                    row.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
                }
            }
        }
    }

    /// Work buffers for one task; `keep_xhat` for a backward (see [`Block::xhat`]).
    fn block(&self, keep_xhat: bool) -> Block {
        let c = self.channels;
        Block {
            xhat: vec![0.0; if keep_xhat { self.bk * c } else { 0 }],
            row: vec![0.0; c],
            xn: vec![0.0; self.bk * c],
            rstd: vec![0.0; self.bk],
            // The folded kernel never forms keys or values.
            k: vec![0.0; if self.folded { 0 } else { self.bk * self.hk() }],
            v: vec![0.0; if self.folded { 0 } else { self.bk * self.hv() }],
        }
    }

    /// Key ranges per example: enough tasks to keep every thread busy.
    fn ranges(&self, batch: usize, m: usize) -> Vec<(usize, usize, usize)> {
        let threads = rayon::current_num_threads().max(1);
        let blocks = m.div_ceil(self.bk);
        let per_b = threads.div_ceil(batch.max(1)).min(blocks).max(1);
        let blocks_per_task = blocks.div_ceil(per_b);
        let mut out = Vec::new();
        for b in 0..batch {
            let mut j = 0;
            while j < m {
                let len = (blocks_per_task * self.bk).min(m - j);
                out.push((b, j, j + len));
                j += len;
            }
        }
        out
    }

    fn q_view<'a>(&self, q: &'a Tensor, b: usize, h: usize) -> MatRef<'a> {
        let (data, l) = q.raw();
        let s = l.strides();
        MatRef {
            data,
            offset: l.offset() + b * s[0] + h * s[1],
            rows: l.shape()[2],
            cols: self.dh,
            row_stride: s[2],
            col_stride: s[3],
        }
    }

    /// The LayerNorm backward of a block: `dxb` is the gradient of its `bc` normalised rows,
    /// `(w, xhat, rstd)` the LayerNorm scale (`None`: none, or already applied to `dxb`), the
    /// rows before the affine and their reciprocal deviations. Accumulates `dγ` and `dβ` into
    /// `dlnw`, `dlnb` and writes the block's `dx` into rows `row0..row0 + bc` of `dx_rows`; an
    /// empty slice means that gradient is not needed.
    fn ln_backward(
        &self,
        (w, xhat, rstd): (Option<&[f32]>, &[f32], &[f32]),
        dxb: &[f32],
        bc: usize,
        (dlnw, dlnb): (&mut [f32], &mut [f32]),
        (dx_rows, row0): (&mut [f32], usize),
        ghat: &mut [f32],
    ) {
        let c = self.channels;
        let rows_for_affine = if dlnw.is_empty() && dlnb.is_empty() {
            0
        } else {
            bc
        };
        for r in 0..rows_for_affine {
            let (gr, xh) = (&dxb[r * c..(r + 1) * c], &xhat[r * c..(r + 1) * c]);
            dlnw.iter_mut()
                .zip(gr.iter().zip(xh))
                .for_each(|(a, (g, x))| *a += g * x);
            dlnb.iter_mut().zip(gr).for_each(|(a, g)| *a += g);
        }
        if dx_rows.is_empty() {
            return;
        }
        let dx = &mut dx_rows[row0 * c..(row0 + bc) * c];
        for r in 0..bc {
            let (gr, xh) = (&dxb[r * c..(r + 1) * c], &xhat[r * c..(r + 1) * c]);
            let out = &mut dx[r * c..(r + 1) * c];
            if self.eps.is_none() {
                out.copy_from_slice(gr);
                continue;
            }
            match w {
                Some(w) => (0..c).for_each(|i| ghat[i] = gr[i] * w[i]),
                None => ghat.copy_from_slice(gr),
            }
            if self.normalized {
                // (the input is the normalised rows: only the affine is differentiated)
                out.copy_from_slice(ghat);
                continue;
            }
            let m1 = sum(ghat) / c as f32;
            let m2 = dot(ghat, xh) / c as f32;
            let rs = rstd[r];
            for i in 0..c {
                out[i] = rs * (ghat[i] - m1 - xh[i] * m2);
            }
        }
    }

    fn masked(&self, s: &mut [f32], n: usize, bc: usize, b: usize, m: usize, j0: usize) {
        if let Some(mask) = &self.mask {
            let mk = &mask[b * m + j0..b * m + j0 + bc];
            for (col, &keep) in mk.iter().enumerate() {
                if keep == 0.0 {
                    for r in 0..n {
                        s[r * bc + col] = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    fn forward_raw(&self, inputs: &CrossInputs) -> (Vec<f32>, Vec<f32>) {
        let p = inputs.vecs();
        let m = inputs.x.shape()[1];
        self.attend_tasks(&inputs.q, m, KvSource::Project(inputs, &p))
    }

    /// The projected forward's tasks: each (example, range of key blocks) attends to its blocks
    /// ([`FusedCross::attend_block`]) with the keys and values from `src`; the partial results
    /// of each example are merged. Returns the outputs and the log-sum-exp rows.
    fn attend_tasks(&self, q: &Tensor, m: usize, src: KvSource<'_>) -> (Vec<f32>, Vec<f32>) {
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let (heads, dv, hk, hv) = (self.heads, self.dv, self.hk(), self.hv());
        let partials: Vec<Partial> = self
            .ranges(batch, m)
            .into_par_iter()
            .map(|(b, ja, jb)| {
                let mut blk = None;
                let mut o = vec![0.0f32; heads * n * dv];
                let mut mx = vec![f32::NEG_INFINITY; heads * n];
                let mut l = vec![0.0f32; heads * n];
                let mut s = vec![0.0f32; n * self.bk];
                for j0 in (ja..jb).step_by(self.bk) {
                    let bc = self.bk.min(jb - j0);
                    let (kb, vb) = match src {
                        KvSource::Project(inputs, p) => {
                            let blk = blk.get_or_insert_with(|| self.block(false));
                            self.project(inputs, p, b, j0, bc, blk);
                            ((&blk.k[..], 0), (&blk.v[..], 0))
                        }
                        KvSource::Given(k, v) => ((k, (b * m + j0) * hk), (v, (b * m + j0) * hv)),
                    };
                    let acc = (&mut o[..], &mut mx[..], &mut l[..]);
                    self.attend_block(q, b, (j0, bc, m), kb, vb, &mut s, acc);
                }
                (b, o, mx, l)
            })
            .collect();
        merge_partials(batch, heads * n, dv, &partials)
    }

    /// The online-softmax step of the projected forward: example `b`'s queries (every head)
    /// attend to keys `j0..j0+bc` of `m`, whose key and value rows (`hk` and `hv` floats
    /// apart) start at offsets `k0` of `k` and `v0` of `v`. Accumulates into the task's
    /// unnormalised outputs, row maxima and row sums; `s` is the score scratch.
    #[allow(clippy::too_many_arguments)] // the block's coordinates, its sources and the task state
    fn attend_block(
        &self,
        q: &Tensor,
        b: usize,
        (j0, bc, m): (usize, usize, usize),
        (k, k0): (&[f32], usize),
        (v, v0): (&[f32], usize),
        s: &mut [f32],
        (o, mx, l): (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        let (n, dv) = (q.shape()[2], self.dv);
        for h in 0..self.heads {
            let sb = &mut s[..n * bc];
            let kh = MatRef {
                data: k,
                offset: k0 + h * self.dh,
                rows: bc,
                cols: self.dh,
                row_stride: self.hk(),
                col_stride: 1,
            };
            gemm(self.scale, self.q_view(q, b, h), kh.t(), 0.0, sb);
            self.masked(sb, n, bc, b, m, j0);
            let oh = &mut o[h * n * dv..(h + 1) * n * dv];
            let rows = h * n..(h + 1) * n;
            online_softmax(sb, bc, &mut mx[rows.clone()], &mut l[rows], oh, dv);
            let vh = MatRef {
                data: v,
                offset: v0 + h * dv,
                rows: bc,
                cols: dv,
                row_stride: self.hv(),
                col_stride: 1,
            };
            gemm(1.0, MatRef::row_major(sb, n, bc), vh, 1.0, oh);
        }
    }
}

/// `y = x·w + b` (each optional): the affine of a LayerNorm on rows already normalised.
#[inline(always)]
fn affine_row(x: &[f32], y: &mut [f32], w: Option<&[f32]>, b: Option<&[f32]>) {
    y.copy_from_slice(x);
    if let Some(w) = w {
        y.iter_mut().zip(w).for_each(|(y, w)| *y *= w);
    }
    if let Some(b) = b {
        y.iter_mut().zip(b).for_each(|(y, b)| *y += b);
    }
}

/// Matrix `bh` of a contiguous `[.., rows, cols]` buffer.
fn slab(buf: &[f32], bh: usize, rows: usize, cols: usize) -> MatRef<'_> {
    MatRef::row_major(&buf[bh * rows * cols..(bh + 1) * rows * cols], rows, cols)
}

/// Hands each backward task `(example, first token, end token)` its disjoint rows of `dx`
/// (`channels` floats per token; empty slices when `dx` is empty, i.e. not needed).
fn task_rows<'a>(
    dx: &'a mut [f32],
    tasks: &[(usize, usize, usize)],
    channels: usize,
) -> Vec<((usize, usize, usize), &'a mut [f32])> {
    let need_x = !dx.is_empty();
    let mut work = Vec::with_capacity(tasks.len());
    let mut rest = dx;
    for &(b, ja, jb) in tasks {
        let len = if need_x { (jb - ja) * channels } else { 0 };
        let (head, tail) = rest.split_at_mut(len);
        work.push(((b, ja, jb), head));
        rest = tail;
    }
    work
}

/// A task's unnormalised partial result: `(example, outputs, row maxima, row sums)`.
type Partial = (usize, Vec<f32>, Vec<f32>, Vec<f32>);

/// Merges the partial softmax results of each example's tasks into normalised outputs
/// (`[batch, rows, width]`) and one log-sum-exp per row (`+∞` for fully masked rows, whose
/// output is 0).
fn merge_partials(
    batch: usize,
    rows: usize,
    width: usize,
    partials: &[Partial],
) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0f32; batch * rows * width];
    let mut lse = vec![0.0f32; batch * rows];
    for b in 0..batch {
        let parts: Vec<_> = partials.iter().filter(|t| t.0 == b).collect();
        for row in 0..rows {
            let dst = &mut out[(b * rows + row) * width..(b * rows + row + 1) * width];
            // A task whose row met a NaN logit has a NaN maximum or sum: the row is NaN, as
            // in the plain softmax (its maximum alone could look fully masked).
            if parts.iter().any(|t| t.2[row].is_nan() || t.3[row].is_nan()) {
                dst.fill(f32::NAN);
                lse[b * rows + row] = f32::NAN;
                continue;
            }
            let gmax = parts.iter().fold(f32::NEG_INFINITY, |a, t| a.max(t.2[row]));
            if gmax == f32::NEG_INFINITY {
                lse[b * rows + row] = f32::INFINITY;
                continue;
            }
            let mut total = 0.0f32;
            for t in &parts {
                if t.2[row] == f32::NEG_INFINITY {
                    continue;
                }
                let w = fast_exp(t.2[row] - gmax);
                total += t.3[row] * w;
                let src = &t.1[row * width..(row + 1) * width];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s * w);
            }
            let inv = 1.0 / total;
            dst.iter_mut().for_each(|d| *d *= inv);
            lse[b * rows + row] = gmax + total.ln();
        }
    }
    (out, lse)
}

impl CustomOp for FusedCross {
    type Saved = CrossSaved;
    const NAME: &'static str = "fused_cross_attention";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<CrossSaved> {
        let inputs = CrossInputs::from_list(inputs);
        let (out, lse, u) = if self.folded {
            self.forward_folded(&inputs)
        } else {
            let (out, lse) = self.forward_raw(&inputs);
            (out, lse, Vec::new())
        };
        let (b, n) = (inputs.q.shape()[0], inputs.q.shape()[2]);
        let t = Tensor::from_vec(out.clone(), &[b, self.heads, n, self.dv])?;
        let saved = needs.iter().any(|&n| n).then(|| CrossSaved {
            inputs,
            out,
            lse,
            u,
        });
        Ok((t, saved))
    }

    fn backward(&self, saved: &CrossSaved, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let grads = if self.folded {
            self.backward_folded(saved, g, needs)
        } else {
            self.backward_raw(saved, g, needs)
        };
        grads
            .into_iter()
            .zip(saved.inputs.list())
            .map(|(gv, t)| gv.zip(t).map(|(v, t)| Tensor::from_parts(v, t.shape())))
            .collect()
    }
}

/// Cross-attention of queries `q: [b, heads, n, dk]` to keys `k: [b, m, heads·dk]` and values
/// `v: [b, m, heads·dv]` already projected (the rows of the projections' outputs): the
/// attention of [`fused_cross_attention`]'s projected kernel (all queries against blocks of
/// [`block_tokens`] keys), for a caller that attends to one input several times with the same
/// projections, such as a Perceiver's weight-shared cross-attends at inference. Returns
/// `[b, heads, n, dv]`; `mask: [b, m]` (non-zero = attend); `scale` multiplies the scores
/// (default `1/√dk`; must be finite).
///
/// Forward only: an error when an input is tracked by autograd (call it under
/// [`perceiver_tensor::no_grad`]).
#[track_caller]
pub fn cross_attention_kv(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
    scale: Option<f32>,
) -> Result<Tensor> {
    const OP: &str = "cross_attention_kv";
    if q.is_tracked() || k.is_tracked() || v.is_tracked() {
        return Err(Error::invalid(
            OP,
            "forward only: its inputs must not be tracked by autograd (run it under no_grad)",
        ));
    }
    let ok = q.rank() == 4 && k.rank() == 3 && v.rank() == 3 && heads > 0 && q.shape()[1] == heads;
    if !ok || k.shape()[..2] != v.shape()[..2] || k.shape()[0] != q.shape()[0] {
        return Err(Error::shape(
            OP,
            "q must be [batch, heads, n, dk], k [batch, m, heads * dk] and v [batch, m, heads * dv]",
            q.shape(),
            k.shape(),
        ));
    }
    let (b, n, dh) = (q.shape()[0], q.shape()[2], q.shape()[3]);
    let (m, hv) = (k.shape()[1], v.shape()[2]);
    if k.shape()[2] != heads * dh || hv % heads != 0 || m == 0 {
        return Err(Error::shape(
            OP,
            "k must be [batch, m >= 1, heads * dk] and v [batch, m, heads * dv]",
            k.shape(),
            v.shape(),
        ));
    }
    check_mask(OP, mask, b, m)?;
    let op = FusedCross {
        heads,
        dh,
        dv: hv / heads,
        channels: 0,
        scale: scale_of(OP, scale, dh)?,
        bk: block_tokens(n).min(m),
        eps: None,
        normalized: false,
        mask: mask.map(|t| t.to_vec()),
        folded: false,
    };
    let (k, v) = (k.contiguous_data(), v.contiguous_data());
    let (out, _) = op.attend_tasks(q, m, KvSource::Given(&k, &v));
    Tensor::from_vec(out, &[b, heads, n, hv / heads])
}

/// A key padding mask, if any, must be `[batch, keys]`.
fn check_mask(op: &'static str, mask: Option<&Tensor>, b: usize, m: usize) -> Result<()> {
    match mask {
        Some(mk) if mk.shape() != [b, m] => Err(Error::shape(
            op,
            "the key padding mask must be [batch, keys]",
            mk.shape(),
            &[b, m],
        )),
        _ => Ok(()),
    }
}

/// How [`fused_cross_attention_with`] evaluates the attention (the results agree up to
/// rounding; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrossKernel {
    /// The cheaper of the two for the shapes, by multiply-add count ([`folded_is_cheaper`]).
    #[default]
    Auto,
    /// Keys and values projected per block of tokens.
    Projected,
    /// The projections folded into the queries and the output.
    Folded,
}

/// Whether the folded kernel needs fewer multiply-adds per input token (forward + backward)
/// than the projected one, by a margin of a quarter: `7·heads·n·c` against
/// `4·c·(hk + hv) + n·(4·hk + 3·hv)` for `n` queries, `c` input channels and total key / value
/// widths `hk`, `hv`. Config A (1 head, 64 queries, 67 channels, widths 64): 30,016 against
/// 62,976; config B (512 queries, 261 channels): 935,424 against 362,880.
pub fn folded_is_cheaper(heads: usize, n: usize, c: usize, hk: usize, hv: usize) -> bool {
    let folded = 7 * heads * n * c;
    let projected = 4 * c * (hk + hv) + n * (4 * hk + 3 * hv);
    4 * folded < 3 * projected
}

/// Cross-attention of queries `q: [b, heads, n, dk]` to raw inputs `x: [b, m, channels]`,
/// where keys and values are `LN(x)·W_kᵀ + b_k` and `LN(x)·W_vᵀ + b_v`, computed block by
/// block and never stored (see the module docs). Returns `[b, heads, n, dv]`. Differentiable
/// in `q`, `x` and every parameter; `mask: [b, m]` (non-zero = attend) is data. The kernel is
/// chosen by [`CrossKernel::Auto`].
#[track_caller]
pub fn fused_cross_attention(
    q: &Tensor,
    x: &Tensor,
    proj: KvProjection<'_>,
    heads: usize,
    mask: Option<&Tensor>,
    scale: Option<f32>,
) -> Result<Tensor> {
    fused_cross_attention_with(q, x, proj, heads, mask, scale, CrossKernel::Auto)
}

/// [`fused_cross_attention`] with an explicit [`CrossKernel`].
#[track_caller]
pub fn fused_cross_attention_with(
    q: &Tensor,
    x: &Tensor,
    proj: KvProjection<'_>,
    heads: usize,
    mask: Option<&Tensor>,
    scale: Option<f32>,
    kernel: CrossKernel,
) -> Result<Tensor> {
    const OP: &str = "fused_cross_attention";
    if q.rank() != 4 || x.rank() != 3 || q.shape()[0] != x.shape()[0] || q.shape()[1] != heads {
        return Err(Error::shape(
            OP,
            "q must be [batch, heads, n, dk] and x [batch, m, channels] with the same batch",
            q.shape(),
            x.shape(),
        ));
    }
    let (b, dh) = (q.shape()[0], q.shape()[3]);
    let (m, c) = (x.shape()[1], x.shape()[2]);
    if m == 0 {
        return Err(Error::invalid(
            OP,
            format!(
                "needs at least one input token, got x of shape {:?}",
                x.shape()
            ),
        ));
    }
    if proj.wk.shape() != [heads * dh, c] {
        return Err(Error::shape(
            OP,
            "wk must be [heads * qk head width, channels]",
            proj.wk.shape(),
            &[heads * dh, c],
        ));
    }
    let hv = proj.wv.shape().first().copied().unwrap_or(0);
    if proj.wv.rank() != 2 || proj.wv.shape()[1] != c || hv % heads != 0 {
        return Err(Error::shape(
            OP,
            "wv must be [heads * v head width, channels]",
            proj.wv.shape(),
            &[hv, c],
        ));
    }
    for (name, t, len) in [("bk", proj.bk, heads * dh), ("bv", proj.bv, hv)] {
        let rule = || format!("{name} must be a vector of the projection's width");
        check_vector(OP, t, len, rule)?;
    }
    if let Some((w, bb, eps)) = proj.norm {
        for (name, t) in [("norm scale", w), ("norm offset", bb)] {
            check_vector(OP, t, c, || format!("{name} must be [channels]"))?;
        }
        if !(eps >= 0.0) {
            return Err(Error::invalid(OP, format!("eps must be >= 0, got {eps}")));
        }
    }
    check_mask(OP, mask, b, m)?;
    let scale = scale_of(OP, scale, dh)?;
    let (lnw, lnb, eps) = match proj.norm {
        Some((w, bb, eps)) => (w, bb, Some(eps)),
        None => (None, None, None),
    };
    let op = FusedCross {
        heads,
        dh,
        dv: hv / heads,
        channels: c,
        scale,
        // Never wider than the input: the block buffers are sized by `bk`.
        bk: block_tokens(q.shape()[2]).min(m.max(1)),
        eps,
        normalized: proj.normalized && eps.is_some(),
        mask: mask.map(|t| t.to_vec()),
        // (the folded kernel works on the channels: none to fold into without them)
        folded: c > 0
            && match kernel {
                CrossKernel::Auto => folded_is_cheaper(heads, q.shape()[2], c, heads * dh, hv),
                CrossKernel::Projected => false,
                CrossKernel::Folded => true,
            },
    };
    // In the order of `CrossInputs::list`.
    let inputs = [
        Some(q),
        Some(x),
        lnw,
        lnb,
        Some(proj.wk),
        Some(proj.wv),
        proj.bk,
        proj.bv,
    ];
    apply_custom(op, &inputs)
}
