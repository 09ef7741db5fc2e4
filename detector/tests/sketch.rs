//! Distinct counters and windowed counters (`outpost_detector::sketch`): exactness below the
//! limit, sketch error, merging, window boundaries, out-of-order input, memory, and seeded
//! model-based runs over arbitrary input.

use std::collections::HashMap;

use outpost_decode::{Duration, Nanos};
use outpost_detector::sketch::{
    Counted, DEFAULT_EXACT_LIMIT, DistinctCounter, Late, Mode, Precision, SketchError, WindowedCount,
    WindowedDistinct,
};
use outpost_tools::splitmix::SplitMix64 as Rng;

fn secs(s: u64) -> Nanos {
    Nanos::from_secs(s)
}

/// A 60 s window of six 10 s buckets.
fn minute(exact_limit: usize) -> WindowedDistinct {
    WindowedDistinct::new(Duration::from_secs(60), 6, exact_limit)
}

fn inserted(window: &mut WindowedDistinct, now: Nanos, value: u64) -> Counted {
    window.insert(now, value).expect("inside the window")
}

// ---- DistinctCounter ----------------------------------------------------------------------

#[test]
fn counts_exactly_up_to_the_limit_then_switches_to_a_sketch() {
    let mut counter = DistinctCounter::new(128);
    for v in 0..128u64 {
        assert!(counter.insert(v), "value {v} is new");
        assert!(!counter.insert(v), "value {v} again is not");
        assert_eq!(counter.estimate(), v + 1);
        assert_eq!(counter.mode(), Mode::Exact);
    }
    // Raw port numbers work as values: the counter mixes them itself.
    assert!(counter.insert(128));
    assert_eq!(counter.mode(), Mode::Sketch);
    // Never below what it is known to have seen.
    assert!(counter.estimate() >= 129);
    for v in 0..129u64 {
        assert!(!counter.insert(v), "a value seen before cannot raise a register");
    }
}

#[test]
fn limit_zero_is_a_sketch_from_the_first_value() {
    let mut counter = DistinctCounter::new(0);
    assert_eq!(counter.estimate(), 0);
    assert!(counter.insert(7));
    assert_eq!(counter.mode(), Mode::Sketch);
    assert_eq!(counter.estimate(), 1);
}

#[test]
fn sketch_error_is_within_three_standard_errors() {
    let mut rng = Rng(0x5eed);
    let mut errors = Vec::new();
    for (n, runs, precision) in [
        (1_000u64, 20, 10u8),
        (10_000, 20, 10),
        (100_000, 5, 10),
        (1_000_000, 2, 10),
        (100_000, 2, 12),
        (100_000, 2, 14),
        (1_000_000, 1, 6),
    ] {
        let precision = Precision::new(precision).expect("valid precision");
        let sigma = precision.standard_error();
        for _ in 0..runs {
            let mut counter = DistinctCounter::with_precision(DEFAULT_EXACT_LIMIT, precision);
            for _ in 0..n {
                counter.insert(rng.next_u64());
            }
            let error = (counter.estimate() as f64 - n as f64) / n as f64;
            assert!(error.abs() < 3.0 * sigma, "n = {n}, p = {}: error {error:.4}", precision.bits());
            if precision == Precision::DEFAULT {
                errors.push(error);
            }
        }
    }
    // Over the 47 runs at p = 10, no visible bias and the spread the theory gives.
    let k = errors.len() as f64;
    let mean = errors.iter().sum::<f64>() / k;
    let rms = (errors.iter().map(|e| e * e).sum::<f64>() / k).sqrt();
    let sigma = Precision::DEFAULT.standard_error();
    assert!(mean.abs() < 3.0 * sigma / k.sqrt(), "mean error {mean:.4}");
    assert!(rms < 1.5 * sigma, "rms error {rms:.4}");
}

