//! Workspace-level integration tests. The tests themselves live in `tests/tests/*.rs`; this
//! library holds the helpers they share: locating the shared material and deciding whether its
//! absence skips a test or fails it.
//!
//! # Where the shared material is
//! One rule, for every test:
//! - golden fixtures: `$PERCEIVER_GOLDEN_DIR`, else `<workspace>/../shared/golden`;
//! - datasets: `$PERCEIVER_DATA`, else `<workspace>/../shared/data`
//!   (the rule of [`perceiver_data::shared_data_dir`], which the data crate and the CLI use).
//!
//! When the material is absent a test prints why and returns (skipped), except under `CI=true`
//! (or `CI=1`), where the absence is a failure. The data crate's own tests
//! (`crates/perceiver-data/tests/common/mod.rs`) cannot depend on this crate (it depends on
//! them), so they repeat the same rule.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// Directory of the shared material when no variable says otherwise: `../shared` beside the
/// workspace root.
pub fn shared_dir() -> PathBuf {
    repo_root().join("..").join("shared")
}

/// The golden fixtures: `$PERCEIVER_GOLDEN_DIR`, else `<workspace>/../shared/golden`.
pub fn golden_dir() -> PathBuf {
    match std::env::var_os("PERCEIVER_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => shared_dir().join("golden"),
    }
}

/// The datasets: `$PERCEIVER_DATA`, else `<workspace>/../shared/data`.
pub fn data_dir() -> PathBuf {
    perceiver_data::shared_data_dir()
}

/// True when running under CI (`CI=true` or `CI=1`), where missing shared data is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Reports missing shared material for `test`: panics under CI, else prints a skip notice.
/// The caller returns afterwards.
pub fn skip_or_fail(test: &str, missing: &str) {
    if in_ci() {
        panic!("{test}: {missing} (CI=true: the shared material is required)");
    }
    eprintln!("SKIPPED {test}: {missing}");
}

/// The golden model fixtures (`*.safetensors` directly in [`golden_dir`] and in its
/// `hf-pretrained/`, without the image processor's `processor-*`; sorted by path), or `None`
/// after [`skip_or_fail`] when there are none.
pub fn golden_files(test: &str) -> Option<Vec<PathBuf>> {
    let dir = golden_dir();
    let fixtures = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                    .filter(|p| {
                        // The image processor's fixtures hold pixels, not a model.
                        !p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("processor-"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut files = fixtures(&dir);
    files.extend(fixtures(&dir.join("hf-pretrained")));
    files.sort();
    if files.is_empty() {
        skip_or_fail(
            test,
            &format!(
                "no golden fixtures (*.safetensors) in {} (set PERCEIVER_GOLDEN_DIR)",
                dir.display()
            ),
        );
        return None;
    }
    Some(files)
}

/// The entries of `<golden dir>/hf-pretrained/` whose names start with `prefix`, sorted (none:
/// skipped, or a failure under CI).
pub fn hf_pretrained(test: &str, prefix: &str) -> Vec<PathBuf> {
    let dir = golden_dir().join("hf-pretrained");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if found.is_empty() {
        skip_or_fail(test, &format!("no {prefix}* in {}", dir.display()));
    }
    found
}
