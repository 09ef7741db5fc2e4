//! A Kafka sink for alerts, flow records and alert windows, with an on-disk spool so no record
//! is lost while the broker is unreachable.
//!
//! # Shape
//! [`KafkaSink`] is owned and driven by one thread (the sensor's collector). It holds an
//! idempotent librdkafka producer ([`BaseProducer`]: librdkafka's own threads do all network
//! I/O) and a [`Spool`]. [`KafkaSink::send`] never waits for the network: it copies the record
//! into librdkafka's queue, or appends it to the spool when
//! - librdkafka's queue is full (`queue_max_messages`, counted in [`KafkaStats::queue_full`]),
//! - the broker is taken for unreachable: librdkafka reported all brokers down, a delivery
//!   failed with a connection error or timed out (`delivery_timeout`), or librdkafka held
//!   records for `unreachable_after` without a single delivery report; or
//! - records of that kind are still in the spool: to keep each kind in order, new records go
//!   behind them until the spool of that kind is drained.
//!
//! When the broker is taken for unreachable, librdkafka's queue (records not yet on the wire)
//! is moved to the spool at once, and one spooled record is sent every `retry_interval` as a
//! probe; the first probe the broker confirms ends the outage and starts the replay.
//!
//! [`KafkaSink::service`] must be called regularly (every few milliseconds to ~100 ms; the
//! sensor's collector does it at every watermark): it serves librdkafka's delivery reports, puts records
//! whose delivery failed into the spool, replays the spool in order once the broker answers
//! again (acknowledging spool positions only for records the broker confirmed), and applies
//! the spool's fsync interval. [`KafkaSink::flush`] at shutdown tries to deliver everything
//! within a timeout and leaves the rest in the spool; a new sink on the same spool directory
//! replays it first. Dropping the sink moves what librdkafka holds into the spool without
//! waiting.
//!
//! # Guarantees
//! - **At least once.** A record given to [`KafkaSink::send`] is delivered (acknowledged by
//!   all in-sync replicas: `acks=all`, `enable.idempotence=true`), or is in the spool, or is
//!   counted as dropped in [`KafkaStats::dropped`] (spool full under its policy, spool write
//!   error, or refused for good by librdkafka or the broker: too large, not authorised).
//!   Records replayed from the spool, and records in flight when the process stops, may be
//!   delivered twice; consumers deduplicate by the record's own id (alerts carry one).
//! - **Order.** Within one kind and one key (one partition), records arrive in the order
//!   they were sent, except around a failure: a record whose delivery failed is appended to
//!   the spool behind records spooled after it was sent.
//! - **Never blocks on the broker.** Only on the local disk: a spool append is one
//!   `write(2)`, plus a flush per record under [`FsyncPolicy::Always`] or one per interval
//!   under [`FsyncPolicy::Interval`] (the default, `1s`).
//! - **Crash.** Records in librdkafka's memory (queued, or sent and not yet confirmed) are
//!   lost if the process dies without [`KafkaSink::flush`] or drop: with a healthy broker that
//!   is the last few milliseconds of records; with a broker that stopped answering, at most
//!   what was sent in the `unreachable_after` before the sink noticed (records sent before
//!   and already on the wire wait up to `delivery_timeout`). Spooled records survive as
//!   their [`FsyncPolicy`] says: a process crash loses none of them.
//!
//! Keys are the caller's bytes (the sensor passes the source IP address as text), so one key
//! always lands in the same partition (librdkafka's default `consistent_random` partitioner:
//! CRC32 of the key); an empty key means no key (any partition). Values are opaque bytes
//! (JSON from the sensor).
//!
//! [`FsyncPolicy`]: crate::spool::FsyncPolicy
//! [`FsyncPolicy::Always`]: crate::spool::FsyncPolicy::Always
//! [`FsyncPolicy::Interval`]: crate::spool::FsyncPolicy::Interval

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig};
use serde::{Deserialize, Serialize};

use crate::spool::{
    Appended, KindCounts, RecordKind, Spool, SpoolConfig, SpoolError, SpoolPosition, SpoolRecord, SpoolStats,
    deserialize_duration,
};

