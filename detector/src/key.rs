//! Rule keys: which fields a rule keeps state per, and their values for a packet or flow.

use outpost_decode::{IpAddress, PacketMeta};
use outpost_flowmeter::FlowRecord;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::config::{ConfigError, KeyField, SourceText};
use crate::network::NetworkMap;

/// The fields of a rule's key, in configuration order (at most one of each).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpec {
    fields: Vec<KeyField>,
}

/// The value of a key. Fields the rule does not key by are zero, so values compare and hash
/// by exactly the rule's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyValue {
    /// Source address (or unset).
    pub src: IpAddress,
    /// Destination address (or unset).
    pub dst: IpAddress,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// Network id.
    pub network: u32,
}

impl std::hash::Hash for KeyValue {
    /// One `u64` write of [`KeyValue::hash64`]: cheaper than hashing the fields one by one.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

impl KeyValue {
    /// A hash for sharding (which worker owns a key keyed by source address).
    #[must_use]
    pub fn hash64(&self) -> u64 {
        let h = self.src.shard_hash() ^ self.dst.shard_hash().rotate_left(21);
        let small = (u64::from(self.src_port) << 40)
            | (u64::from(self.dst_port) << 24)
            | (u64::from(self.proto) << 16)
            | u64::from(self.network).wrapping_mul(0x9e37_79b9);
        let mut h = h ^ small.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h.wrapping_mul(0xc4ce_b9fe_1a85_ec53) ^ (h >> 29)
    }
}

impl KeySpec {
    /// A key of `fields`, checked: not empty, no field twice.
    ///
    /// # Errors
    /// A [`ConfigError`] at `span` naming `key`.
    pub fn new(
        fields: &[KeyField],
        src: &SourceText,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> Result<KeySpec, ConfigError> {
        if fields.is_empty() {
            return Err(src.error(span, key, "a key needs at least one field"));
        }
        for (i, f) in fields.iter().enumerate() {
            if fields.get(..i).is_some_and(|before| before.contains(f)) {
                return Err(src.error(span, key, format!("`{}` appears twice", f.name())));
            }
        }
        Ok(KeySpec { fields: fields.to_vec() })
    }

    /// A key of exactly these fields (no checks; for built-in uses).
    #[must_use]
    pub fn of(fields: &[KeyField]) -> KeySpec {
        KeySpec { fields: fields.to_vec() }
    }

    /// The fields.
    #[must_use]
    pub fn fields(&self) -> &[KeyField] {
        &self.fields
    }

    /// True when the key holds the source address: packet rules with such keys run in the
    /// worker that owns the source.
    #[must_use]
    pub fn has(&self, f: KeyField) -> bool {
        self.fields.contains(&f)
    }

    fn build(
        &self,
        src: IpAddress,
        dst: IpAddress,
        sport: u16,
        dport: u16,
        proto: u8,
        net: impl Fn() -> u32,
    ) -> KeyValue {
        let mut k = KeyValue::default();
        for f in &self.fields {
            match f {
                KeyField::SrcIp => k.src = src,
                KeyField::DstIp => k.dst = dst,
                KeyField::SrcPort => k.src_port = sport,
                KeyField::DstPort => k.dst_port = dport,
                KeyField::Proto => k.proto = proto,
                KeyField::NetworkId => k.network = net(),
            }
        }
        k
    }

    /// The key of a packet.
    #[inline]
    #[must_use]
    pub fn of_packet(&self, m: &PacketMeta, networks: &NetworkMap) -> KeyValue {
        self.build(m.src, m.dst, m.src_port, m.dst_port, m.ip_proto, || {
            networks.lookup_pair(&m.src, &m.dst).map_or(0, |n| n.id)
        })
    }

    /// The key of a flow record (source = initiator).
    #[must_use]
    pub fn of_flow(&self, r: &FlowRecord, networks: &NetworkMap) -> KeyValue {
        self.build(r.src, r.dst, r.src_port, r.dst_port, r.proto, || {
            networks.lookup_pair(&r.src, &r.dst).map_or(0, |n| n.id)
        })
    }

    /// The key of an alert's addresses and ports (for sequence steps made of alerts).
    #[must_use]
    pub fn of_alert(&self, a: &crate::alert::Alert, networks: &NetworkMap) -> KeyValue {
        self.build(a.src, a.dst, a.src_port, a.dst_port, a.ip_proto, || {
            networks.lookup_pair(&a.src, &a.dst).map_or(0, |n| n.id)
        })
    }

    /// The key as JSON (only the key's fields), for alerts.
    #[must_use]
    pub fn display<'a>(&'a self, value: &'a KeyValue) -> KeyJson<'a> {
        KeyJson { spec: self, value }
    }
}

/// A key value written as a JSON object of the key's fields.
#[derive(Debug)]
pub struct KeyJson<'a> {
    spec: &'a KeySpec,
    value: &'a KeyValue,
}

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.spec.fields.len()))?;
        for f in &self.spec.fields {
            match f {
                KeyField::SrcIp => m.serialize_entry(f.name(), &self.value.src)?,
                KeyField::DstIp => m.serialize_entry(f.name(), &self.value.dst)?,
                KeyField::SrcPort => m.serialize_entry(f.name(), &self.value.src_port)?,
                KeyField::DstPort => m.serialize_entry(f.name(), &self.value.dst_port)?,
                KeyField::Proto => m.serialize_entry(f.name(), &self.value.proto)?,
                KeyField::NetworkId => m.serialize_entry(f.name(), &self.value.network)?,
            }
        }
        m.end()
    }
}