/// Inserts `values` into a fresh counter of `limit`.
fn counter_of(limit: usize, precision: Precision, values: impl IntoIterator<Item = u64>) -> DistinctCounter {
    let mut counter = DistinctCounter::with_precision(limit, precision);
    for v in values {
        counter.insert(v);
    }
    counter
}

#[test]
fn merge_equals_inserting_the_union() {
    let p = Precision::DEFAULT;
    // (our values, their values): exact ∪ exact under and over the limit, exact ∪ sketch,
    // sketch ∪ exact, sketch ∪ sketch, empty sides; overlapping ranges.
    let cases: [(std::ops::Range<u64>, std::ops::Range<u64>); 8] = [
        (0..10, 5..20),
        (0..60, 40..100),
        (0..100, 50..200),
        (0..20, 10..5_000),
        (0..5_000, 4_000..4_020),
        (0..50_000, 20_000..90_000),
        (0..0, 0..300),
        (0..300, 0..0),
    ];
    for (ours, theirs) in cases {
        let mut merged = counter_of(100, p, ours.clone());
        merged.merge(&counter_of(100, p, theirs.clone()));
        let union = counter_of(100, p, ours.clone().chain(theirs.clone()));
        assert_eq!(merged, union, "{ours:?} ∪ {theirs:?}");
        assert_eq!(merged.estimate(), union.estimate());
        assert_eq!(merged.mode(), union.mode());
    }
}

#[test]
fn partial_aggregates_merge_in_any_grouping() {
    // Four workers see overlapping slices of the values; the collector merges them.
    let p = Precision::DEFAULT;
    let slices = [0..90u64, 60..400, 390..395, 1_000..1_050];
    let parts: Vec<DistinctCounter> = slices.iter().map(|r| counter_of(128, p, r.clone())).collect();
    let union = counter_of(128, p, slices.iter().flat_map(Clone::clone));
    let mut forward = DistinctCounter::new(128);
    for part in &parts {
        forward.merge(part);
    }
    let mut backward = DistinctCounter::new(128);
    for part in parts.iter().rev() {
        backward.merge(part);
    }
    let mut pairs = parts[0].clone();
    pairs.merge(&parts[1]);
    let mut other_pair = parts[2].clone();
    other_pair.merge(&parts[3]);
    pairs.merge(&other_pair);
    assert_eq!(forward, union);
    assert_eq!(backward, union);
    assert_eq!(pairs, union);
}

#[test]
fn merging_different_precisions_folds_to_the_lower() {
    let p10 = Precision::new(10).expect("valid");
    let p12 = Precision::new(12).expect("valid");
    let union10 = counter_of(0, p10, 0..30_000);
    let mut low = counter_of(0, p10, 0..20_000);
    low.merge(&counter_of(0, p12, 10_000..30_000));
    assert_eq!(low, union10);
    let mut high = counter_of(0, p12, 0..20_000);
    high.merge(&counter_of(0, p10, 10_000..30_000));
    assert_eq!(high, union10);
    // An exact counter merging a finer sketch ends at the lower precision too.
    let mut exact = counter_of(128, p10, 0..50);
    exact.merge(&counter_of(128, p12, 25..30_000));
    assert_eq!(exact, counter_of(128, p10, 0..30_000));
}

#[test]
fn clear_gives_back_memory() {
    let mut counter = counter_of(DEFAULT_EXACT_LIMIT, Precision::DEFAULT, 0..10_000);
    assert!(counter.memory_bytes() > 1024);
    counter.clear();
    assert_eq!(counter.estimate(), 0);
    assert_eq!(counter.mode(), Mode::Exact);
    assert_eq!(counter.memory_bytes(), 32);
    assert!(counter.insert(1));
    assert_eq!(counter.estimate(), 1);
}

