//! A cheap necessary condition for a filter: the IP protocols (and whether non-IP frames) it
//! can possibly match, computed once from the expression.
//!
//! Most event-class filters name a protocol (`udp dst port 7001`, `tcp[tcpflags] & … `,
//! `icmp6[icmp6type] == …`). Checking two bits of a 256-bit set before running the program
//! turns away most packets at a fraction of the program's cost. The set is sound: if the
//! program can accept a packet, the guard admits it (a test true for a packet implies the
//! packet's protocol is in the test's set; `and` intersects, `or` unites, `not` admits all) —
//! for packets with one protocol number; IPv6 packets with extension headers are not guarded.

use outpost_decode::PacketMeta;

use crate::program::{Ast, Field, Test, net, ports};

/// The protocols a filter can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProtoGuard {
    /// IP protocol numbers (the upper-layer protocol or IPv6's first next header).
    ip: [u64; 4],
    /// Non-IP frames (ARP, other EtherTypes).
    non_ip: bool,
}

impl ProtoGuard {
    /// Admits every packet.
    pub(crate) const ALL: ProtoGuard = ProtoGuard { ip: [u64::MAX; 4], non_ip: true };
    const NONE: ProtoGuard = ProtoGuard { ip: [0; 4], non_ip: false };
    const ANY_IP: ProtoGuard = ProtoGuard { ip: [u64::MAX; 4], non_ip: false };
    const NON_IP: ProtoGuard = ProtoGuard { ip: [0; 4], non_ip: true };

    fn protos(list: &[u8]) -> ProtoGuard {
        let mut g = ProtoGuard::NONE;
        for &p in list {
            if let Some(w) = g.ip.get_mut(usize::from(p >> 6)) {
                *w |= 1 << (p & 63);
            }
        }
        g
    }

    fn and(self, o: ProtoGuard) -> ProtoGuard {
        let mut ip = self.ip;
        for (a, b) in ip.iter_mut().zip(o.ip) {
            *a &= b;
        }
        ProtoGuard { ip, non_ip: self.non_ip && o.non_ip }
    }

    fn or(self, o: ProtoGuard) -> ProtoGuard {
        let mut ip = self.ip;
        for (a, b) in ip.iter_mut().zip(o.ip) {
            *a |= b;
        }
        ProtoGuard { ip, non_ip: self.non_ip || o.non_ip }
    }

    #[inline(always)]
    fn has(&self, p: u8) -> bool {
        self.ip.get(usize::from(p >> 6)).is_some_and(|w| w & (1 << (p & 63)) != 0)
    }

    /// Whether the filter can match `m`. Packets whose upper-layer protocol differs from the
    /// IPv6 fixed header's next header (extension headers) are always admitted: a protocol
    /// test may then be true through either, and `and` does not intersect such conditions.
    #[inline(always)]
    pub(crate) fn admits(&self, m: &PacketMeta) -> bool {
        if !m.is_ip() {
            self.non_ip
        } else if m.ip_proto == m.ip6_first_next_header {
            self.has(m.ip_proto)
        } else {
            true
        }
    }

    /// The guard of an expression.
    pub(crate) fn of(ast: &Ast) -> ProtoGuard {
        match ast {
            Ast::Test(t) => ProtoGuard::of_test(t),
            Ast::Not(_) => ProtoGuard::ALL,
            Ast::And(a, b) => ProtoGuard::of(a).and(ProtoGuard::of(b)),
            Ast::Or(a, b) => ProtoGuard::of(a).or(ProtoGuard::of(b)),
        }
    }

    fn of_test(t: &Test) -> ProtoGuard {
        const TCP: u8 = 6;
        const UDP: u8 = 17;
        const SCTP: u8 = 132;
        match *t {
            Test::Const(false) => ProtoGuard::NONE,
            Test::Const(true) | Test::Vlan { .. } | Test::Arith { .. } => ProtoGuard::ALL,
            Test::Network(nets) | Test::Addr { nets, .. } => {
                if nets & net::ARP == 0 {
                    ProtoGuard::ANY_IP
                } else if nets & net::IP == 0 {
                    ProtoGuard::NON_IP
                } else {
                    ProtoGuard::ALL
                }
            }
            Test::EtherType(_) => ProtoGuard::NON_IP,
            Test::Proto { proto, .. } => ProtoGuard::protos(&[proto]),
            Test::Port { protos, .. } | Test::Ports { protos, .. } => {
                let mut list = Vec::with_capacity(3);
                for (bit, p) in [(ports::TCP, TCP), (ports::UDP, UDP), (ports::SCTP, SCTP)] {
                    if protos & bit != 0 {
                        list.push(p);
                    }
                }
                ProtoGuard::protos(&list)
            }
            Test::Cmp { field, .. } => match field {
                Field::Len => ProtoGuard::ALL,
                Field::TcpSrcPort
                | Field::TcpDstPort
                | Field::TcpSeq
                | Field::TcpAck
                | Field::TcpFlags
                | Field::TcpWindow => ProtoGuard::protos(&[TCP]),
                Field::UdpSrcPort | Field::UdpDstPort => ProtoGuard::protos(&[UDP]),
                Field::IcmpType | Field::IcmpCode | Field::IcmpTypeCode => ProtoGuard::protos(&[1]),
                Field::Icmp6Type | Field::Icmp6Code | Field::Icmp6TypeCode => ProtoGuard::protos(&[58]),
                Field::ArpOp => ProtoGuard::NON_IP,
            },
        }
    }
}
