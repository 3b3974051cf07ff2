//! Fixed-length clips, raw-waveform patches and log-mel spectrograms.
//!
//! The log-mel front end: a Hann window of `win_length` samples (zero-padded to `n_fft`), frames
//! every `hop` samples without centre padding, power spectrum from a real FFT (`rustfft`),
//! an HTK-mel triangular filterbank (`n_mels` filters between `f_min` and `f_max`, peak 1) and
//! `ln(mel + 1e-6)`.

use crate::error::{DataError, Result};
use crate::sample::Sample;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Where to cut a clip that is too long (short clips are zero-padded accordingly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CropMode {
    /// Keep the start; pad at the end.
    Start,
    /// Keep the middle; pad equally on both sides.
    #[default]
    Centre,
}

/// Crops or zero-pads `samples` to exactly `len` samples.
pub fn crop_or_pad(samples: &[f32], len: usize, mode: CropMode) -> Vec<f32> {
    let n = samples.len();
    if n >= len {
        let start = match mode {
            CropMode::Start => 0,
            CropMode::Centre => (n - len) / 2,
        };
        samples[start..start + len].to_vec()
    } else {
        let before = match mode {
            CropMode::Start => 0,
            CropMode::Centre => (len - n) / 2,
        };
        let mut out = vec![0.0; len];
        out[before..before + n].copy_from_slice(samples);
        out
    }
}

/// Cuts a waveform into patches of `patch` consecutive samples (the last one zero-padded):
/// a `[ceil(len / patch), patch]` sample on a 1-D grid.
pub fn waveform_patches(samples: &[f32], patch: usize, label: usize) -> Result<Sample> {
    if patch == 0 {
        return Err(DataError::invalid("patch size must be positive"));
    }
    let tokens = samples.len().div_ceil(patch).max(1);
    let mut values = samples.to_vec();
    values.resize(tokens * patch, 0.0);
    Ok(Sample::on_grid(values, &[tokens], patch, label))
}

/// Log-mel spectrogram parameters.
///
/// ```
/// use perceiver_data::audio::{LogMel, MelConfig};
/// // The default: 8 kHz, 256-point FFT, hop 80, 40 bands. One second gives 97 frames.
/// let mel = LogMel::new(MelConfig::default())?;
/// assert_eq!(mel.num_frames(8000), 1 + (8000 - 256) / 80);
/// let sample = mel.sample(&vec![0.0; 8000], 3);
/// assert_eq!((sample.grid, sample.channels), (Some(vec![97]), 40));
/// assert_eq!(mel.filterbank().len(), 40);
/// // The filters must stay below the Nyquist frequency.
/// let bad = MelConfig { f_max: 6000.0, ..MelConfig::default() };
/// assert!(LogMel::new(bad).is_err());
/// # Ok::<(), perceiver_data::DataError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MelConfig {
    /// Sample rate of the input in Hz.
    pub sample_rate: u32,
    /// FFT size.
    pub n_fft: usize,
    /// Window length (at most `n_fft`).
    pub win_length: usize,
    /// Hop between frames.
    pub hop: usize,
    /// Number of mel bands.
    pub n_mels: usize,
    /// Lowest filter edge in Hz.
    pub f_min: f32,
    /// Highest filter edge in Hz (at most the Nyquist frequency).
    pub f_max: f32,
}

