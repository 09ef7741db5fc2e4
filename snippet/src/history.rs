//! [`PacketHistory`]: one worker's recent packets per key, and the snippets it is collecting.
//!
//! # Layout
//!
//! Everything is allocated once, in [`PacketHistory::new`], from `memory_bytes`:
//!
//! - an arena of packet slots: `snaplen` bytes of data each, plus a 24-byte header (time,
//!   lengths, link type, the next slot of the same key);
//! - a slab of keys: each key's slots form a FIFO list (oldest first), and the keys form a
//!   list in order of last activity (most recent first);
//! - an index from address to key (`hashbrown::HashTable` of `u32`, twice the key capacity so
//!   its tombstones are always cleaned up in place and it never grows).
//!
//! Recording a packet is one index lookup, a move of the key to the front of the activity
//! list, and a copy of at most `snaplen` bytes into a slot: the key's oldest slot when the
//! key is at `history_packets` or its oldest packet is older than `history_age`, else a free
//! slot, else one freed by forgetting the least recently active key. No allocation.
//!
//! Measured (`record_cost_per_packet`, an ignored test, release, default configuration, on
//! a shared 2-core VM): 13–19 ns per packet for one key; 50–110 ns for 1,000 keys, where
//! keeping 64 packets per key means every copy lands in a slot last written some 64,000
//! packets ago (16 MiB of slots, out of cache), cut to 30–53 ns by
//! [`PacketHistory::record_batch`], which prefetches a group's slots first; 150–220 ns when
//! every packet is a new key and forgets the least recently active one (random-source
//! floods), where the misses depend on each other and batching does not help.
//!
//! # Guarantees
//!
//! - Memory: [`PacketHistory::memory_bytes`] ≤ `memory_bytes` whatever the traffic. Open
//!   snippets are extra and bounded by `max_open × max_snippet_packets` packets.
//! - A key with an open snippet is never forgotten while the snippet is open, so every packet
//!   of the key that arrives inside the window is collected (up to `max_snippet_packets`).
//!   If only such keys are left to evict from, the history (not the snippet) of one of them
//!   is dropped.
//! - Time is the packets' capture time and the clock ticks the caller passes; nothing here
//!   reads the wall clock, so a replay collects the same snippets.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use outpost_decode::{Duration, IpAddress, LinkType, Nanos, prefetch};
use serde::Serialize;

use crate::config::SnippetConfig;
use crate::snippet::Snippet;

const NIL: u32 = u32::MAX;

/// Alert ids remembered to ignore a repeated [`PacketHistory::on_alert`].
const DEDUP_IDS: usize = 1024;

/// A packet slot's header; its data sits at `index × snaplen` in the arena.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ts: Nanos,
    wire_len: u32,
    /// Next (newer) slot of the same key, or of the free list.
    next: u32,
    cap_len: u16,
    link: LinkType,
}

/// A tracked key.
#[derive(Debug, Clone, Copy)]
struct KeyEntry {
    addr: IpAddress,
    /// Oldest and newest slot (`NIL` when the key holds none).
    head: u32,
    tail: u32,
    count: u32,
    /// Activity list (towards the most / least recently active key); `next` also links the
    /// free list of entries.
    prev: u32,
    next: u32,
    last_ts: Nanos,
    /// Open snippets of this key; a key with open snippets is never removed.
    follows: u32,
}

const EMPTY_KEY: KeyEntry = KeyEntry {
    addr: IpAddress::UNSPECIFIED,
    head: NIL,
    tail: NIL,
    count: 0,
    prev: NIL,
    next: NIL,
    last_ts: Nanos::ZERO,
    follows: 0,
};

/// One packet for [`PacketHistory::record_batch`]; the fields are those of
/// [`PacketHistory::record`].
#[derive(Debug, Clone, Copy)]
pub struct HistoryPacket<'a> {
    /// The key the packet is recorded under (normally its source address).
    pub key: IpAddress,
    /// Link type of `data`.
    pub link: LinkType,
    /// Capture time.
    pub ts: Nanos,
    /// Length on the wire, in bytes.
    pub wire_len: u32,
    /// The frame as captured (only the first `snaplen` bytes are kept).
    pub data: &'a [u8],
}

/// The capture-time window of a snippet around its alert's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnippetWindow {
    /// Capture time before the alert's time.
    pub before: Duration,
    /// Capture time after the alert's time.
    pub after: Duration,
}

/// What [`PacketHistory::on_alert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureOutcome {
    /// The snippet collects the key's packets until event time passes the window's end.
    Following,
    /// The window had already ended (the request came late): the snippet was emitted at once
    /// with the packets the history held.
    Complete,
    /// This alert id was captured before (among the last 1024 ids): nothing was done.
    Duplicate,
}

/// Counters of one worker's history and snippet capture; sum workers with
/// [`HistoryStats::merge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryStats {
    /// Packets stored in the history.
    pub packets_recorded: u64,
    /// Packets that could not be stored (every slot held by keys with open snippets).
    pub packets_not_recorded: u64,
    /// Keys tracked now (a gauge).
    pub keys_tracked: u64,
    /// Keys forgotten to make room (memory full), least recently active first.
    pub keys_evicted: u64,
    /// Keys forgotten because their newest packet is older than `history_age`.
    pub keys_expired: u64,
    /// Snippets started (one per alert id).
    pub snippets_captured: u64,
    /// Alerts ignored because their id was already captured.
    pub snippets_duplicate: u64,
    /// Snippets finished and handed on (complete, cut short, or at finish).
    pub snippets_finished: u64,
    /// Snippets closed before their window ended because `max_open` were open.
    pub snippets_cut_short: u64,
    /// Packets of snippet windows left out (`max_snippet_packets`, other link type).
    pub snippet_packets_omitted: u64,
    /// Snippets open now (a gauge).
    pub snippets_open: u64,
    /// Bytes allocated for the history (a gauge, ≤ `memory_bytes`).
    pub memory_bytes: u64,
}

