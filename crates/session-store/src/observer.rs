//! The event hook: what a store did, for telemetry.

use std::fmt;
use std::sync::Arc;

/// Something a store did. Each event carries the store's name (empty
/// unless given one), so one observer can serve several stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A session was created.
    Created {
        /// The store's name.
        name: &'a str,
    },
    /// A session was deleted on request.
    Deleted {
        /// The store's name.
        name: &'a str,
    },
    /// Sessions past their TTL were removed (by a sweep, or found on write).
    Expired {
        /// The store's name.
        name: &'a str,
        /// How many.
        count: usize,
    },
    /// A compare-and-swap update lost to a newer version.
    Conflict {
        /// The store's name.
        name: &'a str,
    },
    /// The tower-sessions adapter dropped a save of a session the store
    /// no longer holds (see `SaveMissing`); `name` is the adapter's.
    SaveDropped {
        /// The adapter's name.
        name: &'a str,
    },
    /// What a disk backend occupies, reported after each cleanup.
    SizeOnDisk {
        /// The store's name.
        name: &'a str,
        /// Bytes.
        bytes: u64,
    },
}

/// Receives a store's [`Event`]s, synchronously; keep it quick.
/// Closures `Fn(&Event)` implement it; [`NoopObserver`] ignores everything.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event<'_>);
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

/// An observer that ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    #[inline]
    fn on_event(&self, _event: &Event<'_>) {}
}

/// A store's name and its optional shared observer, with a Debug that does
/// not print the closure.
#[derive(Clone, Default)]
pub(crate) struct Events {
    observer: Option<Arc<dyn Observer>>,
    name: Arc<str>,
}

impl Events {
    pub(crate) fn new(name: Arc<str>, observer: Option<Arc<dyn Observer>>) -> Self {
        Self { observer, name }
    }

    /// The store's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Builds the event only when someone listens.
    #[inline]
    pub(crate) fn emit(&self, event: impl for<'n> FnOnce(&'n str) -> Event<'n>) {
        if let Some(observer) = &self.observer {
            observer.on_event(&event(&self.name));
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("name", &self.name)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}
