//! Readers under hostile input: FIFOs, devices and sockets in place of data files, gzip
//! streams that hold more than their header declares, and NaN / infinite samples or
//! coordinates. Each gives an error naming the file, quickly.

mod common;

use perceiver_data::audio::{parse_wav, read_wav};
use perceiver_data::image::idx::{gunzip_idx, read_idx};
use perceiver_data::image::Cifar10;
use perceiver_data::points::{parse_off, parse_ply, read_mesh};
use perceiver_data::{DataError, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `read(path)` on another thread and returns its error message; fails the test when the
/// read succeeds or takes more than ten seconds (a reader blocked on a FIFO or reading
/// `/dev/zero` forever).
fn refused<T: Send + 'static>(path: &Path, read: fn(&Path) -> Result<T>) -> String {
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(read(&p).err().map(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Some(msg)) => msg,
        Ok(None) => panic!("{} was read as data", path.display()),
        Err(_) => panic!("reading {} hung", path.display()),
    }
}

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    p
}

fn zero_link(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    p
}

fn read_cifar(p: &Path) -> Result<Cifar10> {
    Cifar10::from_files(&[p.to_path_buf()])
}

#[test]
fn fifos_are_refused_by_name_without_blocking() {
    let dir = common::temp_dir("hostile-fifo");
    for (name, msg) in [
        (
            "a-idx3-ubyte",
            refused(&fifo(&dir, "a-idx3-ubyte"), read_idx),
        ),
        ("b.wav", refused(&fifo(&dir, "b.wav"), read_wav)),
        ("c.ply", refused(&fifo(&dir, "c.ply"), read_mesh)),
        ("d.off", refused(&fifo(&dir, "d.off"), read_mesh)),
        ("e.bin", refused(&fifo(&dir, "e.bin"), read_cifar)),
    ] {
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("is a FIFO, not a regular file"), "{msg}");
    }
}

#[test]
fn a_fifo_in_a_dataset_folder_is_named_not_reported_missing() {
    let dir = common::temp_dir("hostile-mnist-fifo");
    fifo(&dir, "train-images-idx3-ubyte");
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        common::idx_bytes(&[1], &[0]),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let d = dir.clone();
    std::thread::spawn(move || {
        let r = perceiver_data::image::Mnist::load(
            &d,
            perceiver_data::Split::Train,
            perceiver_data::image::MnistKind::Digits,
        );
        let _ = tx.send(r.err().map(|e| e.to_string()));
    });
    let msg = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("hung")
        .expect("read");
    assert!(
        msg.ends_with("train-images-idx3-ubyte: is a FIFO, not a regular file"),
        "{msg}"
    );
}

#[test]
fn dev_zero_behind_a_symlink_is_refused_by_name() {
    let dir = common::temp_dir("hostile-zero");
    for (name, msg) in [
        (
            "a-idx3-ubyte.gz",
            refused(&zero_link(&dir, "a-idx3-ubyte.gz"), read_idx),
        ),
        ("b.wav", refused(&zero_link(&dir, "b.wav"), read_wav)),
        ("c.ply", refused(&zero_link(&dir, "c.ply"), read_mesh)),
    ] {
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("is a character device"), "{msg}");
    }
}

#[test]
fn sockets_are_refused_by_name() {
    let dir = common::temp_dir("hostile-sock");
    let p = dir.join("s.wav");
    let _listener = std::os::unix::net::UnixListener::bind(&p).unwrap();
    let msg = refused(&p, read_wav);
    assert!(msg.contains("s.wav: is a socket"), "{msg}");
}

/// A gzipped IDX file whose header declares 12 + 3 x 4 = 24 bytes but whose stream inflates to 8 MB.
fn idx_bomb() -> Vec<u8> {
    let mut raw = common::idx_bytes(&[3, 4], &[1; 12]);
    raw.resize(raw.len() + (8 << 20), 0);
    common::gzip(&raw)
}