/// `[kafka]`: where records go and how hard the sink tries.
///
/// Its `Debug` output hides the values of secret properties (passwords, private keys).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers as `host:port` (librdkafka `bootstrap.servers`). Required, at least
    /// one.
    pub brokers: Vec<String>,
    /// The topic of each record kind. Defaults `outpost.alerts`, `outpost.flows`,
    /// `outpost.alert-windows`.
    #[serde(default)]
    pub topics: KafkaTopics,
    /// Compression of record batches (`compression.type`): `none`, `gzip`, `snappy`, `lz4`
    /// or `zstd`. Default `lz4`.
    #[serde(default)]
    pub compression: Compression,
    /// librdkafka `client.id`, shown in broker logs and quotas. Default `outpost`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Most records librdkafka holds in memory, queued or awaiting acknowledgement
    /// (`queue.buffering.max.messages`); beyond it `send` spools. Default 100000.
    #[serde(default = "default_queue_max_messages")]
    pub queue_max_messages: u32,
    /// How long librdkafka keeps retrying one record before reporting it failed, which puts
    /// it in the spool (`message.timeout.ms`). Bounds how long a record stays in memory only
    /// when the broker stops answering without librdkafka seeing it down. Default `30s`; must
    /// be at least `1ms`.
    #[serde(default = "default_delivery_timeout", deserialize_with = "deserialize_duration")]
    pub delivery_timeout: Duration,
    /// How long librdkafka may hold records without a single delivery report (success or
    /// failure) before the sink takes the broker for unreachable: it then spools new records
    /// and moves librdkafka's queue into the spool. librdkafka reporting all brokers down has
    /// the same effect at once. Keep it well above the time between two
    /// [`KafkaSink::service`] calls and the broker's usual acknowledgement time. Default `5s`.
    #[serde(default = "default_unreachable_after", deserialize_with = "deserialize_duration")]
    pub unreachable_after: Duration,
    /// While the broker is unreachable: how often one spooled record is sent as a probe
    /// (the first confirmed probe resumes normal sending and replay). Also the pause after a
    /// failed replay before the next. Default `1s`.
    #[serde(default = "default_retry_interval", deserialize_with = "deserialize_duration")]
    pub retry_interval: Duration,
    /// Most spooled records of one kind handed to librdkafka and not yet confirmed during
    /// replay. Default 10000.
    #[serde(default = "default_replay_max_in_flight")]
    pub replay_max_in_flight: usize,
    /// The on-disk spool (`[kafka.spool]`); `dir` is required.
    pub spool: SpoolConfig,
    /// Further librdkafka properties, passed through verbatim: TLS (`security.protocol`,
    /// `ssl.ca.location`, ...), SASL (`sasl.mechanism`, `sasl.username`, ...; PLAIN, SCRAM and
    /// OAUTHBEARER, not GSSAPI), tuning (`linger.ms`, `batch.size`, ...). Keys the sink sets
    /// itself are rejected ([`KafkaSinkError::ReservedProperty`]): the brokers, `client.id`,
    /// compression, queue size and timeout have their own fields, and `enable.idempotence`,
    /// `acks` and the transactional settings cannot be changed. Default empty. The sink sets
    /// `reconnect.backoff.max.ms` to 1000 unless given here.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "[redacted]" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("compression", &self.compression)
            .field("client_id", &self.client_id)
            .field("queue_max_messages", &self.queue_max_messages)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("unreachable_after", &self.unreachable_after)
            .field("retry_interval", &self.retry_interval)
            .field("replay_max_in_flight", &self.replay_max_in_flight)
            .field("spool", &self.spool)
            .field("properties", &properties)
            .finish()
    }
}

/// librdkafka properties whose values are credentials.
fn is_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem")
        || key.contains("oauthbearer.config")
}

/// `[kafka.topics]`: one topic per record kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopics {
    /// Alerts. Default `outpost.alerts`.
    #[serde(default = "default_alert_topic")]
    pub alerts: String,
    /// Flow records. Default `outpost.flows`.
    #[serde(default = "default_flow_topic")]
    pub flows: String,
    /// Alert windows. Default `outpost.alert-windows`.
    #[serde(default = "default_window_topic")]
    pub alert_windows: String,
}

impl Default for KafkaTopics {
    fn default() -> KafkaTopics {
        KafkaTopics {
            alerts: default_alert_topic(),
            flows: default_flow_topic(),
            alert_windows: default_window_topic(),
        }
    }
}

impl KafkaTopics {
    /// The topic of `kind`.
    #[must_use]
    pub fn get(&self, kind: RecordKind) -> &str {
        match kind {
            RecordKind::Alert => &self.alerts,
            RecordKind::Flow => &self.flows,
            RecordKind::AlertWindow => &self.alert_windows,
        }
    }
}

/// Batch compression codec (librdkafka `compression.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (zlib).
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (the default): cheap, and JSON compresses several times over.
    #[default]
    Lz4,
    /// Zstandard: smaller than LZ4 for more CPU.
    Zstd,
}

impl Compression {
    /// The librdkafka name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn default_client_id() -> String {
    "outpost".into()
}
fn default_queue_max_messages() -> u32 {
    100_000
}
fn default_delivery_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_unreachable_after() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_replay_max_in_flight() -> usize {
    10_000
}
fn default_alert_topic() -> String {
    "outpost.alerts".into()
}
fn default_flow_topic() -> String {
    "outpost.flows".into()
}
fn default_window_topic() -> String {
    "outpost.alert-windows".into()
}

/// Properties the sink sets itself, with why they may not be given in `properties`.
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `brokers`"),
    ("metadata.broker.list", "use `brokers`"),
    ("client.id", "use `client_id`"),
    ("compression.type", "use `compression`"),
    ("compression.codec", "use `compression`"),
    ("queue.buffering.max.messages", "use `queue_max_messages`"),
    ("message.timeout.ms", "use `delivery_timeout`"),
    ("delivery.timeout.ms", "use `delivery_timeout`"),
    ("enable.idempotence", "the sink is always idempotent"),
    ("acks", "the sink always waits for all in-sync replicas (acks=all)"),
    ("request.required.acks", "the sink always waits for all in-sync replicas (acks=all)"),
    ("transactional.id", "the sink does not use transactions"),
    ("enable.gapless.guarantee", "a gap is handled by the spool, not by a fatal error"),
    ("dr_msg_cb", "the sink serves delivery reports itself"),
    ("dr_cb", "the sink serves delivery reports itself"),
];

