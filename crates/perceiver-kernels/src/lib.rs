//! # perceiver-kernels
//!
//! The compute kernels under the Perceiver's tensor: a single-precision GEMM on strided views
//! ([`gemm`]: an AMX tile kernel, an AVX-512 kernel and `matrixmultiply` as the portable
//! backend) and the SIMD row kernels the ops are built from (parallel maps, fixed-order sums and
//! dot products, fast exp / tanh / erf, GELU, LayerNorm rows, softmax rows). Everything works on
//! slices and [`gemm::MatRef`] views; nothing here knows about tensors or autograd. The layer
//! above installs a profiling hook ([`gemm::set_profile_hook`]) if it wants GEMM timings.
//!
//! ```
//! use perceiver_kernels::gemm::{gemm_new, MatRef};
//! // [2x3]·[3x2]
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
//! let c = gemm_new(1.0, MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 3, 2));
//! assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
//! assert_eq!(perceiver_kernels::dot(&a, &a), 91.0);
//! ```
//!
//! Hot loops are written once and compiled for each SIMD level through [`simd!`]; the few loops
//! where the compiler's vectorisation is not enough have AVX-512 intrinsic forms (private module
//! `avx512`), tested against the portable forms.

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod cpu;
pub mod elementwise;
pub mod gelu;
pub mod gemm;
pub mod math;
pub mod norm;
pub mod reduce;
mod simd;
#[cfg(test)]
mod tests;

pub use cpu::flush_denormals;
pub use elementwise::{add_assign, map, row_map, zip3_map, zip_map, PAR_THRESHOLD};
pub use gelu::GeluKind;
pub use math::{exp_shift_sum, fast_erf, fast_exp, fast_tanh};
pub use norm::{layer_norm_row, layer_norm_row_uninit};
pub use reduce::{dot, max, sum, sum16, sum_sq_dev16};
