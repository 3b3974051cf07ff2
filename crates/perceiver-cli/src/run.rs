//! `perceiver train` and `perceiver eval`.

use crate::error::{io, CliError, Result};
use crate::plot::{write_curves, EpochPoint};
use crate::tasks::{self, DataSpec, DatasetKind, Hyper, OptimizerKind, ScheduleKind};
use crate::{read_config, thousands, EvalArgs, TrainArgs};
use indicatif::{ProgressBar, ProgressStyle};
use perceiver_data::{mix_seed, Batch, Dataset, Loader, Split};
use perceiver_model::train::{
    evaluate_batch, read_trainer_state, resolve_state_dir, EvalStats, TrainBatch, TrainError,
    Trainer, TrainerConfig,
};
use perceiver_model::{preset, Perceiver, CONFIG_FILE};
use perceiver_tensor::optim::{
    Adam, AdamConfig, Constant, ConstantThenCosine, Cosine, Lamb, LambConfig, LinearWarmup,
    LrSchedule, Optimizer, Sgd, SgdConfig, StepDecay,
};
use perceiver_tensor::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

fn read_run_info(ckpt: &Path) -> Result<(u64, RunInfo)> {
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

fn build_optimizer(h: &Hyper) -> Result<Box<dyn Optimizer>> {
    Ok(match h.optimizer {
        OptimizerKind::Lamb => Box::new(Lamb::new(
            LambConfig::default().with_weight_decay(h.weight_decay),
        )?),
        OptimizerKind::Adamw => Box::new(Adam::new(AdamConfig::adamw(h.weight_decay))?),
        OptimizerKind::Adam => Box::new(Adam::new(AdamConfig::adam_l2(h.weight_decay))?),
        OptimizerKind::Sgd => Box::new(Sgd::new(
            SgdConfig::nesterov(0.9).with_weight_decay(h.weight_decay),
        )?),
    })
}

fn build_schedule(h: &Hyper, total_steps: u64) -> Box<dyn LrSchedule> {
    let after = total_steps.saturating_sub(h.warmup).max(1);
    let lr = h.lr;
    let inner: Box<dyn LrSchedule> = match h.schedule {
        ScheduleKind::Constant => Box::new(Constant(lr)),
        ScheduleKind::Cosine => Box::new(Cosine::new(lr, 0.0, after)),
        ScheduleKind::Step => Box::new(StepDecay::new(
            lr,
            vec![after * 70 / 100, after * 85 / 100, after * 95 / 100],
            0.1,
        )),
        ScheduleKind::ConstantCosine => Box::new(ConstantThenCosine::new(lr, after, 0.5)),
    };
    if h.warmup > 0 {
        Box::new(LinearWarmup::new(h.warmup, inner))
    } else {
        inner
    }
}

fn check_hyper(h: &Hyper) -> Result<()> {
    if h.epochs == 0 {
        return Err(CliError::new("--epochs must be at least 1"));
    }
    if h.batch_size == 0 {
        return Err(CliError::new("--batch-size must be at least 1"));
    }
    if !(h.lr.is_finite() && h.lr > 0.0) {
        return Err(CliError::new(format!(
            "--lr must be positive, got {}",
            h.lr
        )));
    }
    if !(h.weight_decay.is_finite() && h.weight_decay >= 0.0) {
        return Err(CliError::new("--weight-decay must be >= 0"));
    }
    if !(0.0..1.0).contains(&h.label_smoothing) {
        return Err(CliError::new("--label-smoothing must be in [0, 1)"));
    }
    if let Some(c) = h.clip_norm {
        if !(c.is_finite() && c > 0.0) {
            return Err(CliError::new(
                "--clip-norm must be positive (0 turns it off)",
            ));
        }
    }
    Ok(())
}

/// A loader batch as the trainer's plain tensors: on-grid batches use the model's own grid
/// positions; token batches (permuted pixels, point clouds) pass their explicit positions.
/// With `patch > 1`, `[B, H, W, C]` images become `[B, H/p, W/p, p*p*C]` (space-to-depth: each
/// token is a `p x p` patch).
pub fn to_train_batch(b: Batch, patch: usize) -> Result<TrainBatch> {
    let positions = if b.grid.is_some() { None } else { b.positions };
    let inputs = if patch > 1 {
        space_to_depth(&b.inputs, patch)?
    } else {
        b.inputs
    };
    Ok(TrainBatch {
        inputs,
        positions,
        mask: None,
        labels: b.labels,
    })
}

/// `[B, H, W, C]` -> `[B, H/p, W/p, p*p*C]`, patch rows then columns then channels.
pub fn space_to_depth(x: &perceiver_tensor::Tensor, p: usize) -> Result<perceiver_tensor::Tensor> {
    let s = x.shape();
    if s.len() != 4 || !s[1].is_multiple_of(p) || !s[2].is_multiple_of(p) {
        return Err(CliError::new(format!(
            "patches of {p}x{p} need [batch, H, W, C] images with H and W multiples of {p}, got {s:?}"
        )));
    }
    let (b, h, w, c) = (s[0], s[1], s[2], s[3]);
    let v = x.to_vec();
    let (gh, gw) = (h / p, w / p);
    let mut out = Vec::with_capacity(v.len());
    for n in 0..b {
        for gy in 0..gh {
            for gx in 0..gw {
                for dy in 0..p {
                    let row = ((n * h + gy * p + dy) * w + gx * p) * c;
                    out.extend_from_slice(&v[row..row + p * c]);
                }
            }
        }
    }
    Ok(perceiver_tensor::Tensor::from_vec(
        out,
        &[b, gh, gw, p * p * c],
    )?)
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn new_bar(len: u64, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(bar_style(
        "{prefix:>12} [{bar:30}] {pos}/{len} {msg} [{elapsed}<{eta}]",
    ));
    bar.set_prefix(prefix);
    bar
}

/// Evaluates `model` on every batch of `loader`'s epoch 0 with a progress bar.
fn evaluate_loader(
    model: &Perceiver,
    loader: &Loader,
    patch: usize,
    label: &str,
) -> Result<EvalStats> {
    let bar = new_bar(loader.num_batches() as u64, label.to_string());
    let mut stats = EvalStats::default();
    for b in loader.epoch(0) {
        let b = to_train_batch(b?, patch)?;
        stats = evaluate_batch(model, &b, stats)?;
        bar.inc(1);
        bar.set_message(format!("acc {:.2}%", 100.0 * stats.accuracy()));
    }
    bar.finish_and_clear();
    Ok(stats)
}

struct Metrics {
    file: std::fs::File,
    path: PathBuf,
}

impl Metrics {
    fn write(&mut self, v: serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}")
            .and_then(|_| self.file.flush())
            .map_err(|e| io(&self.path, e))
    }
}

/// Keeps the metrics lines of epochs `<= epochs` from `src` (if it exists) in `dst`.
fn carry_metrics(src: &Path, dst: &Path, epochs: u64) -> Result<()> {
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

fn plot(out: &Path, info: &RunInfo) {
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

fn default_out(kind: DatasetKind) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{}-{t}", kind.name()))
}

/// `perceiver train`.
pub fn train(a: &TrainArgs) -> Result<()> {
    let wall = Instant::now();
    // Settings: from the checkpoint when resuming, else the task preset and the flags.
    let (mut info, resume_from, out) = match &a.resume {
        Some(dir) => {
            let ckpt = checkpoint_dir(dir)?;
            let (_, mut info) = read_run_info(&ckpt)?;
            let ignored: Vec<&str> = [
                ("--dataset", a.dataset != DatasetKind::Shapes),
                ("--preset", a.preset.is_some()),
                ("--config", a.config.is_some()),
                ("--batch-size", a.batch_size.is_some()),
                ("--optimizer", a.optimizer.is_some()),
                ("--lr", a.lr.is_some()),
                ("--schedule", a.schedule.is_some()),
                ("--warmup", a.warmup.is_some()),
                ("--weight-decay", a.weight_decay.is_some()),
                ("--seed", a.seed.is_some()),
                ("--permute-pixels", a.permute_pixels.is_some()),
            ]
            .into_iter()
            .filter(|(_, given)| *given)
            .map(|(n, _)| n)
            .collect();
            if !ignored.is_empty() {
                eprintln!(
                    "note: resuming with the saved settings; ignoring {}",
                    ignored.join(", ")
                );
            }
            if let Some(e) = a.epochs {
                info.hyper.epochs = e;
            }
            if let Some(n) = a.log_every {
                info.log_every = n;
            }
            if a.data_dir.is_some() {
                info.data.data_dir =
                    tasks::resolve_data_dir(info.data.dataset, a.data_dir.as_deref())?;
            }
            let run_dir = if ckpt.file_name().is_some_and(|n| n == CHECKPOINT) {
                ckpt.parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.clone())
            } else {
                dir.clone()
            };
            let out = a.out.clone().unwrap_or(run_dir.clone());
            (info, Some((ckpt, run_dir)), out)
        }
        None => {
            let p = tasks::task_preset(a.dataset);
            let hyper = Hyper {
                epochs: a.epochs.unwrap_or(p.hyper.epochs),
                batch_size: a.batch_size.unwrap_or(p.hyper.batch_size),
                optimizer: a.optimizer.unwrap_or(p.hyper.optimizer),
                lr: a.lr.unwrap_or(p.hyper.lr),
                schedule: a.schedule.unwrap_or(p.hyper.schedule),
                warmup: a.warmup.unwrap_or(p.hyper.warmup),
                weight_decay: a.weight_decay.unwrap_or(p.hyper.weight_decay),
                label_smoothing: a.label_smoothing.unwrap_or(p.hyper.label_smoothing),
                clip_norm: match a.clip_norm {
                    Some(0.0) => None,
                    Some(c) => Some(c),
                    None => p.hyper.clip_norm,
                },
                seed: a.seed.unwrap_or(p.hyper.seed),
            };
            if a.permute_pixels.is_some() && !tasks::is_image(a.dataset) {
                return Err(CliError::new(format!(
                    "--permute-pixels applies to image datasets, not {}",
                    a.dataset.name()
                )));
            }
            if a.patch.is_some_and(|p| p > 1)
                && (!tasks::is_image(a.dataset) || a.permute_pixels.is_some())
            {
                return Err(CliError::new(
                    "--patch applies to image datasets without --permute-pixels",
                ));
            }
            if a.audio_features.is_some() && a.dataset != DatasetKind::Fsdd {
                return Err(CliError::new("--audio-features applies to --dataset fsdd"));
            }
            let data = DataSpec {
                dataset: a.dataset,
                data_dir: tasks::resolve_data_dir(a.dataset, a.data_dir.as_deref())?,
                permute_pixels: a.permute_pixels,
                audio: a.audio_features.unwrap_or(tasks::AudioKind::LogMel),
                train_size: a.train_size.or(p.sizes.0),
                test_size: a.test_size.or(p.sizes.1),
                image_size: a.image_size.unwrap_or(32),
                patch: a.patch.unwrap_or(p.patch),
                num_points: 1024,
                augment: a.augment.unwrap_or(p.augment),
                normalize: None,
                class_names: Vec::new(),
            };
            let info = RunInfo {
                data,
                hyper,
                steps_per_epoch: 0,
                train_examples: 0,
                train_seconds: 0.0,
                wall_seconds: 0.0,
                history: Vec::new(),
                log_every: a.log_every.unwrap_or(10),
            };
            let out = a.out.clone().unwrap_or_else(|| default_out(a.dataset));
            (info, None, out)
        }
    };
    check_hyper(&info.hyper)?;
    if info.log_every == 0 {
        return Err(CliError::new("--log-every must be at least 1"));
    }
    // Data.
    let train_ds = tasks::open_split(&info.data, Split::Train)?;
    let test_ds = tasks::open_split(&info.data, Split::Test)?;
    if resume_from.is_none() {
        info.data.normalize = tasks::normalization(&info.data, train_ds.as_ref())?;
        info.data.class_names = train_ds.class_names();
    }
    let shape = tasks::data_shape(train_ds.as_ref(), info.data.patch)?;
    let classes = train_ds.num_classes();
    let h = info.hyper.clone();
    let train_tf = tasks::train_transform(&info.data, shape.tokens, shape.grid.as_deref())?;
    let test_tf = tasks::eval_transform(&info.data, shape.tokens)?;
    let train_loader = Loader::from_arc(train_ds.clone(), h.batch_size)?
        .shuffle(true)
        .seed(h.seed)
        .drop_last(true)
        .workers(1)
        .prefetch(4)
        .transform(train_tf);
    let test_loader = Loader::from_arc(test_ds.clone(), h.batch_size.max(64))?
        .shuffle(false)
        .workers(1)
        .prefetch(2)
        .transform(test_tf);
    let steps_per_epoch = train_loader.num_batches() as u64;
    if steps_per_epoch == 0 {
        return Err(CliError::new(format!(
            "the training split has {} examples, fewer than one batch of {}",
            train_ds.len(),
            h.batch_size
        )));
    }
    info.steps_per_epoch = steps_per_epoch;
    let schedule = build_schedule(&h, h.epochs * steps_per_epoch);
    let tcfg = TrainerConfig {
        label_smoothing: h.label_smoothing,
        clip_norm: h.clip_norm,
    };
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let metrics_path = out.join(METRICS);
    let mut trainer = match &resume_from {
        Some((ckpt, run_dir)) => {
            let (t, _) = Trainer::load_state(ckpt, build_optimizer(&h)?, schedule, tcfg)?;
            info.history.retain(|r| r.epoch <= t.epoch());
            carry_metrics(&run_dir.join(METRICS), &metrics_path, t.epoch())?;
            t
        }
        None => {
            let config = if let Some(name) = &a.preset {
                tasks::fit_config(preset(name)?, &shape, classes)
            } else if let Some(path) = &a.config {
                tasks::fit_config(read_config(path)?, &shape, classes)
            } else {
                let mut body = tasks::task_preset(a.dataset).body;
                body.latents = a.latents.unwrap_or(body.latents);
                body.latent_dim = a.latent_dim.unwrap_or(body.latent_dim);
                body.bands = a.bands.unwrap_or(body.bands);
                body.per_block = a.depth.unwrap_or(body.per_block);
                tasks::body_config(&body, &shape, classes, tasks::is_points(a.dataset))
            };
            config
                .validate()
                .map_err(|e| CliError::new(format!("model configuration: {e}")))?;
            let model = Perceiver::new(config, &mut Rng::new(mix_seed(&[h.seed, 1])))?;
            std::fs::write(&metrics_path, "").map_err(|e| io(&metrics_path, e))?;
            Trainer::new(
                model,
                build_optimizer(&h)?,
                schedule,
                tcfg,
                Rng::new(mix_seed(&[h.seed, 2])),
            )
        }
    };
    let c = trainer.model().config();
    if c.input_channels != shape.channels || c.input_tokens() != shape.tokens {
        return Err(CliError::new(format!(
            "the model takes {} tokens of {} channels but {} has {} tokens of {}",
            c.input_tokens(),
            c.input_channels,
            info.data.dataset.name(),
            shape.tokens,
            shape.channels
        )));
    }
    let params = trainer.model().num_params();
    let flops = c.flops_per_example().total();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&metrics_path)
        .map_err(|e| io(&metrics_path, e))?;
    let mut metrics = Metrics {
        file,
        path: metrics_path.clone(),
    };
    let first = trainer.epoch();
    eprintln!(
        "training on {} ({} train / {} test examples, {} classes); {} parameters; {} steps per epoch; epochs {}..{} of {}; output {}",
        info.data.dataset.name(),
        train_ds.len(),
        test_ds.len(),
        classes,
        thousands(params as u64),
        steps_per_epoch,
        first + 1,
        h.epochs,
        h.epochs,
        out.display()
    );
    let ckpt_dir = out.join(CHECKPOINT);
    let mut run_examples = 0u64;
    let mut run_train_s = 0.0f64;
    let mut epochs_run = 0u64;
    let mut last_test: Option<EvalStats> = None;
    for epoch in first..h.epochs {
        if a.stop_after.is_some_and(|s| epochs_run >= s) {
            break;
        }
        let t0 = Instant::now();
        let bar = new_bar(steps_per_epoch, format!("epoch {}/{}", epoch + 1, h.epochs));
        let (mut loss_sum, mut correct, mut count) = (0.0f64, 0usize, 0usize);
        for b in train_loader.epoch(epoch) {
            let b = to_train_batch(b?, info.data.patch)?;
            let s = match trainer.step(&b) {
                Ok(s) => s,
                Err(e @ TrainError::NonFinite { .. }) => {
                    bar.abandon();
                    let keep = if ckpt_dir.exists() {
                        format!("the last good checkpoint is {}", ckpt_dir.display())
                    } else {
                        "no checkpoint was written".to_string()
                    };
                    return Err(CliError::new(format!("{e}; {keep}")));
                }
                Err(e) => return Err(e.into()),
            };
            loss_sum += s.loss as f64 * s.count as f64;
            correct += s.correct;
            count += s.count;
            let step = trainer.steps();
            if step % info.log_every == 0 {
                metrics.write(json!({
                    "type": "step", "epoch": epoch + 1, "step": step,
                    "loss": s.loss, "lr": s.lr, "grad_norm": s.grad_norm,
                }))?;
            }
            bar.inc(1);
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} acc {:.1}% {:.0} ex/s",
                loss_sum / count as f64,
                100.0 * correct as f64 / count as f64,
                count as f64 / secs
            ));
        }
        bar.finish_and_clear();
        let train_s = t0.elapsed().as_secs_f64();
        let test = evaluate_loader(trainer.model(), &test_loader, info.data.patch, "test")?;
        trainer.finish_epoch();
        run_examples += count as u64;
        run_train_s += train_s;
        epochs_run += 1;
        let rec = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / count.max(1) as f64,
            train_accuracy: correct as f64 / count.max(1) as f64,
            test_loss: test.loss,
            test_accuracy: test.accuracy(),
            train_s,
            epoch_s: 0.0,
        };
        info.history.push(rec);
        info.train_examples += count as u64;
        info.train_seconds += train_s;
        let extra = serde_json::to_value(&info)?;
        trainer.save_state(&ckpt_dir, extra)?;
        let epoch_s = t0.elapsed().as_secs_f64();
        if let Some(r) = info.history.last_mut() {
            r.epoch_s = epoch_s;
        }
        let r = info.history.last().cloned().expect("pushed above");
        metrics.write(json!({
            "type": "epoch", "epoch": r.epoch, "step": trainer.steps(),
            "train_loss": r.train_loss, "train_accuracy": r.train_accuracy,
            "test_loss": r.test_loss, "test_accuracy": r.test_accuracy,
            "lr": trainer.next_lr(), "train_s": r.train_s, "epoch_s": epoch_s,
            "train_examples_per_s": count as f64 / train_s.max(1e-9),
            "wall_s": wall.elapsed().as_secs_f64(),
        }))?;
        plot(&out, &info);
        println!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.0} ex/s | {:.1} s",
            r.epoch,
            h.epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            r.test_loss,
            100.0 * r.test_accuracy,
            count as f64 / train_s.max(1e-9),
            epoch_s
        );
        last_test = Some(test);
    }
    let test = match last_test {
        Some(t) => t,
        None => evaluate_loader(trainer.model(), &test_loader, info.data.patch, "test")?,
    };
    let wall_s = wall.elapsed().as_secs_f64();
    info.wall_seconds += wall_s;
    if epochs_run > 0 {
        // Record the wall time in the checkpoint's run info (same weights and counters).
        let extra = serde_json::to_value(&info)?;
        trainer.save_state(&ckpt_dir, extra)?;
    }
    let last = info.history.last();
    let eps = if run_train_s > 0.0 {
        run_examples as f64 / run_train_s
    } else if info.train_seconds > 0.0 {
        info.train_examples as f64 / info.train_seconds
    } else {
        0.0
    };
    let epoch_s = if epochs_run > 0 {
        info.history
            .iter()
            .rev()
            .take(epochs_run as usize)
            .map(|r| r.epoch_s)
            .sum::<f64>()
            / epochs_run as f64
    } else {
        0.0
    };
    let summary = json!({
        "command": "train",
        "dataset": info.data.dataset.name(),
        "test_accuracy": test.accuracy(),
        "test_loss": test.loss,
        "train_accuracy": last.map(|r| r.train_accuracy),
        "train_loss": last.map(|r| r.train_loss),
        "epochs": trainer.epoch(),
        "steps": trainer.steps(),
        "params": params,
        "flops_per_example": flops,
        "train_examples_per_s": eps,
        "time_per_epoch_s": epoch_s,
        "wall_s": wall_s,
        "total_wall_s": info.wall_seconds,
        "out": out.display().to_string(),
    });
    if perceiver_tensor::autograd::profile::enabled() {
        eprintln!("{}", perceiver_tensor::autograd::profile::report());
    }
    println!("{summary}");
    Ok(())
}

