//! The address plan: who attacks, who is attacked, which sources a flood spoofs, and the intel
//! list — chosen so no attack address plays a role in the benign mix, and no benign packet
//! (nor any attack packet but the intel contact's) touches the intel list.
//!
//! | role | IPv4 | IPv6 |
//! |---|---|---|
//! | attackers, scan sources, brute forcers, the volume spike's collector and exfiltration peer | `203.0.113.10`..`.250` (TEST-NET-3; never in the mix) | `2001:db8:bad::10`..`::250` |
//! | victims | the mix's servers: `.10`..`.13` (web/TLS/SSH) of `192.168.1.0/24`, `172.16.5.0/24`, `192.168.7.0/24` | `2001:db8:101::10`.. of the server /48s |
//! | scanned networks | a server /24 (horizontal scan), a /26 of one (ping sweep) | the same host numbers in a server /64 (the seed scenario's IPv6 numbering) |
//! | the volume spike's host | `.30`..`.49` of a server network: no service role in the mix | the same in the server /48s |
//! | spoofed flood sources | random public IPv4: no private, shared, loopback, link-local, documentation, benchmark or multicast space, no intel entry | random in `2000::/3` outside `2001::/23`, `2001:db8::/32`, `2002::/16`, no intel entry |
//! | intel list | a few hundred random public addresses and prefixes (as for spoofed sources), plus each intel contact's listed address | |
//!
//! Every attack has its own attacker address (drawn without replacement), so attacks never
//! share a key, and no attack 5-tuple can equal a benign one: every attack packet has an
//! address the mix never uses at one end (an attacker, a spoofed source, a listed address).

use std::collections::HashSet;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use outpost_decode::{Cidr, IpAddress};

use crate::random::Random;
use crate::seed::{NETWORKS, SeedNetwork, server_networks};

/// The attackers' IPv4 network, TEST-NET-3 (RFC 5737).
pub const ATTACK_NETWORK_V4: [u8; 4] = [203, 0, 113, 0];
/// The attackers' IPv6 network: `2001:db8:bad::/48` (documentation space, RFC 3849).
pub const ATTACK_NETWORK_V6: [u16; 3] = [0x2001, 0xdb8, 0xbad];
/// First and last attacker host numbers.
const ATTACKER_HOSTS: std::ops::RangeInclusive<u8> = 10..=250;
/// Host numbers of the volume spike's hosts in a server network.
const QUIET_HOSTS: std::ops::RangeInclusive<u8> = 30..=49;
/// Host numbers of the mix's web/TLS/SSH servers.
pub(crate) const SERVER_HOSTS: std::ops::RangeInclusive<u8> = 10..=13;

/// Why the plan ran out of addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("more attacks than attacker addresses (241 per run)")]
pub struct PlanExhausted;

/// `n` written with hexadecimal digits that read as its decimal digits (254 → `0x254`), so
/// IPv6 host `::254` is host 254.
fn decimal_hex(n: u8) -> u64 {
    u64::from(n / 100) << 8 | u64::from(n / 10 % 10) << 4 | u64::from(n % 10)
}

/// Host `n` of the attack network.
pub(crate) fn attack_host(n: u8, v6: bool) -> IpAddr {
    if v6 {
        let [a, b, c] = ATTACK_NETWORK_V6;
        let bits =
            u128::from(a) << 112 | u128::from(b) << 96 | u128::from(c) << 80 | u128::from(decimal_hex(n));
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        let [a, b, c, _] = ATTACK_NETWORK_V4;
        IpAddr::V4(Ipv4Addr::new(a, b, c, n))
    }
}

/// True when `addr` is in the attack network (`203.0.113.0/24` or `2001:db8:bad::/48`).
#[must_use]
pub fn in_attack_network(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[..3] == ATTACK_NETWORK_V4[..3],
        IpAddr::V6(a) => a.segments()[..3] == ATTACK_NETWORK_V6,
    }
}

/// Addresses handed out so far in one run.
#[derive(Debug)]
pub(crate) struct AddressPlan {
    /// Attacker host numbers not yet used, in the order they are handed out.
    attackers: Vec<u8>,
    victims: HashSet<IpAddr>,
    quiet: HashSet<IpAddr>,
}

