//! Differentiable ops, one module each, with the backward rule beside the forward.
//!
//! Every op is a method on [`Tensor`](crate::Tensor). Ops that can fail on bad arguments return
//! [`Result`](crate::Result) and are `#[track_caller]`; ops that cannot fail return the tensor.
//! The table of ops and their gradient checks is generated into `docs/OPS.md` by
//! `cargo xtask codegen` from [`OPS`].

/// Implements [`Backward`](crate::autograd::Backward) for the rule struct `$rule` of the op
/// `$name`: `$body` computes the input gradients from the output gradient `$g` and the flags
/// `$needs`, reading what the forward saved through `$saved` (the rule itself). An op whose rule
/// reads the output gradient through its strides adds `takes_strided_grad = true`.
macro_rules! backward {
    ($rule:ident, $name:literal, |$saved:ident, $g:ident, $needs:ident| $body:expr) => {
        backward!(
            $rule,
            $name,
            |$saved, $g, $needs| $body,
            takes_strided_grad = false
        );
    };
    (
        $rule:ident,
        $name:literal,
        |$saved:ident, $g:ident, $needs:ident| $body:expr,
        takes_strided_grad = $strided:literal
    ) => {
        impl crate::autograd::Backward for $rule {
            fn name(&self) -> &'static str {
                $name
            }
            fn backward(&self, $g: &crate::Tensor, $needs: &[bool]) -> Vec<Option<crate::Tensor>> {
                let $saved = self;
                $body
            }
            fn takes_strided_grad(&self) -> bool {
                $strided
            }
        }
    };
}

mod add;
mod binary;
mod broadcast;
mod concat;
mod contiguous;
mod cross_entropy;
mod div;
mod dropout;
mod exp;
mod gather;
pub(crate) mod gelu;
mod index_select;
mod layer_norm;
mod log;
mod log_softmax;
mod matmul;
mod max;
mod mean;
mod mul;
mod narrow;
mod neg;
mod permute;
mod pow;
mod relu;
mod reshape;
mod scalar;
mod sigmoid;
mod softmax;
mod sqrt;
mod sub;
mod sum;
mod tanh;
mod unary;
mod where_;

pub use perceiver_kernels::GeluKind;
pub use sum::sum_axes_raw;

/// Every differentiable op: `(method, module, gradient-check test name)`.
///
/// The gradient-check tests live in `crates/perceiver-tensor/tests/gradcheck.rs`; a test there
/// fails when an op of this table has no check, and `cargo xtask codegen` renders the table.
pub const OPS: &[(&str, &str, &str)] = &[
    ("add", "ops/add.rs", "grad_add"),
    ("sub", "ops/sub.rs", "grad_sub"),
    ("mul", "ops/mul.rs", "grad_mul"),
    ("div", "ops/div.rs", "grad_div"),
    (
        "affine / add_scalar / mul_scalar",
        "ops/scalar.rs",
        "grad_scalar",
    ),
    ("neg", "ops/neg.rs", "grad_neg"),
    ("exp", "ops/exp.rs", "grad_exp"),
    ("log", "ops/log.rs", "grad_log"),
    ("sqrt", "ops/sqrt.rs", "grad_sqrt"),
    ("powf", "ops/pow.rs", "grad_powf"),
    ("tanh", "ops/tanh.rs", "grad_tanh"),
    ("sigmoid", "ops/sigmoid.rs", "grad_sigmoid"),
    ("relu", "ops/relu.rs", "grad_relu"),
    ("gelu (erf)", "ops/gelu.rs", "grad_gelu_erf"),
    ("gelu (tanh)", "ops/gelu.rs", "grad_gelu_tanh"),
    ("sum", "ops/sum.rs", "grad_sum"),
    ("mean", "ops/mean.rs", "grad_mean"),
    ("max", "ops/max.rs", "grad_max"),
    ("matmul", "ops/matmul.rs", "grad_matmul"),
    (
        "matmul (batched, broadcast)",
        "ops/matmul.rs",
        "grad_matmul_batched",
    ),
    ("concat", "ops/concat.rs", "grad_concat"),
    (
        "split / chunk / narrow",
        "ops/narrow.rs",
        "grad_narrow_split",
    ),
    ("index_select", "ops/index_select.rs", "grad_index_select"),
    ("gather", "ops/gather.rs", "grad_gather"),
    ("where_cond", "ops/where_.rs", "grad_where"),
    ("masked_fill", "ops/where_.rs", "grad_masked_fill"),
    ("softmax", "ops/softmax.rs", "grad_softmax"),
    ("log_softmax", "ops/log_softmax.rs", "grad_log_softmax"),
    ("layer_norm", "ops/layer_norm.rs", "grad_layer_norm"),
    (
        "cross_entropy",
        "ops/cross_entropy.rs",
        "grad_cross_entropy",
    ),
    ("dropout", "ops/dropout.rs", "grad_dropout"),
    (
        "reshape / squeeze / unsqueeze",
        "ops/reshape.rs",
        "grad_reshape",
    ),
    ("permute / transpose", "ops/permute.rs", "grad_permute"),
    ("broadcast_to", "ops/broadcast.rs", "grad_broadcast"),
    ("contiguous", "ops/contiguous.rs", "grad_contiguous"),
];
