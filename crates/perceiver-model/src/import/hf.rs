//! Hugging Face `transformers` Perceiver (`PerceiverForImageClassificationFourier`, the
//! layout of the published `deepmind/vision-perceiver-fourier` checkpoint): configuration from
//! its `PerceiverConfig`, and its parameter names.
//!
//! What the reference code does, whatever its config says: every projection has a bias; the
//! Q/K/V widths are those of the weights (by default the cross-attention's are the input
//! width for `cross_attention_shape_for_attention = "kv"`, the self-attention's the latent
//! width); every LayerNorm uses eps 1e-5 (`layer_norm_eps` is unused); `hidden_act = "gelu"` is
//! the exact GELU; the encoder is one cross-attend followed by `num_blocks` repetitions of the
//! same `num_self_attends_per_block` layers; the decoder is one trainable query `[1,
//! d_latents]` cross-attending to the latents (1 head, widening 1, query residual on), then
//! `final_layer`. Inputs are pixels `[batch, channels, H, W]` (see [`channels_last`]) with
//! Fourier features (DeepMind order) concatenated after the channels.

use super::{json_sizes, meta_json, NameMap};
use crate::config::{
    AttentionConfig, BiasConfig, DecoderConfig, DropoutConfig, FeedForwardConfig, HeadConfig,
    LatentInit, PerceiverConfig, QueryConfig, WeightSharing,
};
use crate::Preprocessor;
use crate::{ModelError, Perceiver, Result};
use perceiver_pos::{FourierConfig, PositionEncodingConfig};
use perceiver_tensor::{GeluKind, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const CROSS: &str = "perceiver.encoder.cross_attention";
const SELF: &str = "perceiver.encoder.self_attends";
const DECODER: &str = "perceiver.decoder.decoder";
const PRE: &str = "perceiver.input_preprocessor";

fn field<'a>(cfg: &'a serde_json::Value, key: &str) -> Result<&'a serde_json::Value> {
    cfg.get(key)
        .ok_or_else(|| ModelError::Unsupported(format!("Hugging Face config has no `{key}`")))
}

fn usize_field(cfg: &serde_json::Value, key: &str) -> Result<usize> {
    field(cfg, key)?
        .as_u64()
        .map(|u| u as usize)
        .ok_or_else(|| ModelError::Json {
            what: format!("Hugging Face config `{key}`"),
            msg: "expected a non-negative integer".into(),
        })
}

fn opt_usize(cfg: &serde_json::Value, key: &str) -> Option<usize> {
    cfg.get(key).and_then(|v| v.as_u64()).map(|u| u as usize)
}

/// The Fourier features of `PerceiverForImageClassificationFourier` (64 bands, max resolution
/// 224 x 224, positions first, sines and cosines).
pub fn default_fourier() -> FourierConfig {
    FourierConfig::deepmind(64, vec![224.0, 224.0])
}

/// Parses a Fourier description `{"num_bands", "max_resolution", "concat_pos", "sine_only"}`
/// (DeepMind channel order).
pub fn fourier_from_json(v: &serde_json::Value) -> Result<FourierConfig> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.entry("order").or_insert(serde_json::json!("deep_mind"));
    }
    let f: FourierConfig = serde_json::from_value(v).map_err(|e| ModelError::Json {
        what: "Fourier features".into(),
        msg: e.to_string(),
    })?;
    Ok(f)
}

/// The configuration of a Hugging Face `PerceiverForImageClassificationFourier` with config
/// `hf` (its `PerceiverConfig` as JSON), Fourier features `fourier`, on images of size
/// `index_dims`. When `shapes` (the state dict's names and shapes) is given, the attention
/// widths are taken from the weights, as the reference code effectively does.
pub fn config_from_hf(
    hf: &serde_json::Value,
    fourier: FourierConfig,
    index_dims: &[usize],
    shapes: Option<&BTreeMap<String, Vec<usize>>>,
) -> Result<PerceiverConfig> {
    let d_model = usize_field(hf, "d_model")?;
    let pos_channels = fourier.num_channels(index_dims.len());
    if d_model <= pos_channels {
        return Err(ModelError::Unsupported(format!(
            "d_model = {d_model} leaves no input channels beside the {pos_channels} Fourier channels"
        )));
    }
    let input = InputSide {
        input_channels: d_model - pos_channels,
        preprocessor: Preprocessor::None,
        position_encoding: PositionEncodingConfig::Fourier(fourier),
        position_projection: None,
    };
    build(hf, input, index_dims, shapes)
}

