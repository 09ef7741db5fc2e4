//! The worker's detection cost beside its flow metering, on the same packets in one process.
//!
//! Reads up to `--packets` frames of a capture, decodes them once into memory, then times per
//! packet, in an order that rotates every repetition:
//! - `flows`: [`FlowMeter`] in 32-packet batches with clock ticks every batch — the flow-only
//!   worker's work after decoding;
//! - `detect RULES`: a worker [`Detector`] (one worker owning every source) over the same
//!   packets with the same ticks, for each rule directory given (`--rules DIR`, repeatable;
//!   every `*.toml` in it, compiled as `outpost` does). Each case starts from fresh state.
//!
//! With `--intel FILE`, each rule directory is copied to a scratch directory beside which
//! `intel/blocklist.txt` is `FILE`, so the default ruleset's `intel-match` rule loads it
//! (use `outpost gen attacks --intel-out FILE --intel-entries 1000000` for a million entries).
//!
//! The collector's share (flow rules, Merged thresholds, baselines' judging, the alert
//! policy) runs on another thread in `outpost replay` and is not timed here.
//!
//! Besides wall time per packet it reports the thread's on-CPU time per packet (the first
//! field of `/proc/thread-self/schedstat`, in ns), which other processes competing for the
//! cores disturb far less than the wall time.
//!
//! With `--memory N` it instead measures the detector's memory per tracked source address:
//! N sources (IPv4, in 10.0.0.0/8 so the seed machine's scope holds them) each send, within
//! a second, a TCP SYN to a server, a DNS query, an ICMP echo and the seed machine's event
//! `a` — so every packet rule of the default ruleset that keys on the source holds state for
//! it — and the heap bytes the worker's detector holds afterwards (counted by a global
//! allocator, `outpost_tools::alloc`) are divided by N. Measured twice: each packet sent once
//! (the first input of a count or distinct key is only parked, 16 bytes), and each sent twice
//! (every key holds its full state).
//!
//! Usage: `detect FILE [--rules DIR]... [--intel FILE] [--packets N] [--reps N]` or
//! `detect --memory N [--rules DIR]` (defaults: `config/rules.d`, 2,000,000 packets,
//! 7 repetitions).

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use outpost_bench::Samples;
use outpost_capture::{PacketSource, PcapFileSource};
use outpost_decode::{Decoder, Duration, IpAddress, Nanos, Network, PacketMeta, Transport};
use outpost_detector::config::{RulesConfig, SourceText};
use outpost_detector::engine::{Detector, WorkerPlace};
use outpost_detector::network::NetworkMap;
use outpost_detector::rules::RuleSet;
use outpost_flowmeter::{FlowConfig, FlowMeter};
use outpost_tools::alloc::{Counting, live_bytes};

/// Packets per batch, and between clock ticks (the worker's batch size).
const BATCH: usize = 32;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The packets of `sources` sources for the memory measurement (see the module docs).
fn source_packets(sources: u32, times: u32) -> Vec<PacketMeta> {
    let start = Nanos::from_secs(1_767_225_600);
    let mut out = Vec::with_capacity(sources as usize * 4);
    for i in 0..sources {
        let src = IpAddress::from(std::net::IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i + 1))));
        let dst = IpAddress::from(std::net::IpAddr::V4(Ipv4Addr::new(192, 168, 1, (i % 200) as u8 + 1)));
        let ts = Nanos(start.0 + u64::from(i) * 1_000_000_000 / u64::from(sources.max(1)));
        let base = PacketMeta {
            ts,
            src,
            dst,
            network: Network::Ipv4,
            ethertype: 0x0800,
            transport: Transport::Parsed,
            src_port: 40_000 + (i % 20_000) as u16,
            ip_len: 60,
            wire_len: 74,
            ttl: 64,
            ..PacketMeta::default()
        };
        let with = |proto: u8, f: &dyn Fn(&mut PacketMeta)| {
            let mut m = PacketMeta { ip_proto: proto, ip6_first_next_header: proto, ..base };
            f(&mut m);
            m
        };
        out.push(with(6, &|m| {
            m.dst_port = 443;
            m.tcp_flags = 0x02;
        }));
        out.push(with(17, &|m| m.dst_port = 53));
        out.push(with(1, &|m| m.icmp_type = 8));
        out.push(with(17, &|m| m.dst_port = 7001));
        // Each again, a microsecond later per copy.
        let sent = out.len() - 4;
        for copy in 1..times {
            for j in sent..sent + 4 {
                if let Some(&m) = out.get(j) {
                    out.push(PacketMeta { ts: Nanos(m.ts.0 + u64::from(copy) * 1_000), ..m });
                }
            }
        }
    }
    out
}

