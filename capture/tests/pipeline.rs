//! The worker pipeline: sharding, ordering, clocks, backpressure and failure handling.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use outpost_capture::{
    Backpressure, Batch, Emitter, EpochRequest, FlushPolicy, Frame, InputPos, MemorySource, Merged,
    PacketSource, PipelineConfig, PipelineError, Roles, Sharding, SourceError, SourceStats, WorkerStage,
    run_pipeline,
};
use outpost_decode::{IpAddress, LinkType, Nanos, decode};
use outpost_tools::frame::{FrameBuilder, udp};

/// Emits one record per frame: (seq, source address, worker), plus one per clock tick.
struct Recorder {
    worker: usize,
    clocks: Vec<Nanos>,
    panic_at: Option<u64>,
    slow: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Rec {
    Frame { seq: u64, src: IpAddress, ts: Nanos, worker: usize },
    Tick { seq: u64, now: Nanos, worker: usize },
}

impl WorkerStage for Recorder {
    type Record = Rec;
    type Stats = (usize, Vec<Nanos>);

    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Emitter<Rec, Self::Stats>) {
        let seq = pos.frame;
        if self.panic_at == Some(seq) {
            panic!("injected failure at frame {seq}");
        }
        if self.slow {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let meta = decode(frame.link, frame.data, frame.ts, frame.wire_len).expect("test frames decode");
        out.emit(pos.seq, Rec::Frame { seq, src: meta.src, ts: frame.ts, worker: self.worker });
    }

    fn on_clock(&mut self, now: Nanos, seq: u64, out: &mut Emitter<Rec, Self::Stats>) {
        self.clocks.push(now);
        out.emit(seq, Rec::Tick { seq, now, worker: self.worker });
    }

    fn finish(self, _seq: u64, _out: &mut Emitter<Rec, Self::Stats>) -> Self::Stats {
        (self.worker, self.clocks)
    }
}

fn source(frames: u32, hosts: u32, batch: usize) -> MemorySource {
    let mut src = MemorySource::new(batch);
    let mut buf = Vec::new();
    for i in 0..frames {
        let host = i % hosts;
        let a = Ipv4Addr::from(0x0a00_0000 + host);
        let b = FrameBuilder::new(IpAddr::V4(a), IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)), udp(1000, 7001));
        buf.clear();
        b.write_to(&mut buf);
        src.push(LinkType::Ethernet, Nanos::from_secs(1_000 + u64::from(i)), &buf);
    }
    src
}

/// Records, watermarks, and each worker's (index, clock ticks seen).
type RunResult = (Vec<Rec>, Vec<Nanos>, Vec<(usize, Vec<Nanos>)>);

fn run(workers: usize, src: MemorySource, panic_at: Option<u64>) -> RunResult {
    let config = PipelineConfig { workers, ..PipelineConfig::default() };
    let mut records = Vec::new();
    let mut marks = Vec::new();
    let report = run_pipeline(
        src,
        &config,
        |w| Recorder { worker: w, clocks: Vec::new(), panic_at, slow: false },
        Arc::new(AtomicBool::new(false)),
        |m| match m {
            Merged::Record { record, .. } => records.push(record),
            Merged::Watermark(t) => marks.push(t),
        },
    )
    .expect("pipeline runs");
    (records, marks, report.workers)
}

fn frames_only(recs: &[Rec]) -> Vec<(u64, IpAddress, Nanos)> {
    recs.iter()
        .filter_map(|r| match r {
            Rec::Frame { seq, src, ts, .. } => Some((*seq, *src, *ts)),
            Rec::Tick { .. } => None,
        })
        .collect()
}

#[test]
fn every_frame_is_processed_once_and_records_come_out_in_input_order() {
    let (one, _, _) = run(1, source(5_000, 97, 64), None);
    for workers in [2, 3, 4] {
        let (many, _, _) = run(workers, source(5_000, 97, 64), None);
        let f = frames_only(&many);
        assert_eq!(f.len(), 5_000);
        assert!(f.windows(2).all(|w| w[0].0 < w[1].0), "not in input order with {workers} workers");
        assert_eq!(f, frames_only(&one), "{workers} workers disagree with one");
    }
}

