//! Building valid frames byte by byte: Ethernet (with up to two VLAN tags), IPv4 (with options
//! and fragmentation), IPv6 (with extension headers and fragmentation), TCP, UDP, ICMP, ICMPv6
//! and ARP, with correct checksums so tshark and tcpdump see clean packets.
//!
//! [`FrameBuilder::write_to`] appends into a caller-owned buffer so generators can stream
//! millions of frames without allocating per frame.

use std::net::IpAddr;

use outpost_decode::LinkType;

/// The transport layer of a built packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP with the given header fields (flags as in `outpost_decode::meta::tcp_flags`).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flag bits, including NS as bit 8.
        flags: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Receive window.
        window: u16,
    },
    /// UDP.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// ICMP (IPv4) or ICMPv6 (IPv6), chosen by the IP version.
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// The four bytes after the checksum (identifier + sequence for echo).
        rest: u32,
    },
    /// Any other protocol number; the payload follows the IP header(s) directly.
    Raw(u8),
    /// Not an IP packet but an ARP frame (`op` 1 request, 2 reply) from the builder's `src`
    /// (IPv4) and `src_mac` about `dst`: [`FrameBuilder::write_to`] writes it with
    /// [`FrameBuilder::write_arp_to`] — nothing when `src` or `dst` is not IPv4 or the link
    /// cannot carry ARP.
    Arp {
        /// Operation: 1 request, 2 reply.
        op: u16,
    },
}

impl Transport {
    /// The IP protocol number for this transport, given the IP version.
    #[must_use]
    pub fn proto(&self, v6: bool) -> u8 {
        match self {
            Transport::Tcp { .. } => 6,
            Transport::Udp { .. } => 17,
            Transport::Icmp { .. } => {
                if v6 {
                    58
                } else {
                    1
                }
            }
            Transport::Raw(p) => *p,
            Transport::Arp { .. } => 0,
        }
    }

    /// Length of the transport header in bytes (0 for raw protocols and ARP).
    #[must_use]
    pub fn header_len(&self) -> usize {
        match self {
            Transport::Tcp { .. } => 20,
            Transport::Udp { .. } | Transport::Icmp { .. } => 8,
            Transport::Raw(_) | Transport::Arp { .. } => 0,
        }
    }
}

/// A TCP segment with only the fields most scenarios vary.
#[must_use]
pub fn tcp(sport: u16, dport: u16, flags: u16, seq: u32, ack: u32) -> Transport {
    Transport::Tcp { sport, dport, flags, seq, ack, window: 64240 }
}

/// A UDP datagram header.
#[must_use]
pub fn udp(sport: u16, dport: u16) -> Transport {
    Transport::Udp { sport, dport }
}

/// An ICMP/ICMPv6 message header.
#[must_use]
pub fn icmp(ty: u8, code: u8, rest: u32) -> Transport {
    Transport::Icmp { ty, code, rest }
}

/// Link-layer framing of a built packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II (the default).
    #[default]
    Ethernet,
    /// No link header: the frame starts with the IP header (`LINKTYPE_RAW`).
    Raw,
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`), packet type "to us".
    LinuxSll,
    /// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2`), interface index 1.
    LinuxSll2,
}

impl Link {
    /// The capture link type a file of frames with this framing declares.
    #[must_use]
    pub const fn link_type(self) -> LinkType {
        match self {
            Link::Ethernet => LinkType::Ethernet,
            Link::Raw => LinkType::Raw,
            Link::LinuxSll => LinkType::LinuxSll,
            Link::LinuxSll2 => LinkType::LinuxSll2,
        }
    }
}

/// Describes one IP packet (or ARP frame) and writes it as bytes.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    /// Link framing.
    pub link: Link,
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// VLAN ids, outermost first (at most two written; the outer of two uses TPID 0x88a8).
    pub vlans: Vec<u16>,
    /// Source address; its family chooses IPv4 or IPv6.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class.
    pub tos: u8,
    /// IPv4 identification (also used as the IPv6 fragment identification).
    pub ip_id: u16,
    /// Raw IPv4 options, padded to a multiple of four bytes when written.
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers before the transport: `(header type, body)` where the body is
    /// everything after the two-byte next-header/length prefix, padded to 8-byte multiples.
    pub ipv6_ext: Vec<(u8, Vec<u8>)>,
    /// Transport header.
    pub transport: Transport,
    /// Transport payload.
    pub payload: Vec<u8>,
}