impl KafkaConfig {
    /// A configuration for `brokers` with a spool in `spool_dir` and every other setting at
    /// its default.
    #[must_use]
    pub fn new(
        brokers: impl IntoIterator<Item = impl Into<String>>,
        spool_dir: impl Into<std::path::PathBuf>,
    ) -> Self {
        KafkaConfig {
            brokers: brokers.into_iter().map(Into::into).collect(),
            topics: KafkaTopics::default(),
            compression: Compression::default(),
            client_id: default_client_id(),
            queue_max_messages: default_queue_max_messages(),
            delivery_timeout: default_delivery_timeout(),
            unreachable_after: default_unreachable_after(),
            retry_interval: default_retry_interval(),
            replay_max_in_flight: default_replay_max_in_flight(),
            spool: SpoolConfig::new(spool_dir),
            properties: BTreeMap::new(),
        }
    }

    /// Checks what types cannot: brokers present, topics named, reserved properties absent,
    /// sizes and timeouts positive.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), KafkaSinkError> {
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(KafkaSinkError::Invalid("`brokers` must list at least one `host:port`".into()));
        }
        for kind in RecordKind::ALL {
            if self.topics.get(kind).is_empty() {
                return Err(KafkaSinkError::Invalid(format!(
                    "the topic for {} records is empty",
                    kind.name()
                )));
            }
        }
        if self.queue_max_messages == 0 || self.replay_max_in_flight == 0 {
            return Err(KafkaSinkError::Invalid(
                "`queue_max_messages` and `replay_max_in_flight` must be at least 1".into(),
            ));
        }
        if self.delivery_timeout.as_millis() == 0 || self.unreachable_after.as_millis() == 0 {
            return Err(KafkaSinkError::Invalid(
                "`delivery_timeout` and `unreachable_after` must be at least 1ms".into(),
            ));
        }
        if self.spool.max_bytes < 64 << 10 {
            return Err(KafkaSinkError::Invalid("`spool.max_bytes` must be at least 65536".into()));
        }
        for key in self.properties.keys() {
            if let Some((k, why)) = RESERVED.iter().find(|(k, _)| k == key) {
                return Err(KafkaSinkError::ReservedProperty {
                    key: (*k).to_string(),
                    reason: (*why).to_string(),
                });
            }
        }
        Ok(())
    }

    /// The librdkafka configuration of the producer.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", self.compression.as_str())
            .set("queue.buffering.max.messages", self.queue_max_messages.to_string())
            .set("message.timeout.ms", self.delivery_timeout.as_millis().min(i32::MAX as u128).to_string())
            .set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// Why a [`KafkaSink`] could not be built or topics created.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// A configuration value is out of range.
    #[error("kafka configuration: {0}")]
    Invalid(String),
    /// `properties` sets a key the sink owns.
    #[error("kafka configuration: property `{key}` cannot be set in `properties`: {reason}")]
    ReservedProperty {
        /// The key.
        key: String,
        /// What to do instead.
        reason: String,
    },
    /// librdkafka refused the configuration or an operation.
    #[error("kafka: {0}")]
    Client(#[from] KafkaError),
    /// The spool could not be opened.
    #[error("kafka spool: {0}")]
    Spool(#[from] SpoolError),
    /// An admin operation did not finish in time.
    #[error("kafka: {0} timed out")]
    Timeout(&'static str),
    /// The broker refused to create a topic.
    #[error("kafka: creating topic `{topic}` failed: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
}

/// Where [`KafkaSink::send`] put a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Handed to librdkafka; its delivery report comes through [`KafkaSink::service`].
    Queued,
    /// Appended to the spool; it is sent when the spool is replayed.
    Spooled,
    /// Lost, and counted in [`KafkaStats::dropped`]: the spool is full under its policy, the
    /// spool write failed, or librdkafka refused the record for good (too large).
    Dropped,
}

/// Counters of a [`KafkaSink`], by record kind where that matters. Serializes to JSON for the
/// sensor's statistics line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KafkaStats {
    /// Records given to [`KafkaSink::send`].
    pub received: KindCounts,
    /// Records handed to librdkafka straight from `send`.
    pub sent: KindCounts,
    /// Records handed to librdkafka from the spool (every attempt counts).
    pub resent: KindCounts,
    /// Records the broker confirmed (`acks=all`), sent directly or from the spool.
    pub delivered: KindCounts,
    /// Of `delivered`, the records that came from the spool.
    pub replayed: KindCounts,
    /// Failed delivery reports, every attempt (after librdkafka's own retries within
    /// `delivery_timeout`); the record then goes to the spool, or to `rejected`.
    pub failed: KindCounts,
    /// Records written to the spool, for any reason.
    pub spooled: KindCounts,
    /// Records librdkafka or the broker refused for good (too large, invalid, not
    /// authorised); part of `dropped`.
    pub rejected: KindCounts,
    /// Spool writes that failed (disk full, I/O error); those records are part of `dropped`.
    pub spool_write_errors: KindCounts,
    /// Records lost for good: `rejected`, `spool_write_errors`, and the spool's refused,
    /// evicted and skipped records.
    pub dropped: KindCounts,
    /// Times `send` or a replay found librdkafka's queue full.
    pub queue_full: u64,
    /// Times the sink found the broker unreachable and switched to spooling.
    pub unreachable_events: u64,
    /// Whether it is unreachable now.
    pub unreachable: bool,
    /// Times the producer was rebuilt with a new producer id, after a fatal librdkafka error
    /// or a broker answer that fences the old one.
    pub producer_restarts: u64,
    /// Records in librdkafka now: queued, in flight, or with an unserved report.
    pub in_flight: u64,
    /// The spool's counters: `pending` records per kind, `bytes`, torn tails.
    pub spool: SpoolStats,
    /// The last error librdkafka reported (connection, authentication, ...), if any.
    pub last_error: Option<String>,
    /// The error of the last failed delivery, if any.
    pub last_delivery_error: Option<String>,
}