impl AddressPlan {
    pub(crate) fn new(rng: &mut Random) -> AddressPlan {
        let mut attackers: Vec<u8> = ATTACKER_HOSTS.collect();
        rng.shuffle(&mut attackers);
        attackers.reverse();
        AddressPlan { attackers, victims: HashSet::new(), quiet: HashSet::new() }
    }

    /// A fresh attacker address.
    pub(crate) fn attacker(&mut self, v6: bool) -> Result<IpAddr, PlanExhausted> {
        self.attackers.pop().map(|n| attack_host(n, v6)).ok_or(PlanExhausted)
    }

    /// A server network of the mix.
    pub(crate) fn server_network(rng: &mut Random) -> &'static SeedNetwork {
        let nets: Vec<&SeedNetwork> = server_networks().collect();
        rng.pick(&nets).copied().unwrap_or(&NETWORKS[4])
    }

    /// A web/TLS/SSH server of the mix, preferring one no other attack of the run has hit.
    pub(crate) fn victim(&mut self, rng: &mut Random, v6: bool) -> IpAddr {
        let mut pick = || {
            let net = AddressPlan::server_network(rng);
            net.host(rng.range(u64::from(*SERVER_HOSTS.start()), u64::from(*SERVER_HOSTS.end())) as u8, v6)
        };
        let mut addr = pick();
        for _ in 0..16 {
            if !self.victims.contains(&addr) {
                break;
            }
            addr = pick();
        }
        self.victims.insert(addr);
        addr
    }

    /// A host of a server network with no service role in the mix (`.30`..`.49`), not handed
    /// out before.
    pub(crate) fn quiet_host(&mut self, rng: &mut Random, v6: bool) -> IpAddr {
        self.quiet_host_on(rng, v6).0
    }

    /// [`AddressPlan::quiet_host`], and the server network it is on.
    pub(crate) fn quiet_host_on(&mut self, rng: &mut Random, v6: bool) -> (IpAddr, &'static SeedNetwork) {
        loop {
            let net = AddressPlan::server_network(rng);
            let n = rng.range(u64::from(*QUIET_HOSTS.start()), u64::from(*QUIET_HOSTS.end())) as u8;
            let addr = net.host(n, v6);
            if self.quiet.insert(addr) || self.quiet.len() >= 120 {
                return (addr, net);
            }
        }
    }
}

/// IPv4 blocks that are never drawn as public addresses: special-purpose space (RFC 6890),
/// multicast and reserved, and everything the mix and the attack plan use.
const V4_EXCLUDED: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),
    ([10, 0, 0, 0], 8),
    ([100, 64, 0, 0], 10),
    ([127, 0, 0, 0], 8),
    ([169, 254, 0, 0], 16),
    ([172, 16, 0, 0], 12),
    ([192, 0, 0, 0], 24),
    ([192, 0, 2, 0], 24),
    ([192, 88, 99, 0], 24),
    ([192, 168, 0, 0], 16),
    ([198, 18, 0, 0], 15),
    ([198, 51, 100, 0], 24),
    ([203, 0, 113, 0], 24),
    ([224, 0, 0, 0], 3),
];

/// IPv6 blocks excluded inside `2000::/3`: IETF protocol assignments (`2001::/23`),
/// documentation (`2001:db8::/32`, which holds the whole mix and the attack plan) and 6to4.
const V6_EXCLUDED: &[(u128, u8)] = &[(0x2001_0000 << 96, 23), (0x2001_0db8 << 96, 32), (0x2002 << 112, 16)];

fn v4_public(a: u32) -> bool {
    !V4_EXCLUDED.iter().any(|&(net, len)| {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        a & mask == u32::from_be_bytes(net)
    })
}

fn v6_public(a: u128) -> bool {
    a >> 125 == 1
        && !V6_EXCLUDED.iter().any(|&(net, len)| a >> (128 - u32::from(len)) == net >> (128 - u32::from(len)))
}

