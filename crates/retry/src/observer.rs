//! The event hook: failed attempts, scheduled retries, giving up.

use std::fmt;
use std::time::Duration;

use crate::classify::ErrorClass;
use crate::error::GaveUp;

/// Something a retrier did that an observer may want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Attempt `attempt` (1-based) failed; `class` is `None` for errors that
    /// will not be retried.
    AttemptFailed {
        /// Which attempt.
        attempt: u32,
        /// The class the classifier gave, if transient.
        class: Option<ErrorClass>,
    },
    /// Attempt `attempt + 1` will start after `delay`.
    RetryScheduled {
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next one.
        delay: Duration,
    },
    /// The retry budget refused a retry.
    BudgetExhausted {
        /// The attempt that failed.
        attempt: u32,
    },
    /// No more attempts; the error goes back to the caller.
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Why.
        reason: GaveUp,
    },
}

/// Receives a retrier's [`Event`]s, synchronously; keep it quick.
/// Closures `Fn(&Event)` implement it; [`NoopObserver`] ignores everything.
/// Events carry no name: a retrier serves any number of calls, and an
/// observer that labels them is given to the retrier it labels.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}

/// An observer that ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    #[inline]
    fn on_event(&self, _event: &Event) {}
}

impl<F> Observer for F
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event) {
        self(event);
    }
}

/// Both observers, in order: how telemetry and health watch one component.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_event(&self, event: &Event) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// A shared observer with a Debug that does not try to print the closure.
#[derive(Clone)]
pub(crate) struct SharedObserver(pub(crate) std::sync::Arc<dyn Observer>);

impl fmt::Debug for SharedObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
