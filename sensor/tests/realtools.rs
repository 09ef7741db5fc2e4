//! Real attack tools against the default ruleset: captures of nmap (SYN, connect, UDP, FIN,
//! NULL and XMAS scans, a ping sweep, a horizontal scan, sweeps of its own link by ARP and by
//! IPv6 neighbor discovery),
//! hping3 (SYN, ICMP and UDP floods) and
//! hydra (against a real OpenSSH server), made between two network namespaces by
//! `tests/realtools/capture.sh` and committed under `tests/fixtures/realtools/`, are replayed
//! with the `outpost` binary and its built-in configuration. Each must raise an alert of the
//! rule the fixtures' README names, naming the attacker (`src_ip`; `dst_ip` for
//! `scan-vertical-udp`) or, for floods, the victim as `dst_ip`; the benign capture must raise
//! no alert.
//!
//! The expectations are the table in `tests/fixtures/realtools/README.md` (written by the
//! capture script, which also records each file's packet count); [`EXPECTED`] mirrors it, so a
//! regenerated README cannot drop or change an expectation unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// (file stem, rule, field of the alert, address it must hold); rule `-`: no alert at all.
const EXPECTED: &[(&str, &str, &str, &str)] = &[
    ("nmap-syn-scan", "scan-vertical-tcp", "src_ip", "10.66.0.2"),
    ("nmap-connect-scan", "scan-vertical-tcp", "src_ip", "10.66.0.2"),
    ("nmap-udp-scan", "scan-vertical-udp", "dst_ip", "10.66.0.2"),
    ("nmap-fin-scan", "scan-tcp-stealth", "src_ip", "10.66.0.2"),
    ("nmap-null-scan", "scan-tcp-stealth", "src_ip", "10.66.0.2"),
    ("nmap-xmas-scan", "scan-tcp-stealth", "src_ip", "10.66.0.2"),
    ("nmap-ping-sweep", "ping-sweep", "src_ip", "10.66.0.2"),
    ("nmap-horizontal-scan", "scan-horizontal", "src_ip", "10.66.0.2"),
    ("nmap-neighbor-sweep", "neighbor-sweep", "src_ip", "10.66.0.2"),
    ("nmap-neighbor-sweep-v6", "neighbor-sweep", "src_ip", "2001:db8:66::2"),
    ("hping3-syn-flood", "syn-flood", "dst_ip", "10.66.0.1"),
    ("hping3-icmp-flood", "icmp-flood", "dst_ip", "10.66.0.1"),
    ("hping3-udp-flood", "udp-flood", "dst_ip", "10.66.0.1"),
    ("hydra-ssh", "ssh-brute-force", "src_ip", "10.66.0.2"),
    ("benign", "-", "-", "-"),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/realtools")
}

/// One row of the README's table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    stem: String,
    packets: u64,
    rule: String,
    field: String,
    address: String,
}

/// The table rows of `tests/fixtures/realtools/README.md`: lines `| \`NAME.pcap\` | command |
/// packets | bytes | seconds | rule | field | address |`.
fn readme_rows() -> Vec<Row> {
    let path = fixtures().join("README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `") && l.contains(".pcap`")) {
        let cells: Vec<&str> =
            line.trim().trim_matches('|').split('|').map(|c| c.trim().trim_matches('`')).collect();
        assert_eq!(cells.len(), 8, "README row with 8 cells expected: {line}");
        rows.push(Row {
            stem: cells[0].trim_end_matches(".pcap").to_string(),
            packets: cells[2].parse().unwrap_or_else(|_| panic!("packet count in: {line}")),
            rule: cells[5].to_string(),
            field: cells[6].to_string(),
            address: cells[7].to_string(),
        });
    }
    rows
}

fn row(stem: &str) -> Row {
    readme_rows()
        .into_iter()
        .find(|r| r.stem == stem)
        .unwrap_or_else(|| panic!("{stem} is not in tests/fixtures/realtools/README.md"))
}

/// Replays one fixture with the built-in configuration; returns the alerts and the summary.
fn replay(stem: &str) -> (Vec<Value>, Value) {
    let pcap = fixtures().join(format!("{stem}.pcap"));
    assert!(pcap.is_file(), "{} is missing: run tests/realtools/capture.sh", pcap.display());
    let dir = tempfile::tempdir().expect("temporary directory");
    let alerts = dir.path().join("alerts.jsonl");
    let summary = dir.path().join("summary.json");
    let out = Command::new(OUTPOST)
        .arg("replay")
        .arg(&pcap)
        .arg("--alerts")
        .arg(&alerts)
        .args(["--flows", "/dev/null", "--summary-json"])
        .arg(&summary)
        .arg("--quiet")
        .output()
        .expect("outpost runs");
    assert!(
        out.status.success(),
        "outpost replay {} failed ({}): {}",
        pcap.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<Value> = std::fs::read_to_string(&alerts)
        .expect("alerts written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every alert line is JSON"))
        .collect();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
        .expect("summary is JSON");
    (alerts, summary)
}

/// Alerts per rule, and a few of them, for failure messages.
fn describe(alerts: &[Value]) -> String {
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for a in alerts {
        *by_rule.entry(a["rule"].as_str().unwrap_or("?")).or_default() += 1;
    }
    let sample: Vec<String> = alerts
        .iter()
        .take(5)
        .map(|a| format!("{} src_ip={} dst_ip={}", a["rule"], a["src_ip"], a["dst_ip"]))
        .collect();
    format!("{} alerts, per rule {by_rule:?}; first: {sample:#?}", alerts.len())
}

