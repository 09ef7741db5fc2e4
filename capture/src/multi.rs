//! Several live sources (one AF_XDP socket per receive queue) as one:
//! - [`QueueThreads`]: a thread per queue copies its frames into chunks for the receive
//!   thread (the default of `outpost run` with several queues);
//! - [`RoundRobin`]: the receive thread reads the queues in turn itself (fewer threads, for
//!   small machines).
//!
//! # RoundRobin
//!
//! Each member is asked for a batch in turn without waiting; when a whole round brought
//! nothing, the thread sleeps in one `poll(2)` on every member's descriptor (up to the poll
//! timeout), so an idle capture costs no CPU and a busy queue is served within one round.
//! Frames of a member's batch stay lent until that member is asked again (the pipeline copies
//! them into worker blocks before that).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outpost_decode::Nanos;
use rtrb::{Consumer, Producer, RingBuffer};

use crate::error::SourceError;
use crate::source::{Batch, FrameDesc, PacketSource, SourceStats};
use crate::wait::{Backoff, Doorbell};

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

/// Frames copied out of one queue's batches: the unit a [`QueueThreads`] reader hands over.
#[derive(Debug, Default)]
struct Chunk {
    data: Vec<u8>,
    descs: Vec<FrameDesc>,
}

/// Per-queue counters of a [`QueueThreads`] reader (relaxed atomics, published after every
/// batch; for statistics, never for control).
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Frames read from the queue's socket.
    pub frames: AtomicU64,
    /// Captured bytes read.
    pub bytes: AtomicU64,
    /// Frames the socket reports lost (the kernel's counters, refreshed about every 64
    /// batches and when idle).
    pub socket_dropped: AtomicU64,
    /// Frames dropped because the receive thread had not taken the queue's earlier chunks
    /// (all `chunks` in flight): the reader never waits, so the socket's ring keeps draining.
    pub chunk_drops: AtomicU64,
}

/// Sizes of [`QueueThreads`].
#[derive(Clone, Debug)]
pub struct QueueThreadOptions {
    /// Frames per chunk handed from a queue's thread to the receive thread. Default 256.
    pub chunk_frames: usize,
    /// Chunks in flight per queue. Default 64.
    pub chunks: usize,
    /// Core to pin queue `q`'s thread to: `cores[q % cores.len()]`. Empty: no pinning.
    pub cores: Vec<usize>,
    /// How long the receive thread waits for any queue before reporting idle (an empty
    /// batch, so the pipeline's clock moves on). Default 100 ms.
    pub idle_after: Duration,
}

impl Default for QueueThreadOptions {
    fn default() -> QueueThreadOptions {
        QueueThreadOptions {
            chunk_frames: 256,
            chunks: 64,
            cores: Vec::new(),
            idle_after: Duration::from_millis(100),
        }
    }
}

/// One queue's thread, seen from the receive thread.
#[derive(Debug)]
struct QueueLink {
    full: Consumer<Chunk>,
    empty: Producer<Chunk>,
    done: Arc<AtomicBool>,
}

/// One thread per receive queue (the NIC's RSS spreads load over queues; each queue's socket
/// gets a core of its own to drain it), feeding the pipeline's single receive thread, which
/// shards frames to the workers as for any source.
///
/// Each queue thread reads batches from its socket, copies the frames into a recycled
/// [`Chunk`] — returning the socket's frames (UMEM) to the kernel at once — and passes the
/// chunk over an SPSC ring. The receive thread takes, from the queues with chunks waiting,
/// the one whose first frame is oldest, so frames of different queues reach the workers in
/// roughly capture order (queues have no common order; within a queue order is kept).
/// Record numbers are renumbered across queues, so each frame has its own.
///
/// Nothing waits on a slower stage: when a queue's chunks are all in flight its thread drops
/// the batch and counts it ([`QueueCounters::chunk_drops`]).
#[derive(Debug)]
pub struct QueueThreads {
    links: Vec<QueueLink>,
    counters: Arc<Vec<QueueCounters>>,
    errors: Arc<std::sync::Mutex<Vec<SourceError>>>,
    /// The chunk lent out by the last batch, and its queue.
    lent: Option<(usize, Chunk)>,
    bell: Doorbell,
    bound: bool,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    idle_after: Duration,
    next_record: u64,
    delivered: SourceStats,
}

