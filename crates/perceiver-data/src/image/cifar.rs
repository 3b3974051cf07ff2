//! CIFAR-10 binary batches.
//!
//! Each record is 3,073 bytes: one label byte (0-9) and 3,072 pixel bytes, the 1,024 red values
//! then the green then the blue, each plane row-major 32x32. A batch file is a whole number of
//! records (10,000 in the official files). The training split is `data_batch_1.bin` ..
//! `data_batch_5.bin` and the test split `test_batch.bin`, in `cifar-10-batches-bin/`.

use crate::dataset::{Dataset, Split};
use crate::error::{DataError, Result};
use crate::io::{read_file, MAX_ARCHIVE_BYTES, MAX_TEXT_BYTES};
use crate::sample::Sample;
use std::path::{Path, PathBuf};

/// Bytes per record.
pub const RECORD: usize = 1 + 3 * 32 * 32;

/// Default class names (also in `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-10 held in memory (pixels stored HWC, 32x32x3).
#[derive(Clone, Debug)]
pub struct Cifar10 {
    images: Vec<u8>,
    labels: Vec<u8>,
    classes: Vec<String>,
}

/// Parses one binary batch into HWC pixels and labels; `path` is only used in errors.
pub fn parse_batch(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() {
        return Err(DataError::format(path, "record 0", 0, "file is empty"));
    }
    if !bytes.len().is_multiple_of(RECORD) {
        let full = bytes.len() / RECORD;
        return Err(DataError::format(
            path,
            format!("record {full}"),
            (full * RECORD) as u64,
            format!(
                "truncated: file is {} bytes, not a multiple of the {RECORD}-byte record ({} bytes left over)",
                bytes.len(),
                bytes.len() % RECORD
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut images = Vec::with_capacity(n * (RECORD - 1));
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        let label = rec[0];
        if label >= 10 {
            return Err(DataError::format(
                path,
                format!("record {i} label"),
                (i * RECORD) as u64,
                format!("label {label} is not a class 0-9"),
            ));
        }
        labels.push(label);
        let planes = &rec[1..];
        for p in 0..1024 {
            images.push(planes[p]);
            images.push(planes[1024 + p]);
            images.push(planes[2048 + p]);
        }
    }
    Ok((images, labels))
}

impl Cifar10 {
    /// Loads a split from `dir`, which is either `cifar-10-batches-bin/` or its parent.
    pub fn load(dir: &Path, split: Split) -> Result<Cifar10> {
        let base = if dir.join("cifar-10-batches-bin").is_dir() {
            dir.join("cifar-10-batches-bin")
        } else {
            dir.to_path_buf()
        };
        let files: Vec<PathBuf> = match split {
            Split::Train => (1..=5)
                .map(|i| base.join(format!("data_batch_{i}.bin")))
                .collect(),
            Split::Test => vec![base.join("test_batch.bin")],
        };
        for f in &files {
            // Anything at the name is read (the reader refuses a FIFO or a device by name).
            if !f.exists() {
                return Err(DataError::missing(f, "CIFAR-10 batch file not found"));
            }
        }
        let mut ds = Cifar10::from_files(&files)?;
        let meta = base.join("batches.meta.txt");
        if meta.is_file() {
            let text = read_file(&meta, MAX_TEXT_BYTES)?;
            let names: Vec<String> = String::from_utf8_lossy(&text)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if names.len() != 10 {
                return Err(DataError::format(
                    &meta,
                    "class names",
                    0,
                    format!("{} names, expected 10", names.len()),
                ));
            }
            ds.classes = names;
        }
        Ok(ds)
    }

    /// Loads and concatenates the given batch files.
    pub fn from_files(files: &[PathBuf]) -> Result<Cifar10> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for f in files {
            let bytes = read_file(f, MAX_ARCHIVE_BYTES)?;
            let (i, l) = parse_batch(&bytes, f)?;
            images.extend_from_slice(&i);
            labels.extend_from_slice(&l);
        }
        Ok(Cifar10 {
            images,
            labels,
            classes: CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The HWC pixels of image `i` (3,072 bytes).
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        self.images
            .get(i.checked_mul(3072)?..i.checked_add(1)?.checked_mul(3072)?)
    }
}

impl Dataset for Cifar10 {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        super::labelled_image(index, self.image(index), &self.labels, [32, 32, 3])
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }
}
