//! The output folder of `perceiver train` belongs to the tool alone.
//!
//! - A new run takes a folder that does not exist (created) or is empty. A folder holding a
//!   run (recognised by the marker file [`MARKER`] the tool writes first) is refused with a
//!   pointer to `--resume`; any other non-empty folder is refused.
//! - The tool writes only its own names in it ([`OWNED`] and the checkpoint folders), every
//!   file through a temporary file renamed over the target (a symlink there is replaced, never
//!   followed), and removes only files it wrote.
//! - A new run that fails before its first checkpoint removes what it created, so the folder is
//!   as it was.

use crate::error::{io, CliError, Result};
use crate::rundir::{CHECKPOINT, CURVES, METRICS};
use perceiver_io::{write_bytes_atomic, FileError};
use std::path::{Path, PathBuf};

/// The marker file that identifies a run folder.
pub const MARKER: &str = ".perceiver-run";

/// The files (not folders) the tool may create directly in a run folder.
pub const OWNED: &[&str] = &[MARKER, METRICS, CURVES];

/// A claimed output folder.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    /// The folder did not exist and was created by this run.
    created: bool,
    /// The files this run created (removed again by [`OutDir::abandon`]).
    new_files: Vec<PathBuf>,
}

fn file_error(e: FileError) -> CliError {
    CliError::new(e.to_string())
}

fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let e = e.map_err(|e| io(dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// Whether `dir` holds a checkpoint written by the tool.
fn holds_checkpoint(dir: &Path) -> bool {
    ["", ".old", ".new"].iter().any(|suffix| {
        let p = dir.join(format!("{CHECKPOINT}{suffix}"));
        std::fs::symlink_metadata(&p).is_ok()
    })
}

impl OutDir {
    /// Claims `path` for a new run: creates it, or accepts it empty (or holding only the
    /// marker and files of a run that stopped before its first checkpoint); refuses anything
    /// else with a message saying what to do.
    pub fn claim_new(path: &Path) -> Result<OutDir> {
        let shown = path.display();
        let created = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(path).map_err(|e| io(path, e))?;
                true
            }
            Err(e) => return Err(io(path, e)),
            Ok(m) if !m.is_dir() => {
                return Err(CliError::new(format!(
                    "--out {shown}: is {}, not a directory",
                    perceiver_io::kind_name(m.file_type())
                )))
            }
            Ok(_) => {
                let names = entries(path)?;
                let marked = names.iter().any(|n| n == MARKER);
                if marked && holds_checkpoint(path) {
                    return Err(CliError::new(format!(
                        "--out {shown}: holds a perceiver run; continue it with `--resume {shown}` or choose a new --out"
                    )));
                }
                let ours = marked && names.iter().all(|n| OWNED.contains(&n.as_str()));
                if !names.is_empty() && !ours {
                    let mut listed: Vec<&str> = names.iter().map(String::as_str).take(3).collect();
                    if names.len() > 3 {
                        listed.push("...");
                    }
                    return Err(CliError::new(format!(
                        "--out {shown}: not empty ({}); train writes into a new or empty directory",
                        listed.join(", ")
                    )));
                }
                false
            }
        };
        let mut dir = OutDir {
            path: path.to_path_buf(),
            created,
            new_files: Vec::new(),
        };
        dir.mark()?;
        Ok(dir)
    }

    /// Claims the folder of a run being resumed (it holds a checkpoint): marks it if it has
    /// no marker yet.
    pub fn claim_resumed(path: &Path) -> Result<OutDir> {
        let mut dir = OutDir {
            path: path.to_path_buf(),
            created: false,
            new_files: Vec::new(),
        };
        if std::fs::symlink_metadata(path.join(MARKER)).is_err() {
            dir.mark()?;
        }
        Ok(dir)
    }

    fn mark(&mut self) -> Result<()> {
        let marker = self.path.join(MARKER);
        let existed = std::fs::symlink_metadata(&marker).is_ok();
        let text = format!(
            "{{\"tool\": \"perceiver\", \"version\": \"{}\"}}\n",
            env!("CARGO_PKG_VERSION")
        );
        write_bytes_atomic(&marker, text.as_bytes()).map_err(file_error)?;
        if !existed {
            self.new_files.push(marker);
        }
        Ok(())
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that this run created `file` in the folder.
    pub fn created_file(&mut self, file: PathBuf) {
        self.new_files.push(file);
    }

    /// Undoes a new run that failed before its first checkpoint: removes the files it created
    /// and the folder if it created it and it is empty again. Best effort; never touches
    /// anything else.
    pub fn abandon(self) {
        for f in self.new_files.iter().rev() {
            if std::fs::symlink_metadata(f).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(f);
            }
        }
        if self.created {
            // Fails, as it should, unless the folder is empty.
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}
