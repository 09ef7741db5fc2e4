//! The XDP program on the real kernel: verdicts and counters through `BPF_PROG_TEST_RUN`
//! (no NIC needed), and attach / detach on a veth pair inside a throwaway network namespace.
//!
//! Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON + CAP_NET_RAW); without it every test
//! prints why it is skipped and passes. Frames are built by hand below, byte by byte, so the
//! tests show exactly what the program is given.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsFd as _, AsRawFd as _},
    process::Command,
};

use outpost_capture::xdp::{
    XdpAttach, XdpAttachment, XdpCounters, XdpError, XdpMode, XdpProgram, XdpSetup, detach_stale,
};
use outpost_tools::netns::Netns;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Skips the test (passing) unless we may load BPF programs.
macro_rules! require_root {
    () => {
        if !outpost_tools::netns::is_root() {
            eprintln!("skipped: loading XDP programs needs root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)");
            return;
        }
    };
}

// ---- frame builders ---------------------------------------------------------------------

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    vlan_ethernet(&[], ethertype, payload)
}

/// An Ethernet frame with the given VLAN tags (TPID, VLAN id), outermost first.
fn vlan_ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    for &(tpid, vid) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// An IPv4 header (no options) with `fragment` as the flags + fragment offset field.
fn ipv4_with_fragment(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, fragment: u16, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("small packet");
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34]);
    packet.extend_from_slice(&fragment.to_be_bytes());
    packet.extend_from_slice(&[64, protocol, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with_fragment(src, dst, protocol, 0x4000, payload) // DF, offset 0
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&u16::try_from(payload.len()).expect("small packet").to_be_bytes());
    packet.extend_from_slice(&[next_header, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

fn tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&src_port.to_be_bytes());
    header.extend_from_slice(&dst_port.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    header
}

fn udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&src_port.to_be_bytes());
    header.extend_from_slice(&dst_port.to_be_bytes());
    header.extend_from_slice(&[0, 8, 0, 0]);
    header
}

fn tcp4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV4, &ipv4(src.into(), dst.into(), TCP, &tcp(src_port, dst_port)))
}

fn udp4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV4, &ipv4(src.into(), dst.into(), UDP, &udp(src_port, dst_port)))
}

fn tcp6(src: &str, dst: &str, src_port: u16, dst_port: u16) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV6, &ipv6(v6(src), v6(dst), TCP, &tcp(src_port, dst_port)))
}

fn udp6(src: &str, dst: &str, src_port: u16, dst_port: u16) -> Vec<u8> {
    ethernet(ETHERTYPE_IPV6, &ipv6(v6(src), v6(dst), UDP, &udp(src_port, dst_port)))
}

/// An ARP request for IPv4 over Ethernet from `sender` about `target`.
fn arp(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    vlan_arp(&[], sender, target)
}

/// [`arp`] with VLAN tags (TPID, VLAN id), outermost first.
fn vlan_arp(tags: &[(u16, u16)], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut payload = vec![0, 1, 8, 0, 6, 4, 0, 1];
    payload.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    payload.extend_from_slice(&sender);
    payload.extend_from_slice(&[0; 6]);
    payload.extend_from_slice(&target);
    vlan_ethernet(tags, ETHERTYPE_ARP, &payload)
}

fn v6(text: &str) -> Ipv6Addr {
    text.parse().expect("test IPv6 address")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP address")
}

// ---- helpers ----------------------------------------------------------------------------

fn load(setup: &XdpSetup) -> XdpProgram {
    match XdpProgram::load(setup) {
        Ok(program) => program,
        Err(err) => panic!("loading the XDP program failed: {err}"),
    }
}

/// Runs `frame` and returns the verdict with the counter changes it caused.
fn run(program: &XdpProgram, frame: &[u8]) -> (u32, XdpCounters) {
    let before = program.counters().expect("counters");
    let action = program.test_run(frame).expect("test run");
    let after = program.counters().expect("counters");
    (action, after.since(&before))
}

fn counted(f: impl FnOnce(&mut XdpCounters)) -> XdpCounters {
    let mut counters = XdpCounters { seen: 1, ..XdpCounters::default() };
    f(&mut counters);
    counters
}

fn no_socket() -> XdpCounters {
    counted(|c| c.no_socket = 1)
}

