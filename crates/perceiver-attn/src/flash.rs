//! The fused attention kernel (FlashAttention-style, on the CPU).
//!
//! # Forward
//! Work is split into tasks of (batch, head, block of [`BLOCK_Q`] queries) under rayon. Each
//! task walks the keys in blocks of [`BLOCK_K`] (up to [`FULL_KEYS`] keys: all in one block,
//! with larger query blocks): `S = scale·Q_i·K_jᵀ` (one GEMM into a
//! `BLOCK_Q x BLOCK_K` buffer that stays in cache), masked columns set to `-∞`, then the online
//! softmax: with the running row maximum `m` and sum `l`,
//! `m' = max(m, rowmax S)`, `P = exp(S - m')`, `l' = l·e^(m-m') + rowsum P`,
//! `O' = O·e^(m-m') + P·V_j` (a second GEMM accumulating into the output rows). At the end
//! `O /= l` and the log-sum-exp `L = m + ln l` is saved, one float per query row.
//!
//! # Backward
//! With `D_i = rowsum(dO_i ⊙ O_i)` (or, when one block holds all keys, `Σ_j P_ij dP_ij`
//! from the recomputed block, which is better conditioned), tasks own ranges of key blocks (so `dK` and `dV` rows are
//! written by one task each) and loop over query blocks, recomputing
//! `P = exp(scale·Q_i·K_jᵀ - L_i)`, then `dV_j += Pᵀ·dO_i`, `dP = dO_i·V_jᵀ`,
//! `dS = P ⊙ (dP - D_i)`, `dK_j += scale·dSᵀ·Q_i`, `dQ_i += scale·dS·K_j` (each task keeps a
//! private `dQ` that is summed at the end). Nothing of size `queries x keys` is ever stored.
//!
//! Fully masked rows have `l = 0`: their output is 0 and `L = +∞`, so the recomputed `P` is 0
//! and they pass no gradient.
//!
//! All GEMMs run single-threaded inside the rayon tasks and read q, k, v and `dO` through their
//! strides (non-contiguous inputs are not copied). The output and the gradients of q, k and v
//! are `[b, heads, rows, width]` views of `[b, rows, heads, width]` buffers (see [`HeadRows`]),
//! the layout of the projections around the attention, so merging or splitting heads around
//! it copies nothing.

use crate::check::{check, scale_of};
use perceiver_kernels::gemm::{gemm, MatRef};
use perceiver_kernels::{add_assign, exp_shift_sum, fast_exp, max as kmax};
use perceiver_tensor::{apply_custom, CustomOp, Error, Forward, Result, Tensor};
use rayon::prelude::*;

/// Queries per forward task (and per backward query block).
pub const BLOCK_Q: usize = 64;
/// Keys per block (the score buffer is `BLOCK_Q x BLOCK_K` floats: 32 KiB, inside L2).
pub const BLOCK_K: usize = 128;
/// Up to this many keys the forward takes them all in one block, with up to [`FULL_ROWS`]
/// queries per task: larger GEMMs that pack each operand once per task instead of thin ones
/// that repack them per block, and no online rescaling (config B's 512-latent self-attention:
/// 64 x 64 x 128 products run at about 55 GFLOP/s, a whole head's 512 x 64 x 512 at 140 per
/// core).
pub const FULL_KEYS: usize = 512;
/// Most queries per forward task when all keys fit one block (a score buffer of at most
/// `FULL_ROWS x FULL_KEYS` floats, 1 MiB, inside L2).
pub const FULL_ROWS: usize = 512;

/// Queries and keys per forward block for `tasks_bh` (batch, head) pairs of `n` queries and
/// `m` keys: see [`FULL_KEYS`]. Query blocks stay small enough for two tasks per thread.
fn forward_blocks(tasks_bh: usize, n: usize, m: usize) -> (usize, usize) {
    if m > FULL_KEYS {
        return (BLOCK_Q, BLOCK_K);
    }
    let want = 2 * rayon::current_num_threads().max(1);
    let per_bh = want.div_ceil(tasks_bh.max(1)).max(1);
    let rows = n.div_ceil(per_bh).clamp(BLOCK_Q, FULL_ROWS);
    (rows, m.max(1))
}

