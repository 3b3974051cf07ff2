//! Low-level loops shared by the ops: parallel maps over slices and strided rows.
//!
//! # Design
//! Elementwise work is split into chunks under rayon only above [`PAR_THRESHOLD`] elements, so
//! small tensors stay on the calling thread. Strided inputs are read row by row: the base offset
//! of each innermost row is computed once, and the inner loop is a simple strided loop.

use crate::layout::{numel, Layout};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Evaluates an expression in code compiled for the widest SIMD level this CPU has (AVX-512,
/// else AVX2 + FMA, else the baseline), so the loops in it vectorise accordingly.
///
/// The workspace builds for the baseline x86-64 target (portable binaries); hot loops opt in
/// through this macro. It expands the expression once per level, each copy inside a closure
/// called from exactly one `#[target_feature]` function, which LLVM then inlines (a closure
/// called from several places, as a function argument would be, is not inlined and keeps the
/// baseline instruction set). Functions called from the expression should be
/// `#[inline(always)]` for the same reason. Use it inside each rayon task, not around a
/// parallel iterator.
#[macro_export]
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if ::std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                unsafe fn __simd_avx512<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { __simd_avx512(|| $body) }
            } else if ::std::arch::is_x86_feature_detected!("avx2")
                && ::std::arch::is_x86_feature_detected!("fma")
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn __simd_avx2<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: as above.
                unsafe { __simd_avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}

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
            .for_each(|(d, s)| crate::simd!(d.iter_mut().zip(s).for_each(|(d, s)| *d += s)));
    } else {
        crate::simd!(dst.iter_mut().zip(src).for_each(|(d, s)| *d += s));
    }
}

/// A vector of `n` elements written by `fill(start, chunk)` for consecutive chunks (in parallel
/// for large `n`), without zero-initialising it first. `fill` must write every element of the
/// chunk it is given.
fn filled(n: usize, fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send) -> Vec<f32> {
    filled_chunks(n, CHUNK, fill)
}

/// [`filled`] with chunks of `chunk` elements (the last may be shorter); below
/// [`PAR_THRESHOLD`] elements, one call with the whole vector. `fill` must write every element
/// of the chunk it is given (the contract of this crate-private helper).
pub(crate) fn filled_chunks(
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
    // SAFETY: `fill` wrote all `n` elements (the contract of this helper; every caller writes
    // each element of its chunk exactly once).
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
    let mut v: Vec<f32> = Vec::with_capacity(x.len());
    let spare = &mut v.spare_capacity_mut()[..x.len()];
    let body = |start: usize, o: &mut [MaybeUninit<f32>]| {
        let x = &x[start..start + o.len()];
        crate::simd!(for (o, x) in o.chunks_mut(n).zip(x.chunks(n)) {
            for ((o, &a), &b) in o.iter_mut().zip(x).zip(row) {
                o.write(f(a, b));
            }
        })
    };
    if x.len() >= PAR_THRESHOLD {
        spare
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| body(i * chunk, c));
    } else {
        body(0, spare);
    }
    // SAFETY: every row of every chunk was written.
    unsafe { v.set_len(x.len()) };
    v
}

/// Sum with eight independent accumulators (vectorises, and is more accurate than a single
/// running sum).
#[inline(always)]
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

/// `Σ x` with sixteen accumulators: one AVX-512 vector per step where [`sum`]'s eight take
/// two half-width ones (LayerNorm rows: 67 to 261 channels).
#[inline(always)]
pub fn sum16(x: &[f32]) -> f32 {
    sum16_of(x, |v| v)
}

/// `Σ (x - mu)²` with sixteen accumulators (see [`sum16`]).
#[inline(always)]
pub fn sum_sq_dev16(x: &[f32], mu: f32) -> f32 {
    sum16_of(x, |v| (v - mu) * (v - mu))
}

/// `Σ f(x)` with sixteen accumulators, the tail added lane by lane, reduced pairwise.
#[inline(always)]
fn sum16_of(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += f(c[i]);
        }
    }
    for (a, &v) in acc.iter_mut().zip(rem) {
        *a += f(v);
    }
    reduce16(acc)
}

