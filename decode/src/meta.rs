//! The decoded summary of one frame, and the reasons a frame can fail to decode.
//!
//! [`PacketMeta`] is a small `Copy` value: everything later stages (filters, the flow meter,
//! the detector) need from a frame, without pointers into it. Offsets into the frame are kept
//! so a stage that wants payload bytes can slice the frame it already holds.

use crate::addr::IpAddress;
use crate::time::Nanos;

/// Link-layer header type of a capture, as numbered by tcpdump.org's LINKTYPE_ registry
/// (<https://www.tcpdump.org/linktypes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): Ethernet II / IEEE 802.3 with optional 802.1Q / 802.1ad tags.
    Ethernet,
    /// `LINKTYPE_RAW` (101): a bare IPv4 or IPv6 packet, version taken from the first nibble.
    Raw,
    /// `LINKTYPE_LINUX_SLL` (113): Linux "cooked" capture v1, 16-byte header.
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux "cooked" capture v2, 20-byte header.
    LinuxSll2,
    /// `LINKTYPE_IPV4` (228): a bare IPv4 packet.
    Ipv4,
    /// `LINKTYPE_IPV6` (229): a bare IPv6 packet.
    Ipv6,
}

impl LinkType {
    /// The link type for a LINKTYPE_ number, or `None` when Outpost does not decode it.
    /// DLT_RAW's platform aliases 12 and 14 are accepted as [`LinkType::Raw`].
    #[must_use]
    pub const fn from_linktype(n: u32) -> Option<LinkType> {
        Some(match n {
            1 => LinkType::Ethernet,
            101 | 12 | 14 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            _ => return None,
        })
    }

    /// The LINKTYPE_ number written to pcap files.
    #[must_use]
    pub const fn linktype(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
        }
    }
}

/// EtherType values Outpost looks at (IEEE 802 numbers).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IEEE 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (S-tag, "QinQ").
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ tag still seen on some switches.
    pub const QINQ_OLD: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}

/// IP protocol numbers Outpost decodes (IANA "Assigned Internet Protocol Numbers").
pub mod ip_proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP (only its ports are decoded).
    pub const SCTP: u8 = 132;
}

/// TCP flag bits as they appear in [`PacketMeta::tcp_flags`] (byte 13 of the TCP header, plus
/// the NS bit from byte 12 as bit 8; RFC 9293 §3.1, RFC 3540).
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u16 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u16 = 0x02;
    /// Reset the connection.
    pub const RST: u16 = 0x04;
    /// Push function.
    pub const PSH: u16 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u16 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u16 = 0x20;
    /// ECN-Echo.
    pub const ECE: u16 = 0x40;
    /// Congestion Window Reduced.
    pub const CWR: u16 = 0x80;
    /// ECN nonce sum (historic, RFC 3540).
    pub const NS: u16 = 0x100;
}

/// What sits above the link layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Network {
    /// An EtherType Outpost does not decode (counted by [`crate::DecodeStats::other_ethertype`]).
    #[default]
    Other,
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP for IPv4 over Ethernet; `src`/`dst` hold the sender / target protocol addresses.
    Arp,
}

/// Fragmentation state of an IP packet (RFC 791 §3.2, RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Fragment {
    /// Not a fragment.
    #[default]
    None,
    /// The first fragment (offset 0, more-fragments set): it carries the transport header.
    First,
    /// A later fragment (offset > 0): no transport header; ports are zero.
    Later,
}

/// How far the transport (L4) header could be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Transport {
    /// No transport header: not IP, a later fragment, or a protocol Outpost does not decode.
    #[default]
    Absent,
    /// The header was decoded; ports, flags and ICMP type/code are valid.
    Parsed,
    /// The protocol is known but its header was cut short by the snap length or the IP length
    /// (counted as [`Malformed::TruncatedTransport`]); ports and flags are zero.
    Truncated,
}

