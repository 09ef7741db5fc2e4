//! Load time, memory and lookup cost of intel lists at a million entries.
//!
//! ```text
//! cargo run -p outpost-detector --profile test-release --example intel_bench [ENTRIES]
//! ```
//!
//! Writes a list of ENTRIES lines (default 1,000,000; 90 % IPv4 hosts, 5 % IPv4 prefixes /8../30
//! with short ones rare, 2.5 % IPv6 hosts, 2.5 % IPv6 prefixes /16../127) to a temporary
//! file, loads it a few times, and times lookups of hits and misses of each kind in random
//! order (so most lookups start from cold cache lines, as with real traffic). For comparison
//! it times the design the module did not choose: a hash table per distinct prefix length,
//! probed longest first.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use hashbrown::HashMap;
use outpost_decode::IpAddress;
use outpost_detector::intel::{IntelSet, IntelSource};
use outpost_tools::splitmix::SplitMix64 as Rng;

/// An address inside 2000::/4, like global unicast.
fn v6_bits(rng: &mut Rng) -> u128 {
    0x2000_u128 << 112 | rng.next_u128() >> 4
}

fn v4(bits: u32) -> IpAddress {
    IpAddress::from_v4(bits.to_be_bytes())
}

/// IPv4 prefix lengths as in real feeds: few short prefixes.
fn v4_prefix_len(rng: &mut Rng) -> u32 {
    match rng.below(1000) {
        0 => 8 + rng.below(5) as u32,
        1..50 => 13 + rng.below(4) as u32,
        50..700 => 17 + rng.below(8) as u32,
        _ => 25 + rng.below(6) as u32,
    }
}

struct Generated {
    text: String,
    v4_hosts: Vec<u32>,
    v4_prefixes: Vec<(u32, u32)>,
    v6_hosts: Vec<u128>,
    v6_prefixes: Vec<(u128, u32)>,
}

fn generate(entries: usize, rng: &mut Rng) -> Generated {
    let mut g = Generated {
        text: String::with_capacity(entries * 16),
        v4_hosts: Vec::new(),
        v4_prefixes: Vec::new(),
        v6_hosts: Vec::new(),
        v6_prefixes: Vec::new(),
    };
    for i in 0..entries {
        match i * 1000 / entries {
            0..900 => {
                let a = rng.next_u64() as u32;
                let _ = writeln!(g.text, "{}", Ipv4Addr::from(a));
                g.v4_hosts.push(a);
            }
            900..950 => {
                let len = v4_prefix_len(rng);
                let net = (rng.next_u64() as u32) & (u32::MAX << (32 - len));
                let _ = writeln!(g.text, "{}/{len}", Ipv4Addr::from(net));
                g.v4_prefixes.push((net, len));
            }
            950..975 => {
                let a = v6_bits(rng);
                let _ = writeln!(g.text, "{}", Ipv6Addr::from(a));
                g.v6_hosts.push(a);
            }
            _ => {
                let len = 16 + rng.below(112) as u32;
                let net = v6_bits(rng) & (u128::MAX << (128 - len));
                let _ = writeln!(g.text, "{}/{len}", Ipv6Addr::from(net));
                g.v6_prefixes.push((net, len));
            }
        }
    }
    g
}

/// Mean nanoseconds per call of `f` over `queries`, best of three passes.
fn time_per_query<T>(queries: &[T], mut f: impl FnMut(&T) -> bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut hits = 0usize;
        for q in queries {
            hits += usize::from(f(black_box(q)));
        }
        black_box(hits);
        best = best.min(start.elapsed().as_nanos() as f64 / queries.len().max(1) as f64);
    }
    best
}

/// The alternative: one hash table per distinct prefix length, longest first.
struct PerLengthTables {
    v4: Vec<(u32, HashMap<u32, u32, foldhash::fast::FixedState>)>,
}

impl PerLengthTables {
    fn new(g: &Generated) -> PerLengthTables {
        let mut by_len: HashMap<
            u32,
            HashMap<u32, u32, foldhash::fast::FixedState>,
            foldhash::fast::FixedState,
        > = HashMap::default();
        for (i, &h) in g.v4_hosts.iter().enumerate() {
            by_len.entry(32).or_default().entry(h).or_insert(i as u32);
        }
        for (i, &(net, len)) in g.v4_prefixes.iter().enumerate() {
            by_len.entry(len).or_default().entry(net).or_insert(i as u32);
        }
        let mut v4: Vec<_> = by_len.into_iter().collect();
        v4.sort_by_key(|t| std::cmp::Reverse(t.0));
        PerLengthTables { v4 }
    }

    fn lookup_v4(&self, a: u32) -> Option<u32> {
        self.v4.iter().find_map(|(len, t)| t.get(&(a & (u32::MAX << (32 - len)))).copied())
    }
}

