//! The event hook: what a store did, for telemetry.

use std::fmt;
use std::sync::Arc;

/// Something a store did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session was created.
    Created,
    /// A session was deleted on request.
    Deleted,
    /// Sessions past their TTL were removed (by a sweep, or found on write).
    Expired {
        /// How many.
        count: usize,
    },
    /// A compare-and-swap update lost to a newer version.
    Conflict,
    /// What a disk backend occupies, reported after each cleanup.
    SizeOnDisk {
        /// Bytes.
        bytes: u64,
    },
}

/// Receives a store's [`Event`]s, synchronously; keep it quick.
/// Closures `Fn(&Event)` implement it.
pub trait Observer: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &Event);
}

impl<F> Observer for F
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event) {
        self(event);
    }
}

/// An optional shared observer with a Debug that does not print the closure.
#[derive(Clone, Default)]
pub(crate) struct Events(Option<Arc<dyn Observer>>);

impl Events {
    pub(crate) fn new(observer: impl Observer) -> Self {
        Self(Some(Arc::new(observer)))
    }

    #[inline]
    pub(crate) fn emit(&self, event: Event) {
        if let Some(observer) = &self.0 {
            observer.on_event(&event);
        }
    }
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Observer" } else { "None" })
    }
}
