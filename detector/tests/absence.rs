//! Absence rules end to end: listed senders never heard, learned senders that go quiet, the
//! moment an absence alert names, workers that own the senders, and stable alert ids.

mod common;
use common::*;
use outpost_detector::absence::AbsenceStats;

/// Syslog from a sender.
fn syslog(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 514, ts)
}

/// Packets that are not syslog (they move the clock).
fn other(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 53, ts)
}

fn listed(senders: &[&str]) -> Arc<RuleSet> {
    let list: Vec<String> = senders.iter().map(|s| format!("\"{s}\"")).collect();
    rules(&format!(
        "[[absence]]\nname = \"syslog-silent\"\nfilter = \"udp dst port 514\"\ntimeout = \"60s\"\nexpected = [{}]\n",
        list.join(", ")
    ))
}

fn learned() -> Arc<RuleSet> {
    rules("[[absence]]\nname = \"syslog-silent\"\nfilter = \"udp dst port 514\"\ntimeout = \"60s\"\n")
}

fn last_seen(a: &Alert) -> Option<Nanos> {
    match a.detail {
        AlertDetail::Absence { last_seen } => last_seen,
        other => panic!("not an absence alert: {other:?}"),
    }
}

fn absence_stats(s: &Sensor) -> AbsenceStats {
    match s.worker_rule("syslog-silent") {
        RuleStats::Absence(a) => a,
        other => panic!("not an absence rule: {other:?}"),
    }
}

/// `(sender, ts, last_seen)` of the absence alerts, sorted.
fn silences(s: &Sensor) -> Vec<(IpAddress, Nanos, Option<Nanos>)> {
    let mut v: Vec<_> = s.alerts_of("syslog-silent").iter().map(|a| (a.src, a.ts, last_seen(a))).collect();
    v.sort();
    v
}

/// Every `step` seconds from `from` to `to` (inclusive), `make(at)`.
fn every(from: u64, to: u64, step: u64, make: impl Fn(Nanos) -> In) -> Vec<In> {
    (from..=to).step_by(step as usize).map(|at| make(t(at))).collect()
}

#[test]
fn a_listed_sender_never_heard_alerts_once_the_timeout_has_passed_since_the_start() {
    let r = listed(&["10.0.0.1", "10.0.0.2"]);
    let mut s = Sensor::single(&r);
    // 10.0.0.2 sends every 10 s from the start; 10.0.0.7 (not listed) sends once; 10.0.0.1 never.
    s.batch(&[syslog("10.0.0.2", t(0)), syslog("10.0.0.7", t(5))]);
    s.each(every(10, 600, 10, |at| syslog("10.0.0.2", at)));
    s.finish();
    assert_eq!(silences(&s), [(ip("10.0.0.1"), t(60), None)], "one alert, a minute after the input began");
    let a = s.alerts_of("syslog-silent")[0];
    assert_eq!(a.dst, IpAddress::UNSPECIFIED, "an absence has no peer");
    let st = absence_stats(&s);
    assert_eq!((st.silences, st.keys), (1, 2), "{st:?}");
    assert_eq!(st.matched, 62, "61 from the listed sender, 1 from the other: {st:?}");
}

#[test]
fn a_listed_sender_heard_in_time_never_alerts_and_one_that_stops_alerts_a_timeout_after_its_last_packet() {
    let r = listed(&["10.0.0.1", "10.0.0.2"]);
    let mut s = Sensor::single(&r);
    // .1 every 59 s throughout; .2 every 30 s until 180 s, then nothing.
    let mut inputs = every(0, 1_000, 59, |at| syslog("10.0.0.1", at));
    inputs.extend(every(0, 200, 30, |at| syslog("10.0.0.2", at)));
    inputs.sort_by_key(|i| match i {
        In::Packet(m) => m.ts,
        _ => Nanos::ZERO,
    });
    s.each(inputs);
    s.finish();
    assert_eq!(silences(&s), [(ip("10.0.0.2"), t(240), Some(t(180)))]);
}

