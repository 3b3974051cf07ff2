//! AVX-512 forms of the hottest elementwise loops: the exponentials of a softmax row
//! ([`exp_shift_sum`]), a Linear layer's bias + exact GELU epilogue ([`bias_gelu_erf`]) and a
//! LayerNorm row ([`layer_norm_row`]: rows of 67 to 261 channels, where the portable loops
//! spend most of their time on per-row overhead and scalar tails; here the tail is a masked
//! vector).
//!
//! Same formulas and constants as the portable [`fast_exp`](crate::fast_exp) and
//! [`fast_erf`](crate::fast_erf), written with intrinsics so that every multiply-add is one FMA
//! (Rust never contracts `a * b + c` on its own) and the division of the erf's rational form
//! becomes a reciprocal estimate refined by one Newton step (the division unit is the
//! bottleneck of a vectorised division: one `vdivps` per 16 elements costs as much as the rest
//! of the GELU). Results differ from the portable forms by rounding only; the tests bound it.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Whether this CPU has the instructions of this module.
pub(crate) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// A mask of the first `n` lanes (all sixteen for `n >= 16`); shared with the GEMM kernel.
#[inline(always)]
pub(crate) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// [`crate::fast_exp`] on 16 lanes (`-inf` below -87.3 gives 0, above 88.7 `inf`, NaN stays
/// NaN).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_v(x: __m512) -> __m512 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0;
    let s = _mm512_set1_ps;
    // max(-87.3, x) keeps a NaN x (the second operand is returned when one is NaN).
    let xc = _mm512_min_ps(s(88.7), _mm512_max_ps(s(-87.3), x));
    let t = _mm512_fmadd_ps(xc, s(LOG2E), s(ROUND));
    let n = _mm512_sub_ps(t, s(ROUND));
    let r = _mm512_fnmadd_ps(n, s(LN2_HI), xc);
    let r = _mm512_fnmadd_ps(n, s(LN2_LO), r);
    let mut p = s(1.987_569_1e-4);
    p = _mm512_fmadd_ps(p, r, s(1.398_2e-3));
    p = _mm512_fmadd_ps(p, r, s(8.333_452e-3));
    p = _mm512_fmadd_ps(p, r, s(4.166_579_6e-2));
    p = _mm512_fmadd_ps(p, r, s(1.666_666_5e-1));
    p = _mm512_fmadd_ps(p, r, s(0.5));
    let e = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), s(1.0));
    let bits = _mm512_sub_epi32(
        _mm512_castps_si512(t),
        _mm512_set1_epi32(ROUND.to_bits() as i32),
    );
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        bits,
        _mm512_set1_epi32(127),
    )));
    let v = _mm512_mul_ps(e, scale);
    let v = _mm512_mask_mov_ps(
        v,
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, s(88.7)),
        s(f32::INFINITY),
    );
    _mm512_mask_mov_ps(
        v,
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, s(-87.3)),
        _mm512_setzero_ps(),
    )
}

/// `row[i] = e^(row[i] - shift)`; returns the sum of the results (as
/// [`crate::exp_shift_sum`]).
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_shift_sum(row: &mut [f32], shift: f32) -> f32 {
    let sh = _mm512_set1_ps(shift);
    let mut acc = _mm512_setzero_ps();
    let p = row.as_mut_ptr();
    for i in (0..row.len()).step_by(16) {
        let m = lanes(row.len() - i);
        // SAFETY: the masked lanes are inside the row (masked-off lanes touch no memory).
        unsafe {
            let x = _mm512_maskz_loadu_ps(m, p.add(i));
            let e = exp_v(_mm512_sub_ps(x, sh));
            _mm512_mask_storeu_ps(p.add(i), m, e);
            acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(m, e));
        }
    }
    _mm512_reduce_add_ps(acc)
}

