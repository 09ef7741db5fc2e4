//! Checked views over header bytes, in the style of smoltcp's `Packet<T>` wrappers.
//!
//! A view is built from a byte slice by one length check (`first_chunk`), after which it holds a
//! fixed-size array reference: every accessor reads a field at a constant offset, and a
//! compile-time assertion proves the field lies inside the array. No accessor can panic and the
//! optimiser removes every bounds check. Each header keeps its field offsets in one `field`
//! table, next to the RFC that defines them.

/// A fixed-size header: `N` bytes known to be present.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bytes<'a, const N: usize>(&'a [u8; N]);

impl<'a, const N: usize> Bytes<'a, N> {
    /// The first `N` bytes of `b`, or `None` when `b` is shorter.
    #[inline(always)]
    pub(crate) fn new(b: &'a [u8]) -> Option<Self> {
        b.first_chunk::<N>().map(Bytes)
    }

    /// `L` bytes at offset `AT`. The `const` block rejects, at compile time, any field that
    /// does not fit in the header, so the fallback arm is unreachable and optimised away.
    #[inline(always)]
    pub(crate) fn array<const AT: usize, const L: usize>(self) -> [u8; L] {
        const { assert!(AT + L <= N, "field outside its header") };
        match self.0.get(AT..).and_then(<[u8]>::first_chunk::<L>) {
            Some(f) => *f,
            None => [0; L],
        }
    }

    /// The byte at offset `AT`.
    #[inline(always)]
    pub(crate) fn byte<const AT: usize>(self) -> u8 {
        u8::from_be_bytes(self.array::<AT, 1>())
    }

    /// The big-endian `u16` at offset `AT`.
    #[inline(always)]
    pub(crate) fn be16<const AT: usize>(self) -> u16 {
        u16::from_be_bytes(self.array::<AT, 2>())
    }

    /// The big-endian `u32` at offset `AT`.
    #[inline(always)]
    pub(crate) fn be32<const AT: usize>(self) -> u32 {
        u32::from_be_bytes(self.array::<AT, 4>())
    }
}

/// Declares a view type over a fixed-size header.
macro_rules! header_view {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $name<'a>(Bytes<'a, { $len }>);

        impl<'a> $name<'a> {
            /// Length of the fixed header in bytes.
            #[allow(dead_code, reason = "not every header's length is needed by name")]
            pub(crate) const LEN: usize = $len;

            /// A view over the start of `b`, or `None` when `b` is shorter than the header.
            #[inline(always)]
            pub(crate) fn new(b: &'a [u8]) -> Option<Self> {
                Bytes::new(b).map($name)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Link layer
// ---------------------------------------------------------------------------------------------

header_view! {
    /// Ethernet II / IEEE 802.3 header (IEEE 802.3 §3.1.1): two MAC addresses and the
    /// EtherType (or, below 0x0600, the 802.3 length field).
    EthernetHeader, 14
}

mod ethernet_field {
    pub(super) const ETHERTYPE: usize = 12;
}

impl EthernetHeader<'_> {
    /// EtherType, or the 802.3 length when below 0x0600.
    #[inline(always)]
    pub(crate) fn ethertype(self) -> u16 {
        self.0.be16::<{ ethernet_field::ETHERTYPE }>()
    }
}

header_view! {
    /// The four bytes after an 802.1Q / 802.1ad TPID (IEEE 802.1Q §9.6): the tag control
    /// information and the encapsulated EtherType.
    VlanTag, 4
}

mod vlan_field {
    pub(super) const TCI: usize = 0;
    pub(super) const ETHERTYPE: usize = 2;
}

impl VlanTag<'_> {
    /// The 12-bit VLAN identifier (priority and DEI bits removed).
    #[inline(always)]
    pub(crate) fn vid(self) -> u16 {
        self.0.be16::<{ vlan_field::TCI }>() & 0x0fff
    }

    /// The EtherType that follows the tag.
    #[inline(always)]
    pub(crate) fn ethertype(self) -> u16 {
        self.0.be16::<{ vlan_field::ETHERTYPE }>()
    }
}

header_view! {
    /// Linux cooked capture v1 header (<https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html>).
    SllHeader, 16
}

mod sll_field {
    pub(super) const PROTOCOL: usize = 14;
}

