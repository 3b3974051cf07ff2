//! `perceiver eval`.

use crate::args::EvalArgs;
use crate::error::{CliError, Result};
use crate::report::evaluate_loader;
use crate::rundir::{checkpoint_dir, read_run_info};
use perceiver_data::Split;
use perceiver_model::Perceiver;
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
    let test_ds = tasks::open_split(&spec, Split::Test)?;
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
    let loader = tasks::eval_loader(&spec, test_ds.clone(), a.batch_size, &shape)?;
    let t0 = Instant::now();
    let stats = evaluate_loader(&model, &loader, "eval")?;
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
