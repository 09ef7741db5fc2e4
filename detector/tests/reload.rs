//! Rule reload end to end: a new compiled rule set swapped in at a batch boundary keeps the
//! state of every rule whose name and definition did not change — windows, sequences in
//! progress, absence timers, and at the policy open dedup intervals, rate limits and counters —
//! whatever its new id; changed rules start fresh, removed ones are dropped, added ones start at
//! the reload.
#![allow(
    dead_code,
    reason = "the harness is shared by the detector's test files; not every file uses all of it"
)]

use std::sync::Arc;

use outpost_decode::{Duration, IpAddress, Nanos, Network, PacketMeta, Transport};
use outpost_detector::central::CentralRuleStats;
use outpost_detector::policy::PolicyStats;
use outpost_detector::{
    Alert, AlertDetail, AlertId, AlertPolicyConfig, CentralDetector, CentralOutput, DedupSummary, Detector,
    DetectorOutput, DetectorStats, KeyValue, NetworkMap, RuleId, RuleSet, RuleStats, RulesConfig, SourceText,
    WorkerPlace,
};
use outpost_flowmeter::{DirectionCounters, EndReason, FlowRecord};

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
// from the worker that owns their initiator. (The same harness is in each of detector/tests/
// {sequence,absence,policy,reload}.rs: integration tests cannot share a module without a file
// of its own.)

/// 2026-01-01T00:00:00Z: input times are `T0 + offset`.
const T0: u64 = 1_767_225_600;

/// Event time `secs` after `T0`.
fn t(secs: u64) -> Nanos {
    Nanos::from_secs(T0 + secs)
}

/// Event time `ms` milliseconds after `T0`.
fn t_ms(ms: u64) -> Nanos {
    Nanos(Nanos::from_secs(T0).0 + ms * 1_000_000)
}

fn ip(s: &str) -> IpAddress {
    s.parse().expect("test address")
}

/// Compiles one rule file's text.
fn rules(text: &str) -> Arc<RuleSet> {
    let src = SourceText::new("rules.toml", text);
    let cfg: RulesConfig = src.parse().expect("rules parse");
    Arc::new(RuleSet::compile([(&cfg, &src, "")]).expect("rules compile"))
}

/// An `[alert_policy]` table's text.
fn policy(text: &str) -> AlertPolicyConfig {
    SourceText::new("policy.toml", text).parse().expect("policy parses")
}

/// One input of a batch.
#[derive(Clone, Copy, Debug)]
enum In {
    /// A decoded frame.
    Packet(PacketMeta),
    /// A flow record the flow meter emitted (its end moves the clock, at the latest).
    Flow(FlowRecord),
    /// Input time advanced without a frame (a live source's idle clock).
    Idle(Nanos),
}

