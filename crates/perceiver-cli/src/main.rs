//! The `perceiver` command-line tool.
//!
//! - `perceiver train`: trains a Perceiver on a dataset (built-in `shapes` by default) with a
//!   progress bar, per-epoch test evaluation, `OUT/metrics.jsonl`, an atomic checkpoint each
//!   epoch (`OUT/checkpoint/`), loss/accuracy curves (`OUT/curves.png`) and exact `--resume`.
//! - `perceiver eval --checkpoint DIR`: test loss and accuracy of a checkpoint.
//! - `perceiver predict --checkpoint DIR FILE...`: top-5 classes of images, WAV clips or meshes.
//! - `perceiver info`: a configuration's parameters and FLOPs.
//!
//! `train` and `eval` end with one JSON object on the last line of standard output. Errors are
//! one line on standard error and a non-zero exit status.

mod error;
mod plot;
mod predict;
mod run;
mod tasks;

/// mimalloc keeps freed memory for reuse (purging is disabled in `main`), so the large buffers a
/// training step frees and reallocates are not page-faulted in again at every step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand};
use error::{CliError, Result};
use perceiver_model::{preset, Perceiver, PerceiverConfig, PRESETS};
use std::path::PathBuf;
use std::process::ExitCode;
use tasks::{AudioKind, DatasetKind, OptimizerKind, ScheduleKind};

const TRAIN_AFTER_HELP: &str = "Task presets (defaults of each --dataset; every flag overrides):
  shared by shapes, mnist, fashion-mnist, fsdd and points: 32x64 latents; 2 blocks of 2
                 self-attention layers (4 heads); a cross-attend with 4 heads (total width 64)
                 in both blocks; LAMB, 20 warm-up steps, cosine, weight decay 0.01, clip 1.0,
                 batch 32; lr 5e-3 on shapes, 2e-3 on mnist and fashion-mnist, 1e-2 on
                 fsdd and points
  shapes         32x32 grey as 4x4 patches (8x8 tokens of 16 values), 12 classes,
                 30,000/2,000 generated; 4 bands; 10 epochs
  mnist          28x28 pixels (784 tokens); 8 bands; random crops (padding 3); 20 epochs
  fashion-mnist  28x28 as 2x2 patches (14x14 tokens of 4 values); latent width 128; 8 bands;
                 horizontal flips; 20 epochs
  fsdd           log-mel 97x40 (or --audio-features raw: 125x64); 16 bands; 30 epochs
  points         1,024 xyz points, 10,000/1,000 generated; 3-D Fourier features; 15 epochs
  cifar10, image-folder, modelnet, video: see docs/RESULTS.md

Data folders: --data-dir, else $PERCEIVER_DATA/<dataset>, else ../shared/data/<dataset>.";

/// Train, evaluate and run Perceiver models.
#[derive(Parser, Debug)]
#[command(name = "perceiver", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model (default: the built-in `shapes` task).
    #[command(after_help = TRAIN_AFTER_HELP)]
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint on the test split.
    Eval(EvalArgs),
    /// Classify files (PNG/JPEG, WAV, OFF/PLY): top-5 classes with probabilities.
    Predict(PredictArgs),
    /// Print a configuration, its parameter count and FLOPs per example.
    Info(InfoArgs),
}

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
    #[arg(long)]
    pub config: Option<PathBuf>,
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
}

