//! Frame decoding: link layer → IPv4 / IPv6 (with extension headers) / ARP → TCP, UDP, ICMP,
//! ICMPv6, SCTP, into a [`PacketMeta`].
//!
//! # Guarantees
//! - **No panics, whatever the bytes.** There is no `unsafe` and no slice indexing: headers are
//!   read through the checked views of [`crate::view`], built by one length check each, whose
//!   accessors read constant offsets proven in bounds at compile time. All arithmetic on lengths
//!   read from the frame is done in `usize` from `u8`/`u16` fields (it cannot overflow) or
//!   saturates.
//! - **No allocation, bounded work.** At most two VLAN tags and eight IPv6 extension headers are
//!   walked, so a frame costs a small constant amount of work.
//! - **Offsets stay inside the frame.** `l3_offset ≤ l4_offset ≤ payload_offset ≤ cap_len` for
//!   every `Ok` result (see [`crate::check_invariants`], which the tests and the fuzz target
//!   check on every decoded frame). Offsets always fit `u16`: the deepest header chain (two
//!   VLAN tags, eight 2 KiB extension headers, a 60-byte TCP header) ends below 17 KiB, and the
//!   conversion saturates regardless.
//! - [`shard_hash`] agrees with `decode(..).src.shard_hash()` for every frame that decodes as
//!   IPv4 or IPv6: both run the same link-layer walk and fixed-header checks.
//!
//! # Decisions where the RFCs leave room
//! - **Lengths come from the IP header.** `ip_len` and `payload_len` follow the IPv4 total length
//!   / IPv6 payload length, not the capture: Ethernet padding after the datagram is ignored, and
//!   a frame cut by a snap length keeps the lengths it had on the wire. An IP length larger than
//!   the frame *on the wire* (`max(frame.len(), wire_len)` minus the link header) is rejected as
//!   [`Malformed::IpLengthExceedsFrame`]; for an uncut frame that is exactly "more than the
//!   captured bytes after L3".
//! - **IPv6 jumbograms** (RFC 2675): a zero payload length with a hop-by-hop header first is
//!   taken to run to the end of the frame on the wire, so `ip_len` is the wire bytes from L3
//!   on. The Jumbo Payload option itself is not read. In such a packet a UDP length of 0 is
//!   legal (RFC 2675 §4) and not flagged.
//! - **UDP length out of range** (below 8, or beyond the IP payload — except in a first
//!   fragment, whose UDP length covers the whole reassembled datagram): the header is still
//!   decoded — `transport` is `Parsed`, the ports are kept — and `anomaly` is
//!   [`Malformed::BadUdpLength`]. The ports are intact and useful for flows and detection;
//!   `payload_len` keeps following the IP length.
//! - **TCP data offset** below 5 or beyond the IP payload: `transport` is `Truncated` (ports
//!   and flags zero, as for every unread header) and `anomaly` is
//!   [`Malformed::BadTcpDataOffset`]. TCP options cut by a *snap length* (the data offset fits
//!   the IP payload but not the captured bytes) are not an anomaly: the fixed header was read,
//!   and `payload_offset` is clamped to the captured bytes.
//! - **Transport not read** (`Truncated`): `payload_offset` is where the protocol's minimal
//!   header would end (clamped to the captured datagram), `payload_len` the IP payload minus
//!   that minimal header, saturating. For `Absent` transports (later fragments, ESP, unknown
//!   protocols) the whole IP payload is payload: `payload_offset == l4_offset`.
//! - **ICMP/ICMPv6** headers are the 4 bytes of type, code and checksum (RFC 4443 §2.1); the
//!   rest of the message is payload. ICMP is read for protocol 1 over IPv4 only, ICMPv6 for 58
//!   over IPv6 only.
//! - **IPv6 fragment header**: `frag_id` and `frag_offset` come from it whenever it is present;
//!   an atomic fragment (offset 0, M clear, RFC 6946) is `Fragment::None`.
//! - **Non-IP frames** (ARP, other EtherTypes, 802.3 length frames): `l4_offset` and
//!   `payload_offset` equal `l3_offset`. For 802.3 frames `ethertype` holds the length field
//!   (< 0x0600). An empty `Raw` frame is [`Malformed::TruncatedIpv4`]: it has no version nibble.
//! - **ARP**: the 8-byte fixed part is required ([`Malformed::TruncatedArp`] otherwise) and
//!   gives the operation (`arp_op`); the Ethernet/IPv4 form additionally needs its 28 bytes
//!   and yields sender and target protocol addresses; other forms decode with unspecified
//!   addresses.

