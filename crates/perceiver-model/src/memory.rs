//! The memory a run needs, estimated from the configuration alone before anything is
//! allocated ([`PerceiverConfig::memory_estimate`]), and the check against what the machine has
//! ([`check_memory`]).
//!
//! # What is counted (bytes, all f32)
//! - **Parameters**: 4 bytes per parameter ([`PerceiverConfig::try_num_params`]).
//! - **Optimizer** (training only): two moment buffers (Adam, LAMB) and one gradient buffer
//!   per parameter, 3 × the parameters.
//! - **Activations**, per example, times the batch:
//!   - the inputs, raw and with their position features concatenated;
//!   - per cross-attend: the attention scores and probabilities `heads × num_latents × input
//!     tokens` (twice; with a blockwise kernel, `attention_kernel` other than `reference` and
//!     no attention dropout, the scores are not kept and are counted once for the whole
//!     model, as one layer's transient matrix), the normalised inputs, keys and values `input tokens × (input width +
//!     qk + v)`, the latents' LayerNorm, queries, attention output, projection and residual,
//!     and the feed-forward's LayerNorm, hidden widths, output and residual;
//!   - per self-attention layer the same with `num_latents²` scores;
//!   - the decoder (queries × latents) or the classifier head.
//!
//!   When training, every application of a layer keeps its activations for the backward
//!   pass (shared weights included), and the backward pass needs as much again for the
//!   activations' gradients (× 2). Without training, a layer's activations are freed before
//!   the next layer runs, so each kind of layer is counted once.
//!
//! The estimate is an upper-ish bound of the peak: fused attention kernels keep less than the
//! full score matrices, and the allocator's own overhead is not counted.

use crate::config::HeadConfig;
use crate::{ModelError, PerceiverConfig};

/// The memory a run needs, in bytes ([`PerceiverConfig::memory_estimate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The parameters (f32).
    pub params: u64,
    /// Optimizer moments and parameter gradients when training (3 × `params`), else 0.
    pub optimizer: u64,
    /// Activations kept by the forward pass (and their gradients when training).
    pub activations: u64,
    /// Everything: `params + optimizer + activations`.
    pub total: u64,
    /// The largest activation with its factors and size (`self-attention scores (heads 8 ×
    /// num_latents 1000 × num_latents 1000 × batch 32 × 6 layers) = 2.1 GB`).
    pub largest_activation: String,
    /// The configuration fields and run settings that reduce the largest activation.
    pub activation_fields: String,
}

