//! Gradient clipping by global norm, as optax's `clip_by_global_norm` computes it.
//!
//! ```text
//! n = sqrt(sum over parameters p of sum_i g_p[i]^2)         (accumulated in f64)
//! if n > max_norm:  g_p = g_p * (max_norm / n)   for every parameter p
//! ```
//! All gradients are scaled by one factor, so the update direction is kept. The norm covers the
//! parameters of the store that have a gradient (leaves that are not parameters, such as an input
//! tensor, are ignored; parameters without a gradient contribute nothing: the optimizer reports
//! them). A non-finite norm leaves the gradients unchanged and is returned, so the caller can
//! skip the step.
//!
//! # Design
//! [`Grads`] has no mutable access to a gradient, so the scaled gradients are put back through
//! the public autograd API: [`Grads::remove_id`] takes a gradient out, and a one-node
//! [`CustomOp`] whose backward returns the scaled tensors unchanged rebuilds a [`Grads`] under the
//! parameters' ids, which [`Grads::accumulate`] moves in (no arithmetic, so the values are exact).

use super::{sum_sq, CHUNK, PAR_MIN};
use crate::autograd::{apply_custom, is_grad_enabled, CustomOp};
use crate::{Error, Grads, Param, ParamStore, Result, Tensor};
use rayon::prelude::*;

/// Global L2 norm of the gradients of `params` found in `grads`.
pub fn global_grad_norm(params: &ParamStore, grads: &Grads) -> f32 {
    params
        .iter()
        .filter_map(|p| grads.get_id(p.id()))
        .map(|g| sum_sq(&g.contiguous_data()))
        .sum::<f64>()
        .sqrt() as f32
}

/// Scales the gradients of `params` so that their global L2 norm is at most `max_norm`
/// (`> 0`, finite) and returns the norm before clipping.
///
/// ```
/// use perceiver_tensor::optim::clip_grad_norm;
/// use perceiver_tensor::{ParamStore, Tensor};
/// let mut params = ParamStore::new();
/// let w = params.add("w", Tensor::from_vec(vec![1.0, 1.0], &[2])?)?;
/// let c = Tensor::from_vec(vec![3.0, 4.0], &[2])?;
/// let mut grads = w.tensor().mul(&c)?.sum_all().backward()?; // gradient [3, 4], norm 5
/// let norm = clip_grad_norm(&params, &mut grads, 1.0)?;
/// assert_eq!(norm, 5.0);
/// assert_eq!(w.grad(&grads)?.to_vec(), vec![0.6, 0.8]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[track_caller]
pub fn clip_grad_norm(params: &ParamStore, grads: &mut Grads, max_norm: f32) -> Result<f32> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(
            "clip_grad_norm",
            format!("max_norm must be finite and > 0, got {max_norm}"),
        ));
    }
    let norm = global_grad_norm(params, grads);
    if !norm.is_finite() || norm <= max_norm {
        return Ok(norm);
    }
    let scale = max_norm / norm;
    let mut scaled = Vec::new();
    for p in params.iter() {
        if let Some(mut g) = grads.remove_id(p.id()) {
            let data = g.data_mut();
            if data.len() >= PAR_MIN {
                data.par_chunks_mut(CHUNK)
                    .for_each(|c| c.iter_mut().for_each(|x| *x *= scale));
            } else {
                data.iter_mut().for_each(|x| *x *= scale);
            }
            scaled.push((p.clone(), g));
        }
    }
    let rebuilt = if is_grad_enabled() {
        grads_for(&scaled)
    } else {
        // `Param::tensor` is untracked under `no_grad`, which is per thread: rebuild on a thread
        // where recording is enabled.
        std::thread::scope(|s| {
            s.spawn(|| grads_for(&scaled))
                .join()
                .expect("grads_for does not panic")
        })
    }?;
    grads.accumulate(rebuilt);
    Ok(norm)
}

/// Returns given tensors as the gradients of its inputs.
struct InjectGrads(Vec<Tensor>);

impl CustomOp for InjectGrads {
    type Saved = ();
    fn name(&self) -> &'static str {
        "clip_grad_norm (inject gradients)"
    }
    fn forward(&self, _inputs: &[Tensor], _needs_grad: bool) -> Result<(Tensor, Option<()>)> {
        Ok((Tensor::scalar(0.0), Some(())))
    }
    fn backward(&self, _saved: &(), _grad_out: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.0
            .iter()
            .zip(needs)
            .map(|(g, &n)| n.then(|| g.clone()))
            .collect()
    }
}

/// A [`Grads`] holding `g` under the id of `p` for every pair.
fn grads_for(pairs: &[(Param, Tensor)]) -> Result<Grads> {
    if pairs.is_empty() {
        return Ok(Grads::default());
    }
    let leaves: Vec<Tensor> = pairs.iter().map(|(p, _)| p.tensor()).collect();
    let inputs: Vec<&Tensor> = leaves.iter().collect();
    let op = InjectGrads(pairs.iter().map(|(_, g)| g.clone()).collect());
    apply_custom(op, &inputs)?.backward()
}
