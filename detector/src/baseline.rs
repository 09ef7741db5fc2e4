//! Baseline rules: a per-host metric per interval judged against the host's own history.
//!
//! Per host and interval (aligned to the epoch) the rule measures bytes, packets, flows
//! initiated or distinct peers. The collector keeps, per host, an exponentially weighted mean
//! and variance of the intervals it has seen (weight `alpha` for the newest); once a host has
//! `warmup` intervals, a value above `mean + k·σ` (and at least `min_value`) raises an alert
//! carrying the value, mean, σ and score `(value − mean) / σ`. σ is never taken below
//! `min_sigma × mean`, so a perfectly steady host does not alert on small changes.
//!
//! **An anomalous interval does not teach the baseline**: when an interval alerts, the mean
//! and variance are left as they were, so an attack that lasts several intervals keeps being
//! judged against the host's normal traffic instead of becoming normal. Intervals in which a
//! host had no traffic are not learned (the baseline describes the host's active intervals).
//!
//! Packets are measured where they arrive (each worker adds what it saw of each host — as a
//! source and, with `host = "both"`, as a destination — to a partial per interval); partials
//! go to the collector when the interval ends, plus the lateness, and are merged there before
//! the interval is judged. Flow records (`metric = "flows"`) are measured in the collector.

use std::collections::BTreeMap;

/// A hash map with a fast hasher (keys are addresses and rule keys, not attacker-chosen strings).
type StdHashMap<K, V> = std::collections::HashMap<K, V, crate::hashing::TableHasher>;

use outpost_decode::{Duration, IpAddress, Nanos, PacketMeta};
use outpost_filter::Filter;
use outpost_flowmeter::{FlowRecord, IntervalDelta};

use crate::config::{BaselineConfig, BaselineMetric, ConfigError, HostSide, InputKind, SourceText};
use crate::rules::RuleId;
use crate::select::compile_filter;
use crate::sketch::DistinctCounter;

/// Exact distinct peers counted per host per interval before estimating.
const PEERS_EXACT: usize = 64;

/// A compiled baseline rule.
#[derive(Debug, Clone)]
pub struct BaselineRule {
    /// Packets (or flow records) measured.
    pub filter: Filter,
    /// Packets or flows.
    pub input: InputKind,
    /// What is measured.
    pub metric: BaselineMetric,
    /// Which address is the host.
    pub host: HostSide,
    /// Interval length.
    pub interval: Duration,
    /// Alert above mean + k·σ.
    pub k: f64,
    /// Intervals learned before judging.
    pub warmup: u32,
    /// Weight of the newest interval.
    pub alpha: f64,
    /// Smallest value that may alert.
    pub min_value: f64,
    /// Floor of σ as a fraction of the mean.
    pub min_sigma: f64,
    /// Most hosts tracked.
    pub max_keys: usize,
    /// Intervals without traffic after which a host's baseline is forgotten (at least 1).
    pub forget_intervals: u64,
}

impl BaselineRule {
    /// Compiles `[[baseline]]`.
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending value.
    pub fn compile(c: &BaselineConfig, src: &SourceText, key: &str) -> Result<BaselineRule, ConfigError> {
        let filter = compile_filter(c.filter.as_ref(), src, &format!("{key}.filter"))?;
        let metric = *c.metric.get_ref();
        match (metric, c.input) {
            (BaselineMetric::Flows, InputKind::Packets) => {
                return Err(src.error(
                    c.metric.span(),
                    format!("{key}.metric"),
                    "`flows` needs `input = \"flows\"`",
                ));
            }
            (BaselineMetric::Bytes | BaselineMetric::Packets | BaselineMetric::Peers, InputKind::Flows) => {
                return Err(src.error(
                    c.metric.span(),
                    format!("{key}.metric"),
                    "bytes, packets and peers are measured on packets (`input = \"packets\"`)",
                ));
            }
            _ => {}
        }
        let interval = c.interval.get_ref().0;
        if interval < Duration::from_secs(1) {
            return Err(src.error(c.interval.span(), format!("{key}.interval"), "must be at least 1s"));
        }
        let bad = |k: &str, m: &str| src.error(c.name.span(), format!("{key}.{k}"), m.to_string());
        if !(c.k.is_finite() && c.k > 0.0) {
            return Err(bad("k", "must be a positive number"));
        }
        if !(c.alpha > 0.0 && c.alpha <= 1.0) {
            return Err(bad("alpha", "must be in (0, 1]"));
        }
        if !(c.min_sigma.is_finite() && c.min_sigma >= 0.0) {
            return Err(bad("min_sigma", "must be zero or positive"));
        }
        Ok(BaselineRule {
            filter,
            input: c.input,
            metric,
            host: c.host,
            interval,
            k: c.k,
            warmup: c.warmup,
            alpha: c.alpha,
            min_value: c.min_value,
            min_sigma: c.min_sigma,
            max_keys: c.max_keys.max(1),
            forget_intervals: (c.forget.0.as_nanos() / interval.as_nanos().max(1)).max(1),
        })
    }

