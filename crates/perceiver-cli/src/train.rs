//! `perceiver train`: settings from the flags or the checkpoint, setup (data, loaders,
//! trainer), the epoch loop, and the report. The recipe itself (presets, pipeline, model body,
//! optimizer and schedule) is `perceiver-tasks`.

use crate::args::TrainArgs;
use crate::error::{CliError, Result};
use crate::info::{read_config, thousands};
use crate::outdir::OutDir;
use crate::report::{evaluate_loader, new_bar, plot, Metrics};
use crate::resources::check_memory;
use crate::rundir::{
    check_class_names, checkpoint_dir, read_run_info, EpochRecord, RunInfo, CHECKPOINT, METRICS,
};
use perceiver_data::Loader;
use perceiver_model::train::{EvalStats, TrainError, Trainer, TRAINER_FILE};
use perceiver_model::{preset, CONFIG_FILE};
use perceiver_tasks::{self as tasks, DataSpec, DatasetKind, Hyper};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `perceiver train`.
pub fn train(a: &TrainArgs) -> Result<()> {
    let wall = Instant::now();
    let mut run = setup(a)?;
    match epochs(&mut run, a.stop_after, wall) {
        Ok(done) => report(run, done, wall),
        Err(e) => {
            if run.fresh && !run.saved {
                run.out.abandon();
            }
            Err(e)
        }
    }
}

/// The run's settings and where they come from.
struct Settings {
    info: RunInfo,
    /// The checkpoint to continue and the run folder it belongs to, when resuming.
    resume_from: Option<(PathBuf, PathBuf)>,
    out: PathBuf,
}

/// Everything the epoch loop needs.
struct Run {
    info: RunInfo,
    out: OutDir,
    /// A new run (not a resumed one).
    fresh: bool,
    /// A checkpoint was saved by this invocation.
    saved: bool,
    trainer: Trainer,
    train_loader: Loader,
    /// None without a test split (`--test-size 0`).
    test_loader: Option<Loader>,
    metrics: Metrics,
    params: usize,
    flops: u64,
}

/// What the epoch loop of this invocation did.
#[derive(Default)]
struct Done {
    epochs: u64,
    examples: u64,
    train_s: f64,
    last_test: Option<EvalStats>,
}

/// Evaluates on the test split, if there is one, with the weights after `epoch` (1-based); a
/// non-finite loss is an error naming the last good checkpoint.
fn test_stats(run: &Run, epoch: u64) -> Result<Option<EvalStats>> {
    let Some(loader) = &run.test_loader else {
        return Ok(None);
    };
    let test = evaluate_loader(run.trainer.model(), loader, "test")?;
    if !test.loss.is_finite() {
        return Err(CliError::new(format!(
            "the test loss became {} after epoch {epoch}; stopping — try a lower learning rate or --clip-norm; {}",
            test.loss,
            last_good(run.out.path())
        )));
    }
    Ok(Some(test))
}

/// Where the last good checkpoint is, for the message of a run that stops on an error.
fn last_good(out: &Path) -> String {
    let dir = out.join(CHECKPOINT);
    match read_run_info(&dir) {
        Ok((epoch, _)) => format!(
            "the last good checkpoint is {} (epoch {epoch})",
            dir.display()
        ),
        Err(_) => "no checkpoint was written".to_string(),
    }
}

/// Settings when continuing a run: the saved ones, with `--epochs`, `--log-every` and
/// `--data-dir` applied (other settings flags are reported as ignored).
fn resumed(a: &TrainArgs, dir: &Path) -> Result<Settings> {
    let ckpt = checkpoint_dir(dir)?;
    let (done, mut info) = read_run_info(&ckpt)?;
    let ignored: Vec<&str> = [
        ("--dataset", a.dataset != DatasetKind::Shapes),
        ("--preset", a.preset.is_some()),
        ("--config", a.config.is_some()),
        ("--init-from", a.init_from.is_some()),
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
    if done >= info.hyper.epochs {
        return Err(CliError::new(format!(
            "the run in {} has finished: {done} of {} epochs done; pass --epochs N (more than {done}) to train further",
            dir.display(),
            info.hyper.epochs
        )));
    }
    if let Some(n) = a.log_every {
        info.log_every = n;
    }
    if a.data_dir.is_some() {
        info.data.data_dir = tasks::resolve_data_dir(info.data.dataset, a.data_dir.as_deref())?;
    }
    let run_dir = if ckpt.file_name().is_some_and(|n| n == CHECKPOINT) {
        ckpt.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.to_path_buf())
    } else {
        dir.to_path_buf()
    };
    let out = a.out.clone().unwrap_or(run_dir.clone());
    Ok(Settings {
        info,
        resume_from: Some((ckpt, run_dir)),
        out,
    })
}

