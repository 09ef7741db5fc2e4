//! The flow meter's accuracy oracle: on generated mix captures (TCP complete, half-open and
//! reset; UDP; fragmented UDP over IPv4 and IPv6; ICMP and ICMPv6 echo and unreachables;
//! VLAN and QinQ), the flows `outpost replay --flows` writes must be exactly the conversations
//! tshark finds, packet for packet and byte for byte in each direction — and both must equal
//! the generator's ground truth.
//!
//! # The tshark side
//!
//! One `tshark -r FILE -n -o ip.defragment:FALSE -o ipv6.defragment:FALSE -T fields
//! -E occurrence=a -E aggregator=; -e …` over the fields in [`FIELDS`] (checked against
//! `tshark -G fields` first), grouped here the way a user would:
//!
//! - **Outer header only.** The first occurrence of each IP/transport field (ICMP errors quote
//!   an inner IP header that tshark dissects as a second occurrence).
//! - **VLAN.** The outer tag: `ieee8021ad.id` (an 802.1ad service tag, how tshark dissects
//!   QinQ's outer tag) if present, else the first `vlan.id`; 0 when untagged.
//! - **Protocol.** `ip.proto`; for IPv6 `ipv6.nxt`, or `ipv6.fraghdr.nxt` behind a fragment
//!   header.
//! - **Bytes.** `ip.len`, or 40 + `ipv6.plen` (IPFIX `octetDeltaCount`).
//! - **Ports.** `tcp.*port` / `udp.*port`. ICMP/ICMPv6 use the Community ID port equivalents,
//!   so an echo request (8 / 128) and its reply (0 / 129) are one conversation, and one-way
//!   messages key by (type, code).
//! - **Fragments.** A first fragment (offset 0, more fragments) remembers its ports under
//!   (source, destination, protocol, identification); later fragments take them from there.
//! - **Conversation** = (outer VLAN, protocol, both endpoints unordered). Its initiator sends
//!   the first packet — for TCP, the first SYN without ACK.
//!
//! TCP and UDP frame counts (and byte counts tshark prints exactly) are cross-checked against
//! `tshark -q -z conv,tcp -z conv,udp` (which cannot see later fragments: they have no UDP
//! header).
//!
//! # The Outpost side
//!
//! Records of one `flowId` (interim records with `sequence` 0, 1, …, then the final one) are
//! summed; a conversation must be exactly one `flowId`.
//!
//! The test fails when tshark is missing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_tools::mix::{FlowKind, FlowTruth, MixParams, MixWeights, generate, read_flow_truth_file};
use outpost_tools::pcap::OutputFormat;
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// The tshark fields read per packet, in column order.
const FIELDS: &[&str] = &[
    "frame.number",
    "frame.time_epoch",
    "frame.len",
    "ieee8021ad.id",
    "vlan.id",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.len",
    "ip.id",
    "ip.frag_offset",
    "ip.flags.mf",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.plen",
    "ipv6.fraghdr.nxt",
    "ipv6.fraghdr.offset",
    "ipv6.fraghdr.more",
    "ipv6.fraghdr.ident",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
];

type Endpoint = (IpAddr, u16);

/// A bidirectional conversation: outer VLAN, protocol, endpoints in sorted order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ConvKey {
    vlan: u16,
    proto: u8,
    a: Endpoint,
    b: Endpoint,
}

impl ConvKey {
    fn new(vlan: u16, proto: u8, x: Endpoint, y: Endpoint) -> ConvKey {
        ConvKey { vlan, proto, a: x.min(y), b: x.max(y) }
    }
}

/// Packets and bytes one way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    packets: u64,
    bytes: u64,
}

/// One conversation as one source (tshark, Outpost, the truth) sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Conv {
    initiator: Endpoint,
    fwd: Counts,
    rev: Counts,
}

/// Community ID v1 port equivalents of an ICMP (`v6` false) or ICMPv6 message: `(type,
/// counterpart)` for the request/reply pairs of the specification, `(type, code)` otherwise.
fn icmp_ports(ty: u8, code: u8, v6: bool) -> (u16, u16) {
    let pairs: &[(u8, u8)] = if v6 {
        &[(128, 129), (133, 134), (135, 136), (130, 131), (144, 145), (146, 147), (139, 140)]
    } else {
        &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)]
    };
    let counterpart = pairs.iter().find_map(|&(a, b)| {
        if ty == a {
            Some(b)
        } else if ty == b {
            Some(a)
        } else {
            None
        }
    });
    (u16::from(ty), u16::from(counterpart.unwrap_or(code)))
}

