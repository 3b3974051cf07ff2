//! The backward of the projected kernel (module docs of [`super`], "Backward"): per block,
//! recompute the normalised inputs and their keys and values, then the attention, projection
//! and LayerNorm gradients; per-task accumulators are summed at the end.

use super::*;

impl FusedCross {
    pub(super) fn backward_raw(
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
        let go = g.contiguous();
        let gd = go.as_slice().expect("contiguous");
        let drow = row_dots(gd, &saved.out, dv);
        let need_x = needs[1];
        let need_ln = needs[2] || needs[3];
        let need_xn_grad = need_x || need_ln;
        let tasks = self.ranges(batch, m);
        let mut dx = vec![0.0f32; if need_x { batch * m * c } else { 0 }];
        let work = task_rows(&mut dx, &tasks, c);
        struct Acc {
            b: usize,
            dq: Vec<f32>,
            dlnw: Vec<f32>,
            dlnb: Vec<f32>,
            dwk: Vec<f32>,
            dwv: Vec<f32>,
            dbk: Vec<f32>,
            dbv: Vec<f32>,
        }
        let accs: Vec<Acc> = work
            .into_par_iter()
            .map(|((b, ja, jb), dx_rows)| {
                let mut acc = Acc {
                    b,
                    dq: vec![0.0; if needs[0] { heads * n * dh } else { 0 }],
                    dlnw: vec![0.0; if needs[2] { c } else { 0 }],
                    dlnb: vec![0.0; if needs[3] { c } else { 0 }],
                    dwk: vec![0.0; if needs[4] { hk * c } else { 0 }],
                    dwv: vec![0.0; if needs[5] { hv * c } else { 0 }],
                    dbk: vec![0.0; if needs[6] { hk } else { 0 }],
                    dbv: vec![0.0; if needs[7] { hv } else { 0 }],
                };
                let mut blk = self.block(true);
                let mut s = vec![0.0f32; n * self.bk];
                let mut dp = vec![0.0f32; n * self.bk];
                let mut dk = vec![0.0f32; self.bk * hk];
                let mut dvb = vec![0.0f32; self.bk * hv];
                let mut dxn = vec![0.0f32; if need_xn_grad { self.bk * c } else { 0 }];
                let mut ghat = vec![0.0f32; c];
                for j0 in (ja..jb).step_by(self.bk) {
                    let bc = self.bk.min(jb - j0);
                    self.project(inputs, &p, b, j0, bc, &mut blk);
                    for h in 0..heads {
                        let qh = self.q_view(q, b, h);
                        let kh = MatRef {
                            data: &blk.k,
                            offset: h * dh,
                            rows: bc,
                            cols: dh,
                            row_stride: hk,
                            col_stride: 1,
                        };
                        let vh = MatRef {
                            data: &blk.v,
                            offset: h * dv,
                            rows: bc,
                            cols: dv,
                            row_stride: hv,
                            col_stride: 1,
                        };
                        let bh = b * heads + h;
                        let doh = slab(gd, bh, n, dv);
                        let sb = &mut s[..n * bc];
                        gemm(self.scale, qh, kh.t(), 0.0, sb);
                        self.masked(sb, n, bc, b, m, j0);
                        probs_from_lse(sb, bc, &saved.lse[bh * n..(bh + 1) * n]);
                        let pm = MatRef::row_major(sb, n, bc);
                        // dV_h = Pᵀ·dO_h, into the head's columns of the block's dV
                        gemm_ldc(1.0, pm.t(), doh, 0.0, &mut dvb[h * dv..], hv);
                        let dpb = &mut dp[..n * bc];
                        gemm(1.0, doh, vh.t(), 0.0, dpb);
                        softmax_grad(dpb, sb, bc, &drow[bh * n..(bh + 1) * n]);
                        let dsm = MatRef::row_major(dpb, n, bc);
                        gemm_ldc(self.scale, dsm.t(), qh, 0.0, &mut dk[h * dh..], hk);
                        if needs[0] {
                            gemm(
                                self.scale,
                                dsm,
                                kh,
                                1.0,
                                &mut acc.dq[h * n * dh..(h + 1) * n * dh],
                            );
                        }
                    }
                    let dkm = MatRef::row_major(&dk[..bc * hk], bc, hk);
                    let dvm = MatRef::row_major(&dvb[..bc * hv], bc, hv);
                    let xnm = MatRef::row_major(&blk.xn[..bc * c], bc, c);
                    if needs[4] {
                        gemm(1.0, dkm.t(), xnm, 1.0, &mut acc.dwk);
                    }
                    if needs[5] {
                        gemm(1.0, dvm.t(), xnm, 1.0, &mut acc.dwv);
                    }
                    if needs[6] {
                        for row in dk[..bc * hk].chunks(hk) {
                            acc.dbk.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                        }
                    }
                    if needs[7] {
                        for row in dvb[..bc * hv].chunks(hv) {
                            acc.dbv.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                        }
                    }
                    if !need_xn_grad {
                        continue;
                    }
                    let dxb = &mut dxn[..bc * c];
                    gemm(1.0, dkm, inputs.wk.mat(), 0.0, dxb);
                    gemm(1.0, dvm, inputs.wv.mat(), 1.0, dxb);
                    let dx_out = (&mut dx_rows[..], j0 - ja);
                    let acc_ln = (&mut acc.dlnw[..], &mut acc.dlnb[..]);
                    let norm = (p.ln_w.as_deref(), &blk.xhat[..], &blk.rstd[..]);
                    self.ln_backward(norm, dxb, bc, acc_ln, dx_out, &mut ghat);
                }
                acc
            })
            .collect();
        let mut dq = vec![0.0f32; if needs[0] { batch * heads * n * dh } else { 0 }];
        let (mut dlnw, mut dlnb) = (vec![0.0f32; c], vec![0.0f32; c]);
        let (mut dwk, mut dwv) = (vec![0.0f32; hk * c], vec![0.0f32; hv * c]);
        let (mut dbk, mut dbv) = (vec![0.0f32; hk], vec![0.0f32; hv]);
        for a in &accs {
            if needs[0] {
                add_assign(
                    &mut dq[a.b * heads * n * dh..(a.b + 1) * heads * n * dh],
                    &a.dq,
                );
            }
            let parameters = [
                (&mut dlnw, &a.dlnw),
                (&mut dlnb, &a.dlnb),
                (&mut dwk, &a.dwk),
                (&mut dwv, &a.dwv),
                (&mut dbk, &a.dbk),
                (&mut dbv, &a.dbv),
            ];
            // The parameter inputs are inputs 2 to 7, in this order.
            for ((total, part), &need) in parameters.into_iter().zip(&needs[2..8]) {
                if need {
                    add_assign(total, part);
                }
            }
        }
        vec![
            needs[0].then_some(dq),
            needs[1].then_some(dx),
            needs[2].then_some(dlnw),
            needs[3].then_some(dlnb),
            needs[4].then_some(dwk),
            needs[5].then_some(dwv),
            needs[6].then_some(dbk),
            needs[7].then_some(dbv),
        ]
    }
}
