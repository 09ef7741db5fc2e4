//! Floods from spoofed sources, expanded packet by packet (a flood is hundreds of thousands of
//! packets; only the few in flight are held).
//!
//! | kind | what is sent | vs the rule |
//! |---|---|---|
//! | `syn-flood` | 6,000 SYNs/s for 15 s (Poisson arrivals), each from a random public source and port, to port 443 or 80 of a mix server; the victim answers each with a SYN-ACK (SYN cookies) to the spoofed source | about 60,000 SYNs per 10 s, 3× the 20,000 of `syn-flood` |
//! | `icmp-flood` | 6,000 echo requests/s for 15 s (56 bytes, random id and sequence) from random public sources to a mix server, each answered (Linux does not rate-limit echo replies) | about 60,000 ICMP packets per 10 s to the victim, 3× the 20,000 of `icmp-flood` |
//! | `udp-flood` | 15,000 datagrams/s for 15 s (one size of 16–96 bytes per flood) from random public sources to random ports ≥ 1024 of a mix server; port unreachables at Linux's global ICMP limit (`icmp_msgs_per_sec` 1000, burst 50), quoting the datagram | about 150,000 UDP packets per 10 s, 3× the 50,000 of `udp-flood` |
//!
//! 15 s at three times the rate keeps every 10 s window of the flood above twice the
//! threshold, however a detector aligns its buckets.
//!
//! Spoofed sources are drawn by [`public_address`]: never an address of the mix, of the
//! attack plan or of the intel list.

use std::net::IpAddr;

use outpost_decode::meta::tcp_flags::{ACK, SYN};

use super::ctx::{AttackCtx, Planned};
use super::packet::{Data, Pkt, Tag, filler_at, phase};
use super::plan::{IntelList, PlanExhausted, public_address};
use super::scan::port_unreachable;
use super::stream::{Pending, Script, Source};
use crate::frame::{Transport, icmp, udp};
use crate::random::Random;

/// How long a flood lasts, ns.
pub(crate) const FLOOD_DURATION: u64 = 15_000_000_000;
/// SYNs per second of a SYN flood: three times 20,000 per 10 s.
pub(crate) const SYN_RATE: u64 = 6_000;
/// Echo requests per second of an ICMP flood: three times 20,000 per 10 s.
pub(crate) const ICMP_RATE: u64 = 6_000;
/// Datagrams per second of a UDP flood: three times 50,000 per 10 s.
pub(crate) const UDP_RATE: u64 = 15_000;

/// Which flood to plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloodType {
    /// SYNs from spoofed sources.
    Syn,
    /// Echo requests from spoofed sources.
    Icmp,
    /// UDP datagrams from spoofed sources.
    Udp,
}

/// A flood as planned: what each packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FloodKind {
    /// SYNs to one port.
    Syn { port: u16 },
    /// Echo requests.
    Icmp,
    /// Datagrams of `len` bytes to random ports.
    Udp { len: u16 },
}

/// Linux's global ICMP error budget: a token bucket of `icmp_msgs_burst` (50) refilled at
/// `icmp_msgs_per_sec` (1000).
#[derive(Debug)]
struct GlobalIcmpLimit {
    tokens: f64,
    last: u64,
}

