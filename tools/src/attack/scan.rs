//! Scans and sweeps, as nmap, masscan and fping put them on the wire, seen from next to the
//! scanned hosts (their answers follow at once, the scanner's reactions a round trip later).
//!
//! | kind | what is sent | vs the rule |
//! |---|---|---|
//! | `syn-scan` | nmap -sS: 125–225 of nmap's top TCP ports in random order, one source port, window 1024, a probe every 2–8 ms on average; open ports (the mix's services of the target: 22, 80, 443, 993, 8443) answer SYN-ACK and the scanner's kernel resets them, closed ports answer RST-ACK | 125–225 distinct ports within seconds, ≥ 2.5× the 50 of `scan-vertical-tcp` |
//! | `connect-scan` | nmap -sT: the same ports, one ephemeral source port per probe (`+2` apart, as Linux hands them to one destination); open ports complete the handshake and the scanner resets at once (`SO_LINGER` 0) | as above |
//! | `fin-scan`, `null-scan`, `xmas-scan` | nmap -sF / -sN / -sX: 25–45 top ports, FIN, no flag, or FIN+PSH+URG; closed ports answer RST-ACK (RFC 9293 §3.10.7.1), open ones stay silent and are probed once more after 1–1.5 s | 25–45 distinct ports, ≥ 2.5× the 10 of `scan-tcp-stealth` |
//! | `udp-scan` | nmap -sU: 80–110 top UDP ports (DNS, NTP and SNMP probes carry their protocol's request), ten fast, then one every 0.95–1.25 s, as nmap slows down for the target's ICMP rate limit; closed ports answer port unreachable quoting the probe, limited like Linux (`icmp_ratelimit` 1 s, burst 6) — unanswered probes are retried once at the end; the target's DNS or NTP service answers its probe | about 60 unreachables in the busiest 60 s, ≥ 2.5× the 20 of `scan-vertical-udp` |
//! | `horizontal-scan` | masscan --rate 2.5–3.3: one port (445, 22, 3389 or 23) on hosts `.1`..`.254` of a server network in random order; live hosts (the mix's roles and 40 % of the rest) answer SYN-ACK (SSH on the servers) or RST-ACK, the others nothing | 150–200 distinct hosts per 60 s, ≥ 2.3× the 64 of `scan-horizontal` |
//! | `ping-sweep` | fping -g over a /26 (62 hosts, in address order, 10 ms apart); live hosts (the mix's roles and half of the rest) reply, silent ones get three retries after 0.5, 0.75 and 1.125 s | 62 distinct hosts within seconds, ≥ 3× the 20 of `ping-sweep` |
//! | `neighbor-sweep` | nmap -sn on the scanner's own segment (as root it resolves addresses instead of pinging): a quiet server-network host asks for every other host of its /24 (IPv6: hosts `::1`..`::254` of its /64) 1–3 ms apart — ARP requests, or neighbor solicitations to solicited-node groups; live hosts answer, silent ones are asked again after 0.5–1 s | 253 distinct hosts within a second, ≥ 2.5× the 100 in 5 s of `neighbor-sweep` |

use std::net::IpAddr;

use outpost_decode::meta::tcp_flags::{ACK, FIN, PSH, RST, SYN, URG};

use super::ctx::{AttackCtx, Planned, has_role, host_number, open_tcp, quiet_host_up};
use super::packet::{Data, FWD, Peer, Pkt, REV, TcpConn, phase};
use super::plan::AddressPlan;

use crate::frame::{Transport, icmp, udp};

