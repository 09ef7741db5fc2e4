//! Rough cost of `Filter::matches`: typical expressions over a mix of decoded packets.
//!
//! `cargo run --release -p outpost-filter --example filter_bench`

use std::hint::black_box;
use std::time::Instant;

use outpost_decode::{LinkType, Nanos, PacketMeta, decode};
use outpost_filter::Filter;
use outpost_tools::frame::{FrameBuilder, icmp, tcp, udp};

fn packets() -> Vec<PacketMeta> {
    let mut out = Vec::new();
    for i in 0..1024u32 {
        let v6 = i % 4 == 0;
        let (s, d) = if v6 { ("2001:db8::1", "2001:db8::2") } else { ("10.0.0.1", "192.168.1.10") };
        let t = match i % 5 {
            0 | 1 => tcp(
                40000 + (i % 100) as u16,
                [80, 443, 22][i as usize % 3],
                [0x02, 0x12, 0x10][i as usize % 3],
                i,
                0,
            ),
            2 | 3 => udp(5353, [53, 123][i as usize % 2]),
            _ => icmp(if v6 { 128 } else { 8 }, 0, i),
        };
        let mut b = FrameBuilder::new(s.parse().expect("address"), d.parse().expect("address"), t);
        if i % 7 == 0 {
            b = b.vlans(&[100]);
        }
        let f = b.payload(&[0; 20]).build();
        out.push(decode(LinkType::Ethernet, &f, Nanos(0), f.len() as u32).expect("decodes"));
    }
    out
}

fn main() {
    let metas = packets();
    let exprs = [
        "tcp",
        "tcp port 80",
        "host 10.0.0.1",
        "net 192.168.0.0/16 and not port 22",
        "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
        "udp dst port 53 or 123 and src net 10.0.0.0/8",
        "icmp[icmptype] == icmp-echo or icmp6[icmp6type] == icmp6-echo",
        "vlan 100 and tcp dst port 443",
        "(tcp or udp) and (port 80 or 443 or 53 or 22) and not host 8.8.8.8 and len > 60",
        "len - 14 > 40 and tcp[13] + 1 < 20",
    ];
    const ROUNDS: usize = 20_000;
    for e in exprs {
        let f = Filter::parse(e).expect("valid expression");
        let mut hits = 0usize;
        let start = Instant::now();
        for _ in 0..ROUNDS {
            for m in &metas {
                hits += usize::from(black_box(&f).matches(black_box(m)));
            }
        }
        let ns = start.elapsed().as_nanos() as f64 / (ROUNDS * metas.len()) as f64;
        println!(
            "{ns:6.2} ns/packet  {:>5.1}% match  {} insns  {e}",
            100.0 * hits as f64 / (ROUNDS * metas.len()) as f64,
            f.instructions()
        );
    }
}
