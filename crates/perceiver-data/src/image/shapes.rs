//! `shapes`: a built-in procedural image dataset, so training runs on a machine with no files.
//!
//! Twelve classes of filled shapes (circle, ellipse, ring, square, frame, triangle, hexagon,
//! star, cross, crescent, half-disc, arrow), each drawn at a random position, scale and rotation
//! with random foreground/background intensities (or colours), 2x2 supersampled, plus Gaussian
//! pixel noise. Sample `i` is a pure function of `(seed, i)`; labels cycle through the classes so
//! every class has the same count (±1).

use crate::dataset::{generated_dataset, Split};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::f32::consts::PI;

/// Largest image side of the generated shapes (4,096 pixels).
pub const MAX_SHAPES_SIZE: usize = 4096;

/// The class names, in label order.
pub const SHAPE_CLASSES: [&str; 12] = [
    "circle",
    "ellipse",
    "ring",
    "square",
    "frame",
    "triangle",
    "hexagon",
    "star",
    "cross",
    "crescent",
    "half-disc",
    "arrow",
];

/// Parameters of the [`Shapes`] dataset.
///
/// ```
/// use perceiver_data::image::{Shapes, ShapesConfig};
/// use perceiver_data::{Dataset, Split};
/// let default = ShapesConfig::default();
/// assert_eq!((default.len, default.size, default.channels), (12_000, 32, 1));
/// // Train and test draw from different seeds.
/// let train = ShapesConfig::split(Split::Train, 24);
/// assert_ne!(train.seed, ShapesConfig::split(Split::Test, 24).seed);
/// let config = ShapesConfig { size: 16, ..train };
/// let shapes = Shapes::new(config.clone())?;
/// assert_eq!((shapes.len(), shapes.num_classes()), (24, 12));
/// let image = shapes.get(13)?;
/// assert_eq!((image.grid, image.channels), (Some(vec![16, 16]), 1));
/// assert_eq!(image.label, 13 % 12); // labels cycle through the classes
/// // Images are grey or RGB.
/// assert!(Shapes::new(ShapesConfig { channels: 2, ..config }).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ShapesConfig {
    /// Number of samples.
    pub len: usize,
    /// Image height and width.
    pub size: usize,
    /// 1 (grey) or 3 (colour).
    pub channels: usize,
    /// Standard deviation of the additive pixel noise.
    pub noise: f32,
    /// Seed; sample `i` depends only on `(seed, i)`.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            len: 12_000,
            size: 32,
            channels: 1,
            noise: 0.05,
            seed: 0,
        }
    }
}

impl ShapesConfig {
    /// The default configuration for a split: train has `len` samples from seed 0x5EED, test
    /// a disjoint stream from another seed.
    pub fn split(split: Split, len: usize) -> Self {
        ShapesConfig {
            len,
            seed: match split {
                Split::Train => 0x5EED,
                Split::Test => 0x7E57,
            },
            ..ShapesConfig::default()
        }
    }
}

/// The procedural shapes dataset.
#[derive(Clone, Debug)]
pub struct Shapes {
    cfg: ShapesConfig,
    star: Vec<(f32, f32)>,
    arrow: Vec<(f32, f32)>,
}