/// The image classifiers of `transformers`, told apart by their input preprocessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageVariant {
    /// `PerceiverForImageClassificationFourier`: pixels with 2-D Fourier features (64 bands,
    /// max resolution 224 x 224).
    Fourier,
    /// `PerceiverForImageClassificationLearned`: a 1 x 1 convolution of the pixels to 256
    /// channels, and a trainable position encoding (`image_size`² x 256) projected by a Linear
    /// 256 -> 256, concatenated.
    Learned,
    /// `PerceiverForImageClassificationConvProcessing`: `Conv2DDownsample` to 64 channels at
    /// about a quarter of the resolution, with 2-D Fourier features (64 bands, max resolution
    /// 56 x 56).
    Conv,
}

impl ImageVariant {
    /// From a model class name (`PerceiverForImageClassificationLearned`...).
    pub fn from_class(name: &str) -> Result<Self> {
        match name {
            "PerceiverForImageClassificationFourier" => Ok(ImageVariant::Fourier),
            "PerceiverForImageClassificationLearned" => Ok(ImageVariant::Learned),
            "PerceiverForImageClassificationConvProcessing" => Ok(ImageVariant::Conv),
            other => Err(ModelError::Unsupported(format!(
                "`{other}` is not one of the Perceiver image classifiers \
                 (PerceiverForImageClassificationFourier, ...Learned, ...ConvProcessing)"
            ))),
        }
    }

    /// From a `config.json`'s `architectures` list (its first entry).
    pub fn from_config(hf: &serde_json::Value) -> Result<Self> {
        let name = hf
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .ok_or_else(|| {
                ModelError::Unsupported("the Hugging Face config has no `architectures`".into())
            })?;
        ImageVariant::from_class(name)
    }
}

/// The configuration of the Hugging Face image classifier `variant` with config `hf` on
/// images of size `index_dims`; sizes are read from the weights' shapes when given.
pub fn config_for_variant(
    hf: &serde_json::Value,
    variant: ImageVariant,
    index_dims: &[usize],
    shapes: Option<&BTreeMap<String, Vec<usize>>>,
) -> Result<PerceiverConfig> {
    let dim = |name: &str, axis: usize, default: usize| {
        shapes
            .and_then(|s| s.get(&format!("{PRE}.{name}")))
            .and_then(|s| s.get(axis).copied())
            .unwrap_or(default)
    };
    let init = hf
        .get("initializer_range")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.02) as f32;
    let input = match variant {
        ImageVariant::Fourier => return config_from_hf(hf, default_fourier(), index_dims, shapes),
        ImageVariant::Learned => InputSide {
            input_channels: dim("convnet_1x1.weight", 1, 3),
            preprocessor: Preprocessor::Conv1x1 {
                channels: dim("convnet_1x1.weight", 0, 256),
            },
            position_encoding: PositionEncodingConfig::Trainable {
                channels: dim("position_embeddings.position_embeddings", 1, 256),
                init_scale: init,
            },
            position_projection: Some(dim("positions_projection.weight", 0, 256)),
        },
        ImageVariant::Conv => InputSide {
            input_channels: dim("convnet.conv.weight", 1, 3),
            preprocessor: Preprocessor::ConvDownsample {
                channels: dim("convnet.conv.weight", 0, 64),
            },
            position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
                64,
                vec![56.0, 56.0],
            )),
            position_projection: None,
        },
    };
    let c = build(hf, input, index_dims, shapes)?;
    let d_model = usize_field(hf, "d_model")?;
    if c.input_width() != d_model {
        return Err(ModelError::Unsupported(format!(
            "d_model = {d_model}, but the {variant:?} preprocessing gives tokens of {} channels",
            c.input_width()
        )));
    }
    Ok(c)
}

/// What a variant puts in front of the encoder.
struct InputSide {
    input_channels: usize,
    preprocessor: Preprocessor,
    position_encoding: PositionEncodingConfig,
    position_projection: Option<usize>,
}

