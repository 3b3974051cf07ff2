//! Parallel maps over slices.
//!
//! Elementwise work is split into chunks under rayon only above [`PAR_THRESHOLD`] elements, so
//! small inputs stay on the calling thread.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Element count above which elementwise kernels use rayon.
pub const PAR_THRESHOLD: usize = 1 << 15;

/// Chunk size for parallel elementwise loops.
pub const CHUNK: usize = 1 << 13;

/// `dst += src`.
pub fn add_assign(dst: &mut [f32], src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len());
    if dst.len() >= PAR_THRESHOLD {
        dst.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| crate::simd!(d.iter_mut().zip(s).for_each(|(d, s)| *d += s)));
    } else {
        crate::simd!(dst.iter_mut().zip(src).for_each(|(d, s)| *d += s));
    }
}

/// A vector of `n` elements written by `fill(start, chunk)` for consecutive chunks (in parallel
/// for large `n`), without zero-initialising it first. `fill` must write every element of the
/// chunk it is given.
fn filled(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
    // SAFETY: every caller in this module writes each element of the chunk it is given.
    unsafe { filled_chunks(n, CHUNK, fill) }
}

/// A vector of `n` elements written by `fill(start, chunk)` for consecutive chunks of `chunk`
/// elements (the last may be shorter), in parallel, without zero-initialising it first; below
/// [`PAR_THRESHOLD`] elements, one call with the whole vector.
///
/// # Safety
/// `fill` must write every element of each chunk it is given; the vector is returned as
/// initialised.
pub unsafe fn filled_chunks(
    n: usize,
    chunk: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let spare = &mut v.spare_capacity_mut()[..n];
    if n >= PAR_THRESHOLD {
        let chunk = chunk.max(1);
        spare
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| fill(i * chunk, c));
    } else {
        fill(0, spare);
    }
    // SAFETY: `fill` wrote all `n` elements (the caller's contract).
    unsafe { v.set_len(n) };
    v
}

/// `out[i] = f(x[i])` into a new vector.
#[inline(always)]
pub fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    filled(x.len(), |start, o| {
        let x = &x[start..start + o.len()];
        crate::simd!(for (o, &x) in o.iter_mut().zip(x) {
            o.write(f(x));
        })
    })
}

/// `out[i] = f(a[i], b[i])` into a new vector.
#[inline(always)]
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: lengths differ");
    filled(a.len(), |start, o| {
        let (a, b) = (&a[start..start + o.len()], &b[start..start + o.len()]);
        crate::simd!(for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            o.write(f(a, b));
        })
    })
}

/// `out[i] = f(a[i], b[i], c[i])` into a new vector.
#[inline(always)]
pub fn zip3_map(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    assert!(
        a.len() == b.len() && b.len() == c.len(),
        "zip3_map: lengths differ"
    );
    filled(a.len(), |start, o| {
        let r = start..start + o.len();
        let (a, b, c) = (&a[r.clone()], &b[r.clone()], &c[r]);
        crate::simd!(
            for (((o, &a), &b), &c) in o.iter_mut().zip(a).zip(b).zip(c) {
                o.write(f(a, b, c));
            }
        )
    })
}

/// `out[i·n + j] = f(x[i·n + j], row[j])`: a row vector broadcast over the rows of `x`.
#[inline(always)]
pub fn row_map(
    x: &[f32],
    row: &[f32],
    n: usize,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    assert!(
        n > 0 && x.len().is_multiple_of(n) && row.len() == n,
        "row_map: bad sizes"
    );
    // Chunks are whole numbers of rows.
    let rows_per = (CHUNK / n).max(1);
    let chunk = rows_per * n;
    let body = |start: usize, o: &mut [MaybeUninit<f32>]| {
        let x = &x[start..start + o.len()];
        crate::simd!(for (o, x) in o.chunks_mut(n).zip(x.chunks(n)) {
            for ((o, &a), &b) in o.iter_mut().zip(x).zip(row) {
                o.write(f(a, b));
            }
        })
    };
    // SAFETY: `body` writes every row of every chunk.
    unsafe { filled_chunks(x.len(), chunk, body) }
}

/// An initialised row seen as a row to write into, for the kernels that write through
/// `MaybeUninit` (so they also serve buffers that are not zero-filled). Writing only
/// initialised values through it keeps the row initialised.
#[inline(always)]
pub(crate) fn as_uninit(x: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the callers write only initialised
    // values through the view (never `MaybeUninit::uninit()`).
    unsafe { &mut *(x as *mut [f32] as *mut [MaybeUninit<f32>]) }
}
