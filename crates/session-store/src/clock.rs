//! Wall-clock time for expiry (sessions outlive processes, so expiry is
//! measured on the calendar, not on a monotonic clock).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of wall-clock time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now_millis(&self) -> u64;
}

/// The system's wall clock. On Linux it is read coarsely: the time of the
/// kernel's last tick (behind by at most one tick, 1 to 10 ms, never
/// ahead), a read of a few ns where the precise clock takes tens, on every
/// store operation. Sessions then expire at most a tick late, never early.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

/// A shared clock is a clock (one [`ManualClock`] can drive several stores,
/// or every node of an in-process raft cluster).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_millis(&self) -> u64 {
        (**self).now_millis()
    }
}

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        since_epoch().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn since_epoch() -> Option<Duration> {
    use rustix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::RealtimeCoarse);
    let secs = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn since_epoch() -> Option<Duration> {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).ok()
}

/// A clock that moves only when told to; clones share the time. For tests.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `millis` since the epoch.
    pub fn at(millis: u64) -> Self {
        Self(Arc::new(AtomicU64::new(millis)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
