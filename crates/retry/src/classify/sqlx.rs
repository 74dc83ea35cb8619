//! Classifying sqlx errors.

use sqlx_core::error::{BoxDynError, Error};

use crate::classify::{Classify, ErrorClass, Verdict, classify_io};

/// Classifies sqlx errors for retrying.
///
/// | error | verdict |
/// |---|---|
/// | PostgreSQL 08000 08003 08006, 57P01 57P02 (connection lost or killed) | transient, connection, outcome unknown |
/// | PostgreSQL 08001 08004 57P03 (could not connect / server starting) | transient, connection, no effect |
/// | PostgreSQL 40001 40P01 (serialization failure, deadlock) | transient, conflict, no effect |
/// | PostgreSQL 53000 53100 53200 53300 53400 (out of resources) | transient, exhausted, no effect |
/// | PostgreSQL 58000 58030 (system / I/O error) | transient, other, no effect |
/// | MySQL / MariaDB 1205 1213 (lock wait timeout, deadlock), feature `sqlx-mysql` | transient, conflict, no effect |
/// | MySQL / MariaDB 1040 (too many connections) | transient, exhausted, no effect |
/// | MySQL / MariaDB 2006 2013 (server gone, lost connection) | transient, connection, outcome unknown |
/// | pool acquire timeout (sqlx's; keel-pool-core's with feature `pool`) | transient, connection, no effect |
/// | keel-pool-core's command timeout (feature `pool`), tokio's or tower's `Elapsed` | transient, other, outcome unknown |
/// | keel-pool-core's cluster with no endpoint to serve (feature `cluster`) | transient, connection, no effect |
/// | I/O: refused | transient, connection, no effect |
/// | I/O: reset, aborted, broken pipe, timed out, unexpected EOF | transient, connection, outcome unknown |
/// | everything else (constraint violations, syntax and permission errors, ...) | permanent |
///
/// A server that reports an error for a statement has not applied it, so
/// database errors are "no effect" except those that end the connection.
///
/// ```
/// use keel_retry::{Classify, SqlxClassifier, Verdict, ErrorClass};
///
/// let timeout = sqlx_core::Error::PoolTimedOut;
/// assert_eq!(SqlxClassifier.classify(&timeout), Verdict::no_effect(ErrorClass::Connection));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SqlxClassifier;

fn sqlstate(code: &str) -> Verdict {
    match code {
        "08000" | "08003" | "08006" | "57P01" | "57P02" => {
            Verdict::transient(ErrorClass::Connection)
        }
        "08001" | "08004" | "57P03" => Verdict::no_effect(ErrorClass::Connection),
        "40001" | "40P01" => Verdict::no_effect(ErrorClass::Conflict),
        "53000" | "53100" | "53200" | "53300" | "53400" => {
            Verdict::no_effect(ErrorClass::Exhausted)
        }
        "58000" | "58030" => Verdict::no_effect(ErrorClass::Other),
        _ => Verdict::Permanent,
    }
}

#[cfg(feature = "sqlx-mysql")]
fn mysql_number(number: u16) -> Option<Verdict> {
    match number {
        1205 | 1213 => Some(Verdict::no_effect(ErrorClass::Conflict)),
        1040 => Some(Verdict::no_effect(ErrorClass::Exhausted)),
        2006 | 2013 => Some(Verdict::transient(ErrorClass::Connection)),
        _ => None,
    }
}

/// SQLite reports its result code as a number (SQLSTATEs are five
/// letters and digits): SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their
/// extended codes, mean another connection holds the lock; the statement
/// did not run.
fn sqlite_code(code: &str) -> Option<Verdict> {
    let number: u32 = code.parse().ok().filter(|_| code.len() < 5)?;
    match number & 0xff {
        5 | 6 => Some(Verdict::no_effect(ErrorClass::Conflict)),
        _ => Some(Verdict::Permanent),
    }
}

impl Classify<Error> for SqlxClassifier {
    fn classify(&self, error: &Error) -> Verdict {
        match error {
            Error::Database(db) => {
                #[cfg(feature = "sqlx-mysql")]
                if let Some(verdict) = db
                    .try_downcast_ref::<sqlx_mysql::MySqlDatabaseError>()
                    .and_then(|e| mysql_number(e.number()))
                {
                    return verdict;
                }
                db.code().map_or(Verdict::Permanent, |code| {
                    sqlite_code(&code).unwrap_or_else(|| sqlstate(&code))
                })
            }
            Error::Io(io) => classify_io(io),
            Error::PoolTimedOut => Verdict::no_effect(ErrorClass::Connection),
            Error::WorkerCrashed => Verdict::transient(ErrorClass::Connection),
            _ => Verdict::Permanent,
        }
    }
}

/// For boxed errors (tower stacks): the first error down the source chain
/// that it knows decides; anything else is permanent. It knows sqlx and I/O
/// errors, tokio's and tower's `Elapsed` (a timeout layer's deadline: outcome
/// unknown) and, with the `pool` feature, keel-pool-core's own errors.
impl Classify<BoxDynError> for SqlxClassifier {
    fn classify(&self, error: &BoxDynError) -> Verdict {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&**error);
        while let Some(e) = next {
            if let Some(sqlx) = e.downcast_ref::<Error>() {
                return self.classify(sqlx);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return classify_io(io);
            }
            if let Some(verdict) = classify_elapsed(e) {
                return verdict;
            }
            #[cfg(feature = "pool")]
            if let Some(verdict) = self.classify_pool(e) {
                return verdict;
            }
            next = e.source();
        }
        Verdict::Permanent
    }
}

