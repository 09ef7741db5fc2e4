//! Deterministic randomness for the mix scenario: ChaCha8 streams with the few draws the
//! generator needs written out here (as in the seed scenario), so the bytes a seed gives only
//! depend on ChaCha8, on this file and on the platform's `ln`/`exp`.
//!
//! The scheduler draws from stream 0; each conversation draws from its own stream (its serial
//! number), so what one conversation contains does not depend on how it interleaves with others.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// A seeded random stream.
#[derive(Clone, Debug)]
pub(crate) struct Random(ChaCha8Rng);

impl Random {
    /// Stream `stream` of seed `seed`; different streams of one seed are independent.
    pub(crate) fn new(seed: u64, stream: u64) -> Random {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        Random(rng)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (requires `lo <= hi`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponential variate with mean `mean`, cut at `cap` (any unit).
    pub(crate) fn exponential(&mut self, mean: f64, cap: f64) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
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

    /// An index drawn with probability proportional to `weights` (0 when all are zero).
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_and_differ() {
        let draws = |seed, stream| {
            let mut r = Random::new(seed, stream);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7, 0), draws(7, 0));
        assert_ne!(draws(7, 0), draws(7, 1));
        assert_ne!(draws(7, 0), draws(8, 0));
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
    fn log_uniform_and_exponential_stay_in_range() {
        let mut r = Random::new(3, 0);
        for _ in 0..10_000 {
            let x = r.log_uniform(0.2, 150.0);
            assert!((0.2..=150.0).contains(&x));
            assert!(r.exponential(1.0, 5.0) <= 5.0);
            assert!((3..=9).contains(&r.range(3, 9)));
        }
    }
}
