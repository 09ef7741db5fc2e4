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

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use outpost_capture::EpochRequest;
use outpost_detector::RuleSet;

/// Rule sets published for the pipeline's epochs, shared by the reload thread, the workers and
/// the collector (its *consumers*).
#[derive(Debug, Default)]
pub struct RuleReloads {
    request: Arc<EpochRequest>,
    published: Mutex<Published>,
    /// Whether the run meters flows (set once by the run before it starts).
    flows_metered: OnceLock<bool>,
}

/// The rule sets not yet taken by every consumer.
#[derive(Debug, Default)]
struct Published {
    /// `(epoch, rules)`, epochs ascending.
    sets: Vec<(u64, Arc<RuleSet>)>,
    /// Per consumer, the last epoch it took (none known yet: nothing is let go).
    taken: Vec<u64>,
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

    /// Tells, once, before the pipeline starts, whether this run meters flows (rules that
    /// need flow records can only be swapped in if it does) and how many consumers take the
    /// rule sets (the workers and the collector).
    pub fn start(&self, flows_metered: bool, consumers: usize) {
        self.lock().taken = vec![0; consumers];
        let _ = self.flows_metered.set(flows_metered);
    }

    /// Whether the run has started ([`RuleReloads::start`]): only then can a rule set be
    /// checked and published.
    #[must_use]
    pub fn started(&self) -> bool {
        self.flows_metered.get().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `rules` under a new epoch and asks the pipeline for it; returns the epoch.
    ///
    /// # Errors
    /// [`ReloadError`] when the rules cannot run in this pipeline; nothing is published then.
    pub fn publish(&self, rules: Arc<RuleSet>) -> Result<u64, ReloadError> {
        if rules.needs_flows() && self.flows_metered.get() != Some(&true) {
            return Err(ReloadError::NeedsFlows);
        }
        let epoch = {
            let mut p = self.lock();
            let epoch = p.sets.last().map_or(1, |(e, _)| e + 1);
            p.sets.push((epoch, rules));
            epoch
        };
        self.request.request(epoch);
        Ok(epoch)
    }

    /// The rule set of `epoch`, for consumer `consumer` (a worker's index; the collector is
    /// the last). A set is let go once every consumer took it or a later one, so every
    /// consumer finds the set of each epoch it is given, however many reloads come quickly.
    #[must_use]
    pub fn rules(&self, consumer: usize, epoch: u64) -> Option<Arc<RuleSet>> {
        let mut p = self.lock();
        let found = p.sets.iter().find(|(e, _)| *e == epoch).map(|(_, r)| r.clone());
        if let Some(t) = p.taken.get_mut(consumer) {
            *t = (*t).max(epoch);
        }
        if let Some(&all) = p.taken.iter().min() {
            p.sets.retain(|(e, _)| *e >= all);
        }
        found
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
        r.start(false, 2);
        assert_eq!(r.epochs().requested(), 0);
        let (a, b) = (rules(PACKET_RULE), rules(PACKET_RULE));
        assert_eq!(r.publish(a.clone()), Ok(1));
        assert_eq!(r.epochs().requested(), 1);
        assert_eq!(r.publish(b.clone()), Ok(2));
        assert_eq!(r.epochs().requested(), 2);
        assert!(r.rules(0, 1).is_some_and(|x| Arc::ptr_eq(&x, &a)));
        assert!(r.rules(0, 2).is_some_and(|x| Arc::ptr_eq(&x, &b)));
        assert!(r.rules(0, 3).is_none());
    }

    #[test]
    fn a_set_is_kept_until_every_consumer_took_it_or_a_later_one() {
        let r = RuleReloads::default();
        r.start(false, 3);
        let sets: Vec<Arc<RuleSet>> = (0..40).map(|_| rules(PACKET_RULE)).collect();
        for s in &sets {
            r.publish(s.clone()).expect("publishes");
        }
        // Consumer 0 is far ahead, 1 took epoch 2, 2 has taken nothing yet.
        assert!(r.rules(0, 40).is_some_and(|x| Arc::ptr_eq(&x, &sets[39])));
        assert!(r.rules(1, 2).is_some_and(|x| Arc::ptr_eq(&x, &sets[1])));
        assert!(r.rules(2, 1).is_some_and(|x| Arc::ptr_eq(&x, &sets[0])), "the oldest is still there");
        assert_eq!(r.lock().sets.len(), 40, "consumer 2 is at epoch 1");
        assert!(r.rules(2, 40).is_some());
        assert_eq!(r.lock().sets.len(), 39, "epoch 1 is let go: every consumer is past it");
        assert!(r.rules(1, 40).is_some());
        assert_eq!(r.lock().sets.len(), 1, "only the running set is kept");
    }

    #[test]
    fn rules_that_need_flows_are_refused_when_the_run_meters_none() {
        let r = RuleReloads::default();
        assert!(!r.started());
        r.start(false, 1);
        assert!(r.started());
        assert_eq!(r.publish(rules(FLOW_RULE)), Err(ReloadError::NeedsFlows));
        assert_eq!(r.epochs().requested(), 0, "a refused set asks for nothing");
        let metered = RuleReloads::default();
        metered.start(true, 1);
        assert_eq!(metered.publish(rules(FLOW_RULE)), Ok(1));
    }
}
