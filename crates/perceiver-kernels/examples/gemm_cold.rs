//! GEMM throughput with the weight operand hot in cache and cold (cycling through more weight
//! matrices than the caches hold, as a deep model's forward does).
//!
//! `cargo run --release -p perceiver-kernels --example gemm_cold -- M K N [COPIES] [ITERS]`
//! times `x[M,K] · W[N,K]ᵀ` (a Linear layer's product) with 1 weight copy and with COPIES.
mod common;

use perceiver_kernels::gemm::{gemm_new, MatRef};
use std::time::Instant;

fn main() {
    let usage = "gemm_cold M K N [COPIES >= 1] [ITERS >= 1] (whole numbers)";
    let args = common::sizes(usage, |i, v| i < 3 || v > 0);
    let (m, k, n) = (args[0], args[1], args[2]);
    let copies = args.get(3).copied().unwrap_or(40);
    let iters = args.get(4).copied().unwrap_or(80);
    let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.01).collect();
    let ws: Vec<Vec<f32>> = (0..copies)
        .map(|c| (0..n * k).map(|i| ((i + c) % 13) as f32 * 0.01).collect())
        .collect();
    for (used, keep_outputs) in [(1, false), (copies, false), (copies, true)] {
        let mut times = Vec::new();
        let mut kept = std::collections::VecDeque::new();
        for it in 0..iters + 4 {
            let w = &ws[it % used];
            let t = Instant::now();
            let out = gemm_new(
                1.0,
                MatRef::row_major(&x, m, k),
                MatRef::row_major(w, n, k).t(),
            );
            let dt = t.elapsed().as_secs_f64();
            if keep_outputs {
                // Outputs live on, as activations do in a forward pass: the next product
                // writes to memory that is not in cache.
                kept.push_back(out);
                if kept.len() > copies {
                    kept.pop_front();
                }
            } else {
                std::hint::black_box(out);
            }
            if it >= 4 {
                times.push(dt);
            }
        }
        let med = common::median(times);
        println!(
            "{m}x{k}x{n} weights {}{}: median {:.3} ms, {:.1} GFLOP/s",
            if used == 1 { "hot " } else { "cold" },
            if keep_outputs { ", outputs kept" } else { "" },
            med * 1e3,
            2.0 * (m * k * n) as f64 / med / 1e9
        );
    }
}
