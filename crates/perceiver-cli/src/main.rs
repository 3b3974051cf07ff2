//! The `perceiver` command-line tool.
//!
//! Subcommands (more will come: `train`, `eval`, `predict`):
//! - `perceiver info --preset NAME` (or `--config FILE.json`): prints the configuration, the
//!   parameter count and the forward FLOPs per example.
//! - `perceiver help`, `perceiver --version`.

use perceiver_model::{preset, PerceiverConfig, PRESETS};
use std::process::ExitCode;

const USAGE: &str = "usage: perceiver <command> [options]

commands:
  info --preset NAME     print a preset's configuration, parameter count and FLOPs per example
  info --config FILE     the same for a configuration file (JSON)
  help                   this message

presets: ";

fn usage() -> String {
    format!("{USAGE}{}", PRESETS.join(", "))
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn info(args: &[String]) -> Result<(), String> {
    let mut source: Option<(String, PerceiverConfig)> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--preset" => {
                let name = it.next().ok_or("--preset needs a name")?;
                let c = preset(name).map_err(|e| e.to_string())?;
                source = Some((format!("preset {name}"), c));
            }
            "--config" => {
                let path = it.next().ok_or("--config needs a file")?;
                let json = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
                let c = PerceiverConfig::from_json(&json).map_err(|e| format!("{path}: {e}"))?;
                source = Some((format!("config {path}"), c));
            }
            other => return Err(format!("info: unknown option `{other}`\n{}", usage())),
        }
    }
    let (what, c) =
        source.ok_or_else(|| format!("info needs --preset or --config\n{}", usage()))?;
    c.validate().map_err(|e| format!("{what}: {e}"))?;
    let plan = c.sharing_plan();
    let flops = c.flops_per_example();
    println!("{what}");
    println!("configuration:\n{}", c.to_json());
    println!(
        "input: {:?} x {} channels + {} position channels = {} tokens of width {}",
        c.input_axes,
        c.input_channels,
        c.position_channels(),
        c.input_tokens(),
        c.input_width()
    );
    println!(
        "latents: {} x {}; {} blocks, {} cross-attends (parameter sets {:?}), towers of {} self-attention layers (parameter sets {:?})",
        c.num_latents,
        c.latent_dim,
        c.num_blocks,
        c.num_cross_attends,
        plan.cross,
        c.self_per_block,
        plan.towers
    );
    println!("parameters: {}", thousands(c.num_params() as u64));
    let g = |x: u64| {
        let v = x as f64 / 1e9;
        if v >= 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.4}")
        }
    };
    println!(
        "forward FLOPs per example: {} ({} GFLOP: matmul {} G, elementwise {} G; a multiply-add counts 2)",
        thousands(flops.total()),
        g(flops.total()),
        g(flops.matmul),
        g(flops.elementwise)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("info") => info(&args[1..]),
        Some("--version") | Some("-V") | Some("version") => {
            println!("perceiver {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("help") | Some("--help") | Some("-h") => {
            println!("{}", usage());
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n{}", usage())),
        None => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(44_912_254), "44,912,254");
    }

    #[test]
    fn info_accepts_presets_and_rejects_unknown_ones() {
        assert!(info(&["--preset".into(), "mnist-small".into()]).is_ok());
        assert!(info(&["--preset".into(), "nope".into()]).is_err());
        assert!(info(&[]).is_err());
    }
}
