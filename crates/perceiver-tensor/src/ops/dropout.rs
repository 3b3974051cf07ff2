//! `dropout`: zeroes each element with probability `p` and scales the rest by `1 / (1 - p)`
//! in training; the identity in evaluation. Seeded through [`Rng`]. The rule saves the scaled
//! mask: `dx = g · mask`.

use super::unary;
use crate::autograd::record;
use crate::rng::Rng;
use crate::{Error, Result, Tensor};

struct DropoutBackward {
    mask: Tensor,
}

backward!(DropoutBackward, "dropout", |saved, g, _needs| vec![Some(
    unary::zip(g, &saved.mask, |g, m| g * m)
)]);

impl Tensor {
    /// Dropout with probability `p` when `train`, else the identity (the same tensor).
    #[track_caller]
    pub fn dropout(&self, p: f32, train: bool, rng: &mut Rng) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::invalid(
                "dropout",
                format!("probability must be in [0, 1], got {p}"),
            ));
        }
        if !train || p == 0.0 {
            return Ok(self.clone());
        }
        let scale = if p >= 1.0 { 0.0 } else { 1.0 / (1.0 - p) };
        let mask: Vec<f32> = (0..self.numel())
            .map(|_| if rng.uniform() < p { 0.0 } else { scale })
            .collect();
        let mask = Tensor::from_parts(mask, self.shape());
        let out = unary::zip(self, &mask, |x, m| x * m);
        Ok(record(out, &[self], |_| DropoutBackward { mask }))
    }
}
