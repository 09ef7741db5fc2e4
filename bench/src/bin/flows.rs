//! Decode + flow metering on one core, from memory: minimum-size (64 bytes on the wire) IPv4
//! TCP frames over 10 thousand, 100 thousand and 1 million concurrent flows, in packets per
//! second.
//!
//! # Traffic
//! Frames are synthesised into one reused block of 256 frames (64 bytes apart), the way the
//! receive thread copies frames into a worker's `FrameBlock`, so the frames are in cache and
//! only the flow table's memory is accessed at random. Packet `i` belongs to flow
//! `i * 2654435761 mod F` (source 10.0.0.0 + flow, source port 10000 + flow mod 50000, to
//! 192.168.0.1:443, ACK): every window of F consecutive packets touches every flow once, in a
//! scrambled order — no locality at all, the worst case for the caches. Timestamps advance by
//! 67 ns a packet (14.88 Mpps, the 10 GbE line rate at 64-byte frames), and after every block
//! the meter's clock advances (`FlowMeter::on_clock`), as every block the pipeline delivers
//! ends with a clock tick.
//!
//! # Steady state
//! Each table (capacity 1.25 x F) is first warmed with one packet of every flow, so all flows
//! exist; then every timed packet finds its flow (the run checks that no flow was created or
//! ended while timing). One untimed repetition of every case comes first.
//!
//! # Cases
//! - `on_packet`: `decode` + `DecodeStats::record` + `FlowMeter::on_packet`, one packet at a
//!   time.
//! - `batch32`: 32 frames decoded in place into a batch of `PacketMeta`s (`decode_into`), then
//!   `FlowMeter::prepare` (keys, and prefetches once the table holds `PREFETCH_MIN_FLOWS` flows) and
//!   `FlowMeter::on_prepared` for each — what `sensor/src/worker.rs` does per batch.
//! - `table32+pf` / `table32-pf`: the same batches driven through a `FlowTable` directly
//!   (`FlowKey::new`, `hash64`, `observe`), with the index and slot prefetches of `prepare`
//!   always on / always off, whatever the flow count: whether the `PREFETCH_MIN_FLOWS`
//!   threshold suits this machine. Compare these two with each other (they skip the meter's
//!   fragment and counter logic), not with `batch32`.
//!
//! Only decode + metering is timed: the clock is read after each block is filled and after it
//! is processed (two `Instant::now()` per 256 packets); the time including the block fill is
//! reported too. Repetitions rotate the order of the cases; medians are reported.
//!
//! `flows --memory N` instead measures memory in a fresh process: the meter alone with N
//! flows tracked (capacity 1.25 x N), its `allocated_bytes()` and the process's VmRSS / VmHWM
//! from /proc/self/status before and after.
//!
//! Usage: `flows [--flows N,N,...] [--reps N] [--packets N] [--raw] [--only CASE]` (defaults
//! 10000,100000,1000000; 9 repetitions; 2,000,000 packets per case and repetition; `--only`
//! times just that case, for profiling), or `flows --memory N`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration as StdDuration, Instant};

use outpost_bench::{MIN_FRAME, Samples};
use outpost_decode::{DecodeStats, LinkType, Nanos, PacketMeta, decode, decode_into};
use outpost_flowmeter::table::Observation;
use outpost_flowmeter::{FlowConfig, FlowKey, FlowMeter, FlowRecord, FlowTable, PREFETCH_MIN_FLOWS, Side};
use outpost_tools::frame::{FrameBuilder, tcp};

/// Frames per block (`outpost_capture`'s `FrameBlock` holds 256).
const BLOCK: usize = 256;
/// Frames decoded and prepared together (`BATCH` in sensor/src/worker.rs).
const BATCH: usize = 32;
/// Bytes between two frames in the block.
const STRIDE: usize = 64;
/// Bytes on the wire of each frame (60 captured + 4 FCS).
const WIRE: u32 = 64;
/// Nanoseconds between two packets: 14.88 Mpps.
const GAP_NS: u64 = 67;
/// Capture time of packet 0: 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;

fn ts(i: u64) -> Nanos {
    Nanos(T0 + i * GAP_NS)
}

/// The synthetic traffic: a template frame patched per flow into a reused block.
struct Traffic {
    template: Vec<u8>,
    flows: u64,
    /// Number of the next packet.
    next: u64,
    block: Vec<u8>,
}

