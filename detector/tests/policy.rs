//! The alert policy end to end, in the collector: dedup per rule and key per interval with the
//! duplicates reported when the interval closes, suppression lists by rule and source and
//! destination prefix, per-rule and global rate limits, and every dropped alert counted per rule.

mod common;
use common::*;

/// Rules whose alerts the tests raise at the collector (the policy does not care which rule
/// kind raised an alert; these are flow rules that see no flows here).
const RULES: &str = r#"
[[threshold]]
name = "ssh-brute-force"
input = "flows"
filter = "tcp dst port 22"
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 10

[[threshold]]
name = "port-scan"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 50
dedup = "0s"
rate_limit = 3

[[threshold]]
name = "login-spray"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 20
dedup = "1m"
rate_limit = 2

[[absence]]
name = "syslog-silent"
filter = "udp dst port 514"
timeout = "60s"
rate_limit = 3
"#;

/// The collector with `RULES` and the `[alert_policy]` of `text`.
fn collector(text: &str) -> Sensor {
    Sensor::new(&rules(RULES), &Setup { policy: policy(text), ..Setup::default() })
}

/// An alert of `rule` about `src` → `dst` at `ts`, with id `n`.
fn alert(s: &Sensor, rule: &str, src: &str, dst: &str, ts: Nanos, n: u128) -> Alert {
    let key = KeyValue { src: ip(src), dst: ip(dst), ..KeyValue::default() };
    Alert::for_key(AlertId(n), ts, s.id(rule), key, AlertDetail::Threshold { value: 10.0, events: 10 })
}

/// Hands the collector an alert raised by a worker or by one of its own rules.
fn raise(s: &mut Sensor, a: Alert) {
    let seq = s.next_seq();
    let out = &mut s.out;
    s.central.on_alert(seq, a, &mut |o| out.push(o));
}

/// Raises an alert of `rule` about `src` → `dst` at `ts` (id `n`).
fn raise_new(s: &mut Sensor, rule: &str, src: &str, dst: &str, ts: Nanos, n: u128) {
    let a = alert(s, rule, src, dst, ts, n);
    raise(s, a);
}

/// Every worker has processed the input up to `now`.
fn watermark(s: &mut Sensor, now: Nanos) {
    let out = &mut s.out;
    s.central.on_watermark(now, &mut |o| out.push(o));
}

/// Ids of the alerts written so far.
fn written(s: &Sensor) -> Vec<u128> {
    s.alerts().iter().map(|a| a.id.0).collect()
}

/// The policy's counters of `rule`, as `(raised, alerted, deduplicated, suppressed,
/// rate_limited, global_limited)`.
fn counts(s: &Sensor, rule: &str) -> (u64, u64, u64, u64, u64, u64) {
    let p = s.policy_stats(rule);
    (p.raised, p.alerted, p.deduplicated, p.suppressed, p.rate_limited, p.global_limited)
}

/// Every alert a rule raised was written or counted as exactly one kind of drop.
fn assert_every_alert_accounted_for(s: &Sensor) {
    for (i, p) in s.central.stats().policy.iter().enumerate() {
        let dropped = p.deduplicated + p.suppressed + p.rate_limited + p.global_limited;
        assert_eq!(p.raised, p.alerted + dropped, "rule {i}: {p:?}");
    }
    let alerted: u64 = s.central.stats().policy.iter().map(|p| p.alerted).sum();
    assert_eq!(s.alerts().len() as u64, alerted, "every alert counted as alerted was written");
}

#[test]
fn the_same_rule_and_key_alert_once_per_dedup_interval_and_the_duplicates_are_reported_when_it_closes() {
    let mut s = collector("");
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(0), 1);
    for (i, at) in [60, 120, 299].into_iter().enumerate() {
        raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(at), 10 + i as u128);
    }
    watermark(&mut s, t_ms(299_999));
    assert_eq!(written(&s), [1]);
    assert!(s.summaries().is_empty(), "the interval is still open");
    watermark(&mut s, t(300));
    let want = DedupSummary {
        rule: s.id("ssh-brute-force"),
        key: KeyValue { src: ip("10.0.0.1"), dst: ip("192.168.1.10"), ..KeyValue::default() },
        first: AlertId(1),
        first_ts: t(0),
        until: t(300),
        suppressed: 3,
    };
    assert_eq!(s.summaries(), [want], "closed by the watermark at its end, 5 min after the first alert");
    // The next alert of the key opens a new interval; one without duplicates is not reported.
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(300), 2);
    s.finish();
    assert_eq!(written(&s), [1, 2]);
    assert_eq!(s.summaries().len(), 1);
    assert_eq!(counts(&s, "ssh-brute-force"), (5, 2, 3, 0, 0, 0));
    assert_every_alert_accounted_for(&s);
}

