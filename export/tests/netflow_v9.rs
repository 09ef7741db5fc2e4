//! NetFlow v9 encoding, read back with a strict parser: header (count, uptime, unix secs,
//! packet sequence, source id), templates, forward and reverse records, uptime-based times,
//! MTU splitting and padding, template refresh.

mod common;

use std::net::IpAddr;

use common::wire::{Msg, parse_all};
use common::{T0_SECS, at_ms, counters, record};
use outpost_decode::{Duration, Nanos};
use outpost_export::{ExportClock, NetflowV9Encoder, NetflowV9Options, TemplateRefresh};
use outpost_flowmeter::FlowRecord;

fn encode_with(options: NetflowV9Options, records: &[FlowRecord]) -> Vec<Vec<u8>> {
    let mut enc = NetflowV9Encoder::new(options).expect("valid options");
    let mut out = Vec::new();
    for r in records {
        enc.encode(r, &mut |m| out.push(m.bytes.to_vec()));
    }
    enc.flush(&mut |m| out.push(m.bytes.to_vec()));
    out
}

fn encode(records: &[FlowRecord]) -> Vec<Msg> {
    parse_all(&encode_with(NetflowV9Options::default(), records))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ms(t: Nanos) -> u64 {
    t.0 / 1_000_000
}

/// Absolute time of an uptime field, as collectors compute it.
fn absolute(m: &Msg, uptime_field: u64) -> u64 {
    u64::from(m.h2) * 1000 - u64::from(m.h1) + uptime_field
}

#[test]
fn header_carries_count_uptime_time_sequence_and_source_id() {
    let r = record(1, false, 6, 2);
    let msgs = encode(&[r]);
    let m = &msgs[0];
    assert_eq!(m.version, 9);
    assert_eq!(m.length_or_count, 2 + 2, "two templates and two data records");
    assert_eq!(u64::from(m.h2), r.end().secs(), "unix_secs = export time");
    assert_eq!(m.h3, 0, "first packet has sequence 0");
    assert_eq!(m.h4, 1, "default source id");
    // Boot is one day before the first record's start: unix_secs * 1000 - uptime = boot.
    assert_eq!(u64::from(m.h1) + ms(r.start()), r.end().secs() * 1000 + 86_400_000);
}

#[test]
fn templates_hold_the_documented_fields() {
    let msgs = encode(&[record(1, false, 6, 0)]);
    let m = &msgs[0];
    assert_eq!(m.sets[0].0, 0, "template FlowSet first");
    let ids: Vec<u16> = m.templates.iter().map(|t| t.0).collect();
    assert_eq!(ids, [256, 257]);
    let common = [
        (7, 2),
        (11, 2),
        (4, 1),
        (5, 1),
        (6, 1),
        (58, 2),
        (32, 2),
        (22, 4),
        (21, 4),
        (1, 8),
        (2, 8),
        (52, 1),
        (53, 1),
        (136, 1),
    ];
    for (t, (src, dst, alen)) in m.templates.iter().zip([(8, 12, 4), (27, 28, 16)]) {
        let mut want = vec![(src, 0, alen), (dst, 0, alen)];
        want.extend(common.iter().map(|&(id, len)| (id, 0, len)));
        assert_eq!(t.1, want);
    }
}

#[test]
fn forward_and_reverse_records_with_exact_absolute_times() {
    let r = record(4, false, 6, 2);
    let msgs = encode(&[r]);
    let m = &msgs[0];
    let (f, b) = (&m.records[0], &m.records[1]);
    assert_eq!((f.addr(8), f.addr(12), f.u(7), f.u(11)), (ip("10.0.0.4"), ip("192.0.2.1"), 40_004, 443));
    assert_eq!((b.addr(8), b.addr(12), b.u(7), b.u(11)), (ip("192.0.2.1"), ip("10.0.0.4"), 443, 40_004));
    assert_eq!((f.u(1), f.u(2), f.u(6), f.u(52), f.u(53), f.u(5)), (184, 3, 0x1b, 60, 64, 46 << 2));
    assert_eq!((b.u(1), b.u(2), b.u(6), b.u(52), b.u(53), b.u(5)), (3000, 2, 0x12, 50, 52, 0));
    assert_eq!((absolute(m, f.u(22)), absolute(m, f.u(21))), (ms(r.fwd.first), ms(r.fwd.last)));
    assert_eq!((absolute(m, b.u(22)), absolute(m, b.u(21))), (ms(r.rev.first), ms(r.rev.last)));
    assert_eq!((f.u(58), f.u(136)), (0, 3));
}

#[test]
fn one_way_flows_have_no_reverse_record_and_ipv6_uses_its_template() {
    let mut icmp6 = record(3, true, 58, 0);
    icmp6.icmp_type = 1;
    icmp6.icmp_code = 4;
    let msgs = encode(&[record(1, false, 17, 0), icmp6]);
    let recs = &msgs[0].records;
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].template, recs[1].template), (256, 257));
    assert_eq!(recs[1].addr(27), ip("2001:db8::4"));
    assert_eq!(recs[1].u(32), 1 << 8 | 4, "ICMP_TYPE = type * 256 + code");
}

