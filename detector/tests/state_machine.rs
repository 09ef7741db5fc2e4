//! State machines end to end, through the workers and the collector: per-state timeouts that
//! alert at their deadline whatever noticed them, and the same alerts for any worker count.

mod common;
use common::*;
use outpost_detector::AlertJson;

/// A TCP handshake watched per client: a SYN must be followed by the client's ACK within 3 s.
const HANDSHAKE: &str = r#"
[[state_machine]]
name = "tcp-handshake"
description = "A client's SYN not followed by its ACK within 3 s: a half-open connection."
filter = "tcp"
initial = "CLOSED"
terminal = ["OPEN"]
idle_timeout = "60s"
state_timeouts = { SYN_SENT = "3s" }
events = [
  { name = "syn", filter = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn" },
  { name = "ack", filter = "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-ack" },
]
transitions = ["CLOSED --syn--> SYN_SENT", "SYN_SENT --ack--> OPEN"]
"#;

fn tcp(src: &str, flags: u16, ts: Nanos) -> In {
    let In::Packet(mut m) = packet(src, "192.168.1.10", 6, 40_000, 443, ts) else {
        unreachable!("packet() builds packets")
    };
    m.tcp_flags = flags;
    In::Packet(m)
}

const SYN: u16 = 0x02;
const ACK: u16 = 0x10;

/// The alerts as (rule, state or event, source, ts, id), in output order.
fn run(workers: usize) -> Vec<(String, String, IpAddress, Nanos, String)> {
    let rules = rules(HANDSHAKE);
    let mut s = Sensor::new(&rules, &Setup { workers, block: 4, ..Setup::default() });
    // 10.0.0.1 completes its handshake; 10.0.0.2 never sends the ACK (noticed by ticks);
    // 10.0.0.3 sends it 4 s late (noticed by the late ACK itself, which then meets CLOSED: an
    // invalid transition too); 10.0.0.4's SYN comes 2 s before the end of input (no alert).
    let mut inputs = vec![
        tcp("10.0.0.1", SYN, t(1)),
        tcp("10.0.0.2", SYN, t(1)),
        tcp("10.0.0.1", ACK, t(2)),
        tcp("10.0.0.3", SYN, t(10)),
        tcp("10.0.0.3", ACK, t(14)),
    ];
    inputs.extend((15..30).map(|sec| udp("10.0.0.9", "192.168.1.53", 53, t(sec))));
    inputs.push(tcp("10.0.0.4", SYN, t(28)));
    inputs.push(udp("10.0.0.9", "192.168.1.53", 53, t(30)));
    s.each(inputs);
    s.finish();
    s.alerts()
        .iter()
        .map(|a| {
            let networks = NetworkMap::default();
            let json =
                serde_json::to_value(AlertJson { alert: a, rules: &rules, networks: &networks, sensor: "t" })
                    .expect("alert json");
            let what =
                json.get("state").or_else(|| json.get("event")).map(ToString::to_string).unwrap_or_default();
            let kind = if json.get("timed_out").is_some() { "timeout" } else { "invalid" };
            (kind.to_string(), what, a.src, a.ts, a.id.to_string())
        })
        .collect()
}

#[test]
fn a_state_timeout_alerts_at_its_deadline_once_for_any_worker_count() {
    let one = run(1);
    // Timeouts reach the alert policy at the next watermark (like absence alerts), so the
    // output is in event-time order per kind, not across kinds: compare in time order.
    let mut kinds: Vec<(&str, &str, IpAddress, Nanos)> =
        one.iter().map(|(k, w, src, ts, _)| (k.as_str(), w.as_str(), *src, *ts)).collect();
    kinds.sort_by_key(|k| k.3);
    assert_eq!(
        kinds,
        vec![
            ("timeout", "\"SYN_SENT\"", ip("10.0.0.2"), t(4)),
            ("timeout", "\"SYN_SENT\"", ip("10.0.0.3"), t(13)),
            ("invalid", "\"CLOSED\"", ip("10.0.0.3"), t(14)),
        ]
    );
    for workers in [2, 3] {
        assert_eq!(run(workers), one, "{workers} workers");
    }
}