    /// The metric's name in alerts.
    #[must_use]
    pub fn metric_name(&self) -> &'static str {
        match self.metric {
            BaselineMetric::Bytes => "bytes",
            BaselineMetric::Packets => "packets",
            BaselineMetric::Flows => "flows",
            BaselineMetric::Peers => "peers",
        }
    }

    fn interval_of(&self, ts: Nanos) -> u64 {
        ts.0 / self.interval.as_nanos().max(1)
    }
}

/// A host's measurement in one interval (a worker's part of it, or the merged whole).
#[derive(Debug, Clone)]
pub enum Measure {
    /// Bytes, packets or flows.
    Amount(u64),
    /// Distinct peers.
    Peers(Box<DistinctCounter>),
}

impl Measure {
    /// Adds another part of the same host and interval.
    pub fn merge(&mut self, o: &Measure) {
        match (self, o) {
            (Measure::Amount(a), Measure::Amount(b)) => *a = a.saturating_add(*b),
            (Measure::Peers(a), Measure::Peers(b)) => a.merge(b),
            _ => {}
        }
    }

    fn value(&self) -> f64 {
        match self {
            Measure::Amount(a) => *a as f64,
            Measure::Peers(p) => p.estimate() as f64,
        }
    }
}

/// A worker's measurement of one host in one interval, handed to the collector.
#[derive(Debug, Clone)]
pub struct BaselinePartial {
    /// The rule.
    pub rule: RuleId,
    /// Interval number (start / length).
    pub interval: u64,
    /// The host.
    pub host: IpAddress,
    /// Its measurement.
    pub measure: Measure,
}

/// What a worker counts of one host in one interval: everything the baseline rules that share
/// a meter need.
#[derive(Debug, Clone, Default)]
struct Tally {
    bytes: u64,
    packets: u64,
    peers: Option<Box<DistinctCounter>>,
}

/// A host's bytes and packets in the interval being filled (`packets == 0`: an empty entry).
#[derive(Debug, Clone, Copy, Default)]
struct HostCount {
    host: IpAddress,
    bytes: u64,
    packets: u64,
}

/// Entries a new [`HostTable`] has (32 bytes each, two to a cache line).
const FIRST_HOSTS: usize = 4096;

/// The hosts of the interval being filled, for the byte and packet meter: one open-addressing
/// table (linear probing, at most half full, doubling), so an update costs one entry — usually
/// one cache line, which [`HostTable::prefetch`] loads ahead — and nothing is ever displaced.
/// (A direct-mapped cache of 16,384 hosts in front of a hash map, before, spilled colliding
/// hosts to the map — a second random access each — often enough on the benchmark mix that
/// the spill took 2–3 % of the worker's time.) Seeded per table, so crafted addresses cannot
/// aim at one run of entries.
#[derive(Debug)]
struct HostTable {
    entries: Vec<HostCount>,
    len: usize,
    hasher: crate::hashing::TableHasher,
}

impl HostTable {
    fn new() -> HostTable {
        HostTable {
            entries: vec![HostCount::default(); FIRST_HOSTS],
            len: 0,
            hasher: crate::hashing::TableHasher::default(),
        }
    }

    #[inline]
    fn home(&self, h: &IpAddress) -> usize {
        use std::hash::BuildHasher as _;
        (self.hasher.hash_one(h) as usize) & (self.entries.len() - 1)
    }

    /// Starts loading the entry of `h`.
    #[inline]
    fn prefetch(&self, h: &IpAddress) {
        if let Some(e) = self.entries.get(self.home(h)) {
            outpost_flowmeter::index::prefetch(e);
        }
    }

