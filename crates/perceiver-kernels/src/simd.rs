//! The `simd!` macro: one expression compiled for each SIMD level, picked at run time.

/// Evaluates an expression in code compiled for the widest SIMD level this CPU has (AVX-512,
/// else AVX2 + FMA, else the baseline), so the loops in it vectorise accordingly.
///
/// The workspace builds for the baseline x86-64 target (portable binaries); hot loops opt in
/// through this macro. It expands the expression once per level, each copy inside a closure
/// called from exactly one `#[target_feature]` function, which LLVM then inlines (a closure
/// called from several places, as a function argument would be, is not inlined and keeps the
/// baseline instruction set). Functions called from the expression should be
/// `#[inline(always)]` for the same reason. Use it inside each rayon task, not around a
/// parallel iterator.
#[macro_export]
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if ::std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                unsafe fn __simd_avx512<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: the CPU supports the features the function is compiled for.
                unsafe { __simd_avx512(|| $body) }
            } else if ::std::arch::is_x86_feature_detected!("avx2")
                && ::std::arch::is_x86_feature_detected!("fma")
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn __simd_avx2<R>(f: impl FnOnce() -> R) -> R {
                    f()
                }
                // SAFETY: as above.
                unsafe { __simd_avx2(|| $body) }
            } else {
                $body
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body
        }
    }};
}
