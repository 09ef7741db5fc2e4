//! A local, append-only, size-bounded spool of records on disk: where the Kafka sink
//! ([`crate::kafka`]) puts what it cannot hand to the broker now, and what it replays from
//! when the broker is back.
//!
//! # Layout
//! One directory holds a `lock` file (an exclusive `flock`, so two processes never share a
//! spool) and one log per [`RecordKind`] in its own subdirectory (`alerts/`, `flows/`,
//! `alert-windows/`). A log is a sequence of segment files (`{id:016x}.seg`, ids increasing)
//! and a `cursor` file. Each segment starts with an 8-byte magic and then holds frames:
//!
//! ```text
//! u32 LE  body length n
//! u64 LE  xxh3-64 of the body, seeded with n (so a damaged length fails the check too)
//! body:   u8 kind (1 alert, 2 flow, 3 alert window) | u32 LE key length k | key (k) | value (n - 5 - k)
//! ```
//!
//! # Guarantees
//! - **Order.** Records of one kind are read back in the order they were appended. Kinds are
//!   independent logs (each goes to its own topic), so there is no order across kinds.
//! - **Crash safety.** A frame that is torn (a crash in the middle of a write, or data the OS
//!   had not written before a power loss) fails its length or checksum check when the spool
//!   is opened: the segment is truncated there, counted in [`SpoolStats::torn_tails`] and
//!   [`SpoolStats::torn_bytes`], and nothing after it in that segment is read. A torn frame is
//!   never returned as a record.
//! - **Durability** depends on [`FsyncPolicy`]: every policy survives the death of the
//!   process (`kill -9`), because each append is one `write(2)` into the page cache before
//!   [`Spool::append`] returns; only [`FsyncPolicy::Always`] also survives an OS crash or a
//!   power loss for every record.
//! - **At least once.** Reading does not remove anything. The read cursor only moves when
//!   the reader acknowledges delivery ([`Spool::ack`]) and is persisted in the `cursor` file;
//!   after a restart reading resumes there, so records read and delivered but not yet
//!   acknowledged (or whose acknowledgement had not reached the disk) are read again.
//!   Segments wholly behind the cursor are deleted.
//! - **Bounded.** The segment files of all kinds together never exceed
//!   [`SpoolConfig::max_bytes`]. When a record does not fit, [`FullPolicy`] decides what is
//!   lost, and every lost record is counted by kind ([`SpoolStats::refused`],
//!   [`SpoolStats::evicted`]).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What a record is; each kind has its own log in the spool and its own Kafka topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// An alert (JSON from the detector).
    Alert,
    /// A flow record.
    Flow,
    /// An alert-window summary.
    AlertWindow,
}

impl RecordKind {
    /// Every kind, in priority order (alerts first).
    pub const ALL: [RecordKind; 3] = [RecordKind::Alert, RecordKind::AlertWindow, RecordKind::Flow];

    /// 0, 1 or 2: a dense index for per-kind arrays.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            RecordKind::Alert => 0,
            RecordKind::Flow => 1,
            RecordKind::AlertWindow => 2,
        }
    }

    /// The kind with this [`RecordKind::index`].
    #[must_use]
    pub const fn from_index(index: usize) -> Option<RecordKind> {
        match index {
            0 => Some(RecordKind::Alert),
            1 => Some(RecordKind::Flow),
            2 => Some(RecordKind::AlertWindow),
            _ => None,
        }
    }

    /// The name used in statistics and messages: `alert`, `flow`, `alert_window`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Alert => "alert",
            RecordKind::Flow => "flow",
            RecordKind::AlertWindow => "alert_window",
        }
    }

    const fn code(self) -> u8 {
        match self {
            RecordKind::Alert => 1,
            RecordKind::Flow => 2,
            RecordKind::AlertWindow => 3,
        }
    }

    const fn dir_name(self) -> &'static str {
        match self {
            RecordKind::Alert => "alerts",
            RecordKind::Flow => "flows",
            RecordKind::AlertWindow => "alert-windows",
        }
    }
}

/// One counter per [`RecordKind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    /// Alerts.
    pub alerts: u64,
    /// Flow records.
    pub flows: u64,
    /// Alert windows.
    pub alert_windows: u64,
}

impl KindCounts {
    /// The count for `kind`.
    #[must_use]
    pub fn get(&self, kind: RecordKind) -> u64 {
        match kind {
            RecordKind::Alert => self.alerts,
            RecordKind::Flow => self.flows,
            RecordKind::AlertWindow => self.alert_windows,
        }
    }

    /// Adds `n` to the count for `kind` (saturating).
    pub fn add(&mut self, kind: RecordKind, n: u64) {
        let c = match kind {
            RecordKind::Alert => &mut self.alerts,
            RecordKind::Flow => &mut self.flows,
            RecordKind::AlertWindow => &mut self.alert_windows,
        };
        *c = c.saturating_add(n);
    }

    /// The sum over all kinds.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.alerts.saturating_add(self.flows).saturating_add(self.alert_windows)
    }

    /// The element-wise sum.
    #[must_use]
    pub fn plus(mut self, other: KindCounts) -> KindCounts {
        for kind in RecordKind::ALL {
            self.add(kind, other.get(kind));
        }
        self
    }
}

/// When the spool calls `fsync` (`fdatasync`) on its segment files.
///
/// In TOML: `fsync = "always"`, `fsync = "never"`, `fsync = { interval = "1s" }` or
/// `fsync = { records = 1000 }`. Default `{ interval = "1s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every append (and the directory after creating a segment, the cursor after
    /// every acknowledgement): a record is on stable storage when [`Spool::append`] returns
    /// and survives a power loss. Costs one disk flush per record (milliseconds on a
    /// rotating disk), on the thread that appends.
    Always,
    /// At most this long after an append (checked on each append and on [`Spool::tick`]):
    /// a power loss or OS crash loses at most the records of the last interval; a process
    /// crash loses nothing.
    Interval(#[serde(deserialize_with = "deserialize_duration")] Duration),
    /// After every this many appends (all kinds together): a power loss loses at most that
    /// many records; a process crash loses nothing.
    Records(u64),
    /// Never explicitly; the OS writes back (on Linux typically within 30 s). A process crash
    /// loses nothing, an OS crash what was not yet written back.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> FsyncPolicy {
        FsyncPolicy::Interval(Duration::from_secs(1))
    }
}

