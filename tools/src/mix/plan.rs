//! Starting a conversation: endpoints, round-trip times and TTLs, and — for everything but TCP
//! — the whole packet schedule.
//!
//! | kind | what is sent |
//! |---|---|
//! | `udp` | DNS (one query, or A + AAAA on one socket; 4 % retried after 1–2 s; 10 % NXDOMAIN), NTP (one exchange, or an `iburst` of 4 or 8, 2 s apart), or 1–12 syslog messages |
//! | `fragmented_udp` | an EDNS(0) DNS query whose TXT answer (1.6–6 KB) is fragmented, or 1–4 syslog messages of which at least one (1.6–12 KB) is fragmented |
//! | `icmp_echo` | 1–8 echo requests 1 s (or 0.2 s) apart, each answered after one round trip unless lost (3 %); Linux (56-byte) or Windows (32-byte) bodies |
//! | `icmp_unreach` | 1–3 UDP probes (or TCP SYNs) 1 s, 2 s apart, each answered by an ICMP error quoting it: two flows, the probe's (`udp` / `tcp_half_open`) and the error's |
//!
//! Fragments of one datagram follow each other at the flow's serialization rate, in order.

use super::conversation::{
    Body, Conversation, Endpoint, FWD, FlowAcc, REV, fragment_count, udp_unfragmented_max,
};
use super::hosts::{Client, ErrorKind, Peers};
use super::payload::{self, DnsMessage, dns_txt_min_len, echo_len, qtype};
use super::tcp::{TcpScript, TcpShape, TcpVariant};
use super::truth::FlowKind;
use crate::random::Random;

/// Per-run settings conversations are shaped by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlanSettings {
    /// Longest silence inside a flow, ns.
    pub(crate) max_gap: u64,
    /// Fraction of complete TCP conversations that are long-lived.
    pub(crate) long_fraction: f64,
}

/// Round-trip time to an internal (0.15–3 ms) or external (8–180 ms) peer, ns.
fn rtt(rng: &mut Random, internal: bool) -> u64 {
    let (lo, hi) = if internal { (150_000.0, 3_000_000.0) } else { (8_000_000.0, 180_000_000.0) };
    rng.log_uniform(lo, hi) as u64
}

/// TTL a peer's packets arrive with: a common initial TTL less the hops.
fn peer_ttl(rng: &mut Random, internal: bool) -> u8 {
    let initial: u8 = [64, 128, 255][rng.weighted(&[7, 2, 1])];
    let hops = if internal { rng.range(1, 3) } else { rng.range(6, 22) } as u8;
    initial - hops
}

/// Windows clients (a deterministic 30 % of hosts) send TTL 128 and Windows ping bodies.
fn is_windows(client: &Client) -> bool {
    client.mac[5] % 10 < 3
}

fn client_end(client: &Client, port: u16) -> Endpoint {
    let windows = is_windows(client);
    Endpoint {
        addr: client.addr,
        port,
        mac: client.mac,
        ttl: if windows { 128 } else { 64 },
        window: if windows { 65535 } else { 64240 },
    }
}

fn peer_end(addr: std::net::IpAddr, port: u16, internal: bool, rng: &mut Random) -> Endpoint {
    Endpoint {
        addr,
        port,
        mac: crate::seed::mac_for(addr),
        ttl: peer_ttl(rng, internal),
        window: [65160, 28960, 65535][rng.weighted(&[5, 3, 2])],
    }
}

/// True when `addr` is in the external network (Internet round-trip times).
fn is_external(addr: std::net::IpAddr) -> bool {
    crate::seed::NETWORKS.iter().any(|n| n.role == crate::seed::NetworkRole::External && n.contains(addr))
}