impl SllHeader<'_> {
    /// The protocol type field, an EtherType for Ethernet-like devices.
    #[inline(always)]
    pub(crate) fn protocol(self) -> u16 {
        self.0.be16::<{ sll_field::PROTOCOL }>()
    }
}

header_view! {
    /// Linux cooked capture v2 header (<https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html>).
    Sll2Header, 20
}

mod sll2_field {
    pub(super) const PROTOCOL: usize = 0;
}

impl Sll2Header<'_> {
    /// The protocol type field, an EtherType for Ethernet-like devices.
    #[inline(always)]
    pub(crate) fn protocol(self) -> u16 {
        self.0.be16::<{ sll2_field::PROTOCOL }>()
    }
}

// ---------------------------------------------------------------------------------------------
// ARP (RFC 826)
// ---------------------------------------------------------------------------------------------

header_view! {
    /// The fixed part of an ARP packet: hardware and protocol types and address lengths.
    ArpHeader, 8
}

mod arp_field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    // Ethernet/IPv4 layout (hlen 6, plen 4): sender MAC 8..14, sender IP 14..18,
    // target MAC 18..24, target IP 24..28.
    pub(super) const SENDER_IP: usize = 14;
    pub(super) const TARGET_IP: usize = 24;
}

impl ArpHeader<'_> {
    /// True for the Ethernet (1) / IPv4 (0x0800) form with 6-byte and 4-byte addresses.
    #[inline]
    pub(crate) fn is_ethernet_ipv4(self) -> bool {
        self.0.be16::<{ arp_field::HTYPE }>() == 1
            && self.0.be16::<{ arp_field::PTYPE }>() == 0x0800
            && self.0.byte::<{ arp_field::HLEN }>() == 6
            && self.0.byte::<{ arp_field::PLEN }>() == 4
    }

    /// The operation (1 request, 2 reply).
    #[inline]
    pub(crate) fn operation(self) -> u16 {
        self.0.be16::<{ arp_field::OPER }>()
    }
}

header_view! {
    /// A whole ARP packet for Ethernet / IPv4.
    ArpEthernetIpv4, 28
}

impl ArpEthernetIpv4<'_> {
    /// Sender protocol (IPv4) address.
    #[inline]
    pub(crate) fn sender_ip(self) -> [u8; 4] {
        self.0.array::<{ arp_field::SENDER_IP }, 4>()
    }

    /// Target protocol (IPv4) address.
    #[inline]
    pub(crate) fn target_ip(self) -> [u8; 4] {
        self.0.array::<{ arp_field::TARGET_IP }, 4>()
    }
}

// ---------------------------------------------------------------------------------------------
// IPv4 (RFC 791 §3.1)
// ---------------------------------------------------------------------------------------------

header_view! {
    /// The fixed 20 bytes of an IPv4 header (options, if any, follow).
    Ipv4Header, 20
}

mod ipv4_field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const TOTAL_LEN: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLAGS_FRAG: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

/// IPv4 "more fragments" flag within the flags/fragment-offset word.
pub(crate) const IPV4_MF: u16 = 0x2000;
/// IPv4 fragment offset bits within the flags/fragment-offset word.
pub(crate) const IPV4_FRAG_OFFSET: u16 = 0x1fff;

impl Ipv4Header<'_> {
    /// The version nibble.
    #[inline(always)]
    pub(crate) fn version(self) -> u8 {
        self.0.byte::<{ ipv4_field::VER_IHL }>() >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline(always)]
    pub(crate) fn header_len(self) -> usize {
        usize::from(self.0.byte::<{ ipv4_field::VER_IHL }>() & 0x0f) * 4
    }

    /// Type of service / DSCP + ECN.
    #[inline(always)]
    pub(crate) fn tos(self) -> u8 {
        self.0.byte::<{ ipv4_field::TOS }>()
    }

    /// Total length of the datagram in bytes.
    #[inline(always)]
    pub(crate) fn total_len(self) -> u16 {
        self.0.be16::<{ ipv4_field::TOTAL_LEN }>()
    }

    /// Identification.
    #[inline(always)]
    pub(crate) fn ident(self) -> u16 {
        self.0.be16::<{ ipv4_field::IDENT }>()
    }

    /// Flags (upper three bits) and fragment offset (lower thirteen).
    #[inline(always)]
    pub(crate) fn flags_frag(self) -> u16 {
        self.0.be16::<{ ipv4_field::FLAGS_FRAG }>()
    }

    /// Time to live.
    #[inline(always)]
    pub(crate) fn ttl(self) -> u8 {
        self.0.byte::<{ ipv4_field::TTL }>()
    }

    /// Protocol of the payload.
    #[inline(always)]
    pub(crate) fn protocol(self) -> u8 {
        self.0.byte::<{ ipv4_field::PROTOCOL }>()
    }

    /// Source address.
    #[inline(always)]
    pub(crate) fn src(self) -> [u8; 4] {
        self.0.array::<{ ipv4_field::SRC }, 4>()
    }

    /// Destination address.
    #[inline(always)]
    pub(crate) fn dst(self) -> [u8; 4] {
        self.0.array::<{ ipv4_field::DST }, 4>()
    }
}

