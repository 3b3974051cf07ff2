//! safetensors files: named f32 tensors plus string metadata, for checkpoints, optimizer state and
//! the golden fixtures; and a restricted reader of PyTorch's `torch.save` state dicts
//! (`pytorch_model.bin`, see [`load_pytorch_bin`]).
//!
//! # Format
//! ```text
//! [8 bytes: header length n, u64 little-endian]
//! [n bytes: JSON header, padded with spaces to a multiple of 8]
//!     {"__metadata__": {"key": "value", ...},
//!      "<name>": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
//! [data: every tensor's elements, row-major, little-endian, at its offsets in the data section]
//! ```
//!
//! # Design
//! - **Writing is atomic** ([`perceiver_io::write_atomic`]): a temporary `<path>.tmp.<pid>.<n>` in
//!   the same directory, synced to disk, renamed over `path` and the directory synced: a crash leaves either the old file
//!   or the new one, never a torn checkpoint. Reading opens regular files only ([`perceiver_io::read_bounded`]). Tensors are streamed to the file, never copied into
//!   one buffer. Tensors are written in name order, so equal inputs give byte-identical files, which
//!   the `safetensors` crate and Python's `safetensors` read.
//! - **Reading validates everything** before converting: the header length, the JSON, each
//!   tensor's dtype (`F32`, or `F64`, `F16`, `BF16` converted to f32), its shape against its byte range, and that the byte
//!   ranges tile the data section exactly (a truncated file is reported with the first tensor whose
//!   bytes are missing). Errors are [`Error::Format`] naming the file and the tensor;
//!   read and write failures are [`Error::Io`] naming the path.
//! - [`save_params`] / [`load_params`] move a [`ParamStore`] by name; loading checks every name and
//!   shape first and changes nothing unless the file matches the store exactly.
//!
//! ```
//! use perceiver_nn::io::{load_safetensors, save_safetensors};
//! use perceiver_tensor::Tensor;
//! use std::collections::HashMap;
//! let path = std::env::temp_dir().join(format!("io-doc-{}.safetensors", std::process::id()));
//! let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
//! let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
//! save_safetensors(&path, &[("w".to_string(), t)], Some(meta))?;
//! let (tensors, meta) = load_safetensors(&path)?;
//! assert_eq!(tensors[0].0, "w");
//! assert_eq!(tensors[0].1.shape(), &[2, 3]);
//! assert_eq!(meta["epoch"], "3");
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```

mod pickle;
mod torch;

pub use torch::{decode_pytorch_bin, load_pytorch_bin, MAX_PYTORCH_BIN_BYTES};

use crate::ParamStore;
use perceiver_io::FileError;
use perceiver_tensor::{Error, Result, Tensor};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// The header key that holds the string metadata.
pub const METADATA_KEY: &str = "__metadata__";

/// The largest header accepted (the limit of the reference implementation).
const MAX_HEADER: u64 = 100_000_000;

pub(crate) fn format_err(path: &str, msg: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// Builds the padded JSON header for `tensors` (sorted by name) and returns it with the order.
#[track_caller]
fn header(
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<(Vec<u8>, Vec<usize>)> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].0.cmp(&tensors[b].0));
    let mut map = Map::new();
    if let Some(meta) = metadata {
        let meta: Map<String, Value> = meta
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        map.insert(METADATA_KEY.to_string(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for (k, &i) in order.iter().enumerate() {
        let (name, t) = &tensors[i];
        if name == METADATA_KEY {
            return Err(Error::invalid(
                "save_safetensors",
                format!("`{METADATA_KEY}` is reserved and cannot name a tensor"),
            ));
        }
        if k > 0 && tensors[order[k - 1]].0 == *name {
            return Err(Error::invalid(
                "save_safetensors",
                format!("duplicate tensor name `{name}`"),
            ));
        }
        let end = offset + t.numel() * 4;
        map.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": t.shape(), "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut bytes = serde_json::to_vec(&Value::Object(map)).map_err(|e| {
        Error::invalid("save_safetensors", format!("cannot encode the header: {e}"))
    })?;
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    Ok((bytes, order))
}

fn write_file(
    file: &mut File,
    header: &[u8],
    tensors: &[(String, Tensor)],
    order: &[usize],
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(header)?;
    let mut buf = Vec::with_capacity(4 * 8192);
    for &i in order {
        let data = tensors[i].1.contiguous_data();
        for chunk in data.chunks(8192) {
            buf.clear();
            for x in chunk {
                buf.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&buf)?;
        }
    }
    w.flush()
}

/// Writes `tensors` (f32, any layout) and optional string `metadata` to `path` as safetensors,
/// atomically (see the module docs). Names must be unique and not `__metadata__`.
#[track_caller]
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let (header, order) = header(tensors, metadata)?;
    write_atomic(path, |file| write_file(file, &header, tensors, &order))
}

/// [`perceiver_io::write_atomic`] with the error as this crate's [`Error`]: every file the
/// workspace writes (checkpoints, configs, state) goes through it.
#[track_caller]
pub fn write_atomic(
    path: impl AsRef<Path>,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    perceiver_io::write_atomic(path, write).map_err(file_err)
}

/// [`write_atomic`] of a byte buffer.
#[track_caller]
pub fn write_bytes_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    perceiver_io::write_bytes_atomic(path, bytes).map_err(file_err)
}

/// A [`FileError`] as this crate's [`Error::Io`] naming the path.
pub fn file_err(e: FileError) -> Error {
    let path = e.path().display().to_string();
    match e {
        FileError::Io { source, .. } => Error::Io { path, source },
        other => {
            let text = other.to_string();
            let msg = text
                .strip_prefix(&format!("{path}: "))
                .unwrap_or(&text)
                .to_string();
            Error::Io {
                path,
                source: std::io::Error::other(msg),
            }
        }
    }
}

/// Largest safetensors file read (1 TiB: only a guard against absurd sizes; the file's real
/// size is what is allocated).
pub const MAX_SAFETENSORS_BYTES: u64 = 1 << 40;

/// Reads every tensor (in name order) and the metadata (empty when absent) of the safetensors file
/// at `path`. Float tensors of other widths are converted to f32.
pub fn load_safetensors(
    path: impl AsRef<Path>,
) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = perceiver_io::read_bounded(path, MAX_SAFETENSORS_BYTES).map_err(file_err)?;
    decode_safetensors(&bytes, &path.display().to_string())
}

/// The element types read; all are converted to f32 (published checkpoints are not always f32).
/// `I64` holds counters such as BatchNorm's `num_batches_tracked` (values above 2^24 round).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
}

impl Dtype {
    fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F64" => Dtype::F64,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I64" => Dtype::I64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The one little-endian element `b` (exactly [`Dtype::size`] bytes) as f32.
    pub(crate) fn decode_one(self, b: &[u8]) -> f32 {
        match self {
            Dtype::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")),
            Dtype::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            Dtype::F16 => f16_to_f32(u16::from_le_bytes(b.try_into().expect("2 bytes"))),
            Dtype::BF16 => {
                f32::from_bits((u16::from_le_bytes(b.try_into().expect("2 bytes")) as u32) << 16)
            }
            Dtype::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
        }
    }

    /// The little-endian elements of `bytes` (a whole number of elements) as f32.
    pub(crate) fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let half = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
        match self {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|c| f16_to_f32(half(c))).collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| f32::from_bits((half(c) as u32) << 16))
                .collect(),
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                .collect(),
        }
    }
}

/// IEEE half precision to f32 (exact: every half is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if frac == 0 {
            sign << 31
        } else {
            // subnormal: value = frac * 2^-24
            let v = frac as f32 * (1.0 / 16_777_216.0);
            return if sign == 1 { -v } else { v };
        }
    } else if exp == 0x1f {
        (sign << 31) | 0x7f80_0000 | (frac << 13)
    } else {
        (sign << 31) | ((exp + 112) << 23) | (frac << 13)
    };
    f32::from_bits(bits)
}

/// One tensor's entry in the header.
struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

fn parse_entry(src: &str, name: &str, info: &Value) -> Result<Entry> {
    let bad = |what: &str| format_err(src, format!("tensor `{name}`: {what}"));
    let info = info
        .as_object()
        .ok_or_else(|| bad("its header entry is not a JSON object"))?;
    let dtype = info
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no `dtype` string in its header entry"))?;
    let dtype = Dtype::parse(dtype).ok_or_else(|| {
        bad(&format!(
            "dtype {dtype} is not supported (only the float types F32, F64, F16 and BF16 are)"
        ))
    })?;
    // The field `key` as an array of non-negative integers that fit a usize.
    let sizes = |key: &str| {
        info.get(key).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<usize>>>()
        })
    };
    let shape = sizes("shape")
        .ok_or_else(|| bad("no `shape` array of non-negative integers in its header entry"))?;
    let offsets = sizes("data_offsets")
        .filter(|o| o.len() == 2)
        .ok_or_else(|| {
            bad("no `data_offsets` pair of non-negative integers in its header entry")
        })?;
    let (begin, end) = (offsets[0], offsets[1]);
    let nbytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} overflows")))?;
    if end < begin || end - begin != nbytes {
        return Err(bad(&format!(
            "shape {shape:?} needs {nbytes} bytes but data_offsets [{begin}, {end}] span {}",
            end as i128 - begin as i128
        )));
    }
    Ok(Entry {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// Decodes a whole safetensors file held in memory; `src` names it in errors. Float tensors of
/// other widths are converted to f32; tensors are returned in name order with the metadata (empty when absent).
pub fn decode_safetensors(
    bytes: &[u8],
    src: &str,
) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    if bytes.len() < 8 {
        return Err(format_err(
            src,
            format!(
                "not a safetensors file: {} bytes, shorter than the 8-byte header length (truncated?)",
                bytes.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(format_err(
            src,
            format!("header length {n} exceeds the {MAX_HEADER}-byte limit (corrupt or not safetensors)"),
        ));
    }
    let n = n as usize;
    if 8 + n > bytes.len() {
        return Err(format_err(
            src,
            format!(
                "header of {n} bytes does not fit in the file's {} bytes: the file is truncated",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| format_err(src, format!("header is not UTF-8: {e}")))?;
    let header: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| format_err(src, format!("header is not a JSON object: {e}")))?;
    let data = &bytes[8 + n..];

    let mut metadata = HashMap::new();
    let mut entries = Vec::with_capacity(header.len());
    for (name, info) in &header {
        if name == METADATA_KEY {
            let obj = info
                .as_object()
                .ok_or_else(|| format_err(src, format!("`{METADATA_KEY}` is not a JSON object")))?;
            for (k, v) in obj {
                let v = v.as_str().ok_or_else(|| {
                    format_err(src, format!("metadata `{k}` is not a string (got {v})"))
                })?;
                metadata.insert(k.clone(), v.to_string());
            }
            continue;
        }
        entries.push(parse_entry(src, name, info)?);
    }

    // The byte ranges must tile the data section: no gap, no overlap, nothing missing or left.
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut pos = 0usize;
    for e in &entries {
        if e.end > data.len() {
            return Err(format_err(
                src,
                format!(
                    "tensor `{}`: bytes [{}, {}) lie beyond the {} bytes of data: the file is truncated",
                    e.name,
                    e.begin,
                    e.end,
                    data.len()
                ),
            ));
        }
        if e.begin != pos {
            return Err(format_err(
                src,
                format!(
                    "tensor `{}`: data starts at byte {} but the previous tensor ends at {} (gap or overlap)",
                    e.name, e.begin, pos
                ),
            ));
        }
        pos = e.end;
    }
    if pos != data.len() {
        return Err(format_err(
            src,
            format!(
                "{} bytes after the last tensor's data (corrupt header or extra data)",
                data.len() - pos
            ),
        ));
    }

    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let values = e.dtype.decode(&data[e.begin..e.end]);
        let t = Tensor::from_vec(values, &e.shape)
            .map_err(|err| format_err(src, format!("tensor `{}`: {err}", e.name)))?;
        out.push((e.name, t));
    }
    Ok((out, metadata))
}

/// Writes every parameter of `params` under its name, with optional `metadata`.
#[track_caller]
pub fn save_params(
    path: impl AsRef<Path>,
    params: &ParamStore,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    save_safetensors(path, &params.to_named_tensors(), metadata)
}

/// Sets every parameter of `params` from the tensor of the same name in the file at `path`.
///
/// The file must hold exactly the store's names with the store's shapes; otherwise nothing is
/// changed and the [`Error::Format`] lists every missing, unexpected and mis-shaped tensor.
pub fn load_params(path: impl AsRef<Path>, params: &ParamStore) -> Result<()> {
    let path = path.as_ref();
    let (tensors, _) = load_safetensors(path)?;
    let src = path.display().to_string();
    let mut by_name: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    let mut found = Vec::with_capacity(params.len());
    for p in params.iter() {
        let shape = p.shape();
        match by_name.remove(p.name()) {
            None => missing.push(format!("`{}` {:?}", p.name(), shape)),
            Some(t) if t.shape() != shape.as_slice() => misshaped.push(format!(
                "`{}` is {:?} in the file, {:?} in the model",
                p.name(),
                t.shape(),
                shape
            )),
            Some(t) => found.push((p, t)),
        }
    }
    let unexpected: Vec<String> = by_name
        .iter()
        .map(|(n, t)| format!("`{n}` {:?}", t.shape()))
        .collect();
    if !(missing.is_empty() && unexpected.is_empty() && misshaped.is_empty()) {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!("missing from the file: {}", missing.join(", ")));
        }
        if !unexpected.is_empty() {
            parts.push(format!(
                "not parameters of the model: {}",
                unexpected.join(", ")
            ));
        }
        if !misshaped.is_empty() {
            parts.push(format!("wrong shape: {}", misshaped.join(", ")));
        }
        return Err(format_err(
            &src,
            format!(
                "the file does not match the parameters: {}",
                parts.join("; ")
            ),
        ));
    }
    for (p, t) in found {
        p.set(&t)?;
    }
    Ok(())
}
