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
//! Gradients are scaled in place through [`Grads::get_id_mut`] (copy-on-write if a gradient's
//! storage is shared), in parallel chunks for large parameters.

use super::{sum_sq, CHUNK, PAR_MIN};
use crate::ParamStore;
use perceiver_tensor::{Error, Grads, Result};
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
/// use perceiver_nn::optim::clip_grad_norm;
/// use perceiver_nn::ParamStore;
/// use perceiver_tensor::Tensor;
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
    for p in params.iter() {
        if let Some(g) = grads.get_id_mut(p.id()) {
            let data = g.data_mut();
            if data.len() >= PAR_MIN {
                data.par_chunks_mut(CHUNK)
                    .for_each(|c| c.iter_mut().for_each(|x| *x *= scale));
            } else {
                data.iter_mut().for_each(|x| *x *= scale);
            }
        }
    }
    Ok(norm)
}