impl HistoryStats {
    /// Adds another worker's counters (gauges add up too).
    pub fn merge(&mut self, o: &HistoryStats) {
        self.packets_recorded += o.packets_recorded;
        self.packets_not_recorded += o.packets_not_recorded;
        self.keys_tracked += o.keys_tracked;
        self.keys_evicted += o.keys_evicted;
        self.keys_expired += o.keys_expired;
        self.snippets_captured += o.snippets_captured;
        self.snippets_duplicate += o.snippets_duplicate;
        self.snippets_finished += o.snippets_finished;
        self.snippets_cut_short += o.snippets_cut_short;
        self.snippet_packets_omitted += o.snippet_packets_omitted;
        self.snippets_open += o.snippets_open;
        self.memory_bytes += o.memory_bytes;
    }
}

#[derive(Debug)]
struct OpenSnippet {
    key: u32,
    snippet: Snippet,
}

/// How many slots and keys fit in `memory_bytes`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    slots: usize,
    keys: usize,
}

/// Upper bound of a `HashTable<T>` allocated for `capacity` items: hashbrown rounds
/// `capacity × 8/7` up to a power of two buckets (< 2 × 8/7 × capacity, ≥ 16 here), each an
/// item and a control byte, plus one group of control bytes.
const fn table_bytes(capacity: usize, item: usize) -> usize {
    (capacity * 16 / 7 + 16) * (item + 1) + 16
}

/// What does not grow with the slot count: dedup memory, the open-snippet table, the
/// index's constant part.
const fn fixed_bytes(max_open: usize) -> usize {
    DEDUP_IDS * size_of::<u128>()
        + table_bytes(2 * DEDUP_IDS, size_of::<u128>())
        + max_open * size_of::<OpenSnippet>()
        + table_bytes(0, size_of::<u32>())
}

/// Per key: the entry and its share of the index, which has twice the key capacity, so
/// fewer than `2 × 16/7` buckets of `u32` and a control byte per key.
const PER_KEY: usize = size_of::<KeyEntry>() + (2 * 16 * (size_of::<u32>() + 1)).div_ceil(7);

fn per_slot(config: &SnippetConfig) -> usize {
    config.snaplen as usize + size_of::<Slot>()
}

/// The least `memory_bytes` accepted: room for 16 packet slots.
pub(crate) fn min_memory_bytes(config: &SnippetConfig) -> u64 {
    let max_open = config.max_open as usize;
    (fixed_bytes(max_open) + max_open * PER_KEY + 16 * (per_slot(config) + PER_KEY)) as u64
}

fn plan(config: &SnippetConfig) -> Plan {
    let max_open = config.max_open.max(1) as usize;
    let budget = usize::try_from(config.memory_bytes).unwrap_or(usize::MAX);
    // Every key without an open snippet holds at least one slot, and at most `max_open` keys
    // have one: `slots + max_open` keys can exist.
    let avail = budget.saturating_sub(fixed_bytes(max_open) + max_open * PER_KEY);
    let slots = (avail / (per_slot(config) + PER_KEY)).clamp(1, NIL as usize - max_open - 1);
    Plan { slots, keys: slots + max_open }
}

/// One worker's recent packets per key (address) and the snippets it is collecting. Owned by
/// the worker thread; see the module documentation for layout and guarantees.
///
/// Per packet call [`record`](PacketHistory::record); on an alert
/// [`on_alert`](PacketHistory::on_alert); at each clock tick
/// [`on_clock`](PacketHistory::on_clock), which hands finished snippets on; at the end
/// [`finish`](PacketHistory::finish).
#[derive(Debug)]
pub struct PacketHistory {
    per_key: u32,
    max_age: Duration,
    snaplen: usize,
    window: SnippetWindow,
    max_open: usize,
    max_snippet_packets: u32,

    data: Box<[u8]>,
    slots: Box<[Slot]>,
    free_slot: u32,
    keys: Box<[KeyEntry]>,
    free_key: u32,
    /// Most and least recently active key.
    mru: u32,
    lru: u32,
    index: HashTable<u32>,
    hasher: RandomState,

    open: Vec<OpenSnippet>,
    dedup: HashTable<u128>,
    dedup_ring: Box<[u128]>,
    dedup_at: usize,
    dedup_len: usize,

    now: Nanos,
    stats: HistoryStats,
}

impl PacketHistory {
    /// A history sized by `config` (`history_packets`, `history_age`, `snaplen`,
    /// `memory_bytes`, `max_open`, `max_snippet_packets`, and `before` / `after` for
    /// [`on_alert`](PacketHistory::on_alert)). Allocates all its memory now; call
    /// [`SnippetConfig::validate`] first (out-of-range values are clamped here).
    #[must_use]
    pub fn new(config: &SnippetConfig) -> PacketHistory {
        let plan = plan(config);
        let snaplen = config.snaplen.clamp(16, u32::from(u16::MAX)) as usize;
        let slots: Box<[Slot]> = (0..plan.slots)
            .map(|i| Slot {
                ts: Nanos::ZERO,
                wire_len: 0,
                next: if i + 1 < plan.slots { (i + 1) as u32 } else { NIL },
                cap_len: 0,
                link: LinkType::Ethernet,
            })
            .collect();
        let keys: Box<[KeyEntry]> = (0..plan.keys)
            .map(|i| KeyEntry { next: if i + 1 < plan.keys { (i + 1) as u32 } else { NIL }, ..EMPTY_KEY })
            .collect();
        let mut h = PacketHistory {
            per_key: if config.history_packets == 0 { u32::MAX } else { config.history_packets },
            max_age: config.history_age.0,
            snaplen,
            window: SnippetWindow { before: config.before.0, after: config.after.0 },
            max_open: config.max_open.max(1) as usize,
            max_snippet_packets: config.max_snippet_packets.max(1),
            data: vec![0u8; plan.slots * snaplen].into_boxed_slice(),
            slots,
            free_slot: 0,
            keys,
            free_key: 0,
            mru: NIL,
            lru: NIL,
            index: HashTable::with_capacity(2 * plan.keys),
            hasher: RandomState::default(),
            open: Vec::with_capacity(config.max_open.max(1) as usize),
            dedup: HashTable::with_capacity(2 * DEDUP_IDS),
            dedup_ring: vec![0u128; DEDUP_IDS].into_boxed_slice(),
            dedup_at: 0,
            dedup_len: 0,
            now: Nanos::ZERO,
            stats: HistoryStats::default(),
        };
        h.stats.memory_bytes = h.memory_bytes();
        h
    }

