//! The extension point for fused kernels: an op with a hand-written forward and backward,
//! defined in another crate (fused attention, fused layers).

use super::{attach_op, is_grad_enabled, Backward};
use crate::{Error, Result, Tensor};

/// What [`CustomOp::forward`] returns: the output, and what the backward needs (`None` when
/// no input needs a gradient).
pub type Forward<S> = Result<(Tensor, Option<S>)>;

/// A differentiable op implemented outside this crate.
///
/// Its inputs are positional and may be absent (`None`: an optional bias, say), so an op never
/// needs placeholder tensors. [`apply_custom`] passes them to `forward` detached from the graph,
/// with one flag per input saying whether the input needs a gradient (present, tracked, and
/// recording on); `forward` returns the output and what its backward needs (`Saved`), and
/// should save only what the flagged inputs' gradients need (nothing when none is flagged).
/// `backward` receives the same flags and returns one entry per input: `Some(gradient)` (of
/// that input's shape, any layout) where flagged, `None` elsewhere.
///
/// ```
/// use perceiver_tensor::{apply_custom, CustomOp, Forward, Result, Tensor};
///
/// /// `a·x + b` elementwise, `b` optional.
/// struct Axpb(f32);
///
/// impl CustomOp for Axpb {
///     type Saved = ();
///     const NAME: &'static str = "axpb";
///     fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<()> {
///         let x = inputs[0].expect("x is required");
///         let y = x.mul_scalar(self.0);
///         let y = match inputs[1] {
///             Some(b) => y.add(b)?,
///             None => y,
///         };
///         Ok((y, needs.iter().any(|&n| n).then_some(())))
///     }
///     fn backward(&self, _: &(), g: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
///         vec![needs[0].then(|| g.mul_scalar(self.0)), needs[1].then(|| g.clone())]
///     }
/// }
///
/// let x = Tensor::ones(&[3]).requires_grad();
/// let y = apply_custom(Axpb(2.0), &[Some(&x), None])?;
/// let grads = y.sum_all().backward()?;
/// assert_eq!(grads.get(&x).unwrap().to_vec(), vec![2.0; 3]);
/// # Ok::<(), perceiver_tensor::Error>(())
/// ```
pub trait CustomOp: Send + Sync + 'static {
    /// What the forward keeps for the backward.
    type Saved: Send + Sync + 'static;
    /// Name used in diagnostics and the profiler.
    const NAME: &'static str;
    /// Computes the output from the (detached) inputs; `needs[i]` says whether input `i` needs
    /// a gradient. Errors (bad shapes, unsupported settings) are returned here.
    fn forward(&self, inputs: &[Option<&Tensor>], needs: &[bool]) -> Forward<Self::Saved>;
    /// Computes the gradients of the inputs flagged in `needs`. Called only when the forward
    /// saved something.
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
        Op::NAME
    }
    fn backward(&self, grad_out: &Tensor, needs: &[bool]) -> Vec<Option<Tensor>> {
        self.op.backward(&self.saved, grad_out, needs)
    }
    fn takes_strided_grad(&self) -> bool {
        self.op.takes_strided_grad()
    }
}

/// Runs a [`CustomOp`] on `inputs` (`None` for an absent optional input) and records it in the
/// graph when any input needs a gradient.
#[track_caller]
pub fn apply_custom<Op: CustomOp>(op: Op, inputs: &[Option<&Tensor>]) -> Result<Tensor> {
    let recording = is_grad_enabled();
    let needs: Vec<bool> = inputs
        .iter()
        .map(|t| recording && t.is_some_and(|t| t.is_tracked()))
        .collect();
    let detached: Vec<Option<Tensor>> = inputs.iter().map(|t| t.map(Tensor::detach)).collect();
    let refs: Vec<Option<&Tensor>> = detached.iter().map(Option::as_ref).collect();
    let (out, saved) = op.forward(&refs, &needs)?;
    let out = out.detach();
    if !needs.iter().any(|&n| n) {
        return Ok(out);
    }
    let Some(saved) = saved else {
        return Err(Error::invalid(
            "apply_custom",
            format!(
                "custom op `{}` saved nothing for its backward although an input needs a gradient",
                Op::NAME
            ),
        ));
    };
    let parents = inputs
        .iter()
        .zip(&needs)
        .map(|(t, &n)| {
            if n {
                t.and_then(|t| t.node.clone())
            } else {
                None
            }
        })
        .collect();
    Ok(attach_op(
        out,
        Box::new(CustomBackward { op, saved }),
        parents,
    ))
}
