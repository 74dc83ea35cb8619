//! The breaker: a state machine over atomics, driven by permits.
//!
//! Hot path (Closed, default policy): `try_acquire` is one load of the state
//! word; a success adds one to a per-thread counter and reads two lines that
//! no one writes while the backend is healthy. Nothing allocates, nothing
//! locks, no shared line is written. Transitions, which are rare, take a
//! mutex so that the work around them (open deadline, window reset,
//! bookkeeping) is never interleaved.

mod builder;
mod machine;
mod permit;
mod rejected;
#[cfg(feature = "tower")]
mod source;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::clock::SystemClock;
use crate::config::{BreakerConfig, ConfigError};
use crate::state::State;
use crate::window::WindowStats;
use permit::Handle;

pub use builder::BreakerBuilder;
pub(crate) use machine::{ExternalPolicy, Shared};
#[cfg(feature = "tower")]
pub(crate) use permit::Ticket;
pub use permit::{OwnedPermit, Permit};
pub use rejected::Rejected;
#[cfg(feature = "tower")]
pub(crate) use source::Source;

/// A circuit breaker. Clones share one breaker; it is `Send + Sync`.
///
/// ```
/// use keel_breaker::{BreakerConfig, CircuitBreaker, State};
///
/// let breaker = CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(2)))?;
/// for _ in 0..2 {
///     let permit = breaker.try_acquire().expect("closed breakers admit");
///     permit.failure();
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert!(rejected.retry_after().is_some());
/// # Ok::<(), keel_breaker::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    pub(crate) shared: Arc<Shared>,
}

