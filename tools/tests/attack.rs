//! End-to-end checks of the attack scenario: the capture is read back with pcap-parser,
//! decoded with `outpost_decode`, and every truth line is held to the capture — each attack's
//! packets are counted here the way its rule counts (docs/DETECTION.md), independently of the
//! generator, and must clear the rule's default threshold at least twice over inside the
//! truth window. That is the generator's own check that its truth is honest.
//!
//! Two full runs (every kind, IPv4 only and IPv6 only) are generated once and shared by the
//! tests of this file.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::OnceLock;

use outpost_decode::meta::{ip_proto, tcp_flags};
use outpost_decode::{Fragment, LinkType, Malformed, Nanos, Network, check_invariants, decode};
use outpost_tools::attack::{
    AttackKind, AttackTruth, AttacksCapture, AttacksParams, DetectionRule, IntelList, generate,
    generate_in_memory, in_attack_network, read_attack_truth,
};
use outpost_tools::mix::{self, MixParams};
use outpost_tools::pcap::OutputFormat;
use outpost_tools::seed::NETWORKS;

const SYN: u16 = tcp_flags::SYN;
const ACK: u16 = tcp_flags::ACK;
const FIN: u16 = tcp_flags::FIN;
const RST: u16 = tcp_flags::RST;
const PSH: u16 = tcp_flags::PSH;
const URG: u16 = tcp_flags::URG;
const SECOND: u64 = 1_000_000_000;

mod common;

/// Reads every packet of an Ethernet pcap or pcapng file: (timestamp ns, frame).
fn read_capture(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let (link, packets) = common::read_capture(bytes);
    assert_eq!(link, LinkType::Ethernet);
    packets.into_iter().map(|p| (p.ts.0, p.frame)).collect()
}

/// What the rules look at in one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pkt {
    ts: u64,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: u16,
    icmp: (u8, u8),
    ip_len: u64,
    /// A fragment after the first: no transport header, so no ports.
    later_fragment: bool,
    /// An ARP frame (`src`, `dst`: sender and target protocol addresses).
    arp: bool,
    /// Its operation (1 request, 2 reply).
    arp_op: u16,
}

impl Pkt {
    fn tcp(&self) -> bool {
        self.proto == ip_proto::TCP
    }

    fn icmp(&self) -> bool {
        matches!(self.proto, ip_proto::ICMP | ip_proto::ICMPV6)
    }

    /// A request to resolve `dst`'s link-layer address, or the answer: any ARP frame, an
    /// ICMPv6 neighbor solicitation or advertisement.
    fn resolution(&self) -> bool {
        self.arp || (self.proto == ip_proto::ICMPV6 && matches!(self.icmp.0, 135 | 136))
    }

    /// What `neighbor-sweep` counts: ARP requests and neighbor solicitations (not from the
    /// unspecified address).
    fn solicitation(&self) -> bool {
        let asks =
            if self.arp { self.arp_op == 1 } else { self.proto == ip_proto::ICMPV6 && self.icmp.0 == 135 };
        asks && !self.src.is_unspecified()
    }

    /// A SYN without ACK.
    fn syn(&self) -> bool {
        self.tcp() && self.flags & (SYN | ACK) == SYN
    }

    /// The 5-tuple, endpoints sorted.
    fn key(&self) -> (u8, (IpAddr, u16), (IpAddr, u16)) {
        let (a, b) = ((self.src, self.sport), (self.dst, self.dport));
        (self.proto, a.min(b), a.max(b))
    }
}

