//! Procedural video: a moving-shapes clip dataset, so the 3-D Fourier position path has data.
//!
//! Each clip shows one shape (disc, square or triangle, random colour and size) moving in a
//! straight line over a dark, noisy background; the label is the direction of motion, one of 8
//! compass directions, so a classifier must use time. A clip is a `[F*H*W, C]` sample on the grid
//! `[F, H, W]` (implicit 3-D positions, `linspace(-1, 1)` over frames, rows and columns). Clip `i` is
//! a pure function of `(seed, i)`.

use crate::dataset::{generated_dataset, Split};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::f32::consts::PI;

/// Most values in one generated clip (frames x height x width x channels): 2^26.
pub const MAX_CLIP_VALUES: usize = 1 << 26;

/// Class names: directions of motion (image y grows downwards; "up" means towards row 0).
pub const MOTION_CLASSES: [&str; 8] = [
    "right",
    "up-right",
    "up",
    "up-left",
    "left",
    "down-left",
    "down",
    "down-right",
];

/// Parameters of [`MovingShapes`].
///
/// ```
/// use perceiver_data::video::{MovingShapes, MovingShapesConfig};
/// use perceiver_data::{Dataset, Split};
/// let default = MovingShapesConfig::default();
/// assert_eq!((default.frames, default.height, default.width), (8, 32, 32));
/// // 10 tiny clips of 2 grey 8x8 frames: samples on the 3-D grid [frames, height, width].
/// let config = MovingShapesConfig {
///     frames: 2,
///     height: 8,
///     width: 8,
///     channels: 1,
///     ..MovingShapesConfig::split(Split::Train, 10)
/// };
/// let clips = MovingShapes::new(config.clone())?;
/// assert_eq!((clips.len(), clips.num_classes()), (10, 8));
/// let clip = clips.get(9)?;
/// assert_eq!(clips.get(9)?, clip); // clip `i` depends only on `(seed, i)`
/// assert_eq!((clip.grid, clip.channels, clip.label), (Some(vec![2, 8, 8]), 1, 1));
/// // A single frame carries no motion.
/// assert!(MovingShapes::new(MovingShapesConfig { frames: 1, ..config }).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MovingShapesConfig {
    /// Number of clips.
    pub len: usize,
    /// Frames per clip.
    pub frames: usize,
    /// Frame height.
    pub height: usize,
    /// Frame width.
    pub width: usize,
    /// 1 (grey) or 3 (colour).
    pub channels: usize,
    /// Standard deviation of the pixel noise.
    pub noise: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for MovingShapesConfig {
    fn default() -> Self {
        MovingShapesConfig {
            len: 4_000,
            frames: 8,
            height: 32,
            width: 32,
            channels: 3,
            noise: 0.03,
            seed: 0,
        }
    }
}

impl MovingShapesConfig {
    /// The default configuration for a split (train and test use different seeds).
    pub fn split(split: Split, len: usize) -> Self {
        MovingShapesConfig {
            len,
            seed: match split {
                Split::Train => 0x71DE0,
                Split::Test => 0x7E57,
            },
            ..MovingShapesConfig::default()
        }
    }
}

/// The moving-shapes video dataset.
#[derive(Clone, Debug)]
pub struct MovingShapes {
    cfg: MovingShapesConfig,
}

impl MovingShapes {
    /// A dataset with configuration `cfg` (frames >= 2, frames of at least 8x8, 1 or 3 channels).
    pub fn new(cfg: MovingShapesConfig) -> Result<Self> {
        if cfg.frames < 2 || cfg.height < 8 || cfg.width < 8 {
            return Err(DataError::invalid(
                "moving shapes: need >= 2 frames of at least 8x8",
            ));
        }
        if cfg.channels != 1 && cfg.channels != 3 {
            return Err(DataError::invalid("moving shapes: channels must be 1 or 3"));
        }
        let values = cfg
            .frames
            .checked_mul(cfg.height)
            .and_then(|n| n.checked_mul(cfg.width))
            .and_then(|n| n.checked_mul(cfg.channels))
            .filter(|&n| n <= MAX_CLIP_VALUES);
        if values.is_none() {
            return Err(DataError::invalid(format!(
                "moving shapes: {} frames of {}x{}x{} are more than {MAX_CLIP_VALUES} values",
                cfg.frames, cfg.height, cfg.width, cfg.channels
            )));
        }
        Ok(MovingShapes { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &MovingShapesConfig {
        &self.cfg
    }

    /// Renders clip `index` as `[F*H*W, C]` values.
    pub fn render(&self, label: usize, rng: &mut Rng) -> Vec<f32> {
        let MovingShapesConfig {
            frames: f,
            height: h,
            width: w,
            channels: c,
            noise,
            ..
        } = self.cfg;
        let (hf, wf) = (h as f32, w as f32);
        let radius = hf.min(wf) * (0.12 + 0.08 * rng.uniform());
        let kind = rng.below(3);
        let dir = label as f32 * PI / 4.0;
        // Speed so the shape crosses about half the frame over the clip.
        let travel = 0.5 * hf.min(wf);
        let speed = travel / (f - 1) as f32 * (0.8 + 0.4 * rng.uniform());
        let (vx, vy) = (dir.cos() * speed, -dir.sin() * speed);
        // Start so that the midpoint of the path lies in the central region.
        let mx = wf * (0.35 + 0.3 * rng.uniform());
        let my = hf * (0.35 + 0.3 * rng.uniform());
        let half = (f - 1) as f32 / 2.0;
        let (x0, y0) = (mx - vx * half, my - vy * half);
        let colour: Vec<f32> = (0..c).map(|_| 0.5 + 0.5 * rng.uniform()).collect();
        let bg: Vec<f32> = (0..c).map(|_| 0.2 * rng.uniform()).collect();
        let mut out = Vec::with_capacity(f * h * w * c);
        for t in 0..f {
            let (cx, cy) = (x0 + vx * t as f32, y0 + vy * t as f32);
            for y in 0..h {
                for x in 0..w {
                    let dx = x as f32 + 0.5 - cx;
                    let dy = y as f32 + 0.5 - cy;
                    let inside = match kind {
                        0 => dx * dx + dy * dy <= radius * radius,
                        1 => dx.abs() <= radius * 0.85 && dy.abs() <= radius * 0.85,
                        _ => {
                            dy <= radius * 0.7
                                && dy >= -radius
                                && 2.0 * dx.abs() <= (dy + radius) * 1.1
                        }
                    };
                    for k in 0..c {
                        let v = if inside { colour[k] } else { bg[k] } + noise * rng.normal();
                        out.push(v.clamp(0.0, 1.0));
                    }
                }
            }
        }
        out
    }
}

generated_dataset!(MovingShapes, MOTION_CLASSES, |clips, label, rng| {
    let values = clips.render(label, rng);
    let cfg = &clips.cfg;
    let grid = [cfg.frames, cfg.height, cfg.width];
    Ok(Sample::on_grid(values, &grid, cfg.channels, label))
});