/// IPv6 extension header type numbers (RFC 8200 §4).
pub mod ipv6_ext {
    /// Hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
}

impl FrameBuilder {
    /// An Ethernet frame carrying `transport` from `src` to `dst` with an empty payload.
    #[must_use]
    pub fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> FrameBuilder {
        FrameBuilder {
            link: Link::Ethernet,
            src_mac: [0x02, 0, 0, 0, 0, 0x01],
            dst_mac: [0x02, 0, 0, 0, 0, 0x02],
            vlans: Vec::new(),
            src,
            dst,
            ttl: 64,
            tos: 0,
            ip_id: 1,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            transport,
            payload: Vec::new(),
        }
    }

    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: &[u8]) -> FrameBuilder {
        self.payload = payload.to_vec();
        self
    }

    /// Sets the VLAN tags, outermost first.
    #[must_use]
    pub fn vlans(mut self, vlans: &[u16]) -> FrameBuilder {
        self.vlans = vlans.to_vec();
        self
    }

    /// Sets the link framing.
    #[must_use]
    pub fn link(mut self, link: Link) -> FrameBuilder {
        self.link = link;
        self
    }

    /// Sets the TTL / hop limit.
    #[must_use]
    pub fn ttl(mut self, ttl: u8) -> FrameBuilder {
        self.ttl = ttl;
        self
    }

    /// True when the packet is IPv6.
    #[must_use]
    pub fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// The whole frame as a new vector.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.payload.len());
        self.write_to(&mut out);
        out
    }

    /// Appends the frame to `out`.
    ///
    /// Writes in place: with no IPv6 extension headers it allocates nothing beyond growing
    /// `out`, so a generator that reuses one buffer and one builder streams without
    /// per-frame allocation.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Transport::Arp { op } = self.transport {
            // Only about an IPv4 address (nothing is written otherwise).
            if let IpAddr::V4(target) = self.dst {
                self.write_arp_to(out, op, target.octets());
            }
            return;
        }
        let l4_len = self.transport.header_len() + self.payload.len();
        self.write_ip_headers(out, l4_len, Frag::Whole);
        self.append_transport(out);
    }

    /// Appends an ARP frame (`op` 1 request, 2 reply; RFC 826) in this builder's link framing
    /// and VLAN tags: sender `src_mac` / `src` (IPv4), target `target_ip` (and, in a reply,
    /// target hardware address `dst_mac`), Ethernet destination `dst_mac` (use `[0xff; 6]` for
    /// a request). Returns `false` and writes
    /// nothing when the link cannot carry ARP ([`Link::Raw`]) or `src` is not IPv4.
    pub fn write_arp_to(&self, out: &mut Vec<u8>, op: u16, target_ip: [u8; 4]) -> bool {
        let IpAddr::V4(sender) = self.src else { return false };
        if self.link == Link::Raw {
            return false;
        }
        self.write_link(out, 0x0806);
        out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]); // Ethernet / IPv4, address lengths
        out.extend_from_slice(&op.to_be_bytes());
        out.extend_from_slice(&self.src_mac);
        out.extend_from_slice(&sender.octets());
        out.extend_from_slice(if op == 2 { &self.dst_mac } else { &[0; 6] });
        out.extend_from_slice(&target_ip);
        true
    }

    /// The frame split into IP fragments whose fragmentable part is at most `chunk` bytes
    /// (rounded down to a multiple of 8). IPv6 fragments carry a fragment header (RFC 8200
    /// §4.5) after any extension headers the builder has.
    #[must_use]
    pub fn fragments(&self, chunk: usize) -> Vec<Vec<u8>> {
        let chunk = (chunk / 8).max(1) * 8;
        let l4 = self.transport_bytes();
        let mut frames = Vec::new();
        let mut off = 0;
        while off < l4.len() || (off == 0 && l4.is_empty()) {
            let end = (off + chunk).min(l4.len());
            let more = end < l4.len();
            let mut out = Vec::new();
            self.write_ip_headers(&mut out, end - off, Frag::Part { offset: off, more });
            out.extend_from_slice(&l4[off..end]);
            frames.push(out);
            if l4.is_empty() {
                break;
            }
            off = end;
        }
        frames
    }

    /// Transport header + payload with the checksum filled in.
    fn transport_bytes(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(self.transport.header_len() + self.payload.len());
        self.append_transport(&mut t);
        t
    }

    /// Appends the transport header + payload to `out` and fills in its checksum in place.
    fn append_transport(&self, out: &mut Vec<u8>) {
        let v6 = self.is_v6();
        let start = out.len();
        match self.transport {
            Transport::Tcp { sport, dport, flags, seq, ack, window } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&ack.to_be_bytes());
                out.push((5 << 4) | ((flags >> 8) & 1) as u8);
                out.push(flags as u8);
                out.extend_from_slice(&window.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            }
            Transport::Udp { sport, dport } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                let len = u16::try_from(8 + self.payload.len()).unwrap_or(0);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Transport::Icmp { ty, code, rest } => {
                out.push(ty);
                out.push(code);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&rest.to_be_bytes());
            }
            Transport::Raw(_) | Transport::Arp { .. } => {}
        }
        out.extend_from_slice(&self.payload);
        let proto = self.transport.proto(v6);
        let csum_at = match self.transport {
            Transport::Tcp { .. } => Some(16),
            Transport::Udp { .. } => Some(6),
            Transport::Icmp { .. } => Some(2),
            Transport::Raw(_) | Transport::Arp { .. } => None,
        };
        if let Some(at) = csum_at {
            let t = &mut out[start..];
            // ICMPv4 has no pseudo-header (RFC 792); ICMPv6 does (RFC 4443 §2.3).
            let pseudo = v6 || !matches!(self.transport, Transport::Icmp { .. });
            let mut sum = Checksum::default();
            if pseudo {
                self.add_pseudo_header(&mut sum, proto, t.len());
            }
            sum.add(t);
            let mut c = sum.finish();
            if c == 0 && matches!(self.transport, Transport::Udp { .. }) {
                c = 0xffff; // RFC 768: a computed zero is sent as all ones
            }
            t[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
    }

    fn add_pseudo_header(&self, sum: &mut Checksum, proto: u8, len: usize) {
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                sum.add(&s.octets());
                sum.add(&d.octets());
                sum.add(&[0, proto]);
                sum.add(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            }
            (s, d) => {
                sum.add(&ip6_octets(s));
                sum.add(&ip6_octets(d));
                sum.add(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
                sum.add(&[0, 0, 0, proto]);
            }
        }
    }

    fn write_link(&self, out: &mut Vec<u8>, ethertype: u16) {
        match self.link {
            Link::Ethernet => {
                out.extend_from_slice(&self.dst_mac);
                out.extend_from_slice(&self.src_mac);
                let tags = &self.vlans[..self.vlans.len().min(2)];
                for (i, vid) in tags.iter().enumerate() {
                    let tpid: u16 = if tags.len() == 2 && i == 0 { 0x88a8 } else { 0x8100 };
                    out.extend_from_slice(&tpid.to_be_bytes());
                    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
                }
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Raw => {}
            Link::LinuxSll => {
                out.extend_from_slice(&0u16.to_be_bytes()); // packet type: to us
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.extend_from_slice(&6u16.to_be_bytes());
                out.extend_from_slice(&self.src_mac);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::LinuxSll2 => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(&[0, 0]); // reserved
                out.extend_from_slice(&1u32.to_be_bytes()); // interface index
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.push(0); // packet type
                out.push(6);
                out.extend_from_slice(&self.src_mac);
                out.extend_from_slice(&[0, 0]);
            }
        }
    }

    /// Writes the link and IP headers for `l4_len` bytes of transport data that the caller
    /// appends next.
    fn write_ip_headers(&self, out: &mut Vec<u8>, l4_len: usize, frag: Frag) {
        let v6 = self.is_v6();
        self.write_link(out, if v6 { 0x86dd } else { 0x0800 });
        let proto = self.transport.proto(v6);
        if v6 {
            let mut ext = Vec::new();
            let mut chain: Vec<(u8, Vec<u8>)> = self.ipv6_ext.clone();
            if let Frag::Part { offset, more } = frag {
                let off = u16::try_from(offset / 8).unwrap_or(0) << 3 | u16::from(more);
                let mut body = off.to_be_bytes().to_vec();
                body.extend_from_slice(&u32::from(self.ip_id).to_be_bytes());
                chain.push((ipv6_ext::FRAGMENT, body));
            }
            for (i, (_, body)) in chain.iter().enumerate() {
                let next = chain.get(i + 1).map_or(proto, |(t, _)| *t);
                let mut b = body.clone();
                let is_frag = chain[i].0 == ipv6_ext::FRAGMENT;
                if !is_frag {
                    while (b.len() + 2) % 8 != 0 {
                        b.push(0); // Pad1 options
                    }
                }
                ext.push(next);
                // Hdr Ext Len: 8-octet units beyond the first (fragment header: reserved 0).
                ext.push(if is_frag { 0 } else { u8::try_from((b.len() + 2) / 8 - 1).unwrap_or(0) });
                ext.extend_from_slice(&b);
            }
            let first = chain.first().map_or(proto, |(t, _)| *t);
            let plen = u16::try_from(ext.len() + l4_len).unwrap_or(u16::MAX);
            out.push(0x60 | (self.tos >> 4));
            out.push(self.tos << 4);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&plen.to_be_bytes());
            out.push(first);
            out.push(self.ttl);
            out.extend_from_slice(&ip6_octets(self.src));
            out.extend_from_slice(&ip6_octets(self.dst));
            out.extend_from_slice(&ext);
        } else {
            let opts = &self.ipv4_options;
            let opts_pad = (4 - opts.len() % 4) % 4;
            let ihl = 5 + (opts.len() + opts_pad) / 4;
            let total = u16::try_from(ihl * 4 + l4_len).unwrap_or(u16::MAX);
            let start = out.len();
            out.push(0x40 | u8::try_from(ihl).unwrap_or(15));
            out.push(self.tos);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&self.ip_id.to_be_bytes());
            let flags_off = match frag {
                Frag::Whole => 0x4000, // DF
                Frag::Part { offset, more } => {
                    u16::try_from(offset / 8).unwrap_or(0) | if more { 0x2000 } else { 0 }
                }
            };
            out.extend_from_slice(&flags_off.to_be_bytes());
            out.push(self.ttl);
            out.push(proto);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ip4_octets(self.src));
            out.extend_from_slice(&ip4_octets(self.dst));
            out.extend_from_slice(opts);
            out.resize(out.len() + opts_pad, 0); // end-of-options padding
            let mut sum = Checksum::default();
            sum.add(&out[start..]);
            let c = sum.finish();
            out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
        }
    }
}

