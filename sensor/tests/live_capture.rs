//! Live capture end to end, in network namespaces this test creates: `outpost run` on one end
//! of a veth pair, `tcpreplay` sending a generated capture into the other end, and the
//! resulting flows and alerts held to `outpost replay` of the same capture — in XDP native
//! mode, XDP generic mode and AF_PACKET mode. Also: the XDP blocklist drops and counts, no XDP
//! program stays attached after a normal exit or a SIGKILL, and SIGHUP reloads the rules while
//! capturing.
//!
//! Needs root (network namespaces, XDP) and tcpreplay; without root the tests say so and pass.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::read_json_lines;
use outpost_tools::netns::{Netns, is_root, run};
use outpost_tools::seed::{SeedArgs, generate_seed};
use serde_json::Value;

const OUTPOST: &str = env!("CARGO_BIN_EXE_outpost");

/// Live captures in this file run one at a time: each asserts that nothing is dropped
/// anywhere (worker rings included) at a modest rate, which holds on an otherwise idle
/// machine; several captures plus their tcpreplays at once on a 2-core machine starve the
/// workers and the worker rings overflow (counted as `ring_full_drops`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn can_run() -> bool {
    if !is_root() {
        eprintln!("skipped: live capture tests need root");
        return false;
    }
    if Command::new("tcpreplay").arg("--version").output().is_err() {
        eprintln!("skipped: tcpreplay is not installed (make deps installs it)");
        return false;
    }
    true
}

/// A namespace with a veth pair `cap0` (the sensor's side) — `tx0` (the sender's): see
/// [`Netns::with_veth`]. Deleted on drop, also when a test panics, which removes the veths
/// and any XDP program with them.
fn new_netns(tag: &str) -> Netns {
    Netns::with_veth(&format!("opl-{tag}"), "cap0", "tx0")
}

/// Which receive queues a live capture runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queues {
    /// One queue.
    One,
    /// Two queues, each read by its own receive thread (`rx_threads = per_queue`).
    TwoThreads,
}

/// A generated seed scenario: state-machine datagrams with injected invalid transitions plus
/// background noise, `events` events at `rate` per second (so tcpreplay sends it at that pace).
fn scenario(dir: &Path, events: u64, rate: u64) -> PathBuf {
    let pcap = dir.join("seed.pcap");
    let argv = [
        "--out".to_string(),
        pcap.display().to_string(),
        "--events".into(),
        events.to_string(),
        "--clients".into(),
        "200".into(),
        "--rate".into(),
        rate.to_string(),
        "--error-prob".into(),
        "0.01".into(),
        "--seed".into(),
        "11".into(),
    ];
    generate_seed(&SeedArgs::from_options(argv).expect("generator options")).expect("generation");
    pcap
}