fn blocked() -> XdpCounters {
    counted(|c| c.blocked = 1)
}

fn passed_filter() -> XdpCounters {
    counted(|c| c.passed_filter = 1)
}

fn passed_not_ip() -> XdpCounters {
    counted(|c| c.passed_not_ip = 1)
}

fn truncated_no_socket() -> XdpCounters {
    counted(|c| {
        c.no_socket = 1;
        c.truncated = 1;
    })
}

// ---- verdicts through BPF_PROG_TEST_RUN ----------------------------------------------------

#[test]
fn ip_frames_go_to_the_socket_path_and_fall_back_to_pass_without_socket() {
    require_root!();
    let program = load(&XdpSetup::default());
    for (what, frame) in [
        ("IPv4 TCP", tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443)),
        ("IPv4 UDP", udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 53)),
        ("IPv6 TCP", tcp6("2001:db8::1", "2001:db8::2", 40000, 443)),
        ("IPv6 UDP", udp6("2001:db8::1", "2001:db8::2", 40000, 53)),
        (
            "IPv4 ICMP",
            ethernet(ETHERTYPE_IPV4, &ipv4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1, &[8, 0, 0, 0])),
        ),
    ] {
        assert_eq!(run(&program, &frame), (XDP_PASS, no_socket()), "{what}");
    }
}

#[test]
fn arp_is_captured_like_ipv4_from_its_sender_to_its_target() {
    require_root!();
    let program = load(&XdpSetup {
        blocklist: vec![(ip("192.0.2.0"), 24)],
        pass_nets: vec![(ip("10.9.0.5"), 32)],
        ..XdpSetup::default()
    });
    // Monitored traffic: to the socket path (no socket bound in a test run: pass).
    assert_eq!(run(&program, &arp([10, 0, 0, 1], [10, 0, 0, 2])), (XDP_PASS, no_socket()));
    // About the sensor's own management address, either way: the kernel's.
    assert_eq!(run(&program, &arp([10, 9, 0, 5], [10, 9, 0, 1])), (XDP_PASS, passed_filter()));
    assert_eq!(run(&program, &arp([10, 9, 0, 1], [10, 9, 0, 5])), (XDP_PASS, passed_filter()));
    // From a blocklisted sender: dropped — even about the management address (the blocklist
    // comes first, as for IP).
    assert_eq!(run(&program, &arp([192, 0, 2, 7], [10, 0, 0, 2])), (XDP_DROP, blocked()));
    assert_eq!(run(&program, &arp([192, 0, 2, 7], [10, 9, 0, 5])), (XDP_DROP, blocked()));
    // Behind one or two VLAN tags, the same.
    let tagged = vlan_arp(&[(ETHERTYPE_QINQ, 10), (ETHERTYPE_VLAN, 20)], [10, 9, 0, 1], [10, 9, 0, 5]);
    assert_eq!(run(&program, &tagged), (XDP_PASS, passed_filter()), "two tags, management");
    let tagged = vlan_arp(&[(ETHERTYPE_VLAN, 20)], [192, 0, 2, 9], [10, 0, 0, 2]);
    assert_eq!(run(&program, &tagged), (XDP_DROP, blocked()), "one tag, blocklisted");
    let tagged = vlan_arp(&[(ETHERTYPE_VLAN, 20)], [10, 0, 0, 1], [10, 0, 0, 2]);
    assert_eq!(run(&program, &tagged), (XDP_PASS, no_socket()), "one tag, captured");
}

