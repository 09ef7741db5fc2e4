//! Ground truth of the attack scenario: the attack kinds, the default rules they are aimed at
//! (names, keys, windows and thresholds of docs/DETECTION.md), and one JSON line per attack and
//! rule that must alert, written after the capture and read back for tests.
//!
//! A line looks like (one line in the file, wrapped here):
//!
//! ```json
//! {"attack":"syn-scan","rule":"scan-vertical-tcp","attacker":"203.0.113.77",
//!  "target":"192.168.1.12","port":null,"start":"2026-01-01T00:01:00.000000000Z",
//!  "start_ns":1767225660000000000,"end":"2026-01-01T00:01:02.310000000Z",
//!  "end_ns":1767225662310000000}
//! ```
//!
//! # Which address the alert names
//!
//! `attacker` is the address the alert must name, as `src_ip` — or as `dst_ip` for
//! `scan-vertical-udp`, whose key is (scanned host, scanner) and whose alert names the scanner
//! (the destination of the ICMP port unreachables). The flood rules (`syn-flood`,
//! `icmp-flood`, `udp-flood`) are keyed by `dst_ip` alone: their `attacker` is `null` (the
//! sources are spoofed) and the alert names `target`, the victim. [`AttackTruth::named`]
//! gives the address either way.
//!
//! `start` / `end` are the first and last packet of the attack's part the rule sees (for a
//! volume spike: the spike; for the session rule after a brute force: from the first attempt
//! to the end of the session); the alert must come between `start_ns` and `end_ns` plus the
//! rule's window ([`DetectionRule::window`]).

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;

use outpost_decode::{Duration, Nanos};
use serde::{Deserialize, Serialize};

/// An attack the scenario can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// nmap -sS: SYNs to many ports of one host; SYN-ACK from open ports (the scanner then
    /// resets), RST-ACK from closed ones.
    SynScan,
    /// nmap -sT: full handshakes with open ports, each reset at once; RST-ACK from closed ones.
    ConnectScan,
    /// nmap -sF: FIN probes; closed ports answer RST-ACK, open ones stay silent.
    FinScan,
    /// nmap -sN: probes without any flag.
    NullScan,
    /// nmap -sX: FIN+PSH+URG probes.
    XmasScan,
    /// nmap -sU: UDP probes; closed ports answer ICMP/ICMPv6 port unreachable, rate-limited.
    UdpScan,
    /// One port across the hosts of a /24 (IPv6: hosts ::1..::254 of a /64).
    HorizontalScan,
    /// fping over a /26: echo requests to every host, retried for silent ones.
    PingSweep,
    /// nmap -sn on the scanner's own segment: ARP requests (IPv6: neighbor solicitations) for
    /// every host of its /24, answered by the live ones.
    NeighborSweep,
    /// SYNs from spoofed sources to one port of one victim, answered by SYN cookies.
    SynFlood,
    /// Echo requests from spoofed sources to one victim, each answered.
    IcmpFlood,
    /// UDP datagrams from spoofed sources to random ports of one victim; port unreachables at
    /// the victim's global ICMP rate limit.
    UdpFlood,
    /// Many short SSH sessions (handshake, banners, key exchange, failed logins, close).
    SshBruteForce,
    /// Many short RDP sessions (X.224, TLS, CredSSP/NTLM failure, close).
    RdpBruteForce,
    /// Many short FTP, MySQL or IMAP sessions with failed logins.
    LoginBruteForce,
    /// An SSH brute force, then a long interactive session from the same source.
    BruteForceThenSession,
    /// A benign-looking HTTPS connection to or from an address on the intel list.
    IntelContact,
    /// A host with steady traffic for a quarter of an hour sends over ten times its usual
    /// bytes and packets in one minute.
    VolumeSpike,
}

impl AttackKind {
    /// Every kind, in the order `all` runs them.
    pub const ALL: [AttackKind; 18] = [
        AttackKind::SynScan,
        AttackKind::ConnectScan,
        AttackKind::FinScan,
        AttackKind::NullScan,
        AttackKind::XmasScan,
        AttackKind::UdpScan,
        AttackKind::HorizontalScan,
        AttackKind::PingSweep,
        AttackKind::NeighborSweep,
        AttackKind::SynFlood,
        AttackKind::IcmpFlood,
        AttackKind::UdpFlood,
        AttackKind::SshBruteForce,
        AttackKind::RdpBruteForce,
        AttackKind::LoginBruteForce,
        AttackKind::BruteForceThenSession,
        AttackKind::IntelContact,
        AttackKind::VolumeSpike,
    ];