use crate::addr::IpAddress;
use crate::meta::{Fragment, LinkType, Malformed, Network, PacketMeta, Transport, ethertype, ip_proto};
use crate::time::Nanos;
use crate::view::{
    ArpEthernetIpv4, ArpHeader, EthernetHeader, IPV4_FRAG_OFFSET, IPV4_MF, IcmpHeader, Ipv4Header,
    Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Header, SctpHeader, Sll2Header, SllHeader, TcpHeader, UdpHeader,
    VlanTag,
};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

/// IPv6 next-header values of the extension headers walked (RFC 8200 §4, RFC 4302).
mod ipv6_next {
    pub(super) const HOP_BY_HOP: u8 = 0;
    pub(super) const ROUTING: u8 = 43;
    pub(super) const FRAGMENT: u8 = 44;
    pub(super) const AH: u8 = 51;
    pub(super) const DEST_OPTS: u8 = 60;
}

/// Most VLAN tags decoded (outer S-tag + inner C-tag).
const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before giving up.
const MAX_IPV6_EXTENSIONS: usize = 8;

/// Decodes one captured frame.
///
/// `frame` holds the captured bytes, `wire_len` the length on the wire (pcap `orig_len`,
/// ≥ `frame.len()` when a snap length cut the frame). Never panics, never allocates.
///
/// # Errors
/// The [`Malformed`] reason when the frame cannot be decoded up to the network layer.
#[inline]
pub fn decode(link: LinkType, frame: &[u8], ts: Nanos, wire_len: u32) -> Result<PacketMeta, Malformed> {
    let mut meta = PacketMeta::default();
    decode_into(&mut meta, link, frame, ts, wire_len)?;
    Ok(meta)
}

/// [`decode`] into a [`PacketMeta`] the caller holds (a slot of a batch), so the result is not
/// copied there afterwards. On success `meta` is exactly what [`decode`] returns; on error its
/// contents are unspecified.
///
/// # Errors
/// The [`Malformed`] reason when the frame cannot be decoded up to the network layer.
#[inline]
pub fn decode_into(
    meta: &mut PacketMeta,
    link: LinkType,
    frame: &[u8],
    ts: Nanos,
    wire_len: u32,
) -> Result<(), Malformed> {
    let l2 = link_layer(link, frame)?;
    *meta = PacketMeta {
        ts,
        wire_len,
        cap_len: sat_u32(frame.len()),
        ethertype: l2.ethertype,
        vlan: l2.vlan,
        vlan_count: l2.vlan_count,
        l3_offset: off_u16(l2.l3_offset),
        ..PacketMeta::default()
    };
    let l3 = frame.get(l2.l3_offset..).unwrap_or_default();
    // Bytes from the L3 header to the end of the frame as it was on the wire. A frame cut by a
    // snap length had `wire_len` bytes; an uncut one (or a bogus `wire_len` below the captured
    // length) had what we hold.
    let wire = usize::try_from(wire_len).unwrap_or(usize::MAX).max(frame.len());
    let wire_l3 = wire.saturating_sub(l2.l3_offset);
    match l2.ethertype {
        ethertype::IPV4 => decode_ipv4(meta, l3, l2.l3_offset, wire_l3)?,
        ethertype::IPV6 => decode_ipv6(meta, l3, l2.l3_offset, wire_l3)?,
        ethertype::ARP => decode_arp(meta, l3)?,
        _ => {
            meta.l4_offset = meta.l3_offset;
            meta.payload_offset = meta.l3_offset;
        }
    }
    Ok(())
}

