//! Reading reference safetensors files (f32, f64, f16, bf16 -> f32, with the header metadata;
//! published checkpoints are not always f32, unlike ours) and atomic writes of other files
//! (temporary file + rename). Weights are written by `perceiver_tensor::io::save_safetensors`.

use crate::{ModelError, Result};
use perceiver_tensor::Tensor;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

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

/// Reads every tensor of a safetensors file (sorted by name) and its `__metadata__`.
/// Float dtypes are converted to f32; other dtypes are an error naming the tensor.
pub fn read_safetensors(
    path: impl AsRef<Path>,
) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let fmt = |msg: String| ModelError::Format {
        path: path.display().to_string(),
        msg,
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| fmt(e.to_string()))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fmt(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            other => {
                return Err(fmt(format!(
                    "tensor `{name}` has dtype {other:?}; only float tensors can be read"
                )))
            }
        };
        let t =
            Tensor::from_vec(values, view.shape()).map_err(|e| fmt(format!("`{name}`: {e}")))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((out, metadata))
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| io_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("perceiver-io-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.safetensors");
        let a = Tensor::from_vec(vec![1.0, -2.5, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let s = Tensor::scalar(7.0);
        let mut meta = HashMap::new();
        meta.insert("k".to_string(), "v".to_string());
        perceiver_tensor::io::save_safetensors(
            &p,
            &[("b".into(), s), ("a".into(), a.clone())],
            Some(meta),
        )
        .unwrap();
        let (t, m) = read_safetensors(&p).unwrap();
        assert_eq!(m["k"], "v");
        assert_eq!(t[0].0, "a");
        assert_eq!(t[0].1.to_vec(), a.to_vec());
        assert_eq!(t[1].1.shape(), &[] as &[usize]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
