//! Threshold rules (`[[threshold]]`) end to end through the public API: rules compiled from
//! TOML text, packets built as frames and decoded, fed to per-worker `Detector`s sharded by
//! source address the way the dispatcher shards them, and their outputs (alerts, partial
//! aggregates) routed to a `CentralDetector` with clock ticks and watermarks the way the
//! pipeline does (`sensor/src/worker.rs`, `sensor/src/replay.rs`).
//!
//! Covered: the four aggregates (count, sum, distinct, ratio) alerting exactly when the
//! threshold is reached and once per window; sliding and tumbling windows against a bucketed
//! model; the three placements (source-keyed rules in the owning worker, destination-keyed
//! rules merged centrally and identical for any worker count, flow rules in the collector);
//! HyperLogLog above `exact_limit`; flow conditions; `max_keys` (least recently updated key
//! dropped, memory bounded); out-of-order input within and beyond `lateness`; the counters.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use outpost_decode::meta::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use outpost_decode::{Duration, IpAddress, LinkType, Nanos, PacketMeta, decode};
use outpost_detector::central::CentralRuleStats;
use outpost_detector::threshold::ThresholdStats;
use outpost_detector::{
    Alert, AlertDetail, AlertPolicyConfig, CentralDetector, CentralOutput, Detector, DetectorOutput,
    DetectorStats, KeyValue, NetworkMap, RuleId, RuleSet, RuleStats, RulesConfig, SourceText, WorkerPlace,
};
use outpost_flowmeter::{DirectionCounters, EndReason, FlowRecord};
use outpost_tools::alloc::{Counting, allocations, live_bytes};
use outpost_tools::frame::{FrameBuilder, tcp, udp};
use outpost_tools::splitmix::SplitMix64 as Rng;

// ---- allocation counting ------------------------------------------------------------------

#[global_allocator]
static GLOBAL: Counting = Counting;

