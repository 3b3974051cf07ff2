//! The data side of a task: which dataset and how it is fed ([`DataSpec`]), opening its
//! splits, the transforms (augmentation, normalisation, pixel permutation, patches), the shape
//! the model sees, the loaders, and a loader batch as the model's input ([`model_batch`]).

use crate::error::{Result, TaskError};
use crate::preset::{task_preset, AudioKind, DatasetKind, Hyper};
use perceiver_data::audio::{Fsdd, FsddConfig};
use perceiver_data::dataset::{class_map, quote_names};
use perceiver_data::image::{
    Cifar10, HorizontalFlip, ImageFolder, ImageFolderConfig, Mnist, MnistKind, Normalize,
    PixelPermutation, RandomCrop, Shapes, ShapesConfig, SpaceToDepth,
};
use perceiver_data::points::{
    ModelNet, ModelNetConfig, PointAugment, PointShapes, PointShapesConfig,
};
use perceiver_data::video::{MovingShapes, MovingShapesConfig};
use perceiver_data::{Batch, Compose, Dataset, Loader, Relabel, Sample, Split, Subset};
use perceiver_model::TrainBatch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything needed to rebuild a run's data pipeline (stored with the checkpoint).
///
/// [`DataSpec::new`] takes a task preset's settings; [`DataSpec::fit`] adds what is learnt from
/// the training split (normalisation statistics, class names).
///
/// ```
/// use perceiver_tasks::{DataSpec, DatasetKind};
/// let spec = DataSpec::new(DatasetKind::Shapes)?;
/// assert_eq!(spec.data_dir, None); // generated: no folder
/// assert_eq!((spec.image_size, spec.patch), (32, 4));
/// assert!(spec.normalize.is_none() && spec.class_names.is_empty()); // nothing fitted yet
/// // Stored as JSON with the checkpoint; without `patch` a spec reads as pixels.
/// let json = serde_json::to_string(&spec).expect("serialises");
/// assert_eq!(serde_json::from_str::<DataSpec>(&json).expect("parses"), spec);
/// let mut value: serde_json::Value = serde_json::from_str(&json).expect("parses");
/// value.as_object_mut().expect("an object").remove("patch");
/// assert_eq!(serde_json::from_value::<DataSpec>(value).expect("parses").patch, 1);
/// # Ok::<(), perceiver_tasks::TaskError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Which dataset.
    pub dataset: DatasetKind,
    /// Its folder (file datasets).
    pub data_dir: Option<PathBuf>,
    /// Seed of the fixed pixel permutation (images), if permuted.
    pub permute_pixels: Option<u64>,
    /// Audio front end (FSDD).
    pub audio: AudioKind,
    /// Training examples (procedural: generated; files: an evenly spaced subset).
    pub train_size: Option<usize>,
    /// Test examples (likewise).
    pub test_size: Option<usize>,
    /// Image side for shapes / image folders.
    pub image_size: usize,
    /// Points per cloud.
    pub num_points: usize,
    /// Images are fed as `patch x patch` patches (space-to-depth; 1 = pixels).
    #[serde(default = "one")]
    pub patch: usize,
    /// Augmentation during training (crops, flips or point transforms; see
    /// [`train_transform`]).
    pub augment: bool,
    /// Per-channel normalisation `(mean, std)` (fitted on the training split when not fixed).
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
    /// Class names, in label order.
    pub class_names: Vec<String>,
}

fn one() -> usize {
    1
}

impl DataSpec {
    /// The task preset's data settings for `kind`: its default folder ([`resolve_data_dir`]),
    /// example counts, augmentation and patches; 32-pixel images, 1,024 points, log-mel audio,
    /// no pixel permutation, and nothing fitted yet.
    pub fn new(kind: DatasetKind) -> Result<DataSpec> {
        let p = task_preset(kind);
        Ok(DataSpec {
            dataset: kind,
            data_dir: resolve_data_dir(kind, None)?,
            permute_pixels: None,
            audio: AudioKind::LogMel,
            train_size: p.sizes.0,
            test_size: p.sizes.1,
            image_size: 32,
            num_points: 1024,
            patch: p.patch,
            augment: p.augment,
            normalize: None,
            class_names: Vec::new(),
        })
    }

