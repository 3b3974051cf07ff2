//! The batching [`Loader`]: seeded shuffling per epoch, fixed-size batches, optional drop-last
//! and background prefetch on worker threads.
//!
//! # Determinism
//! The order of epoch `e` is a Fisher-Yates shuffle of `0..len` by a generator seeded with
//! `mix_seed(seed, e)`, so every epoch is reshuffled and any epoch can be replayed on its own.
//! A transform receives a generator seeded from `(seed, epoch, index)`. With `workers > 0`,
//! batch `j` is built by worker `j % workers` and handed back through that worker's bounded
//! channel; the iterator reads the channels round-robin, so batches come out in exactly the
//! same order and with the same contents as with `workers == 0`.

use crate::dataset::{mix_seed, Dataset, Transform};
use crate::error::{DataError, Result};
use crate::sample::{collate, Batch};
use perceiver_tensor::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

const SHUFFLE_TAG: u64 = 0x5348_5546_464C_4521;
const AUGMENT_TAG: u64 = 0x4155_474D_454E_5421;

/// Batches a [`Dataset`].
#[derive(Clone)]
pub struct Loader {
    dataset: Arc<dyn Dataset>,
    transform: Option<Arc<dyn Transform>>,
    batch_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
    workers: usize,
    prefetch: usize,
}

impl Loader {
    /// A loader over `dataset` with batches of `batch_size`, shuffling with seed 0, keeping the
    /// last partial batch and no worker threads. A batch size of 0 is
    /// [`DataError::ZeroBatchSize`].
    pub fn new(dataset: impl Dataset + 'static, batch_size: usize) -> Result<Self> {
        Loader::from_arc(Arc::new(dataset), batch_size)
    }

    /// Like [`Loader::new`] for a shared dataset.
    pub fn from_arc(dataset: Arc<dyn Dataset>, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::ZeroBatchSize);
        }
        Ok(Loader {
            dataset,
            transform: None,
            batch_size,
            shuffle: true,
            seed: 0,
            drop_last: false,
            workers: 0,
            prefetch: 2,
        })
    }

    /// Turns shuffling on or off (off: dataset order every epoch).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Sets the seed of the shuffle and of the transform generators.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Drops the last batch when it would be smaller than the batch size.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Builds batches on `n` background threads (0: on the caller's thread).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Batches each worker may build ahead of the consumer (at least 1).
    pub fn prefetch(mut self, depth: usize) -> Self {
        self.prefetch = depth.max(1);
        self
    }

    /// Applies `t` to every sample, with a generator seeded by `(seed, epoch, index)`.
    pub fn transform(mut self, t: impl Transform + 'static) -> Self {
        self.transform = Some(Arc::new(t));
        self
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.dataset.len()).collect();
        if self.shuffle {
            Rng::new(mix_seed(&[SHUFFLE_TAG, self.seed, epoch])).shuffle(&mut idx);
        }
        idx
    }

    /// The batches of `epoch`, as an iterator of `Result<Batch>`. An error in one batch (a
    /// corrupt file) is yielded in its place and iteration continues with the next batch.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let order = self.order(epoch);
        let nb = self.num_batches();
        let bs = self.batch_size;
        let batches: Vec<Vec<usize>> = (0..nb)
            .map(|j| order[j * bs..((j + 1) * bs).min(order.len())].to_vec())
            .collect();
        let job = Arc::new(Job {
            dataset: self.dataset.clone(),
            transform: self.transform.clone(),
            seed: self.seed,
            epoch,
        });
        if self.workers == 0 || nb == 0 {
            return Epoch {
                inner: EpochInner::Sync {
                    job,
                    batches: batches.into_iter(),
                },
            };
        }
        let batches = Arc::new(batches);
        let stop = Arc::new(AtomicBool::new(false));
        let nw = self.workers.min(nb);
        let mut receivers = Vec::with_capacity(nw);
        let mut handles = Vec::with_capacity(nw);
        for w in 0..nw {
            let (tx, rx) = sync_channel::<Result<Batch>>(self.prefetch);
            let (wjob, wbatches, wstop) = (job.clone(), batches.clone(), stop.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    let mut j = w;
                    while j < wbatches.len() && !wstop.load(Ordering::Relaxed) {
                        let b = wjob.build(&wbatches[j]);
                        if tx.send(b).is_err() {
                            break;
                        }
                        j += nw;
                    }
                });
            match spawned {
                Ok(h) => {
                    receivers.push(rx);
                    handles.push(h);
                }
                Err(_) => {
                    // Could not start a thread: fall back to building batches synchronously.
                    stop.store(true, Ordering::Relaxed);
                    drop(receivers);
                    for h in handles {
                        let _ = h.join();
                    }
                    let batches = Arc::try_unwrap(batches).unwrap_or_else(|a| (*a).clone());
                    return Epoch {
                        inner: EpochInner::Sync {
                            job,
                            batches: batches.into_iter(),
                        },
                    };
                }
            }
        }
        Epoch {
            inner: EpochInner::Threaded {
                receivers,
                handles,
                stop,
                next: 0,
                total: nb,
            },
        }
    }
}

struct Job {
    dataset: Arc<dyn Dataset>,
    transform: Option<Arc<dyn Transform>>,
    seed: u64,
    epoch: u64,
}

impl Job {
    fn build(&self, indices: &[usize]) -> Result<Batch> {
        let mut samples = Vec::with_capacity(indices.len());
        for &i in indices {
            let s = self.dataset.get(i)?;
            let s = match &self.transform {
                Some(t) => {
                    let mut rng =
                        Rng::new(mix_seed(&[AUGMENT_TAG, self.seed, self.epoch, i as u64]));
                    t.apply(s, &mut rng)?
                }
                None => s,
            };
            samples.push(s);
        }
        collate(samples, indices.to_vec())
    }
}

/// The batches of one epoch (see [`Loader::epoch`]). Dropping it stops the workers.
pub struct Epoch {
    inner: EpochInner,
}

enum EpochInner {
    Sync {
        job: Arc<Job>,
        batches: std::vec::IntoIter<Vec<usize>>,
    },
    Threaded {
        receivers: Vec<Receiver<Result<Batch>>>,
        handles: Vec<JoinHandle<()>>,
        stop: Arc<AtomicBool>,
        next: usize,
        total: usize,
    },
}

impl Iterator for Epoch {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match &mut self.inner {
            EpochInner::Sync { job, batches } => batches.next().map(|b| job.build(&b)),
            EpochInner::Threaded {
                receivers,
                next,
                total,
                ..
            } => {
                if *next >= *total {
                    return None;
                }
                let w = *next % receivers.len();
                *next += 1;
                match receivers[w].recv() {
                    Ok(b) => Some(b),
                    Err(_) => {
                        *next = *total;
                        Some(Err(DataError::Worker(format!(
                            "worker {w} stopped before delivering its batches"
                        ))))
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.inner {
            EpochInner::Sync { batches, .. } => batches.len(),
            EpochInner::Threaded { next, total, .. } => total - next,
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let EpochInner::Threaded {
            receivers,
            handles,
            stop,
            ..
        } = &mut self.inner
        {
            stop.store(true, Ordering::Relaxed);
            receivers.clear();
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}
