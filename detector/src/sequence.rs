//! Sequence rules: steps that happen in order for the same key within a time limit — e.g. a
//! brute force followed by a long session from the same source to the same server (possible
//! compromise).
//!
//! Steps are alerts of other rules (multi-level rules: an alert is an input) or flow records
//! matching a filter and flow conditions. The rule runs in the collector, which sees every
//! alert and flow record in deterministic order. Per key it remembers how far the sequence got,
//! when it started and when its latest step happened. An input takes at most one step (an
//! input that matches several steps is not several steps). The next step counts only if it
//! happened, in event time, no earlier than the step before and within `within` of the first
//! — a flow record reaches the collector after its flow ended, so input order alone does not
//! say what came first. Any other input is ignored, except that one matching the first step
//! (re)starts the sequence. When the last step arrives the rule alerts and the key starts
//! over; a key whose time limit passed is forgotten (counted).

use std::collections::HashMap as StdHashMap;

use outpost_decode::{Duration, Nanos};

use crate::config::{ConfigError, SequenceConfig, SourceText};
use crate::key::{KeySpec, KeyValue};
use crate::rules::RuleId;
use crate::select::{FlowConditions, FlowSelector, FlowView, compile_filter};
use crate::wheel::TimerWheel;

/// One step.
#[derive(Debug, Clone)]
pub enum Step {
    /// An alert of one of these rules (resolved to ids once all rules are compiled).
    Alerts(Vec<RuleId>),
    /// A flow record matching the selector (boxed: a selector is much larger than a list of
    /// rule ids).
    Flow(Box<FlowSelector>),
}

/// A compiled sequence rule.
#[derive(Debug, Clone)]
pub struct SequenceRule {
    /// Key.
    pub key: KeySpec,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Time limit from the first step.
    pub within: Duration,
    /// Most keys followed.
    pub max_keys: usize,
    /// Rule names of alert steps, for resolving (index of step, names with spans).
    pub(crate) unresolved: Vec<(usize, Vec<toml::Spanned<String>>)>,
}

impl SequenceRule {
    /// Compiles `[[sequence]]`; alert steps are resolved later by [`SequenceRule::resolve`].
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending value.
    pub fn compile(c: &SequenceConfig, src: &SourceText, key: &str) -> Result<SequenceRule, ConfigError> {
        let spec = KeySpec::new(c.key.get_ref(), src, c.key.span(), &format!("{key}.key"))?;
        if c.steps.len() < 2 {
            return Err(src.error(
                c.name.span(),
                format!("{key}.steps"),
                "a sequence needs at least two steps",
            ));
        }
        let mut steps = Vec::with_capacity(c.steps.len());
        let mut unresolved = Vec::new();
        for (i, s) in c.steps.iter().enumerate() {
            let k = format!("{key}.steps[{i}]");
            match (s.alerts.is_empty(), &s.filter) {
                (false, None) => {
                    unresolved.push((i, s.alerts.clone()));
                    steps.push(Step::Alerts(Vec::new()));
                }
                (true, filter) => {
                    let f = compile_filter(filter.as_ref(), src, &format!("{k}.filter"))?;
                    steps.push(Step::Flow(Box::new(FlowSelector::new(f, FlowConditions::new(&s.flow)))));
                }
                (false, Some(f)) => {
                    return Err(src.error(
                        f.span(),
                        k,
                        "a step is either `alerts` or a flow `filter`, not both",
                    ));
                }
            }
        }
        if c.within.0 == Duration::ZERO {
            return Err(src.error(c.name.span(), format!("{key}.within"), "must be longer than zero"));
        }
        Ok(SequenceRule { key: spec, steps, within: c.within.0, max_keys: c.max_keys.max(1), unresolved })
    }

    /// Resolves alert steps' rule names with `lookup`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a name that is no rule.
    pub fn resolve(
        &mut self,
        src: &SourceText,
        key: &str,
        lookup: impl Fn(&str) -> Option<RuleId>,
    ) -> Result<(), ConfigError> {
        for (i, names) in std::mem::take(&mut self.unresolved) {
            let mut ids = Vec::with_capacity(names.len());
            for n in &names {
                let id = lookup(n.get_ref()).ok_or_else(|| {
                    src.error(
                        n.span(),
                        format!("{key}.steps[{i}].alerts"),
                        format!("no rule named `{}`", n.get_ref()),
                    )
                })?;
                ids.push(id);
            }
            if let Some(s) = self.steps.get_mut(i) {
                *s = Step::Alerts(ids);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Steps done.
    done: usize,
    /// When the first step happened.
    started: Nanos,
    /// When the latest step happened: the next one may not come before it.
    last: Nanos,
    /// Identifies this entry in the expiry wheel.
    generation: u32,
}

/// A completed sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// The key.
    pub key: KeyValue,
    /// When the first step happened.
    pub started: Nanos,
    /// When the last did.
    pub at: Nanos,
}

/// Counters of a sequence rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SequenceStats {
    /// Steps taken.
    pub steps: u64,
    /// Sequences completed.
    pub completed: u64,
    /// Keys in progress.
    pub keys: u64,
    /// Sequences dropped because the table was full.
    pub dropped: u64,
    /// Sequences forgotten because their time limit passed before they completed.
    pub expired: u64,
}

/// The collector's progress of one sequence rule.
///
/// Memory is bounded: at most `max_keys` keys are followed (more are dropped and counted), and
/// a key whose time limit has passed is forgotten (counted as `expired`) when event time moves
/// past it, found through a timer wheel so expiring costs nothing per idle key.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    keys: StdHashMap<KeyValue, Progress>,
    wheel: Option<TimerWheel<KeyValue>>,
    next_generation: u32,
    /// Counters.
    pub stats: SequenceStats,
}

