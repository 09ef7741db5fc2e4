//! Filter expressions: a subset of the pcap-filter (tcpdump) language, compiled once into a
//! fast predicate over a decoded [`PacketMeta`].
//!
//! ```
//! use outpost_filter::Filter;
//!
//! let syn = Filter::parse("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst port 22 or 2222")?;
//! assert_eq!(syn.source(), "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst port 22 or 2222");
//! let err = Filter::parse("udp dst port x").unwrap_err();
//! assert_eq!(err.column, 14);
//! # Ok::<(), outpost_filter::FilterError>(())
//! ```
//!
//! [`Filter::parse`] compiles the text into a flat array of tests with pre-resolved constants
//! (addresses as 128-bit network + mask, port ranges, protocol sets) and jump targets;
//! [`Filter::matches`] walks that array once, without allocating, recursing or touching the
//! text. A typical expression costs a few nanoseconds per packet.
//!
//! # Language reference
//!
//! The language is tcpdump's (`man pcap-filter`), restricted to what a [`PacketMeta`] holds.
//! Keywords are lower case. An **empty expression** (or only whitespace) matches every packet.
//!
//! ## Combining
//!
//! | Syntax | Meaning |
//! |---|---|
//! | `A and B`, `A && B` | both |
//! | `A or B`, `A \|\| B` | either |
//! | `not A`, `! A` | negation |
//! | `( A )` | grouping |
//!
//! As in pcap-filter, **negation binds tightest, and `and` and `or` have the same precedence
//! and associate left to right**: `tcp or udp and port 53` means `(tcp or udp) and port 53`,
//! and `port 80 or port 443 and host 10.0.0.1` means `(port 80 or port 443) and host
//! 10.0.0.1`. Use parentheses.
//!
//! ## Primitives
//!
//! | Primitive | Matches |
//! |---|---|
//! | `ip`, `ip6`, `arp` | IPv4, IPv6, ARP packets |
//! | `rarp` | frames with EtherType 0x8035 |
//! | `tcp`, `udp`, `sctp` | IPv4 or IPv6 packets of that protocol |
//! | `icmp` | ICMP over IPv4 only |
//! | `icmp6` | ICMPv6 (over IPv6) |
//! | `igmp`, `igrp`, `vrrp`, `carp` | IPv4 protocols 2, 9, 112, 112 |
//! | `pim`, `ah`, `esp` | IPv4 or IPv6 protocols 103, 51, 50 |
//! | `host ADDR` | source or destination is `ADDR` (IPv4 or IPv6) |
//! | `net NET` | source or destination lies in `NET` |
//! | `port N` | TCP, UDP or SCTP source or destination port `N` (0–65535) |
//! | `portrange N-M` | a port in `N..=M` (bounds in either order) |
//! | `proto P`, `ip proto P`, `ip6 proto P` | IP protocol `P` (0–255 or a name); for IPv6 the protocol after the extension headers, or the first next header |
//! | `vlan`, `vlan ID` | the frame carries a VLAN tag (with id `ID`, 0–4095); see below |
//! | `greater N`, `less N` | frame length on the wire `>= N`, `<= N` |
//! | `ARITH RELOP ARITH` | a comparison, see *Relations* |
//!
//! **Qualifiers.** `host`, `net`, `port`, `portrange` take a direction: `src`, `dst`,
//! `src or dst` (the default), `src and dst` (also `dst or src`, `dst and src`). A direction
//! alone means `host`: `src 10.0.0.1`. They also take a protocol qualifier in front:
//!
//! - `host` / `net`: `ip` (IPv4 only), `ip6`, `arp` (only ARP sender / target addresses). An
//!   unqualified IPv4 `host` or `net` matches IPv4 packets **and ARP** sender/target protocol
//!   addresses, as in tcpdump; an IPv6 one matches IPv6 packets. `ip6` with an IPv4 address,
//!   or `ip`/`arp` with an IPv6 one, is an error, as is any other protocol (`tcp host 1.2.3.4`:
//!   write `tcp and host 1.2.3.4`).
//! - `port` / `portrange`: `tcp`, `udp` or `sctp`; unqualified means any of the three.
//!   `ip port` is an error.
//! - `proto`: `ip` (IPv4 only) or `ip6` (IPv6 only); unqualified means both. No direction.
//!
//! **Addresses and networks.** `host` takes a complete IPv4 (`192.0.2.7`) or IPv6
//! (`2001:db8::1`) address. `net` takes `ADDR/LEN` (`10.0.0.0/8`, `2001:db8::/32`),
//! `ADDR mask MASK` (IPv4 only; any mask, contiguous or not), an abbreviated IPv4 network
//! (`net 10` = `10.0.0.0/8`, `net 192.168` = `192.168.0.0/16`, `net 10.1/16`) or a complete
//! address (a `/32` or `/128`). Bits set outside the prefix are an error (`net 10.1.2.3/8`),
//! as in tcpdump.
//!
//! **Ports.** `port` matches only where tcpdump can see ports: TCP, UDP or SCTP packets that
//! are not IPv4/IPv6 *later* fragments (fragment offset 0). A transport header cut short by
//! the capture leaves its ports unknown — see *Cut transport headers* below.
//!
//! **Protocol names** after `proto`: `icmp`, `igmp`, `tcp`, `igrp`, `udp`, `ipv6`, `gre`,
//! `esp`, `ah`, `icmp6`, `ospf`, `pim`, `vrrp`, `carp`, `l2tp`, `sctp`, with or without
//! tcpdump's backslash (`ip proto \tcp` and `ip proto tcp` both work), or a number.
//!
//! **Repeating qualifiers.** After `and` / `or`, a bare value repeats the qualifiers of the
//! primitive before it: `port 80 or 443` is `port 80 or port 443`; `tcp dst port 22 or 2222`
//! is `tcp dst port 22 or tcp dst port 2222`; `host 10.0.0.1 and not 10.0.0.2`,
//! `ip proto 6 or 17`, and parenthesised lists `host 10.0.0.1 and (10.0.0.2 or 10.0.0.3)` work
//! too. A parenthesised term passes on the qualifiers in force before it (libpcap's rule);
//! protocol names, relations, `vlan`, `greater` and `less` leave nothing to repeat, so
//! `tcp or 80` is an error.
//!
//! **Numbers** are decimal or `0x` hexadecimal, unsigned 32-bit. A leading zero (`010`) is
//! rejected: tcpdump reads it as octal, which surprises more people than it helps.
//!
//! ## Relations
//!
//! `ARITH RELOP ARITH` with `RELOP` one of `=` (or `==`), `!=`, `<`, `<=`, `>`, `>=`, compared
//! as unsigned 32-bit values. `ARITH` combines numbers, named constants, `len` and fields with
//! `+ - * / % & | ^ << >>` and unary `-`, in 32-bit wrapping arithmetic, with libpcap's
//! precedence: `|` loosest, then `&`, then `<< >>`, then `+ -`, then `* /`. libpcap declares no
//! precedence for `^` and `%`: each takes the operand just before it and everything after it
//! up to the end of the arithmetic (`8 - 6 % 4` is 6, `2 * 3 % 4` is 6); write parentheses.
//! Relations bind looser than all arithmetic (`tcp[13] & 2 != 0` is `(tcp[13] & 2) != 0`).
//! A constant division or modulo by zero, or shift by 32 or more, is an error; a shift by 32
//! or more computed at run time gives 0.
//!
//! | Field | Value |
//! |---|---|
//! | `len` | frame length on the wire (pcap `orig_len`) |
//! | `tcp[13]`, `tcp[tcpflags]`, `tcp[13:1]` | TCP flags byte |
//! | `tcp[0:2]`, `tcp[2:2]` | TCP source, destination port |
//! | `tcp[4:4]`, `tcp[8:4]`, `tcp[14:2]` | TCP sequence, acknowledgment number, window |
//! | `udp[0:2]`, `udp[2:2]` | UDP source, destination port |
//! | `icmp[0]` / `icmp[icmptype]`, `icmp[1]` / `icmp[icmpcode]`, `icmp[0:2]` | ICMP type, code, type·256+code |
//! | `icmp6[0]` / `icmp6[icmp6type]`, `icmp6[1]` / `icmp6[icmp6code]`, `icmp6[0:2]` | the same for ICMPv6 |
//! | `arp[6:2]` | ARP operation (1 request, 2 reply), in every ARP frame |
//!
//! As in libpcap, a relation reading a field is false for packets without that header (a
//! UDP datagram makes both `tcp[13] = 2` and `tcp[13] != 2` false), and for IPv4 later
//! fragments. Other offsets, and other protocols' bytes (`ip[0]`, `ether[…]`), are not
//! available: Outpost filters see the decoded summary, not the bytes.
//!
//! Named constants: `tcp-fin` 0x01, `tcp-syn` 0x02, `tcp-rst` 0x04, `tcp-push` 0x08,
//! `tcp-ack` 0x10, `tcp-urg` 0x20, `tcp-ece` 0x40, `tcp-cwr` 0x80; `icmp-echoreply` 0,
//! `icmp-unreach` 3, `icmp-sourcequench` 4, `icmp-redirect` 5, `icmp-echo` 8,
//! `icmp-routeradvert` 9, `icmp-routersolicit` 10, `icmp-timxceed` 11, `icmp-paramprob` 12,
//! `icmp-tstamp` 13, `icmp-tstampreply` 14, `icmp-ireq` 15, `icmp-ireqreply` 16,
//! `icmp-maskreq` 17, `icmp-maskreply` 18; and libpcap's ICMPv6 names: `icmp6-destinationunreach`
//! 1, `icmp6-packettoobig` 2, `icmp6-timeexceeded` 3, `icmp6-parameterproblem` 4,
//! `icmp6-echo` 128, `icmp6-echoreply` 129, `icmp6-multicastlistenerquery` 130,
//! `icmp6-multicastlistenerreportv1` 131, `icmp6-multicastlistenerdone` 132,
//! `icmp6-routersolicit` 133, `icmp6-routeradvert` 134, `icmp6-neighborsolicit` 135,
//! `icmp6-neighboradvert` 136, `icmp6-redirect` 137, `icmp6-routerrenum` 138, 139–149 as in
//! libpcap (`icmp6-nodeinformationquery` … `icmp6-certpathadvert`), and
//! `icmp6-multicastrouteradvert` 151, `icmp6-multicastroutersolicit` 152,
//! `icmp6-multicastrouterterm` 153.
//!
//! **Limits:** 4096 primitives, 64 levels of nesting (parentheses, `not`, arithmetic).
//!
//! ## Not supported
//!
//! Link-layer primitives (`ether`, `link`, `wlan`, …, `gateway`, `broadcast`, `multicast`),
//! byte access beyond the fields above (`ip[…]`, `ether[…]`, `tcp[12]`), `protochain`, host
//! and service names, `rarp host`/`rarp net`, MPLS, PPPoE, Geneve, LLC, ISO, DECnet,
//! AppleTalk, IPX, 802.11, ATM, MTP and pf fields. Each is rejected with an error naming it
//! ("`ether` (link-layer) primitives are not supported by Outpost filters …"), never silently
//! reinterpreted.
//!
//! # Differences from tcpdump
//!
//! Outpost filters give the answer of libpcap 1.10 (`tcpdump -r FILE 'EXPR'`) wherever the
//! decoded packet shows the same thing. The crate's tests compare the two on a generated
//! capture (every primitive and qualifier, ~340 expressions) against libpcap's *reference*
//! evaluation, `tcpdump -O`: its optimizer has a long history of bugs, and 1.10.3 still
//! compiles `ip6 src net ::/1 and ip6 net ::/1` as if it read `src and dst net ::/1` — Outpost
//! follows the unoptimized meaning. They differ on purpose here:
//!
//! - **VLAN tags are looked through.** Live Linux capture strips the outer tag before the
//!   filter runs, files keep it; Outpost answers the same either way. Protocol, address and
//!   port tests see the packet inside the tags, so `ip` matches a tagged IPv4 packet.
//!   `vlan` and `vlan ID` test the tags **by position, as tcpdump does**: the first `vlan`
//!   primitive in the text tests the outermost tag, the second the next one (`vlan 100 and vlan
//!   200` = outer 100, inner 200; `vlan and vlan` = double-tagged). So, as in tcpdump,
//!   `vlan 10 or vlan 20` does *not* match a single-tagged VLAN-20 frame. What differs is that
//!   tcpdump also moves every *later* test 4 bytes along after a `vlan` — whether that `vlan`
//!   matched or not — while Outpost never moves them. The equivalence the tests check: for a
//!   frame with *n* tags and an expression `E` without `vlan`, Outpost `E` = tcpdump `vlan and
//!   … (n times) … and (E)`; an expression whose `vlan` primitives all come before its other
//!   primitives gives tcpdump's answer on frames with exactly that many tags. tcpdump's
//!   `ip and vlan` matches nothing (it looks for IPv4 and a tag at the same offset); Outpost's
//!   matches tagged IPv4. tcpdump's `not vlan and ip` tests the IPv4 EtherType at the tag's
//!   offset; Outpost's matches untagged IPv4.
//! - **IPv6 extension headers are walked.** `tcp`, `udp`, `sctp`, `icmp6`, `port`,
//!   `portrange`, `proto` and the `tcp[…]`/`udp[…]`/`icmp6[…]` fields look at the upper-layer
//!   header after the extension-header chain (hop-by-hop, routing, fragment, destination
//!   options, AH; up to eight, as the decoder walks). libpcap 1.10 looks only at the fixed
//!   header's next-header field — for protocol tests (not ports) also through one fragment
//!   header directly after it — so tcpdump's `tcp port 80` misses a TCP segment behind a
//!   hop-by-hop header, and its `icmp6` misses MLD reports (which always carry one). A
//!   security sensor must not be evaded by adding an extension header. `ip6 proto N` (and
//!   `proto N`) also matches when `N` is the fixed header's next header, so `ip6 proto 0`
//!   still finds hop-by-hop packets as in tcpdump; headers in the middle of a chain are not
//!   seen. The tests compare such packets with tcpdump on a twin packet without the extension
//!   headers (same length, padded payload), for expressions not naming extension-header
//!   protocol numbers.
//! - **IPv6 first fragments show their transport header** (ports, flags, ICMPv6 type), like
//!   IPv4 first fragments; tcpdump never matches ports in IPv6 fragments. Later fragments
//!   (IPv4 or IPv6) never match ports or fields, but do match `tcp`/`udp`/… by protocol.
//! - **`tcp[…]` and `udp[…]` work for IPv6.** libpcap computes their offset from the IPv4
//!   header only ("tcp, udp and other upper-layer protocol types only apply to IPv4"), so
//!   tcpdump's `tcp[tcpflags] & tcp-syn != 0` never matches IPv6; Outpost reads the IPv6
//!   segment's flags. The tests compare these with tcpdump's `ip6[40+…]`.
//! - **Cut transport headers.** A test that needs a transport header the capture cut short
//!   (`Transport::Truncated`: ports, `portrange`, `tcp[…]`, `udp[…]`, `icmp[…]`, `icmp6[…]`)
//!   is *unknown*, and the packet matches only if the expression is true whichever way its
//!   unknown tests go (a test written twice goes the same way both times). So `port 0`,
//!   `not port 80` and `port 80 or port 443` never match a TCP segment cut after its IP
//!   header, while `tcp or port 80`, `not port 80 or tcp` and `port 80 or host A` (for a
//!   packet from `A`) do — in any order of the operands. libpcap instead rejects the packet as
//!   soon as its program reads beyond the capture: unoptimized (`tcpdump -O`) that depends on
//!   the order of the primitives (`host A or port 80` matches, `port 80 or host A` does not);
//!   optimized, on which reads the optimizer managed to remove. Whatever `tcpdump -O` matches,
//!   Outpost matches, and whatever Outpost matches, tcpdump matches once the packet is
//!   complete; the tests check both. Outpost also does not decode *partial* headers: libpcap
//!   can read the ports of a TCP header cut after byte 4, or the type of an ICMP header cut
//!   after byte 1; and a TCP data offset below 5 or beyond the segment counts as cut in
//!   Outpost while libpcap reads the fields regardless. Work on a cut packet is bounded (such
//!   packets can be crafted at line rate): with more than 8 distinct unknown tests, or a long
//!   expression, each unknown test is taken independently, a stricter rule that never matches
//!   more.
//! - **Division by a value that turns out to be zero** rejects the packet, as in libpcap's
//!   interpreter; a divisor that folds to the constant zero is a compile-time error even when
//!   written as an expression (`len / (1 - 1)`), where tcpdump compiles it and then rejects
//!   every packet.
//! - **RARP** addresses are not decoded: an unqualified `host`/`net` never matches a RARP
//!   frame (tcpdump's does), and `rarp host` is rejected. ARP addresses are decoded only for
//!   Ethernet/IPv4 ARP; libpcap reads them at fixed offsets for any hardware type.
//! - **Rejected rather than reinterpreted:** numbers with a leading zero (octal in tcpdump),
//!   abbreviated or numeric hosts (tcpdump reads `host 10.1` as a /16 network and `host 80` as
//!   0.0.0.80), host, service and most protocol names (tcpdump resolves them through the
//!   system), and hexadecimal `portrange` bounds (tcpdump misreads them).
//! - **Accepted beyond tcpdump:** protocol names after `proto` without a backslash
//!   (`ip proto tcp`).
//! - tcpdump refuses expressions that can never match ("expression rejects all packets");
//!   Outpost compiles them into a filter that matches nothing.
//! - Frames Outpost cannot decode never reach a filter, and the same filter applies to every
//!   link type Outpost decodes (Ethernet, Linux cooked v1/v2, raw IP), while libpcap compiles
//!   per link type.

