//! The mix generator streams: a hundred thousand flows (over a million packets) go through in
//! memory bounded by the concurrency, not the flows. This test runs alone in its own process so
//! the peak resident size it reads is its own.

use std::io;

use outpost_tools::mix::{MixParams, generate};

/// Peak resident set size of this process in KiB (`VmHWM` of /proc/self/status).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_hundred_thousand_flows_stream_in_bounded_memory() {
    let p = MixParams { flows: 100_000, concurrency: 2_000, clients: 20_000, ..MixParams::default() };
    let mut truth = io::sink();
    let start = std::time::Instant::now();
    let summary = generate(&p, io::sink(), Some(&mut truth)).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.flows, 100_000);
    assert!(summary.packets > 1_000_000, "{summary}");
    // Hundreds of megabytes of frames went through; the process must not have held them.
    assert!(summary.frame_bytes > 300_000_000, "{summary}");
    if let Some(peak) = peak_rss_kib() {
        assert!(peak < 64 * 1024, "peak RSS {peak} KiB for a streaming generator");
    }
    eprintln!(
        "mix: {} flows, {} packets, {} MB of frames in {:.2?} ({:.2} M packets/s)",
        summary.flows,
        summary.packets,
        summary.frame_bytes / 1_000_000,
        elapsed,
        summary.packets as f64 / elapsed.as_secs_f64() / 1e6
    );
}
