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
//! - **Occupancy bits** answer most misses with one load: a bit per IPv4 `/24` (2 MiB) and a
//!   bit per hash of an IPv6 `/32` (128 KiB), set where an entry lies or a prefix covers.
//!   A clear bit is a miss; busy addresses sit in few `/24`s and `/32`s, whose lines stay
//!   cached. (IPv6 entries that cover more than 2^22 `/32`s in all — a `/9`, or 65 `/16`s —
//!   turn the IPv6 bits off: every IPv6 lookup then searches.) Only a set bit goes on to the
//!   tables below.
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
//! IPv4 directory and occupancy bits (only allocated when there is an IPv4 entry), the IPv6
//! occupancy bits (when there is an IPv6 entry) and the descriptions' text;
//! [`IntelSet::stats`] reports the total. The build sorts, so loading is `O(n log n)`; a file
//! is parsed as bytes, without a `String` per line, canonical IPv4 and hexadecimal IPv6
//! entries by a byte-level parser; a file of a megabyte or more is never held whole: it is
//! cut into parts by byte offset, and one thread per core reads its parts through a 256 KiB
//! buffer and parses them as it goes (a part's lines are those that start in it), the parts'
//! entries appended in order; large IPv4 and IPv6 tables are built on two threads.
//!
//! `cargo run -p outpost-detector --profile test-release --example intel_bench` measures a
//! million mixed entries: on a 2-core AMD EPYC VM, 66–83 ms to load, 11.4 bytes per entry,
//! an IPv4 miss 2.5–4.3 ns, hits and IPv6 lookups 8–35 ns; on a 2-core Intel Xeon VM, 84–96 ms
//! to load, an IPv4 miss 3–9 ns, hits and IPv6 lookups 10–58 ns.
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
    /// The file, read again on every load.
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

/// A list's content for [`IntelSet::from_inputs`].
#[derive(Debug)]
pub enum ListInput {
    /// The list's text (bytes as read from a file: not necessarily UTF-8).
    Bytes(Vec<u8>),
    /// An open list file, read when the set is built.
    File(std::fs::File),
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

    /// Appends `other`'s descriptions, its entry numbers raised by `offset`. `None` beyond
    /// 4 GiB of text.
    fn extend(&mut self, other: &Descriptions, offset: u32) -> Option<()> {
        for &(entry, a, b) in &other.index {
            self.push(entry.checked_add(offset)?, other.text.get(a as usize..b as usize)?)?;
        }
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
            let file = std::fs::File::open(&source.path).map_err(|e| {
                IntelError::Unreadable(ConfigError::file(
                    &source.path,
                    format!("cannot read intel list `{}`: {e}", source.name),
                ))
            })?;
            builder.add_file(&source.name, Some(&source.path), &source.path, &file, source.lenient)?;
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
        let bytes: Vec<(IntelSource, &[u8])> = lists.iter().map(|(s, t)| (s.clone(), t.as_bytes())).collect();
        IntelSet::from_bytes(&bytes)
    }

    /// [`IntelSet::from_texts`] of lists as read from their files: bytes, not necessarily
    /// UTF-8 (a line whose entry is not UTF-8 is a bad line; other bytes are kept lossily in
    /// descriptions and ignored in comments).
    ///
    /// # Errors
    /// As [`IntelSet::load`], except that nothing is read.
    pub fn from_bytes(lists: &[(IntelSource, &[u8])]) -> Result<IntelSet, IntelError> {
        let mut builder = Builder::default();
        for (source, bytes) in lists {
            builder.add_text(&source.name, None, &source.path, bytes, source.lenient)?;
        }
        Ok(builder.build())
    }