mod addrs;
mod class;
mod error;
mod guard;
mod lexer;
mod parser;
mod program;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use addrs::AddrTable;
pub use class::PacketClass;
use class::{ClassTable, Verdict};
pub use error::{ErrorKind, FilterError};
use guard::ProtoGuard;
use outpost_decode::PacketMeta;
use program::{ArithOp, Insn};

/// The test of a filter that is one `[tcp|udp|sctp] dst port N` primitive
/// ([`Filter::as_dst_port`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DstPort {
    /// Transports the primitive names (`program::ports` bits).
    protos: u8,
    /// The destination port.
    pub port: u16,
}

impl DstPort {
    /// What the filter says about `m` without its port: `Some(false)` when it cannot match
    /// (another transport, not IP, a later fragment, no transport header), `Some(true)` when
    /// it matches exactly if `m.dst_port == self.port`, `None` when the transport header was
    /// cut short and only the filter itself can decide.
    #[inline]
    #[must_use]
    pub fn candidate(&self, m: &PacketMeta) -> Option<bool> {
        program::port_candidate(self.protos, m)
    }

    /// True when `other` tests the same transports (so one [`DstPort::candidate`] answers for
    /// both).
    #[must_use]
    pub fn same_transports(&self, other: &DstPort) -> bool {
        self.protos == other.protos
    }
}

