//! Samples (one example: value tokens, their positions, a label) and batches (stacked tensors).
//!
//! # Layout
//! A [`Sample`] is a set of `tokens` tokens. `values` is `[tokens, channels]` row-major; the
//! optional `positions` is `[tokens, pos_dim]` row-major, so the position of token `t` sits at
//! the same row as its value. Anything that reorders tokens (see [`Sample::permute_tokens`])
//! moves both together. Data on a regular grid (images, spectrograms, video) also records the
//! grid shape (`[H, W]`, `[T]`, `[F, H, W]`), with tokens in row-major ('ij') grid order and
//! positions `linspace(-1, 1)` per axis ([`grid_positions`]).
//!
//! A [`Batch`] stacks samples of equal shape: `inputs` is `[B, *grid, C]` when all samples share
//! a grid, else `[B, tokens, C]`; `positions` has the same leading dims with `pos_dim` last.

use crate::error::{DataError, Result};
use perceiver_tensor::Tensor;

/// One example: value tokens, optional positions, optional grid shape and a class label.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Token values, `[tokens, channels]` row-major.
    pub values: Vec<f32>,
    /// Channels per token (the last dim of `values`).
    pub channels: usize,
    /// Token positions, `[tokens, pos_dim]` row-major, when the modality has them.
    pub positions: Option<Vec<f32>>,
    /// Coordinates per position (0 when `positions` is `None`).
    pub pos_dim: usize,
    /// Grid shape when the tokens are the cells of a regular grid in row-major order.
    pub grid: Option<Vec<usize>>,
    /// Class label.
    pub label: usize,
}

/// Positions of the cells of a grid, `[prod(grid), grid.len()]` row-major: for each axis
/// `linspace(-1, 1, n)` (0 when `n == 1`), combined in 'ij' order (last axis fastest).
pub fn grid_positions(grid: &[usize]) -> Vec<f32> {
    let d = grid.len();
    let n: usize = grid.iter().product();
    let axes: Vec<Vec<f32>> = grid.iter().map(|&g| linspace(g)).collect();
    let mut out = Vec::with_capacity(n * d);
    let mut idx = vec![0usize; d];
    for _ in 0..n {
        for (a, &i) in idx.iter().enumerate() {
            out.push(axes[a][i]);
        }
        for a in (0..d).rev() {
            idx[a] += 1;
            if idx[a] < grid[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

/// `n` evenly spaced values in `[-1, 1]` (a single point sits at 0), computed in f64.
pub fn linspace(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            if n == 1 {
                0.0
            } else {
                (-1.0 + 2.0 * i as f64 / (n - 1) as f64) as f32
            }
        })
        .collect()
}

thread_local! {
    /// Recently used grids and their positions (each loader thread keeps its own copy).
    static GRID_CACHE: std::cell::RefCell<Vec<(Vec<usize>, std::rc::Rc<Vec<f32>>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// [`grid_positions`] through a small per-thread cache (positions of the same grid are
/// identical for every sample, so they are computed once and copied).
fn cached_grid_positions(grid: &[usize]) -> Vec<f32> {
    GRID_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some((_, p)) = c.iter().find(|(g, _)| g == grid) {
            return p.as_ref().clone();
        }
        let p = grid_positions(grid);
        if c.len() >= 8 {
            c.remove(0);
        }
        c.push((grid.to_vec(), std::rc::Rc::new(p.clone())));
        p
    })
}

impl Sample {
    /// A grid sample: `values` is `[prod(grid), channels]` in row-major grid order; positions
    /// are [`grid_positions`].
    pub fn on_grid(values: Vec<f32>, grid: &[usize], channels: usize, label: usize) -> Sample {
        Sample {
            values,
            channels,
            positions: Some(cached_grid_positions(grid)),
            pos_dim: grid.len(),
            grid: Some(grid.to_vec()),
            label,
        }
    }

    /// An image sample: `values` is `[H*W, C]` (HWC order); positions `[H*W, 2]`; grid `[H, W]`.
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

    /// The position of token `t` (`pos_dim` numbers).
    pub fn position(&self, t: usize) -> Option<&[f32]> {
        let start = t.checked_mul(self.pos_dim)?;
        let end = start.checked_add(self.pos_dim)?;
        self.positions.as_ref().and_then(|p| p.get(start..end))
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
    /// positions move together; the grid shape is dropped because the tokens are no longer in
    /// grid order. `perm` must be a permutation of `0..tokens`.
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
    /// Positions with the same leading dims as `inputs` and `pos_dim` last, when the samples
    /// have positions.
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
/// and position dims, and either all or none must have positions.
pub fn collate(samples: Vec<Sample>, indices: Vec<usize>) -> Result<Batch> {
    let first = samples
        .first()
        .ok_or_else(|| DataError::invalid("cannot collate an empty batch"))?;
    first.validate()?;
    let (tokens, channels, pos_dim) = (first.tokens(), first.channels, first.pos_dim);
    let has_pos = first.positions.is_some();
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
        if s.positions.is_some() != has_pos || (has_pos && s.pos_dim != pos_dim) {
            return Err(DataError::invalid(format!(
                "batch sample {k} has different positions from sample 0"
            )));
        }
        if grid.is_some() && s.grid != grid {
            grid = None;
        }
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
