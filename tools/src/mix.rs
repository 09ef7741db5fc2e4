//! The mix scenario (`outpost gen mix`): benign traffic of many concurrent flows with exact
//! per-flow ground truth, for checking a flow meter.
//!
//! # The scenario
//!
//! `concurrency` scheduler slots each play one conversation at a time; when a conversation
//! ends, its slot pauses (exponential, mean `mean_gap`) and starts the next, until `flows`
//! flows have been started. Conversations interleave packet by packet: a binary heap holds each
//! slot's next packet time (ties go to the lower slot), so timestamps never go backwards.
//!
//! A conversation is one flow, except `icmp_unreach`, which is two: the probes (UDP datagrams
//! or TCP SYNs) and the ICMP errors that answer them. The kinds and what they send are in
//! [`FlowKind`] and in the tables of the `plan` and `tcp` modules: HTTPS-like TCP with
//! heavy-tailed request and response sizes (bounded Pareto), MSS-sized segments, ACKs and
//! FIN/FIN/ACK close; half-open and reset TCP; DNS, NTP and syslog over UDP; EDNS answers and
//! large syslog messages as IPv4/IPv6 fragments; ICMP/ICMPv6 echo; ICMP unreachables. A
//! fraction `long_fraction` of complete TCP conversations are long-lived (14–30 rounds about
//! 12 s apart), so flow meters emit interim (active-timeout) records for them.
//!
//! Hosts are those of the seed scenario's networks (see the `hosts` module): `clients` client
//! hosts, a fraction `ipv6_fraction` of them IPv6 and a fraction `vlan_fraction` behind VLAN
//! tags (a third of those QinQ: an 802.1ad service tag outside an 802.1Q tag).
//!
//! # What the truth promises
//!
//! - **One flow per key.** No two flows share a 5-tuple and VLAN anywhere in a file: each TCP
//!   or UDP flow has a client port its client never used before; ICMP echo flows (keyed by the
//!   Community ID port equivalents, request type ↔ reply type) have a host pair never pinged
//!   before; ICMP error flows a (reporter, client, type, code) never used before.
//! - **No flow goes idle.** No gap between two packets of one flow reaches `max_gap`
//!   (three quarters of `idle_timeout`, default 30 s), and nothing follows a TCP RST or the last
//!   ACK of a close. So a flow meter with that idle timeout sees each truth record as exactly one
//!   flow (possibly split into interim records by its active timeout).
//! - **Counts.** Packets and bytes per direction, bytes being IP total lengths (IPv6: 40 +
//!   payload length), as IPFIX `octetDeltaCount`. Fragments count in their datagram's flow.
//! - **Initiator.** The sender of the first packet: the client for TCP (the SYN), UDP and echo;
//!   the reporting router or host for ICMP errors.
//! - **Timestamps** are the ones in the file (whole microseconds for microsecond pcap).
//! - Every frame decodes with valid lengths and checksums.
//!
//! # Guarantees
//!
//! - Same parameters and seed give byte-identical capture and truth files (on one platform:
//!   sizes and times use the platform's `ln`, `exp` and `powf`).
//! - Memory is O(`concurrency` + `clients`): a slot holds at most a few queued packets
//!   (TCP responses are queued segment by segment) and the fragments of one datagram; truth
//!   records are written when their conversation ends, in that order (not sorted by `flow`).
//!
//! The entry points are [`generate`] (any writers), [`generate_in_memory`] (tests) and
//! [`generate_mix`] (the command line, from [`MixArgs`]).

mod args;
mod conversation;
mod hosts;
mod payload;
mod plan;
mod tcp;
mod truth;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, BufWriter, Write};

use outpost_decode::{Duration, LinkType, Nanos};
use serde::Serialize;

use crate::pcap::{CaptureWriter, OutputFormat};

pub use args::{MixArgs, generate_mix, parse_weights};
pub use truth::{FlowKind, FlowTruth, FlowTruthError, read_flow_truth, read_flow_truth_file};

use crate::random::Random;
use conversation::{Conversation, Emitter};
use hosts::{ClientPool, ErrorKind, Need, Peers};
use plan::{PlanSettings, start_conversation};

