//! `outpost replay`: run capture files through the same pipeline a live sensor uses.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use outpost_capture::{Backpressure, Merged, PcapFiles, PipelineConfig, Sharding, run_pipeline};
use outpost_decode::IpAddress;
use outpost_detector::{AlertJson, AlertWindows, CentralDetector, CentralOutput, DedupJson, WindowJson};
use outpost_export::{
    BiflowMode, IpfixExporter, IpfixOptions, KafkaSink, KafkaStats, NetflowV9Exporter, NetflowV9Options,
    RecordKind,
};
use outpost_flowmeter::{EndReason, FlowJson};
use serde::Serialize;

use crate::config::Loaded;
use crate::output::JsonLines;
use crate::reload::RuleReloads;
use crate::snippets::{SnippetCollector, SnippetSummary};
use crate::worker::{SensorRecord, SensorStage, StageSetup, WorkerStats};

/// Options of `outpost replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng, any supported link type), replayed in order as one input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Configuration file (default: the built-in demo configuration).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Outputs and threads.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Outputs and threads, shared by `outpost replay` and `outpost run`.
#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Where alerts go, as JSON lines: a file, or `-` for standard output.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    pub alerts: PathBuf,
    /// Where flow records go, as JSON lines (field names from IPFIX): a file, or `-` for
    /// standard output. Not written unless given.
    #[arg(long, value_name = "FILE|-")]
    pub flows: Option<PathBuf>,
    /// Export flow records as IPFIX (RFC 7011) over UDP to this collector (`HOST:PORT`, e.g.
    /// an nfcapd on `127.0.0.1:4739`).
    #[arg(long, value_name = "HOST:PORT")]
    pub ipfix: Option<String>,
    /// IPFIX record form: `biflow` (one RFC 5103 record per flow, the default) or `uniflow`
    /// (a forward record and, when the responder sent packets, a reverse record).
    #[arg(long, value_enum, default_value_t = IpfixModeArg::Biflow)]
    pub ipfix_mode: IpfixModeArg,
    /// Export flow records as NetFlow v9 (RFC 3954) over UDP to this collector (`HOST:PORT`).
    /// NetFlow v9 records are unidirectional: a forward and, when the responder sent packets,
    /// a reverse record per flow.
    #[arg(long, value_name = "HOST:PORT")]
    pub netflow9: Option<String>,
    /// Where alert-window summaries (alerts per network id and window) go, as JSON lines: a
    /// file, or `-` for standard output. Not written unless given.
    #[arg(long, value_name = "FILE|-")]
    pub windows: Option<PathBuf>,
    /// Write a pcap snippet of the packets around each alert into DIR/YYYY-MM-DD/ (overrides
    /// `snippets.dir`; turns snippets on with the `[snippets]` defaults if the configuration
    /// has no such section). Alerts carry the file's path as `snippet`.
    #[arg(long, value_name = "DIR")]
    pub snippets: Option<PathBuf>,
    /// Worker threads (overrides `pipeline.workers`; 0 = one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Also write the end-of-run summary as JSON to this file (`-` for standard output).
    #[arg(long, value_name = "FILE|-")]
    pub summary_json: Option<PathBuf>,
    /// Do not print the summary on standard error.
    #[arg(short, long)]
    pub quiet: bool,
}

/// An alert as written: the detector's record plus, with snippets on, the path of its pcap
/// snippet (known when the alert is reported; the file follows once capture time passed the
/// snippet's window).
#[derive(Serialize)]
struct AlertRecord<'a> {
    #[serde(flatten)]
    alert: AlertJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snippet: Option<PathBuf>,
}

/// IPFIX record forms on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpfixModeArg {
    /// One RFC 5103 biflow record per flow.
    Biflow,
    /// Forward and reverse records.
    Uniflow,
}

/// Resolves `HOST:PORT` to the first address it names.
fn collector(spec: &str, option: &str) -> anyhow::Result<SocketAddr> {
    spec.to_socket_addrs()
        .with_context(|| format!("{option} {spec}: not a HOST:PORT collector address"))?
        .next()
        .with_context(|| format!("{option} {spec}: the name resolves to no address"))
}

/// Counters of one flow exporter, for the summary.
#[derive(Debug, Serialize)]
pub struct ExportSummary {
    /// Flow records given to the exporter.
    pub flows: u64,
    /// Messages (datagrams) sent.
    pub messages: u64,
    /// Data records sent.
    pub records: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Datagrams the socket refused.
    pub send_errors: u64,
    /// Records lost with them.
    pub records_lost: u64,
}

