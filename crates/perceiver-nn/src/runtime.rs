//! Process-wide settings for programs that run training steps: the compute thread pool
//! ([`compute_pool`]), the heap (memory kept for reuse), and the memory the machine has
//! available ([`available_memory`]).
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

/// Memory the OS can give this process without swapping, in bytes: `MemAvailable` of
/// `/proc/meminfo` on Linux; `None` elsewhere or when that line cannot be read.
///
/// ```
/// if let Some(bytes) = perceiver_nn::runtime::available_memory() {
///     assert!(bytes > 0);
/// }
/// ```
pub fn available_memory() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        parse_mem_available(&text)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The `MemAvailable:` line of a `/proc/meminfo` text, in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    let scale = match words.next() {
        Some("kB") => 1024,
        None => 1,
        Some(_) => return None,
    };
    value.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_available_is_parsed_in_bytes() {
        let text = "MemTotal:       16314556 kB\nMemFree:  100 kB\nMemAvailable:   12000000 kB\n";
        assert_eq!(super::parse_mem_available(text), Some(12_000_000 * 1024));
        assert_eq!(super::parse_mem_available("MemFree: 1 kB\n"), None);
        assert_eq!(super::parse_mem_available("MemAvailable: x kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(super::available_memory().is_some_and(|b| b > 0));
        }
    }

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