/// What [`KafkaSink::flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Everything sent was confirmed and the spool is empty.
    pub complete: bool,
    /// Records left in the spool per kind, replayed by the next sink on this spool.
    pub left_in_spool: KindCounts,
}

/// Delivery opaque: bits 0-1 the kind's index, bit 2 set for a record from the spool, the
/// rest that record's replay sequence number.
const OPAQUE_REPLAY: usize = 4;

fn opaque(kind: RecordKind, replay_seq: Option<u64>) -> usize {
    match replay_seq {
        None => kind.index(),
        Some(seq) => ((seq as usize) << 3) | OPAQUE_REPLAY | kind.index(),
    }
}

#[derive(Debug)]
struct Report {
    opaque: usize,
    /// `Err` for a failed delivery.
    outcome: Result<(), Failure>,
}

#[derive(Debug)]
struct Failure {
    code: RDKafkaErrorCode,
    /// Key and value of a record sent directly (only failed records are copied; a record
    /// from the spool is still there).
    record: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Default)]
struct Shared {
    reports: Vec<Report>,
    all_brokers_down: bool,
    fatal: bool,
    last_error: Option<String>,
}

/// librdkafka calls into this from `poll` on the owner's thread; the mutex is never
/// contended.
#[derive(Debug, Default)]
struct SinkContext {
    shared: Mutex<Shared>,
    callbacks: AtomicU64,
}

impl SinkContext {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ClientContext for SinkContext {
    /// librdkafka's log lines (error level and worse; Outpost has no logger to forward them
    /// to) end up in [`KafkaStats::last_error`].
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            self.lock().last_error = Some(format!("{facility}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => s.all_brokers_down = true,
            Some(RDKafkaErrorCode::Fatal) => s.fatal = true,
            _ => {}
        }
        s.last_error = Some(format!("{error}: {reason}"));
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, msg)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                let record = (opaque & OPAQUE_REPLAY == 0).then(|| {
                    (msg.key().unwrap_or_default().to_vec(), msg.payload().unwrap_or_default().to_vec())
                });
                Err(Failure { code, record })
            }
        };
        self.lock().reports.push(Report { opaque, outcome });
    }
}

/// Errors after which retrying the same record cannot help.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
            | RDKafkaErrorCode::InvalidRequiredAcks
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::InvalidArgument
    )
}

/// Errors after which this producer's idempotence state (producer id, epoch, sequence
/// numbers) is no longer accepted: the producer is rebuilt with a new producer id. (A
/// broker that lost its state, or one that fences the producer after a reconnection, answers
/// like this; librdkafka itself may also raise a fatal error.)
fn needs_new_producer(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::InvalidProducerIdMapping
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::Fatal
    )
}

/// Errors that mean the broker cannot be reached now.
fn is_unreachable(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Pending,
    Done,
    Failed,
}

/// Spooled records of one kind handed to librdkafka, in spool order.
#[derive(Debug, Default)]
struct Replay {
    in_flight: VecDeque<(SpoolPosition, Attempt)>,
    /// Sequence number of `in_flight.front()`.
    first_seq: u64,
    /// Read from the spool but not accepted by librdkafka (queue full).
    held: Option<SpoolRecord>,
    /// A record failed: send no more until every attempt is reported, then rewind.
    failed: bool,
    resume_at: Option<Instant>,
}

