//! Building a store: what every backend takes besides its own config (a
//! clock, an observer, a name), set the same way for each.

use std::fmt;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::StoreConfig;
use crate::observer::{Events, Observer};

/// Builds a store: `MemoryStore::builder(config)` or
/// `SledStore::builder(sled, config)`, then any of [`clock`](Self::clock),
/// [`observer`](Self::observer) and [`name`](Self::name), then `build()`.
/// `B` is the backend's own config (`()` for the memory store).
///
/// ```
/// use keel_session_store::{Event, ManualClock, MemoryStore, StoreConfig};
///
/// let store = MemoryStore::builder(StoreConfig::default())
///     .name("web-sessions")
///     .clock(ManualClock::at(0))
///     .observer(|e: &Event<'_>| eprintln!("{e:?}"))
///     .build()?;
/// assert_eq!(store.name(), "web-sessions");
/// # Ok::<(), keel_session_store::StoreError>(())
/// ```
#[must_use = "a builder does nothing until built"]
pub struct StoreBuilder<B> {
    pub(crate) backend: B,
    pub(crate) config: StoreConfig,
    pub(crate) clock: Arc<dyn Clock>,
    observer: Option<Arc<dyn Observer>>,
    name: String,
}

impl<B> StoreBuilder<B> {
    pub(crate) fn new(backend: B, config: StoreConfig) -> Self {
        Self {
            backend,
            config,
            clock: Arc::new(SystemClock),
            observer: None,
            name: String::new(),
        }
    }

    /// The time source (default [`SystemClock`]; a
    /// [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sends the store's events to `observer`.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Names the store: its events carry the name, so that metrics and logs
    /// can tell stores apart (default empty).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The event hook the store keeps.
    pub(crate) fn events(&self) -> Events {
        Events::new(Arc::from(self.name.as_str()), self.observer.clone())
    }
}

impl<B: fmt::Debug> fmt::Debug for StoreBuilder<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("backend", &self.backend)
            .field("config", &self.config)
            .field("name", &self.name)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}
