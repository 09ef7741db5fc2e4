//! Unit tests: the parser (precedence, abbreviations, errors and their columns) and the
//! evaluator over frames built by `outpost_tools::frame` and decoded by `outpost_decode`.
//! The comparison with tcpdump itself is `tests/tcpdump.rs`.

use std::net::IpAddr;

use outpost_decode::{LinkType, Nanos, PacketMeta, Transport as MetaTransport, decode};
use outpost_tools::frame::{FrameBuilder, Link, Transport, icmp, ipv6_ext, tcp, udp};
use proptest::prelude::*;

use crate::program::{Ast, Dir, Test, net};
use crate::{ErrorKind, Filter, FilterError, PacketClass};

const SYN: u16 = 0x02;
const ACK: u16 = 0x10;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn b(src: &str, dst: &str, t: Transport) -> FrameBuilder {
    FrameBuilder::new(ip(src), ip(dst), t)
}

fn meta_of(frame: &[u8]) -> PacketMeta {
    decode(LinkType::Ethernet, frame, Nanos(0), frame.len() as u32).unwrap()
}

fn meta(builder: &FrameBuilder) -> PacketMeta {
    meta_of(&builder.build())
}

/// A frame cut right after its IP header (wire length kept).
fn cut(builder: &FrameBuilder) -> PacketMeta {
    let f = builder.build();
    let l4 = usize::from(meta_of(&f).l4_offset);
    let m = decode(LinkType::Ethernet, &f[..l4], Nanos(0), f.len() as u32).unwrap();
    assert_eq!(m.transport, MetaTransport::Truncated);
    m
}

fn arp(sender: &str, target: [u8; 4], vlans: &[u16]) -> PacketMeta {
    let mut f = Vec::new();
    assert!(b(sender, "10.0.0.1", udp(0, 0)).vlans(vlans).write_arp_to(&mut f, 1, target));
    meta_of(&f)
}

fn m(expr: &str, meta: &PacketMeta) -> bool {
    Filter::parse(expr).unwrap_or_else(|e| panic!("{e}")).matches(meta)
}

fn err(expr: &str) -> FilterError {
    match Filter::parse(expr) {
        Ok(f) => panic!("`{expr}` compiled: {f:?}"),
        Err(e) => e,
    }
}

/// Asserts the error kind, column and a fragment of the message.
#[track_caller]
fn assert_err(expr: &str, kind: ErrorKind, column: usize, fragment: &str) {
    let e = err(expr);
    assert_eq!((e.kind, e.column), (kind, column), "`{expr}`: {e}");
    assert!(e.message.contains(fragment), "`{expr}`: message `{}` lacks `{fragment}`", e.message);
}

fn syn_80() -> PacketMeta {
    meta(&b("10.0.0.1", "192.168.1.10", tcp(40000, 80, SYN, 1, 0)))
}

fn dns_v4() -> PacketMeta {
    meta(&b("10.0.0.2", "8.8.8.8", udp(5353, 53)))
}

fn tcp_v6(dport: u16, flags: u16) -> FrameBuilder {
    b("2001:db8::1", "2001:db8::2", tcp(1234, dport, flags, 7, 0))
}

// ---- parser -------------------------------------------------------------------------------

#[test]
fn and_and_or_have_equal_precedence_and_associate_left_to_right() {
    let tcp80 = syn_80();
    // (tcp or udp) and port 53: false for TCP port 80; `tcp or (udp and port 53)` is true.
    assert!(!m("tcp or udp and port 53", &tcp80));
    assert!(m("tcp or (udp and port 53)", &tcp80));
    assert!(m("tcp || udp && port 53", &dns_v4()));
    // (port 80 or port 443) and host 192.168.1.10
    assert!(m("port 443 or port 80 and host 192.168.1.10", &tcp80));
    assert!(!m("port 80 or port 443 and host 8.8.8.8", &tcp80));
    // `not` binds tightest.
    assert!(!m("not tcp and port 80", &tcp80));
    assert!(m("not udp and port 80", &tcp80));
    assert!(m("!udp&&!icmp", &tcp80));
    assert!(m("not not tcp", &tcp80));
    assert!(!m("not (tcp or udp)", &tcp80));
}

#[test]
fn the_tree_is_left_associative() {
    let p = crate::parser::parse("tcp or udp and icmp").unwrap();
    let Some(Ast::And(lhs, _)) = p.ast else { panic!("{:?}", p.ast) };
    assert!(matches!(*lhs, Ast::Or(..)));
}

#[test]
fn a_bare_value_repeats_the_previous_qualifiers() {
    let tcp80 = syn_80();
    let dns = dns_v4();
    assert!(m("port 443 or 80", &tcp80));
    assert!(m("tcp dst port 22 or 80", &tcp80));
    assert!(!m("tcp src port 22 or 80", &tcp80), "the repeated value keeps `src`");
    assert!(!m("udp port 22 or 80", &tcp80), "the repeated value keeps `udp`");
    assert!(m("host 1.2.3.4 or 10.0.0.1", &tcp80));
    assert!(!m("host 10.0.0.1 and not 192.168.1.10", &tcp80));
    assert!(m("host 10.0.0.1 and not 1.2.3.4", &tcp80));
    assert!(m("host 10.0.0.1 and (1.2.3.4 or 192.168.1.10)", &tcp80));
    assert!(m("net 172.16.0.0/12 or 10.0.0.0/8", &tcp80));
    assert!(m("ip proto 1 or 6", &tcp80));
    assert!(m("ip proto \\icmp or \\tcp", &tcp80));
    assert!(m("portrange 1-10 or 50-60", &dns));
    // A group passes on the qualifiers before it (libpcap's rule).
    assert!(m("port 22 and (tcp) or 80", &tcp80));
    // Abbreviations are equivalent to the spelled-out form.
    let short = Filter::parse("src port 1 or 2 and not 3").unwrap();
    let long = Filter::parse("src port 1 or src port 2 and not src port 3").unwrap();
    assert_eq!(format!("{:?}", short.program), format!("{:?}", long.program));
}

#[test]
fn nothing_to_repeat_is_an_error() {
    assert_err("tcp or 80", ErrorKind::Syntax, 8, "cannot stand alone");
    assert_err("(port 80) or 443", ErrorKind::Syntax, 14, "cannot stand alone");
    assert_err("vlan 10 or 20", ErrorKind::Syntax, 12, "cannot stand alone");
    assert_err("len > 5 or 6", ErrorKind::Syntax, 12, "cannot stand alone");
}

#[test]
fn empty_expressions_match_everything() {
    for e in ["", "   ", "\t\n"] {
        let f = Filter::parse(e).unwrap();
        assert!(f.is_match_all());
        assert!(f.matches(&PacketMeta::default()));
        assert!(f.matches(&syn_80()));
    }
    assert!(Filter::match_all().matches(&dns_v4()));
}

