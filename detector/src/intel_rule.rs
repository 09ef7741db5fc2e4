//! Intel rules: packets to or from addresses on intel lists.
//!
//! The lists are loaded when the rules are compiled (so reloading the rules rereads them) into
//! one [`IntelSet`] per rule; every IP packet the worker owns by source is looked up (source,
//! destination, or both). A worker raises at most one alert per listed address per
//! `cooldown`; the alert policy deduplicates further.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use hashbrown::HashMap;
use outpost_decode::{Duration, IpAddress, Nanos, Network, PacketMeta};
use outpost_filter::Filter;

use crate::alert::Matched;
use crate::config::{ConfigError, IntelConfig, IntelDirection, SourceText};
use crate::intel::{IntelMatch, IntelSet, IntelSource, ListInput};
use crate::select::compile_filter;

/// A compiled intel rule.
#[derive(Debug, Clone)]
pub struct IntelRule {
    /// Packets looked up.
    pub filter: Filter,
    /// Which addresses.
    pub direction: IntelDirection,
    /// The loaded lists.
    pub set: Arc<IntelSet>,
    /// Where the lists came from (names, files): with the other fields, what defines the
    /// rule — not the lists' entries, so a feed update keeps its state over a reload.
    pub lists: Vec<IntelSource>,
    /// Alert at most once per address per this long, per worker.
    pub cooldown: Duration,
}

impl IntelRule {
    /// Compiles `[[intel]]`, loading its lists (paths relative to the rule file).
    ///
    /// # Errors
    /// A [`ConfigError`] at the list entry, with the list loader's message.
    pub fn compile(c: &IntelConfig, src: &SourceText, key: &str) -> Result<IntelRule, ConfigError> {
        let filter = compile_filter(c.filter.as_ref(), src, &format!("{key}.filter"))?;
        if c.lists.is_empty() {
            return Err(src.error(
                c.name.span(),
                format!("{key}.lists"),
                "an intel rule needs at least one list",
            ));
        }
        let base = src.path.parent().unwrap_or(Path::new(""));
        let mut inputs: Vec<(IntelSource, ListInput)> = Vec::with_capacity(c.lists.len());
        for (i, l) in c.lists.iter().enumerate() {
            let k = format!("{key}.lists[{i}]");
            let (path, input) = match (&l.path, &l.entries) {
                (Some(p), None) => {
                    let path = base.join(p.get_ref());
                    // Feeds are not always clean UTF-8: the lists are parsed as bytes, so a
                    // stray byte in a comment does not refuse the list, and a bad byte in an
                    // entry makes that line bad. The file is read when the set is built; a
                    // file that cannot be opened or read (a directory) is refused here.
                    let opened = std::fs::File::open(&path)
                        .and_then(|f| std::os::unix::fs::FileExt::read_at(&f, &mut [0u8; 1], 0).map(|_| f));
                    let input = match opened {
                        Ok(f) => ListInput::File(f),
                        Err(e) if l.optional && e.kind() == std::io::ErrorKind::NotFound => {
                            ListInput::Bytes(Vec::new())
                        }
                        Err(e) => {
                            return Err(src.error(
                                p.span(),
                                format!("{k}.path"),
                                format!("cannot read {}: {e}", path.display()),
                            ));
                        }
                    };
                    (path, input)
                }
                (None, Some(entries)) => (
                    PathBuf::from(format!("{}:{k}.entries", src.path.display())),
                    ListInput::Bytes(entries.join("\n").into_bytes()),
                ),
                _ => return Err(src.error(l.name.span(), k, "a list has either `path` or `entries`")),
            };
            inputs.push((IntelSource { name: l.name.get_ref().clone(), path, lenient: l.lenient }, input));
        }
        let set = IntelSet::from_inputs(&inputs)
            .map_err(|e| src.error(c.name.span(), format!("{key}.lists"), e.to_string()))?;
        let lists = inputs.into_iter().map(|(s, _)| s).collect();
        Ok(IntelRule { filter, direction: c.direction, set: Arc::new(set), lists, cooldown: c.cooldown.0 })
    }