#[test]
fn arp_other_than_ethernet_ipv4_or_cut_short_is_passed_as_not_ip() {
    require_root!();
    let program = load(&XdpSetup::default());
    let whole = arp([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut ieee802 = whole.clone();
    ieee802[15] = 6; // hardware type 6, IEEE 802 networks
    assert_eq!(run(&program, &ieee802), (XDP_PASS, passed_not_ip()), "hardware type 6");
    assert_eq!(run(&program, &whole[..14 + 27]), (XDP_PASS, passed_not_ip()), "one byte short");
}

#[test]
fn vlan_tag_cut_short_is_passed_as_not_ip() {
    require_root!();
    let program = load(&XdpSetup::default());
    let mut frame = vlan_ethernet(&[(ETHERTYPE_VLAN, 7)], ETHERTYPE_IPV4, &[]);
    frame.truncate(16); // TPID + half of the tag
    assert_eq!(run(&program, &frame), (XDP_PASS, passed_not_ip()));
}

#[test]
fn truncated_ip_headers_are_still_captured_and_counted_truncated() {
    require_root!();
    let program = load(&XdpSetup { blocklist: vec![(ip("10.0.0.1"), 32)], ..XdpSetup::default() });
    let v4 = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443);
    // 14 Ethernet + 19 of the 20 IPv4 header bytes: no source address to check the
    // blocklist against, so captured (the decoder counts it malformed), not dropped.
    assert_eq!(run(&program, &v4[..33]), (XDP_PASS, truncated_no_socket()), "IPv4 header cut");
    assert_eq!(run(&program, &v4[..14]), (XDP_PASS, truncated_no_socket()), "IPv4 header missing");
    let v6 = tcp6("2001:db8::1", "2001:db8::2", 40000, 443);
    assert_eq!(run(&program, &v6[..14 + 39]), (XDP_PASS, truncated_no_socket()), "IPv6 header cut");
    // A bogus IHL (below 5) leaves no usable header either.
    let mut bad_ihl = tcp4([10, 0, 0, 3], [10, 0, 0, 2], 40000, 443);
    bad_ihl[14] = 0x44;
    assert_eq!(run(&program, &bad_ihl), (XDP_PASS, truncated_no_socket()), "IHL 4");
    // Options (IHL 15 = 60 bytes) running past the frame: the header is unusable too.
    let mut long_ihl = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443);
    long_ihl[14] = 0x4f;
    assert_eq!(run(&program, &long_ihl), (XDP_PASS, truncated_no_socket()), "IHL past the frame");
    // IP header whole, TCP header cut: counted, still captured.
    let cut_tcp = tcp4([10, 0, 0, 3], [10, 0, 0, 2], 40000, 443);
    assert_eq!(run(&program, &cut_tcp[..14 + 20 + 10]), (XDP_PASS, truncated_no_socket()), "TCP cut");
    let cut_udp = udp6("2001:db8::3", "2001:db8::2", 40000, 53);
    assert_eq!(run(&program, &cut_udp[..14 + 40 + 6]), (XDP_PASS, truncated_no_socket()), "UDP cut");
    // A blocklisted source with its transport header cut is still dropped (and counted).
    let blocked_cut = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 443);
    let expected = counted(|c| {
        c.blocked = 1;
        c.truncated = 1;
    });
    assert_eq!(run(&program, &blocked_cut[..14 + 20 + 3]), (XDP_DROP, expected), "blocked, TCP cut");
}

#[test]
fn vlan_tagged_blocklisted_ipv4_source_is_dropped() {
    require_root!();
    let program = load(&XdpSetup { blocklist: vec![(ip("192.0.2.0"), 24)], ..XdpSetup::default() });
    let packet = ipv4([192, 0, 2, 9].into(), [10, 0, 0, 2].into(), TCP, &tcp(1234, 80));
    let single = vlan_ethernet(&[(ETHERTYPE_VLAN, 100)], ETHERTYPE_IPV4, &packet);
    assert_eq!(run(&program, &single), (XDP_DROP, blocked()), "802.1Q");
    let double = vlan_ethernet(&[(ETHERTYPE_QINQ, 10), (ETHERTYPE_VLAN, 100)], ETHERTYPE_IPV4, &packet);
    assert_eq!(run(&program, &double), (XDP_DROP, blocked()), "802.1ad + 802.1Q");
    let allowed = ipv4([192, 0, 3, 9].into(), [10, 0, 0, 2].into(), TCP, &tcp(1234, 80));
    let tagged = vlan_ethernet(&[(ETHERTYPE_QINQ, 10), (ETHERTYPE_VLAN, 100)], ETHERTYPE_IPV4, &allowed);
    assert_eq!(run(&program, &tagged), (XDP_PASS, no_socket()), "neighbour, double tagged");
}

