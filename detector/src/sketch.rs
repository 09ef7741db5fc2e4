//! Distinct counting and windowed counting for threshold rules.
//!
//! Threshold rules count, per key, either events (`count`, `sum`) or distinct values of a field
//! (`distinct(dst_port)`) over an event-time window. A sensor holds 10^5–10^6 keys, almost all
//! with a handful of values; a few (scanners) have thousands. So every counter here is exact and
//! a few tens of bytes while small, and only a key that grows past a configured cardinality
//! pays for a HyperLogLog sketch.
//!
//! # Values and fingerprints
//!
//! Callers pass a `u64` per value — normally a hash of the field, but any `u64` works (a raw
//! port number too): a bijective 64-bit mixer (MurmurHash3's `fmix64`) spreads it first, so
//! distinct inputs stay distinct and weak hashes still fill the sketch evenly. Counters keep a
//!
//! *fingerprint*, the top 32 bits of the mixed value, everywhere:
//!
//! - In exact mode two distinct values with equal fingerprints count once: among `n` values
//!   about `n²/2³³` such pairs are expected (`n = 128`: 2·10⁻⁶), so an exact count can be low
//!   by one with that probability, and is never high.
//! - Sketches take index and rank from the same 32 bits, so a value gives the same register
//!   update whether it is inserted directly, promoted from an exact list or merged from another
//!   counter. 32 bits are plenty below ~10⁸ distinct values (collisions lower a count of `n` by
//!   about `n/2³³`, 0.01 % at 10⁶).
//!
//! # HyperLogLog
//!
//! A sketch of precision `p` ([`Precision`], 4..=16, default 10) has `m = 2^p` one-byte
//! registers (1 KiB at `p = 10`). A value's top `p` fingerprint bits choose a register, and
//! the register keeps the maximum *rank* (leading zeros + 1 of the remaining `32 − p` bits,
//! at most `33 − p`). Registers merge by maximum, so the sketch of a union is the register-wise
//! maximum of the sketches, and a sketch folds exactly to a lower precision.
//!
//! The estimate is Ertl's "improved raw estimator" (O. Ertl, *New cardinality estimation
//! algorithms for HyperLogLog sketches*, 2017, algorithm 6; the one Redis uses): computed from
//! the histogram of register values, nearly unbiased from 0 up to the hash range, with no
//! empirical bias tables and no switch between linear counting and the raw estimate. Its
//! relative standard error is about `1.04/√m` (3.25 % at `p = 10`, 1.6 % at `p = 12`); small
//! cardinalities come out better than that. The histogram is kept up to date on every register
//! change, so an estimate costs O(30), not O(m).
//!
//! # Exact below a limit
//!
//! Up to `exact_limit` distinct values ([`DEFAULT_EXACT_LIMIT`] = 128) a counter keeps a sorted
//! list of fingerprints and counts exactly; the value after that converts it to a sketch. Set
//! the limit at or above a rule's threshold and the threshold decision stays exact. Once a
//! [`DistinctCounter`] is a sketch its estimate never reads below `exact_limit + 1` (it is known
//! to have seen that many), which also keeps it from dipping below the last exact count.
//!
//! # Windows
//!
//! [`WindowedDistinct`] and [`WindowedCount`] count over a hopping event-time window of `G`
//! buckets of width `B = window / G` (integer nanoseconds, at least 1 ns), aligned to the Unix
//! epoch. Bucket `k` is `[k·B, (k+1)·B)`. Each counter has a clock, the *head*: the newest
//! bucket it has seen. At head `h` the window is buckets `h−G+1 ..= h`, that is the times
//! `[(h−G+1)·B, (h+1)·B)`.
//!
//! - A value (or amount) given at time `t` is counted until, and not at, the instant
//!   `(⌊t/B⌋ + G)·B` — so for between `(G−1)·B` (exclusive) and `G·B` after `t`. For distinct
//!   counts a value seen again restarts its span from its newest bucket.
//! - Time is only ever the `now` the caller passes (event time). A `now` in a later bucket
//!   moves the head and expires the buckets that left the window.
//! - A `now` in an earlier bucket (out-of-order input) that is still in the window is counted
//!   in the bucket it belongs to; one before the window is not counted and returns [`Late`].
//!   Estimates are always as of the head. A single far-future timestamp moves the head and
//!   makes later normal input late: filter bogus times before they reach a counter.
//! - Partial aggregates (a worker's [`DistinctCounter`] for one bucket) enter a window with
//!   [`WindowedDistinct::merge_at`]; sums and counts simply with [`WindowedCount::add`] at a time
//!   in their bucket.
//! - When every bucket has expired a counter is idle ([`WindowedDistinct::is_idle`]) and the
//!   caller can drop its key.
//!
//! # Memory per key (64-bit target; allocator overhead not included)
//!
//! | counter | small | large |
//! |---|---|---|
//! | [`DistinctCounter`] | 32 B for up to 5 values, then 32 B + 4 B per value slot (capacity doubling: 10, 20, 40, … up to the limit) | 32 B + 152 B + `m` (1,208 B at `p = 10`) |
//! | [`WindowedDistinct`] | 48 B for up to 2 values, then 48 B + 8 B per value slot (4, 8, 16, … up to the limit) | 48 B + 184 B + `8·G` + `(G + 1)·m` (7,448 B at `G = 6`, `p = 10`) |
//! | [`WindowedCount`] | 80 B for `G` ≤ 6 (inline: no allocation per key) | 80 B + `8·G` |
//!
//! A windowed sketch keeps one register array per bucket plus their running maximum, so an
//! insert costs one or two register updates and an estimate O(30); each bucket expiry
//! recomputes the maximum in O(G·m). When all of its buckets expire a windowed sketch goes back
//! to the small exact form.

use std::cmp::Ordering;
use std::fmt;
use std::mem::size_of;

use outpost_decode::{Duration, Nanos};

/// Distinct values counted exactly before a counter converts to a sketch, unless configured.
pub const DEFAULT_EXACT_LIMIT: usize = 128;

/// The largest exact limit (larger limits are clamped to it).
pub const MAX_EXACT_LIMIT: usize = u16::MAX as usize;

/// The most buckets a window can have (more are clamped to it).
pub const MAX_BUCKETS: usize = 1024;

/// Fingerprints kept inline (without a heap allocation) by a [`DistinctCounter`].
const INLINE_FINGERPRINTS: usize = 5;

/// Entries kept inline by a [`WindowedDistinct`].
const INLINE_ENTRIES: usize = 2;

