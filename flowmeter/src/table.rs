//! The flow table: fixed capacity, 112-byte slots, a hash index, and a timer wheel.
//!
//! # Memory
//! Flows live in a slab of [`Slot`]s (112 bytes, checked at compile time) allocated once for
//! the configured capacity. A [`SlotIndex`](crate::index) of 64-byte lines maps key hashes to
//! slab indices (11.4 bytes per flow). The timer wheel is intrusive: two `u32` links inside
//! each slot. Memory per tracked flow is therefore about 124 bytes, never more than 128.
//!
//! To fit, a slot keeps per-direction byte and packet counters as `u32` (an interim record is
//! exported early when one would overflow), and packet times as microsecond offsets from the
//! period's first packet (`base`, exact to the nanosecond). Periods never exceed the active
//! timeout, which is limited to one hour, so the offsets cannot overflow.
//!
//! # Timeouts in O(1)
//! Every flow sits in exactly one wheel bucket: the one of the deadline it had when it was last
//! scheduled. Packets do not move flows (a packet costs no wheel work); when a bucket comes
//! due, each flow in it is checked against its true deadline and either expired or moved to
//! the bucket of its new deadline. A flow is thus visited about once per idle timeout while it
//! is active. Idle and active timeouts are also checked exactly on every packet, so records do
//! not depend on the wheel's granularity — only the moment a silent flow's record is emitted
//! does.

use outpost_decode::{Duration, IpAddress, Nanos, prefetch_all};

use crate::index::SlotIndex;

use crate::key::{FlowKey, Side};
use crate::record::{DirectionCounters, EndReason, FlowRecord};

/// No slot (list terminator).
const NIL: u32 = u32::MAX;

/// Flows an eviction looks at to find the one seen longest ago.
pub const EVICTION_SCAN: usize = 64;

/// `state` bits of a slot.
mod st {
    /// The initiator is endpoint B of the key (forward = B → A).
    pub(super) const INIT_B: u8 = 0x01;
    /// FIN seen from the initiator.
    pub(super) const FIN_FWD: u8 = 0x02;
    /// FIN seen from the responder.
    pub(super) const FIN_REV: u8 = 0x04;
    /// RST seen.
    pub(super) const RST: u8 = 0x08;
    /// Both FINs or a RST: the flow ends after the close linger.
    pub(super) const CLOSING: u8 = 0x10;
    /// Packets counted since the flow's counts were last handed over per interval (in the
    /// interval fold's list of such flows).
    pub(super) const DIRTY: u8 = 0x20;
    /// Part of the period's counts was handed over already: the interval fold's `handed`
    /// entry of the slot says how much (clear: nothing, and the entry is not read).
    pub(super) const HANDED: u8 = 0x40;
    /// The slot is free (its flow ended): a slot hint pointing here is stale.
    pub(super) const FREE: u8 = 0x80;
}

/// One tracked flow. 112 bytes.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Slot {
    key: FlowKey,
    flow_id: u64,
    /// Time of the first packet of the current period, or — while the period is empty after
    /// an interim record — of the last packet seen.
    base: Nanos,
    /// Per direction (0 forward, 1 reverse): bytes and packets in the period.
    bytes: [u32; 2],
    packets: [u32; 2],
    /// Per direction: first and last packet, microseconds after `base`.
    first_us: [u32; 2],
    last_us: [u32; 2],
    /// Timer wheel links and the bucket index the slot is linked in.
    prev: u32,
    next: u32,
    bucket: u32,
    /// Interim record number of the current period.
    sequence: u16,
    tcp_flags: [u8; 2],
    min_ttl: [u8; 2],
    max_ttl: [u8; 2],
    dscp: u8,
    icmp_type: u8,
    icmp_code: u8,
    state: u8,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 112, "a flow slot must stay at 112 bytes");

impl Slot {
    fn is_empty_period(&self) -> bool {
        self.packets == [0, 0]
    }

    /// Absolute time of the last packet (or `base` for an empty period).
    fn last_seen(&self) -> Nanos {
        let us = self.last_us[0].max(self.last_us[1]);
        self.base.saturating_add(Duration(u64::from(us) * 1_000))
    }

    /// The end reason of a flow whose TCP close was seen (both FINs, or a RST).
    fn close_reason(&self) -> Option<EndReason> {
        if self.state & st::CLOSING == 0 {
            None
        } else if self.state & st::RST != 0 {
            Some(EndReason::TcpRst)
        } else {
            Some(EndReason::TcpFin)
        }
    }