fn tshark_available() -> bool {
    Command::new("tshark").arg("-v").output().is_ok_and(|o| o.status.success())
}

fn require_tshark() {
    assert!(
        tshark_available(),
        "tshark is required for the flow oracle and was not found (Debian: apt-get install tshark; \
         `make deps` installs it)"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Fails unless this tshark knows every field of [`FIELDS`].
fn check_fields_exist() {
    let all = run(Command::new("tshark").args(["-G", "fields"]));
    let known: HashSet<&str> = all.lines().filter_map(|l| l.split('\t').nth(2)).collect();
    let missing: Vec<&str> = FIELDS.iter().copied().filter(|f| !known.contains(f)).collect();
    assert!(missing.is_empty(), "this tshark lacks fields {missing:?}");
}

/// What tshark's per-packet fields give, grouped into conversations.
#[derive(Debug, Default)]
struct TsharkFlows {
    convs: HashMap<ConvKey, Conv>,
    /// Frames and frame bytes of packets with a transport header (not later fragments), per
    /// direction (a → b, b → a) — what `conv,tcp` / `conv,udp` count.
    l4_frames: HashMap<ConvKey, [(u64, u64); 2]>,
    /// First and last packet time, nanoseconds.
    times: HashMap<ConvKey, (u64, u64)>,
    packets: u64,
}

/// Parses `1767225600.000586941` into nanoseconds.
fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut frac = frac.to_string();
    frac.truncate(9);
    while frac.len() < 9 {
        frac.push('0');
    }
    secs.parse::<u64>().expect("epoch seconds") * 1_000_000_000 + frac.parse::<u64>().expect("fraction")
}

fn num(s: &str) -> u64 {
    if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad hex field {s:?}"))
    } else {
        s.parse().unwrap_or_else(|_| panic!("bad number field {s:?}"))
    }
}

fn flag(s: &str) -> bool {
    matches!(s, "1" | "True" | "true")
}