/// Register-value histogram length: values `0..=33−p`, for the smallest `p`.
const HISTOGRAM_LEN: usize = 34 - Precision::MIN.0 as usize;

/// `α_∞ = 1 / (2 ln 2)`, the HyperLogLog constant for `m → ∞` (Ertl 2017, eq. 4).
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// Marks an unused slot of a windowed sketch.
const EMPTY_SLOT: u64 = u64::MAX;

/// Errors of sketch configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// A HyperLogLog precision outside `4..=16`.
    #[error("HyperLogLog precision {0} is outside {min}..={max}", min = Precision::MIN.0, max = Precision::MAX.0)]
    Precision(u8),
}

/// An input whose time lies before the counting window: it was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input time is before the counting window")]
pub struct Late;

/// HyperLogLog precision `p`: the sketch has `2^p` registers of one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Precision(u8);

impl Precision {
    /// The smallest precision, 16 registers (26 % standard error).
    pub const MIN: Precision = Precision(4);
    /// The largest precision, 65,536 registers (0.41 %).
    pub const MAX: Precision = Precision(16);
    /// The default, 1,024 registers (3.25 %).
    pub const DEFAULT: Precision = Precision(10);

    /// Precision `bits` (4..=16).
    ///
    /// # Errors
    ///
    /// [`SketchError::Precision`] outside `4..=16`.
    pub const fn new(bits: u8) -> Result<Precision, SketchError> {
        if bits < Precision::MIN.0 || bits > Precision::MAX.0 {
            return Err(SketchError::Precision(bits));
        }
        Ok(Precision(bits))
    }

    /// `p`.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Number of registers, `2^p`.
    #[must_use]
    pub const fn registers(self) -> usize {
        1 << self.0
    }

    /// Relative standard error of an estimate, `1.04/√m`.
    #[must_use]
    pub fn standard_error(self) -> f64 {
        1.04 / (self.registers() as f64).sqrt()
    }
}

impl Default for Precision {
    fn default() -> Precision {
        Precision::DEFAULT
    }
}

/// How a counter currently counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A list of fingerprints: the count is exact (up to fingerprint collisions).
    Exact,
    /// A HyperLogLog sketch: the count is an estimate.
    Sketch,
}

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche, so distinct inputs stay
/// distinct and every output bit depends on every input bit.
#[inline]
const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// The 32-bit fingerprint of a value: the top half of the mixed value.
#[inline]
pub(crate) const fn fingerprint32(hash: u64) -> u32 {
    (mix64(hash) >> 32) as u32
}

fn clamp_limit(exact_limit: usize) -> u16 {
    u16::try_from(exact_limit.min(MAX_EXACT_LIMIT)).unwrap_or(u16::MAX)
}

// ---- HyperLogLog --------------------------------------------------------------------------

/// A HyperLogLog sketch over 32-bit fingerprints with its register-value histogram.
#[derive(Clone, PartialEq, Eq)]
struct Hll {
    precision: u8,
    /// `hist[k]`: registers holding `k`. Kept in step with `registers`.
    hist: [u32; HISTOGRAM_LEN],
    registers: Box<[u8]>,
}

impl Hll {
    fn new(precision: Precision) -> Hll {
        let m = precision.registers();
        let mut hist = [0; HISTOGRAM_LEN];
        // m ≤ 2^16.
        hist[0] = m as u32;
        Hll { precision: precision.0, hist, registers: vec![0; m].into_boxed_slice() }
    }

    /// Register index and rank of a fingerprint at precision `p`: the index is the top `p`
    /// bits, the rank the position of the first 1 among the other `32 − p` (at most `33 − p`).
    #[inline]
    fn locate(fp: u32, p: u8) -> (usize, u8) {
        let index = (fp >> (32 - u32::from(p))) as usize;
        let rest = fp << p;
        // `rest` has p trailing zeros, so a non-zero value has fewer than 32 − p leading ones.
        let rank = if rest == 0 { 33 - p } else { rest.leading_zeros() as u8 + 1 };
        (index, rank)
    }

    /// Raises register `index` to `rank`; true when it rose.
    #[inline]
    fn raise(&mut self, index: usize, rank: u8) -> bool {
        let Some(register) = self.registers.get_mut(index) else { return false };
        let old = *register;
        if rank <= old {
            return false;
        }
        *register = rank;
        self.hist[usize::from(old)] -= 1;
        self.hist[usize::from(rank)] += 1;
        true
    }

    #[inline]
    fn insert(&mut self, fp: u32) -> bool {
        let (index, rank) = Hll::locate(fp, self.precision);
        self.raise(index, rank)
    }

    /// Register-wise maximum with registers of the same precision; true when any rose.
    fn merge_registers(&mut self, other: &[u8]) -> bool {
        let mut raised = false;
        for (index, &rank) in other.iter().enumerate() {
            raised |= self.raise(index, rank);
        }
        raised
    }

    /// This sketch at a precision `p` no higher than its own: exactly the sketch that inserting
    /// the same values at precision `p` gives. The `shift` index bits dropped become the top
    /// bits of the rank.
    fn folded(&self, p: u8) -> Hll {
        let shift = self.precision.saturating_sub(p);
        if shift == 0 {
            return self.clone();
        }
        let mut out = Hll::new(Precision(p));
        let low_mask = (1usize << shift) - 1;
        for (index, &rank) in self.registers.iter().enumerate() {
            if rank == 0 {
                continue;
            }
            let low = (index & low_mask) as u32;
            let folded_rank = if low == 0 {
                shift + rank
            } else {
                (low.leading_zeros() - (32 - u32::from(shift))) as u8 + 1
            };
            out.raise(index >> shift, folded_rank);
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.hist[0] as usize == self.registers.len()
    }

    /// Ertl's improved raw estimate (2017, algorithm 6), rounded.
    fn estimate(&self) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let m = self.registers.len() as f64;
        let q = 32 - usize::from(self.precision);
        let mut z = m * tau((m - f64::from(self.hist[q + 1])) / m);
        for k in (1..=q).rev() {
            z = 0.5 * (z + f64::from(self.hist[k]));
        }
        z += m * sigma(f64::from(self.hist[0]) / m);
        // `as` saturates: an all-saturated sketch (z = 0) reads u64::MAX.
        (ALPHA_INF * m * m / z).round() as u64
    }

    fn heap_bytes(&self) -> usize {
        self.registers.len()
    }
}