    /// Adds `bytes` and `packets` (at least 1) to host `h`; a host beyond `max_keys` hosts is
    /// not counted.
    #[inline]
    fn add(&mut self, h: IpAddress, bytes: u64, packets: u64, max_keys: usize) {
        let mask = self.entries.len() - 1;
        let mut i = self.home(&h);
        loop {
            let Some(e) = self.entries.get_mut(i) else { return };
            if e.packets == 0 {
                if self.len >= max_keys {
                    return;
                }
                *e = HostCount { host: h, bytes, packets };
                self.len += 1;
                if self.len * 2 > self.entries.len() {
                    self.grow();
                }
                return;
            }
            if e.host == h {
                e.bytes = e.bytes.saturating_add(bytes);
                e.packets += packets;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    #[cold]
    fn grow(&mut self) {
        let doubled = vec![HostCount::default(); self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        let mask = self.entries.len() - 1;
        for e in old.into_iter().filter(|e| e.packets > 0) {
            let mut i = self.home(&e.host);
            while let Some(slot) = self.entries.get_mut(i) {
                if slot.packets == 0 {
                    *slot = e;
                    break;
                }
                i = (i + 1) & mask;
            }
        }
    }

    /// Moves every host into `hosts` (adding to what they hold there) and empties the table.
    fn drain_into(&mut self, hosts: &mut StdHashMap<IpAddress, Tally>) {
        if self.len == 0 {
            return;
        }
        for e in &mut self.entries {
            if e.packets > 0 {
                let t = hosts.entry(e.host).or_default();
                t.bytes = t.bytes.saturating_add(e.bytes);
                t.packets += e.packets;
                *e = HostCount::default();
            }
        }
        self.len = 0;
    }
}

/// Where a meter puts counts of an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The interval being filled.
    Current,
    /// An earlier interval, still open (input slightly out of order).
    Older,
    /// An interval already handed over: counted as late.
    Late,
}

/// Per-worker measurements for the baseline rules that share a filter, host side and
/// interval (the `bytes` and `packets` rules of the default ruleset share one).
#[derive(Debug)]
pub struct BaselineMeter {
    interval: Duration,
    host: HostSide,
    peers: bool,
    max_keys: usize,
    /// The interval being filled, and its hosts: in `table` for the byte and packet meter,
    /// in `hosts` for the peers meter (and when an interval is handed over).
    current: Option<u64>,
    /// The current interval's event-time span `[start, end)` in ns: most packets fall in it
    /// and need no division to find their interval.
    span: (u64, u64),
    hosts: StdHashMap<IpAddress, Tally>,
    table: HostTable,
    /// Earlier intervals not yet handed over (input slightly out of order).
    older: BTreeMap<u64, StdHashMap<IpAddress, Tally>>,
    flushed_before: u64,
    /// Packets measured.
    pub packets: u64,
    /// Packets too late for their interval.
    pub late: u64,
}

impl BaselineMeter {
    /// A meter for rules like `rule` (same filter, host side and interval); `peers` when one
    /// of them measures distinct peers.
    #[must_use]
    pub fn new(rule: &BaselineRule, peers: bool) -> BaselineMeter {
        BaselineMeter {
            interval: rule.interval,
            host: rule.host,
            peers,
            max_keys: rule.max_keys,
            current: None,
            span: (0, 0),
            hosts: StdHashMap::default(),
            table: HostTable::new(),
            older: BTreeMap::new(),
            flushed_before: 0,
            packets: 0,
            late: 0,
        }
    }

    /// Whether the meter counts distinct peers.
    #[must_use]
    pub fn measures_peers(&self) -> bool {
        self.peers
    }

    /// The interval it measures.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether `rule` can share this meter.
    #[must_use]
    pub fn fits(&self, rule: &BaselineRule) -> bool {
        self.interval == rule.interval && self.host == rule.host
    }

    fn spill_table(&mut self) {
        self.table.drain_into(&mut self.hosts);
    }

    /// Starts loading the table entries [`BaselineMeter::on_packet`] will update for `m` (the
    /// first stage of a batch; the caller need not have checked the filter).
    #[inline]
    pub fn prefetch(&self, m: &PacketMeta) {
        if self.peers {
            return;
        }
        let (src, dst) = self.counts_sides();
        if src {
            self.table.prefetch(&m.src);
        }
        if dst {
            self.table.prefetch(&m.dst);
        }
    }

    /// Whether a packet counts for its source and for its destination.
    #[inline]
    fn counts_sides(&self) -> (bool, bool) {
        match self.host {
            HostSide::Both => (true, true),
            HostSide::Src => (true, false),
            HostSide::Dst => (false, true),
        }
    }

    /// Where counts of interval `interval` go; a later interval than the current one becomes
    /// the current one.
    #[inline]
    fn route(&mut self, interval: u64) -> Route {
        if interval < self.flushed_before {
            return Route::Late;
        }
        if self.current != Some(interval) {
            if self.current.is_some_and(|c| interval < c) {
                // Out of order, but its interval is still open.
                return Route::Older;
            }
            self.spill_table();
            if let Some(c) = self.current {
                let hosts = std::mem::take(&mut self.hosts);
                self.older.insert(c, hosts);
            }
            self.current = Some(interval);
            let width = self.interval.as_nanos().max(1);
            self.span = (interval.saturating_mul(width), interval.saturating_add(1).saturating_mul(width));
        }
        Route::Current
    }

    /// Counts what one flow carried in one interval ([`IntervalDelta`], from the flow meter's
    /// interval fold) for its hosts, as [`BaselineMeter::on_packet`] would have counted its
    /// packets one by one. For meters of bytes and packets only, without a filter (a peers
    /// meter, or one with a filter, counts packets).
    pub fn on_interval_delta(&mut self, d: &IntervalDelta) {
        let packets = u64::from(d.packets[0]) + u64::from(d.packets[1]);
        let route = self.route(d.interval);
        if route == Route::Late {
            self.late += packets;
            return;
        }
        self.packets += packets;
        let (fwd, rev) = (
            (u64::from(d.bytes[0]), u64::from(d.packets[0])),
            (u64::from(d.bytes[1]), u64::from(d.packets[1])),
        );
        let both = (fwd.0 + rev.0, fwd.1 + rev.1);
        // Each host with what it sent (as source) or received (as destination) or both.
        let counts = match self.host {
            HostSide::Src => [(d.initiator, fwd), (d.responder, rev)],
            HostSide::Dst => [(d.responder, fwd), (d.initiator, rev)],
            HostSide::Both => [(d.initiator, both), (d.responder, both)],
        };
        for (host, (bytes, packets)) in counts {
            if packets == 0 {
                continue;
            }
            if route == Route::Older {
                let t = self.older.entry(d.interval).or_default().entry(host).or_default();
                t.bytes = t.bytes.saturating_add(bytes);
                t.packets += packets;
            } else {
                self.table.add(host, bytes, packets, self.max_keys);
            }
        }
    }

    /// [`BaselineMeter::on_interval_delta`] for each of `deltas`, in order, loading the host
    /// entries a few hand-overs ahead (a batch's misses overlap).
    pub fn on_interval_deltas(&mut self, deltas: &[IntervalDelta]) {
        const AHEAD: usize = 8;
        for (i, d) in deltas.iter().enumerate() {
            if let Some(next) = deltas.get(i + AHEAD) {
                self.table.prefetch(&next.initiator);
                self.table.prefetch(&next.responder);
            }
            self.on_interval_delta(d);
        }
    }

    /// Counts one packet for its host(s) (the caller checked the filter).
    pub fn on_packet(&mut self, m: &PacketMeta) {
        let interval = match self.current {
            Some(c) if m.ts.0 >= self.span.0 && m.ts.0 < self.span.1 => c,
            _ => m.ts.0 / self.interval.as_nanos().max(1),
        };
        let route = self.route(interval);
        if route == Route::Late {
            self.late += 1;
            return;
        }
        self.packets += 1;
        if route == Route::Older {
            let hosts = self.older.entry(interval).or_default();
            for (h, peer) in sides(self.host, m) {
                let t = hosts.entry(h).or_default();
                add(t, m, peer, self.peers);
            }
            return;
        }
        if self.peers {
            for (h, peer) in sides(self.host, m) {
                if self.hosts.len() >= self.max_keys && !self.hosts.contains_key(&h) {
                    continue;
                }
                add(self.hosts.entry(h).or_default(), m, peer, true);
            }
            return;
        }
        let (src, dst) = self.counts_sides();
        let bytes = u64::from(m.ip_len);
        if src {
            self.table.add(m.src, bytes, 1, self.max_keys);
        }
        if dst {
            self.table.add(m.dst, bytes, 1, self.max_keys);
        }
    }

    /// Hands every interval that ended at least `lateness` before `now` to `out`: one
    /// partial per rule of `rules` (the rules sharing this meter) and host, hosts in address
    /// order.
    pub fn flush(
        &mut self,
        rules: &[(RuleId, &BaselineRule)],
        now: Nanos,
        lateness: Duration,
        out: &mut impl FnMut(BaselinePartial),
    ) {
        let ready_before = now.0.saturating_sub(lateness.as_nanos()) / self.interval.as_nanos().max(1);
        if self.current.is_some_and(|c| c < ready_before) {
            self.spill_table();
            if let Some(c) = self.current.take() {
                let hosts = std::mem::take(&mut self.hosts);
                self.older.insert(c, hosts);
            }
        }
        while let Some(e) = self.older.first_entry() {
            if *e.key() >= ready_before {
                break;
            }
            let (interval, hosts) = e.remove_entry();
            let mut hosts: Vec<(IpAddress, Tally)> = hosts.into_iter().collect();
            hosts.sort_unstable_by_key(|h| h.0);
            for (host, tally) in &hosts {
                for (id, rule) in rules {
                    let measure = match rule.metric {
                        BaselineMetric::Bytes => Measure::Amount(tally.bytes),
                        BaselineMetric::Packets | BaselineMetric::Flows => Measure::Amount(tally.packets),
                        BaselineMetric::Peers => Measure::Peers(
                            tally
                                .peers
                                .clone()
                                .unwrap_or_else(|| Box::new(DistinctCounter::new(PEERS_EXACT))),
                        ),
                    };
                    out(BaselinePartial { rule: *id, interval, host: *host, measure });
                }
            }
        }
        self.flushed_before = self.flushed_before.max(ready_before);
    }
}

/// The hosts a packet counts for, each with its peer.
fn sides(side: HostSide, m: &PacketMeta) -> impl Iterator<Item = (IpAddress, IpAddress)> {
    let src = matches!(side, HostSide::Both | HostSide::Src).then_some((m.src, m.dst));
    let dst = matches!(side, HostSide::Both | HostSide::Dst).then_some((m.dst, m.src));
    src.into_iter().chain(dst)
}

fn add(t: &mut Tally, m: &PacketMeta, peer: IpAddress, peers: bool) {
    t.bytes = t.bytes.saturating_add(u64::from(m.ip_len));
    t.packets += 1;
    if peers {
        t.peers.get_or_insert_with(|| Box::new(DistinctCounter::new(PEERS_EXACT))).insert(peer.shard_hash());
    }
}

/// A host's learned baseline.
#[derive(Debug, Clone, Copy, Default)]
struct Learned {
    mean: f64,
    var: f64,
    intervals: u32,
    /// The last interval the host had traffic in.
    last: u64,
}

/// An interval that exceeded its host's baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    /// The host.
    pub host: IpAddress,
    /// Interval start.
    pub interval_start: Nanos,
    /// Interval end.
    pub interval_end: Nanos,
    /// The value.
    pub value: f64,
    /// Mean before the interval.
    pub mean: f64,
    /// σ used (with its floor).
    pub sigma: f64,
    /// (value − mean) / σ.
    pub score: f64,
}

/// Counters of a baseline rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BaselineStats {
    /// Host intervals judged.
    pub judged: u64,
    /// Host intervals that exceeded the baseline.
    pub anomalies: u64,
    /// Hosts with a baseline.
    pub hosts: u64,
    /// Hosts not tracked because the table was full of hosts with a useful history.
    pub dropped: u64,
    /// Baselines forgotten: hosts not seen for `forget`, or still learning when the table
    /// filled up.
    pub forgotten: u64,
    /// Inputs too late for their interval.
    pub late: u64,
}

/// The collector's baselines of one rule.
#[derive(Debug, Default)]
pub struct BaselineJudge {
    learned: StdHashMap<IpAddress, Learned>,
    pending: BTreeMap<u64, StdHashMap<IpAddress, Measure>>,
    /// A judged interval's emptied map, kept for the next interval: it starts at the size the
    /// last one grew to instead of growing (and rehashing) again from empty.
    spare: Option<StdHashMap<IpAddress, Measure>>,
    judged_before: u64,
    /// The interval of the last sweep for forgotten hosts, and of the last sweep because the
    /// table was full (at most one of each per interval).
    swept: u64,
    swept_full: Option<u64>,
    /// Counters.
    pub stats: BaselineStats,
}

impl BaselineJudge {
    /// The measurements of `interval` so far.
    fn pending_at(&mut self, interval: u64) -> &mut StdHashMap<IpAddress, Measure> {
        let spare = &mut self.spare;
        self.pending.entry(interval).or_insert_with(|| spare.take().unwrap_or_default())
    }

