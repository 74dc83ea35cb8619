//! How an operation ended, and the class of its error: bounded label
//! values, never the error's text.

#[cfg(feature = "tower")]
use std::error::Error;

/// How an operation through a [`TelemetryLayer`](crate::TelemetryLayer) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperationOutcome {
    /// It succeeded.
    Ok,
    /// It failed.
    Error,
    /// A circuit breaker turned it away without trying.
    Rejected,
    /// A timeout ended it (checkout, command, or the whole call).
    Timeout,
    /// The caller dropped it before it finished.
    Cancelled,
}

impl OperationOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 5] = [
        Self::Ok,
        Self::Error,
        Self::Rejected,
        Self::Timeout,
        Self::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
        }
    }

    #[cfg(feature = "tower")]
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The values `error.type` takes.
pub const ERROR_TYPES: [&str; 8] = [
    "breaker_open",
    "pool_timeout",
    "pool_closed",
    "command_timeout",
    "connection",
    "database",
    "timeout",
    "other",
];

#[cfg(feature = "tower")]
/// The outcome and `error.type` index of a failed operation, from the
/// first error in its source chain that keel knows.
pub(crate) fn classify(error: &(dyn Error + 'static)) -> (OperationOutcome, usize) {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = known(error) {
            return found;
        }
        next = error.source();
    }
    (OperationOutcome::Error, index("other"))
}

#[cfg(feature = "tower")]
fn index(name: &str) -> usize {
    ERROR_TYPES
        .iter()
        .position(|t| *t == name)
        .unwrap_or(ERROR_TYPES.len() - 1)
}

#[cfg(feature = "tower")]
fn known(error: &(dyn Error + 'static)) -> Option<(OperationOutcome, usize)> {
    use OperationOutcome::{Error as Failed, Rejected, Timeout};
    #[cfg(feature = "breaker")]
    if error.is::<keel_breaker::Rejected>() {
        return Some((Rejected, index("breaker_open")));
    }
    #[cfg(feature = "pool")]
    if error.is::<keel_pool_core::op::CommandTimeout>() {
        return Some((Timeout, index("command_timeout")));
    }
    #[cfg(all(feature = "pool", feature = "sqlx"))]
    if let Some(error) = error.downcast_ref::<keel_pool_core::PoolError<sqlx_core::Error>>() {
        use keel_pool_core::PoolError;
        return Some(match error {
            PoolError::Timeout { .. } => (Timeout, index("pool_timeout")),
            PoolError::Closed => (Failed, index("pool_closed")),
            _ => (Failed, index("connection")),
        });
    }
    #[cfg(feature = "sqlx")]
    if let Some(error) = error.downcast_ref::<sqlx_core::Error>() {
        use sqlx_core::Error as E;
        return Some(match error {
            E::PoolTimedOut => (Timeout, index("pool_timeout")),
            E::PoolClosed => (Failed, index("pool_closed")),
            E::Io(_) | E::Tls(_) | E::Protocol(_) | E::WorkerCrashed => {
                (Failed, index("connection"))
            }
            _ => (Failed, index("database")),
        });
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        return Some(if io.kind() == std::io::ErrorKind::TimedOut {
            (Timeout, index("timeout"))
        } else {
            (Failed, index("connection"))
        });
    }
    let _ = (Rejected, Failed);
    None
}

#[cfg(all(test, feature = "tower"))]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_connection_failures_or_timeouts() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&refused),
            (OperationOutcome::Error, index("connection"))
        );
        let slow = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(
            classify(&slow),
            (OperationOutcome::Timeout, index("timeout"))
        );
        let fmt = std::fmt::Error;
        assert_eq!(classify(&fmt), (OperationOutcome::Error, index("other")));
    }

    #[cfg(feature = "breaker")]
    #[test]
    fn a_breaker_rejection_is_its_own_outcome_also_as_a_source() {
        let breaker = keel_breaker::CircuitBreaker::new(keel_breaker::BreakerConfig::default())
            .expect("default config");
        breaker.force_open();
        let rejected = breaker.try_acquire().expect_err("forced open");
        let expected = (OperationOutcome::Rejected, index("breaker_open"));
        assert_eq!(classify(&rejected), expected);
        assert_eq!(classify(&Wrapper(rejected)), expected);
    }

    #[derive(Debug)]
    struct Wrapper<E>(E);
    impl<E> std::fmt::Display for Wrapper<E> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("gave up")
        }
    }
    impl<E: Error + 'static> Error for Wrapper<E> {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }
}
