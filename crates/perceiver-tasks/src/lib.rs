//! Task recipes for the Perceiver: what it takes to reach the documented results
//! (`docs/RESULTS.md`) on each dataset, as library API.
//!
//! A recipe has three parts, each usable alone:
//!
//! - **the preset** ([`task_preset`] -> [`TaskPreset`]): the model body ([`Body`]: latents,
//!   width, Fourier bands, cross-attention heads and depth) and the optimisation ([`Hyper`]:
//!   LAMB with warm-up and a cosine schedule for the main tasks, epochs, batch size), the
//!   default example counts, augmentation and patch size;
//! - **the data** ([`DataSpec`]): which dataset and how it is fed; [`open_splits`] opens the
//!   training and test splits and checks they agree (classes, shapes, sizes), [`open_split`]
//!   opens one, [`open_eval_split`] opens the test split for a checkpoint's classes,
//!   [`train_transform`] / [`eval_transform`] augment, normalise, permute pixels or cut `p x p`
//!   patches, [`data_shape`] gives the shape the model sees, [`train_loader`] / [`eval_loader`]
//!   batch it and [`model_batch`] turns a batch into the model's input;
//! - **the model** ([`body_config`] for a preset's body, [`fit_config`] for any configuration,
//!   with latents drawn with standard deviation 1) and its trainer ([`new_trainer`]: the
//!   optimizer and schedule built from [`Hyper`]).
//!
//! The `perceiver` command-line tool is these calls plus flags, progress and files. Training
//! the built-in `shapes` task with its preset (4x4 patches, LAMB at 5e-3):
//!
//! ```
//! use perceiver_data::Split;
//! use perceiver_tasks::{
//!     body_config, data_shape, model_batch, new_trainer, open_split, task_preset, train_loader,
//!     DataSpec, DatasetKind, Hyper,
//! };
//! let kind = DatasetKind::Shapes;
//! let preset = task_preset(kind);
//! let mut spec = DataSpec::new(kind)?;
//! spec.train_size = Some(32); // the preset generates 30,000
//! let train = open_split(&spec, Split::Train)?;
//! spec.fit(train.as_ref())?; // normalisation statistics and class names
//! let shape = data_shape(train.as_ref(), spec.patch)?;
//! assert_eq!((shape.axes.clone(), shape.channels), (vec![8, 8], 16)); // 4x4 patches of 32x32
//! let hyper = Hyper { epochs: 1, batch_size: 16, ..preset.hyper };
//! let config = body_config(&preset.body, &shape, train.num_classes(), kind.is_points());
//! let loader = train_loader(&spec, &hyper, train, &shape)?;
//! let mut trainer = new_trainer(config, &hyper, loader.num_batches() as u64)?;
//! for batch in loader.epoch(0) {
//!     let stats = trainer.step(&model_batch(batch?))?;
//!     assert!(stats.loss.is_finite());
//! }
//! assert_eq!(trainer.steps(), 2);
//! # Ok::<(), perceiver_tasks::TaskError>(())
//! ```

mod data;
mod error;
mod model;
mod preset;

pub use data::{
    check_classes, data_shape, eval_loader, eval_transform, fsdd_config, model_batch,
    normalization, open_eval_split, open_split, open_splits, resolve_data_dir, split_label,
    train_loader, train_transform, DataShape, DataSpec, Splits, MAX_GENERATED,
};
pub use error::{Result, TaskError};
pub use model::{
    body_config, fit_config, init_config_from, init_model_from, init_model_with, new_trainer,
    resume_trainer, trainer_for,
};
pub use preset::{
    task_preset, AudioKind, Body, DatasetKind, Hyper, OptimizerKind, ScheduleKind, TaskPreset,
};
