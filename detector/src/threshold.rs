//! Threshold rules: an aggregate of a key's inputs over a sliding event-time window, compared
//! with a threshold.
//!
//! # Aggregates
//! `count`, `sum(field)`, `distinct(field)` (exact up to `exact_limit` values, HyperLogLog
//! above) and `ratio` (inputs matching a second condition / all inputs, judged once the window
//! holds `min_events` inputs).
//!
//! # Windows
//! A window of length W moves in steps of W / `window_buckets` (a hopping window; one bucket
//! makes it tumbling). Buckets are aligned to the Unix epoch, so every worker and the
//! collector agree on them. The window at time t covers the bucket holding t and the
//! `window_buckets − 1` before it. Input out of order by less than the window still lands in
//! its own bucket; older input is counted as late and ignored.
//!
//! # Where a rule runs ([`Placement`])
//! - **Local**: packet rules whose key holds `src_ip` run in the worker that owns the source
//!   and alert on the packet that crosses the threshold.
//! - **Merged**: other packet rules (e.g. keyed by `dst_ip`) aggregate per worker per bucket;
//!   when event time passes a bucket's end plus the lateness, each worker hands its partial
//!   aggregates to the collector (one [`Partial`] per rule and bucket), which judges each key
//!   of the bucket over its window — for counts and sums only the keys that bounds on the
//!   window's amounts do not rule out, see [`MergedThreshold`]. Alerts come at bucket ends.
//! - **Central**: flow rules run in the collector, which sees every flow record, and alert on
//!   the record that crosses the threshold.
//!
//! # Once per window
//! After a key alerts, it does not alert again from the same rule until every bucket of the
//! window it alerted on has left the window: `window_buckets` buckets after the bucket of the
//! alert (the newest input's bucket for immediate rules, the judged bucket for merged ones).
//! Its next alert therefore counts only inputs the last one did not, and a key that stays above
//! the threshold alerts once per window — a tumbling window once in each window — on the first
//! input (or bucket end) after that. The alert policy deduplicates further.
//!
//! # `max_keys`
//! A worker's table (a merged rule's: each open bucket's) holds at most `max_keys` keys, and
//! the collector at most `max_keys` partial aggregates per bucket (see
//! [`MergedThreshold::add`]). A new key in a full table drops the least recently updated key,
//! counted as `evicted`, so a flood of new keys (spoofed sources, a sweep) pushes out keys that
//! went quiet and never the busy ones. Keys whose window has emptied are released at clock ticks.

use std::collections::HashMap;

use outpost_decode::{Duration, Nanos, PacketMeta};
use outpost_filter::{Filter, PacketClass};
use outpost_flowmeter::FlowRecord;
use std::hash::BuildHasher as _;

use outpost_flowmeter::index::SlotIndex;

use crate::first::{FirstSeen, Seen};
use crate::hashing::TableHasher;

use crate::config::{
    AggregateKind, ConfigError, FieldName, InputKind, KeyField, SourceText, ThresholdConfig,
};
use crate::key::{KeySpec, KeyValue};
use crate::network::NetworkMap;
use crate::select::{FlowConditions, FlowSelector, FlowView, compile_filter};
use crate::sketch::{DistinctCounter, Late, WindowedCount, WindowedDistinct, fingerprint32};

/// What a rule reads, compiled.
#[derive(Debug, Clone)]
pub enum Input {
    /// Packets matching the filter.
    Packets(Filter),
    /// Flow records matching the selector.
    Flows(FlowSelector),
}

/// The counted subset of a ratio.
#[derive(Debug, Clone)]
pub enum Subset {
    /// Packets matching a filter.
    Packets(Filter),
    /// Flow records matching a selector.
    Flows(FlowSelector),
}

/// A compiled aggregate.
#[derive(Debug, Clone)]
pub enum Aggregate {
    /// Number of inputs.
    Count,
    /// Sum of a field.
    Sum(FieldName),
    /// Distinct values of a field.
    Distinct(FieldName),
    /// Inputs in the subset / all inputs.
    /// (Boxed: a filter is large, and few rules are ratios.)
    Ratio(Box<Subset>),
}

impl Aggregate {
    /// The name used in alerts (`count`, `sum(bytes)`, `distinct(dst_port)`, `ratio`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Aggregate::Count => "count".into(),
            Aggregate::Sum(f) => format!("sum({})", field_name(*f)),
            Aggregate::Distinct(f) => format!("distinct({})", field_name(*f)),
            Aggregate::Ratio(_) => "ratio".into(),
        }
    }
}

fn field_name(f: FieldName) -> &'static str {
    match f {
        FieldName::SrcIp => "src_ip",
        FieldName::DstIp => "dst_ip",
        FieldName::SrcPort => "src_port",
        FieldName::DstPort => "dst_port",
        FieldName::Proto => "proto",
        FieldName::Bytes => "bytes",
        FieldName::Packets => "packets",
    }
}

/// Where a threshold rule is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// In the worker owning the key's source address, per packet.
    Local,
    /// Per worker per bucket, merged and judged in the collector at bucket ends.
    Merged,
    /// In the collector, per flow record.
    Central,
}

/// A compiled threshold rule.
#[derive(Debug, Clone)]
pub struct ThresholdRule {
    /// Inputs.
    pub input: Input,
    /// Key.
    pub key: KeySpec,
    /// Aggregate.
    pub aggregate: Aggregate,
    /// Window length.
    pub window: Duration,
    /// Buckets per window (≥ 1).
    pub buckets: u32,
    /// Alert at or above this value.
    pub threshold: f64,
    /// Ratio: fewest inputs before judging.
    pub min_events: u64,
    /// Distinct: exact up to this many values.
    pub exact_limit: usize,
    /// Most keys per worker (and in the collector).
    pub max_keys: usize,
    /// Where it runs.
    pub placement: Placement,
}

impl ThresholdRule {
    /// Compiles `[[threshold]]` number `key` of a file.
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending value.
    pub fn compile(c: &ThresholdConfig, src: &SourceText, key: &str) -> Result<ThresholdRule, ConfigError> {
        let filter = compile_filter(c.filter.as_ref(), src, &format!("{key}.filter"))?;
        let conditions = FlowConditions::new(&c.flow);
        let input = match c.input {
            InputKind::Packets => {
                if !conditions.is_empty() {
                    return Err(src.error(
                        c.name.span(),
                        format!("{key}.flow"),
                        "flow conditions need `input = \"flows\"`",
                    ));
                }
                Input::Packets(filter)
            }
            InputKind::Flows => Input::Flows(FlowSelector::new(filter, conditions)),
        };
        let spec = KeySpec::new(c.key.get_ref(), src, c.key.span(), &format!("{key}.key"))?;
        let need_field = |what: &str| {
            c.field.ok_or_else(|| {
                src.error(c.name.span(), format!("{key}.field"), format!("`{what}` needs a `field`"))
            })
        };
        let aggregate = match c.aggregate {
            AggregateKind::Count => Aggregate::Count,
            AggregateKind::Sum => Aggregate::Sum(need_field("sum")?),
            AggregateKind::Distinct => Aggregate::Distinct(need_field("distinct")?),
            AggregateKind::Ratio => {
                let r = c.ratio.as_ref().ok_or_else(|| {
                    src.error(
                        c.name.span(),
                        format!("{key}.ratio"),
                        "`ratio` needs `ratio = { filter = ... }`",
                    )
                })?;
                let sub_conditions = FlowConditions::new(&r.flow);
                if matches!(c.input, InputKind::Packets) && !sub_conditions.is_empty() {
                    return Err(src.error(
                        c.name.span(),
                        format!("{key}.ratio.flow"),
                        "flow conditions need `input = \"flows\"`; a packet ratio counts `ratio.filter`",
                    ));
                }
                if r.filter.is_none() && sub_conditions.is_empty() {
                    return Err(src.error(
                        c.name.span(),
                        format!("{key}.ratio"),
                        "the counted subset needs a `filter` (or, for flows, `flow` conditions): \
                         without one every input counts and the ratio is always 1",
                    ));
                }
                let f = compile_filter(r.filter.as_ref(), src, &format!("{key}.ratio.filter"))?;
                Aggregate::Ratio(Box::new(match c.input {
                    InputKind::Packets => Subset::Packets(f),
                    InputKind::Flows => Subset::Flows(FlowSelector::new(f, sub_conditions)),
                }))
            }
        };
        let window = c.window.get_ref().0;
        if window == Duration::ZERO {
            return Err(src.error(c.window.span(), format!("{key}.window"), "must be longer than zero"));
        }
        if c.window_buckets == 0 || c.window_buckets > 64 {
            return Err(src.error(
                c.window.span(),
                format!("{key}.window_buckets"),
                "must be between 1 and 64",
            ));
        }
        if !c.threshold.is_finite() || c.threshold <= 0.0 {
            return Err(src.error(c.name.span(), format!("{key}.threshold"), "must be a positive number"));
        }
        if matches!(c.aggregate, AggregateKind::Ratio) && c.threshold > 1.0 {
            return Err(src.error(
                c.name.span(),
                format!("{key}.threshold"),
                "a ratio threshold is between 0 and 1",
            ));
        }
        let placement = match c.input {
            InputKind::Flows => Placement::Central,
            InputKind::Packets if spec.has(KeyField::SrcIp) => Placement::Local,
            InputKind::Packets => Placement::Merged,
        };
        Ok(ThresholdRule {
            input,
            key: spec,
            aggregate,
            window,
            buckets: c.window_buckets,
            threshold: c.threshold,
            min_events: c.min_events.max(1),
            exact_limit: c.exact_limit.max(1),
            max_keys: c.max_keys.max(1),
            placement,
        })
    }

