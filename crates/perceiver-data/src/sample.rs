//! Samples (one example: value tokens, their positions, a label) and batches (stacked tensors).
//!
//! # Layout
//! A [`Sample`] is a set of `tokens` tokens. `values` is `[tokens, channels]` row-major; the
//! optional `positions` is `[tokens, pos_dim]` row-major, so the position of token `t` sits at
//! the same row as its value. Anything that reorders tokens (see [`Sample::permute_tokens`])
//! moves both together.
//!
//! Data on a regular grid (images, spectrograms, video) records the grid shape (`[H, W]`, `[T]`,
//! `[F, H, W]`), with tokens in row-major ('ij') grid order, and leaves its positions implicit
//! (`positions` is `None`, `pos_dim` is the grid's rank): they are `linspace(-1, 1)` per axis,
//! [`perceiver_pos::grid_positions`], the positions the model computes once per grid shape. Only
//! a sample whose tokens leave grid order (a token permutation) carries them explicitly
//! ([`Sample::materialize_positions`]).
//!
//! A [`Batch`] stacks samples of equal shape: `inputs` is `[B, *grid, C]` when all samples share
//! a grid, else `[B, tokens, C]`; `positions` is `None` for a shared grid (implicit positions),
//! else `[B, tokens, pos_dim]` when the samples have positions.

use crate::error::{DataError, Result};
use perceiver_tensor::Tensor;

/// One example: value tokens, optional positions, optional grid shape and a class label.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Token values, `[tokens, channels]` row-major.
    pub values: Vec<f32>,
    /// Channels per token (the last dim of `values`).
    pub channels: usize,
    /// Explicit token positions, `[tokens, pos_dim]` row-major (point clouds, permuted pixels).
    /// `None` for a sample in grid order, whose positions are implied by `grid`.
    pub positions: Option<Vec<f32>>,
    /// Coordinates per position: the grid's rank for a grid sample, the width of `positions`
    /// otherwise, 0 for a sample without positions.
    pub pos_dim: usize,
    /// Grid shape when the tokens are the cells of a regular grid in row-major order.
    pub grid: Option<Vec<usize>>,
    /// Class label.
    pub label: usize,
}

impl Sample {
    /// A grid sample: `values` is `[prod(grid), channels]` in row-major grid order; its
    /// positions are implicit ([`perceiver_pos::grid_positions`] of `grid`).
    pub fn on_grid(values: Vec<f32>, grid: &[usize], channels: usize, label: usize) -> Sample {
        Sample {
            values,
            channels,
            positions: None,
            pos_dim: grid.len(),
            grid: Some(grid.to_vec()),
            label,
        }
    }

    /// An image sample: `values` is `[H*W, C]` (HWC order); grid `[H, W]` (implicit 2-D
    /// positions).
    pub fn image(
        values: Vec<f32>,
        height: usize,
        width: usize,
        channels: usize,
        label: usize,
    ) -> Sample {
        Sample::on_grid(values, &[height, width], channels, label)
    }

    /// A point-cloud sample: values are the `[N, 3]` coordinates and positions are the same xyz.
    pub fn points(xyz: Vec<f32>, label: usize) -> Sample {
        Sample {
            positions: Some(xyz.clone()),
            values: xyz,
            channels: 3,
            pos_dim: 3,
            grid: None,
            label,
        }
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.values.len().checked_div(self.channels).unwrap_or(0)
    }

    /// The value of token `t` (`channels` numbers).
    pub fn value(&self, t: usize) -> Option<&[f32]> {
        let start = t.checked_mul(self.channels)?;
        self.values.get(start..start.checked_add(self.channels)?)
    }

    /// The explicit position of token `t` (`pos_dim` numbers); `None` for a grid sample whose
    /// positions are implicit (see [`Sample::materialize_positions`]).
    pub fn position(&self, t: usize) -> Option<&[f32]> {
        let start = t.checked_mul(self.pos_dim)?;
        let end = start.checked_add(self.pos_dim)?;
        self.positions.as_ref().and_then(|p| p.get(start..end))
    }

    /// Gives a grid sample with implicit positions its explicit positions
    /// ([`perceiver_pos::grid_positions`] of its grid); any other sample is left as it is.
    pub fn materialize_positions(&mut self) {
        if self.positions.is_none() {
            if let Some(g) = &self.grid {
                self.positions = Some(perceiver_pos::grid_positions(g).to_vec());
                self.pos_dim = g.len();
            }
        }
    }

