//! The folded kernel ([`super::CrossKernel::Folded`]): the key and value projections are
//! folded into the queries and the output instead of being applied to every input token, and
//! the LayerNorm's affine into the queries and the output as well.
//!
//! Per head, with `x̂ = LN(x) = γ ⊙ x̄ + β` (`x̄`: the normalised rows before the affine,
//! `m x c`), `W_k,h` (`dk x c`) and `W_v,h` (`dv x c`): `S = s·Q·(x̂·W_kᵀ + b_k)ᵀ = Q̂·x̄ᵀ +
//! const` with `Q̃ = s·Q·W_k` and `Q̂ = Q̃ ⊙ γ` (`n x c`, rows scaled by `γ`); the per-row
//! constant `s·Q·b_k + Q̃·β` drops out of the softmax. `O = P·(x̂·W_vᵀ + b_v) = U·W_vᵀ + b_v`
//! with `U = Ū ⊙ γ + β` and `Ū = P·x̄` (rows of `P` sum to one). Per input token this costs
//! `2·n·c` multiply-adds per head instead of `c·(hk + hv) + n·(dk + dv)`: fewer when the
//! queries and channels are few next to the projection widths (config A: 64 queries, 67
//! channels, widths 64). No per-token affine is ever applied.
//!
//! # Layout
//! Scores are formed token-major: `Sᵀ = x̄·Q̂ᵀ` (`tokens x n`), so the big operand `x̄` is read
//! in place and the softmax runs down the columns with rows of `n` lanes; `Ūᵀ += x̄ᵀ·P`
//! (`c x n`). With config A's 67 channels this suits the 14 x 32 GEMM tile (67 rows: 96% of
//! the tiles' area) where `n x 67` outputs (67 columns: 70%) do not.
//!
//! # Forward
//! Tasks as in the projected kernel; each block is normalised (no affine), then per head
//! `Sᵀ = x̄·Q̂ᵀ`, the online softmax down the columns, `Ūᵀ += x̄ᵀ·P`. After the merge,
//! `O = (Ū ⊙ γ + β)·W_vᵀ + b_v` per (example, head), and `Ū` is kept for the backward (`n x c`
//! floats per example and head, nothing per token).
//!
//! # Backward
//! With `dU = dO·W_v`, `dŪ = dU ⊙ γ` and `D = rowsum(dŪ ⊙ Ū)`: per block, recompute `x̄` and
//! `[Sᵀ | dPᵀ] = x̄·[Q̂; dŪ]ᵀ` (one product), `P = exp(S - L)`, `dS = P ⊙ (dP - D)`, then
//! `Eᵀ += x̄ᵀ·dSᵀ` (`E = dS·x̄` is the gradient of `Q̂`) and, only when `x` needs a gradient,
//! `dx̄ = Pᵀ·dŪ + dSᵀ·Q̂` (read from the same buffers) and the LayerNorm backward. The LayerNorm's own
//! gradients need nothing per token: `dγ = Σ dU ⊙ Ū + Q̃ ⊙ E` and `dβ = Σ dU` over the rows
//! that attend to something (the rows of `dS` sum to zero). At the end `dQ̃ = E ⊙ γ`,
//! `dQ = s·dQ̃·W_kᵀ`, `dW_k = s·Qᵀ·dQ̃`, `dW_v = dOᵀ·U`, `db_v = Σ dO` over rows that attend to
//! something, and `db_k = 0` (exactly: the softmax is invariant to it). An input that needs no
//! gradient (image pixels with their position features) costs three products per block
//! instead of five.

use super::{merge_partials, slab, task_rows, CrossInputs, CrossSaved, FusedCross, Partial};
use perceiver_kernels::gemm::{gemm, MatRef};
use perceiver_kernels::{add_assign, dot, fast_exp};
use perceiver_tensor::Tensor;
use rayon::prelude::*;
use std::ops::Range;

