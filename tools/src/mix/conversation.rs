//! Conversations: one or two flows whose packets are scheduled together, a queue of packets
//! described without bytes ([`Pkt`]), and the [`Emitter`] that turns them into frames and
//! counts them into each flow's truth.
//!
//! Scripts (in `tcp.rs` and `datagram.rs`) append packets with non-decreasing timestamps.
//! Short conversations are queued whole when they start; TCP conversations queue a few packets
//! at a time (their responses can run to thousands of segments), so a conversation holds a
//! bounded number of packets whatever its length.

use std::collections::VecDeque;
use std::net::IpAddr;

use outpost_decode::Nanos;
use outpost_decode::meta::tcp_flags::{ACK, FIN, SYN};

use super::payload::{self, DnsMessage};
use super::tcp::TcpScript;
use super::truth::{FlowKind, FlowTruth};
use crate::frame::{FrameBuilder, Transport, icmp, udp};
use crate::random::Random;

/// Initiator → responder.
pub(crate) const FWD: u8 = 0;
/// Responder → initiator.
pub(crate) const REV: u8 = 1;

/// One end of a flow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint {
    pub(crate) addr: IpAddr,
    /// Port (0 for ICMP).
    pub(crate) port: u16,
    pub(crate) mac: [u8; 6],
    /// TTL / hop limit its packets arrive with.
    pub(crate) ttl: u8,
    /// TCP receive window it advertises.
    pub(crate) window: u16,
}

/// A packet's transport and payload, without bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body {
    /// A TCP segment with `len` payload bytes.
    Tcp { flags: u16, len: u32 },
    /// A DNS message over UDP; `frag` when its datagram is sent as IP fragments.
    Dns { id: u16, name: u8, qtype: u16, msg: DnsMessage, frag: bool },
    /// An NTP request, or the reply to a request sent at `origin`.
    Ntp { server: bool, origin: u64 },
    /// A syslog message of `len` bytes; `frag` when sent as IP fragments.
    Syslog { len: u32, frag: bool },
    /// A UDP datagram of `len` filler bytes (probes that an ICMP error answers).
    Probe { len: u32 },
    /// ICMP / ICMPv6 echo request or reply; a reply's `sent` is its request's time (the body
    /// carries it).
    Echo { reply: bool, id: u16, seq: u16, sent: u64, windows: bool },
    /// ICMP / ICMPv6 error quoting the conversation's last flow-0 datagram.
    Unreach { ty: u8, code: u8 },
    /// Fragment `index` (1..) of the datagram whose first fragment was sent last.
    Fragment { index: u16 },
}

/// A queued packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt {
    pub(crate) ts: u64,
    /// Which flow of the conversation (0 or 1).
    pub(crate) flow: u8,
    /// [`FWD`] or [`REV`] within that flow.
    pub(crate) dir: u8,
    pub(crate) body: Body,
}

/// A flow being generated, with everything counted so far.
#[derive(Clone, Debug)]
pub(crate) struct FlowAcc {
    pub(crate) serial: u64,
    pub(crate) kind: FlowKind,
    pub(crate) proto: u8,
    pub(crate) init: Endpoint,
    pub(crate) resp: Endpoint,
    pub(crate) vlans: [u16; 2],
    pub(crate) vlan_count: u8,
    /// Initial sequence number per direction (TCP); SYNs, retransmitted or not, carry it.
    isn: [u32; 2],
    /// Next sequence number per direction (TCP).
    pub(crate) seq: [u32; 2],
    /// Next IPv4 identification per direction.
    pub(crate) ip_id: [u16; 2],
    icmp_first: Option<(u8, u8)>,
    packets: [u64; 2],
    bytes: [u64; 2],
    fragments: u64,
    first: u64,
    last: u64,
}

