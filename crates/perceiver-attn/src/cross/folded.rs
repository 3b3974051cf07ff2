//! The folded kernel ([`super::CrossKernel::Folded`]): the key and value projections are
//! folded into the queries and the output instead of being applied to every input token.
//!
//! Per head, with `x̂ = LN(x)` (`m x c`), `W_k,h` (`dk x c`) and `W_v,h` (`dv x c`):
//! `S = s·Q·(x̂·W_kᵀ + b_k)ᵀ = Q̃·x̂ᵀ + const` with `Q̃ = s·Q·W_k` (`n x c`), and the per-row
//! constant `s·Q·b_k` drops out of the softmax; `O = P·(x̂·W_vᵀ + b_v) = U·W_vᵀ + b_v` with
//! `U = P·x̂` (`n x c`). Per input token this costs `2·n·c` multiply-adds per head instead of
//! `c·(hk + hv) + n·(dk + dv)`: fewer when the queries and channels are few next to the
//! projection widths (config A: 64 queries, 67 channels, widths 64).
//!
//! # Forward
//! Tasks as in the projected kernel; each block is normalised, then per head `S = Q̃·x̂ᵀ`, the
//! online softmax, `U += P·x̂`. After the merge, `O = U·W_vᵀ + b_v` per (example, head), and
//! `U` is kept for the backward (`n x c` floats per example and head, nothing per token).
//!
//! # Backward
//! With `dU = dO·W_v` and `D = rowsum(dU ⊙ U)` (the value bias cancels between `dP` and `D`):
//! per block, recompute `x̂` and `P = exp(Q̃·x̂ᵀ - L)`, then `dS = P ⊙ (dU·x̂ᵀ - D)`,
//! `dQ̃ += dS·x̂` and `dx̂ = Pᵀ·dU + dSᵀ·Q̃` (then the LayerNorm backward). At the end
//! `dQ = s·dQ̃·W_kᵀ`, `dW_k = s·Qᵀ·dQ̃`, `dW_v = dOᵀ·U`, `db_v = Σ dO` over rows that attend to
//! something, and `db_k = 0` (exactly: the softmax is invariant to it).

use super::{merge_partials, slab, task_rows, CrossSaved, FusedCross, Partial};
use crate::flash::{online_softmax, probs_from_lse, row_dots, softmax_grad};
use perceiver_tensor::gemm::{gemm, MatRef};
use perceiver_tensor::kernels::add_assign;
use perceiver_tensor::Tensor;
use rayon::prelude::*;

/// Rows `h·rows..(h+1)·rows` of a contiguous `[heads·rows, c]` weight.
fn head_rows(w: &[f32], h: usize, rows: usize, c: usize) -> MatRef<'_> {
    MatRef::row_major(&w[h * rows * c..(h + 1) * rows * c], rows, c)
}

impl FusedCross {
    /// `Q̃ = scale · Q_h · W_k,h` for every (example, head): `[b, heads, n, c]`.
    fn folded_queries(&self, q: &Tensor, wk: &[f32]) -> Vec<f32> {
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let (heads, dh, c) = (self.heads, self.dh, self.channels);
        let mut qt = vec![0.0f32; batch * heads * n * c];
        if !qt.is_empty() {
            qt.par_chunks_mut(n * c).enumerate().for_each(|(bh, dst)| {
                let (b, h) = (bh / heads, bh % heads);
                let wkh = head_rows(wk, h, dh, c);
                gemm(self.scale, self.q_view(q, b, h), wkh, 0.0, dst);
            });
        }
        qt
    }

