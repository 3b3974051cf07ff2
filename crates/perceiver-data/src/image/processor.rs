//! The Hugging Face `PerceiverImageProcessor`, as `preprocessor_config.json` describes it:
//! centre crop, bicubic resize, rescale, normalise.
//!
//! The steps, on 8-bit RGB pixels:
//! 1. **Centre crop** (`do_center_crop`) of `size / crop_size` times the shorter side, per axis
//!    (224/256 of it with the published settings), truncated to whole pixels and centred with
//!    the top-left offset `(side - crop) / 2` rounded down.
//! 2. **Resize** (`do_resize`) to `size` with PIL's bicubic filter, as PIL computes it
//!    ([`pil_bicubic_resize`]): separable passes (horizontal, then vertical), the filter's
//!    support widened by the reduction factor, `a = -0.5`, fixed-point weights and 8-bit rounding
//!    after each pass.
//! 3. **Rescale** (`do_rescale`) by `rescale_factor` (1/255).
//! 4. **Normalise** (`do_normalize`) with `image_mean` and `image_std` per channel.
//!
//! The result is channels last, `[height, width, 3]`, the layout the model takes.

use crate::error::{DataError, Result};
use serde_json::Value;
use std::path::Path;

/// The settings of a `PerceiverImageProcessor` ([`ImageProcessor::from_json`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessor {
    /// Crop a centre part of the image first.
    pub do_center_crop: bool,
    /// `crop_size` (height, width): with `size`, sets the fraction of the shorter side kept.
    pub crop_size: (usize, usize),
    /// Resize to `size`.
    pub do_resize: bool,
    /// The output size (height, width).
    pub size: (usize, usize),
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// The rescale factor (1/255).
    pub rescale_factor: f32,
    /// Normalise per channel.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
}

