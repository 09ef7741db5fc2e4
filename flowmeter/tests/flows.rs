//! Flow metering behaviour, grouped by what ends a record.

use std::net::IpAddr;

use outpost_decode::{Duration, LinkType, Nanos, PacketMeta, decode};
use outpost_flowmeter::{EndReason, FlowConfig, FlowMeter, FlowRecord, TableConfig};
use outpost_tools::frame::{FrameBuilder, Transport, icmp, tcp, udp};

const SYN: u16 = 0x02;
const ACK: u16 = 0x10;
const FIN: u16 = 0x01;
const RST: u16 = 0x04;
const PSH: u16 = 0x08;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn meta_of(frame: &[u8], ms: u64) -> PacketMeta {
    let len = u32::try_from(frame.len()).expect("small frame");
    decode(LinkType::Ethernet, frame, Nanos(1_000_000_000_000 + ms * 1_000_000), len)
        .expect("test frames decode")
}

fn pkt(src: &str, dst: &str, t: Transport, payload: usize, ms: u64) -> PacketMeta {
    meta_of(&FrameBuilder::new(ip(src), ip(dst), t).payload(&vec![0x55; payload]).build(), ms)
}

fn at(ms: u64) -> Nanos {
    Nanos(1_000_000_000_000 + ms * 1_000_000)
}

fn config(capacity: usize) -> FlowConfig {
    FlowConfig {
        table: TableConfig {
            capacity,
            idle_timeout: Duration::from_secs(30),
            active_timeout: Duration::from_secs(120),
            close_linger: Duration::from_secs(2),
        },
        ..FlowConfig::default()
    }
}

/// Feeds packets, advancing the clock to each packet's time first, then `end_ms`; returns
/// every record (without flushing at the end).
fn run(meter: &mut FlowMeter, pkts: &[PacketMeta], end_ms: u64) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for p in pkts {
        meter.on_clock(p.ts, &mut |r| out.push(r));
        meter.on_packet(p, &mut |r| out.push(r));
    }
    meter.on_clock(at(end_ms), &mut |r| out.push(r));
    out
}

fn tcp_conversation(start_ms: u64) -> Vec<PacketMeta> {
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    vec![
        pkt(c, s, tcp(40000, 443, SYN, 1, 0), 0, start_ms),
        pkt(s, c, tcp(443, 40000, SYN | ACK, 9, 2), 0, start_ms + 1),
        pkt(c, s, tcp(40000, 443, ACK, 2, 10), 0, start_ms + 2),
        pkt(c, s, tcp(40000, 443, PSH | ACK, 2, 10), 300, start_ms + 3),
        pkt(s, c, tcp(443, 40000, PSH | ACK, 10, 302), 1200, start_ms + 4),
        pkt(c, s, tcp(40000, 443, FIN | ACK, 302, 1210), 0, start_ms + 5),
        pkt(s, c, tcp(443, 40000, FIN | ACK, 1210, 303), 0, start_ms + 6),
        pkt(c, s, tcp(40000, 443, ACK, 303, 1211), 0, start_ms + 7),
    ]
}

mod tcp_end {
    use super::*;

