//! Helpers shared by the sensor's end-to-end test files (`mod common;`).
#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs `cmd` (an `outpost` command) with no input; a failure fails the test with its error
/// output.
pub fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("outpost runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The JSON lines of `path`, each parsed.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Replays `pcap` with `config` on `workers` workers, quietly, with `extra` arguments; the
/// alerts and the summary go to `alerts-{workers}.jsonl` and `summary-{workers}.json` in
/// `dir`. Returns the alert file's lines and the summary.
pub fn replay_with_config(
    pcap: &Path,
    config: &Path,
    workers: usize,
    dir: &Path,
    extra: &[&str],
) -> (Vec<Value>, Value) {
    let alerts = dir.join(format!("alerts-{workers}.jsonl"));
    let summary = dir.join(format!("summary-{workers}.json"));
    run(Command::new(env!("CARGO_BIN_EXE_outpost"))
        .arg("replay")
        .arg(pcap)
        .arg("--config")
        .arg(config)
        .arg("--alerts")
        .arg(&alerts)
        .arg("--summary-json")
        .arg(&summary)
        .args(["--quiet", "--workers", &workers.to_string()])
        .args(extra));
    let summary = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
        .expect("summary is JSON");
    (read_json_lines(&alerts), summary)
}
