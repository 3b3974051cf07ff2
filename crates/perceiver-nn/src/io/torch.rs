//! PyTorch's `torch.save` checkpoints (`pytorch_model.bin`), read without Python: the zip
//! archive, its storages and the state dict, whose pickle the restricted machine of `pickle` interprets.

use super::pickle::{self, Storage, TensorRef};
use super::{file_err, format_err, Dtype};
use perceiver_tensor::{Result, Tensor};
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;
use zip::{CompressionMethod, ZipArchive};

/// Largest `pytorch_model.bin` read (1 TiB: only a guard against absurd sizes; the file's real
/// size is what is allocated).
pub const MAX_PYTORCH_BIN_BYTES: u64 = 1 << 40;

/// The tensors returned total at most this many times the file's size, as f32 bytes.
pub(crate) const MAX_EXPANSION: usize = 8;

/// Reads the state dict saved by `torch.save` at `path` (a `pytorch_model.bin`): its keys and
/// tensors, in the dict's order.
///
/// Every tensor is returned as f32: float32, float16, bfloat16 and float64 storages are converted,
/// and so are int64 ones (such as BatchNorm's `num_batches_tracked`; values beyond 2^24 round).
/// Strided views are materialised row-major. The pickle is interpreted by a restricted reader
/// that executes nothing (see below); errors are [`Error::Format`] naming the file and
/// the entry, opcode or tensor at fault, and read failures [`Error::Io`].
///
/// # Format
/// ```text
/// zip archive, entries stored (uncompressed):
///   <prefix>/data.pkl      the state dict, pickled (protocol 2)
///   <prefix>/data/<key>    one storage per key: its elements, little-endian
///   <prefix>/byteorder     "little" (absent in old files, which are little-endian)
///   <prefix>/version, <prefix>/.format_version, ...   not read
/// ```
/// In the pickle each tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
/// requires_grad, backward_hooks)`, and each storage a persistent id
/// `('storage', torch.FloatStorage, key, location, numel)` naming the entry `data/<key>`.
///
/// # What is refused
/// A pickle is a program, and Python's unpickler runs whatever callables it names. This reader
/// interprets the pickle itself with a restricted machine that knows only the opcodes a state
/// dict uses and an allow-list of names (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
/// `torch._utils._rebuild_parameter` and the storage types `torch.FloatStorage`, `HalfStorage`,
/// `BFloat16Storage`, `DoubleStorage`, `LongStorage`), whose meaning is written here: nothing in
/// the file is ever executed. Any other opcode or name (`os.system`, `builtins.eval`,
/// `torch.storage._load_from_bytes`, ...) is refused with an error naming it and its byte offset.
///
/// Every size is checked before it is used: a storage's `numel` times its element size must be its
/// entry's size, a tensor's offset and strided extent must lie inside its storage (checked
/// arithmetic), the storages read total at most the file's size, and the tensors returned total at
/// most 8 times the file's size as f32 (a storage viewed by several tensors counts once for
/// each). The result must be a dict of string keys and tensors; the `_metadata` attribute
/// PyTorch attaches to a state dict is read and ignored. Compressed entries are refused (PyTorch
/// stores them uncompressed). The legacy (pre-1.6, non-zip) format is not read.
///
/// [`Error::Format`]: perceiver_tensor::Error::Format
/// [`Error::Io`]: perceiver_tensor::Error::Io
pub fn load_pytorch_bin(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>> {
    let path = path.as_ref();
    let bytes = perceiver_io::read_bounded(path, MAX_PYTORCH_BIN_BYTES).map_err(file_err)?;
    decode_pytorch_bin(&bytes, &path.display().to_string())
}

/// Decodes a whole `torch.save` archive held in memory, as [`load_pytorch_bin`] does; `source`
/// names it in errors.
pub fn decode_pytorch_bin(bytes: &[u8], source: &str) -> Result<Vec<(String, Tensor)>> {
    decode(bytes).map_err(|msg| format_err(source, msg))
}

fn decode(bytes: &[u8]) -> std::result::Result<Vec<(String, Tensor)>, String> {
    if bytes.first() == Some(&0x80) {
        return Err(
            "a bare pickle: the legacy torch.save format (before PyTorch 1.6) is not read; \
                    re-save the file with a current PyTorch"
                .into(),
        );
    }
    let mut zip = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a torch.save zip archive: {e}"))?;
    let prefix = archive_prefix(&zip)?;

    let byteorder = format!("{prefix}/byteorder");
    if zip.index_for_name(&byteorder).is_some() {
        let order = read_entry(&mut zip, &byteorder, 64)?;
        if order != b"little" {
            return Err(format!(
                "entry `{byteorder}` says {:?}; only little-endian files are read",
                String::from_utf8_lossy(&order)
            ));
        }
    }
    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = read_entry(&mut zip, &pkl_name, bytes.len())?;

    let mut storages: HashMap<String, Rc<Storage>> = HashMap::new();
    let mut read_total = pkl.len();
    let mut load = |dtype: Dtype,
                    key: &str,
                    numel: u64|
     -> std::result::Result<Rc<Storage>, String> {
        if let Some(s) = storages.get(key) {
            if s.dtype != dtype || s.numel as u64 != numel {
                return Err(format!(
                    "storage `{key}` is named again as {numel} elements of {dtype:?}, first as {} of {:?}",
                    s.numel, s.dtype
                ));
            }
            return Ok(s.clone());
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("storage key {key:?} is not a plain name"));
        }
        let entry = format!("{prefix}/data/{key}");
        let size = zip
            .by_name(&entry)
            .map_err(|e| format!("storage `{key}`: entry `{entry}`: {e}"))?
            .size();
        let want = numel.checked_mul(dtype.size() as u64);
        if want != Some(size) {
            return Err(format!(
                "storage `{key}` claims {numel} elements of {dtype:?} ({} bytes) but entry `{entry}` holds {size} bytes",
                want.map_or("overflowing".to_string(), |w| w.to_string())
            ));
        }
        let limit = bytes.len().saturating_sub(read_total);
        let data = read_entry(&mut zip, &entry, limit)?;
        read_total += data.len();
        let s = Rc::new(Storage {
            dtype,
            key: key.to_string(),
            numel: data.len() / dtype.size(),
            bytes: data,
        });
        storages.insert(key.to_string(), s.clone());
        Ok(s)
    };
    let refs = pickle::load_state_dict(&pkl, &mut load).map_err(|e| format!("{pkl_name}: {e}"))?;

    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION) / 4;
    refs.into_iter()
        .map(|(name, t)| {
            let values =
                materialise(&t, &mut budget).map_err(|e| format!("tensor `{name}`: {e}"))?;
            let tensor =
                Tensor::from_vec(values, &t.size).map_err(|e| format!("tensor `{name}`: {e}"))?;
            Ok((name, tensor))
        })
        .collect()
}

