//! Alerts: the compact record rules emit, and its JSON form.
//!
//! Rules emit [`Alert`] values that refer to their rule by index; names, severities, key field
//! names and network labels are filled in when the alert is written ([`AlertJson`]), off the
//! hot path.
//!
//! # JSON fields (one object per line)
//! | field | meaning |
//! |---|---|
//! | `type` | always `alert` |
//! | `id` | 32 hex digits, stable: the same input replayed with the same sensor name gives the same ids, so consumers can deduplicate |
//! | `ts`, `ts_ns` | capture time the alert refers to (the packet or flow that raised it, the end of the window or interval that crossed the threshold, or the moment a timeout expired), RFC 3339 UTC with nanoseconds, and nanoseconds since the epoch |
//! | `sensor` | sensor name |
//! | `rule`, `kind`, `severity`, `category`, `mitre` | the rule and its labels (`mitre` only when set) |
//! | `key` | the rule's key: an object of the key's fields (`{"src_ip": "…", "dst_port": 22}`) |
//! | `src_ip`, `dst_ip`, `src_port`, `dst_port`, `proto`, `vlan` | the packet or flow that raised the alert, or the key's addresses for aggregate alerts (`vlan` only when tagged) |
//! | `network_id`, `network` | the network of `src_ip` (else of `dst_ip`) from `[[networks]]`; `0` and `""` when none |
//! | `community_id` | Community ID v1 of the flow involved (when there is a 5-tuple) |
//! | `flow_id` | the flow record that raised it (flow rules) |
//! | `frame` | frame number in the input that raised it (packet rules; from 1, as Wireshark counts) |
//! | evidence | per kind: see below |
//! | `message` | one line for humans |
//!
//! Evidence: state machines `state`, `event`, `expected`, `events_before`, `machine_started`;
//! thresholds `aggregate`, `value`, `threshold`, `window_seconds`, `events`; baselines
//! `metric`, `value`, `mean`, `sigma`, `score`, `interval_start`, `interval_seconds`; absence
//! `last_seen`, `timeout_seconds`; sequences `started`, `steps`; intel `list`, `listed_ip`,
//! `prefix`, `matched`.

use std::fmt::Write as _;

use outpost_decode::{Cidr, Duration, IpAddress, Nanos};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::key::KeyValue;
use crate::network::NetworkMap;
use crate::rules::{RuleId, RuleKind, RuleSet};

/// A stable 128-bit alert identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId(pub u128);

impl AlertId {
    /// The id of the alert raised by `rule` for `key` at `anchor` — the input frame number
    /// for packet alerts, or the position in the input's total order for the others — in the
    /// run identified by `run_key`. Unique within a run (a rule raises at most one alert per
    /// key and anchor) and the same whenever the same input is replayed.
    #[must_use]
    pub fn derive(run_key: u64, anchor: u64, rule: RuleId, key: &KeyValue) -> AlertId {
        let mut buf = [0u8; 8 + 8 + 2 + 16 + 16 + 2 + 2 + 1 + 4];
        let mut at = 0;
        let mut put = |b: &[u8]| {
            if let Some(d) = buf.get_mut(at..at + b.len()) {
                d.copy_from_slice(b);
            }
            at += b.len();
        };
        put(&run_key.to_le_bytes());
        put(&anchor.to_le_bytes());
        put(&rule.0.to_le_bytes());
        put(&key.src.0);
        put(&key.dst.0);
        put(&key.src_port.to_le_bytes());
        put(&key.dst_port.to_le_bytes());
        put(&[key.proto]);
        put(&key.network.to_le_bytes());
        AlertId(xxhash_rust::xxh3::xxh3_128(&buf))
    }
}

impl std::fmt::Display for AlertId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Which address of a packet matched an intel list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Matched {
    /// The source address.
    Src,
    /// The destination address.
    Dst,
}

/// Rule-specific evidence of an alert.
#[derive(Clone, Copy, Debug, PartialEq)]
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
    /// A state machine stayed in a state past the state's own timeout.
    StateTimeout {
        /// The state (index into the rule's states).
        state: u16,
        /// Events the machine took since it started.
        events_before: u32,
        /// When the machine started.
        started: Nanos,
    },
    /// A threshold rule's aggregate reached its threshold.
    Threshold {
        /// The aggregate's value in the window.
        value: f64,
        /// Inputs in the window.
        events: u64,
    },
    /// A baseline value exceeded mean + k·σ.
    Baseline {
        /// The interval's value.
        value: f64,
        /// The learned mean before this interval.
        mean: f64,
        /// The learned σ (at least the rule's floor).
        sigma: f64,
        /// (value − mean) / σ.
        score: f64,
        /// Start of the interval.
        interval_start: Nanos,
    },
    /// An expected key sent nothing matching for the timeout.
    Absence {
        /// When it last did (none: never, for an expected key).
        last_seen: Option<Nanos>,
    },
    /// A sequence rule's steps all happened in order.
    Sequence {
        /// When the first step happened.
        started: Nanos,
    },
    /// A packet to or from an address on an intel list.
    Intel {
        /// The list (index into the rule's lists).
        list: u16,
        /// The listed address.
        listed: IpAddress,
        /// The list entry (prefix) that matched.
        prefix: Cidr,
        /// Which address of the packet it was.
        matched: Matched,
    },
}

