//! The training engine: one optimisation step, evaluation, and training state that resumes
//! exactly.
//!
//! This module knows nothing about datasets: a batch is plain tensors ([`TrainBatch`]), so any
//! data pipeline can feed it (the `perceiver` CLI wires it to `perceiver-data`).
//!
//! # One step ([`Trainer::step`])
//! `logits = model(inputs, positions, mask, train = true, dropout rng)`,
//! `loss = cross_entropy(logits, labels, label_smoothing)`; a NaN or infinite loss is an error
//! ([`TrainError::NonFinite`]) before anything is updated; then backward, optional clipping of
//! the global gradient norm, and `optimizer.step(params, grads, schedule.lr(step))`.
//!
//! # Training state ([`Trainer::save_state`], [`Trainer::load_state`])
//! A directory with the model checkpoint (`model.safetensors`, `config.json`), the optimizer
//! state (`optimizer.safetensors`: step count and buffers) and `trainer.json` (step, epoch,
//! dropout RNG state and a free-form `extra` JSON value for the caller: the run's settings,
//! data seeds...). A save refuses NaN or infinite weights and optimizer buffers
//! ([`TrainError::NonFiniteState`]), writes everything to `<dir>.new`, reads it back, and only
//! then moves the old directory to `<dir>.old`, the new one into place and removes the old one;
//! it never removes a file it did not write ([`state`] has the details).
//! [`Trainer::load_state`] falls back to `<dir>.old` when a crash left no `<dir>`. Restoring
//! weights, optimizer buffers, step, epoch and RNG state makes the next steps bit-identical to
//! those of an uninterrupted run fed the same batches.
//!
//! # Divergence
//! A NaN or infinite loss or gradient norm stops [`Trainer::step`] before the update. A step
//! whose update itself makes a weight non-finite is caught by the next
//! [`Trainer::save_state`], which refuses to overwrite the last good state. The loss of
//! [`evaluate`] and [`evaluate_batch`] is NaN or infinite when the model's outputs are
//! ([`EvalStats::is_finite`]).
//!
//! ```
//! use perceiver_model::train::{TrainBatch, Trainer, TrainerConfig};
//! use perceiver_model::{Perceiver, PerceiverConfig};
//! use perceiver_nn::optim::{Adam, AdamConfig, Constant};
//! use perceiver_tensor::{Rng, Tensor};
//! let config = PerceiverConfig { input_axes: vec![4, 4], num_latents: 4, latent_dim: 16,
//!     ..PerceiverConfig::default() };
//! let model = Perceiver::new(config, &mut Rng::new(0))?;
//! let opt = Adam::new(AdamConfig::default())?;
//! let mut trainer = Trainer::new(model, Box::new(opt), Box::new(Constant(1e-3)),
//!     TrainerConfig::default(), Rng::new(1));
//! let batch = TrainBatch::new(Tensor::randn(&[2, 4, 4, 1], &mut Rng::new(2)), vec![0, 1]);
//! let stats = trainer.step(&batch)?;
//! assert!(stats.loss.is_finite());
//! assert_eq!(trainer.steps(), 1);
//! # Ok::<(), perceiver_model::train::TrainError>(())
//! ```

use crate::{ModelError, Perceiver};
use perceiver_nn::optim::{clip_grad_norm, global_grad_norm, LrSchedule, Optimizer};
use perceiver_tensor::{no_grad, Rng, Tensor};

pub mod state;

pub use state::{
    read_trainer_state, resolve_state_dir, TrainerState, MAX_COUNTER, OPTIMIZER_FILE, STATE_FILES,
    TRAINER_FILE,
};

