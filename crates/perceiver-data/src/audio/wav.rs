//! WAV files, decoded with the `hound` crate after a bounds-checked walk of the RIFF chunks.
//!
//! The walk checks every chunk size against the file length and validates the `fmt ` fields
//! (PCM 8/16/24/32-bit integer or 32/64-bit IEEE float, 1-64 channels, block alignment) before
//! `hound` sees the bytes, so a corrupt header becomes a [`DataError::Format`] naming the field
//! and its offset. Float samples are decoded here; a NaN or infinite sample is an error naming
//! the file, the frame, the channel and the byte offset. Multi-channel audio is mixed down to
//! mono; integer samples are scaled to `[-1, 1]`.

use crate::error::{DataError, Result};
use crate::io::{read_file, ByteReader, MAX_MEDIA_BYTES};
use std::io::Cursor;
use std::path::Path;

/// A decoded WAV file, mixed down to mono.
#[derive(Clone, Debug, PartialEq)]
pub struct Wav {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels in the file (before mixing down).
    pub channels: u16,
    /// Bits per sample in the file.
    pub bits_per_sample: u16,
    /// Mono samples in `[-1, 1]`.
    pub samples: Vec<f32>,
}

/// Reads and decodes a WAV file.
pub fn read_wav(path: &Path) -> Result<Wav> {
    let bytes = read_file(path, MAX_MEDIA_BYTES)?;
    parse_wav(&bytes, path)
}

struct Fmt {
    float: bool,
    channels: u16,
    rate: u32,
    block_align: u16,
    bits: u16,
}

/// Validates and decodes WAV bytes; `path` is only used in errors.
pub fn parse_wav(bytes: &[u8], path: &Path) -> Result<Wav> {
    let mut r = ByteReader::new(bytes, path);
    if &r.array::<4>("RIFF id")? != b"RIFF" {
        return Err(r.err_at("RIFF id", 0, "not a RIFF file (expected \"RIFF\")"));
    }
    r.u32_le("RIFF size")?;
    if &r.array::<4>("WAVE id")? != b"WAVE" {
        return Err(r.err_at("WAVE id", 8, "RIFF file is not WAVE"));
    }
    let mut fmt: Option<Fmt> = None;
    let mut data: Option<(usize, usize)> = None;
    while r.remaining() >= 8 {
        let at = r.pos();
        let id = r.array::<4>("chunk id")?;
        let size = r.u32_le("chunk size")? as usize;
        let name = String::from_utf8_lossy(&id).into_owned();
        let body = r.pos();
        if size > r.remaining() {
            return Err(r.err_at(
                &format!("{name:?} chunk size"),
                at + 4,
                format!(
                    "truncated: chunk declares {size} bytes, only {} left",
                    r.remaining()
                ),
            ));
        }
        match &id {
            b"fmt " => {
                if size < 16 {
                    return Err(r.err_at("fmt chunk size", at + 4, format!("{size} < 16")));
                }
                let tag = r.u16_le("fmt format tag")?;
                let channels = r.u16_le("fmt channels")?;
                let rate = r.u32_le("fmt sample rate")?;
                let _byte_rate = r.u32_le("fmt byte rate")?;
                let block_align = r.u16_le("fmt block align")?;
                let bits = r.u16_le("fmt bits per sample")?;
                if !matches!(tag, 1 | 3 | 0xFFFE) {
                    return Err(r.err_at(
                        "fmt format tag",
                        body,
                        format!("format {tag:#06x} is not PCM, IEEE float or extensible"),
                    ));
                }
                if tag == 0xFFFE && size < 40 {
                    return Err(r.err_at(
                        "fmt chunk size",
                        at + 4,
                        format!("extensible format needs 40 bytes, chunk has {size}"),
                    ));
                }
                // The sample format: the tag, or for the extensible format the first two bytes
                // of its sub-format GUID.
                let float = if tag == 0xFFFE {
                    r.seek(body + 24, "fmt sub-format")?;
                    match r.u16_le("fmt sub-format")? {
                        1 => false,
                        3 => true,
                        sub => {
                            return Err(r.err_at(
                                "fmt sub-format",
                                body + 24,
                                format!("sub-format {sub:#06x} is not PCM or IEEE float"),
                            ))
                        }
                    }
                } else {
                    tag == 3
                };
                if channels == 0 || channels > 64 {
                    return Err(r.err_at("fmt channels", body + 2, format!("{channels} channels")));
                }
                if rate == 0 || rate > 1_000_000 {
                    return Err(r.err_at("fmt sample rate", body + 4, format!("{rate} Hz")));
                }
                let ok_bits = if float {
                    matches!(bits, 32 | 64)
                } else {
                    matches!(bits, 8 | 16 | 24 | 32)
                };
                if !ok_bits {
                    return Err(r.err_at(
                        "fmt bits per sample",
                        body + 14,
                        format!("{bits} bits is not supported for format {tag:#06x}"),
                    ));
                }
                if block_align as u32 != channels as u32 * (bits as u32 / 8) {
                    return Err(r.err_at(
                        "fmt block align",
                        body + 12,
                        format!(
                            "{block_align} bytes, expected {channels} x {} bytes",
                            bits / 8
                        ),
                    ));
                }
                fmt = Some(Fmt {
                    float,
                    channels,
                    rate,
                    block_align,
                    bits,
                });
            }
            b"data" => {
                data = Some((body, size));
                break;
            }
            _ => {}
        }
        let next = body + size + (size & 1);
        r.seek(next.min(bytes.len()), &format!("{name:?} chunk"))?;
    }
    let fmt = fmt.ok_or_else(|| r.err_at("fmt chunk", 12, "no \"fmt \" chunk before the data"))?;
    let (data_at, data_len) =
        data.ok_or_else(|| r.err_at("data chunk", r.pos(), "no \"data\" chunk"))?;
    if data_len % fmt.block_align as usize != 0 {
        return Err(r.err_at(
            "data chunk size",
            data_at - 4,
            format!(
                "{data_len} bytes is not a whole number of {}-byte frames",
                fmt.block_align
            ),
        ));
    }
    let data = r.take_at(data_at, data_len, "data chunk")?;
    let interleaved = if fmt.float {
        decode_float(data, &fmt, data_at, path)?
    } else {
        // Hand hound exactly the validated prefix (header + data chunk).
        let prefix = &bytes[..data_at + data_len];
        let decoded = std::panic::catch_unwind(|| decode_with_hound(prefix));
        match decoded {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(DataError::decode(path, format!("wav: {e}"))),
            Err(_) => return Err(DataError::decode(path, "wav decoder panicked")),
        }
    };
    let ch = fmt.channels as usize;
    let samples = if ch == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect()
    };
    Ok(Wav {
        sample_rate: fmt.rate,
        channels: fmt.channels,
        bits_per_sample: fmt.bits,
        samples,
    })
}

