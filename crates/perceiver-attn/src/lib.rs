//! # perceiver-attn
//!
//! Attention for the Perceiver, where a few hundred latents attend to up to hundreds of
//! thousands of inputs.
//!
//! - [`attention_reference`]: scaled dot-product attention composed from `perceiver-tensor`
//!   ops (matmul, masked fill, softmax, matmul); gradients come from autograd. Supports dropout
//!   on the attention probabilities.
//! - [`flash_attention`]: the fused kernel. It never materialises the `queries x keys`
//!   probability matrix: keys are processed in blocks with an online softmax, only the per-row
//!   log-sum-exp is saved, and the backward recomputes the probabilities block by block. Its
//!   memory is linear in the number of keys.
//! - [`MultiHeadAttention`]: the layer the model uses (Q/K/V/O projections, heads), which
//!   selects the fused kernel by default.
//!
//! All kernels take `[batch, heads, len, width]` tensors (any strides; the keys and values of
//! [`cross_attention_kv`] are the projections' rows, `[batch, len, heads · width]`) and an optional key
//! padding mask `[batch, keys]` where non-zero means "attend". A query row whose keys are all
//! masked outputs zeros (and passes no gradient), in both kernels; PyTorch would output the mean
//! of the values (lucidrains' `-f32::MAX` fill) or NaN (an `-inf` fill).
//!
//! ```
//! use perceiver_attn::{attention_reference, flash_attention, AttentionOptions};
//! use perceiver_tensor::{Rng, Tensor};
//! let mut rng = Rng::new(0);
//! let q = Tensor::randn(&[1, 2, 4, 8], &mut rng);
//! let k = Tensor::randn(&[1, 2, 9, 8], &mut rng);
//! let v = Tensor::randn(&[1, 2, 9, 3], &mut rng);
//! let fused = flash_attention(&q, &k, &v, None, None)?;
//! let plain = attention_reference(&q, &k, &v, None, &AttentionOptions::default(), None)?;
//! let (a, b) = (fused.to_vec(), plain.to_vec());
//! assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
//! # Ok::<(), perceiver_tensor::Error>(())
//! ```

mod check;
mod cross;
mod flash;
mod mha;
mod reference;
mod shared;

pub use cross::{
    block_tokens, cross_attention_kv, folded_is_cheaper, fused_cross_attention,
    fused_cross_attention_with, CrossKernel, KvProjection,
};
pub use flash::{flash_attention, FlashAttention, BLOCK_K, BLOCK_Q, FULL_KEYS, FULL_ROWS};
pub use mha::{AttnKernel, Call, KeyValues, MultiHeadAttention, MultiHeadAttentionConfig};
pub use reference::attention_reference;
pub use shared::SharedKv;

/// Settings shared by the attention kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionOptions {
    /// Multiplier of the logits; `None` means `1 / sqrt(qk width)`.
    pub scale: Option<f32>,
    /// Dropout probability on the attention probabilities (reference kernel only).
    pub dropout: f32,
    /// Training mode (dropout active).
    pub train: bool,
}

impl Default for AttentionOptions {
    fn default() -> Self {
        AttentionOptions {
            scale: None,
            dropout: 0.0,
            train: false,
        }
    }
}
