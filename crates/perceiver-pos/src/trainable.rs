//! Trainable position encodings: one learned vector per input index.

use perceiver_nn::{Param, ParamStore};
use perceiver_tensor::{Error, Result, Rng, Tensor};

/// A learned `[index_dim, channels]` array, initialised from a truncated normal
/// (mean 0, std `init_scale`, cut at ±2 std, as DeepMind's `TrainablePositionEncoding`).
///
/// The paper's learned-position ablation used `init_scale = 1.0`; Perceiver IO uses 0.02.
#[derive(Clone, Debug)]
pub struct TrainablePositionEncoding {
    /// The embeddings `[index_dim, channels]`, named `{name}.embeddings`.
    pub embeddings: Param,
}

impl TrainablePositionEncoding {
    /// Creates `{name}.embeddings` in `store`.
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        index_dim: usize,
        channels: usize,
        init_scale: f32,
        rng: &mut Rng,
    ) -> Result<Self> {
        let value = init_array(&[index_dim, channels], init_scale, rng)?;
        Ok(TrainablePositionEncoding {
            embeddings: store.add(format!("{name}.embeddings"), value)?,
        })
    }

    /// Number of positions.
    pub fn index_dim(&self) -> usize {
        self.embeddings.shape()[0]
    }

    /// Channels per position.
    pub fn channels(&self) -> usize {
        self.embeddings.shape()[1]
    }

    /// The encoding `[index_dim, channels]` (tracked, so it receives a gradient).
    #[track_caller]
    pub fn forward(&self, index_dim: usize) -> Result<Tensor> {
        if index_dim != self.index_dim() {
            return Err(Error::shape(
                "TrainablePositionEncoding",
                format!(
                    "{}: a trainable encoding serves a fixed number of positions",
                    self.embeddings.name()
                ),
                &[index_dim],
                &[self.index_dim()],
            ));
        }
        Ok(self.embeddings.tensor())
    }
}

/// A truncated-normal array (mean 0, std `scale`, bounds ±2·`scale`); all zeros for scale 0.
#[track_caller]
pub fn init_array(shape: &[usize], scale: f32, rng: &mut Rng) -> Result<Tensor> {
    if scale == 0.0 {
        return Ok(Tensor::zeros(shape));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid(
            "TrainablePositionEncoding",
            format!("init_scale must be finite and non-negative, got {scale}"),
        ));
    }
    Tensor::trunc_normal(shape, 0.0, scale, -2.0 * scale, 2.0 * scale, rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_and_shape() {
        let mut store = ParamStore::new();
        let mut rng = Rng::new(1);
        let t = TrainablePositionEncoding::new(&mut store, "pos", 10, 4, 0.5, &mut rng).unwrap();
        assert_eq!(store.get("pos.embeddings").unwrap().shape(), vec![10, 4]);
        let v = t.embeddings.value().to_vec();
        assert!(v.iter().all(|x| x.abs() <= 1.0));
        assert!(v.iter().any(|x| *x != 0.0));
        assert!(t.forward(10).unwrap().is_tracked());
        assert!(t.forward(9).is_err());
        assert!(init_array(&[2], -1.0, &mut rng).is_err());
    }
}
