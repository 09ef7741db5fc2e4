//! Threat-intelligence address lists: files of IP addresses and CIDR prefixes, matched against
//! packet addresses by longest prefix.
//!
//! # File format
//!
//! UTF-8 text (a leading byte-order mark is ignored), one entry per line, `\n` or `\r\n`:
//!
//! ```text
//! # Spamhaus-style header lines starting with `;` are comments too
//! 192.0.2.7                      a host (IPv4 /32)
//! 198.51.100.0/24  ; SBL123      a prefix, with a description
//! 2001:db8::/32                  # an IPv6 prefix; the rest of this line is a comment
//! 2001:db8:ffff::1
//! ::ffff:203.0.113.0/120         the IPv4 prefix 203.0.113.0/24, written IPv4-mapped
//! ```
//!
//! - An entry is an IPv4 or IPv6 address, optionally followed by `/LEN`. A bare address is a
//!   host (`/32` or `/128`). It ends at the first blank, `,`, `;` or `#`.
//! - `#` starts a comment anywhere on a line. A line whose first non-blank character is `#` or
//!   `;` is a comment; blank lines are ignored.
//! - Text after the entry (up to a `#`) is the entry's **description**, trimmed, with one
//!   leading `;` or `,` separator removed, so `1.10.16.0/20 ; SBL256894` (Spamhaus DROP) and
//!   `192.0.2.7,botnet C2` keep `SBL256894` and `botnet C2`. Alerts can show it.
//! - A prefix with host bits set (`10.1.2.3/8`) is a **bad line**, not silently widened to
//!   `10.0.0.0/8`: a list author who wrote it usually meant the host, and widening would
//!   match sixteen million addresses. So are a malformed address, a prefix length out of range
//!   for the family, and IPv6 zone ids (`fe80::1%eth0`).
//! - IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) *is* IPv4, as in [`IpAddress`]:
//!   `::ffff:192.0.2.7` is the host `192.0.2.7`, and `::ffff:0:0/96+n` the IPv4 `/n`.
//!
//! # Bad lines
//!
//! Every bad line is counted, and the first is reported as a [`ConfigError`] naming the file,
//! line, column and text (``drop.txt:3:1: `10.0.0.300`: not an IP address or CIDR prefix
//! (and 2 more bad lines)``). A strict list (the default, meant for lists a
//! configuration names) then fails the load with [`IntelError::BadLines`]; a
//! [`lenient`](field@IntelSource::lenient) one (for third-party feeds with junk) loads the good
//! lines and keeps the count and the first error in [`IntelList::skipped_lines`] and
//! [`IntelList::first_skipped`].
//!
//! # Matching
//!
//! [`IntelSet::lookup`] returns the longest prefix, over all lists, that contains the address.
//! When the same prefix is on several lists (or twice on one), the first occurrence wins: the
//! lowest list index, then the earliest line; the others are counted as
//! [`IntelStats::duplicates`]. IPv4 entries only match IPv4 addresses and IPv6 entries only
//! IPv6 addresses — even `::/0` matches no IPv4 address, unlike [`Cidr::contains`] — and an
//! address in `::ffff:0:0/96` is IPv4.
//!
//! # Structure, cost and memory
//!
//! Lists are mostly hosts with some prefixes, and most lookups miss, so the structure is
//! built for cheap misses and for bytes per host:
//!
//! - **IPv4** goes through a directory of the 65,536 `/16`s (12 bytes each, 768 KiB). Each
//!   `/16` owns a sorted run of the low 16 bits of its hosts (2 bytes per host, plus a 4-byte
//!   entry id, only read on a hit) and a sorted run of range boundaries (low 16 bits + 4-byte
//!   value) of the prefixes shorter than `/32`, which the build has flattened into disjoint
//!   address ranges, each labelled with its longest covering prefix. A lookup reads one
//!   directory slot, binary-searches one run of hosts and, when that misses, one run of
//!   boundaries: a bounded handful of cache lines (a `/16` holds at most 65,536 of either, so
//!   at most 16 steps each; typically one or two).
//! - **IPv6** hosts sit in a hash table (one probe). IPv6 prefixes are flattened into
//!   disjoint ranges the same way, behind a directory indexed by the bits that follow the
//!   leading bits all of them share (feeds cluster in `2000::/3` and a few registry blocks of
//!   it); the directory has about one slot per boundary, at most 65,536, and each slot's
//!   boundaries are binary-searched. Clustered beyond the directory's resolution, a lookup
//!   costs at most `log2` of twice the IPv6 prefix count steps.
//!
//! Lookups allocate nothing and take no locks. Memory is about 6 bytes per IPv4 host, up to
//! 20 per IPv4 prefix (two boundaries and an 8-byte record), 24–48 per IPv6 host, up to 56
//! per IPv6 prefix (two 20-byte boundaries, an 8-byte record, directory slots), plus the
//! IPv4 directory (only allocated when there is an IPv4 entry) and the descriptions' text;
//! [`IntelSet::stats`] reports the total. The build sorts, so loading is `O(n log n)`; a file
//! is read whole and parsed without a `String` per line.
//!
//! `cargo run -p outpost-detector --profile test-release --example intel_bench` measures a
//! million mixed entries: on a 2-core AMD EPYC VM, about 0.1 s to load, 9 bytes per entry,
//! and 10–35 ns per lookup.
//!
//! # Reloading
//!
//! An [`IntelSet`] is immutable. To reload, build a new one — [`IntelSet::reload`] rereads the
//! files it was loaded from — and swap the `Arc<IntelSet>` the workers hold; a failed reload
//! leaves the running set untouched.
//!
//! ```no_run
//! use std::sync::Arc;
//! use outpost_detector::intel::{IntelSet, IntelSource};
//!
//! let sources = [IntelSource::strict("drop", "/etc/outpost/drop.txt")];
//! let mut current = Arc::new(IntelSet::load(&sources)?);
//! // On SIGHUP:
//! match current.reload() {
//!     Ok(fresh) => current = Arc::new(fresh),
//!     Err(e) => eprintln!("intel lists not reloaded, keeping the old ones: {e}"),
//! }
//! # Ok::<(), outpost_detector::intel::IntelError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use outpost_decode::{Cidr, IpAddress};

