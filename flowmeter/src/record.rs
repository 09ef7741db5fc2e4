//! Flow records: what the flow meter exports, and their JSON form.
//!
//! A record describes one bidirectional flow (RFC 5103) over one *reporting period*: the whole
//! flow, or — for a long-lived flow — the time since its previous record (an interim record
//! every active timeout, with delta counters and the same `flow_id`). "Forward" is the
//! initiator's direction: the endpoint that sent the first packet, or the SYN when the first
//! packet seen was a SYN-ACK (or a pure SYN arrived from the other side).

use outpost_decode::{IpAddress, Nanos};
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::key::community_id;

/// Why a record was exported. Codes are IPFIX `flowEndReason` (IE 136) where one fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// No packet for the idle timeout (IPFIX 0x01).
    IdleTimeout,
    /// An interim record of a flow still active after the active timeout (IPFIX 0x02); the
    /// flow goes on with the same id.
    ActiveTimeout,
    /// Both sides sent a TCP FIN (IPFIX 0x03, end of flow detected).
    TcpFin,
    /// A TCP RST was seen (IPFIX 0x03, end of flow detected).
    TcpRst,
    /// Evicted to make room in a full flow table (IPFIX 0x05, lack of resources).
    Evicted,
    /// The input ended or the sensor shut down (IPFIX 0x04, forced end).
    EndOfInput,
}

impl EndReason {
    /// The snake_case name used in JSON.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::ActiveTimeout => "active_timeout",
            EndReason::TcpFin => "tcp_fin",
            EndReason::TcpRst => "tcp_rst",
            EndReason::Evicted => "evicted",
            EndReason::EndOfInput => "end_of_input",
        }
    }

    /// The IPFIX `flowEndReason` code.
    #[must_use]
    pub fn ipfix_code(self) -> u8 {
        match self {
            EndReason::IdleTimeout => 0x01,
            EndReason::ActiveTimeout => 0x02,
            EndReason::TcpFin | EndReason::TcpRst => 0x03,
            EndReason::EndOfInput => 0x04,
            EndReason::Evicted => 0x05,
        }
    }

    /// Every reason, in counter order.
    pub const ALL: [EndReason; 6] = [
        EndReason::IdleTimeout,
        EndReason::ActiveTimeout,
        EndReason::TcpFin,
        EndReason::TcpRst,
        EndReason::Evicted,
        EndReason::EndOfInput,
    ];

    /// Index into per-reason counters.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Counters of one direction over the record's period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    /// Packets.
    pub packets: u64,
    /// Bytes: the sum of IP total lengths (IPFIX `octetDeltaCount`).
    pub bytes: u64,
    /// Union of TCP flags (FIN 0x01 … CWR 0x80).
    pub tcp_flags: u8,
    /// Time of the first packet (zero when `packets == 0`).
    pub first: Nanos,
    /// Time of the last packet (zero when `packets == 0`).
    pub last: Nanos,
    /// Smallest TTL / hop limit seen (0 when no packet).
    pub min_ttl: u8,
    /// Largest TTL / hop limit seen.
    pub max_ttl: u8,
}

/// One exported flow record. `Copy`, no heap data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Unique within the sensor; the same for every record of one flow.
    pub flow_id: u64,
    /// Interim record number: 0 for the first record of a flow, then 1, 2, …
    pub sequence: u16,
    /// Initiator address.
    pub src: IpAddress,
    /// Responder address.
    pub dst: IpAddress,
    /// Initiator port (0 for protocols without ports, and for ICMP).
    pub src_port: u16,
    /// Responder port.
    pub dst_port: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Outer VLAN id (0 when untagged).
    pub vlan: u16,
    /// ICMP / ICMPv6 type of the first packet (0 otherwise).
    pub icmp_type: u8,
    /// ICMP / ICMPv6 code of the first packet.
    pub icmp_code: u8,
    /// DSCP of the first packet (upper six bits of the TOS / traffic class byte).
    pub dscp: u8,
    /// Initiator → responder.
    pub fwd: DirectionCounters,
    /// Responder → initiator.
    pub rev: DirectionCounters,
    /// Why the record was exported.
    pub end_reason: EndReason,
}

impl FlowRecord {
    /// First packet of the period (either direction).
    #[must_use]
    pub fn start(&self) -> Nanos {
        match (self.fwd.packets, self.rev.packets) {
            (0, _) => self.rev.first,
            (_, 0) => self.fwd.first,
            _ => self.fwd.first.min(self.rev.first),
        }
    }

    /// Last packet of the period (either direction).
    #[must_use]
    pub fn end(&self) -> Nanos {
        self.fwd.last.max(self.rev.last)
    }

    /// Community ID v1 of the flow (seed 0).
    #[must_use]
    pub fn community_id(&self) -> String {
        match self.proto {
            1 | 58 => community_id(
                self.src,
                u16::from(self.icmp_type),
                self.dst,
                u16::from(self.icmp_code),
                self.proto,
            ),
            _ => community_id(self.src, self.src_port, self.dst, self.dst_port, self.proto),
        }
    }
}

