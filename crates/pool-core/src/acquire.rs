//! Checkout: a slot from the FIFO semaphore, then an idle connection
//! (validated or reset first when it needs it) or a new one.
//!
//! Cancellation safety comes from ownership: at every await point the slot
//! and any connection are held by a guard whose drop gives them back, so a
//! dropped checkout loses nothing.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{TryAcquireError, oneshot};
use tokio::time::{Instant, timeout};

use crate::error::{Phase, PoolError};
use crate::manager::Manager;
use crate::observer::{CloseReason, Event};
use crate::pooled::Pooled;
use crate::shared::{Checkout, Conn, Shared, lock};

type CheckoutResult<M> = Result<Pooled<M>, PoolError<<M as Manager>::Error>>;

/// A permit borrowed from the semaphore; given back on drop unless handed on.
pub(crate) struct Slot<'a, M: Manager> {
    shared: &'a Shared<M>,
    armed: bool,
}

impl<'a, M: Manager> Slot<'a, M> {
    fn new(shared: &'a Shared<M>) -> Self {
        Self {
            shared,
            armed: true,
        }
    }

    /// The permit now belongs to someone else (a guard, a task).
    fn hand_on(mut self) {
        self.armed = false;
    }
}

impl<M: Manager> Drop for Slot<'_, M> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.return_permit();
        }
    }
}

/// A permit owned by a task that outlives the checkout that took it.
pub(crate) struct OwnedSlot<M: Manager>(Option<Arc<Shared<M>>>);

impl<M: Manager> OwnedSlot<M> {
    fn hand_on(mut self) -> Arc<Shared<M>> {
        #[expect(clippy::expect_used, reason = "invariant of the guard")]
        self.0
            .take()
            .expect("an OwnedSlot holds its pool until handed on")
    }
}

impl<M: Manager> Drop for OwnedSlot<M> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.return_permit();
        }
    }
}

/// Counts a waiting checkout while it waits.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the hot path hands to the slow one.
pub(crate) enum Fast<'a, M: Manager> {
    /// Done: an idle connection that needs no round trip.
    Ready(Pooled<M>),
    /// No free slot: queue for one.
    Queue,
    /// A slot, and maybe an idle connection to validate or reset first.
    Slotted(Slot<'a, M>, Option<InFlight<'a, M>>),
    /// The pool is closed.
    Closed,
}

/// A connection in the middle of a validate or reset round trip: if the
/// checkout is dropped there, its state is unknown and it is closed.
pub(crate) struct InFlight<'a, M: Manager> {
    shared: &'a Shared<M>,
    conn: Option<Conn<M::Connection>>,
}

impl<M: Manager> InFlight<'_, M> {
    fn close(mut self, reason: CloseReason) {
        if let Some(conn) = self.conn.take() {
            self.shared.discard(conn, reason);
        }
    }
}

impl<M: Manager> Drop for InFlight<'_, M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.discard(conn, CloseReason::Broken);
        }
    }
}

/// What a background connect hands to the checkout that asked for it.
enum Outcome<M: Manager> {
    Connected(Pooled<M>),
    /// The server is out of connection slots; the checkout keeps its slot
    /// and waits for a connection someone else returns.
    Exhausted(M::Error, OwnedSlot<M>),
    Failed(M::Error),
    TimedOut(Duration),
}

