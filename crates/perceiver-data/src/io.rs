//! Byte-level helpers shared by the readers: whole-file reads, gzip detection and a bounds-checked
//! cursor whose errors carry the file name, the field and the byte offset.

use crate::error::{DataError, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest decompressed gzip stream accepted (4 GiB); protects against decompression bombs.
pub const MAX_GUNZIP_BYTES: u64 = 4 << 30;

/// The entries of a directory (files and folders), sorted by path, so datasets built from
/// folders have a stable order on every machine.
pub fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        out.push(e.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The sub-folders of `root` with their names, sorted: the classes of a dataset laid out one
/// folder per class.
pub fn class_dirs(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for dir in sorted_dir(root)? {
        if dir.is_dir() {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            out.push((name.unwrap_or_default(), dir));
        }
    }
    Ok(out)
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// True when `bytes` starts with the gzip magic number `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decompresses `bytes` if they are gzip (all members), else returns them unchanged.
///
/// Errors name the compressed byte offset where decoding stopped.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    gunzip(&bytes, path, MAX_GUNZIP_BYTES)
}

/// Decompresses a gzip stream (all members) of at most `limit` decompressed bytes.
pub fn gunzip(bytes: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut decoder = flate2::bufread::MultiGzDecoder::new(bytes);
    // Reserve a plausible size (deflate rarely beats 10:1 on these files) without trusting
    // anything in the stream.
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(6).min(64 << 20));
    let mut limited = (&mut decoder).take(limit.saturating_add(1));
    match limited.read_to_end(&mut out) {
        Ok(_) => {
            if out.len() as u64 > limit {
                return Err(DataError::format(
                    path,
                    "gzip stream",
                    0,
                    format!("decompresses to more than {limit} bytes"),
                ));
            }
            Ok(out)
        }
        Err(e) => {
            let consumed = bytes.len() - decoder.get_ref().len();
            let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "truncated (unexpected end of compressed data)".to_string()
            } else {
                format!("corrupt: {e}")
            };
            Err(DataError::format(
                path,
                "gzip stream",
                consumed as u64,
                format!("{what} after {} decompressed bytes", out.len()),
            ))
        }
    }
}

/// A bounds-checked cursor over a byte slice. Every read names the field it reads, so errors
/// say what was being read and where.
pub struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
    path: &'a Path,
    /// Added to offsets in error messages (e.g. when `data` is a slice of a larger file).
    base: u64,
}

impl<'a> ByteReader<'a> {
    /// A cursor at the start of `data`, which came from `path`.
    pub fn new(data: &'a [u8], path: &'a Path) -> Self {
        ByteReader {
            data,
            pos: 0,
            path,
            base: 0,
        }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Moves to an absolute offset (checked).
    pub fn seek(&mut self, pos: usize, field: &str) -> Result<()> {
        if pos > self.data.len() {
            return Err(self.err_at(
                field,
                self.pos,
                format!(
                    "offset {pos} is past the end of the file ({} bytes)",
                    self.data.len()
                ),
            ));
        }
        self.pos = pos;
        Ok(())
    }

    /// Bytes left after the cursor.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The path used in errors.
    pub fn path(&self) -> &Path {
        self.path
    }

    /// A format error at the current offset.
    pub fn err(&self, field: &str, msg: impl Into<String>) -> DataError {
        self.err_at(field, self.pos, msg)
    }

    /// A format error at `offset`.
    pub fn err_at(&self, field: &str, offset: usize, msg: impl Into<String>) -> DataError {
        DataError::format(self.path, field, self.base + offset as u64, msg)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(
                field,
                format!(
                    "truncated: needs {n} bytes, only {} left (file is {} bytes)",
                    self.remaining(),
                    self.data.len()
                ),
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Fixed-size array read.
    pub fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Little-endian u16.
    pub fn u16_le(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Little-endian u32.
    pub fn u32_le(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Big-endian u32.
    pub fn u32_be(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
}

/// Whitespace-separated ASCII tokens with their byte offsets (for text formats: OFF, ASCII PLY).
pub struct Tokens<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    /// Tokens of `data` starting at `pos`.
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Tokens { data, pos }
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The next token and its offset, or `None` at the end.
    pub fn next_token(&mut self) -> Option<(&'a [u8], usize)> {
        while self.pos < self.data.len() && self.data[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        while self.pos < self.data.len() && !self.data[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        Some((&self.data[start..self.pos], start))
    }
}

/// Parses an ASCII number token, naming the field and offset on failure.
pub fn parse_token<T: std::str::FromStr>(
    tok: &[u8],
    offset: usize,
    path: &Path,
    field: &str,
) -> Result<T> {
    std::str::from_utf8(tok)
        .ok()
        .and_then(|s| s.parse::<T>().ok())
        .ok_or_else(|| {
            DataError::format(
                path,
                field,
                offset as u64,
                format!(
                    "cannot parse {:?} as a number",
                    String::from_utf8_lossy(tok)
                ),
            )
        })
}

/// Lines of a text file with their byte offsets; `#` starts a comment, empty lines are skipped.
pub fn content_lines(data: &[u8]) -> impl Iterator<Item = (&[u8], usize)> {
    let mut offset = 0usize;
    data.split(|&b| b == b'\n').filter_map(move |line| {
        let start = offset;
        offset += line.len() + 1;
        let line = match line.iter().position(|&b| b == b'#') {
            Some(p) => &line[..p],
            None => line,
        };
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            None
        } else {
            Some((line, start))
        }
    })
}
