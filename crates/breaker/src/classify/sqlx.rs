//! What a database's errors say about the database, for sqlx.

use sqlx_core::error::Error;

use super::{Classify, Outcome};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Keeps the caller's own errors from tripping the breaker: a statement
/// the server rejected for what it says (SQLSTATE class 22 data exception,
/// 23 integrity constraint violation, 42 syntax error or access rule
/// violation), a query that found no row, a row that did not decode. Every
/// other error (a lost or refused connection, a pool timeout, a server out
/// of resources) is the database's, and counts toward tripping.
///
/// It judges errors alone, so one classifier serves every response type of
/// a stack, and it reads both `sqlx::Error` and the boxed errors of tower
/// stacks (it looks for a sqlx error down the source chain).
///
/// ```
/// use keel_breaker::{Classify, Outcome, SqlxClassifier};
///
/// let no_row = sqlx_core::Error::RowNotFound;
/// assert_eq!(SqlxClassifier.classify(&Err::<i32, _>(no_row)), Outcome::Ignored);
/// let lost = sqlx_core::Error::Io(std::io::ErrorKind::ConnectionReset.into());
/// assert_eq!(SqlxClassifier.classify(&Err::<u64, _>(lost)), Outcome::Failure);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct SqlxClassifier;

impl SqlxClassifier {
    /// The verdict on one sqlx error.
    pub fn outcome(error: &Error) -> Outcome {
        match error {
            Error::Database(db) => match db.code().as_deref().map(|code| code.get(..2)) {
                Some(Some("22" | "23" | "42")) => Outcome::Ignored,
                _ => Outcome::Failure,
            },
            Error::RowNotFound
            | Error::ColumnNotFound(_)
            | Error::ColumnIndexOutOfBounds { .. }
            | Error::ColumnDecode { .. }
            | Error::Decode(_)
            | Error::Encode(_)
            | Error::TypeNotFound { .. }
            | Error::InvalidArgument(_) => Outcome::Ignored,
            _ => Outcome::Failure,
        }
    }

    /// The verdict on a boxed error: the first sqlx error down its source
    /// chain decides; an error with none is the database's.
    pub fn outcome_boxed(error: &(dyn std::error::Error + 'static)) -> Outcome {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(sqlx) = e.downcast_ref::<Error>() {
                return Self::outcome(sqlx);
            }
            next = e.source();
        }
        Outcome::Failure
    }
}

impl<T> Classify<T, Error> for SqlxClassifier {
    fn classify(&self, result: &Result<T, Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Self::outcome(e),
        }
    }
}

impl<T> Classify<T, BoxError> for SqlxClassifier {
    fn classify(&self, result: &Result<T, BoxError>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Self::outcome_boxed(&**e),
        }
    }
}
