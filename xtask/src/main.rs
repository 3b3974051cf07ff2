//! Project automation for the Perceiver workspace, in the cargo-xtask style: one binary, plain
//! Rust instead of shell scripts, run through the alias in `.cargo/config.toml`
//! (`xtask = "run --package xtask --"`).
//!
//! ```text
//! cargo xtask ci                      fmt check, clippy -D warnings, tests, rustdoc -D warnings
//! cargo xtask bench [OPTIONS]         kernel benchmarks (re-runs itself in release)
//! cargo xtask codegen [--check]       regenerates docs/OPS.md from perceiver_tensor::ops::OPS
//! ```
//!
//! # Design
//! - Few dependencies: the tensor crate (benchmarks, the ops table), `rayon` (the benchmark
//!   thread pool) and `serde_json` (benchmark records). Arguments are parsed by hand.
//! - Paths come from [`project_root`] (this crate's manifest directory), never from the current
//!   directory, so the commands work from anywhere in the checkout.
//! - Child cargo processes use the `CARGO` environment variable that cargo sets for the programs
//!   it runs (see [`cargo`]), so the same toolchain runs every step.
//! - Generated files are checked by a `#[test]` (see `codegen`), so `cargo test --workspace`
//!   fails when one is stale; `tidy` tests check workspace conventions the same way.

mod bench;
mod ci;
mod codegen;
#[cfg(test)]
mod tidy;

/// mimalloc keeps freed pages for reuse, so the large short-lived buffers of a training step
/// do not page-fault on every allocation as they do with glibc malloc's mmap threshold.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Error type of every command: a message for the user.
pub type DynError = Box<dyn std::error::Error + Send + Sync>;

/// Result alias of the commands.
pub type Result<T, E = DynError> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci                  run, in order, stopping at the first failure:
                        cargo fmt --all -- --check
                        cargo clippy --workspace --all-targets -- -D warnings
                        cargo test --workspace
                        RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace --no-deps
  bench [options]     kernel benchmarks; writes target/bench/<group>.json and summary.md
    --threads N         size of the rayon global pool (default 2)
    --quick             fewer shapes and repeats (a smoke run, ~1 minute)
    --filter TEXT       only points whose \"group/name shape note\" contains TEXT
    --isolate           run every point in its own process and record its peak memory
    --list              list the groups and points, measure nothing
  bench-point --group G --point ID [--threads N] [--quick]
                      measure one point in this process and print its record as JSON
                      (used by `bench` for isolated groups; reports peak memory)
  codegen [--check]   regenerate docs/OPS.md (with --check: only fail when stale)
";

fn main() -> ExitCode {
    // Keep freed memory instead of returning it to the OS after 10 ms (mimalloc's
    // `mi_option_purge_delay`, 15 in its option enum): a training step frees and reallocates the
    // same large buffers every few milliseconds, and each return costs page faults and zeroing.
    // SAFETY: setting an option is thread-safe and valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<OsString> = args.collect();
    let result = match command.to_str() {
        Some("ci") => no_args("ci", &rest).and_then(|()| ci::run()),
        Some("bench") => bench::cli(&rest),
        Some("bench-point") => bench::cli_point(&rest),
        Some("codegen") => codegen::cli(&rest),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("unknown command {command:?}\n\n{USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn no_args(command: &str, rest: &[OsString]) -> Result<()> {
    match rest.first() {
        None => Ok(()),
        Some(a) => Err(format!("`{command}` takes no arguments, got {a:?}").into()),
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent directory")
        .to_path_buf()
}

/// The build directory: `$CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    }
}

/// A `cargo` command run from the workspace root, with the cargo binary that runs xtask (the
/// `CARGO` environment variable), falling back to `cargo` on the `PATH`.
pub fn cargo() -> Command {
    let bin = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(bin);
    cmd.current_dir(project_root());
    cmd
}
