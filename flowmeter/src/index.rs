//! A hash → slab index map in cache-line buckets that can be prefetched: the flow table's
//! index, and the detector's key tables'.
//!
//! Each 64-byte line holds seven entries (a 32-bit tag from the hash and a 32-bit slab index)
//! and an overflow counter. A key lives in its home line (`hash` reduced to the line count)
//! or, when that line is full, in a following line; every line an insertion passed over counts
//! it in its overflow counter, so a lookup stops at the first line with a free tag match miss
//! and no overflow. One lookup touches one line in the common case, and the line's address is
//! known from the hash alone, so a batch of packets can prefetch their lines (and then their
//! slots) before any of them is processed: the misses overlap instead of queueing.
//!
//! Lines are sized for at most 80 % occupancy: 64 bytes per 5.6 flows, 11.4 bytes per flow.

/// Entries per line.
const WAYS: usize = 7;
/// Empty entry tag (real tags have the low bit set).
const EMPTY: u32 = 0;

/// One cache line of the index.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line {
    tags: [u32; WAYS],
    /// Entries that belong to an earlier line but passed over this one.
    overflow: u32,
    slots: [u32; WAYS],
    _pad: u32,
}

const _: () = assert!(std::mem::size_of::<Line>() == 64, "an index line is one cache line");

const EMPTY_LINE: Line = Line { tags: [EMPTY; WAYS], overflow: 0, slots: [0; WAYS], _pad: 0 };

/// Hash → slab index map with a fixed number of lines.
#[derive(Debug)]
pub struct SlotIndex {
    lines: Vec<Line>,
    len: usize,
}

/// The tag stored for a hash: its high half with the low bit set (never `EMPTY`).
#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    ((hash >> 32) as u32) | 1
}

pub use outpost_decode::prefetch;

impl SlotIndex {
    /// An index for up to `capacity` entries.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> SlotIndex {
        // 80 % of seven ways per line.
        let lines = (capacity.saturating_mul(5)).div_ceil(WAYS * 4).max(2);
        SlotIndex { lines: vec![EMPTY_LINE; lines], len: 0 }
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries the index was sized for (80 % of its ways): more still fit, but probes grow
    /// longer; a growing owner rebuilds a larger index past this.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.lines.len() * WAYS * 4 / 5
    }

    /// Removes every entry, keeping the lines.
    pub fn clear(&mut self) {
        self.lines.fill(EMPTY_LINE);
        self.len = 0;
    }

    /// Bytes allocated.
    #[must_use]
    pub fn allocated_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<Line>()
    }

    /// Home line of a hash (multiply-shift reduction; uses the low half of the hash, the tag
    /// the high half).
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (((hash & 0xffff_ffff) * self.lines.len() as u64) >> 32) as usize
    }

    #[inline(always)]
    fn next(&self, line: usize) -> usize {
        if line + 1 == self.lines.len() { 0 } else { line + 1 }
    }

    /// Prefetches the home line of `hash`.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        if let Some(l) = self.lines.get(self.home(hash)) {
            prefetch(l);
        }
    }

    /// Calls `candidate(slot)` for each entry whose tag matches, in probe order, until it
    /// returns true; returns that slot.
    #[inline]
    pub fn find(&self, hash: u64, mut candidate: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut line = self.home(hash);
        for _ in 0..self.lines.len() {
            let l = self.lines.get(line)?;
            for (t, s) in l.tags.iter().zip(l.slots.iter()) {
                if *t == tag && candidate(*s) {
                    return Some(*s);
                }
            }
            if l.overflow == 0 {
                return None;
            }
            line = self.next(line);
        }
        None
    }

    /// Inserts `slot` under `hash` (the caller ensures the key is not present and the index
    /// is not full).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        let tag = tag_of(hash);
        let mut line = self.home(hash);
        for _ in 0..self.lines.len() {
            let next = self.next(line);
            let Some(l) = self.lines.get_mut(line) else { return };
            if let Some(i) = l.tags.iter().position(|&t| t == EMPTY) {
                l.tags[i] = tag;
                l.slots[i] = slot;
                self.len += 1;
                return;
            }
            l.overflow += 1;
            line = next;
        }
    }

    /// Removes the entry for `slot` stored under `hash`. Returns false if it was not found.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let tag = tag_of(hash);
        let home = self.home(hash);
        let mut line = home;
        for _ in 0..self.lines.len() {
            let Some(l) = self.lines.get_mut(line) else { return false };
            if let Some(i) = (0..WAYS).find(|&i| l.tags[i] == tag && l.slots[i] == slot) {
                l.tags[i] = EMPTY;
                self.len -= 1;
                // Undo the overflow counts of the lines this entry passed over.
                let mut p = home;
                while p != line {
                    if let Some(pl) = self.lines.get_mut(p) {
                        pl.overflow = pl.overflow.saturating_sub(1);
                    }
                    p = self.next(p);
                }
                return true;
            }
            if l.overflow == 0 {
                return false;
            }
            line = self.next(line);
        }
        false
    }

    /// Every slot index held, in line order.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.lines
            .iter()
            .flat_map(|l| l.tags.iter().zip(l.slots.iter()).filter(|(t, _)| **t != EMPTY).map(|(_, s)| *s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(i: u64) -> u64 {
        let mut h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }

    #[test]
    fn entries_are_found_until_removed_even_past_full_lines() {
        let n = 10_000u32;
        let mut idx = SlotIndex::with_capacity(n as usize);
        for i in 0..n {
            idx.insert(mix(u64::from(i)), i);
        }
        assert_eq!(idx.len(), n as usize);
        for i in 0..n {
            assert_eq!(idx.find(mix(u64::from(i)), |s| s == i), Some(i));
        }
        for i in (0..n).step_by(2) {
            assert!(idx.remove(mix(u64::from(i)), i));
        }
        for i in 0..n {
            let found = idx.find(mix(u64::from(i)), |s| s == i);
            assert_eq!(found.is_some(), i % 2 == 1, "{i}");
        }
        assert!(!idx.remove(mix(0), 0));
        let mut all: Vec<u32> = idx.slots().collect();
        all.sort_unstable();
        assert_eq!(all, (1..n).step_by(2).collect::<Vec<_>>());
        // Overflow counts return to zero once everything is removed.
        for i in (1..n).step_by(2) {
            assert!(idx.remove(mix(u64::from(i)), i));
        }
        assert!(idx.lines.iter().all(|l| l.overflow == 0 && l.tags.iter().all(|&t| t == EMPTY)));
    }

    #[test]
    fn colliding_hashes_overflow_into_later_lines() {
        let mut idx = SlotIndex::with_capacity(100);
        // Same home line and tag for 20 entries: they spill over several lines.
        for i in 0..20u32 {
            idx.insert(0x1234_5678_0000_0042, i);
        }
        for i in 0..20u32 {
            assert_eq!(idx.find(0x1234_5678_0000_0042, |s| s == i), Some(i));
        }
        for i in 0..20u32 {
            assert!(idx.remove(0x1234_5678_0000_0042, i));
        }
        assert!(idx.lines.iter().all(|l| l.overflow == 0));
    }
}
