//! Building blocks with parameters: [`Linear`] and [`LayerNorm`].
//!
//! Weights use PyTorch's layouts (`Linear.weight` is `[out, in]`) and default initialisation
//! (uniform in `±1/√in` for both weight and bias; LayerNorm scale 1 and offset 0), so state
//! dicts interchange by name. The forward of `Linear` is the fused [`linear`](crate::ops::linear) op: the
//! transposed weight is a strided view (no copy), all leading dimensions fold into the rows of
//! one GEMM, and a single pass over the output adds the bias (and applies an optional GELU).

use crate::{FusedOps, Param, ParamStore};
use perceiver_tensor::{Error, GeluKind, Result, Rng, Tensor};

/// `y = x·Wᵀ + b` over the last axis.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: Param,
    /// Optional bias `[out]`.
    pub bias: Option<Param>,
}

impl Linear {
    /// Creates `name.weight` (and `name.bias`) in `store` with PyTorch's default init.
    #[track_caller]
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        rng: &mut Rng,
    ) -> Result<Linear> {
        let bound = 1.0 / (in_dim.max(1) as f32).sqrt();
        let w = Tensor::uniform(&[out_dim, in_dim], -bound, bound, rng);
        let weight = store.add(format!("{name}.weight"), w)?;
        let bias = if bias {
            let b = Tensor::uniform(&[out_dim], -bound, bound, rng);
            Some(store.add(format!("{name}.bias"), b)?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Applies the layer to `x` of shape `[..., in]`.
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, None)
    }

    /// Applies the layer followed by a GELU, fused into one op ([`linear`](crate::ops::linear)): the bias
    /// and the activation are applied to each block of the output while it is in cache.
    #[track_caller]
    pub fn forward_act(&self, x: &Tensor, act: Option<GeluKind>) -> Result<Tensor> {
        self.check_input(x)?;
        let b = self.bias.as_ref().map(|b| b.tensor());
        x.linear(&self.weight.tensor(), b.as_ref(), act)
    }

    /// An error naming the weight unless `x`'s last dimension is the layer's input width.
    fn check_input(&self, x: &Tensor) -> Result<()> {
        let in_dim = self.in_dim();
        if x.shape().last() != Some(&in_dim) {
            return Err(Error::shape(
                "Linear",
                format!(
                    "the input's last dimension must be {in_dim} ({})",
                    self.weight.name()
                ),
                x.shape(),
                &self.weight.shape(),
            ));
        }
        Ok(())
    }

    /// `residual + layer(x)`, the residual added in the same fused op ([`linear_add`](crate::ops::linear_add)).
    #[track_caller]
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let b = self.bias.as_ref().map(|b| b.tensor());
        x.linear_add(&self.weight.tensor(), b.as_ref(), residual)
    }
}

/// Layer normalisation over the last axis with learned scale and offset.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Scale `[dim]` (PyTorch name `weight`).
    pub weight: Param,
    /// Offset `[dim]` (PyTorch name `bias`).
    pub bias: Param,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Creates `name.weight` (ones) and `name.bias` (zeros) in `store`.
    #[track_caller]
    pub fn new(store: &mut ParamStore, name: &str, dim: usize, eps: f32) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: store.add(format!("{name}.weight"), Tensor::ones(&[dim]))?,
            bias: store.add(format!("{name}.bias"), Tensor::zeros(&[dim]))?,
            eps,
        })
    }

    /// Normalised width.
    pub fn dim(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Applies the layer to `x` of shape `[..., dim]`.
    #[track_caller]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(
            Some(&self.weight.tensor()),
            Some(&self.bias.tensor()),
            self.eps,
        )
    }
}
