//! The IDX format (raw or gzipped) and the MNIST / Fashion-MNIST datasets.
//!
//! IDX: two zero bytes, a type code (only `0x08`, unsigned byte, is used by these datasets),
//! the number of dimensions, one big-endian u32 per dimension, then the data in row-major order.
//! The declared size is checked against the file before the data is used; trailing bytes are an
//! error (they mean the header is wrong).

use crate::dataset::{Dataset, Split};
use crate::error::{DataError, Result};
use crate::io::{
    is_gzip, read_file, ByteReader, GzStream, GUNZIP_SLACK, MAX_ARCHIVE_BYTES, MAX_GUNZIP_BYTES,
};
use crate::sample::Sample;
use std::path::{Path, PathBuf};

/// A decoded IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxArray {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The elements in row-major order.
    pub data: Vec<u8>,
}

/// Reads an IDX file (at most [`MAX_ARCHIVE_BYTES`]), inflating it first when it is gzip
/// ([`gunzip_idx`]).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let bytes = read_file(path, MAX_ARCHIVE_BYTES)?;
    if is_gzip(&bytes) {
        let raw = gunzip_idx(&bytes, path)?;
        parse_idx(&raw, path)
    } else {
        parse_idx(&bytes, path)
    }
}

/// The header of an IDX array: its dimensions, the bytes of data they declare and the length
/// of the header itself.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxHeader {
    /// The dimensions.
    pub dims: Vec<usize>,
    /// Bytes of data the dimensions declare (their product; one byte per element).
    pub payload: usize,
    /// Bytes of header (4 + 4 per dimension).
    pub header_len: usize,
}