/// A timeout layer gave up on the call: it may have taken effect.
fn classify_elapsed(error: &(dyn std::error::Error + 'static)) -> Option<Verdict> {
    #[cfg(feature = "tower")]
    if error.is::<tower::timeout::error::Elapsed>() {
        return Some(Verdict::transient(ErrorClass::Other));
    }
    error
        .is::<tokio::time::error::Elapsed>()
        .then(|| Verdict::transient(ErrorClass::Other))
}

#[cfg(feature = "pool")]
impl SqlxClassifier {
    /// keel-pool-core's errors: a checkout that timed out never reached the
    /// server; a command timeout may have taken effect; a closed pool stays
    /// closed; a connect error is the driver's.
    fn classify_pool(&self, error: &(dyn std::error::Error + 'static)) -> Option<Verdict> {
        use keel_pool_core::PoolError;
        use keel_pool_core::op::CommandTimeout;
        if error.is::<CommandTimeout>() {
            return Some(Verdict::transient(ErrorClass::Other));
        }
        #[cfg(feature = "cluster")]
        if let Some(cluster) = error.downcast_ref::<keel_pool_core::cluster::ClusterError<Error>>()
        {
            use keel_pool_core::cluster::ClusterError;
            return match cluster {
                // Nothing was sent: no server may serve it now (no writer
                // mid-failover, every endpoint ejected).
                ClusterError::NoEndpoint { .. } => Some(Verdict::no_effect(ErrorClass::Connection)),
                // The endpoint's pool error, its source, decides.
                _ => None,
            };
        }
        match error.downcast_ref::<PoolError<Error>>()? {
            PoolError::Timeout { .. } => Some(Verdict::no_effect(ErrorClass::Connection)),
            PoolError::Connect { source, .. } => Some(self.classify(source)),
            _ => Some(Verdict::Permanent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Delivery;

    #[test]
    fn sqlstates_map_to_classes() {
        let cases = [
            ("08006", Verdict::transient(ErrorClass::Connection)),
            ("57P01", Verdict::transient(ErrorClass::Connection)),
            ("57P03", Verdict::no_effect(ErrorClass::Connection)),
            ("40001", Verdict::no_effect(ErrorClass::Conflict)),
            ("40P01", Verdict::no_effect(ErrorClass::Conflict)),
            ("53300", Verdict::no_effect(ErrorClass::Exhausted)),
            ("58030", Verdict::no_effect(ErrorClass::Other)),
            ("23505", Verdict::Permanent), // unique violation
            ("42601", Verdict::Permanent), // syntax error
            ("42501", Verdict::Permanent), // insufficient privilege
        ];
        for (code, verdict) in cases {
            assert_eq!(sqlstate(code), verdict, "{code}");
        }
    }

    #[cfg(feature = "sqlx-mysql")]
    #[test]
    fn mysql_numbers_map_to_classes() {
        assert_eq!(
            mysql_number(1213),
            Some(Verdict::no_effect(ErrorClass::Conflict))
        );
        assert_eq!(
            mysql_number(1205),
            Some(Verdict::no_effect(ErrorClass::Conflict))
        );
        assert_eq!(
            mysql_number(1040),
            Some(Verdict::no_effect(ErrorClass::Exhausted))
        );
        assert_eq!(
            mysql_number(2013),
            Some(Verdict::transient(ErrorClass::Connection))
        );
        assert_eq!(mysql_number(1062), None); // duplicate entry: falls through to SQLSTATE
    }

    #[test]
    fn io_and_pool_errors() {
        let refused = Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        let reset = Error::Io(std::io::ErrorKind::ConnectionReset.into());
        assert_eq!(
            SqlxClassifier.classify(&refused),
            Verdict::no_effect(ErrorClass::Connection)
        );
        assert!(matches!(
            SqlxClassifier.classify(&reset),
            Verdict::Transient {
                delivery: Delivery::Unknown,
                ..
            }
        ));
        assert_eq!(
            SqlxClassifier.classify(&Error::PoolClosed),
            Verdict::Permanent
        );
        assert_eq!(
            SqlxClassifier.classify(&Error::RowNotFound),
            Verdict::Permanent
        );
    }

    #[test]
    fn boxed_errors_are_searched_down_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("query failed")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let boxed: BoxDynError = Box::new(Wrapper(Error::PoolTimedOut));
        assert_eq!(
            SqlxClassifier.classify(&boxed),
            Verdict::no_effect(ErrorClass::Connection)
        );
        let other: BoxDynError = "something else".into();
        assert_eq!(SqlxClassifier.classify(&other), Verdict::Permanent);
    }

    #[test]
    fn sqlite_busy_and_locked_are_conflicts_and_other_codes_permanent() {
        for code in ["5", "6", "517", "262"] {
            assert_eq!(
                sqlite_code(code),
                Some(Verdict::no_effect(ErrorClass::Conflict)),
                "{code}"
            );
        }
        assert_eq!(sqlite_code("19"), Some(Verdict::Permanent), "constraint");
        assert_eq!(sqlite_code("2067"), Some(Verdict::Permanent), "unique");
        assert_eq!(sqlite_code("40001"), None, "a SQLSTATE");
        assert_eq!(sqlite_code("HY000"), None);
    }
}