impl From<outpost_export::ExportStats> for ExportSummary {
    fn from(s: outpost_export::ExportStats) -> ExportSummary {
        ExportSummary {
            flows: s.flows,
            messages: s.messages,
            records: s.records,
            bytes: s.bytes,
            send_errors: s.send_errors,
            records_lost: s.records_lost,
        }
    }
}

/// End-of-run counters, printed on standard error and optionally written as JSON.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// The command (`replay`, `run`).
    pub command: &'static str,
    /// Input files (replay) or the interface (run).
    pub files: Vec<String>,
    /// Frames read.
    pub frames: u64,
    /// Bytes on the wire of those frames.
    pub wire_bytes: u64,
    /// Frames skipped because of an unsupported link type.
    pub unsupported_link_frames: u64,
    /// Decode outcome counts.
    pub decode: DecodeSummary,
    /// Alerts written.
    pub alerts: u64,
    /// Dedup summaries written (`alert_suppressed` records).
    pub suppressed_summaries: u64,
    /// Alert-window summaries produced.
    pub alert_windows: u64,
    /// Alerts whose window had already closed.
    pub late_alerts: u64,
    /// Rule reloads applied while running (`outpost run`, SIGHUP): the number of the last.
    pub rule_reloads: u64,
    /// Per-rule counters, for the rules running at the end.
    pub rules: Vec<RuleSummary>,
    /// Flow meter counters (absent when no flow output was asked for, or flows are
    /// disabled in the configuration: then no flow is metered).
    pub flows: Option<FlowSummary>,
    /// IPFIX export counters (with `--ipfix`).
    pub ipfix: Option<ExportSummary>,
    /// NetFlow v9 export counters (with `--netflow9`).
    pub netflow9: Option<ExportSummary>,
    /// Worker threads.
    pub workers: usize,
    /// Frames handed to each worker.
    pub frames_per_worker: Vec<u64>,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// Frames per wall-clock second.
    pub packets_per_second: f64,
    /// Problems with the input (each after everything before it was processed).
    pub input_errors: Vec<String>,
    /// True when the run was interrupted by a signal before the end of the input.
    pub interrupted: bool,
    /// Live capture counters (`outpost run`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::run::CaptureSummary>,
    /// Frames dropped because a worker's ring was full (live capture), per worker.
    pub ring_full_drops: Vec<u64>,
    /// Alert snippets (with `[snippets]` or `--snippets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippets: Option<SnippetSummary>,
    /// The Kafka sink (with `[kafka]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSummary>,
}

/// Kafka sink counters at exit.
#[derive(Debug, Serialize)]
pub struct KafkaSummary {
    /// Everything was confirmed by the broker at exit (else the rest is in the spool, sent
    /// by the next run).
    pub complete: bool,
    /// The sink's counters.
    #[serde(flatten)]
    pub stats: KafkaStats,
}

/// Starts the Kafka sink of `[kafka]` (`config`, checked when the configuration was loaded),
/// creating the topics first if `create_topics` gives their partition count.
fn start_kafka(
    config: &outpost_export::KafkaConfig,
    create_topics: Option<i32>,
) -> anyhow::Result<KafkaSink> {
    if let Some(partitions) = create_topics {
        // A broker that is away must not keep the sensor from starting: its records spool.
        if let Err(e) =
            outpost_export::create_topics(config, partitions, 1, std::time::Duration::from_secs(5))
        {
            eprintln!(
                "outpost: warning: could not create the Kafka topics on {} ({e}); records spool until the broker is back",
                config.brokers.join(",")
            );
        }
    }
    KafkaSink::new(config).context("starting the Kafka sink")
}

/// Sends one record to Kafka if the sink is on, keyed by `key` as text (formatted only then:
/// without Kafka nothing is spent per record). Never waits: a broker that is away or slow
/// makes the sink spool (counted in its statistics).
fn kafka_send(
    kafka: &RefCell<Option<KafkaSink>>,
    kind: RecordKind,
    key: impl std::fmt::Display,
    value: &[u8],
) {
    if let Some(k) = kafka.borrow_mut().as_mut() {
        let _ = k.send(kind, key.to_string().as_bytes(), value);
    }
}

/// Decode counters.
#[derive(Debug, Serialize)]
pub struct DecodeSummary {
    /// IPv4 packets.
    pub ipv4: u64,
    /// IPv6 packets.
    pub ipv6: u64,
    /// ARP frames.
    pub arp: u64,
    /// Other EtherTypes.
    pub other: u64,
    /// Frames rejected below the transport layer.
    pub rejected: u64,
    /// Problems by reason (rejected frames and damaged transport headers).
    pub malformed: BTreeMap<&'static str, u64>,
}

