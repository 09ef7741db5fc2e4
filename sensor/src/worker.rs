//! The work each pipeline worker does per frame: decode, meter flows, run the detector.

use std::sync::Arc;

use crate::reload::RuleReloads;
use outpost_capture::{Emitter, Frame, FrameBlock, InputPos, Roles, WorkerStage};
use outpost_decode::{DecodeStats, Duration, Nanos, PacketMeta, decode_into};
use outpost_detector::baseline::BaselinePartial;
use outpost_detector::threshold::Partial;
use outpost_detector::{Alert, Detector, DetectorOutput, DetectorStats, NetworkMap, RuleSet, WorkerPlace};
use outpost_flowmeter::{FlowConfig, FlowMeter, FlowMeterStats, FlowRecord, IntervalDelta};
use outpost_snippet::{HistoryStats, PacketHistory, Snippet, SnippetConfig};

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
    /// The packets around a worker alert ([`SensorStage`] with snippets on), emitted once
    /// capture time passed the end of its window — always after the alert itself, so the
    /// collector knows the alert policy's verdict on it by then.
    Snippet(Box<Snippet>),
    /// The worker swapped in the rule set of this reload epoch ([`crate::reload`]): its
    /// records before this one come from the old rules, those after it from the new.
    Reloaded(u64),
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
    /// Packet history counters (zero when snippets are off).
    pub snippets: HistoryStats,
}

impl WorkerStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &WorkerStats) {
        self.decode.merge(&o.decode);
        self.detect.merge(&o.detect);
        self.flows.merge(&o.flows);
        self.snippets.merge(&o.snippets);
    }
}

/// Frames decoded and prepared together: enough for the flow table's cache misses to overlap,
/// few enough that the batch stays in L1.
const BATCH: usize = 32;

/// Frames ahead of the one decoded whose headers are prefetched: the receive thread wrote
/// them on another core, so each is a cache miss the decoder would otherwise wait for.
const HEADERS_AHEAD: usize = 8;

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
    /// Pcap snippets of alerts (none: off).
    pub snippets: Option<SnippetConfig>,
    /// Rule sets of reloads while running (none: the rules never change).
    pub reloads: Option<Arc<RuleReloads>>,
}

/// One worker: a flow meter and a detector, both owned by the worker thread.
#[derive(Debug)]
pub struct SensorStage {
    /// The worker's number.
    index: usize,
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
    /// Recent packets per source address, for alert snippets (none: snippets off).
    history: Option<PacketHistory>,
    rules: Arc<RuleSet>,
    reloads: Option<Arc<RuleReloads>>,
    /// The flow meter's hand-overs being passed on (reused).
    deltas: Vec<IntervalDelta>,
}

impl SensorStage {
    /// Worker number `worker`.
    #[must_use]
    pub fn new(worker: usize, setup: &StageSetup) -> SensorStage {
        let worker_byte = u8::try_from(worker).unwrap_or(u8::MAX);
        let place = WorkerPlace { index: worker, count: setup.workers };
        let mut stage = SensorStage {
            index: worker,
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
            // `snippets.memory_bytes` is the cap of all workers together.
            history: setup.snippets.as_ref().map(|c| {
                let share = c.memory_bytes / setup.workers.max(1) as u64;
                PacketHistory::new(&SnippetConfig { memory_bytes: share, ..c.clone() })
            }),
            rules: setup.rules.clone(),
            reloads: setup.reloads.clone(),
            deltas: Vec::new(),
        };
        stage.fold_baselines();
        stage
    }

    /// With a flow meter, the packet baselines that can be are counted from its per-interval
    /// flow hand-overs instead of per packet (two host lookups a packet): the flow meter meters
    /// this worker's pair-role packets, so across workers every packet counts once, as per
    /// packet ([`Detector::meter_from_flows`]).
    fn fold_baselines(&mut self) {
        if let Some(f) = self.flows.as_mut() {
            let interval = self.detector.flow_fold_interval();
            f.fold_intervals(interval);
            self.detector.meter_from_flows(interval);
        }
    }