/// Rows `h·rows..(h+1)·rows` of a contiguous `[heads·rows, c]` weight.
fn head_rows(w: &[f32], h: usize, rows: usize, c: usize) -> MatRef<'_> {
    MatRef::row_major(&w[h * rows * c..(h + 1) * rows * c], rows, c)
}

/// Every row of `rows` (width `gamma.len()`) multiplied by `gamma`, in place.
fn scale_rows(rows: &mut [f32], gamma: Option<&[f32]>) {
    if let Some(g) = gamma {
        for row in rows.chunks_mut(g.len()) {
            row.iter_mut().zip(g).for_each(|(x, g)| *x *= g);
        }
    }
}

/// `U = Ū ⊙ γ + β` for the rows that attend to something (finite log-sum-exp); 0 for the rest.
fn affine_rows(
    ubar: &[f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    lse: &[f32],
    c: usize,
) -> Vec<f32> {
    let mut u = ubar.to_vec();
    for (row, &l) in u.chunks_mut(c).zip(lse) {
        if l == f32::INFINITY {
            row.fill(0.0);
            continue;
        }
        scale_rows(row, gamma);
        if let Some(b) = beta {
            add_assign(row, b);
        }
    }
    u
}

/// Adds the `c x n` matrix `src` transposed to the `n x c` matrix `dst`.
fn add_transposed(dst: &mut [f32], src: &[f32], n: usize, c: usize) {
    for (ci, col) in src.chunks(n).enumerate().take(c) {
        for (i, &v) in col.iter().enumerate() {
            dst[i * c + ci] += v;
        }
    }
}

/// One block of the forward's online softmax down the columns of `s` (`tokens x n`, one row of
/// `n` logits per token): updates the running column maxima `mx` and sums `l`, replaces the
/// logits by `e^(s - max)` and returns in `alpha` the factor that rescales what was
/// accumulated before (0 while a column has seen only masked tokens). `shift` is scratch.
fn online_softmax_cols(
    s: &mut [f32],
    mx: &mut [f32],
    l: &mut [f32],
    alpha: &mut [f32],
    shift: &mut [f32],
) {
    let n = mx.len();
    perceiver_kernels::simd!({
        shift.fill(f32::NEG_INFINITY);
        for row in s.chunks(n) {
            shift.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
        }
        for i in 0..n {
            let m_new = mx[i].max(shift[i]);
            // A column of masked tokens only: shift by 0 so that e^(-∞ - 0) = 0, not NaN.
            let sh = if m_new == f32::NEG_INFINITY {
                0.0
            } else {
                m_new
            };
            alpha[i] = fast_exp(mx[i] - sh);
            l[i] *= alpha[i];
            mx[i] = m_new;
            shift[i] = sh;
        }
        for row in s.chunks_mut(n) {
            for ((v, sum), &sh) in row.iter_mut().zip(l.iter_mut()).zip(shift.iter()) {
                *v = fast_exp(*v - sh);
                *sum += *v;
            }
        }
    })
}

/// The backward's softmax on `[Sᵀ | dPᵀ]` (`tokens x 2n`): the left half becomes
/// `P = e^(S - L)` with the forward's log-sum-exp `lse` per column, the right half
/// `dS = P ⊙ (dP - D)`.
fn softmax_grad_cols(sd: &mut [f32], lse: &[f32], d: &[f32]) {
    let n = lse.len();
    perceiver_kernels::simd!({
        for row in sd.chunks_mut(2 * n) {
            let (p, dp) = row.split_at_mut(n);
            for (((p, dp), &l), &d) in p.iter_mut().zip(dp).zip(lse).zip(d) {
                *p = fast_exp(*p - l);
                *dp = *p * (*dp - d);
            }
        }
    })
}

impl FusedCross {
    /// `s · Q_h · W_k,h`, each row times `gamma` when given, for every (example, head):
    /// `[b, heads, n, c]` (`Q̃`, or `Q̂` with `gamma = γ`).
    fn folded_queries(&self, q: &Tensor, wk: &[f32], gamma: Option<&[f32]>) -> Vec<f32> {
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let (heads, dh, c) = (self.heads, self.dh, self.channels);
        let mut qt = vec![0.0f32; batch * heads * n * c];
        if !qt.is_empty() {
            qt.par_chunks_mut(n * c).enumerate().for_each(|(bh, dst)| {
                let (b, h) = (bh / heads, bh % heads);
                let wkh = head_rows(wk, h, dh, c);
                gemm(self.scale, self.q_view(q, b, h), wkh, 0.0, dst);
                scale_rows(dst, gamma);
            });
        }
        qt
    }

    /// Whether `x̄` is the input itself (no LayerNorm, or an input of normalised rows), read in
    /// place rather than normalised into a block buffer.
    fn xbar_in_place(&self) -> bool {
        self.eps.is_none() || self.normalized
    }

    /// `x̄` for tokens `j0..j0+bc` of example `b`: a view of the input ([`Self::xbar_in_place`])
    /// or of `blk.xn`, where [`FusedCross::normalize`] puts the block first.
    fn xbar<'a>(
        &self,
        inputs: &'a CrossInputs,
        blk: &'a mut super::Block,
        b: usize,
        j0: usize,
        bc: usize,
    ) -> MatRef<'a> {
        let c = self.channels;
        if !self.xbar_in_place() {
            self.normalize(inputs, (None, None), b, j0, bc, blk);
            return MatRef::row_major(&blk.xn[..bc * c], bc, c);
        }
        let (data, l) = inputs.x.raw();
        let s = l.strides();
        MatRef {
            data,
            offset: l.offset() + b * s[0] + j0 * s[1],
            rows: bc,
            cols: c,
            row_stride: s[1],
            col_stride: s[2],
        }
    }

    /// Tokens `tokens` (of `m`) of example `b` that are masked out: the first `n` of their
    /// `ld` logits (rows of `s`) become `-∞`.
    fn mask_tokens(
        &self,
        s: &mut [f32],
        ld: usize,
        n: usize,
        b: usize,
        m: usize,
        tokens: Range<usize>,
    ) {
        if let Some(mask) = &self.mask {
            let mk = &mask[b * m + tokens.start..b * m + tokens.end];
            for (row, &keep) in s.chunks_mut(ld).zip(mk) {
                if keep == 0.0 {
                    row[..n].fill(f32::NEG_INFINITY);
                }
            }
        }
    }

    /// The folded forward: `(output [b, heads, n, dv], log-sum-exp per row, Ū [b, heads, n, c])`.
    pub(super) fn forward_folded(&self, inputs: &CrossInputs) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let q = &inputs.q;
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let m = inputs.x.shape()[1];
        let (heads, dv, c) = (self.heads, self.dv, self.channels);
        let p = inputs.vecs();
        let (gamma, beta) = (p.ln_w.as_deref(), p.ln_b.as_deref());
        let (wk, wv) = (inputs.wk.contiguous(), inputs.wv.contiguous());
        let wk = wk.as_slice().expect("contiguous");
        let wv = wv.as_slice().expect("contiguous");
        let qh = self.folded_queries(q, wk, gamma);
        let partials: Vec<Partial> = self
            .ranges(batch, m)
            .into_par_iter()
            .map_init(
                // Scratch reused by the tasks of one rayon job (written before it is read).
                || {
                    let cols = (vec![0.0f32; n], vec![0.0f32; n]);
                    (self.block(false), vec![0.0f32; self.bk * n], cols)
                },
                |(blk, s, (alpha, shift)), (b, ja, jb)| {
                    let mut ut = vec![0.0f32; heads * c * n];
                    let mut mx = vec![f32::NEG_INFINITY; heads * n];
                    let mut l = vec![0.0f32; heads * n];
                    for j0 in (ja..jb).step_by(self.bk) {
                        let bc = self.bk.min(jb - j0);
                        let xh = self.xbar(inputs, blk, b, j0, bc);
                        for h in 0..heads {
                            let sb = &mut s[..bc * n];
                            gemm(1.0, xh, slab(&qh, b * heads + h, n, c).t(), 0.0, sb);
                            self.mask_tokens(sb, n, n, b, m, j0..j0 + bc);
                            let rows = h * n..(h + 1) * n;
                            let (mxh, lh) = (&mut mx[rows.clone()], &mut l[rows]);
                            online_softmax_cols(sb, mxh, lh, alpha, shift);
                            let uth = &mut ut[h * c * n..(h + 1) * c * n];
                            if alpha.iter().any(|&a| a != 1.0) {
                                scale_rows(uth, Some(alpha));
                            }
                            gemm(1.0, xh.t(), MatRef::row_major(sb, bc, n), 1.0, uth);
                        }
                    }
                    let mut u = vec![0.0f32; heads * n * c];
                    for h in 0..heads {
                        let (dst, src) = (&mut u[h * n * c..], &ut[h * c * n..(h + 1) * c * n]);
                        add_transposed(dst, src, n, c);
                    }
                    (b, u, mx, l)
                },
            )
            .collect();
        let (ubar, lse) = merge_partials(batch, heads * n, c, &partials);
        let u = affine_rows(&ubar, gamma, beta, &lse, c);
        // O_h = U_h·W_v,hᵀ + b_v,h; rows that attend to nothing stay 0, as in the projected
        // kernel.
        let mut out = vec![0.0f32; batch * heads * n * dv];
        if !out.is_empty() {
            out.par_chunks_mut(n * dv)
                .enumerate()
                .for_each(|(bh, dst)| {
                    let h = bh % heads;
                    gemm(
                        1.0,
                        slab(&u, bh, n, c),
                        head_rows(wv, h, dv, c).t(),
                        0.0,
                        dst,
                    );
                    if let Some(bv) = &p.bv {
                        let bvh = &bv[h * dv..(h + 1) * dv];
                        for (r, row) in dst.chunks_mut(dv).enumerate() {
                            if lse[bh * n + r] != f32::INFINITY {
                                add_assign(row, bvh);
                            }
                        }
                    }
                });
        }
        (out, lse, ubar)
    }

    /// The folded backward: gradients in the order of the op's inputs (see the module docs).
    pub(super) fn backward_folded(
        &self,
        saved: &CrossSaved,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Vec<f32>>> {
        let inputs = &saved.inputs;
        let q = &inputs.q;
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let m = inputs.x.shape()[1];
        let (heads, dh, dv, c) = (self.heads, self.dh, self.dv, self.channels);
        let (hk, hv) = (self.hk(), self.hv());
        let p = inputs.vecs();
        let (gamma, beta) = (p.ln_w.as_deref(), p.ln_b.as_deref());
        let (wk, wv) = (inputs.wk.contiguous(), inputs.wv.contiguous());
        let wk = wk.as_slice().expect("contiguous");
        let wv = wv.as_slice().expect("contiguous");
        let go = g.contiguous();
        let gd = go.as_slice().expect("contiguous");
        let (ubar, lse) = (&saved.u, &saved.lse);
        let qt = self.folded_queries(q, wk, None);
        let need_x = needs[1];
        let need_e = needs[0] || needs[2] || needs[4];
        // Per (example, head): dU = dO·W_v, and the stacked operand [Q̂; dŪ] of the scores.
        let nc = n * c;
        let mut du = vec![0.0f32; batch * heads * nc];
        let mut qd = vec![0.0f32; 2 * du.len()];
        if !du.is_empty() {
            du.par_chunks_mut(nc)
                .zip(qd.par_chunks_mut(2 * nc))
                .enumerate()
                .for_each(|(bh, (duh, st))| {
                    gemm(
                        1.0,
                        slab(gd, bh, n, dv),
                        head_rows(wv, bh % heads, dv, c),
                        0.0,
                        duh,
                    );
                    let (top, bottom) = st.split_at_mut(nc);
                    top.copy_from_slice(&qt[bh * nc..(bh + 1) * nc]);
                    scale_rows(top, gamma);
                    bottom.copy_from_slice(duh);
                    scale_rows(bottom, gamma);
                });
        }
        // D = rowsum(dŪ ⊙ Ū).
        let drow: Vec<f32> = (0..batch * heads * n)
            .map(|r| {
                let (bh, i) = (r / n, r % n);
                let dub = &qd[bh * 2 * nc + nc + i * c..bh * 2 * nc + nc + (i + 1) * c];
                dot(dub, &ubar[r * c..(r + 1) * c])
            })
            .collect();
        let tasks = self.ranges(batch, m);
        let mut dx = vec![0.0f32; if need_x { batch * m * c } else { 0 }];
        let work = task_rows(&mut dx, &tasks, c);
        // Scratch reused by the tasks of one rayon job (written before it is read).
        let scratch = || {
            let dxh = vec![0.0f32; if need_x { self.bk * c } else { 0 }];
            (
                self.block(false),
                vec![0.0f32; self.bk * 2 * n],
                dxh,
                vec![0.0f32; c],
            )
        };
        let ets: Vec<(usize, Vec<f32>)> = work
            .into_par_iter()
            .map_init(scratch, |(blk, sd, dxh, ghat), ((b, ja, jb), dx_rows)| {
                let mut et = vec![0.0f32; if need_e { heads * c * n } else { 0 }];
                for j0 in (ja..jb).step_by(self.bk) {
                    let bc = self.bk.min(jb - j0);
                    let xh = self.xbar(inputs, blk, b, j0, bc);
                    for h in 0..heads {
                        let bh = b * heads + h;
                        let sdb = &mut sd[..bc * 2 * n];
                        gemm(1.0, xh, slab(&qd, bh, 2 * n, c).t(), 0.0, sdb);
                        self.mask_tokens(sdb, 2 * n, n, b, m, j0..j0 + bc);
                        let rows = bh * n..(bh + 1) * n;
                        softmax_grad_cols(sdb, &lse[rows.clone()], &drow[rows]);
                        let sdm = MatRef::row_major(sdb, bc, 2 * n);
                        if need_e {
                            let ds = MatRef {
                                offset: n,
                                cols: n,
                                ..sdm
                            };
                            gemm(1.0, xh.t(), ds, 1.0, &mut et[h * c * n..(h + 1) * c * n]);
                        }
                        if need_x {
                            // dx̄ = Pᵀ·dŪ + dSᵀ·Q̂: each half of [Sᵀ | dPᵀ] (now [P | dS],
                            // token-major) against the other half of [Q̂; dŪ].
                            let beta = if h == 0 { 0.0 } else { 1.0 };
                            let half = |i: usize| MatRef {
                                offset: i * n,
                                cols: n,
                                ..sdm
                            };
                            let stack = slab(&qd, bh, 2 * n, c);
                            let (qh, dub) = (
                                MatRef { rows: n, ..stack },
                                MatRef {
                                    offset: stack.offset + n * c,
                                    rows: n,
                                    ..stack
                                },
                            );
                            let dxb = &mut dxh[..bc * c];
                            gemm(1.0, half(0), dub, beta, dxb);
                            gemm(1.0, half(1), qh, 1.0, dxb);
                        }
                    }
                    if need_x && self.xbar_in_place() {
                        // (the input is x̄: its gradient is dx̄)
                        let at = (j0 - ja) * c;
                        dx_rows[at..at + bc * c].copy_from_slice(&dxh[..bc * c]);
                    } else if need_x {
                        let norm = (None, &blk.xn[..], &blk.rstd[..]);
                        let dx_out = (&mut dx_rows[..], j0 - ja);
                        let no_affine: (&mut [f32], &mut [f32]) = (&mut [], &mut []);
                        self.ln_backward(norm, &dxh[..bc * c], bc, no_affine, dx_out, ghat);
                    }
                }
                (b, et)
            })
            .collect();
        // E = dS·x̄ per (example, head), summed over the tasks.
        let mut e = vec![0.0f32; if need_e { batch * heads * nc } else { 0 }];
        if need_e {
            for (b, et) in &ets {
                for h in 0..heads {
                    let dst = &mut e[(b * heads + h) * nc..(b * heads + h + 1) * nc];
                    add_transposed(dst, &et[h * c * n..(h + 1) * c * n], n, c);
                }
            }
        }
        // dγ = Σ dU ⊙ Ū + Q̃ ⊙ E, dβ = Σ dU over the rows that attend.
        let mut dlnw = vec![0.0f32; if needs[2] { c } else { 0 }];
        let mut dlnb = vec![0.0f32; if needs[3] { c } else { 0 }];
        for r in 0..batch * heads * n {
            let rc = r * c..(r + 1) * c;
            if lse[r] == f32::INFINITY {
                continue;
            }
            if needs[2] {
                let (du, ub, qt, e) = (
                    &du[rc.clone()],
                    &ubar[rc.clone()],
                    &qt[rc.clone()],
                    &e[rc.clone()],
                );
                for i in 0..c {
                    dlnw[i] += du[i] * ub[i] + qt[i] * e[i];
                }
            }
            if needs[3] {
                add_assign(&mut dlnb, &du[rc]);
            }
        }
        // dQ̃ = E ⊙ γ.
        let mut dqt = e;
        scale_rows(&mut dqt, gamma.filter(|_| need_e));
        // dQ_h = s·dQ̃_h·W_k,hᵀ.
        let dq = needs[0].then(|| {
            let mut dq = vec![0.0f32; batch * heads * n * dh];
            if !dq.is_empty() {
                dq.par_chunks_mut(n * dh).enumerate().for_each(|(bh, dst)| {
                    let wkh = head_rows(wk, bh % heads, dh, c);
                    gemm(self.scale, slab(&dqt, bh, n, c), wkh.t(), 0.0, dst);
                });
            }
            dq
        });
        // dW_k,h = s·Q_hᵀ·dQ̃_h, dW_v,h = dO_hᵀ·U_h, db_v = Σ dO over rows that attend.
        let u = if needs[5] {
            affine_rows(ubar, gamma, beta, lse, c)
        } else {
            Vec::new()
        };
        let mut dwk = vec![0.0f32; if needs[4] { hk * c } else { 0 }];
        let mut dwv = vec![0.0f32; if needs[5] { hv * c } else { 0 }];
        let mut dbv = vec![0.0f32; if needs[7] { hv } else { 0 }];
        for bh in 0..batch * heads {
            let (b, h) = (bh / heads, bh % heads);
            if needs[4] {
                let dst = &mut dwk[h * dh * c..(h + 1) * dh * c];
                gemm(
                    self.scale,
                    self.q_view(q, b, h).t(),
                    slab(&dqt, bh, n, c),
                    1.0,
                    dst,
                );
            }
            if needs[5] {
                let dst = &mut dwv[h * dv * c..(h + 1) * dv * c];
                gemm(1.0, slab(gd, bh, n, dv).t(), slab(&u, bh, n, c), 1.0, dst);
            }
            if needs[7] {
                for r in 0..n {
                    if lse[bh * n + r] != f32::INFINITY {
                        let row = &gd[(bh * n + r) * dv..(bh * n + r + 1) * dv];
                        add_assign(&mut dbv[h * dv..(h + 1) * dv], row);
                    }
                }
            }
        }
        vec![
            dq,
            needs[1].then_some(dx),
            needs[2].then_some(dlnw),
            needs[3].then_some(dlnb),
            needs[4].then_some(dwk),
            needs[5].then_some(dwv),
            needs[6].then(|| vec![0.0f32; hk]),
            needs[7].then_some(dbv),
        ]
    }
}