impl Default for MelConfig {
    /// 8 kHz speech: 25 ms windows every 10 ms, 256-point FFT, 40 mel bands up to 4 kHz.
    fn default() -> Self {
        MelConfig {
            sample_rate: 8000,
            n_fft: 256,
            win_length: 200,
            hop: 80,
            n_mels: 40,
            f_min: 0.0,
            f_max: 4000.0,
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// A log-mel spectrogram extractor (window, FFT plan and filterbank built once; shareable
/// between threads).
#[derive(Clone)]
pub struct LogMel {
    cfg: MelConfig,
    window: Vec<f32>,
    /// Per filter: first FFT bin and weights.
    filters: Vec<(usize, Vec<f32>)>,
    fft: Arc<dyn Fft<f32>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("cfg", &self.cfg).finish()
    }
}

impl LogMel {
    /// Builds the extractor, checking the configuration.
    pub fn new(cfg: MelConfig) -> Result<Self> {
        let nyquist = cfg.sample_rate as f32 / 2.0;
        if cfg.n_fft < 2 || cfg.win_length == 0 || cfg.win_length > cfg.n_fft {
            return Err(DataError::invalid(format!(
                "log-mel: need 0 < win_length ({}) <= n_fft ({}), n_fft >= 2",
                cfg.win_length, cfg.n_fft
            )));
        }
        if cfg.hop == 0 || cfg.n_mels == 0 || cfg.sample_rate == 0 {
            return Err(DataError::invalid(
                "log-mel: hop, n_mels and sample_rate must be positive",
            ));
        }
        if !(cfg.f_min >= 0.0 && cfg.f_min < cfg.f_max && cfg.f_max <= nyquist) {
            return Err(DataError::invalid(format!(
                "log-mel: need 0 <= f_min ({}) < f_max ({}) <= {nyquist}",
                cfg.f_min, cfg.f_max
            )));
        }
        // Hann window (periodic), centred in the FFT frame.
        let mut window = vec![0.0f32; cfg.n_fft];
        let off = (cfg.n_fft - cfg.win_length) / 2;
        for i in 0..cfg.win_length {
            let w =
                0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / cfg.win_length as f64).cos();
            window[off + i] = w as f32;
        }
        let n_bins = cfg.n_fft / 2 + 1;
        let (m_lo, m_hi) = (hz_to_mel(cfg.f_min as f64), hz_to_mel(cfg.f_max as f64));
        let edges: Vec<f64> = (0..cfg.n_mels + 2)
            .map(|i| mel_to_hz(m_lo + (m_hi - m_lo) * i as f64 / (cfg.n_mels + 1) as f64))
            .collect();
        let bin_hz = cfg.sample_rate as f64 / cfg.n_fft as f64;
        let mut filters = Vec::with_capacity(cfg.n_mels);
        for m in 0..cfg.n_mels {
            let (lo, c, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let mut first = None;
            let mut w = Vec::new();
            for k in 0..n_bins {
                let f = k as f64 * bin_hz;
                let v = ((f - lo) / (c - lo)).min((hi - f) / (hi - c)).max(0.0);
                if v > 0.0 {
                    if first.is_none() {
                        first = Some(k);
                    }
                    // Fill any gap so weights stay contiguous from `first`.
                    let start = first.unwrap_or(k);
                    w.resize(k - start, 0.0);
                    w.push(v as f32);
                }
            }
            if w.is_empty() {
                // A filter narrower than one bin: give it the nearest bin.
                let k = ((c / bin_hz).round() as usize).min(n_bins - 1);
                filters.push((k, vec![1.0]));
            } else {
                filters.push((first.unwrap_or(0), w));
            }
        }
        let fft = FftPlanner::<f32>::new().plan_fft_forward(cfg.n_fft);
        Ok(LogMel {
            cfg,
            window,
            filters,
            fft,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// Frames produced for an input of `len` samples (inputs shorter than `n_fft` are padded
    /// to one frame).
    pub fn num_frames(&self, len: usize) -> usize {
        if len <= self.cfg.n_fft {
            1
        } else {
            1 + (len - self.cfg.n_fft) / self.cfg.hop
        }
    }

    /// The filterbank as a dense `[n_mels, n_fft / 2 + 1]` matrix (for inspection and tests).
    pub fn filterbank(&self) -> Vec<Vec<f32>> {
        let n_bins = self.cfg.n_fft / 2 + 1;
        self.filters
            .iter()
            .map(|(start, w)| {
                let mut row = vec![0.0; n_bins];
                for (i, &v) in w.iter().enumerate() {
                    if let Some(r) = row.get_mut(start + i) {
                        *r = v;
                    }
                }
                row
            })
            .collect()
    }

    /// The log-mel spectrogram of `samples`: `[frames, n_mels]` row-major and `frames`.
    pub fn compute(&self, samples: &[f32]) -> (Vec<f32>, usize) {
        let n_fft = self.cfg.n_fft;
        let frames = self.num_frames(samples.len());
        let n_bins = n_fft / 2 + 1;
        let mut out = Vec::with_capacity(frames * self.cfg.n_mels);
        let mut buf = vec![Complex::new(0.0f32, 0.0); n_fft];
        let mut scratch = vec![Complex::new(0.0f32, 0.0); self.fft.get_inplace_scratch_len()];
        let mut power = vec![0.0f32; n_bins];
        for t in 0..frames {
            let start = t * self.cfg.hop;
            for (i, b) in buf.iter_mut().enumerate() {
                let x = samples.get(start + i).copied().unwrap_or(0.0);
                *b = Complex::new(x * self.window[i], 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (k, p) in power.iter_mut().enumerate() {
                *p = buf[k].norm_sqr();
            }
            for (first, w) in &self.filters {
                let mut e = 0.0f32;
                for (i, &v) in w.iter().enumerate() {
                    e += v * power.get(first + i).copied().unwrap_or(0.0);
                }
                out.push((e + 1e-6).ln());
            }
        }
        (out, frames)
    }

    /// The log-mel spectrogram as a `[frames, n_mels]` sample on a 1-D grid.
    pub fn sample(&self, samples: &[f32], label: usize) -> Sample {
        let (values, frames) = self.compute(samples);
        Sample::on_grid(values, &[frames], self.cfg.n_mels, label)
    }
}
