//! The cluster's checkout guard.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use keel_breaker::OwnedPermit;

use super::endpoint::{Endpoint, FAILURE_PENALTY, Probed};
use crate::manager::Manager;
use crate::pooled::Pooled;

/// A connection checked out of a [`Cluster`](super::Cluster): a
/// [`Pooled`] of the endpoint it came from, which dereferences to the
/// connection. Dropping it returns the connection and counts the checkout
/// as a success for the endpoint's ejection breaker, unless
/// [`fail`](Self::fail) said otherwise.
#[must_use = "dropping a ClusterPooled returns its connection at once"]
pub struct ClusterPooled<M: Manager> {
    pub(crate) conn: Pooled<Probed<M>>,
    pub(crate) ticket: Ticket<M>,
}

/// A checkout's account with its endpoint: the checkout count, the
/// ejection breaker's permit and the latency sample, settled on drop.
pub(crate) struct Ticket<M: Manager> {
    pub(crate) endpoint: Arc<Endpoint<M>>,
    pub(crate) permit: Option<OwnedPermit>,
    /// When the checkout began, when its latency is sampled.
    pub(crate) started: Option<Instant>,
    pub(crate) outcome: Outcome,
}

/// How a checkout went, for its endpoint's ejection breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// The server broke mid-operation or missed a deadline.
    Failure,
    /// The caller gave up before it knew (a cancelled call): no verdict.
    #[cfg_attr(
        not(feature = "tower"),
        expect(dead_code, reason = "set by the cluster's tower service")
    )]
    Unknown,
}

impl<M: Manager> ClusterPooled<M> {
    /// The endpoint it came from (`host:port/db`).
    pub fn endpoint(&self) -> &str {
        &self.ticket.endpoint.name
    }

    /// Counts this checkout as the endpoint's failure (the server broke
    /// mid-operation, say); enough of them in a row eject the endpoint.
    pub fn fail(&mut self) {
        self.ticket.outcome = Outcome::Failure;
    }

    /// Marks the connection's state unknown: it is closed when dropped
    /// instead of going back to the pool (see [`Pooled::mark_unknown`]).
    pub fn mark_unknown(&mut self) {
        self.conn.mark_unknown();
    }
}

impl<M: Manager> Deref for ClusterPooled<M> {
    type Target = M::Connection;

    fn deref(&self) -> &M::Connection {
        &self.conn
    }
}

impl<M: Manager> DerefMut for ClusterPooled<M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn
    }
}

impl<M: Manager> Drop for Ticket<M> {
    fn drop(&mut self) {
        let e = &self.endpoint;
        e.in_use.fetch_sub(1, Ordering::Relaxed);
        let permit = self.permit.take();
        match self.outcome {
            Outcome::Success => {
                if let Some(started) = self.started {
                    e.record_latency(started.elapsed());
                }
                if let Some(p) = permit {
                    p.success();
                }
            }
            Outcome::Failure => {
                e.record_latency(FAILURE_PENALTY);
                if let Some(p) = permit {
                    p.failure();
                }
            }
            // Dropping the permit abandons it.
            Outcome::Unknown => {}
        }
    }
}

impl<M: Manager> fmt::Debug for ClusterPooled<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPooled")
            .field("endpoint", &self.ticket.endpoint.name)
            .field("id", &self.conn.id())
            .finish_non_exhaustive()
    }
}
