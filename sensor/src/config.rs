//! The sensor configuration file (`outpost.toml`).
//!
//! Every table rejects unknown keys; every error names the file, line, column and key. The
//! file may list further rule files (`rule_files`), read relative to the file itself. Without
//! `--config`, the built-in default ([`DEFAULT_CONFIG`], the repository's
//! `config/outpost.toml`) is used: the seed state machine and the demo networks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_decode::Duration;
use outpost_detector::{
    AlertPolicyConfig, AlertWindowConfig, ConfigDuration, ConfigError, NetworkConfig, NetworkMap, RuleSet,
    RulesConfig, SourceText,
};
use outpost_flowmeter::{FlowConfig, MAX_ACTIVE_TIMEOUT, TableConfig};
use serde::Deserialize;
use toml::Spanned;

/// Most worker threads (the worker number is the top byte of flow ids).
pub const MAX_WORKERS: usize = 256;

/// The built-in configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/outpost.toml");

/// The built-in configuration's rule files (`rules.d/*.toml` of the repository's `config/`),
/// by the path the configuration names them with.
pub const BUILTIN_RULE_FILES: &[(&str, &str)] = &[
    ("rules.d/default.toml", include_str!("../../config/rules.d/default.toml")),
    ("rules.d/seed.toml", include_str!("../../config/rules.d/seed.toml")),
];

/// The files a `rule_files` entry names: itself, or — when its file name holds `*` — every
/// file of its directory matching the pattern (`*` matches any run of characters), sorted.
fn expand(
    pattern: &str,
    list_dir: impl Fn(&Path) -> std::io::Result<Vec<String>>,
) -> std::io::Result<Vec<String>> {
    let (dir, name) = match pattern.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", pattern),
    };
    if !name.contains('*') {
        return Ok(vec![pattern.to_string()]);
    }
    let mut out: Vec<String> = list_dir(Path::new(dir))?
        .into_iter()
        .filter(|f| wildcard(name, f))
        .map(|f| if dir.is_empty() { f } else { format!("{dir}/{f}") })
        .collect();
    out.sort();
    Ok(out)
}

/// `*` matches any run of characters; everything else matches itself.
fn wildcard(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len().saturating_sub(head.len()))
                    .any(|i| name.get(head.len() + i..).is_some_and(|rest| wildcard(tail, rest)))
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// `[sensor]`: identity.
    #[serde(default)]
    pub sensor: SensorSection,
    /// `[pipeline]`: threads and cores.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// `[alerts]`: alert windows and lateness.
    #[serde(default)]
    pub alerts: AlertWindowConfig,
    /// `[alert_policy]`: dedup, suppression, rate limits.
    #[serde(default)]
    pub alert_policy: AlertPolicyConfig,
    /// `[flows]`: the flow meter.
    #[serde(default)]
    pub flows: FlowsSection,
    /// `[capture]`: live capture (`outpost run`).
    #[serde(default)]
    pub capture: CaptureSection,
    /// `[output]`: JSON-lines files.
    #[serde(default)]
    pub output: OutputSection,
    /// `[kafka]`: alerts, flow records and alert windows to Kafka (the section turns it on).
    #[serde(default)]
    pub kafka: Option<KafkaSection>,
    /// `[snippets]`: pcap files of the packets around each alert (the section turns them on;
    /// absent: off unless `--snippets DIR`).
    #[serde(default)]
    pub snippets: Option<outpost_snippet::SnippetConfig>,
    /// `[[networks]]`: network ids for alerts and windows.
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// `[rules]`: rules written inline.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Further rule files (same schema as `[rules]`, at their top level), relative to this
    /// file.
    #[serde(default)]
    pub rule_files: Vec<String>,
}

/// `[kafka]`: the Kafka sink's settings ([`outpost_export::KafkaConfig`]: `brokers`,
/// `[kafka.topics]`, `compression`, `[kafka.spool]`, `[kafka.properties]` …; README "Kafka")
/// plus what the sensor does with them at start. Unknown keys are rejected by the sink's
/// configuration.
#[derive(Debug, Deserialize)]
pub struct KafkaSection {
    /// Create the three topics at start if they are missing, with this many partitions
    /// (replication factor 1). Default: do not create (the brokers or an operator do).
    #[serde(default)]
    pub create_topics: Option<i32>,
    /// The sink's keys, as written.
    #[serde(flatten)]
    pub sink: toml::Table,
}