/// nmap's most frequent TCP ports (nmap-services order), the head of its `--top-ports` list.
pub(crate) const TOP_TCP: &[u16] = &[
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993, 5900, 1025,
    587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, 8443, 8000, 32768, 554,
    26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631, 631, 49153, 8081, 2049, 88, 79,
    5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, 144, 7, 389, 8009, 3128,
    444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755,
    2717, 4899, 9100, 119, 37, 1000, 3001, 5001, 82, 10010, 1030, 9090, 2107, 1024, 2103, 6004, 1801, 5050,
    19, 8031, 1041, 255, 1048, 1049, 1053, 1054, 1056, 1064, 1065, 2967, 3703, 17, 808, 3689, 1031, 1044,
    1071, 5901, 100, 9102, 1039, 2869, 4001, 5120, 8010, 9000, 2105, 636, 1038, 2601, 1, 7000, 1066, 1069,
    625, 311, 280, 254, 4000, 1761, 5003, 2002, 1998, 2005, 1032, 1050, 6112, 3690, 1521, 2161, 1080, 6002,
    2401, 902, 4045, 787, 7937, 1058, 2383, 32771, 1033, 1040, 1059, 50000, 5555, 10001, 1494, 3, 593, 2301,
    3268, 7938, 1022, 1234, 1035, 1036, 1037, 1074, 8002, 30000, 9001, 464, 497, 1935, 6666, 2003, 6543, 24,
    1352, 3269, 1111, 407, 500, 20, 2006, 1034, 1218, 3260, 15000, 4444, 264, 33, 2004, 42510, 1042, 999,
    3052, 1023, 222, 1068, 888, 7100, 563, 1717, 992, 2008, 32770, 7001, 2007, 8082, 5550, 2009, 5801, 1043,
    512, 2701, 7019, 50001,
];

/// nmap's most frequent UDP ports.
pub(crate) const TOP_UDP: &[u16] = &[
    631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514, 49152, 162, 69,
    5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 136, 2222, 2049, 32768, 5060, 1025, 1433,
    3456, 80, 20031, 1026, 7, 1646, 1645, 593, 518, 2048, 626, 1027, 177, 1719, 427, 497, 4444, 1023, 65024,
    19, 9, 49193, 1029, 49, 88, 1028, 17185, 1718, 49186, 2000, 31337, 49201, 49192, 515, 2223, 443, 49181,
    1813, 120, 158, 49200, 3703, 32815, 17, 5000, 32771, 33281, 1030, 1022, 623, 32769, 5632, 10000, 49156,
    49182, 49191, 49194, 9200, 30718, 49185, 49188, 49190, 1001, 1024, 2967, 1000, 19283, 16680, 21, 33354,
    1001, 8181, 20, 39213, 27892, 1045,
];

/// Which TCP probe a scan sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpScan {
    /// -sS.
    Syn,
    /// -sT.
    Connect,
    /// -sF, -sN, -sX with these flags.
    Stealth(u16),
}

/// The flags of the stealth scans.
pub(crate) const FIN_PROBE: u16 = FIN;
/// NULL scan: no flag at all.
pub(crate) const NULL_PROBE: u16 = 0;
/// XMAS scan: FIN, PSH and URG.
pub(crate) const XMAS_PROBE: u16 = FIN | PSH | URG;

/// The `n` first of a port table, shuffled (nmap randomizes the order).
fn ports(ctx: &mut AttackCtx<'_>, table: &[u16], n: u64) -> Vec<u16> {
    let mut seen = std::collections::HashSet::new();
    let mut v: Vec<u16> = table.iter().copied().filter(|p| seen.insert(*p)).take(n as usize).collect();
    ctx.rng.shuffle(&mut v);
    v
}

