//! Learning-rate schedules: the learning rate as a function of the step `t`, counted from 0 (the
//! rate for the first update is `lr(0)`; pass [`Optimizer::steps`](super::Optimizer::steps)
//! before the step).
//!
//! | schedule | `lr(t)` |
//! |---|---|
//! | [`Constant`] | `lr` |
//! | [`LinearWarmup`] | `inner(0) * t / W` for `t < W`, then `inner(t - W)` |
//! | [`StepDecay`] | `lr * gamma^k`, `k` = number of milestones `<= t` |
//! | [`Cosine`] | `final + (lr - final) * (1 + cos(pi * min(t, T) / T)) / 2` |
//! | [`ConstantThenCosine`] | `lr` for `t < C = round(f * T)`, then `lr * (1 + cos(pi * min(t - C, T - C) / (T - C))) / 2` |
//!
//! Recipes: the Perceiver on ImageNet uses `StepDecay` (lr 0.004, divided by 10 at epochs 84,
//! 102 and 114 of 120); Perceiver IO uses `ConstantThenCosine` with `f = 0.5` and no warm-up.
//! Any `Fn(u64) -> f32` is a schedule too.
//!
//! ```
//! use perceiver_nn::optim::{Constant, Cosine, LinearWarmup, LrSchedule};
//! let s = LinearWarmup::new(10, Cosine::new(1.0, 0.0, 100));
//! assert_eq!(s.lr(0), 0.0);
//! assert_eq!(s.lr(5), 0.5);
//! assert_eq!(s.lr(10), 1.0);
//! assert_eq!(s.lr(110), 0.0);
//! assert_eq!(Constant(3e-4).lr(1_000), 3e-4);
//! ```

use std::f64::consts::PI;

/// A learning rate for every step.
pub trait LrSchedule: Send + Sync {
    /// The learning rate of step `t` (0-based).
    fn lr(&self, t: u64) -> f32;
}

impl<F: Fn(u64) -> f32 + Send + Sync> LrSchedule for F {
    fn lr(&self, t: u64) -> f32 {
        self(t)
    }
}

impl LrSchedule for Box<dyn LrSchedule> {
    fn lr(&self, t: u64) -> f32 {
        (**self).lr(t)
    }
}

/// The same rate at every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant(pub f32);

impl LrSchedule for Constant {
    fn lr(&self, _t: u64) -> f32 {
        self.0
    }
}

/// Linear warm-up from 0 over `warmup_steps` steps to `inner.lr(0)`, then `inner` shifted by
/// `warmup_steps` (so `inner` starts after the warm-up).
pub struct LinearWarmup {
    /// Warm-up length `W` (0: no warm-up).
    pub warmup_steps: u64,
    /// The schedule that follows.
    pub inner: Box<dyn LrSchedule>,
}

impl std::fmt::Debug for LinearWarmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinearWarmup")
            .field("warmup_steps", &self.warmup_steps)
            .finish_non_exhaustive()
    }
}

impl LinearWarmup {
    /// Warm-up over `warmup_steps`, then `inner`.
    pub fn new(warmup_steps: u64, inner: impl LrSchedule + 'static) -> Self {
        LinearWarmup {
            warmup_steps,
            inner: Box::new(inner),
        }
    }
}

impl LrSchedule for LinearWarmup {
    fn lr(&self, t: u64) -> f32 {
        if t < self.warmup_steps {
            (self.inner.lr(0) as f64 * t as f64 / self.warmup_steps as f64) as f32
        } else {
            self.inner.lr(t - self.warmup_steps)
        }
    }
}

/// `lr` multiplied by `gamma` at each milestone step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepDecay {
    /// Initial rate.
    pub lr: f32,
    /// Steps from which one more factor `gamma` applies (any order).
    pub milestones: Vec<u64>,
    /// Factor per milestone, e.g. 0.1.
    pub gamma: f32,
}

impl StepDecay {
    /// `lr`, multiplied by `gamma` at each of `milestones`.
    pub fn new(lr: f32, milestones: impl Into<Vec<u64>>, gamma: f32) -> Self {
        StepDecay {
            lr,
            milestones: milestones.into(),
            gamma,
        }
    }
}

impl LrSchedule for StepDecay {
    fn lr(&self, t: u64) -> f32 {
        let k = self.milestones.iter().filter(|&&m| m <= t).count();
        (self.lr as f64 * (self.gamma as f64).powi(k as i32)) as f32
    }
}

/// Cosine decay from `lr` to `final_lr` over `total_steps`, then `final_lr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cosine {
    /// Rate at step 0.
    pub lr: f32,
    /// Rate from `total_steps` on.
    pub final_lr: f32,
    /// Length `T` of the decay (0: `final_lr` at once).
    pub total_steps: u64,
}

impl Cosine {
    /// Cosine from `lr` to `final_lr` over `total_steps`.
    pub fn new(lr: f32, final_lr: f32, total_steps: u64) -> Self {
        Cosine {
            lr,
            final_lr,
            total_steps,
        }
    }
}

/// `(1 + cos(pi * min(t, total) / total)) / 2`, 0 when `total` is 0.
fn cosine_factor(t: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let x = t.min(total) as f64 / total as f64;
    0.5 * (1.0 + (PI * x).cos())
}

impl LrSchedule for Cosine {
    fn lr(&self, t: u64) -> f32 {
        let (a, b) = (self.lr as f64, self.final_lr as f64);
        (b + (a - b) * cosine_factor(t, self.total_steps)) as f32
    }
}

/// Constant `lr` for the first `constant_fraction` of `total_steps`, then cosine to 0 at
/// `total_steps` (the Perceiver IO recipe, with `constant_fraction = 0.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConstantThenCosine {
    /// The rate of the constant phase.
    pub lr: f32,
    /// Length `T` of the whole run.
    pub total_steps: u64,
    /// Fraction `f` of the run at constant rate, clamped to `[0, 1]`.
    pub constant_fraction: f32,
}

impl ConstantThenCosine {
    /// Constant `lr` for `constant_fraction * total_steps` steps, then cosine to 0.
    pub fn new(lr: f32, total_steps: u64, constant_fraction: f32) -> Self {
        ConstantThenCosine {
            lr,
            total_steps,
            constant_fraction,
        }
    }

    /// The first step of the cosine phase, `round(f * T)`.
    pub fn decay_start(&self) -> u64 {
        let f = self.constant_fraction.clamp(0.0, 1.0) as f64;
        ((f * self.total_steps as f64).round() as u64).min(self.total_steps)
    }
}

impl LrSchedule for ConstantThenCosine {
    fn lr(&self, t: u64) -> f32 {
        let c = self.decay_start();
        if t < c {
            return self.lr;
        }
        (self.lr as f64 * cosine_factor(t - c, self.total_steps - c)) as f32
    }
}
