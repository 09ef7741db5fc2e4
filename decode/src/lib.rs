//! Zero-copy, panic-free decoding of captured frames.
//!
//! [`decode`] reads a frame of any [`LinkType`] through checked views and returns a
//! [`PacketMeta`]: a small `Copy` summary (addresses, ports, protocol, TCP flags, lengths, VLAN
//! tags, fragment state, capture time). It never panics and never allocates, whatever the bytes.
//! Frames that cannot be decoded at the network layer return a [`Malformed`] reason; frames
//! whose transport header is damaged decode with [`PacketMeta::anomaly`] set. [`Decoder`] counts
//! both by reason in [`DecodeStats`].
//!
//! [`shard_hash`] and [`shard_hashes`] are the cheap pre-decode used by receive threads to
//! pick the workers for a frame: they read only the link and IP headers.

pub mod addr;
mod decode;
pub mod hint;
mod invariants;
pub mod meta;
mod stats;
pub mod time;
mod view;

pub use addr::{Cidr, CidrError, IpAddress};
pub use decode::{ShardHashes, decode, decode_into, shard_hash, shard_hashes};
pub use hint::{prefetch, prefetch_all, prefetch_bytes};
pub use invariants::check_invariants;
pub use meta::{Fragment, LinkType, Malformed, Network, PacketMeta, Transport};
pub use stats::{DecodeStats, Decoder};
pub use time::{ConfigDuration, Duration, Nanos, parse_config_duration};
