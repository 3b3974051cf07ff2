//! Sizes with checked arithmetic: the checked widths of the configuration and
//! [`PerceiverConfig::validate`]'s refusal of absurd sizes, naming the field.

use super::*;

/// `field` with the product of the named sizes `parts`, refused when it overflows or exceeds
/// [`PerceiverConfig::MAX_ELEMENTS`].
fn fits(field: &'static str, parts: &[(&str, usize)]) -> Result<usize, ConfigError> {
    let product = parts
        .iter()
        .try_fold(1usize, |a, &(_, x)| a.checked_mul(x))
        .filter(|&p| p as u64 <= PerceiverConfig::MAX_ELEMENTS);
    product.ok_or_else(|| ConfigError::TooLarge {
        field,
        reason: format!(
            "{} exceeds {} elements",
            parts
                .iter()
                .map(|(n, x)| format!("{n} {x}"))
                .collect::<Vec<_>>()
                .join(" × "),
            PerceiverConfig::MAX_ELEMENTS
        ),
    })
}

fn overflow(field: &'static str, what: &str) -> ConfigError {
    ConfigError::TooLarge {
        field,
        reason: format!("{what} overflows"),
    }
}

impl PerceiverConfig {
    /// Channels of the position encoding before the optional projection, with checked
    /// arithmetic (`None` on overflow).
    pub fn checked_raw_position_channels(&self) -> Option<usize> {
        match &self.position_encoding {
            PositionEncodingConfig::None => Some(0),
            PositionEncodingConfig::Fourier(f) => fourier_channels(f, self.input_axes.len()),
            PositionEncodingConfig::Trainable { channels, .. } => Some(*channels),
        }
    }

    /// [`PerceiverConfig::position_channels`] with checked arithmetic (`None` on overflow).
    pub fn checked_position_channels(&self) -> Option<usize> {
        match (&self.position_encoding, self.position_projection) {
            (PositionEncodingConfig::None, _) => Some(0),
            (_, Some(p)) => Some(p),
            (_, None) => self.checked_raw_position_channels(),
        }
    }

    /// Largest number of elements of one tensor (a parameter, or one example's activation of
    /// one layer) a configuration may describe: 2^48 (1 PiB of f32).
    pub const MAX_ELEMENTS: u64 = 1 << 48;
    /// Largest number of blocks, and of self-attention layers over all blocks: 2^20.
    pub const MAX_LAYERS: usize = 1 << 20;