/// The configuration with the input side `input` and everything else from `hf`.
fn build(
    hf: &serde_json::Value,
    input: InputSide,
    index_dims: &[usize],
    shapes: Option<&BTreeMap<String, Vec<usize>>>,
) -> Result<PerceiverConfig> {
    let d_latents = usize_field(hf, "d_latents")?;
    let d_model = usize_field(hf, "d_model")?;
    let num_labels = match hf.get("id2label").and_then(|v| v.as_object()) {
        Some(m) => m.len(),
        None => opt_usize(hf, "num_labels").unwrap_or(2),
    };
    let qk = opt_usize(hf, "qk_channels");
    let v = opt_usize(hf, "v_channels");
    let shape_for_attn = hf
        .get("cross_attention_shape_for_attention")
        .and_then(|v| v.as_str())
        .unwrap_or("kv");
    let cross_default_qk = match (qk, shape_for_attn) {
        (Some(q), _) => q,
        (None, "q") => d_latents,
        (None, _) => d_model,
    };
    // Widths from the weights when known (rows of query.weight and value.weight).
    let width = |name: &str, default: usize| -> usize {
        shapes
            .and_then(|s| s.get(name))
            .and_then(|s| s.first().copied())
            .unwrap_or(default)
    };
    let cross_qk = width(
        &format!("{CROSS}.attention.self.query.weight"),
        cross_default_qk,
    );
    let cross_v = width(
        &format!("{CROSS}.attention.self.value.weight"),
        v.unwrap_or(cross_qk),
    );
    let self_qk = width(
        &format!("{SELF}.0.attention.self.query.weight"),
        qk.unwrap_or(d_latents),
    );
    let self_v = width(
        &format!("{SELF}.0.attention.self.value.weight"),
        v.unwrap_or(self_qk),
    );
    let dec_qk = width(
        &format!("{DECODER}.decoding_cross_attention.attention.self.query.weight"),
        d_latents,
    );
    let dec_v = width(
        &format!("{DECODER}.decoding_cross_attention.attention.self.value.weight"),
        dec_qk,
    );
    let gelu = match hf
        .get("hidden_act")
        .and_then(|v| v.as_str())
        .unwrap_or("gelu")
    {
        "gelu" => GeluKind::Erf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => GeluKind::Tanh,
        other => {
            return Err(ModelError::Unsupported(format!(
                "hidden_act `{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh)"
            )))
        }
    };
    let init = hf
        .get("initializer_range")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.02) as f32;
    let config = PerceiverConfig {
        input_channels: input.input_channels,
        input_axes: index_dims.to_vec(),
        preprocessor: input.preprocessor,
        position_encoding: input.position_encoding,
        position_projection: input.position_projection,
        num_latents: usize_field(hf, "num_latents")?,
        latent_dim: d_latents,
        latent_init: LatentInit {
            std: init,
            truncation: None,
        },
        cross_attention: AttentionConfig {
            heads: usize_field(hf, "num_cross_attention_heads")?,
            qk_dim: Some(cross_qk),
            v_dim: Some(cross_v),
        },
        cross_feed_forward: FeedForwardConfig::gelu(usize_field(
            hf,
            "cross_attention_widening_factor",
        )?),
        self_attention: AttentionConfig {
            heads: usize_field(hf, "num_self_attention_heads")?,
            qk_dim: Some(self_qk),
            v_dim: Some(self_v),
        },
        self_feed_forward: FeedForwardConfig::gelu(usize_field(
            hf,
            "self_attention_widening_factor",
        )?),
        self_per_block: usize_field(hf, "num_self_attends_per_block")?,
        num_blocks: usize_field(hf, "num_blocks")?,
        num_cross_attends: 1,
        sharing: WeightSharing::Paper,
        gelu,
        bias: BiasConfig::default(),
        query_residual: hf
            .get("use_query_residual")
            .and_then(|v| v.as_bool())
            .unwrap_or(true),
        dropout: DropoutConfig {
            attention: hf
                .get("attention_probs_dropout_prob")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0) as f32,
            feed_forward: 0.0,
        },
        layer_norm_eps: 1e-5,
        head: HeadConfig::Decoder(DecoderConfig {
            query: QueryConfig::Trainable {
                num_queries: 1,
                channels: d_latents,
                init_scale: init,
            },
            attention: AttentionConfig {
                heads: 1,
                qk_dim: Some(dec_qk),
                v_dim: Some(dec_v),
            },
            feed_forward: FeedForwardConfig::gelu(1),
            query_residual: true,
            num_outputs: num_labels,
        }),
        attention_kernel: Default::default(),
    };
    config.validate()?;
    Ok(config)
}

/// The configuration from fixture metadata: `config` (the full Hugging Face config), `hw`
/// (the image size; any number of axes), `reference` (`transformers <ClassName>`: the
/// variant, see [`ImageVariant`]), and for the Fourier classifier optionally `fourier` (else
/// [`default_fourier`]).
pub fn config_from_metadata(
    metadata: &HashMap<String, String>,
    shapes: Option<&BTreeMap<String, Vec<usize>>>,
) -> Result<PerceiverConfig> {
    let hf = meta_json(metadata, "config")?;
    let dims = json_sizes(&meta_json(metadata, "hw")?, "metadata `hw`")?;
    // `reference` is `transformers <ClassName>`; the Fourier classifier when it names none.
    let class = metadata
        .get("reference")
        .and_then(|r| r.split_whitespace().nth(1));
    if let Some(variant) = class.map(ImageVariant::from_class).transpose()? {
        if variant != ImageVariant::Fourier {
            return config_for_variant(&hf, variant, &dims, shapes);
        }
    }
    let fourier = if metadata.contains_key("fourier") {
        fourier_from_json(&meta_json(metadata, "fourier")?)?
    } else {
        default_fourier()
    };
    config_from_hf(&hf, fourier, &dims, shapes)
}

