//! Kafka export end to end, against a real Kafka-protocol broker (tansu, `make deps-kafka`):
//! `outpost replay` with a `[kafka]` section sends every alert and flow record of the run,
//! keyed by source address; and across a broker outage plus a SIGKILL of the sensor while its
//! spool holds the records, the next start delivers them — no alert lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_export::test_broker::{Relay, Tansu, consume_all};
use outpost_tools::seed::{SeedArgs, generate_seed};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

fn scenario(dir: &Path, name: &str, events: u64, error_prob: f64) -> PathBuf {
    let pcap = dir.join(format!("{name}.pcap"));
    let argv = [
        "--out",
        pcap.to_str().expect("utf-8 path"),
        "--events",
        &events.to_string(),
        "--clients",
        "300",
        "--error-prob",
        &error_prob.to_string(),
        "--seed",
        "31",
    ]
    .map(String::from);
    generate_seed(&SeedArgs::from_options(argv).expect("generator options")).expect("generation");
    pcap
}

/// The built-in configuration's rules and networks plus a `[kafka]` section.
fn config(dir: &Path, brokers: &str, spool: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/outpost.toml"))
        .expect("the shipped configuration");
    text.push_str(&format!(
        "\n[kafka]\nbrokers = [\"{brokers}\"]\ncreate_topics = 2\ndelivery_timeout = \"3s\"\n\n[kafka.spool]\ndir = \"{}\"\nfsync = \"always\"\n",
        spool.display()
    ));
    let path = dir.join("outpost.toml");
    std::fs::write(&path, text).expect("config");
    // Rule files are relative to the configuration.
    copy_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules.d")), &dir.join("rules.d"));
    copy_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/intel")), &dir.join("intel"));
    path
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("directory");
    for e in std::fs::read_dir(from).expect("directory") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn replay(pcap: &Path, config: &Path, dir: &Path, tag: &str) -> Value {
    let summary = dir.join(format!("{tag}-summary.json"));
    let out = Command::new(OUTPOST)
        .arg("replay")
        .arg(pcap)
        .arg("--config")
        .arg(config)
        .arg("--alerts")
        .arg(dir.join(format!("{tag}-alerts.jsonl")))
        .arg("--flows")
        .arg(dir.join(format!("{tag}-flows.jsonl")))
        .arg("--summary-json")
        .arg(&summary)
        .arg("--quiet")
        .output()
        .expect("outpost replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    lines(&summary).pop().expect("summary")
}

fn alert_ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| r["type"] == "alert")
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn replay_sends_every_alert_and_flow_keyed_by_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Tansu::start();
    let pcap = scenario(dir.path(), "seed", 20_000, 0.01);
    let config = config(dir.path(), &broker.address(), &dir.path().join("spool"));
    let summary = replay(&pcap, &config, dir.path(), "run");
    assert_eq!(summary["kafka"]["complete"], true, "{}", summary["kafka"]);

    let alerts = lines(&dir.path().join("run-alerts.jsonl"));
    let flows = lines(&dir.path().join("run-flows.jsonl"));
    assert!(alerts.len() > 50 && flows.len() > 1000);
    let got = consume_all(&broker.address(), "outpost.alerts", alerts.len());
    let values: Vec<Value> =
        got.iter().map(|c| serde_json::from_slice(&c.value).expect("JSON value")).collect();
    assert_eq!(alert_ids(&values), alert_ids(&alerts), "every alert, once");
    for (c, v) in got.iter().zip(&values) {
        assert_eq!(v["schema_version"], 1);
        if v["type"] == "alert" {
            assert_eq!(
                String::from_utf8_lossy(&c.key),
                v["src_ip"].as_str().expect("src_ip"),
                "keyed by source"
            );
        }
    }
    let flow_records = consume_all(&broker.address(), "outpost.flows", flows.len());
    assert_eq!(flow_records.len(), flows.len(), "every flow record");
    for c in flow_records.iter().take(200) {
        let v: Value = serde_json::from_slice(&c.value).expect("JSON value");
        assert_eq!(v["type"], "flow");
        let src = v["sourceIPv4Address"].as_str().or(v["sourceIPv6Address"].as_str()).expect("source");
        assert_eq!(String::from_utf8_lossy(&c.key), src);
    }
    // One source's alerts share a partition.
    let mut partition_of = std::collections::BTreeMap::new();
    for c in &got {
        if !c.key.is_empty() {
            assert_eq!(*partition_of.entry(c.key.clone()).or_insert(c.partition), c.partition);
        }
    }
}

#[test]
fn alerts_spooled_through_an_outage_and_a_sigkill_reach_kafka_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start();
    let broker = Tansu::start_behind(&relay);
    let spool = dir.path().join("spool");
    let config = config(dir.path(), &relay.address(), &spool);
    let pcap = scenario(dir.path(), "seed", 20_000, 0.01);
    let tiny = scenario(dir.path(), "tiny", 20, 0.0);
    // The ids every run of this capture gives its alerts (stable ids).
    let reference = {
        let plain = dir.path().join("plain.toml");
        let text = std::fs::read_to_string(&config).expect("config");
        std::fs::write(&plain, &text[..text.find("\n[kafka]").expect("kafka section")]).expect("config");
        replay(&pcap, &plain, dir.path(), "reference");
        alert_ids(&lines(&dir.path().join("reference-alerts.jsonl")))
    };
    assert!(reference.len() > 50);
    // Topics exist before the outage (the sensor creates them at start).
    replay(&tiny, &config, dir.path(), "setup");

    // The network to the broker goes down; the sensor spools, and is killed before it exits.
    relay.cut();
    let mut sensor = Command::new(OUTPOST)
        .arg("replay")
        .arg(&pcap)
        .arg("--config")
        .arg(&config)
        .args(["--alerts", "/dev/null", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("outpost replay");
    let deadline = Instant::now() + Duration::from_secs(60);
    let spooled =
        |p: &Path| -> u64 { walk(p).iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum() };
    while spooled(&spool.join("alerts")) < 4096 {
        assert!(Instant::now() < deadline, "the alerts were not spooled");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give the run time to finish reading the capture, then kill it while it waits for the
    // broker.
    std::thread::sleep(Duration::from_millis(1500));
    sensor.kill().expect("SIGKILL");
    let _ = sensor.wait();

    // The network is back; the next start sends what the spool holds.
    relay.restore();
    let summary = replay(&tiny, &config, dir.path(), "after");
    assert_eq!(summary["kafka"]["complete"], true, "{}", summary["kafka"]);
    let got = consume_all(&broker.address(), "outpost.alerts", reference.len());
    let ids =
        alert_ids(&got.iter().map(|c| serde_json::from_slice(&c.value).expect("JSON")).collect::<Vec<_>>());
    let missing: Vec<&String> = reference.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "{} of {} alerts missing, e.g. {:?}",
        missing.len(),
        reference.len(),
        &missing[..missing.len().min(5)]
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
