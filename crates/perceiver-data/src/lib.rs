//! # perceiver-data
//!
//! Datasets and loaders for the Perceiver: images, audio, point clouds and video, read from the
//! standard file formats or generated procedurally, batched into [`perceiver_tensor::Tensor`]s.
//!
//! ## Formats and datasets
//!
//! | modality | readers / datasets | module |
//! | --- | --- | --- |
//! | images | MNIST and Fashion-MNIST IDX (raw or `.gz`), CIFAR-10 binary batches, PNG/JPEG folders (class = sub-folder, resize + centre crop), procedural `shapes` (12 classes) | [`image`] |
//! | audio | WAV (`hound`), crop/pad, raw-waveform patches, log-mel (`rustfft`, HTK mel filterbank), FSDD with its standard split | [`audio`] |
//! | point clouds | OFF, PLY (ASCII, binary LE/BE), area-weighted surface sampling, unit sphere / cube scaling, augmentation, ModelNet-style folders, procedural shapes (10 classes) | [`points`] |
//! | video | procedural moving shapes (8 motion classes) | [`video`] |
//!
//! Image transforms ([`image::transforms`]): normalisation, random crop with padding, horizontal
//! flip and the paper's fixed pixel permutation. With the `download` feature (default),
//! [`download`] fetches MNIST, Fashion-MNIST, CIFAR-10 and FSDD into a cache directory with
//! SHA-256 verification (HTTPS hosts need the `https` feature).
//!
//! ## Sample layout
//!
//! A [`Sample`] holds `values` `[tokens, channels]`, optional explicit `positions`
//! `[tokens, pos_dim]` (row `t` is the position of token `t`), an optional `grid` and a `label`.
//! Data on a regular grid leaves its positions implicit: they are `linspace(-1, 1)` per axis in
//! 'ij' order, [`perceiver_pos::grid_positions`], which the model computes once per grid shape,
//! so no sample or batch carries copies of them.
//!
//! | data | values | explicit positions | grid |
//! | --- | --- | --- | --- |
//! | image | `[H*W, C]`, HWC, in `[0, 1]` | none (implicit, 2-D) | `[H, W]` |
//! | image patches ([`image::SpaceToDepth`]) | `[H/p * W/p, p*p*C]` | none (implicit, 2-D) | `[H/p, W/p]` |
//! | audio | `[T, C]` (patches of `C` samples or `C` mel bands) | none (implicit, 1-D) | `[T]` |
//! | points | `[N, 3]` xyz | `[N, 3]` the same xyz | none |
//! | video | `[F*H*W, C]` | none (implicit, 3-D) | `[F, H, W]` |
//! | permuted pixels ([`image::PixelPermutation`]) | `[H*W, C]` | `[H*W, 2]`, moved with the pixels | none |
//!
//! A transform that reorders tokens ([`Sample::permute_tokens`], [`image::PixelPermutation`])
//! makes the positions explicit, moves values and positions together and drops the grid. A
//! [`Batch`] stacks samples: `inputs` `[B, *grid, C]` (or `[B, tokens, C]` without a shared
//! grid), explicit `positions` `[B, tokens, pos_dim]` when the samples have them (`None` on a
//! shared grid), `labels` and the dataset `indices`.
//!
//! ## Determinism
//!
//! All randomness comes from [`perceiver_tensor::Rng`] (ChaCha8). Datasets are pure: sample `i`
//! is always the same (procedural datasets derive it from `(seed, i)`). The [`Loader`] shuffles
//! epoch `e` with a generator seeded from `(seed, e)` — reshuffled every epoch, replayable on its
//! own — and seeds each sample's transform from `(seed, e, index)`. Worker threads build whole
//! batches and hand them back in order, so the batches of an epoch are identical with or without
//! prefetch and whatever the number of workers.
//!
//! ```
//! use perceiver_data::{image::{Shapes, ShapesConfig}, Loader};
//! let ds = Shapes::new(ShapesConfig { len: 40, ..ShapesConfig::default() })?;
//! let loader = Loader::new(ds, 16)?.seed(7).drop_last(true).workers(2);
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.inputs.shape(), &[16, 32, 32, 1]);
//!     assert_eq!(batch.grid.as_deref(), Some(&[32, 32][..]));
//!     assert!(batch.positions.is_none(), "grid positions are implicit");
//! }
//! # Ok::<(), perceiver_data::DataError>(())
//! ```
//!
//! ## Robustness
//!
//! Corrupt or truncated input gives a [`DataError`] naming the file, the field and the byte
//! offset; nothing panics. Sizes in headers are checked against the file length before
//! allocating. A property test feeds truncated and bit-flipped copies of real files to every
//! parser.

pub mod audio;
pub mod bench;
pub mod dataset;
#[cfg(feature = "download")]
pub mod download;
pub mod error;
pub mod image;
pub mod io;
pub mod loader;
pub mod points;
pub mod sample;
pub mod video;

pub use dataset::{mix_seed, Compose, Dataset, Mapped, Relabel, Split, Subset, Transform};
pub use error::{DataError, Result};
pub use loader::{Epoch, Loader};
pub use sample::{collate, Batch, Sample};

use std::path::PathBuf;

/// The shared data directory: `$PERCEIVER_DATA` if set, else `<workspace root>/../shared/data`
/// (the workspace root as seen when this crate was compiled).
pub fn shared_data_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("PERCEIVER_DATA") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}