impl SequenceTracker {
    /// Offers an input for `key` at event time `ts`; `matches(i)` says whether it matches
    /// step `i` of `rule`. An input takes at most one step: the key's next step, if the input
    /// matches it, is not earlier than the step before and is within `within` of the first;
    /// otherwise, if it matches the first step, it (re)starts the key's sequence. Returns the
    /// completed sequence when that was the last step.
    pub fn offer(
        &mut self,
        rule: &SequenceRule,
        key: KeyValue,
        ts: Nanos,
        matches: impl Fn(usize) -> bool,
    ) -> Option<Completed> {
        let live = self.keys.get(&key).copied().filter(|p| ts.since(p.started) <= rule.within);
        let next = match live {
            Some(p) if ts >= p.last && matches(p.done) => Progress { done: p.done + 1, last: ts, ..p },
            _ if matches(0) => Progress { done: 1, started: ts, last: ts, generation: 0 },
            _ => return None,
        };
        self.stats.steps += 1;
        if next.done >= rule.steps.len() {
            self.keys.remove(&key);
            self.stats.completed += 1;
            self.stats.keys = self.keys.len() as u64;
            return Some(Completed { key, started: next.started, at: ts });
        }
        match self.keys.get_mut(&key) {
            // The wheel entry of the key stays valid: it re-reads `started` when it comes due.
            Some(p) => *p = Progress { generation: p.generation, ..next },
            None => {
                if self.keys.len() >= rule.max_keys {
                    self.stats.dropped += 1;
                    return None;
                }
                self.next_generation = self.next_generation.wrapping_add(1);
                let generation = self.next_generation;
                self.keys.insert(key, Progress { generation, ..next });
                let wheel = self.wheel.get_or_insert_with(|| TimerWheel::for_timeout(rule.within));
                if wheel.len() > 2 * self.keys.len().max(1024) {
                    // Entries of completed keys pile up: drop them.
                    let keys = &self.keys;
                    wheel.retain(|k, g| keys.get(k).is_some_and(|p| p.generation == g));
                }
                wheel.schedule(key, generation, next.started.saturating_add(rule.within));
                self.stats.keys = self.keys.len() as u64;
            }
        }
        None
    }

    /// True when some key has taken a step and not yet completed or expired: only then can
    /// an input match anything but the first step.
    #[must_use]
    pub fn in_progress(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Forgets the sequences whose time limit ended before `now` (counted as `expired`):
    /// no later step can complete them. The caller passes the event time before which no
    /// more input can arrive (the watermark less lateness and flow-record delay).
    pub fn expire(&mut self, rule: &SequenceRule, now: Nanos) {
        let Some(wheel) = self.wheel.as_mut() else { return };
        let (keys, stats) = (&mut self.keys, &mut self.stats);
        wheel.advance(now, |key, generation| {
            let p = keys.get(&key).filter(|p| p.generation == generation)?;
            let deadline = p.started.saturating_add(rule.within);
            if deadline >= now {
                return Some(deadline.saturating_add(Duration(1)));
            }
            keys.remove(&key);
            stats.expired += 1;
            None
        });
        self.stats.keys = self.keys.len() as u64;
    }

    /// Whether a flow record matches step `i` of `rule`.
    #[must_use]
    pub fn flow_matches(rule: &SequenceRule, i: usize, v: &FlowView<'_>) -> bool {
        matches!(rule.steps.get(i), Some(Step::Flow(s)) if s.matches(v))
    }

    /// Whether an alert of rule `alert_rule` matches step `i` of `rule`.
    #[must_use]
    pub fn alert_matches(rule: &SequenceRule, i: usize, alert_rule: RuleId) -> bool {
        matches!(rule.steps.get(i), Some(Step::Alerts(ids)) if ids.contains(&alert_rule))
    }
}