/// The Kafka sink. See the module documentation.
pub struct KafkaSink {
    producer: BaseProducer<SinkContext>,
    client_config: ClientConfig,
    topics: KafkaTopics,
    spool: Spool,
    replay: [Replay; 3],
    reports: Vec<Report>,
    unreachable: bool,
    /// The spooled record sent to find out whether the broker answers again.
    probe: Option<(RecordKind, u64)>,
    next_probe: Instant,
    /// When librdkafka last reported a delivery, or was last given a record while empty.
    last_progress: Instant,
    /// librdkafka held nothing at the last `service`.
    producer_idle: bool,
    /// A delivery failed in a way only a new producer id fixes.
    restart_needed: bool,
    unreachable_after: Duration,
    retry_interval: Duration,
    replay_max_in_flight: usize,
    stats: KafkaStats,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topics", &self.topics)
            .field("spool", &self.spool.dir())
            .field("unreachable", &self.unreachable)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Validates `config`, opens the spool (truncating torn tails; records left by an
    /// earlier run are replayed before newer records of their kind) and creates the
    /// producer. Does not wait for the broker: connecting happens in librdkafka's threads,
    /// and an unreachable broker shows up as spooling.
    ///
    /// # Errors
    /// Invalid configuration, a spool that cannot be opened (or is in use by another
    /// process), or a configuration librdkafka refuses.
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, KafkaSinkError> {
        config.validate()?;
        let spool = Spool::open(config.spool.clone())?;
        let client_config = config.client_config();
        let producer = client_config.create_with_context(SinkContext::default())?;
        Ok(KafkaSink {
            producer,
            client_config,
            topics: config.topics.clone(),
            spool,
            replay: Default::default(),
            reports: Vec::new(),
            unreachable: false,
            probe: None,
            next_probe: Instant::now(),
            last_progress: Instant::now(),
            producer_idle: true,
            restart_needed: false,
            unreachable_after: config.unreachable_after,
            retry_interval: config.retry_interval,
            replay_max_in_flight: config.replay_max_in_flight,
            stats: KafkaStats::default(),
        })
    }

    /// Sends one record to `kind`'s topic with `key` (empty: no key) and `value`, without
    /// waiting: into librdkafka's queue, or into the spool (see the module documentation for
    /// when). Call [`KafkaSink::service`] regularly to serve delivery reports.
    pub fn send(&mut self, kind: RecordKind, key: &[u8], value: &[u8]) -> Routed {
        self.stats.received.add(kind, 1);
        if self.unreachable || self.spool.pending(kind) > 0 {
            return self.spool_record(kind, key, value);
        }
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(self.topics.get(kind), opaque(kind, None))
                .payload(value);
        if !key.is_empty() {
            record = record.key(key);
        }
        match self.producer.send(record) {
            Ok(()) => {
                self.stats.sent.add(kind, 1);
                self.note_handed_over();
                Routed::Queued
            }
            Err((e, _)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                if code == RDKafkaErrorCode::QueueFull {
                    self.stats.queue_full += 1;
                }
                if is_permanent(code) {
                    self.stats.rejected.add(kind, 1);
                    Routed::Dropped
                } else {
                    self.spool_record(kind, key, value)
                }
            }
        }
    }

    /// The wait for a first report starts when librdkafka is given a record while empty.
    fn note_handed_over(&mut self) {
        if self.producer_idle {
            self.producer_idle = false;
            self.last_progress = Instant::now();
        }
    }

    fn spool_record(&mut self, kind: RecordKind, key: &[u8], value: &[u8]) -> Routed {
        match self.spool.append(kind, key, value) {
            Ok(Appended::Stored) => {
                self.stats.spooled.add(kind, 1);
                Routed::Spooled
            }
            Ok(Appended::Refused) => Routed::Dropped,
            Err(e) => {
                self.stats.spool_write_errors.add(kind, 1);
                self.stats.last_error = Some(e.to_string());
                Routed::Dropped
            }
        }
    }

    /// Does the sink's periodic work without blocking: serves delivery reports (failed
    /// records go to the spool), notices an unreachable broker, replays spooled records
    /// (at most `replay_max_in_flight` per kind unconfirmed; one probe every
    /// `retry_interval` while unreachable), acknowledges confirmed ones in the spool, and
    /// applies the spool's fsync interval.
    pub fn service(&mut self) {
        self.serve_reports();
        let fatal = std::mem::take(&mut self.context().lock().fatal);
        if self.restart_needed || fatal || self.producer.client().fatal_error().is_some() {
            self.restart_producer();
        }
        let now = Instant::now();
        if self.producer.in_flight_count() == 0 {
            self.producer_idle = true;
            self.last_progress = now;
        } else if now.duration_since(self.last_progress) >= self.unreachable_after {
            // Records waiting and not one report for a while: nobody answers.
            self.enter_unreachable();
            self.serve_reports();
        }
        for kind in RecordKind::ALL {
            self.settle(kind);
        }
        self.replay_spool();
        if let Err(e) = self.spool.tick() {
            self.stats.last_error = Some(e.to_string());
        }
    }

    /// Tries for up to `timeout` to deliver everything queued and spooled (call it at
    /// shutdown), then moves what is still in librdkafka into the spool (which a new sink on
    /// the same directory replays) and flushes the spool to disk.
    pub fn flush(&mut self, timeout: Duration) -> FlushOutcome {
        let deadline = Instant::now() + timeout;
        loop {
            self.service();
            if self.producer.in_flight_count() == 0 && self.spool.pending_total() == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // Wait for the next event rather than spin; reports are served by `service`.
            self.producer.poll((deadline - now).min(Duration::from_millis(5)));
        }
        self.park_in_spool();
        let left = self.spool.stats().pending;
        FlushOutcome { complete: left.total() == 0, left_in_spool: left }
    }

    /// Counters, with the spool's and librdkafka's current sizes.
    #[must_use]
    pub fn stats(&self) -> KafkaStats {
        let mut s = self.stats.clone();
        s.spool = self.spool.stats();
        s.unreachable = self.unreachable;
        s.in_flight = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        s.dropped = s
            .rejected
            .plus(s.spool_write_errors)
            .plus(s.spool.refused)
            .plus(s.spool.evicted)
            .plus(s.spool.skipped);
        if s.last_error.is_none() {
            s.last_error.clone_from(&self.context().lock().last_error);
        }
        s
    }

    /// Whether the sink currently takes the broker for unreachable (and spools everything).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        self.unreachable
    }

