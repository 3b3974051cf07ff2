//! Validation of attention arguments, shared by both kernels.

use perceiver_tensor::{Error, Result, Tensor};

/// Sizes of an attention call.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // all sizes are kept for diagnostics
pub(crate) struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
    pub keys: usize,
    pub qk: usize,
    pub v: usize,
}

#[track_caller]
pub(crate) fn check(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Dims> {
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        if t.rank() != 4 {
            return Err(Error::invalid(
                op,
                format!(
                    "{name} must be [batch, heads, len, width], got shape {:?}",
                    t.shape()
                ),
            ));
        }
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs[0] != ks[0] || qs[1] != ks[1] || qs[3] != ks[3] {
        return Err(Error::shape(
            op,
            "q and k must agree on batch, heads and width",
            qs,
            ks,
        ));
    }
    if ks[0] != vs[0] || ks[1] != vs[1] || ks[2] != vs[2] {
        return Err(Error::shape(
            op,
            "k and v must agree on batch, heads and length",
            ks,
            vs,
        ));
    }
    if ks[2] == 0 {
        return Err(Error::invalid(
            op,
            format!("needs at least one key, got k of shape {ks:?}"),
        ));
    }
    if let Some(m) = mask {
        if m.shape() != [qs[0], ks[2]] {
            return Err(Error::shape(
                op,
                "the key padding mask must be [batch, keys]",
                m.shape(),
                &[qs[0], ks[2]],
            ));
        }
    }
    Ok(Dims {
        batch: qs[0],
        heads: qs[1],
        queries: qs[2],
        keys: ks[2],
        qk: qs[3],
        v: vs[3],
    })
}

#[track_caller]
pub(crate) fn scale_of(op: &'static str, scale: Option<f32>, qk: usize) -> Result<f32> {
    let s = scale.unwrap_or(1.0 / (qk.max(1) as f32).sqrt());
    if !s.is_finite() {
        return Err(Error::invalid(op, format!("scale must be finite, got {s}")));
    }
    Ok(s)
}
