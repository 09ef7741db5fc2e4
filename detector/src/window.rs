//! Alert windows: alerts counted per network id in event-time tumbling windows.
//!
//! From the Pravega variant of the state-machine example: besides each alert, the sensor
//! reports, for every window of `window` seconds (aligned to the Unix epoch) and every network
//! that had alerts in it, how many alerts there were, from how many sources, which rules raised
//! them, and when the first and last came.
//!
//! A window `[start, end)` is closed — its summary emitted — once the pipeline's watermark
//! (every worker has processed the input up to that capture time) reaches `end + lateness`.
//! An alert whose window is already closed (input out of time order by more than `lateness`)
//! is counted in [`AlertWindows::late`]; the alert itself is still written. At the end of the
//! input every open window is closed. Summaries come out ordered by window end, then network
//! id, so the output is deterministic.

use std::collections::{BTreeMap, HashSet};

use outpost_decode::{Duration, IpAddress, Nanos};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::alert::Alert;
use crate::network::NetworkMap;

/// Counts for one (window, network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSummary {
    /// Window start (inclusive).
    pub start: Nanos,
    /// Window end (exclusive).
    pub end: Nanos,
    /// Network id (0: no configured network).
    pub network_id: u32,
    /// Alerts in the window.
    pub alerts: u64,
    /// Distinct source addresses among them.
    pub sources: u64,
    /// Capture time of the first alert.
    pub first: Nanos,
    /// Capture time of the last alert.
    pub last: Nanos,
    /// Alerts per rule, by rule name (names, not ids: a window outlives a rule reload, which
    /// renumbers rules).
    pub by_rule: Vec<(String, u64)>,
}

#[derive(Debug)]
struct Acc {
    alerts: u64,
    sources: HashSet<IpAddress>,
    first: Nanos,
    last: Nanos,
    by_rule: BTreeMap<String, u64>,
}

/// Open windows and the close logic.
#[derive(Debug)]
pub struct AlertWindows {
    width: Duration,
    lateness: Duration,
    /// Open windows by (start, network id).
    open: BTreeMap<(Nanos, u32), Acc>,
    watermark: Nanos,
    /// Alerts that arrived after their window closed.
    pub late: u64,
}

impl AlertWindows {
    /// Windows of `width` (at least 1 ns) kept open `lateness` past their end.
    #[must_use]
    pub fn new(width: Duration, lateness: Duration) -> AlertWindows {
        AlertWindows {
            width: Duration(width.as_nanos().max(1)),
            lateness,
            open: BTreeMap::new(),
            watermark: Nanos::ZERO,
            late: 0,
        }
    }

    fn closes_at(&self, start: Nanos) -> Nanos {
        start.saturating_add(self.width).saturating_add(self.lateness)
    }

    /// Counts `alert`, raised by the rule named `rule`, for `network_id`.
    pub fn add(&mut self, alert: &Alert, network_id: u32, rule: &str) {
        let start = alert.ts.window_start(self.width);
        if self.closes_at(start) <= self.watermark && self.watermark > Nanos::ZERO {
            self.late += 1;
            return;
        }
        let acc = self.open.entry((start, network_id)).or_insert_with(|| Acc {
            alerts: 0,
            sources: HashSet::new(),
            first: alert.ts,
            last: alert.ts,
            by_rule: BTreeMap::new(),
        });
        acc.alerts += 1;
        acc.sources.insert(alert.src);
        acc.first = acc.first.min(alert.ts);
        acc.last = acc.last.max(alert.ts);
        match acc.by_rule.get_mut(rule) {
            Some(n) => *n += 1,
            None => {
                acc.by_rule.insert(rule.to_string(), 1);
            }
        }
    }

    /// Moves the watermark to `watermark` and returns the windows that closed, in order.
    pub fn advance(&mut self, watermark: Nanos) -> Vec<WindowSummary> {
        self.watermark = self.watermark.max(watermark);
        // Ordered by start: stop at the first window still open.
        let due: Vec<(Nanos, u32)> = self
            .open
            .keys()
            .take_while(|(start, _)| self.closes_at(*start) <= self.watermark)
            .copied()
            .collect();
        self.close(due)
    }

    /// Closes every open window (end of input).
    pub fn finish(&mut self) -> Vec<WindowSummary> {
        let all: Vec<(Nanos, u32)> = self.open.keys().copied().collect();
        self.close(all)
    }

