//! Byte-level fixtures for every layer the decoder reads. Frames are written out as literal
//! bytes (with the field each group encodes); variants patch a literal at a named offset.

use super::*;
use crate::Decoder;
use crate::meta::tcp_flags;

const TS: Nanos = Nanos(1_767_225_600_000_000_000);

/// Decodes with `wire_len == frame.len()` and checks the invariants and `shard_hash` agreement.
fn dec(link: LinkType, frame: &[u8]) -> Result<PacketMeta, Malformed> {
    dec_wire(link, frame, u32::try_from(frame.len()).unwrap())
}

/// Decodes an Ethernet frame captured whole.
fn eth(frame: &[u8]) -> Result<PacketMeta, Malformed> {
    dec(LinkType::Ethernet, frame)
}

fn dec_wire(link: LinkType, frame: &[u8], wire_len: u32) -> Result<PacketMeta, Malformed> {
    let r = decode(link, frame, TS, wire_len);
    if let Ok(m) = &r {
        if let Err(e) = crate::check_invariants(frame, m) {
            panic!("invariant broken: {e}\n{m:#?}");
        }
        if m.is_ip() {
            assert_eq!(shard_hash(link, frame), m.src.shard_hash(), "shard_hash disagrees with decode");
        } else {
            assert_eq!(shard_hash(link, frame), 0, "non-IP frame has a shard hash");
        }
    }
    r
}

/// Returns `bytes` with `patch` written at `at`.
fn patch(bytes: &[u8], at: usize, patch: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v[at..at + patch.len()].copy_from_slice(patch);
    v
}

fn v4(s: &str) -> IpAddress {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// dst 02:00:00:00:00:02, src 02:00:00:00:00:01.
const MACS: [u8; 12] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];

/// A 60-byte Ethernet/IPv4/TCP SYN (54 bytes of headers + 6 bytes of Ethernet padding).
const ETH_IPV4_TCP_SYN: [u8; 60] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst MAC
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src MAC
    0x08, 0x00, // EtherType IPv4
    // IPv4 (offset 14)
    0x45, 0x10, 0x00, 0x28, // version 4, IHL 5, TOS 0x10, total length 40
    0xbe, 0xef, 0x40, 0x00, // identification 0xbeef, DF, offset 0
    0x40, 0x06, 0x00, 0x00, // TTL 64, protocol TCP, checksum (not checked)
    0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
    0xc0, 0x00, 0x02, 0x07, // dst 192.0.2.7
    // TCP (offset 34)
    0x30, 0x39, 0x00, 0x50, // src port 12345, dst port 80
    0x11, 0x22, 0x33, 0x44, // seq 0x11223344
    0x00, 0x00, 0x00, 0x00, // ack 0
    0x50, 0x02, 0xfa, 0xf0, // data offset 5, flags SYN, window 64240
    0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
    // Ethernet padding (offset 54)
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// IPv4 header carrying UDP: total length 32 (20 + 8 UDP + 4 payload).
const IPV4_UDP_HDR: [u8; 20] = [
    0x45, 0x00, 0x00, 0x20, // version 4, IHL 5, TOS 0, total length 32
    0x00, 0x01, 0x00, 0x00, // identification 1, no flags, offset 0
    0x40, 0x11, 0x00, 0x00, // TTL 64, protocol UDP, checksum
    0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
    0x0a, 0x00, 0x00, 0x02, // dst 10.0.0.2
];

/// UDP 1234 → 53, length 12, with 4 bytes of payload.
const UDP_DNS: [u8; 12] = [
    0x04, 0xd2, 0x00, 0x35, // src port 1234, dst port 53
    0x00, 0x0c, 0x00, 0x00, // length 12, checksum
    0xde, 0xad, 0xbe, 0xef, // payload
];

/// TCP header 443 → 50000, ACK|PSH, data offset 5.
const TCP_ACK_PSH: [u8; 20] = [
    0x01, 0xbb, 0xc3, 0x50, // src port 443, dst port 50000
    0x00, 0x00, 0x00, 0x10, // seq 16
    0x00, 0x00, 0x00, 0x20, // ack 32
    0x50, 0x18, 0x01, 0x00, // data offset 5, flags ACK|PSH, window 256
    0x00, 0x00, 0x00, 0x00, // checksum, urgent pointer
];

/// IPv6 fixed header, next header UDP, payload length 12.
const IPV6_UDP_HDR: [u8; 40] = [
    0x6b, 0x80, 0x00, 0x01, // version 6, traffic class 0xb8 (EF), flow label 1
    0x00, 0x0c, 0x11, 0x40, // payload length 12, next header UDP, hop limit 64
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // src 2001:db8::1
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, // dst 2001:db8::2
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, //
];

/// Ethernet/IPv4/UDP frame (14 + 20 + 12 bytes).
fn eth_ipv4_udp() -> Vec<u8> {
    [&MACS[..], &[0x08, 0x00], &IPV4_UDP_HDR, &UDP_DNS].concat()
}

/// An Ethernet/IPv4 frame with the given IPv4 header and L4 bytes.
fn eth_ipv4(ip: &[u8], l4: &[u8]) -> Vec<u8> {
    [&MACS[..], &[0x08, 0x00], ip, l4].concat()
}

/// An Ethernet/IPv6 frame from header and rest.
fn eth_ipv6(ip: &[u8], rest: &[u8]) -> Vec<u8> {
    [&MACS[..], &[0x86, 0xdd], ip, rest].concat()
}

/// An IPv6 header with the given payload length and next header.
fn ipv6_hdr(payload_len: u16, next: u8) -> Vec<u8> {
    let h = patch(&IPV6_UDP_HDR, 4, &payload_len.to_be_bytes());
    patch(&h, 6, &[next])
}

/// An IPv4 header like [`IPV4_UDP_HDR`] with the given total length, protocol and
/// flags/fragment word.
fn ipv4_hdr(total_len: u16, proto: u8, flags_frag: u16) -> Vec<u8> {
    let h = patch(&IPV4_UDP_HDR, 2, &total_len.to_be_bytes());
    let h = patch(&h, 6, &flags_frag.to_be_bytes());
    patch(&h, 9, &[proto])
}

