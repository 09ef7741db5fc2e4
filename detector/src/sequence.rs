//! Sequence rules: steps that happen in order for the same key within a time limit — e.g. a
//! brute force followed by a long session from the same source to the same server (possible
//! compromise).
//!
//! Steps are alerts of other rules (multi-level rules: an alert is an input) or flow records
//! matching a filter and flow conditions. The rule runs in the collector, which sees every
//! alert and flow record in deterministic order. Per key it remembers how far the sequence got
//! and when it started; a step that comes out of order is ignored, except that the first step
//! always (re)starts the sequence. When the last step arrives within `within` of the first,
//! the rule alerts and the key starts over.

use std::collections::HashMap as StdHashMap;

use outpost_decode::{Duration, Nanos};
use outpost_flowmeter::FlowRecord;

use crate::config::{ConfigError, SequenceConfig, SourceText};
use crate::key::{KeySpec, KeyValue};
use crate::rules::RuleId;
use crate::select::{FlowConditions, FlowSelector, compile_filter};

/// One step.
#[derive(Debug, Clone)]
pub enum Step {
    /// An alert of one of these rules (resolved to ids once all rules are compiled).
    Alerts(Vec<RuleId>),
    /// A flow record matching the selector.
    Flow(FlowSelector),
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
                    steps.push(Step::Flow(FlowSelector::new(f, FlowConditions::new(&s.flow))));
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
    started: Nanos,
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
}

/// The collector's progress of one sequence rule.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    keys: StdHashMap<KeyValue, Progress>,
    /// Counters.
    pub stats: SequenceStats,
}

impl SequenceTracker {
    /// Offers an input that matched step `step` for `key` at `ts`.
    pub fn offer(&mut self, rule: &SequenceRule, key: KeyValue, step: usize, ts: Nanos) -> Option<Completed> {
        let current = self.keys.get(&key).copied().filter(|p| ts.since(p.started) <= rule.within);
        let next = match current {
            Some(p) if p.done == step => Some(Progress { done: step + 1, started: p.started }),
            _ if step == 0 => Some(Progress { done: 1, started: ts }),
            _ => None,
        };
        let next = next?;
        self.stats.steps += 1;
        if next.done == rule.steps.len() {
            self.keys.remove(&key);
            self.stats.completed += 1;
            self.stats.keys = self.keys.len() as u64;
            return Some(Completed { key, started: next.started, at: ts });
        }
        if !self.keys.contains_key(&key) && self.keys.len() >= rule.max_keys {
            self.stats.dropped += 1;
            return None;
        }
        self.keys.insert(key, next);
        self.stats.keys = self.keys.len() as u64;
        None
    }

    /// Forgets sequences older than the time limit at `now`.
    pub fn expire(&mut self, rule: &SequenceRule, now: Nanos) {
        self.keys.retain(|_, p| now.since(p.started) <= rule.within);
        self.stats.keys = self.keys.len() as u64;
    }

    /// Whether a flow record matches step `i` of `rule`.
    #[must_use]
    pub fn flow_matches(rule: &SequenceRule, i: usize, r: &FlowRecord) -> bool {
        matches!(rule.steps.get(i), Some(Step::Flow(s)) if s.matches(r))
    }
}