    /// Fits what comes from the training split: the normalisation ([`normalization`]) and the
    /// class names.
    pub fn fit(&mut self, train: &dyn Dataset) -> Result<()> {
        self.normalize = normalization(self, train)?;
        self.class_names = train.class_names();
        Ok(())
    }
}

/// Resolves the folder of a file dataset: `--data-dir` (or its sub-folder named after the
/// dataset), else `$PERCEIVER_DATA/<name>`, else `../shared/data/<name>`.
/// Procedural datasets have no folder (`None`); a file dataset without a default folder
/// (image folders) needs `given`.
pub fn resolve_data_dir(kind: DatasetKind, given: Option<&Path>) -> Result<Option<PathBuf>> {
    if kind.is_procedural() {
        return Ok(None);
    }
    let folder = kind.shared_folder();
    if let Some(d) = given {
        if let Some(f) = folder {
            if d.join(f).is_dir() {
                return Ok(Some(d.join(f)));
            }
        }
        return Ok(Some(d.to_path_buf()));
    }
    match folder {
        Some(f) => {
            let mut candidates = vec![perceiver_data::shared_data_dir().join(f)];
            if let Ok(cwd) = std::env::current_dir() {
                candidates.push(cwd.join("../shared/data").join(f));
            }
            for c in &candidates {
                if c.is_dir() {
                    return Ok(Some(c.clone()));
                }
            }
            Ok(Some(candidates.swap_remove(0)))
        }
        None => Err(TaskError::NeedsDataDir(kind)),
    }
}

/// Most examples a generated dataset (shapes, points, video) is asked for: 10,000,000.
pub const MAX_GENERATED: usize = 10_000_000;

/// Evenly spaced subset of `n` samples (all when `n >= len`).
fn subset(ds: Arc<dyn Dataset>, n: Option<usize>) -> Result<Arc<dyn Dataset>> {
    match n {
        Some(n) if n < ds.len() => {
            let len = ds.len() as u128;
            // `i * len / n < len` for `i < n`; computed in u128, so it cannot overflow.
            let idx = (0..n)
                .map(|i| (i as u128 * len / n as u128) as usize)
                .collect();
            Ok(Arc::new(Subset::new(ds, idx)?))
        }
        _ => Ok(ds),
    }
}

/// The number of examples to generate for `split`: `asked`, or `default`; more than
/// [`MAX_GENERATED`] is [`TaskError::TooManyExamples`].
fn generated_len(
    spec: &DataSpec,
    split: Split,
    asked: Option<usize>,
    default: usize,
) -> Result<usize> {
    let n = asked.unwrap_or(default);
    if n > MAX_GENERATED {
        return Err(TaskError::TooManyExamples {
            dataset: spec.dataset,
            split,
            asked: n,
            max: MAX_GENERATED,
        });
    }
    Ok(n)
}

fn image_folder_split(root: &Path, split: Split, size: usize, gray: bool) -> Result<ImageFolder> {
    let side = u32::try_from(size).map_err(|_| {
        perceiver_data::DataError::invalid(format!("image size {size} is too large"))
    })?;
    let cfg = ImageFolderConfig {
        resize: Some(side),
        crop: Some((side, side)),
        grayscale: gray,
    };
    let sub = root.join(split.name());
    let dir = if sub.is_dir() {
        sub
    } else {
        root.to_path_buf()
    };
    Ok(ImageFolder::open(&dir, cfg)?)
}