/// Flow meter counters.
#[derive(Debug, Serialize)]
pub struct FlowSummary {
    /// Flows created.
    pub flows: u64,
    /// Records exported, by end reason.
    pub records: BTreeMap<&'static str, u64>,
    /// Records written to `--flows`.
    pub records_written: u64,
    /// Most flows tracked at once (summed over workers).
    pub peak_active: u64,
    /// IP packets metered.
    pub packets: u64,
    /// Frames that were not IP.
    pub not_ip: u64,
    /// First fragments seen.
    pub fragments_first: u64,
    /// Later fragments matched to their first fragment.
    pub fragments_matched: u64,
    /// Later fragments whose first fragment was not seen.
    pub fragments_orphaned: u64,
    /// Fragment entries dropped from a full tracking table.
    pub fragment_table_full: u64,
}

/// One rule's counters.
#[derive(Debug, Serialize)]
pub struct RuleSummary {
    /// Rule name.
    pub name: String,
    /// Rule kind.
    pub kind: &'static str,
    /// Inputs offered to the rule: packets of a class its filter may match (the others are
    /// ruled out by their class alone, at no cost per rule), flow records for flow rules,
    /// alerts and flow records for sequences. What it then `matched` is in `workers` or
    /// `collector`.
    pub evaluated: u64,
    /// Counters of the workers' part (state machines, local thresholds, absence, intel
    /// hits, partial aggregation).
    pub workers: outpost_detector::RuleStats,
    /// Counters of the collector's part (merged thresholds, flow rules, baselines,
    /// sequences).
    pub collector: outpost_detector::central::CentralRuleStats,
    /// What the alert policy did with the rule's alerts.
    pub policy: outpost_detector::policy::PolicyStats,
}

/// An identity for alert ids: the sensor name and each input file's name and size, so the
/// same files replayed by the same sensor give the same alert ids.
fn run_key(sensor: &str, files: &[PathBuf]) -> u64 {
    let mut h = Vec::new();
    h.extend_from_slice(sensor.as_bytes());
    for f in files {
        h.push(0);
        h.extend_from_slice(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        h.push(0);
        let len = std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        h.extend_from_slice(&len.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&h)
}

/// Runs `outpost replay`.
///
/// # Errors
/// Configuration or output problems. Damaged input is not an error of the command: it is
/// reported in the summary and gives exit status 2 after all output is written.
pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let loaded = Loaded::load(args.config.as_deref())?;
    for f in &args.files {
        std::fs::metadata(f).with_context(|| format!("cannot read {}", f.display()))?;
    }
    let stop = stop_on_signals()?;
    let key = run_key(&loaded.config.sensor.name, &args.files);
    let inputs = args.files.iter().map(|f| f.display().to_string()).collect();
    let summary = execute(
        &loaded,
        &args.out,
        PcapFiles::new(args.files.clone()),
        Execution { command: "replay", inputs, key, stop, ..Execution::default() },
    )?;
    finish_summary(&args.out, &summary)?;
    Ok(if summary.input_errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// A flag set by SIGINT and SIGTERM.
///
/// # Errors
/// When the handlers cannot be installed.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handler")?;
    }
    Ok(stop)
}

/// Writes the summary where `--summary-json` says and prints it unless `--quiet`.
///
/// # Errors
/// When the JSON summary cannot be written.
pub fn finish_summary(out: &OutputArgs, summary: &Summary) -> anyhow::Result<()> {
    if let Some(p) = &out.summary_json {
        let mut o = JsonLines::open(p)?;
        o.write(summary)?;
        o.flush()?;
    }
    if !out.quiet {
        eprint!("{}", render_summary(summary));
    }
    for e in &summary.input_errors {
        eprintln!("outpost {}: error: {e}", summary.command);
    }
    Ok(())
}

/// How [`execute`] runs: what to call the input, its identity, and the live-capture hooks.
pub struct Execution<'a> {
    /// `replay` or `run`.
    pub command: &'static str,
    /// Input names for the summary.
    pub inputs: Vec<String>,
    /// Alert id identity ([`run_key`]).
    pub key: u64,
    /// Set to stop early (signals).
    pub stop: Arc<AtomicBool>,
    /// Full worker ring policy.
    pub backpressure: outpost_capture::Backpressure,
    /// Blocks in flight per worker (`None`: the pipeline's default).
    pub ring_blocks: Option<usize>,
    /// When partly filled blocks go to the workers.
    pub flush: outpost_capture::FlushPolicy,
    /// Rotation of the JSON-lines files (`run`; replay never rotates).
    pub rotation: crate::output::Rotation,
    /// Called on the caller's thread after every watermark, with its event time.
    pub on_watermark: Box<dyn FnMut(outpost_decode::Nanos) + 'a>,
    /// Receives the receive thread's counters as they move.
    pub progress: Option<Arc<outpost_capture::Progress>>,
    /// Rule sets reloaded while running (`run` on SIGHUP); none: the rules never change.
    pub reloads: Option<Arc<RuleReloads>>,
}