    /// Compiles lists given as text or as open files ([`ListInput`]), each parsed as if read
    /// from its source's path (which only appears in errors; such a set cannot be reloaded).
    /// A large file is read in parts as it is parsed, never whole.
    ///
    /// # Errors
    /// As [`IntelSet::load`].
    pub fn from_inputs(lists: &[(IntelSource, ListInput)]) -> Result<IntelSet, IntelError> {
        let mut builder = Builder::default();
        for (source, input) in lists {
            match input {
                ListInput::Bytes(bytes) => {
                    builder.add_text(&source.name, None, &source.path, bytes, source.lenient)?;
                }
                ListInput::File(file) => {
                    builder.add_file(&source.name, None, &source.path, file, source.lenient)?
                }
            }
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

    /// True when `addr` is surely on no list, decided with one load (an IPv4 address whose
    /// `/24`, an IPv6 address whose `/32`, holds no entry and lies in no prefix); false when
    /// only [`IntelSet::lookup`] can tell. For callers that put a cache of lookups in front: this is cheaper than a cache
    /// probe.
    #[inline]
    #[must_use]
    pub fn surely_misses(&self, addr: &IpAddress) -> bool {
        match addr.v4_octets() {
            Some(o) => !self.v4.may_hold(u32::from_be_bytes(o)),
            None => !self.v6.may_hold(addr),
        }
    }

    /// [`IntelSet::surely_misses`] for an IPv4 address (as a big-endian `u32`).
    #[inline]
    #[must_use]
    pub fn surely_misses_v4(&self, addr: u32) -> bool {
        !self.v4.may_hold(addr)
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
    /// One bit per `/24`, set when an entry lies in or covers it (2 MiB; empty when there is
    /// no IPv4 entry). Most lookups miss, and busy addresses sit in few `/24`s whose lines
    /// stay cached: a clear bit answers with one load, before the directory.
    occupied: Vec<u64>,
}

/// Words of [`V4Table::occupied`]: 2^24 bits.
const V4_OCCUPIED_WORDS: usize = (1 << 24) / 64;

impl V4Table {
    /// False when no entry lies in or covers the `/24` of `addr` (then `lookup` misses).
    #[inline]
    fn may_hold(&self, addr: u32) -> bool {
        let slash24 = (addr >> 8) as usize;
        self.occupied.get(slash24 / 64).is_some_and(|w| w & (1 << (slash24 % 64)) != 0)
    }

    /// Sets the bits of the `/24`s from `first` to `last` (addresses, inclusive).
    fn occupy(&mut self, first: u32, last: u32) {
        for slash24 in (first >> 8) as usize..=(last >> 8) as usize {
            if let Some(w) = self.occupied.get_mut(slash24 / 64) {
                *w |= 1 << (slash24 % 64);
            }
        }
    }

    #[inline]
    fn lookup(&self, addr: u32) -> Option<(u32, u8)> {
        if !self.may_hold(addr) {
            return None;
        }
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
            + self.occupied.capacity() * size_of::<u64>()
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
            occupied: vec![0; V4_OCCUPIED_WORDS],
        };
        for &h in hosts {
            let addr = (h >> 32) as u32;
            table.occupy(addr, addr);
        }
        for (i, &(first, value)) in ranges.iter().enumerate() {
            if value != NONE {
                let end = ranges.get(i + 1).map_or(u128::from(u32::MAX) + 1, |b| b.0);
                table.occupy(first as u32, (end - 1) as u32);
            }
        }
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
    /// One bit per hash of a `/32`, set for the `/32`s an entry lies in or covers (128 KiB;
    /// empty when there is no IPv6 entry, or when the entries cover more than
    /// [`V6_OCCUPIED_MARKS`] `/32`s in all, and then every lookup searches). As
    /// [`V4Table::occupied`]: most lookups miss, and a clear bit answers with one load.
    occupied: Vec<u64>,
}

/// Bits of [`V6Table::occupied`], a power of two.
const V6_OCCUPIED_BITS: usize = 1 << 20;

/// The most `/32`s [`V6Table::occupancy`] marks (short prefixes cover many); beyond, the
/// table has no occupancy bits.
const V6_OCCUPIED_MARKS: u64 = 1 << 22;

/// The bit of [`V6Table::occupied`] for the `/32` whose top bits are `slash32`.
#[inline]
fn v6_occupied_bit(slash32: u32) -> usize {
    (u64::from(slash32).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44) as usize & (V6_OCCUPIED_BITS - 1)
}

impl V6Table {
    /// The occupancy bits of `entries` (`(network, length)`), or none when they cover more
    /// than [`V6_OCCUPIED_MARKS`] `/32`s.
    fn occupancy(entries: impl Iterator<Item = (u128, u8)>) -> Vec<u64> {
        let mut bits = vec![0u64; V6_OCCUPIED_BITS / 64];
        let mut budget = V6_OCCUPIED_MARKS;
        for (network, len) in entries {
            let first = (network >> 96) as u32;
            let count = 1u64 << 32u8.saturating_sub(len).min(32);
            budget = match budget.checked_sub(count) {
                Some(left) => left,
                None => return Vec::new(),
            };
            for k in 0..count {
                let bit = v6_occupied_bit(first.wrapping_add(k as u32));
                if let Some(w) = bits.get_mut(bit / 64) {
                    *w |= 1 << (bit % 64);
                }
            }
        }
        bits
    }

    /// False when no entry lies in or covers the `/32` of `addr` (then `lookup` misses).
    #[inline]
    fn may_hold(&self, addr: &IpAddress) -> bool {
        if self.occupied.is_empty() {
            return !(self.hosts.is_empty() && self.prefixes.is_empty());
        }
        let bit = v6_occupied_bit((addr.to_bits() >> 96) as u32);
        self.occupied.get(bit / 64).is_none_or(|w| w & (1 << (bit % 64)) != 0)
    }

    #[inline]
    fn lookup(&self, addr: &IpAddress) -> Option<(u32, u8)> {
        if !self.may_hold(addr) {
            return None;
        }
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
            + self.occupied.capacity() * size_of::<u64>()
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
        self.push_numbered(cidr, global);
        Some(global)
    }

    /// Adds the IPv4 entry `addr/len` (network address, no host bits) with the id `global`.
    #[inline]
    fn push_v4(&mut self, addr: u32, len: u8, global: u32) {
        match len {
            32 => self.v4_hosts.push(u64::from(addr) << 32 | u64::from(global)),
            len => self.v4_prefixes.push((addr, len, global)),
        }
    }

    /// Adds an entry with the id `global`.
    fn push_numbered(&mut self, cidr: Cidr, global: u32) {
        let network = cidr.network();
        match network.v4_octets() {
            Some(o) => self.push_v4(u32::from_be_bytes(o), cidr.family_len(), global),
            None => match cidr.len128() {
                128 => self.v6_hosts.push((network.to_bits(), global)),
                len => self.v6_prefixes.push((network.to_bits(), len, global)),
            },
        }
    }

    /// Parses one list's text and adds its entries. A large text is cut into chunks of whole
    /// lines parsed on parallel threads (one per available core, up to [`PARSE_THREADS`]),
    /// each chunk into its own builder; the chunks are then appended in order, so entry ids,
    /// duplicates and the first bad line are what one pass would give.
    fn add_text(
        &mut self,
        name: &str,
        path: Option<&Path>,
        shown: &Path,
        bytes: &[u8],
        lenient: bool,
    ) -> Result<(), IntelError> {
        let threads = if bytes.len() < PARALLEL_BYTES { 1 } else { parse_threads() };
        self.add_text_on(name, path, shown, bytes, lenient, threads)
    }

    /// [`Builder::add_text`] on `threads` threads.
    fn add_text_on(
        &mut self,
        name: &str,
        path: Option<&Path>,
        shown: &Path,
        bytes: &[u8],
        lenient: bool,
        threads: usize,
    ) -> Result<(), IntelError> {
        let start = self.start_list(shown)?;
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        // Several chunks per thread, taken in turn, so a thread that drew the slower lines
        // (IPv6, descriptions) does not hold the others up.
        let chunks = whole_line_chunks(text, if threads > 1 { threads * 4 } else { 1 });
        let parsed = in_turn(
            chunks.len(),
            threads,
            || (),
            |(), i| {
                Ok::<_, std::convert::Infallible>(Chunk::parse(
                    chunks.get(i).copied().unwrap_or_default(),
                    shown,
                ))
            },
        );
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(never) => match never {},
        };
        self.add_chunks(name, path, shown, start, parsed, lenient)
    }

    /// Adds a list read from `file` (at `shown`). A file of [`PARALLEL_BYTES`] or more is read
    /// in parts on parallel threads (one per available core, up to [`PARSE_THREADS`]), each
    /// part through a small buffer ([`READ_BLOCK`]) it parses as it goes, so the file is never
    /// held whole in memory; a file whose length changed while it was read is read again
    /// whole. Entry ids, duplicates and the first bad line are what one pass would give.
    fn add_file(
        &mut self,
        name: &str,
        path: Option<&Path>,
        shown: &Path,
        file: &std::fs::File,
        lenient: bool,
    ) -> Result<(), IntelError> {
        use std::io::{Read, Seek};
        let unreadable = |e: std::io::Error| {
            IntelError::Unreadable(ConfigError::file(shown, format!("cannot read intel list `{name}`: {e}")))
        };
        let whole = |mut f: &std::fs::File| {
            let mut bytes = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).and_then(|_| f.read_to_end(&mut bytes)).map(|_| bytes)
        };
        let total = file.metadata().map_err(unreadable)?.len();
        if total < PARALLEL_BYTES as u64 {
            return self.add_text(name, path, shown, &whole(file).map_err(unreadable)?, lenient);
        }
        let threads = parse_threads();
        let parsed =
            parse_file(file, total, shown, (threads * 4, threads, READ_BLOCK)).map_err(unreadable)?;
        // Still that long (nothing appended or cut while it was read)?
        let same = file.metadata().is_ok_and(|m| m.len() == total)
            && read_full_at(file, &mut [0u8; 1], total).is_ok_and(|n| n == 0);
        if !same {
            return self.add_text(name, path, shown, &whole(file).map_err(unreadable)?, lenient);
        }
        let start = self.start_list(shown)?;
        self.add_chunks(name, path, shown, start, parsed, lenient)
    }

    /// Adds a list's parsed chunks, in order, as the list that starts at global id `start`.
    fn add_chunks(
        &mut self,
        name: &str,
        path: Option<&Path>,
        shown: &Path,
        start: u32,
        parsed: Vec<Chunk>,
        lenient: bool,
    ) -> Result<(), IntelError> {
        let mut descriptions = Descriptions::default();
        let (mut bad, mut first_bad, mut lines) = (0usize, None, 0usize);
        for chunk in parsed {
            if first_bad.is_none() {
                first_bad = chunk.first_bad.map(|e| ConfigError { line: e.line + lines, ..e });
            }
            bad += chunk.bad;
            lines += chunk.lines;
            let too_long = || IntelError::TooLarge(ConfigError::file(shown, "descriptions exceed 4 GiB"));
            if chunk.descriptions_overflow {
                return Err(too_long());
            }
            let chunk_base = self.next_global;
            self.append(chunk.entries).ok_or_else(|| too_many_entries(shown))?;
            descriptions.extend(&chunk.descriptions, chunk_base - start).ok_or_else(too_long)?;
        }
        match (lenient, first_bad) {
            (false, Some(first)) => Err(IntelError::BadLines { first, count: bad }),
            (_, first_bad) => {
                self.finish_list(name, path, start, descriptions, bad, first_bad);
                Ok(())
            }
        }
    }

    /// Appends the entries of a chunk's builder (numbered from 0) after this one's. `None`
    /// when the ids are exhausted.
    fn append(&mut self, chunk: Builder) -> Option<()> {
        let base = self.next_global;
        self.next_global = base.checked_add(chunk.next_global).filter(|&n| n <= MAX_ENTRIES)?;
        self.v4_hosts.extend(chunk.v4_hosts.iter().map(|&h| h + u64::from(base)));
        self.v4_prefixes.extend(chunk.v4_prefixes.iter().map(|&(a, l, g)| (a, l, g + base)));
        self.v6_hosts.extend(chunk.v6_hosts.iter().map(|&(a, g)| (a, g + base)));
        self.v6_prefixes.extend(chunk.v6_prefixes.iter().map(|&(a, l, g)| (a, l, g + base)));
        Some(())
    }

    /// Builds the tables: the IPv4 and the IPv6 ones on two threads when both are large
    /// ([`PARALLEL_BUILD_ENTRIES`]), as they share nothing.
    fn build(self) -> IntelSet {
        let Builder { lists, list_starts, v4_hosts, v4_prefixes, v6_hosts, v6_prefixes, .. } = self;
        let large = |n: usize| n >= PARALLEL_BUILD_ENTRIES;
        let ((v4, v4_duplicates), (v6, v6_duplicates)) =
            if large(v4_hosts.len() + v4_prefixes.len()) && large(v6_hosts.len() + v6_prefixes.len()) {
                std::thread::scope(|scope| {
                    let v6 = scope.spawn(|| build_v6(v6_hosts, v6_prefixes));
                    let v4 = build_v4(v4_hosts, v4_prefixes);
                    (v4, v6.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                })
            } else {
                (build_v4(v4_hosts, v4_prefixes), build_v6(v6_hosts, v6_prefixes))
            };
        IntelSet {
            lists,
            list_starts,
            sources: Vec::new(),
            v4,
            v6,
            duplicates: v4_duplicates + v6_duplicates,
        }
    }
}

/// The IPv4 and the IPv6 tables are built on two threads when each has at least this many
/// entries ([`Builder::build`]).
const PARALLEL_BUILD_ENTRIES: usize = 10_000;

/// The IPv4 table of `hosts` (`address << 32 | global id`) and `prefixes` (`(network, length,
/// global id)`), and how many duplicates were dropped.
fn build_v4(mut hosts: Vec<u64>, mut prefixes: Vec<(u32, u8, u32)>) -> (V4Table, usize) {
    // Hosts: sort by address then global id, keep the first of each address.
    hosts.sort_unstable();
    let before = hosts.len();
    hosts.dedup_by(|later, earlier| *later >> 32 == *earlier >> 32);
    let mut duplicates = before - hosts.len();

    // Prefixes: by network, shortest (outermost) first, then global id.
    prefixes.sort_unstable();
    let before = prefixes.len();
    prefixes.dedup_by(|later, earlier| (later.0, later.1) == (earlier.0, earlier.1));
    duplicates += before - prefixes.len();
    let ranges = disjoint_ranges(prefixes.iter().zip(0u32..).map(|(&(net, len, _), i)| {
        let size = 1u128 << (32 - u32::from(len));
        (u128::from(net), u128::from(net) + size - 1, i)
    }));
    let records = prefixes.iter().map(|&(_, len, global)| PrefixRecord { global, len }).collect();
    (V4Table::build(&hosts, &ranges, records), duplicates)
}

/// The IPv6 table of `hosts` (`(address, global id)`) and `prefixes` (`(network, length,
/// global id)`), and how many duplicates were dropped.
fn build_v6(hosts: Vec<(u128, u32)>, mut prefixes: Vec<(u128, u8, u32)>) -> (V6Table, usize) {
    // Hosts: in load order, so the first of each address wins.
    let mut duplicates = 0;
    let mut table = HashMap::with_capacity_and_hasher(hosts.len(), crate::hashing::TableHasher::default());
    for &(addr, global) in &hosts {
        match table.entry(IpAddress::from_bits(addr)) {
            Entry::Occupied(_) => duplicates += 1,
            Entry::Vacant(v) => {
                v.insert(global);
            }
        }
    }
    table.shrink_to_fit();

    prefixes.sort_unstable();
    let before = prefixes.len();
    prefixes.dedup_by(|later, earlier| (later.0, later.1) == (earlier.0, earlier.1));
    duplicates += before - prefixes.len();
    let ranges = disjoint_ranges(
        prefixes.iter().zip(0u32..).map(|(&(net, len, _), i)| (net, net | (u128::MAX >> len), i)),
    );
    let occupied = if hosts.is_empty() && prefixes.is_empty() {
        Vec::new()
    } else {
        let marks = hosts.iter().map(|&(a, _)| (a, 128));
        V6Table::occupancy(marks.chain(prefixes.iter().map(|&(n, l, _)| (n, l))))
    };
    let v6 = V6Table {
        hosts: table,
        ranges: V6Ranges::build(&ranges),
        prefixes: prefixes.iter().map(|&(_, len, global)| PrefixRecord { global, len }).collect(),
        occupied,
    };
    (v6, duplicates)
}

/// Lists of at least this many bytes are parsed on parallel threads ([`Builder::add_text`]).
const PARALLEL_BYTES: usize = 1 << 20;

/// The most threads one list is parsed on.
const PARSE_THREADS: usize = 8;

/// `text` cut into at most `parts` pieces of whole lines, each without the line break that
/// ends it, so that splitting the pieces at line breaks gives exactly the lines of `text`.
fn whole_line_chunks(text: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(parts);
    let mut rest = text;
    for k in (1..parts.max(1)).rev() {
        let target = rest.len() / (k + 1);
        let Some(cut) = rest.get(target..).and_then(|tail| tail.iter().position(|&b| b == b'\n')) else {
            break;
        };
        let (chunk, tail) = rest.split_at(target + cut);
        chunks.push(chunk);
        rest = tail.get(1..).unwrap_or_default();
    }
    chunks.push(rest);
    chunks
}

/// One chunk of a list's lines, parsed into a builder of its own (entries numbered from 0).
#[derive(Default)]
struct Chunk {
    entries: Builder,
    descriptions: Descriptions,
    /// Lines in the chunk.
    lines: usize,
    bad: usize,
    /// The first bad line, its line number counted from the chunk's start.
    first_bad: Option<ConfigError>,
    /// The chunk's descriptions exceeded 4 GiB of text.
    descriptions_overflow: bool,
}

impl Chunk {
    /// Adds the chunk's next line (without its line feed).
    #[inline]
    fn add_line(&mut self, raw: &[u8], shown: &Path) {
        self.lines += 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Most lines of a large feed are an IPv4 address or prefix alone: added without a
        // `Cidr` in between.
        if let Some((addr, len)) = fast_v4(line) {
            let global = self.entries.next_global;
            self.entries.next_global = global.saturating_add(1);
            self.entries.push_v4(addr, len, global);
            return;
        }
        match parse_line(line) {
            Ok(Line::Blank) => {}
            Ok(Line::Entry(cidr, description)) => {
                // Ids beyond `MAX_ENTRIES` are caught when the chunk is appended.
                let global = self.entries.next_global;
                self.entries.next_global = global.saturating_add(1);
                self.entries.push_numbered(cidr, global);
                if let Some(d) = description
                    && self.descriptions.push(global, &d).is_none()
                {
                    self.descriptions_overflow = true;
                }
            }
            Err(e) => {
                self.bad += 1;
                if self.first_bad.is_none() {
                    self.first_bad = Some(e.locate(shown, self.lines, line));
                }
            }
        }
    }

    /// The pieces of `text` between line feeds, as `text.split(|&b| b == b'\n')` gives them
    /// (the last one after the last line feed, possibly empty), found with `memchr`.
    fn parse(text: &[u8], shown: &Path) -> Chunk {
        let mut chunk = Chunk::default();
        let mut from = 0;
        for to in memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len())) {
            chunk.add_line(text.get(from..to).unwrap_or_default(), shown);
            from = to + 1;
        }
        chunk
    }
}

