//! The position encoding a model uses, as configuration data, and the module built from it.

use crate::{FourierConfig, FourierConfigError, FourierFeatures, TrainablePositionEncoding};
use perceiver_nn::Linear;
use perceiver_nn::ParamStore;
use perceiver_tensor::{Error, Result, Rng, Tensor};
use serde::{Deserialize, Serialize};

/// Which position encoding is concatenated to the inputs.
///
/// JSON: `{"kind": "none"}`, `{"kind": "fourier", "num_bands": 64, "max_resolution": [224, 224],
/// "concat_pos": true, "sine_only": false, "order": "deep_mind"}`,
/// `{"kind": "trainable", "channels": 256, "init_scale": 0.02}`.
///
/// ```
/// use perceiver_pos::{FourierConfig, PositionConfigError, PositionEncodingConfig};
/// assert_eq!(PositionEncodingConfig::default().num_channels(2, None), 0);
/// let json = r#"{"kind": "trainable", "channels": 8, "init_scale": 0.02}"#;
/// let config: PositionEncodingConfig = serde_json::from_str(json).expect("valid JSON");
/// assert_eq!(config, PositionEncodingConfig::Trainable { channels: 8, init_scale: 0.02 });
/// // One learned vector per cell of a 4x4 grid, projected to 4 channels.
/// assert_eq!(config.num_channels(2, Some(4)), 4);
/// let shapes = config.param_shapes(&[4, 4], Some(4));
/// assert_eq!(shapes[0], ("embeddings".to_string(), vec![16, 8]));
/// assert_eq!(shapes[1], ("projection.weight".to_string(), vec![4, 8]));
/// // Fourier features of a 2-D grid: 2 x (2 x 6 + 1) channels.
/// let fourier = PositionEncodingConfig::Fourier(FourierConfig::lucidrains(6, 10.0));
/// assert_eq!(fourier.num_channels(2, None), 26);
/// assert_eq!(config.validate(2, Some(0)), Err(PositionConfigError::ZeroProjection));
/// ```
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PositionEncodingConfig {
    /// No position information.
    #[default]
    None,
    /// Fourier features of the grid coordinates (or of given positions).
    Fourier(FourierConfig),
    /// A learned array, one vector per input index.
    Trainable {
        /// Channels per position.
        channels: usize,
        /// Std of the truncated-normal init (cut at ±2 std).
        init_scale: f32,
    },
}

/// What is wrong with a position-encoding configuration.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PositionConfigError {
    /// The Fourier settings are invalid.
    #[error("fourier: {0}")]
    Fourier(#[from] FourierConfigError),
    /// A trainable encoding with zero channels.
    #[error("trainable: channels must be positive")]
    NoChannels,
    /// A trainable encoding with a negative or non-finite init scale.
    #[error("trainable: init_scale must be finite and non-negative, got {0}")]
    BadScale(f32),
    /// A projection to zero channels.
    #[error("project_dim must be positive when given")]
    ZeroProjection,
}

impl PositionEncodingConfig {
    /// Channels of the encoding for `axes` axes, before any projection.
    pub fn raw_channels(&self, axes: usize) -> usize {
        match self {
            PositionEncodingConfig::None => 0,
            PositionEncodingConfig::Fourier(f) => f.num_channels(axes),
            PositionEncodingConfig::Trainable { channels, .. } => *channels,
        }
    }

    /// Channels of the encoding for `axes` axes, after the optional projection to `project_dim`.
    pub fn num_channels(&self, axes: usize, project_dim: Option<usize>) -> usize {
        match (self, project_dim) {
            (PositionEncodingConfig::None, _) => 0,
            (_, Some(p)) => p,
            (_, None) => self.raw_channels(axes),
        }
    }