// ---------------------------------------------------------------------------------------------
// Ethernet and VLAN
// ---------------------------------------------------------------------------------------------

#[test]
fn ethernet_ipv4_tcp_syn_fills_every_field() {
    let m = dec_wire(LinkType::Ethernet, &ETH_IPV4_TCP_SYN, 64).unwrap();
    let want = PacketMeta {
        ts: TS,
        wire_len: 64,
        cap_len: 60,
        ip_len: 40,
        payload_len: 0,
        src: v4("10.0.0.1"),
        dst: v4("192.0.2.7"),
        tcp_seq: 0x1122_3344,
        tcp_ack: 0,
        frag_id: 0xbeef,
        src_port: 12345,
        dst_port: 80,
        tcp_flags: tcp_flags::SYN,
        tcp_window: 64240,
        ethertype: ethertype::IPV4,
        vlan: [0, 0],
        frag_offset: 0,
        l3_offset: 14,
        l4_offset: 34,
        payload_offset: 54,
        vlan_count: 0,
        network: Network::Ipv4,
        ip_proto: ip_proto::TCP,
        ttl: 64,
        tos: 0x10,
        icmp_type: 0,
        icmp_code: 0,
        arp_op: 0,
        fragment: Fragment::None,
        transport: Transport::Parsed,
        ip6_first_next_header: ip_proto::TCP,
        ip_options: false,
        anomaly: None,
    };
    assert_eq!(m, want);
    assert!(m.tcp_has(tcp_flags::SYN));
    assert!(m.has_ports());
}

#[test]
fn ethernet_padding_after_ip_total_length_is_ignored() {
    // 6 bytes of padding follow the 40-byte datagram; lengths come from the IP header.
    let m = eth(&ETH_IPV4_TCP_SYN).unwrap();
    assert_eq!(m.ip_len, 40);
    assert_eq!(m.payload_len, 0);
    assert_eq!(m.payload_offset, 54);
}

#[test]
fn frame_shorter_than_ethernet_header_is_truncated_ethernet() {
    assert_eq!(eth(&ETH_IPV4_TCP_SYN[..13]), Err(Malformed::TruncatedEthernet));
}

#[test]
fn single_8021q_tag_is_read_and_skipped() {
    let f = [
        &MACS[..],
        &[0x81, 0x00, 0x20, 0x64], // 802.1Q, PCP 1, VID 100
        &[0x08, 0x00],             // EtherType IPv4
        &IPV4_UDP_HDR,
        &UDP_DNS,
    ]
    .concat();
    let m = eth(&f).unwrap();
    assert_eq!((m.vlan_count, m.vlan), (1, [100, 0]));
    assert_eq!(m.ethertype, ethertype::IPV4);
    assert_eq!((m.l3_offset, m.l4_offset, m.payload_offset), (18, 38, 46));
    assert_eq!((m.src_port, m.dst_port), (1234, 53));
}

#[test]
fn qinq_tags_are_read_outermost_first() {
    let f = [
        &MACS[..],
        &[0x88, 0xa8, 0x00, 0x0a], // 802.1ad S-tag, VID 10
        &[0x81, 0x00, 0xef, 0xff], // 802.1Q C-tag, PCP 7, DEI 0, VID 4095
        &[0x86, 0xdd],             // EtherType IPv6
        &IPV6_UDP_HDR,
        &UDP_DNS,
    ]
    .concat();
    let m = eth(&f).unwrap();
    assert_eq!((m.vlan_count, m.vlan), (2, [10, 0x0fff]));
    assert_eq!(m.ethertype, ethertype::IPV6);
    assert_eq!(m.l3_offset, 22);
    assert_eq!(m.network, Network::Ipv6);
}

#[test]
fn pre_standard_qinq_tpid_is_a_vlan_tag() {
    let f = [&MACS[..], &[0x91, 0x00, 0x00, 0x05], &[0x08, 0x00], &IPV4_UDP_HDR, &UDP_DNS].concat();
    let m = eth(&f).unwrap();
    assert_eq!((m.vlan_count, m.vlan), (1, [5, 0]));
}

#[test]
fn third_vlan_tag_is_rejected() {
    let f = [
        &MACS[..],
        &[0x88, 0xa8, 0x00, 0x01], // S-tag VID 1
        &[0x81, 0x00, 0x00, 0x02], // C-tag VID 2
        &[0x81, 0x00, 0x00, 0x03], // a third tag
        &[0x08, 0x00],
        &IPV4_UDP_HDR,
        &UDP_DNS,
    ]
    .concat();
    assert_eq!(eth(&f), Err(Malformed::TooManyVlanTags));
}

#[test]
fn vlan_tag_cut_short_is_truncated_vlan() {
    let f = [&MACS[..], &[0x81, 0x00, 0x00, 0x64, 0x08]].concat();
    assert_eq!(eth(&f), Err(Malformed::TruncatedVlan));
}

#[test]
fn ieee_8023_length_frame_is_other_network() {
    let f = [
        &MACS[..],
        &[0x00, 0x26],       // 802.3 length 38
        &[0x42, 0x42, 0x03], // LLC: DSAP/SSAP STP, UI
        &[0u8; 35],          // BPDU
    ]
    .concat();
    let m = eth(&f).unwrap();
    assert_eq!(m.network, Network::Other);
    assert_eq!(m.ethertype, 0x0026, "802.3 frames keep their length field");
    assert_eq!((m.l3_offset, m.l4_offset, m.payload_offset), (14, 14, 14));
    assert_eq!((m.ip_len, m.transport), (0, Transport::Absent));
}

#[test]
fn unknown_ethertype_is_other_network() {
    let f = [&MACS[..], &[0x88, 0xcc], &[0x02, 0x07, 0x04]].concat(); // LLDP
    let m = eth(&f).unwrap();
    assert_eq!((m.network, m.ethertype), (Network::Other, 0x88cc));
}

// ---------------------------------------------------------------------------------------------
// ARP
// ---------------------------------------------------------------------------------------------

