//! Rule reload end to end: a new compiled rule set swapped in at a batch boundary keeps the
//! state of every rule whose name and definition did not change — windows, sequences in
//! progress, absence timers, and at the policy open dedup intervals, rate limits and counters —
//! whatever its new id; changed rules start fresh, removed ones are dropped, added ones start at
//! the reload.

mod common;
use common::*;

const SSH: &str = r#"
[[threshold]]
name = "ssh-brute-force"
description = "Password guessing."
severity = "high"
input = "flows"
filter = "tcp dst port 22"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3
"#;

const SEQUENCE: &str = r#"
[[sequence]]
name = "brute-force-then-session"
key = ["src_ip", "dst_ip"]
within = "1h"
steps = [
  { alerts = ["ssh-brute-force"] },
  { filter = "tcp", flow = { handshake = true, min_duration = "60s" } },
]
"#;

const SYSLOG: &str = r#"
[[absence]]
name = "syslog-silent"
filter = "udp dst port 514"
timeout = "60s"
"#;

/// Another rule, to be added in front of the others (their ids move).
const RDP: &str = r#"
[[threshold]]
name = "rdp-brute-force"
input = "flows"
filter = "tcp dst port 3389"
flow = { handshake = true, max_duration = "30s" }
key = ["src_ip", "dst_ip"]
window = "5m"
threshold = 3
"#;

const ATTACKER: &str = "203.0.113.5";
const SERVER: &str = "192.168.1.10";

/// A short SSH login from `ATTACKER` to `SERVER` at `at` (2 s).
fn login(id: u64, at: u64) -> In {
    tcp_session(id, ATTACKER, SERVER, 22, t(at), 2, 3_000)
}

/// Syslog from a sender.
fn syslog(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 514, ts)
}

/// Packets that are not syslog (they move the clock).
fn other(src: &str, ts: Nanos) -> In {
    udp(src, "192.168.1.5", 53, ts)
}

/// `(ts, src, dst)` of the alerts of `rule`.
fn of(s: &Sensor, rule: &str) -> Vec<(Nanos, IpAddress, IpAddress)> {
    s.alerts_of(rule).iter().map(|a| (a.ts, a.src, a.dst)).collect()
}

fn stats_of(s: &Sensor, rule: &str) -> CentralRuleStats {
    s.central_rule(rule)
}

#[test]
fn an_unchanged_rule_keeps_its_window_across_a_reload_even_when_its_id_moves() {
    let before = rules(SSH);
    let after = rules(&format!("{RDP}{SSH}"));
    assert_ne!(before.id_of("ssh-brute-force"), after.id_of("ssh-brute-force"), "the id moves");
    let mut s = Sensor::single(&before);
    s.each([login(1, 0), login(2, 10)]);
    assert!(s.reload(&after).is_empty());
    s.each([login(3, 20)]);
    assert_eq!(
        of(&s, "ssh-brute-force"),
        [(t(22), ip(ATTACKER), ip(SERVER))],
        "two logins before, one after"
    );
    s.finish();
    // The counters of the rule went on too.
    let CentralRuleStats::Threshold(st) = stats_of(&s, "ssh-brute-force") else { panic!("a flow threshold") };
    assert_eq!((st.matched, st.crossed), (3, 1), "{st:?}");
    assert_eq!(s.policy_stats("ssh-brute-force").raised, 1);
}

#[test]
fn a_changed_rule_starts_fresh_but_new_labels_are_no_change() {
    let run = |after: &str| {
        let mut s = Sensor::single(&rules(SSH));
        s.each([login(1, 0), login(2, 10)]);
        s.reload(&rules(after));
        s.each([login(3, 20), login(4, 30)]);
        let early = of(&s, "ssh-brute-force").len();
        s.each([login(5, 40)]);
        s.finish();
        (early, of(&s, "ssh-brute-force"))
    };
    // Another description and severity: the same rule.
    let relabelled =
        SSH.replace("Password guessing.", "SSH password guessing.").replace("\"high\"", "\"critical\"");
    assert_eq!(run(&relabelled), (1, vec![(t(22), ip(ATTACKER), ip(SERVER))]));
    // Another window: a different rule, whose count starts at the reload.
    let changed = SSH.replace("window = \"5m\"", "window = \"6m\"");
    assert_eq!(run(&changed), (0, vec![(t(42), ip(ATTACKER), ip(SERVER))]));
    // Another threshold, likewise.
    let changed = SSH.replace("threshold = 3", "threshold = 2");
    assert_eq!(run(&changed), (1, vec![(t(32), ip(ATTACKER), ip(SERVER))]));
}

