//! Lock-free sliding windows for the failure-rate and slow-call-rate policies.
//!
//! Both windows keep their sums exact once concurrent writers have finished;
//! while writers race, a reader may see a call in one count and not yet in
//! another, which can move a ratio by one call at most per racing writer.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Window;
use crate::counters::{Padded, thread_number};

/// Counts the window holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Calls with a verdict (ignored calls are not counted).
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which were slow.
    pub slow: u64,
}

impl WindowStats {
    /// `failures / calls`, or 0 for an empty window.
    pub fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// `slow / calls`, or 0 for an empty window.
    pub fn slow_call_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "window counts stay far below 2^52"
)]
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[derive(Debug)]
pub(crate) enum SlidingWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

impl SlidingWindow {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count { calls } => SlidingWindow::Count(CountWindow::new(calls as usize)),
            Window::Time { duration, buckets } => {
                SlidingWindow::Time(TimeWindow::new(duration, buckets as usize))
            }
        }
    }

    pub(crate) fn record(&self, now_nanos: u64, failed: bool, slow: bool) {
        match self {
            SlidingWindow::Count(w) => w.record(failed, slow),
            SlidingWindow::Time(w) => w.record(now_nanos, failed, slow),
        }
    }

    pub(crate) fn stats(&self, now_nanos: u64) -> WindowStats {
        match self {
            SlidingWindow::Count(w) => w.stats(),
            SlidingWindow::Time(w) => w.stats(now_nanos),
        }
    }

    /// Whether the window may hold a failed or slow call at `now`: when it
    /// cannot, a success cannot make it trip and its sums need no reading
    /// (a time window sums every lane's buckets, lines other cores write). A count
    /// window reads its sums anyway, so it always says yes.
    pub(crate) fn may_hold_bad(&self, now_nanos: u64) -> bool {
        match self {
            SlidingWindow::Count(_) => true,
            SlidingWindow::Time(w) => w.may_hold_bad(now_nanos),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            SlidingWindow::Count(w) => w.reset(),
            SlidingWindow::Time(w) => w.reset(),
        }
    }
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

fn flags(failed: bool, slow: bool) -> u8 {
    RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 }
}

/// The last `n` calls: a ring of outcome slots plus running sums. Each write
/// swaps one slot and adjusts the sums by the difference, so the sums always
/// converge to the slots' contents.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
    slow: AtomicI64,
}

impl CountWindow {
    fn new(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
            slow: AtomicI64::new(0),
        }
    }

    fn apply(&self, old: u8, new: u8) {
        let delta = |bit: u8| i64::from(new & bit != 0) - i64::from(old & bit != 0);
        for (sum, bit) in [
            (&self.calls, RECORDED),
            (&self.failures, FAILED),
            (&self.slow, SLOW),
        ] {
            let d = delta(bit);
            if d != 0 {
                sum.fetch_add(d, Ordering::Relaxed);
            }
        }
    }

    fn record(&self, failed: bool, slow: bool) {
        let len = self.slots.len() as u64;
        let index = (self.cursor.fetch_add(1, Ordering::Relaxed) % len) as usize;
        let new = flags(failed, slow);
        let old = self.slots[index].swap(new, Ordering::Relaxed);
        self.apply(old, new);
    }

    fn stats(&self) -> WindowStats {
        let read = |sum: &AtomicI64| u64::try_from(sum.load(Ordering::Relaxed)).unwrap_or(0);
        WindowStats {
            calls: read(&self.calls),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::Relaxed);
            self.apply(old, 0);
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's slice number plus one (0: never written).
    epoch: AtomicU64,
    calls: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// Buckets that fill two cache lines and share them with nothing else.
const PER_CHUNK: usize = 4;

type Chunk = Padded<[Bucket; PER_CHUNK]>;

/// The calls of the last `duration`, in `n` buckets of `duration / n` each.
/// A writer that finds its bucket holding an older slice claims it with a
/// compare-and-swap and clears it.
///
/// Every call of a breaker that has this window is counted in it, from
/// every core: so each thread writes the buckets of its own lane (lanes
/// on lines of their own; threads past the lanes share them), and a read
/// sums the lanes. One set of buckets made two tasks on two cores cost
/// 150 ns a call through the tower layer, against 60 ns for one task.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    /// Lane `l`'s bucket `i` is in chunk `l * chunks_per_lane + i / 4`.
    chunks: Box<[Chunk]>,
    buckets: usize,
    chunks_per_lane: usize,
    lanes: usize,
    width_nanos: u64,
    /// One past the time of the latest failed or slow call (0: none yet).
    /// Written only by those, so while the backend is healthy every core
    /// keeps the line it sits on.
    last_bad: AtomicU64,
}

/// Lanes: twice the cores (a runtime's workers and the threads around
/// them), between 2 and 16.
fn lane_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .clamp(2, 16)
}

impl TimeWindow {
    fn new(duration: Duration, n: usize) -> Self {
        let n = n.max(1);
        let total = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let chunks_per_lane = n.div_ceil(PER_CHUNK);
        let lanes = lane_count();
        Self {
            chunks: (0..lanes * chunks_per_lane)
                .map(|_| Chunk::default())
                .collect(),
            buckets: n,
            chunks_per_lane,
            lanes,
            width_nanos: (total / n as u64).max(1),
            last_bad: AtomicU64::new(0),
        }
    }

