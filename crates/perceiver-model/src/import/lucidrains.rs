//! lucidrains `perceiver-pytorch` 0.11 `Perceiver`: configuration from its constructor
//! arguments, and its `state_dict` names.
//!
//! The layout (`docs/perceiver-spec.md` section 4): `latents`; per block `i`,
//! `layers.{i}.cross_attn.{norm,norm_context,fn.to_q,fn.to_kv,fn.to_out}`,
//! `layers.{i}.cross_ff.{norm,fn.net.0,fn.net.2}`, and per self layer `j`
//! `layers.{i}.self_attns.{j}.0.{norm,fn.to_q,fn.to_kv,fn.to_out}` and
//! `layers.{i}.self_attns.{j}.1.{norm,fn.net.0,fn.net.2}`; the head `to_logits.1` (LayerNorm)
//! and `to_logits.2` (Linear). `to_kv.weight` is `[to_k; to_v]`. With `weight_tie_layers`,
//! blocks 1.. are the same modules as block 1 and appear in a `state_dict` under each alias.

use super::{json_sizes, meta_json, NameMap};
use crate::config::{
    AttentionConfig, BiasConfig, DropoutConfig, FeedForwardConfig, HeadConfig, LatentInit,
    PerceiverConfig, WeightSharing,
};
use crate::{ModelError, Perceiver, Result};
use perceiver_pos::{ChannelOrder, FourierConfig, PositionEncodingConfig};
use perceiver_tensor::{GeluKind, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn get_usize(args: &serde_json::Value, key: &str, default: Option<usize>) -> Result<usize> {
    match args.get(key) {
        Some(v) => v
            .as_u64()
            .map(|u| u as usize)
            .ok_or_else(|| ModelError::Json {
                what: format!("lucidrains argument `{key}`"),
                msg: format!("expected a non-negative integer, got {v}"),
            }),
        None => default.ok_or_else(|| {
            ModelError::Unsupported(format!("lucidrains argument `{key}` is required"))
        }),
    }
}

fn get_f32(args: &serde_json::Value, key: &str, default: Option<f32>) -> Result<f32> {
    match args.get(key) {
        Some(v) => v
            .as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| ModelError::Json {
                what: format!("lucidrains argument `{key}`"),
                msg: format!("expected a number, got {v}"),
            }),
        None => default.ok_or_else(|| {
            ModelError::Unsupported(format!("lucidrains argument `{key}` is required"))
        }),
    }
}

fn get_bool(args: &serde_json::Value, key: &str, default: bool) -> Result<bool> {
    match args.get(key) {
        Some(v) => v.as_bool().ok_or_else(|| ModelError::Json {
            what: format!("lucidrains argument `{key}`"),
            msg: format!("expected a boolean, got {v}"),
        }),
        None => Ok(default),
    }
}