/// Everything the pipeline needs from one decoded frame. `Copy`, no pointers, 104 bytes (checked
/// at compile time below).
///
/// Fields that do not apply to the packet are zero (e.g. ports of ICMP, `tcp_*` of UDP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// Capture timestamp.
    pub ts: Nanos,
    /// Length of the frame on the wire, in bytes (pcap `orig_len`).
    pub wire_len: u32,
    /// Bytes captured (≤ `wire_len` when a snap length cut the frame).
    pub cap_len: u32,
    /// IP total length in bytes: IPv4 `total length`; IPv6 40 + `payload length` (for an
    /// RFC 2675 jumbogram, the bytes on the wire from the IPv6 header on). Zero when not IP. This is the byte count flow records use (as IPFIX `octetDeltaCount`).
    pub ip_len: u32,
    /// Bytes of transport payload according to the IP lengths (not limited by capture).
    pub payload_len: u32,
    /// Source address (IPv4, IPv6, or ARP sender protocol address).
    pub src: IpAddress,
    /// Destination address (IPv4, IPv6, or ARP target protocol address).
    pub dst: IpAddress,
    /// TCP sequence number.
    pub tcp_seq: u32,
    /// TCP acknowledgment number.
    pub tcp_ack: u32,
    /// IPv4 identification or IPv6 fragment-header identification; zero when not a fragment
    /// of IPv6, always the IPv4 header's value for IPv4.
    pub frag_id: u32,
    /// Transport source port (TCP, UDP, SCTP).
    pub src_port: u16,
    /// Transport destination port (TCP, UDP, SCTP).
    pub dst_port: u16,
    /// TCP flags, see [`tcp_flags`].
    pub tcp_flags: u16,
    /// TCP receive window (unscaled).
    pub tcp_window: u16,
    /// EtherType after any VLAN tags (synthesised 0x0800 / 0x86dd for raw IP link types). For
    /// IEEE 802.3 frames this is their length field, always below 0x0600.
    pub ethertype: u16,
    /// VLAN ids (12 bits), outermost first; only the first `vlan_count` entries are valid.
    pub vlan: [u16; 2],
    /// Fragment offset in 8-byte units (RFC 791).
    pub frag_offset: u16,
    /// Offset of the network (L3) header in the frame.
    pub l3_offset: u16,
    /// Offset of the transport (L4) header in the frame (after IPv6 extension headers). Equal
    /// to `l3_offset` for non-IP frames.
    pub l4_offset: u16,
    /// Offset of the transport payload in the frame, at most `cap_len` (clamped when a snap
    /// length cut the transport header). Equal to `l4_offset` when there is no transport header.
    pub payload_offset: u16,
    /// Number of VLAN tags (0..=2).
    pub vlan_count: u8,
    /// What sits above the link layer.
    pub network: Network,
    /// Upper-layer protocol number: IPv4 `protocol`; for IPv6 the header that follows the
    /// extension-header chain (hop-by-hop, routing, fragment, destination options, AH).
    pub ip_proto: u8,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 TOS / IPv6 traffic class byte (DSCP in the upper six bits, ECN in the lower two).
    pub tos: u8,
    /// ICMP / ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code.
    pub icmp_code: u8,
    /// ARP operation (1 request, 2 reply; RFC 826), from the fixed part every ARP packet has;
    /// zero when not ARP. (It fills two bytes of padding: the struct does not grow.)
    pub arp_op: u16,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// Whether the transport header was read.
    pub transport: Transport,
    /// IPv6 only: the `next header` field of the fixed header, before any extension headers
    /// (what tcpdump's `ip6 proto` tests). Equal to `ip_proto` for IPv4.
    pub ip6_first_next_header: u8,
    /// IPv4 header had options (IHL > 5) or IPv6 had extension headers.
    pub ip_options: bool,
    /// A soft decode problem: the packet is usable at L3 (addresses, protocol, lengths) but a
    /// higher layer could not be read, e.g. [`Malformed::TruncatedTransport`]. Counted like a
    /// malformed frame.
    pub anomaly: Option<Malformed>,
}

const _: () = assert!(std::mem::size_of::<PacketMeta>() == 104, "PacketMeta stays 104 bytes");

impl PacketMeta {
    /// True for IPv4 or IPv6 packets.
    #[inline]
    #[must_use]
    pub fn is_ip(&self) -> bool {
        matches!(self.network, Network::Ipv4 | Network::Ipv6)
    }

    /// True when the TCP header was decoded and has every bit of `flags` set.
    #[inline]
    #[must_use]
    pub fn tcp_has(&self, flags: u16) -> bool {
        self.ip_proto == ip_proto::TCP
            && self.transport == Transport::Parsed
            && self.tcp_flags & flags == flags
    }

    /// True when ports are meaningful (TCP, UDP or SCTP header decoded).
    #[inline]
    #[must_use]
    pub fn has_ports(&self) -> bool {
        self.transport == Transport::Parsed
            && matches!(self.ip_proto, ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP)
    }
}

macro_rules! malformed_reasons {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// Why a frame could not be (fully) decoded. Each reason has its own counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
        #[repr(u8)]
        pub enum Malformed {
            $( $(#[$doc])* #[error($name)] $variant, )*
        }

        impl Malformed {
            /// Every reason, in counter order.
            pub const ALL: &'static [Malformed] = &[$(Malformed::$variant,)*];
            /// Number of reasons (size of a counter array).
            pub const COUNT: usize = Malformed::ALL.len();

            /// The stable snake_case name used in summaries and metrics.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Malformed::$variant => $name,)* }
            }
        }
    };
}

malformed_reasons! {
    /// The capture's link type is not one Outpost decodes.
    UnsupportedLinkType => "unsupported_link_type",
    /// Shorter than the 14-byte Ethernet header.
    TruncatedEthernet => "truncated_ethernet",
    /// Shorter than the Linux cooked (SLL / SLL2) header.
    TruncatedSll => "truncated_sll",
    /// A VLAN tag was cut short.
    TruncatedVlan => "truncated_vlan",
    /// More than two stacked VLAN tags.
    TooManyVlanTags => "too_many_vlan_tags",
    /// An ARP packet shorter than its declared addresses.
    TruncatedArp => "truncated_arp",
    /// Shorter than the 20-byte IPv4 header, or than its IHL.
    TruncatedIpv4 => "truncated_ipv4",
    /// IPv4 version field is not 4, IPv6 not 6 (or a raw packet's version is neither 4 nor 6).
    BadIpVersion => "bad_ip_version",
    /// IPv4 IHL below 5 (a header shorter than 20 bytes).
    BadIpv4HeaderLength => "bad_ipv4_header_length",
    /// IPv4 total length smaller than its header length.
    BadIpv4TotalLength => "bad_ipv4_total_length",
    /// The IP length claims more bytes than the frame had on the wire.
    IpLengthExceedsFrame => "ip_length_exceeds_frame",
    /// Shorter than the 40-byte IPv6 header.
    TruncatedIpv6 => "truncated_ipv6",
    /// An IPv6 extension header was cut short.
    TruncatedIpv6Extension => "truncated_ipv6_extension",
    /// More IPv6 extension headers than Outpost walks (8).
    TooManyIpv6Extensions => "too_many_ipv6_extensions",
    /// The TCP/UDP/ICMP/SCTP header was cut short (packet still counted at L3).
    TruncatedTransport => "truncated_transport",
    /// TCP data offset below 5 or beyond the segment.
    BadTcpDataOffset => "bad_tcp_data_offset",
    /// UDP length field smaller than 8 or larger than the IP payload.
    BadUdpLength => "bad_udp_length",
}