/// A decoded IP packet.
fn packet(src: &str, dst: &str, proto: u8, sport: u16, dport: u16, ts: Nanos) -> In {
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
fn udp(src: &str, dst: &str, dport: u16, ts: Nanos) -> In {
    packet(src, dst, 17, 40_000, dport, ts)
}

/// A completed TCP connection from `src` to `dst:dport` (both sides sent SYN and ACK),
/// `start` to `start + secs`, of `bytes` bytes forward.
fn tcp_session(flow_id: u64, src: &str, dst: &str, dport: u16, start: Nanos, secs: u64, bytes: u64) -> In {
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
struct Setup {
    workers: usize,
    /// Frames per worker block (the pipeline's default is 256).
    block: usize,
    policy: AlertPolicyConfig,
    run_key: u64,
    lateness: Duration,
    flow_delay: Duration,
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
enum Record {
    Worker(DetectorOutput),
    Flow(FlowRecord),
}

#[derive(Debug)]
struct Sensor {
    rules: Arc<RuleSet>,
    workers: Vec<Detector>,
    central: CentralDetector,
    block: usize,
    filled: Vec<usize>,
    seq: u64,
    frame: u64,
    clock: Nanos,
    watermark: Nanos,
    queue: Vec<(u64, usize, Record)>,
    /// What the collector wrote, in order.
    out: Vec<CentralOutput>,
}

impl Sensor {
    fn new(rules: &Arc<RuleSet>, setup: &Setup) -> Sensor {
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
        }
    }

    /// One worker, default policy.
    fn single(rules: &Arc<RuleSet>) -> Sensor {
        Sensor::new(rules, &Setup::default())
    }

    /// The worker that owns `addr`.
    fn owner(&self, addr: &IpAddress) -> usize {
        let n = self.workers.len();
        (0..n).find(|&index| WorkerPlace { index, count: n }.owns(addr)).expect("a worker owns every address")
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq - 1
    }

    /// One source batch: its inputs in order, then the flush tick every worker gets, the
    /// merged records, and the watermark.
    fn batch(&mut self, inputs: &[In]) {
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
    fn each(&mut self, inputs: impl IntoIterator<Item = In>) {
        for i in inputs {
            self.batch(&[i]);
        }
    }

    /// Hands the queued records to the collector in the merger's order.
    fn deliver(&mut self) {
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
    fn finish(&mut self) {
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
    fn reload(&mut self, rules: &Arc<RuleSet>) -> Vec<CentralOutput> {
        for d in &mut self.workers {
            d.reload(rules.clone());
        }
        let mut closed = Vec::new();
        self.central.reload(rules.clone(), &mut |o| closed.push(o));
        self.rules = rules.clone();
        closed
    }

    fn id(&self, rule: &str) -> RuleId {
        self.rules.id_of(rule).unwrap_or_else(|| panic!("no rule {rule}"))
    }

    /// Alerts written so far.
    fn alerts(&self) -> Vec<Alert> {
        self.out
            .iter()
            .filter_map(|o| match o {
                CentralOutput::Alert(a) => Some(*a),
                CentralOutput::Suppressed(_) => None,
            })
            .collect()
    }

    /// Alerts of `rule` written so far (ids of the current rule set).
    fn alerts_of(&self, rule: &str) -> Vec<Alert> {
        let id = self.id(rule);
        self.alerts().into_iter().filter(|a| a.rule == id).collect()
    }

    /// Dedup summaries written so far.
    fn summaries(&self) -> Vec<DedupSummary> {
        self.out
            .iter()
            .filter_map(|o| match o {
                CentralOutput::Suppressed(s) => Some(*s),
                CentralOutput::Alert(_) => None,
            })
            .collect()
    }

    /// The workers' counters, merged.
    fn worker_stats(&self) -> DetectorStats {
        let mut total = DetectorStats::default();
        for d in &self.workers {
            total.merge(&d.stats());
        }
        total
    }

    fn worker_rule(&self, rule: &str) -> RuleStats {
        self.worker_stats().rules[usize::from(self.id(rule).0)].clone()
    }

    fn central_rule(&self, rule: &str) -> CentralRuleStats {
        self.central.stats().rules[usize::from(self.id(rule).0)].clone()
    }

    fn policy_stats(&self, rule: &str) -> PolicyStats {
        self.central.stats().policy[usize::from(self.id(rule).0)].clone()
    }
}

// ---- end of the harness ------------------------------------------------------------------------

const SSH: &str = r#"
[[threshold]]
name = "ssh-brute-force"
description = "Password guessing."
severity = "high"
input = "flows"
filter = "tcp dst port 22"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3
"#;

const SEQUENCE: &str = r#"
[[sequence]]
name = "brute-force-then-session"
key = ["src_ip", "dst_ip"]
within = "1h"
steps = [
  { alerts = ["ssh-brute-force"] },
  { filter = "tcp", flow = { handshake = true, min_duration = "60s" } },
]
"#;

const SYSLOG: &str = r#"
[[absence]]
name = "syslog-silent"
filter = "udp dst port 514"
timeout = "60s"
"#;

/// Another rule, to be added in front of the others (their ids move).
const RDP: &str = r#"
[[threshold]]
name = "rdp-brute-force"
input = "flows"
filter = "tcp dst port 3389"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3
"#;

const ATTACKER: &str = "203.0.113.5";
const SERVER: &str = "192.168.1.10";

/// A short SSH login from `ATTACKER` to `SERVER` at `at` (2 s).
fn login(id: u64, at: u64) -> In {
    tcp_session(id, ATTACKER, SERVER, 22, t(at), 2, 3_000)
}

/// Syslog from a sender.
fn syslog(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 514, ts)
}

/// Packets that are not syslog (they move the clock).
fn other(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 53, ts)
}

/// `(ts, src, dst)` of the alerts of `rule`.
fn of(s: &Sensor, rule: &str) -> Vec<(Nanos, IpAddress, IpAddress)> {
    s.alerts_of(rule).iter().map(|a| (a.ts, a.src, a.dst)).collect()
}

fn stats_of(s: &Sensor, rule: &str) -> CentralRuleStats {
    s.central_rule(rule)
}

#[test]
fn an_unchanged_rule_keeps_its_window_across_a_reload_even_when_its_id_moves() {
    let before = rules(SSH);
    let after = rules(&format!("{RDP}{SSH}"));
    assert_ne!(before.id_of("ssh-brute-force"), after.id_of("ssh-brute-force"), "the id moves");
    let mut s = Sensor::single(&before);
    s.each([login(1, 0), login(2, 10)]);
    assert!(s.reload(&after).is_empty());
    s.each([login(3, 20)]);
    assert_eq!(
        of(&s, "ssh-brute-force"),
        [(t(22), ip(ATTACKER), ip(SERVER))],
        "two logins before, one after"
    );
    s.finish();
    // The counters of the rule went on too.
    let CentralRuleStats::Threshold(st) = stats_of(&s, "ssh-brute-force") else { panic!("a flow threshold") };
    assert_eq!((st.matched, st.crossed), (3, 1), "{st:?}");
    assert_eq!(s.policy_stats("ssh-brute-force").raised, 1);
}

#[test]
fn a_changed_rule_starts_fresh_but_new_labels_are_no_change() {
    let run = |after: &str| {
        let mut s = Sensor::single(&rules(SSH));
        s.each([login(1, 0), login(2, 10)]);
        s.reload(&rules(after));
        s.each([login(3, 20), login(4, 30)]);
        let early = of(&s, "ssh-brute-force").len();
        s.each([login(5, 40)]);
        s.finish();
        (early, of(&s, "ssh-brute-force"))
    };
    // Another description and severity: the same rule.
    let relabelled =
        SSH.replace("Password guessing.", "SSH password guessing.").replace("\"high\"", "\"critical\"");
    assert_eq!(run(&relabelled), (1, vec![(t(22), ip(ATTACKER), ip(SERVER))]));
    // Another window: a different rule, whose count starts at the reload.
    let changed = SSH.replace("window = \"5m\"", "window = \"6m\"");
    assert_eq!(run(&changed), (0, vec![(t(42), ip(ATTACKER), ip(SERVER))]));
    // Another threshold, likewise.
    let changed = SSH.replace("threshold = 3", "threshold = 2");
    assert_eq!(run(&changed), (1, vec![(t(32), ip(ATTACKER), ip(SERVER))]));
}

#[test]
fn a_removed_rule_is_dropped_and_one_added_back_later_starts_fresh() {
    let mut s = Sensor::single(&rules(SSH));
    s.each([login(1, 0), login(2, 10)]);
    s.reload(&rules(RDP));
    s.each([login(3, 20)]);
    s.reload(&rules(&format!("{RDP}{SSH}")));
    s.each([login(4, 30), login(5, 40)]);
    assert!(s.alerts().is_empty(), "{:?}", s.alerts());
    s.each([login(6, 50)]);
    s.finish();
    assert_eq!(of(&s, "ssh-brute-force"), [(t(52), ip(ATTACKER), ip(SERVER))]);
}

#[test]
fn a_sequence_in_progress_survives_a_reload_that_moves_the_rules_it_names() {
    let run = |after: &str| {
        let mut s = Sensor::single(&rules(&format!("{SSH}{SEQUENCE}")));
        s.each([login(1, 0), login(2, 10), login(3, 20)]);
        assert_eq!(s.alerts_of("ssh-brute-force").len(), 1);
        s.reload(&rules(after));
        // A 20-minute session 10 minutes after the brute force.
        s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(600), 1_200, 90_000)]);
        s.finish();
        of(&s, "brute-force-then-session")
    };
    // The sequence's text is unchanged; the rule it names moves behind a new one.
    let moved = format!("{RDP}{SEQUENCE}{SSH}");
    assert_eq!(run(&moved), [(t(1_800), ip(ATTACKER), ip(SERVER))]);
    // A sequence whose steps changed is a new rule: the brute force before the reload is not
    // its first step.
    let changed = SEQUENCE.replace("[\"ssh-brute-force\"]", "[\"ssh-brute-force\", \"rdp-brute-force\"]");
    assert!(run(&format!("{SSH}{RDP}{changed}")).is_empty());
    let changed = SEQUENCE.replace("\"1h\"", "\"2h\"");
    assert!(run(&format!("{SSH}{changed}")).is_empty());
}

