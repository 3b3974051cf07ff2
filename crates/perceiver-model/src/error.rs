//! The model crate's error type.

use crate::ConfigError;
use std::fmt;

/// One problem found while loading or importing tensors, naming the tensor and its shapes.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorProblem {
    /// An expected tensor is absent.
    Missing {
        /// Its name (in the file's naming).
        name: String,
        /// The shape it should have.
        expected: Vec<usize>,
    },
    /// A tensor that the model has no place for.
    Unexpected {
        /// Its name.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A tensor of the wrong shape.
    Shape {
        /// Its name.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tied alias (lucidrains) whose values differ from the tensor it should repeat.
    AliasMismatch {
        /// The alias name.
        alias: String,
        /// The owner name.
        owner: String,
        /// Largest absolute difference.
        max_abs_diff: f32,
    },
    /// Anything else about one tensor (unsupported dtype, ...).
    Other {
        /// Its name.
        name: String,
        /// What is wrong.
        msg: String,
    },
}

impl fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TensorProblem::Missing { name, expected } => {
                write!(f, "missing `{name}` (expected shape {expected:?})")
            }
            TensorProblem::Unexpected { name, shape } => {
                write!(f, "unexpected `{name}` (shape {shape:?})")
            }
            TensorProblem::Shape {
                name,
                expected,
                found,
            } => write!(
                f,
                "mis-shaped `{name}`: expected {expected:?}, found {found:?}"
            ),
            TensorProblem::AliasMismatch {
                alias,
                owner,
                max_abs_diff,
            } => write!(
                f,
                "tied `{alias}` differs from its owner `{owner}` (max abs diff {max_abs_diff:e})"
            ),
            TensorProblem::Other { name, msg } => write!(f, "`{name}`: {msg}"),
        }
    }
}

fn list(problems: &[TensorProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Everything that can go wrong in `perceiver-model`.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A tensor operation failed (usually a bad input shape).
    #[error(transparent)]
    Tensor(#[from] perceiver_tensor::Error),
    /// Loading or importing tensors found problems; every one is listed.
    #[error("{context}: {} problem(s):\n{}", problems.len(), list(problems))]
    Tensors {
        /// What was being loaded.
        context: String,
        /// Every missing, unexpected or mis-shaped tensor.
        problems: Vec<TensorProblem>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or string is not in the expected format.
    #[error("{what}: {msg}")]
    Json {
        /// What was being parsed.
        what: String,
        /// The parser's message.
        msg: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: {msg}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// A file was refused or could not be read or written (a FIFO, a device, a symlink where
    /// the tool writes, a directory holding files the tool did not write...); names the path.
    #[error(transparent)]
    File(#[from] perceiver_io::FileError),
    /// A size or count does not fit 64-bit arithmetic; names the quantity and its fields.
    #[error("{what} overflows 64-bit arithmetic; lower {fields}")]
    Overflow {
        /// The quantity computed (`parameter count`, `activations of cross-attend 0`...).
        what: String,
        /// The configuration fields (and run settings) it depends on.
        fields: String,
    },
    /// The memory a run needs (see [`crate::MemoryEstimate`]) exceeds what is available.
    #[error("needs about {} ({biggest}) but only {} is available; lower {lower}",
        crate::memory::human_bytes(*needed), crate::memory::human_bytes(*available))]
    Memory {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
        /// The biggest contributor with its size and the factors behind it.
        biggest: String,
        /// The configuration fields (and run settings) that reduce it.
        lower: String,
    },
    /// A reference configuration cannot be expressed or a layout does not fit the model.
    #[error("{0}")]
    Unsupported(String),
    /// No preset has this name.
    #[error("unknown preset `{name}`; known presets: {known}")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names.
        known: String,
    },
}

impl ModelError {
    /// The listed tensor problems, when this is a load/import error.
    pub fn problems(&self) -> &[TensorProblem] {
        match self {
            ModelError::Tensors { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
