//! Counters behind [`Pool::stats`](crate::Pool::stats). The hot path bumps
//! one striped counter; everything else is counted on slow paths only.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::error::Phase;
use crate::observer::CloseReason;

/// Buckets of the acquire-wait histogram: bucket 0 holds checkouts that did
/// not queue; bucket `i` holds waits in `[2^(i-1), 2^i)` microseconds; the
/// last is open-ended (about 35 minutes and more).
pub const WAIT_BUCKETS: usize = 32;

/// A snapshot of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open connections: idle, in use and closing. Never above
    /// `max_size + max_overflow`, also while connections close.
    pub size: usize,
    /// Idle connections.
    pub idle: usize,
    /// Connections checked out (`size - idle - closing`).
    pub in_use: usize,
    /// Connections being opened, for a checkout or to keep `min_idle`; not
    /// in `size` until they are open, but each holds a slot meanwhile.
    pub connecting: usize,
    /// Connections being closed gracefully; in `size` until they are gone.
    pub closing: usize,
    /// Checkouts queued for a slot.
    pub waiters: usize,
    /// The current `max_size` (after [`resize`](crate::Pool::resize)).
    pub max_size: usize,
    /// Connections in use beyond `max_size`.
    pub overflow_in_use: usize,
    /// Connections opened since the pool was built.
    pub created: u64,
    /// Connections closed since the pool was built, by reason.
    pub closed: ClosedCounts,
    /// Timeouts by phase.
    pub timeouts: TimeoutCounts,
    /// How long checkouts waited for a slot.
    pub wait: WaitHistogram,
}

/// Closed connections by [`CloseReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedCounts {
    /// [`CloseReason::Broken`].
    pub broken: u64,
    /// [`CloseReason::Invalid`].
    pub invalid: u64,
    /// [`CloseReason::Lifetime`].
    pub lifetime: u64,
    /// [`CloseReason::Idle`].
    pub idle: u64,
    /// [`CloseReason::Evicted`].
    pub evicted: u64,
    /// [`CloseReason::Shrunk`].
    pub shrunk: u64,
}

impl ClosedCounts {
    /// All closed connections.
    pub fn total(&self) -> u64 {
        self.broken + self.invalid + self.lifetime + self.idle + self.evicted + self.shrunk
    }
}

/// Timeouts by [`Phase`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimeoutCounts {
    /// Waiting for a slot.
    pub wait: u64,
    /// Opening a connection.
    pub connect: u64,
    /// Validating an idle connection.
    pub validate: u64,
    /// Resetting a returned connection.
    pub reset: u64,
    /// Closing a connection.
    pub close: u64,
}

/// A log2 histogram of acquire waits (see [`WAIT_BUCKETS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitHistogram {
    buckets: [u64; WAIT_BUCKETS],
}

impl WaitHistogram {
    /// Counts per bucket.
    pub fn buckets(&self) -> &[u64; WAIT_BUCKETS] {
        &self.buckets
    }

    /// Checkouts recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound of the bucket holding quantile `q` (0..=1), or zero
    /// when nothing was recorded or it fell among checkouts that did not wait.
    pub fn quantile(&self, q: f64) -> Duration {
        let count = self.count();
        if count == 0 {
            return Duration::ZERO;
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a rank within a u64 count; precision loss above 2^53 is irrelevant"
        )]
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_upper(i);
            }
        }
        bucket_upper(WAIT_BUCKETS - 1)
    }
}

fn bucket_upper(i: usize) -> Duration {
    if i == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros(1u64 << i.min(63))
    }
}

fn bucket_of(waited: Duration) -> usize {
    let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
    // 0 µs → 1, [1, 2) → 1, [2, 4) → 2, ...
    let bits = (u64::BITS - micros.leading_zeros()) as usize;
    bits.clamp(1, WAIT_BUCKETS - 1)
}

/// A cache-line-padded counter.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

const STRIPES: usize = 16;

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, 0..16, handed out round-robin on first use.
#[inline]
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

/// The pool's counters.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Checkouts that found a slot at once, striped per thread.
    immediate: [Padded; STRIPES],
    waited: [AtomicU64; WAIT_BUCKETS],
    pub(crate) created: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    timeouts: [AtomicU64; 5],
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            immediate: Default::default(),
            waited: Default::default(),
            created: AtomicU64::new(0),
            closed: Default::default(),
            timeouts: Default::default(),
        }
    }

    #[inline]
    pub(crate) fn immediate(&self) {
        self.immediate[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, took: Duration) {
        self.waited[bucket_of(took)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn timed_out(&self, phase: Phase) {
        let i = match phase {
            Phase::Wait => 0,
            Phase::Connect => 1,
            Phase::Validate => 2,
            Phase::Reset => 3,
            Phase::Close => 4,
        };
        self.timeouts[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed_counts(&self) -> ClosedCounts {
        let c = |r: CloseReason| self.closed[r.index()].load(Ordering::Relaxed);
        ClosedCounts {
            broken: c(CloseReason::Broken),
            invalid: c(CloseReason::Invalid),
            lifetime: c(CloseReason::Lifetime),
            idle: c(CloseReason::Idle),
            evicted: c(CloseReason::Evicted),
            shrunk: c(CloseReason::Shrunk),
        }
    }

    pub(crate) fn timeout_counts(&self) -> TimeoutCounts {
        let t = |i: usize| self.timeouts[i].load(Ordering::Relaxed);
        TimeoutCounts {
            wait: t(0),
            connect: t(1),
            validate: t(2),
            reset: t(3),
            close: t(4),
        }
    }

    pub(crate) fn wait_histogram(&self) -> WaitHistogram {
        let mut buckets = [0; WAIT_BUCKETS];
        for (b, w) in buckets.iter_mut().zip(&self.waited) {
            *b = w.load(Ordering::Relaxed);
        }
        buckets[0] += self
            .immediate
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .sum::<u64>();
        WaitHistogram { buckets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_microseconds() {
        assert_eq!(bucket_of(Duration::ZERO), 1);
        assert_eq!(bucket_of(Duration::from_micros(1)), 1);
        assert_eq!(bucket_of(Duration::from_micros(3)), 2);
        assert_eq!(bucket_of(Duration::from_millis(1)), 10);
        assert_eq!(bucket_of(Duration::from_secs(100_000)), WAIT_BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_buckets() {
        let c = Counters::new();
        for _ in 0..98 {
            c.immediate();
        }
        c.waited(Duration::from_millis(1));
        c.waited(Duration::from_millis(100));
        let h = c.wait_histogram();
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        assert_eq!(h.quantile(0.99), Duration::from_micros(1024));
        assert_eq!(h.quantile(1.0), Duration::from_micros(1 << 17));
    }
}
