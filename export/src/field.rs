//! Template fields and the values they take from a flow record.
//!
//! A template is a `&'static [Field]`: the same table writes the template record (field id,
//! length, enterprise number) and every data record (the value each field names, in the
//! field's length, network byte order). Template and data can therefore never disagree.
//!
//! A `View` is what one data record describes: a whole biflow, its forward direction, or its
//! reverse direction with the endpoints swapped.

use outpost_decode::{IpAddress, Nanos};
use outpost_flowmeter::FlowRecord;
use outpost_flowmeter::key::icmp_port_equivalents;

/// The RFC 5103 §6.1 Reverse Information Element Private Enterprise Number.
pub const REVERSE_PEN: u32 = 29305;

/// What a field's bytes hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// Source IPv4 address (4 bytes).
    SrcV4,
    /// Destination IPv4 address (4 bytes).
    DstV4,
    /// Source IPv6 address (16 bytes).
    SrcV6,
    /// Destination IPv6 address (16 bytes).
    DstV6,
    SrcPort,
    DstPort,
    Proto,
    /// The TOS / traffic class byte: DSCP << 2 (the meter keeps no ECN bits).
    Tos,
    Vlan,
    /// ICMP type × 256 + code; 0 for other protocols.
    IcmpTypeCode,
    FlowId,
    EndReason,
    /// Start of the view, milliseconds since the epoch.
    StartMs,
    /// End of the view, milliseconds since the epoch.
    EndMs,
    /// Start of the view, milliseconds of NetFlow v9 system uptime.
    StartUptime,
    /// End of the view, milliseconds of NetFlow v9 system uptime.
    EndUptime,
    Octets,
    Packets,
    TcpFlags,
    MinTtl,
    MaxTtl,
    RevOctets,
    RevPackets,
    RevTcpFlags,
    RevMinTtl,
    RevMaxTtl,
    /// First packet of the reverse direction, milliseconds since the epoch.
    RevStartMs,
    /// Last packet of the reverse direction, milliseconds since the epoch.
    RevEndMs,
}

/// One field specifier of a template (RFC 7011 §3.2, RFC 3954 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Information element id (IPFIX) or field type (NetFlow v9), without the enterprise bit.
    pub id: u16,
    /// Enterprise number: 0 for IANA elements, [`REVERSE_PEN`] for RFC 5103 reverse elements.
    pub enterprise: u32,
    /// Field length in bytes.
    pub len: u16,
    pub(crate) value: Value,
}

/// A standard (IANA) field.
pub(crate) const fn iana(id: u16, len: u16, value: Value) -> Field {
    Field { id, enterprise: 0, len, value }
}

/// An RFC 5103 reverse field: the IANA element `id` with the enterprise bit and PEN 29305.
pub(crate) const fn reverse(id: u16, len: u16, value: Value) -> Field {
    Field { id, enterprise: REVERSE_PEN, len, value }
}

/// A template: id and fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// Template id (≥ 256).
    pub id: u16,
    /// Fields in data-record order.
    pub fields: &'static [Field],
}

impl Template {
    /// Length of one data record in bytes.
    #[must_use]
    pub const fn record_len(&self) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.fields.len() {
            n += self.fields[i].len as usize;
            i += 1;
        }
        n
    }

    /// Length of the template record (IPFIX: enterprise fields take 4 more bytes each).
    #[must_use]
    pub const fn template_record_len(&self) -> usize {
        let mut n = 4;
        let mut i = 0;
        while i < self.fields.len() {
            n += if self.fields[i].enterprise != 0 { 8 } else { 4 };
            i += 1;
        }
        n
    }

    /// Appends the template record: template id, field count, field specifiers. The
    /// enterprise bit (0x8000) and number are written for enterprise fields (IPFIX only:
    /// NetFlow v9 templates have none).
    pub(crate) fn write_template_record(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&u16::try_from(self.fields.len()).unwrap_or(u16::MAX).to_be_bytes());
        for f in self.fields {
            if f.enterprise != 0 {
                out.extend_from_slice(&(f.id | 0x8000).to_be_bytes());
                out.extend_from_slice(&f.len.to_be_bytes());
                out.extend_from_slice(&f.enterprise.to_be_bytes());
            } else {
                out.extend_from_slice(&f.id.to_be_bytes());
                out.extend_from_slice(&f.len.to_be_bytes());
            }
        }
    }
}

/// Counters of one direction as a data record carries them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Dir {
    pub octets: u64,
    pub packets: u64,
    pub tcp_flags: u8,
    pub min_ttl: u8,
    pub max_ttl: u8,
    pub first: Nanos,
    pub last: Nanos,
}

impl Dir {
    fn of(c: &outpost_flowmeter::DirectionCounters) -> Dir {
        Dir {
            octets: c.bytes,
            packets: c.packets,
            tcp_flags: c.tcp_flags,
            min_ttl: c.min_ttl,
            max_ttl: c.max_ttl,
            first: c.first,
            last: c.last,
        }
    }
}

/// What one data record describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct View {
    pub src: IpAddress,
    pub dst: IpAddress,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    pub tos: u8,
    pub vlan: u16,
    pub icmp_type_code: u16,
    pub flow_id: u64,
    pub end_reason: u8,
    /// Start and end of the view.
    pub start: Nanos,
    pub end: Nanos,
    /// The counters the view reports as its own (forward) direction.
    pub fwd: Dir,
    /// The reverse direction (biflow records only).
    pub rev: Dir,
}

impl View {
    /// True when both addresses are IPv4.
    pub fn is_v4(&self) -> bool {
        self.src.is_v4() && self.dst.is_v4()
    }

