//! `perceiver eval`.

use crate::args::EvalArgs;
use crate::error::{CliError, Result};
use crate::info::read_config;
use crate::report::evaluate_loader;
use crate::resources::check_memory_for;
use crate::rundir::{check_class_names, checkpoint_dir, read_run_info};
use perceiver_model::{Perceiver, CONFIG_FILE};
use perceiver_tasks as tasks;
use serde_json::json;
use std::time::Instant;

/// `perceiver eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let wall = Instant::now();
    if a.batch_size == 0 {
        return Err(CliError::new("--batch-size must be at least 1"));
    }
    let ckpt = checkpoint_dir(&a.checkpoint)?;
    let (epochs, info) = read_run_info(&ckpt)?;
    check_memory_for(
        &read_config(&ckpt.join(CONFIG_FILE))?,
        a.batch_size,
        false,
        a.max_memory,
    )?;
    let model = Perceiver::load_checkpoint(&ckpt)?;
    check_class_names(&ckpt, &info, model.config())?;
    let mut spec = info.data.clone();
    let trained_on = spec.dataset;
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
    if spec.test_size == Some(0) {
        return Err(CliError::new("--test-size 0: nothing to evaluate"));
    }
    // On another dataset, say so first: its data may not even fit the checkpoint's pipeline.
    let other = |e: CliError| {
        if spec.dataset == trained_on {
            e
        } else {
            CliError::new(format!(
                "the checkpoint was trained on {}, and {} does not fit it: {e}",
                trained_on.name(),
                spec.dataset.name()
            ))
        }
    };
    let (test_ds, notes) = tasks::open_eval_split(&spec).map_err(|e| other(e.into()))?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    let shape = tasks::data_shape(test_ds.as_ref(), spec.patch).map_err(|e| other(e.into()))?;
    let c = model.config();
    if c.input_channels != shape.channels || c.input_tokens() != shape.tokens {
        return Err(other(CliError::new(format!(
            "the checkpoint takes {} tokens of {} channels but {} has {} tokens of {}",
            c.input_tokens(),
            c.input_channels,
            spec.dataset.name(),
            shape.tokens,
            shape.channels
        ))));
    }
    if c.num_outputs() != Some(test_ds.num_classes()) {
        return Err(other(CliError::new(format!(
            "the checkpoint has {:?} classes but {} has {}",
            c.num_outputs(),
            spec.dataset.name(),
            test_ds.num_classes()
        ))));
    }
    let loader = tasks::eval_loader(&spec, test_ds.clone(), a.batch_size, &shape)?;
    let t0 = Instant::now();
    let stats = evaluate_loader(&model, &loader, "eval")?;
    if !stats.loss.is_finite() {
        return Err(CliError::new(format!(
            "the test loss is {} on {} examples: the checkpoint's weights or the data hold non-finite values",
            stats.loss, stats.count
        )));
    }
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
