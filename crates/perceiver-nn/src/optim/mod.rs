//! Optimizers, gradient clipping and learning-rate schedules.
//!
//! # Pieces
//! - [`Optimizer`]: the common interface. `step(params, grads, lr)` updates every parameter of a
//!   [`ParamStore`] in place from its gradient in [`Grads`], using the learning rate `lr` that the
//!   caller takes from a schedule. [`Optimizer::state`] / [`Optimizer::load_state`] export and
//!   restore the optimizer's buffers and step count as named tensors, so a run resumes exactly
//!   (save them with [`crate::io::save_safetensors`]).
//! - [`Sgd`] (momentum, Nesterov, L2 weight decay), [`Adam`] (Adam with L2 weight decay coupled
//!   into the gradient, or AdamW with decoupled weight decay), [`Lamb`] (Adam moments, decoupled
//!   weight decay, per-parameter trust ratio). Each module's docs give its formulas.
//! - [`clip_grad_norm`]: clips all gradients together by their global L2 norm.
//! - [`LrSchedule`] and its implementations: [`Constant`], [`LinearWarmup`], [`StepDecay`],
//!   [`Cosine`], [`ConstantThenCosine`].
//!
//! # Rules shared by every optimizer
//! - **Every optimized parameter must have a gradient.** A parameter of the store that received
//!   none makes `step` return [`Error::NoGradient`] naming it (all such names, comma separated),
//!   before any parameter is changed. Parameters listed in the config's `frozen` set are skipped:
//!   never updated, no gradient required.
//! - **Weight decay** applies only to parameters that [`DecayRule::decays`] accepts; by default
//!   biases, normalisation parameters and 1-D parameters are excluded (see [`DecayRule`]).
//! - **Step count.** The count of steps taken is global to the optimizer (bias corrections use
//!   it); a parameter that appears later starts from zero buffers.
//! - **State names** are `<optimizer>.step` (a rank-0 f32 tensor, exact up to 2^24 steps) and
//!   `<optimizer>.<buffer>.<parameter name>`, for instance `adam.m.layers.0.to_q.weight`.
//!
//! # Example
//! ```
//! use perceiver_nn::optim::{Adam, AdamConfig, ConstantThenCosine, LrSchedule, Optimizer};
//! use perceiver_nn::ParamStore;
//! use perceiver_tensor::{Rng, Tensor};
//! let mut rng = Rng::new(0);
//! let mut params = ParamStore::new();
//! let w = params.add("w", Tensor::randn(&[3, 2], &mut rng))?;
//! let x = Tensor::randn(&[4, 3], &mut rng);
//! let mut opt = Adam::new(AdamConfig::adamw(0.01))?;
//! let schedule = ConstantThenCosine::new(1e-2, 10, 0.5);
//! for step in 0..10 {
//!     let loss = x.matmul(&w.tensor())?.cross_entropy(&[0, 1, 0, 1], 0.0)?;
//!     let grads = loss.backward()?;
//!     opt.step(&params, &grads, schedule.lr(step))?;
//! }
//! assert_eq!(opt.steps(), 10);
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```

mod adam;
mod clip;
mod lamb;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::{clip_grad_norm, global_grad_norm};
pub use lamb::{Lamb, LambConfig};
pub use schedule::{Constant, ConstantThenCosine, Cosine, LinearWarmup, LrSchedule, StepDecay};
pub use sgd::{Sgd, SgdConfig};

use crate::{Param, ParamStore};
use perceiver_tensor::{Error, Grads, Result, Tensor};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// A first-order optimizer that updates a [`ParamStore`] in place.
pub trait Optimizer: Send {
    /// Applies one update to every parameter of `params` that is not frozen, from its gradient in
    /// `grads`, with learning rate `lr` (finite, `>= 0`).
    ///
    /// Errors, before changing anything: [`Error::NoGradient`] when a non-frozen parameter has
    /// no gradient; [`Error::InvalidArgument`] for a bad `lr`; a shape error when a loaded state
    /// buffer does not match its parameter.
    fn step(&mut self, params: &ParamStore, grads: &Grads, lr: f32) -> Result<()>;

    /// Number of steps taken so far (restored by [`Optimizer::load_state`]).
    fn steps(&self) -> u64;

    /// The step count and every buffer as named tensors (see the module docs for the names).
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Replaces the whole state with one exported by [`Optimizer::state`] of the same kind of
    /// optimizer. Unknown names, a missing step count or incomplete buffers are errors.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()>;
}

/// Which parameters receive weight decay.
///
/// The default predicate ([`DecayRule::is_default_excluded`]) excludes a parameter when
/// - its name ends in `bias` (`to_out.bias`, `attn_bias`, `bias`), or
/// - its name contains `norm`, ignoring case (`norm.weight`, `layernorm.weight`,
///   `LayerNorm.weight`), or
/// - it has at most one dimension (biases, LayerNorm scales, scalars).
///
/// Parameters named in `exclude` never decay, whatever the predicate says.
///
/// ```
/// use perceiver_nn::optim::DecayRule;
/// let rule = DecayRule::default().excluding(["latents"]);
/// assert!(rule.decays("layers.0.to_q.weight", &[64, 64]));
/// assert!(!rule.decays("layers.0.to_q.bias", &[64]));
/// assert!(!rule.decays("layers.0.norm.weight", &[64]));
/// assert!(!rule.decays("latents", &[16, 64]));
/// assert!(DecayRule::all().decays("head.bias", &[10]));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecayRule {
    /// Apply the default predicate (biases, norms, 1-D parameters excluded).
    pub exclude_default: bool,
    /// Names excluded explicitly.
    pub exclude: BTreeSet<String>,
}