impl FlowAcc {
    pub(crate) fn new(
        serial: u64,
        kind: FlowKind,
        proto: u8,
        init: Endpoint,
        resp: Endpoint,
        vlans: &[u16],
        rng: &mut Random,
    ) -> FlowAcc {
        let mut v = [0u16; 2];
        for (d, s) in v.iter_mut().zip(vlans) {
            *d = *s;
        }
        let isn = [rng.next_u32(), rng.next_u32()];
        FlowAcc {
            serial,
            kind,
            proto,
            init,
            resp,
            vlans: v,
            vlan_count: vlans.len().min(2) as u8,
            isn,
            seq: isn,
            ip_id: [rng.next_u64() as u16, rng.next_u64() as u16],
            icmp_first: None,
            packets: [0; 2],
            bytes: [0; 2],
            fragments: 0,
            first: 0,
            last: 0,
        }
    }

    fn vlans(&self) -> &[u16] {
        &self.vlans[..usize::from(self.vlan_count.min(2))]
    }

    pub(crate) fn is_v6(&self) -> bool {
        self.init.addr.is_ipv6()
    }

    fn count(&mut self, dir: u8, ts: u64, ip_len: u64, fragment: bool) {
        let d = usize::from(dir.min(1));
        if self.packets == [0, 0] {
            self.first = ts;
        }
        self.packets[d] += 1;
        self.bytes[d] += ip_len;
        self.fragments += u64::from(fragment);
        self.last = ts;
    }

    /// Packets counted so far (both directions).
    pub(crate) fn packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }

    /// The truth record of what was counted.
    pub(crate) fn truth(&self) -> FlowTruth {
        let icmp = matches!(self.proto, 1 | 58);
        FlowTruth {
            flow: self.serial,
            kind: self.kind,
            proto: self.proto,
            vlans: self.vlans().to_vec(),
            initiator: self.init.addr,
            initiator_port: if icmp { 0 } else { self.init.port },
            responder: self.resp.addr,
            responder_port: if icmp { 0 } else { self.resp.port },
            icmp_type: self.icmp_first.map(|(t, _)| t),
            icmp_code: self.icmp_first.map(|(_, c)| c),
            fwd_packets: self.packets[0],
            fwd_bytes: self.bytes[0],
            rev_packets: self.packets[1],
            rev_bytes: self.bytes[1],
            fragments: self.fragments,
            first: Nanos(self.first).to_string(),
            first_ns: self.first,
            last: Nanos(self.last).to_string(),
            last_ns: self.last,
        }
    }
}

/// Everything frames are built with, shared by all conversations of a run.
#[derive(Debug)]
pub(crate) struct Emitter {
    pub(crate) fb: FrameBuilder,
    /// The frame last built.
    pub(crate) frame: Vec<u8>,
    /// Pseudo-random bytes TCP payloads and probes are cut from.
    filler: Vec<u8>,
    /// Printable text plain-HTTP payloads (port 80) are cut from, so protocol analyzers see
    /// text rather than malformed requests.
    text: Vec<u8>,
    /// Identification of the next fragmented datagram (IPv4 header / IPv6 fragment header).
    next_frag_id: u16,
    /// Timestamps are truncated to a multiple of this (1000 for microsecond pcap).
    quantum: u64,
}

/// Filler bytes: enough for any segment or probe at any offset below [`FILLER_SPAN`].
const FILLER_LEN: usize = 1 << 16;
const FILLER_SPAN: usize = FILLER_LEN - 2048;