#[test]
fn another_key_or_another_rule_is_not_a_duplicate() {
    let mut s = collector("");
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(0), 1);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.11", t(1), 2); // another host
    raise_new(&mut s, "ssh-brute-force", "10.0.0.2", "192.168.1.10", t(2), 3); // another source
    raise_new(&mut s, "login-spray", "10.0.0.1", "192.168.1.10", t(3), 4); // another rule
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(4), 5); // a duplicate
    s.finish();
    assert_eq!(written(&s), [1, 2, 3, 4]);
    let sums = s.summaries();
    assert_eq!(sums.len(), 1);
    assert_eq!((sums[0].first, sums[0].suppressed), (AlertId(1), 1));
}

#[test]
fn a_rule_dedup_interval_overrides_the_policy_and_zero_writes_every_alert() {
    let mut s = collector("dedup = \"10m\"");
    for (i, at) in [0, 30, 59, 60, 299, 301, 599, 600].into_iter().enumerate() {
        let n = i as u128;
        raise_new(&mut s, "login-spray", "10.0.0.1", "192.168.1.10", t(at), 100 + n); // 1 min
        raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(at), 200 + n); // 10 min
        raise_new(&mut s, "port-scan", "10.0.0.1", "192.168.1.10", t_ms(at * 1_000 + 2), 300 + n); // none
    }
    s.finish();
    let of = |rule: &str| -> Vec<Nanos> { s.alerts_of(rule).iter().map(|a| a.ts).collect() };
    assert_eq!(of("login-spray"), [t(0), t(60), t(299), t(599)]);
    assert_eq!(of("ssh-brute-force"), [t(0), t(600)]);
    assert_eq!(of("port-scan").len(), 8, "no dedup; 3 per minute is not reached");
    let mut sums: Vec<(Nanos, u64)> = s.summaries().iter().map(|d| (d.first_ts, d.suppressed)).collect();
    sums.sort();
    // login-spray: 30 s and 59 s after 0 s, 301 s after 299 s, 600 s after 599 s; ssh: six
    // after 0 s.
    assert_eq!(sums, [(t(0), 2), (t(0), 6), (t(299), 1), (t(599), 1)]);
    assert_every_alert_accounted_for(&s);
}

#[test]
fn an_interval_that_ended_before_a_watermark_closed_it_reports_its_duplicates_before_the_next_alert() {
    // The next alert of the key comes before any watermark has passed the end of its
    // interval (a slow worker): the interval's duplicates must not be lost.
    let mut s = collector("");
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(0), 1);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(100), 2);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(200), 3);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(400), 4);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(500), 5);
    s.finish();
    let order: Vec<String> = s
        .out
        .iter()
        .map(|o| match o {
            CentralOutput::Alert(a) => format!("alert {}", a.id.0),
            CentralOutput::Suppressed(d) => {
                format!("{} duplicates of {} until {}", d.suppressed, d.first.0, d.until)
            }
        })
        .collect();
    assert_eq!(
        order,
        [
            "alert 1".to_string(),
            format!("2 duplicates of 1 until {}", t(300)),
            "alert 4".to_string(),
            format!("1 duplicates of 4 until {}", t(700)),
        ]
    );
    assert_eq!(counts(&s, "ssh-brute-force"), (5, 2, 3, 0, 0, 0));
}

