//! Attack packets described without bytes ([`Pkt`]), the [`Emitter`] that turns them into
//! frames, and TCP helpers: a connection that keeps sequence numbers ([`TcpConn`]) and a
//! [`Session`] that scripts a whole conversation (handshake, messages, bulk data, close).
//!
//! # Where the capture point is
//!
//! The sensor sits at the perimeter, next to the internal hosts: a packet of an internal host
//! answers the packet before it after that host's processing time (tens to hundreds of
//! microseconds), a packet of an external host answers one round trip later. [`Session`]
//! applies that rule to every reaction, so each TCP exchange has the timing a capture on the
//! inside shows.

use std::net::IpAddr;

use outpost_decode::meta::tcp_flags::{ACK, FIN, PSH, SYN};

use crate::frame::{FrameBuilder, Transport, udp};
use crate::random::Random;
use crate::seed::mac_for;

/// Which attack (index in the run) and which of its phases a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tag {
    pub(crate) attack: u16,
    pub(crate) phase: u8,
}

/// Phases an attack's packets are tagged with; the truth windows are made of them.
pub(crate) mod phase {
    /// The attack proper (every attack has it).
    pub(crate) const MAIN: u8 = 0;
    /// The second act: the interactive session after a brute force, the spike of a volume
    /// attack.
    pub(crate) const SECOND: u8 = 1;
    /// Background that belongs to the attack but is not in any truth window: the steady
    /// traffic a volume spike stands out from.
    pub(crate) const BACKGROUND: u8 = 2;
}

/// Filler bytes: pseudo-random, cut at any offset below [`FILLER_SPAN`].
pub(crate) const FILLER_LEN: usize = 1 << 16;
/// Offsets into the filler stay below this, so any cut of up to 2048 bytes fits.
pub(crate) const FILLER_SPAN: usize = FILLER_LEN - 2048;

/// A filler offset derived from any number (a sequence number, a counter).
pub(crate) fn filler_at(x: u64) -> u32 {
    (x % FILLER_SPAN as u64) as u32
}

/// A transport payload, without bytes where they are filler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Data {
    /// No payload.
    None,
    /// `n` zero bytes.
    Zeros(u16),
    /// `len` (at most 2048) filler bytes from `off`: encrypted-looking data.
    Filler { off: u32, len: u16 },
    /// Literal bytes: banners, protocol messages.
    Bytes(Vec<u8>),
    /// Literal bytes followed by `len` filler bytes from `off`: a record header and its
    /// encrypted body.
    Framed { head: Vec<u8>, off: u32, len: u16 },
    /// The IP datagram of `inner`, cut to `max` bytes: what an ICMP error quotes.
    Quote { inner: Box<Pkt>, max: u16 },
}

impl Data {
    /// Payload length in bytes (a quote's length is only known once built; it is never a TCP
    /// payload, so sequence numbers do not need it).
    pub(crate) fn len(&self) -> usize {
        match self {
            Data::None | Data::Quote { .. } => 0,
            Data::Zeros(n) => usize::from(*n),
            Data::Filler { len, .. } => usize::from(*len),
            Data::Bytes(b) => b.len(),
            Data::Framed { head, len, .. } => head.len() + usize::from(*len),
        }
    }

    /// `len` filler bytes at an offset drawn from `x`.
    pub(crate) fn filler(x: u64, len: usize) -> Data {
        Data::Filler { off: filler_at(x), len: len.min(2048) as u16 }
    }
}

/// One packet of an attack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pkt {
    /// Capture time, ns since the epoch.
    pub(crate) ts: u64,
    pub(crate) tag: Tag,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// TTL / hop limit as captured.
    pub(crate) ttl: u8,
    /// IPv4 identification.
    pub(crate) ip_id: u16,
    pub(crate) l4: Transport,
    pub(crate) data: Data,
}

/// Builds frames from [`Pkt`]s into one reused buffer.
#[derive(Debug)]
pub(crate) struct Emitter {
    fb: FrameBuilder,
    /// The frame last built.
    pub(crate) frame: Vec<u8>,
    filler: Vec<u8>,
}

