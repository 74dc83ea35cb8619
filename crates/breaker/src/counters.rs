//! Striped event counters: each thread adds to its own cache line, so the
//! Closed path never makes two cores fight over one line.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Keeps a value on its own cache line (128 bytes: two lines, because
/// adjacent-line prefetch on x86 pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Default)]
struct Shard {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    cancelled: AtomicU64,
    rejections: AtomicU64,
}

/// Which counter to bump.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Successes,
    Failures,
    Ignored,
    Cancelled,
    Rejections,
}

/// Totals across all shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) ignored: u64,
    pub(crate) cancelled: u64,
    pub(crate) rejections: u64,
}

#[derive(Debug)]
pub(crate) struct Counters {
    shards: Box<[Padded<Shard>]>,
    mask: usize,
}

fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        cpus.next_power_of_two().clamp(1, 64)
    })
}

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    THREAD_INDEX.with(|index| {
        let mut i = index.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed);
            index.set(i);
        }
        i
    })
}

impl Counters {
    pub(crate) fn new() -> Self {
        let n = shard_count();
        Self {
            shards: (0..n).map(|_| Padded::default()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter) {
        let shard = &self.shards[thread_index() & self.mask];
        let cell = match counter {
            Counter::Successes => &shard.successes,
            Counter::Failures => &shard.failures,
            Counter::Ignored => &shard.ignored,
            Counter::Cancelled => &shard.cancelled,
            Counter::Rejections => &shard.rejections,
        };
        cell.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            t.successes += s.successes.load(Ordering::Relaxed);
            t.failures += s.failures.load(Ordering::Relaxed);
            t.ignored += s.ignored.load(Ordering::Relaxed);
            t.cancelled += s.cancelled.load(Ordering::Relaxed);
            t.rejections += s.rejections.load(Ordering::Relaxed);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_across_threads() {
        let counters = std::sync::Arc::new(Counters::new());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = counters.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(Counter::Successes);
                    }
                    c.add(Counter::Rejections);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let t = counters.totals();
        assert_eq!(t.successes, 8000);
        assert_eq!(t.rejections, 8);
        assert_eq!(t.failures, 0);
    }
}