#[test]
fn small_counters_cost_tens_of_bytes() {
    let mut counter = DistinctCounter::new(DEFAULT_EXACT_LIMIT);
    for v in 0..5 {
        counter.insert(v);
    }
    assert_eq!(counter.memory_bytes(), 32, "five values fit inline");
    counter.insert(5);
    // Then a heap list, doubling: 10, 20, 40, 80, 128 fingerprints.
    assert_eq!(counter.memory_bytes(), 32 + 10 * 4);
    let full = counter_of(DEFAULT_EXACT_LIMIT, Precision::DEFAULT, 0..128);
    assert_eq!(full.memory_bytes(), 32 + 128 * 4);
    let sketch = counter_of(DEFAULT_EXACT_LIMIT, Precision::DEFAULT, 0..1_000);
    assert!(sketch.memory_bytes() <= 32 + 200 + 1024, "{}", sketch.memory_bytes());

    let mut window = minute(DEFAULT_EXACT_LIMIT);
    assert_eq!(window.memory_bytes(), 48);
    inserted(&mut window, secs(1), 1);
    inserted(&mut window, secs(2), 2);
    assert_eq!(window.memory_bytes(), 48, "two values fit inline");
    inserted(&mut window, secs(3), 3);
    inserted(&mut window, secs(4), 4);
    assert_eq!(window.memory_bytes(), 48 + 4 * 8);
    for v in 5..=8 {
        inserted(&mut window, secs(5), v);
    }
    assert_eq!(window.memory_bytes(), 48 + 8 * 8);

    let count = WindowedCount::new(Duration::from_secs(10), 5);
    assert_eq!(count.memory_bytes(), 80, "up to 6 buckets inline");
    let count = WindowedCount::new(Duration::from_secs(10), 20);
    assert_eq!(count.memory_bytes(), 80 + 20 * 8);
}

#[test]
fn precision_is_checked() {
    assert_eq!(Precision::new(3), Err(SketchError::Precision(3)));
    assert_eq!(Precision::new(17), Err(SketchError::Precision(17)));
    assert_eq!(Precision::new(10), Ok(Precision::DEFAULT));
    assert_eq!(Precision::DEFAULT.registers(), 1024);
    assert!((Precision::DEFAULT.standard_error() - 0.0325).abs() < 1e-4);
    assert_eq!(Late.to_string(), "input time is before the counting window");
}

// ---- WindowedDistinct ---------------------------------------------------------------------

#[test]
fn a_value_leaves_the_window_at_its_bucket_start_plus_the_window() {
    let mut window = minute(128);
    assert_eq!(window.bucket_width(), Duration::from_secs(10));
    assert_eq!(inserted(&mut window, secs(5), 1), Counted::New(1));
    // Bucket 0 = [0 s, 10 s): the value counts until 60 s exactly.
    let last = Nanos(secs(60).0 - 1);
    assert_eq!(window.estimate(last), 1);
    assert!(!window.is_idle(last));
    assert_eq!(window.window_at(last), (secs(0), secs(60)));
    assert_eq!(window.estimate(secs(60)), 0);
    assert!(window.is_idle(secs(60)));
    assert_eq!(window.window_at(secs(60)), (secs(10), secs(70)));

    // Late in its bucket or at its start, the same instant.
    let mut window = minute(128);
    inserted(&mut window, Nanos(secs(10).0 - 1), 1);
    inserted(&mut window, secs(10), 2);
    assert_eq!(window.estimate(last), 2);
    assert_eq!(window.estimate(secs(60)), 1);
    assert_eq!(window.estimate(Nanos(secs(70).0 - 1)), 1);
    assert_eq!(window.estimate(secs(70)), 0);

    // Advancing makes the expiry permanent and the state small again.
    window.advance(secs(65));
    assert_eq!(window.estimate(secs(65)), 1);
    window.advance(secs(70));
    assert_eq!(window.estimate(secs(70)), 0);
    assert_eq!(window.memory_bytes(), 48);
}

#[test]
fn a_repeated_value_lives_from_its_newest_bucket() {
    let mut window = minute(128);
    assert_eq!(inserted(&mut window, secs(0), 9), Counted::New(1));
    assert_eq!(inserted(&mut window, secs(30), 9), Counted::Known(1));
    assert_eq!(window.estimate(secs(60)), 1);
    assert_eq!(window.estimate(Nanos(secs(90).0 - 1)), 1);
    assert_eq!(window.estimate(secs(90)), 0);
    // After it left, the same value is new again.
    assert_eq!(inserted(&mut window, secs(95), 9), Counted::New(1));
}

