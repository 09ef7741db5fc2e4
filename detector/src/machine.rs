//! Per-key state machines: a rule compiled from [`StateMachineConfig`], and the per-worker
//! table of keys that runs it.
//!
//! # Semantics
//! - A key with no entry is in the initial state. Entries exist only for keys in a non-initial,
//!   non-terminal state, so memory is proportional to machines in progress.
//! - A packet is an event when one of the rule's event filters matches it; the first matching
//!   event (in configuration order) wins, and packets matching none are ignored.
//! - A valid event moves the key to the transition's target. Reaching a terminal state releases
//!   the key (counted as `terminated`).
//! - An event with no transition from the key's state is an **invalid transition**: it raises
//!   one alert, and the key restarts in the initial state (its entry is released). Restarting —
//!   rather than keeping the old state as the Flink example does — means one stray packet gives
//!   one alert, not an alert for every later event of a machine stuck in a state it can no
//!   longer leave validly; and it makes the outcome of every event depend only on the events
//!   since the last alert, which is what ground truth in tests can state exactly.
//! - **Idle timeout.** A key with no event for `idle_timeout` is released (counted as
//!   `idle_released`): an event at time `t ≥ last + idle_timeout` sees the initial state. The
//!   check happens on the event itself (exact, whatever the timer granularity); a timer wheel
//!   frees idle entries as event time advances so memory stays bounded without traffic from
//!   those keys.
//! - **Capacity.** At most `max_keys` entries per worker; a new key beyond that evicts the entry
//!   scheduled to expire soonest (counted as `evicted`).

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use outpost_decode::{Duration, IpAddress, Nanos, PacketMeta};
use outpost_filter::{DstPort, Filter, PacketClass};

use crate::config::{ConfigError, Severity, SourceText, StateMachineConfig};
use crate::wheel::TimerWheel;

/// No transition (an invalid event) in the transition table.
const INVALID: u16 = u16::MAX;

/// A compiled state-machine rule. Immutable and shared by all workers.
#[derive(Debug, Clone)]
pub struct StateMachine {
    /// Rule name.
    pub name: String,
    /// Description from the configuration.
    pub description: String,
    /// Alert severity.
    pub severity: Severity,
    /// Alert category.
    pub category: String,
    /// MITRE ATT&CK technique id.
    pub mitre: Option<String>,
    /// State names; index 0 is the initial state.
    pub states: Vec<String>,
    /// Whether each state is terminal.
    pub terminal: Vec<bool>,
    /// Event names, in matching order.
    pub events: Vec<String>,
    /// The rule's scope (`filter`): packets outside it are no event.
    scope: Option<Filter>,
    filters: Vec<Filter>,
    /// When every event filter is one `dst port N` primitive of the same transports (the
    /// seed machine: `udp dst port 7001` …): one lookup finds a packet's event.
    port_events: Option<PortEvents>,
    /// `next[state * events.len() + event]`: the target state, or `INVALID`.
    next: Vec<u16>,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Per state: its own timeout, which alerts when exceeded (`state_timeouts`).
    state_timeouts: Vec<Option<Duration>>,
    /// Most keys per worker.
    pub max_keys: usize,
}

/// A state machine's events when each is one `dst port N` filter of the same transports: the
/// event of a packet is the first whose port is its destination port.
#[derive(Clone, Debug)]
struct PortEvents {
    /// The test every event filter shares but for the port.
    test: DstPort,
    /// (port, event) sorted by port; the first event of a port when several name it.
    ports: Vec<(u16, u16)>,
}

impl PortEvents {
    fn of(filters: &[Filter]) -> Option<PortEvents> {
        let tests: Vec<DstPort> = filters.iter().map(Filter::as_dst_port).collect::<Option<_>>()?;
        let test = *tests.first()?;
        if !tests.iter().all(|t| t.same_transports(&test)) {
            return None;
        }
        let mut ports = Vec::with_capacity(tests.len());
        for (i, t) in tests.iter().enumerate() {
            if !ports.iter().any(|&(p, _)| p == t.port) {
                ports.push((t.port, u16::try_from(i).ok()?));
            }
        }
        ports.sort_unstable();
        Some(PortEvents { test, ports })
    }

    /// `Some(event)` as the event filters would decide (`Some(None)`: no event), or `None`
    /// when the transport header was cut short and only the filters can decide.
    #[inline]
    fn event_of(&self, m: &PacketMeta) -> Option<Option<u16>> {
        if !self.test.candidate(m)? {
            return Some(None);
        }
        Some(
            self.ports
                .binary_search_by_key(&m.dst_port, |&(p, _)| p)
                .ok()
                .and_then(|i| self.ports.get(i))
                .map(|&(_, e)| e),
        )
    }
}

/// Splits `FROM --EVENT--> TO`.
fn parse_transition(s: &str) -> Option<(&str, &str, &str)> {
    let (from, rest) = s.split_once("--")?;
    let (event, to) = rest.split_once("-->")?;
    let (from, event, to) = (from.trim(), event.trim(), to.trim());
    let ident = |x: &str| !x.is_empty() && !x.contains(char::is_whitespace) && !x.contains('-');
    (ident(from) && ident(event) && ident(to)).then_some((from, event, to))
}

