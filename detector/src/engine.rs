//! The per-worker detector: runs every packet rule over the packets this worker owns by source.
//!
//! One [`Detector`] per worker, owned by that thread: no locks. For each packet it runs the
//! state machines, the Local threshold rules, the intel rules and the absence rules, emitting
//! alerts at once; Merged threshold rules and packet baselines only aggregate, and hand their
//! partial aggregates ([`DetectorOutput::Partial`], [`DetectorOutput::Baseline`]) to the
//! collector as event time passes bucket and interval ends. Flow rules, sequences and the
//! alert policy run in the collector ([`crate::central`]).

use std::sync::Arc;

use outpost_decode::{Duration, IpAddress, Nanos, Network, PacketMeta};
use outpost_filter::PacketClass;

use crate::absence::{AbsenceState, AbsenceStats, Silence};
use crate::alert::{Alert, AlertDetail, AlertId};
use crate::baseline::{BaselineMeter, BaselinePartial};
use crate::config::InputKind;
use crate::intel_rule::{IntelGate, IntelState};
use crate::key::KeyValue;
use crate::machine::{MachineRunner, MachineStats, StateTimeout};
use crate::network::NetworkMap;
use crate::rules::{Rule, RuleId, RuleKind, RuleSet};
use crate::threshold::{ImmediateThreshold, Partial, PartialThreshold, Placement, ThresholdStats};

/// What a worker's detector emits.
#[derive(Debug, Clone)]
pub enum DetectorOutput {
    /// An alert (before the alert policy).
    Alert(Alert),
    /// A partial aggregate of a Merged threshold rule.
    Partial(Partial),
    /// A partial measurement of a baseline rule.
    Baseline(BaselinePartial),
}

/// Per-rule counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum RuleStats {
    /// A state machine.
    StateMachine(MachineStats),
    /// A threshold rule.
    Threshold(ThresholdStats),
    /// An absence rule.
    Absence(AbsenceStats),
    /// Intel rules: packets that hit a list.
    Hits {
        /// Count.
        hits: u64,
    },
    /// Packet baselines: the worker's share of the measuring.
    Meter {
        /// Packets measured.
        packets: u64,
        /// Packets too late for their interval (already handed over), not measured.
        late: u64,
    },
    /// Nothing runs in the worker for this rule.
    None {},
}

impl RuleStats {
    /// Adds another worker's counters of the same rule.
    pub fn merge(&mut self, o: &RuleStats) {
        match (self, o) {
            (RuleStats::StateMachine(a), RuleStats::StateMachine(b)) => a.merge(b),
            (RuleStats::Threshold(a), RuleStats::Threshold(b)) => a.merge(b),
            (RuleStats::Absence(a), RuleStats::Absence(b)) => a.merge(b),
            (RuleStats::Hits { hits: a }, RuleStats::Hits { hits: b }) => *a += b,
            (RuleStats::Meter { packets: a, late: al }, RuleStats::Meter { packets: b, late: bl }) => {
                *a += b;
                *al += bl;
            }
            _ => {}
        }
    }
}

/// Counters of a worker's detector (or, merged, of the sensor's workers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectorStats {
    /// Per rule, by rule id.
    pub rules: Vec<RuleStats>,
    /// Per rule, by rule id: packets offered to the rule — those of a class and source lane
    /// its filter may match (the rest were ruled out by their class or their source's first
    /// octet alone, see [`PacketClass`] and [`Lanes`]).
    pub evaluated: Vec<u64>,
    /// Alerts raised in workers.
    pub alerts: u64,
}

impl DetectorStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &DetectorStats) {
        if self.rules.is_empty() {
            self.rules = o.rules.clone();
        } else {
            for (a, b) in self.rules.iter_mut().zip(&o.rules) {
                a.merge(b);
            }
        }
        if self.evaluated.is_empty() {
            self.evaluated = o.evaluated.clone();
        } else {
            for (a, b) in self.evaluated.iter_mut().zip(&o.evaluated) {
                *a += b;
            }
        }
        self.alerts += o.alerts;
    }
}

/// A rule's state in one worker.
#[derive(Debug)]
enum State {
    Machine(MachineRunner),
    Immediate(ImmediateThreshold),
    Partial(PartialThreshold),
    Absence(AbsenceState),
    /// A packet baseline measured by the shared meter `Detector::meters[i]`.
    Baseline(usize),
    Intel(IntelState),
    /// The rule does not run in workers (flow rules, sequences).
    Elsewhere,
}

impl State {
    fn new(kind: &RuleKind) -> State {
        match kind {
            RuleKind::StateMachine(sm) => State::Machine(MachineRunner::new(sm)),
            RuleKind::Threshold(t) => match t.placement {
                Placement::Local => State::Immediate(ImmediateThreshold::new(t)),
                Placement::Merged => State::Partial(PartialThreshold::new()),
                Placement::Central => State::Elsewhere,
            },
            RuleKind::Absence(a) => State::Absence(AbsenceState::new(a)),
            // Packet baselines get their meter index when the detector groups them.
            RuleKind::Baseline(b) if b.input == InputKind::Packets => State::Baseline(usize::MAX),
            RuleKind::Intel(_) => State::Intel(IntelState::default()),
            RuleKind::Baseline(_) | RuleKind::Sequence(_) => State::Elsewhere,
        }
    }

    fn stats(&self) -> RuleStats {
        match self {
            State::Machine(m) => RuleStats::StateMachine(m.stats.clone()),
            State::Immediate(t) => RuleStats::Threshold(t.stats.clone()),
            State::Partial(t) => RuleStats::Threshold(t.stats.clone()),
            State::Absence(a) => RuleStats::Absence(a.stats.clone()),
            State::Baseline(_) => RuleStats::Meter { packets: 0, late: 0 },
            State::Intel(i) => RuleStats::Hits { hits: i.hits },
            State::Elsewhere => RuleStats::None {},
        }
    }
}

/// Where this worker stands among the workers (absence rules arm the listed senders they
/// own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerPlace {
    /// This worker's number.
    pub index: usize,
    /// Number of workers.
    pub count: usize,
}

impl WorkerPlace {
    /// A single worker that owns everything.
    pub const ALONE: WorkerPlace = WorkerPlace { index: 0, count: 1 };

    /// Whether this worker owns frames from `addr`: the same multiply-shift reduction of the
    /// source hash the receive thread uses.
    #[must_use]
    pub fn owns(&self, addr: &IpAddress) -> bool {
        let n = self.count.max(1) as u128;
        ((u128::from(addr.shard_hash()) * n) >> 64) as usize == self.index
    }
}

/// A meter shared by packet baseline rules with the same filter, host side and interval.
#[derive(Debug)]
struct SharedMeter {
    filter: outpost_filter::Filter,
    rules: Vec<RuleId>,
    meter: BaselineMeter,
    /// Counted from the flow meter's interval fold ([`Detector::meter_from_flows`]), not
    /// per packet.
    from_flows: bool,
}

impl SharedMeter {
    /// Whether flow hand-overs can stand for its packets: it counts bytes and packets of
    /// every IP packet (no filter, no peers).
    fn foldable(&self) -> bool {
        self.filter.is_match_all() && !self.meter.measures_peers()
    }
}