/// Ethernet header length: attack frames carry no VLAN tags.
const ETHERNET_LEN: usize = 14;

impl Emitter {
    pub(crate) fn new(rng: &mut Random) -> Emitter {
        let mut filler = Vec::with_capacity(FILLER_LEN);
        while filler.len() < FILLER_LEN {
            filler.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut fb = FrameBuilder::new(unspecified, unspecified, udp(0, 0));
        fb.payload.reserve(4096);
        Emitter { fb, frame: Vec::with_capacity(4096), filler }
    }

    /// Builds `p` into [`Emitter::frame`].
    pub(crate) fn build(&mut self, p: &Pkt) -> &[u8] {
        self.fb.payload.clear();
        if let Data::Quote { inner, max } = &p.data {
            self.set_payload(&inner.data);
            self.set_headers(inner);
            self.frame.clear();
            self.fb.write_to(&mut self.frame);
            let ip = self.frame.get(ETHERNET_LEN..).unwrap_or_default();
            let quoted = &ip[..ip.len().min(usize::from(*max))];
            self.fb.payload.clear();
            self.fb.payload.extend_from_slice(quoted);
        } else {
            self.set_payload(&p.data);
        }
        self.set_headers(p);
        self.frame.clear();
        self.fb.write_to(&mut self.frame);
        &self.frame
    }

    fn set_payload(&mut self, data: &Data) {
        let cut = |off: u32, len: u16| {
            let off = (off as usize).min(FILLER_SPAN);
            off..off + usize::from(len).min(2048)
        };
        match data {
            Data::None | Data::Quote { .. } => {}
            Data::Zeros(n) => self.fb.payload.resize(usize::from(*n), 0),
            Data::Filler { off, len } => self.fb.payload.extend_from_slice(&self.filler[cut(*off, *len)]),
            Data::Bytes(b) => self.fb.payload.extend_from_slice(b),
            Data::Framed { head, off, len } => {
                self.fb.payload.extend_from_slice(head);
                self.fb.payload.extend_from_slice(&self.filler[cut(*off, *len)]);
            }
        }
    }

    fn set_headers(&mut self, p: &Pkt) {
        let fb = &mut self.fb;
        fb.src = p.src;
        fb.dst = p.dst;
        fb.src_mac = mac_for(p.src);
        fb.dst_mac = match p.dst {
            // An ARP request goes to everyone.
            _ if p.l4 == (Transport::Arp { op: 1 }) => [0xff; 6],
            // IPv6 multicast: 33:33 and the group's low 32 bits (RFC 2464 §7).
            IpAddr::V6(a) if a.is_multicast() => {
                let o = a.octets();
                [0x33, 0x33, o[12], o[13], o[14], o[15]]
            }
            _ => mac_for(p.dst),
        };
        fb.ttl = p.ttl;
        fb.ip_id = p.ip_id;
        fb.transport = p.l4.clone();
    }
}

/// One end of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) addr: IpAddr,
    pub(crate) port: u16,
    /// TTL its packets arrive with.
    pub(crate) ttl: u8,
    /// Receive window it advertises.
    pub(crate) window: u16,
    /// Outside the perimeter: its reactions show up one round trip late.
    pub(crate) external: bool,
}

/// Initiator → responder.
pub(crate) const FWD: usize = 0;
/// Responder → initiator.
pub(crate) const REV: usize = 1;

/// A TCP connection's addressing and sequence state (RFC 9293 §3.4): every segment carries
/// the sender's next sequence number and, with ACK, the other side's.
#[derive(Clone, Debug)]
pub(crate) struct TcpConn {
    pub(crate) ends: [Peer; 2],
    seq: [u32; 2],
    ip_id: [u16; 2],
    tag: Tag,
}

