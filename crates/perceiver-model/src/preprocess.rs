//! The input preprocessor's layers ([`Preprocessor`]): from the input the model is given to
//! the tokens its cross-attends read.

use crate::{Preprocessor, Result};
use perceiver_nn::ops::{batch_norm2d, conv2d, max_pool2d};
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
    /// Conv2d 7 x 7 / 2, padding 3 (`pre.conv.weight`), BatchNorm2d (`pre.bn.weight`, `pre.bn.bias`, and
    /// its running statistics `pre.bn.running_mean`, `pre.bn.running_var`: state, used without
    /// gradient), ReLU, MaxPool 3 x 3 / 2 without padding.
    ConvDownsample {
        /// The convolution's weight `[channels, input channels, 7, 7]`.
        conv: Param,
        /// BatchNorm scale.
        bn_weight: Param,
        /// BatchNorm shift.
        bn_bias: Param,
        /// BatchNorm running mean.
        running_mean: Param,
        /// BatchNorm running variance.
        running_var: Param,
    },
}

/// BatchNorm's epsilon in `Conv2DDownsample`.
const BN_EPS: f32 = 1e-5;

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
            Preprocessor::ConvDownsample { channels } => {
                // PyTorch's default init: U(±1/sqrt(fan_in)) for the convolution, BatchNorm
                // 1 / 0 with running statistics 0 / 1.
                let bound = 1.0 / ((input_channels * 49).max(1) as f32).sqrt();
                let w = Tensor::uniform(&[channels, input_channels, 7, 7], -bound, bound, rng);
                InputPreprocessor::ConvDownsample {
                    conv: store.add("pre.conv.weight", w)?,
                    bn_weight: store.add("pre.bn.weight", Tensor::ones(&[channels]))?,
                    bn_bias: store.add("pre.bn.bias", Tensor::zeros(&[channels]))?,
                    running_mean: store.add("pre.bn.running_mean", Tensor::zeros(&[channels]))?,
                    running_var: store.add("pre.bn.running_var", Tensor::ones(&[channels]))?,
                }
            }
        })
    }

    /// `x` `[batch, axes..., channels]` to tokens `[batch, token axes..., token channels]`.
    #[track_caller]
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            InputPreprocessor::ConvDownsample {
                conv,
                bn_weight,
                bn_bias,
                running_mean,
                running_var,
            } => {
                let y = conv2d(x, &conv.tensor(), None, (2, 2), (3, 3))?;
                let y = batch_norm2d(
                    &y,
                    Some(&bn_weight.tensor()),
                    Some(&bn_bias.tensor()),
                    &running_mean.value(),
                    &running_var.value(),
                    BN_EPS,
                )?;
                Ok(max_pool2d(&y.relu(), (3, 3), (2, 2), (0, 0))?)
            }
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
