//! Property test: truncated and bit-flipped copies of real files, fed to every parser, give
//! typed errors (naming the file) or valid data, and never panic.

mod common;

use perceiver_data::audio::parse_wav;
use perceiver_data::image::cifar::parse_batch;
use perceiver_data::image::folder::decode_image;
use perceiver_data::image::idx::parse_idx;
use perceiver_data::image::{ImageFolderConfig, Mnist, MnistKind};
use perceiver_data::io::maybe_gunzip;
use perceiver_data::points::{parse_off, parse_ply};
use perceiver_data::{DataError, Result};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A parser under test: name, file name used in errors, the original bytes, and the parse.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    parse: fn(&[u8], &Path) -> Result<()>,
}

fn idx_any(b: &[u8], p: &Path) -> Result<()> {
    let raw = maybe_gunzip(b.to_vec(), p)?;
    let a = parse_idx(&raw, p)?;
    // Pair it with itself as labels when it is 1-D, or with zero labels otherwise.
    let labels = perceiver_data::image::IdxArray {
        dims: vec![a.dims.first().copied().unwrap_or(0)],
        data: vec![0; a.dims.first().copied().unwrap_or(0).min(1 << 20)],
    };
    let _ = Mnist::from_arrays(a, p, labels, p, MnistKind::Digits);
    Ok(())
}

fn cases() -> &'static Vec<Case> {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let mut v = vec![
            Case {
                name: "idx-raw",
                bytes: common::idx_bytes(&[3, 4, 5], &[7; 60]),
                parse: idx_any,
            },
            Case {
                name: "idx-gz",
                bytes: common::gzip(&common::idx_bytes(&[50], &[3; 50])),
                parse: idx_any,
            },
            Case {
                name: "cifar",
                bytes: common::cifar_bytes(2),
                parse: |b, p| parse_batch(b, p).map(|_| ()),
            },
            Case {
                name: "png",
                bytes: common::png_bytes(12, 9),
                parse: |b, p| decode_image(b, p, &ImageFolderConfig::default()).map(|_| ()),
            },
            Case {
                name: "jpeg",
                bytes: common::jpeg_bytes(16, 16),
                parse: |b, p| decode_image(b, p, &ImageFolderConfig::default()).map(|_| ()),
            },
            Case {
                name: "wav",
                bytes: common::wav_bytes(&(0..300).map(|i| i * 50).collect::<Vec<i16>>(), 8000, 1),
                parse: |b, p| parse_wav(b, p).map(|_| ()),
            },
            Case {
                name: "off",
                bytes: common::cube_off().into_bytes(),
                parse: |b, p| parse_off(b, p).map(|_| ()),
            },
            Case {
                name: "ply-ascii",
                bytes: common::cube_ply_ascii(),
                parse: |b, p| parse_ply(b, p).map(|_| ()),
            },
            Case {
                name: "ply-binary",
                bytes: common::cube_ply_binary(),
                parse: |b, p| parse_ply(b, p).map(|_| ()),
            },
        ];
        // Real files from the shared data, when present.
        let real: [(&str, &str, fn(&[u8], &Path) -> Result<()>); 4] = [
            (
                "mnist-labels-gz",
                "mnist/t10k-labels-idx1-ubyte.gz",
                idx_any,
            ),
            (
                "mnist-images-gz",
                "mnist/t10k-images-idx3-ubyte.gz",
                idx_any,
            ),
            (
                "fashion-labels-gz",
                "fashion-mnist/t10k-labels-idx1-ubyte.gz",
                idx_any,
            ),
            ("fsdd-wav", "fsdd/recordings/7_jackson_32.wav", |b, p| {
                parse_wav(b, p).map(|_| ())
            }),
        ];
        for (name, rel, parse) in real {
            let (dir, file) = rel.split_once('/').unwrap();
            if let Some(d) = common::shared(dir) {
                if let Ok(bytes) = std::fs::read(d.join(file)) {
                    v.push(Case { name, bytes, parse });
                }
            }
        }
        // The raw (decompressed) MNIST label file too, so header bit flips reach the IDX parser.
        if let Some(d) = common::shared("mnist") {
            if let Ok(gz) = std::fs::read(d.join("t10k-labels-idx1-ubyte.gz")) {
                if let Ok(raw) = maybe_gunzip(gz, Path::new("x")) {
                    v.push(Case {
                        name: "mnist-labels-raw",
                        bytes: raw,
                        parse: idx_any,
                    });
                }
            }
        }
        v
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    Truncate(f64),
    Flip(Vec<(f64, u8)>),
    /// Flip bits only in the first 64 bytes (the headers).
    FlipHeader(Vec<(u8, u8)>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0.0f64..1.0).prop_map(Mutation::Truncate),
        prop::collection::vec((0.0f64..1.0, 0u8..8), 1..8).prop_map(Mutation::Flip),
        prop::collection::vec((0u8..64, 0u8..8), 1..4).prop_map(Mutation::FlipHeader),
    ]
}

fn mutate(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match m {
        Mutation::Truncate(f) => b.truncate((f * bytes.len() as f64) as usize),
        Mutation::Flip(flips) => {
            for &(pos, bit) in flips {
                let i = ((pos * b.len() as f64) as usize).min(b.len() - 1);
                b[i] ^= 1 << bit;
            }
        }
        Mutation::FlipHeader(flips) => {
            for &(pos, bit) in flips {
                let i = (pos as usize).min(b.len() - 1);
                b[i] ^= 1 << bit;
            }
        }
    }
    b
}

fn check(case: &Case, bytes: &[u8]) {
    let path = PathBuf::from(format!("corrupt-{}.bin", case.name));
    if let Err(e) = (case.parse)(bytes, &path) {
        let text = e.to_string();
        match &e {
            DataError::Format { .. } | DataError::Decode { .. } => {
                assert!(
                    text.contains(&*path.to_string_lossy()),
                    "{}: error does not name the file: {text}",
                    case.name
                );
                assert!(
                    !text.contains("panicked"),
                    "{}: a decoder panicked: {text}",
                    case.name
                );
            }
            DataError::Invalid(_) => {}
            other => panic!("{}: unexpected error kind {other:?}", case.name),
        }
    }
}

#[test]
fn originals_parse() {
    for case in cases() {
        (case.parse)(&case.bytes, Path::new("ok")).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

#[test]
fn every_truncation_of_small_files_is_handled() {
    for case in cases().iter().filter(|c| c.bytes.len() <= 20_000) {
        for n in 0..case.bytes.len() {
            check(case, &case.bytes[..n]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn corrupted_inputs_never_panic(which in 0usize..64, m in mutation()) {
        let all = cases();
        let case = &all[which % all.len()];
        let bytes = mutate(&case.bytes, &m);
        check(case, &bytes);
    }

    #[test]
    fn corrupted_inputs_never_panic_for_each_parser(m in mutation()) {
        for case in cases() {
            if case.bytes.len() > 200_000 && !matches!(m, Mutation::FlipHeader(_)) {
                continue; // the large gzip gets header flips here; the test above covers the rest
            }
            check(case, &mutate(&case.bytes, &m));
        }
    }
}
