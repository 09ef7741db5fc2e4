//! Sequence rules end to end: steps of alerts (of flow and packet rules) and flow records, in
//! order, for one key, within a time limit; what does not complete a sequence; bounded, expiring
//! state; stable alert ids.

mod common;
use common::*;
use outpost_detector::sequence::SequenceStats;

/// The default ruleset's shape: three short completed SSH connections in five minutes are a
/// brute force (threshold lowered from 10 to keep inputs small); a brute force and then a long
/// session from the same source to the same host within the hour is a compromise.
const BRUTE_FORCE_THEN_SESSION: &str = r#"
[[threshold]]
name = "ssh-brute-force"
input = "flows"
filter = "tcp dst port 22"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3

[[sequence]]
name = "brute-force-then-session"
key = ["src_ip", "dst_ip"]
within = "1h"
steps = [
  { alerts = ["ssh-brute-force"] },
  { filter = "tcp", flow = { handshake = true, min_duration = "60s" } },
]
"#;

const ATTACKER: &str = "203.0.113.5";
const SERVER: &str = "192.168.1.10";

/// Three short SSH logins from `src` to `dst` at `at`, `at + 10 s` and `at + 20 s` (2 s each):
/// the third crosses the threshold, at `at + 22 s`.
fn brute_force(first_id: u64, src: &str, dst: &str, at: u64) -> Vec<In> {
    (0..3).map(|i| tcp_session(first_id + i, src, dst, 22, t(at + 10 * i), 2, 3_000)).collect()
}

fn sequence_stats(s: &Sensor, rule: &str) -> SequenceStats {
    match s.central_rule(rule) {
        CentralRuleStats::Sequence(q) => q,
        other => panic!("{rule} is no sequence: {other:?}"),
    }
}

fn started(a: &Alert) -> Nanos {
    match a.detail {
        AlertDetail::Sequence { started } => started,
        other => panic!("not a sequence alert: {other:?}"),
    }
}

#[test]
fn brute_force_then_long_session_alerts_once_within_the_hour() {
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    let bf = s.alerts_of("ssh-brute-force");
    assert_eq!(bf.len(), 1, "the brute force itself alerts: {bf:?}");
    assert_eq!(bf[0].ts, t(22));
    // A 20-minute session 10 minutes later, then a second one: the sequence completed with the
    // first, and a completed key starts over.
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(600), 1_200, 90_000)]);
    s.batch(&[tcp_session(11, ATTACKER, SERVER, 22, t(2_000), 600, 90_000)]);
    s.finish();
    let seq = s.alerts_of("brute-force-then-session");
    assert_eq!(seq.len(), 1, "{seq:?}");
    let a = seq[0];
    assert_eq!((a.src, a.dst, a.dst_port), (ip(ATTACKER), ip(SERVER), 22));
    assert_eq!(a.ts, t(1_800), "at the step that completed it: the session's end");
    assert_eq!(started(&a), t(22), "started: when the brute force alert came");
    assert_eq!(a.flow_id, Some(10));
    let q = sequence_stats(&s, "brute-force-then-session");
    assert_eq!((q.completed, q.steps, q.keys), (1, 2, 0), "{q:?}");
    // Raised once, not raised and then deduplicated.
    assert_eq!(s.policy_stats("brute-force-then-session").raised, 1);
}

#[test]
fn a_session_before_the_brute_force_does_not_complete_the_sequence() {
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(0), 300, 90_000)]);
    s.each(brute_force(1, ATTACKER, SERVER, 400));
    s.finish();
    assert_eq!(s.alerts_of("ssh-brute-force").len(), 1);
    assert!(s.alerts_of("brute-force-then-session").is_empty());
    let q = sequence_stats(&s, "brute-force-then-session");
    assert_eq!((q.steps, q.completed, q.keys), (1, 0, 1), "only the first step was taken: {q:?}");
}

#[test]
fn a_session_that_ended_before_the_brute_force_does_not_count_when_its_record_comes_later() {
    // Flow records reach the collector after their flow ends (idle timeout, linger), so a
    // session's record can follow an alert raised after the session was over.
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 100)); // alert at 122
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(0), 115, 90_000)]); // ended at 115
    s.finish();
    assert_eq!(s.alerts_of("ssh-brute-force").len(), 1);
    assert!(s.alerts_of("brute-force-then-session").is_empty(), "{:?}", s.alerts());
}

#[test]
fn a_session_after_the_hour_does_not_complete_the_sequence_and_one_at_the_hour_does() {
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    let late = "203.0.113.6";
    s.batch(&[brute_force(1, ATTACKER, SERVER, 0), brute_force(4, late, SERVER, 0)].concat());
    // Both brute forces alert at 22 s; the sessions end at 22 s + 1 h and 1 s later.
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(2_000), 1_622, 90_000)]);
    s.batch(&[tcp_session(11, late, SERVER, 22, t(2_000), 1_623, 90_000)]);
    s.finish();
    let seq = s.alerts_of("brute-force-then-session");
    assert_eq!(seq.len(), 1, "{seq:?}");
    assert_eq!((seq[0].src, seq[0].ts), (ip(ATTACKER), t(3_622)));
    assert_eq!(started(&seq[0]), t(22));
}

