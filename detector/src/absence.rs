//! Absence rules: an expected kind of packet not seen from a source for a timeout (a server's
//! syslog or heartbeat traffic stops).
//!
//! The key is the sender's address. Expected senders are either listed in the configuration
//! (`expected = [...]`: each is expected from the start of the input) or learned (a source
//! that sent matching packets once is expected from then on). A sender silent for `timeout`
//! raises one alert; when it is heard again the rule re-arms. The rule runs in the worker that
//! owns the sender's address; deadlines sit in a timer wheel, so checking them costs nothing
//! per packet.

use hashbrown::HashMap;
use outpost_decode::{Duration, IpAddress, Nanos, PacketMeta};
use outpost_filter::Filter;

use crate::config::{AbsenceConfig, ConfigError, KeyField, SourceText};
use crate::key::{KeySpec, KeyValue};
use crate::wheel::TimerWheel;

/// A compiled absence rule.
#[derive(Debug, Clone)]
pub struct AbsenceRule {
    /// The expected packets.
    pub filter: Filter,
    /// Key (`src_ip`).
    pub key: KeySpec,
    /// Silence that raises an alert.
    pub timeout: Duration,
    /// Listed senders (empty: learned).
    pub expected: Vec<IpAddress>,
    /// Most learned keys per worker.
    pub max_keys: usize,
}

