//! Building a breaker with a name, clock, observer or seed.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::machine::{Transitions, WindowClock};
use super::rejected::epoch;
use super::{CircuitBreaker, ExternalPolicy, Shared, nanos};
use crate::clock::{self, Clock};
use crate::config::{BreakerConfig, ConfigError, Window};
use crate::counters::{Counters, Padded};
use crate::observer::{DynObserver, Observer};
use crate::state::{State, Word};
use crate::window::SlidingWindow;

/// The narrowest time-window bucket that is counted on the coarse clock.
const COARSE_BUCKET_MIN: Duration = Duration::from_millis(100);

/// Builds a [`CircuitBreaker`] with a name, clock, observer or seed.
#[must_use = "a builder does nothing until built"]
pub struct BreakerBuilder {
    pub(super) config: BreakerConfig,
    pub(super) name: String,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) observer: Option<Arc<dyn Observer>>,
    pub(super) seed: Option<u64>,
    pub(super) external: Option<Box<dyn ExternalPolicy>>,
}

impl fmt::Debug for BreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl BreakerBuilder {
    /// Names the breaker (events and `Debug` carry the name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The time source (default [`SystemClock`](crate::SystemClock)).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.shared_clock(Arc::new(clock))
    }

    /// A time source shared with other breakers.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Receives the breaker's events.
    pub fn observer(self, observer: impl Observer) -> Self {
        self.shared_observer(Arc::new(observer))
    }

    /// An observer shared with other breakers.
    pub fn shared_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Seeds the open-duration jitter, for reproducible schedules.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Lets a failsafe `FailurePolicy` decide trips too, beside the policies
    /// of the config. It is asked on every outcome under a mutex, as failsafe
    /// does; its open duration, when it gives one, replaces the config's.
    #[cfg(feature = "failsafe")]
    #[cfg_attr(docsrs, doc(cfg(feature = "failsafe")))]
    pub fn failure_policy<P>(mut self, policy: P) -> Self
    where
        P: failsafe::failure_policy::FailurePolicy + Send + 'static,
    {
        self.external = Some(Box::new(crate::failsafe::Adapter(policy)));
        self
    }

    /// Validates the config and builds the breaker, Closed.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the bad field; also when no trip policy at
    /// all is enabled.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.config.validate()?;
        let config = &self.config;
        if config.consecutive_failures.is_none() && !config.uses_window() && self.external.is_none()
        {
            return Err(ConfigError::new(
                "consecutive_failures",
                "no trip policy is enabled: set consecutive_failures, failure_rate or slow_call_rate",
            ));
        }
        let window = config
            .uses_window()
            .then(|| SlidingWindow::new(config.window));
        let slow_threshold_nanos = config
            .slow_call_rate
            .map(|_| nanos(config.slow_call_threshold));
        // Only a slow-call policy needs a call's start; a time window
        // reads the clock when the call ends.
        let clock_in_closed = slow_threshold_nanos.is_some();
        let window_clock = match config.window {
            Window::Time { duration, buckets } if config.uses_window() => {
                // The coarse clock lags by up to a tick (1 to 10 ms): only
                // buckets far wider than that may read it.
                let wide = duration / buckets.max(1) >= COARSE_BUCKET_MIN;
                if self.clock.is_system() && !clock_in_closed && wide {
                    clock::coarse_nanos().map_or(WindowClock::Breaker, WindowClock::Coarse)
                } else {
                    WindowClock::Breaker
                }
            }
            _ => WindowClock::Untimed,
        };
        let epoch = epoch();
        let base = self.clock.now();
        let base_since_epoch = nanos(base.saturating_duration_since(epoch));
        // The timer sleeps on the system clock, so only a breaker on that
        // clock can be driven by it.
        let automatic = config.half_open.automatic && self.clock.is_system();
        let max_wait_nanos = nanos(config.half_open.max_wait);
        let seed = self
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(base));
        Ok(CircuitBreaker {
            shared: Arc::new_cyclic(|me| Shared {
                word: Padded(AtomicU64::new(Word::enter(State::Closed, 0).0)),
                consecutive: Padded(AtomicU32::new(0)),
                counters: Counters::new(),
                open_until: AtomicU64::new(0),
                last_trial_at: AtomicU64::new(0),
                timer_armed: AtomicU64::new(u64::MAX),
                automatic,
                me: me.clone(),
                window,
                window_clock,
                clock_in_closed,
                slow_threshold_nanos,
                max_wait_nanos,
                base,
                base_since_epoch,
                clock: self.clock,
                observer: self.observer.map(DynObserver),
                external: self.external.map(Mutex::new),
                name: self.name.into_boxed_str(),
                transitions: Mutex::new(Transitions {
                    trips_in_a_row: 0,
                    opened_at: None,
                    opens: 0,
                    rng: seed,
                }),
                config: self.config,
            }),
        })
    }
}
