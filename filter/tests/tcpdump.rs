//! Outpost filters against tcpdump itself.
//!
//! One generated capture (IPv4/IPv6, TCP with assorted flags, UDP, SCTP, ICMP, ICMPv6, ARP,
//! RARP, non-IP frames, IGMP/PIM/VRRP/AH/ESP, IPv4 options, IPv4 and IPv6 fragments, IPv6
//! extension headers, single and double VLAN tags, frames cut by a snap length), a corpus of
//! hand-written and seeded random expressions, and for every expression the set of packets
//! Outpost selects must equal the set `tcpdump -O -r FILE -w - EXPR` writes (read back by
//! timestamp: packet `i` is stamped `BASE + i` seconds).
//!
//! The oracle is libpcap's unoptimized evaluation (`-O`), the meaning its optimizer must
//! preserve; the optimized answers are collected too and their disagreements printed (libpcap
//! 1.10.3 miscompiles `ip6 src net ::/1 and ip6 net ::/1`, which the corpus includes).
//!
//! Where Outpost deliberately differs (documented in the crate docs), the test compares with
//! the documented *equivalent* instead of skipping:
//! - VLAN-tagged frames: Outpost `E` against tcpdump `vlan and (E)` (one tag) or
//!   `vlan and vlan and (E)` (two tags) when `E` has no `vlan`; expressions whose `vlan`
//!   primitives all come first are compared as written on frames with exactly that many tags
//!   (and everywhere if they have no other primitive).
//! - IPv6 packets with extension headers, and IPv6 first fragments: against tcpdump on a
//!   *twin* packet without the extension / fragment headers, padded to the same length, for
//!   expressions that do not name an extension-header protocol number.
//! - IPv6 TCP / UDP packets: `tcp[…]` / `udp[…]` (IPv4-only in libpcap) are compared with
//!   `ip6[40+…]`.
//! - Frames whose transport header was cut: whatever `tcpdump -O` matches, Outpost must match,
//!   and whatever Outpost matches, `tcpdump -O` must match on the same frame uncut.
//! - RARP frames: only expressions without address primitives.
//!
//! `OUTPOST_FILTER_ORACLE_SEED=n` varies the corpus and the random expressions;
//! `OUTPOST_FILTER_ORACLE_KEEP=path` keeps the capture. The test fails if tcpdump is not
//! installed (`make deps-apt` installs it).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use outpost_decode::{Fragment, LinkType, Nanos, Network, PacketMeta, Transport as MetaTransport, decode};
use outpost_filter::Filter;
use outpost_tools::frame::{FrameBuilder, Transport, icmp, ipv6_ext, tcp, udp};
use outpost_tools::pcap::{PcapWriter, Precision};
use outpost_tools::splitmix::SplitMix64 as Rng;

const BASE_SECS: u64 = 1_600_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Compared with tcpdump on the packet itself.
    Plain,
    /// Compared with tcpdump on the packet at this index (its twin without IPv6 extension
    /// headers).
    Twin(usize),
    /// RARP: Outpost does not decode its addresses (a documented difference), so compared
    /// only for expressions without address primitives.
    Rarp,
    /// Cut by a snap length inside / right after its IP header; the packet at this index is
    /// the same frame uncut.
    Truncated(usize),
}

struct Packet {
    frame: Vec<u8>,
    wire_len: u32,
    kind: Kind,
    what: String,
}

const V4: &[&str] = &[
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.5",
    "10.1.2.3",
    "10.200.0.9",
    "192.168.1.10",
    "192.168.1.20",
    "172.16.5.4",
    "8.8.8.8",
    "1.2.3.4",
];
const V6: &[&str] = &[
    "2001:db8::1",
    "2001:db8::2",
    "2001:db8:1::5",
    "2001:db8:ffff::9",
    "fe80::1",
    "::ffff:10.0.0.1",
    "ff02::16",
];
const PORTS: &[u16] = &[0, 22, 53, 80, 443, 1024, 1500, 2000, 2905, 8080, 12345, 65535];
const FLAGS: &[u16] = &[0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x00, 0xff, 0xc2, 0x30, 0x14, 0x01];
const VLANS: &[u16] = &[100, 200, 10, 20, 4095, 0];
const ICMP4: &[(u8, u8)] = &[(8, 0), (0, 0), (3, 3), (3, 1), (11, 0), (5, 1), (13, 0)];
const ICMP6: &[(u8, u8)] = &[(128, 0), (129, 0), (135, 0), (136, 0), (1, 4), (143, 0), (2, 0)];