#[test]
fn the_duplicate_record_names_the_rule_the_key_the_first_alert_and_the_count() {
    let mut s = collector("");
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(0), 0xabc);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.10", t(10), 0xabd);
    s.finish();
    let sums = s.summaries();
    let json = serde_json::to_value(DedupJson { summary: &sums[0], rules: &s.rules, sensor: "s1" })
        .expect("serialises");
    assert_eq!(json["type"], "alert_suppressed");
    assert_eq!(json["sensor"], "s1");
    assert_eq!(json["rule"], "ssh-brute-force");
    assert_eq!(json["first_alert"], AlertId(0xabc).to_string());
    assert_eq!(json["suppressed"], 1);
    let key = json["key"].to_string();
    assert!(key.contains("10.0.0.1") && key.contains("192.168.1.10"), "{key}");
    assert!(json["until"].as_str().is_some_and(|u| u.starts_with("2026-01-01T00:05:00")), "{json}");
}

const SUPPRESS: &str = r#"
[[suppress]]
rules = ["ssh-brute-force"]
src = ["10.9.0.0/16"]

[[suppress]]
dst = ["192.168.50.0/24", "2001:db8:50::/48"]

[[suppress]]
rules = ["port-scan", "login-spray"]
src = ["10.8.0.0/16"]
dst = ["192.168.1.0/24"]
"#;

#[test]
fn suppression_lists_drop_alerts_by_rule_and_source_and_destination_prefix() {
    let mut s = collector(SUPPRESS);
    let cases: [(&str, &str, &str, bool); 11] = [
        // Entry 1: that rule from that source prefix, to anywhere.
        ("ssh-brute-force", "10.9.1.1", "192.168.7.7", true),
        ("ssh-brute-force", "10.9.255.254", "172.16.0.1", true),
        ("port-scan", "10.9.1.1", "192.168.7.7", false),
        ("ssh-brute-force", "10.10.1.1", "192.168.7.7", false),
        // Entry 2: any rule, to those destination prefixes (IPv4 and IPv6).
        ("login-spray", "10.0.0.1", "192.168.50.9", true),
        ("ssh-brute-force", "2001:db8:1::1", "2001:db8:50:7::1", true),
        ("ssh-brute-force", "2001:db8:1::1", "2001:db8:51::1", false),
        // Entry 3: both prefixes must match.
        ("port-scan", "10.8.3.3", "192.168.1.20", true),
        ("login-spray", "10.8.3.4", "192.168.1.21", true),
        ("port-scan", "10.8.3.3", "192.168.2.20", false),
        ("port-scan", "10.7.3.3", "192.168.1.20", false),
    ];
    for (n, (rule, src, dst, _)) in cases.iter().enumerate() {
        raise_new(&mut s, rule, src, dst, t(n as u64 * 61), n as u128);
    }
    s.finish();
    let want: Vec<u128> = (0..cases.len()).filter(|&n| !cases[n].3).map(|n| n as u128).collect();
    assert_eq!(written(&s), want);
    assert_eq!(counts(&s, "ssh-brute-force"), (5, 2, 0, 3, 0, 0));
    assert_eq!(counts(&s, "port-scan"), (4, 3, 0, 1, 0, 0));
    assert_eq!(counts(&s, "login-spray"), (2, 0, 0, 2, 0, 0));
    assert!(s.summaries().is_empty(), "suppressed alerts are no duplicates and open no interval");
    assert_every_alert_accounted_for(&s);
}

#[test]
fn a_suppressed_alert_does_not_open_a_dedup_interval_for_its_key() {
    // Suppression is by rule and addresses; an IPv6 key suppressed by destination, then the
    // same rule and source to another destination: written, and its own duplicate counted.
    let mut s = collector(SUPPRESS);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.50.1", t(0), 1);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.50.1", t(1), 2);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.60.1", t(2), 3);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.60.1", t(3), 4);
    s.finish();
    assert_eq!(written(&s), [3]);
    assert_eq!(counts(&s, "ssh-brute-force"), (4, 1, 1, 2, 0, 0));
    assert_eq!(s.summaries().iter().map(|d| (d.first, d.suppressed)).collect::<Vec<_>>(), [(AlertId(3), 1)]);
}

