//! `sum` over axes (with `keepdim`) and `sum_all`. The rule broadcasts the gradient back to the
//! input shape (a stride-0 view, no copy).

use crate::autograd::record;
use crate::layout::{check_axis, Shape};
use crate::{Result, Tensor};
use perceiver_kernels as kernels;
use rayon::prelude::*;

/// Sorted, de-duplicated axes, validated against the shape.
#[track_caller]
pub(crate) fn normalize_axes(
    op: &'static str,
    axes: &[usize],
    shape: &[usize],
) -> Result<Vec<usize>> {
    for &a in axes {
        check_axis(op, a, shape)?;
    }
    let mut v = axes.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Output shape of a reduction.
pub(crate) fn reduced_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Shape {
    let mut out = Shape::new();
    for (i, &d) in shape.iter().enumerate() {
        if axes.contains(&i) {
            if keepdim {
                out.push(1);
            }
        } else {
            out.push(d);
        }
    }
    out
}

/// Moves the reduced axes last and returns the contiguous data with the kept and reduced
/// element counts: the data is `[kept, reduced]` row-major.
pub(crate) fn rows_for_reduction(
    x: &Tensor,
    axes: &[usize],
) -> (Vec<f32>, usize, usize, Vec<usize>) {
    let rank = x.rank();
    let mut perm: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
    perm.extend_from_slice(axes);
    let reduced: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let kept = x.numel() / reduced.max(1);
    let p = x.permute_raw(&perm);
    (p.to_vec(), kept, reduced, perm)
}

/// Sums of the columns of a row-major `[rows, inner]` block (one vectorised loop, rather than
/// one dispatched call per row).
fn column_sums(block: &[f32], inner: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; inner];
    perceiver_kernels::simd!(for row in block.chunks_exact(inner) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    });
    acc
}

/// Untracked sum over sorted distinct `axes`, dropping them (for backward rules and fused ops,
/// which run outside the graph).
pub fn sum_axes_raw(x: &Tensor, axes: &[usize]) -> Tensor {
    let out_shape = reduced_shape(x.shape(), axes, false);
    if axes.is_empty() {
        return Tensor::from_parts(x.to_vec(), x.shape());
    }
    let k = axes.len();
    let is_prefix = axes.iter().enumerate().all(|(i, &a)| i == a);
    if is_prefix && x.is_contiguous() {
        // Column sums: outer rows added into one accumulator per thread.
        let data = x.as_slice().expect("contiguous");
        let outer: usize = x.shape()[..k].iter().product();
        let inner = x.numel() / outer.max(1);
        if inner == 0 {
            return Tensor::zeros(&out_shape);
        }
        let acc = if x.numel() >= kernels::PAR_THRESHOLD && outer >= 2 {
            let threads = rayon::current_num_threads().max(1);
            let rows_per = outer.div_ceil(threads);
            data.par_chunks(rows_per * inner)
                .map(|block| column_sums(block, inner))
                .reduce_with(|mut a, b| {
                    kernels::add_assign(&mut a, &b);
                    a
                })
                .unwrap_or_else(|| vec![0.0; inner])
        } else {
            column_sums(data, inner)
        };
        return Tensor::from_parts(acc, &out_shape);
    }
    let (data, kept, reduced, _) = rows_for_reduction(x, axes);
    let out: Vec<f32> = if reduced == 0 {
        vec![0.0; kept]
    } else if data.len() >= kernels::PAR_THRESHOLD {
        data.par_chunks(reduced).map(kernels::sum).collect()
    } else {
        data.chunks(reduced).map(kernels::sum).collect()
    };
    Tensor::from_parts(out, &out_shape)
}

struct SumBackward {
    input: Shape,
    keep: Shape,
}

backward!(SumBackward, "sum", |saved, g, _needs| {
    vec![Some(spread_back(g, &saved.keep, &saved.input))]
});

/// The gradient `g` of a reduction with kept shape `keep`, broadcast back to the input shape
/// `input` as a view (no copy).
pub(super) fn spread_back(g: &Tensor, keep: &Shape, input: &Shape) -> Tensor {
    let g = g.reshape_raw(keep);
    let layout = g
        .layout
        .broadcast_to(input)
        .expect("keepdim shape broadcasts");
    Tensor {
        storage: g.storage.clone(),
        layout,
        node: None,
    }
}

impl Tensor {
    /// Sum over `axes`; reduced axes are kept with size 1 when `keepdim`.
    #[track_caller]
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = normalize_axes("sum", axes, self.shape())?;
        let out = sum_axes_raw(self, &axes);
        let out = out.reshape_raw(&reduced_shape(self.shape(), &axes, keepdim));
        Ok(record(out, &[self], |_| SumBackward {
            input: self.layout.shape.clone(),
            keep: reduced_shape(self.shape(), &axes, true),
        }))
    }

    /// Sum of all elements, as a rank-0 tensor.
    pub fn sum_all(&self) -> Tensor {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum(&axes, false).expect("all axes are valid")
    }
}