/// One key block of the online softmax for `mx.len()` query rows: `s` holds their logits over
/// `bc` keys and becomes `exp(s - m')`; the running maxima `mx`, sums `l` and accumulated
/// outputs `o` (rows of `width`) are rescaled to the new maxima. Fully masked rows (all `-∞`)
/// become 0; a NaN logit makes the row's state NaN. Shared with the fused cross-attention kernels.
pub(crate) fn online_softmax(
    s: &mut [f32],
    bc: usize,
    mx: &mut [f32],
    l: &mut [f32],
    o: &mut [f32],
    width: usize,
) {
    // Vectorised as a whole, the row maxima and rescaling included (outside `simd!` they
    // compile to baseline SSE code).
    perceiver_kernels::simd!(for r in 0..mx.len() {
        let row = &mut s[r * bc..(r + 1) * bc];
        let rmax = kmax(row);
        if rmax == f32::NEG_INFINITY {
            // `kmax` skips NaN, so a row of NaN (and masked) logits lands here too: it poisons
            // the row's state, as a NaN does in the plain softmax, instead of passing as masked.
            if row.iter().any(|v| v.is_nan()) {
                mx[r] = f32::NAN;
                l[r] = f32::NAN;
                o[r * width..(r + 1) * width].fill(f32::NAN);
            }
            row.fill(0.0);
            continue;
        }
        let m_new = mx[r].max(rmax);
        let alpha = fast_exp(mx[r] - m_new);
        let acc = exp_shift_sum(row, m_new);
        l[r] = l[r] * alpha + acc;
        if alpha != 1.0 {
            o[r * width..(r + 1) * width]
                .iter_mut()
                .for_each(|x| *x *= alpha);
        }
        mx[r] = m_new;
    })
}

/// `P = exp(S - L)` for a block's rows in a backward: `s` holds `lse.len()` rows of `bc` logits
/// and becomes their probabilities, from the forward's log-sum-exp of each row. Shared with
/// the fused cross-attention kernels.
pub(crate) fn probs_from_lse(s: &mut [f32], bc: usize, lse: &[f32]) {
    if bc == 0 {
        return;
    }
    for (row, &l) in s.chunks_mut(bc).zip(lse) {
        exp_shift_sum(row, l);
    }
}

/// `dS = P ⊙ (dP - D)` in place of `dp`, for rows of `bc` with one `d` per row (the softmax
/// backward). Used by the fused cross-attention kernels.
pub(crate) fn softmax_grad(dp: &mut [f32], p: &[f32], bc: usize, d: &[f32]) {
    if bc == 0 {
        return;
    }
    perceiver_kernels::simd!(
        for ((dr, pr), &d) in dp.chunks_mut(bc).zip(p.chunks(bc)).zip(d) {
            dr.iter_mut().zip(pr).for_each(|(x, p)| *x = p * (*x - d));
        }
    )
}

/// `rowsum(a ⊙ b)` for two matrices with rows of `width` (one value per row; none when
/// `width` is 0).
pub(crate) fn row_dots(a: &[f32], b: &[f32], width: usize) -> Vec<f32> {
    a.chunks(width.max(1))
        .zip(b.chunks(width.max(1)))
        .map(|(x, y)| perceiver_kernels::dot(x, y))
        .collect()
}

/// The fused attention op (see the module docs). Build it through [`flash_attention`].
#[derive(Clone, Debug)]
pub struct FlashAttention {
    scale: f32,
    /// Key padding mask `[batch * keys]`, non-zero = attend.
    mask: Option<Vec<f32>>,
}

/// What the forward keeps for the backward: the inputs (shared, not copied), the output and
/// one log-sum-exp per query row.
pub struct FlashSaved {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Vec<f32>,
}

/// A strided 4-D operand: storage, offset and strides of `[b, h, row, col]`.
#[derive(Clone, Copy)]
struct Op4<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 4],
}