#[test]
fn blocklisted_ipv4_source_is_dropped_and_counted() {
    require_root!();
    let program = load(&XdpSetup {
        blocklist: vec![(ip("198.51.100.7"), 32), (ip("203.0.113.99"), 25)], // host bits ignored
        ..XdpSetup::default()
    });
    assert_eq!(run(&program, &tcp4([198, 51, 100, 7], [10, 0, 0, 2], 1, 2)), (XDP_DROP, blocked()), "host");
    assert_eq!(
        run(&program, &udp4([203, 0, 113, 0], [10, 0, 0, 2], 1, 2)),
        (XDP_DROP, blocked()),
        "prefix start"
    );
    assert_eq!(
        run(&program, &udp4([203, 0, 113, 127], [10, 0, 0, 2], 1, 2)),
        (XDP_DROP, blocked()),
        "prefix end"
    );
    for (what, src) in [("next host", [198, 51, 100, 8]), ("outside /25", [203, 0, 113, 128])] {
        assert_eq!(run(&program, &tcp4(src, [10, 0, 0, 2], 1, 2)), (XDP_PASS, no_socket()), "{what}");
    }
    // Only the source counts: a blocklisted destination is captured.
    assert_eq!(run(&program, &tcp4([10, 0, 0, 2], [198, 51, 100, 7], 1, 2)), (XDP_PASS, no_socket()), "dst");
}

#[test]
fn blocklisted_ipv6_source_is_dropped_and_counted() {
    require_root!();
    let program = load(&XdpSetup {
        blocklist: vec![(ip("2001:db8::66"), 128), (ip("2001:db8:bad::"), 48)],
        ..XdpSetup::default()
    });
    assert_eq!(run(&program, &tcp6("2001:db8::66", "2001:db8::1", 1, 2)), (XDP_DROP, blocked()), "host");
    assert_eq!(
        run(&program, &udp6("2001:db8:bad:ffff::1", "2001:db8::1", 1, 2)),
        (XDP_DROP, blocked()),
        "prefix"
    );
    for (what, src) in [("next host", "2001:db8::67"), ("outside /48", "2001:db8:bae::1")] {
        assert_eq!(run(&program, &tcp6(src, "2001:db8::1", 1, 2)), (XDP_PASS, no_socket()), "{what}");
    }
}

#[test]
fn live_block_and_unblock_change_the_verdict() {
    require_root!();
    let mut program = load(&XdpSetup::default());
    let v4 = tcp4([192, 0, 2, 50], [10, 0, 0, 2], 1, 2);
    let v6 = tcp6("2001:db8:1::50", "2001:db8::1", 1, 2);
    assert_eq!(run(&program, &v4).0, XDP_PASS);
    program.block(ip("192.0.2.0"), 24).expect("block v4");
    program.block(ip("2001:db8:1::"), 64).expect("block v6");
    assert_eq!(run(&program, &v4), (XDP_DROP, blocked()));
    assert_eq!(run(&program, &v6), (XDP_DROP, blocked()));
    // A second, longer entry: removing the /24 leaves the /32 in force.
    program.block(ip("192.0.2.50"), 32).expect("block host");
    program.unblock(ip("192.0.2.77"), 24).expect("unblock /24 (host bits ignored)");
    assert_eq!(run(&program, &v4), (XDP_DROP, blocked()));
    program.unblock(ip("192.0.2.50"), 32).expect("unblock host");
    assert_eq!(run(&program, &v4), (XDP_PASS, no_socket()));
    program.unblock(ip("2001:db8:1::"), 64).expect("unblock v6");
    assert_eq!(run(&program, &v6), (XDP_PASS, no_socket()));
    // Unblocking what is not there is a no-op.
    program.unblock(ip("192.0.2.0"), 24).expect("unblock absent");
    assert!(matches!(program.block(ip("10.0.0.0"), 33), Err(XdpError::InvalidPrefix { .. })));
    assert!(matches!(program.block(ip("::"), 129), Err(XdpError::InvalidPrefix { .. })));
}