    fn initiator(&self) -> Side {
        if self.state & st::INIT_B != 0 { Side::B } else { Side::A }
    }

    fn direction(&self, from: Side) -> usize {
        usize::from(from != self.initiator())
    }

    fn counters(&self, d: usize) -> DirectionCounters {
        let (Some(&packets), Some(&bytes)) = (self.packets.get(d), self.bytes.get(d)) else {
            return DirectionCounters::default();
        };
        if packets == 0 {
            return DirectionCounters::default();
        }
        let at = |us: Option<&u32>| {
            self.base.saturating_add(Duration(u64::from(us.copied().unwrap_or(0)) * 1_000))
        };
        DirectionCounters {
            packets: u64::from(packets),
            bytes: u64::from(bytes),
            tcp_flags: self.tcp_flags.get(d).copied().unwrap_or(0),
            first: at(self.first_us.get(d)),
            last: at(self.last_us.get(d)),
            min_ttl: self.min_ttl.get(d).copied().unwrap_or(0),
            max_ttl: self.max_ttl.get(d).copied().unwrap_or(0),
        }
    }

    fn record(&self, end_reason: EndReason) -> FlowRecord {
        let init = self.initiator();
        let (src, src_port) = self.key.endpoint(init);
        let (dst, dst_port) = self.key.endpoint(init.other());
        let icmp = matches!(self.key.proto, 1 | 58);
        FlowRecord {
            flow_id: self.flow_id,
            sequence: self.sequence,
            src,
            dst,
            src_port: if icmp { 0 } else { src_port },
            dst_port: if icmp { 0 } else { dst_port },
            proto: self.key.proto,
            vlan: self.key.vlan,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            dscp: self.dscp,
            fwd: self.counters(0),
            rev: self.counters(1),
            end_reason,
        }
    }

    /// Starts a new, empty period after a record, remembering when the flow was last seen.
    fn reset_period(&mut self) {
        self.base = self.last_seen();
        self.bytes = [0; 2];
        self.packets = [0; 2];
        self.first_us = [0; 2];
        self.last_us = [0; 2];
        self.tcp_flags = [0; 2];
        self.min_ttl = [0; 2];
        self.max_ttl = [0; 2];
        self.sequence = self.sequence.saturating_add(1);
    }
}

/// Timeouts and sizes of a flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Most flows tracked at once (at least 1).
    pub capacity: usize,
    /// A flow with no packet for this long ends (`idle_timeout`).
    pub idle_timeout: Duration,
    /// A flow active this long emits an interim record and goes on (`active_timeout`); at most
    /// one hour.
    pub active_timeout: Duration,
    /// After both FINs or a RST, the flow waits this long for stragglers (the last ACK) before
    /// it ends.
    pub close_linger: Duration,
}

impl TableConfig {
    /// The longest a flow's record can follow the record's end (its last packet, or the
    /// active timeout's moment for an interim record), in event time: the idle timeout or
    /// close linger, whichever is longer, plus one wheel bucket (at most 1 s) and one second
    /// for the clock ticks that drive the wheel. Consumers that bucket flow records by their
    /// end (flow baselines) wait this long before an interval is complete.
    #[must_use]
    pub fn record_delay(&self) -> Duration {
        let longest = self.idle_timeout.as_nanos().max(self.close_linger.as_nanos());
        Duration(longest.saturating_add(2_000_000_000))
    }
}

/// Most flows a table can hold (slab indices are `u32`, with `NIL` reserved).
pub const MAX_CAPACITY: usize = (u32::MAX - 1) as usize;
/// Longest active timeout: microsecond offsets in `u32` cover 71 minutes.
pub const MAX_ACTIVE_TIMEOUT: Duration = Duration(3_600 * 1_000_000_000);

/// Counters of a flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Flows created.
    pub flows: u64,
    /// Records exported, by [`EndReason::index`].
    pub records: [u64; 6],
    /// Flows tracked now.
    pub active: u64,
    /// Most flows tracked at once.
    pub peak: u64,
}

/// A packet's contribution to a flow, as the table needs it.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    /// Capture time.
    pub ts: Nanos,
    /// IP total length (bytes counted).
    pub ip_len: u32,
    /// TCP flags (low 8 bits), 0 for other protocols.
    pub tcp_flags: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class byte.
    pub tos: u8,
    /// ICMP type and code (0 for other protocols).
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;

