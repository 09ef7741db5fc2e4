//! End to end: generate the seed scenario, replay it with the `outpost` binary, and hold the
//! alerts to the generator's ground truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use outpost_tools::seed::{SeedArgs, TruthRecord, generate_seed, read_truth_file};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// Options for a generated scenario.
struct Scenario {
    events: u64,
    clients: u32,
    error_prob: f64,
    seed: u64,
    extra: Vec<&'static str>,
}

impl Scenario {
    fn new(events: u64, error_prob: f64, seed: u64) -> Scenario {
        Scenario { events, clients: 500, error_prob, seed, extra: Vec::new() }
    }

    /// Writes the pcap and truth into `dir`; returns (pcap, truth records).
    fn generate(&self, dir: &Path, name: &str) -> (PathBuf, Vec<TruthRecord>) {
        let pcap = dir.join(format!("{name}.pcap"));
        let truth = dir.join(format!("{name}.truth.jsonl"));
        let mut argv: Vec<String> = vec![
            "--out".into(),
            pcap.display().to_string(),
            "--truth".into(),
            truth.display().to_string(),
            "--events".into(),
            self.events.to_string(),
            "--clients".into(),
            self.clients.to_string(),
            "--error-prob".into(),
            self.error_prob.to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ];
        argv.extend(self.extra.iter().map(|s| (*s).to_string()));
        let args = SeedArgs::from_options(argv).expect("valid generator options");
        generate_seed(&args).expect("generation succeeds");
        (pcap.clone(), read_truth_file(&truth).expect("truth file reads back"))
    }
}

fn replay(pcap: &Path, alerts: &Path, extra: &[&str]) -> Output {
    Command::new(OUTPOST)
        .arg("replay")
        .arg(pcap)
        .arg("--alerts")
        .arg(alerts)
        .args(extra)
        .output()
        .expect("outpost runs")
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .expect("output exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

/// What an alert and a truth record must agree on.
type Key = (u64, String, String, String, String);

fn alert_keys(alerts: &[Value]) -> Vec<Key> {
    alerts
        .iter()
        .map(|a| {
            (
                a["ts_ns"].as_u64().expect("ts_ns"),
                a["src_ip"].as_str().expect("src_ip").to_string(),
                a["dst_ip"].as_str().expect("dst_ip").to_string(),
                a["state"].as_str().expect("state").to_string(),
                a["event"].as_str().expect("event").to_string(),
            )
        })
        .collect()
}

fn truth_keys(truth: &[TruthRecord]) -> Vec<Key> {
    truth
        .iter()
        .map(|t| {
            let v = serde_json::to_value(t).expect("truth serializes");
            (
                t.ts_ns,
                t.src_ip.to_string(),
                t.dst_ip.to_string(),
                v["state"].as_str().expect("state").to_string(),
                v["event"].as_str().expect("event").to_string(),
            )
        })
        .collect()
}

#[test]
fn alerts_equal_ground_truth_at_one_million_events_for_every_worker_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(1_000_000, 0.01, 7);
    s.clients = 2_000;
    let (pcap, truth) = s.generate(dir.path(), "seed");
    assert!(truth.len() > 5_000, "the scenario must inject errors ({} injected)", truth.len());
    let want = truth_keys(&truth);
    let mut first: Option<String> = None;
    for workers in ["1", "2", "4"] {
        let out = dir.path().join(format!("alerts-{workers}.jsonl"));
        let r = replay(&pcap, &out, &["--workers", workers]);
        assert!(r.status.success(), "replay failed: {}", String::from_utf8_lossy(&r.stderr));
        let alerts = read_jsonl(&out);
        let got = alert_keys(&alerts);
        assert_eq!(got.len(), want.len(), "{workers} workers: alert count differs from truth");
        assert_eq!(got, want, "{workers} workers: alerts differ from truth");
        // Identical bytes whatever the worker count: order is input order, ids derive from
        // the input.
        let text = std::fs::read_to_string(&out).unwrap();
        match &first {
            None => first = Some(text),
            Some(f) => assert!(*f == text, "{workers} workers wrote different alerts than 1 worker"),
        }
    }
}

#[test]
fn no_alerts_without_injected_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth) = Scenario::new(300_000, 0.0, 11).generate(dir.path(), "clean");
    assert!(truth.is_empty());
    let out = dir.path().join("alerts.jsonl");
    let r = replay(
        &pcap,
        &out,
        &["--workers", "2", "--summary-json", dir.path().join("s.json").to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "", "a clean scenario must raise no alert");
    let summary = &read_jsonl(&dir.path().join("s.json"))[0];
    let rule = &summary["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "seed-state-machine")
        .expect("the seed rule is in the built-in configuration")["workers"];
    assert_eq!(rule["events"].as_u64(), Some(300_000), "every event packet is classified");
    assert_eq!(rule["invalid"].as_u64(), Some(0));
    assert!(rule["terminated"].as_u64().unwrap() > 10_000);
    assert!(summary["decode"]["malformed"].as_object().unwrap().is_empty());
}

#[test]
fn alerts_carry_ids_networks_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth) = Scenario::new(50_000, 0.02, 3).generate(dir.path(), "small");
    let out = dir.path().join("alerts.jsonl");
    let r = replay(&pcap, &out, &[]);
    assert!(r.status.success());
    let alerts = read_jsonl(&out);
    assert_eq!(alerts.len(), truth.len());
    let mut ids = std::collections::HashSet::new();
    for a in &alerts {
        assert_eq!(a["type"], "alert");
        assert_eq!(a["rule"], "seed-state-machine");
        assert_eq!(a["proto"], "udp");
        assert_eq!(a["sensor"], "outpost-demo");
        assert!(ids.insert(a["id"].as_str().unwrap().to_string()), "duplicate id");
        let net = a["network_id"].as_u64().unwrap();
        assert!((1..=4).contains(&net), "clients live in networks 1..4, got {net}");
        assert!(a["ts"].as_str().unwrap().ends_with('Z'));
        assert!(a["frame"].as_u64().unwrap() >= 1);
        let expected: Vec<&str> =
            a["expected"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(!expected.contains(&a["event"].as_str().unwrap()), "the event was not a valid one");
        assert_eq!(
            a["dst_port"].as_u64().unwrap(),
            7000 + u64::from(a["event"].as_str().unwrap().as_bytes()[0] - b'a' + 1)
        );
    }
}

