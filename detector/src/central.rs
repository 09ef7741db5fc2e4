//! The collector's detector: everything that needs all workers' view, in deterministic order.
//!
//! The collector hands it, in the pipeline's merged order, every worker alert, flow record,
//! partial aggregate and watermark. It
//!
//! - merges Merged threshold rules' partial aggregates and judges them when the watermark
//!   passes a bucket's end plus the lateness;
//! - runs flow threshold rules and flow baselines on flow records;
//! - merges packet baselines' partial measurements and judges each interval;
//! - follows sequence rules over alerts and flow records;
//! - passes every alert through the [`AlertPolicy`].
//!
//! Absence and state-timeout alerts enter at the next watermark, in event-time order (ties by rule and alert
//! id): a worker raises them at a clock tick or a packet, which depends on where ticks fall
//! and so on the worker count, and in the collector's order they would decide which alerts a
//! rate limit lets through, or which opens a dedup interval.
//!
//! Alerts it raises itself get ids derived from their bucket, interval or input position, so
//! a replay gives the same ids.

use std::sync::Arc;

use outpost_decode::{Duration, Nanos};
use outpost_flowmeter::FlowRecord;

use crate::alert::{Alert, AlertDetail, AlertId};
use crate::baseline::{Anomaly, BaselineJudge, BaselinePartial, BaselineRule, BaselineStats};
use crate::config::{AlertPolicyConfig, InputKind};
use crate::key::KeyValue;
use crate::network::NetworkMap;
use crate::policy::{AlertPolicy, DedupSummary, PolicyStats, Verdict};
use crate::rules::{Rule, RuleId, RuleKind, RuleSet};
use crate::select::FlowView;
use crate::sequence::{SequenceStats, SequenceTracker};
use crate::threshold::{
    Crossing, ImmediateThreshold, MergedThreshold, Partial, Placement, ThresholdRule, ThresholdStats,
};

/// What the collector's detector emits.
#[derive(Debug, Clone)]
pub enum CentralOutput {
    /// An alert that passed the policy: write it.
    Alert(Alert),
    /// Duplicates of an earlier alert, at the end of its dedup interval.
    Suppressed(DedupSummary),
}

#[derive(Debug)]
enum CentralState {
    Flow(ImmediateThreshold),
    Merged(MergedThreshold),
    Baseline(BaselineJudge),
    Sequence(SequenceTracker),
    None,
}

impl CentralState {
    fn new(kind: &RuleKind) -> CentralState {
        match kind {
            RuleKind::Threshold(t) => match t.placement {
                Placement::Central => CentralState::Flow(ImmediateThreshold::new(t)),
                Placement::Merged => CentralState::Merged(MergedThreshold::new()),
                Placement::Local => CentralState::None,
            },
            RuleKind::Baseline(_) => CentralState::Baseline(BaselineJudge::default()),
            RuleKind::Sequence(_) => CentralState::Sequence(SequenceTracker::default()),
            _ => CentralState::None,
        }
    }
}

/// Per-rule counters of the collector's part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum CentralRuleStats {
    /// Threshold rules judged here.
    Threshold(ThresholdStats),
    /// Baselines.
    Baseline(BaselineStats),
    /// Sequences.
    Sequence(SequenceStats),
    /// Nothing runs here.
    None {},
}

/// Counters of the collector's detector.
#[derive(Debug, Clone, Default)]
pub struct CentralStats {
    /// Per rule, by rule id.
    pub rules: Vec<CentralRuleStats>,
    /// Per rule, by rule id: inputs offered to the rule here — flow records to flow
    /// thresholds and flow baselines, flow records and alerts to sequences.
    pub evaluated: Vec<u64>,
    /// Policy counters per rule, by rule id.
    pub policy: Vec<PolicyStats>,
}

