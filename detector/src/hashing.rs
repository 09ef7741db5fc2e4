//! The hash state of every per-key table of the detector.
//!
//! Tables whose behaviour depends on hash values — which parked first sightings share a cache
//! line and push each other out, which keys share an index group — must hash the same way in
//! every run, or the same capture could give different alert evidence (`events` counts) from
//! one replay to the next. So the tables do not take a random per-process seed: they hash with
//! one process-wide seed, a fixed constant unless [`set_table_seed`] changed it. `outpost
//! replay` keeps the constant (the same input gives the same output in every run); `outpost
//! run` sets a random seed at start, before any detector exists, so that an attacker who
//! knows the code cannot craft source addresses that collide in a live sensor's tables.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The seed tables use until [`set_table_seed`] is called.
pub const DEFAULT_TABLE_SEED: u64 = 0x6f75_7470_6f73_7431;

static SEED: AtomicU64 = AtomicU64::new(DEFAULT_TABLE_SEED);

/// Sets the seed of every detector table created from now on (tables that exist keep theirs).
/// Call it once at start, before any [`crate::Detector`] or [`crate::CentralDetector`] exists.
pub fn set_table_seed(seed: u64) {
    SEED.store(seed, Ordering::Relaxed);
}

/// A table's hash state: foldhash with the process-wide seed read when the table is created.
#[derive(Clone, Debug)]
pub struct TableHasher(foldhash::fast::FixedState);

impl Default for TableHasher {
    fn default() -> TableHasher {
        TableHasher(foldhash::fast::FixedState::with_seed(SEED.load(Ordering::Relaxed)))
    }
}

impl BuildHasher for TableHasher {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline(always)]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hash_alike_in_every_run_unless_seeded() {
        // The default seed is a constant: two tables (and two processes) agree.
        let (a, b) = (TableHasher::default(), TableHasher::default());
        assert_eq!(a.hash_one(0x0a01_0203u32), b.hash_one(0x0a01_0203u32));
        assert_eq!(
            TableHasher(foldhash::fast::FixedState::with_seed(DEFAULT_TABLE_SEED)).hash_one(7u64),
            a.hash_one(7u64)
        );
        // Another seed hashes differently (what `outpost run` relies on).
        let other = TableHasher(foldhash::fast::FixedState::with_seed(DEFAULT_TABLE_SEED ^ 1));
        assert_ne!(other.hash_one(7u64), a.hash_one(7u64));
    }
}
