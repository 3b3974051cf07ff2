//! Behaviour of the model: checkpoints, sharing, masks, positions, kernels, imports.

use perceiver_model::import::{hf, lucidrains};
use perceiver_model::{
    AttentionConfig, AttentionKernel, DecoderConfig, DropoutConfig, FeedForwardConfig,
    ForwardOptions, HeadConfig, ModelError, Perceiver, PerceiverConfig, QueryConfig, TensorProblem,
    WeightSharing,
};
use perceiver_pos::{grid_positions, FourierConfig, PositionEncodingConfig};
use perceiver_tensor::{Rng, Tensor};

fn small() -> PerceiverConfig {
    PerceiverConfig {
        input_channels: 2,
        input_axes: vec![5, 3],
        position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
            3,
            vec![5.0, 3.0],
        )),
        num_latents: 4,
        latent_dim: 8,
        self_attention: AttentionConfig {
            heads: 2,
            qk_dim: None,
            v_dim: None,
        },
        num_blocks: 3,
        num_cross_attends: 3,
        head: HeadConfig::Classifier {
            num_classes: 3,
            layer_norm: true,
        },
        ..Default::default()
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.to_vec()
        .iter()
        .zip(b.to_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("perceiver-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn checkpoint_round_trip_gives_identical_outputs() {
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(2));
    let before = m.forward(&x, None).unwrap();
    let dir = tmp_dir("ckpt");
    m.save_checkpoint(&dir).unwrap();
    assert!(dir.join("model.safetensors").exists() && dir.join("config.json").exists());
    let back = Perceiver::load_checkpoint(&dir).unwrap();
    assert_eq!(back.config(), m.config());
    let after = back.forward(&x, None).unwrap();
    assert_eq!(before.logits.to_vec(), after.logits.to_vec());
    assert_eq!(before.latents.to_vec(), after.latents.to_vec());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_lists_every_problem() {
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let mut t = m.params().to_named_tensors();
    t.retain(|(n, _)| n != "latents");
    for (n, v) in t.iter_mut() {
        if n == "head.fc.weight" {
            *v = Tensor::zeros(&[2, 2]);
        }
    }
    t.push(("extra.weight".into(), Tensor::zeros(&[3])));
    let err = m.load_named(&t, "test").unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 3, "{err}");
    assert!(p.contains(&TensorProblem::Missing {
        name: "latents".into(),
        expected: vec![4, 8]
    }));
    assert!(p.contains(&TensorProblem::Shape {
        name: "head.fc.weight".into(),
        expected: vec![3, 8],
        found: vec![2, 2]
    }));
    assert!(p.contains(&TensorProblem::Unexpected {
        name: "extra.weight".into(),
        shape: vec![3]
    }));
    let msg = err.to_string();
    assert!(
        msg.contains("latents") && msg.contains("head.fc.weight") && msg.contains("extra.weight")
    );
}