/// The configuration of `Perceiver(**args)` (perceiver-pytorch 0.11; missing arguments take
/// the constructor's defaults) for inputs with index dimensions `axes`.
pub fn config_from_args(args: &serde_json::Value, axes: &[usize]) -> Result<PerceiverConfig> {
    let input_axis = get_usize(args, "input_axis", Some(2))?;
    if input_axis != axes.len() {
        return Err(ModelError::Unsupported(format!(
            "lucidrains input_axis = {input_axis} but the input has {} axes ({axes:?})",
            axes.len()
        )));
    }
    let depth = get_usize(args, "depth", None)?;
    let fourier = get_bool(args, "fourier_encode_data", true)?;
    let position_encoding = if fourier {
        PositionEncodingConfig::Fourier(FourierConfig {
            num_bands: get_usize(args, "num_freq_bands", None)?,
            max_resolution: vec![get_f32(args, "max_freq", None)?],
            concat_pos: true,
            sine_only: false,
            order: ChannelOrder::Lucidrains,
        })
    } else {
        PositionEncodingConfig::None
    };
    let cross_heads = get_usize(args, "cross_heads", Some(1))?;
    let latent_heads = get_usize(args, "latent_heads", Some(8))?;
    let config = PerceiverConfig {
        input_channels: get_usize(args, "input_channels", Some(3))?,
        input_axes: axes.to_vec(),
        preprocessor: crate::Preprocessor::None,
        position_encoding,
        position_projection: None,
        num_latents: get_usize(args, "num_latents", Some(512))?,
        latent_dim: get_usize(args, "latent_dim", Some(512))?,
        latent_init: LatentInit {
            std: 1.0,
            truncation: None,
        },
        cross_attention: AttentionConfig::with_head_dim(
            cross_heads,
            get_usize(args, "cross_dim_head", Some(64))?,
        ),
        cross_feed_forward: FeedForwardConfig::geglu(4),
        self_attention: AttentionConfig::with_head_dim(
            latent_heads,
            get_usize(args, "latent_dim_head", Some(64))?,
        ),
        self_feed_forward: FeedForwardConfig::geglu(4),
        self_per_block: get_usize(args, "self_per_cross_attn", Some(1))?,
        num_blocks: depth,
        num_cross_attends: depth,
        sharing: if get_bool(args, "weight_tie_layers", false)? {
            WeightSharing::Lucidrains
        } else {
            WeightSharing::None
        },
        gelu: GeluKind::Erf,
        bias: BiasConfig::lucidrains(),
        query_residual: true,
        dropout: DropoutConfig {
            attention: get_f32(args, "attn_dropout", Some(0.0))?,
            feed_forward: get_f32(args, "ff_dropout", Some(0.0))?,
        },
        layer_norm_eps: 1e-5,
        head: if get_bool(args, "final_classifier_head", true)? {
            HeadConfig::Classifier {
                num_classes: get_usize(args, "num_classes", Some(1000))?,
                layer_norm: true,
            }
        } else {
            HeadConfig::None
        },
        attention_kernel: Default::default(),
    };
    config.validate()?;
    Ok(config)
}

/// The configuration from fixture metadata: `config` (constructor arguments as JSON) and
/// `axes` (the input's index dimensions).
pub fn config_from_metadata(metadata: &HashMap<String, String>) -> Result<PerceiverConfig> {
    let args = meta_json(metadata, "config")?;
    let axes = json_sizes(&meta_json(metadata, "axes")?, "metadata `axes`")?;
    config_from_args(&args, &axes)
}

/// The tied blocks recorded in fixture metadata `tied` (alias prefix -> owner prefix, JSON);
/// empty when absent.
pub fn tied_from_metadata(metadata: &HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    if !metadata.contains_key("tied") {
        return Ok(BTreeMap::new());
    }
    serde_json::from_value(meta_json(metadata, "tied")?).map_err(|e| ModelError::Json {
        what: "metadata `tied`".into(),
        msg: e.to_string(),
    })
}