/// An alert as rules emit it: `Copy`, no strings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alert {
    /// Stable id.
    pub id: AlertId,
    /// Capture time the alert refers to.
    pub ts: Nanos,
    /// The rule.
    pub rule: RuleId,
    /// The rule's key value.
    pub key: KeyValue,
    /// Frame number in the input, from 0 (packet rules).
    pub frame: Option<u64>,
    /// Flow id (flow rules).
    pub flow_id: Option<u64>,
    /// Source address of the packet or flow (or the key's).
    pub src: IpAddress,
    /// Destination address.
    pub dst: IpAddress,
    /// Source port (0 when none).
    pub src_port: u16,
    /// Destination port (0 when none).
    pub dst_port: u16,
    /// IP protocol number (0 when none).
    pub ip_proto: u8,
    /// Outer VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Evidence.
    pub detail: AlertDetail,
}

impl Alert {
    /// An alert about `key` with the key's own fields as context (for aggregate alerts).
    #[must_use]
    pub fn for_key(id: AlertId, ts: Nanos, rule: RuleId, key: KeyValue, detail: AlertDetail) -> Alert {
        Alert {
            id,
            ts,
            rule,
            key,
            frame: None,
            flow_id: None,
            src: key.src,
            dst: key.dst,
            src_port: key.src_port,
            dst_port: key.dst_port,
            ip_proto: key.proto,
            vlan: None,
            detail,
        }
    }
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

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Serialize for AlertJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let a = self.alert;
        let rule = self.rules.rule(a.rule).ok_or_else(|| {
            serde::ser::Error::custom(format!("alert refers to rule id {} not in the rule set", a.rule.0))
        })?;
        let net = self.networks.lookup_pair(&a.src, &a.dst);
        let unspecified = IpAddress::UNSPECIFIED;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "alert")?;
        m.serialize_entry("schema_version", &crate::SCHEMA_VERSION)?;
        m.serialize_entry("id", &a.id.to_string())?;
        m.serialize_entry("ts", &a.ts)?;
        m.serialize_entry("ts_ns", &a.ts.0)?;
        m.serialize_entry("sensor", self.sensor)?;
        m.serialize_entry("rule", &rule.name)?;
        m.serialize_entry("kind", rule.kind.name())?;
        m.serialize_entry("severity", rule.severity.name())?;
        m.serialize_entry("category", &rule.category)?;
        if let Some(t) = &rule.mitre {
            m.serialize_entry("mitre", t)?;
        }
        if let Some(spec) = rule.kind.key() {
            m.serialize_entry("key", &spec.display(&a.key))?;
        }
        if a.src != unspecified {
            m.serialize_entry("src_ip", &a.src)?;
        }
        if a.dst != unspecified {
            m.serialize_entry("dst_ip", &a.dst)?;
        }
        if a.ip_proto != 0 {
            m.serialize_entry("src_port", &a.src_port)?;
            m.serialize_entry("dst_port", &a.dst_port)?;
            m.serialize_entry("proto", &proto_name(a.ip_proto))?;
        }
        if let Some(v) = a.vlan {
            m.serialize_entry("vlan", &v)?;
        }
        m.serialize_entry("network_id", &net.map_or(0, |n| n.id))?;
        m.serialize_entry("network", net.map_or("", |n| n.name.as_str()))?;
        if a.ip_proto != 0 && a.src != unspecified && a.dst != unspecified {
            let cid = if matches!(a.ip_proto, 1 | 58) {
                // Port equivalents are not known for aggregate alerts: the packet's type/code
                // are not kept, so ICMP alerts carry the address pair's ID.
                outpost_flowmeter::community_id(a.src, 0, a.dst, 0, a.ip_proto)
            } else {
                outpost_flowmeter::community_id(a.src, a.src_port, a.dst, a.dst_port, a.ip_proto)
            };
            m.serialize_entry("community_id", &cid)?;
        }
        if let Some(f) = a.flow_id {
            m.serialize_entry("flow_id", &f)?;
        }
        if let Some(f) = a.frame {
            m.serialize_entry("frame", &(f + 1))?;
        }
        let mut message = String::new();
        let who = if a.src == unspecified { a.key.dst } else { a.src };
        match (a.detail, &rule.kind) {
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
                    rule.name,
                    if expected.is_empty() { "nothing".to_string() } else { expected.join(" or ") },
                    a.src
                );
            }
            (AlertDetail::StateTimeout { state, events_before, started }, RuleKind::StateMachine(sm)) => {
                let state_name = sm.state_name(state);
                let expected: Vec<&str> = sm.expected(state).collect();
                let timeout = sm.state_timeout(state).map_or(0.0, seconds);
                m.serialize_entry("state", state_name)?;
                m.serialize_entry("timed_out", &true)?;
                m.serialize_entry("timeout_seconds", &timeout)?;
                m.serialize_entry("expected", &expected)?;
                m.serialize_entry("events_before", &events_before)?;
                m.serialize_entry("machine_started", &started)?;
                let _ = write!(
                    message,
                    "{}: {} stayed in {state_name} for {timeout} s without {}",
                    rule.name,
                    a.src,
                    if expected.is_empty() { "an event".to_string() } else { expected.join(" or ") },
                );
            }
            (AlertDetail::Threshold { value, events }, RuleKind::Threshold(t)) => {
                m.serialize_entry("aggregate", &t.aggregate.describe())?;
                m.serialize_entry("value", &value)?;
                m.serialize_entry("threshold", &t.threshold)?;
                m.serialize_entry("window_seconds", &seconds(t.window))?;
                m.serialize_entry("events", &events)?;
                let _ = write!(
                    message,
                    "{}: {} = {} ≥ {} in {} s for {}",
                    rule.name,
                    t.aggregate.describe(),
                    round2(value),
                    t.threshold,
                    seconds(t.window),
                    describe_key(t.key.fields(), &a.key)
                );
            }
            (AlertDetail::Baseline { value, mean, sigma, score, interval_start }, RuleKind::Baseline(b)) => {
                m.serialize_entry("metric", b.metric_name())?;
                m.serialize_entry("value", &value)?;
                m.serialize_entry("mean", &round2(mean))?;
                m.serialize_entry("sigma", &round2(sigma))?;
                m.serialize_entry("score", &round2(score))?;
                m.serialize_entry("k", &b.k)?;
                m.serialize_entry("interval_start", &interval_start)?;
                m.serialize_entry("interval_seconds", &seconds(b.interval))?;
                let _ = write!(
                    message,
                    "{}: {} {} = {} in {} s, {}σ above its mean {} (σ {})",
                    rule.name,
                    who,
                    b.metric_name(),
                    value,
                    seconds(b.interval),
                    round2(score),
                    round2(mean),
                    round2(sigma)
                );
            }
            (AlertDetail::Absence { last_seen }, RuleKind::Absence(ab)) => {
                if let Some(t) = last_seen {
                    m.serialize_entry("last_seen", &t)?;
                }
                m.serialize_entry("timeout_seconds", &seconds(ab.timeout))?;
                let _ = write!(
                    message,
                    "{}: nothing matching `{}` from {} for {} s",
                    rule.name,
                    ab.filter.source(),
                    who,
                    seconds(ab.timeout)
                );
            }
            (AlertDetail::Sequence { started }, RuleKind::Sequence(sq)) => {
                m.serialize_entry("started", &started)?;
                m.serialize_entry("steps", &sq.steps.len())?;
                let _ = write!(
                    message,
                    "{}: all {} steps within {} s for {}",
                    rule.name,
                    sq.steps.len(),
                    seconds(sq.within),
                    describe_key(sq.key.fields(), &a.key)
                );
            }
            (AlertDetail::Intel { list, listed, prefix, matched }, RuleKind::Intel(i)) => {
                let list_name = i.list_name(list);
                m.serialize_entry("list", list_name)?;
                m.serialize_entry("listed_ip", &listed)?;
                m.serialize_entry("prefix", &prefix)?;
                m.serialize_entry(
                    "matched",
                    match matched {
                        Matched::Src => "src_ip",
                        Matched::Dst => "dst_ip",
                    },
                )?;
                let _ = write!(message, "{}: {} is on intel list {list_name} ({prefix})", rule.name, listed);
            }
            _ => {
                let _ = write!(message, "{}", rule.name);
            }
        }
        m.serialize_entry("message", &message)?;
        m.end()
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `src_ip 10.0.0.1, dst_port 22` for messages.
fn describe_key(fields: &[crate::config::KeyField], k: &KeyValue) -> String {
    use crate::config::KeyField;
    fields
        .iter()
        .map(|f| match f {
            KeyField::SrcIp => format!("src_ip {}", k.src),
            KeyField::DstIp => format!("dst_ip {}", k.dst),
            KeyField::SrcPort => format!("src_port {}", k.src_port),
            KeyField::DstPort => format!("dst_port {}", k.dst_port),
            KeyField::Proto => format!("proto {}", proto_name(k.proto)),
            KeyField::NetworkId => format!("network {}", k.network),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_inputs() {
        let k = KeyValue { src: "10.0.0.1".parse().unwrap(), ..KeyValue::default() };
        let a = AlertId::derive(7, 100, RuleId(0), &k);
        assert_eq!(a, AlertId::derive(7, 100, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(7, 101, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(8, 100, RuleId(0), &k));
        assert_ne!(a, AlertId::derive(7, 100, RuleId(1), &k));
        let k2 = KeyValue { dst_port: 22, ..k };
        assert_ne!(a, AlertId::derive(7, 100, RuleId(0), &k2));
        assert_eq!(a.to_string().len(), 32);
    }
}
