//! Network ids: which configured network an address belongs to.
//!
//! Longest prefix wins; IPv4 and IPv6 prefixes never match each other's addresses. The
//! lookup is linear over the configured prefixes, sorted longest first: it runs once per
//! alert, off the per-packet path, and configurations list tens of networks.

use outpost_decode::{Cidr, IpAddress};

use crate::config::NetworkConfig;

/// One configured network.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Network {
    /// Network id.
    pub id: u32,
    /// Name (may be empty).
    pub name: String,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
}

/// Prefix → network lookup.
#[derive(Debug, Clone, Default)]
pub struct NetworkMap {
    networks: Vec<Network>,
    /// (prefix, index into `networks`), longest prefix first.
    prefixes: Vec<(Cidr, usize)>,
}

impl NetworkMap {
    /// Builds the map from configuration.
    #[must_use]
    pub fn new(configs: &[NetworkConfig]) -> NetworkMap {
        let mut map = NetworkMap::default();
        for c in configs {
            let idx = map.networks.len();
            map.networks.push(Network {
                id: c.id,
                name: c.name.clone(),
                latitude: c.latitude,
                longitude: c.longitude,
            });
            map.prefixes.extend(c.cidrs.iter().map(|p| (*p, idx)));
        }
        map.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len128()));
        map
    }

    /// The network holding `addr`, if any.
    #[must_use]
    pub fn lookup(&self, addr: &IpAddress) -> Option<&Network> {
        self.prefixes.iter().find(|(p, _)| p.contains(addr)).and_then(|(_, i)| self.networks.get(*i))
    }

    /// The network of `src`, else of `dst`.
    #[must_use]
    pub fn lookup_pair(&self, src: &IpAddress, dst: &IpAddress) -> Option<&Network> {
        self.lookup(src).or_else(|| self.lookup(dst))
    }

    /// The network with id `id`.
    #[must_use]
    pub fn by_id(&self, id: u32) -> Option<&Network> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// All networks in configuration order.
    #[must_use]
    pub fn networks(&self) -> &[Network] {
        &self.networks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(id: u32, cidrs: &[&str]) -> NetworkConfig {
        NetworkConfig {
            id,
            name: format!("n{id}"),
            cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            latitude: None,
            longitude: None,
        }
    }

    #[test]
    fn longest_prefix_wins_and_families_stay_apart() {
        let map = NetworkMap::new(&[cfg(1, &["10.0.0.0/8"]), cfg(2, &["10.2.0.0/16", "2001:db8::/32"])]);
        let id = |a: &str| map.lookup(&a.parse().unwrap()).map(|n| n.id);
        assert_eq!(id("10.2.3.4"), Some(2));
        assert_eq!(id("10.3.3.4"), Some(1));
        assert_eq!(id("2001:db8::9"), Some(2));
        assert_eq!(id("::a02:304"), None);
        assert_eq!(id("192.0.2.1"), None);
        let (a, b) = ("192.0.2.1".parse().unwrap(), "10.9.9.9".parse().unwrap());
        assert_eq!(map.lookup_pair(&a, &b).map(|n| n.id), Some(1));
    }
}
