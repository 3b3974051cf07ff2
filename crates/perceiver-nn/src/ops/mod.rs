//! Fused layer ops: one op where the plain composition of tensor ops would make several passes
//! over large activations. Each is a [`CustomOp`](perceiver_tensor::CustomOp) of the tensor
//! crate, with its backward beside its forward, and gives the values of the composition it
//! replaces (tested against it, forward and backward, and gradient-checked).
//!
//! - [`linear`] / [`linear_add`]: `act(x·Wᵀ + b)` (+ a residual) with the bias, GELU and residual
//!   applied in the GEMM's epilogue;
//! - [`mlp_add`]: `residual + act(x·W1ᵀ + b1)·W2ᵀ + b2`, a transformer's MLP, with a cheaper
//!   backward;
//! - [`layer_norm_concat`]: the LayerNorm of a concatenation without building it at inference.
//!
//! [`FusedOps`] offers the first three as methods of [`Tensor`]. The table [`OPS`] lists them
//! with their gradient checks (`crates/perceiver-nn/tests/gradcheck.rs`); `docs/OPS.md` renders
//! it beside the tensor crate's primitives.

mod layer_norm_concat;
mod linear;
mod mlp;

pub use layer_norm_concat::layer_norm_concat;
pub use linear::{linear, linear_add};
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