impl QueueThreads {
    /// Starts one thread per member (queue socket).
    ///
    /// # Errors
    /// [`SourceError::Live`] when a thread cannot be started.
    pub fn start<S: PacketSource + 'static>(
        members: Vec<S>,
        options: &QueueThreadOptions,
    ) -> Result<QueueThreads, SourceError> {
        let counters: Arc<Vec<QueueCounters>> =
            Arc::new((0..members.len()).map(|_| QueueCounters::default()).collect());
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let bell = Doorbell::new();
        let stop = Arc::new(AtomicBool::new(false));
        let chunks = options.chunks.max(2);
        let chunk_frames = options.chunk_frames.max(1);
        let mut links = Vec::with_capacity(members.len());
        let mut threads: Vec<std::thread::JoinHandle<()>> = Vec::with_capacity(members.len());
        for (q, member) in members.into_iter().enumerate() {
            let (full_tx, full_rx) = RingBuffer::<Chunk>::new(chunks);
            let (mut empty_tx, empty_rx) = RingBuffer::<Chunk>::new(chunks);
            for _ in 0..chunks {
                let _ = empty_tx.push(Chunk {
                    data: Vec::with_capacity(chunk_frames * 1024),
                    descs: Vec::with_capacity(chunk_frames),
                });
            }
            let done = Arc::new(AtomicBool::new(false));
            let reader = QueueReader {
                source: member,
                full: full_tx,
                empty: empty_rx,
                chunk_frames,
                bell: bell.clone(),
                stop: stop.clone(),
                done: done.clone(),
                counters: counters.clone(),
                index: q,
                errors: errors.clone(),
            };
            let core = options.cores.get(q % options.cores.len().max(1)).copied();
            let spawned = std::thread::Builder::new().name(format!("outpost-rx-{q}")).spawn(move || {
                if let Some(c) = core {
                    // A failed pin leaves the thread unpinned; `outpost run` reports the
                    // cores it asked for.
                    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                reader.run();
            });
            let handle = match spawned {
                Ok(h) => h,
                Err(source) => {
                    // The readers already started stop with their sockets.
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(SourceError::Live {
                        interface: format!("queue {q}"),
                        what: "starting its receive thread".into(),
                        source,
                    });
                }
            };
            threads.push(handle);
            links.push(QueueLink { full: full_rx, empty: empty_tx, done });
        }
        Ok(QueueThreads {
            links,
            counters,
            errors,
            lent: None,
            bell,
            bound: false,
            stop,
            threads,
            idle_after: options.idle_after,
            next_record: 0,
            delivered: SourceStats::default(),
        })
    }

    /// The per-queue counters (shared: readable while the capture runs on another thread).
    #[must_use]
    pub fn counters(&self) -> Arc<Vec<QueueCounters>> {
        self.counters.clone()
    }

    /// The queue whose waiting chunk starts with the oldest frame.
    fn oldest_ready(&self) -> Option<usize> {
        let mut best: Option<(usize, Nanos)> = None;
        for (q, l) in self.links.iter().enumerate() {
            if let Ok(c) = l.full.peek() {
                let ts = c.descs.first().map_or(Nanos::ZERO, |d| d.ts);
                if best.is_none_or(|(_, t)| ts < t) {
                    best = Some((q, ts));
                }
            }
        }
        best.map(|(q, _)| q)
    }
}

impl PacketSource for QueueThreads {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        if !self.bound {
            self.bell.bind_current();
            self.bound = true;
        }
        if let Some((q, chunk)) = self.lent.take() {
            if let Some(l) = self.links.get_mut(q) {
                // The ring holds every chunk of its queue, so this cannot fail.
                let _ = l.empty.push(chunk);
            }
        }
        if let Some(e) = self.errors.lock().ok().and_then(|mut v| (!v.is_empty()).then(|| v.remove(0))) {
            return Err(e);
        }
        let deadline = Instant::now() + self.idle_after;
        let mut backoff = Backoff::new();
        let q = loop {
            if let Some(q) = self.oldest_ready() {
                break q;
            }
            if self.links.iter().all(|l| l.done.load(Ordering::Acquire) && l.full.is_empty()) {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Ok(Some(Batch::new(&[], &[])));
            }
            let links = &self.links;
            backoff.snooze(&self.bell, || links.iter().any(|l| !l.full.is_empty()));
        };
        let Some(mut chunk) = self.links.get_mut(q).and_then(|l| l.full.pop().ok()) else {
            return Ok(Some(Batch::new(&[], &[])));
        };
        for d in &mut chunk.descs {
            d.record = self.next_record;
            self.next_record += 1;
        }
        self.delivered.frames += chunk.descs.len() as u64;
        self.delivered.records += chunk.descs.len() as u64;
        self.delivered.bytes += chunk.data.len() as u64;
        let (_, chunk) = self.lent.insert((q, chunk));
        Ok(Some(Batch::new(&chunk.data, &chunk.descs)))
    }

    fn stats(&self) -> SourceStats {
        let mut s = self.delivered.clone();
        for c in self.counters.iter() {
            s.dropped += c.socket_dropped.load(Ordering::Relaxed) + c.chunk_drops.load(Ordering::Relaxed);
        }
        s
    }

    fn idle_time(&self) -> Option<Nanos> {
        Some(crate::af_xdp::realtime_now())
    }

    fn set_poll_timeout(&mut self, ms: i32) {
        self.idle_after = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    }

    fn has_pending(&mut self) -> bool {
        self.links.iter().any(|l| !l.full.is_empty())
    }

    /// Stops and joins the queue threads; each hands over the chunk it was filling. The
    /// chunks waiting are then delivered by `next_batch` (oldest first), which ends with
    /// `Ok(None)`: every frame a queue thread counted is then either delivered or counted as a
    /// chunk drop.
    fn shutdown(&mut self) -> bool {
        self.stop_readers();
        true
    }
}

