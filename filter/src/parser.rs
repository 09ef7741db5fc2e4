//! Recursive-descent parser for the pcap-filter subset, producing an [`Ast`] of pre-resolved
//! [`Test`]s (recursion happens here, once, never per packet).
//!
//! The grammar mirrors libpcap's `grammar.y`:
//!
//! ```text
//! expr   := term (('and' | '&&' | 'or' | '||') (term | id))*     -- equal precedence, left to right
//! term   := ('not' | '!') term | '(' expr ')' | relation | primitive
//! primitive := head id | pname | 'vlan' [num] | 'greater' num | 'less' num
//! head   := [pname] [dqual] [aqual] | [pname] 'proto'             -- at least one of dqual/aqual
//! id     := ('not' | '!') id | '(' id (('and' | 'or') id)* ')' | value
//! relation := arith relop arith
//! ```
//!
//! An `id` after `and`/`or` repeats the qualifiers of the previous primitive (`port 80 or 443`).
//! As in libpcap, a parenthesised term passes on the qualifiers in force before it, and
//! protocol abbreviations, relations and `vlan`/`greater`/`less` leave none to repeat.

use std::net::Ipv6Addr;

use crate::error::{ErrorKind, FilterError};
use crate::lexer::{Tok, Token, lex};
use crate::program::{
    ARITH_STACK, ArithOp, ArithRef, Ast, BinOp, CmpOp, Dir, Field, MAX_INSNS, Test, net, ports,
};

/// Deepest nesting of parentheses / negations / arithmetic accepted.
const MAX_DEPTH: usize = 64;

/// The result of parsing: the boolean tree (none for an empty expression, which matches
/// everything) and the arithmetic array general relations point into.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) ast: Option<Ast>,
    pub(crate) arith: Vec<ArithOp>,
}

/// Parses `src`.
pub(crate) fn parse(src: &str) -> Result<Parsed, FilterError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, pos: 0, vlans: 0, depth: 0, leaves: 0, arith: Vec::new() };
    if p.peek() == Tok::End {
        return Ok(Parsed { ast: None, arith: Vec::new() });
    }
    let (ast, _) = p.parse_expr(None)?;
    let Token { tok, col } = p.cur();
    match tok {
        Tok::End => Ok(Parsed { ast: Some(ast), arith: p.arith }),
        Tok::RParen => Err(p.err(col, ErrorKind::Unbalanced, "`)` without a matching `(`".to_string())),
        t => Err(p.err(
            col,
            ErrorKind::TrailingInput,
            format!("expected `and`, `or` or the end of the expression, found {}", t.describe()),
        )),
    }
}

/// Protocol qualifier (`pname` in libpcap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PQual {
    Default,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
}

impl PQual {
    fn from_word(w: &str) -> Option<PQual> {
        Some(match w {
            "ip" => PQual::Ip,
            "ip6" => PQual::Ip6,
            "arp" => PQual::Arp,
            "rarp" => PQual::Rarp,
            "tcp" => PQual::Tcp,
            "udp" => PQual::Udp,
            "sctp" => PQual::Sctp,
            "icmp" => PQual::Icmp,
            "icmp6" => PQual::Icmp6,
            "igmp" => PQual::Igmp,
            "igrp" => PQual::Igrp,
            "pim" => PQual::Pim,
            "vrrp" => PQual::Vrrp,
            "carp" => PQual::Carp,
            "ah" => PQual::Ah,
            "esp" => PQual::Esp,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            PQual::Default => "",
            PQual::Ip => "ip",
            PQual::Ip6 => "ip6",
            PQual::Arp => "arp",
            PQual::Rarp => "rarp",
            PQual::Tcp => "tcp",
            PQual::Udp => "udp",
            PQual::Sctp => "sctp",
            PQual::Icmp => "icmp",
            PQual::Icmp6 => "icmp6",
            PQual::Igmp => "igmp",
            PQual::Igrp => "igrp",
            PQual::Pim => "pim",
            PQual::Vrrp => "vrrp",
            PQual::Carp => "carp",
            PQual::Ah => "ah",
            PQual::Esp => "esp",
        }
    }

    /// The test of the protocol name used alone (`tcp`, `ip6`, `icmp`, …), with libpcap's
    /// families: `icmp`, `igmp`, `igrp`, `vrrp` and `carp` are IPv4 only.
    fn abbreviation(self) -> Test {
        let proto = |nets, proto| Test::Proto { nets, proto };
        match self {
            PQual::Default | PQual::Ip => Test::Network(net::IPV4),
            PQual::Ip6 => Test::Network(net::IPV6),
            PQual::Arp => Test::Network(net::ARP),
            PQual::Rarp => Test::EtherType(0x8035),
            PQual::Tcp => proto(net::IP, 6),
            PQual::Udp => proto(net::IP, 17),
            PQual::Sctp => proto(net::IP, 132),
            PQual::Icmp => proto(net::IPV4, 1),
            PQual::Icmp6 => proto(net::IPV6, 58),
            PQual::Igmp => proto(net::IPV4, 2),
            PQual::Igrp => proto(net::IPV4, 9),
            PQual::Pim => proto(net::IP, 103),
            PQual::Vrrp | PQual::Carp => proto(net::IPV4, 112),
            PQual::Ah => proto(net::IP, 51),
            PQual::Esp => proto(net::IP, 50),
        }
    }
}

/// Direction qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DQual {
    Default,
    Src,
    Dst,
    Either,
    Both,
}

impl DQual {
    fn dir(self) -> Dir {
        match self {
            DQual::Src => Dir::Src,
            DQual::Dst => Dir::Dst,
            DQual::Default | DQual::Either => Dir::Either,
            DQual::Both => Dir::Both,
        }
    }

    fn name(self) -> &'static str {
        match self {
            DQual::Default => "",
            DQual::Src => "src",
            DQual::Dst => "dst",
            DQual::Either => "src or dst",
            DQual::Both => "src and dst",
        }
    }
}

/// Address-kind qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AQual {
    /// Only a direction was given (`src 10.0.0.1`): a host.
    Default,
    Host,
    Net,
    Port,
    PortRange,
    Proto,
}

/// The qualifiers of a primitive, repeated by abbreviations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Quals {
    proto: PQual,
    dir: DQual,
    addr: AQual,
}

