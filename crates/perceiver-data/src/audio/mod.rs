//! Audio: WAV reading, fixed-length cropping/padding, raw-waveform patches, log-mel
//! spectrograms and the Free Spoken Digit Dataset.
//!
//! Audio samples are `[T, C]` token sequences on the grid `[T]` (implicit 1-D positions,
//! `linspace(-1, 1)` over the tokens): either `T` patches of `C` consecutive waveform samples, or `T` frames
//! of `C` log-mel bands.

pub mod features;
pub mod fsdd;
pub mod wav;

pub use features::{crop_or_pad, waveform_patches, CropMode, LogMel, MelConfig};
pub use fsdd::{AudioFeatures, Fsdd, FsddConfig, FsddItem};
pub use wav::{parse_wav, read_wav, Wav};
