//! Attention kernels for the Perceiver.
//!
//! This crate will hold multi-head scaled dot-product attention on `[batch, heads, len, width]`
//! tensors: a reference implementation composed from `perceiver-tensor` ops (gradients from
//! autograd), a fused FlashAttention-style kernel (online softmax over key blocks, only the
//! per-row log-sum-exp saved, a backward that recomputes probabilities block by block) plugged
//! into autograd through [`perceiver_tensor::CustomOp`], and the `MultiHeadAttention` layer the
//! model uses.