impl Quals {
    /// The keyword a value follows, for messages.
    fn keyword(&self) -> &'static str {
        match self.addr {
            AQual::Default => self.dir.name(),
            AQual::Host => "host",
            AQual::Net => "net",
            AQual::Port => "port",
            AQual::PortRange => "portrange",
            AQual::Proto => "proto",
        }
    }

    /// What value is expected, for messages.
    fn expects(&self) -> &'static str {
        match self.addr {
            AQual::Default | AQual::Host => "an IP address",
            AQual::Net => "a network (such as 10.0.0.0/8 or 2001:db8::/32)",
            AQual::Port => "a port number",
            AQual::PortRange => "a port range (such as 1000-2000)",
            AQual::Proto => "a protocol number or name",
        }
    }
}

/// Words with a meaning of their own; they never stand for a value.
fn is_keyword(w: &str) -> bool {
    PQual::from_word(w).is_some()
        || matches!(
            w,
            "and"
                | "or"
                | "not"
                | "src"
                | "dst"
                | "host"
                | "net"
                | "mask"
                | "port"
                | "portrange"
                | "proto"
                | "vlan"
                | "greater"
                | "less"
                | "len"
        )
        || named_constant(w).is_some()
        || unsupported(w).is_some()
}

/// Why a libpcap keyword is not available in Outpost filters.
fn unsupported(w: &str) -> Option<String> {
    let generic = || Some(format!("`{w}` is not supported by Outpost filters"));
    match w {
        "ether" | "link" | "ppp" | "slip" | "fddi" | "tr" | "wlan" => Some(format!(
            "`{w}` (link-layer) primitives are not supported by Outpost filters: they match decoded \
             packets, which carry no MAC addresses"
        )),
        "gateway" => Some(
            "`gateway` is not supported by Outpost filters (it needs MAC addresses and host-name lookups)"
                .to_string(),
        ),
        "broadcast" | "multicast" => Some(format!(
            "`{w}` is not supported by Outpost filters; test the destination with `dst net` instead \
             (for example `dst net 224.0.0.0/4` or `dst net ff00::/8`)"
        )),
        "protochain" => Some(
            "`protochain` is not supported by Outpost filters; `ip6 proto N` already sees the \
             upper-layer protocol after IPv6 extension headers"
                .to_string(),
        ),
        "mpls" | "pppoed" | "pppoes" | "geneve" | "llc" | "stp" | "ipx" | "netbeui" | "decnet" | "atalk"
        | "aarp" | "lat" | "sca" | "moprc" | "mopdl" | "iso" | "esis" | "isis" | "clnp" | "l1" | "l2"
        | "iih" | "lsp" | "snp" | "csnp" | "psnp" | "radio" | "inbound" | "outbound" | "ifname" | "on"
        | "rnr" | "rulenum" | "reason" | "rset" | "ruleset" | "srnr" | "subrulenum" | "action" | "type"
        | "subtype" | "dir" | "addr1" | "addr2" | "addr3" | "addr4" | "ra" | "ta" | "byte" | "lane"
        | "metac" | "bcc" | "sc" | "ilmic" | "oamf4ec" | "oamf4sc" | "oam" | "oamf4" | "connectmsg"
        | "metaconnect" | "vpi" | "vci" | "fisu" | "lssu" | "msu" | "hfisu" | "hlssu" | "hmsu" | "sio"
        | "opc" | "dpc" | "sls" | "hsio" | "hopc" | "hdpc" | "hsls" => generic(),
        _ => None,
    }
}

/// libpcap's named constants (scanner.l): field offsets and header values.
fn named_constant(w: &str) -> Option<u32> {
    Some(match w {
        "tcpflags" => 13,
        "icmptype" | "icmp6type" => 0,
        "icmpcode" | "icmp6code" => 1,
        "tcp-fin" => 0x01,
        "tcp-syn" => 0x02,
        "tcp-rst" => 0x04,
        "tcp-push" => 0x08,
        "tcp-ack" => 0x10,
        "tcp-urg" => 0x20,
        "tcp-ece" => 0x40,
        "tcp-cwr" => 0x80,
        "icmp-echoreply" => 0,
        "icmp-unreach" => 3,
        "icmp-sourcequench" => 4,
        "icmp-redirect" => 5,
        "icmp-echo" => 8,
        "icmp-routeradvert" => 9,
        "icmp-routersolicit" => 10,
        "icmp-timxceed" => 11,
        "icmp-paramprob" => 12,
        "icmp-tstamp" => 13,
        "icmp-tstampreply" => 14,
        "icmp-ireq" => 15,
        "icmp-ireqreply" => 16,
        "icmp-maskreq" => 17,
        "icmp-maskreply" => 18,
        "icmp6-destinationunreach" => 1,
        "icmp6-packettoobig" => 2,
        "icmp6-timeexceeded" => 3,
        "icmp6-parameterproblem" => 4,
        "icmp6-echo" => 128,
        "icmp6-echoreply" => 129,
        "icmp6-multicastlistenerquery" => 130,
        "icmp6-multicastlistenerreportv1" => 131,
        "icmp6-multicastlistenerdone" => 132,
        "icmp6-routersolicit" => 133,
        "icmp6-routeradvert" => 134,
        "icmp6-neighborsolicit" => 135,
        "icmp6-neighboradvert" => 136,
        "icmp6-redirect" => 137,
        "icmp6-routerrenum" => 138,
        "icmp6-nodeinformationquery" => 139,
        "icmp6-nodeinformationresponse" => 140,
        "icmp6-ineighbordiscoverysolicit" => 141,
        "icmp6-ineighbordiscoveryadvert" => 142,
        "icmp6-multicastlistenerreportv2" => 143,
        "icmp6-homeagentdiscoveryrequest" => 144,
        "icmp6-homeagentdiscoveryreply" => 145,
        "icmp6-mobileprefixsolicit" => 146,
        "icmp6-mobileprefixadvert" => 147,
        "icmp6-certpathsolicit" => 148,
        "icmp6-certpathadvert" => 149,
        "icmp6-multicastrouteradvert" => 151,
        "icmp6-multicastroutersolicit" => 152,
        "icmp6-multicastrouterterm" => 153,
        _ => return None,
    })
}

