//! Helpers shared by the integration tests: locating the shared data and writing small files
//! in every supported format.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// `$PERCEIVER_DATA/<sub>` or `<workspace>/../shared/data/<sub>` ([`perceiver_data::shared_data_dir`]).
/// Returns `None` (after printing a skip notice) when it is absent, except under `CI=true` (or
/// `CI=1`), where missing data fails the test.
///
/// The same rule as the workspace tests' helper (`tests/lib.rs` in the `perceiver-tests` crate),
/// repeated here because this crate cannot depend on that one (it depends on this one).
pub fn shared(sub: &str) -> Option<PathBuf> {
    let dir = perceiver_data::shared_data_dir().join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    let missing = format!(
        "shared data {} not found (set PERCEIVER_DATA)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{missing} (CI=true: the shared material is required)");
    }
    eprintln!("SKIPPED: {missing}");
    None
}

/// A fresh temporary directory under the target directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("{name}-{}-{nonce}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// IDX bytes of unsigned bytes with `dims`.
pub fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Gzip-compresses bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes a tiny MNIST-style pair of files (n images of rows x cols) into `dir` with `prefix`;
/// image i has every pixel equal to i, label i % 10.
pub fn write_mnist(dir: &Path, prefix: &str, n: usize, rows: u32, cols: u32, gz: bool) {
    let px: Vec<u8> = (0..n)
        .flat_map(|i| vec![i as u8; (rows * cols) as usize])
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let img = idx_bytes(&[n as u32, rows, cols], &px);
    let lab = idx_bytes(&[n as u32], &labels);
    let (img, lab, ext) = if gz {
        (gzip(&img), gzip(&lab), ".gz")
    } else {
        (img, lab, "")
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), lab).unwrap();
}

/// A CIFAR-10 batch of `n` records: record i has label i % 10 and R = i, G = 100 + i,
/// B = 200 - i in every pixel.
pub fn cifar_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push((i % 10) as u8);
        out.extend(vec![i as u8; 1024]);
        out.extend(vec![100 + i as u8; 1024]);
        out.extend(vec![200 - i as u8; 1024]);
    }
    out
}

/// A 16-bit mono WAV of `samples` at `rate`.
pub fn wav_bytes(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }
    cur.into_inner()
}

/// An image file of `w x h` RGB pixels in `format`; pixel (x, y) = (x * 10, y * 10, 7).
fn image_bytes(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
    let mut cur = std::io::Cursor::new(Vec::new());
    img.write_to(&mut cur, format).unwrap();
    cur.into_inner()
}

/// A PNG of `w x h` RGB pixels; pixel (x, y) = (x * 10, y * 10, 7).
pub fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    image_bytes(w, h, image::ImageFormat::Png)
}

/// A JPEG of `w x h` RGB pixels.
pub fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    image_bytes(w, h, image::ImageFormat::Jpeg)
}

/// The unit cube as OFF text (8 vertices, 6 quads).
pub fn cube_off() -> String {
    let mut s = String::from("OFF\n# a cube\n8 6 12\n");
    for v in CUBE_V {
        s += &format!("{} {} {}\n", v[0], v[1], v[2]);
    }
    for f in CUBE_F {
        s += &format!("4 {} {} {} {}\n", f[0], f[1], f[2], f[3]);
    }
    s
}

/// Cube vertices (side 2, centred at 1,1,1 so centring is visible).
pub const CUBE_V: [[f32; 3]; 8] = [
    [0., 0., 0.],
    [2., 0., 0.],
    [2., 2., 0.],
    [0., 2., 0.],
    [0., 0., 2.],
    [2., 0., 2.],
    [2., 2., 2.],
    [0., 2., 2.],
];

/// Cube faces.
pub const CUBE_F: [[u32; 4]; 6] = [
    [0, 3, 2, 1],
    [4, 5, 6, 7],
    [0, 1, 5, 4],
    [2, 3, 7, 6],
    [1, 2, 6, 5],
    [0, 4, 7, 3],
];

/// The cube as an ASCII PLY.
pub fn cube_ply_ascii() -> Vec<u8> {
    let mut s = String::from(
        "ply\nformat ascii 1.0\ncomment cube\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\nelement face 6\nproperty list uchar int vertex_indices\nend_header\n",
    );
    for v in CUBE_V {
        s += &format!("{} {} {}\n", v[0], v[1], v[2]);
    }
    for f in CUBE_F {
        s += &format!("4 {} {} {} {}\n", f[0], f[1], f[2], f[3]);
    }
    s.into_bytes()
}

/// The cube as a binary little-endian PLY (with an extra per-vertex property to skip).
pub fn cube_ply_binary() -> Vec<u8> {
    let mut out = b"ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nelement face 6\nproperty list uchar int vertex_indices\nend_header\n".to_vec();
    for v in CUBE_V {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(200);
    }
    for f in CUBE_F {
        out.push(4);
        for i in f {
            out.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    out
}
