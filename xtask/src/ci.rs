//! `cargo xtask ci`: the checks a change must pass, in the order that fails fastest.

use crate::{cargo, Result};
use std::time::Instant;

/// One check: cargo arguments and extra environment.
struct Step {
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

/// Formatting first (seconds), then lints (a check build), then tests, then docs.
const STEPS: &[Step] = &[
    Step {
        args: &["fmt", "--all", "--", "--check"],
        env: &[],
    },
    Step {
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    Step {
        args: &["test", "--workspace"],
        env: &[],
    },
    Step {
        args: &["doc", "--workspace", "--no-deps"],
        env: &[("RUSTDOCFLAGS", "-D warnings")],
    },
];

impl Step {
    /// The command as a user would type it.
    fn display(&self) -> String {
        let env: String = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\" "))
            .collect();
        format!("{env}cargo {}", self.args.join(" "))
    }
}

/// Runs every step, stopping at the first failure with an error naming it.
pub fn run() -> Result<()> {
    let total = Instant::now();
    for (i, step) in STEPS.iter().enumerate() {
        let n = i + 1;
        eprintln!("==> xtask ci [{n}/{}]: {}", STEPS.len(), step.display());
        let started = Instant::now();
        let status = cargo()
            .args(step.args)
            .envs(step.env.iter().copied())
            .status()
            .map_err(|e| format!("could not start `{}`: {e}", step.display()))?;
        if !status.success() {
            return Err(format!(
                "step {n}/{} failed ({status}): `{}`\n\
                 The later steps were not run. Fix the failure above and re-run `cargo xtask ci`.",
                STEPS.len(),
                step.display()
            )
            .into());
        }
        eprintln!("    ok ({:.1} s)", started.elapsed().as_secs_f64());
    }
    eprintln!(
        "==> xtask ci: all {} steps passed in {:.1} s",
        STEPS.len(),
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