#[test]
fn a_bad_config_json_names_the_field() {
    let dir = tmp_dir("badcfg");
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    m.save_checkpoint(&dir).unwrap();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"num_latents\": 4", "\"num_latents\": 0"),
    )
    .unwrap();
    let err = Perceiver::load_checkpoint(&dir).unwrap_err();
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    assert!(err.to_string().contains("num_latents"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// At inference, cross-attends that share weights project the input's keys and values once
/// and reuse them: the outputs match the forward that records gradients (which recomputes them
/// in every cross-attend), with and without a key mask.
#[test]
fn inference_reuses_shared_keys_and_values_with_the_same_outputs() {
    let m = Perceiver::new(small(), &mut Rng::new(7)).unwrap();
    assert_eq!(m.sharing_plan().cross, vec![0, 1, 1]);
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(8));
    let keep: Vec<f32> = (0..30)
        .map(|i| if i % 4 == 3 { 0.0 } else { 1.0 })
        .collect();
    let mask = Tensor::from_vec(keep, &[2, 15]).unwrap();
    for mask in [None, Some(&mask)] {
        let opts = || ForwardOptions {
            mask,
            ..Default::default()
        };
        let tracked = m.forward_with(&x, opts()).unwrap().logits;
        let reused = perceiver_tensor::no_grad(|| m.forward_with(&x, opts()))
            .unwrap()
            .logits;
        assert!(
            max_diff(&tracked, &reused) < 1e-5,
            "{}",
            max_diff(&tracked, &reused)
        );
    }
}

/// A shared set is one set of parameters used at several positions: its gradient is the sum
/// of the gradients the unshared copies would get.
#[test]
fn shared_gradients_are_the_sum_over_positions() {
    let shared = Perceiver::new(small(), &mut Rng::new(5)).unwrap();
    assert_eq!(shared.sharing_plan().cross, vec![0, 1, 1]);
    assert_eq!(shared.sharing_plan().towers, vec![0, 0, 0]);
    let unshared = Perceiver::new(
        PerceiverConfig {
            sharing: WeightSharing::None,
            ..small()
        },
        &mut Rng::new(6),
    )
    .unwrap();
    // copy the shared weights into every position of the unshared model
    for p in unshared.params().iter() {
        let n = p.name();
        let src = if let Some(rest) = n.strip_prefix("cross.") {
            let (i, tail) = rest.split_once('.').unwrap();
            let set = shared.sharing_plan().cross[i.parse::<usize>().unwrap()];
            format!("cross.{set}.{tail}")
        } else if let Some(rest) = n.strip_prefix("self.") {
            let (i, tail) = rest.split_once('.').unwrap();
            let set = shared.sharing_plan().towers[i.parse::<usize>().unwrap()];
            format!("self.{set}.{tail}")
        } else {
            n.to_string()
        };
        p.set(&shared.params().get(&src).unwrap().value()).unwrap();
    }
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(7));
    let la = shared.forward(&x, None).unwrap().logits;
    let lb = unshared.forward(&x, None).unwrap().logits;
    assert!(max_diff(&la, &lb) < 1e-6);
    let ga = la.cross_entropy(&[0, 2], 0.0).unwrap().backward().unwrap();
    let gb = lb.cross_entropy(&[0, 2], 0.0).unwrap().backward().unwrap();
    for (name, sets) in [
        ("cross.1.attn.to_q.weight", vec!["cross.1", "cross.2"]),
        ("self.0.1.ff.fc1.weight", vec!["self.0", "self.1", "self.2"]),
    ] {
        let g = shared.params().get(name).unwrap().grad(&ga).unwrap();
        let tail = name.splitn(3, '.').nth(2).unwrap();
        let mut sum = Tensor::zeros(g.shape());
        for s in sets {
            let p = unshared.params().get(&format!("{s}.{tail}")).unwrap();
            sum = sum.add(p.grad(&gb).unwrap()).unwrap();
        }
        let scale = sum.to_vec().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max_diff(g, &sum) <= 1e-5 * scale, "{name}");
    }
}

#[test]
fn masked_tokens_do_not_matter() {
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let mut rng = Rng::new(3);
    let x = Tensor::randn(&[2, 5, 3, 2], &mut rng);
    let mut mask = vec![1.0f32; 30];
    for t in 10..15 {
        mask[t] = 0.0; // example 0 hides its last 5 tokens
    }
    for t in 15 + 4..30 {
        mask[t] = 0.0; // example 1 keeps only 4
    }
    let mask = Tensor::from_vec(mask, &[2, 15]).unwrap();
    let a = m.forward(&x, Some(&mask)).unwrap().logits;
    // change the masked tokens
    let mut v = x.to_vec();
    for (i, val) in v.iter_mut().enumerate() {
        let (b, tok) = (i / 30, (i % 30) / 2);
        if (b == 0 && tok >= 10) || (b == 1 && tok >= 4) {
            *val += 100.0;
        }
    }
    let y = Tensor::from_vec(v, &[2, 5, 3, 2]).unwrap();
    let b = m.forward(&y, Some(&mask)).unwrap().logits;
    assert!(max_diff(&a, &b) < 1e-6);
    let c = m.forward(&y, None).unwrap().logits;
    assert!(max_diff(&a, &c) > 1e-3);
    assert!(m.forward(&x, Some(&Tensor::ones(&[2, 14]))).is_err());
}