/// Opens one split of the dataset described by `spec`, without transforms (an evenly spaced
/// subset when `spec` asks for fewer examples than a file dataset has).
///
/// Asking a file dataset for more examples than its split holds is
/// [`TaskError::TooFewExamples`]; asking a generated one for more than [`MAX_GENERATED`] is
/// [`TaskError::TooManyExamples`]. This opens the split alone: [`open_splits`] opens both and
/// checks them against each other.
pub fn open_split(spec: &DataSpec, split: Split) -> Result<Arc<dyn Dataset>> {
    let n = match split {
        Split::Train => spec.train_size,
        Split::Test => spec.test_size,
    };
    let dir = spec.data_dir.clone().unwrap_or_default();
    let hint = |source| TaskError::Open {
        dataset: spec.dataset,
        split,
        source,
    };
    let ds: Arc<dyn Dataset> = match spec.dataset {
        DatasetKind::Shapes => {
            let mut c = ShapesConfig::split(split, generated_len(spec, split, n, 10_000)?);
            c.size = spec.image_size;
            return Ok(Arc::new(Shapes::new(c)?));
        }
        DatasetKind::Points => {
            let mut c = PointShapesConfig::split(split, generated_len(spec, split, n, 4_000)?);
            c.num_points = spec.num_points;
            return Ok(Arc::new(PointShapes::new(c)?));
        }
        DatasetKind::Video => {
            let c = MovingShapesConfig::split(split, generated_len(spec, split, n, 3_000)?);
            return Ok(Arc::new(MovingShapes::new(c)?));
        }
        DatasetKind::Mnist => Arc::new(Mnist::load(&dir, split, MnistKind::Digits).map_err(hint)?),
        DatasetKind::FashionMnist => {
            Arc::new(Mnist::load(&dir, split, MnistKind::Fashion).map_err(hint)?)
        }
        DatasetKind::Cifar10 => Arc::new(Cifar10::load(&dir, split).map_err(hint)?),
        DatasetKind::ImageFolder => {
            Arc::new(image_folder_split(&dir, split, spec.image_size, false)?)
        }
        DatasetKind::Fsdd => {
            let cfg = match spec.audio {
                AudioKind::LogMel => FsddConfig::log_mel(split),
                AudioKind::Raw => FsddConfig::waveform(split),
            };
            Arc::new(Fsdd::open(&dir, cfg).map_err(hint)?)
        }
        DatasetKind::Modelnet => {
            let mut c = ModelNetConfig::new(split);
            c.num_points = spec.num_points;
            Arc::new(ModelNet::open(&dir, c).map_err(hint)?)
        }
    };
    if ds.is_empty() {
        return Err(TaskError::Empty {
            dataset: spec.dataset,
            split,
            dir,
        });
    }
    if let Some(asked) = n.filter(|&n| n > ds.len()) {
        return Err(TaskError::TooFewExamples {
            dataset: spec.dataset,
            split,
            dir,
            asked,
            available: ds.len(),
        });
    }
    subset(ds, n)
}

/// The splits of a run, opened and checked against each other by [`open_splits`].
pub struct Splits {
    /// The training split, its labels numbered as `spec.class_names` when those are given.
    pub train: Arc<dyn Dataset>,
    /// The test split, its labels numbered as the training split's; `None` when
    /// `spec.test_size` is `Some(0)`.
    pub test: Option<Arc<dyn Dataset>>,
    /// What the run should be told: a test split left out, classes mapped by name.
    pub notes: Vec<String>,
}

/// Opens the training and test splits of `spec` ([`open_split`]) and makes them agree:
///
/// - `spec.test_size == Some(0)` means no test split: `test` is `None` (nothing is opened)
///   and a note says so;
/// - when `spec.class_names` is non-empty (it came from a checkpoint), the training split's
///   classes are mapped onto them by name ([`check_classes`]); a class the checkpoint does not
///   know is [`TaskError::UnknownClasses`];
/// - the test split's classes must be among the training split's: its labels are mapped by
///   name onto the training numbering (a note says how when the lists differ), and a test
///   class the training split lacks is [`TaskError::UnknownClasses`] naming both splits;
/// - the first samples of both splits must have the same shape (grid, channels, tokens),
///   else [`TaskError::ShapeMismatch`] naming both splits and shapes.
///
/// ```
/// use perceiver_tasks::{open_splits, DataSpec, DatasetKind};
/// let mut spec = DataSpec::new(DatasetKind::Shapes)?;
/// (spec.train_size, spec.test_size) = (Some(24), Some(0));
/// let splits = open_splits(&spec)?;
/// assert_eq!(splits.train.len(), 24);
/// assert!(splits.test.is_none());
/// assert_eq!(splits.notes.len(), 1); // "no test split ..."
/// # Ok::<(), perceiver_tasks::TaskError>(())
/// ```
pub fn open_splits(spec: &DataSpec) -> Result<Splits> {
    let mut notes = Vec::new();
    let train_label = split_label(spec, Split::Train);
    let train_raw = open_split(spec, Split::Train)?;
    let train_names = train_raw.class_names();
    let (train, note) =
        check_classes(train_raw, &train_label, &spec.class_names, "the checkpoint")?;
    notes.extend(note);
    if spec.test_size == Some(0) {
        notes.push(format!(
            "no test split (test size 0): {} is not opened",
            split_label(spec, Split::Test)
        ));
        return Ok(Splits {
            train,
            test: None,
            notes,
        });
    }
    let test_label = split_label(spec, Split::Test);
    let test = open_split(spec, Split::Test)?;
    check_shapes(train.as_ref(), &train_label, test.as_ref(), &test_label)?;
    let (test, note) = check_classes(test, &test_label, &train_names, &train_label)?;
    notes.extend(note);
    // The training numbering may itself be the checkpoint's; a subset of it, so this holds.
    let (test, _) = check_classes(test, &test_label, &train.class_names(), &train_label)?;
    Ok(Splits {
        train,
        test: Some(test),
        notes,
    })
}