#[test]
fn a_learned_absence_sender_keeps_its_timer_across_a_reload_and_a_changed_rule_forgets_it() {
    let run = |workers: usize, after: &str| {
        let mut s = Sensor::new(&rules(SYSLOG), &Setup { workers, block: 2, ..Setup::default() });
        s.each([syslog("10.0.0.9", t(0)), syslog("10.0.0.9", t(20)), other("10.0.0.5", t(30))]);
        s.reload(&rules(after));
        s.each([syslog("10.0.0.8", t(40))]);
        s.each((50..=300).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.finish();
        let mut v: Vec<_> = s
            .alerts_of("syslog-silent")
            .iter()
            .map(|a| {
                let AlertDetail::Absence { last_seen } = a.detail else { panic!("an absence alert") };
                (a.ts, a.src, last_seen)
            })
            .collect();
        v.sort();
        v
    };
    for workers in [1, 3] {
        let moved = format!("{RDP}{SYSLOG}");
        assert_eq!(
            run(workers, &moved),
            [(t(80), ip("10.0.0.9"), Some(t(20))), (t(100), ip("10.0.0.8"), Some(t(40)))],
            "{workers} workers"
        );
        // A longer timeout: a new rule, which learns its senders from the reload on.
        let changed = SYSLOG.replace("\"60s\"", "\"90s\"");
        assert_eq!(run(workers, &changed), [(t(130), ip("10.0.0.8"), Some(t(40)))], "{workers} workers");
    }
}

#[test]
fn an_absence_rule_added_by_a_reload_expects_its_listed_senders_from_the_reload() {
    let listed = "[[absence]]\nname = \"backup-silent\"\nfilter = \"tcp dst port 873\"\ntimeout = \"60s\"\n\
                  expected = [\"10.0.0.21\", \"10.0.0.22\"]\n";
    for workers in [1, 2, 4] {
        let mut s = Sensor::new(&rules(SSH), &Setup { workers, ..Setup::default() });
        s.each((0..=100).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.reload(&rules(&format!("{SSH}{listed}")));
        s.each((110..=300).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.finish();
        let mut got: Vec<_> = of(&s, "backup-silent").iter().map(|a| (a.0, a.1)).collect();
        got.sort();
        assert_eq!(got, [(t(160), ip("10.0.0.21")), (t(160), ip("10.0.0.22"))], "{workers} workers");
    }
}

/// Rules for the policy across a reload: the policy does not care which kind raised an
/// alert; these flow rules see no flows here and the tests hand the collector their alerts.
const POLICY_RULES: &str = r#"
[[threshold]]
name = "kept"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10
rate_limit = 2

[[threshold]]
name = "changed"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10

[[threshold]]
name = "removed"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10
"#;

fn policy_rules_after() -> String {
    let kept_and_changed = POLICY_RULES
        .split("[[threshold]]")
        .filter(|r| !r.contains("\"removed\""))
        .collect::<Vec<_>>()
        .join("[[threshold]]")
        .replace(
            "name = \"changed\"\ninput = \"flows\"\nkey = [\"src_ip\", \"dst_ip\"]\nwindow = \"1m\"",
            "name = \"changed\"\ninput = \"flows\"\nkey = [\"src_ip\", \"dst_ip\"]\nwindow = \"2m\"",
        );
    format!("{RDP}{kept_and_changed}")
}

/// Hands the collector an alert of `rule` (of the current rule set) about `src` → `SERVER`.
fn raise(s: &mut Sensor, rule: &str, src: &str, ts: Nanos, n: u128) {
    let key = KeyValue { src: ip(src), dst: ip(SERVER), ..KeyValue::default() };
    let a =
        Alert::for_key(AlertId(n), ts, s.id(rule), key, AlertDetail::Threshold { value: 10.0, events: 10 });
    let seq = s.next_seq();
    let out = &mut s.out;
    s.central.on_alert(seq, a, &mut |o| out.push(o));
}

#[test]
fn the_policy_keeps_the_dedup_intervals_rate_limits_and_counters_of_unchanged_rules() {
    let before = rules(POLICY_RULES);
    let after = rules(&policy_rules_after());
    assert!(after.id_of("removed").is_none());
    let mut s = Sensor::single(&before);
    for (rule, n) in [("kept", 10), ("changed", 20), ("removed", 30)] {
        raise(&mut s, rule, "10.0.0.1", t(0), n);
        raise(&mut s, rule, "10.0.0.1", t(10), n + 1); // a duplicate
    }
    raise(&mut s, "kept", "10.0.0.2", t(11), 12); // the second of kept's 2 a minute
    let closed = s.reload(&after);
    // The open intervals of the changed and the removed rule close at the reload, named with
    // the old rules' ids.
    let mut closed: Vec<(String, AlertId, u64)> = closed
        .iter()
        .map(|o| match o {
            CentralOutput::Suppressed(d) => {
                let name = before.rule(d.rule).expect("an old rule").name.clone();
                (name, d.first, d.suppressed)
            }
            CentralOutput::Alert(a) => panic!("no alert at a reload: {a:?}"),
        })
        .collect();
    closed.sort();
    assert_eq!(closed, [("changed".to_string(), AlertId(20), 1), ("removed".to_string(), AlertId(30), 1)]);
    // After the reload: kept's interval is still open, and its minute's budget still spent.
    raise(&mut s, "kept", "10.0.0.1", t(20), 13);
    raise(&mut s, "kept", "10.0.0.3", t(21), 14);
    raise(&mut s, "kept", "10.0.0.3", t(61), 15);
    // The changed rule starts fresh: no interval open.
    raise(&mut s, "changed", "10.0.0.1", t(20), 21);
    s.finish();
    let ids: Vec<u128> = s.alerts().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [10, 20, 30, 12, 15, 21]);
    let p = s.policy_stats("kept");
    assert_eq!(
        (p.raised, p.alerted, p.deduplicated, p.rate_limited),
        (6, 3, 2, 1),
        "counted across the reload: {p:?}"
    );
    let p = s.policy_stats("changed");
    assert_eq!((p.raised, p.alerted, p.deduplicated), (1, 1, 0), "counted from the reload: {p:?}");
    let kept: Vec<(AlertId, u64)> =
        s.summaries().iter().filter(|d| d.rule == s.id("kept")).map(|d| (d.first, d.suppressed)).collect();
    assert_eq!(kept, [(AlertId(10), 2)], "one interval, across the reload, under the new id");
}

/// A mix of everything: brute forces and sessions, syslog senders that go quiet.
fn mixed_input() -> Vec<Vec<In>> {
    let mut batches = Vec::new();
    let mut id = 0;
    for round in 0..20u64 {
        let at = round * 45;
        let mut b = Vec::new();
        for i in 0..6u64 {
            let src = format!("10.0.1.{i}");
            if round < 4 + 2 * i || round % 7 == i {
                b.push(syslog(&src, t(at + i)));
            }
        }
        let attacker = format!("203.0.113.{}", round % 3);
        id += 1;
        b.push(tcp_session(id, &attacker, SERVER, 22, t(at + 1), 2, 3_000));
        if round % 5 == 4 {
            id += 1;
            b.push(tcp_session(id, &attacker, SERVER, 443, t(at + 5), 120, 90_000));
        }
        b.push(other("10.0.0.5", t(at + 40)));
        batches.push(b);
    }
    batches
}

#[test]
fn reloading_the_same_rules_changes_nothing_whatever_the_worker_count() {
    let text = format!("{SSH}{SEQUENCE}{SYSLOG}");
    // `(name, ts, src, id)` of the alerts, sorted, and the duplicates summarised.
    let run = |workers: usize, reload: Option<(usize, &str)>| {
        let r = rules(&text);
        let mut s = Sensor::new(&r, &Setup { workers, block: 3, ..Setup::default() });
        let mut alerts: Vec<(String, Nanos, IpAddress, u128)> = Vec::new();
        let mut sums = 0;
        // What was written, named with the rules it was written with.
        let mut take = |s: &mut Sensor| {
            for o in std::mem::take(&mut s.out) {
                match o {
                    CentralOutput::Alert(a) => {
                        let name = s.rules.rule(a.rule).expect("a rule").name.clone();
                        alerts.push((name, a.ts, a.src, a.id.0));
                    }
                    CentralOutput::Suppressed(d) => sums += d.suppressed,
                }
            }
        };
        for (i, b) in mixed_input().iter().enumerate() {
            if let Some((at, new)) = reload {
                if at == i {
                    take(&mut s);
                    assert!(s.reload(&rules(new)).is_empty());
                }
            }
            s.batch(b);
        }
        s.finish();
        take(&mut s);
        alerts.sort();
        (alerts, sums)
    };
    let reference = run(1, None);
    for name in ["ssh-brute-force", "brute-force-then-session", "syslog-silent"] {
        assert!(reference.0.iter().any(|a| a.0 == name), "the input raises {name}: {reference:?}");
    }
    assert!(reference.1 > 0, "and duplicates");
    // Recompiled from the same text, with a new rule in front (every id moves: alert ids,
    // which derive from the rule's id, differ, but nothing else).
    let moved = format!("{RDP}{text}");
    let without_ids = |(alerts, sums): (Vec<(String, Nanos, IpAddress, u128)>, u64)| {
        (alerts.into_iter().map(|(n, ts, src, _)| (n, ts, src)).collect::<Vec<_>>(), sums)
    };
    for workers in [1, 3] {
        for at in [3, 8, 13] {
            assert_eq!(
                run(workers, Some((at, &text))),
                reference,
                "{workers} workers, reload before batch {at}"
            );
            assert_eq!(
                without_ids(run(workers, Some((at, &moved)))),
                without_ids(reference.clone()),
                "{workers} workers, reload with moved ids before batch {at}"
            );
        }
    }
}