fn addr(s: &str) -> IpAddr {
    s.parse().expect("corpus address")
}

fn random_builder(r: &mut Rng, v6: bool) -> FrameBuilder {
    let pool = if v6 { V6 } else { V4 };
    let src = r.pick(pool);
    let mut dst = r.pick(pool);
    if dst == src {
        dst = pool[(pool.iter().position(|a| *a == src).expect("src is in its pool") + 1) % pool.len()];
    }
    let port = |r: &mut Rng| if r.chance(70) { r.pick(PORTS) } else { 1024 + r.below_usize(60000) as u16 };
    let kind = r.below_usize(10);
    let mut payload: Vec<u8> = (0..r.below_usize(48)).map(|i| i as u8).collect();
    let transport = match kind {
        0..=3 => tcp(port(r), port(r), r.pick(FLAGS), r.next_u64() as u32, r.next_u64() as u32),
        4..=6 => udp(port(r), port(r)),
        7 => {
            let (ty, code) = if v6 { r.pick(ICMP6) } else { r.pick(ICMP4) };
            icmp(ty, code, 0x1234_0001)
        }
        8 => {
            // SCTP common header (ports, verification tag, checksum) in the payload.
            let mut h = Vec::new();
            h.extend_from_slice(&port(r).to_be_bytes());
            h.extend_from_slice(&port(r).to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
            h.extend_from_slice(&payload);
            payload = h;
            Transport::Raw(132)
        }
        _ => Transport::Raw(r.pick(&[47, 50, 89])),
    };
    let mut b = FrameBuilder::new(addr(src), addr(dst), transport).payload(&payload);
    b = match r.below_usize(100) {
        0..=59 => b,
        60..=84 => b.vlans(&[r.pick(VLANS)]),
        _ => b.vlans(&[r.pick(VLANS), r.pick(VLANS)]),
    };
    if !v6 && r.chance(12) {
        b.ipv4_options = if r.chance(50) { vec![1, 1, 1, 1] } else { vec![148, 4, 0, 0] };
    }
    b.ttl = r.pick(&[1, 64, 128, 255]);
    b
}

fn decode_frame(frame: &[u8], wire_len: u32) -> PacketMeta {
    decode(LinkType::Ethernet, frame, Nanos(0), wire_len)
        .unwrap_or_else(|e| panic!("corpus frame fails to decode: {e}"))
}

/// The twin of an IPv6 packet: no extension headers, payload padded with zeros so the frame
/// has the same length as `orig` (so `len`, `greater` and `less` agree too).
fn twin(b: &FrameBuilder, orig: &[u8], keep_payload: usize) -> Vec<u8> {
    let mut t = b.clone();
    t.ipv6_ext.clear();
    t.payload.truncate(keep_payload);
    let base = t.build().len();
    assert!(orig.len() >= base, "twin longer than the original");
    t.payload.extend(std::iter::repeat_n(0u8, orig.len() - base));
    let f = t.build();
    assert_eq!(f.len(), orig.len());
    f
}

/// Seeds of the corpus and the random expressions; `OUTPOST_FILTER_ORACLE_SEED` overrides
/// them to explore further (the default keeps every run identical).
fn seed(default: u64) -> u64 {
    std::env::var("OUTPOST_FILTER_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(default, |s| s ^ default)
}

fn corpus() -> Vec<Packet> {
    let mut r = Rng(seed(0x0075_7470_6f73_7421));
    let mut pkts: Vec<Packet> = Vec::new();
    let push = |pkts: &mut Vec<Packet>, frame: Vec<u8>, wire_len: u32, kind: Kind, what: String| {
        pkts.push(Packet { frame, wire_len, kind, what });
        pkts.len() - 1
    };

    // Plain packets of every kind.
    for i in 0..320 {
        let b = random_builder(&mut r, i % 3 == 0);
        let f = b.build();
        let len = f.len() as u32;
        push(&mut pkts, f, len, Kind::Plain, format!("{:?} vlans {:?}", b.transport, b.vlans));
    }

    // IPv6 with extension headers, each with a twin.
    for i in 0..60 {
        let mut b = random_builder(&mut r, true);
        let exts: &[u8] = match i % 5 {
            0 | 1 => &[ipv6_ext::HOP_BY_HOP],
            2 => &[ipv6_ext::DEST_OPTS],
            3 => &[ipv6_ext::ROUTING],
            _ => &[ipv6_ext::HOP_BY_HOP, ipv6_ext::DEST_OPTS],
        };
        for &e in exts {
            let body = if e == ipv6_ext::ROUTING { vec![0, 0, 0, 0, 0, 0] } else { vec![] };
            b.ipv6_ext.push((e, body));
        }
        if i % 7 == 0 {
            // MLDv2 report behind hop-by-hop, the case tcpdump's `icmp6` misses.
            b.transport = icmp(143, 0, 0);
        }
        let f = b.build();
        let t = twin(&b, &f, b.payload.len());
        let len = f.len() as u32;
        let ti = push(&mut pkts, t, len, Kind::Plain, "twin".into());
        push(&mut pkts, f, len, Kind::Twin(ti), format!("ipv6 ext {exts:?} {:?}", b.transport));
    }

    // IPv4 fragments (first and later), IPv6 fragments (first: twin; later: as is).
    for i in 0..30 {
        let v6 = i % 2 == 1;
        let mut b = random_builder(&mut r, v6);
        if matches!(b.transport, Transport::Raw(p) if p != 132) {
            b.transport = udp(53, 5353);
        }
        let extra: Vec<u8> = (0..40 + r.below_usize(40)).map(|i| i as u8).collect();
        b.payload.extend_from_slice(&extra);
        b.ip_id = 0x4242 + i as u16;
        let frags = b.fragments(24 + 8 * r.below_usize(3));
        for (k, f) in frags.into_iter().enumerate() {
            let len = f.len() as u32;
            let what = format!("frag {k} v6={v6} {:?}", b.transport);
            if v6 && k == 0 {
                let header = b.transport.header_len();
                let meta = decode_frame(&f, len);
                assert_eq!(meta.fragment, Fragment::First);
                // Transport header + the payload bytes this fragment carries.
                let carried = f.len() - usize::from(meta.l4_offset) - header;
                let t = twin(&b, &f, carried.min(b.payload.len()));
                let ti = push(&mut pkts, t, len, Kind::Plain, "twin of first fragment".into());
                push(&mut pkts, f, len, Kind::Twin(ti), what);
            } else {
                push(&mut pkts, f, len, Kind::Plain, what);
            }
        }
    }

    // ARP (plain and tagged), RARP, LLDP, IEEE 802.3.
    for (op, s, t, vlans) in [
        (1u16, "10.0.0.5", [10, 0, 0, 1], &[][..]),
        (2, "10.0.0.1", [10, 0, 0, 5], &[][..]),
        (1, "192.168.1.10", [192, 168, 1, 20], &[100][..]),
        (1, "172.16.5.4", [172, 16, 5, 1], &[100, 200][..]),
        (1, "10.0.0.2", [10, 0, 0, 2], &[][..]),
    ] {
        let mut b = FrameBuilder::new(addr(s), addr("10.0.0.1"), udp(0, 0)).vlans(vlans);
        b.dst_mac = [0xff; 6];
        let mut f = Vec::new();
        assert!(b.write_arp_to(&mut f, op, t));
        let len = f.len() as u32;
        push(&mut pkts, f, len, Kind::Plain, format!("arp op {op} {s} -> {t:?} vlans {vlans:?}"));
    }
    let mut rarp = vec![0xff; 6];
    rarp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3]);
    rarp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 203, 0, 113, 1, 2, 0, 0, 0, 0, 9, 203, 0, 113, 9]);
    let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 9, 0x88, 0xcc];
    lldp.extend_from_slice(&[0; 30]);
    let mut llc = vec![0x01, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 9, 0, 38, 0x42, 0x42, 0x03];
    llc.extend_from_slice(&[0; 35]);
    for (f, what) in [(rarp, "rarp"), (lldp, "lldp"), (llc, "802.3 llc")] {
        let len = f.len() as u32;
        let kind = if what == "rarp" { Kind::Rarp } else { Kind::Plain };
        push(&mut pkts, f, len, kind, what.into());
    }

    // Protocols only named by abbreviations: IGMP, PIM, VRRP, AH (IPv4), ESP (IPv6).
    for (src, dst, proto) in [
        ("10.0.0.1", "224.0.0.22", 2u8),
        ("10.0.0.2", "224.0.0.13", 103),
        ("2001:db8::1", "ff02::d", 103),
        ("192.168.1.10", "224.0.0.18", 112),
        ("10.0.0.5", "10.0.0.1", 51),
        ("2001:db8::2", "2001:db8::1", 50),
    ] {
        let f = FrameBuilder::new(addr(src), addr(dst), Transport::Raw(proto)).payload(&[0; 16]).build();
        let len = f.len() as u32;
        push(&mut pkts, f, len, Kind::Plain, format!("protocol {proto}"));
    }

    // Frames cut by a snap length right after the IP header: the transport header is missing.
    let mut cut = 0;
    while cut < 24 {
        let v6 = r.chance(40);
        let b = random_builder(&mut r, v6);
        let f = b.build();
        let meta = decode_frame(&f, f.len() as u32);
        if meta.transport != MetaTransport::Parsed {
            continue;
        }
        // Mostly right after the IP header; sometimes one byte into a TCP/UDP/SCTP header
        // (too little for a port, so libpcap cannot read one either; one byte of ICMP would
        // be its type, which Outpost does not decode from a partial header — documented).
        let partial = cut % 4 == 3 && !matches!(b.transport, Transport::Icmp { .. });
        let at = usize::from(meta.l4_offset) + usize::from(partial);
        let data = f[..at].to_vec();
        let cut_meta = decode_frame(&data, f.len() as u32);
        assert_eq!(cut_meta.transport, MetaTransport::Truncated);
        let len = f.len() as u32;
        let what = format!("{:?} vlans {:?}", b.transport, b.vlans);
        let full = push(&mut pkts, f, len, Kind::Plain, format!("uncut {what}"));
        push(&mut pkts, data, len, Kind::Truncated(full), format!("truncated {what}"));
        cut += 1;
    }
    pkts
}

