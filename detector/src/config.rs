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
pub use outpost_decode::ConfigDuration;

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

/// A field rule state can be kept per (`key = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The source address (for flows: the initiator). Packet rules keyed by it run in the
    /// worker that owns the source, with immediate alerts.
    #[default]
    SrcIp,
    /// The destination address (for flows: the responder).
    DstIp,
    /// The source port.
    SrcPort,
    /// The destination port.
    DstPort,
    /// The IP protocol number.
    Proto,
    /// The network id of the source address (`[[networks]]`), else of the destination.
    NetworkId,
}

impl KeyField {
    /// The name used in configuration and alerts.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            KeyField::SrcIp => "src_ip",
            KeyField::DstIp => "dst_ip",
            KeyField::SrcPort => "src_port",
            KeyField::DstPort => "dst_port",
            KeyField::Proto => "proto",
            KeyField::NetworkId => "network_id",
        }
    }
}

/// What a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Decoded packets (the default).
    #[default]
    Packets,
    /// Flow records (final and interim) from the flow meter.
    Flows,
}

/// A value a threshold rule sums or counts distinct values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldName {
    /// Source address (initiator).
    SrcIp,
    /// Destination address (responder).
    DstIp,
    /// Source port.
    SrcPort,
    /// Destination port.
    DstPort,
    /// IP protocol.
    Proto,
    /// Bytes: the IP length of a packet; both directions of a flow record.
    Bytes,
    /// Packets: 1 per packet; both directions of a flow record.
    Packets,
}

/// How a threshold rule aggregates the inputs of a key over its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    /// Number of inputs (the default).
    #[default]
    Count,
    /// Number of distinct values of `field` (exact up to `exact_limit`, HyperLogLog above).
    Distinct,
    /// Sum of `field`.
    Sum,
    /// Inputs matching `ratio` divided by all inputs (0..1); needs `min_events` inputs.
    Ratio,
}

/// Conditions on a flow record, beyond the filter expression (`flow = { ... }`). All given
/// conditions must hold. Durations and counts refer to the record (a long flow's interim
/// records each cover one active-timeout period).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConditionsConfig {
    /// At least this many packets, both directions together.
    #[serde(default)]
    pub min_packets: Option<u64>,
    /// At most this many packets.
    #[serde(default)]
    pub max_packets: Option<u64>,
    /// At least this many bytes, both directions together.
    #[serde(default)]
    pub min_bytes: Option<u64>,
    /// At most this many bytes.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// At least this long (first to last packet).
    #[serde(default)]
    pub min_duration: Option<ConfigDuration>,
    /// At most this long.
    #[serde(default)]
    pub max_duration: Option<ConfigDuration>,
    /// TCP: the three-way handshake completed (SYN and ACK seen from both sides) — or, when
    /// false, it did not.
    #[serde(default)]
    pub handshake: Option<bool>,
    /// The responder sent packets (or, when false, it did not).
    #[serde(default)]
    pub replied: Option<bool>,
}

/// The subset counted by a ratio (`ratio = { filter = "...", flow = { ... } }`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatioConfig {
    /// Filter expression the counted inputs also match.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// Flow conditions the counted inputs also meet (flow rules).
    #[serde(default)]
    pub flow: FlowConditionsConfig,
}

