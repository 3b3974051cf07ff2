//! Image datasets and transforms.
//!
//! Images become [`Sample`]s of `[H*W, C]` tokens (row-major, channels last, values in `[0, 1]`
//! before normalisation) on the grid `[H, W]`, whose positions are implicit (`linspace(-1, 1)` per
//! axis, computed by `perceiver-pos`).
//!
//! - [`idx`]: the IDX format and the MNIST / Fashion-MNIST datasets ([`Mnist`]);
//! - [`cifar`]: CIFAR-10 binary batches ([`Cifar10`]);
//! - [`folder`]: PNG/JPEG image folders, class = sub-folder ([`ImageFolder`]);
//! - [`transforms`]: normalisation, random crop with padding, horizontal flip, the fixed pixel
//!   permutation and patching (space-to-depth);
//! - [`shapes`]: the built-in procedural dataset ([`Shapes`]);
//! - [`processor`]: the Hugging Face image processor (centre crop, PIL-exact bicubic resize,
//!   rescale, normalise: [`ImageProcessor`]).

pub mod cifar;
pub mod folder;
pub mod idx;
pub mod processor;
pub mod shapes;
pub mod transforms;

pub use cifar::Cifar10;
pub use folder::{ImageFolder, ImageFolderConfig};
pub use idx::{IdxArray, Mnist, MnistKind};
pub use processor::{pil_bicubic_resize, ImageProcessor};
pub use shapes::{Shapes, ShapesConfig};
pub use transforms::{HorizontalFlip, Normalize, PixelPermutation, RandomCrop, SpaceToDepth};

use crate::sample::Sample;

/// Sample `index` of a dataset of labelled 8-bit HWC images of shape `[height, width,
/// channels]`: `pixels` are that image's (`None` past the end, an index error), `labels` every
/// image's label.
pub(crate) fn labelled_image(
    index: usize,
    pixels: Option<&[u8]>,
    labels: &[u8],
    [height, width, channels]: [usize; 3],
) -> crate::Result<Sample> {
    let pixels = pixels.ok_or(crate::DataError::Index {
        index,
        len: labels.len(),
    })?;
    let label = labels[index] as usize;
    Ok(sample_from_u8(pixels, height, width, channels, label))
}

/// An image sample from 8-bit pixels in HWC order, scaled to `[0, 1]`.
pub fn sample_from_u8(
    pixels: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    label: usize,
) -> Sample {
    let values = pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)).collect();
    Sample::image(values, height, width, channels, label)
}
