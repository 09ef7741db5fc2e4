//! The hosts of the mix scenario and how flows get endpoints that are never reused.
//!
//! The networks are the seed scenario's ([`crate::seed::NETWORKS`]): clients live in
//! `10.1.0.0/16` .. `10.4.0.0/16` (IPv6 `2001:db8:1::/48` .. `2001:db8:4::/48`); servers in
//! `192.168.1.0/24`, `172.16.5.0/24`, `192.168.7.0/24` (IPv6 `2001:db8:101::/48` ..
//! `2001:db8:103::/48`); Internet peers in `198.51.100.0/24` (`2001:db8:ffff::/48`).
//!
//! | role | hosts |
//! |---|---|
//! | web/TLS/SSH servers | internal `.10`..`.13` of each server network, or any external host |
//! | DNS resolvers | `.53` of each server network |
//! | NTP servers | `.123` of each server network |
//! | syslog collectors | `.14` of each server network |
//! | gateways (ICMP errors) | `.1` of each server network and of the external network |
//! | ping targets, closed ports | hosts `.1`..`.254` of the server and external networks (1016) |
//! | dead hosts | `.200`..`.249` of a gateway's network (quoted in host-unreachable errors) |
//!
//! IPv6 hosts are numbered the same way (`::53`, `::123`, …, written as in the seed scenario).
//!
//! # One flow per 5-tuple
//! Every flow needs a key no other flow in the file has. A [`Client`] hands them out without
//! remembering past flows: its k-th TCP/UDP flow uses ephemeral port
//! `32768 + (base + k) mod 28232`, its k-th echo flow the ping target `(base' + k) mod 1016`,
//! and so on, each sequence injective until it wraps. [`Client::can`] refuses a flow that
//! would wrap, and the scheduler then picks another client. Clients never change address or
//! VLAN, so keys of different clients never meet.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::random::Random;
use crate::seed::{EPHEMERAL_PORTS, NETWORKS, NetworkRole, SeedNetwork, mac_for, server_networks};

/// Ephemeral ports per client (the Linux default range 32768..=60999).
const PORTS: u32 = *EPHEMERAL_PORTS.end() as u32 - *EPHEMERAL_PORTS.start() as u32 + 1;

/// Ping targets (and closed-port targets) per family: hosts `.1`..`.254` of four networks.
const TARGETS: u64 = 4 * 254;

/// What a flow needs from its client's key space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// One ephemeral port.
    Port,
    /// A ping target not pinged before.
    Ping,
    /// A port for the trigger and an ICMP error key not used before.
    Unreach(ErrorKind),
}

/// Which ICMP error answers a client's datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The target host is down: a gateway says host (IPv6: address) unreachable.
    HostUnreachable,
    /// A filter drops the datagram: a gateway says administratively prohibited.
    AdminProhibited,
    /// Nothing listens on the port: the target itself says port unreachable.
    PortUnreachable,
}

impl ErrorKind {
    /// ICMP (IPv4, RFC 792 / RFC 1812) or ICMPv6 (RFC 4443 §3.1) type and code.
    pub(crate) fn type_code(self, v6: bool) -> (u8, u8) {
        match (self, v6) {
            (ErrorKind::HostUnreachable, false) => (3, 1),
            (ErrorKind::AdminProhibited, false) => (3, 13),
            (ErrorKind::PortUnreachable, false) => (3, 3),
            (ErrorKind::HostUnreachable, true) => (1, 3),
            (ErrorKind::AdminProhibited, true) => (1, 1),
            (ErrorKind::PortUnreachable, true) => (1, 4),
        }
    }
}

/// One client host: address, VLAN tags, and where it is in each of its key sequences.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    pub(crate) addr: IpAddr,
    pub(crate) mac: [u8; 6],
    /// VLAN tags, outermost first (`vlan_count` of them are valid).
    pub(crate) vlans: [u16; 2],
    pub(crate) vlan_count: u8,
    port_base: u32,
    ports_used: u32,
    ping_base: u32,
    pings: u32,
    closed_base: u32,
    closed_used: u32,
    gateway_base: u32,
    host_unreach: u32,
    admin: u32,
}

impl Client {
    pub(crate) fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    pub(crate) fn vlans(&self) -> &[u16] {
        &self.vlans[..usize::from(self.vlan_count.min(2))]
    }

    /// True when the client has a fresh key of the kind `need` asks for.
    pub(crate) fn can(&self, need: Need, peers: &Peers) -> bool {
        let targets = peers.targets(self.is_v6()).len() as u32;
        let gateways = peers.gateways(self.is_v6()).len() as u32;
        let port = self.ports_used < PORTS;
        match need {
            Need::Port => port,
            Need::Ping => self.pings < targets,
            Need::Unreach(ErrorKind::PortUnreachable) => port && self.closed_used < targets,
            Need::Unreach(ErrorKind::HostUnreachable) => port && self.host_unreach < gateways,
            Need::Unreach(ErrorKind::AdminProhibited) => port && self.admin < gateways,
        }
    }

