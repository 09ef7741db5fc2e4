//! End-to-end checks of the mix scenario: the capture is read back with pcap-parser, decoded
//! with `outpost_decode`, grouped into flows by a reference written here from the scenario's
//! description (bidirectional 5-tuple + VLAN tags, ICMP by Community ID port equivalents,
//! later fragments by their first fragment), and held to the truth file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;

use clap::Parser;
use outpost_decode::meta::{ip_proto, tcp_flags};
use outpost_decode::{
    Duration, Fragment, IpAddress, LinkType, Malformed, Nanos, PacketMeta, Transport, check_invariants,
    decode,
};
use outpost_tools::mix::{
    FlowKind, FlowTruth, MixArgs, MixCapture, MixParams, MixWeights, generate, generate_in_memory,
    generate_mix, read_flow_truth, read_flow_truth_file,
};
use outpost_tools::pcap::OutputFormat;
use outpost_tools::seed::{NETWORKS, NetworkRole};

mod common;
use common::read_capture;

/// The one anomaly a correct mix capture can show: the UDP length of a *first fragment* is
/// the whole datagram's (RFC 768), longer than the fragment. Counted separately so the tests
/// below can say exactly what the decoder reports.
#[derive(Default, Debug)]
struct Anomalies {
    /// First UDP fragments decoded with `BadUdpLength`.
    first_fragment_udp_length: u64,
    /// Every other anomaly: (frame number, reason).
    other: Vec<(usize, Malformed)>,
}

/// Decodes every packet, asserting it decodes, keeps the decoder's invariants, is IP and that
/// time never goes backwards; returns the metas and the anomalies seen.
fn decode_all(capture: &MixCapture) -> (Vec<PacketMeta>, Anomalies) {
    let (link, packets) = read_capture(&capture.capture);
    assert_eq!(link, LinkType::Ethernet);
    assert_eq!(packets.len() as u64, capture.summary.packets);
    let mut prev = Nanos::ZERO;
    let mut anomalies = Anomalies::default();
    let metas = packets
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            assert!(p.ts >= prev, "timestamps go backwards at frame {}: {} after {}", i + 1, p.ts, prev);
            prev = p.ts;
            let meta = decode(link, &p.frame, p.ts, p.frame.len() as u32)
                .unwrap_or_else(|e| panic!("frame {} does not decode: {e}", i + 1));
            if let Err(broken) = check_invariants(&p.frame, &meta) {
                panic!("decoder invariant broken at frame {}: {broken}", i + 1);
            }
            assert!(meta.is_ip(), "frame {} is not IP", i + 1);
            match meta.anomaly {
                None => {}
                Some(Malformed::BadUdpLength)
                    if meta.fragment == Fragment::First && meta.ip_proto == ip_proto::UDP =>
                {
                    anomalies.first_fragment_udp_length += 1;
                }
                Some(reason) => anomalies.other.push((i + 1, reason)),
            }
            meta
        })
        .collect();
    (metas, anomalies)
}

/// Community ID v1 port equivalents of an ICMP / ICMPv6 message: `(type, counterpart)` for
/// request/reply types, `(type, code)` for one-way messages.
fn icmp_ports(ty: u8, code: u8, v6: bool) -> (u16, u16) {
    let counterpart = if v6 {
        match ty {
            128 => Some(129),
            129 => Some(128),
            _ => None,
        }
    } else {
        match ty {
            8 => Some(0),
            0 => Some(8),
            _ => None,
        }
    };
    (u16::from(ty), u16::from(counterpart.unwrap_or(code)))
}

/// A bidirectional flow key: VLAN tags, protocol, and both endpoints in sorted order.
type Key = (Vec<u16>, u8, (IpAddress, u16), (IpAddress, u16));

fn key(vlans: &[u16], proto: u8, a: (IpAddress, u16), b: (IpAddress, u16)) -> Key {
    (vlans.to_vec(), proto, a.min(b), a.max(b))
}

/// What the reference counts for one flow.
#[derive(Debug, Default)]
struct RefFlow {
    initiator: Option<(IpAddress, u16)>,
    syn_sender: Option<(IpAddress, u16)>,
    /// Packets and bytes per sending endpoint.
    sent: BTreeMap<(IpAddress, u16), (u64, u64)>,
    fragments: u64,
    first: Nanos,
    last: Nanos,
    max_gap: Duration,
    icmp_first: Option<(u8, u8)>,
    /// TCP flags of every packet, in order.
    flags: Vec<u16>,
}

