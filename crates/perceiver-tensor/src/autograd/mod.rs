//! Reverse-mode automatic differentiation.
//!
//! # Design
//! - A [`Tensor`] carries an optional graph node. A node is recorded only when gradients are
//!   enabled (see [`no_grad`]) and at least one input is tracked; untracked computations cost
//!   nothing extra.
//! - A node links to its parents' nodes, never to their tensors, so the storage of intermediate
//!   results is freed as soon as no rule saved it. Each op's [`Backward`] rule keeps only what it
//!   needs (often nothing, or one side of a product, and only when the other side is tracked).
//! - [`Tensor::backward`] sorts the graph topologically with an explicit stack (no recursion, so
//!   deep graphs cannot overflow the stack), then runs the rules in reverse order. Gradients are
//!   accumulated in place: the first contribution is moved in, later ones are added into it. A
//!   non-leaf gradient is dropped as soon as its rule has run; only leaf gradients are returned,
//!   in [`Grads`].
//! - A rule is told which parents need a gradient and must return one for each of them; a missing
//!   gradient for a parent that needs one is a bug in the rule and panics with the op's name, so no
//!   op can drop gradients silently.

mod custom;
pub mod profile;

pub use custom::{apply_custom, CustomOp, Forward};

use crate::layout::Shape;
use crate::{Error, Result, Tensor};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identity of a graph node (unique within the process).
pub type NodeId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn fresh_id() -> NodeId {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The gradient rule of one recorded op.
///
/// `backward` receives the gradient of the loss with respect to the op's output (of the output's
/// shape; contiguous unless the rule [takes any layout](Backward::takes_strided_grad)) and, for
/// each input, whether it needs a gradient. It returns one entry per
/// input: `Some(gradient)` (of that input's shape, any layout) where needed, `None` elsewhere.
/// Rules run with gradient recording disabled and must not fail: shapes were validated in the
/// forward pass.
pub trait Backward: Send + Sync {
    /// Name of the op, used in diagnostics.
    fn name(&self) -> &'static str;
    /// Computes the input gradients from the output gradient.
    fn backward(&self, grad_out: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>>;
    /// Whether `backward` reads its output gradient through its strides, so the graph need not
    /// copy a strided gradient into a contiguous one first (views such as `permute` and
    /// `reshape`, and kernels that read strided operands). Default: `false`.
    fn takes_strided_grad(&self) -> bool {
        false
    }
}

/// A node of the autograd graph: a leaf (a tensor that requires a gradient) or a recorded op.
pub struct Node {
    pub(crate) id: NodeId,
    pub(crate) op: Option<Box<dyn Backward>>,
    pub(crate) parents: Vec<Option<Arc<Node>>>,
    pub(crate) shape: Shape,
}

impl Node {
    pub(crate) fn leaf(shape: &[usize]) -> Arc<Node> {
        Arc::new(Node {
            id: fresh_id(),
            op: None,
            parents: Vec::new(),
            shape: shape.into(),
        })
    }

    /// The node's identity.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// True for a leaf (a tensor created with `requires_grad`, or a parameter).
    pub fn is_leaf(&self) -> bool {
        self.op.is_none()
    }
}

/// A stable leaf of the autograd graph: every tensor attached to it ([`Tensor::attach`]) is
/// the same variable to [`Grads`], whatever its value. This is what a trainable parameter is
/// built on: its value can be replaced between steps while its gradient stays under one id.
#[derive(Clone)]
pub struct Leaf(Arc<Node>);

impl Leaf {
    /// A new leaf for tensors of `shape`.
    pub fn new(shape: &[usize]) -> Leaf {
        Leaf(Node::leaf(shape))
    }

    /// The id its gradient is stored under in [`Grads`].
    pub fn id(&self) -> NodeId {
        self.0.id
    }
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leaf({:?}, {:?})", self.0.id, self.0.shape)
    }
}

impl Tensor {
    /// This tensor tracked as the variable `leaf` (the shapes must agree). Outside
    /// [`no_grad`] gradients with respect to it are stored under [`Leaf::id`]; inside, the
    /// tensor is returned untracked.
    pub fn attach(&self, leaf: &Leaf) -> Tensor {
        assert_eq!(
            self.shape(),
            &leaf.0.shape[..],
            "Tensor::attach: shape of the leaf"
        );
        if is_grad_enabled() {
            self.clone().with_node(Some(leaf.0.clone()))
        } else {
            self.detach()
        }
    }
}

impl Drop for Node {
    // Dropping a long chain of nodes recursively could overflow the stack: unlink iteratively.
    fn drop(&mut self) {
        let mut stack: Vec<Arc<Node>> = self.parents.drain(..).flatten().collect();
        while let Some(node) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(node) {
                stack.extend(inner.parents.drain(..).flatten());
            }
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside a [`no_grad`] scope on this thread.
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Guard that disables gradient recording on this thread until dropped.
pub struct NoGradGuard {
    prev: bool,
}

impl NoGradGuard {
    /// Disables recording until the guard is dropped.
    pub fn new() -> Self {
        let prev = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { prev }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        let prev = self.prev;
        GRAD_ENABLED.with(|g| g.set(prev));
    }
}

/// Runs `f` with gradient recording disabled on this thread (inference, optimizer updates).
///
/// ```
/// use perceiver_tensor::{no_grad, Tensor};
/// let w = Tensor::ones(&[2]).requires_grad();
/// let y = no_grad(|| w.mul_scalar(3.0));
/// assert!(!y.is_tracked());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Attaches a graph node to `out` when recording is enabled and any input is tracked.
/// `make` receives which inputs are tracked and builds the rule, saving only what those need.
pub(crate) fn record<B: Backward + 'static>(
    out: Tensor,
    inputs: &[&Tensor],
    make: impl FnOnce(&[bool]) -> B,
) -> Tensor {
    if !is_grad_enabled() {
        return out;
    }
    let needs: Vec<bool> = inputs.iter().map(|t| t.node.is_some()).collect();
    if !needs.iter().any(|&n| n) {
        return out;
    }
    let op = make(&needs);
    let parents = inputs.iter().map(|t| t.node.clone()).collect();
    attach_op(out, Box::new(op), parents)
}

/// `out` as the output of `op` applied to `parents` (one per input; `None` for an input that
/// needs no gradient).
pub(crate) fn attach_op(
    out: Tensor,
    op: Box<dyn Backward>,
    parents: Vec<Option<Arc<Node>>>,
) -> Tensor {
    profile::forward_op(op.name());
    let node = Node {
        id: fresh_id(),
        op: Some(op),
        parents,
        shape: out.layout.shape.clone(),
    };
    Tensor {
        storage: out.storage,
        layout: out.layout,
        node: Some(Arc::new(node)),
    }
}

/// Gradients of leaf tensors and parameters, returned by [`Tensor::backward`].
#[derive(Default)]
pub struct Grads {
    map: HashMap<NodeId, Tensor>,
}

impl Grads {
    /// Gradient of a tracked leaf tensor, if it received one.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        t.node.as_ref().and_then(|n| self.map.get(&n.id))
    }

    /// Gradient of a tracked leaf tensor, or [`Error::NoGradient`] naming `name`.
    pub fn wrt(&self, t: &Tensor, name: &str) -> Result<&Tensor> {
        self.get(t).ok_or_else(|| Error::NoGradient {
            name: name.to_string(),
        })
    }

    /// Gradient by node id.
    pub fn get_id(&self, id: NodeId) -> Option<&Tensor> {
        self.map.get(&id)
    }

    /// Mutable access to a gradient by node id (for clipping or scaling in place).
    pub fn get_id_mut(&mut self, id: NodeId) -> Option<&mut Tensor> {
        self.map.get_mut(&id)
    }

    /// Sets the gradient of node `id`, replacing any previous one.
    pub fn insert_id(&mut self, id: NodeId, grad: Tensor) {
        self.map.insert(id, grad.detach());
    }

    /// Removes and returns a gradient by node id.
    pub fn remove_id(&mut self, id: NodeId) -> Option<Tensor> {
        self.map.remove(&id)
    }

    /// Number of gradients held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds every gradient of `other` into `self` (gradient accumulation over micro-batches).
    pub fn accumulate(&mut self, other: Grads) {
        for (id, g) in other.map {
            accumulate(&mut self.map, id, g);
        }
    }
}

fn accumulate(map: &mut HashMap<NodeId, Tensor>, id: NodeId, g: Tensor) {
    use std::collections::hash_map::Entry;
    match map.entry(id) {
        Entry::Vacant(e) => {
            e.insert(g.detach());
        }
        Entry::Occupied(mut e) => {
            e.get_mut().add_assign_untracked(&g);
        }
    }
}

impl Tensor {
    /// Back-propagates from this scalar (a tensor of one element) and returns the gradients of
    /// every tracked leaf it depends on.
    #[track_caller]
    pub fn backward(&self) -> Result<Grads> {
        if self.numel() != 1 {
            return Err(Error::invalid(
                "backward",
                format!(
                    "backward() needs a scalar (one element), got shape {:?}; use backward_with",
                    self.shape()
                ),
            ));
        }
        let seed = Tensor::ones(self.shape());
        self.backward_with(&seed)
    }

    /// Back-propagates a given output gradient `grad` (of this tensor's shape).
    #[track_caller]
    pub fn backward_with(&self, grad: &Tensor) -> Result<Grads> {
        if grad.shape() != self.shape() {
            return Err(Error::shape(
                "backward_with",
                "the gradient must have the output's shape",
                grad.shape(),
                self.shape(),
            ));
        }
        let Some(root) = self.node.clone() else {
            return Err(Error::invalid(
                "backward",
                "this tensor is not tracked: no input requires a gradient, or it was computed under no_grad",
            ));
        };
        Ok(run_backward(root, grad.detach()))
    }
}

fn topo_order(root: &Arc<Node>) -> Vec<Arc<Node>> {
    // Iterative post-order DFS.
    let mut order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let mut stack: Vec<(Arc<Node>, usize)> = vec![(root.clone(), 0)];
    visited.insert(root.id);
    while let Some((node, next)) = stack.pop() {
        if next < node.parents.len() {
            let parent = node.parents[next].clone();
            stack.push((node, next + 1));
            if let Some(p) = parent {
                if visited.insert(p.id) {
                    stack.push((p, 0));
                }
            }
        } else {
            order.push(node);
        }
    }
    order
}

fn run_backward(root: Arc<Node>, seed: Tensor) -> Grads {
    let _guard = NoGradGuard::new();
    let order = topo_order(&root);
    drop(root);
    let mut pending: HashMap<NodeId, Tensor> = HashMap::new();
    let mut leaves = Grads::default();
    pending.insert(order.last().expect("root is in the order").id, seed);
    for node in order.into_iter().rev() {
        let Some(grad) = pending.remove(&node.id) else {
            continue;
        };
        debug_assert_eq!(grad.shape(), &node.shape[..]);
        let Some(op) = &node.op else {
            accumulate(&mut leaves.map, node.id, grad.contiguous());
            continue;
        };
        let needs: Vec<bool> = node.parents.iter().map(|p| p.is_some()).collect();
        // (a permuted view stays a view through `permute` and `reshape` rules, so splitting
        // and merging attention heads copies no gradient)
        let grad = if op.takes_strided_grad() {
            grad
        } else {
            grad.contiguous()
        };
        let started = profile::start();
        let grads = op.backward(&grad, &needs);
        profile::backward_op(op.name(), started);
        assert_eq!(
            grads.len(),
            node.parents.len(),
            "autograd bug: backward of `{}` returned {} gradients for {} inputs",
            op.name(),
            grads.len(),
            node.parents.len()
        );
        for (i, (parent, g)) in node.parents.iter().zip(grads).enumerate() {
            match (parent, g) {
                (Some(p), Some(g)) => {
                    assert_eq!(
                        g.shape(),
                        &p.shape[..],
                        "autograd bug: backward of `{}` gave input {i} a gradient of the wrong shape",
                        op.name()
                    );
                    accumulate(&mut pending, p.id, g);
                }
                (Some(_), None) => panic!(
                    "autograd bug: backward of `{}` dropped the gradient of input {i}",
                    op.name()
                ),
                (None, _) => {}
            }
        }
    }
    leaves
}