impl<M: Manager> Shared<M> {
    /// The hot path, without awaiting: a free slot and an idle connection
    /// that needs no round trip. Anything else goes to [`Self::acquire_slow`]
    /// with what was gathered, so the common checkout's future stays small.
    #[inline]
    pub(crate) fn try_fast(self: &Arc<Self>) -> Fast<'_, M> {
        match self.permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Fast::Queue,
            Err(TryAcquireError::Closed) => return Fast::Closed,
        }
        self.counters.immediate();
        let slot = Slot::new(&**self);
        let now = self.clock.coarse();
        while let Some(conn) = self.pop_idle() {
            if let Some(reason) = self.retire_reason(&conn, now) {
                self.discard(conn, reason);
                continue;
            }
            if conn.needs_reset || self.needs_validation(&conn, now) {
                let conn = InFlight {
                    shared: &**self,
                    conn: Some(conn),
                };
                return Fast::Slotted(slot, Some(conn));
            }
            slot.hand_on();
            return Fast::Ready(Pooled::new(self.clone(), conn));
        }
        Fast::Slotted(slot, None)
    }

    /// The rest of a checkout the hot path could not finish.
    pub(crate) async fn acquire_slow(self: &Arc<Self>, fast: Fast<'_, M>) -> CheckoutResult<M> {
        let (slot, first) = match fast {
            Fast::Ready(pooled) => return Ok(pooled),
            Fast::Closed => return Err(PoolError::Closed),
            Fast::Queue => (self.wait_for_slot().await?, None),
            Fast::Slotted(slot, first) => (slot, first),
        };
        let conn = match first {
            Some(first) => match self.prepare(first).await {
                Some(conn) => Some(conn),
                None => self.take_idle().await,
            },
            None => self.take_idle().await,
        };
        match conn {
            Some(conn) => {
                slot.hand_on();
                Ok(Pooled::new(self.clone(), conn))
            }
            None if self.is_closed() => Err(PoolError::Closed),
            None => self.connect_for(slot).await,
        }
    }

    /// Records where a checkout was taken, when leak detection is on.
    #[inline]
    pub(crate) fn track(&self, pooled: &Pooled<M>, at: &'static Location<'static>) {
        if let Some(checkouts) = &self.checkouts {
            let since_ms = self.clock.coarse();
            lock(checkouts).insert(
                pooled.id(),
                Checkout {
                    since_ms,
                    at,
                    reported: false,
                },
            );
        }
    }

    async fn wait_for_slot(&self) -> Result<Slot<'_, M>, PoolError<M::Error>> {
        let started = Instant::now();
        let queued = Counted::new(&self.waiters);
        let acquired = timeout(self.config.wait_timeout, self.permits.acquire()).await;
        drop(queued);
        match acquired {
            Ok(Ok(permit)) => {
                permit.forget();
                let took = started.elapsed();
                self.clock.refresh();
                self.counters.waited(took);
                self.observers.emit(&Event::Waited {
                    name: &self.slow.name,
                    took,
                });
                Ok(Slot::new(self))
            }
            Ok(Err(_closed)) => Err(PoolError::Closed),
            Err(_elapsed) => Err(self.timed_out(Phase::Wait, started.elapsed())),
        }
    }

    fn connect_error(&self, source: M::Error) -> PoolError<M::Error> {
        PoolError::Connect {
            endpoint: self.slow.endpoint.clone(),
            source,
        }
    }

    fn timed_out(&self, phase: Phase, waited: Duration) -> PoolError<M::Error> {
        self.counters.timed_out(phase);
        self.observers.emit(&Event::TimedOut {
            name: &self.slow.name,
            phase,
        });
        PoolError::Timeout { phase, waited }
    }

    /// An idle connection ready for use, or `None` when there is none.
    /// Retired connections are closed on the way; validation and reset
    /// failures close the connection and move on to the next.
    #[inline]
    async fn take_idle(&self) -> Option<Conn<M::Connection>> {
        while let Some(conn) = self.pop_idle() {
            let now = self.clock.coarse();
            if let Some(reason) = self.retire_reason(&conn, now) {
                self.discard(conn, reason);
                continue;
            }
            if !conn.needs_reset && !self.needs_validation(&conn, now) {
                return Some(conn);
            }
            let conn = InFlight {
                shared: self,
                conn: Some(conn),
            };
            if let Some(conn) = self.prepare(conn).await {
                return Some(conn);
            }
        }
        None
    }

    /// Resets a connection its holder returned mid-transaction, then makes
    /// it idle; a failed reset closes it and frees its slot.
    pub(crate) async fn reset_returned(self: Arc<Self>, conn: Conn<M::Connection>) {
        let in_flight = InFlight {
            shared: &self,
            conn: Some(conn),
        };
        match self.prepare(in_flight).await {
            Some(conn) => self.idle_again(conn),
            None => {
                self.return_permit();
            }
        }
    }

    /// Resets or validates an idle connection, under the phase's timeout.
    async fn prepare(&self, mut in_flight: InFlight<'_, M>) -> Option<Conn<M::Connection>> {
        let conn = in_flight.conn.as_mut()?;
        let (phase, limit) = if conn.needs_reset {
            (Phase::Reset, self.config.reset_timeout)
        } else {
            (Phase::Validate, self.config.validate_timeout)
        };
        let started = Instant::now();
        let checked = match phase {
            Phase::Reset => timeout(limit, self.manager.reset(&mut conn.raw)).await,
            _ => timeout(limit, self.manager.validate(&mut conn.raw)).await,
        };
        match checked {
            Ok(Ok(())) => {
                conn.needs_reset = false;
                in_flight.conn.take()
            }
            Ok(Err(_)) => {
                in_flight.close(CloseReason::Invalid);
                None
            }
            Err(_) => {
                let _ = self.timed_out(phase, started.elapsed());
                in_flight.close(CloseReason::Broken);
                None
            }
        }
    }

    /// Opens a connection for a checkout that holds a slot. The connect
    /// runs in its own task, so a checkout dropped meanwhile wastes nothing:
    /// the new connection goes to the idle queue.
    async fn connect_for(self: &Arc<Self>, slot: Slot<'_, M>) -> CheckoutResult<M> {
        let (reply, outcome) = oneshot::channel();
        slot.hand_on();
        let owned = OwnedSlot(Some(self.clone()));
        // If the runtime is gone the task is dropped, and with it the slot.
        drop(self.runtime.spawn(connect_task(owned, Some(reply))));
        match outcome.await {
            // A connection opened as the pool closed is closed on drop.
            Ok(Outcome::Connected(_)) if self.is_closed() => Err(PoolError::Closed),
            Ok(Outcome::Connected(pooled)) => Ok(pooled),
            Ok(Outcome::Exhausted(error, slot)) => self.wait_for_release(error, slot).await,
            Ok(Outcome::Failed(error)) => Err(self.connect_error(error)),
            Ok(Outcome::TimedOut(waited)) => Err(PoolError::Timeout {
                phase: Phase::Connect,
                waited,
            }),
            Err(_) => Err(PoolError::Closed),
        }
    }

    /// The server refused a new connection for lack of slots; a connection
    /// another checkout returns serves this one instead. Gives up with the
    /// server's error when none comes back within the wait timeout.
    async fn wait_for_release(
        self: &Arc<Self>,
        error: M::Error,
        slot: OwnedSlot<M>,
    ) -> CheckoutResult<M> {
        let _starved = Counted::new(&self.starved);
        let wait = async {
            loop {
                let notified = self.released.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(conn) = self.take_idle().await {
                    return Some(conn);
                }
                if self.is_closed() || self.open() == 0 {
                    // Nothing is out that could come back.
                    return None;
                }
                notified.await;
            }
        };
        match timeout(self.config.wait_timeout, wait).await {
            Ok(Some(conn)) => Ok(Pooled::new(slot.hand_on(), conn)),
            _ => Err(self.connect_error(error)),
        }
    }

    /// Opens connections until `min_idle` are idle, as far as free slots
    /// allow; stops at the first failure (maintenance tries again).
    pub(crate) async fn fill_idle(self: &Arc<Self>) -> Result<(), PoolError<M::Error>> {
        let max_size = self.max_size.load(Ordering::Acquire);
        while !self.is_closed() && self.idle_len() < self.config.min_idle && self.open() < max_size
        {
            let Ok(permit) = self.permits.try_acquire() else {
                return Ok(());
            };
            permit.forget();
            let (reply, outcome) = oneshot::channel();
            connect_task(OwnedSlot(Some(self.clone())), Some(reply)).await;
            match outcome.await {
                Ok(Outcome::Connected(pooled)) => drop(pooled),
                Ok(Outcome::Exhausted(error, _) | Outcome::Failed(error)) => {
                    return Err(self.connect_error(error));
                }
                Ok(Outcome::TimedOut(waited)) => {
                    return Err(PoolError::Timeout {
                        phase: Phase::Connect,
                        waited,
                    });
                }
                Err(_) => return Err(PoolError::Closed),
            }
        }
        Ok(())
    }
}

