//! Background noise for the seed scenario: packets that are not events, so filters and event
//! classes are exercised on traffic they must ignore.
//!
//! Noise is a Poisson stream of its own (its own random stream, so switching noise on does not
//! change a single event packet) mixing DNS queries and answers (UDP 53), HTTPS segments
//! (TCP 443, both directions), NTP (UDP 123), syslog (UDP 514) and ICMP / ICMPv6 echo. Client
//! sides use ephemeral ports 32768..=60999. No noise packet is UDP to or from 7001..=7007.

use std::io::Write as _;
use std::net::IpAddr;

use crate::frame::{FrameBuilder, Transport, icmp, tcp, udp};
use outpost_decode::meta::tcp_flags;

use super::networks::{NETWORKS, NetworkRole, SeedNetwork, server_networks};
use super::{EPHEMERAL_PORTS, mac_for, random_client_addr};
use crate::random::Random;

/// Random stream used for noise (events use stream 0).
const NOISE_STREAM: u64 = 1;

/// Names asked for in DNS noise.
const DNS_NAMES: &[&[&str]] = &[
    &["www", "example", "com"],
    &["api", "example", "net"],
    &["time", "example", "org"],
    &["updates", "example", "com"],
    &["cdn", "example", "net"],
    &["mail", "example", "org"],
];

/// Host number of each server network's NTP server and log host.
const NTP_HOST: u8 = 123;
const SYSLOG_HOST: u8 = 14;

/// The noise stream: when its next packet is due and how to build it.
#[derive(Debug)]
pub(crate) struct Noise {
    rng: Random,
    /// Mean gap between noise packets, nanoseconds.
    mean_gap_ns: f64,
    /// Timestamp of the next noise packet.
    next_ns: u64,
    ipv6_fraction: f64,
    /// Bytes reused for random payloads.
    scratch: Vec<u8>,
}

impl Noise {
    /// Noise at `rate` packets per second from `start_ns`, or `None` for a zero rate.
    pub(crate) fn new(seed: u64, start_ns: u64, rate: f64, ipv6_fraction: f64) -> Option<Noise> {
        if !(rate > 0.0 && rate.is_finite()) {
            return None;
        }
        let mut rng = Random::new(seed, NOISE_STREAM);
        let mean_gap_ns = 1e9 / rate;
        let next_ns = start_ns.saturating_add(rng.exponential(mean_gap_ns, f64::INFINITY) as u64);
        Some(Noise { rng, mean_gap_ns, next_ns, ipv6_fraction, scratch: Vec::with_capacity(512) })
    }

    /// Timestamp of the next noise packet.
    pub(crate) fn next_ns(&self) -> u64 {
        self.next_ns
    }

    /// Sets up `fb` for the next noise packet, returns its timestamp and schedules the one after.
    pub(crate) fn next_packet(&mut self, fb: &mut FrameBuilder) -> u64 {
        let ts = self.next_ns;
        self.next_ns = ts.saturating_add(self.rng.exponential(self.mean_gap_ns, f64::INFINITY) as u64);
        let v6 = self.rng.chance(self.ipv6_fraction);
        let host = random_client_addr(&mut self.rng, v6);
        let server_net = pick_server_network(&mut self.rng);
        let eph = self.rng.range_u16(*EPHEMERAL_PORTS.start(), *EPHEMERAL_PORTS.end());
        fb.ip_id = self.rng.next_u64() as u16;
        fb.payload.clear();
        let kind = self.rng.below(100);
        let (src, dst, transport) = match kind {
            0..25 => {
                let resolver = server_net.resolver(v6);
                self.dns(fb, false, v6);
                (host, resolver, udp(eph, 53))
            }
            25..45 => {
                let resolver = server_net.resolver(v6);
                self.dns(fb, true, v6);
                (resolver, host, udp(53, eph))
            }
            45..65 => {
                let peer = external_host(&mut self.rng, v6);
                let t = self.https(fb, eph, 443);
                (host, peer, t)
            }
            65..75 => {
                let peer = external_host(&mut self.rng, v6);
                let t = self.https(fb, 443, eph);
                (peer, host, t)
            }
            75..80 => {
                // NTP v4 client request (RFC 5905 §7.3): LI 0, VN 4, mode 3, then zeros and a
                // transmit timestamp.
                fb.payload.push(0x23);
                fb.payload.resize(40, 0);
                fb.payload.extend_from_slice(&self.rng.next_u64().to_be_bytes());
                (host, server_net.host(NTP_HOST, v6), udp(eph, 123))
            }
            80..90 => {
                let n = self.rng.below(10_000);
                // Writing into a Vec cannot fail.
                let _ = write!(
                    fb.payload,
                    "<134>Jan  1 00:00:00 host{n} app[{}]: request served in {n} us",
                    n % 977
                );
                (host, server_net.host(SYSLOG_HOST, v6), udp(eph, 514))
            }
            _ => {
                let server = server_net.host(10 + self.rng.below(4) as u8, v6);
                let reply = self.rng.chance(0.5);
                let id_seq = self.rng.next_u64() as u32;
                fb.payload.extend((0u8..56).map(|i| i.wrapping_add(0x10)));
                let (request, answer) = if v6 { (128, 129) } else { (8, 0) };
                if reply {
                    (server, host, icmp(answer, 0, id_seq))
                } else {
                    (host, server, icmp(request, 0, id_seq))
                }
            }
        };
        fb.src = src;
        fb.dst = dst;
        fb.src_mac = mac_for(src);
        fb.dst_mac = mac_for(dst);
        fb.ttl = if matches!(transport, Transport::Icmp { .. }) { 128 } else { 64 };
        fb.transport = transport;
        ts
    }