fn write_pcap(pkts: &[Packet], path: &Path) {
    let file = std::fs::File::create(path).expect("creates the corpus pcap");
    let mut w = PcapWriter::new(file, LinkType::Ethernet, Precision::Micro).expect("writes the corpus pcap");
    for (i, p) in pkts.iter().enumerate() {
        w.write_packet(Nanos::from_secs(BASE_SECS + i as u64), &p.frame, p.wire_len)
            .expect("writes the corpus pcap");
    }
    w.finish().expect("writes the corpus pcap");
}

/// Indices of the packets in a little-endian microsecond pcap written by tcpdump.
fn read_indices(bytes: &[u8]) -> HashSet<usize> {
    assert!(bytes.len() >= 24, "tcpdump wrote no pcap header");
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("four bytes"));
    assert_eq!(u32_at(0), 0xa1b2_c3d4, "unexpected pcap magic from tcpdump");
    let mut set = HashSet::new();
    let mut o = 24;
    while o + 16 <= bytes.len() {
        let secs = u64::from(u32_at(o));
        let caplen = u32_at(o + 8) as usize;
        set.insert((secs - BASE_SECS) as usize);
        o += 16 + caplen;
    }
    set
}

/// Runs tcpdump, with libpcap's optimizer or without (`-O`); `Err` with its message if it
/// refuses the expression.
fn tcpdump(pcap: &Path, expr: &str, optimize: bool) -> Result<HashSet<usize>, String> {
    let out = Command::new("tcpdump")
        .args(if optimize { &[][..] } else { &["-O"][..] })
        .arg("-n")
        .arg("-r")
        .arg(pcap)
        .args(["-w", "-"])
        .arg(expr)
        .output()
        .map_err(|e| format!("cannot run tcpdump: {e}"))?;
    if out.status.success() {
        return Ok(read_indices(&out.stdout));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("expression rejects all packets") {
        return Ok(HashSet::new());
    }
    Err(format!("tcpdump refused `{expr}`: {}", stderr.trim()))
}

fn require_tcpdump() {
    match Command::new("tcpdump").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("`tcpdump --version` failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!(
            "tcpdump is not installed ({e}): this test compares Outpost filters with tcpdump; \
             install it (`make deps-apt`, or `apt-get install tcpdump`)"
        ),
    }
}