/// One kind of activation: elements per example = product of `factors` × `mult`, kept once
/// per application (`count` applications when training).
struct Term {
    label: &'static str,
    factors: Vec<(&'static str, u128)>,
    mult: u128,
    count: u128,
    lower: &'static str,
    /// False for attention scores a blockwise kernel computes tile by tile and does not keep:
    /// counted once, as one layer's transient matrix (an upper bound of its tiles).
    kept: bool,
}

/// Bytes as a short decimal figure: `41.2 GB`, `3.0 MB`, `512 B`.
pub(crate) fn human_bytes(b: u64) -> String {
    let units = [
        (1e15, "PB"),
        (1e12, "TB"),
        (1e9, "GB"),
        (1e6, "MB"),
        (1e3, "kB"),
    ];
    let x = b as f64;
    for (scale, unit) in units {
        if x >= scale {
            return format!("{:.1} {unit}", x / scale);
        }
    }
    format!("{b} B")
}

fn u(x: usize) -> u128 {
    x as u128
}

impl PerceiverConfig {
    /// The memory a run with `batch` examples per step needs, from the configuration alone
    /// (see the [module docs](crate::memory) for what is counted); `training` adds the
    /// optimizer state, gradients and the activations kept for the backward pass.
    ///
    /// Validates the configuration first; every product is checked, and one that does not
    /// fit a `u64` is [`ModelError::Overflow`] naming the fields behind it.
    ///
    /// ```
    /// use perceiver_model::{check_memory, PerceiverConfig};
    /// let config = PerceiverConfig { num_latents: 1_000_000, ..PerceiverConfig::default() };
    /// let need = config.memory_estimate(32, true)?;
    /// assert!(need.activations > need.params);
    /// let e = check_memory(&need, 16_000_000_000).unwrap_err().to_string();
    /// assert!(e.contains("num_latents"), "{e}");
    /// # Ok::<(), perceiver_model::ModelError>(())
    /// ```
    pub fn memory_estimate(
        &self,
        batch: usize,
        training: bool,
    ) -> Result<MemoryEstimate, ModelError> {
        let params = u128::from(self.try_num_params()?) * 4;
        let optimizer = if training { params * 3 } else { 0 };
        let mut largest: Option<(u128, String, &'static str)> = None;
        let mut activations = 0u128;
        for t in self.activation_terms() {
            let (count, grads) = match (t.kept, training) {
                (true, true) => (t.count, 2),
                _ => (t.count.min(1), 1),
            };
            let bytes = t
                .factors
                .iter()
                .try_fold(t.mult * 4 * grads, |a, &(_, x)| a.checked_mul(x))
                .and_then(|b| b.checked_mul(u(batch)))
                .and_then(|b| b.checked_mul(count));
            let factors = t
                .factors
                .iter()
                .map(|(n, x)| format!("{n} {x}"))
                .chain([format!("batch {batch}")])
                .chain((count > 1).then(|| format!("{count} layers")))
                .collect::<Vec<_>>()
                .join(" × ");
            let Some(bytes) = bytes else {
                return Err(ModelError::Overflow {
                    what: format!("the memory of the {} ({factors})", t.label),
                    fields: format!("{} or the batch size", t.lower),
                });
            };
            activations = activations
                .checked_add(bytes)
                .ok_or_else(|| ModelError::Overflow {
                    what: "the activation memory".into(),
                    fields: format!("{} or the batch size", t.lower),
                })?;
            if largest.as_ref().is_none_or(|(b, ..)| bytes > *b) {
                largest = Some((bytes, format!("{} ({factors})", t.label), t.lower));
            }
        }
        let total = params + optimizer + activations;
        let fit = |x: u128, what: &str| {
            u64::try_from(x).map_err(|_| ModelError::Overflow {
                what: format!("the memory estimate ({what})"),
                fields: "num_latents, the input size or the batch size".into(),
            })
        };
        let (lb, ldesc, lower) = largest.unwrap_or((0, String::new(), ""));
        Ok(MemoryEstimate {
            params: fit(params, "parameters")?,
            optimizer: fit(optimizer, "optimizer")?,
            activations: fit(activations, "activations")?,
            total: fit(total, "total")?,
            largest_activation: format!("{ldesc} = {}", human_bytes(fit(lb, "activations")?)),
            activation_fields: format!("{lower} or the batch size"),
        })
    }

    /// The kinds of activations of one example (see the module docs).
    fn activation_terms(&self) -> Vec<Term> {
        let (n, dl) = (u(self.num_latents), u(self.latent_dim));
        let m = u(self.input_tokens());
        let scores_kept = self.attention_kernel == crate::AttentionKernel::Reference
            || self.dropout.attention > 0.0;
        let width = u(self.input_width());
        let mut out = vec![Term {
            label: "inputs",
            factors: vec![
                ("input tokens", m),
                ("input width", width + u(self.input_channels)),
            ],
            mult: 1,
            count: 1,
            lower: "the input size",
            kept: true,
        }];
        let cd = self.cross_dims();
        let (h1, h2) = self.cross_feed_forward.hidden(self.latent_dim);
        let cross = u(self.num_cross_attends);
        out.push(Term {
            label: "cross-attend scores",
            factors: vec![
                ("heads", u(cd.heads)),
                ("num_latents", n),
                ("input tokens", m),
            ],
            mult: 2,
            count: cross,
            lower: "num_latents, the input size, cross_attention.heads",
            kept: scores_kept,
        });
        out.push(Term {
            label: "cross-attend keys and values",
            factors: vec![("input tokens", m), ("widths", width + u(cd.qk) + u(cd.v))],
            mult: 1,
            count: cross,
            lower: "the input size",
            kept: true,
        });
        out.push(Term {
            label: "cross-attend latents",
            factors: vec![
                ("num_latents", n),
                ("widths", 6 * dl + u(cd.qk) + 2 * u(cd.v) + u(h1) + u(h2)),
            ],
            mult: 1,
            count: cross,
            lower: "num_latents, latent_dim",
            kept: true,
        });
        let sd = self.self_dims();
        let (h1, h2) = self.self_feed_forward.hidden(self.latent_dim);
        let layers = u(self.num_blocks) * u(self.self_per_block);
        if layers > 0 {
            out.push(Term {
                label: "self-attention scores",
                factors: vec![
                    ("heads", u(sd.heads)),
                    ("num_latents", n),
                    ("num_latents", n),
                ],
                mult: 2,
                count: layers,
                lower: "num_latents, self_attention.heads",
                kept: scores_kept,
            });
            out.push(Term {
                label: "self-attention layers",
                factors: vec![
                    ("num_latents", n),
                    (
                        "widths",
                        5 * dl + 2 * u(sd.qk) + 3 * u(sd.v) + u(h1) + u(h2),
                    ),
                ],
                mult: 1,
                count: layers,
                lower: "num_latents, latent_dim",
                kept: true,
            });
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier { num_classes, .. } => out.push(Term {
                label: "head",
                factors: vec![("latent_dim", dl + u(*num_classes))],
                mult: 3,
                count: 1,
                lower: "head.num_classes",
                kept: true,
            }),
            HeadConfig::Decoder(d) => {
                if let Some(dd) = self.decoder_dims() {
                    let (q, cq) = d.query.shape();
                    let (h1, h2) = d.feed_forward.hidden(cq);
                    out.push(Term {
                        label: "decoder scores",
                        factors: vec![
                            ("heads", u(dd.heads)),
                            ("queries", u(q)),
                            ("num_latents", n),
                        ],
                        mult: 2,
                        count: 1,
                        lower: "num_latents, the number of queries",
                        kept: scores_kept,
                    });
                    out.push(Term {
                        label: "decoder",
                        factors: vec![
                            ("queries", u(q)),
                            (
                                "widths",
                                6 * u(cq)
                                    + u(dd.qk)
                                    + 2 * u(dd.v)
                                    + u(h1)
                                    + u(h2)
                                    + u(d.num_outputs),
                            ),
                        ],
                        mult: 1,
                        count: 1,
                        lower: "the number of queries, head.num_outputs",
                        kept: true,
                    });
                    out.push(Term {
                        label: "decoder keys and values",
                        factors: vec![("num_latents", n), ("widths", dl + u(dd.qk) + u(dd.v))],
                        mult: 1,
                        count: 1,
                        lower: "num_latents",
                        kept: true,
                    });
                }
            }
        }
        out
    }
}

impl MemoryEstimate {
    /// [`check_memory`] of this estimate.
    pub fn check(&self, available: u64) -> Result<(), ModelError> {
        check_memory(self, available)
    }
}

/// Refuses a run whose estimate exceeds `available` bytes, with an error naming the biggest
/// contributor (parameters, optimizer state or activations, with its factors) and the
/// configuration fields to lower.
///
/// ```
/// use perceiver_model::{check_memory, ModelError, PerceiverConfig};
/// let small = PerceiverConfig::default().memory_estimate(8, true)?;
/// check_memory(&small, 16 << 30)?;
/// assert!(matches!(check_memory(&small, 1), Err(ModelError::Memory { .. })));
/// # Ok::<(), ModelError>(())
/// ```
pub fn check_memory(estimate: &MemoryEstimate, available: u64) -> Result<(), ModelError> {
    if estimate.total <= available {
        return Ok(());
    }
    let params_fields = "num_latents, latent_dim, the feed-forward multipliers or num_blocks";
    let (biggest, lower) = if estimate.activations >= estimate.params.max(estimate.optimizer) {
        (
            format!(
                "activations {}: {}",
                human_bytes(estimate.activations),
                estimate.largest_activation
            ),
            estimate.activation_fields.clone(),
        )
    } else if estimate.optimizer >= estimate.params {
        (
            format!(
                "optimizer state and gradients {}",
                human_bytes(estimate.optimizer)
            ),
            params_fields.to_string(),
        )
    } else {
        (
            format!("parameters {}", human_bytes(estimate.params)),
            params_fields.to_string(),
        )
    };
    Err(ModelError::Memory {
        needed: estimate.total,
        available,
        biggest,
        lower: format!("{lower}, or raise the memory budget"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> PerceiverConfig {
        PerceiverConfig {
            input_axes: vec![8, 8],
            num_latents: 16,
            latent_dim: 32,
            ..PerceiverConfig::default()
        }
    }

    #[test]
    fn grows_with_every_size() {
        let base = small().memory_estimate(4, true).unwrap();
        assert_eq!(base.total, base.params + base.optimizer + base.activations);
        assert_eq!(base.optimizer, 3 * base.params);
        let infer = small().memory_estimate(4, false).unwrap();
        assert_eq!(infer.optimizer, 0);
        assert!(infer.activations < base.activations);
        assert!(small().memory_estimate(8, true).unwrap().activations > base.activations);
        for bigger in [
            PerceiverConfig {
                num_latents: 32,
                ..small()
            },
            PerceiverConfig {
                latent_dim: 64,
                ..small()
            },
            PerceiverConfig {
                input_axes: vec![16, 8],
                ..small()
            },
            PerceiverConfig {
                num_blocks: 4,
                ..small()
            },
        ] {
            let e = bigger.memory_estimate(4, true).unwrap();
            assert!(e.activations > base.activations, "{bigger:?}");
            assert!(e.total > base.total);
        }
    }

    #[test]
    fn a_billion_latents_are_refused_against_16_gb() {
        let huge = PerceiverConfig {
            num_latents: 1_000_000_000,
            ..PerceiverConfig::default()
        };
        // Refused either by the estimate (its products overflow) or by the check.
        let e = huge
            .memory_estimate(32, true)
            .and_then(|m| check_memory(&m, 16_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(e.contains("num_latents"), "{e}");
        // Without self-attention the estimate is finite and the check names the factors.
        let wide = PerceiverConfig {
            num_latents: 1_000_000_000,
            self_per_block: 0,
            ..PerceiverConfig::default()
        };
        let m = wide.memory_estimate(32, true).unwrap();
        let e = check_memory(&m, 16_000_000_000).unwrap_err();
        assert!(matches!(e, ModelError::Memory { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("num_latents 1000000000") && e.contains("batch 32"),
            "{e}"
        );
        assert!(e.contains("16.0 GB"), "{e}");
    }
}