use crate::config::ConfigError;

/// "No prefix" in range values.
const NONE: u32 = u32::MAX;
/// Directory slots of the IPv4 table: one per `/16`.
const V4_BUCKETS: usize = 1 << 16;
/// Most entries over all lists of a set (so range offsets, at most two per prefix, fit a
/// `u32`).
const MAX_ENTRIES: u32 = (1 << 31) - 1;
/// Longest excerpt of a bad line quoted in an error.
const EXCERPT_CHARS: usize = 60;

/// Where a list comes from: its name (shown in alerts) and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntelSource {
    /// List name, shown in alerts (e.g. `spamhaus-drop`).
    pub name: String,
    /// The file, read whole on every load.
    pub path: PathBuf,
    /// Skip (and count) bad lines instead of failing the load: for third-party feeds with
    /// junk lines. Default false (strict), for lists a configuration names.
    pub lenient: bool,
}

impl IntelSource {
    /// A list whose bad lines fail the load.
    #[must_use]
    pub fn strict(name: impl Into<String>, path: impl Into<PathBuf>) -> IntelSource {
        IntelSource { name: name.into(), path: path.into(), lenient: false }
    }

    /// A list whose bad lines are skipped and counted.
    #[must_use]
    pub fn lenient(name: impl Into<String>, path: impl Into<PathBuf>) -> IntelSource {
        IntelSource { name: name.into(), path: path.into(), lenient: true }
    }
}

/// Why a set of lists could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntelError {
    /// A list file could not be read.
    #[error("{0}")]
    Unreadable(ConfigError),
    /// A strict list has bad lines: the first, and how many in all.
    #[error("{first}{}", more_bad_lines(.count))]
    BadLines {
        /// The first bad line.
        first: ConfigError,
        /// Bad lines in the list, the first included.
        count: usize,
    },
    /// More than 65,536 lists, 2^31 - 1 entries, or 4 GiB of descriptions.
    #[error("{0}")]
    TooLarge(ConfigError),
    /// [`IntelSet::reload`] on a set that was not loaded from files.
    #[error("this intel set was not loaded from files, so it cannot be reloaded")]
    NotReloadable,
}

fn more_bad_lines(count: &usize) -> String {
    match count {
        0 | 1 => String::new(),
        n => format!(" (and {} more bad lines)", n - 1),
    }
}

impl IntelError {
    /// The located error, when there is one.
    #[must_use]
    pub fn config_error(&self) -> Option<&ConfigError> {
        match self {
            IntelError::Unreadable(e) | IntelError::TooLarge(e) | IntelError::BadLines { first: e, .. } => {
                Some(e)
            }
            IntelError::NotReloadable => None,
        }
    }
}

/// A match: which list, which entry of it, and the (longest) prefix that matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntelMatch {
    /// The matching prefix (`/32` or `/128` for a host entry).
    pub prefix: Cidr,
    /// Index of the list in the set ([`IntelSet::list_name`]).
    pub list: u16,
    /// Index of the entry in its list: 0 for the list's first entry line, counting only lines
    /// that hold an entry ([`IntelSet::entry_description`]).
    pub entry: u32,
}

/// One loaded list: its name, where it came from, and what loading it found. The entries
/// themselves live in the [`IntelSet`]'s lookup structure.
#[derive(Debug, Clone)]
pub struct IntelList {
    name: String,
    path: Option<PathBuf>,
    entries: u32,
    skipped: usize,
    first_skipped: Option<ConfigError>,
    descriptions: Descriptions,
}

impl IntelList {
    /// The list's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from (`None` when built from memory).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Entries loaded (duplicates included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries as usize
    }

    /// True when the list has no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Bad lines skipped (lenient lists only: a strict list with bad lines does not load).
    #[must_use]
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    /// The first skipped line, located, for the operator's log.
    #[must_use]
    pub fn first_skipped(&self) -> Option<&ConfigError> {
        self.first_skipped.as_ref()
    }

    /// The description of entry `entry`, if its line had one.
    #[must_use]
    pub fn description(&self, entry: u32) -> Option<&str> {
        self.descriptions.get(entry)
    }
}

/// Entry descriptions of one list: one text arena and a sparse index, so entries without a
/// description cost nothing.
#[derive(Debug, Clone, Default)]
struct Descriptions {
    text: String,
    /// `(entry, start, end)` into `text`, sorted by entry.
    index: Vec<(u32, u32, u32)>,
}

impl Descriptions {
    fn push(&mut self, entry: u32, description: &str) -> Option<()> {
        let start = u32::try_from(self.text.len()).ok()?;
        let end = u32::try_from(self.text.len() + description.len()).ok()?;
        self.text.push_str(description);
        self.index.push((entry, start, end));
        Some(())
    }