/// A snapshot of a breaker for health reporting.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Info {
    /// The current state.
    pub state: State,
    /// Failures in a row in the current Closed period.
    pub consecutive_failures: u32,
    /// The sliding window's counts, when a rate policy is configured.
    pub window: Option<WindowStats>,
    /// When the breaker last opened, while it is Open or HalfOpen.
    pub opened_at: Option<Instant>,
    /// How long until an Open breaker admits a trial call.
    pub retry_after: Option<Duration>,
    /// Calls that reported an outcome (`successes + failures + ignored`).
    pub calls: u64,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls classified as ignored.
    pub ignored: u64,
    /// Admitted calls dropped without an outcome (cancelled futures).
    pub cancelled: u64,
    /// Calls turned away.
    pub rejections: u64,
    /// Times the breaker tripped open.
    pub opens: u64,
}

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing under these locks can leave the data half-updated, so a panic
    // elsewhere while one was held does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CircuitBreaker {
    /// A breaker with this config, the system clock and no observer.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// A builder for a breaker with a name, clock, observer or seed.
    pub fn builder(config: BreakerConfig) -> BreakerBuilder {
        BreakerBuilder {
            config,
            name: String::new(),
            clock: Arc::new(SystemClock),
            observer: None,
            seed: None,
            external: None,
        }
    }

    /// Asks leave to make a call.
    ///
    /// # Errors
    /// [`Rejected`] while Open (with `retry_after`), ForcedOpen, or HalfOpen
    /// with every trial slot taken. An Open breaker whose open duration has
    /// passed moves to HalfOpen here and admits the caller as a trial.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let ticket = self.shared.acquire()?;
        Ok(Permit {
            shared: &self.shared,
            ticket,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), with a permit that owns a
    /// handle to the breaker (for `'static` futures and spawned tasks).
    ///
    /// # Errors
    /// As [`try_acquire`](Self::try_acquire).
    #[inline]
    pub fn try_acquire_owned(&self) -> Result<OwnedPermit, Rejected> {
        let ticket = self.shared.acquire()?;
        Ok(OwnedPermit {
            handle: Some(Handle::Shared(Arc::clone(&self.shared))),
            ticket,
        })
    }

    /// The current state. An Open breaker reports Open until the next call
    /// attempt after its open duration moves it to HalfOpen.
    pub fn state(&self) -> State {
        self.shared.load().state()
    }

    /// The breaker's name (empty unless given one).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The config it was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.config
    }

    /// A snapshot of state and counters.
    pub fn info(&self) -> Info {
        let shared = &self.shared;
        let now = shared.now_nanos();
        let word = shared.load();
        let t = shared.counters.totals();
        let (opened_at, opens) = {
            let tr = lock(&shared.transitions);
            (tr.opened_at, tr.opens)
        };
        let open = word.state() == State::Open;
        Info {
            state: word.state(),
            consecutive_failures: shared.consecutive.load(Ordering::Relaxed),
            window: shared
                .window
                .as_ref()
                .map(|w| w.stats(shared.window_now(now))),
            opened_at: opened_at
                .filter(|_| matches!(word.state(), State::Open | State::HalfOpen))
                .map(|n| shared.base + Duration::from_nanos(n)),
            retry_after: open.then(|| {
                Duration::from_nanos(
                    shared
                        .open_until
                        .load(Ordering::Acquire)
                        .saturating_sub(now),
                )
            }),
            calls: t.successes + t.failures + t.ignored,
            successes: t.successes,
            failures: t.failures,
            ignored: t.ignored,
            cancelled: t.cancelled,
            rejections: t.rejections,
            opens,
        }
    }

    /// Closes the breaker and forgets its history (failure counts, window,
    /// open backoff). Also the way out of ForcedOpen and Disabled.
    pub fn reset(&self) {
        self.shared.force(State::Closed);
    }

    /// Opens the breaker until [`reset`](Self::reset): every call is rejected.
    pub fn force_open(&self) {
        self.shared.force(State::ForcedOpen);
    }

    /// Switches the breaker off until [`reset`](Self::reset): every call is
    /// admitted and none can trip it.
    pub fn disable(&self) {
        self.shared.force(State::Disabled);
    }

    /// When the current open period ends, on the breaker's clock; `None`
    /// unless the breaker is Open. With [`handle_timeout`](Self::handle_timeout),
    /// this lets any driver end open periods: the shared timer thread does
    /// (`half_open.automatic`, system clock), a test on a
    /// [`ManualClock`](crate::ManualClock) or a simulation can too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use keel_breaker::{BreakerConfig, CircuitBreaker, Clock, ManualClock, State};
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::builder(
    ///     BreakerConfig::default()
    ///         .with_consecutive_failures(Some(1))
    ///         .with_open_duration(Duration::from_secs(30)),
    /// )
    /// .clock(clock.clone())
    /// .build()?;
    /// breaker.try_acquire().expect("closed").failure();
    /// let deadline = breaker.poll_timeout().expect("open");
    /// assert_eq!(deadline, clock.now() + Duration::from_secs(30));
    /// clock.advance(Duration::from_secs(30));
    /// breaker.handle_timeout(clock.now());
    /// assert_eq!(breaker.state(), State::HalfOpen);
    /// # Ok::<(), keel_breaker::ConfigError>(())
    /// ```
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.shared.poll_timeout()
    }

    /// Ends the open period if `now` (on the breaker's clock) has reached
    /// its deadline: Open moves to HalfOpen. In any other state, or before
    /// the deadline, nothing happens. See [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&self, now: Instant) {
        self.shared.handle_timeout(now);
    }

    /// Ends the open period now: Open moves to HalfOpen and the trial calls
    /// decide, as when the open duration has passed. For a driver that has
    /// learned the backend is back (a probe outside the breaker got a
    /// connection) and need not wait out the open duration. In any other
    /// state nothing happens.
    ///
    /// ```
    /// use keel_breaker::{BreakerConfig, CircuitBreaker, State};
    ///
    /// let breaker = CircuitBreaker::new(BreakerConfig::default().with_consecutive_failures(Some(1)))?;
    /// breaker.try_acquire().expect("closed").failure();
    /// assert_eq!(breaker.state(), State::Open);
    /// breaker.end_open_period();
    /// assert_eq!(breaker.state(), State::HalfOpen);
    /// breaker.try_acquire().expect("a trial call").success();
    /// assert_eq!(breaker.state(), State::Closed);
    /// # Ok::<(), keel_breaker::ConfigError>(())
    /// ```
    pub fn end_open_period(&self) {
        self.shared.end_open_period();
    }

    /// Whether two handles share one breaker.
    pub fn same_breaker(&self, other: &CircuitBreaker) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Default for CircuitBreaker {
    /// A breaker with [`BreakerConfig::default`].
    fn default() -> Self {
        // The default config is valid by construction (a unit test holds it to that).
        #[expect(clippy::expect_used, reason = "the default config is valid")]
        Self::new(BreakerConfig::default()).expect("the default breaker config is valid")
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