#[test]
fn pass_filter_by_subnet_matches_source_and_destination() {
    require_root!();
    let program = load(&XdpSetup {
        pass_nets: vec![(ip("172.16.0.0"), 12), (ip("fd00:1::"), 32)],
        ..XdpSetup::default()
    });
    for (what, frame) in [
        ("v4 src", tcp4([172, 20, 1, 1], [10, 0, 0, 2], 1, 2)),
        ("v4 dst", udp4([10, 0, 0, 2], [172, 31, 255, 255], 1, 2)),
        ("v6 src", tcp6("fd00:1:2::1", "2001:db8::1", 1, 2)),
        ("v6 dst", udp6("2001:db8::1", "fd00:1::9", 1, 2)),
    ] {
        assert_eq!(run(&program, &frame), (XDP_PASS, passed_filter()), "{what}");
    }
    for (what, frame) in [
        ("v4 outside", tcp4([172, 32, 0, 1], [10, 0, 0, 2], 1, 2)),
        ("v6 outside", tcp6("fd00:2::1", "2001:db8::1", 1, 2)),
    ] {
        assert_eq!(run(&program, &frame), (XDP_PASS, no_socket()), "{what}");
    }
}

#[test]
fn pass_filter_by_port_matches_source_and_destination_for_tcp_and_udp() {
    require_root!();
    let program = load(&XdpSetup { pass_ports: vec![22, 5353], ..XdpSetup::default() });
    for (what, frame) in [
        ("tcp4 dst", tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 22)),
        ("tcp4 src", tcp4([10, 0, 0, 2], [10, 0, 0, 1], 22, 40000)),
        ("udp4 dst", udp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 5353)),
        ("udp4 src", udp4([10, 0, 0, 1], [10, 0, 0, 2], 5353, 40000)),
        ("tcp6 dst", tcp6("2001:db8::1", "2001:db8::2", 40000, 22)),
        ("udp6 src", udp6("2001:db8::1", "2001:db8::2", 5353, 40000)),
    ] {
        assert_eq!(run(&program, &frame), (XDP_PASS, passed_filter()), "{what}");
    }
    for (what, frame) in [
        ("tcp4 other", tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 23)),
        ("udp6 other", udp6("2001:db8::1", "2001:db8::2", 5354, 40000)),
    ] {
        assert_eq!(run(&program, &frame), (XDP_PASS, no_socket()), "{what}");
    }
    // IPv6 extension headers are not walked: a hop-by-hop header hides the port.
    let mut hop_by_hop = vec![TCP, 0, 1, 4, 0, 0, 0, 0];
    hop_by_hop.extend_from_slice(&tcp(40000, 22));
    let frame = ethernet(ETHERTYPE_IPV6, &ipv6(v6("2001:db8::1"), v6("2001:db8::2"), 0, &hop_by_hop));
    assert_eq!(run(&program, &frame), (XDP_PASS, no_socket()), "behind an extension header");
}

#[test]
fn non_first_ipv4_fragment_does_not_match_a_port_rule() {
    require_root!();
    let program = load(&XdpSetup { pass_ports: vec![53], ..XdpSetup::default() });
    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    // Offset 185 × 8 bytes: the payload's first bytes look like UDP port 53 but are not.
    let later = ethernet(ETHERTYPE_IPV4, &ipv4_with_fragment(src, dst, UDP, 185, &udp(53, 53)));
    assert_eq!(run(&program, &later), (XDP_PASS, no_socket()), "non-first fragment");
    // The first fragment (MF set, offset 0) carries the header and matches.
    let first = ethernet(ETHERTYPE_IPV4, &ipv4_with_fragment(src, dst, UDP, 0x2000, &udp(40000, 53)));
    assert_eq!(run(&program, &first), (XDP_PASS, passed_filter()), "first fragment");
}

#[test]
fn blocklist_wins_over_the_pass_filter() {
    require_root!();
    let program = load(&XdpSetup {
        blocklist: vec![(ip("10.9.0.0"), 16)],
        pass_nets: vec![(ip("10.0.0.0"), 8)],
        pass_ports: vec![22],
        ..XdpSetup::default()
    });
    assert_eq!(run(&program, &tcp4([10, 9, 1, 1], [10, 0, 0, 2], 40000, 22)), (XDP_DROP, blocked()));
    assert_eq!(run(&program, &tcp4([10, 8, 1, 1], [10, 0, 0, 2], 40000, 22)), (XDP_PASS, passed_filter()));
}