/// ARP request: who has 192.168.1.1? tell 192.168.1.20.
const ETH_ARP_REQUEST: [u8; 42] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst MAC broadcast
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src MAC
    0x08, 0x06, // EtherType ARP
    0x00, 0x01, 0x08, 0x00, // htype Ethernet, ptype IPv4
    0x06, 0x04, 0x00, 0x01, // hlen 6, plen 4, op request
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sender MAC
    0xc0, 0xa8, 0x01, 0x14, // sender IP 192.168.1.20
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // target MAC
    0xc0, 0xa8, 0x01, 0x01, // target IP 192.168.1.1
];

#[test]
fn arp_request_yields_sender_and_target_protocol_addresses() {
    let m = eth(&ETH_ARP_REQUEST).unwrap();
    assert_eq!(m.network, Network::Arp);
    assert_eq!(m.ethertype, ethertype::ARP);
    assert_eq!((m.src, m.dst), (v4("192.168.1.20"), v4("192.168.1.1")));
    assert_eq!((m.l3_offset, m.ip_len, m.transport), (14, 0, Transport::Absent));
    assert_eq!(m.arp_op, 1, "a request");
    let reply = eth(&patch(&ETH_ARP_REQUEST, 20, &[0x00, 0x02])).unwrap();
    assert_eq!(reply.arp_op, 2, "a reply");
}

#[test]
fn arp_cut_before_target_address_is_truncated_arp() {
    assert_eq!(eth(&ETH_ARP_REQUEST[..41]), Err(Malformed::TruncatedArp));
    assert_eq!(eth(&ETH_ARP_REQUEST[..20]), Err(Malformed::TruncatedArp));
}

#[test]
fn arp_for_other_hardware_decodes_without_addresses() {
    // htype 6 (IEEE 802), still IPv4: not the Ethernet/IPv4 form, so no addresses.
    let f = patch(&ETH_ARP_REQUEST, 14, &[0x00, 0x06]);
    let m = eth(&f).unwrap();
    assert_eq!(m.network, Network::Arp);
    assert_eq!((m.src, m.dst), (IpAddress::UNSPECIFIED, IpAddress::UNSPECIFIED));
    assert_eq!(m.arp_op, 1, "the operation is in the fixed part");
    // Only the fixed part is needed for such forms.
    assert_eq!(eth(&f[..22]).unwrap().network, Network::Arp);
}

// ---------------------------------------------------------------------------------------------
// IPv4
// ---------------------------------------------------------------------------------------------

#[test]
fn ipv4_options_set_the_flag_and_move_the_transport() {
    let ip = [
        0x46, 0x00, 0x00, 0x2c, // version 4, IHL 6 (24 bytes), total length 44 (24 + 20)
        0x00, 0x07, 0x00, 0x00, // identification 7
        0x01, 0x06, 0x00, 0x00, // TTL 1, protocol TCP
        0x0a, 0x00, 0x00, 0x01, // src 10.0.0.1
        0xe0, 0x00, 0x00, 0x16, // dst 224.0.0.22
        0x94, 0x04, 0x00, 0x00, // option: Router Alert (RFC 2113)
    ];
    let m = eth(&eth_ipv4(&ip, &TCP_ACK_PSH)).unwrap();
    assert!(m.ip_options);
    assert_eq!((m.l4_offset, m.payload_offset), (38, 58));
    assert_eq!((m.src_port, m.dst_port, m.ttl), (443, 50000, 1));
    assert_eq!(m.tcp_flags, tcp_flags::ACK | tcp_flags::PSH);
    assert_eq!((m.tcp_seq, m.tcp_ack, m.tcp_window), (16, 32, 256));
}

#[test]
fn first_ipv4_fragment_decodes_the_transport() {
    // MF set, offset 0: UDP header plus 8 bytes of the datagram in this fragment.
    let ip = ipv4_hdr(36, ip_proto::UDP, 0x2000);
    let udp = [0x04, 0xd2, 0x00, 0x35, 0x00, 0x40, 0x00, 0x00, 1, 2, 3, 4, 5, 6, 7, 8];
    let m = eth(&eth_ipv4(&ip, &udp)).unwrap();
    assert_eq!(m.fragment, Fragment::First);
    assert_eq!((m.frag_offset, m.frag_id), (0, 1));
    assert_eq!(m.transport, Transport::Parsed);
    assert_eq!((m.src_port, m.dst_port), (1234, 53));
    // The UDP length (64) describes the whole datagram, more than this fragment carries:
    // that is what a first fragment looks like, not an anomaly.
    assert_eq!(m.anomaly, None);
    assert_eq!(m.payload_len, 8);
}

#[test]
fn later_ipv4_fragment_has_no_ports() {
    // Offset 185 (1480 bytes), MF clear: bytes from the middle of a datagram.
    let ip = ipv4_hdr(28, ip_proto::UDP, 0x00b9);
    let m = eth(&eth_ipv4(&ip, &[0x04, 0xd2, 0x00, 0x35, 0, 0, 0, 0])).unwrap();
    assert_eq!(m.fragment, Fragment::Later);
    assert_eq!(m.frag_offset, 185);
    assert_eq!(m.transport, Transport::Absent);
    assert_eq!((m.src_port, m.dst_port), (0, 0));
    assert!(!m.has_ports());
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (34, 34, 8));
    assert_eq!(m.ip_proto, ip_proto::UDP);
}

#[test]
fn ipv4_ihl_below_five_is_rejected() {
    let ip = patch(&IPV4_UDP_HDR, 0, &[0x44]);
    assert_eq!(eth(&eth_ipv4(&ip, &UDP_DNS)), Err(Malformed::BadIpv4HeaderLength));
}

#[test]
fn ipv4_header_beyond_the_captured_bytes_is_truncated() {
    assert_eq!(eth(&eth_ipv4(&IPV4_UDP_HDR[..19], &[])), Err(Malformed::TruncatedIpv4));
    // IHL 15 (60 bytes) but only 32 bytes of datagram.
    let ip = patch(&IPV4_UDP_HDR, 0, &[0x4f]);
    assert_eq!(eth(&eth_ipv4(&ip, &UDP_DNS)), Err(Malformed::TruncatedIpv4));
}