/// `σ(x) = x + Σ_{k≥1} x^{2^k}·2^{k−1}` (Ertl 2017, eq. 43), for `x` in `[0, 1]`.
fn sigma(mut x: f64) -> f64 {
    if x >= 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    // Converges once x^{2^k} underflows against z: at most ~70 rounds for x just below 1.
    for _ in 0..128 {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            break;
        }
    }
    z
}

/// `τ(x) = (1 − x − Σ_{k≥1} (1 − x^{2^{−k}})²·2^{−k}) / 3` (Ertl 2017, eq. 40), for `x` in
/// `[0, 1]`.
fn tau(mut x: f64) -> f64 {
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    for _ in 0..128 {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if z == previous {
            break;
        }
    }
    z / 3.0
}

// ---- small exact lists --------------------------------------------------------------------

/// Storage of a counter: a sorted list of fingerprints (inline while short, then a heap slice
/// whose length is the capacity; the list length lives in the owner to keep it compact), or a
/// boxed sketch.
#[derive(Clone)]
enum Repr<T, const N: usize, S> {
    Inline([T; N]),
    Heap(Box<[T]>),
    Sketch(Box<S>),
}

impl<T: Copy + Default, const N: usize, S> Repr<T, N, S> {
    fn empty() -> Self {
        Repr::Inline([T::default(); N])
    }

    /// The exact list of `len` items, or `None` for a sketch.
    fn exact(&self, len: u16) -> Option<&[T]> {
        let len = usize::from(len);
        match self {
            Repr::Inline(items) => items.get(..len),
            Repr::Heap(items) => items.get(..len),
            Repr::Sketch(_) => None,
        }
    }

    fn exact_mut(&mut self, len: u16) -> Option<&mut [T]> {
        let len = usize::from(len);
        match self {
            Repr::Inline(items) => items.get_mut(..len),
            Repr::Heap(items) => items.get_mut(..len),
            Repr::Sketch(_) => None,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Repr::Inline(_) => N,
            Repr::Heap(items) => items.len(),
            Repr::Sketch(_) => 0,
        }
    }

    /// A list holding exactly `items` (inline when they fit).
    fn from_slice(items: &[T]) -> Self {
        if items.len() <= N {
            let mut inline = [T::default(); N];
            if let Some(head) = inline.get_mut(..items.len()) {
                head.copy_from_slice(items);
            }
            Repr::Inline(inline)
        } else {
            Repr::Heap(items.into())
        }
    }

    /// Inserts `item` at `pos` of the list of `*len` items, growing the storage (doubling, at
    /// most to `limit`). The caller checked `*len < limit` and `pos ≤ *len`.
    fn insert_at(&mut self, len: &mut u16, pos: usize, item: T, limit: usize) {
        let n = usize::from(*len);
        if n >= self.capacity() {
            let capacity = (self.capacity() * 2).max(4).min(limit).max(n + 1);
            let mut grown = vec![T::default(); capacity].into_boxed_slice();
            if let (Some(to), Some(from)) = (grown.get_mut(..n), self.exact(*len)) {
                to.copy_from_slice(from);
            }
            *self = Repr::Heap(grown);
        }
        let Some(list) = self.exact_mut(*len + 1) else { return };
        if pos <= n {
            list.copy_within(pos..n, pos + 1);
            list[pos] = item;
            *len += 1;
        }
    }

    /// Gives memory back after the list shrank to `len` items: inline when they fit, else half
    /// the capacity when a quarter or less is used.
    fn shrink(&mut self, len: u16) {
        let n = usize::from(len);
        let capacity = self.capacity();
        if matches!(self, Repr::Heap(_)) && (n <= N || (n * 4 <= capacity && capacity > 8)) {
            if let Some(items) = self.exact(len) {
                let items = items.to_vec();
                *self = if n <= N {
                    Repr::from_slice(&items)
                } else {
                    let mut smaller = vec![T::default(); (capacity / 2).max(n)];
                    smaller[..n].copy_from_slice(&items);
                    Repr::Heap(smaller.into_boxed_slice())
                };
            }
        }
    }

    /// Exact or sketch.
    fn mode(&self) -> Mode {
        match self {
            Repr::Sketch(_) => Mode::Sketch,
            Repr::Inline(_) | Repr::Heap(_) => Mode::Exact,
        }
    }

    /// Heap bytes of an exact list.
    fn list_heap_bytes(&self) -> usize {
        match self {
            Repr::Heap(items) => items.len() * size_of::<T>(),
            Repr::Inline(_) | Repr::Sketch(_) => 0,
        }
    }
}

// ---- DistinctCounter ----------------------------------------------------------------------

/// The sketch form of a [`DistinctCounter`].
#[derive(Clone, PartialEq, Eq)]
struct CounterSketch {
    hll: Hll,
    /// A lower bound of the distinct count (`exact_limit + 1` when it left exact mode).
    floor: u32,
}

/// Counts distinct values: exact up to a limit, a HyperLogLog sketch above it.
///
/// Values are `u64`s (hashes, see the [module docs](self)). Counters of the same configuration
/// merge exactly: merging gives the same state as inserting the union.
#[derive(Clone)]
pub struct DistinctCounter {
    exact_limit: u16,
    /// Length of the exact list.
    len: u16,
    precision: Precision,
    repr: Repr<u32, INLINE_FINGERPRINTS, CounterSketch>,
}

impl DistinctCounter {
    /// Exact up to `exact_limit` distinct values (at most [`MAX_EXACT_LIMIT`]), then a sketch of
    /// the default precision.
    #[must_use]
    pub fn new(exact_limit: usize) -> DistinctCounter {
        DistinctCounter::with_precision(exact_limit, Precision::DEFAULT)
    }

    /// Exact up to `exact_limit` distinct values, then a sketch of `precision`.
    #[must_use]
    pub fn with_precision(exact_limit: usize, precision: Precision) -> DistinctCounter {
        DistinctCounter { exact_limit: clamp_limit(exact_limit), len: 0, precision, repr: Repr::empty() }
    }

    /// Counts the value `hash`. True when the estimate may have increased (a new value in
    /// exact mode, a raised register in sketch mode): on false the caller can skip
    /// re-evaluating a threshold.
    pub fn insert(&mut self, hash: u64) -> bool {
        let fp = fingerprint32(hash);
        if let Repr::Sketch(sketch) = &mut self.repr {
            return sketch.hll.insert(fp);
        }
        let pos = match self.repr.exact(self.len).map(|list| list.binary_search(&fp)) {
            Some(Err(pos)) => pos,
            Some(Ok(_)) | None => return false,
        };
        if self.len < self.exact_limit {
            self.repr.insert_at(&mut self.len, pos, fp, usize::from(self.exact_limit));
        } else {
            let sketch = self.sketch_of_list(&[fp], u32::from(self.exact_limit) + 1);
            self.set_sketch(sketch);
        }
        true
    }

