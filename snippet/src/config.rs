//! The `[snippets]` configuration: how much history each worker keeps, the capture window
//! around an alert, and the disk quota of the snippet directory.
//!
//! Every field has a default, so an empty `[snippets]` table turns snippets on with the
//! values documented below; unknown keys are rejected. [`SnippetConfig::validate`] checks
//! what a type cannot (ranges), and names the key it rejects.

use std::path::{Path, PathBuf};

use outpost_decode::{Duration, Nanos};
use serde::Deserialize;

/// A span of time written as text: `5s`, `250ms`, `7days`, `1h 30m` (humantime syntax; the
/// configuration files' one duration type).
pub use outpost_decode::ConfigDuration as SnippetDuration;

/// `[snippets]`: pcap snippets of the packets around each alert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnippetConfig {
    /// Write snippets at all. Default `true` (the section being present turns them on).
    pub enabled: bool,
    /// Directory that receives `YYYY-MM-DD/<alert-id>.pcapng`. The writer creates it and
    /// owns every dated subdirectory in it (it deletes files there to keep the quota).
    /// Default `/var/lib/outpost/snippets`.
    pub dir: PathBuf,
    /// How much capture time before the alert's time a snippet covers. Default `5s`.
    pub before: SnippetDuration,
    /// How much capture time after the alert's time a snippet covers: packets of the key are
    /// collected until event time passes `alert time + after`. Default `5s`.
    pub after: SnippetDuration,
    /// History per key: at most this many most recent packets (0: no count limit). Default
    /// `64`. A key that sends faster than `history_packets / before` loses the start of its
    /// `before` window.
    pub history_packets: u32,
    /// History per key: packets older than this (in capture time, relative to the latest
    /// packet of the key or clock tick) are forgotten (`0s`: no age limit). Default `5s`;
    /// keep it at least `before`, or snippets cannot cover their whole `before` window — plus
    /// the delay with which alerts reach the history, if they come back from the collector
    /// after the alert policy.
    pub history_age: SnippetDuration,
    /// Bytes kept of each packet (its original length is kept too), 16 to 65535. Default
    /// `256`.
    pub snaplen: u32,
    /// Memory one history may use, in bytes: packet slots, per-key state and its index,
    /// allocated once at start (the sensor gives each of its workers an equal share of this
    /// cap). When it is full the least recently active keys are
    /// forgotten. Default `67108864` (64 MiB). Open snippets are bounded separately, by
    /// `max_open × max_snippet_packets × snaplen`.
    pub memory_bytes: u64,
    /// Snippets one worker may be collecting at once (alerts whose `after` window is still
    /// open). One more alert closes the open snippet that ends first, early. Default `64`.
    pub max_open: u32,
    /// Packets per snippet at most; later ones are counted as omitted. Default `4096`.
    pub max_snippet_packets: u32,
    /// Finished snippets waiting for the writer thread, over all workers. A worker never
    /// waits: when the queue is full the snippet is dropped and counted. Default `256`.
    pub queue: u32,
    /// Total size of the snippet files in `dir`, in bytes (file lengths). Before a snippet
    /// is written, the oldest files are deleted until it fits. Default `1073741824` (1 GiB).
    pub max_disk_bytes: u64,
    /// Files older than this (by modification time, the wall-clock time they were written)
    /// are deleted (`0s`: kept until the size quota needs the room). Default `7days`.
    pub max_age: SnippetDuration,
    /// How often the writer looks for files past `max_age` while no snippet arrives. Default
    /// `60s`.
    pub prune_interval: SnippetDuration,
}

impl Default for SnippetConfig {
    fn default() -> SnippetConfig {
        SnippetConfig {
            enabled: true,
            dir: PathBuf::from("/var/lib/outpost/snippets"),
            before: SnippetDuration(Duration::from_secs(5)),
            after: SnippetDuration(Duration::from_secs(5)),
            history_packets: 64,
            history_age: SnippetDuration(Duration::from_secs(5)),
            snaplen: 256,
            memory_bytes: 64 << 20,
            max_open: 64,
            max_snippet_packets: 4096,
            queue: 256,
            max_disk_bytes: 1 << 30,
            max_age: SnippetDuration(Duration::from_secs(7 * 86_400)),
            prune_interval: SnippetDuration(Duration::from_secs(60)),
        }
    }
}

