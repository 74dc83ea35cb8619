//! Live status pushed by a component, so the report changes at once rather
//! than at the next check run.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use crate::registry::Shared;
use crate::sync::lock;
use crate::{Outcome, Status};

/// A status a component sets itself, as things happen: a breaker's
/// observer sets Unhealthy the moment it opens (see [`Signal`]'s breaker
/// observer under the `breaker` feature), and readiness answers 503 on the
/// next probe, without waiting for a check interval. Register it with
/// [`HealthRegistryBuilder::signal`](crate::HealthRegistryBuilder::signal);
/// clones share one status.
///
/// ```
/// use keel_health::{Outcome, Signal, Status};
///
/// let consumer = Signal::new();
/// consumer.set(Outcome::unhealthy("the broker closed the connection"));
/// assert_eq!(consumer.status(), Status::Unhealthy);
/// ```
#[derive(Clone)]
pub struct Signal {
    inner: Arc<Inner>,
}

struct Inner {
    /// Mirrors `state.outcome.status()`, for probes that only need it.
    status: AtomicU8,
    state: Mutex<State>,
    /// Registries to tell, with the signal's index in each.
    listeners: Mutex<Vec<(Weak<Shared>, usize)>>,
}

pub(crate) struct State {
    pub(crate) outcome: Outcome,
    pub(crate) since: SystemTime,
}

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("status", &self.status())
            .finish()
    }
}

impl Signal {
    /// A signal that starts Healthy.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                status: AtomicU8::new(Status::Healthy.to_u8()),
                state: Mutex::new(State {
                    outcome: Outcome::healthy(),
                    since: SystemTime::now(),
                }),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Sets the status (and the message and details that explain it).
    /// Registries that hold this signal recompute their overall status
    /// before this returns.
    pub fn set(&self, outcome: impl Into<Outcome>) {
        let outcome = outcome.into();
        let status = outcome.status();
        let message = outcome.message().map(str::to_owned);
        let old = {
            let mut state = lock(&self.inner.state);
            let old = self.inner.status.swap(status.to_u8(), Ordering::AcqRel);
            if old != status.to_u8() {
                state.since = SystemTime::now();
            }
            state.outcome = outcome;
            old
        };
        if old == status.to_u8() {
            return;
        }
        let listeners: Vec<_> = lock(&self.inner.listeners).clone();
        for (registry, index) in listeners {
            if let Some(registry) = registry.upgrade() {
                registry.signal_changed(index, Status::from_u8(old), status, message.as_deref());
            }
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        Status::from_u8(self.inner.status.load(Ordering::Acquire)).unwrap_or(Status::Unhealthy)
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&lock(&self.inner.state))
    }

    pub(crate) fn listen(&self, registry: Weak<Shared>, index: usize) {
        let mut listeners = lock(&self.inner.listeners);
        listeners.retain(|(r, _)| r.strong_count() > 0);
        listeners.push((registry, index));
    }
}
