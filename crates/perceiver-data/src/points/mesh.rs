//! Triangle meshes (the readers in [`super::off`] and [`super::ply`] build them; this module
//! depends on neither).

use crate::error::{DataError, Result};

/// A triangle mesh (polygons are fan-triangulated by the readers). A mesh with no triangles is
/// a bare point cloud (e.g. a PLY file with only vertices).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// Vertex coordinates.
    pub vertices: Vec<[f32; 3]>,
    /// Triangles as vertex indices (all in range).
    pub triangles: Vec<[u32; 3]>,
}

impl Mesh {
    /// The area of triangle `t`.
    pub fn triangle_area(&self, t: &[u32; 3]) -> f64 {
        let p = |i: u32| {
            let v = self.vertices[i as usize];
            [v[0] as f64, v[1] as f64, v[2] as f64]
        };
        let (a, b, c) = (p(t[0]), p(t[1]), p(t[2]));
        let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
        let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
        let cx = u[1] * v[2] - u[2] * v[1];
        let cy = u[2] * v[0] - u[0] * v[2];
        let cz = u[0] * v[1] - u[1] * v[0];
        0.5 * (cx * cx + cy * cy + cz * cz).sqrt()
    }

    /// Total surface area.
    pub fn surface_area(&self) -> f64 {
        self.triangles.iter().map(|t| self.triangle_area(t)).sum()
    }

    /// Appends a polygon (fan triangulation from its first vertex).
    pub fn push_polygon(&mut self, idx: &[u32]) {
        for k in 1..idx.len().saturating_sub(1) {
            self.triangles.push([idx[0], idx[k], idx[k + 1]]);
        }
    }

    /// Checks indices are in range and coordinates finite.
    pub fn validate(&self) -> Result<()> {
        let n = self.vertices.len();
        if let Some(t) = self
            .triangles
            .iter()
            .find(|t| t.iter().any(|&i| i as usize >= n))
        {
            return Err(DataError::invalid(format!(
                "triangle {t:?} refers to a vertex past the {n} vertices"
            )));
        }
        if let Some(i) = self
            .vertices
            .iter()
            .position(|v| v.iter().any(|c| !c.is_finite()))
        {
            return Err(DataError::invalid(format!(
                "mesh vertex {i} {:?} is not finite",
                self.vertices[i]
            )));
        }
        Ok(())
    }
}
