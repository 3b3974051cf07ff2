//! [`PerceiverConfig`]: the whole model as data, serialisable to JSON.
//!
//! # Structure
//! The model is a sequence of `num_blocks` blocks over a latent array `z` (`num_latents x
//! latent_dim`). Block `i` is
//!
//! 1. a cross-attend (only in the first `num_cross_attends` blocks):
//!    `z = [z +] CrossAttn(LN(z), LN(x))` (the `+` is the query residual), `z = z + FF(LN(z))`;
//! 2. a latent tower of `self_per_block` layers: `z = z + SelfAttn(LN(z))`, `z = z + FF(LN(z))`.
//!
//! then a head: mean over latents -> optional LayerNorm -> Linear, or a Perceiver IO decoder
//! (output queries cross-attending to `z`, then a Linear), or nothing.
//!
//! # Weight sharing as data
//! [`WeightSharing`] resolves to two lists ([`PerceiverConfig::sharing_plan`]): the parameter
//! set used by each cross-attend and the parameter set used by each block's latent tower. A
//! shared set is one set of parameters used at several positions, so its gradient is the sum
//! over those positions.

pub use error::ConfigError;
use perceiver_pos::{FourierConfig, PositionEncodingConfig};
use perceiver_tensor::GeluKind;
pub use preprocess::Preprocessor;
use serde::{Deserialize, Serialize};
use sizes::checked_product;

/// The complete description of a Perceiver / Perceiver IO model.
///
/// Every field has a default (see [`PerceiverConfig::default`], a small model), so a JSON file
/// only needs the fields it changes. Widths left as `None` take the documented defaults.
///
/// ```
/// use perceiver_model::{HeadConfig, Perceiver, PerceiverConfig, Rng, WeightSharing};
/// // 32x32 RGB images, 10 classes; everything else at its default.
/// let config = PerceiverConfig::from_json(
///     r#"{"input_channels": 3, "input_axes": [32, 32], "num_latents": 64, "latent_dim": 128}"#,
/// )?;
/// let config = PerceiverConfig {
///     head: HeadConfig::Classifier { num_classes: 10, layer_norm: true },
///     sharing: WeightSharing::None,
///     ..config
/// };
/// config.validate()?;
/// assert_eq!(config.num_outputs(), Some(10));
/// let model = Perceiver::new(config.clone(), &mut Rng::new(0))?;
/// assert_eq!(model.num_params(), config.num_params());
/// // An impossible config names the field at fault.
/// let bad = PerceiverConfig { num_latents: 0, ..config };
/// assert!(bad.validate().unwrap_err().to_string().contains("num_latents"));
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerceiverConfig {
    /// Channels of one input element, before position features (3 for RGB).
    pub input_channels: usize,
    /// The input's index dimensions, e.g. `[224, 224]` for an image or `[n]` for a sequence.
    /// Inputs of other sizes with the same number of axes are accepted when the position
    /// encoding allows it (Fourier features are computed per shape); these sizes are the ones
    /// used by trainable encodings and by the FLOP count.
    pub input_axes: Vec<usize>,
    /// What turns the input into tokens (none: the input elements are the tokens).
    pub preprocessor: Preprocessor,
    /// Position encoding of the token grid, concatenated after the token channels.
    pub position_encoding: PositionEncodingConfig,
    /// Optional Linear projection of the position encoding to this many channels.
    pub position_projection: Option<usize>,
    /// Number of latents (`N`).
    pub num_latents: usize,
    /// Width of each latent (`D`).
    pub latent_dim: usize,
    /// Initialisation of the latent array.
    pub latent_init: LatentInit,
    /// Cross-attention (latents attend to inputs). Default widths: `qk_dim` = the input width
    /// (channels + position channels: DeepMind's `shape_for_attn = 'kv'`), `v_dim` = `qk_dim`.
    pub cross_attention: AttentionConfig,
    /// Feed-forward after each cross-attention.
    pub cross_feed_forward: FeedForwardConfig,
    /// Latent self-attention. Default widths: `qk_dim` = `latent_dim`, `v_dim` = `qk_dim`.
    pub self_attention: AttentionConfig,
    /// Feed-forward of each latent self-attention layer.
    pub self_feed_forward: FeedForwardConfig,
    /// Self-attention layers per latent tower (per block).
    pub self_per_block: usize,
    /// Number of blocks (each: optional cross-attend, then a latent tower).
    pub num_blocks: usize,
    /// Number of cross-attends: blocks `0 .. num_cross_attends` start with one.
    pub num_cross_attends: usize,
    /// Which cross-attends and which towers share parameters.
    pub sharing: WeightSharing,
    /// GELU flavour of every feed-forward (exact erf, or the tanh approximation).
    pub gelu: GeluKind,
    /// Which projections have a bias.
    pub bias: BiasConfig,
    /// Add the latents back after the encoder cross-attention (`z = z + CrossAttn(..)`).
    pub query_residual: bool,
    /// Dropout probabilities (training only).
    pub dropout: DropoutConfig,
    /// Epsilon of every LayerNorm.
    pub layer_norm_eps: f32,
    /// What turns the final latents into outputs.
    pub head: HeadConfig,
    /// Attention kernel (the fused kernel unless attention dropout is used).
    pub attention_kernel: AttentionKernel,
}