/// A threshold rule (`[[threshold]]`): an aggregate of a key's inputs over an event-time
/// window compared with a threshold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Rule name, unique across all rules.
    pub name: Spanned<String>,
    /// What the rule detects and why the threshold.
    #[serde(default)]
    pub description: String,
    /// Alert severity. Default `medium`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Alert category. Default `anomaly`.
    #[serde(default = "default_anomaly")]
    pub category: String,
    /// MITRE ATT&CK technique id.
    #[serde(default)]
    pub mitre: Option<String>,
    /// Alert dedup interval for this rule (default: `alert_policy.dedup`).
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule; more are dropped and counted.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Packets (default) or flows.
    #[serde(default)]
    pub input: InputKind,
    /// Filter expression selecting the inputs (default: all).
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// Flow conditions (flow rules).
    #[serde(default)]
    pub flow: FlowConditionsConfig,
    /// Fields the state is kept per.
    pub key: Spanned<Vec<KeyField>>,
    /// Aggregate. Default `count`.
    #[serde(default)]
    pub aggregate: AggregateKind,
    /// Field for `distinct` and `sum`.
    #[serde(default)]
    pub field: Option<FieldName>,
    /// The counted subset for `ratio`.
    #[serde(default)]
    pub ratio: Option<RatioConfig>,
    /// `ratio`: the fewest inputs in the window before the ratio is judged. Default 10.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// Window length.
    pub window: Spanned<ConfigDuration>,
    /// Sliding window granularity: the window moves in `window / window_buckets` steps.
    /// 1 makes it tumbling. Default 6.
    #[serde(default = "default_window_buckets")]
    pub window_buckets: u32,
    /// Alert when the aggregate reaches this value.
    pub threshold: f64,
    /// `distinct`: count exactly up to this many values per key, estimate above (HyperLogLog).
    /// Default 64.
    #[serde(default = "default_exact_limit")]
    pub exact_limit: usize,
    /// Most keys tracked per worker; beyond it the least recently updated key is dropped
    /// (counted). Default 1,000,000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// One step of a sequence rule: an alert of one of `alerts`, or a flow matching `filter` and
/// `flow`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Alerts of these rules complete the step.
    #[serde(default)]
    pub alerts: Vec<Spanned<String>>,
    /// A flow record matching this filter (and `flow`) completes the step.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// Flow conditions.
    #[serde(default)]
    pub flow: FlowConditionsConfig,
}

/// A sequence rule (`[[sequence]]`): steps that must happen in order for the same key within
/// `within` of the first. Steps are alerts of other rules or flow records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// Rule name.
    pub name: Spanned<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Severity. Default `high`.
    #[serde(default = "default_high")]
    pub severity: Severity,
    /// Category. Default `compromise`.
    #[serde(default = "default_compromise")]
    pub category: String,
    /// MITRE ATT&CK technique id.
    #[serde(default)]
    pub mitre: Option<String>,
    /// Alert dedup interval for this rule.
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Fields the sequence is followed per.
    pub key: Spanned<Vec<KeyField>>,
    /// The steps, in order (at least two).
    pub steps: Vec<StepConfig>,
    /// All steps within this long of the first.
    pub within: ConfigDuration,
    /// Most keys followed at once. Default 1,000,000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

/// An absence rule (`[[absence]]`): an expected kind of packet not seen from a key for
/// `timeout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbsenceConfig {
    /// Rule name.
    pub name: Spanned<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Severity. Default `medium`.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// Category. Default `availability`.
    #[serde(default = "default_availability")]
    pub category: String,
    /// MITRE ATT&CK technique id.
    #[serde(default)]
    pub mitre: Option<String>,
    /// Alert dedup interval for this rule.
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Filter expression for the expected packets.
    pub filter: Spanned<String>,
    /// The key: `["src_ip"]` (the sender of the expected traffic).
    #[serde(default = "default_src_key")]
    pub key: Spanned<Vec<KeyField>>,
    /// Alert when a key sends nothing matching for this long.
    pub timeout: Spanned<ConfigDuration>,
    /// Expected senders. When empty, senders are learned from traffic: a source that sent
    /// matching packets once is expected from then on.
    #[serde(default)]
    pub expected: Vec<Spanned<String>>,
    /// Most learned keys per worker. Default 100,000.
    #[serde(default = "default_absence_keys")]
    pub max_keys: usize,
}

/// What a baseline measures per host and interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineMetric {
    /// Bytes (IP lengths) sent and received.
    Bytes,
    /// Packets sent and received.
    Packets,
    /// Flows the host initiated (flow records with sequence 0; `input = "flows"`).
    Flows,
    /// Distinct peer addresses.
    Peers,
}

/// Which address of a packet is the host a baseline is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSide {
    /// Both: a packet counts for its source and for its destination (the default).
    #[default]
    Both,
    /// The source only (traffic a host sends).
    Src,
    /// The destination only (traffic a host receives).
    Dst,
}

