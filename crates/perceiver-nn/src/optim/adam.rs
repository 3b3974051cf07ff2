//! Adam and AdamW, as PyTorch's `torch.optim.Adam` and `torch.optim.AdamW` compute them.
//!
//! For each parameter `w` with gradient `g`, at step `t` (1-based), learning rate `lr`:
//! ```text
//! Adam  (L2 decay coupled into the gradient):   g = g + wd * w
//! AdamW (decoupled decay):                      w = w * (1 - lr * wd)
//! m    = b1 * m + (1 - b1) * g
//! v    = b2 * v + (1 - b2) * g^2
//! mhat = m / (1 - b1^t),   vhat = v / (1 - b2^t)
//! w    = w - lr * mhat / (sqrt(vhat) + eps)
//! ```
//! `wd` is 0 for parameters the [`DecayRule`] excludes. With Adam the decay is scaled by the
//! adaptive denominator like the rest of the gradient; with AdamW it shrinks every weight by the
//! same factor (Loshchilov and Hutter, "Decoupled weight decay regularization").

use super::{
    check_buffer, check_lr, export_state, gather_work, parse_state, DecayRule, Optimizer, CHUNK,
    PAR_MIN,
};
use crate::ParamStore;
use perceiver_tensor::{Error, Grads, Result, Tensor};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Hyper-parameters of [`Adam`]. The defaults are PyTorch's Adam (`b1 = 0.9`, `b2 = 0.999`,
/// `eps = 1e-8`, no weight decay); [`AdamConfig::adamw`] gives AdamW.
///
/// ```
/// use perceiver_nn::optim::{Adam, AdamConfig, Optimizer};
/// use perceiver_nn::ParamStore;
/// use perceiver_tensor::Tensor;
/// let config = AdamConfig::default();
/// assert_eq!((config.beta1, config.beta2, config.eps), (0.9, 0.999, 1e-8));
/// assert!(!config.decoupled && config.weight_decay == 0.0);
/// assert_eq!(Adam::new(AdamConfig::adamw(0.01))?.prefix(), "adamw");
/// // Adam's first step moves each weight by `lr` against its gradient; a frozen parameter
/// // is left alone and needs no gradient.
/// let mut params = ParamStore::new();
/// let w = params.add("w", Tensor::ones(&[2]))?;
/// let frozen = params.add("frozen", Tensor::ones(&[2]))?;
/// let grads = w.tensor().sum_all().backward()?;
/// let mut adam = Adam::new(AdamConfig::default().freeze(["frozen"]))?;
/// adam.step(&params, &grads, 0.1)?;
/// assert!(w.value().to_vec().iter().all(|&v| (v - 0.9).abs() < 1e-6));
/// assert_eq!(frozen.value().to_vec(), vec![1.0, 1.0]);
/// // Out-of-range hyper-parameters are refused when the optimizer is built.
/// let err = Adam::new(AdamConfig::default().with_betas(1.0, 0.999)).unwrap_err();
/// assert!(err.to_string().contains("beta1"));
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f32,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f32,
    /// Added to `sqrt(vhat)` (`> 0`).
    pub eps: f32,
    /// Weight decay `wd` (`>= 0`).
    pub weight_decay: f32,
    /// `false`: Adam (decay added to the gradient); `true`: AdamW (decoupled decay).
    pub decoupled: bool,
    /// Which parameters decay.
    pub decay_rule: DecayRule,
    /// Parameters never updated (and not required to have a gradient).
    pub frozen: BTreeSet<String>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            decay_rule: DecayRule::default(),
            frozen: BTreeSet::new(),
        }
    }
}

impl AdamConfig {
    /// AdamW with decoupled weight decay `wd`, other values default.
    pub fn adamw(wd: f32) -> Self {
        AdamConfig {
            weight_decay: wd,
            decoupled: true,
            ..Self::default()
        }
    }

    /// Adam with L2 weight decay `wd` coupled into the gradient, other values default.
    pub fn adam_l2(wd: f32) -> Self {
        AdamConfig {
            weight_decay: wd,
            ..Self::default()
        }
    }

    /// This config with betas `b1`, `b2`.
    pub fn with_betas(mut self, b1: f32, b2: f32) -> Self {
        self.beta1 = b1;
        self.beta2 = b2;
        self
    }

    /// This config with `eps`.
    pub fn with_eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }

    /// This config with `names` frozen.
    pub fn freeze<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.frozen.extend(names.into_iter().map(Into::into));
        self
    }
}

/// Checks betas, eps and weight decay shared by Adam and LAMB.
#[track_caller]
pub(crate) fn check_adam_hparams(
    op: &'static str,
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
) -> Result<()> {
    for (name, b) in [("beta1", b1), ("beta2", b2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(Error::invalid(
                op,
                format!("{name} must be in [0, 1), got {b}"),
            ));
        }
    }
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::invalid(
            op,
            format!("eps must be finite and > 0, got {eps}"),
        ));
    }
    if !(wd.is_finite() && wd >= 0.0) {
        return Err(Error::invalid(
            op,
            format!("weight_decay must be finite and >= 0, got {wd}"),
        ));
    }
    Ok(())
}

/// The moments of one parameter.
#[derive(Clone, Debug)]
pub(crate) struct Moments {
    pub m: Tensor,
    pub v: Tensor,
}

