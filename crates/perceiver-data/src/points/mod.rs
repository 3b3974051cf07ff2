//! Point clouds: OFF and PLY readers, area-weighted surface sampling, normalisation,
//! augmentation, a ModelNet-style folder loader and a procedural shape dataset.
//!
//! A point-cloud sample has `[N, 3]` values (xyz) and the same xyz as its positions; no grid.

pub mod mesh;
pub mod modelnet;
pub mod off;
pub mod ply;
pub mod procedural;
pub mod read;
pub mod sampling;

pub use mesh::Mesh;
pub use modelnet::{ModelNet, ModelNetConfig};
pub use off::{parse_off, read_off};
pub use ply::{parse_ply, read_ply};
pub use procedural::{PointShapes, PointShapesConfig, POINT_SHAPE_CLASSES};
pub use read::read_mesh;
pub use sampling::{normalize_points, sample_surface, PointAugment, Scaling};

/// Most points per cloud sampled (1,000,000).
pub const MAX_POINTS: usize = 1_000_000;

/// [`crate::DataError::Invalid`] unless `1 <= num_points <= MAX_POINTS`.
pub(crate) fn check_num_points(num_points: usize) -> crate::Result<()> {
    if num_points == 0 || num_points > MAX_POINTS {
        return Err(crate::DataError::invalid(format!(
            "num_points {num_points} is not between 1 and {MAX_POINTS}"
        )));
    }
    Ok(())
}