    /// Merges a worker's partial.
    pub fn add(&mut self, p: BaselinePartial) {
        if p.interval < self.judged_before {
            self.stats.late += 1;
            return;
        }
        let hosts = self.pending_at(p.interval);
        match hosts.get_mut(&p.host) {
            Some(m) => m.merge(&p.measure),
            None => {
                hosts.insert(p.host, p.measure);
            }
        }
    }

    /// Measures a flow record in the collector (`metric = "flows"`: one per flow, counted
    /// for its initiator — and its responder with `host = "both"` or `"dst"`). A flow counts
    /// in the interval in which its first record ends — its last packet for a flow that
    /// ended, the active timeout for a long one — because that record reaches the collector
    /// within the flow meter's idle timeout or close linger of its end (see
    /// [`CentralDetector::with_flow_delay`](crate::CentralDetector::with_flow_delay)), while
    /// its start can lie an active timeout back.
    pub fn on_flow(&mut self, rule: &BaselineRule, r: &FlowRecord) {
        if r.sequence != 0 {
            return;
        }
        let interval = rule.interval_of(r.end());
        if interval < self.judged_before {
            self.stats.late += 1;
            return;
        }
        let hosts = self.pending_at(interval);
        let mut add = |h: IpAddress| {
            if let Measure::Amount(a) = hosts.entry(h).or_insert(Measure::Amount(0)) {
                *a += 1;
            }
        };
        if matches!(rule.host, HostSide::Both | HostSide::Src) {
            add(r.src);
        }
        if matches!(rule.host, HostSide::Both | HostSide::Dst) {
            add(r.dst);
        }
    }