#[test]
fn a_session_of_another_source_or_to_another_host_does_not_complete_the_sequence() {
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    s.batch(&[
        tcp_session(10, "203.0.113.99", SERVER, 22, t(100), 600, 90_000),
        tcp_session(11, ATTACKER, "192.168.1.11", 22, t(100), 600, 90_000),
    ]);
    assert!(s.alerts_of("brute-force-then-session").is_empty());
    // The key's own session still completes it afterwards.
    s.batch(&[tcp_session(12, ATTACKER, SERVER, 22, t(800), 600, 90_000)]);
    s.finish();
    let seq = s.alerts_of("brute-force-then-session");
    assert_eq!(seq.len(), 1);
    assert_eq!((seq[0].src, seq[0].dst, seq[0].flow_id), (ip(ATTACKER), ip(SERVER), Some(12)));
}

#[test]
fn a_flow_step_needs_its_flow_conditions() {
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    // Too short (59 s); not completed (no SYN-ACK back); not TCP.
    let mut no_handshake = tcp_session(11, ATTACKER, SERVER, 22, t(200), 600, 90_000);
    if let In::Flow(f) = &mut no_handshake {
        f.rev.tcp_flags = 0x14; // RST-ACK
    }
    let mut udp_flow = tcp_session(12, ATTACKER, SERVER, 53, t(300), 600, 90_000);
    if let In::Flow(f) = &mut udp_flow {
        f.proto = 17;
    }
    s.each([tcp_session(10, ATTACKER, SERVER, 22, t(100), 59, 90_000), no_handshake, udp_flow]);
    assert!(s.alerts_of("brute-force-then-session").is_empty(), "{:?}", s.alerts());
    s.batch(&[tcp_session(13, ATTACKER, SERVER, 22, t(1_000), 60, 90_000)]);
    s.finish();
    let seq = s.alerts_of("brute-force-then-session");
    assert_eq!(seq.len(), 1, "exactly 60 s is long enough");
    assert_eq!(seq[0].flow_id, Some(13));
}

#[test]
fn an_input_matching_two_steps_takes_one_step() {
    // Twice the same kind of step: one alert (or one flow) is not both.
    let r = rules(
        r#"
[[threshold]]
name = "ssh-brute-force"
input = "flows"
filter = "tcp dst port 22"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3

[[sequence]]
name = "brute-force-twice"
key = ["src_ip", "dst_ip"]
within = "1h"
steps = [ { alerts = ["ssh-brute-force"] }, { alerts = ["ssh-brute-force"] } ]

[[sequence]]
name = "two-long-sessions"
key = ["src_ip", "dst_ip"]
within = "1h"
steps = [ { filter = "tcp dst port 3389", flow = { min_duration = "60s" } },
          { filter = "tcp dst port 3389", flow = { min_duration = "60s" } } ]
"#,
    );
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 3389, t(100), 120, 90_000)]);
    assert!(s.alerts_of("brute-force-twice").is_empty(), "{:?}", s.alerts());
    assert!(s.alerts_of("two-long-sessions").is_empty(), "{:?}", s.alerts());
    // The second brute force (the threshold window has moved on) and the second session do.
    s.each(brute_force(4, ATTACKER, SERVER, 600));
    s.batch(&[tcp_session(11, ATTACKER, SERVER, 3389, t(700), 120, 90_000)]);
    s.finish();
    assert_eq!(s.alerts_of("ssh-brute-force").len(), 2);
    let twice = s.alerts_of("brute-force-twice");
    assert_eq!(twice.len(), 1);
    assert_eq!((started(&twice[0]), twice[0].ts), (t(22), t(622)));
    let sessions = s.alerts_of("two-long-sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!((started(&sessions[0]), sessions[0].ts), (t(220), t(820)));
}

/// A packet rule in the workers feeding a sequence in the collector.
const SWEEP_THEN_SESSION: &str = r#"
[[threshold]]
name = "ping-sweep"
filter = "icmp"
key = ["src_ip"]
aggregate = "distinct"
field = "dst_ip"
window = "60s"
threshold = 5

[[sequence]]
name = "sweep-then-session"
key = ["src_ip"]
within = "10m"
steps = [ { alerts = ["ping-sweep"] }, { filter = "tcp", flow = { handshake = true, min_duration = "60s" } } ]
"#;