/// Alerts as comparable facts (ids and times differ between live and replay).
fn alert_facts(p: &Path) -> BTreeMap<String, u32> {
    let mut m = BTreeMap::new();
    for a in read_json_lines(p) {
        let f = ["rule", "src_ip", "dst_ip", "src_port", "dst_port", "state", "event"]
            .iter()
            .map(|k| a.get(*k).map(ToString::to_string).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        *m.entry(f).or_insert(0) += 1;
    }
    m
}

/// Packets and bytes per flow key, summed over the key's records (live timing may split or
/// join flows at idle timeouts differently; the sums per key may not differ).
fn flow_sums(p: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for f in read_json_lines(p) {
        let g = |k: &str| f.get(k).map(ToString::to_string).unwrap_or_default();
        let key = format!(
            "{}{} {}{} {} {} {}",
            g("sourceIPv4Address"),
            g("sourceIPv6Address"),
            g("destinationIPv4Address"),
            g("destinationIPv6Address"),
            g("sourceTransportPort"),
            g("destinationTransportPort"),
            g("protocolIdentifier")
        );
        let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        let e = m.entry(key).or_insert((0, 0));
        e.0 += n("packetDeltaCount") + n("reversePacketDeltaCount");
        e.1 += n("octetDeltaCount") + n("reverseOctetDeltaCount");
    }
    m
}

/// A running `outpost run` whose standard error is collected; started once it says it
/// captures.
struct Sensor {
    child: Child,
    stderr: std::sync::mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Sensor {
    fn start(ns: &Netns, args: &[&str]) -> Sensor {
        let mut child = ns
            .cmd(OUTPOST)
            .arg("run")
            .args(["--interface", "cap0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start outpost run");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Sensor { child, stderr: rx, log: Vec::new() };
        s.wait_for(0, "capturing on");
        s
    }

    /// Where the log is now: [`Sensor::wait_for`] from here sees only what comes later.
    fn mark(&mut self) -> usize {
        self.log.extend(self.stderr.try_iter());
        self.log.len()
    }

    /// Waits (up to 30 s) until a line of the log after `from` contains `needle`; returns
    /// that line.
    fn wait_for(&mut self, from: usize, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.log.iter().skip(from).find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => panic!("outpost run never said {needle:?}: {:?}", self.log),
            }
        }
    }

    /// Runs `outpost run ARGS` in `ns` while tcpreplay sends `pcap`, gives it `settle` to
    /// finish what is in flight, stops it with `sig` and returns its log; an unsuccessful exit
    /// fails the test.
    fn capture(ns: &Netns, args: &[&str], pcap: &Path, settle: Duration, sig: &str) -> Vec<String> {
        let sensor = Sensor::start(ns, args);
        tcpreplay(ns, pcap);
        std::thread::sleep(settle);
        sensor.signal(sig);
        let (status, log) = sensor.wait();
        assert!(status.success(), "outpost run {args:?} failed: {log:?}");
        log
    }

    fn signal(&self, sig: &str) {
        run(Command::new("kill").args([sig, &self.child.id().to_string()]));
    }

    /// Waits for the exit (after a signal); returns the exit status and the whole log.
    fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                self.log.extend(self.stderr.try_iter());
                return (st, self.log);
            }
            assert!(Instant::now() < deadline, "outpost run did not exit: {:?}", self.log);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tcpreplay(ns: &Netns, pcap: &Path) {
    run(ns.cmd("tcpreplay").args(["-q", "-i", "tx0"]).arg(pcap));
}

fn replay_reference(dir: &Path, pcap: &Path) -> Value {
    let summary = dir.join("replay-summary.json");
    run(Command::new(OUTPOST)
        .arg("replay")
        .arg(pcap)
        .args(["--quiet", "--workers", "2"])
        .arg("--alerts")
        .arg(dir.join("replay-alerts.jsonl"))
        .arg("--flows")
        .arg(dir.join("replay-flows.jsonl"))
        .arg("--summary-json")
        .arg(&summary));
    read_json_lines(&summary).pop().expect("summary")
}

/// Captures the scenario live in `mode_args` and holds flows and alerts to the replay's.
fn live_equals_replay(mode_args: &[&str], expect_mode: &str, queues: Queues) {
    if !can_run() {
        return;
    }
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = scenario(dir.path(), 20_000, 10_000);
    let reference = replay_reference(dir.path(), &pcap);
    let tag = expect_mode.get(..4).unwrap_or("live");
    let ns = match queues {
        Queues::One => new_netns(tag),
        Queues::TwoThreads => Netns::with_veth_queues(&format!("opl-{tag}q"), "cap0", "tx0", 2),
    };
    let (alerts, flows, summary) =
        (dir.path().join("alerts.jsonl"), dir.path().join("flows.jsonl"), dir.path().join("summary.json"));
    let mut args = vec!["--workers", "2", "--quiet"];
    args.extend_from_slice(mode_args);
    let (a, f, s) =
        (alerts.display().to_string(), flows.display().to_string(), summary.display().to_string());
    args.extend_from_slice(&["--alerts", &a, "--flows", &f, "--summary-json", &s]);
    let log = Sensor::capture(&ns, &args, &pcap, Duration::from_millis(1500), "-INT");
    if expect_mode.starts_with("xdp") {
        assert!(!ns.link("cap0").contains("prog/xdp"), "XDP program left attached: {}", ns.link("cap0"));
    }

    let live = read_json_lines(&summary).pop().expect("summary");
    let cap = &live["capture"];
    assert_eq!(cap["mode"], expect_mode, "{log:?}");
    assert_eq!(live["frames"], reference["frames"], "every frame captured once: {live}");
    assert_eq!(cap["source_dropped"], 0, "{live}");
    assert!(live["ring_full_drops"].as_array().is_some_and(|d| d.iter().all(|x| x == 0)), "{live}");
    if expect_mode.starts_with("xdp") {
        assert_eq!(cap["xdp"]["redirected"], reference["frames"], "{live}");
        assert_eq!(cap["xdp"]["blocked"], 0);
    }
    if queues == Queues::TwoThreads {
        // Both queues carried traffic, each read by its own thread, which lost nothing.
        let sockets = cap["sockets"].as_array().expect("per-queue counters");
        assert_eq!(sockets.len(), 2, "{live}");
        let frames: Vec<u64> = sockets.iter().map(|s| s["frames"].as_u64().expect("thread frames")).collect();
        assert!(frames.iter().all(|&f| f > 0), "traffic on both queues: {live}");
        assert_eq!(frames.iter().sum::<u64>(), reference["frames"].as_u64().expect("frames"), "{live}");
        assert!(sockets.iter().all(|s| s["chunk_drops"] == 0), "{live}");
    }
    let (want_alerts, got_alerts) =
        (alert_facts(&dir.path().join("replay-alerts.jsonl")), alert_facts(&alerts));
    assert!(!want_alerts.is_empty(), "the scenario raises alerts");
    if queues == Queues::TwoThreads {
        // Frames of one flow share a queue and keep their order; frames of different flows
        // travel on different queues, which have no common order (as with RSS on a NIC),
        // and the seed machine's events of one source are different flows (one port per
        // event). So alerts of order-sensitive rules may differ; only the flows must not.
        assert!(!got_alerts.is_empty(), "the live capture raises alerts");
    } else {
        compare_alerts(&want_alerts, &got_alerts);
    }
    let (want_flows, got_flows) = (flow_sums(&dir.path().join("replay-flows.jsonl")), flow_sums(&flows));
    assert_eq!(got_flows.len(), want_flows.len(), "the same flow keys as replay");
    assert_eq!(got_flows, want_flows, "the same packets and bytes per flow as replay");
}

fn compare_alerts(want_alerts: &BTreeMap<String, u32>, got_alerts: &BTreeMap<String, u32>) {
    let missing: Vec<_> = want_alerts.iter().filter(|(k, v)| got_alerts.get(*k) != Some(v)).collect();
    let extra: Vec<_> = got_alerts.iter().filter(|(k, v)| want_alerts.get(*k) != Some(v)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the same alerts as replay; missing or different {missing:?}, extra {extra:?}"
    );
}

#[test]
fn xdp_native_capture_gives_the_flows_and_alerts_of_replay() {
    live_equals_replay(&["--mode", "xdp", "--xdp-attach", "native"], "xdp-native", Queues::One);
}

#[test]
fn xdp_capture_on_two_queues_reads_each_in_its_own_thread_and_matches_replay() {
    live_equals_replay(&["--mode", "xdp", "--xdp-attach", "native"], "xdp-native", Queues::TwoThreads);
}

#[test]
fn xdp_generic_capture_gives_the_flows_and_alerts_of_replay() {
    live_equals_replay(&["--mode", "xdp", "--xdp-attach", "generic"], "xdp-generic", Queues::One);
}

#[test]
fn af_packet_capture_gives_the_flows_and_alerts_of_replay() {
    live_equals_replay(&["--mode", "af-packet"], "af_packet", Queues::One);
}

#[test]
fn blocklisted_sources_are_dropped_in_xdp_and_counted() {
    if !can_run() {
        return;
    }
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = scenario(dir.path(), 5_000, 5_000);
    // The oracle: tcpdump counts the frames from the blocked prefix and the rest.
    let count = |filter: &str| -> u64 {
        let out =
            Command::new("tcpdump").args(["-n", "-r"]).arg(&pcap).arg(filter).output().expect("tcpdump");
        String::from_utf8_lossy(&out.stdout).lines().count() as u64
    };
    let (blocked, total) = (count("src net 10.1.0.0/16"), count(""));
    assert!(blocked > 0 && blocked < total, "the scenario has traffic from 10.1.0.0/16 and more");
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, "[capture]\nblocklist = [\"10.1.0.0/16\"]\n").expect("config");
    let ns = new_netns("blk");
    let summary = dir.path().join("summary.json");
    let flows = dir.path().join("flows.jsonl");
    let (c, s, f) =
        (config.display().to_string(), summary.display().to_string(), flows.display().to_string());
    let args = [
        "--config",
        &c,
        "--mode",
        "xdp",
        "--quiet",
        "--alerts",
        "/dev/null",
        "--flows",
        &f,
        "--summary-json",
        &s,
    ];
    Sensor::capture(&ns, &args, &pcap, Duration::from_millis(1000), "-TERM");
    let live = read_json_lines(&summary).pop().expect("summary");
    assert_eq!(live["capture"]["xdp"]["blocked"], blocked, "{live}");
    assert_eq!(live["frames"], total - blocked, "the rest arrives: {live}");
    let from_blocked = read_json_lines(&flows)
        .iter()
        .filter(|r| r["sourceIPv4Address"].as_str().is_some_and(|a| a.starts_with("10.1.")))
        .count();
    assert_eq!(from_blocked, 0, "no flow from a blocked source");
}

