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

/// Largest archive read whole (IDX files, CIFAR-10 batches): 4 GiB.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;

/// Largest single-sample media file read (WAV, PNG, JPEG): 256 MiB.
pub const MAX_MEDIA_BYTES: u64 = 256 << 20;

/// Largest mesh file read (PLY, OFF): 1 GiB.
pub const MAX_MESH_BYTES: u64 = 1 << 30;

/// Largest small text file read (class-name lists): 1 MiB.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

/// Extra bytes a gzip stream is inflated past the size its content declares, to tell "exactly
/// the declared size" from "more than declared" without inflating the rest.
pub const GUNZIP_SLACK: u64 = 64;

/// Reads a whole regular file of at most `limit` bytes (one of the `MAX_*_BYTES` constants of
/// this module) through [`perceiver_io::read_bounded`]: a FIFO, a device (also behind a
/// symlink), a socket or a directory is refused by name without blocking, and a larger file is
/// refused before it is read. Errors name the file.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    Ok(perceiver_io::read_bounded(path, limit)?)
}

/// True when `bytes` starts with the gzip magic number `1f 8b`.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Decompresses `bytes` if they are gzip (all members, at most [`MAX_GUNZIP_BYTES`]), else
/// returns them unchanged.
///
/// Errors name the compressed byte offset where decoding stopped.
pub fn maybe_gunzip(bytes: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(&bytes) {
        return Ok(bytes);
    }
    gunzip(&bytes, path, MAX_GUNZIP_BYTES)
}

/// Decompresses a gzip stream (all members) of at most `limit` decompressed bytes; the stream
/// is inflated no further than `limit + 1` bytes.
pub fn gunzip(bytes: &[u8], path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut gz = GzStream::new(bytes, path);
    gz.fill(limit.saturating_add(1))?;
    if gz.len() > limit {
        return Err(DataError::format(
            path,
            "gzip stream",
            0,
            format!("decompresses to more than {limit} bytes"),
        ));
    }
    Ok(gz.into_bytes())
}

/// A gzip stream (all members) inflated step by step, so a reader can look at a header before
/// deciding how much more to inflate.
pub struct GzStream<'a> {
    decoder: flate2::bufread::MultiGzDecoder<&'a [u8]>,
    compressed: usize,
    path: &'a Path,
    out: Vec<u8>,
}

impl<'a> GzStream<'a> {
    /// A stream over the compressed `bytes` of `path` (used in errors); nothing is inflated yet.
    pub fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        GzStream {
            decoder: flate2::bufread::MultiGzDecoder::new(bytes),
            compressed: bytes.len(),
            path,
            out: Vec::new(),
        }
    }

    /// Inflates until `upto` bytes are out or the stream ends; returns everything out so far.
    /// Errors name the compressed offset where decoding stopped.
    pub fn fill(&mut self, upto: u64) -> Result<&[u8]> {
        let have = self.out.len() as u64;
        if upto > have {
            // Grow with the data rather than trusting `upto` (it may come from a header).
            let hint = (upto - have)
                .min(self.compressed.saturating_mul(6) as u64)
                .min(64 << 20);
            let _ = self.out.try_reserve(hint as usize);
            let mut limited = (&mut self.decoder).take(upto - have);
            if let Err(e) = limited.read_to_end(&mut self.out) {
                let consumed = self.compressed - self.decoder.get_ref().len();
                let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "truncated (unexpected end of compressed data)".to_string()
                } else {
                    format!("corrupt: {e}")
                };
                return Err(DataError::format(
                    self.path,
                    "gzip stream",
                    consumed as u64,
                    format!("{what} after {} decompressed bytes", self.out.len()),
                ));
            }
        }
        Ok(&self.out)
    }

    /// Bytes inflated so far.
    pub fn len(&self) -> u64 {
        self.out.len() as u64
    }

    /// True when nothing has been inflated yet.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// The bytes inflated so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
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
        let s = &self.data[self.pos..][..n];
        self.pos += n;
        Ok(s)
    }

    /// The `n` bytes at `offset`, without moving the cursor.
    pub fn take_at(&self, offset: usize, n: usize, field: &str) -> Result<&'a [u8]> {
        match offset.checked_add(n) {
            Some(end) if end <= self.data.len() => Ok(&self.data[offset..end]),
            _ => Err(self.err_at(
                field,
                offset,
                format!(
                    "truncated: needs {n} bytes at offset {offset}, file is {} bytes",
                    self.data.len()
                ),
            )),
        }
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
