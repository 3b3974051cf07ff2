//! Image layers on channels-last images `[batch, H, W, C]`: [`Conv2d`], [`BatchNorm2d`] and
//! [`MaxPool2d`], over the ops [`conv2d`], [`batch_norm2d`] / [`batch_norm2d_train`] and
//! [`max_pool2d`].
//!
//! Weights use PyTorch's layouts and names (`Conv2d.weight` is `[Cout, Cin, kh, kw]`;
//! `BatchNorm2d` has `weight`, `bias`, and the running statistics `running_mean`,
//! `running_var`), so state dicts interchange by name. The running statistics are state, not
//! parameters: they are not in the [`ParamStore`] and an optimizer does not touch them; load
//! them with [`BatchNorm2d::load_running_stats`].

use crate::ops::{batch_norm2d, batch_norm2d_train, conv2d, max_pool2d};
use crate::{Param, ParamStore};
use perceiver_tensor::layout::check_vector;
use perceiver_tensor::{Result, Rng, Tensor};

/// The settings of a [`Conv2d`]: channels, kernel, stride and padding (`(rows, columns)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Input channels `Cin`.
    pub in_channels: usize,
    /// Output channels `Cout`.
    pub out_channels: usize,
    /// Kernel `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Zero padding `(ph, pw)` on both sides.
    pub padding: (usize, usize),
    /// Whether the layer has a bias.
    pub bias: bool,
}

/// A 2-D convolution of channels-last images ([`conv2d`]).
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Weight `[Cout, Cin, kh, kw]`.
    pub weight: Param,
    /// Optional bias `[Cout]`.
    pub bias: Option<Param>,
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Zero padding `(ph, pw)`.
    pub padding: (usize, usize),
}

impl Conv2d {
    /// Creates `name.weight` (and `name.bias`) in `store` with PyTorch's default init
    /// (uniform in `±1/√(Cin·kh·kw)`).
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        spec: Conv2dSpec,
        rng: &mut Rng,
    ) -> Result<Conv2d> {
        let (kh, kw) = spec.kernel;
        let fan_in = spec.in_channels * kh * kw;
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let shape = [spec.out_channels, spec.in_channels, kh, kw];
        let weight = store.add(
            format!("{name}.weight"),
            Tensor::uniform(&shape, -bound, bound, rng),
        )?;
        let bias = if spec.bias {
            let b = Tensor::uniform(&[spec.out_channels], -bound, bound, rng);
            Some(store.add(format!("{name}.bias"), b)?)
        } else {
            None
        };
        Ok(Conv2d {
            weight,
            bias,
            stride: spec.stride,
            padding: spec.padding,
        })
    }

    /// Applies the layer to `x: [batch, H, W, Cin]`, giving `[batch, Ho, Wo, Cout]`.
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| b.tensor());
        conv2d(
            x,
            &self.weight.tensor(),
            b.as_ref(),
            self.stride,
            self.padding,
        )
    }
}

/// Batch normalisation over the channels of `[batch, H, W, C]` with learned scale and offset
/// and running statistics (PyTorch's `BatchNorm2d`: running mean 0 and variance 1 at first,
/// momentum 0.1).
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    /// Scale `[C]` (PyTorch name `weight`).
    pub weight: Param,
    /// Offset `[C]` (PyTorch name `bias`).
    pub bias: Param,
    /// Added to the variance.
    pub eps: f32,
    /// Weight of a batch in the running statistics' update.
    pub momentum: f32,
    running_mean: Tensor,
    running_var: Tensor,
    num_batches_tracked: u64,
}

impl BatchNorm2d {
    /// Creates `name.weight` (ones) and `name.bias` (zeros) in `store`; running mean zeros,
    /// running variance ones.
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        channels: usize,
        eps: f32,
        momentum: f32,
    ) -> Result<BatchNorm2d> {
        Ok(BatchNorm2d {
            weight: store.add(format!("{name}.weight"), Tensor::ones(&[channels]))?,
            bias: store.add(format!("{name}.bias"), Tensor::zeros(&[channels]))?,
            eps,
            momentum,
            running_mean: Tensor::zeros(&[channels]),
            running_var: Tensor::ones(&[channels]),
            num_batches_tracked: 0,
        })
    }

    /// Channels `C`.
    pub fn channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// The running mean and variance (`[C]` each).
    pub fn running_stats(&self) -> (&Tensor, &Tensor) {
        (&self.running_mean, &self.running_var)
    }

    /// Batches seen by [`BatchNorm2d::forward_train`] (PyTorch's `num_batches_tracked`).
    pub fn num_batches_tracked(&self) -> u64 {
        self.num_batches_tracked
    }

    /// Replaces the running statistics (a checkpoint's `running_mean` and `running_var`,
    /// `[C]` each) and the batch counter.
    #[track_caller]
    pub fn load_running_stats(
        &mut self,
        mean: &Tensor,
        var: &Tensor,
        num_batches_tracked: u64,
    ) -> Result<()> {
        let c = self.channels();
        check_vector("BatchNorm2d::load_running_stats", Some(mean), c, || {
            "the running mean must be [C]".into()
        })?;
        check_vector("BatchNorm2d::load_running_stats", Some(var), c, || {
            "the running variance must be [C]".into()
        })?;
        self.running_mean = mean.detach().contiguous();
        self.running_var = var.detach().contiguous();
        self.num_batches_tracked = num_batches_tracked;
        Ok(())
    }

    /// Normalises `x: [batch, H, W, C]` with the running statistics (eval mode).
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        batch_norm2d(
            x,
            Some(&self.weight.tensor()),
            Some(&self.bias.tensor()),
            &self.running_mean,
            &self.running_var,
            self.eps,
        )
    }

    /// Normalises `x` with the batch's statistics (train mode) and updates the running ones:
    /// `running = (1 - momentum)·running + momentum·batch`, with the unbiased variance.
    #[track_caller]
    pub fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let (y, stats) = batch_norm2d_train(
            x,
            Some(&self.weight.tensor()),
            Some(&self.bias.tensor()),
            self.eps,
        )?;
        let (mean, var) =
            stats.update_running(&self.running_mean, &self.running_var, self.momentum)?;
        self.running_mean = mean;
        self.running_var = var;
        self.num_batches_tracked += 1;
        Ok(y)
    }
}

/// Max pooling of channels-last images ([`max_pool2d`]); no parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// `-∞` padding `(ph, pw)`, at most half the window.
    pub padding: (usize, usize),
}

impl MaxPool2d {
    /// Applies the pooling to `x: [batch, H, W, C]`.
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        max_pool2d(x, self.kernel, self.stride, self.padding)
    }
}