    /// The distinct count: exact in exact mode, else the sketch estimate (at least
    /// `exact_limit + 1`).
    #[must_use]
    pub fn estimate(&self) -> u64 {
        match &self.repr {
            Repr::Sketch(sketch) => sketch.hll.estimate().max(u64::from(sketch.floor)),
            Repr::Inline(_) | Repr::Heap(_) => u64::from(self.len),
        }
    }

    /// Adds `other`'s values: the union of two exact lists stays exact while within this
    /// counter's limit; otherwise the result is a sketch (at the lower of the two precisions when
    /// they differ — a sketch folds exactly to a lower precision).
    pub fn merge(&mut self, other: &DistinctCounter) {
        match (&self.repr, &other.repr) {
            (_, Repr::Sketch(theirs)) => {
                let mut merged = match &self.repr {
                    Repr::Sketch(ours) => (**ours).clone(),
                    Repr::Inline(_) | Repr::Heap(_) => self.sketch_of_list(&[], u32::from(self.len)),
                };
                merged.floor = merged.floor.max(theirs.floor);
                let p = merged.hll.precision.min(theirs.hll.precision);
                if merged.hll.precision > p {
                    merged.hll = merged.hll.folded(p);
                }
                if theirs.hll.precision > p {
                    merged.hll.merge_registers(&theirs.hll.folded(p).registers);
                } else {
                    merged.hll.merge_registers(&theirs.hll.registers);
                }
                self.set_sketch(merged);
            }
            (Repr::Sketch(_), _) => {
                if let Repr::Sketch(ours) = &mut self.repr {
                    for &fp in other.repr.exact(other.len).unwrap_or(&[]) {
                        ours.hll.insert(fp);
                    }
                    ours.floor = ours.floor.max(u32::from(other.len));
                }
            }
            (_, _) => {
                let ours = self.repr.exact(self.len).unwrap_or(&[]);
                let theirs = other.repr.exact(other.len).unwrap_or(&[]);
                let union = sorted_union(ours, theirs);
                if union.len() <= usize::from(self.exact_limit) {
                    self.repr = Repr::from_slice(&union);
                    // union.len() ≤ exact_limit ≤ u16::MAX.
                    self.len = union.len() as u16;
                } else {
                    // More than exact_limit values: the floor holds.
                    let sketch = self.sketch_of_list(&union, u32::from(self.exact_limit) + 1);
                    self.set_sketch(sketch);
                }
            }
        }
    }

    /// Forgets every value (and gives back the sketch memory); the configuration stays.
    pub fn clear(&mut self) {
        self.repr = Repr::empty();
        self.len = 0;
    }

    /// Bytes this counter occupies: its own size plus its heap allocations (allocator overhead
    /// not included).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + match &self.repr {
                Repr::Sketch(sketch) => size_of::<CounterSketch>() + sketch.hll.heap_bytes(),
                repr @ (Repr::Inline(_) | Repr::Heap(_)) => repr.list_heap_bytes(),
            }
    }

    /// Exact or sketch.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.repr.mode()
    }

    /// The configured exact limit (after clamping).
    #[must_use]
    pub fn exact_limit(&self) -> usize {
        usize::from(self.exact_limit)
    }

    /// The configured sketch precision.
    #[must_use]
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// A sketch of the exact list (none in sketch mode) and `more` fingerprints, whose
    /// distinct count is known to be at least `floor`.
    fn sketch_of_list(&self, more: &[u32], floor: u32) -> CounterSketch {
        let mut hll = Hll::new(self.precision);
        for &fp in self.repr.exact(self.len).unwrap_or(&[]).iter().chain(more) {
            hll.insert(fp);
        }
        CounterSketch { hll, floor }
    }

    fn set_sketch(&mut self, sketch: CounterSketch) {
        self.repr = Repr::Sketch(Box::new(sketch));
        self.len = 0;
    }
}

impl Default for DistinctCounter {
    /// [`DEFAULT_EXACT_LIMIT`], [`Precision::DEFAULT`].
    fn default() -> DistinctCounter {
        DistinctCounter::new(DEFAULT_EXACT_LIMIT)
    }
}

impl PartialEq for DistinctCounter {
    /// Same counted state: equal exact lists, or equal sketches (registers and floor). The
    /// configuration is not compared.
    fn eq(&self, other: &DistinctCounter) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Sketch(a), Repr::Sketch(b)) => a == b,
            (Repr::Sketch(_), _) | (_, Repr::Sketch(_)) => false,
            _ => self.repr.exact(self.len) == other.repr.exact(other.len),
        }
    }
}

impl Eq for DistinctCounter {}

impl fmt::Debug for DistinctCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DistinctCounter")
            .field("mode", &self.mode())
            .field("estimate", &self.estimate())
            .field("exact_limit", &self.exact_limit)
            .field("precision", &self.precision.0)
            .finish()
    }
}

