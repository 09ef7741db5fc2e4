//! JSON-lines outputs: a file or standard output, optionally rotated by size or age.
//!
//! A rotated file is renamed `FILE.<UTC time of rotation>` (e.g. `alerts.jsonl.20261126T021500Z`,
//! with `-1`, `-2` … appended if that name exists) and a fresh `FILE` is started; a line is
//! never split between two files. Rotation looks at the wall clock: it is about files on
//! disk, not event time, so it happens in `outpost run` only.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use serde::Serialize;

/// When a JSON-lines file is closed and a new one started (`outpost run`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the file holds at least this many bytes (0: never by size).
    pub max_bytes: u64,
    /// Rotate once the file is this old (zero: never by age).
    pub max_age: Duration,
    /// At open, a non-empty file of that name is renamed as a rotated one instead of being
    /// truncated (`outpost run`: a restarted service must not wipe what it wrote before).
    pub keep_existing: bool,
}

impl Rotation {
    fn is_off(&self) -> bool {
        self.max_bytes == 0 && self.max_age.is_zero()
    }
}

/// Renames `path` to `path.<UTC time>` (with `-1`, `-2` … if taken).
fn move_aside(path: &Path) -> anyhow::Result<()> {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(['-', ':'], "");
    let mut target = PathBuf::from(format!("{}.{stamp}", path.display()));
    let mut n = 0;
    while target.exists() {
        n += 1;
        target = PathBuf::from(format!("{}.{stamp}-{n}", path.display()));
    }
    std::fs::rename(path, &target)
        .with_context(|| format!("cannot rotate {} to {}", path.display(), target.display()))
}

/// Where a stream of JSON records goes.
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    name: String,
    /// The file (none: standard output).
    path: Option<PathBuf>,
    rotation: Rotation,
    /// Bytes in the current file and when it was started.
    file_bytes: u64,
    file_started: Instant,
    /// Files closed by rotation.
    pub rotated: u64,
    /// Records written.
    pub written: u64,
    line: Vec<u8>,
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLines").field("name", &self.name).field("written", &self.written).finish()
    }
}

fn create(path: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(f))
}

