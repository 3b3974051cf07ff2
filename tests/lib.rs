//! Workspace-level integration tests. The tests themselves live in `tests/tests/*.rs`; this
//! library holds the helpers they share (locating `../shared`, skipping when data is absent).

use std::path::PathBuf;

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Directory of the shared material (`../shared` beside the checkout).
pub fn shared_dir() -> PathBuf {
    repo_root().join("..").join("shared")
}

/// True when running under CI (`CI=true`), where missing shared data is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}
