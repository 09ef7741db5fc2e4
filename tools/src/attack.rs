//! The attack scenario (`outpost gen attacks`): attacks aimed at each rule of the default
//! ruleset (docs/DETECTION.md), mixed into the benign traffic of the mix scenario, with one
//! ground-truth line per attack and rule that must alert, and the intel list the intel
//! contact is on.
//!
//! # The attacks
//!
//! Each attack clears its rule's default threshold clearly — two to five times, counted the
//! way the rule counts — while keeping the shape of the tool that makes it. The modules
//! describe them in full; in short:
//!
//! | kind | shape | rule, threshold | this attack |
//! |---|---|---|---|
//! | `syn-scan` | nmap -sS of 125–225 top ports; SYN-ACK (then the scanner's RST) or RST-ACK | `scan-vertical-tcp`, 50 ports / 60 s | 125–225 ports in seconds |
//! | `connect-scan` | nmap -sT: full handshakes on open ports, then RST; RST-ACK on closed | `scan-vertical-tcp` | 125–225 ports |
//! | `fin-scan`, `null-scan`, `xmas-scan` | nmap -sF/-sN/-sX of 25–45 ports; RST-ACK from closed ports | `scan-tcp-stealth`, 10 ports / 60 s | 25–45 ports |
//! | `udp-scan` | nmap -sU of 80–110 ports at ~1/s; port unreachables under Linux's rate limit | `scan-vertical-udp`, 20 / 60 s (alert names the scanner as `dst_ip`) | ~60 per 60 s |
//! | `horizontal-scan` | masscan of one port over a /24 at 2.5–3.3 hosts/s | `scan-horizontal`, 64 hosts / 60 s | 150–200 per 60 s |
//! | `ping-sweep` | fping over a /26 | `ping-sweep`, 20 hosts / 60 s | 62 hosts |
//! | `neighbor-sweep` | nmap -sn on its own segment: a server-network host resolves the other 253 hosts of its /24 or /64 (ARP, neighbor solicitations) 1–3 ms apart | `neighbor-sweep`, 100 hosts / 5 s | 253 hosts in ~0.5 s |
//! | `syn-flood` | 6,000 spoofed SYNs/s for 15 s, SYN cookies answer | `syn-flood`, 20,000 / 10 s (key: victim) | ~60,000 / 10 s |
//! | `icmp-flood` | 6,000 spoofed echo requests/s for 15 s, all answered | `icmp-flood`, 20,000 / 10 s | ~60,000 / 10 s |
//! | `udp-flood` | 15,000 spoofed datagrams/s for 15 s; rate-limited unreachables | `udp-flood`, 50,000 / 10 s | ~150,000 / 10 s |
//! | `ssh-brute-force` | 30–50 short SSH sessions with failed logins over 1.5–2.5 min | `ssh-brute-force`, 10 flows / 5 min | 30–50 |
//! | `rdp-brute-force` | 30–50 short RDP/CredSSP sessions | `rdp-brute-force`, 10 / 5 min | 30–50 |
//! | `login-brute-force` | 40–65 FTP, MySQL or IMAP login sessions | `login-brute-force`, 15 / 5 min | 40–65 |
//! | `brute-force-then-session` | 20–40 SSH attempts, then a 2.5–6 min interactive session with ≥ 120 kB | `ssh-brute-force` and `brute-force-then-session` (≥ 60 s or ≥ 100 kB within 1 h) | both |
//! | `intel-contact` | HTTPS to or from a listed address | `intel-match`, any packet | one to three connections |
//! | `volume-spike` | 13–15 min of steady reports, then a 45–65 MB upload | `volume-baseline-bytes`, `volume-baseline-packets` (mean + 6σ, σ ≥ mean/2, at least 20 MB / 20,000 packets) | ≥ 10× bytes and packets, ≥ 2× the floors |
//!
//! # The run
//!
//! Attacks run one after another in the order given (`all`: the order of
//! [`AttackKind::ALL`]), the first `lead` after the start, each `attack_gap` after the end of
//! the one before — except the volume spike's steady traffic, which starts a quarter of an
//! hour before its spike and overlaps other attacks (its host and peers are its own, so no
//! key is shared). The benign mix runs from the start; unless a mean gap is fixed, its pace is
//! set so it lasts about as long as the attacks (its mean pause between conversations is
//! derived from the attack timeline and its flow count, `--benign-flows`; never below 50 ms,
//! so with very many flows the benign traffic outlasts the attacks).
//!
//! The address plan is in the `plan` module: attackers from `203.0.113.0/24` and
//! `2001:db8:bad::/48`, victims among the mix's servers, spoofed and listed addresses from
//! the public space outside everything the mix uses. A fraction `ipv6_fraction` of the
//! attacks run over IPv6.
//!
//! # What the truth promises
//!
//! One line per attack and rule ([`AttackKind::rules`]), in attack order, as
//! docs/DETECTION.md writes it (see [`AttackTruth`] for which address the alert names; floods
//! name their `target`). `start`/`end` are the first and last packet of the part the rule
//! sees. Counted from the capture the way each rule counts (the tests do exactly that), every
//! attack exceeds its rule's default threshold within the window. Other rules may also fire on
//! attack traffic — a flood victim's packet volume, say — the truth lists only those that
//! must.
//!
//! # Guarantees
//!
//! - Timestamps never go backwards; the benign part is byte for byte `outpost gen mix` with
//!   the same options, seed and pace.
//! - No attack packet shares a 5-tuple with a benign flow; every attack packet has at one end
//!   an address the mix never uses — except the neighbor sweep's ARP frames and neighbor
//!   discovery messages, which a host of the mix exchanges with its neighbours.
//! - Same parameters and seed give byte-identical capture, truth and intel files.
//! - Memory stays bounded whatever `--benign-flows`: the mix streams, floods are expanded a
//!   packet at a time, the other attacks hold at most about ten thousand packet descriptions
//!   each (the volume spike's upload).
//!
//! The entry points are [`generate`] (any writers), [`generate_in_memory`] (tests) and
//! [`generate_attacks`] (the command line, from [`AttacksArgs`]).

