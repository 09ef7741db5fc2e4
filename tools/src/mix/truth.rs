//! Ground truth of the mix scenario: one record per flow, written as JSON lines when the flow's
//! last packet has been written, and read back for tests.
//!
//! A line looks like (one line in the file, wrapped here):
//!
//! ```json
//! {"flow":17,"kind":"tcp_complete","proto":6,"vlans":[],"initiator":"10.1.7.9",
//!  "initiator_port":40001,"responder":"192.168.1.10","responder_port":443,"fwd_packets":9,
//!  "fwd_bytes":1012,"rev_packets":8,"rev_bytes":5640,"fragments":0,
//!  "first":"2026-01-01T00:00:00.000123456Z","first_ns":1767225600000123456,
//!  "last":"2026-01-01T00:00:00.210000000Z","last_ns":1767225600210000000}
//! ```
//!
//! ICMP flows have ports 0 and carry `icmp_type` / `icmp_code` of their first packet.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;

use outpost_decode::Nanos;
use serde::{Deserialize, Serialize};

/// What kind of conversation a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    /// TCP: three-way handshake, request/response rounds, FIN from both sides and the last ACK.
    TcpComplete,
    /// TCP that never completes its handshake: SYN only (with retransmissions), or SYN and
    /// SYN-ACK (with retransmissions) and no ACK. Also the SYNs an ICMP error answers.
    TcpHalfOpen,
    /// TCP ended by a reset: SYN answered by RST-ACK (port closed), or an RST in the middle of
    /// a response after a completed handshake.
    TcpReset,
    /// UDP that is never fragmented: DNS query/response, NTP exchanges, syslog messages, and
    /// the datagrams an ICMP error answers.
    Udp,
    /// UDP with IPv4 or IPv6 fragmented datagrams: EDNS DNS answers above the path MTU, or large
    /// syslog messages.
    FragmentedUdp,
    /// ICMP / ICMPv6 echo requests and their replies (one flow per host pair).
    IcmpEcho,
    /// ICMP destination unreachable / ICMPv6 unreachable messages from a router or host to a
    /// client, one-way.
    IcmpUnreach,
}

impl FlowKind {
    /// Every kind, in the order of [`FlowKind::index`].
    pub const ALL: [FlowKind; 7] = [
        FlowKind::TcpComplete,
        FlowKind::TcpHalfOpen,
        FlowKind::TcpReset,
        FlowKind::Udp,
        FlowKind::FragmentedUdp,
        FlowKind::IcmpEcho,
        FlowKind::IcmpUnreach,
    ];

    /// The snake_case name used in the truth file and on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            FlowKind::TcpComplete => "tcp_complete",
            FlowKind::TcpHalfOpen => "tcp_half_open",
            FlowKind::TcpReset => "tcp_reset",
            FlowKind::Udp => "udp",
            FlowKind::FragmentedUdp => "fragmented_udp",
            FlowKind::IcmpEcho => "icmp_echo",
            FlowKind::IcmpUnreach => "icmp_unreach",
        }
    }

    /// Position in [`FlowKind::ALL`] (an index into per-kind arrays).
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The kind with this name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<FlowKind> {
        FlowKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for FlowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One flow: a bidirectional conversation on one 5-tuple (plus VLAN), as a flow meter that
/// keys ICMP by Community ID port equivalents and follows fragments sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTruth {
    /// Serial number, in the order flows start (from 1). Unique in a file.
    pub flow: u64,
    /// What the conversation is.
    pub kind: FlowKind,
    /// IP protocol number (6, 17, 1 or 58).
    pub proto: u8,
    /// VLAN ids of every packet, outermost first; empty when untagged.
    pub vlans: Vec<u16>,
    /// The endpoint that sent the first packet (for TCP, the SYN).
    pub initiator: IpAddr,
    /// Its port (0 for ICMP).
    pub initiator_port: u16,
    /// The other endpoint.
    pub responder: IpAddr,
    /// Its port (0 for ICMP).
    pub responder_port: u16,
    /// ICMP / ICMPv6 type of the first packet (ICMP flows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP / ICMPv6 code of the first packet (ICMP flows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Packets initiator → responder.
    pub fwd_packets: u64,
    /// Bytes initiator → responder: the sum of IP total lengths (IPv6: 40 + payload length).
    pub fwd_bytes: u64,
    /// Packets responder → initiator.
    pub rev_packets: u64,
    /// Bytes responder → initiator.
    pub rev_bytes: u64,
    /// How many of the packets (both directions) are IP fragments.
    pub fragments: u64,
    /// Time of the first packet, RFC 3339 UTC with nine fractional digits.
    pub first: String,
    /// Time of the first packet, nanoseconds since the Unix epoch.
    pub first_ns: u64,
    /// Time of the last packet, RFC 3339.
    pub last: String,
    /// Time of the last packet, nanoseconds since the Unix epoch.
    pub last_ns: u64,
}

