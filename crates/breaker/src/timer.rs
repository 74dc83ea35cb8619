//! The shared open timer: one thread for the whole process that moves Open
//! breakers to HalfOpen when their open duration has passed (resilience4j's
//! automatic transition).
//!
//! With it, an Open breaker turns calls away without reading the clock: while
//! the state word says Open, the deadline is still ahead. The thread starts
//! with the first breaker that trips, sleeps on a condition variable while
//! nothing is open, and holds breakers only weakly, so a dropped breaker
//! costs it nothing but a heap entry until that entry's deadline.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, Weak};
use std::time::Instant;

use crate::breaker::lock;

/// What the timer calls when a deadline comes.
pub(crate) trait Expire: Send + Sync {
    /// The open period `generation` is over: move to HalfOpen if the breaker
    /// is still in it.
    fn expire(&self, generation: u64);
}

struct Entry {
    at: Instant,
    /// Breaks ties so that entries with one deadline keep arrival order.
    seq: u64,
    generation: u64,
    breaker: Weak<dyn Expire>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The process's timer, started on first use; `None` if its thread could
/// not be spawned (breakers then read the clock on every rejection).
fn timer() -> Option<&'static Timer> {
    static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
    *TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("keel-breaker-timer".into())
            .spawn(move || timer.run())
            .ok()
            .map(|_| timer)
    })
}

/// Asks for `breaker.expire(generation)` at `at`. Returns whether the timer
/// took it; if not, nothing will call.
pub(crate) fn schedule(at: Instant, generation: u64, breaker: Weak<dyn Expire>) -> bool {
    let Some(timer) = timer() else {
        return false;
    };
    let mut queue = lock(&timer.queue);
    queue.seq += 1;
    let seq = queue.seq;
    let earliest = queue.heap.peek().is_none_or(|first| at < first.at);
    queue.heap.push(Entry {
        at,
        seq,
        generation,
        breaker,
    });
    drop(queue);
    if earliest {
        timer.wake.notify_one();
    }
    true
}

impl Timer {
    fn run(&self) {
        loop {
            let due = self.next_due();
            if let Some(breaker) = due.breaker.upgrade() {
                breaker.expire(due.generation);
            }
        }
    }

    /// Sleeps until the earliest deadline has passed and takes its entry.
    fn next_due(&self) -> Entry {
        let mut queue = lock(&self.queue);
        loop {
            let now = Instant::now();
            let wait = match queue.heap.peek() {
                None => None,
                Some(first) if first.at <= now => {
                    if let Some(entry) = queue.heap.pop() {
                        return entry;
                    }
                    continue;
                }
                Some(first) => Some(first.at - now),
            };
            queue = match wait {
                None => self
                    .wake
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(wait) => {
                    self.wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    struct Probe(Mutex<mpsc::Sender<(u64, Instant)>>);

    impl Expire for Probe {
        fn expire(&self, generation: u64) {
            let _ = lock(&self.0).send((generation, Instant::now()));
        }
    }

    #[test]
    fn calls_back_in_deadline_order_never_early() {
        let (tx, rx) = mpsc::channel();
        let probe: Arc<dyn Expire> = Arc::new(Probe(Mutex::new(tx)));
        let start = Instant::now();
        for (generation, ms) in [(3, 60), (1, 20), (2, 40)] {
            let at = start + Duration::from_millis(ms);
            assert!(schedule(at, generation, Arc::downgrade(&probe)));
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (generation, when) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert!(
                when >= start + Duration::from_millis(20 * generation),
                "generation {generation} called back early"
            );
            seen.push(generation);
        }
        assert_eq!(seen, [1, 2, 3]);
    }

    #[test]
    fn a_dropped_breaker_is_skipped() {
        let (tx, rx) = mpsc::channel();
        let gone: Arc<dyn Expire> = Arc::new(Probe(Mutex::new(tx.clone())));
        let kept: Arc<dyn Expire> = Arc::new(Probe(Mutex::new(tx)));
        let at = Instant::now() + Duration::from_millis(10);
        assert!(schedule(at, 1, Arc::downgrade(&gone)));
        assert!(schedule(at, 2, Arc::downgrade(&kept)));
        drop(gone);
        let (generation, _) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(generation, 2);
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}