// ---------------------------------------------------------------------------------------------
// IPv6 (RFC 8200 §3, §4)
// ---------------------------------------------------------------------------------------------

header_view! {
    /// The fixed 40-byte IPv6 header.
    Ipv6Header, 40
}

mod ipv6_field {
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const PAYLOAD_LEN: usize = 4;
    pub(super) const NEXT_HEADER: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: usize = 8;
    pub(super) const DST: usize = 24;
}

impl Ipv6Header<'_> {
    /// The version nibble.
    #[inline(always)]
    pub(crate) fn version(self) -> u8 {
        self.0.byte::<{ ipv6_field::VER_TC_FLOW }>() >> 4
    }

    /// Traffic class (DSCP + ECN).
    #[inline(always)]
    pub(crate) fn traffic_class(self) -> u8 {
        // Bits 4..12 of the first word; the mask makes the narrowing exact.
        ((self.0.be16::<{ ipv6_field::VER_TC_FLOW }>() >> 4) & 0xff) as u8
    }

    /// Payload length (everything after the fixed header), in bytes.
    #[inline(always)]
    pub(crate) fn payload_len(self) -> u16 {
        self.0.be16::<{ ipv6_field::PAYLOAD_LEN }>()
    }

    /// The header after the fixed header.
    #[inline(always)]
    pub(crate) fn next_header(self) -> u8 {
        self.0.byte::<{ ipv6_field::NEXT_HEADER }>()
    }

    /// Hop limit.
    #[inline(always)]
    pub(crate) fn hop_limit(self) -> u8 {
        self.0.byte::<{ ipv6_field::HOP_LIMIT }>()
    }

    /// Source address.
    #[inline(always)]
    pub(crate) fn src(self) -> [u8; 16] {
        self.0.array::<{ ipv6_field::SRC }, 16>()
    }

    /// Destination address.
    #[inline(always)]
    pub(crate) fn dst(self) -> [u8; 16] {
        self.0.array::<{ ipv6_field::DST }, 16>()
    }
}

header_view! {
    /// The two bytes every IPv6 extension header starts with (RFC 8200 §4.2): next header and
    /// a length whose unit depends on the header type.
    Ipv6ExtHeader, 2
}

mod ipv6_ext_field {
    pub(super) const NEXT_HEADER: usize = 0;
    pub(super) const LEN: usize = 1;
}

impl Ipv6ExtHeader<'_> {
    /// The header after this one.
    #[inline(always)]
    pub(crate) fn next_header(self) -> u8 {
        self.0.byte::<{ ipv6_ext_field::NEXT_HEADER }>()
    }

    /// The raw length byte.
    #[inline(always)]
    pub(crate) fn len_field(self) -> usize {
        usize::from(self.0.byte::<{ ipv6_ext_field::LEN }>())
    }
}

header_view! {
    /// IPv6 fragment header (RFC 8200 §4.5), always 8 bytes.
    Ipv6FragmentHeader, 8
}

mod ipv6_frag_field {
    pub(super) const NEXT_HEADER: usize = 0;
    pub(super) const OFFSET_M: usize = 2;
    pub(super) const IDENT: usize = 4;
}