impl Traffic {
    fn new(flows: u32) -> Traffic {
        let mut template = FrameBuilder::new(
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(192, 168, 0, 1).into(),
            tcp(10_000, 443, 0x10, 1, 1),
        )
        .build();
        template.resize(MIN_FRAME, 0);
        Traffic { template, flows: u64::from(flows.max(1)), next: 0, block: vec![0; BLOCK * STRIDE] }
    }

    /// Flow of packet `i`.
    fn flow_of(&self, i: u64) -> u32 {
        u32::try_from(i.wrapping_mul(2_654_435_761) % self.flows).unwrap_or(0)
    }

    /// Writes the next `BLOCK` packets into the block; returns the number of the first.
    fn fill(&mut self) -> u64 {
        let first = self.next;
        for k in 0..BLOCK {
            let f = self.flow_of(first + k as u64);
            let Some(frame) = self.block.get_mut(k * STRIDE..k * STRIDE + MIN_FRAME) else { continue };
            frame.copy_from_slice(&self.template);
            if let Some(src) = frame.get_mut(26..30) {
                src.copy_from_slice(&(0x0a00_0000 + f).to_be_bytes());
            }
            if let Some(port) = frame.get_mut(34..36) {
                port.copy_from_slice(&(10_000 + (f % 50_000) as u16).to_be_bytes());
            }
        }
        self.next += BLOCK as u64;
        first
    }

    fn frame(&self, k: usize) -> &[u8] {
        self.block.get(k * STRIDE..k * STRIDE + MIN_FRAME).unwrap_or(&[])
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    OnPacket,
    Batch,
    TablePrefetch,
    TableNoPrefetch,
}

const CASES: [Case; 4] = [Case::OnPacket, Case::Batch, Case::TablePrefetch, Case::TableNoPrefetch];

/// The cases are timed in two phases per flow count, each with only its own table in memory:
/// the meter cases (compared with `on_packet`), then the table cases (compared with
/// `table32-pf`).
const PHASES: [[Case; 2]; 2] = [[Case::OnPacket, Case::Batch], [Case::TableNoPrefetch, Case::TablePrefetch]];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::OnPacket => "on_packet",
            Case::Batch => "batch32",
            Case::TablePrefetch => "table32+pf",
            Case::TableNoPrefetch => "table32-pf",
        }
    }
}

/// One flow count's meter, table and traffic.
struct Rig {
    traffic: Traffic,
    meter: FlowMeter,
    table: FlowTable,
    decode_stats: DecodeStats,
    /// `BATCH` entries, the first `n_metas` the current batch's (decoded in place, as the
    /// worker does).
    metas_buf: Vec<PacketMeta>,
    n_metas: usize,
    keys: Vec<(FlowKey, Side, u64, Option<u32>)>,
    /// Which of the two this rig times.
    uses_table: bool,
    /// Packets of records emitted (steady state: none).
    sink: u64,
    records: u64,
}

fn config(flows: u32) -> FlowConfig {
    let mut cfg = FlowConfig::default();
    cfg.table.capacity = (flows as usize * 5 / 4).max(1024);
    cfg
}

impl Rig {
    /// A rig for `flows` flows whose meter (`table` false) or table (`table` true) is sized
    /// for them; the other one stays minimal and unused.
    fn new(flows: u32, table: bool) -> Rig {
        let cfg = config(flows);
        let small = config(1);
        Rig {
            traffic: Traffic::new(flows),
            meter: FlowMeter::new(if table { small } else { cfg }, 0),
            table: FlowTable::new(if table { cfg.table } else { small.table }, 1),
            uses_table: table,
            decode_stats: DecodeStats::default(),
            metas_buf: vec![PacketMeta::default(); BATCH],
            n_metas: 0,
            keys: Vec::with_capacity(BATCH),
            sink: 0,
            records: 0,
        }
    }

    /// Decodes frames `range` of the block into `metas`.
    #[inline]
    fn decode_into(&mut self, first: u64, range: std::ops::Range<usize>) {
        self.n_metas = 0;
        for k in range {
            let Some(m) = self.metas_buf.get_mut(self.n_metas) else { break };
            let r = decode_into(m, LinkType::Ethernet, self.traffic.frame(k), ts(first + k as u64), WIRE);
            self.decode_stats.record_ref(WIRE, r.map(|()| &*m));
            if r.is_ok() {
                self.n_metas += 1;
            }
        }
    }

