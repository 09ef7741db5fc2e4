//! The compiled form of a filter: a flat array of tests with jump targets, evaluated over a
//! [`PacketMeta`] without allocation or recursion.
//!
//! Compilation follows the classic BPF scheme: every primitive becomes one instruction holding
//! a [`Test`] with its constants pre-resolved and two targets (next instruction when true,
//! when false). `and`, `or` and `not` cost nothing at run time: they only choose targets.
//! Targets always point forward, so evaluation ends after at most one pass over the array.
//! Instructions are visited in the order their primitives appear in the expression, which is
//! also the order libpcap evaluates them.

use outpost_decode::meta::ip_proto;
use outpost_decode::{Fragment, Network, PacketMeta, Transport};

/// Bit sets over [`Network`], used to say which kinds of packet a test applies to.
pub(crate) mod net {
    /// IPv4.
    pub(crate) const IPV4: u8 = 1;
    /// IPv6.
    pub(crate) const IPV6: u8 = 2;
    /// ARP (Ethernet / IPv4).
    pub(crate) const ARP: u8 = 4;
    /// IPv4 or IPv6.
    pub(crate) const IP: u8 = IPV4 | IPV6;
}

/// Bit sets over the transports that carry ports.
pub(crate) mod ports {
    /// TCP.
    pub(crate) const TCP: u8 = 1;
    /// UDP.
    pub(crate) const UDP: u8 = 2;
    /// SCTP.
    pub(crate) const SCTP: u8 = 4;
    /// Any of them (an unqualified `port`).
    pub(crate) const ANY: u8 = TCP | UDP | SCTP;
}

#[inline(always)]
fn net_bit(n: Network) -> u8 {
    match n {
        Network::Ipv4 => net::IPV4,
        Network::Ipv6 => net::IPV6,
        Network::Arp => net::ARP,
        Network::Other => 0,
    }
}

#[inline(always)]
fn port_bit(proto: u8) -> u8 {
    match proto {
        ip_proto::TCP => ports::TCP,
        ip_proto::UDP => ports::UDP,
        ip_proto::SCTP => ports::SCTP,
        _ => 0,
    }
}

/// Which address(es) or port(s) of a packet a test looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dir {
    /// `src`.
    Src,
    /// `dst`.
    Dst,
    /// `src or dst` (the default).
    Either,
    /// `src and dst`.
    Both,
}

impl Dir {
    #[inline(always)]
    fn apply(self, src: impl FnOnce() -> bool, dst: impl FnOnce() -> bool) -> bool {
        match self {
            Dir::Src => src(),
            Dir::Dst => dst(),
            Dir::Either => src() || dst(),
            Dir::Both => src() && dst(),
        }
    }
}

/// A comparison operator of a relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Compares as libpcap does: unsigned 32-bit.
    #[inline(always)]
    pub(crate) fn apply(self, a: u32, b: u32) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
        }
    }

    /// The operator with its operands swapped (`a < b` ⇔ `b > a`).
    pub(crate) fn swapped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }
}

/// A binary arithmetic operator (unsigned 32-bit, wrapping, as BPF computes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl BinOp {
    /// The result, or `None` for a division or modulo by zero (which makes libpcap's
    /// interpreter reject the packet).
    #[inline(always)]
    pub(crate) fn apply(self, a: u32, b: u32) -> Option<u32> {
        Some(match self {
            BinOp::Add => a.wrapping_add(b),
            BinOp::Sub => a.wrapping_sub(b),
            BinOp::Mul => a.wrapping_mul(b),
            BinOp::Div => a.checked_div(b)?,
            BinOp::Mod => a.checked_rem(b)?,
            BinOp::And => a & b,
            BinOp::Or => a | b,
            BinOp::Xor => a ^ b,
            // libpcap's bpf_filter: a shift by 32 or more gives 0.
            BinOp::Shl => a.checked_shl(b).unwrap_or(0),
            BinOp::Shr => a.checked_shr(b).unwrap_or(0),
        })
    }
}