/// The sorted union of two sorted, duplicate-free lists.
fn sorted_union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) {
        match x.cmp(&y) {
            Ordering::Less => {
                out.push(x);
                i += 1;
            }
            Ordering::Greater => {
                out.push(y);
                j += 1;
            }
            Ordering::Equal => {
                out.push(x);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(a.get(i..).unwrap_or(&[]));
    out.extend_from_slice(b.get(j..).unwrap_or(&[]));
    out
}

// ---- windows ------------------------------------------------------------------------------

/// Bucket width and count for a window: `G` clamped to `1..=MAX_BUCKETS`, `B = window / G` at
/// least 1 ns.
fn window_shape(window: Duration, buckets: usize) -> (u64, u16) {
    let g = buckets.clamp(1, MAX_BUCKETS);
    let width = (window.as_nanos() / g as u64).max(1);
    // g ≤ MAX_BUCKETS < 2^16.
    (width, g as u16)
}

/// Bucket of `now`, with a division-free path for the head bucket (the common case).
#[inline]
fn bucket_of(width: u64, head: u64, now: Nanos) -> u64 {
    // head·width is the start of a bucket some earlier time fell in: no overflow.
    let start = head.wrapping_mul(width);
    if now.0 >= start && now.0 - start < width { head } else { now.0 / width }
}

/// Start and end of the window at head `head`.
fn window_bounds(width: u64, buckets: u16, head: u64) -> (Nanos, Nanos) {
    let first = head.saturating_sub(u64::from(buckets) - 1);
    (Nanos(first.saturating_mul(width)), Nanos(head.saturating_add(1).saturating_mul(width)))
}

/// Outcome of counting a value into a [`WindowedDistinct`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The value may have raised the count (it was new to the window, or it raised a sketch
    /// register): re-evaluate thresholds. Carries the windowed estimate after it.
    New(u64),
    /// The value cannot have raised the count (already counted in the window; in sketch mode,
    /// it raised no register of the window's sketch): carries the windowed estimate, unchanged
    /// by this value.
    Known(u64),
}

impl Counted {
    /// The windowed estimate after the insert.
    #[must_use]
    pub fn estimate(self) -> u64 {
        match self {
            Counted::New(n) | Counted::Known(n) => n,
        }
    }

    /// The estimate when it may have risen, else `None`.
    #[must_use]
    pub fn new_estimate(self) -> Option<u64> {
        match self {
            Counted::New(n) => Some(n),
            Counted::Known(_) => None,
        }
    }
}

/// Age in buckets of an exact entry at head `head` (entries keep the low 32 bits of their
/// bucket; every live entry is younger than `G ≤ 1024` buckets, so this is unambiguous).
#[inline]
fn entry_age(head: u64, entry: u64) -> u64 {
    u64::from((head as u32).wrapping_sub(entry as u32))
}

/// Fingerprint of an exact entry.
#[inline]
fn entry_fp(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// A windowed HyperLogLog: one register array per bucket slot, and their running maximum.
#[derive(Clone)]
struct SketchRing {
    /// Bucket held by each slot (`bucket % G`), or [`EMPTY_SLOT`]. Every held bucket is within
    /// the window of the head.
    slot_bucket: Box<[u64]>,
    /// `G × m` registers, slot after slot.
    slots: Box<[u8]>,
    /// Maximum over the slots: the sketch of the window.
    merged: Hll,
    /// `merged.estimate()`, cached.
    estimate: u64,
}

impl SketchRing {
    fn new(buckets: u16, precision: Precision) -> SketchRing {
        let g = usize::from(buckets);
        SketchRing {
            slot_bucket: vec![EMPTY_SLOT; g].into_boxed_slice(),
            slots: vec![0; g * precision.registers()].into_boxed_slice(),
            merged: Hll::new(precision),
            estimate: 0,
        }
    }

    fn slot_registers(&mut self, slot: usize) -> &mut [u8] {
        let m = self.merged.registers.len();
        self.slots.get_mut(slot * m..(slot + 1) * m).unwrap_or(&mut [])
    }

    /// The slot of `bucket` (within the window), emptied first if it held another bucket.
    fn slot_for(&mut self, bucket: u64) -> usize {
        let slot = (bucket % self.slot_bucket.len() as u64) as usize;
        if self.slot_bucket.get(slot) != Some(&bucket) {
            self.slot_registers(slot).fill(0);
            if let Some(held) = self.slot_bucket.get_mut(slot) {
                *held = bucket;
            }
        }
        slot
    }

    /// Counts fingerprint `fp` in bucket `bucket` (within the window).
    fn insert(&mut self, bucket: u64, fp: u32) -> Counted {
        let slot = self.slot_for(bucket);
        let (index, rank) = Hll::locate(fp, self.merged.precision);
        if let Some(register) = self.slot_registers(slot).get_mut(index) {
            *register = (*register).max(rank);
        }
        if self.merged.raise(index, rank) {
            self.estimate = self.merged.estimate();
            Counted::New(self.estimate)
        } else {
            Counted::Known(self.estimate)
        }
    }

    /// Merges sketch registers of the ring's precision into bucket `bucket` (within the window).
    fn merge_at(&mut self, bucket: u64, registers: &[u8]) -> Counted {
        let slot = self.slot_for(bucket);
        for (ours, &theirs) in self.slot_registers(slot).iter_mut().zip(registers) {
            *ours = (*ours).max(theirs);
        }
        if self.merged.merge_registers(registers) {
            self.estimate = self.merged.estimate();
            Counted::New(self.estimate)
        } else {
            Counted::Known(self.estimate)
        }
    }

    /// Folds every slot, and the maximum, to precision `p` (if lower than the ring's).
    fn fold(&mut self, p: u8) {
        let from = self.merged.precision;
        if p >= from {
            return;
        }
        let (m_from, m_to) = (self.merged.registers.len(), 1usize << p);
        let mut slots = vec![0; self.slot_bucket.len() * m_to];
        for (registers, to) in self.slots.chunks(m_from).zip(slots.chunks_mut(m_to)) {
            let mut slot = Hll::new(Precision(from));
            slot.merge_registers(registers);
            to.copy_from_slice(&slot.folded(p).registers);
        }
        self.slots = slots.into_boxed_slice();
        self.merged = self.merged.folded(p);
        self.estimate = self.merged.estimate();
    }

    /// Whether the slot holding `bucket` is still in the window at head `head`.
    fn live(bucket: u64, head: u64, buckets: u16) -> bool {
        bucket != EMPTY_SLOT && head.saturating_sub(bucket) < u64::from(buckets)
    }

    /// The window's sketch at head `head` ≥ the ring's: the maximum over the slots still live.
    fn merged_at(&self, head: u64, buckets: u16) -> Hll {
        let mut merged = Hll::new(Precision(self.merged.precision));
        let m = merged.registers.len();
        for (slot, &bucket) in self.slot_bucket.iter().enumerate() {
            if SketchRing::live(bucket, head, buckets) {
                merged.merge_registers(self.slots.get(slot * m..(slot + 1) * m).unwrap_or(&[]));
            }
        }
        merged
    }

    /// Expires the slots that left the window at head `head`; false when none is left.
    fn expire(&mut self, head: u64, buckets: u16) -> bool {
        let mut expired = false;
        let mut left = false;
        for slot in 0..self.slot_bucket.len() {
            let bucket = self.slot_bucket.get(slot).copied().unwrap_or(EMPTY_SLOT);
            if bucket == EMPTY_SLOT {
                continue;
            }
            if SketchRing::live(bucket, head, buckets) {
                left = true;
            } else {
                self.slot_registers(slot).fill(0);
                if let Some(held) = self.slot_bucket.get_mut(slot) {
                    *held = EMPTY_SLOT;
                }
                expired = true;
            }
        }
        if expired && left {
            self.merged = self.merged_at(head, buckets);
            self.estimate = self.merged.estimate();
        }
        left
    }

    fn heap_bytes(&self) -> usize {
        size_of::<SketchRing>()
            + self.slot_bucket.len() * size_of::<u64>()
            + self.slots.len()
            + self.merged.heap_bytes()
    }
}

/// Distinct values over a hopping event-time window (see the [module docs](self) for the exact
/// semantics): exact up to `exact_limit` values in the window, per-bucket HyperLogLogs above.
///
/// In exact mode one sorted list of (fingerprint, newest bucket seen) pairs covers the
/// whole window, so a key with a few values costs a few tens of bytes whatever `G` is.
#[derive(Clone)]
pub struct WindowedDistinct {
    /// Bucket width `B`, ns.
    width: u64,
    /// The newest bucket seen.
    head: u64,
    /// `G`.
    buckets: u16,
    exact_limit: u16,
    /// Length of the exact list.
    len: u16,
    precision: Precision,
    /// Exact entries are `fingerprint << 32 | (bucket & 0xffff_ffff)`, sorted (by fingerprint).
    repr: Repr<u64, INLINE_ENTRIES, SketchRing>,
}

impl WindowedDistinct {
    /// A window of `window` made of `buckets` buckets (clamped to `1..=MAX_BUCKETS`; bucket width
    /// `window / buckets`, at least 1 ns), exact up to `exact_limit` distinct values in the
    /// window, then sketches of the default precision.
    #[must_use]
    pub fn new(window: Duration, buckets: usize, exact_limit: usize) -> WindowedDistinct {
        let (width, buckets) = window_shape(window, buckets);
        WindowedDistinct {
            width,
            head: 0,
            buckets,
            exact_limit: clamp_limit(exact_limit),
            len: 0,
            precision: Precision::DEFAULT,
            repr: Repr::empty(),
        }
    }

    /// The same with sketches of `precision` (for a counter that has not converted yet).
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> WindowedDistinct {
        self.precision = precision;
        self
    }

    /// Counts value `hash` at event time `now`.
    ///
    /// # Errors
    ///
    /// [`Late`] when `now` lies before the window (older than the head by `G` buckets or more);
    /// the value is not counted.
    pub fn insert(&mut self, now: Nanos, hash: u64) -> Result<Counted, Late> {
        self.insert_fingerprint(now, fingerprint32(hash))
    }

    /// [`WindowedDistinct::insert`] of a value whose 32-bit fingerprint (all this counter keeps
    /// of a value) was taken earlier.
    ///
    /// # Errors
    ///
    /// [`Late`] as [`WindowedDistinct::insert`].
    pub(crate) fn insert_fingerprint(&mut self, now: Nanos, fp: u32) -> Result<Counted, Late> {
        let bucket = self.enter(now)?;
        Ok(self.count(bucket, fp))
    }

    /// Adds a partial aggregate — the values a worker gathered during one bucket — as if its
    /// values were inserted at `now` (a time in that bucket, e.g. its start). An exact part adds
    /// its fingerprints one by one, exactly like inserting its values; a sketch part makes this
    /// counter a sketch too, at the lower of the two precisions.
    ///
    /// # Errors
    ///
    /// [`Late`] when `now` lies before the window; nothing is added.
    pub fn merge_at(&mut self, now: Nanos, part: &DistinctCounter) -> Result<Counted, Late> {
        let bucket = self.enter(now)?;
        let Repr::Sketch(theirs) = &part.repr else {
            let mut counted = Counted::Known(self.current_estimate());
            for &fp in part.repr.exact(part.len).unwrap_or(&[]) {
                counted = match (counted, self.count(bucket, fp)) {
                    (Counted::New(_), now) => Counted::New(now.estimate()),
                    (Counted::Known(_), now) => now,
                };
            }
            return Ok(counted);
        };
        if !matches!(self.repr, Repr::Sketch(_)) {
            self.promote();
        }
        let Repr::Sketch(ring) = &mut self.repr else { return Ok(Counted::Known(0)) };
        let p = ring.merged.precision.min(theirs.hll.precision);
        ring.fold(p);
        if theirs.hll.precision > p {
            Ok(ring.merge_at(bucket, &theirs.hll.folded(p).registers))
        } else {
            Ok(ring.merge_at(bucket, &theirs.hll.registers))
        }
    }

    /// Moves the head to `now`'s bucket (if later) and drops what left the window, so later
    /// estimates are cheap. Inserting does this too.
    pub fn advance(&mut self, now: Nanos) {
        let bucket = bucket_of(self.width, self.head, now);
        if bucket > self.head {
            self.advance_to(bucket);
        }
    }

    /// The distinct count in the window at `now` (as of the head when `now` is older). Does not
    /// change the counter: in sketch mode, a `now` past a bucket end costs O(G·m) until
    /// [`advance`](Self::advance) is called.
    #[must_use]
    pub fn estimate(&self, now: Nanos) -> u64 {
        let bucket = bucket_of(self.width, self.head, now);
        let g = u64::from(self.buckets);
        let step = bucket.saturating_sub(self.head);
        match &self.repr {
            Repr::Sketch(ring) => {
                // Nothing left the window since the head: the cached estimate holds.
                if step == 0 || ring.slot_bucket.iter().all(|&b| b == EMPTY_SLOT || bucket - b < g) {
                    ring.estimate
                } else {
                    ring.merged_at(bucket, self.buckets).estimate()
                }
            }
            repr @ (Repr::Inline(_) | Repr::Heap(_)) => {
                let list = repr.exact(self.len).unwrap_or(&[]);
                list.iter().filter(|&&e| entry_age(self.head, e).saturating_add(step) < g).count() as u64
            }
        }
    }

    /// True when nothing is left in the window at `now`: the caller can drop the counter.
    #[must_use]
    pub fn is_idle(&self, now: Nanos) -> bool {
        let bucket = bucket_of(self.width, self.head, now).max(self.head);
        match &self.repr {
            Repr::Sketch(ring) => {
                !ring.slot_bucket.iter().any(|&b| SketchRing::live(b, bucket, self.buckets))
            }
            Repr::Inline(_) | Repr::Heap(_) => self.estimate(now) == 0,
        }
    }

    /// Bytes this counter occupies: its own size plus its heap allocations (allocator overhead
    /// not included).
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>()
            + match &self.repr {
                Repr::Sketch(ring) => ring.heap_bytes(),
                repr @ (Repr::Inline(_) | Repr::Heap(_)) => repr.list_heap_bytes(),
            }
    }

    /// Exact or sketch.
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.repr.mode()
    }

    /// The window `[start, end)` counted at `now` (as of the head when `now` is older).
    #[must_use]
    pub fn window_at(&self, now: Nanos) -> (Nanos, Nanos) {
        let bucket = bucket_of(self.width, self.head, now).max(self.head);
        window_bounds(self.width, self.buckets, bucket)
    }

    /// Bucket width `B`.
    #[must_use]
    pub fn bucket_width(&self) -> Duration {
        Duration(self.width)
    }

    /// Number of buckets `G`.
    #[must_use]
    pub fn buckets(&self) -> usize {
        usize::from(self.buckets)
    }

    /// The configured exact limit (after clamping).
    #[must_use]
    pub fn exact_limit(&self) -> usize {
        usize::from(self.exact_limit)
    }

    /// Starts loading the exact list when it lives outside the counter (on the heap): the
    /// lines a binary search over it reads first.
    #[inline]
    pub(crate) fn prefetch_heap(&self) {
        if let Repr::Heap(items) = &self.repr {
            let n = usize::from(self.len).min(items.len());
            for at in [n / 2, n / 4, n - n / 4] {
                if let Some(e) = items.get(at) {
                    outpost_flowmeter::index::prefetch(e);
                }
            }
        }
    }

    /// The bucket of `now`, after moving the head to it if it is later; [`Late`] before the
    /// window.
    fn enter(&mut self, now: Nanos) -> Result<u64, Late> {
        let bucket = bucket_of(self.width, self.head, now);
        if bucket > self.head {
            self.advance_to(bucket);
        } else if self.head - bucket >= u64::from(self.buckets) {
            return Err(Late);
        }
        Ok(bucket)
    }

    /// Counts fingerprint `fp` in bucket `bucket` (within the window).
    fn count(&mut self, bucket: u64, fp: u32) -> Counted {
        if let Repr::Sketch(ring) = &mut self.repr {
            return ring.insert(bucket, fp);
        }
        let entry = u64::from(fp) << 32 | (bucket & 0xffff_ffff);
        let head = self.head;
        let Some(list) = self.repr.exact_mut(self.len) else { return Counted::Known(0) };
        match list.binary_search_by(|&e| entry_fp(e).cmp(&fp)) {
            Ok(i) => {
                // Seen: keep its newest bucket (out-of-order input must not shorten its life).
                if let Some(e) = list.get_mut(i) {
                    if entry_age(head, *e) > head - bucket {
                        *e = entry;
                    }
                }
                Counted::Known(u64::from(self.len))
            }
            Err(pos) if self.len < self.exact_limit => {
                self.repr.insert_at(&mut self.len, pos, entry, usize::from(self.exact_limit));
                Counted::New(u64::from(self.len))
            }
            Err(_) => {
                self.promote();
                match &mut self.repr {
                    Repr::Sketch(ring) => Counted::New(ring.insert(bucket, fp).estimate()),
                    Repr::Inline(_) | Repr::Heap(_) => Counted::Known(0),
                }
            }
        }
    }

    /// Converts the exact list to sketches, each value in the bucket it was last seen in.
    fn promote(&mut self) {
        let mut ring = SketchRing::new(self.buckets, self.precision);
        for &e in self.repr.exact(self.len).unwrap_or(&[]) {
            ring.insert(self.head.saturating_sub(entry_age(self.head, e)), entry_fp(e));
        }
        self.repr = Repr::Sketch(Box::new(ring));
        self.len = 0;
    }

    /// The estimate as of the head.
    fn current_estimate(&self) -> u64 {
        match &self.repr {
            Repr::Sketch(ring) => ring.estimate,
            Repr::Inline(_) | Repr::Heap(_) => u64::from(self.len),
        }
    }

    fn advance_to(&mut self, bucket: u64) {
        let step = bucket - self.head;
        let old_head = self.head;
        self.head = bucket;
        let g = u64::from(self.buckets);
        if let Repr::Sketch(ring) = &mut self.repr {
            if step >= g || !ring.expire(bucket, self.buckets) {
                self.repr = Repr::empty();
                self.len = 0;
            }
            return;
        }
        if step >= g {
            self.repr = Repr::empty();
            self.len = 0;
            return;
        }
        let Some(list) = self.repr.exact_mut(self.len) else { return };
        let mut kept = 0;
        let mut i = 0;
        while let Some(&e) = list.get(i) {
            if entry_age(old_head, e) + step < g {
                list[kept] = e;
                kept += 1;
            }
            i += 1;
        }
        if kept < i {
            // kept < len ≤ u16::MAX.
            self.len = kept as u16;
            self.repr.shrink(self.len);
        }
    }
}

