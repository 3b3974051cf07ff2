//! Process-wide settings for programs that run training steps: the compute thread pool
//! ([`compute_pool`]) and the heap (memory kept for reuse).
//!
//! A training step allocates and frees the same few hundred megabytes of activations and
//! gradients every time. With glibc's defaults, large blocks are `mmap`ed and unmapped on free,
//! and the top of the heap is trimmed, so every step faults its memory back in page by page and
//! the kernel zeroes each page: on config A that is 8-15% of the step (`perf`: page faults,
//! `clear_page`, `unmap_page_range`). [`retain_freed_memory`] keeps freed memory in the heap
//! for reuse instead. Programs on the system allocator call it once at start-up (the examples
//! do); the library never changes process-wide settings by itself. The `perceiver` CLI and
//! `cargo xtask` do not need it: their global allocator is mimalloc with purging disabled,
//! which keeps freed memory the same way (and `mallopt` would not reach it).

/// Keeps freed memory in the process's heap instead of returning it to the OS: blocks up to
/// 32 MiB come from the heap (not `mmap`), the heap is trimmed only above 1 GiB of free space
/// at its top, and it grows 64 MiB at a time. The resident size stays near the peak of a step.
///
/// Only on Linux with glibc (`mallopt`); elsewhere it does nothing. Returns whether every
/// setting was accepted.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            (libc::M_MMAP_THRESHOLD, 32 << 20),
            (libc::M_TRIM_THRESHOLD, 1 << 30),
            (libc::M_TOP_PAD, 64 << 20),
        ];
        // SAFETY: mallopt only changes allocator parameters; it is called with valid
        // parameter numbers and values in range, before or between allocations.
        settings
            .iter()
            .all(|&(param, value)| unsafe { libc::mallopt(param, value) } == 1)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The rayon pool set-up every program that trains or times a model uses: `threads` workers
/// (rayon's default, one per CPU, for `None`), named `compute-{i}`, each of which flushes
/// denormals ([`perceiver_kernels::flush_denormals`]) when it starts. Finish it with
/// `.build()` (then run the whole program inside with `pool.install`, so each op's parallel
/// loops fork from a worker instead of being injected from outside) or `.build_global()`.
///
/// ```
/// let pool = perceiver_nn::runtime::compute_pool(Some(2)).build().unwrap();
/// assert_eq!(pool.install(rayon::current_num_threads), 2);
/// ```
pub fn compute_pool(threads: Option<usize>) -> rayon::ThreadPoolBuilder {
    let b = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("compute-{i}"))
        .start_handler(|_| perceiver_kernels::flush_denormals());
    match threads {
        Some(n) => b.num_threads(n),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_accepted_on_glibc() {
        let ok = super::retain_freed_memory();
        assert_eq!(ok, cfg!(all(target_os = "linux", target_env = "gnu")));
        // Allocation still works afterwards, large and small.
        let big = vec![1.0f32; 40 << 20];
        let small = vec![2.0f32; 1 << 10];
        assert_eq!(big[big.len() - 1] + small[0], 3.0);
    }
}
