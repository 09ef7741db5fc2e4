//! `outpost run`: live capture from a network interface through the same pipeline `replay`
//! uses.
//!
//! Capture is XDP + AF_XDP when the program loads and attaches (native mode when the driver
//! has it, else generic), AF_PACKET (TPACKET_V3) otherwise; `capture.mode` forces one. The XDP
//! program is attached through a BPF link owned by this process, so it is detached when the
//! process ends however it ends; at start, programs of ours left attached by an earlier run
//! (netlink-attached ones outlive their process) are detached first.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use outpost_capture::af_packet::{AfPacketOptions, AfPacketSource};
use outpost_capture::af_xdp::{AfXdpOptions, AfXdpSource, XskStats, ZeroCopy};
use outpost_capture::multi::{QueueCounters, QueueThreadOptions, QueueThreads, RoundRobin};
use outpost_capture::xdp::{XdpAttach, XdpCounters, XdpMode, XdpProgram, XdpSetup};
use outpost_capture::{Backpressure, FlushPolicy, PacketSource, Progress};
use serde::Serialize;

use signal_hook::iterator::Signals;

use crate::config::{CaptureMode, Loaded, RxThreadsChoice, XdpAttachChoice, ZeroCopyChoice};
use crate::reload::RuleReloads;
use crate::replay::{Execution, OutputArgs, execute, finish_summary, stop_on_signals};

/// Options of `outpost run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (default: the built-in configuration).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to capture on (overrides `capture.interface`).
    #[arg(short, long, value_name = "IF")]
    pub interface: Option<String>,
    /// Capture mode (overrides `capture.mode`).
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// XDP attach mode (overrides `capture.xdp_attach`).
    #[arg(long, value_enum)]
    pub xdp_attach: Option<AttachArg>,
    /// Stop after this long (e.g. `30s`, `5m`); default: run until SIGINT or SIGTERM.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Outputs and threads.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// XDP + AF_XDP, else AF_PACKET.
    Auto,
    /// XDP + AF_XDP only.
    Xdp,
    /// AF_PACKET only.
    AfPacket,
}

/// `--xdp-attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachArg {
    /// Native when the driver has it, else generic.
    Auto,
    /// Native (driver) mode.
    Native,
    /// Generic (SKB) mode.
    Generic,
}

/// Live capture counters in the run summary.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// The interface.
    pub interface: String,
    /// `xdp-native`, `xdp-generic` or `af_packet`.
    pub mode: String,
    /// AF_XDP sockets in zero-copy mode (false: copy mode); absent for AF_PACKET.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zero_copy: Option<bool>,
    /// Receive queues captured.
    pub queues: Vec<u32>,
    /// Why XDP was not used, when `auto` fell back to AF_PACKET.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The XDP program's counters (XDP mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpCounters>,
    /// Per AF_XDP socket (queue order): the kernel's drop counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sockets: Vec<SocketStatsJson>,
    /// Frames the source reports lost before delivery (AF_XDP ring drops, AF_PACKET kernel
    /// drops).
    pub source_dropped: u64,
}

/// One AF_XDP socket's kernel counters.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SocketStatsJson {
    /// Queue.
    pub queue: u32,
    /// Dropped: rx ring full (user space too slow).
    pub rx_ring_full: u64,
    /// Times the fill ring was empty.
    pub fill_ring_empty: u64,
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Invalid descriptors.
    pub rx_invalid_descs: u64,
    /// Frames read by the queue's own receive thread (`rx_threads = per_queue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Frames its thread dropped because the receive thread was behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_drops: Option<u64>,
}

/// Effective capabilities of this process (bit n = capability n), from `/proc/self/status`.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Capabilities a capture mode needs that this process lacks.
fn missing_caps(xdp: bool) -> Vec<&'static str> {
    const NET_ADMIN: u32 = 12;
    const NET_RAW: u32 = 13;
    const IPC_LOCK: u32 = 14;
    const PERFMON: u32 = 38;
    const BPF: u32 = 39;
    let caps = effective_caps();
    let mut need = vec![(NET_RAW, "CAP_NET_RAW"), (NET_ADMIN, "CAP_NET_ADMIN")];
    if xdp {
        need.extend([(BPF, "CAP_BPF"), (PERFMON, "CAP_PERFMON"), (IPC_LOCK, "CAP_IPC_LOCK")]);
    }
    need.into_iter().filter(|(bit, _)| caps & (1u64 << bit) == 0).map(|(_, n)| n).collect()
}

/// The XDP side of a live capture: the attached program and a duplicate of each socket's
/// descriptor, for statistics after the sockets moved to the receive thread.
struct XdpCapture {
    program: XdpProgram,
    mode: XdpMode,
    zero_copy: bool,
    socket_fds: Vec<(u32, std::os::fd::OwnedFd)>,
    /// Per-queue thread counters, in queue order (`rx_threads = per_queue`, several queues).
    queue_counters: Option<Arc<Vec<QueueCounters>>>,
}