#[test]
fn a_removed_rule_is_dropped_and_one_added_back_later_starts_fresh() {
    let mut s = Sensor::single(&rules(SSH));
    s.each([login(1, 0), login(2, 10)]);
    s.reload(&rules(RDP));
    s.each([login(3, 20)]);
    s.reload(&rules(&format!("{RDP}{SSH}")));
    s.each([login(4, 30), login(5, 40)]);
    assert!(s.alerts().is_empty(), "{:?}", s.alerts());
    s.each([login(6, 50)]);
    s.finish();
    assert_eq!(of(&s, "ssh-brute-force"), [(t(52), ip(ATTACKER), ip(SERVER))]);
}

#[test]
fn a_sequence_in_progress_survives_a_reload_that_moves_the_rules_it_names() {
    let run = |after: &str| {
        let mut s = Sensor::single(&rules(&format!("{SSH}{SEQUENCE}")));
        s.each([login(1, 0), login(2, 10), login(3, 20)]);
        assert_eq!(s.alerts_of("ssh-brute-force").len(), 1);
        s.reload(&rules(after));
        // A 20-minute session 10 minutes after the brute force.
        s.batch(&[tcp_session(10, ATTACKER, SERVER, 22, t(600), 1_200, 90_000)]);
        s.finish();
        of(&s, "brute-force-then-session")
    };
    // The sequence's text is unchanged; the rule it names moves behind a new one.
    let moved = format!("{RDP}{SEQUENCE}{SSH}");
    assert_eq!(run(&moved), [(t(1_800), ip(ATTACKER), ip(SERVER))]);
    // A sequence whose steps changed is a new rule: the brute force before the reload is not
    // its first step.
    let changed = SEQUENCE.replace("[\"ssh-brute-force\"]", "[\"ssh-brute-force\", \"rdp-brute-force\"]");
    assert!(run(&format!("{SSH}{RDP}{changed}")).is_empty());
    let changed = SEQUENCE.replace("\"1h\"", "\"2h\"");
    assert!(run(&format!("{SSH}{changed}")).is_empty());
}