/// The Internet checksum (RFC 1071) of some slices: 0 when a packet's checksum is right.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum = 0u64;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checks the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum of an unfragmented
/// packet without VLAN tags or IPv6 extension headers (every attack packet).
fn checksums_ok(frame: &[u8], v6: bool, proto: u8) -> bool {
    let ip = &frame[14..];
    let (l4, pseudo): (&[u8], Vec<u8>) = if v6 {
        let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let l4 = &ip[40..40 + len];
        let mut p = ip[8..40].to_vec();
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
        (l4, p)
    } else {
        let ihl = usize::from(ip[0] & 0xf) * 4;
        if checksum(&[&ip[..ihl]]) != 0 {
            return false;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let l4 = &ip[ihl..total];
        let mut p = ip[12..20].to_vec();
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        (l4, p)
    };
    if proto == ip_proto::ICMP { checksum(&[l4]) == 0 } else { checksum(&[&pseudo, l4]) == 0 }
}

/// One generated run, decoded.
struct Run {
    params: AttacksParams,
    out: AttacksCapture,
    /// Every packet, in file order.
    packets: Vec<Pkt>,
    /// Frames as read back.
    frames: Vec<(u64, Vec<u8>)>,
    intel: IntelList,
}

/// Decodes every packet: each must decode with its invariants, be IP, carry no anomaly but the
/// one a first UDP fragment of the benign mix shows, and come no earlier than the one before.
fn decode_run(params: AttacksParams, out: AttacksCapture) -> Run {
    let frames = read_capture(&out.capture);
    assert_eq!(frames.len() as u64, out.summary.packets);
    let mut prev = 0;
    let packets = frames
        .iter()
        .enumerate()
        .map(|(i, (ts, frame))| {
            assert!(*ts >= prev, "frame {}: time goes backwards", i + 1);
            prev = *ts;
            let meta = decode(LinkType::Ethernet, frame, Nanos(*ts), frame.len() as u32)
                .unwrap_or_else(|e| panic!("frame {} does not decode: {e}", i + 1));
            if let Err(broken) = check_invariants(frame, &meta) {
                panic!("frame {}: decoder invariant broken: {broken}", i + 1);
            }
            let arp = meta.network == Network::Arp;
            assert!(meta.is_ip() || arp, "frame {} is neither IP nor ARP", i + 1);
            match meta.anomaly {
                None => {}
                Some(Malformed::BadUdpLength)
                    if meta.fragment == Fragment::First && meta.ip_proto == ip_proto::UDP => {}
                Some(a) => panic!("frame {}: anomaly {a:?}", i + 1),
            }
            Pkt {
                ts: *ts,
                src: meta.src.to_std(),
                dst: meta.dst.to_std(),
                proto: meta.ip_proto,
                sport: meta.src_port,
                dport: meta.dst_port,
                flags: meta.tcp_flags,
                icmp: (meta.icmp_type, meta.icmp_code),
                ip_len: u64::from(meta.ip_len),
                later_fragment: meta.fragment == Fragment::Later,
                arp,
                arp_op: meta.arp_op,
            }
        })
        .collect();
    let intel = IntelList::parse(&out.intel).expect("the intel list parses");
    Run { params, out, packets, frames, intel }
}

/// Every attack kind, IPv4 (`v6` false) or IPv6 only, over a small benign mix.
fn full(v6: bool) -> &'static Run {
    static V4: OnceLock<Run> = OnceLock::new();
    static V6: OnceLock<Run> = OnceLock::new();
    let cell = if v6 { &V6 } else { &V4 };
    cell.get_or_init(|| {
        let params = AttacksParams {
            benign: MixParams {
                flows: 3_000,
                concurrency: 64,
                clients: 400,
                seed: if v6 { 8 } else { 7 },
                ..MixParams::default()
            },
            ipv6_fraction: if v6 { 1.0 } else { 0.0 },
            ..AttacksParams::default()
        };
        let out = generate_in_memory(&params).expect("generation succeeds");
        decode_run(params, out)
    })
}

/// Most distinct keys among events (time, key) inside any window of `width` ns.
fn max_distinct<K: Hash + Eq + Copy>(events: &[(u64, K)], width: u64) -> usize {
    let mut counts: HashMap<K, usize> = HashMap::new();
    let mut lo = 0;
    let mut best = 0;
    for &(t, k) in events {
        *counts.entry(k).or_default() += 1;
        while events[lo].0 + width <= t {
            let key = events[lo].1;
            let c = counts.get_mut(&key).expect("counted key");
            *c -= 1;
            if *c == 0 {
                counts.remove(&key);
            }
            lo += 1;
        }
        best = best.max(counts.len());
    }
    best
}

