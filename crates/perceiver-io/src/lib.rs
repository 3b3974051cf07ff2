//! Safe file access for every reader and writer of the workspace.
//!
//! A file named by a user or found in a checkpoint may be anything: a FIFO that never ends, a
//! symlink to `/dev/zero`, a file far larger than its header says, a symlink planted where the
//! tool writes. The functions here decide before any work starts:
//!
//! - **Reading** ([`open_regular`], [`read_bounded`], [`read_string_bounded`]): only regular
//!   files (after following symlinks) are opened; FIFOs, devices, sockets and directories are
//!   refused by name, without blocking (a FIFO is opened non-blocking and checked before any
//!   read). A read never takes more than a stated limit, and reads exactly the size the file had
//!   when it was opened.
//! - **Writing** ([`write_atomic`], [`write_bytes_atomic`]): a new temporary file in the same
//!   directory, synced, renamed over the target and the directory synced: a crash leaves the old
//!   file or the new one, and a symlink at the target is replaced, never written through.
//! - **Appending** ([`append_no_follow`]): opens an existing regular file for appending and
//!   refuses a symlink.
//! - **Removing** ([`remove_owned_dir`], [`check_owned_dir`]): removes a directory only if it
//!   holds nothing but the named files the caller wrote; anything else is left in place and
//!   reported.
//!
//! ```
//! use perceiver_io::{read_bounded, write_bytes_atomic, FileError};
//! let dir = std::env::temp_dir().join(format!("perceiver-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("a.txt");
//! write_bytes_atomic(&path, b"hello")?;
//! assert_eq!(read_bounded(&path, 1024)?, b"hello");
//! assert!(matches!(read_bounded(&path, 3), Err(FileError::TooLarge { .. })));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), FileError>(())
//! ```

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What went wrong with a file; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused or failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a socket, a directory...).
    #[error("{}: is {kind}, not a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a FIFO", "a character device"...).
        kind: &'static str,
    },
    /// The path is a symlink where the tool only writes its own files.
    #[error("{}: is a symbolic link; refusing to write through it", path.display())]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than the reader accepts.
    #[error("{}: {size} bytes, more than the {limit} bytes accepted", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file changed size while it was read.
    #[error("{}: changed while it was read ({expected} bytes expected)", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// The size when it was opened.
        expected: u64,
    },
    /// A directory to remove holds entries the caller did not write.
    #[error("{}: holds entries this tool did not write ({}); left in place", path.display(), entries.join(", "))]
    Foreign {
        /// The directory.
        path: PathBuf,
        /// The foreign entries' names.
        entries: Vec<String>,
    },
}

impl FileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            FileError::Io { path, .. }
            | FileError::NotRegular { path, .. }
            | FileError::Symlink { path }
            | FileError::TooLarge { path, .. }
            | FileError::Changed { path, .. }
            | FileError::Foreign { path, .. } => path,
        }
    }

    /// An [`FileError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> FileError {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Result alias of this crate.
pub type Result<T, E = FileError> = std::result::Result<T, E>;

/// What a file type is, in words ("a FIFO", "a directory"...).
pub fn kind_name(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// [`FileError::NotRegular`] unless `meta` (of `path`) is a regular file's.
fn require_regular(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    if meta.is_file() {
        Ok(())
    } else {
        Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_name(meta.file_type()),
        })
    }
}

/// Opens a regular file for reading (symlinks followed); anything else is
/// [`FileError::NotRegular`]. Never blocks on a FIFO.
pub fn open_regular(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| FileError::io(path, e))?;
    require_regular(path, &meta)?;
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The path may have been swapped for a FIFO since the check: opening it non-blocking
        // returns at once, and the check below refuses it.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    require_regular(path, &meta)?;
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_bounded(path: impl AsRef<Path>, limit: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let file = open_regular(path)?;
    let size = file.metadata().map_err(|e| FileError::io(path, e))?.len();
    if size > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    let mut out = Vec::new();
    out.try_reserve_exact(size as usize)
        .map_err(|_| FileError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: 0,
        })?;
    file.take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| FileError::io(path, e))?;
    if out.len() as u64 != size {
        return Err(FileError::Changed {
            path: path.to_path_buf(),
            expected: size,
        });
    }
    Ok(out)
}

