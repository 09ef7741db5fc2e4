//! The structural guarantees every successful [`crate::decode`] result satisfies, as a
//! checkable function.
//!
//! The unit tests, the property tests and the fuzz target call [`check_invariants`] on every
//! `Ok` they see, so the promises written here are the ones the decoder is held to. Other stages
//! may rely on them without re-checking (e.g. slicing `frame[meta.payload_offset as usize..]`
//! cannot panic for the frame that was decoded).

use crate::meta::{Fragment, Malformed, Network, PacketMeta, Transport, ethertype, ip_proto};

/// Minimal header length of a transport protocol the decoder reads, for the family.
fn min_transport_header(proto: u8, network: Network) -> Option<usize> {
    match (proto, network) {
        (ip_proto::TCP, _) => Some(20),
        (ip_proto::UDP, _) => Some(8),
        (ip_proto::ICMP, Network::Ipv4) | (ip_proto::ICMPV6, Network::Ipv6) => Some(4),
        (ip_proto::SCTP, _) => Some(12),
        _ => None,
    }
}

/// Checks that `meta`, decoded from `frame`, keeps the decoder's promises:
///
/// - `cap_len` is `frame.len()` (saturated to `u32`); `vlan_count ≤ 2`, unused VLAN slots are
///   zero and VLAN ids have 12 bits;
/// - `l3_offset ≤ l4_offset ≤ payload_offset ≤ cap_len`;
/// - non-IP frames have no IP lengths, no transport and all offsets equal to `l3_offset`;
/// - IP frames: the IP headers (20+ bytes for IPv4, 40+ for IPv6) lie within `ip_len`, and
///   `ip_len` within the frame on the wire; `payload_len` fits in the IP payload;
/// - `Parsed` transport: the protocol's minimal header lies within the captured bytes and the
///   IP payload; otherwise ports, TCP fields and ICMP type/code are zero;
/// - later fragments have no transport; `Truncated` goes with a `TruncatedTransport` or
///   `BadTcpDataOffset` anomaly and the only anomaly of a `Parsed` transport is a UDP
///   `BadUdpLength`.
///
/// # Errors
/// A short description of the first broken promise.
pub fn check_invariants(frame: &[u8], meta: &PacketMeta) -> Result<(), &'static str> {
    let cap = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    ensure(meta.cap_len == cap, "cap_len differs from frame length")?;
    ensure(meta.vlan_count <= 2, "more than two VLAN tags")?;
    for (i, &vid) in meta.vlan.iter().enumerate() {
        ensure(vid <= 0x0fff, "VLAN id wider than 12 bits")?;
        ensure(i < usize::from(meta.vlan_count) || vid == 0, "unused VLAN slot not zero")?;
    }
    let (l3, l4, pay) =
        (usize::from(meta.l3_offset), usize::from(meta.l4_offset), usize::from(meta.payload_offset));
    ensure(l3 <= l4 && l4 <= pay && pay <= frame.len(), "offsets out of order or beyond the frame")?;

    let not_parsed_fields_zero = meta.src_port == 0
        && meta.dst_port == 0
        && meta.tcp_flags == 0
        && meta.tcp_seq == 0
        && meta.tcp_ack == 0
        && meta.tcp_window == 0
        && meta.icmp_type == 0
        && meta.icmp_code == 0;

    if !meta.is_ip() {
        ensure(meta.ip_len == 0 && meta.payload_len == 0, "non-IP frame has IP lengths")?;
        ensure(meta.transport == Transport::Absent, "non-IP frame has a transport")?;
        ensure(meta.anomaly.is_none(), "non-IP frame has an anomaly")?;
        ensure(l3 == l4 && l4 == pay, "non-IP frame has distinct L4/payload offsets")?;
        ensure(not_parsed_fields_zero && meta.ip_proto == 0, "non-IP frame has transport fields")?;
        if meta.network == Network::Arp {
            ensure(meta.ethertype == ethertype::ARP, "ARP without the ARP EtherType")?;
        } else {
            ensure(meta.arp_op == 0, "an ARP operation outside ARP")?;
        }
        return Ok(());
    }
    ensure(meta.arp_op == 0, "an ARP operation outside ARP")?;

    let (min_ip, et) = match meta.network {
        Network::Ipv4 => (20, ethertype::IPV4),
        _ => (40, ethertype::IPV6),
    };
    ensure(meta.ethertype == et, "IP family and EtherType disagree")?;
    if meta.network == Network::Ipv4 {
        ensure(meta.src.is_v4() && meta.dst.is_v4(), "IPv4 addresses not stored IPv4-mapped")?;
        ensure(meta.ip6_first_next_header == meta.ip_proto, "IPv4 first next header differs")?;
    }
    let ip_len = usize::try_from(meta.ip_len).unwrap_or(usize::MAX);
    let ip_headers = l4 - l3;
    ensure(ip_headers >= min_ip, "IP header shorter than the minimum")?;
    ensure(ip_headers <= ip_len, "IP headers extend beyond the IP length")?;
    let wire = usize::try_from(meta.wire_len).unwrap_or(usize::MAX).max(frame.len());
    ensure(ip_len <= wire.saturating_sub(l3), "IP length beyond the frame on the wire")?;
    let l4_len = ip_len - ip_headers;
    ensure(usize::try_from(meta.payload_len).unwrap_or(usize::MAX) <= l4_len, "payload beyond IP payload")?;

    match meta.transport {
        Transport::Parsed => {
            let Some(min) = min_transport_header(meta.ip_proto, meta.network) else {
                return Err("parsed transport of an undecoded protocol");
            };
            ensure(l4 + min <= frame.len(), "parsed transport header beyond the captured bytes")?;
            ensure(min <= l4_len, "parsed transport header beyond the IP payload")?;
            ensure(pay >= l4 + min, "payload starts inside the transport header")?;
            match meta.anomaly {
                None => {}
                Some(Malformed::BadUdpLength) if meta.ip_proto == ip_proto::UDP => {}
                Some(_) => return Err("parsed transport with an unexpected anomaly"),
            }
            if meta.ip_proto != ip_proto::TCP {
                ensure(
                    meta.tcp_flags == 0 && meta.tcp_seq == 0 && meta.tcp_ack == 0,
                    "TCP fields on non-TCP",
                )?;
            }
            if !meta.has_ports() {
                ensure(meta.src_port == 0 && meta.dst_port == 0, "ports without a port protocol")?;
            }
        }
        Transport::Truncated => {
            ensure(not_parsed_fields_zero, "truncated transport has header fields")?;
            ensure(
                matches!(meta.anomaly, Some(Malformed::TruncatedTransport | Malformed::BadTcpDataOffset)),
                "truncated transport without a matching anomaly",
            )?;
            ensure(
                min_transport_header(meta.ip_proto, meta.network).is_some(),
                "truncated unknown protocol",
            )?;
        }
        Transport::Absent => {
            ensure(not_parsed_fields_zero, "absent transport has header fields")?;
            ensure(meta.anomaly.is_none(), "absent transport with an anomaly")?;
            ensure(pay == l4, "absent transport with a payload offset past L4")?;
        }
    }
    if meta.fragment == Fragment::Later {
        ensure(meta.transport == Transport::Absent, "later fragment with a transport")?;
        ensure(meta.frag_offset > 0, "later fragment at offset zero")?;
    }
    Ok(())
}

#[inline]
fn ensure(ok: bool, what: &'static str) -> Result<(), &'static str> {
    if ok { Ok(()) } else { Err(what) }
}