impl StateMachine {
    /// Compiles one rule. `key` is the rule's configuration path for messages
    /// (`rules.state_machine[0]`).
    ///
    /// # Errors
    /// A [`ConfigError`] at the offending value: a bad filter, a malformed or duplicate
    /// transition, an unknown event, a terminal state with transitions out of it, too many
    /// states or events.
    pub fn compile(
        cfg: &StateMachineConfig,
        src: &SourceText,
        key: &str,
    ) -> Result<StateMachine, ConfigError> {
        let err = |span: std::ops::Range<usize>, k: String, m: String| src.error(span, k, m);
        let name = cfg.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(err(cfg.name.span(), format!("{key}.name"), "a rule needs a name".into()));
        }
        if cfg.events.is_empty() {
            return Err(src.error(cfg.name.span(), format!("{key}.events"), "a state machine needs events"));
        }
        if cfg.key != crate::config::KeyField::SrcIp {
            return Err(src.error(
                cfg.name.span(),
                format!("{key}.key"),
                "state machines are kept per `src_ip`",
            ));
        }
        if cfg.idle_timeout.0 == Duration::ZERO {
            return Err(src.error(
                cfg.name.span(),
                format!("{key}.idle_timeout"),
                "must be longer than zero",
            ));
        }
        if cfg.max_keys == 0 {
            return Err(src.error(cfg.name.span(), format!("{key}.max_keys"), "must be at least 1"));
        }

        let scope = match &cfg.filter {
            Some(f) => Some(Filter::parse(f.get_ref()).map_err(|e| {
                err(f.span(), format!("{key}.filter"), format!("bad filter expression: {e}"))
            })?),
            None => None,
        };
        let mut events = Vec::with_capacity(cfg.events.len());
        let mut filters = Vec::with_capacity(cfg.events.len());
        for (i, ev) in cfg.events.iter().enumerate() {
            let ev_name = ev.name.get_ref().trim().to_string();
            if ev_name.is_empty() || ev_name.contains(char::is_whitespace) || ev_name.contains('-') {
                return Err(err(
                    ev.name.span(),
                    format!("{key}.events[{i}].name"),
                    format!("event name `{ev_name}` must be one word without `-`"),
                ));
            }
            if events.contains(&ev_name) {
                return Err(err(
                    ev.name.span(),
                    format!("{key}.events[{i}].name"),
                    format!("event `{ev_name}` is declared twice"),
                ));
            }
            let filter = Filter::parse(ev.filter.get_ref()).map_err(|e| {
                err(
                    ev.filter.span(),
                    format!("{key}.events[{i}].filter"),
                    format!("bad filter expression: {e}"),
                )
            })?;
            events.push(ev_name);
            filters.push(filter);
        }

