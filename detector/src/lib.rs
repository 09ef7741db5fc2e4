//! Outpost's detection engine.
//!
//! Rules are configuration (TOML), compiled once into a [`RuleSet`] shared by all workers.
//! Each worker owns a [`Detector`] holding that worker's per-key state, so the hot path takes
//! no locks; the collector owns a [`CentralDetector`] for what needs every worker's view
//! (merged aggregates, flow rules, sequences) and the [`policy::AlertPolicy`]. Rule kinds:
//!
//! - **state_machine** ([`machine`]): per-source machines whose events are filter expressions.
//! - **threshold** ([`threshold`]): count, sum, distinct or ratio over a sliding window.
//! - **sequence** ([`sequence`]): steps (alerts or flows) in order within a time limit.
//! - **absence** ([`absence`]): expected traffic that stops.
//! - **baseline** ([`baseline`]): per-host metrics against mean + k·σ.
//! - **intel** ([`intel_rule`], [`intel`]): listed addresses, longest-prefix match.
//!
//! Alerts ([`Alert`]) are small `Copy` records; [`AlertJson`] writes them with rule and network
//! labels. [`AlertWindows`] counts alerts per network id in event-time tumbling windows. The
//! design and the default ruleset are described in `docs/DETECTION.md`.

/// Version of the JSON schema of alert, alert-window and dedup-summary records (the
/// `schema_version` field; README "Outputs"). Raised when a field changes meaning or goes
/// away; new fields do not raise it.
pub const SCHEMA_VERSION: u32 = outpost_flowmeter::SCHEMA_VERSION;

pub mod absence;
pub mod alert;
pub mod baseline;
pub mod central;
pub mod config;
pub mod engine;
mod first;
pub mod hashing;
pub mod intel;
pub mod intel_rule;
pub mod key;
pub mod machine;
pub mod network;
pub mod policy;
pub mod rules;
pub mod select;
pub mod sequence;
pub mod sketch;
pub mod threshold;
pub mod wheel;
pub mod window;

pub use alert::{Alert, AlertDetail, AlertId, AlertJson};
pub use central::{CentralDetector, CentralOutput, CentralStats};
pub use config::{
    AlertPolicyConfig, AlertWindowConfig, ConfigDuration, ConfigError, NetworkConfig, RulesConfig, Severity,
    SourceText,
};
pub use engine::{Detector, DetectorOutput, DetectorStats, RuleStats, WorkerPlace};
pub use key::{KeySpec, KeyValue};
pub use machine::{MachineStats, StateMachine};
pub use network::{Network, NetworkMap};
pub use policy::{DedupJson, DedupSummary};
pub use rules::{Rule, RuleId, RuleKind, RuleSet};
pub use window::{AlertWindows, WindowJson, WindowSummary};