#[test]
fn a_source_address_always_lands_on_the_same_worker_and_load_spreads() {
    let (recs, _, _) = run(4, source(8_000, 500, 128), None);
    let mut owner: HashMap<IpAddress, usize> = HashMap::new();
    let mut per_worker = [0u32; 4];
    for r in &recs {
        if let Rec::Frame { src, worker, .. } = r {
            assert_eq!(*owner.entry(*src).or_insert(*worker), *worker, "{src} moved between workers");
            per_worker[*worker] += 1;
        }
    }
    assert!(per_worker.iter().all(|&n| n > 1_000), "uneven sharding: {per_worker:?}");
}

#[test]
fn output_is_identical_across_runs_with_the_same_worker_count() {
    let a = run(3, source(3_000, 50, 100), None);
    let b = run(3, source(3_000, 50, 100), None);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
}

#[test]
fn every_worker_sees_the_clock_advance_even_without_frames_of_its_own() {
    // One source address: all frames go to a single worker; the others still get clock ticks.
    let (_, marks, stats) = run(3, source(2_000, 1, 100), None);
    for (w, clocks) in &stats {
        assert!(clocks.windows(2).all(|c| c[0] <= c[1]), "worker {w} clock went back");
        assert_eq!(clocks.last().copied(), Some(Nanos::from_secs(1_000 + 1_999)), "worker {w}");
        assert!(clocks.len() >= 20, "worker {w} got only {} ticks", clocks.len());
    }
    assert!(marks.windows(2).all(|m| m[0] < m[1]), "watermarks must increase");
    assert_eq!(marks.last().copied(), Some(Nanos::from_secs(2_999)));
}