/// The collector's detection state.
#[derive(Debug)]
pub struct CentralDetector {
    rules: Arc<RuleSet>,
    networks: Arc<NetworkMap>,
    policy_config: AlertPolicyConfig,
    policy: AlertPolicy,
    states: Vec<CentralState>,
    run_key: u64,
    lateness: Duration,
    flow_delay: Duration,
    now: Nanos,
    /// Absence alerts handed over since the last watermark.
    pending: Vec<Alert>,
    /// Per rule, inputs offered to it (see [`CentralStats::evaluated`]).
    evaluated: Vec<u64>,
    /// The ids of the rules that read flow records, ascending ([`takes_flows`]): a record
    /// visits these, not every rule.
    flow_rules: Vec<usize>,
}

/// Whether the rule reads flow records here: flow thresholds, flow baselines and sequences.
fn takes_flows(kind: &RuleKind, state: &CentralState) -> bool {
    match (kind, state) {
        (RuleKind::Baseline(b), CentralState::Baseline(_)) => b.input == InputKind::Flows,
        (_, CentralState::Flow(_) | CentralState::Sequence(_)) => true,
        _ => false,
    }
}

/// The ids of the rules of `rules` (with their states) that read flow records.
fn flow_rules(rules: &RuleSet, states: &[CentralState]) -> Vec<usize> {
    rules
        .rules
        .iter()
        .zip(states)
        .enumerate()
        .filter(|(_, (r, s))| takes_flows(&r.kind, s))
        .map(|(i, _)| i)
        .collect()
}

impl CentralDetector {
    /// State for `rules` with `policy`.
    #[must_use]
    pub fn new(
        rules: Arc<RuleSet>,
        networks: Arc<NetworkMap>,
        policy: &AlertPolicyConfig,
        run_key: u64,
        lateness: Duration,
    ) -> CentralDetector {
        let states: Vec<CentralState> = rules.rules.iter().map(|r| CentralState::new(&r.kind)).collect();
        let evaluated = vec![0; rules.rules.len()];
        CentralDetector {
            evaluated,
            flow_rules: flow_rules(&rules, &states),
            policy: AlertPolicy::new(policy, &rules),
            policy_config: policy.clone(),
            rules,
            networks,
            states,
            run_key,
            lateness,
            flow_delay: Duration::ZERO,
            now: Nanos::ZERO,
            pending: Vec::new(),
        }
    }

    /// How long after a flow's end its first record can reach the collector: the flow
    /// meter's idle timeout or close linger, whichever is longer, plus its expiry lag. Flow
    /// baselines judge an interval only this much (plus the lateness) after it ends, so the
    /// flows that ended in it have all been counted. Default zero (no flow input).
    #[must_use]
    pub fn with_flow_delay(mut self, delay: Duration) -> CentralDetector {
        self.flow_delay = delay;
        self
    }

    /// Swaps in a new rule set (at a batch boundary, when the workers' detectors swap too),
    /// keeping the state of every rule whose name and definition did not change — sequences
    /// in progress, windows, baselines, and at the policy their open dedup intervals, rate
    /// limits and counters — whatever their new ids. Changed rules start fresh; removed rules
    /// are dropped. The open dedup intervals of changed and removed rules close now: their
    /// duplicate counts go to `out`, and refer to the rule set being replaced (write them
    /// with the old rules), after the alerts raised since the last watermark, which the old
    /// rules' policy decides.
    pub fn reload(&mut self, rules: Arc<RuleSet>, out: &mut impl FnMut(CentralOutput)) {
        self.release(out);
        let carried = rules.carried_over_from(&self.rules);
        self.policy.reload(&self.policy_config, &rules, &carried, &mut |s| out(CentralOutput::Suppressed(s)));
        self.evaluated = crate::rules::carry_counts(&carried, &self.evaluated);
        let mut old: Vec<Option<CentralState>> =
            std::mem::take(&mut self.states).into_iter().map(Some).collect();
        self.states = rules
            .rules
            .iter()
            .zip(carried)
            .map(|(r, from)| {
                from.and_then(|id| old.get_mut(usize::from(id.0)).and_then(Option::take))
                    .unwrap_or_else(|| CentralState::new(&r.kind))
            })
            .collect();
        self.flow_rules = flow_rules(&rules, &self.states);
        self.rules = rules;
    }

