//! The collector's side of alert snippets: which of the workers' snippets are written.
//!
//! Workers start a snippet at every alert they raise about a source address (the packets of
//! that source from `before` the alert to `after` it) and hand it over, through the ordered
//! merge, once capture time passed its window. The alert policy (dedup, suppression, rate
//! limits) runs here, on the collector, so only here is it known whether the alert is
//! reported: a snippet is written only for an alert that is, and a deduplicated or suppressed
//! alert's snippet is discarded (counted) — its packets are not written again.
//!
//! The merge hands each worker's records over in the order it emitted them, so an alert
//! arrives before its snippet; its verdict is usually known by then. Alerts the policy holds
//! back for a while (absence and state-timeout alerts wait for the watermark) may be judged
//! after their snippet arrived: the snippet waits for the verdict until the watermark passes
//! the alert's time plus the lateness, by when such alerts have been judged.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use outpost_decode::{Duration, IpAddress, Nanos};
use outpost_detector::Alert;
use outpost_snippet::{PcapSnippetWriter, Snippet, SnippetConfig, SnippetSender, WriterStats, snippet_queue};
use serde::Serialize;

/// A worker alert whose snippet is expected.
#[derive(Debug)]
enum Pending {
    /// Neither verdict nor snippet yet.
    Awaiting,
    /// Reported: write the snippet when it comes.
    Reported,
    /// The snippet came first; waits for the verdict.
    Parked(Box<Snippet>),
}

/// Collector-side counters of snippets.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnippetCounts {
    /// Reported alerts whose snippet went to the writer.
    pub queued: u64,
    /// Snippets discarded because their alert was not reported (deduplicated, suppressed,
    /// rate-limited).
    pub not_reported: u64,
}

/// Snippet counters of a run (summary `snippets`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnippetSummary {
    /// The snippet directory.
    pub dir: PathBuf,
    /// Packet histories of the workers.
    pub history: outpost_snippet::HistoryStats,
    /// The collector's choices.
    pub collector: SnippetCounts,
    /// The writer thread.
    pub writer: WriterStats,
}

/// Decides which snippets are written, and writes them on the writer thread.
#[derive(Debug)]
pub struct SnippetCollector {
    config: SnippetConfig,
    tx: SnippetSender,
    writer: PcapSnippetWriter,
    pending: HashMap<u128, Pending>,
    /// Parked snippets in arrival order with their alert's time, for discarding them.
    parked: VecDeque<(Nanos, u128)>,
    lateness: Duration,
    counts: SnippetCounts,
    /// Wait for room in the writer's queue (offline replay) instead of dropping.
    wait: bool,
}

impl SnippetCollector {
    /// Starts the writer thread.
    ///
    /// # Errors
    /// When the snippet directory cannot be created or read.
    pub fn start(config: &SnippetConfig, lateness: Duration, wait: bool) -> anyhow::Result<SnippetCollector> {
        let (tx, rx) = snippet_queue(config.queue as usize);
        let writer = PcapSnippetWriter::spawn(config, rx)
            .map_err(|e| anyhow::anyhow!("snippets: {e} (directory {})", config.dir.display()))?;
        Ok(SnippetCollector {
            config: config.clone(),
            tx,
            writer,
            pending: HashMap::new(),
            parked: VecDeque::new(),
            lateness,
            counts: SnippetCounts::default(),
            wait,
        })
    }

    /// A worker raised `alert` (before the policy sees it): its snippet will follow if the
    /// alert names a source address.
    pub fn on_worker_alert(&mut self, alert: &Alert) {
        if alert.src != IpAddress::UNSPECIFIED {
            self.pending.insert(alert.id.0, Pending::Awaiting);
        }
    }

    /// The policy reported `alert`: returns the path its snippet will have, if it gets one.
    pub fn on_reported(&mut self, alert: &Alert) -> Option<PathBuf> {
        let id = alert.id.0;
        match self.pending.remove(&id)? {
            Pending::Awaiting | Pending::Reported => {
                self.pending.insert(id, Pending::Reported);
            }
            Pending::Parked(s) => self.write(*s),
        }
        Some(self.config.path_for(id, alert.ts))
    }

    /// A worker's finished snippet.
    pub fn on_snippet(&mut self, s: Box<Snippet>) {
        let id = s.alert_id();
        match self.pending.remove(&id) {
            Some(Pending::Reported) => self.write(*s),
            Some(Pending::Awaiting) => {
                self.parked.push_back((s.alert_ts(), id));
                self.pending.insert(id, Pending::Parked(s));
            }
            // Not expected: one snippet per alert id.
            Some(Pending::Parked(_)) | None => self.counts.not_reported += 1,
        }
    }

    /// Event time reached `t`: alerts up to `t - lateness` have been judged, so snippets of
    /// those still unreported are discarded.
    pub fn on_watermark(&mut self, t: Nanos) {
        while let Some(&(ts, id)) = self.parked.front() {
            if Nanos(ts.0.saturating_add(self.lateness.0)) >= t {
                break;
            }
            self.parked.pop_front();
            if matches!(self.pending.get(&id), Some(Pending::Parked(_))) {
                self.pending.remove(&id);
                self.counts.not_reported += 1;
            }
        }
    }

    /// Queues a snippet for the writer; a full queue drops it (live capture, counted by the
    /// writer as `dropped_queue_full`) or, offline, waits.
    fn write(&mut self, s: Snippet) {
        let sent = if self.wait { self.tx.send_wait(s) } else { self.tx.send(s) };
        if sent {
            self.counts.queued += 1;
        }
    }

    /// End of the run (after the policy's last verdicts): discards what is left unreported,
    /// waits for the writer to finish, and returns the counters.
    pub fn finish(mut self, history: outpost_snippet::HistoryStats) -> SnippetSummary {
        for (_, p) in self.pending.drain() {
            if matches!(p, Pending::Parked(_)) {
                self.counts.not_reported += 1;
            }
        }
        drop(self.tx);
        SnippetSummary {
            dir: self.config.dir.clone(),
            history,
            collector: self.counts,
            writer: self.writer.finish(),
        }
    }
}
