//! The worker pipeline: one receive thread, N pinned workers, one ordered collector.
//!
//! ```text
//!  PacketSource ─► receive thread ──shard by source IP──► SPSC ring w ──► worker w (WorkerStage)
//!                   (Dispatcher)    ◄── return ring w (empty blocks) ───┘        │ records
//!                                                                               ▼
//!                                              caller's thread ◄── SPSC ring ── Emitter
//!                                              (Merger: records in input order)
//! ```
//!
//! # Guarantees
//! - **Sharding.** A frame goes to worker `shard(src IP)` ([`outpost_decode::shard_hash`]), so all
//!   state keyed by a source address lives on exactly one worker; with
//!   [`Sharding::SourceAndPair`] also to the owner of its address pair (both directions of a
//!   conversation), each copy marked with its [`Roles`]. Frames without IP addresses (ARP,
//!   other EtherTypes, malformed) go to worker 0.
//! - **Order per worker.** A worker sees its frames in input order.
//! - **Deterministic output.** Frames and clock ticks share one sequence counter (the input's
//!   total order). Records carry the sequence number of the frame or tick that caused them and
//!   reach the caller in `(seq, worker, emission order)` order, which for a given input and
//!   worker count is the same in every run — and, for records caused by frames, the order a
//!   single thread would produce. A record is released only once every worker has processed all
//!   input before it. [`Merged::Watermark`]s come at deterministic points too (after the records
//!   of each clock tick), so window logic driven by them is reproducible.
//! - **Event time.** Each block ends with a clock tick: the receive side's clock (the latest
//!   capture timestamp read, or a live source's idle clock). Workers call
//!   [`WorkerStage::on_clock`] after every block, and every worker receives a block after every
//!   source batch, so timeouts fire on every worker as input time advances, even on workers that
//!   received no frames. Before the input's first frame (or a live source's first idle clock)
//!   every worker gets a tick at that time, so all of them know when the input began.
//! - **No allocation per frame.** Frames are copied into recycled [`FrameBlock`]s; records cross
//!   threads in a bounded ring.
//! - **Backpressure.** With [`Backpressure::Wait`] (replay) the receive thread waits for a full
//!   worker ring and nothing is lost. With [`Backpressure::Drop`] (live capture) it drops the
//!   block's frames and counts them per worker, so a slow worker can never stall the NIC ring.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use outpost_decode::{Nanos, shard_hash, shard_hashes};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::block::{BlockLimits, FrameBlock, InputPos, Roles};
use crate::error::SourceError;
use crate::source::{Batch, Frame, PacketSource, SourceStats};
use crate::wait::{Backoff, Doorbell};

/// What a worker does with its frames. One instance per worker thread, owning all of that
/// worker's state (decoder counters, flow table, rule state).
pub trait WorkerStage: Send + 'static {
    /// Output records (alerts, flow records, ...).
    type Record: Send + 'static;
    /// Counters handed back when the worker finishes.
    type Stats: Send + 'static;

    /// Processes one frame. Records emitted here carry `pos.seq`.
    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Emitter<Self::Record, Self::Stats>);

    /// Processes a block of frames, in order. The default calls [`WorkerStage::on_frame`] for
    /// each; a stage overrides it to work on several frames at once (e.g. to prefetch).
    /// Records must still be emitted in the order of the frames that cause them.
    fn on_block(&mut self, block: &FrameBlock, out: &mut Emitter<Self::Record, Self::Stats>) {
        for (pos, frame) in block.iter() {
            self.on_frame(pos, frame, out);
        }
    }

    /// Input time advanced to `now` (≥ every frame of the block just processed). `seq` is the
    /// tick's sequence number; records caused by time (timeouts, windows) carry it.
    fn on_clock(&mut self, now: Nanos, seq: u64, out: &mut Emitter<Self::Record, Self::Stats>);

    /// The pipeline entered epoch `epoch` at sequence number `seq` (see [`EpochRequest`]):
    /// called once per epoch change, after every frame with a smaller `seq` and before every
    /// frame with a larger one — at the same point of the input in every worker. Records
    /// emitted here carry `seq`. The default does nothing.
    fn on_epoch(&mut self, epoch: u64, seq: u64, out: &mut Emitter<Self::Record, Self::Stats>) {
        let _ = (epoch, seq, out);
    }

    /// End of input: emit everything still pending (flush windows, flows) and return the
    /// counters. `seq` is larger than every sequence number of the input; records emitted here
    /// carry it.
    fn finish(self, seq: u64, out: &mut Emitter<Self::Record, Self::Stats>) -> Self::Stats;
}

/// What the receive thread does when a worker's ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait for the worker (offline replay: lossless).
    #[default]
    Wait,
    /// Drop the frames and count them (live capture: never stall the capture ring).
    Drop,
}

