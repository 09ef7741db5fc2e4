//! Outpost benchmarks. The binaries in `src/bin` time hot-path code with `std::time::Instant`
//! over in-memory inputs; run them with `cargo run --release -p outpost-bench --bin <name>`.
//! `bench/run.sh` (`make bench`) runs them together with the replay benchmark and its peer.
//!
//! This library holds what the binaries share and what the tests check:
//! - [`FrameSet`] / [`Mix`]: frames built with [`outpost_tools::frame::FrameBuilder`] into one
//!   contiguous buffer, as a receive thread's block holds them.
//! - [`Fields`]: the handful of fields both decoders under comparison extract (addresses,
//!   ports, protocol, TCP flags, outer VLAN id), from our [`PacketMeta`] and from etherparse's
//!   slicing API, so the tests can prove the peer does the same work we time it for.
//! - [`Samples`]: repeated timings reduced to median, minimum and maximum.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    LaxLinkExtSlice, LaxNetSlice, LaxSlicedPacket, LinkExtSlice, NetSlice, SlicedPacket, TransportSlice,
};
use outpost_decode::meta::tcp_flags;
use outpost_decode::{IpAddress, LinkType, Nanos, PacketMeta};
use outpost_tools::frame::{FrameBuilder, Transport, icmp, tcp, udp};

/// Captured bytes of a minimum-size Ethernet frame: 64 bytes on the wire less the 4-byte FCS,
/// which captures do not hold.
pub const MIN_FRAME: usize = 60;

/// Which traffic a [`FrameSet`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// A mix of the packet kinds a sensor sees, in a random (seeded) order so branch predictors
    /// cannot learn a period:
    /// 35 % minimum-size IPv4 TCP (SYN, SYN/ACK, ACK, FIN/ACK, RST),
    /// 20 % IPv4 UDP (48-byte payload),
    /// 15 % IPv6 TCP (ACK with 100-byte payload),
    ///  5 % IPv6 UDP,
    /// 10 % VLAN-tagged IPv4 (half 802.1Q, half 802.1ad + 802.1Q; TCP or UDP),
    ///  5 % ICMP echo,
    /// 10 % IPv4 TCP with a 512-byte payload.
    Realistic,
    /// Only minimum-size (64 bytes on the wire) IPv4 TCP frames: the 14.88 Mpps line-rate case.
    Tcp64,
}

impl Mix {
    /// Short name for tables.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Mix::Realistic => "mix",
            Mix::Tcp64 => "tcp64",
        }
    }
}

/// Frames held back to back in one buffer, with their positions.
#[derive(Clone, Debug, Default)]
pub struct FrameSet {
    data: Vec<u8>,
    /// `(offset, length)` of each frame in `data`.
    spans: Vec<(usize, usize)>,
}

/// A small deterministic generator (xorshift64*), so frame sets are the same in every run
/// without a `rand` dependency.
#[derive(Clone, Debug)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n ≤ 2^32; the bias is irrelevant here).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next() >> 32) * u64::from(n)) >> 32) as u32
    }

    fn u16(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }

    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
}

impl FrameSet {
    /// `count` frames of `mix`, chosen by `seed`. Frames shorter than [`MIN_FRAME`] are padded
    /// with zeros after the IP datagram, as Ethernet pads them on the wire.
    #[must_use]
    pub fn build(mix: Mix, count: usize, seed: u64) -> FrameSet {
        let mut rng = XorShift(seed | 1);
        let mut set = FrameSet { data: Vec::with_capacity(count * 128), spans: Vec::with_capacity(count) };
        for _ in 0..count {
            let builder = match mix {
                Mix::Tcp64 => tcp64(&mut rng),
                Mix::Realistic => realistic(&mut rng),
            };
            let start = set.data.len();
            builder.write_to(&mut set.data);
            if set.data.len() - start < MIN_FRAME {
                set.data.resize(start + MIN_FRAME, 0);
            }
            set.spans.push((start, set.data.len() - start));
        }
        set
    }

    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when there are no frames.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Total captured bytes.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The frames in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans.iter().map(|&(at, len)| self.data.get(at..at + len).unwrap_or_default())
    }
}

fn v4(rng: &mut XorShift, net: [u8; 2]) -> IpAddr {
    let r = rng.u16().to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(net[0], net[1], r[0], r[1]))
}

fn v6(rng: &mut XorShift) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, rng.u16() & 3, 0, 0, 0, rng.u16(), rng.u16()))
}

fn ephemeral(rng: &mut XorShift) -> u16 {
    32768 + rng.u16() % 28232
}

/// Flags of a minimum-size segment: the handshake and teardown kinds a SYN flood or scan and
/// ordinary connections produce.
fn small_tcp_flags(rng: &mut XorShift) -> u16 {
    use tcp_flags::{ACK, FIN, RST, SYN};
    match rng.below(5) {
        0 => SYN,
        1 => SYN | ACK,
        2 => ACK,
        3 => FIN | ACK,
        _ => RST,
    }
}

