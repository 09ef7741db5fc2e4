//! The snippet directory's quota: total size and age, oldest files deleted first, files of
//! earlier runs counted, a disk that is full or a directory that cannot be written.

#![expect(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

mod common;

use std::fs::{self, File};
use std::path::Path;
use std::time::{Duration, SystemTime};

use common::*;
use outpost_decode::Duration as EventDuration;
use outpost_snippet::{PcapSnippetWriter, SnippetConfig, SnippetDuration, snippet_queue};

fn config(dir: &Path) -> SnippetConfig {
    SnippetConfig { dir: dir.to_path_buf(), ..SnippetConfig::default() }
}

fn set_mtime(path: &Path, age: Duration) {
    File::options().write(true).open(path).unwrap().set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn size_quota_deletes_the_oldest_files_first() {
    let dir = tempfile::tempdir().unwrap();
    let snippets = make_snippets(&[(1, 1000), (2, 2000), (3, 3000), (4, 4000), (5, 5000), (6, 6000)], 10);
    let mut c = config(dir.path());
    // Each file is the same size (same packets, same-length comment): room for three and a half.
    let probe = {
        let d = tempfile::tempdir().unwrap();
        let (tx, rx) = snippet_queue(1);
        let w = PcapSnippetWriter::spawn(&config(d.path()), rx).unwrap();
        assert!(tx.send(snippets[0].clone()));
        w.finish().bytes_on_disk
    };
    c.max_disk_bytes = probe * 7 / 2;
    let (tx, rx) = snippet_queue(16);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    for s in snippets {
        assert!(tx.send(s));
    }
    let stats = writer.finish();
    assert_eq!((stats.written, stats.deleted_quota, stats.files_on_disk), (6, 3, 3), "{stats:?}");
    assert!(stats.bytes_on_disk <= c.max_disk_bytes);
    let kept: Vec<_> = [4u128, 5, 6].iter().map(|&id| c.path_for(id, at_ms(id as u64 * 1000))).collect();
    assert_eq!(snippet_files(dir.path()), kept);
}

#[test]
fn files_of_earlier_runs_count_toward_the_quota_and_stale_temporary_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    // An earlier run left three snippets, a half-written temporary file, and files that are
    // not ours.
    let (tx, rx) = snippet_queue(8);
    let w = PcapSnippetWriter::spawn(&c, rx).unwrap();
    for s in make_snippets(&[(1, 1000), (2, 2000), (3, 3000)], 10) {
        assert!(tx.send(s));
    }
    let size = w.finish().bytes_on_disk / 3;
    let day = dir.path().join("2026-03-14");
    for (id, hours) in [(1u128, 3), (2, 2), (3, 1)] {
        set_mtime(&c.path_for(id, at_ms(id as u64 * 1000)), Duration::from_secs(hours * 3600));
    }
    fs::write(day.join(".00000000000000000000000000000009.pcapng.tmp"), b"partial").unwrap();
    fs::write(day.join("notes.txt"), b"operator notes").unwrap();
    fs::create_dir(dir.path().join("archive")).unwrap();
    fs::write(dir.path().join("archive/old.pcapng"), vec![0u8; 10_000]).unwrap();

    let c = SnippetConfig { max_disk_bytes: size * 7 / 2, ..c };
    let (tx, rx) = snippet_queue(8);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    let at_start = writer.stats();
    assert_eq!((at_start.files_on_disk, at_start.bytes_on_disk), (3, 3 * size));
    assert!(!day.join(".00000000000000000000000000000009.pcapng.tmp").exists());
    assert!(tx.send(make_snippets(&[(4, 4000)], 10).remove(0)));
    let stats = writer.finish();
    // The oldest earlier file made room for the new one.
    assert_eq!((stats.written, stats.deleted_quota, stats.files_on_disk), (1, 1, 3), "{stats:?}");
    assert!(!c.path_for(1, at_ms(1000)).exists());
    assert!(c.path_for(2, at_ms(2000)).exists() && c.path_for(4, at_ms(4000)).exists());
    // What is not a snippet file is left alone.
    assert!(day.join("notes.txt").exists() && dir.path().join("archive/old.pcapng").exists());
}

#[test]
fn files_older_than_max_age_are_deleted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (tx, rx) = snippet_queue(8);
    let w = PcapSnippetWriter::spawn(&c, rx).unwrap();
    for s in make_snippets(&[(1, 1000), (2, 2000), (3, 3000)], 2) {
        assert!(tx.send(s));
    }
    assert_eq!(w.finish().files_on_disk, 3);
    set_mtime(&c.path_for(1, at_ms(1000)), Duration::from_secs(8 * 86_400));
    set_mtime(&c.path_for(2, at_ms(2000)), Duration::from_secs(7 * 86_400 + 60));
    set_mtime(&c.path_for(3, at_ms(3000)), Duration::from_secs(6 * 86_400));

    // Default max_age: 7 days.
    let (_tx, rx) = snippet_queue(8);
    let stats = PcapSnippetWriter::spawn(&c, rx).unwrap().finish();
    assert_eq!((stats.deleted_age, stats.deleted_quota, stats.files_on_disk), (2, 0, 1));
    assert_eq!(snippet_files(dir.path()), [c.path_for(3, at_ms(3000))]);
}