/// Hash of the frame's source IP address ([`crate::IpAddress::shard_hash`]) for choosing a
/// worker, reading only the link and IP headers. Frames without an IP source (ARP, other
/// EtherTypes, malformed) hash to 0.
///
/// It runs the same link-layer walk and IP fixed-header checks as [`decode`], so every frame
/// that decodes as IPv4 or IPv6 hashes to `meta.src.shard_hash()`. Problems only `decode`
/// looks for (IP length against the wire length, IPv6 extension headers) do not zero the hash.
#[inline]
#[must_use]
pub fn shard_hash(link: LinkType, frame: &[u8]) -> u64 {
    let Ok(l2) = link_layer(link, frame) else {
        return 0;
    };
    let l3 = frame.get(l2.l3_offset..).unwrap_or_default();
    match l2.ethertype {
        ethertype::IPV4 => match ipv4_header(l3) {
            Ok((h, _, _)) => IpAddress::from_v4(h.src()).shard_hash(),
            Err(_) => 0,
        },
        ethertype::IPV6 => match ipv6_header(l3) {
            Ok(h) => IpAddress::from_v6(h.src()).shard_hash(),
            Err(_) => 0,
        },
        _ => 0,
    }
}

/// The two hashes a receive thread shards a frame by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShardHashes {
    /// Hash of the source address ([`crate::IpAddress::shard_hash`]).
    pub source: u64,
    /// Symmetric hash of the address pair ([`crate::IpAddress::pair_hash`]): the same for both
    /// directions of a conversation, and for all fragments of a datagram.
    pub pair: u64,
}

/// [`shard_hash`] and the pair hash in one pass over the link and IP headers. Frames without
/// IP addresses hash to zero in both; for every frame that decodes as IPv4 or IPv6, `source`
/// is `meta.src.shard_hash()` and `pair` is `IpAddress::pair_hash(&meta.src, &meta.dst)`.
#[inline]
#[must_use]
pub fn shard_hashes(link: LinkType, frame: &[u8]) -> ShardHashes {
    let Ok(l2) = link_layer(link, frame) else {
        return ShardHashes::default();
    };
    let l3 = frame.get(l2.l3_offset..).unwrap_or_default();
    let (src, dst) = match l2.ethertype {
        ethertype::IPV4 => match ipv4_header(l3) {
            Ok((h, _, _)) => (IpAddress::from_v4(h.src()), IpAddress::from_v4(h.dst())),
            Err(_) => return ShardHashes::default(),
        },
        ethertype::IPV6 => match ipv6_header(l3) {
            Ok(h) => (IpAddress::from_v6(h.src()), IpAddress::from_v6(h.dst())),
            Err(_) => return ShardHashes::default(),
        },
        _ => return ShardHashes::default(),
    };
    ShardHashes { source: src.shard_hash(), pair: IpAddress::pair_hash(&src, &dst) }
}

/// What the link layer told us.
#[derive(Debug)]
struct LinkLayer {
    /// EtherType after any VLAN tags (synthesised for raw IP link types).
    ethertype: u16,
    vlan: [u16; MAX_VLAN_TAGS],
    vlan_count: u8,
    /// Where the network header starts; never beyond the frame.
    l3_offset: usize,
}

impl LinkLayer {
    #[inline(always)]
    const fn bare_ip(ethertype: u16) -> LinkLayer {
        LinkLayer { ethertype, vlan: [0; MAX_VLAN_TAGS], vlan_count: 0, l3_offset: 0 }
    }
}

/// True for the TPIDs of 802.1Q, 802.1ad and the pre-standard QinQ tag.
#[inline(always)]
fn is_vlan_tpid(t: u16) -> bool {
    matches!(t, ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD)
}

/// Reads the link header and any VLAN tags (IEEE 802.1Q §9.6).
#[inline(always)]
fn link_layer(link: LinkType, frame: &[u8]) -> Result<LinkLayer, Malformed> {
    let (mut ethertype, mut offset) = match link {
        LinkType::Ethernet => {
            (EthernetHeader::new(frame).ok_or(Malformed::TruncatedEthernet)?.ethertype(), EthernetHeader::LEN)
        }
        LinkType::LinuxSll => {
            (SllHeader::new(frame).ok_or(Malformed::TruncatedSll)?.protocol(), SllHeader::LEN)
        }
        LinkType::LinuxSll2 => {
            (Sll2Header::new(frame).ok_or(Malformed::TruncatedSll)?.protocol(), Sll2Header::LEN)
        }
        LinkType::Ipv4 => return Ok(LinkLayer::bare_ip(ethertype::IPV4)),
        LinkType::Ipv6 => return Ok(LinkLayer::bare_ip(ethertype::IPV6)),
        LinkType::Raw => {
            return match frame.first().map(|b| b >> 4) {
                Some(4) => Ok(LinkLayer::bare_ip(ethertype::IPV4)),
                Some(6) => Ok(LinkLayer::bare_ip(ethertype::IPV6)),
                Some(_) => Err(Malformed::BadIpVersion),
                None => Err(Malformed::TruncatedIpv4),
            };
        }
    };
    let mut vlan = [0u16; MAX_VLAN_TAGS];
    let mut vlan_count = 0u8;
    while is_vlan_tpid(ethertype) {
        let Some(slot) = vlan.get_mut(usize::from(vlan_count)) else {
            return Err(Malformed::TooManyVlanTags);
        };
        let tag = frame.get(offset..).and_then(VlanTag::new).ok_or(Malformed::TruncatedVlan)?;
        *slot = tag.vid();
        ethertype = tag.ethertype();
        offset += VlanTag::LEN;
        vlan_count += 1;
    }
    Ok(LinkLayer { ethertype, vlan, vlan_count, l3_offset: offset })
}

