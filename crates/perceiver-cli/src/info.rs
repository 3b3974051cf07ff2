//! `perceiver info`, and the number and configuration-file helpers the commands share.

use crate::args::InfoArgs;
use crate::error::{CliError, Result};
use crate::rundir::checkpoint_dir;
use perceiver_model::{preset, PerceiverConfig, CONFIG_FILE, PRESETS};

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Reads and validates a configuration file.
pub fn read_config(path: &std::path::Path) -> Result<PerceiverConfig> {
    let json = perceiver_io::read_string_bounded(path, perceiver_io::MAX_JSON_BYTES)
        .map_err(|e| CliError::new(e.to_string()))?;
    PerceiverConfig::from_json(&json).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
}

/// `perceiver info`.
pub fn info(args: &InfoArgs) -> Result<()> {
    let (what, c) = if let Some(name) = &args.preset {
        (format!("preset {name}"), preset(name)?)
    } else if let Some(path) = &args.config {
        (format!("config {}", path.display()), read_config(path)?)
    } else if let Some(dir) = args
        .checkpoint
        .as_ref()
        .filter(|d| perceiver_model::import::hf::is_hf_directory(d))
    {
        let hf = perceiver_model::import::hf::load_hf_directory(dir)?;
        (
            format!("Hugging Face {:?} classifier {}", hf.variant, dir.display()),
            hf.model.config().clone(),
        )
    } else if let Some(dir) = &args.checkpoint {
        // The configuration alone: no weights are read or allocated.
        let dir = checkpoint_dir(dir)?;
        let c = read_config(&dir.join(CONFIG_FILE))?;
        (format!("checkpoint {}", dir.display()), c)
    } else {
        return Err(CliError::new(format!(
            "info needs --preset NAME, --config FILE or --checkpoint DIR (presets: {})",
            PRESETS.join(", ")
        )));
    };
    c.validate()
        .map_err(|e| CliError::new(format!("{what}: {e}")))?;
    let plan = c.sharing_plan();
    let flops = c.try_flops_per_example()?;
    let params = c.try_num_params()?;
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
    println!("parameters: {}", thousands(params));
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
        let a = |p: &str| InfoArgs {
            preset: Some(p.into()),
            config: None,
            checkpoint: None,
        };
        assert!(info(&a("mnist-small")).is_ok());
        assert!(info(&a("nope")).is_err());
        assert!(info(&InfoArgs {
            preset: None,
            config: None,
            checkpoint: None
        })
        .is_err());
    }
}