#[test]
fn a_rule_rate_limit_writes_that_many_alerts_per_minute_of_event_time_and_counts_the_rest() {
    let mut s = collector("");
    // port-scan: 3 per minute, no dedup. Five keys in minute 0, four in minute 1, one in 2.
    let mut n = 0;
    for at in [0, 10, 20, 30, 59, 60, 61, 62, 119, 120] {
        n += 1;
        raise_new(&mut s, "port-scan", &format!("10.0.0.{n}"), "192.168.1.1", t(at), n);
        // Another rule at the same moments is not limited by port-scan's budget.
        raise_new(&mut s, "ssh-brute-force", &format!("10.0.0.{n}"), "192.168.1.1", t(at), 1_000 + n);
    }
    s.finish();
    let of =
        |rule: &str| -> Vec<u64> { s.alerts_of(rule).iter().map(|a| a.ts.0 / 1_000_000_000 - T0).collect() };
    assert_eq!(of("port-scan"), [0, 10, 20, 60, 61, 62, 120]);
    assert_eq!(of("ssh-brute-force").len(), 10);
    assert_eq!(counts(&s, "port-scan"), (10, 7, 0, 0, 3, 0));
    assert_every_alert_accounted_for(&s);
}

#[test]
fn duplicates_do_not_use_up_the_rate_limit_and_limited_alerts_open_no_dedup_interval() {
    let mut s = collector("");
    // login-spray: dedup 1 min, 2 per minute.
    let key =
        |s: &mut Sensor, dst: &str, at: u64, n: u128| raise_new(s, "login-spray", "10.0.0.1", dst, t(at), n);
    key(&mut s, "192.168.1.1", 0, 1); // written
    key(&mut s, "192.168.1.1", 1, 2); // duplicate: does not count against the 2
    key(&mut s, "192.168.1.2", 2, 3); // written
    key(&mut s, "192.168.1.3", 3, 4); // rate limited
    key(&mut s, "192.168.1.3", 4, 5); // rate limited again: the dropped alert opened no interval
    key(&mut s, "192.168.1.3", 61, 6); // next minute: written
    s.finish();
    assert_eq!(written(&s), [1, 3, 6]);
    assert_eq!(counts(&s, "login-spray"), (6, 3, 1, 0, 2, 0));
}

#[test]
fn an_alert_out_of_time_order_counts_in_the_current_rate_window_and_does_not_reset_it() {
    let mut s = collector("");
    for (n, at) in [(1, 60), (2, 61), (3, 62)] {
        raise_new(&mut s, "port-scan", &format!("10.0.0.{n}"), "192.168.1.1", t(at), n);
    }
    watermark(&mut s, t(62));
    // After the watermark, a late alert of the previous minute (from a packet within the
    // lateness), then one more of the current minute: the budget of minute 1 is spent; the
    // late alert does not reopen minute 0's.
    raise_new(&mut s, "port-scan", "10.0.0.4", "192.168.1.1", t(59), 4);
    raise_new(&mut s, "port-scan", "10.0.0.5", "192.168.1.1", t(63), 5);
    s.finish();
    assert_eq!(written(&s), [1, 2, 3]);
    assert_eq!(counts(&s, "port-scan"), (5, 3, 0, 0, 2, 0));
}

/// An absence alert of `syslog-silent` about `src`, whose silence reached the timeout at `ts`.
fn silence(s: &Sensor, src: &str, ts: Nanos, n: u128) -> Alert {
    let key = KeyValue { src: ip(src), ..KeyValue::default() };
    Alert::for_key(AlertId(n), ts, s.id("syslog-silent"), key, AlertDetail::Absence { last_seen: None })
}

