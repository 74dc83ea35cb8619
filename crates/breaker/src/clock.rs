//! Where the breaker gets the time. The state machine has no clock of its
//! own: it asks the injected [`Clock`], and only on paths that need the time
//! (the default Closed path never does, nor does a rejection while Open on
//! the system clock, see [`HalfOpenConfig::automatic`](crate::HalfOpenConfig::automatic)).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// Whether this is the operating system's monotonic clock, on which
    /// [`Instant::now`] runs. Only such a breaker can have the shared timer
    /// thread, which sleeps on that clock, end its open periods. The default
    /// says no.
    fn is_system(&self) -> bool {
        false
    }
}

/// The operating system's monotonic clock ([`Instant::now`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn is_system(&self) -> bool {
        true
    }
}

/// The kernel's monotonic clock as of its last tick, in nanoseconds: behind
/// by at most one tick (1 to 10 ms), a read of a few ns where [`Instant::now`]
/// takes tens. Enough for a time window, whose buckets are far wider.
/// `None` where the platform has no such clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn coarse_nanos() -> Option<u64> {
    use rustix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::MonotonicCoarse);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// The kernel's coarse monotonic clock: none on this platform.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn coarse_nanos() -> Option<u64> {
    None
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