#[derive(Clone, Copy)]
enum Frag {
    Whole,
    Part { offset: usize, more: bool },
}

fn ip6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

fn ip4_octets(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

/// The solicited-node multicast group of `target`, `ff02::1:ffXX:XXXX` with its low 24 bits
/// (RFC 4291 §2.7.1): where a neighbor solicitation for `target` is sent.
#[must_use]
pub fn solicited_node(target: std::net::Ipv6Addr) -> std::net::Ipv6Addr {
    let o = target.octets();
    std::net::Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

/// An ARP request (`op` 1) or reply (`op` 2) for IPv4 over Ethernet.
#[must_use]
pub fn arp_frame(op: u16, sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&0x0806u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sender_mac);
    out.extend_from_slice(&sender_ip);
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&target_ip);
    out
}

/// The Internet checksum (RFC 1071), accumulated over several slices.
#[derive(Default)]
struct Checksum {
    sum: u64,
    odd: Option<u8>,
}

impl Checksum {
    fn add(&mut self, mut data: &[u8]) {
        if let Some(hi) = self.odd.take() {
            if let Some((&lo, rest)) = data.split_first() {
                self.sum += u64::from(u16::from_be_bytes([hi, lo]));
                data = rest;
            } else {
                self.odd = Some(hi);
                return;
            }
        }
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            self.sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.odd = Some(*last);
        }
    }

    fn finish(mut self) -> u16 {
        if let Some(hi) = self.odd.take() {
            self.sum += u64::from(u16::from_be_bytes([hi, 0]));
        }
        while self.sum > 0xffff {
            self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        }
        let folded = self.sum as u16;
        !folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(data: &[u8]) -> u16 {
        let mut c = Checksum::default();
        c.add(data);
        c.finish()
    }

    #[test]
    fn ipv4_udp_frame_has_valid_checksums_and_lengths() {
        let f = FrameBuilder::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), udp(1234, 7001))
            .payload(b"hello")
            .build();
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(verify(&f[14..34]), 0, "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 33);
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 13);
    }

    #[test]
    fn vlan_tags_use_qinq_tpid_for_the_outer_of_two() {
        let f = FrameBuilder::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), udp(1, 2))
            .vlans(&[100, 200])
            .build();
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[14..16], &[0x00, 100]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &[0x00, 200]);
        assert_eq!(&f[20..22], &[0x08, 0x00]);
    }

    #[test]
    fn ipv4_fragments_cover_the_datagram_with_offsets() {
        let b = FrameBuilder::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), udp(1, 2))
            .payload(&[7u8; 100]);
        let frags = b.fragments(48);
        assert_eq!(frags.len(), 3); // 108 bytes of UDP in 48 + 48 + 12
        let off = |f: &Vec<u8>| u16::from_be_bytes([f[20], f[21]]);
        assert_eq!(off(&frags[0]), 0x2000);
        assert_eq!(off(&frags[1]), 0x2000 | 6);
        assert_eq!(off(&frags[2]), 12);
    }

    #[test]
    fn arp_in_ethernet_framing_matches_arp_frame_and_raw_link_refuses_it() {
        let mac = [2, 0, 10, 1, 0, 5];
        let mut b = FrameBuilder::new("10.1.0.5".parse().unwrap(), "10.1.0.1".parse().unwrap(), udp(0, 0));
        b.src_mac = mac;
        b.dst_mac = [0xff; 6];
        let mut out = Vec::new();
        assert!(b.write_arp_to(&mut out, 1, [10, 1, 0, 1]));
        assert_eq!(out, arp_frame(1, mac, [10, 1, 0, 5], [10, 1, 0, 1]));

        let mut tagged = Vec::new();
        assert!(b.clone().vlans(&[7]).write_arp_to(&mut tagged, 1, [10, 1, 0, 1]));
        assert_eq!(&tagged[12..18], &[0x81, 0x00, 0x00, 7, 0x08, 0x06]);

        let mut raw = Vec::new();
        assert!(!b.link(Link::Raw).write_arp_to(&mut raw, 1, [10, 1, 0, 1]));
        assert!(raw.is_empty());
    }

    #[test]
    fn write_to_appends_after_existing_bytes_with_valid_checksums() {
        let mut b = FrameBuilder::new("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), udp(9, 7002))
            .payload(b"xyz");
        b.ipv4_options = vec![1, 1, 1]; // three NOPs, padded to four bytes
        let mut out = vec![0xee; 5];
        b.write_to(&mut out);
        let f = &out[5..];
        assert_eq!(f, b.build().as_slice());
        assert_eq!(f[14], 0x46, "IHL 6 with one word of options");
        assert_eq!(verify(&f[14..38]), 0, "IPv4 header checksum");
        let mut udp_sum = Checksum::default();
        udp_sum.add(&f[26..34]); // source + destination address
        udp_sum.add(&[0, 17, 0, 11]);
        udp_sum.add(&f[38..]);
        assert_eq!(udp_sum.finish(), 0, "UDP checksum over the pseudo-header");
    }

    #[test]
    fn ipv6_extension_headers_chain_to_the_transport() {
        let mut b =
            FrameBuilder::new("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap(), udp(5, 6));
        b.ipv6_ext.push((ipv6_ext::HOP_BY_HOP, vec![1, 0]));
        let f = b.build();
        assert_eq!(f[14 + 6], ipv6_ext::HOP_BY_HOP);
        assert_eq!(f[54], 17, "hop-by-hop next header is UDP");
        assert_eq!(f[55], 0, "hop-by-hop is 8 bytes");
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 16);
    }
}
