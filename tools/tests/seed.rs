//! End-to-end checks of the seed scenario: the capture is read back with pcap-parser, decoded
//! with `outpost_decode`, and replayed through a reference state machine written here
//! independently of the generator's table.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use clap::Parser;
use outpost_decode::{
    Duration, IpAddress, LinkType, Nanos, PacketMeta, check_invariants, decode, meta::ip_proto,
};
use outpost_tools::frame::Link;
use outpost_tools::pcap::OutputFormat;
use outpost_tools::seed::{
    SeedArgs, SeedCapture, SeedParams, TruthRecord, client_networks, generate, generate_in_memory,
    generate_seed, read_truth_file, server_networks,
};

mod common;
use common::read_capture;

/// Decodes every packet, asserting each is clean, and checks timestamps never go backwards.
fn decode_all(capture: &SeedCapture) -> Vec<(PacketMeta, Vec<u8>)> {
    let (link, packets) = read_capture(&capture.capture);
    assert_eq!(packets.len() as u64, capture.summary.packets);
    let mut prev = Nanos::ZERO;
    packets
        .into_iter()
        .map(|p| {
            assert!(p.ts >= prev, "timestamps go backwards: {} after {}", p.ts, prev);
            prev = p.ts;
            let meta = decode(link, &p.frame, p.ts, p.frame.len() as u32)
                .unwrap_or_else(|e| panic!("frame at {} does not decode: {e}", p.ts));
            assert_eq!(meta.anomaly, None, "anomaly at {}", p.ts);
            if let Err(broken) = check_invariants(&p.frame, &meta) {
                panic!("decoder invariant broken at {}: {broken}", p.ts);
            }
            assert!(meta.is_ip());
            (meta, p.frame)
        })
        .collect()
}

/// A datagram the detector treats as an event: UDP to 7001..=7007.
fn event_letter(meta: &PacketMeta) -> Option<char> {
    (meta.ip_proto == ip_proto::UDP && meta.has_ports() && (7001..=7007).contains(&meta.dst_port))
        .then(|| (b'a' + (meta.dst_port - 7001) as u8) as char)
}

/// Reference machine, written from the scenario description, not from the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RefState {
    Initial,
    W,
    X,
    Y,
    Z,
}

enum RefStep {
    To(RefState),
    Term,
    Invalid,
}

fn ref_step(state: RefState, letter: char) -> RefStep {
    use RefState::*;
    match (state, letter) {
        (Initial, 'a') => RefStep::To(W),
        (Initial, 'c') => RefStep::To(X),
        (W, 'b') | (X, 'b') => RefStep::To(Y),
        (X, 'd') => RefStep::To(Z),
        (Y, 'e') => RefStep::To(Z),
        (Z, 'f') => RefStep::To(Z),
        (Z, 'g') => RefStep::Term,
        _ => RefStep::Invalid,
    }
}

fn ref_name(s: RefState) -> &'static str {
    match s {
        RefState::Initial => "INITIAL",
        RefState::W => "W",
        RefState::X => "X",
        RefState::Y => "Y",
        RefState::Z => "Z",
    }
}