    /// The name of list `i`.
    #[must_use]
    pub fn list_name(&self, i: u16) -> &str {
        self.set.list_name(i)
    }

    /// True when no address of `m` the rule looks up can be listed (the lists' occupancy
    /// bits): [`IntelState::on_packet`] would then find nothing.
    #[inline]
    #[must_use]
    pub fn surely_misses(&self, m: &PacketMeta) -> bool {
        let (src, dst) = self.sides();
        surely_misses(&self.set, src, dst, m)
    }

    /// The rule's occupancy test ([`IntelRule::surely_misses`]) on its own.
    #[must_use]
    pub fn gate(&self) -> IntelGate {
        let (src, dst) = self.sides();
        IntelGate { set: self.set.clone(), src, dst }
    }

    /// Whether the rule looks up a packet's source and its destination (`direction`).
    #[inline]
    fn sides(&self) -> (bool, bool) {
        match self.direction {
            IntelDirection::Either => (true, true),
            IntelDirection::Src => (true, false),
            IntelDirection::Dst => (false, true),
        }
    }
}

/// An intel rule's occupancy test, held apart from the rule so that a packet's test is a
/// few loads from the dispatch lists ([`IntelRule::gate`]).
#[derive(Debug, Clone)]
pub struct IntelGate {
    set: Arc<IntelSet>,
    src: bool,
    dst: bool,
}

impl IntelGate {
    /// [`IntelRule::surely_misses`].
    #[inline]
    #[must_use]
    pub fn surely_misses(&self, m: &PacketMeta) -> bool {
        surely_misses(&self.set, self.src, self.dst, m)
    }
}

/// Whether no address of `m` on the looked-up sides (`src`, `dst`) can be on `set`'s lists.
#[inline(always)]
fn surely_misses(set: &IntelSet, src: bool, dst: bool, m: &PacketMeta) -> bool {
    if m.network == Network::Ipv4 {
        // A packet decoded as IPv4 carries IPv4-mapped addresses.
        return (!src || set.surely_misses_v4(m.src.low_u32()))
            && (!dst || set.surely_misses_v4(m.dst.low_u32()));
    }
    (!src || set.surely_misses(&m.src)) && (!dst || set.surely_misses(&m.dst))
}

/// A listed address seen in a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// The listed address.
    pub listed: IpAddress,
    /// The list entry.
    pub hit: IntelMatch,
    /// Which address of the packet.
    pub matched: Matched,
}

/// A worker's recent intel alerts: a cooldown per listed address and side. Per side, because
/// packets from a listed address reach the worker owning it and packets to it the workers
/// owning their senders: with the side in the key, the alerts raised do not depend on the
/// worker count (the collector's dedup folds the two sides into one alert).
#[derive(Debug, Default)]
pub struct IntelState {
    quiet_until: HashMap<(IpAddress, Matched), Nanos, crate::hashing::TableHasher>,
    /// Recent lookups, direct-mapped by address hash: the set's answer for the address in
    /// the slot. Busy addresses are looked up over and over; a hit skips the set's search,
    /// whose lines of a million-entry set are rarely in cache.
    cache: Box<[(IpAddress, Option<IntelMatch>)]>,
    /// The set the cache's answers came from (a reload brings another set). Weak, so that
    /// its allocation — and so its address — is not reused while this compares with it.
    cache_of: Weak<IntelSet>,
    /// Packets that hit a list.
    pub hits: u64,
}

/// Entries of [`IntelState`]'s lookup cache (40 B each: 80 KiB per intel rule and worker).
const LOOKUP_CACHE: usize = 2048;