/// Words of an expression with parentheses and `!` split off.
fn words(expr: &str) -> Vec<String> {
    expr.replace('(', " ( ")
        .replace(')', " ) ")
        .replace("!=", " NE ")
        .replace('!', " ! ")
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `(number of vlan primitives, all of them before any other primitive, no other primitive)`.
fn vlan_shape(expr: &str) -> (usize, bool, bool) {
    let w = words(expr);
    let (mut vlans, mut other_seen, mut vlan_after_other) = (0, false, false);
    let mut i = 0;
    while i < w.len() {
        match w[i].as_str() {
            "vlan" => {
                vlans += 1;
                vlan_after_other |= other_seen;
                if w.get(i + 1).is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())) {
                    i += 1;
                }
            }
            "and" | "or" | "not" | "&&" | "||" | "!" | "(" | ")" => {}
            _ => other_seen = true,
        }
        i += 1;
    }
    (vlans, !vlan_after_other, !other_seen)
}

/// True when the expression may name an IPv6 extension-header protocol, whose answer on a
/// packet with extension headers is not its twin's.
fn names_extension_protocol(expr: &str) -> bool {
    let w = words(expr);
    w.iter().any(|x| x == "ah" || x == "\\ah")
        || (expr.contains("proto") && w.iter().any(|x| matches!(x.as_str(), "0" | "43" | "44" | "51" | "60")))
}