/// `(gelu(x), gelu'(x))` of the exact GELU on 16 lanes: `Φ(x) = ½(1 + erf(x/√2))` with the
/// rational erf of [`crate::fast_erf`], `gelu = x·Φ(x)`, `gelu' = Φ(x) + x·φ(x)` (the
/// derivative only when `GRAD`).
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu_erf_v<const GRAD: bool>(x: __m512) -> (__m512, __m512) {
    let s = _mm512_set1_ps;
    let u = _mm512_mul_ps(x, s(std::f32::consts::FRAC_1_SQRT_2));
    let uc = _mm512_min_ps(s(3.92), _mm512_max_ps(s(-3.92), u));
    let t = _mm512_mul_ps(uc, uc);
    let mut p = s(2.034_650_2e-6);
    for c in [
        2.874_750_4e-4,
        3.868_374_7e-3,
        5.306_060_6e-2,
        1.927_658_9e-1,
    ] {
        p = _mm512_fmadd_ps(p, t, s(c));
    }
    p = _mm512_fmadd_ps(p, t, s(std::f32::consts::FRAC_2_SQRT_PI));
    let mut q = s(3.806_953_5e-5);
    for c in [1.188_116_5e-3, 1.517_239_4e-2, 1.150_852_7e-1, 5.041_66e-1] {
        q = _mm512_fmadd_ps(q, t, s(c));
    }
    q = _mm512_fmadd_ps(q, t, s(1.0));
    // 1/q (q >= 1): a 14-bit estimate and one Newton step, r·(2 - q·r).
    let r = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, s(2.0)));
    let erf = _mm512_mul_ps(_mm512_mul_ps(uc, p), r);
    let erf = _mm512_min_ps(s(1.0), _mm512_max_ps(s(-1.0), erf));
    let cdf = _mm512_fmadd_ps(s(0.5), erf, s(0.5));
    let y = _mm512_mul_ps(x, cdf);
    if !GRAD {
        return (y, cdf);
    }
    let pdf = _mm512_mul_ps(
        s(0.398_942_3),
        exp_v(_mm512_mul_ps(s(-0.5), _mm512_mul_ps(x, x))),
    );
    (y, _mm512_fmadd_ps(x, pdf, cdf))
}

/// `y = gelu(y + bias)` (exact GELU) over a row segment, and `d = gelu'(y + bias)` when `d`
/// is given (same length as `y`).
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]). Panics when `bias` or `d` is not as long as
/// `y`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn bias_gelu_erf(
    y: &mut [f32],
    d: Option<&mut [MaybeUninit<f32>]>,
    bias: Option<&[f32]>,
) {
    let n = y.len();
    assert!(
        bias.is_none_or(|b| b.len() == n) && d.as_ref().is_none_or(|d| d.len() == n),
        "bias_gelu_erf: the bias and derivative rows must be as long as the output row"
    );
    let yp = y.as_mut_ptr();
    let dp = d.map(|d| d.as_mut_ptr().cast::<f32>());
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        // SAFETY: the masked lanes are inside the three slices (same length).
        unsafe {
            let mut x = _mm512_maskz_loadu_ps(m, yp.add(i));
            if let Some(b) = bias {
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, b.as_ptr().add(i)));
            }
            match dp {
                Some(dp) => {
                    let (v, g) = gelu_erf_v::<true>(x);
                    _mm512_mask_storeu_ps(yp.add(i), m, v);
                    _mm512_mask_storeu_ps(dp.add(i), m, g);
                }
                None => {
                    let (v, _) = gelu_erf_v::<false>(x);
                    _mm512_mask_storeu_ps(yp.add(i), m, v);
                }
            }
        }
    }
}