#[test]
fn a_learned_absence_sender_keeps_its_timer_across_a_reload_and_a_changed_rule_forgets_it() {
    let run = |workers: usize, after: &str| {
        let mut s = Sensor::new(&rules(SYSLOG), &Setup { workers, block: 2, ..Setup::default() });
        s.each([syslog("10.0.0.9", t(0)), syslog("10.0.0.9", t(20)), other("10.0.0.5", t(30))]);
        s.reload(&rules(after));
        s.each([syslog("10.0.0.8", t(40))]);
        s.each((50..=300).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.finish();
        let mut v: Vec<_> = s
            .alerts_of("syslog-silent")
            .iter()
            .map(|a| {
                let AlertDetail::Absence { last_seen } = a.detail else { panic!("an absence alert") };
                (a.ts, a.src, last_seen)
            })
            .collect();
        v.sort();
        v
    };
    for workers in [1, 3] {
        let moved = format!("{RDP}{SYSLOG}");
        assert_eq!(
            run(workers, &moved),
            [(t(80), ip("10.0.0.9"), Some(t(20))), (t(100), ip("10.0.0.8"), Some(t(40)))],
            "{workers} workers"
        );
        // A longer timeout: a new rule, which learns its senders from the reload on.
        let changed = SYSLOG.replace("\"60s\"", "\"90s\"");
        assert_eq!(run(workers, &changed), [(t(130), ip("10.0.0.8"), Some(t(40)))], "{workers} workers");
    }
}

#[test]
fn an_absence_rule_added_by_a_reload_expects_its_listed_senders_from_the_reload() {
    let listed = "[[absence]]\nname = \"backup-silent\"\nfilter = \"tcp dst port 873\"\ntimeout = \"60s\"\n\
                  expected = [\"10.0.0.21\", \"10.0.0.22\"]\n";
    for workers in [1, 2, 4] {
        let mut s = Sensor::new(&rules(SSH), &Setup { workers, ..Setup::default() });
        s.each((0..=100).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.reload(&rules(&format!("{SSH}{listed}")));
        s.each((110..=300).step_by(10).map(|at| other("10.0.0.5", t(at))));
        s.finish();
        let mut got: Vec<_> = of(&s, "backup-silent").iter().map(|a| (a.0, a.1)).collect();
        got.sort();
        assert_eq!(got, [(t(160), ip("10.0.0.21")), (t(160), ip("10.0.0.22"))], "{workers} workers");
    }
}

/// Rules for the policy across a reload: the policy does not care which kind raised an
/// alert; these flow rules see no flows here and the tests hand the collector their alerts.
const POLICY_RULES: &str = r#"
[[threshold]]
name = "kept"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10
rate_limit = 2

[[threshold]]
name = "changed"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10

[[threshold]]
name = "removed"
input = "flows"
key = ["src_ip", "dst_ip"]
window = "1m"
threshold = 10
"#;

fn policy_rules_after() -> String {
    let kept_and_changed = POLICY_RULES
        .split("[[threshold]]")
        .filter(|r| !r.contains("\"removed\""))
        .collect::<Vec<_>>()
        .join("[[threshold]]")
        .replace(
            "name = \"changed\"\ninput = \"flows\"\nkey = [\"src_ip\", \"dst_ip\"]\nwindow = \"1m\"",
            "name = \"changed\"\ninput = \"flows\"\nkey = [\"src_ip\", \"dst_ip\"]\nwindow = \"2m\"",
        );
    format!("{RDP}{kept_and_changed}")
}

/// Hands the collector an alert of `rule` (of the current rule set) about `src` → `SERVER`.
fn raise(s: &mut Sensor, rule: &str, src: &str, ts: Nanos, n: u128) {
    let key = KeyValue { src: ip(src), dst: ip(SERVER), ..KeyValue::default() };
    let a =
        Alert::for_key(AlertId(n), ts, s.id(rule), key, AlertDetail::Threshold { value: 10.0, events: 10 });
    let seq = s.next_seq();
    let out = &mut s.out;
    s.central.on_alert(seq, a, &mut |o| out.push(o));
}

#[test]
fn the_policy_keeps_the_dedup_intervals_rate_limits_and_counters_of_unchanged_rules() {
    let before = rules(POLICY_RULES);
    let after = rules(&policy_rules_after());
    assert!(after.id_of("removed").is_none());
    let mut s = Sensor::single(&before);
    for (rule, n) in [("kept", 10), ("changed", 20), ("removed", 30)] {
        raise(&mut s, rule, "10.0.0.1", t(0), n);
        raise(&mut s, rule, "10.0.0.1", t(10), n + 1); // a duplicate
    }
    raise(&mut s, "kept", "10.0.0.2", t(11), 12); // the second of kept's 2 a minute
    let closed = s.reload(&after);
    // The open intervals of the changed and the removed rule close at the reload, named with
    // the old rules' ids.
    let mut closed: Vec<(String, AlertId, u64)> = closed
        .iter()
        .map(|o| match o {
            CentralOutput::Suppressed(d) => {
                let name = before.rule(d.rule).expect("an old rule").name.clone();
                (name, d.first, d.suppressed)
            }
            CentralOutput::Alert(a) => panic!("no alert at a reload: {a:?}"),
        })
        .collect();
    closed.sort();
    assert_eq!(closed, [("changed".to_string(), AlertId(20), 1), ("removed".to_string(), AlertId(30), 1)]);
    // After the reload: kept's interval is still open, and its minute's budget still spent.
    raise(&mut s, "kept", "10.0.0.1", t(20), 13);
    raise(&mut s, "kept", "10.0.0.3", t(21), 14);
    raise(&mut s, "kept", "10.0.0.3", t(61), 15);
    // The changed rule starts fresh: no interval open.
    raise(&mut s, "changed", "10.0.0.1", t(20), 21);
    s.finish();
    let ids: Vec<u128> = s.alerts().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [10, 20, 30, 12, 15, 21]);
    let p = s.policy_stats("kept");
    assert_eq!(
        (p.raised, p.alerted, p.deduplicated, p.rate_limited),
        (6, 3, 2, 1),
        "counted across the reload: {p:?}"
    );
    let p = s.policy_stats("changed");
    assert_eq!((p.raised, p.alerted, p.deduplicated), (1, 1, 0), "counted from the reload: {p:?}");
    let kept: Vec<(AlertId, u64)> =
        s.summaries().iter().filter(|d| d.rule == s.id("kept")).map(|d| (d.first, d.suppressed)).collect();
    assert_eq!(kept, [(AlertId(10), 2)], "one interval, across the reload, under the new id");
}

/// A mix of everything: brute forces and sessions, syslog senders that go quiet.
fn mixed_input() -> Vec<Vec<In>> {
    let mut batches = Vec::new();
    let mut id = 0;
    for round in 0..20u64 {
        let at = round * 45;
        let mut b = Vec::new();
        for i in 0..6u64 {
            let src = format!("10.0.1.{i}");
            if round < 4 + 2 * i || round % 7 == i {
                b.push(syslog(&src, t(at + i)));
            }
        }
        let attacker = format!("203.0.113.{}", round % 3);
        id += 1;
        b.push(tcp_session(id, &attacker, SERVER, 22, t(at + 1), 2, 3_000));
        if round % 5 == 4 {
            id += 1;
            b.push(tcp_session(id, &attacker, SERVER, 443, t(at + 5), 120, 90_000));
        }
        b.push(other("10.0.0.5", t(at + 40)));
        batches.push(b);
    }
    batches
}

#[test]
fn reloading_the_same_rules_changes_nothing_whatever_the_worker_count() {
    let text = format!("{SSH}{SEQUENCE}{SYSLOG}");
    // `(name, ts, src, id)` of the alerts, sorted, and the duplicates summarised.
    let run = |workers: usize, reload: Option<(usize, &str)>| {
        let r = rules(&text);
        let mut s = Sensor::new(&r, &Setup { workers, block: 3, ..Setup::default() });
        let mut alerts: Vec<(String, Nanos, IpAddress, u128)> = Vec::new();
        let mut sums = 0;
        // What was written, named with the rules it was written with.
        let mut take = |s: &mut Sensor| {
            for o in std::mem::take(&mut s.out) {
                match o {
                    CentralOutput::Alert(a) => {
                        let name = s.rules.rule(a.rule).expect("a rule").name.clone();
                        alerts.push((name, a.ts, a.src, a.id.0));
                    }
                    CentralOutput::Suppressed(d) => sums += d.suppressed,
                }
            }
        };
        for (i, b) in mixed_input().iter().enumerate() {
            if let Some((at, new)) = reload {
                if at == i {
                    take(&mut s);
                    assert!(s.reload(&rules(new)).is_empty());
                }
            }
            s.batch(b);
        }
        s.finish();
        take(&mut s);
        alerts.sort();
        (alerts, sums)
    };
    let reference = run(1, None);
    for name in ["ssh-brute-force", "brute-force-then-session", "syslog-silent"] {
        assert!(reference.0.iter().any(|a| a.0 == name), "the input raises {name}: {reference:?}");
    }
    assert!(reference.1 > 0, "and duplicates");
    // Recompiled from the same text, with a new rule in front (every id moves: alert ids,
    // which derive from the rule's id, differ, but nothing else).
    let moved = format!("{RDP}{text}");
    let without_ids = |(alerts, sums): (Vec<(String, Nanos, IpAddress, u128)>, u64)| {
        (alerts.into_iter().map(|(n, ts, src, _)| (n, ts, src)).collect::<Vec<_>>(), sums)
    };
    for workers in [1, 3] {
        for at in [3, 8, 13] {
            assert_eq!(
                run(workers, Some((at, &text))),
                reference,
                "{workers} workers, reload before batch {at}"
            );
            assert_eq!(
                without_ids(run(workers, Some((at, &moved)))),
                without_ids(reference.clone()),
                "{workers} workers, reload with moved ids before batch {at}"
            );
        }
    }
}

const SYN_COUNT: &str = r#"
[[threshold]]
name = "syns"
filter = "tcp[tcpflags] & tcp-syn != 0"
key = ["src_ip"]
window = "60s"
threshold = 1000
"#;

/// Two packet baselines that share a meter, one on UDP only, and a flow baseline.
const BASELINES: &str = r#"
[[baseline]]
name = "host-bytes"
metric = "bytes"
[[baseline]]
name = "host-packets"
metric = "packets"
[[baseline]]
name = "udp-bytes"
metric = "bytes"
filter = "udp"
[[baseline]]
name = "host-flows"
input = "flows"
metric = "flows"
"#;

/// `evaluated` per rule name (sorted by name): the workers' and the collector's, summed.
fn evaluated(s: &Sensor) -> BTreeMap<String, u64> {
    let (workers, central) = (s.worker_stats().evaluated, s.central.stats().evaluated);
    s.rules
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (r.name.clone(), workers.get(i).copied().unwrap_or(0) + central.get(i).copied().unwrap_or(0))
        })
        .collect()
}

