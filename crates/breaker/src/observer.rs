//! The event hook: state transitions and rejections, for telemetry and health.

use std::fmt;
use std::time::Duration;

use crate::State;

/// Something a breaker did that an observer may want to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The breaker moved from one state to another.
    Transition {
        /// The breaker's name (empty when it has none).
        name: &'a str,
        /// The state it left.
        from: State,
        /// The state it entered.
        to: State,
    },
    /// A call was turned away.
    Rejected {
        /// The breaker's name (empty when it has none).
        name: &'a str,
        /// The state that turned it away.
        state: State,
        /// When trying again makes sense, if known.
        retry_after: Option<Duration>,
    },
}

/// Receives a breaker's [`Event`]s. Called synchronously on the thread that
/// caused the event and outside any breaker lock, so it may call back into
/// the breaker; keep it quick.
///
/// Closures `Fn(&Event<'_>)` implement it:
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker, Event};
///
/// let breaker = CircuitBreaker::builder(BreakerConfig::default())
///     .name("orders-db")
///     .observer(|event: &Event<'_>| {
///         if let Event::Transition { name, from, to } = event {
///             eprintln!("breaker {name}: {from:?} -> {to:?}");
///         }
///     })
///     .build()?;
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
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

/// Both observers, in order: how telemetry and health watch one component.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn on_event(&self, event: &Event<'_>) {
        self.0.on_event(event);
        self.1.on_event(event);
    }
}

/// A boxed observer with a Debug that does not try to print the closure.
pub(crate) struct DynObserver(pub(crate) std::sync::Arc<dyn Observer>);

impl fmt::Debug for DynObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
