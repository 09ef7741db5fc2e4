//! A second cheap necessary condition for a filter: the first octet of each address it can
//! match, computed once from the expression.
//!
//! A packet's class ([`crate::PacketClass`]) decides protocol and TCP-flag tests but leaves
//! every address test open, so `src net 0.0.0.0/8 or src net 240.0.0.0/4` (spoofed sources)
//! or `src net 10.0.0.0/8` ran their program on every IPv4 packet. When a filter is compiled,
//! its expression is evaluated, in three-valued logic, once per network (IPv4, IPv6), side
//! (source, destination) and value of that address's first octet, with every other fact
//! unknown; the result is a 256-bit *may match* set per network and side. At run time an IP
//! packet whose source's or destination's first octet is outside its set is turned away with
//! two bit tests before the program runs.
//!
//! Soundness: as for the class tables, Kleene's logic never answers "no" where a definite
//! assignment of the unknown tests gives "yes", and the program rejects a packet when every
//! assignment of the tests the capture cut short rejects it. An address test on the side
//! whose octet is known is decided when the prefix's bits outside that octet (the IPv4-mapped
//! prefix `::ffff:0:0/96` for IPv4) already differ, or when the prefix lies within that
//! octet; otherwise it stays unknown. The crate's tests check the table against the program
//! on a corpus of expressions and packets.

use outpost_decode::{IpAddress, Network, PacketMeta};

use crate::class::Tri;
use crate::parser::{V4_MAPPED, V4_PREFIX_MASK};
use crate::program::{Ast, Dir, Test, net};

/// Per network (IPv4, IPv6) and side (source, destination), the first octets whose packets
/// may match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrTable {
    may: [[[u64; 4]; 2]; 2],
    /// No octet of any network or side is ruled out (expressions without address tests):
    /// [`AddrTable::admits`] answers without reading the packet.
    open: bool,
}

/// Which address's first octet is known, and its value.
#[derive(Clone, Copy)]
struct Known {
    /// [`net::IPV4`] or [`net::IPV6`].
    net: u8,
    /// True: the source's octet; false: the destination's.
    src: bool,
    octet: u8,
}

impl Known {
    /// Whether an address whose first octet is this one's lies in `prefix`/`mask`.
    fn in_prefix(self, prefix: u128, mask: u128) -> Tri {
        // Besides the octet, an IPv4 packet's addresses are known to be in `::ffff:0:0/96`.
        let (shift, (other_mask, other_value)) =
            if self.net == net::IPV4 { (24, (V4_PREFIX_MASK, V4_MAPPED)) } else { (120, (0, 0)) };
        let octet_mask = 0xffu128 << shift;
        let known_mask = octet_mask | other_mask;
        let known = (u128::from(self.octet) << shift) | other_value;
        if (known ^ prefix) & mask & known_mask != 0 {
            Tri::No
        } else if mask & !known_mask == 0 {
            Tri::Yes
        } else {
            Tri::Maybe
        }
    }

    fn test(self, t: &Test) -> Tri {
        match *t {
            Test::Const(b) => Tri::of(b),
            Test::Network(nets) => Tri::of(nets & self.net != 0),
            Test::Proto { nets, .. } if nets & self.net == 0 => Tri::No,
            Test::Addr { nets, dir, net, mask } => {
                if nets & self.net == 0 {
                    return Tri::No;
                }
                let side = self.in_prefix(net, mask);
                let (this, other) = match (dir, self.src) {
                    (Dir::Src, true) | (Dir::Dst, false) => return side,
                    (Dir::Src, false) | (Dir::Dst, true) => return Tri::Maybe,
                    (Dir::Either | Dir::Both, _) => (side, Tri::Maybe),
                };
                match (dir, this, other) {
                    (Dir::Either, Tri::Yes, _) => Tri::Yes,
                    (Dir::Both, Tri::No, _) => Tri::No,
                    _ => Tri::Maybe,
                }
            }
            _ => Tri::Maybe,
        }
    }
}

impl AddrTable {
    /// Admits every packet.
    pub(crate) const ALL: AddrTable = AddrTable { may: [[[u64::MAX; 4]; 2]; 2], open: true };

    /// The table of an expression.
    pub(crate) fn of(ast: &Ast) -> AddrTable {
        let mut t = AddrTable { may: [[[0; 4]; 2]; 2], open: false };
        for (n, net) in [net::IPV4, net::IPV6].into_iter().enumerate() {
            for (s, src) in [true, false].into_iter().enumerate() {
                for octet in 0..=u8::MAX {
                    let known = Known { net, src, octet };
                    if Tri::eval(ast, &|test| known.test(test)) != Tri::No
                        && let Some(w) = t.may[n][s].get_mut(usize::from(octet >> 6))
                    {
                        *w |= 1 << (octet & 63);
                    }
                }
            }
        }
        t.open = t == AddrTable { may: AddrTable::ALL.may, open: false };
        if t.open { AddrTable::ALL } else { t }
    }

    /// False when the first octet of `m`'s source or destination address rules the
    /// expression out (IP packets only; every other packet is admitted).
    #[inline(always)]
    pub(crate) fn admits(&self, m: &PacketMeta) -> bool {
        if self.open {
            return true;
        }
        let (n, at) = match m.network {
            Network::Ipv4 => (0, 12),
            Network::Ipv6 => (1, 0),
            Network::Arp | Network::Other => return true,
        };
        // The table takes an IPv4 packet's addresses as IPv4-mapped (as the decoder writes
        // them); an address that is not is admitted, and the program decides.
        let bit = |side: usize, addr: &IpAddress| {
            if n == 0 && !addr.is_v4() {
                return true;
            }
            let octet = addr.0.get(at).copied().unwrap_or(0);
            self.may
                .get(n)
                .and_then(|sides| sides.get(side))
                .and_then(|words| words.get(usize::from(octet >> 6)))
                .is_none_or(|w| w & (1 << (octet & 63)) != 0)
        };
        bit(0, &m.src) && bit(1, &m.dst)
    }

    /// Whether an IPv4 packet whose source's first octet is `octet` may match.
    pub(crate) fn may_v4_source(&self, octet: u8) -> bool {
        self.may[0][0].get(usize::from(octet >> 6)).is_none_or(|w| w & (1 << (octet & 63)) != 0)
    }

    /// How many (network, side, octet) cells the table rules out.
    #[cfg(test)]
    pub(crate) fn ruled_out(&self) -> u32 {
        self.may.iter().flatten().flatten().map(|w| w.count_zeros()).sum()
    }
}
