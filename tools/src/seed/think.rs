//! Deterministic randomness for the seed scenario: a ChaCha8 stream per purpose, with the
//! few draws the generator needs written out here (rather than taken from `rand`'s
//! distributions) so the output for a seed only depends on ChaCha8 and on this file.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

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

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift; the bias is below
    /// `n / 2^64`, far beneath anything a test could see.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (requires `lo <= hi`).
    pub(crate) fn range_u16(&mut self, lo: u16, hi: u16) -> u16 {
        lo + self.below(u64::from(hi - lo) + 1) as u16
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// An exponential variate with mean `mean` (any unit).
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Per-client think time: an exponential distribution truncated at `cap`, with its scale
/// chosen so the truncated mean is the requested mean.
///
/// Sampled by inverting the truncated CDF, `x = -mu * ln(1 - u * (1 - exp(-cap / mu)))`, so
/// every sample is at most `cap` by construction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThinkTime {
    /// Scale of the untruncated exponential, nanoseconds.
    mu: f64,
    /// Largest sample, nanoseconds.
    cap: f64,
    /// `1 - exp(-cap / mu)`: the untruncated probability mass below `cap`.
    mass: f64,
}

impl ThinkTime {
    /// The truncated exponential on `[0, cap_ns]` whose mean is `mean_ns`, or `None` unless
    /// `0 < mean_ns <= cap_ns / 4` (beyond that the shape is closer to uniform than to
    /// exponential, and at `cap / 2` no scale reaches the mean).
    pub(crate) fn new(mean_ns: f64, cap_ns: f64) -> Option<ThinkTime> {
        if !(mean_ns > 0.0 && cap_ns.is_finite() && mean_ns <= cap_ns / 4.0) {
            return None;
        }
        // The truncated mean g(mu) = mu - cap / (exp(cap / mu) - 1) grows with mu, is below
        // mu, and g(cap) = cap (1 - 1 / (e - 1)) > cap / 4 >= mean: bisect on [mean, cap].
        let truncated_mean = |mu: f64| mu - cap_ns / (cap_ns / mu).exp_m1();
        let (mut lo, mut hi) = (mean_ns, cap_ns);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if truncated_mean(mid) < mean_ns {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mu = hi;
        Some(ThinkTime { mu, cap: cap_ns, mass: -(-cap_ns / mu).exp_m1() })
    }

    /// One think time in whole nanoseconds, at least 1 and at most `cap`.
    pub(crate) fn sample(&self, rng: &mut Random) -> u64 {
        let x = -self.mu * (-rng.unit() * self.mass).ln_1p();
        (x.min(self.cap) as u64).max(1)
    }

    /// The largest sample, nanoseconds.
    #[cfg(test)]
    pub(crate) fn cap_ns(&self) -> u64 {
        self.cap as u64
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
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut r = Random::new(1, 0);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = r.below(5);
            seen[v as usize] = true;
            let p = r.range_u16(32768, 60999);
            assert!((32768..=60999).contains(&p));
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn think_time_respects_the_cap_and_hits_the_mean() {
        let mut r = Random::new(3, 0);
        for (mean, cap) in [(1.0e6, 57.0e9), (10.0e9, 57.0e9), (14.25e9, 57.0e9), (0.4e9, 1.9e9)] {
            let t = ThinkTime::new(mean, cap).unwrap();
            let n = 200_000;
            let mut sum = 0.0;
            let mut max = 0;
            for _ in 0..n {
                let s = t.sample(&mut r);
                sum += s as f64;
                max = max.max(s);
            }
            assert!(max <= t.cap_ns(), "{max} > cap");
            let got = sum / f64::from(n);
            assert!((got / mean - 1.0).abs() < 0.01, "mean {got} vs {mean} (cap {cap})");
        }
    }

    #[test]
    fn think_time_rejects_means_near_the_cap() {
        assert!(ThinkTime::new(15.0, 57.0).is_none());
        assert!(ThinkTime::new(0.0, 57.0).is_none());
        assert!(ThinkTime::new(f64::NAN, 57.0).is_none());
        assert!(ThinkTime::new(14.25, 57.0).is_some());
    }

    #[test]
    fn exponential_has_the_requested_mean() {
        let mut r = Random::new(5, 0);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| r.exponential(2.0)).sum::<f64>() / f64::from(n);
        assert!((mean - 2.0).abs() < 0.03, "{mean}");
    }
}
