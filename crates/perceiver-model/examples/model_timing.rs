//! Rough timing of a preset's forward and forward + backward on random data.
//!
//! `cargo run --release -p perceiver-model --example model_timing -- mnist-small 32 5`
//! (preset, batch, iterations; a fourth argument `forward` skips the backward). Prints medians;
//! for real benchmarks see `cargo xtask bench`. With `PERCEIVER_PROFILE=1` it also prints the
//! time per op and per GEMM shape (of the last pass timed).

use perceiver_model::{preset, Perceiver};
use perceiver_tensor::{no_grad, Rng, Tensor};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Run inside the pool and keep freed memory in the heap, as `perceiver train` and the
    // benchmarks do.
    perceiver_nn::runtime::retain_freed_memory();
    perceiver_nn::runtime::compute_pool(None)
        .build()?
        .install(run)
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map(String::as_str).unwrap_or("mnist-small");
    let batch: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let iters: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let forward_only = args.get(3).is_some_and(|a| a == "forward");
    let config = preset(name)?;
    let mut shape = vec![batch];
    shape.extend(&config.input_axes);
    shape.push(config.input_channels);
    let classes = config.num_outputs().unwrap_or(1);
    let model = Perceiver::new(config, &mut Rng::new(0))?;
    let mut rng = Rng::new(1);
    let x = Tensor::randn(&shape, &mut rng);
    let labels: Vec<usize> = (0..batch).map(|i| i % classes).collect();
    let (mut fwd, mut step) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        perceiver_tensor::autograd::profile::reset();
        perceiver_tensor::autograd::profile::mark();
        let t = Instant::now();
        no_grad(|| model.forward(&x, None))?;
        fwd.push(t.elapsed().as_secs_f64());
        if forward_only {
            continue;
        }
        perceiver_tensor::autograd::profile::reset();
        let t = Instant::now();
        perceiver_tensor::autograd::profile::mark();
        let out = model.forward(&x, None)?;
        let loss = out.logits.cross_entropy(&labels, 0.0)?;
        let _grads = loss.backward()?;
        step.push(t.elapsed().as_secs_f64());
    }
    let f = median(fwd);
    if forward_only {
        if std::env::var("PERCEIVER_PROFILE").is_ok() {
            eprintln!("{}", perceiver_tensor::autograd::profile::report());
        }
        println!(
            "{name}, batch {batch}: forward {:.1} ms ({:.0} examples/s)",
            f * 1e3,
            batch as f64 / f
        );
        return Ok(());
    }
    let s = median(step);
    if std::env::var("PERCEIVER_PROFILE").is_ok() {
        eprintln!("{}", perceiver_tensor::autograd::profile::report());
    }
    println!(
        "{name}, batch {batch}: forward {:.1} ms ({:.0} examples/s), forward + backward {:.1} ms ({:.0} examples/s)",
        f * 1e3,
        batch as f64 / f,
        s * 1e3,
        batch as f64 / s
    );
    Ok(())
}
