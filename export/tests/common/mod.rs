//! Shared by the export tests: a traffic scenario with ground truth metered by the real
//! flow meter, the nfcapd collector as a child process, and pcap files of exported datagrams
//! for tshark.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_decode::{IpAddress, LinkType, Nanos, decode};
use outpost_flowmeter::{DirectionCounters, EndReason, FlowConfig, FlowMeter, FlowRecord};
use outpost_tools::frame::{FrameBuilder, Transport, icmp, tcp, udp};
use outpost_tools::pcap::{PcapWriter, Precision};

pub mod wire;

pub const SYN: u16 = 0x02;
pub const ACK: u16 = 0x10;
pub const FIN: u16 = 0x01;
pub const PSH: u16 = 0x08;
pub const RST: u16 = 0x04;

/// 2024-05-01T12:00:00Z.
pub const T0_SECS: u64 = 1_714_564_800;

pub fn at_ms(ms: u64) -> Nanos {
    Nanos(T0_SECS * 1_000_000_000 + ms * 1_000_000 + 123_456)
}

/// Direction counters for hand-made records: `packets` packets of `bytes` bytes in total,
/// first at `first_ms`, last at `last_ms` after [`at_ms`]'s base.
pub fn counters(
    packets: u64,
    bytes: u64,
    flags: u8,
    first_ms: u64,
    last_ms: u64,
    ttl: (u8, u8),
) -> DirectionCounters {
    if packets == 0 {
        return DirectionCounters::default();
    }
    DirectionCounters {
        packets,
        bytes,
        tcp_flags: flags,
        first: at_ms(first_ms),
        last: at_ms(last_ms),
        min_ttl: ttl.0,
        max_ttl: ttl.1,
    }
}

/// A hand-made record: flow `i` between 10.0.x.y (or 2001:db8::…) and a server, TCP unless
/// `proto` says otherwise, forward 3 packets, reverse `rev_packets`.
pub fn record(i: u64, v6: bool, proto: u8, rev_packets: u64) -> FlowRecord {
    let n = u16::try_from(i % 60_000).expect("small");
    let (src, dst): (IpAddress, IpAddress) = if v6 {
        (format!("2001:db8::{:x}", n + 1).parse().expect("v6"), "2001:db8:ffff::1".parse().expect("v6"))
    } else {
        (IpAddress::from_v4([10, 0, (n >> 8) as u8, n as u8]), IpAddress::from_v4([192, 0, 2, 1]))
    };
    let icmp = matches!(proto, 1 | 58);
    let start = i * 10;
    FlowRecord {
        flow_id: 0x0100_0000_0000_0000 | i,
        sequence: 0,
        src,
        dst,
        src_port: if icmp { 0 } else { 40_000 + n % 20_000 },
        dst_port: if icmp { 0 } else { 443 },
        proto,
        vlan: if i.is_multiple_of(2) { 0 } else { 7 },
        icmp_type: if icmp { if v6 { 128 } else { 8 } } else { 0 },
        icmp_code: 0,
        dscp: 46,
        fwd: counters(3, 180 + i, 0x1b, start, start + 40, (60, 64)),
        rev: counters(rev_packets, 1500 * rev_packets, 0x12, start + 3, start + 30, (50, 52)),
        end_reason: EndReason::TcpFin,
    }
}

/// Ground truth of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirTruth {
    pub packets: u64,
    pub bytes: u64,
    pub flags: u8,
    pub first_ms: u64,
    pub last_ms: u64,
    pub min_ttl: u8,
    pub max_ttl: u8,
}

impl DirTruth {
    fn add(&mut self, bytes: u64, flags: u8, ms: u64, ttl: u8) {
        if self.packets == 0 {
            self.first_ms = ms;
            self.min_ttl = ttl;
            self.max_ttl = ttl;
        }
        self.packets += 1;
        self.bytes += bytes;
        self.flags |= flags;
        self.last_ms = ms;
        self.min_ttl = self.min_ttl.min(ttl);
        self.max_ttl = self.max_ttl.max(ttl);
    }
}

