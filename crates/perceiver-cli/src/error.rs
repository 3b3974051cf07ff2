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

/// The library's neutral messages, in the words of the command line (its flags and
/// variables).
impl From<perceiver_tasks::TaskError> for CliError {
    fn from(e: perceiver_tasks::TaskError) -> Self {
        use perceiver_tasks::TaskError;
        CliError(match e {
            TaskError::Open { .. } => format!("{e} (set --data-dir or PERCEIVER_DATA)"),
            TaskError::NeedsDataDir(kind) => format!("--dataset {kind} needs --data-dir DIR"),
            TaskError::Patch { patch, axes } => format!(
                "--patch {patch} needs images whose sides are multiples of {patch}, got {axes:?}"
            ),
            TaskError::PermutedPatches => {
                "--patch applies to image datasets without --permute-pixels".into()
            }
            TaskError::Hyper { field, rule } => {
                let off = if field == "clip_norm" {
                    " (0 turns it off)"
                } else {
                    ""
                };
                format!("--{} {rule}{off}", field.replace('_', "-"))
            }
            other => other.to_string(),
        })
    }
}

/// Result alias.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Attaches a path to an I/O error.
pub fn io(path: &std::path::Path, e: std::io::Error) -> CliError {
    CliError(format!("{}: {e}", path.display()))
}
