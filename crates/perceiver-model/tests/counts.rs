//! Parameter and FLOP counts: presets give the published numbers; the analytic count (from the
//! config alone) agrees with the built model's parameters, name by name.

use perceiver_model::{
    preset, AttentionConfig, BiasConfig, DecoderConfig, FeedForwardConfig, HeadConfig, Perceiver,
    PerceiverConfig, QueryConfig, WeightSharing, PRESETS,
};
use perceiver_pos::{FourierConfig, PositionEncodingConfig};
use perceiver_tensor::Rng;

fn count_prefix(c: &PerceiverConfig, prefix: &str) -> usize {
    c.param_shapes()
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

#[test]
fn presets_have_the_published_parameter_counts() {
    let want = [
        ("paper-imagenet", 44_912_254),
        ("paper-imagenet-unshared", 326_241_856),
        ("perceiver-io-imagenet", 48_440_627),
        ("mnist-small", 1_116_182),
        ("imagenet-bench", 144_631_036),
    ];
    assert_eq!(PRESETS.len(), want.len());
    for (name, n) in want {
        let c = preset(name).unwrap();
        c.validate().unwrap();
        assert_eq!(c.num_params(), n, "{name}");
    }
    assert!(preset("nope")
        .unwrap_err()
        .to_string()
        .contains("mnist-small"));
}

#[test]
fn paper_decomposition() {
    let c = preset("paper-imagenet").unwrap();
    assert_eq!(c.input_width(), 261);
    assert_eq!(c.cross_dims().qk, 261);
    // one cross-attend alone, one self-attention layer (attention + MLP, D = 1024)
    assert_eq!(count_prefix(&c, "cross.0."), 2_776_395);
    assert_eq!(count_prefix(&c, "cross.1."), 2_776_395);
    assert_eq!(count_prefix(&c, "self.0.0."), 6_301_696);
    assert_eq!(count_prefix(&c, "self.1."), 0);
    // 1 cross-attend + the tower (with latents and head)
    let one = PerceiverConfig {
        num_blocks: 1,
        num_cross_attends: 1,
        ..c.clone()
    };
    assert_eq!(one.num_params(), 42_135_859);
}

#[test]
fn paper_flops_match_the_paper() {
    let f = preset("paper-imagenet").unwrap().flops_per_example();
    let g = f.total() as f64 / 1e9;
    assert!((g - 707.2).abs() < 0.05, "{g} GFLOPs");
    assert!((f.matmul as f64 / 1e9 - 706.28).abs() < 0.01);
    assert_eq!(f.parts.len(), 8 + 8 + 1);
    let sum: u64 = f.parts.iter().map(|(_, v)| v).sum();
    assert_eq!(sum, f.total());
    // sharing does not change the compute
    let u = preset("paper-imagenet-unshared")
        .unwrap()
        .flops_per_example();
    assert_eq!(u.total(), f.total());
    // the benchmark configuration B is ~690 GFLOP (docs/bench.md)
    let b = preset("imagenet-bench")
        .unwrap()
        .flops_per_example()
        .total() as f64
        / 1e9;
    assert!((b - 690.0).abs() < 15.0, "{b}");
}

fn variants() -> Vec<(&'static str, PerceiverConfig)> {
    let base = PerceiverConfig {
        input_channels: 3,
        input_axes: vec![5, 4],
        num_latents: 6,
        latent_dim: 16,
        num_blocks: 3,
        num_cross_attends: 2,
        ..Default::default()
    };
    let mut v = vec![
        ("default", PerceiverConfig::default()),
        ("base", base.clone()),
    ];
    for (name, s) in [
        ("lucidrains", WeightSharing::Lucidrains),
        ("none", WeightSharing::None),
        ("all", WeightSharing::All),
        (
            "custom",
            WeightSharing::Custom {
                cross: vec![0, 0],
                towers: vec![0, 1, 0],
            },
        ),
    ] {
        v.push((
            name,
            PerceiverConfig {
                sharing: s,
                ..base.clone()
            },
        ));
    }
    v.push((
        "geglu, lucidrains biases, no head",
        PerceiverConfig {
            cross_feed_forward: FeedForwardConfig::geglu(4),
            self_feed_forward: FeedForwardConfig::geglu(2),
            bias: BiasConfig::lucidrains(),
            cross_attention: AttentionConfig::with_head_dim(2, 6),
            self_attention: AttentionConfig {
                heads: 4,
                qk_dim: Some(8),
                v_dim: Some(12),
            },
            head: HeadConfig::None,
            ..base.clone()
        },
    ));
    v.push((
        "trainable positions + projection, classifier without norm",
        PerceiverConfig {
            position_encoding: PositionEncodingConfig::Trainable {
                channels: 7,
                init_scale: 0.02,
            },
            position_projection: Some(5),
            head: HeadConfig::Classifier {
                num_classes: 3,
                layer_norm: false,
            },
            ..base.clone()
        },
    ));
    v.push((
        "fourier + projection, trainable decoder",
        PerceiverConfig {
            position_projection: Some(9),
            head: HeadConfig::Decoder(DecoderConfig {
                query: QueryConfig::Trainable {
                    num_queries: 3,
                    channels: 10,
                    init_scale: 0.02,
                },
                attention: AttentionConfig {
                    heads: 2,
                    qk_dim: None,
                    v_dim: Some(4),
                },
                feed_forward: FeedForwardConfig::gelu(2),
                query_residual: true,
                num_outputs: 4,
            }),
            ..base.clone()
        },
    ));
    v.push((
        "no positions, fourier decoder",
        PerceiverConfig {
            position_encoding: PositionEncodingConfig::None,
            self_per_block: 0,
            head: HeadConfig::Decoder(DecoderConfig {
                query: QueryConfig::Fourier {
                    fourier: FourierConfig::deepmind(3, vec![8.0]),
                    index_dims: vec![2, 3],
                },
                query_residual: false,
                num_outputs: 2,
                ..Default::default()
            }),
            ..base
        },
    ));
    v
}

#[test]
fn analytic_count_matches_the_built_model() {
    for (name, c) in variants() {
        c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = Perceiver::new(c.clone(), &mut Rng::new(3)).unwrap();
        let mut want = c.param_shapes();
        want.sort();
        let got: Vec<(String, Vec<usize>)> = m
            .params()
            .iter()
            .map(|p| (p.name().to_string(), p.shape()))
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(m.num_params(), c.num_params(), "{name}");
    }
}

#[test]
fn mnist_small_builds_with_the_stated_count() {
    let m = Perceiver::new(preset("mnist-small").unwrap(), &mut Rng::new(0)).unwrap();
    assert_eq!(m.num_params(), 1_116_182);
    // block 0 own weights, blocks 1.. one shared set
    assert_eq!(m.sharing_plan().cross, vec![0, 1]);
    assert_eq!(m.sharing_plan().towers, vec![0, 1]);
}
