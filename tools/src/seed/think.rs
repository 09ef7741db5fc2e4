//! Think times of the seed scenario's clients: an exponential distribution cut at a cap,
//! with its mean kept at the requested one.

use crate::random::Random;

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
}
