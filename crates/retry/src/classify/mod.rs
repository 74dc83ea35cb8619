//! Which errors are worth another attempt, and which schedule governs them:
//! the verdicts and the `Classify` role here; the shipped classifiers for
//! I/O errors, sqlx (feature `sqlx`) and keel-breaker (feature `breaker`)
//! beside it.

#[cfg(feature = "breaker")]
mod breaker;
mod io;
#[cfg(feature = "sqlx")]
mod sqlx;

#[cfg(feature = "breaker")]
pub use breaker::SkipOpenBreaker;
pub use io::classify_io;
#[cfg(feature = "sqlx")]
pub use sqlx::SqlxClassifier;

use std::time::Duration;

/// The kind of trouble, which picks the schedule in a [`RetryPolicy`](crate::RetryPolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A connection was refused, lost or broken.
    Connection,
    /// A serialization failure or deadlock: rerun the whole transaction.
    Conflict,
    /// The server is out of connections, memory or disk.
    Exhausted,
    /// Anything else transient.
    Other,
}

/// Whether the failed attempt can have changed anything on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// It certainly had no effect: it never reached the server (connection
    /// refused, pool acquire timeout), or the server refused or rolled it
    /// back. Safe to retry even when the operation is not idempotent.
    NoEffect,
    /// It may have taken effect (the connection broke mid-statement, the
    /// attempt timed out). Retried only for idempotent operations.
    Unknown,
}

/// A classifier's verdict on one error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Worth another attempt, on `class`'s schedule.
    Transient {
        /// The schedule to follow.
        class: ErrorClass,
        /// Whether the attempt can have changed anything.
        delivery: Delivery,
    },
    /// Worth another attempt after the delay the error itself asks for.
    RetryAfter {
        /// The error's own hint.
        after: Duration,
        /// The class whose attempt limit applies.
        class: ErrorClass,
        /// Whether the attempt can have changed anything.
        delivery: Delivery,
    },
    /// Return the error now: retrying cannot help (a constraint violation, a
    /// syntax or permission error, an open circuit breaker).
    Permanent,
    /// The outcome is unknown and a retry could apply it twice (the
    /// connection broke during COMMIT): never retried, whatever the
    /// operation's idempotency; the error says so.
    OutcomeUnknown,
}

impl Verdict {
    /// Transient, with an unknown outcome.
    pub fn transient(class: ErrorClass) -> Self {
        Verdict::Transient {
            class,
            delivery: Delivery::Unknown,
        }
    }

    /// Transient, and certainly without effect.
    pub fn no_effect(class: ErrorClass) -> Self {
        Verdict::Transient {
            class,
            delivery: Delivery::NoEffect,
        }
    }
}

/// Decides whether an error is worth retrying.
///
/// Closures `Fn(&E) -> Verdict` implement it:
///
/// ```
/// use keel_retry::{Classify, ErrorClass, Verdict};
///
/// let classify = |e: &std::io::Error| match e.kind() {
///     std::io::ErrorKind::ConnectionRefused => Verdict::no_effect(ErrorClass::Connection),
///     std::io::ErrorKind::TimedOut => Verdict::transient(ErrorClass::Connection),
///     _ => Verdict::Permanent,
/// };
/// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
/// assert_eq!(classify.classify(&refused), Verdict::no_effect(ErrorClass::Connection));
/// ```
pub trait Classify<E> {
    /// The verdict on `error`.
    fn classify(&self, error: &E) -> Verdict;
}

impl<E, F> Classify<E> for F
where
    F: Fn(&E) -> Verdict,
{
    #[inline]
    fn classify(&self, error: &E) -> Verdict {
        self(error)
    }
}

/// Every error is transient ([`ErrorClass::Other`], outcome unknown): right
/// for idempotent work whose errors carry no more information.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysTransient;

impl<E> Classify<E> for AlwaysTransient {
    #[inline]
    fn classify(&self, _error: &E) -> Verdict {
        Verdict::transient(ErrorClass::Other)
    }
}