    /// Length of one bucket.
    #[must_use]
    pub fn bucket_len(&self) -> Duration {
        Duration((self.window.as_nanos() / u64::from(self.buckets)).max(1))
    }

    /// Whether a packet is one of the rule's inputs.
    #[inline]
    #[must_use]
    pub fn selects_packet(&self, m: &PacketMeta) -> bool {
        self.selects_packet_class(PacketClass::of(m), m)
    }

    /// [`ThresholdRule::selects_packet`] with the packet's class computed by the caller.
    #[inline]
    #[must_use]
    pub fn selects_packet_class(&self, class: PacketClass, m: &PacketMeta) -> bool {
        match &self.input {
            Input::Packets(f) => f.matches_class(class, m),
            Input::Flows(_) => false,
        }
    }

    /// False when no packet of `class` can be one of the rule's inputs.
    #[must_use]
    pub fn may_select_class(&self, class: PacketClass) -> bool {
        match &self.input {
            Input::Packets(f) => f.may_match_class(class),
            Input::Flows(_) => false,
        }
    }

    /// False when no IPv4 packet whose source's first octet is `octet` can be one of the
    /// rule's inputs (its filter's address table rules it out).
    #[must_use]
    pub fn may_select_v4_source_octet(&self, octet: u8) -> bool {
        match &self.input {
            Input::Packets(f) => f.may_match_v4_source_octet(octet),
            Input::Flows(_) => false,
        }
    }

    /// Whether a flow record is one of the rule's inputs.
    #[must_use]
    pub fn selects_flow(&self, v: &FlowView<'_>) -> bool {
        match &self.input {
            Input::Flows(s) => s.matches(v),
            Input::Packets(_) => false,
        }
    }
}

/// What one input contributes to an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contribution {
    /// Count or sum by this amount.
    Amount(u64),
    /// A value for a distinct count (its hash).
    Value(u64),
    /// A ratio input, in the counted subset or not.
    RatioInput(bool),
}

fn packet_field(f: FieldName, m: &PacketMeta) -> u64 {
    match f {
        FieldName::SrcIp => m.src.shard_hash(),
        FieldName::DstIp => m.dst.shard_hash(),
        FieldName::SrcPort => u64::from(m.src_port),
        FieldName::DstPort => u64::from(m.dst_port),
        FieldName::Proto => u64::from(m.ip_proto),
        FieldName::Bytes => u64::from(m.ip_len),
        FieldName::Packets => 1,
    }
}

fn flow_field(f: FieldName, r: &FlowRecord) -> u64 {
    match f {
        FieldName::SrcIp => r.src.shard_hash(),
        FieldName::DstIp => r.dst.shard_hash(),
        FieldName::SrcPort => u64::from(r.src_port),
        FieldName::DstPort => u64::from(r.dst_port),
        FieldName::Proto => u64::from(r.proto),
        FieldName::Bytes => r.fwd.bytes + r.rev.bytes,
        FieldName::Packets => r.fwd.packets + r.rev.packets,
    }
}

/// Mixes a small field value (a port) into a well-spread hash for distinct counting.
#[inline]
fn spread(v: u64) -> u64 {
    let mut h = v.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl ThresholdRule {
    /// What a selected packet contributes.
    #[inline]
    #[must_use]
    pub fn packet_contribution(&self, m: &PacketMeta) -> Contribution {
        match &self.aggregate {
            Aggregate::Count => Contribution::Amount(1),
            Aggregate::Sum(f) => Contribution::Amount(packet_field(*f, m)),
            Aggregate::Distinct(f) => Contribution::Value(spread(packet_field(*f, m))),
            Aggregate::Ratio(subset) => match &**subset {
                Subset::Packets(sub) => Contribution::RatioInput(sub.matches(m)),
                Subset::Flows(_) => Contribution::RatioInput(false),
            },
        }
    }

    /// What a selected flow record contributes.
    #[must_use]
    pub fn flow_contribution(&self, v: &FlowView<'_>) -> Contribution {
        let r = v.record;
        match &self.aggregate {
            Aggregate::Count => Contribution::Amount(1),
            Aggregate::Sum(f) => Contribution::Amount(flow_field(*f, r)),
            Aggregate::Distinct(f) => Contribution::Value(spread(flow_field(*f, r))),
            Aggregate::Ratio(subset) => match &**subset {
                Subset::Flows(sub) => Contribution::RatioInput(sub.matches(v)),
                Subset::Packets(_) => Contribution::RatioInput(false),
            },
        }
    }
}

/// The value and evidence of a window that reached the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// The aggregate's value.
    pub value: f64,
    /// Inputs in the window.
    pub events: u64,
}

/// A key's sliding-window aggregate (immediate evaluation).
#[derive(Debug, Clone)]
enum Counter {
    Amount { total: WindowedCount, events: WindowedCount },
    Distinct { values: WindowedDistinct, events: WindowedCount },
    Ratio { subset: WindowedCount, all: WindowedCount },
}

impl Counter {
    fn new(rule: &ThresholdRule) -> Counter {
        let (w, b) = (rule.window, rule.buckets as usize);
        match rule.aggregate {
            Aggregate::Count | Aggregate::Sum(_) => {
                Counter::Amount { total: WindowedCount::new(w, b), events: WindowedCount::new(w, b) }
            }
            Aggregate::Distinct(_) => Counter::Distinct {
                values: WindowedDistinct::new(w, b, rule.exact_limit),
                events: WindowedCount::new(w, b),
            },
            Aggregate::Ratio(_) => {
                Counter::Ratio { subset: WindowedCount::new(w, b), all: WindowedCount::new(w, b) }
            }
        }
    }

    /// Adds an input at `now`; returns the window's value (`None` for a ratio not yet judged),
    /// or `Err(Late)` when `now` is before the window.
    ///
    /// The value is returned even when this input did not raise it (a distinct value already in
    /// the window): a key that stays above the threshold must alert again once its quiet time
    /// ends, on whichever input comes first.
    fn add(&mut self, now: Nanos, c: Contribution, rule: &ThresholdRule) -> Result<Option<Crossing>, Late> {
        Ok(match (self, c) {
            (Counter::Amount { total, events }, Contribution::Amount(a)) => {
                let n = events.add(now, 1)?;
                let v = total.add(now, a)?;
                Some(Crossing { value: v as f64, events: n })
            }
            (Counter::Distinct { values, events }, Contribution::Value(h)) => {
                let n = events.add(now, 1)?;
                let v = values.insert(now, h)?.estimate();
                Some(Crossing { value: v as f64, events: n })
            }
            (Counter::Ratio { subset, all }, Contribution::RatioInput(hit)) => {
                let n = all.add(now, 1)?;
                let k = if hit { subset.add(now, 1)? } else { subset.total(now) };
                (n >= rule.min_events).then(|| Crossing { value: k as f64 / n as f64, events: n })
            }
            _ => None,
        })
    }

    /// Adds a first input given back by [`FirstSeen`] (a count's amount or a distinct value's
    /// fingerprint, see [`parked_value`]); a fresh counter has no window yet, so it is never
    /// late.
    fn add_parked(&mut self, at: Nanos, value: u32) {
        match self {
            Counter::Amount { total, events } => {
                let _ = events.add(at, 1);
                let _ = total.add(at, u64::from(value));
            }
            Counter::Distinct { values, events } => {
                let _ = events.add(at, 1);
                let _ = values.insert_fingerprint(at, value);
            }
            Counter::Ratio { .. } => {}
        }
    }