/// Groups the packet baseline rules into shared meters and points their states at them. A
/// meter of `reuse` that measures the same thing (filter, interval, host side, peers) is taken
/// over with what it measured so far, so a reload does not lose the interval in progress.
fn group_meters(rules: &RuleSet, states: &mut [State], mut reuse: Vec<SharedMeter>) -> Vec<SharedMeter> {
    let mut meters: Vec<SharedMeter> = Vec::new();
    for ((id, rule), state) in rules.iter().zip(states.iter_mut()) {
        let (RuleKind::Baseline(b), State::Baseline(slot)) = (&rule.kind, state) else { continue };
        let peers = b.metric == crate::config::BaselineMetric::Peers;
        let same = |m: &SharedMeter| {
            m.filter.source() == b.filter.source() && m.meter.fits(b) && (peers == m.meter_peers())
        };
        *slot = match meters.iter().position(same) {
            Some(i) => {
                if let Some(m) = meters.get_mut(i) {
                    m.rules.push(id);
                }
                i
            }
            None => {
                let meter = match reuse.iter().position(same) {
                    Some(i) => SharedMeter { rules: vec![id], ..reuse.swap_remove(i) },
                    None => SharedMeter {
                        filter: b.filter.clone(),
                        rules: vec![id],
                        meter: BaselineMeter::new(b, peers),
                        from_flows: false,
                    },
                };
                meters.push(meter);
                meters.len() - 1
            }
        };
    }
    meters
}

/// Which of a list slot's lists are not empty (bits).
#[derive(Debug, Default, Clone, Copy)]
struct SlotHas(u8);

impl SlotHas {
    /// Threshold rules.
    const THRESHOLDS: u8 = 1;
    /// Rules other than threshold and intel rules.
    const UNLISTED: u8 = 2;
    /// Intel rules.
    const INTEL: u8 = 4;
    /// Meters that measure packets one by one.
    const PACKET_METERS: u8 = 8;

    #[inline(always)]
    fn any(self, bits: u8) -> bool {
        self.0 & bits != 0
    }
}

/// For each [`PacketClass`], the rules that may act on a packet of that class, in rule order,
/// and the baseline meters that may measure it: a packet visits only those. Built when the
/// rules are compiled into a detector (and on reload) from the filters' class tables; a rule
/// absent from a class's list is one whose filters rule every packet of the class out, so
/// skipping it changes nothing. Flow rules and sequences, which do nothing per packet, are in
/// no list.
#[derive(Debug, Default)]
struct Dispatch {
    rules: Vec<Box<[u16]>>,
    /// The threshold rules of `rules` (those [`Detector::prepare`] runs the filters of).
    thresholds: Vec<Box<[u16]>>,
    /// `rules` without the threshold rules (a prepared packet visits those through its hints).
    others: Vec<Box<[u16]>>,
    /// `others` without the intel rules, for the packets no intel list can hold
    /// ([`maybe_listed`]): most packets then visit no rule but through hints.
    unlisted: Vec<Box<[u16]>>,
    /// The intel rules with entries, in rule order.
    intel: Box<[IntelGate]>,
    meters: Vec<Box<[u16]>>,
    /// `meters` without those counted from flows ([`SharedMeter::from_flows`]): the meters a
    /// packet is measured by.
    packet_meters: Vec<Box<[u16]>>,
    /// Per list slot, which of its lists are not empty ([`SlotHas`]): one load tells
    /// [`Detector::prepare`] what a packet may need.
    has: Vec<SlotHas>,
    /// Some rule or meter is offered the packets of some class ([`Detector::takes_packets`]).
    takes_packets: bool,
    /// Some baseline meter measures packets one by one (none counted from flows).
    packet_meters_any: bool,
    /// The lists are per class and source lane: at [`Dispatch::slot`].
    lanes: Lanes,
}

/// IPv4 sources grouped by the first octet of their address into *lanes*: octets whose packets
/// the same rules may match (by the address tables of the rules' filters) share a lane, and a
/// lane's dispatch lists leave out the rules its sources rule out. `spoofed-source` (sources in
/// 0.0.0.0/8 and 240.0.0.0/4) is then not even visited for a packet from an ordinary address,
/// nor the seed machine (10.0.0.0/8) for one from outside its network. Lane 0 takes every other
/// packet — IPv6, non-IP, an IPv4 packet whose source is not stored IPv4-mapped — and its lists
/// hold every rule of the class. When no rule rules an octet out, or the octets fall into more
/// than [`MAX_LANES`] − 1 groups, there is lane 0 only.
#[derive(Debug, Clone)]
struct Lanes {
    /// Per first octet of an IPv4 source, its lane.
    of_octet: [u8; 256],
    /// Lanes, lane 0 included.
    count: usize,
}

impl Default for Lanes {
    fn default() -> Lanes {
        Lanes { of_octet: [0; 256], count: 1 }
    }
}

/// The most source lanes ([`Lanes`]); each multiplies the dispatch lists.
const MAX_LANES: usize = 8;

// A list slot ([`Dispatch::slot`]) fits the `u16` a prepared packet keeps it in.
const _: () = assert!(PacketClass::COUNT * MAX_LANES <= u16::MAX as usize);

/// False when no IPv4 packet whose source's first octet is `octet` can concern a rule of
/// `kind` (intel rules, which look their addresses up themselves, and rules on flow records
/// are never ruled out).
fn may_from_v4_source(kind: &RuleKind, octet: u8) -> bool {
    match kind {
        RuleKind::StateMachine(sm) => sm.may_classify_v4_source_octet(octet),
        RuleKind::Threshold(t) => t.may_select_v4_source_octet(octet),
        RuleKind::Absence(a) => a.filter.may_match_v4_source_octet(octet),
        RuleKind::Intel(_) | RuleKind::Baseline(_) | RuleKind::Sequence(_) => true,
    }
}

impl Lanes {
    /// The lanes of `rules`, and per lane, per rule, whether a packet of the lane may concern
    /// the rule.
    fn new(rules: &RuleSet) -> (Lanes, Vec<Vec<bool>>) {
        let every = vec![true; rules.rules.len()];
        let mut groups: Vec<Vec<bool>> = Vec::new();
        let mut of_octet = [0u8; 256];
        for (octet, lane) in (0..=u8::MAX).zip(of_octet.iter_mut()) {
            let may: Vec<bool> = rules.rules.iter().map(|r| may_from_v4_source(&r.kind, octet)).collect();
            let at = match groups.iter().position(|g| *g == may) {
                Some(at) => at,
                None if groups.len() + 1 < MAX_LANES => {
                    groups.push(may);
                    groups.len() - 1
                }
                None => return (Lanes::default(), vec![every]),
            };
            *lane = u8::try_from(at + 1).unwrap_or(0);
        }
        if groups.iter().all(|g| g.iter().all(|&m| m)) {
            return (Lanes::default(), vec![every]);
        }
        let lanes = Lanes { of_octet, count: groups.len() + 1 };
        (lanes, std::iter::once(every).chain(groups).collect())
    }

    /// The lane of `m`.
    #[inline(always)]
    fn of(&self, m: &PacketMeta) -> u8 {
        if m.network == Network::Ipv4 && m.src.is_v4() {
            self.of_octet.get(usize::from(m.src.0[12])).copied().unwrap_or(0)
        } else {
            0
        }
    }
}

impl Dispatch {
    fn new(rules: &RuleSet, meters: &[SharedMeter]) -> Dispatch {
        Dispatch::with_lanes(rules, meters, Lanes::new(rules))
    }