/// Groups decoded packets into flows, independently of the generator.
fn reference_flows(metas: &[PacketMeta]) -> HashMap<Key, RefFlow> {
    let mut flows: HashMap<Key, RefFlow> = HashMap::new();
    let mut first_fragments: HashMap<(IpAddress, IpAddress, u8, u32), (u16, u16)> = HashMap::new();
    for m in metas {
        let v6 = m.src.to_std().is_ipv6();
        let ports = match m.fragment {
            Fragment::Later => *first_fragments
                .get(&(m.src, m.dst, m.ip_proto, m.frag_id))
                .expect("every later fragment follows its first fragment"),
            _ if matches!(m.ip_proto, ip_proto::ICMP | ip_proto::ICMPV6) => {
                assert_eq!(m.transport, Transport::Parsed);
                icmp_ports(m.icmp_type, m.icmp_code, v6)
            }
            _ => {
                assert!(m.has_ports(), "TCP or UDP with ports");
                (m.src_port, m.dst_port)
            }
        };
        if m.fragment == Fragment::First {
            first_fragments.insert((m.src, m.dst, m.ip_proto, m.frag_id), ports);
        }
        let vlans = &m.vlan[..usize::from(m.vlan_count)];
        let from = (m.src, ports.0);
        let f = flows.entry(key(vlans, m.ip_proto, from, (m.dst, ports.1))).or_default();
        if f.initiator.is_none() {
            f.initiator = Some(from);
            f.first = m.ts;
            f.icmp_first =
                matches!(m.ip_proto, ip_proto::ICMP | ip_proto::ICMPV6).then_some((m.icmp_type, m.icmp_code));
        } else {
            f.max_gap = f.max_gap.max(m.ts.since(f.last));
        }
        f.last = m.ts;
        if m.ip_proto == ip_proto::TCP && m.fragment != Fragment::Later {
            if m.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
                f.syn_sender.get_or_insert(from);
            }
            f.flags.push(m.tcp_flags);
        }
        let s = f.sent.entry(from).or_default();
        s.0 += 1;
        s.1 += u64::from(m.ip_len);
        f.fragments += u64::from(m.fragment != Fragment::None);
    }
    flows
}

/// A truth record's initiator and responder as the reference keys them (ICMP: port
/// equivalents from the first packet's type and code).
fn truth_endpoints(t: &FlowTruth) -> ((IpAddress, u16), (IpAddress, u16)) {
    let v6 = t.initiator.is_ipv6();
    let (ip, rp) = match (t.icmp_type, t.icmp_code) {
        (Some(ty), Some(code)) => icmp_ports(ty, code, v6),
        _ => (t.initiator_port, t.responder_port),
    };
    ((IpAddress::from(t.initiator), ip), (IpAddress::from(t.responder), rp))
}

/// The reference key of a truth record.
fn truth_key(t: &FlowTruth) -> Key {
    let (init, resp) = truth_endpoints(t);
    key(&t.vlans, t.proto, init, resp)
}

fn small(seed: u64) -> MixParams {
    MixParams { flows: 3_000, concurrency: 64, clients: 300, seed, ..MixParams::default() }
}

#[test]
fn same_seed_gives_byte_identical_files_in_every_format() {
    for format in
        [OutputFormat::Pcap { nanos: true }, OutputFormat::Pcap { nanos: false }, OutputFormat::PcapNg]
    {
        let p = MixParams { format, flows: 800, ..small(42) };
        let a = generate_in_memory(&p).unwrap();
        let b = generate_in_memory(&p).unwrap();
        assert!(a.capture == b.capture, "{format:?}: captures differ");
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.summary, b.summary);
        let mut streamed = Vec::new();
        let mut truth = Vec::new();
        generate(&p, &mut streamed, Some(&mut truth)).unwrap();
        assert!(streamed == a.capture);
        assert_eq!(read_flow_truth(truth.as_slice()).unwrap(), a.truth);
        // Without a truth writer the capture is the same.
        let mut alone = Vec::new();
        generate(&p, &mut alone, None::<io::Sink>).unwrap();
        assert!(alone == a.capture);
    }
}

#[test]
fn different_seeds_give_different_traffic() {
    let a = generate_in_memory(&MixParams { flows: 500, ..small(1) }).unwrap();
    let b = generate_in_memory(&MixParams { flows: 500, ..small(2) }).unwrap();
    assert_ne!(a.capture, b.capture);
    assert_ne!(a.truth, b.truth);
    assert_eq!(a.summary.flows, b.summary.flows);
}

