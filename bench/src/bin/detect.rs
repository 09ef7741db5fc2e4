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
//! Usage: `detect FILE [--rules DIR]... [--intel FILE] [--packets N] [--reps N]`
//! (defaults: `config/rules.d`, 2,000,000 packets, 7 repetitions).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use outpost_bench::Samples;
use outpost_capture::{PacketSource, PcapFileSource};
use outpost_decode::{Decoder, Duration, PacketMeta};
use outpost_detector::config::{RulesConfig, SourceText};
use outpost_detector::engine::{Detector, WorkerPlace};
use outpost_detector::network::NetworkMap;
use outpost_detector::rules::RuleSet;
use outpost_flowmeter::{FlowConfig, FlowMeter};

/// Packets per batch, and between clock ticks (the worker's batch size).
const BATCH: usize = 32;

struct Options {
    file: PathBuf,
    rules: Vec<PathBuf>,
    intel: Option<PathBuf>,
    packets: usize,
    reps: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options { file: PathBuf::new(), rules: Vec::new(), intel: None, packets: 2_000_000, reps: 7 };
    let mut file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |what: &str| args.next().ok_or_else(|| format!("{what} needs a value"));
        match a.as_str() {
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
    o.file = file.ok_or("a pcap file is required")?;
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

fn time_flows(metas: &[PacketMeta]) -> (f64, u64) {
    let mut meter = FlowMeter::new(FlowConfig::default(), 0);
    let mut records = 0u64;
    let start = Instant::now();
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
    (start.elapsed().as_secs_f64(), records)
}

fn time_detect(metas: &[PacketMeta], rules: &Arc<RuleSet>, networks: &Arc<NetworkMap>) -> (f64, u64) {
    let mut d = Detector::new(rules.clone(), networks.clone(), 1, WorkerPlace::ALONE, Duration::ZERO);
    let mut outputs = 0u64;
    let start = Instant::now();
    for (b, batch) in metas.chunks(BATCH).enumerate() {
        for (i, m) in batch.iter().enumerate() {
            d.on_packet(m, (b * BATCH + i) as u64, &mut |o| {
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
    (start.elapsed().as_secs_f64(), outputs)
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
    let mut counts = vec![0u64; cases];
    // Repetition 0 warms up and is not recorded.
    for rep in 0..=o.reps {
        for k in 0..cases {
            let i = (k + rep) % cases;
            let (secs, n) = match i.checked_sub(1).and_then(|s| sets.get(s)) {
                None => time_flows(&metas),
                Some((_, set)) => time_detect(&metas, set, &networks),
            };
            if let Some(c) = counts.get_mut(i) {
                *c = n;
            }
            if rep > 0
                && let Some(s) = samples.get_mut(i)
            {
                s.push(secs * 1e9 / metas.len() as f64);
            }
        }
    }
    let flows = samples.first().map_or(0.0, Samples::median);
    println!("| case | median ns/packet | min–max | Mpps | ÷ flows | outputs |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, s) in samples.iter().enumerate() {
        let name = if i == 0 {
            "flows".to_string()
        } else {
            sets.get(i - 1).map_or(String::new(), |(n, _)| n.clone())
        };
        let med = s.median();
        println!(
            "| {name} | {med:.1} | {:.1}–{:.1} | {:.2} | {:.2}x | {} |",
            s.min(),
            s.max(),
            1e3 / med,
            med / flows,
            counts.get(i).copied().unwrap_or(0)
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