/// A real `nmap -sn` of its own link (`tests/fixtures/realtools/nmap-neighbor-sweep.pcap`:
/// ARP only) sent over the veth is captured — the XDP program hands ARP to the socket like IP —
/// and raises the `neighbor-sweep` alert naming the sweeper, in XDP and AF_PACKET mode.
#[test]
fn an_arp_sweep_is_captured_live_and_names_the_sweeper() {
    if !can_run() {
        return;
    }
    let _serial = exclusive();
    let pcap =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/realtools/nmap-neighbor-sweep.pcap");
    for (mode, expect_mode) in [("xdp", "xdp-native"), ("af-packet", "af_packet")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ns = new_netns(&format!("arp{}", &mode[..2]));
        let (alerts, summary) = (dir.path().join("alerts.jsonl"), dir.path().join("summary.json"));
        let (a, s) = (alerts.display().to_string(), summary.display().to_string());
        let args = ["--mode", mode, "--quiet", "--alerts", &a, "--flows", "/dev/null", "--summary-json", &s];
        Sensor::capture(&ns, &args, &pcap, Duration::from_millis(1000), "-INT");
        let live = read_json_lines(&summary).pop().expect("summary");
        assert_eq!(live["capture"]["mode"], expect_mode, "{live}");
        assert_eq!(live["frames"], 520, "{mode}: every ARP frame of the sweep: {live}");
        if mode == "xdp" {
            assert_eq!(live["capture"]["xdp"]["redirected"], 520, "{live}");
        }
        let sweeps: Vec<Value> =
            read_json_lines(&alerts).into_iter().filter(|a| a["rule"] == "neighbor-sweep").collect();
        assert_eq!(sweeps.len(), 1, "{mode}: {sweeps:?}");
        assert_eq!(sweeps[0]["src_ip"], "10.66.0.2", "{mode}");
    }
}