/// A value of the packet that arithmetic can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// `len`: the frame length on the wire.
    Len,
    /// `tcp[0:2]`.
    TcpSrcPort,
    /// `tcp[2:2]`.
    TcpDstPort,
    /// `tcp[4:4]`.
    TcpSeq,
    /// `tcp[8:4]`.
    TcpAck,
    /// `tcp[13]`, `tcp[tcpflags]`.
    TcpFlags,
    /// `tcp[14:2]`.
    TcpWindow,
    /// `udp[0:2]`.
    UdpSrcPort,
    /// `udp[2:2]`.
    UdpDstPort,
    /// `icmp[0]`, `icmp[icmptype]`.
    IcmpType,
    /// `icmp[1]`, `icmp[icmpcode]`.
    IcmpCode,
    /// `icmp[0:2]`.
    IcmpTypeCode,
    /// `icmp6[0]`, `icmp6[icmp6type]`.
    Icmp6Type,
    /// `icmp6[1]`, `icmp6[icmp6code]`.
    Icmp6Code,
    /// `icmp6[0:2]`.
    Icmp6TypeCode,
    /// `arp[6:2]`: the ARP operation (1 request, 2 reply).
    ArpOp,
}

/// The result of reading a [`Field`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// The value.
    Value(u32),
    /// The packet is not of the field's protocol (or is a later fragment): the relation is
    /// false, as libpcap's protocol check before the load makes it.
    Skip,
    /// The packet is of the field's protocol but its header was cut short: the value is
    /// unknown (see [`resolve_missing`]).
    Missing,
}

impl Field {
    /// The transport the field lives in: `(networks, protocol)`, or `None` for `len`.
    #[inline(always)]
    pub(crate) fn transport(self) -> Option<(u8, u8)> {
        Some(match self {
            Field::Len => return None,
            Field::TcpSrcPort
            | Field::TcpDstPort
            | Field::TcpSeq
            | Field::TcpAck
            | Field::TcpFlags
            | Field::TcpWindow => (net::IP, ip_proto::TCP),
            Field::UdpSrcPort | Field::UdpDstPort => (net::IP, ip_proto::UDP),
            Field::IcmpType | Field::IcmpCode | Field::IcmpTypeCode => (net::IPV4, ip_proto::ICMP),
            Field::Icmp6Type | Field::Icmp6Code | Field::Icmp6TypeCode => (net::IPV6, ip_proto::ICMPV6),
            // Not a transport: ARP frames have protocol 0 (see `check`).
            Field::ArpOp => (net::ARP, 0),
        })
    }

    /// Whether the packet has this field at all (protocol, not a later fragment), and if so
    /// whether its header was read.
    #[inline(always)]
    fn check(self, m: &PacketMeta) -> Load {
        if self == Field::ArpOp {
            // Every decoded ARP frame has its fixed part, the operation with it.
            return if m.network == Network::Arp { Load::Value(0) } else { Load::Skip };
        }
        let Some((nets, proto)) = self.transport() else { return Load::Value(0) };
        if net_bit(m.network) & nets == 0 || m.ip_proto != proto || m.fragment == Fragment::Later {
            return Load::Skip;
        }
        match m.transport {
            Transport::Parsed => Load::Value(0),
            Transport::Truncated => Load::Missing,
            Transport::Absent => Load::Skip,
        }
    }

    /// Reads the field.
    #[inline(always)]
    pub(crate) fn load(self, m: &PacketMeta) -> Load {
        match self.check(m) {
            Load::Value(_) => {}
            other => return other,
        }
        Load::Value(self.value(m))
    }

