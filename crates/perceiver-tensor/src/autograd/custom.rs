//! The extension point for fused kernels: an op with a hand-written forward and backward.

use super::{record, Backward};
use crate::{Result, Tensor};

/// A differentiable op implemented outside this crate (for instance fused attention).
///
/// `forward` receives the inputs detached from the graph and returns the output together with
/// whatever its backward needs (`Saved`); it should save nothing when `needs_grad` is false.
/// `backward` returns one gradient per input that needs one (same rules as [`Backward`]).
pub trait CustomOp: Send + Sync + 'static {
    /// What the forward keeps for the backward.
    type Saved: Send + Sync + 'static;
    /// Name used in diagnostics.
    fn name(&self) -> &'static str;
    /// Computes the output. Errors (bad shapes, unsupported settings) are returned here.
    fn forward(&self, inputs: &[Tensor], needs_grad: bool)
        -> Result<(Tensor, Option<Self::Saved>)>;
    /// Computes the input gradients. Called only when the forward saved something.
    fn backward(
        &self,
        saved: &Self::Saved,
        grad_out: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>>;
    /// Whether `backward` accepts an output gradient in any layout (see
    /// [`Backward::takes_strided_grad`]). Default: `false` (it receives a contiguous one).
    fn takes_strided_grad(&self) -> bool {
        false
    }
}

struct CustomBackward<Op: CustomOp> {
    op: Op,
    saved: Op::Saved,
}

impl<Op: CustomOp> Backward for CustomBackward<Op> {
    fn name(&self) -> &'static str {
        self.op.name()
    }
    fn backward(&self, grad_out: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.op.backward(&self.saved, grad_out, needs)
    }
    fn takes_strided_grad(&self) -> bool {
        self.op.takes_strided_grad()
    }
}

/// Runs a [`CustomOp`] and records it in the graph when any input is tracked.
pub fn apply_custom<Op: CustomOp>(op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
    let needs_grad = super::is_grad_enabled() && inputs.iter().any(|t| t.is_tracked());
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let (out, saved) = op.forward(&detached, needs_grad)?;
    let out = out.detach();
    match (needs_grad, saved) {
        (true, Some(saved)) => Ok(record(out, inputs, move |_| CustomBackward { op, saved })),
        (true, None) => Err(crate::Error::invalid(
            "apply_custom",
            format!(
                "custom op `{}` saved nothing for its backward although an input is tracked",
                op.name()
            ),
        )),
        (false, _) => Ok(out),
    }
}