/// Initialisation of the latent array: normal with `std`, truncated to `[-truncation,
/// truncation]` (absolute bounds, as `torch.nn.init.trunc_normal_`) when given.
///
/// ```
/// use perceiver_model::{LatentInit, Perceiver, PerceiverConfig, Rng};
/// assert_eq!(LatentInit::default(), LatentInit { std: 0.02, truncation: Some(2.0) });
/// // A wide normal cut at ±0.5: every initial latent lies inside the bounds.
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     latent_init: LatentInit { std: 1.0, truncation: Some(0.5) },
///     ..PerceiverConfig::default()
/// };
/// let model = Perceiver::new(config.clone(), &mut Rng::new(0))?;
/// let latents = model.params().get("latents").expect("latents").value().to_vec();
/// assert_eq!(latents.len(), 4 * 16);
/// assert!(latents.iter().all(|v| v.abs() <= 0.5));
/// // A negative std is refused, naming the field.
/// let bad = PerceiverConfig { latent_init: LatentInit { std: -1.0, truncation: None }, ..config };
/// assert!(bad.validate().unwrap_err().to_string().contains("latent_init.std"));
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatentInit {
    /// Standard deviation.
    pub std: f32,
    /// Absolute truncation bound; `None` = plain normal (lucidrains' `randn`).
    pub truncation: Option<f32>,
}

impl Default for LatentInit {
    /// The paper's truncated normal: std 0.02, bounds ±2.
    fn default() -> Self {
        LatentInit {
            std: 0.02,
            truncation: Some(2.0),
        }
    }
}

/// Heads and widths of one kind of attention.
///
/// ```
/// use perceiver_model::{AttentionConfig, PerceiverConfig};
/// // One head; unset widths resolve to the kind's default qk width, and `v_dim` to `qk_dim`.
/// let default = AttentionConfig::default();
/// assert_eq!((default.heads, default.widths(32)), (1, (32, 32)));
/// let attn = AttentionConfig::with_head_dim(4, 8);
/// assert_eq!(attn.widths(128), (32, 32));
/// let attn = AttentionConfig { v_dim: Some(64), ..attn };
/// assert_eq!(attn.widths(128), (32, 64));
/// // Widths must split evenly over the heads; the error names the field.
/// let config = PerceiverConfig {
///     self_attention: AttentionConfig { heads: 3, ..attn },
///     ..PerceiverConfig::default()
/// };
/// let err = config.validate().unwrap_err().to_string();
/// assert!(err.contains("self_attention.qk_dim"), "{err}");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttentionConfig {
    /// Number of heads.
    pub heads: usize,
    /// Total query/key width (`heads x head width`); `None` = the kind's default.
    pub qk_dim: Option<usize>,
    /// Total value width; `None` = `qk_dim`.
    pub v_dim: Option<usize>,
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig {
            heads: 1,
            qk_dim: None,
            v_dim: None,
        }
    }
}