fn tcp64(rng: &mut XorShift) -> FrameBuilder {
    let t = tcp(ephemeral(rng), 443, small_tcp_flags(rng), rng.u32(), rng.u32());
    FrameBuilder::new(v4(rng, [10, 1]), v4(rng, [192, 168]), t)
}

fn realistic(rng: &mut XorShift) -> FrameBuilder {
    let roll = rng.below(100);
    match roll {
        0..35 => tcp64(rng),
        35..55 => {
            FrameBuilder::new(v4(rng, [10, 2]), v4(rng, [8, 8]), udp(ephemeral(rng), 53)).payload(&[0x5a; 48])
        }
        55..70 => {
            let t = tcp(ephemeral(rng), 443, tcp_flags::ACK | tcp_flags::PSH, rng.u32(), rng.u32());
            FrameBuilder::new(v6(rng), v6(rng), t).payload(&[0xa5; 100])
        }
        70..75 => FrameBuilder::new(v6(rng), v6(rng), udp(ephemeral(rng), 123)).payload(&[0; 48]),
        75..85 => {
            let t: Transport = if roll.is_multiple_of(2) {
                tcp(ephemeral(rng), 22, small_tcp_flags(rng), rng.u32(), 0)
            } else {
                udp(ephemeral(rng), 514)
            };
            let vlans: &[u16] = if roll < 80 { &[100] } else { &[200, 100] };
            FrameBuilder::new(v4(rng, [10, 3]), v4(rng, [172, 16]), t).vlans(vlans)
        }
        85..90 => FrameBuilder::new(v4(rng, [10, 4]), v4(rng, [192, 168]), icmp(8, 0, rng.u32()))
            .payload(&[0x11; 32]),
        _ => {
            let t = tcp(443, ephemeral(rng), tcp_flags::ACK, rng.u32(), rng.u32());
            FrameBuilder::new(v4(rng, [192, 168]), v4(rng, [10, 1]), t).payload(&[0x42; 512])
        }
    }
}

/// The fields both decoders under comparison extract from a frame. Zero where they do not
/// apply (ports of ICMP, flags of UDP, VLAN of an untagged frame).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Source address.
    pub src: IpAddress,
    /// Destination address.
    pub dst: IpAddress,
    /// Transport source port (TCP, UDP).
    pub src_port: u16,
    /// Transport destination port (TCP, UDP).
    pub dst_port: u16,
    /// IP protocol after any IPv6 extension headers.
    pub ip_proto: u8,
    /// TCP flags as in [`PacketMeta::tcp_flags`] (NS as bit 8).
    pub tcp_flags: u16,
    /// Outermost VLAN id.
    pub vlan: u16,
}

impl Fields {
    /// The fields of an Outpost [`PacketMeta`].
    #[inline]
    #[must_use]
    pub fn from_meta(m: &PacketMeta) -> Fields {
        Fields {
            src: m.src,
            dst: m.dst,
            src_port: m.src_port,
            dst_port: m.dst_port,
            ip_proto: m.ip_proto,
            tcp_flags: m.tcp_flags,
            vlan: if m.vlan_count > 0 { m.vlan[0] } else { 0 },
        }
    }

    /// Decodes an Ethernet frame with [`outpost_decode::decode`] and keeps these fields.
    #[inline]
    #[must_use]
    pub fn outpost(frame: &[u8]) -> Option<Fields> {
        let wire_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        outpost_decode::decode(LinkType::Ethernet, frame, Nanos::ZERO, wire_len)
            .ok()
            .map(|m| Fields::from_meta(&m))
    }