/// Options of `perceiver predict`.
#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A training output folder or its checkpoint/ folder.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Files to classify (PNG/JPEG, WAV, OFF/PLY).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Classes to show per file.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
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

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Reads and validates a configuration file.
pub fn read_config(path: &std::path::Path) -> Result<PerceiverConfig> {
    let json = std::fs::read_to_string(path).map_err(|e| error::io(path, e))?;
    PerceiverConfig::from_json(&json).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

fn info(args: &InfoArgs) -> Result<()> {
    let (what, c) = if let Some(name) = &args.preset {
        (format!("preset {name}"), preset(name)?)
    } else if let Some(path) = &args.config {
        (format!("config {}", path.display()), read_config(path)?)
    } else if let Some(dir) = &args.checkpoint {
        let dir = run::checkpoint_dir(dir)?;
        let m = Perceiver::load_checkpoint(&dir)?;
        (format!("checkpoint {}", dir.display()), m.config().clone())
    } else {
        return Err(CliError::new(format!(
            "info needs --preset NAME, --config FILE or --checkpoint DIR (presets: {})",
            PRESETS.join(", ")
        )));
    };
    c.validate()
        .map_err(|e| CliError::new(format!("{what}: {e}")))?;
    let plan = c.sharing_plan();
    let flops = c.flops_per_example();
    println!("{what}");
    println!("configuration:\n{}", c.to_json());
    println!(
        "input: {:?} x {} channels + {} position channels = {} tokens of width {}",
        c.input_axes,
        c.input_channels,
        c.position_channels(),
        c.input_tokens(),
        c.input_width()
    );
    println!(
        "latents: {} x {}; {} blocks, {} cross-attends (parameter sets {:?}), towers of {} self-attention layers (parameter sets {:?})",
        c.num_latents,
        c.latent_dim,
        c.num_blocks,
        c.num_cross_attends,
        plan.cross,
        c.self_per_block,
        plan.towers
    );
    println!("parameters: {}", thousands(c.num_params() as u64));
    let g = |x: u64| {
        let v = x as f64 / 1e9;
        if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.4}")
        }
    };
    println!(
        "forward FLOPs per example: {} ({} GFLOP: matmul {} G, elementwise {} G; a multiply-add counts 2)",
        thousands(flops.total()),
        g(flops.total()),
        g(flops.matmul),
        g(flops.elementwise)
    );
    Ok(())
}

/// Runs `f` on a rayon pool of `n` compute threads (default: one per core).
///
/// The whole command runs *inside* the pool, so the parallel loops of each op are forked from a
/// worker thread (a push onto its own queue, stolen by the other workers) rather than injected
/// from outside the pool with the calling thread blocked on a latch each time: on a training
/// step made of hundreds of small ops that hand-off was a large share of the time.
pub fn in_pool<T: Send>(n: Option<usize>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    if n == Some(0) {
        return Err(CliError::new("--threads must be at least 1"));
    }
    let pool = perceiver_nn::runtime::compute_pool(n)
        .build()
        .map_err(|e| CliError::new(format!("--threads: {e}")))?;
    pool.install(f)
}

fn main() -> ExitCode {
    // mimalloc's `mi_option_purge_delay` (15 in its option enum): -1 never returns freed memory.
    // SAFETY: setting an option is thread-safe and valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    // A bug must still end with one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error{at}: {} (please report it)",
            msg.replace('\n', "; ")
        );
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("error: {first} (see `perceiver --help`)");
            return ExitCode::from(2);
        }
    };
    let result = std::panic::catch_unwind(|| match &cli.command {
        Command::Train(a) => in_pool(a.threads, || run::train(a)),
        Command::Eval(a) => in_pool(a.threads, || run::eval(a)),
        Command::Predict(a) => predict::predict(a),
        Command::Info(a) => info(a),
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(44_912_254), "44,912,254");
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn info_accepts_presets_and_rejects_unknown_ones() {
        let a = |p: &str| InfoArgs {
            preset: Some(p.into()),
            config: None,
            checkpoint: None,
        };
        assert!(info(&a("mnist-small")).is_ok());
        assert!(info(&a("nope")).is_err());
        assert!(info(&InfoArgs {
            preset: None,
            config: None,
            checkpoint: None
        })
        .is_err());
    }

    #[test]
    fn errors_are_one_line() {
        let e = CliError::new("a: 2 problem(s):\n  - x\n  - y");
        assert_eq!(e.to_string(), "a: 2 problem(s):; - x; - y");
    }
}