/// Most events inside any window of `width` ns.
fn max_count(times: &[u64], width: u64) -> usize {
    let mut lo = 0;
    let mut best = 0;
    for (hi, &t) in times.iter().enumerate() {
        while times[lo] + width <= t {
            lo += 1;
        }
        best = best.max(hi + 1 - lo);
    }
    best
}

/// A TCP connection as a flow meter sees it.
#[derive(Debug, Default)]
struct Conn {
    first: u64,
    last: u64,
    bytes: u64,
    syn: bool,
    syn_ack: bool,
    completed: bool,
}

/// TCP connections from `client` to `server:port`, by client port.
fn connections(packets: &[Pkt], client: IpAddr, server: IpAddr, port: u16) -> Vec<Conn> {
    let mut conns: HashMap<u16, Conn> = HashMap::new();
    for p in packets.iter().filter(|p| p.tcp()) {
        let (cport, from_client) = if p.src == client && p.dst == server && p.dport == port {
            (p.sport, true)
        } else if p.src == server && p.dst == client && p.sport == port {
            (p.dport, false)
        } else {
            continue;
        };
        let c = conns.entry(cport).or_insert_with(|| Conn { first: p.ts, ..Conn::default() });
        c.last = p.ts;
        c.bytes += p.ip_len;
        match (from_client, p.flags & (SYN | ACK)) {
            (true, SYN) => c.syn = true,
            (false, f) if f == SYN | ACK && c.syn => c.syn_ack = true,
            (true, ACK) if c.syn_ack => c.completed = true,
            _ => {}
        }
    }
    let mut v: Vec<Conn> = conns.into_values().collect();
    v.sort_by_key(|c| c.first);
    v
}

/// A short, completed login flow: under 30 s and 64 kB.
fn short_login(c: &Conn) -> bool {
    c.completed && c.last - c.first < 30 * SECOND && c.bytes < 64_000
}

