//! Decoder throughput: Outpost's checked views against etherparse's slicing API, in one
//! process, over the same in-memory frames.
//!
//! For each frame set ([`Mix::Realistic`] and [`Mix::Tcp64`]) and each repetition, every case
//! makes `passes` passes over the set; the order of the cases rotates from one repetition to
//! the next so none always runs first (cold) or last. One untimed repetition warms caches and
//! branch predictors. The table gives the median, minimum and maximum ns/packet over the
//! repetitions, the median in Mpps, and the ratio of each case's median to etherparse's strict
//! `SlicedPacket` median in the same run (below 1: faster than etherparse).
//!
//! Cases:
//! - `outpost decode`: `outpost_decode::decode` producing the full `PacketMeta`.
//! - `outpost decode->fields`: the same call, keeping only the fields etherparse is asked for
//!   (the compiler may then drop work for unused fields; validation stays).
//! - `outpost decode->scalars`: the same call, the consumer reading four small fields (ports,
//!   flags, protocol) instead of copying the whole result.
//! - `outpost Decoder`: `Decoder::decode`, which also counts outcomes (what a worker runs).
//! - `outpost shard_hash`: the receive thread's pre-decode (link + IP header only).
//! - `etherparse strict`: `SlicedPacket::from_ethernet` + reading addresses, ports, protocol,
//!   TCP flags and VLAN id from the slices.
//! - `etherparse lax`: the same with `LaxSlicedPacket::from_ethernet`.
//!
//! Usage: `decode [--reps N] [--frames N] [--packets N] [--raw] [--only TEXT]` (defaults 11
//! repetitions, 4096 frames per set, 2,000,000 packets per case and repetition; `--only` runs
//! just the cases whose name contains TEXT, for profiling one of them).

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use outpost_bench::{Fields, FrameSet, Mix, Samples};
use outpost_decode::{Decoder, LinkType, Nanos, decode, shard_hash};

/// One timed case: a name and a function making one pass over a frame set.
struct Case {
    name: &'static str,
    pass: fn(&FrameSet, &mut Decoder),
}

fn wire_len(frame: &[u8]) -> u32 {
    u32::try_from(frame.len()).unwrap_or(u32::MAX)
}

fn pass_decode(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        let frame = black_box(frame);
        let _ = black_box(decode(LinkType::Ethernet, frame, Nanos::ZERO, wire_len(frame)));
    }
}

fn pass_decode_scalar(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        let frame = black_box(frame);
        if let Ok(m) = decode(LinkType::Ethernet, frame, Nanos::ZERO, wire_len(frame)) {
            black_box(m.src_port);
            black_box(m.dst_port);
            black_box(m.tcp_flags);
            black_box(m.ip_proto);
        }
    }
}

fn pass_decode_fields(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        black_box(Fields::outpost(black_box(frame)));
    }
}

fn pass_decoder(set: &FrameSet, decoder: &mut Decoder) {
    for frame in set.iter() {
        let frame = black_box(frame);
        black_box(decoder.decode(LinkType::Ethernet, frame, Nanos::ZERO, wire_len(frame)));
    }
}

fn pass_shard_hash(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        black_box(shard_hash(LinkType::Ethernet, black_box(frame)));
    }
}

fn pass_etherparse(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        black_box(Fields::etherparse(black_box(frame)));
    }
}

fn pass_etherparse_lax(set: &FrameSet, _: &mut Decoder) {
    for frame in set.iter() {
        black_box(Fields::etherparse_lax(black_box(frame)));
    }
}

const CASES: &[Case] = &[
    Case { name: "outpost decode", pass: pass_decode },
    Case { name: "outpost decode->fields", pass: pass_decode_fields },
    Case { name: "outpost decode->scalars", pass: pass_decode_scalar },
    Case { name: "outpost Decoder", pass: pass_decoder },
    Case { name: "outpost shard_hash", pass: pass_shard_hash },
    Case { name: "etherparse strict", pass: pass_etherparse },
    Case { name: "etherparse lax", pass: pass_etherparse_lax },
];

/// The case every other is compared with.
const PEER: &str = "etherparse strict";

