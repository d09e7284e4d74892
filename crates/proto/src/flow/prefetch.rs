//! A cache prefetch hint, the one `unsafe` of the packet logic.
//!
//! The batch path hashes a whole batch of keys and asks for their buckets and entries
//! before it reads any of them, so that a million-flow table's cache misses overlap
//! instead of queueing one after another (docs/performance.md). Stable Rust offers no
//! safe prefetch: `_mm_prefetch` is marked unsafe for its target feature, although a
//! prefetch reads nothing into the program, cannot fault on any address and is only a
//! hint to the cache.

/// Asks the CPU to bring the cache line holding `value`'s first byte into L1.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    line((value as *const T).cast::<u8>());
}

/// Asks for every cache line `value` lies on: a 116-byte binding at any 4-byte
/// alignment spans two or three lines, and the engine reads and writes all of them.
#[inline(always)]
pub(crate) fn prefetch_all<T>(value: &T) {
    let first = (value as *const T).cast::<u8>();
    let size = std::mem::size_of::<T>();
    let mut at = 0;
    while at < size {
        line(first.wrapping_add(at));
        at += 64;
    }
    // The last line, when the value starts late in its first line.
    line(first.wrapping_add(size.saturating_sub(1)));
}

#[inline(always)]
fn line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 has no architectural effect and never faults, whatever the
    // address; SSE is part of the x86_64 baseline, so the instruction exists on every
    // CPU this code runs on.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
