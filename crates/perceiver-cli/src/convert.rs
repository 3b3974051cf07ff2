//! `perceiver convert`: a Hugging Face Perceiver directory to our checkpoint format, for
//! fine-tuning with `perceiver train --init-from`.

use crate::args::ConvertArgs;
use crate::error::{io, CliError, Result};
use perceiver_model::import::hf::load_hf_directory;
use serde_json::json;

/// `perceiver convert`.
pub fn convert(a: &ConvertArgs) -> Result<()> {
    let hf = load_hf_directory(&a.from)?;
    // The output is new or empty, like a run folder: nothing of the user's is replaced.
    match std::fs::read_dir(&a.out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::new(format!(
                    "{}: not empty; convert writes into a new or empty directory",
                    a.out.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&a.out, e)),
    }
    hf.model.save_checkpoint(&a.out)?;
    let labels = a.out.join("labels.json");
    perceiver_io::write_bytes_atomic(&labels, json!(hf.labels).to_string().as_bytes())
        .map_err(|e| CliError::new(e.to_string()))?;
    println!(
        "{}",
        json!({
            "command": "convert",
            "from": a.from.display().to_string(),
            "out": a.out.display().to_string(),
            "variant": format!("{:?}", hf.variant),
            "params": hf.model.num_params(),
            "classes": hf.labels.len(),
        })
    );
    Ok(())
}