        let initial = cfg.initial.get_ref().trim().to_string();
        let mut states = vec![initial.clone()];
        let mut triples = Vec::with_capacity(cfg.transitions.len());
        for (i, t) in cfg.transitions.iter().enumerate() {
            let k = format!("{key}.transitions[{i}]");
            let Some((from, ev, to)) = parse_transition(t.get_ref()) else {
                return Err(err(
                    t.span(),
                    k,
                    format!("`{}` is not of the form `FROM --EVENT--> TO`", t.get_ref()),
                ));
            };
            let Some(e) = events.iter().position(|x| x == ev) else {
                return Err(err(t.span(), k, format!("event `{ev}` is not declared in `events`")));
            };
            let mut state_index = |s: &str| match states.iter().position(|x| x == s) {
                Some(i) => i,
                None => {
                    states.push(s.to_string());
                    states.len() - 1
                }
            };
            let (f, to_i) = (state_index(from), state_index(to));
            triples.push((f, e, to_i, t.span(), k));
        }
        if states.len() >= usize::from(INVALID) || events.len() >= usize::from(INVALID) {
            return Err(src.error(cfg.name.span(), key.to_string(), "too many states or events"));
        }
        let mut terminal = vec![false; states.len()];
        for (i, t) in cfg.terminal.iter().enumerate() {
            let k = format!("{key}.terminal[{i}]");
            let name = t.get_ref().trim();
            let Some(s) = states.iter().position(|x| x == name) else {
                return Err(err(
                    t.span(),
                    k,
                    format!("terminal state `{name}` is not the target of any transition"),
                ));
            };
            if s == 0 {
                return Err(err(t.span(), k, format!("the initial state `{name}` cannot be terminal")));
            }
            if let Some(slot) = terminal.get_mut(s) {
                *slot = true;
            }
        }
        let n_ev = events.len();
        let mut next = vec![INVALID; states.len() * n_ev];
        for (f, e, to, span, k) in triples {
            if terminal.get(f).copied().unwrap_or(false) {
                return Err(err(span, k, format!("`{}` is terminal: no transition can leave it", states[f])));
            }
            let Some(slot) = next.get_mut(f * n_ev + e) else { continue };
            if *slot != INVALID && usize::from(*slot) != to {
                return Err(err(
                    span,
                    k,
                    format!(
                        "`{} --{}-->` already leads to `{}`: the machine must be deterministic",
                        states[f],
                        events[e],
                        states[usize::from(*slot)]
                    ),
                ));
            }
            // Sizes checked above: indices fit u16.
            *slot = u16::try_from(to).unwrap_or(INVALID);
        }
        let mut state_timeouts = vec![None; states.len()];
        for (state, timeout) in &cfg.state_timeouts {
            let k = format!("{key}.state_timeouts.{}", state.get_ref());
            let Some(i) = states.iter().position(|x| x == state.get_ref().trim()) else {
                return Err(err(
                    state.span(),
                    k,
                    format!("`{}` is not a state of this machine", state.get_ref()),
                ));
            };
            if i == 0 || terminal.get(i).copied().unwrap_or(false) {
                return Err(err(
                    state.span(),
                    k,
                    "the initial and terminal states hold no machine: they cannot time out".into(),
                ));
            }
            if timeout.0 == Duration::ZERO {
                return Err(err(state.span(), k, "must be longer than zero".into()));
            }
            if let Some(slot) = state_timeouts.get_mut(i) {
                *slot = Some(timeout.0);
            }
        }
        Ok(StateMachine {
            name,
            description: cfg.description.clone(),
            severity: cfg.severity,
            category: cfg.category.clone(),
            mitre: cfg.mitre.clone(),
            states,
            terminal,
            events,
            scope,
            port_events: PortEvents::of(&filters),
            filters,
            next,
            idle_timeout: cfg.idle_timeout.0,
            state_timeouts,
            max_keys: cfg.max_keys,
        })
    }

    /// How long a key may stay in `state` without an event, and whether exceeding it alerts
    /// (a state timeout) or silently releases the key (the idle timeout).
    #[inline]
    #[must_use]
    pub fn timeout_of(&self, state: u16) -> (Duration, bool) {
        match self.state_timeouts.get(usize::from(state)).copied().flatten() {
            Some(t) => (t, true),
            None => (self.idle_timeout, false),
        }
    }

    /// The state's own timeout, if it has one.
    #[must_use]
    pub fn state_timeout(&self, state: u16) -> Option<Duration> {
        self.state_timeouts.get(usize::from(state)).copied().flatten()
    }

    /// The shortest timeout of any state (the timer wheel's scale).
    fn shortest_timeout(&self) -> Duration {
        self.state_timeouts.iter().flatten().copied().fold(self.idle_timeout, Duration::min)
    }

    /// The event a packet is, if any: the first event whose filter matches.
    #[inline]
    #[must_use]
    pub fn classify(&self, meta: &PacketMeta) -> Option<u16> {
        self.classify_class(PacketClass::of(meta), meta)
    }

    /// [`StateMachine::classify`] with the packet's class computed by the caller
    /// (`PacketClass::of(meta)`). The event filters run first: for most packets their
    /// class already rules every event out, and the scope's address test is not needed.
    #[inline]
    #[must_use]
    pub fn classify_class(&self, class: PacketClass, meta: &PacketMeta) -> Option<u16> {
        let i = match self.port_events.as_ref().and_then(|p| p.event_of(meta)) {
            Some(decided) => usize::from(decided?),
            // A cut transport header: the filters themselves decide.
            None => self.filters.iter().position(|f| f.matches_class(class, meta))?,
        };
        if self.scope.as_ref().is_some_and(|s| !s.matches_class(class, meta)) {
            return None;
        }
        u16::try_from(i).ok()
    }

    /// False when no packet of `class` can be an event of this machine.
    #[must_use]
    pub fn may_classify(&self, class: PacketClass) -> bool {
        self.scope.as_ref().is_none_or(|s| s.may_match_class(class))
            && self.filters.iter().any(|f| f.may_match_class(class))
    }

    /// False when no IPv4 packet whose source's first octet is `octet` can be one of the
    /// machine's events (its scope's or every event filter's address table rules it out).
    #[must_use]
    pub fn may_classify_v4_source_octet(&self, octet: u8) -> bool {
        self.scope.as_ref().is_none_or(|s| s.may_match_v4_source_octet(octet))
            && self.filters.iter().any(|f| f.may_match_v4_source_octet(octet))
    }

    /// The state `event` leads to from `state`, or `None` for an invalid transition.
    #[inline]
    #[must_use]
    pub fn next(&self, state: u16, event: u16) -> Option<u16> {
        let i = usize::from(state) * self.events.len() + usize::from(event);
        self.next.get(i).copied().filter(|&s| s != INVALID)
    }

    /// True for terminal states.
    #[inline]
    #[must_use]
    pub fn is_terminal(&self, state: u16) -> bool {
        self.terminal.get(usize::from(state)).copied().unwrap_or(false)
    }

    /// Name of a state.
    #[must_use]
    pub fn state_name(&self, state: u16) -> &str {
        self.states.get(usize::from(state)).map_or("?", String::as_str)
    }

    /// Name of an event.
    #[must_use]
    pub fn event_name(&self, event: u16) -> &str {
        self.events.get(usize::from(event)).map_or("?", String::as_str)
    }

    /// The events valid in `state`, in configuration order.
    pub fn expected(&self, state: u16) -> impl Iterator<Item = &str> + '_ {
        (0..self.events.len()).filter_map(move |e| {
            let e16 = u16::try_from(e).ok()?;
            self.next(state, e16).map(|_| self.event_name(e16))
        })
    }

    /// The filter expression of an event.
    #[must_use]
    pub fn event_filter(&self, event: u16) -> Option<&Filter> {
        self.filters.get(usize::from(event))
    }
}

/// A key's machine in progress.
#[derive(Debug, Clone, Copy)]
struct KeyState {
    state: u16,
    generation: u32,
    /// Events seen since the machine (re)started.
    events: u32,
    /// Time of the last event.
    last: Nanos,
    /// Time the machine started (its first event after the initial state).
    started: Nanos,
}

/// Counters of one state-machine rule on one worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MachineStats {
    /// Packets that were one of the rule's events.
    pub events: u64,
    /// Valid transitions taken.
    pub transitions: u64,
    /// Invalid transitions (each raised one alert).
    pub invalid: u64,
    /// Machines that reached a terminal state.
    pub terminated: u64,
    /// Machines released after the idle timeout.
    pub idle_released: u64,
    /// Machines that stayed in a state past its own timeout (each raised one alert).
    pub timed_out: u64,
    /// Machines evicted because the key table was full.
    pub evicted: u64,
    /// Keys held now.
    pub keys: u64,
    /// Most keys held at once.
    pub peak_keys: u64,
}