#[test]
fn a_panicking_worker_fails_the_run_instead_of_hanging() {
    let config = PipelineConfig { workers: 2, ring_blocks: 2, ..PipelineConfig::default() };
    let err = run_pipeline(
        source(20_000, 10, 64),
        &config,
        |w| Recorder { worker: w, clocks: Vec::new(), panic_at: Some(700), slow: false },
        Arc::new(AtomicBool::new(false)),
        |_| {},
    )
    .expect_err("the run must fail");
    match err {
        PipelineError::Panicked { message, .. } => assert!(message.contains("injected failure at frame 700")),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn drop_backpressure_counts_what_a_slow_worker_could_not_take() {
    let config = PipelineConfig {
        workers: 1,
        ring_blocks: 2,
        block: outpost_capture::BlockLimits { frames: 8, bytes: 1 << 16 },
        backpressure: Backpressure::Drop,
        ..PipelineConfig::default()
    };
    let mut seen = 0u64;
    let report = run_pipeline(
        source(3_000, 10, 256),
        &config,
        |w| Recorder { worker: w, clocks: Vec::new(), panic_at: None, slow: true },
        Arc::new(AtomicBool::new(false)),
        |m| {
            if let Merged::Record { record: Rec::Frame { .. }, .. } = m {
                seen += 1;
            }
        },
    )
    .expect("runs");
    let dropped: u64 = report.dispatch.ring_full_drops.iter().sum();
    assert!(dropped > 0, "a 200 µs/frame worker must fall behind");
    assert_eq!(seen + dropped, 3_000, "every frame is either processed or counted as dropped");
}

#[test]
fn interval_flushing_sends_full_blocks_instead_of_one_per_small_batch() {
    // A live-like source: 5,000 batches of one frame. After every batch, each of them would
    // be a block and a tick of its own; with an interval far longer than the run, the worker
    // gets full blocks (256 frames) and the final flush, and still every frame in order.
    let run_with = |flush| {
        let config = PipelineConfig { workers: 1, flush, ..PipelineConfig::default() };
        let (mut frames, mut ticks) = (Vec::new(), 0usize);
        run_pipeline(
            source(5_000, 10, 1),
            &config,
            |w| Recorder { worker: w, clocks: Vec::new(), panic_at: None, slow: false },
            Arc::new(AtomicBool::new(false)),
            |m| match m {
                Merged::Record { record: Rec::Frame { seq, .. }, .. } => frames.push(seq),
                Merged::Record { record: Rec::Tick { .. }, .. } => ticks += 1,
                Merged::Watermark(_) => {}
            },
        )
        .expect("runs");
        (frames, ticks)
    };
    let (every, every_ticks) = run_with(FlushPolicy::EveryBatch);
    let (interval, interval_ticks) = run_with(FlushPolicy::Interval(std::time::Duration::from_secs(3600)));
    assert_eq!(every, (0..5_000).collect::<Vec<u64>>());
    assert_eq!(interval, every, "the same frames in the same order");
    assert!(every_ticks > 5_000, "a block per batch: {every_ticks}");
    assert!(interval_ticks <= 5_000 / 256 + 3, "full blocks only, then the final flush: {interval_ticks}");
}

/// Records (frame number, source, destination, worker, roles) for every delivery.
struct RoleRecorder {
    worker: usize,
}

impl WorkerStage for RoleRecorder {
    type Record = (u64, IpAddress, IpAddress, usize, Roles);
    type Stats = ();

    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Emitter<Self::Record, ()>) {
        let meta = decode(frame.link, frame.data, frame.ts, frame.wire_len).expect("test frames decode");
        out.emit(pos.seq, (pos.frame, meta.src, meta.dst, self.worker, pos.roles));
    }

    fn on_clock(&mut self, _now: Nanos, _seq: u64, _out: &mut Emitter<Self::Record, ()>) {}

    fn finish(self, _seq: u64, _out: &mut Emitter<Self::Record, ()>) {}
}

#[test]
fn source_and_pair_sharding_keeps_both_directions_and_each_source_on_one_worker() {
    let mut src = MemorySource::new(64);
    let mut buf = Vec::new();
    let hosts: Vec<Ipv4Addr> =
        (0..40).map(|i| Ipv4Addr::new(10, 0, (i / 8) as u8, (i % 8) as u8 + 1)).collect();
    let mut n = 0u64;
    for i in 0..40usize {
        for j in 0..40usize {
            if i == j || (i * 7 + j) % 3 != 0 {
                continue;
            }
            // One packet each way.
            for (a, b) in [(hosts[i], hosts[j]), (hosts[j], hosts[i])] {
                buf.clear();
                FrameBuilder::new(IpAddr::V4(a), IpAddr::V4(b), udp(1000, 2000)).write_to(&mut buf);
                src.push(LinkType::Ethernet, Nanos::from_secs(1_000 + n), &buf);
                n += 1;
            }
        }
    }
    let config =
        PipelineConfig { workers: 3, sharding: Sharding::SourceAndPair, ..PipelineConfig::default() };
    let mut deliveries = Vec::new();
    let report = run_pipeline(
        src,
        &config,
        |w| RoleRecorder { worker: w },
        Arc::new(AtomicBool::new(false)),
        |m| {
            if let Merged::Record { record, .. } = m {
                deliveries.push(record);
            }
        },
    )
    .expect("runs");
    let mut source_owner: HashMap<IpAddress, usize> = HashMap::new();
    let mut pair_owner: HashMap<(IpAddress, IpAddress), usize> = HashMap::new();
    let mut per_frame: HashMap<u64, (u32, u32)> = HashMap::new();
    let mut split = 0;
    let mut last_frame = 0;
    for &(frame, s, d, w, roles) in &deliveries {
        assert!(frame >= last_frame, "deliveries come out in input order");
        last_frame = frame;
        let counts = per_frame.entry(frame).or_default();
        if roles.has(Roles::SOURCE) {
            counts.0 += 1;
            assert_eq!(*source_owner.entry(s).or_insert(w), w, "source {s} moved between workers");
        }
        if roles.has(Roles::PAIR) {
            counts.1 += 1;
            let key = if s < d { (s, d) } else { (d, s) };
            assert_eq!(*pair_owner.entry(key).or_insert(w), w, "pair {key:?} split between workers");
        }
        if roles != Roles::BOTH {
            split += 1;
        }
    }
    assert_eq!(per_frame.len() as u64, n);
    assert!(per_frame.values().all(|&c| c == (1, 1)), "every frame has one source and one pair delivery");
    assert!(split > 0, "with three workers some frames must go to two workers");
    assert_eq!(report.dispatch.per_worker.iter().sum::<u64>(), deliveries.len() as u64);
}

/// A source that asks for the epochs of `at` (epoch, after how many batches) as it goes,
/// like a rule reload arriving while frames flow.
struct Reloading {
    inner: MemorySource,
    batches: usize,
    at: Vec<(u64, usize)>,
    request: Arc<EpochRequest>,
}

impl PacketSource for Reloading {
    fn next_batch(&mut self) -> Result<Option<Batch<'_>>, SourceError> {
        for &(epoch, after) in &self.at {
            if self.batches == after {
                self.request.request(epoch);
            }
        }
        self.batches += 1;
        self.inner.next_batch()
    }

    fn stats(&self) -> SourceStats {
        self.inner.stats()
    }
}

