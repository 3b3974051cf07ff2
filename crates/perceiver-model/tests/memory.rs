//! The memory estimate against reality: the growth of this process's peak resident memory
//! over one training step (the only test of this binary, so nothing else allocates meanwhile).

use perceiver_model::train::{TrainBatch, Trainer, TrainerConfig};
use perceiver_model::{AttentionConfig, Perceiver, PerceiverConfig, Rng, Tensor};
use perceiver_nn::optim::{Adam, AdamConfig, Constant};

/// A `kB` field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(field))?;
    let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn the_estimate_is_within_a_small_factor_of_the_measured_peak() {
    let config = PerceiverConfig {
        input_channels: 3,
        input_axes: vec![32, 32],
        num_latents: 256,
        latent_dim: 128,
        self_attention: AttentionConfig {
            heads: 8,
            ..AttentionConfig::default()
        },
        ..PerceiverConfig::default()
    };
    let batch = 8;
    let estimate = config.memory_estimate(batch, true).unwrap();
    let model = Perceiver::new(config, &mut Rng::new(0)).unwrap();
    let mut trainer = Trainer::new(
        model,
        Box::new(Adam::new(AdamConfig::default()).unwrap()),
        Box::new(Constant(1e-3)),
        TrainerConfig::default(),
        Rng::new(1),
    );
    let inputs = Tensor::randn(&[batch, 32, 32, 3], &mut Rng::new(2));
    let b = TrainBatch::new(inputs, (0..batch).map(|i| i % 10).collect());
    let Some(before) = status_bytes("VmRSS:") else {
        return; // not Linux
    };
    trainer.step(&b).unwrap();
    trainer.step(&b).unwrap();
    let peak = status_bytes("VmHWM:").unwrap();
    let grown = peak.saturating_sub(before) as f64;
    // What the step allocates: activations, gradients and the optimizer's buffers.
    let predicted = (estimate.activations + estimate.optimizer) as f64;
    eprintln!("estimate {estimate:?}; measured growth {grown}");
    assert!(
        grown >= 0.2 * predicted && grown <= 5.0 * predicted,
        "measured {grown} bytes, estimated {predicted}"
    );
}