/// Ground truth of one flow, computed from the scenario (not from the meter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowTruth {
    pub client: IpAddr,
    pub server: IpAddr,
    /// Ports (0 for ICMP).
    pub cport: u16,
    pub sport: u16,
    pub proto: u8,
    pub vlan: u16,
    /// ICMP type and code of the first packet.
    pub icmp: Option<(u8, u8)>,
    pub dscp: u8,
    pub fwd: DirTruth,
    pub rev: DirTruth,
}

impl FlowTruth {
    /// Milliseconds since the epoch of the first and last packet in either direction.
    pub fn span_ms(&self) -> (u64, u64) {
        let first =
            if self.rev.packets == 0 { self.fwd.first_ms } else { self.fwd.first_ms.min(self.rev.first_ms) };
        (first, self.fwd.last_ms.max(self.rev.last_ms))
    }
}

/// One packet of the scenario.
struct Pkt {
    ms: u64,
    frame: Vec<u8>,
}

/// Builds the packets of one flow and its truth.
struct FlowBuilder {
    truth: FlowTruth,
    pkts: Vec<Pkt>,
}

impl FlowBuilder {
    fn new(
        client: &str,
        server: &str,
        cport: u16,
        sport: u16,
        proto: u8,
        vlan: u16,
        dscp: u8,
    ) -> FlowBuilder {
        FlowBuilder {
            truth: FlowTruth {
                client: client.parse().expect("client address"),
                server: server.parse().expect("server address"),
                cport,
                sport,
                proto,
                vlan,
                icmp: None,
                dscp,
                fwd: DirTruth::default(),
                rev: DirTruth::default(),
            },
            pkts: Vec::new(),
        }
    }

    /// A packet from the client (`to_server`) or the server, with `payload` bytes.
    fn pkt(&mut self, to_server: bool, t: Transport, payload: usize, ms: u64, ttl: u8) {
        let (src, dst) = if to_server {
            (self.truth.client, self.truth.server)
        } else {
            (self.truth.server, self.truth.client)
        };
        let v6 = src.is_ipv6();
        let flags = match t {
            Transport::Tcp { flags, .. } => (flags & 0xff) as u8,
            _ => 0,
        };
        let l4 = t.header_len() as u64;
        if let Transport::Icmp { ty, code, .. } = t
            && self.truth.icmp.is_none()
        {
            self.truth.icmp = Some((ty, code));
        }
        let vlans: &[u16] = if self.truth.vlan != 0 { &[self.truth.vlan] } else { &[] };
        let mut b = FrameBuilder::new(src, dst, t).payload(&vec![0x5a; payload]).vlans(vlans);
        b.ttl = ttl;
        b.tos = self.truth.dscp << 2;
        let bytes = (if v6 { 40 } else { 20 }) + l4 + payload as u64;
        let abs_ms = T0_SECS * 1000 + ms;
        if to_server {
            self.truth.fwd.add(bytes, flags, abs_ms, ttl);
        } else {
            self.truth.rev.add(bytes, flags, abs_ms, ttl);
        }
        self.pkts.push(Pkt { ms, frame: b.build() });
    }
}

/// A TCP conversation: handshake, request, response, both FINs.
/// `client` and `server` are (address, port).
fn tcp_flow(
    client: (&str, u16),
    server: (&str, u16),
    vlan: u16,
    start: u64,
    req: usize,
    resp: usize,
) -> FlowBuilder {
    let ((client, cport), (server, sport)) = (client, server);
    let mut f = FlowBuilder::new(client, server, cport, sport, 6, vlan, 0);
    f.pkt(true, tcp(cport, sport, SYN, 1, 0), 0, start, 64);
    f.pkt(false, tcp(sport, cport, SYN | ACK, 100, 2), 0, start + 3, 58);
    f.pkt(true, tcp(cport, sport, ACK, 2, 101), 0, start + 5, 64);
    f.pkt(true, tcp(cport, sport, PSH | ACK, 2, 101), req, start + 6, 63);
    f.pkt(false, tcp(sport, cport, PSH | ACK, 101, 2), resp, start + 17, 57);
    f.pkt(true, tcp(cport, sport, FIN | ACK, 2, 101), 0, start + 20, 64);
    f.pkt(false, tcp(sport, cport, FIN | ACK, 101, 3), 0, start + 22, 58);
    f.pkt(true, tcp(cport, sport, ACK, 3, 102), 0, start + 25, 64);
    f
}