impl AttentionConfig {
    /// `heads` heads of width `head_dim` for queries, keys and values (the width saturates at
    /// `usize::MAX` when `heads × head_dim` overflows, which [`PerceiverConfig::validate`]
    /// refuses naming the field).
    pub fn with_head_dim(heads: usize, head_dim: usize) -> Self {
        let width = heads.saturating_mul(head_dim);
        AttentionConfig {
            heads,
            qk_dim: Some(width),
            v_dim: Some(width),
        }
    }

    /// `(qk, v)` widths given the default qk width.
    pub fn widths(&self, default_qk: usize) -> (usize, usize) {
        let qk = self.qk_dim.unwrap_or(default_qk);
        (qk, self.v_dim.unwrap_or(qk))
    }
}

/// Kind of feed-forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedForwardKind {
    /// `Linear(D, m·D) -> GELU -> Linear(m·D, D)` (the paper, Perceiver IO; `m` = widening).
    Gelu,
    /// `Linear(D, 2·m·D) -> x·GELU(gate) -> Linear(m·D, D)`, first half `x`, second half the
    /// gate (lucidrains' GEGLU).
    Geglu,
}

/// A feed-forward: kind and multiplier.
///
/// ```
/// use perceiver_model::{FeedForwardConfig, FeedForwardKind, PerceiverConfig};
/// assert_eq!(FeedForwardConfig::default(), FeedForwardConfig::gelu(1));
/// // `(fc1 output, fc2 input)` widths: GEGLU's first Linear also produces the gate.
/// assert_eq!(FeedForwardConfig::gelu(4).hidden(16), (64, 64));
/// assert_eq!(FeedForwardConfig::geglu(4).hidden(16), (128, 64));
/// let ff: FeedForwardConfig = serde_json::from_str(r#"{"kind": "geglu", "multiplier": 2}"#)
///     .expect("valid JSON");
/// assert_eq!((ff.kind, ff.multiplier), (FeedForwardKind::Geglu, 2));
/// // A zero multiplier is refused, naming the field.
/// let bad = PerceiverConfig {
///     self_feed_forward: FeedForwardConfig::gelu(0),
///     ..PerceiverConfig::default()
/// };
/// assert!(bad.validate().unwrap_err().to_string().contains("self_feed_forward"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedForwardConfig {
    /// GELU MLP or GEGLU.
    pub kind: FeedForwardKind,
    /// Widening factor (hidden width = multiplier x model width).
    pub multiplier: usize,
}

impl Default for FeedForwardConfig {
    fn default() -> Self {
        FeedForwardConfig {
            kind: FeedForwardKind::Gelu,
            multiplier: 1,
        }
    }
}

impl FeedForwardConfig {
    /// A GELU MLP with widening `w`.
    pub fn gelu(w: usize) -> Self {
        FeedForwardConfig {
            kind: FeedForwardKind::Gelu,
            multiplier: w,
        }
    }

    /// A GEGLU feed-forward with multiplier `m`.
    pub fn geglu(m: usize) -> Self {
        FeedForwardConfig {
            kind: FeedForwardKind::Geglu,
            multiplier: m,
        }
    }

    /// `(fc1 output width, fc2 input width)` for model width `dim`.
    /// Saturates at `usize::MAX` for widths too large to represent (which
    /// [`PerceiverConfig::validate`] refuses).
    pub fn hidden(&self, dim: usize) -> (usize, usize) {
        self.checked_hidden(dim).unwrap_or((usize::MAX, usize::MAX))
    }
}

/// Which projections carry a bias (for every attention and feed-forward of the model).
///
/// ```
/// use perceiver_model::{BiasConfig, Perceiver, PerceiverConfig, Rng};
/// let all = BiasConfig::default();
/// assert!(all.q && all.k && all.v && all.out && all.ff);
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     bias: BiasConfig::lucidrains(),
///     ..PerceiverConfig::default()
/// };
/// let model = Perceiver::new(config.clone(), &mut Rng::new(0))?;
/// // No bias on the query projection, a bias on the output projection.
/// assert!(model.params().get("cross.0.attn.to_q.bias").is_none());
/// assert!(model.params().get("cross.0.attn.to_out.bias").is_some());
/// let with_all = PerceiverConfig { bias: all, ..config.clone() };
/// assert!(config.num_params() < with_all.num_params());
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BiasConfig {
    /// Query projection.
    pub q: bool,
    /// Key projection.
    pub k: bool,
    /// Value projection.
    pub v: bool,
    /// Attention output projection.
    pub out: bool,
    /// Both feed-forward Linears.
    pub ff: bool,
}