fn tshark_flows(pcap: &Path) -> TsharkFlows {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args(["-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]);
    cmd.args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=;"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let text = run(&mut cmd);
    let col: HashMap<&str, usize> = FIELDS.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let mut out = TsharkFlows::default();
    let mut first_fragments: HashMap<(IpAddr, IpAddr, u8, u64), (u16, u16)> = HashMap::new();
    // SYN senders seen so far per conversation (the initiator of TCP).
    let mut syn_sender: HashMap<ConvKey, Endpoint> = HashMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('\t').collect();
        let all = |name: &str| cells.get(col[name]).copied().unwrap_or("");
        let first = |name: &str| all(name).split(';').next().unwrap_or("");
        let frame = first("frame.number");
        let v6 = first("ip.src").is_empty();
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (
                first("ipv6.src").parse().expect("IPv6 source"),
                first("ipv6.dst").parse().expect("IPv6 destination"),
            )
        } else {
            (
                first("ip.src").parse().expect("IPv4 source"),
                first("ip.dst").parse().expect("IPv4 destination"),
            )
        };
        let (proto, bytes, frag_id, offset, more) = if v6 {
            let nxt = num(first("ipv6.nxt")) as u8;
            let fragmented = nxt == 44;
            let proto = if fragmented { num(first("ipv6.fraghdr.nxt")) as u8 } else { nxt };
            let (id, offset, more) = if fragmented {
                (
                    num(first("ipv6.fraghdr.ident")),
                    num(first("ipv6.fraghdr.offset")),
                    flag(first("ipv6.fraghdr.more")),
                )
            } else {
                (0, 0, false)
            };
            (proto, 40 + num(first("ipv6.plen")), id, offset, more)
        } else {
            let proto = num(first("ip.proto")) as u8;
            (
                proto,
                num(first("ip.len")),
                num(first("ip.id")),
                num(first("ip.frag_offset")),
                flag(first("ip.flags.mf")),
            )
        };
        let later_fragment = offset > 0;
        let ports = if later_fragment {
            *first_fragments
                .get(&(src, dst, proto, frag_id))
                .unwrap_or_else(|| panic!("frame {frame}: later fragment without its first fragment"))
        } else {
            match proto {
                6 => (num(first("tcp.srcport")) as u16, num(first("tcp.dstport")) as u16),
                17 => (num(first("udp.srcport")) as u16, num(first("udp.dstport")) as u16),
                1 => icmp_ports(num(first("icmp.type")) as u8, num(first("icmp.code")) as u8, false),
                58 => icmp_ports(num(first("icmpv6.type")) as u8, num(first("icmpv6.code")) as u8, true),
                p => panic!("frame {frame}: unexpected protocol {p}"),
            }
        };
        if offset == 0 && more {
            first_fragments.insert((src, dst, proto, frag_id), ports);
        }
        let outer_vlan = [first("ieee8021ad.id"), first("vlan.id")].into_iter().find(|v| !v.is_empty());
        let vlan = outer_vlan.map_or(0, |v| num(v) as u16);
        let from = (src, ports.0);
        let key = ConvKey::new(vlan, proto, from, (dst, ports.1));
        let ts = epoch_ns(first("frame.time_epoch"));
        let conv = out.convs.entry(key).or_insert_with(|| Conv {
            initiator: from,
            fwd: Counts::default(),
            rev: Counts::default(),
        });
        if proto == 6 && !later_fragment && num(first("tcp.flags")) & 0x12 == 0x02 {
            syn_sender.entry(key).or_insert(from);
        }
        let c = if from == conv.initiator { &mut conv.fwd } else { &mut conv.rev };
        c.packets += 1;
        c.bytes += bytes;
        let t = out.times.entry(key).or_insert((ts, ts));
        t.1 = ts;
        if !later_fragment {
            let l4 = out.l4_frames.entry(key).or_default();
            let i = usize::from(from != key.a);
            l4[i].0 += 1;
            l4[i].1 += num(first("frame.len"));
        }
        out.packets += 1;
    }
    // TCP: the initiator is the SYN sender, whoever was seen first.
    for (key, sender) in syn_sender {
        if let Some(c) = out.convs.get_mut(&key) {
            if c.initiator != sender {
                std::mem::swap(&mut c.fwd, &mut c.rev);
                c.initiator = sender;
            }
        }
    }
    out
}

/// `tshark -q -z conv,tcp -z conv,udp`: per unordered (address:port) pair and protocol, the
/// frames each way and — when tshark prints them in plain bytes — the bytes.
type ConvTable = HashMap<(u8, Endpoint, Endpoint), [(u64, Option<u64>); 2]>;

fn tshark_conv_tables(pcap: &Path) -> ConvTable {
    let text = run(Command::new("tshark").arg("-r").arg(pcap).args([
        "-n",
        "-q",
        "-o",
        "ip.defragment:FALSE",
        "-o",
        "ipv6.defragment:FALSE",
        "-z",
        "conv,tcp",
        "-z",
        "conv,udp",
    ]));
    let endpoint = |s: &str| -> Endpoint {
        let (addr, port) = s.rsplit_once(':').expect("address:port");
        (addr.parse().expect("address"), port.parse().expect("port"))
    };
    let mut table = ConvTable::new();
    let mut proto = 0u8;
    for line in text.lines() {
        if line.starts_with("TCP Conversations") {
            proto = 6;
        } else if line.starts_with("UDP Conversations") {
            proto = 17;
        }
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 12 || t[1] != "<->" {
            continue;
        }
        // A:p <-> B:p | frames bytes unit (B → A) | frames bytes unit (A → B) | total … | start dur
        let (a, b) = (endpoint(t[0]), endpoint(t[2]));
        let bytes = |v: &str, unit: &str| (unit == "bytes").then(|| v.parse().expect("byte count"));
        let ba = (t[3].parse().expect("frames"), bytes(t[4], t[5]));
        let ab = (t[6].parse().expect("frames"), bytes(t[7], t[8]));
        let (lo, hi, dirs) = if a <= b { (a, b, [ab, ba]) } else { (b, a, [ba, ab]) };
        assert!(table.insert((proto, lo, hi), dirs).is_none(), "conversation {lo:?} <-> {hi:?} listed twice");
    }
    table
}

/// One Outpost flow: the summed records of one `flowId`.
#[derive(Debug)]
struct OutpostFlow {
    conv: Conv,
    /// End reasons of the records, in sequence order.
    reasons: Vec<String>,
    start_ns: u64,
    end_ns: u64,
}