fn size(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

// ---- inputs -------------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z, a multiple of every window used here, so buckets start at `T0`.
const T0: u64 = 1_767_225_600 * 1_000_000_000;

/// `T0` plus `ms` milliseconds.
fn ms(ms: u64) -> Nanos {
    Nanos(T0 + ms * 1_000_000)
}

/// `T0` plus `s` seconds.
fn secs(s: u64) -> Nanos {
    ms(s * 1000)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn v4(bits: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(bits))
}

fn addr(a: IpAddr) -> IpAddress {
    IpAddress::from(a)
}

/// Builds the frame and decodes it, as a worker does.
fn decoded(b: &FrameBuilder, ts: Nanos) -> PacketMeta {
    let frame = b.build();
    let len = u32::try_from(frame.len()).expect("small frame");
    decode(LinkType::Ethernet, &frame, ts, len).expect("a built frame decodes")
}

fn tcp_packet(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u16, ts: Nanos) -> PacketMeta {
    decoded(&FrameBuilder::new(src, dst, tcp(sport, dport, flags, 1, 0)), ts)
}

fn syn(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, ts: Nanos) -> PacketMeta {
    tcp_packet(src, dst, sport, dport, SYN, ts)
}

/// A UDP datagram whose IPv4 total length is `ip_len` (at least 28).
fn udp_packet(src: IpAddr, dst: IpAddr, dport: u16, ip_len: usize, ts: Nanos) -> PacketMeta {
    let payload = vec![0u8; ip_len - 28];
    let m = decoded(&FrameBuilder::new(src, dst, udp(40000, dport)).payload(&payload), ts);
    assert_eq!(m.ip_len as usize, ip_len);
    m
}

/// Flow record builder: a TCP flow from `src` to `dst:dport`.
#[derive(Clone, Copy)]
struct Flow {
    id: u64,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    proto: u8,
    start: Nanos,
    duration: Duration,
    bytes: u64,
    fwd_flags: u8,
    rev_flags: u8,
    replied: bool,
}

/// TCP flag bits as a flow record holds them.
const HANDSHAKE_FWD: u8 = (SYN | ACK | PSH | FIN) as u8;
const HANDSHAKE_REV: u8 = (SYN | ACK | PSH | FIN) as u8;

impl Flow {
    /// A completed TCP connection of 3 s and 3,000 bytes.
    fn complete(id: u64, src: IpAddr, dst: IpAddr, dport: u16, start: Nanos) -> Flow {
        Flow {
            id,
            src,
            dst,
            dport,
            proto: 6,
            start,
            duration: Duration::from_secs(3),
            bytes: 3000,
            fwd_flags: HANDSHAKE_FWD,
            rev_flags: HANDSHAKE_REV,
            replied: true,
        }
    }

    /// A SYN answered by a SYN-ACK and never completed.
    fn half_open(id: u64, src: IpAddr, dst: IpAddr, dport: u16, start: Nanos) -> Flow {
        Flow {
            duration: Duration::from_millis(1),
            bytes: 104,
            fwd_flags: SYN as u8,
            rev_flags: (SYN | ACK) as u8,
            ..Flow::complete(id, src, dst, dport, start)
        }
    }

    fn record(self) -> FlowRecord {
        let end = self.start.saturating_add(self.duration);
        let fwd_bytes = if self.replied { self.bytes / 2 } else { self.bytes };
        let side = |packets: u64, bytes: u64, flags: u8| DirectionCounters {
            packets,
            bytes,
            tcp_flags: flags,
            first: if packets > 0 { self.start } else { Nanos::ZERO },
            last: if packets > 0 { end } else { Nanos::ZERO },
            min_ttl: if packets > 0 { 64 } else { 0 },
            max_ttl: if packets > 0 { 64 } else { 0 },
        };
        FlowRecord {
            flow_id: self.id,
            sequence: 0,
            src: addr(self.src),
            dst: addr(self.dst),
            src_port: 50000 + (self.id % 10000) as u16,
            dst_port: self.dport,
            proto: self.proto,
            vlan: 0,
            icmp_type: 0,
            icmp_code: 0,
            dscp: 0,
            fwd: side(3, fwd_bytes, self.fwd_flags),
            rev: if self.replied { side(2, self.bytes - fwd_bytes, self.rev_flags) } else { side(0, 0, 0) },
            end_reason: EndReason::TcpFin,
        }
    }
}

/// A spoofed source address in 10.0.0.0/8.
fn source(rng: &mut Rng) -> IpAddr {
    v4(0x0a00_0000 | (rng.next_u64() as u32 & 0x00ff_ffff))
}

// ---- rules --------------------------------------------------------------------------------

fn compile(text: &str) -> Arc<RuleSet> {
    let src = SourceText::new("threshold.toml", text);
    let cfg: RulesConfig = src.parse().unwrap_or_else(|e| panic!("{e}"));
    Arc::new(RuleSet::compile([(&cfg, &src, "")]).unwrap_or_else(|e| panic!("{e}")))
}

fn compile_error(text: &str) -> String {
    let src = SourceText::new("threshold.toml", text);
    match src.parse::<RulesConfig>().and_then(|cfg| RuleSet::compile([(&cfg, &src, "")])) {
        Ok(_) => panic!("the rules compiled:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A `[[threshold]]` table; `dedup = "0s"` so the alert policy passes every alert the rule
/// raises and the tests see the rule itself.
fn rule(name: &str, body: &str) -> String {
    format!("[[threshold]]\nname = \"{name}\"\ndedup = \"0s\"\n{body}\n")
}

/// A Merged rule that holds at most two destinations: three UDP packets to one destination
/// within 10 s (five 2-s buckets).
fn small_flood() -> Arc<RuleSet> {
    compile(&rule(
        "flood",
        "filter = \"udp\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nwindow_buckets = 5\nthreshold = 3\nmax_keys = 2",
    ))
}

// ---- the pipeline -------------------------------------------------------------------------

const RUN_KEY: u64 = 0x0000_7574_706f_7374;

/// An alert a worker raised: which worker, and the frame it was processing (none: a tick).
#[derive(Debug, Clone, Copy)]
struct Raised {
    worker: usize,
    frame: Option<u64>,
    alert: Alert,
}

/// Workers and the collector, wired as the sensor wires them: each packet goes to the worker
/// owning its source address; every `tick_every` packets every worker gets a clock tick at
/// the receive side's clock (the latest timestamp read) and the collector a watermark.
struct Sensor {
    rules: Arc<RuleSet>,
    workers: Vec<Detector>,
    central: CentralDetector,
    seq: u64,
    frame: u64,
    clock: Nanos,
    tick_every: usize,
    since_tick: usize,
    alerts: Vec<Alert>,
    raised: Vec<Raised>,
    packets_per_worker: Vec<u64>,
    partials_per_worker: Vec<u64>,
}

fn keep(o: CentralOutput, alerts: &mut Vec<Alert>) {
    if let CentralOutput::Alert(a) = o {
        alerts.push(a);
    }
}

impl Sensor {
    fn new(rules: &Arc<RuleSet>, workers: usize, lateness: Duration) -> Sensor {
        let networks = Arc::new(NetworkMap::new(&[]));
        let detectors = (0..workers)
            .map(|index| {
                let place = WorkerPlace { index, count: workers };
                Detector::new(rules.clone(), networks.clone(), RUN_KEY, place, lateness)
            })
            .collect();
        let central =
            CentralDetector::new(rules.clone(), networks, &AlertPolicyConfig::default(), RUN_KEY, lateness);
        Sensor {
            rules: rules.clone(),
            workers: detectors,
            central,
            seq: 0,
            frame: 0,
            clock: Nanos::ZERO,
            tick_every: 1,
            since_tick: 0,
            alerts: Vec::new(),
            raised: Vec::new(),
            packets_per_worker: vec![0; workers],
            partials_per_worker: vec![0; workers],
        }
    }

    fn ticking_every(mut self, packets: usize) -> Sensor {
        self.tick_every = packets.max(1);
        self
    }

    /// The worker the dispatcher sends a frame from `src` to.
    fn owner(&self, src: &IpAddress) -> usize {
        let count = self.workers.len();
        let owners: Vec<usize> = (0..count).filter(|&index| WorkerPlace { index, count }.owns(src)).collect();
        assert_eq!(owners.len(), 1, "exactly one worker owns {src}");
        owners[0]
    }

    /// The first address of 10.0.0.1.. that worker `w` owns.
    fn source_on(&self, w: usize) -> IpAddr {
        (1..500u32).map(|i| v4(0x0a00_0000 + i)).find(|a| self.owner(&addr(*a)) == w).expect("a source")
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn packet(&mut self, m: &PacketMeta) {
        self.frame += 1;
        let seq = self.next_seq();
        self.clock = self.clock.max(m.ts);
        let w = self.owner(&m.src);
        self.packets_per_worker[w] += 1;
        let mut out = Vec::new();
        self.workers[w].on_packet(m, self.frame, &mut |o| out.push(o));
        self.route(w, seq, Some(self.frame), out);
        self.since_tick += 1;
        if self.since_tick >= self.tick_every {
            self.tick();
        }
    }

    fn packets<'a>(&mut self, ms: impl IntoIterator<Item = &'a PacketMeta>) {
        for m in ms {
            self.packet(m);
        }
    }

    fn route(&mut self, worker: usize, seq: u64, frame: Option<u64>, outputs: Vec<DetectorOutput>) {
        for o in outputs {
            match o {
                DetectorOutput::Alert(alert) => {
                    self.raised.push(Raised { worker, frame, alert });
                    let alerts = &mut self.alerts;
                    self.central.on_alert(seq, alert, &mut |c| keep(c, alerts));
                }
                DetectorOutput::Partial(p) => {
                    self.partials_per_worker[worker] += 1;
                    self.central.on_partial(p);
                }
                DetectorOutput::Baseline(b) => self.central.on_baseline(b),
            }
        }
    }

    /// A clock tick every worker receives, then the watermark it makes.
    fn tick(&mut self) {
        self.since_tick = 0;
        let seq = self.next_seq();
        for w in 0..self.workers.len() {
            let mut out = Vec::new();
            self.workers[w].on_clock(self.clock, seq, &mut |o| out.push(o));
            self.route(w, seq, None, out);
        }
        let alerts = &mut self.alerts;
        self.central.on_watermark(self.clock, &mut |c| keep(c, alerts));
    }

    /// The clock moves on without packets (a live source's idle tick).
    fn idle_until(&mut self, now: Nanos) {
        self.clock = self.clock.max(now);
        self.tick();
    }

    /// A flow record reaching the collector.
    fn flow(&mut self, r: &FlowRecord) {
        let seq = self.next_seq();
        let alerts = &mut self.alerts;
        self.central.on_flow(seq, r, &mut |c| keep(c, alerts));
    }

    fn worker_stats(&self) -> DetectorStats {
        let mut total = DetectorStats::default();
        for w in &self.workers {
            total.merge(&w.stats());
        }
        total
    }

    fn finish(mut self) -> Run {
        let seq = self.next_seq();
        for w in 0..self.workers.len() {
            let mut out = Vec::new();
            self.workers[w].finish(&mut |o| out.push(o));
            self.route(w, seq, None, out);
        }
        let alerts = &mut self.alerts;
        self.central.finish(&mut |c| keep(c, alerts));
        Run {
            worker_stats: self.worker_stats(),
            central_stats: self.central.stats().rules,
            rules: self.rules,
            alerts: self.alerts,
            packets_per_worker: self.packets_per_worker,
            partials_per_worker: self.partials_per_worker,
        }
    }
}

/// What a run produced.
struct Run {
    rules: Arc<RuleSet>,
    /// Alerts that passed the alert policy, in output order.
    alerts: Vec<Alert>,
    worker_stats: DetectorStats,
    central_stats: Vec<CentralRuleStats>,
    packets_per_worker: Vec<u64>,
    partials_per_worker: Vec<u64>,
}

impl Run {
    fn id(&self, name: &str) -> RuleId {
        self.rules.id_of(name).unwrap_or_else(|| panic!("no rule {name}"))
    }

    fn alerts_of(&self, name: &str) -> Vec<Alert> {
        let id = self.id(name);
        self.alerts.iter().filter(|a| a.rule == id).copied().collect()
    }

    /// The workers' counters of a rule, summed.
    fn workers(&self, name: &str) -> ThresholdStats {
        match self.worker_stats.rules.get(usize::from(self.id(name).0)) {
            Some(RuleStats::Threshold(s)) => s.clone(),
            other => panic!("{name}: no worker threshold counters: {other:?}"),
        }
    }

    /// The collector's counters of a rule.
    fn collector(&self, name: &str) -> ThresholdStats {
        match self.central_stats.get(usize::from(self.id(name).0)) {
            Some(CentralRuleStats::Threshold(s)) => s.clone(),
            other => panic!("{name}: no collector threshold counters: {other:?}"),
        }
    }
}

fn detail(a: &Alert) -> (f64, u64) {
    match a.detail {
        AlertDetail::Threshold { value, events } => (value, events),
        other => panic!("not a threshold alert: {other:?}"),
    }
}

fn src_key(src: IpAddr) -> KeyValue {
    KeyValue { src: addr(src), ..KeyValue::default() }
}

fn dst_key(dst: IpAddr) -> KeyValue {
    KeyValue { dst: addr(dst), ..KeyValue::default() }
}

fn pair_key(src: IpAddr, dst: IpAddr) -> KeyValue {
    KeyValue { src: addr(src), dst: addr(dst), ..KeyValue::default() }
}

/// One worker, no lateness, a tick after every packet.
fn run_alone(rules: &Arc<RuleSet>, packets: &[PacketMeta]) -> Run {
    let mut s = Sensor::new(rules, 1, Duration::ZERO);
    s.packets(packets);
    s.finish()
}

/// Alerts in a canonical order: output order depends on when watermarks come.
fn sorted(alerts: &[Alert]) -> Vec<Alert> {
    let mut v = alerts.to_vec();
    v.sort_by_key(|a| (a.ts, a.rule, a.key, a.id.0));
    v
}

fn times(alerts: &[Alert]) -> Vec<Nanos> {
    alerts.iter().map(|a| a.ts).collect()
}

// ---- aggregates ---------------------------------------------------------------------------

#[test]
fn count_alerts_once_on_the_packet_that_reaches_the_threshold() {
    let rules =
        compile(&rule("udp-burst", "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 5"));
    let (a, b, dst) = (ip("203.0.113.5"), ip("203.0.113.6"), ip("192.0.2.10"));
    let mut packets = Vec::new();
    for i in 0..20 {
        packets.push(udp_packet(a, dst, 53, 100, secs(i)));
        // Not selected by the filter: must not count.
        packets.push(syn(a, dst, 40000, 80, secs(i)));
    }
    for i in 0..4 {
        packets.push(udp_packet(b, dst, 53, 100, secs(30 + i)));
    }
    packets.sort_by_key(|m| m.ts);
    let run = run_alone(&rules, &packets);

    let alerts = run.alerts_of("udp-burst");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = alerts[0];
    assert_eq!(alert.key, src_key(a));
    assert_eq!(alert.ts, secs(4), "the fifth UDP datagram reaches 5");
    // The fifth datagram is frame 9 (UDP and SYN alternate, UDP first).
    assert_eq!(alert.frame, Some(9));
    assert_eq!(detail(&alert), (5.0, 5));
    let stats = run.workers("udp-burst");
    assert_eq!((stats.matched, stats.crossed, stats.peak_keys, stats.late, stats.evicted), (24, 1, 2, 0, 0));
}

#[test]
fn sum_of_bytes_alerts_when_the_window_total_reaches_the_threshold() {
    let rules = compile(&rule(
        "upload",
        "filter = \"udp\"\nkey = [\"src_ip\", \"dst_ip\"]\naggregate = \"sum\"\nfield = \"bytes\"\n\
         window = \"10s\"\nthreshold = 10000",
    ));
    let (a, s1, s2) = (ip("10.1.0.7"), ip("198.51.100.1"), ip("198.51.100.2"));
    let mut packets = Vec::new();
    // 100 small datagrams to s1 first: 2,800 bytes in 100 inputs, far from 10,000.
    for i in 0..100 {
        packets.push(udp_packet(a, s1, 514, 28, ms(i * 10)));
    }
    // Then 1,000-byte datagrams to s1 (7 of them: 9,800) and to s2 (9: 9,000, another key).
    for i in 0..9 {
        packets.push(udp_packet(a, s2, 514, 1000, ms(1000 + i * 10)));
        if i < 7 {
            packets.push(udp_packet(a, s1, 514, 1000, ms(1005 + i * 10)));
        }
    }
    // s1 at 9,800 + 199 = 9,999: one byte short.
    packets.push(udp_packet(a, s1, 514, 199, ms(2000)));
    // The next datagram reaches it: 9,999 + 28 = 10,027.
    packets.push(udp_packet(a, s1, 514, 28, ms(2001)));
    let run = run_alone(&rules, &packets);

    let alerts = run.alerts_of("upload");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].key, pair_key(a, s1));
    assert_eq!(alerts[0].ts, ms(2001));
    assert_eq!(detail(&alerts[0]), (10_027.0, 109), "the byte total over 109 datagrams");
}

#[test]
fn distinct_ports_alert_once_when_the_window_reaches_the_threshold() {
    let rules = compile(&rule(
        "port-scan",
        "filter = \"tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn\"\nkey = [\"src_ip\", \"dst_ip\"]\n\
         aggregate = \"distinct\"\nfield = \"dst_port\"\nwindow = \"60s\"\nthreshold = 10",
    ));
    let (scanner, host) = (ip("203.0.113.9"), ip("192.168.1.20"));
    let mut packets = Vec::new();
    let mut t = 0;
    let mut next = || {
        t += 100;
        ms(t)
    };
    // Ports 1..=9, each twice: nine distinct values in eighteen inputs.
    for round in 0..2 {
        for port in 1..=9 {
            packets.push(syn(scanner, host, 40000 + round, port, next()));
        }
    }
    // A SYN-ACK to port 10 is not a probe.
    packets.push(tcp_packet(scanner, host, 40000, 10, SYN | ACK, next()));
    // The tenth distinct port.
    packets.push(syn(scanner, host, 40000, 10, next()));
    let crossing = packets.last().expect("packets").ts;
    // Twenty more ports in the same window: no second alert.
    for port in 11..=30 {
        packets.push(syn(scanner, host, 40000, port, next()));
    }
    let run = run_alone(&rules, &packets);

    let alerts = run.alerts_of("port-scan");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].key, pair_key(scanner, host));
    assert_eq!(alerts[0].ts, crossing);
    assert_eq!(alerts[0].dst_port, 10);
    assert_eq!(detail(&alerts[0]), (10.0, 19), "10 distinct ports over 19 SYNs");
    let stats = run.workers("port-scan");
    assert_eq!((stats.matched, stats.crossed), (39, 1));
}