#[test]
fn alert_windows_count_every_alert_once_per_network() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth) = Scenario::new(200_000, 0.01, 5).generate(dir.path(), "win");
    let (alerts_p, windows_p) = (dir.path().join("a.jsonl"), dir.path().join("w.jsonl"));
    let r = replay(&pcap, &alerts_p, &["--windows", windows_p.to_str().unwrap(), "--workers", "3"]);
    assert!(r.status.success());
    let alerts = read_jsonl(&alerts_p);
    let windows = read_jsonl(&windows_p);
    assert_eq!(alerts.len(), truth.len());
    // Expected: alerts per (30 s window, network id of the source).
    let mut want: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for a in &alerts {
        let w = a["ts_ns"].as_u64().unwrap() / 30_000_000_000 * 30_000_000_000;
        *want.entry((w, a["network_id"].as_u64().unwrap())).or_default() += 1;
    }
    let mut got: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let mut last_end = String::new();
    for w in &windows {
        assert_eq!(w["type"], "alert_window");
        let end = w["window_end"].as_str().unwrap().to_string();
        assert!(end >= last_end, "windows come out in end order");
        last_end = end;
        let start_ns = alerts
            .iter()
            .map(|a| a["ts_ns"].as_u64().unwrap())
            .find(|t| {
                let s = outpost_decode::Nanos(*t).window_start(outpost_decode::Duration::from_secs(30));
                s.to_string() == w["window_start"].as_str().unwrap()
            })
            .expect("a window holds at least one alert");
        let key = (start_ns / 30_000_000_000 * 30_000_000_000, w["network_id"].as_u64().unwrap());
        assert!(got.insert(key, w["alerts"].as_u64().unwrap()).is_none(), "window reported twice");
        assert!(w["latitude"].is_f64(), "client networks have a location");
        assert!(w["sources"].as_u64().unwrap() <= w["alerts"].as_u64().unwrap());
    }
    assert_eq!(got, want);
}

#[test]
fn other_formats_and_link_types_give_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut base = Scenario::new(40_000, 0.02, 9);
    let (pcap, truth) = base.generate(dir.path(), "eth");
    let want = truth_keys(&truth);
    for (name, extra) in [
        ("ng", vec!["--format", "pcapng"]),
        ("usec", vec!["--format", "pcap-usec"]),
        ("sll2", vec!["--link", "sll2"]),
        ("sll", vec!["--link", "sll"]),
        ("raw", vec!["--link", "raw"]),
    ] {
        base.extra = extra;
        let (p, t) = base.generate(dir.path(), name);
        let out = dir.path().join(format!("{name}.jsonl"));
        let r = replay(&p, &out, &[]);
        assert!(r.status.success(), "{name}: {}", String::from_utf8_lossy(&r.stderr));
        if name == "usec" {
            // Microsecond timestamps: same events, timestamps truncated.
            assert_eq!(read_jsonl(&out).len(), t.len(), "{name}");
        } else {
            assert_eq!(alert_keys(&read_jsonl(&out)), want, "{name}");
        }
    }
    let _ = pcap;
}