/// Reads `file` at `offset` into `buf` until it is full or the file ends; returns the bytes
/// read.
fn read_full_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match file.read_at(rest, offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The lines of a list file of `total` bytes that start in `start..end` — the first line at
/// 0 (its text after a UTF-8 byte order mark), the others after a line feed; the `last` part
/// also takes the piece after the last line feed, possibly empty, as [`Chunk::parse`] does —
/// read through `buf` (grown when a line is longer), so the file is never held whole.
fn parse_part(
    file: &std::fs::File,
    (start, end, total, last): (u64, u64, u64, bool),
    buf: &mut Vec<u8>,
    shown: &Path,
) -> std::io::Result<Chunk> {
    let mut chunk = Chunk::default();
    // `buf[..valid]` holds the file's bytes from `at`; the file ends within it when `eof`.
    let (mut at, mut valid, mut line);
    if start == 0 {
        (at, valid) = (0, read_full_at(file, buf, 0)?);
        line = if buf.get(..valid).unwrap_or_default().starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    } else {
        // The first line starts after the first line feed from `start - 1` on.
        at = start - 1;
        loop {
            valid = read_full_at(file, buf, at)?;
            if let Some(i) = memchr::memchr(b'\n', buf.get(..valid).unwrap_or_default()) {
                line = at + i as u64 + 1;
                break;
            }
            if valid < buf.len() {
                return Ok(chunk);
            }
            at += valid as u64;
        }
    }
    let mut eof = valid < buf.len();
    // The first line counts as starting at 0 even when a byte order mark comes before it.
    let first = line;
    let owns = |l: u64| {
        let at = if start == 0 && l == first { 0 } else { l };
        (start <= at && at < end) || (last && l == total)
    };
    while owns(line) {
        let from = usize::try_from(line - at).unwrap_or(usize::MAX);
        let held = buf.get(from..valid).unwrap_or_default();
        if let Some(i) = memchr::memchr(b'\n', held) {
            chunk.add_line(held.get(..i).unwrap_or_default(), shown);
            line += i as u64 + 1;
            continue;
        }
        if eof {
            chunk.add_line(held, shown);
            break;
        }
        // Keep the line begun and read on after it; a line longer than the buffer grows it.
        buf.copy_within(from..valid, 0);
        (at, valid) = (line, valid - from);
        if valid == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = read_full_at(file, buf.get_mut(valid..).unwrap_or_default(), at + valid as u64)?;
        eof = valid + n < buf.len();
        valid += n;
    }
    Ok(chunk)
}

/// How many bytes each list-reading thread reads at a time ([`parse_part`]).
const READ_BLOCK: usize = 1 << 18;

/// [`parse_part`] over `parts` parts of a file of `total` bytes, on `threads` threads, each
/// with a buffer of `block` bytes; the chunks in file order.
fn parse_file(
    file: &std::fs::File,
    total: u64,
    shown: &Path,
    (parts, threads, block): (usize, usize, usize),
) -> std::io::Result<Vec<Chunk>> {
    let bound = |k: usize| total * k as u64 / parts as u64;
    in_turn(
        parts,
        threads,
        || vec![0u8; block.max(4)],
        |buf, i| parse_part(file, (bound(i), bound(i + 1), total, i + 1 == parts), buf, shown),
    )
}

/// Runs `job(state, i)` for every `i` in `0..jobs` on `threads` threads, this one among them:
/// each thread takes the next job in turn (so one that drew slow jobs does not hold the others
/// up), with a `state` of its own made by `state` (a read buffer). Returns the results in job
/// order, or the first error.
fn in_turn<S, T: Send, E: Send>(
    jobs: usize,
    threads: usize,
    state: impl Fn() -> S + Sync,
    job: impl Fn(&mut S, usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> Result<Vec<(usize, T)>, E> {
        let mut own = state();
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= jobs {
                return Ok(mine);
            }
            mine.push((i, job(&mut own, i)?));
        }
    };
    let mut done = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(jobs)).map(|_| scope.spawn(work)).collect();
        let mut all = work()?;
        for h in helpers {
            all.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?);
        }
        Ok(all)
    })?;
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Threads a large list is parsed on: one per available core, up to [`PARSE_THREADS`].
fn parse_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(PARSE_THREADS)
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
    // Most lines of a large feed are an entry alone: parsed straight from the bytes (an IPv4
    // one is taken by `Chunk::add_line` before it gets here, and by the token path below).
    if let Some(cidr) = fast_v6_entry(line) {
        return Ok(Line::Entry(cidr, None));
    }
    let Some(start) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(Line::Blank);
    };
    let rest = line.get(start..).unwrap_or_default();
    if matches!(rest.first(), Some(b'#' | b';')) {
        return Ok(Line::Blank);
    }
    let end = token_len(rest);
    let (token, after) = rest.split_at(end);
    let bad = |message: Cow<'static, str>| LineError { offset: start, len: end, message };
    let cidr = match fast_v4_entry(token) {
        Some(cidr) => cidr,
        None => {
            let token = std::str::from_utf8(token).map_err(|_| bad("not UTF-8 text".into()))?;
            parse_entry(token).map_err(bad)?
        }
    };

    let after = after.split(|&b| b == b'#').next().unwrap_or_default().trim_ascii();
    let after = after.strip_prefix(b";").or_else(|| after.strip_prefix(b",")).unwrap_or(after).trim_ascii();
    let description = (!after.is_empty()).then(|| String::from_utf8_lossy(after));
    Ok(Line::Entry(cidr, description))
}

