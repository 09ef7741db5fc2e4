//! Packet classes: a filter's verdict decided, where it can be, by a table lookup.
//!
//! Most packets a sensor sees are *plain*: IPv4 or IPv6, not a later fragment, the
//! upper-layer protocol right after the IP header, the transport header read. For such a
//! packet the network (v4 or v6), the protocol group (TCP, UDP, ICMP, ICMPv6, SCTP, other),
//! for TCP the eight flag bits and for ICMP and ICMPv6 the type — its [`PacketClass`], 1,542
//! values — decide many tests outright: `tcp`, `udp`, `ip6`, `icmp`, every test on TCP flags,
//! every test on the ICMP or ICMPv6 type (`icmp[icmptype] == icmp-echo`), and every port,
//! field or protocol test of another protocol (false). When a filter is compiled, its
//! expression is evaluated once per class in three-valued logic (true, false, unknown — the
//! last for tests on addresses, ports, lengths, ICMP codes, VLAN tags); the result is two bit
//! sets over the classes, *may match* and *must match*.
//!
//! At run time a plain packet's class is computed once (a handful of loads and compares) and
//! each filter costs one bit test when the class decides it — `tcp[tcpflags] & (tcp-syn|tcp-ack)
//! == tcp-syn` never runs its program on an ACK, `udp` never runs at all — and runs its program
//! only when the class leaves the verdict open. Packets that are not plain (non-IP, later
//! fragments, cut transport headers, IPv6 with extension headers before the upper layer)
//! take the general path: the protocol guard, then the program.
//!
//! Soundness: on a plain packet the program's tests have no unknown outcomes (the transport
//! header is there), and each test the table decides is decided by exactly the facts the
//! class records; Kleene's three-valued `and`, `or` and `not` never give a definite answer
//! that a definite assignment of the unknown tests contradicts. So a definite table entry is
//! the program's answer. The crate's tests check it against the program for every class on
//! a corpus of expressions and packets.

use outpost_decode::meta::ip_proto;
use outpost_decode::{Fragment, Network, PacketMeta, Transport};

use crate::program::{ArithOp, Ast, BinOp, Field, Test, net, ports};

/// Plain-packet classes per network: 256 TCP flag values, UDP, 256 ICMP types, 256 ICMPv6
/// types, SCTP and other protocols.
const PER_NET: u16 = OTHER + 1;
/// Where UDP, the ICMP types, the ICMPv6 types, SCTP and other protocols start among a
/// network's classes (TCP's flag values take the first 256).
const UDP: u16 = 256;
const ICMP: u16 = UDP + 1;
const ICMPV6: u16 = ICMP + 256;
const SCTP: u16 = ICMPV6 + 256;
const OTHER: u16 = SCTP + 1;
/// Number of plain-packet classes (IPv4 and IPv6).
pub(crate) const CLASSES: usize = 2 * PER_NET as usize;
const WORDS: usize = CLASSES.div_ceil(64);

/// The class of a packet: what the filters' class tables are indexed by. Compute it once per
/// packet with [`PacketClass::of`] and pass it to [`crate::Filter::matches_class`] for every
/// filter that packet meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketClass(u16);

impl PacketClass {
    /// A packet that is not plain: filters take the general path.
    pub const GENERAL: PacketClass = PacketClass(u16::MAX);

    /// The class of `m`.
    #[inline]
    #[must_use]
    pub fn of(m: &PacketMeta) -> PacketClass {
        let base = match m.network {
            Network::Ipv4 => 0,
            Network::Ipv6 => PER_NET,
            Network::Arp | Network::Other => return PacketClass::GENERAL,
        };
        if m.ip_proto != m.ip6_first_next_header {
            return PacketClass::GENERAL;
        }
        let rest = match m.ip_proto {
            ip_proto::TCP => m.tcp_flags & 0xff,
            ip_proto::UDP => UDP,
            ip_proto::ICMP => ICMP + u16::from(m.icmp_type),
            ip_proto::ICMPV6 => ICMPV6 + u16::from(m.icmp_type),
            ip_proto::SCTP => SCTP,
            // Other protocols have no ports or fields a filter reads: fragments and cut
            // headers change nothing for them.
            _ => return PacketClass(base + OTHER),
        };
        if m.fragment == Fragment::Later || m.transport != Transport::Parsed {
            return PacketClass::GENERAL;
        }
        PacketClass(base + rest)
    }