/// Default number of flows (`--flows`).
pub const DEFAULT_FLOWS: u64 = 10_000;
/// Default number of concurrent conversations (`--concurrency`).
pub const DEFAULT_CONCURRENCY: u32 = 256;
/// Default number of client hosts (`--clients`).
pub const DEFAULT_CLIENTS: u32 = 2_000;
/// Default mean pause of a slot between two conversations (`--mean-gap`).
pub const DEFAULT_MEAN_GAP: Duration = Duration::from_millis(500);
/// Default idle timeout of the flow meter the truth is for (`--idle-timeout`): Outpost's.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default fraction of complete TCP conversations that are long-lived (`--long-fraction`).
pub const DEFAULT_LONG_FRACTION: f64 = 0.01;
/// Default fraction of client hosts on IPv6 (`--ipv6-fraction`).
pub const DEFAULT_IPV6_FRACTION: f64 = 0.2;
/// Default fraction of client hosts behind VLAN tags (`--vlan-fraction`).
pub const DEFAULT_VLAN_FRACTION: f64 = 0.15;
/// Default start of the capture (`--start`): 2026-01-01T00:00:00Z.
pub const DEFAULT_START: Nanos = Nanos::from_secs(1_767_225_600);
/// Default random seed (`--seed`).
pub const DEFAULT_SEED: u64 = 1;
/// Most concurrent conversations.
pub const MAX_CONCURRENCY: u32 = 100_000;
/// Most client hosts.
pub const MAX_CLIENTS: u32 = 1_000_000;
/// Shortest idle timeout: scripts have fixed gaps of up to 4 s (SYN back-off), which must stay
/// under `max_gap`.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(6);

/// Relative weights of conversation kinds, indexed by [`FlowKind::index`]. An `icmp_unreach`
/// conversation also makes its probe flow (`udp` or `tcp_half_open`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MixWeights(pub [u32; 7]);

impl Default for MixWeights {
    /// `tcp_complete=45,tcp_half_open=5,tcp_reset=5,udp=25,fragmented_udp=4,icmp_echo=12,
    /// icmp_unreach=4`.
    fn default() -> MixWeights {
        MixWeights([45, 5, 5, 25, 4, 12, 4])
    }
}

impl MixWeights {
    /// The weight of one kind.
    #[must_use]
    pub fn get(&self, kind: FlowKind) -> u32 {
        self.0[kind.index()]
    }
}

impl fmt::Display for MixWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, k) in FlowKind::ALL.iter().enumerate() {
            write!(f, "{}{}={}", if i > 0 { "," } else { "" }, k.name(), self.0[i])?;
        }
        Ok(())
    }
}

/// Everything that shapes a mix capture. Fields mirror the options of [`MixArgs`];
/// [`MixParams::default`] has their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct MixParams {
    /// Flows to write (= truth records). Default [`DEFAULT_FLOWS`].
    pub flows: u64,
    /// Conversations in progress at once, 1..=[`MAX_CONCURRENCY`]. Default
    /// [`DEFAULT_CONCURRENCY`].
    pub concurrency: u32,
    /// Client hosts, 1..=[`MAX_CLIENTS`]. Default [`DEFAULT_CLIENTS`].
    pub clients: u32,
    /// Mean pause of a slot between conversations. Default [`DEFAULT_MEAN_GAP`].
    pub mean_gap: Duration,
    /// Idle timeout of the flow meter: no flow is silent for 3/4 of it. At least
    /// [`MIN_IDLE_TIMEOUT`]. Default [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Fraction in [0, 1] of complete TCP conversations that are long-lived. Default
    /// [`DEFAULT_LONG_FRACTION`].
    pub long_fraction: f64,
    /// Fraction in [0, 1] of client hosts on IPv6. Default [`DEFAULT_IPV6_FRACTION`].
    pub ipv6_fraction: f64,
    /// Fraction in [0, 1] of client hosts behind VLAN tags. Default [`DEFAULT_VLAN_FRACTION`].
    pub vlan_fraction: f64,
    /// Conversation kind weights. Default [`MixWeights::default`].
    pub weights: MixWeights,
    /// Earliest packet time. Default [`DEFAULT_START`].
    pub start: Nanos,
    /// Random seed. Default [`DEFAULT_SEED`].
    pub seed: u64,
    /// Capture file format (Ethernet frames). Default nanosecond pcap.
    pub format: OutputFormat,
}

impl Default for MixParams {
    fn default() -> MixParams {
        MixParams {
            flows: DEFAULT_FLOWS,
            concurrency: DEFAULT_CONCURRENCY,
            clients: DEFAULT_CLIENTS,
            mean_gap: DEFAULT_MEAN_GAP,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            long_fraction: DEFAULT_LONG_FRACTION,
            ipv6_fraction: DEFAULT_IPV6_FRACTION,
            vlan_fraction: DEFAULT_VLAN_FRACTION,
            weights: MixWeights::default(),
            start: DEFAULT_START,
            seed: DEFAULT_SEED,
            format: OutputFormat::default(),
        }
    }
}

