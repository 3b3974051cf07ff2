//! Parameter and FLOP counts computed from the configuration alone (no allocation), so they
//! are cheap even for the 326M-parameter unshared ImageNet model.
//!
//! # What the FLOP count counts
//! Per example, forward only:
//! - every matrix product `[m, k] x [k, n]` counts `2·m·k·n` (a multiply and an add);
//! - every elementwise step counts 1 FLOP per output element: bias adds, residual adds,
//!   LayerNorm (per normalised element), softmax (per attention logit), the activation (GELU;
//!   GEGLU counts its GELU and its product), the mean over latents;
//! - not counted: the Fourier features (input-independent and cached), reshapes and
//!   concatenations, the logit scale (folded into the product), the loss.
//!
//! With this rule the ImageNet Perceiver of the paper comes out at 707.2 GFLOPs, the figure
//! the paper gives (of which 706.3 G are matrix products).

use crate::config::{
    AttnDims, FeedForwardConfig, FeedForwardKind, HeadConfig, PerceiverConfig, Preprocessor,
    QueryConfig,
};
use crate::ModelError;

/// A FLOP count with its parts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlopCount {
    /// Matrix-product FLOPs (2 per multiply-add).
    pub matmul: u64,
    /// Elementwise FLOPs (1 per output element per step).
    pub elementwise: u64,
    /// Per component (`cross-attend 0`, `tower 0`, `head`, ...): matmul + elementwise.
    pub parts: Vec<(String, u64)>,
}

impl FlopCount {
    /// Everything (saturating at `u64::MAX`; a count from
    /// [`PerceiverConfig::try_flops_per_example`] never saturates).
    pub fn total(&self) -> u64 {
        self.matmul.saturating_add(self.elementwise)
    }

    fn add(&mut self, name: impl Into<String>, c: Cost) -> Option<()> {
        self.matmul = self.matmul.checked_add(c.matmul)?;
        self.elementwise = self.elementwise.checked_add(c.elementwise)?;
        self.parts
            .push((name.into(), c.matmul.checked_add(c.elementwise)?));
        Some(())
    }
}

#[derive(Clone, Copy, Default)]
struct Cost {
    matmul: u64,
    elementwise: u64,
}

impl Cost {
    fn plus(self, o: Cost) -> Option<Cost> {
        Some(Cost {
            matmul: self.matmul.checked_add(o.matmul)?,
            elementwise: self.elementwise.checked_add(o.elementwise)?,
        })
    }

    fn times(self, k: u64) -> Option<Cost> {
        Some(Cost {
            matmul: self.matmul.checked_mul(k)?,
            elementwise: self.elementwise.checked_mul(k)?,
        })
    }
}

/// The product of `xs`, `None` on overflow.
fn prod(xs: &[usize]) -> Option<u64> {
    xs.iter()
        .try_fold(1u64, |a, &x| a.checked_mul(u64::try_from(x).ok()?))
}

/// The sum of `xs`, `None` on overflow.
fn sum(xs: &[Option<u64>]) -> Option<u64> {
    xs.iter().try_fold(0u64, |a, &x| a.checked_add(x?))
}

/// `x` when `on`, else 0.
fn when(on: bool, x: Option<u64>) -> Option<u64> {
    if on {
        x
    } else {
        Some(0)
    }
}

/// `rows` queries attending `keys` keys, including the LayerNorms on both inputs
/// (`norm_kv` = false for self-attention, whose keys are the normalised queries).
fn attention_cost(
    c: &PerceiverConfig,
    d: AttnDims,
    rows: usize,
    keys: usize,
    norm_kv: bool,
    residual: bool,
) -> Option<Cost> {
    let (n, m) = (rows, keys);
    let (qi, ki, qk, v, o, h) = (d.q_in, d.kv_in, d.qk, d.v, d.out, d.heads);
    let matmul = sum(&[
        prod(&[2, n, qi, qk]),
        prod(&[2, m, ki, qk]),
        prod(&[2, m, ki, v]),
        prod(&[2, n, m, qk]),
        prod(&[2, n, m, v]),
        prod(&[2, n, v, o]),
    ])?;
    let b = &c.bias;
    let elementwise = sum(&[
        prod(&[n, qi]),
        when(norm_kv, prod(&[m, ki])),
        prod(&[h, n, m]),
        when(b.q, prod(&[n, qk])),
        when(b.k, prod(&[m, qk])),
        when(b.v, prod(&[m, v])),
        when(b.out, prod(&[n, o])),
        when(residual, prod(&[n, o])),
    ])?;
    Some(Cost {
        matmul,
        elementwise,
    })
}

