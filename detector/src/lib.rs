//! Outpost's detection engine.
//!
//! Rules are configuration (TOML), compiled once into a [`RuleSet`] shared by all workers;
//! each worker owns a [`Detector`] holding that worker's per-key state, so the hot path takes
//! no locks. Rules of this version:
//!
//! - **state_machine** ([`machine`]): per-source-IP machines whose events are filter
//!   expressions; an event with no transition from the current state raises an alert.
//!
//! Alerts ([`Alert`]) are small `Copy` records; [`AlertJson`] writes them with rule and network
//! labels. [`AlertWindows`] counts alerts per network id in event-time tumbling windows.

pub mod alert;
pub mod config;
pub mod engine;
pub mod intel;
pub mod machine;
pub mod network;
pub mod rules;
pub mod sketch;
pub mod wheel;
pub mod window;

pub use alert::{Alert, AlertDetail, AlertId, AlertJson};
pub use config::{
    AlertWindowConfig, ConfigDuration, ConfigError, NetworkConfig, RulesConfig, Severity, SourceText,
};
pub use engine::{Detector, DetectorStats};
pub use machine::{MachineStats, StateMachine};
pub use network::{Network, NetworkMap};
pub use rules::{RuleId, RuleSet};
pub use window::{AlertWindows, WindowJson, WindowSummary};