#[test]
fn ratio_of_unanswered_syns_is_judged_once_min_events_flows_are_in() {
    let rules = compile(&rule(
        "half-open",
        "input = \"flows\"\nfilter = \"tcp[tcpflags] & tcp-syn != 0\"\nkey = [\"src_ip\"]\n\
         aggregate = \"ratio\"\nratio = { flow = { handshake = false } }\nmin_events = 10\n\
         window = \"5m\"\nthreshold = 0.8",
    ));
    let (a, b, server) = (ip("203.0.113.40"), ip("10.2.0.9"), ip("192.168.1.80"));
    let mut s = Sensor::new(&rules, 1, Duration::ZERO);
    let mut id = 0;
    let mut at = |who, complete: bool| {
        id += 1;
        let start = secs(id);
        if complete {
            Flow::complete(id, who, server, 80, start)
        } else {
            Flow::half_open(id, who, server, 80, start)
        }
    };
    // A: nine half-open flows, a ratio of 1 that is not judged before ten flows.
    for _ in 0..9 {
        s.flow(&at(a, false).record());
    }
    assert!(s.alerts.is_empty(), "judged before min_events: {:#?}", s.alerts);
    // UDP flows are not inputs (no SYN), whatever they look like.
    for _ in 0..5 {
        let mut f = at(a, false);
        f.proto = 17;
        f.fwd_flags = 0;
        f.rev_flags = 0;
        s.flow(&f.record());
    }
    assert!(s.alerts.is_empty());
    let tenth = at(a, false).record();
    s.flow(&tenth);
    assert_eq!(s.alerts.len(), 1);
    assert_eq!((s.alerts[0].key, s.alerts[0].flow_id), (src_key(a), Some(tenth.flow_id)));
    assert_eq!(detail(&s.alerts[0]), (1.0, 10));

    // B: three completed and seven half-open flows (0.7), then half-open ones: 8/11, 9/12,
    // 10/13, 11/14 stay below 0.8, 12/15 reaches it.
    for i in 0..10 {
        s.flow(&at(b, i < 3).record());
    }
    for _ in 0..4 {
        s.flow(&at(b, false).record());
    }
    assert_eq!(s.alerts.len(), 1, "B below the ratio: {:#?}", s.alerts);
    let fifteenth = at(b, false).record();
    s.flow(&fifteenth);
    let run = s.finish();
    let alerts = run.alerts_of("half-open");
    assert_eq!(alerts.len(), 2);
    assert_eq!(
        (alerts[1].key, alerts[1].flow_id, alerts[1].ts),
        (src_key(b), Some(fifteenth.flow_id), fifteenth.end())
    );
    assert_eq!(detail(&alerts[1]), (0.8, 15));
    let stats = run.collector("half-open");
    assert_eq!((stats.matched, stats.crossed, stats.keys), (25, 2, 2));
}

#[test]
fn ratio_over_packets_counts_the_subset_against_all_inputs() {
    // RSTs among the TCP segments a host sends to one peer: a closed-port storm.
    let rules = compile(&rule(
        "rst-ratio",
        "filter = \"tcp\"\nkey = [\"src_ip\", \"dst_ip\"]\naggregate = \"ratio\"\n\
         ratio = { filter = \"tcp[tcpflags] & tcp-rst != 0\" }\nmin_events = 4\nwindow = \"10s\"\nthreshold = 0.5",
    ));
    let (host, peer) = (ip("192.168.1.5"), ip("10.9.9.9"));
    let flags = [ACK, RST | ACK, ACK, ACK, RST, ACK, RST, RST];
    let packets: Vec<PacketMeta> = flags
        .iter()
        .enumerate()
        .map(|(i, &f)| tcp_packet(host, peer, 22, 50000, f, ms(i as u64 * 100)))
        .collect();
    let run = run_alone(&rules, &packets);
    // 1/4 (judged, low), 2/5, 2/6, 3/7, 4/8 = 0.5: the eighth segment.
    let alerts = run.alerts_of("rst-ratio");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!((alerts[0].ts, detail(&alerts[0])), (ms(700), (0.5, 8)));
}

// ---- windows ------------------------------------------------------------------------------

#[test]
fn a_sliding_window_drops_an_input_when_its_bucket_leaves_the_window() {
    // 60 s in six 10 s buckets: an input at 5 s counts until 60 s, not at 60 s.
    let rules =
        compile(&rule("udp-5", "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 5"));
    let (a, b, dst) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("192.0.2.1"));
    let mut packets = Vec::new();
    for s in [5, 15, 25, 35] {
        packets.push(udp_packet(a, dst, 9, 40, secs(s)));
        packets.push(udp_packet(b, dst, 9, 40, secs(s)));
    }
    packets.push(udp_packet(a, dst, 9, 40, ms(59_999)));
    packets.push(udp_packet(b, dst, 9, 40, secs(60)));
    packets.push(udp_packet(b, dst, 9, 40, ms(60_500)));
    let run = run_alone(&rules, &packets);
    let alerts = run.alerts_of("udp-5");
    let got: Vec<(KeyValue, Nanos, (f64, u64))> = alerts.iter().map(|a| (a.key, a.ts, detail(a))).collect();
    assert_eq!(
        got,
        [
            (src_key(a), ms(59_999), (5.0, 5)),
            // At 60 s the window is [10 s, 70 s): b has four inputs, then five at 60.5 s.
            (src_key(b), ms(60_500), (5.0, 5)),
        ]
    );
}

#[test]
fn a_key_alerts_again_once_the_window_has_moved_past_its_alert() {
    let rules =
        compile(&rule("udp-5", "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 5"));
    let (a, dst) = (ip("10.0.0.1"), ip("192.0.2.1"));
    let mut packets = Vec::new();
    // Alert at 4 s (bucket [0 s, 10 s)); the window moves past that bucket at 60 s.
    for s in [0, 1, 2, 3, 4, 12, 13, 14, 15, 16] {
        packets.push(udp_packet(a, dst, 9, 40, secs(s)));
    }
    packets.push(udp_packet(a, dst, 9, 40, ms(59_900)));
    packets.push(udp_packet(a, dst, 9, 40, secs(60)));
    packets.push(udp_packet(a, dst, 9, 40, secs(61)));
    let run = run_alone(&rules, &packets);
    let alerts = run.alerts_of("udp-5");
    // At 60 s the window [10 s, 70 s) holds 12..16 s, 59.9 s and 60 s: seven inputs, none of
    // them in the first alert's window.
    let got: Vec<(Nanos, (f64, u64))> = alerts.iter().map(|a| (a.ts, detail(a))).collect();
    assert_eq!(got, [(secs(4), (5.0, 5)), (secs(60), (7.0, 7))]);
}

#[test]
fn a_tumbling_window_starts_empty_at_each_boundary_and_alerts_once_per_window() {
    let body = |buckets: u32| {
        format!(
            "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"10s\"\nwindow_buckets = {buckets}\nthreshold = 3"
        )
    };
    let rules = compile(&format!("{}{}", rule("tumbling", &body(1)), rule("sliding", &body(5))));
    let (a, b, dst) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("192.0.2.1"));
    let mut packets = Vec::new();
    // a: 8 s and 9 s in [0, 10), 10.5 s in [10, 20): three within 2.5 s, but no tumbling
    // window holds three. Sliding (2 s buckets), 10.5 s sees [2 s, 12 s): three.
    for t in [8_000, 9_000, 10_500] {
        packets.push(udp_packet(a, dst, 9, 40, ms(t)));
    }
    // b: three in [0, 10), three more in [10, 20) right after the boundary.
    for t in [1_000, 2_000, 3_000, 10_100, 10_200, 10_300] {
        packets.push(udp_packet(b, dst, 9, 40, ms(t)));
    }
    packets.sort_by_key(|m| m.ts);
    let run = run_alone(&rules, &packets);
    let got = |name: &str| -> Vec<(KeyValue, Nanos)> {
        run.alerts_of(name).iter().map(|a| (a.key, a.ts)).collect()
    };
    assert_eq!(
        got("tumbling"),
        [(src_key(b), ms(3_000)), (src_key(b), ms(10_300))],
        "one alert in each tumbling window of b, none for a"
    );
    // Sliding: b's alert at 3 s quiets it until its bucket [2 s, 4 s) leaves, at 12 s.
    assert_eq!(got("sliding"), [(src_key(b), ms(3_000)), (src_key(a), ms(10_500))]);
}

#[test]
fn a_persistent_scan_alerts_once_per_window_in_the_worker_and_in_the_collector() {
    // One SYN a second cycling over 20 ports for three minutes.
    let body = |key: &str| {
        format!(
            "filter = \"tcp\"\nkey = [\"{key}\"]\naggregate = \"distinct\"\nfield = \"dst_port\"\n\
             window = \"60s\"\nthreshold = 10"
        )
    };
    let rules =
        compile(&format!("{}{}", rule("by-source", &body("src_ip")), rule("by-target", &body("dst_ip"))));
    let (scanner, host) = (ip("203.0.113.7"), ip("192.168.1.1"));
    let packets: Vec<PacketMeta> =
        (0..180u64).map(|s| syn(scanner, host, 40000, 1 + (s % 20) as u16, secs(s))).collect();
    let run = run_alone(&rules, &packets);
    // Worker (immediate): the tenth port at 9 s, then at the first input once the window moved
    // past the alert's bucket: 60 s and 120 s, every port still in the window.
    assert_eq!(times(&run.alerts_of("by-source")), [secs(9), secs(60), secs(120)]);
    // Collector (bucket ends): bucket [0, 10 s) already holds ten ports; then buckets
    // [60 s, 70 s) and [120 s, 130 s).
    assert_eq!(times(&run.alerts_of("by-target")), [secs(10), secs(70), secs(130)]);
}

/// Arrival times for `keys` keys over `span` seconds: bursts and pauses, merged in time order.
fn arrivals(rng: &mut Rng, keys: usize, span: u64) -> Vec<(usize, Nanos)> {
    let mut out = Vec::new();
    for k in 0..keys {
        let mut t = rng.below(5_000);
        while t < span * 1000 {
            out.push((k, ms(t)));
            t += match rng.below(100) {
                0..=69 => rng.below(3_000),
                70..=94 => 3_000 + rng.below(17_000),
                _ => 20_000 + rng.below(100_000),
            };
        }
    }
    out.sort_by_key(|&(k, t)| (t, k));
    out
}

/// The window a sensor keeps: `buckets` buckets of `window / buckets` ns, epoch aligned.
#[derive(Clone, Copy, Debug)]
struct Shape {
    window: u64,
    buckets: u64,
}

impl Shape {
    fn width(self) -> u64 {
        self.window / self.buckets
    }

    fn bucket(self, t: Nanos) -> u64 {
        t.0 / self.width()
    }
}