/// What one flow carried in one interval of event time, handed over by the interval fold
/// ([`FlowTable::fold_intervals`]): per-host volume counters (packet baselines) add these up
/// instead of looking hosts up for every packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalDelta {
    /// The interval: event time / interval width.
    pub interval: u64,
    /// The flow's initiator (the source of its forward direction).
    pub initiator: IpAddress,
    /// The flow's responder.
    pub responder: IpAddress,
    /// Bytes (sum of IP total lengths) initiator → responder and responder → initiator.
    pub bytes: [u32; 2],
    /// Packets initiator → responder and responder → initiator.
    pub packets: [u32; 2],
}

/// The interval fold: every packet's bytes are handed over, per flow, in the interval its
/// capture time falls in — exactly, also for packets out of order.
///
/// A flow's counters accumulate as usual; for a flow that was handed over before its counters
/// restart (it crossed an interval: the slot's `HANDED` bit), `handed` remembers how much. The
/// flows counted since their last hand-over are listed (`dirty`, with
/// the slot's `DIRTY` bit) and handed over when event time leaves the interval (a packet or
/// a clock tick of a later one), when the flow's record is emitted (its counters restart),
/// and around a late packet, which is handed over on its own, in its own interval. A packet
/// therefore costs one flag test; the hand-over costs one entry per flow and interval.
#[derive(Debug)]
struct Fold {
    /// Interval width, ns (at least 1).
    width: u64,
    /// The interval being filled, and its span `[start, end)` in ns.
    current: Option<(u64, u64, u64)>,
    /// Per slot: bytes and packets of the period already handed over (bytes forward, bytes
    /// reverse, packets forward, packets reverse); read only for slots with `HANDED` set.
    handed: Vec<[u32; 4]>,
    /// Slots with their `DIRTY` bit set (may repeat, or name a slot reused since: the bit
    /// decides).
    dirty: Vec<u32>,
    /// Handed over, not yet taken ([`FlowTable::drain_intervals`]).
    out: Vec<IntervalDelta>,
}

impl Fold {
    fn interval_of(&self, ts: Nanos) -> u64 {
        ts.0 / self.width
    }

    fn start_interval(&mut self, interval: u64) {
        let start = interval.saturating_mul(self.width);
        self.current = Some((interval, start, start.saturating_add(self.width)));
    }
}

/// Hands over the counts of slot `idx` not handed over yet, as interval `interval`'s, and
/// clears its `DIRTY` bit. `restart`: the flow's counters restart next (its record goes
/// out), so nothing of them needs remembering — a flow that never crossed an interval (most)
/// never touches the `handed` table at all.
fn fold_slot(fold: &mut Fold, slots: &mut [Slot], idx: u32, interval: u64, restart: bool) {
    let Some(s) = slots.get_mut(idx as usize) else { return };
    s.state &= !st::DIRTY;
    let now = [s.bytes[0], s.bytes[1], s.packets[0], s.packets[1]];
    let before = match fold.handed.get(idx as usize) {
        Some(h) if s.state & st::HANDED != 0 => *h,
        _ => [0; 4],
    };
    let d = [
        now[0].wrapping_sub(before[0]),
        now[1].wrapping_sub(before[1]),
        now[2].wrapping_sub(before[2]),
        now[3].wrapping_sub(before[3]),
    ];
    if restart {
        s.state &= !st::HANDED;
    } else if d != [0; 4] {
        if fold.handed.len() <= idx as usize {
            fold.handed.resize(idx as usize + 1, [0; 4]);
        }
        if let Some(h) = fold.handed.get_mut(idx as usize) {
            *h = now;
            s.state |= st::HANDED;
        }
    }
    if d[2] == 0 && d[3] == 0 {
        return;
    }
    let init = s.initiator();
    fold.out.push(IntervalDelta {
        interval,
        initiator: s.key.endpoint(init).0,
        responder: s.key.endpoint(init.other()).0,
        bytes: [d[0], d[1]],
        packets: [d[2], d[3]],
    });
}

/// The flow table of one worker.
#[derive(Debug)]
pub struct FlowTable {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: SlotIndex,
    capacity: usize,
    // Timer wheel.
    heads: Vec<u32>,
    width: u64,
    /// Absolute number of the next bucket to expire.
    current: u64,
    idle: Duration,
    active: Duration,
    linger: Duration,
    next_flow: u64,
    worker_bits: u64,
    /// Per-interval hand-over of every flow's counts (none: off).
    fold: Option<Fold>,
    /// Counters.
    pub stats: TableStats,
}

