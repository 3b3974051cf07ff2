//! The Perceiver and Perceiver IO models.
//!
//! This crate will hold `PerceiverConfig` (serialisable to JSON, weight sharing as data), the
//! model itself (cross-attends, latent transformer, classification head or Perceiver IO decoder),
//! presets (`paper-imagenet`, `mnist-small`, ...), parameter and FLOP counts, checkpoints (our
//! safetensors + JSON format, import from lucidrains and Hugging Face names) and training loops.