    /// Records in the spool not yet confirmed, per kind.
    #[must_use]
    pub fn spooled_pending(&self) -> KindCounts {
        self.spool.stats().pending
    }

    fn context(&self) -> &Arc<SinkContext> {
        self.producer.context()
    }

    /// Serves librdkafka's events until none is left (bounded, so a flood of reports cannot
    /// hold the caller).
    fn serve_reports(&mut self) {
        for _ in 0..10_000 {
            let before = self.context().callbacks.load(Ordering::Relaxed);
            self.producer.poll(Duration::ZERO);
            self.handle_reports();
            if self.context().callbacks.load(Ordering::Relaxed) == before {
                break;
            }
        }
    }

    fn handle_reports(&mut self) {
        let all_down = {
            let ctx = Arc::clone(self.context());
            let mut s = ctx.lock();
            std::mem::swap(&mut self.reports, &mut s.reports);
            std::mem::take(&mut s.all_brokers_down)
        };
        let mut reports = std::mem::take(&mut self.reports);
        if !reports.is_empty() {
            self.last_progress = Instant::now();
        }
        for r in reports.drain(..) {
            self.on_report(r);
        }
        self.reports = reports;
        if all_down {
            self.enter_unreachable();
        }
    }

    fn on_report(&mut self, r: Report) {
        let Some(kind) = RecordKind::from_index(r.opaque & 3) else { return };
        let replay_seq = (r.opaque & OPAQUE_REPLAY != 0).then_some((r.opaque >> 3) as u64);
        match r.outcome {
            Ok(()) => {
                self.stats.delivered.add(kind, 1);
                if let Some(seq) = replay_seq {
                    self.stats.replayed.add(kind, 1);
                    self.mark(kind, seq, Attempt::Done);
                    if self.probe == Some((kind, seq)) {
                        // The broker answers again: back to normal sending and full replay.
                        self.probe = None;
                        self.unreachable = false;
                    }
                }
            }
            Err(Failure { code, record }) => {
                self.stats.failed.add(kind, 1);
                self.stats.last_delivery_error = Some(code.to_string());
                if let Some(seq) = replay_seq {
                    if self.probe == Some((kind, seq)) {
                        self.probe = None;
                        self.next_probe = Instant::now() + self.retry_interval;
                    }
                    if is_permanent(code) {
                        self.stats.rejected.add(kind, 1);
                        self.mark(kind, seq, Attempt::Done);
                    } else {
                        self.mark(kind, seq, Attempt::Failed);
                        self.replay[kind.index()].failed = true;
                    }
                } else if is_permanent(code) {
                    self.stats.rejected.add(kind, 1);
                } else if let Some((key, value)) = record {
                    self.spool_record(kind, &key, &value);
                }
                if is_unreachable(code) {
                    self.enter_unreachable();
                }
                if needs_new_producer(code) {
                    self.restart_needed = true;
                }
            }
        }
    }

    fn mark(&mut self, kind: RecordKind, seq: u64, attempt: Attempt) {
        let r = &mut self.replay[kind.index()];
        if let Some(i) = seq.checked_sub(r.first_seq)
            && let Some(slot) = r.in_flight.get_mut(i as usize)
        {
            slot.1 = attempt;
        }
    }

    /// Switches to spooling: new records go to the spool, and librdkafka's queue (records not
    /// yet on the wire) is purged into it through failed delivery reports.
    fn enter_unreachable(&mut self) {
        if self.unreachable {
            return;
        }
        self.unreachable = true;
        self.stats.unreachable_events += 1;
        self.next_probe = Instant::now() + self.retry_interval;
        self.producer.purge(PurgeConfig::default().queue());
    }

    /// Acknowledges the confirmed prefix of `kind`'s replayed records; after a failure, once
    /// every attempt is reported, rewinds the spool to resend from the first unconfirmed one.
    fn settle(&mut self, kind: RecordKind) {
        let r = &mut self.replay[kind.index()];
        let mut last = None;
        while let Some(&(end, Attempt::Done)) = r.in_flight.front() {
            last = Some(end);
            r.in_flight.pop_front();
            r.first_seq += 1;
        }
        if let Some(end) = last
            && let Err(e) = self.spool.ack(kind, end)
        {
            self.stats.last_error = Some(e.to_string());
        }
        let r = &mut self.replay[kind.index()];
        if r.failed && r.in_flight.iter().all(|&(_, a)| a != Attempt::Pending) {
            r.first_seq += r.in_flight.len() as u64;
            r.in_flight.clear();
            r.held = None;
            r.failed = false;
            r.resume_at = Some(Instant::now() + self.retry_interval);
            self.spool.rewind(kind);
        }
    }