/// Immediate alerts by the documented semantics: at each input, the inputs of its key in the
/// buckets `k - G + 1 ..= k` (k: the input's bucket); alert when they reach `threshold` and
/// the key is not quiet; quiet until the window has moved past the alert's bucket.
fn immediate_model(inputs: &[(usize, Nanos)], shape: Shape, threshold: usize) -> Vec<(usize, Nanos)> {
    let mut seen: Vec<Vec<u64>> = Vec::new();
    let mut quiet: Vec<u64> = Vec::new();
    let mut alerts = Vec::new();
    for &(k, t) in inputs {
        if seen.len() <= k {
            seen.resize(k + 1, Vec::new());
            quiet.resize(k + 1, 0);
        }
        let b = shape.bucket(t);
        seen[k].push(b);
        let first = (b + 1).saturating_sub(shape.buckets);
        let n = seen[k].iter().filter(|&&x| x >= first && x <= b).count();
        if n >= threshold && t.0 >= quiet[k] {
            alerts.push((k, t));
            quiet[k] = (b + shape.buckets) * shape.width();
        }
    }
    alerts
}

/// Merged alerts by the documented semantics: for each bucket holding inputs of a key, in
/// order, the inputs in buckets `b - G + 1 ..= b`; alert at the bucket's end when they reach
/// `threshold`, then quiet for `G` buckets.
fn merged_model(inputs: &[(usize, Nanos)], shape: Shape, threshold: u64) -> Vec<(usize, Nanos)> {
    let mut per_key: std::collections::BTreeMap<usize, std::collections::BTreeMap<u64, u64>> =
        std::collections::BTreeMap::new();
    for &(k, t) in inputs {
        *per_key.entry(k).or_default().entry(shape.bucket(t)).or_default() += 1;
    }
    let mut alerts = Vec::new();
    for (&k, buckets) in &per_key {
        let mut quiet = 0;
        for &b in buckets.keys() {
            let first = (b + 1).saturating_sub(shape.buckets);
            let n: u64 = buckets.range(first..=b).map(|(_, n)| n).sum();
            if n >= threshold && b >= quiet {
                alerts.push((k, Nanos((b + 1) * shape.width())));
                quiet = b + shape.buckets;
            }
        }
    }
    alerts.sort_by_key(|&(k, t)| (t, k));
    alerts
}

/// Inputs of key `k` in `[from, to)`.
fn inputs_between(inputs: &[(usize, Nanos)], k: usize, from: u64, to: u64) -> u64 {
    inputs.iter().filter(|&&(i, t)| i == k && t.0 >= from && t.0 < to).count() as u64
}

const SHAPES: [(&str, u64); 4] = [("g1", 1), ("g4", 4), ("g6", 6), ("g7", 7)];

/// One UDP counting rule per window shape of [`SHAPES`] (60 s window), keyed by `key`.
fn model_rules(key: &str, threshold: usize) -> Arc<RuleSet> {
    let text: String = SHAPES
        .iter()
        .map(|(name, g)| {
            rule(
                name,
                &format!(
                    "filter = \"udp\"\nkey = [\"{key}\"]\nwindow = \"60s\"\nwindow_buckets = {g}\nthreshold = {threshold}"
                ),
            )
        })
        .collect();
    compile(&text)
}

#[test]
fn source_keyed_alerts_match_the_bucketed_window_model_for_random_input() {
    let window = 60_000_000_000;
    let threshold = 8;
    let rules = model_rules("src_ip", threshold);
    let sources: Vec<IpAddr> = (0..6).map(|i| v4(0x0a01_0000 + i)).collect();
    let dst = ip("192.0.2.53");
    for seed in 1..=4 {
        let inputs = arrivals(&mut Rng(seed), sources.len(), 900);
        let packets: Vec<PacketMeta> =
            inputs.iter().map(|&(k, t)| udp_packet(sources[k], dst, 53, 60, t)).collect();
        let mut s = Sensor::new(&rules, 3, Duration::ZERO).ticking_every(16);
        s.packets(&packets);
        let run = s.finish();
        for (name, g) in SHAPES {
            let shape = Shape { window, buckets: g };
            let got: Vec<(usize, Nanos)> = run
                .alerts_of(name)
                .iter()
                .map(|a| (sources.iter().position(|s| src_key(*s) == a.key).expect("a known key"), a.ts))
                .collect();
            let want = immediate_model(&inputs, shape, threshold);
            assert!(!want.is_empty(), "seed {seed} {name}: the input should cross");
            assert_eq!(got, want, "seed {seed} {name}");
            // Independently of the model: no alert from inputs further apart than the window.
            for &(k, t) in &got {
                let n = inputs_between(&inputs, k, (t.0 + 1).saturating_sub(window), t.0 + 1);
                assert!(
                    n >= threshold as u64,
                    "seed {seed} {name}: alert at {t:?} over {n} inputs in a window"
                );
            }
        }
    }
}

#[test]
fn destination_keyed_alerts_match_the_bucketed_window_model_for_random_input() {
    let window = 60_000_000_000;
    let threshold = 8;
    let rules = model_rules("dst_ip", threshold);
    let targets: Vec<IpAddr> = (0..6).map(|i| v4(0xc000_0200 + i)).collect();
    for seed in 11..=14 {
        let mut rng = Rng(seed);
        let inputs = arrivals(&mut rng, targets.len(), 900);
        // Every datagram from another spoofed source: the key's inputs spread over workers.
        let packets: Vec<PacketMeta> =
            inputs.iter().map(|&(k, t)| udp_packet(source(&mut rng), targets[k], 53, 60, t)).collect();
        let mut s = Sensor::new(&rules, 3, Duration::ZERO).ticking_every(5);
        s.packets(&packets);
        let run = s.finish();
        for (name, g) in SHAPES {
            let shape = Shape { window, buckets: g };
            let mut got: Vec<(usize, Nanos)> = run
                .alerts_of(name)
                .iter()
                .map(|a| (targets.iter().position(|d| dst_key(*d) == a.key).expect("a known key"), a.ts))
                .collect();
            got.sort_by_key(|&(k, t)| (t, k));
            let want = merged_model(&inputs, shape, threshold as u64);
            assert!(!want.is_empty(), "seed {seed} {name}: the input should cross");
            assert_eq!(got, want, "seed {seed} {name}");
            for &(k, end) in &got {
                let n = inputs_between(&inputs, k, end.0.saturating_sub(window), end.0);
                assert!(
                    n >= threshold as u64,
                    "seed {seed} {name}: alert at {end:?} over {n} inputs in a window"
                );
            }
        }
    }
}

#[test]
fn inputs_further_apart_than_the_window_never_alert_in_any_placement() {
    // Threshold 3 in 60 s: inputs 30.001 s apart put any three 60.002 s apart; the control
    // key's inputs 25 s apart do alert.
    let mut text = String::new();
    for (name, g) in [("g1", 1), ("g6", 6)] {
        let shape = format!("window = \"60s\"\nwindow_buckets = {g}\nthreshold = 3");
        text += &rule(&format!("local-{name}"), &format!("filter = \"udp\"\nkey = [\"src_ip\"]\n{shape}"));
        text += &rule(&format!("merged-{name}"), &format!("filter = \"udp\"\nkey = [\"dst_ip\"]\n{shape}"));
        text += &rule(&format!("flows-{name}"), &format!("input = \"flows\"\nkey = [\"src_ip\"]\n{shape}"));
    }
    let rules = compile(&text);
    let (sparse, control) = (ip("10.0.0.1"), ip("10.0.0.2"));
    let (sparse_dst, control_dst) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let mut events: Vec<(Nanos, IpAddr, IpAddr)> = Vec::new();
    for i in 0..20 {
        events.push((ms(i * 30_001), sparse, sparse_dst));
        events.push((ms(i * 25_000 + 7), control, control_dst));
    }
    events.sort_by_key(|e| e.0);
    let mut s = Sensor::new(&rules, 2, Duration::ZERO);
    for (n, &(t, src, dst)) in events.iter().enumerate() {
        s.packet(&udp_packet(src, dst, 53, 60, t));
        let mut f = Flow::complete(n as u64, src, dst, 443, Nanos(t.0 - 3_000_000_000));
        f.duration = Duration::from_secs(3);
        s.flow(&f.record());
    }
    let run = s.finish();
    for name in ["local-g1", "local-g6", "merged-g1", "merged-g6", "flows-g1", "flows-g6"] {
        let alerts = run.alerts_of(name);
        assert!(!alerts.is_empty(), "{name}: the control key must alert");
        for a in &alerts {
            assert!(a.key != src_key(sparse) && a.key != dst_key(sparse_dst), "{name}: {a:#?}");
        }
    }
}

// ---- keys and placements ------------------------------------------------------------------

#[test]
fn source_keyed_rules_alert_in_the_owning_worker_on_the_crossing_packet() {
    let rules =
        compile(&rule("udp-burst", "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 10"));
    let sources: Vec<IpAddr> = (0..40).map(|i| v4(0x0a05_0000 + i * 77)).collect();
    let dst = ip("192.0.2.53");
    // No clock tick until the end: source-keyed alerts do not wait for one.
    let mut s = Sensor::new(&rules, 4, Duration::ZERO).ticking_every(usize::MAX);
    for round in 0..10u64 {
        for (i, &src) in sources.iter().enumerate() {
            s.packet(&udp_packet(src, dst, 53, 60, ms(round * 1000 + i as u64)));
        }
    }
    assert_eq!(s.alerts.len(), sources.len(), "every source alerted before any tick");
    for r in &s.raised {
        assert_eq!(r.worker, s.owner(&r.alert.src), "raised by the worker owning {}", r.alert.src);
        assert_eq!(r.frame, r.alert.frame, "raised while processing the crossing frame");
        assert_eq!(r.alert.ts, ms(9000 + (r.alert.frame.expect("frame") - 361)), "the tenth round");
    }
    let run = s.finish();
    assert!(run.packets_per_worker.iter().all(|&n| n > 0), "{:?}", run.packets_per_worker);
    assert_eq!(run.partials_per_worker, [0, 0, 0, 0], "nothing is merged for source-keyed rules");
}