impl XdpCapture {
    fn socket_stats(&self) -> Vec<SocketStatsJson> {
        self.socket_fds
            .iter()
            .enumerate()
            .filter_map(|(i, (q, fd))| {
                let thread = self.queue_counters.as_ref().and_then(|c| c.get(i));
                outpost_capture::af_xdp::socket_stats(std::os::fd::AsRawFd::as_raw_fd(fd)).ok().map(
                    |s: XskStats| SocketStatsJson {
                        queue: *q,
                        rx_ring_full: s.rx_ring_full,
                        fill_ring_empty: s.rx_fill_ring_empty,
                        rx_dropped: s.rx_dropped,
                        rx_invalid_descs: s.rx_invalid_descs,
                        frames: thread.map(|t| t.frames.load(Ordering::Relaxed)),
                        chunk_drops: thread.map(|t| t.chunk_drops.load(Ordering::Relaxed)),
                    },
                )
            })
            .collect()
    }
}

/// Loads and attaches the XDP program and opens one AF_XDP socket per queue.
fn open_xdp(
    interface: &str,
    loaded: &Loaded,
    attach: XdpAttach,
    queues: &[u32],
) -> anyhow::Result<(XdpCapture, Box<dyn PacketSource>)> {
    let c = &loaded.config.capture;
    let stale = outpost_capture::xdp::detach_stale(interface)?;
    if stale > 0 {
        eprintln!("outpost run: detached {stale} stale Outpost XDP program(s) from {interface}");
    }
    let setup = XdpSetup {
        attach,
        blocklist: loaded.capture.blocklist.iter().map(|n| (n.network().to_std(), n.family_len())).collect(),
        blocklist_max_entries: c.blocklist_max_entries,
        pass_nets: loaded.capture.pass_nets.iter().map(|n| (n.network().to_std(), n.family_len())).collect(),
        pass_ports: c.pass_ports.clone(),
    };
    let mut program = XdpProgram::load(&setup)?;
    let mode = program.attach(interface, attach)?;
    let x = &c.af_xdp;
    let mut sources = Vec::with_capacity(queues.len());
    let mut socket_fds = Vec::with_capacity(queues.len());
    for &queue in queues {
        let options = AfXdpOptions {
            queue,
            frame_size: x.frame_size,
            frames: x.frames,
            rx_size: x.rx_size,
            fill_size: x.fill_size,
            batch: x.batch,
            need_wakeup: x.need_wakeup,
            zero_copy: match c.zero_copy {
                ZeroCopyChoice::Auto => ZeroCopy::Auto,
                ZeroCopyChoice::On => ZeroCopy::On,
                ZeroCopyChoice::Off => ZeroCopy::Off,
            },
            ..AfXdpOptions::default()
        };
        let s = AfXdpSource::open(interface, &options)?;
        program.register_socket(queue, s.fd())?;
        // A duplicate descriptor keeps the socket readable for statistics after the source
        // moved to the receive thread (and after it is dropped there at the end).
        let dup = {
            // SAFETY: `s.fd()` is a valid open descriptor owned by `s` for this call.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(s.fd()) };
            borrowed.try_clone_to_owned().context("duplicating the AF_XDP socket")?
        };
        socket_fds.push((queue, dup));
        sources.push(s);
    }
    let zero_copy = sources.iter().all(AfXdpSource::zero_copy);
    let mut queue_counters = None;
    let source: Box<dyn PacketSource> = if sources.len() == 1 {
        Box::new(sources.pop().context("no queue")?)
    } else if c.rx_threads == RxThreadsChoice::Shared {
        Box::new(RoundRobin::new(sources))
    } else {
        let options = QueueThreadOptions { cores: c.rx_cores.clone(), ..QueueThreadOptions::default() };
        let threads = QueueThreads::start(sources, &options)?;
        queue_counters = Some(threads.counters());
        Box::new(threads)
    };
    Ok((XdpCapture { program, mode, zero_copy, socket_fds, queue_counters }, source))
}

fn open_af_packet(interface: &str, loaded: &Loaded) -> anyhow::Result<Box<dyn PacketSource>> {
    let p = &loaded.config.capture.af_packet;
    let options = AfPacketOptions {
        block_size: p.block_size,
        block_count: p.block_count,
        block_timeout_ms: u32::try_from(loaded.capture.block_timeout.0 / 1_000_000)
            .unwrap_or(u32::MAX)
            .max(1),
        fanout: p.fanout_group.map(|g| (g, outpost_capture::af_packet::FanoutMode::Hash)),
        ..AfPacketOptions::default()
    };
    Ok(Box::new(AfPacketSource::open(interface, &options)?))
}