/// The sum of sixteen accumulators, pairwise.
#[inline(always)]
fn reduce16(a: [f32; 16]) -> f32 {
    let mut h = [0.0f32; 8];
    for i in 0..8 {
        h[i] = a[i] + a[i + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// An initialised row seen as a row to write into, for the kernels that write through
/// `MaybeUninit` (so they also serve buffers that are not zero-filled). Writing only
/// initialised values through it keeps the row initialised.
#[inline(always)]
fn as_uninit(x: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; the callers write only initialised
    // values through the view (never `MaybeUninit::uninit()`).
    unsafe { &mut *(x as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// LayerNorm of one row into `y` (`(x - mean) · rstd`, then the optional scale `w` and offset
/// `b`); returns the mean and the reciprocal standard deviation. Shared by `Tensor::layer_norm`
/// and the fused cross-attention.
#[inline(always)]
pub fn layer_norm_row(
    x: &[f32],
    y: &mut [f32],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    layer_norm_row_uninit(x, as_uninit(y), w, b, eps)
}

/// [`layer_norm_row`] into a row that need not be initialised (every element is written), so
/// an output buffer needs no zero-filling first. With AVX-512, module `avx512`.
#[inline(always)]
pub fn layer_norm_row_uninit(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    assert!(
        y.len() == x.len()
            && w.is_none_or(|w| w.len() == x.len())
            && b.is_none_or(|b| b.len() == x.len()),
        "layer_norm_row: the row, its output, scale and offset must have one length"
    );
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F; the lengths were checked above.
        return unsafe { avx512::layer_norm_row(x, y, w, b, eps) };
    }
    layer_norm_row_portable(x, y, w, b, eps)
}

/// [`layer_norm_row_uninit`] in portable code (vectorised by the compiler inside `simd!`).
#[inline(always)]
pub(crate) fn layer_norm_row_portable(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    let inv_d = 1.0 / x.len() as f32;
    let mu = sum16(x) * inv_d;
    let rs = 1.0 / (sum_sq_dev16(x, mu) * inv_d + eps).sqrt();
    match (w, b) {
        (Some(w), Some(b)) => {
            for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                y.write((x - mu) * rs * w + b);
            }
        }
        (Some(w), None) => {
            for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                y.write((x - mu) * rs * w);
            }
        }
        (None, Some(b)) => {
            for ((y, &x), &b) in y.iter_mut().zip(x).zip(b) {
                y.write((x - mu) * rs + b);
            }
        }
        (None, None) => {
            for (y, &x) in y.iter_mut().zip(x) {
                y.write((x - mu) * rs);
            }
        }
    }
    (mu, rs)
}

/// Dot product with eight accumulators.
#[inline(always)]
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
    copy_into_uninit(as_uninit(dst), dst_layout, sdata, slayout);
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

/// Makes this thread's f32 arithmetic flush denormal results and inputs to zero (the FTZ and DAZ
/// bits of MXCSR on x86-64; a no-op elsewhere).
///
/// Numbers below 1.2e-38 are far below anything a model's result depends on, but on x86 each
/// operation that produces or reads one can take a hundred times longer. They appear as a model
/// trains (attention weights of ignored tokens, their gradients, Adam's second moments), which
/// made training epochs slow down as accuracy rose. Call it at the start of every compute
/// thread (for example from rayon's `start_handler`).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register through a
        // valid 4-byte location; setting FTZ (bit 15) and DAZ (bit 6) only changes how
        // denormals are rounded.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}

/// `e^x` in f32 with a range reduction and a degree-6 polynomial, written so loops over it
/// vectorise (no calls, no branches). Relative error about 2 ulp; returns exactly 0 below
/// -87.3 (including -∞) and +∞ above 88.7.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Round to nearest with the 1.5·2^23 trick (exact for |v| < 2^22): adding it leaves the
    // integer in the low mantissa bits, so the exponent bits below come from integer ops only
    // (`f32::round` is a libm call and `as i32` a saturating cast: both stop vectorisation).
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.3, 88.7);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2] (Cephes expf coefficients)
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = (p * r * r + r) + 1.0;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    let v = e * scale;
    let v = if x > 88.7 { f32::INFINITY } else { v };
    if x < -87.3 {
        0.0
    } else {
        v
    }
}

/// `row[i] = e^(row[i] - shift)` for every element; returns the sum of the results (with
/// AVX-512 and FMA where the CPU has them: module `avx512`).
#[inline(always)]
pub fn exp_shift_sum(row: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { avx512::exp_shift_sum(row, shift) };
    }
    exp_shift_sum_portable(row, shift)
}

