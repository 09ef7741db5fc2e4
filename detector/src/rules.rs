//! The compiled rule set: every rule of the configuration, addressed by [`RuleId`].

use crate::config::{ConfigError, RulesConfig, Severity, SourceText};
use crate::machine::StateMachine;

/// Index of a rule in its [`RuleSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u16);

/// A rule's kind, with its compiled form.
#[derive(Debug, Clone, Copy)]
pub enum RuleKind<'a> {
    /// A per-key state machine.
    StateMachine(&'a StateMachine),
}

impl RuleKind<'_> {
    /// The kind's name as written in configuration and alerts.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::StateMachine(_) => "state_machine",
        }
    }
}

/// What alerts show about a rule.
#[derive(Debug, Clone, Copy)]
pub struct RuleMeta<'a> {
    /// Rule name.
    pub name: &'a str,
    /// Severity.
    pub severity: Severity,
    /// Category.
    pub category: &'a str,
    /// MITRE ATT&CK technique.
    pub mitre: Option<&'a str>,
    /// Kind and compiled rule.
    pub kind: RuleKind<'a>,
}

/// All compiled rules. Immutable; shared by every worker behind an `Arc`.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// State-machine rules; rule ids `0..state_machines.len()`.
    pub state_machines: Vec<StateMachine>,
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
        for (cfg, src, prefix) in parts {
            for (i, sm) in cfg.state_machine.iter().enumerate() {
                let key = if prefix.is_empty() {
                    format!("state_machine[{i}]")
                } else {
                    format!("{prefix}.state_machine[{i}]")
                };
                let rule = StateMachine::compile(sm, src, &key)?;
                if set.names().any(|n| n == rule.name) {
                    return Err(src.error(
                        sm.name.span(),
                        format!("{key}.name"),
                        format!("rule name `{}` is used twice", rule.name),
                    ));
                }
                set.state_machines.push(rule);
            }
        }
        if set.len() > usize::from(u16::MAX) {
            return Err(ConfigError::file(std::path::Path::new("rules"), "more than 65535 rules"));
        }
        Ok(set)
    }

    /// Number of rules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.state_machines.len()
    }

    /// True when there are no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rule names in id order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.state_machines.iter().map(|s| s.name.as_str())
    }

    /// Labels of a rule; `None` for an id not in this set.
    #[must_use]
    pub fn meta(&self, id: RuleId) -> Option<RuleMeta<'_>> {
        self.state_machines.get(usize::from(id.0)).map(|sm| RuleMeta {
            name: &sm.name,
            severity: sm.severity,
            category: &sm.category,
            mitre: sm.mitre.as_deref(),
            kind: RuleKind::StateMachine(sm),
        })
    }

    /// Id of the rule named `name`.
    #[must_use]
    pub fn id_of(&self, name: &str) -> Option<RuleId> {
        self.names().position(|n| n == name).and_then(|i| u16::try_from(i).ok()).map(RuleId)
    }
}