impl KafkaSection {
    /// The sink's configuration.
    ///
    /// # Errors
    /// An unknown or invalid key, or a failed check ([`outpost_export::KafkaConfig::validate`]).
    pub fn to_config(&self) -> Result<outpost_export::KafkaConfig, String> {
        let c: outpost_export::KafkaConfig =
            self.sink.clone().try_into().map_err(|e: toml::de::Error| e.message().to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// `[output]`: the JSON-lines files `--alerts`, `--flows` and `--windows` name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `outpost run` starts a new file once the current one holds this many bytes (the old
    /// one is renamed `FILE.<UTC time>`). Default 0: never by size.
    #[serde(default)]
    pub rotate_bytes: u64,
    /// `outpost run` starts a new file once the current one is this old (wall-clock time).
    /// Default `0s`: never by age.
    #[serde(default)]
    pub rotate_interval: Option<Spanned<ConfigDuration>>,
}

impl OutputSection {
    /// The rotation `outpost run` applies.
    #[must_use]
    pub fn rotation(&self) -> crate::output::Rotation {
        crate::output::Rotation {
            keep_existing: true,
            max_bytes: self.rotate_bytes,
            max_age: self
                .rotate_interval
                .as_ref()
                .map_or(std::time::Duration::ZERO, |d| std::time::Duration::from_nanos(d.get_ref().0.0)),
        }
    }
}

/// `[sensor]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Sensor name, written into every alert (`sensor`) and part of alert ids. Default
    /// `outpost`.
    #[serde(default = "default_name")]
    pub name: String,
}

impl Default for SensorSection {
    fn default() -> SensorSection {
        SensorSection { name: default_name() }
    }
}

fn default_name() -> String {
    "outpost".into()
}

/// `[pipeline]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Worker threads; 0 (the default) means one per available core.
    #[serde(default)]
    pub workers: usize,
    /// Cores to pin workers to, worker `w` on `worker_cores[w % len]`. Default: not pinned.
    #[serde(default)]
    pub worker_cores: Vec<usize>,
    /// Core to pin the receive thread to. Default: not pinned.
    #[serde(default)]
    pub receive_core: Option<usize>,
}

/// `[flows]`: flow meter sizes and timeouts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsSection {
    /// Meter flows at all. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Most flows tracked per worker; when full, the flow idle longest is exported with
    /// `flowEndReason: evicted`. Default 1048576 (about 122 bytes each, allocated up front
    /// as virtual memory and touched as flows arrive).
    #[serde(default = "default_flow_capacity")]
    pub capacity: usize,
    /// A flow with no packet for this long ends. Default `30s`.
    #[serde(default = "default_idle")]
    pub idle_timeout: Spanned<ConfigDuration>,
    /// A flow active this long emits an interim record (delta counters, same flow id) and
    /// goes on. Default `120s`, at most `1h`.
    #[serde(default = "default_active")]
    pub active_timeout: Spanned<ConfigDuration>,
    /// After both TCP FINs or a RST, how long the flow waits for the last packets (the final
    /// ACK) before its record is exported. Default `2s`.
    #[serde(default = "default_linger")]
    pub close_linger: Spanned<ConfigDuration>,
    /// How long a first fragment's ports are kept for its later fragments. Default `30s`.
    #[serde(default = "default_fragment_timeout")]
    pub fragment_timeout: Spanned<ConfigDuration>,
    /// Most fragmented datagrams tracked at once per worker. Default 65536.
    #[serde(default = "default_fragment_capacity")]
    pub fragment_capacity: usize,
}

