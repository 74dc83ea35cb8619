//! State shared by a pool's handles, its guards and its background work.
//!
//! The invariant everything here keeps: every open connection that is not
//! idle belongs to a holder of one semaphore permit (a checkout, a task
//! opening a connection, or maintenance closing it), so `open <= capacity`
//! always, also while connections close, and a permit goes back to the
//! semaphore exactly once, when its holder lets go of it. A connection
//! counts as open until its close has finished.

use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::cancel::Canceller;
use crate::clock::{PoolClock, millis};
use crate::config::PoolConfig;
use crate::idle::Idle;
use crate::manager::{CheckIn, Manager};
use crate::observer::{CloseReason, Event, Observers};
use crate::stats::Counters;

/// A pooled connection. Boxed once when opened, so that checkout and
/// check-in move a pointer rather than the connection and its bookkeeping.
pub(crate) type Conn<C> = Box<ConnState<C>>;

/// A connection and what the pool knows about it.
#[derive(Debug)]
pub(crate) struct ConnState<C> {
    pub(crate) raw: C,
    pub(crate) id: u64,
    pub(crate) generation: u64,
    /// Pool time (ms) at which the connection retires; `u64::MAX` never.
    pub(crate) expires_ms: u64,
    /// Pool time (ms) at which it was last returned.
    pub(crate) idle_since_ms: u64,
    pub(crate) needs_reset: bool,
    /// Set while its holder is mid-operation: if it comes back so, its
    /// state is unknown and it is closed. Always false while idle. Kept
    /// here rather than in the guard so that the guard is two plain
    /// pointers (a bool beside them costs a store-forwarding stall each
    /// time the async state machine moves it).
    pub(crate) unknown: bool,
    /// Cancels a command running on it, when the backend can.
    pub(crate) canceller: Option<Canceller>,
}

/// A connection being closed gracefully: counted in `closing` while it
/// lives, counted closed when it ends.
struct Closing<'a, M: Manager> {
    shared: &'a Shared<M>,
    id: u64,
    reason: CloseReason,
}

impl<'a, M: Manager> Closing<'a, M> {
    fn new(shared: &'a Shared<M>, id: u64, reason: CloseReason) -> Self {
        shared.slow.closing.fetch_add(1, Ordering::AcqRel);
        Self { shared, id, reason }
    }
}

impl<M: Manager> Drop for Closing<'_, M> {
    fn drop(&mut self) {
        self.shared.slow.closing.fetch_sub(1, Ordering::AcqRel);
        self.shared.closed_one(self.id, self.reason);
    }
}

/// Where a live checkout was taken, for leak detection.
#[derive(Debug)]
pub(crate) struct Checkout {
    pub(crate) since_ms: u64,
    pub(crate) at: &'static Location<'static>,
    pub(crate) reported: bool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; if some did, the data
    // (a queue, a map) is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Shared<M: Manager> {
    pub(crate) manager: M,
    pub(crate) config: PoolConfig,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) permits: Semaphore,
    idle: Idle<M::Connection>,
    /// Open connections: idle, checked out, owned by a task, or closing.
    open: AtomicUsize,
    pub(crate) max_size: AtomicUsize,
    /// Permits to withhold when they come back, after `resize` shrank the
    /// pool while they were out.
    debt: AtomicUsize,
    /// Checkouts queued on the semaphore.
    pub(crate) waiters: AtomicUsize,
    /// Checkouts that were told "too many connections" and wait for a
    /// returned connection; release notifies only when there are some.
    pub(crate) starved: AtomicUsize,
    pub(crate) released: Notify,
    /// Signalled when the last open connection closes.
    emptied: Notify,
    generation: AtomicU64,
    closed: AtomicBool,
    next_id: AtomicU64,
    pub(crate) clock: PoolClock,
    pub(crate) counters: Counters,
    pub(crate) observers: Observers,
    validate_after_ms: Option<u64>,
    /// When a connection was last found broken (pool clock, ms; 0: never).
    /// One broken connection hints that its idle siblings broke with it (a
    /// failover, a restart, `pg_terminate_backend`): those already idle
    /// then are validated before their next use. Written only when that
    /// happens.
    suspect_since_ms: AtomicU64,
    pub(crate) checkouts: Option<Mutex<HashMap<u64, Checkout>>>,
    /// What only slow paths touch, boxed so it changes nothing in the
    /// cache lines the hot path shares between threads.
    pub(crate) slow: Box<SlowPath>,
}

/// Counts and names the hot path never reads.
pub(crate) struct SlowPath {
    /// The pool's name, in its events (empty unless given one).
    pub(crate) name: Box<str>,
    /// The manager's endpoint, named in connect errors.
    pub(crate) endpoint: Option<Arc<str>>,
    /// Connects in progress (for a checkout or to keep `min_idle`).
    pub(crate) connecting: AtomicUsize,
    /// Connections being closed gracefully (still counted in `open`).
    pub(crate) closing: AtomicUsize,
}