#[test]
fn a_learned_sender_that_goes_quiet_alerts_once_and_rearms_when_heard_again() {
    let r = learned();
    let mut s = Sensor::single(&r);
    let mut inputs = every(0, 100, 10, |at| syslog("10.0.0.9", at));
    // Silent from 100 s to 400 s (other traffic keeps the clock going), heard at 400 s and
    // 410 s, then silent again while 10.0.0.8 sends every 20 s from 1000 s on.
    inputs.extend(every(110, 390, 10, |at| other("10.0.0.5", at)));
    inputs.extend([syslog("10.0.0.9", t(400)), syslog("10.0.0.9", t(410))]);
    inputs.extend(every(1_000, 1_900, 20, |at| syslog("10.0.0.8", at)));
    s.each(inputs);
    s.finish();
    assert_eq!(
        silences(&s),
        [(ip("10.0.0.9"), t(160), Some(t(100))), (ip("10.0.0.9"), t(470), Some(t(410)))]
    );
    let st = absence_stats(&s);
    assert_eq!((st.silences, st.keys), (2, 2), "{st:?}");
    // 10.0.0.8 never paused long enough, so it never alerted.
    assert!(s.alerts_of("syslog-silent").iter().all(|a| a.src != ip("10.0.0.8")));
}

#[test]
fn the_alert_names_the_moment_the_silence_reached_the_timeout_not_when_it_was_noticed() {
    let r = learned();
    let mut s = Sensor::single(&r);
    s.batch(&[syslog("10.0.0.9", t_ms(100_250))]);
    // Nothing for an hour, then a packet of someone else: the silence is noticed at 3700 s.
    s.batch(&[other("10.0.0.5", t(3_700))]);
    let alerts = s.alerts_of("syslog-silent");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].ts, t_ms(160_250), "last packet + 60 s, to the nanosecond");
    assert_eq!(last_seen(&alerts[0]), Some(t_ms(100_250)));
    // Heard again later: the silence that alerted is over, the next one is judged afresh.
    s.batch(&[syslog("10.0.0.9", t(3_800)), other("10.0.0.5", t(3_859))]);
    assert_eq!(s.alerts_of("syslog-silent").len(), 1);
    s.batch(&[other("10.0.0.5", t(3_860))]);
    assert_eq!(s.alerts_of("syslog-silent").last().map(|a| a.ts), Some(t(3_860)));
}

/// The policy without dedup: every alert the rule raises is written.
fn no_dedup() -> Setup {
    Setup { policy: policy("dedup = \"0s\""), ..Setup::default() }
}

#[test]
fn a_silence_ended_by_a_packet_before_any_tick_noticed_it_still_alerts() {
    // Within one batch there is no clock tick between two packets: a sender silent for more
    // than the timeout and heard again in the same batch was still silent that long.
    let r = learned();
    let mut s = Sensor::new(&r, &no_dedup());
    s.batch(&[syslog("10.0.0.9", t(100))]);
    s.batch(&[other("10.0.0.5", t(150)), syslog("10.0.0.9", t(170)), syslog("10.0.0.9", t(300))]);
    s.batch(&[syslog("10.0.0.9", t(310))]);
    assert_eq!(
        silences(&s),
        [(ip("10.0.0.9"), t(160), Some(t(100))), (ip("10.0.0.9"), t(230), Some(t(170)))]
    );
    // A gap of exactly the timeout is a silence of the timeout, as when a tick sees it.
    s.batch(&[syslog("10.0.0.9", t(370))]);
    assert_eq!(silences(&s).len(), 3);
    assert_eq!(silences(&s)[2], (ip("10.0.0.9"), t(370), Some(t(310))));
    assert_eq!(absence_stats(&s).silences, 3);
}