impl Default for FlowsSection {
    fn default() -> FlowsSection {
        FlowsSection {
            enabled: true,
            capacity: default_flow_capacity(),
            idle_timeout: default_idle(),
            active_timeout: default_active(),
            close_linger: default_linger(),
            fragment_timeout: default_fragment_timeout(),
            fragment_capacity: default_fragment_capacity(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_flow_capacity() -> usize {
    FlowConfig::default().table.capacity
}
fn unspanned(d: Duration) -> Spanned<ConfigDuration> {
    Spanned::new(0..0, ConfigDuration(d))
}
fn default_idle() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.idle_timeout)
}
fn default_active() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.active_timeout)
}
fn default_linger() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().table.close_linger)
}
fn default_fragment_timeout() -> Spanned<ConfigDuration> {
    unspanned(FlowConfig::default().fragment_timeout)
}
fn default_fragment_capacity() -> usize {
    FlowConfig::default().fragment_capacity
}

impl FlowsSection {
    /// The flow meter configuration, checked against its limits.
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending key.
    pub fn to_config(&self, src: &SourceText) -> Result<FlowConfig, ConfigError> {
        let positive = |d: &Spanned<ConfigDuration>, key: &str| {
            if d.get_ref().0 == Duration::ZERO {
                Err(src.error(d.span(), format!("flows.{key}"), "must be longer than zero"))
            } else {
                Ok(d.get_ref().0)
            }
        };
        let idle_timeout = positive(&self.idle_timeout, "idle_timeout")?;
        let active_timeout = positive(&self.active_timeout, "active_timeout")?;
        let close_linger = positive(&self.close_linger, "close_linger")?;
        let fragment_timeout = positive(&self.fragment_timeout, "fragment_timeout")?;
        if close_linger > idle_timeout {
            return Err(src.error(
                self.close_linger.span(),
                "flows.close_linger",
                "must not be longer than flows.idle_timeout",
            ));
        }
        if active_timeout > MAX_ACTIVE_TIMEOUT {
            return Err(src.error(self.active_timeout.span(), "flows.active_timeout", "must be at most 1h"));
        }
        if self.capacity == 0 || self.capacity > outpost_flowmeter::table::MAX_CAPACITY {
            return Err(src.error(0..0, "flows.capacity", "must be between 1 and 4294967294"));
        }
        Ok(FlowConfig {
            table: TableConfig { capacity: self.capacity, idle_timeout, active_timeout, close_linger },
            fragment_timeout,
            fragment_capacity: self.fragment_capacity.max(1),
        })
    }
}

/// How `outpost run` captures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureMode {
    /// XDP + AF_XDP when the program loads and attaches, else AF_PACKET (the default).
    #[default]
    Auto,
    /// XDP + AF_XDP or fail.
    Xdp,
    /// AF_PACKET (TPACKET_V3) only.
    AfPacket,
}

/// A three-way choice: automatic, or forced one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpAttachChoice {
    /// Native (driver) mode when the driver has it, else generic (SKB) mode.
    #[default]
    Auto,
    /// Native mode or fail.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// Zero-copy choice for AF_XDP sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroCopyChoice {
    /// Zero-copy when the driver supports it, else copy mode.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// How several receive queues are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RxThreadsChoice {
    /// A thread per queue drains its socket and hands copied frames to the receive thread.
    #[default]
    PerQueue,
    /// The receive thread reads the queues in turn (one thread fewer per queue: small hosts).
    Shared,
}