impl<M: Manager> Shared<M> {
    pub(crate) fn new(
        name: Box<str>,
        manager: M,
        config: PoolConfig,
        runtime: tokio::runtime::Handle,
        observers: Observers,
    ) -> Self {
        Self {
            slow: Box::new(SlowPath {
                name,
                endpoint: manager.endpoint().map(Arc::from),
                connecting: AtomicUsize::new(0),
                closing: AtomicUsize::new(0),
            }),
            manager,
            runtime,
            permits: Semaphore::new(config.capacity()),
            idle: Idle::new(config.capacity(), config.queue),
            open: AtomicUsize::new(0),
            max_size: AtomicUsize::new(config.max_size),
            debt: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            starved: AtomicUsize::new(0),
            released: Notify::new(),
            emptied: Notify::new(),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            clock: PoolClock::new(),
            counters: Counters::new(),
            observers,
            validate_after_ms: config.validate_after_idle.map(millis),
            suspect_since_ms: AtomicU64::new(0),
            checkouts: config.leak_threshold.map(|_| Mutex::new(HashMap::new())),
            config,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn idle_len(&self) -> usize {
        self.idle.len()
    }

    /// Takes an idle connection, newest or oldest per the queue mode.
    #[inline]
    pub(crate) fn pop_idle(&self) -> Option<Conn<M::Connection>> {
        self.idle.pop()
    }

    /// Takes every idle connection.
    pub(crate) fn drain_idle(&self) -> Vec<Conn<M::Connection>> {
        self.idle.drain()
    }

    /// Removes the idle connections `retire` picks, oldest first; `retire`
    /// sees each connection and how many idle ones would remain without it.
    pub(crate) fn take_idle_where(
        &self,
        retire: impl FnMut(&Conn<M::Connection>, usize) -> Option<CloseReason>,
    ) -> Vec<(Conn<M::Connection>, CloseReason)> {
        self.idle.take_where(retire)
    }

    /// Why a connection must not be used again, if it must not.
    #[inline]
    pub(crate) fn retire_reason(
        &self,
        conn: &Conn<M::Connection>,
        now_ms: u64,
    ) -> Option<CloseReason> {
        if self.is_closed() {
            Some(CloseReason::Shrunk)
        } else if conn.generation != self.generation() {
            Some(CloseReason::Evicted)
        } else if now_ms >= conn.expires_ms {
            Some(CloseReason::Lifetime)
        } else {
            None
        }
    }

    /// Whether an idle connection needs a round trip before use.
    #[inline]
    pub(crate) fn needs_validation(&self, conn: &Conn<M::Connection>, now_ms: u64) -> bool {
        self.validate_after_ms
            .is_some_and(|after| now_ms.saturating_sub(conn.idle_since_ms) >= after)
            || {
                let suspect = self.suspect_since_ms.load(Ordering::Relaxed);
                suspect != 0 && conn.idle_since_ms < suspect
            }
    }

    /// Wraps a freshly opened connection.
    pub(crate) fn register(
        &self,
        raw: M::Connection,
        canceller: Option<Canceller>,
        took: Duration,
    ) -> Conn<M::Connection> {
        let now = self.clock.refresh();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::AcqRel);
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        self.observers.emit(&Event::Connected {
            name: &self.slow.name,
            id,
            took,
        });
        Box::new(ConnState {
            raw,
            id,
            generation: self.generation(),
            expires_ms: self.expiry(now),
            idle_since_ms: now,
            needs_reset: false,
            unknown: false,
            canceller,
        })
    }

    fn expiry(&self, now_ms: u64) -> u64 {
        let Some(lifetime) = self.config.max_lifetime else {
            return u64::MAX;
        };
        // Shorten each lifetime by a random fraction so connections opened
        // together do not all retire in the same tick.
        let jitter = self.config.lifetime_jitter * fastrand::f64();
        let lifetime = lifetime.mul_f64(1.0 - jitter);
        now_ms.saturating_add(millis(lifetime))
    }

    /// Closes a connection without waiting (drops it).
    #[expect(
        clippy::boxed_local,
        reason = "connections live boxed; callers hand over the box they hold"
    )]
    pub(crate) fn discard(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        let id = conn.id;
        drop(conn.raw);
        self.closed_one(id, reason);
    }

    /// Closes a connection gracefully, dropping it if that takes too long.
    /// It counts as open (and as closing) until the close has finished, so
    /// the pool never reports fewer connections than the server holds.
    pub(crate) async fn close_gracefully(&self, conn: Conn<M::Connection>, reason: CloseReason) {
        // Counted closed when the close ends, or when this future is
        // dropped (which drops, and so closes, the connection).
        let _closing = Closing::new(self, conn.id, reason);
        let close = self.manager.close(conn.raw);
        if tokio::time::timeout(self.config.close_timeout, close)
            .await
            .is_err()
        {
            self.counters.timed_out(crate::error::Phase::Close);
            self.observers.emit(&Event::TimedOut {
                name: &self.slow.name,
                phase: crate::error::Phase::Close,
            });
        }
    }

    fn closed_one(&self, id: u64, reason: CloseReason) {
        if matches!(reason, CloseReason::Broken | CloseReason::Invalid) {
            // The precise time (a slow path), so connections returned from
            // now on read a coarse clock at least as late and are trusted;
            // max, since a slow close may finish after a later one.
            self.suspect_since_ms
                .fetch_max(self.clock.refresh().max(1), Ordering::Relaxed);
        }
        self.counters.closed(reason);
        self.observers.emit(&Event::Closed {
            name: &self.slow.name,
            id,
            reason,
        });
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.emptied.notify_waiters();
        }
    }

    /// Waits until no connection is open.
    pub(crate) async fn wait_emptied(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Gives one permit back, or withholds it to pay a shrink.
    /// Returns whether it was withheld.
    #[inline]
    pub(crate) fn return_permit(&self) -> bool {
        if self.debt.load(Ordering::Relaxed) > 0 && self.pay_debt() {
            return true;
        }
        self.permits.add_permits(1);
        false
    }

    #[cold]
    fn pay_debt(&self) -> bool {
        self.debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok()
    }

    /// Takes back a checked-out connection: synchronous. A connection still
    /// marked unknown (its holder was interrupted mid-I/O) is closed; one
    /// that needs a reset (a transaction left open) is reset at once in a
    /// task of its own, holding its slot meanwhile: left idle until its
    /// next checkout, it would keep the transaction's locks that long.
    #[inline]
    pub(crate) fn check_in(self: &Arc<Self>, mut conn: Conn<M::Connection>) {
        if let Some(checkouts) = &self.checkouts {
            lock(checkouts).remove(&conn.id);
        }
        let now = self.clock.coarse();
        let verdict = if conn.unknown {
            CheckIn::Discard
        } else {
            self.manager.check_in(&mut conn.raw)
        };
        let reason = match verdict {
            CheckIn::Discard => Some(CloseReason::Broken),
            CheckIn::Reset => {
                conn.needs_reset = true;
                self.retire_reason(&conn, now)
            }
            _ => self.retire_reason(&conn, now),
        };
        if let Some(reason) = reason {
            self.discard(conn, reason);
            self.return_permit();
            return;
        }
        if conn.needs_reset {
            drop(self.runtime.spawn(Arc::clone(self).reset_returned(conn)));
            return;
        }
        self.idle_again(conn);
    }

    /// Puts a returned connection back among the idle ones (or closes it
    /// when the pool is shrinking) and frees its slot.
    pub(crate) fn idle_again(&self, mut conn: Conn<M::Connection>) {
        if self.debt.load(Ordering::Relaxed) > 0 && self.pay_debt() {
            self.discard(conn, CloseReason::Shrunk);
            return;
        }
        conn.idle_since_ms = self.clock.coarse();
        self.idle.push(conn);
        self.permits.add_permits(1);
        if self.starved.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }

    /// Forgets a connection its holder took out of the pool.
    pub(crate) fn detach(&self, id: u64) {
        if let Some(checkouts) = &self.checkouts {
            lock(checkouts).remove(&id);
        }
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.emptied.notify_waiters();
        }
        self.return_permit();
    }

    /// Retires the current generation: idle connections close now, checked
    /// out ones when they come back.
    pub(crate) fn evict_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for conn in self.drain_idle() {
            self.discard(conn, CloseReason::Evicted);
        }
    }

    /// Marks the pool closed and wakes every queued checkout.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
    }

    /// Changes `max_size`; returns the idle connections to close.
    pub(crate) fn resize(&self, max_size: usize) -> Vec<Conn<M::Connection>> {
        let old = self.max_size.swap(max_size, Ordering::AcqRel);
        if max_size >= old {
            let mut grow = max_size - old;
            // Cancel outstanding debt before minting permits.
            while grow > 0 {
                let d = self.debt.load(Ordering::Acquire);
                if d == 0 {
                    break;
                }
                let pay = d.min(grow);
                if self
                    .debt
                    .compare_exchange(d, d - pay, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    grow -= pay;
                }
            }
            self.permits.add_permits(grow);
            return Vec::new();
        }
        let shrink = old - max_size;
        let forgotten = self.permits.forget_permits(shrink);
        self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
        let capacity = max_size + self.config.max_overflow;
        let excess = self.open().saturating_sub(capacity);
        self.idle.take_oldest(excess)
    }
}
