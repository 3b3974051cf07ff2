//! The fused cross-attention op's inputs by name, and its parameter vectors.

use perceiver_tensor::Tensor;

/// The op's inputs by name, in the order they are given to
/// [`apply_custom`](perceiver_tensor::apply_custom) (optional ones absent when the layer has no
/// such parameter).
#[derive(Clone)]
pub(super) struct CrossInputs {
    pub(super) q: Tensor,
    pub(super) x: Tensor,
    pub(super) ln_w: Option<Tensor>,
    pub(super) ln_b: Option<Tensor>,
    pub(super) wk: Tensor,
    pub(super) wv: Tensor,
    pub(super) bk: Option<Tensor>,
    pub(super) bv: Option<Tensor>,
}

impl CrossInputs {
    /// From `apply_custom`'s list, in the order of [`CrossInputs::list`].
    pub(super) fn from_list(inputs: &[Option<&Tensor>]) -> CrossInputs {
        let at = |i: usize| inputs.get(i).copied().flatten().cloned();
        let required = |i: usize| at(i).expect("the required inputs are always passed");
        CrossInputs {
            q: required(0),
            x: required(1),
            ln_w: at(2),
            ln_b: at(3),
            wk: required(4),
            wv: required(5),
            bk: at(6),
            bv: at(7),
        }
    }

    /// The inputs in the op's order.
    pub(super) fn list(&self) -> [Option<&Tensor>; 8] {
        [
            Some(&self.q),
            Some(&self.x),
            self.ln_w.as_ref(),
            self.ln_b.as_ref(),
            Some(&self.wk),
            Some(&self.wv),
            self.bk.as_ref(),
            self.bv.as_ref(),
        ]
    }

    /// The parameter vectors, contiguous.
    pub(super) fn vecs(&self) -> ParamVecs {
        let v = |t: &Option<Tensor>| t.as_ref().map(Tensor::to_vec);
        ParamVecs {
            ln_w: v(&self.ln_w),
            ln_b: v(&self.ln_b),
            bk: v(&self.bk),
            bv: v(&self.bv),
        }
    }
}

/// The LayerNorm affine and projection biases as contiguous vectors (each optional).
pub(super) struct ParamVecs {
    pub(super) ln_w: Option<Vec<f32>>,
    pub(super) ln_b: Option<Vec<f32>>,
    pub(super) bk: Option<Vec<f32>>,
    pub(super) bv: Option<Vec<f32>>,
}
