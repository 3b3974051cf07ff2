//! Unit tests of the row kernels against plain f64 loops and libm.

use crate::*;

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
