//! The default ruleset against ground truth: `outpost gen attacks` mixes every attack kind into
//! benign traffic and writes one truth line per attack and rule that must fire; the replay,
//! with the shipped rule files and the generated intel list in place of the shipped (empty)
//! blocklist, must raise each of those alerts — right rule, naming the attacker (the victim
//! for floods), between the attack's first packet and its last packet plus the rule's window —
//! and no alert that no attack explains. Separately, a benign mix of a million flows raises no
//! alert at all.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{read_json_lines, replay_with_config, run};
use outpost_tools::attack::{AttackTruth, DetectionRule, read_attack_truth_file};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A configuration directory laid out as an installed sensor's: `outpost.toml`, the shipped
/// `rules.d/*.toml`, and `intel/blocklist.txt` (written by the caller).
fn config_dir(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("rules.d")).expect("create config directory");
    std::fs::create_dir_all(dir.join("intel")).expect("create config directory");
    for entry in std::fs::read_dir(repo().join("config/rules.d")).expect("config/rules.d") {
        let p = entry.expect("directory entry").path();
        if p.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&p, dir.join("rules.d").join(p.file_name().expect("file name")))
                .expect("copy rule file");
        }
    }
    let main = dir.join("outpost.toml");
    std::fs::write(&main, "rule_files = [\"rules.d/*.toml\"]\n[sensor]\nname = \"attack-test\"\n")
        .expect("write outpost.toml");
    main
}

/// Replays `pcap` with `config` on `workers` workers; returns the alerts (not the dedup
/// summaries) and the summary.
fn replay(pcap: &Path, config: &Path, workers: usize, dir: &Path) -> (Vec<Value>, Value) {
    let (lines, summary) = replay_with_config(pcap, config, workers, dir, &[]);
    (lines.into_iter().filter(|a| a["type"] == "alert").collect(), summary)
}

fn addr(v: &Value) -> Option<IpAddr> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// Whether `alert` is the one `t` asks for: its rule, naming the truth's address in the
/// field the rule names it in, inside the truth's window.
fn answers(t: &AttackTruth, alert: &Value) -> bool {
    if alert["rule"].as_str() != Some(t.rule.name()) {
        return false;
    }
    let ts = alert["ts_ns"].as_u64().unwrap_or(0);
    if ts < t.start_ns || ts > t.deadline().0 {
        return false;
    }
    let named = t.named();
    match t.rule {
        // The listed address may be either end; the alert names it in `listed_ip`.
        DetectionRule::IntelMatch => addr(&alert["listed_ip"]) == named,
        // The scanned host sends the unreachables: the scanner is the key's `dst_ip`.
        DetectionRule::ScanVerticalUdp => addr(&alert["dst_ip"]) == named,
        r if r.names_target() => addr(&alert["dst_ip"]) == named,
        _ => addr(&alert["src_ip"]) == named,
    }
}

/// Whether `alert` is a volume baseline's on the victim of flood `t`, for an interval the
/// flood falls in (the alert comes at the interval's end, up to a minute after the flood).
fn floods_volume(t: &AttackTruth, alert: &Value) -> bool {
    let rule = alert["rule"].as_str().unwrap_or("");
    let ts = alert["ts_ns"].as_u64().unwrap_or(0);
    matches!(rule, "volume-baseline-bytes" | "volume-baseline-packets")
        && addr(&alert["src_ip"]) == t.named()
        && ts >= t.start_ns
        && ts <= t.end_ns + 60_000_000_000
}