fn push_layer(map: &mut NameMap, hf: &str, ours: &str, cross: bool) {
    map.push_wb(
        &format!("{hf}.attention.self.layernorm1"),
        &format!("{ours}.{}", if cross { "norm_q" } else { "norm" }),
    );
    if cross {
        map.push_wb(
            &format!("{hf}.attention.self.layernorm2"),
            &format!("{ours}.norm_kv"),
        );
    }
    for (h, o) in [("query", "to_q"), ("key", "to_k"), ("value", "to_v")] {
        map.push_wb(
            &format!("{hf}.attention.self.{h}"),
            &format!("{ours}.attn.{o}"),
        );
    }
    map.push_wb(
        &format!("{hf}.attention.output.dense"),
        &format!("{ours}.attn.to_out"),
    );
    map.push_wb(&format!("{hf}.layernorm"), &format!("{ours}.ff.norm"));
    map.push_wb(&format!("{hf}.mlp.dense1"), &format!("{ours}.ff.fc1"));
    map.push_wb(&format!("{hf}.mlp.dense2"), &format!("{ours}.ff.fc2"));
}

/// The Hugging Face names of a configuration's parameters. Needs one cross-attend and one
/// latent tower shared by every block (the Perceiver IO encoder).
pub fn name_map(config: &PerceiverConfig) -> Result<NameMap> {
    let c = config;
    let plan = c.sharing_plan();
    if c.num_cross_attends != 1 || plan.num_tower_sets() != 1 {
        return Err(ModelError::Unsupported(format!(
            "the Hugging Face layout has one cross-attend and one shared latent tower; this configuration has {} cross-attends and {} tower sets",
            c.num_cross_attends,
            plan.num_tower_sets()
        )));
    }
    let mut map = NameMap::default();
    map.push("perceiver.embeddings.latents", &["latents".to_string()]);
    match c.preprocessor {
        Preprocessor::None => {}
        Preprocessor::Conv1x1 { .. } => map.push_wb(&format!("{PRE}.convnet_1x1"), "pre"),
        Preprocessor::ConvDownsample { .. } => {
            map.push(
                format!("{PRE}.convnet.conv.weight"),
                &["pre.conv.weight".to_string()],
            );
            map.push_wb(&format!("{PRE}.convnet.batchnorm"), "pre.bn");
            for s in ["running_mean", "running_var"] {
                let reference = format!("{PRE}.convnet.batchnorm.{s}");
                map.push(reference.clone(), &[format!("pre.bn.{s}")]);
                map.buffers.insert(reference);
            }
            map.ignored
                .insert(format!("{PRE}.convnet.batchnorm.num_batches_tracked"));
        }
    }
    if let PositionEncodingConfig::Trainable { .. } = c.position_encoding {
        map.push(
            "perceiver.input_preprocessor.position_embeddings.position_embeddings",
            &["pos.embeddings".to_string()],
        );
    }
    if c.position_projection.is_some() {
        map.push_wb(
            "perceiver.input_preprocessor.positions_projection",
            "pos.projection",
        );
    }
    push_layer(&mut map, CROSS, "cross.0", true);
    for j in 0..c.self_per_block {
        push_layer(
            &mut map,
            &format!("{SELF}.{j}"),
            &format!("self.0.{j}"),
            false,
        );
    }
    if let HeadConfig::Decoder(d) = &c.head {
        if let QueryConfig::Trainable { .. } = d.query {
            map.push(
                format!("{DECODER}.output_position_encodings.position_embeddings"),
                &["decoder.query".to_string()],
            );
        }
        push_layer(
            &mut map,
            &format!("{DECODER}.decoding_cross_attention"),
            "decoder.cross",
            true,
        );
        map.push_wb(&format!("{DECODER}.final_layer"), "decoder.fc");
    }
    Ok(map)
}

/// Builds a model for `config` from a Hugging Face Perceiver state dict. The error lists
/// every missing, unexpected or mis-shaped tensor.
pub fn import_hf(tensors: &[(String, Tensor)], config: PerceiverConfig) -> Result<Perceiver> {
    let map = name_map(&config)?;
    map.import(config, tensors, "Hugging Face", "Hugging Face state dict")
}