#[test]
fn primitives_compile_to_resolved_constants() {
    let p = crate::parser::parse("src net 10.1/16").unwrap();
    assert_eq!(
        p.ast,
        Some(Ast::Test(Test::Addr {
            nets: net::IPV4 | net::ARP,
            dir: Dir::Src,
            net: 0xffff_0a01_0000,
            mask: !0u128 << 16,
        }))
    );
    let f = Filter::parse("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn").unwrap();
    assert_eq!(f.instructions(), 1);
    assert!(f.arith.is_empty(), "the common relation shape needs no arithmetic program");
    // The two ports are one folded test, then `not tcp`.
    assert_eq!(Filter::parse("port 80 or 443 and not tcp").unwrap().instructions(), 2);
}

#[test]
fn numbers_are_decimal_or_hex() {
    let tcp80 = syn_80();
    assert!(m("port 0x50", &tcp80));
    assert!(m("port 0X0050", &tcp80));
    assert!(m("0xffffffff = 4294967295", &tcp80));
    assert!(m("len = 0 + len", &tcp80));
    assert_err("port 080", ErrorKind::BadNumber, 6, "octal");
    assert_err("len > 4294967296", ErrorKind::OutOfRange, 7, "32 bits");
    assert_err("len > 0x100000000", ErrorKind::OutOfRange, 7, "32 bits");
    assert_err("len > 0x", ErrorKind::BadNumber, 7, "not a number");
    assert_err("len > 12ab", ErrorKind::BadNumber, 7, "not a number");
}

// ---- errors --------------------------------------------------------------------------------

#[test]
fn errors_point_at_the_offending_column() {
    use ErrorKind::*;
    let cases: &[(&str, ErrorKind, usize, &str)] = &[
        ("udp dst port x", Unsupported, 14, "expected a port number after `port`"),
        ("port http", Unsupported, 6, "service names"),
        ("tcp and foo", UnknownKeyword, 9, "unknown keyword `foo`"),
        ("TCP", UnknownKeyword, 1, "unknown keyword `TCP`"),
        ("tcp $ udp", UnexpectedCharacter, 5, "`$`"),
        ("ether host 00:11:22:33:44:55", Unsupported, 1, "`ether` (link-layer) primitives are not supported"),
        ("ip broadcast", Unsupported, 4, "`broadcast` is not supported"),
        ("gateway 10.0.0.1", Unsupported, 1, "`gateway` is not supported"),
        ("ip6 protochain 6", Unsupported, 5, "`protochain` is not supported"),
        ("mpls 5", Unsupported, 1, "`mpls` is not supported"),
        ("ip[0] = 0x45", Unsupported, 1, "`ip[…]` is not supported"),
        ("tcp[12] & 0xf0 > 0x50", Unsupported, 5, "`tcp[12:1]` is not available"),
        ("tcp[20] = 1", Unsupported, 5, "`tcp[20:1]`"),
        ("tcp[13:3] = 1", Syntax, 8, "size must be 1, 2 or 4"),
        ("tcp[len] = 1", Unsupported, 5, "must be a constant"),
        ("foo[1] = 2", UnknownKeyword, 1, "unknown keyword `foo`"),
        ("host example.com", Unsupported, 6, "host names"),
        ("rarp host 10.0.0.1", Unsupported, 1, "RARP addresses are not decoded"),
        ("host 10.0.0", BadAddress, 6, "not a complete IPv4 address"),
        ("host 80", BadAddress, 6, "for a port, write `port 80`"),
        ("host 10.0.0.256", BadAddress, 6, "not an IPv4 address"),
        ("host 10.00.0.1", BadAddress, 6, "not an IPv4 address"),
        ("host 2001:db8::g", BadAddress, 6, "not an IPv6 address"),
        ("net 1.2.3.4.5", BadAddress, 5, "not an IPv4 address"),
        ("host 10.0.0.0/8", BadQualifier, 14, "needs `net`"),
        ("src 10.0.0.0/8", BadQualifier, 13, "needs `net`"),
        ("net 10.0.0.0/33", PrefixTooLong, 14, "too long for IPv4 (at most 32)"),
        ("net 2001:db8::/129", PrefixTooLong, 16, "too long for IPv6 (at most 128)"),
        (
            "net 10.1.2.3/8",
            HostBitsSet,
            5,
            "non-network bits set in `10.1.2.3/8` (the network would be 10.0.0.0/8)",
        ),
        ("net 2001:db8::1/32", HostBitsSet, 5, "2001:db8::/32"),
        ("net 10.0.0.1 mask 255.0.0.0", HostBitsSet, 5, "10.0.0.0 mask 255.0.0.0"),
        ("net 10.0.0.0 mask 255.0", BadAddress, 19, "complete IPv4 netmask"),
        ("net 2001:db8:: mask ffff::", BadAddress, 21, "complete IPv4 netmask"),
        ("net 10.0.0.0/", Syntax, 14, "prefix length after `/`"),
        ("port 65536", OutOfRange, 6, "port 65536 is out of range"),
        ("portrange 10-70000", OutOfRange, 14, "port 70000"),
        ("portrange 0x10-0x20", BadNumber, 11, "portrange bounds must be decimal"),
        ("vlan 4096", OutOfRange, 6, "VLAN id 4096 is above 4095"),
        ("ip proto 256", OutOfRange, 10, "above 255"),
        ("ip proto foo", UnknownKeyword, 10, "unknown protocol name `foo`"),
        ("greater x", Syntax, 9, "expected a length in bytes after `greater`"),
        ("(tcp", Unbalanced, 5, "expected `)` to close the `(` at column 1"),
        ("((tcp) or udp", Unbalanced, 14, "column 1"),
        ("tcp)", Unbalanced, 4, "`)` without a matching `(`"),
        ("tcp[13 = 2", Unbalanced, 8, "expected `]` to close the `[` at column 4"),
        ("(len + 1 > 2", Unbalanced, 13, "expected `)`"),
        ("tcp udp", TrailingInput, 5, "expected `and`, `or` or the end"),
        ("ip 10.0.0.1", TrailingInput, 4, "found `10.0.0.1`"),
        ("tcp src host 1.2.3.4", BadQualifier, 1, "`tcp src host` makes no sense"),
        ("tcp host 1.2.3.4", BadQualifier, 1, "write `tcp and host …`"),
        ("udp src 1.2.3.4", BadQualifier, 1, "`udp src` makes no sense"),
        ("ip port 80", BadQualifier, 1, "`port` can only be qualified by `tcp`, `udp` or `sctp`"),
        ("ip6 portrange 1-2", BadQualifier, 1, "`ip6 portrange`"),
        ("tcp proto 6", BadQualifier, 1, "`proto` can only be qualified by `ip` or `ip6`"),
        ("src proto 6", BadQualifier, 5, "a protocol has no direction"),
        ("ip host 2001:db8::1", BadQualifier, 9, "`ip` cannot qualify the IPv6 address"),
        ("arp host ::1", BadQualifier, 10, "`arp` cannot qualify the IPv6 address"),
        ("ip6 host 10.0.0.1", BadQualifier, 10, "`ip6` cannot qualify the IPv4 address"),
        ("ip6 net 10.0.0.0/8", BadQualifier, 9, "`ip6` cannot qualify"),
        ("host", Syntax, 5, "expected an IP address after `host`, found the end of the expression"),
        ("port and tcp", Syntax, 6, "expected a port number after `port`, found `and`"),
        ("src or dst", Syntax, 11, "after `src or dst`"),
        ("tcp and", Syntax, 8, "expected a filter primitive, found the end"),
        ("and tcp", Syntax, 1, "expected a filter primitive, found `and`"),
        ("()", Syntax, 2, "found `)`"),
        ("10.0.0.1", Syntax, 1, "needs a qualifier"),
        ("\\tcp", Syntax, 1, "only meaningful after `proto`"),
        ("len", Syntax, 4, "expected a comparison"),
        ("tcp[13] & 2", Syntax, 12, "expected a comparison"),
        ("len > ", Syntax, 7, "expected a number, `len` or a field"),
        ("len / 0 > 1", Arithmetic, 5, "division by zero"),
        ("len % (1 - 1) > 1", Arithmetic, 5, "modulus by zero"),
        ("len << 32 > 1", Arithmetic, 5, "shift by more than 31 bits"),
        ("len-14 > 0", UnknownKeyword, 1, "unknown keyword `len-14`"),
    ];
    for &(expr, kind, column, fragment) in cases {
        assert_err(expr, kind, column, fragment);
    }
}

