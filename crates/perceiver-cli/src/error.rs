//! The CLI's error: one line of text for standard error.

use std::fmt;

/// An error shown to the user as one line.
#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        CliError(msg.into())
    }

    /// The message on one line (newlines and indentation collapsed into `; `).
    pub fn one_line(&self) -> String {
        let parts: Vec<&str> = self
            .0
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        parts.join("; ")
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.one_line())
    }
}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError(e.to_string())
            }
        }
    )*};
}

from_error!(
    perceiver_data::DataError,
    perceiver_model::ModelError,
    perceiver_model::train::TrainError,
    perceiver_tensor::Error,
    serde_json::Error
);

/// Result alias.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub fn io(path: &std::path::Path, e: std::io::Error) -> CliError {
    CliError(format!("{}: {e}", path.display()))
}