impl<'a> Op4<'a> {
    fn new(t: &'a Tensor) -> Self {
        let (data, l) = t.raw();
        let s = l.strides();
        Op4 {
            data,
            offset: l.offset(),
            strides: [s[0], s[1], s[2], s[3]],
        }
    }

    /// Rows `r0..r0+rows` of the matrix at (b, h).
    fn rows(&self, b: usize, h: usize, r0: usize, rows: usize, cols: usize) -> MatRef<'a> {
        MatRef {
            data: self.data,
            offset: self.offset + b * self.strides[0] + h * self.strides[1] + r0 * self.strides[2],
            rows,
            cols,
            row_stride: self.strides[2],
            col_stride: self.strides[3],
        }
    }
}

/// A `[b, rows, heads, width]` buffer (the layout the projections around the attention use:
/// `[b, rows, heads · width]`), written by tasks that each own the rows of one (example, head)
/// in a range. Outputs and gradients are returned as `[b, heads, rows, width]` views of it, so
/// merging or splitting the heads afterwards copies nothing.
#[derive(Clone, Copy)]
struct HeadRows {
    ptr: *mut f32,
    heads: usize,
    rows: usize,
    width: usize,
}

// SAFETY: shared between rayon tasks only to write disjoint (example, head, row) blocks.
unsafe impl Send for HeadRows {}
unsafe impl Sync for HeadRows {}

impl HeadRows {
    fn new(buf: &mut [f32], heads: usize, rows: usize, width: usize) -> Self {
        assert_eq!(
            buf.len() % (heads * rows * width).max(1),
            0,
            "HeadRows: buffer size"
        );
        HeadRows {
            ptr: buf.as_mut_ptr(),
            heads,
            rows,
            width,
        }
    }

    /// Copies `src` (rows of `width`) to rows `r0..` of head `h` of example `b`.
    ///
    /// # Safety
    /// The rows must be inside the buffer and written or read by nothing else meanwhile.
    unsafe fn write(&self, b: usize, h: usize, r0: usize, src: &[f32]) {
        let w = self.width;
        for (r, row) in src.chunks(w.max(1)).enumerate().filter(|_| w > 0) {
            let at = ((b * self.rows + r0 + r) * self.heads + h) * w;
            // SAFETY: forwarded from the caller.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.ptr.add(at), w) };
        }
    }
}

/// `[b, rows, heads, width]` data as the `[b, heads, rows, width]` view of [`HeadRows`].
fn heads_tensor(data: Vec<f32>, b: usize, heads: usize, rows: usize, width: usize) -> Tensor {
    Tensor::from_vec(data, &[b, rows, heads, width])
        .and_then(|t| t.permute(&[0, 2, 1, 3]))
        .expect("sizes agree")
}

fn masked_columns(s: &mut [f32], cols: usize, mask: Option<&[f32]>) {
    if let Some(m) = mask {
        for (c, &keep) in m.iter().enumerate() {
            if keep == 0.0 {
                for row in s.chunks_mut(cols) {
                    row[c] = f32::NEG_INFINITY;
                }
            }
        }
    }
}

impl FlashAttention {
    fn mask_row(&self, b: usize, keys: usize) -> Option<&[f32]> {
        self.mask.as_ref().map(|m| &m[b * keys..(b + 1) * keys])
    }

