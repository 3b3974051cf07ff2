//! Our checkpoint format: a directory with `model.safetensors` (every parameter under its
//! canonical name, f32, shared sets once) and `config.json` (the [`PerceiverConfig`]).
//! Both files are written atomically (temporary file + rename).

use crate::{ModelError, Perceiver, PerceiverConfig, Result};
use perceiver_nn::io::save_safetensors;
use perceiver_nn::io::{load_safetensors as read_safetensors, write_bytes_atomic as write_atomic};
use perceiver_tensor::Rng;
use std::collections::HashMap;
use std::path::Path;

/// File holding the weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File holding the configuration.
pub const CONFIG_FILE: &str = "config.json";
/// Value of the `format` metadata key of our weight files.
pub const FORMAT: &str = "perceiver-rs/1";

impl Perceiver {
    /// Writes `dir/model.safetensors` and `dir/config.json` (creating `dir`).
    pub fn save_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| ModelError::Io {
            path: dir.display().to_string(),
            source: e,
        })?;
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        save_safetensors(
            dir.join(WEIGHTS_FILE),
            &self.params().to_named_tensors(),
            Some(meta),
        )?;
        Ok(write_atomic(
            dir.join(CONFIG_FILE),
            self.config().to_json().as_bytes(),
        )?)
    }

    /// Reads a checkpoint written by [`Perceiver::save_checkpoint`]: validates the
    /// configuration, then every tensor (all missing, unexpected and mis-shaped tensors are
    /// listed in the error).
    pub fn load_checkpoint(dir: impl AsRef<Path>) -> Result<Perceiver> {
        let dir = dir.as_ref();
        let cpath = dir.join(CONFIG_FILE);
        let json = std::fs::read_to_string(&cpath).map_err(|e| ModelError::Io {
            path: cpath.display().to_string(),
            source: e,
        })?;
        let config = PerceiverConfig::from_json(&json).map_err(|e| match e {
            ModelError::Json { msg, .. } => ModelError::Json {
                what: cpath.display().to_string(),
                msg,
            },
            other => other,
        })?;
        let wpath = dir.join(WEIGHTS_FILE);
        let (tensors, _) = read_safetensors(&wpath)?;
        let model = Perceiver::new(config, &mut Rng::new(0))?;
        model.load_named(&tensors, &wpath.display().to_string())?;
        Ok(model)
    }
}