#[test]
fn a_truncated_capture_is_reported_with_file_and_offset_after_everything_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth) = Scenario::new(100_000, 0.01, 13).generate(dir.path(), "cut");
    let full = std::fs::read(&pcap).unwrap();
    let cut_at = full.len() - 37;
    let cut = dir.path().join("cut-short.pcap");
    std::fs::write(&cut, &full[..cut_at]).unwrap();
    let out = dir.path().join("alerts.jsonl");
    let r = replay(&cut, &out, &["--workers", "2"]);
    assert_eq!(r.status.code(), Some(2), "damaged input gives exit status 2");
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("cut-short.pcap"), "{stderr}");
    assert!(stderr.contains("truncated at byte offset"), "{stderr}");
    // Everything before the damaged record was processed: all truth but (at most) the last
    // packet's alert.
    let got = alert_keys(&read_jsonl(&out));
    let want = truth_keys(&truth);
    assert!(got.len() + 1 >= want.len() && got.len() <= want.len(), "{} vs {}", got.len(), want.len());
    assert_eq!(got[..], want[..got.len()]);
}

#[test]
fn not_a_capture_and_missing_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file at all").unwrap();
    let r = replay(&junk, &dir.path().join("a.jsonl"), &[]);
    assert_eq!(r.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("junk.pcap: not a pcap or pcapng file"), "{stderr}");

    let r = replay(&dir.path().join("missing.pcap"), &dir.path().join("a.jsonl"), &[]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("missing.pcap"));
}

#[test]
fn a_bad_config_names_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[sensor]\nname = \"s\"\n\n[alerts]\nwindow = \"thirty\"\n").unwrap();
    let r = Command::new(OUTPOST).args(["check-config"]).arg(&cfg).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("bad.toml:5:"), "{stderr}");
    assert!(stderr.contains("`window`"), "{stderr}");
    assert!(stderr.contains("invalid duration `thirty`"), "{stderr}");
}

