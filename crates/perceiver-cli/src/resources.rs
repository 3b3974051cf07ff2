//! Resource limits decided before work starts: the memory a configuration needs against the
//! memory available, and the number of compute threads.

use crate::error::{CliError, Result};
use perceiver_model::PerceiverConfig;
use perceiver_tasks::Hyper;

/// A memory size given on the command line: bytes, or a number with a `K`, `M`, `G` or `T`
/// suffix (powers of 1024; `8G`, `1.5G`, `512M`).
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].to_ascii_uppercase()),
        None => (t, String::new()),
    };
    let scale: f64 = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("unknown unit in '{text}' (use K, M, G or T)")),
    };
    let x: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 8G, 512M)"))?;
    let bytes = x * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is not a usable size"));
    }
    Ok(bytes as u64)
}

/// Checks that training (or evaluating) `config` with the batch size of `h` fits in
/// `max_memory` bytes, or in the memory the system has available.
pub fn check_memory(config: &PerceiverConfig, h: &Hyper, max_memory: Option<u64>) -> Result<()> {
    check_memory_for(config, h.batch_size, true, max_memory)
}

/// [`check_memory`] for a batch size and mode.
pub fn check_memory_for(
    config: &PerceiverConfig,
    batch: usize,
    training: bool,
    max_memory: Option<u64>,
) -> Result<()> {
    let estimate = config.memory_estimate(batch, training)?;
    let (available, source) = match max_memory {
        Some(m) => (Some(m), "the budget is --max-memory"),
        None => (
            perceiver_nn::runtime::available_memory(),
            "the budget is the system's available memory; --max-memory sets it",
        ),
    };
    if let Some(avail) = available {
        perceiver_model::check_memory(&estimate, avail)
            .map_err(|e| CliError::new(format!("{e} ({source})")))?;
    }
    Ok(())
}

/// The most compute threads accepted per core.
pub const THREADS_PER_CORE: usize = 4;

/// The thread count to use for `--threads n`: at most [`THREADS_PER_CORE`] per core (a note
/// says when it is capped); 0 is an error.
pub fn thread_count(n: Option<usize>) -> Result<Option<usize>> {
    let Some(n) = n else { return Ok(None) };
    if n == 0 {
        return Err(CliError::new("--threads must be at least 1"));
    }
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let cap = cores.saturating_mul(THREADS_PER_CORE);
    if n > cap {
        eprintln!(
            "note: --threads {n} capped at {cap} ({THREADS_PER_CORE} per core, {cores} cores)"
        );
        return Ok(Some(cap));
    }
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        for bad in ["", "G", "-1G", "1X", "nanG", "1e30T"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn threads_are_capped_and_zero_refused() {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert_eq!(
            thread_count(Some(usize::MAX)).unwrap(),
            Some(cores * THREADS_PER_CORE)
        );
        assert_eq!(thread_count(Some(1)).unwrap(), Some(1));
        assert_eq!(thread_count(None).unwrap(), None);
        assert!(thread_count(Some(0)).is_err());
    }
}