    /// Judges every interval that ended at least `lateness` before `watermark`.
    pub fn evaluate(
        &mut self,
        rule: &BaselineRule,
        watermark: Nanos,
        lateness: Duration,
        out: &mut impl FnMut(Anomaly),
    ) {
        let len = rule.interval.as_nanos().max(1);
        let ready_before = watermark.0.saturating_sub(lateness.as_nanos()) / len;
        while let Some(e) = self.pending.first_entry() {
            if *e.key() >= ready_before {
                break;
            }
            let (interval, mut measured) = e.remove_entry();
            let mut hosts: Vec<(IpAddress, f64)> = measured.iter().map(|(h, m)| (*h, m.value())).collect();
            measured.clear();
            // Sized for the interval just judged: one interval of a flood of new hosts
            // (spoofed sources) does not pin its memory for the rest of the run.
            measured.shrink_to(hosts.len());
            self.spare = Some(measured);
            hosts.sort_unstable_by_key(|h| h.0);
            for (host, value) in hosts {
                self.judge(rule, host, value, interval, len, out);
            }
        }
        self.judged_before = self.judged_before.max(ready_before);
        self.forget_idle(rule);
        self.stats.hosts = self.learned.len() as u64;
    }

    /// Forgets hosts without traffic for `forget`; sweeps at most every eighth of that.
    fn forget_idle(&mut self, rule: &BaselineRule) {
        let now = self.judged_before;
        if now < self.swept.saturating_add((rule.forget_intervals / 8).max(1)) {
            return;
        }
        self.swept = now;
        let before = self.learned.len();
        self.learned.retain(|_, l| now.saturating_sub(l.last) <= rule.forget_intervals);
        self.stats.forgotten += (before - self.learned.len()) as u64;
    }