#[test]
fn explicit_positions_equal_the_grid_and_permutations_commute() {
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(3));
    let grid = m.forward(&x, None).unwrap().logits;
    let pos = grid_positions(&[5, 3])
        .reshape(&[1, 15, 2])
        .unwrap()
        .broadcast_to(&[2, 15, 2])
        .unwrap()
        .contiguous();
    let flat = x.reshape(&[2, 15, 2]).unwrap();
    let opts = ForwardOptions {
        positions: Some(&pos),
        ..Default::default()
    };
    let explicit = m.forward_with(&flat, opts).unwrap().logits;
    assert!(max_diff(&grid, &explicit) < 1e-6);
    // permuting tokens together with their positions changes nothing (up to rounding)
    let perm: Vec<usize> = (0..15).map(|i| (i * 7) % 15).collect();
    let xp = flat.index_select(1, &perm).unwrap();
    let pp = pos.index_select(1, &perm).unwrap();
    let permuted = m
        .forward_with(
            &xp,
            ForwardOptions {
                positions: Some(&pp),
                ..Default::default()
            },
        )
        .unwrap()
        .logits;
    assert!(max_diff(&grid, &permuted) < 1e-5);
}

#[test]
fn fused_and_reference_kernels_agree() {
    let mut m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(3));
    let a = m.forward(&x, None).unwrap();
    m.set_attention_kernel(AttentionKernel::Reference);
    let b = m.forward(&x, None).unwrap();
    assert!(max_diff(&a.logits, &b.logits) < 1e-5);
    assert!(max_diff(&a.latents, &b.latents) < 1e-5);
}

#[test]
fn dropout_only_in_training_and_needs_a_generator() {
    let c = PerceiverConfig {
        dropout: DropoutConfig {
            attention: 0.2,
            feed_forward: 0.3,
        },
        ..small()
    };
    let m = Perceiver::new(c, &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(3));
    let e1 = m.forward(&x, None).unwrap().logits;
    let e2 = m.forward(&x, None).unwrap().logits;
    assert_eq!(e1.to_vec(), e2.to_vec());
    let train = |rng: Option<&mut Rng>| {
        m.forward_with(
            &x,
            ForwardOptions {
                train: true,
                rng,
                ..Default::default()
            },
        )
    };
    assert!(train(None).is_err());
    let mut rng = Rng::new(9);
    let t = train(Some(&mut rng)).unwrap().logits;
    assert!(max_diff(&t, &e1) > 1e-4);
}

#[test]
fn decoders_and_headless_outputs() {
    let c = PerceiverConfig {
        head: HeadConfig::Decoder(DecoderConfig {
            query: QueryConfig::Fourier {
                fourier: FourierConfig::deepmind(2, vec![4.0]),
                index_dims: vec![2, 3],
            },
            attention: AttentionConfig {
                heads: 2,
                qk_dim: Some(8),
                v_dim: None,
            },
            feed_forward: FeedForwardConfig::gelu(1),
            query_residual: false,
            num_outputs: 5,
        }),
        ..small()
    };
    let m = Perceiver::new(c, &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(3));
    let out = m.forward(&x, None).unwrap();
    assert_eq!(out.logits.shape(), &[2, 6, 5]);
    let g = out.logits.sum_all().backward().unwrap();
    assert!(m
        .params()
        .get("decoder.fc.weight")
        .unwrap()
        .grad(&g)
        .is_ok());

    let m = Perceiver::new(
        PerceiverConfig {
            head: HeadConfig::None,
            ..small()
        },
        &mut Rng::new(1),
    )
    .unwrap();
    let out = m.forward(&x, None).unwrap();
    assert_eq!(out.logits.shape(), &[2, 4, 8]);
}