fn ff_cost(c: &PerceiverConfig, ff: &FeedForwardConfig, rows: usize, dim: usize) -> Option<Cost> {
    let (h1, h2) = ff.checked_hidden(dim)?;
    let (n, d) = (rows, dim);
    let act = match ff.kind {
        FeedForwardKind::Gelu => prod(&[n, h2]),
        FeedForwardKind::Geglu => prod(&[2, n, h2]),
    };
    Some(Cost {
        matmul: sum(&[prod(&[2, n, d, h1]), prod(&[2, n, h2, d])])?,
        elementwise: sum(&[
            prod(&[n, d]),
            act,
            when(c.bias.ff, prod(&[n, h1])),
            when(c.bias.ff, prod(&[n, d])),
            prod(&[n, d]),
        ])?,
    })
}

fn linear_shapes(out: &mut Vec<(String, Vec<usize>)>, name: &str, i: usize, o: usize, bias: bool) {
    out.push((format!("{name}.weight"), vec![o, i]));
    if bias {
        out.push((format!("{name}.bias"), vec![o]));
    }
}

fn norm_shapes(out: &mut Vec<(String, Vec<usize>)>, name: &str, dim: usize) {
    out.push((format!("{name}.weight"), vec![dim]));
    out.push((format!("{name}.bias"), vec![dim]));
}

fn attn_shapes(out: &mut Vec<(String, Vec<usize>)>, c: &PerceiverConfig, name: &str, d: AttnDims) {
    let b = &c.bias;
    linear_shapes(out, &format!("{name}.to_q"), d.q_in, d.qk, b.q);
    linear_shapes(out, &format!("{name}.to_k"), d.kv_in, d.qk, b.k);
    linear_shapes(out, &format!("{name}.to_v"), d.kv_in, d.v, b.v);
    linear_shapes(out, &format!("{name}.to_out"), d.v, d.out, b.out);
}

fn ff_shapes(
    out: &mut Vec<(String, Vec<usize>)>,
    c: &PerceiverConfig,
    name: &str,
    ff: &FeedForwardConfig,
    dim: usize,
) {
    let (h1, h2) = ff.hidden(dim);
    norm_shapes(out, &format!("{name}.norm"), dim);
    linear_shapes(out, &format!("{name}.fc1"), dim, h1, c.bias.ff);
    linear_shapes(out, &format!("{name}.fc2"), h2, dim, c.bias.ff);
}

/// A cross-attend block's parameters under `name` (`norm_q`, `norm_kv`, `attn.*`, `ff.*`).
fn cross_shapes(
    out: &mut Vec<(String, Vec<usize>)>,
    c: &PerceiverConfig,
    name: &str,
    d: AttnDims,
    ff: &FeedForwardConfig,
) {
    norm_shapes(out, &format!("{name}.norm_q"), d.q_in);
    norm_shapes(out, &format!("{name}.norm_kv"), d.kv_in);
    attn_shapes(out, c, &format!("{name}.attn"), d);
    ff_shapes(out, c, &format!("{name}.ff"), ff, d.out);
}