#[test]
fn full_blocklist_is_reported_with_the_fix() {
    require_root!();
    let mut program = load(&XdpSetup { blocklist_max_entries: 2, ..XdpSetup::default() });
    program.block(ip("10.0.0.1"), 32).expect("first");
    program.block(ip("10.0.0.2"), 32).expect("second");
    let err = program.block(ip("10.0.0.3"), 32).expect_err("third does not fit");
    assert!(matches!(err, XdpError::BlocklistFull { max_entries: 2 }), "{err}");
    assert!(err.to_string().contains("blocklist_max_entries"), "{err}");
}

#[test]
fn registering_a_socket_checks_the_queue_and_the_descriptor() {
    require_root!();
    let mut program = load(&XdpSetup::default());
    let err = program.register_socket(10_000, 0).expect_err("queue beyond the map");
    assert!(matches!(err, XdpError::QueueOutOfRange { queue: 10_000, .. }), "{err}");
    // A UDP socket is no AF_XDP socket: the kernel refuses it, the message says what is needed.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let err = program.register_socket(0, udp.as_raw_fd()).expect_err("not an AF_XDP socket");
    assert!(err.to_string().contains("AF_XDP socket bound to that queue"), "{err}");
    program.unregister_socket(0).expect("unregistering an empty queue is a no-op");
}

#[test]
fn attaching_to_a_missing_interface_names_it() {
    require_root!();
    let mut program = load(&XdpSetup::default());
    let err = program.attach("outpost-nope0", XdpAttach::Auto).expect_err("no such interface");
    assert!(matches!(err, XdpError::InterfaceNotFound { .. }), "{err}");
    assert!(err.to_string().contains("`outpost-nope0` not found"), "{err}");
    assert!(matches!(detach_stale("outpost-nope0"), Err(XdpError::InterfaceNotFound { .. })));
    assert!(matches!(program.attach("", XdpAttach::Auto), Err(XdpError::InvalidInterfaceName { .. })));
    assert_eq!(program.mode(), None);
}

// ---- attach / detach on a veth pair in a throwaway network namespace ---------------------------

/// A namespace `outpost-xdp-<pid>-<n>` holding a veth pair `xdp0` ↔ `xdp1`, both up; deleted
/// (with the pair) on drop, also when the test panics.
fn new_netns() -> Netns {
    Netns::with_veth("outpost-xdp", "xdp0", "xdp1")
}

fn has_xdp(link: &str) -> bool {
    link.contains("prog/xdp")
}

#[test]
fn attaches_to_veth_in_generic_and_native_mode_and_detaches_on_drop() {
    require_root!();
    let netns = new_netns();
    for (attach, mode, keyword) in [
        (XdpAttach::Generic, XdpMode::Generic, " xdpgeneric "),
        (XdpAttach::Native, XdpMode::Native, " xdp "),
        (XdpAttach::Auto, XdpMode::Native, " xdp "),
    ] {
        let id = netns.run_in(|| {
            let mut program = load(&XdpSetup::default());
            assert_eq!(program.attach("xdp0", attach).expect("attach"), mode, "{attach:?}");
            assert_eq!(program.mode(), Some(mode));
            assert_eq!(program.native_fallback_reason(), None);
            // On this kernel aya attaches through a bpf_link, which dies with the process.
            assert!(
                matches!(program.attachment(), Some(XdpAttachment::BpfLink { .. })),
                "{:?}",
                program.attachment()
            );
            let id = program.program_id().expect("program id");
            let link = netns.link("xdp0");
            assert!(link.contains(&format!("prog/xdp id {id}")), "{attach:?}: {link}");
            assert!(link.contains(keyword), "{attach:?} shows as `{keyword}`: {link}");
            id
        });
        // The program was dropped with the thread's closure: nothing is left attached.
        let link = netns.link("xdp0");
        assert!(!has_xdp(&link), "{attach:?}: program {id} still attached after drop: {link}");
    }
    // Explicit detach, then attach again.
    netns.run_in(|| {
        let mut program = load(&XdpSetup::default());
        program.attach("xdp0", XdpAttach::Generic).expect("attach");
        let err = program.attach("xdp0", XdpAttach::Generic).expect_err("twice");
        assert!(matches!(err, XdpError::AttachedTwice { .. }), "{err}");
        program.detach();
        assert_eq!(program.mode(), None);
        assert!(!has_xdp(&netns.link("xdp0")), "still attached after detach");
        program.attach("xdp0", XdpAttach::Native).expect("attach again");
        assert!(has_xdp(&netns.link("xdp0")));
    });
    assert!(!has_xdp(&netns.link("xdp0")));
}

