//! A run folder: its files, the settings and history `perceiver train` stores with the
//! checkpoint, and finding the checkpoint of a folder.

use crate::error::{CliError, Result};
use perceiver_model::train::{read_trainer_state, resolve_state_dir};
use perceiver_model::CONFIG_FILE;
use perceiver_tasks::{DataSpec, Hyper};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Name of the checkpoint folder inside a run folder.
pub const CHECKPOINT: &str = "checkpoint";
/// Name of the metrics file.
pub const METRICS: &str = "metrics.jsonl";
/// Name of the curves plot.
pub const CURVES: &str = "curves.png";

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (1-based).
    pub epoch: u64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (before each update).
    pub train_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Seconds of training (without evaluation).
    pub train_s: f64,
    /// Seconds of the whole epoch (training, evaluation, checkpoint).
    pub epoch_s: f64,
}

/// What a run stores in `trainer.json` besides the counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The data pipeline.
    pub data: DataSpec,
    /// The optimisation settings.
    pub hyper: Hyper,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Training examples processed (all invocations).
    pub train_examples: u64,
    /// Seconds spent training (all invocations).
    pub train_seconds: f64,
    /// Wall seconds (all invocations).
    pub wall_seconds: f64,
    /// Every finished epoch.
    pub history: Vec<EpochRecord>,
    /// A training-loss line in metrics.jsonl every this many steps.
    #[serde(default = "ten")]
    pub log_every: u64,
}

fn ten() -> u64 {
    10
}

/// The checkpoint folder of `dir`: `dir/checkpoint` (or its `.old` twin after an interrupted
/// save), or `dir` itself when it holds a configuration.
pub fn checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    let inner = resolve_state_dir(&dir.join(CHECKPOINT));
    if inner.join(CONFIG_FILE).is_file() {
        return Ok(inner);
    }
    if dir.join(CONFIG_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    if !dir.exists() {
        return Err(CliError::new(format!(
            "{}: no such directory",
            dir.display()
        )));
    }
    Err(CliError::new(format!(
        "{}: not a checkpoint (no {CONFIG_FILE} in it or in {CHECKPOINT}/)",
        dir.display()
    )))
}

/// The epochs done and the run settings stored in a checkpoint by `perceiver train`.
pub fn read_run_info(ckpt: &Path) -> Result<(u64, RunInfo)> {
    let state = read_trainer_state(ckpt).map_err(|e| {
        CliError::new(format!(
            "{e} (a checkpoint written by `perceiver train` is needed)"
        ))
    })?;
    let info: RunInfo = serde_json::from_value(state.extra).map_err(|e| {
        CliError::new(format!(
            "{}: the run settings are malformed: {e}",
            ckpt.join("trainer.json").display()
        ))
    })?;
    Ok((state.epoch, info))
}
