//! Counting decode outcomes per worker.
//!
//! Counters are plain integers owned by one worker (no atomics on the hot path); workers
//! publish copies after each batch and the summary merges them.

use crate::meta::{LinkType, Malformed, Network, PacketMeta};
use crate::time::Nanos;

/// Decode outcome counters. All counts are frames unless the name says bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames offered to the decoder.
    pub frames: u64,
    /// Sum of on-the-wire frame lengths, in bytes.
    pub wire_bytes: u64,
    /// Frames decoded as IPv4.
    pub ipv4: u64,
    /// Frames decoded as IPv6.
    pub ipv6: u64,
    /// ARP frames.
    pub arp: u64,
    /// Frames with an EtherType Outpost does not decode (LLDP, STP, MPLS, ...).
    pub other_ethertype: u64,
    /// Frames rejected at or below the network layer (not passed on), by reason.
    pub rejected: u64,
    /// Problems by reason, both rejected frames and soft anomalies
    /// (indexed by `Malformed as usize`).
    pub malformed: [u64; Malformed::COUNT],
}

impl DecodeStats {
    /// Counts one decode result.
    #[inline]
    pub fn record(&mut self, wire_len: u32, result: &Result<PacketMeta, Malformed>) {
        self.record_ref(wire_len, result.as_ref().map_err(|e| *e));
    }

    /// Counts one decode result held by reference (what [`crate::decode_into`] wrote).
    #[inline]
    pub fn record_ref(&mut self, wire_len: u32, result: Result<&PacketMeta, Malformed>) {
        self.frames += 1;
        self.wire_bytes += u64::from(wire_len);
        match result {
            Ok(meta) => {
                match meta.network {
                    Network::Ipv4 => self.ipv4 += 1,
                    Network::Ipv6 => self.ipv6 += 1,
                    Network::Arp => self.arp += 1,
                    Network::Other => self.other_ethertype += 1,
                }
                if let Some(reason) = meta.anomaly {
                    self.malformed[reason as usize] += 1;
                }
            }
            Err(reason) => {
                self.rejected += 1;
                self.malformed[reason as usize] += 1;
            }
        }
    }

    /// Adds another worker's counters to these.
    pub fn merge(&mut self, other: &DecodeStats) {
        self.frames += other.frames;
        self.wire_bytes += other.wire_bytes;
        self.ipv4 += other.ipv4;
        self.ipv6 += other.ipv6;
        self.arp += other.arp;
        self.other_ethertype += other.other_ethertype;
        self.rejected += other.rejected;
        for (a, b) in self.malformed.iter_mut().zip(other.malformed.iter()) {
            *a += b;
        }
    }

    /// Total malformed count over all reasons.
    #[must_use]
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }

    /// Non-zero malformed counters as `(reason name, count)`, in reason order.
    pub fn malformed_by_reason(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Malformed::ALL.iter().zip(self.malformed.iter()).filter(|(_, n)| **n > 0).map(|(r, n)| (r.name(), *n))
    }
}

/// A decoder that counts what it sees. One per worker.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Counters since creation.
    pub stats: DecodeStats,
}

impl Decoder {
    /// Decodes one frame and counts the outcome; `None` when the frame was rejected.
    #[inline]
    pub fn decode(&mut self, link: LinkType, frame: &[u8], ts: Nanos, wire_len: u32) -> Option<PacketMeta> {
        let result = crate::decode(link, frame, ts, wire_len);
        self.stats.record(wire_len, &result);
        result.ok()
    }
}
