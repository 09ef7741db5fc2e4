//! First sightings: the keys of a threshold rule seen once, held in 16 bytes each instead of a
//! full key state.
//!
//! Most keys of the scan rules never see a second input: every new (source, destination) pair
//! of ordinary traffic is a key of `scan-vertical-tcp`, and one SYN is all it ever sends. When a
//! single input cannot reach the rule's threshold (counts and distinct counts with a threshold
//! above 1), a key's first input is parked here — its hash, the bucket it fell in and the value
//! it brought — and the key gets its full state (window, counter, place in the least recently
//! updated order, [`crate::threshold`]) only with its second input, which replays the first.
//!
//! The table is set-associative: 64-byte lines of four entries, a line chosen by the key hash
//! (so it can be prefetched with the key table's index line). A full line gives up its oldest
//! entry; an entry whose bucket has left the window is free. A key parked here thus loses its
//! first input only if four newer first sightings landed in its line before its second input:
//! then its count is one lower than exact. To keep that rare, the table doubles (up to the
//! rule's `max_keys` entries) once live entries have been given up for a quarter of its size;
//! growing moves every live entry to the bigger table (the lines are chosen by the hash's high
//! half, which the entry keeps), so growing loses nothing.

use outpost_decode::Nanos;
use outpost_flowmeter::index::prefetch;

/// Entries per line.
const WAYS: usize = 4;
/// Lines of a new table (16 KiB).
const FIRST_LINES: usize = 256;
/// An empty entry's hash (stored hashes have the low bit set).
const EMPTY: u64 = 0;

/// One cache line: four entries' key hashes, buckets (low 32 bits of the bucket number) and
/// values.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line {
    hashes: [u64; WAYS],
    buckets: [u32; WAYS],
    values: [u32; WAYS],
}

const _: () = assert!(std::mem::size_of::<Line>() == 64, "a line is one cache line");

const EMPTY_LINE: Line = Line { hashes: [EMPTY; WAYS], buckets: [0; WAYS], values: [0; WAYS] };

/// A parked first input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sighting {
    /// The start of the bucket the input fell in.
    pub at: Nanos,
    /// Its value: the amount of a count, the value's 32-bit fingerprint for a distinct count.
    pub value: u32,
}

/// What [`FirstSeen::see`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The key was not parked: now it is.
    Parked,
    /// The key was parked with another input, given back (and no longer parked): the key needs
    /// its full state now.
    Second(Sighting),
}

/// Keys seen once (see the module docs).
#[derive(Debug)]
pub(crate) struct FirstSeen {
    lines: Vec<Line>,
    /// Bucket width, ns.
    width: u64,
    /// Buckets in the window.
    window: u64,
    /// Most entries (lines × 4) the table grows to.
    max_entries: usize,
    /// Entries not empty (live, or stale and not yet reused).
    held: usize,
    /// Live entries given up since the last growth.
    displaced: usize,
    /// Live entries given up in all (their key's count is one lower than exact).
    pub lost: u64,
}

/// The hash stored for a key hash (never [`EMPTY`]).
#[inline(always)]
fn stored(hash: u64) -> u64 {
    hash | 1
}

/// Multiply-shift reduction of the hash's high half to a line number.
#[inline(always)]
fn line_of(hash: u64, lines: usize) -> usize {
    (((hash >> 32) * lines as u64) >> 32) as usize
}

impl FirstSeen {
    /// An empty table for a window of `window` buckets of `width` ns, growing up to
    /// `max_keys` entries.
    pub(crate) fn new(width: u64, window: u32, max_keys: usize) -> FirstSeen {
        FirstSeen {
            lines: vec![EMPTY_LINE; FIRST_LINES],
            width: width.max(1),
            window: u64::from(window.max(1)),
            max_entries: max_keys.max(FIRST_LINES * WAYS),
            held: 0,
            displaced: 0,
            lost: 0,
        }
    }

    /// Starts loading the line of `hash`.
    #[inline]
    pub(crate) fn prefetch(&self, hash: u64) {
        if let Some(l) = self.lines.get(line_of(hash, self.lines.len())) {
            prefetch(l);
        }
    }

    /// How many buckets before `bucket` a stored bucket is (negative: after it), from the low
    /// 32 bits both keep.
    #[inline]
    fn age(bucket: u64, stored: u32) -> i64 {
        i64::from((bucket as u32).wrapping_sub(stored) as i32)
    }

    /// Whether an entry of age `age` is still inside a window of `window` buckets.
    #[inline]
    fn live(window: u64, age: i64) -> bool {
        age < window as i64 && age > -(window as i64)
    }

    /// An input with value `value` at `now` for the key of hash `hash`, which has no full
    /// state.
    #[inline]
    pub(crate) fn see(&mut self, hash: u64, now: Nanos, value: u32) -> Seen {
        let now_bucket = now.0 / self.width;
        let h = stored(hash);
        let at = line_of(hash, self.lines.len());
        let Some(line) = self.lines.get_mut(at) else { return Seen::Parked };
        let mut found = None;
        if let Some(i) = line.hashes.iter().position(|&x| x == h) {
            line.hashes[i] = EMPTY;
            self.held -= 1;
            let age = Self::age(now_bucket, line.buckets[i]);
            if Self::live(self.window, age) {
                let bucket = (now_bucket as i64 - age).max(0) as u64;
                found = Some((bucket, line.values[i]));
            }
        }
        match found {
            Some((bucket, v)) => {
                Seen::Second(Sighting { at: Nanos(bucket.saturating_mul(self.width)), value: v })
            }
            None => {
                self.park(hash, now_bucket, value);
                Seen::Parked
            }
        }
    }