/// Heap bytes per source a worker's detector holds after `sources` sources that send each of
/// their packets `times` times.
fn memory_per_source(rules: &Arc<RuleSet>, sources: u32, times: u32) -> (f64, u64) {
    let packets = source_packets(sources, times);
    let networks = Arc::new(NetworkMap::new(&[]));
    let mut d = Detector::new(rules.clone(), networks, 1, WorkerPlace::ALONE, Duration::ZERO);
    let empty = live_bytes();
    let mut outputs = 0u64;
    for (i, m) in packets.iter().enumerate() {
        d.on_packet(m, i as u64, &mut |o| {
            black_box(&o);
            outputs += 1;
        });
    }
    let held = live_bytes();
    black_box(&d);
    ((held - empty) as f64 / f64::from(sources.max(1)), outputs)
}

struct Options {
    memory: Option<u32>,
    file: PathBuf,
    rules: Vec<PathBuf>,
    intel: Option<PathBuf>,
    packets: usize,
    reps: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        memory: None,
        file: PathBuf::new(),
        rules: Vec::new(),
        intel: None,
        packets: 2_000_000,
        reps: 7,
    };
    let mut file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{what} needs a value"));
        match a.as_str() {
            "--memory" => o.memory = Some(value("--memory")?.parse().map_err(|e| format!("--memory: {e}"))?),
            "--rules" => o.rules.push(PathBuf::from(value("--rules")?)),
            "--intel" => o.intel = Some(PathBuf::from(value("--intel")?)),
            "--packets" => o.packets = value("--packets")?.parse().map_err(|e| format!("--packets: {e}"))?,
            "--reps" => {
                o.reps = value("--reps")?.parse::<usize>().map_err(|e| format!("--reps: {e}"))?.max(1)
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => file = Some(PathBuf::from(s)),
        }
    }
    o.file = match (file, o.memory) {
        (Some(f), _) => f,
        (None, Some(_)) => PathBuf::new(),
        (None, None) => return Err("a pcap file is required".into()),
    };
    if o.rules.is_empty() {
        o.rules.push(PathBuf::from("config/rules.d"));
    }
    Ok(o)
}

/// Decodes the first `limit` frames that decode.
fn load(path: &Path, limit: usize) -> Result<Vec<PacketMeta>, String> {
    let mut source = PcapFileSource::open(path).map_err(|e| e.to_string())?;
    let mut decoder = Decoder::default();
    let mut metas = Vec::with_capacity(limit.min(1 << 24));
    while let Some(batch) = source.next_batch().map_err(|e| e.to_string())? {
        for frame in batch.iter() {
            if let Some(m) = decoder.decode(frame.link, frame.data, frame.ts, frame.wire_len) {
                metas.push(m);
                if metas.len() == limit {
                    return Ok(metas);
                }
            }
        }
    }
    Ok(metas)
}