/// [`import_hf`] from a safetensors file (for instance the published checkpoint's
/// `model.safetensors`).
pub fn import_hf_file(path: impl AsRef<Path>, config: PerceiverConfig) -> Result<Perceiver> {
    let path = path.as_ref();
    let (tensors, _) = perceiver_nn::io::load_safetensors(path)?;
    let map = name_map(&config)?;
    map.import(
        config,
        &tensors,
        "Hugging Face",
        &path.display().to_string(),
    )
}

/// The model's parameters under Hugging Face names.
pub fn export_hf(model: &Perceiver) -> Result<Vec<(String, Tensor)>> {
    let map = name_map(model.config())?;
    map.to_reference(&|n| model.params().get(n).map(|p| p.value()), false)
}

/// Moves the channel axis of a channels-first input `[batch, channels, *axes]` (as the
/// Hugging Face image models take it) to the end: `[batch, *axes, channels]`, as a view.
/// Differentiable: the gradient comes back in the channels-first layout.
pub fn channels_last(x: &Tensor) -> Result<Tensor> {
    let r = x.rank();
    if r < 3 {
        return Err(perceiver_tensor::Error::invalid(
            "channels_last",
            format!("expected [batch, channels, *axes], got {:?}", x.shape()),
        )
        .into());
    }
    let mut perm = vec![0];
    perm.extend(2..r);
    perm.push(1);
    Ok(x.permute(&perm)?)
}

/// A Hugging Face checkpoint directory as `save_pretrained` writes it (and the hub serves it),
/// loaded: the model and its class names.
#[derive(Clone, Debug)]
pub struct HfDirectory {
    /// The model, with the directory's weights.
    pub model: Perceiver,
    /// The class names in output order (`id2label`; the indices as text where absent).
    pub labels: Vec<String>,
    /// Which image classifier it is.
    pub variant: ImageVariant,
}

/// Largest `config.json` read (16 MiB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Whether `dir` looks like a Hugging Face Perceiver directory: a `config.json` whose
/// `model_type` is `perceiver`.
pub fn is_hf_directory(dir: &Path) -> bool {
    perceiver_io::read_string_bounded(dir.join("config.json"), MAX_CONFIG_BYTES)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v.get("model_type").and_then(|m| m.as_str()) == Some("perceiver"))
}

/// Loads a Hugging Face Perceiver image classifier from `dir`: `config.json` (the
/// `PerceiverConfig`: `architectures` names the variant, `image_size` the input side,
/// `id2label` the classes) and the weights from `model.safetensors` or, without it,
/// `pytorch_model.bin` (read by the restricted unpickler: no code runs). Errors name the file.
pub fn load_hf_directory(dir: impl AsRef<Path>) -> Result<HfDirectory> {
    let dir = dir.as_ref();
    let cpath = dir.join("config.json");
    let json_err = |msg: String| ModelError::Json {
        what: cpath.display().to_string(),
        msg,
    };
    let text = perceiver_io::read_string_bounded(&cpath, MAX_CONFIG_BYTES)?;
    let hf: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_err(e.to_string()))?;
    let variant = ImageVariant::from_config(&hf).map_err(|e| json_err(e.to_string()))?;
    let side = usize_field(&hf, "image_size").map_err(|e| json_err(e.to_string()))?;
    let st = dir.join("model.safetensors");
    let (wpath, tensors) = if std::fs::symlink_metadata(&st).is_ok() {
        let (t, _) = perceiver_nn::io::load_safetensors(&st)?;
        (st, t)
    } else {
        let bin = dir.join("pytorch_model.bin");
        let t = perceiver_nn::io::load_pytorch_bin(&bin)?;
        (bin, t)
    };
    let shapes: BTreeMap<String, Vec<usize>> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape().to_vec()))
        .collect();
    let config = config_for_variant(&hf, variant, &[side, side], Some(&shapes))
        .map_err(|e| json_err(e.to_string()))?;
    let classes = config.num_outputs().unwrap_or(0);
    let labels = (0..classes)
        .map(|i| {
            hf.get("id2label")
                .and_then(|m| m.get(i.to_string()))
                .and_then(|l| l.as_str())
                .map_or_else(|| i.to_string(), str::to_string)
        })
        .collect();
    let map = name_map(&config)?;
    let model = map.import(
        config,
        &tensors,
        "Hugging Face",
        &wpath.display().to_string(),
    )?;
    Ok(HfDirectory {
        model,
        labels,
        variant,
    })
}