    #[test]
    fn both_fins_end_the_flow_after_the_last_ack_with_per_direction_counters() {
        let mut m = FlowMeter::new(config(1024), 3);
        let pkts = tcp_conversation(0);
        let recs = run(&mut m, &pkts, 10_000);
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.end_reason, EndReason::TcpFin);
        assert_eq!((r.src, r.src_port, r.dst_port), (ip("10.0.0.1").into(), 40000, 443));
        assert_eq!((r.fwd.packets, r.rev.packets), (5, 3), "the last ACK is in the flow");
        let ip_len = |m: &PacketMeta| u64::from(m.ip_len);
        let fwd: u64 = pkts.iter().filter(|p| p.src_port == 40000).map(ip_len).sum();
        let rev: u64 = pkts.iter().filter(|p| p.src_port == 443).map(ip_len).sum();
        assert_eq!((r.fwd.bytes, r.rev.bytes), (fwd, rev));
        assert_eq!(r.fwd.tcp_flags, (SYN | ACK | PSH | FIN) as u8);
        assert_eq!(r.rev.tcp_flags, (SYN | ACK | PSH | FIN) as u8);
        assert_eq!((r.fwd.first, r.fwd.last), (at(0), at(7)));
        assert_eq!((r.rev.first, r.rev.last), (at(1), at(6)));
        assert_eq!((r.start(), r.end()), (at(0), at(7)));
        assert_eq!(r.flow_id >> 56, 3, "worker number in the flow id");
        assert_eq!(r.sequence, 0);
        assert_eq!(m.stats().table.active, 0);
    }

    #[test]
    fn a_rst_ends_the_flow() {
        let mut m = FlowMeter::new(config(1024), 0);
        let pkts = vec![
            pkt("10.0.0.1", "10.0.0.2", tcp(5000, 22, SYN, 1, 0), 0, 0),
            pkt("10.0.0.2", "10.0.0.1", tcp(22, 5000, RST | ACK, 0, 2), 0, 1),
        ];
        let recs = run(&mut m, &pkts, 5_000);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].end_reason, EndReason::TcpRst);
        assert_eq!((recs[0].fwd.packets, recs[0].rev.packets), (1, 1));
    }

    #[test]
    fn a_syn_ack_seen_first_makes_its_receiver_the_initiator() {
        let mut m = FlowMeter::new(config(1024), 0);
        let pkts = &tcp_conversation(0)[1..];
        let recs = run(&mut m, pkts, 10_000);
        assert_eq!(recs[0].src, ip("10.0.0.1").into(), "the client sent the (missed) SYN");
        assert_eq!((recs[0].fwd.packets, recs[0].rev.packets), (4, 3));
    }

    #[test]
    fn a_pure_syn_from_the_presumed_responder_swaps_the_directions() {
        let mut m = FlowMeter::new(config(1024), 0);
        let pkts = vec![
            pkt("10.0.0.9", "10.0.0.1", tcp(80, 33000, ACK, 5, 5), 100, 0),
            pkt("10.0.0.1", "10.0.0.9", tcp(33000, 80, SYN, 1, 0), 0, 1),
        ];
        let mut recs = run(&mut m, &pkts, 1_000);
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs[0].src, ip("10.0.0.1").into());
        assert_eq!((recs[0].fwd.packets, recs[0].rev.packets), (1, 1));
        assert_eq!(recs[0].rev.bytes, 140);
    }
}

mod timeouts {
    use super::*;

