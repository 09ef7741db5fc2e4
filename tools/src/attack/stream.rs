//! The attack packet stream: every attack is one or more [`Script`]s, each a [`Source`] of
//! events expanded into packets on demand, and [`AttackStream`] merges them in time order.
//!
//! A source's events come in non-decreasing start time and expand into packets no earlier
//! than their start; a script hands out a pending packet only once no later event can
//! produce an earlier one. So memory holds the packets of the events in flight — a few
//! thousand for a brute force expanded in one go, a handful for a flood expanded packet by
//! packet — never a whole flood.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::packet::Pkt;

/// A packet waiting in a script, ordered by time and then by the order it was queued.
#[derive(Debug)]
struct Queued {
    ts: u64,
    n: u64,
    pkt: Pkt,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Queued) -> bool {
        (self.ts, self.n) == (other.ts, other.n)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Queued) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Queued) -> Ordering {
        (self.ts, self.n).cmp(&(other.ts, other.n))
    }
}

/// Packets expanded and not yet handed out, earliest first (ties in queueing order).
#[derive(Debug, Default)]
pub(crate) struct Pending {
    heap: BinaryHeap<Reverse<Queued>>,
    queued: u64,
}

impl Pending {
    pub(crate) fn push(&mut self, pkt: Pkt) {
        self.queued += 1;
        self.heap.push(Reverse(Queued { ts: pkt.ts, n: self.queued, pkt }));
    }

    pub(crate) fn extend(&mut self, pkts: impl IntoIterator<Item = Pkt>) {
        for p in pkts {
            self.push(p);
        }
    }

    fn peek_ts(&self) -> Option<u64> {
        self.heap.peek().map(|q| q.0.ts)
    }

    fn pop(&mut self) -> Option<Pkt> {
        self.heap.pop().map(|q| q.0.pkt)
    }

    /// Packets waiting.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// Events of one attack (or one part of it), in non-decreasing start time.
pub(crate) trait Source: std::fmt::Debug {
    /// Start time of the next event; `None` once every event is expanded.
    fn next_event(&self) -> Option<u64>;
    /// Expands the next event: queues its packets, none earlier than its start.
    fn expand(&mut self, out: &mut Pending);
}

/// A source whose packets are all known in advance: one event at its earliest packet.
#[derive(Debug)]
pub(crate) struct Eager {
    at: u64,
    pkts: Option<Vec<Pkt>>,
}

impl Eager {
    pub(crate) fn new(pkts: Vec<Pkt>) -> Eager {
        let at = pkts.iter().map(|p| p.ts).min().unwrap_or(0);
        Eager { at, pkts: Some(pkts) }
    }
}

impl Source for Eager {
    fn next_event(&self) -> Option<u64> {
        self.pkts.as_ref().map(|_| self.at)
    }

    fn expand(&mut self, out: &mut Pending) {
        if let Some(p) = self.pkts.take() {
            out.extend(p);
        }
    }
}

/// A source and its expanded packets.
#[derive(Debug)]
pub(crate) struct Script {
    source: Box<dyn Source>,
    pending: Pending,
}

impl Script {
    pub(crate) fn new(source: Box<dyn Source>) -> Script {
        Script { source, pending: Pending::default() }
    }

    /// A script of packets known in advance.
    pub(crate) fn eager(pkts: Vec<Pkt>) -> Script {
        Script::new(Box::new(Eager::new(pkts)))
    }

    /// Time of the next packet, expanding events until no later event can come before it.
    fn next_ts(&mut self) -> Option<u64> {
        loop {
            match (self.pending.peek_ts(), self.source.next_event()) {
                (Some(p), Some(e)) if p <= e => return Some(p),
                (p, None) => return p,
                (_, Some(_)) => self.source.expand(&mut self.pending),
            }
        }
    }

    /// Packets expanded but not handed out.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// Every attack script of a run, merged by packet time (ties go to the lower script).
#[derive(Debug)]
pub(crate) struct AttackStream {
    scripts: Vec<Script>,
    due: BinaryHeap<Reverse<(u64, usize)>>,
    /// Most packets pending at once in one script (for tests of memory use).
    pub(crate) peak_pending: usize,
}

impl AttackStream {
    pub(crate) fn new(mut scripts: Vec<Script>) -> AttackStream {
        let mut due = BinaryHeap::with_capacity(scripts.len());
        for (i, s) in scripts.iter_mut().enumerate() {
            if let Some(ts) = s.next_ts() {
                due.push(Reverse((ts, i)));
            }
        }
        AttackStream { scripts, due, peak_pending: 0 }
    }

    /// Time of the next packet.
    pub(crate) fn peek_ts(&self) -> Option<u64> {
        self.due.peek().map(|r| r.0.0)
    }

    /// The next packet in time order.
    pub(crate) fn pop(&mut self) -> Option<Pkt> {
        let Reverse((_, i)) = self.due.pop()?;
        let script = self.scripts.get_mut(i)?;
        let pkt = script.pending.pop();
        if let Some(ts) = script.next_ts() {
            self.due.push(Reverse((ts, i)));
        }
        self.peak_pending = self.peak_pending.max(script.pending.len());
        pkt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::packet::{Data, Tag};
    use crate::frame::udp;

    fn pkt(ts: u64, attack: u16) -> Pkt {
        Pkt {
            ts,
            tag: Tag { attack, phase: 0 },
            src: "203.0.113.1".parse().unwrap(),
            dst: "192.168.1.10".parse().unwrap(),
            ttl: 64,
            ip_id: 0,
            l4: udp(1, 2),
            data: Data::None,
        }
    }

    /// One packet per event, each answered `reply` later.
    #[derive(Debug)]
    struct Ticks {
        next: u64,
        end: u64,
        step: u64,
        reply: u64,
    }

    impl Source for Ticks {
        fn next_event(&self) -> Option<u64> {
            (self.next < self.end).then_some(self.next)
        }

        fn expand(&mut self, out: &mut Pending) {
            out.push(pkt(self.next, 1));
            out.push(pkt(self.next + self.reply, 1));
            self.next += self.step;
        }
    }

    #[test]
    fn scripts_merge_in_time_order_and_expand_lazily() {
        let eager = Script::eager(vec![pkt(50, 0), pkt(5, 0), pkt(5_000, 0)]);
        let ticks = Script::new(Box::new(Ticks { next: 0, end: 10_000, step: 10, reply: 35 }));
        let mut stream = AttackStream::new(vec![eager, ticks]);
        let mut last = 0;
        let mut n = 0;
        while let Some(p) = stream.pop() {
            assert!(p.ts >= last, "{} after {last}", p.ts);
            last = p.ts;
            n += 1;
        }
        assert_eq!(n, 3 + 2 * 1000);
        // Replies 35 ns after ticks 10 ns apart: about four ticks in flight.
        assert!(stream.peak_pending <= 8, "{}", stream.peak_pending);
        assert_eq!(stream.scripts[1].pending(), 0);
    }
}
