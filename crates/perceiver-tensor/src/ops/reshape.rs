//! `reshape` (and `flatten`, `squeeze`, `unsqueeze`): a new shape over the same elements, a view
//! when the strides allow it, a copy otherwise. The rule reshapes the gradient back.

use crate::autograd::record;
use crate::layout::{check_axis, numel, Shape};
use crate::{Error, Result, Tensor};

struct ReshapeBackward {
    shape: Shape,
}

backward!(
    ReshapeBackward,
    "reshape",
    |saved, g, _needs| vec![Some(g.reshape_raw(&saved.shape))],
    takes_strided_grad = true
);

impl Tensor {
    /// Untracked reshape (a view when the layout allows it, else a copy; element counts must
    /// agree). For backward rules and fused ops, which run outside the graph.
    pub fn reshape_raw(&self, shape: &[usize]) -> Tensor {
        debug_assert_eq!(numel(shape), self.numel());
        match self.layout.reshape(shape) {
            Some(layout) => Tensor {
                storage: self.storage.clone(),
                layout,
                node: None,
            },
            None => Tensor::from_parts(self.to_vec(), shape),
        }
    }

    /// The same elements in row-major order with a new shape. At most one dimension may be
    /// given as `usize::MAX` to be inferred.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let mut shape: Shape = shape.into();
        let inferred: Vec<usize> = (0..shape.len())
            .filter(|&i| shape[i] == usize::MAX)
            .collect();
        if inferred.len() > 1 {
            return Err(Error::invalid(
                "reshape",
                "at most one dimension can be inferred",
            ));
        }
        if let Some(&i) = inferred.first() {
            let known: usize = shape
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, &d)| d)
                .product();
            if known == 0 || !self.numel().is_multiple_of(known) {
                return Err(Error::shape(
                    "reshape",
                    "cannot infer a dimension",
                    self.shape(),
                    &shape,
                ));
            }
            shape[i] = self.numel() / known;
        }
        if numel(&shape) != self.numel() {
            return Err(Error::shape(
                "reshape",
                "element counts differ",
                self.shape(),
                &shape,
            ));
        }
        let out = self.reshape_raw(&shape);
        Ok(record(out, &[self], |_| ReshapeBackward {
            shape: self.layout.shape.clone(),
        }))
    }

    /// Merges dimensions `start..=end` into one.
    #[track_caller]
    pub fn flatten(&self, start: usize, end: usize) -> Result<Tensor> {
        if start > end || end >= self.rank().max(1) {
            return Err(Error::invalid(
                "flatten",
                format!("bad range {start}..={end} for shape {:?}", self.shape()),
            ));
        }
        if self.rank() == 0 {
            return self.reshape(&[1]);
        }
        let s = self.shape();
        let mut shape: Vec<usize> = s[..start].to_vec();
        shape.push(s[start..=end].iter().product());
        shape.extend_from_slice(&s[end + 1..]);
        self.reshape(&shape)
    }

    /// Removes dimension `axis`, which must have size 1.
    #[track_caller]
    pub fn squeeze(&self, axis: usize) -> Result<Tensor> {
        check_axis("squeeze", axis, self.shape())?;
        if self.shape()[axis] != 1 {
            return Err(Error::invalid(
                "squeeze",
                format!(
                    "axis {axis} of shape {:?} has size {}, not 1",
                    self.shape(),
                    self.shape()[axis]
                ),
            ));
        }
        let mut shape = self.shape().to_vec();
        shape.remove(axis);
        self.reshape(&shape)
    }

    /// Inserts a dimension of size 1 at `axis` (`axis <= rank`).
    #[track_caller]
    pub fn unsqueeze(&self, axis: usize) -> Result<Tensor> {
        if axis > self.rank() {
            return Err(Error::axis("unsqueeze", axis, self.shape()));
        }
        let mut shape = self.shape().to_vec();
        shape.insert(axis, 1);
        self.reshape(&shape)
    }
}
