//! Saving and loading the training state ([`Trainer::save_state`], [`Trainer::load_state`]).
//!
//! A state directory `<dir>` holds exactly [`STATE_FILES`]: the model checkpoint
//! (`model.safetensors`, `config.json`), the optimizer state (`optimizer.safetensors`) and
//! `trainer.json` ([`TrainerState`]). A save
//! 1. refuses a parameter or optimizer buffer holding a NaN or an infinity
//!    ([`TrainError::NonFiniteState`]) and counters past [`MAX_COUNTER`], before touching the
//!    disk;
//! 2. checks that `<dir>`, `<dir>.new` and `<dir>.old` are each absent or a directory holding
//!    nothing but the files above: anything else there (a user's folder, file or symlink) is
//!    an error naming the path, and nothing on disk changes;
//! 3. writes everything to `<dir>.new` and reads it back (trainer.json parses,
//!    [`Perceiver::load_checkpoint`] succeeds, the optimizer file decodes to the tensors
//!    written);
//! 4. only then moves `<dir>` to `<dir>.old`, `<dir>.new` to `<dir>`, and removes `<dir>.old`.
//!
//! Directories are only ever removed through [`perceiver_io::remove_owned_dir`] with the
//! names above, so a save never deletes a file it did not write. On any failure, `<dir>` (or
//! `<dir>.old` when a crash left only that) still holds the previous state.

use super::{Result, TrainError, Trainer, TrainerConfig};
use crate::{Perceiver, CONFIG_FILE, WEIGHTS_FILE};
use perceiver_io::{read_string_bounded, remove_owned_dir, FileError, MAX_JSON_BYTES};
use perceiver_nn::io::write_bytes_atomic as write_atomic;
use perceiver_nn::io::{file_err, load_safetensors, save_safetensors};
use perceiver_nn::optim::{LrSchedule, Optimizer};
use perceiver_tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File of the optimizer state inside a training-state directory.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the trainer's counters, RNG state and caller data.
pub const TRAINER_FILE: &str = "trainer.json";
/// Every file a training-state directory holds; a save removes nothing else.
pub const STATE_FILES: [&str; 4] = [WEIGHTS_FILE, CONFIG_FILE, OPTIMIZER_FILE, TRAINER_FILE];
/// Largest step or epoch count: 2^53, so every JSON reader reads the counters exactly.
pub const MAX_COUNTER: u64 = 1 << 53;

/// Counters and caller data saved in `trainer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimisation steps taken (at most [`MAX_COUNTER`]).
    pub step: u64,
    /// Epochs completed (at most [`MAX_COUNTER`]).
    pub epoch: u64,
    /// Dropout RNG seed (hex).
    pub rng_seed: String,
    /// Dropout RNG position in its stream (decimal, a u128).
    pub rng_word_pos: String,
    /// Free-form data of the caller (run settings, ...).
    pub extra: serde_json::Value,
}

impl TrainerState {
    /// The dropout RNG these fields describe, and checks of the counters; errors name
    /// `path` (the `trainer.json` read) and the field.
    fn rng(&self, path: &Path) -> Result<Rng> {
        let bad = |msg: String| format_err(path, msg);
        for (field, v) in [("step", self.step), ("epoch", self.epoch)] {
            if v > MAX_COUNTER {
                return Err(bad(format!("`{field}` = {v} exceeds {MAX_COUNTER}")));
            }
        }
        let seed_hex = &self.rng_seed;
        let digits = || bad("`rng_seed` must be 64 hex digits".into());
        if seed_hex.len() != 64 || !seed_hex.is_ascii() {
            return Err(digits());
        }
        let mut seed = [0u8; 32];
        for (i, s) in seed.iter_mut().enumerate() {
            *s = u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).map_err(|_| digits())?;
        }
        let pos: u128 = self
            .rng_word_pos
            .parse()
            .map_err(|_| bad("`rng_word_pos` must be a non-negative integer".into()))?;
        Ok(Rng::from_state(seed, pos))
    }
}