/// Other rules a capture rightly raises besides its own: nmap's host discovery before a
/// horizontal scan is a ping sweep, and hping3's random sources include spoofed-looking ones.
const ALSO_EXPECTED: &[(&str, &str)] =
    &[("nmap-horizontal-scan", "ping-sweep"), ("hping3-syn-flood", "spoofed-source")];

/// The fixture must raise an alert of its rule whose field names its address, no alert of
/// another rule (beyond [`ALSO_EXPECTED`]), and one alert per rule: a tool run is one
/// incident, not a storm.
fn expect_alert(stem: &str) {
    let row = row(stem);
    let (alerts, _) = replay(stem);
    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &alerts {
        let rule = a["rule"].as_str().unwrap_or("?");
        let expected = rule == row.rule || ALSO_EXPECTED.contains(&(stem, rule));
        assert!(expected, "{stem}.pcap: unexpected `{rule}` alert; {}", describe(&alerts));
        *per_rule.entry(rule).or_default() += 1;
    }
    assert!(per_rule.values().all(|&n| n == 1), "{stem}.pcap: one alert per rule; {}", describe(&alerts));
    let hit = alerts.iter().any(|a| {
        a["rule"].as_str() == Some(row.rule.as_str())
            && a[row.field.as_str()].as_str() == Some(row.address.as_str())
    });
    assert!(
        hit,
        "{stem}.pcap: no `{}` alert with {} = {}; {}",
        row.rule,
        row.field,
        row.address,
        describe(&alerts)
    );
}

#[test]
fn readme_table_is_the_expected_one_and_every_fixture_is_there() {
    let rows = readme_rows();
    let got: Vec<(String, String, String, String)> =
        rows.iter().map(|r| (r.stem.clone(), r.rule.clone(), r.field.clone(), r.address.clone())).collect();
    let want: Vec<(String, String, String, String)> =
        EXPECTED.iter().map(|(s, r, f, a)| ((*s).into(), (*r).into(), (*f).into(), (*a).into())).collect();
    assert_eq!(got, want, "tests/fixtures/realtools/README.md and EXPECTED disagree");
    for r in &rows {
        let p = fixtures().join(format!("{}.pcap", r.stem));
        let len = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).len();
        assert!(len > 24, "{} holds no packet", p.display());
    }
}

/// Every capture (cut at 256 bytes by tcpdump's snap length) replays to its end: every frame
/// the README counts is read and decoded, none is rejected.
#[test]
fn every_fixture_replays_whole() {
    for r in readme_rows() {
        let (_, summary) = replay(&r.stem);
        assert_eq!(summary["frames"].as_u64(), Some(r.packets), "{}.pcap: frames read", r.stem);
        assert_eq!(summary["decode"]["rejected"].as_u64(), Some(0), "{}.pcap: {summary}", r.stem);
        assert_eq!(summary["unsupported_link_frames"].as_u64(), Some(0), "{}.pcap", r.stem);
    }
}

#[test]
fn nmap_syn_scan_is_a_vertical_tcp_scan_by_the_attacker() {
    expect_alert("nmap-syn-scan");
}

#[test]
fn nmap_connect_scan_is_a_vertical_tcp_scan_by_the_attacker() {
    expect_alert("nmap-connect-scan");
}

#[test]
fn nmap_udp_scan_is_a_vertical_udp_scan_naming_the_scanner() {
    expect_alert("nmap-udp-scan");
}

#[test]
fn nmap_fin_scan_is_a_stealth_scan_by_the_attacker() {
    expect_alert("nmap-fin-scan");
}

#[test]
fn nmap_null_scan_is_a_stealth_scan_by_the_attacker() {
    expect_alert("nmap-null-scan");
}

#[test]
fn nmap_xmas_scan_is_a_stealth_scan_by_the_attacker() {
    expect_alert("nmap-xmas-scan");
}

#[test]
fn nmap_ping_sweep_is_a_ping_sweep_by_the_attacker() {
    expect_alert("nmap-ping-sweep");
}

#[test]
fn nmap_horizontal_scan_is_a_horizontal_scan_by_the_attacker() {
    expect_alert("nmap-horizontal-scan");
}

#[test]
fn nmap_sweep_of_its_own_link_is_a_neighbor_sweep_by_the_attacker() {
    expect_alert("nmap-neighbor-sweep");
}

#[test]
fn nmap_ipv6_sweep_of_its_own_link_is_a_neighbor_sweep_by_the_attacker() {
    expect_alert("nmap-neighbor-sweep-v6");
}

#[test]
fn hping3_syn_flood_names_the_victim() {
    expect_alert("hping3-syn-flood");
}

#[test]
fn hping3_icmp_flood_names_the_victim() {
    expect_alert("hping3-icmp-flood");
}

#[test]
fn hping3_udp_flood_names_the_victim() {
    expect_alert("hping3-udp-flood");
}

#[test]
fn hydra_against_sshd_is_an_ssh_brute_force_by_the_attacker() {
    expect_alert("hydra-ssh");
}

#[test]
fn benign_traffic_raises_no_alert() {
    let (alerts, _) = replay("benign");
    assert!(alerts.is_empty(), "benign.pcap: {}", describe(&alerts));
}