mod args;
mod brute;
mod ctx;
mod flood;
mod intel;
mod merge;
mod packet;
mod plan;
mod scan;
mod stream;
mod truth;
mod volume;

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;

use outpost_decode::{Duration, LinkType, Nanos};

use crate::mix::{self, FlowKind, FlowTruth, MixError, MixParams, MixParamsError, MixSummary};
use crate::pcap::{CaptureWriter, OutputFormat};

pub use args::{AttackList, AttacksArgs, generate_attacks, parse_attacks};
pub use plan::{ATTACK_NETWORK_V4, ATTACK_NETWORK_V6, IntelList, in_attack_network};
pub use truth::{
    AttackKind, AttackTruth, AttackTruthError, DetectionRule, read_attack_truth, read_attack_truth_file,
};

use crate::random::Random;
use ctx::{AttackCtx, Planned};
use flood::FloodType;
use merge::MergeSink;
use packet::{Emitter, phase};
use plan::{AddressPlan, PlanExhausted, intel_list, public_address};
use scan::TcpScan;
use stream::AttackStream;

/// Default number of benign flows (`--benign-flows`).
pub const DEFAULT_BENIGN_FLOWS: u64 = 20_000;
/// Default pause after one attack ends before the next starts (`--attack-gap`).
pub const DEFAULT_ATTACK_GAP: Duration = Duration::from_secs(30);
/// Default benign-only time before the first attack (`--lead`).
pub const DEFAULT_LEAD: Duration = Duration::from_secs(60);
/// Default fraction of attacks over IPv6 (`--attack-ipv6-fraction`).
pub const DEFAULT_ATTACK_IPV6_FRACTION: f64 = 0.25;
/// Most intel list entries besides the listed contacts (`--intel-entries`): enough for the
/// detection benchmark's million-entry list.
pub const MAX_INTEL_ENTRIES: usize = 2_000_000;