impl FlowTable {
    /// An empty table; `worker` (0..=255) goes into the top byte of flow ids so they are unique
    /// across the sensor's workers.
    #[must_use]
    pub fn new(config: TableConfig, worker: u8) -> FlowTable {
        let capacity = config.capacity.clamp(1, MAX_CAPACITY);
        let active = Duration(config.active_timeout.as_nanos().clamp(1, MAX_ACTIVE_TIMEOUT.as_nanos()));
        let idle = Duration(config.idle_timeout.as_nanos().max(1));
        let linger = config.close_linger;
        let shortest = idle.as_nanos().min(active.as_nanos()).min(linger.as_nanos().max(1));
        let longest = idle.as_nanos().max(active.as_nanos()).max(linger.as_nanos());
        // Buckets of 1/16 of the shortest timeout (1 ms .. 1 s), enough to span the longest.
        let width = (shortest / 16).clamp(1_000_000, 1_000_000_000);
        let buckets = (longest / width + 2).next_power_of_two().max(16);
        FlowTable {
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            index: SlotIndex::with_capacity(capacity),
            capacity,
            heads: vec![NIL; usize::try_from(buckets).unwrap_or(1 << 16)],
            width,
            current: 0,
            idle,
            active,
            linger,
            next_flow: 0,
            worker_bits: u64::from(worker) << 56,
            fold: None,
            stats: TableStats::default(),
        }
    }