/// Opens the test split of `spec` for evaluating a trained model: [`open_split`], then its
/// classes mapped onto `spec.class_names` (the checkpoint's) by name with [`check_classes`].
/// Returns the split and the notes to show (how classes were mapped).
pub fn open_eval_split(spec: &DataSpec) -> Result<(Arc<dyn Dataset>, Vec<String>)> {
    let label = split_label(spec, Split::Test);
    let test = open_split(spec, Split::Test)?;
    let (test, note) = check_classes(test, &label, &spec.class_names, "the checkpoint")?;
    Ok((test, note.into_iter().collect()))
}

/// Gives `data` the label numbering of the class list `known`, matching classes by name.
///
/// Returns `data` unchanged when `known` is empty or equal to its class list; otherwise a
/// [`Relabel`] of it (its classes become `known`) and a note on how the lists differ
/// ("... has 9 of the 10 classes of ... (no 'cat'); labels are mapped by name"). A class of
/// `data` missing from `known` is [`TaskError::UnknownClasses`]. `data_label` and
/// `known_label` describe both in messages (see [`split_label`]; e.g. `"the checkpoint"`).
///
/// ```
/// use perceiver_data::image::{Shapes, ShapesConfig};
/// use perceiver_data::Dataset;
/// use perceiver_tasks::{check_classes, TaskError};
/// use std::sync::Arc;
/// let data = Arc::new(Shapes::new(ShapesConfig { len: 4, ..ShapesConfig::default() })?);
/// let mut known = data.class_names();
/// known.reverse();
/// let (mapped, note) = check_classes(data.clone(), "the data", &known, "the checkpoint")?;
/// assert_eq!(mapped.get(0)?.label, known.len() - 1); // class 0 is last in `known`
/// assert!(note.is_some());
/// let err = check_classes(data, "the data", &known[..2], "the checkpoint").err();
/// assert!(matches!(err, Some(TaskError::UnknownClasses { .. })));
/// # Ok::<(), perceiver_tasks::TaskError>(())
/// ```
pub fn check_classes(
    data: Arc<dyn Dataset>,
    data_label: &str,
    known: &[String],
    known_label: &str,
) -> Result<(Arc<dyn Dataset>, Option<String>)> {
    let names = data.class_names();
    if known.is_empty() || names == known {
        return Ok((data, None));
    }
    if let Err(classes) = class_map(&names, known) {
        return Err(TaskError::UnknownClasses {
            classes,
            data: data_label.to_string(),
            known: known_label.to_string(),
        });
    }
    let absent: Vec<String> = known
        .iter()
        .filter(|k| !names.contains(k))
        .cloned()
        .collect();
    let note = if absent.is_empty() {
        format!(
            "{data_label} lists the {} classes of {known_label} in another order; labels are \
             mapped by name",
            known.len()
        )
    } else {
        format!(
            "{data_label} has {} of the {} classes of {known_label} (no {}); labels are mapped \
             by name",
            names.len(),
            known.len(),
            quote_names(&absent)
        )
    };
    let relabelled = Relabel::by_name(data, known.to_vec())?;
    Ok((Arc::new(relabelled), Some(note)))
}