impl Default for DecayRule {
    fn default() -> Self {
        DecayRule {
            exclude_default: true,
            exclude: BTreeSet::new(),
        }
    }
}

impl DecayRule {
    /// Every parameter decays (no exclusion).
    pub fn all() -> Self {
        DecayRule {
            exclude_default: false,
            exclude: BTreeSet::new(),
        }
    }

    /// This rule, with `names` also excluded.
    pub fn excluding<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.exclude.extend(names.into_iter().map(Into::into));
        self
    }

    /// The default predicate: true for biases, normalisation parameters and 1-D parameters.
    pub fn is_default_excluded(name: &str, shape: &[usize]) -> bool {
        name.ends_with("bias") || name.to_ascii_lowercase().contains("norm") || shape.len() <= 1
    }

    /// True when the parameter `name` of shape `shape` receives weight decay.
    pub fn decays(&self, name: &str, shape: &[usize]) -> bool {
        !(self.exclude.contains(name)
            || (self.exclude_default && Self::is_default_excluded(name, shape)))
    }
}

/// Parameters of at least this many elements are updated in parallel chunks.
pub(crate) const PAR_MIN: usize = 1 << 16;
/// Chunk length of the parallel (and the reduction) loops.
pub(crate) const CHUNK: usize = 1 << 14;

/// A parameter to update and its gradient as a contiguous slice.
pub(crate) struct Work<'a> {
    pub param: &'a Param,
    pub grad: Cow<'a, [f32]>,
    pub shape: Vec<usize>,
}

/// Checks `lr`.
#[track_caller]
pub(crate) fn check_lr(op: &'static str, lr: f32) -> Result<()> {
    if !lr.is_finite() || lr < 0.0 {
        return Err(Error::invalid(
            op,
            format!("learning rate must be finite and >= 0, got {lr}"),
        ));
    }
    Ok(())
}

/// The gradient of every non-frozen parameter, or [`Error::NoGradient`] naming all that lack one.
#[track_caller]
pub(crate) fn gather_work<'a>(
    op: &'static str,
    params: &'a ParamStore,
    grads: &'a Grads,
    frozen: &BTreeSet<String>,
) -> Result<Vec<Work<'a>>> {
    let mut work = Vec::with_capacity(params.len());
    let mut missing = Vec::new();
    for param in params.iter() {
        if frozen.contains(param.name()) {
            continue;
        }
        match param.grad(grads) {
            Ok(g) => {
                let shape = param.shape();
                if g.shape() != shape.as_slice() {
                    return Err(Error::shape(
                        op,
                        format!(
                            "gradient of `{}` must have the parameter's shape",
                            param.name()
                        ),
                        &shape,
                        g.shape(),
                    ));
                }
                work.push(Work {
                    param,
                    grad: g.contiguous_data(),
                    shape,
                });
            }
            Err(_) => missing.push(param.name().to_string()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::NoGradient {
            name: missing.join(", "),
        });
    }
    Ok(work)
}

