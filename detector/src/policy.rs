//! The alert policy: what reaches the analyst.
//!
//! Every alert, from any rule, passes here in the collector, in deterministic order:
//!
//! 1. **Suppression lists**: an alert whose rule and addresses match a `[[alert_policy.suppress]]`
//!    entry is dropped (counted as `suppressed`).
//! 2. **Dedup**: the same rule and key alert once per dedup interval (the rule's `dedup`, else
//!    `alert_policy.dedup`, default 5 minutes of event time, starting at the first alert).
//!    Later alerts in the interval are counted; when the interval closes with a non-zero
//!    count, a [`DedupSummary`] reports it (`type: alert_suppressed`). An interval closes when
//!    the watermark passes its end, or, if the next alert of the rule and key comes first,
//!    before that alert is written.
//! 3. **Per-rule rate limit**: at most `rate_limit` alerts of the rule per minute of event time
//!    (counted as `rate_limited`).
//! 4. **Global rate limit**: at most `max_alerts_per_second` alerts per second of event time over
//!    all rules (counted per rule as `global_limited`).
//!
//! Only a written alert uses up rate budget (a duplicate or an alert the global limit drops
//! does not use up its rule's), and rate windows only move forward: an alert older than the
//! current minute or second counts in it. Nothing is lost silently: every dropped alert is
//! counted per rule, once.

use std::collections::{BTreeMap, HashMap as StdHashMap};

use outpost_decode::{Cidr, Duration, Nanos};

use crate::alert::{Alert, AlertId};
use crate::config::AlertPolicyConfig;
use crate::key::KeyValue;
use crate::rules::{RuleId, RuleSet};

/// Counters of one rule's alerts at the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PolicyStats {
    /// Alerts the rule raised.
    pub raised: u64,
    /// Alerts written.
    pub alerted: u64,
    /// Dropped as duplicates of an alert in the same dedup interval.
    pub deduplicated: u64,
    /// Dropped by a suppression list.
    pub suppressed: u64,
    /// Dropped by the rule's rate limit.
    pub rate_limited: u64,
    /// Dropped by the global rate limit.
    pub global_limited: u64,
}

/// What the policy decided for an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Pass,
    /// A duplicate.
    Duplicate,
    /// On a suppression list.
    Suppressed,
    /// Over the rule's rate limit.
    RateLimited,
    /// Over the global rate limit.
    GlobalLimited,
}

/// Duplicates of an alert, reported when its dedup interval closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupSummary {
    /// The rule.
    pub rule: RuleId,
    /// The key.
    pub key: KeyValue,
    /// The alert that was written.
    pub first: AlertId,
    /// Its time.
    pub first_ts: Nanos,
    /// End of the interval.
    pub until: Nanos,
    /// Alerts dropped as its duplicates.
    pub suppressed: u64,
}

/// A [`DedupSummary`] with what is needed to write it as JSON: `type` (`alert_suppressed`),
/// `rule`, `key` (the rule's key fields), `first_alert` (id of the alert that was written),
/// `first_ts`, `until` (end of the dedup interval), `suppressed` (duplicates dropped).
#[derive(Debug)]
pub struct DedupJson<'a> {
    /// The summary.
    pub summary: &'a DedupSummary,
    /// Rule names and keys.
    pub rules: &'a RuleSet,
    /// Sensor name.
    pub sensor: &'a str,
}

impl serde::Serialize for DedupJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let d = self.summary;
        let rule = self.rules.rule(d.rule);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "alert_suppressed")?;
        m.serialize_entry("schema_version", &crate::SCHEMA_VERSION)?;
        m.serialize_entry("sensor", self.sensor)?;
        m.serialize_entry("rule", rule.map_or("unknown", |r| r.name.as_str()))?;
        if let Some(spec) = rule.and_then(|r| r.kind.key()) {
            m.serialize_entry("key", &spec.display(&d.key))?;
        } else if d.key.src != outpost_decode::IpAddress::UNSPECIFIED {
            m.serialize_entry(
                "key",
                &crate::key::KeySpec::of(&[crate::config::KeyField::SrcIp]).display(&d.key),
            )?;
        }
        m.serialize_entry("first_alert", &d.first.to_string())?;
        m.serialize_entry("first_ts", &d.first_ts)?;
        m.serialize_entry("until", &d.until)?;
        m.serialize_entry("suppressed", &d.suppressed)?;
        m.end()
    }
}

