//! The attack generator streams: every attack — half a million flood packets among them —
//! mixed into fifty thousand benign flows goes through in memory bounded by the attacks'
//! in-flight packets and the mix's concurrency, not by the packets written. This test runs
//! alone in its own process so the peak resident size it reads is its own.

use std::io;

use outpost_tools::attack::{AttacksParams, generate};
use outpost_tools::mix::MixParams;

/// Peak resident set size of this process in KiB (`VmHWM` of /proc/self/status).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn every_attack_in_fifty_thousand_flows_streams_in_bounded_memory() {
    let p = AttacksParams {
        benign: MixParams { flows: 50_000, concurrency: 1_000, clients: 10_000, ..MixParams::default() },
        ..AttacksParams::default()
    };
    let start = std::time::Instant::now();
    let summary = generate(&p, io::sink(), Some(io::sink()), Some(io::sink())).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.benign.flows, 50_000);
    assert!(summary.attack_packets > 500_000, "{summary}");
    // Hundreds of megabytes of frames went through; the process must not have held them.
    assert!(summary.frame_bytes > 250_000_000, "{summary}");
    // A flood is expanded a packet at a time; the largest script (the volume spike's upload)
    // holds some thousands.
    assert!(summary.peak_pending < 20_000, "{}", summary.peak_pending);
    if let Some(peak) = peak_rss_kib() {
        assert!(peak < 64 * 1024, "peak RSS {peak} KiB for a streaming generator");
    }
    eprintln!(
        "attacks: {} packets ({} attack), {} MB of frames in {:.2?}, peak pending {}, peak RSS {:?} KiB",
        summary.packets,
        summary.attack_packets,
        summary.frame_bytes / 1_000_000,
        elapsed,
        summary.peak_pending,
        peak_rss_kib()
    );
}