/// A mixed input: a SYN flood from spoofed sources on one victim, a lighter one on another,
/// UDP volume, and ordinary connections.
fn flood_mix(seed: u64) -> Vec<PacketMeta> {
    let mut rng = Rng(seed);
    let (v1, v2, v3, server) = (ip("192.0.2.10"), ip("192.0.2.20"), ip("192.0.2.30"), ip("198.51.100.80"));
    let mut packets = Vec::new();
    // v1: 300 SYNs/s from 5 s to 30 s; v2: 50 SYNs/s all along.
    for i in 0..7_500u64 {
        packets.push(syn(source(&mut rng), v1, 1024 + rng.below(60_000) as u16, 80, ms(5_000 + i * 10 / 3)));
    }
    for i in 0..2_000u64 {
        packets.push(syn(source(&mut rng), v2, 1024 + rng.below(60_000) as u16, 443, ms(i * 20)));
    }
    // UDP to v3: 1,200-byte datagrams from a few hosts, bursts above 100 kB per 10 s.
    for i in 0..600u64 {
        packets.push(udp_packet(v4(0xc633_6400 + (i % 7) as u32), v3, 9000, 1200, ms(12_000 + i * 30)));
    }
    // Ordinary connections: SYN, then ACK and data.
    for i in 0..400u64 {
        let client = v4(0x0a02_0000 + (i % 50) as u32);
        let t = ms(i * 100 + rng.below(50));
        packets.push(syn(client, server, 30000 + i as u16, 443, t));
        packets.push(tcp_packet(client, server, 30000 + i as u16, 443, ACK, Nanos(t.0 + 1_000_000)));
        packets.push(tcp_packet(client, server, 30000 + i as u16, 443, PSH | ACK, Nanos(t.0 + 2_000_000)));
    }
    packets.sort_by_key(|m| m.ts);
    packets
}

fn flood_rules() -> Arc<RuleSet> {
    let syn_only = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn";
    compile(&format!(
        "{}{}{}{}{}",
        rule(
            "syn-flood",
            &format!("filter = \"{syn_only}\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nthreshold = 2000")
        ),
        rule(
            "udp-volume",
            "filter = \"udp\"\nkey = [\"dst_ip\"]\naggregate = \"sum\"\nfield = \"bytes\"\nwindow = \"10s\"\nthreshold = 100000"
        ),
        rule(
            "spoofed-sources",
            &format!(
                "filter = \"{syn_only}\"\nkey = [\"dst_ip\"]\naggregate = \"distinct\"\nfield = \"src_ip\"\n\
                 window = \"10s\"\nthreshold = 1000"
            )
        ),
        rule(
            "syn-share",
            &format!(
                "filter = \"tcp\"\nkey = [\"dst_ip\", \"dst_port\"]\naggregate = \"ratio\"\n\
                 ratio = {{ filter = \"{syn_only}\" }}\nmin_events = 100\nwindow = \"10s\"\nthreshold = 0.95"
            )
        ),
        rule("chatty-client", "filter = \"tcp\"\nkey = [\"src_ip\"]\nwindow = \"30s\"\nthreshold = 10"),
    ))
}

#[test]
fn destination_keyed_rules_give_the_same_alerts_on_1_2_and_4_workers() {
    let rules = flood_rules();
    let packets = flood_mix(7);
    let runs: Vec<Run> = [(1, 1), (2, 7), (4, 64), (4, 1)]
        .iter()
        .map(|&(workers, tick_every)| {
            let mut s = Sensor::new(&rules, workers, Duration::from_millis(500)).ticking_every(tick_every);
            s.packets(&packets);
            s.finish()
        })
        .collect();
    let one = &runs[0];
    let (v1, v2, v3, server) = (ip("192.0.2.10"), ip("192.0.2.20"), ip("192.0.2.30"), ip("198.51.100.80"));
    // What must alert, and only that.
    let keys = |name: &str| -> Vec<KeyValue> {
        let mut k: Vec<KeyValue> = one.alerts_of(name).iter().map(|a| a.key).collect();
        k.sort();
        k.dedup();
        k
    };
    assert_eq!(keys("syn-flood"), [dst_key(v1)]);
    assert_eq!(keys("spoofed-sources"), [dst_key(v1)]);
    assert_eq!(keys("udp-volume"), [dst_key(v3)]);
    assert_eq!(
        keys("syn-share"),
        [KeyValue { dst_port: 80, ..dst_key(v1) }, KeyValue { dst_port: 443, ..dst_key(v2) }]
    );
    assert!(!keys("chatty-client").is_empty());
    assert!(one.alerts_of("syn-flood").iter().all(|a| a.key != dst_key(server)));
    // Merged alerts come at bucket ends (10 s / 6).
    let width = 10_000_000_000 / 6;
    for name in ["syn-flood", "udp-volume", "spoofed-sources", "syn-share"] {
        assert!(one.alerts_of(name).iter().all(|a| a.ts.0 % width == 0 && a.frame.is_none()), "{name}");
    }
    for (n, run) in runs.iter().enumerate().skip(1) {
        assert!(run.packets_per_worker.iter().all(|&p| p > 1000), "run {n}: {:?}", run.packets_per_worker);
        assert!(run.partials_per_worker.iter().all(|&p| p > 0), "run {n}: {:?}", run.partials_per_worker);
        assert_eq!(
            sorted(&run.alerts),
            sorted(&one.alerts),
            "run {n}: same alerts (rule, key, ts, value, id)"
        );
        for name in ["syn-flood", "udp-volume", "spoofed-sources", "syn-share", "chatty-client"] {
            assert_eq!(run.workers(name).matched, one.workers(name).matched, "run {n} {name}");
            assert_eq!(run.workers(name).late, 0, "run {n} {name}");
        }
    }
}

#[test]
fn destination_keyed_alerts_wait_for_the_watermark_past_the_bucket_end_plus_lateness() {
    let rules = compile(&rule(
        "flood",
        "filter = \"udp\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nwindow_buckets = 5\nthreshold = 20",
    ));
    let victim = ip("192.0.2.99");
    let mut rng = Rng(3);
    let mut s = Sensor::new(&rules, 2, Duration::from_secs(1));
    // 20 datagrams in bucket [0, 2 s).
    for i in 0..20 {
        s.packet(&udp_packet(source(&mut rng), victim, 53, 60, ms(i * 50)));
    }
    s.idle_until(ms(2_999));
    assert!(s.alerts.is_empty(), "bucket end 2 s + lateness 1 s not reached: {:#?}", s.alerts);
    s.idle_until(secs(3));
    assert_eq!(
        times(&s.alerts),
        [secs(2)],
        "judged once the watermark reached 3 s; stamped at the bucket end"
    );
    assert_eq!(s.alerts[0].key, dst_key(victim));
}

// ---- HyperLogLog --------------------------------------------------------------------------

#[test]
fn distinct_above_the_exact_limit_switches_to_hyperloglog_and_still_alerts() {
    let body = |limit: &str| {
        format!(
            "filter = \"tcp\"\nkey = [\"src_ip\", \"dst_ip\"]\naggregate = \"distinct\"\nfield = \"dst_port\"\n\
             window = \"60s\"\nthreshold = 5000\n{limit}"
        )
    };
    let rules =
        compile(&format!("{}{}", rule("sketch", &body("")), rule("exact", &body("exact_limit = 10000"))));
    let (scanner, host) = (ip("203.0.113.77"), ip("192.168.7.7"));
    // 10,000 distinct ports in a random order within 40 s.
    let mut ports: Vec<u16> = (1..=10_000).collect();
    let mut rng = Rng(99);
    for i in (1..ports.len()).rev() {
        ports.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let packets: Vec<PacketMeta> =
        ports.iter().enumerate().map(|(i, &p)| syn(scanner, host, 40000, p, ms(i as u64 * 4))).collect();
    let run = run_alone(&rules, &packets);

    let exact = run.alerts_of("exact");
    assert_eq!(exact.len(), 1);
    assert_eq!(detail(&exact[0]), (5000.0, 5000), "exact below its limit");
    let sketch = run.alerts_of("sketch");
    assert_eq!(sketch.len(), 1, "once per window: {sketch:#?}");
    let (value, events) = detail(&sketch[0]);
    // Every input is a new port, so `events` is the true distinct count when it alerted. The
    // sketch's standard error is 3.25 %; allow three of them.
    assert!(value >= 5000.0, "{value}");
    assert!((value - events as f64).abs() <= 0.1 * events as f64, "estimate {value} for {events} ports");
    assert!((4500..=5500).contains(&events), "crossed after {events} ports");
    assert_eq!(sketch[0].ts, ms((events - 1) * 4));
}

#[test]
fn merged_distinct_above_the_exact_limit_is_the_same_on_any_worker_count() {
    // 10,000 spoofed sources, one SYN each every 5 ms for 50 s: 2,000 new sources per 10 s
    // bucket. The true distinct count is 4,000 at 20 s and 6,000 at 30 s, so the alert must
    // come at the end of [20 s, 30 s).
    let rules = compile(&rule(
        "spoofed",
        "filter = \"tcp\"\nkey = [\"dst_ip\"]\naggregate = \"distinct\"\nfield = \"src_ip\"\n\
         window = \"60s\"\nthreshold = 5000",
    ));
    let victim = ip("192.0.2.10");
    let packets: Vec<PacketMeta> = (0..10_000u32)
        .map(|i| syn(v4(0x0a00_0000 + i * 131), victim, 2000, 80, ms(u64::from(i) * 5)))
        .collect();
    let runs: Vec<Run> = [1, 4]
        .iter()
        .map(|&workers| {
            let mut s = Sensor::new(&rules, workers, Duration::ZERO).ticking_every(32);
            s.packets(&packets);
            s.finish()
        })
        .collect();
    let alerts = runs[0].alerts_of("spoofed");
    assert_eq!(times(&alerts), [secs(30)], "{alerts:#?}");
    let (value, events) = detail(&alerts[0]);
    assert_eq!(events, 6000);
    assert!((value - 6000.0).abs() <= 600.0, "estimate {value} of 6,000");
    assert_eq!(runs[1].alerts, runs[0].alerts, "4 workers' sketches merge to the same estimate");
    assert!(runs[1].partials_per_worker.iter().all(|&p| p > 0));
}

// ---- flow rules ---------------------------------------------------------------------------

#[test]
fn flow_thresholds_count_only_flows_that_meet_the_flow_conditions() {
    let rules = compile(&rule(
        "ssh-brute",
        "input = \"flows\"\nfilter = \"tcp dst port 22\"\n\
         flow = { handshake = true, max_duration = \"10s\", max_bytes = 5000 }\n\
         key = [\"src_ip\", \"dst_ip\"]\nwindow = \"5m\"\nthreshold = 5",
    ));
    let (a, b, server) = (ip("203.0.113.50"), ip("203.0.113.51"), ip("192.168.1.22"));
    let mut s = Sensor::new(&rules, 1, Duration::ZERO);
    let mut id = 0;
    let mut next = |src, dport| {
        id += 1;
        Flow::complete(id, src, server, dport, secs(id * 10))
    };
    for _ in 0..4 {
        s.flow(&next(a, 22).record());
    }
    // Flows that do not count.
    let mut half = next(a, 22);
    half.rev_flags = (SYN | ACK) as u8;
    half.fwd_flags = (SYN | RST) as u8;
    let mut long = next(a, 22);
    long.duration = Duration(10_000_000_001);
    let mut big = next(a, 22);
    big.bytes = 5001;
    let other_port = next(a, 2222);
    let mut udp_22 = next(a, 22);
    udp_22.proto = 17;
    let mut no_reply = next(a, 22);
    no_reply.replied = false;
    for f in [half, long, big, other_port, udp_22, no_reply] {
        s.flow(&f.record());
    }
    // Another source's flow is another key.
    s.flow(&next(b, 22).record());
    assert!(s.alerts.is_empty(), "{:#?}", s.alerts);
    // On the limits: exactly 10 s and exactly 5,000 bytes still count.
    let mut fifth = next(a, 22);
    fifth.duration = Duration::from_secs(10);
    fifth.bytes = 5000;
    let fifth = fifth.record();
    s.flow(&fifth);
    let run = s.finish();
    let alerts = run.alerts_of("ssh-brute");
    assert_eq!(alerts.len(), 1);
    let alert = alerts[0];
    assert_eq!((alert.key, alert.flow_id, alert.ts), (pair_key(a, server), Some(fifth.flow_id), fifth.end()));
    assert_eq!(detail(&alert), (5.0, 5));
    assert_eq!(alert.frame, None);
    let stats = run.collector("ssh-brute");
    // b's single flow is only parked: a key gets its full state with its second input.
    assert_eq!((stats.matched, stats.crossed, stats.keys), (6, 1, 1));
}

#[test]
fn flow_records_out_of_order_within_the_window_count_and_older_ones_are_late() {
    let rules = compile(&rule(
        "many-flows",
        "input = \"flows\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 4",
    ));
    let (a, server) = (ip("10.3.3.3"), ip("192.0.2.80"));
    let mut s = Sensor::new(&rules, 1, Duration::ZERO);
    // Records end at 100 s, 95 s, 30 s (older than the window at 100 s: late), 90 s, 85 s.
    let ends = [100, 95, 30, 90, 85];
    let mut flows = Vec::new();
    for (i, end) in ends.into_iter().enumerate() {
        let r = Flow::complete(i as u64 + 1, a, server, 443, secs(end - 3)).record();
        assert_eq!(r.end(), secs(end));
        s.flow(&r);
        flows.push(r);
    }
    let run = s.finish();
    let alerts = run.alerts_of("many-flows");
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].flow_id, detail(&alerts[0])), (Some(5), (4.0, 4)), "the fourth in-window record");
    let stats = run.collector("many-flows");
    assert_eq!((stats.matched, stats.late, stats.crossed), (5, 1, 1));
}

