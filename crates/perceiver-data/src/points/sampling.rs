//! Surface sampling, normalisation and augmentation of point clouds.

use super::mesh::Mesh;
use crate::dataset::Transform;
use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;

/// Samples `n` points uniformly over the surface of `mesh`: a triangle is chosen with
/// probability proportional to its area, then a uniform point inside it (barycentric
/// coordinates `(1 - sqrt(u), sqrt(u)(1 - v), sqrt(u) v)`). A mesh without triangles (a bare
/// point cloud) is sampled by picking vertices (without replacement while there are enough).
pub fn sample_surface(mesh: &Mesh, n: usize, rng: &mut Rng) -> Result<Vec<[f32; 3]>> {
    mesh.validate()?;
    if mesh.vertices.is_empty() {
        return Err(DataError::invalid(
            "cannot sample points from an empty mesh",
        ));
    }
    if mesh.triangles.is_empty() {
        let nv = mesh.vertices.len();
        let mut idx: Vec<usize> = (0..nv).collect();
        rng.shuffle(&mut idx);
        return Ok((0..n)
            .map(|k| {
                let i = if k < nv { idx[k] } else { rng.below(nv) };
                mesh.vertices[i]
            })
            .collect());
    }
    let mut cum = Vec::with_capacity(mesh.triangles.len());
    let mut total = 0.0f64;
    for t in &mesh.triangles {
        total += mesh.triangle_area(t);
        cum.push(total);
    }
    if !(total > 0.0) || !total.is_finite() {
        return Err(DataError::invalid(format!(
            "mesh surface area is {total}; cannot sample by area"
        )));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let u = rng.uniform_f64() * total;
        let k = cum.partition_point(|&c| c <= u).min(cum.len() - 1);
        let t = mesh.triangles[k];
        let (a, b, c) = (
            mesh.vertices[t[0] as usize],
            mesh.vertices[t[1] as usize],
            mesh.vertices[t[2] as usize],
        );
        let r1 = rng.uniform_f64().sqrt();
        let r2 = rng.uniform_f64();
        let (wa, wb, wc) = (1.0 - r1, r1 * (1.0 - r2), r1 * r2);
        let mut p = [0f32; 3];
        for d in 0..3 {
            p[d] = (wa * a[d] as f64 + wb * b[d] as f64 + wc * c[d] as f64) as f32;
        }
        out.push(p);
    }
    Ok(out)
}

/// How [`normalize_points`] scales a centred cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Scaling {
    /// Centre on the centroid, scale so the farthest point is at distance 1.
    #[default]
    UnitSphere,
    /// Centre on the bounding-box centre, scale so the largest half-extent is 1 (the cloud
    /// fits in `[-1, 1]^3`).
    UnitCube,
    /// Leave the cloud as it is.
    None,
}

/// Centres and scales a cloud in place.
pub fn normalize_points(points: &mut [[f32; 3]], scaling: Scaling) {
    if points.is_empty() {
        return;
    }
    let centre: [f64; 3] = match scaling {
        Scaling::None => return,
        Scaling::UnitSphere => {
            let mut c = [0f64; 3];
            for p in points.iter() {
                for d in 0..3 {
                    c[d] += p[d] as f64;
                }
            }
            c.map(|v| v / points.len() as f64)
        }
        Scaling::UnitCube => {
            let mut lo = [f64::INFINITY; 3];
            let mut hi = [f64::NEG_INFINITY; 3];
            for p in points.iter() {
                for d in 0..3 {
                    lo[d] = lo[d].min(p[d] as f64);
                    hi[d] = hi[d].max(p[d] as f64);
                }
            }
            [0, 1, 2].map(|d| 0.5 * (lo[d] + hi[d]))
        }
    };
    let mut extent = 0f64;
    for p in points.iter_mut() {
        let mut r2 = 0f64;
        for d in 0..3 {
            let v = p[d] as f64 - centre[d];
            p[d] = v as f32;
            match scaling {
                Scaling::UnitCube => extent = extent.max(v.abs()),
                _ => r2 += v * v,
            }
        }
        if scaling == Scaling::UnitSphere {
            extent = extent.max(r2.sqrt());
        }
    }
    if extent > 0.0 {
        let s = (1.0 / extent) as f32;
        for p in points.iter_mut() {
            for v in p.iter_mut() {
                *v *= s;
            }
        }
    }
}

/// Point-cloud augmentation: a random rotation about the up axis, random anisotropic scaling
/// and clipped Gaussian jitter, applied to the values and the positions alike.
#[derive(Clone, Debug, PartialEq)]
pub struct PointAugment {
    /// Rotate by a uniform angle about the up axis.
    pub rotate: bool,
    /// The up axis (0 = x, 1 = y, 2 = z; ModelNet meshes are z-up).
    pub up_axis: usize,
    /// Per-axis scale factor drawn uniformly from this range.
    pub scale: (f32, f32),
    /// Standard deviation of the per-point jitter.
    pub jitter_sigma: f32,
    /// Jitter is clipped to `[-clip, clip]`.
    pub jitter_clip: f32,
}

impl Default for PointAugment {
    fn default() -> Self {
        PointAugment {
            rotate: true,
            up_axis: 2,
            scale: (0.8, 1.25),
            jitter_sigma: 0.01,
            jitter_clip: 0.05,
        }
    }
}

impl PointAugment {
    /// Augments `[N, 3]` coordinates in place.
    pub fn apply_to(&self, xyz: &mut [f32], rng: &mut Rng) -> Result<()> {
        if !xyz.len().is_multiple_of(3) || self.up_axis > 2 {
            return Err(DataError::invalid(
                "point augmentation needs [N, 3] points and up_axis < 3",
            ));
        }
        let (a1, a2) = match self.up_axis {
            0 => (1, 2),
            1 => (2, 0),
            _ => (0, 1),
        };
        let (s, c) = if self.rotate {
            (2.0 * std::f32::consts::PI * rng.uniform()).sin_cos()
        } else {
            (0.0, 1.0)
        };
        let (lo, hi) = self.scale;
        let sc = [0, 1, 2].map(|_| lo + (hi - lo) * rng.uniform());
        for p in xyz.chunks_exact_mut(3) {
            let (u, v) = (p[a1], p[a2]);
            p[a1] = c * u - s * v;
            p[a2] = s * u + c * v;
            for d in 0..3 {
                let j = if self.jitter_sigma > 0.0 {
                    (self.jitter_sigma * rng.normal()).clamp(-self.jitter_clip, self.jitter_clip)
                } else {
                    0.0
                };
                p[d] = p[d] * sc[d] + j;
            }
        }
        Ok(())
    }
}

impl Transform for PointAugment {
    fn apply(&self, mut s: Sample, rng: &mut Rng) -> Result<Sample> {
        if s.channels != 3 || s.grid.is_some() {
            return Err(DataError::invalid(
                "point augmentation needs a point-cloud sample",
            ));
        }
        self.apply_to(&mut s.values, rng)?;
        // Positions are the coordinates: keep each point's position equal to its new value.
        if s.positions.is_some() {
            s.positions = Some(s.values.clone());
        }
        Ok(s)
    }
}