/// [`crate::layer_norm_row_uninit`]: `y = (x - mean)·rstd·w + b` (each of `w`, `b` optional);
/// returns `(mean, rstd)`.
///
/// # Safety
/// The CPU must support AVX-512F ([`available`]); `y`, `w` and `b` (when given) must be as
/// long as `x`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn layer_norm_row(
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    let n = x.len();
    debug_assert!(y.len() == n && w.is_none_or(|w| w.len() == n) && b.is_none_or(|b| b.len() == n));
    let (xp, yp) = (x.as_ptr(), y.as_mut_ptr().cast::<f32>());
    let inv_n = 1.0 / n as f32;
    // SAFETY (all blocks below): the masked lanes are inside the slices, all of length n.
    let mut acc = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        acc = _mm512_add_ps(acc, unsafe {
            _mm512_maskz_loadu_ps(lanes(n - i), xp.add(i))
        });
    }
    let mu = _mm512_reduce_add_ps(acc) * inv_n;
    let vmu = _mm512_set1_ps(mu);
    let mut acc = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        let d = _mm512_maskz_sub_ps(m, unsafe { _mm512_maskz_loadu_ps(m, xp.add(i)) }, vmu);
        acc = _mm512_fmadd_ps(d, d, acc);
    }
    let rs = 1.0 / (_mm512_reduce_add_ps(acc) * inv_n + eps).sqrt();
    let vrs = _mm512_set1_ps(rs);
    for i in (0..n).step_by(16) {
        let m = lanes(n - i);
        unsafe {
            let xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, xp.add(i)), vmu), vrs);
            let v = match (w, b) {
                (Some(w), Some(b)) => _mm512_fmadd_ps(
                    xhat,
                    _mm512_maskz_loadu_ps(m, w.as_ptr().add(i)),
                    _mm512_maskz_loadu_ps(m, b.as_ptr().add(i)),
                ),
                (Some(w), None) => _mm512_mul_ps(xhat, _mm512_maskz_loadu_ps(m, w.as_ptr().add(i))),
                (None, Some(b)) => _mm512_add_ps(xhat, _mm512_maskz_loadu_ps(m, b.as_ptr().add(i))),
                (None, None) => xhat,
            };
            _mm512_mask_storeu_ps(yp.add(i), m, v);
        }
    }
    (mu, rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gelu::{gelu_erf, gelu_erf_and_grad};

    fn inputs() -> Vec<f32> {
        let mut x: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.005).collect();
        x.extend([
            -120.0, -88.0, -87.2, -30.0, 30.0, 88.5, 89.0, 120.0, 0.0, -0.0, 1e-8,
        ]);
        x
    }

    #[test]
    fn exp_shift_sum_matches_the_portable_form() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let x = inputs();
        // Every tail length, and the whole range.
        for len in (0..40).chain([x.len()]) {
            let mut a: Vec<f32> = x[..len].iter().map(|v| v * 0.5).collect();
            let mut b = a.clone();
            // SAFETY: AVX-512F checked above.
            let sa = unsafe { exp_shift_sum(&mut a, 1.5) };
            let sb = crate::math::exp_shift_sum_portable(&mut b, 1.5);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!(
                    (p - q).abs() <= 2e-7 * q.abs().max(f32::MIN_POSITIVE),
                    "len {len}, element {i}: {p} vs {q}"
                );
            }
            approx::assert_relative_eq!(sa, sb, max_relative = 1e-5);
        }
        let mut edge = vec![f32::NAN, f32::NEG_INFINITY, -100.0, 100.0];
        // SAFETY: as above.
        unsafe { exp_shift_sum(&mut edge, 0.0) };
        assert!(edge[0].is_nan());
        assert_eq!(&edge[1..], &[0.0, 0.0, f32::INFINITY]);
    }

    #[test]
    fn layer_norm_row_matches_the_portable_form() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        for n in (1..40).chain([67, 128, 261]) {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.3 + 2.0)
                .collect();
            let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32 * 0.1).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32 * 0.2 - 0.2).collect();
            for (wo, bo) in [
                (None, None),
                (Some(&w[..]), None),
                (None, Some(&b[..])),
                (Some(&w[..]), Some(&b[..])),
            ] {
                let mut want = vec![MaybeUninit::new(f32::NAN); n];
                let mut got = vec![MaybeUninit::new(f32::NAN); n];
                let (mu0, rs0) = crate::norm::layer_norm_row_portable(&x, &mut want, wo, bo, 1e-5);
                // SAFETY: AVX-512F checked above; slices of equal length.
                let (mu1, rs1) = unsafe { layer_norm_row(&x, &mut got, wo, bo, 1e-5) };
                approx::assert_relative_eq!(mu0, mu1, epsilon = 1e-6, max_relative = 1e-5);
                approx::assert_relative_eq!(rs0, rs1, max_relative = 1e-5);
                for i in 0..n {
                    // SAFETY: both rows were written in full.
                    let (p, q) = unsafe { (want[i].assume_init(), got[i].assume_init()) };
                    assert!(
                        (p - q).abs() <= 1e-5 * p.abs().max(1.0),
                        "n {n}, element {i}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn bias_gelu_matches_the_portable_form() {
        if !available() {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let x = inputs();
        let bias: Vec<f32> = (0..x.len()).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        for len in (0..40).chain([x.len()]) {
            let mut y = x[..len].to_vec();
            let mut d = vec![MaybeUninit::new(f32::NAN); len];
            let mut y_only = x[..len].to_vec();
            // SAFETY: AVX-512F checked above; slices of equal length.
            unsafe {
                bias_gelu_erf(&mut y, Some(&mut d), Some(&bias[..len]));
                bias_gelu_erf(&mut y_only, None, None);
            }
            for i in 0..len {
                let (want, want_d) = gelu_erf_and_grad(x[i] + bias[i]);
                // SAFETY: every element of `d` was written.
                let got_d = unsafe { d[i].assume_init() };
                assert!(
                    (y[i] - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "gelu({})",
                    x[i]
                );
                assert!(
                    (got_d - want_d).abs() <= 1e-6 * want_d.abs().max(1.0),
                    "gelu'({})",
                    x[i]
                );
                let plain = gelu_erf(x[i]);
                assert!(
                    (y_only[i] - plain).abs() <= 1e-6 * plain.abs().max(1.0),
                    "gelu({})",
                    x[i]
                );
            }
        }
    }
}