// ---- max_keys -----------------------------------------------------------------------------

#[test]
fn beyond_max_keys_the_least_recently_updated_key_is_dropped_and_counted() {
    let rules = compile(&rule(
        "four",
        "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 4\nmax_keys = 3",
    ));
    let (a, b, c, d) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4"));
    let dst = ip("192.0.2.1");
    let p = |src, t| udp_packet(src, dst, 53, 60, ms(t));
    // A key takes a place in the table with its second input (its first is only parked).
    let packets = [
        p(a, 0),
        p(a, 100),
        p(b, 1_000),
        p(b, 1_100),
        p(c, 2_000),
        p(c, 2_100), // three keys: the table is full
        p(a, 2_500), // a: 3 inputs, touched last
        p(d, 3_000),
        p(d, 3_100), // d's place: b (least recently updated) is dropped
        p(b, 4_000), // b starts over (parked)...
        p(b, 4_100), // ...and takes c's place (c is now the least recently updated)
        p(a, 5_000), // a kept its three: the fourth alerts
        p(b, 5_100), // b: 3 since it started over, no alert
    ];
    let run = run_alone(&rules, &packets);
    let alerts = run.alerts_of("four");
    assert_eq!(alerts.iter().map(|x| (x.key, x.ts)).collect::<Vec<_>>(), [(src_key(a), ms(5_000))]);
    let stats = run.workers("four");
    assert_eq!((stats.matched, stats.evicted, stats.keys, stats.peak_keys), (13, 2, 3, 3));
}

#[test]
fn keys_seen_once_are_parked_and_alert_on_the_same_input_as_exact_counting() {
    let rules = compile(&rule(
        "ports",
        "filter = \"tcp\"\nkey = [\"src_ip\", \"dst_ip\"]\naggregate = \"distinct\"\n\
         field = \"dst_port\"\nwindow = \"60s\"\nthreshold = 3\nmax_keys = 10",
    ));
    let (scanner, victim) = (ip("203.0.113.9"), ip("192.0.2.1"));
    let mut packets = Vec::new();
    // 40 clients send one SYN each: parked, no key takes a place, nothing is evicted.
    for i in 0..40u32 {
        packets.push(syn(v4(0x0a00_0000 + i), victim, 40_000, 443, ms(u64::from(i))));
    }
    // The scanner's first SYN is parked; its retransmission (the same port) gives the key its
    // state; the second port is the second value, the third alerts.
    for t in [1_000, 2_000, 4_000] {
        packets.push(syn(scanner, victim, 50_000, 22, ms(t)));
    }
    packets.push(syn(scanner, victim, 50_001, 23, ms(5_000)));
    packets.push(syn(scanner, victim, 50_002, 25, ms(6_000)));
    let run = run_alone(&rules, &packets);
    let alerts = run.alerts_of("ports");
    assert_eq!(
        alerts.iter().map(|a| (a.key, a.ts)).collect::<Vec<_>>(),
        [(pair_key(scanner, victim), ms(6_000))]
    );
    assert_eq!(detail(&alerts[0]), (3.0, 5), "three ports, five SYNs in the window");
    let stats = run.workers("ports");
    assert_eq!(
        (stats.matched, stats.keys, stats.peak_keys, stats.evicted, stats.lost_first),
        (45, 1, 1, 0, 0)
    );
}

#[test]
fn max_keys_bounds_memory_under_a_flood_of_new_keys_and_spares_the_busy_key() {
    let rules = compile(&rule(
        "busy",
        "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 1000\nmax_keys = 500",
    ));
    let (heavy, dst) = (ip("203.0.113.1"), ip("192.0.2.1"));
    // Build every packet first, so the measured heap is the detector's own.
    let flood = |n: u32| -> Vec<PacketMeta> {
        (0..n)
            .map(|i| {
                // Every other source sends twice in a row, so it takes a place in the table
                // (a key's first input is only parked).
                let src = if i % 10 == 0 { heavy } else { v4(0x0a00_0000 + (i - i / 10 - 1) / 2) };
                udp_packet(src, dst, 53, 60, ms(u64::from(i) * 40_000 / u64::from(n)))
            })
            .collect()
    };
    let mut held = Vec::new();
    for n in [20_000, 100_000] {
        let packets = flood(n);
        let before = live_bytes();
        let mut detector = Detector::new(
            rules.clone(),
            Arc::new(NetworkMap::new(&[])),
            RUN_KEY,
            WorkerPlace::ALONE,
            Duration::ZERO,
        );
        let mut alerts = Vec::new();
        for (frame, m) in packets.iter().enumerate() {
            detector.on_packet(m, frame as u64 + 1, &mut |o| {
                if let DetectorOutput::Alert(a) = o {
                    alerts.push(a.key);
                }
            });
            if frame % 64 == 63 {
                detector.on_clock(m.ts, frame as u64, &mut |_| {});
            }
        }
        held.push(live_bytes() - before - size(alerts.capacity() * std::mem::size_of::<KeyValue>()));
        assert_eq!(alerts, [src_key(heavy)], "n = {n}: the busy key kept its count");
        let Some(RuleStats::Threshold(stats)) = detector.stats().rules.first().cloned() else {
            panic!("threshold counters")
        };
        let new_keys = (u64::from(n) - u64::from(n) / 10) / 2 + 1;
        assert_eq!(stats.keys, 500, "n = {n}");
        assert_eq!(stats.peak_keys, 500, "n = {n}");
        assert_eq!(stats.evicted, new_keys - 500, "n = {n}: every key beyond 500 dropped one");
        drop(detector);
    }
    // Five times the keys, the same memory (within allocator rounding and table growth).
    assert!(held[1] < held[0] + held[0] / 2, "heap held: {held:?}");
    assert!(held[1] < 4_000_000, "heap held: {held:?}");
}

#[test]
fn merged_rules_keep_the_busy_keys_when_their_tables_are_full() {
    let rules = small_flood();
    let (v1, v2, v3) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
    let src = ip("10.0.0.1");
    let p = |dst, t| udp_packet(src, dst, 53, 60, ms(t));
    let mut s = Sensor::new(&rules, 1, Duration::from_secs(1));
    // Bucket [0, 2 s): v2 once, v1 three times, then v3 three times: v3 drops v2, the least
    // recently updated.
    for m in [p(v2, 100), p(v1, 200), p(v1, 500), p(v1, 1_000), p(v3, 1_500), p(v3, 1_600), p(v3, 1_700)] {
        s.packet(&m);
    }
    s.idle_until(secs(3));
    let mut got: Vec<(KeyValue, Nanos)> = s.alerts.iter().map(|a| (a.key, a.ts)).collect();
    got.sort();
    assert_eq!(got, [(dst_key(v1), secs(2)), (dst_key(v3), secs(2))]);
    // Too late for its bucket (2 s + 1 s of lateness passed): counted, not merged.
    s.packet(&p(v1, 1_900));
    let run = s.finish();
    let w = run.workers("flood");
    assert_eq!((w.matched, w.evicted, w.late, w.peak_keys, w.keys, w.crossed), (8, 1, 1, 2, 0, 0));
    let c = run.collector("flood");
    assert_eq!((c.crossed, c.peak_keys, c.evicted, c.matched), (2, 2, 0, 0));
}

// ---- out of order -------------------------------------------------------------------------

/// `packets` delayed each by up to `max_delay` (uniform), in arrival order.
fn jittered(packets: &[PacketMeta], max_delay: u64, seed: u64) -> Vec<PacketMeta> {
    let mut rng = Rng(seed);
    let mut delayed: Vec<(u64, usize, PacketMeta)> =
        packets.iter().enumerate().map(|(i, m)| (m.ts.0 + rng.below(max_delay), i, *m)).collect();
    delayed.sort_by_key(|&(arrival, i, _)| (arrival, i));
    delayed.into_iter().map(|(_, _, m)| m).collect()
}

