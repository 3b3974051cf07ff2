//! The task recipes: presets, settings checks, the data pipeline as the model sees it, the
//! stored settings' format, and the shapes recipe learning.

use perceiver_data::image::{Shapes, ShapesConfig};
use perceiver_data::{collate, Dataset, Sample, Split, Transform};
use perceiver_model::preset;
use perceiver_model::train::{evaluate_batch, EvalStats};
use perceiver_pos::PositionEncodingConfig;
use perceiver_tasks::{
    body_config, data_shape, eval_loader, eval_transform, fit_config, model_batch, new_trainer,
    open_split, task_preset, train_loader, DataSpec, DatasetKind, Hyper, TaskError,
};
use perceiver_tensor::Rng;

const ALL: [DatasetKind; 9] = [
    DatasetKind::Shapes,
    DatasetKind::Mnist,
    DatasetKind::FashionMnist,
    DatasetKind::Cifar10,
    DatasetKind::ImageFolder,
    DatasetKind::Fsdd,
    DatasetKind::Points,
    DatasetKind::Modelnet,
    DatasetKind::Video,
];

#[test]
fn every_preset_is_valid() {
    for kind in ALL {
        let p = task_preset(kind);
        p.hyper.validate().unwrap();
        assert!(p.hyper.optimizer().is_ok(), "{kind}");
        assert!(p.patch >= 1);
        assert_eq!(kind.to_string(), kind.name());
    }
    assert!(DatasetKind::Shapes.is_image() && !DatasetKind::Points.is_image());
    assert!(DatasetKind::Modelnet.is_points() && DatasetKind::Video.is_procedural());
}