impl Default for ImageProcessor {
    /// The published checkpoints' settings: crop 256, size 224, ImageNet mean and std.
    fn default() -> Self {
        ImageProcessor {
            do_center_crop: true,
            crop_size: (256, 256),
            do_resize: true,
            size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

fn bad(path: &Path, field: &str, msg: impl Into<String>) -> DataError {
    DataError::format(path, field, 0, msg)
}

impl ImageProcessor {
    /// Reads `preprocessor_config.json` text; absent keys keep the [`Default`] values. `path`
    /// names the file in errors. Only bicubic resampling (`resample` 3) is supported.
    pub fn from_json(text: &str, path: &Path) -> Result<ImageProcessor> {
        let v: Value = serde_json::from_str(text).map_err(|e| bad(path, "JSON", e.to_string()))?;
        let mut p = ImageProcessor::default();
        let flag = |key: &str, dst: &mut bool| -> Result<()> {
            match v.get(key) {
                None => Ok(()),
                Some(Value::Bool(b)) => {
                    *dst = *b;
                    Ok(())
                }
                Some(other) => Err(bad(
                    path,
                    key,
                    format!("expected true or false, got {other}"),
                )),
            }
        };
        flag("do_center_crop", &mut p.do_center_crop)?;
        flag("do_resize", &mut p.do_resize)?;
        flag("do_rescale", &mut p.do_rescale)?;
        flag("do_normalize", &mut p.do_normalize)?;
        let hw = |key: &str, dst: &mut (usize, usize)| -> Result<()> {
            let Some(s) = v.get(key) else { return Ok(()) };
            let side = |k: &str| {
                s.get(k)
                    .and_then(Value::as_u64)
                    .filter(|&x| (1..=65_536).contains(&x))
                    .map(|x| x as usize)
            };
            match (side("height"), side("width"), s.as_u64()) {
                (Some(h), Some(w), _) => *dst = (h, w),
                (_, _, Some(x)) if (1..=65_536).contains(&x) => *dst = (x as usize, x as usize),
                _ => {
                    return Err(bad(
                        path,
                        key,
                        format!("expected {{\"height\", \"width\"}} in 1..=65536, got {s}"),
                    ))
                }
            }
            Ok(())
        };
        hw("crop_size", &mut p.crop_size)?;
        hw("size", &mut p.size)?;
        if let Some(r) = v.get("resample") {
            if r.as_u64() != Some(3) {
                return Err(bad(
                    path,
                    "resample",
                    format!("only bicubic (3) is supported, got {r}"),
                ));
            }
        }
        if let Some(f) = v.get("rescale_factor") {
            p.rescale_factor = f.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                bad(
                    path,
                    "rescale_factor",
                    format!("expected a number, got {f}"),
                )
            })? as f32;
        }
        let triple = |key: &str, dst: &mut [f32; 3], positive: bool| -> Result<()> {
            let Some(a) = v.get(key) else { return Ok(()) };
            let xs: Option<Vec<f32>> = a
                .as_array()
                .filter(|a| a.len() == 3)
                .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
            match xs {
                Some(xs) if xs.iter().all(|x| x.is_finite() && (!positive || *x > 0.0)) => {
                    dst.copy_from_slice(&xs);
                    Ok(())
                }
                _ => Err(bad(
                    path,
                    key,
                    format!("expected 3 finite numbers, got {a}"),
                )),
            }
        };
        triple("image_mean", &mut p.mean, false)?;
        triple("image_std", &mut p.std, true)?;
        Ok(p)
    }

    /// Reads a PNG or JPEG file (at most 256 MiB, a regular file) and processes it
    /// ([`ImageProcessor::process`]).
    pub fn process_file(&self, path: &Path) -> Result<(Vec<f32>, usize, usize)> {
        let bytes = crate::io::read_file(path, 256 << 20)?;
        let cfg = super::ImageFolderConfig {
            resize: None,
            crop: None,
            grayscale: false,
        };
        let (rgb, h, w, _) = super::folder::decode_image(&bytes, path, &cfg)?;
        self.process(&rgb, h, w)
    }

    /// Processes 8-bit RGB pixels `[height, width, 3]`: returns the model input `[size.0,
    /// size.1, 3]` (channels last) and its height and width.
    pub fn process(
        &self,
        rgb: &[u8],
        height: usize,
        width: usize,
    ) -> Result<(Vec<f32>, usize, usize)> {
        if height == 0 || width == 0 || rgb.len() != height * width * 3 {
            return Err(DataError::Invalid(format!(
                "image processor: {} bytes for a {height} x {width} RGB image",
                rgb.len()
            )));
        }
        let (mut img, mut h, mut w) = (rgb.to_vec(), height, width);
        if self.do_center_crop {
            let min = h.min(w) as f64;
            // Truncated as `int()` does.
            let ch = ((self.size.0 as f64 / self.crop_size.0 as f64) * min) as usize;
            let cw = ((self.size.1 as f64 / self.crop_size.1 as f64) * min) as usize;
            if ch >= 1 && cw >= 1 && ch <= h && cw <= w {
                let (top, left) = ((h - ch) / 2, (w - cw) / 2);
                let mut out = Vec::with_capacity(ch * cw * 3);
                for y in top..top + ch {
                    out.extend_from_slice(&img[(y * w + left) * 3..(y * w + left + cw) * 3]);
                }
                (img, h, w) = (out, ch, cw);
            }
        }
        if self.do_resize && (h, w) != self.size {
            img = pil_bicubic_resize(&img, h, w, 3, self.size.0, self.size.1);
            (h, w) = self.size;
        }
        let scale = if self.do_rescale {
            self.rescale_factor
        } else {
            1.0
        };
        let out = img
            .chunks_exact(3)
            .flat_map(|px| {
                (0..3).map(move |c| {
                    let x = px[c] as f32 * scale;
                    if self.do_normalize {
                        (x - self.mean[c]) / self.std[c]
                    } else {
                        x
                    }
                })
            })
            .collect();
        Ok((out, h, w))
    }
}

/// PIL's bicubic kernel (`a = -0.5`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Bits of PIL's fixed-point weights for 8-bit images.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// For each output index along an axis of `input` samples resized to `output`: the first input
/// index and the fixed-point weights (PIL's `precompute_coeffs` and `normalize_coeffs_8bpc`).
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let ws: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| bicubic((x as f64 - center + 0.5) / filterscale))
                .collect();
            let total: f64 = ws.iter().sum();
            let fixed = ws
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let v = w * (1u32 << PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

/// One separable pass along an axis: `get(i, k)` is the input sample `k` of output line `i`
/// and channel; returns the rounded, clipped 8-bit result.
fn pass(acc_init: i64, weights: &[i32], samples: impl Iterator<Item = u8>) -> u8 {
    let ss = weights
        .iter()
        .zip(samples)
        .fold(acc_init, |a, (&w, s)| a + w as i64 * s as i64);
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes 8-bit pixels `[h, w, channels]` to `[out_h, out_w, channels]` exactly as PIL's
/// `Image.resize(..., BICUBIC)` (without `reducing_gap`): a horizontal pass, then a vertical
/// one, each with 8-bit rounding.
pub fn pil_bicubic_resize(
    src: &[u8],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<u8> {
    let round = 1i64 << (PRECISION_BITS - 1);
    let horizontal = if out_w != w {
        let cx = coefficients(w, out_w);
        let mut tmp = vec![0u8; h * out_w * channels];
        for y in 0..h {
            for (x, (x0, ws)) in cx.iter().enumerate() {
                for c in 0..channels {
                    let samples = (0..ws.len()).map(|k| src[(y * w + x0 + k) * channels + c]);
                    tmp[(y * out_w + x) * channels + c] = pass(round, ws, samples);
                }
            }
        }
        tmp
    } else {
        src.to_vec()
    };
    if out_h == h {
        return horizontal;
    }
    let cy = coefficients(h, out_h);
    let mut out = vec![0u8; out_h * out_w * channels];
    for (y, (y0, ws)) in cy.iter().enumerate() {
        for x in 0..out_w {
            for c in 0..channels {
                let samples =
                    (0..ws.len()).map(|k| horizontal[((y0 + k) * out_w + x) * channels + c]);
                out[(y * out_w + x) * channels + c] = pass(round, ws, samples);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_constants_and_identity() {
        let img = vec![77u8; 10 * 7 * 3];
        assert_eq!(
            pil_bicubic_resize(&img, 10, 7, 3, 4, 5),
            vec![77u8; 4 * 5 * 3]
        );
        assert_eq!(
            pil_bicubic_resize(&img, 10, 7, 3, 23, 31),
            vec![77u8; 23 * 31 * 3]
        );
        let ramp: Vec<u8> = (0..8 * 8).map(|i| (i * 3) as u8).collect();
        assert_eq!(pil_bicubic_resize(&ramp, 8, 8, 1, 8, 8), ramp);
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 3), (256, 224), (7, 20), (1, 5)] {
            for (_, ws) in coefficients(i, o) {
                let s: i64 = ws.iter().map(|&w| w as i64).sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= ws.len() as i64,
                    "{i}->{o}: {s}"
                );
            }
        }
    }

    #[test]
    fn settings_are_read_and_checked() {
        let p = Path::new("preprocessor_config.json");
        let c = ImageProcessor::from_json(
            r#"{"crop_size": {"height": 32, "width": 32}, "size": {"height": 16, "width": 16}, "resample": 3}"#,
            p,
        )
        .unwrap();
        assert_eq!((c.crop_size, c.size), ((32, 32), (16, 16)));
        for bad in [
            r#"{"resample": 2}"#,
            r#"{"size": {"height": 0, "width": 3}}"#,
            r#"{"image_std": [1, 0, 1]}"#,
            r#"{"do_resize": "yes"}"#,
            "[",
        ] {
            let e = ImageProcessor::from_json(bad, p).unwrap_err().to_string();
            assert!(e.contains("preprocessor_config.json"), "{bad}: {e}");
        }
        let (x, h, w) = c.process(&[200u8; 40 * 30 * 3], 40, 30).unwrap();
        assert_eq!((x.len(), h, w), (16 * 16 * 3, 16, 16));
        let want = (200.0 / 255.0 - 0.485) / 0.229;
        assert!((x[0] - want).abs() < 1e-5);
        assert!(c.process(&[0u8; 5], 2, 2).is_err());
    }
}
