//! One key/value input read by several attention layers in one forward pass: a Perceiver's
//! repeated cross-attends to its input array. [`SharedKv`] decides once how the layers read it,
//! so the model never asks which kernel runs or whether gradients are being recorded.
//!
//! - With several layers that all read normalised rows ([`AttnKernel::reads_normalized`](crate::AttnKernel::reads_normalized)), the
//!   input is normalised once (their LayerNorms differ only in the affine, which each kernel
//!   applies): one pass over the input per forward instead of one per layer, and none in the
//!   kernels' backward. The parts of the input (channels, position features) are normalised
//!   straight from where they are; the concatenation is never built. A single layer keeps the
//!   kernel's block-wise normalisation, which stores nothing per token.
//! - At inference (no gradients recorded) on those kernels, layers that share weights read the
//!   same keys and values: they are projected once per weight set and kept (config B: 2
//!   projections of the 50,176 tokens instead of 8). In training the fused kernel recomputes
//!   them block by block instead, so nothing is stored per token.

use crate::{Call, KeyValues, MultiHeadAttention};
use perceiver_nn::ops::layer_norm_concat;
use perceiver_nn::LayerNorm;
use perceiver_tensor::{is_grad_enabled, Error, Result, Tensor};

/// An input shared by the attention layers listed at construction (see the module docs).
///
/// ```
/// use perceiver_attn::{Call, MultiHeadAttention, MultiHeadAttentionConfig, SharedKv};
/// use perceiver_nn::{LayerNorm, ParamStore};
/// use perceiver_tensor::{Rng, Tensor};
/// let (mut store, mut rng) = (ParamStore::new(), Rng::new(0));
/// let cfg = MultiHeadAttentionConfig::lucidrains(8, 5, 2, 4);
/// let attn = MultiHeadAttention::new(&mut store, "cross", cfg, &mut rng)?;
/// let norm = LayerNorm::new(&mut store, "norm", 5, 1e-5)?;
/// let (x, pos) = (Tensor::randn(&[2, 20, 3], &mut rng), Tensor::randn(&[2, 20, 2], &mut rng));
/// // One layer attended twice (shared weights), as in weight-shared Perceiver blocks.
/// let mut kv = SharedKv::new(&[&x, &pos], &[(&attn, &norm), (&attn, &norm)], false)?;
/// let mut z = Tensor::randn(&[2, 3, 8], &mut rng);
/// for _ in 0..2 {
///     z = kv.attend(&attn, &norm, &z, Call::default())?;
/// }
/// assert_eq!(z.shape(), &[2, 3, 8]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
pub struct SharedKv<'a> {
    /// The rows: the parts concatenated, or normalised once without the affine.
    rows: Tensor,
    normalized: bool,
    /// The (layer, LayerNorm) pairs given at construction, by address.
    readers: Vec<(*const MultiHeadAttention, *const LayerNorm)>,
    /// Per pair read more than once: its projected keys and values, once made.
    reuse: Vec<(
        (*const MultiHeadAttention, *const LayerNorm),
        Option<(Tensor, Tensor)>,
    )>,
    _layers: std::marker::PhantomData<&'a MultiHeadAttention>,
}

impl<'a> SharedKv<'a> {
    /// The input whose rows are `parts` concatenated on the last axis (`[b, m, c_i]` each, or
    /// broadcast views), for the attention `layers` (each with the LayerNorm it reads the input
    /// through; a layer appears once per time it will attend) in the mode `train`.
    #[track_caller]
    pub fn new(
        parts: &[&Tensor],
        layers: &[(&'a MultiHeadAttention, &'a LayerNorm)],
        train: bool,
    ) -> Result<SharedKv<'a>> {
        let Some(first) = parts.first() else {
            return Err(Error::invalid(
                "SharedKv",
                "needs at least one part of the input",
            ));
        };
        let reads_normalized = !layers.is_empty()
            && layers
                .iter()
                .all(|(l, _)| l.kernel_for(train).reads_normalized());
        let eps = layers.first().map(|(_, n)| n.eps);
        let same_eps = layers.iter().all(|(_, n)| Some(n.eps) == eps);
        let normalized = layers.len() > 1 && reads_normalized && same_eps;
        let rows = match eps {
            Some(eps) if normalized => layer_norm_concat(parts, eps)?,
            _ if parts.len() > 1 => Tensor::concat(parts, first.rank().saturating_sub(1))?,
            _ => (*first).clone(),
        };
        let readers: Vec<_> = layers
            .iter()
            .map(|(l, n)| (*l as *const MultiHeadAttention, *n as *const LayerNorm))
            .collect();
        let mut reuse = Vec::new();
        if reads_normalized && !is_grad_enabled() {
            for &pair in &readers {
                let uses = readers.iter().filter(|&&q| q == pair).count();
                if uses > 1 && !reuse.iter().any(|(q, _)| *q == pair) {
                    reuse.push((pair, None));
                }
            }
        }
        Ok(SharedKv {
            rows,
            normalized,
            readers,
            reuse,
            _layers: std::marker::PhantomData,
        })
    }

    /// `layer` (one of those given at construction, with its LayerNorm `norm`; another pair is
    /// an error) attends from `x_q` to the input ([`MultiHeadAttention::attend`]).
    #[track_caller]
    pub fn attend(
        &mut self,
        layer: &MultiHeadAttention,
        norm: &LayerNorm,
        x_q: &Tensor,
        call: Call<'_>,
    ) -> Result<Tensor> {
        let SharedKv {
            rows,
            normalized,
            readers,
            reuse,
            ..
        } = self;
        let pair = (layer as *const MultiHeadAttention, norm as *const LayerNorm);
        if !readers.contains(&pair) {
            return Err(Error::invalid(
                "SharedKv",
                "attend with a layer and LayerNorm that were not given at construction",
            ));
        }
        let kv = key_values(rows, *normalized, norm);
        // (kept keys and values are for inference only: with gradients recorded, every call
        // reads the input itself)
        let kept = reuse.iter_mut().find(|(q, _)| *q == pair);
        if let Some((_, slot)) = kept.filter(|_| !is_grad_enabled()) {
            let (k, v) = match slot {
                Some(done) => &*done,
                slot => &*slot.insert(match kv {
                    KeyValues::Normalized { x_bar, norm } => layer.project_kv(x_bar, Some(norm))?,
                    _ => layer.project_kv(&norm.forward(rows)?, None)?,
                }),
            };
            return layer.attend(x_q, KeyValues::Projected { k, v }, call);
        }
        layer.attend(x_q, kv, call)
    }
}

/// How a layer reading through `norm` sees the input `rows` (`normalized`: before the affine).
fn key_values<'s>(rows: &'s Tensor, normalized: bool, norm: &'s LayerNorm) -> KeyValues<'s> {
    if normalized {
        KeyValues::Normalized { x_bar: rows, norm }
    } else {
        KeyValues::Rows {
            x: rows,
            norm: Some(norm),
        }
    }
}

impl std::fmt::Debug for SharedKv<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedKv")
            .field("rows", &self.rows.shape())
            .field("normalized", &self.normalized)
            .field("reused_layers", &self.reuse.len())
            .finish()
    }
}
