//! Deterministic randomness for the scenarios: ChaCha8 streams with the few draws the
//! generators need written out here (rather than taken from `rand`'s distributions), so the
//! bytes a seed gives only depend on ChaCha8, on this file and on the platform's `ln`/`exp`.
//!
//! Each scenario splits its seed into independent streams — the seed scenario one for events
//! and one for noise; the mix scenario one for its scheduler and one per conversation; the
//! attack scenario ([`ATTACK_STREAM_BASE`] on) one for its planner and one per attack — so
//! what one part draws does not depend on the others.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// First stream number of the attack scenario: far above the mix scenario's streams (0 and
/// one per conversation), although the two generators never share a stream object anyway.
pub(crate) const ATTACK_STREAM_BASE: u64 = 1 << 48;

/// A seeded random stream.
#[derive(Clone, Debug)]
pub(crate) struct Random(ChaCha8Rng);

impl Random {
    /// Stream `stream` of seed `seed`. Different streams of one seed are independent, so the
    /// events do not change when, say, noise is switched on.
    pub(crate) fn new(seed: u64, stream: u64) -> Random {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Random(rng)
    }

    /// Stream `stream` of the attack scenario (counted from [`ATTACK_STREAM_BASE`]) of seed
    /// `seed`.
    pub(crate) fn attack(seed: u64, stream: u64) -> Random {
        Random::new(seed, ATTACK_STREAM_BASE.wrapping_add(stream))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }

    pub(crate) fn next_u16(&mut self) -> u16 {
        (self.0.next_u64() >> 48) as u16
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift; the bias is below
    /// `n / 2^64`, far beneath anything a test could see.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `lo..=hi` (requires `lo <= hi`).
    pub(crate) fn range_u16(&mut self, lo: u16, hi: u16) -> u16 {
        lo + self.below(u64::from(hi - lo) + 1) as u16
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponential variate with mean `mean`, cut at `cap` (any unit; `f64::INFINITY` for
    /// no cut).
    pub(crate) fn exponential(&mut self, mean: f64, cap: f64) -> f64 {
        (-mean * (1.0 - self.unit()).ln()).min(cap)
    }

    /// Log-uniform in `[lo, hi]` (both positive): as many values per decade anywhere in the
    /// range, which is how round-trip times and link speeds spread.
    pub(crate) fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp().clamp(lo, hi)
    }

    /// A bounded Pareto variate on `[min, max]` with tail index `alpha`, by inverting its CDF
    /// `F(x) = (1 - (min/x)^alpha) / (1 - (min/max)^alpha)`: heavy-tailed sizes (most small,
    /// a few very large), as measured for web objects and flow sizes.
    pub(crate) fn pareto(&mut self, min: f64, max: f64, alpha: f64) -> u64 {
        let tail = (min / max).powf(alpha);
        let u = self.unit();
        let x = min / (1.0 - u * (1.0 - tail)).powf(1.0 / alpha);
        x.clamp(min, max) as u64
    }

    /// An index drawn with probability proportional to its weight (`0` when all are zero).
    pub(crate) fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let mut pick = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if pick < u64::from(w) {
                return i;
            }
            pick -= u64::from(w);
        }
        0
    }

    /// One element of a slice (`None` when empty).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_and_stream_repeat_and_streams_differ() {
        let draws = |seed, stream| {
            let mut r = Random::new(seed, stream);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, 0), draws(7, 0));
        assert_ne!(draws(7, 0), draws(7, 1));
        assert_ne!(draws(7, 0), draws(8, 0));
        let mut a = Random::attack(7, 0);
        assert_ne!((0..8).map(|_| a.next_u64()).collect::<Vec<_>>(), draws(7, 0), "attack streams are apart");
    }

    #[test]
    fn below_and_ranges_stay_in_bounds() {
        let mut r = Random::new(1, 0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.below(5);
            seen[v as usize] = true;
            let p = r.range_u16(32768, 60999);
            assert!((32768..=60999).contains(&p));
            assert!((3..=9).contains(&r.range(3, 9)));
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.below(0), 0);
        assert_eq!(r.range(5, 4), 5);
        assert!(r.pick::<u8>(&[]).is_none());
    }

    #[test]
    fn exponential_has_the_requested_mean_and_respects_its_cap() {
        let mut r = Random::new(5, 0);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| r.exponential(2.0, f64::INFINITY)).sum::<f64>() / f64::from(n);
        assert!((mean - 2.0).abs() < 0.03, "{mean}");
        assert!((0..10_000).all(|_| r.exponential(1.0, 4.0) <= 4.0));
    }

    #[test]
    fn pareto_stays_in_bounds_and_is_heavy_tailed() {
        let mut r = Random::new(1, 0);
        let n = 100_000;
        let v: Vec<u64> = (0..n).map(|_| r.pareto(400.0, 4_000_000.0, 1.1)).collect();
        assert!(v.iter().all(|&x| (400..=4_000_000).contains(&x)));
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let median = sorted[n / 2];
        let mean = v.iter().sum::<u64>() as f64 / n as f64;
        // Median 400 * 2^(1/1.1) ≈ 751; the mean is several times the median.
        assert!((700..800).contains(&median), "median {median}");
        assert!(mean > 2.5 * median as f64, "mean {mean} median {median}");
    }

    #[test]
    fn weighted_follows_the_weights_and_skips_zeros() {
        let mut r = Random::new(2, 0);
        let mut seen = [0u32; 3];
        for _ in 0..30_000 {
            seen[r.weighted(&[1, 0, 2])] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!((9_000..11_000).contains(&seen[0]), "{seen:?}");
        assert_eq!(r.weighted(&[0, 0]), 0);
    }

    #[test]
    fn log_uniform_stays_in_range_and_shuffle_permutes() {
        let mut r = Random::new(3, 0);
        for _ in 0..10_000 {
            let x = r.log_uniform(0.2, 150.0);
            assert!((0.2..=150.0).contains(&x));
        }
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
