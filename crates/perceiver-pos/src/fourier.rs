//! Fourier position features on N-d grids and at arbitrary positions.
//!
//! # Definition
//! For a position `x = (x_1 .. x_d)` (each coordinate in `[-1, 1]` on a grid) and `K` bands per
//! axis with frequencies `f_{a,k} = linspace(1, max_resolution_a / 2, K)`, the features are
//! `sin(π f_{a,k} x_a)`, `cos(π f_{a,k} x_a)` (no cosines when `sine_only`) and, with
//! `concat_pos`, the raw coordinates `x_a`. Two channel orders exist:
//!
//! - [`ChannelOrder::DeepMind`] (DeepMind's JAX code, Hugging Face, krasserm):
//!   `[x_1 .. x_d, sin(all bands of x_1) .. sin(all bands of x_d), cos(same order)]`;
//! - [`ChannelOrder::Lucidrains`] (`perceiver-pytorch`): per axis `[sin(K bands), cos(K bands), x_a]`,
//!   the axes one after another.
//!
//! # Numerics
//! Everything is computed in f32 as PyTorch does it, so the features agree with the
//! references to the last bit or two: `linspace` uses PyTorch's symmetric formula
//! (`start + step·i` in the first half, `end - step·(n-1-i)` in the second, fused
//! multiply-adds), the argument is `(x·f)·π` rounded after each product, as
//! `x * scales * pi` in f32.

use perceiver_tensor::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Order of the Fourier channels: `[pos, sin, cos]` (DeepMind) or per axis `[sin, cos, pos]`
/// (lucidrains); see [`FourierFeatures`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    /// `[positions, sines, cosines]`, bands grouped by axis inside the sines and the cosines
    /// (DeepMind, Hugging Face, krasserm).
    #[default]
    DeepMind,
    /// Per axis `[sines, cosines, position]` (lucidrains `perceiver-pytorch`).
    Lucidrains,
}

/// Settings of the Fourier position features.
///
/// ```
/// use perceiver_pos::{FourierConfig, FourierConfigError, FourierFeatures};
/// // 4 bands up to 8 / 2 = 4 on both axes of a 2-D grid: 2 x (2 x 4 + 1) = 18 channels.
/// let config = FourierConfig::deepmind(4, vec![8.0, 8.0]);
/// assert_eq!(config.num_channels(2), 18);
/// assert_eq!(config.frequencies(0), vec![1.0, 2.0, 3.0, 4.0]);
/// let grid = FourierFeatures::new(config.clone()).grid(&[3, 5])?;
/// assert_eq!(grid.shape(), &[3, 5, 18]);
/// // JSON: the flags and the order are optional (raw positions, cosines, DeepMind order).
/// let json = r#"{"num_bands": 4, "max_resolution": [8.0, 8.0]}"#;
/// let parsed: FourierConfig = serde_json::from_str(json).expect("valid JSON");
/// assert_eq!(parsed, config);
/// // Two resolutions do not fit a 3-D grid.
/// assert_eq!(config.validate(3), Err(FourierConfigError::ResolutionCount { got: 2, axes: 3 }));
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FourierConfig {
    /// Frequency bands per axis (`K`).
    pub num_bands: usize,
    /// Per-axis maximum resolution: the top band of axis `a` is `max_resolution[a] / 2`
    /// (Nyquist at that resolution). A single value applies to every axis (lucidrains'
    /// `max_freq`).
    pub max_resolution: Vec<f32>,
    /// Append the raw coordinates to the sines and cosines.
    #[serde(default = "yes")]
    pub concat_pos: bool,
    /// Sines only (no cosines).
    #[serde(default)]
    pub sine_only: bool,
    /// Channel order.
    #[serde(default)]
    pub order: ChannelOrder,
}

fn yes() -> bool {
    true
}

/// What is wrong with a [`FourierConfig`] for a given number of axes.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FourierConfigError {
    /// `num_bands` is zero.
    #[error("num_bands must be positive")]
    NoBands,
    /// `max_resolution` has neither one value nor one per axis.
    #[error("max_resolution has {got} values; it needs 1 or one per axis ({axes})")]
    ResolutionCount {
        /// Values given.
        got: usize,
        /// Number of axes.
        axes: usize,
    },
    /// A resolution is not finite and positive.
    #[error("max_resolution[{axis}] = {value} must be finite and positive")]
    BadResolution {
        /// Axis index.
        axis: usize,
        /// The value.
        value: f32,
    },
}