/// A `[snippets]` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[snippets] {key}: {reason}")]
pub struct ConfigError {
    /// The offending key.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl SnippetConfig {
    /// Checks ranges a type cannot express.
    ///
    /// # Errors
    /// The first key out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key, reason: &str| Err(ConfigError { key, reason: reason.to_owned() });
        if !(16..=65_535).contains(&self.snaplen) {
            return err("snaplen", "must be between 16 and 65535 bytes");
        }
        if self.memory_bytes < crate::history::min_memory_bytes(self) {
            return Err(ConfigError {
                key: "memory_bytes",
                reason: format!(
                    "must be at least {} bytes for this snaplen and max_open",
                    crate::history::min_memory_bytes(self)
                ),
            });
        }
        if self.max_open == 0 {
            return err("max_open", "must be at least 1");
        }
        if self.max_snippet_packets == 0 {
            return err("max_snippet_packets", "must be at least 1");
        }
        if self.queue == 0 {
            return err("queue", "must be at least 1");
        }
        if self.max_disk_bytes == 0 {
            return err("max_disk_bytes", "must be above 0");
        }
        if self.prune_interval.0 == Duration::ZERO {
            return err("prune_interval", "must be above 0");
        }
        if self.dir.as_os_str().is_empty() {
            return err("dir", "must not be empty");
        }
        Ok(())
    }

    /// The file the snippet of alert `alert_id` raised at capture time `alert_ts` is written
    /// to: `dir/YYYY-MM-DD/<alert-id as 32 hex digits>.pcapng`, the date that of `alert_ts`
    /// in UTC. See [`snippet_path`].
    #[must_use]
    pub fn path_for(&self, alert_id: u128, alert_ts: Nanos) -> PathBuf {
        snippet_path(&self.dir, alert_id, alert_ts)
    }
}

/// The file the snippet of alert `alert_id` raised at capture time `alert_ts` goes to:
/// `dir/YYYY-MM-DD/<alert-id as 32 lowercase hex digits>.pcapng`, the date that of
/// `alert_ts` in UTC.
///
/// A pure function of its arguments, so the alert record can carry the path before the
/// writer has written the file (or if it never does: a snippet dropped, failed or deleted by
/// the quota leaves the path dangling; the writer's counters say how often).
#[must_use]
pub fn snippet_path(dir: &Path, alert_id: u128, alert_ts: Nanos) -> PathBuf {
    let mut p = dir.join(date_dir(alert_ts));
    p.push(format!("{alert_id:032x}.pcapng"));
    p
}

/// `YYYY-MM-DD` of `ts` in UTC.
pub(crate) fn date_dir(ts: Nanos) -> String {
    let mut s = ts.to_string();
    s.truncate(10);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_takes_the_documented_defaults() {
        let c: SnippetConfig = toml::from_str("").unwrap();
        assert_eq!(c, SnippetConfig::default());
        assert_eq!(c.before.0, Duration::from_secs(5));
        assert_eq!(c.after.0, Duration::from_secs(5));
        assert_eq!(c.snaplen, 256);
        assert_eq!(c.memory_bytes, 64 << 20);
        c.validate().unwrap();
    }

    #[test]
    fn durations_and_sizes_parse_from_toml() {
        let c: SnippetConfig = toml::from_str(
            "dir = \"/tmp/s\"\nbefore = \"2s\"\nafter = \"250ms\"\nmax_age = \"1day\"\nsnaplen = 1500\n",
        )
        .unwrap();
        assert_eq!(c.dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.before.0, Duration::from_secs(2));
        assert_eq!(c.after.0, Duration::from_millis(250));
        assert_eq!(c.max_age.0, Duration::from_secs(86_400));
        assert_eq!(c.snaplen, 1500);
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_rejected() {
        let e = toml::from_str::<SnippetConfig>("snap_len = 3").unwrap_err().to_string();
        assert!(e.contains("unknown field `snap_len`"), "{e}");
        let e = toml::from_str::<SnippetConfig>("before = \"five\"").unwrap_err().to_string();
        assert!(e.contains("invalid duration `five`"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let bad = |f: fn(&mut SnippetConfig)| {
            let mut c = SnippetConfig::default();
            f(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(bad(|c| c.snaplen = 8), "snaplen");
        assert_eq!(bad(|c| c.snaplen = 70_000), "snaplen");
        assert_eq!(bad(|c| c.memory_bytes = 1000), "memory_bytes");
        assert_eq!(bad(|c| c.max_open = 0), "max_open");
        assert_eq!(bad(|c| c.queue = 0), "queue");
        assert_eq!(bad(|c| c.max_disk_bytes = 0), "max_disk_bytes");
    }

    #[test]
    fn path_is_dated_by_the_alerts_utc_day() {
        // 2026-01-01T23:59:59.9Z and one second later, 2026-01-02.
        let id = 0xabcu128;
        let p = snippet_path(Path::new("/s"), id, Nanos::from_parts(1_767_311_999, 900_000_000));
        assert_eq!(p, PathBuf::from("/s/2026-01-01/00000000000000000000000000000abc.pcapng"));
        let p = snippet_path(Path::new("/s"), id, Nanos::from_secs(1_767_312_000));
        assert_eq!(p, PathBuf::from("/s/2026-01-02/00000000000000000000000000000abc.pcapng"));
    }
}
