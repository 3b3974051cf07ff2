//! Per-thread CPU settings for compute threads.

/// Makes this thread's f32 arithmetic flush denormal results and inputs to zero (the FTZ and DAZ
/// bits of MXCSR on x86-64; a no-op elsewhere).
///
/// Numbers below 1.2e-38 are far below anything a model's result depends on, but on x86 each
/// operation that produces or reads one can take a hundred times longer. They appear as a model
/// trains (attention weights of ignored tokens, their gradients, Adam's second moments), so without
/// flushing, training epochs slow down as accuracy rises. Call it at the start of every compute
/// thread (for example from rayon's `start_handler`).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register through a
        // valid 4-byte location; setting FTZ (bit 15) and DAZ (bit 6) only changes how
        // denormals are rounded.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}