#[test]
fn out_of_order_input_counts_in_its_own_bucket() {
    let mut window = minute(128);
    inserted(&mut window, secs(55), 1);
    // 52 s earlier: bucket 0, still in the window of head bucket 5.
    assert_eq!(inserted(&mut window, secs(3), 2), Counted::New(2));
    assert_eq!(window.estimate(secs(59)), 2);
    // Bucket 0 leaves at 60 s, bucket 5 stays until 110 s.
    assert_eq!(window.estimate(secs(60)), 1);
    // A value already seen in a newer bucket keeps that bucket.
    assert_eq!(inserted(&mut window, secs(4), 1), Counted::Known(2));
    assert_eq!(window.estimate(secs(60)), 1);
    // Once the head is in bucket 6, bucket 0 is before the window: late, and nothing changes.
    inserted(&mut window, secs(61), 3);
    assert_eq!(window.insert(secs(9), 4), Err(Late));
    assert_eq!(window.insert(secs(0), 1), Err(Late));
    assert_eq!(window.estimate(secs(61)), 2);
    // Estimates for an older `now` are as of the head.
    assert_eq!(window.estimate(secs(1)), 2);
    assert!(!window.is_idle(secs(1)));
}

#[test]
fn window_too_short_for_its_buckets_uses_one_nanosecond_buckets() {
    let mut window = WindowedDistinct::new(Duration(3), 6, 8);
    assert_eq!(window.bucket_width(), Duration(1));
    inserted(&mut window, Nanos(10), 1);
    assert_eq!(window.estimate(Nanos(15)), 1);
    assert_eq!(window.estimate(Nanos(16)), 0);
    let zero = WindowedDistinct::new(Duration::ZERO, 0, 0);
    assert_eq!(zero.buckets(), 1);
    assert_eq!(zero.bucket_width(), Duration(1));
}

/// The live values of a windowed counter, kept the obvious way.
struct WindowModel {
    width: u64,
    buckets: u64,
    head: u64,
    newest: HashMap<u64, u64>,
}

impl WindowModel {
    fn insert(&mut self, now: Nanos, value: u64) -> Result<bool, Late> {
        let bucket = now.0 / self.width;
        if bucket > self.head {
            self.head = bucket;
        } else if self.head - bucket >= self.buckets {
            return Err(Late);
        }
        let was_live = self.newest.get(&value).is_some_and(|&b| self.head - b < self.buckets);
        let newest = self.newest.entry(value).or_insert(bucket);
        *newest = if was_live { (*newest).max(bucket) } else { bucket };
        Ok(!was_live)
    }

    fn live(&self, now: Nanos) -> impl Iterator<Item = u64> + '_ {
        let at = (now.0 / self.width).max(self.head);
        self.newest.iter().filter(move |&(_, &b)| at - b < self.buckets).map(|(&v, _)| v)
    }
}