#[test]
fn gzip_idx_holding_more_than_declared_is_refused() {
    let gz = idx_bomb();
    let e = gunzip_idx(&gz, Path::new("bomb.gz")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "bomb.gz: gzip stream at byte 24: the header [3, 4] declares 24 bytes but the stream \
         holds more"
    );
    // Through the file reader too.
    let dir = common::temp_dir("hostile-bomb");
    let p = dir.join("t-images-idx3-ubyte.gz");
    std::fs::write(&p, &gz).unwrap();
    assert!(read_idx(&p)
        .unwrap_err()
        .to_string()
        .contains("declares 24 bytes"));
}

#[test]
fn gzip_idx_is_inflated_no_further_than_declared_plus_slack() {
    // The same stream cut in half: inflating it to the end would report a truncated stream;
    // stopping after the declared size plus the slack reports the excess instead.
    let gz = idx_bomb();
    let cut = &gz[..gz.len() / 2];
    let e = gunzip_idx(cut, Path::new("cut.gz"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("declares 24 bytes but the stream holds more"),
        "{e}"
    );
    // A stream exactly as long as declared is read whole.
    let ok = common::gzip(&common::idx_bytes(&[3, 4], &[9; 12]));
    let raw = gunzip_idx(&ok, Path::new("ok.gz")).unwrap();
    assert_eq!(raw.len(), 24);
}

#[test]
fn gzip_idx_header_overflow_names_the_dimension() {
    let mut raw = vec![0, 0, 8, 4];
    for _ in 0..4 {
        raw.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    let e = gunzip_idx(&common::gzip(&raw), Path::new("big.gz")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("big.gz") && msg.contains("dimension") && msg.contains("overflow")
            || msg.contains("more than the"),
        "{msg}"
    );
    assert!(matches!(e, DataError::Format { .. }));
}

/// A mono IEEE-float WAV of `bits` (32 or 64) bits per sample.
fn float_wav(samples: &[f64], bits: u16) -> Vec<u8> {
    let width = bits as usize / 8;
    let mut data = Vec::new();
    for &s in samples {
        if bits == 32 {
            data.extend_from_slice(&(s as f32).to_le_bytes());
        } else {
            data.extend_from_slice(&s.to_le_bytes());
        }
    }
    let mut b = b"RIFF".to_vec();
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&8000u32.to_le_bytes());
    b.extend_from_slice(&(8000 * width as u32).to_le_bytes());
    b.extend_from_slice(&(width as u16).to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&data);
    b
}

#[test]
fn float_wav_decodes_32_and_64_bits() {
    for bits in [32, 64] {
        let w = parse_wav(&float_wav(&[0.0, 0.5, -0.25], bits), Path::new("f.wav")).unwrap();
        assert_eq!(w.samples, vec![0.0, 0.5, -0.25]);
        assert_eq!(w.bits_per_sample, bits);
    }
}

#[test]
fn float_wav_with_nan_or_inf_names_the_file_and_sample() {
    let e = parse_wav(&float_wav(&[0.0, 0.5, f64::NAN], 32), Path::new("nan.wav"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "nan.wav: sample 2 (channel 0) at byte 52: value NaN is not finite (sample 2 of the \
         data chunk)"
    );
    let e = parse_wav(&float_wav(&[f64::INFINITY], 64), Path::new("inf.wav"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("inf.wav: sample 0 (channel 0)"), "{e}");
    assert!(e.contains("value inf is not finite"), "{e}");
}

#[test]
fn ply_and_off_with_nan_coordinates_name_the_file_and_vertex() {
    let ply = b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n\
property float z\nend_header\n0 0 0\n1 nan 0\n";
    let e = parse_ply(ply, Path::new("nan.ply"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("nan.ply: vertex 1 y at byte"), "{e}");
    assert!(
        e.ends_with("coordinate NaN of vertex 1 is not finite"),
        "{e}"
    );
    let off = b"OFF\n2 0 0\n0 0 0\n1 2 inf\n";
    let e = parse_off(off, Path::new("inf.off"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "inf.off: vertex 1 at byte 20: coordinate inf of vertex 1 is not finite"
    );
}
