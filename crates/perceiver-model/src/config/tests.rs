//! Config tests: defaults, JSON round trips, sharing plans, field-naming errors, widths.

use super::*;

#[test]
fn default_is_valid_and_round_trips() {
    let c = PerceiverConfig::default();
    c.validate().unwrap();
    let back = PerceiverConfig::from_json(&c.to_json()).unwrap();
    assert_eq!(c, back);
    let partial =
        PerceiverConfig::from_json(r#"{"num_latents": 8, "sharing": "lucidrains"}"#).unwrap();
    assert_eq!(partial.num_latents, 8);
    assert_eq!(partial.sharing, WeightSharing::Lucidrains);
    assert!(PerceiverConfig::from_json(r#"{"num_latent": 8}"#).is_err());
}

#[test]
fn sharing_plans() {
    let mut c = PerceiverConfig {
        num_blocks: 4,
        num_cross_attends: 3,
        ..Default::default()
    };
    assert_eq!(
        c.sharing_plan(),
        SharingPlan {
            cross: vec![0, 1, 1],
            towers: vec![0, 0, 0, 0]
        }
    );
    c.sharing = WeightSharing::Lucidrains;
    assert_eq!(c.sharing_plan().towers, vec![0, 1, 1, 1]);
    c.sharing = WeightSharing::None;
    assert_eq!(c.sharing_plan().cross, vec![0, 1, 2]);
    assert_eq!(c.sharing_plan().num_tower_sets(), 4);
    c.sharing = WeightSharing::All;
    assert_eq!(c.sharing_plan().num_cross_sets(), 1);
    c.sharing = WeightSharing::Custom {
        cross: vec![0, 1, 0],
        towers: vec![0, 1, 2, 1],
    };
    c.validate().unwrap();
    c.sharing = WeightSharing::Custom {
        cross: vec![0, 2, 1],
        towers: vec![0, 1, 2, 1],
    };
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Inconsistent {
            field: "sharing.cross",
            ..
        })
    ));
    c.sharing = WeightSharing::Custom {
        cross: vec![0],
        towers: vec![0, 1, 2, 1],
    };
    assert!(c.validate().is_err());
    let s = serde_json::to_string(&WeightSharing::Custom {
        cross: vec![0],
        towers: vec![0],
    })
    .unwrap();
    assert_eq!(s, r#"{"custom":{"cross":[0],"towers":[0]}}"#);
}

#[test]
fn errors_name_the_field() {
    let c = PerceiverConfig {
        self_attention: AttentionConfig {
            heads: 3,
            qk_dim: None,
            v_dim: None,
        },
        ..Default::default()
    };
    assert_eq!(
        c.validate(),
        Err(ConfigError::NotDivisible {
            field: "self_attention.qk_dim",
            width: 128,
            heads: 3
        })
    );
    let c = PerceiverConfig {
        num_latents: 0,
        ..Default::default()
    };
    assert_eq!(
        c.validate(),
        Err(ConfigError::Zero {
            field: "num_latents"
        })
    );
    let bad = [
        (
            PerceiverConfig {
                num_cross_attends: 3,
                ..Default::default()
            },
            "num_cross_attends",
        ),
        (
            PerceiverConfig {
                dropout: DropoutConfig {
                    attention: 1.5,
                    feed_forward: 0.0,
                },
                ..Default::default()
            },
            "dropout.attention",
        ),
        (
            PerceiverConfig {
                layer_norm_eps: 0.0,
                ..Default::default()
            },
            "layer_norm_eps",
        ),
    ];
    for (c, field) in bad {
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn widths() {
    let c = PerceiverConfig::default();
    // 1 channel + 2 * (2 * 16 + 1) Fourier channels
    assert_eq!(c.input_width(), 67);
    assert_eq!(c.cross_dims().qk, 67);
    assert_eq!(c.self_dims().qk, 128);
    assert_eq!(FeedForwardConfig::geglu(4).hidden(10), (80, 40));
    assert_eq!(FeedForwardConfig::gelu(2).hidden(10), (20, 20));
}

#[test]
fn absurd_sizes_are_refused_naming_the_field() {
    let field = |c: PerceiverConfig| match c.validate() {
        Err(ConfigError::TooLarge { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let d = PerceiverConfig::default;
    assert_eq!(
        field(PerceiverConfig {
            input_axes: vec![1 << 40, 1 << 40],
            ..d()
        }),
        "input_axes"
    );
    assert_eq!(
        field(PerceiverConfig {
            num_latents: 1 << 40,
            latent_dim: 1 << 20,
            ..d()
        }),
        "num_latents"
    );
    assert_eq!(
        field(PerceiverConfig {
            self_attention: AttentionConfig::with_head_dim(1 << 40, 1 << 40),
            ..d()
        }),
        "self_attention.qk_dim"
    );
    assert_eq!(
        field(PerceiverConfig {
            self_feed_forward: FeedForwardConfig::gelu(usize::MAX / 2),
            ..d()
        }),
        "self_feed_forward.multiplier"
    );
    assert_eq!(
        field(PerceiverConfig {
            position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
                usize::MAX / 2,
                vec![28.0],
            )),
            ..d()
        }),
        "position_encoding"
    );
    assert_eq!(
        field(PerceiverConfig {
            num_blocks: 1 << 40,
            ..d()
        }),
        "num_blocks"
    );
    // The message names the factors.
    let e = PerceiverConfig {
        num_latents: 1 << 40,
        latent_dim: 1 << 20,
        ..d()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("num_latents 1099511627776 × latent_dim 1048576"),
        "{e}"
    );
}

#[test]
fn counts_of_huge_configs_are_errors_not_wraps() {
    let huge = PerceiverConfig {
        num_latents: 1 << 20,
        latent_dim: 1 << 20,
        self_feed_forward: FeedForwardConfig::gelu(16),
        num_blocks: 1 << 10,
        self_per_block: 1 << 10,
        sharing: WeightSharing::None,
        ..PerceiverConfig::default()
    };
    huge.validate().unwrap();
    let e = huge.try_flops_per_example().unwrap_err();
    assert!(matches!(e, crate::ModelError::Overflow { .. }), "{e}");
    assert_eq!(huge.flops_per_example().total(), u64::MAX);
    let e = huge.try_num_params().unwrap_err();
    assert!(matches!(e, crate::ModelError::Overflow { .. }), "{e}");
    assert_eq!(huge.num_params(), usize::MAX);
    let small = PerceiverConfig::default();
    assert_eq!(small.try_num_params().unwrap() as usize, small.num_params());
    assert_eq!(
        small.try_flops_per_example().unwrap(),
        small.flops_per_example()
    );
}