    fn get(&self, entry: u32) -> Option<&str> {
        let i = self.index.binary_search_by_key(&entry, |d| d.0).ok()?;
        let &(_, start, end) = self.index.get(i)?;
        self.text.get(start as usize..end as usize)
    }

    fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.index.capacity() * size_of::<(u32, u32, u32)>()
    }
}

/// Counts and memory of a built set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct IntelStats {
    /// Lists.
    pub lists: usize,
    /// Entries over all lists, duplicates included.
    pub entries: usize,
    /// Entries identical to an earlier one (same prefix, earlier list or line), which never
    /// match.
    pub duplicates: usize,
    /// Bad lines skipped by lenient lists.
    pub skipped_lines: usize,
    /// Distinct IPv4 hosts (`/32`).
    pub ipv4_hosts: usize,
    /// Distinct IPv4 prefixes shorter than `/32`.
    pub ipv4_prefixes: usize,
    /// Distinct IPv6 hosts (`/128`).
    pub ipv6_hosts: usize,
    /// Distinct IPv6 prefixes shorter than `/128`.
    pub ipv6_prefixes: usize,
    /// Bytes held by the lookup structure and the descriptions.
    pub memory_bytes: usize,
}

/// Several lists compiled into one longest-prefix-match structure. Immutable: share it
/// behind an `Arc`, and reload by building a new one.
pub struct IntelSet {
    lists: Vec<IntelList>,
    /// First global entry id of each list (entries are numbered across lists in load order).
    list_starts: Vec<u32>,
    /// What [`IntelSet::load`] read, for [`IntelSet::reload`] (empty otherwise).
    sources: Vec<IntelSource>,
    v4: V4Table,
    v6: V6Table,
    duplicates: usize,
}

impl fmt::Debug for IntelSet {
    /// The counts, not the million entries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntelSet")
            .field("lists", &self.lists.iter().map(IntelList::name).collect::<Vec<_>>())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for IntelSet {
    fn default() -> IntelSet {
        IntelSet::empty()
    }
}

impl IntelSet {
    /// A set with no list: every lookup misses.
    #[must_use]
    pub fn empty() -> IntelSet {
        IntelSet {
            lists: Vec::new(),
            list_starts: Vec::new(),
            sources: Vec::new(),
            v4: V4Table::default(),
            v6: V6Table::default(),
            duplicates: 0,
        }
    }

    /// Reads and compiles the lists, in order (list index = position in `sources`).
    ///
    /// # Errors
    /// The first list that cannot be read, is strict and has bad lines, or
    /// exceeds the limits of [`IntelError::TooLarge`].
    pub fn load(sources: &[IntelSource]) -> Result<IntelSet, IntelError> {
        let mut builder = Builder::default();
        for source in sources {
            let bytes = std::fs::read(&source.path).map_err(|e| {
                IntelError::Unreadable(ConfigError::file(
                    &source.path,
                    format!("cannot read intel list `{}`: {e}", source.name),
                ))
            })?;
            builder.add_text(&source.name, Some(&source.path), &source.path, &bytes, source.lenient)?;
        }
        let mut set = builder.build();
        set.sources = sources.to_vec();
        Ok(set)
    }

    /// Rereads the files this set was loaded from into a new set. `self` is unchanged, so on
    /// error the caller keeps using it.
    ///
    /// # Errors
    /// As [`IntelSet::load`], or [`IntelError::NotReloadable`] for a set built from memory.
    pub fn reload(&self) -> Result<IntelSet, IntelError> {
        if self.sources.is_empty() && !self.lists.is_empty() {
            return Err(IntelError::NotReloadable);
        }
        IntelSet::load(&self.sources)
    }

    /// Compiles lists given as text, each parsed as if read from its source's file (whose
    /// path only appears in errors; such a set cannot be reloaded).
    ///
    /// # Errors
    /// As [`IntelSet::load`], except that nothing is read.
    pub fn from_texts(lists: &[(IntelSource, &str)]) -> Result<IntelSet, IntelError> {
        let mut builder = Builder::default();
        for (source, text) in lists {
            builder.add_text(&source.name, None, &source.path, text.as_bytes(), source.lenient)?;
        }
        Ok(builder.build())
    }

    /// Compiles lists given as prefixes (for tests and for lists built in code): list `i` is
    /// the `i`th `(name, prefixes)` pair. Such a set cannot be reloaded.
    ///
    /// # Errors
    /// [`IntelError::TooLarge`] beyond 65,536 lists or 2^31 - 1 entries.
    pub fn from_entries<'a, L, E>(lists: L) -> Result<IntelSet, IntelError>
    where
        L: IntoIterator<Item = (&'a str, E)>,
        E: IntoIterator<Item = Cidr>,
    {
        let mut builder = Builder::default();
        for (name, prefixes) in lists {
            let start = builder.start_list(Path::new(name))?;
            for cidr in prefixes {
                builder.push(cidr).ok_or_else(|| too_many_entries(Path::new(name)))?;
            }
            builder.finish_list(name, None, start, Descriptions::default(), 0, None);
        }
        Ok(builder.build())
    }

    /// The longest prefix over all lists containing `addr` (first list and line on ties).
    /// Allocation-free; a few cache lines per call (see the module documentation).
    #[inline]
    #[must_use]
    pub fn lookup(&self, addr: &IpAddress) -> Option<IntelMatch> {
        let (global, len) = match addr.v4_octets() {
            Some(o) => self.v4.lookup(u32::from_be_bytes(o))?,
            None => self.v6.lookup(addr)?,
        };
        let prefix = Cidr::new(*addr, len)?;
        let list = self.list_starts.partition_point(|&s| s <= global).checked_sub(1)?;
        let entry = global.checked_sub(*self.list_starts.get(list)?)?;
        Some(IntelMatch { prefix, list: u16::try_from(list).ok()?, entry })
    }

    /// The name of list `list` (empty for an index not in this set).
    #[must_use]
    pub fn list_name(&self, list: u16) -> &str {
        self.lists.get(usize::from(list)).map_or("", IntelList::name)
    }

    /// The description of entry `entry` of list `list`, if its line had one.
    #[must_use]
    pub fn entry_description(&self, list: u16, entry: u32) -> Option<&str> {
        self.lists.get(usize::from(list))?.description(entry)
    }

    /// The lists, in index order.
    #[must_use]
    pub fn lists(&self) -> &[IntelList] {
        &self.lists
    }

    /// The files this set was loaded from (empty when built from memory).
    #[must_use]
    pub fn sources(&self) -> &[IntelSource] {
        &self.sources
    }

    /// Entries over all lists, duplicates included.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lists.iter().map(IntelList::len).sum()
    }

