//! A hashed timer wheel for idle timeouts: O(1) to schedule, O(1) amortised to expire.
//!
//! Entries are `(key, generation)` pairs in slots of `tick` nanoseconds. The wheel never
//! cancels: when a slot comes due, the owner's callback looks the key up, ignores it if the
//! generation no longer matches (the entry was removed or replaced), and otherwise either
//! expires it or returns a later deadline (the entry was touched since it was scheduled). Each
//! live entry therefore sits in exactly one slot, and is visited about once per timeout period
//! however often it is touched — touching costs nothing.
//!
//! Deadlines beyond the wheel's horizon go to the farthest slot and are re-checked there.

use outpost_decode::Nanos;

/// Slots per wheel (a power of two).
const SLOTS: usize = 64;

/// A timer wheel over keys `K`.
#[derive(Debug, Clone)]
pub struct TimerWheel<K> {
    slots: Vec<Vec<(K, u32)>>,
    /// Slot width in nanoseconds (≥ 1).
    tick: u64,
    /// Absolute number of the next slot to expire (`time / tick`).
    current: u64,
    /// Scratch buffer swapped with a due slot, so expiring allocates nothing.
    spare: Vec<(K, u32)>,
    len: usize,
}

impl<K: Copy> TimerWheel<K> {
    /// A wheel whose horizon is about twice `timeout` (slot width `timeout / 32`, at least
    /// 1 ms).
    #[must_use]
    pub fn for_timeout(timeout: outpost_decode::Duration) -> TimerWheel<K> {
        let tick = (timeout.as_nanos() / 32).max(1_000_000);
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            tick,
            current: 0,
            spare: Vec::new(),
            len: 0,
        }
    }

    /// Entries scheduled (including stale ones not yet visited).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `key` (with its `generation`) to be looked at once `deadline` has passed.
    pub fn schedule(&mut self, key: K, generation: u32, deadline: Nanos) {
        let slot = (deadline.0 / self.tick).max(self.current).min(self.current + SLOTS as u64 - 1);
        if let Some(s) = self.slots.get_mut((slot as usize) & (SLOTS - 1)) {
            s.push((key, generation));
            self.len += 1;
        }
    }

    /// Visits every entry whose slot ended at or before `now`. `visit(key, generation)` returns
    /// `Some(deadline)` to keep the entry (rescheduled) or `None` when it is gone.
    pub fn advance(&mut self, now: Nanos, mut visit: impl FnMut(K, u32) -> Option<Nanos>) {
        // Slot `s` covers [s·tick, (s+1)·tick): it is due once `now` reaches its end.
        let due = now.0 / self.tick;
        if due.saturating_sub(self.current) > SLOTS as u64 {
            // Every scheduled entry has an absolute slot below `due`: visiting each of the
            // SLOTS indices once covers them all, so skip the empty part of the gap.
            self.current = due - SLOTS as u64;
        }
        while self.current < due {
            let idx = (self.current as usize) & (SLOTS - 1);
            self.current += 1;
            let Some(slot) = self.slots.get_mut(idx) else { continue };
            if slot.is_empty() {
                continue;
            }
            std::mem::swap(slot, &mut self.spare);
            let mut batch = std::mem::take(&mut self.spare);
            self.len -= batch.len();
            for (key, generation) in batch.drain(..) {
                if let Some(deadline) = visit(key, generation) {
                    self.schedule(key, generation, deadline);
                }
            }
            self.spare = batch;
        }
    }

    /// Keeps only the entries `keep(key, generation)` accepts. O(entries); callers run it when
    /// stale entries (of keys removed or rescheduled since) outnumber live ones, which keeps
    /// the wheel's size proportional to the live keys at O(1) amortised cost.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, u32) -> bool) {
        let mut len = 0;
        for slot in &mut self.slots {
            slot.retain(|(k, g)| keep(k, *g));
            len += slot.len();
        }
        self.len = len;
    }

    /// Removes and returns the entry scheduled earliest (for eviction under memory pressure),
    /// with its generation. Stale entries may be returned; the caller checks the generation.
    pub fn pop_earliest(&mut self) -> Option<(K, u32)> {
        for i in 0..SLOTS {
            let idx = (self.current as usize + i) & (SLOTS - 1);
            if let Some(e) = self.slots.get_mut(idx).and_then(Vec::pop) {
                self.len -= 1;
                return Some(e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_decode::Duration;

    #[test]
    fn entries_expire_only_after_their_deadline() {
        let mut w = TimerWheel::for_timeout(Duration::from_secs(32));
        w.schedule(1u32, 0, Nanos::from_secs(10));
        w.schedule(2u32, 0, Nanos::from_secs(40));
        let mut seen = Vec::new();
        w.advance(Nanos::from_secs(9), |k, _| {
            seen.push(k);
            None
        });
        assert!(seen.is_empty());
        w.advance(Nanos::from_secs(11), |k, _| {
            seen.push(k);
            None
        });
        assert_eq!(seen, vec![1]);
        w.advance(Nanos::from_secs(41), |k, _| {
            seen.push(k);
            None
        });
        assert_eq!(seen, vec![1, 2]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_are_rechecked_and_rescheduled() {
        let mut w = TimerWheel::for_timeout(Duration::from_secs(1));
        w.schedule(7u32, 3, Nanos::from_secs(1_000));
        let mut visits = 0;
        for s in 0..=1_001 {
            w.advance(Nanos::from_secs(s), |_, g| {
                assert_eq!(g, 3);
                visits += 1;
                (s < 1_000).then_some(Nanos::from_secs(1_000))
            });
        }
        assert!(w.is_empty());
        // Re-checked about once per horizon (2 s), not once per slot.
        assert!(visits > 100 && visits < 1_000, "visits {visits}");
    }

    #[test]
    fn a_long_jump_visits_every_entry_once() {
        let mut w = TimerWheel::for_timeout(Duration::from_secs(10));
        for k in 0..500u32 {
            w.schedule(k, 0, Nanos::from_secs(u64::from(k % 20)));
        }
        let mut seen = 0;
        w.advance(Nanos::from_secs(1_000_000), |_, _| {
            seen += 1;
            None
        });
        assert_eq!(seen, 500);
        assert!(w.is_empty());
    }

    #[test]
    fn pop_earliest_returns_the_soonest_slot_first() {
        let mut w = TimerWheel::for_timeout(Duration::from_secs(32));
        w.schedule(5u32, 0, Nanos::from_secs(30));
        w.schedule(6u32, 0, Nanos::from_secs(3));
        assert_eq!(w.pop_earliest(), Some((6, 0)));
        assert_eq!(w.pop_earliest(), Some((5, 0)));
        assert_eq!(w.pop_earliest(), None);
    }
}