fn parse_time(v: &Value) -> u64 {
    let s = v.as_str().expect("an RFC 3339 time");
    outpost_tools::timearg::parse_time(s).expect("a valid time").0
}

/// Reads `--flows` output: every flowId summed, keyed by conversation. Panics on records of
/// one flow that disagree on the key or skip a sequence number.
fn outpost_flows(path: &Path) -> (HashMap<ConvKey, OutpostFlow>, Vec<String>) {
    let text = std::fs::read_to_string(path).expect("flows output");
    let mut by_id: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("every line is JSON");
        assert_eq!(v["type"], "flow");
        by_id.entry(v["flowId"].as_u64().expect("flowId")).or_default().push(v);
    }
    let mut flows = HashMap::new();
    let mut problems = Vec::new();
    for (id, mut records) in by_id {
        records.sort_by_key(|r| r["sequence"].as_u64());
        let seqs: Vec<u64> = records.iter().map(|r| r["sequence"].as_u64().expect("sequence")).collect();
        assert_eq!(seqs, (0..records.len() as u64).collect::<Vec<_>>(), "flow {id}: sequence numbers");
        let r0 = &records[0];
        let addr = |r: &Value, side: &str| -> IpAddr {
            let v4 = &r[format!("{side}IPv4Address")];
            let v = if v4.is_null() { &r[format!("{side}IPv6Address")] } else { v4 };
            v.as_str().expect("an address").parse().expect("a valid address")
        };
        let proto = r0["protocolIdentifier"].as_u64().expect("protocol") as u8;
        let (sp, dp) = match proto {
            1 | 58 => {
                let tc = r0[if proto == 1 { "icmpTypeCodeIPv4" } else { "icmpTypeCodeIPv6" }]
                    .as_u64()
                    .expect("ICMP type and code");
                icmp_ports((tc >> 8) as u8, tc as u8, proto == 58)
            }
            _ => (
                r0["sourceTransportPort"].as_u64().expect("port") as u16,
                r0["destinationTransportPort"].as_u64().expect("port") as u16,
            ),
        };
        let vlan = r0["vlanId"].as_u64().unwrap_or(0) as u16;
        let init = (addr(r0, "source"), sp);
        let resp = (addr(r0, "destination"), dp);
        let mut conv = Conv { initiator: init, fwd: Counts::default(), rev: Counts::default() };
        for r in &records {
            if (addr(r, "source"), addr(r, "destination")) != (init.0, resp.0) {
                problems.push(format!("flow {id}: records disagree on the endpoints"));
            }
            let n = |k: &str| r[k].as_u64().expect("a counter");
            conv.fwd.packets += n("packetDeltaCount");
            conv.fwd.bytes += n("octetDeltaCount");
            conv.rev.packets += n("reversePacketDeltaCount");
            conv.rev.bytes += n("reverseOctetDeltaCount");
        }
        let key = ConvKey::new(vlan, proto, init, resp);
        let flow = OutpostFlow {
            conv,
            reasons: records
                .iter()
                .map(|r| r["flowEndReason"].as_str().expect("reason").to_string())
                .collect(),
            start_ns: parse_time(&r0["flowStartNanoseconds"]),
            end_ns: records.iter().map(|r| parse_time(&r["flowEndNanoseconds"])).max().unwrap_or(0),
        };
        if flows.insert(key, flow).is_some() {
            problems.push(format!("{key:?}: split into several flowIds (the last is {id})"));
        }
    }
    (flows, problems)
}

/// A truth record's initiator and responder, ICMP ports as port equivalents of its first
/// message.
fn truth_endpoints(t: &FlowTruth) -> (Endpoint, Endpoint) {
    let (ip, rp) = match (t.icmp_type, t.icmp_code) {
        (Some(ty), Some(code)) => icmp_ports(ty, code, t.initiator.is_ipv6()),
        _ => (t.initiator_port, t.responder_port),
    };
    ((t.initiator, ip), (t.responder, rp))
}

/// The truth, keyed like the others (outer VLAN).
fn truth_convs(truth: &[FlowTruth]) -> HashMap<ConvKey, &FlowTruth> {
    let mut map = HashMap::new();
    for t in truth {
        let (init, resp) = truth_endpoints(t);
        let key = ConvKey::new(t.vlans.first().copied().unwrap_or(0), t.proto, init, resp);
        assert!(map.insert(key, t).is_none(), "truth has {key:?} twice");
    }
    map
}