    /// True when no list has an entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts and memory.
    #[must_use]
    pub fn stats(&self) -> IntelStats {
        let lists_bytes: usize = self
            .lists
            .iter()
            .map(|l| size_of::<IntelList>() + l.name.capacity() + l.descriptions.memory_bytes())
            .sum();
        IntelStats {
            lists: self.lists.len(),
            entries: self.len(),
            duplicates: self.duplicates,
            skipped_lines: self.lists.iter().map(IntelList::skipped_lines).sum(),
            ipv4_hosts: self.v4.host_lo.len(),
            ipv4_prefixes: self.v4.prefixes.len(),
            ipv6_hosts: self.v6.hosts.len(),
            ipv6_prefixes: self.v6.prefixes.len(),
            memory_bytes: self.v4.memory_bytes()
                + self.v6.memory_bytes()
                + lists_bytes
                + self.list_starts.capacity() * size_of::<u32>(),
        }
    }
}

/// A prefix shorter than a host, as the range values point to it.
#[derive(Debug, Clone, Copy)]
struct PrefixRecord {
    /// Global entry id.
    global: u32,
    /// Prefix length in the family's own terms.
    len: u8,
}

/// One `/16` of the IPv4 directory. Slot `b`'s runs end where slot `b + 1`'s begin.
#[derive(Debug, Clone, Copy)]
struct V4Bucket {
    /// First index into `host_lo` / `host_entry`.
    hosts: u32,
    /// First index into `range_lo` / `range_value`.
    ranges: u32,
    /// Range value in effect at the start of the `/16` (before its first boundary).
    base: u32,
}

/// IPv4 entries: hosts and flattened prefix ranges, bucketed by `/16`.
#[derive(Debug, Default)]
struct V4Table {
    /// `V4_BUCKETS + 1` slots (the last a sentinel), or none when there is no IPv4 entry.
    dir: Vec<V4Bucket>,
    /// Low 16 bits of each host, sorted within its `/16`.
    host_lo: Vec<u16>,
    /// Global entry id of each host.
    host_entry: Vec<u32>,
    /// Low 16 bits of each range's first address, sorted within its `/16`.
    range_lo: Vec<u16>,
    /// Index into `prefixes` of each range's longest prefix, or `NONE`.
    range_value: Vec<u32>,
    prefixes: Vec<PrefixRecord>,
}

impl V4Table {
    #[inline]
    fn lookup(&self, addr: u32) -> Option<(u32, u8)> {
        let slot = (addr >> 16) as usize;
        let lo = addr as u16;
        let (this, next) = (self.dir.get(slot)?, self.dir.get(slot + 1)?);
        let (h0, h1) = (this.hosts as usize, next.hosts as usize);
        if let Ok(i) = self.host_lo.get(h0..h1)?.binary_search(&lo) {
            return Some((*self.host_entry.get(h0 + i)?, 32));
        }
        let (r0, r1) = (this.ranges as usize, next.ranges as usize);
        let n = self.range_lo.get(r0..r1)?.partition_point(|&k| k <= lo);
        let value = if n == 0 { this.base } else { *self.range_value.get(r0 + n - 1)? };
        let record = self.prefixes.get(value as usize)?;
        Some((record.global, record.len))
    }

    fn memory_bytes(&self) -> usize {
        self.dir.capacity() * size_of::<V4Bucket>()
            + self.host_lo.capacity() * size_of::<u16>()
            + self.host_entry.capacity() * size_of::<u32>()
            + self.range_lo.capacity() * size_of::<u16>()
            + self.range_value.capacity() * size_of::<u32>()
            + self.prefixes.capacity() * size_of::<PrefixRecord>()
    }

