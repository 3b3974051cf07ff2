//! The loader: shuffling, epochs, drop-last, prefetch determinism, transforms, errors.

use perceiver_data::image::{HorizontalFlip, PixelPermutation, RandomCrop, SpaceToDepth};
use perceiver_data::{
    collate, DataError, Dataset, Loader, Mapped, Result, Sample, Subset, Transform,
};
use perceiver_tensor::Rng;
use std::collections::BTreeSet;

/// Sample i: a 2x3 image whose values are i, label i % 4.
struct Toy {
    n: usize,
    fail_at: Option<usize>,
}

impl Dataset for Toy {
    fn len(&self) -> usize {
        self.n
    }
    fn get(&self, i: usize) -> Result<Sample> {
        if Some(i) == self.fail_at {
            return Err(DataError::invalid(format!("sample {i} is broken")));
        }
        Ok(Sample::image(vec![i as f32; 6], 2, 3, 1, i % 4))
    }
    fn num_classes(&self) -> usize {
        4
    }
    fn class_names(&self) -> Vec<String> {
        (0..4).map(|c| c.to_string()).collect()
    }
}

fn toy(n: usize) -> Toy {
    Toy { n, fail_at: None }
}

fn epoch_indices(l: &Loader, e: u64) -> Vec<Vec<usize>> {
    l.epoch(e).map(|b| b.unwrap().indices).collect()
}

#[test]
fn batches_cover_the_dataset_and_reshuffle_each_epoch() {
    let l = Loader::new(toy(103), 10).unwrap().seed(5);
    assert_eq!(l.num_batches(), 11);
    let e0 = epoch_indices(&l, 0);
    let e1 = epoch_indices(&l, 1);
    assert_eq!(e0.len(), 11);
    assert_eq!(e0.last().unwrap().len(), 3);
    let all: BTreeSet<usize> = e0.iter().flatten().copied().collect();
    assert_eq!(all.len(), 103);
    assert_ne!(e0, e1, "reshuffled every epoch");
    assert_eq!(e0, epoch_indices(&l, 0), "an epoch replays exactly");
    assert_ne!(
        e0,
        epoch_indices(&Loader::new(toy(103), 10).unwrap().seed(6), 0),
        "depends on the seed"
    );
    // Values, labels and shapes follow the indices.
    let b = l.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.inputs.shape(), &[10, 2, 3, 1]);
    assert_eq!(b.grid, Some(vec![2, 3]));
    assert!(b.positions.is_none(), "grid positions stay implicit");
    let v = b.inputs.to_vec();
    for (k, &i) in b.indices.iter().enumerate() {
        assert_eq!(v[k * 6], i as f32);
        assert_eq!(b.labels[k], i % 4);
    }
}

#[test]
fn drop_last_and_no_shuffle() {
    let l = Loader::new(toy(25), 10)
        .unwrap()
        .shuffle(false)
        .drop_last(true);
    let e = epoch_indices(&l, 3);
    assert_eq!(e, vec![(0..10).collect::<Vec<_>>(), (10..20).collect()]);
    assert_eq!(l.num_batches(), 2);
    assert_eq!(l.epoch(0).len(), 2);
    let small = Loader::new(toy(3), 10).unwrap().drop_last(true);
    assert_eq!(small.epoch(0).count(), 0);
}

#[test]
fn a_batch_size_of_zero_is_an_error() {
    assert!(matches!(
        Loader::new(toy(3), 0),
        Err(DataError::ZeroBatchSize)
    ));
    assert!(Loader::new(toy(3), 1).is_ok());
}

struct Noise;
impl Transform for Noise {
    fn apply(&self, mut s: Sample, rng: &mut Rng) -> Result<Sample> {
        for v in &mut s.values {
            *v += rng.uniform();
        }
        Ok(s)
    }
}