    /// An alert raised by a worker (at input position `_seq`, which depends on the worker
    /// count: nothing derives from it): sequences see it, then the policy decides — at once,
    /// except for absence alerts, which wait for the next watermark (see the module's
    /// documentation). A sequence the alert completes raises its own alert, whose id derives
    /// from this alert's id (so it is as stable as that one: the same for every run and
    /// worker count).
    pub fn on_alert(&mut self, _seq: u64, alert: Alert, out: &mut impl FnMut(CentralOutput)) {
        if matches!(alert.detail, AlertDetail::Absence { .. } | AlertDetail::StateTimeout { .. }) {
            self.pending.push(alert);
        } else {
            self.raise(alert, out);
        }
    }

    /// An alert raised anywhere: sequences, then the policy.
    fn raise(&mut self, alert: Alert, out: &mut impl FnMut(CentralOutput)) {
        if alert.ts > self.now {
            self.now = alert.ts;
        }
        // Sequence steps made of alerts.
        let mut completed = Vec::new();
        for (i, (rule, state)) in self.rules.rules.iter().zip(self.states.iter_mut()).enumerate() {
            let (RuleKind::Sequence(sq), CentralState::Sequence(tr)) = (&rule.kind, state) else { continue };
            if let Some(e) = self.evaluated.get_mut(i) {
                *e += 1;
            }
            if !(0..sq.steps.len()).any(|step| SequenceTracker::alert_matches(sq, step, alert.rule)) {
                continue;
            }
            let key = sq.key.of_alert(&alert, &self.networks);
            let step_matches = |step: usize| SequenceTracker::alert_matches(sq, step, alert.rule);
            if let Some(c) = tr.offer(sq, key, alert.ts, step_matches) {
                completed.push((RuleId(u16::try_from(i).unwrap_or(u16::MAX)), c));
            }
        }
        if self.policy.offer(&alert, &mut |s| out(CentralOutput::Suppressed(s))) == Verdict::Pass {
            out(CentralOutput::Alert(alert));
        }
        // The triggering alert's id, folded: unique per alert, and the rule id and key in
        // the derivation keep sequences completed by the same alert apart.
        let anchor = (alert.id.0 as u64) ^ ((alert.id.0 >> 64) as u64).rotate_left(31);
        for (id, c) in completed {
            let a = Alert::for_key(
                AlertId::derive(self.run_key, anchor, id, &c.key),
                c.at,
                id,
                c.key,
                AlertDetail::Sequence { started: c.started },
            );
            self.raise(a, out);
        }
    }