#[test]
fn files_older_than_max_age_are_deleted_while_running_and_empty_days_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = SnippetConfig {
        max_age: SnippetDuration(EventDuration::from_millis(300)),
        prune_interval: SnippetDuration(EventDuration::from_millis(20)),
        ..config(dir.path())
    };
    let (tx, rx) = snippet_queue(8);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    assert!(tx.send(make_snippets(&[(1, 1000)], 2).remove(0)));
    wait_until("the file", || writer.stats().written == 1);
    let path = c.path_for(1, at_ms(1000));
    assert!(path.exists());
    // No further snippet arrives: the periodic check deletes it.
    wait_until("deletion by age", || writer.stats().deleted_age == 1);
    assert!(!path.exists());
    assert!(!dir.path().join("2026-03-14").exists(), "empty day directory left behind");
    let stats = writer.finish();
    assert_eq!((stats.files_on_disk, stats.bytes_on_disk), (0, 0));
}

#[test]
fn snippet_larger_than_the_whole_quota_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = SnippetConfig { max_disk_bytes: 500, ..config(dir.path()) };
    let (tx, rx) = snippet_queue(8);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    for s in make_snippets(&[(1, 1000), (2, 2000)], 20) {
        assert!(tx.send(s));
    }
    let stats = writer.finish();
    assert_eq!((stats.too_large, stats.written, stats.files_on_disk), (2, 0, 0));
}

#[test]
fn full_disk_counts_failures_keeps_running_and_writes_again_when_space_returns() {
    let Some(fs) = TinyTmpfs::mount(64 * 1024) else {
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)");
        return;
    };
    let dir = fs.path().join("snippets");
    let c = config(&dir);
    let (tx, rx) = snippet_queue(8);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    let mut snippets = make_snippets(&[(1, 1000), (2, 2000), (3, 3000)], 40).into_iter();

    // Something else fills the disk.
    let filler = fs.path().join("filler");
    let written = {
        use std::io::Write;
        let mut f = File::create(&filler).unwrap();
        let block = [0u8; 4096];
        let mut n = 0;
        while f.write_all(&block).is_ok() {
            n += 1;
        }
        n
    };
    assert!(written > 0);

    assert!(tx.send(snippets.next().unwrap()));
    assert!(tx.send(snippets.next().unwrap()));
    wait_until("two failures", || writer.stats().write_failed == 2);
    let stats = writer.stats();
    assert_eq!((stats.write_failed_no_space, stats.written, stats.files_on_disk), (2, 0, 0), "{stats:?}");
    assert!(stats.last_error.as_deref().is_some_and(|e| e.contains("No space left")), "{stats:?}");
    // Nothing half-written is left, not even the temporary file.
    assert!(snippet_files(&dir).is_empty(), "{:?}", snippet_files(&dir));

    // Space comes back: the writer is still there and writes the next snippet.
    fs::remove_file(&filler).unwrap();
    assert!(tx.send(snippets.next().unwrap()));
    let stats = writer.finish();
    assert_eq!((stats.written, stats.write_failed, stats.files_on_disk), (1, 2, 1), "{stats:?}");
    let p = c.path_for(3, at_ms(3000));
    assert_eq!(tcpdump(&p).len(), 40);
    assert_eq!(tshark(&p, &["ip.src"]).len(), 40);
}

#[test]
fn unwritable_day_directory_counts_failures_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let (tx, rx) = snippet_queue(8);
    let writer = PcapSnippetWriter::spawn(&c, rx).unwrap();
    // A plain file where the day's directory should go (works as root, unlike chmod).
    let day = dir.path().join("2026-03-14");
    fs::write(&day, b"in the way").unwrap();
    let mut snippets = make_snippets(&[(1, 1000), (2, 2000)], 3).into_iter();
    assert!(tx.send(snippets.next().unwrap()));
    wait_until("the failure", || writer.stats().write_failed == 1);
    assert_eq!(writer.stats().write_failed_no_space, 0);
    fs::remove_file(&day).unwrap();
    assert!(tx.send(snippets.next().unwrap()));
    let stats = writer.finish();
    assert_eq!((stats.written, stats.write_failed), (1, 1));
    assert!(c.path_for(2, at_ms(2000)).exists());
}
