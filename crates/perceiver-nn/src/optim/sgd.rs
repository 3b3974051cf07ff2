//! Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay, as
//! PyTorch's `torch.optim.SGD` computes it.
//!
//! For each parameter `w` with gradient `g`, at step `t` (1-based), learning rate `lr`:
//! ```text
//! g  = g + wd * w                          (L2 weight decay, if the parameter decays)
//! b  = g                                   (t = 1, or the first step of this parameter)
//! b  = mu * b + (1 - dampening) * g        (later steps)
//! d  = g + mu * b   if nesterov, else  d = b       (d = g when mu = 0: no buffer is kept)
//! w  = w - lr * d
//! ```

use super::{
    check_buffer, check_lr, export_state, gather_work, parse_state, DecayRule, Optimizer, CHUNK,
    PAR_MIN,
};
use crate::ParamStore;
use perceiver_tensor::{Error, Grads, Result, Tensor};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Hyper-parameters of [`Sgd`]. The defaults are PyTorch's (no momentum, no weight decay).
///
/// ```
/// use perceiver_nn::optim::{Optimizer, Sgd, SgdConfig};
/// use perceiver_nn::ParamStore;
/// use perceiver_tensor::Tensor;
/// let config = SgdConfig::default();
/// assert_eq!((config.momentum, config.nesterov, config.weight_decay), (0.0, false, 0.0));
/// // loss = sum(3 w): gradient 3. With momentum 0.9 the buffer is 3, then 0.9 * 3 + 3 = 5.7.
/// let mut params = ParamStore::new();
/// let w = params.add("w", Tensor::from_vec(vec![1.0, 2.0], &[2])?)?;
/// let mut sgd = Sgd::new(SgdConfig::momentum(0.9))?;
/// for _ in 0..2 {
///     let grads = w.tensor().mul_scalar(3.0).sum_all().backward()?;
///     sgd.step(&params, &grads, 0.1)?;
/// }
/// let expected = [1.0 - 0.3 - 0.57, 2.0 - 0.3 - 0.57];
/// assert!(w.value().to_vec().iter().zip(expected).all(|(v, e)| (v - e).abs() < 1e-5));
/// // Nesterov momentum needs a positive momentum.
/// assert!(Sgd::new(SgdConfig::nesterov(0.0)).is_err());
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SgdConfig {
    /// Momentum factor `mu` (`>= 0`; 0 disables the buffer).
    pub momentum: f32,
    /// Dampening of the gradient in the momentum buffer (`0 <= dampening <= 1`).
    pub dampening: f32,
    /// Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
    /// L2 weight decay `wd` added to the gradient (`>= 0`).
    pub weight_decay: f32,
    /// Which parameters decay.
    pub decay_rule: DecayRule,
    /// Parameters never updated (and not required to have a gradient).
    pub frozen: BTreeSet<String>,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            decay_rule: DecayRule::default(),
            frozen: BTreeSet::new(),
        }
    }
}

impl SgdConfig {
    /// Plain momentum `mu`, everything else default.
    pub fn momentum(mu: f32) -> Self {
        SgdConfig {
            momentum: mu,
            ..Self::default()
        }
    }

    /// Nesterov momentum `mu`, everything else default.
    pub fn nesterov(mu: f32) -> Self {
        SgdConfig {
            momentum: mu,
            nesterov: true,
            ..Self::default()
        }
    }

    /// This config with weight decay `wd`.
    pub fn with_weight_decay(mut self, wd: f32) -> Self {
        self.weight_decay = wd;
        self
    }

    /// This config with `names` frozen.
    pub fn freeze<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.frozen.extend(names.into_iter().map(Into::into));
        self
    }
}