/// What the spool does with a record that does not fit in [`SpoolConfig::max_bytes`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Keep alerts: a new alert evicts the oldest flow segment, then the oldest alert-window
    /// segment, until it fits; a new alert window evicts the oldest flow segment; a new flow
    /// record evicts nothing and is refused. When only what a record may not evict is left,
    /// the new record is refused. Evicted and refused records are counted by kind. The
    /// default.
    #[default]
    DropFlowsFirst,
    /// Refuse every new record while the spool is full, whatever its kind; never evict.
    RefuseNew,
}

/// `[kafka.spool]`: where and how the spool keeps records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool directory, created if missing. Required. Keep it on a local file system
    /// that survives a reboot (e.g. `/var/lib/outpost/spool`).
    pub dir: PathBuf,
    /// Most bytes of segment files, all kinds together; the Kafka sink wants at least 64 KiB.
    /// Default 1 GiB (1073741824).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Size in bytes at which a segment is closed and a new one started; also the unit of
    /// eviction under [`FullPolicy::DropFlowsFirst`]. Capped at an eighth of `max_bytes`.
    /// Default 16 MiB (16777216).
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// When segment files are flushed to stable storage. Default `{ interval = "1s" }`.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// What a full spool gives up. Default `drop_flows_first`.
    #[serde(default)]
    pub when_full: FullPolicy,
}

fn default_max_bytes() -> u64 {
    1 << 30
}

fn default_segment_bytes() -> u64 {
    16 << 20
}

impl SpoolConfig {
    /// A spool in `dir` with every other setting at its default.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> SpoolConfig {
        SpoolConfig {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            segment_bytes: default_segment_bytes(),
            fsync: FsyncPolicy::default(),
            when_full: FullPolicy::default(),
        }
    }

    fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 8).max(SEGMENT_HEADER_LEN + 64)
    }
}

/// A span of time written as text: `30s`, `5m`, `250ms` (humantime syntax).
pub(crate) fn deserialize_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    outpost_decode::parse_config_duration(&s).map_err(serde::de::Error::custom)
}

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Another process holds the spool directory.
    #[error("{}: spool is in use by another process", dir.display())]
    Locked {
        /// The spool directory.
        dir: PathBuf,
    },
    /// A frame failed its checks while being read back (the file changed under the spool or
    /// the disk returned bad data); the rest of that segment is skipped and counted in
    /// [`SpoolStats::skipped`].
    #[error("{}: damaged record at byte {offset}; rest of the segment skipped", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Where the damaged frame starts.
        offset: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_path_buf(), source }
}

/// Where a record ends in its kind's log; [`Spool::ack`] takes one. Positions of one kind are
/// ordered like the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolPosition {
    segment: u64,
    offset: u64,
    /// Records before this position in the segment.
    index: u64,
}

/// A record read back from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    /// Its kind.
    pub kind: RecordKind,
    /// The key as appended (may be empty).
    pub key: Vec<u8>,
    /// The value as appended.
    pub value: Vec<u8>,
    /// The position just after it: acknowledge this once it is delivered.
    pub end: SpoolPosition,
}

/// What [`Spool::append`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (possibly after evicting older records of a lower-priority kind).
    Stored,
    /// Not written: the spool is full and the [`FullPolicy`] keeps what is there, or the
    /// record alone is larger than the spool may be. Counted in [`SpoolStats::refused`].
    Refused,
}

/// Counters and sizes of a spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Records written.
    pub appended: KindCounts,
    /// Records not written because the spool was full (or the record too large).
    pub refused: KindCounts,
    /// Records written but then evicted, unread or unacknowledged, to make room.
    pub evicted: KindCounts,
    /// Records lost to a damaged segment found while reading (see [`SpoolError::Corrupt`]).
    pub skipped: KindCounts,
    /// Records written and not yet acknowledged: what a replay still has to deliver.
    pub pending: KindCounts,
    /// Bytes of segment files, all kinds.
    pub bytes: u64,
    /// Segments truncated at a torn or damaged frame when the spool was opened.
    pub torn_tails: u64,
    /// Bytes cut off by those truncations.
    pub torn_bytes: u64,
}

const SEGMENT_MAGIC: &[u8; 8] = b"OPSPOOL\x01";
const SEGMENT_HEADER_LEN: u64 = 8;
const CURSOR_MAGIC: &[u8; 8] = b"OPCURS\x00\x01";
const FRAME_HEADER_LEN: u64 = 12;
/// Kind byte and key length.
const BODY_PREFIX_LEN: u64 = 5;
/// Largest body accepted; longer lengths read from disk are taken as damage.
const MAX_BODY_LEN: u64 = 256 << 20;

/// The on-disk spool. See the module documentation for layout and guarantees.
///
/// One owner appends and reads (`&mut self`); it is `Send`, so it may move to another thread.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segment_bytes: u64,
    logs: [KindLog; 3],
    total_bytes: u64,
    stats: SpoolStats,
    frame: Vec<u8>,
    last_sync: Instant,
    unsynced: u64,
    _lock: File,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    id: u64,
    bytes: u64,
    records: u64,
}

