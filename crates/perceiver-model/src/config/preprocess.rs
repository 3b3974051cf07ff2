//! The input preprocessor: what turns the input the model is given (`input_axes` ×
//! `input_channels`) into the tokens its cross-attends read (`token_axes()` ×
//! `token_channels()`), before the position features are concatenated.

use super::{ConfigError, PerceiverConfig};
use serde::{Deserialize, Serialize};

/// The input preprocessor ([`PerceiverConfig::preprocessor`]).
///
/// ```
/// use perceiver_model::{PerceiverConfig, Preprocessor};
/// // The Hugging Face "conv" image classifier: 224 x 224 RGB pixels become 55 x 55 tokens of
/// // 64 channels.
/// let config = PerceiverConfig {
///     input_channels: 3,
///     input_axes: vec![224, 224],
///     preprocessor: Preprocessor::ConvDownsample { channels: 64 },
///     ..PerceiverConfig::default()
/// };
/// assert_eq!(config.token_axes(), vec![55, 55]);
/// assert_eq!(config.token_channels(), 64);
/// assert_eq!(config.input_tokens(), 55 * 55);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocessor {
    /// The input elements are the tokens.
    #[default]
    None,
    /// A 1 x 1 convolution with bias: a Linear map of every input element to `channels`
    /// (the Hugging Face "learned" image classifier's `convnet_1x1`; its weight keeps
    /// PyTorch's convolution layout `[channels, input_channels, 1, 1]`).
    Conv1x1 {
        /// Channels of each token.
        channels: usize,
    },
    /// The Hugging Face "conv" image classifier's `Conv2DDownsample` on a 2-D input: Conv2d
    /// 7 x 7, stride 2, padding 3, no bias, to `channels`; BatchNorm2d (eps 1e-5, running
    /// statistics at inference); ReLU; MaxPool 3 x 3, stride 2, no padding. A side `n` becomes
    /// `ceil(n / 2)`, then `(ceil(n / 2) - 3) / 2 + 1` (224 -> 112 -> 55); sides need `n >= 5`.
    ConvDownsample {
        /// Channels of each token.
        channels: usize,
    },
}

/// The side after `Conv2DDownsample`: `ceil(n / 2)` after the 7 x 7 / stride 2 / padding 3
/// convolution, then `(m - 3) / 2 + 1` after the 3 x 3 / stride 2 max-pool (0 when too small).
fn downsample(side: usize) -> usize {
    let m = side.div_ceil(2);
    if m < 3 {
        0
    } else {
        (m - 3) / 2 + 1
    }
}

impl Preprocessor {
    /// The token grid for an input grid `axes`.
    pub fn token_axes(&self, axes: &[usize]) -> Vec<usize> {
        match self {
            Preprocessor::None | Preprocessor::Conv1x1 { .. } => axes.to_vec(),
            Preprocessor::ConvDownsample { .. } => axes.iter().map(|&a| downsample(a)).collect(),
        }
    }

    /// The channels of each token for `input_channels` channels of input.
    pub fn token_channels(&self, input_channels: usize) -> usize {
        match self {
            Preprocessor::None => input_channels,
            Preprocessor::Conv1x1 { channels } | Preprocessor::ConvDownsample { channels } => {
                *channels
            }
        }
    }

    /// Parameter shapes under their canonical names (relative to `pre.`), in creation order.
    pub fn param_shapes(&self, input_channels: usize) -> Vec<(&'static str, Vec<usize>)> {
        match *self {
            Preprocessor::None => Vec::new(),
            Preprocessor::Conv1x1 { channels } => vec![
                ("weight", vec![channels, input_channels, 1, 1]),
                ("bias", vec![channels]),
            ],
            Preprocessor::ConvDownsample { channels } => vec![
                ("conv.weight", vec![channels, input_channels, 7, 7]),
                ("bn.weight", vec![channels]),
                ("bn.bias", vec![channels]),
                ("bn.running_mean", vec![channels]),
                ("bn.running_var", vec![channels]),
            ],
        }
    }

    /// Checks the preprocessor against the input it is given.
    pub(super) fn validate(&self, input_axes: &[usize]) -> Result<(), ConfigError> {
        match *self {
            Preprocessor::None => Ok(()),
            Preprocessor::Conv1x1 { channels: 0 } => Err(ConfigError::Zero {
                field: "preprocessor.channels",
            }),
            Preprocessor::Conv1x1 { .. } => Ok(()),
            Preprocessor::ConvDownsample { channels: 0 } => Err(ConfigError::Zero {
                field: "preprocessor.channels",
            }),
            Preprocessor::ConvDownsample { .. } if input_axes.len() != 2 => {
                Err(ConfigError::Inconsistent {
                    field: "preprocessor",
                    reason: format!(
                        "conv_downsample needs a 2-D input, got {} axes",
                        input_axes.len()
                    ),
                })
            }
            Preprocessor::ConvDownsample { .. } if input_axes.iter().any(|&n| n < 5) => {
                Err(ConfigError::Inconsistent {
                    field: "preprocessor",
                    reason: format!(
                        "conv_downsample needs sides of at least 5 pixels, got {input_axes:?}"
                    ),
                })
            }
            Preprocessor::ConvDownsample { .. } => Ok(()),
        }
    }
}

impl PerceiverConfig {
    /// The token grid the cross-attends read: `input_axes` after the preprocessor.
    pub fn token_axes(&self) -> Vec<usize> {
        self.preprocessor.token_axes(&self.input_axes)
    }

    /// The names of the model's state that is not trained: BatchNorm's running statistics of
    /// the conv preprocessor (see `Perceiver::state_names`).
    pub fn state_names(&self) -> Vec<&'static str> {
        match self.preprocessor {
            Preprocessor::ConvDownsample { .. } => {
                vec!["pre.bn.running_mean", "pre.bn.running_var"]
            }
            _ => Vec::new(),
        }
    }

    /// The channels of each token before the position features: `input_channels` after the
    /// preprocessor.
    pub fn token_channels(&self) -> usize {
        self.preprocessor.token_channels(self.input_channels)
    }
}