/// A malformed training-state file (the tensor crate's `Error::Format`, naming the file).
fn format_err(path: &Path, msg: impl ToString) -> TrainError {
    perceiver_tensor::Error::Format {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
    .into()
}

fn io_err(path: &Path, source: std::io::Error) -> TrainError {
    FileError::io(path, source).into()
}

/// `<dir>.<suffix>` (beside `dir`, also when `dir` is written with a trailing `/`).
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = normalized(dir).into_os_string();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// `dir` without a trailing separator or `.` components (`ckpt/` is `ckpt`).
fn normalized(dir: &Path) -> PathBuf {
    dir.components().collect()
}

/// Whether `dir` exists, checking that it is a directory holding nothing but
/// [`STATE_FILES`] (and temporary files of their atomic writes); anything else is the error
/// [`perceiver_io::remove_owned_dir`] would give, and nothing is changed.
fn owned_dir_exists(dir: &Path) -> Result<bool> {
    Ok(perceiver_io::check_owned_dir(dir, &STATE_FILES)?.is_some())
}

/// Removes a state directory the trainer wrote (nothing if it holds anything else).
fn remove_state_dir(dir: &Path) -> Result<()> {
    Ok(remove_owned_dir(dir, &STATE_FILES)?)
}

/// The first named tensor holding a NaN or an infinity.
fn first_non_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
) -> Option<String> {
    tensors.into_iter().find_map(|(name, t)| {
        let finite = match t.as_slice() {
            Some(s) => s.iter().all(|x| x.is_finite()),
            None => t.to_vec().iter().all(|x| x.is_finite()),
        };
        (!finite).then(|| name.to_string())
    })
}

impl Trainer {
    /// Writes the training state to `dir` (see the [module docs](self)); `extra` (the
    /// caller's own settings, any serialisable value) is stored in `trainer.json` and returned
    /// by [`Trainer::load_state`].
    ///
    /// Errors leave the disk as it was: [`TrainError::NonFiniteState`] when a parameter or
    /// optimizer buffer is NaN or infinite; [`TrainError::File`] naming `<dir>`, `<dir>.new`
    /// or `<dir>.old` when one of them holds something the trainer did not write; a write or
    /// read-back error naming the file.
    pub fn save_state(&self, dir: impl AsRef<Path>, extra: &impl Serialize) -> Result<()> {
        let dir = &normalized(dir.as_ref());
        for (counter, value) in [("step", self.step), ("epoch", self.epoch)] {
            if value > MAX_COUNTER {
                return Err(TrainError::CounterOverflow { counter, value });
            }
        }
        let params = self.model.params().to_named_tensors();
        let opt_state = self.optimizer.state();
        let all = params
            .iter()
            .chain(&opt_state)
            .map(|(n, t)| (n.as_str(), t));
        if let Some(tensor) = first_non_finite(all) {
            return Err(TrainError::NonFiniteState { tensor });
        }
        drop(params);
        let extra =
            serde_json::to_value(extra).map_err(|e| format_err(&dir.join(TRAINER_FILE), e))?;
        let (seed, pos) = self.rng.state();
        let state = TrainerState {
            step: self.step,
            epoch: self.epoch,
            rng_seed: seed.iter().map(|b| format!("{b:02x}")).collect(),
            rng_word_pos: pos.to_string(),
            extra,
        };
        let json = serde_json::to_string_pretty(&state)
            .map_err(|e| format_err(&dir.join(TRAINER_FILE), e))?;

        let new = sibling(dir, "new");
        let old = sibling(dir, "old");
        let dir_exists = owned_dir_exists(dir)?;
        owned_dir_exists(&new)?;
        owned_dir_exists(&old)?;
        remove_state_dir(&new)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        }
        std::fs::create_dir(&new).map_err(|e| io_err(&new, e))?;
        let written = self
            .write_state(&new, &opt_state, json.as_bytes())
            .and_then(|()| verify_state(&new, &state, &opt_state));
        if let Err(e) = written {
            let _ = remove_state_dir(&new);
            return Err(e);
        }
        drop(opt_state);
        let swapped = if dir_exists {
            remove_state_dir(&old)
                .and_then(|()| std::fs::rename(dir, &old).map_err(|e| io_err(dir, e)))
                .and_then(|()| {
                    std::fs::rename(&new, dir).map_err(|e| {
                        let _ = std::fs::rename(&old, dir);
                        io_err(dir, e)
                    })
                })
        } else {
            std::fs::rename(&new, dir).map_err(|e| io_err(dir, e))
        };
        if let Err(e) = swapped {
            let _ = remove_state_dir(&new);
            return Err(e);
        }
        perceiver_io::sync_parent(dir);
        // `<dir>` holds the new state; a leftover `<dir>.old` is removed by the next save.
        let _ = remove_state_dir(&old);
        Ok(())
    }

    /// Writes every file of the state into the empty directory `new`.
    fn write_state(&self, new: &Path, opt_state: &[(String, Tensor)], json: &[u8]) -> Result<()> {
        self.model.save_checkpoint(new)?;
        save_safetensors(new.join(OPTIMIZER_FILE), opt_state, None)?;
        write_atomic(new.join(TRAINER_FILE), json)?;
        Ok(())
    }

    /// Reads the state saved by [`Trainer::save_state`] in `dir` (or `<dir>.old` after an
    /// interrupted save): the model, then the optimizer state into `optimizer` (which must be
    /// of the kind that was saved). Returns the trainer and the caller's `extra` value, read as
    /// a `T` (`serde::de::IgnoredAny` to skip it); a value that does not fit is an error naming
    /// `trainer.json`. Counters past [`MAX_COUNTER`] and a malformed RNG state are errors
    /// naming `trainer.json` and the field.
    pub fn load_state<T: serde::de::DeserializeOwned>(
        dir: impl AsRef<Path>,
        mut optimizer: Box<dyn Optimizer>,
        schedule: Box<dyn LrSchedule>,
        config: TrainerConfig,
    ) -> Result<(Trainer, T)> {
        let dir = resolve_state_dir(dir.as_ref());
        let state = read_trainer_state(&dir)?;
        let tpath = dir.join(TRAINER_FILE);
        let rng = state.rng(&tpath)?;
        let model = Perceiver::load_checkpoint(&dir)?;
        let opath = dir.join(OPTIMIZER_FILE);
        let (tensors, _) = load_safetensors(&opath)?;
        optimizer
            .load_state(&tensors)
            .map_err(|e| format_err(&opath, e))?;
        let extra = serde_json::from_value(state.extra).map_err(|e| format_err(&tpath, e))?;
        let trainer = Trainer {
            model,
            optimizer,
            schedule,
            config,
            rng,
            step: state.step,
            epoch: state.epoch,
        };
        Ok((trainer, extra))
    }
}