fn truth_conv(t: &FlowTruth) -> Conv {
    Conv {
        initiator: truth_endpoints(t).0,
        fwd: Counts { packets: t.fwd_packets, bytes: t.fwd_bytes },
        rev: Counts { packets: t.rev_packets, bytes: t.rev_bytes },
    }
}

/// Differences between two sets of conversations, as readable lines (at most `limit` listed,
/// all counted), with the truth's kind for context.
fn compare(
    left_name: &str,
    left: &HashMap<ConvKey, Conv>,
    right_name: &str,
    right: &HashMap<ConvKey, Conv>,
    truth: &HashMap<ConvKey, &FlowTruth>,
) -> Vec<String> {
    let kind = |k: &ConvKey| truth.get(k).map_or("?".to_string(), |t| format!("{} #{}", t.kind, t.flow));
    let mut out = Vec::new();
    let mut keys: Vec<&ConvKey> =
        left.keys().chain(right.keys()).collect::<HashSet<_>>().into_iter().collect();
    keys.sort();
    for k in keys {
        match (left.get(k), right.get(k)) {
            (Some(_), None) => out.push(format!("{k:?} ({}): only in {left_name}", kind(k))),
            (None, Some(_)) => out.push(format!("{k:?} ({}): only in {right_name}", kind(k))),
            (Some(l), Some(r)) if l != r => {
                out.push(format!("{k:?} ({}): {left_name} {l:?} vs {right_name} {r:?}", kind(k)));
            }
            _ => {}
        }
    }
    out
}

fn report(title: &str, problems: &[String]) -> String {
    let mut s = format!("{title}: {} discrepancies\n", problems.len());
    for p in problems.iter().take(15) {
        let _ = writeln!(s, "  {p}");
    }
    s
}

/// A generated capture, replayed, with everything the oracle compares.
struct Run {
    truth: Vec<FlowTruth>,
    tshark: TsharkFlows,
    outpost: HashMap<ConvKey, OutpostFlow>,
    outpost_problems: Vec<String>,
    conv_table: ConvTable,
    /// Time of the last packet of the capture.
    last_ns: u64,
}

fn generate_files(dir: &Path, name: &str, params: &MixParams) -> (PathBuf, PathBuf) {
    let pcap = dir.join(format!("{name}.pcap"));
    let truth = dir.join(format!("{name}.truth.jsonl"));
    let out = std::fs::File::create(&pcap).expect("create capture");
    let t = std::fs::File::create(&truth).expect("create truth");
    let summary = generate(params, out, Some(t)).expect("generation succeeds");
    assert_eq!(summary.flows, params.flows);
    (pcap, truth)
}

fn replay_flows(pcap: &Path, dir: &Path, workers: usize) -> PathBuf {
    let flows = dir.join(format!("flows-{workers}.jsonl"));
    let out = Command::new(OUTPOST)
        .arg("replay")
        .arg(pcap)
        .arg("--flows")
        .arg(&flows)
        .args(["--alerts", "/dev/null", "--quiet", "--workers", &workers.to_string()])
        .output()
        .expect("outpost runs");
    assert!(out.status.success(), "outpost replay failed: {}", String::from_utf8_lossy(&out.stderr));
    flows
}

fn oracle_run(dir: &Path, name: &str, params: &MixParams, workers: usize) -> Run {
    require_tshark();
    let (pcap, truth_path) = generate_files(dir, name, params);
    let truth = read_flow_truth_file(&truth_path).expect("truth reads back");
    let flows_path = replay_flows(&pcap, dir, workers);
    let (outpost, outpost_problems) = outpost_flows(&flows_path);
    let tshark = tshark_flows(&pcap);
    let conv_table = tshark_conv_tables(&pcap);
    let last_ns = tshark.times.values().map(|t| t.1).max().unwrap_or(0);
    Run { truth, tshark, outpost, outpost_problems, conv_table, last_ns }
}