    /// Bytes allocated for the history: slots, keys, index, dedup memory, open-snippet
    /// table (not the open snippets' packets). Constant after [`PacketHistory::new`].
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        (self.data.len()
            + self.slots.len() * size_of::<Slot>()
            + self.keys.len() * size_of::<KeyEntry>()
            + self.index.allocation_size()
            + self.dedup.allocation_size()
            + self.dedup_ring.len() * size_of::<u128>()
            + self.open.capacity() * size_of::<OpenSnippet>()) as u64
    }

    /// Packet slots in the arena (how many packets the history can hold in all).
    #[must_use]
    pub fn slot_capacity(&self) -> usize {
        self.slots.len()
    }

    /// The window [`on_alert`](PacketHistory::on_alert) uses (`before`, `after`).
    #[must_use]
    pub fn default_window(&self) -> SnippetWindow {
        self.window
    }

    /// Counters and gauges.
    #[must_use]
    pub fn stats(&self) -> HistoryStats {
        HistoryStats { snippets_open: self.open.len() as u64, ..self.stats }
    }

    /// True when `key` has packets (or an open snippet) in the history.
    #[must_use]
    pub fn is_tracked(&self, key: IpAddress) -> bool {
        self.find(key, self.hasher.hash_one(key)).is_some()
    }

    /// Packets of `key` the history holds now.
    #[must_use]
    pub fn packets_of(&self, key: IpAddress) -> u32 {
        self.find(key, self.hasher.hash_one(key)).map_or(0, |k| self.keys[k as usize].count)
    }

    /// Records one packet of `key` (normally its source address; the worker owns the
    /// packets of the sources sharded to it): its capture time `ts`, its length on the wire
    /// `wire_len`, and the first `snaplen` bytes of `data` (the frame as captured, of link
    /// type `link`). Also appends it to the key's open snippets whose window holds `ts`.
    ///
    /// Cost: a hash lookup, list updates and a copy of at most `snaplen` bytes; never
    /// allocates. [`record_batch`](PacketHistory::record_batch) is faster for many keys.
    #[inline]
    pub fn record(&mut self, key: IpAddress, link: LinkType, ts: Nanos, wire_len: u32, data: &[u8]) {
        let hash = self.hasher.hash_one(key);
        let k = self.find(key, hash).unwrap_or(NIL);
        self.record_hinted(HistoryPacket { key, link, ts, wire_len, data }, hash, k);
    }

    /// Records the packets of `batch` in order, as [`record`](PacketHistory::record) would,
    /// but looks up every key of a group of 32 and prefetches the slots they will write
    /// before copying any packet, so the cache misses of the group overlap. Same outcome as
    /// recording them one by one.
    pub fn record_batch(&mut self, batch: &[HistoryPacket<'_>]) {
        const GROUP: usize = 32;
        let mut hints = [(0u64, NIL); GROUP];
        for group in batch.chunks(GROUP) {
            for (p, hint) in group.iter().zip(hints.iter_mut()) {
                let hash = self.hasher.hash_one(p.key);
                let k = self.find(p.key, hash).unwrap_or(NIL);
                if k != NIL {
                    self.prefetch_next_slot(k, p.data.len());
                }
                *hint = (hash, k);
            }
            for (p, &(hash, k)) in group.iter().zip(hints.iter()) {
                // An earlier packet of the group may have evicted the key (its entry is then
                // free or another key's): trust the hint only if it still holds this key.
                let k = if k != NIL && p.key != IpAddress::UNSPECIFIED && self.keys[k as usize].addr == p.key
                {
                    k
                } else {
                    self.find(p.key, hash).unwrap_or(NIL)
                };
                self.record_hinted(*p, hash, k);
            }
        }
    }

    /// Prefetches the slot the next packet of key `k` will most likely be written to.
    #[inline]
    fn prefetch_next_slot(&self, k: u32, len: usize) {
        let e = &self.keys[k as usize];
        let s = if e.count >= self.per_key && e.head != NIL { e.head } else { self.free_slot };
        if s == NIL {
            return;
        }
        prefetch(&self.slots[s as usize]);
        let at = s as usize * self.snaplen;
        let end = at + len.min(self.snaplen);
        let mut line = at;
        while line < end {
            if let Some(b) = self.data.get(line) {
                prefetch(b);
            }
            line += 64;
        }
    }

    /// [`record`](PacketHistory::record) with the key's hash and entry (`NIL`: not tracked)
    /// already looked up.
    #[inline]
    fn record_hinted(&mut self, p: HistoryPacket<'_>, hash: u64, k: u32) {
        let HistoryPacket { key, link, ts, wire_len, data } = p;
        self.now = self.now.max(ts);
        let k = if k == NIL {
            match self.new_key(key, hash) {
                Some(k) => k,
                None => {
                    self.stats.packets_not_recorded += 1;
                    return;
                }
            }
        } else {
            self.touch(k);
            k
        };
        let data = data.get(..self.snaplen).unwrap_or(data);
        match self.take_slot(k, ts) {
            Some(s) => {
                let slot = &mut self.slots[s as usize];
                slot.ts = ts;
                slot.wire_len = wire_len;
                slot.cap_len = data.len() as u16;
                slot.link = link;
                slot.next = NIL;
                let at = s as usize * self.snaplen;
                if let Some(dst) = self.data.get_mut(at..at + data.len()) {
                    dst.copy_from_slice(data);
                }
                self.push_tail(k, s);
                self.stats.packets_recorded += 1;
            }
            None => self.stats.packets_not_recorded += 1,
        }
        let entry = &mut self.keys[k as usize];
        entry.last_ts = entry.last_ts.max(ts);
        if entry.follows > 0 {
            let max = self.max_snippet_packets;
            for o in self.open.iter_mut().filter(|o| o.key == k) {
                let (start, end) = o.snippet.window();
                if ts >= start && ts <= end {
                    o.snippet.push(link, ts, wire_len, data, max);
                }
            }
        } else if entry.count == 0 {
            // Nothing stored and nothing open: do not keep an empty key.
            self.remove_key(k);
        }
    }

    /// Starts the snippet of alert `alert_id` about `key` at capture time `ts`, with the
    /// configured window (`before`, `after`). See [`on_alert_in`](PacketHistory::on_alert_in).
    pub fn on_alert(
        &mut self,
        alert_id: u128,
        key: IpAddress,
        ts: Nanos,
        note: &str,
        emit: &mut impl FnMut(Snippet),
    ) -> CaptureOutcome {
        self.on_alert_in(alert_id, key, ts, self.window, note, emit)
    }

    /// Starts the snippet of alert `alert_id` about `key` at capture time `ts`: takes the
    /// key's packets with times in `[ts - before, ts + after]` from the history now, and
    /// collects the key's packets that arrive with times in that window until event time
    /// passes `ts + after` ([`on_clock`](PacketHistory::on_clock)). `note` (e.g. the rule's
    /// name) goes into the file's comment.
    ///
    /// Call it once per alert that passed the alert policy (deduplicated alerts should not
    /// call it: their snippet would repeat the first one's). A repeated id (among the last
    /// 1024) is ignored anyway. It may be called late (after later packets were recorded):
    /// those already in the history are taken, and if the window has ended the snippet is
    /// emitted at once. With `max_open` snippets open, the one ending first is closed early
    /// and emitted (counted as cut short). Allocates the snippet's buffers (per alert, never
    /// per packet).
    pub fn on_alert_in(
        &mut self,
        alert_id: u128,
        key: IpAddress,
        ts: Nanos,
        window: SnippetWindow,
        note: &str,
        emit: &mut impl FnMut(Snippet),
    ) -> CaptureOutcome {
        if !self.remember(alert_id) {
            self.stats.snippets_duplicate += 1;
            return CaptureOutcome::Duplicate;
        }
        self.stats.snippets_captured += 1;
        let (start, end) = (ts.saturating_sub(window.before), ts.saturating_add(window.after));
        let mut snippet = Snippet::new(alert_id, key, ts, (start, end), self.snaplen as u32, note);
        let hash = self.hasher.hash_one(key);
        if let Some(k) = self.find(key, hash) {
            let entry = self.keys[k as usize];
            let n = (entry.count as usize).min(self.max_snippet_packets as usize);
            snippet.records.reserve(n);
            snippet.data.reserve(n * self.snaplen);
            let mut s = entry.head;
            while s != NIL {
                let slot = self.slots[s as usize];
                if slot.ts >= start && slot.ts <= end {
                    let at = s as usize * self.snaplen;
                    let bytes = self.data.get(at..at + slot.cap_len as usize).unwrap_or_default();
                    snippet.push(slot.link, slot.ts, slot.wire_len, bytes, self.max_snippet_packets);
                }
                s = slot.next;
            }
        }
        if end < self.now {
            self.finish_snippet(snippet, emit);
            return CaptureOutcome::Complete;
        }
        if self.open.len() >= self.max_open {
            let first = self.open.iter().enumerate().min_by_key(|(_, o)| o.snippet.end).map(|(i, _)| i);
            if let Some(i) = first {
                self.stats.snippets_cut_short += 1;
                self.close(i, true, emit);
            }
        }
        // Found again: closing a snippet above may have removed the key.
        let k = match self.find(key, hash) {
            Some(k) => Some(k),
            None => self.new_key(key, hash),
        };
        match k {
            Some(k) => {
                self.keys[k as usize].follows += 1;
                self.open.push(OpenSnippet { key: k, snippet });
                CaptureOutcome::Following
            }
            None => {
                // Unreachable with the key capacity reserved for open snippets; emit what
                // there is rather than lose it.
                self.finish_snippet(snippet, emit);
                CaptureOutcome::Complete
            }
        }
    }

    /// Advances event time to `now` (a clock tick: the latest capture time the worker has
    /// seen): emits the snippets whose window ended before `now`, and forgets keys whose
    /// newest packet is older than `history_age`.
    pub fn on_clock(&mut self, now: Nanos, emit: &mut impl FnMut(Snippet)) {
        self.now = self.now.max(now);
        let now = self.now;
        let mut i = 0;
        while i < self.open.len() {
            if self.open[i].snippet.end < now {
                self.close(i, false, emit);
            } else {
                i += 1;
            }
        }
        if self.max_age == Duration::ZERO {
            return;
        }
        // The activity list is in order of last packet, so expired keys sit at its end. Keys
        // with open snippets are moved to the front (at most `max_open` of them).
        let mut skips = self.max_open + 1;
        while self.lru != NIL {
            let k = self.lru;
            let e = self.keys[k as usize];
            if e.last_ts.saturating_add(self.max_age) >= now {
                break;
            }
            if e.follows > 0 {
                if skips == 0 {
                    break;
                }
                skips -= 1;
                self.lru_unlink(k);
                self.lru_push_front(k);
                continue;
            }
            self.remove_key(k);
            self.stats.keys_expired += 1;
        }
    }

    /// Emits every open snippet (the input ended).
    pub fn finish(&mut self, emit: &mut impl FnMut(Snippet)) {
        while !self.open.is_empty() {
            self.close(self.open.len() - 1, false, emit);
        }
    }

    // ---- internals ----

    fn finish_snippet(&mut self, snippet: Snippet, emit: &mut impl FnMut(Snippet)) {
        self.stats.snippets_finished += 1;
        self.stats.snippet_packets_omitted += u64::from(snippet.omitted);
        emit(snippet);
    }

    fn close(&mut self, i: usize, cut_short: bool, emit: &mut impl FnMut(Snippet)) {
        let mut o = self.open.swap_remove(i);
        o.snippet.cut_short = cut_short;
        let e = &mut self.keys[o.key as usize];
        e.follows = e.follows.saturating_sub(1);
        if e.follows == 0 && e.count == 0 {
            self.remove_key(o.key);
        }
        self.finish_snippet(o.snippet, emit);
    }

    /// Remembers `id`; false if it was remembered already.
    fn remember(&mut self, id: u128) -> bool {
        let hash = self.hasher.hash_one(id);
        if self.dedup.find(hash, |&x| x == id).is_some() {
            return false;
        }
        if self.dedup_len == self.dedup_ring.len() {
            let old = self.dedup_ring[self.dedup_at];
            if let Ok(e) = self.dedup.find_entry(self.hasher.hash_one(old), |&x| x == old) {
                e.remove();
            }
        } else {
            self.dedup_len += 1;
        }
        self.dedup_ring[self.dedup_at] = id;
        self.dedup_at = (self.dedup_at + 1) % self.dedup_ring.len();
        let hasher = &self.hasher;
        self.dedup.insert_unique(hash, id, |&x| hasher.hash_one(x));
        true
    }

    #[inline]
    fn find(&self, key: IpAddress, hash: u64) -> Option<u32> {
        let keys = &self.keys;
        self.index.find(hash, |&k| keys[k as usize].addr == key).copied()
    }

    /// A new key at the front of the activity list, holding no slot; evicts the least
    /// recently active key when every entry is taken.
    fn new_key(&mut self, key: IpAddress, hash: u64) -> Option<u32> {
        if self.free_key == NIL {
            self.evict_one(NIL);
        }
        let k = self.free_key;
        if k == NIL {
            return None;
        }
        self.free_key = self.keys[k as usize].next;
        self.keys[k as usize] = KeyEntry { addr: key, ..EMPTY_KEY };
        let keys = &self.keys;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, k, |&j| hasher.hash_one(keys[j as usize].addr));
        self.lru_push_front(k);
        self.stats.keys_tracked += 1;
        Some(k)
    }

    /// Forgets key `k`: frees its slots and its entry.
    fn remove_key(&mut self, k: u32) {
        self.free_slots(k);
        let addr = self.keys[k as usize].addr;
        let hash = self.hasher.hash_one(addr);
        if let Ok(e) = self.index.find_entry(hash, |&j| j == k) {
            e.remove();
        }
        self.lru_unlink(k);
        self.keys[k as usize] = KeyEntry { next: self.free_key, ..EMPTY_KEY };
        self.free_key = k;
        self.stats.keys_tracked -= 1;
    }

    fn free_slots(&mut self, k: u32) {
        let e = &mut self.keys[k as usize];
        if e.head != NIL {
            self.slots[e.tail as usize].next = self.free_slot;
            self.free_slot = e.head;
        }
        e.head = NIL;
        e.tail = NIL;
        e.count = 0;
    }

    /// Frees slots by forgetting the least recently active key other than `protect`. Keys
    /// with open snippets are passed over (and moved to the front); if only they are left,
    /// the oldest one's history is dropped but the key kept.
    fn evict_one(&mut self, protect: u32) {
        let mut fallback = NIL;
        for _ in 0..=self.max_open + 1 {
            let k = self.lru;
            if k == NIL {
                break;
            }
            let e = self.keys[k as usize];
            if k != protect && e.follows == 0 {
                self.remove_key(k);
                self.stats.keys_evicted += 1;
                return;
            }
            if k != protect && e.count > 0 && fallback == NIL {
                fallback = k;
            }
            if self.mru == k {
                break;
            }
            self.lru_unlink(k);
            self.lru_push_front(k);
        }
        if fallback != NIL {
            self.free_slots(fallback);
            self.stats.keys_evicted += 1;
        }
    }

    /// A slot for the next packet of key `k` at `ts`, not yet linked to the key.
    #[inline]
    fn take_slot(&mut self, k: u32, ts: Nanos) -> Option<u32> {
        if self.max_age != Duration::ZERO {
            let oldest_kept = ts.saturating_sub(self.max_age);
            loop {
                let e = self.keys[k as usize];
                if e.head == NIL || self.slots[e.head as usize].ts >= oldest_kept {
                    break;
                }
                let s = self.pop_head(k);
                self.slots[s as usize].next = self.free_slot;
                self.free_slot = s;
            }
        }
        let e = self.keys[k as usize];
        if e.count >= self.per_key && e.head != NIL {
            return Some(self.pop_head(k));
        }
        if self.free_slot == NIL {
            self.evict_one(k);
        }
        if self.free_slot != NIL {
            let s = self.free_slot;
            self.free_slot = self.slots[s as usize].next;
            return Some(s);
        }
        (self.keys[k as usize].head != NIL).then(|| self.pop_head(k))
    }

    /// Unlinks and returns key `k`'s oldest slot (which must exist).
    #[inline]
    fn pop_head(&mut self, k: u32) -> u32 {
        let e = &mut self.keys[k as usize];
        let s = e.head;
        e.head = self.slots[s as usize].next;
        if e.head == NIL {
            e.tail = NIL;
        }
        e.count -= 1;
        s
    }

    #[inline]
    fn push_tail(&mut self, k: u32, s: u32) {
        let e = &mut self.keys[k as usize];
        if e.tail == NIL {
            e.head = s;
        } else {
            self.slots[e.tail as usize].next = s;
        }
        e.tail = s;
        e.count += 1;
    }

    #[inline]
    fn touch(&mut self, k: u32) {
        if self.mru != k {
            self.lru_unlink(k);
            self.lru_push_front(k);
        }
    }

    fn lru_unlink(&mut self, k: u32) {
        let KeyEntry { prev, next, .. } = self.keys[k as usize];
        if prev == NIL {
            self.mru = next;
        } else {
            self.keys[prev as usize].next = next;
        }
        if next == NIL {
            self.lru = prev;
        } else {
            self.keys[next as usize].prev = prev;
        }
        let e = &mut self.keys[k as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    fn lru_push_front(&mut self, k: u32) {
        let old = self.mru;
        {
            let e = &mut self.keys[k as usize];
            e.prev = NIL;
            e.next = old;
        }
        if old == NIL {
            self.lru = k;
        } else {
            self.keys[old as usize].prev = k;
        }
        self.mru = k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SnippetDuration;

    const T0: u64 = 1_767_225_600;

    fn at(secs: u64, ms: u64) -> Nanos {
        Nanos::from_secs(T0 + secs).saturating_add(Duration::from_millis(ms))
    }

    fn ip(n: u32) -> IpAddress {
        IpAddress::from_v4(n.to_be_bytes())
    }

    fn config() -> SnippetConfig {
        SnippetConfig { memory_bytes: 4 << 20, ..SnippetConfig::default() }
    }

    /// A frame whose bytes say which key and packet it is.
    fn frame(key: u32, n: u64) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[..4].copy_from_slice(&key.to_be_bytes());
        f[4..12].copy_from_slice(&n.to_be_bytes());
        f
    }

    fn times(s: &Snippet) -> Vec<Nanos> {
        s.packets().map(|p| p.ts).collect()
    }

    #[test]
    fn snippet_holds_only_the_keys_packets_inside_the_window() {
        let mut h = PacketHistory::new(&config());
        let mut out = Vec::new();
        let (a, b) = (1, 2);
        for s in 0..=20 {
            h.record(ip(a), LinkType::Ethernet, at(s, 0), 64, &frame(a, s));
            h.record(ip(b), LinkType::Ethernet, at(s, 500), 64, &frame(b, s));
            if s == 10 {
                let outcome = h.on_alert(42, ip(a), at(10, 0), "rule", &mut |s| out.push(s));
                assert_eq!(outcome, CaptureOutcome::Following);
            }
            h.on_clock(at(s, 600), &mut |s| out.push(s));
            // Emitted at the first tick past alert time + 5 s (15.6 s).
            assert_eq!(out.len(), usize::from(s >= 15), "after second {s}");
        }
        let snip = &out[0];
        assert_eq!(snip.alert_id(), 42);
        assert_eq!(snip.key(), ip(a));
        assert_eq!(snip.window(), (at(5, 0), at(15, 0)));
        assert_eq!(times(snip), (5..=15).map(|s| at(s, 0)).collect::<Vec<_>>());
        for (p, s) in snip.packets().zip(5..) {
            assert_eq!(p.data, frame(a, s));
        }
        let st = h.stats();
        assert_eq!((st.snippets_captured, st.snippets_finished, st.snippets_open), (1, 1, 0));
    }

    #[test]
    fn history_keeps_at_most_history_packets_per_key() {
        let mut h = PacketHistory::new(&SnippetConfig { history_packets: 8, ..config() });
        for n in 0..20 {
            h.record(ip(1), LinkType::Raw, at(0, n), 64, &frame(1, n));
        }
        assert_eq!(h.packets_of(ip(1)), 8);
        let mut out = Vec::new();
        h.on_alert(1, ip(1), at(0, 19), "", &mut |s| out.push(s));
        h.finish(&mut |s| out.push(s));
        assert_eq!(times(&out[0]), (12..20).map(|n| at(0, n)).collect::<Vec<_>>());
        assert_eq!(out[0].link(), Some(LinkType::Raw));
    }

    #[test]
    fn history_forgets_packets_older_than_history_age() {
        let c = SnippetConfig { history_age: SnippetDuration(Duration::from_secs(5)), ..config() };
        let mut h = PacketHistory::new(&c);
        for s in 0..=10 {
            h.record(ip(1), LinkType::Ethernet, at(s, 0), 64, &frame(1, s));
        }
        assert_eq!(h.packets_of(ip(1)), 6, "seconds 5..=10");
        let mut out = Vec::new();
        let wide = SnippetWindow { before: Duration::from_secs(60), after: Duration::ZERO };
        h.on_alert_in(1, ip(1), at(10, 0), wide, "", &mut |s| out.push(s));
        h.finish(&mut |s| out.push(s));
        assert_eq!(times(&out[0]), (5..=10).map(|s| at(s, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn idle_keys_are_forgotten_at_clock_ticks() {
        let mut h = PacketHistory::new(&config());
        h.record(ip(1), LinkType::Ethernet, at(0, 0), 64, &frame(1, 0));
        h.record(ip(2), LinkType::Ethernet, at(3, 0), 64, &frame(2, 0));
        h.on_clock(at(5, 0), &mut |_| {});
        assert!(h.is_tracked(ip(1)) && h.is_tracked(ip(2)));
        h.on_clock(at(5, 1), &mut |_| {});
        assert!(!h.is_tracked(ip(1)) && h.is_tracked(ip(2)));
        h.on_clock(at(9, 0), &mut |_| {});
        assert!(!h.is_tracked(ip(2)));
        let st = h.stats();
        assert_eq!((st.keys_expired, st.keys_tracked, st.keys_evicted), (2, 0, 0));
    }

    #[test]
    fn memory_stays_within_the_cap_and_least_recently_active_keys_go_first() {
        let cap = 1 << 20;
        let c = SnippetConfig { memory_bytes: cap, history_age: SnippetDuration(Duration::ZERO), ..config() };
        let mut h = PacketHistory::new(&c);
        let slots = h.slot_capacity() as u32;
        assert!(h.memory_bytes() <= cap, "{} > {cap}", h.memory_bytes());
        assert!(slots > 2_000, "{slots} slots in 1 MiB at snaplen 256");
        let keys = 200_000u32;
        for n in 0..keys {
            h.record(ip(n), LinkType::Ethernet, at(0, u64::from(n)), 1500, &[7u8; 1500]);
            // A key active all along is never the least recently active one.
            h.record(ip(u32::MAX), LinkType::Ethernet, at(0, u64::from(n)), 60, &[1; 60]);
        }
        // The index never grew (tombstones are cleaned in place): memory as allocated.
        assert!(h.memory_bytes() <= cap);
        assert_eq!(h.memory_bytes(), h.stats().memory_bytes);
        let st = h.stats();
        assert!(st.keys_tracked <= u64::from(slots));
        assert_eq!(st.keys_evicted, u64::from(keys) + 1 - st.keys_tracked);
        assert_eq!(st.packets_recorded, 2 * u64::from(keys));
        assert!(h.is_tracked(ip(u32::MAX)));
        assert_eq!(h.packets_of(ip(u32::MAX)), 64);
        assert!(h.is_tracked(ip(keys - 1)));
        assert!(!h.is_tracked(ip(0)) && !h.is_tracked(ip(keys / 2)));
        // The newest keys are the ones kept.
        let kept = (0..keys).rev().take_while(|&n| h.is_tracked(ip(n))).count() as u64;
        assert_eq!(kept + 1, st.keys_tracked);
    }

    #[test]
    fn key_with_an_open_snippet_is_not_evicted_and_keeps_collecting() {
        let c = SnippetConfig {
            memory_bytes: min_memory_bytes(&SnippetConfig::default()) + 64 * 1024,
            history_age: SnippetDuration(Duration::ZERO),
            ..config()
        };
        let mut h = PacketHistory::new(&c);
        let mut out = Vec::new();
        let a = 0xdead_beef;
        h.record(ip(a), LinkType::Ethernet, at(0, 0), 64, &frame(a, 0));
        h.on_alert(9, ip(a), at(0, 0), "", &mut |s| out.push(s));
        for n in 1..=4000u64 {
            // A flood of other keys fills the memory many times over...
            for k in 0..50 {
                h.record(ip(k + 1_000 * n as u32), LinkType::Ethernet, at(0, n), 64, &frame(k, n));
            }
            // ...while the alert's key sends a packet now and then.
            if n % 1000 == 0 {
                h.record(ip(a), LinkType::Ethernet, at(0, n), 64, &frame(a, n));
            }
            h.on_clock(at(0, n), &mut |s| out.push(s));
        }
        assert!(h.stats().keys_evicted > 100_000);
        assert!(out.is_empty());
        h.on_clock(at(6, 0), &mut |s| out.push(s));
        assert_eq!(times(&out[0]), [0, 1000, 2000, 3000, 4000].map(|ms| at(0, ms)));
        assert_eq!(out[0].packets().nth(4).map(|p| p.data), Some(&frame(a, 4000)[..]));
    }

    #[test]
    fn alert_for_a_key_without_history_collects_the_packets_that_follow() {
        let mut h = PacketHistory::new(&config());
        let mut out = Vec::new();
        h.on_alert(3, ip(5), at(1, 0), "", &mut |s| out.push(s));
        h.record(ip(5), LinkType::Ethernet, at(2, 0), 64, &frame(5, 2));
        h.record(ip(5), LinkType::Ethernet, at(6, 0), 64, &frame(5, 6));
        h.record(ip(5), LinkType::Ethernet, at(6, 1), 64, &frame(5, 7));
        h.on_clock(at(7, 0), &mut |s| out.push(s));
        assert_eq!(times(&out[0]), [at(2, 0), at(6, 0)]);
    }

    #[test]
    fn repeated_alert_id_is_captured_once() {
        let mut h = PacketHistory::new(&config());
        let mut out = Vec::new();
        h.record(ip(1), LinkType::Ethernet, at(0, 0), 64, &frame(1, 0));
        assert_eq!(h.on_alert(7, ip(1), at(0, 0), "", &mut |s| out.push(s)), CaptureOutcome::Following);
        assert_eq!(h.on_alert(7, ip(1), at(0, 0), "", &mut |s| out.push(s)), CaptureOutcome::Duplicate);
        h.finish(&mut |s| out.push(s));
        assert_eq!(out.len(), 1);
        assert_eq!((h.stats().snippets_captured, h.stats().snippets_duplicate), (1, 1));
    }

    #[test]
    fn late_alert_is_completed_at_once_with_the_history_it_finds() {
        let mut h = PacketHistory::new(&config());
        for s in 0..=12 {
            h.record(ip(1), LinkType::Ethernet, at(s, 0), 64, &frame(1, s));
        }
        let mut out = Vec::new();
        let outcome = h.on_alert(1, ip(1), at(6, 0), "", &mut |s| out.push(s));
        assert_eq!(outcome, CaptureOutcome::Complete);
        // History reaches back to second 7 (5 s before the newest packet).
        assert_eq!(times(&out[0]), (7..=11).map(|s| at(s, 0)).collect::<Vec<_>>());
    }

    #[test]
    fn more_alerts_than_max_open_close_the_snippet_ending_first() {
        let mut h = PacketHistory::new(&SnippetConfig { max_open: 2, ..config() });
        let mut out = Vec::new();
        for (id, s) in [(1u128, 2u64), (2, 1), (3, 3)] {
            h.record(ip(s as u32), LinkType::Ethernet, at(s, 0), 64, &frame(1, s));
            h.on_alert(id, ip(s as u32), at(s, 0), "", &mut |s| out.push(s));
        }
        // Alert 2 ends first (second 6): closed early when alert 3 opened.
        assert_eq!(out.iter().map(|s| (s.alert_id(), s.cut_short())).collect::<Vec<_>>(), [(2, true)]);
        h.finish(&mut |s| out.push(s));
        assert_eq!(out.len(), 3);
        assert_eq!(h.stats().snippets_cut_short, 1);
    }

    #[test]
    fn packets_beyond_max_snippet_packets_are_counted_as_omitted() {
        let mut h = PacketHistory::new(&SnippetConfig { max_snippet_packets: 10, ..config() });
        let mut out = Vec::new();
        h.on_alert(1, ip(1), at(0, 0), "", &mut |s| out.push(s));
        for n in 0..25 {
            h.record(ip(1), LinkType::Ethernet, at(0, n), 64, &frame(1, n));
        }
        h.record(ip(1), LinkType::Raw, at(0, 30), 64, &frame(1, 30));
        h.finish(&mut |s| out.push(s));
        assert_eq!((out[0].len(), out[0].omitted()), (10, 16));
        assert_eq!(h.stats().snippet_packets_omitted, 16);
    }

    #[test]
    fn packets_are_cut_to_snaplen_and_keep_their_wire_length() {
        let mut h = PacketHistory::new(&SnippetConfig { snaplen: 100, ..config() });
        let big: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        h.record(ip(1), LinkType::Ethernet, at(0, 0), 1500, &big);
        h.record(ip(1), LinkType::Ethernet, at(0, 1), 60, &big[..60]);
        let mut out = Vec::new();
        h.on_alert(1, ip(1), at(0, 1), "", &mut |s| out.push(s));
        h.finish(&mut |s| out.push(s));
        let p: Vec<_> = out[0].packets().collect();
        assert_eq!((p[0].wire_len, p[0].data), (1500, &big[..100]));
        assert_eq!((p[1].wire_len, p[1].data), (60, &big[..60]));
    }

    #[test]
    fn record_batch_has_the_same_outcome_as_recording_one_by_one() {
        let c = SnippetConfig { memory_bytes: min_memory_bytes(&config()) + 200_000, ..config() };
        let (mut one, mut batched) = (PacketHistory::new(&c), PacketHistory::new(&c));
        let mut frames = Vec::new();
        let mut x = 12345u32;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            frames.push((ip(x % 3000), at(0, i), frame(x, i)));
        }
        let mut out = (Vec::new(), Vec::new());
        for (n, chunk) in frames.chunks(50).enumerate() {
            for (key, ts, f) in chunk {
                one.record(*key, LinkType::Ethernet, *ts, 64, f);
            }
            let batch: Vec<_> = chunk
                .iter()
                .map(|(key, ts, f)| HistoryPacket {
                    key: *key,
                    link: LinkType::Ethernet,
                    ts: *ts,
                    wire_len: 64,
                    data: f,
                })
                .collect();
            batched.record_batch(&batch);
            if n % 40 == 0 {
                let (key, ts, _) = chunk[0];
                one.on_alert(n as u128, key, ts, "", &mut |s| out.0.push(s));
                batched.on_alert(n as u128, key, ts, "", &mut |s| out.1.push(s));
            }
        }
        one.finish(&mut |s| out.0.push(s));
        batched.finish(&mut |s| out.1.push(s));
        assert!(one.stats().keys_evicted > 1000);
        assert_eq!(one.stats(), batched.stats());
        assert_eq!(out.0, out.1);
        for k in 0..3000 {
            assert_eq!(one.packets_of(ip(k)), batched.packets_of(ip(k)));
        }
    }

    /// Prints the cost of `record`; run with
    /// `cargo test -p outpost-snippet --release -- --ignored --nocapture record_cost`.
    #[test]
    #[ignore = "measurement, run in release"]
    fn record_cost_per_packet() {
        let frame = [0x5au8; 1500];
        let only: Option<usize> = std::env::var("SNIPPET_BENCH_PACKETS").ok().and_then(|v| v.parse().ok());
        for (label, keys, len) in [
            ("1 key, 64 B frames", 1u32, 64usize),
            ("1k keys, 64 B frames", 1_000u32, 64usize),
            ("1k keys, 1500 B frames (256 B kept)", 1_000, 1500),
            ("64k keys, 1500 B frames", 65_536, 1500),
            ("16M keys (memory full, evicting)", 1 << 24, 1500),
        ] {
            let mut c = SnippetConfig::default();
            if let Some(p) = only {
                c.history_packets = p as u32;
            }
            for batched in [false, true] {
                let mut h = PacketHistory::new(&c);
                let n = 20_000_000u64;
                let mut x = 0x9e37_79b9u32;
                let mut batch = Vec::with_capacity(32);
                let start = std::time::Instant::now();
                for i in 0..n {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let p = HistoryPacket {
                        key: ip(x % keys),
                        link: LinkType::Ethernet,
                        ts: Nanos(T0 * 1_000_000_000 + i * 100),
                        wire_len: len as u32,
                        data: &frame[..len],
                    };
                    if batched {
                        batch.push(p);
                        if batch.len() == 32 {
                            h.record_batch(&batch);
                            batch.clear();
                        }
                    } else {
                        h.record(p.key, p.link, p.ts, p.wire_len, p.data);
                    }
                }
                let ns = start.elapsed().as_nanos() as f64 / n as f64;
                let st = h.stats();
                println!(
                    "{label}, {}: {ns:.1} ns/packet (keys {} evicted {} memory {} B)",
                    if batched { "record_batch" } else { "record" },
                    st.keys_tracked,
                    st.keys_evicted,
                    st.memory_bytes
                );
            }
        }
    }
}
