//! The work each pipeline worker does per frame: decode, meter flows, run the detector.

use std::sync::Arc;

use outpost_capture::{Emitter, Frame, FrameBlock, InputPos, Roles, WorkerStage};
use outpost_decode::{DecodeStats, Nanos, PacketMeta, decode};
use outpost_detector::{Alert, Detector, DetectorStats, RuleSet};
use outpost_flowmeter::{FlowConfig, FlowMeter, FlowMeterStats, FlowRecord};

/// What a worker emits.
#[derive(Debug, Clone, Copy)]
pub enum SensorRecord {
    /// A detection.
    Alert(Alert),
    /// A flow record (final or interim).
    Flow(FlowRecord),
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

/// One worker: a decoder, a flow meter and a detector, all owned by the worker thread.
#[derive(Debug)]
pub struct SensorStage {
    /// Decode outcomes, counted for the frames this worker owns by source (every input frame
    /// has exactly one such delivery, so the sum over workers counts each frame once).
    decode_stats: DecodeStats,
    flows: Option<FlowMeter>,
    detector: Detector,
    /// Decoded packets of the current batch, with their input positions (reused).
    batch: Vec<(InputPos, PacketMeta)>,
    metas: Vec<PacketMeta>,
}

impl SensorStage {
    /// Worker number `worker` running `rules` (and the flow meter if `flows` is set);
    /// `run_key` seeds alert ids.
    #[must_use]
    pub fn new(worker: usize, rules: Arc<RuleSet>, flows: Option<FlowConfig>, run_key: u64) -> SensorStage {
        let worker_byte = u8::try_from(worker).unwrap_or(u8::MAX);
        SensorStage {
            decode_stats: DecodeStats::default(),
            flows: flows.map(|c| FlowMeter::new(c, worker_byte)),
            detector: Detector::new(rules, run_key),
            batch: Vec::with_capacity(BATCH),
            metas: Vec::with_capacity(BATCH),
        }
    }

    /// Decodes a frame, counting the outcome if this worker owns the frame's source.
    #[inline]
    fn decode(&mut self, pos: InputPos, frame: &Frame<'_>) -> Option<PacketMeta> {
        let result = decode(frame.link, frame.data, frame.ts, frame.wire_len);
        if pos.roles.has(Roles::SOURCE) {
            self.decode_stats.record(frame.wire_len, &result);
        }
        result.ok()
    }

    /// Meters and checks the decoded batch, packet by packet in input order.
    fn run_batch(&mut self, out: &mut Out) {
        self.metas.clear();
        self.metas.extend(self.batch.iter().map(|(_, m)| *m));
        if let Some(f) = self.flows.as_mut() {
            f.prepare(&self.metas);
        }
        for (i, (pos, meta)) in self.batch.iter().enumerate() {
            let seq = pos.seq;
            if pos.roles.has(Roles::PAIR) {
                if let Some(f) = self.flows.as_mut() {
                    f.on_prepared(i, meta, &mut |r| out.emit(seq, SensorRecord::Flow(r)));
                }
            }
            if pos.roles.has(Roles::SOURCE) {
                self.detector.on_packet(meta, pos.frame, &mut |a| out.emit(seq, SensorRecord::Alert(a)));
            }
        }
        self.batch.clear();
    }
}

type Out = Emitter<SensorRecord, WorkerStats>;

impl WorkerStage for SensorStage {
    type Record = SensorRecord;
    type Stats = WorkerStats;

    #[inline]
    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Out) {
        if let Some(meta) = self.decode(pos, &frame) {
            self.batch.push((pos, meta));
            self.run_batch(out);
        }
    }

    fn on_block(&mut self, block: &FrameBlock, out: &mut Out) {
        for (pos, frame) in block.iter() {
            if let Some(meta) = self.decode(pos, &frame) {
                self.batch.push((pos, meta));
                if self.batch.len() == BATCH {
                    self.run_batch(out);
                }
            }
        }
        self.run_batch(out);
    }

    fn on_clock(&mut self, now: Nanos, seq: u64, out: &mut Out) {
        if let Some(f) = self.flows.as_mut() {
            f.on_clock(now, &mut |r| out.emit(seq, SensorRecord::Flow(r)));
        }
        self.detector.on_clock(now);
    }

    fn finish(mut self, seq: u64, out: &mut Out) -> WorkerStats {
        if let Some(f) = self.flows.as_mut() {
            f.finish(&mut |r| out.emit(seq, SensorRecord::Flow(r)));
        }
        WorkerStats {
            decode: self.decode_stats,
            detect: self.detector.stats(),
            flows: self.flows.as_ref().map(FlowMeter::stats).unwrap_or_default(),
        }
    }
}