/// Starts a conversation of `kind` for `client` (whose key sequences it advances) at `start`,
/// its first flow numbered `serial`. `error` is the ICMP error an `icmp_unreach` conversation
/// gets (checked with [`Client::can`] beforehand).
#[expect(clippy::too_many_arguments, reason = "the scheduler's state, passed in pieces")]
pub(crate) fn start_conversation(
    kind: FlowKind,
    error: ErrorKind,
    client: &mut Client,
    peers: &Peers,
    serial: u64,
    start: u64,
    seed: u64,
    settings: &PlanSettings,
) -> Conversation {
    // Stream 0 is the scheduler's; conversation n uses stream n.
    let mut c = Conversation::new(start, Random::new(seed, serial));
    let v6 = client.is_v6();
    let vlans = client.vlans().to_vec();
    match kind {
        FlowKind::TcpComplete | FlowKind::TcpHalfOpen | FlowKind::TcpReset => {
            let variant = match kind {
                FlowKind::TcpComplete => TcpVariant::Complete,
                FlowKind::TcpHalfOpen if c.rng.chance(0.6) => TcpVariant::SynOnly,
                FlowKind::TcpHalfOpen => TcpVariant::SynSynAck,
                _ if c.rng.chance(0.5) => TcpVariant::Refused,
                _ => TcpVariant::MidReset,
            };
            let (server, internal) = peers.server(v6, 0.4, &mut c.rng);
            let port = [443, 80, 22, 993, 8443][c.rng.weighted(&[70, 15, 5, 5, 5])];
            let cport = client.take_port();
            let init = client_end(client, cport);
            let resp = peer_end(server, port, internal, &mut c.rng);
            let flow = FlowAcc::new(serial, kind, 6, init, resp, &vlans, &mut c.rng);
            c.flows.push(flow);
            let long = variant == TcpVariant::Complete && c.rng.chance(settings.long_fraction);
            let rounds = if long {
                c.rng.range(14, 30) as u32
            } else {
                let mut r = 1;
                while r < 30 && c.rng.chance(0.55) {
                    r += 1;
                }
                r
            };
            let shape = TcpShape {
                rtt: rtt(&mut c.rng, internal),
                ns_per_byte: 8e9 / c.rng.log_uniform(20e6, 1e9),
                mss: if v6 { 1440 } else { 1460 },
                rounds,
                think_mean: if long { 12e9 } else { 0.4e9 },
                max_gap: settings.max_gap,
            };
            let script = TcpScript::new(variant, shape, &mut c);
            c.tcp = Some(script);
        }
        FlowKind::Udp | FlowKind::FragmentedUdp => {
            let fragmented = kind == FlowKind::FragmentedUdp;
            let service =
                if fragmented { [0, 2][c.rng.weighted(&[1, 1])] } else { c.rng.weighted(&[70, 15, 15]) };
            let (host, port) = [(53, 53), (123, 123), (14, 514)][service];
            let server = peers.service(host, v6, &mut c.rng);
            let cport = client.take_port();
            let init = client_end(client, cport);
            let resp = peer_end(server, port, true, &mut c.rng);
            c.flows.push(FlowAcc::new(serial, kind, 17, init, resp, &vlans, &mut c.rng));
            let rtt = rtt(&mut c.rng, true);
            match (service, fragmented) {
                (0, false) => dns(&mut c, v6, rtt),
                (0, true) => dns_fragmented(&mut c, v6, rtt),
                (1, _) => ntp(&mut c, rtt),
                (_, false) => syslog(&mut c, v6, settings, false),
                (_, true) => syslog(&mut c, v6, settings, true),
            }
        }
        FlowKind::IcmpEcho => {
            let target = client.take_ping_target(peers);
            let internal = !is_external(target);
            let init = client_end(client, 0);
            let resp = peer_end(target, 0, internal, &mut c.rng);
            c.flows.push(FlowAcc::new(serial, kind, if v6 { 58 } else { 1 }, init, resp, &vlans, &mut c.rng));
            let rtt = rtt(&mut c.rng, internal);
            echo(&mut c, is_windows(client), rtt);
        }
        FlowKind::IcmpUnreach => {
            let (source, target) = client.take_error_source(error, peers, &mut c.rng);
            let tcp = c.rng.chance(0.3);
            let port = if tcp {
                [22, 3389, 445, 8080, 23][c.rng.weighted(&[3, 2, 2, 2, 1])]
            } else {
                [161, 514, 5060, 1900, 69][c.rng.weighted(&[3, 2, 2, 2, 1])]
            };
            let internal = !is_external(target);
            let cport = client.take_port();
            let init = client_end(client, cport);
            let probe_peer = peer_end(target, port, internal, &mut c.rng);
            let probe_kind = if tcp { FlowKind::TcpHalfOpen } else { FlowKind::Udp };
            let proto = if tcp { 6 } else { 17 };
            c.flows.push(FlowAcc::new(serial, probe_kind, proto, init, probe_peer, &vlans, &mut c.rng));
            let reporter = peer_end(source, 0, internal, &mut c.rng);
            let icmp_proto = if v6 { 58 } else { 1 };
            let victim = client_end(client, 0);
            c.flows.push(FlowAcc::new(serial + 1, kind, icmp_proto, reporter, victim, &vlans, &mut c.rng));
            let (ty, code) = error.type_code(v6);
            let rtt = rtt(&mut c.rng, internal);
            let attempts = 1 + c.rng.weighted(&[5, 3, 2]) as u32;
            let len = c.rng.range(30, 200) as u32;
            for k in 0..attempts {
                let delay = if k == 0 { 0 } else { (1_000_000_000u64 << (k - 1)).saturating_sub(rtt) };
                let body = if tcp {
                    Body::Tcp { flags: outpost_decode::meta::tcp_flags::SYN, len: 0 }
                } else {
                    Body::Probe { len }
                };
                c.push(delay, 0, FWD, body);
                c.push(rtt, 1, FWD, Body::Unreach { ty, code });
            }
        }
    }
    c
}