    /// Every size and product of sizes the model allocates per example, checked: a product
    /// that overflows or exceeds [`PerceiverConfig::MAX_ELEMENTS`] is an error naming the field.
    pub(super) fn check_sizes(&self) -> Result<(), ConfigError> {
        let raw_tokens = self
            .input_axes
            .iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .ok_or_else(|| overflow("input_axes", "the number of input elements"))?;
        fits(
            "input_axes",
            &[
                ("input elements", raw_tokens),
                ("input_channels", self.input_channels),
            ],
        )?;
        fits(
            "preprocessor",
            &[
                ("input elements", raw_tokens),
                ("channels", self.token_channels()),
            ],
        )?;
        let tokens = checked_product(&self.token_axes())
            .ok_or_else(|| overflow("input_axes", "the number of input tokens"))?;
        let raw = self
            .checked_raw_position_channels()
            .ok_or_else(|| overflow("position_encoding", "the number of position channels"))?;
        fits("position_encoding", &[("position channels", raw)])?;
        if let PositionEncodingConfig::Trainable { channels, .. } = self.position_encoding {
            fits(
                "position_encoding.channels",
                &[("input tokens", tokens), ("channels", channels)],
            )?;
        }
        if let Some(p) = self.position_projection {
            fits(
                "position_projection",
                &[("position_projection", p), ("position channels", raw)],
            )?;
        }
        let width = self
            .checked_position_channels()
            .and_then(|c| c.checked_add(self.token_channels()))
            .ok_or_else(|| overflow("input_channels", "token channels + position channels"))?;
        fits(
            "input_axes",
            &[("input tokens", tokens), ("input width", width)],
        )?;
        let (n, dl) = (self.num_latents, self.latent_dim);
        fits("num_latents", &[("num_latents", n), ("latent_dim", dl)])?;
        if self.num_blocks > Self::MAX_LAYERS {
            return Err(ConfigError::TooLarge {
                field: "num_blocks",
                reason: format!("{} exceeds {}", self.num_blocks, Self::MAX_LAYERS),
            });
        }
        if self.num_blocks.saturating_mul(self.self_per_block) > Self::MAX_LAYERS {
            return Err(ConfigError::TooLarge {
                field: "self_per_block",
                reason: format!(
                    "num_blocks {} × self_per_block {} exceeds {} layers",
                    self.num_blocks,
                    self.self_per_block,
                    Self::MAX_LAYERS
                ),
            });
        }
        let cross = self.cross_dims();
        for (field, w) in [
            ("cross_attention.qk_dim", cross.qk),
            ("cross_attention.v_dim", cross.v),
        ] {
            fits(field, &[("width", w), ("input width", width)])?;
            fits(field, &[("width", w), ("latent_dim", dl)])?;
            fits(field, &[("width", w), ("num_latents", n)])?;
            fits(field, &[("width", w), ("input tokens", tokens)])?;
        }
        let sd = self.self_dims();
        for (field, w) in [
            ("self_attention.qk_dim", sd.qk),
            ("self_attention.v_dim", sd.v),
        ] {
            fits(field, &[("width", w), ("latent_dim", dl)])?;
            fits(field, &[("width", w), ("num_latents", n)])?;
        }
        for (field, ff) in [
            ("cross_feed_forward.multiplier", &self.cross_feed_forward),
            ("self_feed_forward.multiplier", &self.self_feed_forward),
        ] {
            let (h1, _) = ff
                .checked_hidden(dl)
                .ok_or_else(|| overflow(field, "the hidden width"))?;
            fits(field, &[("hidden width", h1), ("latent_dim", dl)])?;
            fits(field, &[("hidden width", h1), ("num_latents", n)])?;
        }
        match &self.head {
            HeadConfig::None => {}
            HeadConfig::Classifier { num_classes, .. } => {
                fits(
                    "head.num_classes",
                    &[("num_classes", *num_classes), ("latent_dim", dl)],
                )?;
            }
            HeadConfig::Decoder(d) => {
                let (q, cq) = d
                    .query
                    .checked_shape()
                    .ok_or_else(|| overflow("head.query", "the query shape"))?;
                fits("head.query", &[("queries", q), ("query channels", cq)])?;
                let (qk, v) = d.attention.widths(dl);
                for (field, w) in [("head.attention.qk_dim", qk), ("head.attention.v_dim", v)] {
                    fits(field, &[("width", w), ("queries", q)])?;
                    fits(field, &[("width", w), ("query channels", cq)])?;
                    fits(field, &[("width", w), ("num_latents", n)])?;
                    fits(field, &[("width", w), ("latent_dim", dl)])?;
                }
                let (h1, _) = d
                    .feed_forward
                    .checked_hidden(cq)
                    .ok_or_else(|| overflow("head.feed_forward.multiplier", "the hidden width"))?;
                fits(
                    "head.feed_forward.multiplier",
                    &[("hidden width", h1), ("queries", q)],
                )?;
                fits(
                    "head.feed_forward.multiplier",
                    &[("hidden width", h1), ("query channels", cq)],
                )?;
                fits(
                    "head.num_outputs",
                    &[("num_outputs", d.num_outputs), ("query channels", cq)],
                )?;
                fits(
                    "head.num_outputs",
                    &[("num_outputs", d.num_outputs), ("queries", q)],
                )?;
            }
        }
        Ok(())
    }
}

/// The product of `xs`, `None` on overflow.
pub(super) fn checked_product(xs: &[usize]) -> Option<usize> {
    xs.iter().try_fold(1usize, |a, &x| a.checked_mul(x))
}

/// Channels of Fourier features over `axes` axes (what `FourierConfig::num_channels`
/// computes), `None` on overflow.
pub(super) fn fourier_channels(f: &FourierConfig, axes: usize) -> Option<usize> {
    let per_band = if f.sine_only { 1 } else { 2 };
    f.num_bands
        .checked_mul(per_band)?
        .checked_add(usize::from(f.concat_pos))?
        .checked_mul(axes)
}

impl FeedForwardConfig {
    /// [`FeedForwardConfig::hidden`] with checked arithmetic: `None` when a width overflows.
    pub fn checked_hidden(&self, dim: usize) -> Option<(usize, usize)> {
        let h = self.multiplier.checked_mul(dim)?;
        Some(match self.kind {
            FeedForwardKind::Gelu => (h, h),
            FeedForwardKind::Geglu => (h.checked_mul(2)?, h),
        })
    }
}

impl QueryConfig {
    /// [`QueryConfig::shape`] with checked arithmetic: `None` when a size overflows.
    pub fn checked_shape(&self) -> Option<(usize, usize)> {
        match self {
            QueryConfig::Trainable {
                num_queries,
                channels,
                ..
            } => Some((*num_queries, *channels)),
            QueryConfig::Fourier {
                fourier,
                index_dims,
            } => Some((
                checked_product(index_dims)?,
                fourier_channels(fourier, index_dims.len())?,
            )),
        }
    }
}