    /// The value, assuming [`Field::check`] passed.
    #[inline(always)]
    fn value(self, m: &PacketMeta) -> u32 {
        match self {
            Field::Len => m.wire_len,
            Field::TcpSrcPort | Field::UdpSrcPort => u32::from(m.src_port),
            Field::TcpDstPort | Field::UdpDstPort => u32::from(m.dst_port),
            Field::TcpSeq => m.tcp_seq,
            Field::TcpAck => m.tcp_ack,
            Field::TcpFlags => u32::from(m.tcp_flags & 0xff),
            Field::TcpWindow => u32::from(m.tcp_window),
            Field::IcmpType | Field::Icmp6Type => u32::from(m.icmp_type),
            Field::IcmpCode | Field::Icmp6Code => u32::from(m.icmp_code),
            Field::IcmpTypeCode | Field::Icmp6TypeCode => {
                (u32::from(m.icmp_type) << 8) | u32::from(m.icmp_code)
            }
            Field::ArpOp => u32::from(m.arp_op),
        }
    }
}

/// One step of an arithmetic expression in postfix order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArithOp {
    /// Push a constant.
    Const(u32),
    /// Push a field.
    Load(Field),
    /// Negate the top of the stack (two's complement).
    Neg,
    /// Pop `b`, pop `a`, push `a op b`.
    Bin(BinOp),
}

/// Deepest stack a postfix arithmetic expression may need.
pub(crate) const ARITH_STACK: usize = 16;

/// A slice of [`crate::Filter`]'s arithmetic array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArithRef {
    pub(crate) start: u16,
    pub(crate) len: u16,
}

impl ArithRef {
    fn ops(self, all: &[ArithOp]) -> &[ArithOp] {
        let start = usize::from(self.start);
        all.get(start..start + usize::from(self.len)).unwrap_or_default()
    }
}

/// One primitive test with its constants resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    /// Always this answer (a relation between constants).
    Const(bool),
    /// `ip`, `ip6`, `arp`: the packet's network is in the set.
    Network(u8),
    /// `rarp`: the EtherType after any VLAN tags.
    EtherType(u16),
    /// `tcp`, `udp`, `icmp`, `ip proto N`, …: the network is in the set and `proto` is the
    /// upper-layer protocol or (IPv6) the fixed header's next header.
    Proto { nets: u8, proto: u8 },
    /// `host`, `net`: the network is in the set and the address(es) lie in `net`/`mask`
    /// (128-bit, IPv4 mapped).
    Addr { nets: u8, dir: Dir, net: u128, mask: u128 },
    /// `port`, `portrange`: a transport in the set, not a later fragment, port(s) in `lo..=hi`.
    Port { protos: u8, dir: Dir, lo: u16, hi: u16 },
    /// Single-port tests of one transport set and one direction (`src`, `dst` or either)
    /// joined by `or` — `tcp dst port 21 or 23 or 110` — folded into one test by
    /// [`fold_port_chains`]: the port(s) among the first `len` of `ports`. Only in compiled
    /// programs, never in a parsed expression.
    Ports { protos: u8, dir: Dir, len: u8, ports: [u16; PORTS_MAX] },
    /// The `position`-th `vlan` primitive of the expression (1-based): the frame has at least
    /// that many tags, and that tag has `id` when given.
    Vlan { position: u8, id: Option<u16> },
    /// `(field & mask) op value` — the common relation shape, and `greater` / `less`.
    Cmp { field: Field, mask: u32, op: CmpOp, value: u32 },
    /// Any other relation: two postfix expressions in [`crate::Filter`]'s arithmetic array.
    Arith { lhs: ArithRef, op: CmpOp, rhs: ArithRef },
}

/// The result of one test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    False,
    True,
    /// The test needs a header the capture cut short: its outcome is unknown
    /// (see [`resolve_missing`]).
    Unknown,
    /// The packet is rejected outright: a division by a zero value, which makes libpcap's
    /// interpreter return 0.
    Reject,
}

impl From<bool> for Outcome {
    #[inline(always)]
    fn from(b: bool) -> Outcome {
        if b { Outcome::True } else { Outcome::False }
    }
}