    /// Processes `blocks` blocks with `case`; returns (seconds of decode + metering, seconds
    /// including the block fills).
    fn run(&mut self, case: Case, blocks: usize) -> (f64, f64) {
        let start = Instant::now();
        let mut work = StdDuration::ZERO;
        for _ in 0..blocks {
            let first = self.traffic.fill();
            let t = Instant::now();
            match case {
                Case::OnPacket => self.block_on_packet(first),
                Case::Batch => self.block_batch(first),
                Case::TablePrefetch => self.block_table(first, true),
                Case::TableNoPrefetch => self.block_table(first, false),
            }
            work += t.elapsed();
        }
        (work.as_secs_f64(), start.elapsed().as_secs_f64())
    }

    fn block_on_packet(&mut self, first: u64) {
        let (sink, records) = (&mut self.sink, &mut self.records);
        let mut out = |r: FlowRecord| {
            *sink += r.fwd.packets;
            *records += 1;
        };
        for k in 0..BLOCK {
            let r = decode(LinkType::Ethernet, self.traffic.frame(k), ts(first + k as u64), WIRE);
            self.decode_stats.record(WIRE, &r);
            if let Ok(m) = r {
                self.meter.on_packet(&m, &mut out);
            }
        }
        self.meter.on_clock(ts(first + BLOCK as u64 - 1), &mut out);
    }

    fn block_batch(&mut self, first: u64) {
        for b in 0..BLOCK / BATCH {
            self.decode_into(first, b * BATCH..(b + 1) * BATCH);
            let (sink, records) = (&mut self.sink, &mut self.records);
            let mut out = |r: FlowRecord| {
                *sink += r.fwd.packets;
                *records += 1;
            };
            let metas = self.metas_buf.get(..self.n_metas).unwrap_or_default();
            self.meter.prepare(metas);
            for (i, m) in metas.iter().enumerate() {
                self.meter.on_prepared(i, m, &mut out);
            }
        }
        let (sink, records) = (&mut self.sink, &mut self.records);
        self.meter.on_clock(ts(first + BLOCK as u64 - 1), &mut |r| {
            *sink += r.fwd.packets;
            *records += 1;
        });
    }

    fn block_table(&mut self, first: u64, prefetch: bool) {
        for b in 0..BLOCK / BATCH {
            self.decode_into(first, b * BATCH..(b + 1) * BATCH);
            self.keys.clear();
            let metas = self.metas_buf.get(..self.n_metas).unwrap_or_default();
            for m in metas {
                let (key, side) = FlowKey::new(m.src, m.src_port, m.dst, m.dst_port, m.ip_proto, 0);
                self.keys.push((key, side, key.hash64(), None));
            }
            if prefetch {
                for &(_, _, h, _) in &self.keys {
                    self.table.prefetch_index(h);
                }
                for (_, _, h, hint) in &mut self.keys {
                    *hint = self.table.prefetch_slot(*h);
                }
            }
            let (sink, records) = (&mut self.sink, &mut self.records);
            let mut out = |r: FlowRecord| {
                *sink += r.fwd.packets;
                *records += 1;
            };
            for (m, (key, side, h, hint)) in metas.iter().zip(&self.keys) {
                let obs = Observation {
                    ts: m.ts,
                    ip_len: m.ip_len,
                    tcp_flags: (m.tcp_flags & 0xff) as u8,
                    ttl: m.ttl,
                    tos: m.tos,
                    icmp_type: 0,
                    icmp_code: 0,
                };
                self.table.observe_hinted(key, *h, *hint, *side, &obs, &mut out);
            }
        }
        let (sink, records) = (&mut self.sink, &mut self.records);
        self.table.advance(ts(first + BLOCK as u64 - 1), &mut |r| {
            *sink += r.fwd.packets;
            *records += 1;
        });
    }

    /// One packet of every flow (and a block more) into the meter or the table.
    fn warm(&mut self, flows: u32) {
        let blocks = (flows as usize).div_ceil(BLOCK) + 1;
        self.run(if self.uses_table { Case::TableNoPrefetch } else { Case::Batch }, blocks);
    }

    /// Flows created so far, and flows tracked now, in the meter or the table.
    fn created(&self) -> (u64, u64) {
        if self.uses_table {
            (self.table.stats.flows, self.table.len() as u64)
        } else {
            let s = self.meter.stats();
            (s.table.flows, s.table.active)
        }
    }
}

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn vm_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[derive(Debug)]
struct Options {
    flows: Vec<u32>,
    reps: usize,
    packets: usize,
    raw: bool,
    memory: Option<u32>,
    /// Time only this case (for profiling).
    only: Option<String>,
}