/// Which worker(s) a frame goes to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharding {
    /// To the owner of its source address only, with [`Roles::BOTH`]. Enough when all state
    /// is kept per source.
    #[default]
    Source,
    /// To the owner of its address pair ([`outpost_decode::IpAddress::pair_hash`], the same
    /// for both directions of a conversation) with [`Roles::PAIR`], and to the owner of its
    /// source address with [`Roles::SOURCE`] — one copy with [`Roles::BOTH`] when they are the
    /// same worker. Per-conversation state (flows) and per-source state (detection) both stay
    /// on one worker each, at the price of a second copy and decode for most frames when
    /// there are several workers.
    SourceAndPair,
}

/// Pipeline settings.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Number of worker threads (at least 1).
    pub workers: usize,
    /// Cores to pin workers to: worker `w` runs on `cores[w % cores.len()]`. Empty: no pinning.
    pub worker_cores: Vec<usize>,
    /// Core for the receive thread, if pinned.
    pub receive_core: Option<usize>,
    /// Block size.
    pub block: BlockLimits,
    /// Blocks in flight per worker (ring capacity, default 64: up to 16 MiB of 256 KiB
    /// blocks, a few milliseconds of a worker's work, so a receive thread that waits for half
    /// a ring to empty is back before the worker runs dry).
    pub ring_blocks: usize,
    /// Records in flight per worker toward the collector (default 65536).
    pub record_ring: usize,
    /// Full-ring policy.
    pub backpressure: Backpressure,
    /// How frames are spread over workers.
    pub sharding: Sharding,
    /// Counters the receive thread publishes as it goes (for periodic statistics of a live
    /// capture); `None`: not published.
    pub progress: Option<Arc<Progress>>,
    /// When partly filled blocks go to the workers.
    pub flush: FlushPolicy,
    /// Epoch changes asked for while the pipeline runs (a rule reload); `None`: never.
    pub epochs: Option<Arc<EpochRequest>>,
}

/// Asks a running pipeline to move its workers to a new epoch — e.g. a newly compiled rule
/// set, which the caller publishes where its stages find it before asking. The receive thread
/// notices the request between two batches of the source: it flushes every worker, takes a
/// sequence number of its own for the change, and stamps every later block with the new epoch;
/// each worker then calls [`WorkerStage::on_epoch`] before its first frame after that number.
/// So the change happens at one point of the input for all workers, between batches, and the
/// collector sees the records of the old epoch before those of the new one. Epochs only grow;
/// asking for several in quick succession may skip to the last.
#[derive(Debug, Default)]
pub struct EpochRequest(AtomicU64);

