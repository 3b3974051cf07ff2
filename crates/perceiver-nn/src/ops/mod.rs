//! Fused layer ops: one op where the plain composition of tensor ops would make several passes
//! over large activations. Each is a [`CustomOp`](perceiver_tensor::CustomOp) of the tensor
//! crate, with its backward beside its forward, and gives the values of the composition it
//! replaces (tested against it, forward and backward, and gradient-checked).
//!
//! - [`linear`] / [`linear_add`]: `act(x·Wᵀ + b)` (+ a residual) with the bias, GELU and residual
//!   applied in the GEMM's epilogue;
//! - [`mlp_add`]: `residual + act(x·W1ᵀ + b1)·W2ᵀ + b2`, a transformer's MLP, with a cheaper
//!   backward;
//! - [`layer_norm_concat`]: the LayerNorm of a concatenation without building it at inference;
//! - [`conv2d`], [`batch_norm2d`] / [`batch_norm2d_train`], [`max_pool2d`]: the image layers of
//!   a convolutional preprocessor, on channels-last images `[batch, H, W, C]` (the convolution
//!   as im2col and one GEMM).
//!
//! [`FusedOps`] offers the first three as methods of [`Tensor`]. The table [`OPS`] lists them
//! with their gradient checks (`crates/perceiver-nn/tests/gradcheck.rs`); `docs/OPS.md` renders
//! it beside the tensor crate's primitives.

mod batch_norm;
mod conv2d;
mod layer_norm_concat;
mod linear;
mod max_pool;
mod mlp;
mod window;

pub use batch_norm::{batch_norm2d, batch_norm2d_train, BatchStats};
pub use conv2d::conv2d;
pub use layer_norm_concat::layer_norm_concat;
pub use linear::{linear, linear_add};
pub use max_pool::max_pool2d;
pub use mlp::mlp_add;

use perceiver_tensor::{GeluKind, Result, Tensor};

/// Every fused op: `(function, module, gradient-check test name)`, as in the tensor crate's
/// `perceiver_tensor::ops::OPS`.
pub const OPS: &[(&str, &str, &str)] = &[
    (
        "layer_norm_concat",
        "ops/layer_norm_concat.rs",
        "grad_layer_norm_concat",
    ),
    (
        "linear / linear_add (fused bias, GELU, residual)",
        "ops/linear.rs",
        "grad_linear",
    ),
    ("mlp_add", "ops/mlp.rs", "grad_mlp_add"),
    (
        "conv2d (channels-last, im2col + GEMM)",
        "ops/conv2d.rs",
        "grad_conv2d",
    ),
    (
        "batch_norm2d / batch_norm2d_train",
        "ops/batch_norm.rs",
        "grad_batch_norm2d",
    ),
    ("max_pool2d", "ops/max_pool.rs", "grad_max_pool2d"),
];

/// The fused layer ops as methods of [`Tensor`] (`x.linear(&w, b, act)`).
pub trait FusedOps {
    /// [`linear`].
    fn linear(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        act: Option<GeluKind>,
    ) -> Result<Tensor>;
    /// [`linear_add`].
    fn linear_add(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor>;
    /// [`mlp_add`].
    #[allow(clippy::too_many_arguments)]
    fn mlp_add(
        &self,
        w1: &Tensor,
        b1: Option<&Tensor>,
        act: GeluKind,
        w2: &Tensor,
        b2: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor>;
}

impl FusedOps for Tensor {
    #[track_caller]
    fn linear(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        act: Option<GeluKind>,
    ) -> Result<Tensor> {
        linear(self, weight, bias, act)
    }

    #[track_caller]
    fn linear_add(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        linear_add(self, weight, bias, residual)
    }

    #[track_caller]
    fn mlp_add(
        &self,
        w1: &Tensor,
        b1: Option<&Tensor>,
        act: GeluKind,
        w2: &Tensor,
        b2: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        mlp_add(self, w1, b1, act, w2, b2, residual)
    }
}