    #[test]
    fn a_silent_flow_ends_on_idle_timeout_as_event_time_passes() {
        let mut m = FlowMeter::new(config(1024), 0);
        let pkts = vec![
            pkt("10.0.0.1", "10.0.0.3", udp(1000, 53), 40, 0),
            pkt("10.0.0.3", "10.0.0.1", udp(53, 1000), 80, 5),
        ];
        assert!(run(&mut m, &pkts, 29_000).is_empty(), "not idle yet");
        let recs = run(&mut m, &[], 40_000);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].end_reason, EndReason::IdleTimeout);
        assert_eq!((recs[0].fwd.packets, recs[0].rev.packets), (1, 1));
    }

    #[test]
    fn a_packet_after_the_idle_timeout_starts_a_new_flow_with_a_new_id() {
        let mut m = FlowMeter::new(config(1024), 0);
        let mut recs = Vec::new();
        for (i, ms) in [0u64, 30_000].iter().enumerate() {
            let p = pkt("10.0.0.1", "10.0.0.3", udp(1000, 53), 10 * (i + 1), *ms);
            // No clock ticks: the exact check on the packet ends the first flow.
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].end_reason, EndReason::IdleTimeout);
        assert_eq!(recs[1].end_reason, EndReason::EndOfInput);
        assert_ne!(recs[0].flow_id, recs[1].flow_id);
    }

    #[test]
    fn a_long_flow_emits_interim_records_with_delta_counters_and_one_id() {
        let mut m = FlowMeter::new(config(1024), 0);
        // One packet per second each way for 400 s: active timeout 120 s.
        let mut pkts = Vec::new();
        for s in 0..400u64 {
            pkts.push(pkt("10.1.0.1", "10.2.0.1", udp(7000, 9000), 100, s * 1_000));
            pkts.push(pkt("10.2.0.1", "10.1.0.1", udp(9000, 7000), 50, s * 1_000 + 500));
        }
        let mut recs = run(&mut m, &pkts, 400_000);
        m.finish(&mut |r| recs.push(r));
        let reasons: Vec<EndReason> = recs.iter().map(|r| r.end_reason).collect();
        assert_eq!(
            reasons,
            vec![
                EndReason::ActiveTimeout,
                EndReason::ActiveTimeout,
                EndReason::ActiveTimeout,
                EndReason::EndOfInput
            ]
        );
        assert!(recs.iter().all(|r| r.flow_id == recs[0].flow_id));
        assert_eq!(recs.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(recs.iter().map(|r| r.fwd.packets).sum::<u64>(), 400);
        assert_eq!(recs.iter().map(|r| r.rev.packets).sum::<u64>(), 400);
        assert_eq!(recs[0].fwd.packets, 120, "the first period is 120 s");
        assert_eq!(recs[0].fwd.bytes, 120 * 128);
        // Periods do not overlap and cover the flow.
        for w in recs.windows(2) {
            assert!(w[0].end() < w[1].start());
        }
    }

    #[test]
    fn interim_records_are_emitted_for_a_flow_that_goes_quiet_after_the_active_timeout() {
        let mut m = FlowMeter::new(config(1024), 0);
        let mut pkts = Vec::new();
        for s in 0..125u64 {
            pkts.push(pkt("10.1.0.1", "10.2.0.1", udp(7000, 9000), 10, s * 1_000));
        }
        let recs = run(&mut m, &pkts, 200_000);
        // 0..120 s → interim at the 120 s packet; 120..124 s → idle 30 s after the last packet.
        assert_eq!(
            recs.iter().map(|r| r.end_reason).collect::<Vec<_>>(),
            vec![EndReason::ActiveTimeout, EndReason::IdleTimeout]
        );
        assert_eq!((recs[0].fwd.packets, recs[1].fwd.packets), (120, 5));
    }
}

mod pressure {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_flow_and_counts_it() {
        let mut m = FlowMeter::new(config(4), 0);
        let mut pkts = Vec::new();
        for i in 0..4u64 {
            pkts.push(pkt(&format!("10.0.0.{}", i + 1), "10.9.9.9", udp(1000, 2000), 10, i * 3_000));
        }
        // Flow 1 gets a packet later, so flow 2 is the longest idle when flow 5 arrives.
        pkts.push(pkt("10.0.0.1", "10.9.9.9", udp(1000, 2000), 10, 12_000));
        pkts.push(pkt("10.0.0.5", "10.9.9.9", udp(1000, 2000), 10, 13_000));
        let recs = run(&mut m, &pkts, 13_000);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].end_reason, EndReason::Evicted);
        assert_eq!(recs[0].src, ip("10.0.0.2").into());
        let s = m.stats();
        assert_eq!((s.table.active, s.table.peak), (4, 4));
        assert_eq!(s.table.records[EndReason::Evicted.index()], 1);
    }

    #[test]
    fn memory_per_flow_stays_within_128_bytes() {
        for capacity in [10_000, 100_000, 1 << 20] {
            let m = FlowMeter::new(config(capacity), 0);
            let per_flow = m.allocated_bytes() as f64 / capacity as f64;
            assert!(per_flow <= 128.0, "{per_flow:.1} bytes per flow at capacity {capacity}");
        }
    }

    #[test]
    fn a_32_bit_byte_counter_about_to_wrap_forces_an_interim_record() {
        let mut m = FlowMeter::new(config(16), 0);
        let big = pkt("10.0.0.1", "10.0.0.2", udp(1, 2), 1400, 0);
        let mut recs = Vec::new();
        let mut p = big;
        for i in 0..3_100_000u64 {
            p.ts = Nanos(big.ts.0 + i * 10_000);
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].end_reason, EndReason::ActiveTimeout);
        assert!(recs[0].fwd.bytes <= u64::from(u32::MAX));
        assert_eq!(recs.iter().map(|r| r.fwd.bytes).sum::<u64>(), 3_100_000 * u64::from(big.ip_len));
    }
}