/// Why [`MixParams`] were rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MixParamsError {
    /// `concurrency` is 0 or above [`MAX_CONCURRENCY`].
    #[error("--concurrency must be 1..={MAX_CONCURRENCY}, got {0}")]
    Concurrency(u32),
    /// `clients` is 0 or above [`MAX_CLIENTS`].
    #[error("--clients must be 1..={MAX_CLIENTS}, got {0}")]
    Clients(u32),
    /// A fraction is outside [0, 1].
    #[error("--{name} must be in [0, 1], got {value}")]
    Fraction {
        /// The option, e.g. `ipv6-fraction`.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// `idle_timeout` is below [`MIN_IDLE_TIMEOUT`].
    #[error("--idle-timeout must be at least 6s (scripts wait up to 4 s inside a flow), got {0} ns")]
    IdleTimeout(u64),
    /// Every kind has weight 0.
    #[error("--mix gives every kind weight 0")]
    NoKinds,
}

impl MixParams {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), MixParamsError> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(MixParamsError::Concurrency(self.concurrency));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(MixParamsError::Clients(self.clients));
        }
        for (name, value) in [
            ("long-fraction", self.long_fraction),
            ("ipv6-fraction", self.ipv6_fraction),
            ("vlan-fraction", self.vlan_fraction),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(MixParamsError::Fraction { name, value });
            }
        }
        if self.idle_timeout < MIN_IDLE_TIMEOUT {
            return Err(MixParamsError::IdleTimeout(self.idle_timeout.0));
        }
        if self.weights.0.iter().all(|&w| w == 0) {
            return Err(MixParamsError::NoKinds);
        }
        Ok(())
    }

    /// The longest silence inside a flow: three quarters of `idle_timeout`.
    #[must_use]
    pub fn max_gap(&self) -> Duration {
        Duration(self.idle_timeout.0 / 4 * 3)
    }
}

/// What a generation wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MixSummary {
    /// Flows (= truth records).
    pub flows: u64,
    /// Conversations (an `icmp_unreach` conversation is two flows).
    pub conversations: u64,
    /// Flows per kind, indexed by [`FlowKind::index`].
    pub kinds: [u64; 7],
    /// Packets written.
    pub packets: u64,
    /// Of which IP fragments.
    pub fragments: u64,
    /// Bytes of all frames (without capture-file headers).
    pub frame_bytes: u64,
    /// Timestamp of the first packet, if any.
    pub first_ts: Option<Nanos>,
    /// Timestamp of the last packet, if any.
    pub last_ts: Option<Nanos>,
}

impl MixSummary {
    /// Flows of one kind.
    #[must_use]
    pub fn kind(&self, kind: FlowKind) -> u64 {
        self.kinds[kind.index()]
    }
}

impl fmt::Display for MixSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} packets ({} fragments) in {} flows (", self.packets, self.fragments, self.flows)?;
        for (i, k) in FlowKind::ALL.iter().enumerate() {
            write!(f, "{}{} {}", if i > 0 { ", " } else { "" }, k.name(), self.kinds[i])?;
        }
        write!(f, ")")?;
        if let (Some(first), Some(last)) = (self.first_ts, self.last_ts) {
            write!(f, ", {first} .. {last}")?;
        }
        Ok(())
    }
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// The parameters are out of range.
    #[error(transparent)]
    Params(#[from] MixParamsError),
    /// The clients ran out of unused keys (ports, ping targets or ICMP error sources).
    #[error(
        "after {flows} flows no client has an unused key for another {kind} flow: raise --clients \
         (each client has 28232 ports and 1016 ping targets)"
    )]
    KeysExhausted {
        /// Flows started so far.
        flows: u64,
        /// The kind that could not be started.
        kind: FlowKind,
    },
    /// A file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing the capture or the truth failed.
    #[error("writing the mix scenario: {0}")]
    Io(#[from] io::Error),
}

/// A mix capture held in memory, for tests.
#[derive(Clone, Debug)]
pub struct MixCapture {
    /// The capture file's bytes (format as in the parameters).
    pub capture: Vec<u8>,
    /// The ground truth, in the order flows ended.
    pub truth: Vec<FlowTruth>,
    /// What was written.
    pub summary: MixSummary,
}