/// The lucidrains names of a configuration's parameters. Works for any weight sharing: a
/// component whose set was first used by an earlier block is an alias of that block's
/// tensors; a block entirely aliasing one earlier block is also recorded as a prefix alias.
pub fn name_map(config: &PerceiverConfig) -> Result<NameMap> {
    let c = config;
    if c.num_cross_attends != c.num_blocks {
        return Err(ModelError::Unsupported(format!(
            "the lucidrains layout has a cross-attend in every block; this configuration has {} cross-attends for {} blocks",
            c.num_cross_attends, c.num_blocks
        )));
    }
    let plan = c.sharing_plan();
    let mut map = NameMap::default();
    map.push("latents", &["latents".to_string()]);
    let mut cross_owner: BTreeMap<usize, usize> = BTreeMap::new();
    let mut tower_owner: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..c.num_blocks {
        let (cs, ts) = (plan.cross[i], plan.towers[i]);
        let p = format!("layers.{i}.");
        let mut cross_names: Vec<(String, Vec<String>)> = Vec::new();
        let o = format!("cross.{cs}");
        for (r, ours) in [
            ("cross_attn.norm", "norm_q"),
            ("cross_attn.norm_context", "norm_kv"),
            ("cross_attn.fn.to_out", "attn.to_out"),
            ("cross_ff.norm", "ff.norm"),
            ("cross_ff.fn.net.0", "ff.fc1"),
            ("cross_ff.fn.net.2", "ff.fc2"),
        ] {
            for s in ["weight", "bias"] {
                cross_names.push((format!("{r}.{s}"), vec![format!("{o}.{ours}.{s}")]));
            }
        }
        cross_names.push((
            "cross_attn.fn.to_q.weight".into(),
            vec![format!("{o}.attn.to_q.weight")],
        ));
        cross_names.push((
            "cross_attn.fn.to_kv.weight".into(),
            vec![
                format!("{o}.attn.to_k.weight"),
                format!("{o}.attn.to_v.weight"),
            ],
        ));
        let mut tower_names: Vec<(String, Vec<String>)> = Vec::new();
        for j in 0..c.self_per_block {
            let o = format!("self.{ts}.{j}");
            let r = format!("self_attns.{j}");
            for (rr, ours) in [
                ("0.norm", "norm"),
                ("0.fn.to_out", "attn.to_out"),
                ("1.norm", "ff.norm"),
                ("1.fn.net.0", "ff.fc1"),
                ("1.fn.net.2", "ff.fc2"),
            ] {
                for s in ["weight", "bias"] {
                    tower_names.push((format!("{r}.{rr}.{s}"), vec![format!("{o}.{ours}.{s}")]));
                }
            }
            tower_names.push((
                format!("{r}.0.fn.to_q.weight"),
                vec![format!("{o}.attn.to_q.weight")],
            ));
            tower_names.push((
                format!("{r}.0.fn.to_kv.weight"),
                vec![
                    format!("{o}.attn.to_k.weight"),
                    format!("{o}.attn.to_v.weight"),
                ],
            ));
        }
        let co = *cross_owner.entry(cs).or_insert(i);
        let to = *tower_owner.entry(ts).or_insert(i);
        for (names, owner) in [(cross_names, co), (tower_names, to)] {
            for (suffix, ours) in names {
                if owner == i {
                    map.push(format!("{p}{suffix}"), &ours);
                } else {
                    map.aliases
                        .push((format!("{p}{suffix}"), format!("layers.{owner}.{suffix}")));
                }
            }
        }
        if co == to && co != i {
            map.alias_prefixes.insert(p, format!("layers.{co}."));
        }
    }
    // lucidrains' head is always mean -> LayerNorm -> Linear; other heads fail the coverage
    // check of the import.
    if let HeadConfig::Classifier { .. } = &c.head {
        map.push_wb("to_logits.1", "head.norm");
        map.push_wb("to_logits.2", "head.fc");
    }
    Ok(map)
}

/// Builds a model for `config` from a lucidrains `state_dict` (tied aliases may be present
/// or not; present ones must equal their owner). The error lists every missing, unexpected
/// or mis-shaped tensor.
pub fn import_lucidrains(
    tensors: &[(String, Tensor)],
    config: PerceiverConfig,
) -> Result<Perceiver> {
    let map = name_map(&config)?;
    map.import(config, tensors, "lucidrains", "lucidrains state_dict")
}

/// [`import_lucidrains`] from a safetensors file of the `state_dict`.
pub fn import_lucidrains_file(
    path: impl AsRef<Path>,
    config: PerceiverConfig,
) -> Result<Perceiver> {
    let path = path.as_ref();
    let (tensors, _) = perceiver_nn::io::load_safetensors(path)?;
    let map = name_map(&config)?;
    map.import(config, &tensors, "lucidrains", &path.display().to_string())
}

/// The model's parameters under lucidrains names, tied aliases included (a full `state_dict`).
pub fn export_lucidrains(model: &Perceiver) -> Result<Vec<(String, Tensor)>> {
    let map = name_map(model.config())?;
    map.to_reference(&|n| model.params().get(n).map(|p| p.value()), true)
}