impl Default for BiasConfig {
    /// Biases everywhere (the paper, Hugging Face).
    fn default() -> Self {
        BiasConfig {
            q: true,
            k: true,
            v: true,
            out: true,
            ff: true,
        }
    }
}

impl BiasConfig {
    /// lucidrains / the benchmark configurations: no bias on Q, K, V; bias on the output and
    /// the feed-forward.
    pub fn lucidrains() -> Self {
        BiasConfig {
            q: false,
            k: false,
            v: false,
            out: true,
            ff: true,
        }
    }
}

/// Dropout probabilities, active only in training.
///
/// ```
/// use perceiver_model::{DropoutConfig, PerceiverConfig};
/// assert_eq!(DropoutConfig::default(), DropoutConfig { attention: 0.0, feed_forward: 0.0 });
/// // Missing fields keep their defaults.
/// let d: DropoutConfig = serde_json::from_str(r#"{"feed_forward": 0.1}"#).expect("valid JSON");
/// assert_eq!(d, DropoutConfig { attention: 0.0, feed_forward: 0.1 });
/// // A probability must lie in [0, 1); the error names the field.
/// let bad = PerceiverConfig {
///     dropout: DropoutConfig { attention: 1.0, ..d },
///     ..PerceiverConfig::default()
/// };
/// assert!(bad.validate().unwrap_err().to_string().contains("dropout.attention"));
/// ```
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropoutConfig {
    /// On the attention probabilities (forces the reference attention kernel).
    pub attention: f32,
    /// On the output of every feed-forward (before the residual add).
    pub feed_forward: f32,
}

/// Which parameter sets the cross-attends and the latent towers use.
///
/// ```
/// use perceiver_model::{PerceiverConfig, WeightSharing};
/// let config = PerceiverConfig {
///     num_blocks: 4,
///     num_cross_attends: 4,
///     sharing: WeightSharing::Custom { cross: vec![0, 1, 1, 1], towers: vec![0, 0, 1, 1] },
///     ..PerceiverConfig::default()
/// };
/// let plan = config.sharing_plan();
/// assert_eq!((plan.num_cross_sets(), plan.num_tower_sets()), (2, 2));
/// // The paper's sharing: cross-attend 1 alone, 2.. shared; one tower for every block.
/// let paper = PerceiverConfig { sharing: WeightSharing::Paper, ..config };
/// assert_eq!(paper.sharing_plan().cross, vec![0, 1, 1, 1]);
/// assert_eq!(paper.sharing_plan().towers, vec![0, 0, 0, 0]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightSharing {
    /// The paper: cross-attend 1 has its own weights, cross-attends 2.. share one set, and one
    /// latent tower is shared by every block. (Perceiver IO with one cross-attend is this too.)
    #[default]
    Paper,
    /// lucidrains' `weight_tie_layers`: block 0 (cross-attend and tower) has its own weights,
    /// blocks 1.. share one set.
    Lucidrains,
    /// Nothing shared.
    None,
    /// Every cross-attend shares one set and every tower shares one set.
    All,
    /// Explicit sets: `cross[i]` is the set of cross-attend `i`, `towers[j]` the set of block
    /// `j`'s tower. Sets are numbered in order of first use (0, 1, 2, ...).
    Custom {
        /// Set index per cross-attend.
        cross: Vec<usize>,
        /// Set index per block's tower.
        towers: Vec<usize>,
    },
}

/// The resolved sharing: the parameter set of each cross-attend and of each block's tower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharingPlan {
    /// Set index per cross-attend (length `num_cross_attends`).
    pub cross: Vec<usize>,
    /// Set index per block's latent tower (length `num_blocks`).
    pub towers: Vec<usize>,
}