mod fragments {
    use super::*;

    fn fragmented(src: &str, dst: &str, id: u16) -> Vec<PacketMeta> {
        let mut b = FrameBuilder::new(ip(src), ip(dst), udp(5353, 5353)).payload(&[7; 3000]);
        b.ip_id = id;
        b.fragments(1200).iter().enumerate().map(|(i, f)| meta_of(f, i as u64)).collect()
    }

    #[test]
    fn later_fragments_are_counted_in_the_flow_of_their_first_fragment() {
        for (src, dst) in [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
            let mut m = FlowMeter::new(config(64), 0);
            let frags = fragmented(src, dst, 77);
            assert_eq!(frags.len(), 3);
            let mut recs = run(&mut m, &frags, 100);
            m.finish(&mut |r| recs.push(r));
            assert_eq!(recs.len(), 1, "{src}");
            assert_eq!((recs[0].src_port, recs[0].dst_port), (5353, 5353));
            assert_eq!(recs[0].fwd.packets, 3);
            assert_eq!(recs[0].fwd.bytes, frags.iter().map(|p| u64::from(p.ip_len)).sum::<u64>());
            let s = m.stats();
            assert_eq!((s.fragments_first, s.fragments_matched, s.fragments_orphaned), (1, 2, 0));
        }
    }

    #[test]
    fn fragments_without_their_first_fragment_are_counted_apart() {
        let mut m = FlowMeter::new(config(64), 0);
        let frags = fragmented("10.0.0.1", "10.0.0.2", 78);
        let mut recs = run(&mut m, &frags[1..], 100);
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].src_port, recs[0].dst_port, recs[0].fwd.packets), (0, 0, 2));
        assert_eq!(m.stats().fragments_orphaned, 2);
    }

    #[test]
    fn first_fragment_ports_expire_after_the_fragment_timeout() {
        let mut m = FlowMeter::new(config(64), 0);
        let frags = fragmented("10.0.0.1", "10.0.0.2", 79);
        let mut late = frags[1];
        late.ts = at(40_000);
        let mut recs = run(&mut m, &[frags[0], late], 40_000);
        m.finish(&mut |r| recs.push(r));
        assert_eq!(m.stats().fragments_orphaned, 1);
    }
}

mod keys {
    use super::*;

