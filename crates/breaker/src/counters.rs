//! Per-thread event counters: a call adds to the slot of the thread it
//! runs on, so the Closed path never makes two cores fight over one line.
//! The first threads each own a slot outright and count with a plain load
//! and store (no locked instruction: only the owner writes, readers sum);
//! threads past those share the last slot and count with atomic adds.

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
struct Slot {
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

/// Totals across all slots.
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
    /// One per owning thread, then the shared one.
    slots: Box<[Padded<Slot>]>,
}

/// Owned slots: twice the cores (a runtime's workers plus the threads
/// around them), at least 16; plus the shared one.
fn slot_count() -> usize {
    std::thread::available_parallelism()
        .map_or(16, |n| n.get() * 2)
        .clamp(16, 128)
        + 1
}

/// This thread's number, given out in order on first use and never reused,
/// so no two threads ever own the same slot.
#[inline]
pub(crate) fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|n| *n)
}

impl Counters {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..slot_count()).map(|_| Padded::default()).collect(),
        }
    }

    #[inline]
    pub(crate) fn add(&self, counter: Counter) {
        let shared = self.slots.len() - 1;
        let number = thread_number();
        let slot = &self.slots[number.min(shared)];
        let cell = match counter {
            Counter::Successes => &slot.successes,
            Counter::Failures => &slot.failures,
            Counter::Ignored => &slot.ignored,
            Counter::Cancelled => &slot.cancelled,
            Counter::Rejections => &slot.rejections,
        };
        if number < shared {
            // Owned: this thread is the only writer.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.slots.iter() {
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
        // More threads than owned slots: the rest share the last one.
        let threads = slot_count() + 8;
        let handles: Vec<_> = (0..threads)
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
        assert_eq!(t.successes, 1000 * threads as u64);
        assert_eq!(t.rejections, threads as u64);
        assert_eq!(t.failures, 0);
    }
}
