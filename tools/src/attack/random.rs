//! Deterministic randomness for the attack scenario: ChaCha8 streams with the few draws the
//! generator needs written out here (as in the seed and mix scenarios), so the bytes a seed
//! gives only depend on ChaCha8, on this file and on the platform's `ln`.
//!
//! The planner draws from one stream; each attack draws from its own, so what an attack
//! contains does not depend on the packets of the others.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// First stream number of the attack scenario: far above the mix scenario's streams (0 and
/// one per conversation), although the two generators never share a stream object anyway.
const STREAM_BASE: u64 = 1 << 48;

/// A seeded random stream.
#[derive(Clone, Debug)]
pub(crate) struct Random(ChaCha8Rng);

impl Random {
    /// Stream `stream` (counted from the attack scenario's base) of seed `seed`.
    pub(crate) fn new(seed: u64, stream: u64) -> Random {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(STREAM_BASE.wrapping_add(stream));
        Random(rng)
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

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`0` when `n` is 0), by Lemire's multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
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

    /// One element of a non-empty slice (`None` when empty).
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
    fn shuffle_is_a_permutation_and_ranges_hold() {
        let mut r = Random::new(1, 2);
        let mut v: Vec<u32> = (0..100).collect();
        r.shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        for _ in 0..1000 {
            assert!((3..=9).contains(&r.range(3, 9)));
            assert!(r.exponential(1.0, 4.0) <= 4.0);
        }
        assert_eq!(r.range(5, 4), 5);
        assert!(r.pick::<u8>(&[]).is_none());
    }
}