/// Recompiles the rules on every SIGHUP until the signals are closed, and publishes each rule
/// set that compiles for the pipeline to swap in; one that does not compile changes nothing.
/// A SIGHUP that comes while the capture is still being set up waits for the pipeline.
fn reload_on_hup(mut signals: Signals, reloads: &RuleReloads, config: Option<&std::path::Path>) {
    let handle = signals.handle();
    for _ in signals.forever() {
        let started = Instant::now();
        match Loaded::load(config) {
            Err(e) => eprintln!("outpost run: SIGHUP: the running rules stay: {e}"),
            Ok(loaded) => {
                while !reloads.started() {
                    if handle.is_closed() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let count = loaded.rules.rules.len();
                match reloads.publish(loaded.rules) {
                    Ok(epoch) => eprintln!(
                        "outpost run: SIGHUP: {count} rules compiled in {:.2} s; reload {epoch} takes effect between two batches of input",
                        started.elapsed().as_secs_f64()
                    ),
                    Err(e) => eprintln!("outpost run: SIGHUP: the running rules stay: {e}"),
                }
            }
        }
    }
}

/// Runs `outpost run`.
///
/// # Errors
/// No interface, missing privileges, an XDP or socket setup failure (with `mode = xdp`), a
/// configuration or output problem.
pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    // A live sensor's detector tables hash with a seed of this process (replay keeps the
    // fixed one, for identical output in every run): crafted addresses cannot target them.
    outpost_detector::hashing::set_table_seed(std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::process::id(),
    ));
    // SIGHUP reloads the rules (below); from the start, so that one sent while the capture is
    // being set up does not end the process (its default action) but waits.
    let signals = Signals::new([signal_hook::consts::SIGHUP]).context("cannot install the SIGHUP handler")?;
    let loaded = Loaded::load(args.config.as_deref())?;
    let c = &loaded.config.capture;
    let Some(interface) = args.interface.clone().or_else(|| c.interface.clone()) else {
        bail!(
            "no interface to capture on: give --interface IF or set capture.interface in the configuration"
        );
    };
    outpost_capture::af_xdp::interface_index(&interface)?;
    let mode = match args.mode {
        Some(ModeArg::Auto) => CaptureMode::Auto,
        Some(ModeArg::Xdp) => CaptureMode::Xdp,
        Some(ModeArg::AfPacket) => CaptureMode::AfPacket,
        None => c.mode,
    };
    let attach = match args.xdp_attach.map_or(c.xdp_attach, |a| match a {
        AttachArg::Auto => XdpAttachChoice::Auto,
        AttachArg::Native => XdpAttachChoice::Native,
        AttachArg::Generic => XdpAttachChoice::Generic,
    }) {
        XdpAttachChoice::Auto => XdpAttach::Auto,
        XdpAttachChoice::Native => XdpAttach::Native,
        XdpAttachChoice::Generic => XdpAttach::Generic,
    };
    let missing_xdp = missing_caps(true);
    let missing_packet = missing_caps(false);
    if !missing_packet.is_empty() || (mode == CaptureMode::Xdp && !missing_xdp.is_empty()) {
        let missing = if mode == CaptureMode::Xdp { &missing_xdp } else { &missing_packet };
        bail!(
            "capturing on {interface} needs root or the capabilities {} (missing: {}); e.g. run as root, or `setcap cap_net_admin,cap_net_raw,cap_bpf,cap_perfmon,cap_ipc_lock+ep outpost` (the systemd unit grants them)",
            if mode == CaptureMode::AfPacket {
                "CAP_NET_RAW, CAP_NET_ADMIN"
            } else {
                "CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON, CAP_IPC_LOCK"
            },
            missing.join(", ")
        );
    }
    let queues: Vec<u32> = if c.queues.is_empty() {
        (0..outpost_capture::iface::rx_queue_count(&interface)).collect()
    } else {
        c.queues.clone()
    };

    let mut fallback_reason = None;
    let (xdp, source) = match mode {
        CaptureMode::AfPacket => (None, open_af_packet(&interface, &loaded)?),
        CaptureMode::Xdp => {
            let (x, s) = open_xdp(&interface, &loaded, attach, &queues)?;
            (Some(x), s)
        }
        CaptureMode::Auto if !missing_xdp.is_empty() => {
            fallback_reason = Some(format!("missing {}", missing_xdp.join(", ")));
            (None, open_af_packet(&interface, &loaded)?)
        }
        CaptureMode::Auto => match open_xdp(&interface, &loaded, attach, &queues) {
            Ok((x, s)) => (Some(x), s),
            Err(e) => {
                fallback_reason = Some(format!("{e:#}"));
                (None, open_af_packet(&interface, &loaded)?)
            }
        },
    };
    let mode_name = match &xdp {
        Some(x) if x.mode == XdpMode::Native => "xdp-native",
        Some(_) => "xdp-generic",
        None => "af_packet",
    };
    eprintln!(
        "outpost run: capturing on {interface}: {mode_name}{}{}, queues {queues:?}",
        xdp.as_ref()
            .map_or(String::new(), |x| format!(", {}", if x.zero_copy { "zero-copy" } else { "copy mode" })),
        fallback_reason.as_ref().map_or(String::new(), |r| format!(" (XDP not used: {r})"))
    );

    let stop = stop_on_signals()?;
    let reloads = Arc::new(RuleReloads::default());
    let hup = signals.handle();
    let reloader = {
        let (reloads, config) = (reloads.clone(), args.config.clone());
        std::thread::Builder::new()
            .name("outpost-reload".into())
            .spawn(move || reload_on_hup(signals, &reloads, config.as_deref()))
            .context("cannot start the reload thread")?
    };
    if let Some(d) = args.duration {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("outpost-timer".into())
            .spawn(move || {
                std::thread::sleep(d);
                stop.store(true, Ordering::Relaxed);
            })
            .context("cannot start the --duration timer")?;
    }
    let workers = loaded.workers(args.out.workers);
    let progress = Arc::new(Progress::new(workers));
    let interval = Duration::from_nanos(loaded.capture.stats_interval.0);
    let started = Instant::now();
    let mut last = started;
    let printer_progress = progress.clone();
    let xdp_ref = xdp.as_ref();
    let print_stats = move || {
        let p = &printer_progress;
        let mut line = format!(
            "outpost run: {:.0} s: captured {} frames, {} bytes; source dropped {}",
            started.elapsed().as_secs_f64(),
            p.frames.load(Ordering::Relaxed),
            p.bytes.load(Ordering::Relaxed),
            p.source_dropped.load(Ordering::Relaxed)
        );
        let per = |v: &[std::sync::atomic::AtomicU64]| {
            v.iter().map(|a| a.load(Ordering::Relaxed).to_string()).collect::<Vec<_>>().join("/")
        };
        line.push_str(&format!(
            "; workers {} (ring-full drops {})",
            per(&p.per_worker),
            per(&p.ring_full_drops)
        ));
        if let Some(x) = xdp_ref {
            if let Ok(c) = x.program.counters() {
                line.push_str(&format!(
                    "; xdp seen {} redirected {} blocked {} passed {} filtered {} no-socket {}",
                    c.seen, c.redirected, c.blocked, c.passed_not_ip, c.passed_filter, c.no_socket
                ));
            }
            for s in x.socket_stats() {
                line.push_str(&format!(
                    "; queue {} ring-full {} fill-empty {}",
                    s.queue, s.rx_ring_full, s.fill_ring_empty
                ));
                if let (Some(f), Some(d)) = (s.frames, s.chunk_drops) {
                    line.push_str(&format!(" frames {f} thread-drops {d}"));
                }
            }
        }
        eprintln!("{line}");
    };
    let on_watermark = Box::new(move |_t| {
        if !interval.is_zero() && last.elapsed() >= interval {
            last = Instant::now();
            print_stats();
        }
    });
    let key = {
        let mut h = loaded.config.sensor.name.as_bytes().to_vec();
        h.push(0);
        h.extend_from_slice(interface.as_bytes());
        h.extend_from_slice(
            &std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
                .to_le_bytes(),
        );
        xxhash_rust::xxh3::xxh3_64(&h)
    };
    let summary = execute(
        &loaded,
        &args.out,
        source,
        Execution {
            command: "run",
            inputs: vec![interface.clone()],
            key,
            stop,
            backpressure: Backpressure::Drop,
            ring_blocks: Some(c.worker_ring_blocks),
            flush: FlushPolicy::Interval(Duration::from_nanos(loaded.capture.flush_interval.0)),
            rotation: loaded.config.output.rotation(),
            on_watermark,
            progress: Some(progress.clone()),
            reloads: Some(reloads.clone()),
        },
    );
    hup.close();
    let _ = reloader.join();
    let mut summary = summary?;
    summary.capture = Some(CaptureSummary {
        interface: interface.clone(),
        mode: mode_name.to_string(),
        zero_copy: xdp.as_ref().map(|x| x.zero_copy),
        queues: if xdp.is_some() { queues } else { Vec::new() },
        fallback_reason,
        xdp: xdp.as_ref().and_then(|x| x.program.counters().ok()),
        sockets: xdp.as_ref().map(XdpCapture::socket_stats).unwrap_or_default(),
        source_dropped: progress.source_dropped.load(Ordering::Relaxed),
    });
    if let Some(mut x) = xdp {
        x.program.detach();
    }
    finish_summary(&args.out, &summary)?;
    Ok(ExitCode::SUCCESS)
}