    /// Slices an Ethernet frame with etherparse's strict [`SlicedPacket::from_ethernet`] (IP
    /// and transport lengths are checked) and reads these fields from the slices; `None` when
    /// etherparse rejects the frame or it is not IP.
    #[inline]
    #[must_use]
    pub fn etherparse(frame: &[u8]) -> Option<Fields> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let mut f = Fields::default();
        if let Some(LinkExtSlice::Vlan(v)) = p.link_exts.first() {
            f.vlan = v.vlan_identifier().value();
        }
        match p.net? {
            NetSlice::Ipv4(ip) => {
                let h = ip.header();
                f.src = IpAddress::from_v4(h.source());
                f.dst = IpAddress::from_v4(h.destination());
                f.ip_proto = ip.payload().ip_number.0;
            }
            NetSlice::Ipv6(ip) => {
                let h = ip.header();
                f.src = IpAddress::from_v6(h.source());
                f.dst = IpAddress::from_v6(h.destination());
                f.ip_proto = ip.payload().ip_number.0;
            }
            NetSlice::Arp(_) => return None,
        }
        f.read_transport(p.transport.as_ref());
        Some(f)
    }

    /// As [`Fields::etherparse`] with etherparse's lenient [`LaxSlicedPacket::from_ethernet`]
    /// (lengths beyond the captured bytes are tolerated, errors stop the slicing instead of
    /// failing it).
    #[inline]
    #[must_use]
    pub fn etherparse_lax(frame: &[u8]) -> Option<Fields> {
        let p = LaxSlicedPacket::from_ethernet(frame).ok()?;
        let mut f = Fields::default();
        if let Some(LaxLinkExtSlice::Vlan(v)) = p.link_exts.first() {
            f.vlan = v.vlan_identifier().value();
        }
        match p.net? {
            LaxNetSlice::Ipv4(ip) => {
                let h = ip.header();
                f.src = IpAddress::from_v4(h.source());
                f.dst = IpAddress::from_v4(h.destination());
                f.ip_proto = ip.payload().ip_number.0;
            }
            LaxNetSlice::Ipv6(ip) => {
                let h = ip.header();
                f.src = IpAddress::from_v6(h.source());
                f.dst = IpAddress::from_v6(h.destination());
                f.ip_proto = ip.payload().ip_number.0;
            }
            LaxNetSlice::Arp(_) => return None,
        }
        f.read_transport(p.transport.as_ref());
        Some(f)
    }

    #[inline(always)]
    fn read_transport(&mut self, t: Option<&TransportSlice<'_>>) {
        match t {
            Some(TransportSlice::Tcp(t)) => {
                self.src_port = t.source_port();
                self.dst_port = t.destination_port();
                self.tcp_flags = u16::from(t.fin())
                    | u16::from(t.syn()) << 1
                    | u16::from(t.rst()) << 2
                    | u16::from(t.psh()) << 3
                    | u16::from(t.ack()) << 4
                    | u16::from(t.urg()) << 5
                    | u16::from(t.ece()) << 6
                    | u16::from(t.cwr()) << 7
                    | u16::from(t.ns()) << 8;
            }
            Some(TransportSlice::Udp(u)) => {
                self.src_port = u.source_port();
                self.dst_port = u.destination_port();
            }
            _ => {}
        }
    }
}

/// Repeated timings of one case, in nanoseconds per packet.
#[derive(Clone, Debug, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Adds one repetition's result.
    pub fn push(&mut self, ns_per_packet: f64) {
        self.0.push(ns_per_packet);
    }

    /// Number of repetitions recorded.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The median (mean of the middle two for an even count); 0 when empty.
    #[must_use]
    pub fn median(&self) -> f64 {
        median(&self.0)
    }

    /// The smallest sample; 0 when empty.
    #[must_use]
    pub fn min(&self) -> f64 {
        self.0.iter().copied().reduce(f64::min).unwrap_or(0.0)
    }

    /// The largest sample; 0 when empty.
    #[must_use]
    pub fn max(&self) -> f64 {
        self.0.iter().copied().reduce(f64::max).unwrap_or(0.0)
    }
}

/// The median of `values` (mean of the middle two for an even count); 0 when empty. NaNs sort
/// last.
#[must_use]
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(0.0),
        _ => (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let mut s = Samples::default();
        for x in [5.0, 1.0, 9.0] {
            s.push(x);
        }
        assert_eq!((s.median(), s.min(), s.max(), s.len()), (5.0, 1.0, 9.0, 3));
    }

    #[test]
    fn frame_sets_are_deterministic_and_min_size() {
        let a = FrameSet::build(Mix::Realistic, 500, 7);
        let b = FrameSet::build(Mix::Realistic, 500, 7);
        assert_eq!(a.data, b.data);
        assert!(a.iter().all(|f| f.len() >= MIN_FRAME));
        let t = FrameSet::build(Mix::Tcp64, 100, 7);
        assert!(t.iter().all(|f| f.len() == MIN_FRAME));
    }

    /// The peer is timed for the same work: on every frame of both mixes, etherparse (strict
    /// and lax) and Outpost extract identical fields, and every frame decodes.
    #[test]
    fn etherparse_and_outpost_agree_on_every_frame() {
        for mix in [Mix::Realistic, Mix::Tcp64] {
            let set = FrameSet::build(mix, 4096, 1);
            let mut kinds = std::collections::HashSet::new();
            for frame in set.iter() {
                let ours = Fields::outpost(frame).expect("outpost decodes every benchmark frame");
                assert_eq!(Fields::etherparse(frame), Some(ours), "strict etherparse, frame {frame:02x?}");
                assert_eq!(Fields::etherparse_lax(frame), Some(ours), "lax etherparse, frame {frame:02x?}");
                kinds.insert((ours.src.is_v4(), ours.ip_proto, ours.vlan != 0));
            }
            if mix == Mix::Realistic {
                // v4 TCP/UDP/ICMP, v6 TCP/UDP, tagged v4 TCP/UDP.
                assert_eq!(kinds.len(), 7, "{kinds:?}");
            }
        }
    }
}
