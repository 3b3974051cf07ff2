//! Fine-tuning starts from the checkpoint's weights: the model `init_model_from` builds gives
//! the checkpoint's outputs before any step, and with another class count only the head is new.

use perceiver_model::{Perceiver, PerceiverConfig, Rng, Tensor};
use perceiver_tasks::{init_model_from, DataShape};

fn shape() -> DataShape {
    DataShape {
        axes: vec![6, 6],
        channels: 3,
        tokens: 36,
        grid: Some(vec![6, 6]),
        sample_tokens: 36,
    }
}

fn saved(name: &str) -> (std::path::PathBuf, Perceiver) {
    let dir = std::env::temp_dir().join(format!("init-from-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = PerceiverConfig {
        input_channels: 3,
        input_axes: vec![6, 6],
        num_latents: 4,
        latent_dim: 16,
        ..PerceiverConfig::default()
    };
    let model = Perceiver::new(config, &mut Rng::new(7)).unwrap();
    model.save_checkpoint(&dir).unwrap();
    (dir, model)
}

#[test]
fn same_classes_give_the_checkpoints_outputs() {
    let (dir, original) = saved("same");
    let classes = original.config().num_outputs().unwrap();
    let (model, fresh) = init_model_from(&dir, &shape(), classes, 1).unwrap();
    assert!(fresh.is_empty(), "{fresh:?}");
    let x = Tensor::randn(&[2, 6, 6, 3], &mut Rng::new(3));
    let a = original.forward(&x, None).unwrap().logits.to_vec();
    let b = model.forward(&x, None).unwrap().logits.to_vec();
    assert_eq!(a, b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_class_count_gets_a_new_head_only() {
    let (dir, original) = saved("other");
    let (model, fresh) = init_model_from(&dir, &shape(), 3, 1).unwrap();
    assert_eq!(model.config().num_outputs(), Some(3));
    assert!(
        !fresh.is_empty() && fresh.iter().all(|n| n.starts_with("head.fc")),
        "{fresh:?}"
    );
    for p in model.params().iter() {
        if !fresh.contains(&p.name().to_string()) {
            let o = original.params().get(p.name()).unwrap();
            assert_eq!(o.value().to_vec(), p.value().to_vec(), "{}", p.name());
        }
    }
    // Data with other channels does not fit.
    let mut grey = shape();
    grey.channels = 1;
    let e = init_model_from(&dir, &grey, 3, 1).unwrap_err().to_string();
    assert!(e.contains("input channels"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model with the conv preprocessor trains: its BatchNorm running statistics (state without
/// gradients) are frozen, not reported as missing gradients, and stay as they were.
#[test]
fn the_conv_preprocessor_trains_with_its_running_statistics_frozen() {
    use perceiver_model::train::TrainBatch;
    use perceiver_model::Preprocessor;
    let config = PerceiverConfig {
        input_channels: 3,
        input_axes: vec![16, 12],
        preprocessor: Preprocessor::ConvDownsample { channels: 8 },
        num_latents: 4,
        latent_dim: 16,
        ..PerceiverConfig::default()
    };
    let model = Perceiver::new(config, &mut Rng::new(1)).unwrap();
    assert_eq!(
        model.state_names(),
        vec!["pre.bn.running_mean", "pre.bn.running_var"]
    );
    let before = model
        .params()
        .get("pre.bn.running_var")
        .unwrap()
        .value()
        .to_vec();
    let conv = model
        .params()
        .get("pre.conv.weight")
        .unwrap()
        .value()
        .to_vec();
    let mut hyper = perceiver_tasks::task_preset(perceiver_tasks::DatasetKind::Shapes).hyper;
    hyper.warmup = 0; // the first step moves the weights
    let mut trainer = perceiver_tasks::trainer_for(model, &hyper, 10).unwrap();
    let batch = TrainBatch::new(Tensor::randn(&[2, 16, 12, 3], &mut Rng::new(2)), vec![0, 1]);
    trainer.step(&batch).unwrap();
    let p = trainer.model().params();
    assert_eq!(
        p.get("pre.bn.running_var").unwrap().value().to_vec(),
        before
    );
    let moved = p.get("pre.conv.weight").unwrap().value().to_vec() != conv;
    assert!(moved, "the convolution was not trained");
}