/// Protocol names accepted after `proto` (with or without a backslash).
fn protocol_number(w: &str) -> Option<u8> {
    Some(match w {
        "icmp" => 1,
        "igmp" => 2,
        "tcp" => 6,
        "igrp" => 9,
        "udp" => 17,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "icmp6" | "ipv6-icmp" => 58,
        "ospf" => 89,
        "pim" => 103,
        "vrrp" | "carp" => 112,
        "l2tp" => 115,
        "sctp" => 132,
        _ => return None,
    })
}

/// Decimal digits only, or `0x` followed by hex digits.
fn is_plain_number(w: &str) -> bool {
    match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(hex) => !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// Tokens that continue an arithmetic expression or start a comparison.
fn is_arith_or_relop(t: Tok<'_>) -> bool {
    matches!(
        t,
        Tok::Plus
            | Tok::Minus
            | Tok::Star
            | Tok::Slash
            | Tok::Percent
            | Tok::Amp
            | Tok::Pipe
            | Tok::Caret
            | Tok::Shl
            | Tok::Shr
            | Tok::Eq
            | Tok::Ne
            | Tok::Lt
            | Tok::Le
            | Tok::Gt
            | Tok::Ge
    )
}

fn relop(t: Tok<'_>) -> Option<CmpOp> {
    Some(match t {
        Tok::Eq => CmpOp::Eq,
        Tok::Ne => CmpOp::Ne,
        Tok::Lt => CmpOp::Lt,
        Tok::Le => CmpOp::Le,
        Tok::Gt => CmpOp::Gt,
        Tok::Ge => CmpOp::Ge,
        _ => return None,
    })
}

/// An arithmetic expression before folding and flattening.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Arith {
    Num(u32),
    Field(Field),
    Neg(Box<Arith>),
    /// Operator, operands, and the operator's column (for compile-time errors).
    Bin(BinOp, Box<Arith>, Box<Arith>, usize),
}

impl Arith {
    /// Stack slots needed to evaluate in postfix order.
    fn stack_need(&self) -> usize {
        match self {
            Arith::Num(_) | Arith::Field(_) => 1,
            Arith::Neg(a) => a.stack_need(),
            Arith::Bin(_, a, b, _) => a.stack_need().max(b.stack_need() + 1),
        }
    }

    fn flatten(&self, out: &mut Vec<ArithOp>) {
        match self {
            Arith::Num(n) => out.push(ArithOp::Const(*n)),
            Arith::Field(f) => out.push(ArithOp::Load(*f)),
            Arith::Neg(a) => {
                a.flatten(out);
                out.push(ArithOp::Neg);
            }
            Arith::Bin(op, a, b, _) => {
                a.flatten(out);
                b.flatten(out);
                out.push(ArithOp::Bin(*op));
            }
        }
    }

    /// `field & mask` (or a bare field) — the shape [`Test::Cmp`] handles.
    fn as_masked_field(&self) -> Option<(Field, u32)> {
        match self {
            Arith::Field(f) => Some((*f, u32::MAX)),
            Arith::Bin(BinOp::And, a, b, _) => match (&**a, &**b) {
                (Arith::Field(f), Arith::Num(m)) | (Arith::Num(m), Arith::Field(f)) => Some((*f, *m)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// An address as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrLit {
    /// IPv4, possibly abbreviated (`10`, `10.1`, `10.1.2`): `bits` left-aligned, `octets` given.
    V4 {
        bits: u32,
        octets: u8,
    },
    V6(u128),
}

/// IPv4-mapped IPv6 prefix `::ffff:0:0/96` as stored in `IpAddress`.
pub(crate) const V4_MAPPED: u128 = 0xffff << 32;
/// Mask of the IPv4-mapped prefix bits.
pub(crate) const V4_PREFIX_MASK: u128 = !0u128 << 32;

fn v4_mask(len: u32) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len.min(32)) }
}

fn v6_mask(len: u32) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - len.min(128)) }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token<'a>>,
    pos: usize,
    /// `vlan` primitives seen so far: the next one tests tag number `vlans + 1`.
    vlans: u8,
    depth: usize,
    /// Primitives created so far (bounded by [`MAX_INSNS`]).
    leaves: usize,
    arith: Vec<ArithOp>,
}