fn point_in_polygon(poly: &[(f32, f32)], x: f32, y: f32) -> bool {
    let mut inside = false;
    let n = poly.len();
    let mut j = n - 1;
    for i in 0..n {
        let (xi, yi) = poly[i];
        let (xj, yj) = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

fn regular_polygon(n: usize, x: f32, y: f32) -> bool {
    let r = (x * x + y * y).sqrt();
    let seg = 2.0 * PI / n as f32;
    let theta = y.atan2(x).rem_euclid(seg) - seg / 2.0;
    r * theta.cos() <= (seg / 2.0).cos()
}

impl Shapes {
    /// A dataset with configuration `cfg` (`channels` must be 1 or 3, `size` at least 8).
    pub fn new(cfg: ShapesConfig) -> Result<Self> {
        if cfg.channels != 1 && cfg.channels != 3 {
            return Err(DataError::invalid("shapes: channels must be 1 or 3"));
        }
        if cfg.size < 8 || cfg.size > MAX_SHAPES_SIZE {
            return Err(DataError::invalid(format!(
                "shapes: size {} is not between 8 and {MAX_SHAPES_SIZE}",
                cfg.size
            )));
        }
        let star = (0..10)
            .map(|k| {
                let r = if k % 2 == 0 { 1.0 } else { 0.42 };
                let a = PI / 2.0 + k as f32 * PI / 5.0;
                (r * a.cos(), r * a.sin())
            })
            .collect();
        let arrow = vec![
            (-1.0, -0.25),
            (0.15, -0.25),
            (0.15, -0.65),
            (1.0, 0.0),
            (0.15, 0.65),
            (0.15, 0.25),
            (-1.0, 0.25),
        ];
        Ok(Shapes { cfg, star, arrow })
    }

    /// The configuration.
    pub fn config(&self) -> &ShapesConfig {
        &self.cfg
    }

    /// Whether the local point `(x, y)` (shape scaled to radius 1) is inside shape `class`.
    fn inside(&self, class: usize, x: f32, y: f32) -> bool {
        let r2 = x * x + y * y;
        match class {
            0 => r2 <= 1.0,
            1 => x * x + 4.0 * y * y <= 1.0,
            2 => (0.36..=1.0).contains(&r2),
            3 => x.abs() <= 0.75 && y.abs() <= 0.75,
            4 => x.abs().max(y.abs()) <= 0.8 && x.abs().max(y.abs()) >= 0.45,
            5 => regular_polygon(3, x, y),
            6 => regular_polygon(6, x, y),
            7 => point_in_polygon(&self.star, x, y),
            8 => (x.abs() <= 0.3 && y.abs() <= 1.0) || (y.abs() <= 0.3 && x.abs() <= 1.0),
            9 => r2 <= 1.0 && (x - 0.45) * (x - 0.45) + y * y > 0.64,
            10 => r2 <= 1.0 && y >= -0.2,
            _ => point_in_polygon(&self.arrow, x, y),
        }
    }

    /// Renders class `class` with the random draws of `rng` into HWC values in `[0, 1]`.
    pub fn render(&self, class: usize, rng: &mut Rng) -> Vec<f32> {
        let n = self.cfg.size;
        let c = self.cfg.channels;
        let nf = n as f32;
        // Radius 0.26-0.40 of the side (8-13 px at 32x32): at 6 px (0.20 of the side) a
        // hexagon's edges lie within a pixel of its circumscribed circle and the two classes
        // are nearly ambiguous (docs/RESULTS.md).
        let scale = nf * (0.26 + 0.14 * rng.uniform());
        let margin = scale * 0.8;
        let cx = margin + (nf - 2.0 * margin).max(0.0) * rng.uniform();
        let cy = margin + (nf - 2.0 * margin).max(0.0) * rng.uniform();
        let angle = 2.0 * PI * rng.uniform();
        let (sa, ca) = angle.sin_cos();
        let mut fg = [0.0f32; 3];
        let mut bg = [0.0f32; 3];
        if c == 1 {
            fg[0] = 0.6 + 0.4 * rng.uniform();
            bg[0] = 0.25 * rng.uniform();
        } else {
            for k in 0..3 {
                fg[k] = 0.35 + 0.65 * rng.uniform();
                bg[k] = 0.3 * rng.uniform();
            }
        }
        let mut out = Vec::with_capacity(n * n * c);
        for py in 0..n {
            for px in 0..n {
                let mut cover = 0.0f32;
                for (oy, ox) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                    let dx = (px as f32 + ox - cx) / scale;
                    let dy = (py as f32 + oy - cy) / scale;
                    // Rotate into the shape frame.
                    let lx = ca * dx + sa * dy;
                    let ly = -sa * dx + ca * dy;
                    if self.inside(class, lx, ly) {
                        cover += 0.25;
                    }
                }
                for k in 0..c {
                    let v = bg[k] + (fg[k] - bg[k]) * cover + self.cfg.noise * rng.normal();
                    out.push(v.clamp(0.0, 1.0));
                }
            }
        }
        out
    }
}

generated_dataset!(Shapes, SHAPE_CLASSES, |shapes, label, rng| {
    let values = shapes.render(label, rng);
    let cfg = &shapes.cfg;
    Ok(Sample::image(
        values,
        cfg.size,
        cfg.size,
        cfg.channels,
        label,
    ))
});