    fn close(&mut self, keys: Vec<(Nanos, u32)>) -> Vec<WindowSummary> {
        // BTreeMap order is (start, network id); all windows have the same width, so that is
        // also (end, network id).
        keys.into_iter()
            .filter_map(|k| {
                let acc = self.open.remove(&k)?;
                Some(WindowSummary {
                    start: k.0,
                    end: k.0.saturating_add(self.width),
                    network_id: k.1,
                    alerts: acc.alerts,
                    sources: acc.sources.len() as u64,
                    first: acc.first,
                    last: acc.last,
                    by_rule: acc.by_rule.into_iter().collect(),
                })
            })
            .collect()
    }
}

/// A window summary with what is needed to write it as JSON.
///
/// Fields: `type` (`alert_window`), `window_start`, `window_end` (RFC 3339), `network_id`, `network`, `latitude` and
/// `longitude` (when configured), `alerts`, `sources` (distinct source addresses),
/// `first_alert`, `last_alert`, and `rules` (alerts per rule name).
#[derive(Debug)]
pub struct WindowJson<'a> {
    /// The summary.
    pub summary: &'a WindowSummary,
    /// Network labels.
    pub networks: &'a NetworkMap,
}

impl Serialize for WindowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let w = self.summary;
        let net = self.networks.by_id(w.network_id);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "alert_window")?;
        m.serialize_entry("schema_version", &crate::SCHEMA_VERSION)?;
        m.serialize_entry("window_start", &w.start)?;
        m.serialize_entry("window_end", &w.end)?;
        m.serialize_entry("network_id", &w.network_id)?;
        m.serialize_entry("network", net.map_or("", |n| n.name.as_str()))?;
        if let Some(lat) = net.and_then(|n| n.latitude) {
            m.serialize_entry("latitude", &lat)?;
        }
        if let Some(lon) = net.and_then(|n| n.longitude) {
            m.serialize_entry("longitude", &lon)?;
        }
        m.serialize_entry("alerts", &w.alerts)?;
        m.serialize_entry("sources", &w.sources)?;
        m.serialize_entry("first_alert", &w.first)?;
        m.serialize_entry("last_alert", &w.last)?;
        let rules: BTreeMap<&str, u64> = w.by_rule.iter().map(|(name, n)| (name.as_str(), *n)).collect();
        m.serialize_entry("rules", &rules)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertDetail, AlertId};
    use crate::rules::RuleId;

    fn alert(ts_secs: u64, src: &str) -> Alert {
        Alert {
            id: AlertId(0),
            ts: Nanos::from_secs(ts_secs),
            rule: RuleId(0),
            frame: Some(0),
            flow_id: None,
            key: crate::key::KeyValue::default(),
            src: src.parse().unwrap(),
            dst: "10.9.9.9".parse().unwrap(),
            src_port: 0,
            dst_port: 0,
            ip_proto: 17,
            vlan: None,
            detail: AlertDetail::InvalidTransition { state: 0, event: 0, events_before: 0, started: None },
        }
    }

    #[test]
    fn windows_close_when_the_watermark_passes_their_end() {
        let mut w = AlertWindows::new(Duration::from_secs(30), Duration::ZERO);
        w.add(&alert(61, "10.0.0.1"), 1, "a");
        w.add(&alert(75, "10.0.0.1"), 1, "b");
        w.add(&alert(80, "10.0.0.2"), 2, "a");
        w.add(&alert(95, "10.0.0.3"), 1, "a");
        assert!(w.advance(Nanos::from_secs(89)).is_empty());
        let closed = w.advance(Nanos::from_secs(90));
        assert_eq!(closed.len(), 2);
        assert_eq!((closed[0].network_id, closed[0].alerts, closed[0].sources), (1, 2, 1));
        assert_eq!((closed[0].first, closed[0].last), (Nanos::from_secs(61), Nanos::from_secs(75)));
        assert_eq!(closed[0].by_rule, [("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!((closed[1].network_id, closed[1].alerts), (2, 1));
        // Out of order beyond lateness: counted late, not in a window.
        w.add(&alert(70, "10.0.0.4"), 1, "a");
        assert_eq!(w.late, 1);
        let rest = w.finish();
        assert_eq!(rest.len(), 1);
        assert_eq!((rest[0].start, rest[0].alerts), (Nanos::from_secs(90), 1));
    }

    #[test]
    fn lateness_keeps_a_window_open_past_its_end() {
        let mut w = AlertWindows::new(Duration::from_secs(10), Duration::from_secs(5));
        w.add(&alert(3, "10.0.0.1"), 1, "a");
        assert!(w.advance(Nanos::from_secs(14)).is_empty());
        w.add(&alert(9, "10.0.0.2"), 1, "a");
        let closed = w.advance(Nanos::from_secs(15));
        assert_eq!((closed.len(), closed[0].alerts, closed[0].sources), (1, 2, 2));
        assert_eq!(w.late, 0);
    }
}