/// Generates into memory: capture bytes and parsed truth.
///
/// # Errors
/// As [`generate`].
pub fn generate_in_memory(params: &MixParams) -> Result<MixCapture, MixError> {
    let mut capture = Vec::new();
    let mut truth_bytes = Vec::new();
    let summary = generate(params, &mut capture, Some(&mut truth_bytes))?;
    let truth =
        read_flow_truth(truth_bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(MixCapture { capture, truth, summary })
}

/// Tries this many random clients before giving up on a conversation.
const CLIENT_TRIES: u32 = 256;

/// Generates the mix scenario: writes the capture (Ethernet frames) to `capture` and, when
/// given, one JSON line per flow to `truth` (see the module docs for the guarantees). Both
/// writers are buffered here; pass them unbuffered.
///
/// # Errors
/// [`MixError::Params`] before anything is written, [`MixError::KeysExhausted`] when there
/// are too few clients for the flows, or the first I/O error.
pub fn generate<W: Write, T: Write>(
    params: &MixParams,
    capture: W,
    truth: Option<T>,
) -> Result<MixSummary, MixError> {
    params.validate()?;
    let mut out = CaptureWriter::new(capture, params.format, LinkType::Ethernet)?;
    let mut truth = truth.map(|t| BufWriter::with_capacity(64 * 1024, t));
    let mut summary = MixSummary::default();

    let mut sched = Random::new(params.seed, 0);
    let peers = Peers::new();
    let mut pool = ClientPool::new(params.clients, params.ipv6_fraction, params.vlan_fraction, &mut sched);
    // Microsecond pcap keeps only whole microseconds: the truth carries what the file holds.
    let quantum = if params.format == (OutputFormat::Pcap { nanos: false }) { 1_000 } else { 1 };
    let mut em = Emitter::new(&mut sched, quantum);
    // Gaps stay a microsecond short of `max_gap`, also after truncation to microseconds.
    let settings = PlanSettings {
        max_gap: params.max_gap().0.saturating_sub(1_000),
        long_fraction: params.long_fraction,
    };
    let mean_gap = params.mean_gap.0 as f64;
    let n = params.concurrency as usize;
    let mut starter = Starter { params, peers: &peers, settings, next_serial: 1 };

    let mut slots: Vec<Option<Conversation>> = Vec::with_capacity(n);
    let mut due = BinaryHeap::with_capacity(n);
    for slot in 0..params.concurrency {
        // Slots start spread over one mean pause, as if the run were already going.
        let at = params.start.0.saturating_add(sched.exponential(mean_gap, 10.0 * mean_gap) as u64);
        let mut conv = starter.start(&mut sched, &mut pool, at)?;
        if let Some(ts) = conv.as_mut().and_then(Conversation::next_ts) {
            due.push(Reverse((ts, slot)));
        }
        slots.push(conv);
    }
    while let Some(Reverse((ts, slot))) = due.pop() {
        let Some(conv) = slots.get_mut(slot as usize).and_then(Option::as_mut) else { continue };
        if let Some(at) = conv.emit(&mut em) {
            out.write_packet(Nanos(at), &em.frame)?;
            summary.packets += 1;
            summary.frame_bytes += em.frame.len() as u64;
            summary.first_ts.get_or_insert(Nanos(at));
            summary.last_ts = Some(Nanos(at));
        }
        if let Some(next) = conv.next_ts() {
            due.push(Reverse((next, slot)));
            continue;
        }
        summary.conversations += 1;
        for flow in conv.flows.iter().filter(|f| f.packets() > 0) {
            let record = flow.truth();
            summary.flows += 1;
            summary.kinds[record.kind.index()] += 1;
            summary.fragments += record.fragments;
            if let Some(t) = truth.as_mut() {
                record.write_line(t)?;
            }
        }
        let at = ts.saturating_add(sched.exponential(mean_gap, 10.0 * mean_gap) as u64);
        let mut next = starter.start(&mut sched, &mut pool, at)?;
        if let Some(ts) = next.as_mut().and_then(Conversation::next_ts) {
            due.push(Reverse((ts, slot)));
        }
        if let Some(s) = slots.get_mut(slot as usize) {
            *s = next;
        }
    }
    out.finish()?;
    if let Some(t) = truth {
        t.into_inner().map_err(io::IntoInnerError::into_error)?.flush()?;
    }
    Ok(summary)
}

/// Picks the kind and client of each new conversation.
struct Starter<'a> {
    params: &'a MixParams,
    peers: &'a Peers,
    settings: PlanSettings,
    /// Serial number of the next flow.
    next_serial: u64,
}