    #[test]
    fn an_echo_request_and_its_reply_are_one_flow_and_unreachables_another() {
        let mut m = FlowMeter::new(config(64), 0);
        let pkts = vec![
            pkt("10.0.0.1", "10.0.0.2", icmp(8, 0, 0x0001_0001), 56, 0),
            pkt("10.0.0.2", "10.0.0.1", icmp(0, 0, 0x0001_0001), 56, 1),
            pkt("10.0.0.2", "10.0.0.1", icmp(3, 3, 0), 28, 2),
            pkt("2001:db8::1", "2001:db8::2", icmp(128, 0, 1), 8, 3),
            pkt("2001:db8::2", "2001:db8::1", icmp(129, 0, 1), 8, 4),
        ];
        let mut recs = run(&mut m, &pkts, 10);
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 3);
        let echo = recs.iter().find(|r| r.proto == 1 && r.icmp_type == 8).expect("echo flow");
        assert_eq!((echo.fwd.packets, echo.rev.packets, echo.src_port, echo.dst_port), (1, 1, 0, 0));
        assert_eq!(
            echo.community_id(),
            outpost_flowmeter::community_id(ip("10.0.0.1").into(), 8, ip("10.0.0.2").into(), 0, 1)
        );
        let unreach = recs.iter().find(|r| r.icmp_type == 3).expect("unreachable flow");
        assert_eq!(unreach.fwd.packets, 1);
        let v6 = recs.iter().find(|r| r.proto == 58).expect("icmpv6 flow");
        assert_eq!((v6.fwd.packets, v6.rev.packets), (1, 1));
    }

    #[test]
    fn vlans_and_protocols_separate_flows() {
        let mut m = FlowMeter::new(config(64), 0);
        let f = |vlan: &[u16], t: Transport, ms| {
            meta_of(&FrameBuilder::new(ip("10.0.0.1"), ip("10.0.0.2"), t).vlans(vlan).build(), ms)
        };
        let pkts = vec![
            f(&[], udp(1, 2), 0),
            f(&[10], udp(1, 2), 1),
            f(&[10, 20], udp(1, 2), 2),
            f(&[], tcp(1, 2, ACK, 0, 0), 3),
        ];
        let mut recs = run(&mut m, &pkts, 10);
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 3, "outer VLAN 10 twice, untagged UDP, untagged TCP");
        assert!(recs.iter().any(|r| r.vlan == 10 && r.fwd.packets == 2));
    }

    #[test]
    fn non_ip_frames_are_counted_not_metered() {
        let mut m = FlowMeter::new(config(64), 0);
        let arp = outpost_tools::frame::arp_frame(1, [2, 0, 0, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 2]);
        let meta = meta_of(&arp, 0);
        m.on_packet(&meta, &mut |_| panic!("no record for ARP"));
        assert_eq!((m.stats().not_ip, m.stats().packets), (1, 0));
    }
}

mod end_of_input {
    use super::*;

    #[test]
    fn a_close_seen_before_the_end_of_input_keeps_its_reason() {
        let mut m = FlowMeter::new(config(1024), 0);
        let mut pkts = tcp_conversation(0);
        pkts.push(pkt("10.0.0.5", "10.0.0.6", tcp(1, 2, SYN, 0, 0), 0, 8));
        pkts.push(pkt("10.0.0.6", "10.0.0.5", tcp(2, 1, RST | ACK, 0, 1), 0, 9));
        pkts.push(pkt("10.0.0.7", "10.0.0.8", udp(1, 2), 0, 10));
        // The input ends well inside the 2 s close linger.
        let mut recs = run(&mut m, &pkts, 100);
        assert!(recs.is_empty());
        m.finish(&mut |r| recs.push(r));
        let reasons: std::collections::BTreeSet<&str> = recs.iter().map(|r| r.end_reason.name()).collect();
        assert_eq!(reasons, ["end_of_input", "tcp_fin", "tcp_rst"].into_iter().collect());
    }
}

mod review {
    use super::*;

