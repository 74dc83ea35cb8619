//! Counts calls in, and lets shutdown close the door and wait for the last
//! one out.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub(crate) struct Gate {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One call inside; leaving when dropped. It borrows the gate (the call
/// borrows its database anyway), so a call touches no reference count.
#[derive(Debug)]
pub(crate) struct Inside<'a>(&'a Gate);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let gate = &self.0;
        if gate.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 && gate.closed.load(Ordering::Acquire)
        {
            gate.idle.notify_waiters();
        }
    }
}

impl Gate {
    /// Lets a call in, unless the gate is closed.
    pub(crate) fn enter(&self) -> Option<Inside<'_>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let inside = Inside(self);
        // A close between the check and the count: back out.
        if self.closed.load(Ordering::Acquire) {
            drop(inside);
            return None;
        }
        Some(inside)
    }

    /// Turns every later call away.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until no call is inside (after `close`).
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}