    /// Raises the absence alerts handed over since the last watermark, in event-time order
    /// (ties by rule and id), which is the same whatever the worker count.
    fn release(&mut self, out: &mut impl FnMut(CentralOutput)) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable_by_key(|a| (a.ts, a.rule, a.id));
        for alert in pending.drain(..) {
            self.raise(alert, out);
        }
        // Keeps the buffer's capacity.
        if self.pending.is_empty() {
            self.pending = pending;
        }
    }

    /// A flow record (at input position `_seq`; nothing derives from it).
    pub fn on_flow(&mut self, _seq: u64, r: &FlowRecord, out: &mut impl FnMut(CentralOutput)) {
        let mut raised = Vec::new();
        let networks = &*self.networks;
        let view = FlowView::new(r);
        for &i in &self.flow_rules {
            let (Some(rule), Some(state)) = (self.rules.rules.get(i), self.states.get_mut(i)) else {
                continue;
            };
            let id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
            if let Some(e) = self.evaluated.get_mut(i) {
                *e += 1;
            }
            match (&rule.kind, state) {
                (RuleKind::Threshold(t), CentralState::Flow(st)) => {
                    if !t.selects_flow(&view) {
                        continue;
                    }
                    let key = t.key.of_flow(r, networks);
                    if let Some(c) = st.add(t, key, r.end(), t.flow_contribution(&view)) {
                        raised.push(flow_alert(
                            self.run_key,
                            id,
                            key,
                            r,
                            AlertDetail::Threshold { value: c.value, events: c.events },
                        ));
                    }
                }
                (RuleKind::Baseline(b), CentralState::Baseline(j)) if view.matches(&b.filter) => {
                    j.on_flow(b, r);
                }
                (RuleKind::Sequence(sq), CentralState::Sequence(tr)) => {
                    // A record can only start a sequence (step 0) or take a key's next step:
                    // with no key in progress, the later steps need not be tried.
                    let step_matches = |step: usize| SequenceTracker::flow_matches(sq, step, &view);
                    let later = || tr.in_progress() && (1..sq.steps.len()).any(step_matches);
                    if !(step_matches(0) || later()) {
                        continue;
                    }
                    let key = sq.key.of_flow(r, networks);
                    if let Some(c) = tr.offer(sq, key, r.end(), step_matches) {
                        let mut a = flow_alert(
                            self.run_key,
                            id,
                            key,
                            r,
                            AlertDetail::Sequence { started: c.started },
                        );
                        a.ts = c.at;
                        raised.push(a);
                    }
                }
                _ => {}
            }
        }
        for a in raised {
            self.raise(a, out);
        }
    }

    /// A worker's partial aggregate of a Merged threshold rule.
    pub fn on_partial(&mut self, p: Partial) {
        let i = usize::from(p.rule.0);
        if let (Some(Rule { kind: RuleKind::Threshold(t), .. }), Some(CentralState::Merged(st))) =
            (self.rules.rules.get(i), self.states.get_mut(i))
        {
            st.add(t, p);
        }
    }

    /// A worker's partial measurement of a baseline rule.
    pub fn on_baseline(&mut self, p: BaselinePartial) {
        if let Some(CentralState::Baseline(j)) = self.states.get_mut(usize::from(p.rule.0)) {
            j.add(p);
        }
    }

    /// Every worker has processed the input up to `watermark`: judge finished buckets and
    /// intervals, expire sequences, close dedup intervals.
    pub fn on_watermark(&mut self, watermark: Nanos, out: &mut impl FnMut(CentralOutput)) {
        if watermark > self.now {
            self.now = watermark;
        }
        let mut raised = Vec::new();
        let (run_key, lateness, flow_delay) = (self.run_key, self.lateness, self.flow_delay);
        for (i, (rule, state)) in self.rules.rules.iter().zip(self.states.iter_mut()).enumerate() {
            let id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
            match (&rule.kind, state) {
                (RuleKind::Threshold(t), CentralState::Merged(st)) => {
                    st.evaluate(t, watermark, lateness, &mut |key, end, c| {
                        raised.push(merged_alert(run_key, id, t, key, end, c));
                    });
                }
                (RuleKind::Threshold(t), CentralState::Flow(st)) => st.expire(t, watermark),
                (RuleKind::Baseline(b), CentralState::Baseline(j)) => {
                    let wait = match b.input {
                        InputKind::Flows => Duration(lateness.0.saturating_add(flow_delay.0)),
                        InputKind::Packets => lateness,
                    };
                    j.evaluate(b, watermark, wait, &mut |an| {
                        raised.push(baseline_alert(run_key, id, b, &an));
                    });
                }
                (RuleKind::Sequence(sq), CentralState::Sequence(tr)) => {
                    // Steps up to the lateness (alerts) and the flow meter's record delay (flow
                    // records) before the watermark may still arrive.
                    let wait = Duration(lateness.0.saturating_add(flow_delay.0));
                    tr.expire(sq, watermark.saturating_sub(wait));
                }
                _ => {}
            }
        }
        for a in raised {
            self.raise(a, out);
        }
        self.release(out);
        self.policy.advance(watermark, &mut |s| out(CentralOutput::Suppressed(s)));
    }

    /// End of input: judge everything still open, close every dedup interval.
    pub fn finish(&mut self, out: &mut impl FnMut(CentralOutput)) {
        // Buckets and intervals still open are judged as if time had passed them.
        let end = Nanos::MAX;
        let saved = self.lateness;
        self.lateness = Duration::ZERO;
        let mut raised = Vec::new();
        for (i, (rule, state)) in self.rules.rules.iter().zip(self.states.iter_mut()).enumerate() {
            let id = RuleId(u16::try_from(i).unwrap_or(u16::MAX));
            let run_key = self.run_key;
            match (&rule.kind, state) {
                (RuleKind::Threshold(t), CentralState::Merged(st)) => {
                    st.evaluate(t, end, Duration::ZERO, &mut |key, bucket_end, c| {
                        raised.push(merged_alert(run_key, id, t, key, bucket_end, c));
                    });
                }
                (RuleKind::Baseline(b), CentralState::Baseline(j)) => {
                    j.evaluate(b, end, Duration::ZERO, &mut |an| {
                        raised.push(baseline_alert(run_key, id, b, &an));
                    });
                }
                _ => {}
            }
        }
        self.lateness = saved;
        for a in raised {
            self.raise(a, out);
        }
        self.release(out);
        self.policy.finish(&mut |s| out(CentralOutput::Suppressed(s)));
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> CentralStats {
        CentralStats {
            rules: self
                .states
                .iter()
                .map(|s| match s {
                    CentralState::Flow(t) => CentralRuleStats::Threshold(t.stats.clone()),
                    CentralState::Merged(t) => CentralRuleStats::Threshold(t.stats.clone()),
                    CentralState::Baseline(b) => CentralRuleStats::Baseline(b.stats.clone()),
                    CentralState::Sequence(s) => CentralRuleStats::Sequence(s.stats.clone()),
                    CentralState::None => CentralRuleStats::None {},
                })
                .collect(),
            evaluated: self.evaluated.clone(),
            policy: self.policy.stats.clone(),
        }
    }
}