/// The folder holding `data.pkl`: the one top-level name `X` with an entry `X/data.pkl`.
fn archive_prefix(zip: &ZipArchive<Cursor<&[u8]>>) -> std::result::Result<String, String> {
    let mut found = Vec::new();
    for name in zip.file_names() {
        let name = name.map_err(|e| format!("an entry name cannot be read: {e}"))?;
        if let Some(prefix) = name.strip_suffix("/data.pkl") {
            if !prefix.is_empty() && !prefix.contains('/') {
                found.push(prefix.to_string());
            }
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("no `<name>/data.pkl` entry: not a torch.save archive".into()),
        many => Err(format!(
            "{} `<name>/data.pkl` entries ({}): ambiguous archive",
            many.len(),
            many.join(", ")
        )),
    }
}

/// The bytes of the stored (uncompressed) entry `name`, refusing one larger than `limit`.
fn read_entry(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut file = zip
        .by_name(name)
        .map_err(|e| format!("entry `{name}`: {e}"))?;
    if file.compression() != CompressionMethod::Stored {
        return Err(format!(
            "entry `{name}` is compressed ({:?}); only stored entries are read, as torch.save writes them",
            file.compression()
        ));
    }
    let size = file.size();
    if size > limit as u64 {
        return Err(format!(
            "entry `{name}` declares {size} bytes, more than the {limit} bytes it may hold here"
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    (&mut file)
        .take(size)
        .read_to_end(&mut data)
        .map_err(|e| format!("entry `{name}`: {e}"))?;
    if data.len() as u64 != size {
        return Err(format!(
            "entry `{name}`: {} of its {size} bytes could be read (truncated)",
            data.len()
        ));
    }
    Ok(data)
}

/// The view's elements, row-major, as f32; `budget` is the f32 elements still allowed.
fn materialise(t: &TensorRef, budget: &mut usize) -> std::result::Result<Vec<f32>, String> {
    let numel = t
        .size
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= *budget)
        .ok_or_else(|| {
            format!(
                "size {:?}: more elements than all tensors may total ({MAX_EXPANSION} times the file's size as f32)",
                t.size
            )
        })?;
    *budget -= numel;
    let dtype = t.storage.dtype;
    let el = dtype.size();
    let bytes = &t.storage.bytes;
    // Row-major strides from `offset`: the elements are one run of the storage.
    let mut contiguous = true;
    let mut expected = 1usize;
    for (&n, &s) in t.size.iter().zip(&t.stride).rev() {
        if n != 1 && s != expected {
            contiguous = false;
        }
        expected = expected.saturating_mul(n);
    }
    if contiguous || numel == 0 {
        let start = t.offset * el;
        return Ok(dtype.decode(&bytes[start..start + numel * el]));
    }
    // Walk the indices with an odometer; `check_extent` bounded every position reached.
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; t.size.len()];
    let mut pos = t.offset;
    for _ in 0..numel {
        out.push(dtype.decode_one(&bytes[pos * el..(pos + 1) * el]));
        // Wrapping steps: a position past the end is only ever undone, never read.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            pos = pos.wrapping_add(t.stride[d]);
            if idx[d] < t.size[d] {
                break;
            }
            pos = pos.wrapping_sub(t.stride[d].wrapping_mul(t.size[d]));
            idx[d] = 0;
        }
    }
    Ok(out)
}