#[test]
fn ipv4_total_length_below_header_length_is_rejected() {
    let ip = patch(&IPV4_UDP_HDR, 2, &[0x00, 0x13]);
    assert_eq!(eth(&eth_ipv4(&ip, &UDP_DNS)), Err(Malformed::BadIpv4TotalLength));
}

#[test]
fn ipv4_header_with_another_version_is_bad_version() {
    let ip = patch(&IPV4_UDP_HDR, 0, &[0x65]);
    assert_eq!(eth(&eth_ipv4(&ip, &UDP_DNS)), Err(Malformed::BadIpVersion));
}

#[test]
fn ip_length_exceeding_an_uncut_frame_is_rejected() {
    // Total length 33 but only 32 bytes of datagram, and the frame was not cut.
    let ip = patch(&IPV4_UDP_HDR, 2, &[0x00, 0x21]);
    assert_eq!(eth(&eth_ipv4(&ip, &UDP_DNS)), Err(Malformed::IpLengthExceedsFrame));
}

#[test]
fn ip_length_beyond_a_snaplen_cut_frame_is_accepted() {
    // A 1500-byte datagram captured with a 64-byte snap length.
    let ip = patch(&IPV4_UDP_HDR, 2, &1500u16.to_be_bytes());
    let udp = [0x04, 0xd2, 0x00, 0x35, 0x05, 0xc8, 0x00, 0x00]; // UDP length 1480
    let mut f = eth_ipv4(&ip, &udp);
    f.resize(64, 0xaa);
    let m = dec_wire(LinkType::Ethernet, &f, 1514).unwrap();
    assert_eq!((m.ip_len, m.payload_len, m.cap_len, m.wire_len), (1500, 1472, 64, 1514));
    assert_eq!(m.transport, Transport::Parsed);
    assert_eq!(m.anomaly, None);
}

#[test]
fn ip_length_beyond_the_wire_length_is_rejected_even_when_cut() {
    // Cut at 64 bytes of a 100-byte frame, yet the header claims 1500 bytes.
    let ip = patch(&IPV4_UDP_HDR, 2, &1500u16.to_be_bytes());
    let mut f = eth_ipv4(&ip, &UDP_DNS);
    f.resize(64, 0);
    assert_eq!(dec_wire(LinkType::Ethernet, &f, 100), Err(Malformed::IpLengthExceedsFrame));
}

#[test]
fn unknown_ip_protocol_has_an_absent_transport() {
    let ip = ipv4_hdr(28, 47, 0); // GRE
    let m = eth(&eth_ipv4(&ip, &[0, 0, 0x08, 0, 1, 2, 3, 4])).unwrap();
    assert_eq!((m.ip_proto, m.transport, m.anomaly), (47, Transport::Absent, None));
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (34, 34, 8));
}

// ---------------------------------------------------------------------------------------------
// IPv6
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_ipv6_udp_decodes_addresses_and_traffic_class() {
    let m = eth(&eth_ipv6(&IPV6_UDP_HDR, &UDP_DNS)).unwrap();
    assert_eq!(m.network, Network::Ipv6);
    assert_eq!(m.src, "2001:db8::1".parse().unwrap());
    assert_eq!(m.dst, "2001:db8::2".parse().unwrap());
    assert_eq!((m.ip_len, m.payload_len), (52, 4));
    assert_eq!((m.ttl, m.tos), (64, 0xb8));
    assert_eq!((m.ip_proto, m.ip6_first_next_header), (ip_proto::UDP, ip_proto::UDP));
    assert!(!m.ip_options);
    assert_eq!((m.l3_offset, m.l4_offset, m.payload_offset), (14, 54, 62));
    assert_eq!((m.src_port, m.dst_port), (1234, 53));
    assert_eq!((m.fragment, m.frag_id), (Fragment::None, 0));
}

/// Hop-by-hop → destination options → fragment (first, id 0xdeadbeef) → TCP.
const IPV6_EXT_CHAIN: [u8; 24] = [
    60, 0, 0x01, 0x04, 0, 0, 0, 0, // hop-by-hop: next dest-opts, 8 bytes, PadN(4)
    44, 0, 0x01, 0x04, 0, 0, 0, 0, // destination options: next fragment, 8 bytes, PadN(4)
    6, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, // fragment: next TCP, offset 0, M=1, id
];

#[test]
fn ipv6_extension_chain_is_walked_to_the_transport() {
    let ip = ipv6_hdr(24 + 20, 0);
    let m = eth(&eth_ipv6(&ip, &[&IPV6_EXT_CHAIN[..], &TCP_ACK_PSH].concat())).unwrap();
    assert_eq!(m.ip6_first_next_header, 0);
    assert_eq!(m.ip_proto, ip_proto::TCP);
    assert!(m.ip_options);
    assert_eq!((m.fragment, m.frag_id, m.frag_offset), (Fragment::First, 0xdead_beef, 0));
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (14 + 40 + 24, 14 + 40 + 24 + 20, 0));
    assert_eq!((m.transport, m.src_port, m.dst_port), (Transport::Parsed, 443, 50000));
}

#[test]
fn later_ipv6_fragment_has_no_transport() {
    // Fragment header: next UDP, offset 100 (800 bytes), M=0.
    let frag = [17, 0, 0x03, 0x20, 0x00, 0x00, 0x00, 0x09];
    let ip = ipv6_hdr(8 + 8, 44);
    let m = eth(&eth_ipv6(&ip, &[&frag[..], &[0xab; 8]].concat())).unwrap();
    assert_eq!((m.fragment, m.frag_offset, m.frag_id), (Fragment::Later, 100, 9));
    assert_eq!((m.ip_proto, m.transport), (ip_proto::UDP, Transport::Absent));
    assert_eq!((m.src_port, m.dst_port), (0, 0));
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (62, 62, 8));
}

#[test]
fn atomic_ipv6_fragment_is_not_a_fragment() {
    let frag = [17, 0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05]; // offset 0, M=0 (RFC 6946)
    let ip = ipv6_hdr(8 + 12, 44);
    let m = eth(&eth_ipv6(&ip, &[&frag[..], &UDP_DNS].concat())).unwrap();
    assert_eq!((m.fragment, m.frag_id), (Fragment::None, 5));
    assert_eq!((m.transport, m.dst_port), (Transport::Parsed, 53));
}