#[test]
fn exact_windows_match_a_model_on_random_input() {
    let mut rng = Rng(42);
    for case in 0..300 {
        let buckets = 1 + rng.below(8);
        let window = Duration(1 + rng.below(100));
        let mut counter = WindowedDistinct::new(window, buckets as usize, 10_000);
        let width = counter.bucket_width().as_nanos();
        let mut model = WindowModel { width, buckets, head: 0, newest: HashMap::new() };
        // Some cases start just below a multiple of 2^16 buckets, to cross the wrap of the
        // stored bucket bits.
        let mut now = if case % 3 == 0 { (65_536 * 3 - 40) * width } else { rng.below(1_000) };
        let values = 1 + rng.below(60);
        for step in 0..300 {
            now = match rng.below(10) {
                0 => now.saturating_sub(rng.below(3 * width * buckets)),
                1 => now + rng.below(2 * width * buckets),
                _ => now + rng.below(width),
            };
            let value = rng.below(values);
            let got = counter.insert(Nanos(now), value);
            let expected = model.insert(Nanos(now), value);
            let live = model.live(Nanos(now)).count() as u64;
            match (got, expected) {
                (Ok(Counted::New(n)), Ok(true)) | (Ok(Counted::Known(n)), Ok(false)) => {
                    assert_eq!(n, live, "case {case} step {step}");
                }
                (Err(Late), Err(Late)) => {}
                (got, expected) => panic!("case {case} step {step}: {got:?} vs {expected:?}"),
            }
            let later = Nanos(now + rng.below(2 * width * buckets));
            assert_eq!(counter.estimate(later), model.live(later).count() as u64, "case {case} step {step}");
            assert_eq!(counter.is_idle(later), model.live(later).count() == 0);
            if rng.below(20) == 0 {
                counter.advance(later);
                model.head = model.head.max(later.0 / width);
            }
        }
    }
}

#[test]
fn sketch_windows_hold_exactly_the_sketch_of_the_live_values() {
    // Promoted to sketches, the window's estimate is the estimate of a sketch of just the
    // values still in it: same registers, same estimator.
    let mut rng = Rng(7);
    let mut window = minute(64);
    let mut model = WindowModel { width: 10_000_000_000, buckets: 6, head: 0, newest: HashMap::new() };
    let mut now = secs(1_000).0;
    for step in 0..30_000 {
        now += rng.below(20_000_000);
        let value = rng.below(5_000);
        let got = window.insert(Nanos(now), value).expect("in order");
        model.insert(Nanos(now), value).expect("in order");
        if step >= 2_000 && step % 97 == 0 {
            let sketch = counter_of(0, Precision::DEFAULT, model.live(Nanos(now)));
            assert_eq!(got.estimate(), sketch.estimate(), "step {step}");
            assert_eq!(window.mode(), Mode::Sketch);
        }
    }
    // Let four of the six buckets expire, then all.
    let later = Nanos(now + secs(40).0);
    let sketch = counter_of(0, Precision::DEFAULT, model.live(later));
    assert_eq!(window.estimate(later), sketch.estimate());
    window.advance(later);
    assert_eq!(window.estimate(later), sketch.estimate());
    assert!(window.memory_bytes() > 6 * 1024);
    let gone = Nanos(now + secs(60).0);
    assert!(window.is_idle(gone));
    window.advance(gone);
    assert_eq!(window.mode(), Mode::Exact);
    assert_eq!(window.estimate(gone), 0);
    assert_eq!(window.memory_bytes(), 48);
}

#[test]
fn windowed_sketch_error_is_within_three_standard_errors() {
    let mut rng = Rng(99);
    let mut window = minute(128);
    let sigma = Precision::DEFAULT.standard_error();
    // 20,000 new values in each of 6 buckets, then one more bucket with nothing.
    for bucket in 0..6 {
        for _ in 0..20_000 {
            window.insert(secs(bucket * 10 + 5), rng.next_u64()).expect("in order");
        }
    }
    for (at, expected) in [(secs(55), 120_000.0), (secs(65), 100_000.0), (secs(105), 20_000.0)] {
        let error = (window.estimate(at) as f64 - expected) / expected;
        assert!(error.abs() < 3.0 * sigma, "at {at}: error {error:.4}");
    }
}

/// Worker partial aggregates: values split over `workers` by value, gathered per bucket of
/// `bucket_secs`, each part a counter of `limit`.
fn parts(values: &[(u64, u64)], workers: u64, limit: usize, p: Precision) -> Vec<(u64, DistinctCounter)> {
    let mut parts: Vec<(u64, DistinctCounter)> = Vec::new();
    for &(t, v) in values {
        let worker = v % workers;
        if let Some((_, part)) = parts.iter_mut().find(|(key, _)| *key == t * workers + worker) {
            part.insert(v);
        } else {
            let mut part = DistinctCounter::with_precision(limit, p);
            part.insert(v);
            parts.push((t * workers + worker, part));
        }
    }
    parts
}