/// An ICMP echo request.
fn echo(src: &str, dst: &str, ts: Nanos) -> In {
    match packet(src, dst, 1, 0, 0, ts) {
        In::Packet(mut m) => {
            m.icmp_type = 8;
            In::Packet(m)
        }
        other => other,
    }
}

/// Twelve sources each sweep five hosts (ICMP echo) at `10 s × i`; sources 0..6 then hold a
/// long session, sources 6..12 none; source 12 holds a session and sweeps afterwards.
fn sweeps_and_sessions() -> Vec<Vec<In>> {
    let src = |i: u64| format!("10.7.0.{}", i + 1);
    let mut batches = Vec::new();
    for i in 0..12u64 {
        batches.push(
            (0..5u64)
                .map(|h| echo(&src(i), &format!("10.8.0.{}", h + 1), t_ms(10_000 * i + 100 * h)))
                .collect(),
        );
    }
    batches.push(
        (0..6u64).map(|i| tcp_session(100 + i, &src(i), SERVER, 443, t(200 + i), 90, 50_000)).collect(),
    );
    batches.push(vec![tcp_session(200, &src(12), SERVER, 443, t(300), 90, 50_000)]);
    let late_sweep = (0..5u64).map(|h| echo(&src(12), &format!("10.8.0.{}", h + 1), t(400 + h))).collect();
    batches.push(late_sweep);
    batches
}

#[test]
fn a_packet_rule_alert_raised_in_a_worker_is_a_step_of_a_sequence() {
    let r = rules(SWEEP_THEN_SESSION);
    let mut s = Sensor::new(&r, &Setup { workers: 4, ..Setup::default() });
    let owners: std::collections::BTreeSet<usize> =
        (1..=13).map(|i| s.owner(&ip(&format!("10.7.0.{i}")))).collect();
    assert!(owners.len() >= 3, "the sources are spread over the workers: {owners:?}");
    for b in sweeps_and_sessions() {
        s.batch(&b);
    }
    s.finish();
    assert_eq!(s.alerts_of("ping-sweep").len(), 13);
    let mut got: Vec<(IpAddress, Nanos, Nanos)> =
        s.alerts_of("sweep-then-session").iter().map(|a| (a.src, started(a), a.ts)).collect();
    got.sort();
    let want: Vec<(IpAddress, Nanos, Nanos)> =
        (0..6u64).map(|i| (ip(&format!("10.7.0.{}", i + 1)), t_ms(10_000 * i + 400), t(290 + i))).collect();
    assert_eq!(got, want, "the sweepers that then held a session, with the sweep's time as start");
}

#[test]
fn sequence_alert_ids_are_the_same_for_every_run_and_worker_count() {
    let r = rules(SWEEP_THEN_SESSION);
    let run = |workers: usize, block: usize, run_key: u64| {
        let mut s = Sensor::new(&r, &Setup { workers, block, run_key, ..Setup::default() });
        for b in sweeps_and_sessions() {
            s.batch(&b);
        }
        s.finish();
        let mut ids: Vec<(Nanos, IpAddress, u128)> =
            s.alerts_of("sweep-then-session").iter().map(|a| (a.ts, a.src, a.id.0)).collect();
        ids.sort();
        ids
    };
    let reference = run(1, 256, 7);
    assert_eq!(reference.len(), 6);
    assert_eq!(run(1, 256, 7), reference, "the same run twice");
    // Small blocks put extra ticks between the frames (differently for each worker count), so
    // input positions differ between these runs; alert ids must not.
    for (workers, block) in [(1, 2), (2, 3), (3, 256), (4, 2), (5, 1)] {
        assert_eq!(run(workers, block, 7), reference, "{workers} workers, blocks of {block}");
    }
    let other_run = run(1, 256, 8);
    assert_eq!(other_run.len(), reference.len());
    assert!(
        other_run.iter().zip(&reference).all(|(a, b)| (a.0, a.1) == (b.0, b.1) && a.2 != b.2),
        "ids name the run"
    );
}

