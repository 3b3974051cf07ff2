//! The options of each command.

use perceiver_tasks::{AudioKind, DatasetKind, OptimizerKind, ScheduleKind};
use std::path::PathBuf;

use clap::Args;

/// Options of `perceiver train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Dataset.
    #[arg(long, value_enum, default_value = "shapes")]
    pub dataset: DatasetKind,
    /// Folder of a file dataset (default: $PERCEIVER_DATA/DATASET or ../shared/data/DATASET).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A named model configuration instead of the task preset's model (see `perceiver info`).
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    /// A model configuration file (JSON) instead of the task preset's model.
    #[arg(long, conflicts_with = "init_from")]
    pub config: Option<PathBuf>,
    /// Fine-tune the model of this checkpoint (our format: `perceiver convert` output or a
    /// run's checkpoint/): its weights, a new head when the class count differs.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["preset", "latents", "latent_dim", "bands", "depth"]
    )]
    pub init_from: Option<PathBuf>,
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Learning-rate schedule.
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Linear warm-up steps.
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Label smoothing of the loss.
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Clip the global gradient norm (0: no clipping).
    #[arg(long)]
    pub clip_norm: Option<f32>,
    /// Permute the pixels with this seed (one fixed permutation; positions move with pixels).
    #[arg(long, value_name = "SEED")]
    pub permute_pixels: Option<u64>,
    /// Audio front end (fsdd).
    #[arg(long, value_enum)]
    pub audio_features: Option<AudioKind>,
    /// Latents (overrides the task preset).
    #[arg(long)]
    pub latents: Option<usize>,
    /// Latent width (overrides the task preset).
    #[arg(long)]
    pub latent_dim: Option<usize>,
    /// Fourier bands per axis (overrides the task preset).
    #[arg(long)]
    pub bands: Option<usize>,
    /// Self-attention layers per block (overrides the task preset).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Training examples (procedural datasets generate this many; file datasets use an evenly
    /// spaced subset).
    #[arg(long)]
    pub train_size: Option<usize>,
    /// Test examples (as --train-size).
    #[arg(long)]
    pub test_size: Option<usize>,
    /// Image side for shapes and image folders (default 32).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Feed images as PxP patches (space-to-depth) instead of pixels.
    #[arg(long, value_name = "P")]
    pub patch: Option<usize>,
    /// Data augmentation: random crops (shapes, MNIST), horizontal flips (Fashion-MNIST), both
    /// (CIFAR-10, image folders); rotation/scale/jitter for points.
    #[arg(long)]
    pub augment: Option<bool>,
    /// Seed of the initialisation, shuffling, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output folder (metrics.jsonl, checkpoint/, curves.png).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this folder (its settings are reused; --epochs may extend it).
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Stop after this many epochs in this invocation (the run can be resumed).
    #[arg(long, value_name = "EPOCHS")]
    pub stop_after: Option<u64>,
    /// Write a training-loss line to metrics.jsonl every N steps (default 10).
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Memory budget (e.g. 8G); default: the memory the system has available.
    #[arg(long, value_name = "SIZE", value_parser = crate::resources::parse_bytes)]
    pub max_memory: Option<u64>,
}

/// Options of `perceiver eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A training output folder or its checkpoint/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset (default: the one the checkpoint was trained on).
    #[arg(long, value_enum)]
    pub dataset: Option<DatasetKind>,
    /// Folder of a file dataset.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Test examples (default: the checkpoint's).
    #[arg(long)]
    pub test_size: Option<usize>,
    /// Compute threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory budget (e.g. 8G); default: the memory the system has available.
    #[arg(long, value_name = "SIZE", value_parser = crate::resources::parse_bytes)]
    pub max_memory: Option<u64>,
}

/// Options of `perceiver predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A training output folder or its checkpoint/ folder, or a Hugging Face Perceiver
    /// directory (config.json, pytorch_model.bin or model.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Files to classify (PNG/JPEG, WAV, OFF/PLY).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Classes to show per file.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// One JSON object per file (`{"file", "top": [{"label", "index", "probability"}]}`)
    /// instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Options of `perceiver convert`.
#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// A Hugging Face Perceiver directory (config.json, pytorch_model.bin or model.safetensors).
    pub from: PathBuf,
    /// The new checkpoint folder (config.json, model.safetensors); must not exist or be empty.
    pub out: PathBuf,
}

/// Options of `perceiver info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A named configuration.
    #[arg(long, conflicts_with_all = ["config", "checkpoint"])]
    pub preset: Option<String>,
    /// A configuration file (JSON).
    #[arg(long, conflicts_with = "checkpoint")]
    pub config: Option<PathBuf>,
    /// A checkpoint (training output folder or checkpoint/ folder).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}