#[test]
fn prefetch_gives_identical_batches() {
    let base = Loader::new(toy(97), 8).unwrap().seed(11).transform(Noise);
    let reference: Vec<Vec<f32>> = base.epoch(2).map(|b| b.unwrap().inputs.to_vec()).collect();
    for workers in [1, 2, 3, 7] {
        for depth in [1, 4] {
            let l = base.clone().workers(workers).prefetch(depth);
            let got: Vec<Vec<f32>> = l.epoch(2).map(|b| b.unwrap().inputs.to_vec()).collect();
            assert_eq!(got, reference, "workers {workers} prefetch {depth}");
        }
    }
    // The transform's randomness changes with the epoch.
    let other: Vec<Vec<f32>> = base.epoch(3).map(|b| b.unwrap().inputs.to_vec()).collect();
    assert_ne!(other, reference);
}

#[test]
fn dropping_an_epoch_early_stops_the_workers() {
    let l = Loader::new(toy(10_000), 4).unwrap().workers(2).prefetch(2);
    for _ in 0..20 {
        let mut e = l.epoch(0);
        let _ = e.next();
        drop(e); // must not hang
    }
}

#[test]
fn a_broken_sample_fails_only_its_batch() {
    for workers in [0, 2] {
        let l = Loader::new(
            Toy {
                n: 30,
                fail_at: Some(13),
            },
            10,
        )
        .unwrap()
        .shuffle(false)
        .workers(workers);
        let r: Vec<_> = l.epoch(0).collect();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[2].is_ok());
        assert!(r[1].as_ref().unwrap_err().to_string().contains("sample 13"));
    }
}

#[test]
fn collate_rejects_mismatched_samples() {
    let a = Sample::image(vec![0.0; 6], 2, 3, 1, 0);
    let b = Sample::image(vec![0.0; 8], 2, 4, 1, 0);
    assert!(collate(vec![a.clone(), b], vec![0, 1]).is_err());
    assert!(collate(vec![], vec![]).is_err());
    // Same tokens, different grids: falls back to [B, tokens, C].
    let c = Sample::image(vec![0.0; 6], 3, 2, 1, 0);
    let batch = collate(vec![a.clone(), c.clone()], vec![0, 1]).unwrap();
    assert_eq!(batch.inputs.shape(), &[2, 6, 1]);
    assert_eq!(batch.grid, None);
    // Without a shared grid the implicit positions are made explicit, each of its own grid.
    let pos = batch.positions.unwrap().to_vec();
    let (mut pa, mut pc) = (a, c);
    pa.materialize_positions();
    pc.materialize_positions();
    assert_eq!(&pos[..12], pa.positions.as_deref().unwrap());
    assert_eq!(&pos[12..], pc.positions.as_deref().unwrap());
    // A point cloud and a grid sample do not mix.
    let pts = Sample::points(vec![0.0; 6], 0);
    let img = Sample::image(vec![0.0; 6], 2, 1, 3, 0);
    assert!(collate(vec![pts, img], vec![0, 1]).is_err());
}

#[test]
fn permutation_keeps_values_with_positions() {
    let mut rng = Rng::new(0);
    let values: Vec<f32> = (0..12).map(|i| i as f32).collect();
    let s = Sample::image(values, 3, 4, 1, 0);
    let perm = PixelPermutation::new(12, 9);
    let p = perm.apply(s.clone(), &mut rng).unwrap();
    assert_eq!(p.grid, None);
    assert_ne!(p.values, s.values);
    // The grid's implicit positions became explicit and moved with the values.
    assert_eq!(s.position(0), None);
    let mut explicit = s.clone();
    explicit.materialize_positions();
    let column = perceiver_pos::linspace_f32(-1.0, 1.0, 4)[1];
    assert_eq!(explicit.position(5), Some(&[0.0, column][..]));
    for t in 0..12 {
        let orig = p.value(t).unwrap()[0] as usize;
        assert_eq!(p.position(t), explicit.position(orig), "token {t}");
    }
    // The same permutation for every sample.
    let q = perm
        .apply(
            Sample::image((0..12).map(|i| i as f32).collect(), 3, 4, 1, 1),
            &mut rng,
        )
        .unwrap();
    assert_eq!(q.values, p.values);
    // Crop and flip need grid order.
    assert!(HorizontalFlip { p: 1.0 }.apply(p, &mut rng).is_err());
    assert!(PixelPermutation::new(5, 0).apply(s, &mut rng).is_err());
}

