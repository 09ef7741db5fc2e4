//! The sensor's wiring without threads, shared by the detector's end-to-end test files
//! (`mod common;`).
#![allow(dead_code, unused_imports, reason = "each test file uses a part of the harness")]

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::sync::Arc;

pub use outpost_decode::{Duration, IpAddress, Nanos, Network, PacketMeta, Transport};
pub use outpost_detector::central::CentralRuleStats;
pub use outpost_detector::policy::PolicyStats;
pub use outpost_detector::{
    Alert, AlertDetail, AlertId, AlertPolicyConfig, CentralDetector, CentralOutput, DedupJson, DedupSummary,
    Detector, DetectorOutput, DetectorStats, KeyValue, NetworkMap, RuleId, RuleSet, RuleStats, RulesConfig,
    SourceText, WorkerPlace,
};
pub use outpost_flowmeter::{DirectionCounters, EndReason, FlowRecord};

// ---- The sensor's wiring, without threads ------------------------------------------------------
//
// How sensor/src/worker.rs and sensor/src/replay.rs wire the detectors, with the pipeline of
// capture/src/pipeline.rs made sequential: frames and clock ticks share one sequence counter; a
// frame goes to the worker that owns its source address (`WorkerPlace::owns`, the receive
// thread's reduction) and gets the next frame number; a worker whose block of `block` frames
// fills gets a tick of its own; after each batch every worker gets a flush tick; the workers'
// records reach the collector's `CentralDetector` merged by (seq, worker, emission order), and a
// flush tick that moved the clock becomes a watermark. Flow records are inputs here (the flow
// meter is not under test): they take a sequence number like a frame and reach the collector
// from the worker that owns their initiator.

/// 2026-01-01T00:00:00Z: input times are `T0 + offset`.
pub const T0: u64 = 1_767_225_600;

/// Event time `secs` after `T0`.
pub fn t(secs: u64) -> Nanos {
    Nanos::from_secs(T0 + secs)
}

/// Event time `ms` milliseconds after `T0`.
pub fn t_ms(ms: u64) -> Nanos {
    Nanos(Nanos::from_secs(T0).0 + ms * 1_000_000)
}

pub fn ip(s: &str) -> IpAddress {
    s.parse().expect("test address")
}

/// Compiles one rule file's text.
pub fn rules(text: &str) -> Arc<RuleSet> {
    let src = SourceText::new("rules.toml", text);
    let cfg: RulesConfig = src.parse().expect("rules parse");
    Arc::new(RuleSet::compile([(&cfg, &src, "")]).expect("rules compile"))
}

/// An `[alert_policy]` table's text.
pub fn policy(text: &str) -> AlertPolicyConfig {
    SourceText::new("policy.toml", text).parse().expect("policy parses")
}

/// One input of a batch.
#[derive(Clone, Copy, Debug)]
pub enum In {
    /// A decoded frame.
    Packet(PacketMeta),
    /// A flow record the flow meter emitted (its end moves the clock, at the latest).
    Flow(FlowRecord),
    /// Input time advanced without a frame (a live source's idle clock).
    Idle(Nanos),
}

/// A decoded IP packet.
pub fn packet(src: &str, dst: &str, proto: u8, sport: u16, dport: u16, ts: Nanos) -> In {
    let (src, dst) = (ip(src), ip(dst));
    let v4 = src.is_v4();
    In::Packet(PacketMeta {
        ts,
        wire_len: 74,
        cap_len: 74,
        ip_len: 60,
        src,
        dst,
        src_port: sport,
        dst_port: dport,
        ip_proto: proto,
        ip6_first_next_header: proto,
        network: if v4 { Network::Ipv4 } else { Network::Ipv6 },
        ethertype: if v4 { 0x0800 } else { 0x86dd },
        transport: Transport::Parsed,
        ttl: 64,
        l4_offset: 34,
        payload_offset: 42,
        ..PacketMeta::default()
    })
}

/// A UDP datagram.
pub fn udp(src: &str, dst: &str, dport: u16, ts: Nanos) -> In {
    packet(src, dst, 17, 40_000, dport, ts)
}

