//! The work each pipeline worker does per frame: decode, then run the detector.

use std::sync::Arc;

use outpost_capture::{Emitter, Frame, InputPos, WorkerStage};
use outpost_decode::{DecodeStats, Decoder, Nanos};
use outpost_detector::{Alert, Detector, DetectorStats, RuleSet};

/// Counters a worker hands back at the end.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    /// Decode outcomes.
    pub decode: DecodeStats,
    /// Rule counters.
    pub detect: DetectorStats,
}

impl WorkerStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &WorkerStats) {
        self.decode.merge(&o.decode);
        self.detect.merge(&o.detect);
    }
}

/// One worker: a decoder and a detector, both owned by the worker thread.
#[derive(Debug)]
pub struct SensorStage {
    decoder: Decoder,
    detector: Detector,
}

impl SensorStage {
    /// A worker running `rules`; `run_key` seeds alert ids.
    #[must_use]
    pub fn new(rules: Arc<RuleSet>, run_key: u64) -> SensorStage {
        SensorStage { decoder: Decoder::default(), detector: Detector::new(rules, run_key) }
    }
}

impl WorkerStage for SensorStage {
    type Record = Alert;
    type Stats = WorkerStats;

    #[inline]
    fn on_frame(&mut self, pos: InputPos, frame: Frame<'_>, out: &mut Emitter<Alert, WorkerStats>) {
        if let Some(meta) = self.decoder.decode(frame.link, frame.data, frame.ts, frame.wire_len) {
            self.detector.on_packet(&meta, pos.frame, &mut |alert| out.emit(pos.seq, alert));
        }
    }

    fn on_clock(&mut self, now: Nanos, _seq: u64, _out: &mut Emitter<Alert, WorkerStats>) {
        self.detector.on_clock(now);
    }

    fn finish(self, _seq: u64, _out: &mut Emitter<Alert, WorkerStats>) -> WorkerStats {
        WorkerStats { decode: self.decoder.stats, detect: self.detector.stats() }
    }
}