/// The tcpdump expression and packet whose answer Outpost's `expr` on packet `i` must equal,
/// or `None` when no documented equivalent exists.
fn reference(expr: &str, i: usize, pkts: &[Packet], metas: &[PacketMeta]) -> Option<(String, usize)> {
    let r = match pkts[i].kind {
        Kind::Plain | Kind::Truncated(_) => i,
        Kind::Rarp => {
            if words(expr).iter().any(|w| matches!(w.as_str(), "host" | "net" | "src" | "dst")) {
                return None;
            }
            i
        }
        Kind::Twin(t) => {
            if names_extension_protocol(expr) {
                return None;
            }
            t
        }
    };
    let m = &metas[r];
    let mut e = expr.to_string();
    let plain_v6 = m.network == Network::Ipv6 && !m.ip_options && m.fragment == Fragment::None;
    if plain_v6 && m.ip_proto == 6 {
        e = e.replace("tcp[", "ip6[40+");
    }
    if plain_v6 && m.ip_proto == 17 {
        e = e.replace("udp[", "ip6[40+");
    }
    let tags = usize::from(m.vlan_count);
    let (vlans, vlans_first, only_vlans) = vlan_shape(expr);
    if vlans == 0 {
        if tags > 0 {
            let prefix = vec!["vlan"; tags].join(" and ");
            e = if e.trim().is_empty() { prefix } else { format!("{prefix} and ({e})") };
        }
    } else if !(only_vlans || (vlans_first && vlans == tags)) {
        return None;
    }
    Some((e, r))
}