#[test]
fn crop_and_flip() {
    let mut rng = Rng::new(3);
    let s = Sample::image((0..6).map(|i| i as f32).collect(), 2, 3, 1, 0);
    let f = HorizontalFlip { p: 1.0 }
        .apply(s.clone(), &mut rng)
        .unwrap();
    assert_eq!(f.values, vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
    assert_eq!(f.positions, s.positions);
    let same = HorizontalFlip { p: 0.0 }
        .apply(s.clone(), &mut rng)
        .unwrap();
    assert_eq!(same.values, s.values);
    // A 2x3 crop of the 2x3 sample padded by `padding`.
    let crop = |padding| RandomCrop {
        height: 2,
        width: 3,
        padding,
    };
    let no_pad = crop(0).apply(s.clone(), &mut rng).unwrap();
    assert_eq!(no_pad.values, s.values);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let c = crop(1).apply(s.clone(), &mut rng).unwrap();
        assert_eq!(c.grid, Some(vec![2, 3]));
        let sum: f32 = c.values.iter().sum();
        seen.insert(sum as i64);
        assert!(c.values.iter().all(|v| (0.0..=5.0).contains(v)));
    }
    assert!(seen.len() > 4, "crops vary: {seen:?}");
    assert!(RandomCrop::new(9, 1).apply(s, &mut rng).is_err());
}

#[test]
fn space_to_depth_makes_patch_tokens() {
    let mut rng = Rng::new(0);
    // A 4x6 image of 2 channels: value = 100 * row + 10 * column + channel.
    let (h, w, c, p) = (4, 6, 2, 2);
    let values: Vec<f32> = (0..h * w * c)
        .map(|i| (100 * (i / (w * c)) + 10 * (i / c % w) + i % c) as f32)
        .collect();
    let s = Sample::image(values.clone(), h, w, c, 3);
    let t = SpaceToDepth::new(p)
        .unwrap()
        .apply(s.clone(), &mut rng)
        .unwrap();
    assert_eq!(t.grid, Some(vec![h / p, w / p]));
    assert_eq!((t.tokens(), t.channels, t.label), (6, p * p * c, 3));
    assert!(t.positions.is_none());
    // Token (gy, gx) holds its patch's rows, then columns, then channels.
    for gy in 0..h / p {
        for gx in 0..w / p {
            let mut want = Vec::new();
            for dy in 0..p {
                for dx in 0..p {
                    for k in 0..c {
                        want.push(values[(((gy * p + dy) * w) + gx * p + dx) * c + k]);
                    }
                }
            }
            assert_eq!(t.value(gy * (w / p) + gx).unwrap(), &want[..]);
        }
    }
    // 1x1 patches leave the image as it is; sides must be multiples; grid order is needed.
    assert_eq!(
        SpaceToDepth::new(1)
            .unwrap()
            .apply(s.clone(), &mut rng)
            .unwrap(),
        s
    );
    assert!(SpaceToDepth::new(0).is_err());
    assert!(SpaceToDepth::new(4)
        .unwrap()
        .apply(s.clone(), &mut rng)
        .is_err());
    let permuted = PixelPermutation::new(24, 1).apply(s, &mut rng).unwrap();
    assert!(SpaceToDepth::new(2)
        .unwrap()
        .apply(permuted, &mut rng)
        .is_err());
}

#[test]
fn mapped_and_subset() {
    let m = Mapped::new(toy(10), Noise, 4);
    assert_eq!(m.get(3).unwrap(), m.get(3).unwrap());
    assert_ne!(m.get(3).unwrap().values, toy(10).get(3).unwrap().values);
    let sub = Subset::range(toy(10), 5..8).unwrap();
    assert_eq!(sub.len(), 3);
    assert_eq!(sub.get(0).unwrap().label, 5 % 4);
    assert!(sub.get(3).is_err());
    assert!(Subset::new(toy(10), vec![10]).is_err());
}