#[test]
fn truth_is_exactly_the_flows_read_back_from_the_capture() {
    for format in [OutputFormat::Pcap { nanos: true }, OutputFormat::Pcap { nanos: false }] {
        let p = MixParams { format, ..small(7) };
        let capture = generate_in_memory(&p).unwrap();
        let (metas, _) = decode_all(&capture);
        let flows = reference_flows(&metas);
        assert_eq!(capture.truth.len(), 3_000);
        assert_eq!(flows.len(), capture.truth.len(), "one 5-tuple per truth record, no more, no less");
        let mut serials = HashSet::new();
        for t in &capture.truth {
            assert!(serials.insert(t.flow), "flow {} twice", t.flow);
            let f = flows.get(&truth_key(t)).unwrap_or_else(|| panic!("no packets for {t:?}"));
            let (init, resp) = truth_endpoints(t);
            assert_eq!(f.initiator, Some(init), "initiator of flow {}", t.flow);
            if t.proto == 6 {
                assert_eq!(f.syn_sender, Some(init), "SYN sender of flow {}", t.flow);
            }
            let fwd = f.sent.get(&init).copied().unwrap_or_default();
            let rev = f.sent.get(&resp).copied().unwrap_or_default();
            assert_eq!((t.fwd_packets, t.fwd_bytes), fwd, "forward counts of flow {}", t.flow);
            assert_eq!((t.rev_packets, t.rev_bytes), rev, "reverse counts of flow {}", t.flow);
            assert_eq!(f.fragments, t.fragments, "fragments of flow {}", t.flow);
            assert_eq!((f.first, f.last), (t.first_time(), t.last_time()), "times of flow {}", t.flow);
            assert_eq!(t.first, t.first_time().to_string());
            assert_eq!(f.icmp_first, t.icmp_type.zip(t.icmp_code));
        }
    }
}

#[test]
fn every_frame_decodes_without_anomaly() {
    let capture = generate_in_memory(&small(11)).unwrap();
    let (metas, anomalies) = decode_all(&capture);
    assert!(
        anomalies.other.is_empty(),
        "unexpected anomalies: {:?}",
        &anomalies.other[..anomalies.other.len().min(5)]
    );
    let first_udp_fragments =
        metas.iter().filter(|m| m.fragment == Fragment::First && m.ip_proto == ip_proto::UDP).count() as u64;
    assert!(first_udp_fragments > 50);
    assert_eq!(
        anomalies.first_fragment_udp_length, 0,
        "first UDP fragments (whose UDP length covers the whole datagram) must not be flagged"
    );
}

#[test]
fn every_kind_family_and_tagging_is_present_in_proportion() {
    let capture = generate_in_memory(&small(3)).unwrap();
    let s = &capture.summary;
    for k in FlowKind::ALL {
        assert!(s.kind(k) > 0, "no {k} flow");
    }
    let share = |k| s.kind(k) as f64 / s.flows as f64;
    // Conversation weights 45/5/5/25/4/12/4; an icmp_unreach conversation adds a udp or
    // tcp_half_open probe flow, so flows are 104 parts.
    assert!((0.38..0.49).contains(&share(FlowKind::TcpComplete)), "{s}");
    assert!((0.20..0.30).contains(&share(FlowKind::Udp)), "{s}");
    assert!((0.08..0.15).contains(&share(FlowKind::IcmpEcho)), "{s}");
    let t = &capture.truth;
    let v6 = t.iter().filter(|f| f.initiator.is_ipv6()).count();
    let single = t.iter().filter(|f| f.vlans.len() == 1).count();
    let qinq = t.iter().filter(|f| f.vlans.len() == 2).count();
    assert!(v6 > 300 && single > 100 && qinq > 50, "v6 {v6}, single-tagged {single}, QinQ {qinq}");
    for (kind, proto) in
        [(FlowKind::FragmentedUdp, 17), (FlowKind::IcmpEcho, 58), (FlowKind::IcmpUnreach, 58)]
    {
        assert!(t.iter().any(|f| f.kind == kind && f.proto == proto), "no IPv6 {kind}");
    }
    let frag_v4 = t.iter().filter(|f| f.fragments > 0 && !f.initiator.is_ipv6()).count();
    let frag_v6 = t.iter().filter(|f| f.fragments > 0 && f.initiator.is_ipv6()).count();
    assert!(frag_v4 > 10 && frag_v6 > 3, "fragmented flows: {frag_v4} IPv4, {frag_v6} IPv6");
    assert!(t.iter().all(|f| (f.fragments > 0) == (f.kind == FlowKind::FragmentedUdp)));
    // Clients are in the client networks; peers never are.
    let client_net = |a| NETWORKS.iter().any(|n| n.role == NetworkRole::Clients && n.contains(a));
    for f in t {
        let (client, peer) = if f.kind == FlowKind::IcmpUnreach {
            (f.responder, f.initiator)
        } else {
            (f.initiator, f.responder)
        };
        assert!(client_net(client) && !client_net(peer), "{f:?}");
    }
}