/// A flow record with what is needed to write it as JSON.
///
/// Field names are IPFIX information-element names (RFC 7012 / IANA registry, RFC 5103 for the
/// `reverse…` ones) wherever one exists:
///
/// | field | meaning |
/// |---|---|
/// | `type` | always `flow` |
/// | `flowId` | unique within the sensor, the same in every record of a flow |
/// | `sequence` | 0 for a flow's first record, then 1, 2, … for interim records |
/// | `sensor` | sensor name |
/// | `sourceIPv4Address` / `sourceIPv6Address` | initiator |
/// | `destinationIPv4Address` / `destinationIPv6Address` | responder |
/// | `sourceTransportPort`, `destinationTransportPort` | ports (0 when none) |
/// | `protocolIdentifier` | IP protocol number |
/// | `vlanId` | outer VLAN id (only when tagged) |
/// | `icmpTypeCodeIPv4` / `icmpTypeCodeIPv6` | `type × 256 + code` of the first packet (ICMP only) |
/// | `ipDiffServCodePoint` | DSCP of the first packet |
/// | `flowStartNanoseconds`, `flowEndNanoseconds` | first and last packet of the period, RFC 3339 |
/// | `flowDurationMilliseconds` | their difference |
/// | `packetDeltaCount`, `octetDeltaCount` | initiator → responder (octets: IP total lengths) |
/// | `reversePacketDeltaCount`, `reverseOctetDeltaCount` | responder → initiator |
/// | `tcpControlBits`, `reverseTcpControlBits` | union of TCP flags per direction |
/// | `minimumTTL`, `maximumTTL`, `reverseMinimumTTL`, `reverseMaximumTTL` | TTL range per direction |
/// | `flowEndReason` | `idle_timeout`, `active_timeout`, `tcp_fin`, `tcp_rst`, `evicted`, `end_of_input` |
/// | `community_id` | Community ID v1, as Zeek and Suricata log it |
#[derive(Debug)]
pub struct FlowJson<'a> {
    /// The record.
    pub record: &'a FlowRecord,
    /// Sensor name.
    pub sensor: &'a str,
}

impl FlowJson<'_> {
    /// Appends the record as one JSON object — exactly what serializing it with serde_json
    /// writes (the same fields, order and formatting) — without serde or `core::fmt`:
    /// ~20,000 instructions a record less on the collector thread.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let r = self.record;
        let v4 = r.src.is_v4();
        out.extend_from_slice(b"{\"type\":\"flow\",\"schema_version\":");
        push_u64(out, u64::from(crate::SCHEMA_VERSION));
        out.extend_from_slice(b",\"flowId\":");
        push_u64(out, r.flow_id);
        out.extend_from_slice(b",\"sequence\":");
        push_u64(out, u64::from(r.sequence));
        out.extend_from_slice(b",\"sensor\":");
        push_json_str(out, self.sensor);
        out.extend_from_slice(if v4 { b",\"sourceIPv4Address\":\"" } else { b",\"sourceIPv6Address\":\"" });
        push_ip(out, r.src);
        out.extend_from_slice(if v4 {
            b"\",\"destinationIPv4Address\":\""
        } else {
            b"\",\"destinationIPv6Address\":\""
        });
        push_ip(out, r.dst);
        out.extend_from_slice(b"\",\"sourceTransportPort\":");
        push_u64(out, u64::from(r.src_port));
        out.extend_from_slice(b",\"destinationTransportPort\":");
        push_u64(out, u64::from(r.dst_port));
        out.extend_from_slice(b",\"protocolIdentifier\":");
        push_u64(out, u64::from(r.proto));
        if r.vlan != 0 {
            out.extend_from_slice(b",\"vlanId\":");
            push_u64(out, u64::from(r.vlan));
        }
        let icmp = u64::from(u16::from(r.icmp_type) << 8 | u16::from(r.icmp_code));
        match r.proto {
            1 => {
                out.extend_from_slice(b",\"icmpTypeCodeIPv4\":");
                push_u64(out, icmp);
            }
            58 => {
                out.extend_from_slice(b",\"icmpTypeCodeIPv6\":");
                push_u64(out, icmp);
            }
            _ => {}
        }
        out.extend_from_slice(b",\"ipDiffServCodePoint\":");
        push_u64(out, u64::from(r.dscp));
        let (start, end) = (r.start(), r.end());
        out.extend_from_slice(b",\"flowStartNanoseconds\":\"");
        start.write_rfc3339(out);
        out.extend_from_slice(b"\",\"flowEndNanoseconds\":\"");
        end.write_rfc3339(out);
        out.extend_from_slice(b"\",\"flowDurationMilliseconds\":");
        push_u64(out, end.since(start).as_nanos() / 1_000_000);
        out.extend_from_slice(b",\"packetDeltaCount\":");
        push_u64(out, r.fwd.packets);
        out.extend_from_slice(b",\"octetDeltaCount\":");
        push_u64(out, r.fwd.bytes);
        out.extend_from_slice(b",\"reversePacketDeltaCount\":");
        push_u64(out, r.rev.packets);
        out.extend_from_slice(b",\"reverseOctetDeltaCount\":");
        push_u64(out, r.rev.bytes);
        if r.proto == 6 {
            out.extend_from_slice(b",\"tcpControlBits\":");
            push_u64(out, u64::from(r.fwd.tcp_flags));
            out.extend_from_slice(b",\"reverseTcpControlBits\":");
            push_u64(out, u64::from(r.rev.tcp_flags));
        }
        out.extend_from_slice(b",\"minimumTTL\":");
        push_u64(out, u64::from(r.fwd.min_ttl));
        out.extend_from_slice(b",\"maximumTTL\":");
        push_u64(out, u64::from(r.fwd.max_ttl));
        if r.rev.packets > 0 {
            out.extend_from_slice(b",\"reverseMinimumTTL\":");
            push_u64(out, u64::from(r.rev.min_ttl));
            out.extend_from_slice(b",\"reverseMaximumTTL\":");
            push_u64(out, u64::from(r.rev.max_ttl));
        }
        out.extend_from_slice(b",\"flowEndReason\":\"");
        out.extend_from_slice(r.end_reason.name().as_bytes());
        out.extend_from_slice(b"\",\"community_id\":\"");
        out.extend_from_slice(r.community_id().as_bytes());
        out.extend_from_slice(b"\"}");
    }
}

