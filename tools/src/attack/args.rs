//! The `outpost gen attacks` command line: [`AttacksArgs`] (its doc comments are the `--help`
//! text) and [`generate_attacks`], which writes the files it names.

use std::fs::File;
use std::path::PathBuf;

use outpost_decode::{Duration, Nanos};

use super::{
    AttackError, AttackKind, AttacksParams, AttacksSummary, DEFAULT_ATTACK_IPV6_FRACTION,
    DEFAULT_BENIGN_FLOWS, DEFAULT_INTEL_ENTRIES, generate_with_benign_truth,
};
use crate::mix::{DEFAULT_CLIENTS, DEFAULT_CONCURRENCY, DEFAULT_SEED, MixParams};
use crate::seed::FormatArg;
use crate::timearg::{parse_duration, parse_time};

/// Generate attacks mixed into benign traffic, with ground truth: scans (SYN, connect, FIN,
/// NULL, XMAS, UDP, horizontal), a ping sweep, SYN/ICMP/UDP floods, SSH/RDP/login brute
/// forces, a brute force followed by an interactive session, a contact with an address on an
/// intel list, and a volume spike — each aimed at one rule of the default ruleset and clearly
/// above its default threshold.
///
/// Attackers come from 203.0.113.0/24 (2001:db8:bad::/48), victims are the mix's servers,
/// flood sources are spoofed public addresses. The benign traffic is the mix scenario's
/// (`outpost gen mix`, same seed), paced to last as long as the attacks. Attacks run one after
/// another, --attack-gap apart. The same options and seed always give the same bytes.
#[derive(Clone, Debug, clap::Args)]
pub struct AttacksArgs {
    /// Capture file to write (Ethernet frames).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,

    /// Capture format: pcap (nanosecond timestamps), pcap-usec (microsecond) or pcapng.
    #[arg(long, value_enum, default_value_t = FormatArg::Pcap)]
    pub format: FormatArg,

    /// Attack truth to write: one JSON line per attack and rule that must alert, with attack,
    /// rule, attacker (the address the alert names as src_ip, or as dst_ip for
    /// scan-vertical-udp; null for floods), target (the victim; floods' alerts name it), port,
    /// start, start_ns, end, end_ns. The alert must come between start and end plus the rule's
    /// window.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,

    /// Intel list to write: one address or CIDR prefix per line (`#` comments); it holds the
    /// intel-contact attacks' addresses and --intel-entries others no other packet touches.
    #[arg(long, value_name = "FILE")]
    pub intel_out: Option<PathBuf>,

    /// Benign flow truth to write, as `outpost gen mix --truth` writes it.
    #[arg(long, value_name = "FILE")]
    pub benign_truth: Option<PathBuf>,

    /// Attacks to inject, in order, as KIND,KIND,... or `all`. Kinds: syn-scan, connect-scan,
    /// fin-scan, null-scan, xmas-scan, udp-scan, horizontal-scan, ping-sweep, neighbor-sweep,
    /// syn-flood, icmp-flood, udp-flood, ssh-brute-force, rdp-brute-force, login-brute-force,
    /// brute-force-then-session, intel-contact, volume-spike. A kind may repeat.
    #[arg(long, default_value = "all", value_parser = parse_attacks, value_name = "KIND,...|all")]
    pub attacks: AttackList,

    /// Benign flows (the mix scenario's --flows).
    #[arg(long, default_value_t = DEFAULT_BENIGN_FLOWS, value_name = "N")]
    pub benign_flows: u64,

    /// Benign conversations in progress at once (the mix scenario's --concurrency).
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY, value_name = "N")]
    pub benign_concurrency: u32,

    /// Benign client hosts (the mix scenario's --clients).
    #[arg(long, default_value_t = DEFAULT_CLIENTS, value_name = "N")]
    pub benign_clients: u32,

    /// Mean pause between two benign conversations of one concurrency slot (the mix
    /// scenario's --mean-gap). Default: chosen so the benign traffic lasts about as long as
    /// the attacks.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub benign_mean_gap: Option<Duration>,

    /// Pause after one attack ends before the next starts (e.g. 30s). Attacks never overlap,
    /// except the volume spike's quarter hour of steady traffic before its spike.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub attack_gap: Duration,

    /// Benign-only time before the first attack.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub lead: Duration,

    /// Fraction of the attacks run over IPv6.
    #[arg(long, default_value_t = DEFAULT_ATTACK_IPV6_FRACTION, value_name = "P")]
    pub attack_ipv6_fraction: f64,

    /// Intel list entries besides the intel contacts' addresses: random public addresses and
    /// prefixes no packet of the capture touches.
    #[arg(long, default_value_t = DEFAULT_INTEL_ENTRIES, value_name = "N")]
    pub intel_entries: usize,

    /// Start time: RFC 3339 (2026-01-01T00:00:00Z) or seconds since the epoch.
    #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = parse_time, value_name = "TIME")]
    pub start: Nanos,

    /// Random seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

