//! Frame decoding. (Implementation in progress.)

use crate::meta::{LinkType, Malformed, PacketMeta};
use crate::time::Nanos;

/// Decodes one captured frame.
///
/// `frame` holds the captured bytes, `wire_len` the length on the wire (pcap `orig_len`,
/// ≥ `frame.len()` when a snap length cut the frame). Never panics, never allocates.
///
/// # Errors
/// The [`Malformed`] reason when the frame cannot be decoded up to the network layer.
pub fn decode(link: LinkType, frame: &[u8], ts: Nanos, wire_len: u32) -> Result<PacketMeta, Malformed> {
    let _ = (link, frame, ts, wire_len);
    Err(Malformed::UnsupportedLinkType)
}

/// Hash of the frame's source IP address ([`crate::IpAddress::shard_hash`]) for choosing a
/// worker, reading only the link and IP headers. Frames without an IP source (ARP, other
/// EtherTypes, malformed) hash to 0.
#[must_use]
pub fn shard_hash(link: LinkType, frame: &[u8]) -> u64 {
    let _ = (link, frame);
    0
}
