//! Encoding does not allocate per record: after construction, encoding many records into
//! messages (handed to a callback that keeps only their lengths) performs no allocation.

mod common;

use common::record;
use outpost_export::{BiflowMode, IpfixEncoder, IpfixOptions, NetflowV9Encoder, NetflowV9Options};
use outpost_flowmeter::FlowRecord;
use outpost_tools::alloc::{Counting, allocations};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations this thread made while running `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = allocations();
    f();
    allocations() - before
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