#[test]
fn hyper_settings_are_checked() {
    let ok = task_preset(DatasetKind::Shapes).hyper;
    let field = |h: Hyper| match h.validate() {
        Err(TaskError::Hyper { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(Hyper {
            epochs: 0,
            ..ok.clone()
        }),
        "epochs"
    );
    assert_eq!(
        field(Hyper {
            batch_size: 0,
            ..ok.clone()
        }),
        "batch_size"
    );
    assert_eq!(
        field(Hyper {
            lr: 0.0,
            ..ok.clone()
        }),
        "lr"
    );
    assert_eq!(
        field(Hyper {
            lr: f32::NAN,
            ..ok.clone()
        }),
        "lr"
    );
    assert_eq!(
        field(Hyper {
            weight_decay: -1.0,
            ..ok.clone()
        }),
        "weight_decay"
    );
    assert_eq!(
        field(Hyper {
            label_smoothing: 1.0,
            ..ok.clone()
        }),
        "label_smoothing"
    );
    assert_eq!(
        field(Hyper {
            clip_norm: Some(0.0),
            ..ok.clone()
        }),
        "clip_norm"
    );
    let e = Hyper { lr: -2.0, ..ok }.validate().unwrap_err();
    assert_eq!(e.to_string(), "lr must be positive, got -2");
}

#[test]
fn warmup_then_cosine() {
    let h = task_preset(DatasetKind::Shapes).hyper;
    let s = h.schedule(120);
    assert_eq!(s.lr(0), 0.0);
    assert!((s.lr(10) - h.lr / 2.0).abs() < 1e-9);
    assert_eq!(s.lr(20), h.lr);
    assert!(s.lr(70) < h.lr && s.lr(70) > 0.0);
    assert!(s.lr(120).abs() < 1e-9);
}

fn shapes_spec(train: usize, test: usize) -> DataSpec {
    let mut spec = DataSpec::new(DatasetKind::Shapes).unwrap();
    spec.train_size = Some(train);
    spec.test_size = Some(test);
    spec
}

/// `[B, H, W, C]` -> `[B, H/p, W/p, p*p*C]`, as the command-line tool used to patch batches.
fn space_to_depth_reference(
    x: &[f32],
    b: usize,
    h: usize,
    w: usize,
    c: usize,
    p: usize,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for n in 0..b {
        for gy in 0..h / p {
            for gx in 0..w / p {
                for dy in 0..p {
                    let row = ((n * h + gy * p + dy) * w + gx * p) * c;
                    out.extend_from_slice(&x[row..row + p * c]);
                }
            }
        }
    }
    out
}

#[test]
fn the_shapes_pipeline_feeds_patches_on_the_grid() {
    let mut spec = shapes_spec(8, 8);
    assert_eq!(spec.patch, 4);
    let train = open_split(&spec, Split::Train).unwrap();
    spec.fit(train.as_ref()).unwrap();
    assert_eq!(spec.class_names.len(), 12);
    let shape = data_shape(train.as_ref(), spec.patch).unwrap();
    assert_eq!(shape.axes, vec![8, 8]);
    assert_eq!((shape.channels, shape.tokens), (16, 64));
    assert_eq!(
        (shape.grid.clone(), shape.sample_tokens),
        (Some(vec![32, 32]), 1024)
    );
    // The transform patches each normalised sample as the old batch conversion did.
    let tf = eval_transform(&spec, shape.sample_tokens).unwrap();
    let (mean, std) = spec.normalize.clone().unwrap();
    let raw: Vec<Sample> = (0..3).map(|i| train.get(i).unwrap()).collect();
    let mut normed = Vec::new();
    for s in &raw {
        normed.extend(s.values.iter().map(|v| (v - mean[0]) * (1.0 / std[0])));
    }
    let want = space_to_depth_reference(&normed, 3, 32, 32, 1, 4);
    let samples: Vec<Sample> = raw
        .into_iter()
        .map(|s| tf.apply(s, &mut Rng::new(0)).unwrap())
        .collect();
    let batch = model_batch(collate(samples, vec![0, 1, 2]).unwrap());
    assert_eq!(batch.inputs.shape(), &[3, 8, 8, 16]);
    assert_eq!(batch.inputs.to_vec(), want);
    assert!(
        batch.positions.is_none(),
        "the model computes the grid's positions"
    );
    // The loaders give the same layout.
    let hyper = Hyper {
        batch_size: 4,
        ..task_preset(DatasetKind::Shapes).hyper
    };
    let l = train_loader(&spec, &hyper, train.clone(), &shape).unwrap();
    let b = model_batch(l.epoch(0).next().unwrap().unwrap());
    assert_eq!(b.inputs.shape(), &[4, 8, 8, 16]);
    let e = eval_loader(&spec, train, 5, &shape).unwrap();
    assert_eq!(e.num_batches(), 2);
}

#[test]
fn permuted_pixels_carry_their_positions() {
    let mut spec = shapes_spec(4, 4);
    spec.patch = 1;
    spec.permute_pixels = Some(7);
    let train = open_split(&spec, Split::Train).unwrap();
    spec.fit(train.as_ref()).unwrap();
    let shape = data_shape(train.as_ref(), spec.patch).unwrap();
    let hyper = Hyper {
        batch_size: 2,
        ..task_preset(DatasetKind::Shapes).hyper
    };
    let l = train_loader(&spec, &hyper, train, &shape).unwrap();
    let b = model_batch(l.epoch(0).next().unwrap().unwrap());
    assert_eq!(b.inputs.shape(), &[2, 1024, 1]);
    assert_eq!(b.positions.unwrap().shape(), &[2, 1024, 2]);
    // Patches need grid order.
    spec.patch = 2;
    assert!(matches!(
        eval_transform(&spec, 1024),
        Err(TaskError::PermutedPatches)
    ));
}

#[test]
fn patches_must_tile_the_image() {
    let ds = Shapes::new(ShapesConfig {
        len: 2,
        size: 30,
        ..ShapesConfig::default()
    })
    .unwrap();
    match data_shape(&ds, 4) {
        Err(TaskError::Patch { patch: 4, axes }) => assert_eq!(axes, vec![30, 30]),
        other => panic!("{other:?}"),
    }
    assert_eq!(data_shape(&ds, 3).unwrap().axes, vec![10, 10]);
}

#[test]
fn configurations_fit_the_data() {
    let spec = shapes_spec(2, 2);
    let train = open_split(&spec, Split::Train).unwrap();
    let shape = data_shape(train.as_ref(), spec.patch).unwrap();
    let body = task_preset(DatasetKind::Shapes).body;
    let c = body_config(&body, &shape, 12, false);
    c.validate().unwrap();
    assert_eq!((c.input_axes.clone(), c.input_channels), (vec![8, 8], 16));
    assert_eq!(c.latent_init.std, 1.0);
    assert_eq!(c.num_outputs(), Some(12));
    let f = fit_config(preset("mnist-small").unwrap(), &shape, 12);
    assert_eq!((f.input_axes.clone(), f.input_channels), (vec![8, 8], 16));
    assert_eq!(f.num_outputs(), Some(12));
    // A per-axis resolution follows the new axes; a single one (shared by all axes) stays.
    let mut two_axes = preset("mnist-small").unwrap();
    if let PositionEncodingConfig::Fourier(ff) = &mut two_axes.position_encoding {
        ff.max_resolution = vec![28.0, 28.0];
    }
    let f = fit_config(two_axes, &shape, 12);
    let PositionEncodingConfig::Fourier(ff) = &f.position_encoding else {
        panic!("mnist-small has Fourier features");
    };
    assert_eq!(ff.max_resolution, vec![8.0, 8.0]);
    // An invalid configuration is a typed error.
    let mut bad = c;
    bad.num_latents = 0;
    let hyper = task_preset(DatasetKind::Shapes).hyper;
    assert!(matches!(
        new_trainer(bad, &hyper, 1),
        Err(TaskError::Config(_))
    ));
}

#[test]
fn file_datasets_name_what_is_missing() {
    let missing = std::env::temp_dir().join("perceiver-tasks-no-such-dir");
    let mut spec = DataSpec::new(DatasetKind::Mnist).unwrap();
    spec.data_dir = Some(missing);
    let Err(e) = open_split(&spec, Split::Test) else {
        panic!("opened a missing folder");
    };
    assert!(
        matches!(
            e,
            TaskError::Open {
                dataset: DatasetKind::Mnist,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("cannot open mnist (test): "),
        "{e}"
    );
    assert!(matches!(
        DataSpec::new(DatasetKind::ImageFolder),
        Err(TaskError::NeedsDataDir(DatasetKind::ImageFolder))
    ));
}

/// Settings in the stored run format (the `data` section of a run folder) read, and write back
/// the same.
#[test]
fn stored_settings_keep_their_format() {
    let json = r#"{"data":{"dataset":"shapes","data_dir":null,"permute_pixels":null,"audio":"log-mel","train_size":30000,"test_size":2000,"image_size":32,"num_points":1024,"patch":4,"augment":false,"normalize":[[0.5],[0.25]],"class_names":["a"]},"hyper":{"epochs":10,"batch_size":32,"optimizer":"lamb","lr":0.005,"schedule":"cosine","warmup":20,"weight_decay":0.01,"label_smoothing":0.0,"clip_norm":1.0,"seed":0}}"#;
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let data: DataSpec = serde_json::from_value(v["data"].clone()).unwrap();
    let hyper: Hyper = serde_json::from_value(v["hyper"].clone()).unwrap();
    assert_eq!(hyper, task_preset(DatasetKind::Shapes).hyper);
    assert_eq!(data.patch, 4);
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let (d, h) = (
        serde_json::to_value(&data).unwrap(),
        serde_json::to_value(&hyper).unwrap(),
    );
    assert_eq!((keys(&d), keys(&h)), (keys(&v["data"]), keys(&v["hyper"])));
    assert_eq!(serde_json::from_value::<DataSpec>(d).unwrap(), data);
    assert_eq!(serde_json::from_value::<Hyper>(h).unwrap(), hyper);
    // Runs from before patches had no `patch` field: pixels.
    let mut old = v["data"].clone();
    old.as_object_mut().unwrap().remove("patch");
    assert_eq!(serde_json::from_value::<DataSpec>(old).unwrap().patch, 1);
}

/// The recipe, not the library's generic defaults: with the shapes preset (4x4 patches, std-1
/// latents, LAMB with warm-up and cosine) the model leaves chance behind within 60 steps.
#[test]
fn the_shapes_recipe_learns() {
    let kind = DatasetKind::Shapes;
    let p = task_preset(kind);
    let steps = 60;
    let mut spec = shapes_spec(32 * steps, 240);
    let train = open_split(&spec, Split::Train).unwrap();
    let test = open_split(&spec, Split::Test).unwrap();
    spec.fit(train.as_ref()).unwrap();
    let shape = data_shape(train.as_ref(), spec.patch).unwrap();
    let hyper = Hyper {
        epochs: 1,
        ..p.hyper
    };
    let loader = train_loader(&spec, &hyper, train.clone(), &shape).unwrap();
    let config = body_config(&p.body, &shape, train.num_classes(), false);
    let mut trainer = new_trainer(config, &hyper, loader.num_batches() as u64).unwrap();
    for b in loader.epoch(0) {
        trainer.step(&model_batch(b.unwrap())).unwrap();
    }
    let mut stats = EvalStats::default();
    for b in eval_loader(&spec, test, 120, &shape).unwrap().epoch(0) {
        stats = evaluate_batch(trainer.model(), &model_batch(b.unwrap()), stats).unwrap();
    }
    assert_eq!(stats.count, 240);
    // Chance is a loss of ln 12 = 2.48 and an accuracy of 1/12 (measured: 2.28 and 15.4%).
    assert!(
        stats.loss < 2.40 && stats.accuracy() > 0.125,
        "test loss {} accuracy {} after {steps} steps",
        stats.loss,
        stats.accuracy()
    );
}
