//! `perceiver predict`: top-k classes of images, WAV clips and meshes.

use crate::args::PredictArgs;
use crate::error::{CliError, Result};
use crate::info::read_config;
use crate::resources::check_memory_for;
use crate::rundir::{check_class_names, checkpoint_dir, RunInfo};
use perceiver_data::audio::{crop_or_pad, read_wav, waveform_patches, AudioFeatures, LogMel};
use perceiver_data::image::folder::decode_image;
use perceiver_data::image::ImageProcessor;
use perceiver_data::image::{sample_from_u8, ImageFolderConfig};
use perceiver_data::points::{normalize_points, read_mesh, sample_surface, Scaling};
use perceiver_data::{collate, Sample, Transform};
use perceiver_model::import::hf::{is_hf_directory, load_hf_directory};
use perceiver_model::train::{predict_proba, read_trainer_state};
use perceiver_model::{Perceiver, PerceiverConfig, CONFIG_FILE};
use perceiver_tasks::{self as tasks, AudioKind, DataSpec};
use perceiver_tensor::{Rng, Tensor};
use serde_json::json;
use std::path::Path;

/// Largest image file read (256 MiB).
const MAX_IMAGE_BYTES: u64 = 256 << 20;

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default()
}

fn load_sample(path: &Path, spec: &DataSpec, c: &PerceiverConfig) -> Result<Sample> {
    let ext = extension(path);
    let trained_on = spec.dataset.name();
    let wrong = |kind: &str| {
        CliError::new(format!(
            "{}: a {kind} file, but the checkpoint was trained on {trained_on}",
            path.display()
        ))
    };
    match ext.as_str() {
        "png" | "jpg" | "jpeg" => {
            if !spec.dataset.is_image() || c.input_axes.len() != 2 {
                return Err(wrong("image"));
            }
            // With patches, the model sees (H/p) x (W/p) tokens of p*p*channels values.
            let p = spec.patch.max(1);
            let (h, w) = (c.input_axes[0] * p, c.input_axes[1] * p);
            let bytes = perceiver_io::read_bounded(path, MAX_IMAGE_BYTES)
                .map_err(|e| CliError::new(e.to_string()))?;
            let cfg = ImageFolderConfig {
                resize: Some(h.min(w) as u32),
                crop: Some((h as u32, w as u32)),
                grayscale: c.input_channels == p * p,
            };
            let (pixels, ph, pw, ch) = decode_image(&bytes, path, &cfg)?;
            Ok(sample_from_u8(&pixels, ph, pw, ch, 0))
        }
        "wav" => {
            if spec.dataset != tasks::DatasetKind::Fsdd {
                return Err(wrong("WAV"));
            }
            let cfg = tasks::fsdd_config(spec);
            let wav = read_wav(path)?;
            let clip = crop_or_pad(&wav.samples, cfg.length, cfg.crop);
            match (&cfg.features, spec.audio) {
                (AudioFeatures::LogMel(m), AudioKind::LogMel) => {
                    if wav.sample_rate != m.sample_rate {
                        return Err(CliError::new(format!(
                            "{}: {} Hz audio, the model expects {} Hz",
                            path.display(),
                            wav.sample_rate,
                            m.sample_rate
                        )));
                    }
                    Ok(LogMel::new(m.clone())?.sample(&clip, 0))
                }
                (AudioFeatures::Waveform { patch }, _) => Ok(waveform_patches(&clip, *patch, 0)?),
                _ => Err(CliError::new(
                    "inconsistent audio settings in the checkpoint",
                )),
            }
        }
        "off" | "ply" => {
            if !spec.dataset.is_points() {
                return Err(wrong("mesh"));
            }
            let mesh = read_mesh(path)?;
            let mut pts = sample_surface(&mesh, spec.num_points, &mut Rng::new(0))?;
            normalize_points(&mut pts, Scaling::UnitSphere);
            Ok(Sample::points(pts.into_iter().flatten().collect(), 0))
        }
        _ => Err(CliError::new(format!(
            "{}: unsupported file type (expected PNG/JPEG, WAV, OFF or PLY)",
            path.display()
        ))),
    }
}

