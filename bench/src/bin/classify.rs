//! Event classification cost per event class: the seed rule's seven event filters
//! (`udp dst port 7001` .. `udp dst port 7007`, compiled by `outpost_filter`) tried in order
//! until one matches, as `StateMachine::classify` does for every packet.
//!
//! Packets are decoded beforehand; only classification is timed. Classes: events `a`..`g`
//! (the n-th event matches on the n-th filter) and the scenario's noise kinds (DNS, NTP,
//! syslog over UDP, HTTPS over TCP, ICMP echo), which try all seven filters and match none.
//! For comparison, `port table` classifies the same packets with a hand-written check
//! (UDP, transport parsed, not a later fragment, destination port in 7001..=7007 → event
//! `port - 7001`): what a classifier that indexes a rule's filters by protocol and port
//! could approach.
//!
//! Usage: `classify [--reps N]` (default 11). Order of cases rotates every repetition.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::time::Instant;

use outpost_bench::Samples;
use outpost_decode::meta::ip_proto;
use outpost_decode::{Fragment, LinkType, Nanos, PacketMeta, Transport, decode};
use outpost_filter::Filter;
use outpost_tools::frame::{FrameBuilder, icmp, tcp, udp};

/// Packets per class and pass.
const PACKETS: usize = 4096;
/// Passes per class and repetition.
const PASSES: usize = 200;

/// The seed rule's event filters, in configuration order (config/outpost.toml).
const EVENT_FILTERS: [&str; 7] = [
    "udp dst port 7001",
    "udp dst port 7002",
    "udp dst port 7003",
    "udp dst port 7004",
    "udp dst port 7005",
    "udp dst port 7006",
    "udp dst port 7007",
];

/// One class of packets: a name and how to build its i-th packet.
struct Class {
    name: &'static str,
    build: fn(u16) -> FrameBuilder,
}

fn client(i: u16) -> IpAddr {
    let b = i.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, 1, b[0], b[1]))
}

fn server() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10))
}

fn event(n: u16) -> fn(u16) -> FrameBuilder {
    // One function per event: the port is part of the class.
    const PORTS: [fn(u16) -> FrameBuilder; 7] = [
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7001)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7002)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7003)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7004)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7005)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7006)).payload(&[0; 16]),
        |i| FrameBuilder::new(client(i), server(), udp(40000, 7007)).payload(&[0; 16]),
    ];
    PORTS.get(usize::from(n)).copied().unwrap_or(PORTS[0])
}

fn classes() -> Vec<Class> {
    let names = ["event a", "event b", "event c", "event d", "event e", "event f", "event g"];
    let mut out: Vec<Class> =
        names.iter().zip(0u16..).map(|(&name, n)| Class { name, build: event(n) }).collect();
    out.extend([
        Class {
            name: "noise dns (udp 53)",
            build: |i| FrameBuilder::new(client(i), server(), udp(40000, 53)),
        },
        Class {
            name: "noise ntp (udp 123)",
            build: |i| FrameBuilder::new(client(i), server(), udp(123, 123)),
        },
        Class {
            name: "noise syslog (udp 514)",
            build: |i| FrameBuilder::new(client(i), server(), udp(514, 514)),
        },
        Class {
            name: "noise https (tcp 443)",
            build: |i| FrameBuilder::new(client(i), server(), tcp(40000, 443, 0x18, 1, 1)),
        },
        Class { name: "noise icmp echo", build: |i| FrameBuilder::new(client(i), server(), icmp(8, 0, 1)) },
    ]);
    out
}

/// What `StateMachine::classify` does: the first filter that matches.
#[inline]
fn classify(filters: &[Filter], m: &PacketMeta) -> Option<u16> {
    let i = filters.iter().position(|f| f.matches(m))?;
    u16::try_from(i).ok()
}

/// The hand-written equivalent for this rule.
#[inline]
fn port_table(m: &PacketMeta) -> Option<u16> {
    let udp =
        m.ip_proto == ip_proto::UDP && m.transport == Transport::Parsed && m.fragment != Fragment::Later;
    (udp && (7001..=7007).contains(&m.dst_port)).then(|| m.dst_port - 7001)
}

fn time(metas: &[PacketMeta], f: impl Fn(&PacketMeta) -> Option<u16>) -> f64 {
    let start = Instant::now();
    for _ in 0..PASSES {
        for m in black_box(metas) {
            black_box(f(black_box(m)));
        }
    }
    start.elapsed().as_secs_f64() * 1e9 / (PASSES * metas.len()) as f64
}

fn main() -> ExitCode {
    let mut reps = 11usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse::<usize>().ok())) {
            ("--reps", Some(n)) => reps = n.max(1),
            _ => {
                eprintln!("usage: classify [--reps N]");
                return ExitCode::from(2);
            }
        }
    }
    let filters: Vec<Filter> = match EVENT_FILTERS.iter().map(|e| Filter::parse(e)).collect() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("classify: {e}");
            return ExitCode::FAILURE;
        }
    };
    let classes = classes();
    let mut sets = Vec::new();
    for class in &classes {
        let mut metas = Vec::with_capacity(PACKETS);
        let mut buf = Vec::new();
        for i in 0..PACKETS {
            buf.clear();
            (class.build)(u16::try_from(i).unwrap_or(0)).write_to(&mut buf);
            let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            match decode(LinkType::Ethernet, &buf, Nanos::ZERO, len) {
                Ok(m) => metas.push(m),
                Err(e) => {
                    eprintln!("classify: {} does not decode: {e}", class.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        // Both classifiers must agree before either is timed.
        if metas.iter().any(|m| classify(&filters, m) != port_table(m)) {
            eprintln!("classify: filters and port table disagree on {}", class.name);
            return ExitCode::FAILURE;
        }
        sets.push(metas);
    }

    let mut filt: Vec<Samples> = classes.iter().map(|_| Samples::default()).collect();
    let mut table: Vec<Samples> = classes.iter().map(|_| Samples::default()).collect();
    let n = classes.len();
    for rep in 0..=reps {
        for k in 0..n {
            let i = (k + rep) % n;
            let Some(metas) = sets.get(i) else { continue };
            let a = time(metas, |m| classify(&filters, m));
            let b = time(metas, port_table);
            if rep > 0 {
                if let (Some(fs), Some(ts)) = (filt.get_mut(i), table.get_mut(i)) {
                    fs.push(a);
                    ts.push(b);
                }
            }
        }
    }

    println!(
        "classification by the seed rule's {} event filters, {reps} repetitions (median ns/packet), {PACKETS} packets x {PASSES} passes per class",
        filters.len()
    );
    println!("filter instructions: {:?}", filters.iter().map(Filter::instructions).collect::<Vec<_>>());
    println!("{:<24} {:>16} {:>16} {:>16}", "class", "filters tried", "filters ns/pkt", "port table ns/pkt");
    for ((class, metas), (f, t)) in classes.iter().zip(&sets).zip(filt.iter().zip(&table)) {
        let tried =
            metas.first().and_then(|m| classify(&filters, m)).map_or(filters.len(), |e| usize::from(e) + 1);
        println!("{:<24} {:>16} {:>16.2} {:>16.2}", class.name, tried, f.median(), t.median());
    }
    ExitCode::SUCCESS
}
