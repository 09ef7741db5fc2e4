//! The compiled rule set: every rule of the configuration, addressed by [`RuleId`].

use std::hash::{Hash, Hasher};

use outpost_decode::Duration;

use crate::absence::AbsenceRule;
use crate::baseline::BaselineRule;
use crate::config::{ConfigDuration, ConfigError, RulesConfig, Severity, SourceText};
use crate::intel_rule::IntelRule;
use crate::key::KeySpec;
use crate::machine::StateMachine;
use crate::sequence::{SequenceRule, Step};
use crate::threshold::ThresholdRule;

/// Index of a rule in its [`RuleSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u16);

/// A rule's kind, with its compiled form.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// A per-source state machine.
    StateMachine(StateMachine),
    /// A threshold over a window.
    Threshold(ThresholdRule),
    /// Steps in order.
    Sequence(SequenceRule),
    /// Expected traffic that stops.
    Absence(AbsenceRule),
    /// A per-host statistical baseline.
    Baseline(BaselineRule),
    /// Listed addresses.
    Intel(IntelRule),
}

impl RuleKind {
    /// The kind's name as written in configuration and alerts.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::StateMachine(_) => "state_machine",
            RuleKind::Threshold(_) => "threshold",
            RuleKind::Sequence(_) => "sequence",
            RuleKind::Absence(_) => "absence",
            RuleKind::Baseline(_) => "baseline",
            RuleKind::Intel(_) => "intel",
        }
    }

    /// The key alerts of this rule carry, if the kind has a configurable one.
    #[must_use]
    pub fn key(&self) -> Option<&KeySpec> {
        match self {
            RuleKind::Threshold(t) => Some(&t.key),
            RuleKind::Sequence(s) => Some(&s.key),
            RuleKind::Absence(a) => Some(&a.key),
            RuleKind::StateMachine(_) | RuleKind::Baseline(_) | RuleKind::Intel(_) => None,
        }
    }
}

/// A compiled rule with its labels.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name, unique in the set.
    pub name: String,
    /// Description.
    pub description: String,
    /// Severity.
    pub severity: Severity,
    /// Category.
    pub category: String,
    /// MITRE ATT&CK technique.
    pub mitre: Option<String>,
    /// Dedup interval (none: the policy's default).
    pub dedup: Option<Duration>,
    /// Most alerts per minute of event time.
    pub rate_limit: Option<u32>,
    /// What the rule is.
    pub kind: RuleKind,
    /// A digest of the rule's definition: a reload keeps the state of a rule whose name and
    /// digest did not change.
    pub fingerprint: u64,
}

/// All compiled rules. Immutable; shared by every worker behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules, by id.
    pub rules: Vec<Rule>,
}

/// The [`Labels`] of a rule's configuration `c` (every rule kind's configuration has these
/// fields), with its own `dedup` or the one given.
macro_rules! labels {
    ($c:expr) => {
        labels!($c, $c.dedup)
    };
    ($c:expr, $dedup:expr) => {
        Labels {
            name: &$c.name,
            description: &$c.description,
            severity: $c.severity,
            category: &$c.category,
            mitre: $c.mitre.as_ref(),
            dedup: $dedup,
            rate_limit: $c.rate_limit,
        }
    };
}

/// The labels every rule kind has.
struct Labels<'a> {
    name: &'a toml::Spanned<String>,
    description: &'a str,
    severity: Severity,
    category: &'a str,
    mitre: Option<&'a String>,
    dedup: Option<ConfigDuration>,
    rate_limit: Option<u32>,
}

