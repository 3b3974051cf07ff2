//! The model side of a task: the configuration of a preset's body for the data, a preset or
//! file configuration fitted to the data, and the trainer built from [`Hyper`].

use crate::data::DataShape;
use crate::error::{Result, TaskError};
use crate::preset::{Body, Hyper};
use perceiver_data::mix_seed;
use perceiver_model::{
    AttentionConfig, FeedForwardConfig, HeadConfig, LatentInit, Perceiver, PerceiverConfig,
    Trainer, WeightSharing,
};
use perceiver_model::{CONFIG_FILE, WEIGHTS_FILE};
use perceiver_pos::{FourierConfig, PositionEncodingConfig};
use perceiver_tensor::{Rng, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// The model configuration of a task body for data of `shape` with `classes` classes: DeepMind
/// Fourier features of `body.bands` bands (maximum resolution the length of each axis, or 8 on
/// every axis for point clouds, `points`, whose positions are coordinates), latents drawn with
/// standard deviation 1, the paper's weight sharing, and a classifier head with a layer norm.
pub fn body_config(
    body: &Body,
    shape: &DataShape,
    classes: usize,
    points: bool,
) -> PerceiverConfig {
    let max_res: Vec<f32> = if points {
        vec![8.0]
    } else {
        shape.axes.iter().map(|&a| a as f32).collect()
    };
    PerceiverConfig {
        input_channels: shape.channels,
        input_axes: shape.axes.clone(),
        position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
            body.bands, max_res,
        )),
        num_latents: body.latents,
        latent_dim: body.latent_dim,
        // Latents drawn with std 1 (lucidrains' init), not the paper's 0.02: on short budgets
        // the small init learns far more slowly (docs/RESULTS.md: MNIST subset, 9.8% vs 36.8%
        // after 2 epochs on the same model).
        latent_init: LatentInit {
            std: 1.0,
            truncation: Some(3.0),
        },
        cross_attention: AttentionConfig {
            heads: body.cross_heads,
            qk_dim: body.cross_width,
            v_dim: body.cross_width,
        },
        cross_feed_forward: FeedForwardConfig::gelu(body.ff_mult),
        self_attention: AttentionConfig {
            heads: body.self_heads,
            qk_dim: None,
            v_dim: None,
        },
        self_feed_forward: FeedForwardConfig::gelu(body.ff_mult),
        self_per_block: body.per_block,
        num_blocks: body.blocks,
        num_cross_attends: body.cross_attends,
        sharing: WeightSharing::Paper,
        head: HeadConfig::Classifier {
            num_classes: classes,
            layer_norm: true,
        },
        ..PerceiverConfig::default()
    }
}

/// Fits a preset or file configuration to the data: input channels and axes, the number of
/// classes and per-axis Fourier resolutions.
pub fn fit_config(mut c: PerceiverConfig, shape: &DataShape, classes: usize) -> PerceiverConfig {
    c.input_channels = shape.channels;
    if c.input_axes != shape.axes {
        c.input_axes = shape.axes.clone();
        if let PositionEncodingConfig::Fourier(f) = &mut c.position_encoding {
            if f.max_resolution.len() != 1 {
                f.max_resolution = shape.axes.iter().map(|&a| a as f32).collect();
            }
        }
    }
    set_classes(&mut c, classes);
    c
}

/// Gives the head of `c` `classes` outputs.
fn set_classes(c: &mut PerceiverConfig, classes: usize) {
    match &mut c.head {
        HeadConfig::Classifier { num_classes, .. } => *num_classes = classes,
        HeadConfig::Decoder(d) => d.num_outputs = classes,
        HeadConfig::None => {}
    }
}

/// The configuration of the checkpoint in `dir` (our format: `config.json` and
/// `model.safetensors`, as `perceiver convert` or a run's `checkpoint/` holds them) fitted for
/// fine-tuning on data of `shape` with `classes` classes: the input channels must match; the
/// input axes become the data's (a trainable position encoding must already have them); the
/// head gets `classes` outputs. Nothing is allocated, so the caller can check the memory first.
pub fn init_config_from(dir: &Path, shape: &DataShape, classes: usize) -> Result<PerceiverConfig> {
    let bad = |msg: String| TaskError::InitFrom {
        dir: dir.to_path_buf(),
        msg,
    };
    let cpath = dir.join(CONFIG_FILE);
    let text = perceiver_io::read_string_bounded(&cpath, perceiver_io::MAX_JSON_BYTES)
        .map_err(perceiver_model::ModelError::from)?;
    let mut c = PerceiverConfig::from_json(&text)?;
    if c.input_channels != shape.channels {
        return Err(bad(format!(
            "the model takes {} input channels, the data has {}",
            c.input_channels, shape.channels
        )));
    }
    if c.input_axes != shape.axes {
        if let PositionEncodingConfig::Trainable { .. } = c.position_encoding {
            return Err(bad(format!(
                "the model's trainable positions are for inputs {:?}, the data's are {:?} (use --image-size)",
                c.input_axes, shape.axes
            )));
        }
        c.input_axes = shape.axes.clone();
    }
    set_classes(&mut c, classes);
    c.validate()?;
    Ok(c)
}