    /// Whether the key of `hash` is parked (tests).
    #[cfg(test)]
    fn holds(&self, hash: u64) -> bool {
        self.lines.get(line_of(hash, self.lines.len())).is_some_and(|l| l.hashes.contains(&stored(hash)))
    }

    /// Parks an input (the key is in no line): in a free entry of its line, else in place of
    /// the line's oldest entry.
    fn park(&mut self, hash: u64, bucket: u64, value: u32) {
        let n = self.lines.len();
        let (window, at) = (self.window, line_of(hash, n));
        let Some(line) = self.lines.get_mut(at) else { return };
        let mut victim = 0;
        let mut oldest = i64::MIN;
        let mut free = false;
        for i in 0..WAYS {
            let age = Self::age(bucket, line.buckets[i]);
            if line.hashes[i] == EMPTY || !Self::live(window, age) {
                victim = i;
                free = true;
                break;
            }
            if age > oldest {
                oldest = age;
                victim = i;
            }
        }
        if line.hashes[victim] == EMPTY {
            self.held += 1;
        }
        line.hashes[victim] = stored(hash);
        line.buckets[victim] = bucket as u32;
        line.values[victim] = value;
        if !free {
            self.lost += 1;
            self.displaced += 1;
        }
        let crowded = self.held * 2 > n * WAYS || self.displaced * 16 > n * WAYS;
        if crowded && n * WAYS * 2 <= self.max_entries {
            self.grow(bucket);
        }
    }

    /// Doubles the lines, moving every live entry to its line in the new table.
    #[cold]
    fn grow(&mut self, now_bucket: u64) {
        let bigger = vec![EMPTY_LINE; self.lines.len() * 2];
        let old = std::mem::replace(&mut self.lines, bigger);
        self.displaced = 0;
        self.held = 0;
        for line in &old {
            for i in 0..WAYS {
                let age = Self::age(now_bucket, line.buckets[i]);
                if line.hashes[i] != EMPTY && Self::live(self.window, age) {
                    let bucket = (now_bucket as i64 - age).max(0) as u64;
                    // Into the first free entry: a line of the new table takes entries from
                    // one old line only, so there is room.
                    let n = self.lines.len();
                    if let Some(l) = self.lines.get_mut(line_of(line.hashes[i], n))
                        && let Some(j) = l.hashes.iter().position(|&x| x == EMPTY)
                    {
                        self.held += 1;
                        l.hashes[j] = line.hashes[i];
                        l.buckets[j] = bucket as u32;
                        l.values[j] = line.values[i];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn hash(i: u64) -> u64 {
        let mut h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
        h.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1
    }

    #[test]
    fn second_input_gives_back_the_first_with_its_bucket_start() {
        let mut f = FirstSeen::new(10 * SEC, 6, 1000);
        assert_eq!(f.see(hash(1), Nanos(25 * SEC), 7), Seen::Parked);
        assert_eq!(
            f.see(hash(1), Nanos(31 * SEC), 8),
            Seen::Second(Sighting { at: Nanos(20 * SEC), value: 7 })
        );
        // Given back: the key is no longer parked.
        assert_eq!(f.see(hash(1), Nanos(32 * SEC), 8), Seen::Parked);
    }

    #[test]
    fn an_input_older_than_the_window_is_forgotten() {
        let mut f = FirstSeen::new(SEC, 60, 1000);
        f.see(hash(4), Nanos(SEC), 1);
        assert_eq!(f.see(hash(4), Nanos(61 * SEC), 2), Seen::Parked);
        assert_eq!(f.lost, 0);
    }

    #[test]
    fn many_keys_at_once_grow_the_table_and_lose_few_first_inputs() {
        let keys = 200_000u64;
        let mut f = FirstSeen::new(SEC, 60, 1_000_000);
        for i in 0..keys {
            assert_eq!(f.see(hash(i), Nanos(SEC + i), 1), Seen::Parked);
        }
        let held = (0..keys).filter(|&i| f.holds(hash(i))).count() as u64;
        assert_eq!(keys - held, f.lost, "every key not held was counted as lost");
        assert!(f.lost < keys / 10, "lost {} of {keys}", f.lost);
        assert!(f.lines.len() >= 8192, "grew to {} lines", f.lines.len());
        // Growing moved every live entry: none is lost for good that was not counted.
        assert!(f.lost > 0);
    }

    #[test]
    fn growth_stops_at_max_keys() {
        let mut f = FirstSeen::new(SEC, 60, 4096);
        for i in 0..100_000u64 {
            f.see(hash(i), Nanos(SEC), 1);
        }
        assert_eq!(f.lines.len() * WAYS, 4096);
    }
}
