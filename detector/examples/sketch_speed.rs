//! Rough costs of the distinct and windowed counters: nanoseconds per insert for small and
//! large cardinalities, and memory per key. Not a benchmark with statistics; a quick look.
//!
//! ```text
//! cargo run --release -p outpost-detector --example sketch_speed
//! ```

use std::hint::black_box;
use std::time::Instant;

use outpost_decode::{Duration, Nanos};
use outpost_detector::sketch::{DistinctCounter, WindowedCount, WindowedDistinct};
use outpost_tools::splitmix::SplitMix64 as Rng;

/// Runs `f(i)` for `i in 0..n` and prints the mean time per call.
fn time(label: &str, n: u64, mut f: impl FnMut(u64)) {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:<62} {ns:>8.1} ns/insert");
}

fn main() {
    let minute = Duration::from_secs(60);

    let mut small = DistinctCounter::default();
    time("DistinctCounter, 5 distinct values (inline, exact)", 10_000_000, |i| {
        black_box(small.insert(i % 5));
    });
    let mut near_limit = DistinctCounter::default();
    time("DistinctCounter, 120 distinct values (heap list, exact)", 10_000_000, |i| {
        black_box(near_limit.insert(i % 120));
    });
    let mut rng = Rng(1);
    let mut large = DistinctCounter::default();
    let n = 1_000_000;
    time("DistinctCounter, 10^6 distinct values (sketch, p = 10)", n, |_| {
        black_box(large.insert(rng.next_u64()));
    });
    let error = (large.estimate() as f64 - n as f64) / n as f64;
    println!(
        "  estimate {} for {n} ({:+.2} % = {:+.1} standard errors, one seeded run), {} bytes; small key {} bytes",
        large.estimate(),
        error * 100.0,
        error / large.precision().standard_error(),
        large.memory_bytes(),
        small.memory_bytes()
    );

    // One key, 5 values, one insert per microsecond: bucket changes every 10 s of event time.
    let mut window = WindowedDistinct::new(minute, 6, 128);
    time("WindowedDistinct 60 s/6, 5 values, 1 insert/µs", 10_000_000, |i| {
        black_box(window.insert(Nanos(i * 1_000), i % 5).ok());
    });
    // A scanner: every insert a new value, 10^6 over 120 s of event time (buckets expire).
    let mut scanner = WindowedDistinct::new(minute, 6, 128);
    let mut rng = Rng(2);
    time("WindowedDistinct 60 s/6, 10^6 new values over 120 s (sketch)", 1_000_000, |i| {
        black_box(scanner.insert(Nanos(i * 120_000), rng.next_u64()).ok());
    });
    let end = Nanos(999_999 * 120_000);
    println!(
        "  estimate {} (about 500,000 in the last 60 s), {} bytes",
        scanner.estimate(end),
        scanner.memory_bytes()
    );
    let mut count = WindowedCount::new(Duration::from_secs(10), 10);
    time("WindowedCount 10 s/10, 1 add/µs", 10_000_000, |i| {
        black_box(count.add(Nanos(i * 1_000), 1).ok());
    });

    // Many keys: 100,000 (source, destination) keys with 3 ports each, in random order —
    // cache misses dominate, as in a real table.
    let keys = 100_000u64;
    let mut table: Vec<WindowedDistinct> = (0..keys).map(|_| WindowedDistinct::new(minute, 6, 128)).collect();
    let mut rng = Rng(3);
    time("WindowedDistinct, 10^5 keys x 3 values, random key order", 3_000_000, |i| {
        let key = (rng.next_u64() % keys) as usize;
        if let Some(counter) = table.get_mut(key) {
            black_box(counter.insert(Nanos(i * 1_000), rng.next_u64() % 3).ok());
        }
    });
    let bytes: usize = table.iter().map(WindowedDistinct::memory_bytes).sum();
    println!("  {:.1} bytes per key (3 values each)", bytes as f64 / keys as f64);
}
