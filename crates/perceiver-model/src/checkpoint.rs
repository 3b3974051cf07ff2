//! Our checkpoint format: a directory with `model.safetensors` (every parameter under its
//! canonical name, f32, shared sets once) and `config.json` (the [`PerceiverConfig`]).
//! Both files are written atomically (temporary file + rename).

use crate::{ModelError, Perceiver, PerceiverConfig, Result};
use perceiver_io::{read_bounded, read_string_bounded, MAX_JSON_BYTES};
use perceiver_nn::io::{
    decode_safetensors, save_safetensors, write_bytes_atomic as write_atomic, MAX_SAFETENSORS_BYTES,
};
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
    /// configuration, checks that the weight file is large enough for the parameters it
    /// describes (4 bytes each) before allocating the model, then loads every tensor (all
    /// missing, unexpected and mis-shaped tensors are listed in the error).
    ///
    /// Both files are read through `perceiver_io`: a FIFO, a device or a directory in their
    /// place is refused at once with an error naming it, and `config.json` is read up to
    /// `perceiver_io::MAX_JSON_BYTES`.
    pub fn load_checkpoint(dir: impl AsRef<Path>) -> Result<Perceiver> {
        let dir = dir.as_ref();
        let cpath = dir.join(CONFIG_FILE);
        let json = read_string_bounded(&cpath, MAX_JSON_BYTES)?;
        let config = PerceiverConfig::from_json(&json).map_err(|e| match e {
            ModelError::Json { msg, .. } => ModelError::Json {
                what: cpath.display().to_string(),
                msg,
            },
            other => other,
        })?;
        let wpath = dir.join(WEIGHTS_FILE);
        let bytes = read_bounded(&wpath, MAX_SAFETENSORS_BYTES)?;
        check_weights_size(&config, &cpath, &wpath, bytes.len() as u64)?;
        let (tensors, _) = decode_safetensors(&bytes, &wpath.display().to_string())?;
        drop(bytes);
        let model = Perceiver::new(config, &mut Rng::new(0))?;
        model.load_named(&tensors, &wpath.display().to_string())?;
        Ok(model)
    }
}

/// The configuration fields behind a parameter's shape, by its canonical name.
fn fields_of(name: &str) -> &'static str {
    match name.split('.').next().unwrap_or("") {
        "latents" => "num_latents × latent_dim",
        "pos" => "input_axes × position_encoding",
        "cross" => "latent_dim, input width and cross_feed_forward.multiplier",
        "self" => "latent_dim, self_attention and self_feed_forward.multiplier",
        "head" => "head.num_classes × latent_dim",
        "decoder" => "head.query, head.num_outputs and the decoder widths",
        _ => "the model's sizes",
    }
}

/// Refuses a configuration whose parameters (4 bytes each, as our format stores them) need
/// more bytes than `wpath` holds, naming `config.json`, the largest tensor and its fields,
/// without allocating anything.
fn check_weights_size(
    config: &PerceiverConfig,
    cpath: &Path,
    wpath: &Path,
    size: u64,
) -> Result<()> {
    let as_json = |e: ModelError| ModelError::Json {
        what: cpath.display().to_string(),
        msg: e.to_string(),
    };
    let params = config.try_num_params().map_err(as_json)?;
    let need = params.checked_mul(4);
    if need.is_some_and(|n| n <= size.saturating_sub(8)) {
        return Ok(());
    }
    let shapes = config.grouped_shapes(false);
    let largest = shapes
        .iter()
        .max_by_key(|(_, _, s)| s.iter().try_fold(1u64, |a, &x| a.checked_mul(x as u64)));
    let (name, shape) = largest.map_or(("", &[][..]), |(_, n, s)| (n.as_str(), s.as_slice()));
    Err(ModelError::Json {
        what: cpath.display().to_string(),
        msg: format!(
            "describes {params} parameters ({} bytes as f32) but {} holds only {size} bytes; \
             the largest is `{name}` {shape:?} ({})",
            need.map_or("more than 2^64".to_string(), |n| n.to_string()),
            wpath.display(),
            fields_of(name)
        ),
    })
}
