//! IP addresses and CIDR prefixes in one fixed-size form.
//!
//! [`IpAddress`] stores IPv4 as an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291
//! §2.5.5.2), so one 16-byte type, one hash and one prefix test serve both families. The family
//! is recoverable from the bytes: an IPv4-mapped address *is* the IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 address, 16 bytes, byte-aligned (so it packs tightly into records).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpAddress(pub [u8; 16]);

impl std::hash::Hash for IpAddress {
    /// One `u128` write: cheaper for fast hashers than a length-prefixed byte slice.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.0));
    }
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl IpAddress {
    /// The unspecified address `::` (used for "no address").
    pub const UNSPECIFIED: IpAddress = IpAddress([0; 16]);

    /// An IPv4 address from its four octets in network order.
    #[must_use]
    pub const fn from_v4(o: [u8; 4]) -> IpAddress {
        IpAddress([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3]])
    }

    /// An IPv6 address from its sixteen octets in network order.
    #[must_use]
    pub const fn from_v6(o: [u8; 16]) -> IpAddress {
        IpAddress(o)
    }

    /// True when this is an IPv4 address (stored IPv4-mapped).
    #[must_use]
    pub fn is_v4(&self) -> bool {
        self.0[..12] == V4_MAPPED_PREFIX
    }

    /// The IPv4 octets, if this is an IPv4 address.
    #[must_use]
    pub fn v4_octets(&self) -> Option<[u8; 4]> {
        self.is_v4().then(|| [self.0[12], self.0[13], self.0[14], self.0[15]])
    }

    /// The low 32 bits (an IPv4-mapped address's IPv4 address, big-endian), unchecked: for
    /// callers that know the address is IPv4 (that of a packet decoded as IPv4).
    #[inline]
    #[must_use]
    pub fn low_u32(&self) -> u32 {
        u32::from_be_bytes([self.0[12], self.0[13], self.0[14], self.0[15]])
    }

    /// The address as a big-endian 128-bit integer.
    #[must_use]
    pub const fn to_bits(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The address from a big-endian 128-bit integer.
    #[must_use]
    pub const fn from_bits(bits: u128) -> IpAddress {
        IpAddress(bits.to_be_bytes())
    }

    /// The standard library form (IPv4 for mapped addresses).
    #[must_use]
    pub fn to_std(self) -> IpAddr {
        match self.v4_octets() {
            Some(o) => IpAddr::V4(Ipv4Addr::from(o)),
            None => IpAddr::V6(Ipv6Addr::from(self.0)),
        }
    }

    /// A well-mixed, process-independent 64-bit hash of the address, used to shard packets
    /// across workers (the same address always lands on the same worker, in every run).
    #[must_use]
    pub fn shard_hash(&self) -> u64 {
        let bits = self.to_bits();
        // Fold to 64 bits (high half keeps IPv6 prefixes apart), then a murmur3 fmix64
        // finaliser, so sequential addresses spread evenly.
        let mut h = (bits as u64) ^ ((bits >> 64) as u64).rotate_left(29);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl IpAddress {
    /// A symmetric hash of two addresses: `pair_hash(a, b) == pair_hash(b, a)`, so both
    /// directions of a conversation (and every fragment of a datagram) shard to the same
    /// worker.
    #[must_use]
    pub fn pair_hash(a: &IpAddress, b: &IpAddress) -> u64 {
        let mut h = a.shard_hash().wrapping_add(b.shard_hash());
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

impl From<IpAddr> for IpAddress {
    fn from(a: IpAddr) -> IpAddress {
        match a {
            IpAddr::V4(v4) => IpAddress::from_v4(v4.octets()),
            IpAddr::V6(v6) => IpAddress::from_v6(v6.octets()),
        }
    }
}

impl From<Ipv4Addr> for IpAddress {
    fn from(a: Ipv4Addr) -> IpAddress {
        IpAddress::from_v4(a.octets())
    }
}

impl From<Ipv6Addr> for IpAddress {
    fn from(a: Ipv6Addr) -> IpAddress {
        IpAddress::from_v6(a.octets())
    }
}

impl fmt::Display for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_std(), f)
    }
}

impl fmt::Debug for IpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for IpAddress {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<IpAddress, Self::Err> {
        s.parse::<IpAddr>().map(IpAddress::from)
    }
}

impl serde::Serialize for IpAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A CIDR prefix such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// Stored in the 128-bit form of [`IpAddress`]: an IPv4 `/n` is the IPv4-mapped `/96+n`, so an
/// IPv4 prefix never matches an IPv6 address and vice versa. Host bits are cleared on creation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: u128,
    /// Prefix length in the 128-bit form (0..=128).
    len: u8,
}

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("`{0}` is not an IP address")]
    BadAddress(String),
    /// The prefix length is not a number or is too long for the family.
    #[error("prefix length `{len}` is invalid for {family} (0..={max})")]
    BadLength {
        /// The text after the slash.
        len: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// Longest prefix of the family.
        max: u8,
    },
}