    /// The lists for `lanes` (from [`Lanes::new`]: the lanes, and per lane which rules a
    /// packet of the lane may concern).
    fn with_lanes(rules: &RuleSet, meters: &[SharedMeter], lanes: (Lanes, Vec<Vec<bool>>)) -> Dispatch {
        let may = |kind: &RuleKind, c: PacketClass| match kind {
            RuleKind::StateMachine(sm) => sm.may_classify(c),
            RuleKind::Threshold(t) => t.placement != Placement::Central && t.may_select_class(c),
            RuleKind::Absence(a) => a.filter.may_match_class(c),
            // An empty set (the shipped blocklist before feeds are added) matches nothing.
            RuleKind::Intel(ir) => !ir.set.is_empty() && ir.filter.may_match_class(c),
            RuleKind::Baseline(_) | RuleKind::Sequence(_) => false,
        };
        let (lanes, lane_may) = lanes;
        let mut d = Dispatch { lanes, ..Dispatch::default() };
        for (c, lane) in PacketClass::every().flat_map(|c| lane_may.iter().map(move |l| (c, l))) {
            let in_lane = |i: usize| lane.get(i).copied().unwrap_or(true);
            let ids = rules.rules.iter().enumerate().filter(|(i, r)| in_lane(*i) && may(&r.kind, c));
            let ids: Box<[u16]> = ids.filter_map(|(i, _)| u16::try_from(i).ok()).collect();
            let kind = |i: &u16| rules.rules.get(usize::from(*i)).map(|r| &r.kind);
            let threshold = |i: &u16| matches!(kind(i), Some(RuleKind::Threshold(_)));
            let intel = |i: &u16| matches!(kind(i), Some(RuleKind::Intel(_)));
            d.thresholds.push(ids.iter().copied().filter(threshold).collect());
            d.others.push(ids.iter().copied().filter(|i| !threshold(i)).collect());
            d.unlisted.push(ids.iter().copied().filter(|i| !threshold(i) && !intel(i)).collect());
            d.rules.push(ids);
            let ms: Box<[u16]> = meters
                .iter()
                .enumerate()
                .filter(|(_, m)| m.filter.may_match_class(c))
                .filter_map(|(i, _)| u16::try_from(i).ok())
                .collect();
            let by_packet = |i: &u16| meters.get(usize::from(*i)).is_some_and(|m| !m.from_flows);
            d.packet_meters.push(ms.iter().copied().filter(by_packet).collect());
            d.meters.push(ms);
            let has =
                |l: Option<&Box<[u16]>>, bit: u8| if l.is_some_and(|l| !l.is_empty()) { bit } else { 0 };
            let intel = if d.others.last().map(|l| l.len()) != d.unlisted.last().map(|l| l.len()) {
                SlotHas::INTEL
            } else {
                0
            };
            d.has.push(SlotHas(
                has(d.thresholds.last(), SlotHas::THRESHOLDS)
                    | has(d.unlisted.last(), SlotHas::UNLISTED)
                    | has(d.packet_meters.last(), SlotHas::PACKET_METERS)
                    | intel,
            ));
        }
        d.takes_packets = d.rules.iter().chain(&d.packet_meters).any(|l| !l.is_empty());
        d.packet_meters_any = d.packet_meters.iter().any(|l| !l.is_empty());
        d.intel = (rules.rules.iter())
            .filter_map(|r| match &r.kind {
                RuleKind::Intel(ir) if !ir.set.is_empty() => Some(ir.gate()),
                _ => None,
            })
            .collect();
        d
    }

    /// Where the lists of class `c` in source lane `lane` are.
    #[inline(always)]
    fn slot(&self, c: PacketClass, lane: u8) -> usize {
        c.index() * self.lanes.count + usize::from(lane)
    }

    /// Where [`Detector::per_class`] counts non-IP frames: after a counter per list slot.
    fn non_ip(&self) -> usize {
        PacketClass::COUNT * self.lanes.count
    }

    /// Zeroed counters for [`Detector::per_class`]: one per list slot, then non-IP frames.
    fn counters(&self) -> Box<[u64]> {
        vec![0; self.non_ip() + 1].into_boxed_slice()
    }

    #[inline]
    fn thresholds_for(&self, slot: usize) -> &[u16] {
        self.thresholds.get(slot).map_or(&[], |l| l)
    }

    /// The rules other than thresholds for a packet of list slot `slot`; `listed`: whether an
    /// intel list may hold one of its addresses (else the intel rules are left out).
    #[inline]
    fn others_for_packet(&self, slot: usize, listed: bool) -> &[u16] {
        let lists = if listed { &self.others } else { &self.unlisted };
        lists.get(slot).map_or(&[], |l| l)
    }

    #[inline]
    fn rules_for(&self, slot: usize) -> &[u16] {
        self.rules.get(slot).map_or(&[], |l| l)
    }

    #[inline]
    fn packet_meters_for(&self, slot: usize) -> &[u16] {
        self.packet_meters.get(slot).map_or(&[], |l| l)
    }

    /// Per rule, the packets offered to it, from the packets seen per list slot
    /// ([`Detector::per_class`]): a rule is offered the packets of the classes and source
    /// lanes it is dispatched for — a baseline rule those of its meter — except that non-IP
    /// frames are never offered to intel rules and meters, which look at IP addresses only.
    fn offered(&self, per_class: &[u64], rules: &RuleSet, meters: &[SharedMeter]) -> Vec<u64> {
        let mut offered = vec![0u64; rules.rules.len()];
        let (general, non_ip) = (self.slot(PacketClass::GENERAL, 0), self.non_ip());
        for (c, &n) in per_class.iter().enumerate().filter(|(_, n)| **n > 0) {
            // The last counter: non-IP frames, of the general class.
            let ip = c < non_ip;
            for &i in self.rules.get(if ip { c } else { general }).map_or(&[][..], |l| l) {
                let intel =
                    matches!(rules.rules.get(usize::from(i)).map(|r| &r.kind), Some(RuleKind::Intel(_)));
                if let Some(o) = offered.get_mut(usize::from(i))
                    && (ip || !intel)
                {
                    *o += n;
                }
            }
            for &j in self.meters.get(c).filter(|_| ip).map_or(&[][..], |l| l) {
                for id in meters.get(usize::from(j)).map_or(&[][..], |m| &m.rules) {
                    if let Some(o) = offered.get_mut(usize::from(id.0)) {
                        *o += n;
                    }
                }
            }
        }
        offered
    }
}

impl SharedMeter {
    fn meter_peers(&self) -> bool {
        self.meter.measures_peers()
    }
}

/// One worker's detection state: a state per rule. Owned by one thread; no locks.
#[derive(Debug)]
pub struct Detector {
    rules: Arc<RuleSet>,
    networks: Arc<NetworkMap>,
    states: Vec<State>,
    meters: Vec<SharedMeter>,
    /// Per packet class and source lane, the rules and meters such a packet may concern.
    dispatch: Dispatch,
    run_key: u64,
    place: WorkerPlace,
    lateness: Duration,
    /// Whether input has begun (the first packet or clock tick was seen).
    started: bool,
    now: Nanos,
    alerts: u64,
    /// Key hashes and slot hints of the batch given to [`Detector::prepare`].
    prepared: Prepared,
    /// IP packets seen per list slot ([`Dispatch::slot`]: class and source lane), then
    /// non-IP frames ([`Dispatch::non_ip`]): each rule's `evaluated` count follows from them
    /// (one increment per packet, whatever the number of rules).
    per_class: Box<[u64]>,
    /// Per rule, packets offered to it under earlier rule sets (carried over by reloads).
    evaluated_before: Vec<u64>,
}