/// Microseconds, as nanoseconds.
fn us(rng: &mut Random, lo: u64, hi: u64) -> u64 {
    rng.range(lo, hi) * 1_000
}

fn dns(c: &mut Conversation, v6: bool, rtt: u64) {
    let id = c.rng.next_u64() as u16;
    let name = c.rng.below(payload::DNS_NAMES.len() as u64) as u8;
    let edns = c.rng.chance(0.5);
    let both = c.rng.chance(0.25);
    let types: &[u16] = match (both, v6) {
        (true, _) => &[qtype::A, qtype::AAAA],
        (false, true) => &[qtype::AAAA],
        (false, false) => &[qtype::A],
    };
    for (i, &qt) in types.iter().enumerate() {
        let id = id.wrapping_add(i as u16);
        let query = Body::Dns { id, name, qtype: qt, msg: DnsMessage::Query { edns }, frag: false };
        let d = if i == 0 { 0 } else { us(&mut c.rng, 20, 200) };
        c.push(d, 0, FWD, query);
        if c.rng.chance(0.04) {
            // The first answer was lost: the stub resolver asks again on the same socket.
            let timeout = c.rng.range(1_000, 2_000) * 1_000_000;
            c.push(timeout, 0, FWD, query);
        }
        let msg = if c.rng.chance(0.1) { DnsMessage::NxDomain } else { DnsMessage::Address };
        c.push(rtt, 0, REV, Body::Dns { id, name, qtype: qt, msg, frag: false });
    }
}

fn dns_fragmented(c: &mut Conversation, v6: bool, rtt: u64) {
    let id = c.rng.next_u64() as u16;
    let name = c.rng.below(payload::DNS_NAMES.len() as u64) as u8;
    c.push(
        0,
        0,
        FWD,
        Body::Dns { id, name, qtype: qtype::TXT, msg: DnsMessage::Query { edns: true }, frag: false },
    );
    let min = (udp_unfragmented_max(v6) as u32 + 1).max(dns_txt_min_len(usize::from(name)));
    let len = c.rng.range(u64::from(min.max(1600)), 6000) as u32;
    let body = Body::Dns { id, name, qtype: qtype::TXT, msg: DnsMessage::Txt { len }, frag: true };
    let gap = us(&mut c.rng, 2, 120);
    c.push_datagram(rtt, 0, REV, body, fragment_count(v6, len as usize), gap);
}

fn ntp(c: &mut Conversation, rtt: u64) {
    let exchanges = [1, 4, 8][c.rng.weighted(&[60, 25, 15])];
    for k in 0..exchanges {
        let d = if k == 0 { 0 } else { 2_000_000_000u64.saturating_sub(rtt) };
        c.push(d, 0, FWD, Body::Ntp { server: false, origin: 0 });
        let origin = c.clock;
        c.push(rtt, 0, REV, Body::Ntp { server: true, origin });
    }
}

fn syslog(c: &mut Conversation, v6: bool, settings: &PlanSettings, fragmented: bool) {
    let messages = if fragmented { c.rng.range(1, 4) } else { c.rng.range(1, 12) };
    let big_one = c.rng.below(messages);
    let gap_cap = (settings.max_gap as f64).min(10e9);
    for k in 0..messages {
        let d = if k == 0 { 0 } else { c.rng.exponential(1.5e9, gap_cap) as u64 };
        let big = fragmented && (k == big_one || c.rng.chance(0.5));
        let len = if big {
            c.rng.range(1600, 12_000)
        } else {
            c.rng.pareto(60.0, udp_unfragmented_max(v6) as f64, 1.5)
        } as u32;
        let count = if big { fragment_count(v6, len as usize) } else { 1 };
        let gap = us(&mut c.rng, 2, 120);
        c.push_datagram(d.max(1_000), 0, FWD, Body::Syslog { len, frag: big }, count, gap);
    }
}

fn echo(c: &mut Conversation, windows: bool, rtt: u64) {
    let count = [1, 2, 3, 4, 5, 6, 8][c.rng.weighted(&[10, 5, 10, 45, 10, 5, 15])];
    let interval = if c.rng.chance(0.1) { 200_000_000 } else { 1_000_000_000 };
    let id = c.rng.next_u64() as u16;
    let first_seq = if windows { c.rng.range(1, 5000) as u16 } else { 1 };
    debug_assert!(echo_len(windows) > 0);
    let mut next_at = c.clock;
    for k in 0..count {
        let d = next_at.saturating_sub(c.clock);
        let seq = first_seq.wrapping_add(k);
        c.push(d, 0, FWD, Body::Echo { reply: false, id, seq, sent: 0, windows });
        let sent = c.clock;
        next_at = sent + interval;
        if !c.rng.chance(0.03) {
            c.push(rtt.min(interval / 2), 0, REV, Body::Echo { reply: true, id, seq, sent, windows });
        }
    }
}
