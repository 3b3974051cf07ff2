//! `cross_entropy`: mean cross-entropy of logits `[batch, classes]` against class ids, with
//! optional label smoothing, fused with its log-softmax.
//!
//! With `ε` the smoothing and `C` the classes, each target distribution is
//! `q = (1 - ε)·onehot(y) + ε / C` (as PyTorch's `label_smoothing`), the loss is
//! `mean_i(-Σ_c q_ic log p_ic)`, and the rule, which saves the probabilities, is
//! `dlogits = g · (p - q) / batch`.

use super::log_softmax::log_softmax_row;
use super::softmax::rows_map;
use crate::autograd::record;
use crate::{Error, Result, Tensor};

struct CrossEntropyBackward {
    probs: Vec<f32>,
    targets: Vec<usize>,
    classes: usize,
    smoothing: f32,
}

backward!(CrossEntropyBackward, "cross_entropy", |saved, g, _needs| {
    let g = g.to_vec()[0];
    let n = saved.targets.len();
    let c = saved.classes;
    let scale = g / n as f32;
    let off = saved.smoothing / c as f32;
    let mut d = saved.probs.clone();
    for (i, &t) in saved.targets.iter().enumerate() {
        let row = &mut d[i * c..(i + 1) * c];
        for v in row.iter_mut() {
            *v = (*v - off) * scale;
        }
        row[t] -= (1.0 - saved.smoothing) * scale;
    }
    vec![Some(Tensor::from_parts(d, &[n, c]))]
});

impl Tensor {
    /// Mean cross-entropy of these logits `[batch, classes]` against `targets` (class ids),
    /// with label smoothing `smoothing` in `[0, 1]`. Returns a rank-0 tensor.
    #[track_caller]
    pub fn cross_entropy(&self, targets: &[usize], smoothing: f32) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(Error::invalid(
                "cross_entropy",
                format!(
                    "logits must be [batch, classes], got shape {:?}",
                    self.shape()
                ),
            ));
        }
        let (n, c) = (self.shape()[0], self.shape()[1]);
        if targets.len() != n {
            return Err(Error::shape(
                "cross_entropy",
                "one target per row of logits",
                self.shape(),
                &[targets.len()],
            ));
        }
        if n == 0 || c == 0 {
            return Err(Error::invalid(
                "cross_entropy",
                format!("empty logits {:?}", self.shape()),
            ));
        }
        if let Some(&t) = targets.iter().find(|&&t| t >= c) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("target {t} out of range for {c} classes"),
            ));
        }
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label smoothing must be in [0, 1], got {smoothing}"),
            ));
        }
        let x = self.contiguous_data();
        let logp = rows_map(&x, c, log_softmax_row);
        let mut total = 0.0f64;
        for (i, &t) in targets.iter().enumerate() {
            let row = &logp[i * c..(i + 1) * c];
            let mut l = -(1.0 - smoothing as f64) * row[t] as f64;
            if smoothing > 0.0 {
                let s: f64 = row.iter().map(|&v| v as f64).sum();
                l -= smoothing as f64 / c as f64 * s;
            }
            total += l;
        }
        let out = Tensor::scalar((total / n as f64) as f32);
        Ok(record(out, &[self], |_| CrossEntropyBackward {
            probs: logp.iter().map(|v| v.exp()).collect(),
            targets: targets.to_vec(),
            classes: c,
            smoothing,
        }))
    }
}
