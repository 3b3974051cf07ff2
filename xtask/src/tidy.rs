//! Tidy tests: workspace conventions checked by `cargo test --workspace` (rust-analyzer's
//! `tidy.rs`). Each failure names the file and the rule, so it is quick to fix.

use crate::project_root;
use std::path::{Path, PathBuf};

/// Directories of the workspace's own crates.
fn crate_dirs() -> Vec<PathBuf> {
    let root = project_root();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.push(root.join("tests"));
    dirs.push(root.join("xtask"));
    dirs.sort();
    dirs
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    path.strip_prefix(project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The files of `paths` (relative to the project root) whose text does not pass `ok`.
fn failing(paths: impl IntoIterator<Item = PathBuf>, ok: impl Fn(&str) -> bool) -> Vec<String> {
    paths
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).expect("the file is readable");
            !ok(&text)
        })
        .map(|path| relative(&path))
        .collect()
}

#[test]
fn crates_inherit_workspace_lints() {
    let manifests = crate_dirs().into_iter().map(|dir| dir.join("Cargo.toml"));
    let bad = failing(manifests, |text| {
        text.split("[lints]")
            .nth(1)
            .and_then(|rest| rest.lines().map(str::trim).find(|l| !l.is_empty()))
            .is_some_and(|l| l.replace(' ', "") == "workspace=true")
    });
    assert!(
        bad.is_empty(),
        "these manifests must end with `[lints]\\nworkspace = true` (the shared lint policy): {bad:?}"
    );
}

#[test]
fn crate_roots_have_module_docs() {
    let roots = crate_dirs().into_iter().flat_map(|dir| {
        ["src/lib.rs", "src/main.rs", "lib.rs"]
            .map(|root| dir.join(root))
            .into_iter()
            .filter(|path| path.is_file())
    });
    let bad = failing(roots, |text| text.trim_start().starts_with("//!"));
    assert!(
        bad.is_empty(),
        "crate roots must start with `//!` docs saying what the crate holds: {bad:?}"
    );
}

#[test]
fn no_ignored_tests() {
    // Spelled in two pieces so this file does not match itself.
    let needle = concat!("#[", "ignore");
    let mut files = Vec::new();
    for dir in crate_dirs() {
        rust_files(&dir, &mut files);
    }
    let bad: Vec<String> = files
        .iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(needle)))
        .map(|p| relative(p))
        .collect();
    assert!(
        bad.is_empty(),
        "`{needle}]` hides a failing or slow test; fix it, make it fast, or gate it on data \
         presence instead: {bad:?}"
    );
}

#[test]
fn ops_tables_and_op_modules_agree() {
    // Both directions, for every crate that defines ops: each row names an existing module with
    // a gradient check in the crate's gradcheck file, and each module under `ops/` that defines
    // a backward rule (`impl Backward for`, a `backward!` line or `impl CustomOp for`) has a
    // row.
    let mut problems = Vec::new();
    for (krate, dir, table, tests, _) in crate::codegen::OP_TABLES {
        let src = project_root().join(dir);
        let checks = std::fs::read_to_string(project_root().join(tests)).unwrap_or_default();
        for (op, module, test) in table.iter() {
            if !src.join(module).is_file() {
                problems.push(format!("{krate}: `{op}` names a missing module {module}"));
            }
            if !checks.contains(&format!("fn {test}()")) {
                problems.push(format!(
                    "{krate}: `{op}` has no gradient check `{test}` in {tests}"
                ));
            }
        }
        let ops_dir = src.join("ops");
        let modules = std::fs::read_dir(&ops_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for path in modules {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let defines_rule = text.contains("impl Backward for")
                || text.contains("\nbackward!(")
                || text.contains("impl CustomOp for");
            if !defines_rule {
                continue;
            }
            let module = format!(
                "ops/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            if !table.iter().any(|&(_, m, _)| m == module) {
                problems.push(format!(
                    "{krate}: {module} defines a backward rule but has no row"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "ops tables: {problems:#?}");
}
