//! Slot hints (`FlowTable::prefetch_slot` → `FlowTable::observe_hinted`): a hint is only a
//! shortcut; a stale one (the flow ended since, or its slot was reused) must not change what is
//! counted.

use std::net::IpAddr;

use outpost_decode::{Duration, IpAddress, Nanos};
use outpost_flowmeter::table::Observation;
use outpost_flowmeter::{EndReason, FlowKey, FlowRecord, FlowTable, Side, TableConfig};

fn key(last: u8) -> (FlowKey, Side) {
    let a = IpAddress::from(IpAddr::from([10, 0, 0, last]));
    let b = IpAddress::from(IpAddr::from([192, 168, 1, 1]));
    FlowKey::new(a, 40_000, b, 443, 17, 0)
}

fn obs(ms: u64) -> Observation {
    Observation {
        ts: Nanos(ms * 1_000_000),
        ip_len: 100,
        tcp_flags: 0,
        ttl: 64,
        tos: 0,
        icmp_type: 0,
        icmp_code: 0,
    }
}

fn table(capacity: usize) -> FlowTable {
    FlowTable::new(
        TableConfig {
            capacity,
            idle_timeout: Duration::from_secs(30),
            active_timeout: Duration::from_secs(120),
            close_linger: Duration::from_secs(2),
        },
        0,
    )
}

#[test]
fn a_hint_to_a_slot_whose_flow_ended_is_not_trusted() {
    let mut t = table(2);
    let mut records: Vec<FlowRecord> = Vec::new();
    let (x, xs) = key(1);
    let (y, ys) = key(2);
    t.observe(&x, x.hash64(), xs, &obs(0), &mut |r| records.push(r));
    t.observe(&y, y.hash64(), ys, &obs(20_000), &mut |r| records.push(r));
    let hint = t.prefetch_slot(x.hash64());
    assert!(hint.is_some());
    // X idles out; its slot is free but still holds X's key.
    t.advance(Nanos(31_000 * 1_000_000), &mut |r| records.push(r));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].end_reason, EndReason::IdleTimeout);
    assert_eq!(t.len(), 1);
    // A new packet of X with the stale hint starts a new flow, tracked and exported.
    t.observe_hinted(&x, x.hash64(), hint, xs, &obs(31_000), &mut |r| records.push(r));
    assert_eq!(t.stats.flows, 3);
    assert_eq!(t.len(), 2);
    t.flush(&mut |r| records.push(r));
    assert_eq!(records.len(), 3);
    let again: Vec<_> =
        records.iter().filter(|r| r.flow_id != records[0].flow_id && r.fwd.packets == 1).collect();
    assert_eq!(again.len(), 2, "{records:?}");
}

#[test]
fn a_hint_to_a_reused_slot_falls_back_to_the_index() {
    let mut t = table(1);
    let mut records: Vec<FlowRecord> = Vec::new();
    let (x, xs) = key(1);
    let (y, ys) = key(2);
    t.observe(&x, x.hash64(), xs, &obs(0), &mut |r| records.push(r));
    let hint = t.prefetch_slot(x.hash64());
    // Y evicts X and takes its slot.
    t.observe(&y, y.hash64(), ys, &obs(1), &mut |r| records.push(r));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].end_reason, EndReason::Evicted);
    // X's packet with the hint to Y's slot: not counted in Y.
    t.observe_hinted(&x, x.hash64(), hint, xs, &obs(2), &mut |r| records.push(r));
    assert_eq!(records.len(), 2);
    assert_eq!(records[1].end_reason, EndReason::Evicted);
    assert_eq!(records[1].fwd.packets + records[1].rev.packets, 1);
    t.flush(&mut |r| records.push(r));
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].fwd.packets + records[2].rev.packets, 1);
}

#[test]
fn a_valid_hint_counts_in_the_flow() {
    let mut t = table(16);
    let mut records: Vec<FlowRecord> = Vec::new();
    let (x, xs) = key(1);
    t.observe(&x, x.hash64(), xs, &obs(0), &mut |r| records.push(r));
    let hint = t.prefetch_slot(x.hash64());
    t.observe_hinted(&x, x.hash64(), hint, xs.other(), &obs(1), &mut |r| records.push(r));
    t.flush(&mut |r| records.push(r));
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].fwd.packets, records[0].rev.packets), (1, 1));
    assert_eq!(t.stats.flows, 1);
}
