//! Property tests: `decode` never panics, every `Ok` keeps the invariants of
//! [`crate::check_invariants`], `shard_hash` agrees with it, and well-formed frames built from
//! random field values decode back to those values.

use super::*;
use proptest::prelude::*;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

fn any_link() -> impl Strategy<Value = LinkType> {
    prop::sample::select(LINKS.to_vec())
}

/// Decodes, then checks invariants and `shard_hash` / `shard_hashes` agreement.
fn check(link: LinkType, frame: &[u8], wire_len: u32) -> Result<Option<PacketMeta>, TestCaseError> {
    let r = decode(link, frame, Nanos(1), wire_len);
    match r {
        Ok(m) => {
            if let Err(e) = crate::check_invariants(frame, &m) {
                return Err(TestCaseError::fail(format!("{e}: {m:?}")));
            }
            let want = if m.is_ip() { m.src.shard_hash() } else { 0 };
            prop_assert_eq!(shard_hash(link, frame), want);
            let pair = if m.is_ip() { crate::IpAddress::pair_hash(&m.src, &m.dst) } else { 0 };
            let hashes = crate::shard_hashes(link, frame);
            prop_assert_eq!((hashes.source, hashes.pair), (want, pair));
            Ok(Some(m))
        }
        Err(_) => Ok(None),
    }
}

/// Frames that look like real headers in their first bytes, then go wrong at random: a
/// link header with the right EtherType, an IP header with sane version/IHL, then random bytes,
/// with random bytes overwritten anywhere. This reaches the deep paths that uniformly random
/// bytes almost never do.
fn header_shaped() -> impl Strategy<Value = (LinkType, Vec<u8>, u32)> {
    (
        any_link(),
        0usize..3,       // VLAN tags
        prop::bool::ANY, // IPv6?
        prop::sample::select(vec![6u8, 17, 1, 58, 132, 0, 43, 44, 51, 60, 50, 59, 47]),
        prop::collection::vec(any::<u8>(), 0..200), // rest
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6), // mutations
        prop::option::of(0u32..2000),               // wire_len override
    )
        .prop_map(|(link, tags, v6, proto, rest, mutations, wire)| {
            let mut f = Vec::new();
            let et: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
            match link {
                LinkType::Ethernet => {
                    f.extend_from_slice(&[0; 12]);
                    for _ in 0..tags {
                        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
                    }
                    f.extend_from_slice(&et);
                }
                LinkType::LinuxSll => {
                    f.extend_from_slice(&[0; 14]);
                    f.extend_from_slice(&et);
                }
                LinkType::LinuxSll2 => {
                    f.extend_from_slice(&et);
                    f.extend_from_slice(&[0; 18]);
                }
                _ => {}
            }
            let body_len = u16::try_from(rest.len()).unwrap_or(0);
            if v6 {
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&body_len.to_be_bytes());
                f.extend_from_slice(&[proto, 64]);
                f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            } else {
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&(body_len + 20).to_be_bytes());
                f.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            }
            f.extend_from_slice(&rest);
            for (at, byte) in mutations {
                let i = at.index(f.len());
                f[i] = byte;
            }
            let wire = wire.unwrap_or(u32::try_from(f.len()).unwrap_or(u32::MAX));
            (link, f, wire)
        })
}

/// A valid Ethernet frame with random field values, and what decode must report.
#[derive(Debug, Clone)]
struct Built {
    frame: Vec<u8>,
    vlans: Vec<u16>,
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    ttl: u8,
    tcp: bool,
    sport: u16,
    dport: u16,
    flags: u16,
    seq: u32,
    payload: usize,
}