#[derive(Debug, Clone)]
struct Suppression {
    rules: Vec<RuleId>,
    src: Vec<Cidr>,
    dst: Vec<Cidr>,
}

impl Suppression {
    fn matches(&self, a: &Alert) -> bool {
        (self.rules.is_empty() || self.rules.contains(&a.rule))
            && (self.src.is_empty() || self.src.iter().any(|c| c.contains(&a.src)))
            && (self.dst.is_empty() || self.dst.iter().any(|c| c.contains(&a.dst)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Open {
    first: AlertId,
    first_ts: Nanos,
    until: Nanos,
    suppressed: u64,
}

impl Open {
    /// The summary of this interval for `rule` and `key`.
    fn summary(&self, rule: RuleId, key: KeyValue) -> DedupSummary {
        DedupSummary {
            rule,
            key,
            first: self.first,
            first_ts: self.first_ts,
            until: self.until,
            suppressed: self.suppressed,
        }
    }
}

/// The policy's state.
#[derive(Debug)]
pub struct AlertPolicy {
    dedup: Duration,
    per_rule_dedup: Vec<Duration>,
    per_rule_rate: Vec<Option<u32>>,
    global_rate: u32,
    suppress: Vec<Suppression>,
    open: StdHashMap<(RuleId, KeyValue), Open>,
    /// Dedup intervals by end time, for closing them in order.
    closing: BTreeMap<(Nanos, RuleId, KeyValue), ()>,
    rule_minute: Vec<(u64, u32)>,
    global_second: (u64, u32),
    /// Per-rule counters, by rule id.
    pub stats: Vec<PolicyStats>,
}

impl AlertPolicy {
    /// The policy of `config` for `rules`. Suppression entries naming unknown rules are
    /// ignored (the caller validates names).
    #[must_use]
    pub fn new(config: &AlertPolicyConfig, rules: &RuleSet) -> AlertPolicy {
        let n = rules.len();
        AlertPolicy {
            dedup: config.dedup.0,
            per_rule_dedup: rules.rules.iter().map(|r| r.dedup.unwrap_or(config.dedup.0)).collect(),
            per_rule_rate: rules.rules.iter().map(|r| r.rate_limit).collect(),
            global_rate: config.max_alerts_per_second,
            suppress: config
                .suppress
                .iter()
                .map(|s| Suppression {
                    rules: s.rules.iter().filter_map(|name| rules.id_of(name)).collect(),
                    src: s.src.clone(),
                    dst: s.dst.clone(),
                })
                .collect(),
            open: StdHashMap::new(),
            closing: BTreeMap::new(),
            rule_minute: vec![(0, 0); n],
            global_second: (0, 0),
            stats: vec![PolicyStats::default(); n],
        }
    }

    /// Decides for one alert. An earlier interval of the same rule and key that ended (in the
    /// alert's event time) but was not closed yet — no watermark has passed its end — closes
    /// when this alert opens the next one: its duplicate count goes to `out` first.
    pub fn offer(&mut self, a: &Alert, out: &mut impl FnMut(DedupSummary)) -> Verdict {
        let r = usize::from(a.rule.0);
        let Some(stats) = self.stats.get_mut(r) else { return Verdict::Suppressed };
        stats.raised += 1;
        if self.suppress.iter().any(|s| s.matches(a)) {
            stats.suppressed += 1;
            return Verdict::Suppressed;
        }
        if let Some(o) = self.open.get_mut(&(a.rule, a.key)) {
            if a.ts < o.until {
                o.suppressed += 1;
                stats.deduplicated += 1;
                return Verdict::Duplicate;
            }
        }
        // Rate windows only move forward: an alert out of time order counts in the current
        // window instead of resetting it.
        let minute = a.ts.0 / 60_000_000_000;
        let rule_slot = self.rule_minute.get_mut(r);
        if let (Some(Some(limit)), Some(slot)) = (self.per_rule_rate.get(r), rule_slot.as_deref()) {
            let used = if minute > slot.0 { 0 } else { slot.1 };
            if used >= *limit {
                stats.rate_limited += 1;
                return Verdict::RateLimited;
            }
        }
        let second = a.ts.0 / 1_000_000_000;
        let global_used = if second > self.global_second.0 { 0 } else { self.global_second.1 };
        if global_used >= self.global_rate {
            stats.global_limited += 1;
            return Verdict::GlobalLimited;
        }
        // Written: only now does it use up the rule's and the global budget.
        if let Some(slot) = rule_slot {
            *slot = if minute > slot.0 { (minute, 1) } else { (slot.0, slot.1 + 1) };
        }
        self.global_second =
            if second > self.global_second.0 { (second, 1) } else { (self.global_second.0, global_used + 1) };
        stats.alerted += 1;
        let dedup = self.per_rule_dedup.get(r).copied().unwrap_or(self.dedup);
        if dedup > Duration::ZERO {
            let until = a.ts.saturating_add(dedup);
            if let Some(prev) =
                self.open.insert((a.rule, a.key), Open { first: a.id, first_ts: a.ts, until, suppressed: 0 })
            {
                self.closing.remove(&(prev.until, a.rule, a.key));
                if prev.suppressed > 0 {
                    out(DedupSummary {
                        rule: a.rule,
                        key: a.key,
                        first: prev.first,
                        first_ts: prev.first_ts,
                        until: prev.until,
                        suppressed: prev.suppressed,
                    });
                }
            }
            self.closing.insert((until, a.rule, a.key), ());
        }
        Verdict::Pass
    }

    /// The policy for a reloaded rule set: `carried[i]` is the old id of new rule `i` when the
    /// rule did not change. Carried rules keep their open dedup intervals, rate-limit windows
    /// and counters under their new ids; the open intervals of the other old rules close now,
    /// their duplicate counts going to `out` (with their old rule ids).
    pub fn reload(
        &mut self,
        config: &AlertPolicyConfig,
        rules: &RuleSet,
        carried: &[Option<RuleId>],
        out: &mut impl FnMut(DedupSummary),
    ) {
        let mut next = AlertPolicy::new(config, rules);
        next.global_second = self.global_second;
        let mut new_id: StdHashMap<RuleId, RuleId> = StdHashMap::new();
        for (i, from) in carried.iter().enumerate() {
            let (Some(old), Ok(i)) = (from, u16::try_from(i)) else { continue };
            new_id.insert(*old, RuleId(i));
            let (o, n) = (usize::from(old.0), usize::from(i));
            if let (Some(stats), Some(to)) = (self.stats.get(o), next.stats.get_mut(n)) {
                to.clone_from(stats);
            }
            if let (Some(slot), Some(to)) = (self.rule_minute.get(o), next.rule_minute.get_mut(n)) {
                *to = *slot;
            }
        }
        // In closing order, so what is reported comes out in the order `advance` would use.
        for ((until, rule, key), ()) in std::mem::take(&mut self.closing) {
            let Some(o) = self.open.remove(&(rule, key)) else { continue };
            match new_id.get(&rule) {
                Some(&id) => {
                    next.open.insert((id, key), o);
                    next.closing.insert((until, id, key), ());
                }
                None if o.suppressed > 0 => out(o.summary(rule, key)),
                None => {}
            }
        }
        *self = next;
    }

    /// Closes the dedup intervals that ended by `now`, reporting those with duplicates.
    pub fn advance(&mut self, now: Nanos, out: &mut impl FnMut(DedupSummary)) {
        while let Some(entry) = self.closing.first_entry() {
            let (until, rule, key) = *entry.key();
            if until > now {
                break;
            }
            entry.remove();
            if let Some(o) = self.open.remove(&(rule, key)) {
                if o.suppressed > 0 {
                    out(o.summary(rule, key));
                }
            }
        }
    }

    /// Closes every open interval (end of input).
    pub fn finish(&mut self, out: &mut impl FnMut(DedupSummary)) {
        self.advance(Nanos::MAX, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertDetail;
    use crate::config::{RulesConfig, SourceText, SuppressConfig};

    fn rules() -> RuleSet {
        let src = SourceText::new(
            "r.toml",
            "[[threshold]]\nname = \"a\"\nkey = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 1\nrate_limit = 2\n\
             [[threshold]]\nname = \"b\"\nkey = [\"src_ip\"]\nwindow = \"10s\"\nthreshold = 1\ndedup = \"0s\"\n",
        );
        let cfg: RulesConfig = src.parse().unwrap();
        RuleSet::compile([(&cfg, &src, "")]).unwrap()
    }

    impl AlertPolicy {
        fn offer_alone(&mut self, a: &Alert) -> Verdict {
            self.offer(a, &mut |s| panic!("no interval closes here: {s:?}"))
        }
    }

    fn alert(rule: u16, src: &str, secs: u64, n: u128) -> Alert {
        let key = KeyValue { src: src.parse().unwrap(), ..KeyValue::default() };
        Alert::for_key(
            AlertId(n),
            Nanos::from_secs(secs),
            RuleId(rule),
            key,
            AlertDetail::Threshold { value: 1.0, events: 1 },
        )
    }

    #[test]
    fn duplicates_are_counted_and_reported_when_the_interval_closes() {
        let r = rules();
        let mut p = AlertPolicy::new(&AlertPolicyConfig::default(), &r);
        assert_eq!(p.offer_alone(&alert(0, "10.0.0.1", 100, 1)), Verdict::Pass);
        assert_eq!(p.offer_alone(&alert(0, "10.0.0.1", 200, 2)), Verdict::Duplicate);
        assert_eq!(p.offer_alone(&alert(0, "10.0.0.1", 250, 3)), Verdict::Duplicate);
        assert_eq!(p.offer_alone(&alert(0, "10.0.0.2", 250, 4)), Verdict::Pass, "another key");
        let mut sums = Vec::new();
        p.advance(Nanos::from_secs(399), &mut |s| sums.push(s));
        assert!(sums.is_empty());
        p.advance(Nanos::from_secs(400), &mut |s| sums.push(s));
        assert_eq!(sums.len(), 1);
        assert_eq!((sums[0].first, sums[0].suppressed), (AlertId(1), 2));
        assert_eq!(p.offer_alone(&alert(0, "10.0.0.1", 401, 5)), Verdict::Pass, "a new interval");
        assert_eq!(p.stats[0].deduplicated, 2);
        p.finish(&mut |s| sums.push(s));
        assert_eq!(sums.len(), 1, "intervals without duplicates are not reported");
    }

    #[test]
    fn rate_limits_and_suppressions_drop_and_count() {
        let r = rules();
        let cfg = AlertPolicyConfig {
            dedup: crate::config::ConfigDuration(Duration::ZERO),
            max_alerts_per_second: 3,
            suppress: vec![SuppressConfig {
                rules: vec!["b".into()],
                src: vec!["10.9.0.0/16".parse().unwrap()],
                dst: vec![],
            }],
        };
        let mut p = AlertPolicy::new(&cfg, &r);
        let verdicts: Vec<Verdict> =
            (0..4).map(|i| p.offer_alone(&alert(0, &format!("10.0.0.{i}"), 60, i))).collect();
        assert_eq!(verdicts, [Verdict::Pass, Verdict::Pass, Verdict::RateLimited, Verdict::RateLimited]);
        assert_eq!(p.offer_alone(&alert(1, "10.9.1.1", 60, 9)), Verdict::Suppressed);
        assert_eq!(p.offer_alone(&alert(1, "10.8.1.1", 60, 10)), Verdict::Pass);
        assert_eq!(
            p.offer_alone(&alert(1, "10.8.1.2", 60, 11)),
            Verdict::GlobalLimited,
            "3 per second in all"
        );
        assert_eq!(p.offer_alone(&alert(1, "10.8.1.2", 61, 12)), Verdict::Pass);
        assert_eq!((p.stats[0].rate_limited, p.stats[1].suppressed, p.stats[1].global_limited), (2, 1, 1));
    }
}
