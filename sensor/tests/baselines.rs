//! Packet baselines counted from the flow meter's per-interval hand-overs (what a worker does
//! when it meters flows and a baseline has no filter) against counting every packet (what it
//! does for a baseline with a filter): the same measurements, so the same alerts with the
//! same values, means and σ — in order and out of order, on one worker and on two.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{replay_with_config, run};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// Baselines that alert easily (1 s intervals, k = 1 after 3 intervals), for every host side
/// and both volume metrics; `filter` is added to each.
fn rules(filter: &str) -> String {
    let mut text = String::new();
    for (host, metric) in [("both", "bytes"), ("both", "packets"), ("src", "bytes"), ("dst", "packets")] {
        text.push_str(&format!(
            "[[baseline]]\nname = \"{metric}-{host}\"\nmetric = \"{metric}\"\nhost = \"{host}\"\n\
             interval = \"1s\"\nk = 1\nwarmup = 3\nmin_sigma = 0\nmin_value = 0\n{filter}\n"
        ));
    }
    text
}

/// A configuration directory with `rules` (lateness 2 s: packets up to 2 s out of order count
/// in their own interval; a flow table of 200 flows).
fn config(dir: &Path, name: &str, rules: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(d.join("rules.d")).expect("config dir");
    std::fs::write(d.join("rules.d/baselines.toml"), rules).expect("rules");
    let main = d.join("outpost.toml");
    std::fs::write(&main, "rule_files = [\"rules.d/*.toml\"]\n[alerts]\nlateness = \"2s\"\n")
        .expect("config");
    main
}

/// The capture with every 23rd frame held back by `delay_ms` of capture time: it arrives
/// after the frames of that much later (often in a later interval).
fn reordered(pcap: &Path, out: &Path, delay_ms: u64) -> usize {
    let data = std::fs::read(pcap).expect("pcap");
    let (header, mut rest) = data.split_at(24);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    // Nanosecond or microsecond timestamps.
    let frac_per_ms = if u32_at(header, 0) == 0xa1b2_3c4d { 1_000_000 } else { 1_000 };
    let mut records: Vec<&[u8]> = Vec::new();
    while rest.len() >= 16 {
        let len = 16 + u32_at(rest, 8) as usize;
        let (r, tail) = rest.split_at(len);
        records.push(r);
        rest = tail;
    }
    let ms = |r: &[u8]| u64::from(u32_at(r, 0)) * 1_000 + u64::from(u32_at(r, 4)) / frac_per_ms;
    let mut moved = 0;
    let mut i = 0;
    while i < records.len() {
        let due = ms(records[i]) + delay_ms;
        if let Some(j) = (i + 1..records.len()).find(|&j| ms(records[j]) >= due) {
            let r = records.remove(i);
            records.insert(j - 1, r);
            moved += 1;
        }
        i += 23;
    }
    let mut bytes = header.to_vec();
    for r in records {
        bytes.extend_from_slice(r);
    }
    std::fs::write(out, bytes).expect("write reordered pcap");
    moved
}

/// Replays `pcap` (flows metered: `--flows /dev/null`); returns the alerts without their
/// ids and the baseline rules' summaries.
fn replay(pcap: &Path, config: &Path, workers: usize, dir: &Path) -> (Vec<Value>, Vec<Value>) {
    let (mut got, summary) = replay_with_config(pcap, config, workers, dir, &["--flows", "/dev/null"]);
    for a in &mut got {
        if let Some(o) = a.as_object_mut() {
            o.remove("id");
        }
    }
    let rules = summary["rules"].as_array().expect("rules").iter().map(|r| r["workers"].clone()).collect();
    (got, rules)
}

#[test]
fn baselines_from_flow_hand_overs_measure_exactly_what_counting_every_packet_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("mix.pcap");
    run(Command::new(OUTPOST)
        .args(["gen", "mix", "--flows", "3000", "--clients", "150", "--concurrency", "120"])
        .args(["--mean-gap", "300ms", "--long-fraction", "0.05", "--seed", "5", "--out"])
        .arg(&pcap));
    // Held back 1.2 s (inside the 2 s lateness: counted in their own, earlier interval) and
    // 3.5 s (beyond it: late, unless a tick came between).
    let within = dir.path().join("mix-late-1200ms.pcap");
    let beyond = dir.path().join("mix-late-3500ms.pcap");
    assert!(reordered(&pcap, &within, 1_200) > 1_000, "enough frames out of order");
    assert!(reordered(&pcap, &beyond, 3_500) > 1_000, "enough frames out of order");
    // A filter every IP packet passes keeps a baseline on the per-packet path. A small flow
    // table: flows are evicted (and hand over) all the time.
    let per_packet = config(dir.path(), "per-packet", &rules("filter = \"ip or ip6\""));
    let from_flows = config(dir.path(), "from-flows", &rules(""));
    // Beyond the lateness, whether a packet is late depends on the clock ticks of the worker
    // that counts it — the source's worker per packet, the pair's from flows — so several
    // workers are compared only on input out of order within the lateness.
    let cases = [(&pcap, 1), (&pcap, 2), (&within, 1), (&within, 2), (&beyond, 1)];
    let mut late = 0;
    for (capture, workers) in cases {
        let (want_alerts, want_stats) = replay(capture, &per_packet, workers, dir.path());
        let (got_alerts, got_stats) = replay(capture, &from_flows, workers, dir.path());
        let what = format!("{} on {workers} worker(s)", capture.display());
        assert!(want_alerts.len() > 50, "{what}: the baselines alert ({})", want_alerts.len());
        assert_eq!(got_stats, want_stats, "{what}: packets measured and late");
        assert_eq!(got_alerts.len(), want_alerts.len(), "{what}");
        assert!(got_alerts == want_alerts, "{what}: the alerts differ");
        if capture == &beyond {
            late = got_stats.iter().filter_map(|s| s["late"].as_u64()).sum::<u64>();
        }
    }
    assert!(late > 0, "the capture held back beyond the lateness has late packets");
}
