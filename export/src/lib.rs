//! Flow export: Outpost's [`FlowRecord`]s as IPFIX (RFC 7011, with RFC 5103 biflows) and
//! NetFlow v9 (RFC 3954) over UDP; alerts, flow records and alert windows to Kafka.
//!
//! # Shape
//! Encoding and sending are separate. An encoder ([`IpfixEncoder`], [`NetflowV9Encoder`])
//! turns records into messages in one reused buffer of at most the MTU and hands each finished
//! message to a callback; it never touches a socket and never allocates per record. A
//! [`MessageSink`] takes finished messages: [`UdpSink`] sends each as one datagram, a
//! `Vec<Vec<u8>>` collects them (a file or Kafka sink can do the same). [`FlowExporter`] joins
//! the two and counts ([`ExportStats`]); [`IpfixExporter::connect`] and
//! [`NetflowV9Exporter::connect`] build one that sends to a UDP collector.
//!
//! ```no_run
//! # use outpost_export::{IpfixExporter, IpfixOptions};
//! # fn demo(records: &[outpost_flowmeter::FlowRecord]) -> std::io::Result<()> {
//! let mut exporter = IpfixExporter::connect("192.0.2.10:4739".parse().unwrap(), IpfixOptions::default())?;
//! for r in records {
//!     exporter.export(r)?;
//! }
//! exporter.flush()?;
//! # Ok(()) }
//! ```
//!
//! # Kafka
//! [`KafkaSink`] ([`kafka`]) sends alerts, flow records and alert windows (opaque JSON bytes
//! with a key, one topic per [`RecordKind`]) through an idempotent librdkafka producer
//! (`acks=all`) and never blocks its caller on the broker. What cannot be handed to the
//! broker now (queue full, broker unreachable, failed delivery) goes to a local, size-bounded
//! [`Spool`] ([`spool`]: xxh3-checksummed frames, torn-tail recovery, a persisted read
//! cursor) and is replayed in order when the broker answers again; at shutdown
//! [`KafkaSink::flush`] leaves what is undelivered in the spool for the next start. Delivery is
//! at least once, and every record given up (full spool, refused by the broker) is counted by
//! kind in [`KafkaStats`].
//!
//! # Event time
//! Export time (IPFIX `exportTime`, NetFlow `unix_secs` and `sysUptime`) and the template
//! refresh interval run on an event-time clock ([`ExportClock`]): by default the latest record
//! end time, or times the caller gives to `advance`. Nothing reads the wall clock, so the same
//! records give the same bytes in every run.
//!
//! # What is sent
//! - IPFIX ([`ipfix`]): templates 256/257 (IPv4/IPv6, one direction) and 258/259 (IPv4/IPv6
//!   RFC 5103 biflow, reverse elements with enterprise number 29305). [`BiflowMode::Biflow`]
//!   (default) sends one record per flow; [`BiflowMode::Uniflow`] a forward and, when the
//!   responder sent packets, a reverse record.
//! - NetFlow v9 ([`netflow_v9`]): templates 256/257, a forward and (when the responder sent
//!   packets) a reverse record per flow, times as milliseconds of an event-time "uptime".
//!
//! # nfdump
//! nfdump 1.7.1 (Debian bookworm) reads all three forms correctly — every flow, address,
//! port, protocol, VLAN, TOS, TCP flags, packet and byte count and first/last millisecond,
//! checked by `tests/nfcapd.rs` against a running nfcapd. Of the RFC 5103 reverse elements it
//! understands only the counters (as its out bytes / out packets); it reads other reverse
//! elements as forward ones, which the biflow templates' field order neutralises (details in
//! [`ipfix`]).

pub mod exporter;
pub mod field;
pub mod ipfix;
pub mod kafka;
pub mod message;
pub mod netflow_v9;
pub mod sink;
pub mod spool;
#[cfg(feature = "test-broker")]
pub mod test_broker;

pub use exporter::{ExportStats, FlowEncoder, FlowExporter, IpfixExporter, NetflowV9Exporter};
pub use field::{Field, REVERSE_PEN, Template};
pub use ipfix::{BiflowMode, IpfixEncoder, IpfixOptions};
pub use kafka::{
    Compression, FlushOutcome, KafkaConfig, KafkaSink, KafkaSinkError, KafkaStats, KafkaTopics, Routed,
    TopicCreated, create_topics,
};
pub use message::{ExportClock, Message, TemplateRefresh};
pub use netflow_v9::{NetflowV9Encoder, NetflowV9Options};
pub use outpost_flowmeter::FlowRecord;
pub use sink::{MessageSink, UdpSink};
pub use spool::{
    Appended, FsyncPolicy, FullPolicy, KindCounts, RecordKind, Spool, SpoolConfig, SpoolError, SpoolPosition,
    SpoolRecord, SpoolStats,
};

/// Why an exporter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The MTU cannot hold a header, the templates and one record, or exceeds the 16-bit
    /// length field.
    #[error("MTU {mtu} is outside {min}..={max} bytes")]
    Mtu {
        /// The MTU asked for.
        mtu: usize,
        /// The smallest that works.
        min: usize,
        /// The largest the length field allows.
        max: usize,
    },
}

impl From<ExportError> for std::io::Error {
    fn from(e: ExportError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