#[derive(Debug)]
struct KindLog {
    kind: RecordKind,
    dir: PathBuf,
    /// Oldest first; the cursor is in the front one (or at `next_id` when empty).
    segments: VecDeque<Segment>,
    next_id: u64,
    /// Open on `segments.back()` when that segment may still grow.
    writer: Option<File>,
    dirty: bool,
    cursor: SpoolPosition,
    read: SpoolPosition,
    reader: Option<(u64, BufReader<File>)>,
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir`, checks every segment, truncates torn
    /// tails and positions reading at the persisted cursor of each kind.
    ///
    /// # Errors
    /// The directory cannot be created or read, another process holds it
    /// ([`SpoolError::Locked`]), or a file operation fails.
    pub fn open(config: SpoolConfig) -> Result<Spool, SpoolError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // SAFETY: `flock` on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                SpoolError::Locked { dir }
            } else {
                SpoolError::Io { path: lock_path, source: e }
            });
        }
        let mut stats = SpoolStats::default();
        let sync_always = config.fsync == FsyncPolicy::Always;
        let logs = [
            KindLog::open(&dir, RecordKind::Alert, &mut stats, sync_always)?,
            KindLog::open(&dir, RecordKind::Flow, &mut stats, sync_always)?,
            KindLog::open(&dir, RecordKind::AlertWindow, &mut stats, sync_always)?,
        ];
        let total_bytes = logs.iter().map(KindLog::bytes).sum();
        let segment_bytes = config.effective_segment_bytes();
        let mut spool = Spool {
            dir,
            config,
            segment_bytes,
            logs,
            total_bytes,
            stats,
            frame: Vec::new(),
            last_sync: Instant::now(),
            unsynced: 0,
            _lock: lock,
        };
        spool.refresh_stats();
        Ok(spool)
    }

    /// The spool directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    #[must_use]
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// Appends one record at the end of its kind's log, making room by the [`FullPolicy`]
    /// when needed. Never blocks on anything but the local disk (and, under
    /// [`FsyncPolicy::Always`], a flush to it).
    ///
    /// # Errors
    /// Writing failed (e.g. the disk is full). The record is then not in the spool; a
    /// partial frame is cut off again where possible (and would otherwise be truncated as a
    /// torn tail at the next open).
    pub fn append(&mut self, kind: RecordKind, key: &[u8], value: &[u8]) -> Result<Appended, SpoolError> {
        let body_len = BODY_PREFIX_LEN + key.len() as u64 + value.len() as u64;
        let frame_len = FRAME_HEADER_LEN + body_len;
        let Ok(key_len) = u32::try_from(key.len()) else {
            self.stats.refused.add(kind, 1);
            return Ok(Appended::Refused);
        };
        if body_len > MAX_BODY_LEN || frame_len + SEGMENT_HEADER_LEN > self.config.max_bytes {
            self.stats.refused.add(kind, 1);
            return Ok(Appended::Refused);
        }
        if !self.make_room(kind, frame_len)? {
            self.stats.refused.add(kind, 1);
            return Ok(Appended::Refused);
        }
        self.frame.clear();
        let body_len32 = u32::try_from(body_len).unwrap_or(u32::MAX); // <= MAX_BODY_LEN
        self.frame.extend_from_slice(&body_len32.to_le_bytes());
        self.frame.extend_from_slice(&[0; 8]);
        self.frame.push(kind.code());
        self.frame.extend_from_slice(&key_len.to_le_bytes());
        self.frame.extend_from_slice(key);
        self.frame.extend_from_slice(value);
        let hash = xxh3_64_with_seed(&self.frame[FRAME_HEADER_LEN as usize..], body_len);
        self.frame[4..12].copy_from_slice(&hash.to_le_bytes());

        let sync_always = self.config.fsync == FsyncPolicy::Always;
        let segment_bytes = self.segment_bytes;
        let log = &mut self.logs[kind.index()];
        let added_header = log.prepare_writer(frame_len, segment_bytes, sync_always)?;
        self.total_bytes += added_header;
        log.write_frame(&self.frame)?;
        self.total_bytes += frame_len;
        self.stats.appended.add(kind, 1);
        self.unsynced += 1;
        match self.config.fsync {
            FsyncPolicy::Always => self.sync()?,
            FsyncPolicy::Records(n) if self.unsynced >= n.max(1) => self.sync()?,
            FsyncPolicy::Interval(d) if self.last_sync.elapsed() >= d => self.sync()?,
            _ => {}
        }
        self.refresh_stats();
        Ok(Appended::Stored)
    }

    /// Frees space for a frame of `frame_len` bytes of `kind` (plus a segment header) by
    /// the full policy; false when the record must be refused.
    fn make_room(&mut self, kind: RecordKind, frame_len: u64) -> Result<bool, SpoolError> {
        let need = frame_len + SEGMENT_HEADER_LEN;
        while self.total_bytes + need > self.config.max_bytes {
            let victims: &[RecordKind] = match (self.config.when_full, kind) {
                (FullPolicy::RefuseNew, _) | (FullPolicy::DropFlowsFirst, RecordKind::Flow) => &[],
                (FullPolicy::DropFlowsFirst, RecordKind::AlertWindow) => &[RecordKind::Flow],
                (FullPolicy::DropFlowsFirst, RecordKind::Alert) => {
                    &[RecordKind::Flow, RecordKind::AlertWindow]
                }
            };
            let Some(&victim) = victims.iter().find(|v| !self.logs[v.index()].segments.is_empty()) else {
                return Ok(false);
            };
            let sync_always = self.config.fsync == FsyncPolicy::Always;
            let (bytes, dropped) = self.logs[victim.index()].evict_oldest(sync_always)?;
            self.total_bytes -= bytes;
            self.stats.evicted.add(victim, dropped);
        }
        Ok(true)
    }

    /// Reads the next record of `kind` after the last one read (from the cursor after
    /// [`Spool::open`] or [`Spool::rewind`]), or `None` when all appended records were read.
    /// Does not acknowledge anything.
    ///
    /// # Errors
    /// Reading failed, or a damaged frame was found ([`SpoolError::Corrupt`]: the rest of
    /// that segment is skipped, so the next call goes on after it).
    pub fn next(&mut self, kind: RecordKind) -> Result<Option<SpoolRecord>, SpoolError> {
        let log = &mut self.logs[kind.index()];
        let r = log.next();
        if let Err(SpoolError::Corrupt { .. }) = &r {
            let skipped = log.skip_read_segment();
            self.stats.skipped.add(kind, skipped);
        }
        r
    }

    /// Records that `kind`'s records up to `end` (a [`SpoolRecord::end`]) are delivered: the
    /// cursor moves there and is persisted, and segments wholly behind it are deleted.
    /// Positions at or before the cursor (e.g. of evicted records) are ignored.
    ///
    /// # Errors
    /// Writing the cursor or deleting a segment failed.
    pub fn ack(&mut self, kind: RecordKind, end: SpoolPosition) -> Result<(), SpoolError> {
        let sync_always = self.config.fsync == FsyncPolicy::Always;
        let freed = self.logs[kind.index()].ack(end, sync_always)?;
        self.total_bytes -= freed;
        self.refresh_stats();
        Ok(())
    }

    /// Moves reading of `kind` back to the cursor, so every unacknowledged record is read
    /// again (after a failed delivery).
    pub fn rewind(&mut self, kind: RecordKind) {
        let log = &mut self.logs[kind.index()];
        log.read = log.cursor;
        log.reader = None;
    }

    /// Records of `kind` appended and not yet acknowledged.
    #[must_use]
    pub fn pending(&self, kind: RecordKind) -> u64 {
        self.logs[kind.index()].pending()
    }

    /// Records appended and not yet acknowledged, all kinds.
    #[must_use]
    pub fn pending_total(&self) -> u64 {
        self.logs.iter().map(KindLog::pending).sum()
    }

    /// Bytes of segment files, all kinds.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Counters and sizes.
    #[must_use]
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// Flushes written records to stable storage now (`fdatasync` on each segment written
    /// since the last flush).
    ///
    /// # Errors
    /// The flush failed.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        for log in &mut self.logs {
            log.sync()?;
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Applies [`FsyncPolicy::Interval`] when no record was appended for a while: call it
    /// periodically (the Kafka sink does, from `service`).
    ///
    /// # Errors
    /// The flush failed.
    pub fn tick(&mut self) -> Result<(), SpoolError> {
        if let FsyncPolicy::Interval(d) = self.config.fsync
            && self.unsynced > 0
            && self.last_sync.elapsed() >= d
        {
            self.sync()?;
        }
        Ok(())
    }

    fn refresh_stats(&mut self) {
        let mut pending = KindCounts::default();
        for log in &self.logs {
            pending.add(log.kind, log.pending());
        }
        self.stats.pending = pending;
        self.stats.bytes = self.total_bytes;
    }
}

impl KindLog {
    fn open(
        root: &Path,
        kind: RecordKind,
        stats: &mut SpoolStats,
        sync_always: bool,
    ) -> Result<KindLog, SpoolError> {
        let dir = root.join(kind.dir_name());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(hex) = name.strip_suffix(".seg")
                && let Ok(id) = u64::from_str_radix(hex, 16)
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let saved = read_cursor(&dir.join("cursor"));
        let mut log = KindLog {
            kind,
            dir,
            segments: VecDeque::new(),
            next_id: ids.last().map_or(1, |last| last + 1),
            writer: None,
            dirty: false,
            cursor: SpoolPosition { segment: 0, offset: SEGMENT_HEADER_LEN, index: 0 },
            read: SpoolPosition { segment: 0, offset: SEGMENT_HEADER_LEN, index: 0 },
            reader: None,
        };
        if let Some(c) = saved {
            log.next_id = log.next_id.max(c.segment);
        }
        for id in ids {
            let path = log.segment_path(id);
            if saved.is_some_and(|c| id < c.segment) {
                // Wholly acknowledged; a crash came between the cursor and the delete.
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let scan = scan_segment(&path, kind)?;
            let Some(scan) = scan else {
                // Shorter than its header or not ours: nothing readable in it.
                let len = fs::metadata(&path).map_err(io_err(&path))?.len();
                stats.torn_tails += 1;
                stats.torn_bytes += len;
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            };
            if scan.valid_len < scan.file_len {
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(scan.valid_len).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                stats.torn_tails += 1;
                stats.torn_bytes += scan.file_len - scan.valid_len;
            }
            log.segments.push_back(Segment {
                id,
                bytes: scan.valid_len,
                records: scan.boundaries.len() as u64 - 1,
            });
            if let Some(c) = saved
                && c.segment == id
            {
                // The cursor must sit on a frame boundary of what survived; if it does not
                // (data lost under it), read the segment again from its start.
                log.cursor = match scan.boundaries.binary_search(&c.offset) {
                    Ok(index) => SpoolPosition { segment: id, offset: c.offset, index: index as u64 },
                    Err(_) => SpoolPosition { segment: id, offset: SEGMENT_HEADER_LEN, index: 0 },
                };
            }
        }
        let front = log.segments.front().map_or(log.next_id, |s| s.id);
        if log.cursor.segment != front {
            log.cursor = SpoolPosition { segment: front, offset: SEGMENT_HEADER_LEN, index: 0 };
        }
        if let Some(last) = log.segments.back() {
            let path = log.segment_path(last.id);
            let f = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
            log.writer = Some(f);
        }
        log.read = log.cursor;
        // Drop segments that are wholly acknowledged (cursor at the end of a segment).
        log.normalize(sync_always)?;
        Ok(log)
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016x}.seg"))
    }

    fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    fn pending(&self) -> u64 {
        let records: u64 = self.segments.iter().map(|s| s.records).sum();
        records - self.cursor.index.min(records)
    }

    fn segment(&self, id: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// Makes sure the writer can take `frame_len` more bytes, starting a segment if needed;
    /// returns the bytes of a new segment's header.
    fn prepare_writer(
        &mut self,
        frame_len: u64,
        segment_bytes: u64,
        sync_always: bool,
    ) -> Result<u64, SpoolError> {
        if let (Some(_), Some(last)) = (&self.writer, self.segments.back())
            && (last.bytes + frame_len <= segment_bytes || last.records == 0)
        {
            return Ok(0);
        }
        // Seal the current segment: its data goes to disk before the next one starts, so a
        // torn tail can only be in the newest segment under any fsync policy but `never`.
        if let Some(old) = self.writer.take()
            && self.dirty
        {
            old.sync_data().map_err(io_err(&self.dir))?;
            self.dirty = false;
        }
        let id = self.next_id;
        let path = self.segment_path(id);
        let mut f = OpenOptions::new().create_new(true).append(true).open(&path).map_err(io_err(&path))?;
        f.write_all(SEGMENT_MAGIC).map_err(io_err(&path))?;
        if sync_always {
            f.sync_data().map_err(io_err(&path))?;
            sync_dir(&self.dir)?;
        }
        self.next_id += 1;
        self.segments.push_back(Segment { id, bytes: SEGMENT_HEADER_LEN, records: 0 });
        self.writer = Some(f);
        Ok(SEGMENT_HEADER_LEN)
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<(), SpoolError> {
        let Some(last) = self.segments.back_mut() else {
            return Err(SpoolError::Io {
                path: self.dir.clone(),
                source: io::Error::other("no open segment"),
            });
        };
        let path = self.dir.join(format!("{:016x}.seg", last.id));
        let Some(w) = self.writer.as_mut() else {
            return Err(SpoolError::Io { path, source: io::Error::other("no open segment") });
        };
        if let Err(e) = w.write_all(frame) {
            // Cut a partial frame off again so the segment stays readable to its end.
            let _ = w.set_len(last.bytes);
            return Err(SpoolError::Io { path, source: e });
        }
        last.bytes += frame.len() as u64;
        last.records += 1;
        self.dirty = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), SpoolError> {
        if self.dirty
            && let Some(w) = &self.writer
        {
            w.sync_data().map_err(io_err(&self.dir))?;
        }
        self.dirty = false;
        Ok(())
    }

    fn next(&mut self) -> Result<Option<SpoolRecord>, SpoolError> {
        loop {
            let Some(seg) = self.segment(self.read.segment).copied() else {
                // Behind the front (evicted) or at the end: continue at the front if any
                // record is unread there.
                match self.segments.front() {
                    Some(front) if front.id > self.read.segment => {
                        self.read = SpoolPosition { segment: front.id, offset: SEGMENT_HEADER_LEN, index: 0 };
                        self.reader = None;
                        continue;
                    }
                    _ => return Ok(None),
                }
            };
            if self.read.offset >= seg.bytes {
                match self.segments.iter().find(|s| s.id > seg.id) {
                    Some(next) => {
                        self.read = SpoolPosition { segment: next.id, offset: SEGMENT_HEADER_LEN, index: 0 };
                        self.reader = None;
                        continue;
                    }
                    None => return Ok(None),
                }
            }
            let path = self.segment_path(seg.id);
            let reader = match &mut self.reader {
                Some((id, r)) if *id == seg.id => r,
                _ => {
                    let mut f = File::open(&path).map_err(io_err(&path))?;
                    f.seek(SeekFrom::Start(self.read.offset)).map_err(io_err(&path))?;
                    &mut self.reader.insert((seg.id, BufReader::with_capacity(64 << 10, f))).1
                }
            };
            let avail = seg.bytes - self.read.offset;
            let frame = match read_frame(reader, avail).map_err(io_err(&path))? {
                Some(frame) if frame.kind == self.kind.code() => frame,
                _ => {
                    self.reader = None;
                    return Err(SpoolError::Corrupt { path, offset: self.read.offset });
                }
            };
            self.read = SpoolPosition {
                segment: seg.id,
                offset: self.read.offset + frame.len,
                index: self.read.index + 1,
            };
            return Ok(Some(SpoolRecord {
                kind: self.kind,
                key: frame.key,
                value: frame.value,
                end: self.read,
            }));
        }
    }

    /// After a damaged frame: moves reading past the segment's current end; returns the
    /// records given up.
    fn skip_read_segment(&mut self) -> u64 {
        let Some(seg) = self.segment(self.read.segment).copied() else { return 0 };
        let skipped = seg.records.saturating_sub(self.read.index);
        // Stay in the segment at its end with the index of its last record, so later
        // appends to it (if it is the newest) are still read.
        self.read = SpoolPosition { segment: seg.id, offset: seg.bytes, index: seg.records };
        self.reader = None;
        skipped
    }

    /// Moves the cursor to `end`; returns the bytes of deleted segments.
    fn ack(&mut self, end: SpoolPosition, sync_always: bool) -> Result<u64, SpoolError> {
        if end <= self.cursor || self.segment(end.segment).is_none() {
            return Ok(0);
        }
        let mut freed = 0;
        while let Some(front) = self.segments.front().copied()
            && front.id < end.segment
        {
            freed += self.remove_front()?;
        }
        self.cursor = end;
        if self.read < self.cursor {
            self.read = self.cursor;
            self.reader = None;
        }
        freed += self.normalize(sync_always)?;
        write_cursor(&self.dir, self.cursor, sync_always)?;
        Ok(freed)
    }

    /// Deletes segments the cursor has reached the end of; when the newest is among them the
    /// log is empty and the next append starts a new segment. Returns bytes freed.
    fn normalize(&mut self, sync_always: bool) -> Result<u64, SpoolError> {
        let mut freed = 0;
        let mut changed = false;
        while let Some(front) = self.segments.front().copied()
            && self.cursor.segment == front.id
            && self.cursor.offset >= front.bytes
        {
            freed += self.remove_front()?;
            let next = self.segments.front().map_or(self.next_id, |s| s.id);
            self.cursor = SpoolPosition { segment: next, offset: SEGMENT_HEADER_LEN, index: 0 };
            changed = true;
        }
        if self.read < self.cursor {
            self.read = self.cursor;
            self.reader = None;
        }
        if changed {
            write_cursor(&self.dir, self.cursor, sync_always)?;
        }
        Ok(freed)
    }

    fn remove_front(&mut self) -> Result<u64, SpoolError> {
        let Some(seg) = self.segments.pop_front() else { return Ok(0) };
        if self.segments.is_empty() {
            self.writer = None;
            self.dirty = false;
        }
        if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
            self.reader = None;
        }
        let path = self.segment_path(seg.id);
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(seg.bytes)
    }

    /// Deletes the oldest segment to make room; returns its bytes and the unacknowledged
    /// records lost with it.
    fn evict_oldest(&mut self, sync_always: bool) -> Result<(u64, u64), SpoolError> {
        let Some(front) = self.segments.front().copied() else { return Ok((0, 0)) };
        let lost = if self.cursor.segment == front.id {
            front.records.saturating_sub(self.cursor.index)
        } else {
            front.records
        };
        let bytes = self.remove_front()?;
        let next = self.segments.front().map_or(self.next_id, |s| s.id);
        self.cursor = SpoolPosition { segment: next, offset: SEGMENT_HEADER_LEN, index: 0 };
        if self.read < self.cursor {
            self.read = self.cursor;
            self.reader = None;
        }
        write_cursor(&self.dir, self.cursor, sync_always)?;
        Ok((bytes, lost))
    }
}

/// A frame read back: kind code, key, value, and its length on disk.
struct Frame {
    kind: u8,
    key: Vec<u8>,
    value: Vec<u8>,
    len: u64,
}

/// Reads one frame of at most `avail` bytes; `None` when it is torn or damaged.
fn read_frame(r: &mut impl Read, avail: u64) -> io::Result<Option<Frame>> {
    if avail < FRAME_HEADER_LEN + BODY_PREFIX_LEN {
        return Ok(None);
    }
    let mut header = [0u8; FRAME_HEADER_LEN as usize];
    if !read_full(r, &mut header)? {
        return Ok(None);
    }
    let [l0, l1, l2, l3, h @ ..] = header;
    let body_len = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
    let hash = u64::from_le_bytes(h);
    if !(BODY_PREFIX_LEN..=MAX_BODY_LEN).contains(&body_len) || FRAME_HEADER_LEN + body_len > avail {
        return Ok(None);
    }
    let mut body = vec![0u8; body_len as usize];
    if !read_full(r, &mut body)? || xxh3_64_with_seed(&body, body_len) != hash {
        return Ok(None);
    }
    let Some((&[kind, k0, k1, k2, k3], rest)) = body.split_first_chunk::<5>() else { return Ok(None) };
    let key_len = u32::from_le_bytes([k0, k1, k2, k3]) as usize;
    if key_len > rest.len() {
        return Ok(None);
    }
    let key = rest[..key_len].to_vec();
    body.drain(..BODY_PREFIX_LEN as usize + key_len);
    Ok(Some(Frame { kind, key, value: body, len: FRAME_HEADER_LEN + body_len }))
}

/// Like `read_exact`, but a short read at end of file is `false`, not an error.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

struct Scan {
    file_len: u64,
    valid_len: u64,
    /// Offsets of frame starts, then the end of the last valid frame.
    boundaries: Vec<u64>,
}

/// Walks a segment's frames; `None` when its header is missing or wrong.
fn scan_segment(path: &Path, kind: RecordKind) -> Result<Option<Scan>, SpoolError> {
    let f = File::open(path).map_err(io_err(path))?;
    let file_len = f.metadata().map_err(io_err(path))?.len();
    let mut r = BufReader::with_capacity(256 << 10, f);
    let mut magic = [0u8; SEGMENT_HEADER_LEN as usize];
    if !read_full(&mut r, &mut magic).map_err(io_err(path))? || &magic != SEGMENT_MAGIC {
        return Ok(None);
    }
    let mut offset = SEGMENT_HEADER_LEN;
    let mut boundaries = vec![offset];
    while offset < file_len {
        match read_frame(&mut r, file_len - offset).map_err(io_err(path))? {
            Some(frame) if frame.kind == kind.code() => {
                offset += frame.len;
                boundaries.push(offset);
            }
            _ => break,
        }
    }
    Ok(Some(Scan { file_len, valid_len: offset, boundaries }))
}

fn read_cursor(path: &Path) -> Option<SpoolPosition> {
    let bytes = fs::read(path).ok()?;
    let b: &[u8; 32] = bytes.as_slice().try_into().ok()?;
    let (magic, rest) = b.split_first_chunk::<8>()?;
    let (segment, rest) = rest.split_first_chunk::<8>()?;
    let (offset, hash) = rest.split_first_chunk::<8>()?;
    let hash: &[u8; 8] = hash.try_into().ok()?;
    if magic != CURSOR_MAGIC || xxh3_64_with_seed(&b[..24], 0) != u64::from_le_bytes(*hash) {
        return None;
    }
    // The record index is recomputed from the segment's frames when it is opened.
    Some(SpoolPosition {
        segment: u64::from_le_bytes(*segment),
        offset: u64::from_le_bytes(*offset),
        index: 0,
    })
}

/// Replaces the cursor file atomically (write a temporary file, rename it over).
fn write_cursor(dir: &Path, c: SpoolPosition, sync_always: bool) -> Result<(), SpoolError> {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(CURSOR_MAGIC);
    b[8..16].copy_from_slice(&c.segment.to_le_bytes());
    b[16..24].copy_from_slice(&c.offset.to_le_bytes());
    let hash = xxh3_64_with_seed(&b[..24], 0);
    b[24..].copy_from_slice(&hash.to_le_bytes());
    let tmp = dir.join("cursor.tmp");
    let path = dir.join("cursor");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&b).map_err(io_err(&tmp))?;
    if sync_always {
        f.sync_data().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if sync_always {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> SpoolConfig {
        SpoolConfig { fsync: FsyncPolicy::Never, ..SpoolConfig::new(dir) }
    }

    fn read_all(spool: &mut Spool, kind: RecordKind) -> Vec<SpoolRecord> {
        let mut out = Vec::new();
        while let Some(r) = spool.next(kind).unwrap() {
            out.push(r);
        }
        out
    }

    fn values(records: &[SpoolRecord]) -> Vec<String> {
        records.iter().map(|r| String::from_utf8(r.value.clone()).unwrap()).collect()
    }

    fn segment_files(dir: &Path, kind: RecordKind) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir.join(kind.dir_name()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn records_come_back_with_their_kind_key_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(config(dir.path())).unwrap();
        assert_eq!(spool.append(RecordKind::Alert, b"10.0.0.1", b"{\"id\":1}").unwrap(), Appended::Stored);
        assert_eq!(spool.append(RecordKind::Flow, b"", b"flow").unwrap(), Appended::Stored);
        assert_eq!(spool.append(RecordKind::AlertWindow, b"k", b"").unwrap(), Appended::Stored);
        let a = read_all(&mut spool, RecordKind::Alert);
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].kind, a[0].key.as_slice(), a[0].value.as_slice()),
            (RecordKind::Alert, &b"10.0.0.1"[..], &b"{\"id\":1}"[..])
        );
        let f = read_all(&mut spool, RecordKind::Flow);
        assert_eq!((f[0].key.as_slice(), f[0].value.as_slice()), (&b""[..], &b"flow"[..]));
        let w = read_all(&mut spool, RecordKind::AlertWindow);
        assert_eq!((w[0].key.as_slice(), w[0].value.as_slice()), (&b"k"[..], &b""[..]));
        assert_eq!(spool.stats().appended, KindCounts { alerts: 1, flows: 1, alert_windows: 1 });
        assert_eq!(spool.pending_total(), 3, "reading acknowledges nothing");
    }

    #[test]
    fn records_are_read_in_append_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 64 << 10, segment_bytes: 1024, ..config(dir.path()) };
        let mut spool = Spool::open(cfg).unwrap();
        for i in 0..500 {
            spool.append(RecordKind::Alert, b"k", format!("alert {i}").as_bytes()).unwrap();
        }
        assert!(segment_files(dir.path(), RecordKind::Alert).len() > 5);
        let got = values(&read_all(&mut spool, RecordKind::Alert));
        let want: Vec<String> = (0..500).map(|i| format!("alert {i}")).collect();
        assert_eq!(got, want);
        // Appends after reading reached the end are read next.
        spool.append(RecordKind::Alert, b"k", b"late").unwrap();
        assert_eq!(values(&read_all(&mut spool, RecordKind::Alert)), ["late"]);
    }

    #[test]
    fn acknowledged_segments_are_deleted_and_pending_falls() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 64 << 10, segment_bytes: 1024, ..config(dir.path()) };
        let mut spool = Spool::open(cfg).unwrap();
        for i in 0..200 {
            spool.append(RecordKind::Flow, b"", format!("flow {i}").as_bytes()).unwrap();
        }
        let records = read_all(&mut spool, RecordKind::Flow);
        let before = segment_files(dir.path(), RecordKind::Flow).len();
        spool.ack(RecordKind::Flow, records[99].end).unwrap();
        assert_eq!(spool.pending(RecordKind::Flow), 100);
        assert!(segment_files(dir.path(), RecordKind::Flow).len() < before);
        spool.ack(RecordKind::Flow, records[199].end).unwrap();
        assert_eq!(spool.pending(RecordKind::Flow), 0);
        assert!(segment_files(dir.path(), RecordKind::Flow).is_empty(), "a drained log leaves no segment");
        assert_eq!(spool.bytes(), 0);
        // A stale acknowledgement changes nothing; the log goes on.
        spool.ack(RecordKind::Flow, records[5].end).unwrap();
        spool.append(RecordKind::Flow, b"", b"again").unwrap();
        assert_eq!(values(&read_all(&mut spool, RecordKind::Flow)), ["again"]);
    }

    #[test]
    fn reopening_resumes_at_the_acknowledged_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 64 << 10, segment_bytes: 1024, ..config(dir.path()) };
        {
            let mut spool = Spool::open(cfg.clone()).unwrap();
            for i in 0..100 {
                spool.append(RecordKind::Alert, b"k", format!("a{i}").as_bytes()).unwrap();
            }
            let records = read_all(&mut spool, RecordKind::Alert);
            // Delivered up to a37; a38..a59 read (sent) but not confirmed.
            spool.ack(RecordKind::Alert, records[37].end).unwrap();
            let _ = records;
        }
        let mut spool = Spool::open(cfg.clone()).unwrap();
        assert_eq!(spool.pending(RecordKind::Alert), 62);
        let got = values(&read_all(&mut spool, RecordKind::Alert));
        let want: Vec<String> = (38..100).map(|i| format!("a{i}")).collect();
        assert_eq!(got, want);
        // Rewind reads the unacknowledged records again.
        spool.rewind(RecordKind::Alert);
        assert_eq!(read_all(&mut spool, RecordKind::Alert).len(), 62);
    }

    #[test]
    fn a_second_process_cannot_open_a_spool_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(config(dir.path())).unwrap();
        // flock locks belong to the open file description, so a second open in this process
        // conflicts just as another process would.
        assert!(matches!(Spool::open(config(dir.path())), Err(SpoolError::Locked { .. })));
    }

    #[test]
    fn a_torn_tail_is_truncated_counted_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(config(dir.path())).unwrap();
            for i in 0..10 {
                spool.append(RecordKind::Alert, b"k", format!("alert {i}").as_bytes()).unwrap();
            }
        }
        let seg = segment_files(dir.path(), RecordKind::Alert).pop().unwrap();
        let whole = fs::read(&seg).unwrap();
        let len = whole.len() as u64;
        // A crash in the middle of writing an eleventh frame: its header and half its body.
        let mut spool = Spool::open(config(dir.path())).unwrap();
        spool.append(RecordKind::Alert, b"k", b"alert 10 is longer than the rest").unwrap();
        drop(spool);
        let full = fs::read(&seg).unwrap();
        let torn = &full[..(len as usize + (full.len() - len as usize) / 2)];
        fs::write(&seg, torn).unwrap();

        let mut spool = Spool::open(config(dir.path())).unwrap();
        assert_eq!(spool.stats().torn_tails, 1);
        assert_eq!(spool.stats().torn_bytes, torn.len() as u64 - len);
        assert_eq!(fs::metadata(&seg).unwrap().len(), len, "cut back to the last whole frame");
        let got = values(&read_all(&mut spool, RecordKind::Alert));
        assert_eq!(got, (0..10).map(|i| format!("alert {i}")).collect::<Vec<_>>());
        // Appending goes on after the cut.
        spool.append(RecordKind::Alert, b"k", b"after").unwrap();
        assert_eq!(values(&read_all(&mut spool, RecordKind::Alert)), ["after"]);
    }

    #[test]
    fn a_damaged_frame_ends_its_segment_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(config(dir.path())).unwrap();
            for i in 0..10 {
                spool.append(RecordKind::Flow, b"", format!("flow {i}").as_bytes()).unwrap();
            }
        }
        let seg = segment_files(dir.path(), RecordKind::Flow).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        // Flip one byte inside the value of the fifth record (frames are 12 + 5 + 6 bytes).
        let frame = 12 + 5 + 6;
        bytes[8 + 4 * frame + 20] ^= 0x40;
        fs::write(&seg, &bytes).unwrap();
        let mut spool = Spool::open(config(dir.path())).unwrap();
        assert_eq!(spool.stats().torn_tails, 1);
        assert_eq!(spool.stats().torn_bytes, 6 * frame as u64);
        assert_eq!(values(&read_all(&mut spool, RecordKind::Flow)), ["flow 0", "flow 1", "flow 2", "flow 3"]);
    }

    #[test]
    fn a_segment_without_its_header_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut spool = Spool::open(config(dir.path())).unwrap();
            spool.append(RecordKind::Alert, b"k", b"kept").unwrap();
        }
        // A crash right after creating the next segment file.
        fs::write(dir.path().join("alerts").join(format!("{:016x}.seg", 2)), b"OPS").unwrap();
        let mut spool = Spool::open(config(dir.path())).unwrap();
        assert_eq!(spool.stats().torn_tails, 1);
        assert_eq!(values(&read_all(&mut spool, RecordKind::Alert)), ["kept"]);
        spool.append(RecordKind::Alert, b"k", b"next").unwrap();
        assert_eq!(values(&read_all(&mut spool, RecordKind::Alert)), ["next"]);
    }

    #[test]
    fn a_full_spool_evicts_flows_for_alerts_and_counts_every_loss() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 16 << 10, segment_bytes: 2048, ..config(dir.path()) };
        let mut spool = Spool::open(cfg).unwrap();
        let value = [b'f'; 100];
        let mut stored_flows = 0u64;
        let mut refused_flows = 0u64;
        for _ in 0..400 {
            match spool.append(RecordKind::Flow, b"", &value).unwrap() {
                Appended::Stored => stored_flows += 1,
                Appended::Refused => refused_flows += 1,
            }
        }
        assert!(refused_flows > 0, "flows never evict each other: new ones are refused");
        assert!(spool.bytes() <= 16 << 10);
        assert_eq!(spool.stats().refused.flows, refused_flows);

        // Alerts make room by evicting the oldest flow segments.
        let mut alerts = 0u64;
        for i in 0..100 {
            assert_eq!(
                spool.append(RecordKind::Alert, b"k", format!("alert {i:03} {:90}", "").as_bytes()).unwrap(),
                Appended::Stored
            );
            alerts += 1;
        }
        assert!(spool.bytes() <= 16 << 10);
        let s = spool.stats();
        assert!(s.evicted.flows > 0);
        assert_eq!(
            s.pending.flows,
            stored_flows - s.evicted.flows,
            "every flow is pending or counted as evicted"
        );
        assert_eq!(s.pending.alerts, alerts);
        assert_eq!(s.refused.alerts, 0);

        // Once only alerts are left, a further alert is refused and counted.
        let mut refused = 0;
        for i in 0..200 {
            if spool.append(RecordKind::Alert, b"k", format!("more {i:03} {:90}", "").as_bytes()).unwrap()
                == Appended::Refused
            {
                refused += 1;
            }
        }
        let s = spool.stats();
        assert_eq!(s.pending.flows, 0);
        assert!(refused > 0);
        assert_eq!(s.refused.alerts, refused);
        assert!(spool.bytes() <= 16 << 10);
        // The alerts kept are the oldest, in order.
        let got = values(&read_all(&mut spool, RecordKind::Alert));
        assert!(got[0].starts_with("alert 000"));
        assert_eq!(got.len() as u64, s.pending.alerts);
    }

    #[test]
    fn an_alert_window_evicts_flows_but_never_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 8 << 10, segment_bytes: 1024, ..config(dir.path()) };
        let mut spool = Spool::open(cfg).unwrap();
        while spool.append(RecordKind::Alert, b"k", &[b'a'; 200]).unwrap() == Appended::Stored {}
        let alerts = spool.pending(RecordKind::Alert);
        assert_eq!(spool.append(RecordKind::AlertWindow, b"k", &[b'w'; 200]).unwrap(), Appended::Refused);
        assert_eq!(spool.pending(RecordKind::Alert), alerts);
        assert_eq!(spool.stats().refused.alert_windows, 1);
    }

    #[test]
    fn refuse_new_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            max_bytes: 8 << 10,
            segment_bytes: 1024,
            when_full: FullPolicy::RefuseNew,
            ..config(dir.path())
        };
        let mut spool = Spool::open(cfg).unwrap();
        while spool.append(RecordKind::Flow, b"", &[b'f'; 200]).unwrap() == Appended::Stored {}
        let flows = spool.pending(RecordKind::Flow);
        assert_eq!(spool.append(RecordKind::Alert, b"k", &[b'a'; 200]).unwrap(), Appended::Refused);
        let s = spool.stats();
        assert_eq!((s.pending.flows, s.evicted.flows, s.refused.alerts, s.refused.flows), (flows, 0, 1, 1));
    }

    #[test]
    fn eviction_under_an_unacknowledged_reader_moves_it_on() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { max_bytes: 8 << 10, segment_bytes: 1024, ..config(dir.path()) };
        let mut spool = Spool::open(cfg).unwrap();
        for i in 0..20 {
            spool.append(RecordKind::Flow, b"", format!("flow {i:02} {:90}", "").as_bytes()).unwrap();
        }
        let first = spool.next(RecordKind::Flow).unwrap().unwrap();
        for _ in 0..55 {
            assert_eq!(spool.append(RecordKind::Alert, b"k", &[b'a'; 100]).unwrap(), Appended::Stored);
        }
        assert!(spool.stats().evicted.flows > 0);
        // The acknowledgement of an evicted record is ignored; reading resumes at the oldest
        // flow still there.
        spool.ack(RecordKind::Flow, first.end).unwrap();
        let rest = read_all(&mut spool, RecordKind::Flow);
        assert_eq!(rest.len() as u64, spool.pending(RecordKind::Flow));
        let s = spool.stats();
        assert_eq!(s.evicted.flows + s.pending.flows, 20);
    }

    #[test]
    fn fsync_policies_parse_from_toml_shapes() {
        #[derive(Deserialize)]
        struct W {
            fsync: FsyncPolicy,
        }
        let p = |s: &str| toml::from_str::<W>(s).unwrap().fsync;
        assert_eq!(p(r#"fsync = "always""#), FsyncPolicy::Always);
        assert_eq!(p(r#"fsync = "never""#), FsyncPolicy::Never);
        assert_eq!(p(r#"fsync = { interval = "250ms" }"#), FsyncPolicy::Interval(Duration::from_millis(250)));
        assert_eq!(p("fsync = { records = 100 }"), FsyncPolicy::Records(100));
        assert!(toml::from_str::<W>(r#"fsync = { interval = "soon" }"#).is_err());
    }
}