/// Default number of intel list entries besides the listed contacts (`--intel-entries`).
pub const DEFAULT_INTEL_ENTRIES: usize = 300;
/// Most attacks in one run (each needs addresses of its own).
pub const MAX_ATTACKS: usize = 100;

/// Mean length of a mix conversation at the mix's default settings, measured: what the pace of
/// the benign traffic is derived from.
const MIX_CONVERSATION_NS: f64 = 5.4e9;

/// Everything that shapes an attack capture. [`AttacksParams::default`] has the defaults of
/// [`AttacksArgs`].
#[derive(Clone, Debug, PartialEq)]
pub struct AttacksParams {
    /// The benign traffic. Its `start`, `seed` and `format` are the whole run's.
    pub benign: MixParams,
    /// Replace `benign.mean_gap` by one that makes the benign traffic last about as long as
    /// the attacks. Default true.
    pub stretch_benign: bool,
    /// The attacks, in the order they run (repeats allowed). Default [`AttackKind::ALL`].
    pub attacks: Vec<AttackKind>,
    /// Pause after the end of an attack before the next starts. Default
    /// [`DEFAULT_ATTACK_GAP`].
    pub attack_gap: Duration,
    /// Benign-only time before the first attack. Default [`DEFAULT_LEAD`].
    pub lead: Duration,
    /// Fraction in [0, 1] of attacks over IPv6. Default [`DEFAULT_ATTACK_IPV6_FRACTION`].
    pub ipv6_fraction: f64,
    /// Intel list entries besides the intel contacts' addresses. Default
    /// [`DEFAULT_INTEL_ENTRIES`].
    pub intel_entries: usize,
}

impl Default for AttacksParams {
    fn default() -> AttacksParams {
        AttacksParams {
            benign: MixParams { flows: DEFAULT_BENIGN_FLOWS, ..MixParams::default() },
            stretch_benign: true,
            attacks: AttackKind::ALL.to_vec(),
            attack_gap: DEFAULT_ATTACK_GAP,
            lead: DEFAULT_LEAD,
            ipv6_fraction: DEFAULT_ATTACK_IPV6_FRACTION,
            intel_entries: DEFAULT_INTEL_ENTRIES,
        }
    }
}

/// Why [`AttacksParams`] were rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AttacksParamsError {
    /// The benign traffic's parameters are out of range.
    #[error(transparent)]
    Benign(#[from] MixParamsError),
    /// No attack.
    #[error("--attacks names no attack")]
    NoAttacks,
    /// More than [`MAX_ATTACKS`].
    #[error("--attacks names {0} attacks, at most {MAX_ATTACKS} fit one run")]
    TooManyAttacks(usize),
    /// `ipv6_fraction` is outside [0, 1].
    #[error("--attack-ipv6-fraction must be in [0, 1], got {0}")]
    Ipv6Fraction(f64),
    /// `intel_entries` above [`MAX_INTEL_ENTRIES`].
    #[error("--intel-entries must be at most {MAX_INTEL_ENTRIES}, got {0}")]
    IntelEntries(usize),
}

impl AttacksParams {
    /// Checks every field.
    ///
    /// # Errors
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), AttacksParamsError> {
        self.benign.validate()?;
        if self.attacks.is_empty() {
            return Err(AttacksParamsError::NoAttacks);
        }
        if self.attacks.len() > MAX_ATTACKS {
            return Err(AttacksParamsError::TooManyAttacks(self.attacks.len()));
        }
        if !(0.0..=1.0).contains(&self.ipv6_fraction) {
            return Err(AttacksParamsError::Ipv6Fraction(self.ipv6_fraction));
        }
        if self.intel_entries > MAX_INTEL_ENTRIES {
            return Err(AttacksParamsError::IntelEntries(self.intel_entries));
        }
        Ok(())
    }

    /// The run's start.
    #[must_use]
    pub fn start(&self) -> Nanos {
        self.benign.start
    }

    /// The run's seed.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.benign.seed
    }

    /// The run's capture format.
    #[must_use]
    pub fn format(&self) -> OutputFormat {
        self.benign.format
    }
}