    /// Checks that the buffers agree with `channels`, `pos_dim` and `grid`.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 || !self.values.len().is_multiple_of(self.channels) {
            return Err(DataError::invalid(format!(
                "sample has {} values, not a multiple of {} channels",
                self.values.len(),
                self.channels
            )));
        }
        let t = self.tokens();
        if let Some(p) = &self.positions {
            if p.len() != t * self.pos_dim {
                return Err(DataError::invalid(format!(
                    "sample has {} position numbers, expected {t} tokens x {}",
                    p.len(),
                    self.pos_dim
                )));
            }
        }
        if let Some(g) = &self.grid {
            if g.iter().product::<usize>() != t {
                return Err(DataError::invalid(format!(
                    "sample grid {g:?} does not hold {t} tokens"
                )));
            }
        }
        Ok(())
    }

    /// Reorders the tokens: token `i` of the result is token `perm[i]` of `self`. Values and
    /// positions move together (a grid sample's implicit positions are made explicit first);
    /// the grid shape is dropped because the permuted tokens are not in grid order. `perm` must be
    /// a permutation of `0..tokens`.
    pub fn permute_tokens(&mut self, perm: &[usize]) -> Result<()> {
        let t = self.tokens();
        if perm.len() != t {
            return Err(DataError::invalid(format!(
                "permutation of {} tokens applied to a sample of {t} tokens",
                perm.len()
            )));
        }
        let mut seen = vec![false; t];
        for &p in perm {
            if p >= t || seen[p] {
                return Err(DataError::invalid(format!(
                    "not a permutation of 0..{t}: index {p} repeated or out of range"
                )));
            }
            seen[p] = true;
        }
        self.materialize_positions();
        self.values = gather_rows(&self.values, self.channels, perm);
        if let Some(p) = &self.positions {
            self.positions = Some(gather_rows(p, self.pos_dim, perm));
        }
        self.grid = None;
        Ok(())
    }
}

fn gather_rows(data: &[f32], width: usize, perm: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len());
    for &p in perm {
        out.extend_from_slice(&data[p * width..(p + 1) * width]);
    }
    out
}

/// A batch of samples as tensors.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Values, `[B, *grid, C]` when every sample has the same grid, else `[B, tokens, C]`.
    pub inputs: Tensor,
    /// Explicit positions with the same leading dims as `inputs` and `pos_dim` last. `None`
    /// when the samples share a grid and leave their positions implicit (they are then
    /// [`perceiver_pos::grid_positions`] of `grid`), or have no positions at all.
    pub positions: Option<Tensor>,
    /// The grid shared by all samples, if any.
    pub grid: Option<Vec<usize>>,
    /// Class labels, one per sample.
    pub labels: Vec<usize>,
    /// The dataset indices of the samples, in batch order.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch (never produced by the loader).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Stacks samples into a [`Batch`]. All samples must have the same number of tokens, channels
/// and position dims, and either all or none must have positions (explicit, or implicit on a
/// grid). Samples that share a grid and carry no explicit positions give a batch without
/// positions; otherwise implicit grid positions are made explicit and stacked with the rest.
pub fn collate(mut samples: Vec<Sample>, indices: Vec<usize>) -> Result<Batch> {
    let has_positions = |s: &Sample| s.positions.is_some() || s.grid.is_some();
    let first = samples
        .first()
        .ok_or_else(|| DataError::invalid("cannot collate an empty batch"))?;
    first.validate()?;
    let (tokens, channels, pos_dim) = (first.tokens(), first.channels, first.pos_dim);
    let has_pos = has_positions(first);
    let mut grid = first.grid.clone();
    for (k, s) in samples.iter().enumerate().skip(1) {
        s.validate()?;
        if s.tokens() != tokens || s.channels != channels {
            return Err(DataError::invalid(format!(
                "batch sample {k} is [{}, {}] but sample 0 is [{tokens}, {channels}]; \
                 crop, pad or resize to a fixed size",
                s.tokens(),
                s.channels
            )));
        }
        if has_positions(s) != has_pos || (has_pos && s.pos_dim != pos_dim) {
            return Err(DataError::invalid(format!(
                "batch sample {k} has different positions from sample 0"
            )));
        }
        if grid.is_some() && s.grid != grid {
            grid = None;
        }
    }
    // Positions stay implicit only when every sample is on the shared grid without explicit ones.
    let has_pos = has_pos && (grid.is_none() || samples.iter().any(|s| s.positions.is_some()));
    if has_pos {
        samples.iter_mut().for_each(Sample::materialize_positions);
    }
    let b = samples.len();
    let mut lead = vec![b];
    match &grid {
        Some(g) => lead.extend_from_slice(g),
        None => lead.push(tokens),
    }
    let mut values = Vec::with_capacity(b * tokens * channels);
    let mut positions = if has_pos {
        Vec::with_capacity(b * tokens * pos_dim)
    } else {
        Vec::new()
    };
    let mut labels = Vec::with_capacity(b);
    for s in samples {
        values.extend_from_slice(&s.values);
        if let Some(p) = &s.positions {
            positions.extend_from_slice(p);
        }
        labels.push(s.label);
    }
    let mut vshape = lead.clone();
    vshape.push(channels);
    let inputs = Tensor::from_vec(values, &vshape)?;
    let positions = if has_pos {
        let mut pshape = lead;
        pshape.push(pos_dim);
        Some(Tensor::from_vec(positions, &pshape)?)
    } else {
        None
    };
    Ok(Batch {
        inputs,
        positions,
        grid,
        labels,
        indices,
    })
}
