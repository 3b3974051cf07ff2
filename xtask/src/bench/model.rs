//! Configurations A and B of `bench.md` through the real model (`perceiver-model` presets
//! `mnist-small` and `imagenet-bench`): A forward and A training step (forward, cross-entropy,
//! backward, Adam) at batch 32, B forward at batch 1; and the layout of the published Hugging
//! Face `vision-perceiver-fourier` (preset `perceiver-io-imagenet`) forward at batch 1. Reported as
//! examples/s, with the achieved GFLOP/s from the model's own FLOP count (a training step
//! counts 3x the forward).

use super::{Group, Point, Work};
use perceiver_model::presets::preset;
use perceiver_model::Perceiver;
use perceiver_nn::optim::{Adam, AdamConfig, Optimizer};
use perceiver_tensor::{no_grad, Rng, Tensor};
use std::hint::black_box;

/// The `model` group.
pub const GROUP: Group = Group {
    name: "model",
    about: "configs A (mnist-small) and B (imagenet-bench) through perceiver-model",
    isolated: false,
    points,
};

fn build(name: &str) -> (Perceiver, usize, Vec<usize>) {
    let config = preset(name).expect("known preset");
    let flops = config.flops_per_example().total() as usize;
    let mut shape = config.input_axes.clone();
    shape.push(config.input_channels);
    let model = Perceiver::new(config, &mut Rng::new(0)).expect("valid preset");
    (model, flops, shape)
}

fn points(quick: bool) -> Vec<Point> {
    let mut out = Vec::new();
    let batch = 32;
    let (_, a_flops, _) = {
        let c = preset("mnist-small").expect("known preset");
        (0, c.flops_per_example().total() as usize, 0)
    };
    out.push(Point {
        name: "A forward".into(),
        shape: format!("batch {batch}"),
        note: "mnist-small, no gradients".into(),
        work: Work::Examples {
            examples: batch as f64,
            flops: (a_flops * batch) as f64,
        },
        setup: Box::new(move || {
            let (model, _, mut shape) = build("mnist-small");
            shape.insert(0, batch);
            let x = Tensor::randn(&shape, &mut Rng::new(1));
            Box::new(move || {
                let y = no_grad(|| model.forward(&x, None)).expect("forward");
                black_box(y);
            })
        }),
    });
    out.push(Point {
        name: "A train step".into(),
        shape: format!("batch {batch}"),
        note: "mnist-small, cross-entropy + backward + Adam".into(),
        work: Work::Examples {
            examples: batch as f64,
            flops: (3 * a_flops * batch) as f64,
        },
        setup: Box::new(move || {
            let (model, _, mut shape) = build("mnist-small");
            shape.insert(0, batch);
            let x = Tensor::randn(&shape, &mut Rng::new(1));
            let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
            let mut opt = Adam::new(AdamConfig::default()).expect("valid config");
            Box::new(move || {
                let out = model.forward(&x, None).expect("forward");
                let loss = out.logits.cross_entropy(&labels, 0.0).expect("loss");
                let grads = loss.backward().expect("backward");
                opt.step(model.params(), &grads, 1e-4).expect("step");
            })
        }),
    });
    if !quick {
        out.push(batch1_forward(
            "B forward",
            "imagenet-bench",
            "batch 1",
            "imagenet-bench, no gradients",
        ));
        // The layout of `deepmind/vision-perceiver-fourier` (224 x 224 RGB with 2-D Fourier
        // features, 512 x 1024 latents, 8 blocks of 6 shared self-attention layers, a decoder
        // to 1000 classes), random weights: the point compared with `transformers`.
        out.push(batch1_forward(
            "HF Fourier forward",
            "perceiver-io-imagenet",
            "batch 1, 224 x 224",
            "perceiver-io-imagenet (vision-perceiver-fourier layout), no gradients",
        ));
    }
    out
}

/// The forward of preset `preset` at batch 1 on random data, without gradients. The FLOP
/// count comes from the configuration; the model is built only when the point runs.
fn batch1_forward(name: &str, preset_name: &'static str, shape: &str, note: &str) -> Point {
    let flops = preset(preset_name)
        .expect("known preset")
        .flops_per_example()
        .total() as f64;
    Point {
        name: name.into(),
        shape: shape.into(),
        note: note.into(),
        work: Work::Examples {
            examples: 1.0,
            flops,
        },
        setup: Box::new(move || {
            let (model, _, mut shape) = build(preset_name);
            shape.insert(0, 1);
            let x = Tensor::randn(&shape, &mut Rng::new(1));
            Box::new(move || {
                let y = no_grad(|| model.forward(&x, None)).expect("forward");
                black_box(y);
            })
        }),
    }
}