    /// The table is full and `interval` brings a new host: forget the hosts still in their
    /// warm-up that had no traffic in this interval — under a flood from spoofed sources the
    /// table fills with addresses seen once, which must not keep real hosts from being
    /// learned. At most one sweep per interval; true when there is room now.
    fn make_room(&mut self, rule: &BaselineRule, interval: u64) -> bool {
        if self.swept_full != Some(interval) {
            self.swept_full = Some(interval);
            let before = self.learned.len();
            self.learned.retain(|_, l| l.intervals >= rule.warmup || l.last >= interval);
            self.stats.forgotten += (before - self.learned.len()) as u64;
        }
        self.learned.len() < rule.max_keys
    }

    fn judge(
        &mut self,
        rule: &BaselineRule,
        host: IpAddress,
        value: f64,
        interval: u64,
        len: u64,
        out: &mut impl FnMut(Anomaly),
    ) {
        if !self.learned.contains_key(&host)
            && self.learned.len() >= rule.max_keys
            && !self.make_room(rule, interval)
        {
            self.stats.dropped += 1;
            return;
        }
        let l = self.learned.entry(host).or_default();
        l.last = interval;
        self.stats.judged += 1;
        if l.intervals >= rule.warmup && l.intervals > 0 {
            let sigma = l.var.sqrt().max(rule.min_sigma * l.mean);
            let score = if sigma > 0.0 {
                (value - l.mean) / sigma
            } else if value > l.mean {
                f64::INFINITY
            } else {
                0.0
            };
            if value >= rule.min_value && score > rule.k {
                self.stats.anomalies += 1;
                out(Anomaly {
                    host,
                    interval_start: Nanos(interval.saturating_mul(len)),
                    interval_end: Nanos(interval.saturating_add(1).saturating_mul(len)),
                    value,
                    mean: l.mean,
                    sigma,
                    score,
                });
                // Not learned: an attack must not become the host's normal.
                return;
            }
        }
        // West's exponentially weighted mean and variance.
        if l.intervals == 0 {
            l.mean = value;
            l.var = 0.0;
        } else {
            let diff = value - l.mean;
            let incr = rule.alpha * diff;
            l.mean += incr;
            l.var = (1.0 - rule.alpha) * (l.var + diff * incr);
        }
        l.intervals = l.intervals.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RulesConfig;

    fn rule(extra: &str) -> BaselineRule {
        let text = format!("[[baseline]]\nname = \"b\"\nmetric = \"bytes\"\nwarmup = 5\n{extra}\n");
        let src = SourceText::new("b.toml", text);
        let cfg: RulesConfig = src.parse().expect("parses");
        BaselineRule::compile(&cfg.baseline[0], &src, "baseline[0]").expect("compiles")
    }

    fn feed(j: &mut BaselineJudge, r: &BaselineRule, values: &[u64]) -> Vec<Anomaly> {
        let host: IpAddress = "10.0.0.1".parse().unwrap();
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            j.add(BaselinePartial {
                rule: RuleId(0),
                interval: i as u64,
                host,
                measure: Measure::Amount(*v),
            });
            j.evaluate(r, Nanos::from_secs(60 * (i as u64 + 1)), Duration::ZERO, &mut |a| out.push(a));
        }
        out
    }

