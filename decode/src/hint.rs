//! CPU hints shared by the per-packet tables of every crate (flow table, detector tables,
//! snippet history).

/// Issues a prefetch of the cache line at `p` into every cache level (a hint: no effect on
/// results; a no-op on targets other than x86_64).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, has no architectural effect, and
    // `p` is a valid reference anyway.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(p).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