impl SharingPlan {
    /// Number of distinct cross-attend sets.
    pub fn num_cross_sets(&self) -> usize {
        self.cross.iter().max().map_or(0, |m| m + 1)
    }

    /// Number of distinct tower sets.
    pub fn num_tower_sets(&self) -> usize {
        self.towers.iter().max().map_or(0, |m| m + 1)
    }
}

/// The model's output head.
///
/// ```
/// use perceiver_model::{no_grad, HeadConfig, Perceiver, PerceiverConfig, Rng, Tensor};
/// assert_eq!(HeadConfig::default(), HeadConfig::Classifier { num_classes: 10, layer_norm: true });
/// let json = r#"{"kind": "classifier", "num_classes": 5, "layer_norm": false}"#;
/// let head: HeadConfig = serde_json::from_str(json).expect("valid JSON");
/// assert_eq!(head, HeadConfig::Classifier { num_classes: 5, layer_norm: false });
/// // Without a head the "logits" are the final latents `[batch, N, D]`.
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     head: HeadConfig::None,
///     ..PerceiverConfig::default()
/// };
/// assert_eq!(config.num_outputs(), None);
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let out = no_grad(|| model.forward(&Tensor::zeros(&[2, 4, 4, 1]), None))?;
/// assert_eq!(out.logits.shape(), &[2, 4, 16]);
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadConfig {
    /// No head: the "logits" are the final latents `[batch, N, D]`.
    None,
    /// Mean over latents -> optional LayerNorm -> Linear to `num_classes`.
    Classifier {
        /// Output classes.
        num_classes: usize,
        /// LayerNorm before the Linear (lucidrains: yes; the paper: no).
        layer_norm: bool,
    },
    /// Perceiver IO decoder.
    Decoder(DecoderConfig),
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig::Classifier {
            num_classes: 10,
            layer_norm: true,
        }
    }
}

/// Perceiver IO decoder: output queries cross-attend to the latents (`q = LN(queries)`,
/// `kv = LN(z)`, optional query residual, then `+ FF(LN(.))`), then a Linear. With one query
/// the logits are `[batch, num_outputs]`, otherwise `[batch, queries, num_outputs]`.
///
/// ```
/// use perceiver_model::{no_grad, DecoderConfig, HeadConfig, Perceiver, PerceiverConfig};
/// use perceiver_model::{QueryConfig, Rng, Tensor};
/// let default = DecoderConfig::default();
/// assert_eq!((default.num_outputs, default.query.shape()), (10, (1, 64)));
/// // Three learned queries of width 8, five outputs each.
/// let decoder = DecoderConfig {
///     query: QueryConfig::Trainable { num_queries: 3, channels: 8, init_scale: 0.02 },
///     num_outputs: 5,
///     ..default
/// };
/// let config = PerceiverConfig {
///     input_axes: vec![4, 4],
///     num_latents: 4,
///     latent_dim: 16,
///     head: HeadConfig::Decoder(decoder),
///     ..PerceiverConfig::default()
/// };
/// let model = Perceiver::new(config, &mut Rng::new(0))?;
/// let query = model.params().get("decoder.query").expect("learned queries");
/// assert_eq!(query.value().shape(), &[3, 8]);
/// let out = no_grad(|| model.forward(&Tensor::zeros(&[2, 4, 4, 1]), None))?;
/// assert_eq!(out.logits.shape(), &[2, 3, 5]);
/// # Ok::<(), perceiver_model::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// Where the output queries come from.
    pub query: QueryConfig,
    /// Heads and widths; default `qk_dim` = `latent_dim` (the key/value width), `v_dim` = `qk_dim`.
    pub attention: AttentionConfig,
    /// Feed-forward after the decoder cross-attention.
    pub feed_forward: FeedForwardConfig,
    /// `out = queries + CrossAttn(..)` (on for classification, off when queries are positions).
    pub query_residual: bool,
    /// Output width of the final Linear (classes).
    pub num_outputs: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            query: QueryConfig::default(),
            attention: AttentionConfig::default(),
            feed_forward: FeedForwardConfig::gelu(1),
            query_residual: true,
            num_outputs: 10,
        }
    }
}

