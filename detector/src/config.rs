//! Rule and network configuration as written in TOML, and errors that point at the line.
//!
//! Every table rejects unknown keys. Values that need more checking than their type (filter
//! expressions, transitions, state names) are kept with their byte span so a problem found
//! while compiling the rules still names the file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

use outpost_decode::{Cidr, Duration};
use serde::Deserialize;
use toml::Spanned;

/// A configuration file's text, kept to turn byte spans into lines and columns.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// Where the text came from (shown in errors).
    pub path: PathBuf,
    /// The whole file.
    pub text: String,
}

impl SourceText {
    /// Wraps a file's contents.
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceText {
        SourceText { path: path.into(), text: text.into() }
    }

    /// 1-based line and column (in characters) of a byte offset.
    #[must_use]
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset.min(self.text.len())).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// An error about the value at `span`, for configuration key `key`.
    #[must_use]
    pub fn error(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError { path: self.path.clone(), line, column, key: key.into(), message: message.into() }
    }

    /// Deserializes the whole text as `T`, turning a TOML or schema error into a
    /// [`ConfigError`] with its line.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the line, column and (where TOML reports it) the key.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| self.line_col(s.start));
            let key = e.span().map(|s| self.key_at(s.start)).unwrap_or_default();
            ConfigError {
                path: self.path.clone(),
                line,
                column,
                key,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// The key written on the line holding `offset` (`name = ...` → `name`), or the table
    /// header (`[[rules.state_machine]]`), for error messages.
    fn key_at(&self, offset: usize) -> String {
        let start =
            self.text.get(..offset.min(self.text.len())).and_then(|b| b.rfind('\n')).map_or(0, |i| i + 1);
        let line = self.text.get(start..).and_then(|l| l.lines().next()).unwrap_or("").trim();
        if line.starts_with('[') {
            return line.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        }
        line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_string()).unwrap_or_default()
    }
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// The configuration key, dotted (`rules.state_machine[0].transitions[3]`), or the key
    /// on the offending line.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.key, self.message)
        }
    }
}

impl ConfigError {
    /// An error not tied to a position in a file (e.g. a file that cannot be read).
    #[must_use]
    pub fn file(path: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: 0,
            column: 0,
            key: String::new(),
            message: message.into(),
        }
    }
}

/// A span of time written as text: `30s`, `5m`, `1h 30m`, `250ms` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ConfigDuration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(|d| ConfigDuration(Duration::from(d))).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration `{s}` ({e}); write e.g. `30s`, `5m`, `250ms`"))
        })
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The lowercase name used in alerts.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a per-key rule keys its state by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The packet's source address (the default; workers are sharded by it, so the state of a
    /// key lives on one worker).
    #[default]
    SrcIp,
}

/// The rules of a configuration: the `[rules]` table of the main file, or the top level of a
/// rule file listed in `rule_files`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Per-source state machines (`[[rules.state_machine]]`).
    #[serde(default)]
    pub state_machine: Vec<StateMachineConfig>,
}

/// One state-machine rule: event classes, states and the valid transitions between them.
/// Any event with no transition from the current state is an invalid transition and raises an
/// alert.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMachineConfig {
    /// Rule name, unique across all rules; appears in alerts as `rule`.
    pub name: Spanned<String>,
    /// What the rule watches for (shown in `outpost rules` and documentation).
    #[serde(default)]
    pub description: String,
    /// Alert severity. Default `medium`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Alert category. Default `protocol-violation`.
    #[serde(default = "default_category")]
    pub category: String,
    /// MITRE ATT&CK technique id, if one fits (e.g. `T1046`).
    #[serde(default)]
    pub mitre: Option<String>,
    /// Field the state is kept per. Only `src_ip` (the default) for now.
    #[serde(default)]
    pub key: KeyField,
    /// Name of the state a key starts in (and restarts in after an invalid transition).
    /// Default `INITIAL`.
    #[serde(default = "default_initial")]
    pub initial: Spanned<String>,
    /// States that end the machine: reaching one releases the key's state. Default none.
    #[serde(default)]
    pub terminal: Vec<Spanned<String>>,
    /// A key with no event for this long is released (its next event starts from the initial
    /// state). Default `60s`.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// Most keys tracked per worker; beyond it the key scheduled to expire soonest is evicted
    /// (counted). Default 1,000,000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Event classes, tested in the order written; a packet is the first event whose filter
    /// matches, or no event.
    pub events: Vec<EventConfig>,
    /// Valid transitions, each written `FROM --EVENT--> TO`.
    pub transitions: Vec<Spanned<String>>,
}

/// An event class: a name and the filter expression that recognises it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Event name used in transitions and alerts.
    pub name: Spanned<String>,
    /// A filter expression (pcap-filter syntax, see the filter crate).
    pub filter: Spanned<String>,
}

fn default_severity() -> Severity {
    Severity::Medium
}
fn default_category() -> String {
    "protocol-violation".into()
}
fn default_initial() -> Spanned<String> {
    Spanned::new(0..0, "INITIAL".into())
}
fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_max_keys() -> usize {
    1_000_000
}

/// A network: a set of prefixes with an id (and optionally a name and location) that alerts
/// and alert windows are labelled with (`[[networks]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Numeric network id (appears as `network_id`).
    pub id: u32,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// Prefixes, IPv4 or IPv6 (`10.1.0.0/16`, `2001:db8:1::/48`).
    pub cidrs: Vec<Cidr>,
    /// Latitude in degrees, for maps.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// Longitude in degrees, for maps.
    #[serde(default)]
    pub longitude: Option<f64>,
}

/// Alert aggregation windows (`[alerts]`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertWindowConfig {
    /// Width of the event-time tumbling windows that count alerts per network id.
    /// Default `30s`.
    #[serde(default = "default_window")]
    pub window: ConfigDuration,
    /// How long after a window's end it stays open for alerts that arrive late (input not in
    /// time order). Default `0s`.
    #[serde(default = "default_lateness")]
    pub lateness: ConfigDuration,
}

impl Default for AlertWindowConfig {
    fn default() -> AlertWindowConfig {
        AlertWindowConfig { window: default_window(), lateness: default_lateness() }
    }
}

fn default_window() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30))
}
fn default_lateness() -> ConfigDuration {
    ConfigDuration(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let src = SourceText::new(
            "rules.toml",
            "[[state_machine]]\nname = \"x\"\nidle_timout = \"5s\"\nevents = []\ntransitions = []\n",
        );
        let err = src.parse::<RulesConfig>().expect_err("unknown key");
        assert_eq!(err.line, 3, "{err}");
        assert!(err.message.contains("idle_timout"), "{err}");
        assert_eq!(err.key, "idle_timout");
        assert!(err.to_string().starts_with("rules.toml:3:1: `idle_timout`: unknown field"), "{err}");
    }

    #[test]
    fn bad_durations_name_the_value() {
        let src = SourceText::new(
            "r.toml",
            "[[state_machine]]\nname = \"x\"\nidle_timeout = \"ten seconds\"\nevents = []\ntransitions = []\n",
        );
        let err = src.parse::<RulesConfig>().expect_err("bad duration");
        assert_eq!(err.line, 3);
        assert!(err.message.contains("invalid duration `ten seconds`"), "{err}");
    }

    #[test]
    fn line_col_counts_characters() {
        let src = SourceText::new("f", "ab\ncé d\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        assert_eq!(src.line_col(7), (2, 4));
    }
}