/// Errors of the training engine.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model failed (bad input shape, bad checkpoint...).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A tensor operation or the optimizer failed.
    #[error(transparent)]
    Tensor(#[from] perceiver_tensor::Error),
    /// The loss is NaN or infinite; nothing was updated.
    #[error("the loss became {loss} at step {step} (epoch {epoch}); stopping — try a lower learning rate or --clip-norm")]
    NonFinite {
        /// The step (0-based) whose loss is not finite.
        step: u64,
        /// The epoch (0-based) of that step.
        epoch: u64,
        /// The loss value.
        loss: f32,
    },
    /// A batch is inconsistent (labels vs batch size, label out of range).
    #[error("bad batch: {0}")]
    Batch(String),
    /// A parameter or optimizer buffer holds a NaN or infinite value; the state is not saved
    /// and nothing on disk changes.
    #[error("refusing to save the training state: `{tensor}` holds a NaN or infinite value (the last steps diverged; resume from the previous checkpoint with a lower learning rate or --clip-norm)")]
    NonFiniteState {
        /// The parameter (`latents`, `cross.0.attn.to_q.weight`...) or optimizer buffer
        /// (`adam.m.latents`...).
        tensor: String,
    },
    /// A step or epoch counter cannot advance past [`MAX_COUNTER`].
    #[error("the {counter} counter is at {value} and cannot advance past {max}", max = MAX_COUNTER)]
    CounterOverflow {
        /// `step` or `epoch`.
        counter: &'static str,
        /// Its value.
        value: u64,
    },
    /// A file was refused or could not be written (a symlink or a folder of someone else's
    /// files where the training state goes...); names the path.
    #[error(transparent)]
    File(#[from] perceiver_io::FileError),
}

/// Result alias of this module.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// One batch as plain tensors.
#[derive(Clone, Debug)]
pub struct TrainBatch {
    /// `[B, *axes, C]` on the model's grid, or `[B, tokens, C]` with `positions`.
    pub inputs: Tensor,
    /// Explicit positions `[B, tokens, d]` (point clouds, permuted pixels).
    pub positions: Option<Tensor>,
    /// Key padding mask `[B, tokens]` (non-zero = attend).
    pub mask: Option<Tensor>,
    /// One class label per example.
    pub labels: Vec<usize>,
}

impl TrainBatch {
    /// A batch on the model's grid, without positions or mask.
    pub fn new(inputs: Tensor, labels: Vec<usize>) -> Self {
        TrainBatch {
            inputs,
            positions: None,
            mask: None,
            labels,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the batch has no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Options of the [`Trainer`]; the default is no label smoothing and no clipping.
///
/// ```
/// use perceiver_model::{Perceiver, PerceiverConfig, Rng, Tensor};
/// use perceiver_model::{TrainBatch, TrainError, Trainer, TrainerConfig};
/// use perceiver_nn::optim::{Constant, Sgd, SgdConfig};
/// assert_eq!(TrainerConfig::default(), TrainerConfig { label_smoothing: 0.0, clip_norm: None });
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     ..PerceiverConfig::default()
/// };
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let before: Vec<Vec<f32>> = model.params().iter().map(|p| p.value().to_vec()).collect();
/// // Clip the global gradient norm to 1e-3: one SGD step at lr 0.1 moves the weights by at
/// // most 1e-4 (in L2 norm over every parameter).
/// let opts = TrainerConfig { label_smoothing: 0.1, clip_norm: Some(1e-3) };
/// let sgd = Box::new(Sgd::new(SgdConfig::default())?);
/// let mut trainer = Trainer::new(model, sgd, Box::new(Constant(0.1)), opts, Rng::new(1));
/// assert_eq!(trainer.config().clip_norm, Some(1e-3));
/// let batch = TrainBatch::new(Tensor::randn(&[2, 4, 4, 1], &mut Rng::new(2)), vec![0, 1]);
/// let stats = trainer.step(&batch)?;
/// assert!(stats.grad_norm > 1e-3); // the norm before clipping
/// let moved: f32 = trainer.model().params().iter().zip(&before)
///     .flat_map(|(p, b)| p.value().to_vec().into_iter().zip(b.clone()))
///     .map(|(a, b)| (a - b) * (a - b))
///     .sum();
/// assert!(moved.sqrt() <= 1.01e-4, "{}", moved.sqrt());
/// # Ok::<(), TrainError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub struct TrainerConfig {
    /// Label smoothing of the cross-entropy, in `[0, 1)`.
    pub label_smoothing: f32,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub clip_norm: Option<f32>,
}

/// What one step measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// Mean loss of the batch (before the update).
    pub loss: f32,
    /// Correctly classified examples of the batch (before the update).
    pub correct: usize,
    /// Examples in the batch.
    pub count: usize,
    /// Learning rate used.
    pub lr: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// Loss and accuracy over a set of batches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvalStats {
    /// Mean cross-entropy (without label smoothing) over all examples; NaN or infinite when
    /// any batch's loss was (a diverged model): check [`EvalStats::is_finite`] before
    /// reporting or comparing it.
    pub loss: f64,
    /// Correctly classified examples.
    pub correct: usize,
    /// Examples seen.
    pub count: usize,
    /// Per label: `[correct, examples]` (filled by [`evaluate`] and [`evaluate_batch`]).
    pub per_class: Vec<[usize; 2]>,
}

impl EvalStats {
    /// True when the loss is a finite number (false for a diverged model).
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite()
    }

    /// `correct / count` (0 when empty).
    pub fn accuracy(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.correct as f64 / self.count as f64
        }
    }

    /// Accuracy on each label (`None` for a label with no examples).
    pub fn class_accuracies(&self) -> Vec<Option<f64>> {
        self.per_class
            .iter()
            .map(|&[c, n]| (n > 0).then(|| c as f64 / n as f64))
            .collect()
    }

    /// Adds a batch of `count` examples with mean loss `loss` and `correct` hits (the
    /// per-class counts are left to the caller).
    pub fn add(&mut self, loss: f64, correct: usize, count: usize) {
        let total = self.count + count;
        if total > 0 {
            self.loss = (self.loss * self.count as f64 + loss * count as f64) / total as f64;
        }
        self.correct += correct;
        self.count = total;
    }
}