impl FourierConfig {
    /// DeepMind / Hugging Face features: `[pos, sin, cos]`, per-axis resolutions.
    pub fn deepmind(num_bands: usize, max_resolution: Vec<f32>) -> Self {
        FourierConfig {
            num_bands,
            max_resolution,
            concat_pos: true,
            sine_only: false,
            order: ChannelOrder::DeepMind,
        }
    }

    /// lucidrains features: per axis `[sin, cos, pos]`, one `max_freq` for every axis.
    pub fn lucidrains(num_bands: usize, max_freq: f32) -> Self {
        FourierConfig {
            num_bands,
            max_resolution: vec![max_freq],
            concat_pos: true,
            sine_only: false,
            order: ChannelOrder::Lucidrains,
        }
    }

    /// Number of feature channels for `axes` axes: `axes · (K·(1 or 2) + concat_pos)`.
    pub fn num_channels(&self, axes: usize) -> usize {
        let per_band = if self.sine_only { 1 } else { 2 };
        axes * (self.num_bands * per_band + usize::from(self.concat_pos))
    }

    /// Checks the settings for inputs with `axes` axes.
    pub fn validate(&self, axes: usize) -> std::result::Result<(), FourierConfigError> {
        if self.num_bands == 0 {
            return Err(FourierConfigError::NoBands);
        }
        let n = self.max_resolution.len();
        if n != 1 && n != axes {
            return Err(FourierConfigError::ResolutionCount { got: n, axes });
        }
        for (axis, &value) in self.max_resolution.iter().enumerate() {
            if !(value.is_finite() && value > 0.0) {
                return Err(FourierConfigError::BadResolution { axis, value });
            }
        }
        Ok(())
    }

    /// The resolution of axis `a`.
    fn resolution(&self, a: usize) -> f32 {
        if self.max_resolution.len() == 1 {
            self.max_resolution[0]
        } else {
            self.max_resolution[a]
        }
    }

    /// The band frequencies of axis `a` (`linspace(1, max_resolution_a / 2, K)` in f32).
    pub fn frequencies(&self, a: usize) -> Vec<f32> {
        linspace_f32(
            1.0,
            (self.resolution(a) as f64 / 2.0) as f32,
            self.num_bands,
        )
    }

    /// Writes the features of one point `pos` (`d` coordinates) into `out`
    /// (`num_channels(d)` values). `freqs[a]` are the frequencies of axis `a`.
    fn encode_point(&self, pos: &[f32], freqs: &[Vec<f32>], out: &mut [f32]) {
        const PI: f32 = std::f32::consts::PI;
        let d = pos.len();
        let k = self.num_bands;
        match self.order {
            ChannelOrder::DeepMind => {
                let mut o = 0;
                if self.concat_pos {
                    out[..d].copy_from_slice(pos);
                    o = d;
                }
                let sin_base = o;
                let cos_base = o + d * k;
                for a in 0..d {
                    for (j, &f) in freqs[a].iter().enumerate() {
                        let arg = (pos[a] * f) * PI;
                        out[sin_base + a * k + j] = arg.sin();
                        if !self.sine_only {
                            out[cos_base + a * k + j] = arg.cos();
                        }
                    }
                }
            }
            ChannelOrder::Lucidrains => {
                let per_axis = self.num_channels(1);
                for a in 0..d {
                    let base = a * per_axis;
                    for (j, &f) in freqs[a].iter().enumerate() {
                        let arg = (pos[a] * f) * PI;
                        out[base + j] = arg.sin();
                        if !self.sine_only {
                            out[base + k + j] = arg.cos();
                        }
                    }
                    if self.concat_pos {
                        out[base + per_axis - 1] = pos[a];
                    }
                }
            }
        }
    }
}

/// `n` evenly spaced f32 values from `start` to `end`, computed as PyTorch's CPU `linspace`
/// does for f32 (`step = (end - start) / (n - 1)` in f32; `start + step·i` for the first half,
/// `end - step·(n - 1 - i)` for the second, each as one fused multiply-add, so both ends are
/// exact and the values equal PyTorch's bit for bit).
pub fn linspace_f32(start: f32, end: f32, n: usize) -> Vec<f32> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f32;
            let half = n / 2;
            (0..n)
                .map(|i| {
                    // Fused multiply-adds, as PyTorch's compiled kernel evaluates these
                    // (checked bit for bit against its output).
                    if i < half {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((n - 1 - i) as f32, end)
                    }
                })
                .collect()
        }
    }
}

