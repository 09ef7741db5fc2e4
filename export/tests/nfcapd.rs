//! End to end against a real collector: packets → flow meter → exporter → UDP → nfcapd
//! (nfdump 1.7.x) → `nfdump -o json`, checking every flow's addresses, ports, protocol, VLAN,
//! TOS, TCP flags, packet and byte counts in both directions, and first/last times to the
//! millisecond.
//!
//! nfcapd and nfdump must be installed (`apt-get install nfdump`): the tests fail, not skip,
//! without them. nfcapd listens on 127.0.0.1 on a port picked by the test and is killed when
//! the test ends, passed or failed.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use common::{FlowTruth, Nfcapd, check_records_match_truth, nfdump, scenario};
use outpost_decode::Nanos;
use outpost_export::{
    BiflowMode, ExportStats, IpfixExporter, IpfixOptions, MessageSink, NetflowV9Exporter, NetflowV9Options,
};
use outpost_flowmeter::FlowRecord;
use serde_json::Value;

/// One flow as nfdump should show it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
    packets: u64,
    bytes: u64,
    /// Reverse packets and bytes (biflow records; 0 otherwise).
    out: (u64, u64),
    flags: u8,
    first_ms: u64,
    last_ms: u64,
    vlan: u16,
    tos: u8,
    icmp: Option<(u8, u8)>,
}

fn biflow_expected(f: &FlowTruth) -> Expected {
    let (first_ms, last_ms) = f.span_ms();
    Expected {
        src: f.client,
        dst: f.server,
        sport: f.cport,
        dport: f.sport,
        proto: f.proto,
        packets: f.fwd.packets,
        bytes: f.fwd.bytes,
        out: (f.rev.packets, f.rev.bytes),
        flags: f.fwd.flags,
        first_ms,
        last_ms,
        vlan: f.vlan,
        tos: f.dscp << 2,
        icmp: f.icmp,
    }
}

/// The forward record and, when the responder sent packets, the reverse record.
fn uniflow_expected(f: &FlowTruth) -> Vec<Expected> {
    let mut fwd = biflow_expected(f);
    fwd.out = (0, 0);
    (fwd.first_ms, fwd.last_ms) = (f.fwd.first_ms, f.fwd.last_ms);
    let mut v = vec![fwd];
    if f.rev.packets > 0 {
        v.push(Expected {
            src: f.server,
            dst: f.client,
            sport: f.sport,
            dport: f.cport,
            proto: f.proto,
            packets: f.rev.packets,
            bytes: f.rev.bytes,
            out: (0, 0),
            flags: f.rev.flags,
            first_ms: f.rev.first_ms,
            last_ms: f.rev.last_ms,
            vlan: f.vlan,
            tos: 0,
            // Echo request → echo reply.
            icmp: f.icmp.map(|(t, _)| (if t == 8 { 0 } else { t + 1 }, 0)),
        });
    }
    v
}

/// `...AP.SF`-style flags as nfdump prints them (CWR ECE URG ACK PSH RST SYN FIN).
fn nfdump_flags(f: u8) -> String {
    "CEUAPRSF".chars().enumerate().map(|(i, c)| if f & (0x80 >> i) != 0 { c } else { '.' }).collect()
}