/// The attacks of a run, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackList(pub Vec<AttackKind>);

/// Parses `--attacks`: `all`, or kind names separated by commas.
///
/// # Errors
/// An unknown kind, or no kind at all.
pub fn parse_attacks(text: &str) -> Result<AttackList, String> {
    let mut kinds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            kinds.extend(AttackKind::ALL);
            continue;
        }
        let kind = AttackKind::from_name(part).ok_or_else(|| {
            let names: Vec<&str> = AttackKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown attack `{part}` (kinds: all, {})", names.join(", "))
        })?;
        kinds.push(kind);
    }
    if kinds.is_empty() {
        return Err("no attack given".to_string());
    }
    Ok(AttackList(kinds))
}

impl AttacksArgs {
    /// The generation parameters these options describe (not yet validated).
    #[must_use]
    pub fn params(&self) -> AttacksParams {
        let defaults = AttacksParams::default();
        AttacksParams {
            benign: MixParams {
                flows: self.benign_flows,
                concurrency: self.benign_concurrency,
                clients: self.benign_clients,
                mean_gap: self.benign_mean_gap.unwrap_or(defaults.benign.mean_gap),
                start: self.start,
                seed: self.seed,
                format: self.format.into(),
                ..defaults.benign
            },
            stretch_benign: self.benign_mean_gap.is_none(),
            attacks: self.attacks.0.clone(),
            attack_gap: self.attack_gap,
            lead: self.lead,
            ipv6_fraction: self.attack_ipv6_fraction,
            intel_entries: self.intel_entries,
        }
    }
}

/// Runs `outpost gen attacks`: validates the options, then writes `--out` and, if asked,
/// `--truth`, `--intel-out` and `--benign-truth`.
///
/// # Errors
/// Invalid options (before any file is created), a file that cannot be created, or a write
/// error.
pub fn generate_attacks(args: &AttacksArgs) -> Result<AttacksSummary, AttackError> {
    let params = args.params();
    params.validate()?;
    let create = |path: &PathBuf| {
        File::create(path).map_err(|source| AttackError::Create { path: path.clone(), source })
    };
    let out = create(&args.out)?;
    let truth = args.truth.as_ref().map(create).transpose()?;
    let intel = args.intel_out.as_ref().map(create).transpose()?;
    let benign = args.benign_truth.as_ref().map(create).transpose()?;
    generate_with_benign_truth(&params, out, truth.as_ref(), intel.as_ref(), benign.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AttacksArgs,
    }

    #[test]
    fn defaults_on_the_command_line_are_the_library_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["gen", "--out", "x.pcap"]).unwrap();
        assert_eq!(cli.args.params(), AttacksParams::default());
        let help = Cli::command().render_long_help().to_string();
        for option in ["--attacks", "--benign-flows", "--attack-gap", "--intel-out", "--truth", "--seed"] {
            assert!(help.contains(option), "{option} missing from --help");
        }
    }

    #[test]
    fn attack_lists_parse_with_repeats_and_all() {
        assert_eq!(parse_attacks("all").unwrap().0, AttackKind::ALL.to_vec());
        assert_eq!(
            parse_attacks("syn-scan, syn-scan,udp-flood").unwrap().0,
            vec![AttackKind::SynScan, AttackKind::SynScan, AttackKind::UdpFlood]
        );
        assert!(parse_attacks("teardrop").unwrap_err().contains("unknown attack `teardrop`"));
        assert!(parse_attacks(" , ").is_err());
        let cli = Cli::try_parse_from([
            "gen",
            "-o",
            "x",
            "--attacks",
            "ping-sweep",
            "--benign-mean-gap",
            "2s",
            "--attack-gap",
            "0s",
        ])
        .unwrap();
        let p = cli.args.params();
        assert_eq!(p.attacks, vec![AttackKind::PingSweep]);
        assert!(!p.stretch_benign);
        assert_eq!(p.benign.mean_gap, Duration::from_secs(2));
        assert_eq!(p.attack_gap, Duration::ZERO);
    }
}
