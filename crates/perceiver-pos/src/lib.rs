//! Position encodings for the Perceiver.
//!
//! - [`FourierFeatures`]: Fourier features on N-d grids (positions `linspace(-1, 1, n)` per axis,
//!   'ij' order) or at arbitrary per-example positions (`[batch, n, d]`: point clouds, permuted
//!   pixels), with `num_bands`, per-axis `max_resolution`, `concat_pos`, `sine_only`, and both
//!   channel orders ([`ChannelOrder::DeepMind`], as DeepMind and Hugging Face, and
//!   [`ChannelOrder::Lucidrains`]). Grid features are cached per shape.
//! - [`TrainablePositionEncoding`]: a learned array, truncated-normal init with a given scale.
//! - [`PositionEncodingConfig`] / [`PositionEncoder`]: the encoding a model uses, as data, and
//!   the module built from it, with an optional projection.
//!
//! ```
//! use perceiver_pos::{FourierConfig, FourierFeatures};
//! // ImageNet: 64 bands, max resolution 224 on both axes -> 2 * (2 * 64 + 1) = 258 channels.
//! let ff = FourierFeatures::new(FourierConfig::deepmind(64, vec![224.0, 224.0]));
//! assert_eq!(ff.num_channels(2), 258);
//! let f = ff.grid(&[224, 224])?;
//! assert_eq!(f.shape(), &[224, 224, 258]);
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```

mod encoder;
mod fourier;
mod trainable;

pub use encoder::{PositionConfigError, PositionEncoder, PositionEncodingConfig};
pub use fourier::{
    grid_positions, linspace_f32, ChannelOrder, FourierConfig, FourierConfigError, FourierFeatures,
};
pub use trainable::{init_array, TrainablePositionEncoding};
