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
    // Round to nearest with the 1.5·2^23 trick (exact for |v| < 2^22): `f32::round` is a libm
    // call without SSE4.1, which would stop the loop from vectorising.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    let n = (xc * LOG2E + ROUND) - ROUND;
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

/// `row[i] = e^(row[i] - shift)` for every element; returns the sum of the results.
///
/// Dispatches at run time to a copy compiled for AVX-512 or AVX2 + FMA when the CPU has them
/// (the workspace builds for the baseline x86-64 target, where the loop would be 4 wide).
pub fn exp_shift_sum(row: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { exp_shift_sum_avx512(row, shift) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { exp_shift_sum_avx2(row, shift) };
        }
    }
    exp_shift_sum_generic(row, shift)
}

#[inline(always)]
fn exp_shift_sum_generic(row: &mut [f32], shift: f32) -> f32 {
    for x in row.iter_mut() {
        *x = fast_exp(*x - shift);
    }
    sum(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_shift_sum_avx512(row: &mut [f32], shift: f32) -> f32 {
    exp_shift_sum_generic(row, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_shift_sum_avx2(row: &mut [f32], shift: f32) -> f32 {
    exp_shift_sum_generic(row, shift)
}

/// Largest element (`-inf` for an empty slice; NaN is ignored), with eight lanes so it
/// vectorises.
#[inline]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = acc
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    for &v in rem {
        if v > m {
            m = v;
        }
    }
    m
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
    fn exp_shift_sum_paths_agree() {
        let x: Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 20.0).collect();
        let mut a = x.clone();
        let mut b = x.clone();
        let sa = exp_shift_sum(&mut a, 3.0);
        let sb = exp_shift_sum_generic(&mut b, 3.0);
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() <= 1e-6 * q.abs());
        }
        assert!((sa - sb).abs() <= 1e-5 * sb);
        assert_eq!(max(&x), x[99]);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
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
