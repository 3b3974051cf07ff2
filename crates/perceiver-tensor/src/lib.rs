//! # perceiver-tensor
//!
//! The tensor and autograd core of the Perceiver workspace: an f32 [`Tensor`] with strided
//! views, the ops the model needs (each with its gradient), reverse-mode autograd with custom
//! ops and stable leaves ([`autograd::Leaf`]), and the gradient checker ([`testing`]). It
//! computes through `perceiver-kernels` (GEMM and SIMD row kernels); parameters, layers,
//! optimizers and checkpoints are the layer above (`perceiver-nn`).
//!
//! ```
//! use perceiver_tensor::{Rng, Tensor};
//! let mut rng = Rng::new(0);
//! let x = Tensor::randn(&[4, 8], &mut rng);
//! let w = Tensor::randn(&[8, 3], &mut rng).requires_grad();
//! let logits = x.matmul(&w)?;
//! let loss = logits.cross_entropy(&[0, 1, 2, 0], 0.0)?;
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().shape(), &[8, 3]);
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the design and `docs/OPS.md` for the ops and their gradient
//! checks.

pub mod autograd;
mod error;
pub mod layout;
pub mod ops;
pub mod rng;
pub mod strided;
mod tensor;
pub mod testing;

pub use autograd::{
    apply_custom, is_grad_enabled, no_grad, Backward, CustomOp, Forward, Grads, NoGradGuard,
};
pub use error::{Error, Result};
pub use perceiver_kernels::GeluKind;
pub use rng::Rng;
pub use tensor::Tensor;

/// The `ndarray` crate, at the version [`Tensor::from_ndarray`] and [`Tensor::to_ndarray`] take
/// and return (so that users need not pin the same version themselves).
pub use ndarray;
