//! A run folder: its files, the settings and history `perceiver train` stores with the
//! checkpoint, and finding the checkpoint of a folder.

use crate::error::{CliError, Result};
use perceiver_model::train::{read_trainer_state, resolve_state_dir, TRAINER_FILE};
use perceiver_model::{PerceiverConfig, CONFIG_FILE};
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
    #[serde(with = "any_f64")]
    pub train_loss: f64,
    /// Training accuracy (before each update).
    #[serde(with = "any_f64")]
    pub train_accuracy: f64,
    /// Test loss (none without a test split).
    #[serde(with = "opt_f64", default)]
    pub test_loss: Option<f64>,
    /// Test accuracy (none without a test split).
    #[serde(with = "opt_f64", default)]
    pub test_accuracy: Option<f64>,
    /// Seconds of training (without evaluation).
    #[serde(with = "any_f64")]
    pub train_s: f64,
    /// Seconds of the whole epoch (training, evaluation, checkpoint).
    #[serde(with = "any_f64")]
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
    #[serde(with = "any_f64")]
    pub train_seconds: f64,
    /// Wall seconds (all invocations).
    #[serde(with = "any_f64")]
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

/// An `f64` that may be non-finite, so every stored value reads back: a JSON number when
/// finite, else the string `"NaN"`, `"inf"` or `"-inf"`; `null` reads as NaN.
mod any_f64 {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if x.is_finite() {
            s.serialize_f64(*x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if *x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(f64::NAN),
            serde_json::Value::Number(n) => {
                n.as_f64().ok_or_else(|| D::Error::custom("not a number"))
            }
            serde_json::Value::String(t) => match t.as_str() {
                "NaN" | "nan" => Ok(f64::NAN),
                "inf" | "+inf" | "Infinity" => Ok(f64::INFINITY),
                "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(D::Error::custom(format!("expected a number, got \"{t}\""))),
            },
            other => Err(D::Error::custom(format!("expected a number, got {other}"))),
        }
    }
}

/// An optional [`any_f64`]: absent or `null` is none.
mod opt_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(v) => super::any_f64::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            v => super::any_f64::deserialize(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The checkpoint folder of `dir`: `dir/checkpoint` (or its `.old` twin after an interrupted
/// save), or `dir` itself when it holds a configuration.
pub fn checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    // Whatever sits at the file names is then read (and a special file refused by name).
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let inner = resolve_state_dir(&dir.join(CHECKPOINT));
    if inner.is_dir() && exists(&inner.join(CONFIG_FILE)) {
        return Ok(inner);
    }
    if exists(&dir.join(CONFIG_FILE)) {
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

/// Checks that the class names stored with a checkpoint fit its model's outputs.
pub fn check_class_names(ckpt: &Path, info: &RunInfo, config: &PerceiverConfig) -> Result<()> {
    let names = &info.data.class_names;
    if !names.is_empty() && config.num_outputs() != Some(names.len()) {
        return Err(CliError::new(format!(
            "{}: lists {} class names but the model in {} has {} outputs",
            ckpt.join(TRAINER_FILE).display(),
            names.len(),
            ckpt.display(),
            config
                .num_outputs()
                .map_or_else(|| "no class".to_string(), |n| n.to_string())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_read_back() {
        let r = EpochRecord {
            epoch: 1,
            train_loss: f64::NAN,
            train_accuracy: 0.5,
            test_loss: Some(f64::INFINITY),
            test_accuracy: None,
            train_s: f64::NEG_INFINITY,
            epoch_s: 2.0,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            text.contains("\"NaN\"") && text.contains("\"inf\"") && text.contains("\"-inf\""),
            "{text}"
        );
        let back: EpochRecord = serde_json::from_str(&text).unwrap();
        assert!(back.train_loss.is_nan());
        assert_eq!(back.test_loss, Some(f64::INFINITY));
        assert_eq!(back.test_accuracy, None);
        assert_eq!(back.train_s, f64::NEG_INFINITY);
        // What serde_json writes for a plain NaN (`null`) reads back too.
        let legacy = text.replace("\"NaN\"", "null");
        let back: EpochRecord = serde_json::from_str(&legacy).unwrap();
        assert!(back.train_loss.is_nan());
        assert!(serde_json::from_str::<EpochRecord>(&text.replace("\"inf\"", "\"many\"")).is_err());
    }
}
