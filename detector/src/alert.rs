//! Alerts: the compact record workers emit, and its JSON form.
//!
//! Workers emit [`Alert`] values that refer to their rule by index; names, severities and
//! network labels are filled in when the alert is written ([`AlertJson`]), off the hot path.
//!
//! # JSON fields (one object per line)
//! | field | meaning |
//! |---|---|
//! | `type` | always `alert` |
//! | `id` | 32 hex digits, stable: the same input replayed with the same sensor name gives the same ids, so consumers can deduplicate |
//! | `ts` | capture time of the packet that raised it, RFC 3339 UTC with nanoseconds |
//! | `ts_ns` | the same, nanoseconds since the Unix epoch |
//! | `sensor` | sensor name |
//! | `rule`, `kind`, `severity`, `category`, `mitre` | the rule and its labels (`mitre` only when set) |
//! | `src_ip`, `dst_ip`, `src_port`, `dst_port`, `proto`, `vlan` | the packet (`vlan`: outer VLAN id, only when tagged) |
//! | `network_id`, `network` | the network of `src_ip` (else of `dst_ip`) from `[[networks]]`; `0` and `""` when none |
//! | `frame` | frame number in the input (from 1, as Wireshark counts; across all files of a replay) |
//! | `state`, `event` | for state machines: the state the source was in and the event that had no transition |
//! | `expected` | the events that would have been valid in that state |
//! | `events_before` | events the source's machine had taken since it started |
//! | `machine_started` | when that machine started (absent in the initial state) |
//! | `message` | one line for humans |

use std::fmt::Write as _;

use outpost_decode::{IpAddress, Nanos};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::network::NetworkMap;
use crate::rules::{RuleId, RuleKind, RuleSet};

/// A stable 128-bit alert identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId(pub u128);

impl AlertId {
    /// The id of the alert raised by `rule` for `key` at input frame `frame` of the run
    /// identified by `run_key`. Unique within a run (a rule raises at most one alert per key
    /// and frame) and the same whenever the same input is replayed.
    #[must_use]
    pub fn derive(run_key: u64, frame: u64, rule: RuleId, key: &IpAddress) -> AlertId {
        let mut buf = [0u8; 8 + 8 + 2 + 16];
        buf[..8].copy_from_slice(&run_key.to_le_bytes());
        buf[8..16].copy_from_slice(&frame.to_le_bytes());
        buf[16..18].copy_from_slice(&rule.0.to_le_bytes());
        buf[18..].copy_from_slice(&key.0);
        AlertId(xxhash_rust::xxh3::xxh3_128(&buf))
    }
}

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Rule-specific evidence of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertDetail {
    /// A state machine saw an event with no transition from the key's state.
    InvalidTransition {
        /// The state (index into the rule's states).
        state: u16,
        /// The event (index into the rule's events).
        event: u16,
        /// Events the machine took since it started.
        events_before: u32,
        /// When the machine started, if it had.
        started: Option<Nanos>,
    },
}

/// An alert as workers emit it: `Copy`, no strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Stable id.
    pub id: AlertId,
    /// Capture time of the packet that raised it.
    pub ts: Nanos,
    /// The rule.
    pub rule: RuleId,
    /// Frame number in the input, from 0.
    pub frame: u64,
    /// Source address.
    pub src: IpAddress,
    /// Destination address.
    pub dst: IpAddress,
    /// Source port (0 when none).
    pub src_port: u16,
    /// Destination port (0 when none).
    pub dst_port: u16,
    /// IP protocol number.
    pub ip_proto: u8,
    /// Outer VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Evidence.
    pub detail: AlertDetail,
}

/// Name of an IP protocol for alerts.
#[must_use]
pub fn proto_name(p: u8) -> std::borrow::Cow<'static, str> {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string().into(),
    }
}

/// An alert with what is needed to write it as JSON.
#[derive(Debug)]
pub struct AlertJson<'a> {
    /// The alert.
    pub alert: &'a Alert,
    /// The rules it refers to.
    pub rules: &'a RuleSet,
    /// Networks for `network_id`.
    pub networks: &'a NetworkMap,
    /// Sensor name.
    pub sensor: &'a str,
}

impl Serialize for AlertJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.alert;
        let meta = self.rules.meta(a.rule).ok_or_else(|| {
            serde::ser::Error::custom(format!("alert refers to rule id {} not in the rule set", a.rule.0))
        })?;
        let net = self.networks.lookup_pair(&a.src, &a.dst);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "alert")?;
        m.serialize_entry("id", &a.id.to_string())?;
        m.serialize_entry("ts", &a.ts)?;
        m.serialize_entry("ts_ns", &a.ts.0)?;
        m.serialize_entry("sensor", self.sensor)?;
        m.serialize_entry("rule", meta.name)?;
        m.serialize_entry("kind", meta.kind.name())?;
        m.serialize_entry("severity", meta.severity.name())?;
        m.serialize_entry("category", meta.category)?;
        if let Some(t) = meta.mitre {
            m.serialize_entry("mitre", t)?;
        }
        m.serialize_entry("src_ip", &a.src)?;
        m.serialize_entry("dst_ip", &a.dst)?;
        m.serialize_entry("src_port", &a.src_port)?;
        m.serialize_entry("dst_port", &a.dst_port)?;
        m.serialize_entry("proto", &proto_name(a.ip_proto))?;
        if let Some(v) = a.vlan {
            m.serialize_entry("vlan", &v)?;
        }
        m.serialize_entry("network_id", &net.map_or(0, |n| n.id))?;
        m.serialize_entry("network", net.map_or("", |n| n.name.as_str()))?;
        m.serialize_entry("frame", &(a.frame + 1))?;
        let mut message = String::new();
        match (a.detail, meta.kind) {
            (
                AlertDetail::InvalidTransition { state, event, events_before, started },
                RuleKind::StateMachine(sm),
            ) => {
                let (state_name, event_name) = (sm.state_name(state), sm.event_name(event));
                let expected: Vec<&str> = sm.expected(state).collect();
                m.serialize_entry("state", state_name)?;
                m.serialize_entry("event", event_name)?;
                m.serialize_entry("expected", &expected)?;
                m.serialize_entry("events_before", &events_before)?;
                if let Some(t) = started {
                    m.serialize_entry("machine_started", &t)?;
                }
                let _ = write!(
                    message,
                    "{}: invalid transition from {state_name} on event {event_name} (expected {}) by {}",
                    meta.name,
                    if expected.is_empty() { "nothing".to_string() } else { expected.join(" or ") },
                    a.src
                );
            }
        }
        m.serialize_entry("message", &message)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_inputs() {
        let k: IpAddress = "10.0.0.1".parse().unwrap();
        let a = AlertId::derive(7, 100, RuleId(0), &k);
        assert_eq!(a, AlertId::derive(7, 100, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(7, 101, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(8, 100, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(7, 100, RuleId(1), &k));
        assert_eq!(a.to_string().len(), 32);
    }
}
