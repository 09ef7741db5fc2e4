//! Intel rules: packets to or from addresses on intel lists.
//!
//! The lists are loaded when the rules are compiled (so reloading the rules rereads them) into
//! one [`IntelSet`] per rule; every IP packet the worker owns by source is looked up (source,
//! destination, or both). A worker raises at most one alert per listed address per
//! `cooldown`; the alert policy deduplicates further.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use outpost_decode::{Duration, IpAddress, Nanos, PacketMeta};
use outpost_filter::Filter;

use crate::alert::Matched;
use crate::config::{ConfigError, IntelConfig, IntelDirection, SourceText};
use crate::intel::{IntelMatch, IntelSet, IntelSource};
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
        let mut texts: Vec<(IntelSource, String)> = Vec::with_capacity(c.lists.len());
        for (i, l) in c.lists.iter().enumerate() {
            let k = format!("{key}.lists[{i}]");
            let (path, text) = match (&l.path, &l.entries) {
                (Some(p), None) => {
                    let path = base.join(p.get_ref());
                    // Feeds are not always clean UTF-8: a stray byte in a comment must not
                    // refuse the list, and a bad byte in an entry makes that line bad.
                    let text = match std::fs::read(&path) {
                        Err(e) if l.optional && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                        r => r.map(|b| String::from_utf8_lossy(&b).into_owned()),
                    }
                    .map_err(|e| {
                        src.error(
                            p.span(),
                            format!("{k}.path"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?;
                    (path, text)
                }
                (None, Some(entries)) => {
                    (PathBuf::from(format!("{}:{k}.entries", src.path.display())), entries.join("\n"))
                }
                _ => return Err(src.error(l.name.span(), k, "a list has either `path` or `entries`")),
            };
            texts.push((IntelSource { name: l.name.get_ref().clone(), path, lenient: l.lenient }, text));
        }
        let refs: Vec<(IntelSource, &str)> = texts.iter().map(|(s, t)| (s.clone(), t.as_str())).collect();
        let set = IntelSet::from_texts(&refs)
            .map_err(|e| src.error(c.name.span(), format!("{key}.lists"), e.to_string()))?;
        Ok(IntelRule { filter, direction: c.direction, set: Arc::new(set), cooldown: c.cooldown.0 })
    }

    /// The name of list `i`.
    #[must_use]
    pub fn list_name(&self, i: u16) -> &str {
        self.set.list_name(i)
    }
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
    quiet_until: HashMap<(IpAddress, Matched), Nanos, foldhash::fast::RandomState>,
    /// Packets that hit a list.
    pub hits: u64,
}

impl IntelState {
    /// Looks the packet up; returns the sightings that should alert.
    pub fn on_packet(&mut self, rule: &IntelRule, m: &PacketMeta, out: &mut impl FnMut(Sighting)) {
        let mut check = |addr: IpAddress, matched: Matched, state: &mut IntelState| {
            if let Some(hit) = rule.set.lookup(&addr) {
                state.hits += 1;
                let until = state.quiet_until.entry((addr, matched)).or_insert(Nanos::ZERO);
                if m.ts >= *until {
                    *until = m.ts.saturating_add(rule.cooldown);
                    out(Sighting { listed: addr, hit, matched });
                }
            }
        };
        if matches!(rule.direction, IntelDirection::Either | IntelDirection::Src) {
            check(m.src, Matched::Src, self);
        }
        if matches!(rule.direction, IntelDirection::Either | IntelDirection::Dst) {
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