/// Parses the IDX header at the start of `bytes` (magic number and dimensions); the element
/// count is computed with checked arithmetic, an overflow being an error naming the dimension.
pub fn parse_idx_header(bytes: &[u8], path: &Path) -> Result<IdxHeader> {
    let mut r = ByteReader::new(bytes, path);
    let magic = r.array::<4>("magic number")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(r.err_at(
            "magic number",
            0,
            format!(
                "expected 00 00 at the start, found {:02x} {:02x}",
                magic[0], magic[1]
            ),
        ));
    }
    if magic[2] != 0x08 {
        return Err(r.err_at(
            "magic number",
            2,
            format!(
                "data type 0x{:02x} is not supported (only 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let nd = magic[3] as usize;
    if nd == 0 || nd > 4 {
        return Err(r.err_at(
            "magic number",
            3,
            format!("{nd} dimensions (expected 1 to 4)"),
        ));
    }
    let mut dims = Vec::with_capacity(nd);
    let mut total: usize = 1;
    for d in 0..nd {
        let off = r.pos();
        let field = format!("dimension {d}");
        let v = usize::try_from(r.u32_be(&field)?)
            .map_err(|_| r.err_at(&field, off, "does not fit in memory addresses"))?;
        total = total
            .checked_mul(v)
            .ok_or_else(|| r.err_at(&field, off, "element count overflows"))?;
        dims.push(v);
    }
    Ok(IdxHeader {
        dims,
        payload: total,
        header_len: r.pos(),
    })
}

/// Inflates a gzipped IDX file no further than its header allows: the header is inflated
/// first, then the stream up to the declared size plus [`GUNZIP_SLACK`] bytes. A stream that
/// holds more than the header declares is an error (and is not inflated past the slack); one
/// that holds less is left for [`parse_idx`] to report as truncated.
pub fn gunzip_idx(compressed: &[u8], path: &Path) -> Result<Vec<u8>> {
    let mut gz = GzStream::new(compressed, path);
    let head = gz.fill(4)?;
    let nd = if head.len() == 4 { head[3].min(4) } else { 0 };
    let head = gz.fill(4 + 4 * nd as u64)?;
    let h = parse_idx_header(head, path)?;
    let declared = u64::try_from(h.payload)
        .ok()
        .and_then(|p| p.checked_add(h.header_len as u64))
        .filter(|&d| d <= MAX_GUNZIP_BYTES)
        .ok_or_else(|| {
            DataError::format(
                path,
                "dimensions",
                4,
                format!(
                    "the header {:?} declares {} bytes of data, more than the {MAX_GUNZIP_BYTES} accepted",
                    h.dims, h.payload
                ),
            )
        })?;
    gz.fill(declared + GUNZIP_SLACK)?;
    if gz.len() > declared {
        return Err(DataError::format(
            path,
            "gzip stream",
            declared,
            format!(
                "the header {:?} declares {declared} bytes but the stream holds more",
                h.dims
            ),
        ));
    }
    Ok(gz.into_bytes())
}

/// Parses IDX bytes (already decompressed); `path` is only used in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray> {
    let IdxHeader {
        dims,
        payload: total,
        header_len: header,
    } = parse_idx_header(bytes, path)?;
    let mut r = ByteReader::new(bytes, path);
    r.seek(header, "data")?;
    if total > r.remaining() {
        return Err(r.err(
            "data",
            format!(
                "truncated: header declares {dims:?} = {total} bytes of data, only {} present",
                r.remaining()
            ),
        ));
    }
    if total < r.remaining() {
        return Err(r.err_at(
            "data",
            header + total,
            format!(
                "{} unexpected bytes after the {total} bytes declared by the header {dims:?}",
                r.remaining() - total
            ),
        ));
    }
    let data = r.take(total, "data")?.to_vec();
    Ok(IdxArray { dims, data })
}

/// MNIST or Fashion-MNIST (same format and layout, different class names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MnistKind {
    /// Handwritten digits 0-9.
    Digits,
    /// Zalando article images.
    Fashion,
}

impl MnistKind {
    /// The 10 class names.
    pub fn class_names(self) -> Vec<String> {
        let names: [&str; 10] = match self {
            MnistKind::Digits => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            MnistKind::Fashion => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

/// An MNIST-style dataset held in memory: 8-bit greyscale images and labels 0-9.
#[derive(Clone, Debug)]
pub struct Mnist {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    kind: MnistKind,
}

/// Finds `{prefix}-{what}` in `dir`, gzipped or raw, with either the `-idx3-ubyte` or the
/// `.idx3-ubyte` spelling.
fn find_file(dir: &Path, prefix: &str, what: &str) -> Result<PathBuf> {
    let (kind, nd) = what.split_once('-').unwrap_or((what, ""));
    let candidates = [
        format!("{prefix}-{kind}-{nd}.gz"),
        format!("{prefix}-{kind}-{nd}"),
        format!("{prefix}-{kind}.{nd}.gz"),
        format!("{prefix}-{kind}.{nd}"),
    ];
    for c in &candidates {
        let p = dir.join(c);
        // Anything at the name is taken (the reader refuses a FIFO or a device by name).
        if p.exists() {
            return Ok(p);
        }
    }
    Err(DataError::missing(
        dir,
        format!("none of {candidates:?} found"),
    ))
}

impl Mnist {
    /// Loads MNIST (`kind = Digits`) or Fashion-MNIST from a directory holding the four
    /// standard files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-...`).
    pub fn load(dir: &Path, split: Split, kind: MnistKind) -> Result<Mnist> {
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let images = find_file(dir, prefix, "images-idx3-ubyte")?;
        let labels = find_file(dir, prefix, "labels-idx1-ubyte")?;
        Mnist::from_files(&images, &labels, kind)
    }

    /// Loads an image file and a label file (each raw or gzipped).
    pub fn from_files(images: &Path, labels: &Path, kind: MnistKind) -> Result<Mnist> {
        let img = read_idx(images)?;
        let lab = read_idx(labels)?;
        Mnist::from_arrays(img, images, lab, labels, kind)
    }

    /// Builds the dataset from decoded arrays (paths only for errors).
    pub fn from_arrays(
        img: IdxArray,
        images_path: &Path,
        lab: IdxArray,
        labels_path: &Path,
        kind: MnistKind,
    ) -> Result<Mnist> {
        if img.dims.len() != 3 {
            return Err(DataError::format(
                images_path,
                "magic number",
                3,
                format!(
                    "image file has {} dimensions, expected 3 (count, rows, cols)",
                    img.dims.len()
                ),
            ));
        }
        if lab.dims.len() != 1 {
            return Err(DataError::format(
                labels_path,
                "magic number",
                3,
                format!("label file has {} dimensions, expected 1", lab.dims.len()),
            ));
        }
        let (n, rows, cols) = (img.dims[0], img.dims[1], img.dims[2]);
        if rows == 0 || cols == 0 {
            return Err(DataError::format(
                images_path,
                "dimension 1",
                8,
                format!("image size {rows}x{cols} is empty"),
            ));
        }
        if lab.dims[0] != n {
            return Err(DataError::format(
                labels_path,
                "dimension 0",
                4,
                format!(
                    "{} labels for {n} images in {}",
                    lab.dims[0],
                    images_path.display()
                ),
            ));
        }
        let header = 8u64;
        if let Some(i) = lab.data.iter().position(|&l| l >= 10) {
            return Err(DataError::format(
                labels_path,
                format!("label {i}"),
                header + i as u64,
                format!("label {} is not a class 0-9", lab.data[i]),
            ));
        }
        Ok(Mnist {
            images: img.data,
            labels: lab.data,
            rows,
            cols,
            kind,
        })
    }

    /// Image height.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Image width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Which dataset this is.
    pub fn kind(&self) -> MnistKind {
        self.kind
    }

    /// The raw pixels of image `i` (`rows * cols` bytes).
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.rows.checked_mul(self.cols)?;
        self.images
            .get(i.checked_mul(n)?..i.checked_add(1)?.checked_mul(n)?)
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Number of samples per class.
    pub fn label_histogram(&self) -> Vec<usize> {
        let mut h = vec![0usize; 10];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }
}

impl Dataset for Mnist {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let shape = [self.rows, self.cols, 1];
        super::labelled_image(index, self.image(index), &self.labels, shape)
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn class_names(&self) -> Vec<String> {
        self.kind.class_names()
    }
}