fn main() {
    let entries: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut rng = Rng(1);
    let g = generate(entries, &mut rng);
    let dir = std::env::temp_dir().join(format!("outpost-intel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("list.txt");
    std::fs::write(&path, &g.text).expect("write list");
    println!(
        "list: {entries} entries ({} IPv4 hosts, {} IPv4 prefixes, {} IPv6 hosts, {} IPv6 prefixes), {:.1} MB",
        g.v4_hosts.len(),
        g.v4_prefixes.len(),
        g.v6_hosts.len(),
        g.v6_prefixes.len(),
        g.text.len() as f64 / 1e6
    );

    let sources = [IntelSource::strict("bench", &path)];
    let mut load_ms = Vec::new();
    let mut set = IntelSet::empty();
    for _ in 0..3 {
        let start = Instant::now();
        set = IntelSet::load(&sources).expect("load");
        load_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let start = Instant::now();
    black_box(std::fs::read(&path).expect("read"));
    let read_ms = start.elapsed().as_secs_f64() * 1e3;
    let _ = std::fs::remove_dir_all(&dir);
    let stats = set.stats();
    println!("load: {load_ms:.0?} ms (reading the file alone: {read_ms:.1} ms)");
    println!("{stats:?}");
    println!(
        "memory: {:.1} MB, {:.1} bytes per entry",
        stats.memory_bytes as f64 / 1e6,
        stats.memory_bytes as f64 / entries as f64
    );

    // Queries, in random order.
    const N: usize = 1 << 20;
    let pick = |rng: &mut Rng, n: usize| rng.below(n.max(1) as u64) as usize;
    let mut v4_host_hits = Vec::with_capacity(N);
    let mut v4_prefix_hits = Vec::with_capacity(N);
    let mut v4_misses = Vec::with_capacity(N);
    let mut v6_host_hits = Vec::with_capacity(N);
    let mut v6_prefix_hits = Vec::with_capacity(N);
    let mut v6_misses = Vec::with_capacity(N);
    while v4_host_hits.len() < N && !g.v4_hosts.is_empty() {
        v4_host_hits.push(v4(g.v4_hosts[pick(&mut rng, g.v4_hosts.len())]));
    }
    while v4_prefix_hits.len() < N && !g.v4_prefixes.is_empty() {
        let (net, len) = g.v4_prefixes[pick(&mut rng, g.v4_prefixes.len())];
        let a = v4(net | (rng.next_u64() as u32 & (u32::MAX >> len)));
        if set.lookup(&a).is_some_and(|m| m.prefix.family_len() < 32) {
            v4_prefix_hits.push(a);
        }
    }
    while v4_misses.len() < N {
        let a = v4(rng.next_u64() as u32);
        if set.lookup(&a).is_none() {
            v4_misses.push(a);
        }
    }
    while v6_host_hits.len() < N && !g.v6_hosts.is_empty() {
        v6_host_hits.push(IpAddress::from_bits(g.v6_hosts[pick(&mut rng, g.v6_hosts.len())]));
    }
    while v6_prefix_hits.len() < N && !g.v6_prefixes.is_empty() {
        let (net, len) = g.v6_prefixes[pick(&mut rng, g.v6_prefixes.len())];
        let a = IpAddress::from_bits(net | (v6_bits(&mut rng) & (u128::MAX >> len)));
        if set.lookup(&a).is_some_and(|m| m.prefix.family_len() < 128) {
            v6_prefix_hits.push(a);
        }
    }
    while v6_misses.len() < N {
        let a = IpAddress::from_bits(v6_bits(&mut rng));
        if set.lookup(&a).is_none() {
            v6_misses.push(a);
        }
    }
    let hot: Vec<IpAddress> = v4_misses.iter().take(1024).copied().cycle().take(N).collect();

    println!("lookup, ns (random order over {N} queries, best of 3):");
    for (name, queries) in [
        ("ipv4 host hit", &v4_host_hits),
        ("ipv4 prefix hit", &v4_prefix_hits),
        ("ipv4 miss", &v4_misses),
        ("ipv4 miss, 1024 hot addresses", &hot),
        ("ipv6 host hit", &v6_host_hits),
        ("ipv6 prefix hit", &v6_prefix_hits),
        ("ipv6 miss", &v6_misses),
    ] {
        println!("  {name:32} {:6.1}", time_per_query(queries, |a| set.lookup(a).is_some()));
    }

    let alt = PerLengthTables::new(&g);
    let as_u32 = |a: &IpAddress| a.v4_octets().map_or(0, u32::from_be_bytes);
    println!("alternative, a hash table per IPv4 prefix length ({} lengths), ns:", alt.v4.len());
    for (name, queries) in
        [("ipv4 host hit", &v4_host_hits), ("ipv4 prefix hit", &v4_prefix_hits), ("ipv4 miss", &v4_misses)]
    {
        println!("  {name:32} {:6.1}", time_per_query(queries, |a| alt.lookup_v4(as_u32(a)).is_some()));
    }
}