    #[test]
    fn a_packet_after_the_close_linger_starts_a_new_flow() {
        let mut m = FlowMeter::new(config(64), 0);
        let mut recs = Vec::new();
        // No clock ticks: the exact check on the packet ends the closed flow.
        for p in tcp_conversation(0) {
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        let late = pkt("10.0.0.1", "10.0.0.2", tcp(40000, 443, ACK, 303, 1211), 0, 3_000);
        m.on_packet(&late, &mut |r| recs.push(r));
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].end_reason, recs[0].fwd.packets), (EndReason::TcpFin, 5));
        assert_eq!((recs[1].end_reason, recs[1].fwd.packets), (EndReason::EndOfInput, 1));
    }

    #[test]
    fn a_new_syn_on_a_closed_connection_is_a_new_flow() {
        let mut m = FlowMeter::new(config(64), 0);
        let mut recs = Vec::new();
        for p in tcp_conversation(0) {
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        // The same 5-tuple reused 100 ms later, well inside the 2 s linger.
        for p in tcp_conversation(100) {
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        m.finish(&mut |r| recs.push(r));
        assert_eq!(recs.len(), 2);
        assert!(recs.iter().all(|r| r.end_reason == EndReason::TcpFin && r.fwd.packets == 5));
        assert_ne!(recs[0].flow_id, recs[1].flow_id);
    }

    #[test]
    fn eviction_takes_the_flow_seen_longest_ago_not_the_oldest_active_one() {
        let mut m = FlowMeter::new(config(2), 0);
        let mut recs = Vec::new();
        let mut feed = |p: PacketMeta, m: &mut FlowMeter| m.on_packet(&p, &mut |r| recs.push(r));
        // A: active since 0 with a packet every second; B: one packet at 95.
        for s in 0..=100u64 {
            feed(pkt("10.0.0.1", "10.0.0.9", udp(1, 2), 10, s * 1_000), &mut m);
            if s == 95 {
                feed(pkt("10.0.0.2", "10.0.0.9", udp(1, 2), 10, s * 1_000), &mut m);
            }
        }
        feed(pkt("10.0.0.3", "10.0.0.9", udp(1, 2), 10, 100_500), &mut m);
        let evicted: Vec<&FlowRecord> = recs.iter().filter(|r| r.end_reason == EndReason::Evicted).collect();
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].src, ip("10.0.0.2").into());
    }

    #[test]
    fn a_closed_connection_makes_room_with_its_close_reason() {
        let mut m = FlowMeter::new(config(1), 0);
        let mut recs = Vec::new();
        for p in tcp_conversation(0) {
            m.on_packet(&p, &mut |r| recs.push(r));
        }
        m.on_packet(&pkt("10.0.0.3", "10.0.0.9", udp(1, 2), 10, 10), &mut |r| recs.push(r));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].end_reason, EndReason::TcpFin);
    }

    #[test]
    fn flows_already_due_at_the_end_of_input_keep_their_timeout_reason() {
        let mut m = FlowMeter::new(config(64), 0);
        let mut recs = Vec::new();
        m.on_packet(&pkt("10.0.0.1", "10.0.0.2", udp(1, 2), 10, 0), &mut |r| recs.push(r));
        m.on_packet(&pkt("10.0.0.3", "10.0.0.4", udp(1, 2), 10, 40_000), &mut |r| recs.push(r));
        m.finish(&mut |r| recs.push(r));
        let reasons: Vec<EndReason> = recs.iter().map(|r| r.end_reason).collect();
        assert_eq!(reasons, vec![EndReason::IdleTimeout, EndReason::EndOfInput]);
    }

    #[test]
    fn repeated_first_fragments_do_not_fill_the_fragment_table() {
        let cfg = FlowConfig { fragment_capacity: 2, ..config(64) };
        let mut m = FlowMeter::new(cfg, 0);
        let frag = |id: u16| {
            let mut b = FrameBuilder::new(ip("10.0.0.1"), ip("10.0.0.2"), udp(53, 53)).payload(&[1; 3000]);
            b.ip_id = id;
            meta_of(&b.fragments(1200)[0], 0)
        };
        for _ in 0..1_000 {
            m.on_packet(&frag(1), &mut |_| {});
        }
        assert_eq!(m.stats().fragment_table_full, 0);
        m.on_packet(&frag(2), &mut |_| {});
        m.on_packet(&frag(3), &mut |_| {});
        assert_eq!(m.stats().fragment_table_full, 1, "the third datagram pushes out the oldest");
    }
}