    #[test]
    fn a_shared_meter_counts_bytes_and_packets_per_host_through_its_table() {
        let bytes = rule("");
        let packets = {
            let src = SourceText::new("p.toml", "[[baseline]]\nname = \"p\"\nmetric = \"packets\"\n");
            let cfg: RulesConfig = src.parse().expect("parses");
            BaselineRule::compile(&cfg.baseline[0], &src, "baseline[0]").expect("compiles")
        };
        let mut meter = BaselineMeter::new(&bytes, false);
        assert!(meter.fits(&packets));
        // 3,000 hosts (more than a new table holds: it grows) sending to one server,
        // interleaved.
        let server: IpAddress = "192.168.1.10".parse().unwrap();
        for round in 0..5u64 {
            for h in 0..3000u32 {
                let m = PacketMeta {
                    src: IpAddress::from_v4((0x0a00_0000 + h).to_be_bytes()),
                    dst: server,
                    ip_len: 100 + h,
                    ts: Nanos::from_secs(60 + round),
                    network: outpost_decode::Network::Ipv4,
                    ..PacketMeta::default()
                };
                meter.on_packet(&m);
            }
        }
        let mut out = Vec::new();
        meter.flush(
            &[(RuleId(0), &bytes), (RuleId(1), &packets)],
            Nanos::from_secs(120),
            Duration::ZERO,
            &mut |p| out.push(p),
        );
        assert_eq!(out.len(), 3001 * 2);
        let value = |rule: u16, host: IpAddress| {
            out.iter()
                .find(|p| p.rule == RuleId(rule) && p.host == host)
                .map(|p| p.measure.value())
                .expect("host measured")
        };
        assert_eq!(value(1, server), 15000.0);
        assert_eq!(value(0, server), (0..3000).map(|h| 5.0 * f64::from(100 + h)).sum::<f64>());
        let h7 = IpAddress::from_v4((0x0a00_0007u32).to_be_bytes());
        assert_eq!((value(0, h7), value(1, h7)), (5.0 * 107.0, 5.0));
        assert!(out.iter().all(|p| p.interval == 1));
    }

    #[test]
    fn a_host_table_counts_every_host_until_max_keys_then_no_new_one() {
        let mut t = HostTable::new();
        let host = |n: u32| IpAddress::from_v4(n.to_be_bytes());
        // Enough hosts to make it double twice; each host twice, interleaved.
        for round in 0..2u64 {
            for n in 0..10_000u32 {
                t.add(host(n), u64::from(n) + round, 1, 20_000);
            }
        }
        assert_eq!(t.len, 10_000);
        t.add(host(10_000), 7, 1, 10_000);
        t.add(host(3), 1, 1, 10_000);
        let mut hosts = StdHashMap::default();
        t.drain_into(&mut hosts);
        assert_eq!(t.len, 0);
        assert!(t.entries.iter().all(|e| e.packets == 0), "drained");
        assert_eq!(hosts.len(), 10_000, "the host beyond max_keys is not counted");
        let h3 = hosts.get(&host(3)).expect("host 3");
        assert_eq!((h3.bytes, h3.packets), (3 + 4 + 1, 3));
        assert!(hosts.iter().all(|(h, t)| t.packets >= 2 && *h != host(10_000)));
    }

