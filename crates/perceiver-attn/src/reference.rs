//! The reference kernel: attention composed from tensor ops, differentiated by autograd.

use crate::check::{check, scale_of};
use crate::AttentionOptions;
use perceiver_tensor::{Error, Result, Rng, Tensor};

/// `softmax(scale · q·kᵀ, masked) · v` from plain ops.
///
/// `q: [b, h, n, dk]`, `k: [b, h, m, dk]`, `v: [b, h, m, dv]`, `mask: [b, m]` (non-zero =
/// attend). Masked logits are set to `-f32::MAX` (as lucidrains); rows whose keys are all masked
/// output zeros. Dropout on the probabilities needs `rng` when `opts.train` and
/// `opts.dropout > 0`.
#[track_caller]
pub fn attention_reference(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    opts: &AttentionOptions,
    rng: Option<&mut Rng>,
) -> Result<Tensor> {
    let d = check("attention_reference", q, k, v, mask)?;
    let scale = scale_of("attention_reference", opts.scale, d.qk)?;
    let mut scores = q.matmul(&k.transpose(2, 3)?)?.mul_scalar(scale);
    let mut any_key = None;
    if let Some(m) = mask {
        let m4 = m.detach().reshape(&[d.batch, 1, 1, d.keys])?;
        scores = Tensor::where_cond(&m4, &scores, &Tensor::scalar(-f32::MAX))?;
        let rows: Vec<f32> = m
            .to_vec()
            .chunks(d.keys.max(1))
            .map(|r| {
                if r.iter().any(|&x| x != 0.0) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let rows = if d.keys == 0 {
            vec![0.0; d.batch]
        } else {
            rows
        };
        any_key = Some(Tensor::from_vec(rows, &[d.batch, 1, 1, 1])?);
    }
    let mut probs = scores.softmax(3)?;
    if let Some(a) = any_key {
        probs = probs.mul(&a)?;
    }
    if opts.train && opts.dropout > 0.0 {
        let rng = rng.ok_or_else(|| {
            Error::invalid(
                "attention_reference",
                "dropout in training needs a random generator",
            )
        })?;
        probs = probs.dropout(opts.dropout, true, rng)?;
    }
    probs.matmul(v)
}