/// Per worker: every frame's `seq` with the epoch it was processed in, and the epoch changes.
#[derive(Default)]
struct EpochProbe {
    epoch: u64,
    frames: Vec<(u64, u64)>,
    changes: Vec<(u64, u64)>,
}

impl WorkerStage for EpochProbe {
    type Record = (u64, u64);
    type Stats = (Vec<(u64, u64)>, Vec<(u64, u64)>);

    fn on_frame(&mut self, pos: InputPos, _frame: Frame<'_>, _out: &mut Emitter<(u64, u64), Self::Stats>) {
        self.frames.push((pos.seq, self.epoch));
    }

    fn on_clock(&mut self, _now: Nanos, _seq: u64, _out: &mut Emitter<(u64, u64), Self::Stats>) {}

    fn on_epoch(&mut self, epoch: u64, seq: u64, out: &mut Emitter<(u64, u64), Self::Stats>) {
        self.epoch = epoch;
        self.changes.push((epoch, seq));
        out.emit(seq, (epoch, seq));
    }

    fn finish(self, _seq: u64, _out: &mut Emitter<(u64, u64), Self::Stats>) -> Self::Stats {
        (self.frames, self.changes)
    }
}

#[test]
fn an_epoch_change_takes_effect_at_one_point_of_the_input_in_every_worker() {
    // Flushed after every batch, or only when blocks fill up (live capture): then the
    // change must not let frames before it wait in a block stamped with the new epoch.
    // Frames to one worker each, or (flows and detection) to two.
    let flushes = [FlushPolicy::EveryBatch, FlushPolicy::Interval(std::time::Duration::from_secs(3600))];
    let cases = [(1, Sharding::Source), (3, Sharding::Source), (3, Sharding::SourceAndPair)];
    for ((workers, sharding), flush) in cases.into_iter().flat_map(|c| flushes.map(|f| (c, f))) {
        let request = Arc::new(EpochRequest::default());
        let src = Reloading {
            inner: source(4_000, 61, 50),
            batches: 0,
            // Epoch 1 after 20 batches; 2 and 5 asked for at once later (5 wins).
            at: vec![(1, 20), (2, 50), (5, 50)],
            request: request.clone(),
        };
        let config =
            PipelineConfig { workers, flush, sharding, epochs: Some(request), ..PipelineConfig::default() };
        let mut merged = Vec::new();
        let report = run_pipeline(
            src,
            &config,
            |_| EpochProbe::default(),
            Arc::new(AtomicBool::new(false)),
            |m| {
                if let Merged::Record { seq, record, .. } = m {
                    merged.push((seq, record));
                }
            },
        )
        .expect("pipeline runs");
        let changes = &report.workers[0].1;
        assert_eq!(changes.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 5], "{workers} workers");
        let mut frames = std::collections::BTreeSet::new();
        for (w, (seen, ch)) in report.workers.iter().enumerate() {
            assert_eq!(ch, changes, "worker {w} changed epochs elsewhere");
            for &(seq, epoch) in seen {
                // The epoch a frame was processed in is the last one that began before it.
                let expected = changes.iter().filter(|c| c.1 < seq).map(|c| c.0).next_back().unwrap_or(0);
                assert_eq!(epoch, expected, "worker {w}: frame seq {seq}");
                assert!(changes.iter().all(|c| c.1 != seq), "a frame took the change's number");
            }
            frames.extend(seen.iter().map(|f| f.0));
        }
        assert_eq!(frames.len(), 4_000, "every frame, once or (pair and source) twice");
        // Both changes fall inside the input: frames before and after each.
        let all: Vec<u64> = report.workers.iter().flat_map(|w| w.0.iter().map(|f| f.0)).collect();
        for c in changes {
            assert!(all.iter().any(|&s| s < c.1) && all.iter().any(|&s| s > c.1), "{c:?} at an end");
        }
        // The collector gets every worker's change record at the change's place.
        assert_eq!(merged.len(), 2 * workers);
        assert!(merged.windows(2).all(|p| p[0].0 <= p[1].0));
    }
}
