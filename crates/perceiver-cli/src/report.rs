//! What the user sees while a command runs: progress bars, evaluation with a bar, the
//! metrics file and the curves.

use crate::error::{io, CliError, Result};
use crate::plot::{write_curves, EpochPoint};
use crate::rundir::{RunInfo, CURVES, METRICS};
use indicatif::{ProgressBar, ProgressStyle};
use perceiver_data::Loader;
use perceiver_model::train::{evaluate_batch, EvalStats};
use perceiver_model::Perceiver;
use perceiver_tasks::model_batch;
use std::io::Write;
use std::path::{Path, PathBuf};

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A progress bar of `len` steps labelled `prefix`.
pub fn new_bar(len: u64, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(bar_style(
        "{prefix:>12} [{bar:30}] {pos}/{len} {msg} [{elapsed}<{eta}]",
    ));
    bar.set_prefix(prefix);
    bar
}

/// Evaluates `model` on every batch of `loader`'s epoch 0 with a progress bar.
pub fn evaluate_loader(model: &Perceiver, loader: &Loader, label: &str) -> Result<EvalStats> {
    let bar = new_bar(loader.num_batches() as u64, label.to_string());
    let mut stats = EvalStats::default();
    for b in loader.epoch(0) {
        let b = model_batch(b?);
        stats = evaluate_batch(model, &b, stats)?;
        bar.inc(1);
        bar.set_message(format!("acc {:.2}%", 100.0 * stats.accuracy()));
    }
    bar.finish_and_clear();
    Ok(stats)
}

/// Largest metrics file read back (to carry it into a resumed run or draw the curves).
const MAX_METRICS_BYTES: u64 = 1 << 30;

/// The text of a metrics file; a missing file is empty.
fn read_metrics(path: &Path) -> Result<String> {
    match perceiver_io::read_string_bounded(path, MAX_METRICS_BYTES) {
        Ok(t) => Ok(t),
        Err(e) if e.is_not_found() => Ok(String::new()),
        Err(e) => Err(CliError::new(e.to_string())),
    }
}

/// `metrics.jsonl`, one JSON object per line.
///
/// The file on disk changes only at [`Metrics::commit`]: the first commit writes the lines
/// carried from the run being continued plus the pending ones atomically (a symlink at the
/// path is replaced, not followed), later lines are appended (to the regular file only) and
/// flushed one by one. A run that fails before its first commit leaves the file as it was.
pub struct Metrics {
    path: PathBuf,
    /// Lines waiting for the first commit.
    pending: String,
    file: Option<std::fs::File>,
}

impl Metrics {
    /// Metrics of a new run at `path`, created empty at once.
    pub fn create(path: PathBuf) -> Result<Metrics> {
        let mut m = Metrics {
            path,
            pending: String::new(),
            file: None,
        };
        m.commit()?;
        Ok(m)
    }

    /// Metrics continuing a run: the lines of epochs `<= epochs` of `src` (if it exists) are
    /// kept; nothing is written until [`Metrics::commit`].
    pub fn resumed(src: &Path, dst: PathBuf, epochs: u64) -> Result<Metrics> {
        let text = read_metrics(src)?;
        let mut pending = String::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["epoch"].as_u64().is_some_and(|e| e <= epochs) {
                pending.push_str(line);
                pending.push('\n');
            }
        }
        Ok(Metrics {
            path: dst,
            pending,
            file: None,
        })
    }

    /// Writes one line (or keeps it until the first commit).
    pub fn write(&mut self, v: serde_json::Value) -> Result<()> {
        match &mut self.file {
            Some(f) => writeln!(f, "{v}")
                .and_then(|_| f.flush())
                .map_err(|e| io(&self.path, e)),
            None => {
                self.pending.push_str(&format!("{v}\n"));
                Ok(())
            }
        }
    }

    /// Puts the pending lines on disk (see the type's docs).
    pub fn commit(&mut self) -> Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let err = |e: perceiver_io::FileError| CliError::new(e.to_string());
        perceiver_io::write_bytes_atomic(&self.path, self.pending.as_bytes()).map_err(err)?;
        self.file = Some(perceiver_io::append_no_follow(&self.path).map_err(err)?);
        self.pending.clear();
        Ok(())
    }
}

fn step_losses(metrics: &Path, steps_per_epoch: u64) -> Vec<(f64, f64)> {
    let text = read_metrics(metrics).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "step")
        .filter_map(|v| {
            Some((
                v["step"].as_f64()? / steps_per_epoch.max(1) as f64,
                v["loss"].as_f64()?,
            ))
        })
        .collect()
}

/// Draws `out/curves.png` from the history and the step losses in `out/metrics.jsonl`
/// (a warning, not an error, when it cannot).
pub fn plot(out: &Path, info: &RunInfo) {
    let points: Vec<EpochPoint> = info
        .history
        .iter()
        .map(|r| EpochPoint {
            epoch: r.epoch as f64,
            train_loss: r.train_loss,
            train_acc: r.train_accuracy,
            test_loss: r.test_loss.unwrap_or(f64::NAN),
            test_acc: r.test_accuracy.unwrap_or(f64::NAN),
        })
        .collect();
    let steps = step_losses(&out.join(METRICS), info.steps_per_epoch);
    // The encoder picks the format from the extension, so the temporary name ends in `.png`.
    let tmp = out.join(format!("curves.tmp.{}.png", std::process::id()));
    if std::fs::symlink_metadata(&tmp).is_ok() {
        eprintln!("warning: {} exists; curves not drawn", tmp.display());
        return;
    }
    let title = format!("perceiver train --dataset {}", info.data.dataset.name());
    match write_curves(&tmp, &title, &points, &steps) {
        Ok(()) => {
            if let Err(e) = std::fs::rename(&tmp, out.join(CURVES)) {
                eprintln!(
                    "warning: could not write {}: {e}",
                    out.join(CURVES).display()
                );
            }
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("warning: could not draw the curves: {e}");
        }
    }
}