/// A split in words, for messages: `the test split of mnist (/data/mnist)` (no folder for
/// generated datasets; an image folder's `train/` or `test/` sub-folder when it has one).
pub fn split_label(spec: &DataSpec, split: Split) -> String {
    let dir = match &spec.data_dir {
        Some(d) if !spec.dataset.is_procedural() => {
            let sub = d.join(split.name());
            if spec.dataset == DatasetKind::ImageFolder && sub.is_dir() {
                sub
            } else {
                d.clone()
            }
        }
        _ => return format!("the {} split of {}", split.name(), spec.dataset),
    };
    format!(
        "the {} split of {} ({})",
        split.name(),
        spec.dataset,
        dir.display()
    )
}

/// The shape of a sample in words: `28x28x1` on a grid, else `1024 tokens of 3 channels`.
fn sample_shape(s: &Sample) -> String {
    match &s.grid {
        Some(g) => {
            let mut parts: Vec<String> = g.iter().map(|d| d.to_string()).collect();
            parts.push(s.channels.to_string());
            parts.join("x")
        }
        None => format!("{} tokens of {} channels", s.tokens(), s.channels),
    }
}

/// [`TaskError::ShapeMismatch`] when the first samples of `train` and `test` differ in grid,
/// channels, tokens or position dimensions.
fn check_shapes(
    train: &dyn Dataset,
    train_label: &str,
    test: &dyn Dataset,
    test_label: &str,
) -> Result<()> {
    let (a, b) = (train.get(0)?, test.get(0)?);
    let key = |s: &Sample| (s.grid.clone(), s.channels, s.tokens(), s.pos_dim);
    if key(&a) != key(&b) {
        return Err(TaskError::ShapeMismatch {
            train: train_label.to_string(),
            train_shape: sample_shape(&a),
            test: test_label.to_string(),
            test_shape: sample_shape(&b),
        });
    }
    Ok(())
}

/// The FSDD feature settings of a spec (to turn a single WAV file into a sample).
pub fn fsdd_config(spec: &DataSpec) -> FsddConfig {
    match spec.audio {
        AudioKind::LogMel => FsddConfig::log_mel(Split::Test),
        AudioKind::Raw => FsddConfig::waveform(Split::Test),
    }
}

/// Fixed normalisation statistics of a dataset, or fitted ones for those without.
/// MNIST, Fashion-MNIST and CIFAR-10 have their usual constants; point clouds are not
/// normalised; the others are fitted on 500 training samples.
pub fn normalization(spec: &DataSpec, train: &dyn Dataset) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
    let n = match spec.dataset {
        DatasetKind::Mnist => Normalize::mnist(),
        DatasetKind::FashionMnist => Normalize::fashion_mnist(),
        DatasetKind::Cifar10 => Normalize::cifar10(),
        DatasetKind::Points | DatasetKind::Modelnet => return Ok(None),
        _ => Normalize::fit(train, 500)?,
    };
    Ok(Some((n.mean, n.std)))
}

/// The evaluation transform: normalise, then permute the pixels or cut the image into patches
/// ([`SpaceToDepth`]); also the last part of the training transform. `tokens` is the number of
/// tokens of a raw sample (before patches, [`DataShape::sample_tokens`]).
pub fn eval_transform(spec: &DataSpec, tokens: usize) -> Result<Compose> {
    let mut c = Compose::new();
    if let Some((m, s)) = &spec.normalize {
        c = c.then(Normalize::new(m.clone(), s.clone())?);
    }
    if let Some(seed) = spec.permute_pixels {
        if spec.patch > 1 {
            return Err(TaskError::PermutedPatches);
        }
        c = c.then(PixelPermutation::new(tokens, seed));
    }
    if spec.patch > 1 {
        c = c.then(SpaceToDepth::new(spec.patch)?);
    }
    Ok(c)
}