    /// `hosts`: `address << 32 | global id`, sorted, one per address. `ranges`: boundaries
    /// from [`disjoint_ranges`] over the IPv4 space.
    fn build(hosts: &[u64], ranges: &[(u128, u32)], prefixes: Vec<PrefixRecord>) -> V4Table {
        if hosts.is_empty() && prefixes.is_empty() {
            return V4Table::default();
        }
        let mut table = V4Table {
            dir: Vec::with_capacity(V4_BUCKETS + 1),
            host_lo: hosts.iter().map(|&h| (h >> 32) as u16).collect(),
            host_entry: hosts.iter().map(|&h| h as u32).collect(),
            range_lo: Vec::with_capacity(ranges.len() + 1),
            range_value: Vec::with_capacity(ranges.len() + 1),
            prefixes,
        };
        let (mut h, mut r, mut value) = (0usize, 0usize, NONE);
        for slot in 0..=V4_BUCKETS as u128 {
            let start = slot << 16;
            while let Some(&(_, v)) = ranges.get(r).filter(|b| b.0 <= start) {
                value = v;
                r += 1;
            }
            table.dir.push(V4Bucket {
                // Both fit: at most 2^31 - 1 entries make fewer than 2^32 boundaries.
                hosts: h as u32,
                ranges: table.range_lo.len() as u32,
                base: value,
            });
            while hosts.get(h).is_some_and(|&x| u128::from(x >> 48) == slot) {
                h += 1;
            }
            while let Some(&(pos, v)) = ranges.get(r).filter(|b| b.0 < start + (1 << 16)) {
                table.range_lo.push(pos as u16);
                table.range_value.push(v);
                value = v;
                r += 1;
            }
        }
        table
    }
}

/// IPv6 entries: hosts hashed, prefixes flattened into ranges.
#[derive(Debug, Default)]
struct V6Table {
    hosts: HashMap<IpAddress, u32, crate::hashing::TableHasher>,
    ranges: V6Ranges,
    prefixes: Vec<PrefixRecord>,
}

impl V6Table {
    #[inline]
    fn lookup(&self, addr: &IpAddress) -> Option<(u32, u8)> {
        if let Some(&global) = self.hosts.get(addr) {
            return Some((global, 128));
        }
        let record = self.prefixes.get(self.ranges.value_at(addr.to_bits()) as usize)?;
        Some((record.global, record.len))
    }

    fn memory_bytes(&self) -> usize {
        self.hosts.allocation_size()
            + self.ranges.memory_bytes()
            + self.prefixes.capacity() * size_of::<PrefixRecord>()
    }
}

/// The boundaries of the IPv6 ranges behind a directory, like the IPv4 table's: IPv6 prefixes
/// cluster (most global unicast feeds sit in `2000::/3`, and in a few registry blocks of it),
/// so the directory is indexed by the `width` bits that follow the `skip` leading bits all
/// boundaries share. `width` grows with the boundary count (about one boundary per slot, at
/// most 2^16 slots); each slot's boundaries are binary-searched.
#[derive(Debug)]
struct V6Ranges {
    /// Leading bits shared by every boundary.
    skip: u32,
    /// Those bits (the rest zero).
    common: u128,
    /// Directory index bits.
    width: u32,
    /// `2^width + 1` offsets into `start` / `value`: slot `i` holds `dir[i]..dir[i + 1]`
    /// (empty when there is no boundary at all).
    dir: Vec<u32>,
    /// Value in effect at the first address of each slot.
    base: Vec<u32>,
    /// First address of each range, sorted.
    start: Vec<u128>,
    /// Index into the prefix records of each range's longest prefix, or `NONE`.
    value: Vec<u32>,
    /// Value of the last range (a slot's first boundary lives in `base`, not `value`).
    last_value: u32,
}

impl Default for V6Ranges {
    /// No range: every address has `NONE`.
    fn default() -> V6Ranges {
        V6Ranges {
            skip: 0,
            common: 0,
            width: 0,
            dir: Vec::new(),
            base: Vec::new(),
            start: Vec::new(),
            value: Vec::new(),
            last_value: NONE,
        }
    }
}

/// The top `bits` bits set.
fn high_mask(bits: u32) -> u128 {
    u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0)
}

impl V6Ranges {
    /// `ranges`: boundaries from [`disjoint_ranges`].
    fn build(ranges: &[(u128, u32)]) -> V6Ranges {
        let (Some(&(first, _)), Some(&(last, _))) = (ranges.first(), ranges.last()) else {
            return V6Ranges::default();
        };
        // About one boundary per slot, at most 2^16 slots.
        let width = (usize::BITS - ranges.len().leading_zeros()).saturating_sub(1).min(16);
        let skip = (first ^ last).leading_zeros().min(128 - width);
        let mut table = V6Ranges {
            skip,
            common: first & high_mask(skip),
            width,
            dir: Vec::with_capacity((1 << width) + 1),
            base: Vec::with_capacity(1 << width),
            start: Vec::with_capacity(ranges.len()),
            value: Vec::with_capacity(ranges.len()),
            last_value: ranges.last().map_or(NONE, |r| r.1),
        };
        let (mut r, mut value) = (0usize, NONE);
        for slot in 0..1usize << width {
            let slot_start = table.common | (slot as u128).checked_shl(128 - skip - width).unwrap_or(0);
            while let Some(&(_, v)) = ranges.get(r).filter(|b| b.0 <= slot_start) {
                value = v;
                r += 1;
            }
            // Fits: at most 2^31 - 1 prefixes make fewer than 2^32 boundaries.
            table.dir.push(table.start.len() as u32);
            table.base.push(value);
            while let Some(&(pos, v)) = ranges.get(r).filter(|b| table.slot(b.0) == slot) {
                table.start.push(pos);
                table.value.push(v);
                value = v;
                r += 1;
            }
        }
        table.dir.push(table.start.len() as u32);
        table
    }

    /// The directory slot of an address inside the shared leading bits.
    #[inline]
    fn slot(&self, bits: u128) -> usize {
        (bits.checked_shl(self.skip).unwrap_or(0).checked_shr(128 - self.width).unwrap_or(0)) as usize
    }