/// A vertical TCP scan of one server of the mix.
pub(crate) fn tcp_scan(
    ctx: &mut AttackCtx<'_>,
    scan: TcpScan,
) -> Result<Planned, super::plan::PlanExhausted> {
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let target = ctx.plan.victim(&mut ctx.rng, ctx.v6);
    let open = open_tcp(host_number(target));
    let rtt = ctx.external_rtt();
    let tag = ctx.tag(phase::MAIN);
    let n = match scan {
        TcpScan::Stealth(_) => ctx.rng.range(25, 45),
        _ => ctx.rng.range(125, 225),
    };
    let list = ports(ctx, TOP_TCP, n);
    let mean_gap = match scan {
        TcpScan::Syn => ctx.rng.range(2_000_000, 8_000_000),
        TcpScan::Connect => ctx.rng.range(4_000_000, 12_000_000),
        TcpScan::Stealth(_) => ctx.rng.range(5_000_000, 20_000_000),
    } as f64;
    // nmap's raw probes: one source port, window 1024, a TTL of its own choosing.
    let raw_sport = ctx.rng.range(33_000, 65_000) as u16;
    let raw_ttl = ctx.rng.range(37, 59) as u8;
    let kernel_ttl = ctx.external_ttl();
    let connect_base = ctx.rng.range(32_768, 60_999 - 2 * 225) as u16;
    let server_window = [65160u16, 29200][ctx.rng.below(2) as usize];

    let mut out = Vec::with_capacity(list.len() * 3);
    let mut t = ctx.start;
    let mut silent = Vec::new();
    for (k, &port) in list.iter().enumerate() {
        if k > 0 {
            t += ctx.rng.exponential(mean_gap, 10.0 * mean_gap) as u64 + 1_000;
        }
        let client = match scan {
            TcpScan::Connect => Peer {
                addr: attacker,
                port: connect_base + 2 * k as u16,
                ttl: kernel_ttl,
                window: 64240,
                external: true,
            },
            _ => Peer { addr: attacker, port: raw_sport, ttl: raw_ttl, window: 1024, external: true },
        };
        let server = Peer { addr: target, port, ttl: 63, window: server_window, external: false };
        let mut conn = TcpConn::new(client, server, tag, &mut ctx.rng);
        let is_open = open.contains(&port);
        let probe_flags = match scan {
            TcpScan::Syn | TcpScan::Connect => SYN,
            TcpScan::Stealth(f) => f,
        };
        let probe = conn.segment(t, FWD, probe_flags, Data::None);
        let answer = t + ctx.proc_delay();
        out.push(probe.clone());
        match (scan, is_open) {
            (TcpScan::Syn, true) => {
                out.push(conn.segment(answer, REV, SYN | ACK, Data::None));
                // The scanner's kernel knows no such connection and resets it.
                out.push(conn.segment(answer + rtt, FWD, RST, Data::None));
            }
            (TcpScan::Connect, true) => {
                out.push(conn.segment(answer, REV, SYN | ACK, Data::None));
                out.push(conn.segment(answer + rtt, FWD, ACK, Data::None));
                let q = ctx.rng.range(20_000, 90_000);
                out.push(conn.segment(answer + rtt + q, FWD, RST | ACK, Data::None));
            }
            (TcpScan::Stealth(_), true) => silent.push(probe),
            (_, false) => {
                conn.set_seq(REV, 0);
                out.push(conn.segment(answer, REV, RST | ACK, Data::None));
            }
        }
    }
    // nmap probes silent ports once more after its timeout.
    if !silent.is_empty() {
        t += ctx.rng.range(1_000_000_000, 1_500_000_000);
        for mut p in silent {
            p.ts = t;
            p.ip_id = ctx.rng.next_u16();
            out.push(p);
            t += ctx.rng.exponential(mean_gap, 10.0 * mean_gap) as u64 + 1_000;
        }
    }
    Ok(Planned::eager(out, Some(attacker), Some(target), None))
}

/// nmap's UDP payloads for the ports it has them for (nmap-payloads): a DNS server status
/// request, an NTP v2 client request, an SNMPv1 get-request for `public`.
fn udp_probe_payload(port: u16) -> Data {
    match port {
        53 => Data::Bytes(vec![0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]),
        123 => {
            let mut b = vec![0u8; 48];
            b[0] = 0xe3; // LI 3 (unsynchronized), version 4, mode 3
            b[2] = 0x04;
            b[3] = 0xfa;
            b[5] = 0x01;
            b[9] = 0x01;
            Data::Bytes(b)
        }
        161 => Data::Bytes(vec![
            0x30, 0x26, 0x02, 0x01, 0x00, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x19, 0x02,
            0x04, 0x71, 0xb4, 0xb5, 0x68, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x30, 0x09, 0x06,
            0x05, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x05, 0x00,
        ]),
        _ => Data::None,
    }
}