#[test]
fn absence_alerts_handed_over_between_two_watermarks_meet_the_policy_in_event_time_order() {
    // Workers raise absence alerts at clock ticks (or packets) and hand over a tick's alerts
    // in worker order; where ticks fall and which worker owns a sender depend on the worker
    // count. The policy must not depend on that order.
    let run = |order: &[usize]| {
        let mut s = collector("");
        let alerts: Vec<Alert> = (0..6u64)
            .map(|i| silence(&s, &format!("10.0.0.{i}"), t(10 + i % 3), u128::from(100 - i)))
            .collect();
        for &i in order {
            raise(&mut s, alerts[i]);
        }
        // The dedup interval of a sender opens with its earliest silence, whatever came first.
        let a = silence(&s, "10.0.0.9", t(60), 7);
        raise(&mut s, a);
        let a = silence(&s, "10.0.0.9", t(55), 8);
        raise(&mut s, a);
        watermark(&mut s, t(70));
        let at_watermark = written(&s);
        s.finish();
        (at_watermark, written(&s), s.summaries())
    };
    let (at_watermark, ids, sums) = run(&[0, 1, 2, 3, 4, 5]);
    // 3 per minute, in order of time, then id: the two of 10 s (ids 97 and 100), then the
    // first of 11 s (96 before 99); the next minute, the silence at 60 s.
    assert_eq!(ids, [97, 100, 96, 7]);
    assert_eq!(at_watermark, ids, "written at the watermark");
    // 55 s falls in the first minute, whose budget is spent: rate-limited, not a duplicate.
    assert!(sums.is_empty(), "{sums:?}");
    for order in [[5, 4, 3, 2, 1, 0], [2, 5, 0, 3, 1, 4]] {
        assert_eq!(run(&order), (ids.clone(), ids.clone(), sums.clone()), "handed over as {order:?}");
    }
    let mut s = collector("");
    let a = silence(&s, "10.0.0.9", t(130), 7);
    raise(&mut s, a);
    let a = silence(&s, "10.0.0.9", t(125), 8);
    raise(&mut s, a);
    s.finish();
    assert_eq!(written(&s), [8]);
    let first = s.summaries().iter().map(|d| (d.first, d.first_ts, d.suppressed)).collect::<Vec<_>>();
    assert_eq!(first, [(AlertId(8), t(125), 1)], "the earliest silence opened the interval");
}

#[test]
fn the_global_rate_limit_caps_alerts_per_second_over_all_rules_and_counts_the_drops_per_rule() {
    let mut s = collector("max_alerts_per_second = 3\ndedup = \"0s\"");
    // Second 10: two port-scan and one ssh alert use up the second; then two more port-scan
    // and one login-spray are dropped, counted against their own rules.
    raise_new(&mut s, "port-scan", "10.0.0.1", "192.168.1.1", t_ms(10_000), 1);
    raise_new(&mut s, "ssh-brute-force", "10.0.0.1", "192.168.1.1", t_ms(10_100), 2);
    raise_new(&mut s, "port-scan", "10.0.0.2", "192.168.1.1", t_ms(10_200), 3);
    raise_new(&mut s, "port-scan", "10.0.0.3", "192.168.1.1", t_ms(10_300), 4);
    raise_new(&mut s, "login-spray", "10.0.0.3", "192.168.1.1", t_ms(10_400), 5);
    raise_new(&mut s, "port-scan", "10.0.0.4", "192.168.1.1", t_ms(10_999), 6);
    // Second 11 (same minute): the globally dropped alerts did not use up port-scan's own
    // budget of 3 per minute, so it has one left.
    raise_new(&mut s, "port-scan", "10.0.0.5", "192.168.1.1", t(11), 7);
    raise_new(&mut s, "port-scan", "10.0.0.6", "192.168.1.1", t_ms(11_001), 8);
    raise_new(&mut s, "login-spray", "10.0.0.3", "192.168.1.1", t_ms(11_002), 9);
    s.finish();
    assert_eq!(written(&s), [1, 2, 3, 7, 9]);
    assert_eq!(counts(&s, "port-scan"), (6, 3, 0, 0, 1, 2));
    assert_eq!(counts(&s, "login-spray"), (2, 1, 0, 0, 0, 1));
    assert_eq!(counts(&s, "ssh-brute-force"), (1, 1, 0, 0, 0, 0));
    assert_every_alert_accounted_for(&s);
}

/// A deterministic stream of alerts over the three rules, many keys and suppressed prefixes.
fn mixed_alerts(s: &Sensor, count: u64) -> Vec<Alert> {
    let names = ["ssh-brute-force", "port-scan", "login-spray"];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut at = 0u64; // milliseconds
    (0..count)
        .map(|n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            at += x % 700;
            let rule = names[(x >> 8) as usize % 3];
            let src = format!("10.{}.0.{}", [0, 8, 9][(x >> 12) as usize % 3], (x >> 16) % 6);
            let dst = format!("192.168.{}.{}", [1, 50, 2][(x >> 20) as usize % 3], (x >> 24) % 3);
            alert(s, rule, &src, &dst, t_ms(at), u128::from(n))
        })
        .collect()
}

