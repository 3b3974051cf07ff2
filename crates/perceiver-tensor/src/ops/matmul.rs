//! `matmul`: matrix product of ranks 2-4 with broadcast batch dimensions.
//!
//! `[..., m, k] x [..., k, n] -> [..., m, n]`. The rule saves `b` when `a` needs a gradient
//! and `a` when `b` does: `da = g·bᵀ`, `db = aᵀ·g`, each summed over broadcast batch
//! dimensions. Transposes are views passed to GEMM through strides. When the right operand has
//! no batch dimensions (a Linear layer), the batch is folded into `m` and the whole product is
//! one GEMM, forward and backward.

use super::binary::Operands;
use crate::autograd::record;
use crate::layout::{broadcast_shapes, numel, Layout, Shape};
use crate::{Error, Result, Tensor};
use perceiver_kernels::gemm::{gemm, MatRef};
use rayon::prelude::*;

struct MatmulBackward(Operands);

backward!(MatmulBackward, "matmul", |rule, g, needs| {
    let saved = &rule.0;
    let da = needs[0].then(|| {
        let b = saved.b.as_ref().expect("saved b");
        let bt = b.permute_raw(&swap_last(b.rank()));
        matmul_raw(g, &bt).sum_to_shape_raw(&saved.a_shape)
    });
    let db = needs[1].then(|| {
        let a = saved.a.as_ref().expect("saved a");
        if saved.b_shape.len() == 2 && a.rank() > 2 {
            // Fold the batch: db = a_flatᵀ · g_flat, one GEMM, no reduction afterwards.
            let k = a.shape()[a.rank() - 1];
            let rows = a.numel() / k.max(1);
            let n = g.shape()[g.rank() - 1];
            let af = a.reshape_raw(&[rows, k]);
            let gf = g.reshape_raw(&[rows, n]);
            matmul_raw(&af.permute_raw(&[1, 0]), &gf)
        } else {
            let at = a.permute_raw(&swap_last(a.rank()));
            matmul_raw(&at, g).sum_to_shape_raw(&saved.b_shape)
        }
    });
    vec![da, db]
});

fn swap_last(rank: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..rank).collect();
    p.swap(rank - 2, rank - 1);
    p
}

fn mat<'a>(data: &'a [f32], l: &Layout, offset: usize) -> MatRef<'a> {
    let r = l.shape().len();
    MatRef {
        data,
        offset,
        rows: l.shape()[r - 2],
        cols: l.shape()[r - 1],
        row_stride: l.strides()[r - 2],
        col_stride: l.strides()[r - 1],
    }
}

/// Untracked product of validated operands (ranks >= 2, batch dims broadcastable).
pub(crate) fn matmul_raw(a: &Tensor, b: &Tensor) -> Tensor {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch = broadcast_shapes("matmul", &a.shape()[..ra - 2], &b.shape()[..rb - 2])
        .expect("validated batch dims");
    let mut out_shape: Shape = batch.clone();
    out_shape.push(m);
    out_shape.push(n);
    let nb = numel(&batch);
    let mut out = vec![0.0f32; nb * m * n];
    if nb == 0 || m == 0 || n == 0 {
        return Tensor::from_parts(out, &out_shape);
    }
    // Batch folding: b shared across the batch and a's batch+rows mergeable into one dimension.
    let b_shared = rb == 2 || b.layout.strides()[..rb - 2].iter().all(|&s| s == 0);
    if b_shared && ra > 2 && a.shape()[..ra - 2] == batch[..] {
        if let Some(lf) = a.layout.reshape(&[nb * m, k]) {
            let bl = Layout {
                shape: Shape::from_slice(&[k, n]),
                strides: Shape::from_slice(&[
                    b.layout.strides()[rb - 2],
                    b.layout.strides()[rb - 1],
                ]),
                offset: b.layout.offset(),
            };
            gemm(
                1.0,
                mat(&a.storage, &lf, lf.offset()),
                mat(&b.storage, &bl, bl.offset()),
                0.0,
                &mut out,
            );
            return Tensor::from_parts(out, &out_shape);
        }
    }
    let mut full_a: Shape = batch.clone();
    full_a.extend_from_slice(&[m, k]);
    let mut full_b: Shape = batch.clone();
    full_b.extend_from_slice(&[k, n]);
    let la = a.layout.broadcast_to(&full_a).expect("validated");
    let lb = b.layout.broadcast_to(&full_b).expect("validated");
    let nbatch = batch.len();
    let offsets = |l: &Layout, i: usize| {
        let mut off = l.offset();
        let mut r = i;
        for d in (0..nbatch).rev() {
            off += (r % batch[d]) * l.strides()[d];
            r /= batch[d];
        }
        off
    };
    let threads = rayon::current_num_threads();
    let per = m * k * n;
    if nb >= threads && threads > 1 && nb * per >= perceiver_kernels::gemm::PAR_MIN_FMAS {
        out.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| {
            gemm(
                1.0,
                mat(&a.storage, &la, offsets(&la, i)),
                mat(&b.storage, &lb, offsets(&lb, i)),
                0.0,
                c,
            );
        });
    } else {
        for (i, c) in out.chunks_mut(m * n).enumerate() {
            gemm(
                1.0,
                mat(&a.storage, &la, offsets(&la, i)),
                mat(&b.storage, &lb, offsets(&lb, i)),
                0.0,
                c,
            );
        }
    }
    Tensor::from_parts(out, &out_shape)
}

impl Tensor {
    /// Matrix product `[..., m, k] x [..., k, n] -> [..., m, n]` for ranks 2 to 4; the batch
    /// dimensions broadcast (NumPy rules).
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (self.rank(), other.rank());
        if !(2..=4).contains(&ra) || !(2..=4).contains(&rb) {
            return Err(Error::shape(
                "matmul",
                "operands must have rank 2 to 4",
                self.shape(),
                other.shape(),
            ));
        }
        if self.shape()[ra - 1] != other.shape()[rb - 2] {
            return Err(Error::shape(
                "matmul",
                "inner dimensions differ",
                self.shape(),
                other.shape(),
            ));
        }
        if broadcast_shapes("matmul", &self.shape()[..ra - 2], &other.shape()[..rb - 2]).is_err() {
            return Err(Error::shape(
                "matmul",
                "batch dimensions cannot be broadcast together",
                self.shape(),
                other.shape(),
            ));
        }
        let out = matmul_raw(self, other);
        Ok(record(out, &[self, other], |needs| {
            MatmulBackward(Operands::save(self, other, needs))
        }))
    }
}