/// `perceiver eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let wall = Instant::now();
    if a.batch_size == 0 {
        return Err(CliError::new("--batch-size must be at least 1"));
    }
    let ckpt = checkpoint_dir(&a.checkpoint)?;
    let (epochs, info) = read_run_info(&ckpt)?;
    let model = Perceiver::load_checkpoint(&ckpt)?;
    let mut spec = info.data.clone();
    if let Some(d) = a.dataset {
        if d != spec.dataset {
            spec.dataset = d;
            spec.data_dir = tasks::resolve_data_dir(d, a.data_dir.as_deref())?;
            spec.test_size = tasks::task_preset(d).sizes.1;
        }
    }
    if a.data_dir.is_some() {
        spec.data_dir = tasks::resolve_data_dir(spec.dataset, a.data_dir.as_deref())?;
    }
    if a.test_size.is_some() {
        spec.test_size = a.test_size;
    }
    let test_ds: Arc<dyn Dataset> = tasks::open_split(&spec, Split::Test)?;
    let shape = tasks::data_shape(test_ds.as_ref(), spec.patch)?;
    let c = model.config();
    if c.input_channels != shape.channels || c.input_tokens() != shape.tokens {
        return Err(CliError::new(format!(
            "the checkpoint takes {} tokens of {} channels but {} has {} tokens of {}",
            c.input_tokens(),
            c.input_channels,
            spec.dataset.name(),
            shape.tokens,
            shape.channels
        )));
    }
    if c.num_outputs() != Some(test_ds.num_classes()) {
        return Err(CliError::new(format!(
            "the checkpoint has {:?} classes but {} has {}",
            c.num_outputs(),
            spec.dataset.name(),
            test_ds.num_classes()
        )));
    }
    let tf = tasks::eval_transform(&spec, shape.tokens)?;
    let loader = Loader::from_arc(test_ds.clone(), a.batch_size)?
        .shuffle(false)
        .workers(1)
        .prefetch(2)
        .transform(tf);
    let t0 = Instant::now();
    let stats = evaluate_loader(&model, &loader, spec.patch, "eval")?;
    let eval_s = t0.elapsed().as_secs_f64();
    let eps = if info.train_seconds > 0.0 {
        info.train_examples as f64 / info.train_seconds
    } else {
        0.0
    };
    println!(
        "{}: test loss {:.4}, accuracy {:.2}% ({} / {} examples)",
        spec.dataset.name(),
        stats.loss,
        100.0 * stats.accuracy(),
        stats.correct,
        stats.count
    );
    // Accuracy per class name, and the three weakest classes on one line.
    let mut per_class: Vec<(String, f64)> = stats
        .class_accuracies()
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            let name = spec.class_names.get(i).cloned();
            a.map(|a| (name.unwrap_or_else(|| i.to_string()), a))
        })
        .collect();
    per_class.sort_by(|a, b| a.1.total_cmp(&b.1));
    if !per_class.is_empty() {
        let worst: Vec<String> = per_class
            .iter()
            .take(3)
            .map(|(k, a)| format!("{k} {:.1}%", 100.0 * a))
            .collect();
        println!("lowest per-class accuracy: {}", worst.join(", "));
    }
    let per_class: serde_json::Map<String, serde_json::Value> =
        per_class.into_iter().map(|(k, a)| (k, json!(a))).collect();
    let summary = json!({
        "command": "eval",
        "dataset": spec.dataset.name(),
        "test_accuracy": stats.accuracy(),
        "test_loss": stats.loss,
        "examples": stats.count,
        "epochs": epochs,
        "params": model.num_params(),
        "train_examples_per_s": eps,
        "eval_examples_per_s": stats.count as f64 / eval_s.max(1e-9),
        "wall_s": wall.elapsed().as_secs_f64(),
        "checkpoint": ckpt.display().to_string(),
        "per_class_accuracy": per_class,
    });
    println!("{summary}");
    Ok(())
}