    /// The next unused ephemeral port (call only when [`Client::can`] allowed it).
    pub(crate) fn take_port(&mut self) -> u16 {
        let k = (self.port_base + self.ports_used) % PORTS;
        self.ports_used += 1;
        *EPHEMERAL_PORTS.start() + k as u16
    }

    /// The next ping target this client has not pinged.
    pub(crate) fn take_ping_target(&mut self, peers: &Peers) -> IpAddr {
        let t = peers.targets(self.is_v6());
        let k = (self.ping_base + self.pings) as usize % t.len().max(1);
        self.pings += 1;
        t.get(k).copied().unwrap_or(self.addr)
    }

    /// The next `(error source, datagram target)` for an ICMP error of `kind` this client has
    /// not received before.
    pub(crate) fn take_error_source(
        &mut self,
        kind: ErrorKind,
        peers: &Peers,
        rng: &mut Random,
    ) -> (IpAddr, IpAddr) {
        let v6 = self.is_v6();
        match kind {
            ErrorKind::PortUnreachable => {
                let t = peers.targets(v6);
                let k = (self.closed_base + self.closed_used) as usize % t.len().max(1);
                self.closed_used += 1;
                let target = t.get(k).copied().unwrap_or(self.addr);
                (target, target)
            }
            ErrorKind::HostUnreachable | ErrorKind::AdminProhibited => {
                let used =
                    if kind == ErrorKind::HostUnreachable { &mut self.host_unreach } else { &mut self.admin };
                let g = peers.gateway_networks;
                let k = (self.gateway_base + *used) as usize % g.len().max(1);
                *used += 1;
                let net = g.get(k).copied().unwrap_or(&NETWORKS[0]);
                let dead = net.host(200 + rng.below(50) as u8, v6);
                (net.host(1, v6), dead)
            }
        }
    }
}

/// Fixed peer addresses per family.
#[derive(Debug)]
pub(crate) struct Peers {
    targets: [Vec<IpAddr>; 2],
    gateways: [Vec<IpAddr>; 2],
    gateway_networks: &'static [&'static SeedNetwork],
    servers: [Vec<IpAddr>; 2],
    server_networks: Vec<&'static SeedNetwork>,
    external: &'static SeedNetwork,
}

/// The networks that have gateways: the server networks and the external one.
static GATEWAY_NETWORKS: [&SeedNetwork; 4] = [&NETWORKS[4], &NETWORKS[5], &NETWORKS[6], &NETWORKS[7]];

impl Peers {
    pub(crate) fn new() -> Peers {
        let external = NETWORKS.iter().find(|n| n.role == NetworkRole::External).unwrap_or(&NETWORKS[0]);
        let family = |v6: bool| -> Vec<IpAddr> {
            GATEWAY_NETWORKS.iter().flat_map(|n| (1..=254u8).map(move |h| n.host(h, v6))).collect()
        };
        let gateways = |v6: bool| -> Vec<IpAddr> { GATEWAY_NETWORKS.iter().map(|n| n.host(1, v6)).collect() };
        let servers = |v6: bool| -> Vec<IpAddr> { server_networks().flat_map(|n| n.servers(v6)).collect() };
        Peers {
            targets: [family(false), family(true)],
            gateways: [gateways(false), gateways(true)],
            gateway_networks: &GATEWAY_NETWORKS,
            servers: [servers(false), servers(true)],
            server_networks: server_networks().collect(),
            external,
        }
    }

    fn targets(&self, v6: bool) -> &[IpAddr] {
        &self.targets[usize::from(v6)]
    }

    fn gateways(&self, v6: bool) -> &[IpAddr] {
        &self.gateways[usize::from(v6)]
    }

    /// A web/TLS/SSH server: internal (`.10`..`.13`) with probability `internal`, else an
    /// external host. Returns the address and whether it is internal.
    pub(crate) fn server(&self, v6: bool, internal: f64, rng: &mut Random) -> (IpAddr, bool) {
        if rng.chance(internal) {
            let s = &self.servers[usize::from(v6)];
            (s.get(rng.below(s.len() as u64) as usize).copied().unwrap_or(self.external.host(1, v6)), true)
        } else {
            (self.external.host(2 + rng.below(253) as u8, v6), false)
        }
    }

    /// Host `n` (`.53`, `.123`, `.14`) of a random server network.
    pub(crate) fn service(&self, n: u8, v6: bool, rng: &mut Random) -> IpAddr {
        let nets = &self.server_networks;
        let net = nets.get(rng.below(nets.len() as u64) as usize).copied().unwrap_or(&NETWORKS[4]);
        net.host(n, v6)
    }
}

