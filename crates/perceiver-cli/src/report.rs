//! What the user sees while a command runs: progress bars, evaluation with a bar, the
//! metrics file and the curves.

use crate::error::{io, Result};
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

/// `metrics.jsonl`, one JSON object per line, flushed after each.
pub struct Metrics {
    file: std::fs::File,
    path: PathBuf,
}

impl Metrics {
    /// Opens `path` for appending (creating it).
    pub fn append(path: PathBuf) -> Result<Metrics> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        Ok(Metrics { file, path })
    }

    /// Writes one line.
    pub fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(|e| io(&self.path, e))
    }
}

/// Keeps the metrics lines of epochs `<= epochs` from `src` (if it exists) in `dst`.
pub fn carry_metrics(src: &Path, dst: &Path, epochs: u64) -> Result<()> {
    let text = std::fs::read_to_string(src).unwrap_or_default();
    let mut kept = String::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["epoch"].as_u64().is_some_and(|e| e <= epochs) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    std::fs::write(dst, kept).map_err(|e| io(dst, e))
}

fn step_losses(metrics: &Path, steps_per_epoch: u64) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
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
            test_loss: r.test_loss,
            test_acc: r.test_accuracy,
        })
        .collect();
    let steps = step_losses(&out.join(METRICS), info.steps_per_epoch);
    let tmp = out.join("curves.tmp.png");
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