/// Output queries of a decoder.
///
/// ```
/// use perceiver_model::{DecoderConfig, FourierConfig, HeadConfig, PerceiverConfig, QueryConfig};
/// assert_eq!(QueryConfig::default().shape(), (1, 64));
/// // Fourier queries of an 8-point grid: 8 queries of 1 x (2 x 4 bands + 1 position) channels.
/// let json = r#"{"kind": "fourier", "fourier": {"num_bands": 4, "max_resolution": [8.0]},
///     "index_dims": [8]}"#;
/// let query: QueryConfig = serde_json::from_str(json).expect("valid JSON");
/// let fourier = FourierConfig::deepmind(4, vec![8.0]);
/// assert_eq!(query, QueryConfig::Fourier { fourier: fourier.clone(), index_dims: vec![8] });
/// assert_eq!(query.shape(), (8, 9));
/// // An empty output grid is refused, naming the field.
/// let query = QueryConfig::Fourier { fourier, index_dims: vec![] };
/// let head = HeadConfig::Decoder(DecoderConfig { query, ..DecoderConfig::default() });
/// let bad = PerceiverConfig { head, ..PerceiverConfig::default() };
/// assert!(bad.validate().unwrap_err().to_string().contains("head.query.index_dims"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum QueryConfig {
    /// A learned `[num_queries, channels]` array (truncated normal, std `init_scale`, ±2 std).
    Trainable {
        /// Number of output queries.
        num_queries: usize,
        /// Width of each query.
        channels: usize,
        /// Init std.
        init_scale: f32,
    },
    /// Fourier features of the output grid `index_dims` (no parameters).
    Fourier {
        /// The features.
        fourier: FourierConfig,
        /// The output grid.
        index_dims: Vec<usize>,
    },
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig::Trainable {
            num_queries: 1,
            channels: 64,
            init_scale: 0.02,
        }
    }
}

impl QueryConfig {
    /// `(number of queries, channels)`; saturates at `usize::MAX` for sizes too large to
    /// represent (which [`PerceiverConfig::validate`] refuses).
    pub fn shape(&self) -> (usize, usize) {
        self.checked_shape().unwrap_or((usize::MAX, usize::MAX))
    }
}

/// Which attention kernel the model runs: the attention crate's own kernel choice (written
/// `"fused"`, `"flash"`, `"cross_projected"`, `"cross_folded"` or `"reference"` in JSON). Where
/// attention dropout applies, the reference kernel runs whatever this says.
pub use perceiver_attn::AttnKernel as AttentionKernel;

impl Default for PerceiverConfig {
    /// A small image classifier: 28x28x1 input, lucidrains-style Fourier features (16 bands),
    /// 64 x 128 latents, 2 blocks of 2 self-attention layers, paper sharing, 10 classes.
    fn default() -> Self {
        PerceiverConfig {
            input_channels: 1,
            input_axes: vec![28, 28],
            preprocessor: Preprocessor::None,
            position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
                16,
                vec![28.0, 28.0],
            )),
            position_projection: None,
            num_latents: 64,
            latent_dim: 128,
            latent_init: LatentInit::default(),
            cross_attention: AttentionConfig::default(),
            cross_feed_forward: FeedForwardConfig::gelu(1),
            self_attention: AttentionConfig {
                heads: 4,
                qk_dim: None,
                v_dim: None,
            },
            self_feed_forward: FeedForwardConfig::gelu(1),
            self_per_block: 2,
            num_blocks: 2,
            num_cross_attends: 2,
            sharing: WeightSharing::Paper,
            gelu: GeluKind::Erf,
            bias: BiasConfig::default(),
            query_residual: true,
            dropout: DropoutConfig::default(),
            layer_norm_eps: 1e-5,
            head: HeadConfig::default(),
            attention_kernel: AttentionKernel::Fused,
        }
    }
}

/// Resolved widths of one attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Query input width.
    pub q_in: usize,
    /// Key/value input width.
    pub kv_in: usize,
    /// Heads.
    pub heads: usize,
    /// Query/key width.
    pub qk: usize,
    /// Value width.
    pub v: usize,
    /// Output width.
    pub out: usize,
}

