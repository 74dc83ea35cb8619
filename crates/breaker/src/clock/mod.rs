//! Where the breaker gets the time. The state machine has no clock of its
//! own: it asks the injected [`Clock`], and only on paths that need the time
//! (the default Closed path never does).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
mod coarse;

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// A cheaper, coarser reading of the same clock, if the clock has one.
    /// An Open breaker uses it to turn calls away without a precise read
    /// while its deadline is still well ahead; near the deadline it asks
    /// [`now`](Clock::now). The default has none.
    fn coarse(&self) -> Option<CoarseReading> {
        None
    }
}

/// A reading of a coarse clock that runs at the same rate as its precise
/// counterpart but may lag behind it by up to `max_lag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoarseReading {
    nanos: u64,
    max_lag: Duration,
}

impl CoarseReading {
    /// A reading of `nanos` on the coarse timeline, lagging by at most `max_lag`.
    pub fn new(nanos: u64, max_lag: Duration) -> Self {
        Self { nanos, max_lag }
    }

    /// Nanoseconds on the coarse timeline (its origin is arbitrary).
    pub fn nanos(&self) -> u64 {
        self.nanos
    }

    /// The most this reading can lag the precise clock.
    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }
}

/// The operating system's monotonic clock ([`Instant::now`]); on Linux its
/// coarse reading is `CLOCK_MONOTONIC_COARSE`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[inline]
    fn coarse(&self) -> Option<CoarseReading> {
        #[cfg(target_os = "linux")]
        {
            coarse::now().map(|(nanos, lag)| CoarseReading::new(nanos, Duration::from_nanos(lag)))
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// A clock that moves only when told to; clones share the same time.
/// Meant for tests of code that uses a breaker.
///
/// ```
/// use std::time::Duration;
/// use keel_breaker::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let t0 = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - t0, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the present instant.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::AcqRel);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

/// tokio's clock, which stands still under `tokio::time::pause` and moves
/// with `tokio::time::advance`, so breakers can be tested in paused time.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

#[cfg(feature = "tokio")]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}