/// The training transform: augmentation (when `spec.augment`), then [`eval_transform`]. Point
/// clouds are rotated, scaled and jittered; Fashion-MNIST is flipped; CIFAR-10 and image
/// folders are cropped (padding 1/8 of the side) and flipped; the other images are cropped.
/// `tokens` and `grid` describe a raw sample ([`DataShape::sample_tokens`], [`DataShape::grid`]).
pub fn train_transform(spec: &DataSpec, tokens: usize, grid: Option<&[usize]>) -> Result<Compose> {
    let mut c = Compose::new();
    if spec.augment {
        match spec.dataset {
            DatasetKind::Points | DatasetKind::Modelnet => {
                let up = if spec.dataset == DatasetKind::Modelnet {
                    2
                } else {
                    1
                };
                c = c.then(PointAugment {
                    up_axis: up,
                    ..PointAugment::default()
                });
            }
            // Clothing and natural images are mirror-symmetric, digits and the shapes' classes
            // are not; Fashion-MNIST underfits with crops (docs/RESULTS.md), so it is flipped
            // only.
            DatasetKind::FashionMnist => c = c.then(HorizontalFlip::default()),
            DatasetKind::Cifar10 | DatasetKind::ImageFolder => {
                if let Some(&[h, _]) = grid {
                    c = c.then(RandomCrop::new(h, h / 8));
                }
                c = c.then(HorizontalFlip::default());
            }
            _ => {
                if let Some(&[h, _]) = grid {
                    c = c.then(RandomCrop::new(h, h / 8));
                }
            }
        }
    }
    Ok(c.then(eval_transform(spec, tokens)?))
}

/// Shape of the data as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct DataShape {
    /// Index dims (`[H, W]`, `[T]`, `[F, H, W]`, or `[N, 1, 1]` for 3-D points).
    pub axes: Vec<usize>,
    /// Channels per token.
    pub channels: usize,
    /// Tokens per example.
    pub tokens: usize,
    /// The grid of the raw samples, if any.
    pub grid: Option<Vec<usize>>,
    /// Tokens of a raw sample (before patches).
    pub sample_tokens: usize,
}

/// Inspects sample 0 of `ds` (images fed as `patch x patch` patches when `patch > 1`).
pub fn data_shape(ds: &dyn Dataset, patch: usize) -> Result<DataShape> {
    let s = ds.get(0)?;
    let sample_tokens = s.tokens();
    let mut tokens = sample_tokens;
    let mut channels = s.channels;
    let mut axes = match &s.grid {
        Some(g) => g.clone(),
        None => {
            let mut a = vec![tokens];
            a.extend(std::iter::repeat_n(1, s.pos_dim.saturating_sub(1)));
            a
        }
    };
    if patch > 1 {
        if axes.len() != 2 || axes[0] % patch != 0 || axes[1] % patch != 0 {
            return Err(TaskError::Patch { patch, axes });
        }
        axes = vec![axes[0] / patch, axes[1] / patch];
        tokens /= patch * patch;
        channels *= patch * patch;
    }
    Ok(DataShape {
        axes,
        channels,
        tokens,
        grid: s.grid.clone(),
        sample_tokens,
    })
}

/// The training loader of a task: batches of `hyper.batch_size`, shuffled with `hyper.seed`,
/// the last partial batch dropped, built on a worker thread 4 batches ahead, through
/// [`train_transform`].
pub fn train_loader(
    spec: &DataSpec,
    hyper: &Hyper,
    train: Arc<dyn Dataset>,
    shape: &DataShape,
) -> Result<Loader> {
    let tf = train_transform(spec, shape.sample_tokens, shape.grid.as_deref())?;
    Ok(Loader::from_arc(train, hyper.batch_size)?
        .shuffle(true)
        .seed(hyper.seed)
        .drop_last(true)
        .workers(1)
        .prefetch(4)
        .transform(tf))
}

/// An evaluation loader: batches of `batch_size` in dataset order (the last one partial),
/// built on a worker thread 2 batches ahead, through [`eval_transform`].
pub fn eval_loader(
    spec: &DataSpec,
    test: Arc<dyn Dataset>,
    batch_size: usize,
    shape: &DataShape,
) -> Result<Loader> {
    let tf = eval_transform(spec, shape.sample_tokens)?;
    Ok(Loader::from_arc(test, batch_size)?
        .shuffle(false)
        .workers(1)
        .prefetch(2)
        .transform(tf))
}

/// A loader batch as the model's input. A batch on a grid (images, patches, spectrograms,
/// video) goes without positions: the model computes its grid's positions itself, once per
/// shape. A token batch (permuted pixels, point clouds) passes its explicit positions.
pub fn model_batch(b: Batch) -> TrainBatch {
    let positions = if b.grid.is_some() { None } else { b.positions };
    TrainBatch {
        inputs: b.inputs,
        positions,
        mask: None,
        labels: b.labels,
    }
}
