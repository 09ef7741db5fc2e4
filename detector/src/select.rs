//! Selecting a rule's inputs: filter expressions over packets, and over flow records plus
//! flow conditions.
//!
//! A flow record is matched by the same pcap-filter language as packets, applied to its
//! initiator → responder tuple: `src host`, `dst port 22`, `tcp` etc. see the flow as one
//! packet from the initiator to the responder carrying the union of the initiator's TCP
//! flags. Conditions that only a flow has (packets, bytes, duration, handshake, reply) are
//! written separately (`flow = { ... }`).

use outpost_decode::meta::{Network, Transport};
use outpost_decode::{Duration, PacketMeta};
use outpost_filter::{Filter, PacketClass};
use outpost_flowmeter::FlowRecord;

use crate::config::{ConfigError, FlowConditionsConfig, SourceText};

/// Compiles an optional filter expression (none or empty: everything).
///
/// # Errors
/// A [`ConfigError`] at the expression, naming `key`.
pub fn compile_filter(
    expr: Option<&toml::Spanned<String>>,
    src: &SourceText,
    key: &str,
) -> Result<Filter, ConfigError> {
    match expr {
        None => Ok(Filter::match_all()),
        Some(e) => Filter::parse(e.get_ref())
            .map_err(|err| src.error(e.span(), key, format!("bad filter expression: {err}"))),
    }
}

/// Compiled flow conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowConditions {
    min_packets: Option<u64>,
    max_packets: Option<u64>,
    min_bytes: Option<u64>,
    max_bytes: Option<u64>,
    min_duration: Option<Duration>,
    max_duration: Option<Duration>,
    handshake: Option<bool>,
    replied: Option<bool>,
}

impl FlowConditions {
    /// From configuration.
    #[must_use]
    pub fn new(c: &FlowConditionsConfig) -> FlowConditions {
        FlowConditions {
            min_packets: c.min_packets,
            max_packets: c.max_packets,
            min_bytes: c.min_bytes,
            max_bytes: c.max_bytes,
            min_duration: c.min_duration.map(|d| d.0),
            max_duration: c.max_duration.map(|d| d.0),
            handshake: c.handshake,
            replied: c.replied,
        }
    }

    /// True when no condition is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == FlowConditions::default()
    }

    /// Whether `r` meets every condition.
    #[must_use]
    pub fn matches(&self, r: &FlowRecord) -> bool {
        let within =
            |v: u64, lo: Option<u64>, hi: Option<u64>| lo.is_none_or(|l| v >= l) && hi.is_none_or(|h| v <= h);
        // The flag tests first: they turn most records away (a login rule's `handshake`
        // every record that is not a completed TCP connection) before any sum.
        self.handshake.is_none_or(|h| handshake_completed(r) == h)
            && self.replied.is_none_or(|h| (r.rev.packets > 0) == h)
            && within(r.fwd.packets + r.rev.packets, self.min_packets, self.max_packets)
            && within(r.fwd.bytes + r.rev.bytes, self.min_bytes, self.max_bytes)
            && (self.min_duration.is_none() && self.max_duration.is_none() || {
                let duration = r.end().since(r.start());
                self.min_duration.is_none_or(|d| duration >= d)
                    && self.max_duration.is_none_or(|d| duration <= d)
            })
    }
}

/// TCP: SYN and ACK seen from both sides.
#[must_use]
pub fn handshake_completed(r: &FlowRecord) -> bool {
    const SYN_ACK: u8 = 0x12;
    r.proto == 6 && r.fwd.tcp_flags & SYN_ACK == SYN_ACK && r.rev.tcp_flags & SYN_ACK == SYN_ACK
}

/// A flow record seen as one packet from initiator to responder, for filter expressions.
#[must_use]
pub fn flow_as_packet(r: &FlowRecord) -> PacketMeta {
    let has_ports = matches!(r.proto, 6 | 17 | 132);
    PacketMeta {
        ts: r.start(),
        src: r.src,
        dst: r.dst,
        src_port: r.src_port,
        dst_port: r.dst_port,
        ip_proto: r.proto,
        ip6_first_next_header: r.proto,
        network: if r.src.is_v4() { Network::Ipv4 } else { Network::Ipv6 },
        ethertype: if r.src.is_v4() { 0x0800 } else { 0x86dd },
        transport: if has_ports || matches!(r.proto, 1 | 58) { Transport::Parsed } else { Transport::Absent },
        tcp_flags: u16::from(r.fwd.tcp_flags),
        icmp_type: r.icmp_type,
        icmp_code: r.icmp_code,
        vlan: [r.vlan, 0],
        vlan_count: u8::from(r.vlan != 0),
        ttl: r.fwd.max_ttl,
        tos: r.dscp << 2,
        ip_len: u32::try_from(r.fwd.bytes.min(u64::from(u32::MAX))).unwrap_or(u32::MAX),
        ..PacketMeta::default()
    }
}

/// A flow record with its packet form ([`flow_as_packet`]) and that form's class, made at the
/// first filter that needs them and then shared by every rule that reads the record, so each
/// filter is a class-table lookup or one program run. A record no rule filters (no flow
/// rules, or only match-all filters, or flow conditions that turn it away first) never builds
/// them.
#[derive(Debug)]
pub struct FlowView<'a> {
    /// The record.
    pub record: &'a FlowRecord,
    packet: std::cell::OnceCell<(PacketMeta, PacketClass)>,
}

impl<'a> FlowView<'a> {
    /// The view of `record`.
    #[must_use]
    pub fn new(record: &'a FlowRecord) -> FlowView<'a> {
        FlowView { record, packet: std::cell::OnceCell::new() }
    }

    /// Whether `filter` matches the record seen as one packet.
    #[inline]
    #[must_use]
    pub fn matches(&self, filter: &Filter) -> bool {
        if filter.is_match_all() {
            return true;
        }
        let (packet, class) = self.packet.get_or_init(|| {
            let packet = flow_as_packet(self.record);
            (packet, PacketClass::of(&packet))
        });
        filter.matches_class(*class, packet)
    }
}

/// Flow records a rule (or step) reads: a filter plus flow conditions.
#[derive(Debug, Clone)]
pub struct FlowSelector {
    filter: Filter,
    conditions: FlowConditions,
}

impl FlowSelector {
    /// A selector of `filter` and `conditions`.
    #[must_use]
    pub fn new(filter: Filter, conditions: FlowConditions) -> FlowSelector {
        FlowSelector { filter, conditions }
    }

    /// Whether the record of `v` is selected.
    #[must_use]
    pub fn matches(&self, v: &FlowView<'_>) -> bool {
        self.conditions.matches(v.record) && v.matches(&self.filter)
    }
}