/// `[capture]`: live capture by `outpost run`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Interface to capture on (`--interface` overrides it). No default.
    #[serde(default)]
    pub interface: Option<String>,
    /// `auto` (default), `xdp` or `af_packet`.
    #[serde(default)]
    pub mode: CaptureMode,
    /// XDP attach mode: `auto` (default: native, else generic), `native`, `generic`.
    #[serde(default)]
    pub xdp_attach: XdpAttachChoice,
    /// AF_XDP zero-copy: `auto` (default), `on`, `off`.
    #[serde(default)]
    pub zero_copy: ZeroCopyChoice,
    /// Receive queues to capture (AF_XDP: one socket each). Default: every queue.
    #[serde(default)]
    pub queues: Vec<u32>,
    /// With several queues: `per_queue` (default, a receive thread per queue) or `shared`
    /// (one thread reads them in turn).
    #[serde(default)]
    pub rx_threads: RxThreadsChoice,
    /// Cores for the per-queue receive threads: queue `i`'s thread runs on
    /// `rx_cores[i % len]`. Default none (not pinned).
    #[serde(default)]
    pub rx_cores: Vec<usize>,
    /// Source prefixes (`ADDR[/LEN]`) dropped by the XDP program before capture: the hook for
    /// automatic response. Default none.
    #[serde(default)]
    pub blocklist: Vec<Spanned<String>>,
    /// A file of further blocklist prefixes, one per line, `#` comments; relative to this file.
    #[serde(default)]
    pub blocklist_file: Option<Spanned<String>>,
    /// Capacity of each blocklist table (IPv4 and IPv6) in the XDP program. Default 65536.
    #[serde(default = "default_blocklist_max")]
    pub blocklist_max_entries: u32,
    /// Prefixes (source or destination) whose frames the XDP program passes to the kernel
    /// instead of capturing them (e.g. the sensor's own management network). Default none.
    #[serde(default)]
    pub pass_nets: Vec<Spanned<String>>,
    /// TCP/UDP/SCTP ports (source or destination) passed to the kernel instead of captured.
    #[serde(default)]
    pub pass_ports: Vec<u16>,
    /// How often `outpost run` prints capture statistics. Default `10s`; `0s` = only at exit.
    #[serde(default = "default_stats_interval")]
    pub stats_interval: Spanned<ConfigDuration>,
    /// When a worker's ring is full: frames are dropped and counted (never blocking the NIC
    /// ring). Ring capacity in blocks of up to 256 frames (256 KiB) per worker. Default 256
    /// (65,536 frames: rides out a worker's scheduling hiccups at a few hundred thousand
    /// frames a second); blocks are allocated only when a backlog needs them.
    #[serde(default = "default_worker_ring")]
    pub worker_ring_blocks: usize,
    /// How long the receive thread may hold partly filled blocks while frames arrive before it
    /// sends them to the workers (full blocks go at once, and everything goes when the capture
    /// is idle). Bounds the added latency; each send costs every worker a clock tick and a ring
    /// slot. Default `1ms`; at most `1s`.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Spanned<ConfigDuration>,
    /// `[capture.af_xdp]`: socket and UMEM sizes.
    #[serde(default)]
    pub af_xdp: AfXdpSection,
    /// `[capture.af_packet]`: ring sizes and fanout.
    #[serde(default)]
    pub af_packet: AfPacketSection,
}

impl Default for CaptureSection {
    fn default() -> CaptureSection {
        CaptureSection {
            interface: None,
            mode: CaptureMode::Auto,
            xdp_attach: XdpAttachChoice::Auto,
            zero_copy: ZeroCopyChoice::Auto,
            queues: Vec::new(),
            rx_threads: RxThreadsChoice::PerQueue,
            rx_cores: Vec::new(),
            blocklist: Vec::new(),
            blocklist_file: None,
            blocklist_max_entries: default_blocklist_max(),
            pass_nets: Vec::new(),
            pass_ports: Vec::new(),
            stats_interval: default_stats_interval(),
            worker_ring_blocks: default_worker_ring(),
            flush_interval: default_flush_interval(),
            af_xdp: AfXdpSection::default(),
            af_packet: AfPacketSection::default(),
        }
    }
}

fn default_blocklist_max() -> u32 {
    65_536
}
fn default_flush_interval() -> Spanned<ConfigDuration> {
    unspanned(Duration::from_millis(1))
}
fn default_stats_interval() -> Spanned<ConfigDuration> {
    unspanned(Duration::from_secs(10))
}
fn default_worker_ring() -> usize {
    256
}