#[test]
fn every_rule_counts_the_inputs_offered_to_it_whatever_the_worker_count_and_across_a_reload() {
    let text = format!("{SSH}{SEQUENCE}{SYSLOG}{SYN_COUNT}{BASELINES}");
    let tcp = |src: &str, flags: u16, ts: Nanos| match packet(src, SERVER, 6, 40_000, 443, ts) {
        In::Packet(m) => In::Packet(PacketMeta { tcp_flags: flags, ..m }),
        other => other,
    };
    // Four SYNs and two bare ACKs, five syslog datagrams and three DNS queries, an ARP frame,
    // two SSH logins.
    let inputs = |at: u64| -> Vec<In> {
        let mut v = Vec::new();
        for (i, src) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].iter().enumerate() {
            v.push(tcp(src, 0x02, t(at + i as u64)));
        }
        v.push(tcp("10.0.0.1", 0x10, t(at + 4)));
        v.push(tcp("10.0.0.5", 0x10, t(at + 4)));
        for i in 0..5 {
            v.push(syslog(&format!("10.0.1.{i}"), t(at + 5)));
        }
        for i in 0..3 {
            v.push(other(&format!("10.0.2.{i}"), t(at + 6)));
        }
        v.push(In::Packet(PacketMeta {
            ts: t(at + 6),
            network: Network::Arp,
            ethertype: 0x0806,
            ..PacketMeta::default()
        }));
        v.push(login(at, at + 7));
        v.push(login(at + 1, at + 8));
        v
    };
    let once = [
        ("ssh-brute-force", 2), // flow records
        ("brute-force-then-session", 2),
        // Its filter needs UDP: every datagram is offered, whatever its port (the port is not
        // part of a packet's class); TCP is ruled out by its class. The ARP frame is of no
        // class and is offered to every packet rule (its filter says no).
        ("syslog-silent", 9),
        // Only segments with SYN set are of a class its filter may match (and the ARP frame).
        ("syns", 5),
        // Every IP packet, once for both rules of the shared meter; not the ARP frame, which
        // has no host addresses.
        ("host-bytes", 14),
        ("host-packets", 14),
        ("udp-bytes", 8),
        ("host-flows", 2),
    ];
    let expect = |times: u64, names: &[(&str, u64)]| -> BTreeMap<String, u64> {
        names.iter().map(|(n, c)| ((*n).to_string(), c * times)).collect()
    };
    for workers in [1, 3] {
        let mut s = Sensor::new(&rules(&text), &Setup { workers, block: 4, ..Setup::default() });
        s.batch(&inputs(0));
        assert_eq!(evaluated(&s), expect(1, &once), "{workers} worker(s)");
        // A reload that puts a rule in front moves every id; the counts stay with their rules,
        // and the new rule starts from zero.
        assert!(s.reload(&rules(&format!("{RDP}{text}"))).is_empty());
        s.batch(&inputs(100));
        // By now alerts were raised too (the third login, the syslog senders' silence): the
        // sequence is offered every flow record and every alert.
        let raised: u64 = s.rules.rules.iter().map(|r| s.policy_stats(&r.name).raised).sum();
        assert!(raised > 0);
        let mut after = expect(2, &once);
        after.insert("rdp-brute-force".to_string(), 2);
        after.insert("brute-force-then-session".to_string(), 4 + raised);
        assert_eq!(evaluated(&s), after, "{workers} worker(s), after the reload");
    }
}