    /// Flows tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no flow is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.len() == 0
    }

    /// Bytes allocated for the table (slab, index and wheel), for memory reports.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.index.allocated_bytes()
            + self.heads.len() * 4
            + self.free.capacity() * 4
            + self.fold.as_ref().map_or(0, |f| f.handed.capacity() * 16 + f.dirty.capacity() * 4)
    }

    /// Hands over every flow's bytes and packets per interval of `width` event time (see
    /// [`IntervalDelta`]; taken with [`FlowTable::drain_intervals`]), or stops (`None`). Counts
    /// from before the call are not handed over; on a change of width what is pending goes
    /// out first, as the interval in progress's.
    pub fn fold_intervals(&mut self, width: Option<Duration>) {
        let width = width.map(|w| w.as_nanos().max(1));
        if self.fold.as_ref().map(|f| f.width) == width {
            return;
        }
        let mut out = Vec::new();
        if let Some(mut f) = self.fold.take() {
            Self::close_interval(&mut f, &mut self.slots);
            out = f.out;
        }
        let Some(width) = width else {
            // Off (width 0): only what is left to drain stays.
            self.fold = (!out.is_empty()).then(|| Fold {
                width: 0,
                current: None,
                handed: Vec::new(),
                dirty: Vec::new(),
                out,
            });
            return;
        };
        // Live flows start with everything handed over.
        let handed =
            self.slots.iter().map(|s| [s.bytes[0], s.bytes[1], s.packets[0], s.packets[1]]).collect();
        for s in &mut self.slots {
            s.state = (s.state & !st::DIRTY) | st::HANDED;
        }
        self.fold = Some(Fold { width, current: None, handed, dirty: Vec::new(), out });
    }

    /// Takes what the interval fold handed over so far, in order.
    pub fn drain_intervals(&mut self) -> impl Iterator<Item = IntervalDelta> + '_ {
        self.fold.as_mut().into_iter().flat_map(|f| f.out.drain(..))
    }

    /// Hands over every flow counted since its last hand-over, as the current interval's.
    fn close_interval(f: &mut Fold, slots: &mut [Slot]) {
        let Some((interval, ..)) = f.current else {
            f.dirty.clear();
            return;
        };
        let dirty = std::mem::take(&mut f.dirty);
        for &idx in &dirty {
            if slots.get(idx as usize).is_some_and(|s| s.state & (st::DIRTY | st::FREE) == st::DIRTY) {
                fold_slot(f, slots, idx, interval, false);
            }
        }
        f.dirty = dirty;
        f.dirty.clear();
    }

    /// Event time reached `now`: if it left the interval being filled, hand it over.
    pub fn fold_advance(&mut self, now: Nanos) {
        let Some(f) = self.fold.as_mut().filter(|f| f.width != 0) else { return };
        match f.current {
            Some((_, _, end)) if now.0 < end => {}
            Some(_) => {
                Self::close_interval(f, &mut self.slots);
                let i = f.interval_of(now);
                f.start_interval(i);
            }
            None => {
                let i = f.interval_of(now);
                f.start_interval(i);
            }
        }
    }

    /// Starts loading the index line of `hash` into cache (first stage of a batch).
    #[inline]
    pub fn prefetch_index(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Starts loading the slots whose tag matches `hash` (second stage of a batch, once the
    /// index line is likely cached). Returns the first of them: a hint for
    /// [`FlowTable::observe_hinted`], which checks it (slot in use, key equal) before trusting
    /// it, so the index need not be searched again.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) -> Option<u32> {
        let mut first = None;
        let _ = self.index.find(hash, |i| {
            if let Some(s) = self.slots.get(i as usize) {
                prefetch_all(s);
                first = first.or(Some(i));
            }
            false
        });
        first
    }

    fn bucket_of(&self, deadline: Nanos) -> u64 {
        let n = self.heads.len() as u64;
        (deadline.0 / self.width).max(self.current).min(self.current + n - 1)
    }

    fn link(&mut self, idx: u32, deadline: Nanos) {
        let b = self.bucket_of(deadline);
        let mask = self.heads.len() as u64 - 1;
        let bi = (b & mask) as usize;
        let Some(&head) = self.heads.get(bi) else { return };
        if let Some(s) = self.slots.get_mut(idx as usize) {
            s.prev = NIL;
            s.next = head;
            s.bucket = bi as u32;
        }
        if let Some(h) = self.slots.get_mut(head as usize) {
            h.prev = idx;
        }
        if let Some(h) = self.heads.get_mut(bi) {
            *h = idx;
        }
    }

    fn unlink(&mut self, idx: u32) {
        let Some(&s) = self.slots.get(idx as usize) else { return };
        if s.prev == NIL {
            if let Some(h) = self.heads.get_mut(s.bucket as usize) {
                if *h == idx {
                    *h = s.next;
                }
            }
        } else if let Some(p) = self.slots.get_mut(s.prev as usize) {
            p.next = s.next;
        }
        if let Some(n) = self.slots.get_mut(s.next as usize) {
            n.prev = s.prev;
        }
    }

    /// The time at which the flow in `s` must be looked at again.
    fn deadline(&self, s: &Slot) -> Nanos {
        let last = s.last_seen();
        if s.state & st::CLOSING != 0 {
            return last.saturating_add(self.linger);
        }
        let idle = last.saturating_add(self.idle);
        if s.is_empty_period() { idle } else { idle.min(s.base.saturating_add(self.active)) }
    }

    /// Exports (if its period has packets) and removes the flow in slot `idx`.
    fn end(&mut self, idx: u32, hash: u64, reason: EndReason, out: &mut impl FnMut(FlowRecord)) {
        self.fold_pending(idx);
        let Some(&s) = self.slots.get(idx as usize) else { return };
        if !s.is_empty_period() {
            out(s.record(reason));
            if let Some(c) = self.stats.records.get_mut(reason.index()) {
                *c += 1;
            }
        }
        self.unlink(idx);
        self.index.remove(hash, idx);
        if let Some(s) = self.slots.get_mut(idx as usize) {
            s.state |= st::FREE;
        }
        self.free.push(idx);
        self.stats.active = self.index.len() as u64;
    }

    /// Exports an interim record of the flow in `idx` and starts its next period.
    fn interim(&mut self, idx: u32, out: &mut impl FnMut(FlowRecord)) {
        self.fold_pending(idx);
        let Some(s) = self.slots.get_mut(idx as usize) else { return };
        if !s.is_empty_period() {
            out(s.record(EndReason::ActiveTimeout));
            self.stats.records[EndReason::ActiveTimeout.index()] += 1;
        }
        s.reset_period();
    }

    /// Before the counters of the flow in `idx` restart (its record goes out): hands over
    /// what it counted since its last hand-over, as the current interval's.
    #[inline]
    fn fold_pending(&mut self, idx: u32) {
        if let Some(f) = self.fold.as_mut().filter(|f| f.width != 0)
            && let Some((interval, ..)) = f.current
            && self.slots.get(idx as usize).is_some_and(|s| s.state & st::DIRTY != 0)
        {
            fold_slot(f, &mut self.slots, idx, interval, true);
        }
        // The counters restart: nothing of them was handed over.
        if let Some(s) = self.slots.get_mut(idx as usize) {
            s.state &= !st::HANDED;
        }
    }

    /// Counts one packet of the flow `key`, sent by endpoint `from`. Records that the packet
    /// completes (an idle flow it replaces, an interim record) go to `out` first.
    #[inline]
    pub fn observe(
        &mut self,
        key: &FlowKey,
        hash: u64,
        from: Side,
        p: &Observation,
        out: &mut impl FnMut(FlowRecord),
    ) {
        self.observe_hinted(key, hash, None, from, p, out);
    }

    /// [`FlowTable::observe`] with the slot [`FlowTable::prefetch_slot`] returned for `hash`:
    /// when that slot is in use and holds `key` it is the flow's (keys are unique in the
    /// table), and the index is not searched; otherwise (no hint, a tag collision, or the flow
    /// ended since) the index is.
    #[inline]
    pub fn observe_hinted(
        &mut self,
        key: &FlowKey,
        hash: u64,
        hint: Option<u32>,
        from: Side,
        p: &Observation,
        out: &mut impl FnMut(FlowRecord),
    ) {
        // The interval fold: a packet of a later interval closes the current one first; a
        // packet of an earlier one (out of order) is handed over on its own, below.
        let late = match self.fold.as_mut().filter(|f| f.width != 0) {
            Some(f) => match f.current {
                Some((_, start, end)) if p.ts.0 >= start && p.ts.0 < end => None,
                Some((current, start, _)) if p.ts.0 < start => Some((current, f.interval_of(p.ts))),
                _ => {
                    self.fold_advance(p.ts);
                    None
                }
            },
            None => None,
        };
        let slots = &self.slots;
        let hinted =
            hint.filter(|&i| slots.get(i as usize).is_some_and(|s| s.state & st::FREE == 0 && s.key == *key));
        let found = match hinted {
            Some(i) => Some(i),
            None => self.index.find(hash, |i| slots.get(i as usize).is_some_and(|s| s.key == *key)),
        };
        let idx = match found {
            Some(idx) => {
                let (last, empty, base, closed) = match self.slots.get(idx as usize) {
                    Some(s) => (s.last_seen(), s.is_empty_period(), s.base, s.close_reason()),
                    None => return,
                };
                let after = |d: Duration| p.ts >= last && p.ts.since(last) >= d;
                // A closed connection's linger is over, or a new SYN reuses its 5-tuple: the
                // old flow ended before this packet (exactly, whatever the wheel did).
                let reopened = key.proto == 6 && p.tcp_flags & (SYN | ACK) == SYN;
                if let Some(reason) = closed.filter(|_| after(self.linger) || reopened) {
                    self.end(idx, hash, reason, out);
                    self.create(key, hash, from, p, out)
                } else if after(self.idle) {
                    // Idle for the timeout: the old flow ended before this packet.
                    self.end(idx, hash, EndReason::IdleTimeout, out);
                    self.create(key, hash, from, p, out)
                } else {
                    if !empty && p.ts >= base && p.ts.since(base) >= self.active {
                        self.interim(idx, out);
                    }
                    idx
                }
            }
            None => self.create(key, hash, from, p, out),
        };
        match late {
            None => self.count(idx, from, p, out),
            Some((current, interval)) => {
                if let Some(f) = self.fold.as_mut() {
                    fold_slot(f, &mut self.slots, idx, current, false);
                }
                self.count(idx, from, p, out);
                if let Some(f) = self.fold.as_mut() {
                    fold_slot(f, &mut self.slots, idx, interval, false);
                }
            }
        }
    }

    /// Allocates a slot for a new flow (evicting if full) and links it into the wheel.
    fn create(
        &mut self,
        key: &FlowKey,
        hash: u64,
        from: Side,
        p: &Observation,
        out: &mut impl FnMut(FlowRecord),
    ) -> u32 {
        if self.index.len() >= self.capacity {
            self.evict_one(p.ts, out);
        }
        // Initiator: the sender, unless this is a SYN-ACK (then its receiver sent the SYN).
        let init = if key.proto == 6 && p.tcp_flags & (SYN | ACK) == SYN | ACK { from.other() } else { from };
        let slot = Slot {
            key: *key,
            flow_id: self.worker_bits | (self.next_flow & ((1 << 56) - 1)),
            base: p.ts,
            bytes: [0; 2],
            packets: [0; 2],
            first_us: [0; 2],
            last_us: [0; 2],
            prev: NIL,
            next: NIL,
            bucket: 0,
            sequence: 0,
            tcp_flags: [0; 2],
            min_ttl: [0; 2],
            max_ttl: [0; 2],
            dscp: p.tos >> 2,
            icmp_type: p.icmp_type,
            icmp_code: p.icmp_code,
            state: if init == Side::B { st::INIT_B } else { 0 },
        };
        self.next_flow += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(NIL)
            }
        };
        self.index.insert(hash, idx);
        let deadline = p.ts.saturating_add(self.idle.min(self.active));
        self.link(idx, deadline);
        self.stats.flows += 1;
        self.stats.active = self.index.len() as u64;
        self.stats.peak = self.stats.peak.max(self.stats.active);
        idx
    }

    /// Adds the packet to the flow's counters. Always inlined into
    /// [`FlowTable::observe_hinted`]: it is most of the per-packet work, and as a call it costs
    /// flows-only replay a few per cent.
    #[inline(always)]
    fn count(&mut self, idx: u32, from: Side, p: &Observation, out: &mut impl FnMut(FlowRecord)) {
        let Some(s) = self.slots.get_mut(idx as usize) else { return };
        let mut d = s.direction(from);
        let flags = p.tcp_flags;
        if s.key.proto == 6 && flags & (SYN | ACK) == SYN && d == 1 && s.tcp_flags[0] & SYN == 0 {
            // A pure SYN from the side we took for the responder: it is the initiator.
            s.state ^= st::INIT_B;
            s.bytes.swap(0, 1);
            s.packets.swap(0, 1);
            s.first_us.swap(0, 1);
            s.last_us.swap(0, 1);
            s.tcp_flags.swap(0, 1);
            s.min_ttl.swap(0, 1);
            s.max_ttl.swap(0, 1);
            if s.state & st::HANDED != 0
                && let Some(h) = self.fold.as_mut().and_then(|f| f.handed.get_mut(idx as usize))
            {
                *h = [h[1], h[0], h[3], h[2]];
            }
            d = 0;
        }
        let overflow = s.packets.get(d).is_some_and(|&n| n == u32::MAX)
            || s.bytes.get(d).is_some_and(|&b| b.checked_add(p.ip_len).is_none());
        if overflow {
            // A 32-bit counter would wrap: export what we have as an interim record.
            self.interim(idx, out);
        }
        let Some(s) = self.slots.get_mut(idx as usize) else { return };
        if s.is_empty_period() {
            s.base = p.ts;
        }
        let off = u32::try_from(p.ts.since(s.base).as_nanos() / 1_000).unwrap_or(u32::MAX);
        if s.packets[d] == 0 {
            s.first_us[d] = off;
            s.min_ttl[d] = p.ttl;
            s.max_ttl[d] = p.ttl;
        } else {
            s.min_ttl[d] = s.min_ttl[d].min(p.ttl);
            s.max_ttl[d] = s.max_ttl[d].max(p.ttl);
        }
        s.last_us[d] = s.last_us[d].max(off);
        s.packets[d] += 1;
        s.bytes[d] += p.ip_len;
        if s.state & st::DIRTY == 0
            && let Some(f) = self.fold.as_mut().filter(|f| f.width != 0)
        {
            s.state |= st::DIRTY;
            f.dirty.push(idx);
        }
        s.tcp_flags[d] |= flags;
        if s.key.proto == 6 && flags & (FIN | RST) != 0 && s.state & st::CLOSING == 0 {
            if flags & RST != 0 {
                s.state |= st::RST;
            }
            if flags & FIN != 0 {
                s.state |= if d == 0 { st::FIN_FWD } else { st::FIN_REV };
            }
            if s.state & st::RST != 0 || s.state & (st::FIN_FWD | st::FIN_REV) == st::FIN_FWD | st::FIN_REV {
                s.state |= st::CLOSING;
                let deadline = s.last_seen().saturating_add(self.linger);
                self.unlink(idx);
                self.link(idx, deadline);
            }
        }
    }

    /// Handles a flow whose wheel bucket came due at `now`: expire it, emit an interim record,
    /// or move it to the bucket of its real deadline.
    fn visit(&mut self, idx: u32, now: Nanos, out: &mut impl FnMut(FlowRecord)) {
        let Some(&s) = self.slots.get(idx as usize) else { return };
        let deadline = self.deadline(&s);
        if deadline > now {
            self.link(idx, deadline);
            return;
        }
        let hash = s.key.hash64();
        if let Some(reason) = s.close_reason() {
            self.end(idx, hash, reason, out);
        } else if s.last_seen().saturating_add(self.idle) <= now {
            self.end(idx, hash, EndReason::IdleTimeout, out);
        } else {
            self.interim(idx, out);
            let next = self.slots.get(idx as usize).map_or(now, |s| self.deadline(s));
            self.link(idx, next);
        }
    }

    /// Advances the wheel to event time `now`, exporting flows that timed out.
    pub fn advance(&mut self, now: Nanos, out: &mut impl FnMut(FlowRecord)) {
        let n = self.heads.len() as u64;
        let due = now.0 / self.width;
        if due.saturating_sub(self.current) > n {
            // Every flow's bucket number is below `due`: one pass over all buckets covers them.
            self.current = due - n;
        }
        while self.current < due {
            let bi = (self.current & (n - 1)) as usize;
            self.current += 1;
            let mut idx = match self.heads.get_mut(bi) {
                Some(h) => std::mem::replace(h, NIL),
                None => NIL,
            };
            // Software-pipelined walk: while flow k is detached and its next slot and index
            // line start loading, flow k-1 (whose lines were requested one step earlier) is
            // handled. The misses of consecutive flows overlap instead of queueing.
            let mut pending = NIL;
            while idx != NIL {
                let Some(s) = self.slots.get_mut(idx as usize) else { break };
                let next = s.next;
                // Detached from the list already (the head was taken): clear the links, so
                // nothing follows them into a list the flow no longer belongs to.
                s.prev = NIL;
                s.next = NIL;
                s.bucket = u32::MAX;
                let hash = s.key.hash64();
                if let Some(n) = self.slots.get(next as usize) {
                    prefetch_all(n);
                }
                self.index.prefetch(hash);
                if pending != NIL {
                    self.visit(pending, now, out);
                }
                pending = idx;
                idx = next;
            }
            if pending != NIL {
                self.visit(pending, now, out);
            }
        }
    }

    /// Makes room for one flow at time `now`. Flows already due end first, with their own
    /// reasons; if the table is still full, a flow whose TCP close was seen ends with its close
    /// reason, else the flow seen longest ago among those scheduled soonest (up to
    /// [`EVICTION_SCAN`] looked at, in the earliest wheel buckets) is exported with
    /// [`EndReason::Evicted`].
    fn evict_one(&mut self, now: Nanos, out: &mut impl FnMut(FlowRecord)) {
        self.advance(now, out);
        if self.index.len() < self.capacity {
            return;
        }
        let n = self.heads.len() as u64;
        let mut oldest: Option<(u32, Nanos)> = None;
        let mut looked = 0;
        'buckets: for i in 0..n {
            let mut idx = self.heads.get(((self.current + i) & (n - 1)) as usize).copied().unwrap_or(NIL);
            while idx != NIL {
                let Some(&s) = self.slots.get(idx as usize) else { break };
                if let Some(reason) = s.close_reason() {
                    self.end(idx, s.key.hash64(), reason, out);
                    return;
                }
                let last = s.last_seen();
                if oldest.is_none_or(|(_, t)| last < t) {
                    oldest = Some((idx, last));
                }
                looked += 1;
                if looked >= EVICTION_SCAN {
                    break 'buckets;
                }
                idx = s.next;
            }
        }
        if let Some((idx, _)) = oldest {
            let hash = self.slots.get(idx as usize).map_or(0, |s| s.key.hash64());
            self.end(idx, hash, EndReason::Evicted, out);
        }
    }

    /// Exports every tracked flow and empties the table: with [`EndReason::EndOfInput`], or
    /// with its close reason when its TCP close (both FINs, or a RST) was already seen and
    /// only the linger remained. Flows come out in slab order (deterministic for a given
    /// input).
    pub fn flush(&mut self, out: &mut impl FnMut(FlowRecord)) {
        let mut live: Vec<u32> = self.index.slots().collect();
        live.sort_unstable();
        for idx in live {
            let Some(s) = self.slots.get(idx as usize) else { continue };
            let reason = s.close_reason().unwrap_or(EndReason::EndOfInput);
            let hash = s.key.hash64();
            self.end(idx, hash, reason, out);
        }
    }
}