/// SIGHUP while capturing: the rules are recompiled and swapped in without a restart. An
/// intel rule that did not change keeps its state — its per-address cooldowns: the second send
/// of the same traffic raises nothing more — also when its list file got new entries (a feed
/// update), a rule added by the reload sees the traffic sent after it, a packet baseline
/// counted from the flows (two workers) measures every packet once across the swap, and a
/// configuration that no longer compiles leaves the running rules in place, with an error
/// that names the file, line and key.
#[test]
fn sighup_reloads_the_rules_while_capturing_and_keeps_unchanged_rules_state() {
    if !can_run() {
        return;
    }
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = scenario(dir.path(), 500, 2_000);
    let (rules_d, intel) = (dir.path().join("rules.d"), dir.path().join("intel"));
    std::fs::create_dir_all(&rules_d).expect("rules.d");
    std::fs::create_dir_all(&intel).expect("intel");
    std::fs::write(intel.join("watch.txt"), "# every address of the scenario\n10.0.0.0/8\n").expect("list");
    let watch = |name: &str| {
        format!(
            "[[intel]]\nname = \"{name}\"\nseverity = \"high\"\ncategory = \"threat-intel\"\n\
             lists = [{{ name = \"watch\", path = \"../intel/watch.txt\" }}]\n\n"
        )
    };
    let rules_file = rules_d.join("watch.toml");
    std::fs::write(&rules_file, watch("watch-a")).expect("rules");
    // A packet baseline without a filter: with flows metered it is counted from the flow
    // table's hand-overs, which a reload turns off and on again around the swap.
    std::fs::write(
        rules_d.join("volume.toml"),
        "[[baseline]]\nname = \"volume\"\nmetric = \"packets\"\nhost = \"both\"\ninterval = \"1s\"\n",
    )
    .expect("rules");
    let config = dir.path().join("outpost.toml");
    std::fs::write(&config, "rule_files = [\"rules.d/*.toml\"]\n").expect("config");
    let ns = new_netns("hup");
    let (alerts, summary) = (dir.path().join("alerts.jsonl"), dir.path().join("summary.json"));
    let (c, a, s) =
        (config.display().to_string(), alerts.display().to_string(), summary.display().to_string());
    // Two workers, flows metered: each frame goes to its pair's and its source's worker.
    let args = ["--config", &c, "--mode", "xdp", "--quiet", "--alerts", &a, "--summary-json", &s];
    let mut sensor = Sensor::start(&ns, &[&args[..], &["--workers", "2", "--flows", "/dev/null"]].concat());
    tcpreplay(&ns, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    // A feed update (a new entry) and a second rule over the same list, then reload.
    std::fs::write(intel.join("watch.txt"), "# every address of the scenario\n10.0.0.0/8\n192.0.2.99\n")
        .expect("list");
    std::fs::write(&rules_file, watch("watch-a") + &watch("watch-b")).expect("rules");
    let mark = sensor.mark();
    sensor.signal("-HUP");
    sensor.wait_for(mark, "rules compiled");
    // The swap happens between two batches: an idle capture still ticks, so it comes soon.
    sensor.wait_for(mark, "rules reloaded (reload 1): 3 rules");
    tcpreplay(&ns, &pcap);
    std::thread::sleep(Duration::from_millis(500));
    // A broken rule file: the reload is refused, the running rules stay.
    std::fs::write(&rules_file, watch("watch-a") + "[[intel]]\nname = \"broken\"\nseverity = 7\n")
        .expect("rules");
    let mark = sensor.mark();
    sensor.signal("-HUP");
    let refused = sensor.wait_for(mark, "the running rules stay");
    assert!(refused.contains("watch.toml") && refused.contains("severity"), "{refused}");
    sensor.signal("-TERM");
    let (status, log) = sensor.wait();
    assert!(status.success(), "{log:?}");
    let live = read_json_lines(&summary).pop().expect("summary");
    assert_eq!(live["rule_reloads"], 1, "{live}");
    let names: Vec<&str> =
        live["rules"].as_array().expect("rules").iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["volume", "watch-a", "watch-b"], "the reloaded rules run to the end");
    // Every IP packet measured once by the baseline, across the reload and both workers.
    let volume = &live["rules"][0]["workers"];
    let ip = live["decode"]["ipv4"].as_u64().unwrap_or(0) + live["decode"]["ipv6"].as_u64().unwrap_or(0);
    assert!(ip > 0, "{live}");
    assert_eq!(volume["packets"].as_u64().unwrap_or(0) + volume["late"].as_u64().unwrap_or(0), ip, "{live}");
    let count = |rule: &str| {
        read_json_lines(&alerts).iter().filter(|x| x["type"] == "alert" && x["rule"] == rule).count()
    };
    let (a_alerts, b_alerts) = (count("watch-a"), count("watch-b"));
    // Both sends carry the same addresses: watch-b (new) alerts for each once, watch-a for
    // each once in all — twice if the reload had reset its cooldowns.
    assert!(b_alerts > 0, "the added rule saw the second send: {log:?}");
    assert_eq!(a_alerts, b_alerts, "watch-a kept its state over the reload");
}