/// A random public address (see the module docs) that no intel entry covers.
pub(crate) fn public_address(rng: &mut Random, v6: bool, intel: &IntelList) -> IpAddr {
    loop {
        let addr = if v6 {
            let bits = (1u128 << 125) | (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) >> 3;
            if !v6_public(bits) {
                continue;
            }
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            let bits = rng.next_u32();
            if !v4_public(bits) {
                continue;
            }
            IpAddr::V4(Ipv4Addr::from(bits))
        };
        if !intel.contains(addr) {
            return addr;
        }
    }
}

/// An intel list: addresses and prefixes, none overlapping another.
#[derive(Debug, Default, Clone)]
pub struct IntelList {
    /// By first address, `first -> (last, prefix)` in the 128-bit IPv4-mapped form. A tree,
    /// not a sorted vector: a million-entry list is built in seconds, not minutes.
    ranges: std::collections::BTreeMap<u128, (u128, Cidr)>,
}

impl IntelList {
    /// Adds `cidr` unless it overlaps an entry; true when added.
    pub fn add(&mut self, cidr: Cidr) -> bool {
        let first = cidr.network().to_bits();
        let host_bits = 128 - u32::from(cidr.len128());
        let last = if host_bits >= 128 { u128::MAX } else { first | ((1u128 << host_bits) - 1) };
        let before = self.ranges.range(..first).next_back();
        let after = self.ranges.range(first..).next();
        if before.is_some_and(|(_, r)| r.0 >= first) || after.is_some_and(|(f, _)| *f <= last) {
            return false;
        }
        self.ranges.insert(first, (last, cidr));
        true
    }

    /// True when an entry covers `addr`.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let bits = IpAddress::from(addr).to_bits();
        self.ranges.range(..=bits).next_back().is_some_and(|(_, r)| r.0 >= bits)
    }

    /// Entries, sorted (IPv4 before IPv6).
    pub fn entries(&self) -> impl Iterator<Item = Cidr> + '_ {
        self.ranges.values().map(|r| r.1)
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when there is no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Writes the list: a comment header, then one entry per line — a bare address for a
    /// single host, `ADDRESS/LEN` for a prefix.
    ///
    /// # Errors
    /// Any I/O error of `out`.
    pub fn write_to<W: Write>(&self, mut out: W, seed: u64) -> io::Result<()> {
        writeln!(out, "# Outpost intel list written by `outpost gen attacks` (seed {seed}).")?;
        writeln!(out, "# One IPv4/IPv6 address or CIDR prefix per line; `#` starts a comment.")?;
        for c in self.entries() {
            if c.len128() == 128 {
                writeln!(out, "{}", c.network())?;
            } else {
                writeln!(out, "{c}")?;
            }
        }
        Ok(())
    }

    /// Parses a list in the format [`IntelList::write_to`] writes (comments, blank lines and
    /// overlapping entries are skipped).
    ///
    /// # Errors
    /// The first line that is neither a comment nor an address or prefix.
    pub fn parse(text: &str) -> Result<IntelList, String> {
        let mut list = IntelList::default();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or_default().trim();
            if entry.is_empty() {
                continue;
            }
            let cidr: Cidr = entry.parse().map_err(|e| format!("intel line {}: {e}", i + 1))?;
            list.add(cidr);
        }
        Ok(list)
    }
}

/// Background entries of the intel list: about `n` of them, most single IPv4 addresses, some
/// IPv4 prefixes (/20../24), some IPv6 addresses and /32../48 prefixes. `listed` (the intel
/// contacts' addresses) are added first, so nothing else covers them.
pub(crate) fn intel_list(rng: &mut Random, listed: &[IpAddr], n: usize) -> IntelList {
    let mut list = IntelList::default();
    for &a in listed {
        list.add(Cidr::host(IpAddress::from(a)));
    }
    while list.len() < n + listed.len() {
        let kind = rng.below(100);
        let v6 = kind >= 80;
        let addr = IpAddress::from(public_address(rng, v6, &IntelList::default()));
        let len = match kind {
            0..70 => 32,
            70..80 => [24, 24, 22, 20][rng.below(4) as usize],
            80..92 => 128,
            _ => [48, 48, 40, 32][rng.below(4) as usize],
        };
        let Some(cidr) = Cidr::new(addr, len) else { continue };
        // A prefix may stretch past the public space it was drawn in; keep only prefixes
        // whose both ends are public.
        let first = cidr.network().to_std();
        let host_bits = 128 - u32::from(cidr.len128());
        let last_bits = cidr.network().to_bits() | ((1u128 << host_bits.min(127)) - 1);
        let last = IpAddress::from_bits(last_bits).to_std();
        if !is_public(first) || !is_public(last) {
            continue;
        }
        list.add(cidr);
    }
    list
}

fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => v4_public(u32::from(a)),
        IpAddr::V6(a) => v6_public(u128::from(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::NetworkRole;

    #[test]
    fn attack_hosts_print_as_documented_and_are_outside_the_mix() {
        assert_eq!(attack_host(254, true).to_string(), "2001:db8:bad::254");
        assert_eq!(attack_host(10, false).to_string(), "203.0.113.10");
        let mut rng = Random::attack(1, 0);
        let mut plan = AddressPlan::new(&mut rng);
        let mut seen = HashSet::new();
        for i in 0..241 {
            let a = plan.attacker(i % 2 == 0).unwrap();
            assert!(in_attack_network(a));
            assert!(NETWORKS.iter().all(|n| !n.contains(a)), "{a}");
            assert!(seen.insert(a), "{a} handed out twice");
        }
        assert_eq!(plan.attacker(false), Err(PlanExhausted));
    }

    #[test]
    fn victims_are_mix_servers_and_quiet_hosts_are_in_server_networks() {
        let mut rng = Random::attack(2, 0);
        let mut plan = AddressPlan::new(&mut rng);
        let servers: HashSet<IpAddr> = server_networks().flat_map(|n| n.servers(false)).collect();
        let firsts: Vec<IpAddr> = (0..12).map(|_| plan.victim(&mut rng, false)).collect();
        assert!(firsts.iter().all(|v| servers.contains(v)));
        let distinct: HashSet<&IpAddr> = firsts.iter().collect();
        assert!(distinct.len() >= 10, "victims repeat early: {firsts:?}");
        for v6 in [false, true] {
            let q = plan.quiet_host(&mut rng, v6);
            assert!(NETWORKS.iter().any(|n| n.role == NetworkRole::Servers && n.contains(q)), "{q}");
        }
    }

    #[test]
    fn public_addresses_avoid_every_excluded_block_and_the_intel_list() {
        let mut rng = Random::attack(3, 0);
        let intel = intel_list(&mut rng, &["45.1.2.3".parse().unwrap()], 300);
        assert_eq!(intel.len(), 301);
        assert!(intel.contains("45.1.2.3".parse().unwrap()));
        for _ in 0..20_000 {
            for v6 in [false, true] {
                let a = public_address(&mut rng, v6, &intel);
                assert!(is_public(a) && !intel.contains(a), "{a}");
                assert!(NETWORKS.iter().all(|n| !n.contains(a)) && !in_attack_network(a), "{a}");
            }
        }
        for c in intel.entries() {
            assert!(is_public(c.network().to_std()), "{c}");
        }
        let mut text = Vec::new();
        intel.write_to(&mut text, 3).unwrap();
        let back = IntelList::parse(std::str::from_utf8(&text).unwrap()).unwrap();
        assert_eq!(back.entries().collect::<Vec<_>>(), intel.entries().collect::<Vec<_>>());
    }

    #[test]
    fn intel_entries_never_overlap() {
        let mut l = IntelList::default();
        assert!(l.add("45.0.0.0/16".parse().unwrap()));
        assert!(!l.add("45.0.3.4".parse().unwrap()));
        assert!(!l.add("44.0.0.0/7".parse().unwrap()));
        assert!(l.add("45.1.0.0/24".parse().unwrap()));
        assert!(l.add("2a00::/16".parse().unwrap()));
        assert!(l.contains("45.0.255.255".parse().unwrap()));
        assert!(!l.contains("45.1.1.0".parse().unwrap()));
        assert!(l.contains("2a00:1::1".parse().unwrap()));
        assert!(!l.contains("::ffff:0:0".parse::<IpAddr>().unwrap()));
    }
}
