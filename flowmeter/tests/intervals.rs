//! The interval fold: every packet's bytes handed over once, per flow, in the interval of its
//! capture time — whatever ends, restarts or reorders the flows.

use std::collections::BTreeMap;
use std::net::IpAddr;

use outpost_decode::{Duration, IpAddress, LinkType, Nanos, PacketMeta, decode};
use outpost_flowmeter::{FlowConfig, FlowMeter, IntervalDelta, TableConfig};
use outpost_tools::frame::{FrameBuilder, Transport, icmp, tcp, udp};

const SYN: u16 = 0x02;
const ACK: u16 = 0x10;
const FIN: u16 = 0x01;

/// Interval width of these tests.
const WIDTH_MS: u64 = 10_000;
/// Capture time of the tests' 0 ms: the start of interval 100.
const T0: u64 = 1_000_000_000_000;

fn pkt(src: &str, dst: &str, t: Transport, payload: usize, ms: u64) -> PacketMeta {
    let (s, d): (IpAddr, IpAddr) = (src.parse().expect("address"), dst.parse().expect("address"));
    let frame = FrameBuilder::new(s, d, t).payload(&vec![0x55; payload]).build();
    let len = u32::try_from(frame.len()).expect("small frame");
    decode(LinkType::Ethernet, &frame, Nanos(T0 + ms * 1_000_000), len).expect("test frames decode")
}

fn config(capacity: usize, active_s: u64) -> FlowConfig {
    FlowConfig {
        table: TableConfig {
            capacity,
            idle_timeout: Duration::from_secs(15),
            active_timeout: Duration::from_secs(active_s),
            close_linger: Duration::from_secs(1),
        },
        ..FlowConfig::default()
    }
}

/// (interval, sender, receiver) → (bytes, packets).
type Volumes = BTreeMap<(u64, IpAddress, IpAddress), (u64, u64)>;

/// What each packet should count for: its own interval, its sender and receiver.
fn expected(pkts: &[PacketMeta]) -> Volumes {
    let mut v = Volumes::new();
    for p in pkts {
        let e = v.entry((p.ts.0 / (WIDTH_MS * 1_000_000), p.src, p.dst)).or_default();
        e.0 += u64::from(p.ip_len);
        e.1 += 1;
    }
    v
}

fn add(v: &mut Volumes, d: &IntervalDelta) {
    for (dir, (from, to)) in [(d.initiator, d.responder), (d.responder, d.initiator)].into_iter().enumerate()
    {
        if d.packets[dir] > 0 {
            let e = v.entry((d.interval, from, to)).or_default();
            e.0 += u64::from(d.bytes[dir]);
            e.1 += u64::from(d.packets[dir]);
        }
    }
}

/// Meters `pkts` in order with the fold on, a clock tick every `tick_every` packets (at the
/// largest time seen, as the pipeline ticks), then the end of input; returns what was handed
/// over and the hand-overs per interval.
fn fold(meter: &mut FlowMeter, pkts: &[PacketMeta], tick_every: usize) -> (Volumes, Vec<IntervalDelta>) {
    let mut got = Volumes::new();
    let mut all = Vec::new();
    let mut now = Nanos::ZERO;
    for (i, p) in pkts.iter().enumerate() {
        meter.on_packet(p, &mut |_| {});
        now = now.max(p.ts);
        if i % tick_every == tick_every - 1 {
            meter.on_clock(now, &mut |_| {});
        }
        all.extend(meter.drain_intervals());
    }
    meter.finish(&mut |_| {});
    all.extend(meter.drain_intervals());
    for d in &all {
        add(&mut got, d);
    }
    (got, all)
}