/// Appends `v` in decimal.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(c) = buf.get_mut(i) {
            *c = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or_default());
}

/// Appends an address as `Display` writes it (dotted quad; IPv6 text form via `core::fmt`).
fn push_ip(out: &mut Vec<u8>, a: IpAddress) {
    if let Some(o) = a.v4_octets() {
        for (k, b) in o.iter().enumerate() {
            if k > 0 {
                out.push(b'.');
            }
            push_u64(out, u64::from(*b));
        }
    } else {
        use std::io::Write;
        let _ = write!(out, "{a}");
    }
}

/// Appends `s` as a JSON string, escaped as serde_json escapes it.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

impl Serialize for FlowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        let v4 = r.src.is_v4();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", "flow")?;
        m.serialize_entry("schema_version", &crate::SCHEMA_VERSION)?;
        m.serialize_entry("flowId", &r.flow_id)?;
        m.serialize_entry("sequence", &r.sequence)?;
        m.serialize_entry("sensor", self.sensor)?;
        m.serialize_entry(if v4 { "sourceIPv4Address" } else { "sourceIPv6Address" }, &r.src)?;
        m.serialize_entry(if v4 { "destinationIPv4Address" } else { "destinationIPv6Address" }, &r.dst)?;
        m.serialize_entry("sourceTransportPort", &r.src_port)?;
        m.serialize_entry("destinationTransportPort", &r.dst_port)?;
        m.serialize_entry("protocolIdentifier", &r.proto)?;
        if r.vlan != 0 {
            m.serialize_entry("vlanId", &r.vlan)?;
        }
        match r.proto {
            1 => m.serialize_entry(
                "icmpTypeCodeIPv4",
                &(u16::from(r.icmp_type) << 8 | u16::from(r.icmp_code)),
            )?,
            58 => m.serialize_entry(
                "icmpTypeCodeIPv6",
                &(u16::from(r.icmp_type) << 8 | u16::from(r.icmp_code)),
            )?,
            _ => {}
        }
        m.serialize_entry("ipDiffServCodePoint", &r.dscp)?;
        let (start, end) = (r.start(), r.end());
        m.serialize_entry("flowStartNanoseconds", &start)?;
        m.serialize_entry("flowEndNanoseconds", &end)?;
        m.serialize_entry("flowDurationMilliseconds", &(end.since(start).as_nanos() / 1_000_000))?;
        m.serialize_entry("packetDeltaCount", &r.fwd.packets)?;
        m.serialize_entry("octetDeltaCount", &r.fwd.bytes)?;
        m.serialize_entry("reversePacketDeltaCount", &r.rev.packets)?;
        m.serialize_entry("reverseOctetDeltaCount", &r.rev.bytes)?;
        if r.proto == 6 {
            m.serialize_entry("tcpControlBits", &r.fwd.tcp_flags)?;
            m.serialize_entry("reverseTcpControlBits", &r.rev.tcp_flags)?;
        }
        m.serialize_entry("minimumTTL", &r.fwd.min_ttl)?;
        m.serialize_entry("maximumTTL", &r.fwd.max_ttl)?;
        if r.rev.packets > 0 {
            m.serialize_entry("reverseMinimumTTL", &r.rev.min_ttl)?;
            m.serialize_entry("reverseMaximumTTL", &r.rev.max_ttl)?;
        }
        m.serialize_entry("flowEndReason", r.end_reason.name())?;
        m.serialize_entry("community_id", &r.community_id())?;
        m.end()
    }
}