impl std::fmt::Debug for Execution<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution")
            .field("command", &self.command)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl Default for Execution<'_> {
    fn default() -> Self {
        Execution {
            command: "replay",
            inputs: Vec::new(),
            key: 0,
            stop: Arc::new(AtomicBool::new(false)),
            backpressure: outpost_capture::Backpressure::Wait,
            ring_blocks: None,
            flush: outpost_capture::FlushPolicy::EveryBatch,
            rotation: crate::output::Rotation::default(),
            on_watermark: Box::new(|_| {}),
            progress: None,
            reloads: None,
        }
    }
}

/// Runs `source` through the pipeline with the outputs of `out`, and returns the summary.
///
/// # Errors
/// Output problems, or a pipeline thread that could not start or panicked.
pub fn execute<Src: outpost_capture::PacketSource + 'static>(
    loaded: &Loaded,
    args: &OutputArgs,
    source: Src,
    mut exec: Execution<'_>,
) -> anyhow::Result<Summary> {
    let workers = loaded.workers(args.workers);
    let config = PipelineConfig {
        workers,
        worker_cores: loaded.config.pipeline.worker_cores.clone(),
        receive_core: loaded.config.pipeline.receive_core,
        backpressure: exec.backpressure,
        ring_blocks: exec.ring_blocks.unwrap_or(PipelineConfig::default().ring_blocks),
        progress: exec.progress.clone(),
        flush: exec.flush,
        epochs: exec.reloads.as_ref().map(|r| r.epochs()),
        ..PipelineConfig::default()
    };
    let mut alerts_out = JsonLines::open_rotating(&args.alerts, exec.rotation)?;
    let mut flows_out = JsonLines::open_opt(args.flows.as_ref(), exec.rotation)?;
    let mut ipfix = match &args.ipfix {
        Some(spec) => {
            let options = IpfixOptions {
                mode: match args.ipfix_mode {
                    IpfixModeArg::Biflow => BiflowMode::Biflow,
                    IpfixModeArg::Uniflow => BiflowMode::Uniflow,
                },
                ..IpfixOptions::default()
            };
            let addr = collector(spec, "--ipfix")?;
            Some(IpfixExporter::connect(addr, options).with_context(|| format!("--ipfix {spec}"))?)
        }
        None => None,
    };
    let mut netflow9 = match &args.netflow9 {
        Some(spec) => {
            let addr = collector(spec, "--netflow9")?;
            Some(
                NetflowV9Exporter::connect(addr, NetflowV9Options::default())
                    .with_context(|| format!("--netflow9 {spec}"))?,
            )
        }
        None => None,
    };
    let kafka = RefCell::new(match &loaded.kafka {
        Some(k) => Some(start_kafka(k, loaded.config.kafka.as_ref().and_then(|s| s.create_topics))?),
        None => None,
    });
    // Flows are metered only when something consumes them.
    let wants_flows =
        flows_out.is_some() || ipfix.is_some() || netflow9.is_some() || kafka.borrow().is_some();
    let mut windows_out = JsonLines::open_opt(args.windows.as_ref(), exec.rotation)?;
    let stop = exec.stop.clone();
    let sensor = loaded.config.sensor.name.clone();
    let key = exec.key;
    let networks = loaded.networks.clone();
    // The rule set alerts and dedup summaries are written with: the running one, swapped
    // when a reload reaches the collector.
    let rules = RefCell::new(loaded.rules.clone());
    let mut reloaded_epoch = 0u64;
    let mut last_watermark = outpost_decode::Nanos::ZERO;
    let mut windows = AlertWindows::new(loaded.config.alerts.window.0, loaded.config.alerts.lateness.0);
    let mut window_count = 0u64;
    let mut write_error: Option<anyhow::Error> = None;
    let mut window_line = Vec::with_capacity(512);
    let mut write_windows = |closed: Vec<outpost_detector::WindowSummary>,
                             out: &mut Option<JsonLines>,
                             err: &mut Option<anyhow::Error>| {
        for w in &closed {
            window_count += 1;
            if out.is_none() && kafka.borrow().is_none() {
                continue;
            }
            window_line.clear();
            if let Err(e) =
                serde_json::to_writer(&mut window_line, &WindowJson { summary: w, networks: &networks })
            {
                err.get_or_insert(e.into());
                continue;
            }
            if let (Some(o), None) = (out.as_mut(), err.as_ref()) {
                if let Err(e) = o.write_bytes(&window_line) {
                    *err = Some(e);
                }
            }
            // Windows have no source address: keyed by network id.
            kafka_send(&kafka, RecordKind::AlertWindow, w.network_id, &window_line);
        }
    };

    let lateness = loaded.config.alerts.lateness.0;
    // Snippets: the `[snippets]` section, or `--snippets DIR` (with the section's defaults).
    let snippet_config = match (&loaded.config.snippets, &args.snippets) {
        (Some(c), Some(dir)) => {
            Some(outpost_snippet::SnippetConfig { dir: dir.clone(), enabled: true, ..c.clone() })
        }
        (None, Some(dir)) => Some(outpost_snippet::SnippetConfig { dir: dir.clone(), ..Default::default() }),
        (Some(c), None) => Some(c.clone()),
        (None, None) => None,
    }
    .filter(|c| c.enabled);
    let mut snippets = match &snippet_config {
        Some(c) => Some(SnippetCollector::start(c, lateness, exec.backpressure == Backpressure::Wait)?),
        None => None,
    };
    let flow_config = loaded.flows.filter(|_| wants_flows || loaded.rules.needs_flows());
    // The workers and the collector take reloaded rule sets.
    if let Some(r) = &exec.reloads {
        r.start(flow_config.is_some(), workers + 1);
    }
    // Flows need both directions of a conversation on one worker, detection each source on
    // one worker: with flows, frames go to both owners.
    let config = PipelineConfig {
        sharding: if flow_config.is_some() { Sharding::SourceAndPair } else { Sharding::Source },
        ..config
    };
    let setup = StageSetup {
        rules: loaded.rules.clone(),
        networks: loaded.networks.clone(),
        flows: flow_config,
        run_key: key,
        workers,
        lateness,
        snippets: snippet_config,
        reloads: exec.reloads.clone(),
    };
    let mut central = CentralDetector::new(
        loaded.rules.clone(),
        loaded.networks.clone(),
        &loaded.config.alert_policy,
        key,
        lateness,
    )
    .with_flow_delay(flow_config.as_ref().map_or(outpost_decode::Duration::ZERO, |f| f.table.record_delay()));
    let mut suppressed_summaries = 0u64;
    let mut alert_line = Vec::with_capacity(1024);
    // What the collector's detector passes on: alerts (JSON and alert windows) and dedup
    // summaries.
    let mut take = |o: CentralOutput,
                    alerts_out: &mut JsonLines,
                    windows: &mut AlertWindows,
                    snippets: &mut Option<SnippetCollector>,
                    err: &mut Option<anyhow::Error>| {
        alert_line.clear();
        let rules = rules.borrow();
        let encoded = match &o {
            CentralOutput::Alert(alert) => {
                let net = networks.lookup_pair(&alert.src, &alert.dst).map_or(0, |n| n.id);
                windows.add(alert, net, rules.rule(alert.rule).map_or("unknown", |r| r.name.as_str()));
                let snippet = snippets.as_mut().and_then(|s| s.on_reported(alert));
                let record = AlertRecord {
                    alert: AlertJson { alert, rules: &rules, networks: &networks, sensor: &sensor },
                    snippet,
                };
                // One source's alerts stay in order in one partition; alerts about a
                // destination only (floods) are keyed by it.
                let key = if alert.src == IpAddress::UNSPECIFIED { alert.dst } else { alert.src };
                serde_json::to_writer(&mut alert_line, &record).map(|()| Some(key))
            }
            CentralOutput::Suppressed(d) => {
                suppressed_summaries += 1;
                serde_json::to_writer(
                    &mut alert_line,
                    &DedupJson { summary: d, rules: &rules, sensor: &sensor },
                )
                .map(|()| None)
            }
        };
        match encoded {
            Ok(key) => {
                // Kafka gets every record whatever becomes of the file: a full disk must not
                // stop the export (the file's error ends the run at its end).
                match key {
                    Some(k) => kafka_send(&kafka, RecordKind::Alert, k, &alert_line),
                    // Dedup summaries: no key.
                    None => kafka_send(&kafka, RecordKind::Alert, "", &alert_line),
                }
                if err.is_none() {
                    if let Err(e) = alerts_out.write_bytes(&alert_line) {
                        *err = Some(e);
                    }
                }
            }
            Err(e) => {
                if err.is_none() {
                    *err = Some(e.into());
                }
            }
        }
    };
    let mut flow_line = Vec::with_capacity(512);
    let report = run_pipeline(
        source,
        &config,
        |w| SensorStage::new(w, &setup),
        stop.clone(),
        |m| match m {
            Merged::Record { seq, record: SensorRecord::Flow(flow), .. } => {
                if flows_out.is_some() || kafka.borrow().is_some() {
                    flow_line.clear();
                    FlowJson { record: &flow, sensor: &sensor }.write_json(&mut flow_line);
                    if let (Some(out), None) = (flows_out.as_mut(), write_error.as_ref()) {
                        if let Err(e) = out.write_bytes(&flow_line) {
                            write_error = Some(e);
                        }
                    }
                    kafka_send(&kafka, RecordKind::Flow, flow.src, &flow_line);
                }
                // Send failures are counted by the exporters (a collector that is away must
                // not stop the replay); they show in the summary.
                if let Some(x) = ipfix.as_mut() {
                    let _ = x.export(&flow);
                }
                if let Some(x) = netflow9.as_mut() {
                    let _ = x.export(&flow);
                }
                central.on_flow(seq, &flow, &mut |o| {
                    take(o, &mut alerts_out, &mut windows, &mut snippets, &mut write_error)
                });
            }
            Merged::Record { seq, record: SensorRecord::Alert(alert), .. } => {
                if let Some(s) = snippets.as_mut() {
                    s.on_worker_alert(&alert);
                }
                central.on_alert(seq, alert, &mut |o| {
                    take(o, &mut alerts_out, &mut windows, &mut snippets, &mut write_error)
                });
            }
            // Every worker reports the reload at the same place; the first report swaps it
            // in. What the old rules still pass on (alerts since the last watermark, dedup
            // counts of changed rules) is written with the old rule set.
            Merged::Record { record: SensorRecord::Reloaded(epoch), .. } if epoch > reloaded_epoch => {
                reloaded_epoch = epoch;
                if let Some(new) = exec.reloads.as_ref().and_then(|r| r.rules(workers, epoch)) {
                    central.reload(new.clone(), &mut |o| {
                        take(o, &mut alerts_out, &mut windows, &mut snippets, &mut write_error)
                    });
                    eprintln!(
                        "outpost {}: rules reloaded (reload {epoch}): {} rules, in effect after event time {}",
                        exec.command,
                        new.rules.len(),
                        last_watermark
                    );
                    *rules.borrow_mut() = new;
                }
            }
            Merged::Record { record: SensorRecord::Reloaded(_), .. } => {}
            Merged::Record { record: SensorRecord::Partial(p), .. } => central.on_partial(p),
            Merged::Record { record: SensorRecord::Baseline(b), .. } => central.on_baseline(b),
            Merged::Record { record: SensorRecord::Snippet(sn), .. } => {
                if let Some(s) = snippets.as_mut() {
                    s.on_snippet(sn);
                }
            }
            Merged::Watermark(t) => {
                last_watermark = t;
                central.on_watermark(t, &mut |o| {
                    take(o, &mut alerts_out, &mut windows, &mut snippets, &mut write_error)
                });
                if let Some(s) = snippets.as_mut() {
                    s.on_watermark(t);
                }
                if let Some(k) = kafka.borrow_mut().as_mut() {
                    k.service();
                }
                let closed = windows.advance(t);
                write_windows(closed, &mut windows_out, &mut write_error);
                (exec.on_watermark)(t);
            }
        },
    )?;
    central.finish(&mut |o| take(o, &mut alerts_out, &mut windows, &mut snippets, &mut write_error));
    // The workers' last snippets came with their final records; the policy's last verdicts
    // are in: what is left is unreported.
    let snippet_summary = snippets.map(|s| {
        let mut history = outpost_snippet::HistoryStats::default();
        for w in &report.workers {
            history.merge(&w.snippets);
        }
        s.finish(history)
    });
    let closed = windows.finish();
    write_windows(closed, &mut windows_out, &mut write_error);
    if let Some(e) = write_error {
        return Err(e);
    }
    alerts_out.flush()?;
    if let Some(w) = windows_out.as_mut() {
        w.flush()?;
    }
    if let Some(f) = flows_out.as_mut() {
        f.flush()?;
    }
    if let Some(x) = ipfix.as_mut() {
        let _ = x.flush();
    }
    if let Some(x) = netflow9.as_mut() {
        let _ = x.flush();
    }
    // What the broker has not confirmed by then stays in the spool for the next start.
    let kafka_summary = kafka.into_inner().map(|mut k| {
        // The configuration's `delivery_timeout`, at most 10 s.
        let timeout = loaded.kafka.as_ref().map_or(std::time::Duration::MAX, |c| c.delivery_timeout);
        let flushed = k.flush(timeout.min(std::time::Duration::from_secs(10)));
        KafkaSummary { complete: flushed.complete, stats: k.stats() }
    });

    let mut total = WorkerStats::default();
    for w in &report.workers {
        total.merge(w);
    }
    let wall = report.wall.as_secs_f64();
    let summary = Summary {
        command: exec.command,
        files: std::mem::take(&mut exec.inputs),
        frames: report.dispatch.frames,
        wire_bytes: total.decode.wire_bytes,
        unsupported_link_frames: report.source.unsupported_link,
        decode: DecodeSummary {
            ipv4: total.decode.ipv4,
            ipv6: total.decode.ipv6,
            arp: total.decode.arp,
            other: total.decode.other_ethertype,
            rejected: total.decode.rejected,
            malformed: total.decode.malformed_by_reason().collect(),
        },
        alerts: alerts_out.written - suppressed_summaries,
        suppressed_summaries,
        alert_windows: window_count,
        late_alerts: windows.late,
        rule_reloads: reloaded_epoch,
        rules: {
            let cs = central.stats();
            // The rule set running at the end (every counter is kept per rule of it; a
            // reload carries the counts of unchanged rules over).
            rules
                .borrow()
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| RuleSummary {
                    name: r.name.clone(),
                    kind: r.kind.name(),
                    evaluated: total.detect.evaluated.get(i).copied().unwrap_or(0)
                        + cs.evaluated.get(i).copied().unwrap_or(0),
                    workers: total
                        .detect
                        .rules
                        .get(i)
                        .cloned()
                        .unwrap_or(outpost_detector::RuleStats::None {}),
                    collector: cs
                        .rules
                        .get(i)
                        .cloned()
                        .unwrap_or(outpost_detector::central::CentralRuleStats::None {}),
                    policy: cs.policy.get(i).cloned().unwrap_or_default(),
                })
                .collect()
        },
        ipfix: ipfix.as_ref().map(|x| x.stats().into()),
        netflow9: netflow9.as_ref().map(|x| x.stats().into()),
        flows: flow_config.map(|_| {
            let f = &total.flows;
            FlowSummary {
                flows: f.table.flows,
                records: EndReason::ALL.iter().map(|r| (r.name(), f.table.records[r.index()])).collect(),
                records_written: flows_out.as_ref().map_or(0, |o| o.written),
                peak_active: f.table.peak,
                packets: f.packets,
                not_ip: f.not_ip,
                fragments_first: f.fragments_first,
                fragments_matched: f.fragments_matched,
                fragments_orphaned: f.fragments_orphaned,
                fragment_table_full: f.fragment_table_full,
            }
        }),
        workers,
        frames_per_worker: report.dispatch.per_worker.clone(),
        wall_seconds: wall,
        packets_per_second: if wall > 0.0 { report.dispatch.frames as f64 / wall } else { 0.0 },
        input_errors: report.source_errors.iter().map(ToString::to_string).collect(),
        interrupted: stop.load(std::sync::atomic::Ordering::Relaxed),
        capture: None,
        ring_full_drops: report.dispatch.ring_full_drops.clone(),
        snippets: snippet_summary,
        kafka: kafka_summary,
    };
    Ok(summary)
}