/// Milliseconds since the epoch as nfdump prints them in UTC: `2024-05-01T12:00:00.137`.
fn nfdump_time(ms: u64) -> String {
    let s = Nanos(ms * 1_000_000).to_string();
    s[..23].to_string()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

fn opt_num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

fn addr(v: &Value, four: &str, six: &str) -> IpAddr {
    let s = v
        .get(four)
        .or_else(|| v.get(six))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no address in {v}"));
    s.parse().unwrap_or_else(|_| panic!("bad address {s}"))
}

/// Reads nfdump's JSON of every file and matches every entry to exactly one expected flow.
fn check_nfdump(files: &[PathBuf], expected: &[Expected]) {
    let mut entries: Vec<Value> = Vec::new();
    for file in files {
        let out = nfdump(file, &["-o", "json"]);
        if out.trim().is_empty() {
            continue; // a file rotated in without flows
        }
        let more: Vec<Value> =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("nfdump JSON ({e}): {out}"));
        entries.extend(more);
    }
    assert_eq!(entries.len(), expected.len(), "every flow arrives once: {entries:#?}");
    let mut by_key: HashMap<(IpAddr, IpAddr, u16, u16, u8), &Expected> = HashMap::new();
    for e in expected {
        assert!(by_key.insert((e.src, e.dst, e.sport, e.dport, e.proto), e).is_none(), "unique keys");
    }
    for v in &entries {
        let proto = u8::try_from(num(v, "proto")).expect("proto");
        let icmp = matches!(proto, 1 | 58);
        let src = addr(v, "src4_addr", "src6_addr");
        let dst = addr(v, "dst4_addr", "dst6_addr");
        let (sport, dport) = if icmp {
            (0, 0)
        } else {
            (
                u16::try_from(num(v, "src_port")).expect("port"),
                u16::try_from(num(v, "dst_port")).expect("port"),
            )
        };
        let e =
            by_key.remove(&(src, dst, sport, dport, proto)).unwrap_or_else(|| panic!("unexpected flow {v}"));
        assert_eq!((num(v, "in_packets"), num(v, "in_bytes")), (e.packets, e.bytes), "{e:?}\n{v}");
        assert_eq!((opt_num(v, "out_packets"), opt_num(v, "out_bytes")), e.out, "{e:?}\n{v}");
        assert_eq!(text(v, "first"), nfdump_time(e.first_ms), "{e:?}\n{v}");
        assert_eq!(text(v, "last"), nfdump_time(e.last_ms), "{e:?}\n{v}");
        assert_eq!(opt_num(v, "src_vlan"), u64::from(e.vlan), "{e:?}\n{v}");
        assert_eq!(num(v, "src_tos"), u64::from(e.tos), "{e:?}\n{v}");
        if proto == 6 {
            assert_eq!(text(v, "tcp_flags"), nfdump_flags(e.flags), "{e:?}\n{v}");
        }
        if let Some((t, c)) = e.icmp {
            assert_eq!(
                (num(v, "icmp_type"), num(v, "icmp_code")),
                (u64::from(t), u64::from(c)),
                "{e:?}\n{v}"
            );
        }
    }
    assert!(by_key.is_empty(), "flows missing in nfdump: {:?}", by_key.values().collect::<Vec<_>>());
}

fn metered() -> (Vec<FlowTruth>, Vec<FlowRecord>) {
    let (truth, records) = scenario();
    check_records_match_truth(&truth, &records);
    (truth, records)
}

fn collector(n: &Nfcapd) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], n.port))
}

/// Exports every record, flushes, and returns the counters.
fn run<E: outpost_export::FlowEncoder, S: MessageSink>(
    mut exporter: outpost_export::FlowExporter<E, S>,
    records: &[FlowRecord],
) -> ExportStats {
    for r in records {
        exporter.export(r).expect("export");
    }
    exporter.flush().expect("flush");
    let stats = exporter.stats();
    assert_eq!(stats.send_errors, 0);
    assert_eq!(stats.flows, records.len() as u64);
    stats
}

/// Stops nfcapd and returns its files: one, or two when the run crossed a rotation time.
fn flow_files(n: &mut Nfcapd) -> Vec<PathBuf> {
    let files = n.stop();
    assert!(!files.is_empty(), "nfcapd wrote no file: {}", n.logs());
    files
}

#[test]
fn ipfix_biflows_reach_nfdump_with_in_and_out_counters() {
    let (truth, records) = metered();
    let mut n = Nfcapd::start();
    // A small MTU so the flows span several messages (and template refreshes).
    let options = IpfixOptions { mtu: 700, ..IpfixOptions::default() };
    let stats = run(IpfixExporter::connect(collector(&n), options).expect("exporter"), &records);
    assert!(stats.messages > 5, "{stats:?}");
    assert_eq!(stats.records, records.len() as u64);
    check_nfdump(&flow_files(&mut n), &truth.iter().map(biflow_expected).collect::<Vec<_>>());
}

#[test]
fn ipfix_uniflows_reach_nfdump_as_forward_and_reverse_flows() {
    let (truth, records) = metered();
    let mut n = Nfcapd::start();
    let options = IpfixOptions { mode: BiflowMode::Uniflow, ..IpfixOptions::default() };
    let stats = run(IpfixExporter::connect(collector(&n), options).expect("exporter"), &records);
    let expected: Vec<Expected> = truth.iter().flat_map(uniflow_expected).collect();
    assert_eq!(stats.records, expected.len() as u64);
    check_nfdump(&flow_files(&mut n), &expected);
}

#[test]
fn netflow_v9_flows_reach_nfdump_with_exact_times() {
    let (truth, records) = metered();
    let mut n = Nfcapd::start();
    let options = NetflowV9Options { mtu: 600, ..NetflowV9Options::default() };
    let stats = run(NetflowV9Exporter::connect(collector(&n), options).expect("exporter"), &records);
    assert!(stats.messages > 5, "{stats:?}");
    let expected: Vec<Expected> = truth.iter().flat_map(uniflow_expected).collect();
    assert_eq!(stats.records, expected.len() as u64);
    check_nfdump(&flow_files(&mut n), &expected);
}
