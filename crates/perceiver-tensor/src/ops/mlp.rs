//! `mlp_add`: `r + act(x·W1ᵀ + b1)·W2ᵀ + b2`, a transformer block's feed-forward with its
//! residual, as one op.
//!
//! The forward is the two fused [`Tensor::linear`] products (bias and activation in the first
//! one's GEMM epilogue, bias and residual in the second's). Recorded as one op, the backward
//! can apply the activation's derivative in the epilogue of the product that forms the hidden
//! gradient, `dpre = (g·W2) ⊙ act'(h)`, while each block is in cache; as two ops it was a
//! separate pass over the hidden layer (reading two `rows x hidden` arrays, writing a third).
//!
//! Backward: `dW2 = gᵀ·a`, `db2 = Σ_rows g`, `dr = g` (with `a = act(h)`), then `dx = dpre·W1`,
//! `dW1 = dpreᵀ·x`, `db1 = Σ_rows dpre`.

use super::linear::{as_rows, linear_grads, linear_raw};
use super::GeluKind;
use crate::autograd::{record, Backward};
use crate::gemm::{gemm_new, gemm_new_then, MatRef, OutBlock};
use crate::layout::Shape;
use crate::{Error, Result, Tensor};

struct MlpBackward {
    /// The input as `[rows, in]`.
    x: Option<Tensor>,
    w1: Option<Tensor>,
    w2: Tensor,
    /// `act(h)`, `[rows, hidden]`.
    a: Option<Tensor>,
    /// `act'(h)`, `[rows, hidden]`.
    dact: Tensor,
    x_shape: Shape,
    has_b1: bool,
    has_b2: bool,
}

impl Backward for MlpBackward {
    fn name(&self) -> &'static str {
        "mlp"
    }
    fn backward(&self, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let out = self.w2.shape()[0];
        let hidden = self.w2.shape()[1];
        let rows = g.numel() / out.max(1);
        let g2 = g.reshape_raw(&[rows, out]);
        let need_pre = needs[0] || needs[1] || (self.has_b1 && needs[2]);
        let dact = self.dact.contiguous_data();
        // dpre = (g·W2) ⊙ act'(h), the derivative applied to each block in the epilogue.
        let dpre = || {
            need_pre.then(|| {
                let epilogue = |blk: &mut OutBlock<'_>| {
                    let cols = blk.cols();
                    for i in blk.rows() {
                        let d = &dact[i * hidden + cols.start..i * hidden + cols.end];
                        let row = blk.row_mut(i);
                        crate::simd!(row.iter_mut().zip(d).for_each(|(v, d)| *v *= d));
                    }
                };
                let data = gemm_new_then(1.0, MatRef::of(&g2), MatRef::of(&self.w2), &epilogue);
                Tensor::from_parts(data, &[rows, hidden])
            })
        };
        let dw2_db2 = || {
            rayon::join(
                || {
                    needs[3].then(|| {
                        let a = self.a.as_ref().expect("saved activations");
                        let data = gemm_new(1.0, MatRef::of(&g2).t(), MatRef::of(a));
                        Tensor::from_parts(data, &[out, hidden])
                    })
                },
                || (self.has_b2 && needs[4]).then(|| super::sum::sum_axes_raw(&g2, &[0])),
            )
        };
        let (dpre, (dw2, db2)) = rayon::join(dpre, dw2_db2);
        let (dx, dw1, db1) = match &dpre {
            Some(dpre) => {
                let saved = (self.x.as_ref(), self.w1.as_ref());
                let want = [needs[0], needs[1], self.has_b1 && needs[2]];
                linear_grads(dpre, saved, want, &self.x_shape)
            }
            None => (None, None, None),
        };
        vec![
            dx,
            dw1,
            if self.has_b1 { db1 } else { None },
            dw2,
            if self.has_b2 { db2 } else { None },
            needs[5].then(|| g.clone()),
        ]
    }
}

impl Tensor {
    /// `residual + act(x·W1ᵀ + b1)·W2ᵀ + b2` for `x: [..., in]`, `w1: [hidden, in]`, `w2:
    /// [out, hidden]` (PyTorch's layouts) and `residual` of the output's shape, as one op (see
    /// the module docs): the same values as [`Tensor::linear`] twice and an add, with a
    /// cheaper backward.
    #[track_caller]
    #[allow(clippy::too_many_arguments)] // two layers' weights and biases, the activation, r
    pub fn mlp_add(
        &self,
        w1: &Tensor,
        b1: Option<&Tensor>,
        act: GeluKind,
        w2: &Tensor,
        b2: Option<&Tensor>,
        residual: &Tensor,
    ) -> Result<Tensor> {
        const OP: &str = "mlp_add";
        let ok_w = |w: &Tensor, inp: usize| w.rank() == 2 && w.shape()[1] == inp;
        let inp = self.shape().last().copied().unwrap_or(0);
        if self.rank() == 0 || !ok_w(w1, inp) || !ok_w(w2, w1.shape()[0]) {
            return Err(Error::shape(
                OP,
                "needs x: [..., in], w1: [hidden, in], w2: [out, hidden]",
                self.shape(),
                &[w1.shape(), w2.shape()].concat(),
            ));
        }
        let (hidden, out) = (w1.shape()[0], w2.shape()[0]);
        for (name, b, len) in [("b1", b1, hidden), ("b2", b2, out)] {
            if let Some(b) = b {
                if b.shape() != [len] {
                    return Err(Error::shape(
                        OP,
                        format!("{name} must match its layer's outputs"),
                        b.shape(),
                        &[len],
                    ));
                }
            }
        }
        let mut out_shape: Shape = self.shape()[..self.rank() - 1].into();
        out_shape.push(out);
        if residual.shape() != &out_shape[..] {
            return Err(Error::shape(
                OP,
                "the residual must have the output's shape",
                residual.shape(),
                &out_shape,
            ));
        }
        let rows = self.numel() / inp.max(1);
        let x2 = as_rows(self, inp);
        let (b1v, b2v) = (b1.map(|b| b.to_vec()), b2.map(|b| b.to_vec()));
        let rvec = residual.contiguous_data();
        let none = Tensor::scalar(0.0);
        let inputs = [
            self,
            w1,
            b1.unwrap_or(&none),
            w2,
            b2.unwrap_or(&none),
            residual,
        ];
        let track = crate::autograd::is_grad_enabled() && inputs.iter().any(|t| t.node.is_some());
        let (a, dact) = linear_raw(&x2, w1, b1v.as_deref(), Some(act), track, None);
        let a = Tensor::from_parts(a, &[rows, hidden]);
        let (y, _) = linear_raw(&a, w2, b2v.as_deref(), None, false, Some(&rvec));
        let yt = Tensor::from_parts(y, &out_shape);
        Ok(record(yt, &inputs, |needs| MlpBackward {
            x: needs[1].then(|| x2.clone()),
            w1: needs[0].then(|| w1.detach()),
            w2: w2.detach(),
            a: needs[3].then(|| a.clone()),
            dact: Tensor::from_parts(dact, &[rows, hidden]),
            x_shape: self.layout.shape.clone(),
            has_b1: b1.is_some(),
            has_b2: b2.is_some(),
        }))
    }
}
