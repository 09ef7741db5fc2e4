//! Encoding does not allocate per record: after construction, encoding many records into
//! messages (handed to a callback that keeps only their lengths) performs no allocation.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::record;
use outpost_export::{BiflowMode, IpfixEncoder, IpfixOptions, NetflowV9Encoder, NetflowV9Options};
use outpost_flowmeter::FlowRecord;

/// The system allocator, counting allocations made by the current thread while enabled.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread-locals may be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only
// thread-locals that hold no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

fn records() -> Vec<FlowRecord> {
    (0..20_000).map(|i| record(i, i % 3 == 0, if i % 7 == 0 { 17 } else { 6 }, i % 3)).collect()
}

#[test]
fn the_counter_sees_allocations() {
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 100]))) > 0);
}

#[test]
fn ipfix_encoding_allocates_nothing_per_record() {
    let records = records();
    for mode in [BiflowMode::Biflow, BiflowMode::Uniflow] {
        let mut enc = IpfixEncoder::new(IpfixOptions { mode, ..IpfixOptions::default() }).expect("options");
        let mut bytes = 0usize;
        let n = allocations_during(|| {
            for r in &records {
                enc.encode(r, &mut |m| bytes += m.bytes.len());
            }
            enc.flush(&mut |m| bytes += m.bytes.len());
        });
        assert!(bytes > 1_000_000);
        assert_eq!(n, 0, "{mode:?}: allocations while encoding");
    }
}

#[test]
fn netflow_v9_encoding_allocates_nothing_per_record() {
    let records = records();
    let mut enc = NetflowV9Encoder::new(NetflowV9Options::default()).expect("options");
    let mut bytes = 0usize;
    let n = allocations_during(|| {
        for r in &records {
            enc.encode(r, &mut |m| bytes += m.bytes.len());
        }
        enc.flush(&mut |m| bytes += m.bytes.len());
    });
    assert!(bytes > 1_000_000);
    assert_eq!(n, 0, "allocations while encoding");
}