    /// The value (prefix record index or `NONE`) of the range holding `bits`.
    #[inline]
    fn value_at(&self, bits: u128) -> u32 {
        if bits & high_mask(self.skip) != self.common {
            // Outside the span all boundaries share: before every boundary or after all.
            return if bits < self.common { NONE } else { self.last_value };
        }
        let slot = self.slot(bits);
        let (Some(&b), Some(&e)) = (self.dir.get(slot), self.dir.get(slot + 1)) else {
            return NONE;
        };
        let Some(starts) = self.start.get(b as usize..e as usize) else {
            return NONE;
        };
        match starts.partition_point(|&s| s <= bits) {
            0 => self.base.get(slot).copied().unwrap_or(NONE),
            n => self.value.get(b as usize + n - 1).copied().unwrap_or(NONE),
        }
    }

    fn memory_bytes(&self) -> usize {
        (self.dir.capacity() + self.base.capacity() + self.value.capacity()) * size_of::<u32>()
            + self.start.capacity() * size_of::<u128>()
    }
}

/// Flattens nested prefixes into disjoint ranges. `prefixes` yields `(first, last, value)`
/// sorted by `first`, then longest range first, without duplicates — so any two either nest or
/// are disjoint. Returns the boundaries `(first address, value)` of the ranges, where a
/// range's value is that of its longest (innermost) covering prefix, `NONE` for none;
/// addresses before the first boundary have `NONE`, and adjacent ranges differ in value.
fn disjoint_ranges(prefixes: impl Iterator<Item = (u128, u128, u32)>) -> Vec<(u128, u32)> {
    fn emit(out: &mut Vec<(u128, u32)>, pos: u128, value: u32) {
        match out.last_mut() {
            // A later boundary at the same address supersedes an earlier one.
            Some(last) if last.0 == pos => last.1 = value,
            _ => out.push((pos, value)),
        }
    }
    // Closes every open prefix ending before `until`: after it, its parent is in effect.
    fn close(out: &mut Vec<(u128, u32)>, open: &mut Vec<(u128, u32)>, until: Option<u128>) {
        while let Some(&(last, _)) = open.last() {
            if until.is_some_and(|u| last >= u) {
                break;
            }
            open.pop();
            if let Some(after) = last.checked_add(1) {
                emit(out, after, open.last().map_or(NONE, |p| p.1));
            }
        }
    }
    let mut out = Vec::new();
    // Open prefixes, outermost first: (last address, value).
    let mut open: Vec<(u128, u32)> = Vec::new();
    for (first, last, value) in prefixes {
        close(&mut out, &mut open, Some(first));
        emit(&mut out, first, value);
        open.push((last, value));
    }
    close(&mut out, &mut open, None);
    out.dedup_by(|later, earlier| later.1 == earlier.1);
    if out.first().is_some_and(|b| b.1 == NONE) {
        out.remove(0);
    }
    out
}

/// Accumulates entries of all lists, numbered in load order, then builds the tables.
#[derive(Default)]
struct Builder {
    lists: Vec<IntelList>,
    list_starts: Vec<u32>,
    /// `address << 32 | global id`.
    v4_hosts: Vec<u64>,
    /// `(network, length, global id)`.
    v4_prefixes: Vec<(u32, u8, u32)>,
    /// `(address, global id)`.
    v6_hosts: Vec<(u128, u32)>,
    /// `(network, length, global id)`.
    v6_prefixes: Vec<(u128, u8, u32)>,
    next_global: u32,
}

fn too_many_entries(shown: &Path) -> IntelError {
    IntelError::TooLarge(ConfigError::file(shown, "intel lists hold more than 2^31 - 1 entries"))
}

impl Builder {
    /// Begins a list; returns its first global entry id.
    fn start_list(&mut self, shown: &Path) -> Result<u32, IntelError> {
        if self.lists.len() > usize::from(u16::MAX) {
            return Err(IntelError::TooLarge(ConfigError::file(shown, "more than 65,536 intel lists")));
        }
        self.list_starts.push(self.next_global);
        Ok(self.next_global)
    }

    fn finish_list(
        &mut self,
        name: &str,
        path: Option<&Path>,
        start: u32,
        descriptions: Descriptions,
        skipped: usize,
        first_skipped: Option<ConfigError>,
    ) {
        self.lists.push(IntelList {
            name: name.to_string(),
            path: path.map(Path::to_path_buf),
            entries: self.next_global - start,
            skipped,
            first_skipped,
            descriptions,
        });
    }

    /// Adds an entry; returns its global id, or `None` when the ids are exhausted.
    fn push(&mut self, cidr: Cidr) -> Option<u32> {
        let global = self.next_global;
        self.next_global = global.checked_add(1).filter(|&n| n <= MAX_ENTRIES)?;
        let network = cidr.network();
        match network.v4_octets() {
            Some(o) => {
                let addr = u32::from_be_bytes(o);
                match cidr.family_len() {
                    32 => self.v4_hosts.push(u64::from(addr) << 32 | u64::from(global)),
                    len => self.v4_prefixes.push((addr, len, global)),
                }
            }
            None => match cidr.len128() {
                128 => self.v6_hosts.push((network.to_bits(), global)),
                len => self.v6_prefixes.push((network.to_bits(), len, global)),
            },
        }
        Some(global)
    }

