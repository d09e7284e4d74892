//! A cache prefetch hint, the one `unsafe` of the packet logic.
//!
//! The batch path hashes a whole batch of keys and asks for their buckets and entries
//! before it reads any of them, so that a million-flow table's cache misses overlap
//! instead of queueing one after another (docs/performance.md). Stable Rust offers no
//! safe prefetch: `_mm_prefetch` is marked unsafe for its target feature, although a
//! prefetch reads nothing into the program, cannot fault on any address and is only a
//! hint to the cache.

/// Asks the CPU to bring the cache line holding `value` into L1.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 has no architectural effect and never faults; SSE is part of
    // the x86_64 baseline, so the instruction exists on every CPU this code runs on.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