/// The mix the oracle runs on by default: every kind, a quarter of clients on IPv6, a fifth
/// behind VLAN tags, some flows long enough for interim records.
fn default_mix(seed: u64) -> MixParams {
    MixParams {
        flows: 3_000,
        concurrency: 64,
        clients: 300,
        ipv6_fraction: 0.25,
        vlan_fraction: 0.2,
        long_fraction: 0.02,
        seed,
        ..MixParams::default()
    }
}

/// A mix heavy in the hard cases — fragments, ICMP errors, resets, half-open connections,
/// IPv6, VLANs — written as pcapng.
fn hard_mix(seed: u64) -> MixParams {
    MixParams {
        flows: 1_500,
        concurrency: 48,
        clients: 200,
        ipv6_fraction: 0.4,
        vlan_fraction: 0.3,
        weights: MixWeights([10, 15, 15, 10, 25, 15, 20]),
        format: OutputFormat::PcapNg,
        seed,
        ..MixParams::default()
    }
}

/// Asserts Outpost = tshark = truth on one run.
fn assert_oracle(run: &Run) {
    let truth = truth_convs(&run.truth);
    let tshark = &run.tshark.convs;
    let outpost: HashMap<ConvKey, Conv> = run.outpost.iter().map(|(k, f)| (*k, f.conv.clone())).collect();
    let truth_c: HashMap<ConvKey, Conv> = truth.iter().map(|(k, t)| (*k, truth_conv(t))).collect();

    // tshark against the generator's truth: the scenario is what it claims to be.
    let generated = compare("tshark", tshark, "truth", &truth_c, &truth);
    assert!(generated.is_empty(), "{}", report("tshark vs truth", &generated));
    for (k, t) in &truth {
        assert_eq!(run.tshark.times.get(k), Some(&(t.first_ns, t.last_ns)), "times of {k:?}");
    }

    // The oracle proper: Outpost against tshark.
    let mut problems = run.outpost_problems.clone();
    problems.extend(compare("outpost", &outpost, "tshark", tshark, &truth));
    assert!(
        problems.is_empty(),
        "{}",
        report(
            &format!("outpost ({} flows) vs tshark ({} conversations)", outpost.len(), tshark.len()),
            &problems
        )
    );
    assert_eq!(outpost.len(), run.truth.len());

    // Outpost's flow times: the start exactly, the end to the microsecond (the table keeps
    // microsecond offsets).
    for (k, f) in &run.outpost {
        let t = truth[k];
        assert_eq!(f.start_ns, t.first_ns, "start of {k:?}");
        assert!(t.last_ns.abs_diff(f.end_ns) < 1_000, "end of {k:?}: {} vs {}", f.end_ns, t.last_ns);
    }
}

/// Cross-checks the per-packet grouping against tshark's own conversation tables.
fn assert_conv_tables_agree(run: &Run) {
    let mut mine: ConvTable = HashMap::new();
    for (k, dirs) in &run.tshark.l4_frames {
        if !matches!(k.proto, 6 | 17) {
            continue;
        }
        let e = mine.entry((k.proto, k.a, k.b)).or_insert([(0, Some(0)), (0, Some(0))]);
        for (slot, (frames, bytes)) in e.iter_mut().zip(dirs) {
            slot.0 += frames;
            slot.1 = slot.1.map(|b| b + bytes);
        }
    }
    assert_eq!(mine.len(), run.conv_table.len(), "TCP + UDP conversations");
    let mut exact_bytes = 0;
    for (k, theirs) in &run.conv_table {
        let ours = mine.get(k).unwrap_or_else(|| panic!("{k:?} only in tshark's conversation table"));
        for d in 0..2 {
            assert_eq!(ours[d].0, theirs[d].0, "frames of {k:?}");
            if let Some(b) = theirs[d].1 {
                assert_eq!(ours[d].1, Some(b), "frame bytes of {k:?}");
                exact_bytes += 1;
            }
        }
    }
    assert!(exact_bytes > run.conv_table.len(), "tshark printed few byte counts exactly: {exact_bytes}");
}

