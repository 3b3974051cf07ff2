//! The Free Spoken Digit Dataset: `recordings/{digit}_{speaker}_{index}.wav`, 8 kHz mono.
//!
//! The standard split puts recordings with index 0-4 in the test set and 5-49 in the training
//! set (300 / 2,700 clips in v1.0.10). Each clip is cropped or padded to a fixed length and
//! turned into waveform patches or a log-mel spectrogram.

use super::features::{crop_or_pad, waveform_patches, CropMode, LogMel, MelConfig};
use super::wav::read_wav;
use crate::dataset::{check_index, Dataset, Split};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use std::path::{Path, PathBuf};

/// How a clip is turned into tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioFeatures {
    /// Raw waveform cut into patches of `patch` samples.
    Waveform {
        /// Samples per patch (token).
        patch: usize,
    },
    /// Log-mel spectrogram frames.
    LogMel(MelConfig),
}

/// FSDD options.
///
/// ```
/// use perceiver_data::audio::{waveform_patches, AudioFeatures, Fsdd, FsddConfig, LogMel};
/// use perceiver_data::Split;
/// // 1-second clips as log-mel spectrograms: 97 frames of 40 bands.
/// let config = FsddConfig::log_mel(Split::Train);
/// assert_eq!(config.length, 8000);
/// let AudioFeatures::LogMel(mel) = &config.features else { unreachable!() };
/// assert_eq!(LogMel::new(mel.clone())?.num_frames(config.length), 97);
/// // Or as 125 raw-waveform patches of 64 samples.
/// let waveform = FsddConfig::waveform(Split::Test);
/// assert_eq!(waveform.features, AudioFeatures::Waveform { patch: 64 });
/// let tokens = waveform_patches(&vec![0.0; waveform.length], 64, 7)?;
/// assert_eq!((tokens.grid, tokens.channels), (Some(vec![125]), 64));
/// // A zero clip length is refused.
/// assert!(Fsdd::from_items(Vec::new(), FsddConfig { length: 0, ..config }).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FsddConfig {
    /// Which split.
    pub split: Split,
    /// Clip length in samples after cropping/padding (8,000 = 1 s).
    pub length: usize,
    /// Where long clips are cut.
    pub crop: CropMode,
    /// Token representation.
    pub features: AudioFeatures,
}

impl FsddConfig {
    /// 1-second clips as 40-band log-mel spectrograms (97 frames).
    pub fn log_mel(split: Split) -> Self {
        FsddConfig {
            split,
            length: 8000,
            crop: CropMode::Centre,
            features: AudioFeatures::LogMel(MelConfig::default()),
        }
    }

    /// 1-second clips as 125 raw-waveform patches of 64 samples.
    pub fn waveform(split: Split) -> Self {
        FsddConfig {
            split,
            length: 8000,
            crop: CropMode::Centre,
            features: AudioFeatures::Waveform { patch: 64 },
        }
    }
}

/// One recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsddItem {
    /// The WAV file.
    pub path: PathBuf,
    /// The spoken digit (the label).
    pub digit: usize,
    /// The speaker's name.
    pub speaker: String,
    /// The repetition index (0-49).
    pub index: usize,
}

/// Parses `{digit}_{speaker}_{index}.wav` into `(digit, speaker, index)`.
pub fn parse_name(name: &str) -> Option<(usize, String, usize)> {
    let stem = name.strip_suffix(".wav")?;
    let mut parts = stem.splitn(2, '_');
    let digit: usize = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let (speaker, index) = rest.rsplit_once('_')?;
    let index: usize = index.parse().ok()?;
    if digit > 9 || speaker.is_empty() {
        return None;
    }
    Some((digit, speaker.to_string(), index))
}

/// The split of a recording index: 0-4 is test, the rest train.
pub fn split_of(index: usize) -> Split {
    if index <= 4 {
        Split::Test
    } else {
        Split::Train
    }
}