impl AbsenceRule {
    /// Compiles `[[absence]]`.
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending value.
    pub fn compile(c: &AbsenceConfig, src: &SourceText, key: &str) -> Result<AbsenceRule, ConfigError> {
        let filter = Filter::parse(c.filter.get_ref()).map_err(|e| {
            src.error(c.filter.span(), format!("{key}.filter"), format!("bad filter expression: {e}"))
        })?;
        if c.key.get_ref().as_slice() != [KeyField::SrcIp] {
            return Err(src.error(
                c.key.span(),
                format!("{key}.key"),
                "absence rules are kept per sender: the key must be [\"src_ip\"]",
            ));
        }
        let timeout = c.timeout.get_ref().0;
        if timeout == Duration::ZERO {
            return Err(src.error(c.timeout.span(), format!("{key}.timeout"), "must be longer than zero"));
        }
        let mut expected = Vec::with_capacity(c.expected.len());
        for (i, e) in c.expected.iter().enumerate() {
            let a: IpAddress = e.get_ref().trim().parse().map_err(|_| {
                src.error(
                    e.span(),
                    format!("{key}.expected[{i}]"),
                    format!("`{}` is not an IP address", e.get_ref()),
                )
            })?;
            expected.push(a);
        }
        Ok(AbsenceRule {
            filter,
            key: KeySpec::of(&[KeyField::SrcIp]),
            timeout,
            expected,
            max_keys: c.max_keys.max(1),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sender {
    last: Option<Nanos>,
    /// When the sender started being expected.
    since: Nanos,
    alerted: bool,
    generation: u32,
}

/// An absence found: the sender and when it was last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silence {
    /// The sender.
    pub key: KeyValue,
    /// When it was last heard (none: never).
    pub last_seen: Option<Nanos>,
    /// When the timeout expired.
    pub at: Nanos,
}

/// Counters of an absence rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AbsenceStats {
    /// Packets that matched.
    pub matched: u64,
    /// Silences found.
    pub silences: u64,
    /// Senders tracked.
    pub keys: u64,
    /// Learned senders not tracked because the table was full.
    pub dropped: u64,
}

impl AbsenceStats {
    /// Adds another worker's counters.
    pub fn merge(&mut self, o: &AbsenceStats) {
        self.matched += o.matched;
        self.silences += o.silences;
        self.keys += o.keys;
        self.dropped += o.dropped;
    }
}

/// One worker's senders for one absence rule.
#[derive(Debug)]
pub struct AbsenceState {
    senders: HashMap<KeyValue, Sender, crate::hashing::TableHasher>,
    wheel: TimerWheel<KeyValue>,
    /// Senders whose deadline falls within one wheel slot of the clock: the wheel would see
    /// them only once the clock passes the end of that slot, so each tick checks them itself.
    soon: Vec<(KeyValue, u32)>,
    next_generation: u32,
    started: bool,
    /// Counters.
    pub stats: AbsenceStats,
}

impl AbsenceState {
    /// Empty state for `rule`.
    #[must_use]
    pub fn new(rule: &AbsenceRule) -> AbsenceState {
        AbsenceState {
            senders: HashMap::with_hasher(crate::hashing::TableHasher::default()),
            wheel: TimerWheel::for_timeout(rule.timeout),
            soon: Vec::new(),
            next_generation: 0,
            started: false,
            stats: AbsenceStats::default(),
        }
    }

    fn arm(&mut self, key: KeyValue, from: Nanos, last: Option<Nanos>, timeout: Duration) {
        if self.wheel.len() > 2 * self.senders.len().max(1024) {
            let senders = &self.senders;
            self.wheel.retain(|k, g| senders.get(k).is_some_and(|s| s.generation == g && !s.alerted));
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        self.senders.insert(key, Sender { last, since: from, alerted: false, generation });
        self.wheel.schedule(key, generation, from.saturating_add(timeout));
        self.stats.keys = self.senders.len() as u64;
    }

    /// A matching packet from its sender (the caller checked the filter). A sender whose
    /// silence reached the timeout before this packet — no clock tick came in between to
    /// notice it — is reported to `out` now, so whether a silence alerts does not depend on
    /// where the input's batches and ticks fall.
    pub fn on_packet(&mut self, rule: &AbsenceRule, m: &PacketMeta, out: &mut impl FnMut(Silence)) {
        self.stats.matched += 1;
        let key = KeyValue { src: m.src, ..KeyValue::default() };
        match self.senders.get_mut(&key) {
            Some(s) => {
                if s.alerted {
                    // Heard again after a silence: re-arm.
                    let last = Some(s.last.map_or(m.ts, |l| l.max(m.ts)));
                    self.arm(key, m.ts, last, rule.timeout);
                    return;
                }
                let deadline = s.last.unwrap_or(s.since).saturating_add(rule.timeout);
                if m.ts >= deadline {
                    self.stats.silences += 1;
                    out(Silence { key, last_seen: s.last, at: deadline });
                }
                // The wheel's entry stays: it reads `last` when it comes due.
                s.last = Some(s.last.map_or(m.ts, |l| l.max(m.ts)));
            }
            None => {
                let listed = rule.expected.contains(&m.src);
                if !listed && !rule.expected.is_empty() {
                    return;
                }
                if !listed && self.senders.len() >= rule.max_keys {
                    self.stats.dropped += 1;
                    return;
                }
                self.arm(key, m.ts, Some(m.ts), rule.timeout);
            }
        }
    }

    /// The rule starts watching at event time `at` (the start of the input, or the reload
    /// that added the rule): the listed senders this worker owns (`owns(addr)`) are expected
    /// from then on. Only the first call does anything.
    pub fn start(&mut self, rule: &AbsenceRule, at: Nanos, owns: impl Fn(&IpAddress) -> bool) {
        if self.started {
            return;
        }
        self.started = true;
        for a in rule.expected.iter().filter(|a| owns(a)) {
            let key = KeyValue { src: *a, ..KeyValue::default() };
            if !self.senders.contains_key(&key) {
                self.arm(key, at, None, rule.timeout);
            }
        }
    }

    /// Event time advanced to `now`: every sender silent for the timeout is reported to `out`,
    /// once per silence, with the moment its silence reached the timeout. If the rule was not
    /// started yet ([`AbsenceState::start`]), it starts at `now`.
    pub fn on_clock(
        &mut self,
        rule: &AbsenceRule,
        now: Nanos,
        owns: impl Fn(&IpAddress) -> bool,
        out: &mut impl FnMut(Silence),
    ) {
        if !self.started && now > Nanos::ZERO {
            self.start(rule, now, owns);
        }
        let (senders, stats, timeout) = (&mut self.senders, &mut self.stats, rule.timeout);
        // The wheel visits a slot once the clock passes the slot's end, but a deadline reached
        // at `now` may sit in the slot that holds `now`. So the wheel is advanced one slot
        // width (that of `TimerWheel::for_timeout`, or more) ahead of the clock, and the
        // senders it hands over whose deadline is not reached yet wait in `soon`, checked at
        // every tick: a silence is reported at the first tick at or after its deadline, as a
        // packet at that moment would report it.
        let reach = now.saturating_add(Duration(timeout.as_nanos() / 32 + 1_000_000));
        // `Some(deadline)` while the sender is silent but not for the timeout yet.
        let mut check = |key: KeyValue, generation: u32| -> Option<Nanos> {
            let s = senders.get_mut(&key)?;
            if s.generation != generation || s.alerted {
                return None;
            }
            // The deadline runs from the last packet, or from when the sender was armed.
            let deadline = s.last.unwrap_or(s.since).saturating_add(timeout);
            if deadline > now {
                return Some(deadline);
            }
            s.alerted = true;
            stats.silences += 1;
            out(Silence { key, last_seen: s.last, at: deadline });
            None
        };
        let (wheel, soon) = (&mut self.wheel, &mut self.soon);
        soon.retain(|&(key, generation)| match check(key, generation) {
            Some(deadline) if deadline >= reach => {
                // Heard again since: back to the wheel.
                wheel.schedule(key, generation, deadline);
                false
            }
            Some(_) => true,
            None => false,
        });
        wheel.advance(reach, |key, generation| match check(key, generation) {
            Some(deadline) if deadline < reach => {
                soon.push((key, generation));
                None
            }
            next => next,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RulesConfig;

    fn rule(expected: &str) -> AbsenceRule {
        let text = format!(
            "[[absence]]\nname = \"syslog\"\nfilter = \"udp dst port 514\"\ntimeout = \"60s\"\nexpected = [{expected}]\n"
        );
        let src = SourceText::new("a.toml", text);
        let cfg: RulesConfig = src.parse().expect("parses");
        AbsenceRule::compile(&cfg.absence[0], &src, "absence[0]").expect("compiles")
    }

    impl AbsenceState {
        fn on_packet_alone(&mut self, rule: &AbsenceRule, m: &PacketMeta) {
            self.on_packet(rule, m, &mut |s| panic!("a tick notices this silence first: {s:?}"));
        }
    }

    fn syslog_from(src: &str, secs: u64) -> PacketMeta {
        PacketMeta { src: src.parse().unwrap(), ts: Nanos::from_secs(secs), ..PacketMeta::default() }
    }

    #[test]
    fn a_learned_sender_that_goes_quiet_alerts_once_and_rearms() {
        let r = rule("");
        let mut st = AbsenceState::new(&r);
        let mut got = Vec::new();
        st.on_packet_alone(&r, &syslog_from("10.0.0.9", 100));
        st.on_clock(&r, Nanos::from_secs(150), |_| true, &mut |s| got.push(s));
        st.on_packet_alone(&r, &syslog_from("10.0.0.9", 155));
        st.on_clock(&r, Nanos::from_secs(214), |_| true, &mut |s| got.push(s));
        assert!(got.is_empty(), "59 s of silence is not 60");
        st.on_clock(&r, Nanos::from_secs(300), |_| true, &mut |s| got.push(s));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].last_seen, got[0].at), (Some(Nanos::from_secs(155)), Nanos::from_secs(215)));
        st.on_clock(&r, Nanos::from_secs(900), |_| true, &mut |s| got.push(s));
        assert_eq!(got.len(), 1, "one alert per silence");
        st.on_packet_alone(&r, &syslog_from("10.0.0.9", 901));
        st.on_clock(&r, Nanos::from_secs(1000), |_| true, &mut |s| got.push(s));
        assert_eq!(got.len(), 2, "re-armed after being heard again");
    }

    #[test]
    fn a_listed_sender_never_heard_alerts_after_the_timeout_from_the_start() {
        let r = rule("\"10.0.0.1\", \"10.0.0.2\"");
        let mut st = AbsenceState::new(&r);
        let mut got = Vec::new();
        st.on_clock(&r, Nanos::from_secs(1000), |_| true, &mut |s| got.push(s));
        st.on_packet_alone(&r, &syslog_from("10.0.0.2", 1010));
        st.on_packet_alone(&r, &syslog_from("10.0.0.7", 1010)); // not listed: ignored
        st.on_clock(&r, Nanos::from_secs(1065), |_| true, &mut |s| got.push(s));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].key.src, "10.0.0.1".parse::<IpAddress>().unwrap());
        assert_eq!((got[0].last_seen, got[0].at), (None, Nanos::from_secs(1060)));
        assert_eq!(st.stats.keys, 2);
    }
}