#[test]
fn error_display_shows_the_expression_and_a_caret() {
    let e = err("udp dst port x");
    assert_eq!(
        e.to_string(),
        "column 14: expected a port number after `port`, found `x` (service names are not supported \
         by Outpost filters: write the number)\n  udp dst port x\n               ^"
    );
    // Columns count characters, not bytes; control characters do not shift the caret.
    let e = err("host\té");
    assert_eq!(e.column, 6);
    assert!(e.to_string().ends_with("\n  host é\n       ^"), "{e}");
    // An early end points one past the last character.
    let e = err("tcp and");
    assert!(e.to_string().ends_with("\n  tcp and\n         ^"), "{e}");
}

#[test]
fn nesting_and_size_are_bounded() {
    let deep = format!("{}tcp{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(err(&deep).kind, ErrorKind::TooComplex);
    let nots = format!("{}tcp", "not ".repeat(200));
    assert_eq!(err(&nots).kind, ErrorKind::TooComplex);
    let wide = vec!["port 1"; 5000].join(" or ");
    assert_eq!(err(&wide).kind, ErrorKind::TooComplex);
    let ok = vec!["port 1"; 4000].join(" or ");
    assert!(Filter::parse(&ok).unwrap().matches(&meta(&b("10.0.0.1", "10.0.0.2", udp(1, 9)))));
    let arith = format!("len = {}1{}", "(".repeat(40), ")".repeat(40));
    assert!(Filter::parse(&arith).is_ok());
}

// ---- protocols, addresses, ports -----------------------------------------------------------

#[test]
fn protocol_names_match_their_families() {
    let tcp4 = syn_80();
    let tcp6 = meta(&tcp_v6(80, SYN));
    let icmp4 = meta(&b("10.0.0.1", "10.0.0.2", icmp(8, 0, 1)));
    let icmp6 = meta(&b("2001:db8::1", "2001:db8::2", icmp(128, 0, 1)));
    let sctp =
        meta(&b("10.0.0.1", "10.0.0.2", Transport::Raw(132)).payload(&[0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]));
    let arp = arp("10.0.0.5", [10, 0, 0, 1], &[]);
    assert!(m("ip and tcp", &tcp4) && !m("ip6", &tcp4));
    assert!(m("ip6 and tcp", &tcp6) && !m("ip", &tcp6));
    assert!(m("icmp", &icmp4) && !m("icmp6", &icmp4));
    assert!(m("icmp6", &icmp6) && !m("icmp", &icmp6), "`icmp` is IPv4 only");
    assert!(m("sctp and port 2 and src port 1", &sctp));
    assert!(m("arp", &arp) && !m("ip or ip6 or tcp", &arp));
    assert!(m("ip proto 6 and proto 6 and not ip6 proto 6", &tcp4));
    assert!(m("ip6 proto 6 and proto \\tcp and ip6 proto tcp", &tcp6));
    let esp6 = meta(&b("2001:db8::1", "2001:db8::2", Transport::Raw(50)));
    assert!(m("esp", &esp6) && !m("ah or igmp or vrrp", &esp6));
    let igmp = meta(&b("10.0.0.1", "224.0.0.1", Transport::Raw(2)));
    assert!(m("igmp and ip proto \\igmp", &igmp));
}

#[test]
fn ipv4_host_and_net_also_match_arp_addresses() {
    let req = arp("10.0.0.5", [10, 0, 0, 1], &[]);
    assert!(m("host 10.0.0.5", &req));
    assert!(m("src host 10.0.0.5 and dst host 10.0.0.1", &req));
    assert!(!m("dst host 10.0.0.5", &req));
    assert!(m("arp host 10.0.0.1", &req));
    assert!(!m("ip host 10.0.0.1", &req), "`ip host` is IP only");
    assert!(m("net 10.0.0.0/24 and arp src net 10.0.0.4/30", &req));
    assert!(!m("ip net 10.0.0.0/8", &req));
    assert!(!m("arp host 10.0.0.1", &syn_80()), "`arp host` is ARP only");
    assert!(m("host 10.0.0.1 and ip host 10.0.0.1", &syn_80()));
}

#[test]
fn arp_operation_is_read_from_arp_frames_only() {
    let req = arp("10.0.0.5", [10, 0, 0, 1], &[]);
    let mut f = Vec::new();
    assert!(b("10.0.0.1", "10.0.0.5", udp(0, 0)).write_arp_to(&mut f, 2, [10, 0, 0, 5]));
    let reply = meta_of(&f);
    assert!(m("arp[6:2] = 1", &req) && !m("arp[6:2] = 1", &reply));
    assert!(m("arp[6:2] == 2 and src host 10.0.0.1", &reply));
    // Not ARP: the relation is false both ways, as in libpcap.
    assert!(!m("arp[6:2] = 1", &syn_80()) && !m("arp[6:2] != 1", &syn_80()));
    assert!(m("not arp[6:2] = 1", &syn_80()));
    let e = err("arp[7] = 1");
    assert!(e.to_string().contains("arp[6:2]"), "{e}");
}

#[test]
fn ipv6_addresses_and_mapped_addresses_stay_in_their_family() {
    let v6 = meta(&tcp_v6(80, SYN));
    assert!(m("host 2001:db8::1 and ip6 dst host 2001:db8::2", &v6));
    assert!(m("net 2001:db8::/32 and src net 2001:db8::/127 and not net 2001:db8:1::/48", &v6));
    assert!(m("net ::/0", &v6) && !m("net ::/0", &syn_80()));
    assert!(m("net 0.0.0.0/0", &syn_80()) && !m("net 0.0.0.0/0", &v6));
    // An IPv6 packet from ::ffff:10.0.0.1 is not IPv4 10.0.0.1, and the other way round.
    let mapped = meta(&b("::ffff:10.0.0.1", "2001:db8::2", udp(1, 2)));
    assert!(m("host ::ffff:10.0.0.1", &mapped));
    assert!(!m("host 10.0.0.1", &mapped));
    assert!(!m("host ::ffff:10.0.0.1", &syn_80()));
}

#[test]
fn net_forms_agree() {
    let p = syn_80(); // 10.0.0.1 -> 192.168.1.10
    for e in [
        "net 10",
        "net 10.0",
        "net 10.0.0",
        "net 10.0.0.1",
        "net 10.0/16",
        "net 10.0.0.0/8",
        "net 10.0.0.0 mask 255.0.0.0",
        "dst net 192.168.0.10 mask 255.255.0.255",
        "src net 10.0.0.1/32",
        "src and dst net 0.0.0.0/0",
        "dst or src net 192.168.1",
    ] {
        assert!(m(e, &p), "{e}");
    }
    for e in ["net 11", "net 10.1", "src net 192.168.0.0/16", "src and dst net 10.0.0.0/8", "net 10.0.0.2"] {
        assert!(!m(e, &p), "{e}");
    }
}

#[test]
fn ports_need_a_transport_header_and_not_a_later_fragment() {
    let tcp80 = syn_80();
    assert!(m("port 80 and dst port 80 and src port 40000 and tcp port 80 and not udp port 80", &tcp80));
    assert!(m("src and dst port 53", &meta(&b("10.0.0.1", "10.0.0.2", udp(53, 53)))));
    assert!(!m("src and dst port 53", &dns_v4()));
    assert!(m("portrange 79-81 and tcp dst portrange 81-79 and not src portrange 0-1023", &tcp80));
    assert!(!m("port 0", &meta(&b("10.0.0.1", "10.0.0.2", icmp(8, 0, 0)))), "ICMP has no ports");
    let frags = b("10.0.0.1", "10.0.0.2", udp(53, 5353)).payload(&[1; 64]).fragments(32);
    let (first, later) = (meta_of(&frags[0]), meta_of(&frags[1]));
    assert!(m("udp and port 53", &first));
    assert!(m("udp and not port 53 and not port 0", &later), "later fragments have no ports");
    assert!(!m("udp[0:2] = 53 or udp[0:2] != 53", &later));
    // IPv6 first fragments show their ports too.
    let frags6 = b("2001:db8::1", "2001:db8::2", udp(53, 5353)).payload(&[1; 64]).fragments(32);
    assert!(m("udp port 53 and ip6 proto 44", &meta_of(&frags6[0])));
    assert!(m("udp and not port 53", &meta_of(&frags6[1])));
}

#[test]
fn single_dst_port_filters_are_recognised_and_agree_with_the_program() {
    for (expr, port) in
        [("udp dst port 7001", Some(7001)), ("dst port 53", Some(53)), ("tcp dst port 22", Some(22))]
    {
        assert_eq!(Filter::parse(expr).unwrap().as_dst_port().map(|d| d.port), port, "{expr}");
    }
    for expr in [
        "udp port 7001",
        "udp src port 7001",
        "udp dst portrange 1-2",
        "udp dst port 1 and host 10.0.0.1",
        "not udp dst port 1",
        "udp",
    ] {
        assert_eq!(Filter::parse(expr).unwrap().as_dst_port(), None, "{expr}");
    }
    let frags = b("10.0.0.1", "10.0.0.2", udp(5353, 7001)).payload(&[1; 64]).fragments(32);
    let packets = [
        meta(&b("10.0.0.1", "10.0.0.2", udp(40000, 7001))),
        meta(&b("10.0.0.1", "10.0.0.2", udp(7001, 7002))),
        meta(&b("2001:db8::1", "2001:db8::2", udp(1, 7001))),
        meta(&b("10.0.0.1", "10.0.0.2", tcp(40000, 7001, SYN, 1, 0))),
        meta(&b("10.0.0.1", "10.0.0.2", icmp(8, 0, 0))),
        meta_of(&frags[0]),
        meta_of(&frags[1]),
        cut(&b("10.0.0.1", "10.0.0.2", udp(40000, 7001))),
        arp("10.0.0.1", [10, 0, 0, 2], &[]),
    ];
    for expr in ["udp dst port 7001", "tcp dst port 7001", "dst port 7001", "udp dst port 7002"] {
        let f = Filter::parse(expr).unwrap();
        let d = f.as_dst_port().unwrap();
        for p in &packets {
            match d.candidate(p) {
                Some(c) => assert_eq!(c && p.dst_port == d.port, f.matches(p), "{expr} on {p:?}"),
                None => assert_eq!(
                    p.transport,
                    MetaTransport::Truncated,
                    "{expr}: only a cut header is undecided"
                ),
            }
        }
    }
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let mut hbh = tcp_v6(443, SYN);
    hbh.ipv6_ext.push((ipv6_ext::HOP_BY_HOP, vec![]));
    hbh.ipv6_ext.push((ipv6_ext::DEST_OPTS, vec![]));
    let p = meta(&hbh);
    assert!(m("tcp and tcp dst port 443 and tcp[tcpflags] & tcp-syn != 0", &p));
    assert!(m("ip6 proto 0 and ip6 proto 6 and proto 6", &p), "first next header and upper layer");
    assert!(!m("ip6 proto 60", &p), "headers in the middle of the chain are not seen");
    let mut mld = b("fe80::1", "ff02::16", icmp(143, 0, 0));
    mld.ipv6_ext.push((ipv6_ext::HOP_BY_HOP, vec![5, 2, 0, 0]));
    assert!(m("icmp6 and icmp6[icmp6type] = icmp6-multicastlistenerreportv2", &meta(&mld)));
}

#[test]
fn vlan_tags_are_looked_through_and_tested_by_position() {
    let one = meta(&b("10.0.0.1", "10.0.0.2", udp(1, 53)).vlans(&[20]));
    let two = meta(&b("10.0.0.1", "10.0.0.2", udp(1, 53)).vlans(&[100, 200]));
    let none = meta(&b("10.0.0.1", "10.0.0.2", udp(1, 53)));
    for p in [&one, &two, &none] {
        assert!(m("ip and udp port 53 and host 10.0.0.1", p), "look through");
    }
    assert!(m("vlan 20 and not vlan", &one));
    assert!(!m("vlan and vlan 20", &one));
    assert!(!m("vlan 10 or vlan 20", &one), "the second `vlan` tests the inner tag");
    assert!(m("vlan 20 or vlan 10", &one));
    assert!(m("vlan 100 and vlan 200", &two) && !m("vlan 200 and vlan 100", &two));
    assert!(m("vlan and vlan", &two) && !m("vlan and vlan", &one));
    assert!(m("vlan and vlan 200", &two));
    assert!(!m("vlan 200", &two), "the first `vlan` is the outer tag");
    assert!(m("ip and vlan", &one), "unlike tcpdump, later tests are not shifted");
    assert!(m("not vlan and ip", &none) && !m("vlan", &none));
    assert!(!m("vlan and vlan and vlan", &two));
    assert!(m("vlan 0", &meta(&b("10.0.0.1", "10.0.0.2", udp(1, 53)).vlans(&[0]))));
    assert!(m("arp host 10.0.0.5 and vlan 7", &arp("10.0.0.5", [10, 0, 0, 1], &[7])));
}

#[test]
fn other_link_types_give_the_same_answers() {
    let builder = b("10.0.0.1", "192.168.1.10", tcp(40000, 80, SYN, 1, 0));
    for link in [Link::Ethernet, Link::Raw, Link::LinuxSll, Link::LinuxSll2] {
        let f = builder.clone().link(link).build();
        let p = decode(link.link_type(), &f, Nanos(0), f.len() as u32).unwrap();
        assert!(
            m("ip and tcp dst port 80 and host 10.0.0.1 and tcp[13] = tcp-syn and not vlan", &p),
            "{link:?}"
        );
    }
}

// ---- relations -----------------------------------------------------------------------------

#[test]
fn tcp_flag_tests() {
    let syn = syn_80();
    let synack = meta(&b("192.168.1.10", "10.0.0.1", tcp(80, 40000, SYN | ACK, 1, 2)));
    let rst = meta(&b("192.168.1.10", "10.0.0.1", tcp(80, 40000, 0x04, 1, 2)));
    let first_syn = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
    assert!(m(first_syn, &syn) && !m(first_syn, &synack));
    for e in
        ["tcp[tcpflags] & tcp-syn != 0", "tcp[13] & 2 != 0", "tcp[13:1] & 0x02 = 2", "(tcp[13] & 2) != 0"]
    {
        assert!(m(e, &syn) && m(e, &synack) && !m(e, &rst), "{e}");
    }
    assert!(m(
        "tcp[13] = 0x12 and tcp[13] > 16 and tcp[13] >= 0x12 and tcp[13] < 0x13 and tcp[13] <= 18",
        &synack
    ));
    assert!(m(
        "tcp[tcpflags] & tcp-rst != 0 and tcp[tcpflags] & (tcp-fin|tcp-push|tcp-urg|tcp-ece|tcp-cwr) = 0",
        &rst
    ));
    assert!(m(
        "tcp[0:2] = 40000 and tcp[2:2] = 80 and tcp[4:4] = 1 and tcp[8:4] = 0 and tcp[14:2] = 64240",
        &syn
    ));
    assert!(m("2 = tcp[13]", &syn), "constant on the left");
    assert!(m("tcp[13] + 1 = 3 and tcp[13] * 2 - 1 = 3 and tcp[13] << 4 = 0x20", &syn));
    // Relations on a field are false (both ways) for packets without it.
    let dns = dns_v4();
    assert!(!m("tcp[13] = 2", &dns) && !m("tcp[13] != 2", &dns) && !m("tcp[13] + 0 != 2", &dns));
    assert!(m("not tcp[13] != 2", &dns));
    // IPv6 TCP flags are read too (tcpdump's tcp[] is IPv4 only).
    assert!(m(first_syn, &meta(&tcp_v6(22, SYN))));
    assert!(m("udp[0:2] = 5353 and udp[2:2] = 53", &dns));
    assert!(m("udp[2:2] = 53", &meta(&b("2001:db8::1", "2001:db8::2", udp(9, 53)))));
}

#[test]
fn icmp_type_and_code_tests() {
    let echo = meta(&b("10.0.0.1", "10.0.0.2", icmp(8, 0, 1)));
    let unreach = meta(&b("10.0.0.2", "10.0.0.1", icmp(3, 3, 0)));
    assert!(m("icmp[icmptype] == icmp-echo and icmp[icmpcode] = 0 and icmp[0:2] = 0x0800", &echo));
    assert!(m("icmp[0] = icmp-unreach and icmp[1] = 3 and icmp[icmptype] != icmp-echoreply", &unreach));
    assert!(!m("icmp6[0] = 8 or icmp6[0] != 8", &echo), "icmp6 fields are IPv6 only");
    let ns = meta(&b("fe80::1", "ff02::1:ff00:2", icmp(135, 0, 0)));
    assert!(m(
        "icmp6[icmp6type] = icmp6-neighborsolicit and icmp6[icmp6code] = 0 and icmp6[0:2] = 0x8700",
        &ns
    ));
    assert!(!m("icmp[0] = 135", &ns));
}

#[test]
fn lengths_use_the_frame_length_on_the_wire() {
    let f = b("10.0.0.1", "10.0.0.2", udp(1, 2)).payload(&[0; 58]).build();
    assert_eq!(f.len(), 100);
    let p = decode(LinkType::Ethernet, &f[..60], Nanos(0), 100).unwrap();
    assert!(m("len = 100 and greater 100 and less 100 and not greater 101 and not less 99", &p));
    assert!(m("len - 14 = 86 and len / 3 = 33 and len & 0xf = 4 and len > 99", &p));
}

#[test]
fn arithmetic_follows_libpcaps_grammar() {
    let p = dns_v4();
    for e in [
        "1 + 2 * 3 = 7",
        "(1 + 2) * 3 = 9",
        "12 - 4 - 2 = 6",
        "1 << 2 + 1 = 8",
        "6 | 1 & 3 = 7",
        "0 - 1 = 0xffffffff",
        "-1 = 0xffffffff",
        "- 2 * 3 = 0 - 6",
        "1 = 1",
        "(1) = 1",
        "((len)) > 1",
        // `^` and `%` take everything to their right (no declared precedence in libpcap).
        "8 - 6 % 4 = 6",
        "2 * 3 % 4 = 6",
        "2 ^ 3 & 1 = 3",
        "1 | 2 ^ 3 = 1",
        "2 ^ 1 | 2 = 1",
        "7 % 4 - 1 = 1",
    ] {
        assert!(m(e, &p), "{e}");
    }
    assert!(!m("1 = 2", &p));
    assert_eq!(Filter::parse("1 + 1 = 2").unwrap().program[0].test, Test::Const(true));
}

#[test]
fn general_relations_evaluate_at_run_time() {
    let syn = syn_80(); // 54 bytes on the wire
    assert!(m("len - tcp[13] = 52", &syn));
    assert!(m("tcp[13] % 3 = 2 and tcp[13] ^ 3 = 1 and tcp[0:2] / 1000 = 40", &syn));
    assert!(m("len / (tcp[13] - 2) > 0 or udp", &dns_v4()), "not a TCP packet: false, then `udp`");
    // A division by a field that is zero rejects the packet, as libpcap's interpreter does.
    assert!(!m("len / (tcp[13] - 2) > 0 or tcp", &syn));
    assert!(m("1 << (tcp[13] + 30) = 0", &syn), "shifts by 32 or more give 0");
}

// ---- cut headers ----------------------------------------------------------------------------

#[test]
fn tests_on_a_cut_transport_header_are_unknown() {
    let c = cut(&b("10.0.0.1", "192.168.1.10", tcp(40000, 80, SYN, 1, 0)));
    assert_eq!((c.src_port, c.dst_port), (0, 0));
    for e in [
        "port 0",
        "port 80",
        "not port 80",
        "port 80 or port 443",
        "tcp[13] = 0",
        "not tcp[13] = 0",
        "src port 0",
    ] {
        assert!(!m(e, &c), "{e}");
    }
    for e in [
        "tcp",
        "tcp or port 80",
        "port 80 or tcp",
        "not port 80 or tcp",
        "port 80 or host 10.0.0.1",
        "host 10.0.0.1 or port 80",
        "not dst port 80 or 80",
        "tcp[13] & 2 != 0 or not tcp[13] & 2 != 0",
        "udp port 53 or not udp",
        "(port 80 and udp) or ip",
        "len > 1 or port 7",
    ] {
        assert!(m(e, &c), "{e}");
    }
    assert!(!m("port 80 or host 10.9.9.9", &c));
    let icmp_cut = cut(&b("10.0.0.1", "10.0.0.2", icmp(8, 0, 0)));
    assert!(!m("icmp[0] = 8", &icmp_cut) && !m("icmp[0] != 8", &icmp_cut) && m("icmp", &icmp_cut));
    // Many distinct unknown tests: the bounded fallback is stricter, never looser.
    let many = (1..=9).map(|p| format!("port {p}")).collect::<Vec<_>>().join(" or ");
    assert!(!m(&many, &c));
    assert!(m(&format!("{many} or tcp"), &c));
}

// ---- API -----------------------------------------------------------------------------------

#[test]
fn source_display_fromstr_and_serde() {
    let f: Filter = "tcp  port 80".parse().unwrap();
    assert_eq!(f.source(), "tcp  port 80");
    assert_eq!(f.to_string(), "tcp  port 80");
    assert_eq!(f, Filter::parse("tcp  port 80").unwrap());
    let json = serde_json::to_string(&f).unwrap();
    assert_eq!(json, "\"tcp  port 80\"");
    let back: Filter = serde_json::from_str(&json).unwrap();
    assert!(back.matches(&syn_80()));
    let bad = serde_json::from_str::<Filter>("\"udp dst port x\"").unwrap_err().to_string();
    assert!(bad.contains("column 14: expected a port number after `port`"), "{bad}");
    assert!(format!("{f:?}").contains("Port"));
    fn shareable<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    shareable::<Filter>();
    shareable::<FilterError>();
}

#[test]
fn program_entries_and_jumps_stay_in_bounds() {
    for e in
        ["tcp", "not (tcp or udp) and (port 1 or not port 2) or vlan", "a_b = 1", "len > 1 and not len > 2"]
    {
        let Ok(f) = Filter::parse(e) else { continue };
        let n = f.program.len();
        for (i, insn) in f.program.iter().enumerate() {
            for t in [insn.on_true, insn.on_false] {
                assert!(
                    t >= crate::program::REJECT || (usize::from(t) > i && usize::from(t) < n),
                    "{e}: {f:?}"
                );
            }
        }
    }
}

// ---- packet classes -------------------------------------------------------------------------

/// Expressions the class tables must agree with the programs on: every primitive kind, the
/// default ruleset's filters, negations and mixtures of decided and open tests.
const CLASS_CORPUS: &[&str] = &[
    "",
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "arp",
    "rarp",
    "sctp",
    "ip proto 47",
    "ip6 proto 6",
    "proto 17 or proto 50",
    "not tcp",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "tcp and (tcp[tcpflags] & 0x3f == 0 or tcp[tcpflags] & 0x3f == tcp-fin or tcp[tcpflags] & 0x3f == (tcp-fin|tcp-push|tcp-urg))",
    "(icmp[icmptype] == icmp-unreach and icmp[icmpcode] == 3) or (icmp6[icmp6type] == icmp6-destinationunreach and icmp6[icmp6code] == 4)",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn or udp dst portrange 1-32767",
    "icmp[icmptype] == icmp-echo or icmp6[icmp6type] == icmp6-echo",
    "(icmp and icmp[icmptype] != icmp-echoreply) or (icmp6 and icmp6[icmp6type] != icmp6-echoreply)",
    "(src net 0.0.0.0/8 and not udp dst port 67) or src net 240.0.0.0/4",
    "udp dst port 7001",
    "src net 10.0.0.0/8 or src net 2001:db8::/45",
    "tcp dst port 22",
    "port 53",
    "not port 53",
    "portrange 1-1024 and not tcp",
    "host 10.0.0.1 or tcp[13] & 2 != 0",
    "not (tcp[13] & 0x12 = 0x12) and tcp",
    "tcp[13] = 0 or udp",
    "tcp[13] & 2 != 0 and tcp[13] & 16 = 0 and dst port 80",
    "tcp[13] + 1 > 3",
    "tcp[13] * 2 = udp[2:2]",
    "len > 100 and tcp",
    "greater 60 or icmp",
    "vlan and tcp[tcpflags] & tcp-rst != 0",
    "ip6 and tcp[tcpflags] & tcp-fin != 0",
    "ip and not ip6 and tcp[14:2] > 1000",
    "icmp[0:2] = 0x0800 or icmp6",
    "icmp[icmptype] & 0xf0 == 0 or icmp6[icmp6type] > 127",
    "icmp[icmptype] != icmp-echo and icmp[icmptype] != icmp-echoreply",
    "icmp6[icmp6type] == icmp6-neighborsolicit and not src host ::",
    "len / (tcp[13] - 2) > 0 or tcp",
    "udp[2:2] % (tcp[13]) = 0 or ip6",
    "not (udp or tcp or icmp or icmp6)",
];

/// Packets of every plain class shape (and some that are not plain).
fn class_packets() -> Vec<PacketMeta> {
    let mut out = Vec::new();
    for (src, dst) in [("10.0.0.1", "192.168.1.10"), ("0.1.2.3", "10.0.0.1"), ("2001:db8::1", "2001:db8::2")]
    {
        for flags in 0..=255u16 {
            out.push(meta(&b(src, dst, tcp(40000, 80 + flags, flags, 1, 0))));
        }
        for (sp, dp) in [(5353, 53), (68, 67), (40000, 7001), (1, 40000)] {
            out.push(meta(&b(src, dst, udp(sp, dp))));
        }
        for (ty, code) in
            [(0, 0), (3, 3), (3, 1), (8, 0), (1, 4), (128, 0), (129, 0), (135, 0), (136, 0), (255, 9)]
        {
            out.push(meta(&b(src, dst, icmp(ty, code, 7))));
        }
        for p in [47, 50, 132, 1, 58] {
            out.push(meta(&b(src, dst, Transport::Raw(p)).payload(&[0; 16])));
        }
        out.push(meta(&b(src, dst, tcp(1, 2, SYN, 0, 0)).vlans(&[7, 8])));
        out.push(cut(&b(src, dst, tcp(1, 2, SYN, 0, 0))));
    }
    out.push(arp("10.0.0.1", [10, 0, 0, 2], &[]));
    let mut hbh = b("2001:db8::1", "2001:db8::2", tcp(1, 22, SYN, 0, 0));
    hbh.ipv6_ext.push((ipv6_ext::HOP_BY_HOP, vec![]));
    out.push(meta(&hbh));
    for f in b("10.0.0.1", "10.0.0.2", udp(1, 53)).payload(&[0; 64]).fragments(24) {
        out.push(meta_of(&f));
    }
    out
}

#[test]
fn class_tables_agree_with_the_programs_on_every_packet() {
    let packets = class_packets();
    let classes: Vec<_> = packets.iter().map(PacketClass::of).collect();
    assert!(classes.contains(&PacketClass::GENERAL), "some packets take the general path");
    assert!(classes.iter().filter(|c| **c != PacketClass::GENERAL).count() > 700);
    for e in CLASS_CORPUS {
        let f = Filter::parse(e).unwrap_or_else(|err| panic!("{err}"));
        for (p, c) in packets.iter().zip(&classes) {
            assert_eq!(f.matches_class(*c, p), f.matches_class(PacketClass::GENERAL, p), "`{e}` on {p:?}");
            assert_eq!(f.matches(p), f.matches_class(PacketClass::GENERAL, p), "`{e}` on {p:?}");
        }
    }
}

#[test]
fn classes_decide_protocol_and_tcp_flag_tests_without_the_program() {
    let all = crate::class::CLASSES;
    let decided = |e: &str| Filter::parse(e).unwrap().classes.decided();
    for e in [
        "",
        "tcp",
        "udp",
        "ip6",
        "icmp or icmp6",
        "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
        "not tcp[13] = 2",
    ] {
        assert_eq!(decided(e), all, "`{e}` is decided for every plain class");
    }
    // Open only where the class cannot say: UDP for the port, ICMP for the code.
    assert_eq!(decided("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn or udp dst portrange 1-32767"), all - 2);
    // The ICMP and ICMPv6 type is the class's: type tests never run the program.
    assert_eq!(decided("icmp[icmptype] == icmp-echo or icmp6[icmp6type] == icmp6-echo"), all);
    assert_eq!(decided("icmp and icmp[icmptype] != icmp-echoreply"), all);
    assert_eq!(
        decided("icmp[icmptype] == icmp-unreach and icmp[icmpcode] == 3"),
        all - 1,
        "type 3 leaves the code"
    );
    assert_eq!(decided("icmp6[icmp6type] == icmp6-neighborsolicit and not src host ::"), all - 1);
    // Addresses are decided only by their family.
    assert_eq!(decided("src net 10.0.0.0/8"), all / 2);
    assert_eq!(decided("src net 10.0.0.0/8 or host 2001:db8::1"), 0);
    // A division by a field may reject the packet outright: never decided as a match.
    assert_eq!(decided("len / (tcp[13] - 2) > 0 or tcp"), all - 512, "only the classes without TCP");
    // An ACK never runs the SYN filter's program; a SYN of either family matches outright.
    let syn = Filter::parse("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn").unwrap();
    assert_eq!(syn.classes.verdict(PacketClass::of(&syn_80())), crate::class::Verdict::Yes);
    let ack = meta(&tcp_v6(80, ACK));
    assert_eq!(syn.classes.verdict(PacketClass::of(&ack)), crate::class::Verdict::No);
}

// ---- address pre-tests ----------------------------------------------------------------------

/// Expressions with address tests of every direction, family and prefix length, beside the
/// class corpus (which holds the default ruleset's).
const ADDR_CORPUS: &[&str] = &[
    "src net 0.0.0.0/8",
    "dst net 192.168.0.0/16 and tcp",
    "net 10.0.0.0/8",
    "src and dst net 10.0.0.0/8",
    "src or dst net 240.0.0.0/4",
    "not src net 10.0.0.0/8",
    "host 0.1.2.3",
    "src net 10.0.0.0/7 or udp",
    "dst net 0.0.0.0/0",
    "src net ::/0",
    "src net 2001:db8::/32 and not dst host 2001:db8::2",
    "src net 8000::/1",
    "ip6 and src net 2000::/3",
    "src net 10.0.0.0/8 and (udp or dst net 192.168.1.0/24)",
    "not (src net 10.0.0.0/8 or dst net 192.168.0.0/16)",
    "arp and src host 10.0.0.1",
];

/// The program alone, without the class table and the pre-tests.
fn program_only(f: &Filter, p: &PacketMeta) -> bool {
    crate::program::run_program(&f.program, &f.arith, p)
}

#[test]
fn address_pretests_agree_with_the_programs_on_every_packet() {
    let mut packets = class_packets();
    for (src, dst) in [("0.0.0.0", "10.1.2.3"), ("240.0.0.1", "192.168.1.9"), ("11.0.0.1", "10.0.0.1")] {
        packets.push(meta(&b(src, dst, udp(68, 67))));
        packets.push(meta(&b(src, dst, tcp(1, 2, SYN, 0, 0))));
    }
    for e in CLASS_CORPUS.iter().chain(ADDR_CORPUS) {
        let f = Filter::parse(e).unwrap_or_else(|err| panic!("{err}"));
        for p in &packets {
            assert_eq!(f.matches(p), program_only(&f, p), "`{e}` on {p:?}");
        }
    }
}

#[test]
fn first_octets_turn_away_packets_address_filters_cannot_match() {
    let spoofed =
        Filter::parse("(src net 0.0.0.0/8 and not udp dst port 67) or src net 240.0.0.0/4").unwrap();
    let admits = |f: &Filter, src: &str, dst: &str| f.addrs.admits(&meta(&b(src, dst, udp(1, 53))));
    assert!(!admits(&spoofed, "10.0.0.1", "192.168.1.1"), "an ordinary source never runs the program");
    assert!(!admits(&spoofed, "2001:db8::1", "2001:db8::2"), "nor does IPv6");
    assert!(admits(&spoofed, "0.1.2.3", "10.0.0.1") && admits(&spoofed, "250.0.0.1", "10.0.0.1"));
    // 17 first octets of IPv4 sources may match (0 and 240..=255), any of the destination;
    // no IPv6 packet can match.
    assert_eq!(spoofed.addrs.ruled_out(), 239 + 2 * 256);
    let dst = Filter::parse("dst net 192.168.0.0/16 and tcp").unwrap();
    assert!(!admits(&dst, "192.168.1.1", "10.0.0.1") && admits(&dst, "10.0.0.1", "192.168.1.1"));
    // Prefixes longer than the octet leave it open; /0 and the address families' other
    // tests constrain nothing.
    let long = Filter::parse("src net 10.1.0.0/16").unwrap();
    assert!(admits(&long, "10.2.0.1", "10.0.0.1"), "the second octet is the program's to check");
    // An IPv4 packet whose address is not IPv4-mapped (never from the decoder, but a
    // `PacketMeta` is public) is left to the program.
    let mut odd = meta(&b("10.0.0.1", "10.0.0.2", udp(1, 53)));
    odd.dst = ip("2001:db8::a00:1").into();
    let not10 = Filter::parse("not dst net 10.0.0.0/8").unwrap();
    assert!(not10.matches(&odd) && program_only(&not10, &odd));
    for e in ["", "tcp", "dst net 0.0.0.0/0 or ip6", "port 53", "src net 10.0.0.0/8 or udp"] {
        assert_eq!(Filter::parse(e).unwrap().addrs, crate::addrs::AddrTable::ALL, "`{e}`");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// For random plain packets and the corpus, the class path gives the program's answer.
    #[test]
    fn class_path_equals_the_program_on_random_packets(
        v6 in any::<bool>(), kind in 0..4u8, flags in any::<u16>(), sp in any::<u16>(), dp in any::<u16>(),
        ty in any::<u8>(), code in any::<u8>(), a in any::<u32>(), c in any::<u32>(), len in 0..200usize,
    ) {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (std::net::Ipv6Addr::from(u128::from(a) << 96 | 1).into(), std::net::Ipv6Addr::from(u128::from(c)).into())
        } else {
            (std::net::Ipv4Addr::from(a).into(), std::net::Ipv4Addr::from(c).into())
        };
        let t = match kind {
            0 => tcp(sp, dp, flags & 0xff, a, c),
            1 => udp(sp, dp),
            2 => icmp(ty, code, a),
            _ => Transport::Raw(ty),
        };
        let frame = FrameBuilder::new(src, dst, t).payload(&vec![0; len]).build();
        let Ok(p) = decode(LinkType::Ethernet, &frame, Nanos(0), frame.len() as u32) else {
            return Ok(()); // e.g. a raw IPv6 "protocol" that is an extension header
        };
        let class = PacketClass::of(&p);
        for e in CLASS_CORPUS {
            let f = Filter::parse(e).unwrap();
            prop_assert_eq!(f.matches_class(class, &p), f.matches_class(PacketClass::GENERAL, &p), "{}", e);
        }
        for e in CLASS_CORPUS.iter().chain(ADDR_CORPUS) {
            let f = Filter::parse(e).unwrap();
            prop_assert_eq!(f.matches_class(class, &p), program_only(&f, &p), "{}", e);
        }
    }

    /// Arbitrary text never panics the compiler; any compiled filter evaluates without
    /// panicking, and a reported column lies within the text (or one past it).
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
        match Filter::parse(&s) {
            Ok(f) => {
                let _ = f.matches(&syn_80());
                let _ = f.matches(&PacketMeta::default());
            }
            Err(e) => prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{e}"),
        }
    }

    /// Sequences of real tokens reach deep into the parser.
    #[test]
    fn token_soup_never_panics(words in proptest::collection::vec(prop_oneof![
        Just("tcp"), Just("udp"), Just("ip6"), Just("host"), Just("net"), Just("port"), Just("portrange"),
        Just("src"), Just("dst"), Just("and"), Just("or"), Just("not"), Just("("), Just(")"), Just("vlan"),
        Just("10.0.0.1"), Just("10.0.0.0/8"), Just("::1"), Just("80"), Just("1-2"), Just("proto"), Just("\\tcp"),
        Just("tcp[13]"), Just("&"), Just("|"), Just("="), Just("!="), Just("len"), Just("-"), Just("^"),
        Just("%"), Just("icmp[0:2]"), Just("mask"), Just("255.0.0.0"), Just("greater"), Just("0x10"),
    ], 0..12)) {
        let s = words.join(" ");
        if let Ok(f) = Filter::parse(&s) {
            for p in [syn_80(), dns_v4(), cut(&b("10.0.0.1", "10.0.0.2", tcp(1, 2, 0, 0, 0))), PacketMeta::default()] {
                let _ = f.matches(&p);
            }
        }
    }

    /// `not E` is the complement of `E` on complete packets.
    #[test]
    fn negation_complements(words in proptest::collection::vec(prop_oneof![
        Just("tcp"), Just("udp"), Just("port 53"), Just("host 10.0.0.2"), Just("vlan"), Just("len > 60"),
        Just("tcp[13] & 2 != 0"), Just("ip6"), Just("net 8.0.0.0/8"),
    ], 1..5), ors in proptest::collection::vec(any::<bool>(), 4)) {
        let mut e = words[0].to_string();
        for (w, or) in words[1..].iter().zip(&ors) {
            e = format!("{e} {} {w}", if *or { "or" } else { "and" });
        }
        let f = Filter::parse(&e).unwrap();
        let n = Filter::parse(&format!("not ({e})")).unwrap();
        for p in [syn_80(), dns_v4(), meta(&tcp_v6(53, SYN)), meta(&b("10.0.0.2", "8.8.8.8", udp(1, 53)).vlans(&[5]))] {
            prop_assert_ne!(f.matches(&p), n.matches(&p), "{}", e);
        }
    }
}

