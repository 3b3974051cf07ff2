//! Helpers shared by the attention test files.

use perceiver_tensor::Tensor;

/// `max |a - b| / max(max |b|, floor)`: the metric of the golden fixtures, with a floor on the
/// denominator for gradients that vanish in exact arithmetic (then they are rounding noise in
/// both kernels and are compared relative to the problem's largest gradient).
pub fn rel_err_floor(a: &Tensor, b: &Tensor, floor: f32) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec(), b.to_vec());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(floor);
    a.iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