impl Test {
    #[inline(always)]
    pub(crate) fn eval(&self, m: &PacketMeta, arith: &[ArithOp]) -> Outcome {
        match *self {
            Test::Const(b) => b.into(),
            Test::Network(nets) => (net_bit(m.network) & nets != 0).into(),
            Test::EtherType(t) => (m.ethertype == t).into(),
            Test::Proto { nets, proto } => (net_bit(m.network) & nets != 0
                && (m.ip_proto == proto || m.ip6_first_next_header == proto))
                .into(),
            Test::Addr { nets, dir, net, mask } => {
                if net_bit(m.network) & nets == 0 {
                    return Outcome::False;
                }
                dir.apply(|| m.src.to_bits() & mask == net, || m.dst.to_bits() & mask == net).into()
            }
            Test::Port { protos, dir, lo, hi } => match port_candidate(protos, m) {
                Some(false) => Outcome::False,
                None => Outcome::Unknown,
                Some(true) => {
                    dir.apply(|| (lo..=hi).contains(&m.src_port), || (lo..=hi).contains(&m.dst_port)).into()
                }
            },
            Test::Ports { protos, dir, len, ports } => match port_candidate(protos, m) {
                Some(false) => Outcome::False,
                None => Outcome::Unknown,
                Some(true) => {
                    let list = ports.get(..usize::from(len)).unwrap_or_default();
                    dir.apply(|| list.contains(&m.src_port), || list.contains(&m.dst_port)).into()
                }
            },
            Test::Vlan { position, id } => {
                let tagged = m.vlan_count >= position;
                let id_ok = match id {
                    None => true,
                    Some(id) => m.vlan.get(usize::from(position.wrapping_sub(1))) == Some(&id),
                };
                (tagged && id_ok).into()
            }
            Test::Cmp { field, mask, op, value } => match field.load(m) {
                Load::Value(v) => op.apply(v & mask, value).into(),
                Load::Skip => Outcome::False,
                Load::Missing => Outcome::Unknown,
            },
            Test::Arith { lhs, op, rhs } => eval_relation(m, lhs.ops(arith), op, rhs.ops(arith)),
        }
    }
}

/// The part of a port test before the ports: `Some(false)` when the packet has no ports of
/// a transport in `protos` (other transport, not IP, a later fragment, no transport header),
/// `None` when its transport header was cut short, `Some(true)` when its ports decide.
#[inline]
pub(crate) fn port_candidate(protos: u8, m: &PacketMeta) -> Option<bool> {
    if protos & port_bit(m.ip_proto) == 0 || !m.is_ip() || m.fragment == Fragment::Later {
        return Some(false);
    }
    match m.transport {
        Transport::Parsed => Some(true),
        Transport::Truncated => None,
        Transport::Absent => Some(false),
    }
}

/// A general relation: like libpcap, first every field's protocol check, then the loads.
fn eval_relation(m: &PacketMeta, lhs: &[ArithOp], op: CmpOp, rhs: &[ArithOp]) -> Outcome {
    let mut missing = false;
    for o in lhs.iter().chain(rhs) {
        if let ArithOp::Load(f) = o {
            match f.check(m) {
                Load::Value(_) => {}
                Load::Skip => return Outcome::False,
                Load::Missing => missing = true,
            }
        }
    }
    if missing {
        return Outcome::Unknown;
    }
    match (run(m, lhs), run(m, rhs)) {
        (Some(a), Some(b)) => op.apply(a, b).into(),
        _ => Outcome::Reject,
    }
}

/// Runs a postfix expression; `None` on a division by zero (or a malformed program, which
/// the compiler never produces).
fn run(m: &PacketMeta, ops: &[ArithOp]) -> Option<u32> {
    let mut stack = [0u32; ARITH_STACK];
    let mut sp = 0usize;
    for o in ops {
        match *o {
            ArithOp::Const(c) => {
                *stack.get_mut(sp)? = c;
                sp += 1;
            }
            ArithOp::Load(f) => {
                *stack.get_mut(sp)? = f.value(m);
                sp += 1;
            }
            ArithOp::Neg => {
                let top = stack.get_mut(sp.checked_sub(1)?)?;
                *top = top.wrapping_neg();
            }
            ArithOp::Bin(op) => {
                sp = sp.checked_sub(1)?;
                let b = *stack.get(sp)?;
                let a = stack.get_mut(sp.checked_sub(1)?)?;
                *a = op.apply(*a, b)?;
            }
        }
    }
    if sp == 1 { stack.first().copied() } else { None }
}

