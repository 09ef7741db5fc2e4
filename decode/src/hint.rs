//! CPU hints shared by the per-packet tables of every crate (flow table, detector tables,
//! snippet history).

/// Issues a prefetch of the cache line at `p` into every cache level (a hint: no effect on
/// results; a no-op on targets other than x86_64).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    prefetch_addr(std::ptr::from_ref(p).cast::<u8>());
}

/// Issues a prefetch of every cache line `*p` spans: a value not aligned to a line, like a
/// 112-byte flow slot, straddles a line boundary, and a prefetch of its first byte leaves the
/// rest to miss. A hint like [`prefetch`].
#[inline(always)]
pub fn prefetch_all<T>(p: &T) {
    prefetch_span(std::ptr::from_ref(p).cast::<u8>(), std::mem::size_of::<T>());
}

/// Issues a prefetch of every cache line `bytes` spans (a frame's headers, say). A hint like
/// [`prefetch`].
#[inline(always)]
pub fn prefetch_bytes(bytes: &[u8]) {
    prefetch_span(bytes.as_ptr(), bytes.len());
}

/// Prefetches every line of the `size` bytes from `start`.
#[inline(always)]
fn prefetch_span(start: *const u8, size: usize) {
    for offset in line_offsets(start as usize, size) {
        prefetch_addr(start.wrapping_add(offset));
    }
}

/// Offsets from `start` of one byte in each cache line that `size` bytes from `start` span:
/// 0, then the start of every following line.
#[inline(always)]
fn line_offsets(start: usize, size: usize) -> impl Iterator<Item = usize> {
    // Bytes of the first line before the value: the next line starts `64 - lead` in.
    let lead = start & 63;
    std::iter::successors(Some(0usize), move |&o| Some(if o == 0 { 64 - lead } else { o + 64 }))
        .take_while(move |&o| o < size.max(1))
}

#[inline(always)]
fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, has no architectural effect (any
    // address may be given).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::line_offsets;

    #[test]
    fn a_slot_across_a_line_boundary_gets_every_line() {
        // A 112-byte slot 48 bytes into a line covers bytes 48..160: three lines.
        assert_eq!(line_offsets(48, 112).collect::<Vec<_>>(), [0, 16, 80]);
        // Aligned: two lines; a small value inside one line: one.
        assert_eq!(line_offsets(128, 112).collect::<Vec<_>>(), [0, 64]);
        assert_eq!(line_offsets(70, 16).collect::<Vec<_>>(), [0]);
        // Ending exactly at a line boundary adds no line; one byte more does.
        assert_eq!(line_offsets(32, 32).collect::<Vec<_>>(), [0]);
        assert_eq!(line_offsets(32, 33).collect::<Vec<_>>(), [0, 32]);
        // Zero-sized values still name their address.
        assert_eq!(line_offsets(5, 0).collect::<Vec<_>>(), [0]);
    }
}