/// What replaying a capture through the reference detector found.
#[derive(Default)]
struct Replay {
    /// Alerts as truth records.
    alerts: Vec<TruthRecord>,
    /// Sources released by the idle timeout while they had state.
    idle_releases: u64,
    /// Longest gap between two events of a source with live state, nanoseconds.
    max_gap: u64,
    /// Sources that reached TERM.
    terms: u64,
    /// Events per (state, letter) from valid walks.
    seen: HashMap<(&'static str, char), u64>,
    events: u64,
    noise: u64,
}

fn replay(packets: &[(PacketMeta, Vec<u8>)], idle: Duration) -> Replay {
    let mut r = Replay::default();
    let mut sources: HashMap<IpAddress, (RefState, Nanos)> = HashMap::new();
    for (meta, frame) in packets {
        let Some(letter) = event_letter(meta) else {
            r.noise += 1;
            continue;
        };
        r.events += 1;
        // The payload names the same event as the port.
        let payload = &frame[meta.payload_offset as usize..];
        assert!(payload.starts_with(format!("FSM1 {letter} seq=").as_bytes()), "{payload:?}");
        let state = match sources.get(&meta.src) {
            Some(&(s, last)) => {
                let gap = meta.ts.since(last);
                r.max_gap = r.max_gap.max(gap.0);
                if gap >= idle {
                    r.idle_releases += 1;
                    RefState::Initial
                } else {
                    s
                }
            }
            None => RefState::Initial,
        };
        *r.seen.entry((ref_name(state), letter)).or_default() += 1;
        match ref_step(state, letter) {
            RefStep::To(next) => {
                sources.insert(meta.src, (next, meta.ts));
            }
            RefStep::Term => {
                sources.remove(&meta.src);
                r.terms += 1;
            }
            RefStep::Invalid => {
                r.alerts.push(TruthRecord {
                    ts: meta.ts.to_string(),
                    ts_ns: meta.ts.0,
                    src_ip: meta.src.to_std(),
                    dst_ip: meta.dst.to_std(),
                    src_port: meta.src_port,
                    dst_port: meta.dst_port,
                    state: serde_json::from_str(&format!("\"{}\"", ref_name(state))).expect("a state name"),
                    event: serde_json::from_str(&format!("\"{letter}\"")).expect("an event letter"),
                });
                sources.insert(meta.src, (RefState::Initial, meta.ts));
            }
        }
    }
    r
}

fn small(seed: u64) -> SeedParams {
    SeedParams { events: 20_000, clients: 200, seed, ..SeedParams::default() }
}

#[test]
fn same_seed_gives_byte_identical_files_in_every_format() {
    for format in
        [OutputFormat::Pcap { nanos: true }, OutputFormat::Pcap { nanos: false }, OutputFormat::PcapNg]
    {
        let p = SeedParams { format, error_prob: 0.01, noise: 0.2, ..small(42) };
        let a = generate_in_memory(&p).unwrap();
        let b = generate_in_memory(&p).unwrap();
        assert!(a.capture == b.capture, "{format:?}: captures differ");
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.summary, b.summary);
        assert!(!a.truth.is_empty());
        // Streaming into a writer gives the same bytes as the in-memory helper.
        let mut streamed = Vec::new();
        let mut truth = Vec::new();
        generate(&p, &mut streamed, Some(&mut truth)).unwrap();
        assert!(streamed == a.capture);
        assert_eq!(outpost_tools::seed::read_truth(truth.as_slice()).unwrap(), a.truth);
    }
}

#[test]
fn different_seeds_give_different_traffic() {
    let a = generate_in_memory(&SeedParams { error_prob: 0.01, ..small(1) }).unwrap();
    let b = generate_in_memory(&SeedParams { error_prob: 0.01, ..small(2) }).unwrap();
    assert_ne!(a.capture, b.capture);
    assert_ne!(a.truth, b.truth);
    assert_eq!(a.summary.events, b.summary.events);
}

#[test]
fn without_errors_every_walk_is_valid_with_the_flink_probabilities() {
    let p = SeedParams { events: 100_000, error_prob: 0.0, ..small(7) };
    let capture = generate_in_memory(&p).unwrap();
    assert!(capture.truth.is_empty());
    assert_eq!(capture.summary.invalid, 0);
    let packets = decode_all(&capture);
    let r = replay(&packets, p.idle_timeout);
    assert!(r.alerts.is_empty(), "first invalid transition: {:?}", r.alerts.first());
    assert_eq!(r.idle_releases, 0);
    assert_eq!(r.events, 100_000);
    assert_eq!(r.noise, 0);
    // Every TERM replaced a client with a new one.
    assert_eq!(capture.summary.clients_created, u64::from(p.clients) + r.terms);
    assert!(r.terms > 15_000, "walks average under 5 events: {} terms", r.terms);

    let seen = |s, l| r.seen.get(&(s, l)).copied().unwrap_or(0) as f64;
    let share = |s, l, other| seen(s, l) / (seen(s, l) + seen(s, other));
    let a = share("INITIAL", 'a', 'c');
    let b = share("X", 'b', 'd');
    let f = share("Z", 'f', 'g');
    assert!((a - 0.6).abs() < 0.015, "INITIAL a share {a}");
    assert!((b - 0.2).abs() < 0.02, "X b share {b}");
    assert!((f - 0.5).abs() < 0.015, "Z f share {f}");
    // f_prob 0 never loops on Z.
    let no_f = generate_in_memory(&SeedParams { f_prob: 0.0, error_prob: 0.0, ..small(7) }).unwrap();
    let r0 = replay(&decode_all(&no_f), p.idle_timeout);
    assert_eq!(r0.seen.get(&("Z", 'f')), None);
    assert!(r0.alerts.is_empty());
}

