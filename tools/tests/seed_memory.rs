//! The seed generator streams: two million events go through in bounded memory. This test runs
//! alone in its own process so the peak resident size it reads is its own.

use std::io;

use outpost_tools::seed::{SeedParams, generate};

/// Peak resident set size of this process in KiB (`VmHWM` of /proc/self/status).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn two_million_events_stream_in_bounded_memory() {
    let p = SeedParams {
        events: 2_000_000,
        clients: 10_000,
        error_prob: 0.01,
        noise: 0.1,
        ..SeedParams::default()
    };
    let mut truth = io::sink();
    let start = std::time::Instant::now();
    let summary = generate(&p, io::sink(), Some(&mut truth)).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.events, 2_000_000);
    assert!(summary.noise_packets > 150_000);
    assert!(summary.invalid > 15_000);
    // About 190 MB of frames went through; the process must not have held them.
    assert!(summary.frame_bytes > 150_000_000);
    if let Some(peak) = peak_rss_kib() {
        assert!(peak < 64 * 1024, "peak RSS {peak} KiB for a streaming generator");
    }
    eprintln!(
        "seed: {} packets, {} MB of frames in {:.2?} ({:.2} M packets/s)",
        summary.packets,
        summary.frame_bytes / 1_000_000,
        elapsed,
        summary.packets as f64 / elapsed.as_secs_f64() / 1e6
    );
}