/// A compiled filter expression.
///
/// Cheap to clone (two small arrays and the text), `Send + Sync`, and immutable: share one
/// per rule across workers, or clone it.
#[derive(Clone)]
pub struct Filter {
    source: Box<str>,
    /// The verdict per plain packet class, checked before anything else.
    classes: ClassTable,
    /// The protocols the expression can match, checked before the program.
    guard: ProtoGuard,
    /// The first address octets the expression can match, checked before the program.
    addrs: AddrTable,
    /// Instructions; index 0 is the entry; empty matches everything.
    program: Box<[Insn]>,
    /// Postfix arithmetic of general relations.
    arith: Box<[ArithOp]>,
}

impl Filter {
    /// Compiles `expr`.
    ///
    /// # Errors
    /// A [`FilterError`] with the column of the first problem: unknown keyword, unsupported
    /// primitive, bad address or number, out-of-range value, over-long prefix, qualifier that
    /// makes no sense, unbalanced parenthesis, trailing input.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let parsed = parser::parse(expr)?;
        let program = match &parsed.ast {
            None => Vec::new(),
            Some(ast) => program::compile(ast).ok_or_else(|| {
                FilterError::new(expr, 1, ErrorKind::TooComplex, "expression is too large".to_string())
            })?,
        };
        Ok(Filter {
            source: expr.into(),
            classes: parsed.ast.as_ref().map_or(ClassTable::ALL, |a| ClassTable::of(a, &parsed.arith)),
            guard: parsed.ast.as_ref().map_or(ProtoGuard::ALL, ProtoGuard::of),
            addrs: parsed.ast.as_ref().map_or(AddrTable::ALL, AddrTable::of),
            program: program.into_boxed_slice(),
            arith: parsed.arith.into_boxed_slice(),
        })
    }

    /// A filter that matches every packet (the empty expression).
    #[must_use]
    pub fn match_all() -> Filter {
        Filter {
            source: "".into(),
            classes: ClassTable::ALL,
            guard: ProtoGuard::ALL,
            addrs: AddrTable::ALL,
            program: Box::new([]),
            arith: Box::new([]),
        }
    }

    /// True when the packet matches. Never allocates; visits each instruction at most once.
    ///
    /// Computes the packet's [`PacketClass`]; to test one packet against many filters,
    /// compute it once and call [`Filter::matches_class`].
    #[inline]
    #[must_use]
    pub fn matches(&self, meta: &PacketMeta) -> bool {
        self.matches_class(PacketClass::of(meta), meta)
    }

    /// True when the packet matches; `class` must be `PacketClass::of(meta)` (or
    /// [`PacketClass::GENERAL`], which is always correct and slower). Where the class decides
    /// the expression (`tcp`, TCP flag tests, ICMP type tests, another protocol's ports) this is
    /// one bit test; otherwise the program runs.
    ///
    /// The table and pre-tests are inlined into the caller, the program is a call: most
    /// packets are decided before it, and a caller testing many filters per packet (the
    /// detector's `prepare`) then pays a few instructions, not a call, for each of them.
    #[inline(always)]
    #[must_use]
    pub fn matches_class(&self, class: PacketClass, meta: &PacketMeta) -> bool {
        match self.classes.verdict(class) {
            Verdict::No => false,
            Verdict::Yes => true,
            // Two bit tests turn away packets whose addresses' first octets the expression
            // cannot match; for a packet of the general class (a plain class has said what
            // its protocol allows already), two more those of protocols it cannot match.
            Verdict::Run => {
                self.addrs.admits(meta)
                    && (class != PacketClass::GENERAL || self.guard.admits(meta))
                    && program::run_program(&self.program, &self.arith, meta)
            }
        }
    }

    /// When the expression is a single `[tcp|udp|sctp] dst port N` primitive: the port and
    /// transports it tests, so a caller holding many such filters (a state machine's events)
    /// can find the one a packet matches with one lookup instead of running each.
    #[must_use]
    pub fn as_dst_port(&self) -> Option<DstPort> {
        match self.program.as_ref() {
            [
                Insn {
                    test: program::Test::Port { protos, dir: program::Dir::Dst, lo, hi },
                    on_true: program::ACCEPT,
                    on_false: program::REJECT,
                },
            ] if lo == hi => Some(DstPort { protos: *protos, port: *lo }),
            _ => None,
        }
    }

    /// False when no packet of `class` can match (the class alone rules the expression
    /// out); true otherwise, and always for [`PacketClass::GENERAL`]. For dispatch tables:
    /// a rule whose filters cannot match a class need not be visited for its packets.
    #[must_use]
    pub fn may_match_class(&self, class: PacketClass) -> bool {
        self.classes.verdict(class) != Verdict::No
    }

    /// False when no IPv4 packet whose source address's first octet is `octet` can match
    /// (the expression's address table rules it out); true otherwise. For dispatch tables: a
    /// rule need not be visited for such packets.
    #[must_use]
    pub fn may_match_v4_source_octet(&self, octet: u8) -> bool {
        self.addrs.may_v4_source(octet)
    }

    /// The expression text, as given to [`Filter::parse`].
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for the empty expression, which matches everything.
    #[must_use]
    pub fn is_match_all(&self) -> bool {
        self.program.is_empty()
    }

    /// Number of primitive tests the expression compiled to.
    #[must_use]
    pub fn instructions(&self) -> usize {
        self.program.len()
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .field("program", &self.program)
            .field("arith", &self.arith)
            .finish()
    }
}

/// Shows the expression text.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Two filters are equal when their expression texts are (the program follows from the text).
impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        self.source == other.source
    }
}

impl Eq for Filter {}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

/// Deserializes from the expression string; the error message carries the column and a caret.
impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Filter, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Filter::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serializes as the expression string.
impl serde::Serialize for Filter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