#[test]
fn a_tick_exactly_at_the_deadline_reports_the_silence_as_a_packet_then_would() {
    let r = learned();
    // The sender's last packet at 100.25 s; the silence reaches the timeout at 160.25 s.
    let run = |last: In| {
        let mut s = Sensor::new(&r, &no_dedup());
        s.batch(&[syslog("10.0.0.9", t_ms(100_250))]);
        s.batch(&[other("10.0.0.5", t_ms(160_249))]);
        assert!(silences(&s).is_empty(), "a millisecond short of the timeout is no silence");
        s.batch(&[last]);
        let got = silences(&s);
        s.finish();
        assert_eq!(silences(&s), got, "nothing more at the end of the input");
        got
    };
    let want = [(ip("10.0.0.9"), t_ms(160_250), Some(t_ms(100_250)))];
    assert_eq!(run(other("10.0.0.5", t_ms(160_250))), want, "noticed by the clock tick at the deadline");
    assert_eq!(
        run(syslog("10.0.0.9", t_ms(160_250))),
        want,
        "noticed by the sender's packet at the deadline"
    );
}

#[test]
fn a_second_silence_within_the_dedup_interval_is_counted_as_a_duplicate_not_lost() {
    // With the default policy (dedup 5 min per rule and sender), the later silences of the
    // same sender within 5 min of the first alert are not written but counted and summarised.
    let r = learned();
    let mut s = Sensor::single(&r);
    s.batch(&[syslog("10.0.0.9", t(100))]);
    s.batch(&[other("10.0.0.5", t(150)), syslog("10.0.0.9", t(170)), syslog("10.0.0.9", t(300))]);
    s.batch(&[other("10.0.0.5", t(500))]);
    s.finish();
    assert_eq!(absence_stats(&s).silences, 3, "at 160 s, 230 s and 360 s");
    assert_eq!(silences(&s), [(ip("10.0.0.9"), t(160), Some(t(100)))]);
    let first = s.alerts_of("syslog-silent")[0];
    let sums = s.summaries();
    assert_eq!(sums.len(), 1, "{sums:?}");
    assert_eq!(
        (sums[0].first, sums[0].first_ts, sums[0].until, sums[0].suppressed),
        (first.id, t(160), t(460), 2)
    );
    let p = s.policy_stats("syslog-silent");
    assert_eq!((p.raised, p.alerted, p.deduplicated), (3, 1, 2), "{p:?}");
}

#[test]
fn listed_senders_are_watched_by_the_worker_that_owns_them_whatever_the_worker_count() {
    let senders: Vec<String> = (1..=16).map(|i| format!("10.0.3.{i}")).collect();
    let names: Vec<&str> = senders.iter().map(String::as_str).collect();
    let r = listed(&names);
    let (heard, silent) = names.split_at(8);
    for workers in 1..=5 {
        let mut s = Sensor::new(&r, &Setup { workers, block: 4, ..Setup::default() });
        if workers == 4 {
            let owners: BTreeSet<usize> = silent.iter().map(|a| s.owner(&ip(a))).collect();
            assert!(owners.len() >= 3, "the silent senders belong to several workers: {owners:?}");
        }
        // The input begins with one packet at 0 s; then the heard senders every 20 s.
        s.batch(&[other("10.9.9.9", t(0))]);
        for at in (10..=600).step_by(20) {
            s.batch(&heard.iter().map(|a| syslog(a, t(at))).collect::<Vec<_>>());
        }
        s.finish();
        let want: Vec<(IpAddress, Nanos, Option<Nanos>)> =
            silent.iter().map(|a| (ip(a), t(60), None)).collect();
        let mut want = want;
        want.sort();
        assert_eq!(silences(&s), want, "{workers} workers");
        let st = absence_stats(&s);
        assert_eq!((st.silences, st.keys, st.matched), (8, 16, 8 * 30), "{workers} workers: {st:?}");
    }
}