#[test]
fn every_alert_raised_is_written_or_counted_once_as_deduplicated_suppressed_or_rate_limited() {
    let mut s = collector(&format!("max_alerts_per_second = 2\n{SUPPRESS}"));
    let alerts = mixed_alerts(&s, 5_000);
    for (i, a) in alerts.iter().enumerate() {
        raise(&mut s, *a);
        if i % 50 == 49 {
            watermark(&mut s, a.ts);
        }
    }
    s.finish();
    let p: Vec<PolicyStats> = s.central.stats().policy;
    let total = |f: fn(&PolicyStats) -> u64| p.iter().map(f).sum::<u64>();
    assert_eq!(total(|p| p.raised), 5_000);
    for (name, f) in [
        ("deduplicated", (|p: &PolicyStats| p.deduplicated) as fn(&PolicyStats) -> u64),
        ("suppressed", |p| p.suppressed),
        ("rate_limited", |p| p.rate_limited),
        ("global_limited", |p| p.global_limited),
    ] {
        assert!(total(f) > 0, "the mix exercises {name}: {p:?}");
    }
    assert_every_alert_accounted_for(&s);
    // Every duplicate is in exactly one summary, each of an alert that was written.
    let summed: u64 = s.summaries().iter().map(|d| d.suppressed).sum();
    assert_eq!(summed, total(|p| p.deduplicated));
    let ids: std::collections::BTreeSet<AlertId> = s.alerts().iter().map(|a| a.id).collect();
    assert!(s.summaries().iter().all(|d| ids.contains(&d.first)));
    // No second written in event time has more than 2 alerts.
    let mut per_second = std::collections::BTreeMap::new();
    for a in s.alerts() {
        *per_second.entry(a.ts.0 / 1_000_000_000).or_insert(0) += 1;
    }
    assert!(per_second.values().all(|&n| n <= 2));
}

/// Syslog from a sender.
fn syslog(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 514, ts)
}

#[test]
fn worker_alerts_meet_the_same_policy_whatever_the_worker_count() {
    // Absence alerts raised in the workers that own the senders: 24 senders of three /24s go
    // quiet at different times, are heard once (their next silence comes within the dedup
    // interval), come back and go quiet again. One /24 is suppressed, the
    // rule's own rate limit is 5 per minute and dedup is 3 min.
    let r = rules(
        "[[absence]]\nname = \"syslog-silent\"\nfilter = \"udp dst port 514\"\ntimeout = \"60s\"\n\
         dedup = \"3m\"\nrate_limit = 5\n",
    );
    let cfg = "[[suppress]]\nrules = [\"syslog-silent\"]\nsrc = [\"10.0.9.0/24\"]\n";
    let run = |workers: usize| {
        let mut s = Sensor::new(&r, &Setup { workers, block: 5, policy: policy(cfg), ..Setup::default() });
        for at in (0..=1_500).step_by(5) {
            let mut batch = vec![syslog("10.0.7.100", t(at))];
            for i in 0..24u64 {
                let src = format!("10.0.{}.{}", 7 + i % 3, i + 1);
                let heard = at <= 30 + 10 * i || at == 150 + 10 * i || at == 1_000;
                if heard || (300 + 10 * i..=400 + 10 * i).contains(&at) {
                    batch.push(syslog(&src, t(at)));
                }
            }
            s.batch(&batch);
        }
        s.finish();
        let alerts: Vec<(Nanos, IpAddress, u128)> =
            s.alerts().iter().map(|a| (a.ts, a.src, a.id.0)).collect();
        let sums: Vec<(IpAddress, u64)> = s.summaries().iter().map(|d| (d.key.src, d.suppressed)).collect();
        assert_every_alert_accounted_for(&s);
        (alerts, sums, s.policy_stats("syslog-silent"))
    };
    let one = run(1);
    let p = &one.2;
    assert!(p.suppressed > 0 && p.deduplicated > 0 && p.rate_limited > 0 && p.alerted > 0, "{p:?}");
    assert!(one.0.iter().all(|a| !a.1.to_string().starts_with("10.0.9.")));
    for workers in 2..=4 {
        let mut many = run(workers);
        let mut sorted = one.clone();
        sorted.0.sort();
        many.0.sort();
        sorted.1.sort();
        many.1.sort();
        assert_eq!(many, sorted, "{workers} workers");
    }
}