/// Opens one connection with the slot it is given and reports to `reply`;
/// with nobody to report to, the connection goes to the idle queue.
async fn connect_task<M: Manager>(slot: OwnedSlot<M>, reply: Option<oneshot::Sender<Outcome<M>>>) {
    let Some(shared) = slot.0.clone() else { return };
    let connecting = Counted::new(&shared.slow.connecting);
    let started = Instant::now();
    let open = async {
        let mut raw = shared.manager.connect().await?;
        let canceller = shared.manager.canceller(&mut raw).await?;
        Ok::<_, M::Error>((raw, canceller))
    };
    let outcome = timeout(shared.config.connect_timeout, open).await;
    drop(connecting);
    let outcome = match outcome {
        Ok(Ok((raw, canceller))) => {
            let conn = shared.register(raw, canceller, started.elapsed());
            Outcome::Connected(Pooled::new(slot.hand_on(), conn))
        }
        Ok(Err(error)) => {
            shared.observers.emit(&Event::ConnectFailed {
                name: &shared.slow.name,
                error: &error,
            });
            if shared.manager.is_exhausted(&error) {
                Outcome::Exhausted(error, slot)
            } else {
                Outcome::Failed(error)
            }
        }
        Err(_elapsed) => {
            let waited = started.elapsed();
            let _ = shared.timed_out(Phase::Connect, waited);
            Outcome::TimedOut(waited)
        }
    };
    // Whatever cannot be delivered is dropped here, and its guards give the
    // connection and the slot back.
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
}
