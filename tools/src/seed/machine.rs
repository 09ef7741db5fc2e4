//! The seed scenario's state machine: states, events, the transition table and the event
//! probabilities of Apache Flink's `StateMachineExample` (`flink-examples-streaming`), extended
//! with a self-loop `Z --f--> Z`.
//!
//! ```text
//! INITIAL --a (0.6)--> W        W --b (1.0)--> Y
//! INITIAL --c (0.4)--> X        Y --e (1.0)--> Z
//! X --b (0.2)--> Y              Z --f (f_prob)--> Z
//! X --d (0.8)--> Z              Z --g (1 - f_prob)--> TERM
//! ```
//!
//! Every other (state, event) pair is an invalid transition. This table is the single source
//! of truth for the generator; tests re-derive it independently.

use serde::{Deserialize, Serialize};

/// A live state of a client's machine. `TERM` is not a state: reaching it releases the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// The start state; also the state after an invalid transition and after a release.
    #[serde(rename = "INITIAL")]
    Initial,
    /// Reached by `a` from INITIAL.
    W,
    /// Reached by `c` from INITIAL.
    X,
    /// Reached by `b` from W or X.
    Y,
    /// Reached by `d` from X, `e` from Y, `f` from Z.
    Z,
}

impl State {
    /// Every state, in declaration order.
    pub const ALL: [State; 5] = [State::Initial, State::W, State::X, State::Y, State::Z];

    /// The name used in truth files and alerts: `INITIAL`, `W`, `X`, `Y`, `Z`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            State::Initial => "INITIAL",
            State::W => "W",
            State::X => "X",
            State::Y => "Y",
            State::Z => "Z",
        }
    }

    /// Index into [`State::ALL`].
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One of the seven events `a`..`g`; on the wire, a UDP datagram to port `7000 + n`
/// (`a` = 7001 … `g` = 7007).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// Port 7001.
    A,
    /// Port 7002.
    B,
    /// Port 7003.
    C,
    /// Port 7004.
    D,
    /// Port 7005.
    E,
    /// Port 7006.
    F,
    /// Port 7007.
    G,
}

/// UDP destination port of event `a`; event `n` (0-based) uses `EVENT_PORT_BASE + n`.
pub const EVENT_PORT_BASE: u16 = 7001;

/// The UDP destination ports that carry events, `7001..=7007`. Nothing else the generator
/// writes (noise included) uses these ports with UDP.
pub const EVENT_PORTS: std::ops::RangeInclusive<u16> = 7001..=7007;

impl Event {
    /// Every event, `a` to `g`.
    pub const ALL: [Event; 7] = [Event::A, Event::B, Event::C, Event::D, Event::E, Event::F, Event::G];

    /// The lowercase letter, `'a'`..`'g'`.
    #[must_use]
    pub const fn letter(self) -> char {
        (b'a' + self as u8) as char
    }

    /// The UDP destination port that carries this event (`a` = 7001 … `g` = 7007).
    #[must_use]
    pub const fn port(self) -> u16 {
        EVENT_PORT_BASE + self as u16
    }