impl Cidr {
    /// The prefix `addr/len` where `len` counts bits of the address's own family
    /// (0..=32 for IPv4, 0..=128 for IPv6). Returns `None` when `len` is too long.
    #[must_use]
    pub fn new(addr: IpAddress, len: u8) -> Option<Cidr> {
        let (full, max) = if addr.is_v4() { (96 + u16::from(len), 32) } else { (u16::from(len), 128) };
        if len > max {
            return None;
        }
        let full = u8::try_from(full).ok()?;
        Some(Cidr { network: addr.to_bits() & mask(full), len: full })
    }

    /// A single-address prefix (`/32` or `/128`).
    #[must_use]
    pub fn host(addr: IpAddress) -> Cidr {
        Cidr { network: addr.to_bits(), len: 128 }
    }

    /// True when `addr` lies inside this prefix.
    #[inline]
    #[must_use]
    pub fn contains(&self, addr: &IpAddress) -> bool {
        addr.to_bits() & mask(self.len) == self.network
    }

    /// The network address (host bits zero).
    #[must_use]
    pub fn network(&self) -> IpAddress {
        IpAddress::from_bits(self.network)
    }

    /// The prefix length in the family's own terms (e.g. 24 for `10.1.2.0/24`).
    #[must_use]
    pub fn family_len(&self) -> u8 {
        if self.network().is_v4() && self.len >= 96 { self.len - 96 } else { self.len }
    }

    /// The prefix length in the 128-bit form.
    #[must_use]
    pub fn len128(&self) -> u8 {
        self.len
    }
}

/// The netmask with the top `len` bits set.
#[inline]
fn mask(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) }
}

impl FromStr for Cidr {
    type Err = CidrError;
    /// Parses `ADDR/LEN` or a bare `ADDR` (a host prefix).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddress = a.trim().parse().map_err(|_| CidrError::BadAddress(a.to_string()))?;
        let (family, max) = if addr.is_v4() { ("IPv4", 32) } else { ("IPv6", 128) };
        let len = match l {
            None => max,
            Some(l) => l
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| CidrError::BadLength { len: l.to_string(), family, max })?,
        };
        Cidr::new(addr, len).ok_or(CidrError::BadLength { len: len.to_string(), family, max })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.family_len())
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips_through_mapped_form() {
        let a: IpAddress = "192.0.2.7".parse().unwrap();
        assert!(a.is_v4());
        assert_eq!(a.v4_octets(), Some([192, 0, 2, 7]));
        assert_eq!(a.to_string(), "192.0.2.7");
        let b: IpAddress = "2001:db8::1".parse().unwrap();
        assert!(!b.is_v4());
        assert_eq!(b.to_string(), "2001:db8::1");
    }

    #[test]
    fn cidr_matches_only_its_own_family() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(&"10.1.255.3".parse().unwrap()));
        assert!(!net.contains(&"10.2.0.1".parse().unwrap()));
        assert!(!net.contains(&"::a01:1".parse().unwrap()));
        let all4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all4.contains(&"8.8.8.8".parse().unwrap()));
        assert!(!all4.contains(&"2001:db8::1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&"2001:db8:1::5".parse().unwrap()));
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn cidr_clears_host_bits_and_rejects_long_prefixes() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(matches!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::BadLength { .. })));
        assert!(matches!("10.0.0/8".parse::<Cidr>(), Err(CidrError::BadAddress(_))));
        assert_eq!("10.9.9.9".parse::<Cidr>().unwrap().family_len(), 32);
    }

    #[test]
    fn pair_hash_is_symmetric_and_spreads() {
        let (a, b): (IpAddress, IpAddress) = ("10.0.0.1".parse().unwrap(), "192.0.2.9".parse().unwrap());
        assert_eq!(IpAddress::pair_hash(&a, &b), IpAddress::pair_hash(&b, &a));
        let mut buckets = [0u32; 4];
        for i in 0..4000u32 {
            let c = IpAddress::from_v4([10, 1, (i >> 8) as u8, i as u8]);
            buckets[(IpAddress::pair_hash(&c, &b) % 4) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 800), "uneven: {buckets:?}");
    }

    #[test]
    fn shard_hash_is_stable_and_spreads() {
        let a: IpAddress = "10.0.0.1".parse().unwrap();
        assert_eq!(a.shard_hash(), a.shard_hash());
        let mut buckets = [0u32; 4];
        for i in 0..4000u32 {
            let b = i.to_be_bytes();
            let h = IpAddress::from_v4([10, b[1], b[2], b[3]]).shard_hash();
            buckets[(h % 4) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| n > 800), "uneven: {buckets:?}");
    }
}
