//! What every attack builder gets ([`AttackCtx`]) and returns ([`Planned`]), and the small
//! helpers they share: round-trip times, TTLs, the mix's host roles.

use std::net::IpAddr;

use super::packet::{Peer, Pkt, Tag};
use super::plan::{AddressPlan, IntelList};
use super::stream::Script;
use crate::random::Random;

/// One attack being planned.
#[derive(Debug)]
pub(crate) struct AttackCtx<'a> {
    /// Index of the attack in the run (tags its packets).
    pub(crate) index: u16,
    /// When the attack proper starts, ns (its slot in the run's sequence).
    pub(crate) start: u64,
    /// Earliest time any packet of the attack may have (background that precedes the attack
    /// proper, such as a volume spike's steady traffic, may start this early), ns.
    pub(crate) origin: u64,
    /// IPv6 rather than IPv4.
    pub(crate) v6: bool,
    /// The attack's own random stream.
    pub(crate) rng: Random,
    pub(crate) plan: &'a mut AddressPlan,
    pub(crate) intel: &'a IntelList,
    /// The run's seed (for streams of sub-parts).
    pub(crate) seed: u64,
    /// The address an intel contact talks to (on the intel list).
    pub(crate) listed: Option<IpAddr>,
}

impl AttackCtx<'_> {
    /// A random stream of its own for part `k` of the attack (a flood's packets, a volume
    /// spike's steady traffic), independent of the attack's main stream.
    pub(crate) fn sub_rng(&self, k: u64) -> Random {
        Random::attack(self.seed, (u64::from(self.index) + 1) << 20 | (k + 1))
    }

    /// The tag of the attack's packets in `phase`.
    pub(crate) fn tag(&self, phase: u8) -> Tag {
        Tag { attack: self.index, phase }
    }

    /// A round-trip time between the capture point and an Internet host: 8–120 ms.
    pub(crate) fn external_rtt(&mut self) -> u64 {
        self.rng.range(8_000_000, 120_000_000)
    }

    /// The TTL an external host's packets arrive with: initial 64 less 8–20 hops.
    pub(crate) fn external_ttl(&mut self) -> u8 {
        64 - self.rng.range(8, 20) as u8
    }

    /// An internal server's end of a connection (TTL 63: Linux, one router away).
    pub(crate) fn server_peer(&mut self, addr: IpAddr, port: u16) -> Peer {
        let window = [65160, 29200, 64240][self.rng.below(3) as usize];
        Peer { addr, port, ttl: 63, window, external: false }
    }

    /// An internal host's processing delay before it answers: 20–250 µs.
    pub(crate) fn proc_delay(&mut self) -> u64 {
        self.rng.range(20_000, 250_000)
    }
}

/// A planned attack: its scripts and what the truth says about it.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) scripts: Vec<Script>,
    pub(crate) attacker: Option<IpAddr>,
    pub(crate) target: Option<IpAddr>,
    pub(crate) port: Option<u16>,
    /// The end of the attack proper: the next attack of the run starts a gap after it, ns.
    pub(crate) end: u64,
    /// No packet of the attack comes after this (later than `end` when background traffic
    /// trails the attack), ns.
    pub(crate) last: u64,
}

impl Planned {
    /// A plan of packets known in advance, sorted here.
    pub(crate) fn eager(
        mut pkts: Vec<Pkt>,
        attacker: Option<IpAddr>,
        target: Option<IpAddr>,
        port: Option<u16>,
    ) -> Planned {
        pkts.sort_by_key(|p| p.ts);
        let end = pkts.last().map_or(0, |p| p.ts);
        Planned { scripts: vec![Script::eager(pkts)], attacker, target, port, end, last: end }
    }
}

/// Host number of a server-network address: the last octet, or for IPv6 the inverse of the
/// seed scenario's numbering (interface id `(n / 10) << 4 | n % 10`, so host 53 is `::53`).
pub(crate) fn host_number(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => {
            let g = u32::from(a.segments()[7]);
            ((g >> 4) * 10 + (g & 0xf)).min(255) as u8
        }
    }
}

/// Hosts with a service role in the mix: gateway `.1`, servers `.10`..`.13`, syslog `.14`,
/// DNS `.53`, NTP `.123`.
pub(crate) fn has_role(n: u8) -> bool {
    matches!(n, 1 | 10..=14 | 53 | 123)
}

/// TCP ports a server-network host listens on, by its role in the mix.
pub(crate) fn open_tcp(n: u8) -> &'static [u16] {
    match n {
        10..=13 => &[22, 80, 443, 993, 8443],
        53 => &[53],
        _ => &[],
    }
}

/// True for a host without a role that is up (answers pings and RSTs closed ports): a fixed
/// pseudo-random `percent` of them, so every attack of a run agrees.
pub(crate) fn quiet_host_up(seed: u64, n: u8, percent: u64) -> bool {
    let x = (seed ^ u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 32) % 100 < percent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_numbers_of_both_families() {
        assert_eq!(host_number("192.168.1.53".parse().unwrap()), 53);
        assert_eq!(host_number("2001:db8:101::53".parse().unwrap()), 53);
        let net = &crate::seed::NETWORKS[4];
        for n in 1..=254u8 {
            assert_eq!(host_number(net.host(n, true)), n);
            assert_eq!(host_number(net.host(n, false)), n);
        }
    }
}