impl fmt::Debug for WindowedDistinct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedDistinct")
            .field("mode", &self.mode())
            .field("estimate", &self.current_estimate())
            .field("head", &self.head)
            .field("bucket_width", &self.width)
            .field("buckets", &self.buckets)
            .field("exact_limit", &self.exact_limit)
            .finish()
    }
}

/// A count or sum over a hopping event-time window (see the [module docs](self)): a ring of
/// `G` per-bucket totals and their running sum. Sums saturate at `u64::MAX`.
#[derive(Debug, Clone)]
pub struct WindowedCount {
    /// Bucket width `B`, ns.
    width: u64,
    /// The newest bucket seen.
    head: u64,
    /// Sum of `totals`.
    total: u64,
    /// Per bucket, at slot `bucket % G`; slots of buckets outside the window are zero.
    totals: Totals,
}

/// Up to this many buckets are held inline, so that a key's counter costs no allocation with
/// the default `window_buckets` (6). Not more: every key of a rule pays for the inline room,
/// and the scan rules' tables hold hundreds of thousands of keys.
const INLINE_TOTALS: usize = 6;

/// A [`WindowedCount`]'s per-bucket totals: inline for small `G`, else on the heap.
#[derive(Debug, Clone)]
enum Totals {
    Inline { len: u8, slots: [u64; INLINE_TOTALS] },
    Heap(Box<[u64]>),
}

