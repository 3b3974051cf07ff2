//! Image transforms: per-channel normalisation, random crop with zero padding, horizontal flip,
//! the fixed pixel permutation of the Perceiver paper and patching ([`SpaceToDepth`]).
//!
//! Crop, flip and patching need a sample in grid order (`grid == [H, W]`); apply them before
//! [`PixelPermutation`], which reorders tokens and drops the grid. Normalisation is per channel,
//! so it comes before patching (which multiplies the channels).

use crate::dataset::{Dataset, Transform};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::sync::{Arc, Mutex};

/// Per-channel `(x - mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// Normalisation with the given statistics (one per channel, std > 0).
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(DataError::invalid(
                "normalize needs one mean and one std per channel",
            ));
        }
        if std.iter().any(|&s| !(s > 0.0) || !s.is_finite()) {
            return Err(DataError::invalid(
                "normalize std must be positive and finite",
            ));
        }
        Ok(Normalize { mean, std })
    }

    /// The usual MNIST statistics (0.1307, 0.3081).
    pub fn mnist() -> Self {
        Normalize {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// The usual Fashion-MNIST statistics (0.2860, 0.3530).
    pub fn fashion_mnist() -> Self {
        Normalize {
            mean: vec![0.2860],
            std: vec![0.3530],
        }
    }

    /// The usual CIFAR-10 statistics.
    pub fn cifar10() -> Self {
        Normalize {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// Estimates per-channel mean and std from the first `max_samples` samples of a dataset.
    pub fn fit(ds: &dyn Dataset, max_samples: usize) -> Result<Self> {
        let n = ds.len().min(max_samples);
        if n == 0 {
            return Err(DataError::invalid("cannot fit normalisation on no samples"));
        }
        let mut sum: Vec<f64> = Vec::new();
        let mut sq: Vec<f64> = Vec::new();
        let mut count = 0usize;
        for i in 0..n {
            let s = ds.get(i)?;
            if sum.is_empty() {
                sum = vec![0.0; s.channels];
                sq = vec![0.0; s.channels];
            }
            if s.channels != sum.len() {
                return Err(DataError::invalid("samples have different channel counts"));
            }
            for row in s.values.chunks_exact(s.channels) {
                for (c, &v) in row.iter().enumerate() {
                    sum[c] += v as f64;
                    sq[c] += (v as f64) * (v as f64);
                }
            }
            count += s.tokens();
        }
        let cnt = count.max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / cnt) as f32).collect();
        let std: Vec<f32> = sum
            .iter()
            .zip(&sq)
            .map(|(s, q)| ((q / cnt - (s / cnt).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
            .collect();
        Normalize::new(mean, std)
    }
}

impl Transform for Normalize {
    fn apply(&self, mut s: Sample, _rng: &mut Rng) -> Result<Sample> {
        if s.channels != self.mean.len() {
            return Err(DataError::invalid(format!(
                "normalize has {} channels, sample has {}",
                self.mean.len(),
                s.channels
            )));
        }
        let inv: Vec<f32> = self.std.iter().map(|s| 1.0 / s).collect();
        for row in s.values.chunks_exact_mut(self.mean.len()) {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (*v - self.mean[c]) * inv[c];
            }
        }
        Ok(s)
    }
}

fn image_dims(s: &Sample, what: &str) -> Result<(usize, usize)> {
    s.validate()?;
    match s.grid.as_deref() {
        Some(&[h, w]) => Ok((h, w)),
        _ => Err(DataError::invalid(format!(
            "{what} needs an image sample in grid order (grid [H, W]), got grid {:?}",
            s.grid
        ))),
    }
}

/// Pads the image by `padding` zero pixels on every side, then crops a random `height x width`
/// window (the CIFAR "random crop with padding" augmentation).
#[derive(Clone, Debug, PartialEq)]
pub struct RandomCrop {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
    /// Zero padding added on each side before cropping.
    pub padding: usize,
}

impl RandomCrop {
    /// A square crop of `size` after padding by `padding`.
    pub fn new(size: usize, padding: usize) -> Self {
        RandomCrop {
            height: size,
            width: size,
            padding,
        }
    }
}

impl Transform for RandomCrop {
    fn apply(&self, s: Sample, rng: &mut Rng) -> Result<Sample> {
        let (h, w) = image_dims(&s, "random crop")?;
        let (ph, pw) = (h + 2 * self.padding, w + 2 * self.padding);
        if self.height > ph || self.width > pw || self.height == 0 || self.width == 0 {
            return Err(DataError::invalid(format!(
                "crop {}x{} does not fit a padded {ph}x{pw} image",
                self.height, self.width
            )));
        }
        let y0 = rng.below(ph - self.height + 1);
        let x0 = rng.below(pw - self.width + 1);
        let c = s.channels;
        let mut out = vec![0.0f32; self.height * self.width * c];
        for y in 0..self.height {
            let sy = (y0 + y) as isize - self.padding as isize;
            if sy < 0 || sy >= h as isize {
                continue;
            }
            for x in 0..self.width {
                let sx = (x0 + x) as isize - self.padding as isize;
                if sx < 0 || sx >= w as isize {
                    continue;
                }
                let src = (sy as usize * w + sx as usize) * c;
                let dst = (y * self.width + x) * c;
                out[dst..dst + c].copy_from_slice(&s.values[src..src + c]);
            }
        }
        Ok(Sample::image(out, self.height, self.width, c, s.label))
    }
}

/// Mirrors the image left-right with probability `p`.
#[derive(Clone, Debug, PartialEq)]
pub struct HorizontalFlip {
    /// Flip probability.
    pub p: f32,
}

impl Default for HorizontalFlip {
    fn default() -> Self {
        HorizontalFlip { p: 0.5 }
    }
}

impl Transform for HorizontalFlip {
    fn apply(&self, mut s: Sample, rng: &mut Rng) -> Result<Sample> {
        let (h, w) = image_dims(&s, "horizontal flip")?;
        if rng.uniform() >= self.p {
            return Ok(s);
        }
        let c = s.channels;
        for y in 0..h {
            let row = &mut s.values[y * w * c..(y + 1) * w * c];
            for x in 0..w / 2 {
                for k in 0..c {
                    row.swap(x * c + k, (w - 1 - x) * c + k);
                }
            }
        }
        Ok(s)
    }
}

/// The fixed pixel permutation of the Perceiver paper's permuted-image experiments: one seeded
/// permutation of the tokens, the same for every sample, applied to values *and* positions (so
/// each pixel keeps its position and a model using positions loses nothing). A grid sample's
/// implicit positions become explicit ([`perceiver_pos::grid_positions`], computed once per
/// grid shape and shared by every sample).
#[derive(Clone, Debug)]
pub struct PixelPermutation {
    perm: Vec<usize>,
    /// The grid positions of the last grid seen (every sample of a dataset has the same).
    grid_positions: Arc<Mutex<Option<(Vec<usize>, Arc<Vec<f32>>)>>>,
}

impl PartialEq for PixelPermutation {
    fn eq(&self, other: &Self) -> bool {
        self.perm == other.perm
    }
}

impl PixelPermutation {
    /// A permutation of `tokens` tokens drawn with `seed`.
    pub fn new(tokens: usize, seed: u64) -> Self {
        let mut perm: Vec<usize> = (0..tokens).collect();
        Rng::new(seed).shuffle(&mut perm);
        PixelPermutation {
            perm,
            grid_positions: Arc::default(),
        }
    }

    /// The permutation: output token `i` is input token `perm[i]`.
    pub fn permutation(&self) -> &[usize] {
        &self.perm
    }

    fn grid_positions(&self, grid: &[usize]) -> Arc<Vec<f32>> {
        let mut cache = self
            .grid_positions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match cache.as_ref() {
            Some((g, p)) if g.as_slice() == grid => p.clone(),
            _ => {
                let p = Arc::new(perceiver_pos::grid_positions(grid).to_vec());
                *cache = Some((grid.to_vec(), p.clone()));
                p
            }
        }
    }
}

impl Transform for PixelPermutation {
    fn apply(&self, mut s: Sample, _rng: &mut Rng) -> Result<Sample> {
        if s.positions.is_none() {
            if let Some(g) = s.grid.clone() {
                if g.iter().product::<usize>() == self.perm.len() {
                    s.positions = Some(self.grid_positions(&g).as_ref().clone());
                    s.pos_dim = g.len();
                }
            }
        }
        s.permute_tokens(&self.perm)?;
        Ok(s)
    }
}

/// Feeds an image as `patch x patch` patches (space-to-depth): a `[H, W]` grid of `C` channels
/// becomes a `[H/p, W/p]` grid of `p*p*C` channels, each token holding its patch's rows, then
/// columns, then channels. `H` and `W` must be multiples of `p`; the result is in grid order
/// with implicit positions (those of the patch grid).
///
/// ```
/// use perceiver_data::{image::SpaceToDepth, Sample, Transform};
/// let image = Sample::image((0..16).map(|v| v as f32).collect(), 4, 4, 1, 0);
/// let patches = SpaceToDepth::new(2)?.apply(image, &mut perceiver_tensor::Rng::new(0))?;
/// assert_eq!((patches.grid.clone(), patches.channels), (Some(vec![2, 2]), 4));
/// assert_eq!(patches.value(1), Some(&[2.0, 3.0, 6.0, 7.0][..]));
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceToDepth {
    patch: usize,
}

impl SpaceToDepth {
    /// Patches of `patch x patch` pixels (`patch >= 1`; 1 leaves images as they are).
    pub fn new(patch: usize) -> Result<Self> {
        if patch == 0 {
            return Err(DataError::invalid("patches must be at least 1x1"));
        }
        Ok(SpaceToDepth { patch })
    }

    /// The patch side.
    pub fn patch(&self) -> usize {
        self.patch
    }
}

impl Transform for SpaceToDepth {
    fn apply(&self, s: Sample, _rng: &mut Rng) -> Result<Sample> {
        let p = self.patch;
        if p == 1 {
            return Ok(s);
        }
        let (h, w) = image_dims(&s, "space-to-depth")?;
        if !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(DataError::invalid(format!(
                "patches of {p}x{p} need an image whose sides are multiples of {p}, got {h}x{w}"
            )));
        }
        let c = s.channels;
        let (gh, gw) = (h / p, w / p);
        let mut out = Vec::with_capacity(s.values.len());
        for gy in 0..gh {
            for gx in 0..gw {
                for dy in 0..p {
                    let row = ((gy * p + dy) * w + gx * p) * c;
                    out.extend_from_slice(&s.values[row..row + p * c]);
                }
            }
        }
        Ok(Sample::image(out, gh, gw, p * p * c, s.label))
    }
}