/// An alert raised by a flow record.
/// The identity of a flow record that is the same whatever the worker count (flow ids and
/// record positions depend on it): its 5-tuple, VLAN, first packet and record number.
/// A merged threshold rule's alert for the bucket ending at `end`; its id derives from the
/// bucket, so it is the same for every run and worker count.
fn merged_alert(
    run_key: u64,
    rule: RuleId,
    t: &ThresholdRule,
    key: KeyValue,
    end: Nanos,
    c: Crossing,
) -> Alert {
    let bucket = end.0 / t.bucket_len().as_nanos();
    Alert::for_key(
        AlertId::derive(run_key, bucket | (1 << 62), rule, &key),
        end,
        rule,
        key,
        AlertDetail::Threshold { value: c.value, events: c.events },
    )
}

/// A baseline rule's alert for a host's interval; its id derives from the interval.
fn baseline_alert(run_key: u64, rule: RuleId, b: &BaselineRule, an: &Anomaly) -> Alert {
    let key = KeyValue { src: an.host, ..KeyValue::default() };
    let interval = an.interval_start.0 / b.interval.as_nanos().max(1);
    Alert::for_key(
        AlertId::derive(run_key, interval | (1 << 61), rule, &key),
        an.interval_end,
        rule,
        key,
        AlertDetail::Baseline {
            value: an.value,
            mean: an.mean,
            sigma: an.sigma,
            score: an.score,
            interval_start: an.interval_start,
        },
    )
}

fn flow_anchor(r: &FlowRecord) -> u64 {
    let tuple = KeyValue {
        src: r.src,
        dst: r.dst,
        src_port: r.src_port,
        dst_port: r.dst_port,
        proto: r.proto,
        network: u32::from(r.vlan),
    };
    tuple.hash64() ^ r.start().0.rotate_left(17) ^ u64::from(r.sequence).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn flow_alert(run_key: u64, rule: RuleId, key: KeyValue, r: &FlowRecord, detail: AlertDetail) -> Alert {
    Alert {
        id: AlertId::derive(run_key, flow_anchor(r) | (1 << 63), rule, &key),
        ts: r.end(),
        rule,
        key,
        frame: None,
        flow_id: Some(r.flow_id),
        src: r.src,
        dst: r.dst,
        src_port: r.src_port,
        dst_port: r.dst_port,
        ip_proto: r.proto,
        vlan: (r.vlan != 0).then_some(r.vlan),
        detail,
    }
}