#[test]
fn ipv6_authentication_header_length_counts_four_byte_units() {
    let ah = [
        6, 4, 0, 0, // next TCP, payload length 4 → (4 + 2) × 4 = 24 bytes, reserved
        0, 0, 0x10, 0x01, // SPI
        0, 0, 0, 0x2a, // sequence number
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ICV (12 bytes)
    ];
    let ip = ipv6_hdr(24 + 20, 51);
    let m = eth(&eth_ipv6(&ip, &[&ah[..], &TCP_ACK_PSH].concat())).unwrap();
    assert_eq!((m.ip6_first_next_header, m.ip_proto), (51, ip_proto::TCP));
    assert_eq!(m.l4_offset, 14 + 40 + 24);
    assert_eq!((m.transport, m.src_port), (Transport::Parsed, 443));
}

/// `n` destination-options headers (8 bytes each) chained to No Next Header.
fn dest_opts_chain(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..n {
        let next = if i + 1 == n { 59 } else { 60 };
        v.extend_from_slice(&[next, 0, 0x01, 0x04, 0, 0, 0, 0]);
    }
    v
}

#[test]
fn eight_ipv6_extension_headers_are_walked() {
    let chain = dest_opts_chain(8);
    let ip = ipv6_hdr(64, 60);
    let m = eth(&eth_ipv6(&ip, &chain)).unwrap();
    assert_eq!((m.ip_proto, m.transport), (59, Transport::Absent));
    assert_eq!(m.l4_offset, 14 + 40 + 64);
}

#[test]
fn nine_ipv6_extension_headers_are_rejected() {
    let chain = dest_opts_chain(9);
    let ip = ipv6_hdr(72, 60);
    assert_eq!(eth(&eth_ipv6(&ip, &chain)), Err(Malformed::TooManyIpv6Extensions));
}

#[test]
fn ipv6_extension_header_cut_short_is_rejected() {
    // Hop-by-hop claims 16 bytes; the IPv6 payload is 8.
    let ip = ipv6_hdr(8, 0);
    let hbh = [17, 1, 0x01, 0x04, 0, 0, 0, 0];
    assert_eq!(eth(&eth_ipv6(&ip, &hbh)), Err(Malformed::TruncatedIpv6Extension));
    // Fragment header with only 4 of its 8 bytes captured (frame cut by a snap length).
    let ip = ipv6_hdr(8, 44);
    let f = eth_ipv6(&ip, &[17, 0, 0, 1]);
    assert_eq!(dec_wire(LinkType::Ethernet, &f, 62), Err(Malformed::TruncatedIpv6Extension));
}

#[test]
fn esp_ends_the_ipv6_header_walk() {
    let ip = ipv6_hdr(16, 50);
    let m = eth(&eth_ipv6(&ip, &[0x00, 0x00, 0x10, 0x01, 0, 0, 0, 1, 9, 9, 9, 9, 9, 9, 9, 9])).unwrap();
    assert_eq!((m.ip_proto, m.transport, m.payload_len), (50, Transport::Absent, 16));
}

#[test]
fn ipv6_header_with_another_version_is_bad_version() {
    let ip = patch(&IPV6_UDP_HDR, 0, &[0x4b]);
    assert_eq!(eth(&eth_ipv6(&ip, &UDP_DNS)), Err(Malformed::BadIpVersion));
}

#[test]
fn ipv6_shorter_than_fixed_header_is_truncated() {
    assert_eq!(eth(&eth_ipv6(&IPV6_UDP_HDR[..39], &[])), Err(Malformed::TruncatedIpv6));
}

#[test]
fn ipv6_payload_length_beyond_the_frame_is_rejected() {
    let ip = ipv6_hdr(13, 17);
    assert_eq!(eth(&eth_ipv6(&ip, &UDP_DNS)), Err(Malformed::IpLengthExceedsFrame));
}

#[test]
fn ipv6_jumbogram_length_runs_to_the_end_of_the_wire_frame() {
    let ip = ipv6_hdr(0, 0); // payload length 0, hop-by-hop first
    let hbh = [17, 0, 0xc2, 0x04, 0x00, 0x01, 0x00, 0x10]; // Jumbo Payload option, 65552
    let udp = [0x04, 0xd2, 0x00, 0x35, 0x00, 0x00, 0x00, 0x00]; // UDP length 0 (RFC 2675 §4)
    let f = eth_ipv6(&ip, &[&hbh[..], &udp].concat());
    // Captured 70 of 65,606 bytes on the wire.
    let m = dec_wire(LinkType::Ethernet, &f, 14 + 40 + 65_552).unwrap();
    assert_eq!(m.ip_len, 40 + 65_552);
    assert_eq!(m.payload_len, 65_552 - 8 - 8);
    assert_eq!((m.transport, m.anomaly, m.dst_port), (Transport::Parsed, None, 53));
    // Captured whole: the length is what was captured.
    let m = eth(&f).unwrap();
    assert_eq!((m.ip_len, m.payload_len), (56, 0));
}

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

#[test]
fn tcp_flags_include_the_ns_bit() {
    // Byte 12 = 0x51: data offset 5, NS set; byte 13 = 0xff: all eight classic flags.
    let tcp = patch(&TCP_ACK_PSH, 12, &[0x51, 0xff]);
    let m = eth(&eth_ipv4(&ipv4_hdr(40, 6, 0), &tcp)).unwrap();
    assert_eq!(m.tcp_flags, 0x1ff);
    assert!(m.tcp_has(tcp_flags::NS | tcp_flags::CWR | tcp_flags::ECE | tcp_flags::FIN));
    // Reserved bits (byte 12, bits 1..3) are not flags.
    let tcp = patch(&TCP_ACK_PSH, 12, &[0x5e, 0x02]);
    assert_eq!(eth(&eth_ipv4(&ipv4_hdr(40, 6, 0), &tcp)).unwrap().tcp_flags, tcp_flags::SYN);
}