    #[test]
    fn a_spike_after_warmup_alerts_with_mean_sigma_and_score() {
        let r = rule("");
        let mut j = BaselineJudge::default();
        let got = feed(&mut j, &r, &[1000, 1100, 900, 1050, 950, 1000, 1020, 9000]);
        assert_eq!(got.len(), 1);
        let a = got[0];
        assert_eq!(a.value, 9000.0);
        assert!(a.mean > 950.0 && a.mean < 1050.0, "{a:?}");
        assert!(a.score > 3.0);
        assert_eq!(a.interval_start, Nanos::from_secs(7 * 60));
    }

    #[test]
    fn nothing_is_judged_during_warmup() {
        let r = rule("");
        let mut j = BaselineJudge::default();
        assert!(feed(&mut j, &r, &[10, 10_000, 10, 50_000]).is_empty());
    }

    #[test]
    fn an_anomalous_interval_does_not_teach_the_baseline() {
        let r = rule("");
        let mut j = BaselineJudge::default();
        // A sustained attack keeps alerting: its intervals never become the norm.
        let got = feed(&mut j, &r, &[1000, 1000, 1010, 990, 1000, 1000, 9000, 9000, 9000, 9000, 9000]);
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|a| (a.mean - 1000.0).abs() < 10.0));
    }

    #[test]
    fn a_steady_host_does_not_alert_on_small_changes() {
        let r = rule("");
        let mut j = BaselineJudge::default();
        assert!(feed(&mut j, &r, &[1000; 20].iter().copied().chain([1200]).collect::<Vec<_>>()).is_empty());
        assert_eq!(
            feed(&mut BaselineJudge::default(), &r, &[1000, 1000, 1000, 1000, 1000, 1000, 1400]).len(),
            1
        );
    }

    /// Judges one interval of `values` per host (`(host number, value)`).
    fn judge_interval(
        j: &mut BaselineJudge,
        r: &BaselineRule,
        interval: u64,
        values: &[(u32, u64)],
    ) -> usize {
        for &(h, v) in values {
            j.add(BaselinePartial {
                rule: RuleId(0),
                interval,
                host: IpAddress::from_v4((0x0a00_0000 + h).to_be_bytes()),
                measure: Measure::Amount(v),
            });
        }
        let mut alerts = 0;
        j.evaluate(r, Nanos::from_secs(60 * (interval + 1)), Duration::ZERO, &mut |_| alerts += 1);
        alerts
    }

    #[test]
    fn a_host_silent_longer_than_forget_starts_a_new_baseline() {
        let r = rule("forget = \"10m\"");
        let mut j = BaselineJudge::default();
        for i in 0..8 {
            judge_interval(&mut j, &r, i, &[(1, 1000)]);
        }
        // Silent for 20 minutes: forgotten, so a burst is only its first learned interval.
        for i in 8..28 {
            judge_interval(&mut j, &r, i, &[(2, 5)]);
        }
        assert!(j.stats.forgotten >= 1, "{:?}", j.stats);
        assert_eq!(judge_interval(&mut j, &r, 28, &[(1, 50_000)]), 0, "no baseline to exceed");
        // A host silent for less than `forget` keeps its baseline.
        let mut j = BaselineJudge::default();
        for i in 0..8 {
            judge_interval(&mut j, &r, i, &[(1, 1000)]);
        }
        assert_eq!(judge_interval(&mut j, &r, 14, &[(1, 50_000)]), 1);
    }

    #[test]
    fn spoofed_one_time_hosts_do_not_keep_real_hosts_from_being_learned() {
        let r = rule("max_keys = 100");
        let mut j = BaselineJudge::default();
        // Ten real hosts build a history...
        let real: Vec<(u32, u64)> = (0..10).map(|h| (h, 1000)).collect();
        for i in 0..6 {
            judge_interval(&mut j, &r, i, &real);
        }
        // ...then a flood from spoofed sources fills the table with addresses seen once.
        let spoofed: Vec<(u32, u64)> = (1000..1200).map(|h| (h, 60)).collect();
        judge_interval(&mut j, &r, 6, &spoofed);
        assert_eq!(j.stats.hosts, 100);
        // A new real host next interval is learned, the ten keep their baselines.
        let mut next = real.clone();
        next.push((50, 1000));
        judge_interval(&mut j, &r, 7, &next);
        assert!(j.learned.contains_key(&IpAddress::from_v4((0x0a00_0000u32 + 50).to_be_bytes())));
        assert!(
            (0..10).all(|h| j.learned.contains_key(&IpAddress::from_v4((0x0a00_0000u32 + h).to_be_bytes())))
        );
        assert!(j.stats.forgotten >= 90, "{:?}", j.stats);
        // And they still alert on a spike.
        let mut spike = real.clone();
        spike[3].1 = 100_000;
        assert_eq!(judge_interval(&mut j, &r, 8, &spike), 1);
    }
}
