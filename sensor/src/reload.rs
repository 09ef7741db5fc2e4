//! Rule reloads while the sensor runs: `outpost run` recompiles its rules (and rereads their
//! intel lists) on SIGHUP, without stopping the capture.
//!
//! The reload thread compiles the configuration's rules off the packet path; a configuration
//! that does not compile changes nothing (the error, naming file, line and key, goes to
//! standard error and the running rules stay). A compiled rule set is published here under a
//! new epoch, and the pipeline is asked for that epoch ([`EpochRequest`]): between two batches
//! of input the receive thread marks the change at one sequence number, every worker swaps the
//! rule set into its detector before its first frame after that number
//! (`Detector::reload`, at a batch boundary), and the collector swaps it into the central
//! detector when the merged records reach it (`CentralDetector::reload`). Records of the old
//! rules are therefore all written with the old rule set and records of the new rules with
//! the new one, and rules whose name and definition did not change keep their state.

use std::sync::{Arc, Mutex};

use outpost_capture::EpochRequest;
use outpost_detector::RuleSet;

/// Rule sets published by the last reloads (older ones are let go).
const KEPT: usize = 16;

/// Rule sets published for the pipeline's epochs, shared by the reload thread, the workers and
/// the collector.
#[derive(Debug, Default)]
pub struct RuleReloads {
    request: Arc<EpochRequest>,
    /// `(epoch, rules)`, epochs ascending; the last [`KEPT`].
    published: Mutex<Vec<(u64, Arc<RuleSet>)>>,
    /// Whether the run meters flows (set once by the run before it starts).
    flows_metered: std::sync::atomic::AtomicBool,
}

/// Why a compiled rule set cannot replace the running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadError {
    /// The new rules read flow records, which this run does not produce.
    NeedsFlows,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::NeedsFlows => f.write_str(
                "the new rules read flow records, but this run does not meter flows (its rules did not need them and no flow output is configured): restart the sensor to use them",
            ),
        }
    }
}

impl std::error::Error for ReloadError {}

impl RuleReloads {
    /// The request the pipeline watches ([`outpost_capture::PipelineConfig::epochs`]).
    #[must_use]
    pub fn epochs(&self) -> Arc<EpochRequest> {
        self.request.clone()
    }

    /// Tells whether this run meters flows (rules that need flow records can only be swapped
    /// in if it does).
    pub fn set_flows_metered(&self, metered: bool) {
        self.flows_metered.store(metered, std::sync::atomic::Ordering::Relaxed);
    }

    /// Publishes `rules` under a new epoch and asks the pipeline for it; returns the epoch.
    ///
    /// # Errors
    /// [`ReloadError`] when the rules cannot run in this pipeline; nothing is published then.
    pub fn publish(&self, rules: Arc<RuleSet>) -> Result<u64, ReloadError> {
        if rules.needs_flows() && !self.flows_metered.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ReloadError::NeedsFlows);
        }
        let epoch = {
            let mut p = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let epoch = p.last().map_or(1, |(e, _)| e + 1);
            p.push((epoch, rules));
            if p.len() > KEPT {
                p.remove(0);
            }
            epoch
        };
        self.request.request(epoch);
        Ok(epoch)
    }

    /// The rule set of `epoch`: the one published under it, or — if it was let go, after more
    /// than [`KEPT`] reloads in quick succession — the oldest one kept after it.
    #[must_use]
    pub fn rules(&self, epoch: u64) -> Option<Arc<RuleSet>> {
        let p = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        p.iter().find(|(e, _)| *e >= epoch).map(|(_, r)| r.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Arc<RuleSet> {
        let src = outpost_detector::SourceText::new("rules.toml", text);
        let cfg: outpost_detector::RulesConfig = src.parse().expect("rules parse");
        Arc::new(RuleSet::compile([(&cfg, &src, "")]).expect("rules compile"))
    }

    const PACKET_RULE: &str = r#"
[[threshold]]
name = "syns"
filter = "tcp[tcpflags] & tcp-syn != 0"
key = ["src_ip"]
window = "10s"
threshold = 10
"#;

    const FLOW_RULE: &str = r#"
[[threshold]]
name = "short-flows"
input = "flows"
key = ["src_ip"]
window = "10s"
threshold = 10
"#;

    #[test]
    fn each_published_rule_set_gets_the_next_epoch_and_asks_the_pipeline_for_it() {
        let r = RuleReloads::default();
        assert_eq!(r.epochs().requested(), 0);
        let (a, b) = (rules(PACKET_RULE), rules(PACKET_RULE));
        assert_eq!(r.publish(a.clone()), Ok(1));
        assert_eq!(r.epochs().requested(), 1);
        assert_eq!(r.publish(b.clone()), Ok(2));
        assert_eq!(r.epochs().requested(), 2);
        assert!(r.rules(1).is_some_and(|x| Arc::ptr_eq(&x, &a)));
        assert!(r.rules(2).is_some_and(|x| Arc::ptr_eq(&x, &b)));
        assert!(r.rules(3).is_none());
    }

    #[test]
    fn only_the_last_sets_are_kept_and_a_let_go_epoch_gets_the_next_kept_one() {
        let r = RuleReloads::default();
        let sets: Vec<Arc<RuleSet>> = (0..KEPT + 3).map(|_| rules(PACKET_RULE)).collect();
        for s in &sets {
            r.publish(s.clone()).expect("publishes");
        }
        assert!(r.rules(1).is_some_and(|x| Arc::ptr_eq(&x, &sets[3])));
        assert!(r.rules((KEPT + 3) as u64).is_some_and(|x| Arc::ptr_eq(&x, &sets[KEPT + 2])));
    }

    #[test]
    fn rules_that_need_flows_are_refused_when_the_run_meters_none() {
        let r = RuleReloads::default();
        assert_eq!(r.publish(rules(FLOW_RULE)), Err(ReloadError::NeedsFlows));
        assert_eq!(r.epochs().requested(), 0, "a refused set asks for nothing");
        r.set_flows_metered(true);
        assert_eq!(r.publish(rules(FLOW_RULE)), Ok(1));
    }
}