#[test]
fn malformed_frames_are_counted_by_reason_and_change_no_alert() {
    use outpost_capture::{PacketSource, PcapFileSource};
    use outpost_tools::pcap::{PcapWriter, Precision};

    let dir = tempfile::tempdir().unwrap();
    let (pcap, truth) = Scenario::new(60_000, 0.02, 21).generate(dir.path(), "clean");
    let dirty = dir.path().join("dirty.pcap");
    let mut w = PcapWriter::new(
        std::fs::File::create(&dirty).unwrap(),
        outpost_decode::LinkType::Ethernet,
        Precision::Nano,
    )
    .unwrap();
    let mut src = PcapFileSource::open(&pcap).unwrap();
    let (mut cut_v4, mut cut_v6, mut bad_version, mut other, mut n) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut lcg = 0x2545_f491_4f6c_dd1du64;
    while let Some(batch) = src.next_batch().unwrap() {
        for f in batch.iter() {
            w.write_packet(f.ts, f.data, f.wire_len).unwrap();
            n += 1;
            if n % 10 != 0 {
                continue;
            }
            lcg = lcg.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            // A copy cut inside the IP header by a snap length (wire length kept).
            let cut = 14 + (lcg >> 33) as usize % 19;
            w.write_packet(f.ts, &f.data[..cut], f.wire_len).unwrap();
            if f.data[12..14] == [0x86, 0xdd] {
                cut_v6 += 1
            } else {
                cut_v4 += 1
            }
            // A copy whose IP version nibble is wrong.
            let mut bad = f.data.to_vec();
            bad[14] = 0x55;
            w.write_packet(f.ts, &bad, f.wire_len).unwrap();
            bad_version += 1;
            // Random bytes with an EtherType Outpost does not decode.
            let len = 14 + (lcg >> 40) as usize % 100;
            let mut junk: Vec<u8> = (0..len).map(|i| (lcg >> (i % 56)) as u8).collect();
            junk[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
            w.write_packet(f.ts, &junk, len as u32).unwrap();
            other += 1;
        }
    }
    w.finish().unwrap();

    let out = dir.path().join("a.jsonl");
    let summary_p = dir.path().join("s.json");
    let r = replay(&dirty, &out, &["--workers", "2", "--summary-json", summary_p.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(alert_keys(&read_jsonl(&out)), truth_keys(&truth));
    let s = &read_jsonl(&summary_p)[0];
    let m = &s["decode"]["malformed"];
    assert_eq!(m["truncated_ipv4"].as_u64().unwrap_or(0), cut_v4);
    assert_eq!(m["truncated_ipv6"].as_u64().unwrap_or(0), cut_v6);
    assert_eq!(m["bad_ip_version"].as_u64().unwrap_or(0), bad_version);
    assert_eq!(s["decode"]["other"].as_u64().unwrap(), other);
    assert_eq!(s["decode"]["rejected"].as_u64().unwrap(), cut_v4 + cut_v6 + bad_version);
}

#[test]
fn flow_records_account_for_every_ip_packet_and_repeat_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Scenario::new(100_000, 0.01, 17);
    s.extra = vec!["--noise", "0.3"];
    let (pcap, _) = s.generate(dir.path(), "flows");
    let mut texts = Vec::new();
    for run in 0..2 {
        let flows = dir.path().join(format!("flows-{run}.jsonl"));
        let summary = dir.path().join(format!("s-{run}.json"));
        let r = replay(
            &pcap,
            &dir.path().join("a.jsonl"),
            &[
                "--workers",
                "2",
                "--flows",
                flows.to_str().unwrap(),
                "--summary-json",
                summary.to_str().unwrap(),
            ],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let records = read_jsonl(&flows);
        let s = &read_jsonl(&summary)[0];
        let ip_packets = s["decode"]["ipv4"].as_u64().unwrap() + s["decode"]["ipv6"].as_u64().unwrap();
        let counted: u64 = records
            .iter()
            .map(|f| f["packetDeltaCount"].as_u64().unwrap() + f["reversePacketDeltaCount"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, ip_packets, "every IP packet is in exactly one flow record");
        assert_eq!(s["flows"]["records_written"].as_u64().unwrap(), records.len() as u64);
        let ids: std::collections::HashSet<(u64, u64)> = records
            .iter()
            .map(|f| (f["flowId"].as_u64().unwrap(), f["sequence"].as_u64().unwrap()))
            .collect();
        assert_eq!(ids.len(), records.len(), "(flowId, sequence) is unique");
        assert!(records.iter().all(|f| f["community_id"].as_str().unwrap().starts_with("1:")));
        texts.push(std::fs::read_to_string(&flows).unwrap());
    }
    assert!(texts[0] == texts[1], "flow output differs between two runs with the same worker count");
}

#[test]
fn ipfix_and_netflow_v9_exports_reach_a_udp_collector() {
    use std::net::UdpSocket;
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = Scenario::new(1_000, 0.0, 23).generate(dir.path(), "export");
    for (option, version) in [("--ipfix", 10u16), ("--netflow9", 9u16)] {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(1500))).unwrap();
        let addr = sock.local_addr().unwrap().to_string();
        // Receive while the replay sends (a burst would overflow the socket buffer).
        let receiver = std::thread::spawn(move || {
            let (mut datagrams, mut bytes, mut versions) = (0u64, 0u64, std::collections::BTreeSet::new());
            let mut buf = [0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                versions.insert(u16::from_be_bytes([buf[0], buf[1]]));
                datagrams += 1;
                bytes += n as u64;
            }
            (datagrams, bytes, versions)
        });
        let (flows, summary) = (dir.path().join("f.jsonl"), dir.path().join("s.json"));
        let r = replay(
            &pcap,
            &dir.path().join("a.jsonl"),
            &[option, &addr, "--flows", flows.to_str().unwrap(), "--summary-json", summary.to_str().unwrap()],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let s = &read_jsonl(&summary)[0];
        let key = if version == 10 { "ipfix" } else { "netflow9" };
        let x = &s[key];
        let flow_records = read_jsonl(&flows).len() as u64;
        assert_eq!(x["flows"].as_u64(), Some(flow_records), "{key}: every flow record was exported");
        assert_eq!(x["send_errors"].as_u64(), Some(0));
        let (datagrams, bytes, versions) = receiver.join().unwrap();
        assert_eq!(versions.into_iter().collect::<Vec<_>>(), vec![version], "{key}: version field");
        assert_eq!(datagrams, x["messages"].as_u64().unwrap(), "{key}: every message arrived");
        assert_eq!(bytes, x["bytes"].as_u64().unwrap());
    }
}
