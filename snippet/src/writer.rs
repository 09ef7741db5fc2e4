//! [`PcapSnippetWriter`]: the thread that writes finished snippets to disk and keeps the
//! snippet directory within its quota; [`snippet_queue`]: the bounded queue workers hand
//! snippets to it through.
//!
//! # Guarantees
//!
//! - Workers never wait: [`SnippetSender::send`] is a `try_send` on a bounded queue; a full
//!   queue drops the snippet and counts it (`dropped_queue_full`).
//! - Files are named by [`crate::snippet_path`] (alert id and the alert's UTC day), so the
//!   alert record can carry the path before the file exists.
//! - A file appears whole or not at all: it is written under a hidden temporary name
//!   (`.<name>.tmp`) in the same directory and renamed into place; a failed write removes the
//!   temporary file. Files are created with mode `0640` and day directories `0750` (before
//!   the umask): they hold captured traffic. Not `fsync`ed: after a power loss a file may be
//!   missing or empty.
//! - Quota: before each write, files whose modification time is more than `max_age` ago
//!   are deleted, then the oldest (by modification time) until the new file fits in
//!   `max_disk_bytes` (the sum of file lengths). A snippet larger than the whole quota is not
//!   written (`too_large`). Files already in the directory at start are counted, and stale
//!   temporary files removed. Age uses the wall clock — the one place in the snippet path
//!   that does: retention is about the real disk, and must hold across restarts and replays
//!   of old captures. Files are only ever deleted from the dated subdirectories, and only
//!   `*.pcapng` and `.*.tmp` files.
//! - Errors (disk full, permissions, a vanished directory) never stop the thread: the
//!   snippet is counted as failed (`write_failed`, and `write_failed_no_space` for `ENOSPC` /
//!   `EDQUOT`), the last error is kept in the stats, and the next snippet is tried afresh.
//! - A snippet whose file exists already (written earlier in this run, or by an earlier run
//!   of the same input, since alert ids are deterministic) is not written again
//!   (`already_written`).
//!
//! # Why a plain thread
//!
//! A snippet is a few kilobytes to a few megabytes written once, at alert rate (after the
//! alert policy). Measured (`writer_throughput`, an ignored test, release build, 2,000
//! snippets of 2–12 KB): 38–56 µs per file on ext4, with or without one quota deletion per
//! write, 16–26 µs on tmpfs: about 20,000 files per second from one thread. `strace -c`
//! shows the time in `openat(O_CREAT)`, `rename` and `unlink` (file-system metadata), not in
//! `write`; io_uring would move those calls off this thread, which is already off the
//! workers, without making them cheaper. So: a plain thread, one `write_all` per file.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use outpost_decode::Nanos;
use serde::Serialize;

use crate::config::{SnippetConfig, snippet_path};
use crate::pcapng;
use crate::snippet::Snippet;

/// A setup error of the writer.
#[derive(Debug, thiserror::Error)]
pub enum SnippetError {
    /// The snippet directory could not be created or read.
    #[error("snippet directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("starting the snippet writer thread: {0}")]
    Thread(io::Error),
}

/// Counters of the queue and the writer (the writer's are updated after each snippet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Snippets accepted into the queue.
    pub queued: u64,
    /// Snippets dropped because the queue was full (or the writer had stopped).
    pub dropped_queue_full: u64,
    /// Snippet files written.
    pub written: u64,
    /// Snippets not written because their file exists already.
    pub already_written: u64,
    /// Snippets not written because they alone exceed `max_disk_bytes`.
    pub too_large: u64,
    /// Snippets that could not be written (any I/O error).
    pub write_failed: u64,
    /// Of `write_failed`: no space left on the device, or disk quota exceeded.
    pub write_failed_no_space: u64,
    /// Files deleted to keep `max_disk_bytes`.
    pub deleted_quota: u64,
    /// Files deleted for being older than `max_age`.
    pub deleted_age: u64,
    /// Files that could not be deleted (no longer counted on disk).
    pub delete_failed: u64,
    /// Snippet files in the directory now (a gauge).
    pub files_on_disk: u64,
    /// Their total length in bytes (a gauge).
    pub bytes_on_disk: u64,
    /// The last write or delete error, if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    queued: AtomicU64,
    dropped_queue_full: AtomicU64,
    written: AtomicU64,
    already_written: AtomicU64,
    too_large: AtomicU64,
    write_failed: AtomicU64,
    write_failed_no_space: AtomicU64,
    deleted_quota: AtomicU64,
    deleted_age: AtomicU64,
    delete_failed: AtomicU64,
    files_on_disk: AtomicU64,
    bytes_on_disk: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn snapshot(&self) -> WriterStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            queued: get(&self.queued),
            dropped_queue_full: get(&self.dropped_queue_full),
            written: get(&self.written),
            already_written: get(&self.already_written),
            too_large: get(&self.too_large),
            write_failed: get(&self.write_failed),
            write_failed_no_space: get(&self.write_failed_no_space),
            deleted_quota: get(&self.deleted_quota),
            deleted_age: get(&self.deleted_age),
            delete_failed: get(&self.delete_failed),
            files_on_disk: get(&self.files_on_disk),
            bytes_on_disk: get(&self.bytes_on_disk),
            last_error: self.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    fn add(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, what: &str, path: &Path, e: &io::Error) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(format!("{what} {}: {e}", path.display()));
    }
}

