//! What the GEMM examples share: their command line and the median of their timings.

/// The whole-number arguments `M K N [..]`: three to five of them, argument `i` with value `v`
/// passing `ok(i, v)`. Otherwise prints `usage` and exits with status 2.
pub fn sizes(usage: &str, ok: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let parsed: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    match parsed {
        Ok(a) if (3..=5).contains(&a.len()) && a.iter().enumerate().all(|(i, &v)| ok(i, v)) => a,
        _ => {
            eprintln!("usage: {usage}");
            std::process::exit(2);
        }
    }
}

/// The median of `times`.
pub fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