/// Checks that a state buffer matches its parameter's shape.
#[track_caller]
pub(crate) fn check_buffer(
    op: &'static str,
    name: &str,
    buf: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if buf.shape() != shape {
        return Err(Error::shape(
            op,
            format!("optimizer state for `{name}` does not match the parameter's shape"),
            buf.shape(),
            shape,
        ));
    }
    Ok(())
}

/// The largest step count a rank-0 f32 tensor holds exactly.
const MAX_EXACT_STEP: u64 = 1 << 24;

/// Exports `<prefix>.step` and `<prefix>.<kind>.<param>` for every buffer.
pub(crate) fn export_state(
    prefix: &str,
    step: u64,
    buffers: &[(&str, Vec<(&String, &Tensor)>)],
) -> Vec<(String, Tensor)> {
    let mut out = vec![(format!("{prefix}.step"), Tensor::scalar(step as f32))];
    for (kind, entries) in buffers {
        for (name, t) in entries {
            out.push((format!("{prefix}.{kind}.{name}"), (*t).clone()));
        }
    }
    out
}

/// Parses a state exported by [`export_state`]: the step count and, for each of `kinds`, the
/// buffers by parameter name.
#[track_caller]
pub(crate) fn parse_state(
    op: &'static str,
    prefix: &str,
    kinds: &[&str],
    state: &[(String, Tensor)],
) -> Result<(u64, Vec<BTreeMap<String, Tensor>>)> {
    let mut step = None;
    let mut maps = vec![BTreeMap::new(); kinds.len()];
    for (key, t) in state {
        let rest = key
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(|| {
                Error::invalid(
                    op,
                    format!("state entry `{key}` does not belong to a `{prefix}` optimizer"),
                )
            })?;
        if rest == "step" {
            let v = if t.numel() == 1 {
                t.to_vec()[0]
            } else {
                f32::NAN
            };
            if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as u64) <= MAX_EXACT_STEP) {
                return Err(Error::invalid(
                    op,
                    format!(
                        "`{key}` must be one non-negative integer, got shape {:?}",
                        t.shape()
                    ),
                ));
            }
            step = Some(v as u64);
            continue;
        }
        let (kind, name) = rest.split_once('.').unwrap_or((rest, ""));
        let Some(k) = kinds.iter().position(|&x| x == kind) else {
            return Err(Error::invalid(
                op,
                format!("unknown state entry `{key}` (expected `{prefix}.step` or `{prefix}.<{}>.<param>`)", kinds.join("|")),
            ));
        };
        if name.is_empty() {
            return Err(Error::invalid(
                op,
                format!("state entry `{key}` names no parameter"),
            ));
        }
        if maps[k]
            .insert(name.to_string(), t.detach().contiguous())
            .is_some()
        {
            return Err(Error::invalid(op, format!("duplicate state entry `{key}`")));
        }
    }
    let step = step.ok_or_else(|| Error::invalid(op, format!("state has no `{prefix}.step`")))?;
    // Buffers of one parameter come together and agree in shape.
    for (k, map) in maps.iter().enumerate() {
        for (name, t) in map {
            for (j, other) in maps.iter().enumerate() {
                match other.get(name) {
                    None => {
                        return Err(Error::invalid(
                            op,
                            format!(
                                "state has `{prefix}.{}.{name}` but not `{prefix}.{}.{name}`",
                                kinds[k], kinds[j]
                            ),
                        ))
                    }
                    Some(o) if o.shape() != t.shape() => {
                        return Err(Error::shape(
                            op,
                            format!("state buffers of `{name}` differ in shape"),
                            t.shape(),
                            o.shape(),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok((step, maps))
}

/// Sum of squares in f64, summed chunk by chunk in a fixed order.
pub(crate) fn sum_sq(x: &[f32]) -> f64 {
    let chunk = |c: &[f32]| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
    if x.len() >= PAR_MIN {
        use rayon::prelude::*;
        let parts: Vec<f64> = x.par_chunks(CHUNK).map(chunk).collect();
        parts.iter().sum()
    } else {
        x.chunks(CHUNK).map(chunk).sum()
    }
}
