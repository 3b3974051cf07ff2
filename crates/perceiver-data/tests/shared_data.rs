//! Tests on the real datasets in `../shared/data` (skipped when absent unless `CI=true`).

mod common;

use perceiver_data::audio::fsdd::{list_recordings, split_of};
use perceiver_data::audio::{read_wav, Fsdd, FsddConfig};
use perceiver_data::image::{Mnist, MnistKind, Normalize, PixelPermutation};
use perceiver_data::{Dataset, Loader, Split, Transform};
use perceiver_tensor::Rng;
use std::path::Path;

/// The training and test sets of an MNIST-format dataset in `dir`, checked to have 60,000 and
/// 10,000 images.
fn train_and_test(dir: &Path, kind: MnistKind) -> (Mnist, Mnist) {
    let train = Mnist::load(dir, Split::Train, kind).unwrap();
    let test = Mnist::load(dir, Split::Test, kind).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(test.len(), 10_000);
    (train, test)
}

#[test]
fn mnist_counts_and_histograms() {
    let Some(dir) = common::shared("mnist") else {
        return;
    };
    let (train, test) = train_and_test(&dir, MnistKind::Digits);
    assert_eq!((train.rows(), train.cols()), (28, 28));
    assert_eq!(
        train.label_histogram(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        test.label_histogram(),
        vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let s = train.get(0).unwrap();
    assert_eq!(s.tokens(), 784);
    assert_eq!(s.channels, 1);
    assert_eq!(s.grid, Some(vec![28, 28]));
    assert_eq!(s.label, 5, "the first MNIST training digit is a 5");
    assert!(s.values.iter().all(|v| (0.0..=1.0).contains(v)));
    // Mean pixel intensity of MNIST is about 0.1307.
    let mean: f32 = (0..1000)
        .map(|i| train.get(i).unwrap().values.iter().sum::<f32>() / 784.0)
        .sum::<f32>()
        / 1000.0;
    assert!((mean - 0.1307).abs() < 0.01, "mean {mean}");
}

#[test]
fn fashion_mnist_counts_and_histograms() {
    let Some(dir) = common::shared("fashion-mnist") else {
        return;
    };
    let (train, test) = train_and_test(&dir, MnistKind::Fashion);
    assert_eq!(train.label_histogram(), vec![6000; 10]);
    assert_eq!(test.label_histogram(), vec![1000; 10]);
    assert_eq!(train.class_names()[9], "Ankle boot");
}

#[test]
fn mnist_loader_batches_with_permutation() {
    let Some(dir) = common::shared("mnist") else {
        return;
    };
    let test = Mnist::load(&dir, Split::Test, MnistKind::Digits).unwrap();
    let perm = PixelPermutation::new(784, 42);
    let loader = Loader::new(test, 100)
        .unwrap()
        .seed(3)
        .workers(2)
        .transform(
            perceiver_data::Compose::new()
                .then(Normalize::mnist())
                .then(perm),
        );
    let mut seen = 0;
    let mut hist = [0usize; 10];
    for b in loader.epoch(0) {
        let b = b.unwrap();
        assert_eq!(b.inputs.shape(), &[100, 784, 1]);
        assert_eq!(b.positions.as_ref().unwrap().shape(), &[100, 784, 2]);
        for &l in &b.labels {
            hist[l] += 1;
        }
        seen += b.len();
    }
    assert_eq!(seen, 10_000);
    assert_eq!(
        hist,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
}

#[test]
fn fsdd_split_counts_and_decoding() {
    let Some(dir) = common::shared("fsdd") else {
        return;
    };
    let all = list_recordings(&dir).unwrap();
    assert_eq!(all.len(), 3000);
    let test = all
        .iter()
        .filter(|r| split_of(r.index) == Split::Test)
        .count();
    let train = all
        .iter()
        .filter(|r| split_of(r.index) == Split::Train)
        .count();
    assert_eq!((train, test), (2700, 300));
    let speakers: std::collections::BTreeSet<_> = all.iter().map(|r| r.speaker.clone()).collect();
    assert_eq!(speakers.len(), 6);
    for d in 0..10 {
        assert_eq!(all.iter().filter(|r| r.digit == d).count(), 300);
    }

    // Cross-check with the manifest's split column.
    let manifest = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut from_manifest = std::collections::HashMap::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let name = cols[0].rsplit('/').next().unwrap().to_string();
        from_manifest.insert(
            name,
            (cols[6].to_string(), cols[7].parse::<usize>().unwrap()),
        );
    }
    for r in &all {
        let name = r.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(from_manifest[name].0, split_of(r.index).name(), "{name}");
    }

    let ds_test = Fsdd::open(&dir, FsddConfig::log_mel(Split::Test)).unwrap();
    let ds_train = Fsdd::open(&dir, FsddConfig::waveform(Split::Train)).unwrap();
    assert_eq!((ds_train.len(), ds_test.len()), (2700, 300));

    // Decode a few clips: 8 kHz mono 16-bit, frame counts as in the manifest.
    for item in ds_test.items().iter().step_by(50) {
        let wav = read_wav(&item.path).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert_eq!(wav.channels, 1);
        assert_eq!(wav.bits_per_sample, 16);
        let name = item.path.file_name().unwrap().to_str().unwrap();
        assert_eq!(wav.samples.len(), from_manifest[name].1, "{name}");
        assert!(wav.samples.iter().all(|s| (-1.0..=1.0).contains(s)));
    }

    let s = ds_test.get(0).unwrap();
    assert_eq!(s.grid, Some(vec![97]));
    assert_eq!(s.channels, 40);
    assert!(s.values.iter().all(|v| v.is_finite()));
    let w = ds_train.get(0).unwrap();
    assert_eq!((w.tokens(), w.channels), (125, 64));
    assert_eq!(w.label, ds_train.items()[0].digit);

    let loader = Loader::new(
        Fsdd::open(&dir, FsddConfig::log_mel(Split::Test)).unwrap(),
        8,
    )
    .unwrap()
    .workers(2);
    let b = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.inputs.shape(), &[8, 97, 40]);
    assert_eq!(b.grid, Some(vec![97]));
    assert!(b.positions.is_none(), "grid positions stay implicit");
}

#[test]
fn normalize_fit_matches_mnist_constants() {
    let Some(dir) = common::shared("mnist") else {
        return;
    };
    let test = Mnist::load(&dir, Split::Test, MnistKind::Digits).unwrap();
    let n = Normalize::fit(&test, 10_000).unwrap();
    // The known statistics of the MNIST test set (train: 0.1307 / 0.3081).
    assert!((n.mean[0] - 0.1325).abs() < 1e-3, "{:?}", n.mean);
    assert!((n.std[0] - 0.3105).abs() < 1e-3, "{:?}", n.std);
    let s = Normalize::mnist()
        .apply(test.get(0).unwrap(), &mut Rng::new(0))
        .unwrap();
    assert!((s.values[0] + 0.1307 / 0.3081).abs() < 1e-5);
}