fn fingerprint(name: &str, kind: &RuleKind) -> u64 {
    // The compiled form's debug text holds everything that defines the rule (filters by
    // their source text, thresholds, windows, transitions) and no file positions. A state
    // machine also carries its labels, which define nothing: they are left out, so that
    // rewording a description keeps the machines in progress.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    match kind {
        RuleKind::StateMachine(sm) => {
            let mut sm = sm.clone();
            sm.name.clear();
            sm.description.clear();
            sm.category.clear();
            sm.mitre = None;
            sm.severity = Severity::Medium;
            format!("{:?}", RuleKind::StateMachine(sm)).hash(&mut h);
        }
        // An intel rule is its lists' names and files, not their entries: a feed update
        // (new file contents, then a reload) keeps its cooldowns and dedup intervals.
        RuleKind::Intel(r) => {
            format!("intel {:?} {:?} {:?} {:?}", r.filter, r.direction, r.cooldown, r.lists).hash(&mut h);
        }
        other => format!("{other:?}").hash(&mut h),
    }
    h.finish()
}

/// The fingerprint of a resolved sequence rule: its alert steps by rule name, not id, so
/// that moving the rules it names (their ids shift) does not make it a different rule.
fn sequence_fingerprint(name: &str, s: &SequenceRule, names: &[String]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    "sequence".hash(&mut h);
    format!("{:?} {:?} {}", s.key, s.within, s.max_keys).hash(&mut h);
    for step in &s.steps {
        match step {
            Step::Alerts(ids) => {
                "alerts".hash(&mut h);
                for id in ids {
                    names.get(usize::from(id.0)).hash(&mut h);
                }
            }
            Step::Flow(sel) => format!("flow {sel:?}").hash(&mut h),
        }
    }
    h.finish()
}

impl RuleSet {
    /// Compiles the rules of one or more sources (the main file's `[rules]`, rule files), with
    /// the configuration path prefix of each (`rules` or empty for a rule file).
    ///
    /// # Errors
    /// The first [`ConfigError`], at its file and line; also for a rule name used twice.
    pub fn compile<'a>(
        parts: impl IntoIterator<Item = (&'a RulesConfig, &'a SourceText, &'a str)>,
    ) -> Result<RuleSet, ConfigError> {
        let mut set = RuleSet::default();
        let parts: Vec<_> = parts.into_iter().collect();
        let mut sequences = Vec::new();
        for (cfg, src, prefix) in &parts {
            let path = |kind: &str, i: usize| {
                if prefix.is_empty() { format!("{kind}[{i}]") } else { format!("{prefix}.{kind}[{i}]") }
            };
            let add = |labels: Labels<'_>,
                       kind: RuleKind,
                       key: String,
                       set: &mut RuleSet|
             -> Result<(), ConfigError> {
                let name = labels.name.get_ref().trim().to_string();
                if name.is_empty() {
                    return Err(src.error(labels.name.span(), format!("{key}.name"), "a rule needs a name"));
                }
                if set.rules.iter().any(|r| r.name == name) {
                    return Err(src.error(
                        labels.name.span(),
                        format!("{key}.name"),
                        format!("rule name `{name}` is used twice"),
                    ));
                }
                set.rules.push(Rule {
                    fingerprint: fingerprint(&name, &kind),
                    name,
                    description: labels.description.to_string(),
                    severity: labels.severity,
                    category: labels.category.to_string(),
                    mitre: labels.mitre.cloned(),
                    dedup: labels.dedup.map(|d| d.0),
                    rate_limit: labels.rate_limit,
                    kind,
                });
                Ok(())
            };
            for (i, c) in cfg.state_machine.iter().enumerate() {
                let key = path("state_machine", i);
                let kind = RuleKind::StateMachine(StateMachine::compile(c, src, &key)?);
                let labels = labels!(c, Some(c.dedup.unwrap_or(ConfigDuration(Duration::ZERO))));
                add(labels, kind, key, &mut set)?;
            }
            for (i, c) in cfg.threshold.iter().enumerate() {
                let key = path("threshold", i);
                let kind = RuleKind::Threshold(ThresholdRule::compile(c, src, &key)?);
                let labels = labels!(c);
                add(labels, kind, key, &mut set)?;
            }
            for (i, c) in cfg.absence.iter().enumerate() {
                let key = path("absence", i);
                let kind = RuleKind::Absence(AbsenceRule::compile(c, src, &key)?);
                let labels = labels!(c);
                add(labels, kind, key, &mut set)?;
            }
            for (i, c) in cfg.baseline.iter().enumerate() {
                let key = path("baseline", i);
                let kind = RuleKind::Baseline(BaselineRule::compile(c, src, &key)?);
                let labels = labels!(c);
                add(labels, kind, key, &mut set)?;
            }
            for (i, c) in cfg.intel.iter().enumerate() {
                let key = path("intel", i);
                let kind = RuleKind::Intel(IntelRule::compile(c, src, &key)?);
                let labels = labels!(c);
                add(labels, kind, key, &mut set)?;
            }
            for (i, c) in cfg.sequence.iter().enumerate() {
                let key = path("sequence", i);
                let rule = SequenceRule::compile(c, src, &key)?;
                let labels = labels!(c);
                add(labels, RuleKind::Sequence(rule), key.clone(), &mut set)?;
                sequences.push((set.rules.len() - 1, *src, key));
            }
        }
        // Sequence steps name other rules, from any file.
        for (idx, src, key) in sequences {
            let names: Vec<String> = set.rules.iter().map(|r| r.name.clone()).collect();
            let lookup =
                |n: &str| names.iter().position(|x| x == n).and_then(|i| u16::try_from(i).ok()).map(RuleId);
            if let Some(Rule { kind: RuleKind::Sequence(s), name, fingerprint: fp, .. }) =
                set.rules.get_mut(idx)
            {
                s.resolve(src, &key, lookup)?;
                *fp = sequence_fingerprint(name, s, &names);
            }
        }
        if set.rules.len() > usize::from(u16::MAX) {
            return Err(ConfigError::file(std::path::Path::new("rules"), "more than 65535 rules"));
        }
        Ok(set)
    }