impl JsonLines {
    /// Opens `target`: `-` is standard output, anything else a file (created or truncated).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open(target: &Path) -> anyhow::Result<JsonLines> {
        JsonLines::open_rotating(target, Rotation::default())
    }

    /// Opens `target` as [`JsonLines::open`] does, rotating a file as `rotation` says
    /// (standard output is never rotated).
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open_rotating(target: &Path, rotation: Rotation) -> anyhow::Result<JsonLines> {
        let (w, name, path): (Box<dyn Write + Send>, String, Option<PathBuf>) = if target == Path::new("-") {
            (Box::new(io::stdout()), "standard output".into(), None)
        } else {
            if rotation.keep_existing && std::fs::metadata(target).is_ok_and(|m| m.is_file() && m.len() > 0) {
                move_aside(target)?;
            }
            (create(target)?, target.display().to_string(), Some(target.to_path_buf()))
        };
        Ok(JsonLines {
            out: BufWriter::with_capacity(1 << 16, w),
            name,
            path,
            rotation,
            file_bytes: 0,
            file_started: Instant::now(),
            rotated: 0,
            written: 0,
            line: Vec::with_capacity(512),
        })
    }

    /// Opens `target` if given.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn open_opt(target: Option<&PathBuf>, rotation: Rotation) -> anyhow::Result<Option<JsonLines>> {
        target.map(|t| JsonLines::open_rotating(t, rotation)).transpose()
    }

    /// Writes one record as a line.
    ///
    /// # Errors
    /// Serialization or I/O errors, naming the output.
    pub fn write<T: Serialize>(&mut self, record: &T) -> anyhow::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).context("cannot encode record")?;
        self.emit()
    }

    /// Writes one already encoded record (without its newline) as a line.
    ///
    /// # Errors
    /// I/O errors, naming the output.
    pub fn write_bytes(&mut self, record: &[u8]) -> anyhow::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(record);
        self.emit()
    }

    fn emit(&mut self) -> anyhow::Result<()> {
        self.line.push(b'\n');
        self.maybe_rotate()?;
        self.out.write_all(&self.line).with_context(|| format!("cannot write to {}", self.name))?;
        self.file_bytes += self.line.len() as u64;
        self.written += 1;
        Ok(())
    }

    /// Starts a new file when the current one is due (checked before each line, so lines
    /// are never split).
    fn maybe_rotate(&mut self) -> anyhow::Result<()> {
        if self.rotation.is_off() || self.file_bytes == 0 {
            return Ok(());
        }
        let Some(path) = self.path.as_deref() else { return Ok(()) };
        let by_size = self.rotation.max_bytes > 0 && self.file_bytes >= self.rotation.max_bytes;
        let by_age = !self.rotation.max_age.is_zero() && self.file_started.elapsed() >= self.rotation.max_age;
        if !(by_size || by_age) {
            return Ok(());
        }
        self.out.flush().with_context(|| format!("cannot write to {}", self.name))?;
        move_aside(path)?;
        self.out = BufWriter::with_capacity(1 << 16, create(path)?);
        self.file_bytes = 0;
        self.file_started = Instant::now();
        self.rotated += 1;
        Ok(())
    }

    /// Flushes buffered lines.
    ///
    /// # Errors
    /// I/O errors, naming the output.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write to {}", self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(dir: &Path) -> (usize, Vec<String>) {
        let mut names = Vec::new();
        let mut total = 0;
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            let text = std::fs::read_to_string(&p).expect("read");
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).expect("every line is whole JSON");
                assert!(v["n"].is_u64());
                total += 1;
            }
            names.push(p.file_name().expect("name").to_string_lossy().into_owned());
        }
        names.sort();
        (total, names)
    }

    #[test]
    fn rotates_by_size_without_splitting_or_losing_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let mut out = JsonLines::open_rotating(
            &path,
            Rotation { max_bytes: 1000, max_age: Duration::ZERO, keep_existing: false },
        )
        .expect("open");
        for n in 0..500u64 {
            out.write(&serde_json::json!({ "n": n, "pad": "xxxxxxxxxxxxxxxxxxxx" })).expect("write");
        }
        out.flush().expect("flush");
        let (total, names) = lines_in(dir.path());
        assert_eq!(total, 500);
        assert!(out.rotated >= 10, "{} rotations", out.rotated);
        assert_eq!(names.len() as u64, out.rotated + 1);
        assert!(names.iter().any(|n| n == "alerts.jsonl"));
        assert!(names.iter().all(|n| n.starts_with("alerts.jsonl")));
        for e in std::fs::read_dir(dir.path()).expect("dir") {
            let len = e.expect("entry").metadata().expect("meta").len();
            assert!(len < 1000 + 100, "a file holds at most one line past the limit: {len}");
        }
    }

    #[test]
    fn a_restarted_run_keeps_the_file_it_wrote_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        std::fs::write(&path, "{\"n\":1}\n").expect("earlier run");
        let keep = Rotation { keep_existing: true, ..Rotation::default() };
        let mut out = JsonLines::open_rotating(&path, keep).expect("open");
        out.write(&serde_json::json!({ "n": 2 })).expect("write");
        out.flush().expect("flush");
        let (total, names) = lines_in(dir.path());
        assert_eq!((total, names.len()), (2, 2), "{names:?}");
        assert_eq!(std::fs::read_to_string(&path).expect("current"), "{\"n\":2}\n");
    }

    #[test]
    fn rotates_by_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flows.jsonl");
        let mut out = JsonLines::open_rotating(
            &path,
            Rotation { max_bytes: 0, max_age: Duration::from_millis(50), keep_existing: false },
        )
        .expect("open");
        out.write(&serde_json::json!({ "n": 1 })).expect("write");
        std::thread::sleep(Duration::from_millis(80));
        out.write(&serde_json::json!({ "n": 2 })).expect("write");
        out.flush().expect("flush");
        assert_eq!(out.rotated, 1);
        assert_eq!(lines_in(dir.path()), (2, lines_in(dir.path()).1));
        assert_eq!(std::fs::read_to_string(&path).expect("current").lines().count(), 1);
    }
}
