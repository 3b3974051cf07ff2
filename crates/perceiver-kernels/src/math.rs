//! Fast scalar exponential, tanh and erf (the forms the SIMD loops vectorise), softmax rows.

use crate::reduce::sum;

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
    if crate::avx512::available() {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { crate::avx512::exp_shift_sum(row, shift) };
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
/// exponential (half the work of the `1 - t·e^(...)` form, with which the GELU epilogue of
/// config A's MLP costs as much as its matrix product).
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