#[test]
fn no_xdp_program_stays_attached_after_exit_or_sigkill() {
    if !can_run() {
        return;
    }
    let _serial = exclusive();
    let ns = new_netns("kill");
    let s =
        Sensor::start(&ns, &["--mode", "xdp", "--xdp-attach", "native", "--quiet", "--alerts", "/dev/null"]);
    assert!(ns.link("cap0").contains("xdp"), "attached while running: {}", ns.link("cap0"));
    s.signal("-KILL");
    let _ = s.wait();
    // The program hangs on a BPF link owned by the process: the kernel detaches it when the
    // process's descriptors close, also on SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ns.link("cap0").contains("prog/xdp") {
        assert!(Instant::now() < deadline, "XDP program still attached after SIGKILL: {}", ns.link("cap0"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A restart attaches again and a normal exit leaves nothing behind.
    let s = Sensor::start(&ns, &["--mode", "xdp", "--quiet", "--alerts", "/dev/null", "--duration", "1s"]);
    let (status, log) = s.wait();
    assert!(status.success(), "{log:?}");
    assert!(!ns.link("cap0").contains("prog/xdp"), "left attached after exit: {}", ns.link("cap0"));
}

#[test]
fn missing_interface_and_interface_flag_errors_are_clear() {
    let out = Command::new(OUTPOST)
        .args(["run", "--interface", "outpost-none0", "--duration", "1s"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outpost-none0") && err.contains("no such network interface"), "{err}");
    let out = Command::new(OUTPOST).args(["run", "--duration", "1s"]).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--interface"), "{err}");
}
