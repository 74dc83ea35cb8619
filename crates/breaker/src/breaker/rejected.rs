//! Why a call was turned away, and when to come back.

use std::fmt;
use std::time::{Duration, Instant};

use crate::state::{State, Word};

/// Why a call was turned away.
// Two plain words, like `Ticket`: a rejection travels through memory, and a
// narrow field read back as part of a wider load stalls store forwarding on
// every rejection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// The state's word tag, and the [`Retry`] kind << 8.
    tag: u64,
    /// The [`Retry`] value.
    nanos: u64,
}

/// When a rejected caller may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    Unknown,
    After(Duration),
    /// Nanoseconds past [`epoch`] on the system clock: the time left is
    /// worked out only if asked, so that the rejection reads no clock.
    At(u64),
}

/// The origin of [`Retry::At`]: taken before any breaker's base, so that
/// every system-clock base is at or after it.
pub(super) fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Rejected {
    #[inline(always)]
    pub(super) fn new(state: State, retry: Retry) -> Self {
        let (kind, nanos) = match retry {
            Retry::Unknown => (0, 0),
            Retry::After(after) => (1, super::nanos(after)),
            Retry::At(at) => (2, at),
        };
        Self {
            tag: Word::enter(state, 0).0 | kind << 8,
            nanos,
        }
    }

    /// The rejection as a tower service keeps it between `poll_ready` and
    /// `call`: an even, non-zero word beside a ticket's odd ones
    /// ([`Ticket::reserve`](super::Ticket::reserve)), and the value.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn reserve(self) -> (u64, u64) {
        (self.tag << 2 | 2, self.nanos)
    }

    /// The rejection [`reserve`](Self::reserve) kept.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn reserved(word: u64, nanos: u64) -> Self {
        Self {
            tag: word >> 2,
            nanos,
        }
    }

    fn retry(&self) -> Retry {
        match self.tag >> 8 {
            1 => Retry::After(Duration::from_nanos(self.nanos)),
            2 => Retry::At(self.nanos),
            _ => Retry::Unknown,
        }
    }

    /// The state that turned the call away: `Open`, `HalfOpen` (all trial
    /// slots busy) or `ForcedOpen`.
    pub fn state(&self) -> State {
        Word(self.tag & 0xff).state()
    }

    /// How long until the breaker will admit a trial call, when known
    /// (an Open breaker knows; a half-open or forced-open one does not).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.retry() {
            Retry::Unknown => None,
            Retry::After(after) => Some(after),
            Retry::At(at) => epoch()
                .checked_add(Duration::from_nanos(at))
                .map(|at| at.saturating_duration_since(Instant::now())),
        }
    }
}

impl fmt::Debug for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("state", &self.state())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state() {
            State::HalfOpen => {
                f.write_str("circuit breaker is half-open and its trial calls are busy")
            }
            State::ForcedOpen => f.write_str("circuit breaker is forced open"),
            state => {
                write!(f, "circuit breaker is {}", state.as_str())?;
                if let Some(after) = self.retry_after() {
                    write!(f, "; retry after {after:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Rejected {}