/// Number of rows of `logits` `[B, K]` whose arg-max equals the label.
pub fn count_correct(logits: &Tensor, labels: &[usize]) -> usize {
    let k = logits.shape().last().copied().unwrap_or(1).max(1);
    let v = logits.to_vec();
    v.chunks(k)
        .zip(labels)
        .filter(|(row, &l)| argmax(row) == l)
        .count()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// `value + 1`, or [`TrainError::CounterOverflow`] past [`MAX_COUNTER`].
fn advance(counter: &'static str, value: u64) -> Result<u64> {
    value
        .checked_add(1)
        .filter(|&v| v <= MAX_COUNTER)
        .ok_or(TrainError::CounterOverflow { counter, value })
}

fn check_batch(model: &Perceiver, b: &TrainBatch) -> Result<()> {
    let n = b.inputs.shape().first().copied().unwrap_or(0);
    if b.labels.len() != n {
        return Err(TrainError::Batch(format!(
            "{} labels for {n} examples",
            b.labels.len()
        )));
    }
    if let Some(k) = model.config().num_outputs() {
        if let Some(&l) = b.labels.iter().find(|&&l| l >= k) {
            return Err(TrainError::Batch(format!(
                "label {l} is out of range for a model with {k} classes"
            )));
        }
    }
    Ok(())
}

/// Class probabilities `[B, K]` (softmax of the logits), without dropout or gradients.
pub fn predict_proba(model: &Perceiver, batch: &TrainBatch) -> Result<Tensor> {
    no_grad(|| {
        let out = model.forward_with(
            &batch.inputs,
            crate::ForwardOptions {
                mask: batch.mask.as_ref(),
                positions: batch.positions.as_ref(),
                train: false,
                rng: None,
            },
        )?;
        let r = out.logits.rank();
        Ok(out.logits.softmax(r - 1)?)
    })
}

/// Loss and accuracy of `model` over `batches` (no dropout, no gradients). A NaN or
/// infinite loss is returned as such, not as an error: see [`EvalStats::is_finite`].
pub fn evaluate<I>(model: &Perceiver, batches: I) -> Result<EvalStats>
where
    I: IntoIterator<Item = Result<TrainBatch>>,
{
    let mut stats = EvalStats::default();
    for b in batches {
        let b = b?;
        stats = evaluate_batch(model, &b, stats)?;
    }
    Ok(stats)
}

/// Adds one batch to `stats` (see [`evaluate`]).
pub fn evaluate_batch(
    model: &Perceiver,
    b: &TrainBatch,
    mut stats: EvalStats,
) -> Result<EvalStats> {
    check_batch(model, b)?;
    no_grad(|| -> Result<()> {
        let out = model.forward_with(
            &b.inputs,
            crate::ForwardOptions {
                mask: b.mask.as_ref(),
                positions: b.positions.as_ref(),
                train: false,
                rng: None,
            },
        )?;
        let loss = out.logits.cross_entropy(&b.labels, 0.0)?.to_scalar()?;
        let k = out.logits.shape().last().copied().unwrap_or(1).max(1);
        let logits = out.logits.to_vec();
        let mut correct = 0;
        for (row, &l) in logits.chunks(k).zip(&b.labels) {
            if stats.per_class.len() <= l {
                stats.per_class.resize(l + 1, [0, 0]);
            }
            let hit = argmax(row) == l;
            correct += hit as usize;
            stats.per_class[l][0] += hit as usize;
            stats.per_class[l][1] += 1;
        }
        stats.add(loss as f64, correct, b.len());
        Ok(())
    })?;
    Ok(stats)
}

/// Trains a [`Perceiver`] with an [`Optimizer`] and an [`LrSchedule`].
///
/// ```
/// use perceiver_model::train::{evaluate, TrainBatch, Trainer, TrainerConfig};
/// use perceiver_model::{Perceiver, PerceiverConfig, HeadConfig, Rng, Tensor};
/// use perceiver_nn::optim::{Adam, AdamConfig, Constant};
/// let config = PerceiverConfig {
///     head: HeadConfig::Classifier { num_classes: 2, layer_norm: true },
///     ..PerceiverConfig::default()
/// };
/// // A batch of 4 inputs `[4, *axes, channels]` in the config's shape.
/// let shape: Vec<usize> = [4].iter().chain(&config.input_axes).chain([&config.input_channels]).copied().collect();
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let opt = Box::new(Adam::new(AdamConfig::default())?);
/// let mut trainer = Trainer::new(model, opt, Box::new(Constant(1e-3)), TrainerConfig::default(), Rng::new(1));
/// let batch = TrainBatch::new(Tensor::randn(&shape, &mut Rng::new(2)), vec![0, 1, 0, 1]);
/// let first = trainer.step(&batch)?.loss;
/// for _ in 0..20 {
///     trainer.step(&batch)?;
/// }
/// let stats = evaluate(trainer.model(), [Ok(batch)])?;
/// assert!(stats.loss < first as f64);
/// assert_eq!(trainer.steps(), 21);
/// # Ok::<(), perceiver_model::TrainError>(())
/// ```
pub struct Trainer {
    model: Perceiver,
    optimizer: Box<dyn Optimizer>,
    schedule: Box<dyn LrSchedule>,
    config: TrainerConfig,
    rng: Rng,
    step: u64,
    epoch: u64,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("step", &self.step)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer at step 0, epoch 0; `rng` drives dropout.
    pub fn new(
        model: Perceiver,
        optimizer: Box<dyn Optimizer>,
        schedule: Box<dyn LrSchedule>,
        config: TrainerConfig,
        rng: Rng,
    ) -> Self {
        Trainer {
            model,
            optimizer,
            schedule,
            config,
            rng,
            step: 0,
            epoch: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> &Perceiver {
        &self.model
    }

    /// The options.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Epochs completed (as recorded by [`Trainer::finish_epoch`]).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records that an epoch is complete; an epoch count at [`MAX_COUNTER`] is
    /// [`TrainError::CounterOverflow`] and stays unchanged.
    pub fn finish_epoch(&mut self) -> Result<()> {
        self.epoch = advance("epoch", self.epoch)?;
        Ok(())
    }

    /// The learning rate of the next step.
    pub fn next_lr(&self) -> f32 {
        self.schedule.lr(self.step)
    }

    /// One optimisation step on `batch` (see the module docs).
    pub fn step(&mut self, batch: &TrainBatch) -> Result<StepStats> {
        check_batch(&self.model, batch)?;
        let next = advance("step", self.step)?;
        let out = self.model.forward_with(
            &batch.inputs,
            crate::ForwardOptions {
                mask: batch.mask.as_ref(),
                positions: batch.positions.as_ref(),
                train: true,
                rng: Some(&mut self.rng),
            },
        )?;
        let loss = out
            .logits
            .cross_entropy(&batch.labels, self.config.label_smoothing)?;
        let value = loss.to_scalar()?;
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                step: self.step,
                epoch: self.epoch,
                loss: value,
            });
        }
        let correct = count_correct(&out.logits.detach(), &batch.labels);
        let mut grads = loss.backward()?;
        let params = self.model.params();
        let grad_norm = match self.config.clip_norm {
            Some(max) => clip_grad_norm(params, &mut grads, max)?,
            None => global_grad_norm(params, &grads),
        };
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: self.step,
                epoch: self.epoch,
                loss: grad_norm,
            });
        }
        let lr = self.schedule.lr(self.step);
        self.optimizer.step(params, &grads, lr)?;
        self.step = next;
        Ok(StepStats {
            loss: value,
            correct,
            count: batch.len(),
            lr,
            grad_norm,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PerceiverConfig;
    use perceiver_nn::optim::{Adam, AdamConfig, Cosine};

    /// A small model configuration for the training tests (shared with `state`'s tests).
    pub(super) fn tiny() -> PerceiverConfig {
        PerceiverConfig {
            input_axes: vec![4, 4],
            num_latents: 4,
            latent_dim: 16,
            ..PerceiverConfig::default()
        }
    }

    fn batches() -> Vec<TrainBatch> {
        let mut rng = Rng::new(5);
        (0..4)
            .map(|i| {
                TrainBatch::new(
                    Tensor::randn(&[3, 4, 4, 1], &mut rng),
                    vec![i % 10, (i + 1) % 10, (i + 2) % 10],
                )
            })
            .collect()
    }

    fn trainer() -> Trainer {
        let model = Perceiver::new(tiny(), &mut Rng::new(0)).unwrap();
        Trainer::new(
            model,
            Box::new(Adam::new(AdamConfig::adamw(0.01)).unwrap()),
            Box::new(Cosine::new(1e-3, 0.0, 8)),
            TrainerConfig {
                label_smoothing: 0.1,
                clip_norm: Some(1.0),
            },
            Rng::new(1),
        )
    }

    #[test]
    fn resume_reproduces_the_losses() {
        let bs = batches();
        let mut a = trainer();
        let straight: Vec<f32> = bs
            .iter()
            .chain(bs.iter())
            .map(|b| a.step(b).unwrap().loss)
            .collect();
        let mut b = trainer();
        let mut resumed: Vec<f32> = bs.iter().map(|x| b.step(x).unwrap().loss).collect();
        b.finish_epoch().unwrap();
        let dir = std::env::temp_dir().join(format!("perceiver-train-{}", std::process::id()));
        b.save_state(&dir, &serde_json::json!({"k": 1})).unwrap();
        // A second save replaces the first atomically.
        b.save_state(&dir, &serde_json::json!({"k": 2})).unwrap();
        let (mut c, extra): (Trainer, serde_json::Value) = Trainer::load_state(
            &dir,
            Box::new(Adam::new(AdamConfig::adamw(0.01)).unwrap()),
            Box::new(Cosine::new(1e-3, 0.0, 8)),
            b.config().clone(),
        )
        .unwrap();
        assert_eq!(extra["k"], 2);
        assert_eq!(c.steps(), 4);
        assert_eq!(c.epoch(), 1);
        resumed.extend(bs.iter().map(|x| c.step(x).unwrap().loss));
        assert_eq!(straight, resumed);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_finite_loss_is_an_error_and_changes_nothing() {
        let mut t = trainer();
        let x = Tensor::full(&[1, 4, 4, 1], f32::NAN);
        let before = t.model().params().to_named_tensors()[0].1.to_vec();
        let e = t.step(&TrainBatch::new(x, vec![0])).unwrap_err();
        assert!(matches!(e, TrainError::NonFinite { .. }), "{e}");
        assert_eq!(t.steps(), 0);
        assert_eq!(t.model().params().to_named_tensors()[0].1.to_vec(), before);
    }

    #[test]
    fn bad_labels_are_rejected() {
        let mut t = trainer();
        let x = Tensor::zeros(&[2, 4, 4, 1]);
        assert!(t.step(&TrainBatch::new(x.clone(), vec![0])).is_err());
        assert!(t.step(&TrainBatch::new(x, vec![0, 10])).is_err());
    }

    #[test]
    fn a_non_finite_evaluation_loss_is_reported_as_such() {
        let t = trainer();
        let fine = evaluate(t.model(), batches().into_iter().map(Ok)).unwrap();
        assert!(fine.is_finite());
        // A diverged model: one output bias became NaN.
        let bias = t.model().params().get("head.fc.bias").unwrap();
        bias.update(|v| v[0] = f32::NAN);
        let s = evaluate(t.model(), batches().into_iter().map(Ok)).unwrap();
        assert!(!s.is_finite() && !s.loss.is_finite(), "{s:?}");
        assert_eq!(s.count, 12);
    }

    #[test]
    fn evaluation_counts() {
        let t = trainer();
        let s = evaluate(t.model(), batches().into_iter().map(Ok)).unwrap();
        assert_eq!(s.count, 12);
        assert!(s.loss.is_finite() && s.accuracy() <= 1.0);
        // The per-class counts add up to the totals, label by label.
        let mut per_label = vec![0usize; s.per_class.len()];
        for b in batches() {
            for &l in &b.labels {
                per_label[l] += 1;
            }
        }
        assert_eq!(
            s.per_class.iter().map(|c| c[1]).collect::<Vec<_>>(),
            per_label
        );
        assert_eq!(s.per_class.iter().map(|c| c[0]).sum::<usize>(), s.correct);
        let acc = s.class_accuracies();
        for (a, c) in acc.iter().zip(&s.per_class) {
            assert_eq!(a.is_some(), c[1] > 0);
        }
        let p = predict_proba(t.model(), &batches()[0]).unwrap();
        let v = p.to_vec();
        assert!((v[..10].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