/// A UDP exchange: `n_req` requests, `n_resp` responses.
/// `client` and `server` are (address, port).
fn udp_flow(
    client: (&str, u16),
    server: (&str, u16),
    vlan: u16,
    start: u64,
    n_req: u64,
    n_resp: u64,
) -> FlowBuilder {
    let ((client, cport), (server, sport)) = (client, server);
    let mut f = FlowBuilder::new(client, server, cport, sport, 17, vlan, 10);
    for i in 0..n_req {
        f.pkt(true, udp(cport, sport), 40 + i as usize, start + i * 40, 64);
        if i < n_resp {
            f.pkt(false, udp(sport, cport), 120 + i as usize * 3, start + i * 40 + 9, 55);
        }
    }
    f
}

/// ICMP / ICMPv6 echo requests and (optionally) replies.
fn echo_flow(client: &str, server: &str, v6: bool, start: u64, n: u64, replies: bool) -> FlowBuilder {
    let (req, rep, proto) = if v6 { (128, 129, 58) } else { (8, 0, 1) };
    let mut f = FlowBuilder::new(client, server, 0, 0, proto, 0, 0);
    for i in 0..n {
        f.pkt(true, icmp(req, 0, 0x1234_0000 | i as u32), 56, start + i * 100, 64);
        if replies {
            f.pkt(false, icmp(rep, 0, 0x1234_0000 | i as u32), 56, start + i * 100 + 2, 61);
        }
    }
    f
}

/// The scenario: 39 flows — IPv4 TCP, UDP with and without answers, ICMP echo and a one-way
/// unreachable, IPv6 TCP, UDP and ICMPv6 echo, VLAN-tagged UDP and TCP, refused TCP
/// connections (SYN answered by RST). Returns the truth of
/// every flow and the records the real flow meter makes of the packets.
pub fn scenario() -> (Vec<FlowTruth>, Vec<FlowRecord>) {
    let mut flows = Vec::new();
    let mut t = 0u64;
    let mut next = |step: u64| {
        t += step;
        t
    };
    for i in 0..10u16 {
        let client = format!("10.1.0.{}", i + 1);
        let server = format!("192.0.2.{}", i % 3 + 1);
        let port = if i % 2 == 0 { 443 } else { 80 };
        let (req, resp) = (100 + usize::from(i) * 10, 1000 + usize::from(i));
        flows.push(tcp_flow((&client, 40_000 + i), (&server, port), 0, next(137), req, resp));
    }
    for i in 0..8u16 {
        let client = format!("10.2.0.{}", i + 1);
        // Three one-way flows (no response).
        let (n_req, n_resp) =
            if i < 3 { (2 + u64::from(i), 0) } else { (1 + u64::from(i % 3), 1 + u64::from(i % 3)) };
        flows.push(udp_flow((&client, 5_000 + i), ("198.51.100.53", 53), 0, next(91), n_req, n_resp));
    }
    for i in 0..4u64 {
        flows.push(echo_flow(&format!("10.3.0.{}", i + 1), "203.0.113.9", false, next(211), 2 + i, true));
    }
    // Destination unreachable (port), one-way.
    let mut unreach = FlowBuilder::new("10.3.0.99", "10.3.0.1", 0, 0, 1, 0, 0);
    unreach.pkt(true, icmp(3, 3, 0), 28, next(57), 250);
    flows.push(unreach);
    for i in 0..4u16 {
        let client = format!("2001:db8:1::{:x}", i + 1);
        flows.push(tcp_flow(
            (&client, 50_000 + i),
            ("2001:db8:2::80", 443),
            0,
            next(173),
            200 + usize::from(i),
            1400,
        ));
    }
    for i in 0..3u16 {
        let client = format!("2001:db8:1::1:{:x}", i + 1);
        flows.push(udp_flow((&client, 6_000 + i), ("2001:db8:2::53", 53), 0, next(77), 1 + u64::from(i), 1));
    }
    for i in 0..2u64 {
        flows.push(echo_flow(
            &format!("2001:db8:1::2:{:x}", i + 1),
            "2001:db8:2::1",
            true,
            next(199),
            3,
            i == 0,
        ));
    }
    for i in 0..4u16 {
        let client = format!("172.16.{}.10", i + 1);
        flows.push(udp_flow((&client, 7_000 + i), ("172.16.0.1", 514), 100 + i, next(64), 2, 1));
    }
    flows.push(tcp_flow(("172.16.9.9", 33_333), ("172.16.0.2", 22), 42, next(83), 64, 512));
    // Refused connections: the directions differ in flags and TTL.
    for i in 0..2u16 {
        let mut f = FlowBuilder::new("10.4.0.1", "10.4.0.2", 45_000 + i, 8080, 6, 0, 0);
        let start = next(101);
        f.pkt(true, tcp(45_000 + i, 8080, SYN, 7, 0), 0, start, 64);
        f.pkt(false, tcp(8080, 45_000 + i, RST | ACK, 0, 8), 0, start + 1, 128);
        flows.push(f);
    }

    let truth: Vec<FlowTruth> = flows.iter().map(|f| f.truth.clone()).collect();
    let mut pkts: Vec<Pkt> = flows.into_iter().flat_map(|f| f.pkts).collect();
    pkts.sort_by_key(|p| p.ms);

    let mut meter = FlowMeter::new(FlowConfig::default(), 0);
    let mut records = Vec::new();
    for p in &pkts {
        let len = u32::try_from(p.frame.len()).expect("small frame");
        let meta = decode(LinkType::Ethernet, &p.frame, at_ms(p.ms), len).expect("scenario frames decode");
        meter.on_clock(meta.ts, &mut |r| records.push(r));
        meter.on_packet(&meta, &mut |r| records.push(r));
    }
    meter.finish(&mut |r| records.push(r));
    (truth, records)
}

