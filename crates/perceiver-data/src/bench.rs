//! Loader throughput workloads on the shared data: the one definition of what is measured,
//! timed by `cargo xtask bench --filter data` (medians over repeats) and by the
//! `loader_bench` example (one pass each, [`loader_throughput`]).
//!
//! - MNIST training batches of [`MNIST_BATCH`], shuffled, dropping the last partial batch, built
//!   on 2 worker threads 4 batches ahead, and the same on the calling thread;
//! - the Free Spoken Digit Dataset's test split (300 clips): read the WAV, crop/pad to 1 s,
//!   40-band log-mel.

use crate::audio::{Fsdd, FsddConfig};
use crate::dataset::{Dataset, Split};
use crate::error::Result;
use crate::image::{Mnist, MnistKind};
use crate::loader::Loader;
use std::path::Path;
use std::time::Instant;

/// Batch size used by the MNIST measurements.
pub const MNIST_BATCH: usize = 128;

/// Examples in the MNIST training split.
const MNIST_TRAIN: usize = 60_000;

/// Clips in the FSDD test split.
const FSDD_TEST: usize = 300;

/// One pass of a workload (a whole epoch of batches, or every clip once).
pub type Pass = Box<dyn FnMut() -> Result<()> + Send>;

/// What a workload reads and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// MNIST training batches on this many worker threads (0: the calling thread).
    Mnist { workers: usize },
    /// FSDD test clips as log-mel spectrograms.
    FsddLogMel,
}

/// One loader measurement: its names, the work of one pass, and how to set it up.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderWorkload {
    /// Short identifier, e.g. `mnist_batches_prefetch`.
    pub key: &'static str,
    /// Display name, e.g. `mnist loader, prefetch`.
    pub name: &'static str,
    /// The shape of one item, e.g. `batch 128`.
    pub shape: String,
    /// What one pass does.
    pub note: &'static str,
    /// Items (batches or clips) per pass.
    pub items: usize,
    /// Unit of the throughput, e.g. `batches/s`.
    pub unit: &'static str,
    kind: Kind,
}

impl LoaderWorkload {
    /// Opens the data under `data_dir` (holding `mnist/` and `fsdd/`) and returns the routine
    /// that runs one pass; each call of the routine runs the next epoch.
    pub fn setup(&self, data_dir: &Path) -> Result<Pass> {
        match self.kind {
            Kind::Mnist { workers } => {
                let mnist = Mnist::load(&data_dir.join("mnist"), Split::Train, MnistKind::Digits)?;
                let mut loader = Loader::new(mnist, MNIST_BATCH)?
                    .seed(0)
                    .shuffle(true)
                    .drop_last(true);
                if workers > 0 {
                    loader = loader.workers(workers).prefetch(4);
                }
                let mut epoch = 0;
                Ok(Box::new(move || {
                    epoch += 1;
                    for b in loader.epoch(epoch) {
                        std::hint::black_box(b?);
                    }
                    Ok(())
                }))
            }
            Kind::FsddLogMel => {
                let fsdd = Fsdd::open(&data_dir.join("fsdd"), FsddConfig::log_mel(Split::Test))?;
                Ok(Box::new(move || {
                    for i in 0..fsdd.len() {
                        std::hint::black_box(fsdd.get(i)?);
                    }
                    Ok(())
                }))
            }
        }
    }
}

/// The loader workloads, in reporting order.
pub fn loader_workloads() -> Vec<LoaderWorkload> {
    let mnist = |key, name, note, workers| LoaderWorkload {
        key,
        name,
        shape: format!("batch {MNIST_BATCH}"),
        note,
        items: MNIST_TRAIN / MNIST_BATCH,
        unit: "batches/s",
        kind: Kind::Mnist { workers },
    };
    vec![
        mnist(
            "mnist_batches_prefetch",
            "mnist loader, prefetch",
            "2 worker threads, 4 batches ahead",
            2,
        ),
        mnist(
            "mnist_batches_no_prefetch",
            "mnist loader, no prefetch",
            "batches built on the calling thread",
            0,
        ),
        LoaderWorkload {
            key: "fsdd_logmel_clips",
            name: "fsdd log-mel",
            shape: format!("{FSDD_TEST} clips"),
            note: "test split: read WAV, crop/pad to 1 s, 40-band log-mel",
            items: FSDD_TEST,
            unit: "clips/s",
            kind: Kind::FsddLogMel,
        },
    ]
}

/// True when `data_dir` holds the shared datasets the workloads read.
pub fn has_data(data_dir: &Path) -> bool {
    data_dir.join("mnist").is_dir() && data_dir.join("fsdd").is_dir()
}

/// Runs each workload once on `data_dir` and returns `(key, items per second, unit)` rows.
pub fn loader_throughput(data_dir: &Path) -> Result<Vec<(String, f64, String)>> {
    let mut out = Vec::new();
    for w in loader_workloads() {
        let mut pass = w.setup(data_dir)?;
        let start = Instant::now();
        pass()?;
        let rate = w.items as f64 / start.elapsed().as_secs_f64().max(1e-9);
        out.push((w.key.to_string(), rate, w.unit.to_string()));
    }
    Ok(out)
}
