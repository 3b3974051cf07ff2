//! [`PerceiverConfig::validate`]: every field checked, the error naming the first bad one.

use super::*;

impl PerceiverConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(Zero { field })
            } else {
                Ok(())
            }
        };
        positive("input_channels", self.input_channels)?;
        if self.input_axes.is_empty() {
            return Err(Inconsistent {
                field: "input_axes",
                reason: "needs at least one axis".into(),
            });
        }
        if self.input_axes.contains(&0) {
            return Err(Zero {
                field: "input_axes",
            });
        }
        self.preprocessor.validate(&self.input_axes)?;
        self.position_encoding
            .validate(self.input_axes.len(), self.position_projection)?;
        positive("num_latents", self.num_latents)?;
        positive("latent_dim", self.latent_dim)?;
        self.check_sizes()?;
        if !(self.latent_init.std.is_finite() && self.latent_init.std >= 0.0) {
            return Err(OutOfRange {
                field: "latent_init.std",
                value: self.latent_init.std,
                expected: "finite, >= 0",
            });
        }
        if let Some(t) = self.latent_init.truncation {
            if !(t > 0.0) || (self.latent_init.std > 0.0 && t < 0.01 * self.latent_init.std) {
                return Err(OutOfRange {
                    field: "latent_init.truncation",
                    value: t,
                    expected: "> 0 and not far below std",
                });
            }
        }
        check_attention(
            [
                "cross_attention.heads",
                "cross_attention.qk_dim",
                "cross_attention.v_dim",
            ],
            &self.cross_attention,
            self.cross_dims(),
        )?;
        check_ff("cross_feed_forward", &self.cross_feed_forward)?;
        check_attention(
            [
                "self_attention.heads",
                "self_attention.qk_dim",
                "self_attention.v_dim",
            ],
            &self.self_attention,
            self.self_dims(),
        )?;
        check_ff("self_feed_forward", &self.self_feed_forward)?;
        positive("num_blocks", self.num_blocks)?;
        positive("num_cross_attends", self.num_cross_attends)?;
        if self.num_cross_attends > self.num_blocks {
            return Err(Inconsistent {
                field: "num_cross_attends",
                reason: format!(
                    "{} cross-attends need at least as many blocks, got num_blocks = {}",
                    self.num_cross_attends, self.num_blocks
                ),
            });
        }
        if let WeightSharing::Custom { cross, towers } = &self.sharing {
            let lists = [
                (
                    "sharing.cross",
                    cross,
                    self.num_cross_attends,
                    "cross-attend",
                ),
                ("sharing.towers", towers, self.num_blocks, "block"),
            ];
            for (field, sets, want, per) in lists {
                if sets.len() != want {
                    return Err(Inconsistent {
                        field,
                        reason: format!("needs one set per {per} ({want}), got {}", sets.len()),
                    });
                }
            }
            check_first_use("sharing.cross", cross)?;
            check_first_use("sharing.towers", towers)?;
        }
        let prob = |field: &'static str, p: f32| {
            if (0.0..1.0).contains(&p) {
                Ok(())
            } else {
                Err(OutOfRange {
                    field,
                    value: p,
                    expected: "[0, 1)",
                })
            }
        };
        prob("dropout.attention", self.dropout.attention)?;
        prob("dropout.feed_forward", self.dropout.feed_forward)?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(OutOfRange {
                field: "layer_norm_eps",
                value: self.layer_norm_eps,
                expected: "finite, > 0",
            });
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier { num_classes, .. } => {
                positive("head.num_classes", *num_classes)?;
            }
            HeadConfig::Decoder(d) => {
                positive("head.num_outputs", d.num_outputs)?;
                match &d.query {
                    QueryConfig::Trainable {
                        num_queries,
                        channels,
                        init_scale,
                    } => {
                        positive("head.query.num_queries", *num_queries)?;
                        positive("head.query.channels", *channels)?;
                        if !(init_scale.is_finite() && *init_scale >= 0.0) {
                            return Err(OutOfRange {
                                field: "head.query.init_scale",
                                value: *init_scale,
                                expected: "finite, >= 0",
                            });
                        }
                    }
                    QueryConfig::Fourier {
                        fourier,
                        index_dims,
                    } => {
                        if index_dims.is_empty() || index_dims.contains(&0) {
                            return Err(Zero {
                                field: "head.query.index_dims",
                            });
                        }
                        fourier
                            .validate(index_dims.len())
                            .map_err(|e| Inconsistent {
                                field: "head.query.fourier",
                                reason: e.to_string(),
                            })?;
                    }
                }
                check_attention(
                    [
                        "head.attention.heads",
                        "head.attention.qk_dim",
                        "head.attention.v_dim",
                    ],
                    &d.attention,
                    self.decoder_dims().expect("decoder head"),
                )?;
                check_ff("head.feed_forward", &d.feed_forward)?;
                if d.query_residual {
                    let dims = self.decoder_dims().expect("decoder head");
                    if dims.out != dims.q_in {
                        return Err(Inconsistent {
                            field: "head.query_residual",
                            reason: "needs the output width to equal the query width".into(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_attention(
    fields: [&'static str; 3],
    a: &AttentionConfig,
    dims: AttnDims,
) -> Result<(), ConfigError> {
    let [heads_field, qk_field, v_field] = fields;
    if a.heads == 0 {
        return Err(ConfigError::Zero { field: heads_field });
    }
    for (w, field) in [(dims.qk, qk_field), (dims.v, v_field)] {
        if w == 0 {
            return Err(ConfigError::Zero { field });
        }
        if w % a.heads != 0 {
            return Err(ConfigError::NotDivisible {
                field,
                width: w,
                heads: a.heads,
            });
        }
    }
    Ok(())
}

fn check_ff(field: &'static str, f: &FeedForwardConfig) -> Result<(), ConfigError> {
    if f.multiplier == 0 {
        return Err(ConfigError::Zero { field });
    }
    Ok(())
}

fn check_first_use(field: &'static str, sets: &[usize]) -> Result<(), ConfigError> {
    let mut next = 0;
    for &s in sets {
        if s > next {
            return Err(ConfigError::Inconsistent {
                field,
                reason: format!(
                    "sets must be numbered in order of first use (0, 1, ...), got {sets:?}"
                ),
            });
        }
        if s == next {
            next += 1;
        }
    }
    Ok(())
}