#[test]
fn second_program_on_the_same_interface_is_refused_with_the_remedy() {
    require_root!();
    let netns = new_netns();
    netns.run_in(|| {
        let mut first = load(&XdpSetup::default());
        first.attach("xdp0", XdpAttach::Native).expect("first attach");
        let mut second = load(&XdpSetup::default());
        for attach in [XdpAttach::Native, XdpAttach::Generic, XdpAttach::Auto] {
            let err = second.attach("xdp0", attach).expect_err("interface is taken");
            assert!(matches!(err, XdpError::AlreadyAttached { .. }), "{attach:?}: {err}");
            let text = err.to_string();
            assert!(text.contains("outpost_xdp") && text.contains("bpf_link"), "{text}");
        }
        assert_eq!(second.mode(), None);
        // detach_stale leaves a live bpf_link alone.
        assert_eq!(detach_stale("xdp0").expect("detach_stale"), 0);
        assert!(has_xdp(&netns.link("xdp0")));
    });
}

/// Runt frames cannot go through `BPF_PROG_TEST_RUN` (the kernel refuses data shorter than an
/// Ethernet header), and Ethernet devices pad or refuse them; a TUN device (layer 3, no
/// Ethernet header) hands the program whatever was written, so a 10-byte IPv4 packet reaches
/// it as a 10-byte frame.
#[test]
fn runt_frame_shorter_than_ethernet_is_passed_as_not_ip() {
    require_root!();
    let program = load(&XdpSetup::default());
    let err = program.test_run(&tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1, 2)[..13]).expect_err("too short");
    assert!(matches!(err, XdpError::FrameTooShort { len: 13 }), "{err}");
    drop(program);

    let netns = new_netns();
    netns.run_in(|| {
        let tun = open_tun("outpost-tun0");
        netns.ip(&["link", "set", "outpost-tun0", "up"]);
        let mut program = load(&XdpSetup::default());
        assert_eq!(program.attach("outpost-tun0", XdpAttach::Generic).expect("attach"), XdpMode::Generic);
        let before = program.counters().expect("counters");
        let runt = [0x45u8, 0, 0, 10, 0, 0, 0, 0, 64, 17];
        // SAFETY: writes `runt` (valid for its length) to the TUN descriptor.
        let written = unsafe { libc::write(tun.as_raw_fd(), runt.as_ptr().cast(), runt.len()) };
        assert_eq!(written, 10, "write to tun: {}", std::io::Error::last_os_error());
        let mut delta = XdpCounters::default();
        for _ in 0..100 {
            delta = program.counters().expect("counters").since(&before);
            if delta.seen > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(delta, passed_not_ip(), "a 10-byte frame");
    });
}

/// Creates TUN device `name` (IFF_TUN | IFF_NO_PI) in the calling thread's namespace; it
/// lives as long as the returned descriptor.
fn open_tun(name: &str) -> std::fs::File {
    let tun =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").expect("open /dev/net/tun");
    // struct ifreq: 16-byte name, then the flags (short) in the union.
    let mut request = [0u8; 40];
    request[..name.len()].copy_from_slice(name.as_bytes());
    let flags = i16::try_from(libc::IFF_TUN | libc::IFF_NO_PI).expect("flags fit");
    request[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `request` is large enough for.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, request.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    tun
}

#[test]
fn detach_stale_removes_a_netlink_attached_program_left_by_an_earlier_run() {
    require_root!();
    let netns = new_netns();
    netns.run_in(|| {
        assert_eq!(detach_stale("xdp0").expect("nothing attached"), 0);
        // Simulate a run killed while attached the legacy way: attach through netlink, then
        // drop the loader (the attachment keeps the program alive).
        let program = load(&XdpSetup::default());
        let id = program.program_id().expect("program id");
        let info = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|info| info.id() == id)
            .expect("our program is loaded");
        let fd = info.fd().expect("program fd");
        netlink_attach_generic("xdp0", fd.as_fd().as_raw_fd());
        drop(fd);
        drop(program);
        assert!(netns.link("xdp0").contains(&format!("prog/xdp id {id}")), "stale program attached");
        assert_eq!(detach_stale("xdp0").expect("detach_stale"), 1);
        assert!(!has_xdp(&netns.link("xdp0")), "stale program removed");
        // And a fresh run can attach again.
        let mut fresh = load(&XdpSetup::default());
        assert_eq!(fresh.attach("xdp0", XdpAttach::Auto).expect("attach"), XdpMode::Native);
    });
}