fn merged_flood_rules() -> Arc<RuleSet> {
    compile(&format!(
        "{}{}",
        rule(
            "flood",
            "filter = \"udp\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nwindow_buckets = 5\nthreshold = 150"
        ),
        rule(
            "sources",
            "filter = \"udp\"\nkey = [\"dst_ip\"]\naggregate = \"distinct\"\nfield = \"src_ip\"\n\
             window = \"10s\"\nwindow_buckets = 5\nthreshold = 100"
        ),
    ))
}

fn merged_flood_input(seed: u64) -> (Vec<(usize, Nanos)>, Vec<PacketMeta>, Vec<IpAddr>) {
    let targets: Vec<IpAddr> = (0..4).map(|i| v4(0xc000_0201 + i)).collect();
    let mut rng = Rng(seed);
    let mut inputs = Vec::new();
    for (k, _) in targets.iter().enumerate() {
        let rate = 5 + 10 * k as u64; // 5..35 per second
        let mut t = 0;
        while t < 60_000 {
            inputs.push((k, ms(t)));
            t += 1 + rng.below(2000 / rate);
        }
    }
    inputs.sort_by_key(|&(k, t)| (t, k));
    let packets = inputs.iter().map(|&(k, t)| udp_packet(source(&mut rng), targets[k], 53, 60, t)).collect();
    (inputs, packets, targets)
}

#[test]
fn merged_alerts_are_the_same_for_input_out_of_order_within_lateness() {
    let rules = merged_flood_rules();
    let (inputs, in_order, targets) = merged_flood_input(5);
    let lateness = Duration::from_secs(3);
    let run = |packets: &[PacketMeta]| {
        let mut s = Sensor::new(&rules, 2, lateness).ticking_every(8);
        s.packets(packets);
        s.finish()
    };
    let ordered = run(&in_order);
    // Each packet delayed by up to 2.9 s: the clock is never more than 2.9 s past it.
    let shuffled = jittered(&in_order, 2_900_000_000, 6);
    assert_ne!(
        shuffled.iter().map(|m| m.ts).collect::<Vec<_>>(),
        in_order.iter().map(|m| m.ts).collect::<Vec<_>>()
    );
    let late = run(&shuffled);
    let want = merged_model(&inputs, Shape { window: 10_000_000_000, buckets: 5 }, 150);
    let mut got: Vec<(usize, Nanos)> = ordered
        .alerts_of("flood")
        .iter()
        .map(|a| (targets.iter().position(|d| dst_key(*d) == a.key).expect("known"), a.ts))
        .collect();
    got.sort_by_key(|&(k, t)| (t, k));
    assert!(!want.is_empty());
    assert_eq!(got, want);
    assert!(!ordered.alerts_of("sources").is_empty());
    assert_eq!(sorted(&late.alerts), sorted(&ordered.alerts), "identical alerts, values and ids");
    for name in ["flood", "sources"] {
        assert_eq!(late.workers(name).late, 0, "{name}");
        assert_eq!(late.workers(name).matched, in_order.len() as u64, "{name}");
    }
}

#[test]
fn merged_input_later_than_lateness_is_counted_late_and_left_out() {
    let rules = merged_flood_rules();
    let (_, in_order, targets) = merged_flood_input(8);
    let lateness = Duration::from_secs(1);
    let shape = Shape { window: 10_000_000_000, buckets: 5 };
    // Delays of up to 6 s: many packets arrive after their bucket was handed over.
    let shuffled = jittered(&in_order, 6_000_000_000, 9);
    // Which are late: a tick follows every packet, so a worker has handed over every bucket
    // that ended at least `lateness` before the latest timestamp read.
    let mut clock = 0u64;
    let mut expected_late = 0u64;
    let mut counted = Vec::new();
    for m in &shuffled {
        let handed_over = clock.saturating_sub(lateness.as_nanos()) / shape.width();
        if shape.bucket(m.ts) < handed_over {
            expected_late += 1;
        } else {
            let k = targets.iter().position(|d| addr(*d) == m.dst).expect("known");
            counted.push((k, m.ts));
        }
        clock = clock.max(m.ts.0);
    }
    assert!(expected_late > 100, "the jitter must make input late: {expected_late}");
    let mut s = Sensor::new(&rules, 3, lateness);
    s.packets(&shuffled);
    let run = s.finish();
    let w = run.workers("flood");
    assert_eq!(w.late, expected_late);
    assert_eq!(w.matched, shuffled.len() as u64, "late input is still counted as matched");
    // The alerts are those of the input that was in time.
    counted.sort_by_key(|&(k, t)| (t, k));
    let mut got: Vec<(usize, Nanos)> = run
        .alerts_of("flood")
        .iter()
        .map(|a| (targets.iter().position(|d| dst_key(*d) == a.key).expect("known"), a.ts))
        .collect();
    got.sort_by_key(|&(k, t)| (t, k));
    assert_eq!(got, merged_model(&counted, shape, 150));
}

#[test]
fn source_keyed_input_out_of_order_within_the_window_counts_and_older_input_is_late() {
    let rules =
        compile(&rule("udp-20", "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"60s\"\nthreshold = 20"));
    let sources: Vec<IpAddr> = (0..8).map(|i| v4(0x0a07_0000 + i)).collect();
    let dst = ip("192.0.2.7");
    let mut rng = Rng(21);
    // 25 datagrams per source within 40 s: all inside one window.
    let mut packets: Vec<PacketMeta> = sources
        .iter()
        .flat_map(|&s| (0..25).map(|_| udp_packet(s, dst, 53, 60, ms(rng.below(40_000)))).collect::<Vec<_>>())
        .collect();
    packets.sort_by_key(|m| m.ts);
    let summary = |run: &Run| -> Vec<(KeyValue, (f64, u64))> {
        let mut v: Vec<_> = run.alerts_of("udp-20").iter().map(|a| (a.key, detail(a))).collect();
        v.sort_by_key(|x| x.0);
        v
    };
    let run = |packets: &[PacketMeta]| {
        let mut s = Sensor::new(&rules, 2, Duration::from_secs(5)).ticking_every(4);
        s.packets(packets);
        s.finish()
    };
    let ordered = run(&packets);
    let shuffled = run(&jittered(&packets, 5_000_000_000, 22));
    let mut all: Vec<KeyValue> = sources.iter().map(|s| src_key(*s)).collect();
    all.sort();
    assert_eq!(summary(&ordered).iter().map(|x| x.0).collect::<Vec<_>>(), all);
    assert_eq!(summary(&shuffled), summary(&ordered), "each source alerts once, on its 20th input");
    assert_eq!(shuffled.workers("udp-20").late, 0);

    // An input older than the window of its key's newest: late, counted, not added.
    let (a, late_src) = (sources[0], ip("10.99.0.1"));
    let mut s = Sensor::new(&rules, 1, Duration::from_secs(5));
    for t in 0..19 {
        s.packet(&udp_packet(late_src, dst, 53, 60, secs(100 + t)));
    }
    s.packet(&udp_packet(late_src, dst, 53, 60, secs(30)));
    s.packet(&udp_packet(a, dst, 53, 60, secs(119)));
    let run = s.finish();
    assert!(run.alerts_of("udp-20").is_empty(), "the late input did not make 20");
    let stats = run.workers("udp-20");
    assert_eq!((stats.matched, stats.late), (21, 1));
}

// ---- counters -----------------------------------------------------------------------------

#[test]
fn counters_report_matched_crossed_keys_peak_evicted_and_late() {
    let rules = compile(&rule(
        "three",
        "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 3\nmax_keys = 2",
    ));
    let (a, b, c) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
    let dst = ip("192.0.2.1");
    let p = |src, t| udp_packet(src, dst, 53, 60, ms(t));
    let mut s = Sensor::new(&rules, 1, Duration::ZERO).ticking_every(usize::MAX);
    let step = |s: &mut Sensor, m: PacketMeta, want: (u64, u64, u64, u64, u64, u64)| {
        s.packet(&m);
        let st = first_rule_counters(s);
        assert_eq!(
            (st.matched, st.crossed, st.keys, st.peak_keys, st.evicted, st.late),
            want,
            "after {:?}",
            m.ts
        );
    };
    // A key's first input is only parked (no single input reaches 3): `keys` counts the keys
    // with a full state, which they get with their second input.
    step(&mut s, p(a, 0), (1, 0, 0, 0, 0, 0));
    step(&mut s, p(a, 1_000), (2, 0, 1, 1, 0, 0));
    step(&mut s, p(a, 2_000), (3, 1, 1, 1, 0, 0));
    step(&mut s, p(b, 3_000), (4, 1, 1, 1, 0, 0));
    step(&mut s, p(b, 3_500), (5, 1, 2, 2, 0, 0));
    step(&mut s, p(c, 4_000), (6, 1, 2, 2, 0, 0));
    step(&mut s, p(c, 4_100), (7, 1, 2, 2, 1, 0)); // a, least recently updated, dropped
    step(&mut s, p(b, 30_000), (8, 1, 2, 2, 1, 0));
    step(&mut s, p(b, 5_000), (9, 1, 2, 2, 1, 1)); // older than b's window at 30 s
    // Time passes: c's window is empty at 30 s, so c is released; b's is not.
    s.idle_until(ms(30_000));
    let st = s.worker_stats();
    assert_eq!(
        st.rules.first(),
        Some(&RuleStats::Threshold(ThresholdStats {
            matched: 9,
            crossed: 1,
            keys: 1,
            peak_keys: 2,
            evicted: 1,
            late: 1,
            lost_first: 0
        }))
    );
    s.idle_until(ms(45_000));
    let run = s.finish();
    assert_eq!(run.workers("three").keys, 0, "every window emptied");
    assert_eq!(run.alerts_of("three").len(), 1);
}

/// The workers' counters of the first rule (a threshold rule) of a sensor's set.
fn first_rule_counters(s: &Sensor) -> ThresholdStats {
    match s.worker_stats().rules.first() {
        Some(RuleStats::Threshold(st)) => st.clone(),
        other => panic!("{other:?}"),
    }
}

/// One worker with a rule of three UDP packets per source in 10 s, of five 2-second buckets,
/// and no `max_keys` pressure (its table keeps its order as stamps and is swept), ticking
/// only when told.
fn sweep_sensor() -> Sensor {
    let rules = compile(&rule(
        "three",
        "filter = \"udp\"\nkey = [\"src_ip\"]\nwindow = \"10s\"\nwindow_buckets = 5\nthreshold = 3",
    ));
    Sensor::new(&rules, 1, Duration::ZERO).ticking_every(usize::MAX)
}

