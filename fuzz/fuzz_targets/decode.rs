//! Fuzz target for `outpost_decode::decode` and `shard_hash`.
//!
//! Input layout: byte 0 picks the link type (mod 6), bytes 1..5 a wire-length adjustment, the
//! rest is the frame. Every `Ok` result must satisfy `check_invariants`, and `shard_hash` must
//! agree with the decoded source address. A panic anywhere is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_decode::{IpAddress, LinkType, Nanos, check_invariants, decode, shard_hash, shard_hashes};

const LINKS: [LinkType; 6] =
    [LinkType::Ethernet, LinkType::Raw, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Ipv4, LinkType::Ipv6];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[usize::from(selector) % LINKS.len()];
    // The high bit of the selector says whether the frame was cut by a snap length: if so the
    // next four bytes add to the captured length to give the wire length.
    let (frame, wire_len) = match rest.split_first_chunk::<4>() {
        Some((extra, frame)) if selector & 0x80 != 0 => {
            let cap = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            (frame, cap.saturating_add(u32::from_be_bytes(*extra) % 70_000))
        }
        _ => (rest, u32::try_from(rest.len()).unwrap_or(u32::MAX)),
    };
    let hash = shard_hash(link, frame);
    let hashes = shard_hashes(link, frame);
    assert_eq!(hashes.source, hash, "shard_hashes disagrees with shard_hash");
    if let Ok(meta) = decode(link, frame, Nanos(0), wire_len) {
        if let Err(e) = check_invariants(frame, &meta) {
            panic!("invariant broken: {e}\n{meta:#?}");
        }
        let want = if meta.is_ip() { meta.src.shard_hash() } else { 0 };
        assert_eq!(hash, want, "shard_hash disagrees with decode");
        let pair = if meta.is_ip() { IpAddress::pair_hash(&meta.src, &meta.dst) } else { 0 };
        assert_eq!(hashes.pair, pair, "pair hash disagrees with decode");
    }
});
