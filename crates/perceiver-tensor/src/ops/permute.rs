//! `permute` (and `transpose`, `t`): reorders axes as a view. The rule applies the inverse
//! permutation to the gradient.

use crate::autograd::record;
use crate::layout::check_axis;
use crate::{Error, Result, Tensor};

struct PermuteBackward {
    inverse: Vec<usize>,
}

backward!(
    PermuteBackward,
    "permute",
    |saved, g, _needs| vec![Some(g.permute_raw(&saved.inverse))],
    takes_strided_grad = true
);

impl Tensor {
    pub(crate) fn permute_raw(&self, perm: &[usize]) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout: self.layout.permute(perm),
            node: None,
        }
    }

    /// Reorders the axes: axis `i` of the result is axis `perm[i]` of `self`. No copy.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        if perm.len() != rank
            || perm
                .iter()
                .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::invalid(
                "permute",
                format!(
                    "{perm:?} is not a permutation of the axes of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let out = self.permute_raw(perm);
        Ok(record(out, &[self], |_| PermuteBackward { inverse }))
    }

    /// Swaps two axes. No copy.
    #[track_caller]
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        check_axis("transpose", a, self.shape())?;
        check_axis("transpose", b, self.shape())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Swaps the last two axes (matrix transpose, batched). No copy.
    #[track_caller]
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::invalid(
                "t",
                format!("needs rank >= 2, got shape {:?}", self.shape()),
            ));
        }
        self.transpose(self.rank() - 2, self.rank() - 1)
    }
}
