//! LAMB (You et al., "Large batch optimization for deep learning: training BERT in 76 minutes"),
//! as optax's `lamb` computes it (the optimizer of the Perceiver and Perceiver IO recipes).
//!
//! For each parameter `w` with gradient `g`, at step `t` (1-based), learning rate `lr`:
//! ```text
//! m     = b1 * m + (1 - b1) * g
//! v     = b2 * v + (1 - b2) * g^2
//! mhat  = m / (1 - b1^t),   vhat = v / (1 - b2^t)
//! u     = mhat / (sqrt(vhat) + eps) + wd * w          (wd = 0 if the parameter does not decay)
//! r     = ||w|| / ||u||   (r = 1 when ||w|| = 0 or ||u|| = 0)
//! w     = w - lr * r * u
//! ```
//! Norms are L2 norms over the whole parameter tensor, accumulated in f64. As in optax, the trust
//! ratio applies to every parameter; set [`LambConfig::exclude_from_trust_ratio`] to use `r = 1`
//! for the parameters excluded from weight decay (TensorFlow's `exclude_from_layer_adaptation`).

use super::adam::{
    bias_correction, check_adam_hparams, export_moments, moments_for, parse_moments, Moments,
};
use super::{check_lr, gather_work, DecayRule, Optimizer, CHUNK, PAR_MIN};
use crate::ParamStore;
use perceiver_tensor::{Grads, Result, Tensor};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Hyper-parameters of [`Lamb`]. The defaults are the Perceiver IO recipe's: `b1 = 0.9`,
/// `b2 = 0.999`, `eps = 1e-6`, weight decay 0.1 excluding biases and norm parameters.
///
/// ```
/// use perceiver_nn::optim::{Lamb, LambConfig, Optimizer};
/// use perceiver_nn::ParamStore;
/// use perceiver_tensor::Tensor;
/// let config = LambConfig::default();
/// assert_eq!((config.eps, config.weight_decay), (1e-6, 0.1));
/// // The trust ratio scales each update to `lr x ||w||`, whatever the gradient's size.
/// let mut params = ParamStore::new();
/// let w = params.add("w", Tensor::from_vec(vec![3.0, 4.0, 0.0, 0.0], &[2, 2])?)?;
/// let grads = w.tensor().mul_scalar(100.0).sum_all().backward()?;
/// let mut lamb = Lamb::new(config)?;
/// lamb.step(&params, &grads, 0.01)?;
/// let after = w.value().to_vec();
/// let moved = [3.0, 4.0, 0.0, 0.0].iter().zip(&after).map(|(a, b)| (a - b) * (a - b));
/// assert!((moved.sum::<f32>().sqrt() - 0.01 * 5.0).abs() < 1e-5);
/// // eps must be positive.
/// assert!(Lamb::new(LambConfig::default().with_eps(0.0)).is_err());
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LambConfig {
    /// Decay of the first moment, in `[0, 1)`.
    pub beta1: f32,
    /// Decay of the second moment, in `[0, 1)`.
    pub beta2: f32,
    /// Added to `sqrt(vhat)` (`> 0`).
    pub eps: f32,
    /// Decoupled weight decay `wd` added to the update (`>= 0`).
    pub weight_decay: f32,
    /// Which parameters decay.
    pub decay_rule: DecayRule,
    /// Use trust ratio 1 for the parameters the decay rule excludes (default `false`, as optax).
    pub exclude_from_trust_ratio: bool,
    /// Parameters never updated (and not required to have a gradient).
    pub frozen: BTreeSet<String>,
}

impl Default for LambConfig {
    fn default() -> Self {
        LambConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.1,
            decay_rule: DecayRule::default(),
            exclude_from_trust_ratio: false,
            frozen: BTreeSet::new(),
        }
    }
}