impl Emitter {
    pub(crate) fn new(rng: &mut Random, quantum: u64) -> Emitter {
        let mut filler = Vec::with_capacity(FILLER_LEN);
        while filler.len() < FILLER_LEN {
            filler.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        let mut text = Vec::with_capacity(FILLER_LEN);
        let mut i = 0usize;
        while text.len() < FILLER_LEN {
            payload::push_text_line(&mut text, i);
            i += 1;
        }
        let unspecified = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        let mut fb = FrameBuilder::new(unspecified, unspecified, udp(0, 0));
        fb.payload.reserve(9000);
        Emitter {
            fb,
            frame: Vec::with_capacity(9100),
            filler,
            text,
            next_frag_id: rng.next_u64() as u16,
            quantum: quantum.max(1),
        }
    }
}

/// Largest fragmentable part per fragment on a 1500-byte MTU: IPv4 1480 bytes, IPv6 1448
/// (1500 − 40 − 8, rounded down to a multiple of 8; RFC 8200 §4.5).
pub(crate) const fn fragment_chunk(v6: bool) -> usize {
    if v6 { 1448 } else { 1480 }
}

/// Fragments a UDP datagram with `payload` bytes is split into.
pub(crate) const fn fragment_count(v6: bool, payload: usize) -> usize {
    (8 + payload).div_ceil(fragment_chunk(v6))
}

/// Largest UDP payload that still fits one 1500-byte packet.
pub(crate) const fn udp_unfragmented_max(v6: bool) -> usize {
    fragment_chunk(v6) - 8
}

/// One conversation in a scheduler slot.
#[derive(Debug)]
pub(crate) struct Conversation {
    pub(crate) flows: Vec<FlowAcc>,
    queue: VecDeque<Pkt>,
    /// Time of the last packet queued.
    pub(crate) clock: u64,
    pub(crate) tcp: Option<TcpScript>,
    pub(crate) rng: Random,
    /// Fragments of the datagram being sent.
    frags: Vec<Vec<u8>>,
    /// IP header and start of the last flow-0 datagram, quoted by ICMP errors.
    quote: Vec<u8>,
}

impl Conversation {
    pub(crate) fn new(start: u64, rng: Random) -> Conversation {
        Conversation {
            flows: Vec::with_capacity(2),
            queue: VecDeque::with_capacity(16),
            clock: start,
            tcp: None,
            rng,
            frags: Vec::new(),
            quote: Vec::new(),
        }
    }

    /// Queues a packet `delay` nanoseconds after the last one queued.
    pub(crate) fn push(&mut self, delay: u64, flow: u8, dir: u8, body: Body) {
        self.clock = self.clock.saturating_add(delay);
        self.queue.push_back(Pkt { ts: self.clock, flow, dir, body });
    }

    /// Queues a UDP datagram that may be fragmented: the first fragment carries `body`, the
    /// others follow `gap` apart.
    pub(crate) fn push_datagram(
        &mut self,
        delay: u64,
        flow: u8,
        dir: u8,
        body: Body,
        count: usize,
        gap: u64,
    ) {
        self.push(delay, flow, dir, body);
        for index in 1..count {
            self.push(gap, flow, dir, Body::Fragment { index: index as u16 });
        }
    }

    /// Takes the next queued packet without building it.
    #[cfg(test)]
    pub(crate) fn pop_for_test(&mut self) -> Option<Pkt> {
        self.queue.pop_front()
    }

    /// Packets queued and not yet emitted.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Time of the next packet, queueing more of a TCP script when needed; `None` when the
    /// conversation is over.
    pub(crate) fn next_ts(&mut self) -> Option<u64> {
        if self.queue.is_empty() {
            if let Some(mut script) = self.tcp.take() {
                if script.refill(self) {
                    self.tcp = Some(script);
                }
            }
        }
        self.queue.front().map(|p| p.ts)
    }

