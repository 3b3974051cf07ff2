//! Reading a mesh file whose format is chosen by its extension (a dispatcher above the OFF and
//! PLY readers, so the [`Mesh`] type does not depend on them).

use super::mesh::Mesh;
use super::off::read_off;
use super::ply::read_ply;
use crate::error::{DataError, Result};
use std::path::Path;

/// Reads an `.off` or `.ply` mesh, chosen by extension.
pub fn read_mesh(path: &Path) -> Result<Mesh> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("off") => read_off(path),
        Some("ply") => read_ply(path),
        _ => Err(DataError::invalid(format!(
            "{}: unknown mesh format (expected .off or .ply)",
            path.display()
        ))),
    }
}