const HAND_WRITTEN: &[&str] = &[
    "",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "arp[6:2] = 1",
    "arp[6:2] == 2 and src host 10.0.0.1",
    "arp[6:2] != 1 or icmp6",
    "(arp[6:2] = 1 and not src host 0.0.0.0) or (icmp6[icmp6type] == icmp6-neighborsolicit and not src host ::)",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "sctp",
    "esp",
    "ah",
    "igmp",
    "pim",
    "vrrp",
    "not ip",
    "!tcp",
    "not not udp",
    "host 10.0.0.1",
    "src host 10.0.0.1",
    "dst host 10.0.0.2",
    "src and dst net 10.0.0.0/8",
    "src or dst host 192.168.1.10",
    "dst or src host 192.168.1.10",
    "ip host 10.0.0.1",
    "arp host 10.0.0.1",
    "arp src host 10.0.0.5",
    "arp dst host 10.0.0.1",
    "src 10.0.0.1 or dst 10.0.0.5",
    "host 2001:db8::1",
    "ip6 host 2001:db8::2",
    "src host 2001:db8:1::5",
    "host ::ffff:10.0.0.1",
    "ip6 dst host fe80::1",
    "net 10.0.0.0/8",
    "net 10",
    "net 192.168.1",
    "net 10.1/16",
    "dst net 192.168.0.0/16",
    "src net 172.16.0.0/12",
    "net 10.0.0.0 mask 255.0.0.0",
    "net 10.0.0.0 mask 255.0.255.0",
    "ip net 10.0.0.0/8",
    "arp net 10.0.0.0/24",
    "net 2001:db8::/32",
    "ip6 net 2001:db8:1::/48",
    "src net 2001:db8::/32 and dst net 2001:db8::/32",
    "net 0.0.0.0/0",
    "net ::/0",
    "net 10.0.0.1",
    "net ff00::/8",
    "port 80",
    "port 53",
    "port 0",
    "src port 443",
    "dst port 22",
    "tcp port 80",
    "udp port 53",
    "sctp port 2905",
    "tcp src port 1024",
    "udp dst port 53",
    "src or dst port 8080",
    "src and dst port 53",
    "port 0x50",
    "tcp dst port 80 or 443",
    "port 80 or 443 or 22",
    "portrange 1000-2000",
    "tcp src portrange 1000-2000",
    "udp portrange 50-60",
    "portrange 2000-1000",
    "dst portrange 0-1023",
    "portrange 1024-65535 and tcp",
    "ip proto 6",
    "ip proto 17 or 1",
    "ip6 proto 58",
    "proto 6",
    "ip proto \\tcp",
    "ip proto \\udp or \\icmp",
    "ip6 proto 0",
    "ip6 proto 44",
    "ip6 proto 60",
    "proto 47",
    "ip proto 50",
    "proto 89 or 132",
    "vlan",
    "vlan 100",
    "vlan 200",
    "vlan 0",
    "vlan and vlan",
    "vlan 100 and vlan 200",
    "vlan 10 or vlan 20",
    "vlan and ip",
    "vlan 100 and tcp",
    "vlan and vlan and udp port 53",
    "not vlan",
    "vlan 100 and not vlan",
    "vlan and not vlan and host 10.0.0.1",
    "vlan 4095 or ip6",
    "ip and vlan",
    "greater 100",
    "less 60",
    "len > 80",
    "len <= 74",
    "len - 14 > 50",
    "len % 7 * 2 > 3",
    "len & 0xf = 2",
    "len / 3 > 30 and len * 2 < 150",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp[13] & 2 != 0",
    "tcp[13] = 0x12",
    "tcp[13] & tcp-rst != 0 or tcp[13] & tcp-fin != 0",
    "tcp[tcpflags] & (tcp-ece|tcp-cwr) != 0",
    "tcp[13] & 0x3f = 0",
    "tcp[13] > 16",
    "tcp[13] <= 2",
    "tcp[13] < 0x10",
    "tcp[13] >= 0x11",
    "not tcp[13] & 2 != 0",
    "tcp[13:1] & tcp-push != 0",
    "tcp[0:2] = 80 or tcp[2:2] = 80",
    "tcp[14:2] = 64240",
    "tcp[13] + 1 = 3",
    "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack = 0",
    "udp[2:2] = 53",
    "udp[0:2] > 1023",
    "icmp[icmptype] == icmp-echo",
    "icmp[icmptype] = icmp-echoreply",
    "icmp[0] = icmp-unreach and icmp[1] = 3",
    "icmp[icmpcode] != 0",
    "icmp[0:2] = 0x0303",
    "icmp6[icmp6type] = icmp6-echo",
    "icmp6[0] = icmp6-neighborsolicit",
    "icmp6[icmp6type] == icmp6-multicastlistenerreportv2",
    "icmp6[1] = 4",
    "icmp6[0:2] = 0x8100",
    "tcp or udp and port 53",
    "tcp or (udp and port 53)",
    "not tcp and not udp",
    "not (tcp or udp)",
    "! tcp || udp && port 53",
    "host 10.0.0.1 and port 80 or 443",
    "host 10.0.0.1 and (port 80 or 443)",
    "host 10.0.0.1 or 10.0.0.2 and tcp",
    "host 10.0.0.1 and not 10.0.0.2",
    "host 10.0.0.1 and (10.0.0.2 or 192.168.1.10)",
    "src host 10.0.0.1 or 10.0.0.2",
    "port 80 and (tcp) or 443",
    "port 80 or (443 or not 8080)",
    "net 10.0.0.0/8 or 192.168.0.0/16 and not port 22",
    "ip and not tcp and not udp",
    "ip6 and not icmp6",
    "(tcp[13] & 2) != 0 and dst port 80",
    "arp or icmp",
    "not arp and not ip and not ip6",
    "tcp and not port 80 and not port 443",
    "udp and port 53 and (host 8.8.8.8 or host 2001:db8::1)",
    "((tcp))",
    "not port 80",
    "port 80 or not port 443",
    "tcp or not port 80",
    "not port 80 or tcp",
    "ip and len > 100 or ip6 and len < 100",
    "1 = 1",
    "8 - 6 % 4 = 6",
    "2 ^ 3 & 1 = 3",
    "not icmp[0] = 8",
    "host 10.0.0.1 or not icmp[0] = 8",
    "port 80 or tcp",
    "port 80 or host 10.0.0.1",
    "host 10.0.0.1 or port 80",
    "tcp[13] & 2 != 0 or udp",
    "tcp[13] & 2 != 0 or not tcp",
    "not tcp[13] & 2 != 0 and tcp",
    "port 80 or port 443 or tcp",
    "port 80 and tcp or udp",
    "udp[2:2] = 53 or ip6",
    "tcp[13] & 2 != 0 or port 80",
    "not dst port 80 or 80",
    "ip6 src net ::/1 and ip6 net ::/1",
];