/// Eight learned senders that go quiet at different times, and one that does not, over
/// `workers` workers, with every alert written (no dedup); returns the absence alerts `(ts, sender, id)`.
fn learned_run(workers: usize, block: usize, run_key: u64) -> Vec<(Nanos, IpAddress, u128)> {
    let r = learned();
    let mut s = Sensor::new(&r, &Setup { workers, block, run_key, ..no_dedup() });
    for at in (0..=900).step_by(7) {
        let mut batch = vec![syslog("10.0.4.100", t(at))];
        for i in 0..8u64 {
            // Sender i stops after 100 + 50·i s, comes back at 500 s for a minute, then stops.
            let active = at <= 100 + 50 * i || (500..=560).contains(&at);
            if active {
                batch.push(syslog(&format!("10.0.4.{}", i + 1), t(at)));
            }
        }
        s.batch(&batch);
    }
    s.finish();
    let mut v: Vec<_> = s.alerts_of("syslog-silent").iter().map(|a| (a.ts, a.src, a.id.0)).collect();
    v.sort();
    v
}

#[test]
fn learned_senders_spread_over_workers_each_alert_once_per_silence() {
    let got = learned_run(4, 256, 1);
    let mut want = Vec::new();
    for i in 0..8u64 {
        let stop = (100 + 50 * i) / 7 * 7; // the last multiple of 7 s it sent at
        if stop + 60 <= 504 {
            // Silent for the timeout before it came back at 504 s.
            want.push((t(stop + 60), ip(&format!("10.0.4.{}", i + 1))));
        }
        want.push((t(560 / 7 * 7 + 60), ip(&format!("10.0.4.{}", i + 1))));
    }
    want.sort();
    assert_eq!(got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(), want);
}

#[test]
fn absence_alert_ids_are_the_same_for_every_run_and_worker_count() {
    let reference = learned_run(1, 256, 1);
    assert!(reference.len() > 8);
    assert_eq!(learned_run(1, 256, 1), reference, "the same run twice");
    for (workers, block) in [(1, 3), (2, 5), (3, 256), (4, 2), (6, 1)] {
        assert_eq!(learned_run(workers, block, 1), reference, "{workers} workers, blocks of {block}");
    }
    let other = learned_run(1, 256, 2);
    assert!(other.iter().zip(&reference).all(|(a, b)| (a.0, a.1) == (b.0, b.1) && a.2 != b.2));
}

#[test]
fn learned_senders_beyond_max_keys_are_not_followed_and_are_counted() {
    let r = rules(
        "[[absence]]\nname = \"syslog-silent\"\nfilter = \"udp dst port 514\"\ntimeout = \"60s\"\nmax_keys = 2\n",
    );
    let mut s = Sensor::single(&r);
    s.batch(&[syslog("10.0.0.1", t(0)), syslog("10.0.0.2", t(1)), syslog("10.0.0.3", t(2))]);
    s.batch(&[other("10.0.0.5", t(300))]);
    s.finish();
    let st = absence_stats(&s);
    assert_eq!((st.keys, st.dropped, st.silences), (2, 1, 2), "{st:?}");
    assert_eq!(silences(&s).iter().map(|x| x.0).collect::<Vec<_>>(), [ip("10.0.0.1"), ip("10.0.0.2")]);
}

#[test]
fn a_listed_sender_never_heard_alerts_at_the_same_moment_whatever_the_worker_count() {
    let r = listed(&["10.0.0.1"]);
    let run = |workers: usize| {
        let mut s = Sensor::new(&r, &Setup { workers, ..Setup::default() });
        // The first batch spans 30 s and its sources belong to other workers than 10.0.0.1's.
        let owner = s.owner(&ip("10.0.0.1"));
        // (With one worker every source is 10.0.0.1's worker's.)
        let others: Vec<String> = (1..=200)
            .map(|i| format!("10.0.5.{i}"))
            .filter(|a| workers == 1 || s.owner(&ip(a)) != owner)
            .take(3)
            .collect();
        s.batch(&others.iter().enumerate().map(|(i, a)| other(a, t(15 * i as u64))).collect::<Vec<_>>());
        s.batch(&[other("10.0.5.250", t(600))]);
        s.finish();
        silences(&s)
    };
    assert_eq!(run(1), [(ip("10.0.0.1"), t(60), None)]);
    for workers in 2..=4 {
        assert_eq!(run(workers), run(1), "{workers} workers");
    }
}