impl EpochRequest {
    /// Asks for epoch `epoch` (ignored unless larger than every epoch asked for before).
    pub fn request(&self, epoch: u64) {
        self.0.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The latest epoch asked for (0: none).
    #[must_use]
    pub fn requested(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// When the receive thread sends partly filled blocks (full blocks always go at once).
///
/// Every flush sends each worker a block, even an empty one, carrying a clock tick the worker
/// acts on (timeouts, windows): flushes cost the workers work and ring slots regardless of how
/// many frames they carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every source batch (default). Right for files, whose batches are large; ticks then
    /// fall at the same input positions in every run, which keeps replay output deterministic.
    #[default]
    EveryBatch,
    /// At most once per interval while frames arrive, and whenever the source is idle; a
    /// worker whose ring is three-quarters full is skipped ([`Dispatcher::flush_unless_behind`]).
    /// Right
    /// for live sockets, whose batches are whatever arrived since the last poll — often a few
    /// frames: flushing after each would send the workers thousands of nearly empty blocks a
    /// second and fill their rings with ticks. A frame waits at most the interval while
    /// traffic flows, and at most the source's poll timeout when it stops.
    Interval(Duration),
}

/// The receive thread's counters, published after every source batch (relaxed atomics: each
/// value is current within one batch; they are for statistics, never for control).
#[derive(Debug, Default)]
pub struct Progress {
    /// Frames read from the source.
    pub frames: AtomicU64,
    /// Captured bytes read from the source.
    pub bytes: AtomicU64,
    /// Frames the source reports lost before delivery (kernel or ring drops), refreshed about
    /// every 64 batches and when idle.
    pub source_dropped: AtomicU64,
    /// Frames handed to each worker.
    pub per_worker: Vec<AtomicU64>,
    /// Frames dropped at each worker's full ring.
    pub ring_full_drops: Vec<AtomicU64>,
}

impl Progress {
    /// Counters for `workers` workers.
    #[must_use]
    pub fn new(workers: usize) -> Progress {
        Progress {
            per_worker: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ring_full_drops: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Progress::default()
        }
    }

    fn publish(&self, d: &DispatchStats, s: Option<&SourceStats>) {
        self.frames.store(d.frames, Ordering::Relaxed);
        self.bytes.store(d.bytes, Ordering::Relaxed);
        if let Some(s) = s {
            self.source_dropped.store(s.dropped, Ordering::Relaxed);
        }
        for (a, v) in self.per_worker.iter().zip(&d.per_worker) {
            a.store(*v, Ordering::Relaxed);
        }
        for (a, v) in self.ring_full_drops.iter().zip(&d.ring_full_drops) {
            a.store(*v, Ordering::Relaxed);
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> PipelineConfig {
        PipelineConfig {
            workers: 1,
            worker_cores: Vec::new(),
            receive_core: None,
            block: BlockLimits::default(),
            ring_blocks: 64,
            record_ring: 1 << 16,
            backpressure: Backpressure::Wait,
            sharding: Sharding::Source,
            progress: None,
            flush: FlushPolicy::EveryBatch,
            epochs: None,
        }
    }
}

/// Picks the worker for a shard hash: Lemire's multiply-shift reduction (no division).
#[inline]
#[must_use]
pub fn worker_for(hash: u64, workers: usize) -> usize {
    // The product's high 64 bits are < workers, so the conversion is exact.
    ((u128::from(hash) * workers as u128) >> 64) as usize
}

/// Counters of the receive thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Frames read from the source.
    pub frames: u64,
    /// Captured bytes of those frames.
    pub bytes: u64,
    /// Frames handed to each worker (a frame delivered to two workers counts for both).
    pub per_worker: Vec<u64>,
    /// Frames dropped because a worker's ring was full ([`Backpressure::Drop`]), per worker.
    pub ring_full_drops: Vec<u64>,
}

/// The receive side's half of one worker's rings.
#[derive(Debug)]
struct WorkerLink {
    tx: Producer<FrameBlock>,
    free: Consumer<FrameBlock>,
    current: FrameBlock,
    bell: Doorbell,
    allocated: usize,
    /// Flushes skipped in a row because the worker was behind.
    skipped: u32,
}

/// A worker that is behind skips at most this many flushes in a row: then it gets the tick
/// anyway, so watermarks (which need a tick every worker received) keep coming — merged rules,
/// windows and timeouts are judged — even while one worker stays overloaded.
const MAX_SKIPPED_FLUSHES: u32 = 16;

/// Splits batches of frames into per-worker blocks and sends them (runs on the receive thread).
#[derive(Debug)]
pub struct Dispatcher {
    links: Vec<WorkerLink>,
    limits: BlockLimits,
    max_blocks: usize,
    backpressure: Backpressure,
    sharding: Sharding,
    /// Next sequence number (frames and ticks).
    seq: u64,
    clock: Nanos,
    /// Whether the input's first frame (or clock) was announced to every worker.
    started: bool,
    own_bell: Doorbell,
    stats: DispatchStats,
    /// The current epoch and the sequence number it began at.
    epoch: (u64, u64),
}

impl Dispatcher {
    /// Copies every frame of `batch` into its worker's block (or, with
    /// [`Sharding::SourceAndPair`], its two workers' blocks), sending blocks that fill up.
    pub fn dispatch(&mut self, batch: &Batch<'_>) {
        let n = self.links.len();
        for frame in batch.iter() {
            if frame.ts > self.clock {
                self.clock = frame.ts;
            }
            if !self.started {
                self.start();
            }
            // The frame number is the source's record number: records it skipped still count,
            // as in Wireshark.
            let (seq, index) = (self.seq, frame.record);
            self.seq += 1;
            self.stats.frames += 1;
            self.stats.bytes += frame.data.len() as u64;
            if n == 1 {
                self.deliver(0, &frame, seq, index, Roles::BOTH);
                continue;
            }
            match self.sharding {
                Sharding::Source => {
                    let w = worker_for(shard_hash(frame.link, frame.data), n);
                    self.deliver(w, &frame, seq, index, Roles::BOTH);
                }
                Sharding::SourceAndPair => {
                    let h = shard_hashes(frame.link, frame.data);
                    let (ws, wp) = (worker_for(h.source, n), worker_for(h.pair, n));
                    if ws == wp {
                        self.deliver(ws, &frame, seq, index, Roles::BOTH);
                    } else {
                        // Input order per worker is kept: both copies go out in frame order.
                        self.deliver(wp, &frame, seq, index, Roles::PAIR);
                        self.deliver(ws, &frame, seq, index, Roles::SOURCE);
                    }
                }
            }
        }
    }

    #[inline]
    fn deliver(&mut self, w: usize, frame: &Frame<'_>, seq: u64, index: u64, roles: Roles) {
        let Some(link) = self.links.get_mut(w) else { return };
        link.current.push(frame, seq, index, roles);
        let full = link.current.is_full(self.limits);
        if let Some(c) = self.stats.per_worker.get_mut(w) {
            *c += 1;
        }
        if full {
            let tick = self.next_tick();
            self.send(w, tick);
        }
    }

    /// Moves the clock forward without frames (a live source's idle tick).
    pub fn advance_clock(&mut self, now: Nanos) {
        if now > self.clock {
            self.clock = now;
        }
        if !self.started {
            self.start();
        }
    }

    /// The input begins at the current clock: every worker gets a tick at that time before any
    /// frame, so all of them learn when the input began — whatever the worker count, and
    /// whether or not the first frames are theirs (rules that expect traffic from the start,
    /// like absence rules with listed senders, count from there).
    #[cold]
    fn start(&mut self) {
        self.started = true;
        self.flush();
    }

    /// Sends every worker its current block, even an empty one, so all workers learn the clock
    /// and the input position.
    pub fn flush(&mut self) {
        let tick = self.next_tick();
        for w in 0..self.links.len() {
            self.send(w, tick);
        }
    }

    /// Like [`Dispatcher::flush`], except that a worker whose ring is at least three-quarters
    /// full keeps its partly filled block and skips this tick (live capture,
    /// [`FlushPolicy::Interval`]): more nearly empty blocks would only take the ring slots its
    /// frames need while it catches up. Its frames go with its next full block or flush; a tick
    /// that skipped a worker makes no watermark. At most [`MAX_SKIPPED_FLUSHES`] in a row.
    pub fn flush_unless_behind(&mut self) {
        let tick = self.next_tick();
        for w in 0..self.links.len() {
            let Some(l) = self.links.get_mut(w) else { continue };
            let behind = l.tx.slots() < l.tx.buffer().capacity() / 4;
            if behind && l.skipped < MAX_SKIPPED_FLUSHES {
                l.skipped += 1;
            } else {
                l.skipped = 0;
                self.send(w, tick);
            }
        }
    }

    /// Moves to epoch `epoch` (larger than the current one) between two batches: every worker
    /// gets what it has so far, then the change takes a sequence number of its own, which
    /// every later block carries with the epoch.
    pub fn begin_epoch(&mut self, epoch: u64) {
        if epoch <= self.epoch.0 {
            return;
        }
        self.flush();
        let seq = self.next_tick();
        self.epoch = (epoch, seq);
    }

    fn next_tick(&mut self) -> u64 {
        let t = self.seq;
        self.seq += 1;
        t
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> &DispatchStats {
        &self.stats
    }

    fn send(&mut self, w: usize, tick: u64) {
        let Some(link) = self.links.get_mut(w) else { return };
        link.current.tick_seq = tick;
        link.current.clock = self.clock;
        (link.current.epoch, link.current.epoch_seq) = self.epoch;
        let mut backoff = Backoff::new();
        // Once the ring was full, wait until the worker has taken half of it (hysteresis):
        // the worker wakes this thread only then, so a worker that is the bottleneck wakes it
        // once per half ring instead of once per block.
        let resume = resume_slots(link.tx.buffer().capacity());
        let mut waited = false;
        while link.tx.is_full() || link.tx.is_abandoned() || (waited && link.tx.slots() < resume) {
            // A worker that is gone (it panicked) takes nothing more: drop, as under `Drop`.
            if self.backpressure == Backpressure::Drop || link.tx.is_abandoned() {
                if let Some(c) = self.stats.ring_full_drops.get_mut(w) {
                    *c += link.current.len() as u64;
                }
                link.current.clear();
                return;
            }
            waited = true;
            link.bell.ring();
            let tx = &link.tx;
            backoff.snooze(&self.own_bell, || tx.slots() >= resume || tx.is_abandoned());
        }
        // A replacement block: recycled, or new while fewer than `max_blocks` exist. With all
        // blocks allocated and the ring not full, the worker holds at most one, so a recycled
        // block arrives as soon as it finishes that one.
        let mut backoff = Backoff::new();
        let fresh = loop {
            if let Ok(mut b) = link.free.pop() {
                b.clear();
                break b;
            }
            if link.allocated < self.max_blocks {
                link.allocated += 1;
                break FrameBlock::new(self.limits);
            }
            let free = &link.free;
            backoff.snooze(&self.own_bell, || !free.is_empty());
        };
        let block = std::mem::replace(&mut link.current, fresh);
        // Single producer and the ring was not full: the push succeeds.
        if let Err(rtrb::PushError::Full(mut b)) = link.tx.push(block) {
            b.clear();
            link.current = b;
        }
        link.bell.ring();
    }
}

/// A worker's way to emit records and progress to the collector.
#[derive(Debug)]
pub struct Emitter<R, St> {
    tx: Producer<Out<R, St>>,
    collector: Doorbell,
    own_bell: Doorbell,
    /// Blocks finished since the collector was last woken.
    unannounced: u32,
}

/// The collector is woken after this many blocks (or sooner when a record ring fills up): it
/// is not latency-critical, and fewer wake-ups leave the cores to the workers. Its own
/// 1 ms park timeout bounds the delay.
const BLOCKS_PER_WAKE: u32 = 8;

/// Free slots of a worker's block ring (of `capacity` blocks) at which a receive thread that
/// found it full sends again: half the ring, at least one.
fn resume_slots(capacity: usize) -> usize {
    (capacity / 2).max(1)
}

/// Messages from a worker to the collector.
#[derive(Debug)]
enum Out<R, St> {
    Record {
        seq: u64,
        record: R,
    },
    /// Everything up to and including tick `tick_seq` has been emitted.
    Progress {
        tick_seq: u64,
        clock: Nanos,
    },
    Done(St),
}

impl<R, St> Emitter<R, St> {
    /// Emits a record caused by input position `seq`. Waits (rarely) when the collector is
    /// behind; records are never dropped while the collector runs (once it is gone, after a
    /// failure, nothing is waited for).
    pub fn emit(&mut self, seq: u64, record: R) {
        self.send(Out::Record { seq, record });
    }

    fn send(&mut self, mut msg: Out<R, St>) {
        let mut backoff = Backoff::new();
        loop {
            match self.tx.push(msg) {
                Ok(()) => return,
                // The collector is gone (it stopped after another worker failed): nobody
                // will take the record, and waiting would stall this worker for good.
                Err(rtrb::PushError::Full(_)) if self.tx.is_abandoned() => return,
                Err(rtrb::PushError::Full(m)) => {
                    msg = m;
                    self.collector.ring();
                    let tx = &self.tx;
                    backoff.snooze(&self.own_bell, || !tx.is_full());
                }
            }
        }
    }
}

/// A worker thread: process blocks in order until the receive side hangs up.
fn worker_loop<S: WorkerStage>(
    mut stage: S,
    mut rx: Consumer<FrameBlock>,
    mut free: Producer<FrameBlock>,
    mut out: Emitter<S::Record, S::Stats>,
    own_bell: &Doorbell,
    dispatcher_bell: &Doorbell,
) {
    let mut backoff = Backoff::new();
    let mut last_tick = 0;
    let mut epoch = 0;
    loop {
        match rx.pop() {
            Ok(block) => {
                backoff.reset();
                if block.epoch > epoch {
                    epoch = block.epoch;
                    stage.on_epoch(epoch, block.epoch_seq, &mut out);
                }
                stage.on_block(&block, &mut out);
                stage.on_clock(block.clock, block.tick_seq, &mut out);
                last_tick = block.tick_seq;
                out.send(Out::Progress { tick_seq: block.tick_seq, clock: block.clock });
                out.unannounced += 1;
                if out.unannounced >= BLOCKS_PER_WAKE || out.tx.slots() < out.tx.buffer().capacity() / 2 {
                    out.unannounced = 0;
                    out.collector.ring();
                }
                // The free ring holds every block that exists, so this cannot fail.
                let _ = free.push(block);
                // A receive thread waiting for room resumes at half a ring (`resume_slots`);
                // ringing earlier would only wake it to sleep again.
                let capacity = rx.buffer().capacity();
                if capacity - rx.slots() >= resume_slots(capacity) {
                    dispatcher_bell.ring();
                }
            }
            Err(_) => {
                if rx.is_abandoned() && rx.is_empty() {
                    break;
                }
                let rx = &rx;
                backoff.snooze(own_bell, || !rx.is_empty() || rx.is_abandoned());
            }
        }
    }
    // The last block is the final flush, which every worker receives: `last_tick + 1` is the
    // same on every worker and beyond the whole input.
    let stats = stage.finish(last_tick + 1, &mut out);
    out.send(Out::Done(stats));
    out.collector.ring();
}

/// What the collector hands to the caller, in deterministic order.
#[derive(Debug)]
pub enum Merged<R> {
    /// A record from a worker.
    Record {
        /// Input position that caused it.
        seq: u64,
        /// Worker that emitted it.
        worker: usize,
        /// The record.
        record: R,
    },
    /// Every worker has processed all input up to this event time, including the clock tick
    /// at it, and every record that tick caused has been handed over.
    Watermark(Nanos),
}

/// Per-worker merge state on the collector side.
#[derive(Debug)]
struct MergeInput<R, St> {
    rx: Consumer<Out<R, St>>,
    queue: VecDeque<(u64, R)>,
    /// Ticks reported and not yet released, in order.
    ticks: VecDeque<(u64, Nanos)>,
    /// The latest tick reported (everything up to it has been emitted).
    reported: Option<u64>,
    done: Option<St>,
}

impl<R, St> MergeInput<R, St> {
    /// Moves what the worker has sent into the queue — at most one ring's worth, so that the
    /// collector releases (and hands on) records between pumps instead of draining a worker
    /// that refills the ring as fast as it is emptied into an ever longer queue: when the
    /// collector is the slower side, the full ring makes the worker wait. Returns true if
    /// anything came.
    fn pump(&mut self) -> bool {
        let mut any = false;
        let mut left = self.rx.buffer().capacity();
        while left > 0 {
            let Ok(msg) = self.rx.pop() else { break };
            left -= 1;
            any = true;
            match msg {
                Out::Record { seq, record } => self.queue.push_back((seq, record)),
                Out::Progress { tick_seq, clock } => {
                    self.ticks.push_back((tick_seq, clock));
                    self.reported = Some(tick_seq);
                }
                Out::Done(st) => self.done = Some(st),
            }
        }
        any
    }
}

/// Merges the workers' record streams into one deterministic stream.
#[derive(Debug)]
struct Merger<R, St> {
    inputs: Vec<MergeInput<R, St>>,
    watermark: Nanos,
}

impl<R, St> Merger<R, St> {
    fn all_done(&self) -> bool {
        self.inputs.iter().all(|i| i.done.is_some())
    }

    /// Hands every final record to `sink` in order, with a watermark after each tick whose
    /// clock moved forward.
    fn release(&mut self, sink: &mut impl FnMut(Merged<R>)) {
        // The earliest tick some worker reported and not yet released.
        while let Some(target) = self.inputs.iter().filter_map(|i| i.ticks.front().map(|t| t.0)).min() {
            // Final once every unfinished worker has reported that tick or a later one.
            let complete =
                self.inputs.iter().all(|i| i.done.is_some() || i.reported.is_some_and(|r| r >= target));
            if !complete {
                break;
            }
            self.drain_through(target, sink);
            let mut clock = Nanos::ZERO;
            let mut everyone = true;
            for input in &mut self.inputs {
                match input.ticks.front() {
                    Some(&(t, c)) if t == target => {
                        input.ticks.pop_front();
                        clock = clock.max(c);
                    }
                    // A finished worker has processed every tick, but only once its own
                    // ticks are all released have the records it emitted at them been
                    // handed over too.
                    _ => everyone &= input.done.is_some() && input.ticks.is_empty(),
                }
            }
            // Only a tick every worker processed (a flush, which every worker receives) makes
            // a watermark: by then every worker has also emitted what that clock made due
            // (closed buckets, partial aggregates) — a tick of one worker's full block says
            // nothing about what the others emitted at their own later ticks.
            if everyone && clock > self.watermark {
                self.watermark = clock;
                sink(Merged::Watermark(clock));
            }
        }
        if self.all_done() {
            self.drain_through(u64::MAX, sink);
        }
    }

    /// Hands `sink` every queued record with `seq ≤ limit`, merged by `(seq, worker)`.
    fn drain_through(&mut self, limit: u64, sink: &mut impl FnMut(Merged<R>)) {
        loop {
            let mut best: Option<(u64, usize)> = None;
            for (w, input) in self.inputs.iter().enumerate() {
                if let Some(&(seq, _)) = input.queue.front() {
                    if seq <= limit && best.is_none_or(|(s, _)| seq < s) {
                        best = Some((seq, w));
                    }
                }
            }
            let Some((_, w)) = best else { break };
            if let Some((seq, record)) = self.inputs.get_mut(w).and_then(|i| i.queue.pop_front()) {
                sink(Merged::Record { seq, worker: w, record });
            }
        }
    }
}

/// Result of a pipeline run.
#[derive(Debug)]
pub struct PipelineReport<St> {
    /// The source's counters.
    pub source: SourceStats,
    /// The receive thread's counters.
    pub dispatch: DispatchStats,
    /// Each worker's counters, by worker index.
    pub workers: Vec<St>,
    /// Problems with the input, in the order met (each after all frames before it were
    /// processed).
    pub source_errors: Vec<SourceError>,
    /// Cores that could not be pinned (the thread ran unpinned).
    pub pin_failures: Vec<usize>,
    /// Wall-clock time of the run (for throughput reports only; never used by the pipeline).
    pub wall: Duration,
}

/// Why a pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A thread could not be started.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        /// Thread name.
        name: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker or the receive thread panicked (a bug; the message is the panic payload).
    #[error("thread {name} panicked: {message}")]
    Panicked {
        /// Thread name.
        name: String,
        /// Panic message.
        message: String,
    },
}

/// Pins the calling thread; returns false when the OS refused.
fn pin(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// What the receive thread hands back when it ends.
type ReceiveResult = (SourceStats, DispatchStats, Vec<SourceError>);

/// The receive thread: read batches, dispatch, flush after each batch; then hang up.
fn receive_loop<Src: PacketSource>(
    mut source: Src,
    mut d: Dispatcher,
    stop: &AtomicBool,
    progress: Option<&Progress>,
    flush: FlushPolicy,
    epochs: Option<&EpochRequest>,
) -> ReceiveResult {
    d.own_bell.bind_current();
    let mut errors = Vec::new();
    let mut batches = 0u64;
    let mut last_flush = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(e) = epochs {
            d.begin_epoch(e.requested());
        }
        let idle = match source.next_batch() {
            Ok(Some(batch)) if batch.is_empty() => true,
            Ok(Some(batch)) => {
                d.dispatch(&batch);
                match flush {
                    FlushPolicy::EveryBatch => d.flush(),
                    FlushPolicy::Interval(every) => {
                        // One clock read per batch, not per frame.
                        let now = Instant::now();
                        if now.duration_since(last_flush) >= every {
                            d.flush_unless_behind();
                            last_flush = now;
                        }
                    }
                }
                false
            }
            Ok(None) => break,
            Err(e) => {
                errors.push(e);
                false
            }
        };
        if idle {
            // A live source with nothing to give: its idle clock still moves time forward.
            if let Some(t) = source.idle_time() {
                d.advance_clock(t);
            }
            match flush {
                FlushPolicy::EveryBatch => d.flush(),
                FlushPolicy::Interval(_) => d.flush_unless_behind(),
            }
            last_flush = Instant::now();
        }
        if let Some(p) = progress {
            batches += 1;
            let stats = (idle || batches.is_multiple_of(64)).then(|| source.stats());
            p.publish(&d.stats, stats.as_ref());
        }
    }
    // A source that reads on its own threads (one per queue) still holds frames it counted:
    // they go to the workers too (under the same backpressure), so none is lost uncounted.
    if stop.load(Ordering::Relaxed) && source.shutdown() {
        loop {
            match source.next_batch() {
                // Its threads are joined: nothing ready now never will be.
                Ok(None) => break,
                Ok(Some(batch)) if batch.is_empty() => break,
                Ok(Some(batch)) => d.dispatch(&batch),
                // Reported; a source that keeps failing must not hold the stop up.
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
    }
    // The final flush always waits, even under `Drop`: every worker must see the end of the
    // input and the same final sequence number.
    d.backpressure = Backpressure::Wait;
    d.flush();
    // The final counters (the drain and the last flush included), returned and published for
    // whoever reads progress.
    let source_stats = source.stats();
    if let Some(p) = progress {
        p.publish(&d.stats, Some(&source_stats));
    }
    let stats = d.stats.clone();
    drop(d);
    (source_stats, stats, errors)
}

/// Runs `source` through `config.workers` instances of a stage made by `make_stage`, handing
/// merged records to `sink` on the calling thread. Returns when the source is exhausted (or
/// `stop` is set) and every worker has finished.
///
/// # Errors
/// [`PipelineError`] when a thread cannot start or panics. Problems with the input itself are
/// not errors of the run: they are listed in [`PipelineReport::source_errors`].
pub fn run_pipeline<Src, S, F, C>(
    source: Src,
    config: &PipelineConfig,
    mut make_stage: F,
    stop: Arc<AtomicBool>,
    mut sink: C,
) -> Result<PipelineReport<S::Stats>, PipelineError>
where
    Src: PacketSource + 'static,
    S: WorkerStage,
    F: FnMut(usize) -> S,
    C: FnMut(Merged<S::Record>),
{
    let started = Instant::now();
    let n = config.workers.max(1);
    let ring_blocks = config.ring_blocks.max(2);
    let collector_bell = Doorbell::for_current_thread();
    let dispatcher_bell = Doorbell::new();
    let pin_failures = Arc::new(std::sync::Mutex::new(Vec::new()));

    let mut links = Vec::with_capacity(n);
    let mut inputs = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n + 1);
    for w in 0..n {
        let (tx, rx) = RingBuffer::<FrameBlock>::new(ring_blocks);
        let (free_tx, free_rx) = RingBuffer::<FrameBlock>::new(ring_blocks + 2);
        let (out_tx, out_rx) = RingBuffer::<Out<S::Record, S::Stats>>::new(config.record_ring.max(16));
        let stage = make_stage(w);
        let core = config.worker_cores.get(w % config.worker_cores.len().max(1)).copied();
        let worker_bell = Doorbell::new();
        let emitter = Emitter {
            tx: out_tx,
            collector: collector_bell.clone(),
            own_bell: worker_bell.clone(),
            unannounced: 0,
        };
        let (failures, dbell, wbell) = (pin_failures.clone(), dispatcher_bell.clone(), worker_bell.clone());
        let name = format!("outpost-worker-{w}");
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                wbell.bind_current();
                if let Some(c) = core {
                    if !pin(c) {
                        if let Ok(mut f) = failures.lock() {
                            f.push(c);
                        }
                    }
                }
                worker_loop(stage, rx, free_tx, emitter, &wbell, &dbell);
            })
            .map_err(|source| PipelineError::Spawn { name: name.clone(), source })?;
        handles.push((name, handle));
        links.push(WorkerLink {
            tx,
            free: free_rx,
            current: FrameBlock::new(config.block),
            bell: worker_bell,
            allocated: 1,
            skipped: 0,
        });
        inputs.push(MergeInput {
            rx: out_rx,
            queue: VecDeque::new(),
            ticks: VecDeque::new(),
            reported: None,
            done: None,
        });
    }

    let dispatcher = Dispatcher {
        links,
        limits: config.block,
        max_blocks: ring_blocks + 2,
        backpressure: config.backpressure,
        sharding: config.sharding,
        seq: 0,
        clock: Nanos::ZERO,
        started: false,
        own_bell: dispatcher_bell,
        stats: DispatchStats { frames: 0, bytes: 0, per_worker: vec![0; n], ring_full_drops: vec![0; n] },
        epoch: (0, 0),
    };
    let receive_core = config.receive_core;
    let failures = pin_failures.clone();
    let stop_rx = stop.clone();
    let progress = config.progress.clone();
    let flush = config.flush;
    let epochs = config.epochs.clone();
    let receiver = thread::Builder::new()
        .name("outpost-receive".into())
        .spawn(move || {
            if let Some(c) = receive_core {
                if !pin(c) {
                    if let Ok(mut f) = failures.lock() {
                        f.push(c);
                    }
                }
            }
            receive_loop(source, dispatcher, &stop_rx, progress.as_deref(), flush, epochs.as_deref())
        })
        .map_err(|source| PipelineError::Spawn { name: "outpost-receive".into(), source })?;

    // Collect on this thread until every worker is done.
    let mut merger = Merger { inputs, watermark: Nanos::ZERO };
    let mut backoff = Backoff::lazy();
    let mut panicked = None;
    loop {
        let mut any = false;
        for input in &mut merger.inputs {
            any |= input.pump();
        }
        if any {
            backoff.reset();
            merger.release(&mut sink);
        }
        if merger.all_done() {
            break;
        }
        if !any {
            // A worker that panicked never sends Done: notice it instead of waiting forever.
            let dead = handles.iter().enumerate().position(|(i, (_, h))| {
                h.is_finished() && merger.inputs.get(i).is_some_and(|m| m.done.is_none())
            });
            if let Some(i) = dead {
                {
                    // Drain what it sent before it ended.
                    if let Some(m) = merger.inputs.get_mut(i) {
                        m.pump();
                    }
                    if merger.inputs.get(i).is_some_and(|m| m.done.is_none()) {
                        panicked = Some(i);
                        break;
                    }
                    continue;
                }
            }
            let inputs = &merger.inputs;
            backoff.snooze(&collector_bell, || inputs.iter().any(|i| !i.rx.is_empty()));
        }
    }
    if let Some(i) = panicked {
        // Stop the receive thread; its rings to the dead worker would otherwise fill up.
        stop.store(true, Ordering::Relaxed);
        let (name, handle) = handles.swap_remove(i);
        let message = match handle.join() {
            Err(p) => panic_message(p.as_ref()),
            Ok(()) => "worker ended without finishing".into(),
        };
        return Err(PipelineError::Panicked { name, message });
    }
    merger.release(&mut sink);

    let (source_stats, dispatch, source_errors) = receiver.join().map_err(|p| PipelineError::Panicked {
        name: "outpost-receive".into(),
        message: panic_message(p.as_ref()),
    })?;
    for (name, handle) in handles {
        handle.join().map_err(|p| PipelineError::Panicked { name, message: panic_message(p.as_ref()) })?;
    }
    let workers = merger.inputs.into_iter().filter_map(|i| i.done).collect();
    let pin_failures = pin_failures.lock().map(|f| f.clone()).unwrap_or_default();
    Ok(PipelineReport {
        source: source_stats,
        dispatch,
        workers,
        source_errors,
        pin_failures,
        wall: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's message stream, as the collector receives it.
    fn input(msgs: Vec<Out<u64, ()>>) -> MergeInput<u64, ()> {
        let (mut tx, rx) = RingBuffer::new(msgs.len().max(1));
        for m in msgs {
            assert!(tx.push(m).is_ok());
        }
        MergeInput { rx, queue: VecDeque::new(), ticks: VecDeque::new(), reported: None, done: None }
    }

    fn rec(seq: u64) -> Out<u64, ()> {
        Out::Record { seq, record: seq }
    }

    fn tick(tick_seq: u64, clock: u64) -> Out<u64, ()> {
        Out::Progress { tick_seq, clock: Nanos(clock) }
    }

    /// Merges what the inputs hold; returns the stream as `R seq` and `W clock`.
    fn merge(inputs: Vec<MergeInput<u64, ()>>) -> Vec<String> {
        let mut m = Merger { inputs, watermark: Nanos::ZERO };
        for i in &mut m.inputs {
            i.pump();
        }
        let mut got = Vec::new();
        m.release(&mut |x| {
            got.push(match x {
                Merged::Record { seq, .. } => format!("R{seq}"),
                Merged::Watermark(t) => format!("W{}", t.0),
            });
        });
        got
    }

    #[test]
    fn a_finished_worker_holds_back_watermarks_until_its_own_ticks_are_released() {
        // Flush tick 2 (clock 10) went to both workers. Worker 0 then finished its input:
        // a full block ending at tick 9 (clock 20), where it emitted a record (a partial
        // aggregate that clock made due), and the final flush 12. Worker 1, slower, has
        // reported its full block at tick 8 (clock 15) and the final flush.
        let w0 = input(vec![rec(1), tick(2, 10), rec(9), tick(9, 20), tick(12, 25), Out::Done(())]);
        let w1 = input(vec![tick(2, 10), rec(7), tick(8, 15), tick(12, 25)]);
        let got = merge(vec![w0, w1]);
        // Tick 8 is one worker's: no watermark there, though worker 0 is done — its record
        // at tick 9 must come before any watermark past tick 2.
        assert_eq!(got, ["R1", "W10", "R7", "R9", "W25"], "{got:?}");
    }
}
