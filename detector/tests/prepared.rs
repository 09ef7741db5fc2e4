//! The worker's batch path (`prepare`, `prefetch_slots`, `on_prepared`) decides exactly as the
//! packet-at-a-time path (`on_packet`): the same outputs, in the same order, for the shipped
//! packet rules plus an intel rule, over a random mix of packets — scans, floods, pings,
//! listed and unlisted addresses, IPv4 and IPv6.

mod common;

use std::sync::Arc;

use common::{In, packet, rules};
use outpost_decode::{Duration, Nanos, PacketMeta};
use outpost_detector::engine::{Detector, DetectorOutput, WorkerPlace};
use outpost_detector::network::NetworkMap;
use outpost_detector::rules::RuleSet;

/// The shipped default rules (their intel rule's list is an optional file that is not there)
/// and an intel rule with inline entries.
fn ruleset() -> Arc<RuleSet> {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/rules.d/default.toml"))
            .expect("shipped rules");
    rules(&format!(
        "{shipped}\n[[intel]]\nname = \"inline-intel\"\nseverity = \"high\"\ncategory = \"threat-intel\"\n\
         direction = \"either\"\ncooldown = \"10s\"\n\
         lists = [{{ name = \"t\", entries = [\"10.9.0.0/16\", \"192.0.2.7\", \"2001:db8:bad::/48\"] }}]\n"
    ))
}

/// Random packets over a few minutes: sources that sweep and scan, a flood target, listed
/// addresses on either side.
fn mix(n: usize) -> Vec<PacketMeta> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ts = Nanos(i as u64 * 2_000_000);
        let src = match next(10) {
            0 => format!("10.9.{}.{}", next(4), next(250) + 1),
            1 => format!("2001:db8:bad::{:x}", next(50) + 1),
            2 => format!("2001:db8:1::{:x}", next(50) + 1),
            _ => format!("10.1.{}.{}", next(8), next(250) + 1),
        };
        let v6 = src.contains(':');
        let dst = match (next(8), v6) {
            (0, false) => "192.0.2.7".to_string(),
            (_, false) => format!("10.2.{}.{}", next(4), next(250) + 1),
            (_, true) => format!("2001:db8:2::{:x}", next(300) + 1),
        };
        let In::Packet(mut m) = (match next(4) {
            // TCP: SYNs (scans, floods) and established segments.
            0 | 1 => packet(&src, &dst, 6, 40_000 + next(1000) as u16, 1 + next(1024) as u16, ts),
            2 => packet(&src, &dst, 17, 40_000, 1 + next(40_000) as u16, ts),
            _ => packet(&src, &dst, if v6 { 58 } else { 1 }, 0, 0, ts),
        }) else {
            unreachable!()
        };
        match m.ip_proto {
            6 => m.tcp_flags = if next(3) == 0 { 0x10 } else { 0x02 },
            1 => m.icmp_type = if next(2) == 0 { 8 } else { 3 },
            58 => m.icmp_type = if next(2) == 0 { 128 } else { 1 },
            _ => {}
        }
        out.push(m);
    }
    out
}

fn detector(set: &Arc<RuleSet>) -> Detector {
    Detector::new(set.clone(), Arc::new(NetworkMap::default()), 7, WorkerPlace::ALONE, Duration::ZERO)
}

/// Outputs as text, in order (alerts, partial aggregates, baseline partials).
fn record(out: &mut Vec<String>) -> impl FnMut(DetectorOutput) + '_ {
    move |o| out.push(format!("{o:?}"))
}

#[test]
fn prepared_batches_decide_as_packets_one_at_a_time() {
    let set = ruleset();
    let packets = mix(60_000);
    let (mut one, mut batched, mut fed) = (detector(&set), detector(&set), detector(&set));
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (n, batch) in packets.chunks(32).enumerate() {
        let frame0 = (n * 32) as u64;
        for (i, m) in batch.iter().enumerate() {
            one.on_packet(m, frame0 + i as u64, &mut record(&mut a));
        }
        batched.prepare(batch);
        batched.prefetch_slots();
        for (i, m) in batch.iter().enumerate() {
            batched.on_prepared(i, m, frame0 + i as u64, &mut record(&mut b));
        }
        // A packet at a time, as the worker prepares while it decodes.
        fed.begin_prepare();
        for m in batch {
            fed.prepare_packet(m);
        }
        assert_eq!(fed.prepared_packets(), batch.len());
        fed.end_prepare();
        fed.prefetch_slots();
        for (i, m) in batch.iter().enumerate() {
            fed.on_prepared(i, m, frame0 + i as u64, &mut record(&mut c));
        }
        let now = batch.last().map_or(Nanos::ZERO, |m| m.ts);
        one.on_clock(now, n as u64, &mut record(&mut a));
        batched.on_clock(now, n as u64, &mut record(&mut b));
        fed.on_clock(now, n as u64, &mut record(&mut c));
    }
    one.finish(&mut record(&mut a));
    batched.finish(&mut record(&mut b));
    fed.finish(&mut record(&mut c));
    assert_eq!(b, c, "prepared a packet at a time or a batch at once");
    assert_eq!(batched.stats(), fed.stats());
    let alerts = |v: &[String]| v.iter().filter(|o| o.starts_with("Alert")).count();
    let intel = |v: &[String]| v.iter().filter(|o| o.contains("Intel")).count();
    assert!(alerts(&a) > 0 && intel(&a) > 0, "the mix raises alerts, intel ones among them");
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
    assert_eq!(one.stats(), batched.stats());
}

/// A detector whose rules take no packets says so, so that the worker can skip it; skipping it
/// changes nothing (it raises and counts the same as one that is fed every packet).
#[test]
fn a_detector_without_packet_rules_takes_no_packets() {
    let flow_rule = "[[threshold]]\nname = \"logins\"\nseverity = \"high\"\ncategory = \"credential-access\"\n\
                     input = \"flows\"\nfilter = \"tcp dst port 22\"\nkey = [\"src_ip\"]\nwindow = \"5m\"\nthreshold = 10\n";
    let packets = mix(2_000);
    for text in ["", flow_rule] {
        let set = rules(text);
        let (mut fed, skipped) = (detector(&set), detector(&set));
        assert!(!fed.takes_packets(), "{text:?}");
        let mut out = Vec::new();
        fed.prepare(&packets);
        fed.prefetch_slots();
        for (i, m) in packets.iter().enumerate() {
            fed.on_prepared(i, m, i as u64, &mut record(&mut out));
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(fed.stats(), skipped.stats());
    }
    assert!(detector(&ruleset()).takes_packets());
    let mut reloaded = detector(&rules(""));
    reloaded.reload(ruleset());
    assert!(reloaded.takes_packets(), "a reload that brings packet rules turns it on");
}
