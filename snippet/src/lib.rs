//! Pcap snippets of alerts: the packets of the offending key before and after an alert,
//! written to `DIR/YYYY-MM-DD/<alert-id>.pcapng`.
//!
//! Three parts, on three sides of the pipeline:
//!
//! - [`PacketHistory`], one per worker and owned by it: a bounded history of recent packets
//!   per key (normally the source address), fixed memory allocated at start, no allocation
//!   or lock per packet. [`PacketHistory::on_alert`] takes the key's packets of the window
//!   before the alert and keeps collecting its packets until event time passes the window's
//!   end; finished [`Snippet`]s come out of [`PacketHistory::on_clock`] and
//!   [`PacketHistory::finish`].
//! - [`snippet_queue`]: a bounded queue from the workers to the writer; a worker never waits
//!   on it ([`SnippetSender::send`] drops and counts when full).
//! - [`PcapSnippetWriter`], its own thread: writes each snippet atomically as pcapng (the
//!   alert id in the section comment and on the alert's packet), and keeps the directory
//!   within a size and age quota.
//!
//! The file of an alert is known when the alert is raised ([`snippet_path`]: alert id and
//! the alert's UTC day), so the alert record can carry it before the file is written.
//!
//! ```
//! use outpost_decode::{IpAddress, LinkType, Nanos};
//! use outpost_snippet::{PacketHistory, SnippetConfig};
//!
//! let config = SnippetConfig { memory_bytes: 4 << 20, ..SnippetConfig::default() };
//! config.validate().unwrap();
//! let mut history = PacketHistory::new(&config);
//! let src = IpAddress::from_v4([192, 0, 2, 7]);
//! let t = Nanos::from_secs(1_767_225_600);
//! history.record(src, LinkType::Raw, t, 40, &[0x45; 40]);
//! let mut done = Vec::new();
//! history.on_alert(0xfeed, src, t, "port-scan", &mut |s| done.push(s));
//! history.on_clock(Nanos::from_secs(1_767_225_606), &mut |s| done.push(s));
//! assert_eq!(done.len(), 1);
//! assert_eq!(done[0].len(), 1);
//! assert!(config.path_for(0xfeed, t).ends_with("2026-01-01/0000000000000000000000000000feed.pcapng"));
//! ```

mod config;
mod history;
mod pcapng;
mod snippet;
mod writer;

pub use config::{ConfigError, SnippetConfig, SnippetDuration, snippet_path};
pub use history::{CaptureOutcome, HistoryPacket, HistoryStats, PacketHistory, SnippetWindow};
pub use snippet::{Snippet, SnippetPacket};
pub use writer::{
    PcapSnippetWriter, SnippetError, SnippetReceiver, SnippetSender, WriterStats, snippet_queue,
};

/// Every snippet counter: the workers' histories summed, and the queue and writer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SnippetStats {
    /// Histories of all workers ([`HistoryStats::merge`]).
    pub history: HistoryStats,
    /// Queue and writer.
    pub writer: WriterStats,
}