/// Little-endian IEEE floats (32 or 64 bits) of the data chunk at `data_at`; the first NaN or
/// infinite value is an error naming the frame, the channel and its byte offset.
fn decode_float(data: &[u8], fmt: &Fmt, data_at: usize, path: &Path) -> Result<Vec<f32>> {
    let width = fmt.bits as usize / 8;
    let mut out = Vec::new();
    out.try_reserve_exact(data.len() / width).map_err(|_| {
        DataError::format(
            path,
            "data chunk",
            data_at as u64,
            "too many samples to hold",
        )
    })?;
    for (i, b) in data.chunks_exact(width).enumerate() {
        let v = match *b {
            [a, b, c, d] => f32::from_le_bytes([a, b, c, d]) as f64,
            [a, b, c, d, e, f, g, h] => f64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => {
                return Err(DataError::format(
                    path,
                    "fmt bits per sample",
                    data_at as u64,
                    format!("{} bits is not a float width", fmt.bits),
                ))
            }
        };
        if !v.is_finite() || v.abs() > f32::MAX as f64 {
            let ch = fmt.channels as usize;
            return Err(DataError::format(
                path,
                format!("sample {} (channel {})", i / ch, i % ch),
                (data_at + i * width) as u64,
                format!("value {v} is not finite (sample {i} of the data chunk)"),
            ));
        }
        out.push(v as f32);
    }
    Ok(out)
}

/// Integer PCM samples scaled to `[-1, 1]`.
fn decode_with_hound(bytes: &[u8]) -> std::result::Result<Vec<f32>, hound::Error> {
    let mut reader = hound::WavReader::new(Cursor::new(bytes))?;
    let spec = reader.spec();
    let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
    reader
        .samples::<i32>()
        .map(|s| s.map(|v| v as f32 * scale))
        .collect()
}