impl<'a> Parser<'a> {
    fn cur(&self) -> Token<'a> {
        self.at(self.pos)
    }

    fn at(&self, i: usize) -> Token<'a> {
        match self.toks.get(i) {
            Some(t) => *t,
            None => Token { tok: Tok::End, col: self.src.chars().count() + 1 },
        }
    }

    fn peek(&self) -> Tok<'a> {
        self.cur().tok
    }

    fn peek_at(&self, n: usize) -> Tok<'a> {
        self.at(self.pos + n).tok
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.cur();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn err(&self, col: usize, kind: ErrorKind, message: String) -> FilterError {
        FilterError::new(self.src, col, kind, message)
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, FilterError>) -> Result<T, FilterError> {
        if self.depth >= MAX_DEPTH {
            let col = self.cur().col;
            return Err(self.err(
                col,
                ErrorKind::TooComplex,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            ));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn leaf(&mut self, test: Test, col: usize) -> Result<Ast, FilterError> {
        self.leaves += 1;
        if self.leaves > MAX_INSNS {
            return Err(self.err(
                col,
                ErrorKind::TooComplex,
                format!("expression has more than {MAX_INSNS} primitives"),
            ));
        }
        Ok(Ast::Test(test))
    }

    fn expect_close(&mut self, open_col: usize) -> Result<(), FilterError> {
        let Token { tok, col } = self.cur();
        if tok == Tok::RParen {
            self.bump();
            return Ok(());
        }
        Err(self.err(
            col,
            ErrorKind::Unbalanced,
            format!("expected `)` to close the `(` at column {open_col}, found {}", tok.describe()),
        ))
    }

    fn at_and_or(&self) -> Option<bool> {
        match self.peek() {
            Tok::Word("and") | Tok::AndAnd => Some(true),
            Tok::Word("or") | Tok::OrOr => Some(false),
            _ => None,
        }
    }

    // ---- boolean level ------------------------------------------------------------------

    fn parse_expr(&mut self, prev: Option<Quals>) -> Result<(Ast, Option<Quals>), FilterError> {
        let (mut ast, mut quals) = self.parse_term(prev)?;
        while let Some(and) = self.at_and_or() {
            self.bump();
            let (rhs, q) = match quals {
                Some(q) if self.at_id_start() => (self.parse_id(q)?, Some(q)),
                _ => self.parse_term(quals)?,
            };
            ast = if and {
                Ast::And(Box::new(ast), Box::new(rhs))
            } else {
                Ast::Or(Box::new(ast), Box::new(rhs))
            };
            quals = q;
        }
        Ok((ast, quals))
    }

    fn parse_term(&mut self, prev: Option<Quals>) -> Result<(Ast, Option<Quals>), FilterError> {
        self.nested(|p| match p.peek() {
            Tok::Word("not") | Tok::Bang => {
                p.bump();
                let (t, q) = p.parse_term(prev)?;
                Ok((Ast::Not(Box::new(t)), q))
            }
            Tok::LParen => {
                // `(` opens either arithmetic (`(tcp[13] & 3) != 0`) or a group: try the first,
                // committing only when a comparison follows.
                let save = p.pos;
                if let Ok(lhs) = p.parse_arith() {
                    if relop(p.peek()).is_some() {
                        return Ok((p.finish_relation(lhs)?, None));
                    }
                }
                p.pos = save;
                let open = p.bump().col;
                let (e, _) = p.parse_expr(prev)?;
                p.expect_close(open)?;
                Ok((e, prev))
            }
            _ if p.at_arith_start() => {
                let lhs = p.parse_arith()?;
                Ok((p.finish_relation(lhs)?, None))
            }
            _ => p.parse_primitive(),
        })
    }

    /// After `and`/`or` with qualifiers in force: does a value (to which they apply) follow?
    fn at_id_start(&self) -> bool {
        let mut i = 0;
        loop {
            match self.peek_at(i) {
                Tok::LParen | Tok::Bang | Tok::Word("not") => i += 1,
                Tok::Escaped(_) => return true,
                Tok::Word(w) => {
                    return !is_keyword(w)
                        && self.peek_at(i + 1) != Tok::LBracket
                        && !(is_plain_number(w) && is_arith_or_relop(self.peek_at(i + 1)));
                }
                _ => return false,
            }
        }
    }

    fn at_arith_start(&self) -> bool {
        match self.peek() {
            Tok::Minus => true,
            Tok::Word(w) => {
                w == "len"
                    || named_constant(w).is_some()
                    || is_plain_number(w)
                    || self.peek_at(1) == Tok::LBracket
            }
            _ => false,
        }
    }

    /// A value, a negated value or a parenthesised list of values, with qualifiers `q`.
    fn parse_id(&mut self, q: Quals) -> Result<Ast, FilterError> {
        self.nested(|p| match p.peek() {
            Tok::Word("not") | Tok::Bang => {
                p.bump();
                Ok(Ast::Not(Box::new(p.parse_id(q)?)))
            }
            Tok::LParen => {
                let open = p.bump().col;
                let mut ast = p.parse_id(q)?;
                while let Some(and) = p.at_and_or() {
                    p.bump();
                    let rhs = p.parse_id(q)?;
                    ast = if and {
                        Ast::And(Box::new(ast), Box::new(rhs))
                    } else {
                        Ast::Or(Box::new(ast), Box::new(rhs))
                    };
                }
                p.expect_close(open)?;
                Ok(ast)
            }
            _ => p.parse_value(q),
        })
    }

    fn parse_primitive(&mut self) -> Result<(Ast, Option<Quals>), FilterError> {
        let Token { tok, col } = self.cur();
        let w = match tok {
            Tok::Word(w) => w,
            Tok::Escaped(w) => {
                return Err(self.err(
                    col,
                    ErrorKind::Syntax,
                    format!("`\\{w}` names a protocol and is only meaningful after `proto`"),
                ));
            }
            t => {
                return Err(self.err(
                    col,
                    ErrorKind::Syntax,
                    format!("expected a filter primitive, found {}", t.describe()),
                ));
            }
        };
        match w {
            "and" | "or" | "mask" => {
                return Err(self.err(
                    col,
                    ErrorKind::Syntax,
                    format!("expected a filter primitive, found `{w}`"),
                ));
            }
            "vlan" => {
                self.bump();
                let id = match self.peek() {
                    Tok::Word(n) if n.starts_with(|c: char| c.is_ascii_digit()) => {
                        let Token { col: ncol, .. } = self.bump();
                        let id = self.number(n, ncol)?;
                        if id > 4095 {
                            return Err(self.err(
                                ncol,
                                ErrorKind::OutOfRange,
                                format!("VLAN id {id} is above 4095"),
                            ));
                        }
                        Some(id as u16)
                    }
                    _ => None,
                };
                self.vlans = self.vlans.saturating_add(1);
                let test = Test::Vlan { position: self.vlans, id };
                return Ok((self.leaf(test, col)?, None));
            }
            "greater" | "less" => {
                self.bump();
                let Token { tok, col: ncol } = self.cur();
                let n = match tok {
                    Tok::Word(n) if is_plain_number(n) => self.number(n, ncol)?,
                    t => {
                        return Err(self.err(
                            ncol,
                            ErrorKind::Syntax,
                            format!("expected a length in bytes after `{w}`, found {}", t.describe()),
                        ));
                    }
                };
                self.bump();
                let op = if w == "greater" { CmpOp::Ge } else { CmpOp::Le };
                let test = Test::Cmp { field: Field::Len, mask: u32::MAX, op, value: n };
                return Ok((self.leaf(test, col)?, None));
            }
            _ => {}
        }
        if let Some(msg) = unsupported(w) {
            return Err(self.err(col, ErrorKind::Unsupported, msg));
        }

        // head := [pname] [dqual] [aqual]
        let pqual = PQual::from_word(w);
        if pqual.is_some() {
            self.bump();
        }
        let dqual = self.parse_dqual();
        let aqual = self.parse_aqual(dqual)?;
        let aqual = match aqual {
            Some(a) => a,
            None => match (pqual, dqual) {
                (Some(p), DQual::Default) => return Ok((self.leaf(p.abbreviation(), col)?, None)),
                (None, DQual::Default) => {
                    let (kind, msg) = if w.contains(':') || w.starts_with(|c: char| c.is_ascii_digit()) {
                        (
                            ErrorKind::Syntax,
                            format!(
                                "`{w}` needs a qualifier: write for example `host {w}`, `net {w}` or `port {w}`"
                            ),
                        )
                    } else {
                        (ErrorKind::UnknownKeyword, format!("unknown keyword `{w}`"))
                    };
                    return Err(self.err(col, kind, msg));
                }
                _ => AQual::Default,
            },
        };
        let q = Quals { proto: pqual.unwrap_or(PQual::Default), dir: dqual, addr: aqual };
        self.check_quals(q, col)?;
        Ok((self.parse_id(q)?, Some(q)))
    }

    fn parse_dqual(&mut self) -> DQual {
        let first = match self.peek() {
            Tok::Word("src") => DQual::Src,
            Tok::Word("dst") => DQual::Dst,
            _ => return DQual::Default,
        };
        self.bump();
        let other = if first == DQual::Src { "dst" } else { "src" };
        if self.peek_at(1) == Tok::Word(other) {
            if let Some(and) = self.at_and_or() {
                self.bump();
                self.bump();
                return if and { DQual::Both } else { DQual::Either };
            }
        }
        first
    }

    fn parse_aqual(&mut self, dqual: DQual) -> Result<Option<AQual>, FilterError> {
        let Token { tok, col } = self.cur();
        let a = match tok {
            Tok::Word("host") => AQual::Host,
            Tok::Word("net") => AQual::Net,
            Tok::Word("port") => AQual::Port,
            Tok::Word("portrange") => AQual::PortRange,
            Tok::Word("proto") if dqual == DQual::Default => AQual::Proto,
            Tok::Word("proto") => {
                return Err(self.err(
                    col,
                    ErrorKind::BadQualifier,
                    format!("`proto` cannot follow `{}`: a protocol has no direction", dqual.name()),
                ));
            }
            Tok::Word(w) => {
                if let Some(msg) = unsupported(w) {
                    return Err(self.err(col, ErrorKind::Unsupported, msg));
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        self.bump();
        Ok(Some(a))
    }

    /// Rejects qualifier combinations libpcap rejects (`tcp host`, `ip port`, `udp proto`).
    fn check_quals(&self, q: Quals, col: usize) -> Result<(), FilterError> {
        let p = q.proto;
        let ok = match q.addr {
            AQual::Port | AQual::PortRange => {
                matches!(p, PQual::Default | PQual::Tcp | PQual::Udp | PQual::Sctp)
            }
            AQual::Proto => matches!(p, PQual::Default | PQual::Ip | PQual::Ip6),
            AQual::Default | AQual::Host | AQual::Net => {
                if p == PQual::Rarp {
                    return Err(self.err(
                        col,
                        ErrorKind::Unsupported,
                        format!(
                            "`rarp {}` is not supported by Outpost filters: RARP addresses are not decoded",
                            q.keyword()
                        ),
                    ));
                }
                matches!(p, PQual::Default | PQual::Ip | PQual::Ip6 | PQual::Arp)
            }
        };
        if ok {
            return Ok(());
        }
        let allowed = match q.addr {
            AQual::Port | AQual::PortRange => "`tcp`, `udp` or `sctp`",
            AQual::Proto => "`ip` or `ip6`",
            _ => "`ip`, `ip6` or `arp`",
        };
        let head = [p.name(), q.dir.name(), if q.addr == AQual::Default { "" } else { q.keyword() }]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Err(self.err(
            col,
            ErrorKind::BadQualifier,
            format!(
                "`{head}` makes no sense: `{}` can only be qualified by {allowed}{}",
                q.keyword(),
                if matches!(q.addr, AQual::Default | AQual::Host | AQual::Net) {
                    format!(" (write `{} and {} …`)", p.name(), q.keyword())
                } else {
                    String::new()
                }
            ),
        ))
    }

    // ---- values ---------------------------------------------------------------------------

    fn number(&self, w: &str, col: usize) -> Result<u32, FilterError> {
        if let Some(hex) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(self.err(col, ErrorKind::BadNumber, format!("`{w}` is not a number")));
            }
            let trimmed = hex.trim_start_matches('0');
            return if trimmed.len() > 8 {
                Err(self.err(col, ErrorKind::OutOfRange, format!("number `{w}` does not fit in 32 bits")))
            } else {
                Ok(u32::from_str_radix(if trimmed.is_empty() { "0" } else { trimmed }, 16).unwrap_or(0))
            };
        }
        if w.is_empty() || !w.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.err(col, ErrorKind::BadNumber, format!("`{w}` is not a number")));
        }
        if w.len() > 1 && w.starts_with('0') {
            return Err(self.err(
                col,
                ErrorKind::BadNumber,
                format!(
                    "`{w}` has a leading zero, which tcpdump reads as octal; write it in decimal or as 0x…"
                ),
            ));
        }
        w.parse::<u32>().map_err(|_| {
            self.err(col, ErrorKind::OutOfRange, format!("number `{w}` does not fit in 32 bits"))
        })
    }

    fn parse_value(&mut self, q: Quals) -> Result<Ast, FilterError> {
        let Token { tok, col } = self.cur();
        let word = match tok {
            Tok::Word(w) if !is_keyword(w) => w,
            Tok::Escaped(w) if q.addr == AQual::Proto => w,
            Tok::Word(w) if q.addr == AQual::Proto && protocol_number(w).is_some() => w,
            t => {
                return Err(self.err(
                    col,
                    ErrorKind::Syntax,
                    format!("expected {} after `{}`, found {}", q.expects(), q.keyword(), t.describe()),
                ));
            }
        };
        self.bump();
        let test = match q.addr {
            AQual::Proto => {
                let n = if word.starts_with(|c: char| c.is_ascii_digit()) {
                    let n = self.number(word, col)?;
                    u8::try_from(n).map_err(|_| {
                        self.err(col, ErrorKind::OutOfRange, format!("protocol number {n} is above 255"))
                    })?
                } else {
                    protocol_number(word).ok_or_else(|| {
                        self.err(
                            col,
                            ErrorKind::UnknownKeyword,
                            format!("unknown protocol name `{word}`; write its number"),
                        )
                    })?
                };
                let nets = match q.proto {
                    PQual::Ip => net::IPV4,
                    PQual::Ip6 => net::IPV6,
                    _ => net::IP,
                };
                Test::Proto { nets, proto: n }
            }
            AQual::Port | AQual::PortRange => {
                let (lo, hi) = match word.split_once('-') {
                    Some((a, b)) if q.addr == AQual::PortRange => {
                        if a.starts_with("0x")
                            || a.starts_with("0X")
                            || b.starts_with("0x")
                            || b.starts_with("0X")
                        {
                            return Err(self.err(
                                col,
                                ErrorKind::BadNumber,
                                format!("portrange bounds must be decimal (tcpdump misreads `{word}`)"),
                            ));
                        }
                        let a = self.port(q, a, col)?;
                        let b = self.port(q, b, col + word.find('-').unwrap_or(0) + 1)?;
                        (a.min(b), a.max(b))
                    }
                    _ => {
                        let p = self.port(q, word, col)?;
                        (p, p)
                    }
                };
                let protos = match q.proto {
                    PQual::Tcp => ports::TCP,
                    PQual::Udp => ports::UDP,
                    PQual::Sctp => ports::SCTP,
                    _ => ports::ANY,
                };
                Test::Port { protos, dir: q.dir.dir(), lo, hi }
            }
            AQual::Default | AQual::Host | AQual::Net => self.address(q, word, col)?,
        };
        self.leaf(test, col)
    }

    fn port(&self, q: Quals, w: &str, col: usize) -> Result<u16, FilterError> {
        if w.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(self.err(
                col,
                ErrorKind::Unsupported,
                format!(
                    "expected {} after `{}`, found `{w}` (service names are not supported by Outpost \
                     filters: write the number)",
                    q.expects(),
                    q.keyword()
                ),
            ));
        }
        let n = self.number(w, col)?;
        u16::try_from(n)
            .map_err(|_| self.err(col, ErrorKind::OutOfRange, format!("port {n} is out of range (0-65535)")))
    }

    fn address_literal(&self, w: &str, col: usize) -> Result<AddrLit, FilterError> {
        if w.contains(':') {
            return w
                .parse::<Ipv6Addr>()
                .map(|a| AddrLit::V6(u128::from_be_bytes(a.octets())))
                .map_err(|_| self.err(col, ErrorKind::BadAddress, format!("`{w}` is not an IPv6 address")));
        }
        if w.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(self.err(
                col,
                ErrorKind::Unsupported,
                format!("host names such as `{w}` are not resolved by Outpost filters; write an address"),
            ));
        }
        let bad = || self.err(col, ErrorKind::BadAddress, format!("`{w}` is not an IPv4 address"));
        let parts: Vec<&str> = w.split('.').collect();
        if parts.len() > 4 {
            return Err(bad());
        }
        let mut bits = 0u32;
        for part in &parts {
            let ok = !part.is_empty()
                && part.len() <= 3
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part.len() == 1 || !part.starts_with('0'));
            let octet = part.parse::<u8>().ok().filter(|_| ok).ok_or_else(bad)?;
            bits = (bits << 8) | u32::from(octet);
        }
        let octets = parts.len() as u8;
        let bits = bits.checked_shl(8 * (4 - u32::from(octets))).unwrap_or(0);
        Ok(AddrLit::V4 { bits, octets })
    }

    /// `host`/`net`/direction-only values: an address, with `/len` or `mask M` for `net`.
    fn address(&mut self, q: Quals, word: &str, col: usize) -> Result<Test, FilterError> {
        let lit = self.address_literal(word, col)?;
        let is_net = q.addr == AQual::Net;
        // Optional `/len` or `mask M`.
        let Token { tok, col: scol } = self.cur();
        let mut text = word.to_string();
        let prefix = if tok == Tok::Slash {
            self.bump();
            let Token { tok, col: lcol } = self.cur();
            let Tok::Word(l) = tok else {
                return Err(self.err(
                    lcol,
                    ErrorKind::Syntax,
                    format!("expected a prefix length after `/`, found {}", tok.describe()),
                ));
            };
            self.bump();
            let len = self.number(l, lcol)?;
            text = format!("{word}/{l}");
            Some((len, lcol))
        } else {
            None
        };
        let mask = if prefix.is_none() && tok == Tok::Word("mask") {
            self.bump();
            let Token { tok, col: mcol } = self.cur();
            let Tok::Word(m) = tok else {
                return Err(self.err(
                    mcol,
                    ErrorKind::Syntax,
                    format!("expected a netmask after `mask`, found {}", tok.describe()),
                ));
            };
            self.bump();
            let bits = match self.address_literal(m, mcol)? {
                AddrLit::V4 { bits, octets: 4 } if matches!(lit, AddrLit::V4 { .. }) => bits,
                _ => {
                    return Err(self.err(
                        mcol,
                        ErrorKind::BadAddress,
                        "`mask` takes a complete IPv4 netmask (such as 255.255.0.0); write IPv6 networks \
                         as 2001:db8::/32"
                            .to_string(),
                    ));
                }
            };
            text = format!("{word} mask {m}");
            Some(bits)
        } else {
            None
        };
        if !is_net && (prefix.is_some() || mask.is_some()) {
            return Err(self.err(
                scol,
                ErrorKind::BadQualifier,
                format!("a prefix length or `mask` needs `net`: write `net {text}`"),
            ));
        }

        let v4 = matches!(lit, AddrLit::V4 { .. });
        let nets = match (q.proto, v4) {
            (PQual::Default, true) => net::IPV4 | net::ARP,
            (PQual::Ip, true) => net::IPV4,
            (PQual::Arp, true) => net::ARP,
            (PQual::Default | PQual::Ip6, false) => net::IPV6,
            (p, _) => {
                let family = if v4 { "IPv4" } else { "IPv6" };
                return Err(self.err(
                    col,
                    ErrorKind::BadQualifier,
                    format!("`{}` cannot qualify the {family} address `{word}`", p.name()),
                ));
            }
        };
        let host_bits_err = |net: String| {
            self.err(
                col,
                ErrorKind::HostBitsSet,
                format!("non-network bits set in `{text}` (the network would be {net})"),
            )
        };
        let (net, mask) = match lit {
            AddrLit::V4 { bits, octets } => {
                if !is_net && octets < 4 {
                    let hint = if octets == 1 && !word.contains('.') {
                        format!(" (for a port, write `port {word}`)")
                    } else {
                        format!(" (for a network, write `net {word}`)")
                    };
                    return Err(self.err(
                        col,
                        ErrorKind::BadAddress,
                        format!("`{word}` is not a complete IPv4 address{hint}"),
                    ));
                }
                let (m, len_text) = match (prefix, mask) {
                    (Some((len, lcol)), _) => {
                        if len > 32 {
                            return Err(self.err(
                                lcol,
                                ErrorKind::PrefixTooLong,
                                format!("prefix length {len} is too long for IPv4 (at most 32)"),
                            ));
                        }
                        (v4_mask(len), format!("/{len}"))
                    }
                    (None, Some(m)) => (m, format!(" mask {}", std::net::Ipv4Addr::from(m))),
                    (None, None) => {
                        let len = if is_net { 8 * u32::from(octets) } else { 32 };
                        (v4_mask(len), format!("/{len}"))
                    }
                };
                if bits & !m != 0 {
                    return Err(host_bits_err(format!("{}{len_text}", std::net::Ipv4Addr::from(bits & m))));
                }
                (V4_MAPPED | u128::from(bits), V4_PREFIX_MASK | u128::from(m))
            }
            AddrLit::V6(bits) => {
                let len = match prefix {
                    Some((len, lcol)) if len > 128 => {
                        return Err(self.err(
                            lcol,
                            ErrorKind::PrefixTooLong,
                            format!("prefix length {len} is too long for IPv6 (at most 128)"),
                        ));
                    }
                    Some((len, _)) => len,
                    None => 128,
                };
                let m = v6_mask(len);
                if bits & !m != 0 {
                    return Err(host_bits_err(format!("{}/{len}", Ipv6Addr::from(bits & m))));
                }
                (bits, m)
            }
        };
        Ok(Test::Addr { nets, dir: q.dir.dir(), net, mask })
    }

    // ---- relations and arithmetic -----------------------------------------------------------

    fn finish_relation(&mut self, lhs: (Arith, usize)) -> Result<Ast, FilterError> {
        let (lhs, start_idx) = lhs;
        let start = self.at(start_idx);
        let Token { tok, col } = self.cur();
        let Some(op) = relop(tok) else {
            let single = self.pos == start_idx + 1;
            let (msg, at) = match start.tok {
                Tok::Word(w) if single && is_plain_number(w) => (
                    format!(
                        "`{w}` cannot stand alone: a bare value repeats the qualifiers of the previous \
                         primitive (as in `port 80 or 443`), and there is none to repeat here"
                    ),
                    start.col,
                ),
                _ => (
                    format!(
                        "expected a comparison (`=`, `!=`, `<`, `<=`, `>`, `>=`) after the arithmetic \
                         expression, found {}",
                        tok.describe()
                    ),
                    col,
                ),
            };
            return Err(self.err(at, ErrorKind::Syntax, msg));
        };
        self.bump();
        let (rhs, _) = self.parse_arith()?;
        let lhs = self.fold(lhs)?;
        let rhs = self.fold(rhs)?;
        let test = if let (Arith::Num(a), Arith::Num(b)) = (&lhs, &rhs) {
            Test::Const(op.apply(*a, *b))
        } else if let (Some((field, mask)), Arith::Num(value)) = (lhs.as_masked_field(), &rhs) {
            Test::Cmp { field, mask, op, value: *value }
        } else if let (Arith::Num(value), Some((field, mask))) = (&lhs, rhs.as_masked_field()) {
            Test::Cmp { field, mask, op: op.swapped(), value: *value }
        } else {
            if lhs.stack_need() > ARITH_STACK || rhs.stack_need() > ARITH_STACK {
                return Err(self.err(
                    start.col,
                    ErrorKind::TooComplex,
                    "arithmetic expression too deeply nested".to_string(),
                ));
            }
            let l = self.push_arith(&lhs, start.col)?;
            let r = self.push_arith(&rhs, start.col)?;
            Test::Arith { lhs: l, op, rhs: r }
        };
        self.leaf(test, start.col)
    }

    fn push_arith(&mut self, a: &Arith, col: usize) -> Result<ArithRef, FilterError> {
        let start = self.arith.len();
        a.flatten(&mut self.arith);
        match (u16::try_from(start), u16::try_from(self.arith.len() - start)) {
            (Ok(start), Ok(len)) if self.arith.len() < usize::from(u16::MAX) => Ok(ArithRef { start, len }),
            _ => {
                Err(self.err(col, ErrorKind::TooComplex, "too much arithmetic in one expression".to_string()))
            }
        }
    }

    /// Folds constant sub-expressions and rejects what libpcap rejects at compile time.
    fn fold(&self, a: Arith) -> Result<Arith, FilterError> {
        Ok(match a {
            Arith::Num(_) | Arith::Field(_) => a,
            Arith::Neg(x) => match self.fold(*x)? {
                Arith::Num(n) => Arith::Num(n.wrapping_neg()),
                x => Arith::Neg(Box::new(x)),
            },
            Arith::Bin(op, x, y, col) => {
                let x = self.fold(*x)?;
                let y = self.fold(*y)?;
                if let Arith::Num(b) = y {
                    let problem = match op {
                        BinOp::Div if b == 0 => Some("division by zero"),
                        BinOp::Mod if b == 0 => Some("modulus by zero"),
                        BinOp::Shl | BinOp::Shr if b > 31 => Some("shift by more than 31 bits"),
                        _ => None,
                    };
                    if let Some(p) = problem {
                        return Err(self.err(col, ErrorKind::Arithmetic, p.to_string()));
                    }
                    if let Arith::Num(a) = x {
                        return Ok(Arith::Num(op.apply(a, b).unwrap_or(0)));
                    }
                }
                Arith::Bin(op, Box::new(x), Box::new(y), col)
            }
        })
    }

    /// An arithmetic expression and the index of its first token.
    fn parse_arith(&mut self) -> Result<(Arith, usize), FilterError> {
        let start = self.pos;
        Ok((self.arith_level(1)?, start))
    }

    /// Binary operators by level, loosest first, as declared in libpcap's grammar.
    fn binop_at(&self, level: u8) -> Option<BinOp> {
        Some(match (level, self.peek()) {
            (1, Tok::Pipe) => BinOp::Or,
            (2, Tok::Amp) => BinOp::And,
            (3, Tok::Shl) => BinOp::Shl,
            (3, Tok::Shr) => BinOp::Shr,
            (4, Tok::Plus) => BinOp::Add,
            (4, Tok::Minus) => BinOp::Sub,
            (5, Tok::Star) => BinOp::Mul,
            (5, Tok::Slash) => BinOp::Div,
            _ => return None,
        })
    }

    fn arith_level(&mut self, level: u8) -> Result<Arith, FilterError> {
        if level > 5 {
            return self.arith_operand();
        }
        let mut lhs = self.arith_level(level + 1)?;
        while let Some(op) = self.binop_at(level) {
            let col = self.bump().col;
            let rhs = self.arith_level(level + 1)?;
            lhs = Arith::Bin(op, Box::new(lhs), Box::new(rhs), col);
        }
        Ok(lhs)
    }

    /// A unary minus or a primary, then `^` / `%`. libpcap's grammar declares no precedence
    /// for `^` and `%`, so its parser always shifts them: they take the operand just before
    /// them and *everything* after them up to the end of the arithmetic (`8 - 6 % 4` is
    /// `8 - (6 % 4)`, `2 * 3 % 4` is `2 * (3 % 4)`). Reproduced here so results agree.
    fn arith_operand(&mut self) -> Result<Arith, FilterError> {
        self.nested(|p| {
            if p.peek() == Tok::Minus {
                p.bump();
                return Ok(Arith::Neg(Box::new(p.arith_operand()?)));
            }
            let x = p.arith_primary()?;
            let op = match p.peek() {
                Tok::Caret => BinOp::Xor,
                Tok::Percent => BinOp::Mod,
                _ => return Ok(x),
            };
            let col = p.bump().col;
            let rhs = p.arith_level(1)?;
            Ok(Arith::Bin(op, Box::new(x), Box::new(rhs), col))
        })
    }

    fn arith_primary(&mut self) -> Result<Arith, FilterError> {
        let Token { tok, col } = self.cur();
        let expected = |t: Tok<'_>| {
            self.err(
                col,
                ErrorKind::Syntax,
                format!(
                    "expected a number, `len` or a field such as `tcp[tcpflags]`, found {}",
                    t.describe()
                ),
            )
        };
        match tok {
            Tok::LParen => {
                // Depth is counted by `arith_operand`, one level per parenthesis.
                self.bump();
                let x = self.arith_level(1)?;
                self.expect_close(col)?;
                Ok(x)
            }
            Tok::Word(w) if self.peek_at(1) == Tok::LBracket => self.field(w, col),
            Tok::Word("len") => {
                self.bump();
                Ok(Arith::Field(Field::Len))
            }
            Tok::Word(w) => {
                if let Some(v) = named_constant(w) {
                    self.bump();
                    Ok(Arith::Num(v))
                } else if w.starts_with(|c: char| c.is_ascii_digit()) {
                    let n = self.number(w, col)?;
                    self.bump();
                    Ok(Arith::Num(n))
                } else {
                    Err(expected(tok))
                }
            }
            t => Err(expected(t)),
        }
    }

    /// `proto[offset]` / `proto[offset:size]` for the fields Outpost decodes.
    fn field(&mut self, w: &str, col: usize) -> Result<Arith, FilterError> {
        let supported = "Outpost filters can read tcp[0:2], tcp[2:2], tcp[4:4], tcp[8:4], \
                         tcp[13] (tcp[tcpflags]), tcp[14:2], udp[0:2], udp[2:2], icmp[0], icmp[1], \
                         icmp[0:2], the same for icmp6, and arp[6:2]";
        if !matches!(w, "tcp" | "udp" | "icmp" | "icmp6" | "arp") {
            let (kind, msg) = if PQual::from_word(w).is_some() || unsupported(w).is_some() {
                (ErrorKind::Unsupported, format!("`{w}[…]` is not supported by Outpost filters; {supported}"))
            } else {
                (ErrorKind::UnknownKeyword, format!("unknown keyword `{w}`"))
            };
            return Err(self.err(col, kind, msg));
        }
        self.bump();
        let open = self.bump().col;
        let ocol = self.cur().col;
        let offset = self.nested(|p| p.arith_level(1))?;
        let Arith::Num(offset) = self.fold(offset)? else {
            return Err(self.err(
                ocol,
                ErrorKind::Unsupported,
                format!("the offset in `{w}[…]` must be a constant in Outpost filters"),
            ));
        };
        let size = if self.peek() == Tok::Colon {
            self.bump();
            let Token { tok, col: scol } = self.cur();
            let size = match tok {
                Tok::Word(n) if is_plain_number(n) => self.number(n, scol)?,
                t => {
                    return Err(self.err(
                        scol,
                        ErrorKind::Syntax,
                        format!("expected a size (1, 2 or 4) after `:`, found {}", t.describe()),
                    ));
                }
            };
            if !matches!(size, 1 | 2 | 4) {
                return Err(self.err(scol, ErrorKind::Syntax, "data size must be 1, 2 or 4".to_string()));
            }
            self.bump();
            size
        } else {
            1
        };
        let Token { tok, col: ccol } = self.cur();
        if tok != Tok::RBracket {
            return Err(self.err(
                ccol,
                ErrorKind::Unbalanced,
                format!("expected `]` to close the `[` at column {open}, found {}", tok.describe()),
            ));
        }
        self.bump();
        let field = match (w, offset, size) {
            ("tcp", 0, 2) => Field::TcpSrcPort,
            ("tcp", 2, 2) => Field::TcpDstPort,
            ("tcp", 4, 4) => Field::TcpSeq,
            ("tcp", 8, 4) => Field::TcpAck,
            ("tcp", 13, 1) => Field::TcpFlags,
            ("tcp", 14, 2) => Field::TcpWindow,
            ("udp", 0, 2) => Field::UdpSrcPort,
            ("udp", 2, 2) => Field::UdpDstPort,
            ("icmp", 0, 1) => Field::IcmpType,
            ("icmp", 1, 1) => Field::IcmpCode,
            ("icmp", 0, 2) => Field::IcmpTypeCode,
            ("icmp6", 0, 1) => Field::Icmp6Type,
            ("icmp6", 1, 1) => Field::Icmp6Code,
            ("icmp6", 0, 2) => Field::Icmp6TypeCode,
            ("arp", 6, 2) => Field::ArpOp,
            _ => {
                return Err(self.err(
                    ocol,
                    ErrorKind::Unsupported,
                    format!("`{w}[{offset}:{size}]` is not available; {supported}"),
                ));
            }
        };
        Ok(Arith::Field(field))
    }
}