/// A completed TCP connection from `src` to `dst:dport` (both sides sent SYN and ACK),
/// `start` to `start + secs`, of `bytes` bytes forward.
pub fn tcp_session(
    flow_id: u64,
    src: &str,
    dst: &str,
    dport: u16,
    start: Nanos,
    secs: u64,
    bytes: u64,
) -> In {
    let end = start.saturating_add(Duration::from_secs(secs));
    let side = |packets: u64, bytes: u64, first: Nanos| DirectionCounters {
        packets,
        bytes,
        tcp_flags: 0x1b, // FIN, SYN, PSH, ACK
        first,
        last: end,
        min_ttl: 64,
        max_ttl: 64,
    };
    In::Flow(FlowRecord {
        flow_id,
        sequence: 0,
        src: ip(src),
        dst: ip(dst),
        src_port: 50_000 + (flow_id % 10_000) as u16,
        dst_port: dport,
        proto: 6,
        vlan: 0,
        icmp_type: 0,
        icmp_code: 0,
        dscp: 0,
        fwd: side(10, bytes, start),
        rev: side(8, 4_000, start.saturating_add(Duration::from_millis(1))),
        end_reason: EndReason::TcpFin,
    })
}

/// How the test sensor is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub workers: usize,
    /// Frames per worker block (the pipeline's default is 256).
    pub block: usize,
    pub policy: AlertPolicyConfig,
    pub run_key: u64,
    pub lateness: Duration,
    pub flow_delay: Duration,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            workers: 1,
            block: 256,
            policy: AlertPolicyConfig::default(),
            run_key: 0x5eed,
            lateness: Duration::ZERO,
            flow_delay: Duration::ZERO,
        }
    }
}

/// What a worker hands to the collector.
#[derive(Debug)]
pub enum Record {
    Worker(DetectorOutput),
    Flow(FlowRecord),
}

#[derive(Debug)]
pub struct Sensor {
    pub rules: Arc<RuleSet>,
    pub workers: Vec<Detector>,
    pub central: CentralDetector,
    pub block: usize,
    pub filled: Vec<usize>,
    pub seq: u64,
    pub frame: u64,
    pub clock: Nanos,
    pub watermark: Nanos,
    pub queue: Vec<(u64, usize, Record)>,
    /// What the collector wrote, in order.
    pub out: Vec<CentralOutput>,
    /// Whether the first input was announced to every worker.
    pub started: bool,
}

impl Sensor {
    pub fn new(rules: &Arc<RuleSet>, setup: &Setup) -> Sensor {
        let networks = Arc::new(NetworkMap::default());
        let n = setup.workers.max(1);
        Sensor {
            rules: rules.clone(),
            workers: (0..n)
                .map(|index| {
                    let place = WorkerPlace { index, count: n };
                    Detector::new(rules.clone(), networks.clone(), setup.run_key, place, setup.lateness)
                })
                .collect(),
            central: CentralDetector::new(
                rules.clone(),
                networks,
                &setup.policy,
                setup.run_key,
                setup.lateness,
            )
            .with_flow_delay(setup.flow_delay),
            block: setup.block.max(1),
            filled: vec![0; n],
            seq: 0,
            frame: 0,
            clock: Nanos::ZERO,
            watermark: Nanos::ZERO,
            queue: Vec::new(),
            out: Vec::new(),
            started: false,
        }
    }

    /// One worker, default policy.
    pub fn single(rules: &Arc<RuleSet>) -> Sensor {
        Sensor::new(rules, &Setup::default())
    }

