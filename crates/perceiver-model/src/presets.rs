//! Named configurations.
//!
//! | name | what | parameters |
//! |---|---|---|
//! | `paper-imagenet` | the ImageNet Perceiver as published (8 cross-attends with the paper's sharing) | 44,912,254 |
//! | `paper-imagenet-unshared` | the same without weight sharing | 326,241,856 |
//! | `perceiver-io-imagenet` | Perceiver IO, the layout of `deepmind/vision-perceiver-fourier` | 48,440,627 |
//! | `mnist-small` | benchmark configuration A | 1,116,182 |
//! | `imagenet-bench` | benchmark configuration B | 144,631,036 |

use crate::config::{
    AttentionConfig, BiasConfig, DecoderConfig, FeedForwardConfig, HeadConfig, LatentInit,
    PerceiverConfig, QueryConfig, WeightSharing,
};
use crate::ModelError;
use crate::Preprocessor;
use perceiver_pos::{FourierConfig, PositionEncodingConfig};
use perceiver_tensor::GeluKind;

/// Names of every preset.
pub const PRESETS: &[&str] = &[
    "paper-imagenet",
    "paper-imagenet-unshared",
    "perceiver-io-imagenet",
    "mnist-small",
    "imagenet-bench",
];

/// The preset called `name`.
pub fn preset(name: &str) -> Result<PerceiverConfig, ModelError> {
    match name {
        "paper-imagenet" => Ok(paper_imagenet()),
        "paper-imagenet-unshared" => Ok(PerceiverConfig {
            sharing: WeightSharing::None,
            ..paper_imagenet()
        }),
        "perceiver-io-imagenet" => Ok(perceiver_io_imagenet()),
        "mnist-small" => Ok(mnist_small()),
        "imagenet-bench" => Ok(imagenet_bench()),
        _ => Err(ModelError::UnknownPreset {
            name: name.to_string(),
            known: PRESETS.join(", "),
        }),
    }
}

/// The ImageNet Perceiver of the paper: 224x224x3 pixels + 258 Fourier channels (64 bands,
/// max resolution 224, DeepMind order), 512 x 1024 latents, 8 cross-attends (1 head, Q/K/V
/// width 261), each followed by the 6-layer latent tower (8 heads), widening 1, biases
/// everywhere, the paper's sharing, head mean -> Linear(1000).
fn paper_imagenet() -> PerceiverConfig {
    PerceiverConfig {
        input_channels: 3,
        input_axes: vec![224, 224],
        preprocessor: Preprocessor::None,
        position_encoding: PositionEncodingConfig::Fourier(FourierConfig::deepmind(
            64,
            vec![224.0, 224.0],
        )),
        position_projection: None,
        num_latents: 512,
        latent_dim: 1024,
        latent_init: LatentInit::default(),
        cross_attention: AttentionConfig::default(),
        cross_feed_forward: FeedForwardConfig::gelu(1),
        self_attention: AttentionConfig {
            heads: 8,
            qk_dim: None,
            v_dim: None,
        },
        self_feed_forward: FeedForwardConfig::gelu(1),
        self_per_block: 6,
        num_blocks: 8,
        num_cross_attends: 8,
        sharing: WeightSharing::Paper,
        gelu: GeluKind::Erf,
        bias: BiasConfig::default(),
        query_residual: true,
        dropout: Default::default(),
        layer_norm_eps: 1e-5,
        head: HeadConfig::Classifier {
            num_classes: 1000,
            layer_norm: false,
        },
        attention_kernel: Default::default(),
    }
}

/// Perceiver IO on ImageNet (pixels + Fourier features), as `deepmind/vision-perceiver-fourier`:
/// one cross-attend, 8 blocks of 6 self-attention layers all sharing one tower, a decoder with
/// one trainable query (1 head, widening 1, query residual) and a Linear to 1000 classes.
fn perceiver_io_imagenet() -> PerceiverConfig {
    PerceiverConfig {
        num_cross_attends: 1,
        head: HeadConfig::Decoder(DecoderConfig {
            query: QueryConfig::Trainable {
                num_queries: 1,
                channels: 1024,
                init_scale: 0.02,
            },
            attention: AttentionConfig::default(),
            feed_forward: FeedForwardConfig::gelu(1),
            query_residual: true,
            num_outputs: 1000,
        }),
        ..paper_imagenet()
    }
}

/// The benchmark layout (`docs/bench.md`): lucidrains Fourier features, GELU MLP widening 4,
/// no Q/K/V bias, block 0 own weights and blocks 1.. shared, head mean -> LayerNorm -> Linear.
#[allow(clippy::too_many_arguments)]
fn bench(
    axes: Vec<usize>,
    channels: usize,
    bands: usize,
    max_freq: f32,
    latents: (usize, usize),
    cross: (usize, usize),
    selfa: (usize, usize),
    per_block: usize,
    depth: usize,
    classes: usize,
) -> PerceiverConfig {
    PerceiverConfig {
        input_channels: channels,
        input_axes: axes,
        preprocessor: Preprocessor::None,
        position_encoding: PositionEncodingConfig::Fourier(FourierConfig::lucidrains(
            bands, max_freq,
        )),
        position_projection: None,
        num_latents: latents.0,
        latent_dim: latents.1,
        latent_init: LatentInit::default(),
        cross_attention: AttentionConfig::with_head_dim(cross.0, cross.1),
        cross_feed_forward: FeedForwardConfig::gelu(4),
        self_attention: AttentionConfig::with_head_dim(selfa.0, selfa.1),
        self_feed_forward: FeedForwardConfig::gelu(4),
        self_per_block: per_block,
        num_blocks: depth,
        num_cross_attends: depth,
        sharing: WeightSharing::Lucidrains,
        gelu: GeluKind::Erf,
        bias: BiasConfig::lucidrains(),
        query_residual: true,
        dropout: Default::default(),
        layer_norm_eps: 1e-5,
        head: HeadConfig::Classifier {
            num_classes: classes,
            layer_norm: true,
        },
        attention_kernel: Default::default(),
    }
}

/// Benchmark configuration A.
fn mnist_small() -> PerceiverConfig {
    bench(
        vec![28, 28],
        1,
        16,
        10.0,
        (64, 128),
        (1, 64),
        (4, 32),
        2,
        2,
        10,
    )
}

/// Benchmark configuration B.
fn imagenet_bench() -> PerceiverConfig {
    bench(
        vec![224, 224],
        3,
        64,
        224.0,
        (512, 1024),
        (1, 64),
        (8, 64),
        6,
        8,
        1000,
    )
}