/// Threshold tables smaller than this are not prefetched: they stay in the caches.
const PREFETCH_MIN_KEYS: usize = 512;

/// How many busy packets (those with work, [`Prepared::work`]) ahead of the one it runs
/// [`Detector::on_prepared`] starts loading what the updates read beyond the key slots (the
/// third prefetch stage). A batch of 32 holds six or seven busy packets on an ordinary mix,
/// so the first one starts this for most of its batch (8 against 4: 1–1.5 % less worker CPU
/// with the default rules and the million-entry list, BENCHMARKS.md run 15).
const VALUES_AHEAD: usize = 8;

/// The work of one batch done ahead ([`Detector::prepare`]).
#[derive(Debug, Default)]
struct Prepared {
    /// Packets in the batch.
    count: u32,
    /// The batch's *busy* packets — those some rule or meter has work for — in batch order,
    /// then an end marker (packet `u32::MAX`) whose `hints` is `hints.len()`. The others
    /// were settled by `prepare`: [`Detector::on_prepared`] returns at once for them.
    work: Vec<Work>,
    /// Where in `work` the next busy packet is.
    next: usize,
    /// The batch index of that packet (`work[next].packet`).
    next_packet: u32,
    /// In packet order, then in the order of the packet's rule list.
    hints: Vec<Hint>,
}

/// A busy packet of a prepared batch.
#[derive(Debug, Clone, Copy)]
struct Work {
    /// Its index in the batch.
    packet: u32,
    /// Where its hints start in [`Prepared::hints`] (they end where the next work's start).
    hints: u32,
    class: PacketClass,
    /// Its list slot ([`Dispatch::slot`]).
    slot: u16,
    /// Whether an intel list may hold one of its addresses ([`maybe_listed`]).
    listed: bool,
}

impl Work {
    const END: u32 = u32::MAX;
}

/// A threshold rule's key lookup for one packet the rule selects, started ahead of time.
/// Every threshold rule (Local or Merged) that selects a prepared packet has one, so a
/// prepared packet's filters run once.
#[derive(Debug, Clone, Copy)]
struct Hint {
    rule: u16,
    /// Whether the table was large enough to prefetch (then `prefetch_slots` looks up the slot).
    prefetch: bool,
    /// The key's slot as the index pointed to when prefetched (`u32::MAX`: none); checked
    /// before use.
    slot: u32,
    /// The key's hash in the rule's table (for a Merged rule 0 when the bucket's table did not
    /// exist yet: then it is computed again).
    hash: u64,
    /// The packet's key for the rule, computed once for the hash and the update.
    key: KeyValue,
    /// The packet's event time (a Merged rule's bucket table is chosen by it).
    ts: Nanos,
}

/// What [`Detector::run`] needs to run one rule over a packet (the detector's fields it
/// borrows while it walks the dispatch lists).
struct Visit<'a> {
    rules: &'a RuleSet,
    networks: &'a NetworkMap,
    states: &'a mut [State],
    run_key: u64,
    alerts: &'a mut u64,
}

impl Visit<'_> {
    /// Runs rule `i` over `m`. A threshold rule updates with `hint` when given (prepare found
    /// that it selects the packet), else runs its filter first.
    #[inline]
    fn rule(
        &mut self,
        i: u16,
        hint: Option<Hint>,
        class: PacketClass,
        m: &PacketMeta,
        frame: u64,
        out: &mut impl FnMut(DetectorOutput),
    ) {
        let id = RuleId(i);
        let (networks, run_key) = (self.networks, self.run_key);
        let (Some(rule), Some(state)) =
            (self.rules.rules.get(usize::from(i)), self.states.get_mut(usize::from(i)))
        else {
            return;
        };
        match (&rule.kind, state) {
            (RuleKind::StateMachine(sm), State::Machine(runner)) => {
                let Some(event) = sm.classify_class(class, m) else { return };
                let alerts = &mut *self.alerts;
                let mut timed_out = |t: StateTimeout| {
                    *alerts += 1;
                    out(DetectorOutput::Alert(timeout_alert(run_key, id, &t)));
                };
                if let Some(bad) = runner.on_event(sm, m.src, event, m.ts, &mut timed_out) {
                    let key = KeyValue { src: m.src, ..KeyValue::default() };
                    let detail = AlertDetail::InvalidTransition {
                        state: bad.state,
                        event: bad.event,
                        events_before: bad.events_before,
                        started: bad.started,
                    };
                    *self.alerts += 1;
                    out(DetectorOutput::Alert(packet_alert(run_key, id, key, m, frame, detail)));
                }
            }
            (RuleKind::Threshold(t), State::Immediate(st)) => {
                let crossing = match hint {
                    Some(h) => st
                        .add_prepared(t, h.key, h.hash, h.slot, m.ts, t.packet_contribution(m))
                        .map(|c| (h.key, c)),
                    None if t.selects_packet_class(class, m) => {
                        let key = t.key.of_packet(m, networks);
                        st.add(t, key, m.ts, t.packet_contribution(m)).map(|c| (key, c))
                    }
                    None => None,
                };
                if let Some((key, c)) = crossing {
                    let detail = AlertDetail::Threshold { value: c.value, events: c.events };
                    *self.alerts += 1;
                    out(DetectorOutput::Alert(packet_alert(run_key, id, key, m, frame, detail)));
                }
            }
            (RuleKind::Threshold(t), State::Partial(st)) => match hint {
                Some(h) => {
                    st.add_prepared(t, h.key, Some((h.hash, h.slot)), m.ts, t.packet_contribution(m));
                }
                None if t.selects_packet_class(class, m) => {
                    st.add(t, t.key.of_packet(m, networks), m.ts, t.packet_contribution(m));
                }
                None => {}
            },
            (RuleKind::Absence(a), State::Absence(st)) if a.filter.matches_class(class, m) => {
                let alerts = &mut *self.alerts;
                st.on_packet(a, m, &mut |s| {
                    *alerts += 1;
                    out(DetectorOutput::Alert(absence_alert(run_key, id, &s)));
                });
            }
            (RuleKind::Intel(ir), State::Intel(st)) => {
                // Most packets carry no listed address: the occupancy bits say so with a load
                // per address, before the filter and the lookup's bookkeeping.
                if !m.is_ip() || ir.surely_misses(m) || !ir.filter.matches_class(class, m) {
                    return;
                }
                let alerts = &mut *self.alerts;
                st.on_packet(ir, m, &mut |s| {
                    let key = KeyValue { src: s.listed, ..KeyValue::default() };
                    let detail = AlertDetail::Intel {
                        list: s.hit.list,
                        listed: s.listed,
                        prefix: s.hit.prefix,
                        matched: s.matched,
                    };
                    *alerts += 1;
                    out(DetectorOutput::Alert(packet_alert(run_key, id, key, m, frame, detail)));
                });
            }
            _ => {}
        }
    }
}