impl MachineStats {
    /// Adds another worker's counters (`keys` and `peak_keys` add up: workers hold disjoint
    /// keys).
    pub fn merge(&mut self, o: &MachineStats) {
        self.events += o.events;
        self.transitions += o.transitions;
        self.invalid += o.invalid;
        self.terminated += o.terminated;
        self.idle_released += o.idle_released;
        self.timed_out += o.timed_out;
        self.evicted += o.evicted;
        self.keys += o.keys;
        self.peak_keys += o.peak_keys;
    }
}

/// An invalid transition found by a [`MachineRunner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    /// The key's state before the event.
    pub state: u16,
    /// The event.
    pub event: u16,
    /// Events the machine had taken since it started (0 in the initial state).
    pub events_before: u32,
    /// When the machine started (the event time of its first event), if it had.
    pub started: Option<Nanos>,
}

/// A machine that stayed in a state past the state's own timeout, found by a
/// [`MachineRunner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTimeout {
    /// The key.
    pub key: IpAddress,
    /// The state it stayed in.
    pub state: u16,
    /// When its timeout ran out: its last event plus the state's timeout (event time, the
    /// same whether a clock tick or the key's next event noticed it).
    pub at: Nanos,
    /// Events the machine had taken since it started.
    pub events_before: u32,
    /// When the machine started.
    pub started: Nanos,
}

/// What an event did to a key, decided under one hash lookup.
enum Outcome {
    /// A valid transition to `next`; `insert` when a fresh entry must be created for it.
    Valid { next: u16, insert: bool },
    /// No transition from `state`.
    Invalid { state: u16, current: Option<KeyState> },
}

/// One worker's keys for one state-machine rule.
#[derive(Debug)]
pub struct MachineRunner {
    keys: HashMap<IpAddress, KeyState, crate::hashing::TableHasher>,
    wheel: TimerWheel<IpAddress>,
    next_generation: u32,
    max_keys: usize,
    /// Counters.
    pub stats: MachineStats,
}

impl MachineRunner {
    /// Empty state for `rule`.
    #[must_use]
    pub fn new(rule: &StateMachine) -> MachineRunner {
        MachineRunner {
            keys: HashMap::with_hasher(crate::hashing::TableHasher::default()),
            wheel: TimerWheel::for_timeout(rule.shortest_timeout()),
            next_generation: 0,
            max_keys: rule.max_keys,
            stats: MachineStats::default(),
        }
    }

    /// Applies `event` for `key` at time `ts`. Returns the invalid transition, if it was one.
    /// A machine whose state timed out before `ts` (no clock tick came in between to notice)
    /// is reported to `timed_out` first, and the event starts a fresh machine.
    #[inline]
    pub fn on_event(
        &mut self,
        rule: &StateMachine,
        key: IpAddress,
        event: u16,
        ts: Nanos,
        timed_out: &mut impl FnMut(StateTimeout),
    ) -> Option<InvalidTransition> {
        self.stats.events += 1;
        // One hash lookup per event: the entry is read, updated or removed in place.
        let outcome = match self.keys.entry(key) {
            Entry::Occupied(mut o) => {
                let k = *o.get();
                let (timeout, alerts) = rule.timeout_of(k.state);
                let current = if ts >= k.last && ts.since(k.last) >= timeout {
                    // Past the timeout: released now, exactly, whatever the wheel did.
                    if alerts {
                        self.stats.timed_out += 1;
                        timed_out(StateTimeout {
                            key,
                            state: k.state,
                            at: k.last.saturating_add(timeout),
                            events_before: k.events,
                            started: k.started,
                        });
                    } else {
                        self.stats.idle_released += 1;
                    }
                    None
                } else {
                    Some(k)
                };
                let state = current.map_or(0, |k| k.state);
                match rule.next(state, event) {
                    Some(next) if current.is_some() && next != 0 && !rule.is_terminal(next) => {
                        let e = o.get_mut();
                        if next != e.state && rule.state_timeout(next).is_some() {
                            // The new state may be due before the key's wheel entry: a fresh
                            // entry (a new generation retires the old one).
                            self.next_generation = self.next_generation.wrapping_add(1);
                            e.generation = self.next_generation;
                            self.wheel.schedule(
                                key,
                                e.generation,
                                ts.saturating_add(rule.timeout_of(next).0),
                            );
                        }
                        e.state = next;
                        e.last = ts;
                        e.events = k.events.saturating_add(1);
                        Outcome::Valid { next, insert: false }
                    }
                    next => {
                        // Invalid, terminal, back to the initial state, or idle-released:
                        // the entry goes (a fresh machine is inserted below if needed).
                        o.remove();
                        match next {
                            Some(next) => Outcome::Valid { next, insert: current.is_none() },
                            None => Outcome::Invalid { state, current },
                        }
                    }
                }
            }
            Entry::Vacant(_) => match rule.next(0, event) {
                Some(next) => Outcome::Valid { next, insert: true },
                None => Outcome::Invalid { state: 0, current: None },
            },
        };
        let result = match outcome {
            Outcome::Invalid { state, current } => {
                self.stats.invalid += 1;
                Some(InvalidTransition {
                    state,
                    event,
                    events_before: current.map_or(0, |k| k.events),
                    started: current.map(|k| k.started),
                })
            }
            Outcome::Valid { next, insert, .. } => {
                self.stats.transitions += 1;
                if rule.is_terminal(next) {
                    self.stats.terminated += 1;
                } else if insert && next != 0 {
                    self.insert(
                        rule,
                        key,
                        KeyState { state: next, generation: 0, events: 1, last: ts, started: ts },
                    );
                }
                None
            }
        };
        self.stats.keys = self.keys.len() as u64;
        result
    }

