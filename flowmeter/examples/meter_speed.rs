//! Quick check of decode + flow metering speed on one core from memory (not the benchmark of
//! record; see bench/). Frames are synthesised into a reused block, as the receive thread
//! copies them, so only the flow table's memory is accessed at random.

use std::time::Instant;

use outpost_decode::{LinkType, Nanos, decode};
use outpost_flowmeter::{FlowConfig, FlowMeter};
use outpost_tools::frame::{FrameBuilder, tcp};

const BLOCK: usize = 256;

fn main() {
    let batch: usize = std::env::var("BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(32);
    for flows in [10_000u32, 100_000, 1_000_000] {
        let mut template = FrameBuilder::new(
            std::net::Ipv4Addr::new(10, 0, 0, 1).into(),
            std::net::Ipv4Addr::new(192, 168, 0, 1).into(),
            tcp(10_000, 443, 0x10, 1, 1),
        )
        .build();
        template.resize(60, 0);
        let mut cfg = FlowConfig::default();
        cfg.table.capacity = (flows as usize * 5 / 4).max(1024);
        let mut meter = FlowMeter::new(cfg, 0);
        let total = 20_000_000u64;
        let mut sink = 0u64;
        let mut block = vec![0u8; BLOCK * 64];
        let mut metas = Vec::with_capacity(BLOCK);
        let start = Instant::now();
        let mut n = 0u64;
        while n < total {
            // Fill a block: flow f = scrambled(n), source address and port patched in.
            for k in 0..BLOCK {
                let i = n + k as u64;
                let f = (i.wrapping_mul(2_654_435_761) % u64::from(flows)) as u32;
                let frame = &mut block[k * 64..k * 64 + 60];
                frame.copy_from_slice(&template);
                frame[26..30].copy_from_slice(&(0x0a00_0000 + f).to_be_bytes());
                frame[34..36].copy_from_slice(&(10_000 + (f % 50_000) as u16).to_be_bytes());
            }
            for chunk in (0..BLOCK).collect::<Vec<_>>().chunks(batch) {
                metas.clear();
                for &k in chunk {
                    let ts = Nanos(1_000_000_000_000 + (n + k as u64) * 50);
                    if let Ok(m) = decode(LinkType::Ethernet, &block[k * 64..k * 64 + 60], ts, 64) {
                        metas.push(m);
                    }
                }
                if batch > 1 {
                    meter.prepare(&metas);
                    for (i, m) in metas.iter().enumerate() {
                        meter.on_prepared(i, m, &mut |r| sink += r.fwd.packets);
                    }
                } else {
                    for m in &metas {
                        meter.on_packet(m, &mut |r| sink += r.fwd.packets);
                    }
                }
            }
            n += BLOCK as u64;
        }
        let el = start.elapsed().as_secs_f64();
        println!(
            "{flows:>8} flows: {:.2} Mpps ({:.1} ns/packet) [{sink}]",
            total as f64 / el / 1e6,
            el * 1e9 / total as f64
        );
    }
}