    /// The kebab-case name used in the truth file and on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            AttackKind::SynScan => "syn-scan",
            AttackKind::ConnectScan => "connect-scan",
            AttackKind::FinScan => "fin-scan",
            AttackKind::NullScan => "null-scan",
            AttackKind::XmasScan => "xmas-scan",
            AttackKind::UdpScan => "udp-scan",
            AttackKind::HorizontalScan => "horizontal-scan",
            AttackKind::PingSweep => "ping-sweep",
            AttackKind::NeighborSweep => "neighbor-sweep",
            AttackKind::SynFlood => "syn-flood",
            AttackKind::IcmpFlood => "icmp-flood",
            AttackKind::UdpFlood => "udp-flood",
            AttackKind::SshBruteForce => "ssh-brute-force",
            AttackKind::RdpBruteForce => "rdp-brute-force",
            AttackKind::LoginBruteForce => "login-brute-force",
            AttackKind::BruteForceThenSession => "brute-force-then-session",
            AttackKind::IntelContact => "intel-contact",
            AttackKind::VolumeSpike => "volume-spike",
        }
    }

    /// The kind with this name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<AttackKind> {
        AttackKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Position in [`AttackKind::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The default rules that must alert, one truth line each.
    #[must_use]
    pub const fn rules(self) -> &'static [DetectionRule] {
        match self {
            AttackKind::SynScan | AttackKind::ConnectScan => &[DetectionRule::ScanVerticalTcp],
            AttackKind::FinScan | AttackKind::NullScan | AttackKind::XmasScan => {
                &[DetectionRule::ScanTcpStealth]
            }
            AttackKind::UdpScan => &[DetectionRule::ScanVerticalUdp],
            AttackKind::HorizontalScan => &[DetectionRule::ScanHorizontal],
            AttackKind::PingSweep => &[DetectionRule::PingSweep],
            AttackKind::NeighborSweep => &[DetectionRule::NeighborSweep],
            AttackKind::SynFlood => &[DetectionRule::SynFlood],
            AttackKind::IcmpFlood => &[DetectionRule::IcmpFlood],
            AttackKind::UdpFlood => &[DetectionRule::UdpFlood],
            AttackKind::SshBruteForce => &[DetectionRule::SshBruteForce],
            AttackKind::RdpBruteForce => &[DetectionRule::RdpBruteForce],
            AttackKind::LoginBruteForce => &[DetectionRule::LoginBruteForce],
            AttackKind::BruteForceThenSession => {
                &[DetectionRule::SshBruteForce, DetectionRule::BruteForceThenSession]
            }
            AttackKind::IntelContact => &[DetectionRule::IntelMatch],
            AttackKind::VolumeSpike => {
                &[DetectionRule::VolumeBaselineBytes, DetectionRule::VolumeBaselinePackets]
            }
        }
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule of the default ruleset (docs/DETECTION.md) that an attack is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectionRule {
    /// Distinct `dst_port` of SYNs without ACK per (`src_ip`, `dst_ip`) ≥ 50 in 60 s.
    ScanVerticalTcp,
    /// Distinct `dst_port` of FIN, NULL or FIN+PSH+URG probes per (`src_ip`, `dst_ip`) ≥ 10
    /// in 60 s.
    ScanTcpStealth,
    /// ICMP/ICMPv6 port unreachables per (scanned host, scanner) ≥ 20 in 60 s.
    ScanVerticalUdp,
    /// Distinct `dst_ip` of SYNs without ACK or UDP per (`src_ip`, `dst_port`) ≥ 64 in 60 s.
    ScanHorizontal,
    /// Distinct `dst_ip` of echo requests per `src_ip` ≥ 20 in 60 s.
    PingSweep,
    /// Distinct `dst_ip` of ARP requests and neighbor solicitations per `src_ip` ≥ 100 in 5 s.
    NeighborSweep,
    /// SYNs without ACK per `dst_ip` ≥ 20,000 in 10 s.
    SynFlood,
    /// ICMP/ICMPv6 packets other than echo replies per `dst_ip` ≥ 20,000 in 10 s.
    IcmpFlood,
    /// UDP packets per `dst_ip` ≥ 50,000 in 10 s.
    UdpFlood,
    /// Short completed TCP flows to port 22 per (`src_ip`, `dst_ip`) ≥ 10 in 5 min.
    SshBruteForce,
    /// Short completed TCP flows to port 3389 per (`src_ip`, `dst_ip`) ≥ 10 in 5 min.
    RdpBruteForce,
    /// Short completed flows to a login service per (`src_ip`, `dst_ip`, `dst_port`) ≥ 15 in
    /// 5 min.
    LoginBruteForce,
    /// A brute-force alert, then a long session (≥ 60 s or ≥ 100 kB) of the same pair within
    /// 1 h.
    BruteForceThenSession,
    /// Any packet to or from an address on an intel list.
    IntelMatch,
    /// A host's bytes per 60 s interval above mean + 3σ after 10 intervals of warm-up.
    VolumeBaselineBytes,
    /// A host's packets per 60 s interval above mean + 3σ after 10 intervals of warm-up.
    VolumeBaselinePackets,
}

impl DetectionRule {
    /// The rule's name in the default ruleset.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            DetectionRule::ScanVerticalTcp => "scan-vertical-tcp",
            DetectionRule::ScanTcpStealth => "scan-tcp-stealth",
            DetectionRule::ScanVerticalUdp => "scan-vertical-udp",
            DetectionRule::ScanHorizontal => "scan-horizontal",
            DetectionRule::PingSweep => "ping-sweep",
            DetectionRule::NeighborSweep => "neighbor-sweep",
            DetectionRule::SynFlood => "syn-flood",
            DetectionRule::IcmpFlood => "icmp-flood",
            DetectionRule::UdpFlood => "udp-flood",
            DetectionRule::SshBruteForce => "ssh-brute-force",
            DetectionRule::RdpBruteForce => "rdp-brute-force",
            DetectionRule::LoginBruteForce => "login-brute-force",
            DetectionRule::BruteForceThenSession => "brute-force-then-session",
            DetectionRule::IntelMatch => "intel-match",
            DetectionRule::VolumeBaselineBytes => "volume-baseline-bytes",
            DetectionRule::VolumeBaselinePackets => "volume-baseline-packets",
        }
    }

    /// The window the rule counts over (the interval for volume baselines; 0 for intel
    /// matches, which alert on the packet).
    #[must_use]
    pub const fn window(self) -> Duration {
        match self {
            DetectionRule::ScanVerticalTcp
            | DetectionRule::ScanTcpStealth
            | DetectionRule::ScanVerticalUdp
            | DetectionRule::ScanHorizontal
            | DetectionRule::PingSweep
            | DetectionRule::VolumeBaselineBytes
            | DetectionRule::VolumeBaselinePackets => Duration::from_secs(60),
            DetectionRule::SynFlood | DetectionRule::IcmpFlood | DetectionRule::UdpFlood => {
                Duration::from_secs(10)
            }
            DetectionRule::SshBruteForce | DetectionRule::RdpBruteForce | DetectionRule::LoginBruteForce => {
                Duration::from_secs(300)
            }
            DetectionRule::NeighborSweep => Duration::from_secs(5),
            DetectionRule::BruteForceThenSession => Duration::from_secs(3600),
            DetectionRule::IntelMatch => Duration::ZERO,
        }
    }

    /// The default threshold: the count (distinct ports, hosts, packets or flows) the window
    /// must reach. 1 for intel matches; 0 for volume baselines, which compare with mean + 3σ
    /// instead.
    #[must_use]
    pub const fn threshold(self) -> u64 {
        match self {
            DetectionRule::ScanVerticalTcp => 50,
            DetectionRule::ScanTcpStealth => 10,
            DetectionRule::ScanVerticalUdp => 20,
            DetectionRule::ScanHorizontal => 64,
            DetectionRule::PingSweep => 20,
            DetectionRule::NeighborSweep => 100,
            DetectionRule::SynFlood | DetectionRule::IcmpFlood => 20_000,
            DetectionRule::UdpFlood => 50_000,
            DetectionRule::SshBruteForce | DetectionRule::RdpBruteForce => 10,
            DetectionRule::LoginBruteForce => 15,
            DetectionRule::BruteForceThenSession | DetectionRule::IntelMatch => 1,
            DetectionRule::VolumeBaselineBytes | DetectionRule::VolumeBaselinePackets => 0,
        }
    }

    /// The volume baselines' floor (`min_value` of the default rule): bytes or packets in
    /// the interval below which no anomaly is raised; 0 for other rules.
    #[must_use]
    pub const fn floor(self) -> u64 {
        match self {
            DetectionRule::VolumeBaselineBytes => 20_000_000,
            DetectionRule::VolumeBaselinePackets => 20_000,
            _ => 0,
        }
    }

    /// True for the rules keyed by the victim (`dst_ip`) alone: the floods.
    #[must_use]
    pub const fn names_target(self) -> bool {
        matches!(self, DetectionRule::SynFlood | DetectionRule::IcmpFlood | DetectionRule::UdpFlood)
    }
}

impl fmt::Display for DetectionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One attack and one rule that must alert on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackTruth {
    /// What was injected.
    pub attack: AttackKind,
    /// The rule that must alert.
    pub rule: DetectionRule,
    /// The address the alert names (as `src_ip`, or `dst_ip` for `scan-vertical-udp`);
    /// `null` for floods, whose spoofed sources are not in the key.
    pub attacker: Option<IpAddr>,
    /// The attacked host: the scanned host, the flood victim (named by flood alerts), the
    /// brute-forced server, the internal end of an intel contact, the exfiltration
    /// destination of a volume spike; `null` for horizontal scans and ping sweeps, which
    /// target a network.
    pub target: Option<IpAddr>,
    /// The destination port in the rule's key or the attacked service's port; `null` when
    /// the attack covers many ports or none.
    pub port: Option<u16>,
    /// First packet, RFC 3339 UTC with nine fractional digits.
    pub start: String,
    /// First packet, ns since the Unix epoch.
    pub start_ns: u64,
    /// Last packet, RFC 3339.
    pub end: String,
    /// Last packet, ns since the Unix epoch.
    pub end_ns: u64,
}

impl AttackTruth {
    /// The address the alert names: `target` for floods, `attacker` otherwise.
    #[must_use]
    pub fn named(&self) -> Option<IpAddr> {
        if self.rule.names_target() { self.target } else { self.attacker }
    }

    /// Time of the first packet.
    #[must_use]
    pub fn start_time(&self) -> Nanos {
        Nanos(self.start_ns)
    }

    /// Time of the last packet.
    #[must_use]
    pub fn end_time(&self) -> Nanos {
        Nanos(self.end_ns)
    }

    /// The latest an alert may come: `end` plus the rule's window.
    #[must_use]
    pub fn deadline(&self) -> Nanos {
        Nanos(self.end_ns.saturating_add(self.rule.window().0))
    }

    /// Writes the record as one JSON line.
    ///
    /// # Errors
    /// Any I/O error of `out`.
    pub fn write_line<W: Write>(&self, mut out: W) -> io::Result<()> {
        serde_json::to_writer(&mut out, self)?;
        out.write_all(b"\n")
    }
}

/// Why an attack truth file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AttackTruthError {
    /// Reading failed.
    #[error("reading attack truth: {0}")]
    Io(#[from] io::Error),
    /// A line is not an attack truth record.
    #[error("attack truth line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        source: serde_json::Error,
    },
}

/// Reads every record of a JSON-lines attack truth stream, skipping blank lines.
///
/// # Errors
/// An I/O error, or the first line that is not an [`AttackTruth`].
pub fn read_attack_truth<R: BufRead>(reader: R) -> Result<Vec<AttackTruth>, AttackTruthError> {
    crate::jsonl::read_json_lines(reader, |line, source| AttackTruthError::Parse { line, source })
}

/// Reads an attack truth file written by the generator (`--truth FILE`).
///
/// # Errors
/// As [`read_attack_truth`], or the file cannot be opened.
pub fn read_attack_truth_file(path: &Path) -> Result<Vec<AttackTruth>, AttackTruthError> {
    read_attack_truth(BufReader::new(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AttackTruth {
        let start = Nanos::from_secs(1_767_225_660);
        let end = Nanos::from_parts(1_767_225_662, 310_000_000);
        AttackTruth {
            attack: AttackKind::SynScan,
            rule: DetectionRule::ScanVerticalTcp,
            attacker: Some("203.0.113.77".parse().unwrap()),
            target: Some("192.168.1.12".parse().unwrap()),
            port: None,
            start: start.to_string(),
            start_ns: start.0,
            end: end.to_string(),
            end_ns: end.0,
        }
    }

    #[test]
    fn line_matches_the_documented_example() {
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"attack\":\"syn-scan\",\"rule\":\"scan-vertical-tcp\",\"attacker\":\"203.0.113.77\",\
             \"target\":\"192.168.1.12\",\"port\":null,\"start\":\"2026-01-01T00:01:00.000000000Z\",\
             \"start_ns\":1767225660000000000,\"end\":\"2026-01-01T00:01:02.310000000Z\",\
             \"end_ns\":1767225662310000000}\n"
        );
    }

    #[test]
    fn records_round_trip_and_floods_name_the_target() {
        let mut flood = sample();
        flood.attack = AttackKind::SynFlood;
        flood.rule = DetectionRule::SynFlood;
        flood.attacker = None;
        flood.port = Some(443);
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        out.extend_from_slice(b"\n");
        flood.write_line(&mut out).unwrap();
        let got = read_attack_truth(out.as_slice()).unwrap();
        assert_eq!(got, vec![sample(), flood.clone()]);
        assert_eq!(got[0].named(), got[0].attacker);
        assert_eq!(got[1].named(), flood.target);
        assert_eq!(got[1].deadline().0, flood.end_ns + 10_000_000_000);
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in AttackKind::ALL {
            assert_eq!(AttackKind::from_name(k.name()), Some(k));
            assert_eq!(AttackKind::ALL[k.index()], k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.name()));
            for r in k.rules() {
                assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{}\"", r.name()));
            }
        }
        assert!(read_attack_truth(&b"{\"attack\":\"syn-scan\"}\n"[..]).is_err());
    }
}
