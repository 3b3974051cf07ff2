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

/// A shape error of `op` (`what`) unless the shapes `a` and `b` agree on `axes`.
#[track_caller]
fn agree(op: &'static str, a: &[usize], b: &[usize], axes: [usize; 3], what: &str) -> Result<()> {
    if axes.iter().all(|&i| a[i] == b[i]) {
        Ok(())
    } else {
        Err(Error::shape(op, what, a, b))
    }
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
    agree(
        op,
        qs,
        ks,
        [0, 1, 3],
        "q and k must agree on batch, heads and width",
    )?;
    agree(
        op,
        ks,
        vs,
        [0, 1, 2],
        "k and v must agree on batch, heads and length",
    )?;
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