    /// The folded forward: `(output [b, heads, n, dv], log-sum-exp per row, U [b, heads, n, c])`.
    pub(super) fn forward_folded(&self, inputs: &[Tensor]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let q = &inputs[0];
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let m = inputs[1].shape()[1];
        let (heads, dv, c) = (self.heads, self.dv, self.channels);
        let p = Self::vecs(inputs, self.has);
        let (wk, wv) = (inputs[4].contiguous(), inputs[5].contiguous());
        let wk = wk.as_slice().expect("contiguous");
        let wv = wv.as_slice().expect("contiguous");
        let qt = self.folded_queries(q, wk);
        let partials: Vec<Partial> = self
            .ranges(batch, m)
            .into_par_iter()
            .map(|(b, ja, jb)| {
                let mut blk = self.block(false);
                let mut u = vec![0.0f32; heads * n * c];
                let mut mx = vec![f32::NEG_INFINITY; heads * n];
                let mut l = vec![0.0f32; heads * n];
                let mut s = vec![0.0f32; n * self.bk];
                for j0 in (ja..jb).step_by(self.bk) {
                    let bc = self.bk.min(jb - j0);
                    self.normalize(inputs, &p, b, j0, bc, &mut blk);
                    let xn = MatRef::row_major(&blk.xn[..bc * c], bc, c);
                    for h in 0..heads {
                        let sb = &mut s[..n * bc];
                        gemm(1.0, slab(&qt, b * heads + h, n, c), xn.t(), 0.0, sb);
                        self.masked(sb, n, bc, b, m, j0);
                        let rows = h * n..(h + 1) * n;
                        let uh = &mut u[h * n * c..(h + 1) * n * c];
                        online_softmax(sb, bc, &mut mx[rows.clone()], &mut l[rows], uh, c);
                        gemm(1.0, MatRef::row_major(sb, n, bc), xn, 1.0, uh);
                    }
                }
                (b, u, mx, l)
            })
            .collect();
        let (u, lse) = merge_partials(batch, heads * n, c, &partials);
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
                    if let Some(bv) = &p[5] {
                        let bvh = &bv[h * dv..(h + 1) * dv];
                        for (r, row) in dst.chunks_mut(dv).enumerate() {
                            if lse[bh * n + r] != f32::INFINITY {
                                row.iter_mut().zip(bvh).for_each(|(y, b)| *y += b);
                            }
                        }
                    }
                });
        }
        (out, lse, u)
    }

    /// The folded backward: gradients in the order of the op's inputs (see the module docs).
    pub(super) fn backward_folded(
        &self,
        saved: &CrossSaved,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Vec<f32>>> {
        let inputs = &saved.inputs;
        let q = &inputs[0];
        let (batch, n) = (q.shape()[0], q.shape()[2]);
        let m = inputs[1].shape()[1];
        let (heads, dh, dv, c) = (self.heads, self.dh, self.dv, self.channels);
        let (hk, hv) = (self.hk(), self.hv());
        let p = Self::vecs(inputs, self.has);
        let (wk, wv) = (inputs[4].contiguous(), inputs[5].contiguous());
        let wk = wk.as_slice().expect("contiguous");
        let wv = wv.as_slice().expect("contiguous");
        let go = g.contiguous();
        let gd = go.as_slice().expect("contiguous");
        let (u, lse) = (&saved.u, &saved.lse);
        let qt = self.folded_queries(q, wk);
        // dU_h = dO_h·W_v,h and D = rowsum(dU ⊙ U).
        let mut du = vec![0.0f32; batch * heads * n * c];
        if !du.is_empty() {
            du.par_chunks_mut(n * c).enumerate().for_each(|(bh, dst)| {
                let doh = slab(gd, bh, n, dv);
                gemm(1.0, doh, head_rows(wv, bh % heads, dv, c), 0.0, dst);
            });
        }
        let drow = row_dots(&du, u, c);
        let need_x = needs[1];
        let need_xn_grad = need_x || needs[2] || needs[3];
        let need_qt = needs[0] || needs[4];
        let tasks = self.ranges(batch, m);
        let mut dx = vec![0.0f32; if need_x { batch * m * c } else { 0 }];
        let work = task_rows(&mut dx, &tasks, c);
        struct Acc {
            b: usize,
            dqt: Vec<f32>,
            dlnw: Vec<f32>,
            dlnb: Vec<f32>,
        }
        let accs: Vec<Acc> = work
            .into_par_iter()
            .map(|((b, ja, jb), dx_rows)| {
                let mut acc = Acc {
                    b,
                    dqt: vec![0.0; if need_qt { heads * n * c } else { 0 }],
                    dlnw: vec![0.0; if needs[2] { c } else { 0 }],
                    dlnb: vec![0.0; if needs[3] { c } else { 0 }],
                };
                let mut blk = self.block(true);
                let mut s = vec![0.0f32; n * self.bk];
                let mut dp = vec![0.0f32; n * self.bk];
                let mut dxn = vec![0.0f32; if need_xn_grad { self.bk * c } else { 0 }];
                let mut ghat = vec![0.0f32; c];
                for j0 in (ja..jb).step_by(self.bk) {
                    let bc = self.bk.min(jb - j0);
                    self.normalize(inputs, &p, b, j0, bc, &mut blk);
                    let xn = MatRef::row_major(&blk.xn[..bc * c], bc, c);
                    for h in 0..heads {
                        let bh = b * heads + h;
                        let (qth, duh) = (slab(&qt, bh, n, c), slab(&du, bh, n, c));
                        let sb = &mut s[..n * bc];
                        gemm(1.0, qth, xn.t(), 0.0, sb);
                        self.masked(sb, n, bc, b, m, j0);
                        probs_from_lse(sb, bc, &lse[bh * n..(bh + 1) * n]);
                        let dpb = &mut dp[..n * bc];
                        gemm(1.0, duh, xn.t(), 0.0, dpb);
                        softmax_grad(dpb, sb, bc, &drow[bh * n..(bh + 1) * n]);
                        let dsm = MatRef::row_major(dpb, n, bc);
                        if need_qt {
                            gemm(1.0, dsm, xn, 1.0, &mut acc.dqt[h * n * c..(h + 1) * n * c]);
                        }
                        if need_xn_grad {
                            let dxb = &mut dxn[..bc * c];
                            let beta = if h == 0 { 0.0 } else { 1.0 };
                            gemm(1.0, MatRef::row_major(sb, n, bc).t(), duh, beta, dxb);
                            gemm(1.0, dsm.t(), qth, 1.0, dxb);
                        }
                    }
                    if need_xn_grad {
                        let dx_out = (&mut dx_rows[..], j0 - ja);
                        let acc_ln = (&mut acc.dlnw[..], &mut acc.dlnb[..]);
                        self.ln_backward(&p, &blk, &dxn[..bc * c], bc, acc_ln, dx_out, &mut ghat);
                    }
                }
                acc
            })
            .collect();
        let mut dqt = vec![0.0f32; if need_qt { batch * heads * n * c } else { 0 }];
        let (mut dlnw, mut dlnb) = (vec![0.0f32; c], vec![0.0f32; c]);
        for a in &accs {
            if need_qt {
                add_assign(
                    &mut dqt[a.b * heads * n * c..(a.b + 1) * heads * n * c],
                    &a.dqt,
                );
            }
            if needs[2] {
                add_assign(&mut dlnw, &a.dlnw);
            }
            if needs[3] {
                add_assign(&mut dlnb, &a.dlnb);
            }
        }
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
                gemm(1.0, slab(gd, bh, n, dv).t(), slab(u, bh, n, c), 1.0, dst);
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