#[test]
fn flows_never_go_idle_and_tcp_ends_as_its_kind_says() {
    let p = MixParams { long_fraction: 0.05, ..small(5) };
    let capture = generate_in_memory(&p).unwrap();
    let (metas, _) = decode_all(&capture);
    let flows = reference_flows(&metas);
    let max_gap = p.max_gap();
    let mut long = 0;
    for t in &capture.truth {
        let f = &flows[&truth_key(t)];
        assert!(f.max_gap < max_gap, "flow {} silent for {:?}", t.flow, f.max_gap);
        if t.last_time().since(t.first_time()) > Duration::from_secs(120) {
            long += 1;
        }
        const FIN: u16 = tcp_flags::FIN;
        const RST: u16 = tcp_flags::RST;
        let rsts = f.flags.iter().filter(|&&x| x & RST != 0).count();
        let fins = f.flags.iter().filter(|&&x| x & FIN != 0).count();
        match t.kind {
            FlowKind::TcpComplete => {
                assert_eq!((rsts, fins), (0, 2), "flow {}", t.flow);
                let n = f.flags.len();
                assert_eq!(f.flags[n - 1], tcp_flags::ACK, "a close ends with the last ACK");
                assert!(f.flags[n - 3] & FIN != 0 && f.flags[n - 2] & FIN != 0);
                assert!(t.rev_packets > 0 && t.fwd_packets >= 4);
            }
            FlowKind::TcpReset => {
                assert_eq!((rsts, fins), (1, 0), "flow {}", t.flow);
                assert!(f.flags.last().is_some_and(|&x| x & RST != 0), "nothing follows the RST");
            }
            FlowKind::TcpHalfOpen => {
                assert_eq!((rsts, fins), (0, 0));
                assert!(f.flags.iter().all(|&x| x & tcp_flags::SYN != 0), "only SYNs and SYN-ACKs");
            }
            _ => assert!(f.flags.is_empty() || t.proto == 6),
        }
    }
    assert!(long > 5, "{long} flows outlive a 120 s active timeout");
}

#[test]
fn conversations_interleave_up_to_the_concurrency() {
    let capture = generate_in_memory(&small(9)).unwrap();
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for t in &capture.truth {
        edges.push((t.first_ns, 1));
        edges.push((t.last_ns + 1, -1));
    }
    edges.sort_unstable();
    let (mut live, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        live += d;
        peak = peak.max(live);
    }
    // 64 slots; an icmp_unreach conversation holds two flows.
    assert!((48..=128).contains(&peak), "peak concurrent flows {peak}");
}

#[test]
fn kind_weights_select_kinds_and_unreach_never_overshoots_flows() {
    let mut w = MixWeights([0; 7]);
    w.0[FlowKind::IcmpUnreach.index()] = 1;
    let p = MixParams { flows: 7, weights: w, ..small(4) };
    let c = generate_in_memory(&p).unwrap();
    assert_eq!(c.summary.flows, 7);
    assert_eq!(c.summary.kind(FlowKind::IcmpUnreach), 3);
    assert_eq!(c.summary.kind(FlowKind::Udp) + c.summary.kind(FlowKind::TcpHalfOpen), 4);
}

#[test]
fn command_line_writes_the_files_the_library_generates() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MixArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("mix.pcapng");
    let truth = dir.path().join("mix.jsonl");
    let cli = Cli::try_parse_from([
        "gen",
        "--out",
        pcap.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--format",
        "pcapng",
        "--flows",
        "400",
        "--concurrency",
        "16",
        "--clients",
        "50",
        "--seed",
        "8",
        "--mix",
        "icmp_echo=40",
    ])
    .unwrap();
    let summary = generate_mix(&cli.args).unwrap();
    let expected = generate_in_memory(&cli.args.params()).unwrap();
    assert_eq!(summary, expected.summary);
    assert!(std::fs::read(&pcap).unwrap() == expected.capture);
    assert_eq!(read_flow_truth_file(&truth).unwrap(), expected.truth);
    assert!(summary.kind(FlowKind::IcmpEcho) > 100);

    // Bad options fail before any file is created.
    let missing = dir.path().join("never.pcap");
    let bad = Cli::try_parse_from(["gen", "--out", missing.to_str().unwrap(), "--clients", "0"]).unwrap();
    assert!(generate_mix(&bad.args).is_err());
    assert!(!missing.exists());
}