impl QueueThreads {
    fn stop_readers(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for QueueThreads {
    fn drop(&mut self) {
        self.stop_readers();
    }
}

/// A queue's thread: reads its socket and hands chunks of copied frames on.
struct QueueReader<S> {
    source: S,
    full: Producer<Chunk>,
    empty: Consumer<Chunk>,
    chunk_frames: usize,
    bell: Doorbell,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    counters: Arc<Vec<QueueCounters>>,
    index: usize,
    errors: Arc<std::sync::Mutex<Vec<SourceError>>>,
}

impl<S: PacketSource> QueueReader<S> {
    fn run(mut self) {
        let mut batches = 0u64;
        let mut current: Option<Chunk> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let (frames, bytes, idle) = match self.source.next_batch() {
                Ok(Some(batch)) if batch.is_empty() => (0, 0, true),
                Ok(Some(batch)) => {
                    let (mut frames, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
                    for f in batch.iter() {
                        frames += 1;
                        bytes += f.data.len() as u64;
                        if current.is_none() {
                            current = self.empty.pop().ok().map(|mut c| {
                                c.data.clear();
                                c.descs.clear();
                                c
                            });
                        }
                        let Some(c) = current.as_mut() else {
                            dropped += 1;
                            continue;
                        };
                        let offset = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
                        c.data.extend_from_slice(f.data);
                        c.descs.push(FrameDesc {
                            ts: f.ts,
                            offset,
                            len: u32::try_from(f.data.len()).unwrap_or(u32::MAX),
                            wire_len: f.wire_len,
                            link: f.link,
                            record: 0,
                        });
                        if c.descs.len() >= self.chunk_frames {
                            hand_over(&mut self.full, &self.bell, &mut current);
                        }
                    }
                    hand_over(&mut self.full, &self.bell, &mut current);
                    if let Some(c) = self.counters.get(self.index) {
                        c.chunk_drops.fetch_add(dropped, Ordering::Relaxed);
                    }
                    (frames, bytes, false)
                }
                Ok(None) => break,
                Err(e) => {
                    // A failing socket ends its queue's reading (reported once, in order): a
                    // reader looping on a persistent error would flood the receive thread with
                    // errors and starve the healthy queues.
                    if let Ok(mut v) = self.errors.lock() {
                        v.push(e);
                    }
                    break;
                }
            };
            batches += 1;
            if let Some(c) = self.counters.get(self.index) {
                c.frames.fetch_add(frames, Ordering::Relaxed);
                c.bytes.fetch_add(bytes, Ordering::Relaxed);
                if idle || batches.is_multiple_of(64) {
                    c.socket_dropped.store(self.source.stats().dropped, Ordering::Relaxed);
                }
            }
        }
        hand_over(&mut self.full, &self.bell, &mut current);
        if let Some(c) = self.counters.get(self.index) {
            c.socket_dropped.store(self.source.stats().dropped, Ordering::Relaxed);
        }
        self.done.store(true, Ordering::Release);
        self.bell.ring();
    }
}

/// Passes the chunk being filled to the receive thread (the ring always has room: it holds
/// every chunk of its queue).
fn hand_over(full: &mut Producer<Chunk>, bell: &Doorbell, current: &mut Option<Chunk>) {
    if let Some(c) = current.take() {
        if c.descs.is_empty() {
            *current = Some(c);
            return;
        }
        let _ = full.push(c);
        bell.ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemorySource;
    use outpost_decode::LinkType;

    /// A queue of `n` frames whose first byte is `tag` and whose timestamps are `start + 10·i`.
    fn queue(tag: u8, n: u64, start: u64, batch: usize) -> MemorySource {
        let mut m = MemorySource::new(batch);
        for i in 0..n {
            let frame = [tag, (i >> 8) as u8, i as u8, 0, 0, 0];
            m.push(LinkType::Ethernet, Nanos(start + 10 * i), &frame);
        }
        m
    }

    fn drain(mut q: QueueThreads) -> (Vec<(u8, u16, Nanos, u64)>, SourceStats) {
        let mut seen = Vec::new();
        while let Some(batch) = q.next_batch().expect("memory queues do not fail") {
            for f in batch.iter() {
                let n = u16::from_be_bytes([f.data[1], f.data[2]]);
                seen.push((f.data[0], n, f.ts, f.record));
            }
        }
        let stats = q.stats();
        (seen, stats)
    }

    #[test]
    fn every_frame_of_every_queue_arrives_once_in_queue_order() {
        // Room for every frame (chunks hold 7 frames: 1000 frames need 143): memory queues are
        // read far faster than they are consumed.
        let options = QueueThreadOptions { chunk_frames: 7, chunks: 160, ..QueueThreadOptions::default() };
        let q = QueueThreads::start(vec![queue(1, 1000, 0, 13), queue(2, 700, 5, 5)], &options)
            .expect("threads start");
        let counters = q.counters();
        let (seen, stats) = drain(q);
        assert_eq!(seen.len(), 1700);
        for tag in [1u8, 2] {
            let order: Vec<u16> = seen.iter().filter(|s| s.0 == tag).map(|s| s.1).collect();
            let expected: Vec<u16> = (0..if tag == 1 { 1000 } else { 700 }).collect();
            assert_eq!(order, expected, "queue {tag} keeps its order");
        }
        let records: Vec<u64> = seen.iter().map(|s| s.3).collect();
        assert_eq!(records, (0..1700).collect::<Vec<u64>>(), "records are renumbered across queues");
        assert_eq!(stats.frames, 1700);
        assert_eq!(stats.dropped, 0);
        assert_eq!(counters[0].frames.load(Ordering::Relaxed), 1000);
        assert_eq!(counters[1].frames.load(Ordering::Relaxed), 700);
    }

    #[test]
    fn the_oldest_waiting_chunk_goes_first() {
        // Both queues are read completely before the consumer starts, so every chunk waits:
        // the merge by first timestamp then yields whole chunks in time order.
        let options = QueueThreadOptions { chunk_frames: 10, chunks: 64, ..QueueThreadOptions::default() };
        let q = QueueThreads::start(vec![queue(1, 100, 0, 10), queue(2, 100, 5, 10)], &options)
            .expect("threads start");
        let counters = q.counters();
        while counters.iter().map(|c| c.frames.load(Ordering::Relaxed)).sum::<u64>() < 200 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (seen, _) = drain(q);
        let firsts: Vec<Nanos> = seen.chunks(10).map(|c| c[0].2).collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        assert_eq!(firsts, sorted);
    }

    #[test]
    fn frames_read_before_a_stop_are_delivered_or_counted_as_dropped() {
        // Endless-looking queues (far more frames than fit in their chunks), stopped while
        // their threads are still reading and after a few batches were taken.
        let options = QueueThreadOptions { chunk_frames: 16, chunks: 8, ..QueueThreadOptions::default() };
        let mut q = QueueThreads::start(vec![queue(1, 60_000, 0, 8), queue(2, 60_000, 5, 8)], &options)
            .expect("threads start");
        let counters = q.counters();
        let mut taken = 0u64;
        while taken < 100 {
            if let Some(b) = q.next_batch().expect("memory queues do not fail") {
                taken += b.len() as u64;
            }
        }
        assert!(q.shutdown(), "queue threads hold frames to drain");
        let (rest, stats) = drain(q);
        let read: u64 = counters.iter().map(|c| c.frames.load(Ordering::Relaxed)).sum();
        let chunk_drops: u64 = counters.iter().map(|c| c.chunk_drops.load(Ordering::Relaxed)).sum();
        assert_eq!(stats.frames, taken + rest.len() as u64);
        assert_eq!(stats.frames + chunk_drops, read, "every frame read is delivered or counted");
        assert_eq!(stats.dropped, chunk_drops);
    }

    #[test]
    fn a_queue_whose_chunks_are_all_in_flight_drops_and_counts() {
        // Two chunks of 4 frames and nobody reading until the queue is done: 8 frames fit.
        let options = QueueThreadOptions { chunk_frames: 4, chunks: 2, ..QueueThreadOptions::default() };
        let q = QueueThreads::start(vec![queue(1, 100, 0, 4)], &options).expect("threads start");
        let counters = q.counters();
        while counters[0].frames.load(Ordering::Relaxed) < 100 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (seen, stats) = drain(q);
        assert_eq!(seen.len(), 8);
        assert_eq!(counters[0].chunk_drops.load(Ordering::Relaxed), 92);
        assert_eq!(stats.dropped, 92);
    }
}
