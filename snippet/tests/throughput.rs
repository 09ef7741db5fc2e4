//! How fast one writer thread writes snippets (a measurement, not a check); run with
//! `cargo test -p outpost-snippet --release --test throughput -- --ignored --nocapture`.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod common;

use std::path::Path;
use std::time::Instant;

use common::*;
use outpost_snippet::{PcapSnippetWriter, SnippetConfig, snippet_queue};

fn measure(label: &str, dir: &Path, max_disk_bytes: u64, packets: u64) {
    let n = 2000u64;
    let alerts: Vec<(u128, u64)> = (0..n).map(|i| (u128::from(i) + 1, 100_000 + i)).collect();
    let snippets = make_snippets(&alerts, packets);
    let held = snippets.iter().map(outpost_snippet::Snippet::len).sum::<usize>() / snippets.len();
    let config = SnippetConfig { dir: dir.to_path_buf(), max_disk_bytes, ..SnippetConfig::default() };
    let (tx, rx) = snippet_queue(n as usize);
    let writer = PcapSnippetWriter::spawn(&config, rx).unwrap();
    let start = Instant::now();
    for s in snippets {
        assert!(tx.send(s));
    }
    let stats = writer.finish();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(stats.written, n);
    println!(
        "{label}: {held} packets/snippet, {:.0} B/file: {:.1} µs/snippet ({:.0} snippets/s), {} deleted by quota",
        stats.bytes_on_disk as f64 / stats.files_on_disk as f64,
        secs * 1e6 / n as f64,
        n as f64 / secs,
        stats.deleted_quota
    );
}

#[test]
#[ignore = "measurement"]
fn writer_throughput() {
    for packets in [10, 100] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        measure("target dir", dir.path(), 1 << 40, packets);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        measure("target dir, quota deleting one file per write", dir.path(), 200 * packets * 330, packets);
        if let Some(fs) = TinyTmpfs::mount(256 << 20) {
            measure("tmpfs", fs.path(), 1 << 40, packets);
        }
    }
}