/// One line of counters for a rule.
fn describe_rule(r: &RuleSummary) -> String {
    use outpost_detector::RuleStats;
    use outpost_detector::central::CentralRuleStats;
    let mut parts = Vec::new();
    match &r.workers {
        RuleStats::StateMachine(c) => parts.push(format!(
            "events {}, transitions {}, invalid {}, terminated {}, idle released {}, timed out {}, evicted {}, keys held {} (peak {})",
            c.events,
            c.transitions,
            c.invalid,
            c.terminated,
            c.idle_released,
            c.timed_out,
            c.evicted,
            c.keys,
            c.peak_keys
        )),
        RuleStats::Threshold(t) => parts.push(format!(
            "matched {}, crossed {}, keys {} (peak {}), evicted {}, late {}, first inputs given up {}",
            t.matched, t.crossed, t.keys, t.peak_keys, t.evicted, t.late, t.lost_first
        )),
        RuleStats::Absence(a) => {
            parts.push(format!("matched {}, silences {}, senders {}, dropped {}", a.matched, a.silences, a.keys, a.dropped));
        }
        RuleStats::Hits { hits } => parts.push(format!("hits {hits}")),
        RuleStats::Meter { packets, late } => parts.push(format!("measured {packets} packets, {late} late")),
        RuleStats::None {} => {}
    }
    match &r.collector {
        CentralRuleStats::Threshold(t) => parts.push(format!(
            "collector: matched {}, crossed {}, keys {} (peak {}), evicted {}",
            t.matched, t.crossed, t.keys, t.peak_keys, t.evicted
        )),
        CentralRuleStats::Baseline(b) => parts.push(format!(
            "judged {} host intervals, anomalies {}, hosts {} (forgotten {}, dropped {}), late {}",
            b.judged, b.anomalies, b.hosts, b.forgotten, b.dropped, b.late
        )),
        CentralRuleStats::Sequence(q) => {
            parts.push(format!("steps {}, completed {}, in progress {}", q.steps, q.completed, q.keys));
        }
        CentralRuleStats::None {} => {}
    }
    let p = &r.policy;
    parts.push(format!(
        "alerts {} of {} raised (duplicates {}, suppressed {}, rate-limited {})",
        p.alerted,
        p.raised,
        p.deduplicated,
        p.suppressed,
        p.rate_limited + p.global_limited
    ));
    parts.join("; ")
}