#[test]
fn other_grid_sizes_work_with_fourier_features_and_bad_inputs_are_errors() {
    let m = Perceiver::new(small(), &mut Rng::new(1)).unwrap();
    let x = Tensor::randn(&[1, 7, 2, 2], &mut Rng::new(3));
    assert_eq!(m.forward(&x, None).unwrap().logits.shape(), &[1, 3]);
    assert!(m.forward(&Tensor::zeros(&[1, 5, 3, 4]), None).is_err());
    assert!(m.forward(&Tensor::zeros(&[1, 15, 2]), None).is_err());
}

#[test]
fn lucidrains_export_import_round_trip_and_alias_checks() {
    let c = PerceiverConfig {
        sharing: WeightSharing::Lucidrains,
        cross_feed_forward: FeedForwardConfig::geglu(4),
        self_feed_forward: FeedForwardConfig::geglu(4),
        bias: perceiver_model::BiasConfig::lucidrains(),
        cross_attention: AttentionConfig::with_head_dim(1, 8),
        self_attention: AttentionConfig::with_head_dim(2, 4),
        position_encoding: PositionEncodingConfig::Fourier(FourierConfig::lucidrains(3, 6.0)),
        ..small()
    };
    let m = Perceiver::new(c.clone(), &mut Rng::new(1)).unwrap();
    let sd = lucidrains::export_lucidrains(&m).unwrap();
    assert!(sd
        .iter()
        .any(|(n, _)| n == "layers.2.cross_attn.fn.to_kv.weight"));
    assert!(sd
        .iter()
        .any(|(n, t)| n == "layers.0.cross_attn.fn.to_kv.weight" && t.shape() == [16, 2 + 14]));
    let back = lucidrains::import_lucidrains(&sd, c.clone()).unwrap();
    let x = Tensor::randn(&[2, 5, 3, 2], &mut Rng::new(3));
    assert_eq!(
        m.forward(&x, None).unwrap().logits.to_vec(),
        back.forward(&x, None).unwrap().logits.to_vec()
    );
    let map = lucidrains::name_map(&c).unwrap();
    assert_eq!(
        map.alias_prefixes.get("layers.2."),
        Some(&"layers.1.".to_string())
    );
    // an alias that differs from its owner, a missing tensor and a stray one are all reported
    let mut bad: Vec<(String, Tensor)> = sd
        .into_iter()
        .filter(|(n, _)| n != "latents")
        .map(|(n, t)| {
            if n == "layers.2.cross_ff.norm.weight" {
                (n, t.add_scalar(1.0))
            } else {
                (n, t)
            }
        })
        .collect();
    bad.push(("stray".into(), Tensor::zeros(&[1])));
    let err = lucidrains::import_lucidrains(&bad, c).unwrap_err();
    let p = err.problems();
    assert_eq!(p.len(), 3, "{err}");
    assert!(p.iter().any(|p| matches!(p, TensorProblem::AliasMismatch { alias, .. } if alias == "layers.2.cross_ff.norm.weight")));
    assert!(p
        .iter()
        .any(|p| matches!(p, TensorProblem::Missing { name, .. } if name == "latents")));
    assert!(p
        .iter()
        .any(|p| matches!(p, TensorProblem::Unexpected { name, .. } if name == "stray")));
}