/// `[capture.af_xdp]` (defaults: `outpost_capture::af_xdp::AfXdpOptions`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfXdpSection {
    /// Bytes per UMEM frame: 2048 or 4096 (default 4096).
    #[serde(default = "afxdp_frame_size")]
    pub frame_size: u32,
    /// UMEM frames per socket (default 16384).
    #[serde(default = "afxdp_frames")]
    pub frames: u32,
    /// Rx ring entries, a power of two (default 4096).
    #[serde(default = "afxdp_rx")]
    pub rx_size: u32,
    /// Fill ring entries, a power of two (default 8192).
    #[serde(default = "afxdp_fill")]
    pub fill_size: u32,
    /// Most frames per batch (default 256).
    #[serde(default = "afxdp_batch")]
    pub batch: u32,
    /// Use the need-wakeup protocol (default true).
    #[serde(default = "yes")]
    pub need_wakeup: bool,
}

impl Default for AfXdpSection {
    fn default() -> AfXdpSection {
        AfXdpSection {
            frame_size: afxdp_frame_size(),
            frames: afxdp_frames(),
            rx_size: afxdp_rx(),
            fill_size: afxdp_fill(),
            batch: afxdp_batch(),
            need_wakeup: true,
        }
    }
}

fn afxdp_frame_size() -> u32 {
    outpost_capture::af_xdp::AfXdpOptions::default().frame_size
}
fn afxdp_frames() -> u32 {
    outpost_capture::af_xdp::AfXdpOptions::default().frames
}
fn afxdp_rx() -> u32 {
    outpost_capture::af_xdp::AfXdpOptions::default().rx_size
}
fn afxdp_fill() -> u32 {
    outpost_capture::af_xdp::AfXdpOptions::default().fill_size
}
fn afxdp_batch() -> u32 {
    outpost_capture::af_xdp::AfXdpOptions::default().batch
}

/// `[capture.af_packet]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AfPacketSection {
    /// Bytes per ring block, a multiple of the page size (default 4 MiB).
    #[serde(default = "afp_block_size")]
    pub block_size: u32,
    /// Blocks in the ring (default 64).
    #[serde(default = "afp_block_count")]
    pub block_count: u32,
    /// A partly filled block is handed over after this long (default `10ms`).
    #[serde(default = "afp_block_timeout")]
    pub block_timeout: Spanned<ConfigDuration>,
    /// Fanout group id: several `outpost run` processes (or sockets) on one interface with the
    /// same id share its traffic by flow hash. Default: no fanout.
    #[serde(default)]
    pub fanout_group: Option<u16>,
}

impl Default for AfPacketSection {
    fn default() -> AfPacketSection {
        AfPacketSection {
            block_size: afp_block_size(),
            block_count: afp_block_count(),
            block_timeout: afp_block_timeout(),
            fanout_group: None,
        }
    }
}

fn afp_block_size() -> u32 {
    4 << 20
}
fn afp_block_count() -> u32 {
    64
}
fn afp_block_timeout() -> Spanned<ConfigDuration> {
    unspanned(Duration::from_millis(10))
}

/// `[capture]` checked: prefixes parsed, the blocklist file read.
#[derive(Debug, Clone, Default)]
pub struct CaptureSettings {
    /// Blocklist prefixes from `blocklist` and `blocklist_file`.
    pub blocklist: Vec<outpost_decode::Cidr>,
    /// Pass-filter prefixes.
    pub pass_nets: Vec<outpost_decode::Cidr>,
    /// Statistics interval (zero: only at exit).
    pub stats_interval: Duration,
    /// AF_PACKET block timeout.
    pub block_timeout: Duration,
    /// Longest a partly filled block waits while frames arrive.
    pub flush_interval: Duration,
}