#[test]
fn idle_keys_are_released_within_a_bucket_of_their_window_emptying_without_evictions() {
    // No key is ever evicted, so the table keeps its order as stamps and is swept.
    let mut s = sweep_sensor();
    let dst = ip("192.0.2.1");
    let keys = |s: &Sensor| {
        let st = first_rule_counters(s);
        (st.keys, st.evicted)
    };
    // 100 sources, two inputs each in the first 2 s (buckets 0 and 1 of 2 s); source 0 goes on.
    for n in 0..100u32 {
        let src = v4(0x0a00_0000 + n);
        s.packet(&udp_packet(src, dst, 53, 60, ms(u64::from(n))));
        s.packet(&udp_packet(src, dst, 53, 60, ms(2_000 + u64::from(n))));
    }
    s.packet(&udp_packet(v4(0x0a00_0000), dst, 53, 60, ms(11_000)));
    s.idle_until(ms(11_000));
    assert_eq!(keys(&s), (100, 0), "every window still holds an input at 11 s");
    // The inputs of bucket 1 leave the window at 12 s (bucket 6 begins); by the end of the
    // next bucket every source but 0 is released, and 0 (input at 11 s) is kept.
    s.idle_until(ms(14_000));
    assert_eq!(keys(&s), (1, 0));
    s.idle_until(ms(19_900));
    assert_eq!(keys(&s), (1, 0), "source 0's input at 11 s is in the window until 20 s");
    s.idle_until(ms(22_000));
    assert_eq!(keys(&s), (0, 0));
}

#[test]
fn a_sweep_over_many_keys_spreads_over_ticks_and_releases_only_idle_keys() {
    let mut s = sweep_sensor();
    let dst = ip("192.0.2.1");
    let keys = |s: &Sensor| first_rule_counters(s).keys;
    // 5,000 sources with inputs at 0–0.5 s and 2–2.5 s (window until 12 s); every tenth has a
    // third input at 11 s (window until 20 s).
    let n = 5_000u32;
    for i in 0..n {
        let src = v4(0x0a00_0000 + i);
        s.packet(&udp_packet(src, dst, 53, 60, Nanos(u64::from(i) * 100_000)));
        s.packet(&udp_packet(src, dst, 53, 60, Nanos(2_000_000_000 + u64::from(i) * 100_000)));
    }
    for i in (0..n).step_by(10) {
        s.packet(&udp_packet(v4(0x0a00_0000 + i), dst, 53, 60, ms(11_000)));
    }
    assert_eq!(keys(&s), u64::from(n));
    // The first tick starts a sweep; one tick does not get through every key, a few do, and
    // only the sources seen at 11 s are left.
    s.idle_until(ms(12_000));
    assert!(keys(&s) > u64::from(n / 2), "one tick swept every key: {} left", keys(&s));
    for t in 1..10 {
        s.idle_until(ms(12_000 + t));
    }
    assert_eq!(keys(&s), u64::from(n / 10));
    for t in 0..10 {
        s.idle_until(ms(22_000 + t));
    }
    assert_eq!(keys(&s), 0);
}

// ---- configuration and the hot path -------------------------------------------------------

#[test]
fn invalid_threshold_rules_are_rejected_at_their_key() {
    let cases = [
        ("key = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 0", "threshold"),
        (
            "key = [\"src_ip\"]\nwindow = \"10s\"\naggregate = \"ratio\"\nratio = { filter = \"tcp\" }\nthreshold = 2",
            "threshold",
        ),
        ("key = [\"src_ip\"]\nwindow = \"10s\"\naggregate = \"distinct\"\nthreshold = 5", "field"),
        ("key = [\"src_ip\"]\nwindow = \"10s\"\naggregate = \"ratio\"\nthreshold = 0.5", "ratio"),
        ("key = [\"src_ip\"]\nwindow = \"0s\"\nthreshold = 5", "window"),
        ("key = [\"src_ip\"]\nwindow = \"10s\"\nwindow_buckets = 0\nthreshold = 5", "window_buckets"),
        ("key = []\nwindow = \"10s\"\nthreshold = 5", "key"),
        ("key = [\"src_ip\", \"src_ip\"]\nwindow = \"10s\"\nthreshold = 5", "key"),
        ("key = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 5\nflow = { handshake = true }", "flow"),
        (
            "key = [\"src_ip\"]\nwindow = \"10s\"\naggregate = \"ratio\"\nratio = { flow = { handshake = false } }\nthreshold = 0.5",
            "ratio.flow",
        ),
        ("key = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 5\nfilter = \"tcp port\"", "filter"),
    ];
    for (body, key) in cases {
        let err = compile_error(&rule("bad", body));
        assert!(err.contains(&format!("`threshold[0].{key}`")), "{body}\n→ {err}");
        assert!(err.starts_with("threshold.toml:"), "{err}");
    }
}

#[test]
fn packets_of_keys_already_held_allocate_nothing() {
    let rules = compile(&format!(
        "{}{}{}",
        rule(
            "local",
            "filter = \"udp\"\nkey = [\"src_ip\"]\naggregate = \"distinct\"\nfield = \"dst_port\"\nwindow = \"60s\"\nthreshold = 1000"
        ),
        rule(
            "merged",
            "filter = \"udp\"\nkey = [\"dst_ip\"]\naggregate = \"sum\"\nfield = \"bytes\"\nwindow = \"60s\"\nthreshold = 1e12"
        ),
        rule(
            "ratio",
            "filter = \"udp\"\nkey = [\"src_ip\", \"dst_ip\"]\naggregate = \"ratio\"\nratio = { filter = \"udp port 53\" }\nwindow = \"60s\"\nthreshold = 1"
        ),
    ));
    let sources: Vec<IpAddr> = (0..200).map(|i| v4(0x0a00_0000 + i)).collect();
    let targets: Vec<IpAddr> = (0..20).map(|i| v4(0xc000_0200 + i)).collect();
    let packet =
        |i: usize, t: Nanos| udp_packet(sources[i % 200], targets[i % 20], 50 + (i % 7) as u16, 80, t);
    // Warm-up inside bucket [0, 10 s): every key and value exists.
    let warm: Vec<PacketMeta> = (0..2_000).map(|i| packet(i, ms(i as u64))).collect();
    let measured: Vec<PacketMeta> = (0..20_000).map(|i| packet(i, ms(2_000 + i as u64 / 4))).collect();
    let mut d =
        Detector::new(rules, Arc::new(NetworkMap::new(&[])), RUN_KEY, WorkerPlace::ALONE, Duration::ZERO);
    let mut outputs = 0;
    for (i, m) in warm.iter().enumerate() {
        d.on_packet(m, i as u64, &mut |_| outputs += 1);
    }
    let before = allocations();
    for (i, m) in measured.iter().enumerate() {
        d.on_packet(m, i as u64, &mut |_| outputs += 1);
    }
    assert_eq!(allocations() - before, 0, "allocations for 20,000 packets of known keys");
    assert_eq!(outputs, 0);
}

#[test]
fn the_collector_holds_at_most_max_keys_partials_per_bucket_and_keeps_the_busiest() {
    // The rule holds at most two keys. Worker 0 reports va and vb once each, worker 1 vc three
    // times, all in the bucket [0, 2 s): three partial aggregates for two places. The
    // collector merges the bucket's lists and drops the key with the fewest inputs (va and vb
    // tie; vb, the larger address, goes), so vc keeps its place and alerts with its three
    // packets.
    let rules = small_flood();
    let (va, vb, vc) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
    let mut s = Sensor::new(&rules, 2, Duration::from_secs(1)).ticking_every(usize::MAX);
    let (s0, s1) = (s.source_on(0), s.source_on(1));
    for m in [
        udp_packet(s0, va, 53, 60, ms(100)),
        udp_packet(s0, vb, 53, 60, ms(200)),
        udp_packet(s1, vc, 53, 60, ms(300)),
        udp_packet(s1, vc, 53, 60, ms(400)),
        udp_packet(s1, vc, 53, 60, ms(500)),
    ] {
        s.packet(&m);
    }
    s.idle_until(secs(4));
    let alerts: Vec<(KeyValue, f64)> = s.alerts.iter().map(|a| (a.key, detail(a).0)).collect();
    assert_eq!(alerts, [(dst_key(vc), 3.0)]);
    let run = s.finish();
    let c = run.collector("flood");
    assert_eq!((c.evicted, c.peak_keys, c.crossed), (1, 2, 1), "vb dropped, two held");
}

#[test]
fn a_merged_count_spread_thin_over_workers_and_buckets_alerts_exactly_at_its_threshold() {
    // Twelve packets to the victim, one per worker and bucket (three workers, four buckets of
    // one window), beside a busier destination that stays below the threshold: no worker list
    // holds more than one packet for the victim, so only the window's sum shows the flood. The
    // collector's bounds must let it through, with the exact value; eleven packets must not
    // alert.
    let rules = compile(&rule(
        "flood",
        "filter = \"udp\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nwindow_buckets = 5\nthreshold = 12",
    ));
    let (victim, busy) = (ip("192.0.2.1"), ip("192.0.2.2"));
    for (packets, alerts) in [(12, 1), (11, 0)] {
        let mut s = Sensor::new(&rules, 3, Duration::from_secs(1)).ticking_every(usize::MAX);
        let sources: Vec<IpAddr> = (0..3).map(|w| s.source_on(w)).collect();
        let mut sent = 0;
        for bucket in 0..4u64 {
            for (w, src) in sources.iter().enumerate() {
                if sent < packets {
                    s.packet(&udp_packet(*src, victim, 53, 60, ms(bucket * 2_000 + 100 + w as u64)));
                    sent += 1;
                }
            }
            // Seven packets to the busy destination from one worker in this bucket: 7 < 12.
            if bucket == 1 {
                for k in 0..7 {
                    s.packet(&udp_packet(sources[0], busy, 53, 60, ms(bucket * 2_000 + 500 + k)));
                }
            }
        }
        s.idle_until(secs(12));
        let got: Vec<(KeyValue, (f64, u64), Nanos)> =
            s.alerts.iter().map(|a| (a.key, detail(a), a.ts)).collect();
        let want: Vec<(KeyValue, (f64, u64), Nanos)> =
            (0..alerts).map(|_| (dst_key(victim), (12.0, 12), secs(8))).collect();
        assert_eq!(got, want, "{packets} packets");
    }
}