impl LambConfig {
    /// This config with weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
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

/// LAMB (see the module docs for the update).
#[derive(Clone, Debug)]
pub struct Lamb {
    config: LambConfig,
    step: u64,
    slots: BTreeMap<String, Moments>,
    /// The update `u` of the parameter being processed (reused between parameters).
    scratch: Vec<f32>,
}

#[derive(Clone, Copy)]
struct Step {
    b1: f32,
    b2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    wd: f32,
}

/// Updates the moments, writes `u` and returns `(||w||^2, ||u||^2)` of the chunk.
fn moments_kernel(
    w: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    g: &[f32],
    u: &mut [f32],
    s: Step,
) -> (f64, f64) {
    let (mut ww, mut uu) = (0.0f64, 0.0f64);
    for ((((&w, m), v), &g), u) in w
        .iter()
        .zip(m.iter_mut())
        .zip(v.iter_mut())
        .zip(g)
        .zip(u.iter_mut())
    {
        *m = s.b1 * *m + (1.0 - s.b1) * g;
        *v = s.b2 * *v + (1.0 - s.b2) * g * g;
        let mhat = *m / s.bc1;
        let vhat = *v / s.bc2;
        *u = mhat / (vhat.sqrt() + s.eps) + s.wd * w;
        ww += (w as f64) * (w as f64);
        uu += (*u as f64) * (*u as f64);
    }
    (ww, uu)
}

fn apply_kernel(w: &mut [f32], u: &[f32], scale: f32) {
    for (w, &u) in w.iter_mut().zip(u) {
        *w -= scale * u;
    }
}

impl Lamb {
    /// An optimizer with `config`; errors on out-of-range hyper-parameters.
    #[track_caller]
    pub fn new(config: LambConfig) -> Result<Lamb> {
        check_adam_hparams(
            "Lamb::new",
            config.beta1,
            config.beta2,
            config.eps,
            config.weight_decay,
        )?;
        Ok(Lamb {
            config,
            step: 0,
            slots: BTreeMap::new(),
            scratch: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LambConfig {
        &self.config
    }

    /// Trust ratio `||w|| / ||u||`, 1 when either norm is zero.
    pub fn trust_ratio(w_norm: f64, u_norm: f64) -> f32 {
        if w_norm > 0.0 && u_norm > 0.0 {
            (w_norm / u_norm) as f32
        } else {
            1.0
        }
    }
}

impl Optimizer for Lamb {
    fn step(&mut self, params: &ParamStore, grads: &Grads, lr: f32) -> Result<()> {
        check_lr("Lamb::step", lr)?;
        let work = gather_work("Lamb::step", params, grads, &self.config.frozen)?;
        moments_for("Lamb::step", &mut self.slots, &work)?;
        self.step += 1;
        let c = &self.config;
        let (bc1, bc2) = (
            bias_correction(c.beta1, self.step),
            bias_correction(c.beta2, self.step),
        );
        for item in work {
            let name = item.param.name();
            let decays = c.decay_rule.decays(name, &item.shape);
            let s = Step {
                b1: c.beta1,
                b2: c.beta2,
                eps: c.eps,
                bc1,
                bc2,
                wd: if decays { c.weight_decay } else { 0.0 },
            };
            let adapt = decays || !c.exclude_from_trust_ratio;
            let slot = self.slots.get_mut(name).expect("created by moments_for");
            let (m, v) = (slot.m.data_mut(), slot.v.data_mut());
            let g: &[f32] = &item.grad;
            let u = &mut self.scratch;
            u.clear();
            u.resize(g.len(), 0.0);
            item.param.update(|w| {
                let (ww, uu) = if w.len() >= PAR_MIN {
                    let parts: Vec<(f64, f64)> = w
                        .par_chunks(CHUNK)
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK))
                        .zip(u.par_chunks_mut(CHUNK))
                        .map(|((((w, m), v), g), u)| moments_kernel(w, m, v, g, u, s))
                        .collect();
                    parts.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
                } else {
                    w.chunks(CHUNK)
                        .zip(m.chunks_mut(CHUNK))
                        .zip(v.chunks_mut(CHUNK))
                        .zip(g.chunks(CHUNK))
                        .zip(u.chunks_mut(CHUNK))
                        .map(|((((w, m), v), g), u)| moments_kernel(w, m, v, g, u, s))
                        .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
                };
                let ratio = if adapt {
                    Lamb::trust_ratio(ww.sqrt(), uu.sqrt())
                } else {
                    1.0
                };
                let scale = lr * ratio;
                if w.len() >= PAR_MIN {
                    w.par_chunks_mut(CHUNK)
                        .zip(u.par_chunks(CHUNK))
                        .for_each(|(w, u)| apply_kernel(w, u, scale));
                } else {
                    apply_kernel(w, u, scale);
                }
            });
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        export_moments("lamb", self.step, &self.slots)
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let (step, slots) = parse_moments("Lamb::load_state", "lamb", state)?;
        self.step = step;
        self.slots = slots;
        Ok(())
    }
}
