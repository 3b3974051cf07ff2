//! The one error type of the data crate.
//!
//! # Design
//! Every reader returns [`DataError`] instead of panicking. Errors about file contents name the
//! file, the field being read and the byte offset where reading went wrong, so a corrupt or
//! truncated download can be found and fixed. Sizes declared in headers are checked against the
//! length of the file *before* any allocation, so a flipped bit cannot ask for terabytes.

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, decoding or batching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was refused before reading (not a regular file, larger than the reader accepts,
    /// changed while read); the message names the file and what it is.
    #[error(transparent)]
    File(perceiver_io::FileError),
    /// A file was read but its bytes are not valid for its format (corrupt or truncated).
    #[error("{}: {field} at byte {offset}: {msg}", path.display())]
    Format {
        /// The file involved.
        path: PathBuf,
        /// The field (header entry, record, chunk...) that was being read.
        field: String,
        /// Byte offset in the file (or in the decompressed stream for gzip input) where the
        /// problem was found.
        offset: u64,
        /// What was wrong.
        msg: String,
    },
    /// A third-party decoder (PNG/JPEG, WAV) rejected the file.
    #[error("{}: cannot decode: {msg}", path.display())]
    Decode {
        /// The file involved.
        path: PathBuf,
        /// The decoder's message.
        msg: String,
    },
    /// A dataset directory does not contain what it should.
    #[error("{}: {msg}", path.display())]
    Missing {
        /// The directory or file that was looked for.
        path: PathBuf,
        /// What is missing.
        msg: String,
    },
    /// A sample index past the end of a dataset.
    #[error("index {index} is out of range for a dataset of {len} samples")]
    Index {
        /// The index asked for.
        index: usize,
        /// The length of the dataset.
        len: usize,
    },
    /// Samples or arguments that do not fit together (bad configuration, batch of samples
    /// with different shapes, a transform applied to a sample it cannot handle...).
    #[error("{0}")]
    Invalid(String),
    /// A downloaded file does not have the expected SHA-256 digest.
    #[error("{}: SHA-256 mismatch: expected {expected}, got {actual}", path.display())]
    Checksum {
        /// The file (or, for an archive checked by content, the archive).
        path: PathBuf,
        /// The expected digest (lower-case hex).
        expected: String,
        /// The digest that was computed.
        actual: String,
    },
    /// An HTTP download failed.
    #[error("download of {url} failed: {msg}")]
    Download {
        /// The address that was fetched.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// A loader was asked for batches of no samples.
    #[error("the batch size must be at least 1")]
    ZeroBatchSize,
    /// A loader worker thread stopped unexpectedly.
    #[error("loader worker: {0}")]
    Worker(String),
    /// An error from the tensor crate (building a batch tensor).
    #[error(transparent)]
    Tensor(#[from] perceiver_tensor::Error),
}

impl DataError {
    /// A [`DataError::Format`] for `path`, naming `field` and `offset`.
    pub fn format(
        path: impl AsRef<Path>,
        field: impl Into<String>,
        offset: u64,
        msg: impl Into<String>,
    ) -> Self {
        DataError::Format {
            path: path.as_ref().to_path_buf(),
            field: field.into(),
            offset,
            msg: msg.into(),
        }
    }

    /// A [`DataError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A [`DataError::Decode`] for `path`.
    pub fn decode(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError::Decode {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// A [`DataError::Missing`] for `path`.
    pub fn missing(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        DataError::Missing {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }

    /// A [`DataError::Invalid`] with a message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        DataError::Invalid(msg.into())
    }
}

impl From<perceiver_io::FileError> for DataError {
    /// An operating-system failure becomes [`DataError::Io`] (same path, same source); every
    /// other refusal is kept as [`DataError::File`].
    fn from(e: perceiver_io::FileError) -> Self {
        match e {
            perceiver_io::FileError::Io { path, source } => DataError::Io { path, source },
            other => DataError::File(other),
        }
    }
}
