//! Low-level loops shared by the ops: parallel maps over slices and strided rows.
//!
//! # Design
//! Elementwise work is split into chunks under rayon only above [`PAR_THRESHOLD`] elements, so
//! small tensors stay on the calling thread. Strided inputs are read row by row: the base offset
//! of each innermost row is computed once, and the inner loop is a simple strided loop.

use crate::layout::{numel, Layout};
use rayon::prelude::*;

/// Element count above which elementwise kernels use rayon.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// Chunk size for parallel elementwise loops.
const CHUNK: usize = 1 << 13;

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len());
    if dst.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| d.iter_mut().zip(s).for_each(|(d, s)| *d += s));
    } else {
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
    }
}

/// `out[i] = f(x[i])` into a new vector.
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    if x.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
    } else {
        out.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x));
    }
    out
}

/// `out[i] = f(a[i], b[i])` into a new vector.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    debug_assert_eq!(a.len(), b.len());
    let mut out = vec![0.0f32; a.len()];
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                for i in 0..o.len() {
                    o[i] = f(a[i], b[i]);
                }
            });
    } else {
        for i in 0..out.len() {
            out[i] = f(a[i], b[i]);
        }
    }
    out
}

/// `out[i] = f(a[i], b[i], c[i])` into a new vector.
pub fn zip3_map(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    let mut out = vec![0.0f32; a.len()];
    let body = |o: &mut [f32], a: &[f32], b: &[f32], c: &[f32]| {
        for i in 0..o.len() {
            o[i] = f(a[i], b[i], c[i]);
        }
    };
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK).zip(c.par_chunks(CHUNK)))
            .for_each(|((o, a), (b, c))| body(o, a, b, c));
    } else {
        body(&mut out, a, b, c);
    }
    out
}

/// Sum with eight independent accumulators (vectorises, and is more accurate than a single
/// running sum).
#[inline]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for &v in rem {
        s += v;
    }
    s
}

/// Dot product with eight accumulators.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

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
                dst[d..d + n].copy_from_slice(&sdata[s..s + n]);
            } else {
                for i in 0..n {
                    dst[d + i * ds] = sdata[s + i * ss];
                }
            }
        },
    );
}

/// `e^x` in f32 with a range reduction and a degree-6 polynomial, written so loops over it
/// vectorise (no calls, no branches). Relative error about 2 ulp; returns exactly 0 below
/// -87.3 (including -∞) and +∞ above 88.7.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E).round();
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2] (Cephes expf coefficients)
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = (p * r * r + r) + 1.0;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    let v = e * scale;
    let v = if x > 88.7 { f32::INFINITY } else { v };
    if x < -87.3 {
        0.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = fast_exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(-100.0), 0.0);
        assert_eq!(fast_exp(0.0), 1.0);
        assert!(fast_exp(100.0).is_infinite());
    }

    #[test]
    fn sums_and_dots_match_sequential() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.25 - 3.0).collect();
        let seq: f32 = x.iter().sum();
        assert!((sum(&x) - seq).abs() < 1e-4);
        let d: f32 = x.iter().map(|v| v * v).sum();
        assert!((dot(&x, &x) - d).abs() < 1e-3);
    }
}