/// A random primitive from a small grammar covering every primitive and qualifier.
fn random_primitive(r: &mut Rng) -> String {
    let v4 = |r: &mut Rng| r.pick(V4).to_string();
    let v6 = |r: &mut Rng| r.pick(&V6[..5]).to_string();
    let dir = |r: &mut Rng| r.pick(&["", "src ", "dst ", "src or dst ", "src and dst "]).to_string();
    let port = |r: &mut Rng| r.pick(PORTS).to_string();
    match r.below_usize(16) {
        0 => r.pick(&["ip", "ip6", "arp", "tcp", "udp", "icmp", "icmp6", "sctp", "esp", "rarp"]).to_string(),
        1 => format!("{}{}host {}", r.pick(&["", "ip "]), dir(r), v4(r)),
        2 => format!("{}{}host {}", r.pick(&["", "ip6 "]), dir(r), v6(r)),
        3 => format!(
            "{}{}net {}",
            r.pick(&["", "ip ", "arp "]),
            dir(r),
            r.pick(&[
                "10.0.0.0/8",
                "10.0.0.0/30",
                "192.168.1.0/24",
                "172.16.0.0/16",
                "10.1",
                "8.8.8.8/32",
                "0.0.0.0/1"
            ])
        ),
        4 => format!("{}net {}", dir(r), r.pick(&["2001:db8::/32", "2001:db8:1::/48", "fe80::/10", "::/1"])),
        5 => format!("{}{}port {}", r.pick(&["", "tcp ", "udp ", "sctp "]), dir(r), port(r)),
        6 => {
            let a = r.below_usize(3000);
            let b = a + r.below_usize(20000);
            format!("{}{}portrange {a}-{b}", r.pick(&["", "tcp ", "udp "]), dir(r))
        }
        7 => format!(
            "{} {}",
            r.pick(&["ip proto", "ip6 proto", "proto"]),
            r.pick(&[1, 6, 17, 47, 50, 58, 89, 132])
        ),
        8 => format!("{} {}", r.pick(&["greater", "less"]), 50 + r.below_usize(80)),
        9 => format!(
            "tcp[tcpflags] & {} {} {}",
            r.pick(&["tcp-syn", "tcp-ack", "(tcp-syn|tcp-ack)", "tcp-fin", "tcp-rst", "0xc0", "tcp-push"]),
            r.pick(&["!=", "=", ">"]),
            r.pick(&["0", "2", "0x10", "0x12"])
        ),
        10 => format!(
            "icmp[icmptype] {} {}",
            r.pick(&["=", "!="]),
            r.pick(&["icmp-echo", "icmp-echoreply", "icmp-unreach", "11"])
        ),
        11 => format!("icmp6[0] {} {}", r.pick(&["=", ">"]), r.pick(&["128", "129", "135", "icmp6-echo"])),
        12 => format!("{}port {} or {}", dir(r), port(r), port(r)),
        13 => format!("host {} or not {}", v4(r), v4(r)),
        14 => format!("len {} {}", r.pick(&["<", ">=", "="]), 54 + r.below_usize(60)),
        _ => format!("udp[{}] = {}", r.pick(&["0:2", "2:2"]), port(r)),
    }
}

fn random_expr(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.chance(30) {
        return random_primitive(r);
    }
    match r.below_usize(5) {
        0 | 1 => format!("{} and {}", random_expr(r, depth - 1), random_expr(r, depth - 1)),
        2 => format!("{} or {}", random_expr(r, depth - 1), random_expr(r, depth - 1)),
        3 => format!("not {}", random_expr(r, depth - 1)),
        _ => format!("({})", random_expr(r, depth - 1)),
    }
}

fn expressions() -> Vec<String> {
    let mut all: Vec<String> = HAND_WRITTEN.iter().map(|s| s.to_string()).collect();
    let mut r = Rng(seed(0x6669_6c74_6572));
    for i in 0..160 {
        let e = random_expr(&mut r, 3);
        let e = match i % 10 {
            0 => format!("vlan and ({e})"),
            1 => format!("vlan {} and {e}", r.pick(VLANS)),
            2 => format!("vlan and vlan {} and ({e})", r.pick(VLANS)),
            _ => e,
        };
        all.push(e);
    }
    all
}

