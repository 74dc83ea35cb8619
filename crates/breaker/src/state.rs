//! The breaker's states and the packed word that holds the current one.

use serde::{Deserialize, Serialize};

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted.
    Closed,
    /// Calls are rejected until the open duration has passed.
    Open,
    /// A limited number of trial calls probe the backend.
    HalfOpen,
    /// Opened by hand ([`force_open`](crate::CircuitBreaker::force_open)):
    /// rejects everything until [`reset`](crate::CircuitBreaker::reset).
    ForcedOpen,
    /// Switched off by hand ([`disable`](crate::CircuitBreaker::disable)):
    /// admits everything and never trips until
    /// [`reset`](crate::CircuitBreaker::reset).
    Disabled,
}

impl State {
    /// A lower-case name, as in metrics labels: `closed`, `half_open`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    fn tag(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }
}

const TAG_BITS: u32 = 3;
const COUNT_BITS: u32 = 14;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const IN_FLIGHT_SHIFT: u32 = TAG_BITS;
const SUCCESS_SHIFT: u32 = TAG_BITS + COUNT_BITS;
const GEN_SHIFT: u32 = TAG_BITS + 2 * COUNT_BITS;

/// One atomic word: state tag, half-open trials in flight, half-open
/// successes, and a generation that every transition bumps. Permits carry the
/// generation they were issued in, so a verdict that arrives after the state
/// moved on is never applied to the new state; and half-open admission is a
/// single compare-and-swap, which is what keeps it exact under contention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    /// The first word of a new state, with fresh counters.
    pub(crate) fn enter(state: State, generation: u64) -> Self {
        Word(state.tag() | (generation << GEN_SHIFT))
    }

    pub(crate) fn state(self) -> State {
        match self.0 & ((1 << TAG_BITS) - 1) {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }

    pub(crate) fn is_closed(self) -> bool {
        self.0 & ((1 << TAG_BITS) - 1) == 0
    }

    pub(crate) fn generation(self) -> u64 {
        self.0 >> GEN_SHIFT
    }

    pub(crate) fn in_flight(self) -> u32 {
        ((self.0 >> IN_FLIGHT_SHIFT) & COUNT_MASK) as u32
    }

    pub(crate) fn successes(self) -> u32 {
        ((self.0 >> SUCCESS_SHIFT) & COUNT_MASK) as u32
    }

    /// The word of the next state: generation + 1, counters cleared.
    pub(crate) fn next(self, state: State) -> Self {
        Self::enter(
            state,
            self.generation().wrapping_add(1) & (u64::MAX >> GEN_SHIFT),
        )
    }

    pub(crate) fn with_in_flight(self, n: u32) -> Self {
        let cleared = self.0 & !(COUNT_MASK << IN_FLIGHT_SHIFT);
        Word(cleared | ((u64::from(n) & COUNT_MASK) << IN_FLIGHT_SHIFT))
    }

    pub(crate) fn with_successes(self, n: u32) -> Self {
        let cleared = self.0 & !(COUNT_MASK << SUCCESS_SHIFT);
        Word(cleared | ((u64::from(n) & COUNT_MASK) << SUCCESS_SHIFT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let w = Word::enter(State::HalfOpen, 12345)
            .with_in_flight(16383)
            .with_successes(7);
        assert_eq!(w.state(), State::HalfOpen);
        assert_eq!(w.generation(), 12345);
        assert_eq!(w.in_flight(), 16383);
        assert_eq!(w.successes(), 7);
        let n = w.next(State::Closed);
        assert!(n.is_closed());
        assert_eq!(
            (n.generation(), n.in_flight(), n.successes()),
            (12346, 0, 0)
        );
    }

    #[test]
    fn generation_wraps_without_touching_the_tag() {
        let w = Word::enter(State::Open, u64::MAX >> GEN_SHIFT);
        let n = w.next(State::HalfOpen);
        assert_eq!(n.generation(), 0);
        assert_eq!(n.state(), State::HalfOpen);
    }
}