    /// The event carried by UDP destination port `port`, if it is one of 7001..=7007.
    #[must_use]
    pub const fn from_port(port: u16) -> Option<Event> {
        match port {
            7001 => Some(Event::A),
            7002 => Some(Event::B),
            7003 => Some(Event::C),
            7004 => Some(Event::D),
            7005 => Some(Event::E),
            7006 => Some(Event::F),
            7007 => Some(Event::G),
            _ => None,
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// The outcome of applying an event to a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// A valid transition to this state.
    To(State),
    /// A valid transition to TERM: the client's state is released.
    Terminal,
    /// Not allowed in this state. The detector alerts and restarts the source at INITIAL.
    Invalid,
}

/// The transition table (see the module docs).
#[must_use]
pub const fn transition(state: State, event: Event) -> Transition {
    match (state, event) {
        (State::Initial, Event::A) => Transition::To(State::W),
        (State::Initial, Event::C) => Transition::To(State::X),
        (State::W | State::X, Event::B) => Transition::To(State::Y),
        (State::X, Event::D) | (State::Y, Event::E) | (State::Z, Event::F) => Transition::To(State::Z),
        (State::Z, Event::G) => Transition::Terminal,
        _ => Transition::Invalid,
    }
}

/// The events that are invalid in `state`, in letter order.
#[must_use]
pub fn invalid_events(state: State) -> Vec<Event> {
    Event::ALL.into_iter().filter(|&e| transition(state, e) == Transition::Invalid).collect()
}

/// Draws a valid event for `state` with the Flink example's probabilities, given a uniform
/// `u` in `[0, 1)`: INITIAL `a` 0.6 / `c` 0.4; W `b`; X `b` 0.2 / `d` 0.8; Y `e`;
/// Z `f` with probability `f_prob`, else `g`.
#[must_use]
pub fn valid_event(state: State, u: f64, f_prob: f64) -> Event {
    match state {
        State::Initial => {
            if u < 0.6 {
                Event::A
            } else {
                Event::C
            }
        }
        State::W => Event::B,
        State::X => {
            if u < 0.2 {
                Event::B
            } else {
                Event::D
            }
        }
        State::Y => Event::E,
        State::Z => {
            if u < f_prob {
                Event::F
            } else {
                Event::G
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_from(state: State) -> Vec<(Event, Transition)> {
        Event::ALL
            .into_iter()
            .map(|e| (e, transition(state, e)))
            .filter(|(_, t)| *t != Transition::Invalid)
            .collect()
    }

    mod initial {
        use super::*;

        #[test]
        fn a_goes_to_w_and_c_to_x_and_nothing_else_is_valid() {
            assert_eq!(
                valid_from(State::Initial),
                vec![(Event::A, Transition::To(State::W)), (Event::C, Transition::To(State::X))]
            );
            assert_eq!(
                invalid_events(State::Initial),
                vec![Event::B, Event::D, Event::E, Event::F, Event::G]
            );
        }

        #[test]
        fn draws_a_below_0_6_and_c_above() {
            assert_eq!(valid_event(State::Initial, 0.0, 0.5), Event::A);
            assert_eq!(valid_event(State::Initial, 0.599, 0.5), Event::A);
            assert_eq!(valid_event(State::Initial, 0.6, 0.5), Event::C);
        }
    }

    mod w {
        use super::*;

        #[test]
        fn only_b_is_valid() {
            assert_eq!(valid_from(State::W), vec![(Event::B, Transition::To(State::Y))]);
            assert_eq!(valid_event(State::W, 0.99, 0.5), Event::B);
        }
    }

    mod x {
        use super::*;

        #[test]
        fn b_goes_to_y_and_d_to_z() {
            assert_eq!(
                valid_from(State::X),
                vec![(Event::B, Transition::To(State::Y)), (Event::D, Transition::To(State::Z))]
            );
            assert_eq!(valid_event(State::X, 0.1, 0.5), Event::B);
            assert_eq!(valid_event(State::X, 0.2, 0.5), Event::D);
        }
    }

    mod y {
        use super::*;

        #[test]
        fn only_e_is_valid() {
            assert_eq!(valid_from(State::Y), vec![(Event::E, Transition::To(State::Z))]);
        }
    }

    mod z {
        use super::*;

        #[test]
        fn f_loops_and_g_terminates() {
            assert_eq!(
                valid_from(State::Z),
                vec![(Event::F, Transition::To(State::Z)), (Event::G, Transition::Terminal)]
            );
            assert_eq!(valid_event(State::Z, 0.3, 0.5), Event::F);
            assert_eq!(valid_event(State::Z, 0.5, 0.5), Event::G);
            assert_eq!(valid_event(State::Z, 0.0, 0.0), Event::G, "f_prob 0 always terminates");
        }
    }

    #[test]
    fn ports_and_letters_round_trip() {
        for (i, e) in Event::ALL.into_iter().enumerate() {
            assert_eq!(e.port(), 7001 + i as u16);
            assert_eq!(Event::from_port(e.port()), Some(e));
            assert!(EVENT_PORTS.contains(&e.port()));
        }
        assert_eq!(Event::G.letter(), 'g');
        assert_eq!(Event::from_port(7000), None);
        assert_eq!(Event::from_port(7008), None);
    }

    #[test]
    fn names_serialize_as_in_truth_files() {
        assert_eq!(serde_json::to_string(&State::Initial).unwrap(), "\"INITIAL\"");
        assert_eq!(serde_json::to_string(&State::Z).unwrap(), "\"Z\"");
        assert_eq!(serde_json::to_string(&Event::E).unwrap(), "\"e\"");
        assert_eq!(serde_json::from_str::<State>("\"W\"").unwrap(), State::W);
        for s in State::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