    /// Number of rules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule names in id order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.rules.iter().map(|r| r.name.as_str())
    }

    /// A rule by id.
    #[must_use]
    pub fn rule(&self, id: RuleId) -> Option<&Rule> {
        self.rules.get(usize::from(id.0))
    }

    /// Id of the rule named `name`.
    #[must_use]
    pub fn id_of(&self, name: &str) -> Option<RuleId> {
        self.names().position(|n| n == name).and_then(|i| u16::try_from(i).ok()).map(RuleId)
    }

    /// Rules with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (RuleId, &Rule)> + '_ {
        self.rules.iter().enumerate().map(|(i, r)| (RuleId(u16::try_from(i).unwrap_or(u16::MAX)), r))
    }

    /// True when a rule reads flow records (flow thresholds, flow baselines, sequence steps
    /// made of flows): the flow meter must run even if no flow output is asked for.
    #[must_use]
    pub fn needs_flows(&self) -> bool {
        self.rules.iter().any(|r| match &r.kind {
            RuleKind::Threshold(t) => matches!(t.input, crate::threshold::Input::Flows(_)),
            RuleKind::Baseline(b) => b.input == crate::config::InputKind::Flows,
            RuleKind::Sequence(s) => s.steps.iter().any(|st| matches!(st, crate::sequence::Step::Flow(_))),
            _ => false,
        })
    }

    /// For each rule of `self`, the id of the same rule (same name, same definition) in
    /// `old`, if there is one: its state can be carried over on reload.
    #[must_use]
    pub fn carried_over_from(&self, old: &RuleSet) -> Vec<Option<RuleId>> {
        self.rules
            .iter()
            .map(|r| {
                old.iter().find(|(_, o)| o.name == r.name && o.fingerprint == r.fingerprint).map(|(id, _)| id)
            })
            .collect()
    }
}

/// Per-rule counts carried over a reload: for each rule of the new set, the count of the rule
/// it continues in the old set (`carried`, from [`RuleSet::carried_over_from`]), zero for a
/// new rule.
#[must_use]
pub fn carry_counts(carried: &[Option<RuleId>], old: &[u64]) -> Vec<u64> {
    carried.iter().map(|from| from.and_then(|id| old.get(usize::from(id.0)).copied()).unwrap_or(0)).collect()
}