/// Validates that existing moments match the parameters' shapes, then creates missing ones.
pub(crate) fn moments_for(
    op: &'static str,
    slots: &mut BTreeMap<String, Moments>,
    work: &[super::Work<'_>],
) -> Result<()> {
    for item in work {
        if let Some(s) = slots.get(item.param.name()) {
            check_buffer(op, item.param.name(), &s.m, &item.shape)?;
            check_buffer(op, item.param.name(), &s.v, &item.shape)?;
        }
    }
    for item in work {
        slots
            .entry(item.param.name().to_string())
            .or_insert_with(|| Moments {
                m: Tensor::zeros(&item.shape),
                v: Tensor::zeros(&item.shape),
            });
    }
    Ok(())
}

/// Exports moments under `<prefix>.m.<name>` and `<prefix>.v.<name>`.
pub(crate) fn export_moments(
    prefix: &str,
    step: u64,
    slots: &BTreeMap<String, Moments>,
) -> Vec<(String, Tensor)> {
    export_state(
        prefix,
        step,
        &[
            ("m", slots.iter().map(|(n, s)| (n, &s.m)).collect()),
            ("v", slots.iter().map(|(n, s)| (n, &s.v)).collect()),
        ],
    )
}

/// Parses moments exported by [`export_moments`].
#[track_caller]
pub(crate) fn parse_moments(
    op: &'static str,
    prefix: &str,
    state: &[(String, Tensor)],
) -> Result<(u64, BTreeMap<String, Moments>)> {
    let (step, mut maps) = parse_state(op, prefix, &["m", "v"], state)?;
    let mut vs = maps.pop().expect("two maps");
    let ms = maps.pop().expect("two maps");
    let slots = ms
        .into_iter()
        .map(|(name, m)| {
            let v = vs.remove(&name).expect("parse_state pairs the buffers");
            (name, Moments { m, v })
        })
        .collect();
    Ok((step, slots))
}

/// Constants of one Adam step.
#[derive(Clone, Copy)]
struct Step {
    b1: f32,
    b2: f32,
    eps: f32,
    /// `1 - b1^t`.
    bc1: f32,
    /// `1 - b2^t`.
    bc2: f32,
    lr: f32,
    /// Coupled L2 decay added to the gradient.
    l2: f32,
    /// Decoupled shrink factor `1 - lr * wd`.
    shrink: f32,
}

fn kernel(w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], s: Step) {
    for (((w, m), v), &g) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
        let g = g + s.l2 * *w;
        *m = s.b1 * *m + (1.0 - s.b1) * g;
        *v = s.b2 * *v + (1.0 - s.b2) * g * g;
        let mhat = *m / s.bc1;
        let vhat = *v / s.bc2;
        *w = *w * s.shrink - s.lr * mhat / (vhat.sqrt() + s.eps);
    }
}

/// `1 - beta^t`, computed in f64.
pub(crate) fn bias_correction(beta: f32, t: u64) -> f32 {
    (1.0 - (beta as f64).powf(t as f64)) as f32
}

/// Adam or AdamW (see the module docs for the update).
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    step: u64,
    slots: BTreeMap<String, Moments>,
}

impl Adam {
    /// An optimizer with `config`; errors on out-of-range hyper-parameters.
    #[track_caller]
    pub fn new(config: AdamConfig) -> Result<Adam> {
        check_adam_hparams(
            "Adam::new",
            config.beta1,
            config.beta2,
            config.eps,
            config.weight_decay,
        )?;
        Ok(Adam {
            config,
            step: 0,
            slots: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// `"adamw"` with decoupled decay, else `"adam"`: the prefix of the state names.
    pub fn prefix(&self) -> &'static str {
        if self.config.decoupled {
            "adamw"
        } else {
            "adam"
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &ParamStore, grads: &Grads, lr: f32) -> Result<()> {
        check_lr("Adam::step", lr)?;
        let work = gather_work("Adam::step", params, grads, &self.config.frozen)?;
        moments_for("Adam::step", &mut self.slots, &work)?;
        self.step += 1;
        let c = &self.config;
        for item in work {
            let name = item.param.name();
            let wd = if c.decay_rule.decays(name, &item.shape) {
                c.weight_decay
            } else {
                0.0
            };
            let s = Step {
                b1: c.beta1,
                b2: c.beta2,
                eps: c.eps,
                bc1: bias_correction(c.beta1, self.step),
                bc2: bias_correction(c.beta2, self.step),
                lr,
                l2: if c.decoupled { 0.0 } else { wd },
                shrink: if c.decoupled { 1.0 - lr * wd } else { 1.0 },
            };
            let slot = self.slots.get_mut(name).expect("created by moments_for");
            let (m, v) = (slot.m.data_mut(), slot.v.data_mut());
            let g: &[f32] = &item.grad;
            item.param.update(|w| {
                if w.len() >= PAR_MIN {
                    w.par_chunks_mut(CHUNK)
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK))
                        .for_each(|(((w, m), v), g)| kernel(w, m, v, g, s));
                } else {
                    kernel(w, m, v, g, s);
                }
            });
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        export_moments(self.prefix(), self.step, &self.slots)
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let (step, slots) = parse_moments("Adam::load_state", self.prefix(), state)?;
        self.step = step;
        self.slots = slots;
        Ok(())
    }
}