    fn replay_spool(&mut self) {
        let now = Instant::now();
        if self.unreachable {
            if self.probe.is_some() || now < self.next_probe {
                return;
            }
            self.next_probe = now + self.retry_interval;
            for kind in RecordKind::ALL {
                let r = &self.replay[kind.index()];
                if r.in_flight.is_empty() && !r.failed && self.spool.pending(kind) > 0 {
                    if let Some(seq) = self.resend_one(kind) {
                        // Only a record librdkafka took gets a delivery report: a probe the
                        // broker rejected at once (too large, say) was settled already, and
                        // waiting for its report would keep the sink unreachable for good.
                        let pending = self.replay[kind.index()]
                            .in_flight
                            .back()
                            .is_some_and(|(_, a)| matches!(a, Attempt::Pending));
                        if pending {
                            self.probe = Some((kind, seq));
                        }
                    }
                    return;
                }
            }
            return;
        }
        for kind in RecordKind::ALL {
            let r = &mut self.replay[kind.index()];
            if r.failed {
                continue;
            }
            match r.resume_at {
                Some(t) if now < t => continue,
                _ => r.resume_at = None,
            }
            while self.replay[kind.index()].in_flight.len() < self.replay_max_in_flight {
                if self.resend_one(kind).is_none() {
                    break;
                }
            }
        }
    }

    /// Hands the next spooled record of `kind` to librdkafka; its replay sequence number, or
    /// `None` when there is nothing to send or librdkafka does not take it now.
    fn resend_one(&mut self, kind: RecordKind) -> Option<u64> {
        let record = match self.replay[kind.index()].held.take() {
            Some(r) => r,
            None => match self.spool.next(kind) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    self.stats.last_error = Some(e.to_string());
                    return None;
                }
            },
        };
        let r = &mut self.replay[kind.index()];
        let seq = r.first_seq + r.in_flight.len() as u64;
        let mut br =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(self.topics.get(kind), opaque(kind, Some(seq)))
                .payload(record.value.as_slice());
        if !record.key.is_empty() {
            br = br.key(record.key.as_slice());
        }
        match self.producer.send(br) {
            Ok(()) => {
                self.stats.resent.add(kind, 1);
                r.in_flight.push_back((record.end, Attempt::Pending));
                self.note_handed_over();
                Some(seq)
            }
            Err((e, _)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                if is_permanent(code) {
                    self.stats.rejected.add(kind, 1);
                    r.in_flight.push_back((record.end, Attempt::Done));
                    return Some(seq);
                }
                if code == RDKafkaErrorCode::QueueFull {
                    self.stats.queue_full += 1;
                }
                r.held = Some(record);
                None
            }
        }
    }

    /// Purges librdkafka (queued and in flight) and serves the resulting reports, so every
    /// record it held is either confirmed or back in the spool; then flushes the spool.
    fn park_in_spool(&mut self) {
        self.producer.purge(PurgeConfig::default().queue().inflight());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            self.serve_reports();
            if self.producer.in_flight_count() == 0 || Instant::now() >= deadline {
                break;
            }
            self.producer.poll(Duration::from_millis(5));
        }
        for kind in RecordKind::ALL {
            self.settle(kind);
            let r = &mut self.replay[kind.index()];
            r.first_seq += r.in_flight.len() as u64;
            r.in_flight.clear();
            r.held = None;
            r.failed = false;
            self.spool.rewind(kind);
        }
        self.probe = None;
        if let Err(e) = self.spool.sync() {
            self.stats.last_error = Some(e.to_string());
        }
    }

    /// After a fatal librdkafka error (the idempotent producer cannot continue): moves what
    /// it held to the spool and starts a fresh producer, which replays it.
    fn restart_producer(&mut self) {
        self.park_in_spool();
        match self.client_config.create_with_context(SinkContext::default()) {
            Ok(p) => {
                self.producer = p;
                self.restart_needed = false;
                self.producer_idle = true;
                self.last_progress = Instant::now();
                self.stats.producer_restarts += 1;
            }
            Err(e) => self.stats.last_error = Some(e.to_string()),
        }
    }
}

impl Drop for KafkaSink {
    /// Moves what librdkafka still holds into the spool without waiting for the broker
    /// (call [`KafkaSink::flush`] first to deliver it).
    fn drop(&mut self) {
        self.park_in_spool();
    }
}

/// What [`create_topics`] found for one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCreated {
    /// The topic was created.
    Created,
    /// It existed already (its partition count is left as it is).
    Existed,
}