    /// A DNS query or answer (RFC 1035 §4.1) for one of [`DNS_NAMES`], A or AAAA by family.
    fn dns(&mut self, fb: &mut FrameBuilder, answer: bool, v6: bool) {
        let p = &mut fb.payload;
        let id = self.rng.next_u64() as u16;
        let flags: u16 = if answer { 0x8180 } else { 0x0100 };
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&flags.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]); // QD, AN, NS, AR counts
        let name = DNS_NAMES[self.rng.below(DNS_NAMES.len() as u64) as usize];
        for label in name {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        let qtype: u16 = if v6 { 28 } else { 1 };
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes()); // class IN
        if answer {
            p.extend_from_slice(&[0xc0, 0x0c]); // pointer to the question name
            p.extend_from_slice(&qtype.to_be_bytes());
            p.extend_from_slice(&1u16.to_be_bytes());
            p.extend_from_slice(&300u32.to_be_bytes()); // TTL
            match external_host(&mut self.rng, v6) {
                IpAddr::V4(a) => {
                    p.extend_from_slice(&4u16.to_be_bytes());
                    p.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    p.extend_from_slice(&16u16.to_be_bytes());
                    p.extend_from_slice(&a.octets());
                }
            }
        }
    }

    /// A TCP segment of an HTTPS connection: SYN, ACK, FIN|ACK, or PSH|ACK carrying a TLS
    /// application-data record (RFC 8446 §5.1) of random bytes.
    fn https(&mut self, fb: &mut FrameBuilder, sport: u16, dport: u16) -> Transport {
        let seq = self.rng.next_u64() as u32;
        let ack = self.rng.next_u64() as u32;
        let flags = match self.rng.below(10) {
            0 => tcp_flags::SYN,
            1..4 => tcp_flags::ACK,
            4 => tcp_flags::FIN | tcp_flags::ACK,
            _ => {
                let len = 20 + self.rng.below(400) as usize;
                fb.payload.extend_from_slice(&[0x17, 0x03, 0x03]);
                fb.payload.extend_from_slice(&(len as u16).to_be_bytes());
                self.scratch.clear();
                while self.scratch.len() < len {
                    self.scratch.extend_from_slice(&self.rng.next_u64().to_le_bytes());
                }
                fb.payload.extend_from_slice(&self.scratch[..len]);
                tcp_flags::PSH | tcp_flags::ACK
            }
        };
        let ack = if flags == tcp_flags::SYN { 0 } else { ack };
        tcp(sport, dport, flags, seq, ack)
    }
}

fn pick_server_network(rng: &mut Random) -> &'static SeedNetwork {
    let count = server_networks().count() as u64;
    server_networks().nth(rng.below(count) as usize).unwrap_or(&NETWORKS[0])
}

/// A random host of the external network.
fn external_host(rng: &mut Random, v6: bool) -> IpAddr {
    let net = NETWORKS.iter().find(|n| n.role == NetworkRole::External).unwrap_or(&NETWORKS[0]);
    if v6 {
        IpAddr::V6(net.v6_addr(0, 1 + rng.below(0xffff)))
    } else {
        IpAddr::V4(net.v4_host(rng.below(net.v4_hosts())))
    }
}