    /// Builds the next packet into `em.frame`, counts it, and returns its (truncated)
    /// timestamp.
    pub(crate) fn emit(&mut self, em: &mut Emitter) -> Option<u64> {
        let pkt = self.queue.pop_front()?;
        let ts = pkt.ts - pkt.ts % em.quantum;
        let Some(acc) = self.flows.get_mut(usize::from(pkt.flow)) else { return Some(ts) };
        let dir = usize::from(pkt.dir.min(1));
        let (s, d) = if dir == 0 { (acc.init, acc.resp) } else { (acc.resp, acc.init) };
        let fb = &mut em.fb;
        fb.src = s.addr;
        fb.dst = d.addr;
        fb.src_mac = s.mac;
        fb.dst_mac = d.mac;
        fb.ttl = s.ttl;
        fb.vlans.clear();
        fb.vlans.extend_from_slice(acc.vlans());
        fb.ip_id = acc.ip_id[dir];
        acc.ip_id[dir] = acc.ip_id[dir].wrapping_add(1);
        fb.payload.clear();
        let v6 = acc.is_v6();
        let mut first_fragment = false;
        let mut later_fragment = None;
        match pkt.body {
            Body::Tcp { flags, len } => {
                let seq = if flags & SYN != 0 { acc.isn[dir] } else { acc.seq[dir] };
                let ack = if flags & ACK != 0 { acc.seq[1 - dir] } else { 0 };
                let syn_fin = u32::from(flags & (SYN | FIN) != 0);
                acc.seq[dir] = seq.wrapping_add(len).wrapping_add(syn_fin);
                fb.transport =
                    Transport::Tcp { sport: s.port, dport: d.port, flags, seq, ack, window: s.window };
                let off = seq as usize % FILLER_SPAN;
                let source = if s.port == 80 || d.port == 80 { &em.text } else { &em.filler };
                fb.payload.extend_from_slice(&source[off..off + (len as usize).min(2048)]);
            }
            Body::Dns { id, name, qtype, msg, frag } => {
                fb.transport = udp(s.port, d.port);
                // Answers point into the documentation ranges of the external network.
                let answer = if qtype == payload::qtype::AAAA {
                    IpAddr::from([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1 + id % 0xfffe])
                } else {
                    IpAddr::from([198, 51, 100, 1 + (id % 254) as u8])
                };
                payload::dns(&mut fb.payload, id, usize::from(name), qtype, msg, answer);
                first_fragment = frag;
            }
            Body::Ntp { server, origin } => {
                fb.transport = udp(s.port, d.port);
                payload::ntp(&mut fb.payload, server, pkt.ts, origin);
            }
            Body::Syslog { len, frag } => {
                fb.transport = udp(s.port, d.port);
                payload::syslog(&mut fb.payload, len as usize, acc.serial as u32, u32::from(s.port), pkt.ts);
                first_fragment = frag;
            }
            Body::Probe { len } => {
                fb.transport = udp(s.port, d.port);
                let off = (acc.serial as usize * 61) % FILLER_SPAN;
                // SSDP and SIP are text protocols.
                let source = if matches!(d.port, 1900 | 5060) { &em.text } else { &em.filler };
                fb.payload.extend_from_slice(&source[off..off + (len as usize).min(2048)]);
            }
            Body::Echo { reply, id, seq, sent, windows } => {
                let ty = match (v6, reply) {
                    (false, false) => 8,
                    (false, true) => 0,
                    (true, false) => 128,
                    (true, true) => 129,
                };
                fb.transport = icmp(ty, 0, u32::from(id) << 16 | u32::from(seq));
                // A request carries its own send time; the reply echoes the request's body.
                let sent = if reply { sent } else { pkt.ts };
                payload::echo_body(&mut fb.payload, windows, sent);
                acc.icmp_first.get_or_insert((ty, 0));
            }
            Body::Unreach { ty, code } => {
                fb.transport = icmp(ty, code, 0);
                fb.payload.extend_from_slice(&self.quote);
                acc.icmp_first.get_or_insert((ty, code));
            }
            Body::Fragment { index } => later_fragment = Some(usize::from(index)),
        }
        em.frame.clear();
        if first_fragment {
            fb.ip_id = em.next_frag_id;
            em.next_frag_id = em.next_frag_id.wrapping_add(1);
            self.frags = fb.fragments(fragment_chunk(v6));
            em.frame.extend_from_slice(self.frags.first().map_or(&[][..], |f| f.as_slice()));
        } else if let Some(i) = later_fragment {
            em.frame.extend_from_slice(self.frags.get(i).map_or(&[][..], |f| f.as_slice()));
        } else {
            fb.write_to(&mut em.frame);
        }
        let l2 = 14 + 4 * usize::from(acc.vlan_count.min(2));
        let ip_len = em.frame.len().saturating_sub(l2) as u64;
        acc.count(pkt.dir, ts, ip_len, first_fragment || later_fragment.is_some());
        if pkt.flow == 0 && self.flows.len() == 2 {
            // ICMP errors quote the IP header and the first 8 bytes of the datagram (RFC 792);
            // ICMPv6 as much as fits the minimum MTU (RFC 4443 §3.1) — all of a small probe.
            let quote_len = if v6 { 1232 } else { 28 };
            let ip = em.frame.get(l2..).unwrap_or_default();
            self.quote.clear();
            self.quote.extend_from_slice(&ip[..ip.len().min(quote_len)]);
        }
        Some(ts)
    }
}
