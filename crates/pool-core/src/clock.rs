//! The pool's coarse clock: milliseconds since the pool was built, read
//! with one relaxed load on the hot path. Maintenance refreshes it every
//! tick and slow paths refresh it as they pass, so it lags real time by at
//! most a tick. It follows tokio's clock, so tests can pause time.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct PoolClock {
    origin: Instant,
    now_ms: AtomicU64,
}

impl PoolClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
        }
    }

    /// The last refreshed reading.
    #[inline]
    pub(crate) fn coarse(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// Reads the precise clock and publishes the reading.
    pub(crate) fn refresh(&self) -> u64 {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_max(ms, Ordering::Relaxed);
        ms
    }
}

/// Whole milliseconds of a duration, saturating.
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn coarse_moves_only_on_refresh() {
        let clock = PoolClock::new();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.coarse(), 0);
        assert_eq!(clock.refresh(), 1500);
        assert_eq!(clock.coarse(), 1500);
    }
}
