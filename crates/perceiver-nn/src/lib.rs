//! # perceiver-nn
//!
//! The layer above the tensor core: named trainable parameters ([`Param`], [`ParamStore`]),
//! the [`Linear`] and [`LayerNorm`] layers, the image layers [`Conv2d`], [`BatchNorm2d`] and
//! [`MaxPool2d`], the fused layer ops ([`ops`]), optimizers and learning-rate schedules
//! ([`optim`]), safetensors checkpoints with atomic writes and a restricted reader of PyTorch's
//! `torch.save` state dicts ([`io`]: the one checkpoint reader and writer of the workspace), and
//! the compute-thread set-up shared by the programs ([`runtime`]).
//!
//! ```
//! use perceiver_nn::optim::{Adam, AdamConfig, Optimizer};
//! use perceiver_nn::{Linear, ParamStore};
//! use perceiver_tensor::{Rng, Tensor};
//!
//! let mut store = ParamStore::new();
//! let layer = Linear::new(&mut store, "proj", 4, 3, true, &mut Rng::new(0))?;
//! let x = Tensor::randn(&[2, 4], &mut Rng::new(1));
//! let loss = layer.forward(&x)?.cross_entropy(&[0, 2], 0.0)?;
//! let grads = loss.backward()?;
//! let mut opt = Adam::new(AdamConfig::default())?;
//! opt.step(&store, &grads, 1e-3)?;
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```

mod image_layers;
pub mod io;
mod layers;
pub mod ops;
pub mod optim;
mod params;
pub mod runtime;

pub use image_layers::{BatchNorm2d, Conv2d, Conv2dSpec, MaxPool2d};
pub use layers::{LayerNorm, Linear};
pub use ops::FusedOps;
pub use params::{Param, ParamStore};
