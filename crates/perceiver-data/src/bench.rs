//! Loader throughput measurements for `cargo xtask bench`.

use crate::audio::{Fsdd, FsddConfig};
use crate::dataset::{Dataset, Split};
use crate::error::Result;
use crate::image::{Mnist, MnistKind};
use crate::loader::Loader;
use std::path::Path;
use std::time::Instant;

/// Batch size used by the MNIST measurements.
pub const MNIST_BATCH: usize = 128;

/// Iterates `batches` batches of an epoch (or the whole epoch) and returns batches per second.
fn batches_per_second(loader: &Loader, max_batches: usize) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0usize;
    for b in loader.epoch(1).take(max_batches) {
        let b = b?;
        std::hint::black_box(&b.inputs);
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// Measures loader throughput on the shared data directory `data_dir` (holding `mnist/` and
/// `fsdd/`). Returns `(name, value, unit)` rows:
/// - `mnist_batches_prefetch`: MNIST train, batch 128, shuffled, 2 worker threads;
/// - `mnist_batches_no_prefetch`: the same on the caller's thread;
/// - `fsdd_logmel_clips`: FSDD test split (300 clips), read + decode + 1 s crop/pad + 40-band
///   log-mel, on the caller's thread.
pub fn loader_throughput(data_dir: &Path) -> Result<Vec<(String, f64, String)>> {
    let mut out = Vec::new();
    let mnist = Mnist::load(&data_dir.join("mnist"), Split::Train, MnistKind::Digits)?;
    let loader = Loader::new(mnist, MNIST_BATCH).seed(0).drop_last(true);
    let max = loader.num_batches();
    let with = batches_per_second(&loader.clone().workers(2).prefetch(4), max)?;
    let without = batches_per_second(&loader, max)?;
    out.push(("mnist_batches_prefetch".into(), with, "batches/s".into()));
    out.push((
        "mnist_batches_no_prefetch".into(),
        without,
        "batches/s".into(),
    ));

    let fsdd = Fsdd::open(&data_dir.join("fsdd"), FsddConfig::log_mel(Split::Test))?;
    let start = Instant::now();
    for i in 0..fsdd.len() {
        std::hint::black_box(fsdd.get(i)?);
    }
    let clips = fsdd.len() as f64 / start.elapsed().as_secs_f64().max(1e-9);
    out.push(("fsdd_logmel_clips".into(), clips, "clips/s".into()));
    Ok(out)
}
