//! Procedural datasets: shapes (images), point shapes and moving-shapes video.

use perceiver_data::image::shapes::SHAPE_CLASSES;
use perceiver_data::image::{Shapes, ShapesConfig};
use perceiver_data::points::{PointAugment, PointShapes, PointShapesConfig, POINT_SHAPE_CLASSES};
use perceiver_data::video::{MovingShapes, MovingShapesConfig};
use perceiver_data::{Dataset, Loader, Split, Transform};
use perceiver_tensor::Rng;

#[test]
fn shapes_dataset() {
    let ds = Shapes::new(ShapesConfig {
        len: 48,
        ..ShapesConfig::default()
    })
    .unwrap();
    assert!(ds.num_classes() >= 10);
    assert_eq!(ds.class_names().len(), SHAPE_CLASSES.len());
    let mut counts = vec![0; ds.num_classes()];
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        assert_eq!(s.grid, Some(vec![32, 32]));
        assert!(s.values.iter().all(|v| (0.0..=1.0).contains(v)));
        counts[s.label] += 1;
        // A visible shape: a reasonable fraction of bright pixels.
        let bright = s.values.iter().filter(|&&v| v > 0.5).count();
        assert!(
            bright > 20 && bright < 900,
            "sample {i} has {bright} bright pixels"
        );
    }
    assert!(counts.iter().all(|&c| c == 4));
    assert_eq!(
        ds.get(7).unwrap(),
        ds.get(7).unwrap(),
        "pure function of (seed, i)"
    );
    let test = Shapes::new(ShapesConfig::split(Split::Test, 48)).unwrap();
    assert_ne!(test.get(7).unwrap(), ds.get(7).unwrap());
    let rgb = Shapes::new(ShapesConfig {
        channels: 3,
        len: 12,
        ..ShapesConfig::default()
    })
    .unwrap();
    let b = Loader::new(rgb, 12)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.inputs.shape(), &[12, 32, 32, 3]);
    assert!(Shapes::new(ShapesConfig {
        channels: 2,
        ..ShapesConfig::default()
    })
    .is_err());
}

#[test]
fn shapes_classes_differ() {
    // Mean image per class differs between classes (a sanity check that labels mean something).
    let ds = Shapes::new(ShapesConfig {
        len: 12 * 20,
        noise: 0.0,
        ..ShapesConfig::default()
    })
    .unwrap();
    let mut fill = vec![0.0f32; 12];
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        let bright = s.values.iter().filter(|&&v| v > 0.5).count() as f32;
        fill[s.label] += bright / 20.0;
    }
    // Ring is hollow, circle is not: similar size, different fill.
    assert!(fill[0] > fill[2] * 1.3, "{fill:?}");
}

#[test]
fn point_shapes_dataset() {
    let ds = PointShapes::new(PointShapesConfig {
        len: 20,
        num_points: 512,
        ..PointShapesConfig::default()
    })
    .unwrap();
    assert!(ds.num_classes() >= 8);
    assert_eq!(ds.class_names()[4], POINT_SHAPE_CLASSES[4]);
    for i in 0..ds.len() {
        let s = ds.get(i).unwrap();
        assert_eq!((s.tokens(), s.channels, s.pos_dim), (512, 3, 3));
        assert_eq!(s.positions.as_ref().unwrap(), &s.values);
        let r = s
            .values
            .chunks(3)
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0.0f32, f32::max);
        assert!((r - 1.0).abs() < 1e-4, "unit sphere: {r}");
        assert_eq!(s.label, i % ds.num_classes());
    }
    assert_eq!(ds.get(3).unwrap(), ds.get(3).unwrap());
    let aug = PointAugment::default();
    let s = ds.get(0).unwrap();
    let a = aug.apply(s.clone(), &mut Rng::new(1)).unwrap();
    assert_ne!(a.values, s.values);
    assert_eq!(
        a.positions.as_ref().unwrap(),
        &a.values,
        "positions follow the points"
    );
    // Rotation about z alone keeps z and the xy radius.
    let rot = PointAugment {
        scale: (1.0, 1.0),
        jitter_sigma: 0.0,
        ..PointAugment::default()
    };
    let r = rot.apply(s.clone(), &mut Rng::new(2)).unwrap();
    for (p, q) in s.values.chunks(3).zip(r.values.chunks(3)) {
        assert!((p[2] - q[2]).abs() < 1e-6);
        assert!(((p[0] * p[0] + p[1] * p[1]) - (q[0] * q[0] + q[1] * q[1])).abs() < 1e-5);
    }
    let b = Loader::new(ds, 5)
        .unwrap()
        .transform(aug)
        .workers(2)
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.inputs.shape(), &[5, 512, 3]);
    assert_eq!(b.positions.unwrap().shape(), &[5, 512, 3]);
}

#[test]
fn moving_shapes_video() {
    let cfg = MovingShapesConfig {
        len: 16,
        frames: 6,
        height: 16,
        width: 20,
        ..MovingShapesConfig::default()
    };
    let ds = MovingShapes::new(cfg).unwrap();
    assert_eq!(ds.num_classes(), 8);
    let s = ds.get(0).unwrap();
    assert_eq!(s.grid, Some(vec![6, 16, 20]));
    assert_eq!((s.tokens(), s.channels, s.pos_dim), (6 * 16 * 20, 3, 3));
    assert!(s.positions.is_none(), "grid positions stay implicit");
    let mut s = s;
    s.materialize_positions();
    let p = s.positions.as_ref().unwrap();
    assert_eq!(&p[0..3], &[-1.0, -1.0, -1.0]);
    assert_eq!(&p[p.len() - 3..], &[1.0, 1.0, 1.0]);
    // Label 0 moves right: the bright centroid's x grows from the first to the last frame.
    let centroid_x = |frame: usize| {
        let (mut sx, mut n) = (0.0, 0.0);
        for y in 0..16 {
            for x in 0..20 {
                let t = (frame * 16 + y) * 20 + x;
                if s.values[t * 3] > 0.45 {
                    sx += x as f32;
                    n += 1.0;
                }
            }
        }
        sx / n
    };
    assert!(
        centroid_x(5) > centroid_x(0) + 3.0,
        "{} -> {}",
        centroid_x(0),
        centroid_x(5)
    );
    let b = Loader::new(ds, 4)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(b.inputs.shape(), &[4, 6, 16, 20, 3]);
    assert!(b.positions.is_none());
}