impl Ipv6FragmentHeader<'_> {
    /// The header of the fragmentable part.
    #[inline(always)]
    pub(crate) fn next_header(self) -> u8 {
        self.0.byte::<{ ipv6_frag_field::NEXT_HEADER }>()
    }

    /// Fragment offset in 8-byte units.
    #[inline(always)]
    pub(crate) fn offset(self) -> u16 {
        self.0.be16::<{ ipv6_frag_field::OFFSET_M }>() >> 3
    }

    /// The M ("more fragments") flag.
    #[inline(always)]
    pub(crate) fn more(self) -> bool {
        self.0.be16::<{ ipv6_frag_field::OFFSET_M }>() & 1 == 1
    }

    /// Identification.
    #[inline(always)]
    pub(crate) fn ident(self) -> u32 {
        self.0.be32::<{ ipv6_frag_field::IDENT }>()
    }
}

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

header_view! {
    /// The fixed 20 bytes of a TCP header (RFC 9293 §3.1); options follow.
    TcpHeader, 20
}

mod tcp_field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ: usize = 4;
    pub(super) const ACK: usize = 8;
    /// Data offset (upper nibble) and NS (bit 0); the flags byte (13) follows and is read
    /// together with it as one word.
    pub(super) const OFFSET_NS: usize = 12;
    pub(super) const WINDOW: usize = 14;
}

impl TcpHeader<'_> {
    /// Source port.
    #[inline(always)]
    pub(crate) fn src_port(self) -> u16 {
        self.0.be16::<{ tcp_field::SRC_PORT }>()
    }

    /// Destination port.
    #[inline(always)]
    pub(crate) fn dst_port(self) -> u16 {
        self.0.be16::<{ tcp_field::DST_PORT }>()
    }

    /// Sequence number.
    #[inline(always)]
    pub(crate) fn seq(self) -> u32 {
        self.0.be32::<{ tcp_field::SEQ }>()
    }

    /// Acknowledgment number.
    #[inline(always)]
    pub(crate) fn ack(self) -> u32 {
        self.0.be32::<{ tcp_field::ACK }>()
    }

    /// Header length in bytes (data offset × 4).
    #[inline(always)]
    pub(crate) fn header_len(self) -> usize {
        usize::from(self.0.byte::<{ tcp_field::OFFSET_NS }>() >> 4) * 4
    }

    /// The eight flag bits of byte 13 plus NS (byte 12, bit 0; RFC 3540) as bit 8.
    #[inline(always)]
    pub(crate) fn flags(self) -> u16 {
        // Bytes 12..14 as one word: the low 9 bits are exactly NS + CWR..FIN.
        self.0.be16::<{ tcp_field::OFFSET_NS }>() & 0x01ff
    }

    /// Receive window.
    #[inline(always)]
    pub(crate) fn window(self) -> u16 {
        self.0.be16::<{ tcp_field::WINDOW }>()
    }
}

header_view! {
    /// UDP header (RFC 768).
    UdpHeader, 8
}

mod udp_field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
}

impl UdpHeader<'_> {
    /// Source port.
    #[inline(always)]
    pub(crate) fn src_port(self) -> u16 {
        self.0.be16::<{ udp_field::SRC_PORT }>()
    }

    /// Destination port.
    #[inline(always)]
    pub(crate) fn dst_port(self) -> u16 {
        self.0.be16::<{ udp_field::DST_PORT }>()
    }

    /// Length of header and data in bytes.
    #[inline(always)]
    pub(crate) fn length(self) -> u16 {
        self.0.be16::<{ udp_field::LENGTH }>()
    }
}

header_view! {
    /// The common start of ICMP (RFC 792) and ICMPv6 (RFC 4443 §2.1) messages: type, code,
    /// checksum.
    IcmpHeader, 4
}

mod icmp_field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
}

impl IcmpHeader<'_> {
    /// Message type.
    #[inline(always)]
    pub(crate) fn icmp_type(self) -> u8 {
        self.0.byte::<{ icmp_field::TYPE }>()
    }

    /// Message code.
    #[inline(always)]
    pub(crate) fn code(self) -> u8 {
        self.0.byte::<{ icmp_field::CODE }>()
    }
}

header_view! {
    /// SCTP common header (RFC 9260 §3.1): ports, verification tag, checksum.
    SctpHeader, 12
}

mod sctp_field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
}

impl SctpHeader<'_> {
    /// Source port.
    #[inline(always)]
    pub(crate) fn src_port(self) -> u16 {
        self.0.be16::<{ sctp_field::SRC_PORT }>()
    }

    /// Destination port.
    #[inline(always)]
    pub(crate) fn dst_port(self) -> u16 {
        self.0.be16::<{ sctp_field::DST_PORT }>()
    }
}