impl CaptureSection {
    /// Parses the prefixes and reads the blocklist file (relative to `base`).
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending key, or naming the blocklist file and line.
    pub fn to_settings(&self, src: &SourceText, base: &Path) -> Result<CaptureSettings, ConfigError> {
        let cidrs = |list: &[Spanned<String>], key: &str| {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    c.get_ref()
                        .parse::<outpost_decode::Cidr>()
                        .map_err(|e| src.error(c.span(), format!("capture.{key}[{i}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut blocklist = cidrs(&self.blocklist, "blocklist")?;
        if let Some(f) = &self.blocklist_file {
            let path = base.join(f.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                src.error(f.span(), "capture.blocklist_file", format!("cannot read {}: {e}", path.display()))
            })?;
            for (n, line) in text.lines().enumerate() {
                let entry = line.split('#').next().unwrap_or("").trim();
                if entry.is_empty() {
                    continue;
                }
                let cidr = entry
                    .parse::<outpost_decode::Cidr>()
                    .map_err(|e| ConfigError::file(&path, format!("line {}: {e}", n + 1)))?;
                blocklist.push(cidr);
            }
        }
        let limit = usize::try_from(self.blocklist_max_entries).unwrap_or(usize::MAX);
        let (v4, v6) = blocklist
            .iter()
            .fold((0usize, 0usize), |(a, b), c| if c.network().is_v4() { (a + 1, b) } else { (a, b + 1) });
        if v4.max(v6) > limit {
            return Err(src.error(
                0..0,
                "capture.blocklist_max_entries",
                format!(
                    "{} blocklist entries of one family exceed blocklist_max_entries ({limit})",
                    v4.max(v6)
                ),
            ));
        }
        let pass_nets = cidrs(&self.pass_nets, "pass_nets")?;
        if self.worker_ring_blocks < 2 {
            return Err(src.error(0..0, "capture.worker_ring_blocks", "must be at least 2"));
        }
        let block_timeout = self.af_packet.block_timeout.get_ref().0;
        if block_timeout == Duration::ZERO {
            return Err(src.error(
                self.af_packet.block_timeout.span(),
                "capture.af_packet.block_timeout",
                "must be longer than zero",
            ));
        }
        let flush_interval = self.flush_interval.get_ref().0;
        if flush_interval > Duration::from_secs(1) {
            return Err(src.error(
                self.flush_interval.span(),
                "capture.flush_interval",
                "must be at most 1s",
            ));
        }
        Ok(CaptureSettings {
            blocklist,
            pass_nets,
            stats_interval: self.stats_interval.get_ref().0,
            block_timeout,
            flush_interval,
        })
    }
}

/// A configuration with its rules compiled.
#[derive(Debug)]
pub struct Loaded {
    /// The parsed file.
    pub config: SensorConfig,
    /// Compiled rules (inline and from rule files).
    pub rules: Arc<RuleSet>,
    /// Network lookup.
    pub networks: Arc<NetworkMap>,
    /// Where the configuration came from (a path, or `<built-in>`).
    pub origin: PathBuf,
    /// The flow meter configuration, or `None` when `flows.enabled` is false.
    pub flows: Option<FlowConfig>,
    /// The checked `[capture]` section.
    pub capture: CaptureSettings,
    /// The Kafka sink's configuration, checked (`[kafka]`; none: no Kafka export).
    pub kafka: Option<outpost_export::KafkaConfig>,
}

impl Loaded {
    /// Reads and compiles `path`, or the built-in default when `None`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming file, line and key.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        let main = match path {
            Some(p) => SourceText::new(
                p,
                std::fs::read_to_string(p).map_err(|e| ConfigError::file(p, format!("cannot read: {e}")))?,
            ),
            None => SourceText::new("<built-in config>", DEFAULT_CONFIG),
        };
        let config: SensorConfig = main.parse()?;
        let base = path.and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let mut files = Vec::with_capacity(config.rule_files.len());
        for pattern in &config.rule_files {
            let names = match path {
                Some(_) => expand(pattern, |d| {
                    let dir = base.join(d);
                    std::fs::read_dir(&dir)?
                        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                        .collect()
                }),
                None => expand(pattern, |d| {
                    Ok(BUILTIN_RULE_FILES
                        .iter()
                        .filter_map(|(p, _)| {
                            p.rsplit_once('/')
                                .filter(|(dir, _)| Path::new(dir) == d)
                                .map(|(_, n)| n.to_string())
                        })
                        .collect())
                }),
            }
            .map_err(|e| ConfigError::file(&base.join(pattern), format!("cannot list rule files: {e}")))?;
            if names.is_empty() {
                return Err(ConfigError::file(
                    &main.path,
                    format!("rule_files: `{pattern}` matches no file"),
                ));
            }
            for f in names {
                let (p, text) = match path {
                    Some(_) => {
                        let p = base.join(&f);
                        let text = std::fs::read_to_string(&p)
                            .map_err(|e| ConfigError::file(&p, format!("cannot read rule file: {e}")))?;
                        (p, text)
                    }
                    None => {
                        let text =
                            BUILTIN_RULE_FILES.iter().find(|(n, _)| *n == f).map(|(_, t)| (*t).to_string());
                        let text = text
                            .ok_or_else(|| ConfigError::file(Path::new(&f), "no such built-in rule file"))?;
                        (PathBuf::from(format!("<built-in {f}>")), text)
                    }
                };
                let src = SourceText::new(p, text);
                let rules: RulesConfig = src.parse()?;
                files.push((rules, src));
            }
        }
        let mut parts = vec![(&config.rules, &main, "rules")];
        parts.extend(files.iter().map(|(r, s)| (r, s, "")));
        let rules = RuleSet::compile(parts)?;
        let mut ids = std::collections::HashSet::new();
        for n in &config.networks {
            if !ids.insert(n.id) {
                return Err(ConfigError::file(
                    &main.path,
                    format!("network id {} is used twice in [[networks]]", n.id),
                ));
            }
        }
        let networks = NetworkMap::new(&config.networks);
        let flows = if config.flows.enabled { Some(config.flows.to_config(&main)?) } else { None };
        let capture = config.capture.to_settings(&main, &base)?;
        let kafka = config
            .kafka
            .as_ref()
            .map(|k| {
                k.to_config().map_err(|e| {
                    let at = main.text.find("[kafka").unwrap_or(0);
                    main.error(at..at, "kafka", e)
                })
            })
            .transpose()?;
        if let Some(s) = &config.snippets {
            s.validate().map_err(|e| {
                let at = main.text.find("[snippets]").unwrap_or(0);
                main.error(at..at, format!("snippets.{}", e.key), e.reason)
            })?;
        }
        if config.pipeline.workers > MAX_WORKERS {
            return Err(ConfigError::file(&main.path, format!("pipeline.workers: at most {MAX_WORKERS}")));
        }
        Ok(Loaded {
            origin: main.path.clone(),
            config,
            rules: Arc::new(rules),
            networks: Arc::new(networks),
            flows,
            capture,
            kafka,
        })
    }

    /// Worker count: configured, or one per available core; at most [`MAX_WORKERS`].
    #[must_use]
    pub fn workers(&self, override_workers: Option<usize>) -> usize {
        match override_workers.unwrap_or(self.config.pipeline.workers) {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
        .min(MAX_WORKERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(wildcard("*.toml", "default.toml"));
        assert!(wildcard("a*b*c", "aXXbYc"));
        assert!(!wildcard("*.toml", "default.toml~"));
        assert!(wildcard("x", "x"));
        let files =
            expand("rules.d/*.toml", |_| Ok(vec!["b.toml".into(), "a.toml".into(), "c.txt".into()])).unwrap();
        assert_eq!(files, vec!["rules.d/a.toml", "rules.d/b.toml"]);
    }

    #[test]
    fn the_built_in_config_compiles_and_matches_the_repository_files() {
        let l = Loaded::load(None).expect("default config");
        let names: Vec<&str> = l.rules.names().collect();
        assert!(names.contains(&"seed-state-machine") && names.contains(&"scan-vertical-tcp"), "{names:?}");
        let from_files =
            Loaded::load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/outpost.toml"))))
                .expect("repository config");
        assert_eq!(
            from_files.rules.names().collect::<Vec<_>>(),
            names,
            "BUILTIN_RULE_FILES must list every rules.d file"
        );
        assert!(!l.networks.networks().is_empty());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[sensor]\nname = \"x\"\n\n[pipeline]\nworkerz = 3\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("unknown key");
        assert_eq!((e.line, e.key.as_str()), (5, "workerz"), "{e}");

        std::fs::write(
            &p,
            "[[rules.state_machine]]\nname = \"m\"\nevents = [ { name = \"a\", filter = \"udp port 7001\" } ]\ntransitions = [\n  \"INITIAL --a--> W\",\n  \"W --b--> X\",\n]\n",
        )
        .unwrap();
        let e = Loaded::load(Some(&p)).expect_err("undeclared event");
        assert_eq!(e.line, 6, "{e}");
        assert_eq!(e.key, "rules.state_machine[0].transitions[1]");
        assert!(e.message.contains("event `b` is not declared"), "{e}");

        std::fs::write(
            &p,
            "[[rules.state_machine]]\nname = \"m\"\nevents = [\n  { name = \"a\", filter = \"udp dst prot 7001\" },\n]\ntransitions = [\"INITIAL --a--> W\"]\n",
        )
        .unwrap();
        let e = Loaded::load(Some(&p)).expect_err("bad filter");
        assert_eq!(e.line, 4, "{e}");
        assert_eq!(e.key, "rules.state_machine[0].events[0].filter");
    }

    #[test]
    fn flow_limits_are_checked_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        std::fs::write(&p, "[flows]\ncapacity = 1000\n\nactive_timeout = \"2h\"\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("too long");
        assert_eq!((e.line, e.key.as_str()), (4, "flows.active_timeout"), "{e}");
        std::fs::write(&p, "[flows]\nidle_timeout = \"5s\"\nactive_timeout = \"1m\"\n").unwrap();
        let f = Loaded::load(Some(&p)).expect("valid").flows.expect("enabled");
        assert_eq!(f.table.idle_timeout, Duration::from_secs(5));
        assert_eq!(f.table.active_timeout, Duration::from_secs(60));
        std::fs::write(&p, "[flows]\nenabled = false\n").unwrap();
        assert!(Loaded::load(Some(&p)).expect("valid").flows.is_none());
    }

    #[test]
    fn kafka_snippet_and_output_sections_are_checked_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("o.toml");
        std::fs::write(&p, "[sensor]\nname = \"x\"\n\n[kafka]\nbrokers = [\"k:9092\"]\nbatch_sise = 3\n[kafka.spool]\ndir = \"/tmp/s\"\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("unknown kafka key");
        assert_eq!((e.line, e.key.as_str()), (4, "kafka"), "{e}");
        assert!(e.message.contains("batch_sise"), "{e}");

        std::fs::write(&p, "[kafka]\nbrokers = [\"k:9092\"]\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("no spool");
        assert!(e.message.contains("spool"), "{e}");

        std::fs::write(&p, "\n[snippets]\nsnaplen = 4\n").unwrap();
        let e = Loaded::load(Some(&p)).expect_err("snaplen too small");
        assert_eq!((e.line, e.key.as_str()), (2, "snippets.snaplen"), "{e}");

        std::fs::write(
            &p,
            "[snippets]\nbefore = \"2s\"\n[output]\nrotate_bytes = 1000\nrotate_interval = \"1h\"\n",
        )
        .unwrap();
        let l = Loaded::load(Some(&p)).expect("valid");
        assert_eq!(l.config.snippets.expect("on").before.0, Duration::from_secs(2));
        let r = l.config.output.rotation();
        assert_eq!((r.max_bytes, r.max_age), (1000, std::time::Duration::from_secs(3600)));
    }

    #[test]
    fn rule_files_are_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rules")).unwrap();
        std::fs::write(
            dir.path().join("rules/extra.toml"),
            "[[state_machine]]\nname = \"hs\"\nevents = [ { name = \"syn\", filter = \"tcp[tcpflags] & tcp-syn != 0\" } ]\ntransitions = [\"INITIAL --syn--> S\"]\n",
        )
        .unwrap();
        let p = dir.path().join("outpost.toml");
        std::fs::write(&p, "rule_files = [\"rules/extra.toml\"]\n").unwrap();
        let l = Loaded::load(Some(&p)).expect("loads");
        assert_eq!(l.rules.names().collect::<Vec<_>>(), vec!["hs"]);
    }
}