/// The meter's record of a flow, found by its initiator endpoint.
pub fn record_of<'a>(records: &'a [FlowRecord], f: &FlowTruth) -> &'a FlowRecord {
    let client = IpAddress::from(f.client);
    let server = IpAddress::from(f.server);
    let found: Vec<&FlowRecord> = records
        .iter()
        .filter(|r| r.src == client && r.dst == server && r.proto == f.proto && r.src_port == f.cport)
        .collect();
    assert_eq!(found.len(), 1, "one record for {f:?}");
    found[0]
}

/// Checks the flow meter against the scenario's truth, so the export tests start from
/// records known to be right.
pub fn check_records_match_truth(truth: &[FlowTruth], records: &[FlowRecord]) {
    assert_eq!(records.len(), truth.len(), "one record per flow");
    for f in truth {
        let r = record_of(records, f);
        assert_eq!(r.dst_port, f.sport, "{f:?}");
        assert_eq!(r.vlan, f.vlan, "{f:?}");
        for (d, t) in [(&r.fwd, &f.fwd), (&r.rev, &f.rev)] {
            assert_eq!((d.packets, d.bytes, d.tcp_flags), (t.packets, t.bytes, t.flags), "{f:?}");
            if t.packets > 0 {
                assert_eq!((d.first.0 / 1_000_000, d.last.0 / 1_000_000), (t.first_ms, t.last_ms), "{f:?}");
                assert_eq!((d.min_ttl, d.max_ttl), (t.min_ttl, t.max_ttl), "{f:?}");
            }
        }
    }
}

/// Runs `program -V` (or `--version`), failing the test with an install hint when missing.
pub fn require_tool(program: &str, version_arg: &str, package: &str) -> String {
    match Command::new(program).arg(version_arg).output() {
        Ok(out) => {
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        }
        Err(e) => panic!("`{program}` is required for this test ({e}): apt-get install -y {package}"),
    }
}

pub use outpost_export::test_broker::free_udp_port;

/// A socket's line in /proc/net/udp for 127.0.0.1:`port`: (rx_queue bytes, drops).
fn udp_socket_state(port: u16) -> Option<(u64, u64)> {
    let f = fs::File::open("/proc/net/udp").ok()?;
    let want = format!("0100007F:{port:04X}");
    for line in BufReader::new(f).lines().map_while(Result::ok).skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) == Some(&want.as_str()) {
            let rx = cols.get(4)?.split(':').nth(1).and_then(|h| u64::from_str_radix(h, 16).ok())?;
            let drops = cols.last()?.parse().ok()?;
            return Some((rx, drops));
        }
    }
    None
}

