//! The [`Dataset`] trait, sample [`Transform`]s and small dataset combinators.
//!
//! # Randomness
//! Datasets are pure: `get(i)` returns the same sample every time (procedural datasets derive
//! sample `i` from `(seed, i)`). Random augmentation lives in a [`Transform`], which receives a
//! generator seeded from `(loader seed, epoch, index)` by the [`crate::Loader`], so a run is
//! reproducible whatever the number of worker threads.

use crate::error::{DataError, Result};
use crate::sample::Sample;
use perceiver_tensor::Rng;
use std::sync::Arc;

/// Which part of a dataset to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    Train,
    /// The test split.
    Test,
}

impl Split {
    /// `"train"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Mixes several 64-bit words into one seed (SplitMix64 finaliser over a running hash), used to
/// derive per-epoch and per-sample seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    }
    h
}

/// A random-access collection of labelled samples.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `index` (`index < len()`); the same sample on every call.
    fn get(&self, index: usize) -> Result<Sample>;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// Class names, `num_classes()` of them.
    fn class_names(&self) -> Vec<String>;
}

/// The label and the random stream of sample `index` of a generated dataset of `len` samples
/// over `classes` classes: labels cycle through the classes with the index, and each sample
/// draws from its own stream, seeded by `(seed, index)`. [`DataError::Index`] when
/// `index >= len`.
pub fn generated_sample(
    index: usize,
    len: usize,
    classes: usize,
    seed: u64,
) -> Result<(usize, Rng)> {
    check_index(index, len)?;
    Ok((index % classes, Rng::new(mix_seed(&[seed, index as u64]))))
}

/// Implements [`Dataset`] for the generated dataset `$dataset`, whose config `cfg` has `len`
/// and `seed`: sample `index` comes from `$generate(dataset, label, rng)` with the label and
/// the random stream of [`generated_sample`], the classes being the names `$classes`.
macro_rules! generated_dataset {
    ($dataset:ty, $classes:expr, $generate:expr) => {
        impl $crate::dataset::Dataset for $dataset {
            fn len(&self) -> usize {
                self.cfg.len
            }

            fn get(&self, index: usize) -> $crate::error::Result<$crate::sample::Sample> {
                let (label, mut rng) = $crate::dataset::generated_sample(
                    index,
                    self.cfg.len,
                    $classes.len(),
                    self.cfg.seed,
                )?;
                let generate: fn(
                    &Self,
                    usize,
                    &mut perceiver_tensor::Rng,
                ) -> $crate::error::Result<$crate::sample::Sample> = $generate;
                generate(self, label, &mut rng)
            }

            fn num_classes(&self) -> usize {
                $classes.len()
            }

            fn class_names(&self) -> Vec<String> {
                $classes.iter().map(|s| s.to_string()).collect()
            }
        }
    };
}
pub(crate) use generated_dataset;

/// Returns [`DataError::Index`] when `index >= len`.
pub fn check_index(index: usize, len: usize) -> Result<()> {
    if index >= len {
        Err(DataError::Index { index, len })
    } else {
        Ok(())
    }
}

/// A smart pointer to a dataset is the dataset it points to.
macro_rules! dataset_through_pointer {
    ($($pointer:ident),*) => {$(
        impl<D: Dataset + ?Sized> Dataset for $pointer<D> {
            fn len(&self) -> usize {
                (**self).len()
            }
            fn get(&self, index: usize) -> Result<Sample> {
                (**self).get(index)
            }
            fn num_classes(&self) -> usize {
                (**self).num_classes()
            }
            fn class_names(&self) -> Vec<String> {
                (**self).class_names()
            }
        }
    )*};
}

dataset_through_pointer!(Arc, Box);

/// A per-sample transformation (normalisation, augmentation, token permutation...).
pub trait Transform: Send + Sync {
    /// Transforms one sample; `rng` is seeded per (seed, epoch, sample) by the caller.
    fn apply(&self, sample: Sample, rng: &mut Rng) -> Result<Sample>;
}

impl<F> Transform for F
where
    F: Fn(Sample, &mut Rng) -> Result<Sample> + Send + Sync,
{
    fn apply(&self, sample: Sample, rng: &mut Rng) -> Result<Sample> {
        self(sample, rng)
    }
}

impl<T: Transform + ?Sized> Transform for Arc<T> {
    fn apply(&self, sample: Sample, rng: &mut Rng) -> Result<Sample> {
        (**self).apply(sample, rng)
    }
}

/// Transforms applied in order, sharing one generator.
#[derive(Default)]
pub struct Compose {
    steps: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// An empty pipeline (the identity).
    pub fn new() -> Self {
        Compose::default()
    }

    /// Appends a step.
    pub fn then(mut self, t: impl Transform + 'static) -> Self {
        self.steps.push(Box::new(t));
        self
    }
}

impl Transform for Compose {
    fn apply(&self, mut sample: Sample, rng: &mut Rng) -> Result<Sample> {
        for t in &self.steps {
            sample = t.apply(sample, rng)?;
        }
        Ok(sample)
    }
}

/// A dataset with a fixed transform: sample `i` is `transform(inner.get(i))` with a generator
/// seeded from `(seed, i)`, so it is the same on every call (use this for deterministic steps
/// such as normalisation or the fixed pixel permutation; put epoch-varying augmentation on the
/// loader instead).
pub struct Mapped<D, T> {
    inner: D,
    transform: T,
    seed: u64,
}

impl<D: Dataset, T: Transform> Mapped<D, T> {
    /// Wraps `inner`.
    pub fn new(inner: D, transform: T, seed: u64) -> Self {
        Mapped {
            inner,
            transform,
            seed,
        }
    }

    /// The wrapped dataset.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Dataset, T: Transform> Dataset for Mapped<D, T> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let s = self.inner.get(index)?;
        let mut rng = Rng::new(mix_seed(&[self.seed, index as u64]));
        self.transform.apply(s, &mut rng)
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names()
    }
}

/// A view of some samples of another dataset (e.g. a validation split).
pub struct Subset<D> {
    inner: D,
    indices: Vec<usize>,
}

impl<D: Dataset> Subset<D> {
    /// The samples `indices` of `inner`; every index must be in range.
    pub fn new(inner: D, indices: Vec<usize>) -> Result<Self> {
        let n = inner.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(DataError::Index { index: bad, len: n });
        }
        Ok(Subset { inner, indices })
    }

    /// The samples `range` of `inner`.
    pub fn range(inner: D, range: std::ops::Range<usize>) -> Result<Self> {
        Subset::new(inner, range.collect())
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    fn len(&self) -> usize {
        self.indices.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.indices.len())?;
        self.inner.get(self.indices[index])
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn class_names(&self) -> Vec<String> {
        self.inner.class_names()
    }
}
