//! Events the pool publishes for telemetry and health. None is emitted on
//! the hot path (a checkout that finds an idle connection at once).

use std::error::Error;
use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crate::error::Phase;

/// Why the pool closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The backend said it is broken, or its state is unknown.
    Broken,
    /// Validation or reset failed.
    Invalid,
    /// It reached its maximum lifetime.
    Lifetime,
    /// It stayed idle longer than the idle timeout.
    Idle,
    /// `evict_all()` retired its generation.
    Evicted,
    /// The pool shrank (`resize`) or closed.
    Shrunk,
}

impl CloseReason {
    /// Every reason, in the order [`ClosedCounts`](crate::ClosedCounts) lists them.
    pub const ALL: [Self; 6] = [
        Self::Broken,
        Self::Invalid,
        Self::Lifetime,
        Self::Idle,
        Self::Evicted,
        Self::Shrunk,
    ];

    /// The reason's name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Invalid => "invalid",
            Self::Lifetime => "lifetime",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::Shrunk => "shrunk",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Something that happened in a pool.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A connection was opened.
    Connected {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// The connection's id within its pool.
        id: u64,
        /// How long connecting took.
        took: Duration,
    },
    /// Opening a connection failed.
    ConnectFailed {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// The backend's error.
        error: &'a (dyn Error + Send + Sync + 'static),
    },
    /// A connection was closed.
    Closed {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// The connection's id within its pool.
        id: u64,
        /// Why.
        reason: CloseReason,
    },
    /// A checkout had to queue for a slot, and got one after `took`.
    Waited {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// How long it waited.
        took: Duration,
    },
    /// A phase timed out.
    TimedOut {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// Which one.
        phase: Phase,
    },
    /// The server was asked to cancel the command an abandoned operation
    /// left running (see [`Pooled::abandon`](crate::Pooled::abandon)).
    Cancelled {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// The connection's id within its pool.
        id: u64,
        /// Why the cancel could not be delivered, if it could not.
        error: Option<&'a (dyn Error + Send + Sync + 'static)>,
    },
    /// A checkout has been held longer than `leak_threshold`.
    LeakSuspected {
        /// The pool's name (empty unless given one).
        name: &'a str,
        /// The connection's id within its pool.
        id: u64,
        /// How long it has been held so far.
        held: Duration,
        /// Where it was checked out.
        acquired_at: &'static Location<'static>,
    },
}

/// Receives a pool's events. Called inline: keep it short and never block.
/// Closures `Fn(&Event)` implement it; [`NoopObserver`] ignores everything.
pub trait Observer: Send + Sync + 'static {
    /// One event.
    fn on_event(&self, event: &Event<'_>);
}

/// An observer that ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    #[inline]
    fn on_event(&self, _event: &Event<'_>) {}
}

impl<F> Observer for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// Both observers, in order: how telemetry and health watch one component.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_event(&self, event: &Event<'_>) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// An observer slot that costs nothing when empty.
#[derive(Default)]
pub(crate) struct Observers(Option<Box<dyn Observer>>);

impl Observers {
    pub(crate) fn new(observer: Option<Box<dyn Observer>>) -> Self {
        Self(observer)
    }

    pub(crate) fn emit(&self, event: &Event<'_>) {
        if let Some(o) = &self.0 {
            o.on_event(event);
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Some(Observer)"
        } else {
            "None"
        })
    }
}