/// A deterministic mix: TCP conversations that close, long UDP streams crossing several
/// intervals (with interim records), a responder seen before its client's SYN, ICMP, and
/// packets up to 3 s out of order.
fn mix() -> Vec<PacketMeta> {
    let mut pkts = Vec::new();
    let mut x: u64 = 0x9e37_79b9;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for c in 0..40u64 {
        let client = format!("10.0.{}.{}", c / 200, c % 200 + 1);
        let start = rnd(60_000);
        let sport = 40_000 + u16::try_from(c).expect("small");
        match c % 4 {
            0 => {
                let s = "192.0.2.10";
                pkts.push(pkt(&client, s, tcp(sport, 443, SYN, 1, 0), 0, start));
                pkts.push(pkt(s, &client, tcp(443, sport, SYN | ACK, 9, 2), 0, start + 1));
                for k in 0..20 {
                    let t = start + 2 + k * rnd(1_500);
                    pkts.push(pkt(
                        &client,
                        s,
                        tcp(sport, 443, ACK, 2, 10),
                        100 + usize::try_from(k).expect("k"),
                        t,
                    ));
                    pkts.push(pkt(s, &client, tcp(443, sport, ACK, 10, 3), 900, t + 1));
                }
                let end = start + 2 + 20 * 1_500 + 10;
                pkts.push(pkt(&client, s, tcp(sport, 443, FIN | ACK, 3, 10), 0, end));
                pkts.push(pkt(s, &client, tcp(443, sport, FIN | ACK, 10, 4), 0, end + 1));
            }
            1 => {
                // A stream across several intervals (interim records every 20 s).
                for k in 0..120 {
                    pkts.push(pkt(&client, "198.51.100.7", udp(sport, 5004), 1_000, start + k * 400));
                }
            }
            2 => {
                // The responder is seen first (mid-connection), taken for the initiator; the
                // table swaps the directions when the client's SYN comes, an interval later.
                let s = "192.0.2.20";
                pkts.push(pkt(s, &client, tcp(22, sport, ACK, 5, 2), 30, start));
                pkts.push(pkt(s, &client, tcp(22, sport, ACK, 5, 2), 40, start + 3_000));
                pkts.push(pkt(&client, s, tcp(sport, 22, SYN, 1, 0), 0, start + 12_000));
                pkts.push(pkt(&client, s, tcp(sport, 22, ACK, 2, 6), 60, start + 12_001));
            }
            _ => {
                for k in 0..6 {
                    pkts.push(pkt(
                        &client,
                        "203.0.113.1",
                        icmp(8, 0, u32::try_from(c).expect("small")),
                        56,
                        start + k * 4_100,
                    ));
                }
            }
        }
    }
    pkts.sort_by_key(|p| p.ts);
    // Out of order: every 17th packet arrives up to 3 s late.
    for i in (17..pkts.len()).step_by(17) {
        let back = usize::try_from(rnd(12)).expect("small");
        let j = i.saturating_sub(back);
        if pkts[i].ts.0 - pkts[j].ts.0 <= 3_000_000_000 {
            let late = pkts.remove(i);
            pkts.insert(j, late);
        }
    }
    pkts
}

#[test]
fn every_packet_is_handed_over_once_in_the_interval_of_its_capture_time() {
    let pkts = mix();
    let want = expected(&pkts);
    assert!(want.keys().map(|k| k.0).collect::<std::collections::BTreeSet<_>>().len() >= 6);
    for (capacity, tick_every) in [(4_096, 1), (4_096, 64), (8, 7)] {
        // Capacity 8: flows are evicted (records) all the time, and slots reused.
        let mut m = FlowMeter::new(config(capacity, 20), 0);
        m.fold_intervals(Some(Duration::from_millis(WIDTH_MS)));
        let (got, deltas) = fold(&mut m, &pkts, tick_every);
        assert_eq!(got, want, "capacity {capacity}, a tick every {tick_every} packets");
        // One hand-over per flow and interval (two more per late packet), not one per packet
        // — unless the table is so small that flows are evicted all the time.
        if capacity > 8 {
            assert!(deltas.len() * 3 < pkts.len(), "{} hand-overs for {} packets", deltas.len(), pkts.len());
        }
    }
}

#[test]
fn a_late_packet_goes_to_its_own_interval_and_the_rest_of_its_flow_to_the_current_one() {
    let mut m = FlowMeter::new(config(64, 120), 0);
    m.fold_intervals(Some(Duration::from_millis(WIDTH_MS)));
    let (a, b) = ("10.0.0.1", "10.0.0.2");
    let pkts = [
        pkt(a, b, udp(1, 2), 100, 9_000),
        pkt(a, b, udp(1, 2), 200, 10_500),
        // Captured in the first interval, arriving after the second began.
        pkt(b, a, udp(2, 1), 300, 9_900),
        pkt(a, b, udp(1, 2), 400, 11_000),
    ];
    let (got, _) = fold(&mut m, &pkts, 1);
    let ip = |s: &str| s.parse::<IpAddress>().expect("address");
    let len = |payload: u64| payload + 28;
    assert_eq!(
        got,
        Volumes::from([
            ((100, ip(a), ip(b)), (len(100), 1)),
            ((100, ip(b), ip(a)), (len(300), 1)),
            ((101, ip(a), ip(b)), (len(200) + len(400), 2)),
        ])
    );
}

#[test]
fn nothing_is_handed_over_without_the_fold_nor_counts_from_before_it_began() {
    let (a, b) = ("10.0.0.1", "10.0.0.2");
    let before = pkt(a, b, udp(1, 2), 100, 1_000);
    let after = pkt(a, b, udp(1, 2), 200, 2_000);
    let mut off = FlowMeter::new(config(64, 120), 0);
    let (got, deltas) = fold(&mut off, &[before, after], 1);
    assert!(got.is_empty() && deltas.is_empty());
    // Turned on mid-flow (a reload that moves packet baselines onto the flows): only what
    // comes after is handed over, so nothing is counted twice.
    let mut m = FlowMeter::new(config(64, 120), 0);
    m.on_packet(&before, &mut |_| {});
    m.fold_intervals(Some(Duration::from_millis(WIDTH_MS)));
    let (got, _) = fold(&mut m, &[after], 1);
    let ip = |s: &str| s.parse::<IpAddress>().expect("address");
    assert_eq!(got, Volumes::from([((100, ip(a), ip(b)), (228, 1))]));
}
