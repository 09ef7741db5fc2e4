//! A counting global allocator for tests and benchmarks that check what code allocates:
//! the system allocator, counting each thread's allocations and live bytes in thread-locals.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: outpost_tools::alloc::Counting = outpost_tools::alloc::Counting;
//! ```
//! then compare [`allocations`] or [`live_bytes`] before and after the code under test (same
//! thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the current thread's allocations and live bytes.
#[derive(Debug)]
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<i64> = const { Cell::new(0) };
}

fn size(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn note(delta: i64, allocation: bool) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = LIVE_BYTES.try_with(|b| b.set(b.get() + delta));
    if allocation {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only
// thread-locals that hold no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(size(layout.size()), true);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(size(layout.size()), true);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-size(layout.size()), false);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(size(new_size) - size(layout.size()), true);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations (and reallocations) this thread has made so far (only counted when
/// [`Counting`] is the global allocator).
#[must_use]
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes this thread has allocated and not freed so far (frees of another thread's
/// allocations count where they happen).
#[must_use]
pub fn live_bytes() -> i64 {
    LIVE_BYTES.with(Cell::get)
}