impl PerceiverConfig {
    /// Every parameter's canonical name and shape, in build order, without allocating
    /// tensors. A shared set appears once.
    ///
    /// Names: `latents`, `pos.*`, `cross.{set}.{norm_q,norm_kv,attn.to_{q,k,v,out},ff.{norm,fc1,fc2}}.{weight,bias}`,
    /// `self.{set}.{layer}.{norm,attn.*,ff.*}`, `head.{norm,fc}`, `decoder.query`,
    /// `decoder.cross.*`, `decoder.fc`.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.grouped_shapes(true)
            .into_iter()
            .map(|(_, name, shape)| (name, shape))
            .collect()
    }

    /// The parameters' names and shapes, each with how many times it counts: with `expand`,
    /// every one (each counted once); without, the first cross-attend set counted
    /// `num_cross_sets` times and the first layer of the first tower counted
    /// `self_per_block × num_tower_sets` times (all sets have the same shapes), so that a
    /// count does not list millions of layers.
    pub(crate) fn grouped_shapes(&self, expand: bool) -> Vec<(u64, String, Vec<usize>)> {
        let mut grouped = Vec::new();
        let mut out = Vec::new();
        let mut flush = |out: &mut Vec<(String, Vec<usize>)>, times: usize| {
            grouped.extend(out.drain(..).map(|(n, s)| (times as u64, n, s)));
        };
        for (n, s) in self.preprocessor.param_shapes(self.input_channels) {
            out.push((format!("pre.{n}"), s));
        }
        for (n, s) in self
            .position_encoding
            .param_shapes(&self.token_axes(), self.position_projection)
        {
            out.push((format!("pos.{n}"), s));
        }
        out.push((
            "latents".to_string(),
            vec![self.num_latents, self.latent_dim],
        ));
        flush(&mut out, 1);
        let plan = self.sharing_plan();
        let (cross_sets, tower_sets) = (plan.num_cross_sets(), plan.num_tower_sets());
        for s in 0..if expand {
            cross_sets
        } else {
            cross_sets.min(1)
        } {
            cross_shapes(
                &mut out,
                self,
                &format!("cross.{s}"),
                self.cross_dims(),
                &self.cross_feed_forward,
            );
        }
        flush(&mut out, if expand { 1 } else { cross_sets });
        let sd = self.self_dims();
        let layers = self.self_per_block;
        for s in 0..if expand {
            tower_sets
        } else {
            tower_sets.min(1)
        } {
            for j in 0..if expand { layers } else { layers.min(1) } {
                let name = format!("self.{s}.{j}");
                norm_shapes(&mut out, &format!("{name}.norm"), sd.q_in);
                attn_shapes(&mut out, self, &format!("{name}.attn"), sd);
                ff_shapes(
                    &mut out,
                    self,
                    &format!("{name}.ff"),
                    &self.self_feed_forward,
                    sd.out,
                );
            }
        }
        flush(
            &mut out,
            if expand {
                1
            } else {
                tower_sets.saturating_mul(layers)
            },
        );
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier {
                num_classes,
                layer_norm,
            } => {
                if *layer_norm {
                    norm_shapes(&mut out, "head.norm", self.latent_dim);
                }
                linear_shapes(&mut out, "head.fc", self.latent_dim, *num_classes, true);
            }
            HeadConfig::Decoder(d) => {
                let dims = self.decoder_dims().expect("decoder head");
                if let QueryConfig::Trainable {
                    num_queries,
                    channels,
                    ..
                } = &d.query
                {
                    out.push(("decoder.query".to_string(), vec![*num_queries, *channels]));
                }
                cross_shapes(&mut out, self, "decoder.cross", dims, &d.feed_forward);
                linear_shapes(&mut out, "decoder.fc", dims.out, d.num_outputs, true);
            }
        }
        flush(&mut out, 1);
        grouped
    }

    /// Number of scalar parameters (shared sets counted once), from the configuration alone;
    /// saturates at `usize::MAX` for a configuration too large to count
    /// ([`PerceiverConfig::try_num_params`] reports that as an error).
    pub fn num_params(&self) -> usize {
        self.try_num_params()
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// Number of scalar parameters with checked arithmetic: validates the configuration
    /// first (so every size is in range), and a count that does not fit a `u64` is
    /// [`ModelError::Overflow`].
    pub fn try_num_params(&self) -> Result<u64, ModelError> {
        self.validate()?;
        self.grouped_shapes(false)
            .iter()
            .try_fold(0u64, |acc, (times, _, s)| {
                acc.checked_add(prod(s)?.checked_mul(*times)?)
            })
            .ok_or_else(|| ModelError::Overflow {
                what: "the parameter count".into(),
                fields: "num_latents, latent_dim, num_blocks or the feed-forward multipliers"
                    .into(),
            })
    }

    /// Forward FLOPs for one example on the configured input axes (see the module docs for
    /// what is counted); saturates at `u64::MAX` (with no parts) for a configuration too large
    /// to count ([`PerceiverConfig::try_flops_per_example`] reports that as an error).
    pub fn flops_per_example(&self) -> FlopCount {
        self.try_flops_per_example().unwrap_or(FlopCount {
            matmul: u64::MAX,
            elementwise: 0,
            parts: Vec::new(),
        })
    }

    /// Forward FLOPs for one example with checked arithmetic: validates the configuration,
    /// and a count that does not fit a `u64` is [`ModelError::Overflow`] naming the component
    /// and the fields it depends on.
    ///
    /// ```
    /// use perceiver_model::{ModelError, PerceiverConfig};
    /// let huge = PerceiverConfig { num_latents: 1_000_000_000, ..PerceiverConfig::default() };
    /// let e = huge.try_flops_per_example().unwrap_err();
    /// assert!(matches!(e, ModelError::Overflow { .. }), "{e}");
    /// assert!(e.to_string().contains("num_latents"), "{e}");
    /// ```
    pub fn try_flops_per_example(&self) -> Result<FlopCount, ModelError> {
        self.validate()?;
        let overflow = |what: &str, fields: &str| ModelError::Overflow {
            what: format!("the FLOP count of {what}"),
            fields: fields.into(),
        };
        let mut f = FlopCount::default();
        let m = self.input_tokens();
        let (n, dl) = (self.num_latents, self.latent_dim);
        let product = |xs: &[usize]| xs.iter().try_fold(1usize, |a, &x| a.checked_mul(x));
        let ic = self.input_channels;
        // (matmul, elementwise) of the preprocessor, if there is one; `None` inside on overflow.
        let pre = match self.preprocessor {
            Preprocessor::None => None,
            // A multiply-add per input channel and token channel, plus the bias.
            Preprocessor::Conv1x1 { channels } => Some(
                product(&self.input_axes)
                    .and_then(|e| prod(&[2, e, ic, channels]).zip(prod(&[e, channels]))),
            ),
            // The 7 x 7 convolution at half resolution, BatchNorm and ReLU there, and the 3 x 3
            // max-pool on the tokens (elementwise).
            Preprocessor::ConvDownsample { channels } => {
                let half: Vec<usize> = self.input_axes.iter().map(|a| a.div_ceil(2)).collect();
                Some(product(&half).and_then(|h| {
                    let elementwise =
                        prod(&[h, channels, 3])?.checked_add(prod(&[m, channels, 9])?)?;
                    Some((prod(&[2, h, ic, 49, channels])?, elementwise))
                }))
            }
        };
        if let Some(cost) = pre {
            let too_big = || overflow("the preprocessor", "input_axes or preprocessor");
            let (matmul, elementwise) = cost.ok_or_else(too_big)?;
            f.add(
                "preprocessor",
                Cost {
                    matmul,
                    elementwise,
                },
            )
            .ok_or_else(too_big)?;
        }
        if let Some(p) = self.position_projection {
            let raw = self.position_encoding.raw_channels(self.input_axes.len());
            if raw > 0 {
                let c = prod(&[2, m, raw, p]).zip(prod(&[m, p]));
                c.and_then(|(matmul, elementwise)| {
                    f.add(
                        "position projection",
                        Cost {
                            matmul,
                            elementwise,
                        },
                    )
                })
                .ok_or_else(|| {
                    overflow(
                        "the position projection",
                        "input_axes or position_projection",
                    )
                })?;
            }
        }
        let cross = attention_cost(self, self.cross_dims(), n, m, true, self.query_residual)
            .zip(ff_cost(self, &self.cross_feed_forward, n, dl))
            .and_then(|(a, b)| a.plus(b))
            .ok_or_else(|| {
                overflow(
                    "a cross-attend",
                    &format!("num_latents ({n}) or input_axes ({m} tokens)"),
                )
            })?;
        let tower_fields = format!("num_latents ({n}), latent_dim ({dl}) or self_per_block");
        let tower = attention_cost(self, self.self_dims(), n, n, false, true)
            .zip(ff_cost(self, &self.self_feed_forward, n, dl))
            .and_then(|(a, b)| a.plus(b))
            .and_then(|l| l.times(u64::try_from(self.self_per_block).ok()?))
            .ok_or_else(|| overflow("a latent tower", &tower_fields))?;
        for b in 0..self.num_blocks {
            if b < self.num_cross_attends {
                f.add(format!("cross-attend {b}"), cross)
                    .ok_or_else(|| overflow("the model", "num_cross_attends or num_latents"))?;
            }
            if self.self_per_block > 0 {
                f.add(format!("latent tower {b}"), tower)
                    .ok_or_else(|| overflow("the model", &tower_fields))?;
            }
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier {
                num_classes,
                layer_norm,
            } => {
                let k = *num_classes;
                let elementwise =
                    sum(&[prod(&[n, dl]), when(*layer_norm, prod(&[dl])), prod(&[k])]);
                prod(&[2, dl, k])
                    .zip(elementwise)
                    .and_then(|(matmul, elementwise)| {
                        f.add(
                            "head",
                            Cost {
                                matmul,
                                elementwise,
                            },
                        )
                    })
                    .ok_or_else(|| overflow("the head", "head.num_classes or latent_dim"))?;
            }
            HeadConfig::Decoder(dec) => {
                let dims = self.decoder_dims().ok_or_else(|| {
                    ModelError::Unsupported("a decoder head without decoder widths".into())
                })?;
                let (q, _) = dec.query.shape();
                let k = dec.num_outputs;
                attention_cost(self, dims, q, n, true, dec.query_residual)
                    .zip(ff_cost(self, &dec.feed_forward, q, dims.out))
                    .and_then(|(a, b)| a.plus(b))
                    .and_then(|a| {
                        a.plus(Cost {
                            matmul: prod(&[2, q, dims.out, k])?,
                            elementwise: prod(&[q, k])?,
                        })
                    })
                    .and_then(|c| f.add("decoder", c))
                    .ok_or_else(|| {
                        overflow("the decoder", "head.query, head.num_outputs or num_latents")
                    })?;
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preprocessor's cost is its own part: a 1 x 1 convolution is a multiply-add per input
    /// element, input channel and token channel plus the bias; none adds nothing.
    #[test]
    fn preprocessor_flops() {
        let base = PerceiverConfig {
            input_channels: 3,
            input_axes: vec![6, 6],
            num_latents: 4,
            latent_dim: 16,
            ..PerceiverConfig::default()
        };
        let part = |c: &PerceiverConfig| {
            let f = c.try_flops_per_example().unwrap();
            f.parts
                .iter()
                .find(|(n, _)| n == "preprocessor")
                .map(|p| p.1)
        };
        assert_eq!(part(&base), None);
        let c = PerceiverConfig {
            preprocessor: Preprocessor::Conv1x1 { channels: 8 },
            ..base.clone()
        };
        assert_eq!(part(&c), Some(2 * 36 * 3 * 8 + 36 * 8));
        let c = PerceiverConfig {
            input_axes: vec![16, 12],
            preprocessor: Preprocessor::ConvDownsample { channels: 8 },
            ..base
        };
        // Convolution at 8 x 6, BatchNorm and ReLU there, the pool over the 3 x 2 tokens.
        assert_eq!(part(&c), Some(2 * 48 * 3 * 49 * 8 + 48 * 8 * 3 + 6 * 8 * 9));
    }
}
