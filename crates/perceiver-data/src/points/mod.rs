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