/// Whether an intel rule (its test among `intel`) may find an address of `m` on its lists:
/// false when every list surely misses both (the occupancy test, a load per address), so
/// the packet's visit leaves the intel rules out — they would return at once.
#[inline(always)]
fn maybe_listed(intel: &[IntelGate], m: &PacketMeta) -> bool {
    m.is_ip() && intel.iter().any(|g| !g.surely_misses(m))
}

impl Detector {
    /// Fresh state for `rules`. `run_key` identifies the run in alert ids (see
    /// [`AlertId::derive`]); `lateness` is how long after a bucket or interval ends its
    /// partial aggregates are handed over.
    #[must_use]
    pub fn new(
        rules: Arc<RuleSet>,
        networks: Arc<NetworkMap>,
        run_key: u64,
        place: WorkerPlace,
        lateness: Duration,
    ) -> Detector {
        let mut states: Vec<State> = rules.rules.iter().map(|r| State::new(&r.kind)).collect();
        let meters = group_meters(&rules, &mut states, Vec::new());
        let dispatch = Dispatch::new(&rules, &meters);
        let per_class = dispatch.counters();
        Detector {
            rules,
            networks,
            states,
            meters,
            dispatch,
            run_key,
            place,
            lateness,
            started: false,
            now: Nanos::ZERO,
            alerts: 0,
            prepared: Prepared::default(),
            per_class,
            evaluated_before: Vec::new(),
        }
    }

    /// Swaps in a new rule set at a batch boundary. Rules whose name and definition did not
    /// change keep their state (machines in progress, windows, absence timers, baseline
    /// measurements of the interval in progress) whatever their new ids; the others start
    /// fresh — an added absence rule expects its listed senders from now. Partial aggregates
    /// of removed or changed Merged rules are dropped.
    pub fn reload(&mut self, rules: Arc<RuleSet>) {
        let carried = rules.carried_over_from(&self.rules);
        self.evaluated_before = crate::rules::carry_counts(&carried, &self.evaluated());
        let mut old: Vec<Option<State>> = std::mem::take(&mut self.states).into_iter().map(Some).collect();
        let mut fresh = Vec::new();
        self.states = rules
            .rules
            .iter()
            .zip(carried)
            .enumerate()
            .map(|(i, (r, from))| {
                from.and_then(|id| old.get_mut(usize::from(id.0)).and_then(Option::take)).unwrap_or_else(
                    || {
                        fresh.push(i);
                        State::new(&r.kind)
                    },
                )
            })
            .collect();
        let meters = std::mem::take(&mut self.meters);
        self.meters = group_meters(&rules, &mut self.states, meters);
        self.dispatch = Dispatch::new(&rules, &self.meters);
        self.per_class = self.dispatch.counters();
        self.rules = rules;
        self.prepared = Prepared::default();
        if self.started {
            let (now, place) = (self.now, self.place);
            for i in fresh {
                if let (Some(Rule { kind: RuleKind::Absence(a), .. }), Some(State::Absence(st))) =
                    (self.rules.rules.get(i), self.states.get_mut(i))
                {
                    st.start(a, now, |addr| place.owns(addr));
                }
            }
        }
    }

    /// Input begins at `at`: absence rules expect their listed senders from then on.
    #[cold]
    fn start(&mut self, at: Nanos) {
        self.started = true;
        let place = self.place;
        for (rule, state) in self.rules.rules.iter().zip(self.states.iter_mut()) {
            if let (RuleKind::Absence(a), State::Absence(st)) = (&rule.kind, state) {
                st.start(a, at, |addr| place.owns(addr));
            }
        }
    }

    /// False when no rule is offered packets and no baseline meter measures them (no rules, or
    /// only rules on flow records): then [`Detector::prepare`] and [`Detector::on_prepared`]
    /// would change nothing, and a caller may skip them (a flow probe pays nothing per packet
    /// for its idle detector). Changes only on [`Detector::reload`].
    #[must_use]
    pub fn takes_packets(&self) -> bool {
        self.dispatch.takes_packets
    }