#[test]
fn merging_partial_aggregates_equals_inserting_their_values() {
    let mut rng = Rng(5);
    let p10 = Precision::DEFAULT;
    let p12 = Precision::new(12).expect("valid");
    // (values per bucket, range of values, part limit, window limit, part precision, window
    // precision): exact parts into an exact window, into one that converts; sketch parts into a
    // sketch window; finer parts into a coarser window and the reverse.
    let cases = [
        (20, 40, 128, 128, p10, p10),
        (150, 2_000, 1_000, 128, p10, p10),
        (3_000, 1_000_000, 0, 0, p10, p10),
        (3_000, 1_000_000, 0, 0, p12, p10),
        (3_000, 1_000_000, 0, 0, p10, p12),
    ];
    for (case, (per_bucket, range, part_limit, window_limit, part_p, window_p)) in
        cases.into_iter().enumerate()
    {
        // Ten buckets of 10 s: (bucket start in seconds, value).
        let values: Vec<(u64, u64)> = (0..10)
            .flat_map(|b| (0..per_bucket).map(move |_| b * 10))
            .map(|t| (t, rng.below(range)))
            .collect();
        let mut merged = minute(window_limit).with_precision(window_p);
        for (key, part) in parts(&values, 3, part_limit, part_p) {
            merged.merge_at(secs(key / 3), &part).expect("in order");
        }
        let mut inserted = minute(window_limit).with_precision(window_p.min(part_p));
        for &(t, v) in &values {
            inserted.insert(secs(t), v).expect("in order");
        }
        for at in [95, 100, 119, 120, 149] {
            assert_eq!(merged.estimate(secs(at)), inserted.estimate(secs(at)), "case {case} at {at} s");
        }
        assert_eq!(merged.mode(), inserted.mode(), "case {case}");
    }
    let mut window = minute(128);
    window.insert(secs(100), 1).expect("in order");
    assert_eq!(window.merge_at(secs(0), &DistinctCounter::new(128)), Err(Late));
}

// ---- WindowedCount ------------------------------------------------------------------------

#[test]
fn counts_leave_at_their_bucket_start_plus_the_window() {
    let mut count = WindowedCount::new(Duration::from_secs(10), 5);
    assert_eq!(count.add(secs(1), 3), Ok(3));
    assert_eq!(count.add(Nanos(secs(2).0 - 1), 4), Ok(7));
    assert_eq!(count.add(secs(2), 1), Ok(8));
    assert_eq!(count.total(Nanos(secs(10).0 - 1)), 8);
    assert_eq!(count.window_at(secs(10)), (secs(2), secs(12)));
    assert_eq!(count.total(secs(10)), 1);
    assert_eq!(count.total(secs(12)), 0);
    assert!(count.is_idle(secs(12)));
    // Out of order within the window, then late.
    assert_eq!(count.add(secs(11), 1), Ok(2));
    assert_eq!(count.add(secs(3), 10), Ok(12));
    assert_eq!(count.add(Nanos(secs(2).0 - 1), 10), Err(Late));
    assert_eq!(count.total(secs(11)), 12);
    // Bucket 1 ([2 s, 4 s)) held 1 + 10.
    assert_eq!(count.total(secs(13)), 1);
    count.advance(secs(14));
    assert_eq!(count.total(secs(14)), 1);
    assert_eq!(count.add(secs(100), u64::MAX), Ok(u64::MAX));
    assert_eq!(count.add(secs(100), 5), Ok(u64::MAX));
}

