//! Data loader throughput (`perceiver-data`): MNIST training batches of 128 with and without
//! background prefetch (2 worker threads), and Free Spoken Digit Dataset clips turned into
//! log-mel spectrograms. Needs the shared data (`PERCEIVER_DATA`, else `../shared/data`); without
//! it the group has no points and says so.

use super::{Group, Point, Work};
use perceiver_data::audio::{Fsdd, FsddConfig};
use perceiver_data::image::{Mnist, MnistKind};
use perceiver_data::{Dataset, Loader, Split};
use std::hint::black_box;
use std::path::PathBuf;

/// The `data` group.
pub const GROUP: Group = Group {
    name: "data",
    about: "loader throughput on the shared datasets",
    isolated: false,
    points,
};

const BATCH: usize = 128;

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PERCEIVER_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("..").join("shared").join("data"));
    dir.join("mnist").is_dir().then_some(dir)
}

fn mnist_point(workers: usize) -> Point {
    let (name, note) = if workers > 0 {
        (
            "mnist loader, prefetch",
            "2 worker threads, 4 batches ahead",
        )
    } else {
        (
            "mnist loader, no prefetch",
            "batches built on the calling thread",
        )
    };
    Point {
        name: name.into(),
        shape: format!("batch {BATCH}"),
        note: note.into(),
        work: Work::Items {
            count: (60_000 / BATCH) as f64,
            unit: "batches/s",
        },
        setup: Box::new(move || {
            let dir = data_dir().expect("checked when listing points");
            let mnist = Mnist::load(&dir.join("mnist"), Split::Train, MnistKind::Digits)
                .expect("the shared MNIST files load");
            let mut loader = Loader::new(mnist, BATCH)
                .seed(0)
                .shuffle(true)
                .drop_last(true);
            if workers > 0 {
                loader = loader.workers(workers).prefetch(4);
            }
            let mut epoch = 0;
            Box::new(move || {
                epoch += 1;
                for b in loader.epoch(epoch) {
                    black_box(b.expect("batch"));
                }
            })
        }),
    }
}

fn points(_quick: bool) -> Vec<Point> {
    if data_dir().is_none() {
        eprintln!("    (no shared data: set PERCEIVER_DATA or put it in ../shared/data; data group skipped)");
        return Vec::new();
    }
    let fsdd = Point {
        name: "fsdd log-mel".into(),
        shape: "300 clips".into(),
        note: "test split: read WAV, crop/pad to 1 s, 40-band log-mel".into(),
        work: Work::Items {
            count: 300.0,
            unit: "clips/s",
        },
        setup: Box::new(|| {
            let dir = data_dir().expect("checked when listing points");
            let fsdd = Fsdd::open(&dir.join("fsdd"), FsddConfig::log_mel(Split::Test))
                .expect("the shared FSDD files load");
            Box::new(move || {
                for i in 0..fsdd.len() {
                    black_box(fsdd.get(i).expect("clip"));
                }
            })
        }),
    };
    vec![mnist_point(2), mnist_point(0), fsdd]
}