    /// Starts loading, for a batch of packets, the state their threshold rules and baseline
    /// meters will update — the key tables' index lines and the meters' host entries — so
    /// the cache misses of the batch overlap instead of queueing one packet at a time. Each
    /// threshold rule's filter runs here, once per packet: [`Detector::on_prepared`] updates
    /// exactly the rules found selecting the packet, with the key hashes computed here. Then,
    /// after other work if there is any (the flow meter's own prepare), call
    /// [`Detector::prefetch_slots`], and [`Detector::on_prepared`] for each packet of the
    /// batch, in order. Only key tables of at least [`PREFETCH_MIN_KEYS`] keys are
    /// prefetched; the rest stay in cache.
    ///
    /// Everything a packet that no rule or meter has work for needs (the clock, its
    /// `evaluated` count) is done here too, so that most packets cost
    /// [`Detector::on_prepared`] one compare.
    pub fn prepare<'a>(&mut self, batch: impl IntoIterator<Item = &'a PacketMeta>) {
        self.begin_prepare();
        for m in batch {
            self.prepare_packet(m);
        }
        self.end_prepare();
    }

    /// [`Detector::prepare`] a packet at a time, for a caller that decodes its batch packet by
    /// packet (so the first stage's loads start while the rest of the batch is decoded):
    /// `begin_prepare`, [`Detector::prepare_packet`] for each packet, [`Detector::end_prepare`].
    pub fn begin_prepare(&mut self) {
        let Prepared { count, work, next, next_packet, hints } = &mut self.prepared;
        work.clear();
        hints.clear();
        *next = 0;
        *count = 0;
        *next_packet = Work::END;
    }

    /// The packets [`Detector::prepare_packet`] took since [`Detector::begin_prepare`].
    #[must_use]
    pub fn prepared_packets(&self) -> usize {
        self.prepared.count as usize
    }

    /// Adds the next packet of the batch being prepared ([`Detector::begin_prepare`]).
    #[inline]
    pub fn prepare_packet(&mut self, m: &PacketMeta) {
        let (class, slot) = self.account(m);
        let Prepared { count, work, hints, .. } = &mut self.prepared;
        let (rules, networks, states, dispatch) =
            (&self.rules.rules, &self.networks, &self.states, &self.dispatch);
        let n = *count;
        let ip = m.is_ip();
        let has = dispatch.has.get(slot).copied().unwrap_or_default();
        let first = hints.len();
        for &i in if has.any(SlotHas::THRESHOLDS) { dispatch.thresholds_for(slot) } else { &[] } {
            // The filter first: most rules of a packet's list turn it away.
            let Some(Rule { kind: RuleKind::Threshold(t), .. }) = rules.get(usize::from(i)) else {
                continue;
            };
            if !t.selects_packet_class(class, m) {
                continue;
            }
            match states.get(usize::from(i)) {
                Some(State::Immediate(st)) => {
                    let key = t.key.of_packet(m, networks);
                    let hash = st.hash(&key);
                    let prefetch = st.len() >= PREFETCH_MIN_KEYS;
                    if prefetch {
                        st.prefetch_index(hash);
                    }
                    hints.push(Hint { rule: i, prefetch, slot: u32::MAX, hash, key, ts: m.ts });
                }
                Some(State::Partial(st)) => {
                    let key = t.key.of_packet(m, networks);
                    let hash = st.hash(t, &key, m.ts);
                    let prefetch = st.len() >= PREFETCH_MIN_KEYS;
                    if prefetch {
                        st.prefetch_index(t, m.ts, hash);
                    }
                    hints.push(Hint { rule: i, prefetch, slot: u32::MAX, hash, key, ts: m.ts });
                }
                _ => {}
            }
        }
        let metered = ip && has.any(SlotHas::PACKET_METERS);
        if metered {
            for &i in dispatch.packet_meters_for(slot) {
                if let Some(sm) = self.meters.get(usize::from(i)) {
                    sm.meter.prefetch(m);
                }
            }
        }
        let listed = has.any(SlotHas::INTEL) && maybe_listed(&dispatch.intel, m);
        if hints.len() != first || metered || listed || has.any(SlotHas::UNLISTED) {
            let hints = u32::try_from(first).unwrap_or(u32::MAX);
            work.push(Work { packet: n, hints, class, slot: slot as u16, listed });
        }
        *count = n + 1;
    }

    /// Ends the batch begun with [`Detector::begin_prepare`].
    pub fn end_prepare(&mut self) {
        let Prepared { work, next_packet, hints, .. } = &mut self.prepared;
        let end = u32::try_from(hints.len()).unwrap_or(u32::MAX);
        work.push(Work {
            packet: Work::END,
            hints: end,
            class: PacketClass::GENERAL,
            slot: 0,
            listed: false,
        });
        *next_packet = work.first().map_or(Work::END, |w| w.packet);
    }

    /// The second stage of [`Detector::prepare`]: starts loading the key slots the (by now
    /// likely cached) index lines point to, and keeps them as hints, which are checked before
    /// use. Walks the hints only: a packet no threshold rule selects costs nothing here.
    pub fn prefetch_slots(&mut self) {
        let (rules, states) = (&self.rules.rules, &self.states);
        for h in self.prepared.hints.iter_mut().filter(|h| h.prefetch) {
            h.slot = match (rules.get(usize::from(h.rule)).map(|r| &r.kind), states.get(usize::from(h.rule)))
            {
                (_, Some(State::Immediate(st))) => st.prefetch_slot(h.hash),
                (Some(RuleKind::Threshold(t)), Some(State::Partial(st))) => st.prefetch_slot(t, h.ts, h.hash),
                _ => u32::MAX,
            };
        }
    }

    /// The third stage of [`Detector::prepare`], run from [`Detector::on_prepared`]
    /// [`VALUES_AHEAD`] busy packets ahead: starts loading what the updates of busy packet `k`
    /// (`work[k]`) read outside the key slots prefetched by [`Detector::prefetch_slots`]
    /// (which have arrived by then), such as a distinct counter's list of values.
    #[inline(always)]
    fn prefetch_values(&self, k: usize) {
        let Prepared { work, hints, .. } = &self.prepared;
        let (Some(a), Some(b)) = (work.get(k), work.get(k + 1)) else { return };
        if a.hints != b.hints {
            self.prefetch_hinted_values(hints.get(a.hints as usize..b.hints as usize).unwrap_or_default());
        }
    }

    /// [`Detector::prefetch_values`] for one packet's hints.
    #[inline(never)]
    fn prefetch_hinted_values(&self, hints: &[Hint]) {
        for h in hints {
            if h.slot != u32::MAX
                && let Some(State::Immediate(st)) = self.states.get(usize::from(h.rule))
            {
                st.prefetch_value(h.slot);
            }
        }
    }

    /// Runs every packet rule over packet `i` of the batch last given to
    /// [`Detector::prepare`] (`m` must be that packet); `frame` is its input frame number.
    /// Call it for the batch's packets in order. A packet `prepare` found no work for
    /// returns at once (its clock and counts were taken by `prepare`).
    #[inline]
    pub fn on_prepared(
        &mut self,
        i: usize,
        m: &PacketMeta,
        frame: u64,
        out: &mut impl FnMut(DetectorOutput),
    ) {
        let p = &self.prepared;
        if i as u64 >= u64::from(p.next_packet) {
            self.run_prepared(i, m, frame, out);
        } else if i >= p.count as usize {
            // Not a packet of the prepared batch: the filters decide.
            self.on_packet(m, frame, out);
        }
    }

    /// [`Detector::on_prepared`] for a busy packet (the next of [`Prepared::work`], or a later
    /// one when the caller skipped some).
    #[inline(never)]
    fn run_prepared(&mut self, i: usize, m: &PacketMeta, frame: u64, out: &mut impl FnMut(DetectorOutput)) {
        let mut k = self.prepared.next;
        while self.prepared.work.get(k).is_some_and(|w| (w.packet as usize) < i) {
            k += 1;
        }
        let (Some(&w), Some(end)) =
            (self.prepared.work.get(k), self.prepared.work.get(k + 1).map(|e| e.hints))
        else {
            return;
        };
        if w.packet as usize != i {
            // A packet prepare found no work for, after busy ones the caller skipped.
            self.prepared.next = k;
            self.prepared.next_packet = w.packet;
            return;
        }
        if k == 0 {
            for a in 0..VALUES_AHEAD {
                self.prefetch_values(a);
            }
        }
        self.prefetch_values(k + VALUES_AHEAD);
        self.prepared.next = k + 1;
        self.prepared.next_packet = self.prepared.work.get(k + 1).map_or(Work::END, |w| w.packet);
        let slot = usize::from(w.slot);
        let Detector { rules, networks, states, dispatch, run_key, alerts, prepared, .. } = self;
        let mut visit = Visit { rules, networks, states, run_key: *run_key, alerts };
        let hints = prepared.hints.get(w.hints as usize..end as usize).unwrap_or_default();
        let others = dispatch.others_for_packet(slot, w.listed);
        // The threshold rules with a hint (prepare found that they select the packet) and
        // the class's rules of other kinds, merged in rule order (both lists ascend): a
        // threshold rule that does not select the packet is not visited at all. Most packets
        // have no hint, or no rule of another kind.
        let class = w.class;
        if others.is_empty() {
            for &h in hints {
                visit.rule(h.rule, Some(h), class, m, frame, out);
            }
        } else if hints.is_empty() {
            for &o in others {
                visit.rule(o, None, class, m, frame, out);
            }
        } else {
            let (mut h, mut o) = (hints.iter().peekable(), others.iter().peekable());
            loop {
                let (rule, hint) = match (h.peek(), o.peek()) {
                    (Some(hh), Some(&&oo)) if oo < hh.rule => {
                        o.next();
                        (oo, None)
                    }
                    (Some(&&hh), _) => {
                        h.next();
                        (hh.rule, Some(hh))
                    }
                    (None, Some(&&oo)) => {
                        o.next();
                        (oo, None)
                    }
                    (None, None) => break,
                };
                visit.rule(rule, hint, class, m, frame, out);
            }
        }
        self.meter_baselines(class, slot, m);
    }

    /// What every packet costs before its rules, whichever path it takes: input starts, the
    /// clock advances, the packet is counted for its list slot (`evaluated`). Returns its class
    /// and list slot ([`Dispatch::slot`]).
    #[inline(always)]
    fn account(&mut self, m: &PacketMeta) -> (PacketClass, usize) {
        if !self.started {
            self.start(m.ts);
        }
        if m.ts > self.now {
            self.now = m.ts;
        }
        let class = PacketClass::of(m);
        let slot = self.dispatch.slot(class, self.dispatch.lanes.of(m));
        if let Some(n) = self.per_class.get_mut(if m.is_ip() { slot } else { self.dispatch.non_ip() }) {
            *n += 1;
        }
        (class, slot)
    }

    /// Runs every packet rule over one packet, each rule's filter deciding; `frame` is its
    /// input frame number.
    #[inline]
    pub fn on_packet(&mut self, m: &PacketMeta, frame: u64, out: &mut impl FnMut(DetectorOutput)) {
        let (class, slot) = self.account(m);
        let Detector { rules, networks, states, dispatch, run_key, alerts, .. } = self;
        let mut visit = Visit { rules, networks, states, run_key: *run_key, alerts };
        for &i in dispatch.rules_for(slot) {
            visit.rule(i, None, class, m, frame, out);
        }
        self.meter_baselines(class, slot, m);
    }

    /// Measures a packet for the shared baseline meters.
    #[inline]
    fn meter_baselines(&mut self, class: PacketClass, slot: usize, m: &PacketMeta) {
        if !self.dispatch.packet_meters_any || !m.is_ip() {
            return;
        }
        for &i in self.dispatch.packet_meters_for(slot) {
            if let Some(sm) = self.meters.get_mut(usize::from(i))
                && (sm.filter.is_match_all() || sm.filter.matches_class(class, m))
            {
                sm.meter.on_packet(m);
            }
        }
    }

    /// The interval the flow meter's interval fold should hand flows over in, for the packet
    /// baselines that can be counted from flows ([`Detector::meter_from_flows`]): those
    /// without a filter or peers, of the first such meter's interval. `None`: there are none.
    #[must_use]
    pub fn flow_fold_interval(&self) -> Option<Duration> {
        self.meters.iter().find(|sm| sm.foldable()).map(|sm| sm.meter.interval())
    }

    /// Counts the packet baselines that can be, of interval `interval` (from
    /// [`Detector::flow_fold_interval`]), from the flow meter's hand-overs
    /// ([`Detector::on_interval_deltas`]) instead of per packet; `None`: all per packet.
    ///
    /// The caller's flow meter must then meter exactly the packets this detector would have
    /// counted (every decoded IP packet, once: in a pipeline, the packets of the worker's
    /// pair role), hand flows over at that interval from now on, and pass every hand-over
    /// on before the next [`Detector::on_clock`]. Per-host counts are then the same as per
    /// packet, out-of-order packets included, at one hand-over per flow and interval instead
    /// of two host lookups per packet.
    pub fn meter_from_flows(&mut self, interval: Option<Duration>) {
        for sm in &mut self.meters {
            sm.from_flows = sm.foldable() && Some(sm.meter.interval()) == interval;
        }
        self.dispatch = Dispatch::new(&self.rules, &self.meters);
    }

    /// Counts flow hand-overs, in order, for the meters counted from flows.
    pub fn on_interval_deltas(&mut self, deltas: &[outpost_flowmeter::IntervalDelta]) {
        for sm in self.meters.iter_mut().filter(|sm| sm.from_flows) {
            sm.meter.on_interval_deltas(deltas);
        }
    }

    /// Hands finished intervals of the shared baseline meters to `out`.
    fn flush_meters(&mut self, now: Nanos, lateness: Duration, out: &mut impl FnMut(DetectorOutput)) {
        let rules = &self.rules;
        for sm in &mut self.meters {
            let group: Vec<(RuleId, &crate::baseline::BaselineRule)> = sm
                .rules
                .iter()
                .filter_map(|id| match rules.rule(*id).map(|r| &r.kind) {
                    Some(RuleKind::Baseline(b)) => Some((*id, b)),
                    _ => None,
                })
                .collect();
            sm.meter.flush(&group, now, lateness, &mut |p| out(DetectorOutput::Baseline(p)));
        }
    }

    /// Event time advanced to `now` (`_seq` is the tick's place in the input, which depends on
    /// the worker count: nothing derives from it): expire idle state, report silences, and
    /// hand over finished buckets and intervals.
    pub fn on_clock(&mut self, now: Nanos, _seq: u64, out: &mut impl FnMut(DetectorOutput)) {
        // A tick at time zero carries no time yet (an empty batch before any frame).
        if !self.started && now > Nanos::ZERO {
            self.start(now);
        }
        if now > self.now {
            self.now = now;
        }
        let now = self.now;
        let (rules, place, lateness, run_key) = (&self.rules, self.place, self.lateness, self.run_key);
        for (i, (rule, state)) in rules.rules.iter().zip(self.states.iter_mut()).enumerate() {
            let id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
            match (&rule.kind, state) {
                (RuleKind::StateMachine(sm), State::Machine(m)) => {
                    let alerts = &mut self.alerts;
                    m.expire(sm, now, &mut |t| {
                        *alerts += 1;
                        out(DetectorOutput::Alert(timeout_alert(run_key, id, &t)));
                    });
                }
                (RuleKind::Threshold(t), State::Immediate(st)) => st.expire(t, now),
                (RuleKind::Threshold(t), State::Partial(st)) => {
                    st.flush(id, t, now, lateness, &mut |p| out(DetectorOutput::Partial(p)));
                }
                (RuleKind::Absence(a), State::Absence(st)) => {
                    let alerts = &mut self.alerts;
                    st.on_clock(a, now, |addr| place.owns(addr), &mut |s| {
                        *alerts += 1;
                        out(DetectorOutput::Alert(absence_alert(run_key, id, &s)));
                    });
                }
                (RuleKind::Intel(_), State::Intel(st)) => st.expire(now),
                _ => {}
            }
        }
        self.flush_meters(now, lateness, out);
    }

    /// End of input: hand over every open bucket and interval.
    pub fn finish(&mut self, out: &mut impl FnMut(DetectorOutput)) {
        let (rules, now, run_key) = (&self.rules, self.now, self.run_key);
        for (i, (rule, state)) in rules.rules.iter().zip(self.states.iter_mut()).enumerate() {
            let id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
            match (&rule.kind, state) {
                (RuleKind::Threshold(t), State::Partial(st)) => {
                    st.flush_all(id, t, &mut |p| out(DetectorOutput::Partial(p)));
                }
                (RuleKind::StateMachine(sm), State::Machine(m)) => {
                    let alerts = &mut self.alerts;
                    m.finish(sm, now, &mut |t| {
                        *alerts += 1;
                        out(DetectorOutput::Alert(timeout_alert(run_key, id, &t)));
                    });
                }
                _ => {}
            }
        }
        self.flush_meters(Nanos::MAX, Duration::ZERO, out);
    }

    /// The worker's clock (latest packet or tick time).
    #[must_use]
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> DetectorStats {
        let rules = self
            .states
            .iter()
            .map(|s| match s {
                State::Baseline(i) => {
                    self.meters.get(*i).map_or(RuleStats::Meter { packets: 0, late: 0 }, |m| {
                        RuleStats::Meter { packets: m.meter.packets, late: m.meter.late }
                    })
                }
                other => other.stats(),
            })
            .collect();
        DetectorStats { rules, evaluated: self.evaluated(), alerts: self.alerts }
    }

    /// Per rule, packets offered to it (see [`DetectorStats::evaluated`]).
    fn evaluated(&self) -> Vec<u64> {
        let mut offered = self.dispatch.offered(&self.per_class, &self.rules, &self.meters);
        for (o, before) in offered.iter_mut().zip(&self.evaluated_before) {
            *o += before;
        }
        offered
    }
}

