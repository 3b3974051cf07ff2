//! The Perceiver and Perceiver IO models.
//!
//! - [`PerceiverConfig`]: the whole model as data (JSON), with weight sharing as data
//!   ([`WeightSharing`]), validated by [`PerceiverConfig::validate`] with errors naming the field.
//! - [`Perceiver`]: one structure built from the config, with canonical parameter names
//!   (`latents`, `cross.0.attn.to_q.weight`, `self.0.1.ff.fc1.weight`, `head.fc.weight`,
//!   `decoder.query`, ...; see [`PerceiverConfig::param_shapes`]); forward with an optional key
//!   padding mask, returning logits and the final latents.
//! - [`presets`]: `paper-imagenet`, `paper-imagenet-unshared`, `perceiver-io-imagenet`,
//!   `mnist-small`, `imagenet-bench`.
//! - Counts from the config alone: [`PerceiverConfig::num_params`],
//!   [`PerceiverConfig::flops_per_example`] (checked: [`PerceiverConfig::try_num_params`],
//!   [`PerceiverConfig::try_flops_per_example`]).
//! - Memory decided before work starts: [`PerceiverConfig::memory_estimate`] and
//!   [`check_memory`] (against, for example, `perceiver_nn::runtime::available_memory`).
//! - Training: [`train`] ([`Trainer`]: one step, evaluation, exact resume).
//! - Checkpoints: [`Perceiver::save_checkpoint`] / [`Perceiver::load_checkpoint`] (our format),
//!   and [`import`] of lucidrains and Hugging Face state dicts read from safetensors files.
//!
//! Everything needed to build and run a model is re-exported here (the tensor type, the random
//! generator, the position-encoding configs), so a user depends on this crate alone.
//!
//! ```
//! use perceiver_model::{no_grad, preset, Perceiver, Rng, Tensor};
//! let config = preset("paper-imagenet")?;
//! assert_eq!(config.num_params(), 44_912_254);
//! let small = preset("mnist-small")?;
//! let model = Perceiver::new(small, &mut Rng::new(0))?;
//! assert_eq!(model.num_params(), 1_116_182);
//! let logits = no_grad(|| model.forward(&Tensor::zeros(&[1, 28, 28, 1]), None))?.logits;
//! assert_eq!(logits.shape(), &[1, 10]);
//! # Ok::<(), perceiver_model::ModelError>(())
//! ```

pub mod checkpoint;
pub mod config;
mod count;
mod error;
pub mod import;
pub mod memory;
mod model;
mod preprocess;
pub mod presets;
pub mod train;

pub use checkpoint::{CONFIG_FILE, FORMAT, WEIGHTS_FILE};
pub use config::{
    AttentionConfig, AttentionKernel, AttnDims, BiasConfig, ConfigError, DecoderConfig,
    DropoutConfig, FeedForwardConfig, FeedForwardKind, HeadConfig, LatentInit, PerceiverConfig,
    Preprocessor, QueryConfig, SharingPlan, WeightSharing,
};
pub use count::FlopCount;
pub use error::{ModelError, Result, TensorProblem};
pub use import::hf::{import_hf, import_hf_file};
pub use import::lucidrains::{import_lucidrains, import_lucidrains_file};
pub use import::{import_reference, NameMap, Reference, ReferenceImport};
pub use memory::{check_memory, MemoryEstimate};
pub use model::{ForwardOptions, Perceiver, PerceiverOutput};
pub use presets::{preset, PRESETS};
pub use train::{TrainBatch, TrainError, Trainer, TrainerConfig};

pub use perceiver_attn::AttnKernel;
pub use perceiver_pos::{FourierConfig, PositionEncodingConfig};
pub use perceiver_tensor::{no_grad, GeluKind, Rng, Tensor};
