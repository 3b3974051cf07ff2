//! Times the fused attention kernel against the plain composition of ops on one shape, forward
//! and forward + backward (config A's self-attention by default: batch 32, 4 heads, 64 latents,
//! head width 32).
//!
//! `cargo run --release -p perceiver-attn --example flash_timing -- [B H N M D] [ITERS]`
use perceiver_attn::{attention_reference, flash_attention, AttentionOptions};
use perceiver_tensor::{no_grad, Rng, Tensor};
use std::time::Instant;

fn main() {
    let parsed: Result<Vec<usize>, _> = std::env::args().skip(1).map(|a| a.parse()).collect();
    let args = match parsed {
        Ok(a) if a.is_empty() || ((5..=6).contains(&a.len()) && a.iter().all(|&v| v > 0)) => a,
        _ => {
            eprintln!("usage: flash_timing [B H N M D [ITERS]] (whole numbers > 0)");
            std::process::exit(2);
        }
    };
    let (b, h, n, m, d) = match args.as_slice() {
        [b, h, n, m, d, ..] => (*b, *h, *n, *m, *d),
        _ => (32, 4, 64, 64, 32),
    };
    let iters = args.get(5).copied().unwrap_or(200);
    perceiver_nn::runtime::retain_freed_memory();
    let mut rng = Rng::new(0);
    let q = Tensor::randn(&[b, h, n, d], &mut rng).requires_grad();
    let k = Tensor::randn(&[b, h, m, d], &mut rng).requires_grad();
    let v = Tensor::randn(&[b, h, m, d], &mut rng).requires_grad();
    let flops = 4.0 * (b * h * n * m * d) as f64;
    let opts = AttentionOptions::default();
    let run = |fused: bool| {
        if fused {
            flash_attention(&q, &k, &v, None, None).expect("valid shapes")
        } else {
            attention_reference(&q, &k, &v, None, &opts, None).expect("valid shapes")
        }
    };
    for fused in [false, true] {
        let name = if fused { "flash    " } else { "reference" };
        let time = |f: &dyn Fn()| {
            let mut t = Vec::with_capacity(iters);
            for it in 0..iters + 5 {
                let s = Instant::now();
                f();
                if it >= 5 {
                    t.push(s.elapsed().as_secs_f64());
                }
            }
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let fwd = time(&|| {
            no_grad(|| std::hint::black_box(run(fused)));
        });
        let both = time(&|| {
            let out = run(fused);
            std::hint::black_box(out.sum_all().backward().expect("backward"));
        });
        println!(
            "[{b}x{h}x{n}x{d}] x [{m} keys] {name}: forward {:.3} ms ({:.1} GFLOP/s), forward + backward {:.3} ms ({:.1} GFLOP/s)",
            fwd * 1e3,
            flops / fwd / 1e9,
            both * 1e3,
            3.5 * flops / both / 1e9
        );
    }
}