#[test]
fn outpost_flows_equal_tshark_conversations_and_the_truth() {
    check_fields_exist();
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, params) in [("default", default_mix(1)), ("hard", hard_mix(2))] {
        let run = oracle_run(dir.path(), name, &params, 1);
        assert_oracle(&run);
        assert_conv_tables_agree(&run);
        // Coverage: every kind, IPv6, both VLAN forms, fragments of both families.
        for k in FlowKind::ALL {
            assert!(run.truth.iter().any(|t| t.kind == k), "{name}: no {k}");
        }
        let has = |f: &dyn Fn(&FlowTruth) -> bool| run.truth.iter().any(f);
        assert!(has(&|t| t.vlans.len() == 1) && has(&|t| t.vlans.len() == 2), "{name}: VLAN and QinQ");
        assert!(has(&|t| t.fragments > 0 && t.initiator.is_ipv6()), "{name}: IPv6 fragments");
        assert!(has(&|t| t.fragments > 0 && !t.initiator.is_ipv6()), "{name}: IPv4 fragments");
        assert!(has(&|t| t.proto == 58 && t.kind == FlowKind::IcmpEcho), "{name}: ICMPv6 echo");
        eprintln!(
            "{name}: {} packets, {} flows agree (outpost = tshark = truth)",
            run.tshark.packets,
            run.outpost.len()
        );
    }
}

/// The end reason a flow's last record should carry.
fn expected_reasons(t: &FlowTruth) -> &'static [&'static str] {
    match t.kind {
        FlowKind::TcpComplete => &["tcp_fin"],
        FlowKind::TcpReset => &["tcp_rst"],
        _ => &["idle_timeout", "end_of_input"],
    }
}

/// Checks end reasons; returns the flows whose close or reset came within the close linger
/// (2 s) of the end of the input, which are checked separately.
fn check_end_reasons(run: &Run, linger_ns: u64) -> (Vec<String>, Vec<String>) {
    let truth = truth_convs(&run.truth);
    let (mut problems, mut tail) = (Vec::new(), Vec::new());
    for (k, f) in &run.outpost {
        let t = truth[k];
        let (last, interim) = f.reasons.split_last().expect("at least one record");
        if interim.iter().any(|r| r != "active_timeout") {
            problems.push(format!("{} #{}: interim records {:?}", t.kind, t.flow, f.reasons));
        }
        if t.last_ns.saturating_sub(t.first_ns) >= 120_000_000_000 && interim.is_empty() {
            problems.push(format!(
                "{} #{}: lasted over the 120 s active timeout, no interim record",
                t.kind, t.flow
            ));
        }
        if !expected_reasons(t).contains(&last.as_str()) {
            let line = format!("{} #{} ended {last}, expected {:?}", t.kind, t.flow, expected_reasons(t));
            if run.last_ns.saturating_sub(t.last_ns) < linger_ns {
                tail.push(line);
            } else {
                problems.push(line);
            }
        }
    }
    (problems, tail)
}

#[test]
fn end_reasons_follow_how_each_flow_ended() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = oracle_run(dir.path(), "reasons", &default_mix(3), 1);
    let (problems, tail) = check_end_reasons(&run, 2_000_000_000);
    assert!(problems.is_empty(), "{}", report("end reasons", &problems));
    let reasons: HashSet<&str> =
        run.outpost.values().flat_map(|f| f.reasons.iter().map(String::as_str)).collect();
    // (`end_of_input` need not appear: flows still open at the end may all be closing TCP
    // flows, which keep their close reason.)
    for r in ["tcp_fin", "tcp_rst", "idle_timeout", "active_timeout"] {
        assert!(reasons.contains(r), "no {r} record");
    }
    eprintln!(
        "end reasons right for all but {} flows closed within the close linger of the end: {tail:?}",
        tail.len()
    );
}

/// A flow that closed (FIN, FIN, ACK) or was reset less than the close linger before the input
/// ended keeps `end_of_input` today; its end was detected, so `tcp_fin` / `tcp_rst` (IPFIX
/// "end of Flow detected") is what the record should say.
#[test]
fn flows_closed_just_before_the_end_of_input_keep_their_close_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = oracle_run(dir.path(), "tail", &default_mix(3), 1);
    let (problems, tail) = check_end_reasons(&run, 2_000_000_000);
    assert!(problems.is_empty() && tail.is_empty(), "{}", report("end reasons", &[problems, tail].concat()));
}

/// With several workers the pipeline shards frames by source address, so the two directions
/// of a conversation usually meet different workers' flow tables: each direction becomes a
/// flow of its own. Flows must not depend on the worker count.
#[test]
fn outpost_flows_equal_tshark_conversations_with_two_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = oracle_run(dir.path(), "two-workers", &default_mix(4), 2);
    assert_oracle(&run);
}
