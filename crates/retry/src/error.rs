//! What a retrier returns when it gives up.

use std::fmt;
use std::time::Duration;

/// Why the retrier stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GaveUp {
    /// The classifier called the error permanent.
    Permanent,
    /// The class's attempts are used up.
    Exhausted,
    /// The next sleep would pass the policy's total timeout.
    Deadline,
    /// The retry budget is spent: retrying now would add load to an outage.
    Budget,
    /// The operation is not idempotent and the failed attempt may have taken
    /// effect.
    NotIdempotent,
    /// The outcome is unknown (e.g. the connection broke during COMMIT); a
    /// blind retry could apply the work twice.
    OutcomeUnknown,
}

impl GaveUp {
    fn describe(self) -> &'static str {
        match self {
            GaveUp::Permanent => "the error is permanent",
            GaveUp::Exhausted => "no attempts left",
            GaveUp::Deadline => "the total timeout would be passed",
            GaveUp::Budget => "the retry budget is exhausted",
            GaveUp::NotIdempotent => {
                "the operation is not idempotent and the failed attempt may have taken effect"
            }
            GaveUp::OutcomeUnknown => {
                "the outcome is unknown (it may have been applied); not retried blindly"
            }
        }
    }
}

/// What the last attempt did.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<E> {
    /// It returned this error.
    Inner(E),
    /// It did not finish within the policy's attempt timeout.
    TimedOut(Duration),
}

/// The error of a retried operation: the last attempt's failure, how many
/// attempts were made, and why there was no other.
#[derive(Debug)]
pub struct RetryError<E> {
    failure: Failure<E>,
    attempts: u32,
    reason: GaveUp,
}

impl<E> RetryError<E> {
    pub(crate) fn new(failure: Failure<E>, attempts: u32, reason: GaveUp) -> Self {
        Self {
            failure,
            attempts,
            reason,
        }
    }

    /// Why the retrier stopped.
    pub fn reason(&self) -> GaveUp {
        self.reason
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt's failure.
    pub fn failure(&self) -> &Failure<E> {
        &self.failure
    }

    /// The last attempt's error, unless it timed out.
    pub fn inner(&self) -> Option<&E> {
        match &self.failure {
            Failure::Inner(e) => Some(e),
            Failure::TimedOut(_) => None,
        }
    }

    /// The last attempt's error, unless it timed out.
    pub fn into_inner(self) -> Option<E> {
        match self.failure {
            Failure::Inner(e) => Some(e),
            Failure::TimedOut(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Inner(e) => write!(f, "{e}")?,
            Failure::TimedOut(t) => write!(f, "attempt timed out after {t:?}")?,
        }
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            " (gave up after {} attempt{s}: {})",
            self.attempts,
            self.reason.describe()
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Inner(e) => Some(e),
            Failure::TimedOut(_) => None,
        }
    }
}

/// The error a [`RetryService`](crate::RetryService) returns when it
/// gives up for any reason but a permanent error (a permanent error comes
/// back unchanged): the last error is its [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct GaveUpError {
    reason: GaveUp,
    attempts: u32,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl GaveUpError {
    #[cfg_attr(
        not(feature = "tower"),
        allow(dead_code, reason = "built by the tower service")
    )]
    pub(crate) fn new(
        reason: GaveUp,
        attempts: u32,
        source: Box<dyn std::error::Error + Send + Sync>,
    ) -> Self {
        Self {
            reason,
            attempts,
            source,
        }
    }

    /// Why the service stopped retrying.
    pub fn reason(&self) -> GaveUp {
        self.reason
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The last error first, as [`RetryError`] prints it: a reader of one log
/// line learns what failed, not only that the retrier stopped.
impl fmt::Display for GaveUpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} (gave up after {} attempt{s}: {})",
            self.source,
            self.attempts,
            self.reason.describe()
        )
    }
}

impl std::error::Error for GaveUpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}