/// One attack as it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttackOutcome {
    /// What it is.
    pub kind: AttackKind,
    /// Packets it wrote.
    pub packets: u64,
    /// The address its alerts name (see [`AttackTruth::named`]).
    pub named: Option<IpAddr>,
}

/// What a generation wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct AttacksSummary {
    /// Packets in the capture.
    pub packets: u64,
    /// Of which attack packets.
    pub attack_packets: u64,
    /// Bytes of all frames (without capture-file headers).
    pub frame_bytes: u64,
    /// Truth lines written.
    pub truth_lines: u64,
    /// Intel list entries.
    pub intel_entries: u64,
    /// The benign traffic.
    pub benign: MixSummary,
    /// The mean pause between benign conversations that was used.
    pub benign_mean_gap: Duration,
    /// Per attack, in order.
    pub attacks: Vec<AttackOutcome>,
    /// Timestamp of the first packet, if any.
    pub first_ts: Option<Nanos>,
    /// Timestamp of the last packet, if any.
    pub last_ts: Option<Nanos>,
    /// Most attack packets held at once by one attack's script (memory use).
    pub peak_pending: usize,
}

impl fmt::Display for AttacksSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} packets: {} attack packets in {} attacks ({} truth lines, {} intel entries), benign: {}",
            self.packets,
            self.attack_packets,
            self.attacks.len(),
            self.truth_lines,
            self.intel_entries,
            self.benign
        )?;
        for a in &self.attacks {
            write!(f, "\n  {} {} packets", a.kind, a.packets)?;
            if let Some(n) = a.named {
                write!(f, ", alerts name {n}")?;
            }
        }
        Ok(())
    }
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    /// The parameters are out of range.
    #[error(transparent)]
    Params(#[from] AttacksParamsError),
    /// The attacks need more addresses than the plan has.
    #[error(transparent)]
    Plan(#[from] PlanExhausted),
    /// The benign traffic could not be generated.
    #[error("benign traffic: {0}")]
    Benign(MixError),
    /// A file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Writing failed.
    #[error("writing the attack scenario: {0}")]
    Io(#[from] io::Error),
}

impl From<MixError> for AttackError {
    fn from(e: MixError) -> AttackError {
        match e {
            MixError::Io(e) => AttackError::Io(e),
            other => AttackError::Benign(other),
        }
    }
}

/// The attacks of a run, planned.
struct RunPlan {
    attacks: Vec<(AttackKind, Planned)>,
    intel: IntelList,
    /// When the last attack packet is sent, ns.
    last: u64,
}

/// Plans every attack: addresses, intel list, timeline, scripts.
fn plan_run(params: &AttacksParams) -> Result<RunPlan, AttackError> {
    let seed = params.seed();
    let mut rng = Random::attack(seed, 0);
    let mut addresses = AddressPlan::new(&mut rng);
    let families: Vec<bool> = params.attacks.iter().map(|_| rng.chance(params.ipv6_fraction)).collect();
    let empty = IntelList::default();
    let listed: Vec<Option<IpAddr>> = params
        .attacks
        .iter()
        .zip(&families)
        .map(|(k, &v6)| (*k == AttackKind::IntelContact).then(|| public_address(&mut rng, v6, &empty)))
        .collect();
    let contacts: Vec<IpAddr> = listed.iter().flatten().copied().collect();
    let intel = intel_list(&mut rng, &contacts, params.intel_entries);

    let origin = params.start().0;
    let mut t = origin.saturating_add(params.lead.0);
    let mut attacks = Vec::with_capacity(params.attacks.len());
    let mut last = t;
    for (i, &kind) in params.attacks.iter().enumerate() {
        let index = u16::try_from(i).map_err(|_| AttacksParamsError::TooManyAttacks(params.attacks.len()))?;
        let mut ctx = AttackCtx {
            index,
            start: t,
            origin,
            v6: families.get(i).copied().unwrap_or(false),
            rng: Random::attack(seed, (u64::from(index) + 1) << 20),
            plan: &mut addresses,
            intel: &intel,
            seed,
            listed: listed.get(i).copied().flatten(),
        };
        let planned = build(kind, &mut ctx)?;
        t = planned.end.saturating_add(params.attack_gap.0);
        last = last.max(planned.last);
        attacks.push((kind, planned));
    }
    Ok(RunPlan { attacks, intel, last })
}

fn build(kind: AttackKind, ctx: &mut AttackCtx<'_>) -> Result<Planned, PlanExhausted> {
    match kind {
        AttackKind::SynScan => scan::tcp_scan(ctx, TcpScan::Syn),
        AttackKind::ConnectScan => scan::tcp_scan(ctx, TcpScan::Connect),
        AttackKind::FinScan => scan::tcp_scan(ctx, TcpScan::Stealth(scan::FIN_PROBE)),
        AttackKind::NullScan => scan::tcp_scan(ctx, TcpScan::Stealth(scan::NULL_PROBE)),
        AttackKind::XmasScan => scan::tcp_scan(ctx, TcpScan::Stealth(scan::XMAS_PROBE)),
        AttackKind::UdpScan => scan::udp_scan(ctx),
        AttackKind::HorizontalScan => scan::horizontal_scan(ctx),
        AttackKind::PingSweep => scan::ping_sweep(ctx),
        AttackKind::NeighborSweep => scan::neighbor_sweep(ctx),
        AttackKind::SynFlood => flood::flood(ctx, FloodType::Syn),
        AttackKind::IcmpFlood => flood::flood(ctx, FloodType::Icmp),
        AttackKind::UdpFlood => flood::flood(ctx, FloodType::Udp),
        AttackKind::SshBruteForce => brute::brute_force(ctx, Some(brute::Service::Ssh)),
        AttackKind::RdpBruteForce => brute::brute_force(ctx, Some(brute::Service::Rdp)),
        AttackKind::LoginBruteForce => brute::brute_force(ctx, None),
        AttackKind::BruteForceThenSession => brute::brute_force_then_session(ctx),
        AttackKind::IntelContact => intel::intel_contact(ctx),
        AttackKind::VolumeSpike => volume::volume_spike(ctx),
    }
}

/// The mean pause between benign conversations that makes `flows` flows last about `span`
/// (at least 50 ms).
fn stretched_gap(benign: &MixParams, span: u64) -> Duration {
    let w = &benign.weights;
    let total: u64 = w.0.iter().map(|&x| u64::from(x)).sum();
    // An icmp_unreach conversation is two flows.
    let flows_per_conversation = 1.0 + f64::from(w.get(FlowKind::IcmpUnreach)) / total.max(1) as f64;
    let conversations = (benign.flows as f64 / flows_per_conversation).max(1.0);
    let per_slot = f64::from(benign.concurrency) * span as f64 / conversations;
    Duration((per_slot - MIX_CONVERSATION_NS).max(50e6) as u64)
}

/// An attack capture held in memory, for tests.
#[derive(Clone, Debug)]
pub struct AttacksCapture {
    /// The capture file's bytes.
    pub capture: Vec<u8>,
    /// The attack truth.
    pub truth: Vec<AttackTruth>,
    /// The intel list as written.
    pub intel: String,
    /// The benign flows' truth (as `outpost gen mix --truth` writes it).
    pub benign_truth: Vec<FlowTruth>,
    /// What was written.
    pub summary: AttacksSummary,
}

/// Generates into memory: capture bytes, parsed truths and the intel list.
///
/// # Errors
/// As [`generate`].
pub fn generate_in_memory(params: &AttacksParams) -> Result<AttacksCapture, AttackError> {
    let mut capture = Vec::new();
    let mut truth = Vec::new();
    let mut intel = Vec::new();
    let mut benign = Vec::new();
    let summary = generate_with_benign_truth(
        params,
        &mut capture,
        Some(&mut truth),
        Some(&mut intel),
        Some(&mut benign),
    )?;
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    Ok(AttacksCapture {
        capture,
        truth: read_attack_truth(truth.as_slice()).map_err(|e| invalid(e.to_string()))?,
        intel: String::from_utf8(intel).map_err(|e| invalid(e.to_string()))?,
        benign_truth: mix::read_flow_truth(benign.as_slice()).map_err(|e| invalid(e.to_string()))?,
        summary,
    })
}

/// Generates the attack scenario: the capture (Ethernet frames) to `capture`, one JSON line
/// per attack and rule to `truth`, the intel list to `intel` (see the module docs). Writers
/// are buffered here; pass them unbuffered.
///
/// # Errors
/// [`AttackError::Params`] before anything is written, [`AttackError::Benign`] when the mix
/// cannot run (too few clients for its flows), or the first I/O error.
pub fn generate<W: Write, T: Write, I: Write>(
    params: &AttacksParams,
    capture: W,
    truth: Option<T>,
    intel: Option<I>,
) -> Result<AttacksSummary, AttackError> {
    generate_with_benign_truth(params, capture, truth, intel, None::<io::Sink>)
}

/// [`generate`], also writing the benign flows' truth (the mix scenario's format) to
/// `benign_truth`.
///
/// # Errors
/// As [`generate`].
pub fn generate_with_benign_truth<W: Write, T: Write, I: Write, B: Write>(
    params: &AttacksParams,
    capture: W,
    truth: Option<T>,
    intel: Option<I>,
    benign_truth: Option<B>,
) -> Result<AttacksSummary, AttackError> {
    params.validate()?;
    let run = plan_run(params)?;
    if let Some(i) = intel {
        let mut w = BufWriter::new(i);
        run.intel.write_to(&mut w, params.seed())?;
        w.into_inner().map_err(io::IntoInnerError::into_error)?.flush()?;
    }

    let format = params.format();
    let usec = format == (OutputFormat::Pcap { nanos: false });
    let mut benign = params.benign.clone();
    // The mix writes classic pcap to the merge, at the resolution the output keeps, so its
    // truth carries the output's timestamps.
    benign.format = OutputFormat::Pcap { nanos: !usec };
    if params.stretch_benign {
        let span = run.last.saturating_sub(params.start().0) + 60_000_000_000;
        benign.mean_gap = stretched_gap(&benign, span);
    }

    let kinds: Vec<AttackKind> = run.attacks.iter().map(|(k, _)| *k).collect();
    let mut scripts = Vec::new();
    let mut described = Vec::with_capacity(run.attacks.len());
    for (kind, planned) in run.attacks {
        described.push((kind, planned.attacker, planned.target, planned.port));
        scripts.extend(planned.scripts);
    }
    let out = CaptureWriter::new(capture, format, LinkType::Ethernet)?;
    let emitter = Emitter::new(&mut Random::attack(params.seed(), 1));
    let mut sink =
        MergeSink::new(out, AttackStream::new(scripts), emitter, if usec { 1_000 } else { 1 }, kinds.len());
    let benign_summary = mix::generate(&benign, &mut sink, benign_truth)?;
    let (out, tally, peak_pending) = sink.finish()?;
    out.finish()?;

    let mut truth = truth.map(BufWriter::new);
    let mut lines = 0;
    let mut attacks = Vec::with_capacity(described.len());
    for (i, (kind, attacker, target, port)) in described.into_iter().enumerate() {
        let spans = tally.spans.get(i).copied().unwrap_or([None; 3]);
        let mut named = None;
        for &rule in kind.rules() {
            let phases: &[u8] = match rule {
                DetectionRule::BruteForceThenSession => &[phase::MAIN, phase::SECOND],
                DetectionRule::VolumeBaselineBytes | DetectionRule::VolumeBaselinePackets => &[phase::SECOND],
                _ => &[phase::MAIN],
            };
            let window = phases
                .iter()
                .filter_map(|&p| spans.get(usize::from(p)).copied().flatten())
                .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)));
            let Some((start, end)) = window else { continue };
            let record = AttackTruth {
                attack: kind,
                rule,
                attacker: if rule.names_target() { None } else { attacker },
                target,
                port,
                start: Nanos(start).to_string(),
                start_ns: start,
                end: Nanos(end).to_string(),
                end_ns: end,
            };
            named = record.named();
            if let Some(t) = truth.as_mut() {
                record.write_line(t)?;
            }
            lines += 1;
        }
        let packets = tally.per_attack.get(i).copied().unwrap_or(0);
        attacks.push(AttackOutcome { kind, packets, named });
    }
    if let Some(t) = truth {
        t.into_inner().map_err(io::IntoInnerError::into_error)?.flush()?;
    }
    Ok(AttacksSummary {
        packets: tally.packets,
        attack_packets: tally.attack_packets,
        frame_bytes: tally.frame_bytes,
        truth_lines: lines,
        intel_entries: run.intel.len() as u64,
        benign: benign_summary,
        benign_mean_gap: benign.mean_gap,
        attacks,
        first_ts: tally.first_ts.map(Nanos),
        last_ts: tally.last_ts.map(Nanos),
        peak_pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_params_are_rejected_before_writing() {
        let base = AttacksParams::default();
        let cases = [
            (AttacksParams { attacks: vec![], ..base.clone() }, "no attack"),
            (AttacksParams { attacks: vec![AttackKind::SynScan; 101], ..base.clone() }, "at most 100"),
            (AttacksParams { ipv6_fraction: 2.0, ..base.clone() }, "ipv6-fraction"),
            (
                AttacksParams { benign: MixParams { clients: 0, ..base.benign.clone() }, ..base.clone() },
                "clients",
            ),
        ];
        for (p, needle) in cases {
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
            let mut out = Vec::new();
            assert!(generate(&p, &mut out, None::<io::Sink>, None::<io::Sink>).is_err());
            assert!(out.is_empty());
        }
    }

    #[test]
    fn the_stretched_gap_follows_the_span() {
        let benign = MixParams { flows: 20_000, ..MixParams::default() };
        let g = stretched_gap(&benign, 1_800_000_000_000);
        // 256 slots × 1800 s / ~19,230 conversations ≈ 24 s per conversation, less its length.
        assert!((17e9..20e9).contains(&(g.0 as f64)), "{g:?}");
        assert_eq!(stretched_gap(&benign, 0), Duration::from_millis(50));
    }

    #[test]
    fn attacks_follow_each_other_with_the_gap() {
        let p = AttacksParams { ipv6_fraction: 0.5, ..AttacksParams::default() };
        let run = plan_run(&p).unwrap();
        assert_eq!(run.attacks.len(), AttackKind::ALL.len());
        let mut attackers = std::collections::HashSet::new();
        for (kind, planned) in &run.attacks {
            if let Some(a) = planned.attacker {
                assert!(attackers.insert(a), "{kind}: attacker {a} reused");
            }
            assert!(planned.end <= planned.last, "{kind}");
        }
        assert!(run.intel.len() > 300);
        // Scans take seconds to minutes, brute forces a few minutes, the volume spike needs a
        // quarter of an hour of history: the whole run is about half an hour.
        let minutes = (run.last - p.start().0) / 60_000_000_000;
        assert!((15..60).contains(&minutes), "{minutes} min");
    }
}