    /// Parses one list's text and adds its entries.
    fn add_text(
        &mut self,
        name: &str,
        path: Option<&Path>,
        shown: &Path,
        bytes: &[u8],
        lenient: bool,
    ) -> Result<(), IntelError> {
        let start = self.start_list(shown)?;
        let mut descriptions = Descriptions::default();
        let (mut bad, mut first_bad) = (0usize, None);
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            match parse_line(line) {
                Ok(Line::Blank) => {}
                Ok(Line::Entry(cidr, description)) => {
                    let global = self.push(cidr).ok_or_else(|| too_many_entries(shown))?;
                    if let Some(d) = description {
                        descriptions.push(global - start, &d).ok_or_else(|| {
                            IntelError::TooLarge(ConfigError::file(shown, "descriptions exceed 4 GiB"))
                        })?;
                    }
                }
                Err(e) => {
                    bad += 1;
                    if first_bad.is_none() {
                        first_bad = Some(e.locate(shown, i + 1, line));
                    }
                }
            }
        }
        match (lenient, first_bad) {
            (false, Some(first)) => Err(IntelError::BadLines { first, count: bad }),
            (_, first_bad) => {
                self.finish_list(name, path, start, descriptions, bad, first_bad);
                Ok(())
            }
        }
    }

    fn build(mut self) -> IntelSet {
        let mut duplicates = 0;

        // IPv4 hosts: sort by address then global id, keep the first of each address.
        self.v4_hosts.sort_unstable();
        let before = self.v4_hosts.len();
        self.v4_hosts.dedup_by(|later, earlier| *later >> 32 == *earlier >> 32);
        duplicates += before - self.v4_hosts.len();

        // IPv4 prefixes: by network, shortest (outermost) first, then global id.
        self.v4_prefixes.sort_unstable();
        let before = self.v4_prefixes.len();
        self.v4_prefixes.dedup_by(|later, earlier| (later.0, later.1) == (earlier.0, earlier.1));
        duplicates += before - self.v4_prefixes.len();
        let v4_ranges = disjoint_ranges(self.v4_prefixes.iter().zip(0u32..).map(|(&(net, len, _), i)| {
            let size = 1u128 << (32 - u32::from(len));
            (u128::from(net), u128::from(net) + size - 1, i)
        }));
        let v4_records =
            self.v4_prefixes.iter().map(|&(_, len, global)| PrefixRecord { global, len }).collect();
        let v4 = V4Table::build(&self.v4_hosts, &v4_ranges, v4_records);
        drop((self.v4_hosts, self.v4_prefixes, v4_ranges));

        // IPv6 hosts: in load order, so the first of each address wins.
        let mut hosts =
            HashMap::with_capacity_and_hasher(self.v6_hosts.len(), crate::hashing::TableHasher::default());
        for &(addr, global) in &self.v6_hosts {
            match hosts.entry(IpAddress::from_bits(addr)) {
                Entry::Occupied(_) => duplicates += 1,
                Entry::Vacant(v) => {
                    v.insert(global);
                }
            }
        }
        hosts.shrink_to_fit();

        self.v6_prefixes.sort_unstable();
        let before = self.v6_prefixes.len();
        self.v6_prefixes.dedup_by(|later, earlier| (later.0, later.1) == (earlier.0, earlier.1));
        duplicates += before - self.v6_prefixes.len();
        let v6_ranges = disjoint_ranges(
            self.v6_prefixes.iter().zip(0u32..).map(|(&(net, len, _), i)| (net, net | (u128::MAX >> len), i)),
        );
        let v6 = V6Table {
            hosts,
            ranges: V6Ranges::build(&v6_ranges),
            prefixes: self.v6_prefixes.iter().map(|&(_, len, global)| PrefixRecord { global, len }).collect(),
        };

        IntelSet { lists: self.lists, list_starts: self.list_starts, sources: Vec::new(), v4, v6, duplicates }
    }
}

/// A bad line: where on it, the offending text, and what is wrong.
struct LineError {
    /// Byte offset of the offending text in the line.
    offset: usize,
    len: usize,
    message: Cow<'static, str>,
}

impl LineError {
    fn locate(self, shown: &Path, line_number: usize, line: &[u8]) -> ConfigError {
        let before = line.get(..self.offset).unwrap_or_default();
        let text = line.get(self.offset..self.offset + self.len).unwrap_or_default();
        let text = String::from_utf8_lossy(text);
        let mut key: String = text.chars().take(EXCERPT_CHARS).collect();
        if text.chars().nth(EXCERPT_CHARS).is_some() {
            key.push('…');
        }
        ConfigError {
            path: shown.to_path_buf(),
            line: line_number,
            column: String::from_utf8_lossy(before).chars().count() + 1,
            key,
            message: self.message.into_owned(),
        }
    }
}

/// A good line of a list.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// Blank or comment only.
    Blank,
    /// An entry, with its description.
    Entry(Cidr, Option<Cow<'a, str>>),
}

/// Parses one line (without its line break).
fn parse_line(line: &[u8]) -> Result<Line<'_>, LineError> {
    let Some(start) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(Line::Blank);
    };
    let rest = line.get(start..).unwrap_or_default();
    if matches!(rest.first(), Some(b'#' | b';')) {
        return Ok(Line::Blank);
    }
    let end = rest
        .iter()
        .position(|&b| b.is_ascii_whitespace() || matches!(b, b'#' | b';' | b','))
        .unwrap_or(rest.len());
    let (token, after) = rest.split_at(end);
    let bad = |message: Cow<'static, str>| LineError { offset: start, len: end, message };
    let token = std::str::from_utf8(token).map_err(|_| bad("not UTF-8 text".into()))?;
    let cidr = parse_entry(token).map_err(bad)?;

    let after = after.split(|&b| b == b'#').next().unwrap_or_default().trim_ascii();
    let after = after.strip_prefix(b";").or_else(|| after.strip_prefix(b",")).unwrap_or(after).trim_ascii();
    let description = (!after.is_empty()).then(|| String::from_utf8_lossy(after));
    Ok(Line::Entry(cidr, description))
}