impl IntelState {
    /// The set's answer for `addr`, through the cache.
    #[inline]
    fn lookup(&mut self, set: &Arc<IntelSet>, addr: IpAddress) -> Option<IntelMatch> {
        if set.surely_misses(&addr) {
            return None;
        }
        if !std::ptr::eq(self.cache_of.as_ptr(), Arc::as_ptr(set)) || self.cache.is_empty() {
            // Every slot starts as a true answer, so no slot needs a "valid" mark.
            let unspecified = IpAddress::UNSPECIFIED;
            self.cache = vec![(unspecified, set.lookup(&unspecified)); LOOKUP_CACHE].into_boxed_slice();
            self.cache_of = Arc::downgrade(set);
        }
        let slot = (addr.shard_hash() as usize) & (LOOKUP_CACHE - 1);
        match self.cache.get_mut(slot) {
            Some(entry) if entry.0 == addr => entry.1,
            Some(entry) => {
                let hit = set.lookup(&addr);
                *entry = (addr, hit);
                hit
            }
            None => set.lookup(&addr),
        }
    }

    /// Looks the packet up; returns the sightings that should alert.
    pub fn on_packet(&mut self, rule: &IntelRule, m: &PacketMeta, out: &mut impl FnMut(Sighting)) {
        let mut check = |addr: IpAddress, matched: Matched, state: &mut IntelState| {
            if let Some(hit) = state.lookup(&rule.set, addr) {
                state.hits += 1;
                let until = state.quiet_until.entry((addr, matched)).or_insert(Nanos::ZERO);
                if m.ts >= *until {
                    *until = m.ts.saturating_add(rule.cooldown);
                    out(Sighting { listed: addr, hit, matched });
                }
            }
        };
        let (src, dst) = rule.sides();
        if src {
            check(m.src, Matched::Src, self);
        }
        if dst {
            check(m.dst, Matched::Dst, self);
        }
    }

    /// Forgets cooldowns that ended before `now` (bounds memory).
    pub fn expire(&mut self, now: Nanos) {
        if self.quiet_until.len() > 4096 {
            self.quiet_until.retain(|_, t| *t > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(entries: &str) -> IntelRule {
        let src = IntelSource { name: "l".into(), path: PathBuf::from("l.txt"), lenient: false };
        IntelRule {
            filter: Filter::match_all(),
            direction: IntelDirection::Either,
            set: Arc::new(IntelSet::from_texts(&[(src.clone(), entries)]).unwrap()),
            lists: vec![src],
            cooldown: Duration::ZERO,
        }
    }

    fn sightings(st: &mut IntelState, r: &IntelRule, src: &str, dst: &str) -> Vec<Sighting> {
        let m = PacketMeta { src: src.parse().unwrap(), dst: dst.parse().unwrap(), ..PacketMeta::default() };
        let mut got = Vec::new();
        st.on_packet(r, &m, &mut |s| got.push(s));
        got
    }

    #[test]
    fn cached_answers_follow_the_set_after_a_reload() {
        let mut st = IntelState::default();
        let a = rule("203.0.113.0/24\n");
        for _ in 0..3 {
            let got = sightings(&mut st, &a, "203.0.113.9", "10.0.0.1");
            assert_eq!(got.len(), 1, "a listed source, cached or not");
            assert_eq!(got[0].matched, Matched::Src);
        }
        assert!(sightings(&mut st, &a, "10.0.0.1", "10.0.0.2").is_empty());
        // Another set (a reload): the cache must not answer from the old one.
        let b = rule("10.0.0.2\n");
        assert!(sightings(&mut st, &b, "203.0.113.9", "10.0.0.1").is_empty());
        let got = sightings(&mut st, &b, "10.0.0.1", "10.0.0.2");
        assert_eq!((got.len(), got.first().map(|s| s.matched)), (1, Some(Matched::Dst)));
        drop(a);
        let c = rule("0.0.0.0/8\n");
        let got = sightings(&mut st, &c, "0.0.0.0", "10.0.0.2");
        assert_eq!(got.len(), 1, "the unspecified address, the cache's initial key, is looked up too");
        assert_eq!(st.hits, 5);
    }
}