    /// Starts loading what an update reads outside the key's slot: a distinct counter's list
    /// of values once it outgrew the slot.
    #[inline]
    fn prefetch_heap(&self) {
        if let Counter::Distinct { values, .. } = self {
            values.prefetch_heap();
        }
    }

    fn is_idle(&self, now: Nanos) -> bool {
        match self {
            Counter::Amount { events, .. }
            | Counter::Distinct { events, .. }
            | Counter::Ratio { all: events, .. } => events.is_idle(now),
        }
    }
}

/// In declaration order (`repr(C)`): the fields every input reads first, then the counter.
#[derive(Debug, Clone)]
#[repr(C)]
struct KeyState {
    /// The latest event time of the key's inputs.
    last: Nanos,
    /// No new alert for this key before this time.
    quiet_until: Nanos,
    counter: Counter,
}

/// No slot.
const NIL: u32 = u32::MAX;

/// Issues prefetches of every cache line `p` spans (a threshold slot spans four or five: the
/// key and links, the window's times, the counters), so an update that reads past the first
/// line does not wait for the others one at a time.
#[inline(always)]
fn prefetch_lines<T>(p: &T) {
    let base = std::ptr::from_ref(p).cast::<i8>();
    let size = size_of::<T>();
    let mut offset = 0;
    while offset < size + 63 {
        let at = base.wrapping_add(offset.min(size.saturating_sub(1)));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is only a hint: it never faults and has no architectural effect;
        // `at` lies within the object `p` refers to anyway.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
        offset += 64;
    }
}

/// In declaration order (`repr(C)`): the key and the links, read on every lookup, share the
/// slot's first cache line with the start of the value (the compiler's order put the key at
/// the end of a 272-byte threshold slot, a line apart from the counter it guards).
#[derive(Debug, Clone)]
#[repr(C)]
struct Slot<V> {
    key: KeyValue,
    /// Next more recently updated slot, or [`NIL`]. In a table in [`Order::Stamped`], the
    /// high half of the slot's update stamp.
    newer: u32,
    /// Next less recently updated slot, or [`NIL`]; in a free slot, the next free slot. In a
    /// table in [`Order::Stamped`], the low half of a live slot's update stamp.
    older: u32,
    /// `None` in a free slot.
    value: Option<V>,
}

/// Keys and their values in order of their last update, so that a full table drops the least
/// recently updated key: a flood of new keys (spoofed sources, a sweep) pushes out keys that
/// went quiet, never the busy ones.
///
/// The values sit in a slab linked into a list (most recent first); a [`SlotIndex`] of
/// 64-byte lines maps key hashes to slots. Finding a key costs one index line and its slot,
/// and both can be prefetched for a batch ([`LruTable::prefetch_index`],
/// [`LruTable::prefetch_slot`]); moving it to the front a few link writes. A removed key's
/// slot goes on a free list and is the next one a new key takes (nothing moves, and the slot
/// just freed is likely still in cache), so nothing allocates once the table has held its
/// most keys. The index doubles when it passes its capacity.
///
/// A table whose order is needed only to evict when it is full (a Merged rule's bucket, an
/// Immediate rule's keys, which find their idle keys by sweeping instead) keeps it lazily
/// ([`LruTable::new_stamped`], [`Order::Stamped`]): an update then only writes an increasing
/// stamp into the key's own slot instead of relinking two neighbours — cache misses on most
/// updates of a table larger than the caches — and the list is built from the stamps, in the
/// same order, the first time the oldest key is asked for.
pub(crate) struct LruTable<V> {
    index: SlotIndex,
    /// How the update order is kept now, and how it is kept again after [`LruTable::drain`].
    order: Order,
    lazy: bool,
    /// The last stamp given (in [`Order::Stamped`]).
    clock: u64,
    hasher: crate::hashing::TableHasher,
    slots: Vec<Slot<V>>,
    /// Keys held.
    live: usize,
    /// The first free slot, or [`NIL`].
    free: u32,
    /// The most recently updated slot.
    newest: u32,
    /// The least recently updated slot.
    oldest: u32,
}

impl<V> std::fmt::Debug for LruTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LruTable").field("keys", &self.live).finish()
    }
}

/// How an [`LruTable`] keeps the order of its keys' updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// A doubly linked list, most recently updated first.
    Linked,
    /// An increasing stamp per live slot (in its link fields); no list.
    Stamped,
}

/// Index entries a new table is sized for (it grows by doubling).
const FIRST_CAPACITY: usize = 16;

impl<V> LruTable<V> {
    fn new() -> LruTable<V> {
        LruTable {
            index: SlotIndex::with_capacity(FIRST_CAPACITY),
            order: Order::Linked,
            lazy: false,
            clock: 0,
            hasher: crate::hashing::TableHasher::default(),
            slots: Vec::new(),
            live: 0,
            free: NIL,
            newest: NIL,
            oldest: NIL,
        }
    }

    /// An empty table that keeps its order lazily (see [`Order::Stamped`]).
    fn new_stamped() -> LruTable<V> {
        LruTable { order: Order::Stamped, lazy: true, ..LruTable::new() }
    }

    fn len(&self) -> usize {
        self.live
    }