#[test]
fn tcp_options_move_the_payload_offset() {
    let tcp = [
        &patch(&TCP_ACK_PSH, 12, &[0x60])[..], // data offset 6 (24 bytes)
        &[0x02, 0x04, 0x05, 0xb4],             // MSS 1460
        b"GET ",                               // payload
    ]
    .concat();
    let m = eth(&eth_ipv4(&ipv4_hdr(48, 6, 0), &tcp)).unwrap();
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (34, 58, 4));
}

#[test]
fn tcp_data_offset_below_five_is_an_anomaly() {
    let tcp = patch(&TCP_ACK_PSH, 12, &[0x40]);
    let m = eth(&eth_ipv4(&ipv4_hdr(40, 6, 0), &tcp)).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::BadTcpDataOffset)));
    assert_eq!((m.src_port, m.dst_port, m.tcp_flags), (0, 0, 0));
    assert!(!m.tcp_has(tcp_flags::ACK));
}

#[test]
fn tcp_data_offset_beyond_the_ip_payload_is_an_anomaly() {
    let tcp = patch(&TCP_ACK_PSH, 12, &[0x60]); // 24-byte header in a 20-byte segment
    let m = eth(&eth_ipv4(&ipv4_hdr(40, 6, 0), &tcp)).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::BadTcpDataOffset)));
}

#[test]
fn tcp_options_cut_by_a_snap_length_still_decode_the_header() {
    // A SYN with 20 bytes of options (74 bytes on the wire), captured with snap length 64.
    let tcp = patch(&TCP_ACK_PSH, 12, &[0xa0, 0x02]); // data offset 10, SYN
    let mut f = eth_ipv4(&ipv4_hdr(60, 6, 0), &[&tcp[..], &[1u8; 20]].concat());
    f.truncate(64);
    let m = dec_wire(LinkType::Ethernet, &f, 74).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Parsed, None));
    assert_eq!((m.tcp_flags, m.dst_port), (tcp_flags::SYN, 50000));
    assert_eq!((m.payload_offset, m.payload_len), (64, 0));
}

#[test]
fn udp_decodes_ports_and_payload() {
    let m = eth(&eth_ipv4_udp()).unwrap();
    assert_eq!((m.ip_proto, m.transport, m.anomaly), (ip_proto::UDP, Transport::Parsed, None));
    assert_eq!((m.src_port, m.dst_port), (1234, 53));
    assert_eq!((m.l4_offset, m.payload_offset, m.payload_len), (34, 42, 4));
    assert_eq!((m.tcp_flags, m.tcp_seq), (0, 0));
}

#[test]
fn udp_length_below_eight_keeps_the_ports_with_an_anomaly() {
    let f = patch(&eth_ipv4_udp(), 38, &[0x00, 0x07]);
    let m = eth(&f).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Parsed, Some(Malformed::BadUdpLength)));
    assert_eq!((m.src_port, m.dst_port, m.payload_len), (1234, 53, 4));
}

#[test]
fn udp_length_beyond_the_ip_payload_keeps_the_ports_with_an_anomaly() {
    let f = patch(&eth_ipv4_udp(), 38, &[0x00, 0x0d]); // 13 > 12
    let m = eth(&f).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Parsed, Some(Malformed::BadUdpLength)));
    assert_eq!((m.src_port, m.dst_port), (1234, 53));
    // A UDP length shorter than the IP payload is legal (trailing bytes).
    let f = patch(&eth_ipv4_udp(), 38, &[0x00, 0x08]);
    assert_eq!(eth(&f).unwrap().anomaly, None);
}

#[test]
fn icmp_echo_request_has_type_and_code() {
    let icmp = [0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x01]; // echo request, id 1, seq 1
    let m = eth(&eth_ipv4(&ipv4_hdr(28, 1, 0), &icmp)).unwrap();
    assert_eq!((m.icmp_type, m.icmp_code, m.transport), (8, 0, Transport::Parsed));
    assert_eq!((m.src_port, m.dst_port), (0, 0));
    assert!(!m.has_ports());
    assert_eq!((m.payload_offset, m.payload_len), (38, 4));
}

#[test]
fn icmpv6_neighbor_solicitation_has_type_and_code() {
    let icmp6 = [135, 0, 0x12, 0x34, 0, 0, 0, 0]; // neighbor solicitation (target omitted)
    let m = eth(&eth_ipv6(&ipv6_hdr(8, 58), &icmp6)).unwrap();
    assert_eq!((m.ip_proto, m.icmp_type, m.icmp_code), (ip_proto::ICMPV6, 135, 0));
    assert_eq!(m.transport, Transport::Parsed);
}

#[test]
fn icmp_protocol_numbers_are_read_only_in_their_own_family() {
    let icmp = [0x08, 0x00, 0, 0, 0, 1, 0, 1];
    let m = eth(&eth_ipv6(&ipv6_hdr(8, 1), &icmp)).unwrap();
    assert_eq!((m.transport, m.icmp_type), (Transport::Absent, 0));
    let m = eth(&eth_ipv4(&ipv4_hdr(28, 58, 0), &icmp)).unwrap();
    assert_eq!((m.transport, m.icmp_type), (Transport::Absent, 0));
}

#[test]
fn sctp_common_header_gives_ports() {
    let sctp = [
        0x0b, 0x59, 0x0e, 0x7c, // src port 2905, dst port 3708
        0x00, 0x00, 0x00, 0x00, // verification tag
        0x12, 0x34, 0x56, 0x78, // checksum
    ];
    let m = eth(&eth_ipv4(&ipv4_hdr(32, 132, 0), &sctp)).unwrap();
    assert_eq!((m.ip_proto, m.transport), (ip_proto::SCTP, Transport::Parsed));
    assert_eq!((m.src_port, m.dst_port), (2905, 3708));
    assert!(m.has_ports());
    assert_eq!((m.payload_offset, m.payload_len), (46, 0));
    // Eleven bytes are not a common header.
    let m = eth(&eth_ipv4(&ipv4_hdr(31, 132, 0), &sctp[..11])).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::TruncatedTransport)));
    assert_eq!((m.src_port, m.dst_port), (0, 0));
}

