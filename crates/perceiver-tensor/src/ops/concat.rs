//! `concat`: joins tensors along an axis into a new tensor. The rule hands each input the
//! matching slice of the gradient (a view).

use crate::autograd::{record, Backward};
use crate::kernels;
use crate::layout::{check_axis, Layout};
use crate::{Error, Result, Tensor};

struct ConcatBackward {
    axis: usize,
    sizes: Vec<usize>,
}

impl Backward for ConcatBackward {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn backward(&self, g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        let mut start = 0;
        let mut out = Vec::with_capacity(self.sizes.len());
        for (i, &s) in self.sizes.iter().enumerate() {
            out.push(needs[i].then(|| Tensor {
                storage: g.storage.clone(),
                layout: g.layout.narrow(self.axis, start, s),
                node: None,
            }));
            start += s;
        }
        out
    }
}

impl Tensor {
    /// Concatenates tensors along `axis`; all other dimensions must agree.
    #[track_caller]
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let Some(first) = tensors.first() else {
            return Err(Error::invalid("concat", "needs at least one tensor"));
        };
        check_axis("concat", axis, first.shape())?;
        for t in &tensors[1..] {
            let ok = t.rank() == first.rank()
                && t.shape()
                    .iter()
                    .zip(first.shape())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                return Err(Error::shape(
                    "concat",
                    format!("all dimensions but axis {axis} must agree"),
                    first.shape(),
                    t.shape(),
                ));
            }
        }
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[axis]).collect();
        let mut shape = first.shape().to_vec();
        shape[axis] = sizes.iter().sum();
        let full = Layout::contiguous(&shape);
        let mut data = vec![0.0f32; full.numel()];
        let mut start = 0;
        for (t, &s) in tensors.iter().zip(&sizes) {
            kernels::copy_into(&mut data, &full.narrow(axis, start, s), t);
            start += s;
        }
        let out = Tensor::from_parts(data, &shape);
        Ok(record(out, tensors, |_| ConcatBackward { axis, sizes }))
    }
}
