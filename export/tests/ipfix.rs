//! IPFIX encoding, read back with a strict parser: headers, sets and padding, templates,
//! biflow and uniflow records, sequence numbers, MTU splitting, template refresh, export time.

mod common;

use std::net::IpAddr;

use common::wire::{Msg, Spec, parse_all};
use common::{T0_SECS, at_ms, counters, record};
use outpost_decode::{Duration, Nanos};
use outpost_export::{BiflowMode, ExportClock, IpfixEncoder, IpfixOptions, REVERSE_PEN, TemplateRefresh};
use outpost_flowmeter::FlowRecord;

const R: u32 = REVERSE_PEN;

fn encode_with(options: IpfixOptions, records: &[FlowRecord], flush: bool) -> Vec<Vec<u8>> {
    let mut enc = IpfixEncoder::new(options).expect("valid options");
    let mut out = Vec::new();
    for r in records {
        enc.encode(r, &mut |m| out.push(m.bytes.to_vec()));
    }
    if flush {
        enc.flush(&mut |m| out.push(m.bytes.to_vec()));
    }
    out
}

fn encode(mode: BiflowMode, records: &[FlowRecord]) -> Vec<Msg> {
    parse_all(&encode_with(IpfixOptions { mode, ..IpfixOptions::default() }, records, true))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ms(t: Nanos) -> u64 {
    t.0 / 1_000_000
}

/// The documented field list of the forward-only templates (v4 or v6).
fn uniflow_specs(v6: bool) -> Vec<Spec> {
    let (src, dst, icmp) =
        if v6 { ((27, 0, 16), (28, 0, 16), (139, 0, 2)) } else { ((8, 0, 4), (12, 0, 4), (32, 0, 2)) };
    vec![
        src,
        dst,
        (7, 0, 2),
        (11, 0, 2),
        (4, 0, 1),
        (5, 0, 1),
        (58, 0, 2),
        icmp,
        (148, 0, 8),
        (136, 0, 1),
        (6, 0, 1),
        (52, 0, 1),
        (53, 0, 1),
        (152, 0, 8),
        (153, 0, 8),
        (1, 0, 8),
        (2, 0, 8),
    ]
}

/// The documented field list of the biflow templates: reverse flags, TTLs and times before
/// their forward counterparts (for nfdump), reverse counters last.
fn biflow_specs(v6: bool) -> Vec<Spec> {
    let mut s = uniflow_specs(v6);
    let at = s.iter().position(|f| *f == (6, 0, 1)).expect("tcpControlBits");
    for (i, f) in [(6, R, 1), (52, R, 1), (53, R, 1), (152, R, 8), (153, R, 8)].into_iter().enumerate() {
        s.insert(at + i, f);
    }
    s.extend([(1, R, 8), (2, R, 8)]);
    s
}

mod header_and_templates {
    use super::*;

    #[test]
    fn first_message_has_the_header_and_every_template_of_the_mode() {
        let r = record(1, false, 6, 2);
        let msgs = encode(BiflowMode::Biflow, &[r]);
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!(m.version, 10);
        assert_eq!(m.h1, u32::try_from(r.end().secs()).expect("secs"), "export time = record end (s)");
        assert_eq!(m.h2, 0, "no data records before the first message");
        assert_eq!(m.h3, 1, "default observation domain");
        assert_eq!(m.sets[0].0, 2, "template set first");
        let ids: Vec<u16> = m.templates.iter().map(|t| t.0).collect();
        assert_eq!(ids, [256, 257, 258, 259]);
        assert_eq!(m.templates[0].1, uniflow_specs(false));
        assert_eq!(m.templates[1].1, uniflow_specs(true));
        assert_eq!(m.templates[2].1, biflow_specs(false));
        assert_eq!(m.templates[3].1, biflow_specs(true));
        assert_eq!(m.records.len(), 1);
        assert_eq!(m.records[0].template, 258);
    }

    #[test]
    fn uniflow_mode_announces_only_the_forward_templates() {
        let msgs = encode(BiflowMode::Uniflow, &[record(1, true, 6, 1)]);
        let ids: Vec<u16> = msgs[0].templates.iter().map(|t| t.0).collect();
        assert_eq!(ids, [256, 257]);
    }

    #[test]
    fn observation_domain_is_configurable() {
        let opts = IpfixOptions { observation_domain: 0xdead_beef, ..IpfixOptions::default() };
        let msgs = parse_all(&encode_with(opts, &[record(0, false, 17, 0)], true));
        assert_eq!(msgs[0].h3, 0xdead_beef);
    }

    #[test]
    fn template_record_lengths_match_the_data_records() {
        for t in IpfixEncoder::templates(BiflowMode::Biflow) {
            let data: usize = t.fields.iter().map(|f| usize::from(f.len)).sum();
            assert_eq!(t.record_len(), data);
        }
        assert_eq!(outpost_export::ipfix::IPV4_UNIFLOW_TEMPLATE.record_len(), 62);
        assert_eq!(outpost_export::ipfix::IPV6_UNIFLOW_TEMPLATE.record_len(), 86);
        assert_eq!(outpost_export::ipfix::IPV4_BIFLOW_TEMPLATE.record_len(), 97);
        assert_eq!(outpost_export::ipfix::IPV6_BIFLOW_TEMPLATE.record_len(), 121);
    }

    #[test]
    fn mtu_outside_the_workable_range_is_rejected() {
        let min = IpfixEncoder::min_mtu(BiflowMode::Biflow);
        assert!(IpfixEncoder::new(IpfixOptions { mtu: min - 1, ..IpfixOptions::default() }).is_err());
        assert!(IpfixEncoder::new(IpfixOptions { mtu: min, ..IpfixOptions::default() }).is_ok());
        assert!(IpfixEncoder::new(IpfixOptions { mtu: 65_536, ..IpfixOptions::default() }).is_err());
        assert!(IpfixEncoder::min_mtu(BiflowMode::Uniflow) < min);
    }
}

mod records {
    use super::*;

    #[test]
    fn a_biflow_record_carries_both_directions() {
        let r = record(5, false, 6, 2);
        let msgs = encode(BiflowMode::Biflow, &[r]);
        let d = &msgs[0].records[0];
        assert_eq!(d.template, 258);
        assert_eq!(d.addr(8), ip("10.0.0.5"));
        assert_eq!(d.addr(12), ip("192.0.2.1"));
        assert_eq!((d.u(7), d.u(11), d.u(4)), (40_005, 443, 6));
        assert_eq!(d.u(5), 46 << 2, "ipClassOfService = DSCP << 2");
        assert_eq!(d.u(58), 7);
        assert_eq!(d.u(32), 0, "no ICMP type/code for TCP");
        assert_eq!(d.u(148), r.flow_id);
        assert_eq!(d.u(136), 3, "flowEndReason: end of flow detected");
        assert_eq!((d.u(1), d.u(2), d.u(6), d.u(52), d.u(53)), (185, 3, 0x1b, 60, 64));
        assert_eq!(
            (d.uint(1, R), d.uint(2, R), d.uint(6, R), d.uint(52, R), d.uint(53, R)),
            (3000, 2, 0x12, 50, 52)
        );
        assert_eq!((d.u(152), d.u(153)), (ms(r.start()), ms(r.end())), "flow times span the biflow");
        assert_eq!(
            (d.uint(152, R), d.uint(153, R)),
            (ms(r.rev.first), ms(r.rev.last)),
            "reverse direction's own times"
        );
    }

    #[test]
    fn a_flow_without_reverse_packets_uses_the_forward_only_template() {
        let msgs = encode(
            BiflowMode::Biflow,
            &[record(1, false, 17, 0), record(2, true, 17, 0), record(3, true, 17, 1)],
        );
        let t: Vec<u16> = msgs[0].records.iter().map(|d| d.template).collect();
        assert_eq!(t, [256, 257, 259]);
        let d = &msgs[0].records[1];
        assert_eq!(d.addr(27), ip("2001:db8::3"));
        assert_eq!(d.addr(28), ip("2001:db8:ffff::1"));
        assert!(!d.has(1, R));
    }

    #[test]
    fn icmp_type_and_code_go_into_the_family_element() {
        let mut r4 = record(1, false, 1, 1);
        r4.icmp_type = 3;
        r4.icmp_code = 13;
        let r6 = record(2, true, 58, 1);
        let msgs = encode(BiflowMode::Biflow, &[r4, r6]);
        assert_eq!(msgs[0].records[0].u(32), 3 << 8 | 13);
        assert_eq!(msgs[0].records[1].u(139), 128 << 8);
        assert_eq!((msgs[0].records[1].u(7), msgs[0].records[1].u(11)), (0, 0));
    }

    #[test]
    fn uniflow_mode_sends_the_reverse_direction_as_its_own_record() {
        let r = record(9, false, 1, 2); // ICMP echo request with replies
        let msgs = encode(BiflowMode::Uniflow, &[r]);
        let recs = &msgs[0].records;
        assert_eq!(recs.len(), 2);
        let (f, b) = (&recs[0], &recs[1]);
        assert_eq!((f.template, b.template), (256, 256));
        assert_eq!((f.addr(8), f.addr(12)), (ip("10.0.0.9"), ip("192.0.2.1")));
        assert_eq!((b.addr(8), b.addr(12)), (ip("192.0.2.1"), ip("10.0.0.9")), "endpoints swapped");
        assert_eq!((f.u(32), b.u(32)), (8 << 8, 0), "echo request, then echo reply");
        assert_eq!((f.u(1), f.u(2), b.u(1), b.u(2)), (189, 3, 3000, 2));
        assert_eq!((f.u(152), f.u(153)), (ms(r.fwd.first), ms(r.fwd.last)));
        assert_eq!((b.u(152), b.u(153)), (ms(r.rev.first), ms(r.rev.last)));
        assert_eq!((b.u(52), b.u(53), b.u(6)), (50, 52, 0x12));
        assert_eq!((f.u(5), b.u(5)), (46 << 2, 0), "DSCP is the initiator's only");
        assert_eq!(f.u(148), b.u(148), "both carry the flow id");
    }

    #[test]
    fn uniflow_ports_swap_and_empty_directions_are_left_out() {
        let one_way = record(1, true, 17, 0);
        let mut interim = record(2, false, 6, 4);
        interim.fwd = counters(0, 0, 0, 0, 0, (0, 0));
        let msgs = encode(BiflowMode::Uniflow, &[one_way, interim]);
        let recs = &msgs[0].records;
        assert_eq!(
            recs.len(),
            2,
            "one-way flow: forward only; interim without forward packets: reverse only"
        );
        assert_eq!(recs[0].template, 257);
        assert_eq!((recs[1].u(7), recs[1].u(11)), (443, 40_002));
        assert_eq!(recs[1].u(2), 4);
    }
}

mod sequence_and_mtu {
    use super::*;

    fn many(n: u64) -> Vec<FlowRecord> {
        (0..n).map(|i| record(i, i % 3 == 0, if i % 5 == 0 { 17 } else { 6 }, i % 4)).collect()
    }

    #[test]
    fn sequence_numbers_count_the_data_records_of_earlier_messages() {
        let msgs = encode(BiflowMode::Biflow, &many(200));
        assert!(msgs.len() > 5);
        let mut sent = 0u32;
        for m in &msgs {
            assert_eq!(m.h2, sent);
            sent += u32::try_from(m.records.len()).expect("count");
        }
        assert_eq!(sent, 200);
        let uni = encode(BiflowMode::Uniflow, &many(200));
        let data: usize = uni.iter().map(|m| m.records.len()).sum();
        let last = uni.last().expect("messages");
        assert_eq!(last.h2 as usize + last.records.len(), data, "uniflow pairs count as two");
    }

    #[test]
    fn messages_fill_up_to_the_mtu_without_splitting_records() {
        for mtu in [IpfixEncoder::min_mtu(BiflowMode::Biflow), 600, 1400, 9000] {
            let records = many(300);
            let raw = encode_with(IpfixOptions { mtu, ..IpfixOptions::default() }, &records, true);
            let msgs = parse_all(&raw);
            let total: usize = msgs.iter().map(|m| m.records.len()).sum();
            assert_eq!(total, 300, "every record exactly once (mtu {mtu})");
            for (i, b) in raw.iter().enumerate() {
                assert!(b.len() <= mtu, "message of {} bytes over mtu {mtu}", b.len());
                if i + 1 < raw.len() {
                    // The first record of the next message did not fit: adding it (with a new
                    // set header and padding) would have crossed the MTU.
                    let next = &msgs[i + 1].records[0];
                    let len: usize = next.fields.iter().map(|f| f.2.len()).sum();
                    assert!(
                        b.len() + len > mtu - 4,
                        "message {i} ({} bytes) closed early (mtu {mtu})",
                        b.len()
                    );
                }
            }
        }
    }

    #[test]
    fn changing_template_opens_a_new_padded_set() {
        // 62-byte IPv4 records and 86-byte IPv6 records: both need 2 bytes of padding.
        let records: Vec<FlowRecord> = (0..6).map(|i| record(i, i % 2 == 1, 17, 0)).collect();
        let msgs = encode(BiflowMode::Biflow, &records);
        let data_sets: Vec<(u16, usize)> = msgs[0].sets.iter().copied().filter(|s| s.0 != 2).collect();
        assert_eq!(data_sets, [(256, 68), (257, 92), (256, 68), (257, 92), (256, 68), (257, 92)]);
        let same: Vec<FlowRecord> = (0..3).map(|i| record(i * 2, false, 17, 0)).collect();
        let msgs = encode(BiflowMode::Biflow, &same);
        assert_eq!(msgs[0].sets[1], (256, 4 + 3 * 62 + 2), "one set for consecutive records");
    }

    #[test]
    fn flush_sends_a_partial_message_and_nothing_when_empty() {
        let mut enc = IpfixEncoder::new(IpfixOptions::default()).expect("options");
        let mut n = 0;
        enc.flush(&mut |_| n += 1);
        assert_eq!(n, 0);
        enc.encode(&record(1, false, 6, 1), &mut |_| n += 1);
        assert_eq!(n, 0, "buffered");
        enc.flush(&mut |m| {
            n += 1;
            assert_eq!((m.data_records, m.template_records), (1, 4));
        });
        assert_eq!(n, 1);
    }
}

mod template_refresh {
    use super::*;

    fn template_messages(opts: IpfixOptions, records: &[FlowRecord]) -> Vec<usize> {
        let msgs = parse_all(&encode_with(opts, records, true));
        msgs.iter().enumerate().filter(|(_, m)| !m.templates.is_empty()).map(|(i, _)| i).collect()
    }

    #[test]
    fn templates_are_resent_every_n_messages() {
        // 13 biflow records of 97 bytes fill a 1400-byte message; 200 records make 16 messages.
        let records: Vec<FlowRecord> = (0..200).map(|i| record(i, false, 6, 1)).collect();
        let opts = IpfixOptions {
            template_refresh: TemplateRefresh { messages: 5, interval: Duration::ZERO },
            ..IpfixOptions::default()
        };
        assert_eq!(template_messages(opts, &records), [0, 5, 10, 15]);
    }

    #[test]
    fn templates_are_resent_after_an_interval_of_export_time() {
        // One record per second of event time, one message per record (flushed).
        let opts = IpfixOptions {
            template_refresh: TemplateRefresh { messages: 0, interval: Duration::from_secs(10) },
            ..IpfixOptions::default()
        };
        let mut enc = IpfixEncoder::new(opts).expect("options");
        let mut with_templates = Vec::new();
        for s in 0..35u64 {
            let mut r = record(s, false, 17, 0);
            r.fwd = counters(1, 60, 0, s * 1000, s * 1000, (64, 64));
            enc.encode(&r, &mut |_| {});
            enc.flush(&mut |m| {
                if m.template_records > 0 {
                    with_templates.push(s);
                }
            });
        }
        assert_eq!(with_templates, [0, 10, 20, 30]);
    }

    #[test]
    fn refresh_can_be_disabled() {
        let records: Vec<FlowRecord> = (0..500).map(|i| record(i, false, 6, 1)).collect();
        let opts = IpfixOptions {
            template_refresh: TemplateRefresh { messages: 0, interval: Duration::ZERO },
            ..IpfixOptions::default()
        };
        assert_eq!(template_messages(opts, &records), [0]);
    }
}

mod export_time {
    use super::*;

    #[test]
    fn record_end_clock_takes_the_latest_end_seen() {
        let mut late = record(1, false, 6, 1);
        late.fwd.last = Nanos::from_secs(T0_SECS + 500);
        let early = record(2, false, 6, 1);
        let mut enc = IpfixEncoder::new(IpfixOptions::default()).expect("options");
        let mut times = Vec::new();
        for r in [late, early] {
            enc.encode(&r, &mut |_| {});
            enc.flush(&mut |m| {
                times.push(u32::from_be_bytes([m.bytes[4], m.bytes[5], m.bytes[6], m.bytes[7]]))
            });
        }
        let t = u32::try_from(T0_SECS + 500).expect("secs");
        assert_eq!(times, [t, t], "the clock never goes back");
        enc.advance(Nanos::from_secs(T0_SECS + 900));
        assert_eq!(enc.now(), Nanos::from_secs(T0_SECS + 900));
    }

    #[test]
    fn caller_clock_ignores_record_times() {
        let opts = IpfixOptions { clock: ExportClock::Caller, ..IpfixOptions::default() };
        let mut enc = IpfixEncoder::new(opts).expect("options");
        enc.advance(at_ms(7_000));
        let mut time = 0;
        enc.encode(&record(1, false, 6, 1), &mut |_| {});
        enc.flush(&mut |m| time = u32::from_be_bytes([m.bytes[4], m.bytes[5], m.bytes[6], m.bytes[7]]));
        assert_eq!(u64::from(time), T0_SECS + 7);
    }

    #[test]
    fn the_same_records_give_the_same_bytes() {
        let records: Vec<FlowRecord> = (0..500).map(|i| record(i, i % 2 == 0, 6, i % 3)).collect();
        for mode in [BiflowMode::Biflow, BiflowMode::Uniflow] {
            let opts = IpfixOptions { mode, ..IpfixOptions::default() };
            assert_eq!(encode_with(opts, &records, true), encode_with(opts, &records, true));
        }
    }
}