/// The rule directory to compile: `dir` itself, or a scratch copy with `intel` beside it.
fn rules_dir(dir: &Path, intel: Option<&Path>, n: usize) -> Result<PathBuf, String> {
    let Some(intel) = intel else { return Ok(dir.to_path_buf()) };
    let scratch = std::env::temp_dir().join(format!("outpost-detect-bench-{}-{n}", std::process::id()));
    let rules = scratch.join("rules.d");
    std::fs::create_dir_all(&rules).map_err(|e| format!("{}: {e}", rules.display()))?;
    std::fs::create_dir_all(scratch.join("intel")).map_err(|e| e.to_string())?;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = entry.map_err(|e| e.to_string())?.path();
        if p.extension().is_some_and(|e| e == "toml") {
            let to = rules.join(p.file_name().unwrap_or_default());
            std::fs::copy(&p, &to).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    let list = scratch.join("intel/blocklist.txt");
    let _ = std::fs::remove_file(&list);
    std::fs::copy(intel, &list).map_err(|e| format!("{}: {e}", intel.display()))?;
    Ok(rules)
}

/// Compiles every `*.toml` of `dir`, in name order.
fn compile(dir: &Path) -> Result<RuleSet, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    let mut files = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let src = SourceText::new(p, text);
        let cfg: RulesConfig = src.parse().map_err(|e| e.to_string())?;
        files.push((cfg, src));
    }
    RuleSet::compile(files.iter().map(|(c, s)| (c, s, ""))).map_err(|e| e.to_string())
}

/// The calling thread's time on a CPU so far, ns (`None` where the kernel does not say).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// What one timed case measured.
struct Timed {
    secs: f64,
    /// On-CPU seconds of the timing thread (0 when unknown).
    cpu_secs: f64,
    outputs: u64,
}

/// Runs `f`, timing it in wall and on-CPU time.
fn timed(f: impl FnOnce() -> u64) -> Timed {
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let outputs = f();
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = match (cpu, thread_cpu_ns()) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
        _ => 0.0,
    };
    Timed { secs, cpu_secs, outputs }
}

fn time_flows(metas: &[PacketMeta]) -> Timed {
    timed(|| run_flows(metas))
}

fn run_flows(metas: &[PacketMeta]) -> u64 {
    let mut meter = FlowMeter::new(FlowConfig::default(), 0);
    let mut records = 0u64;
    for batch in metas.chunks(BATCH) {
        meter.prepare(batch);
        for (i, m) in batch.iter().enumerate() {
            meter.on_prepared(i, m, &mut |r| {
                black_box(&r);
                records += 1;
            });
        }
        if let Some(last) = batch.last() {
            meter.on_clock(last.ts, &mut |r| {
                black_box(&r);
                records += 1;
            });
        }
    }
    meter.finish(&mut |r| {
        black_box(&r);
        records += 1;
    });
    records
}

fn time_detect(metas: &[PacketMeta], rules: &Arc<RuleSet>, networks: &Arc<NetworkMap>) -> Timed {
    let d = Detector::new(rules.clone(), networks.clone(), 1, WorkerPlace::ALONE, Duration::ZERO);
    timed(|| run_detect(metas, d))
}

fn run_detect(metas: &[PacketMeta], mut d: Detector) -> u64 {
    let mut outputs = 0u64;
    for (b, batch) in metas.chunks(BATCH).enumerate() {
        d.prepare(batch);
        d.prefetch_slots();
        for (i, m) in batch.iter().enumerate() {
            d.on_prepared(i, m, (b * BATCH + i) as u64, &mut |o| {
                black_box(&o);
                outputs += 1;
            });
        }
        if let Some(last) = batch.last() {
            d.on_clock(last.ts, b as u64, &mut |o| {
                black_box(&o);
                outputs += 1;
            });
        }
    }
    d.finish(&mut |o| {
        black_box(&o);
        outputs += 1;
    });
    outputs
}