/// A baseline rule (`[[baseline]]`): a per-host metric per interval against its own
/// exponentially weighted mean and variance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// Rule name.
    pub name: Spanned<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Severity. Default `low`.
    #[serde(default = "default_low")]
    pub severity: Severity,
    /// Category. Default `anomaly`.
    #[serde(default = "default_anomaly")]
    pub category: String,
    /// MITRE ATT&CK technique id.
    #[serde(default)]
    pub mitre: Option<String>,
    /// Alert dedup interval for this rule.
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Packets (default) or flows (for `metric = "flows"`).
    #[serde(default)]
    pub input: InputKind,
    /// Filter expression selecting what is measured (default: everything).
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// The metric.
    pub metric: Spanned<BaselineMetric>,
    /// Which address is the host. Default `both`.
    #[serde(default)]
    pub host: HostSide,
    /// Interval length. Default `60s`.
    #[serde(default = "default_interval")]
    pub interval: Spanned<ConfigDuration>,
    /// Alert when the value exceeds mean + k·σ. Default 3.
    #[serde(default = "default_k")]
    pub k: f64,
    /// Intervals learned before judging. Default 10.
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Weight of the newest interval in the mean and variance (0..1). Default 0.1.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Values below this never alert (tiny hosts are noisy). Default 0.
    #[serde(default)]
    pub min_value: f64,
    /// σ used when the learned σ is smaller (a perfectly steady host would otherwise alert on
    /// any change), as a fraction of the mean. Default 0.1.
    #[serde(default = "default_min_sigma")]
    pub min_sigma: f64,
    /// Most hosts tracked. Default 1,000,000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// A host not seen for this long loses its baseline (and its memory). Default `24h`.
    #[serde(default = "default_forget")]
    pub forget: ConfigDuration,
}

fn default_forget() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(24 * 3600))
}

/// Which addresses of a packet an intel rule looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntelDirection {
    /// Source and destination (the default).
    #[default]
    Either,
    /// Source only.
    Src,
    /// Destination only.
    Dst,
}

/// One intel list of an intel rule: a file, or entries written inline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelListConfig {
    /// List name (appears in alerts).
    pub name: Spanned<String>,
    /// File of addresses and CIDRs, one per line, `#` comments; relative to the rule file.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// Addresses and CIDRs written in the rule itself (instead of `path`).
    #[serde(default)]
    pub entries: Option<Vec<String>>,
    /// Skip (and count) bad lines instead of refusing the file. Default false.
    #[serde(default)]
    pub lenient: bool,
    /// A missing `path` is an empty list instead of an error, so a rule can ship waiting for
    /// a feed that is installed later (a reload picks it up). Default false.
    #[serde(default)]
    pub optional: bool,
}

/// An intel rule (`[[intel]]`): traffic to or from listed addresses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntelConfig {
    /// Rule name.
    pub name: Spanned<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Severity. Default `high`.
    #[serde(default = "default_high")]
    pub severity: Severity,
    /// Category. Default `threat-intel`.
    #[serde(default = "default_intel_category")]
    pub category: String,
    /// MITRE ATT&CK technique id.
    #[serde(default)]
    pub mitre: Option<String>,
    /// Alert dedup interval for this rule.
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Filter expression limiting the packets looked up (default: all IP packets).
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
    /// Which addresses are looked up. Default `either`.
    #[serde(default)]
    pub direction: IntelDirection,
    /// The lists.
    pub lists: Vec<IntelListConfig>,
    /// At most one alert per listed address and side (as source, as destination) in this
    /// long (the alert policy deduplicates further). Default `5m`.
    #[serde(default = "default_cooldown")]
    pub cooldown: ConfigDuration,
}