    /// Writes the next stamp into live slot `i` (in [`Order::Stamped`]).
    #[inline]
    fn stamp(&mut self, i: u32) {
        self.clock += 1;
        let clock = self.clock;
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.newer = (clock >> 32) as u32;
            s.older = clock as u32;
        }
    }

    /// Switches from [`Order::Stamped`] to [`Order::Linked`]: links the live slots in stamp
    /// order, which is the order the list would have had.
    #[cold]
    fn link_by_stamps(&mut self) {
        let mut live: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| ((u64::from(s.newer) << 32) | u64::from(s.older), i as u32))
            .collect();
        live.sort_unstable();
        self.order = Order::Linked;
        self.newest = NIL;
        self.oldest = NIL;
        for (_, i) in live {
            self.link_newest(i);
        }
    }

    /// The table's hash of `key` (seeded per table, so crafted keys cannot aim at one line).
    #[inline]
    pub(crate) fn hash(&self, key: &KeyValue) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`.
    #[cfg(test)]
    fn find(&self, key: &KeyValue) -> Option<u32> {
        self.find_hashed(self.hash(key), key)
    }

    /// Adds `key` (not in the table) as the most recently updated; returns its slot.
    #[cfg(test)]
    fn insert(&mut self, key: KeyValue, value: V) -> u32 {
        self.insert_hashed(self.hash(&key), key, value)
    }

    /// The slot of `key`, whose hash is `hash`.
    #[inline]
    fn find_hashed(&self, hash: u64, key: &KeyValue) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |i| slots.get(i as usize).is_some_and(|s| s.key == *key))
    }

    /// Starts loading the index line of `hash` (first stage of a batch).
    #[inline]
    pub(crate) fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Starts loading the slots whose tag matches `hash` (second stage, once the index line is
    /// likely cached); returns the first, a hint [`LruTable::lookup`] checks before trusting.
    #[inline]
    pub(crate) fn prefetch_slot(&self, hash: u64) -> u32 {
        let mut first = NIL;
        let _ = self.index.find(hash, |i| {
            if let Some(s) = self.slots.get(i as usize) {
                prefetch_lines(s);
                if first == NIL {
                    first = i;
                }
            }
            false
        });
        first
    }

    /// Starts loading the links of the neighbours of slot `i` in the update order, which
    /// moving it to the front rewrites (third stage, once slot `i` has arrived).
    #[inline]
    fn prefetch_neighbours(&self, i: u32) {
        if self.order == Order::Stamped {
            return;
        }
        if let Some(s) = self.slots.get(i as usize) {
            for n in [s.newer, s.older] {
                if let Some(ns) = self.slots.get(n as usize) {
                    // The two links may straddle a line boundary.
                    outpost_flowmeter::index::prefetch(&ns.newer);
                    outpost_flowmeter::index::prefetch(&ns.older);
                }
            }
        }
    }

    /// `hint` if that slot is in use and holds `key`.
    #[inline]
    fn hinted(&self, key: &KeyValue, hint: u32) -> Option<u32> {
        self.slots.get(hint as usize).filter(|s| s.key == *key && s.value.is_some()).map(|_| hint)
    }

    /// The slot of `key` (hash `hash`): `hint` if it holds the key, else a search.
    #[inline]
    fn lookup(&self, hash: u64, key: &KeyValue, hint: u32) -> Option<u32> {
        self.hinted(key, hint).or_else(|| self.find_hashed(hash, key))
    }

    #[inline]
    fn value(&self, i: u32) -> Option<&V> {
        self.slots.get(i as usize).and_then(|s| s.value.as_ref())
    }

    #[inline]
    fn value_mut(&mut self, i: u32) -> Option<&mut V> {
        self.slots.get_mut(i as usize).and_then(|s| s.value.as_mut())
    }

    /// Sets the newer neighbour of slot `i`; for [`NIL`] (the list's old end), the oldest slot.
    fn set_newer(&mut self, i: u32, newer: u32) {
        match self.slots.get_mut(i as usize) {
            Some(s) => s.newer = newer,
            None => self.oldest = newer,
        }
    }

    /// Sets the older neighbour of slot `i`; for [`NIL`] (the list's new end), the newest slot.
    fn set_older(&mut self, i: u32, older: u32) {
        match self.slots.get_mut(i as usize) {
            Some(s) => s.older = older,
            None => self.newest = older,
        }
    }

    /// Takes slot `i` out of the list (nothing to do in [`Order::Stamped`]).
    fn unlink(&mut self, i: u32) {
        if self.order == Order::Stamped {
            return;
        }
        let Some(s) = self.slots.get(i as usize) else { return };
        let (newer, older) = (s.newer, s.older);
        // A neighbour that is NIL is the list's end: `set_*` then moves that end.
        self.set_older(newer, older);
        self.set_newer(older, newer);
    }

    /// Puts slot `i` (unlinked) at the front.
    fn link_newest(&mut self, i: u32) {
        let old = self.newest;
        if let Some(s) = self.slots.get_mut(i as usize) {
            s.newer = NIL;
            s.older = old;
        }
        self.set_newer(old, i);
        self.newest = i;
    }

    /// Marks slot `i` as the most recently updated.
    #[inline]
    fn touch(&mut self, i: u32) {
        if self.order == Order::Stamped {
            self.stamp(i);
        } else if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
    }

    /// Adds `key` (not in the table; hash `hash`) as the most recently updated; returns its
    /// slot.
    fn insert_hashed(&mut self, hash: u64, key: KeyValue, value: V) -> u32 {
        if self.index.len() >= self.index.capacity() {
            self.grow();
        }
        let slot = Slot { key, newer: NIL, older: NIL, value: Some(value) };
        let i = match self.slots.get_mut(self.free as usize) {
            Some(s) => {
                let i = self.free;
                self.free = s.older;
                *s = slot;
                i
            }
            None => {
                // Slots are fewer than `u32::MAX`: `max_keys` and the memory bound them long
                // before.
                let i = u32::try_from(self.slots.len()).unwrap_or(NIL - 1);
                self.slots.push(slot);
                i
            }
        };
        self.index.insert(hash, i);
        self.live += 1;
        if self.order == Order::Stamped {
            self.stamp(i);
        } else {
            self.link_newest(i);
        }
        i
    }

    /// Rebuilds the index at twice its capacity.
    #[cold]
    fn grow(&mut self) {
        let mut index = SlotIndex::with_capacity(self.index.capacity().max(FIRST_CAPACITY) * 2);
        for (i, s) in self.slots.iter().enumerate() {
            if s.value.is_some() {
                index.insert(self.hash(&s.key), i as u32);
            }
        }
        self.index = index;
    }

    /// Removes slot `i`, which goes on the free list.
    fn remove(&mut self, i: u32) -> Option<(KeyValue, V)> {
        let s = self.slots.get(i as usize)?;
        s.value.as_ref()?;
        let key = s.key;
        self.unlink(i);
        self.index.remove(self.hash(&key), i);
        let free = self.free;
        let s = self.slots.get_mut(i as usize)?;
        s.older = free;
        self.free = i;
        self.live -= 1;
        s.value.take().map(|v| (key, v))
    }

    /// True while the update order is kept as stamps ([`Order::Stamped`]), not as a list.
    fn is_stamped(&self) -> bool {
        self.order == Order::Stamped
    }

    /// Removes the keys whose value `drop` selects among the slots `from..from + count`;
    /// returns where the next slots start, or `None` past the last slot.
    fn remove_where(&mut self, from: usize, count: usize, mut drop: impl FnMut(&V) -> bool) -> Option<usize> {
        let end = from.saturating_add(count).min(self.slots.len());
        for i in from..end {
            if self.slots.get(i).and_then(|s| s.value.as_ref()).is_some_and(&mut drop) {
                self.remove(i as u32);
            }
        }
        (end < self.slots.len()).then_some(end)
    }

    /// The value of the least recently updated key (only for tables in [`Order::Linked`]:
    /// `None` in a stamped one).
    fn oldest(&self) -> Option<&V> {
        if self.order == Order::Stamped {
            return None;
        }
        self.value(self.oldest)
    }

    /// Removes the least recently updated key.
    fn pop_oldest(&mut self) -> Option<(KeyValue, V)> {
        if self.order == Order::Stamped {
            self.link_by_stamps();
        }
        self.remove(self.oldest)
    }

    /// Empties the table, keeping its memory, and returns its keys and values.
    fn drain(&mut self) -> impl Iterator<Item = (KeyValue, V)> + '_ {
        self.index.clear();
        self.newest = NIL;
        self.oldest = NIL;
        self.free = NIL;
        self.live = 0;
        self.order = if self.lazy { Order::Stamped } else { Order::Linked };
        self.clock = 0;
        self.slots.drain(..).filter_map(|s| Some((s.key, s.value?)))
    }
}

/// Counters of one threshold rule (per worker, or in the collector).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThresholdStats {
    /// Inputs selected by the rule.
    pub matched: u64,
    /// Times a key reached the threshold.
    pub crossed: u64,
    /// Keys held now.
    pub keys: u64,
    /// Most keys held at once.
    pub peak_keys: u64,
    /// Keys dropped because the table was full.
    pub evicted: u64,
    /// Inputs too late for their window.
    pub late: u64,
    /// Keys whose parked first input was given up for a newer key's before their second
    /// input came (their count is one lower than exact; see [`crate::first`]).
    pub lost_first: u64,
}

impl ThresholdStats {
    /// Adds another part's counters.
    pub fn merge(&mut self, o: &ThresholdStats) {
        self.matched += o.matched;
        self.crossed += o.crossed;
        self.keys += o.keys;
        self.peak_keys += o.peak_keys;
        self.evicted += o.evicted;
        self.late += o.late;
        self.lost_first += o.lost_first;
    }
}

/// Per-key sliding windows evaluated as inputs arrive (Local and Central placements).
///
/// Keys are kept in order of their last input: a full table drops the least recently updated
/// key, and keys whose window has emptied are released from the old end. For a rule that no
/// single input can alert on (a count or distinct count with a threshold above 1), a key's
/// first input is parked in a [`FirstSeen`] table of 16-byte entries and the key gets its
/// full state with its second input (see [`crate::first`]).
#[derive(Debug)]
pub struct ImmediateThreshold {
    /// Kept in [`Order::Stamped`] (an update writes a stamp into the key's own slot) until
    /// the first eviction needs the least recently updated key, then linked.
    keys: LruTable<KeyState>,
    first: Option<FirstSeen>,
    /// When [`ImmediateThreshold::expire`] next starts a sweep of a stamped table for idle keys.
    next_sweep: Nanos,
    /// The slot the sweep in progress goes on from (none: no sweep in progress).
    sweep_from: Option<usize>,
    /// Counters.
    pub stats: ThresholdStats,
}

/// What a parked first input keeps of its contribution: a count's amount (1), a distinct
/// value's fingerprint (all a distinct counter keeps of it).
fn parked_value(c: Contribution) -> u32 {
    match c {
        Contribution::Amount(a) => u32::try_from(a).unwrap_or(u32::MAX),
        Contribution::Value(h) => fingerprint32(h),
        Contribution::RatioInput(hit) => u32::from(hit),
    }
}

impl ImmediateThreshold {
    /// Empty state for `rule`.
    #[must_use]
    pub fn new(rule: &ThresholdRule) -> ImmediateThreshold {
        let single_cannot_alert =
            matches!(rule.aggregate, Aggregate::Count | Aggregate::Distinct(_)) && rule.threshold > 1.0;
        let first = single_cannot_alert
            .then(|| FirstSeen::new(rule.bucket_len().as_nanos(), rule.buckets, rule.max_keys));
        ImmediateThreshold {
            keys: LruTable::new_stamped(),
            first,
            next_sweep: Nanos::ZERO,
            sweep_from: None,
            stats: ThresholdStats::default(),
        }
    }

    /// Adds one input for `key` at `now`; returns the crossing when the key reaches the
    /// threshold and is not quiet (see [`quiet_until`]).
    pub fn add(
        &mut self,
        rule: &ThresholdRule,
        key: KeyValue,
        now: Nanos,
        c: Contribution,
    ) -> Option<Crossing> {
        self.add_prepared(rule, key, self.keys.hash(&key), NIL, now, c)
    }

    /// Keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// This table's hash of `key`, for [`ImmediateThreshold::add_prepared`].
    #[inline]
    #[must_use]
    pub fn hash(&self, key: &KeyValue) -> u64 {
        self.keys.hash(key)
    }

    /// Starts loading the index line of `hash` (first stage of a batch).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.keys.prefetch_index(hash);
    }

    /// Starts loading the key slot the index line of `hash` points to (second stage); returns
    /// a hint for [`ImmediateThreshold::add_prepared`] (`u32::MAX`: none). When the index
    /// holds no slot for `hash`, the key is new or parked: then the line of the first-sighting
    /// table it will be looked up in is loaded instead — only then, so the updates of keys
    /// already held (most of them) load no line they do not read.
    #[inline]
    #[must_use]
    pub fn prefetch_slot(&self, hash: u64) -> u32 {
        let slot = self.keys.prefetch_slot(hash);
        if slot == NIL
            && let Some(f) = &self.first
        {
            f.prefetch(hash);
        }
        slot
    }

    /// Starts loading what an update of the key in slot `slot` (a hint from
    /// [`ImmediateThreshold::prefetch_slot`], whose slot has arrived by now) reads or writes
    /// outside the slot (third stage): a distinct counter's list of values on the heap, the
    /// links of the key's neighbours in the update order. A stale hint only loads lines for
    /// nothing.
    #[inline]
    pub fn prefetch_value(&self, slot: u32) {
        if let Some(state) = self.keys.value(slot) {
            state.counter.prefetch_heap();
            self.keys.prefetch_neighbours(slot);
        }
    }

    /// [`ImmediateThreshold::add`] with the key's hash (from [`ImmediateThreshold::hash`])
    /// and a slot hint from [`ImmediateThreshold::prefetch_slot`], which is checked (slot in
    /// use, key equal) before it is trusted: a stale hint costs a search, never a wrong key.
    #[inline]
    pub fn add_prepared(
        &mut self,
        rule: &ThresholdRule,
        key: KeyValue,
        hash: u64,
        hint: u32,
        now: Nanos,
        c: Contribution,
    ) -> Option<Crossing> {
        self.stats.matched += 1;
        let slot = match self.keys.lookup(hash, &key, hint) {
            Some(slot) => {
                self.keys.touch(slot);
                slot
            }
            None => match &mut self.first {
                None => self.insert(rule, key, hash, now),
                Some(first) => {
                    match first.see(hash, now, parked_value(c)) {
                        Seen::Parked => {
                            self.stats.lost_first = first.lost;
                            return None;
                        }
                        Seen::Second(s) => {
                            let slot = self.insert(rule, key, hash, s.at);
                            if let Some(state) = self.keys.value_mut(slot) {
                                // Given back only while inside the window: never late.
                                state.counter.add_parked(s.at, s.value);
                            }
                            slot
                        }
                    }
                }
            },
        };
        let state = self.keys.value_mut(slot)?;
        state.last = state.last.max(now);
        let crossing = match state.counter.add(now, c, rule) {
            Ok(c) => c?,
            Err(Late) => {
                self.stats.late += 1;
                return None;
            }
        };
        if crossing.value >= rule.threshold && now >= state.quiet_until {
            state.quiet_until = quiet_until(rule, state.last);
            self.stats.crossed += 1;
            return Some(crossing);
        }
        None
    }

    /// Adds a new key, first dropping the least recently updated ones while the table is full.
    fn insert(&mut self, rule: &ThresholdRule, key: KeyValue, hash: u64, now: Nanos) -> u32 {
        while self.keys.len() >= rule.max_keys {
            if self.keys.pop_oldest().is_none() {
                break;
            }
            self.stats.evicted += 1;
        }
        let slot = self.keys.insert_hashed(
            hash,
            key,
            KeyState { counter: Counter::new(rule), quiet_until: Nanos::ZERO, last: now },
        );
        self.stats.keys = self.keys.len() as u64;
        self.stats.peak_keys = self.stats.peak_keys.max(self.stats.keys);
        slot
    }

    /// Drops keys whose window has emptied by `now`.
    ///
    /// While the table keeps its order as stamps (no key evicted yet) it is swept for idle
    /// keys: a sweep starts at most once per bucket of event time and goes over
    /// [`SWEEP_SLOTS`] slots per call (a call per clock tick), so no call stalls the worker
    /// however many keys the rule holds, and an idle key is dropped at most one bucket plus
    /// one sweep after its window emptied. A linked table (after an eviction) is walked from
    /// its least recently updated end, O(1) per call plus O(1) per key dropped; a key whose
    /// last input came out of order can then stay behind an older key until that one empties
    /// too.
    pub fn expire(&mut self, rule: &ThresholdRule, now: Nanos) {
        if self.keys.is_stamped() {
            if self.sweep_from.is_none() && now >= self.next_sweep {
                self.next_sweep = Nanos(now.0.saturating_add(rule.bucket_len().as_nanos()));
                self.sweep_from = Some(0);
            }
            if let Some(from) = self.sweep_from {
                // The bucket of a key's newest input leaving the window empties it (every input
                // is at most `last`): a test on the slot's first fields, not its counter's lines.
                // `quiet_until(rule, last) <= now` as one compare per slot, not a division.
                let emptied_before = emptied_before(rule, now);
                self.sweep_from = self
                    .keys
                    .remove_where(from, SWEEP_SLOTS, |s| s.last < emptied_before && s.quiet_until <= now);
                self.stats.keys = self.keys.len() as u64;
            }
            return;
        }
        while let Some(s) = self.keys.oldest() {
            if !(s.counter.is_idle(now) && s.quiet_until <= now) {
                break;
            }
            self.keys.pop_oldest();
        }
        self.stats.keys = self.keys.len() as u64;
    }
}

/// Slots an immediate rule's sweep for idle keys looks at per clock tick
/// ([`ImmediateThreshold::expire`]): some 240 KB of key state, tens of microseconds.
const SWEEP_SLOTS: usize = 1024;

/// When a key that alerts with its newest input at `last` may alert again: once every bucket
/// of the window it alerted on has left the window, that is when the bucket holding `last`
/// leaves it, `window_buckets` buckets after that bucket began. So a key alerts at most once per
/// window, its next alert counts only inputs its last one did not, and a persistent attack alerts
/// again every window (the alert policy deduplicates further). With one bucket (a tumbling
/// window) that is the end of the alert's window.
fn quiet_until(rule: &ThresholdRule, last: Nanos) -> Nanos {
    let width = rule.bucket_len().as_nanos();
    Nanos((last.0 / width).saturating_add(u64::from(rule.buckets)).saturating_mul(width))
}

/// The time before which a key's newest input must lie for its window to be empty at `now`:
/// `last < emptied_before(rule, now)` exactly when `quiet_until(rule, last) <= now` (a test
/// checks it), so a sweep compares instead of dividing per key.
fn emptied_before(rule: &ThresholdRule, now: Nanos) -> Nanos {
    let width = rule.bucket_len().as_nanos();
    let buckets = u64::from(rule.buckets);
    // quiet_until(last) = (last / width + buckets) * width <= now
    //   <=> last / width <= now / width - buckets  (no saturation for times below u64::MAX)
    //   <=> last < (now / width - buckets + 1) * width
    match (now.0 / width).checked_sub(buckets) {
        Some(b) => Nanos((b + 1).saturating_mul(width)),
        None => Nanos::ZERO,
    }
}

/// A partial aggregate of one key in one bucket, from one worker.
#[derive(Debug, Clone)]
pub enum PartialValue {
    /// Count or sum, and the number of inputs.
    Amount { total: u64, events: u64 },
    /// Distinct values, and the number of inputs.
    Distinct { values: Box<DistinctCounter>, events: u64 },
    /// Ratio inputs: in the subset, and all.
    Ratio { subset: u64, all: u64 },
}

impl PartialValue {
    fn new(rule: &ThresholdRule) -> PartialValue {
        match rule.aggregate {
            Aggregate::Count | Aggregate::Sum(_) => PartialValue::Amount { total: 0, events: 0 },
            Aggregate::Distinct(_) => {
                PartialValue::Distinct { values: Box::new(DistinctCounter::new(rule.exact_limit)), events: 0 }
            }
            Aggregate::Ratio(_) => PartialValue::Ratio { subset: 0, all: 0 },
        }
    }

    fn add(&mut self, c: Contribution) {
        match (self, c) {
            (PartialValue::Amount { total, events }, Contribution::Amount(a)) => {
                *total = total.saturating_add(a);
                *events += 1;
            }
            (PartialValue::Distinct { values, events }, Contribution::Value(h)) => {
                values.insert(h);
                *events += 1;
            }
            (PartialValue::Ratio { subset, all }, Contribution::RatioInput(hit)) => {
                *subset += u64::from(hit);
                *all += 1;
            }
            _ => {}
        }
    }

    /// The inputs counted.
    fn events(&self) -> u64 {
        match self {
            PartialValue::Amount { events, .. } | PartialValue::Distinct { events, .. } => *events,
            PartialValue::Ratio { all, .. } => *all,
        }
    }

    /// The total of a count or sum (`None` for other aggregates).
    #[inline]
    fn amount(&self) -> Option<u64> {
        match self {
            PartialValue::Amount { total, .. } => Some(*total),
            _ => None,
        }
    }

    /// Adds another part of the same bucket and key.
    pub fn merge(&mut self, o: &PartialValue) {
        match (self, o) {
            (PartialValue::Amount { total, events }, PartialValue::Amount { total: t, events: e }) => {
                *total = total.saturating_add(*t);
                *events += e;
            }
            (PartialValue::Distinct { values, events }, PartialValue::Distinct { values: v, events: e }) => {
                values.merge(v);
                *events += e;
            }
            (PartialValue::Ratio { subset, all }, PartialValue::Ratio { subset: s, all: a }) => {
                *subset += s;
                *all += a;
            }
            _ => {}
        }
    }
}

/// The partial aggregates a worker hands to the collector at the end of a bucket: one per key
/// it counted in the bucket, in the order of its table's slots (deterministic for a given
/// input; the collector orders what it judges itself). One message per rule and bucket, so
/// the collector's work on arrival does not grow with the keys.
#[derive(Debug, Clone)]
pub struct Partial {
    /// Index of the rule among the rule set's rules.
    pub rule: crate::rules::RuleId,
    /// Bucket number (bucket start / bucket length).
    pub bucket: u64,
    /// The keys and their partial aggregates.
    pub entries: Vec<(KeyValue, PartialValue)>,
}

/// Per-worker bucket aggregates of a Merged rule.
#[derive(Debug)]
pub struct PartialThreshold {
    /// Open buckets (bucket number, keys and values), ascending by bucket: flushing takes
    /// them from the front, and an input, nearly always of the newest bucket, finds its
    /// table from the back in one comparison. (A few buckets are open at once: those of the
    /// last `lateness`.)
    open: Vec<(u64, LruTable<PartialValue>)>,
    /// A flushed bucket's table, kept for the next bucket so a new bucket allocates nothing.
    spare: Option<LruTable<PartialValue>>,
    /// Keys held over all open buckets.
    held: usize,
    /// Buckets up to (excluding) this number were flushed.
    flushed_before: u64,
    /// The bucket of the latest input and its event-time span `[start, end)` in ns: most
    /// inputs fall in it and need no division to find their bucket.
    current: (u64, u64, u64),
    /// Counters.
    pub stats: ThresholdStats,
}

impl PartialThreshold {
    /// Empty.
    #[must_use]
    pub fn new() -> PartialThreshold {
        PartialThreshold {
            open: Vec::new(),
            spare: None,
            held: 0,
            flushed_before: 0,
            current: (0, 0, 0),
            stats: ThresholdStats::default(),
        }
    }

    /// The bucket number of an input at `ts`.
    #[inline]
    fn bucket_of(&self, rule: &ThresholdRule, ts: Nanos) -> u64 {
        let (bucket, start, end) = self.current;
        if ts.0 >= start && ts.0 < end { bucket } else { ts.0 / rule.bucket_len().as_nanos() }
    }

    /// The table of the bucket holding `ts`, if it is open.
    #[inline]
    fn table_at(&self, rule: &ThresholdRule, ts: Nanos) -> Option<&LruTable<PartialValue>> {
        let bucket = self.bucket_of(rule, ts);
        self.open.iter().rev().find(|(b, _)| *b == bucket).map(|(_, t)| t)
    }

    /// This rule's hash of `key` for an input at `ts` (0 when its bucket is not open yet).
    #[inline]
    #[must_use]
    pub fn hash(&self, rule: &ThresholdRule, key: &KeyValue, ts: Nanos) -> u64 {
        self.table_at(rule, ts).map_or(0, |t| t.hash(key))
    }

    /// Starts loading the index line of `hash` in the table of `ts`'s bucket (first stage).
    #[inline]
    pub fn prefetch_index(&self, rule: &ThresholdRule, ts: Nanos, hash: u64) {
        if let Some(t) = self.table_at(rule, ts) {
            t.prefetch_index(hash);
        }
    }

    /// Starts loading the slot the index line points to (second stage); returns a hint for
    /// [`PartialThreshold::add_prepared`] (`u32::MAX`: none).
    #[inline]
    #[must_use]
    pub fn prefetch_slot(&self, rule: &ThresholdRule, ts: Nanos, hash: u64) -> u32 {
        self.table_at(rule, ts).map_or(NIL, |t| t.prefetch_slot(hash))
    }

    /// Keys held over all open buckets.
    #[must_use]
    pub fn len(&self) -> usize {
        self.held
    }

    /// True when no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Adds an input at `ts`. A bucket holds at most `max_keys` keys: beyond that its least
    /// recently updated key is dropped (counted), so a flood of new keys cannot crowd out the
    /// busy ones.
    pub fn add(&mut self, rule: &ThresholdRule, key: KeyValue, ts: Nanos, c: Contribution) {
        self.add_prepared(rule, key, None, ts, c);
    }

    /// [`PartialThreshold::add`] with the key's hash and slot hint from
    /// [`PartialThreshold::hash`] and [`PartialThreshold::prefetch_slot`] (checked before
    /// use: a stale hint costs a search, never a wrong key).
    pub fn add_prepared(
        &mut self,
        rule: &ThresholdRule,
        key: KeyValue,
        prepared: Option<(u64, u32)>,
        ts: Nanos,
        c: Contribution,
    ) {
        self.stats.matched += 1;
        let bucket = self.bucket_of(rule, ts);
        if bucket != self.current.0 || self.current.2 == 0 {
            let len = rule.bucket_len().as_nanos();
            let start = bucket.saturating_mul(len);
            self.current = (bucket, start, start.saturating_add(len));
        }
        if bucket < self.flushed_before {
            self.stats.late += 1;
            return;
        }
        let at = match self.open.iter().rposition(|(b, _)| *b <= bucket) {
            Some(i) if self.open.get(i).is_some_and(|(b, _)| *b == bucket) => i,
            found => {
                let i = found.map_or(0, |i| i + 1);
                let table = self.spare.take().unwrap_or_else(LruTable::new_stamped);
                self.open.insert(i, (bucket, table));
                i
            }
        };
        let Some((_, keys)) = self.open.get_mut(at) else { return };
        let (hash, hint) = match prepared {
            // A hash taken from this very table (a new bucket's table has another seed).
            Some((h, hint)) if h != 0 => (h, hint),
            _ => (keys.hash(&key), NIL),
        };
        let slot = match keys.lookup(hash, &key, hint) {
            Some(slot) => {
                keys.touch(slot);
                slot
            }
            None => {
                while keys.len() >= rule.max_keys {
                    if keys.pop_oldest().is_none() {
                        break;
                    }
                    self.held -= 1;
                    self.stats.evicted += 1;
                }
                self.held += 1;
                self.stats.keys = self.held as u64;
                self.stats.peak_keys = self.stats.peak_keys.max(self.stats.keys);
                keys.insert_hashed(hash, key, PartialValue::new(rule))
            }
        };
        if let Some(value) = keys.value_mut(slot) {
            value.add(c);
        }
    }

    /// Hands every bucket that ended at least `lateness` before `now` to `out`, keys in the
    /// order of their slots (deterministic for a given input; the collector orders what it
    /// judges itself).
    pub fn flush(
        &mut self,
        rule_id: crate::rules::RuleId,
        rule: &ThresholdRule,
        now: Nanos,
        lateness: Duration,
        out: &mut impl FnMut(Partial),
    ) {
        let len = rule.bucket_len().as_nanos();
        // Buckets whose end (start + len) + lateness ≤ now.
        let ready_before = now.0.saturating_sub(lateness.as_nanos()) / len;
        while self.open.first().is_some_and(|(b, _)| *b < ready_before) {
            let (bucket, mut table) = self.open.remove(0);
            self.held -= table.len();
            let entries: Vec<(KeyValue, PartialValue)> = table.drain().collect();
            if !entries.is_empty() {
                out(Partial { rule: rule_id, bucket, entries });
            }
            self.spare = Some(table);
        }
        self.flushed_before = self.flushed_before.max(ready_before);
        self.stats.keys = self.held as u64;
    }

    /// Hands every open bucket to `out` (end of input).
    pub fn flush_all(
        &mut self,
        rule_id: crate::rules::RuleId,
        rule: &ThresholdRule,
        out: &mut impl FnMut(Partial),
    ) {
        self.flush(rule_id, rule, Nanos::MAX, Duration::ZERO, out);
    }
}

impl Default for PartialThreshold {
    fn default() -> PartialThreshold {
        PartialThreshold::new()
    }
}

/// The collector's merge of a Merged rule's partial aggregates.
///
/// It keeps each worker's [`Partial`] as it came, by bucket, for as long as some window still
/// reads the bucket, and judges a bucket once the watermark passed its end plus the lateness:
/// every key the bucket holds, over the window that ends with it. Nothing is looked up per
/// partial aggregate on arrival.
///
/// **Bound first.** A count or sum can reach the threshold in a window only if the sum of the
/// window's largest per-list amounts (each worker list's largest total, over the window's
/// buckets) does; and a key of the judged bucket only if its own amount there plus that sum
/// without its own list's largest does. Buckets and keys below these bounds are passed over
/// without merging anything — in ordinary traffic, far below a flood threshold, that is every
/// bucket — and only the keys above them are merged exactly (the bucket's lists indexed by key
/// once, when a judged window first needs them). A bound is never below the exact value, so a
/// key that reaches the threshold is always judged, and exactly: the alert's value and
/// evidence are the exact merge. Distinct counts and ratios have no such bound: every key of
/// the judged bucket is merged.
#[derive(Debug)]
pub struct MergedThreshold {
    /// Buckets some window may still read, ascending by bucket number.
    buckets: Vec<MergedBucket>,
    /// Keys that alerted, with the first bucket whose window may alert for them again.
    quiet: HashMap<KeyValue, u64, TableHasher>,
    /// Partial aggregates held over all buckets.
    held: usize,
    /// Counters (`keys`, `peak_keys`: partial aggregates held).
    pub stats: ThresholdStats,
}

/// The partial aggregates of one bucket, from every worker that sent some.
#[derive(Debug, Default)]
struct MergedBucket {
    bucket: u64,
    /// The workers' lists as they came, each with its largest amount (count or sum; 0 for
    /// other aggregates).
    parts: Vec<(Vec<(KeyValue, PartialValue)>, u64)>,
    /// Lists arrived since the bucket was last judged.
    pending: bool,
    /// The lists merged by key, built when a judged window first needs a key's exact value
    /// (dropped when another list arrives).
    merged: Option<HashMap<KeyValue, PartialValue, TableHasher>>,
}

impl MergedBucket {
    /// Replaces the lists by one, merged by key, of at most `max_keys` keys: the keys with the
    /// most inputs (ties: the smaller key, so the outcome does not depend on hashing).
    /// Returns the keys kept.
    fn compact(&mut self, max_keys: usize) -> usize {
        self.merged();
        let mut entries: Vec<(KeyValue, PartialValue)> =
            self.merged.take().unwrap_or_default().into_iter().collect();
        if entries.len() > max_keys {
            entries.sort_unstable_by(|a, b| b.1.events().cmp(&a.1.events()).then_with(|| a.0.cmp(&b.0)));
            entries.truncate(max_keys);
        }
        let largest = entries.iter().filter_map(|(_, v)| v.amount()).max().unwrap_or(0);
        let kept = entries.len();
        self.parts = vec![(entries, largest)];
        kept
    }

    /// The lists merged by key (built on first use).
    fn merged(&mut self) -> &HashMap<KeyValue, PartialValue, TableHasher> {
        let parts = &self.parts;
        self.merged.get_or_insert_with(|| {
            let n = parts.iter().map(|(e, _)| e.len()).sum();
            let mut m = HashMap::with_capacity_and_hasher(n, TableHasher::default());
            for (entries, _) in parts {
                for (key, value) in entries {
                    m.entry(*key)
                        .and_modify(|v: &mut PartialValue| v.merge(value))
                        .or_insert_with(|| value.clone());
                }
            }
            m
        })
    }
}

impl MergedThreshold {
    /// Empty.
    #[must_use]
    pub fn new() -> MergedThreshold {
        MergedThreshold {
            buckets: Vec::new(),
            quiet: HashMap::with_hasher(TableHasher::default()),
            held: 0,
            stats: ThresholdStats::default(),
        }
    }

    /// Takes one worker's partial aggregates of a bucket. A bucket holds at most `max_keys`
    /// of them: beyond that its lists are merged by key, and if still more keys remain, those
    /// with the fewest inputs are dropped (counted as `evicted`). A flood of new destinations
    /// spread over many workers so cannot make the collector hold more than the rule's
    /// `max_keys` per bucket, and the busy keys stay.
    pub fn add(&mut self, rule: &ThresholdRule, p: Partial) {
        if p.entries.is_empty() {
            return;
        }
        let largest = p.entries.iter().filter_map(|(_, v)| v.amount()).max().unwrap_or(0);
        self.held += p.entries.len();
        let at = match self.buckets.binary_search_by_key(&p.bucket, |b| b.bucket) {
            Ok(i) => i,
            Err(i) => {
                self.buckets.insert(i, MergedBucket { bucket: p.bucket, ..MergedBucket::default() });
                i
            }
        };
        if let Some(b) = self.buckets.get_mut(at) {
            b.parts.push((p.entries, largest));
            b.pending = true;
            b.merged = None;
            let held: usize = b.parts.iter().map(|(e, _)| e.len()).sum();
            if held > rule.max_keys {
                let kept = b.compact(rule.max_keys);
                self.held = self.held - held + kept;
                self.stats.evicted += (held - kept) as u64;
            }
        }
        self.stats.keys = self.held as u64;
        self.stats.peak_keys = self.stats.peak_keys.max(self.stats.keys);
    }

    /// Judges every bucket that received partials and ended at least `lateness` before
    /// `watermark`: `alert(key, bucket end, crossing)` for keys whose window (the bucket and
    /// the `window_buckets − 1` before it) reached the threshold, in key order. After an alert
    /// a key is quiet for `window_buckets` buckets, so its next alert is over a window that
    /// shares no bucket with the one that alerted. Then forgets the buckets no window still
    /// reads.
    pub fn evaluate(
        &mut self,
        rule: &ThresholdRule,
        watermark: Nanos,
        lateness: Duration,
        alert: &mut impl FnMut(KeyValue, Nanos, Crossing),
    ) {
        let len = rule.bucket_len().as_nanos();
        let ready_before = watermark.0.saturating_sub(lateness.as_nanos()) / len;
        for i in 0..self.buckets.len() {
            match self.buckets.get(i) {
                Some(b) if b.bucket >= ready_before => break,
                Some(b) if b.pending => self.judge(rule, i, len, alert),
                Some(_) => {}
                None => break,
            }
        }
        // Every window judged from now on ends at `ready_before` or later.
        let keep_from = ready_before.saturating_sub(u64::from(rule.buckets).saturating_sub(1));
        let gone = self.buckets.partition_point(|b| b.bucket < keep_from);
        for b in self.buckets.drain(..gone) {
            self.held -= b.parts.iter().map(|(e, _)| e.len()).sum::<usize>();
        }
        self.quiet.retain(|_, until| *until > keep_from);
        self.stats.keys = self.held as u64;
    }

    /// Judges bucket `i` (of `self.buckets`); `len` is the rule's bucket length in ns.
    fn judge(
        &mut self,
        rule: &ThresholdRule,
        i: usize,
        len: u64,
        alert: &mut impl FnMut(KeyValue, Nanos, Crossing),
    ) {
        let Some(bucket) = self.buckets.get(i).map(|b| b.bucket) else { return };
        let first = bucket.saturating_sub(u64::from(rule.buckets).saturating_sub(1));
        let lo = self.buckets.partition_point(|b| b.bucket < first);
        let window = lo..i + 1;
        let mut candidates: Vec<KeyValue> = Vec::new();
        if let Some(b) = self.buckets.get_mut(i) {
            b.pending = false;
        }
        if matches!(rule.aggregate, Aggregate::Count | Aggregate::Sum(_)) {
            let bound = self
                .buckets
                .get(window.clone())
                .unwrap_or_default()
                .iter()
                .flat_map(|b| b.parts.iter().map(|(_, largest)| *largest))
                .fold(0u64, u64::saturating_add);
            if (bound as f64) < rule.threshold {
                return;
            }
            for (entries, largest) in self.buckets.get(i).map(|b| b.parts.as_slice()).unwrap_or_default() {
                let rest = bound - largest;
                candidates.extend(
                    entries
                        .iter()
                        .filter(|(_, v)| {
                            (v.amount().unwrap_or(0).saturating_add(rest) as f64) >= rule.threshold
                        })
                        .map(|(k, _)| *k),
                );
            }
        } else {
            for (entries, _) in self.buckets.get(i).map(|b| b.parts.as_slice()).unwrap_or_default() {
                candidates.extend(entries.iter().map(|(k, _)| *k));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|k| self.quiet.get(k).is_none_or(|&until| bucket >= until));
        if candidates.is_empty() {
            return;
        }
        for b in self.buckets.get_mut(window.clone()).unwrap_or_default() {
            b.merged();
        }
        let end = Nanos(bucket.saturating_add(1).saturating_mul(len));
        for key in candidates {
            let parts = self
                .buckets
                .get(window.clone())
                .unwrap_or_default()
                .iter()
                .filter_map(|b| b.merged.as_ref().and_then(|m| m.get(&key)));
            if let Some(c) = window_value(rule, parts)
                && c.value >= rule.threshold
            {
                self.quiet.insert(key, bucket + u64::from(rule.buckets));
                self.stats.crossed += 1;
                alert(key, end, c);
            }
        }
    }
}

impl Default for MergedThreshold {
    fn default() -> MergedThreshold {
        MergedThreshold::new()
    }
}

/// The aggregate over a window's buckets.
fn window_value<'a>(rule: &ThresholdRule, parts: impl Iterator<Item = &'a PartialValue>) -> Option<Crossing> {
    let mut acc = PartialValue::new(rule);
    for p in parts {
        acc.merge(p);
    }
    match acc {
        PartialValue::Amount { total, events } => Some(Crossing { value: total as f64, events }),
        PartialValue::Distinct { values, events } => {
            Some(Crossing { value: values.estimate() as f64, events })
        }
        PartialValue::Ratio { subset, all } => {
            (all >= rule.min_events).then(|| Crossing { value: subset as f64 / all as f64, events: all })
        }
    }
}

/// The key of a flow record for this rule.
#[must_use]
pub fn flow_key(rule: &ThresholdRule, r: &FlowRecord, networks: &NetworkMap) -> KeyValue {
    rule.key.of_flow(r, networks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_decode::IpAddress;

    fn key(n: u32) -> KeyValue {
        KeyValue { src: IpAddress::from_v4(n.to_be_bytes()), ..KeyValue::default() }
    }

    /// The rules of one rule file's text.
    fn compile(text: &str) -> crate::rules::RuleSet {
        let src = crate::config::SourceText::new("t.toml", text);
        let cfg: crate::config::RulesConfig = src.parse().expect("parses");
        crate::rules::RuleSet::compile([(&cfg, &src, "")]).expect("compiles")
    }

    /// The first rule of `rules`, a threshold rule.
    fn first_threshold(rules: &crate::rules::RuleSet) -> &ThresholdRule {
        match rules.rules.first() {
            Some(crate::rules::Rule { kind: crate::rules::RuleKind::Threshold(rule), .. }) => rule,
            _ => panic!("a threshold rule"),
        }
    }

    /// Applies the same updates to a linked and a stamped table.
    fn update(tables: &mut [&mut LruTable<u32>; 2], n: u32) {
        for t in tables.iter_mut() {
            match t.find(&key(n)) {
                Some(slot) => t.touch(slot),
                None => {
                    t.insert(key(n), n);
                }
            }
        }
    }

    #[test]
    fn a_stamped_table_evicts_in_the_order_of_a_linked_one() {
        let (mut linked, mut stamped) = (LruTable::<u32>::new(), LruTable::<u32>::new_stamped());
        let mut x = 12_345u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x % 300
        };
        for round in 0..3 {
            for _ in 0..5_000 {
                let n = next();
                update(&mut [&mut linked, &mut stamped], n);
                // Now and then a removal, which frees a slot the next new key reuses.
                if n % 17 == 0
                    && let (Some(a), Some(b)) = (linked.find(&key(n + 1)), stamped.find(&key(n + 1)))
                {
                    assert_eq!(linked.remove(a).map(|(k, _)| k), stamped.remove(b).map(|(k, _)| k));
                }
            }
            // Evict a third of the keys (the stamped table builds its list at the first), then
            // keep updating in the linked order.
            for _ in 0..linked.len() / 3 {
                assert_eq!(linked.pop_oldest().map(|(k, _)| k), stamped.pop_oldest().map(|(k, _)| k));
            }
            for _ in 0..1_000 {
                let n = next();
                update(&mut [&mut linked, &mut stamped], n);
            }
            while let Some((k, _)) = linked.pop_oldest() {
                assert_eq!(stamped.pop_oldest().map(|(k, _)| k), Some(k), "round {round}");
            }
            assert_eq!(stamped.len(), 0);
            assert_eq!(linked.drain().count() + stamped.drain().count(), 0);
            assert_eq!(stamped.order, Order::Stamped, "a drained table is lazy again");
        }
    }

    #[test]
    fn merged_buckets_stay_in_bucket_order_and_merge_per_key_whatever_order_partials_come_in() {
        let amount = |total| PartialValue::Amount { total, events: total };
        let text = "[[threshold]]\nname = \"flood\"\nfilter = \"udp\"\nkey = [\"dst_ip\"]\nwindow = \"10s\"\nthreshold = 100";
        let rules = compile(text);
        let rule = first_threshold(&rules);
        let mut m = MergedThreshold::new();
        for (bucket, total) in [(5, 1), (3, 2), (5, 4), (7, 8), (4, 16), (2, 32), (7, 64)] {
            let p = Partial { rule: crate::rules::RuleId(0), bucket, entries: vec![(key(1), amount(total))] };
            m.add(rule, p);
        }
        let order: Vec<u64> = m.buckets.iter().map(|b| b.bucket).collect();
        assert_eq!(order, [2, 3, 4, 5, 7]);
        let merged: Vec<(u64, Option<u64>)> = m
            .buckets
            .iter_mut()
            .map(|b| (b.bucket, b.merged().get(&key(1)).and_then(PartialValue::amount)))
            .collect();
        assert_eq!(merged, [(2, Some(32)), (3, Some(2)), (4, Some(16)), (5, Some(5)), (7, Some(72))]);
        assert_eq!(m.stats.peak_keys, 7, "seven partial aggregates held");
    }

    /// The sweep's cut-off is the division it replaces: a key is idle by `now` exactly when its
    /// newest input lies before it, for windows of one to many buckets and times around the
    /// buckets' edges.
    #[test]
    fn the_sweep_cut_off_agrees_with_the_quiet_time() {
        let mut rng = outpost_tools::splitmix::SplitMix64(0x9e37_79b9_7f4a_7c15);
        let mut next = |m: u64| rng.below(m);
        for (window, buckets) in [("10s", 1), ("60s", 6), ("5m", 10), ("7s", 3), ("1ms", 64)] {
            let text = format!(
                "[[threshold]]\nname = \"t\"\nkey = [\"src_ip\"]\nwindow = \"{window}\"\nwindow_buckets = {buckets}\nthreshold = 5"
            );
            let rules = compile(&text);
            let rule = first_threshold(&rules);
            let width = rule.bucket_len().as_nanos();
            let base = 1_767_225_600_000_000_000u64;
            for _ in 0..100_000 {
                let now = Nanos(match next(3) {
                    0 => next(width * 20),
                    1 => base + next(width * 20),
                    _ => (base / width + next(40)) * width + next(3) - 1,
                });
                let last = Nanos(now.0.saturating_sub(next(width * (u64::from(rule.buckets) + 3))));
                for last in
                    [last, Nanos(last.0 / width * width), Nanos((last.0 / width * width).saturating_sub(1))]
                {
                    assert_eq!(
                        last < emptied_before(rule, now),
                        quiet_until(rule, last) <= now,
                        "{window}/{buckets}: last {last:?} now {now:?}"
                    );
                }
            }
        }
    }
}
