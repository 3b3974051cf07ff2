//! Data loader throughput (`perceiver-data`): the workloads of
//! [`perceiver_data::bench::loader_workloads`] (MNIST training batches of 128 with and without
//! background prefetch, FSDD clips turned into log-mel spectrograms) as points of this harness.
//! Needs the shared data (`PERCEIVER_DATA`, else `../shared/data`); without it the group has no
//! points and says so.

use super::{Group, Point, Work};
use perceiver_data::bench::{has_data, loader_workloads};
use perceiver_data::shared_data_dir;

/// The `data` group.
pub const GROUP: Group = Group {
    name: "data",
    about: "loader throughput on the shared datasets",
    isolated: false,
    points,
};

fn points(_quick: bool) -> Vec<Point> {
    if !has_data(&shared_data_dir()) {
        eprintln!("    (no shared data: set PERCEIVER_DATA or put it in ../shared/data; data group skipped)");
        return Vec::new();
    }
    loader_workloads()
        .into_iter()
        .map(|w| Point {
            name: w.name.into(),
            shape: w.shape.clone(),
            note: w.note.into(),
            work: Work::Items {
                count: w.items as f64,
                unit: w.unit,
            },
            setup: Box::new(move || {
                let mut pass = w
                    .setup(&shared_data_dir())
                    .expect("the shared data loads (checked when listing points)");
                Box::new(move || pass().expect("a pass over the shared data"))
            }),
        })
        .collect()
}