/// A jump target: an instruction index, or one of the two verdicts.
pub(crate) type Target = u16;
/// Jump target meaning "the packet matches".
pub(crate) const ACCEPT: Target = u16::MAX;
/// Jump target meaning "the packet does not match".
pub(crate) const REJECT: Target = u16::MAX - 1;
/// Most instructions a program may have (targets must stay below [`REJECT`]; also bounds
/// the compiler's recursion and [`resolve_missing`]'s table).
pub(crate) const MAX_INSNS: usize = 4096;

/// One instruction: a test and where to go next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) test: Test,
    pub(crate) on_true: Target,
    pub(crate) on_false: Target,
}

/// A parsed boolean expression, before compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ast {
    Test(Test),
    Not(Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
}

/// Most ports one [`Test::Ports`] holds (the size of the largest other test: no instruction
/// grows).
pub(crate) const PORTS_MAX: usize = 16;
const _: () = assert!(size_of::<Test>() <= 48, "a folded port test must not make every instruction larger");

/// The ports a test of `protos` and `dir` matches when it is a single port or a folded list
/// of them, with its transports and direction; `None` for any other test (a range, `src and
/// dst port`).
fn single_ports(t: &Test) -> Option<(u8, Dir, &[u16])> {
    match t {
        Test::Port { protos, dir, lo, hi } if lo == hi && *dir != Dir::Both => {
            Some((*protos, *dir, std::slice::from_ref(lo)))
        }
        Test::Ports { protos, dir, len, ports } => Some((*protos, *dir, ports.get(..usize::from(*len))?)),
        _ => None,
    }
}

/// Folds chains of single-port tests joined by `or` into [`Test::Ports`] tests: where test
/// `a` (a single port, or a fold) goes on failure to test `b` of the same transports and
/// direction, both go to the same place on success, `b` is reached from `a` only, and
/// neither test appears anywhere else in the program, `a` becomes the union of both and
/// fails where `b` fails. The folded program matches exactly the packets the chain matched:
/// for a packet with ports it is true exactly when one of the ports is its port; for one
/// whose transport header was cut, the fold is one unknown test standing for the chain's
/// several, and since the rest of the program sees only whether any of them held, every way
/// the unknown tests can go is still covered ([`resolve_missing`]). So `tcp dst port 21 or
/// 23 or … or 5900` is two tests, not thirteen.
fn fold_port_chains(program: Vec<Insn>) -> Vec<Insn> {
    let mut program = program;
    let n = program.len();
    let mut preds = vec![0usize; n];
    for insn in &program {
        for t in [insn.on_true, insn.on_false] {
            if let Some(p) = preds.get_mut(usize::from(t)) {
                *p += 1;
            }
        }
    }
    let once = |program: &[Insn], t: &Test| program.iter().filter(|i| i.test == *t).count() == 1;
    let mut dead = vec![false; n];
    for a in 0..n {
        if dead.get(a).copied().unwrap_or(true) {
            continue;
        }
        while let Some(&ia) = program.get(a) {
            let b = usize::from(ia.on_false);
            let Some(&ib) = program.get(b) else { break };
            let (Some((pa, da, la)), Some((pb, db, lb))) = (single_ports(&ia.test), single_ports(&ib.test))
            else {
                break;
            };
            if pa != pb
                || da != db
                || ia.on_true != ib.on_true
                || preds.get(b) != Some(&1)
                || la.len() + lb.len() > PORTS_MAX
                || !once(&program, &ia.test)
                || !once(&program, &ib.test)
            {
                break;
            }
            let mut ports = [0u16; PORTS_MAX];
            for (slot, &p) in ports.iter_mut().zip(la.iter().chain(lb)) {
                *slot = p;
            }
            let len = (la.len() + lb.len()) as u8;
            if let Some(x) = program.get_mut(a) {
                x.test = Test::Ports { protos: pa, dir: da, len, ports };
                x.on_false = ib.on_false;
            }
            if let Some(d) = dead.get_mut(b) {
                *d = true;
            }
            // `b` is gone: where it went on success has one predecessor fewer (where it went
            // on failure has `a` in its place).
            if let Some(p) = preds.get_mut(usize::from(ib.on_true)) {
                *p = p.saturating_sub(1);
            }
        }
    }
    if !dead.contains(&true) {
        return program;
    }
    // Drop the folded-away instructions and renumber the jumps (still forward).
    let mut new_index = vec![0 as Target; n];
    let mut next: Target = 0;
    for (i, d) in dead.iter().enumerate() {
        if let Some(x) = new_index.get_mut(i) {
            *x = next;
        }
        if !d {
            next += 1;
        }
    }
    let map = |t: Target| if t >= REJECT { t } else { new_index.get(usize::from(t)).copied().unwrap_or(t) };
    program
        .into_iter()
        .zip(dead)
        .filter(|(_, d)| !d)
        .map(|(i, _)| Insn { test: i.test, on_true: map(i.on_true), on_false: map(i.on_false) })
        .collect()
}