/// Bytes that end an entry's token: ASCII whitespace (as `u8::is_ascii_whitespace`), `#`,
/// `;` and `,`.
const TOKEN_END: [bool; 256] = {
    let mut t = [false; 256];
    let ends = [b' ', b'\t', b'\n', 0x0c, b'\r', b'#', b';', b','];
    let mut i = 0;
    while i < ends.len() {
        t[ends[i] as usize] = true;
        i += 1;
    }
    t
};

/// The length of the entry token at the start of `rest`: up to the first [`TOKEN_END`]
/// byte, or all of it. A loop of its own over a table: scanned inside `parse_line`, the same
/// search kept its state on the stack and was a third of a large list's parsing time.
#[inline(never)]
fn token_len(rest: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        if TOKEN_END[usize::from(b)] {
            break;
        }
        i += 1;
    }
    i
}

/// The common entry, `a.b.c.d` or `a.b.c.d/LEN` (octets without leading zeros, `LEN` of at
/// most two digits and at most 32, no host bits), parsed straight from the bytes;
/// `None` for anything else, which [`parse_entry`] then parses or rejects. Accepts exactly
/// what `parse_entry` accepts of this form, with the same result (a test checks it), at a
/// fraction of the cost: most of a large feed is such lines.
#[inline]
fn fast_v4_entry(token: &[u8]) -> Option<Cidr> {
    let (addr, len) = fast_v4(token)?;
    Cidr::new(IpAddress::from_v4(addr.to_be_bytes()), len)
}