/// nfcapd listening on 127.0.0.1:`port`, writing into a temporary directory. Killed on drop,
/// so a failing test leaves no process behind.
pub struct Nfcapd {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Nfcapd {
    /// Starts nfcapd and waits until its socket is bound.
    pub fn start() -> Nfcapd {
        let version = require_tool("nfcapd", "-V", "nfdump");
        assert!(version.contains("1.7"), "tests were written against nfcapd 1.7.x, found: {version}");
        let dir = tempfile::tempdir().expect("temp dir");
        let flows = dir.path().join("flows");
        fs::create_dir(&flows).expect("flows dir");
        let log = dir.path().join("nfcapd.log");
        let port = free_udp_port();
        let child = Command::new("nfcapd")
            .args(["-b", "127.0.0.1", "-p", &port.to_string(), "-w"])
            .arg(&flows)
            .args(["-t", "3600"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).expect("log file"))
            .stderr(fs::File::create(dir.path().join("nfcapd.err")).expect("log file"))
            .spawn()
            .expect("start nfcapd");
        let mut n = Nfcapd { child: Some(child), port, dir, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while udp_socket_state(port).is_none() {
            if let Some(c) = n.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("nfcapd exited early ({status}): {}", n.logs());
            }
            assert!(Instant::now() < deadline, "nfcapd did not bind 127.0.0.1:{port}: {}", n.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// nfcapd's output so far.
    pub fn logs(&self) -> String {
        let out = fs::read_to_string(&self.log).unwrap_or_default();
        let err = fs::read_to_string(self.dir.path().join("nfcapd.err")).unwrap_or_default();
        format!("{out}{err}")
    }

    /// Waits until nfcapd has read every datagram (its receive queue is empty), checks none
    /// was dropped, stops it with SIGTERM (it then closes its file) and returns the flow
    /// files it wrote.
    pub fn stop(&mut self) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (rx, drops) = udp_socket_state(self.port).expect("nfcapd socket");
            assert_eq!(drops, 0, "datagrams dropped at the collector socket");
            if rx == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "nfcapd did not read its datagrams");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The last datagram was read; give nfcapd a moment to process it.
        std::thread::sleep(Duration::from_millis(300));
        let mut child = self.child.take().expect("nfcapd running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill nfcapd");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait nfcapd") {
                assert!(status.success() || status.code().is_some(), "nfcapd ended by signal: {status}");
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("nfcapd did not exit after SIGTERM: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path().join("flows"))
            .expect("flows dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("nfcapd.")))
            .collect();
        files.sort();
        files
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `nfdump` with `args` on `file` in UTC and returns its standard output.
pub fn nfdump(file: &Path, args: &[&str]) -> String {
    require_tool("nfdump", "-V", "nfdump");
    let out =
        Command::new("nfdump").env("TZ", "UTC").arg("-r").arg(file).args(args).output().expect("run nfdump");
    assert!(out.status.success(), "nfdump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("nfdump prints UTF-8")
}

/// Writes `datagrams` as IPv4/UDP frames from 127.0.0.1:50000 to 127.0.0.1:`dport` into a pcap
/// file, one per millisecond.
pub fn write_datagram_pcap(path: &Path, datagrams: &[Vec<u8>], dport: u16) {
    let file = fs::File::create(path).expect("pcap file");
    let mut w = PcapWriter::new(file, LinkType::Ethernet, Precision::Micro).expect("pcap header");
    let lo: IpAddr = "127.0.0.1".parse().expect("loopback");
    for (i, d) in datagrams.iter().enumerate() {
        let frame = FrameBuilder::new(lo, lo, udp(50_000, dport)).payload(d).build();
        let len = u32::try_from(frame.len()).expect("frame length");
        w.write_packet(at_ms(i as u64), &frame, len).expect("write packet");
    }
    w.finish().expect("flush pcap");
}

/// Runs tshark with `args` on `file`, returning standard output (and failing on a non-zero
/// exit).
pub fn tshark(file: &Path, args: &[&str]) -> String {
    require_tool("tshark", "--version", "tshark");
    let out = Command::new("tshark").arg("-r").arg(file).args(args).output().expect("run tshark");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("tshark prints UTF-8")
}