/// SGD with momentum (see the module docs for the update).
#[derive(Clone, Debug)]
pub struct Sgd {
    config: SgdConfig,
    step: u64,
    momentum: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// An optimizer with `config`; errors on out-of-range hyper-parameters.
    #[track_caller]
    pub fn new(config: SgdConfig) -> Result<Sgd> {
        let c = &config;
        let bad = |msg: String| Err(Error::invalid("Sgd::new", msg));
        if !(c.momentum.is_finite() && c.momentum >= 0.0) {
            return bad(format!(
                "momentum must be finite and >= 0, got {}",
                c.momentum
            ));
        }
        if !(0.0..=1.0).contains(&c.dampening) {
            return bad(format!("dampening must be in [0, 1], got {}", c.dampening));
        }
        if !(c.weight_decay.is_finite() && c.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be finite and >= 0, got {}",
                c.weight_decay
            ));
        }
        if c.nesterov && (c.momentum == 0.0 || c.dampening != 0.0) {
            return bad("Nesterov momentum needs momentum > 0 and dampening = 0".to_string());
        }
        Ok(Sgd {
            config,
            step: 0,
            momentum: BTreeMap::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
}

fn kernel(
    w: &mut [f32],
    b: Option<(&mut [f32], bool)>,
    g: &[f32],
    lr: f32,
    wd: f32,
    c: &SgdConfig,
) {
    let mu = c.momentum;
    let keep = 1.0 - c.dampening;
    match b {
        None => {
            for (w, &g) in w.iter_mut().zip(g) {
                let g = g + wd * *w;
                *w -= lr * g;
            }
        }
        Some((b, first)) => match (first, c.nesterov) {
            (true, false) => {
                for ((w, b), &g) in w.iter_mut().zip(b.iter_mut()).zip(g) {
                    let g = g + wd * *w;
                    *b = g;
                    *w -= lr * g;
                }
            }
            (true, true) => {
                for ((w, b), &g) in w.iter_mut().zip(b.iter_mut()).zip(g) {
                    let g = g + wd * *w;
                    *b = g;
                    *w -= lr * (g + mu * g);
                }
            }
            (false, false) => {
                for ((w, b), &g) in w.iter_mut().zip(b.iter_mut()).zip(g) {
                    let g = g + wd * *w;
                    *b = mu * *b + keep * g;
                    *w -= lr * *b;
                }
            }
            (false, true) => {
                for ((w, b), &g) in w.iter_mut().zip(b.iter_mut()).zip(g) {
                    let g = g + wd * *w;
                    *b = mu * *b + keep * g;
                    *w -= lr * (g + mu * *b);
                }
            }
        },
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &ParamStore, grads: &Grads, lr: f32) -> Result<()> {
        check_lr("Sgd::step", lr)?;
        let work = gather_work("Sgd::step", params, grads, &self.config.frozen)?;
        for item in &work {
            if let Some(b) = self.momentum.get(item.param.name()) {
                check_buffer("Sgd::step", item.param.name(), b, &item.shape)?;
            }
        }
        self.step += 1;
        let use_momentum = self.config.momentum != 0.0;
        for item in work {
            let name = item.param.name();
            let wd = if self.config.decay_rule.decays(name, &item.shape) {
                self.config.weight_decay
            } else {
                0.0
            };
            let c = &self.config;
            let g: &[f32] = &item.grad;
            if !use_momentum {
                item.param.update(|w| {
                    if w.len() >= PAR_MIN {
                        w.par_chunks_mut(CHUNK)
                            .zip(g.par_chunks(CHUNK))
                            .for_each(|(w, g)| kernel(w, None, g, lr, wd, c));
                    } else {
                        kernel(w, None, g, lr, wd, c);
                    }
                });
                continue;
            }
            let first = !self.momentum.contains_key(name);
            let buf = self
                .momentum
                .entry(name.to_string())
                .or_insert_with(|| Tensor::zeros(&item.shape));
            let b = buf.data_mut();
            item.param.update(|w| {
                if w.len() >= PAR_MIN {
                    w.par_chunks_mut(CHUNK)
                        .zip(b.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK))
                        .for_each(|((w, b), g)| kernel(w, Some((b, first)), g, lr, wd, c));
                } else {
                    kernel(w, Some((b, first)), g, lr, wd, c);
                }
            });
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.step
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        export_state(
            "sgd",
            self.step,
            &[("momentum", self.momentum.iter().collect())],
        )
    }

    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let (step, mut maps) = parse_state("Sgd::load_state", "sgd", &["momentum"], state)?;
        self.step = step;
        self.momentum = maps.remove(0);
        Ok(())
    }
}
