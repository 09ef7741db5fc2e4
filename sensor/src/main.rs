//! `outpost`: the Outpost network-security sensor.
//!
//! Subcommands: `run` (live capture), `replay` (capture files through the detection pipeline), `gen` (traffic
//! scenarios with ground truth), `check-config` (validate a configuration).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod config;
mod output;
mod reload;
mod replay;
mod run;
mod snippets;
mod worker;

/// Outpost: a network-security sensor — flows, detection rules and alerts from live traffic
/// or capture files.
#[derive(Debug, Parser)]
#[command(name = "outpost", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay capture files through the detection pipeline and write alerts as JSON lines.
    Replay(replay::ReplayArgs),
    /// Capture live from a network interface (XDP + AF_XDP, or AF_PACKET) through the same
    /// pipeline, until SIGINT/SIGTERM or `--duration`.
    Run(run::RunArgs),
    /// Generate traffic scenarios (pcap) with ground truth.
    Gen {
        #[command(subcommand)]
        scenario: GenScenario,
    },
    /// Check a configuration file and list its rules.
    CheckConfig {
        /// Configuration file (default: the built-in configuration).
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum GenScenario {
    /// The Flink state-machine scenario: clients walking a per-source event machine as UDP
    /// datagrams to ports 7001..7007, with injected invalid transitions as ground truth.
    Seed(outpost_tools::seed::SeedArgs),
    /// A benign traffic mix for flow metering: TCP (complete, half-open, reset), UDP, ICMP,
    /// IPv6, VLAN and fragments, with one ground-truth line per flow.
    Mix(outpost_tools::mix::MixArgs),
    /// Attacks mixed into the benign traffic mix — scans, sweeps, floods, brute force,
    /// intel contacts, a volume spike — with one ground-truth line per attack and rule that
    /// must fire.
    Attacks(outpost_tools::attack::AttacksArgs),
}

fn check_config(path: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use std::fmt::Write as _;
    let loaded = config::Loaded::load(path)?;
    let mut text = String::new();
    let _ = writeln!(text, "{}: OK", loaded.origin.display());
    let _ = writeln!(text, "  sensor: {}", loaded.config.sensor.name);
    let _ = writeln!(text, "  networks: {}", loaded.networks.networks().len());
    for r in &loaded.rules.rules {
        let _ = writeln!(
            text,
            "  rule {} ({}, {}){}",
            r.name,
            r.kind.name(),
            r.severity.name(),
            describe(&r.kind)
        );
    }
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// What `check-config` says about a rule.
fn describe(kind: &outpost_detector::RuleKind) -> String {
    use outpost_detector::RuleKind;
    match kind {
        RuleKind::StateMachine(sm) => format!(
            ": {} states, {} events, idle timeout {:.0} s",
            sm.states.len(),
            sm.events.len(),
            sm.idle_timeout.as_secs_f64()
        ),
        RuleKind::Threshold(t) => format!(
            ": {} ≥ {} in {:.0} s per {:?}, runs {:?}",
            t.aggregate.describe(),
            t.threshold,
            t.window.as_secs_f64(),
            t.key.fields().iter().map(|f| f.name()).collect::<Vec<_>>(),
            t.placement
        ),
        RuleKind::Sequence(s) => format!(": {} steps within {:.0} s", s.steps.len(), s.within.as_secs_f64()),
        RuleKind::Absence(a) => {
            format!(": silence of {:.0} s, {} listed senders", a.timeout.as_secs_f64(), a.expected.len())
        }
        RuleKind::Baseline(b) => {
            format!(": {} per {:.0} s, k = {}", b.metric_name(), b.interval.as_secs_f64(), b.k)
        }
        RuleKind::Intel(i) => format!(": {} entries in {} lists", i.set.len(), i.set.lists().len()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => replay::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Gen { scenario: GenScenario::Seed(args) } => {
            let summary = outpost_tools::seed::generate_seed(&args)?;
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen { scenario: GenScenario::Mix(args) } => {
            let summary = outpost_tools::mix::generate_mix(&args)?;
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen { scenario: GenScenario::Attacks(args) } => {
            let summary = outpost_tools::attack::generate_attacks(&args)?;
            eprintln!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => check_config(config.as_deref()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("outpost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