/// Settings of a new run: the dataset's task preset with every given flag applied.
fn fresh(a: &TrainArgs) -> Result<Settings> {
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
    if a.permute_pixels.is_some() && !a.dataset.is_image() {
        return Err(CliError::new(format!(
            "--permute-pixels applies to image datasets, not {}",
            a.dataset.name()
        )));
    }
    if a.patch.is_some_and(|p| p > 1) && (!a.dataset.is_image() || a.permute_pixels.is_some()) {
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
    Ok(Settings {
        info,
        resume_from: None,
        out,
    })
}

/// `runs/<dataset>-<unix seconds>`, with `-2`, `-3`... when that name is taken.
fn default_out(kind: DatasetKind) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = PathBuf::from("runs").join(format!("{}-{t}", kind.name()));
    // Two runs started in the same second get different folders.
    (1..=1000u32)
        .map(|i| match i {
            1 => base.clone(),
            i => PathBuf::from(format!("{}-{i}", base.display())),
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(base)
}

/// The settings, the data and its loaders, the trainer (new or resumed) and the metrics file;
/// prints the one-line summary of what is about to run. Everything is checked before the
/// output folder is touched.
fn setup(a: &TrainArgs) -> Result<Run> {
    let Settings {
        mut info,
        resume_from,
        out,
    } = match &a.resume {
        Some(dir) => resumed(a, dir)?,
        None => fresh(a)?,
    };
    info.hyper.validate()?;
    if info.log_every == 0 {
        return Err(CliError::new("--log-every must be at least 1"));
    }
    // Data.
    let splits = tasks::open_splits(&info.data)?;
    for note in &splits.notes {
        eprintln!("note: {note}");
    }
    let (train_ds, test_ds) = (splits.train, splits.test);
    if resume_from.is_none() {
        info.data.fit(train_ds.as_ref())?;
    }
    let shape = tasks::data_shape(train_ds.as_ref(), info.data.patch)?;
    let classes = train_ds.num_classes();
    let h = info.hyper.clone();
    let train_loader = tasks::train_loader(&info.data, &h, train_ds.clone(), &shape)?;
    let test_loader = match &test_ds {
        Some(ds) => Some(tasks::eval_loader(
            &info.data,
            ds.clone(),
            h.batch_size.max(64),
            &shape,
        )?),
        None => None,
    };
    let steps_per_epoch = train_loader.num_batches() as u64;
    if steps_per_epoch == 0 {
        return Err(CliError::new(format!(
            "the training split has {} examples, fewer than one batch of {}",
            train_ds.len(),
            h.batch_size
        )));
    }
    info.steps_per_epoch = steps_per_epoch;
    // The trainer.
    let trainer = match &resume_from {
        Some((ckpt, _)) => {
            check_memory(&read_config(&ckpt.join(CONFIG_FILE))?, &h, a.max_memory)?;
            let t = tasks::resume_trainer(ckpt, &h, steps_per_epoch)?;
            check_class_names(ckpt, &info, t.model().config())?;
            let expected = t.epoch().checked_mul(steps_per_epoch);
            if expected != Some(t.steps()) {
                return Err(CliError::new(format!(
                    "{}: step {} does not match epoch {} of {} steps; the checkpoint was tampered with or the data changed",
                    ckpt.join(TRAINER_FILE).display(),
                    t.steps(),
                    t.epoch(),
                    steps_per_epoch
                )));
            }
            info.history.retain(|r| r.epoch <= t.epoch());
            t
        }
        None => {
            let config = if let Some(dir) = &a.init_from {
                tasks::init_config_from(dir, &shape, classes)?
            } else if let Some(name) = &a.preset {
                tasks::fit_config(preset(name)?, &shape, classes)
            } else if let Some(path) = &a.config {
                tasks::fit_config(read_config(path)?, &shape, classes)
            } else {
                let mut body = tasks::task_preset(a.dataset).body;
                body.latents = a.latents.unwrap_or(body.latents);
                body.latent_dim = a.latent_dim.unwrap_or(body.latent_dim);
                body.bands = a.bands.unwrap_or(body.bands);
                body.per_block = a.depth.unwrap_or(body.per_block);
                tasks::body_config(&body, &shape, classes, a.dataset.is_points())
            };
            check_memory(&config, &h, a.max_memory)?;
            match &a.init_from {
                Some(dir) => {
                    let (model, fresh) = tasks::init_model_with(dir, config, h.seed)?;
                    if !fresh.is_empty() {
                        eprintln!(
                            "note: initialised afresh for {classes} classes: {}",
                            fresh.join(", ")
                        );
                    }
                    tasks::trainer_for(model, &h, steps_per_epoch)?
                }
                None => tasks::new_trainer(config, &h, steps_per_epoch)?,
            }
        }
    };
    let c = trainer.model().config();
    let elements: usize = c.input_axes.iter().product();
    if c.input_channels != shape.channels || elements != shape.tokens {
        return Err(CliError::new(format!(
            "the model takes {} tokens of {} channels but {} has {} tokens of {}",
            elements,
            c.input_channels,
            info.data.dataset.name(),
            shape.tokens,
            shape.channels
        )));
    }
    let params = trainer.model().num_params();
    let flops = c.try_flops_per_example()?.total();
    // The output folder, last: nothing above wrote anything.
    let (out, metrics) = match &resume_from {
        Some((_, run_dir)) if same_dir(run_dir, &out) => {
            let dir = OutDir::claim_resumed(&out)?;
            let m = Metrics::resumed(&run_dir.join(METRICS), out.join(METRICS), trainer.epoch())?;
            (dir, m)
        }
        Some((_, run_dir)) => {
            let dir = OutDir::claim_new(&out)?;
            let m = Metrics::resumed(&run_dir.join(METRICS), out.join(METRICS), trainer.epoch())?;
            (dir, m)
        }
        None => {
            let mut dir = OutDir::claim_new(&out)?;
            let path = out.join(METRICS);
            let m = Metrics::create(path.clone());
            dir.created_file(path);
            (dir, m?)
        }
    };
    println!(
        "training on {} ({} train / {} examples, {} classes); {} parameters; {} steps per epoch; epochs {}..{} of {}; output {}",
        info.data.dataset.name(),
        train_ds.len(),
        match &test_ds {
            Some(ds) => format!("{} test", ds.len()),
            None => "no test (--test-size 0)".to_string(),
        },
        classes,
        thousands(params as u64),
        steps_per_epoch,
        trainer.epoch() + 1,
        h.epochs,
        h.epochs,
        out.path().display()
    );
    Ok(Run {
        info,
        out,
        fresh: resume_from.is_none(),
        saved: false,
        trainer,
        train_loader,
        test_loader,
        metrics,
        params,
        flops,
    })
}

/// Whether two paths name the same folder.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Trains from the trainer's epoch to `hyper.epochs` (at most `stop_after` epochs): each epoch
/// with a progress bar, then a test evaluation, the checkpoint, the metrics line, the curves
/// and one line on standard output.
fn epochs(run: &mut Run, stop_after: Option<u64>, wall: Instant) -> Result<Done> {
    let epochs = run.info.hyper.epochs;
    let steps_per_epoch = run.info.steps_per_epoch;
    let ckpt_dir = run.out.path().join(CHECKPOINT);
    let mut done = Done::default();
    for epoch in run.trainer.epoch()..epochs {
        if stop_after.is_some_and(|s| done.epochs >= s) {
            break;
        }
        let t0 = Instant::now();
        let bar = new_bar(steps_per_epoch, format!("epoch {}/{}", epoch + 1, epochs));
        let (mut loss_sum, mut correct, mut count) = (0.0f64, 0usize, 0usize);
        for b in run.train_loader.epoch(epoch) {
            let b = tasks::model_batch(b?);
            let s = match run.trainer.step(&b) {
                Ok(s) => s,
                Err(e @ TrainError::NonFinite { .. }) => {
                    bar.abandon();
                    return Err(CliError::new(format!("{e}; {}", last_good(run.out.path()))));
                }
                Err(e) => return Err(e.into()),
            };
            loss_sum += s.loss as f64 * s.count as f64;
            correct += s.correct;
            count += s.count;
            let step = run.trainer.steps();
            if step.is_multiple_of(run.info.log_every) {
                run.metrics.write(json!({
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
        let test = test_stats(run, epoch + 1)?;
        run.trainer.finish_epoch()?;
        done.examples += count as u64;
        done.train_s += train_s;
        done.epochs += 1;
        let info = &mut run.info;
        info.history.push(EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_sum / count.max(1) as f64,
            train_accuracy: correct as f64 / count.max(1) as f64,
            test_loss: test.as_ref().map(|t| t.loss),
            test_accuracy: test.as_ref().map(EvalStats::accuracy),
            train_s,
            epoch_s: 0.0,
        });
        info.train_examples += count as u64;
        info.train_seconds += train_s;
        if let Err(e) = run.trainer.save_state(&ckpt_dir, &*info) {
            return Err(CliError::new(format!("{e}; {}", last_good(run.out.path()))));
        }
        run.saved = true;
        run.metrics.commit()?;
        let epoch_s = t0.elapsed().as_secs_f64();
        if let Some(r) = info.history.last_mut() {
            r.epoch_s = epoch_s;
        }
        let r = info.history.last().cloned().expect("pushed above");
        run.metrics.write(json!({
            "type": "epoch", "epoch": r.epoch, "step": run.trainer.steps(),
            "train_loss": r.train_loss, "train_accuracy": r.train_accuracy,
            "test_loss": r.test_loss, "test_accuracy": r.test_accuracy,
            "lr": run.trainer.next_lr(), "train_s": r.train_s, "epoch_s": epoch_s,
            "train_examples_per_s": count as f64 / train_s.max(1e-9),
            "wall_s": wall.elapsed().as_secs_f64(),
        }))?;
        plot(run.out.path(), info);
        let test_text = match (r.test_loss, r.test_accuracy) {
            (Some(l), Some(acc)) => format!("test loss {l:.4} acc {:.2}%", 100.0 * acc),
            _ => "no test split".to_string(),
        };
        println!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | {test_text} | {:.0} ex/s | {:.1} s",
            r.epoch,
            epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            count as f64 / train_s.max(1e-9),
            epoch_s
        );
        done.last_test = test;
    }
    Ok(done)
}

/// The final test figures (evaluated now if no epoch ran), the wall time recorded in the
/// checkpoint, and the summary JSON line.
fn report(mut run: Run, done: Done, wall: Instant) -> Result<()> {
    let test = match done.last_test {
        Some(t) => Some(t),
        None => test_stats(&run, run.trainer.epoch())?,
    };
    let info = &mut run.info;
    let wall_s = wall.elapsed().as_secs_f64();
    info.wall_seconds += wall_s;
    if done.epochs > 0 {
        // Record the wall time in the checkpoint's run info (same weights and counters).
        run.trainer
            .save_state(run.out.path().join(CHECKPOINT), &*info)?;
    }
    let last = info.history.last();
    let eps = if done.train_s > 0.0 {
        done.examples as f64 / done.train_s
    } else if info.train_seconds > 0.0 {
        info.train_examples as f64 / info.train_seconds
    } else {
        0.0
    };
    let epoch_s = if done.epochs > 0 {
        info.history
            .iter()
            .rev()
            .take(done.epochs as usize)
            .map(|r| r.epoch_s)
            .sum::<f64>()
            / done.epochs as f64
    } else {
        0.0
    };
    let summary = json!({
        "command": "train",
        "dataset": info.data.dataset.name(),
        "test_accuracy": test.as_ref().map(EvalStats::accuracy),
        "test_loss": test.as_ref().map(|t| t.loss),
        "train_accuracy": last.map(|r| r.train_accuracy),
        "train_loss": last.map(|r| r.train_loss),
        "epochs": run.trainer.epoch(),
        "steps": run.trainer.steps(),
        "params": run.params,
        "flops_per_example": run.flops,
        "train_examples_per_s": eps,
        "time_per_epoch_s": epoch_s,
        "wall_s": wall_s,
        "total_wall_s": info.wall_seconds,
        "out": run.out.path().display().to_string(),
    });
    if perceiver_tensor::autograd::profile::enabled() {
        eprintln!("{}", perceiver_tensor::autograd::profile::report());
    }
    println!("{summary}");
    Ok(())
}