impl GlobalIcmpLimit {
    fn allow(&mut self, t: u64) -> bool {
        self.tokens = (self.tokens + t.saturating_sub(self.last) as f64 * 1e-6).min(50.0);
        self.last = t;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A flood, one event per packet sent by the spoofed sources.
#[derive(Debug)]
struct Flood {
    kind: FloodKind,
    rng: Random,
    next: u64,
    end: u64,
    mean_gap: f64,
    victim: IpAddr,
    v6: bool,
    tag: Tag,
    intel: IntelList,
    limit: GlobalIcmpLimit,
    victim_ip_id: u16,
    sent: u64,
}

impl Source for Flood {
    fn next_event(&self) -> Option<u64> {
        (self.next < self.end).then_some(self.next)
    }

    fn expand(&mut self, out: &mut Pending) {
        let t = self.next;
        let rng = &mut self.rng;
        let src = public_address(rng, self.v6, &self.intel);
        let ttl = rng.range(40, 120) as u8;
        let sport = rng.range(1024, 65_535) as u16;
        let reply_at = t + rng.range(15_000, 80_000);
        self.victim_ip_id = self.victim_ip_id.wrapping_add(1);
        let base = Pkt {
            ts: t,
            tag: self.tag,
            src,
            dst: self.victim,
            ttl,
            ip_id: rng.next_u16(),
            l4: udp(0, 0),
            data: Data::None,
        };
        match self.kind {
            FloodKind::Syn { port } => {
                let seq = rng.next_u32();
                let window = [512u16, 1024, 5840, 64240][rng.below(4) as usize];
                let syn = Pkt {
                    l4: Transport::Tcp { sport, dport: port, flags: SYN, seq, ack: 0, window },
                    ..base
                };
                // SYN cookies: the victim answers every SYN without keeping state.
                let cookie = rng.next_u32();
                let syn_ack = Pkt {
                    ts: reply_at,
                    src: self.victim,
                    dst: src,
                    ttl: 63,
                    ip_id: self.victim_ip_id,
                    l4: Transport::Tcp {
                        sport: port,
                        dport: sport,
                        flags: SYN | ACK,
                        seq: cookie,
                        ack: seq.wrapping_add(1),
                        window: 65160,
                    },
                    ..syn.clone()
                };
                out.push(syn);
                out.push(syn_ack);
            }
            FloodKind::Icmp => {
                let rest = rng.next_u32();
                let (request, reply) = if self.v6 { (128, 129) } else { (8, 0) };
                let data = Data::Filler { off: filler_at(self.sent * 56), len: 56 };
                let req = Pkt { l4: icmp(request, 0, rest), data, ..base };
                let rep = Pkt {
                    ts: reply_at,
                    src: self.victim,
                    dst: src,
                    ttl: 63,
                    ip_id: self.victim_ip_id,
                    l4: icmp(reply, 0, rest),
                    ..req.clone()
                };
                out.push(req);
                out.push(rep);
            }
            FloodKind::Udp { len } => {
                let dport = rng.range(1024, 65_535) as u16;
                let data = Data::Filler { off: filler_at(self.sent * 97), len };
                let dgram = Pkt { l4: udp(sport, dport), data, ..base };
                if self.limit.allow(reply_at) {
                    let (ty, code, max) = port_unreachable(self.v6);
                    out.push(Pkt {
                        ts: reply_at,
                        src: self.victim,
                        dst: src,
                        ttl: 64,
                        ip_id: self.victim_ip_id,
                        l4: icmp(ty, code, 0),
                        data: Data::Quote { inner: Box::new(dgram.clone()), max },
                        ..dgram.clone()
                    });
                }
                out.push(dgram);
            }
        }
        self.sent += 1;
        self.next += self.rng.exponential(self.mean_gap, 50.0 * self.mean_gap) as u64 + 1;
    }
}

/// Plans a flood against a server of the mix.
pub(crate) fn flood(ctx: &mut AttackCtx<'_>, which: FloodType) -> Result<Planned, PlanExhausted> {
    let victim = ctx.plan.victim(&mut ctx.rng, ctx.v6);
    let (kind, rate, port) = match which {
        FloodType::Syn => {
            let port = [443u16, 80][ctx.rng.weighted(&[3, 1])];
            (FloodKind::Syn { port }, SYN_RATE, Some(port))
        }
        FloodType::Icmp => (FloodKind::Icmp, ICMP_RATE, None),
        FloodType::Udp => (FloodKind::Udp { len: ctx.rng.range(16, 96) as u16 }, UDP_RATE, None),
    };
    let end = ctx.start + FLOOD_DURATION;
    let flood = Flood {
        kind,
        rng: ctx.sub_rng(0),
        next: ctx.start,
        end,
        mean_gap: 1e9 / rate as f64,
        victim,
        v6: ctx.v6,
        tag: ctx.tag(phase::MAIN),
        intel: ctx.intel.clone(),
        limit: GlobalIcmpLimit { tokens: 50.0, last: ctx.start },
        victim_ip_id: ctx.rng.next_u16(),
        sent: 0,
    };
    Ok(Planned {
        scripts: vec![Script::new(Box::new(flood))],
        attacker: None,
        target: Some(victim),
        port,
        // Replies trail the last request by at most 80 µs.
        end: end + 1_000_000,
        last: end + 1_000_000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_global_icmp_limit_allows_a_burst_then_a_thousand_per_second() {
        let mut l = GlobalIcmpLimit { tokens: 50.0, last: 0 };
        let allowed = (0..10_000u64).filter(|i| l.allow(i * 66_667)).count();
        // 0.67 s at 15,000/s: 50 at once, then about 1000 per second.
        assert!((700..=720).contains(&allowed), "{allowed}");
    }
}