/// `--memory N`: bytes per tracked source, for each rule directory.
fn memory(o: &Options, sources: u32) -> ExitCode {
    println!(
        "| rules | sources | packets of each kind per source | detector heap bytes per source | outputs |"
    );
    println!("|---|---:|---:|---:|---:|");
    for dir in &o.rules {
        let set = match compile(dir) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("detect: rules {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        for times in [1, 2] {
            let (per, outputs) = memory_per_source(&set, sources, times);
            println!("| {} | {sources} | {times} | {per:.0} | {outputs} |", dir.display());
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "detect: {e}\nusage: detect FILE [--rules DIR]... [--intel FILE] [--packets N] [--reps N]"
            );
            return ExitCode::from(2);
        }
    };
    if let Some(sources) = o.memory {
        return memory(&o, sources);
    }
    let metas = match load(&o.file, o.packets) {
        Ok(m) if !m.is_empty() => m,
        Ok(_) => {
            eprintln!("detect: {}: no packets decode", o.file.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("detect: {}: {e}", o.file.display());
            return ExitCode::FAILURE;
        }
    };
    let networks = Arc::new(NetworkMap::new(&[]));
    let mut sets = Vec::new();
    for (n, dir) in o.rules.iter().enumerate() {
        let loaded = rules_dir(dir, o.intel.as_deref(), n).and_then(|d| {
            let start = Instant::now();
            let set = compile(&d)?;
            Ok((set, start.elapsed()))
        });
        match loaded {
            Ok((set, took)) => {
                println!(
                    "rules {}: {} rules, compiled in {:.2} s",
                    dir.display(),
                    set.rules.len(),
                    took.as_secs_f64()
                );
                sets.push((format!("detect {}", dir.display()), Arc::new(set)));
            }
            Err(e) => {
                eprintln!("detect: rules {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{}: {} packets decoded in memory, {} repetitions (median reported)",
        o.file.display(),
        metas.len(),
        o.reps
    );
    let cases = 1 + sets.len();
    let mut samples: Vec<Samples> = (0..cases).map(|_| Samples::default()).collect();
    let mut cpu_samples: Vec<Samples> = (0..cases).map(|_| Samples::default()).collect();
    let mut counts = vec![0u64; cases];
    // Repetition 0 warms up and is not recorded.
    for rep in 0..=o.reps {
        for k in 0..cases {
            let i = (k + rep) % cases;
            let t = match i.checked_sub(1).and_then(|s| sets.get(s)) {
                None => time_flows(&metas),
                Some((_, set)) => time_detect(&metas, set, &networks),
            };
            if let Some(c) = counts.get_mut(i) {
                *c = t.outputs;
            }
            if rep > 0
                && let (Some(s), Some(c)) = (samples.get_mut(i), cpu_samples.get_mut(i))
            {
                s.push(t.secs * 1e9 / metas.len() as f64);
                c.push(t.cpu_secs * 1e9 / metas.len() as f64);
            }
        }
    }
    let flows = samples.first().map_or(0.0, Samples::median);
    let flows_cpu = cpu_samples.first().map_or(0.0, Samples::median);
    println!(
        "| case | median ns/packet | min–max | Mpps | ÷ flows | outputs | median on-CPU ns/packet (min) | ÷ flows |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, s) in samples.iter().enumerate() {
        let name = if i == 0 {
            "flows".to_string()
        } else {
            sets.get(i - 1).map_or(String::new(), |(n, _)| n.clone())
        };
        let med = s.median();
        let (cpu, cpu_min) = cpu_samples.get(i).map_or((0.0, 0.0), |c| (c.median(), c.min()));
        println!(
            "| {name} | {med:.1} | {:.1}–{:.1} | {:.2} | {:.2}x | {} | {cpu:.1} ({cpu_min:.1}) | {:.2}x |",
            s.min(),
            s.max(),
            1e3 / med,
            med / flows,
            counts.get(i).copied().unwrap_or(0),
            cpu / flows_cpu
        );
    }
    if o.intel.is_some() {
        for n in 0..o.rules.len() {
            let _ = std::fs::remove_dir_all(
                std::env::temp_dir().join(format!("outpost-detect-bench-{}-{n}", std::process::id())),
            );
        }
    }
    ExitCode::SUCCESS
}