/// The alert of a silence, at the moment the silence reached the timeout. Its id is anchored
/// there too (a sender has one silence per such moment), not at the packet or tick that
/// noticed it: those depend on the worker count.
fn absence_alert(run_key: u64, rule: RuleId, s: &Silence) -> Alert {
    Alert::for_key(
        AlertId::derive(run_key, s.at.0 | (1 << 63), rule, &s.key),
        s.at,
        rule,
        s.key,
        AlertDetail::Absence { last_seen: s.last_seen },
    )
}

/// A machine that stayed in a state past its timeout (noticed at a tick or the key's next
/// event; the id and time depend only on when the timeout ran out).
fn timeout_alert(run_key: u64, rule: RuleId, t: &StateTimeout) -> Alert {
    let key = KeyValue { src: t.key, ..KeyValue::default() };
    Alert::for_key(
        AlertId::derive(run_key, t.at.0 | (1 << 62), rule, &key),
        t.at,
        rule,
        key,
        AlertDetail::StateTimeout { state: t.state, events_before: t.events_before, started: t.started },
    )
}

/// An alert raised by a packet.
fn packet_alert(
    run_key: u64,
    rule: RuleId,
    key: KeyValue,
    m: &PacketMeta,
    frame: u64,
    detail: AlertDetail,
) -> Alert {
    Alert {
        id: AlertId::derive(run_key, frame, rule, &key),
        ts: m.ts,
        rule,
        key,
        frame: Some(frame),
        flow_id: None,
        src: m.src,
        dst: m.dst,
        src_port: m.src_port,
        dst_port: m.dst_port,
        ip_proto: m.ip_proto,
        vlan: (m.vlan_count > 0).then_some(m.vlan[0]),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceText;

    /// The shipped rules (default and seed) without their intel rule's optional list.
    fn shipped() -> Arc<RuleSet> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules.d/");
        let texts: Vec<SourceText> = ["default.toml", "seed.toml"]
            .iter()
            .map(|f| {
                SourceText::new(*f, std::fs::read_to_string(format!("{dir}{f}")).expect("shipped rules"))
            })
            .collect();
        let cfgs: Vec<crate::RulesConfig> = texts.iter().map(|t| t.parse().expect("rules parse")).collect();
        Arc::new(RuleSet::compile(cfgs.iter().zip(&texts).map(|(c, t)| (c, t, ""))).expect("rules compile"))
    }

    fn detector(rules: &Arc<RuleSet>) -> Detector {
        Detector::new(rules.clone(), Arc::new(NetworkMap::default()), 7, WorkerPlace::ALONE, Duration::ZERO)
    }

    /// An IPv4 packet from `src` to `dst`: a SYN, a UDP datagram or an echo request.
    fn packet(src: [u8; 4], dst: [u8; 4], kind: u64, port: u16, ts: Nanos) -> PacketMeta {
        let (ip_proto, tcp_flags, icmp_type) = match kind {
            0 => (6, 0x02, 0),
            1 => (17, 0, 0),
            _ => (1, 0, 8),
        };
        PacketMeta {
            ts,
            wire_len: 74,
            cap_len: 74,
            ip_len: 60,
            src: IpAddress::from_v4(src),
            dst: IpAddress::from_v4(dst),
            src_port: 40_000,
            dst_port: port,
            ip_proto,
            ip6_first_next_header: ip_proto,
            tcp_flags,
            icmp_type,
            network: Network::Ipv4,
            ethertype: 0x0800,
            transport: outpost_decode::Transport::Parsed,
            ttl: 64,
            l4_offset: 34,
            payload_offset: 54,
            ..PacketMeta::default()
        }
    }

    #[test]
    fn the_shipped_rules_split_sources_into_three_lanes() {
        let rules = shipped();
        let d = detector(&rules);
        assert_eq!(d.dispatch.lanes.count, 4, "lane 0, spoofed sources, 10.0.0.0/8, the rest");
        let id = |name: &str| rules.rules.iter().position(|r| r.name.as_str() == name).expect(name) as u16;
        let syn = packet([192, 0, 2, 1], [198, 51, 100, 1], 0, 80, Nanos(1));
        let lane = |o: u8| d.dispatch.lanes.of(&packet([o, 1, 2, 3], [198, 51, 100, 1], 0, 80, Nanos(1)));
        let class = PacketClass::of(&syn);
        let thresholds = |lane: u8| d.dispatch.thresholds_for(d.dispatch.slot(class, lane)).to_vec();
        assert!(!thresholds(lane(192)).contains(&id("spoofed-source")));
        assert!(thresholds(lane(192)).contains(&id("syn-flood")));
        for o in [0, 240, 255] {
            assert!(thresholds(lane(o)).contains(&id("spoofed-source")), "{o}");
        }
        assert!(thresholds(0).contains(&id("spoofed-source")), "lane 0 holds every rule of the class");
        assert_ne!(lane(10), lane(192));
        assert_eq!(lane(11), lane(192));
    }

    /// Lanes leave out only rules whose filters reject the lane's packets: a detector with
    /// lanes raises and counts exactly what one with lane 0 only does, `evaluated` aside.
    #[test]
    fn source_lanes_change_no_output() {
        let rules = shipped();
        let (mut laned, mut plain) = (detector(&rules), detector(&rules));
        let every = vec![vec![true; rules.rules.len()]];
        plain.dispatch = Dispatch::with_lanes(&rules, &plain.meters, (Lanes::default(), every));
        plain.per_class = plain.dispatch.counters();
        assert!(laned.dispatch.lanes.count > 1 && plain.dispatch.lanes.count == 1);
        let mut rng = outpost_tools::splitmix::SplitMix64(7);
        let mut next = |m: u64| rng.next_u64() % m;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..40_000u64 {
            // Sources from every first octet, spoofed ones (0/8, 240/4) and the seed's 10/8
            // among them, most towards a few victims, so the spoofed-source and flood rules fire.
            let src = [next(256) as u8, next(4) as u8, next(256) as u8, 1 + next(250) as u8];
            let dst =
                if next(3) == 0 { [198, 51, 100, next(4) as u8] } else { [203, 0, 113, next(250) as u8] };
            let m = packet(src, dst, next(3), 7001 + next(7) as u16, Nanos(i * 100_000));
            laned.on_packet(&m, i, &mut |o| a.push(format!("{o:?}")));
            plain.on_packet(&m, i, &mut |o| b.push(format!("{o:?}")));
        }
        laned.finish(&mut |o| a.push(format!("{o:?}")));
        plain.finish(&mut |o| b.push(format!("{o:?}")));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        let (sa, sb) = (laned.stats(), plain.stats());
        assert_eq!(sa.rules, sb.rules);
        let spoofed = rules.rules.iter().position(|r| r.name.as_str() == "spoofed-source").expect("rule");
        let seed = rules.rules.iter().position(|r| r.name.as_str() == "seed-state-machine").expect("rule");
        assert!(
            matches!(&sa.rules[spoofed], RuleStats::Threshold(t) if t.matched > 1_000),
            "spoofed sources reach their rule: {:?}",
            sa.rules[spoofed]
        );
        assert!(
            matches!(&sa.rules[seed], RuleStats::StateMachine(m) if m.events > 20 && m.invalid > 0),
            "10.0.0.0/8 sources reach the seed machine: {:?}",
            sa.rules[seed]
        );
        assert!(sa.evaluated[spoofed] < sb.evaluated[spoofed], "fewer packets offered, none missed");
    }
}