/// Positions of an N-d grid of shape `dims`: `[*dims, d]`, coordinate `a` of point
/// `(i_1 .. i_d)` being `linspace(-1, 1, dims[a])[i_a]` ('ij' indexing, axis 0 = rows).
pub fn grid_positions(dims: &[usize]) -> Tensor {
    let d = dims.len();
    let n: usize = dims.iter().product();
    let axes: Vec<Vec<f32>> = dims.iter().map(|&m| linspace_f32(-1.0, 1.0, m)).collect();
    let mut data = vec![0.0f32; n * d];
    let mut idx = vec![0usize; d];
    for p in 0..n {
        for a in 0..d {
            data[p * d + a] = axes[a][idx[a]];
        }
        for a in (0..d).rev() {
            idx[a] += 1;
            if idx[a] < dims[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    let mut shape = dims.to_vec();
    shape.push(d);
    Tensor::from_vec(data, &shape).expect("sizes agree")
}

/// Fourier position features with a per-shape cache.
///
/// ```
/// use perceiver_pos::{FourierConfig, FourierFeatures};
/// let ff = FourierFeatures::new(FourierConfig::deepmind(64, vec![224.0, 224.0]));
/// let grid = ff.grid(&[4, 3])?;
/// assert_eq!(grid.shape(), &[4, 3, 258]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct FourierFeatures {
    config: FourierConfig,
    cache: Arc<Mutex<HashMap<Vec<usize>, Tensor>>>,
}

impl FourierFeatures {
    /// Features with these settings (validated when first used, against the number of axes).
    pub fn new(config: FourierConfig) -> Self {
        FourierFeatures {
            config,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The settings.
    pub fn config(&self) -> &FourierConfig {
        &self.config
    }

    /// Number of channels for `axes` axes.
    pub fn num_channels(&self, axes: usize) -> usize {
        self.config.num_channels(axes)
    }

    #[track_caller]
    fn check(&self, axes: usize) -> Result<Vec<Vec<f32>>> {
        if let Err(e) = self.config.validate(axes) {
            return Err(Error::invalid("FourierFeatures", e.to_string()));
        }
        Ok((0..axes).map(|a| self.config.frequencies(a)).collect())
    }

    /// The `c` features of each of the `n` points of `d` coordinates in `pv`, point after point.
    fn encode_points(
        &self,
        pv: &[f32],
        n: usize,
        d: usize,
        freqs: &[Vec<f32>],
        c: usize,
    ) -> Vec<f32> {
        let mut data = vec![0.0f32; n * c];
        for p in 0..n {
            self.config.encode_point(
                &pv[p * d..(p + 1) * d],
                freqs,
                &mut data[p * c..(p + 1) * c],
            );
        }
        data
    }

    /// The features of the grid of shape `dims`: `[*dims, channels]`, untracked. Computed
    /// once per shape, then served from the cache (a cheap clone of shared storage).
    #[track_caller]
    pub fn grid(&self, dims: &[usize]) -> Result<Tensor> {
        if let Some(t) = self.cache.lock().expect("cache lock").get(dims) {
            return Ok(t.clone());
        }
        let freqs = self.check(dims.len())?;
        let pos = grid_positions(dims);
        let c = self.num_channels(dims.len());
        let d = dims.len();
        let n: usize = dims.iter().product();
        let pv = pos.to_vec();
        let data = self.encode_points(&pv, n, d, &freqs, c);
        let mut shape = dims.to_vec();
        shape.push(c);
        let t = Tensor::from_vec(data, &shape)?;
        self.cache
            .lock()
            .expect("cache lock")
            .insert(dims.to_vec(), t.clone());
        Ok(t)
    }

    /// The features of arbitrary positions `pos: [..., d]` (for instance `[batch, n, d]`: point
    /// clouds, permuted pixels): `[..., channels]`, untracked (no gradient flows to positions).
    #[track_caller]
    pub fn encode(&self, pos: &Tensor) -> Result<Tensor> {
        let Some(&d) = pos.shape().last() else {
            return Err(Error::invalid(
                "FourierFeatures::encode",
                "positions must be [..., d] with at least one axis",
            ));
        };
        let freqs = self.check(d)?;
        let c = self.num_channels(d);
        let pv = pos.to_vec();
        let n = pv.len().checked_div(d).unwrap_or(0);
        let data = self.encode_points(&pv, n, d, &freqs, c);
        let mut shape = pos.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = c;
        Tensor::from_vec(data, &shape)
    }

    /// Number of cached grid shapes.
    pub fn cached_shapes(&self) -> usize {
        self.cache.lock().expect("cache lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_torch_values() {
        // torch.linspace(-1, 1, 5) = [-1, -0.5, 0, 0.5, 1]
        assert_eq!(linspace_f32(-1.0, 1.0, 5), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(linspace_f32(1.0, 5.0, 1), vec![1.0]);
        let v = linspace_f32(-1.0, 1.0, 6);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[5], 1.0);
        assert!((v[2] + 0.2).abs() < 1e-7);
    }

    #[test]
    fn grid_is_ij_ordered() {
        let g = grid_positions(&[2, 3]);
        assert_eq!(g.shape(), &[2, 3, 2]);
        let v = g.to_vec();
        // point (0, 1): row -1, column 0
        assert_eq!(&v[2..4], &[-1.0, 0.0]);
        // point (1, 2): row 1, column 1
        assert_eq!(&v[10..12], &[1.0, 1.0]);
    }

    #[test]
    fn channel_orders() {
        let pos = Tensor::from_vec(vec![0.5, -0.25], &[1, 2]).unwrap();
        let dm = FourierFeatures::new(FourierConfig::deepmind(2, vec![4.0, 8.0]));
        let v = dm.encode(&pos).unwrap().to_vec();
        assert_eq!(v.len(), 2 * 5);
        let pi = std::f32::consts::PI;
        // freqs axis0: [1, 2]; axis1: [1, 4]
        let want = [
            0.5,
            -0.25,
            (0.5 * 1.0 * pi).sin(),
            (0.5 * 2.0 * pi).sin(),
            (-0.25 * 1.0 * pi).sin(),
            (-0.25 * 4.0 * pi).sin(),
            (0.5 * 1.0 * pi).cos(),
            (0.5 * 2.0 * pi).cos(),
            (-0.25 * 1.0 * pi).cos(),
            (-0.25 * 4.0 * pi).cos(),
        ];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
        let lr = FourierFeatures::new(FourierConfig::lucidrains(2, 4.0));
        let v = lr.encode(&pos).unwrap().to_vec();
        let want = [
            (0.5 * 1.0 * pi).sin(),
            (0.5 * 2.0 * pi).sin(),
            (0.5 * 1.0 * pi).cos(),
            (0.5 * 2.0 * pi).cos(),
            0.5,
            (-0.25 * 1.0 * pi).sin(),
            (-0.25 * 2.0 * pi).sin(),
            (-0.25 * 1.0 * pi).cos(),
            (-0.25 * 2.0 * pi).cos(),
            -0.25,
        ];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{v:?}");
        }
    }

    #[test]
    fn sine_only_and_no_pos() {
        let mut c = FourierConfig::deepmind(3, vec![10.0]);
        c.sine_only = true;
        c.concat_pos = false;
        assert_eq!(c.num_channels(2), 6);
        let f = FourierFeatures::new(c.clone());
        assert_eq!(f.grid(&[2, 2]).unwrap().shape(), &[2, 2, 6]);
        c.order = ChannelOrder::Lucidrains;
        c.concat_pos = true;
        assert_eq!(c.num_channels(3), 12);
        let f = FourierFeatures::new(c);
        assert_eq!(f.grid(&[2, 1, 3]).unwrap().shape(), &[2, 1, 3, 12]);
    }

    #[test]
    fn grid_equals_encoding_of_grid_positions_and_is_cached() {
        let f = FourierFeatures::new(FourierConfig::deepmind(5, vec![7.0, 9.0, 11.0]));
        let g = f.grid(&[3, 2, 4]).unwrap();
        let p = grid_positions(&[3, 2, 4]).reshape(&[1, 24, 3]).unwrap();
        let e = f.encode(&p).unwrap();
        assert_eq!(g.to_vec(), e.to_vec());
        assert_eq!(f.cached_shapes(), 1);
        let g2 = f.grid(&[3, 2, 4]).unwrap();
        assert_eq!(g.to_vec(), g2.to_vec());
        assert_eq!(f.cached_shapes(), 1);
    }

    #[test]
    fn bad_configs_are_errors() {
        let f = FourierFeatures::new(FourierConfig::deepmind(4, vec![1.0, 2.0]));
        assert!(f.grid(&[2, 2, 2]).is_err());
        let f = FourierFeatures::new(FourierConfig::deepmind(0, vec![1.0]));
        assert!(f.grid(&[2]).is_err());
        let f = FourierFeatures::new(FourierConfig::deepmind(2, vec![-1.0]));
        assert!(f.grid(&[2]).is_err());
    }

    #[test]
    fn config_json_round_trip() {
        let c = FourierConfig::lucidrains(6, 10.0);
        let s = serde_json::to_string(&c).unwrap();
        let back: FourierConfig = serde_json::from_str(&s).unwrap();
        assert_eq!(c, back);
        let minimal: FourierConfig =
            serde_json::from_str(r#"{"num_bands": 4, "max_resolution": [8]}"#).unwrap();
        assert!(minimal.concat_pos && !minimal.sine_only);
        assert_eq!(minimal.order, ChannelOrder::DeepMind);
    }
}