/// The fixed set of clients a run draws from.
#[derive(Debug)]
pub(crate) struct ClientPool {
    pub(crate) clients: Vec<Client>,
}

impl ClientPool {
    /// `count` clients with distinct addresses: a fraction `ipv6` on IPv6, a fraction `vlan`
    /// behind VLAN tags (a third of those double-tagged, QinQ).
    pub(crate) fn new(count: u32, ipv6: f64, vlan: f64, rng: &mut Random) -> ClientPool {
        let mut seen = HashSet::with_capacity(count as usize);
        let nets: Vec<&SeedNetwork> = NETWORKS.iter().filter(|n| n.role == NetworkRole::Clients).collect();
        let mut clients = Vec::with_capacity(count as usize);
        while clients.len() < count as usize {
            let v6 = rng.chance(ipv6);
            let net = nets.get(rng.below(nets.len() as u64) as usize).copied().unwrap_or(&NETWORKS[0]);
            let addr = if v6 {
                IpAddr::V6(net.v6_addr(rng.below(16) as u16, rng.next_u64().max(1)))
            } else {
                IpAddr::V4(net.v4_host(rng.below(net.v4_hosts())))
            };
            if !seen.insert(addr) {
                continue;
            }
            // Access VLANs 100 + 10·network + 0..9; QinQ outer (service) tags 2000 + network.
            let access = 100 + net.id * 10 + rng.below(10) as u16;
            let (vlans, vlan_count) = match rng.unit() {
                u if u < vlan / 3.0 => ([2000 + net.id, access], 2),
                u if u < vlan => ([access, 0], 1),
                _ => ([0, 0], 0),
            };
            let mut draw = |n: u64| rng.below(n) as u32;
            clients.push(Client {
                addr,
                mac: mac_for(addr),
                vlans,
                vlan_count,
                port_base: draw(u64::from(PORTS)),
                ports_used: 0,
                ping_base: draw(TARGETS),
                pings: 0,
                closed_base: draw(TARGETS),
                closed_used: 0,
                gateway_base: draw(4),
                host_unreach: 0,
                admin: 0,
            });
        }
        ClientPool { clients }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_sequences_never_repeat_until_refused() {
        let peers = Peers::new();
        let mut rng = Random::new(1, 0);
        let mut pool = ClientPool::new(3, 0.5, 0.5, &mut rng);
        let c = &mut pool.clients[0];
        let mut ports = HashSet::new();
        while c.can(Need::Port, &peers) {
            assert!(ports.insert(c.take_port()));
        }
        assert_eq!(ports.len() as u32, PORTS);
        assert!(ports.iter().all(|p| EPHEMERAL_PORTS.contains(p)));
        let mut pings = HashSet::new();
        while c.can(Need::Ping, &peers) {
            assert!(pings.insert(c.take_ping_target(&peers)));
        }
        assert_eq!(pings.len() as u64, TARGETS);
        assert!(!pings.contains(&c.addr));
        let mut gws = HashSet::new();
        c.ports_used = 0;
        while c.can(Need::Unreach(ErrorKind::HostUnreachable), &peers) {
            assert!(gws.insert(c.take_error_source(ErrorKind::HostUnreachable, &peers, &mut rng).0));
        }
        assert_eq!(gws.len(), 4);
    }

    #[test]
    fn clients_are_distinct_and_vlan_fractions_hold() {
        let mut rng = Random::new(2, 0);
        let pool = ClientPool::new(3000, 0.2, 0.3, &mut rng);
        let addrs: HashSet<IpAddr> = pool.clients.iter().map(|c| c.addr).collect();
        assert_eq!(addrs.len(), 3000);
        let v6 = pool.clients.iter().filter(|c| c.is_v6()).count();
        let tagged = pool.clients.iter().filter(|c| c.vlan_count > 0).count();
        let qinq = pool.clients.iter().filter(|c| c.vlan_count == 2).count();
        assert!((450..750).contains(&v6), "{v6}");
        assert!((750..1050).contains(&tagged), "{tagged}");
        assert!((200..400).contains(&qinq), "{qinq}");
        assert!(pool.clients.iter().all(|c| c.vlans().iter().all(|v| (1..4095).contains(v))));
    }

    #[test]
    fn error_codes_follow_rfc_792_and_4443() {
        assert_eq!(ErrorKind::PortUnreachable.type_code(false), (3, 3));
        assert_eq!(ErrorKind::HostUnreachable.type_code(true), (1, 3));
        assert_eq!(ErrorKind::AdminProhibited.type_code(true), (1, 1));
    }
}