/// Per one-minute interval (aligned to the epoch): bytes and packets to or from `host`, from
/// the first interval with real traffic (100 packets: a stray ping to the host before does not
/// start its history).
fn minutes(packets: &[Pkt], host: IpAddr) -> Vec<(u64, u64, u64)> {
    let mut per: HashMap<u64, (u64, u64)> = HashMap::new();
    for p in packets.iter().filter(|p| p.src == host || p.dst == host) {
        let e = per.entry(p.ts / (60 * SECOND)).or_default();
        e.0 += p.ip_len;
        e.1 += 1;
    }
    let first = per.iter().filter(|(_, v)| v.1 >= 100).map(|(m, _)| *m).min().unwrap_or(0);
    let last = per.keys().max().copied().unwrap_or(0);
    (first..=last).map(|m| (m, per.get(&m).map_or(0, |v| v.0), per.get(&m).map_or(0, |v| v.1))).collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// What the rule measures for one truth line, counted from the packets; returns the measure
/// and the least it must be (twice the default threshold; for the volume rules the ratio to
/// the usual minute, at least 10).
fn measure(run: &Run, t: &AttackTruth) -> (f64, f64) {
    let in_window: Vec<Pkt> =
        run.packets.iter().filter(|p| p.ts >= t.start_ns && p.ts <= t.end_ns).copied().collect();
    let attacker = t.attacker;
    let target = t.target;
    let minute = 60 * SECOND;
    let twice = 2.0 * t.rule.threshold() as f64;
    let measured = match t.rule {
        DetectionRule::ScanVerticalTcp | DetectionRule::ScanTcpStealth => {
            let stealth = t.rule == DetectionRule::ScanTcpStealth;
            let ev: Vec<(u64, u16)> = in_window
                .iter()
                .filter(|p| p.tcp() && Some(p.src) == attacker && Some(p.dst) == target)
                .filter(|p| {
                    let f = p.flags & (SYN | ACK | FIN | RST | PSH | URG);
                    if stealth { matches!(f, FIN | 0) || f == FIN | PSH | URG } else { p.syn() }
                })
                .map(|p| (p.ts, p.dport))
                .collect();
            max_distinct(&ev, minute) as f64
        }
        DetectionRule::ScanVerticalUdp => {
            let times: Vec<u64> = in_window
                .iter()
                .filter(|p| p.icmp() && matches!(p.icmp, (3, 3) | (1, 4)))
                .filter(|p| Some(p.src) == target && Some(p.dst) == attacker)
                .map(|p| p.ts)
                .collect();
            max_count(&times, minute) as f64
        }
        DetectionRule::ScanHorizontal => {
            let ev: Vec<(u64, IpAddr)> = in_window
                .iter()
                .filter(|p| (p.syn() || p.proto == ip_proto::UDP) && Some(p.src) == attacker)
                .filter(|p| Some(p.dport) == t.port)
                .map(|p| (p.ts, p.dst))
                .collect();
            max_distinct(&ev, minute) as f64
        }
        DetectionRule::PingSweep => {
            let ev: Vec<(u64, IpAddr)> = in_window
                .iter()
                .filter(|p| p.icmp() && matches!(p.icmp.0, 8 | 128) && Some(p.src) == attacker)
                .map(|p| (p.ts, p.dst))
                .collect();
            max_distinct(&ev, minute) as f64
        }
        DetectionRule::NeighborSweep => {
            let ev: Vec<(u64, IpAddr)> = in_window
                .iter()
                .filter(|p| p.solicitation() && Some(p.src) == attacker)
                .map(|p| (p.ts, p.dst))
                .collect();
            max_distinct(&ev, 5 * SECOND) as f64
        }
        DetectionRule::SynFlood | DetectionRule::IcmpFlood | DetectionRule::UdpFlood => {
            let times: Vec<u64> = in_window
                .iter()
                .filter(|p| Some(p.dst) == target)
                .filter(|p| match t.rule {
                    DetectionRule::SynFlood => p.syn(),
                    DetectionRule::IcmpFlood => p.icmp(),
                    _ => p.proto == ip_proto::UDP,
                })
                .map(|p| p.ts)
                .collect();
            max_count(&times, 10 * SECOND) as f64
        }
        DetectionRule::SshBruteForce | DetectionRule::RdpBruteForce | DetectionRule::LoginBruteForce => {
            let (a, v, port) = (attacker.expect("attacker"), target.expect("target"), t.port.expect("port"));
            let starts: Vec<u64> = connections(&in_window, a, v, port)
                .iter()
                .filter(|c| short_login(c))
                .map(|c| c.first)
                .collect();
            max_count(&starts, 5 * minute) as f64
        }
        DetectionRule::BruteForceThenSession => {
            let (a, v) = (attacker.expect("attacker"), target.expect("target"));
            let conns = connections(&in_window, a, v, 22);
            let first_attempt = conns.iter().find(|c| short_login(c)).expect("brute-force attempts").first;
            let attempts_before = |at: u64| conns.iter().filter(|c| short_login(c) && c.last < at).count();
            let long = conns
                .iter()
                .filter(|c| c.completed && c.last - c.first >= 120 * SECOND && c.bytes >= 100_000)
                .filter(|c| c.first - first_attempt < 3600 * SECOND && attempts_before(c.first) >= 10)
                .count();
            assert_eq!(long, 1, "{t:?}: one long session after ten attempts");
            return (1.0, 1.0);
        }
        DetectionRule::IntelMatch => {
            let listed = attacker.expect("listed address");
            assert!(run.intel.contains(listed), "{listed} is on the intel list");
            in_window.iter().filter(|p| p.src == listed || p.dst == listed).count() as f64
        }
        DetectionRule::VolumeBaselineBytes | DetectionRule::VolumeBaselinePackets => {
            let host = attacker.expect("host");
            let series = minutes(&run.packets, host);
            let spike = t.start_ns / minute;
            assert_eq!(t.end_ns / minute, spike, "{t:?}: the spike fits one interval");
            let pick = |m: &(u64, u64, u64)| {
                if t.rule == DetectionRule::VolumeBaselineBytes { m.1 as f64 } else { m.2 as f64 }
            };
            let before: Vec<f64> = series.iter().take_while(|m| m.0 < spike).map(pick).collect();
            assert!(before.len() >= 13, "{t:?}: only {} intervals of history", before.len());
            // No interval after the warm-up stands out before the spike.
            for i in 10..before.len() {
                let (mean, sd) = mean_sd(&before[..i]);
                assert!(before[i] <= mean + 3.0 * sd, "{t:?}: interval {i} already alerts");
            }
            let value = series.iter().find(|m| m.0 == spike).map(pick).expect("the spike interval");
            let (mean, sd) = mean_sd(&before);
            assert!(value > mean + 6.0 * sd.max(mean / 2.0), "{t:?}: {value} vs mean {mean}, σ {sd}");
            assert!(value >= 2.0 * t.rule.floor() as f64, "{t:?}: {value} is not twice the floor");
            return (value / mean, 10.0);
        }
    };
    (measured, twice)
}

/// Every truth line of a run clears twice its threshold; every kind is there.
fn check_thresholds(run: &Run) {
    let truth = &run.out.truth;
    let kinds: HashSet<AttackKind> = truth.iter().map(|t| t.attack).collect();
    assert_eq!(kinds.len(), AttackKind::ALL.len(), "every kind has a truth line");
    let lines: usize = run.params.attacks.iter().map(|k| k.rules().len()).sum();
    assert_eq!(truth.len(), lines);
    for t in truth {
        assert_eq!(t.attack.rules().iter().filter(|r| **r == t.rule).count(), 1, "{t:?}");
        assert!(t.start_ns <= t.end_ns);
        assert_eq!(t.start, Nanos(t.start_ns).to_string());
        let (got, least) = measure(run, t);
        assert!(got >= least, "{} / {}: measured {got}, needs {least}", t.attack, t.rule);
        // Clearly above, but not absurdly: the shape stays realistic.
        if t.rule.threshold() > 1 {
            assert!(got <= 6.0 * t.rule.threshold() as f64, "{} / {}: {got} is too much", t.attack, t.rule);
        }
        eprintln!(
            "{:>26} {:<26} {got:>9.1} (threshold {})",
            t.attack.name(),
            t.rule.name(),
            t.rule.threshold()
        );
    }
}

#[test]
fn every_ipv4_attack_clears_its_threshold_inside_its_window() {
    check_thresholds(full(false));
}

#[test]
fn every_ipv6_attack_clears_its_threshold_inside_its_window() {
    check_thresholds(full(true));
}

/// The packets of a run that are not the benign mix's, found by walking the mix's own capture
/// (same parameters and pace) as a subsequence of the run's.
fn attack_packets(run: &Run) -> Vec<usize> {
    let mix_params = MixParams { mean_gap: run.out.summary.benign_mean_gap, ..run.params.benign.clone() };
    let pure = mix::generate_in_memory(&mix_params).expect("the mix alone");
    assert_eq!(pure.truth, run.out.benign_truth, "the benign truth is the mix's");
    assert_eq!(pure.summary, run.out.summary.benign);
    let benign = read_capture(&pure.capture);
    let mut next = 0;
    let mut attacks = Vec::new();
    for (i, f) in run.frames.iter().enumerate() {
        if benign.get(next) == Some(f) {
            next += 1;
        } else {
            attacks.push(i);
        }
    }
    assert_eq!(next, benign.len(), "every benign packet is in the run, in order");
    attacks
}

#[test]
fn the_benign_part_is_the_mix_and_never_shares_a_five_tuple_with_an_attack() {
    for v6 in [false, true] {
        let run = full(v6);
        let attacks = attack_packets(run);
        assert_eq!(attacks.len() as u64, run.out.summary.attack_packets);
        let is_attack: HashSet<usize> = attacks.iter().copied().collect();
        let benign_keys: HashSet<_> = run
            .packets
            .iter()
            .enumerate()
            .filter(|(i, p)| !is_attack.contains(i) && !p.icmp())
            .map(|(_, p)| p.key())
            .collect();
        let in_mix = |a: IpAddr| NETWORKS.iter().any(|n| n.contains(a));
        for &i in &attacks {
            let p = &run.packets[i];
            assert!(p.icmp() || !benign_keys.contains(&p.key()), "attack packet {i} reuses a benign 5-tuple");
            // One end is never an address of the mix: an attacker, a spoofed or listed address
            // (but a neighbor sweep is one host of the mix resolving its neighbours).
            assert!(
                in_attack_network(p.src)
                    || in_attack_network(p.dst)
                    || !in_mix(p.src)
                    || !in_mix(p.dst)
                    || p.resolution()
            );
            let (_, frame) = &run.frames[i];
            assert!(
                p.arp || checksums_ok(frame, p.src.is_ipv6(), p.proto),
                "attack packet {i}: bad checksum"
            );
            assert_eq!(p.src.is_ipv6(), v6);
        }
        // The benign part has every kind of the mix.
        assert!(run.out.summary.benign.kinds.iter().all(|&n| n > 0), "{:?}", run.out.summary.benign);
    }
}

#[test]
fn only_the_intel_contact_touches_the_intel_list() {
    for v6 in [false, true] {
        let run = full(v6);
        let listed: HashSet<IpAddr> = run
            .out
            .truth
            .iter()
            .filter(|t| t.rule == DetectionRule::IntelMatch)
            .filter_map(|t| t.attacker)
            .collect();
        assert_eq!(listed.len(), 1);
        assert!(run.intel.len() > 300, "a few hundred entries");
        for p in &run.packets {
            for a in [p.src, p.dst] {
                assert_eq!(run.intel.contains(a), listed.contains(&a), "{a} in {p:?}");
            }
        }
    }
}

#[test]
fn alerts_name_the_documented_addresses() {
    for v6 in [false, true] {
        let run = full(v6);
        for t in &run.out.truth {
            let named = t.named().expect("every line names an address");
            match t.rule {
                DetectionRule::SynFlood | DetectionRule::IcmpFlood | DetectionRule::UdpFlood => {
                    assert_eq!(t.attacker, None);
                    assert!(NETWORKS.iter().any(|n| n.contains(named)), "{t:?}: the victim is a mix host");
                }
                DetectionRule::IntelMatch => assert!(!in_attack_network(named)),
                // A compromised host of the mix sweeps its own segment.
                DetectionRule::NeighborSweep => {
                    assert!(NETWORKS.iter().any(|n| n.contains(named)), "{t:?}: an internal host");
                }
                DetectionRule::VolumeBaselineBytes | DetectionRule::VolumeBaselinePackets => {
                    assert!(NETWORKS.iter().any(|n| n.contains(named)), "{t:?}: an internal host");
                    assert!(in_attack_network(t.target.expect("exfiltration peer")));
                }
                _ => assert!(in_attack_network(named), "{t:?}"),
            }
            assert_eq!(named.is_ipv6(), v6);
        }
        // Attacks follow each other: each starts after the one before ended.
        let mut by_attack: Vec<&AttackTruth> = run.out.truth.iter().collect();
        by_attack.dedup_by_key(|t| t.attack);
        for w in by_attack.windows(2) {
            assert!(w[1].start_ns > w[0].start_ns, "{:?} then {:?}", w[0].attack, w[1].attack);
        }
    }
}

fn subset(seed: u64, format: OutputFormat) -> AttacksParams {
    AttacksParams {
        benign: MixParams { flows: 400, concurrency: 32, clients: 100, seed, format, ..MixParams::default() },
        attacks: vec![
            AttackKind::SynScan,
            AttackKind::UdpScan,
            AttackKind::IcmpFlood,
            AttackKind::SshBruteForce,
            AttackKind::IntelContact,
            AttackKind::UdpScan,
        ],
        ipv6_fraction: 0.5,
        ..AttacksParams::default()
    }
}

#[test]
fn same_seed_gives_byte_identical_files_and_formats_agree() {
    let a = generate_in_memory(&subset(3, OutputFormat::default())).unwrap();
    let b = generate_in_memory(&subset(3, OutputFormat::default())).unwrap();
    assert!(a.capture == b.capture, "captures differ");
    assert_eq!(a.truth, b.truth);
    assert_eq!(a.intel, b.intel);
    assert_eq!(a.summary, b.summary);
    // Streaming into plain writers gives the same bytes.
    let (mut capture, mut truth, mut intel) = (Vec::new(), Vec::new(), Vec::new());
    generate(&subset(3, OutputFormat::default()), &mut capture, Some(&mut truth), Some(&mut intel)).unwrap();
    assert!(capture == a.capture);
    assert_eq!(read_attack_truth(truth.as_slice()).unwrap(), a.truth);
    assert_eq!(String::from_utf8(intel).unwrap(), a.intel);

    // pcapng carries the same packets; microsecond pcap the same, truncated.
    let ng = generate_in_memory(&subset(3, OutputFormat::PcapNg)).unwrap();
    assert_eq!(read_capture(&ng.capture), read_capture(&a.capture));
    assert_eq!(ng.truth, a.truth);
    let us = generate_in_memory(&subset(3, OutputFormat::Pcap { nanos: false })).unwrap();
    let us_packets = read_capture(&us.capture);
    assert!(us_packets.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(us.truth.iter().all(|t| t.start_ns % 1000 == 0 && t.end_ns % 1000 == 0));
    assert_eq!(us.summary.attack_packets, a.summary.attack_packets);

    let c = generate_in_memory(&subset(4, OutputFormat::default())).unwrap();
    assert_ne!(c.capture, a.capture);
    assert_ne!(c.truth, a.truth);
    assert_ne!(c.intel, a.intel);
}

#[test]
fn repeated_kinds_get_their_own_attackers_and_both_families_occur() {
    let a = generate_in_memory(&subset(5, OutputFormat::default())).unwrap();
    let scans: Vec<&AttackTruth> = a.truth.iter().filter(|t| t.attack == AttackKind::UdpScan).collect();
    assert_eq!(scans.len(), 2);
    assert_ne!(scans[0].attacker, scans[1].attacker);
    let families: HashSet<bool> = a.truth.iter().filter_map(|t| t.named()).map(|n| n.is_ipv6()).collect();
    assert_eq!(families.len(), 2, "half the attacks over IPv6");
}

/// The busiest key of a rule over a run's packets: `select` picks the packets the rule counts,
/// with their key and value; the result is the most distinct values (`distinct`) or packets
/// of one key inside any window of `width` ns.
fn busiest<K: Hash + Eq + Copy, V: Hash + Eq + Copy>(
    packets: &[Pkt],
    width: u64,
    select: impl Fn(&Pkt) -> Option<(K, V)>,
    distinct: bool,
) -> usize {
    let mut per: HashMap<K, Vec<(u64, V)>> = HashMap::new();
    for p in packets {
        if let Some((k, v)) = select(p) {
            per.entry(k).or_default().push((p.ts, v));
        }
    }
    per.values()
        .map(|ev| {
            if distinct {
                max_distinct(ev, width)
            } else {
                max_count(&ev.iter().map(|e| e.0).collect::<Vec<_>>(), width)
            }
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn the_benign_mix_stays_below_every_count_threshold() {
    // The mix at its own default pace (denser than in the runs above).
    let mix = mix::generate_in_memory(&MixParams { flows: 20_000, ..MixParams::default() }).unwrap();
    let params = AttacksParams::default();
    let run = decode_run(
        params,
        AttacksCapture {
            capture: mix.capture,
            truth: Vec::new(),
            intel: String::new(),
            benign_truth: mix.truth,
            summary: outpost_tools::attack::AttacksSummary {
                packets: mix.summary.packets,
                attack_packets: 0,
                frame_bytes: mix.summary.frame_bytes,
                truth_lines: 0,
                intel_entries: 0,
                benign: mix.summary,
                benign_mean_gap: MixParams::default().mean_gap,
                attacks: Vec::new(),
                first_ts: mix.summary.first_ts,
                last_ts: mix.summary.last_ts,
                peak_pending: 0,
            },
        },
    );
    let p = &run.packets;
    let minute = 60 * SECOND;
    let stealth = |p: &Pkt| {
        let f = p.flags & (SYN | ACK | FIN | RST | PSH | URG);
        p.tcp() && (matches!(f, FIN | 0) || f == FIN | PSH | URG)
    };
    // (`neighbor-sweep` is not here: the mix has no ARP or neighbor discovery. Its quiet
    // segment is in sensor/tests/attacks.rs.)
    let checks: [(DetectionRule, usize); 8] = [
        (
            DetectionRule::ScanVerticalTcp,
            busiest(p, minute, |p| p.syn().then_some(((p.src, p.dst), p.dport)), true),
        ),
        (
            DetectionRule::ScanTcpStealth,
            busiest(p, minute, |p| stealth(p).then_some(((p.src, p.dst), p.dport)), true),
        ),
        (
            DetectionRule::ScanVerticalUdp,
            busiest(
                p,
                minute,
                |p| (p.icmp() && matches!(p.icmp, (3, 3) | (1, 4))).then_some(((p.src, p.dst), ())),
                false,
            ),
        ),
        (
            DetectionRule::ScanHorizontal,
            busiest(
                p,
                minute,
                // Later fragments carry no port: a resolver's fragmented answers to many
                // clients are not one port across hosts.
                |p| {
                    (p.syn() || (p.proto == ip_proto::UDP && !p.later_fragment))
                        .then_some(((p.src, p.dport), p.dst))
                },
                true,
            ),
        ),
        (
            DetectionRule::PingSweep,
            busiest(p, minute, |p| (p.icmp() && matches!(p.icmp.0, 8 | 128)).then_some((p.src, p.dst)), true),
        ),
        (DetectionRule::SynFlood, busiest(p, 10 * SECOND, |p| p.syn().then_some((p.dst, ())), false)),
        (DetectionRule::IcmpFlood, busiest(p, 10 * SECOND, |p| p.icmp().then_some((p.dst, ())), false)),
        (
            DetectionRule::UdpFlood,
            busiest(p, 10 * SECOND, |p| (p.proto == ip_proto::UDP).then_some((p.dst, ())), false),
        ),
    ];
    for (rule, most) in checks {
        assert!((most as u64) < rule.threshold(), "{rule}: the benign mix reaches {most}");
        eprintln!("{:<20} busiest key {most:>6} (threshold {})", rule.name(), rule.threshold());
    }
    // No pair has ten short completed sessions to a login port in five minutes.
    let mut pairs: HashMap<(IpAddr, IpAddr, u16), Vec<u64>> = HashMap::new();
    let login = [22, 3389, 21, 23, 587, 110, 143, 3306, 5432, 1433, 445, 5900];
    for p in p.iter().filter(|p| p.syn() && login.contains(&p.dport)) {
        pairs.entry((p.src, p.dst, p.dport)).or_default().push(p.ts);
    }
    let most = pairs.values().map(|t| max_count(t, 5 * minute)).max().unwrap_or(0);
    assert!(most < 10, "{most} login attempts of one pair in 5 min");
}

#[test]
fn command_line_writes_the_files_the_library_generates() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: outpost_tools::attack::AttacksArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let cli = Cli::try_parse_from([
        "gen",
        "--out",
        &path("a.pcapng"),
        "--format",
        "pcapng",
        "--truth",
        &path("truth.json"),
        "--intel-out",
        &path("intel.txt"),
        "--benign-truth",
        &path("benign.json"),
        "--attacks",
        "ping-sweep,xmas-scan,rdp-brute-force",
        "--benign-flows",
        "300",
        "--benign-clients",
        "100",
        "--attack-gap",
        "5s",
        "--seed",
        "9",
    ])
    .unwrap();
    let summary = outpost_tools::attack::generate_attacks(&cli.args).unwrap();
    let lib = generate_in_memory(&cli.args.params()).unwrap();
    assert_eq!(summary, lib.summary);
    assert!(std::fs::read(path("a.pcapng")).unwrap() == lib.capture);
    let truth =
        outpost_tools::attack::read_attack_truth_file(std::path::Path::new(&path("truth.json"))).unwrap();
    assert_eq!(truth, lib.truth);
    assert_eq!(truth.len(), 3);
    assert_eq!(std::fs::read_to_string(path("intel.txt")).unwrap(), lib.intel);
    let benign = mix::read_flow_truth_file(std::path::Path::new(&path("benign.json"))).unwrap();
    assert_eq!(benign, lib.benign_truth);
    assert_eq!(benign.len(), 300);
    // The attacks follow each other 5 s apart.
    assert!(truth.windows(2).all(|w| w[1].start_ns >= w[0].end_ns + 5 * SECOND));
    assert!(summary.to_string().contains("rdp-brute-force"));
}