#[test]
fn windowed_counts_match_a_model_on_random_input() {
    let mut rng = Rng(1234);
    for case in 0..300 {
        let buckets = 1 + rng.below(8);
        let mut count = WindowedCount::new(Duration(1 + rng.below(100)), buckets as usize);
        let width = count.bucket_width().as_nanos();
        let mut added: Vec<(u64, u64)> = Vec::new();
        let mut head = 0;
        let mut now = rng.below(1_000);
        for step in 0..300 {
            now = match rng.below(10) {
                0 => now.saturating_sub(rng.below(3 * width * buckets)),
                1 => now + rng.below(2 * width * buckets),
                _ => now + rng.below(width),
            };
            let amount = rng.below(1_000);
            let bucket = now / width;
            let got = count.add(Nanos(now), amount);
            if bucket + buckets <= head {
                assert_eq!(got, Err(Late), "case {case} step {step}");
                continue;
            }
            head = head.max(bucket);
            added.push((bucket, amount));
            let expected = |at: u64| -> u64 {
                added.iter().filter(|&&(b, _)| at.max(head) - b < buckets).map(|&(_, a)| a).sum()
            };
            assert_eq!(got, Ok(expected(bucket)), "case {case} step {step}");
            let later = now + rng.below(2 * width * buckets);
            assert_eq!(count.total(Nanos(later)), expected(later / width), "case {case} step {step}");
        }
    }
}

// ---- arbitrary input ----------------------------------------------------------------------

/// A time from the corners as well as the middle of the range.
fn any_time(rng: &mut Rng, around: u64) -> u64 {
    let span = 1u64 << rng.below(64);
    match rng.below(8) {
        0 => 0,
        1 => u64::MAX - rng.below(3),
        2 => rng.next_u64(),
        3 => around.saturating_sub(rng.below(span)),
        _ => around.saturating_add(rng.below(span)),
    }
}

#[test]
fn no_input_panics() {
    let mut rng = Rng(0xdead_beef);
    let windows = [0, 1, 2, 7, 1_000, 60_000_000_000, u64::MAX / 3, u64::MAX];
    let bucket_counts = [0, 1, 2, 6, 1_023, 1_024, 1_025, usize::MAX];
    let limits = [0, 1, 2, 5, 128, 65_535, 65_536, usize::MAX];
    for _ in 0..400 {
        let window = Duration(windows[rng.below(8) as usize]);
        let buckets = bucket_counts[rng.below(8) as usize];
        let limit = limits[rng.below(8) as usize];
        // Keep G·m small enough for a quick debug run.
        let bits = if buckets > 64 { 4 + rng.below(3) } else { 4 + rng.below(9) };
        let precision = Precision::new(bits as u8).expect("valid");
        let mut distinct = WindowedDistinct::new(window, buckets, limit).with_precision(precision);
        let mut count = WindowedCount::new(window, buckets);
        let mut counter = DistinctCounter::with_precision(limit.min(300), precision);
        let mut other = DistinctCounter::new(rng.below(200) as usize);
        let mut now = rng.next_u64();
        let values = 1 + rng.below(1_000);
        for _ in 0..60 {
            now = any_time(&mut rng, now);
            let value = if rng.below(2) == 0 { rng.below(values) } else { rng.next_u64() };
            match rng.below(12) {
                0 => distinct.advance(Nanos(now)),
                1 => count.advance(Nanos(now)),
                2 => counter.merge(&other),
                3 => other.merge(&counter),
                4 => counter.clear(),
                5 => {
                    for _ in 0..rng.below(400) {
                        other.insert(rng.next_u64());
                    }
                }
                _ => {
                    let _ = distinct.insert(Nanos(now), value);
                    let _ = count.add(Nanos(now), rng.next_u64() >> rng.below(64));
                    counter.insert(value);
                }
            }
            let at = Nanos(any_time(&mut rng, now));
            let (start, end) = distinct.window_at(at);
            assert!(start <= end);
            let _ = (distinct.estimate(at), distinct.is_idle(at), distinct.memory_bytes());
            let _ = (count.total(at), count.is_idle(at), count.window_at(at), count.memory_bytes());
            let _ = (counter.estimate(), counter.memory_bytes(), format!("{counter:?} {distinct:?}"));
        }
    }
}