/// The answer of an open DNS or NTP service to nmap's probe.
fn udp_service_answer(port: u16) -> Data {
    match port {
        // Status response: QR, opcode 2, RCODE 4 (not implemented).
        53 => Data::Bytes(vec![0x00, 0x00, 0x90, 0x04, 0, 0, 0, 0, 0, 0, 0, 0]),
        _ => {
            let mut b = vec![0u8; 48];
            b[0] = 0x24; // version 4, mode 4 (server)
            b[1] = 2;
            b[2] = 0x04;
            b[3] = 0xe9;
            b[12..16].copy_from_slice(&[192, 0, 2, 1]);
            Data::Bytes(b)
        }
    }
}

/// Linux's ICMP rate limit per destination (`icmp_ratelimit` 1000 ms with a burst of six,
/// `XRLIM_BURST_FACTOR`): a token bucket of six, refilled one per second.
#[derive(Debug)]
struct IcmpLimit {
    tokens: f64,
    last: u64,
}

impl IcmpLimit {
    fn allow(&mut self, t: u64) -> bool {
        self.tokens = (self.tokens + t.saturating_sub(self.last) as f64 / 1e9).min(6.0);
        self.last = t;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// ICMP port unreachable (RFC 792) or ICMPv6 port unreachable (RFC 4443 §3.1): type, code,
/// and how much of the offending datagram fits (576 bytes in all for IPv4, as Linux does;
/// the IPv6 minimum MTU for ICMPv6).
pub(crate) fn port_unreachable(v6: bool) -> (u8, u8, u16) {
    if v6 { (1, 4, 1232) } else { (3, 3, 548) }
}

/// nmap -sU against one server of the mix (a web server, a resolver or an NTP server).
pub(crate) fn udp_scan(ctx: &mut AttackCtx<'_>) -> Result<Planned, super::plan::PlanExhausted> {
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let target = match ctx.rng.below(4) {
        0 => AddressPlan::server_network(&mut ctx.rng).host(53, ctx.v6),
        1 => AddressPlan::server_network(&mut ctx.rng).host(123, ctx.v6),
        _ => ctx.plan.victim(&mut ctx.rng, ctx.v6),
    };
    let open: &[u16] = match host_number(target) {
        53 => &[53],
        123 => &[123],
        _ => &[],
    };
    let tag = ctx.tag(phase::MAIN);
    let n = ctx.rng.range(80, 110);
    let list = ports(ctx, TOP_UDP, n);
    let sport = ctx.rng.range(33_000, 65_000) as u16;
    let ttl = ctx.rng.range(37, 59) as u8;
    let (ty, code, max) = port_unreachable(ctx.v6);
    let mut limit = IcmpLimit { tokens: 6.0, last: ctx.start };
    let mut out = Vec::new();
    let mut retry = Vec::new();
    let mut t = ctx.start;
    let mut sent = 0usize;
    for (pass, ports) in [(0, list), (1, Vec::new())] {
        let ports = if pass == 0 { ports } else { std::mem::take(&mut retry) };
        for port in ports {
            if sent > 0 {
                t += if sent < 10 {
                    ctx.rng.range(5_000_000, 30_000_000)
                } else {
                    ctx.rng.range(950_000_000, 1_250_000_000)
                };
            }
            sent += 1;
            let probe = Pkt {
                ts: t,
                tag,
                src: attacker,
                dst: target,
                ttl,
                ip_id: ctx.rng.next_u16(),
                l4: udp(sport, port),
                data: udp_probe_payload(port),
            };
            let at = t + ctx.proc_delay();
            if open.contains(&port) {
                out.push(Pkt {
                    ts: at,
                    src: target,
                    dst: attacker,
                    ttl: 64,
                    ip_id: ctx.rng.next_u16(),
                    l4: udp(port, sport),
                    data: udp_service_answer(port),
                    ..probe.clone()
                });
            } else if limit.allow(at) {
                out.push(Pkt {
                    ts: at,
                    src: target,
                    dst: attacker,
                    ttl: 64,
                    ip_id: ctx.rng.next_u16(),
                    l4: icmp(ty, code, 0),
                    data: Data::Quote { inner: Box::new(probe.clone()), max },
                    ..probe.clone()
                });
            } else if pass == 0 {
                retry.push(port);
            }
            out.push(probe);
        }
    }
    Ok(Planned::eager(out, Some(attacker), Some(target), None))
}

/// masscan over one server network: one port, every host, a fixed rate.
pub(crate) fn horizontal_scan(ctx: &mut AttackCtx<'_>) -> Result<Planned, super::plan::PlanExhausted> {
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let net = AddressPlan::server_network(&mut ctx.rng);
    let port = [445u16, 22, 3389, 23][ctx.rng.weighted(&[45, 35, 10, 10])];
    let rtt = ctx.external_rtt();
    let tag = ctx.tag(phase::MAIN);
    let mut hosts: Vec<u8> = (1..=254).collect();
    ctx.rng.shuffle(&mut hosts);
    let rate_gap = ctx.rng.range(300_000_000, 400_000_000);
    let sport = ctx.rng.range(33_000, 65_000) as u16;
    let ttl = 255 - ctx.rng.range(8, 20) as u8;
    let mut out = Vec::with_capacity(3 * hosts.len());
    let mut t = ctx.start;
    for (k, &n) in hosts.iter().enumerate() {
        if k > 0 {
            t += rate_gap + ctx.rng.range(0, 2_000_000);
        }
        let addr = net.host(n, ctx.v6);
        let client = Peer { addr: attacker, port: sport, ttl, window: 1024, external: true };
        let server = ctx.server_peer(addr, port);
        let mut conn = TcpConn::new(client, server, tag, &mut ctx.rng);
        out.push(conn.segment(t, FWD, SYN, Data::None));
        let up = has_role(n) || quiet_host_up(ctx.seed, n, 40);
        if !up {
            continue;
        }
        let at = t + ctx.proc_delay();
        if open_tcp(n).contains(&port) {
            out.push(conn.segment(at, REV, SYN | ACK, Data::None));
            out.push(conn.segment(at + rtt, FWD, RST, Data::None));
        } else {
            conn.set_seq(REV, 0);
            out.push(conn.segment(at, REV, RST | ACK, Data::None));
        }
    }
    Ok(Planned::eager(out, Some(attacker), None, Some(port)))
}

/// fping -g over a /26 of a server network.
pub(crate) fn ping_sweep(ctx: &mut AttackCtx<'_>) -> Result<Planned, super::plan::PlanExhausted> {
    let attacker = ctx.plan.attacker(ctx.v6)?;
    let net = AddressPlan::server_network(&mut ctx.rng);
    let quarter = ctx.rng.below(4) as u8;
    let hosts: Vec<u8> = (1..=62).map(|h| quarter * 64 + h).collect();
    let tag = ctx.tag(phase::MAIN);
    let id = ctx.rng.next_u16();
    let ttl = ctx.external_ttl();
    let (request, reply) = if ctx.v6 { (128, 129) } else { (8, 0) };
    let mut out = Vec::new();
    let mut seq = 0u16;
    let mut t = ctx.start;
    for (k, &n) in hosts.iter().enumerate() {
        if k > 0 {
            t += ctx.rng.range(10_000_000, 11_000_000);
        }
        let addr = net.host(n, ctx.v6);
        let up = has_role(n) || quiet_host_up(ctx.seed, n, 50);
        // fping's default: a 500 ms timeout, three retries, back-off factor 1.5.
        let mut at = t;
        let mut timeout = 500_000_000u64;
        for attempt in 0..4 {
            if attempt > 0 {
                at += timeout;
                timeout = timeout * 3 / 2;
            }
            let rest = u32::from(id) << 16 | u32::from(seq);
            seq = seq.wrapping_add(1);
            let req = Pkt {
                ts: at,
                tag,
                src: attacker,
                dst: addr,
                ttl,
                ip_id: ctx.rng.next_u16(),
                l4: icmp(request, 0, rest),
                data: Data::Zeros(56),
            };
            if up {
                let ts = at + ctx.proc_delay();
                out.push(Pkt {
                    ts,
                    src: addr,
                    dst: attacker,
                    ttl: 64,
                    l4: icmp(reply, 0, rest),
                    ..req.clone()
                });
                out.push(req);
                break;
            }
            out.push(req);
        }
    }
    Ok(Planned::eager(out, Some(attacker), None, None))
}

/// nmap -sn on the scanner's own segment, as root: nmap asks the link layer, not ICMP. A
/// quiet host of a server network resolves every other host `.1`..`.254` of its network in
/// address order, 1–3 ms apart: an ARP request each (IPv6: a neighbor solicitation to the
/// target's solicited-node group). Live hosts (the mix's roles and 40 % of the rest) answer at
/// once (ARP reply, neighbor advertisement); silent ones are asked once more 0.5–1 s after the
/// last first request.
pub(crate) fn neighbor_sweep(ctx: &mut AttackCtx<'_>) -> Result<Planned, super::plan::PlanExhausted> {
    let (attacker, net) = ctx.plan.quiet_host_on(&mut ctx.rng, ctx.v6);
    let me = host_number(attacker);
    let tag = ctx.tag(phase::MAIN);
    let mut out = Vec::new();
    let mut silent = Vec::new();
    let mut t = ctx.start;
    let ask = |at: u64, target: IpAddr| Pkt {
        ts: at,
        tag,
        src: attacker,
        dst: solicited(target),
        ttl: 255,
        ip_id: 0,
        l4: resolution(target, true),
        data: neighbor_data(target, attacker, true),
    };
    for n in (1..=254u8).filter(|&n| n != me) {
        t += ctx.rng.range(1_000_000, 3_000_000);
        let target = net.host(n, ctx.v6);
        out.push(ask(t, target));
        if has_role(n) || quiet_host_up(ctx.seed, n, 40) {
            out.push(Pkt {
                ts: t + ctx.proc_delay(),
                tag,
                src: target,
                dst: attacker,
                ttl: 255,
                ip_id: 0,
                l4: resolution(attacker, false),
                data: neighbor_data(target, target, false),
            });
        } else {
            silent.push(target);
        }
    }
    let mut at = t + ctx.rng.range(500_000_000, 1_000_000_000);
    for target in silent {
        out.push(ask(at, target));
        at += ctx.rng.range(1_000_000, 3_000_000);
    }
    Ok(Planned::eager(out, Some(attacker), None, None))
}

/// Where a request to resolve `target` goes: `target` itself for ARP (the frame is broadcast),
/// its solicited-node multicast group `ff02::1:ffXX:XXXX` for IPv6 (RFC 4291 §2.7.1).
fn solicited(target: IpAddr) -> IpAddr {
    match target {
        IpAddr::V4(_) => target,
        IpAddr::V6(a) => IpAddr::V6(crate::frame::solicited_node(a)),
    }
}

/// The ARP operation, or the ICMPv6 neighbor solicitation (135) / advertisement (136, with the
/// Solicited and Override flags, RFC 4861 §4.4) of a request or an answer about `about`'s
/// family.
fn resolution(about: IpAddr, request: bool) -> Transport {
    match (about, request) {
        (IpAddr::V4(_), true) => Transport::Arp { op: 1 },
        (IpAddr::V4(_), false) => Transport::Arp { op: 2 },
        (IpAddr::V6(_), true) => icmp(135, 0, 0),
        (IpAddr::V6(_), false) => icmp(136, 0, 0x6000_0000),
    }
}

/// A neighbor solicitation's or advertisement's body: the target address and the sender's
/// link-layer address option (source in a solicitation, target in an advertisement); nothing
/// for ARP, whose frame carries the addresses itself.
fn neighbor_data(target: IpAddr, sender: IpAddr, request: bool) -> Data {
    let IpAddr::V6(t) = target else { return Data::None };
    let mut b = t.octets().to_vec();
    b.extend_from_slice(&[if request { 1 } else { 2 }, 1]);
    b.extend_from_slice(&crate::seed::mac_for(sender));
    Data::Bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn port_tables_are_long_enough_and_mostly_distinct() {
        let tcp: HashSet<u16> = TOP_TCP.iter().copied().collect();
        let udp: HashSet<u16> = TOP_UDP.iter().copied().collect();
        assert!(tcp.len() >= 225, "{}", tcp.len());
        assert!(udp.len() >= 110, "{}", udp.len());
    }
}