/// Reads a whole regular UTF-8 text file of at most `limit` bytes.
pub fn read_string_bounded(path: impl AsRef<Path>, limit: u64) -> Result<String> {
    let path = path.as_ref();
    let bytes = read_bounded(path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        FileError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
        )
    })
}

/// Largest configuration or state file (JSON) read: 16 MiB.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// `<path>.tmp.<pid>.<n>`: unique per process and call, so two writers of one path never
/// write into each other's temporary file.
pub fn tmp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(format!(".tmp.{}.{n}", std::process::id()));
    PathBuf::from(s)
}

/// Syncs the directory holding `path` so a rename in it is durable (best effort: not every
/// platform can open a directory).
pub fn sync_parent(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes a file through `write` atomically: into a new temporary `<path>.tmp.<pid>.<n>` in
/// the same directory (created exclusively, so nothing existing is written through), synced
/// to disk, renamed over `path` (replacing a symlink there rather than following it), and the
/// directory synced, so a crash leaves either the old file or the new one. On failure the
/// temporary file is removed and the error names the path.
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: "a directory",
        });
    }
    let tmp = tmp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| FileError::io(&tmp, e))?;
    let written = write(&mut file).and_then(|_| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::io(&tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(FileError::io(path, e));
    }
    sync_parent(path);
    Ok(())
}

/// [`write_atomic`] of a byte buffer.
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |f| f.write_all(bytes))
}

/// Opens an existing regular file for appending; a symlink (or anything but a regular file)
/// at `path` is refused.
pub fn append_no_follow(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    let meta = std::fs::symlink_metadata(path).map_err(|e| FileError::io(path, e))?;
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink {
            path: path.to_path_buf(),
        });
    }
    require_regular(path, &meta)?;
    let mut opts = OpenOptions::new();
    opts.append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| FileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| FileError::io(path, e))?;
    require_regular(path, &meta)?;
    Ok(file)
}

/// Whether the directory `dir` exists, checking that it holds only regular files named in
/// `owned` (and temporary files of [`write_atomic`] for them): returns their paths, `None` for
/// a missing `dir`, and [`FileError::Foreign`] (anything else in it, or something other than a
/// directory at `dir`) or [`FileError::Symlink`] otherwise. Changes nothing.
pub fn check_owned_dir(dir: impl AsRef<Path>, owned: &[&str]) -> Result<Option<Vec<PathBuf>>> {
    let dir = dir.as_ref();
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::io(dir, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(FileError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !meta.is_dir() {
        return Err(FileError::Foreign {
            path: dir.to_path_buf(),
            entries: vec![format!(
                "{} instead of a directory",
                kind_name(meta.file_type())
            )],
        });
    }
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| FileError::io(dir, e))? {
        let e = e.map_err(|e| FileError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        let known = owned.iter().any(|o| {
            name == *o
                || name
                    .strip_prefix(o)
                    .is_some_and(|rest| rest.starts_with(".tmp."))
        });
        if known && is_file {
            ours.push(e.path());
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Err(FileError::Foreign {
            path: dir.to_path_buf(),
            entries: foreign,
        });
    }
    Ok(Some(ours))
}

/// Removes the directory `dir` if [`check_owned_dir`] accepts it (nothing but the named files
/// the caller wrote); removes nothing and returns its error otherwise. A missing `dir` is not
/// an error.
pub fn remove_owned_dir(dir: impl AsRef<Path>, owned: &[&str]) -> Result<()> {
    let dir = dir.as_ref();
    let Some(ours) = check_owned_dir(dir, owned)? else {
        return Ok(());
    };
    for p in ours {
        std::fs::remove_file(&p).map_err(|e| FileError::io(&p, e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| FileError::io(dir, e))
}

#[cfg(test)]
mod tests;