impl TcpConn {
    /// A connection with random initial sequence numbers and IP identifications.
    pub(crate) fn new(client: Peer, server: Peer, tag: Tag, rng: &mut Random) -> TcpConn {
        TcpConn {
            ends: [client, server],
            seq: [rng.next_u32(), rng.next_u32()],
            ip_id: [rng.next_u16(), rng.next_u16()],
            tag,
        }
    }

    /// Sets the next sequence number of `dir`: 0 for the RST-ACK a closed port sends to a
    /// segment without ACK (RFC 9293 §3.10.7.1).
    pub(crate) fn set_seq(&mut self, dir: usize, seq: u32) {
        if let Some(s) = self.seq.get_mut(dir) {
            *s = seq;
        }
    }

    /// The next segment from `dir` at `ts`; SYN and FIN count one sequence number.
    pub(crate) fn segment(&mut self, ts: u64, dir: usize, flags: u16, data: Data) -> Pkt {
        let d = dir.min(1);
        let (s, r) = (self.ends[d], self.ends[1 - d]);
        let seq = self.seq[d];
        let ack = if flags & ACK != 0 { self.seq[1 - d] } else { 0 };
        let len = data.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        self.seq[d] = seq.wrapping_add(len);
        let ip_id = self.ip_id[d];
        self.ip_id[d] = ip_id.wrapping_add(1);
        Pkt {
            ts,
            tag: self.tag,
            src: s.addr,
            dst: r.addr,
            ttl: s.ttl,
            ip_id,
            l4: Transport::Tcp { sport: s.port, dport: r.port, flags, seq, ack, window: s.window },
            data,
        }
    }
}

/// Delay of a host's immediate follow-up (its next packet right after its own last one):
/// tens of microseconds.
pub(crate) fn quick(rng: &mut Random) -> u64 {
    rng.range(8_000, 60_000)
}

/// A TCP conversation scripted packet by packet: each call appends packets after the last
/// one, with the reaction delays of the capture point (see the module docs).
#[derive(Debug)]
pub(crate) struct Session<'a> {
    pub(crate) conn: TcpConn,
    /// Time of the last packet.
    pub(crate) clock: u64,
    /// Round-trip time between the capture point and the external end, ns.
    pub(crate) rtt: u64,
    /// Maximum segment size.
    pub(crate) mss: usize,
    pub(crate) out: &'a mut Vec<Pkt>,
    pub(crate) rng: &'a mut Random,
}

