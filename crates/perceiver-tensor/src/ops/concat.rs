//! `concat`: joins tensors along an axis into a new tensor. The rule hands each input the
//! matching slice of the gradient (a view).

use crate::autograd::record;
use crate::layout::{check_axis, Layout};
use crate::{Error, Result, Tensor};
use perceiver_kernels as kernels;
use std::mem::MaybeUninit;

struct ConcatBackward {
    axis: usize,
    sizes: Vec<usize>,
}

backward!(ConcatBackward, "concat", |saved, g, needs| {
    let mut start = 0;
    let mut out = Vec::with_capacity(saved.sizes.len());
    for (i, &s) in saved.sizes.iter().enumerate() {
        out.push(needs[i].then(|| Tensor {
            storage: g.storage.clone(),
            layout: g.layout.narrow(saved.axis, start, s),
            node: None,
        }));
        start += s;
    }
    out
});

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
        let numel = crate::layout::numel(&shape);
        // The inputs' regions tile the output, so it is written in full and not zero-filled
        // first; above the parallel threshold, one task per index of the first axis (the batch)
        // when the concatenation is along another axis.
        let copy_all = |out: &mut [MaybeUninit<f32>], item: Option<usize>| {
            let mut sub = shape.clone();
            if item.is_some() {
                sub[0] = 1;
            }
            let full = Layout::contiguous(&sub);
            let mut start = 0;
            for (t, &s) in tensors.iter().zip(&sizes) {
                let (src, layout) = t.raw();
                let layout = match item {
                    Some(i) => layout.narrow(0, i, 1),
                    None => layout.clone(),
                };
                crate::strided::copy_into_uninit(out, &full.narrow(axis, start, s), src, &layout);
                start += s;
            }
        };
        let per = if axis > 0 && shape[0] > 1 {
            numel / shape[0]
        } else {
            numel
        };
        // SAFETY: `copy_all` writes every element of the chunk it is given (each input's
        // part of the whole output, or of one item's slice of it).
        let data = unsafe {
            kernels::elementwise::filled_chunks(numel, per, |start, out| {
                let item = (out.len() < numel).then(|| start / per.max(1));
                copy_all(out, item)
            })
        };
        let out = Tensor::from_parts(data, &shape);
        Ok(record(out, tensors, |_| ConcatBackward { axis, sizes }))
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    /// Element `[i, j, k]` of a `[a, b, c]` tensor given as a function.
    fn build(shape: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
        let mut v = Vec::new();
        for i in 0..shape[0] {
            for j in 0..shape[1] {
                for k in 0..shape[2] {
                    v.push(f(i, j, k));
                }
            }
        }
        v
    }

    #[test]
    fn values_along_each_axis_with_strided_and_broadcast_inputs() {
        // Sizes above the parallel threshold (one task per batch item) and a small case.
        for (b, n) in [(6, 4000), (2, 3)] {
            let pix = |i: usize, j: usize| (i * 7919 + j) as f32 * 0.25;
            let feat = |j: usize, k: usize| (j * 13 + k) as f32 - 0.5;
            // [b, n, 1] contiguous; [b, n, 3] broadcast over the batch; [b, n, 2] permuted.
            let x = Tensor::from_vec(build([b, n, 1], |i, j, _| pix(i, j)), &[b, n, 1]).unwrap();
            let f = Tensor::from_vec(build([1, n, 3], |_, j, k| feat(j, k)), &[1, n, 3]).unwrap();
            let f = f.broadcast_to(&[b, n, 3]).unwrap();
            let p = Tensor::from_vec(build([b, 2, n], |i, k, j| pix(i, j) - k as f32), &[b, 2, n])
                .unwrap()
                .permute(&[0, 2, 1])
                .unwrap();
            let last = Tensor::concat(&[&x, &f, &p], 2).unwrap();
            let want = build([b, n, 6], |i, j, k| match k {
                0 => pix(i, j),
                1..=3 => feat(j, k - 1),
                _ => pix(i, j) - (k - 4) as f32,
            });
            assert_eq!(last.shape(), &[b, n, 6]);
            assert_eq!(last.to_vec(), want);
            let mid = Tensor::concat(&[&f, &f], 1).unwrap();
            let want = build([b, 2 * n, 3], |_, j, k| feat(j % n, k));
            assert_eq!(mid.to_vec(), want);
            let first = Tensor::concat(&[&x, &x], 0).unwrap();
            let want = build([2 * b, n, 1], |i, j, _| pix(i % b, j));
            assert_eq!(first.to_vec(), want);
        }
    }
}