/// `ADDRESS` or `ADDRESS/LEN`, with the rules of the module documentation.
fn parse_entry(token: &str) -> Result<Cidr, Cow<'static, str>> {
    let (addr_text, len_text) = match token.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (token, None),
    };
    let ipv6_syntax = addr_text.contains(':');
    let addr = if ipv6_syntax {
        addr_text.parse::<Ipv6Addr>().map(IpAddress::from)
    } else {
        addr_text.parse::<Ipv4Addr>().map(IpAddress::from)
    }
    .map_err(|_| Cow::Borrowed("not an IP address or CIDR prefix"))?;
    let len = match len_text {
        None => None,
        Some(l) => Some(
            l.parse::<u8>()
                .ok()
                .filter(|_| !l.starts_with('+'))
                .ok_or_else(|| Cow::Owned(format!("prefix length `{l}` is not a number")))?,
        ),
    };
    let family_len = match (addr.is_v4(), ipv6_syntax, len) {
        (true, _, None) => 32,
        (false, _, None) => 128,
        (true, false, Some(l)) if l <= 32 => l,
        (true, false, Some(l)) => {
            return Err(format!("prefix length /{l} is too long for IPv4 (0..=32)").into());
        }
        // `::ffff:a.b.c.d/LEN` counts LEN in the 128-bit form; below 96 the host bits would
        // include the `ffff`.
        (true, true, Some(l)) if (96..=128).contains(&l) => l - 96,
        (true, true, Some(l)) if l > 128 => {
            return Err(format!("prefix length /{l} is too long for IPv6 (0..=128)").into());
        }
        (true, true, Some(_)) => {
            return Err("host bits are set (an IPv4-mapped prefix must be /96 or longer)".into());
        }
        (false, _, Some(l)) if l <= 128 => l,
        (false, _, Some(l)) => {
            return Err(format!("prefix length /{l} is too long for IPv6 (0..=128)").into());
        }
    };
    let cidr = Cidr::new(addr, family_len).ok_or(Cow::Borrowed("prefix length out of range"))?;
    if cidr.network() != addr {
        return Err(
            format!("host bits are set (the network is {cidr}; a host is written without /LEN)").into()
        );
    }
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(prefixes: &[(u128, u128)]) -> Vec<(u128, u32)> {
        disjoint_ranges(prefixes.iter().zip(0u32..).map(|(&(f, l), i)| (f, l, i)))
    }

    #[test]
    fn nested_prefixes_flatten_to_innermost_values() {
        // 0..=99 (0) ⊃ 10..=19 (1) ⊃ 10..=11 (2); 19 ends with its parent's inner range.
        assert_eq!(
            ranges(&[(0, 99), (10, 19), (10, 11), (50, 99)]),
            vec![(0, 0), (10, 2), (12, 1), (20, 0), (50, 3), (100, NONE)]
        );
        // Prefixes ending together and at the top of the space.
        assert_eq!(ranges(&[(0, u128::MAX), (8, 15), (12, 15)]), vec![(0, 0), (8, 1), (12, 2), (16, 0)]);
        assert_eq!(ranges(&[(4, 7), (8, 11)]), vec![(4, 0), (8, 1), (12, NONE)]);
        assert!(ranges(&[]).is_empty());
    }

    #[test]
    fn entries_parse_with_comments_and_descriptions() {
        let host = |s: &str| Cidr::host(s.parse().expect("address"));
        let ok = |l: &str| match parse_line(l.as_bytes()) {
            Ok(Line::Entry(c, d)) => Some((c, d.map(Cow::into_owned))),
            _ => None,
        };
        assert_eq!(ok("  192.0.2.7"), Some((host("192.0.2.7"), None)));
        assert_eq!(ok("192.0.2.7 # x"), Some((host("192.0.2.7"), None)));
        assert_eq!(ok("192.0.2.7#x"), Some((host("192.0.2.7"), None)));
        assert_eq!(
            ok("1.10.16.0/20 ; SBL256894"),
            Some(("1.10.16.0/20".parse().expect("cidr"), Some("SBL256894".into())))
        );
        assert_eq!(ok("192.0.2.7,botnet C2 # seen"), Some((host("192.0.2.7"), Some("botnet C2".into()))));
        assert_eq!(ok("::ffff:192.0.2.0/120"), Some(("192.0.2.0/24".parse().expect("cidr"), None)));
        assert!(matches!(parse_line(b"  # comment"), Ok(Line::Blank)));
        assert!(matches!(parse_line(b"; comment"), Ok(Line::Blank)));
        assert!(matches!(parse_line(b" \t "), Ok(Line::Blank)));
        for bad in
            ["10.1.2.3/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "1.2.3", "fe80::1%eth0", "::/129"]
        {
            assert!(parse_line(bad.as_bytes()).is_err(), "{bad} accepted");
        }
        assert!(parse_line(b"::ffff:10.0.0.0/95").is_err());
        assert!(parse_line(b"::ffff:10.0.0.0/129").is_err());
    }
}