/// A model to fine-tune from the checkpoint in `dir`, with the configuration
/// [`init_config_from`] gives: every tensor is loaded from the checkpoint except a head whose
/// class count changed, which is initialised afresh from `seed`. Returns the model and the
/// names initialised afresh.
pub fn init_model_from(
    dir: &Path,
    shape: &DataShape,
    classes: usize,
    seed: u64,
) -> Result<(Perceiver, Vec<String>)> {
    init_model_with(dir, init_config_from(dir, shape, classes)?, seed)
}

/// [`init_model_from`] with the configuration already fitted (by [`init_config_from`]).
pub fn init_model_with(
    dir: &Path,
    c: PerceiverConfig,
    seed: u64,
) -> Result<(Perceiver, Vec<String>)> {
    let bad = |msg: String| TaskError::InitFrom {
        dir: dir.to_path_buf(),
        msg,
    };
    let model = Perceiver::new(c, &mut Rng::new(mix_seed(&[seed, 1])))?;
    let wpath = dir.join(WEIGHTS_FILE);
    let (tensors, _) = perceiver_nn::io::load_safetensors(&wpath)?;
    let saved: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut fresh = Vec::new();
    for p in model.params().iter() {
        match saved.get(p.name()) {
            Some(t) if t.shape() == p.shape().as_slice() => p.set(t)?,
            _ if p.name().starts_with("head.fc") || p.name().starts_with("decoder.fc") => {
                fresh.push(p.name().to_string())
            }
            Some(t) => {
                return Err(bad(format!(
                    "`{}` is {:?} in {}, the model needs {:?}",
                    p.name(),
                    t.shape(),
                    wpath.display(),
                    p.shape()
                )))
            }
            None => return Err(bad(format!("{} has no `{}`", wpath.display(), p.name()))),
        }
    }
    Ok((model, fresh))
}

/// A trainer for `model` (already initialised), with the optimizer, schedule and options of
/// `hyper` for a run of `steps_per_epoch * hyper.epochs` steps; the model's state that is not
/// trained ([`Perceiver::state_names`]) is left to the model.
pub fn trainer_for(model: Perceiver, hyper: &Hyper, steps_per_epoch: u64) -> Result<Trainer> {
    let frozen = model.state_names();
    Ok(Trainer::new(
        model,
        hyper.optimizer_freezing(&frozen)?,
        hyper.schedule(hyper.total_steps(steps_per_epoch)?),
        hyper.trainer_config(),
        Rng::new(mix_seed(&[hyper.seed, 2])),
    ))
}

/// A new trainer for a run of `steps_per_epoch * hyper.epochs` steps: `config` is validated,
/// the model initialised from `hyper.seed`, and the optimizer, schedule and options come from
/// `hyper` ([`Hyper::optimizer`], [`Hyper::schedule`], [`Hyper::trainer_config`]).
pub fn new_trainer(
    config: PerceiverConfig,
    hyper: &Hyper,
    steps_per_epoch: u64,
) -> Result<Trainer> {
    config.validate()?;
    let model = Perceiver::new(config, &mut Rng::new(mix_seed(&[hyper.seed, 1])))?;
    trainer_for(model, hyper, steps_per_epoch)
}

/// The trainer saved in `dir` ([`Trainer::save_state`]), continued with the optimizer,
/// schedule and options of `hyper` for a run of `steps_per_epoch * hyper.epochs` steps.
pub fn resume_trainer(dir: &Path, hyper: &Hyper, steps_per_epoch: u64) -> Result<Trainer> {
    // The state that is not trained stays frozen: known from the configuration saved there.
    let cpath = perceiver_model::train::resolve_state_dir(dir).join(CONFIG_FILE);
    let frozen = match perceiver_io::read_string_bounded(&cpath, perceiver_io::MAX_JSON_BYTES) {
        Ok(text) => PerceiverConfig::from_json(&text)
            .map(|c| c.state_names())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let (trainer, _): (Trainer, serde::de::IgnoredAny) = Trainer::load_state(
        dir,
        hyper.optimizer_freezing(&frozen)?,
        hyper.schedule(hyper.total_steps(steps_per_epoch)?),
        hyper.trainer_config(),
    )?;
    Ok(trainer)
}