#[test]
fn outpost_filters_select_what_tcpdump_selects() {
    require_tcpdump();
    let pkts = corpus();
    let metas: Vec<PacketMeta> = pkts.iter().map(|p| decode_frame(&p.frame, p.wire_len)).collect();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("corpus.pcap");
    write_pcap(&pkts, &pcap);
    if let Ok(keep) = std::env::var("OUTPOST_FILTER_ORACLE_KEEP") {
        std::fs::copy(&pcap, &keep).unwrap();
    }

    let exprs = expressions();
    let filters: Vec<Filter> = exprs
        .iter()
        .map(|e| Filter::parse(e).unwrap_or_else(|err| panic!("Outpost rejects corpus expression:\n{err}")))
        .collect();

    // Which tcpdump expression answers for which packet.
    let mut plan: Vec<Vec<Option<(String, usize)>>> = Vec::new();
    let mut needed: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for e in &exprs {
        let row: Vec<_> = (0..pkts.len()).map(|i| reference(e, i, &pkts, &metas)).collect();
        for (v, _) in row.iter().flatten() {
            if seen.insert(v.clone()) {
                needed.push(v.clone());
            }
        }
        plan.push(row);
    }

    // Run tcpdump once per distinct expression, unoptimized (the oracle) and optimized (what
    // users run by default, for the report), on a few threads.
    let threads = 4;
    let jobs: Vec<(&String, bool)> = needed.iter().flat_map(|v| [(v, false), (v, true)]).collect();
    let results: HashMap<(String, bool), Result<HashSet<usize>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let jobs = &jobs;
                let pcap = &pcap;
                s.spawn(move || {
                    jobs.iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|&(v, opt)| ((v.clone(), opt), tcpdump(pcap, v, opt)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let answer = |v: &String, r: usize, optimize: bool| -> Result<bool, String> {
        results[&(v.clone(), optimize)].as_ref().map(|set| set.contains(&r)).map_err(Clone::clone)
    };

    let mut failures = Vec::new();
    let mut cut_only_outpost = 0usize;
    let mut optimizer_disagrees = Vec::new();
    let (mut compared, mut excluded, mut matched) = (0usize, 0usize, 0usize);
    let mut never_true = Vec::new();
    for ((e, f), row) in exprs.iter().zip(&filters).zip(&plan) {
        let mut hits = 0;
        for (i, reference) in row.iter().enumerate() {
            let outpost = f.matches(&metas[i]);
            hits += usize::from(outpost);
            let Some((v, r)) = reference else {
                excluded += 1;
                continue;
            };
            let (theirs, optimized) = match (answer(v, *r, false), answer(v, *r, true)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(msg), _) | (_, Err(msg)) => {
                    failures.push(msg);
                    break;
                }
            };
            compared += 1;
            let what = &pkts[i].what;
            if let Kind::Truncated(full) = pkts[i].kind {
                // A cut header: Outpost matches when the expression is true whatever the
                // missing bytes hold. libpcap's reference evaluation rejects as soon as it
                // reads a missing byte, so it may only match less; and whatever Outpost
                // matches, the uncut packet must match.
                let (fv, fr) = row[full].clone().expect("the uncut packet has a reference");
                let uncut = match answer(&fv, fr, false) {
                    Ok(a) => a,
                    Err(msg) => {
                        failures.push(msg);
                        break;
                    }
                };
                if theirs && !outpost {
                    failures.push(format!(
                        "`{e}` on packet {i} ({what}): tcpdump -O `{v}` matches, Outpost does not"
                    ));
                } else if outpost && !uncut {
                    failures.push(format!(
                        "`{e}` on packet {i} ({what}): Outpost matches the cut packet, tcpdump -O `{fv}` does not \
                         match it uncut (packet {fr})"
                    ));
                }
                cut_only_outpost += usize::from(outpost && !theirs);
            } else if outpost != theirs {
                failures.push(format!(
                    "`{e}` on packet {i} ({what}): Outpost {outpost}, tcpdump -O `{v}` on packet {r}: {theirs}"
                ));
            } else if optimized != theirs {
                optimizer_disagrees
                    .push(format!("`{v}` on packet {r} ({what}): optimized {optimized}, -O {theirs}"));
            }
        }
        matched += usize::from(hits > 0);
        if hits == 0 {
            never_true.push(e.as_str());
        }
    }
    optimizer_disagrees.dedup();
    eprintln!(
        "{} expressions ({} hand-written), {} packets, {} tcpdump runs: {compared} comparisons, \
         {excluded} excluded (no documented equivalent); {matched} expressions match at least one \
         packet; never true: {never_true:?}; cut packets matched by Outpost but not tcpdump -O: \
         {cut_only_outpost}; complete packets where libpcap's optimizer changes the answer: \
         {optimizer_disagrees:#?}",
        exprs.len(),
        HAND_WRITTEN.len(),
        pkts.len(),
        jobs.len()
    );
    failures.dedup();
    assert!(
        failures.is_empty(),
        "{} disagreements with tcpdump, first ones:\n{}",
        failures.len(),
        failures.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    // The corpus must exercise both answers for most expressions.
    assert!(matched * 10 >= exprs.len() * 8, "too many expressions match nothing: {never_true:?}");
}