#[derive(Debug)]
struct Options {
    reps: usize,
    frames: usize,
    packets: usize,
    raw: bool,
    /// Run only the cases whose name contains this (for profiling one case).
    only: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options { reps: 11, frames: 4096, packets: 2_000_000, raw: false, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> Result<usize, String> {
            let v = args.next().ok_or_else(|| format!("{what} needs a value"))?;
            v.replace('_', "").parse::<usize>().map_err(|e| format!("{what} {v}: {e}"))
        };
        match a.as_str() {
            "--reps" => o.reps = number("--reps")?.max(1),
            "--frames" => o.frames = number("--frames")?.max(1),
            "--packets" => o.packets = number("--packets")?.max(1),
            "--raw" => o.raw = true,
            "--only" => o.only = Some(args.next().ok_or_else(|| "--only needs a case name".to_string())?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

/// Times `passes` passes of `case` over `set`; returns ns per packet.
fn time_case(case: &Case, set: &FrameSet, passes: usize, decoder: &mut Decoder) -> f64 {
    let start = Instant::now();
    for _ in 0..passes {
        (case.pass)(black_box(set), decoder);
    }
    let elapsed = start.elapsed();
    elapsed.as_secs_f64() * 1e9 / (passes * set.len()) as f64
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("decode: {e}");
            }
            eprintln!("usage: decode [--reps N] [--frames N] [--packets N] [--raw] [--only TEXT]");
            return if e.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let passes = opts.packets.div_ceil(opts.frames);
    println!(
        "decode benchmark: {} repetitions (median reported), {} frames per set, {} passes = {} packets per case and repetition",
        opts.reps,
        opts.frames,
        passes,
        passes * opts.frames
    );

    for mix in [Mix::Realistic, Mix::Tcp64] {
        let set = FrameSet::build(mix, opts.frames, 1);
        // The cases must agree on what they extract, or the comparison is void.
        let disagree = set.iter().filter(|f| Fields::outpost(f) != Fields::etherparse(f)).count();
        if disagree > 0 {
            eprintln!("decode: {disagree} frames decode differently with etherparse; not timing");
            return ExitCode::FAILURE;
        }
        let mut decoder = Decoder::default();
        let mut samples: Vec<Samples> = CASES.iter().map(|_| Samples::default()).collect();
        for rep in 0..=opts.reps {
            for k in 0..CASES.len() {
                let i = (k + rep) % CASES.len();
                let Some(case) = CASES.get(i) else { continue };
                if opts.only.as_ref().is_some_and(|o| !case.name.contains(o.as_str())) {
                    continue;
                }
                let ns = time_case(case, &set, passes, &mut decoder);
                // Repetition 0 warms up and is not recorded.
                if rep > 0 {
                    if let Some(s) = samples.get_mut(i) {
                        s.push(ns);
                    }
                }
            }
        }
        black_box(&decoder.stats);

        println!();
        println!(
            "frame set {}: {} frames, {} bytes (mean {:.1} bytes/frame)",
            mix.name(),
            set.len(),
            set.bytes(),
            set.bytes() as f64 / set.len() as f64
        );
        println!(
            "{:<24} {:>12} {:>9} {:>9} {:>12} {:>16}",
            "case", "median ns/pkt", "min", "max", "median Mpps", "vs etherparse"
        );
        let peer = CASES
            .iter()
            .position(|c| c.name == PEER)
            .and_then(|i| samples.get(i))
            .map_or(0.0, Samples::median);
        for (case, s) in CASES.iter().zip(&samples) {
            if s.is_empty() {
                continue;
            }
            let m = s.median();
            let ratio = if peer > 0.0 { format!("{:.2}x", m / peer) } else { "-".into() };
            println!(
                "{:<24} {:>12.2} {:>9.2} {:>9.2} {:>12.1} {:>16}",
                case.name,
                m,
                s.min(),
                s.max(),
                1e3 / m,
                ratio
            );
        }
        if opts.raw {
            for (case, s) in CASES.iter().zip(&samples) {
                println!("raw {} {}: {:?}", mix.name(), case.name, s);
            }
        }
    }
    ExitCode::SUCCESS
}