    fn bucket(&self, lane: usize, i: usize) -> &Bucket {
        &self.chunks[lane * self.chunks_per_lane + i / PER_CHUNK].0[i % PER_CHUNK]
    }

    fn all_buckets(&self) -> impl Iterator<Item = &Bucket> {
        (0..self.lanes).flat_map(move |lane| (0..self.buckets).map(move |i| self.bucket(lane, i)))
    }

    fn may_hold_bad(&self, now_nanos: u64) -> bool {
        let last = self.last_bad.load(Ordering::Relaxed);
        // A call stays in `stats` while fewer than `n` slices have started
        // after its own; one slice more keeps this on the safe side.
        let span = self.width_nanos.saturating_mul(self.buckets as u64 + 1);
        last != 0 && now_nanos.saturating_add(1).saturating_sub(last) < span
    }

    fn record(&self, now_nanos: u64, failed: bool, slow: bool) {
        let slice = now_nanos / self.width_nanos;
        let epoch = slice + 1;
        let lane = thread_number() % self.lanes;
        let bucket = self.bucket(lane, (slice % self.buckets as u64) as usize);
        let mut seen = bucket.epoch.load(Ordering::Acquire);
        while seen < epoch {
            match bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    bucket.calls.store(0, Ordering::Relaxed);
                    bucket.failures.store(0, Ordering::Relaxed);
                    bucket.slow.store(0, Ordering::Relaxed);
                    seen = epoch;
                }
                Err(actual) => seen = actual,
            }
        }
        if seen > epoch {
            // A writer that read the clock before a slower one: its slice has
            // already left the window.
            return;
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            bucket.failures.fetch_add(1, Ordering::Relaxed);
        }
        if slow {
            bucket.slow.fetch_add(1, Ordering::Relaxed);
        }
        if failed || slow {
            self.last_bad
                .fetch_max(now_nanos.saturating_add(1), Ordering::Relaxed);
        }
    }

    fn stats(&self, now_nanos: u64) -> WindowStats {
        let epoch = now_nanos / self.width_nanos + 1;
        let oldest = epoch.saturating_sub(self.buckets as u64 - 1);
        let mut stats = WindowStats::default();
        for bucket in self.all_buckets() {
            let e = bucket.epoch.load(Ordering::Acquire);
            if e != 0 && (oldest..=epoch).contains(&e) {
                stats.calls += bucket.calls.load(Ordering::Relaxed);
                stats.failures += bucket.failures.load(Ordering::Relaxed);
                stats.slow += bucket.slow.load(Ordering::Relaxed);
            }
        }
        stats
    }

    fn reset(&self) {
        self.last_bad.store(0, Ordering::Relaxed);
        for bucket in self.all_buckets() {
            bucket.epoch.store(0, Ordering::Release);
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
            bucket.slow.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = SlidingWindow::new(Window::Count { calls: 3 });
        w.record(0, true, false);
        w.record(0, true, true);
        assert_eq!(
            w.stats(0),
            WindowStats {
                calls: 2,
                failures: 2,
                slow: 1
            }
        );
        w.record(0, false, false);
        w.record(0, false, false); // pushes out the first failure
        assert_eq!(
            w.stats(0),
            WindowStats {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.reset();
        assert_eq!(w.stats(0), WindowStats::default());
    }

    #[test]
    fn time_window_drops_old_buckets() {
        let w = SlidingWindow::new(Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        });
        w.record(0, true, false);
        w.record(SEC / 2, false, false);
        w.record(5 * SEC, true, false);
        let s = w.stats(9 * SEC);
        assert_eq!((s.calls, s.failures), (3, 2));
        assert!((s.failure_rate() - 2.0 / 3.0).abs() < 1e-9);
        // At t = 10 s the first bucket [0, 1 s) has left the window.
        let s = w.stats(10 * SEC);
        assert_eq!((s.calls, s.failures), (1, 1));
        // Writing into a reused bucket clears the old slice first.
        w.record(10 * SEC, false, false);
        let s = w.stats(10 * SEC);
        assert_eq!((s.calls, s.failures), (2, 1));
        assert_eq!(w.stats(100 * SEC), WindowStats::default());
    }

    #[test]
    fn time_window_sums_every_thread_s_lane() {
        let w = std::sync::Arc::new(TimeWindow::new(Duration::from_secs(10), 10));
        let threads: Vec<_> = (0..w.lanes + 3)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        w.record(i * SEC / 1000, (i + t as u64).is_multiple_of(4), false);
                    }
                })
            })
            .collect();
        let n = threads.len() as u64;
        for t in threads {
            t.join().unwrap();
        }
        let s = w.stats(SEC - 1);
        assert_eq!((s.calls, s.failures), (1000 * n, 250 * n));
        w.reset();
        assert_eq!(w.stats(SEC - 1), WindowStats::default());
    }

    #[test]
    fn count_window_is_exact_after_concurrent_writers() {
        let w = std::sync::Arc::new(CountWindow::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        w.record((i + t) % 2 == 0, false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = w.stats();
        let slots: u64 = w
            .slots
            .iter()
            .map(|s| u64::from(s.load(Ordering::Relaxed) & FAILED != 0))
            .sum();
        assert_eq!(s.calls, 64);
        assert_eq!(s.failures, slots);
    }
}
