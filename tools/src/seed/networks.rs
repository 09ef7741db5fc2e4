//! The networks the seed scenario draws addresses from, exported so the demo configuration and
//! tests use exactly the same prefixes and network ids as the generator.
//!
//! | id | name        | role     | IPv4             | IPv6               |
//! |----|-------------|----------|------------------|--------------------|
//! | 1  | `clients-1` | clients  | `10.1.0.0/16`    | `2001:db8:1::/48`  |
//! | 2  | `clients-2` | clients  | `10.2.0.0/16`    | `2001:db8:2::/48`  |
//! | 3  | `clients-3` | clients  | `10.3.0.0/16`    | `2001:db8:3::/48`  |
//! | 4  | `clients-4` | clients  | `10.4.0.0/16`    | `2001:db8:4::/48`  |
//! | 11 | `servers-1` | servers  | `192.168.1.0/24` | `2001:db8:101::/48`|
//! | 12 | `servers-2` | servers  | `172.16.5.0/24`  | `2001:db8:102::/48`|
//! | 13 | `servers-3` | servers  | `192.168.7.0/24` | `2001:db8:103::/48`|
//! | 20 | `external`  | external | `198.51.100.0/24`| `2001:db8:ffff::/48`|
//!
//! Event sources (clients) live only in the client networks; events go only to the
//! [`SERVERS_PER_NETWORK`] servers of each server network (IPv4 `.10`.., IPv6 `::10`..).
//! The external network only appears in background noise (HTTPS peers, DNS answers).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use outpost_decode::{Cidr, IpAddress};

/// What a network's hosts do in the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkRole {
    /// Hosts that walk the state machine (event sources) and send background noise.
    Clients,
    /// Hosts that receive events (and answer DNS, NTP, syslog, ping in the noise).
    Servers,
    /// Internet peers, seen only in background noise.
    External,
}

/// One network of the scenario: an id for configurations, a name, a role, one IPv4 and one
/// IPv6 prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedNetwork {
    /// Network id the demo configuration assigns to both prefixes.
    pub id: u16,
    /// Short name, e.g. `clients-1`.
    pub name: &'static str,
    /// What the hosts do.
    pub role: NetworkRole,
    /// IPv4 network address octets.
    pub v4: [u8; 4],
    /// IPv4 prefix length (at most 24: hosts are drawn in whole /24 blocks).
    pub v4_len: u8,
    /// IPv6 network address, the first three 16-bit groups (a /48).
    pub v6: [u16; 3],
}

/// Every network of the scenario, clients first.
pub const NETWORKS: &[SeedNetwork] = &[
    client(1, "clients-1", [10, 1, 0, 0], 0x1),
    client(2, "clients-2", [10, 2, 0, 0], 0x2),
    client(3, "clients-3", [10, 3, 0, 0], 0x3),
    client(4, "clients-4", [10, 4, 0, 0], 0x4),
    server(11, "servers-1", [192, 168, 1, 0], 0x101),
    server(12, "servers-2", [172, 16, 5, 0], 0x102),
    server(13, "servers-3", [192, 168, 7, 0], 0x103),
    SeedNetwork {
        id: 20,
        name: "external",
        role: NetworkRole::External,
        v4: [198, 51, 100, 0],
        v4_len: 24,
        v6: [0x2001, 0xdb8, 0xffff],
    },
];

/// Servers per server network that receive events: hosts `.10` .. `.13` (IPv4) and
/// `::10` .. `::13` (IPv6).
pub const SERVERS_PER_NETWORK: u8 = 4;

/// First server host number (`.10` / `::10`).
const FIRST_SERVER_HOST: u8 = 10;

/// Host number of each server network's DNS resolver (`.53` / `::53`), used by noise.
const RESOLVER_HOST: u8 = 53;

const fn client(id: u16, name: &'static str, v4: [u8; 4], v6_group: u16) -> SeedNetwork {
    SeedNetwork { id, name, role: NetworkRole::Clients, v4, v4_len: 16, v6: [0x2001, 0xdb8, v6_group] }
}

const fn server(id: u16, name: &'static str, v4: [u8; 4], v6_group: u16) -> SeedNetwork {
    SeedNetwork { id, name, role: NetworkRole::Servers, v4, v4_len: 24, v6: [0x2001, 0xdb8, v6_group] }
}

/// The client networks (ids 1..=4), in id order.
pub fn client_networks() -> impl Iterator<Item = &'static SeedNetwork> {
    NETWORKS.iter().filter(|n| n.role == NetworkRole::Clients)
}

/// The server networks (ids 11..=13), in id order.
pub fn server_networks() -> impl Iterator<Item = &'static SeedNetwork> {
    NETWORKS.iter().filter(|n| n.role == NetworkRole::Servers)
}

impl SeedNetwork {
    /// The IPv4 prefix, e.g. `10.1.0.0/16`.
    #[must_use]
    pub fn v4_cidr(&self) -> Cidr {
        let net = IpAddress::from_v4(self.v4);
        Cidr::new(net, self.v4_len).unwrap_or_else(|| Cidr::host(net))
    }

    /// The IPv6 prefix, e.g. `2001:db8:1::/48`.
    #[must_use]
    pub fn v6_cidr(&self) -> Cidr {
        let net = IpAddress::from(self.v6_addr(0, 0));
        Cidr::new(net, 48).unwrap_or_else(|| Cidr::host(net))
    }

    /// Both prefixes, IPv4 first.
    #[must_use]
    pub fn cidrs(&self) -> [Cidr; 2] {
        [self.v4_cidr(), self.v6_cidr()]
    }