#[test]
fn sequence_counts_packets_and_packets_respect_the_mtu() {
    let records: Vec<FlowRecord> = (0..400).map(|i| record(i, i % 4 == 0, 6, i % 3)).collect();
    for mtu in [NetflowV9Encoder::min_mtu(), 512, 1400] {
        let raw = encode_with(NetflowV9Options { mtu, ..NetflowV9Options::default() }, &records);
        let msgs = parse_all(&raw);
        for (i, (m, b)) in msgs.iter().zip(&raw).enumerate() {
            assert_eq!(m.h3 as usize, i, "sequence = packets sent before");
            assert!(b.len() <= mtu);
        }
        let data: usize = msgs.iter().map(|m| m.records.len()).sum();
        let expected: u64 = records.iter().map(|r| 1 + u64::from(r.rev.packets > 0)).sum();
        assert_eq!(data as u64, expected);
    }
}

#[test]
fn data_flowsets_are_padded_to_four_bytes() {
    // IPv4 records are 46 bytes: one record needs 2 bytes of padding, two need none.
    let msgs = encode(&[record(0, false, 17, 0)]);
    assert_eq!(msgs[0].sets[1], (256, 4 + 46 + 2));
    let msgs = encode(&[record(0, false, 17, 0), record(2, false, 17, 0)]);
    assert_eq!(msgs[0].sets[1], (256, 4 + 92));
}

#[test]
fn templates_are_resent_by_packet_count() {
    let records: Vec<FlowRecord> = (0..300).map(|i| record(i, false, 6, 1)).collect();
    let opts = NetflowV9Options {
        template_refresh: TemplateRefresh { messages: 4, interval: Duration::ZERO },
        ..NetflowV9Options::default()
    };
    let msgs = parse_all(&encode_with(opts, &records));
    assert!(msgs.len() > 9);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(!m.templates.is_empty(), i % 4 == 0, "packet {i}");
    }
}

#[test]
fn uptime_moves_forward_before_it_wraps_and_times_stay_exact() {
    let opts = NetflowV9Options { clock: ExportClock::Caller, ..NetflowV9Options::default() };
    let mut enc = NetflowV9Encoder::new(opts).expect("options");
    let mut raw = Vec::new();
    let mut recs = Vec::new();
    // One record every five days of event time: 40 days in all.
    for d in 0..9u64 {
        let t = d * 5 * 86_400_000;
        let mut r = record(d, false, 17, 0);
        r.fwd = counters(1, 60, 0, t, t + 1234, (64, 64));
        enc.advance(at_ms(t + 5_000));
        enc.encode(&r, &mut |m| raw.push(m.bytes.to_vec()));
        enc.flush(&mut |m| raw.push(m.bytes.to_vec()));
        recs.push(r);
    }
    let msgs = parse_all(&raw);
    for (m, r) in msgs.iter().zip(&recs) {
        assert!(u64::from(m.h1) < 1 << 32);
        let d = &m.records[0];
        assert_eq!((absolute(m, d.u(22)), absolute(m, d.u(21))), (ms(r.fwd.first), ms(r.fwd.last)));
    }
    let uptimes: Vec<u32> = msgs.iter().map(|m| m.h1).collect();
    assert!(uptimes.windows(2).any(|w| w[1] < w[0]), "the boot moved forward: {uptimes:?}");
    assert!(uptimes.iter().all(|&u| u64::from(u) < (1 << 31) + 6 * 86_400_000));
}

#[test]
fn the_same_records_give_the_same_bytes() {
    let records: Vec<FlowRecord> = (0..300).map(|i| record(i, i % 2 == 0, 6, i % 3)).collect();
    assert_eq!(
        encode_with(NetflowV9Options::default(), &records),
        encode_with(NetflowV9Options::default(), &records)
    );
    let t = u32::try_from(T0_SECS).expect("secs");
    assert!(parse_all(&encode_with(NetflowV9Options::default(), &records)).iter().all(|m| m.h2 >= t));
}
