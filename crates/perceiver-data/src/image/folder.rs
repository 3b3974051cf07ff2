//! Image folders: `root/<class>/<image>.{png,jpg,jpeg}`, classes sorted by name.
//!
//! Each image is decoded with the `image` crate (size limits on: at most 16,384 pixels per side
//! and 256 MiB of decoder memory, so a corrupt header cannot exhaust memory), converted to RGB
//! or greyscale, resized so the shorter side is `resize` (triangle filter) and centre-cropped.

use crate::dataset::{check_index, Dataset};
use crate::error::{DataError, Result};
use crate::io::{read_file, MAX_MEDIA_BYTES};
use crate::sample::Sample;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// How images are decoded and sized.
///
/// ```
/// use perceiver_data::image::folder::{decode_image, ImageFolderConfig};
/// use std::path::Path;
/// // An 8x4 (width x height) PNG, encoded in memory.
/// let mut png = std::io::Cursor::new(Vec::new());
/// image::RgbImage::new(8, 4).write_to(&mut png, image::ImageFormat::Png).expect("encodes");
/// let (png, path) = (png.into_inner(), Path::new("memory.png"));
/// // The default: shorter side resized to 32 (32 x 64), then a centre crop of 32 x 32, RGB.
/// let config = ImageFolderConfig::default();
/// let (pixels, h, w, c) = decode_image(&png, path, &config)?;
/// assert_eq!((h, w, c, pixels.len()), (32, 32, 3, 32 * 32 * 3));
/// // Decoded size, grey.
/// let grey = ImageFolderConfig { resize: None, crop: None, grayscale: true };
/// let (pixels, h, w, c) = decode_image(&png, path, &grey)?;
/// assert_eq!((h, w, c, pixels.len()), (4, 8, 1, 32));
/// let bad = ImageFolderConfig { crop: Some((0, 4)), ..config };
/// assert!(decode_image(&png, path, &bad).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ImageFolderConfig {
    /// Resize so the shorter side has this many pixels (keeping the aspect ratio); `None` keeps
    /// the decoded size.
    pub resize: Option<u32>,
    /// Centre crop to `(height, width)`; the image is first enlarged if it is smaller.
    pub crop: Option<(u32, u32)>,
    /// Decode to one grey channel instead of RGB.
    pub grayscale: bool,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        ImageFolderConfig {
            resize: Some(32),
            crop: Some((32, 32)),
            grayscale: false,
        }
    }
}

/// A folder of images, one sub-folder per class.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    files: Vec<(PathBuf, usize)>,
    classes: Vec<String>,
    config: ImageFolderConfig,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("png" | "jpg" | "jpeg")
    )
}

impl ImageFolder {
    /// Scans `root`: every sub-folder is a class (sorted by name), every PNG/JPEG inside it a
    /// sample (sorted by name).
    pub fn open(root: &Path, config: ImageFolderConfig) -> Result<ImageFolder> {
        let mut classes = Vec::new();
        let mut files = Vec::new();
        for (name, dir) in crate::io::class_dirs(root)? {
            let label = classes.len();
            classes.push(name);
            for f in crate::io::sorted_dir(&dir)? {
                if f.is_file() && is_image(&f) {
                    files.push((f, label));
                }
            }
        }
        if classes.is_empty() {
            return Err(DataError::missing(root, "no class sub-folders"));
        }
        Ok(ImageFolder {
            files,
            classes,
            config,
        })
    }

    /// The image files and their labels.
    pub fn files(&self) -> &[(PathBuf, usize)] {
        &self.files
    }
}

/// Decodes PNG/JPEG bytes and applies the resize and crop of `config`. Returns HWC 8-bit pixels
/// and `(height, width, channels)`. `path` is only used in errors.
pub fn decode_image(
    bytes: &[u8],
    path: &Path,
    config: &ImageFolderConfig,
) -> Result<(Vec<u8>, usize, usize, usize)> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::decode(path, e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| DataError::decode(path, e.to_string()))?;
    let img = if config.grayscale {
        DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(DataError::decode(path, "image has no pixels"));
    }
    if config.resize == Some(0) {
        return Err(DataError::invalid("resize must be positive"));
    }
    let mut short = config.resize.unwrap_or(w.min(h));
    if let Some((ch, cw)) = config.crop {
        if ch == 0 || cw == 0 {
            return Err(DataError::invalid("crop size must be positive"));
        }
        // Enlarge so the crop fits.
        let need =
            ((ch as f64 / h as f64).max(cw as f64 / w as f64) * w.min(h) as f64).ceil() as u32;
        short = short.max(need);
    }
    let img = if short != w.min(h) {
        let (nw, nh) = if w <= h {
            (short, ((h as u64 * short as u64).div_ceil(w as u64)) as u32)
        } else {
            (((w as u64 * short as u64).div_ceil(h as u64)) as u32, short)
        };
        if nw as u64 * nh as u64 > 1 << 28 {
            return Err(DataError::invalid(format!(
                "resize to {nw}x{nh} is too large"
            )));
        }
        img.resize_exact(nw, nh, FilterType::Triangle)
    } else {
        img
    };
    let img = match config.crop {
        Some((ch, cw)) => {
            let x = (img.width().saturating_sub(cw)) / 2;
            let y = (img.height().saturating_sub(ch)) / 2;
            img.crop_imm(x, y, cw.min(img.width()), ch.min(img.height()))
        }
        None => img,
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (px, c) = if config.grayscale {
        (img.into_luma8().into_raw(), 1)
    } else {
        (img.into_rgb8().into_raw(), 3)
    };
    Ok((px, h, w, c))
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        check_index(index, self.len())?;
        let (path, label) = &self.files[index];
        let bytes = read_file(path, MAX_MEDIA_BYTES)?;
        let (px, h, w, c) = decode_image(&bytes, path, &self.config)?;
        Ok(super::sample_from_u8(&px, h, w, c, *label))
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.clone()
    }
}