    /// Parameter names (relative to the encoder's prefix) and shapes, for inputs on the grid
    /// `index_dims`, without allocating anything.
    pub fn param_shapes(
        &self,
        index_dims: &[usize],
        project_dim: Option<usize>,
    ) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        if let PositionEncodingConfig::Trainable { channels, .. } = self {
            let n: usize = index_dims.iter().product();
            out.push(("embeddings".to_string(), vec![n, *channels]));
        }
        if let (false, Some(p)) = (matches!(self, PositionEncodingConfig::None), project_dim) {
            let c = self.raw_channels(index_dims.len());
            out.push(("projection.weight".to_string(), vec![p, c]));
            out.push(("projection.bias".to_string(), vec![p]));
        }
        out
    }

    /// Checks the settings for inputs with `axes` axes.
    pub fn validate(
        &self,
        axes: usize,
        project_dim: Option<usize>,
    ) -> std::result::Result<(), PositionConfigError> {
        match self {
            PositionEncodingConfig::None => {}
            PositionEncodingConfig::Fourier(f) => f.validate(axes)?,
            PositionEncodingConfig::Trainable {
                channels,
                init_scale,
            } => {
                if *channels == 0 {
                    return Err(PositionConfigError::NoChannels);
                }
                if !(init_scale.is_finite() && *init_scale >= 0.0) {
                    return Err(PositionConfigError::BadScale(*init_scale));
                }
            }
        }
        if project_dim == Some(0) {
            return Err(PositionConfigError::ZeroProjection);
        }
        Ok(())
    }
}

/// The position encoding module: Fourier features or a trainable array, then an optional
/// projection (`Linear` with bias, named `{name}.projection`).
#[derive(Clone, Debug)]
pub struct PositionEncoder {
    kind: Kind,
    projection: Option<Linear>,
    axes: usize,
}

#[derive(Clone, Debug)]
enum Kind {
    None,
    Fourier(FourierFeatures),
    Trainable(TrainablePositionEncoding),
}

