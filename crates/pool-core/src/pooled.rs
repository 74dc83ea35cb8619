//! The checkout guard.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::cancel::Canceller;
use crate::manager::Manager;
use crate::observer::Event;
use crate::op::BoxError;
use crate::shared::{Conn, Shared};

/// A connection checked out of a [`Pool`](crate::Pool). Dereferences to the
/// connection; dropping it returns the connection (synchronously, without
/// I/O) and frees its slot for the next waiter.
#[must_use = "dropping a Pooled returns its connection at once"]
pub struct Pooled<M: Manager> {
    conn: Option<Conn<M::Connection>>,
    pub(crate) shared: Arc<Shared<M>>,
}

impl<M: Manager> Pooled<M> {
    #[inline]
    pub(crate) fn new(shared: Arc<Shared<M>>, conn: Conn<M::Connection>) -> Self {
        Self {
            conn: Some(conn),
            shared,
        }
    }

    #[inline]
    pub(crate) fn conn_mut(&mut self) -> &mut Conn<M::Connection> {
        // The option is emptied only by `detach` and `drop`, which consume self.
        #[expect(clippy::expect_used, reason = "invariant of the guard")]
        self.conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
    }

    #[inline]
    fn conn_ref(&self) -> &Conn<M::Connection> {
        #[expect(clippy::expect_used, reason = "invariant of the guard")]
        self.conn
            .as_ref()
            .expect("a Pooled holds its connection until dropped")
    }

    /// The connection's id within its pool (as events report it).
    pub fn id(&self) -> u64 {
        self.conn_ref().id
    }

    /// What cancels a command running on this connection from outside it,
    /// when the backend can (see [`Manager::canceller`]).
    pub fn canceller(&self) -> Option<&Canceller> {
        self.conn_ref().canceller.as_ref()
    }

    /// Marks the connection's state as unknown until
    /// [`mark_known`](Self::mark_known): if the guard is dropped in
    /// between (an operation was cancelled mid-I/O), the connection is
    /// closed instead of being handed to the next caller.
    pub fn mark_unknown(&mut self) {
        self.conn_mut().unknown = true;
    }

    /// Undoes [`mark_unknown`](Self::mark_unknown) once the operation has
    /// finished cleanly.
    pub fn mark_known(&mut self) {
        self.conn_mut().unknown = false;
    }

    /// Closes the connection instead of returning it (the caller knows it is
    /// broken).
    pub fn discard(mut self) {
        self.mark_unknown();
    }

    /// Gives up on a command running on this connection: asks the server
    /// to cancel it (when the backend can, see [`Manager::canceller`]) and
    /// closes the connection. Returns at once; the cancel runs in a task,
    /// bounded by `connect_timeout`, and the connection keeps its slot
    /// until then, since the server is still busy with it. The pool's
    /// service calls this when an operation times out or is dropped.
    pub fn abandon(mut self) {
        self.mark_unknown();
        let Some(canceller) = self.canceller().cloned() else {
            return;
        };
        let shared = self.shared.clone();
        let limit = shared.config.connect_timeout;
        // If the runtime is gone the task is dropped, and `self` with it.
        drop(shared.runtime.spawn(async move {
            let outcome = tokio::time::timeout(limit, canceller.cancel()).await;
            let error: Option<BoxError> = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some(format!("no answer within {limit:?}").into()),
            };
            self.shared.observers.emit(&Event::Cancelled {
                name: &self.shared.slow.name,
                id: self.id(),
                error: error.as_deref(),
            });
            // Dropped while unknown: closed.
            drop(self);
        }));
    }

    /// Takes the connection out of the pool for good. Its slot is freed;
    /// the pool no longer counts it.
    ///
    /// # Panics
    /// Never: a guard holds its connection until it is consumed.
    pub fn detach(mut self) -> M::Connection {
        #[expect(clippy::expect_used, reason = "invariant of the guard")]
        let conn = self
            .conn
            .take()
            .expect("a Pooled holds its connection until dropped");
        self.shared.detach(conn.id);
        conn.raw
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Connection;

    #[inline]
    fn deref(&self) -> &M::Connection {
        &self.conn_ref().raw
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    #[inline]
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn_mut().raw
    }
}

impl<M: Manager> AsRef<M::Connection> for Pooled<M> {
    fn as_ref(&self) -> &M::Connection {
        self
    }
}

impl<M: Manager> AsMut<M::Connection> for Pooled<M> {
    fn as_mut(&mut self) -> &mut M::Connection {
        self
    }
}

impl<M: Manager> Drop for Pooled<M> {
    #[inline]
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.check_in(conn);
        }
    }
}

impl<M: Manager> fmt::Debug for Pooled<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.conn.as_ref().map(|c| c.id))
            .field("unknown", &self.conn.as_ref().map(|c| c.unknown))
            .finish_non_exhaustive()
    }
}