    /// Number of distinct classes, [`PacketClass::GENERAL`] included: [`PacketClass::index`]
    /// is below it.
    pub const COUNT: usize = CLASSES + 1;

    /// A dense index in `0..PacketClass::COUNT`, for tables indexed by class
    /// ([`PacketClass::GENERAL`] is the last).
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0).min(CLASSES)
    }

    /// Every class, [`PacketClass::GENERAL`] last, in [`PacketClass::index`] order.
    pub fn every() -> impl Iterator<Item = PacketClass> {
        (0..CLASSES as u16).map(PacketClass).chain([PacketClass::GENERAL])
    }

    /// Every plain class with a representative of its facts, for building tables.
    fn all() -> impl Iterator<Item = (PacketClass, Facts)> {
        (0..CLASSES as u16).map(|c| {
            let (v6, rest) = (c >= PER_NET, c % PER_NET);
            let (proto, flags, icmp_type) = match rest {
                0..UDP => (Some(ip_proto::TCP), rest, 0),
                UDP => (Some(ip_proto::UDP), 0, 0),
                ICMP..ICMPV6 => (Some(ip_proto::ICMP), 0, rest - ICMP),
                ICMPV6..SCTP => (Some(ip_proto::ICMPV6), 0, rest - ICMPV6),
                SCTP => (Some(ip_proto::SCTP), 0, 0),
                _ => (None, 0, 0),
            };
            let net = if v6 { net::IPV6 } else { net::IPV4 };
            (PacketClass(c), Facts { net, proto, flags: u32::from(flags), icmp_type: u32::from(icmp_type) })
        })
    }
}

/// What a plain class says about its packets.
#[derive(Clone, Copy)]
struct Facts {
    /// [`net::IPV4`] or [`net::IPV6`].
    net: u8,
    /// The IP protocol; `None` for "none of TCP, UDP, ICMP, ICMPv6, SCTP".
    proto: Option<u8>,
    /// TCP flags (TCP only).
    flags: u32,
    /// The ICMP or ICMPv6 type (those protocols only).
    icmp_type: u32,
}

/// A three-valued truth.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Tri {
    No,
    Yes,
    Maybe,
}

impl Tri {
    pub(crate) fn of(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }

    /// Kleene's `not`, `and` and `or`, over a test's evaluation `eval`.
    pub(crate) fn eval(ast: &Ast, test: &impl Fn(&Test) -> Tri) -> Tri {
        match ast {
            Ast::Test(t) => test(t),
            Ast::Not(a) => match Tri::eval(a, test) {
                Tri::No => Tri::Yes,
                Tri::Yes => Tri::No,
                Tri::Maybe => Tri::Maybe,
            },
            Ast::And(a, b) => match (Tri::eval(a, test), Tri::eval(b, test)) {
                (Tri::No, _) | (_, Tri::No) => Tri::No,
                (Tri::Yes, Tri::Yes) => Tri::Yes,
                _ => Tri::Maybe,
            },
            Ast::Or(a, b) => match (Tri::eval(a, test), Tri::eval(b, test)) {
                (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
                (Tri::No, Tri::No) => Tri::No,
                _ => Tri::Maybe,
            },
        }
    }
}

impl Facts {
    /// Whether a packet of this class carries `proto` (`None` when the class cannot say).
    fn has_proto(self, proto: u8) -> Option<bool> {
        match self.proto {
            Some(p) => Some(p == proto),
            None if matches!(
                proto,
                ip_proto::TCP | ip_proto::UDP | ip_proto::ICMP | ip_proto::ICMPV6 | ip_proto::SCTP
            ) =>
            {
                Some(false)
            }
            None => None,
        }
    }

    /// Whether the field exists in packets of this class (the relation is false if not).
    fn has_field(self, f: Field) -> Option<bool> {
        let (nets, proto) = f.transport()?;
        if nets & self.net == 0 {
            return Some(false);
        }
        self.has_proto(proto)
    }