    /// Passes the flow meter's hand-overs to the detector's meters — all at once, before
    /// each clock tick (the meters hand intervals over only then): one batch a block.
    fn pass_intervals(&mut self) {
        if let Some(f) = self.flows.as_mut() {
            self.deltas.clear();
            self.deltas.extend(f.drain_intervals());
            self.detector.on_interval_deltas(&self.deltas);
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
            // The detector's first stage as each packet is decoded: its loads start while the
            // rest of the batch is decoded, not after.
            if result.is_ok() && self.detector.takes_packets() {
                self.detector.prepare_packet(meta);
            }
            // The source's packets are kept for snippets — before detection, so the packet
            // that raises an alert is in the alert's snippet.
            if let (Some(h), Ok(())) = (self.history.as_mut(), result) {
                h.record(meta.src, frame.link, frame.ts, frame.wire_len, frame.data);
            }
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
        // A detector whose rules take no packets (none, or only flow rules) is skipped.
        let detecting = self.detector.takes_packets();
        if detecting {
            // Each SOURCE packet was prepared as it was decoded (`decode`): a reload, the only
            // thing that turns the detector on or off, comes between batches.
            debug_assert_eq!(
                self.detector.prepared_packets(),
                positions.iter().filter(|p| p.roles.has(Roles::SOURCE)).count()
            );
            self.detector.end_prepare();
        }
        if let Some(f) = self.flows.as_mut() {
            f.prepare(with(Roles::PAIR));
        }
        if detecting {
            self.detector.prefetch_slots();
        }
        let (mut metered, mut checked) = (0, 0);
        for (pos, meta) in positions.iter().zip(metas) {
            let seq = pos.seq;
            if pos.roles.has(Roles::PAIR) {
                if let Some(f) = self.flows.as_mut() {
                    f.on_prepared(metered, meta, &mut |r| out.emit(seq, SensorRecord::Flow(r)));
                }
                metered += 1;
            }
            if detecting && pos.roles.has(Roles::SOURCE) {
                let (history, rules) = (&mut self.history, &self.rules);
                self.detector.on_prepared(checked, meta, pos.frame, &mut |o| {
                    emit_detection(history, rules, seq, o, out)
                });
                checked += 1;
            }
        }
        self.positions.clear();
        self.detector.begin_prepare();
    }
}

type Out = Emitter<SensorRecord, WorkerStats>;

/// Passes a detector output on; an alert about a source address also starts its snippet
/// (the packets of that source from `before` the alert to `after` it). Snippets that complete
/// at once (their window already over) are emitted right after the alert.
fn emit_detection(
    history: &mut Option<PacketHistory>,
    rules: &RuleSet,
    seq: u64,
    o: DetectorOutput,
    out: &mut Out,
) {
    let start = match (&o, history.as_mut()) {
        (DetectorOutput::Alert(a), Some(_)) if a.src != outpost_decode::IpAddress::UNSPECIFIED => {
            Some((a.id.0, a.src, a.ts, a.rule))
        }
        _ => None,
    };
    out.emit(seq, o.into());
    if let (Some((id, src, ts, rule)), Some(h)) = (start, history.as_mut()) {
        let note = rules.rule(rule).map_or("", |r| r.name.as_str());
        h.on_alert(id, src, ts, note, &mut |s| out.emit(seq, SensorRecord::Snippet(Box::new(s))));
    }
}

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
        for i in 0..HEADERS_AHEAD {
            block.prefetch_headers(i);
        }
        for (i, (pos, frame)) in block.iter().enumerate() {
            block.prefetch_headers(i + HEADERS_AHEAD);
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
        self.pass_intervals();
        let (history, rules) = (&mut self.history, &self.rules);
        self.detector.on_clock(now, seq, &mut |o| emit_detection(history, rules, seq, o, out));
        if let Some(h) = self.history.as_mut() {
            h.on_clock(now, &mut |s| out.emit(seq, SensorRecord::Snippet(Box::new(s))));
        }
    }

    /// A reload: the new rule set goes into the detector between two batches, before any
    /// frame after the reload's place in the input.
    fn on_epoch(&mut self, epoch: u64, seq: u64, out: &mut Out) {
        if let Some(rules) = self.reloads.as_ref().and_then(|r| r.rules(self.index, epoch)) {
            // What the flows carried so far goes to the meters of the old rules (kept by the
            // reload when unchanged); the new rules' meters count from here on.
            if let Some(f) = self.flows.as_mut() {
                f.fold_intervals(None);
            }
            self.pass_intervals();
            self.detector.reload(rules.clone());
            self.rules = rules;
            self.fold_baselines();
        }
        out.emit(seq, SensorRecord::Reloaded(epoch));
    }

    fn finish(mut self, seq: u64, out: &mut Out) -> WorkerStats {
        if let Some(f) = self.flows.as_mut() {
            f.finish(&mut |r| out.emit(seq, SensorRecord::Flow(r)));
        }
        self.pass_intervals();
        let (history, rules) = (&mut self.history, &self.rules);
        self.detector.finish(&mut |o| emit_detection(history, rules, seq, o, out));
        if let Some(h) = self.history.as_mut() {
            h.finish(&mut |s| out.emit(seq, SensorRecord::Snippet(Box::new(s))));
        }
        WorkerStats {
            decode: self.decode_stats,
            detect: self.detector.stats(),
            flows: self.flows.as_ref().map(FlowMeter::stats).unwrap_or_default(),
            snippets: self.history.as_ref().map(PacketHistory::stats).unwrap_or_default(),
        }
    }
}