/// [`exp_shift_sum`] from [`fast_exp`], vectorised by the compiler.
#[inline(always)]
pub(crate) fn exp_shift_sum_portable(row: &mut [f32], shift: f32) -> f32 {
    crate::simd!({
        for x in row.iter_mut() {
            *x = fast_exp(*x - shift);
        }
        sum(row)
    })
}

/// `tanh(x)` from [`fast_exp`], vectorisable: `sign(x) · (1 - 2 / (e^(2|x|) + 1))`, with an
/// odd polynomial below 0.1 where that form would lose relative accuracy. Error about 2e-7.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    let a = x.abs();
    let e = fast_exp(2.0 * a.min(20.0));
    let big = 1.0 - 2.0 / (e + 1.0);
    let a2 = a * a;
    // tanh a = a - a^3/3 + 2a^5/15 - 17a^7/315 for small a
    let small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 - a2 * (17.0 / 315.0))));
    let t = if a < 0.1 { small } else { big };
    if x < 0.0 {
        -t
    } else {
        t
    }
}

/// `erf(x)`, vectorisable: `x·P(x²)/Q(x²)` on `|x| <= 3.92` (beyond, `±1` in f32), with
/// degree-5 polynomials fitted to `erf(x)/x` by iteratively reweighted least squares (Lawson's
/// algorithm towards the minimax fit); absolute error below 4e-7 in f32, one division and no
/// exponential (half the work of the `1 - t·e^(...)` form it replaced, which made the GELU
/// epilogue of config A's MLP cost as much as its matrix product).
#[inline(always)]
pub fn fast_erf(x: f32) -> f32 {
    let xc = x.clamp(-3.92, 3.92);
    let t = xc * xc;
    let p = ((((2.034_650_2e-6 * t + 2.874_750_4e-4) * t + 3.868_374_7e-3) * t + 5.306_060_6e-2)
        * t
        + 1.927_658_9e-1)
        * t
        + std::f32::consts::FRAC_2_SQRT_PI;
    let q = ((((3.806_953_5e-5 * t + 1.188_116_5e-3) * t + 1.517_239_4e-2) * t + 1.150_852_7e-1)
        * t
        + 5.041_66e-1)
        * t
        + 1.0;
    (xc * p / q).clamp(-1.0, 1.0)
}

/// Largest element (`-inf` for an empty slice; NaN is ignored), with sixteen lanes (one AVX-512 vector) so it
/// vectorises.
#[inline(always)]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rem = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
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

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_lane_sums_match_f64() {
        // Every remainder length, and the LayerNorm widths of the presets.
        for n in (0..=40).chain([67, 128, 261]) {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.37 + 5.0)
                .collect();
            let s64: f64 = x.iter().map(|&v| v as f64).sum();
            let mu = if n == 0 { 0.0 } else { (s64 / n as f64) as f32 };
            let d64: f64 = x.iter().map(|&v| ((v - mu) as f64).powi(2)).sum();
            approx::assert_relative_eq!(sum16(&x) as f64, s64, epsilon = 1e-4, max_relative = 1e-6);
            approx::assert_relative_eq!(
                sum_sq_dev16(&x, mu) as f64,
                d64,
                epsilon = 1e-4,
                max_relative = 1e-6
            );
        }
    }

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
    fn fast_tanh_and_erf_match_libm() {
        let mut worst_t = 0.0f64;
        let mut worst_e = 0.0f64;
        let mut x = -9.0f32;
        while x < 9.0 {
            worst_t = worst_t.max((fast_tanh(x) as f64 - (x as f64).tanh()).abs());
            worst_e = worst_e.max(((fast_erf(x) - libm::erff(x)) as f64).abs());
            x += 0.00731;
        }
        assert!(worst_t < 3e-7, "tanh error {worst_t}");
        assert!(worst_e < 4e-7, "erf error {worst_e}");
        assert_eq!(fast_tanh(0.0), 0.0);
        assert_eq!(fast_tanh(100.0), 1.0);
        assert_eq!(fast_erf(10.0), 1.0);
    }

    #[test]
    fn exp_shift_sum_paths_agree() {
        let x: Vec<f32> = (0..100).map(|i| i as f32 * 0.37 - 20.0).collect();
        let mut a = x.clone();
        let mut b = x.clone();
        let sa = exp_shift_sum(&mut a, 3.0);
        for v in b.iter_mut() {
            *v = fast_exp(*v - 3.0);
        }
        let sb: f32 = b.iter().sum();
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
