//! `FlowJson::write_json` (the hand-written encoder the replay uses) against serde_json's
//! encoding of the same `FlowJson`: byte for byte, over many varied records.

use outpost_decode::{IpAddress, Nanos};
use outpost_flowmeter::{DirectionCounters, EndReason, FlowJson, FlowRecord};
use outpost_tools::splitmix::SplitMix64 as Rng;

fn addr(rng: &mut Rng, v4: bool) -> IpAddress {
    let x = rng.next_u64();
    let ip: std::net::IpAddr = if v4 {
        std::net::Ipv4Addr::from(rng.pick(&[x as u32, 0, u32::MAX, 0x0a01_0203, (x as u32) & 0xff00_00ff]))
            .into()
    } else {
        let hi = u128::from(rng.next_u64()) << 64;
        let x = u128::from(x);
        std::net::Ipv6Addr::from(rng.pick(&[hi | x, 0, 1, 0x2001_0db8 << 96, hi, u128::MAX])).into()
    };
    IpAddress::from(ip)
}

fn counters(rng: &mut Rng, empty: bool) -> DirectionCounters {
    if empty {
        return DirectionCounters::default();
    }
    let r = rng.next_u64();
    let first = rng.pick(&[0, 1, 1_764_000_000_000_000_000, r >> 1, u64::MAX / 2]);
    let (r1, r2) = (rng.next_u64(), rng.next_u64());
    DirectionCounters {
        packets: rng.pick(&[1, 2, 1000, u64::from(u32::MAX), r1]),
        bytes: rng.pick(&[0, 40, 1500, r2]),
        tcp_flags: rng.next_u64() as u8,
        first: Nanos(first),
        last: Nanos(first.saturating_add(rng.next_u64() % 10_000_000_000_000)),
        min_ttl: rng.next_u64() as u8,
        max_ttl: rng.next_u64() as u8,
    }
}

#[test]
fn hand_written_json_is_byte_identical_to_serde_json() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sensors =
        ["outpost-demo", "", "a \"quoted\" \\ name", "tab\there\nnew\u{1}\u{1f}\u{7f}", "ünïcødé ☃"];
    for i in 0..100_000 {
        let v4 = !rng.next_u64().is_multiple_of(5);
        let rev_empty = rng.next_u64().is_multiple_of(3);
        let id = rng.next_u64();
        let r = FlowRecord {
            flow_id: rng.pick(&[0, 1, u64::MAX, id]),
            sequence: rng.next_u64() as u16,
            src: addr(&mut rng, v4),
            dst: addr(&mut rng, v4),
            src_port: rng.next_u64() as u16,
            dst_port: rng.pick(&[0, 53, 443, 65_535]),
            proto: rng.pick(&[1, 6, 17, 58, 132, 47, 0, 255]),
            vlan: rng.pick(&[0, 0, 1, 4095, 100]),
            icmp_type: rng.next_u64() as u8,
            icmp_code: rng.next_u64() as u8,
            dscp: (rng.next_u64() % 64) as u8,
            fwd: counters(&mut rng, false),
            rev: counters(&mut rng, rev_empty),
            end_reason: rng.pick(&EndReason::ALL),
        };
        let sensor = rng.pick(&sensors);
        let json = FlowJson { record: &r, sensor };
        let want = serde_json::to_vec(&json).unwrap();
        let mut got = Vec::new();
        json.write_json(&mut got);
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "record {i}: {r:?}");
    }
}
