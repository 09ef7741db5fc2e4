//! Replay cost by stage: how much of `outpost replay`'s per-packet time is reading the pcap,
//! decoding, and moving frames between threads, measured on the same file in one process.
//!
//! Cases, each over the whole file, in an order that rotates every repetition:
//! - `read`: [`PcapFileSource`] only — pcap record parsing into batches, every frame's first
//!   byte touched (one thread).
//! - `read+decode`: the same with [`Decoder::decode`] on every frame (one thread): what a
//!   run-to-completion loop without a pipeline would cost before detection.
//! - `pipeline noop wN`: [`run_pipeline`] with N workers whose stage reads a frame's first byte
//!   and nothing else — receive thread, block copies, SPSC rings, waiting, collector.
//! - `pipeline decode wN`: the same with a stage that decodes every frame.
//!
//! The detector's share is what `outpost replay --workers N` (timed by `bench/run.sh`) adds on
//! top of `pipeline decode wN`.
//!
//! Usage: `stages FILE [--reps N] [--workers N]` (default 5 repetitions; the pipeline cases run
//! with 1 worker and, when N > 1, also with N workers).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use outpost_bench::Samples;
use outpost_capture::{
    Emitter, Frame, InputPos, PacketSource, PcapFileSource, PipelineConfig, WorkerStage, run_pipeline,
};
use outpost_decode::{Decoder, Nanos};

/// A worker stage that touches each frame and counts it.
#[derive(Debug, Default)]
struct Touch {
    frames: u64,
}

impl WorkerStage for Touch {
    type Record = ();
    type Stats = u64;

    fn on_frame(&mut self, _: InputPos, frame: Frame<'_>, _: &mut Emitter<(), u64>) {
        black_box(frame.data.first());
        self.frames += 1;
    }

    fn on_clock(&mut self, _: Nanos, _: u64, _: &mut Emitter<(), u64>) {}

    fn finish(self, _: u64, _: &mut Emitter<(), u64>) -> u64 {
        self.frames
    }
}

/// A worker stage that decodes each frame, as the sensor's worker does before detection.
#[derive(Debug, Default)]
struct DecodeOnly {
    decoder: Decoder,
    frames: u64,
}

impl WorkerStage for DecodeOnly {
    type Record = ();
    type Stats = u64;

    fn on_frame(&mut self, _: InputPos, frame: Frame<'_>, _: &mut Emitter<(), u64>) {
        black_box(self.decoder.decode(frame.link, frame.data, frame.ts, frame.wire_len));
        self.frames += 1;
    }

    fn on_clock(&mut self, _: Nanos, _: u64, _: &mut Emitter<(), u64>) {}

    fn finish(self, _: u64, _: &mut Emitter<(), u64>) -> u64 {
        black_box(&self.decoder.stats);
        self.frames
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Read,
    ReadDecode,
    PipelineTouch(usize),
    PipelineDecode(usize),
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::Read => "read".into(),
            Case::ReadDecode => "read+decode".into(),
            Case::PipelineTouch(w) => format!("pipeline noop w{w}"),
            Case::PipelineDecode(w) => format!("pipeline decode w{w}"),
        }
    }
}

/// Reads the whole file on this thread, optionally decoding; returns (frames, seconds).
fn read_file(path: &Path, decode: bool) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let mut source = PcapFileSource::open(path).map_err(|e| e.to_string())?;
    let mut decoder = Decoder::default();
    let mut frames = 0u64;
    while let Some(batch) = source.next_batch().map_err(|e| e.to_string())? {
        for frame in batch.iter() {
            if decode {
                black_box(decoder.decode(frame.link, frame.data, frame.ts, frame.wire_len));
            } else {
                black_box(frame.data.first());
            }
            frames += 1;
        }
    }
    black_box(&decoder.stats);
    Ok((frames, start.elapsed().as_secs_f64()))
}

/// Runs the pipeline over the file; returns (frames, the pipeline's own wall seconds).
fn pipeline<S: WorkerStage<Record = (), Stats = u64>>(
    path: &Path,
    workers: usize,
    make: impl Fn() -> S,
) -> Result<(u64, f64), String> {
    let source = PcapFileSource::open(path).map_err(|e| e.to_string())?;
    let config = PipelineConfig { workers, ..PipelineConfig::default() };
    let stop = Arc::new(AtomicBool::new(false));
    let report = run_pipeline(source, &config, |_| make(), stop, |_| {}).map_err(|e| e.to_string())?;
    if let Some(e) = report.source_errors.first() {
        return Err(e.to_string());
    }
    Ok((report.workers.iter().sum(), report.wall.as_secs_f64()))
}

fn run(case: Case, path: &Path) -> Result<(u64, f64), String> {
    match case {
        Case::Read => read_file(path, false),
        Case::ReadDecode => read_file(path, true),
        Case::PipelineTouch(w) => pipeline(path, w, Touch::default),
        Case::PipelineDecode(w) => pipeline(path, w, DecodeOnly::default),
    }
}

struct Options {
    file: PathBuf,
    reps: usize,
    workers: usize,
}

fn parse_args() -> Result<Options, String> {
    let mut file = None;
    let mut reps = 5;
    let mut workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> Result<usize, String> {
            let v = args.next().ok_or_else(|| format!("{what} needs a value"))?;
            v.parse::<usize>().map_err(|e| format!("{what} {v}: {e}"))
        };
        match a.as_str() {
            "--reps" => reps = number("--reps")?.max(1),
            "--workers" => workers = number("--workers")?.max(1),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => file = Some(PathBuf::from(s)),
        }
    }
    let file = file.ok_or_else(|| "a pcap file is required".to_string())?;
    Ok(Options { file, reps, workers })
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stages: {e}\nusage: stages FILE [--reps N] [--workers N]");
            return ExitCode::from(2);
        }
    };
    let mut cases = vec![Case::Read, Case::ReadDecode, Case::PipelineTouch(1), Case::PipelineDecode(1)];
    if opts.workers > 1 {
        cases.extend([Case::PipelineTouch(opts.workers), Case::PipelineDecode(opts.workers)]);
    }
    println!("stage benchmark: {}, {} repetitions (median reported)", opts.file.display(), opts.reps);
    let mut samples: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    let mut frames = 0u64;
    // Repetition 0 warms up and is not recorded.
    for rep in 0..=opts.reps {
        for k in 0..cases.len() {
            let i = (k + rep) % cases.len();
            let Some(&case) = cases.get(i) else { continue };
            let (n, secs) = match run(case, &opts.file) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("stages: {}: {e}", case.name());
                    return ExitCode::FAILURE;
                }
            };
            if frames != 0 && n != frames {
                eprintln!("stages: {} saw {n} frames, another case {frames}", case.name());
                return ExitCode::FAILURE;
            }
            frames = n;
            if rep > 0 {
                if let Some(s) = samples.get_mut(i) {
                    s.push(secs * 1e9 / n.max(1) as f64);
                }
                println!("raw rep {rep} {}: {secs:.4} s", case.name());
            }
        }
    }
    println!("{frames} frames");
    println!("{:<22} {:>13} {:>9} {:>9} {:>12}", "case", "median ns/pkt", "min", "max", "median Mpps");
    for (case, s) in cases.iter().zip(&samples) {
        let m = s.median();
        println!("{:<22} {:>13.1} {:>9.1} {:>9.1} {:>12.2}", case.name(), m, s.min(), s.max(), 1e3 / m);
    }
    ExitCode::SUCCESS
}
