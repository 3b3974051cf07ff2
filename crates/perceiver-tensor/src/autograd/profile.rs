//! An op-level profiler for training steps, enabled by the environment variable
//! `PERCEIVER_PROFILE=1` (read once).
//!
//! Backward rules are timed exactly. Forward ops are timed by the gap between consecutive
//! recorded ops on the same thread (ops are recorded right after they compute), which
//! attributes to each op its own time plus any untracked work just before it: accurate for a
//! model's forward pass, where nearly everything is tracked. Every GEMM is also timed, by shape
//! and operand layout (`r` row-major, `c` column-major, `s` strided otherwise), wherever it is
//! called from (ops, fused kernels), through the GEMM's profiling hook, installed the first time
//! profiling is asked about ([`mark`], [`reset`] or the first op). [`report`] returns both tables and [`reset`] clears them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Whether profiling is on (`PERCEIVER_PROFILE` set to something other than `0`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var("PERCEIVER_PROFILE").is_ok_and(|v| v != "0" && !v.is_empty());
        if on {
            // The GEMMs (called from ops and fused kernels alike) report to the same table.
            perceiver_kernels::gemm::set_profile_hook(gemm_call);
        }
        on
    })
}

#[derive(Default)]
struct Table {
    /// (phase, op) -> (calls, seconds)
    rows: HashMap<(&'static str, &'static str), (u64, f64)>,
    /// (m, k, n, A layout, B layout) -> (calls, seconds)
    gemms: HashMap<(usize, usize, usize, char, char), (u64, f64)>,
}

fn table() -> &'static Mutex<Table> {
    static T: OnceLock<Mutex<Table>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(Table::default()))
}

thread_local! {
    static LAST: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

fn add(phase: &'static str, op: &'static str, secs: f64) {
    let mut t = table().lock().expect("profile lock");
    let e = t.rows.entry((phase, op)).or_insert((0, 0.0));
    e.0 += 1;
    e.1 += secs;
}

pub(crate) fn forward_op(op: &'static str) {
    if !enabled() {
        return;
    }
    let now = Instant::now();
    if let Some(prev) = LAST.with(|l| l.replace(Some(now))) {
        add("forward", op, (now - prev).as_secs_f64());
    }
}

/// Records one GEMM of `m x k · k x n` with the given operand layouts.
fn gemm_call(shape: (usize, usize, usize), layouts: (char, char), started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let mut t = table().lock().expect("profile lock");
    let e = t
        .gemms
        .entry((shape.0, shape.1, shape.2, layouts.0, layouts.1))
        .or_insert((0, 0.0));
    e.0 += 1;
    e.1 += secs;
}

pub(crate) fn start() -> Option<Instant> {
    enabled().then(Instant::now)
}

pub(crate) fn backward_op(op: &'static str, started: Option<Instant>) {
    if let Some(t0) = started {
        add("backward", op, t0.elapsed().as_secs_f64());
        LAST.with(|l| l.set(None));
    }
}

/// Marks the start of a forward pass (so the first op is not charged for what came before).
pub fn mark() {
    if enabled() {
        LAST.with(|l| l.set(Some(Instant::now())));
    }
}

/// Clears the table.
pub fn reset() {
    let mut t = table().lock().expect("profile lock");
    t.rows.clear();
    t.gemms.clear();
}

/// The table as text, slowest first: phase, op, calls, total ms, share of the total.
pub fn report() -> String {
    let t = table().lock().expect("profile lock");
    let total: f64 = t.rows.values().map(|r| r.1).sum();
    let mut rows: Vec<_> = t.rows.iter().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let mut s = format!(
        "{:<9} {:<24} {:>7} {:>10} {:>6}\n",
        "phase", "op", "calls", "ms", "%"
    );
    for ((phase, op), (calls, secs)) in rows {
        s.push_str(&format!(
            "{phase:<9} {op:<24} {calls:>7} {:>10.2} {:>5.1}%\n",
            secs * 1e3,
            100.0 * secs / total.max(1e-12)
        ));
    }
    if !t.gemms.is_empty() {
        let mut g: Vec<_> = t.gemms.iter().collect();
        g.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let gemm_total: f64 = g.iter().map(|r| r.1 .1).sum();
        s.push_str(&format!(
            "\nGEMM by shape (m x k x n, A/B layout; {:.2} ms in all, inside the ops above)\n",
            gemm_total * 1e3
        ));
        s.push_str(&format!(
            "{:<24} {:>7} {:>10} {:>8}\n",
            "shape", "calls", "ms", "GFLOP/s"
        ));
        for ((m, k, n, la, lb), (calls, secs)) in g.into_iter().take(30) {
            let flops = 2.0 * (*m * *k * *n) as f64 * *calls as f64;
            let shape = format!("{m}x{k}x{n} {la}{lb}");
            s.push_str(&format!(
                "{shape:<24} {calls:>7} {:>10.2} {:>8.1}\n",
                secs * 1e3,
                flops / secs.max(1e-12) / 1e9
            ));
        }
    }
    s
}