/// `ip link set dev <ifname> xdpgeneric fd <prog_fd>` done by hand (iproute2 cannot take a
/// descriptor): RTM_SETLINK with IFLA_XDP { IFLA_XDP_FD, IFLA_XDP_FLAGS = SKB mode }.
fn netlink_attach_generic(ifname: &str, prog_fd: i32) {
    let name = std::ffi::CString::new(ifname).expect("ifname");
    // SAFETY: valid NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "{ifname} exists");
    let attr = |kind: u16, payload: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + payload.len()).expect("small").to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out
    };
    let mut nested = attr(1, &prog_fd.to_ne_bytes()); // IFLA_XDP_FD
    nested.extend(attr(3, &(1u32 << 1).to_ne_bytes())); // IFLA_XDP_FLAGS = XDP_FLAGS_SKB_MODE
    let xdp = attr(43 | (1 << 15), &nested); // IFLA_XDP, nested
    let len = 16 + 16 + xdp.len();
    let mut request = Vec::new();
    request.extend_from_slice(&u32::try_from(len).expect("small").to_ne_bytes());
    request.extend_from_slice(&libc::RTM_SETLINK.to_ne_bytes());
    request.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    request.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
    request.extend_from_slice(&[0, 0, 0, 0]);
    request.extend_from_slice(&ifindex.to_ne_bytes());
    request.extend_from_slice(&[0; 8]);
    request.extend_from_slice(&xdp);
    // SAFETY: plain socket / send / recv on buffers valid for their lengths.
    unsafe {
        let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE);
        assert!(fd >= 0);
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            std::ptr::addr_of!(kernel).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        );
        assert_eq!(sent, isize::try_from(request.len()).expect("small"));
        let mut reply = [0u8; 4096];
        let received = libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0);
        libc::close(fd);
        assert!(received >= 20, "netlink reply");
        let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        assert_eq!(code, 0, "netlink attach: {}", std::io::Error::from_raw_os_error(-code));
    }
}

/// Environment variable through which [`attachment_ends_when_its_process_is_killed`] tells
/// its child (this test binary, running [`killed_process_helper`]) which namespace to use.
const KILL_NETNS_ENV: &str = "OUTPOST_XDP_KILL_NETNS";

/// The `bpf_link` guarantee: a process killed with SIGKILL (no destructor runs) leaves no
/// program attached, because the kernel closes the link's descriptor.
#[test]
fn attachment_ends_when_its_process_is_killed() {
    require_root!();
    let netns = new_netns();
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "killed_process_helper", "--nocapture", "--test-threads=1"])
        .env(KILL_NETNS_ENV, netns.name())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let attached = lines.by_ref().map_while(Result::ok).find(|line| line.contains("ATTACHED"));
    assert!(attached.is_some(), "helper did not attach (see its output above)");
    assert!(has_xdp(&netns.link("xdp0")), "helper's program attached");
    child.kill().expect("SIGKILL the helper");
    let _ = child.wait();
    let mut link = netns.link("xdp0");
    for _ in 0..100 {
        if !has_xdp(&link) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        link = netns.link("xdp0");
    }
    assert!(!has_xdp(&link), "program still attached after SIGKILL: {link}");
}

/// Child side of [`attachment_ends_when_its_process_is_killed`]; does nothing (and passes)
/// unless that test started it.
#[test]
fn killed_process_helper() {
    let Ok(name) = std::env::var(KILL_NETNS_ENV) else {
        return;
    };
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open netns");
    // SAFETY: a valid namespace descriptor; setns changes this thread only.
    assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
    let mut program = load(&XdpSetup::default());
    program.attach("xdp0", XdpAttach::Native).expect("attach");
    println!("ATTACHED {}", program.program_id().expect("program id"));
    std::thread::sleep(std::time::Duration::from_secs(60));
}