    fn common(r: &FlowRecord) -> View {
        let icmp = matches!(r.proto, 1 | 58);
        View {
            src: r.src,
            dst: r.dst,
            src_port: r.src_port,
            dst_port: r.dst_port,
            proto: r.proto,
            tos: r.dscp << 2,
            vlan: r.vlan,
            icmp_type_code: if icmp { u16::from(r.icmp_type) << 8 | u16::from(r.icmp_code) } else { 0 },
            flow_id: r.flow_id,
            end_reason: r.end_reason.ipfix_code(),
            start: r.start(),
            end: r.end(),
            fwd: Dir::of(&r.fwd),
            rev: Dir::of(&r.rev),
        }
    }

    /// The whole biflow: start and end span both directions (`FlowRecord::start`/`end`).
    pub fn biflow(r: &FlowRecord) -> View {
        View::common(r)
    }

    /// The forward direction alone (initiator → responder), with its own first and last
    /// packet times. A record without forward packets keeps the biflow's start and end.
    pub fn forward(r: &FlowRecord) -> View {
        let mut v = View::common(r);
        if r.fwd.packets > 0 {
            v.start = r.fwd.first;
            v.end = r.fwd.last;
        }
        v.rev = Dir::default();
        v
    }

    /// The reverse direction alone (responder → initiator): endpoints and ports swapped, the
    /// reverse counters, no DSCP (the meter records the initiator's only), and for two-way
    /// ICMP messages the counterpart type (echo request 8 → echo reply 0, code 0).
    pub fn reverse(r: &FlowRecord) -> View {
        let icmp_type_code = match r.proto {
            1 | 58 => {
                let (_, counterpart, one_way) =
                    icmp_port_equivalents(r.icmp_type, r.icmp_code, r.proto == 58);
                if one_way { u16::from(r.icmp_type) << 8 | u16::from(r.icmp_code) } else { counterpart << 8 }
            }
            _ => 0,
        };
        View {
            src: r.dst,
            dst: r.src,
            src_port: r.dst_port,
            dst_port: r.src_port,
            proto: r.proto,
            tos: 0,
            vlan: r.vlan,
            icmp_type_code,
            flow_id: r.flow_id,
            end_reason: r.end_reason.ipfix_code(),
            start: r.rev.first,
            end: r.rev.last,
            fwd: Dir::of(&r.rev),
            rev: Dir::default(),
        }
    }
}

/// Milliseconds since the epoch.
pub(crate) fn millis(t: Nanos) -> u64 {
    t.0 / 1_000_000
}

/// Appends the low `len` bytes of `v` in network byte order (reduced-size encoding, RFC 7011
/// §6.2; lengths above 8 are zero-extended on the left).
#[inline]
fn put_uint(out: &mut Vec<u8>, v: u64, len: u16) {
    let bytes = v.to_be_bytes();
    let len = usize::from(len);
    if len <= 8 {
        out.extend_from_slice(&bytes[8 - len..]);
    } else {
        out.extend(std::iter::repeat_n(0u8, len - 8));
        out.extend_from_slice(&bytes);
    }
}

/// Appends an address in `len` bytes: the IPv4 octets for 4, all sixteen bytes otherwise
/// (an IPv4 address then stays IPv4-mapped).
#[inline]
fn put_addr(out: &mut Vec<u8>, a: &IpAddress, len: u16) {
    if len == 4 {
        out.extend_from_slice(&a.0[12..]);
    } else {
        out.extend_from_slice(&a.0);
    }
}

/// Appends one data record of `fields` describing `v`. `boot_ms` anchors the NetFlow v9
/// uptime fields (milliseconds since the epoch of "system boot"); times before it clamp to 0.
#[inline]
pub(crate) fn write_record(out: &mut Vec<u8>, fields: &[Field], v: &View, boot_ms: u64) {
    let uptime = |t: Nanos| (millis(t).saturating_sub(boot_ms)).min(u64::from(u32::MAX));
    for f in fields {
        let n = match f.value {
            Value::SrcV4 | Value::SrcV6 => {
                put_addr(out, &v.src, f.len);
                continue;
            }
            Value::DstV4 | Value::DstV6 => {
                put_addr(out, &v.dst, f.len);
                continue;
            }
            Value::SrcPort => u64::from(v.src_port),
            Value::DstPort => u64::from(v.dst_port),
            Value::Proto => u64::from(v.proto),
            Value::Tos => u64::from(v.tos),
            Value::Vlan => u64::from(v.vlan),
            Value::IcmpTypeCode => u64::from(v.icmp_type_code),
            Value::FlowId => v.flow_id,
            Value::EndReason => u64::from(v.end_reason),
            Value::StartMs => millis(v.start),
            Value::EndMs => millis(v.end),
            Value::StartUptime => uptime(v.start),
            Value::EndUptime => uptime(v.end),
            Value::Octets => v.fwd.octets,
            Value::Packets => v.fwd.packets,
            Value::TcpFlags => u64::from(v.fwd.tcp_flags),
            Value::MinTtl => u64::from(v.fwd.min_ttl),
            Value::MaxTtl => u64::from(v.fwd.max_ttl),
            Value::RevOctets => v.rev.octets,
            Value::RevPackets => v.rev.packets,
            Value::RevTcpFlags => u64::from(v.rev.tcp_flags),
            Value::RevMinTtl => u64::from(v.rev.min_ttl),
            Value::RevMaxTtl => u64::from(v.rev.max_ttl),
            Value::RevStartMs => millis(v.rev.first),
            Value::RevEndMs => millis(v.rev.last),
        };
        put_uint(out, n, f.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_uint_writes_reduced_and_extended_sizes() {
        let mut out = Vec::new();
        put_uint(&mut out, 0x0102_0304_0506_0708, 8);
        put_uint(&mut out, 0x0a0b, 2);
        put_uint(&mut out, 0x1ff, 1);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0xff]);
    }
}