/// Validates an IPv4 header (RFC 791 §3.1): the view, its header length and total length.
#[inline(always)]
fn ipv4_header(l3: &[u8]) -> Result<(Ipv4Header<'_>, usize, usize), Malformed> {
    let h = Ipv4Header::new(l3).ok_or(Malformed::TruncatedIpv4)?;
    if h.version() != 4 {
        return Err(Malformed::BadIpVersion);
    }
    let header_len = h.header_len();
    if header_len < Ipv4Header::LEN {
        return Err(Malformed::BadIpv4HeaderLength);
    }
    if header_len > l3.len() {
        return Err(Malformed::TruncatedIpv4);
    }
    let total_len = usize::from(h.total_len());
    if total_len < header_len {
        return Err(Malformed::BadIpv4TotalLength);
    }
    Ok((h, header_len, total_len))
}

/// Validates the fixed IPv6 header (RFC 8200 §3).
#[inline(always)]
fn ipv6_header(l3: &[u8]) -> Result<Ipv6Header<'_>, Malformed> {
    let h = Ipv6Header::new(l3).ok_or(Malformed::TruncatedIpv6)?;
    if h.version() != 6 {
        return Err(Malformed::BadIpVersion);
    }
    Ok(h)
}

#[inline(always)]
fn decode_ipv4(meta: &mut PacketMeta, l3: &[u8], l3_offset: usize, wire_l3: usize) -> Result<(), Malformed> {
    let (h, header_len, total_len) = ipv4_header(l3)?;
    if total_len > wire_l3 {
        return Err(Malformed::IpLengthExceedsFrame);
    }
    let flags_frag = h.flags_frag();
    let frag_offset = flags_frag & IPV4_FRAG_OFFSET;
    let proto = h.protocol();
    meta.network = Network::Ipv4;
    meta.src = IpAddress::from_v4(h.src());
    meta.dst = IpAddress::from_v4(h.dst());
    meta.ip_len = u32::from(h.total_len());
    meta.ip_proto = proto;
    meta.ip6_first_next_header = proto;
    meta.ttl = h.ttl();
    meta.tos = h.tos();
    meta.frag_id = u32::from(h.ident());
    meta.frag_offset = frag_offset;
    meta.ip_options = header_len > Ipv4Header::LEN;
    // The captured bytes of the datagram: Ethernet padding after the total length is not ours.
    // `header_len ≤ min(total_len, l3.len())`, so the header ends inside `datagram`.
    let datagram = l3.get(..total_len).unwrap_or(l3);
    let l4 = datagram.get(header_len..).unwrap_or_default();
    let l4_offset = l3_offset + header_len;
    let l4_len = total_len - header_len;
    if frag_offset != 0 {
        meta.fragment = Fragment::Later;
        no_transport(meta, l4_offset, l4_len);
    } else {
        if flags_frag & IPV4_MF != 0 {
            meta.fragment = Fragment::First;
        }
        transport(meta, l4, l4_offset, l4_len, IpFamily::V4, false);
    }
    Ok(())
}

