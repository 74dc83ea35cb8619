//! Status changes as events, for logs and telemetry.

use std::fmt;

use crate::Status;

/// Where an entry's status comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// A check the registry runs on its interval.
    Check,
    /// A [`Signal`](crate::Signal) pushed by the component itself (a breaker's
    /// observer), reported at once.
    Signal,
}

impl Source {
    /// `"check"` or `"signal"`, as the JSON report shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Check => "check",
            Self::Signal => "signal",
        }
    }
}

/// A status change in a [`HealthRegistry`](crate::HealthRegistry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// One check's or signal's status changed.
    Changed {
        /// Its name in the registry.
        name: &'a str,
        /// A check or a signal.
        source: Source,
        /// The status before (`None`: it had no result yet).
        from: Option<Status>,
        /// The status now.
        to: Status,
        /// Why, if it said.
        message: Option<&'a str>,
    },
    /// The overall status changed.
    OverallChanged {
        /// Before.
        from: Status,
        /// Now.
        to: Status,
        /// The entry that decides it now (`None` when all are healthy).
        decided_by: Option<&'a str>,
    },
    /// [`drain`](crate::HealthRegistry::drain) was called: readiness answers
    /// 503 from now on.
    Draining,
}

/// Receives a registry's [`Event`]s, synchronously; keep it quick.
/// Closures `Fn(&Event)` implement it; [`NoopObserver`] ignores everything.
/// The registry also logs every change through `tracing`.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<'_>);
}

/// Ignores every event.
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

/// Both observers, in order.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_event(&self, event: &Event<'_>) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// A boxed observer with a Debug that does not try to print the closure.
pub(crate) struct DynObserver(pub(crate) Box<dyn Observer>);

impl fmt::Debug for DynObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
