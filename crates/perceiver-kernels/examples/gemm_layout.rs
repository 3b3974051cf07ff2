//! GEMM throughput of one product in each operand layout, on one thread or all of them: the
//! layouts of a Linear layer's forward (`rc`: `x·Wᵀ`) and backward (`rr`: `dh·W`, `cr`:
//! `dhᵀ·x`), and of attention heads (`rc`: `Q·Kᵀ`).
//!
//! `cargo run --release -p perceiver-kernels --example gemm_layout -- M K N [ITERS] [COPIES]`
//! (`RAYON_NUM_THREADS=1` for one thread). With COPIES > 1 the operands cycle through that many
//! copies, so they come from memory rather than cache, as in a training step.
mod common;

use perceiver_kernels::gemm::{gemm_new, MatRef};
use std::time::Instant;

fn main() {
    let usage = "gemm_layout M K N [ITERS] [COPIES] (whole numbers > 0)";
    let args = common::sizes(usage, |_, v| v > 0);
    let (m, k, n) = (args[0], args[1], args[2]);
    let iters = args.get(3).copied().unwrap_or(200);
    let copies = args.get(4).copied().unwrap_or(1);
    let a: Vec<Vec<f32>> = (0..copies)
        .map(|c| (0..m * k).map(|i| ((i + c) % 17) as f32 * 0.01).collect())
        .collect();
    let b: Vec<Vec<f32>> = (0..copies)
        .map(|c| (0..k * n).map(|i| ((i + c) % 13) as f32 * 0.01).collect())
        .collect();
    for layout in ["rr", "rc", "cr", "cc"] {
        let mut times = Vec::with_capacity(iters);
        for it in 0..iters + 5 {
            let (a, b) = (&a[it % copies], &b[it % copies]);
            let am = if layout.starts_with('r') {
                MatRef::row_major(a, m, k)
            } else {
                MatRef::row_major(a, k, m).t()
            };
            let bm = if layout.ends_with('r') {
                MatRef::row_major(b, k, n)
            } else {
                MatRef::row_major(b, n, k).t()
            };
            let t = Instant::now();
            std::hint::black_box(gemm_new(1.0, am, bm));
            if it >= 5 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let med = common::median(times);
        println!(
            "{m}x{k}x{n} {layout}, {copies} cop{}: median {:.1} us, {:.1} GFLOP/s",
            if copies == 1 { "y" } else { "ies" },
            med * 1e6,
            2.0 * (m * k * n) as f64 / med / 1e9
        );
    }
}