fn describe(alerts: &[&Value]) -> String {
    alerts
        .iter()
        .take(10)
        .map(|a| {
            format!(
                "{} {} src_ip={} dst_ip={}: {}",
                a["ts"], a["rule"], a["src_ip"], a["dst_ip"], a["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn every_injected_attack_alerts_with_its_rule_and_attacker_and_nothing_else_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_dir(dir.path());
    let pcap = dir.path().join("attacks.pcap");
    let truth_path = dir.path().join("truth.jsonl");
    run(Command::new(OUTPOST)
        .args(["gen", "attacks", "--out"])
        .arg(&pcap)
        .arg("--truth")
        .arg(&truth_path)
        .arg("--intel-out")
        .arg(dir.path().join("intel/blocklist.txt")));
    let truth = read_attack_truth_file(&truth_path).expect("truth");
    let kinds: std::collections::BTreeSet<_> = truth.iter().map(|t| t.rule).collect();
    assert!(kinds.len() >= 15, "every rule of the default ruleset is exercised: {kinds:?}");

    let (alerts, summary) = replay(&pcap, &config, 2, dir.path());
    let mut missing = Vec::new();
    let mut explained = vec![false; alerts.len()];
    for t in &truth {
        let hits: Vec<usize> = (0..alerts.len()).filter(|&i| answers(t, &alerts[i])).collect();
        if hits.is_empty() {
            missing.push(format!(
                "{} / {} naming {:?} in {}..{}",
                t.attack,
                t.rule,
                t.named(),
                t.start,
                t.end
            ));
        }
        for i in hits {
            explained[i] = true;
        }
        // A flood also swells its victim's volume: the baselines may see it too (the truth
        // lists only what must fire), once the victim's history is past its warm-up.
        if t.rule.names_target() {
            for (i, a) in alerts.iter().enumerate() {
                explained[i] |= floods_volume(t, a);
            }
        }
    }
    let unexplained: Vec<&Value> =
        alerts.iter().zip(&explained).filter(|(_, e)| !**e).map(|(a, _)| a).collect();
    assert!(
        missing.is_empty() && unexplained.is_empty(),
        "missed attacks:\n  {}\nalerts no attack explains ({}):\n  {}",
        missing.join("\n  "),
        unexplained.len(),
        describe(&unexplained)
    );
    // Each attack is one incident per rule: dedup folds the repeats.
    let mut per_rule_and_named: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for a in &alerts {
        let key = (a["rule"].to_string(), a["src_ip"].to_string(), a["dst_ip"].to_string());
        *per_rule_and_named.entry(key).or_default() += 1;
    }
    assert!(per_rule_and_named.values().all(|&n| n == 1), "{per_rule_and_named:#?}");
    assert_eq!(summary["decode"]["rejected"].as_u64(), Some(0), "{summary}");

    // The same input on one worker raises the same alerts (ids included).
    let (one, _) = replay(&pcap, &config, 1, dir.path());
    let ids = |v: &[Value]| v.iter().map(|a| a["id"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    let (mut a, mut b) = (ids(&alerts), ids(&one));
    a.sort();
    b.sort();
    assert_eq!(a, b, "one and two workers raise the same alerts");
}

/// A million benign flows (12 M packets, three hours of traffic, streamed through a FIFO so
/// nothing big is written) raise no alert from the default ruleset, while every rule sees its
/// share of the traffic.
#[test]
fn a_million_benign_flows_raise_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("mix.pcap");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(status.success());
    let generator = Command::new(OUTPOST)
        .args(["gen", "mix", "--flows", "1000000", "--clients", "4000", "--out"])
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("generator starts");
    let alerts = dir.path().join("alerts.jsonl");
    let summary = dir.path().join("summary.json");
    // Flows are metered (the flow rules need them) without writing them.
    let replay = Command::new(OUTPOST)
        .arg("replay")
        .arg(&fifo)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--quiet", "--workers", "2"])
        .output()
        .expect("replay runs");
    let gen_out = generator.wait_with_output().expect("generator ends");
    assert!(gen_out.status.success(), "gen mix: {}", String::from_utf8_lossy(&gen_out.stderr));
    assert!(replay.status.success(), "replay: {}", String::from_utf8_lossy(&replay.stderr));

    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(summary["flows"]["flows"].as_u64(), Some(1_000_000), "every flow metered");
    let alerts = read_json_lines(&alerts);
    let shown: Vec<&Value> = alerts.iter().collect();
    assert!(alerts.is_empty(), "{} alerts on benign traffic:\n  {}", alerts.len(), describe(&shown));

    // Not quiet for want of input: the rules looked at the traffic.
    let rules = summary["rules"].as_array().expect("per-rule counters");
    let counter = |name: &str, path: &[&str]| {
        let r = rules.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("rule {name}"));
        path.iter().fold(r, |v, k| &v[*k]).as_u64().unwrap_or(0)
    };
    for (rule, path) in [
        ("scan-vertical-tcp", &["workers", "matched"][..]),
        ("scan-horizontal", &["workers", "matched"]),
        ("ping-sweep", &["workers", "matched"]),
        ("syn-flood", &["workers", "matched"]),
        ("udp-flood", &["workers", "matched"]),
        ("ssh-brute-force", &["collector", "matched"]),
        ("login-brute-force", &["collector", "matched"]),
        ("volume-baseline-bytes", &["collector", "judged"]),
        ("volume-baseline-flows", &["collector", "judged"]),
    ] {
        assert!(counter(rule, path) > 1000, "{rule}: {path:?} = {}", counter(rule, path));
    }
    assert_eq!(
        counter("volume-baseline-flows", &["collector", "late"]),
        0,
        "flow baselines wait for their records"
    );
    // Each rule was offered at least what it matched; flow rules every flow record.
    for r in rules {
        let evaluated = r["evaluated"].as_u64().unwrap_or_else(|| panic!("{}: evaluated", r["name"]));
        for side in ["workers", "collector"] {
            let matched = r[side]["matched"].as_u64().unwrap_or(0);
            assert!(evaluated >= matched, "{}: evaluated {evaluated} < {side} matched {matched}", r["name"]);
        }
    }
    assert!(counter("ssh-brute-force", &["evaluated"]) >= 1_000_000, "flow rules see every flow");
    assert!(counter("volume-baseline-flows", &["evaluated"]) >= 1_000_000, "and flow baselines");
    for meter in ["volume-baseline-bytes", "volume-baseline-packets"] {
        assert_eq!(counter(meter, &["evaluated"]), counter(meter, &["workers", "packets"]), "{meter}");
    }
    assert!(
        counter("scan-tcp-stealth", &["evaluated"]) < counter("scan-vertical-tcp", &["evaluated"]),
        "packet classes rule out most segments for the stealth scan's flag combinations"
    );
}

/// One address-resolution frame of a segment: an ARP request or reply, or (IPv6) a neighbor
/// solicitation to the target's solicited-node group.
#[derive(Clone, Copy)]
enum Resolve {
    Request,
    Reply,
    Solicit,
}

/// Writes `(ns, from, about, kind)` frames, in time order, as an Ethernet pcap.
fn write_resolution(path: &Path, mut frames: Vec<(u64, IpAddr, IpAddr, Resolve)>) {
    use outpost_tools::frame::{FrameBuilder, Transport, icmp, solicited_node};
    frames.sort_by_key(|f| f.0);
    let file = std::fs::File::create(path).expect("create capture");
    let mut w = outpost_tools::pcap::CaptureWriter::new(
        std::io::BufWriter::new(file),
        outpost_tools::pcap::OutputFormat::default(),
        outpost_decode::LinkType::Ethernet,
    )
    .expect("pcap header");
    let mut out = Vec::new();
    for (ts, from, about, kind) in frames {
        let (dst, transport, payload) = match (kind, about) {
            (Resolve::Request, _) => (about, Transport::Arp { op: 1 }, Vec::new()),
            (Resolve::Reply, _) => (about, Transport::Arp { op: 2 }, Vec::new()),
            (Resolve::Solicit, IpAddr::V6(t)) => {
                (IpAddr::V6(solicited_node(t)), icmp(135, 0, 0), t.octets().to_vec())
            }
            (Resolve::Solicit, IpAddr::V4(_)) => unreachable!("neighbor discovery is IPv6"),
        };
        let mut fb = FrameBuilder::new(from, dst, transport);
        fb.payload = payload;
        fb.ttl = 255;
        out.clear();
        fb.write_to(&mut out);
        w.write_packet(outpost_decode::Nanos(ts), &out).expect("write frame");
    }
    w.finish().expect("flush capture");
}

/// A busy segment's own address resolution is not a sweep; nmap -sn on it is. Ten minutes of
/// a router (IPv4 and IPv6) re-verifying each of its 250 active neighbours every 15–45 s (as
/// Linux does once an entry goes stale), the hosts resolving the router every 30 s and the
/// router answering them, and 120 hosts booting within three seconds (duplicate-address
/// probes from 0.0.0.0 and ::, then gratuitous announcements) raise nothing; a sweep of the
/// /24 added at minute five raises exactly one `neighbor-sweep` alert, naming the sweeper.
#[test]
fn a_segments_own_address_resolution_is_quiet_and_a_sweep_of_it_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_dir(dir.path());
    std::fs::write(dir.path().join("intel/blocklist.txt"), "").unwrap();
    let second = 1_000_000_000u64;
    let start = 1_767_225_600 * second;
    let v4 = |n: u8| IpAddr::from([10, 9, 0, n]);
    let v6 = |n: u8| IpAddr::from([0x2001, 0xdb8, 9, 0, 0, 0, 0, u16::from(n)]);
    let mut rng = outpost_tools::splitmix::SplitMix64(9);
    let mut frames = Vec::new();
    for n in 2..=251u8 {
        for (router, host, ask) in [(v4(1), v4(n), Resolve::Request), (v6(1), v6(n), Resolve::Solicit)] {
            let mut t = start + rng.below(45 * second);
            while t < start + 600 * second {
                frames.push((t, router, host, ask));
                if matches!(ask, Resolve::Request) {
                    frames.push((t + 200_000, host, router, Resolve::Reply));
                }
                t += 15 * second + rng.below(30 * second);
            }
        }
        // The host resolves the router as often, and the router answers.
        let mut t = start + rng.below(30 * second);
        while t < start + 600 * second {
            frames.push((t, v4(n), v4(1), Resolve::Request));
            frames.push((t + 200_000, v4(1), v4(n), Resolve::Reply));
            t += 30 * second;
        }
    }
    let unspecified = [IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])];
    for n in 100..220u8 {
        let boot = start + 120 * second + rng.below(3 * second);
        for k in 0..3 {
            frames.push((boot + k * second, unspecified[0], v4(n), Resolve::Request));
            frames.push((boot + k * second + 1_000, unspecified[1], v6(n), Resolve::Solicit));
        }
        frames.push((boot + 4 * second, v4(n), v4(n), Resolve::Request));
    }
    // What the rule counts: requests and solicitations, not from an unspecified address.
    let asked =
        frames.iter().filter(|f| !matches!(f.3, Resolve::Reply) && !f.1.is_unspecified()).count() as u64;
    let quiet = dir.path().join("segment.pcap");
    write_resolution(&quiet, frames.clone());
    let (alerts, summary) = replay(&quiet, &config, 2, dir.path());
    let shown: Vec<&Value> = alerts.iter().collect();
    assert!(alerts.is_empty(), "{} alerts:\n  {}", alerts.len(), describe(&shown));
    let rules = summary["rules"].as_array().expect("per-rule counters");
    let sweep = rules.iter().find(|r| r["name"] == "neighbor-sweep").expect("the rule");
    assert_eq!(sweep["workers"]["matched"].as_u64(), Some(asked), "{sweep}");

    // nmap -sn 10.9.0.0/24 from host 77 at minute five: every address, 1–3 ms apart.
    let mut t = start + 300 * second;
    for n in 1..=254u8 {
        t += 1_000_000 + rng.below(2_000_000);
        frames.push((t, v4(77), v4(n), Resolve::Request));
    }
    let swept = dir.path().join("swept.pcap");
    write_resolution(&swept, frames);
    let (alerts, _) = replay(&swept, &config, 2, dir.path());
    let shown: Vec<&Value> = alerts.iter().collect();
    assert_eq!(alerts.len(), 1, "{}", describe(&shown));
    assert_eq!(alerts[0]["rule"], "neighbor-sweep");
    assert_eq!(addr(&alerts[0]["src_ip"]), Some(v4(77)));
}