impl FlowTruth {
    /// Time of the first packet.
    #[must_use]
    pub fn first_time(&self) -> Nanos {
        Nanos(self.first_ns)
    }

    /// Time of the last packet.
    #[must_use]
    pub fn last_time(&self) -> Nanos {
        Nanos(self.last_ns)
    }

    /// Packets in both directions.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.fwd_packets + self.rev_packets
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

/// Why a truth file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlowTruthError {
    /// Reading failed.
    #[error("reading flow truth: {0}")]
    Io(#[from] io::Error),
    /// A line is not a flow truth record.
    #[error("flow truth line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong with it.
        source: serde_json::Error,
    },
}

/// Reads every record of a JSON-lines flow truth stream, skipping blank lines.
///
/// # Errors
/// An I/O error, or the first line that is not a [`FlowTruth`].
pub fn read_flow_truth<R: BufRead>(reader: R) -> Result<Vec<FlowTruth>, FlowTruthError> {
    crate::jsonl::read_json_lines(reader, |line, source| FlowTruthError::Parse { line, source })
}

/// Reads a flow truth file written by the generator (`--truth FILE`).
///
/// # Errors
/// As [`read_flow_truth`], or the file cannot be opened.
pub fn read_flow_truth_file(path: &Path) -> Result<Vec<FlowTruth>, FlowTruthError> {
    read_flow_truth(BufReader::new(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowTruth {
        let first = Nanos::from_parts(1_767_225_600, 123_456);
        let last = Nanos::from_parts(1_767_225_600, 210_000_000);
        FlowTruth {
            flow: 17,
            kind: FlowKind::TcpComplete,
            proto: 6,
            vlans: vec![],
            initiator: "10.1.7.9".parse().unwrap(),
            initiator_port: 40001,
            responder: "192.168.1.10".parse().unwrap(),
            responder_port: 443,
            icmp_type: None,
            icmp_code: None,
            fwd_packets: 9,
            fwd_bytes: 1012,
            rev_packets: 8,
            rev_bytes: 5640,
            fragments: 0,
            first: first.to_string(),
            first_ns: first.0,
            last: last.to_string(),
            last_ns: last.0,
        }
    }

    #[test]
    fn line_matches_the_documented_example() {
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"flow\":17,\"kind\":\"tcp_complete\",\"proto\":6,\"vlans\":[],\"initiator\":\"10.1.7.9\",\
             \"initiator_port\":40001,\"responder\":\"192.168.1.10\",\"responder_port\":443,\
             \"fwd_packets\":9,\"fwd_bytes\":1012,\"rev_packets\":8,\"rev_bytes\":5640,\"fragments\":0,\
             \"first\":\"2026-01-01T00:00:00.000123456Z\",\"first_ns\":1767225600000123456,\
             \"last\":\"2026-01-01T00:00:00.210000000Z\",\"last_ns\":1767225600210000000}\n"
        );
    }

    #[test]
    fn records_round_trip_with_icmp_fields_and_blank_lines() {
        let mut icmp = sample();
        icmp.kind = FlowKind::IcmpEcho;
        icmp.proto = 1;
        icmp.vlans = vec![2001, 101];
        icmp.icmp_type = Some(8);
        icmp.icmp_code = Some(0);
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        out.extend_from_slice(b"\n \n");
        icmp.write_line(&mut out).unwrap();
        let got = read_flow_truth(out.as_slice()).unwrap();
        assert_eq!(got, vec![sample(), icmp]);
        assert_eq!(got[1].packets(), 17);
    }

    #[test]
    fn kinds_round_trip_by_name_and_bad_lines_name_their_number() {
        for k in FlowKind::ALL {
            assert_eq!(FlowKind::from_name(k.name()), Some(k));
            assert_eq!(FlowKind::ALL[k.index()], k);
        }
        assert_eq!(FlowKind::from_name("sctp"), None);
        let mut out = Vec::new();
        sample().write_line(&mut out).unwrap();
        out.extend_from_slice(b"{\"flow\":1}\n");
        match read_flow_truth(out.as_slice()) {
            Err(FlowTruthError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }
}
