//! Loops over strided layouts: rows of a view read through their strides.
//!
//! Strided inputs are read row by row: the base offset of each innermost row is computed once,
//! and the inner loop is a simple strided loop.

use crate::layout::{numel, Layout};
use perceiver_kernels::elementwise::{CHUNK, PAR_THRESHOLD};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Storage offset of the first element of innermost row `row` of a layout.
#[inline]
pub fn row_base(layout: &Layout, row: usize) -> usize {
    let shape = layout.shape();
    let strides = layout.strides();
    let rank = shape.len();
    let mut off = layout.offset();
    if rank <= 1 {
        return off;
    }
    let mut r = row;
    for d in (0..rank - 1).rev() {
        let i = r % shape[d];
        r /= shape[d];
        off += i * strides[d];
    }
    off
}

/// Materialises `n`-ary strided inputs (all of `out_shape`, possibly broadcast) through `f`
/// into a contiguous output, row by row, in parallel for large outputs.
pub fn strided_map<const K: usize>(
    out_shape: &[usize],
    inputs: [(&[f32], &Layout); K],
    f: impl Fn([f32; K]) -> f32 + Sync + Send,
) -> Vec<f32> {
    let n = numel(out_shape);
    let mut out = vec![0.0f32; n];
    if n == 0 {
        return out;
    }
    let rank = out_shape.len();
    let row_len = if rank == 0 { 1 } else { out_shape[rank - 1] };
    if row_len == 0 {
        return out;
    }
    let inner: [usize; K] = std::array::from_fn(|j| {
        if rank == 0 {
            0
        } else {
            inputs[j].1.strides()[rank - 1]
        }
    });
    let body = |row: usize, o: &mut [f32]| {
        let bases: [usize; K] = std::array::from_fn(|j| row_base(inputs[j].1, row));
        for (i, o) in o.iter_mut().enumerate() {
            let vals: [f32; K] = std::array::from_fn(|j| inputs[j].0[bases[j] + i * inner[j]]);
            *o = f(vals);
        }
    };
    if n >= PAR_THRESHOLD {
        let rows_per_chunk = (CHUNK / row_len).max(1);
        out.par_chunks_mut(rows_per_chunk * row_len)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (r, o) in chunk.chunks_mut(row_len).enumerate() {
                    body(c * rows_per_chunk + r, o);
                }
            });
    } else {
        for (r, o) in out.chunks_mut(row_len).enumerate() {
            body(r, o);
        }
    }
    out
}

/// Writes the elements of `src` (any layout, row-major order) to the positions of `dst` given by
/// `dst_layout` (which has `src`'s shape and must not alias itself).
pub fn copy_into(dst: &mut [f32], dst_layout: &Layout, src: &crate::Tensor) {
    let (sdata, slayout) = src.raw();
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `copy_into_uninit` writes only
    // initialised values, so `dst` stays initialised.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    copy_into_uninit(dst, dst_layout, sdata, slayout);
}

/// [`copy_into`] from a raw source (`sdata` under `slayout`, the shape of `dst_layout`) into a
/// buffer that need not be initialised: the positions of `dst_layout` are written.
pub fn copy_into_uninit(
    dst: &mut [MaybeUninit<f32>],
    dst_layout: &Layout,
    sdata: &[f32],
    slayout: &Layout,
) {
    let shape = dst_layout.shape();
    let rank = shape.len();
    let ds = if rank == 0 {
        0
    } else {
        dst_layout.strides()[rank - 1]
    };
    let ss = if rank == 0 {
        0
    } else {
        slayout.strides()[rank - 1]
    };
    crate::layout::for_each_row(
        shape,
        [dst_layout.strides(), slayout.strides()],
        [dst_layout.offset(), slayout.offset()],
        |[d, s], n| {
            if ds == 1 && ss == 1 {
                for (o, &v) in dst[d..d + n].iter_mut().zip(&sdata[s..s + n]) {
                    o.write(v);
                }
            } else {
                for i in 0..n {
                    dst[d + i * ds].write(sdata[s + i * ss]);
                }
            }
        },
    );
}