#[derive(Debug)]
enum Msg {
    Snippet(Snippet),
    Stop,
}

/// The senders' end of the snippet queue; clone one per sending thread.
#[derive(Debug, Clone)]
pub struct SnippetSender {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl SnippetSender {
    /// Hands a finished snippet to the writer without ever waiting: returns false, and counts
    /// the snippet as dropped, when the queue is full or the writer has stopped.
    pub fn send(&self, snippet: Snippet) -> bool {
        match self.tx.try_send(Msg::Snippet(snippet)) {
            Ok(()) => {
                Shared::add(&self.shared.queued);
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Shared::add(&self.shared.dropped_queue_full);
                false
            }
        }
    }

    /// Hands a finished snippet to the writer, waiting for room in the queue: for offline
    /// replay, where nothing may be lost and waiting only slows the input down. Returns false
    /// (counted as dropped) only when the writer has stopped.
    pub fn send_wait(&self, snippet: Snippet) -> bool {
        if self.tx.send(Msg::Snippet(snippet)).is_ok() {
            Shared::add(&self.shared.queued);
            true
        } else {
            Shared::add(&self.shared.dropped_queue_full);
            false
        }
    }
}

/// The writer's end of the snippet queue; give it to [`PcapSnippetWriter::spawn`].
#[derive(Debug)]
pub struct SnippetReceiver {
    rx: Receiver<Msg>,
    stop: SyncSender<Msg>,
    shared: Arc<Shared>,
}

/// A bounded queue of `capacity` snippets (at least 1) from the workers to the writer.
#[must_use]
pub fn snippet_queue(capacity: usize) -> (SnippetSender, SnippetReceiver) {
    let (tx, rx) = sync_channel(capacity.max(1));
    let shared = Arc::new(Shared::default());
    (SnippetSender { tx: tx.clone(), shared: shared.clone() }, SnippetReceiver { rx, stop: tx, shared })
}

/// The snippet writer thread; see the module documentation for its guarantees.
#[derive(Debug)]
pub struct PcapSnippetWriter {
    dir: PathBuf,
    stop: SyncSender<Msg>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl PcapSnippetWriter {
    /// Creates `config.dir` if needed, accounts for the snippet files already in it (deleting
    /// stale temporary files and whatever the quota no longer allows), and starts the thread
    /// that writes the snippets arriving on `queue`.
    ///
    /// # Errors
    /// The directory cannot be created or read, or the thread cannot be started.
    pub fn spawn(config: &SnippetConfig, queue: SnippetReceiver) -> Result<PcapSnippetWriter, SnippetError> {
        let dir = config.dir.clone();
        let mut disk = Disk {
            dir: dir.clone(),
            max_bytes: config.max_disk_bytes,
            max_age: std::time::Duration::from(config.max_age.0),
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            seq: 0,
            total: 0,
            buf: Vec::new(),
            shared: queue.shared.clone(),
        };
        disk.scan().map_err(|source| SnippetError::Dir { path: dir.clone(), source })?;
        disk.prune(SystemTime::now(), 0);
        disk.publish();
        let interval =
            std::time::Duration::from(config.prune_interval.0).max(std::time::Duration::from_millis(1));
        let rx = queue.rx;
        let thread = std::thread::Builder::new()
            .name("snippet-writer".into())
            .spawn(move || {
                loop {
                    match rx.recv_timeout(interval) {
                        Ok(Msg::Snippet(s)) => disk.write(&s),
                        Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                        Err(RecvTimeoutError::Timeout) => disk.prune(SystemTime::now(), 0),
                    }
                    disk.publish();
                }
            })
            .map_err(SnippetError::Thread)?;
        Ok(PcapSnippetWriter { dir, stop: queue.stop, shared: queue.shared, thread: Some(thread) })
    }

    /// The file the snippet of alert `alert_id` at capture time `alert_ts` goes to.
    #[must_use]
    pub fn path_for(&self, alert_id: u128, alert_ts: Nanos) -> PathBuf {
        snippet_path(&self.dir, alert_id, alert_ts)
    }

    /// Counters now.
    #[must_use]
    pub fn stats(&self) -> WriterStats {
        self.shared.snapshot()
    }

    /// Writes every snippet queued so far, stops the thread and returns the final counters.
    /// Snippets sent afterwards are dropped (counted). Call it once the workers have handed
    /// over their last snippets ([`crate::PacketHistory::finish`]).
    #[must_use]
    pub fn finish(mut self) -> WriterStats {
        self.stop_thread();
        self.shared.snapshot()
    }

    fn stop_thread(&mut self) {
        if let Some(t) = self.thread.take() {
            // A blocking send: waits for room behind the queued snippets. Fails only if the
            // thread is gone, which join then reports.
            let _ = self.stop.send(Msg::Stop);
            let _ = t.join();
        }
    }
}

impl Drop for PcapSnippetWriter {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

#[derive(Debug)]
struct FileEntry {
    path: PathBuf,
    size: u64,
}

/// The writer thread's view of the snippet directory.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    max_bytes: u64,
    max_age: std::time::Duration,
    /// Files by (modification time, arrival), oldest first.
    files: BTreeMap<(SystemTime, u64), FileEntry>,
    by_path: HashMap<PathBuf, (SystemTime, u64)>,
    seq: u64,
    total: u64,
    /// The encoded snippet (reused).
    buf: Vec<u8>,
    shared: Arc<Shared>,
}

/// `YYYY-MM-DD`.
fn is_day_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

/// Creates (or truncates) `path` readable by owner and group only: snippets hold captured
/// traffic.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(path)
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

impl Disk {
    fn scan(&mut self) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o750).create(&self.dir)?;
        for day in fs::read_dir(&self.dir)? {
            let day = day?;
            let Some(name) = day.file_name().to_str().map(str::to_owned) else { continue };
            if !is_day_name(&name) || !day.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(day.path())? {
                let f = f?;
                let Some(name) = f.file_name().to_str().map(str::to_owned) else { continue };
                if !f.file_type()?.is_file() {
                    continue;
                }
                if name.starts_with('.') && name.ends_with(".tmp") {
                    // Left by a write that was interrupted: never a complete file.
                    let _ = fs::remove_file(f.path());
                } else if name.ends_with(".pcapng") {
                    let meta = f.metadata()?;
                    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    self.add(f.path(), meta.len(), mtime);
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, path: PathBuf, size: u64, mtime: SystemTime) {
        let key = (mtime, self.seq);
        self.seq += 1;
        self.by_path.insert(path.clone(), key);
        self.files.insert(key, FileEntry { path, size });
        self.total += size;
    }

    fn publish(&self) {
        self.shared.files_on_disk.store(self.files.len() as u64, Ordering::Relaxed);
        self.shared.bytes_on_disk.store(self.total, Ordering::Relaxed);
    }

    /// Deletes files past `max_age`, then the oldest until `incoming` more bytes fit.
    fn prune(&mut self, now: SystemTime, incoming: u64) {
        if !self.max_age.is_zero() {
            while let Some((&(mtime, seq), _)) = self.files.first_key_value() {
                let age = now.duration_since(mtime).unwrap_or_default();
                if age <= self.max_age {
                    break;
                }
                self.delete((mtime, seq));
                Shared::add(&self.shared.deleted_age);
            }
        }
        while self.total.saturating_add(incoming) > self.max_bytes {
            let Some((&key, _)) = self.files.first_key_value() else { break };
            self.delete(key);
            Shared::add(&self.shared.deleted_quota);
        }
    }

    fn delete(&mut self, key: (SystemTime, u64)) {
        let Some(f) = self.files.remove(&key) else { return };
        self.by_path.remove(&f.path);
        self.total = self.total.saturating_sub(f.size);
        match fs::remove_file(&f.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                Shared::add(&self.shared.delete_failed);
                self.shared.error("deleting", &f.path, &e);
            }
        }
        if let Some(day) = f.path.parent() {
            // Fails while the day still holds files; that is the point.
            let _ = fs::remove_dir(day);
        }
    }

    fn write(&mut self, s: &Snippet) {
        let path = snippet_path(&self.dir, s.alert_id(), s.alert_ts());
        if self.by_path.contains_key(&path) {
            Shared::add(&self.shared.already_written);
            return;
        }
        pcapng::encode(s, &mut self.buf);
        let len = self.buf.len() as u64;
        if len > self.max_bytes {
            Shared::add(&self.shared.too_large);
            return;
        }
        self.prune(SystemTime::now(), len);
        let Some((day, name)) = path.parent().zip(path.file_name()) else { return };
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".tmp");
        let tmp = day.join(tmp_name);
        // The day's directory usually exists: create it only when the file cannot be.
        let result = match create_private(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new().recursive(true).mode(0o750).create(day).and_then(|()| create_private(&tmp))
            }
            other => other,
        }
        .and_then(|mut f| f.write_all(&self.buf))
        .and_then(|()| fs::rename(&tmp, &path));
        match result {
            Ok(()) => {
                let mtime =
                    fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
                self.add(path, len, mtime);
                Shared::add(&self.shared.written);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Shared::add(&self.shared.write_failed);
                if is_no_space(&e) {
                    Shared::add(&self.shared.write_failed_no_space);
                }
                self.shared.error("writing", &path, &e);
            }
        }
    }
}