/// Lists every recording under `dir` (the dataset root holding `recordings/`, or the
/// `recordings/` folder itself), sorted by file name, both splits.
pub fn list_recordings(dir: &Path) -> Result<Vec<FsddItem>> {
    let rec = if dir.join("recordings").is_dir() {
        dir.join("recordings")
    } else {
        dir.to_path_buf()
    };
    let rd = std::fs::read_dir(&rec).map_err(|e| DataError::io(&rec, e))?;
    let mut items = Vec::new();
    for e in rd {
        let path = e.map_err(|e| DataError::io(&rec, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".wav") {
            continue;
        }
        let (digit, speaker, index) = parse_name(name).ok_or_else(|| {
            DataError::format(
                &path,
                "file name",
                0,
                "expected {digit}_{speaker}_{index}.wav",
            )
        })?;
        items.push(FsddItem {
            path,
            digit,
            speaker,
            index,
        });
    }
    items.sort_by(|a, b| a.path.cmp(&b.path));
    if items.is_empty() {
        return Err(DataError::missing(&rec, "no FSDD recordings (*.wav)"));
    }
    Ok(items)
}

/// The Free Spoken Digit Dataset (clips are read from disk on each `get`).
#[derive(Clone, Debug)]
pub struct Fsdd {
    items: Vec<FsddItem>,
    cfg: FsddConfig,
    logmel: Option<LogMel>,
}

impl Fsdd {
    /// Opens the split `cfg.split` of the dataset in `dir`.
    pub fn open(dir: &Path, cfg: FsddConfig) -> Result<Fsdd> {
        let items = list_recordings(dir)?
            .into_iter()
            .filter(|it| split_of(it.index) == cfg.split)
            .collect();
        Fsdd::from_items(items, cfg)
    }

    /// A dataset over the given recordings.
    pub fn from_items(items: Vec<FsddItem>, cfg: FsddConfig) -> Result<Fsdd> {
        if cfg.length == 0 {
            return Err(DataError::invalid("FSDD clip length must be positive"));
        }
        let logmel = match &cfg.features {
            AudioFeatures::LogMel(m) => Some(LogMel::new(m.clone())?),
            AudioFeatures::Waveform { patch: 0 } => {
                return Err(DataError::invalid("patch size must be positive"))
            }
            AudioFeatures::Waveform { .. } => None,
        };
        Ok(Fsdd { items, cfg, logmel })
    }

    /// The recordings, in sample order.
    pub fn items(&self) -> &[FsddItem] {
        &self.items
    }

    /// The configuration.
    pub fn config(&self) -> &FsddConfig {
        &self.cfg
    }

    /// The fixed-length waveform of sample `index`.
    pub fn clip(&self, index: usize) -> Result<Vec<f32>> {
        check_index(index, self.items.len())?;
        let item = &self.items[index];
        let wav = read_wav(&item.path)?;
        if let AudioFeatures::LogMel(m) = &self.cfg.features {
            if wav.sample_rate != m.sample_rate {
                return Err(DataError::format(
                    &item.path,
                    "fmt sample rate",
                    24,
                    format!(
                        "{} Hz, the log-mel front end expects {} Hz",
                        wav.sample_rate, m.sample_rate
                    ),
                ));
            }
        }
        Ok(crop_or_pad(&wav.samples, self.cfg.length, self.cfg.crop))
    }
}

impl Dataset for Fsdd {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let clip = self.clip(index)?;
        let label = self.items[index].digit;
        match (&self.cfg.features, &self.logmel) {
            (_, Some(lm)) => Ok(lm.sample(&clip, label)),
            (AudioFeatures::Waveform { patch }, None) => waveform_patches(&clip, *patch, label),
            (AudioFeatures::LogMel(_), None) => Err(DataError::invalid("log-mel not initialised")),
        }
    }

    fn num_classes(&self) -> usize {
        10
    }

    fn class_names(&self) -> Vec<String> {
        (0..10).map(|d| d.to_string()).collect()
    }
}