    fn forward_raw(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> (Tensor, Vec<f32>) {
        let (b_, h_, n, dk) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let (m, dv) = (k.shape()[2], v.shape()[3]);
        let (qo, ko, vo) = (Op4::new(q), Op4::new(k), Op4::new(v));
        let mut out = vec![0.0f32; b_ * n * h_ * dv];
        let mut lse = vec![0.0f32; b_ * h_ * n];
        if n == 0 || dv == 0 && dk == 0 {
            return (heads_tensor(out, b_, h_, n, dv), lse);
        }
        let scale = self.scale;
        let (block_q, block_k) = forward_blocks(b_ * h_, n, m);
        let blocks_per_bh = n.div_ceil(block_q);
        let dst = HeadRows::new(&mut out, h_, n, dv);
        let task = |scratch: &mut (Vec<f32>, Vec<f32>), idx: usize, l_out: &mut [f32]| {
            let bh = idx / blocks_per_bh;
            let (b, h) = (bh / h_, bh % h_);
            let i0 = (idx % blocks_per_bh) * block_q;
            let br = l_out.len();
            let qi = qo.rows(b, h, i0, br, dk);
            // Scratch reused by the tasks of one rayon job: the scores are written before they
            // are read; the output rows accumulate, so they start at zero.
            let (s, o) = scratch;
            let o = &mut o[..br * dv];
            o.fill(0.0);
            let mut mx = vec![f32::NEG_INFINITY; br];
            let mut sum = vec![0.0f32; br];
            let mask = self.mask_row(b, m);
            for j0 in (0..m).step_by(block_k) {
                let bc = block_k.min(m - j0);
                let sb = &mut s[..br * bc];
                gemm(scale, qi, ko.rows(b, h, j0, bc, dk).t(), 0.0, sb);
                masked_columns(sb, bc, mask.map(|mk| &mk[j0..j0 + bc]));
                online_softmax(sb, bc, &mut mx, &mut sum, o, dv);
                gemm(
                    1.0,
                    MatRef::row_major(sb, br, bc),
                    vo.rows(b, h, j0, bc, dv),
                    1.0,
                    o,
                );
            }
            for r in 0..br {
                let row = &mut o[r * dv..(r + 1) * dv];
                if sum[r] == 0.0 {
                    row.fill(0.0);
                    l_out[r] = f32::INFINITY;
                } else {
                    let inv = 1.0 / sum[r];
                    row.iter_mut().for_each(|x| *x *= inv);
                    l_out[r] = mx[r] + sum[r].ln();
                }
            }
            // SAFETY: this task owns rows i0..i0+br of (b, h).
            unsafe { dst.write(b, h, i0, o) };
        };
        // One task per (batch, head, query block); their log-sum-exp rows are disjoint chunks.
        let mut chunks: Vec<(usize, &mut [f32])> = Vec::with_capacity(b_ * h_ * blocks_per_bh);
        for (bh, l_bh) in lse.chunks_mut(n).enumerate() {
            let mut l_rest = l_bh;
            for blk in 0..blocks_per_bh {
                let rows = block_q.min(n - blk * block_q);
                let (l_head, l_tail) = l_rest.split_at_mut(rows);
                chunks.push((bh * blocks_per_bh + blk, l_head));
                l_rest = l_tail;
            }
        }
        let scratch = || {
            (
                vec![0.0f32; block_q * block_k.min(m)],
                vec![0.0f32; block_q * dv],
            )
        };
        chunks
            .into_par_iter()
            .for_each_init(scratch, |sc, (idx, l)| task(sc, idx, l));
        (heads_tensor(out, b_, h_, n, dv), lse)
    }

    /// The gradients `(dq, dk, dv)`, each in the `[b, rows, heads, width]` layout of
    /// [`HeadRows`].
    fn backward_raw(
        &self,
        saved: &FlashSaved,
        g: &Tensor,
        needs: &[bool],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (q, k, v) = (&saved.q, &saved.k, &saved.v);
        let (b_, h_, n, dk) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
        let (m, dv) = (k.shape()[2], v.shape()[3]);
        let (qo, ko, vo) = (Op4::new(q), Op4::new(k), Op4::new(v));
        let scale = self.scale;
        // dO and O are read through their strides (the `[b, heads, n, dv]` views of
        // `[b, n, heads, dv]` buffers that the layers around the attention use).
        let go4 = Op4::new(g);
        let oo = Op4::new(&saved.out);
        // D_i = rowsum(dO ⊙ O), needed only when the keys take several blocks (see below).
        let drow: Vec<f32> = if m > BLOCK_K {
            (0..b_ * h_ * n)
                .map(|r| {
                    let (b, h, i) = (r / (h_ * n), r / n % h_, r % n);
                    mat_row_dot(go4.rows(b, h, i, 1, dv), oo.rows(b, h, i, 1, dv))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut dq = vec![0.0f32; b_ * n * h_ * dk];
        let mut dkv = vec![0.0f32; b_ * m * h_ * dk];
        let mut dvv = vec![0.0f32; b_ * m * h_ * dv];
        let dk_dst = HeadRows::new(&mut dkv, h_, m, dk);
        let dv_dst = HeadRows::new(&mut dvv, h_, m, dv);
        // Key ranges per (batch, head): enough tasks to keep every thread busy.
        let threads = rayon::current_num_threads().max(1);
        let key_blocks = m.div_ceil(BLOCK_K);
        let per_bh = if b_ * h_ >= 2 * threads {
            1
        } else {
            (2 * threads).div_ceil(b_ * h_).min(key_blocks).max(1)
        };
        let blocks_per_task = key_blocks.div_ceil(per_bh);
        let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
        for bh in 0..b_ * h_ {
            let mut j = 0;
            while j < m {
                let len = (blocks_per_task * BLOCK_K).min(m - j);
                tasks.push((bh, j, len));
                j += len;
            }
        }
        let lse = &saved.lse;
        // Score scratch reused by the tasks of one rayon job (written before it is read).
        let tile = BLOCK_Q.min(n) * BLOCK_K.min(m);
        let scratch = || (vec![0.0f32; tile], vec![0.0f32; tile]);
        let partial_dq: Vec<(usize, Vec<f32>)> = tasks
            .into_par_iter()
            .map_init(scratch, |(s, dp), (bh, ja, keys)| {
                let (b, h) = (bh / h_, bh % h_);
                let mask = self.mask_row(b, m);
                let mut dq_acc = vec![0.0f32; if needs[0] { n * dk } else { 0 }];
                let mut dk_out = vec![0.0f32; if needs[1] { keys * dk } else { 0 }];
                let mut dv_out = vec![0.0f32; if needs[2] { keys * dv } else { 0 }];
                for jl in (0..keys).step_by(BLOCK_K) {
                    let j0 = ja + jl;
                    let bc = BLOCK_K.min(keys - jl);
                    let kj = ko.rows(b, h, j0, bc, dk);
                    let vj = vo.rows(b, h, j0, bc, dv);
                    for i0 in (0..n).step_by(BLOCK_Q) {
                        let br = BLOCK_Q.min(n - i0);
                        let qi = qo.rows(b, h, i0, br, dk);
                        let doi = go4.rows(b, h, i0, br, dv);
                        let sb = &mut s[..br * bc];
                        gemm(scale, qi, kj.t(), 0.0, sb);
                        masked_columns(sb, bc, mask.map(|mk| &mk[j0..j0 + bc]));
                        probs_from_lse(sb, bc, &lse[bh * n + i0..bh * n + i0 + br]);
                        if needs[2] {
                            gemm(
                                1.0,
                                MatRef::row_major(sb, br, bc).t(),
                                doi,
                                1.0,
                                &mut dv_out[jl * dv..(jl + bc) * dv],
                            );
                        }
                        if !(needs[0] || needs[1]) {
                            continue;
                        }
                        let dpb = &mut dp[..br * bc];
                        gemm(1.0, doi, vj.t(), 0.0, dpb);
                        for r in 0..br {
                            let prow = &sb[r * bc..(r + 1) * bc];
                            // When this block holds every key, D = Σ P ⊙ dP from the same P as
                            // dS (as the plain composition computes it): the row of dS then
                            // sums to zero up to rounding, which matters when the values
                            // attended to are nearly equal. Otherwise D = rowsum(dO ⊙ O).
                            let dr = if bc == m {
                                perceiver_kernels::dot(prow, &dpb[r * bc..(r + 1) * bc])
                            } else {
                                drow[bh * n + i0 + r]
                            };
                            let drow_ = &mut dpb[r * bc..(r + 1) * bc];
                            for c in 0..bc {
                                drow_[c] = prow[c] * (drow_[c] - dr);
                            }
                        }
                        if needs[1] {
                            gemm(
                                scale,
                                MatRef::row_major(dpb, br, bc).t(),
                                qi,
                                1.0,
                                &mut dk_out[jl * dk..(jl + bc) * dk],
                            );
                        }
                        if needs[0] {
                            gemm(
                                scale,
                                MatRef::row_major(dpb, br, bc),
                                kj,
                                1.0,
                                &mut dq_acc[i0 * dk..(i0 + br) * dk],
                            );
                        }
                    }
                }
                // SAFETY: this task owns keys ja..ja+keys of (b, h).
                unsafe {
                    dk_dst.write(b, h, ja, &dk_out);
                    dv_dst.write(b, h, ja, &dv_out);
                }
                (bh, dq_acc)
            })
            .collect();
        if needs[0] && dk > 0 {
            for (bh, part) in partial_dq {
                let (b, h) = (bh / h_, bh % h_);
                for (i, src) in part.chunks(dk).enumerate() {
                    let at = ((b * n + i) * h_ + h) * dk;
                    add_assign(&mut dq[at..at + dk], src);
                }
            }
        }
        (dq, dkv, dvv)
    }
}

/// `Σ a ⊙ b` over one row each (any column strides).
fn mat_row_dot(a: MatRef<'_>, b: MatRef<'_>) -> f32 {
    if a.col_stride == 1 && b.col_stride == 1 {
        let x = &a.data[a.offset..a.offset + a.cols];
        let y = &b.data[b.offset..b.offset + b.cols];
        return perceiver_kernels::dot(x, y);
    }
    (0..a.cols)
        .map(|j| a.data[a.offset + j * a.col_stride] * b.data[b.offset + j * b.col_stride])
        .sum()
}

impl CustomOp for FlashAttention {
    type Saved = FlashSaved;
    const NAME: &'static str = "flash_attention";

    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<FlashSaved> {
        let [Some(q), Some(k), Some(v)] = inputs else {
            return Err(Error::invalid(Self::NAME, "needs q, k and v"));
        };
        let (out, lse) = self.forward_raw(q, k, v);
        let saved = needs.iter().any(|&n| n).then(|| FlashSaved {
            q: (*q).clone(),
            k: (*k).clone(),
            v: (*v).clone(),
            out: out.clone(),
            lse,
        });
        Ok((out, saved))
    }

    /// `dO` is read through its strides (the `[b, heads, n, dv]` view of the gradient of the
    /// `[b, n, heads · dv]` input of the output projection).
    fn takes_strided_grad(&self) -> bool {
        true
    }

    fn backward(&self, saved: &FlashSaved, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let (dq, dk, dv) = self.backward_raw(saved, g, needs);
        let wrap = |data: Vec<f32>, like: &Tensor| {
            let s = like.shape();
            heads_tensor(data, s[0], s[1], s[2], s[3])
        };
        vec![
            needs[0].then(|| wrap(dq, &saved.q)),
            needs[1].then(|| wrap(dk, &saved.k)),
            needs[2].then(|| wrap(dv, &saved.v)),
        ]
    }
}

/// Fused attention `softmax(scale · q·kᵀ, masked) · v` (see the module docs).
///
/// `q: [b, h, n, dk]`, `k: [b, h, m, dk]`, `v: [b, h, m, dv]` (any strides),
/// `mask: [b, m]` (non-zero = attend; not differentiated), `scale` defaults to `1/√dk`.
/// Differentiable in q, k and v. Dropout on the probabilities is not supported by this kernel;
/// [`crate::MultiHeadAttention`] refuses it with an error rather than ignoring it.
#[track_caller]
pub fn flash_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: Option<f32>,
) -> Result<Tensor> {
    let d = check("flash_attention", q, k, v, mask)?;
    let scale = scale_of("flash_attention", scale, d.qk)?;
    let op = FlashAttention {
        scale,
        mask: mask.map(|m| m.to_vec()),
    };
    apply_custom(op, &[Some(q), Some(k), Some(v)])
}
