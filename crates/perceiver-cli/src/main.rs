//! The `perceiver` command-line tool.
//!
//! - `perceiver train`: trains a Perceiver on a dataset (built-in `shapes` by default) with a
//!   progress bar, per-epoch test evaluation, `OUT/metrics.jsonl`, an atomic checkpoint each
//!   epoch (`OUT/checkpoint/`), loss/accuracy curves (`OUT/curves.png`) and exact `--resume`.
//! - `perceiver eval --checkpoint DIR`: test loss and accuracy of a checkpoint.
//! - `perceiver predict --checkpoint DIR FILE...`: top-5 classes of images, WAV clips or meshes.
//! - `perceiver info`: a configuration's parameters and FLOPs.
//! - `perceiver convert HF_DIR OUT`: a Hugging Face Perceiver directory to our checkpoint format.
//!
//! `train` and `eval` end with one JSON object on the last line of standard output. Errors are
//! one line on standard error and a non-zero exit status.

mod args;
mod convert;
mod error;
mod eval;
mod info;
mod outdir;
mod plot;
mod predict;
mod report;
mod resources;
mod rundir;
mod train;

/// mimalloc keeps freed memory for reuse (purging is disabled in `main`), so the large buffers a
/// training step frees and reallocates are not page-faulted in again at every step.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use args::{ConvertArgs, EvalArgs, InfoArgs, PredictArgs, TrainArgs};
use clap::{Parser, Subcommand};
use error::{CliError, Result};
use std::process::ExitCode;

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
    /// Convert a Hugging Face Perceiver directory to our checkpoint format (for --init-from).
    Convert(ConvertArgs),
}

/// Runs `f` on a rayon pool of `n` compute threads (default: one per core).
///
/// The whole command runs *inside* the pool, so the parallel loops of each op are forked from a
/// worker thread (a push onto its own queue, stolen by the other workers) rather than injected
/// from outside the pool with the calling thread blocked on a latch each time: on a training
/// step made of hundreds of small ops that hand-off would be a large share of the time.
pub fn in_pool<T: Send>(n: Option<usize>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let n = resources::thread_count(n)?;
    let pool = perceiver_nn::runtime::compute_pool(n)
        .build()
        .map_err(|e| CliError::new(format!("--threads: {e}")))?;
    pool.install(f)
}

fn main() -> ExitCode {
    // Output piped into a program that stops reading (`| head`) ends the process quietly, as
    // for other Unix tools, instead of failing a write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        Command::Train(a) => in_pool(a.threads, || train::train(a)),
        Command::Eval(a) => in_pool(a.threads, || eval::eval(a)),
        Command::Predict(a) => predict::predict(a),
        Command::Info(a) => info::info(a),
        Command::Convert(a) => convert::convert(a),
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
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn errors_are_one_line() {
        let e = CliError::new("a: 2 problem(s):\n  - x\n  - y");
        assert_eq!(e.to_string(), "a: 2 problem(s):; - x; - y");
    }
}
