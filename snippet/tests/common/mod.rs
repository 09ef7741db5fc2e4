//! Helpers of the snippet integration tests: real frames, the worker-side loop, tcpdump and
//! tshark as oracles, a tiny tmpfs.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_decode::{Duration, IpAddress, Nanos, decode};
use outpost_snippet::{PacketHistory, SnippetSender};
use outpost_tools::frame::{FrameBuilder, tcp};

/// 2026-03-14T12:00:00Z.
pub const T0: u64 = 1_773_489_600;

pub fn at_ms(ms: u64) -> Nanos {
    Nanos::from_secs(T0).saturating_add(Duration::from_millis(ms))
}

/// An Ethernet/IP/TCP SYN from `src` with `payload` bytes of payload.
pub fn syn(src: &str, dst: &str, dport: u16, payload: usize) -> Vec<u8> {
    let src: IpAddr = src.parse().unwrap();
    let dst: IpAddr = dst.parse().unwrap();
    FrameBuilder::new(src, dst, tcp(40_000, dport, 0x02, 1, 0)).payload(&vec![0xab; payload]).build()
}

/// One captured frame of a test input.
#[derive(Debug, Clone)]
pub struct Captured {
    pub ts: Nanos,
    pub data: Vec<u8>,
}

/// An alert the "detector" raises right after the frame at `ts` from `key`.
#[derive(Debug, Clone, Copy)]
pub struct TestAlert {
    pub id: u128,
    pub key: IpAddress,
    pub ts: Nanos,
}

/// What a worker does with the history: decode each frame, record it under its source
/// address, raise the alerts due, tick the clock every 100 ms of capture time, and hand
/// finished snippets to `sender`. Returns how many snippets were sent.
pub fn run_worker(
    history: &mut PacketHistory,
    sender: &SnippetSender,
    input: &[Captured],
    alerts: &[TestAlert],
) {
    let mut next_tick = input.first().map_or(Nanos::ZERO, |c| c.ts);
    let mut emit = |s| {
        assert!(sender.send(s), "queue full");
    };
    for c in input {
        while c.ts >= next_tick {
            history.on_clock(next_tick, &mut emit);
            next_tick = next_tick.saturating_add(Duration::from_millis(100));
        }
        let meta = decode(outpost_decode::LinkType::Ethernet, &c.data, c.ts, c.data.len() as u32).unwrap();
        history.record(meta.src, outpost_decode::LinkType::Ethernet, c.ts, meta.wire_len, &c.data);
        for a in alerts.iter().filter(|a| a.ts == c.ts && a.key == meta.src) {
            history.on_alert(a.id, a.key, a.ts, "test-rule", &mut emit);
        }
    }
    history.finish(&mut emit);
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `tcpdump -nn -tt -r FILE`, one line per packet.
pub fn tcpdump(path: &Path) -> Vec<String> {
    run("tcpdump", &["-nn", "-tt", "-r", path.to_str().unwrap()]).lines().map(str::to_owned).collect()
}

/// `tshark -r FILE -T fields -e ...`, one row per packet.
pub fn tshark(path: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-r", path.to_str().unwrap(), "-T", "fields", "-E", "separator=|"];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    run("tshark", &args).lines().map(|l| l.split('|').map(str::to_owned).collect()).collect()
}

/// The section comment, as `capinfos -k` shows it.
pub fn capinfos_comment(path: &Path) -> String {
    run("capinfos", &["-k", path.to_str().unwrap()])
}

/// Nanoseconds as tshark prints `frame.time_epoch` for a nanosecond file.
pub fn epoch(ts: Nanos) -> String {
    format!("{}.{:09}", ts.secs(), ts.subsec_nanos())
}

/// The `*.pcapng` files under `dir` (recursively), sorted.
pub fn snippet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

/// A tmpfs of `size` bytes mounted on a fresh directory, unmounted on drop (also when a test
/// fails). `None` when mounting is not permitted (not root, no CAP_SYS_ADMIN).
#[derive(Debug)]
pub struct TinyTmpfs {
    pub dir: tempfile::TempDir,
}

impl TinyTmpfs {
    pub fn mount(size: usize) -> Option<TinyTmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.path().to_str().unwrap()])
            .status()
            .ok()?;
        status.success().then_some(TinyTmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// One finished snippet per `(alert id, alert time in ms after T0)`, each holding `packets`
/// real frames of its own source (the frames up to the alert time).
pub fn make_snippets(alerts: &[(u128, u64)], packets: u64) -> Vec<outpost_snippet::Snippet> {
    let config = outpost_snippet::SnippetConfig { memory_bytes: 8 << 20, ..Default::default() };
    let mut h = PacketHistory::new(&config);
    let mut out = Vec::new();
    for (n, &(id, ms)) in alerts.iter().enumerate() {
        let src = format!("10.9.{}.{}", n / 250, n % 250 + 1);
        let key = IpAddress::from(src.parse::<IpAddr>().unwrap());
        let frame = syn(&src, "203.0.113.1", 80, 100);
        for p in (0..packets).rev() {
            h.record(key, outpost_decode::LinkType::Ethernet, at_ms(ms - p), frame.len() as u32, &frame);
        }
        h.on_alert(id, key, at_ms(ms), "test-rule", &mut |s| out.push(s));
    }
    h.finish(&mut |s| out.push(s));
    out.sort_by_key(outpost_snippet::Snippet::alert_id);
    out
}

/// Waits (up to 10 s) until `cond` holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
