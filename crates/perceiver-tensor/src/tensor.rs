//! The [`Tensor`] type: shared f32 storage, a strided layout and an optional graph node.

use crate::autograd::Node;
use crate::layout::{for_each_row, numel, Layout};
use crate::rng::Rng;
use crate::{Error, Result};
use perceiver_kernels as kernels;
use std::fmt;
use std::sync::Arc;

/// An n-dimensional f32 array, cheap to clone, shareable between threads.
///
/// A tensor is a view (shape, strides, offset) into reference-counted storage plus, when it
/// takes part in a differentiable computation, a node of the autograd graph. Views (reshape,
/// permute, narrow, broadcast) share the storage; [`Tensor::contiguous`] copies only when needed.
///
/// ```
/// use perceiver_tensor::Tensor;
/// let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// let w = Tensor::ones(&[3, 1]).requires_grad();
/// let y = x.matmul(&w)?.sum_all();
/// assert_eq!(y.to_scalar()?, 21.0);
/// let grads = y.backward()?;
/// assert_eq!(grads.get(&w).unwrap().to_vec(), vec![5.0, 7.0, 9.0]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Vec<f32>>,
    pub(crate) layout: Layout,
    pub(crate) node: Option<Arc<Node>>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.numel();
        let mut s = f.debug_struct("Tensor");
        s.field("shape", &self.shape());
        s.field("tracked", &self.is_tracked());
        if n <= 16 {
            s.field("data", &self.to_vec());
        }
        s.finish()
    }
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------

    /// Wraps an owned buffer laid out row-major as `shape` (no copy).
    #[track_caller]
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::invalid(
                "from_vec",
                format!(
                    "{} values cannot fill shape {:?} ({} elements)",
                    data.len(),
                    shape,
                    numel(shape)
                ),
            ));
        }
        Ok(Tensor::from_parts(data, shape))
    }

    /// Copies a slice laid out row-major as `shape`.
    #[track_caller]
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A contiguous tensor over `data` laid out row-major as `shape`, for kernels whose output
    /// length is known to match (a mismatch is a bug and panics; [`Tensor::from_vec`] returns an
    /// error instead).
    pub fn from_parts(data: Vec<f32>, shape: &[usize]) -> Tensor {
        assert_eq!(
            data.len(),
            numel(shape),
            "Tensor::from_parts: length of the data"
        );
        Tensor {
            storage: Arc::new(data),
            layout: Layout::contiguous(shape),
            node: None,
        }
    }

    /// A rank-0 tensor holding `v`.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_parts(vec![v], &[])
    }

    /// A tensor filled with `v`.
    pub fn full(shape: &[usize], v: f32) -> Tensor {
        Tensor::from_parts(vec![v; numel(shape)], shape)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// Zeros of the same shape as `self` (untracked).
    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape())
    }

    /// `start, start + step, ...` below `end` (1-D).
    #[track_caller]
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(
                "arange",
                format!("needs finite bounds and a non-zero step, got {start}..{end} step {step}"),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let data: Vec<f32> = (0..n).map(|i| start + step * i as f32).collect();
        Ok(Tensor::from_parts(data, &[n]))
    }

    /// `n` evenly spaced values from `start` to `end`, both included (1-D), computed in f64.
    pub fn linspace(start: f32, end: f32, n: usize) -> Tensor {
        let data: Vec<f32> = (0..n)
            .map(|i| {
                if n == 1 {
                    start
                } else {
                    (start as f64 + (end as f64 - start as f64) * i as f64 / (n - 1) as f64) as f32
                }
            })
            .collect();
        Tensor::from_parts(data, &[n])
    }

    /// Standard normal samples from a seeded generator.
    pub fn randn(shape: &[usize], rng: &mut Rng) -> Tensor {
        let data = (0..numel(shape)).map(|_| rng.normal()).collect();
        Tensor::from_parts(data, shape)
    }

    /// Uniform samples in `[lo, hi)` from a seeded generator.
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
        let data = (0..numel(shape))
            .map(|_| lo + (hi - lo) * rng.uniform())
            .collect();
        Tensor::from_parts(data, shape)
    }

    /// Normal samples with `mean` and `std`, redrawn until they fall in `[lo, hi]` (absolute
    /// bounds, as `torch.nn.init.trunc_normal_` takes them).
    #[track_caller]
    pub fn trunc_normal(
        shape: &[usize],
        mean: f32,
        std: f32,
        lo: f32,
        hi: f32,
        rng: &mut Rng,
    ) -> Result<Tensor> {
        if !(lo < hi) || !(std >= 0.0) || mean + 6.0 * std < lo || mean - 6.0 * std > hi {
            return Err(Error::invalid(
                "trunc_normal",
                format!("empty or unreachable interval [{lo}, {hi}] for mean {mean}, std {std}"),
            ));
        }
        let data = (0..numel(shape))
            .map(|_| loop {
                let v = mean + std * rng.normal();
                if v >= lo && v <= hi {
                    break v;
                }
            })
            .collect();
        Ok(Tensor::from_parts(data, shape))
    }

    /// Copies an ndarray array of any dimension.
    pub fn from_ndarray<S, D>(a: &ndarray::ArrayBase<S, D>) -> Tensor
    where
        S: ndarray::Data<Elem = f32>,
        D: ndarray::Dimension,
    {
        let shape = a.shape().to_vec();
        let data: Vec<f32> = a.iter().copied().collect();
        Tensor::from_parts(data, &shape)
    }

    /// Copies into an owned dynamic-dimension ndarray.
    pub fn to_ndarray(&self) -> ndarray::ArrayD<f32> {
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(self.shape()), self.to_vec())
            .expect("shape and element count agree")
    }

    // ----- inspection ---------------------------------------------------------------------

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }

    /// Alias of [`Tensor::shape`].
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.layout.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    /// The layout (shape, strides, offset).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// True when the elements are row-major without gaps.
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// The elements as a slice when the tensor is contiguous.
    pub fn as_slice(&self) -> Option<&[f32]> {
        if self.is_contiguous() {
            let o = self.layout.offset;
            Some(&self.storage[o..o + self.numel()])
        } else {
            None
        }
    }

    /// The elements in row-major order (copies).
    pub fn to_vec(&self) -> Vec<f32> {
        if let Some(s) = self.as_slice() {
            return s.to_vec();
        }
        let mut out = Vec::with_capacity(self.numel());
        let st = &self.storage[..];
        let s = if self.rank() == 0 {
            0
        } else {
            self.layout.strides[self.rank() - 1]
        };
        for_each_row(
            self.shape(),
            [self.layout.strides()],
            [self.layout.offset],
            |[b], n| {
                if s == 1 {
                    out.extend_from_slice(&st[b..b + n]);
                } else {
                    out.extend((0..n).map(|i| st[b + i * s]));
                }
            },
        );
        out
    }

    /// The value of a one-element tensor.
    #[track_caller]
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::invalid(
                "to_scalar",
                format!("needs exactly one element, got shape {:?}", self.shape()),
            ));
        }
        Ok(self.storage[self.layout.offset])
    }

    /// Element at a multi-index.
    #[track_caller]
    pub fn get(&self, index: &[usize]) -> Result<f32> {
        if index.len() != self.rank() || index.iter().zip(self.shape()).any(|(&i, &d)| i >= d) {
            return Err(Error::shape(
                "get",
                "index out of bounds",
                index,
                self.shape(),
            ));
        }
        let off = self.layout.offset
            + index
                .iter()
                .zip(self.layout.strides())
                .map(|(i, s)| i * s)
                .sum::<usize>();
        Ok(self.storage[off])
    }

    /// True when any element is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        self.to_vec().iter().any(|v| !v.is_finite())
    }

    // ----- autograd handles ---------------------------------------------------------------

    /// This tensor as a new leaf that requires a gradient (shares the storage).
    pub fn requires_grad(&self) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout: self.layout.clone(),
            node: Some(Node::leaf(self.shape())),
        }
    }

    /// True when this tensor is part of the autograd graph.
    pub fn is_tracked(&self) -> bool {
        self.node.is_some()
    }

    /// The same values, cut from the graph (no gradient flows through the result).
    pub fn detach(&self) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            layout: self.layout.clone(),
            node: None,
        }
    }

    /// Identity of the graph node, when tracked.
    pub fn node_id(&self) -> Option<crate::autograd::NodeId> {
        self.node.as_ref().map(|n| n.id)
    }

    pub(crate) fn with_node(mut self, node: Option<Arc<Node>>) -> Tensor {
        self.node = node;
        self
    }

    // ----- raw helpers used by kernels ------------------------------------------------------

    /// The storage and layout, for kernels.
    pub fn raw(&self) -> (&[f32], &Layout) {
        (&self.storage, &self.layout)
    }

    /// A GEMM view of a rank-2 tensor (any strides). Panics on another rank (an internal
    /// invariant of the callers, which validate shapes first).
    pub fn mat(&self) -> perceiver_kernels::gemm::MatRef<'_> {
        let l = &self.layout;
        assert_eq!(l.shape().len(), 2, "Tensor::mat needs a rank-2 tensor");
        perceiver_kernels::gemm::MatRef {
            data: &self.storage,
            offset: l.offset(),
            rows: l.shape()[0],
            cols: l.shape()[1],
            row_stride: l.strides()[0],
            col_stride: l.strides()[1],
        }
    }

    /// Contiguous elements, borrowing when possible.
    pub fn contiguous_data(&self) -> std::borrow::Cow<'_, [f32]> {
        match self.as_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => std::borrow::Cow::Owned(self.to_vec()),
        }
    }

    /// Adds `other` (same shape, any layout) into this untracked tensor, in place when the
    /// storage is not shared. Used for gradient accumulation.
    pub(crate) fn add_assign_untracked(&mut self, other: &Tensor) {
        debug_assert_eq!(self.shape(), other.shape());
        let n = self.numel();
        if !(self.is_contiguous() && self.layout.offset == 0 && self.storage.len() == n) {
            *self = Tensor::from_parts(self.to_vec(), self.shape());
        }
        let dst = Arc::make_mut(&mut self.storage);
        match other.as_slice() {
            Some(src) => {
                kernels::add_assign(dst, src);
            }
            None => {
                let src = other.to_vec();
                kernels::add_assign(dst, &src);
            }
        }
        self.node = None;
    }

    /// Mutable access to the elements of an untracked tensor, copying first when the storage is
    /// shared or the layout is not compact. Used by optimizers to update parameters in place.
    pub fn data_mut(&mut self) -> &mut [f32] {
        let n = self.numel();
        if !(self.is_contiguous() && self.layout.offset == 0 && self.storage.len() == n) {
            *self = Tensor::from_parts(self.to_vec(), self.shape()).with_node(self.node.clone());
        }
        Arc::make_mut(&mut self.storage).as_mut_slice()
    }
}