#[inline]
fn decode_ipv6(meta: &mut PacketMeta, l3: &[u8], l3_offset: usize, wire_l3: usize) -> Result<(), Malformed> {
    let h = ipv6_header(l3)?;
    let first_next = h.next_header();
    let payload_len = usize::from(h.payload_len());
    let jumbo = payload_len == 0 && first_next == ipv6_next::HOP_BY_HOP;
    // `wire_l3 ≥ l3.len() ≥ 40`, so a jumbogram's length covers its fixed header.
    let ip_len = if jumbo { wire_l3 } else { Ipv6Header::LEN + payload_len };
    if ip_len > wire_l3 {
        return Err(Malformed::IpLengthExceedsFrame);
    }
    meta.network = Network::Ipv6;
    meta.src = IpAddress::from_v6(h.src());
    meta.dst = IpAddress::from_v6(h.dst());
    meta.ip_len = sat_u32(ip_len);
    meta.ttl = h.hop_limit();
    meta.tos = h.traffic_class();
    meta.ip6_first_next_header = first_next;
    let datagram = l3.get(..ip_len).unwrap_or(l3);

    // Walk the extension-header chain (RFC 8200 §4.1 order is not enforced, only the count).
    let mut next = first_next;
    let mut offset = Ipv6Header::LEN;
    let mut count = 0;
    while matches!(
        next,
        ipv6_next::HOP_BY_HOP
            | ipv6_next::ROUTING
            | ipv6_next::FRAGMENT
            | ipv6_next::AH
            | ipv6_next::DEST_OPTS
    ) {
        if count == MAX_IPV6_EXTENSIONS {
            return Err(Malformed::TooManyIpv6Extensions);
        }
        count += 1;
        let rest = datagram.get(offset..).unwrap_or_default();
        let (len, after) = if next == ipv6_next::FRAGMENT {
            let f = Ipv6FragmentHeader::new(rest).ok_or(Malformed::TruncatedIpv6Extension)?;
            meta.frag_id = f.ident();
            meta.frag_offset = f.offset();
            meta.fragment = match (f.offset(), f.more()) {
                (0, false) => Fragment::None,
                (0, true) => Fragment::First,
                _ => Fragment::Later,
            };
            (Ipv6FragmentHeader::LEN, f.next_header())
        } else {
            let e = Ipv6ExtHeader::new(rest).ok_or(Malformed::TruncatedIpv6Extension)?;
            // AH counts 4-octet units minus 2 (RFC 4302 §2.2); the others 8-octet units
            // beyond the first (RFC 8200 §4.3).
            let len = if next == ipv6_next::AH { (e.len_field() + 2) * 4 } else { (e.len_field() + 1) * 8 };
            (len, e.next_header())
        };
        if len > rest.len() {
            return Err(Malformed::TruncatedIpv6Extension);
        }
        offset += len;
        next = after;
        if meta.fragment == Fragment::Later {
            // What follows is the middle of the original packet, not a header.
            break;
        }
    }
    meta.ip_proto = next;
    meta.ip_options = count > 0;
    let l4 = datagram.get(offset..).unwrap_or_default();
    let l4_offset = l3_offset + offset;
    let l4_len = ip_len.saturating_sub(offset);
    if meta.fragment == Fragment::Later {
        no_transport(meta, l4_offset, l4_len);
    } else {
        transport(meta, l4, l4_offset, l4_len, IpFamily::V6, jumbo);
    }
    Ok(())
}