    /// The worker that owns `addr`.
    pub fn owner(&self, addr: &IpAddress) -> usize {
        let n = self.workers.len();
        (0..n).find(|&index| WorkerPlace { index, count: n }.owns(addr)).expect("a worker owns every address")
    }

    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq - 1
    }

    /// One source batch: its inputs in order, then the flush tick every worker gets, the
    /// merged records, and the watermark.
    pub fn batch(&mut self, inputs: &[In]) {
        if !self.started {
            // The pipeline announces the input's first time to every worker with a tick before
            // any frame (capture/src/pipeline.rs, `Dispatcher::start`).
            let first = inputs.first().map(|i| match i {
                In::Packet(m) => m.ts,
                In::Flow(r) => r.end(),
                In::Idle(now) => *now,
            });
            if let Some(first) = first {
                self.started = true;
                self.clock = self.clock.max(first);
                let (tick, clock) = (self.next_seq(), self.clock);
                let queue = &mut self.queue;
                for (w, d) in self.workers.iter_mut().enumerate() {
                    d.on_clock(clock, tick, &mut |o| queue.push((tick, w, Record::Worker(o))));
                }
            }
        }
        for input in inputs {
            let seq = self.next_seq();
            match input {
                In::Packet(m) => {
                    self.clock = self.clock.max(m.ts);
                    let (w, frame) = (self.owner(&m.src), self.frame);
                    self.frame += 1;
                    let queue = &mut self.queue;
                    self.workers[w].on_packet(m, frame, &mut |o| queue.push((seq, w, Record::Worker(o))));
                    self.filled[w] += 1;
                    if self.filled[w] == self.block {
                        self.filled[w] = 0;
                        let (tick, clock) = (self.next_seq(), self.clock);
                        let queue = &mut self.queue;
                        self.workers[w]
                            .on_clock(clock, tick, &mut |o| queue.push((tick, w, Record::Worker(o))));
                    }
                }
                In::Flow(r) => {
                    self.clock = self.clock.max(r.end());
                    let w = self.owner(&r.src);
                    self.queue.push((seq, w, Record::Flow(*r)));
                }
                In::Idle(now) => self.clock = self.clock.max(*now),
            }
        }
        let (tick, clock) = (self.next_seq(), self.clock);
        let queue = &mut self.queue;
        for (w, d) in self.workers.iter_mut().enumerate() {
            d.on_clock(clock, tick, &mut |o| queue.push((tick, w, Record::Worker(o))));
        }
        self.filled.iter_mut().for_each(|f| *f = 0);
        self.deliver();
        if clock > self.watermark {
            self.watermark = clock;
            let out = &mut self.out;
            self.central.on_watermark(clock, &mut |o| out.push(o));
        }
    }

    /// Each input as a batch of its own.
    pub fn each(&mut self, inputs: impl IntoIterator<Item = In>) {
        for i in inputs {
            self.batch(&[i]);
        }
    }

    /// Hands the queued records to the collector in the merger's order.
    pub fn deliver(&mut self) {
        let mut queue = std::mem::take(&mut self.queue);
        queue.sort_by_key(|(seq, w, _)| (*seq, *w)); // stable: emission order within a worker
        let out = &mut self.out;
        for (seq, _, record) in queue {
            match record {
                Record::Worker(DetectorOutput::Alert(a)) => {
                    self.central.on_alert(seq, a, &mut |o| out.push(o))
                }
                Record::Worker(DetectorOutput::Partial(p)) => self.central.on_partial(p),
                Record::Worker(DetectorOutput::Baseline(b)) => self.central.on_baseline(b),
                Record::Flow(r) => self.central.on_flow(seq, &r, &mut |o| out.push(o)),
            }
        }
    }

    /// End of input: the workers' last partials, then the collector's end.
    pub fn finish(&mut self) {
        let seq = self.next_seq();
        let queue = &mut self.queue;
        for (w, d) in self.workers.iter_mut().enumerate() {
            d.finish(&mut |o| queue.push((seq, w, Record::Worker(o))));
        }
        self.deliver();
        let out = &mut self.out;
        self.central.finish(&mut |o| out.push(o));
    }

    /// Swaps in `rules` at this batch boundary, as a SIGHUP would; returns what the
    /// collector wrote for the old rules.
    pub fn reload(&mut self, rules: &Arc<RuleSet>) -> Vec<CentralOutput> {
        for d in &mut self.workers {
            d.reload(rules.clone());
        }
        let mut closed = Vec::new();
        self.central.reload(rules.clone(), &mut |o| closed.push(o));
        self.rules = rules.clone();
        closed
    }

    pub fn id(&self, rule: &str) -> RuleId {
        self.rules.id_of(rule).unwrap_or_else(|| panic!("no rule {rule}"))
    }

    /// Alerts written so far.
    pub fn alerts(&self) -> Vec<Alert> {
        self.out
            .iter()
            .filter_map(|o| match o {
                CentralOutput::Alert(a) => Some(*a),
                CentralOutput::Suppressed(_) => None,
            })
            .collect()
    }

    /// Alerts of `rule` written so far (ids of the current rule set).
    pub fn alerts_of(&self, rule: &str) -> Vec<Alert> {
        let id = self.id(rule);
        self.alerts().into_iter().filter(|a| a.rule == id).collect()
    }

    /// Dedup summaries written so far.
    pub fn summaries(&self) -> Vec<DedupSummary> {
        self.out
            .iter()
            .filter_map(|o| match o {
                CentralOutput::Suppressed(s) => Some(*s),
                CentralOutput::Alert(_) => None,
            })
            .collect()
    }

    /// The workers' counters, merged.
    pub fn worker_stats(&self) -> DetectorStats {
        let mut total = DetectorStats::default();
        for d in &self.workers {
            total.merge(&d.stats());
        }
        total
    }

    pub fn worker_rule(&self, rule: &str) -> RuleStats {
        self.worker_stats().rules[usize::from(self.id(rule).0)].clone()
    }

    pub fn central_rule(&self, rule: &str) -> CentralRuleStats {
        self.central.stats().rules[usize::from(self.id(rule).0)].clone()
    }

    pub fn policy_stats(&self, rule: &str) -> PolicyStats {
        self.central.stats().policy[usize::from(self.id(rule).0)].clone()
    }
}