const USAGE: &str =
    "usage: flows [--flows N,N,...] [--reps N] [--packets N] [--raw] [--only CASE] | flows --memory N";

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        flows: vec![10_000, 100_000, 1_000_000],
        reps: 9,
        packets: 2_000_000,
        raw: false,
        memory: None,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    let number = |what: &str, v: Option<String>| -> Result<usize, String> {
        let v = v.ok_or_else(|| format!("{what} needs a value"))?;
        v.replace('_', "").parse::<usize>().map_err(|e| format!("{what} {v}: {e}"))
    };
    let count = |what: &str, n: usize| u32::try_from(n).map_err(|_| format!("{what} {n}: too large"));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => o.reps = number("--reps", args.next())?.max(1),
            "--packets" => o.packets = number("--packets", args.next())?.max(BLOCK),
            "--raw" => o.raw = true,
            "--only" => {
                let case = args.next().ok_or("--only needs a case name")?;
                if !CASES.iter().any(|c| c.name() == case) {
                    return Err(format!("--only {case}: no such case"));
                }
                o.only = Some(case);
            }
            "--memory" => o.memory = Some(count("--memory", number("--memory", args.next())?.max(1))?),
            "--flows" => {
                let v = args.next().ok_or("--flows needs a value")?;
                o.flows = v
                    .split(',')
                    .map(|s| number("--flows", Some(s.to_string())).and_then(|n| count("--flows", n.max(1))))
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// `flows --memory N`: the meter alone with N flows, in this (fresh) process.
fn memory(flows: u32) -> ExitCode {
    let (rss0, hwm0) = vm_kib();
    let cfg = config(flows);
    let mut meter = FlowMeter::new(cfg, 0);
    let (rss1, _) = vm_kib();
    let mut traffic = Traffic::new(flows);
    let mut metas = Vec::with_capacity(BATCH);
    let mut stats = DecodeStats::default();
    let mut sink = 0u64;
    let blocks = (flows as usize).div_ceil(BLOCK);
    for _ in 0..blocks {
        let first = traffic.fill();
        for b in 0..BLOCK / BATCH {
            metas.clear();
            for k in b * BATCH..(b + 1) * BATCH {
                let r = decode(LinkType::Ethernet, traffic.frame(k), ts(first + k as u64), WIRE);
                stats.record(WIRE, &r);
                if let Ok(m) = r {
                    metas.push(m);
                }
            }
            meter.prepare(&metas);
            for (i, m) in metas.iter().enumerate() {
                meter.on_prepared(i, m, &mut |r| sink += r.fwd.packets);
            }
        }
        meter.on_clock(ts(first + BLOCK as u64 - 1), &mut |r| sink += r.fwd.packets);
    }
    let (rss2, hwm2) = vm_kib();
    let s = meter.stats();
    let alloc = meter.allocated_bytes();
    let tracked = s.table.active.max(1);
    let per = |kib: u64| (kib * 1024) as f64 / tracked as f64;
    println!(
        "flow meter memory: {} flows tracked (table capacity {}), {} packets metered",
        s.table.active, cfg.table.capacity, s.packets
    );
    println!(
        "  allocated_bytes(): {alloc} bytes = {:.1} MiB, {:.1} bytes per tracked flow (slab reserved for the whole capacity, touched as flows arrive)",
        alloc as f64 / 1_048_576.0,
        alloc as f64 / tracked as f64
    );
    println!("  VmRSS before the meter: {rss0} KiB (VmHWM {hwm0} KiB)");
    println!(
        "  VmRSS after FlowMeter::new: {rss1} KiB (+{} KiB: index and wheel, initialised at once)",
        rss1.saturating_sub(rss0)
    );
    println!(
        "  VmRSS with {} flows: {rss2} KiB (+{} KiB = {:.1} bytes per flow over the empty process)",
        s.table.active,
        rss2.saturating_sub(rss0),
        per(rss2.saturating_sub(rss0))
    );
    println!("  VmHWM (peak RSS of the process): {hwm2} KiB = {:.1} MiB", hwm2 as f64 / 1024.0);
    black_box((sink, &stats));
    if s.table.active != u64::from(flows) {
        eprintln!("flows: expected {flows} flows tracked, got {}", s.table.active);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Times one phase's cases at one flow count and prints their rows; Ok(false) when the
/// run was not in steady state.
fn time_phase(
    opts: &Options,
    flows: u32,
    table: bool,
    cases: &[Case],
    blocks: usize,
) -> Result<bool, String> {
    let packets = (blocks * BLOCK) as f64;
    let mut rig = Rig::new(flows, table);
    rig.warm(flows);
    let created = rig.created();
    if created != (u64::from(flows), u64::from(flows)) {
        return Err(format!("warm-up: {created:?} flows created and tracked, expected {flows}"));
    }
    let mut work: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    let mut total: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    for rep in 0..=opts.reps {
        for k in 0..cases.len() {
            let i = (k + rep) % cases.len();
            let Some(&case) = cases.get(i) else { continue };
            if opts.only.as_ref().is_some_and(|o| o != case.name()) {
                continue;
            }
            let (w, t) = rig.run(case, blocks);
            // Repetition 0 warms up and is not recorded.
            if rep > 0 {
                if let (Some(ws), Some(ts)) = (work.get_mut(i), total.get_mut(i)) {
                    ws.push(w * 1e9 / packets);
                    ts.push(t * 1e9 / packets);
                }
            }
        }
    }
    let mut steady = true;
    let after = rig.created();
    if after != created || rig.records != 0 {
        eprintln!(
            "flows: not steady at {flows} flows: {after:?} flows created and tracked (after warm-up {created:?}), {} records",
            rig.records
        );
        steady = false;
    }
    if rig.decode_stats.rejected != 0 {
        eprintln!("flows: {} frames did not decode", rig.decode_stats.rejected);
        steady = false;
    }
    let base = work.first().map_or(0.0, Samples::median);
    for (case, (w, t)) in cases.iter().zip(work.iter().zip(&total)) {
        if w.is_empty() {
            continue;
        }
        let m = w.median();
        let ratio = if base > 0.0 { format!("{:.2}x", m / base) } else { "-".to_string() };
        println!(
            "{flows:>9} {:<11} {m:>9.2} {:>8.2} {:>9.2} {:>9.2} {:>11.2} {:>10.2} {ratio:>9}",
            case.name(),
            1e3 / m,
            w.min(),
            w.max(),
            t.median(),
            1e3 / t.median(),
        );
    }
    if !table {
        let bytes = rig.meter.allocated_bytes();
        println!(
            "{flows:>9} meter: allocated_bytes() {bytes} = {:.1} bytes per flow (table capacity {})",
            bytes as f64 / f64::from(flows),
            config(flows).table.capacity,
        );
    }
    println!(
        "{flows:>9} packets processed in this phase: {} (warm-up and every repetition)",
        rig.traffic.next
    );
    if opts.raw {
        for (case, w) in cases.iter().zip(&work) {
            println!("{flows:>9} raw {:<11} ns/pkt {:.2?}", case.name(), w);
        }
    }
    black_box(rig.sink);
    Ok(steady)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("flows: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    if let Some(n) = opts.memory {
        return memory(n);
    }
    let blocks = opts.packets.div_ceil(BLOCK);
    println!(
        "decode + flow metering, one thread, 64-byte IPv4 TCP frames from a reused {BLOCK}-frame block; {} repetitions (median), {} packets per case and repetition; PREFETCH_MIN_FLOWS = {PREFETCH_MIN_FLOWS}; size_of::<PacketMeta>() = {} bytes",
        opts.reps,
        blocks * BLOCK,
        std::mem::size_of::<PacketMeta>()
    );
    println!(
        "{:>9} {:<11} {:>9} {:>8} {:>9} {:>9} {:>11} {:>10} {:>9}",
        "flows", "case", "ns/pkt", "Mpps", "min ns", "max ns", "with fill", "fill Mpps", "ratio"
    );
    let mut failed = false;
    for &flows in &opts.flows {
        for (phase, cases) in PHASES.iter().enumerate() {
            if opts.only.as_ref().is_some_and(|o| !cases.iter().any(|c| c.name() == o)) {
                continue;
            }
            match time_phase(&opts, flows, phase == 1, cases, blocks) {
                Ok(true) => {}
                Ok(false) => failed = true,
                Err(e) => {
                    eprintln!("flows: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    println!("(ns/pkt: decode + metering only, median over repetitions; with fill: including writing");
    println!(" the block's frames; ratio: median / median of the phase's first case (on_packet, table32-pf)");
    println!(" at the same flow count)");
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