/// [`fast_v4_entry`] as the network address (a big-endian `u32`) and prefix length, in one
/// pass over the bytes: what a chunk adds to its IPv4 entries without building a [`Cidr`].
#[inline]
fn fast_v4(token: &[u8]) -> Option<(u32, u8)> {
    let digit = |b: &u8| Some(u32::from(b.checked_sub(b'0')?)).filter(|&d| d <= 9);
    let (mut addr, mut i) = (0u32, 0usize);
    for k in 0..4 {
        let start = i;
        let mut value = 0u32;
        while i - start < 3
            && let Some(d) = token.get(i).and_then(digit)
        {
            value = value * 10 + d;
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || value > 255 || (digits > 1 && token.get(start) == Some(&b'0')) {
            return None;
        }
        addr = addr << 8 | value;
        match (k, token.get(i)) {
            (0..=2, Some(b'.')) | (3, Some(b'/')) => i += 1,
            (3, None) => return Some((addr, 32)),
            _ => return None,
        }
    }
    let len = match token.get(i..)? {
        [a] => digit(a)?,
        [a, b] => digit(a)? * 10 + digit(b)?,
        _ => return None,
    };
    // No host bits (`checked_shr`: a /0 leaves every bit to the host part).
    let host = u32::MAX.checked_shr(len).unwrap_or(0);
    (len <= 32 && addr & host == 0).then_some((addr, len as u8))
}

/// An IPv6 address of hexadecimal groups only (no embedded IPv4, no zone): eight groups of
/// one to four hex digits, or fewer around one `::` that stands for at least one zero group.
/// `None` for anything else, which the standard parser then parses or rejects; where this
/// answers, the standard parser gives the same address (a test checks it).
#[inline]
fn fast_v6(text: &[u8]) -> Option<u128> {
    // One pass: the groups in order, and where `::` stood among them.
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut groups = [0u16; 8];
    let (mut n, mut gap, mut i) = (0usize, None, 0usize);
    if text.starts_with(b"::") {
        gap = Some(0);
        i = 2;
    }
    while i < text.len() || gap != Some(n) {
        let start = i;
        let mut value = 0u16;
        while i - start < 4
            && let Some(d) = text.get(i).copied().and_then(hex)
        {
            value = value << 4 | u16::from(d);
            i += 1;
        }
        if i == start {
            return None;
        }
        *groups.get_mut(n)? = value;
        n += 1;
        match text.get(i) {
            None => break,
            Some(b':') if text.get(i + 1) == Some(&b':') => {
                if gap.is_some() {
                    return None;
                }
                gap = Some(n);
                i += 2;
            }
            Some(b':') => i += 1,
            Some(_) => return None,
        }
    }
    let mut bits = [0u16; 8];
    match gap {
        None if n == 8 => bits = groups,
        // `::` stands for at least one zero group.
        Some(g) if n <= 7 => {
            let (head, tail) = (groups.get(..g)?, groups.get(g..n)?);
            bits.get_mut(..g)?.copy_from_slice(head);
            bits.get_mut(8 - tail.len()..)?.copy_from_slice(tail);
        }
        _ => return None,
    }
    Some(bits.iter().fold(0u128, |acc, &v| acc << 16 | u128::from(v)))
}

/// The common IPv6 entry, `ADDRESS` or `ADDRESS/LEN` with an address [`fast_v6`] reads
/// (hexadecimal groups only) that is not IPv4-mapped, `LEN` of one to three digits and at
/// most 128, no host bits; `None` for anything else, which [`parse_entry`] then parses or
/// rejects. Where it answers, `parse_entry` gives the same (a test checks it).
#[inline]
fn fast_v6_entry(token: &[u8]) -> Option<Cidr> {
    let (addr_text, len_text) = match token.iter().position(|&b| b == b'/') {
        Some(i) => (token.get(..i)?, Some(token.get(i + 1..)?)),
        None => (token, None),
    };
    let addr = IpAddress::from_bits(fast_v6(addr_text)?);
    if addr.is_v4() {
        return None;
    }
    let len = match len_text {
        None => 128,
        Some(l) if (1..=3).contains(&l.len()) && l.iter().all(u8::is_ascii_digit) => {
            l.iter().fold(0u16, |v, &d| v * 10 + u16::from(d - b'0'))
        }
        Some(_) => return None,
    };
    let cidr = Cidr::new(addr, u8::try_from(len).ok().filter(|&l| l <= 128)?)?;
    (cidr.network() == addr).then_some(cidr)
}

/// `ADDRESS` or `ADDRESS/LEN`, with the rules of the module documentation.
fn parse_entry(token: &str) -> Result<Cidr, Cow<'static, str>> {
    let (addr_text, len_text) = match token.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (token, None),
    };
    let ipv6_syntax = addr_text.contains(':');
    let addr = if ipv6_syntax {
        fast_v6(addr_text.as_bytes())
            .map_or_else(|| addr_text.parse::<Ipv6Addr>(), |bits| Ok(Ipv6Addr::from(bits)))
            .map(IpAddress::from)
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

    /// `many` (a one-list set of `text` built another way) is `one`: the same counts, bad lines
    /// and first bad line, and every entry of the text found with the same match and
    /// description.
    fn assert_same_list(one: &IntelSet, many: &IntelSet, text: &str, what: &str) {
        assert_eq!(one.stats(), many.stats(), "{what}");
        let (x, y) = (&one.lists()[0], &many.lists()[0]);
        assert_eq!((x.len(), x.skipped_lines()), (y.len(), y.skipped_lines()), "{what}");
        assert_eq!(x.first_skipped(), y.first_skipped(), "{what}");
        for line in text.trim_start_matches('\u{feff}').lines() {
            let Some(Ok(cidr)) = line.split_whitespace().next().map(parse_entry) else { continue };
            let (p, q) = (one.lookup(&cidr.network()), many.lookup(&cidr.network()));
            assert_eq!(p, q, "{what}: {line}");
            let p = p.expect("listed");
            assert_eq!(one.entry_description(p.list, p.entry), many.entry_description(p.list, p.entry));
        }
    }

    /// A list read from its file in parts, each through a small buffer, is the list parsed
    /// in one pass: the same entries in the same order, descriptions, bad lines and line
    /// numbers — whatever the parts and buffer sizes, lines longer than the buffer, a byte
    /// order mark, CRLF, and a last line with or without its line feed.
    #[test]
    fn a_list_read_in_parts_is_the_list_parsed_in_one_pass() {
        let path = std::env::temp_dir().join(format!("outpost-list-parts-{}.txt", std::process::id()));
        let mut texts =
            vec![String::new(), "\n".into(), "10.0.0.1".into(), "\u{feff}10.0.0.1\n10.0.0.2".into()];
        let mut big = String::from("\u{feff}# feed\r\n");
        for i in 0..3_000u32 {
            let [a, b, c, d] = (0x0a00_0000 + i * 7919).to_be_bytes();
            big.push_str(&format!("{a}.{b}.{c}.{d}\n"));
            match i % 211 {
                0 => big.push_str(&format!("{a}.{b}.0.0/16 ; {}\r\n", "long description ".repeat(40))),
                1 => big.push_str("2001:db8::/48\n\n   \n"),
                2 => big.push_str("10.0.0.300 bad\n"),
                _ => {}
            }
        }
        texts.push(big.clone());
        big.push_str("192.0.2.9");
        texts.push(big);
        for text in &texts {
            std::fs::write(&path, text).expect("write");
            let file = std::fs::File::open(&path).expect("open");
            let total = text.len() as u64;
            let one = {
                let mut b = Builder::default();
                b.add_text_on("l", None, &path, text.as_bytes(), true, 1).expect("lenient");
                b.build()
            };
            for (parts, block) in [(1, 4), (3, 5), (7, 16), (32, 64), (5, 1 << 18)] {
                let chunks = parse_file(&file, total, &path, (parts, 3, block)).expect("read");
                let mut b = Builder::default();
                let start = b.start_list(&path).expect("list");
                b.add_chunks("l", None, &path, start, chunks, true).expect("lenient");
                let many = b.build();
                let what = format!("{} bytes, {parts} parts, {block}-byte buffer", text.len());
                assert_same_list(&one, &many, text, &what);
            }
        }
        std::fs::remove_file(&path).expect("remove");
    }

    #[test]
    fn an_entry_token_ends_at_whitespace_or_a_comment_or_separator_byte() {
        for b in 0..=255u8 {
            let line = [b'1', b, b'2'];
            let ends = b.is_ascii_whitespace() || matches!(b, b'#' | b';' | b',');
            assert_eq!(token_len(&line), if ends { 1 } else { 3 }, "byte {b:#04x}");
        }
        assert_eq!(token_len(b""), 0);
    }

    /// The byte-level IPv4 parser answers only where the full parser accepts, and the same.
    fn fast_path_agrees(token: &str) {
        let full = parse_entry(token).ok();
        match fast_v4_entry(token.as_bytes()) {
            Some(fast) => assert_eq!(Some(fast), full, "`{token}`"),
            None => assert!(
                full.is_none()
                    || token.contains(':')
                    || token.split(['.', '/']).any(|g| g.len() > 1 && g.starts_with('0')),
                "`{token}`: the fast path should have taken it"
            ),
        }
    }

    /// The byte-level IPv6 entry parser answers only where the full parser accepts, and the
    /// same; it takes the plain forms of feeds (groups, `::`, a prefix length).
    #[test]
    fn the_ipv6_entry_fast_path_agrees_with_the_full_parser() {
        let tokens = [
            "2001:db8::1",
            "2001:db8::/32",
            "2001:db8::1/128",
            "2001:db8::1/127",
            "::/0",
            "::",
            "::1",
            "fe80::/10",
            "fe80::1/10",
            "2001:db8:0:0:0:0:0:1",
            "1:2:3:4:5:6:7:8/64",
            "1:2:3:4:5:6:7:8/128",
            "2001:db8::/129",
            "2001:db8::/032",
            "2001:db8::/0032",
            "2001:db8::/+32",
            "2001:db8::/",
            "::ffff:102:304",
            "::ffff:102:304/120",
            "::ffff:1.2.3.4",
            "2001:db8:::1",
            "2001:db8::g",
            "12345::",
            "2001:db8::1/64x",
            "3fff:d724::/32",
            "20c4:20c9:ba00::/40",
            "/32",
            "",
        ];
        let mut checked = 0;
        for t in tokens {
            let full = parse_entry(t).ok();
            if let Some(fast) = fast_v6_entry(t.as_bytes()) {
                assert_eq!(Some(fast), full, "`{t}`");
                checked += 1;
            }
        }
        assert!(checked >= 10, "the fast path takes the plain forms ({checked})");
        // Random addresses and prefixes of every length.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 129) as u32;
            let bits = (u128::from(x) << 64 | u128::from(x.rotate_left(17)))
                & !(u128::MAX.checked_shr(len).unwrap_or(0));
            let t = format!("{}/{len}", std::net::Ipv6Addr::from(bits));
            let fast = fast_v6_entry(t.as_bytes());
            assert_eq!(fast, parse_entry(&t).ok(), "`{t}`");
        }
    }

    #[test]
    fn a_list_parsed_in_chunks_is_the_list_parsed_in_one_pass() {
        // Hosts, prefixes and IPv6 entries, descriptions, duplicates across chunks, comments,
        // CRLF lines and bad lines (the first one far into the text).
        let mut text = String::from("# header\r\n");
        for i in 0..20_000u32 {
            let [a, b, c, d] = (0x0a00_0000 + i * 7919).to_be_bytes();
            text.push_str(&format!("{a}.{b}.{c}.{d}\n"));
            if i % 97 == 0 {
                text.push_str(&format!("{a}.{b}.0.0/16 ; block {i}\r\n2001:db8:{i:x}::/48\n"));
            }
            if i % 1013 == 0 {
                text.push_str("192.0.2.1 # the same host again\n\n10.1.2.3/8\n");
            }
        }
        let source = IntelSource { name: "l".into(), path: PathBuf::from("l.txt"), lenient: true };
        let build = |threads: usize| {
            let mut b = Builder::default();
            b.add_text_on("l", None, &source.path, text.as_bytes(), true, threads).expect("lenient");
            b.build()
        };
        let (one, many) = (build(1), build(5));
        assert_same_list(&one, &many, &text, "5 threads");
        let first = one.lists()[0].first_skipped();
        assert!(first.is_some_and(|e| e.line > 1), "{first:?}");
        assert!(whole_line_chunks(text.as_bytes(), 5).len() == 5);

        // A bad line in the last chunk is reported with its line number in the whole text.
        let mut strict = "192.0.2.1\r\n".repeat(40_000);
        strict.push_str("10.0.0.300\n192.0.2.2\n");
        let mut b = Builder::default();
        match b.add_text_on("l", None, &source.path, strict.as_bytes(), false, 4) {
            Err(IntelError::BadLines { first, count: 1 }) => {
                assert_eq!((first.line, first.column), (40_001, 1))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv6_fast_path_agrees_with_the_standard_parser() {
        let check = |t: &str| {
            let std = t.parse::<Ipv6Addr>().ok().map(u128::from);
            match fast_v6(t.as_bytes()) {
                Some(bits) => assert_eq!(Some(bits), std, "`{t}`"),
                None => {
                    assert!(std.is_none() || t.contains('.'), "`{t}`: the fast path should have taken it")
                }
            }
        };
        for t in [
            "::",
            "::1",
            "1::",
            "2001:db8::",
            "2001:db8::1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::8",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            ":1:2:3:4:5:6:7",
            "1::2::3",
            "12345::",
            "fFfF::",
            "g::",
            ":::",
            "1:::2",
            "::ffff:1.2.3.4",
            "::ffff:102:304",
            "2001:db8::/32",
            "",
            ":",
            "1:",
        ] {
            check(t);
        }
        let mut rng = outpost_tools::splitmix::SplitMix64(0x2545_f491_4f6c_dd1du64);
        let mut next = |n: u64| rng.below(n);
        for _ in 0..100_000 {
            let mut t = String::new();
            for g in 0..1 + next(9) {
                if g > 0 {
                    t.push_str(if next(6) == 0 { "::" } else { ":" });
                }
                for _ in 0..next(6) {
                    t.push(char::from(b"0123456789abcdefAF:g"[next(20) as usize]));
                }
            }
            check(&t);
        }
    }

    #[test]
    fn ipv4_fast_path_accepts_exactly_what_the_full_parser_does() {
        for token in [
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.7",
            "10.0.0.0/8",
            "10.0.0.0/08",
            "0.0.0.0/0",
            "1.2.3.4/32",
            "10.1.2.3/8",
            "10.0.0.0/33",
            "10.0.0.0/99",
            "10.0.0.0/100",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1000.1.1.1",
            "1..2.3",
            ".1.2.3",
            "1.2.3.4 ",
            "1.2.3.4/3a",
            "::1",
            "::ffff:1.2.3.4",
            "1.2.3.4/-1",
            "",
            "/8",
            "1.2.3.4//8",
        ] {
            fast_path_agrees(token);
        }
        // Dotted quads of 1–3 digit groups (leading zeros, values above 255), with or without a
        // prefix length of 0–3 digits, now and then a group short or a separator wrong.
        let mut rng = outpost_tools::splitmix::SplitMix64(0x9e37_79b9_7f4a_7c15u64);
        let mut next = |n: u64| rng.below(n);
        for _ in 0..100_000 {
            let groups = if next(10) == 0 { 3 } else { 4 };
            let mut token = String::new();
            for g in 0..groups {
                if g > 0 {
                    token.push(if next(50) == 0 { '/' } else { '.' });
                }
                let digits = 1 + next(3);
                for _ in 0..digits {
                    token.push(char::from(b'0' + next(10) as u8));
                }
            }
            if next(2) == 0 {
                token.push('/');
                for _ in 0..next(4) {
                    token.push(char::from(b'0' + next(10) as u8));
                }
            }
            fast_path_agrees(&token);
        }
    }
}
