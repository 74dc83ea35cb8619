//! Leave to make one call, and the verdict that comes back with it.

use std::sync::Arc;

use super::Shared;
#[cfg(feature = "tower")]
use super::source::LocalBreaker;
use crate::classify::Outcome;

/// What a permit is for: decides what its verdict does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Closed = 0,
    Trial = 1,
    /// Disabled breaker: only counters.
    Untracked = 2,
}

/// A permit's identity, kept to two plain words: the async state machines
/// that carry permits copy them around, and mixed-width fields there cost
/// store-forwarding stalls on the hot path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    /// Generation << 2 | kind.
    pub(super) tag: u64,
    /// Nanoseconds since `base` when the call started; 0 if not timed.
    pub(crate) started: u64,
}

impl Ticket {
    #[inline]
    pub(super) fn new(generation: u64, kind: Kind, started: u64) -> Self {
        Self {
            tag: generation << 2 | kind as u64,
            started,
        }
    }

    /// The ticket in one odd word (a rejection's is even, see
    /// [`Rejected::reserve`](super::Rejected::reserve)), for a
    /// tower service to keep between `poll_ready` and `call`: a single word
    /// is stored and loaded whole, where a two-word copy read back as one
    /// wide load stalls store forwarding. Keeps whether the call is timed,
    /// not when: the start is stamped when the call begins.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn reserve(self) -> u64 {
        self.tag << 2 | u64::from(self.started != 0) << 1 | 1
    }

    /// The ticket [`reserve`](Self::reserve) kept; a timed one reads as
    /// started at 1 ns until [`stamp`](Self::stamp)ed.
    #[cfg(feature = "tower")]
    #[inline(always)]
    pub(crate) fn reserved(word: u64) -> Self {
        Self {
            tag: word >> 2,
            started: word >> 1 & 1,
        }
    }

    #[inline]
    pub(super) fn generation(self) -> u64 {
        self.tag >> 2
    }

    #[inline]
    pub(super) fn kind(self) -> Kind {
        match self.tag & 3 {
            0 => Kind::Closed,
            1 => Kind::Trial,
            _ => Kind::Untracked,
        }
    }
}

/// Leave to make one call, borrowed from the breaker. Report the verdict
/// with [`success`](Self::success), [`failure`](Self::failure),
/// [`ignore`](Self::ignore) or [`record`](Self::record); dropping it without
/// a verdict is neutral (a cancelled call says nothing about the backend) and
/// frees a half-open trial slot.
#[must_use = "a permit reports nothing unless told the outcome"]
#[derive(Debug)]
pub struct Permit<'a> {
    pub(super) shared: &'a Shared,
    pub(super) ticket: Ticket,
}

/// An owned [`Permit`], for futures and tasks that outlive the borrow.
#[must_use = "a permit reports nothing unless told the outcome"]
#[derive(Debug)]
pub struct OwnedPermit {
    /// `None` once a verdict was given (so drop has nothing to do).
    pub(super) handle: Option<Handle>,
    pub(super) ticket: Ticket,
}

/// How an owned permit reaches its breaker.
#[derive(Debug)]
pub(super) enum Handle {
    Shared(Arc<Shared>),
    /// Through a handle private to one tower service clone: cloning it per
    /// call touches a reference count no other core writes, where cloning
    /// `Arc<Shared>` would bounce one line between all callers.
    #[cfg(feature = "tower")]
    Local(LocalBreaker),
    /// To a breaker that lives as long as the process: no count to keep.
    #[cfg(feature = "tower")]
    Static(&'static Shared),
}

impl std::ops::Deref for Handle {
    type Target = Shared;
    #[inline]
    fn deref(&self) -> &Shared {
        match self {
            Handle::Shared(shared) => shared,
            #[cfg(feature = "tower")]
            Handle::Local(breaker) => &breaker.shared,
            #[cfg(feature = "tower")]
            Handle::Static(shared) => shared,
        }
    }
}

macro_rules! permit_verdicts {
    () => {
        /// Reports a success.
        #[inline]
        pub fn success(self) {
            self.record(Outcome::Success);
        }

        /// Reports a failure.
        #[inline]
        pub fn failure(self) {
            self.record(Outcome::Failure);
        }

        /// Reports a call that says nothing about the backend's health.
        #[inline]
        pub fn ignore(self) {
            self.record(Outcome::Ignored);
        }

        /// Whether this is a half-open trial call.
        pub fn is_trial(&self) -> bool {
            self.ticket.kind() == Kind::Trial
        }
    };
}

impl Permit<'_> {
    permit_verdicts!();

    /// Reports `outcome`.
    #[inline]
    pub fn record(self, outcome: Outcome) {
        // The verdict replaces the drop-time "no verdict" path.
        let this = std::mem::ManuallyDrop::new(self);
        this.shared.complete(this.ticket, outcome);
    }
}

impl OwnedPermit {
    permit_verdicts!();

    /// Reports `outcome`.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    /// Reports `outcome` in place, once: a future that holds the permit
    /// reads its words where they are instead of moving it out first (a
    /// move reads them back as one wide load, which stalls on the narrow
    /// stores that wrote them).
    #[inline]
    pub(crate) fn settle(&mut self, outcome: Outcome) {
        if let Some(handle) = &self.handle {
            handle.complete(self.ticket, outcome);
            self.handle = None;
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.shared.abandon(self.ticket);
    }
}

impl Drop for OwnedPermit {
    #[inline]
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abandon(self.ticket);
        }
    }
}
