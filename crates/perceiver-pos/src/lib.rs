//! Position encodings for the Perceiver.
//!
//! This crate will hold Fourier position features on N-d grids (DeepMind / Hugging Face and
//! lucidrains channel orders, per-axis resolutions, `sine_only`, `concat_pos`, per-example
//! arbitrary positions) and trainable position encodings with an optional projection.