/// Single-port tests joined by `or` are folded into one test: the folded program answers as
/// the unfolded one on packets of every transport, on ports in and out of the lists, and on
/// packets whose transport header was cut (whose port tests are unknown) — also where a
/// port repeats, directions mix, a range or `src and dst` stands in the chain, or the list
/// outgrows one folded test.
#[test]
fn folded_port_lists_answer_as_the_chains_they_replace() {
    let many: Vec<String> = (1..=20).map(|p| p.to_string()).collect();
    let exprs = [
        "tcp dst port 21 or 23 or 110 or 143 or 587 or 993 or 995 or 1433 or 3306 or 5432 or 445 or 5900"
            .to_string(),
        "port 22 or 80 or 443".to_string(),
        "not (udp dst port 53 or 67 or 68)".to_string(),
        "tcp and (src port 1 or 2 or 3) and dst port 4".to_string(),
        "(dst port 1 or 2) and (dst port 1 or 3)".to_string(),
        "dst port 1 or src port 1 or dst port 2 or dst port 3".to_string(),
        "src and dst port 5 or dst port 6 or dst port 7".to_string(),
        "portrange 1-10 or port 20 or 30".to_string(),
        "(tcp dst port 1 or 2) or (udp dst port 1 or 2)".to_string(),
        "host 10.0.0.1 or dst port 1 or 2 or 3".to_string(),
        "not dst port 4 or 5 and src port 6".to_string(),
        format!("dst port {}", many.join(" or ")),
    ];
    let pool = [1u16, 2, 3, 4, 5, 6, 7, 10, 11, 20, 21, 22, 23, 30, 53, 67, 68, 80, 443, 445, 5900, 9];
    let mut rng = outpost_tools::splitmix::SplitMix64(0x2545_f491_4f6c_dd1d);
    let mut next = |n: usize| rng.below_usize(n);
    let mut packets = Vec::new();
    for _ in 0..3_000 {
        let (sp, dp) = (pool[next(pool.len())], pool[next(pool.len())]);
        let src = if next(4) == 0 { "10.0.0.1" } else { "10.0.0.2" };
        let builder = match next(3) {
            0 => b(src, "10.9.9.9", tcp(sp, dp, SYN, 1, 0)),
            1 => b(src, "10.9.9.9", udp(sp, dp)),
            _ => b(src, "10.9.9.9", icmp(8, 0, 0)),
        };
        packets.push(meta(&builder));
        packets.push(cut(&builder));
    }
    for expr in &exprs {
        let parsed = crate::parser::parse(expr).unwrap_or_else(|e| panic!("{e}"));
        let ast = parsed.ast.as_ref().expect("an expression");
        let folded = crate::program::compile(ast).expect("compiles");
        let unfolded = crate::program::compile_unfolded(ast).expect("compiles");
        for p in &packets {
            assert_eq!(
                crate::program::run_program(&folded, &parsed.arith, p),
                crate::program::run_program(&unfolded, &parsed.arith, p),
                "`{expr}` on {p:?}"
            );
        }
    }
    let login = Filter::parse(&exprs[0]).unwrap();
    assert_eq!(login.instructions(), 1, "one folded list of twelve TCP ports");
    let twenty = Filter::parse(&exprs[11]).unwrap();
    assert_eq!(twenty.instructions(), 2, "sixteen ports, then four");
    assert_eq!(Filter::parse(&exprs[4]).unwrap().instructions(), 4, "a repeated port is not folded");
}