#[test]
fn transport_cut_by_a_snap_length_is_truncated() {
    let mut f = eth_ipv4(&ipv4_hdr(40, 6, 0), &TCP_ACK_PSH);
    f.truncate(14 + 20 + 10);
    let m = dec_wire(LinkType::Ethernet, &f, 54).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::TruncatedTransport)));
    assert_eq!((m.src_port, m.tcp_flags), (0, 0));
    assert_eq!((m.ip_len, m.l4_offset, m.payload_offset, m.payload_len), (40, 34, 44, 0));
}

#[test]
fn transport_cut_by_the_ip_length_is_truncated() {
    // Total length 30: only 10 of the 20 TCP bytes belong to the datagram; the rest of the
    // captured bytes are padding.
    let f = eth_ipv4(&ipv4_hdr(30, 6, 0), &TCP_ACK_PSH);
    let m = eth(&f).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::TruncatedTransport)));
    assert_eq!(m.payload_offset, 44);
    // UDP whose datagram ends inside the header.
    let m = eth(&eth_ipv4(&ipv4_hdr(24, 17, 0), &UDP_DNS)).unwrap();
    assert_eq!((m.transport, m.anomaly), (Transport::Truncated, Some(Malformed::TruncatedTransport)));
    // ICMP with 3 bytes.
    let m = eth(&eth_ipv4(&ipv4_hdr(23, 1, 0), &[8, 0, 0])).unwrap();
    assert_eq!((m.transport, m.icmp_type), (Transport::Truncated, 0));
}

// ---------------------------------------------------------------------------------------------
// Other link types
// ---------------------------------------------------------------------------------------------

#[test]
fn raw_link_picks_ipv4_from_the_version_nibble() {
    let f = [&IPV4_UDP_HDR[..], &UDP_DNS].concat();
    let m = dec(LinkType::Raw, &f).unwrap();
    assert_eq!((m.network, m.ethertype, m.l3_offset, m.l4_offset), (Network::Ipv4, 0x0800, 0, 20));
    assert_eq!(m.src, v4("10.0.0.1"));
}

#[test]
fn raw_link_picks_ipv6_from_the_version_nibble() {
    let f = [&IPV6_UDP_HDR[..], &UDP_DNS].concat();
    let m = dec(LinkType::Raw, &f).unwrap();
    assert_eq!((m.network, m.ethertype, m.l4_offset), (Network::Ipv6, 0x86dd, 40));
}

#[test]
fn raw_link_with_another_version_is_bad_version() {
    let f = patch(&IPV4_UDP_HDR, 0, &[0x55]);
    assert_eq!(dec(LinkType::Raw, &f), Err(Malformed::BadIpVersion));
}

#[test]
fn ipv4_and_ipv6_link_types_read_bare_packets() {
    let f4 = [&IPV4_UDP_HDR[..], &UDP_DNS].concat();
    let f6 = [&IPV6_UDP_HDR[..], &UDP_DNS].concat();
    assert_eq!(dec(LinkType::Ipv4, &f4).unwrap().network, Network::Ipv4);
    assert_eq!(dec(LinkType::Ipv6, &f6).unwrap().network, Network::Ipv6);
    // The link type fixes the version: a mismatch is a bad version.
    assert_eq!(dec(LinkType::Ipv4, &f6), Err(Malformed::BadIpVersion));
    assert_eq!(dec(LinkType::Ipv6, &[&f4[..], &[0; 20]].concat()), Err(Malformed::BadIpVersion));
}

/// Linux cooked v1 header for an Ethernet device, protocol IPv4.
const SLL_IPV4: [u8; 16] = [
    0x00, 0x00, // packet type: to us
    0x00, 0x01, // ARPHRD_ETHER
    0x00, 0x06, // link-layer address length
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // link-layer address, padded to 8
    0x08, 0x00, // protocol: IPv4
];

#[test]
fn linux_sll_reads_the_protocol_as_ethertype() {
    let f = [&SLL_IPV4[..], &IPV4_UDP_HDR, &UDP_DNS].concat();
    let m = dec(LinkType::LinuxSll, &f).unwrap();
    assert_eq!((m.network, m.l3_offset, m.l4_offset, m.dst_port), (Network::Ipv4, 16, 36, 53));
    assert_eq!(dec(LinkType::LinuxSll, &f[..15]), Err(Malformed::TruncatedSll));
}

#[test]
fn linux_sll_with_a_vlan_protocol_reads_the_tag() {
    let f = [&patch(&SLL_IPV4, 14, &[0x81, 0x00])[..], &[0x00, 0x2a, 0x08, 0x00], &IPV4_UDP_HDR, &UDP_DNS]
        .concat();
    let m = dec(LinkType::LinuxSll, &f).unwrap();
    assert_eq!((m.vlan_count, m.vlan, m.l3_offset), (1, [42, 0], 20));
    assert_eq!(m.network, Network::Ipv4);
}

#[test]
fn linux_sll_non_ethertype_protocol_is_other() {
    let f = [&patch(&SLL_IPV4, 14, &[0x00, 0x04])[..], &[0xaa, 0xaa, 0x03]].concat(); // ETH_P_802_2
    assert_eq!(dec(LinkType::LinuxSll, &f).unwrap().network, Network::Other);
}

/// Linux cooked v2 header, protocol IPv6.
const SLL2_IPV6: [u8; 20] = [
    0x86, 0xdd, // protocol: IPv6
    0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x02, // interface index 2
    0x00, 0x01, // ARPHRD_ETHER
    0x04, // packet type: outgoing
    0x06, // link-layer address length
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // link-layer address, padded to 8
];

#[test]
fn linux_sll2_reads_the_protocol_from_the_first_field() {
    let f = [&SLL2_IPV6[..], &IPV6_UDP_HDR, &UDP_DNS].concat();
    let m = dec(LinkType::LinuxSll2, &f).unwrap();
    assert_eq!((m.network, m.l3_offset, m.l4_offset, m.src_port), (Network::Ipv6, 20, 60, 1234));
    assert_eq!(dec(LinkType::LinuxSll2, &f[..19]), Err(Malformed::TruncatedSll));
}