impl Totals {
    fn zeroed(n: usize) -> Totals {
        match u8::try_from(n) {
            Ok(len) if n <= INLINE_TOTALS => Totals::Inline { len, slots: [0; INLINE_TOTALS] },
            _ => Totals::Heap(vec![0; n].into_boxed_slice()),
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u64] {
        match self {
            Totals::Inline { len, slots } => slots.get(..usize::from(*len)).unwrap_or(slots),
            Totals::Heap(b) => b,
        }
    }

    #[inline]
    fn as_mut_slice(&mut self) -> &mut [u64] {
        match self {
            Totals::Inline { len, slots } => {
                let n = usize::from(*len).min(INLINE_TOTALS);
                slots.get_mut(..n).unwrap_or_default()
            }
            Totals::Heap(b) => b,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Totals::Inline { .. } => 0,
            Totals::Heap(b) => b.len() * size_of::<u64>(),
        }
    }
}

impl WindowedCount {
    /// A window of `window` made of `buckets` buckets (clamped to `1..=MAX_BUCKETS`; bucket width
    /// `window / buckets`, at least 1 ns).
    #[must_use]
    pub fn new(window: Duration, buckets: usize) -> WindowedCount {
        let (width, buckets) = window_shape(window, buckets);
        WindowedCount { width, head: 0, total: 0, totals: Totals::zeroed(usize::from(buckets)) }
    }

