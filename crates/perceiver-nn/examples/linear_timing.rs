//! Throughput of one fused `Linear` (`x·Wᵀ + b`, with and without the exact GELU) on all
//! threads, forward without gradients: what the epilogue costs on top of the product.
//!
//! `cargo run --release -p perceiver-nn --example linear_timing -- ROWS IN OUT [ITERS] [COPIES]`
//! (config B's MLP: `512 1024 4096`, config A's: `2048 128 512`). With COPIES > 1 the weights
//! cycle through that many copies, so they come from memory, as in a deep model.
use perceiver_nn::FusedOps;
use perceiver_tensor::GeluKind;
use perceiver_tensor::{no_grad, Rng, Tensor};
use std::time::Instant;

fn main() {
    let parsed: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let args = match parsed {
        Ok(a) if (3..=5).contains(&a.len()) && a.iter().all(|&v| v > 0) => a,
        _ => {
            eprintln!("usage: linear_timing ROWS IN OUT [ITERS] [COPIES] (whole numbers > 0)");
            std::process::exit(2);
        }
    };
    let (rows, inp, out) = (args[0], args[1], args[2]);
    let iters = args.get(3).copied().unwrap_or(50);
    let copies = args.get(4).copied().unwrap_or(1);
    let mut rng = Rng::new(0);
    let x = Tensor::randn(&[rows, inp], &mut rng);
    let ws: Vec<Tensor> = (0..copies)
        .map(|_| Tensor::randn(&[out, inp], &mut rng).mul_scalar(0.05))
        .collect();
    let b = Tensor::randn(&[out], &mut rng);
    let flops = 2.0 * (rows * inp * out) as f64;
    for (label, act) in [("bias", None), ("bias + GELU", Some(GeluKind::Erf))] {
        let mut times = Vec::with_capacity(iters);
        for it in 0..iters + 3 {
            let w = &ws[it % copies];
            let t = Instant::now();
            let y = no_grad(|| x.linear(w, Some(&b), act)).expect("valid shapes");
            let dt = t.elapsed().as_secs_f64();
            std::hint::black_box(y);
            if it >= 3 {
                times.push(dt);
            }
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        println!(
            "[{rows}x{inp}]x[{out}x{inp}]ᵀ {label}: median {:.3} ms, {:.1} GFLOP/s",
            med * 1e3,
            flops / med / 1e9
        );
    }
}