impl<'a> Session<'a> {
    /// A session over `conn` whose first packet goes at `clock`.
    pub(crate) fn new(
        conn: TcpConn,
        clock: u64,
        rtt: u64,
        mss: usize,
        out: &'a mut Vec<Pkt>,
        rng: &'a mut Random,
    ) -> Session<'a> {
        Session { conn, clock, rtt, mss, out, rng }
    }

    /// Appends a segment `delay` after the last packet. Pure ACKs of the same side that would
    /// come later are dropped: this segment carries the ACK.
    pub(crate) fn push(&mut self, delay: u64, dir: usize, flags: u16, data: Data) {
        self.clock = self.clock.saturating_add(delay);
        self.drop_late_acks(dir, self.clock);
        let p = self.conn.segment(self.clock, dir, flags, data);
        self.out.push(p);
    }

    /// Forgets the pure ACKs of `dir` still to come at or after `at`: the packet `dir` sends
    /// at `at` acknowledges as much. Only the last packets are looked at: a session appends
    /// in near time order, so anything later than `at` is among them.
    fn drop_late_acks(&mut self, dir: usize, at: u64) {
        let me = self.conn.ends[dir.min(1)];
        let tail = self.out.len().saturating_sub(64);
        let mut i = self.out.len();
        while i > tail {
            i -= 1;
            let Some(p) = self.out.get(i) else { break };
            let pure_ack = matches!(p.l4, Transport::Tcp { sport, flags: ACK, .. } if sport == me.port)
                && p.data == Data::None
                && p.src == me.addr;
            if pure_ack && p.ts >= at {
                self.out.remove(i);
            }
        }
    }

    /// How long side `dir` takes to answer the last packet, as seen from the capture point:
    /// one round trip for an external host, processing time for an internal one.
    pub(crate) fn react(&mut self, dir: usize) -> u64 {
        if self.conn.ends[dir.min(1)].external {
            self.rtt + self.rng.range(0, 200_000)
        } else {
            self.rng.range(20_000, 250_000)
        }
    }

    /// SYN now, SYN-ACK and the ACK that completes the handshake.
    pub(crate) fn open(&mut self) {
        self.push(0, FWD, SYN, Data::None);
        let d = self.react(REV);
        self.push(d, REV, SYN | ACK, Data::None);
        let d = self.react(FWD);
        self.push(d, FWD, ACK, Data::None);
    }

    /// A message from `dir` sent `delay` after the last packet, in segments of at most one
    /// MSS (literal bytes), the last with PSH; the receiver ACKs every second segment and the
    /// last ([`Session::side_ack`]).
    pub(crate) fn message(&mut self, delay: u64, dir: usize, bytes: &[u8]) {
        let chunks: Vec<&[u8]> = bytes.chunks(self.mss.max(1)).collect();
        let n = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let last = i + 1 == n;
            let flags = if last { PSH | ACK } else { ACK };
            let d = if i == 0 { delay } else { self.serialize(chunk.len()) };
            self.push(d, dir, flags, Data::Bytes(chunk.to_vec()));
            if last || i % 2 == 1 {
                self.side_ack(1 - dir);
            }
        }
    }

    /// A pure ACK from `dir` for everything received so far, at its reaction time after the
    /// last packet, without moving the clock: the next packet of the script is timed from the
    /// data, as the sender does not wait for ACKs within its window. Packets may therefore
    /// come out of time order; whoever collects them sorts them.
    pub(crate) fn side_ack(&mut self, dir: usize) {
        let d = dir.min(1);
        // Tight timing, so ACKs of segments sent back to back keep their order.
        let delay = if self.conn.ends[d].external {
            self.rtt + self.rng.range(0, 30_000)
        } else {
            self.rng.range(20_000, 60_000)
        };
        let at = self.clock.saturating_add(delay);
        self.drop_late_acks(d, at);
        let p = self.conn.segment(at, d, ACK, Data::None);
        self.out.push(p);
    }

    /// An encrypted record from `dir`: `head` then `len` filler bytes, in MSS segments, sent
    /// `delay` after the last packet; ACKed like [`Session::message`].
    pub(crate) fn record(&mut self, delay: u64, dir: usize, head: &[u8], len: usize) {
        let mut head = head.to_vec();
        let mut left = head.len() + len;
        let mut i = 0usize;
        while left > 0 || i == 0 {
            let take = left.min(self.mss.max(1));
            let last = take == left;
            let flags = if last { PSH | ACK } else { ACK };
            let from_head = head.len().min(take);
            let fill = take - from_head;
            let x = u64::from(self.conn.seq[dir.min(1)]);
            let data = if from_head > 0 {
                let h: Vec<u8> = head.drain(..from_head).collect();
                Data::Framed { head: h, off: filler_at(x), len: fill as u16 }
            } else {
                Data::filler(x, fill)
            };
            let d = if i == 0 { delay } else { self.serialize(take) };
            self.push(d, dir, flags, data);
            if last || i % 2 == 1 {
                self.side_ack(1 - dir);
            }
            left -= take;
            i += 1;
        }
    }

    /// Serialization time of one segment at 100 Mbit/s: 80 ns per byte plus headers.
    fn serialize(&mut self, len: usize) -> u64 {
        (len as u64 + 54) * 80 + self.rng.range(0, 2_000)
    }

    /// Bulk data from `dir`: `total` bytes in MSS segments paced at `ns_per_byte`, starting
    /// `delay` after the last packet; the receiver ACKs every second segment and the last.
    /// With `tls`, the bytes are TLS application-data records of eleven segments each (a
    /// record header at the start of every eleventh segment), else plain filler.
    pub(crate) fn bulk(&mut self, delay: u64, dir: usize, total: u64, ns_per_byte: u64, tls: bool) {
        let mss = self.mss.max(64) as u64;
        let mut left = total;
        let mut i = 0u64;
        let mut d = delay;
        while left > 0 {
            let take = left.min(mss);
            let x = u64::from(self.conn.seq[dir.min(1)]);
            let data = if tls && i.is_multiple_of(11) && take > 5 {
                let record = left.min(11 * mss).saturating_sub(5);
                let l = (record.min(16_384) as u16).to_be_bytes();
                let fill = take.saturating_sub(5) as usize;
                Data::Framed { head: vec![23, 3, 3, l[0], l[1]], off: filler_at(x), len: fill as u16 }
            } else {
                Data::filler(x, take as usize)
            };
            let take = (data.len() as u64).max(1).min(left);
            left -= take;
            let last = left == 0;
            let flags = if last { PSH | ACK } else { ACK };
            self.push(d, dir, flags, data);
            if last || i % 2 == 1 {
                self.side_ack(1 - dir);
            }
            d = (take + 54) * ns_per_byte;
            i += 1;
        }
    }

    /// FIN-ACK from `first`, FIN-ACK from the other side, the last ACK from `first`.
    pub(crate) fn close(&mut self, delay: u64, first: usize) {
        self.push(delay, first, FIN | ACK, Data::None);
        let d = self.react(1 - first);
        self.push(d, 1 - first, FIN | ACK, Data::None);
        let d = self.react(first);
        self.push(d, first, ACK, Data::None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_decode::meta::tcp_flags::RST;
    use outpost_decode::{LinkType, decode};

    fn peer(addr: &str, port: u16, external: bool) -> Peer {
        Peer { addr: addr.parse().unwrap(), port, ttl: 60, window: 64240, external }
    }

    fn tcp_fields(p: &Pkt) -> (u16, u32, u32) {
        match p.l4 {
            Transport::Tcp { flags, seq, ack, .. } => (flags, seq, ack),
            _ => panic!("not TCP"),
        }
    }

    #[test]
    fn sequence_numbers_follow_syn_fin_and_data() {
        let mut rng = Random::attack(1, 0);
        let tag = Tag { attack: 0, phase: 0 };
        let mut out = Vec::new();
        let conn =
            TcpConn::new(peer("203.0.113.5", 40000, true), peer("192.168.1.10", 22, false), tag, &mut rng);
        let mut s = Session::new(conn, 1_000, 30_000_000, 1460, &mut out, &mut rng);
        s.open();
        s.message(10_000, REV, b"SSH-2.0-OpenSSH_9.6\r\n");
        let d = s.react(FWD) + 1_000_000;
        s.close(d, FWD);
        out.sort_by_key(|p| p.ts);
        let f: Vec<(u16, u32, u32)> = out.iter().map(tcp_fields).collect();
        let (c_isn, s_isn) = (f[0].1, f[1].1);
        assert_eq!(f[1].2, c_isn.wrapping_add(1), "SYN-ACK acknowledges the SYN");
        assert_eq!(f[2], (ACK, c_isn.wrapping_add(1), s_isn.wrapping_add(1)));
        assert_eq!(f[3].1, s_isn.wrapping_add(1), "banner starts after the SYN-ACK");
        assert_eq!(f[4].2, s_isn.wrapping_add(22), "client ACKs the 21-byte banner");
        assert_eq!(f[5].0, FIN | ACK);
        assert_eq!(f[7].2, f[6].1.wrapping_add(1), "the last ACK covers the server's FIN");
        // Reactions of the external client come one round trip after the server's packets.
        assert!(out[2].ts - out[1].ts >= 30_000_000);
        assert!(out[1].ts - out[0].ts < 1_000_000);
        assert!(out.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(f.iter().all(|x| x.0 & RST == 0));
    }

    #[test]
    fn records_and_bulk_cover_their_length_in_mss_segments() {
        let mut rng = Random::attack(2, 0);
        let tag = Tag { attack: 0, phase: 0 };
        let mut out = Vec::new();
        let conn =
            TcpConn::new(peer("192.168.7.40", 40000, false), peer("203.0.113.9", 443, true), tag, &mut rng);
        let mut s = Session::new(conn, 0, 20_000_000, 1448, &mut out, &mut rng);
        s.record(0, FWD, &[0x17, 0x03, 0x03, 0x10, 0x00], 4091);
        let sent: usize = out.iter().filter(|p| p.src == s_addr()).map(|p| p.data.len()).sum();
        assert_eq!(sent, 4096);
        out.clear();
        let conn =
            TcpConn::new(peer("192.168.7.40", 40001, false), peer("203.0.113.9", 443, true), tag, &mut rng);
        let mut s = Session::new(conn, 0, 20_000_000, 1448, &mut out, &mut rng);
        s.bulk(0, FWD, 100_000, 8, false);
        let data: Vec<&Pkt> = out.iter().filter(|p| p.data.len() > 0).collect();
        assert_eq!(data.iter().map(|p| p.data.len()).sum::<usize>(), 100_000);
        assert_eq!(data.len(), 100_000usize.div_ceil(1448));
        // Every second segment is ACKed, less the ACKs a later one overtook.
        let acks = out.len() - data.len();
        assert!(acks <= data.len().div_ceil(2) && acks >= data.len() / 4, "{acks}");
        out.sort_by_key(|p| p.ts);
        let ack_numbers: Vec<u32> =
            out.iter().filter(|p| p.data == Data::None).map(|p| tcp_fields(p).2).collect();
        assert!(ack_numbers.windows(2).all(|w| w[0] < w[1]), "ACKs only move forward");

        // As TLS: a record header every eleven segments, its length the record's.
        out.clear();
        let conn =
            TcpConn::new(peer("192.168.7.40", 40002, false), peer("203.0.113.9", 443, true), tag, &mut rng);
        let mut s = Session::new(conn, 0, 20_000_000, 1448, &mut out, &mut rng);
        s.bulk(0, FWD, 50_000, 8, true);
        let data: Vec<&Pkt> = out.iter().filter(|p| p.data.len() > 0).collect();
        assert_eq!(data.iter().map(|p| p.data.len()).sum::<usize>(), 50_000);
        let mut records = 0;
        for (i, p) in data.iter().enumerate() {
            if let Data::Framed { head, .. } = &p.data {
                assert_eq!(i % 11, 0);
                let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
                let in_record: usize = data[i..].iter().take(11).map(|p| p.data.len()).sum();
                assert_eq!(len + 5, in_record);
                records += 1;
            }
        }
        assert_eq!(records, data.len().div_ceil(11));
    }

    fn s_addr() -> IpAddr {
        "192.168.7.40".parse().unwrap()
    }

    #[test]
    fn quotes_carry_the_inner_datagram_and_frames_decode() {
        let mut rng = Random::attack(3, 0);
        let mut em = Emitter::new(&mut rng);
        let tag = Tag { attack: 0, phase: 0 };
        let probe = Pkt {
            ts: 5,
            tag,
            src: "203.0.113.7".parse().unwrap(),
            dst: "192.168.1.10".parse().unwrap(),
            ttl: 50,
            ip_id: 7,
            l4: udp(40000, 161),
            data: Data::Zeros(10),
        };
        let probe_frame = em.build(&probe).to_vec();
        let err = Pkt {
            src: probe.dst,
            dst: probe.src,
            l4: crate::frame::icmp(3, 3, 0),
            data: Data::Quote { inner: Box::new(probe.clone()), max: 548 },
            ..probe.clone()
        };
        let frame = em.build(&err).to_vec();
        assert_eq!(&frame[14 + 20 + 8..], &probe_frame[14..], "the whole probe is quoted");
        let meta = decode(LinkType::Ethernet, &frame, outpost_decode::Nanos(5), frame.len() as u32).unwrap();
        assert_eq!((meta.icmp_type, meta.icmp_code), (3, 3));
        assert!(meta.anomaly.is_none());
    }
}