impl PositionEncoder {
    /// Builds the encoder for inputs on the grid `index_dims`, creating its parameters (if any)
    /// in `store` under `name`.
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        config: &PositionEncodingConfig,
        project_dim: Option<usize>,
        index_dims: &[usize],
        rng: &mut Rng,
    ) -> Result<Self> {
        if let Err(e) = config.validate(index_dims.len(), project_dim) {
            return Err(Error::invalid("PositionEncoder", e.to_string()));
        }
        let kind = match config {
            PositionEncodingConfig::None => Kind::None,
            PositionEncodingConfig::Fourier(f) => Kind::Fourier(FourierFeatures::new(f.clone())),
            PositionEncodingConfig::Trainable {
                channels,
                init_scale,
            } => Kind::Trainable(TrainablePositionEncoding::new(
                store,
                name,
                index_dims.iter().product(),
                *channels,
                *init_scale,
                rng,
            )?),
        };
        let projection = match (&kind, project_dim) {
            (Kind::None, _) | (_, None) => None,
            (_, Some(p)) => Some(Linear::new(
                store,
                &format!("{name}.projection"),
                config.raw_channels(index_dims.len()),
                p,
                true,
                rng,
            )?),
        };
        Ok(PositionEncoder {
            kind,
            projection,
            axes: index_dims.len(),
        })
    }

    /// Output channels (after the projection).
    pub fn num_channels(&self) -> usize {
        if let Some(p) = &self.projection {
            return p.out_dim();
        }
        match &self.kind {
            Kind::None => 0,
            Kind::Fourier(f) => f.num_channels(self.axes),
            Kind::Trainable(t) => t.channels(),
        }
    }

    /// True when there is no encoding.
    pub fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// The Fourier features, when that is the encoding.
    pub fn fourier(&self) -> Option<&FourierFeatures> {
        match &self.kind {
            Kind::Fourier(f) => Some(f),
            _ => None,
        }
    }

    /// The trainable encoding, when that is the encoding.
    pub fn trainable(&self) -> Option<&TrainablePositionEncoding> {
        match &self.kind {
            Kind::Trainable(t) => Some(t),
            _ => None,
        }
    }

    fn project(&self, x: Tensor) -> Result<Tensor> {
        match &self.projection {
            Some(p) => p.forward(&x),
            None => Ok(x),
        }
    }

    /// The encoding of the grid `dims`, flattened to `[prod(dims), channels]`; `None` when there
    /// is no encoding. Tracked when it has parameters.
    #[track_caller]
    pub fn grid(&self, dims: &[usize]) -> Result<Option<Tensor>> {
        if dims.len() != self.axes {
            return Err(Error::invalid(
                "PositionEncoder",
                format!(
                    "the encoder was built for {} axes, got a grid {dims:?}",
                    self.axes
                ),
            ));
        }
        let n: usize = dims.iter().product();
        let raw = match &self.kind {
            Kind::None => return Ok(None),
            Kind::Fourier(f) => {
                let g = f.grid(dims)?;
                let c = g.shape()[dims.len()];
                g.reshape(&[n, c])?
            }
            Kind::Trainable(t) => t.forward(n)?,
        };
        self.project(raw).map(Some)
    }

    /// The encoding of explicit positions `pos: [batch, n, d]` (Fourier features only):
    /// `[batch, n, channels]`.
    #[track_caller]
    pub fn points(&self, pos: &Tensor) -> Result<Tensor> {
        match &self.kind {
            Kind::Fourier(f) => {
                if pos.rank() != 3 {
                    return Err(Error::invalid(
                        "PositionEncoder::points",
                        format!("positions must be [batch, n, d], got {:?}", pos.shape()),
                    ));
                }
                let e = f.encode(pos)?;
                self.project(e)
            }
            _ => Err(Error::invalid(
                "PositionEncoder::points",
                "explicit positions need a Fourier position encoding",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        let c: PositionEncodingConfig = serde_json::from_str(
            r#"{"kind": "fourier", "num_bands": 64, "max_resolution": [224, 224], "order": "lucidrains"}"#,
        )
        .unwrap();
        assert_eq!(c.raw_channels(2), 258);
        let t: PositionEncodingConfig =
            serde_json::from_str(r#"{"kind": "trainable", "channels": 8, "init_scale": 1.0}"#)
                .unwrap();
        assert_eq!(t.num_channels(2, Some(4)), 4);
        let n: PositionEncodingConfig = serde_json::from_str(r#"{"kind": "none"}"#).unwrap();
        assert_eq!(n, PositionEncodingConfig::None);
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(
            serde_json::from_str::<PositionEncodingConfig>(&s).unwrap(),
            c
        );
    }

    #[test]
    fn encoder_shapes_and_params() {
        let mut store = ParamStore::new();
        let mut rng = Rng::new(0);
        let cfg = PositionEncodingConfig::Fourier(FourierConfig::deepmind(4, vec![8.0]));
        let e = PositionEncoder::new(&mut store, "pos", &cfg, Some(6), &[3, 5], &mut rng).unwrap();
        assert_eq!(e.num_channels(), 6);
        let g = e.grid(&[3, 5]).unwrap().unwrap();
        assert_eq!(g.shape(), &[15, 6]);
        assert!(g.is_tracked());
        let names: Vec<_> = store.names().map(str::to_string).collect();
        let mut want: Vec<_> = cfg
            .param_shapes(&[3, 5], Some(6))
            .into_iter()
            .map(|(n, _)| format!("pos.{n}"))
            .collect();
        want.sort();
        assert_eq!(names, want);
        let pts = Tensor::zeros(&[2, 7, 2]);
        assert_eq!(e.points(&pts).unwrap().shape(), &[2, 7, 6]);

        let mut store = ParamStore::new();
        let cfg = PositionEncodingConfig::Trainable {
            channels: 5,
            init_scale: 0.02,
        };
        let e = PositionEncoder::new(&mut store, "pos", &cfg, None, &[4], &mut rng).unwrap();
        assert_eq!(e.grid(&[4]).unwrap().unwrap().shape(), &[4, 5]);
        assert!(e.grid(&[5]).is_err());
        assert!(e.points(&pts).is_err());
        assert_eq!(store.numel(), 20);

        let mut store = ParamStore::new();
        let e = PositionEncoder::new(
            &mut store,
            "pos",
            &PositionEncodingConfig::None,
            Some(3),
            &[4],
            &mut rng,
        )
        .unwrap();
        assert!(e.grid(&[4]).unwrap().is_none());
        assert_eq!(e.num_channels(), 0);
        assert!(store.is_empty());
    }
}
