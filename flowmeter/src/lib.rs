//! Outpost's flow meter: bidirectional NetFlow/IPFIX-style flow records at line rate.
//!
//! Each worker owns a [`FlowMeter`]: packets (as decoded [`outpost_decode::PacketMeta`]) go in,
//! [`FlowRecord`]s come out — when a flow ends (idle timeout, both TCP FINs, a RST, eviction
//! from a full table, end of input) and, for long-lived flows, as interim records every active
//! timeout with delta counters and the same flow id. Records are RFC 5103 biflows: forward is
//! the initiator's direction. Every record carries its Community ID v1.
//!
//! Everything runs in event time (capture timestamps); a replay and a live run of the same
//! packets give the same records.

/// Version of the JSON schema of flow records and of Outpost's other JSON records (the
/// `schema_version` field; README "Outputs"). Raised when a field changes meaning or goes
/// away; new fields do not raise it.
pub const SCHEMA_VERSION: u32 = 1;

pub mod index;
pub mod key;
pub mod meter;
pub mod record;
pub mod table;

pub use key::{FlowKey, Side, community_id};
pub use meter::{FlowConfig, FlowMeter, FlowMeterStats, PREFETCH_MIN_FLOWS};
pub use record::{DirectionCounters, EndReason, FlowJson, FlowRecord};
pub use table::{FlowTable, IntervalDelta, MAX_ACTIVE_TIMEOUT, TableConfig, TableStats};
