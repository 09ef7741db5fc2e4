//! The `outpost gen seed` command line: [`SeedArgs`] (its doc comments are the `--help` text)
//! and [`generate_seed`], which writes the files it names.

use std::fs::File;
use std::path::PathBuf;

use outpost_decode::{Duration, Nanos};

use super::{
    DEFAULT_CLIENTS, DEFAULT_ERROR_PROB, DEFAULT_EVENTS, DEFAULT_F_PROB, DEFAULT_IPV6_FRACTION,
    DEFAULT_NOISE, DEFAULT_RATE, DEFAULT_SEED, SeedError, SeedParams, SeedSummary, generate,
};
use crate::frame::Link;
use crate::pcap::OutputFormat;
use crate::timearg::{parse_duration, parse_time};

/// Generate the seed scenario: Flink's state-machine example as UDP traffic, with ground truth.
///
/// Clients in 10.1.0.0/16 .. 10.4.0.0/16 (and 2001:db8:1::/48 .. 2001:db8:4::/48) send events
/// a..g as UDP datagrams to ports 7001..7007 of servers in 192.168.1.0/24, 172.16.5.0/24 and
/// 192.168.7.0/24, walking INITIAL -a-> W -b-> Y -e-> Z, INITIAL -c-> X -b-> Y,
/// X -d-> Z, Z -f-> Z, Z -g-> TERM. Invalid events are injected with --error-prob and listed
/// in --truth. The same options and seed always give the same bytes.
#[derive(Clone, Debug, clap::Args)]
pub struct SeedArgs {
    /// Capture file to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: PathBuf,

    /// Capture format: pcap (nanosecond timestamps), pcap-usec (microsecond) or pcapng.
    #[arg(long, value_enum, default_value_t = FormatArg::Pcap)]
    pub format: FormatArg,

    /// Ground truth to write: one JSON line per injected invalid transition, in packet order,
    /// with ts, ts_ns, src_ip, dst_ip, src_port, dst_port, state (INITIAL, W, X, Y, Z) and
    /// event (a..g).
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,

    /// Number of events (state-machine datagrams) to write; noise packets come on top.
    #[arg(long, default_value_t = DEFAULT_EVENTS)]
    pub events: u64,

    /// Number of concurrent clients (source addresses), 1..=65000. A client that reaches TERM
    /// is replaced at once by a new client with a new address.
    #[arg(long, default_value_t = DEFAULT_CLIENTS)]
    pub clients: u32,

    /// Aggregate event rate in events per second. Each client thinks clients/rate seconds on
    /// average between its events; that must stay under a quarter of 95% of --idle-timeout.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: f64,

    /// Chance that an event is replaced by an invalid one (Flink's errorProbFactor), drawn
    /// uniformly among the events invalid in the client's state. The client then restarts at
    /// INITIAL, as the detector does.
    #[arg(long, default_value_t = DEFAULT_ERROR_PROB, value_name = "P")]
    pub error_prob: f64,

    /// Chance of f (stay in Z) rather than g (TERM) in state Z. At 0.5 a walk averages about
    /// 4.8 events; at 1 clients never terminate.
    #[arg(long, default_value_t = DEFAULT_F_PROB, value_name = "P")]
    pub f_prob: f64,

    /// The detector's idle timeout (e.g. 60s, 500ms, 2m). No client waits more than 95% of it
    /// between two of its events, so idle releases never change the truth.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// Start time: RFC 3339 (2026-01-01T00:00:00Z) or seconds since the epoch.
    #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = parse_time, value_name = "TIME")]
    pub start: Nanos,

    /// Random seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,

    /// Fraction of all packets that are background noise, 0..=0.99: DNS, HTTPS, NTP, syslog
    /// and ICMP that are never UDP to ports 7001..7007 and do not change the events.
    #[arg(long, default_value_t = DEFAULT_NOISE, value_name = "P")]
    pub noise: f64,

    /// Fraction of clients (and noise hosts) that use IPv6.
    #[arg(long, default_value_t = DEFAULT_IPV6_FRACTION, value_name = "P")]
    pub ipv6_fraction: f64,

    /// Link framing of the frames.
    #[arg(long, value_enum, default_value_t = LinkArg::Ethernet)]
    pub link: LinkArg,
}

/// Capture formats on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Classic pcap with nanosecond timestamps.
    Pcap,
    /// Classic pcap with microsecond timestamps (truncated).
    PcapUsec,
    /// pcapng, one interface, nanosecond timestamps.
    Pcapng,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> OutputFormat {
        match f {
            FormatArg::Pcap => OutputFormat::Pcap { nanos: true },
            FormatArg::PcapUsec => OutputFormat::Pcap { nanos: false },
            FormatArg::Pcapng => OutputFormat::PcapNg,
        }
    }
}

/// Link framings on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkArg {
    /// Ethernet II.
    Ethernet,
    /// Bare IP packets (LINKTYPE_RAW).
    Raw,
    /// Linux cooked capture v1.
    Sll,
    /// Linux cooked capture v2.
    Sll2,
}

impl From<LinkArg> for Link {
    fn from(l: LinkArg) -> Link {
        match l {
            LinkArg::Ethernet => Link::Ethernet,
            LinkArg::Raw => Link::Raw,
            LinkArg::Sll => Link::LinuxSll,
            LinkArg::Sll2 => Link::LinuxSll2,
        }
    }
}

impl SeedArgs {
    /// The generation parameters these options describe (not yet validated).
    #[must_use]
    pub fn params(&self) -> SeedParams {
        SeedParams {
            events: self.events,
            clients: self.clients,
            rate: self.rate,
            error_prob: self.error_prob,
            f_prob: self.f_prob,
            idle_timeout: self.idle_timeout,
            start: self.start,
            seed: self.seed,
            noise: self.noise,
            ipv6_fraction: self.ipv6_fraction,
            format: self.format.into(),
            link: self.link.into(),
        }
    }
}

impl SeedArgs {
    /// Parses `outpost gen seed` options (`["--out", "x.pcap", "--events", "1000", ...]`):
    /// for tests and tools that describe a scenario the way the command line does.
    ///
    /// # Errors
    /// An unknown option or a bad value, as clap reports it.
    pub fn from_options<I: IntoIterator<Item = S>, S: Into<String>>(
        options: I,
    ) -> Result<SeedArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: SeedArgs,
        }
        let argv = std::iter::once("gen".to_string()).chain(options.into_iter().map(Into::into));
        Ok(Cli::try_parse_from(argv)?.args)
    }
}

/// Runs `outpost gen seed`: validates the options, then writes `--out` and, if asked,
/// `--truth`.
///
/// # Errors
/// Invalid options (before any file is created), a file that cannot be created, or a write
/// error.
pub fn generate_seed(args: &SeedArgs) -> Result<SeedSummary, SeedError> {
    let params = args.params();
    params.validate()?;
    let create = |path: &PathBuf| {
        File::create(path).map_err(|source| SeedError::Create { path: path.clone(), source })
    };
    let out = create(&args.out)?;
    let truth = args.truth.as_ref().map(create).transpose()?;
    generate(&params, out, truth.as_ref())
}
