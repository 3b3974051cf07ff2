//! The input preprocessor's layers ([`Preprocessor`]): from the input the model is given to
//! the tokens its cross-attends read.

use crate::{ModelError, Preprocessor, Result};
use perceiver_nn::{FusedOps, Param, ParamStore};
use perceiver_tensor::{Error, Rng, Tensor};

/// The preprocessor's parameters (under `pre.`) and forward.
#[derive(Clone, Debug)]
pub(crate) enum InputPreprocessor {
    /// No preprocessing.
    None,
    /// A 1 x 1 convolution: `pre.weight` `[channels, input channels, 1, 1]`, `pre.bias`.
    Conv1x1 {
        /// The weight, in PyTorch's convolution layout.
        weight: Param,
        /// The bias.
        bias: Param,
    },
}

impl InputPreprocessor {
    /// Creates the parameters of `p` for inputs of `input_channels` channels.
    pub(crate) fn new(
        store: &mut ParamStore,
        p: &Preprocessor,
        input_channels: usize,
        rng: &mut Rng,
    ) -> Result<Self> {
        Ok(match *p {
            Preprocessor::None => InputPreprocessor::None,
            Preprocessor::Conv1x1 { channels } => {
                // PyTorch's default init of a convolution: U(±1/sqrt(fan_in)).
                let bound = 1.0 / (input_channels.max(1) as f32).sqrt();
                let w = Tensor::uniform(&[channels, input_channels, 1, 1], -bound, bound, rng);
                let weight = store.add("pre.weight", w)?;
                let b = Tensor::uniform(&[channels], -bound, bound, rng);
                let bias = store.add("pre.bias", b)?;
                InputPreprocessor::Conv1x1 { weight, bias }
            }
            Preprocessor::ConvDownsample { .. } => {
                return Err(ModelError::Unsupported(
                    "the conv_downsample preprocessor needs the conv ops".into(),
                ))
            }
        })
    }

    /// `x` `[batch, axes..., channels]` to tokens `[batch, token axes..., token channels]`.
    #[track_caller]
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            InputPreprocessor::None => Ok(x.clone()),
            InputPreprocessor::Conv1x1 { weight, bias } => {
                let shape = x.shape();
                let w = weight.tensor();
                let (out, c) = (w.shape()[0], w.shape()[1]);
                if shape.last() != Some(&c) {
                    return Err(Error::invalid(
                        "preprocessor",
                        format!("expected {c} input channels, got shape {shape:?}"),
                    )
                    .into());
                }
                let rows = x.numel() / c.max(1);
                let y = x.reshape(&[rows, c])?.linear(
                    &w.reshape(&[out, c])?,
                    Some(&bias.tensor()),
                    None,
                )?;
                let mut out = shape.to_vec();
                if let Some(last) = out.last_mut() {
                    *last = y.shape()[1];
                }
                Ok(y.reshape(&out)?)
            }
        }
    }
}