    /// Adds `amount` (1 for a count) at event time `now`; returns the windowed total.
    ///
    /// # Errors
    ///
    /// [`Late`] when `now` lies before the window; nothing is added.
    pub fn add(&mut self, now: Nanos, amount: u64) -> Result<u64, Late> {
        let bucket = bucket_of(self.width, self.head, now);
        if bucket > self.head {
            self.advance_to(bucket);
        } else if self.head - bucket >= self.totals.as_slice().len() as u64 {
            return Err(Late);
        }
        let slot = (bucket % self.totals.as_slice().len() as u64) as usize;
        if let Some(total) = self.totals.as_mut_slice().get_mut(slot) {
            *total = total.saturating_add(amount);
        }
        self.total = self.total.saturating_add(amount);
        Ok(self.total)
    }

    /// The windowed total at `now` (as of the head when `now` is older). Does not change the
    /// counter.
    #[must_use]
    pub fn total(&self, now: Nanos) -> u64 {
        let bucket = bucket_of(self.width, self.head, now);
        let g = self.totals.as_slice().len() as u64;
        if bucket <= self.head {
            return self.total;
        }
        if bucket - self.head >= g {
            return 0;
        }
        // Buckets head+1..=bucket reuse the slots of buckets that leave the window.
        (self.head + 1..=bucket)
            .map(|b| self.totals.as_slice().get((b % g) as usize).copied().unwrap_or(0))
            .fold(self.total, u64::saturating_sub)
    }

    /// Moves the head to `now`'s bucket (if later), dropping what left the window.
    pub fn advance(&mut self, now: Nanos) {
        let bucket = bucket_of(self.width, self.head, now);
        if bucket > self.head {
            self.advance_to(bucket);
        }
    }

    /// True when the window at `now` holds nothing: the caller can drop the counter.
    #[must_use]
    pub fn is_idle(&self, now: Nanos) -> bool {
        self.total(now) == 0
    }

    /// The window `[start, end)` counted at `now` (as of the head when `now` is older).
    #[must_use]
    pub fn window_at(&self, now: Nanos) -> (Nanos, Nanos) {
        let bucket = bucket_of(self.width, self.head, now).max(self.head);
        // totals.len() ≤ MAX_BUCKETS.
        window_bounds(self.width, self.totals.as_slice().len() as u16, bucket)
    }

    /// Bucket width `B`.
    #[must_use]
    pub fn bucket_width(&self) -> Duration {
        Duration(self.width)
    }

    /// Number of buckets `G`.
    #[must_use]
    pub fn buckets(&self) -> usize {
        self.totals.as_slice().len()
    }

    /// Bytes this counter occupies, its ring included.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.totals.heap_bytes()
    }

    fn advance_to(&mut self, bucket: u64) {
        let g = self.totals.as_slice().len() as u64;
        let step = bucket - self.head;
        if step >= g {
            self.totals.as_mut_slice().fill(0);
        } else {
            for b in self.head + 1..=bucket {
                if let Some(total) = self.totals.as_mut_slice().get_mut((b % g) as usize) {
                    *total = 0;
                }
            }
        }
        self.head = bucket;
        self.total = self.totals.as_slice().iter().fold(0, |sum, &t| sum.saturating_add(t));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_and_index_use_the_top_32_bits() {
        let p = 10;
        assert_eq!(Hll::locate(0xffc0_0000, p), (1023, 23));
        assert_eq!(Hll::locate(0x0020_0000, p), (0, 1));
        assert_eq!(Hll::locate(0x0010_0000, p), (0, 2));
        assert_eq!(Hll::locate(0x0000_0001, p), (0, 22));
        assert_eq!(Hll::locate(0, 4), (0, 29));
    }

    #[test]
    fn folding_equals_inserting_at_the_lower_precision() {
        let mut high = Hll::new(Precision(14));
        let mut low = Hll::new(Precision(9));
        for v in 0..20_000u64 {
            high.insert(fingerprint32(v));
            low.insert(fingerprint32(v));
        }
        assert!(high.folded(9) == low);
        assert!(high.folded(14) == high);
    }

    #[test]
    fn histogram_stays_in_step_with_registers() {
        let mut hll = Hll::new(Precision(6));
        for v in 0..5_000u64 {
            hll.insert(fingerprint32(v));
        }
        let mut hist = [0u32; HISTOGRAM_LEN];
        for &r in hll.registers.iter() {
            hist[usize::from(r)] += 1;
        }
        assert_eq!(hist, hll.hist);
    }

    #[test]
    fn sigma_and_tau_edges() {
        assert_eq!(sigma(1.0), f64::INFINITY);
        assert_eq!(sigma(0.0), 0.0);
        assert_eq!(tau(0.0), 0.0);
        assert_eq!(tau(1.0), 0.0);
        assert!(sigma(0.999_999).is_finite());
        assert!(tau(0.5) > 0.0);
    }

    #[test]
    fn estimator_is_close_on_small_and_saturated_sketches() {
        let mut hll = Hll::new(Precision::DEFAULT);
        assert_eq!(hll.estimate(), 0);
        hll.insert(fingerprint32(1));
        assert_eq!(hll.estimate(), 1);
        let mut full = Hll::new(Precision::MIN);
        for i in 0..16 {
            full.raise(i, 29);
        }
        assert_eq!(full.estimate(), u64::MAX);
    }

    #[test]
    fn compact_layouts() {
        assert_eq!(size_of::<DistinctCounter>(), 32);
        assert_eq!(size_of::<WindowedDistinct>(), 48);
        assert_eq!(size_of::<WindowedCount>(), 80);
        // The module docs' memory table.
        assert_eq!(size_of::<CounterSketch>(), 152);
        assert_eq!(size_of::<SketchRing>(), 184);
    }
}