fn default_anomaly() -> String {
    "anomaly".into()
}
fn default_compromise() -> String {
    "compromise".into()
}
fn default_availability() -> String {
    "availability".into()
}
fn default_intel_category() -> String {
    "threat-intel".into()
}
fn default_high() -> Severity {
    Severity::High
}
fn default_low() -> Severity {
    Severity::Low
}
fn default_min_events() -> u64 {
    10
}
fn default_window_buckets() -> u32 {
    6
}
fn default_exact_limit() -> usize {
    64
}
fn default_absence_keys() -> usize {
    100_000
}
fn default_src_key() -> Spanned<Vec<KeyField>> {
    Spanned::new(0..0, vec![KeyField::SrcIp])
}
fn default_interval() -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(Duration::from_secs(60)))
}
fn default_k() -> f64 {
    3.0
}
fn default_warmup() -> u32 {
    10
}
fn default_alpha() -> f64 {
    0.1
}
fn default_min_sigma() -> f64 {
    0.1
}
fn default_cooldown() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}

/// Suppression of alerts by rule and address (`[[alert_policy.suppress]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressConfig {
    /// Rules this applies to (empty: all rules).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Alerts whose source is in one of these prefixes (empty: any source).
    #[serde(default)]
    pub src: Vec<Cidr>,
    /// Alerts whose destination is in one of these prefixes (empty: any destination).
    #[serde(default)]
    pub dst: Vec<Cidr>,
}

/// What reaches the analyst (`[alert_policy]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertPolicyConfig {
    /// The same rule and key alert once per this interval; the suppressed count is reported
    /// when it closes. Default `5m`; rules may override it (`dedup`).
    #[serde(default = "default_dedup")]
    pub dedup: ConfigDuration,
    /// Most alerts per second of event time over all rules; more are dropped and counted.
    /// Default 1000.
    #[serde(default = "default_global_rate")]
    pub max_alerts_per_second: u32,
    /// Suppressions.
    #[serde(default)]
    pub suppress: Vec<SuppressConfig>,
}

impl Default for AlertPolicyConfig {
    fn default() -> AlertPolicyConfig {
        AlertPolicyConfig {
            dedup: default_dedup(),
            max_alerts_per_second: default_global_rate(),
            suppress: Vec::new(),
        }
    }
}

fn default_dedup() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
fn default_global_rate() -> u32 {
    1000
}

/// The rules of a configuration: the `[rules]` table of the main file, or the top level of a
/// rule file listed in `rule_files`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Per-source state machines (`[[rules.state_machine]]`).
    #[serde(default)]
    pub state_machine: Vec<StateMachineConfig>,
    /// Threshold rules (`[[rules.threshold]]`).
    #[serde(default)]
    pub threshold: Vec<ThresholdConfig>,
    /// Sequence rules (`[[rules.sequence]]`).
    #[serde(default)]
    pub sequence: Vec<SequenceConfig>,
    /// Absence rules (`[[rules.absence]]`).
    #[serde(default)]
    pub absence: Vec<AbsenceConfig>,
    /// Baseline rules (`[[rules.baseline]]`).
    #[serde(default)]
    pub baseline: Vec<BaselineConfig>,
    /// Intel rules (`[[rules.intel]]`).
    #[serde(default)]
    pub intel: Vec<IntelConfig>,
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
    /// Alert dedup interval. Default `0s`: every invalid transition is its own event and
    /// alerts (the alert policy's default does not apply).
    #[serde(default)]
    pub dedup: Option<ConfigDuration>,
    /// Most alerts per minute of event time for this rule.
    #[serde(default)]
    pub rate_limit: Option<u32>,
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
    /// Per-state timeouts, by state name: a key that stays in such a state longer than its
    /// timeout without an event raises a `state-timeout` alert (the machine expected the next
    /// step sooner: a handshake left half done, a login never completed) and restarts in the
    /// initial state. These states are judged by their timeout instead of `idle_timeout`.
    /// Default none.
    #[serde(default)]
    pub state_timeouts: std::collections::BTreeMap<Spanned<String>, ConfigDuration>,
    /// Most keys tracked per worker; beyond it the key scheduled to expire soonest is evicted
    /// (counted). Default 1,000,000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Only packets matching this filter expression can be events (the hosts or networks
    /// the protocol runs on). Default: every packet.
    #[serde(default)]
    pub filter: Option<Spanned<String>>,
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
