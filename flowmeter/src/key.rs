//! Flow keys: the bidirectional identity of a flow, and Community ID v1.
//!
//! A [`FlowKey`] holds the two endpoints in a canonical order (the smaller `(address, port)`
//! first), so both directions of a conversation map to the same key; [`Side`] says which
//! endpoint sent a given packet.
//!
//! Ports: TCP, UDP and SCTP ports as decoded. ICMP and ICMPv6 use the *port equivalents* of
//! the Community ID specification (type and code, with request/reply types paired: echo
//! request 8 ↔ reply 0, …), so an echo request and its reply are one bidirectional flow while
//! one-way messages (destination unreachable, …) key by type and code. Other protocols, and
//! fragments whose first fragment was not seen, have ports 0.

use outpost_decode::IpAddress;

/// Which endpoint of a [`FlowKey`] a packet came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The endpoint stored first (`a`).
    A,
    /// The endpoint stored second (`b`).
    B,
}

impl Side {
    /// The other endpoint.
    #[must_use]
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// 0 for A, 1 for B (an index into per-endpoint arrays).
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// The identity of a bidirectional flow: both endpoints in canonical order, the protocol and
/// the outer VLAN id. 40 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Endpoint with the smaller `(address, port)`.
    pub a: IpAddress,
    /// Endpoint with the larger `(address, port)`.
    pub b: IpAddress,
    /// Port (or port equivalent) of `a`.
    pub a_port: u16,
    /// Port (or port equivalent) of `b`.
    pub b_port: u16,
    /// Outer VLAN id, 0 when untagged.
    pub vlan: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl FlowKey {
    /// The key of a packet from `(src, sport)` to `(dst, dport)`, and the side it came from.
    #[inline]
    #[must_use]
    pub fn new(
        src: IpAddress,
        sport: u16,
        dst: IpAddress,
        dport: u16,
        proto: u8,
        vlan: u16,
    ) -> (FlowKey, Side) {
        if (src, sport) <= (dst, dport) {
            (FlowKey { a: src, b: dst, a_port: sport, b_port: dport, vlan, proto }, Side::A)
        } else {
            (FlowKey { a: dst, b: src, a_port: dport, b_port: sport, vlan, proto }, Side::B)
        }
    }

    /// Address and port of one endpoint.
    #[inline]
    #[must_use]
    pub fn endpoint(&self, side: Side) -> (IpAddress, u16) {
        match side {
            Side::A => (self.a, self.a_port),
            Side::B => (self.b, self.b_port),
        }
    }

    /// A well-mixed 64-bit hash of the key for table lookups (not stable across versions).
    #[inline]
    #[must_use]
    pub fn hash64(&self) -> u64 {
        // Fold the addresses and the small fields into two 64-bit lanes, then mix (murmur3
        // fmix64). Cheaper than a generic hasher over 39 bytes, and flow keys are not chosen by
        // an attacker freely enough to matter: ports and addresses are both in the key.
        let a = self.a.to_bits();
        let b = self.b.to_bits();
        let small = (u64::from(self.a_port) << 40)
            | (u64::from(self.b_port) << 24)
            | (u64::from(self.vlan) << 8)
            | u64::from(self.proto);
        let mut h = (a as u64)
            ^ ((a >> 64) as u64).rotate_left(17)
            ^ (b as u64).rotate_left(31)
            ^ ((b >> 64) as u64).rotate_left(47)
            ^ small.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// ICMP message types with a reply counterpart (Community ID v1, `icmp4_port_equivalents`).
fn icmp4_counterpart(t: u8) -> Option<u8> {
    Some(match t {
        8 => 0,   // echo request → reply
        0 => 8,   // echo reply → request
        13 => 14, // timestamp
        14 => 13,
        15 => 16, // information
        16 => 15,
        10 => 9, // router solicitation → advertisement
        9 => 10,
        17 => 18, // address mask
        18 => 17,
        _ => return None,
    })
}

/// ICMPv6 message types with a reply counterpart (Community ID v1, `icmp6_port_equivalents`).
fn icmp6_counterpart(t: u8) -> Option<u8> {
    Some(match t {
        128 => 129, // echo
        129 => 128,
        133 => 134, // router solicitation / advertisement
        134 => 133,
        135 => 136, // neighbor solicitation / advertisement
        136 => 135,
        130 => 131, // multicast listener query / report
        131 => 130,
        144 => 145, // home agent address discovery
        145 => 144,
        146 => 147, // mobile prefix
        147 => 146,
        139 => 140, // node information
        140 => 139,
        _ => return None,
    })
}

/// The Community ID port equivalents of an ICMP / ICMPv6 message: `(src, dst, one_way)`.
/// Two-way messages map to `(type, counterpart type)`, one-way ones to `(type, code)`.
#[inline]
#[must_use]
pub fn icmp_port_equivalents(icmp_type: u8, icmp_code: u8, v6: bool) -> (u16, u16, bool) {
    let counterpart = if v6 { icmp6_counterpart(icmp_type) } else { icmp4_counterpart(icmp_type) };
    match counterpart {
        Some(c) => (u16::from(icmp_type), u16::from(c), false),
        None => (u16::from(icmp_type), u16::from(icmp_code), true),
    }
}

/// Community ID v1 (<https://github.com/corelight/community-id-spec>) of a flow with seed 0:
/// `1:` followed by the base64 SHA-1 of the ordered endpoints, protocol and ports.
///
/// For ICMP/ICMPv6 pass the type and code as `sport`/`dport`; they are mapped to port
/// equivalents here. For protocols without ports pass 0 and 0.
#[must_use]
pub fn community_id(src: IpAddress, sport: u16, dst: IpAddress, dport: u16, proto: u8) -> String {
    let v4 = src.is_v4() && dst.is_v4();
    let (mut sport, mut dport, one_way) = match proto {
        1 | 58 => {
            let (s, d, ow) = icmp_port_equivalents(
                u8::try_from(sport).unwrap_or(u8::MAX),
                u8::try_from(dport).unwrap_or(u8::MAX),
                proto == 58,
            );
            (s, d, ow)
        }
        _ => (sport, dport, false),
    };
    let (mut s, mut d) = (src, dst);
    // Order the endpoints (address, then port) unless the ICMP message is one-way.
    if !one_way && (d, dport) < (s, sport) {
        std::mem::swap(&mut s, &mut d);
        std::mem::swap(&mut sport, &mut dport);
    }
    let mut buf = [0u8; 2 + 16 + 16 + 2 + 4];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(dst) = buf.get_mut(n..n + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        n += bytes.len();
    };
    put(&0u16.to_be_bytes()); // seed
    if v4 {
        put(&s.0[12..]);
        put(&d.0[12..]);
    } else {
        put(&s.0);
        put(&d.0);
    }
    put(&[proto, 0]);
    let has_ports = matches!(proto, 1 | 6 | 17 | 58 | 132);
    if has_ports {
        put(&sport.to_be_bytes());
        put(&dport.to_be_bytes());
    }
    let digest = sha1_smol::Sha1::from(buf.get(..n).unwrap_or(&buf)).digest().bytes();
    format!("1:{}", base64(&digest))
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(char::from(ALPHABET[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddress {
        s.parse().unwrap()
    }

    #[test]
    fn both_directions_share_a_key() {
        let (k1, s1) = FlowKey::new(ip("10.0.0.2"), 40000, ip("10.0.0.1"), 80, 6, 0);
        let (k2, s2) = FlowKey::new(ip("10.0.0.1"), 80, ip("10.0.0.2"), 40000, 6, 0);
        assert_eq!(k1, k2);
        assert_eq!(s1, s2.other());
        assert_eq!(k1.hash64(), k2.hash64());
        assert_eq!(k1.endpoint(s1), (ip("10.0.0.2"), 40000));
    }

    #[test]
    fn echo_request_and_reply_share_port_equivalents() {
        let (s, d, one_way) = icmp_port_equivalents(8, 0, false);
        let (k1, _) = FlowKey::new(ip("10.0.0.1"), s, ip("10.0.0.2"), d, 1, 0);
        let (s, d, _) = icmp_port_equivalents(0, 0, false);
        let (k2, _) = FlowKey::new(ip("10.0.0.2"), s, ip("10.0.0.1"), d, 1, 0);
        assert_eq!(k1, k2);
        assert!(!one_way);
        assert!(icmp_port_equivalents(3, 3, false).2, "unreachable is one-way");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    /// Vectors from the Community ID specification's baseline (community-id-spec,
    /// `baseline/baseline_deflt.json`, seed 0).
    #[test]
    fn community_ids_match_the_specification_baseline() {
        assert_eq!(
            community_id(ip("128.232.110.120"), 34855, ip("66.35.250.204"), 80, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(ip("66.35.250.204"), 80, ip("128.232.110.120"), 34855, 6),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(ip("192.168.0.89"), 8, ip("192.168.0.1"), 0, 1),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            community_id(ip("192.168.0.1"), 0, ip("192.168.0.89"), 0, 1),
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
        );
        assert_eq!(
            community_id(ip("fe80::200:86ff:fe05:80da"), 135, ip("fe80::260:97ff:fe07:69ea"), 0, 58),
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="
        );
        assert_eq!(
            community_id(ip("192.168.1.52"), 54585, ip("8.8.8.8"), 53, 17),
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
        );
        assert_eq!(
            community_id(ip("192.168.170.8"), 7, ip("192.168.170.56"), 7, 132),
            "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="
        );
        // A one-way ICMP message keeps its direction.
        assert_eq!(
            community_id(ip("192.168.0.89"), 20, ip("192.168.0.1"), 1, 1),
            "1:tz/fHIDUHs19NkixVVoOZywde+I="
        );
    }
}