/// `perceiver predict`.
pub fn predict(a: &PredictArgs) -> Result<()> {
    if is_hf_directory(&a.checkpoint) {
        return predict_hf(a);
    }
    let ckpt = checkpoint_dir(&a.checkpoint)?;
    let state = read_trainer_state(&ckpt)?;
    let info: RunInfo = serde_json::from_value(state.extra)
        .map_err(|e| CliError::new(format!("{}: malformed run settings: {e}", ckpt.display())))?;
    check_memory_for(&read_config(&ckpt.join(CONFIG_FILE))?, 1, false, None)?;
    let model = Perceiver::load_checkpoint(&ckpt)?;
    let spec = &info.data;
    let c = model.config().clone();
    check_class_names(&ckpt, &info, &c)?;
    // The model's tokens are patches when the run used them; the transform takes pixels.
    let pp = spec.patch.max(1) * spec.patch.max(1);
    let tf = tasks::eval_transform(spec, c.input_tokens() * pp)?;
    let names = &spec.class_names;
    let mut results = Vec::new();
    for path in &a.files {
        let sample = load_sample(path, spec, &c)?;
        let sample = tf.apply(sample, &mut Rng::new(0))?;
        if sample.tokens() != c.input_tokens() || sample.channels != c.input_channels {
            return Err(CliError::new(format!(
                "{}: gives {} tokens of {} channels, the model takes {} of {}",
                path.display(),
                sample.tokens(),
                sample.channels,
                c.input_tokens(),
                c.input_channels
            )));
        }
        let batch = tasks::model_batch(collate(vec![sample], vec![0])?);
        let probs = predict_proba(&model, &batch)?.to_vec();
        results.push(report_file(path, &probs, names, a)?);
    }
    if !a.json {
        println!("{}", json!({"command": "predict", "predictions": results}));
    }
    Ok(())
}

/// Prints the top classes of one file (lines for a person, or one JSON object with `--json`)
/// and returns that object. Non-finite probabilities are an error naming the file.
fn report_file(
    path: &Path,
    probs: &[f32],
    names: &[String],
    a: &PredictArgs,
) -> Result<serde_json::Value> {
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        return Err(CliError::new(format!(
            "{}: the model gives a non-finite probability for class {i} (non-finite input or weights)",
            path.display()
        )));
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&i, &j| probs[j].total_cmp(&probs[i]));
    if !a.json {
        println!("{}", path.display());
    }
    let mut top = Vec::new();
    for &k in order.iter().take(a.top.max(1)) {
        let name = names.get(k).cloned().unwrap_or_else(|| k.to_string());
        if !a.json {
            println!("  {:>6.2}%  {name}", 100.0 * probs[k]);
        }
        top.push(json!({"label": name, "index": k, "probability": probs[k]}));
    }
    let v = json!({"file": path.display().to_string(), "top": top});
    if a.json {
        println!("{v}");
    }
    Ok(v)
}

/// `perceiver predict` with a Hugging Face checkpoint directory: each image is prepared by
/// the directory's image processor (`preprocessor_config.json`; the published defaults
/// without it) and classified; classes are named by `id2label`.
fn predict_hf(a: &PredictArgs) -> Result<()> {
    let dir = &a.checkpoint;
    let hf = load_hf_directory(dir)?;
    let ppath = dir.join("preprocessor_config.json");
    let processor = match perceiver_io::read_string_bounded(&ppath, perceiver_io::MAX_JSON_BYTES) {
        Ok(text) => ImageProcessor::from_json(&text, &ppath)?,
        Err(e) if e.is_not_found() => ImageProcessor::default(),
        Err(e) => return Err(CliError::new(e.to_string())),
    };
    let mut results = Vec::new();
    for path in &a.files {
        let (pixels, h, w) = processor.process_file(path)?;
        let x = Tensor::from_vec(pixels, &[1, h, w, 3])?;
        let logits = hf.model.forward(&x, None)?.logits;
        let probs = logits.softmax(1)?.to_vec();
        results.push(report_file(path, &probs, &hf.labels, a)?);
    }
    if !a.json {
        println!("{}", json!({"command": "predict", "predictions": results}));
    }
    Ok(())
}