    /// True when `addr` lies in either prefix.
    #[must_use]
    pub fn contains(&self, addr: IpAddr) -> bool {
        let a = IpAddress::from(addr);
        self.cidrs().iter().any(|c| c.contains(&a))
    }

    /// The addresses of the event servers of this network in one family (empty unless the
    /// role is [`NetworkRole::Servers`]).
    #[must_use]
    pub fn servers(&self, v6: bool) -> Vec<IpAddr> {
        if self.role != NetworkRole::Servers {
            return Vec::new();
        }
        (0..SERVERS_PER_NETWORK).map(|k| self.host(FIRST_SERVER_HOST + k, v6)).collect()
    }

    /// The DNS resolver of this network in one family (`.53` / `::53`).
    #[must_use]
    pub(crate) fn resolver(&self, v6: bool) -> IpAddr {
        self.host(RESOLVER_HOST, v6)
    }

    /// Host number `n` in the first /24 (IPv4) or subnet 0 (IPv6; written as hex digits that
    /// read like the decimal, so host 53 is `::53`).
    pub(crate) fn host(&self, n: u8, v6: bool) -> IpAddr {
        if v6 {
            let iid = u64::from(n / 10) << 4 | u64::from(n % 10);
            IpAddr::V6(self.v6_addr(0, iid))
        } else {
            let [a, b, c, _] = self.v4;
            IpAddr::V4(Ipv4Addr::new(a, b, c, n))
        }
    }

    /// IPv4 host `index` of the prefix, counting only `.1` .. `.254` of each /24 block, so no
    /// address ends in `.0` or `.255`. `index` is taken modulo [`Self::v4_hosts`].
    pub(crate) fn v4_host(&self, index: u64) -> Ipv4Addr {
        let index = index % self.v4_hosts();
        let block = index / 254;
        let last = 1 + index % 254;
        let base = u32::from_be_bytes(self.v4);
        // block < 2^(24 - v4_len) and last < 255, so the host bits never reach the prefix.
        Ipv4Addr::from(base | (block as u32) << 8 | last as u32)
    }

    /// How many IPv4 hosts [`Self::v4_host`] can name: 254 per /24 block.
    pub(crate) fn v4_hosts(&self) -> u64 {
        254u64 << (24 - u32::from(self.v4_len.min(24)))
    }

    /// The IPv6 address `prefix:subnet::iid`.
    pub(crate) fn v6_addr(&self, subnet: u16, iid: u64) -> Ipv6Addr {
        let [g0, g1, g2] = self.v6;
        let bits = u128::from(g0) << 112
            | u128::from(g1) << 96
            | u128::from(g2) << 80
            | u128::from(subnet) << 64
            | u128::from(iid);
        Ipv6Addr::from(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_print_as_documented() {
        let cidrs: Vec<String> = NETWORKS.iter().flat_map(|n| n.cidrs()).map(|c| c.to_string()).collect();
        assert_eq!(
            cidrs,
            [
                "10.1.0.0/16",
                "2001:db8:1::/48",
                "10.2.0.0/16",
                "2001:db8:2::/48",
                "10.3.0.0/16",
                "2001:db8:3::/48",
                "10.4.0.0/16",
                "2001:db8:4::/48",
                "192.168.1.0/24",
                "2001:db8:101::/48",
                "172.16.5.0/24",
                "2001:db8:102::/48",
                "192.168.7.0/24",
                "2001:db8:103::/48",
                "198.51.100.0/24",
                "2001:db8:ffff::/48",
            ]
        );
        assert_eq!(client_networks().map(|n| n.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(server_networks().map(|n| n.id).collect::<Vec<_>>(), [11, 12, 13]);
    }

    #[test]
    fn prefixes_do_not_overlap() {
        for (i, a) in NETWORKS.iter().enumerate() {
            for b in &NETWORKS[i + 1..] {
                for c in b.cidrs() {
                    assert!(!a.contains(c.network().to_std()), "{} overlaps {}", a.name, b.name);
                }
            }
        }
    }

    #[test]
    fn v4_hosts_stay_inside_and_avoid_network_and_broadcast_octets() {
        let net = &NETWORKS[0];
        assert_eq!(net.v4_hosts(), 254 * 256);
        for i in [0, 1, 253, 254, 255, 65_000, net.v4_hosts() - 1, net.v4_hosts()] {
            let h = net.v4_host(i);
            assert!(net.contains(IpAddr::V4(h)), "{h}");
            assert!(!matches!(h.octets()[3], 0 | 255), "{h}");
        }
        assert_eq!(net.v4_host(0), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(net.v4_host(254), Ipv4Addr::new(10, 1, 1, 1));
        assert_eq!(NETWORKS[4].v4_hosts(), 254);
    }

    #[test]
    fn servers_and_resolvers_are_inside_their_network() {
        for net in server_networks() {
            for v6 in [false, true] {
                let servers = net.servers(v6);
                assert_eq!(servers.len(), usize::from(SERVERS_PER_NETWORK));
                assert!(servers.iter().all(|&s| net.contains(s) && s.is_ipv6() == v6));
                assert!(net.contains(net.resolver(v6)));
            }
        }
        assert_eq!(NETWORKS[4].servers(false)[0].to_string(), "192.168.1.10");
        assert_eq!(NETWORKS[4].servers(true)[3].to_string(), "2001:db8:101::13");
        assert_eq!(NETWORKS[5].resolver(true).to_string(), "2001:db8:102::53");
        assert!(NETWORKS[0].servers(false).is_empty());
    }
}