/// Reads back a state written to `dir`: `trainer.json` equals `state`, the checkpoint loads,
/// and the optimizer file holds the tensors of `opt_state` (same names and shapes).
fn verify_state(dir: &Path, state: &TrainerState, opt_state: &[(String, Tensor)]) -> Result<()> {
    let tpath = dir.join(TRAINER_FILE);
    let back = read_trainer_state(dir)?;
    back.rng(&tpath)?;
    if &back != state {
        return Err(format_err(
            &tpath,
            "reads back different from what was written",
        ));
    }
    Perceiver::load_checkpoint(dir)?;
    let opath = dir.join(OPTIMIZER_FILE);
    let (tensors, _) = load_safetensors(&opath)?;
    let mut want: Vec<(&str, &[usize])> = opt_state
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape()))
        .collect();
    want.sort();
    let got: Vec<(&str, &[usize])> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape()))
        .collect();
    if got != want {
        return Err(format_err(
            &opath,
            "reads back different tensors from those written",
        ));
    }
    Ok(())
}

/// `dir`, or `<dir>.old` when a crash during [`Trainer::save_state`] left only that.
pub fn resolve_state_dir(dir: &Path) -> PathBuf {
    let old = sibling(dir, "old");
    let absent = std::fs::symlink_metadata(dir).is_err();
    if absent && old.join(TRAINER_FILE).is_file() {
        old
    } else {
        dir.to_path_buf()
    }
}

/// Reads `trainer.json` of a training-state directory (at most
/// [`perceiver_io::MAX_JSON_BYTES`]; a FIFO or device in its place is refused at once, naming
/// it).
pub fn read_trainer_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(TRAINER_FILE);
    let text = read_string_bounded(&path, MAX_JSON_BYTES).map_err(file_err)?;
    serde_json::from_str(&text).map_err(|e| format_err(&path, e))
}

#[cfg(test)]
mod tests;