/// Creates the three topics of `config` with `partitions` partitions and replication factor
/// `replication` if they do not exist, waiting at most `timeout`. For deployment scripts and
/// tests; brokers that create topics on first use do not need it. Uses `brokers`,
/// `client_id` and `properties` (TLS, SASL) of `config`.
///
/// # Errors
/// The admin client cannot be built, the broker refuses a topic, or `timeout` passes.
pub fn create_topics(
    config: &KafkaConfig,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<Vec<(String, TopicCreated)>, KafkaSinkError> {
    config.validate()?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.brokers.join(",")).set("client.id", &config.client_id);
    for (k, v) in &config.properties {
        c.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = c.create()?;
    let mut names: Vec<&str> = RecordKind::ALL.iter().map(|&k| config.topics.get(k)).collect();
    names.sort_unstable();
    names.dedup();
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication))).collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = block_on(admin.create_topics(&topics, &opts), timeout + Duration::from_secs(1))
        .ok_or(KafkaSinkError::Timeout("creating topics"))??;
    results
        .into_iter()
        .map(|r| match r {
            Ok(name) => Ok((name, TopicCreated::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => Ok((name, TopicCreated::Existed)),
            Err((topic, code)) => Err(KafkaSinkError::CreateTopic { topic, code }),
        })
        .collect()
}

/// Runs a future to completion on this thread (rdkafka's admin futures are completed by its
/// own thread, so parking until woken is enough); `None` after `timeout`.
fn block_on<F: Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = Instant::now() + timeout;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::FsyncPolicy;

    #[test]
    fn a_minimal_toml_config_takes_the_documented_defaults() {
        let c: KafkaConfig = toml::from_str(
            r#"
            brokers = ["127.0.0.1:9092"]
            [spool]
            dir = "/var/lib/outpost/spool"
            "#,
        )
        .unwrap();
        assert_eq!(c, KafkaConfig::new(["127.0.0.1:9092"], "/var/lib/outpost/spool"));
        assert_eq!(c.topics.get(RecordKind::Alert), "outpost.alerts");
        assert_eq!(c.topics.get(RecordKind::Flow), "outpost.flows");
        assert_eq!(c.topics.get(RecordKind::AlertWindow), "outpost.alert-windows");
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.delivery_timeout, Duration::from_secs(30));
        assert_eq!(c.spool.max_bytes, 1 << 30);
        assert_eq!(c.spool.fsync, FsyncPolicy::Interval(Duration::from_secs(1)));
        c.validate().unwrap();
    }

    #[test]
    fn a_full_toml_config_parses() {
        let c: KafkaConfig = toml::from_str(
            r#"
            brokers = ["a:9092", "b:9092"]
            compression = "zstd"
            queue_max_messages = 5000
            delivery_timeout = "10s"
            retry_interval = "250ms"
            [topics]
            alerts = "ids.alerts"
            [spool]
            dir = "/tmp/s"
            max_bytes = 1048576
            fsync = "always"
            when_full = "refuse_new"
            [properties]
            "security.protocol" = "ssl"
            "ssl.ca.location" = "/etc/ssl/ca.pem"
            "#,
        )
        .unwrap();
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.topics.alerts, "ids.alerts");
        assert_eq!(c.topics.flows, "outpost.flows");
        assert_eq!(c.retry_interval, Duration::from_millis(250));
        assert_eq!(c.spool.when_full, crate::spool::FullPolicy::RefuseNew);
        assert_eq!(c.properties.len(), 2);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let r: Result<KafkaConfig, _> =
            toml::from_str("brokers = [\"a:1\"]\nbroker = \"x\"\n[spool]\ndir = \"/tmp\"\n");
        assert!(r.unwrap_err().to_string().contains("broker"));
        let r: Result<KafkaConfig, _> =
            toml::from_str("brokers = [\"a:1\"]\n[spool]\ndir = \"/tmp\"\nmax = 1\n");
        assert!(r.is_err());
    }

    #[test]
    fn properties_cannot_turn_off_idempotence_or_acks() {
        for key in
            ["enable.idempotence", "acks", "request.required.acks", "bootstrap.servers", "message.timeout.ms"]
        {
            let mut c = KafkaConfig::new(["a:1"], "/tmp/s");
            c.properties.insert(key.into(), "0".into());
            match c.validate() {
                Err(KafkaSinkError::ReservedProperty { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_sink_can_move_to_the_collector_thread() {
        fn send<T: Send>() {}
        send::<KafkaSink>();
        send::<Spool>();
    }

    #[test]
    fn debug_output_hides_credentials() {
        let mut c = KafkaConfig::new(["a:1"], "/tmp/s");
        c.properties.insert("sasl.username".into(), "sensor".into());
        c.properties.insert("sasl.password".into(), "hunter2".into());
        c.properties.insert("ssl.key.pem".into(), "-----BEGIN PRIVATE KEY-----".into());
        let text = format!("{c:?}");
        assert!(text.contains("sensor"));
        assert!(!text.contains("hunter2") && !text.contains("PRIVATE KEY"), "{text}");
    }

    #[test]
    fn empty_brokers_and_zero_timeouts_are_rejected() {
        let mut c = KafkaConfig::new(Vec::<String>::new(), "/tmp/s");
        assert!(matches!(c.validate(), Err(KafkaSinkError::Invalid(_))));
        c.brokers = vec!["a:1".into()];
        c.delivery_timeout = Duration::ZERO;
        assert!(matches!(c.validate(), Err(KafkaSinkError::Invalid(_))));
    }

    #[test]
    fn the_producer_is_idempotent_with_acks_all() {
        let mut c = KafkaConfig::new(["a:1"], "/tmp/s");
        c.properties.insert("linger.ms".into(), "20".into());
        let cc = c.client_config();
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("compression.type"), Some("lz4"));
        assert_eq!(cc.get("message.timeout.ms"), Some("30000"));
        assert_eq!(cc.get("linger.ms"), Some("20"));
    }

    #[test]
    fn delivery_opaques_round_trip_kind_and_sequence() {
        for kind in RecordKind::ALL {
            let o = opaque(kind, None);
            assert_eq!((RecordKind::from_index(o & 3), o & OPAQUE_REPLAY), (Some(kind), 0));
            let o = opaque(kind, Some(123_456_789));
            assert_eq!(RecordKind::from_index(o & 3), Some(kind));
            assert_ne!(o & OPAQUE_REPLAY, 0);
            assert_eq!(o >> 3, 123_456_789);
        }
    }
}