    fn insert(&mut self, rule: &StateMachine, key: IpAddress, mut entry: KeyState) {
        while self.keys.len() >= self.max_keys {
            let Some((k, generation)) = self.wheel.pop_earliest() else { break };
            if self.keys.get(&k).is_some_and(|e| e.generation == generation) {
                self.keys.remove(&k);
                self.stats.evicted += 1;
            }
        }
        // Keys that left (invalid, terminal, back to the initial state) leave their wheel
        // entries behind: drop those once they outnumber the live keys.
        if self.wheel.len() > 2 * self.keys.len().max(1024) {
            let keys = &self.keys;
            self.wheel.retain(|k, g| keys.get(k).is_some_and(|e| e.generation == g));
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        entry.generation = self.next_generation;
        self.wheel.schedule(key, entry.generation, entry.last.saturating_add(rule.timeout_of(entry.state).0));
        self.keys.insert(key, entry);
        self.stats.peak_keys = self.stats.peak_keys.max(self.keys.len() as u64);
    }

    /// Releases keys idle for the timeout as of `now`, and reports to `timed_out` the keys
    /// whose state's own timeout ran out (releasing them too).
    pub fn expire(&mut self, rule: &StateMachine, now: Nanos, timed_out: &mut impl FnMut(StateTimeout)) {
        let (keys, stats) = (&mut self.keys, &mut self.stats);
        self.wheel.advance(now, |key, generation| {
            let entry = keys.get(&key)?;
            if entry.generation != generation {
                return None;
            }
            let (timeout, alerts) = rule.timeout_of(entry.state);
            let deadline = entry.last.saturating_add(timeout);
            if deadline > now {
                return Some(deadline);
            }
            let e = keys.remove(&key)?;
            if alerts {
                stats.timed_out += 1;
                timed_out(StateTimeout {
                    key,
                    state: e.state,
                    at: deadline,
                    events_before: e.events,
                    started: e.started,
                });
            } else {
                stats.idle_released += 1;
            }
            None
        });
        self.stats.keys = self.keys.len() as u64;
    }

    /// End of input at `now`: reports every machine whose state's own timeout ran out by
    /// `now` that the timer wheel has not reached yet (its slot had not ended). O(keys), once.
    pub fn finish(&mut self, rule: &StateMachine, now: Nanos, timed_out: &mut impl FnMut(StateTimeout)) {
        let mut due: Vec<(IpAddress, KeyState, Nanos)> = self
            .keys
            .iter()
            .filter_map(|(k, e)| {
                let (timeout, alerts) = rule.timeout_of(e.state);
                let deadline = e.last.saturating_add(timeout);
                (alerts && deadline <= now).then_some((*k, *e, deadline))
            })
            .collect();
        due.sort_unstable_by_key(|d| (d.2, d.0));
        for (key, e, at) in due {
            self.keys.remove(&key);
            self.stats.timed_out += 1;
            timed_out(StateTimeout { key, state: e.state, at, events_before: e.events, started: e.started });
        }
        self.stats.keys = self.keys.len() as u64;
    }

    /// The state of `key` (0, the initial state, when it has no entry).
    #[must_use]
    pub fn state_of(&self, key: &IpAddress) -> u16 {
        self.keys.get(key).map_or(0, |k| k.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RulesConfig;
    use std::net::IpAddr;

    const SEED: &str = r#"
[[state_machine]]
name = "seed"
terminal = ["TERM"]
idle_timeout = "60s"
max_keys = 4
events = [
  { name = "a", filter = "udp dst port 7001" },
  { name = "b", filter = "udp dst port 7002" },
  { name = "c", filter = "udp dst port 7003" },
  { name = "d", filter = "udp dst port 7004" },
  { name = "e", filter = "udp dst port 7005" },
  { name = "f", filter = "udp dst port 7006" },
  { name = "g", filter = "udp dst port 7007" },
]
transitions = [
  "INITIAL --a--> W", "INITIAL --c--> X", "W --b--> Y", "X --b--> Y", "X --d--> Z",
  "Y --e--> Z", "Z --f--> Z", "Z --g--> TERM",
]
"#;

    fn compile(text: &str) -> Result<StateMachine, ConfigError> {
        let src = SourceText::new("t.toml", text);
        let cfg: RulesConfig = src.parse()?;
        StateMachine::compile(&cfg.state_machine[0], &src, "state_machine[0]")
    }

    fn seed() -> StateMachine {
        compile(SEED).expect("seed machine compiles")
    }

    fn packet(src: &str, dport: u16, secs: u64) -> PacketMeta {
        let s: IpAddr = src.parse().unwrap();
        let frame = outpost_tools::frame::FrameBuilder::new(
            s,
            "192.168.1.10".parse().unwrap(),
            outpost_tools::frame::udp(40000, dport),
        )
        .build();
        let len = u32::try_from(frame.len()).unwrap();
        outpost_decode::decode(outpost_decode::LinkType::Ethernet, &frame, Nanos::from_secs(secs), len)
            .unwrap()
    }

    /// Feeds `(event letter, second)` pairs for one source; returns the invalid transitions as
    /// (state name, event name).
    fn run(
        m: &StateMachine,
        r: &mut MachineRunner,
        src: &str,
        events: &[(char, u64)],
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &(e, t) in events {
            let port = 7001 + u16::from(e as u8 - b'a');
            let p = packet(src, port, t);
            let ev = m.classify(&p).expect("an event packet");
            if let Some(bad) =
                r.on_event(m, p.src, ev, p.ts, &mut |t| panic!("no state timeouts here: {t:?}"))
            {
                out.push((m.state_name(bad.state).to_string(), m.event_name(bad.event).to_string()));
            }
        }
        out
    }

    #[test]
    fn port_events_classify_as_the_event_filters_do() {
        let fast = seed();
        assert!(fast.port_events.is_some(), "the seed machine's events are one port each");
        // The same events written so that no port table applies: the filters decide.
        let slow = compile(&SEED.replace("udp dst port 700", "udp and dst port 700")).expect("compiles");
        assert!(slow.port_events.is_none());
        let frame = |t| {
            outpost_tools::frame::FrameBuilder::new(
                "10.0.0.1".parse().unwrap(),
                "192.168.1.10".parse().unwrap(),
                t,
            )
            .build()
        };
        let decode = |f: &[u8], wire: usize| {
            let wire = u32::try_from(wire).unwrap();
            outpost_decode::decode(outpost_decode::LinkType::Ethernet, f, Nanos(0), wire).unwrap()
        };
        // Cut after the IPv4 header: the UDP header is missing.
        let udp = frame(outpost_tools::frame::udp(40000, 7001));
        let cut = decode(&udp[..14 + 20], udp.len());
        let syn = frame(outpost_tools::frame::tcp(40000, 7001, 0x02, 1, 0));
        let tcp = decode(&syn, syn.len());
        let mut packets: Vec<PacketMeta> = (6990..7020).map(|port| packet("10.0.0.1", port, 1)).collect();
        packets.extend([cut, tcp]);
        for p in &packets {
            assert_eq!(fast.classify(p), slow.classify(p), "port {} ({:?})", p.dst_port, p.transport);
        }
        assert_eq!(fast.classify(&packet("10.0.0.1", 7004, 1)), Some(3));
    }

    #[test]
    fn valid_walks_raise_nothing_and_term_releases_the_source() {
        let m = seed();
        let mut r = MachineRunner::new(&m);
        let walk = [('a', 1), ('b', 2), ('e', 3), ('f', 4), ('f', 5), ('g', 6)];
        assert!(run(&m, &mut r, "10.0.0.1", &walk).is_empty());
        assert_eq!(r.stats.keys, 0, "TERM releases the state");
        assert_eq!(r.stats.terminated, 1);
        let walk = [('c', 7), ('b', 8), ('e', 9), ('g', 10)];
        assert!(run(&m, &mut r, "10.0.0.1", &walk).is_empty(), "the source starts over after TERM");
        let walk = [('c', 11), ('d', 12), ('g', 13)];
        assert!(run(&m, &mut r, "10.0.0.2", &walk).is_empty());
    }

    #[test]
    fn in_initial_only_a_and_c_are_valid() {
        let m = seed();
        for bad in ['b', 'd', 'e', 'f', 'g'] {
            let mut r = MachineRunner::new(&m);
            assert_eq!(run(&m, &mut r, "10.0.0.1", &[(bad, 1)]), vec![("INITIAL".into(), bad.to_string())]);
            assert_eq!(r.stats.keys, 0);
        }
        assert_eq!(m.expected(0).collect::<Vec<_>>(), vec!["a", "c"]);
    }

    #[test]
    fn in_w_only_b_is_valid() {
        let m = seed();
        for bad in ['a', 'c', 'd', 'e', 'f', 'g'] {
            let mut r = MachineRunner::new(&m);
            assert_eq!(
                run(&m, &mut r, "10.0.0.1", &[('a', 1), (bad, 2)]),
                vec![("W".into(), bad.to_string())]
            );
        }
    }

    #[test]
    fn in_x_b_and_d_are_valid() {
        let m = seed();
        for bad in ['a', 'c', 'e', 'f', 'g'] {
            let mut r = MachineRunner::new(&m);
            assert_eq!(
                run(&m, &mut r, "10.0.0.1", &[('c', 1), (bad, 2)]),
                vec![("X".into(), bad.to_string())]
            );
        }
    }

    #[test]
    fn in_y_only_e_is_valid() {
        let m = seed();
        for bad in ['a', 'b', 'c', 'd', 'f', 'g'] {
            let mut r = MachineRunner::new(&m);
            let got = run(&m, &mut r, "10.0.0.1", &[('a', 1), ('b', 2), (bad, 3)]);
            assert_eq!(got, vec![("Y".into(), bad.to_string())]);
        }
    }

    #[test]
    fn in_z_f_and_g_are_valid() {
        let m = seed();
        for bad in ['a', 'b', 'c', 'd', 'e'] {
            let mut r = MachineRunner::new(&m);
            let got = run(&m, &mut r, "10.0.0.1", &[('c', 1), ('d', 2), ('f', 3), (bad, 4)]);
            assert_eq!(got, vec![("Z".into(), bad.to_string())]);
        }
    }

    #[test]
    fn alerts_once_per_invalid_transition_and_restarts_at_initial() {
        let m = seed();
        let mut r = MachineRunner::new(&m);
        // W --e--> invalid: one alert, then `a` is valid again from INITIAL, and so is the
        // rest of a fresh walk.
        let got = run(&m, &mut r, "10.0.0.1", &[('a', 1), ('e', 2), ('a', 3), ('b', 4), ('e', 5), ('g', 6)]);
        assert_eq!(got, vec![("W".into(), "e".into())]);
        assert_eq!((r.stats.invalid, r.stats.terminated, r.stats.keys), (1, 1, 0));
    }

    #[test]
    fn idle_sources_are_released_exactly_at_the_timeout() {
        let m = seed();
        let mut r = MachineRunner::new(&m);
        // 59 s gap: still in W, `b` is valid.
        assert!(run(&m, &mut r, "10.0.0.1", &[('a', 100), ('b', 159)]).is_empty());
        // Exactly 60 s after the last event: released, so `e` meets INITIAL.
        assert_eq!(run(&m, &mut r, "10.0.0.1", &[('e', 219)]), vec![("INITIAL".into(), "e".into())]);
        assert_eq!(r.stats.idle_released, 1);
    }

    #[test]
    fn the_timer_wheel_frees_idle_state_without_traffic_from_it() {
        let m = seed();
        let mut r = MachineRunner::new(&m);
        assert!(run(&m, &mut r, "10.0.0.1", &[('a', 10)]).is_empty());
        assert!(run(&m, &mut r, "10.0.0.2", &[('c', 40)]).is_empty());
        let none = &mut |t: StateTimeout| panic!("no state timeouts here: {t:?}");
        r.expire(&m, Nanos::from_secs(69), none);
        assert_eq!(r.stats.keys, 2);
        r.expire(&m, Nanos::from_secs(75), none);
        assert_eq!((r.stats.keys, r.stats.idle_released), (1, 1));
        assert_eq!(r.state_of(&"10.0.0.2".parse().unwrap()), 2, "X is still held");
        r.expire(&m, Nanos::from_secs(200), none);
        assert_eq!((r.stats.keys, r.stats.idle_released), (0, 2));
    }

    /// The seed machine with state timeouts: W must see `b` within 5 s, Z its next event
    /// within 10 s.
    fn timed() -> StateMachine {
        compile(&SEED.replace(
            "idle_timeout = \"60s\"",
            "idle_timeout = \"60s\"\nstate_timeouts = { W = \"5s\", Z = \"10s\" }",
        ))
        .expect("timed machine compiles")
    }

    /// A timeout seen by a test: (source, state name, at second).
    type Timeout = (String, String, u64);

    /// Feeds events and ticks (`'.'` = a clock tick at that second); returns the timeouts as
    /// (source, state name, at second) and the invalid transitions as (state, event).
    fn run_timed(
        m: &StateMachine,
        r: &mut MachineRunner,
        src: &str,
        steps: &[(char, u64)],
    ) -> (Vec<Timeout>, Vec<(String, String)>) {
        let (mut timeouts, mut invalid) = (Vec::new(), Vec::new());
        for &(e, t) in steps {
            let mut note = |x: StateTimeout| {
                timeouts.push((x.key.to_string(), m.state_name(x.state).to_string(), x.at.0 / 1_000_000_000));
            };
            if e == '.' {
                r.expire(m, Nanos::from_secs(t), &mut note);
                continue;
            }
            let p = packet(src, 7001 + u16::from(e as u8 - b'a'), t);
            let ev = m.classify(&p).expect("an event packet");
            if let Some(bad) = r.on_event(m, p.src, ev, p.ts, &mut note) {
                invalid.push((m.state_name(bad.state).to_string(), m.event_name(bad.event).to_string()));
            }
        }
        (timeouts, invalid)
    }

    #[test]
    fn a_state_timeout_alerts_once_at_its_deadline_and_restarts_the_machine() {
        let m = timed();
        assert_eq!(m.timeout_of(1), (Duration::from_secs(5), true), "W");
        assert_eq!(m.timeout_of(0), (Duration::from_secs(60), false), "INITIAL keeps the idle timeout");
        // Noticed by a clock tick: at W's deadline (event at 100 s + 5 s), not at the tick.
        let mut r = MachineRunner::new(&m);
        let (t, bad) = run_timed(&m, &mut r, "10.0.0.1", &[('a', 100), ('.', 104), ('.', 130), ('.', 200)]);
        assert_eq!(t, vec![("10.0.0.1".into(), "W".into(), 105)]);
        assert!(bad.is_empty());
        assert_eq!((r.stats.timed_out, r.stats.idle_released, r.stats.keys), (1, 0, 0));
        // Noticed by the next event (no tick in between): the same alert, and the event starts
        // a fresh machine from INITIAL (`a` is valid there).
        let mut r = MachineRunner::new(&m);
        let (t, bad) = run_timed(&m, &mut r, "10.0.0.1", &[('a', 100), ('a', 130), ('b', 131)]);
        assert_eq!(t, vec![("10.0.0.1".into(), "W".into(), 105)]);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(r.state_of(&"10.0.0.1".parse().unwrap()), 3, "in Y after a, b");
        // In time: nothing; Y has no timeout of its own, so only the idle timeout applies.
        let mut r = MachineRunner::new(&m);
        let (t, _) = run_timed(&m, &mut r, "10.0.0.1", &[('a', 100), ('b', 104), ('.', 150), ('.', 170)]);
        assert!(t.is_empty(), "{t:?}");
        assert_eq!(r.stats.idle_released, 1);
    }

    #[test]
    fn entering_a_timed_state_late_in_a_machine_is_judged_from_its_entry() {
        let m = timed();
        let mut r = MachineRunner::new(&m);
        // X (idle 60 s) at 100, Z (10 s) at 150: due at 160, although the key's first wheel
        // entry was for 160 too late to matter; a self-loop f at 158 pushes it to 168.
        let steps = [('c', 100), ('d', 150), ('f', 158), ('.', 165), ('.', 169), ('.', 300)];
        let (t, bad) = run_timed(&m, &mut r, "10.0.0.7", &steps);
        assert_eq!(t, vec![("10.0.0.7".into(), "Z".into(), 168)]);
        assert!(bad.is_empty());
        // At the end of input the finish catches a timeout whose wheel slot has not ended.
        let mut r = MachineRunner::new(&m);
        let (by_tick, _) = run_timed(&m, &mut r, "10.0.0.8", &[('a', 100), ('.', 104)]);
        assert!(by_tick.is_empty());
        let mut got = Vec::new();
        r.finish(&m, Nanos::from_secs(105), &mut |x| got.push(x.at));
        assert_eq!(got, vec![Nanos::from_secs(105)], "due exactly at the end of input");
        assert_eq!((r.stats.timed_out, r.stats.keys), (1, 0));
        r.finish(&m, Nanos::from_secs(200), &mut |x| got.push(x.at));
        assert_eq!(got.len(), 1, "once");
    }

    #[test]
    fn state_timeouts_are_checked() {
        let with =
            |t: &str| {
                compile(&SEED.replace(
                    "idle_timeout = \"60s\"",
                    &format!("idle_timeout = \"60s\"\nstate_timeouts = {t}"),
                ))
            };
        let e = with("{ Q = \"5s\" }").unwrap_err();
        assert!(e.to_string().contains("state_timeouts.Q") && e.to_string().contains("not a state"), "{e}");
        let e = with("{ INITIAL = \"5s\" }").unwrap_err();
        assert!(e.to_string().contains("cannot time out"), "{e}");
        let e = with("{ TERM = \"5s\" }").unwrap_err();
        assert!(e.to_string().contains("cannot time out"), "{e}");
        let e = with("{ W = \"0s\" }").unwrap_err();
        assert!(e.to_string().contains("longer than zero"), "{e}");
    }

    #[test]
    fn a_full_table_evicts_the_oldest_entry() {
        let m = seed(); // max_keys = 4
        let mut r = MachineRunner::new(&m);
        for (i, t) in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)] {
            assert!(run(&m, &mut r, &format!("10.0.0.{i}"), &[('a', t)]).is_empty());
        }
        assert_eq!((r.stats.keys, r.stats.evicted, r.stats.peak_keys), (4, 1, 4));
        assert_eq!(r.state_of(&"10.0.0.1".parse().unwrap()), 0, "the oldest was evicted");
        assert_ne!(r.state_of(&"10.0.0.5".parse().unwrap()), 0);
    }

    #[test]
    fn the_timer_wheel_stays_proportional_to_live_keys_under_churn() {
        let m = seed();
        let mut r = MachineRunner::new(&m);
        // One source alternating a valid first event and an invalid one: each `a` inserts a
        // key, each `e` removes it.
        for i in 0..100_000u64 {
            let ev = if i % 2 == 0 { 'a' } else { 'e' };
            run(&m, &mut r, "10.0.0.1", &[(ev, 1 + i / 1000)]);
        }
        assert!(
            r.wheel.len() <= 2 * 1024 + 1,
            "wheel holds {} entries for {} keys",
            r.wheel.len(),
            r.stats.keys
        );
    }

    #[test]
    fn packets_that_are_no_event_are_ignored() {
        let m = seed();
        assert_eq!(m.classify(&packet("10.0.0.1", 53, 1)), None);
        assert_eq!(m.classify(&packet("10.0.0.1", 7008, 1)), None);
        assert_eq!(m.classify(&packet("10.0.0.1", 7007, 1)), Some(6));
    }

    #[test]
    fn bad_machines_are_rejected_at_the_offending_line() {
        let with = |transitions: &str, terminal: &str| {
            SEED.replace("terminal = [\"TERM\"]", terminal)
                .replace("\"Y --e--> Z\", \"Z --f--> Z\", \"Z --g--> TERM\",", transitions)
        };
        let e = compile(&with(
            "\"Y --e--> Z\", \"Z --f--> Z\", \"Z --g--> TERM\", \"Z --f--> Y\",",
            "terminal = [\"TERM\"]",
        ))
        .expect_err("nondeterministic");
        assert!(e.message.contains("must be deterministic"), "{e}");
        assert_eq!(e.line, 18, "{e}");
        let e = compile(&with(
            "\"Y --e--> Z\", \"Z --f--> Z\", \"Z --g--> TERM\", \"TERM --a--> W\",",
            "terminal = [\"TERM\"]",
        ))
        .expect_err("leaves terminal");
        assert!(e.message.contains("is terminal"), "{e}");
        let e = compile(&with("\"Y --e--> Z\", \"Z --f--> Z\", \"Z --g-> TERM\",", "terminal = [\"TERM\"]"))
            .expect_err("malformed");
        assert!(e.message.contains("FROM --EVENT--> TO"), "{e}");
        assert_eq!(e.key, "state_machine[0].transitions[7]");
        let e = compile(&with("\"Y --e--> Z\", \"Z --f--> Z\", \"Z --g--> TERM\",", "terminal = [\"END\"]"))
            .expect_err("unknown terminal");
        assert!(e.message.contains("`END`"), "{e}");
        let e = compile(&SEED.replace("udp dst port 7004", "udp dst port 70000")).expect_err("bad filter");
        assert_eq!(e.key, "state_machine[0].events[3].filter");
        assert_eq!(e.line, 11);
    }
}