/// Compiles `ast` into instructions whose entry point is index 0 and whose jumps all point
/// forward, single-port tests joined by `or` folded ([`fold_port_chains`]). Returns `None`
/// when the program would exceed [`MAX_INSNS`].
pub(crate) fn compile(ast: &Ast) -> Option<Vec<Insn>> {
    compile_unfolded(ast).map(fold_port_chains)
}

/// [`compile`] without folding.
pub(crate) fn compile_unfolded(ast: &Ast) -> Option<Vec<Insn>> {
    // Emit backwards (the continuation of a node is emitted before the node), then reverse:
    // the entry of every subtree is the last instruction it emitted.
    let mut out = Vec::new();
    emit(ast, ACCEPT, REJECT, &mut out)?;
    let n = out.len();
    let fix = |t: Target| if t >= REJECT { t } else { (n - 1 - usize::from(t)) as Target };
    out.reverse();
    for i in &mut out {
        i.on_true = fix(i.on_true);
        i.on_false = fix(i.on_false);
    }
    Some(out)
}

/// Emits `ast` with continuations `t` / `f`; returns its entry index.
fn emit(ast: &Ast, t: Target, f: Target, out: &mut Vec<Insn>) -> Option<Target> {
    match ast {
        Ast::Test(test) => {
            if out.len() >= MAX_INSNS {
                return None;
            }
            out.push(Insn { test: *test, on_true: t, on_false: f });
            Target::try_from(out.len() - 1).ok()
        }
        Ast::Not(a) => emit(a, f, t, out),
        Ast::And(a, b) => {
            let eb = emit(b, t, f, out)?;
            emit(a, eb, f, out)
        }
        Ast::Or(a, b) => {
            let eb = emit(b, t, f, out)?;
            emit(a, t, eb, out)
        }
    }
}

/// Runs a compiled program (a call of its own: see [`crate::Filter::matches_class`]).
#[inline(never)]
pub(crate) fn run_program(program: &[Insn], arith: &[ArithOp], m: &PacketMeta) -> bool {
    let mut pc = 0usize;
    loop {
        let Some(insn) = program.get(pc) else { return program.is_empty() };
        let next = match insn.test.eval(m, arith) {
            Outcome::True => insn.on_true,
            Outcome::False => insn.on_false,
            Outcome::Unknown => return resolve_missing(program, arith, m, pc),
            Outcome::Reject => return false,
        };
        match next {
            ACCEPT => return true,
            REJECT => return false,
            n => pc = usize::from(n),
        }
    }
}

/// Most combinations of unknown outcomes [`resolve_missing`] enumerates, times the
/// instructions each run may visit: bounds the work for a packet with a cut header.
/// Crafted packets (a TCP data offset below 5) reach it at line rate, so it stays small.
const MISSING_BUDGET: usize = 1024;