#[test]
fn progress_expires_after_the_time_limit_is_counted_and_bounded_by_max_keys() {
    let r = rules(
        r#"
[[sequence]]
name = "login-then-upload"
key = ["src_ip"]
within = "10m"
max_keys = 2
steps = [ { filter = "tcp dst port 22", flow = { max_duration = "30s" } },
          { filter = "tcp", flow = { min_bytes = 1000000 } } ]
"#,
    );
    let mut s = Sensor::single(&r);
    let login = |id: u64, src: &str, at: u64| tcp_session(id, src, SERVER, 22, t(at), 5, 2_000);
    let upload = |id: u64, src: &str, at: u64| tcp_session(id, src, SERVER, 443, t(at), 30, 5_000_000);
    s.batch(&[login(1, "10.0.0.1", 0), login(2, "10.0.0.2", 1), login(3, "10.0.0.3", 2)]);
    let q = sequence_stats(&s, "login-then-upload");
    assert_eq!((q.keys, q.dropped), (2, 1), "a third key does not fit: {q:?}");
    // The dropped key's upload completes nothing.
    s.batch(&[upload(4, "10.0.0.3", 100)]);
    assert!(s.alerts().is_empty());
    // Ten minutes after the logins (and a slot of the expiry wheel), both are forgotten.
    s.batch(&[In::Idle(t(700))]);
    let q = sequence_stats(&s, "login-then-upload");
    assert_eq!((q.keys, q.expired), (0, 2), "{q:?}");
    // Forgotten: a late upload does not complete them; the table has room again.
    s.batch(&[upload(5, "10.0.0.1", 710), login(6, "10.0.0.4", 711)]);
    s.batch(&[upload(7, "10.0.0.4", 800)]);
    s.finish();
    let got: Vec<IpAddress> = s.alerts().iter().map(|a| a.src).collect();
    assert_eq!(got, [ip("10.0.0.4")]);
    let q = sequence_stats(&s, "login-then-upload");
    assert_eq!((q.completed, q.keys, q.dropped, q.expired), (1, 0, 1, 2), "{q:?}");
}

#[test]
fn a_late_flow_record_of_a_session_within_the_hour_still_completes_the_sequence() {
    // The flow meter hands a record over up to its idle timeout after the flow's last packet:
    // the collector must not forget a sequence before such a record can have arrived.
    let r = rules(BRUTE_FORCE_THEN_SESSION);
    let setup = Setup { flow_delay: Duration::from_secs(35), ..Setup::default() };
    let mut s = Sensor::new(&r, &setup);
    s.each(brute_force(1, ATTACKER, SERVER, 0)); // started at 22 s
    // Other traffic moves the clock past 22 s + 1 h before the session's record (ended at
    // 22 s + 59 min 50 s) is handed over, 30 s after its end.
    s.batch(&[In::Idle(t(3_640))]);
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(1_000), 2_612, 90_000)]);
    s.finish();
    let seq = s.alerts_of("brute-force-then-session");
    assert_eq!(seq.len(), 1, "{:?}", sequence_stats(&s, "brute-force-then-session"));
    assert_eq!((started(&seq[0]), seq[0].ts), (t(22), t(3_612)));
    // Without such a record, the sequence is kept until the delay has passed too, and then
    // forgotten (as soon as the expiry wheel's slot comes due).
    let mut s = Sensor::new(&r, &setup);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    s.batch(&[In::Idle(t(3_656))]);
    let q = sequence_stats(&s, "brute-force-then-session");
    assert_eq!((q.keys, q.expired), (1, 0), "22 s + 1 h + 35 s have not passed");
    s.batch(&[In::Idle(t(3_900))]);
    let q = sequence_stats(&s, "brute-force-then-session");
    assert_eq!((q.keys, q.expired), (0, 1));
}

#[test]
fn sequence_alerts_go_through_the_alert_policy_and_can_be_steps_themselves() {
    // A sequence alert is an alert like any other: it can feed another sequence, and the
    // policy deduplicates it.
    let text = format!(
        "{BRUTE_FORCE_THEN_SESSION}
[[sequence]]
name = \"compromise-then-exfiltration\"
key = [\"src_ip\", \"dst_ip\"]
within = \"1h\"
steps = [ {{ alerts = [\"brute-force-then-session\"] }}, {{ filter = \"tcp\", flow = {{ min_bytes = 10000000 }} }} ]
"
    );
    let r = rules(&text);
    let mut s = Sensor::single(&r);
    s.each(brute_force(1, ATTACKER, SERVER, 0));
    s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(100), 200, 90_000)]); // completes at 300
    s.each(brute_force(11, ATTACKER, SERVER, 330)); // the threshold's window moved on: 352
    s.batch(&[tcp_session(20, ATTACKER, SERVER, 22, t(360), 200, 90_000)]); // again, at 560
    s.batch(&[tcp_session(30, ATTACKER, SERVER, 22, t(600), 300, 50_000_000)]); // at 900
    s.finish();
    assert_eq!(s.alerts_of("ssh-brute-force").iter().map(|a| a.ts).collect::<Vec<_>>(), [t(22), t(352)]);
    let first = s.policy_stats("brute-force-then-session");
    assert_eq!((first.raised, first.alerted, first.deduplicated), (2, 1, 1), "5-minute dedup: {first:?}");
    let exfil = s.alerts_of("compromise-then-exfiltration");
    assert_eq!(exfil.len(), 1);
    assert_eq!((started(&exfil[0]), exfil[0].ts), (t(560), t(900)), "from the latest first step");
    let sums = s.summaries();
    assert_eq!(sums.len(), 1);
    assert_eq!((sums[0].rule, sums[0].suppressed), (s.id("brute-force-then-session"), 1));
}
