//! Sums, dot products and maxima of slices, in fixed lane orders (so results do not depend on
//! the SIMD level or the thread count).

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
