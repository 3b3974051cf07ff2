//! Readers on small files written by the tests: IDX, CIFAR, PNG/JPEG, WAV, OFF, PLY, plus the
//! typed errors for corrupt input.

mod common;

use perceiver_data::audio::{
    crop_or_pad, parse_wav, read_wav, waveform_patches, CropMode, LogMel, MelConfig,
};
use perceiver_data::image::cifar::parse_batch;
use perceiver_data::image::idx::{parse_idx, read_idx};
use perceiver_data::image::{Cifar10, ImageFolder, ImageFolderConfig, Mnist, MnistKind};
use perceiver_data::points::{
    normalize_points, parse_off, parse_ply, read_mesh, sample_surface, ModelNet, ModelNetConfig,
    Scaling,
};
use perceiver_data::{DataError, Dataset, Split};
use perceiver_tensor::Rng;
use std::path::Path;

fn format_err(e: DataError) -> (String, u64, String) {
    match e {
        DataError::Format {
            field, offset, msg, ..
        } => (field, offset, msg),
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn idx_raw_and_gz() {
    let dir = common::temp_dir("idx");
    common::write_mnist(&dir, "train", 12, 4, 3, true);
    common::write_mnist(&dir, "t10k", 5, 4, 3, false);
    let train = Mnist::load(&dir, Split::Train, MnistKind::Digits).unwrap();
    let test = Mnist::load(&dir, Split::Test, MnistKind::Fashion).unwrap();
    assert_eq!((train.len(), test.len()), (12, 5));
    let s = train.get(11).unwrap();
    assert_eq!(s.label, 1);
    assert_eq!(s.grid, Some(vec![4, 3]));
    assert!(s.values.iter().all(|&v| (v - 11.0 / 255.0).abs() < 1e-6));
    // Positions: implicit on the grid; made explicit, linspace(-1, 1) per axis, ij order.
    assert_eq!((s.positions.as_ref(), s.pos_dim), (None, 2));
    let mut s = s;
    s.materialize_positions();
    let p = s.positions.as_ref().unwrap();
    assert_eq!(&p[0..2], &[-1.0, -1.0]);
    assert_eq!(&p[2..4], &[-1.0, 0.0]);
    assert_eq!(&p[22..24], &[1.0, 1.0]);
    assert_eq!(train.label_histogram(), vec![2, 2, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert!(matches!(
        train.get(12),
        Err(DataError::Index { index: 12, len: 12 })
    ));
    let a = read_idx(&dir.join("train-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(a.dims, vec![12]);
}

#[test]
fn idx_errors_name_field_and_offset() {
    let p = Path::new("x.idx");
    let good = common::idx_bytes(&[2, 2, 2], &[0; 8]);
    let (field, off, msg) = format_err(parse_idx(&good[..good.len() - 3], p).unwrap_err());
    assert_eq!((field.as_str(), off), ("data", 16));
    assert!(msg.contains("truncated"), "{msg}");
    let mut bad = good.clone();
    bad[2] = 0x0D;
    let (field, off, _) = format_err(parse_idx(&bad, p).unwrap_err());
    assert_eq!((field.as_str(), off), ("magic number", 2));
    let (field, off, _) = format_err(parse_idx(&good[..6], p).unwrap_err());
    assert_eq!((field.as_str(), off), ("dimension 0", 4));
    // A huge declared size is rejected without allocating.
    let huge = common::idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[0; 8]);
    assert!(parse_idx(&huge, p).is_err());
    let mut trailing = good.clone();
    trailing.push(1);
    let (_, off, _) = format_err(parse_idx(&trailing, p).unwrap_err());
    assert_eq!(off, 24);
    // Label out of range, label/image count mismatch.
    let dir = common::temp_dir("idx-bad");
    std::fs::write(dir.join("i"), common::idx_bytes(&[2, 1, 1], &[0, 0])).unwrap();
    std::fs::write(dir.join("l"), common::idx_bytes(&[2], &[3, 10])).unwrap();
    let e = Mnist::from_files(&dir.join("i"), &dir.join("l"), MnistKind::Digits).unwrap_err();
    let text = e.to_string();
    let (field, off, _) = format_err(e);
    assert_eq!((field.as_str(), off), ("label 1", 9));
    assert!(text.contains("/l:"), "{text}");
    std::fs::write(dir.join("l"), common::idx_bytes(&[3], &[1, 2, 3])).unwrap();
    assert!(Mnist::from_files(&dir.join("i"), &dir.join("l"), MnistKind::Digits).is_err());
    // Truncated gzip names the gzip stream.
    let gz = common::gzip(&good);
    std::fs::write(dir.join("t.gz"), &gz[..gz.len() - 10]).unwrap();
    let (field, _, msg) = format_err(read_idx(&dir.join("t.gz")).unwrap_err());
    assert_eq!(field, "gzip stream");
    assert!(
        msg.contains("truncated") || msg.contains("corrupt"),
        "{msg}"
    );
}

#[test]
fn cifar_batches() {
    let dir = common::temp_dir("cifar").join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("data_batch_{i}.bin")),
            common::cifar_bytes(3),
        )
        .unwrap();
    }
    std::fs::write(dir.join("test_batch.bin"), common::cifar_bytes(4)).unwrap();
    let train = Cifar10::load(dir.parent().unwrap(), Split::Train).unwrap();
    let test = Cifar10::load(&dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (15, 4));
    let s = test.get(2).unwrap();
    assert_eq!((s.tokens(), s.channels, s.label), (1024, 3, 2));
    let px: Vec<f32> = s.values[..3].iter().map(|v| (v * 255.0).round()).collect();
    assert_eq!(px, vec![2.0, 102.0, 198.0]);
    assert_eq!(train.class_names()[0], "airplane");

    let bytes = common::cifar_bytes(2);
    let (field, off, _) = format_err(parse_batch(&bytes[..5000], Path::new("b")).unwrap_err());
    assert_eq!((field.as_str(), off), ("record 1", 3073));
    let mut bad = bytes.clone();
    bad[3073] = 11;
    let (field, off, _) = format_err(parse_batch(&bad, Path::new("b")).unwrap_err());
    assert_eq!((field.as_str(), off), ("record 1 label", 3073));
    assert!(matches!(
        Cifar10::load(&common::temp_dir("cifar-missing"), Split::Test),
        Err(DataError::Missing { .. })
    ));
}

#[test]
fn image_folder_png_jpeg_resize_crop() {
    let root = common::temp_dir("imgfolder");
    for (class, n) in [("cat", 2), ("dog", 3)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..n {
            std::fs::write(
                root.join(class).join(format!("{i}.png")),
                common::png_bytes(20, 10),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("dog").join("x.jpg"), common::jpeg_bytes(12, 12)).unwrap();
    std::fs::write(root.join("dog").join("notes.txt"), b"ignored").unwrap();
    let cfg = ImageFolderConfig {
        resize: Some(8),
        crop: Some((8, 8)),
        grayscale: false,
    };
    let ds = ImageFolder::open(&root, cfg).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.class_names(), vec!["cat", "dog"]);
    assert_eq!(ds.num_classes(), 2);
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        assert_eq!(s.grid, Some(vec![8, 8]));
        assert_eq!(s.channels, 3);
    }
    assert_eq!(ds.get(0).unwrap().label, 0);
    assert_eq!(ds.get(5).unwrap().label, 1);
    // No resize, no crop: the decoded size, exact pixels.
    let raw = ImageFolder::open(
        &root,
        ImageFolderConfig {
            resize: None,
            crop: None,
            grayscale: false,
        },
    )
    .unwrap();
    let s = raw.get(0).unwrap();
    assert_eq!(s.grid, Some(vec![10, 20]));
    let px = |t: usize| -> Vec<u8> {
        s.value(t)
            .unwrap()
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect()
    };
    assert_eq!(px(0), vec![0, 0, 7]);
    assert_eq!(px(20 + 3), vec![30, 10, 7]);
    // Grey, crop bigger than the image: the image is enlarged first.
    let grey = ImageFolder::open(
        &root,
        ImageFolderConfig {
            resize: None,
            crop: Some((16, 16)),
            grayscale: true,
        },
    )
    .unwrap();
    let s = grey.get(0).unwrap();
    assert_eq!((s.grid.clone().unwrap(), s.channels), (vec![16, 16], 1));
    // A corrupt file is a decode error naming the file.
    std::fs::write(
        root.join("cat").join("2.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let ds = ImageFolder::open(&root, ImageFolderConfig::default()).unwrap();
    let e = ds.get(2).unwrap_err();
    assert!(matches!(e, DataError::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("2.png"), "{e}");
}

#[test]
fn wav_read_crop_pad_patches_logmel() {
    let dir = common::temp_dir("wav");
    // 0.25 s of a 1 kHz tone at 8 kHz.
    let tone: Vec<i16> = (0..2000)
        .map(|i| ((2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin() * 16000.0) as i16)
        .collect();
    let path = dir.join("tone.wav");
    std::fs::write(&path, common::wav_bytes(&tone, 8000, 1)).unwrap();
    let wav = read_wav(&path).unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.samples.len()),
        (8000, 1, 2000)
    );
    assert!((wav.samples[2] - 16000.0 / 32768.0).abs() < 1e-3);
    // Stereo is mixed down.
    let stereo: Vec<i16> = (0..20).flat_map(|i| [i * 100, -i * 100]).collect();
    let w2 = parse_wav(&common::wav_bytes(&stereo, 16000, 2), Path::new("s.wav")).unwrap();
    assert_eq!(w2.samples.len(), 20);
    assert!(w2.samples.iter().all(|&s| s.abs() < 1e-6));

    assert_eq!(
        crop_or_pad(&[1.0, 2.0, 3.0, 4.0, 5.0], 3, CropMode::Centre),
        vec![2.0, 3.0, 4.0]
    );
    assert_eq!(
        crop_or_pad(&[1.0, 2.0, 3.0, 4.0, 5.0], 3, CropMode::Start),
        vec![1.0, 2.0, 3.0]
    );
    assert_eq!(
        crop_or_pad(&[1.0, 2.0], 5, CropMode::Centre),
        vec![0.0, 1.0, 2.0, 0.0, 0.0]
    );
    assert_eq!(
        crop_or_pad(&[1.0, 2.0], 4, CropMode::Start),
        vec![1.0, 2.0, 0.0, 0.0]
    );
    let p = waveform_patches(&[1.0, 2.0, 3.0, 4.0, 5.0], 2, 7).unwrap();
    assert_eq!((p.tokens(), p.channels, p.label), (3, 2, 7));
    assert_eq!(p.values, vec![1.0, 2.0, 3.0, 4.0, 5.0, 0.0]);
    assert_eq!(p.grid, Some(vec![3]));
    let mut p = p;
    p.materialize_positions();
    assert_eq!(p.positions.unwrap(), vec![-1.0, 0.0, 1.0]);

    let lm = LogMel::new(MelConfig::default()).unwrap();
    // Every filter has weight somewhere; peaks are at most 1.
    for row in lm.filterbank() {
        let m = row.iter().cloned().fold(0.0f32, f32::max);
        assert!(m > 0.0 && m <= 1.0 + 1e-6);
    }
    let clip = crop_or_pad(&wav.samples, 8000, CropMode::Start);
    let s = lm.sample(&clip, 3);
    assert_eq!(
        (s.tokens(), s.channels, s.grid.clone()),
        (97, 40, Some(vec![97]))
    );
    // The loudest band of an early frame is the one around 1 kHz.
    let frame = &s.values[0..40];
    let best = (0..40)
        .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
        .unwrap();
    let lo = 2595.0 * (1.0f64 + 0.0 / 700.0).log10();
    let hi = 2595.0 * (1.0f64 + 4000.0 / 700.0).log10();
    let centre =
        |m: usize| 700.0 * (10f64.powf((lo + (hi - lo) * (m + 1) as f64 / 41.0) / 2595.0) - 1.0);
    assert!(
        (centre(best) - 1000.0).abs() < 120.0,
        "band {best} centre {}",
        centre(best)
    );
    // Silent padding frames are at the floor.
    assert!(s.values[96 * 40..].iter().all(|&v| v < -13.0));
    assert!(LogMel::new(MelConfig {
        f_max: 9000.0,
        ..MelConfig::default()
    })
    .is_err());
}

#[test]
fn wav_errors_name_field_and_offset() {
    let good = common::wav_bytes(&[1, 2, 3, 4], 8000, 1);
    let p = Path::new("a.wav");
    let (field, off, _) = format_err(parse_wav(&good[..2], p).unwrap_err());
    assert_eq!((field.as_str(), off), ("RIFF id", 0));
    let mut bad = good.clone();
    bad[8] = b'X';
    let (field, off, _) = format_err(parse_wav(&bad, p).unwrap_err());
    assert_eq!((field.as_str(), off), ("WAVE id", 8));
    let mut bad = good.clone();
    bad[22] = 0; // channels = 0
    let (field, off, _) = format_err(parse_wav(&bad, p).unwrap_err());
    assert_eq!((field.as_str(), off), ("fmt channels", 22));
    let mut bad = good.clone();
    bad[34] = 12; // bits per sample
    let (field, off, _) = format_err(parse_wav(&bad, p).unwrap_err());
    assert_eq!((field.as_str(), off), ("fmt bits per sample", 34));
    let (field, off, msg) = format_err(parse_wav(&good[..good.len() - 3], p).unwrap_err());
    assert_eq!((field.as_str(), off), ("\"data\" chunk size", 40));
    assert!(msg.contains("truncated"), "{msg}");
}

fn check_cube(mesh: &perceiver_data::points::Mesh) {
    assert_eq!(mesh.vertices.len(), 8);
    assert_eq!(mesh.triangles.len(), 12);
    assert!((mesh.surface_area() - 24.0).abs() < 1e-9);
}

#[test]
fn off_and_ply_readers() {
    check_cube(&parse_off(common::cube_off().as_bytes(), Path::new("c.off")).unwrap());
    check_cube(&parse_ply(&common::cube_ply_ascii(), Path::new("c.ply")).unwrap());
    check_cube(&parse_ply(&common::cube_ply_binary(), Path::new("c.ply")).unwrap());
    // ModelNet's glued header and colour columns.
    let glued = "OFF3 1 0\n0 0 0\n1 0 0\n0 1 0 \n3 0 1 2 255 0 0\n";
    let m = parse_off(glued.as_bytes(), Path::new("g.off")).unwrap();
    assert_eq!((m.vertices.len(), m.triangles.len()), (3, 1));
    // Vertex-only PLY is a point cloud.
    let pc = "ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\nproperty double y\nproperty double z\nend_header\n1 2 3\n4 5 6\n";
    let m = parse_ply(pc.as_bytes(), Path::new("p.ply")).unwrap();
    assert_eq!(m.vertices, vec![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    assert!(m.triangles.is_empty());
    // Big-endian too.
    let mut be = b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\nproperty float z\nend_header\n".to_vec();
    for v in [1.5f32, -2.0, 3.25] {
        be.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(
        parse_ply(&be, Path::new("b.ply")).unwrap().vertices,
        vec![[1.5, -2.0, 3.25]]
    );
}

#[test]
fn off_and_ply_errors() {
    let p = Path::new("m.off");
    let off = common::cube_off();
    let cut = &off.as_bytes()[..off.len() - 12];
    assert!(matches!(parse_off(cut, p), Err(DataError::Format { .. })));
    let (field, _, msg) = format_err(parse_off(b"OFF\n99999999 1 0\n0 0 0\n", p).unwrap_err());
    assert_eq!(field, "counts");
    assert!(msg.contains("truncated"), "{msg}");
    let (field, off, msg) =
        format_err(parse_off(b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", p).unwrap_err());
    assert_eq!((field.as_str(), off), ("face 0", 34));
    assert!(msg.contains("out of range"), "{msg}");
    let huge_face = b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n18446744073709551615 0 1 2\n";
    let (field, _, _) = format_err(parse_off(huge_face, p).unwrap_err());
    assert_eq!(field, "face 0");
    let (field, off, _) = format_err(parse_off(b"OFF\n1 0 0\n0 zz 0\n", p).unwrap_err());
    assert_eq!((field.as_str(), off), ("vertex 0", 12));
    let (field, off, _) = format_err(parse_off(b"PLY\n", p).unwrap_err());
    assert_eq!((field.as_str(), off), ("header", 0));

    let bin = common::cube_ply_binary();
    let e = parse_ply(&bin[..bin.len() - 5], Path::new("c.ply")).unwrap_err();
    let (field, _, msg) = format_err(e);
    assert!(field.starts_with("face"), "{field}");
    assert!(msg.contains("truncated") || msg.contains("fit"), "{msg}");
    let huge = b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nproperty float y\nproperty float z\nend_header\n";
    let (field, off, _) = format_err(parse_ply(huge, Path::new("h.ply")).unwrap_err());
    assert_eq!(
        (field.as_str(), off),
        ("element \"vertex\"", huge.len() as u64)
    );
    let (field, _, _) = format_err(
        parse_ply(
            b"ply\nformat ascii 1.0\nelement vertex 1\n",
            Path::new("x.ply"),
        )
        .unwrap_err(),
    );
    assert_eq!(field, "header");
}

#[test]
fn surface_sampling_and_normalisation() {
    let mesh = parse_off(common::cube_off().as_bytes(), Path::new("c.off")).unwrap();
    let mut rng = Rng::new(1);
    let mut pts = sample_surface(&mesh, 6000, &mut rng).unwrap();
    // Every point lies on the cube surface, and faces get points in proportion to area.
    let mut per_face = [0usize; 6];
    for p in &pts {
        let on: Vec<usize> = (0..3)
            .filter(|&d| p[d].abs() < 1e-5 || (p[d] - 2.0).abs() < 1e-5)
            .collect();
        assert!(!on.is_empty(), "{p:?} not on the surface");
        let d = on[0];
        per_face[d * 2 + usize::from(p[d] > 1.0)] += 1;
    }
    for c in per_face {
        assert!((800..1200).contains(&c), "{per_face:?}");
    }
    let same = sample_surface(&mesh, 6000, &mut Rng::new(1)).unwrap();
    assert_eq!(pts, same, "sampling is deterministic per seed");
    let mut cube = pts.clone();
    normalize_points(&mut cube, Scaling::UnitCube);
    let max = cube.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!((max - 1.0).abs() < 1e-4);
    normalize_points(&mut pts, Scaling::UnitSphere);
    let r = pts
        .iter()
        .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
        .fold(0.0f32, f32::max);
    assert!((r - 1.0).abs() < 1e-5);
    let c: Vec<f32> = (0..3)
        .map(|d| pts.iter().map(|p| p[d]).sum::<f32>() / pts.len() as f32)
        .collect();
    assert!(c.iter().all(|v| v.abs() < 1e-4), "{c:?}");
}

#[test]
fn modelnet_folder() {
    let root = common::temp_dir("modelnet");
    for class in ["bathtub", "chair"] {
        for split in ["train", "test"] {
            let d = root.join(class).join(split);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{class}_0001.off")), common::cube_off()).unwrap();
            std::fs::write(
                d.join(format!("{class}_0002.ply")),
                common::cube_ply_binary(),
            )
            .unwrap();
        }
    }
    let cfg = ModelNetConfig {
        num_points: 256,
        ..ModelNetConfig::new(Split::Train)
    };
    let ds = ModelNet::open(&root, cfg).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.class_names(), vec!["bathtub", "chair"]);
    let s = ds.get(3).unwrap();
    assert_eq!((s.tokens(), s.channels, s.label), (256, 3, 1));
    assert_eq!(s.positions.as_ref().unwrap(), &s.values);
    assert_eq!(ds.get(3).unwrap(), s, "cached and deterministic");
    assert_eq!(read_mesh(&ds.files()[0].0).unwrap().triangles.len(), 12);
    // A corrupt mesh gives an error for that sample only.
    std::fs::write(
        root.join("chair/train/chair_0003.off"),
        "OFF\n3 1 0\n0 0 0\n",
    )
    .unwrap();
    let ds = ModelNet::open(&root, ModelNetConfig::new(Split::Train)).unwrap();
    assert!(ds.get(4).is_err());
    assert!(ds.get(0).is_ok());
}
