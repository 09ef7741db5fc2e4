//! [`RoundRobin`]: several live sources (one AF_XDP socket per receive queue) read in turn by
//! one receive thread.
//!
//! Each member is asked for a batch in turn without waiting; when a whole round brought
//! nothing, the thread sleeps in one `poll(2)` on every member's descriptor (up to the poll
//! timeout), so an idle capture costs no CPU and a busy queue is served within one round.
//! Frames of a member's batch stay lent until that member is asked again (the pipeline copies
//! them into worker blocks before that).

use std::os::fd::RawFd;

use outpost_decode::Nanos;

use crate::error::SourceError;
use crate::source::{Batch, PacketSource, SourceStats};

/// Live sources read in turn.
#[derive(Debug)]
pub struct RoundRobin<S> {
    members: Vec<S>,
    next: usize,
    poll_timeout_ms: i32,
    pollfds: Vec<libc::pollfd>,
}

impl<S: PacketSource> RoundRobin<S> {
    /// Reads `members` in turn; each is set not to wait on its own.
    #[must_use]
    pub fn new(mut members: Vec<S>) -> RoundRobin<S> {
        for m in &mut members {
            m.set_poll_timeout(0);
        }
        let pollfds = members
            .iter()
            .filter_map(PacketSource::poll_fd)
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        RoundRobin { members, next: 0, poll_timeout_ms: 100, pollfds }
    }

    /// The members.
    #[must_use]
    pub fn members(&self) -> &[S] {
        &self.members
    }
}

impl<S: PacketSource> PacketSource for RoundRobin<S> {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        let n = self.members.len();
        if n == 0 {
            return Ok(None);
        }
        // Find a member with frames without borrowing across the loop: first a probe, then
        // the batch itself from that member.
        let mut found = None;
        for round in 0..2 {
            for k in 0..n {
                let i = (self.next + k) % n;
                let has = self.members.get_mut(i).is_some_and(|m| m.has_pending());
                if has {
                    found = Some(i);
                    break;
                }
            }
            if found.is_some() || round == 1 {
                break;
            }
            // Nothing pending anywhere: wait on every descriptor.
            for p in &mut self.pollfds {
                p.revents = 0;
            }
            // SAFETY: `pollfds` is a valid array of its length.
            unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    self.poll_timeout_ms,
                );
            }
        }
        let i = found.unwrap_or(self.next);
        self.next = (i + 1) % n;
        match self.members.get_mut(i) {
            Some(m) => m.next_batch(),
            None => Ok(None),
        }
    }

    fn stats(&self) -> SourceStats {
        let mut s = SourceStats::default();
        for m in &self.members {
            let t = m.stats();
            s.frames += t.frames;
            s.bytes += t.bytes;
            s.records += t.records;
            s.dropped += t.dropped;
            s.unsupported_link += t.unsupported_link;
        }
        s
    }

    fn idle_time(&self) -> Option<Nanos> {
        self.members.iter().find_map(PacketSource::idle_time)
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn set_poll_timeout(&mut self, ms: i32) {
        self.poll_timeout_ms = ms;
    }
}
