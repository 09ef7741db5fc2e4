//! The `outpost gen mix` command line: [`MixArgs`] (its doc comments are the `--help` text)
//! and [`generate_mix`], which writes the files it names.

use std::fs::File;
use std::path::PathBuf;

use outpost_decode::{Duration, Nanos};

use super::{
    DEFAULT_CLIENTS, DEFAULT_CONCURRENCY, DEFAULT_FLOWS, DEFAULT_IPV6_FRACTION, DEFAULT_LONG_FRACTION,
    DEFAULT_SEED, DEFAULT_VLAN_FRACTION, FlowKind, MixError, MixParams, MixSummary, MixWeights, generate,
};
use crate::seed::FormatArg;
use crate::timearg::{parse_duration, parse_time};

/// Generate the mix scenario: benign traffic of many concurrent flows with per-flow ground
/// truth, for checking flow meters.
///
/// Clients in 10.1.0.0/16 .. 10.4.0.0/16 (and 2001:db8:1::/48 .. 2001:db8:4::/48), some behind
/// VLAN or QinQ tags, talk to servers in 192.168.1.0/24, 172.16.5.0/24, 192.168.7.0/24 and
/// Internet hosts in 198.51.100.0/24: HTTPS-like TCP (complete, half-open, reset), DNS, NTP and
/// syslog over UDP, fragmented EDNS answers and syslog messages, ICMP echo and ICMP
/// unreachables. No 5-tuple is used by two flows and no flow is silent for 3/4 of
/// --idle-timeout, so one truth line is one flow. The same options and seed always give the
/// same bytes.
#[derive(Clone, Debug, clap::Args)]
pub struct MixArgs {
    /// Capture file to write (Ethernet frames).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,

    /// Capture format: pcap (nanosecond timestamps), pcap-usec (microsecond) or pcapng.
    #[arg(long, value_enum, default_value_t = FormatArg::Pcap)]
    pub format: FormatArg,

    /// Ground truth to write: one JSON line per flow when it ends, with flow (serial number),
    /// kind, proto, vlans, initiator, initiator_port, responder, responder_port, icmp_type and
    /// icmp_code (ICMP only), fwd_packets, fwd_bytes, rev_packets, rev_bytes (bytes are IP total
    /// lengths), fragments, first, first_ns, last, last_ns.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,

    /// Number of flows (truth lines) to write.
    #[arg(long, default_value_t = DEFAULT_FLOWS)]
    pub flows: u64,

    /// Conversations in progress at once. Memory grows with this, not with --flows.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: u32,

    /// Client hosts. Each has 28232 ephemeral ports and 1016 ping targets that are never
    /// reused, so --flows can be up to about 1000 times this.
    #[arg(long, default_value_t = DEFAULT_CLIENTS)]
    pub clients: u32,

    /// Mean pause between two conversations of one concurrency slot (e.g. 500ms).
    #[arg(long, default_value = "500ms", value_parser = parse_duration, value_name = "DURATION")]
    pub mean_gap: Duration,

    /// Idle timeout of the flow meter under test (at least 6s). No flow is silent for 3/4 of
    /// it, so no flow is split by idleness.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Fraction of complete TCP conversations that are long-lived (14-30 rounds about 12 s
    /// apart, several minutes), so active timeouts split them into interim records.
    #[arg(long, default_value_t = DEFAULT_LONG_FRACTION, value_name = "P")]
    pub long_fraction: f64,

    /// Fraction of client hosts on IPv6.
    #[arg(long, default_value_t = DEFAULT_IPV6_FRACTION, value_name = "P")]
    pub ipv6_fraction: f64,

    /// Fraction of client hosts behind VLAN tags; a third of them double-tagged (QinQ).
    #[arg(long, default_value_t = DEFAULT_VLAN_FRACTION, value_name = "P")]
    pub vlan_fraction: f64,

    /// Conversation kind weights as KIND=WEIGHT,...; kinds not named keep their default.
    /// Kinds: tcp_complete (45), tcp_half_open (5), tcp_reset (5), udp (25), fragmented_udp
    /// (4), icmp_echo (12), icmp_unreach (4; each also makes the probe flow it answers).
    #[arg(long, value_parser = parse_weights, value_name = "KIND=W,...")]
    pub mix: Option<MixWeights>,

    /// Start time: RFC 3339 (2026-01-01T00:00:00Z) or seconds since the epoch.
    #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = parse_time, value_name = "TIME")]
    pub start: Nanos,

    /// Random seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

/// Parses `--mix`: `KIND=WEIGHT` pairs separated by commas, over the default weights.
///
/// # Errors
/// An unknown kind, a missing `=`, or a weight that is not a non-negative integer.
pub fn parse_weights(text: &str) -> Result<MixWeights, String> {
    let mut w = MixWeights::default();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| format!("`{part}` is not KIND=WEIGHT"))?;
        let kind = FlowKind::from_name(name.trim()).ok_or_else(|| {
            let names: Vec<&str> = FlowKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown kind `{}` (kinds: {})", name.trim(), names.join(", "))
        })?;
        let value: u32 = value
            .trim()
            .parse()
            .map_err(|_| format!("weight of {kind} must be an integer, got `{value}`"))?;
        w.0[kind.index()] = value;
    }
    Ok(w)
}

impl MixArgs {
    /// The generation parameters these options describe (not yet validated).
    #[must_use]
    pub fn params(&self) -> MixParams {
        MixParams {
            flows: self.flows,
            concurrency: self.concurrency,
            clients: self.clients,
            mean_gap: self.mean_gap,
            idle_timeout: self.idle_timeout,
            long_fraction: self.long_fraction,
            ipv6_fraction: self.ipv6_fraction,
            vlan_fraction: self.vlan_fraction,
            weights: self.mix.unwrap_or_default(),
            start: self.start,
            seed: self.seed,
            format: self.format.into(),
        }
    }
}

/// Runs `outpost gen mix`: validates the options, then writes `--out` and, if asked,
/// `--truth`.
///
/// # Errors
/// Invalid options (before any file is created), a file that cannot be created, too few
/// clients for the flows, or a write error.
pub fn generate_mix(args: &MixArgs) -> Result<MixSummary, MixError> {
    let params = args.params();
    params.validate()?;
    let create =
        |path: &PathBuf| File::create(path).map_err(|source| MixError::Create { path: path.clone(), source });
    let out = create(&args.out)?;
    let truth = args.truth.as_ref().map(create).transpose()?;
    generate(&params, out, truth.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MixArgs,
    }

    #[test]
    fn defaults_on_the_command_line_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["gen", "--out", "x.pcap"]).unwrap();
        assert_eq!(cli.args.params(), MixParams::default());
    }

    #[test]
    fn mix_weights_override_only_the_named_kinds() {
        let w = parse_weights("udp=0, icmp_echo=30").unwrap();
        assert_eq!(w.get(FlowKind::Udp), 0);
        assert_eq!(w.get(FlowKind::IcmpEcho), 30);
        assert_eq!(w.get(FlowKind::TcpComplete), 45);
        assert!(parse_weights("sctp=1").unwrap_err().contains("unknown kind `sctp`"));
        assert!(parse_weights("udp").unwrap_err().contains("KIND=WEIGHT"));
        assert!(parse_weights("udp=-1").unwrap_err().contains("integer"));
        let cli =
            Cli::try_parse_from(["gen", "-o", "x", "--mix", "tcp_reset=9", "--idle-timeout", "60s"]).unwrap();
        assert_eq!(cli.args.params().weights.get(FlowKind::TcpReset), 9);
        assert_eq!(cli.args.params().idle_timeout, Duration::from_secs(60));
    }
}