#[inline]
fn decode_arp(meta: &mut PacketMeta, l3: &[u8]) -> Result<(), Malformed> {
    let h = ArpHeader::new(l3).ok_or(Malformed::TruncatedArp)?;
    meta.arp_op = h.operation();
    if h.is_ethernet_ipv4() {
        let a = ArpEthernetIpv4::new(l3).ok_or(Malformed::TruncatedArp)?;
        meta.src = IpAddress::from_v4(a.sender_ip());
        meta.dst = IpAddress::from_v4(a.target_ip());
    }
    meta.network = Network::Arp;
    meta.l4_offset = meta.l3_offset;
    meta.payload_offset = meta.l3_offset;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum IpFamily {
    V4,
    V6,
}

/// The transport is not decoded: everything after the IP headers is payload.
#[inline(always)]
fn no_transport(meta: &mut PacketMeta, l4_offset: usize, l4_len: usize) {
    meta.l4_offset = off_u16(l4_offset);
    meta.payload_offset = meta.l4_offset;
    meta.payload_len = sat_u32(l4_len);
}

/// Decodes the transport header.
///
/// `l4` holds the captured bytes of the IP payload (already cut at the IP length, so a header
/// that does not fit is cut short either by the capture or by the IP length), `l4_len` the IP
/// payload length from the IP header.
#[inline(always)]
fn transport(
    meta: &mut PacketMeta,
    l4: &[u8],
    l4_offset: usize,
    l4_len: usize,
    family: IpFamily,
    jumbo: bool,
) {
    let (result, min_len) = match (meta.ip_proto, family) {
        (ip_proto::TCP, _) => (tcp(meta, l4, l4_len), TcpHeader::LEN),
        (ip_proto::UDP, _) => (udp(meta, l4, l4_len, jumbo), UdpHeader::LEN),
        (ip_proto::ICMP, IpFamily::V4) | (ip_proto::ICMPV6, IpFamily::V6) => {
            (icmp(meta, l4), IcmpHeader::LEN)
        }
        (ip_proto::SCTP, _) => (sctp(meta, l4), SctpHeader::LEN),
        _ => return no_transport(meta, l4_offset, l4_len),
    };
    let header_len = match result {
        Ok(len) => {
            meta.transport = Transport::Parsed;
            len
        }
        Err(reason) => {
            meta.transport = Transport::Truncated;
            meta.anomaly = Some(reason);
            min_len
        }
    };
    meta.l4_offset = off_u16(l4_offset);
    // Clamped to the captured datagram: TCP options may be cut by a snap length.
    meta.payload_offset = off_u16(l4_offset + header_len.min(l4.len()));
    meta.payload_len = sat_u32(l4_len.saturating_sub(header_len));
}

/// TCP (RFC 9293 §3.1). Returns the header length including options.
#[inline(always)]
fn tcp(meta: &mut PacketMeta, l4: &[u8], l4_len: usize) -> Result<usize, Malformed> {
    let t = TcpHeader::new(l4).ok_or(Malformed::TruncatedTransport)?;
    let header_len = t.header_len();
    if header_len < TcpHeader::LEN || header_len > l4_len {
        return Err(Malformed::BadTcpDataOffset);
    }
    meta.src_port = t.src_port();
    meta.dst_port = t.dst_port();
    meta.tcp_seq = t.seq();
    meta.tcp_ack = t.ack();
    meta.tcp_flags = t.flags();
    meta.tcp_window = t.window();
    Ok(header_len)
}

/// UDP (RFC 768). A length field out of range is an anomaly, not a reason to drop the ports.
#[inline(always)]
fn udp(meta: &mut PacketMeta, l4: &[u8], l4_len: usize, jumbo: bool) -> Result<usize, Malformed> {
    let u = UdpHeader::new(l4).ok_or(Malformed::TruncatedTransport)?;
    meta.src_port = u.src_port();
    meta.dst_port = u.dst_port();
    let len = usize::from(u.length());
    let jumbo_zero = jumbo && len == 0; // RFC 2675 §4
    // A first fragment carries only part of the datagram its UDP length covers.
    let beyond = len > l4_len && meta.fragment != Fragment::First;
    if (len < UdpHeader::LEN || beyond) && !jumbo_zero {
        meta.anomaly = Some(Malformed::BadUdpLength);
    }
    Ok(UdpHeader::LEN)
}

/// ICMP (RFC 792) / ICMPv6 (RFC 4443): type and code.
#[inline(always)]
fn icmp(meta: &mut PacketMeta, l4: &[u8]) -> Result<usize, Malformed> {
    let i = IcmpHeader::new(l4).ok_or(Malformed::TruncatedTransport)?;
    meta.icmp_type = i.icmp_type();
    meta.icmp_code = i.code();
    Ok(IcmpHeader::LEN)
}

/// SCTP common header (RFC 9260 §3.1): ports only.
#[inline(always)]
fn sctp(meta: &mut PacketMeta, l4: &[u8]) -> Result<usize, Malformed> {
    let s = SctpHeader::new(l4).ok_or(Malformed::TruncatedTransport)?;
    meta.src_port = s.src_port();
    meta.dst_port = s.dst_port();
    Ok(SctpHeader::LEN)
}

/// A frame offset as `u16`, saturating (offsets never exceed ~17 KiB; see the module docs).
#[inline(always)]
fn off_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// A length as `u32`, saturating.
#[inline(always)]
fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