impl Starter<'_> {
    /// The next conversation, starting at `at`, or `None` once `flows` flows are started.
    fn start(
        &mut self,
        rng: &mut Random,
        pool: &mut ClientPool,
        at: u64,
    ) -> Result<Option<Conversation>, MixError> {
        let started = self.next_serial - 1;
        if started >= self.params.flows {
            return Ok(None);
        }
        let mut kind = FlowKind::ALL[rng.weighted(&self.params.weights.0)];
        if kind == FlowKind::IcmpUnreach && self.params.flows - started < 2 {
            // Two flows would overshoot --flows.
            kind = FlowKind::Udp;
        }
        let error = [ErrorKind::HostUnreachable, ErrorKind::AdminProhibited, ErrorKind::PortUnreachable]
            [rng.weighted(&[4, 2, 4])];
        let need = match kind {
            FlowKind::IcmpEcho => Need::Ping,
            FlowKind::IcmpUnreach => Need::Unreach(error),
            _ => Need::Port,
        };
        let count = pool.clients.len() as u64;
        for _ in 0..CLIENT_TRIES {
            let i = rng.below(count) as usize;
            let Some(client) = pool.clients.get_mut(i) else { continue };
            if !client.can(need, self.peers) {
                continue;
            }
            let serial = self.next_serial;
            let conv = start_conversation(
                kind,
                error,
                client,
                self.peers,
                serial,
                at,
                self.params.seed,
                &self.settings,
            );
            self.next_serial += conv.flows.len() as u64;
            return Ok(Some(conv));
        }
        Err(MixError::KeysExhausted { flows: started, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MixParams {
        MixParams { flows: 300, concurrency: 32, clients: 100, ..MixParams::default() }
    }

    #[test]
    fn defaults_validate_and_match_the_documented_values() {
        let p = MixParams::default();
        p.validate().unwrap();
        assert_eq!(p.max_gap(), Duration::from_millis(22_500));
        assert_eq!(
            MixWeights::default().to_string(),
            "tcp_complete=45,tcp_half_open=5,tcp_reset=5,udp=25,fragmented_udp=4,icmp_echo=12,icmp_unreach=4"
        );
    }

    #[test]
    fn out_of_range_params_are_rejected_before_writing() {
        let base = MixParams::default();
        let cases: Vec<(MixParams, &str)> = vec![
            (MixParams { concurrency: 0, ..base.clone() }, "concurrency"),
            (MixParams { clients: 0, ..base.clone() }, "clients"),
            (MixParams { ipv6_fraction: 1.5, ..base.clone() }, "ipv6-fraction"),
            (MixParams { vlan_fraction: f64::NAN, ..base.clone() }, "vlan-fraction"),
            (MixParams { long_fraction: -0.1, ..base.clone() }, "long-fraction"),
            (MixParams { idle_timeout: Duration::from_secs(5), ..base.clone() }, "idle-timeout"),
            (MixParams { weights: MixWeights([0; 7]), ..base.clone() }, "weight 0"),
        ];
        for (p, needle) in cases {
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
            let mut out = Vec::new();
            assert!(generate(&p, &mut out, None::<io::Sink>).is_err());
            assert!(out.is_empty());
        }
    }

    #[test]
    fn flows_match_the_summary_and_serials_are_unique() {
        let c = generate_in_memory(&small()).unwrap();
        assert_eq!(c.truth.len() as u64, 300);
        assert_eq!(c.summary.flows, 300);
        assert_eq!(c.summary.kinds.iter().sum::<u64>(), 300);
        let mut serials: Vec<u64> = c.truth.iter().map(|t| t.flow).collect();
        serials.sort_unstable();
        assert_eq!(serials, (1..=300).collect::<Vec<_>>());
        let packets: u64 = c.truth.iter().map(FlowTruth::packets).sum();
        assert_eq!(packets, c.summary.packets);
    }

    #[test]
    fn too_few_clients_run_out_of_ping_targets() {
        let p = MixParams {
            flows: 2_000,
            clients: 1,
            weights: MixWeights([0, 0, 0, 0, 0, 1, 0]),
            ..MixParams::default()
        };
        match generate(&p, io::sink(), None::<io::Sink>) {
            Err(MixError::KeysExhausted { flows, kind }) => {
                assert_eq!(flows, 1016);
                assert_eq!(kind, FlowKind::IcmpEcho);
            }
            other => panic!("expected exhaustion, got {other:?}"),
        }
    }

    #[test]
    fn zero_flows_write_just_the_file_header() {
        let p = MixParams { flows: 0, ..MixParams::default() };
        let mut out = Vec::new();
        let s = generate(&p, &mut out, None::<io::Sink>).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(s.packets, 0);
    }
}
