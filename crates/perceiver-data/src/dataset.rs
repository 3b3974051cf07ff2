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

/// For each class name of `from`, the index of the same name in `onto` (the first one, if
/// `onto` repeats a name); `Err` holds the names of `from` that `onto` lacks, in `from`'s order.
///
/// ```
/// use perceiver_data::dataset::class_map;
/// let s = |v: &[&str]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
/// assert_eq!(class_map(&s(&["dog", "cat"]), &s(&["cat", "dog", "bird"])), Ok(vec![1, 0]));
/// assert_eq!(class_map(&s(&["cow"]), &s(&["cat"])), Err(s(&["cow"])));
/// ```
pub fn class_map(from: &[String], onto: &[String]) -> std::result::Result<Vec<usize>, Vec<String>> {
    let mut map = Vec::with_capacity(from.len());
    let mut missing = Vec::new();
    for name in from {
        match onto.iter().position(|o| o == name) {
            Some(i) => map.push(i),
            None => missing.push(name.clone()),
        }
    }
    if missing.is_empty() {
        Ok(map)
    } else {
        Err(missing)
    }
}

/// A dataset whose labels are those of another list of class names, matched by name: sample
/// `i` is `inner.get(i)` with its label `l` replaced by the index in `names` of `inner`'s class
/// `l`. Used to give a test split (or data evaluated by a trained model) the label numbering
/// of the training split (or of the model).
pub struct Relabel<D> {
    inner: D,
    map: Vec<usize>,
    names: Vec<String>,
}

impl<D: Dataset> Relabel<D> {
    /// Maps every class of `inner` onto the class of the same name in `names`;
    /// [`DataError::Invalid`] naming the classes of `inner` that `names` lacks.
    pub fn by_name(inner: D, names: Vec<String>) -> Result<Self> {
        let map = class_map(&inner.class_names(), &names).map_err(|missing| {
            DataError::invalid(format!(
                "the classes {} are not among the {} target classes",
                quote_names(&missing),
                names.len()
            ))
        })?;
        Ok(Relabel { inner, map, names })
    }

    /// The target index of each class of the inner dataset.
    pub fn mapping(&self) -> &[usize] {
        &self.map
    }

    /// The wrapped dataset.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Dataset> Dataset for Relabel<D> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn get(&self, index: usize) -> Result<Sample> {
        let mut s = self.inner.get(index)?;
        s.label = *self.map.get(s.label).ok_or_else(|| {
            DataError::invalid(format!(
                "sample {index} has label {}, past the {} classes of its dataset",
                s.label,
                self.map.len()
            ))
        })?;
        Ok(s)
    }
    fn num_classes(&self) -> usize {
        self.names.len()
    }
    fn class_names(&self) -> Vec<String> {
        self.names.clone()
    }
}

/// Class names quoted and joined for messages: `'cat', 'dog'`.
pub fn quote_names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three samples labelled 0, 1, 2 of the classes `names`.
    struct Toy(Vec<String>);

    impl Dataset for Toy {
        fn len(&self) -> usize {
            3
        }
        fn get(&self, index: usize) -> Result<Sample> {
            check_index(index, 3)?;
            Ok(Sample::image(vec![0.0], 1, 1, 1, index))
        }
        fn num_classes(&self) -> usize {
            self.0.len()
        }
        fn class_names(&self) -> Vec<String> {
            self.0.clone()
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn relabel_maps_labels_by_name() {
        let test = Toy(names(&["dog", "bird", "cat"]));
        let r = Relabel::by_name(test, names(&["bird", "cat", "dog", "fish"])).unwrap();
        assert_eq!(r.mapping(), &[2, 0, 1]);
        let labels: Vec<usize> = (0..3).map(|i| r.get(i).unwrap().label).collect();
        assert_eq!(labels, vec![2, 0, 1]);
        assert_eq!(r.num_classes(), 4);
        assert_eq!(r.class_names(), names(&["bird", "cat", "dog", "fish"]));
    }

    #[test]
    fn relabel_refuses_an_unknown_class_by_name() {
        let test = Toy(names(&["dog", "cow", "yak"]));
        let Err(e) = Relabel::by_name(test, names(&["dog", "cat"])) else {
            panic!("unknown classes accepted");
        };
        assert_eq!(
            e.to_string(),
            "the classes 'cow', 'yak' are not among the 2 target classes"
        );
    }

    #[test]
    fn relabel_reports_a_label_past_the_classes() {
        // Two class names but labels up to 2: sample 2's label has no mapping.
        let r = Relabel::by_name(Toy(names(&["a", "b"])), names(&["b", "a"])).unwrap();
        assert_eq!(r.get(1).unwrap().label, 0);
        let e = r.get(2).unwrap_err().to_string();
        assert!(e.contains("sample 2 has label 2"), "{e}");
    }
}