impl PerceiverConfig {
    /// Parses a JSON configuration (missing fields take their defaults) and validates it.
    pub fn from_json(json: &str) -> Result<Self, crate::ModelError> {
        let c: PerceiverConfig =
            serde_json::from_str(json).map_err(|e| crate::ModelError::Json {
                what: "PerceiverConfig".into(),
                msg: e.to_string(),
            })?;
        c.validate()?;
        Ok(c)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the config serialises")
    }

    /// Channels of the position encoding (after the projection); saturates at `usize::MAX`
    /// when the count overflows (which [`PerceiverConfig::validate`] refuses).
    pub fn position_channels(&self) -> usize {
        self.checked_position_channels().unwrap_or(usize::MAX)
    }

    /// Width of each input token fed to the cross-attention: token channels + position
    /// channels (saturating at `usize::MAX`, which [`PerceiverConfig::validate`] refuses).
    pub fn input_width(&self) -> usize {
        self.token_channels()
            .saturating_add(self.position_channels())
    }

    /// Number of tokens the cross-attends read for the configured input axes (after the
    /// preprocessor; saturating at `usize::MAX`, which [`PerceiverConfig::validate`] refuses).
    pub fn input_tokens(&self) -> usize {
        checked_product(&self.token_axes()).unwrap_or(usize::MAX)
    }

    /// Widths of the encoder cross-attention.
    pub fn cross_dims(&self) -> AttnDims {
        let (qk, v) = self.cross_attention.widths(self.input_width());
        AttnDims {
            q_in: self.latent_dim,
            kv_in: self.input_width(),
            heads: self.cross_attention.heads,
            qk,
            v,
            out: self.latent_dim,
        }
    }

    /// Widths of the latent self-attention.
    pub fn self_dims(&self) -> AttnDims {
        let (qk, v) = self.self_attention.widths(self.latent_dim);
        AttnDims {
            q_in: self.latent_dim,
            kv_in: self.latent_dim,
            heads: self.self_attention.heads,
            qk,
            v,
            out: self.latent_dim,
        }
    }

    /// Widths of the decoder cross-attention, when the head is a decoder.
    pub fn decoder_dims(&self) -> Option<AttnDims> {
        match &self.head {
            HeadConfig::Decoder(d) => {
                let (_, cq) = d.query.shape();
                let (qk, v) = d.attention.widths(self.latent_dim);
                Some(AttnDims {
                    q_in: cq,
                    kv_in: self.latent_dim,
                    heads: d.attention.heads,
                    qk,
                    v,
                    out: cq,
                })
            }
            _ => None,
        }
    }

    /// The resolved weight sharing (call [`PerceiverConfig::validate`] first for custom plans).
    pub fn sharing_plan(&self) -> SharingPlan {
        let k = self.num_cross_attends;
        let n = self.num_blocks;
        match &self.sharing {
            WeightSharing::Paper => SharingPlan {
                cross: (0..k).map(|i| usize::from(i > 0)).collect(),
                towers: vec![0; n],
            },
            WeightSharing::Lucidrains => SharingPlan {
                cross: (0..k).map(|i| usize::from(i > 0)).collect(),
                towers: (0..n).map(|i| usize::from(i > 0)).collect(),
            },
            WeightSharing::None => SharingPlan {
                cross: (0..k).collect(),
                towers: (0..n).collect(),
            },
            WeightSharing::All => SharingPlan {
                cross: vec![0; k],
                towers: vec![0; n],
            },
            WeightSharing::Custom { cross, towers } => SharingPlan {
                cross: cross.clone(),
                towers: towers.clone(),
            },
        }
    }

    /// Number of classes / outputs of the head (`None` without a head).
    pub fn num_outputs(&self) -> Option<usize> {
        match &self.head {
            HeadConfig::None => None,
            HeadConfig::Classifier { num_classes, .. } => Some(*num_classes),
            HeadConfig::Decoder(d) => Some(d.num_outputs),
        }
    }
}

mod error;
mod preprocess;
mod sizes;
#[cfg(test)]
mod tests;
mod validate;