fn built_frame() -> impl Strategy<Value = Built> {
    (
        prop::collection::vec(0u16..4096, 0..3),
        prop::bool::ANY,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        prop::bool::ANY,
        (any::<u16>(), any::<u16>(), 0u16..0x200, any::<u32>()),
        0usize..64,
        0usize..20, // Ethernet padding
    )
        .prop_map(|(vlans, v6, src, dst, ttl, tcp, (sport, dport, flags, seq), payload, pad)| {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            for (i, v) in vlans.iter().enumerate() {
                let tpid: [u8; 2] = if i == 0 && vlans.len() == 2 { [0x88, 0xa8] } else { [0x81, 0x00] };
                f.extend_from_slice(&tpid);
                f.extend_from_slice(&v.to_be_bytes());
            }
            let l4_len = if tcp { 20 } else { 8 } + payload;
            let proto = if tcp { 6 } else { 17 };
            if v6 {
                f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                f.extend_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
                f.extend_from_slice(&[proto, ttl]);
                f.extend_from_slice(&src);
                f.extend_from_slice(&dst);
            } else {
                f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
                f.extend_from_slice(&u16::try_from(20 + l4_len).unwrap().to_be_bytes());
                f.extend_from_slice(&[0, 1, 0x40, 0, ttl, proto, 0, 0]);
                f.extend_from_slice(&src[..4]);
                f.extend_from_slice(&dst[..4]);
            }
            f.extend_from_slice(&sport.to_be_bytes());
            f.extend_from_slice(&dport.to_be_bytes());
            if tcp {
                f.extend_from_slice(&seq.to_be_bytes());
                f.extend_from_slice(&[0, 0, 0, 0]);
                f.push(0x50 | u8::try_from(flags >> 8).unwrap());
                f.push(u8::try_from(flags & 0xff).unwrap());
                f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            } else {
                f.extend_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
                f.extend_from_slice(&[0, 0]);
            }
            f.extend(std::iter::repeat_n(0x5a, payload + pad));
            Built { frame: f, vlans, v6, src, dst, ttl, tcp, sport, dport, flags, seq, payload }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        link in any_link(),
        frame in prop::collection::vec(any::<u8>(), 0..160),
        wire_len in any::<u32>(),
    ) {
        check(link, &frame, wire_len)?;
        check(link, &frame, u32::try_from(frame.len()).unwrap())?;
    }

    #[test]
    fn decode_keeps_invariants_on_header_shaped_garbage((link, frame, wire) in header_shaped()) {
        check(link, &frame, wire)?;
    }

    #[test]
    fn valid_frames_decode_to_the_fields_they_were_built_from(b in built_frame()) {
        let m = check(LinkType::Ethernet, &b.frame, u32::try_from(b.frame.len()).unwrap())?
            .ok_or_else(|| TestCaseError::fail("valid frame rejected"))?;
        prop_assert_eq!(usize::from(m.vlan_count), b.vlans.len());
        for (i, v) in b.vlans.iter().enumerate() {
            prop_assert_eq!(m.vlan[i], *v);
        }
        if b.v6 {
            prop_assert_eq!(m.network, Network::Ipv6);
            prop_assert_eq!(m.src, IpAddress::from_v6(b.src));
            prop_assert_eq!(m.dst, IpAddress::from_v6(b.dst));
        } else {
            prop_assert_eq!(m.network, Network::Ipv4);
            prop_assert_eq!(m.src, IpAddress::from_v4([b.src[0], b.src[1], b.src[2], b.src[3]]));
            prop_assert_eq!(m.dst, IpAddress::from_v4([b.dst[0], b.dst[1], b.dst[2], b.dst[3]]));
        }
        prop_assert_eq!(m.ttl, b.ttl);
        prop_assert_eq!(m.transport, Transport::Parsed);
        prop_assert_eq!(m.anomaly, None);
        prop_assert_eq!((m.src_port, m.dst_port), (b.sport, b.dport));
        prop_assert_eq!(usize::try_from(m.payload_len).unwrap(), b.payload);
        if b.tcp {
            prop_assert_eq!(m.tcp_flags, b.flags);
            prop_assert_eq!(m.tcp_seq, b.seq);
        }
        prop_assert_eq!(usize::from(m.payload_offset) + b.payload, usize::from(m.l3_offset) + usize::try_from(m.ip_len).unwrap());
    }

    #[test]
    fn every_prefix_of_a_valid_frame_decodes_or_fails_cleanly(b in built_frame(), wire_extra in 0u32..100) {
        for cut in 0..=b.frame.len() {
            let f = &b.frame[..cut];
            let full = u32::try_from(b.frame.len()).unwrap();
            // As a snap-length cut (wire length kept) and as an uncut short frame.
            check(LinkType::Ethernet, f, full + wire_extra)?;
            check(LinkType::Ethernet, f, u32::try_from(cut).unwrap())?;
        }
    }
}