#[test]
fn hf_export_import_round_trip() {
    let hf_json = serde_json::json!({
        "num_latents": 4, "d_latents": 8, "d_model": 3 + 2 * (2 * 4 + 1),
        "num_blocks": 2, "num_self_attends_per_block": 2, "num_self_attention_heads": 2,
        "num_cross_attention_heads": 1, "qk_channels": null, "v_channels": null,
        "cross_attention_shape_for_attention": "kv", "self_attention_widening_factor": 2,
        "cross_attention_widening_factor": 1, "hidden_act": "gelu", "use_query_residual": true,
        "id2label": {"0": "a", "1": "b", "2": "c"}
    });
    let c = hf::config_from_hf(
        &hf_json,
        FourierConfig::deepmind(4, vec![16.0, 16.0]),
        &[4, 3],
        None,
    )
    .unwrap();
    assert_eq!(c.input_channels, 3);
    assert_eq!(c.cross_dims().qk, 21);
    let m = Perceiver::new(c.clone(), &mut Rng::new(2)).unwrap();
    let sd = hf::export_hf(&m).unwrap();
    assert!(sd.iter().any(|(n, t)| n
        == "perceiver.encoder.cross_attention.attention.self.query.weight"
        && t.shape() == [21, 8]));
    let back = hf::import_hf(&sd, c.clone()).unwrap();
    let x = Tensor::randn(&[2, 3, 4, 3], &mut Rng::new(3));
    let xl = hf::channels_last(&x).unwrap();
    assert_eq!(xl.shape(), &[2, 4, 3, 3]);
    assert_eq!(
        m.forward(&xl, None).unwrap().logits.to_vec(),
        back.forward(&xl, None).unwrap().logits.to_vec()
    );
    // a mis-shaped tensor is named with both shapes
    let bad: Vec<(String, Tensor)> = sd
        .into_iter()
        .map(|(n, t)| {
            if n == "perceiver.embeddings.latents" {
                (n, Tensor::zeros(&[5, 8]))
            } else {
                (n, t)
            }
        })
        .collect();
    let err = hf::import_hf(&bad, c).unwrap_err();
    assert!(
        err.to_string().contains("perceiver.embeddings.latents"),
        "{err}"
    );
    assert!(err.to_string().contains("[4, 8]") && err.to_string().contains("[5, 8]"));
}

#[test]
fn layouts_refuse_configurations_they_cannot_hold() {
    // lucidrains' head always has a LayerNorm, so a classifier without one has no
    // lucidrains names; the Hugging Face layout has a single cross-attend
    let c = PerceiverConfig {
        head: HeadConfig::Classifier {
            num_classes: 3,
            layer_norm: false,
        },
        ..small()
    };
    let err = lucidrains::import_lucidrains(&[], c).unwrap_err();
    assert!(matches!(err, ModelError::Unsupported(_)), "{err}");
    let err = hf::name_map(&small()).unwrap_err();
    assert!(err.to_string().contains("one cross-attend"));
}

/// A bad input is reported at the user's call, not inside the library.
#[test]
fn input_errors_name_the_callers_line() {
    let model = Perceiver::new(
        perceiver_model::preset("mnist-small").unwrap(),
        &mut Rng::new(0),
    )
    .unwrap();
    let bad = [
        Tensor::zeros(&[2, 28, 28, 3]),
        Tensor::zeros(&[2, 28, 1]),
        Tensor::zeros(&[1]),
    ];
    for x in &bad {
        let line = line!() + 1;
        let err = model.forward(x, None).unwrap_err().to_string();
        assert!(err.contains(&format!("{}:{line}", file!())), "{err}");
    }
    let x = Tensor::zeros(&[2, 28, 28, 1]);
    let mask = Tensor::ones(&[2, 5]);
    let line = line!() + 1;
    let err = model.forward(&x, Some(&mask)).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:{line}", file!())), "{err}");
}

/// Every attention kernel of the attention crate can be chosen from the config (by its JSON
/// name), and each gives the reference kernel's logits.
#[test]
fn every_attention_kernel_is_a_config_choice() {
    let base = perceiver_model::preset("mnist-small").unwrap();
    let x = Tensor::randn(&[2, 28, 28, 1], &mut Rng::new(3));
    let logits = |name: &str| {
        let mut json: serde_json::Value = serde_json::from_str(&base.to_json()).unwrap();
        json["attention_kernel"] = serde_json::Value::from(name);
        let config = perceiver_model::PerceiverConfig::from_json(&json.to_string()).unwrap();
        let model = Perceiver::new(config, &mut Rng::new(0)).unwrap();
        model.forward(&x, None).unwrap().logits.to_vec()
    };
    let want = logits("reference");
    for name in ["fused", "flash", "cross_projected", "cross_folded"] {
        let got = logits(name);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-5 * scale.max(1.0), "{name}: {err}");
    }
    let mut json: serde_json::Value = serde_json::from_str(&base.to_json()).unwrap();
    json["attention_kernel"] = serde_json::Value::from("fastest");
    assert!(perceiver_model::PerceiverConfig::from_json(&json.to_string()).is_err());
}