#[test]
fn empty_frame_is_truncated_at_the_first_layer_for_every_link_type() {
    let cases = [
        (LinkType::Ethernet, Malformed::TruncatedEthernet),
        (LinkType::LinuxSll, Malformed::TruncatedSll),
        (LinkType::LinuxSll2, Malformed::TruncatedSll),
        (LinkType::Raw, Malformed::TruncatedIpv4),
        (LinkType::Ipv4, Malformed::TruncatedIpv4),
        (LinkType::Ipv6, Malformed::TruncatedIpv6),
    ];
    for (link, want) in cases {
        assert_eq!(dec_wire(link, &[], 0), Err(want), "{link:?}");
        assert_eq!(shard_hash(link, &[]), 0);
    }
}

#[test]
fn frames_longer_than_64_kib_decode_without_overflow() {
    // An IPv4 datagram of 65535 bytes inside a 100,000-byte captured frame (trailing bytes).
    let ip = patch(&IPV4_UDP_HDR, 2, &u16::MAX.to_be_bytes());
    let udp = [0x04, 0xd2, 0x00, 0x35, 0xff, 0xeb, 0x00, 0x00]; // UDP length 65515
    let mut f = eth_ipv4(&ip, &udp);
    f.resize(100_000, 0);
    let m = eth(&f).unwrap();
    assert_eq!((m.cap_len, m.ip_len, m.payload_len, m.anomaly), (100_000, 65_535, 65_507, None));
    // Unknown EtherType over 100,000 bytes.
    let mut f = [&MACS[..], &[0x88, 0xb5]].concat();
    f.resize(100_000, 0xff);
    assert_eq!(eth(&f).unwrap().payload_offset, 14);
}

// ---------------------------------------------------------------------------------------------
// shard_hash and counting
// ---------------------------------------------------------------------------------------------

#[test]
fn shard_hash_reads_the_source_through_vlan_tags_and_cooked_headers() {
    let want = v4("10.0.0.1").shard_hash();
    assert_ne!(want, 0);
    assert_eq!(shard_hash(LinkType::Ethernet, &eth_ipv4_udp()), want);
    let tagged =
        [&MACS[..], &[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00], &IPV4_UDP_HDR, &UDP_DNS].concat();
    assert_eq!(shard_hash(LinkType::Ethernet, &tagged), want);
    assert_eq!(shard_hash(LinkType::LinuxSll, &[&SLL_IPV4[..], &IPV4_UDP_HDR, &UDP_DNS].concat()), want);
    assert_eq!(shard_hash(LinkType::Raw, &[&IPV4_UDP_HDR[..], &UDP_DNS].concat()), want);
    let v6 = [&SLL2_IPV6[..], &IPV6_UDP_HDR, &UDP_DNS].concat();
    assert_eq!(
        shard_hash(LinkType::LinuxSll2, &v6),
        "2001:db8::1".parse::<IpAddress>().unwrap().shard_hash()
    );
}

#[test]
fn shard_hash_is_zero_for_arp_other_and_malformed_frames() {
    assert_eq!(shard_hash(LinkType::Ethernet, &ETH_ARP_REQUEST), 0);
    assert_eq!(shard_hash(LinkType::Ethernet, &[&MACS[..], &[0x88, 0xcc, 0, 0]].concat()), 0);
    let bad_ihl = eth_ipv4(&patch(&IPV4_UDP_HDR, 0, &[0x43]), &UDP_DNS);
    assert_eq!(shard_hash(LinkType::Ethernet, &bad_ihl), 0);
    assert_eq!(shard_hash(LinkType::Ethernet, &ETH_IPV4_TCP_SYN[..30]), 0);
}

#[test]
fn decoder_counts_decoded_rejected_and_anomalous_frames() {
    let mut d = Decoder::default();
    let udp = eth_ipv4_udp();
    let bad_udp = patch(&udp, 38, &[0x00, 0x07]);
    assert!(d.decode(LinkType::Ethernet, &udp, TS, 46).is_some());
    assert!(d.decode(LinkType::Ethernet, &bad_udp, TS, 46).is_some());
    assert!(d.decode(LinkType::Ethernet, &ETH_ARP_REQUEST, TS, 42).is_some());
    assert!(d.decode(LinkType::Ethernet, &udp[..20], TS, 20).is_none());
    let s = &d.stats;
    assert_eq!((s.frames, s.ipv4, s.arp, s.rejected), (4, 2, 1, 1));
    let reasons: Vec<_> = s.malformed_by_reason().collect();
    assert_eq!(reasons, vec![("truncated_ipv4", 1), ("bad_udp_length", 1)]);
}

#[test]
fn a_first_udp_fragment_whose_length_covers_the_whole_datagram_is_no_anomaly() {
    use std::net::IpAddr;
    for (src, dst) in [("10.0.0.1", "10.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
        let b = first_udp_fragment_frame(src.parse::<IpAddr>().unwrap(), dst.parse::<IpAddr>().unwrap());
        let first = decode(LinkType::Ethernet, &b, Nanos(0), b.len() as u32).unwrap();
        assert_eq!(first.fragment, Fragment::First);
        assert_eq!((first.transport, first.anomaly), (Transport::Parsed, None), "{src}");
        assert_eq!((first.src_port, first.dst_port), (5353, 53));
    }
}

/// An Ethernet frame holding the first fragment (offset 0, more fragments) of a UDP datagram
/// whose UDP length (3008) is larger than the fragment's payload.
fn first_udp_fragment_frame(src: std::net::IpAddr, dst: std::net::IpAddr) -> Vec<u8> {
    let udp = {
        let mut u = vec![0u8; 8 + 1192];
        u[0..2].copy_from_slice(&5353u16.to_be_bytes());
        u[2..4].copy_from_slice(&53u16.to_be_bytes());
        u[4..6].copy_from_slice(&3008u16.to_be_bytes());
        u
    };
    match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            let mut ip = ipv4_hdr(u16::try_from(20 + udp.len()).unwrap(), 17, 0x2000); // MF, offset 0
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            eth_ipv4(&ip, &udp)
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            let mut ip = ipv6_hdr(u16::try_from(8 + udp.len()).unwrap(), 44);
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            let mut payload = vec![17, 0, 0x00, 0x01, 0, 0, 0, 7]; // fragment header: offset 0, M
            payload.extend_from_slice(&udp);
            eth_ipv6(&ip, &payload)
        }
        _ => unreachable!("same family"),
    }
}
