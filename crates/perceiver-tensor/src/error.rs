//! The one error type of the tensor crate.
//!
//! # Design
//! Shape errors are found once, in the forward pass, and returned as [`Error`]; backward rules
//! never fail. Every public op is `#[track_caller]`, so an error records the line of the caller
//! that passed the bad arguments (usually a model file), not a line inside this crate.

use std::panic::Location;

/// Result alias used throughout the workspace's tensor code.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `perceiver-tensor`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two shapes that an op needs to agree do not.
    #[error("{op}: {rule}: {lhs:?} vs {rhs:?} (called at {location})")]
    ShapeMismatch {
        /// Name of the op, e.g. `matmul`.
        op: &'static str,
        /// The rule that was broken, e.g. "inner dimensions differ".
        rule: String,
        /// First shape involved.
        lhs: Vec<usize>,
        /// Second shape involved.
        rhs: Vec<usize>,
        /// Where the op was called.
        location: &'static Location<'static>,
    },
    /// An axis index is not below the tensor's rank.
    #[error("{op}: axis {axis} is out of range for a tensor of rank {rank} (shape {shape:?}) (called at {location})")]
    AxisOutOfRange {
        /// Name of the op.
        op: &'static str,
        /// The axis that was asked for.
        axis: usize,
        /// Rank of the tensor.
        rank: usize,
        /// Shape of the tensor.
        shape: Vec<usize>,
        /// Where the op was called.
        location: &'static Location<'static>,
    },
    /// Any other invalid argument (bad probability, index out of range, wrong element count...).
    #[error("{op}: {msg} (called at {location})")]
    InvalidArgument {
        /// Name of the op or function.
        op: &'static str,
        /// What was wrong.
        msg: String,
        /// Where the op was called.
        location: &'static Location<'static>,
    },
    /// A gradient was requested for a tensor or parameter that received none in the backward pass.
    #[error("no gradient for {name}: it does not take part in the loss, or it was used under no_grad or after detach")]
    NoGradient {
        /// Name of the parameter (or a description of the tensor).
        name: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its contents are not what was expected.
    #[error("{path}: {msg}")]
    Format {
        /// The file involved.
        path: String,
        /// What was wrong, naming the tensor or field.
        msg: String,
    },
}

impl Error {
    /// Builds a [`Error::ShapeMismatch`] located at the caller.
    #[track_caller]
    pub fn shape(op: &'static str, rule: impl Into<String>, lhs: &[usize], rhs: &[usize]) -> Self {
        Error::ShapeMismatch {
            op,
            rule: rule.into(),
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
            location: Location::caller(),
        }
    }

    /// Builds a [`Error::AxisOutOfRange`] located at the caller.
    #[track_caller]
    pub fn axis(op: &'static str, axis: usize, shape: &[usize]) -> Self {
        Error::AxisOutOfRange {
            op,
            axis,
            rank: shape.len(),
            shape: shape.to_vec(),
            location: Location::caller(),
        }
    }

    /// Builds an [`Error::InvalidArgument`] located at the caller.
    #[track_caller]
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            msg: msg.into(),
            location: Location::caller(),
        }
    }
}