/// Instruction `pc` needs a transport header the capture cut short: its outcome is unknown.
///
/// The packet matches only if the expression is true whichever way its unknown tests go —
/// each distinct test taking one outcome (a test written twice takes the same outcome both
/// times), every other test its real outcome. So `not port 80` and `port 0` reject a cut TCP
/// segment, `tcp or port 80` and `not port 80 or port 80` accept it, and `port 80 or host A`
/// accepts it when it is from `A`, in either order.
///
/// libpcap rejects a packet whenever its program reads beyond the captured bytes; it can
/// accept a cut packet only when its optimizer removed every such read on the packet's path,
/// that is when the verdict is the same whatever the missing bytes hold. Outpost therefore
/// does not reject what tcpdump accepts (short of contradictions between *different* tests
/// of one field, like `tcp[13] & 2 = 0 or tcp[13] & 2 = 2`, which are not recognised), and
/// accepts more where libpcap's optimizer fails to prove a read irrelevant.
///
/// Work is bounded by [`MISSING_BUDGET`]: beyond it each unknown test is taken as
/// independent (a stricter rule: it never accepts what the exact one rejects).
#[cold]
#[inline(never)]
fn resolve_missing(program: &[Insn], arith: &[ArithOp], m: &PacketMeta, pc: usize) -> bool {
    const MAX_UNKNOWN: usize = 8;
    let rest = program.get(pc..).unwrap_or_default();
    let mut unknown: [Option<&Test>; MAX_UNKNOWN] = [None; MAX_UNKNOWN];
    let mut k = 0;
    let mut enumerate = true;
    for insn in rest {
        if insn.test.eval(m, arith) == Outcome::Unknown && !unknown[..k].contains(&Some(&insn.test)) {
            if k == MAX_UNKNOWN {
                enumerate = false;
                break;
            }
            unknown[k] = Some(&insn.test);
            k += 1;
        }
    }
    if enumerate && (rest.len() << k) <= MISSING_BUDGET {
        (0..1u32 << k).all(|outcomes| run_with_outcomes(program, arith, m, pc, &unknown[..k], outcomes))
    } else {
        all_paths_accept(program, arith, m, pc)
    }
}

/// Runs from `pc` with the tests in `unknown` taking the outcomes in the bits of `outcomes`.
fn run_with_outcomes(
    program: &[Insn],
    arith: &[ArithOp],
    m: &PacketMeta,
    mut pc: usize,
    unknown: &[Option<&Test>],
    outcomes: u32,
) -> bool {
    loop {
        let Some(insn) = program.get(pc) else { return false };
        let outcome = match insn.test.eval(m, arith) {
            Outcome::Unknown => {
                let bit = unknown.iter().position(|u| *u == Some(&insn.test)).unwrap_or(0);
                outcomes >> bit & 1 == 1
            }
            Outcome::Reject => return false,
            o => o == Outcome::True,
        };
        match if outcome { insn.on_true } else { insn.on_false } {
            ACCEPT => return true,
            REJECT => return false,
            n => pc = usize::from(n),
        }
    }
}

/// True when every path from `pc` accepts, each unknown test taking both outcomes
/// independently. Linear: jumps only go forward, so this is computed backwards.
fn all_paths_accept(program: &[Insn], arith: &[ArithOp], m: &PacketMeta, pc: usize) -> bool {
    let mut all = [false; MAX_INSNS];
    let of = |all: &[bool; MAX_INSNS], t: Target| match t {
        ACCEPT => true,
        REJECT => false,
        t => all.get(usize::from(t)).copied().unwrap_or(false),
    };
    for i in (pc..program.len().min(MAX_INSNS)).rev() {
        let insn = &program[i];
        all[i] = match insn.test.eval(m, arith) {
            Outcome::True => of(&all, insn.on_true),
            Outcome::False => of(&all, insn.on_false),
            Outcome::Unknown => of(&all, insn.on_true) && of(&all, insn.on_false),
            Outcome::Reject => false,
        };
    }
    all.get(pc).copied().unwrap_or(false)
}
