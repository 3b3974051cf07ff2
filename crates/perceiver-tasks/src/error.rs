//! The error type of the task recipes.

use crate::preset::DatasetKind;
use perceiver_data::{DataError, Split};
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = TaskError> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up or feeding a task.
///
/// Messages are library-neutral (no command-line flags); a front end that wants to name its own
/// options matches on the variants.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Reading, decoding or batching data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Building, loading or running the model failed.
    #[error(transparent)]
    Model(#[from] perceiver_model::ModelError),
    /// A training step or a training-state file failed.
    #[error(transparent)]
    Train(#[from] perceiver_model::TrainError),
    /// A tensor operation, optimizer or schedule failed.
    #[error(transparent)]
    Tensor(#[from] perceiver_tensor::Error),
    /// A file dataset could not be opened from its folder.
    #[error("cannot open {dataset} ({}): {source}", .split.name())]
    Open {
        /// The dataset.
        dataset: DatasetKind,
        /// The split that was opened.
        split: Split,
        /// What the reader reported.
        #[source]
        source: DataError,
    },
    /// A dataset folder was opened but holds no samples.
    #[error("{dataset} ({}) in {} has no samples", .split.name(), .dir.display())]
    Empty {
        /// The dataset.
        dataset: DatasetKind,
        /// The split that was opened.
        split: Split,
        /// Its folder.
        dir: PathBuf,
    },
    /// More examples asked for than a file dataset's split holds.
    #[error("{asked} {} examples asked for, but {dataset} ({}) in {} holds {available}", .split.name(), .split.name(), .dir.display())]
    TooFewExamples {
        /// The dataset.
        dataset: DatasetKind,
        /// The split.
        split: Split,
        /// Its folder.
        dir: PathBuf,
        /// The examples asked for.
        asked: usize,
        /// The examples the split holds.
        available: usize,
    },
    /// More examples asked for than a generated dataset may hold
    /// ([`crate::MAX_GENERATED`]).
    #[error("{asked} {} examples asked for, but {dataset} generates at most {max}", .split.name())]
    TooManyExamples {
        /// The dataset.
        dataset: DatasetKind,
        /// The split.
        split: Split,
        /// The examples asked for.
        asked: usize,
        /// The most it generates.
        max: usize,
    },
    /// Data with classes that a reference (the training split, or a checkpoint) does not
    /// have.
    #[error("{data} has classes that {known} does not have: {}", perceiver_data::dataset::quote_names(.classes))]
    UnknownClasses {
        /// The unknown class names.
        classes: Vec<String>,
        /// The data, in words (e.g. `the test split of image-folder (/data/pets/test)`).
        data: String,
        /// The reference, in words.
        known: String,
    },
    /// The training and test splits hold samples of different shapes.
    #[error("{train} has samples of {train_shape} but {test} has samples of {test_shape}")]
    ShapeMismatch {
        /// The training split, in words.
        train: String,
        /// Its sample shape, e.g. `28x28x1`.
        train_shape: String,
        /// The test split, in words.
        test: String,
        /// Its sample shape.
        test_shape: String,
    },
    /// The dataset has no default folder and none was given.
    #[error("dataset {0} needs a data folder")]
    NeedsDataDir(DatasetKind),
    /// Patches that do not tile the data (not a 2-D image, or sides not multiples of the patch).
    #[error(
        "patches of {patch}x{patch} need images whose sides are multiples of {patch}, got {axes:?}"
    )]
    Patch {
        /// The patch side.
        patch: usize,
        /// The index dimensions of the data.
        axes: Vec<usize>,
    },
    /// A fixed pixel permutation was combined with patches (patches need grid order).
    #[error("a pixel permutation and patches do not combine (patches need pixels in grid order)")]
    PermutedPatches,
    /// An optimisation setting is out of range ([`crate::Hyper::validate`]).
    #[error("{field} {rule}")]
    Hyper {
        /// The [`crate::Hyper`] field, e.g. `batch_size`.
        field: &'static str,
        /// The rule it breaks, e.g. `must be at least 1`.
        rule: String,
    },
    /// The model configuration is invalid.
    #[error("model configuration: {0}")]
    Config(#[from] perceiver_model::ConfigError),
    /// A checkpoint to start from does not fit the data.
    #[error("{}: {msg}", .dir.display())]
    InitFrom {
        /// The checkpoint.
        dir: std::path::PathBuf,
        /// What does not fit.
        msg: String,
    },
}
