//! Alert snippets end to end: `outpost replay --snippets DIR` on a generated scenario writes,
//! for every reported alert about a source address, a pcapng file named after the alert id
//! that holds exactly that source's packets from 5 s before to 5 s after the alert — read
//! back with tshark and tcpdump and held to the input capture — and writes none for the
//! alerts the alert policy deduplicated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_tools::seed::{SeedArgs, generate_seed};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// A seed scenario: 50 concurrent clients, `events` datagrams at 300 a second (a client
/// sends about one a second, so a source appears in several one-second windows).
fn scenario(dir: &Path, events: u64) -> PathBuf {
    let pcap = dir.join("seed.pcap");
    let argv = [
        "--out",
        pcap.to_str().expect("utf-8 path"),
        "--events",
        &events.to_string(),
        "--clients",
        "50",
        "--rate",
        "300",
        "--error-prob",
        "0.002",
        "--seed",
        "21",
    ]
    .map(String::from);
    generate_seed(&SeedArgs::from_options(argv).expect("generator options")).expect("generation");
    pcap
}

/// The run's configuration: the built-in rules plus a rule that alerts every second for every
/// source that sends (so dedup suppresses all but its first alert), and unbounded histories so a
/// snippet holds every packet of its window.
const CONFIG: &str = r#"
rule_files = []

[alert_policy]
dedup = "5m"
max_alerts_per_second = 100000

[snippets]
history_packets = 0
history_age = "6s"
max_open = 4096
max_snippet_packets = 100000
memory_bytes = 33554432

[[rules.threshold]]
name = "chatty-source"
severity = "low"
category = "test"
filter = "udp"
key = ["src_ip"]
window = "1s"
threshold = 1
"#;

fn tshark_fields(file: &Path, filter: Option<&str>, fields: &[&str]) -> Vec<Vec<String>> {
    let mut c = Command::new("tshark");
    c.arg("-n").arg("-r").arg(file).args(["-T", "fields", "-E", "separator=|"]);
    if let Some(f) = filter {
        c.args(["-Y", f]);
    }
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.output().expect("tshark runs (make test installs it)");
    assert!(out.status.success(), "tshark -r {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('|').map(String::from).collect()).collect()
}

/// `1767225600.000169368` → nanoseconds, exactly (no float).
fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().expect("seconds") * 1_000_000_000 + frac[..9].parse::<u64>().expect("fraction")
}

#[test]
fn snippets_hold_exactly_the_sources_packets_around_each_reported_alert_and_none_for_deduplicated_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = scenario(dir.path(), 3_000);
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let (alerts, summary, snippets) =
        (dir.path().join("alerts.jsonl"), dir.path().join("summary.json"), dir.path().join("snippets"));
    let out = Command::new(OUTPOST)
        .arg("replay")
        .arg(&pcap)
        .arg("--config")
        .arg(&config)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--snippets")
        .arg(&snippets)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--workers", "2", "--quiet"])
        .output()
        .expect("outpost replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    let records: Vec<Value> = std::fs::read_to_string(&alerts)
        .expect("alerts")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let reported: Vec<&Value> = records.iter().filter(|r| r["type"] == "alert").collect();
    let chatty: Vec<&&Value> = reported.iter().filter(|r| r["rule"] == "chatty-source").collect();
    assert!(chatty.len() >= 100, "the chatty rule alerts for many sources: {}", chatty.len());
    let suppressed: u64 = records
        .iter()
        .filter(|r| r["type"] == "alert_suppressed")
        .map(|r| r["suppressed"].as_u64().expect("suppressed count"))
        .sum();
    assert!(suppressed > 0, "dedup suppressed repeated alerts");

    // One file per reported alert, named after its id; none for the suppressed ones.
    let s = &summary["snippets"];
    assert_eq!(
        s["collector"]["not_reported"], suppressed,
        "every suppressed alert's snippet is discarded: {s}"
    );
    assert_eq!(s["writer"]["written"].as_u64(), Some(reported.len() as u64), "{s}");
    assert_eq!(s["writer"]["dropped_queue_full"], 0, "{s}");
    let mut on_disk = BTreeSet::new();
    for day in std::fs::read_dir(&snippets).expect("snippet dir") {
        for f in std::fs::read_dir(day.expect("day").path()).expect("day dir") {
            on_disk.insert(f.expect("file").path());
        }
    }
    let named: BTreeSet<PathBuf> = reported
        .iter()
        .map(|r| PathBuf::from(r["snippet"].as_str().expect("alert carries its snippet")))
        .collect();
    assert_eq!(on_disk, named, "exactly the reported alerts' files");
    for r in &reported {
        let p = r["snippet"].as_str().expect("path");
        assert!(p.ends_with(&format!("{}.pcapng", r["id"].as_str().expect("id"))), "{p}");
        assert!(p.contains("/2026-01-01/"), "dated directory: {p}");
    }

    // The input's packets per source, as the oracle.
    // (source address, time) of each frame: IPv4 or IPv6, whichever the frame has.
    let packets = |file: &Path| -> Vec<(String, u64)> {
        tshark_fields(file, None, &["ip.src", "ipv6.src", "frame.time_epoch"])
            .into_iter()
            .map(|f| (if f[0].is_empty() { f[1].clone() } else { f[0].clone() }, epoch_ns(&f[2])))
            .collect()
    };
    let mut by_source: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (src, t) in packets(&pcap) {
        by_source.entry(src).or_default().push(t);
    }
    const FIVE_S: u64 = 5_000_000_000;
    for r in reported.iter().step_by(reported.len().div_ceil(12)) {
        let src = r["src_ip"].as_str().expect("src_ip");
        let ts = r["ts_ns"].as_u64().expect("ts_ns");
        let file = Path::new(r["snippet"].as_str().expect("path"));
        let expected: Vec<u64> =
            by_source[src].iter().copied().filter(|&t| t + FIVE_S >= ts && t <= ts + FIVE_S).collect();
        let got = packets(file);
        assert!(got.iter().all(|(s, _)| s == src), "only {src}'s packets in {}", file.display());
        let got: Vec<u64> = got.iter().map(|(_, t)| *t).collect();
        assert_eq!(got, expected, "{src}'s packets from 5 s before to 5 s after {ts} in {}", file.display());
        let tcpdump = Command::new("tcpdump").args(["-nn", "-r"]).arg(file).output().expect("tcpdump");
        assert!(tcpdump.status.success(), "tcpdump reads {}", file.display());
        assert_eq!(String::from_utf8_lossy(&tcpdump.stdout).lines().count(), expected.len());
        let comments = tshark_fields(file, Some("frame.comment"), &["frame.comment"]);
        assert!(
            comments.iter().any(|c| c[0].contains(r["id"].as_str().expect("id"))),
            "the alert's packet carries its id: {comments:?}"
        );
    }
}
