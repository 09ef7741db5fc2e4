//! The work each pipeline worker does per frame: decode, meter flows, run the detector.

use std::sync::Arc;

use outpost_capture::{Emitter, Frame, FrameBlock, InputPos, Roles, WorkerStage};
use outpost_decode::{DecodeStats, Duration, Nanos, PacketMeta, decode_into};
use outpost_detector::baseline::BaselinePartial;
use outpost_detector::threshold::Partial;
use outpost_detector::{Alert, Detector, DetectorOutput, DetectorStats, NetworkMap, RuleSet, WorkerPlace};
use outpost_flowmeter::{FlowConfig, FlowMeter, FlowMeterStats, FlowRecord};

/// What a worker emits.
#[derive(Debug, Clone)]
pub enum SensorRecord {
    /// A detection (before the alert policy).
    Alert(Alert),
    /// A flow record (final or interim).
    Flow(FlowRecord),
    /// A partial aggregate of a threshold rule judged in the collector.
    Partial(Partial),
    /// A partial measurement of a baseline rule.
    Baseline(BaselinePartial),
}

impl From<DetectorOutput> for SensorRecord {
    fn from(o: DetectorOutput) -> SensorRecord {
        match o {
            DetectorOutput::Alert(a) => SensorRecord::Alert(a),
            DetectorOutput::Partial(p) => SensorRecord::Partial(p),
            DetectorOutput::Baseline(b) => SensorRecord::Baseline(b),
        }
    }
}

/// Counters a worker hands back at the end.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Decode outcomes.
    pub decode: DecodeStats,
    /// Rule counters.
    pub detect: DetectorStats,
    /// Flow meter counters (zero when flows are disabled).
    pub flows: FlowMeterStats,
}

impl WorkerStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &WorkerStats) {
        self.decode.merge(&o.decode);
        self.detect.merge(&o.detect);
        self.flows.merge(&o.flows);
    }
}

/// Frames decoded and prepared together: enough for the flow table's cache misses to overlap,
/// few enough that the batch stays in L1.
const BATCH: usize = 32;

/// Everything a worker needs to know at start.
#[derive(Debug, Clone)]
pub struct StageSetup {
    /// Compiled rules.
    pub rules: Arc<RuleSet>,
    /// Network ids.
    pub networks: Arc<NetworkMap>,
    /// Flow meter settings (none: flows are not metered).
    pub flows: Option<FlowConfig>,
    /// Seeds alert ids.
    pub run_key: u64,
    /// Number of workers.
    pub workers: usize,
    /// How long after a bucket or interval ends its partial aggregates are handed over.
    pub lateness: Duration,
}

/// One worker: a flow meter and a detector, both owned by the worker thread.
#[derive(Debug)]
pub struct SensorStage {
    /// Decode outcomes, counted for the frames this worker owns by source (every input frame
    /// has exactly one such delivery, so the sum over workers counts each frame once).
    decode_stats: DecodeStats,
    flows: Option<FlowMeter>,
    detector: Detector,
    /// The current batch: decoded packets and their input positions, side by side (reused).
    /// `metas` always holds `BATCH` entries; the first `positions.len()` are the batch's, and
    /// frames are decoded straight into the next one (no copy of each `PacketMeta`).
    positions: Vec<InputPos>,
    metas: Vec<PacketMeta>,
}

impl SensorStage {
    /// Worker number `worker`.
    #[must_use]
    pub fn new(worker: usize, setup: &StageSetup) -> SensorStage {
        let worker_byte = u8::try_from(worker).unwrap_or(u8::MAX);
        let place = WorkerPlace { index: worker, count: setup.workers };
        SensorStage {
            decode_stats: DecodeStats::default(),
            flows: setup.flows.map(|c| FlowMeter::new(c, worker_byte)),
            detector: Detector::new(
                setup.rules.clone(),
                setup.networks.clone(),
                setup.run_key,
                place,
                setup.lateness,
            ),
            positions: Vec::with_capacity(BATCH),
            metas: vec![PacketMeta::default(); BATCH],
        }
    }

    /// Decodes a frame into the batch's next entry, counting the outcome if this worker owns
    /// the frame's source; the frame joins the batch if it decoded. Returns the batch's length.
    #[inline]
    fn decode(&mut self, pos: InputPos, frame: &Frame<'_>) -> usize {
        let n = self.positions.len();
        let Some(meta) = self.metas.get_mut(n) else { return n };
        let result = decode_into(meta, frame.link, frame.data, frame.ts, frame.wire_len);
        if pos.roles.has(Roles::SOURCE) {
            self.decode_stats.record_ref(frame.wire_len, result.map(|()| &*meta));
        }
        if result.is_ok() {
            self.positions.push(pos);
            n + 1
        } else {
            n
        }
    }

    /// Meters and checks the decoded batch, packet by packet in input order.
    fn run_batch(&mut self, out: &mut Out) {
        let positions = &self.positions;
        let metas = self.metas.get(..positions.len()).unwrap_or_default();
        // Only the packets this worker checks (its SOURCE role) and meters (its PAIR role) are
        // prepared; the flow meter's prepare runs between the detector's two stages, so the
        // detector's index lines have arrived when it looks into them.
        let with = |role| positions.iter().zip(metas).filter(move |(p, _)| p.roles.has(role)).map(|(_, m)| m);
        self.detector.prepare(with(Roles::SOURCE));
        if let Some(f) = self.flows.as_mut() {
            f.prepare(with(Roles::PAIR));
        }
        self.detector.prefetch_slots(with(Roles::SOURCE));
        let (mut metered, mut checked) = (0, 0);
        for (pos, meta) in positions.iter().zip(metas) {
            let seq = pos.seq;
            if pos.roles.has(Roles::PAIR) {
                if let Some(f) = self.flows.as_mut() {
                    f.on_prepared(metered, meta, &mut |r| out.emit(seq, SensorRecord::Flow(r)));
                }
                metered += 1;
            }
            if pos.roles.has(Roles::SOURCE) {
                self.detector.on_prepared(checked, meta, pos.frame, &mut |o| out.emit(seq, o.into()));
                checked += 1;
            }
        }
        self.positions.clear();
    }
}

type Out = Emitter<SensorRecord, WorkerStats>;

impl WorkerStage for SensorStage {
    type Record = SensorRecord;
    type Stats = WorkerStats;

    #[inline]
    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Out) {
        if self.decode(pos, &frame) > 0 {
            self.run_batch(out);
        }
    }

    fn on_block(&mut self, block: &FrameBlock, out: &mut Out) {
        for (pos, frame) in block.iter() {
            if self.decode(pos, &frame) == BATCH {
                self.run_batch(out);
            }
        }
        self.run_batch(out);
    }

    fn on_clock(&mut self, now: Nanos, seq: u64, out: &mut Out) {
        if let Some(f) = self.flows.as_mut() {
            f.on_clock(now, &mut |r| out.emit(seq, SensorRecord::Flow(r)));
        }
        self.detector.on_clock(now, seq, &mut |o| out.emit(seq, o.into()));
    }

    fn finish(mut self, seq: u64, out: &mut Out) -> WorkerStats {
        if let Some(f) = self.flows.as_mut() {
            f.finish(&mut |r| out.emit(seq, SensorRecord::Flow(r)));
        }
        self.detector.finish(&mut |o| out.emit(seq, o.into()));
        WorkerStats {
            decode: self.decode_stats,
            detect: self.detector.stats(),
            flows: self.flows.as_ref().map(FlowMeter::stats).unwrap_or_default(),
        }
    }
}