    fn test(self, t: &Test, arith: &[ArithOp]) -> Tri {
        match *t {
            Test::Const(b) => Tri::of(b),
            Test::Network(nets) => Tri::of(nets & self.net != 0),
            Test::EtherType(_) | Test::Vlan { .. } => Tri::Maybe,
            Test::Proto { nets, proto } => {
                if nets & self.net == 0 {
                    Tri::No
                } else {
                    self.has_proto(proto).map_or(Tri::Maybe, Tri::of)
                }
            }
            Test::Addr { nets, .. } => {
                if nets & self.net == 0 {
                    Tri::No
                } else {
                    Tri::Maybe
                }
            }
            Test::Port { protos, .. } | Test::Ports { protos, .. } => {
                let carries =
                    [(ports::TCP, ip_proto::TCP), (ports::UDP, ip_proto::UDP), (ports::SCTP, ip_proto::SCTP)]
                        .iter()
                        .any(|&(bit, p)| protos & bit != 0 && self.proto == Some(p));
                if carries { Tri::Maybe } else { Tri::No }
            }
            Test::Cmp { field, mask, op, value } => match self.has_field(field) {
                Some(false) => Tri::No,
                Some(true) if field == Field::TcpFlags => Tri::of(op.apply(self.flags & mask, value)),
                Some(true) if matches!(field, Field::IcmpType | Field::Icmp6Type) => {
                    Tri::of(op.apply(self.icmp_type & mask, value))
                }
                _ => Tri::Maybe,
            },
            Test::Arith { lhs, rhs, .. } => {
                let ops = |r: crate::program::ArithRef| {
                    let start = usize::from(r.start);
                    arith.get(start..start + usize::from(r.len)).unwrap_or_default()
                };
                let missing = ops(lhs)
                    .iter()
                    .chain(ops(rhs))
                    .any(|o| matches!(o, ArithOp::Load(f) if self.has_field(*f) == Some(false)));
                if missing { Tri::No } else { Tri::Maybe }
            }
        }
    }

    fn eval(self, ast: &Ast, arith: &[ArithOp]) -> Tri {
        Tri::eval(ast, &|t| self.test(t, arith))
    }
}

/// A filter's verdict per plain class (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClassTable {
    /// Packets of the class may match (the program decides unless `must` is set).
    may: [u64; WORDS],
    /// Packets of the class all match.
    must: [u64; WORDS],
}

/// What the table says for a class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No packet of the class matches.
    No,
    /// Every packet of the class matches.
    Yes,
    /// Run the program.
    Run,
}

impl ClassTable {
    /// Every class must match (the empty expression).
    pub(crate) const ALL: ClassTable = ClassTable { may: [u64::MAX; WORDS], must: [u64::MAX; WORDS] };

    /// The table of an expression.
    pub(crate) fn of(ast: &Ast, arith: &[ArithOp]) -> ClassTable {
        let mut t = ClassTable { may: [0; WORDS], must: [0; WORDS] };
        // A division or modulo by a value read from the packet rejects the packet outright
        // when the value is zero, whatever the rest of the expression says (libpcap's
        // interpreter returns 0): three-valued logic cannot promise a match then.
        let divides = arith.iter().any(|o| matches!(o, ArithOp::Bin(BinOp::Div | BinOp::Mod)));
        for (PacketClass(c), facts) in PacketClass::all() {
            let (w, bit) = (usize::from(c / 64), 1u64 << (c % 64));
            match facts.eval(ast, arith) {
                Tri::No => {}
                Tri::Yes if !divides => {
                    t.may[w] |= bit;
                    t.must[w] |= bit;
                }
                Tri::Yes | Tri::Maybe => t.may[w] |= bit,
            }
        }
        t
    }

    /// The verdict for a plain class (`Run` for [`PacketClass::GENERAL`]).
    #[inline(always)]
    pub(crate) fn verdict(&self, c: PacketClass) -> Verdict {
        let (w, bit) = (usize::from(c.0 / 64), 1u64 << (c.0 % 64));
        match (self.may.get(w), self.must.get(w)) {
            (Some(may), Some(must)) => {
                if may & bit == 0 {
                    Verdict::No
                } else if must & bit != 0 {
                    Verdict::Yes
                } else {
                    Verdict::Run
                }
            }
            _ => Verdict::Run,
        }
    }

    /// How many plain classes the table decides without the program.
    #[cfg(test)]
    pub(crate) fn decided(&self) -> usize {
        PacketClass::all().filter(|(c, _)| self.verdict(*c) != Verdict::Run).count()
    }
}