#[test]
fn truth_is_exactly_what_a_reference_detector_finds() {
    let p = SeedParams {
        events: 100_000,
        error_prob: 0.05,
        noise: 0.3,
        ipv6_fraction: 0.3,
        f_prob: 0.7,
        ..small(11)
    };
    let capture = generate_in_memory(&p).unwrap();
    let packets = decode_all(&capture);
    let r = replay(&packets, p.idle_timeout);
    assert_eq!(r.idle_releases, 0);
    assert_eq!(r.alerts.len(), capture.truth.len());
    for (i, (got, want)) in r.alerts.iter().zip(&capture.truth).enumerate() {
        assert_eq!(got, want, "truth line {}", i + 1);
    }
    assert_eq!(capture.summary.invalid, capture.truth.len() as u64);
    let rate = capture.truth.len() as f64 / 100_000.0;
    assert!((rate - 0.05).abs() < 0.005, "invalid share {rate}");
    // Invalid events hit every state, from both families.
    for state in ["INITIAL", "W", "X", "Y", "Z"] {
        assert!(
            capture.truth.iter().any(|t| serde_json::to_string(&t.state).unwrap().contains(state)),
            "{state}"
        );
    }
    assert!(capture.truth.iter().any(|t| t.src_ip.is_ipv6()));
    assert!(capture.truth.iter().any(|t| t.src_ip.is_ipv4()));
    // Truth is in packet order.
    assert!(capture.truth.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
}

#[test]
fn no_client_waits_the_idle_timeout_even_when_the_bound_bites() {
    // Mean think 0.4 s against a 1.9 s cap: the truncation is exercised.
    let idle = Duration::from_secs(2);
    let p = SeedParams {
        events: 50_000,
        clients: 40,
        rate: 100.0,
        idle_timeout: idle,
        error_prob: 0.02,
        ..small(5)
    };
    let capture = generate_in_memory(&p).unwrap();
    let r = replay(&decode_all(&capture), idle);
    assert_eq!(r.idle_releases, 0);
    assert!(r.max_gap < p.max_gap().0 + 1, "gap {} ns", r.max_gap);
    assert!(r.max_gap > 1_500_000_000, "the tail should come near the cap: {} ns", r.max_gap);
    assert_eq!(r.alerts, capture.truth);

    // The most clients the rate allows, at the default timeout, microsecond timestamps.
    let idle = Duration::from_secs(60);
    let p = SeedParams {
        events: 30_000,
        clients: 5_000,
        rate: 351.0,
        format: OutputFormat::Pcap { nanos: false },
        ..small(6)
    };
    let capture = generate_in_memory(&p).unwrap();
    let r = replay(&decode_all(&capture), idle);
    assert_eq!(r.idle_releases, 0);
    assert!(r.max_gap < 57_000_000_000, "gap {} ns", r.max_gap);
    assert_eq!(r.alerts, capture.truth);
}

#[test]
fn aggregate_rate_and_inter_arrivals_look_poisson() {
    let p = SeedParams {
        events: 200_000,
        clients: 1_000,
        rate: 10_000.0,
        start: Nanos::from_secs(1_000),
        ..small(3)
    };
    let capture = generate_in_memory(&p).unwrap();
    let (_, packets) = read_capture(&capture.capture);
    let first = packets[0].ts;
    let last = packets[packets.len() - 1].ts;
    assert!(first >= p.start && first.since(p.start) < Duration::from_millis(10), "first at {first}");
    assert_eq!(capture.summary.first_ts, Some(first));
    assert_eq!(capture.summary.last_ts, Some(last));
    let secs = last.since(first).as_secs_f64();
    let rate = (packets.len() - 1) as f64 / secs;
    assert!((rate / 10_000.0 - 1.0).abs() < 0.03, "rate {rate}");
    // No burst at the start: the first second already runs at the rate.
    let one_second_later = Nanos(p.start.0 + 1_000_000_000);
    let first_second = packets.iter().take_while(|q| q.ts < one_second_later).count() as f64;
    assert!((first_second / 10_000.0 - 1.0).abs() < 0.05, "{first_second} events in the first second");
    // Exponential inter-arrival times have a coefficient of variation of 1.
    let gaps: Vec<f64> = packets.windows(2).map(|w| w[1].ts.since(w[0].ts).0 as f64).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    let cv = var.sqrt() / mean;
    assert!((cv - 1.0).abs() < 0.05, "coefficient of variation {cv}");
}

#[test]
fn noise_is_never_an_event_and_does_not_change_the_events() {
    let quiet = SeedParams { error_prob: 0.02, ipv6_fraction: 0.25, ..small(9) };
    let noisy = SeedParams { noise: 0.5, ..quiet.clone() };
    let q = generate_in_memory(&quiet).unwrap();
    let n = generate_in_memory(&noisy).unwrap();
    assert_eq!(q.truth, n.truth);
    assert_eq!(n.summary.events, quiet.events);
    assert_eq!(n.summary.packets, n.summary.events + n.summary.noise_packets);
    let share = n.summary.noise_packets as f64 / n.summary.packets as f64;
    assert!((share - 0.5).abs() < 0.02, "noise share {share}");

    let q_packets = decode_all(&q);
    let n_packets = decode_all(&n);
    let (events, noise): (Vec<_>, Vec<_>) = n_packets.iter().partition(|(m, _)| event_letter(m).is_some());
    assert_eq!(events.len() as u64, n.summary.events, "noise must never be UDP to 7001..=7007");
    assert_eq!(noise.len() as u64, n.summary.noise_packets);
    // Event packets are the very same frames at the same times.
    assert_eq!(events.len(), q_packets.len());
    for ((a, fa), (b, fb)) in events.iter().zip(&q_packets) {
        assert_eq!(a.ts, b.ts);
        assert_eq!(fa, fb);
    }
    // Noise mixes protocols and never uses the event ports in either direction.
    let mut protos = HashMap::new();
    for (m, _) in &noise {
        *protos.entry(m.ip_proto).or_insert(0u64) += 1;
        if m.ip_proto == ip_proto::UDP {
            assert!(!(7001..=7007).contains(&m.src_port) && !(7001..=7007).contains(&m.dst_port));
        }
    }
    for proto in [ip_proto::UDP, ip_proto::TCP, ip_proto::ICMP, ip_proto::ICMPV6] {
        assert!(protos.get(&proto).copied().unwrap_or(0) > 10, "noise lacks protocol {proto}: {protos:?}");
    }
    assert!(noise.iter().any(|(m, _)| m.dst_port == 53) && noise.iter().any(|(m, _)| m.src_port == 443));
}

#[test]
fn events_go_from_client_networks_to_server_networks_on_every_link() {
    for link in [Link::Ethernet, Link::Raw, Link::LinuxSll, Link::LinuxSll2] {
        let p =
            SeedParams { link, ipv6_fraction: 0.5, noise: 0.1, error_prob: 0.02, events: 5_000, ..small(13) };
        let capture = generate_in_memory(&p).unwrap();
        let packets = decode_all(&capture);
        let mut v6 = 0;
        let mut ports = HashMap::new();
        for (meta, _) in packets.iter().filter(|(m, _)| event_letter(m).is_some()) {
            let (src, dst) = (meta.src.to_std(), meta.dst.to_std());
            assert!(client_networks().any(|n| n.contains(src)), "{src} is not a client address");
            assert!(server_networks().any(|n| n.contains(dst)), "{dst} is not a server address");
            assert!((32768..=60999).contains(&meta.src_port));
            // One source port per client address while it lives.
            let port = *ports.entry(src).or_insert(meta.src_port);
            assert_eq!(port, meta.src_port, "{src} changed its source port");
            v6 += u32::from(src.is_ipv6());
        }
        assert!(v6 > 1_500 && v6 < 3_500, "{v6} IPv6 events of 5000");
        let r = replay(&packets, p.idle_timeout);
        assert_eq!(r.alerts, capture.truth, "{link:?}");
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    seed: SeedArgs,
}

#[test]
fn command_line_defaults_and_files() {
    use clap::CommandFactory;
    Cli::command().debug_assert();

    let cli = Cli::try_parse_from(["outpost", "--out", "x.pcap"]).unwrap();
    let defaults = SeedParams::default();
    assert_eq!(cli.seed.params(), defaults);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seed.pcapng");
    let truth = dir.path().join("truth.jsonl");
    let cli = Cli::try_parse_from([
        "outpost",
        "--out",
        out.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--format",
        "pcapng",
        "--events",
        "5000",
        "--clients",
        "100",
        "--rate",
        "2000",
        "--error-prob",
        "0.05",
        "--f-prob",
        "0.3",
        "--idle-timeout",
        "30s",
        "--start",
        "2026-03-01T12:00:00+01:00",
        "--seed",
        "99",
        "--noise",
        "0.1",
        "--ipv6-fraction",
        "0.2",
        "--link",
        "sll2",
    ])
    .unwrap();
    let params = cli.seed.params();
    assert_eq!(params.start.to_string(), "2026-03-01T11:00:00.000000000Z");
    assert_eq!(params.idle_timeout, Duration::from_secs(30));
    assert_eq!(params.format, OutputFormat::PcapNg);
    assert_eq!(params.link, Link::LinuxSll2);
    let summary = generate_seed(&cli.seed).unwrap();
    let in_memory = generate_in_memory(&params).unwrap();
    assert_eq!(summary, in_memory.summary);
    assert!(std::fs::read(&out).unwrap() == in_memory.capture);
    let from_file = read_truth_file(&truth).unwrap();
    assert_eq!(from_file, in_memory.truth);
    assert_eq!(from_file.len() as u64, summary.invalid);
    let (link, packets) = read_capture(&in_memory.capture);
    assert_eq!(link, LinkType::LinuxSll2);
    assert!(packets[0].ts >= params.start);

    // Bad options fail before any file is created.
    let bad = dir.path().join("bad.pcap");
    let cli = Cli::try_parse_from(["outpost", "--out", bad.to_str().unwrap(), "--clients", "0"]).unwrap();
    assert!(generate_seed(&cli.seed).unwrap_err().to_string().contains("--clients"));
    assert!(!bad.exists());
    assert!(Cli::try_parse_from(["outpost", "--out", "x", "--start", "tomorrow"]).is_err());
    assert!(Cli::try_parse_from(["outpost", "--out", "x", "--format", "erf"]).is_err());
}

#[test]
fn summary_counts_match_the_capture() {
    let p = SeedParams { noise: 0.25, error_prob: 0.01, ..small(21) };
    let mut capture = Vec::new();
    let summary = generate(&p, &mut capture, None::<io::Sink>).unwrap();
    let (_, packets) = read_capture(&capture);
    assert_eq!(summary.packets, packets.len() as u64);
    assert_eq!(summary.frame_bytes, packets.iter().map(|p| p.frame.len() as u64).sum::<u64>());
    assert_eq!(summary.first_ts, packets.first().map(|p| p.ts));
    assert_eq!(summary.last_ts, packets.last().map(|p| p.ts));
    // Datagram sizes vary.
    let sizes: std::collections::HashSet<usize> = packets.iter().map(|p| p.frame.len()).collect();
    assert!(sizes.len() > 40, "{} distinct sizes", sizes.len());
    let distinct_sources: std::collections::HashSet<IpAddr> = read_capture(&capture)
        .1
        .iter()
        .filter_map(|p| decode(LinkType::Ethernet, &p.frame, p.ts, p.frame.len() as u32).ok())
        .filter(|m| event_letter(m).is_some())
        .map(|m| m.src.to_std())
        .collect();
    assert!(
        distinct_sources.len() > 2_000,
        "replaced clients bring new addresses: {}",
        distinct_sources.len()
    );
}