/// The summary as text for a terminal.
#[must_use]
pub fn render_summary(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let mbit = if s.wall_seconds > 0.0 { s.wire_bytes as f64 * 8.0 / s.wall_seconds / 1e6 } else { 0.0 };
    let _ = writeln!(
        o,
        "outpost {}: {} {}, {} frames, {} bytes in {:.3} s ({:.2} Mpps, {:.0} Mbit/s), {} worker(s)",
        s.command,
        s.files.len(),
        if s.command == "run" { "interface(s)" } else { "file(s)" },
        s.frames,
        s.wire_bytes,
        s.wall_seconds,
        s.packets_per_second / 1e6,
        mbit,
        s.workers
    );
    let _ = writeln!(
        o,
        "  decoded: {} IPv4, {} IPv6, {} ARP, {} other; {} rejected; unsupported link type: {}",
        s.decode.ipv4,
        s.decode.ipv6,
        s.decode.arp,
        s.decode.other,
        s.decode.rejected,
        s.unsupported_link_frames
    );
    if s.decode.malformed.is_empty() {
        let _ = writeln!(o, "  malformed: none");
    } else {
        let parts: Vec<String> = s.decode.malformed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(o, "  malformed: {}", parts.join(", "));
    }
    for r in &s.rules {
        let _ =
            writeln!(o, "  rule {} ({}): evaluated {}; {}", r.name, r.kind, r.evaluated, describe_rule(r));
    }
    if let Some(f) = &s.flows {
        let reasons: Vec<String> =
            f.records.iter().filter(|(_, n)| **n > 0).map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            o,
            "  flows: {} created, peak {} tracked; records: {}; fragments: {} first, {} matched, {} orphaned",
            f.flows,
            f.peak_active,
            if reasons.is_empty() { "none".to_string() } else { reasons.join(", ") },
            f.fragments_first,
            f.fragments_matched,
            f.fragments_orphaned
        );
    }
    for (name, x) in [("IPFIX", &s.ipfix), ("NetFlow v9", &s.netflow9)] {
        if let Some(x) = x {
            let _ = writeln!(
                o,
                "  {name} export: {} flows in {} records, {} messages, {} bytes; {} send errors ({} records lost)",
                x.flows, x.records, x.messages, x.bytes, x.send_errors, x.records_lost
            );
        }
    }
    let _ = writeln!(
        o,
        "  alerts: {} (dedup summaries: {}, alert windows: {}, late for their window: {})",
        s.alerts, s.suppressed_summaries, s.alert_windows, s.late_alerts
    );
    let per: Vec<String> = s.frames_per_worker.iter().map(u64::to_string).collect();
    let _ = writeln!(o, "  frames per worker: {}", per.join(" / "));
    if s.ring_full_drops.iter().any(|&d| d > 0) {
        let per: Vec<String> = s.ring_full_drops.iter().map(u64::to_string).collect();
        let _ = writeln!(o, "  dropped at full worker rings: {}", per.join(" / "));
    }
    if s.interrupted {
        let _ = writeln!(o, "  interrupted before the end of the input");
    }
    o
}
