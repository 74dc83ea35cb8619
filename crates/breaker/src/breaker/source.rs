//! How a tower service reaches its breaker, and the permit it reserves in
//! `poll_ready` for the `call` that follows.

use std::sync::Arc;

use super::permit::{Handle, Ticket};
use super::{CircuitBreaker, OwnedPermit, Rejected};
use crate::classify::Outcome;
use crate::counters::Padded;

/// A breaker handle on cache lines of its own: one per service clone, its
/// count bumped by every call. Unpadded, two clones' handles (24 bytes
/// each) made one after the other can share a line, and two tasks calling
/// through their own clones then bounce it between cores (76 ns a call at
/// two tasks against 19 ns at one in `cargo bench -p keel-benches --bench
/// breaker -- "breaker tower"`; 22 ns padded). The price: a clone made for
/// one call allocates 256 aligned bytes instead of 24 (about 30 ns more
/// with glibc's allocator).
pub(crate) type LocalBreaker = Arc<Padded<CircuitBreaker>>;

/// The breaker behind a tower layer or service.
#[derive(Debug)]
pub(crate) enum Source {
    /// Shared with the layer or the service this one was cloned from, until
    /// it is first polled (a clone that is never polled, as the spare a
    /// retry layer takes per call, costs one reference count).
    Borrowed(LocalBreaker),
    /// A handle no other service clone's calls touch: cloning it per call
    /// bumps a count on a line this clone's callers alone write.
    Own(LocalBreaker),
    /// A breaker that lives as long as the process: calls take no reference
    /// count at all.
    Static(&'static CircuitBreaker),
}

impl Clone for Source {
    /// A clone borrows until polled.
    fn clone(&self) -> Self {
        match self {
            Self::Borrowed(breaker) | Self::Own(breaker) => Self::Borrowed(Arc::clone(breaker)),
            Self::Static(breaker) => Self::Static(breaker),
        }
    }
}

impl Source {
    pub(crate) fn new(breaker: CircuitBreaker) -> Self {
        Self::Own(Arc::new(Padded(breaker)))
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        match self {
            Self::Borrowed(breaker) | Self::Own(breaker) => breaker,
            Self::Static(breaker) => breaker,
        }
    }

    /// Called when the service is polled: from now on it makes calls, so it
    /// gets a handle of its own.
    #[inline]
    pub(crate) fn claim(&mut self) {
        if let Self::Borrowed(breaker) = self {
            *self = Self::Own(Arc::new(Padded(CircuitBreaker::clone(breaker))));
        }
    }

    #[inline(always)]
    pub(crate) fn acquire(&self) -> Result<Ticket, Rejected> {
        self.breaker().shared.acquire()
    }

    /// The permit for a call about to start with `ticket`: it times the call,
    /// not the wait since the ticket was taken.
    #[inline]
    pub(crate) fn permit(&self, ticket: Ticket) -> OwnedPermit {
        let handle = match self {
            Self::Borrowed(breaker) | Self::Own(breaker) => Handle::Local(Arc::clone(breaker)),
            Self::Static(breaker) => Handle::Static(&breaker.shared),
        };
        OwnedPermit {
            ticket: self.stamp(ticket),
            handle: Some(handle),
        }
    }

    /// `ticket`, started now if it is timed.
    #[inline]
    fn stamp(&self, mut ticket: Ticket) -> Ticket {
        if ticket.started != 0 {
            ticket.started = self.breaker().shared.now_nanos().max(1);
        }
        ticket
    }

    /// Reports `outcome` for a call that ended before it started.
    pub(crate) fn record(&self, ticket: Ticket, outcome: Outcome) {
        self.breaker().shared.complete(self.stamp(ticket), outcome);
    }

    /// Gives back a ticket no call used.
    pub(crate) fn abandon(&self, ticket: Ticket) {
        self.breaker().shared.abandon(ticket);
    }
}
